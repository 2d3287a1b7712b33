//! Drives the real health monitor against a scripted fleet: a test actor answering `ListServers`
//! and `ProbeServer` as the server manager would, and sinks collecting what the monitor emits.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fleet_health_monitor::{ACTOR_NAME, HealthMonitor, HealthMonitorArgs, HealthMonitorConfig};
use fleet_protocol::messages::health::{GetHealth, HealthChanged, ProbeAll, ProbeResult};
use fleet_protocol::messages::metrics::{MetricEvent, RecordMetric};
use fleet_protocol::messages::server::{ListServers, ProbeServer};
use fleet_protocol::{FleetError, ServerHealthPolicy, ServerState, ServerStatus};
use kameo::actor::{Actor, ActorRef, Spawn};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use kameo::reply::{DelegatedReply, ReplySender};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender, error::TryRecvError};
use tokio::time::timeout;

/// The failure deadline of every wait; a passing test never comes near it.
const DEADLINE: Duration = Duration::from_secs(10);
/// Long enough that no tick fires during a test driven by `ProbeAll`.
const NO_TICKS: Duration = Duration::from_secs(3600);
const LATENCY: Duration = Duration::from_millis(1);

/// How a scripted server answers a probe.
#[derive(Debug, Clone, Copy)]
enum Behavior {
    Answer,
    Fail,
    /// Never answers (the reply is held until the fleet stops).
    Hang,
}

/// What the scripted fleet was asked, and when.
#[derive(Debug)]
enum FleetCall {
    List(Instant),
    /// A probe of the server, with the timeout it was given.
    Probe(String, Duration),
}

/// Stands in for the server manager.
struct FakeFleet {
    servers: BTreeMap<String, (ServerStatus, Behavior)>,
    calls: UnboundedSender<FleetCall>,
    hung: Vec<ReplySender<Result<Duration, FleetError>>>,
}

impl Actor for FakeFleet {
    type Args = Self;
    type Error = Infallible;

    async fn on_start(args: Self, _: ActorRef<Self>) -> Result<Self, Infallible> {
        Ok(args)
    }
}

impl Message<ListServers> for FakeFleet {
    type Reply = Vec<ServerStatus>;

    async fn handle(&mut self, _: ListServers, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let _ = self.calls.send(FleetCall::List(Instant::now()));
        self.servers.values().map(|(s, _)| s.clone()).collect()
    }
}

impl Message<ProbeServer> for FakeFleet {
    type Reply = DelegatedReply<Result<Duration, FleetError>>;

    async fn handle(
        &mut self,
        msg: ProbeServer,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let _ = self
            .calls
            .send(FleetCall::Probe(msg.name.clone(), msg.timeout));
        match self.servers.get(&msg.name).map(|(_, b)| *b) {
            Some(Behavior::Answer) => ctx.reply(Ok(LATENCY)),
            Some(Behavior::Fail) => ctx.reply(Err(FleetError::ServerExited {
                server: msg.name,
                exit: None,
            })),
            Some(Behavior::Hang) => {
                let (delegated, sender) = ctx.reply_sender();
                self.hung.extend(sender);
                delegated
            }
            None => ctx.reply(Err(FleetError::UnknownServer { name: msg.name })),
        }
    }
}

/// Adds or replaces a scripted server.
struct SetServer(ServerStatus, Behavior);

impl Message<SetServer> for FakeFleet {
    type Reply = ();

    async fn handle(&mut self, SetServer(status, behavior): SetServer, _: &mut Context<Self, ()>) {
        self.servers.insert(status.name.clone(), (status, behavior));
    }
}

