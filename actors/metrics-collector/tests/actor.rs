//! Drives the real metrics-collector actor through its protocol messages and checks the exact
//! aggregates it reports.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fleet_metrics_collector::{ACTOR_NAME, MetricsCollector, MetricsCollectorConfig};
use fleet_protocol::ExitInfo;
use fleet_protocol::messages::metrics::{
    ExitReason, FlushMetrics, GetMetrics, MetricEvent, MetricsSnapshot, RecordMetric,
    RequestOutcome,
};
use kameo::actor::{ActorRef, Spawn};

/// The failure deadline for any single step; steps normally take microseconds.
const DEADLINE: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, fut: impl IntoFuture<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {DEADLINE:?}"),
    }
}

/// A collector that reports its own message count only on a flush.
fn spawn_quiet() -> ActorRef<MetricsCollector> {
    MetricsCollector::spawn(MetricsCollectorConfig {
        report_every: Duration::from_secs(3600),
    })
}

async fn record(actor: &ActorRef<MetricsCollector>, event: MetricEvent) {
    within("tell RecordMetric", actor.tell(RecordMetric { event }))
        .await
        .expect("the collector takes RecordMetric");
}

async fn flush_and_get(actor: &ActorRef<MetricsCollector>) -> Arc<MetricsSnapshot> {
    within("ask FlushMetrics", actor.ask(FlushMetrics))
        .await
        .expect("the collector answers FlushMetrics");
    within("ask GetMetrics", actor.ask(GetMetrics))
        .await
        .expect("the collector answers GetMetrics")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn request(server: &str, method: &str, latency: Duration, outcome: RequestOutcome) -> MetricEvent {
    MetricEvent::Request {
        server: server.to_owned(),
        method: method.to_owned(),
        tool: None,
        latency,
        outcome,
    }
}

fn exit(server: &str, expected: bool) -> MetricEvent {
    MetricEvent::ServerExited {
        server: server.to_owned(),
        exit: ExitInfo {
            code: Some(if expected { 0 } else { 1 }),
            signal: None,
            at: SystemTime::UNIX_EPOCH,
            reason: None,
        },
        reason: if expected {
            ExitReason::Stopped
        } else {
            ExitReason::ExitedError
        },
    }
}

#[tokio::test]
async fn n_requests_count_exactly_n_with_their_latency() {
    let actor = spawn_quiet();
    const N: u64 = 500;
    for i in 1..=N {
        record(
            &actor,
            request("a", "tools/call", ms(i), RequestOutcome::Ok),
        )
        .await;
    }

    let snap = flush_and_get(&actor).await;
    let a = &snap.servers["a"];
    assert_eq!(a.requests_ok, N);
    assert_eq!(
        (a.requests_error, a.requests_timeout, a.requests_failed),
        (0, 0, 0)
    );
    assert_eq!(a.request_latency.count, N);
    assert_eq!(a.request_latency.min, Some(ms(1)));
    assert_eq!(a.request_latency.max, Some(ms(N)));
    assert_eq!(a.request_latency.last, Some(ms(N)));
    assert_eq!(a.request_latency.total, ms(N * (N + 1) / 2));
    assert_eq!(
        a.request_latency.mean(),
        Some(ms(N * (N + 1) / 2) / N as u32)
    );
    // N events, plus the one batch of the collector's own count taken by the flush.
    assert_eq!(snap.events, N + 1);
    // The N RecordMetric messages and the FlushMetrics itself.
    assert_eq!(snap.actors[ACTOR_NAME].messages, N + 1);
}

#[tokio::test]
async fn every_event_kind_lands_in_its_aggregate() {
    let actor = spawn_quiet();
    let s = |name: &str| name.to_owned();
    let events = vec![
        MetricEvent::ServerStarted { server: s("a") },
        MetricEvent::ServerStarted { server: s("a") },
        MetricEvent::ServerReady {
            server: s("a"),
            handshake: ms(40),
        },
        MetricEvent::ServerReady {
            server: s("a"),
            handshake: ms(20),
        },
        MetricEvent::LaunchFailed { server: s("a") },
        MetricEvent::ServerStopped { server: s("a") },
        exit("a", true),
        exit("a", false),
        exit("a", false),
        MetricEvent::Probe {
            server: s("a"),
            latency: ms(3),
            ok: true,
        },
        MetricEvent::Probe {
            server: s("a"),
            latency: ms(4),
            ok: true,
        },
        MetricEvent::Probe {
            server: s("a"),
            latency: ms(900),
            ok: false,
        },
        request("a", "tools/list", ms(5), RequestOutcome::Error),
        request("a", "tools/call", ms(7), RequestOutcome::Timeout),
        request("a", "tools/call", ms(9), RequestOutcome::Failed),
        MetricEvent::BadStdoutLine { server: s("a") },
        MetricEvent::StderrLines {
            server: s("a"),
            count: 17,
        },
        MetricEvent::StderrLines {
            server: s("a"),
            count: 3,
        },
        MetricEvent::MessagesHandled {
            actor: s("server-manager"),
            count: 41,
        },
        MetricEvent::MessagesHandled {
            actor: s("server-manager"),
            count: 1,
        },
        MetricEvent::ActorRestarted {
            actor: s("health-monitor"),
        },
    ];
    let sent = events.len() as u64;
    for event in events {
        record(&actor, event).await;
    }

    let snap = flush_and_get(&actor).await;
    let a = &snap.servers["a"];
    assert_eq!(a.starts, 2);
    assert_eq!(a.ready, 2);
    assert_eq!(a.handshake.count, 2);
    assert_eq!(a.handshake.min, Some(ms(20)));
    assert_eq!(a.handshake.max, Some(ms(40)));
    assert_eq!(a.launch_failures, 1);
    assert_eq!(a.stops, 1);
    assert_eq!(a.exits, 3);
    assert_eq!(a.unexpected_exits, 2);
    assert_eq!((a.probes_ok, a.probes_failed), (2, 1));
    assert_eq!(
        a.probe_latency.count, 3,
        "failed probes' latency counts too"
    );
    assert_eq!(a.probe_latency.max, Some(ms(900)));
    assert_eq!(
        (
            a.requests_ok,
            a.requests_error,
            a.requests_timeout,
            a.requests_failed
        ),
        (0, 1, 1, 1)
    );
    assert_eq!(a.request_latency.count, 3);
    assert_eq!(a.request_latency.total, ms(21));
    assert_eq!(a.bad_stdout_lines, 1);
    assert_eq!(a.stderr_lines, 20);
    assert_eq!(snap.actors["server-manager"].messages, 42);
    assert_eq!(snap.actors["server-manager"].restarts, 0);
    assert_eq!(snap.actors["health-monitor"].restarts, 1);
    assert_eq!(snap.servers.len(), 1);
    assert_eq!(snap.events, sent + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_lose_nothing() {
    let actor = spawn_quiet();
    const TASKS: u64 = 8;
    const PER_TASK: u64 = 300;

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let actor = actor.clone();
        tasks.push(tokio::spawn(async move {
            let own = format!("server-{t}");
            for i in 0..PER_TASK {
                let outcome = if i % 3 == 0 {
                    RequestOutcome::Timeout
                } else {
                    RequestOutcome::Ok
                };
                actor
                    .tell(RecordMetric {
                        event: request("shared", "tools/call", ms(1 + t), outcome),
                    })
                    .await
                    .expect("the collector takes RecordMetric");
                actor
                    .tell(RecordMetric {
                        event: MetricEvent::StderrLines {
                            server: own.clone(),
                            count: 2,
                        },
                    })
                    .await
                    .expect("the collector takes RecordMetric");
            }
        }));
    }
    for task in tasks {
        within("sender task", task)
            .await
            .expect("a sender task panicked");
    }

    let snap = flush_and_get(&actor).await;
    let timeouts_per_task = PER_TASK.div_ceil(3);
    let shared = &snap.servers["shared"];
    assert_eq!(shared.requests_timeout, TASKS * timeouts_per_task);
    assert_eq!(shared.requests_ok, TASKS * (PER_TASK - timeouts_per_task));
    assert_eq!(shared.request_latency.count, TASKS * PER_TASK);
    assert_eq!(shared.request_latency.min, Some(ms(1)));
    assert_eq!(shared.request_latency.max, Some(ms(TASKS)));
    let expected_total: u64 = (0..TASKS).map(|t| (1 + t) * PER_TASK).sum();
    assert_eq!(shared.request_latency.total, ms(expected_total));
    for t in 0..TASKS {
        assert_eq!(
            snap.servers[&format!("server-{t}")].stderr_lines,
            2 * PER_TASK
        );
    }
    assert_eq!(snap.servers.len() as u64, TASKS + 1);
    let sent = 2 * TASKS * PER_TASK;
    assert_eq!(snap.events, sent + 1);
    assert_eq!(snap.actors[ACTOR_NAME].messages, sent + 1);
}

#[tokio::test]
async fn a_snapshot_is_a_copy() {
    let actor = spawn_quiet();
    record(&actor, MetricEvent::BadStdoutLine { server: "a".into() }).await;
    let before = flush_and_get(&actor).await;

    record(&actor, MetricEvent::BadStdoutLine { server: "a".into() }).await;
    record(&actor, MetricEvent::ServerStarted { server: "b".into() }).await;
    let after = flush_and_get(&actor).await;

    assert_eq!(before.servers["a"].bad_stdout_lines, 1);
    assert!(!before.servers.contains_key("b"));
    assert_eq!(after.servers["a"].bad_stdout_lines, 2);
    assert_eq!(after.servers["b"].starts, 1);
}

#[tokio::test]
async fn own_count_is_reported_as_it_goes_when_due() {
    // A zero period makes every message a due batch of one, so no flush is needed.
    let actor = MetricsCollector::spawn(MetricsCollectorConfig {
        report_every: Duration::ZERO,
    });
    const N: u64 = 10;
    for _ in 0..N {
        record(&actor, MetricEvent::ServerStarted { server: "a".into() }).await;
    }
    let snap = within("ask GetMetrics", actor.ask(GetMetrics))
        .await
        .expect("the collector answers GetMetrics");

    // N RecordMetric and the GetMetrics, each its own batch and so its own event.
    assert_eq!(snap.actors[ACTOR_NAME].messages, N + 1);
    assert_eq!(snap.servers["a"].starts, N);
    assert_eq!(snap.events, N + N + 1);
}

#[tokio::test]
async fn a_snapshot_without_a_flush_leaves_a_pending_count_out() {
    let actor = spawn_quiet();
    record(&actor, MetricEvent::ServerStarted { server: "a".into() }).await;
    let snap = within("ask GetMetrics", actor.ask(GetMetrics))
        .await
        .expect("the collector answers GetMetrics");
    assert_eq!(snap.servers["a"].starts, 1);
    assert!(!snap.actors.contains_key(ACTOR_NAME));
    assert_eq!(snap.events, 1);
}

#[test]
fn config_defaults_to_reporting_every_second() {
    assert_eq!(
        MetricsCollectorConfig::default().report_every,
        Duration::from_secs(1)
    );
}
