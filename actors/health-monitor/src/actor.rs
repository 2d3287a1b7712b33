//! The health-monitor actor: its configuration, its state, its lifecycle, and the probe rounds
//! it runs on tasks of their own so its mailbox never waits on a server.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use fleet_protocol::config::MAX_SECS;
use fleet_protocol::counter::MessageCounter;
use fleet_protocol::messages::health::{HealthChanged, ProbeResult, ServerHealth};
use fleet_protocol::messages::metrics::{MetricEvent, RecordMetric};
use fleet_protocol::messages::server::{ListServers, ProbeServer};
use fleet_protocol::{FleetError, ServerStatus};
use futures::future::join_all;
use kameo::actor::{Actor, ActorRef, Recipient, ReplyRecipient, WeakActorRef};
use kameo::error::{ActorStopReason, Infallible, SendError};
use kameo::reply::ReplySender;
use tokio::task::AbortHandle;
use tokio::time::MissedTickBehavior;

use crate::handlers::{ProbeRoundFinished, RoundReport, Tick};
use crate::policy::{HealthPolicy, HealthTracker, Verdict, initial_verdict};

/// The actor's name in logs and metrics.
pub const ACTOR_NAME: &str = "health-monitor";

/// How much longer than the probe timeout the monitor waits for the server manager's answer
/// before it gives up on its own. The manager enforces the timeout itself; this only guards
/// against a manager that never answers.
pub const PROBE_GRACE: Duration = Duration::from_millis(250);

/// The shortest tick interval; a zero interval would make the ticker spin (and tokio panics on it).
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// The knobs of the health monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthMonitorConfig {
    /// Time between two probe rounds.
    pub interval: Duration,
    /// How long one probe (and the listing of servers) may take.
    pub timeout: Duration,
    /// Failed probes in a row that make a server unhealthy (zero is read as one).
    pub failure_threshold: u32,
    /// How often the count of handled messages is reported to the metrics collector.
    pub report_every: Duration,
}

impl Default for HealthMonitorConfig {
    fn default() -> Self {
        HealthMonitorConfig {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            failure_threshold: 3,
            report_every: Duration::from_secs(1),
        }
    }
}

/// How the monitor lists servers: `server_manager.reply_recipient::<ListServers>()`.
pub type ServersRecipient = ReplyRecipient<ListServers, Vec<ServerStatus>, Infallible>;

/// How the monitor probes a server: `server_manager.reply_recipient::<ProbeServer>()`.
pub type ProbeRecipient = ReplyRecipient<ProbeServer, Duration, FleetError>;

/// What the health monitor is started with (and restarted with, by its supervisor).
#[derive(Debug, Clone)]
pub struct HealthMonitorArgs {
    pub config: HealthMonitorConfig,
    /// Lists the servers to probe (the server manager).
    pub servers: ServersRecipient,
    /// Probes one server over its existing connection (the server manager).
    pub probe: ProbeRecipient,
    /// Every recipient of verdict changes (the server manager, and whoever else cares).
    pub health_events: Vec<Recipient<HealthChanged>>,
    /// The metrics collector, if any.
    pub metrics: Option<Recipient<RecordMetric>>,
}

/// Aborts a task when dropped, so no task outlives the actor state that started it (on stop,
/// on a panic, and on a supervised restart alike).
#[derive(Debug)]
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Identifies one process of a server; a change means the server was restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcessKey {
    pid: Option<u32>,
    started_at: Option<SystemTime>,
}

impl ProcessKey {
    fn of(status: &ServerStatus) -> Self {
        ProcessKey {
            pid: status.pid,
            started_at: status.started_at,
        }
    }
}

/// One server's tracker and the process it was last probed in.
#[derive(Debug)]
struct Tracked {
    tracker: HealthTracker,
    process: ProcessKey,
}

/// What the monitor was started with, fixed for its life.
struct Peers {
    config: HealthMonitorConfig,
    policy: HealthPolicy,
    servers: ServersRecipient,
    probe: ProbeRecipient,
    health_events: Vec<Recipient<HealthChanged>>,
    metrics: Option<Recipient<RecordMetric>>,
    myself: WeakActorRef<HealthMonitor>,
}