/// Removes a scripted server.
struct RemoveServer(&'static str);

impl Message<RemoveServer> for FakeFleet {
    type Reply = ();

    async fn handle(&mut self, RemoveServer(name): RemoveServer, _: &mut Context<Self, ()>) {
        self.servers.remove(name);
    }
}

/// Collects `HealthChanged` events.
struct HealthSink(UnboundedSender<HealthChanged>);

impl Actor for HealthSink {
    type Args = Self;
    type Error = Infallible;

    async fn on_start(args: Self, _: ActorRef<Self>) -> Result<Self, Infallible> {
        Ok(args)
    }
}

impl Message<HealthChanged> for HealthSink {
    type Reply = ();

    async fn handle(&mut self, msg: HealthChanged, _: &mut Context<Self, ()>) {
        let _ = self.0.send(msg);
    }
}

/// Answered once everything told to the sink before it was handled (the mailbox is FIFO).
struct Flush;

impl Message<Flush> for HealthSink {
    type Reply = ();

    async fn handle(&mut self, _: Flush, _: &mut Context<Self, ()>) {}
}

/// Collects metric events.
struct MetricsSink(UnboundedSender<MetricEvent>);

impl Actor for MetricsSink {
    type Args = Self;
    type Error = Infallible;

    async fn on_start(args: Self, _: ActorRef<Self>) -> Result<Self, Infallible> {
        Ok(args)
    }
}

impl Message<RecordMetric> for MetricsSink {
    type Reply = ();

    async fn handle(&mut self, msg: RecordMetric, _: &mut Context<Self, ()>) {
        let _ = self.0.send(msg.event);
    }
}

fn status(name: &str, state: ServerState) -> ServerStatus {
    let mut status = ServerStatus::new(name, state);
    status.pid = Some(1000);
    status
}

fn ready(name: &str) -> ServerStatus {
    status(name, ServerState::Ready)
}

fn config(failure_threshold: u32) -> HealthMonitorConfig {
    HealthMonitorConfig {
        interval: NO_TICKS,
        timeout: Duration::from_secs(2),
        failure_threshold,
        report_every: Duration::from_secs(3600),
    }
}

struct Harness {
    monitor: ActorRef<HealthMonitor>,
    fleet: ActorRef<FakeFleet>,
    calls: UnboundedReceiver<FleetCall>,
    health_sink: ActorRef<HealthSink>,
    health: UnboundedReceiver<HealthChanged>,
    metrics: UnboundedReceiver<MetricEvent>,
}

impl Harness {
    fn start(config: HealthMonitorConfig, servers: Vec<(ServerStatus, Behavior)>) -> Harness {
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let fleet = FakeFleet::spawn(FakeFleet {
            servers: servers
                .into_iter()
                .map(|(s, b)| (s.name.clone(), (s, b)))
                .collect(),
            calls: calls_tx,
            hung: Vec::new(),
        });
        let (health_tx, health) = mpsc::unbounded_channel();
        let health_sink = HealthSink::spawn(HealthSink(health_tx));
        let (metrics_tx, metrics) = mpsc::unbounded_channel();
        let metrics_sink = MetricsSink::spawn(MetricsSink(metrics_tx));
        let monitor = HealthMonitor::spawn(HealthMonitorArgs {
            config,
            servers: fleet.clone().reply_recipient::<ListServers>(),
            probe: fleet.clone().reply_recipient::<ProbeServer>(),
            health_events: vec![health_sink.clone().recipient::<HealthChanged>()],
            metrics: Some(metrics_sink.recipient::<RecordMetric>()),
        });
        Harness {
            monitor,
            fleet,
            calls,
            health_sink,
            health,
            metrics,
        }
    }

    async fn probe_all(&self) -> Vec<ProbeResult> {
        timeout(DEADLINE, self.monitor.ask(ProbeAll))
            .await
            .expect("ProbeAll answered before the deadline")
            .expect("ProbeAll succeeded")
    }

    async fn health(&self) -> Vec<fleet_protocol::messages::health::ServerHealth> {
        timeout(DEADLINE, self.monitor.ask(GetHealth))
            .await
            .expect("GetHealth answered before the deadline")
            .expect("GetHealth succeeded")
    }

    async fn set(&self, status: ServerStatus, behavior: Behavior) {
        self.fleet
            .ask(SetServer(status, behavior))
            .await
            .expect("fleet alive");
    }

    async fn next_health_event(&mut self) -> HealthChanged {
        timeout(DEADLINE, self.health.recv())
            .await
            .expect("a HealthChanged event before the deadline")
            .expect("health sink alive")
    }

    /// Asserts no `HealthChanged` was emitted so far. Sound after a `ProbeAll` answer: the
    /// monitor tells its events before it answers, so the flush is queued behind them.
    async fn assert_no_health_event(&mut self) {
        self.health_sink.ask(Flush).await.expect("sink alive");
        match self.health.try_recv() {
            Err(TryRecvError::Empty) => {}
            other => panic!("expected no HealthChanged, got {other:?}"),
        }
    }

    async fn next_call(&mut self) -> FleetCall {
        timeout(DEADLINE, self.calls.recv())
            .await
            .expect("a fleet call before the deadline")
            .expect("fleet alive")
    }

    async fn next_metric(&mut self) -> MetricEvent {
        timeout(DEADLINE, self.metrics.recv())
            .await
            .expect("a metric before the deadline")
            .expect("metrics sink alive")
    }

    fn drain_calls(&mut self) -> Vec<FleetCall> {
        let mut calls = Vec::new();
        while let Ok(call) = self.calls.try_recv() {
            calls.push(call);
        }
        calls
    }
}

fn names(results: &[ProbeResult]) -> Vec<&str> {
    results.iter().map(|r| r.server.as_str()).collect()
}

#[test]
fn args_can_be_cloned_and_shared_for_supervised_restarts() {
    fn assert_restartable<T: Clone + Send + Sync + 'static>() {}
    assert_restartable::<HealthMonitorArgs>();
    let default = HealthMonitorConfig::default();
    assert_eq!(default.interval, Duration::from_secs(10));
    assert_eq!(default.timeout, Duration::from_secs(5));
    assert_eq!(default.failure_threshold, 3);
    assert_eq!(default.report_every, Duration::from_secs(1));
    assert_eq!(ACTOR_NAME, "health-monitor");
}

#[tokio::test]
async fn unhealthy_after_exactly_threshold_failed_rounds_then_recovered() {
    let mut h = Harness::start(
        config(3),
        vec![(ready("a"), Behavior::Answer), (ready("b"), Behavior::Fail)],
    );

    for round in 1..=2 {
        let results = h.probe_all().await;
        assert_eq!(names(&results), ["a", "b"], "round {round}");
        assert_eq!(results[0].outcome, Ok(LATENCY));
        assert_eq!(results[1].outcome, Err("server `b` exited".to_owned()));
        h.assert_no_health_event().await;
    }

    h.probe_all().await;
    let event = h.next_health_event().await;
    assert_eq!(
        event,
        HealthChanged {
            server: "b".to_owned(),
            healthy: false,
            consecutive_failures: 3,
            reason: Some("server `b` exited".to_owned()),
            // The process probed, as the status named it.
            pid: Some(1000),
            started_at: None,
        }
    );

    // Still failing: no second verdict.
    h.probe_all().await;
    h.assert_no_health_event().await;

    h.set(ready("b"), Behavior::Answer).await;
    h.probe_all().await;
    let event = h.next_health_event().await;
    assert_eq!(
        event,
        HealthChanged {
            server: "b".to_owned(),
            healthy: true,
            consecutive_failures: 0,
            reason: None,
            pid: Some(1000),
            started_at: None,
        }
    );

    let health = h.health().await;
    assert_eq!(health.len(), 2);
    let (a, b) = (&health[0], &health[1]);
    assert_eq!(a.server, "a");
    assert!(a.healthy);
    assert_eq!((a.probes, a.failures, a.consecutive_failures), (5, 0, 0));
    assert_eq!(a.last_latency, Some(LATENCY));
    assert_eq!(b.server, "b");
    assert!(b.healthy);
    assert_eq!((b.probes, b.failures, b.consecutive_failures), (5, 4, 0));
    assert_eq!(b.last_latency, Some(LATENCY));
    assert_eq!(b.last_error, None);
}

#[tokio::test]
async fn get_health_reports_an_unhealthy_server_with_its_error() {
    let h = Harness::start(config(2), vec![(ready("b"), Behavior::Fail)]);
    h.probe_all().await;
    h.probe_all().await;
    h.probe_all().await;
    let health = h.health().await;
    assert_eq!(health.len(), 1);
    assert!(!health[0].healthy);
    assert_eq!(
        (
            health[0].probes,
            health[0].failures,
            health[0].consecutive_failures
        ),
        (3, 3, 3)
    );
    assert_eq!(health[0].last_latency, None);
    assert_eq!(health[0].last_error.as_deref(), Some("server `b` exited"));
}

#[tokio::test]
async fn only_serving_servers_are_probed() {
    let mut h = Harness::start(
        config(1),
        vec![
            (ready("a"), Behavior::Answer),
            (status("c", ServerState::Stopped), Behavior::Answer),
            (status("d", ServerState::Starting), Behavior::Answer),
            (
                status(
                    "f",
                    ServerState::Failed {
                        reason: "exited".to_owned(),
                    },
                ),
                Behavior::Answer,
            ),
            (status("u", ServerState::Unhealthy), Behavior::Fail),
        ],
    );
    let results = h.probe_all().await;
    assert_eq!(names(&results), ["a", "u"]);

    // The round awaited every probe before answering, so the fleet saw them all.
    let probed: Vec<String> = h
        .drain_calls()
        .into_iter()
        .filter_map(|c| match c {
            FleetCall::Probe(name, _) => Some(name),
            FleetCall::List(_) => None,
        })
        .collect();
    assert_eq!(probed.len(), 2);
    assert!(probed.contains(&"a".to_owned()) && probed.contains(&"u".to_owned()));

    let tracked: Vec<String> = h.health().await.into_iter().map(|s| s.server).collect();
    assert_eq!(tracked, ["a", "u"]);
}

#[tokio::test]
async fn a_servers_own_policy_wins_over_the_monitors() {
    let own = ServerHealthPolicy {
        probe: true,
        timeout: Some(Duration::from_secs(7)),
        failure_threshold: Some(1),
    };
    let off = ServerHealthPolicy {
        probe: false,
        ..ServerHealthPolicy::default()
    };
    let mut h = Harness::start(
        config(3),
        vec![
            (
                ServerStatus {
                    health: own,
                    ..ready("own")
                },
                Behavior::Fail,
            ),
            (
                ServerStatus {
                    health: off,
                    ..ready("off")
                },
                Behavior::Fail,
            ),
            (ready("plain"), Behavior::Fail),
        ],
    );
    let results = h.probe_all().await;
    assert_eq!(
        names(&results),
        ["own", "plain"],
        "`probe = false` is never probed"
    );
    let mut timeouts: Vec<(String, Duration)> = h
        .drain_calls()
        .into_iter()
        .filter_map(|c| match c {
            FleetCall::Probe(name, t) => Some((name, t)),
            FleetCall::List(_) => None,
        })
        .collect();
    timeouts.sort();
    assert_eq!(
        timeouts,
        [
            ("own".to_owned(), Duration::from_secs(7)),
            ("plain".to_owned(), Duration::from_secs(2)),
        ]
    );
    // One failure is enough for `own` (its threshold is 1); `plain` needs the monitor's 3.
    let event = h.next_health_event().await;
    assert_eq!((event.server.as_str(), event.healthy), ("own", false));
    h.assert_no_health_event().await;
}

#[tokio::test]
async fn a_probe_that_never_answers_fails_after_the_timeout_and_the_round_ends() {
    let probe_timeout = Duration::from_millis(200);
    let mut h = Harness::start(
        HealthMonitorConfig {
            timeout: probe_timeout,
            ..config(1)
        },
        vec![(ready("a"), Behavior::Answer), (ready("h"), Behavior::Hang)],
    );
    let results = h.probe_all().await;
    assert_eq!(names(&results), ["a", "h"]);
    assert_eq!(results[0].outcome, Ok(LATENCY));
    let error = results[1].outcome.clone().expect_err("a hung probe fails");
    assert!(error.contains("no answer"), "{error}");

    let event = h.next_health_event().await;
    assert_eq!(event.server, "h");
    assert!(!event.healthy);

    // The failed probe is recorded with the time it took.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        if let MetricEvent::Probe {
            server,
            latency,
            ok,
        } = h.next_metric().await
        {
            seen.push((server, latency, ok));
        }
    }
    seen.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(seen[0], ("a".to_owned(), LATENCY, true));
    assert_eq!(seen[1].0, "h");
    assert!(!seen[1].2);
    assert!(seen[1].1 >= probe_timeout, "{:?}", seen[1].1);

    // The next round runs normally.
    let results = h.probe_all().await;
    assert_eq!(names(&results), ["a", "h"]);
}

