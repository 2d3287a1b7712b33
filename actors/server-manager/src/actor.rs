//! `ServerManager`: the table of servers by name, and the only way in for other actors.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use fleet_protocol::counter::MessageCounter;
use fleet_protocol::messages::metrics::{MetricEvent, RecordMetric};
use fleet_protocol::messages::server::{CallAnswer, CallServer, DirectServer};
use fleet_protocol::{FleetError, ServerSpec, ServerState, ServerStatus};
use kameo::Actor;
use kameo::actor::{ActorId, ActorRef, Recipient, ReplyRecipient, WeakActorRef};
use kameo::error::{ActorStopReason, Infallible, SendError};
use tokio::sync::watch;

use crate::events::EventHub;
use crate::memory::ManagerMemory;
use crate::server::{LiveCounters, ServerActor};
use crate::stderr::{self, SharedStderr};

/// Knobs of the server manager; `Default` gives values suited to `npx`/`uvx` servers.
#[derive(Debug, Clone)]
pub struct ServerManagerConfig {
    /// How long a forwarded request may wait for its answer.
    pub request_timeout: Duration,
    /// How long `initialize` and each `tools/list` page of the handshake may take.
    pub handshake_timeout: Duration,
    /// How long to wait for a `server/discover` answer before falling back to `initialize`.
    pub discover_timeout: Duration,
    /// Each wait of a stop: after closing stdin, and again after SIGTERM, before SIGKILL.
    pub stop_grace: Duration,
    /// The largest message accepted from or sent to a server.
    pub max_message_bytes: usize,
    /// Lines queued for a child's stdin before requests are refused as overloaded.
    pub stdin_queue: usize,
    /// Bytes of stderr kept per server.
    pub stderr_ring_bytes: usize,
    /// How often the handled-message count is reported to metrics.
    pub report_every: Duration,
    /// How long a request to a server that is starting or restarting waits for it to be ready
    /// before it fails; zero fails at once. A request that comes while a `RestartServer` stops
    /// the process is held until the restart starts the next one, and then waits as well.
    pub restart_wait: Duration,
    /// This fleet's identity, given to every child as `MCP_FLEET_INSTANCE` so that a later
    /// start can find and end children an earlier, killed instance left behind.
    pub instance_id: String,
    /// Environment variables children inherit from the manager, beyond the base set
    /// (`PATH`, `HOME`, `LANG`, ...; see `process::BASE_ENV`).
    pub inherit_env: Vec<String>,
    /// How often each server's process tree is read from `/proc` for the process metrics (and
    /// its requests in flight counted); zero turns sampling off.
    pub sample_every: Duration,
}

impl Default for ServerManagerConfig {
    fn default() -> Self {
        ServerManagerConfig {
            request_timeout: Duration::from_secs(60),
            // `npx -y` may download a package before the server answers.
            handshake_timeout: Duration::from_secs(60),
            discover_timeout: Duration::from_secs(5),
            stop_grace: Duration::from_secs(3),
            max_message_bytes: fleet_protocol::codec::DEFAULT_MAX_MESSAGE_BYTES,
            stdin_queue: 1024,
            stderr_ring_bytes: 1024 * 1024,
            report_every: Duration::from_secs(1),
            restart_wait: Duration::from_secs(10),
            instance_id: crate::process::new_instance_id(),
            inherit_env: Vec::new(),
            sample_every: Duration::from_secs(5),
        }
    }
}

impl ServerManagerConfig {
    /// The timeout of a call to `spec`'s server that names none: the server's own, else the
    /// manager's. The actor and the lane both apply it.
    pub(crate) fn request_timeout_of(&self, spec: &ServerSpec) -> Duration {
        spec.request_timeout.unwrap_or(self.request_timeout)
    }
}

/// What the server manager is started with.
#[derive(Clone)]
pub struct ServerManagerArgs {
    /// Shared with every server's actor. (An `Arc` keeps the arguments small: kameo holds them
    /// in the actor's task.)
    pub config: Arc<ServerManagerConfig>,
    /// Where metric events go, if anywhere.
    pub metrics: Option<Recipient<RecordMetric>>,
    /// Kept current with the actor of every server the manager has, for callers that send
    /// `CallServer` to the server directly (the gateway) instead of through the manager.
    pub directory: Option<ServerDirectory>,
    /// What a manager restarted after a crash takes over from the one before it: give every
    /// incarnation the same one (a supervisor's factory cloning these arguments does).
    pub memory: ManagerMemory,
}