/// The probe rounds: the one under way and the callers waiting for the next.
struct Rounds {
    current: Option<RunningRound>,
    next_id: u64,
    /// `ProbeAll` callers that arrived during a round; they get a fresh round right after it.
    queued: Vec<ReplySender<Vec<ProbeResult>>>,
}

/// The probe round under way.
struct RunningRound {
    id: u64,
    /// `ProbeAll` callers answered with this round's results.
    waiters: Vec<ReplySender<Vec<ProbeResult>>>,
    _task: AbortOnDrop,
}

/// Probes every serving server periodically through the server manager and announces health
/// verdict changes.
///
/// Its state is boxed. kameo's actor task holds the state by value, more than once over, and
/// every poll of that task (one per message) copies part of it: at 368 bytes inline the copies
/// were calls to `memcpy`, some 5 to 10 % of a `GetHealth` round trip, and each inline byte
/// makes every monitor's task about 2.7 bytes larger.
#[derive(derive_more::Deref, derive_more::DerefMut)]
#[deref(forward)]
#[deref_mut(forward)]
pub struct HealthMonitor(Box<State>);

/// What the health monitor keeps.
pub struct State {
    peers: Peers,
    /// Sorted by name, so `GetHealth` needs no sort.
    trackers: BTreeMap<String, Tracked>,
    rounds: Rounds,
    counter: MessageCounter,
    _ticker: AbortOnDrop,
}

impl Actor for HealthMonitor {
    type Args = HealthMonitorArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        ACTOR_NAME
    }

    async fn on_start(args: Self::Args, actor_ref: ActorRef<Self>) -> Result<Self, Self::Error> {
        let HealthMonitorArgs {
            config,
            servers,
            probe,
            health_events,
            metrics,
        } = args;
        let myself = actor_ref.downgrade();
        let ticker = spawn_ticker(myself.clone(), config.interval);
        tracing::debug!(
            interval = ?config.interval,
            timeout = ?config.timeout,
            failure_threshold = config.failure_threshold,
            "health monitor started"
        );
        Ok(HealthMonitor(Box::new(State {
            counter: MessageCounter::new(Instant::now(), config.report_every),
            peers: Peers {
                policy: HealthPolicy {
                    failure_threshold: config.failure_threshold,
                },
                config,
                servers,
                probe,
                health_events,
                metrics,
                myself,
            },
            trackers: BTreeMap::new(),
            rounds: Rounds {
                current: None,
                next_id: 0,
                queued: Vec::new(),
            },
            _ticker: ticker,
        })))
    }

    async fn on_stop(
        &mut self,
        _actor_ref: WeakActorRef<Self>,
        reason: ActorStopReason,
    ) -> Result<(), Self::Error> {
        // The last batch of the message count; `try_send` so a full or stopped collector never
        // holds up a shutdown.
        let state = &mut *self.0;
        if let (Some(metrics), Some(count)) =
            (&state.peers.metrics, state.counter.take(Instant::now()))
        {
            let event = MetricEvent::MessagesHandled {
                actor: ACTOR_NAME.to_owned(),
                count,
            };
            if let Err(error) = metrics.tell(RecordMetric { event }).try_send() {
                tracing::debug!(%error, "last message count not recorded");
            }
        }
        tracing::debug!(%reason, "health monitor stopped");
        // The ticker and any round under way are aborted when the state is dropped.
        Ok(())
    }
}

impl HealthMonitor {
    /// Counts one handled message, reporting a batch when one is due.
    pub(crate) async fn count_message(&mut self) {
        if let Some(count) = self.counter.record(Instant::now()) {
            self.record(MetricEvent::MessagesHandled {
                actor: ACTOR_NAME.to_owned(),
                count,
            })
            .await;
        }
    }

    /// Whether a probe round is under way.
    pub(crate) fn round_running(&self) -> bool {
        self.rounds.current.is_some()
    }