#[tokio::test]
async fn the_mailbox_answers_while_a_round_is_under_way() {
    let mut h = Harness::start(
        HealthMonitorConfig {
            timeout: Duration::from_secs(3600),
            ..config(1)
        },
        vec![(ready("h"), Behavior::Hang)],
    );
    let monitor = h.monitor.clone();
    let round = tokio::spawn(async move { monitor.ask(ProbeAll).await });
    loop {
        if let FleetCall::Probe(name, _) = h.next_call().await {
            assert_eq!(name, "h");
            break;
        }
    }
    // The probe of `h` hangs for an hour; GetHealth must not wait for it.
    assert_eq!(h.health().await, []);
    assert!(!round.is_finished());
}

#[tokio::test]
async fn periodic_ticks_probe() {
    let mut h = Harness::start(
        HealthMonitorConfig {
            interval: Duration::from_millis(50),
            ..config(1)
        },
        vec![(ready("a"), Behavior::Answer)],
    );
    loop {
        if let FleetCall::Probe(name, _) = h.next_call().await {
            assert_eq!(name, "a");
            break;
        }
    }
}

#[tokio::test]
async fn a_tick_during_a_round_is_skipped() {
    let probe_timeout = Duration::from_millis(300);
    let mut h = Harness::start(
        HealthMonitorConfig {
            interval: Duration::from_millis(20),
            timeout: probe_timeout,
            ..config(1)
        },
        vec![(ready("a"), Behavior::Answer), (ready("h"), Behavior::Hang)],
    );
    // Every round hangs on `h` until the timeout; ticks come every 20 ms. Overlapping rounds
    // would list the servers every tick; rounds that never overlap list them at most once per
    // timeout.
    let mut lists = Vec::new();
    while lists.len() < 3 {
        if let FleetCall::List(at) = h.next_call().await {
            lists.push(at);
        }
    }
    for pair in lists.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(gap >= probe_timeout, "rounds overlapped: {gap:?} apart");
    }
}