/// Each server's actor (its `CallServer` recipient) and lane, by server name. Shared: the
/// manager writes it, callers read it. A server missing from it is asked through the manager.
pub type ServerDirectory = Arc<RwLock<HashMap<String, DirectEntry>>>;

/// One server in a [`ServerDirectory`].
pub type DirectEntry = DirectServer<ReplyRecipient<CallServer, CallAnswer, FleetError>>;

/// Writes to a directory whose lock a panicking reader poisoned still work.
pub(crate) fn directory_write(
    directory: &ServerDirectory,
) -> std::sync::RwLockWriteGuard<'_, HashMap<String, DirectEntry>> {
    directory
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) struct Entry {
    pub actor: ActorRef<ServerActor>,
    /// The latest status the server's actor published.
    pub status: watch::Receiver<ServerStatus>,
    /// Set when the server's actor died: the published status is then out of date.
    pub died: Option<String>,
    pub stderr: SharedStderr,
    pub counters: Arc<LiveCounters>,
}

impl Entry {
    pub fn status(&self) -> ServerStatus {
        let mut s = self.status.borrow().clone();
        if let Some(reason) = &self.died {
            s.state = ServerState::Failed {
                reason: reason.clone(),
            };
            s.pid = None;
        }
        s.stderr_lines = stderr::lock(&self.stderr).total();
        s.in_flight = self.counters.in_flight.load(Ordering::Relaxed);
        s
    }
}

/// The server manager: its state, boxed. kameo keeps an actor's state by value in the actor's
/// task, more than once over, so a boxed state keeps every manager's task small.
#[derive(derive_more::Deref, derive_more::DerefMut)]
#[deref(forward)]
#[deref_mut(forward)]
pub struct ServerManager(Box<State>);

/// What the server manager keeps.
pub struct State {
    pub(crate) config: Arc<ServerManagerConfig>,
    pub(crate) metrics: Option<Recipient<RecordMetric>>,
    pub(crate) servers: BTreeMap<String, Entry>,
    pub(crate) events: EventHub,
    counter: MessageCounter,
    /// Messages every server actor handled since the last report; they add, the manager reports.
    pub(crate) server_messages: Arc<AtomicU64>,
    /// Set by `StopAllServers`: see `ServerActorArgs::stopping_all`.
    pub(crate) stopping_all: Arc<std::sync::atomic::AtomicBool>,
    /// The callers of each restart under way, by its number. A restart asked for meanwhile
    /// joins the server's (`joinable`) rather than stopping the process the first has just
    /// started; a stop or removal since makes it unjoinable (a later restart starts anew).
    pub(crate) restarts: HashMap<
        u64,
        Vec<kameo::reply::ReplySender<fleet_protocol::messages::server::RestartServerReply>>,
    >,
    pub(crate) joinable: BTreeMap<String, u64>,
    pub(crate) next_restart: u64,
    /// How many stops (`StopServer`, `RemoveServer`, `StopAllServers`) were asked for: each
    /// stop carries its number to the server, and a restart the number before it.
    pub(crate) stops: u64,
    pub(crate) directory: Option<ServerDirectory>,
    pub(crate) memory: ManagerMemory,
}

/// How long a restarted manager waits for the actors of the manager before it to stop.
const PREVIOUS_STOP_WAIT: Duration = Duration::from_secs(5);

