//! The metric events the server manager and its server actors send, with a real reference
//! server: state changes, the tool label (declared names only), cancelled requests, `/proc`
//! samples, exits by reason, restarts, and the handled-message counts.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{config, quick_restarts, reference, wait_for};
use fleet_protocol::messages::health::HealthChanged;
use fleet_protocol::messages::metrics::{
    ExitReason, MetricEvent, RecordMetric, RequestOutcome, UNDECLARED_TOOL,
};
use fleet_protocol::messages::server::{
    CallServer, GetServerStatus, LaneCall, LaunchServer, StopAllServers,
};
use fleet_server_manager::{
    ServerDirectory, ServerManager, ServerManagerArgs, ServerManagerConfig,
};
use kameo::Actor;
use kameo::actor::{ActorRef, Spawn};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

type Events = Arc<Mutex<Vec<MetricEvent>>>;

/// Keeps every metric event, in order (the collector is not under test here).
struct MetricSink(Events);

impl Actor for MetricSink {
    type Args = Events;
    type Error = Infallible;
    async fn on_start(events: Events, _: ActorRef<Self>) -> Result<Self, Infallible> {
        Ok(MetricSink(events))
    }
}

impl Message<RecordMetric> for MetricSink {
    type Reply = ();
    async fn handle(&mut self, msg: RecordMetric, _: &mut Context<Self, ()>) {
        self.0.lock().unwrap().push(msg.event);
    }
}

fn spawn_with_metrics(config: ServerManagerConfig) -> (ActorRef<ServerManager>, Events) {
    spawn_with_directory(config, None)
}

fn spawn_with_directory(
    config: ServerManagerConfig,
    directory: Option<ServerDirectory>,
) -> (ActorRef<ServerManager>, Events) {
    let events = Events::default();
    let sink = MetricSink::spawn(events.clone());
    let manager = ServerManager::spawn(ServerManagerArgs {
        config: std::sync::Arc::new(config),
        metrics: Some(sink.recipient()),
        directory,
        memory: Default::default(),
    });
    (manager, events)
}

fn call(server: &str, method: &str, params: Value) -> CallServer {
    CallServer::new(server, method, Some(params))
}

/// The first event matching `pick`, waiting up to 10 s for it.
async fn next_matching<T>(
    events: &Events,
    what: &str,
    pick: impl Fn(&MetricEvent) -> Option<T>,
) -> T {
    wait_for(Duration::from_secs(10), what, || async {
        events.lock().unwrap().iter().find_map(&pick)
    })
    .await
}

/// Every event, batches unpacked, in order.
fn unpacked(events: &[MetricEvent]) -> Vec<&MetricEvent> {
    events
        .iter()
        .flat_map(|e| match e {
            MetricEvent::Batch(batch) => unpacked(batch),
            e => vec![e],
        })
        .collect()
}

fn requests(events: &Events) -> Vec<(String, Option<String>, RequestOutcome)> {
    unpacked(&events.lock().unwrap())
        .into_iter()
        .filter_map(|e| match e {
            MetricEvent::Request {
                method,
                tool,
                outcome,
                ..
            } => Some((method.clone(), tool.clone(), *outcome)),
            _ => None,
        })
        .collect()
}

/// Waits for the four requests both request tests make (an `echo`, a tool the server did not
/// declare, a listing, a `sleep` that ends as `sleep_ended`) and checks how each was recorded.
async fn assert_four_requests(events: &Events, sleep_ended: RequestOutcome) {
    wait_for(Duration::from_secs(5), "four requests recorded", || async {
        (requests(events).len() == 4).then_some(())
    })
    .await;
    let tool = |t: &str| Some(t.to_owned());
    assert_eq!(
        requests(events),
        [
            ("tools/call".into(), tool("echo"), RequestOutcome::Ok),
            (
                "tools/call".into(),
                tool(UNDECLARED_TOOL),
                RequestOutcome::Error
            ),
            ("tools/list".into(), None, RequestOutcome::Ok),
            ("tools/call".into(), tool("sleep"), sleep_ended),
        ]
    );
}