#[tokio::test]
async fn a_probe_all_during_a_round_gets_the_next_round() {
    let mut h = Harness::start(
        HealthMonitorConfig {
            timeout: Duration::from_millis(300),
            ..config(1)
        },
        vec![(ready("h"), Behavior::Hang)],
    );
    let first = {
        let monitor = h.monitor.clone();
        tokio::spawn(async move { monitor.ask(ProbeAll).await })
    };
    loop {
        if let FleetCall::Probe(..) = h.next_call().await {
            break;
        }
    }
    // Asked during the first round: answered by a second one, which lists the servers again.
    let second = h.probe_all().await;
    assert_eq!(names(&second), ["h"]);
    let first = timeout(DEADLINE, first)
        .await
        .expect("first round ended")
        .expect("task ran")
        .expect("ProbeAll succeeded");
    assert_eq!(names(&first), ["h"]);
    let lists = h
        .drain_calls()
        .into_iter()
        .filter(|c| matches!(c, FleetCall::List(_)))
        .count();
    assert_eq!(lists, 1, "the second round listed the servers once more");
    let health = h.health().await;
    assert_eq!(health[0].probes, 2);
}

#[tokio::test]
async fn servers_no_longer_listed_are_dropped() {
    let h = Harness::start(
        config(3),
        vec![
            (ready("a"), Behavior::Answer),
            (ready("b"), Behavior::Answer),
        ],
    );
    h.probe_all().await;
    assert_eq!(h.health().await.len(), 2);
    h.fleet.ask(RemoveServer("b")).await.expect("fleet alive");
    let results = h.probe_all().await;
    assert_eq!(names(&results), ["a"]);
    let tracked: Vec<String> = h.health().await.into_iter().map(|s| s.server).collect();
    assert_eq!(tracked, ["a"]);
}