impl Actor for ServerManager {
    type Args = ServerManagerArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "ServerManager"
    }

    async fn on_start(args: Self::Args, actor_ref: ActorRef<Self>) -> Result<Self, Self::Error> {
        let every = args.config.report_every;
        let previous = args.memory.take_previous();
        if let Some(previous) = &previous {
            // The servers of the manager before end first (each actor's stop kills its process
            // group and waits for the exit), so that none runs twice.
            for actor in &previous.actors {
                actor.kill();
            }
            let stops = previous
                .actors
                .iter()
                .map(|actor| actor.wait_for_shutdown_result());
            if tokio::time::timeout(PREVIOUS_STOP_WAIT, futures::future::join_all(stops))
                .await
                .is_err()
            {
                tracing::error!("server actors of the manager before did not stop in time");
            }
        }
        let events = args.memory.events(previous.is_some());
        let mut manager = ServerManager(Box::new(State {
            config: args.config,
            metrics: args.metrics,
            servers: BTreeMap::new(),
            events,
            counter: MessageCounter::new(Instant::now(), every),
            server_messages: Arc::new(AtomicU64::new(0)),
            stopping_all: Arc::default(),
            restarts: HashMap::new(),
            joinable: BTreeMap::new(),
            next_restart: 0,
            stops: 0,
            directory: args.directory.inspect(|d| {
                // Entries of a manager before are stale: its actors are gone.
                directory_write(d).clear();
            }),
            memory: args.memory,
        }));
        if let Some(previous) = previous {
            tracing::warn!(
                servers = previous.servers.len(),
                "server manager restarted after a failure: launching its servers again (those stopped on request stay stopped)"
            );
            for (spec, run) in previous.servers {
                manager.launch(spec, run, &actor_ref).await;
            }
        }
        Ok(manager)
    }

    async fn on_link_died(
        &mut self,
        _: WeakActorRef<Self>,
        id: ActorId,
        reason: ActorStopReason,
    ) -> Result<ControlFlow<ActorStopReason>, Self::Error> {
        // A server's actor died (it panicked): its process went with it (its on_stop kills the
        // group). Mark the server failed; the manager itself carries on.
        let state = &mut *self.0;
        if let Some((name, entry)) = state.servers.iter_mut().find(|(_, e)| e.actor.id() == id) {
            tracing::error!(server = %name, ?reason, "server actor died");
            entry.died = Some(format!("its actor died: {reason}"));
            if let Some(d) = &state.directory {
                directory_write(d).remove(name);
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        _: ActorStopReason,
    ) -> Result<(), Self::Error> {
        // The backstop of shutdown: a server not stopped in order is killed with its actor.
        for entry in self.servers.values() {
            entry.actor.kill();
        }
        for entry in self.servers.values() {
            // After the actor's `on_stop` (`wait_for_shutdown` returns once the mailbox closes).
            let _ = entry.actor.wait_for_shutdown_result().await;
        }
        self.report();
        Ok(())
    }
}

impl ServerManager {
    /// Counts a handled message; reports a batch to metrics now and then.
    pub(crate) fn count(&mut self) {
        if let Some(n) = self.counter.record(Instant::now()) {
            self.send_count(n);
        }
    }

    /// The number of a stop asked for now (see `stops`).
    pub(crate) fn next_stop(&mut self) -> u64 {
        self.stops += 1;
        self.stops
    }

    /// Reports whatever count is pending (on stop).
    fn report(&mut self) {
        if let Some(n) = self.counter.take(Instant::now()) {
            self.send_count(n);
        }
    }

    /// Reports the manager's own count, and what the server actors handled since the last one.
    fn send_count(&self, count: u64) {
        let Some(m) = &self.metrics else { return };
        let servers = self.server_messages.swap(0, Ordering::Relaxed);
        for (actor, count) in [
            (crate::ACTOR_NAME, count),
            (crate::SERVER_ACTOR_NAME, servers),
        ] {
            if count > 0 {
                let event = MetricEvent::MessagesHandled {
                    actor: actor.into(),
                    count,
                };
                let _ = m.tell(RecordMetric { event }).try_send();
            }
        }
    }
}

/// Turns a failed ask to one of our actors into the fleet's error.
pub(crate) fn send_error<M>(e: SendError<M, FleetError>, actor: &str) -> FleetError {
    match e {
        SendError::HandlerError(e) => e,
        SendError::ActorNotRunning(_) | SendError::ActorStopped => FleetError::ActorUnavailable {
            actor: actor.into(),
            reason: "not running".into(),
        },
        SendError::ActorRestarting(_) => FleetError::ActorUnavailable {
            actor: actor.into(),
            reason: "restarting".into(),
        },
        SendError::MailboxFull(_) => FleetError::ActorUnavailable {
            actor: actor.into(),
            reason: "mailbox full".into(),
        },
        SendError::Timeout(_) => FleetError::ActorUnavailable {
            actor: actor.into(),
            reason: "timed out".into(),
        },
    }
}