#[tokio::test]
async fn requests_carry_declared_tools_and_cancellations_and_processes_are_sampled() {
    let (manager, events) = spawn_with_metrics(ServerManagerConfig {
        sample_every: Duration::from_millis(100),
        report_every: Duration::from_millis(50),
        ..config()
    });
    let spec = reference("m", &[]);
    let status = manager.ask(LaunchServer { spec }).await.unwrap();
    let pid = status.pid.unwrap();

    let states: Vec<&str> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            MetricEvent::StateChanged { state, .. } => Some(*state),
            _ => None,
        })
        .collect();
    assert_eq!(states, ["starting", "initializing", "ready"]);

    manager
        .ask(call(
            "m",
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "x"}}),
        ))
        .await
        .unwrap();
    // The server answers an unknown tool with an error; the label must not take its name.
    let _ = manager
        .ask(call(
            "m",
            "tools/call",
            json!({"name": "made-up-by-a-client"}),
        ))
        .await;
    manager
        .ask(call("m", "tools/list", json!({})))
        .await
        .unwrap();
    let cancel = CancellationToken::new();
    let mut slow = call(
        "m",
        "tools/call",
        json!({"name": "sleep", "arguments": {"ms": 5000}}),
    );
    slow.cancel = Some(cancel.clone());
    let asked = tokio::spawn({
        let manager = manager.clone();
        async move { manager.ask(slow).await }
    });
    wait_for(Duration::from_secs(5), "the sleep in flight", || async {
        let s = manager
            .ask(GetServerStatus { name: "m".into() })
            .await
            .ok()?;
        (s.in_flight == 1).then_some(())
    })
    .await;
    // Sampled while the sleep is in flight (a sample from before, during the handshake, may
    // count one of its requests: only later ones count here).
    let seen = events.lock().unwrap().len();
    let sample = wait_for(
        Duration::from_secs(10),
        "a sample with the sleep in flight",
        || async {
            events.lock().unwrap()[seen..].iter().find_map(|e| match e {
                MetricEvent::ProcessSampled { sample, .. } if sample.in_flight == 1 => {
                    Some(*sample)
                }
                _ => None,
            })
        },
    )
    .await;
    assert_eq!(sample.processes, 1);
    assert!(sample.resident_bytes > 100_000, "{sample:?}");
    assert!(sample.open_fds >= 3, "{sample:?}");
    cancel.cancel();
    assert!(asked.await.unwrap().is_err());

    assert_four_requests(&events, RequestOutcome::Cancelled).await;

    // The manager reports its own messages and, apart, the server actors', at its next message
    // once `report_every` has passed (here each status query is one).
    for kind in ["server", "server-manager"] {
        wait_for(Duration::from_secs(10), kind, || async {
            let _ = manager.ask(GetServerStatus { name: "m".into() }).await;
            events.lock().unwrap().iter().find_map(|e| match e {
                MetricEvent::MessagesHandled { actor, count } if actor == kind && *count > 0 => {
                    Some(())
                }
                _ => None,
            })
        })
        .await;
    }

    manager.ask(StopAllServers).await.unwrap();
    let reason = next_matching(&events, "the exit", |e| match e {
        MetricEvent::ServerExited { reason, .. } => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, ExitReason::Stopped);
    assert!(!common::group_alive(pid));
}

/// Calls by a server's lane (as the gateway sends them) are recorded as the actor's are: the
/// same declared-tool label and outcomes.
#[tokio::test]
async fn calls_by_the_lane_are_recorded_as_the_actors_are() {
    let directory = ServerDirectory::default();
    let (manager, events) = spawn_with_directory(config(), Some(directory.clone()));
    manager
        .ask(LaunchServer {
            spec: reference("l", &[]),
        })
        .await
        .unwrap();
    let lane = directory.read().unwrap()["l"].lane.clone();
    let mut timed = call(
        "l",
        "tools/call",
        json!({"name": "sleep", "arguments": {"ms": 5000}}),
    );
    timed.timeout = Some(Duration::from_millis(100));
    for c in [
        call(
            "l",
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "x"}}),
        ),
        call("l", "tools/call", json!({"name": "made-up-by-a-client"})),
        call("l", "tools/list", json!({})),
        timed,
    ] {
        let LaneCall::Sent(answer) = lane.call(c) else {
            panic!("the lane of a ready server takes an ordinary call");
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("answered");
    }
    assert_four_requests(&events, RequestOutcome::Timeout).await;
}