#[tokio::test]
async fn a_new_process_starts_a_new_failure_run() {
    let mut h = Harness::start(config(2), vec![(ready("b"), Behavior::Fail)]);
    h.probe_all().await;
    h.probe_all().await;
    assert!(!h.next_health_event().await.healthy);

    let mut restarted = ready("b");
    restarted.pid = Some(2000);
    h.set(restarted, Behavior::Fail).await;
    h.probe_all().await;
    h.assert_no_health_event().await;
    let health = h.health().await;
    assert!(health[0].healthy);
    assert_eq!(
        (
            health[0].probes,
            health[0].failures,
            health[0].consecutive_failures
        ),
        (3, 3, 1)
    );

    h.probe_all().await;
    let event = h.next_health_event().await;
    assert!(!event.healthy);
    assert_eq!(event.consecutive_failures, 2);
}

#[tokio::test]
async fn a_server_the_manager_marks_unhealthy_gets_its_recovery() {
    // As after a restart of the monitor: the manager still marks `u` unhealthy.
    let mut h = Harness::start(
        config(3),
        vec![(status("u", ServerState::Unhealthy), Behavior::Answer)],
    );
    h.probe_all().await;
    let event = h.next_health_event().await;
    assert_eq!(event.server, "u");
    assert!(event.healthy);
}

#[tokio::test]
async fn a_manager_that_cannot_list_keeps_the_trackers() {
    let h = Harness::start(config(3), vec![(ready("a"), Behavior::Answer)]);
    h.probe_all().await;
    h.fleet.stop_gracefully().await.expect("fleet stops");
    h.fleet.wait_for_shutdown().await;
    assert_eq!(h.probe_all().await, []);
    let health = h.health().await;
    assert_eq!(health.len(), 1);
    assert_eq!(health[0].probes, 1);
}

#[tokio::test]
async fn handled_messages_are_counted() {
    let mut h = Harness::start(
        HealthMonitorConfig {
            report_every: Duration::ZERO,
            ..config(3)
        },
        vec![(ready("a"), Behavior::Answer)],
    );
    h.health().await;
    loop {
        if let MetricEvent::MessagesHandled { actor, count } = h.next_metric().await {
            assert_eq!(actor, "health-monitor");
            assert!(count >= 1);
            break;
        }
    }
}