    /// Starts a probe round on a task of its own unless one is under way; `waiter` (a
    /// `ProbeAll` caller) is answered by the round that starts after its request.
    pub(crate) fn request_round(&mut self, waiter: Option<ReplySender<Vec<ProbeResult>>>) {
        if self.rounds.current.is_some() {
            self.rounds.queued.extend(waiter);
        } else {
            self.start_round(waiter.into_iter().collect());
        }
    }

    fn start_round(&mut self, waiters: Vec<ReplySender<Vec<ProbeResult>>>) {
        let id = self.rounds.next_id;
        self.rounds.next_id = id.wrapping_add(1);
        let servers = self.peers.servers.clone();
        let probe = self.peers.probe.clone();
        let timeout = self.peers.config.timeout;
        let myself = self.peers.myself.clone();
        let task = tokio::spawn(async move {
            let report = run_round(&servers, &probe, timeout).await;
            if let Some(actor) = myself.upgrade() {
                // `send` waits for room in the mailbox: the round's end must not be lost, or no
                // round would ever start again.
                if let Err(error) = actor
                    .tell(ProbeRoundFinished { round: id, report })
                    .send()
                    .await
                {
                    tracing::debug!(%error, "probe round ended after the monitor stopped");
                }
            }
        });
        tracing::debug!(round = id, "probe round started");
        self.rounds.current = Some(RunningRound {
            id,
            waiters,
            _task: AbortOnDrop(task.abort_handle()),
        });
    }

    /// Applies a finished round: trackers, verdicts, events, metrics; answers its `ProbeAll`
    /// callers, then starts the round queued callers wait for.
    pub(crate) async fn finish_round(&mut self, finished: ProbeRoundFinished) {
        let Some(round) = self.rounds.current.take_if(|r| r.id == finished.round) else {
            tracing::debug!(
                round = finished.round,
                "result of a stale probe round ignored"
            );
            return;
        };
        let results = match finished.report {
            Ok(report) => self.apply(report).await,
            Err(error) => {
                tracing::warn!(%error, "probe round could not list servers");
                Vec::new()
            }
        };
        for waiter in round.waiters {
            waiter.send(results.clone());
        }
        if !self.rounds.queued.is_empty() {
            let waiters = std::mem::take(&mut self.rounds.queued);
            self.start_round(waiters);
        }
    }

    async fn apply(&mut self, report: RoundReport) -> Vec<ProbeResult> {
        let listed: HashMap<&str, &ServerStatus> =
            report.listed.iter().map(|s| (s.name.as_str(), s)).collect();
        self.trackers
            .retain(|name, _| listed.contains_key(name.as_str()));

        let mut results = Vec::with_capacity(report.probed.len());
        for probed in report.probed {
            let ProbeResult { server, outcome } = &probed.result;
            let Some(status) = listed.get(server.as_str()) else {
                continue;
            };
            let (verdict, event) = {
                let default_threshold = self.peers.policy.failure_threshold;
                let tracked = self
                    .trackers
                    .entry(server.clone())
                    .or_insert_with(|| Tracked {
                        tracker: HealthTracker::new(initial_verdict(&status.state)),
                        process: ProcessKey::of(status),
                    });
                let process = ProcessKey::of(status);
                if tracked.process != process {
                    tracing::debug!(server = %server, "new process; its failure run starts over");
                    tracked.tracker.new_process(initial_verdict(&status.state));
                    tracked.process = process;
                }
                // A server's own threshold, from its spec, wins over the monitor's.
                let policy = HealthPolicy {
                    failure_threshold: status.health.failure_threshold.unwrap_or(default_threshold),
                };
                let verdict = tracked.tracker.observe(outcome, &policy);
                let mut event = tracked.tracker.to_event(server);
                event.pid = tracked.process.pid;
                event.started_at = tracked.process.started_at;
                (verdict, event)
            };

            match outcome {
                Ok(latency) => tracing::debug!(server = %server, ?latency, "health probe answered"),
                Err(error) => tracing::debug!(server = %server, %error, "health probe failed"),
            }
            self.record(MetricEvent::Probe {
                server: server.clone(),
                latency: *outcome.as_ref().unwrap_or(&probed.elapsed),
                ok: outcome.is_ok(),
            })
            .await;

            if let Some(verdict) = verdict {
                match verdict {
                    Verdict::BecameUnhealthy => tracing::warn!(
                        server = %server,
                        error = event.reason.as_deref().unwrap_or("unknown"),
                        consecutive_failures = event.consecutive_failures,
                        "server is unhealthy"
                    ),
                    Verdict::Recovered => tracing::info!(server = %server, "server recovered"),
                }
                self.emit(event).await;
            }
            results.push(probed.result);
        }
        results
    }