#[tokio::test]
async fn exits_say_why_and_each_restart_is_counted_once() {
    let (manager, events) = spawn_with_metrics(config());
    let spec = reference("k", &[]).with_restart(quick_restarts(5));
    let first = manager
        .ask(LaunchServer { spec })
        .await
        .unwrap()
        .pid
        .unwrap();

    // Killed by someone else: `signaled`, then one restart.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    next_matching(&events, "the restart", |e| {
        matches!(e, MetricEvent::ServerRestarted { .. }).then_some(())
    })
    .await;
    // Killed by the fleet for failing its probes: `unresponsive`.
    let ready_twice =
        |e: &MetricEvent| matches!(e, MetricEvent::StateChanged { state: "ready", .. });
    wait_for(Duration::from_secs(10), "ready again", || async {
        (events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| ready_twice(e))
            .count()
            == 2)
            .then_some(())
    })
    .await;
    manager
        .tell(HealthChanged {
            server: "k".into(),
            healthy: false,
            consecutive_failures: 3,
            reason: Some("test".into()),
            pid: None,
            started_at: None,
        })
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(10),
        "two exits and two restarts",
        || async {
            let e = events.lock().unwrap();
            let exits = e
                .iter()
                .filter(|e| matches!(e, MetricEvent::ServerExited { .. }))
                .count();
            let restarts = e
                .iter()
                .filter(|e| matches!(e, MetricEvent::ServerRestarted { .. }))
                .count();
            (exits == 2 && restarts == 2).then_some(())
        },
    )
    .await;
    let reasons: Vec<ExitReason> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            MetricEvent::ServerExited { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, [ExitReason::Signaled, ExitReason::Unresponsive]);
    manager.ask(StopAllServers).await.unwrap();
}

/// A launch whose handshake fails is ended by the fleet: its exit is `unresponsive`, and no
/// stop is counted, as none was asked for.
#[tokio::test]
async fn a_failed_handshake_at_a_launch_is_no_stop_asked_for() {
    let (manager, events) = spawn_with_metrics(config());
    let broken = common::python_script(r#"out["error"] = {"code": -32603, "message": "broken"}"#);
    let spec = fleet_protocol::ServerSpec::stdio("broken", "python3", ["-c".to_string(), broken]);
    manager.ask(LaunchServer { spec }).await.unwrap_err();
    let reason = next_matching(&events, "the exit", |e| match e {
        MetricEvent::ServerExited { reason, .. } => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, ExitReason::Unresponsive);
    let stops = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, MetricEvent::ServerStopped { .. }))
        .count();
    assert_eq!(stops, 0);
    manager.ask(StopAllServers).await.unwrap();
}

#[tokio::test]
async fn request_metrics_come_in_batches_and_none_is_lost() {
    const CALLS: usize = 150;
    let (manager, events) = spawn_with_metrics(config());
    manager
        .ask(LaunchServer {
            spec: reference("b", &[]),
        })
        .await
        .unwrap();
    let started = std::time::Instant::now();
    for i in 0..CALLS {
        manager
            .ask(call(
                "b",
                "tools/call",
                json!({"name": "echo", "arguments": {"message": format!("{i}")}}),
            ))
            .await
            .unwrap();
    }
    let took = started.elapsed();
    // The last, partial batch comes once its time is up, with nothing else happening.
    wait_for(Duration::from_secs(5), "every request recorded", || async {
        (requests(&events).len() == CALLS).then_some(())
    })
    .await;
    let messages = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, MetricEvent::Request { .. } | MetricEvent::Batch(_)))
        .count();
    // At most a message per full batch, plus one per flush interval the calls spanned and the
    // last one: far fewer than a message per request.
    let intervals = (took.as_millis() / 100) as usize + 2;
    assert!(
        messages <= CALLS / 64 + intervals,
        "{messages} messages for {CALLS} requests in {took:?}"
    );
    manager.ask(StopAllServers).await.unwrap();
}