    /// The health of every tracked server, sorted by name.
    pub(crate) fn health(&self) -> Vec<ServerHealth> {
        self.trackers
            .iter()
            .map(|(name, tracked)| tracked.tracker.to_health(name))
            .collect()
    }

    async fn emit(&self, event: HealthChanged) {
        for recipient in &self.peers.health_events {
            if let Err(error) = recipient.tell(event.clone()).send().await {
                tracing::warn!(server = %event.server, %error, "health change not delivered");
            }
        }
    }

    async fn record(&self, event: MetricEvent) {
        let Some(metrics) = &self.peers.metrics else {
            return;
        };
        if let Err(error) = metrics.tell(RecordMetric { event }).send().await {
            tracing::debug!(%error, "metric not recorded");
        }
    }
}

/// Tells the actor [`Tick`] every `interval`, the first one interval from now. It ends when the
/// actor is gone, and is aborted when the actor state is dropped.
fn spawn_ticker(myself: WeakActorRef<HealthMonitor>, interval: Duration) -> AbortOnDrop {
    // At most `MAX_SECS`: a longer interval would overflow the clock the first tick is set on.
    let every = interval.clamp(MIN_INTERVAL, Duration::from_secs(MAX_SECS));
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            ticks.tick().await;
            let Some(actor) = myself.upgrade() else {
                break;
            };
            match actor.tell(Tick).try_send() {
                Ok(()) => {}
                // A busy mailbox loses a tick, never piles them up.
                Err(SendError::MailboxFull(_)) => tracing::debug!("mailbox full; tick skipped"),
                Err(_) => break,
            }
        }
    });
    AbortOnDrop(task.abort_handle())
}

/// One probe round: list the servers, probe every serving one concurrently (except those whose
/// policy says not to probe them), each with its own timeout if it has one. Every wait is
/// bounded by a timeout plus [`PROBE_GRACE`].
async fn run_round(
    servers: &ServersRecipient,
    probe: &ProbeRecipient,
    timeout: Duration,
) -> Result<RoundReport, String> {
    let limit = timeout.saturating_add(PROBE_GRACE);
    let listed = match tokio::time::timeout(limit, servers.ask(ListServers)).await {
        Ok(Ok(listed)) => listed,
        Ok(Err(error)) => return Err(format!("server manager unavailable: {error}")),
        Err(_) => return Err(format!("no server list within {limit:?}")),
    };
    let probed = join_all(
        listed
            .iter()
            .filter(|s| s.state.is_serving() && s.health.probe)
            .map(|s| probe_one(probe, &s.name, s.health.timeout.unwrap_or(timeout))),
    )
    .await;
    Ok(RoundReport { listed, probed })
}

/// One probe, never longer than `timeout` plus [`PROBE_GRACE`].
async fn probe_one(probe: &ProbeRecipient, name: &str, timeout: Duration) -> Probed {
    let started = Instant::now();
    let request = ProbeServer {
        name: name.to_owned(),
        timeout,
    };
    let limit = timeout.saturating_add(PROBE_GRACE);
    let outcome = match tokio::time::timeout(limit, probe.ask(request)).await {
        Ok(Ok(latency)) => Ok(latency),
        Ok(Err(SendError::HandlerError(error))) => Err(error.to_string()),
        Ok(Err(error)) => Err(format!("server manager unavailable: {error}")),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    };
    Probed {
        result: ProbeResult {
            server: name.to_owned(),
            outcome,
        },
        elapsed: started.elapsed(),
    }
}

/// One probe's result and how long the attempt took (the latency recorded for a failure).
#[derive(Debug, Clone)]
pub(crate) struct Probed {
    pub(crate) result: ProbeResult,
    pub(crate) elapsed: Duration,
}
