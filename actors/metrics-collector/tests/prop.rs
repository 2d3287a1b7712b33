//! Property tests on the pure core: [`Aggregates`] against counts computed independently from
//! the event sequence, and order independence of everything but the `last` latencies.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use fleet_metrics_collector::Aggregates;
use fleet_protocol::ExitInfo;
use fleet_protocol::messages::metrics::{
    ExitReason, LatencyStats, MetricEvent, MetricsSnapshot, ProcessSample, RequestOutcome,
    SessionEnd,
};
use proptest::prelude::*;

const SERVERS: &[&str] = &["a", "b", "c"];
const ACTORS: &[&str] = &["server-manager", "health-monitor", "metrics-collector"];

fn server() -> impl Strategy<Value = String> {
    prop::sample::select(SERVERS).prop_map(str::to_owned)
}

fn actor() -> impl Strategy<Value = String> {
    prop::sample::select(ACTORS).prop_map(str::to_owned)
}

/// Mostly realistic latencies, sometimes absurd ones that make sums saturate.
fn latency() -> impl Strategy<Value = Duration> {
    prop_oneof![
        8 => (0u64..120_000_000_000).prop_map(Duration::from_nanos),
        1 => (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        1 => Just(Duration::MAX),
    ]
}

/// Mostly small counts, sometimes huge ones that make sums saturate.
fn line_count() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..1000, 1 => any::<u64>()]
}

fn outcome() -> impl Strategy<Value = RequestOutcome> {
    prop_oneof![
        Just(RequestOutcome::Ok),
        Just(RequestOutcome::Error),
        Just(RequestOutcome::Timeout),
        Just(RequestOutcome::Cancelled),
        Just(RequestOutcome::Failed),
    ]
}

fn process_sample() -> impl Strategy<Value = ProcessSample> {
    (
        any::<u64>(),
        0.0f64..1e9,
        any::<u64>(),
        1u64..100,
        0u64..1000,
    )
        .prop_map(
            |(resident_bytes, cpu_seconds, open_fds, processes, in_flight)| ProcessSample {
                resident_bytes,
                cpu_seconds,
                open_fds,
                processes,
                in_flight,
            },
        )
}

fn event() -> impl Strategy<Value = MetricEvent> {
    prop_oneof![
        server().prop_map(|server| MetricEvent::ServerStarted { server }),
        (server(), latency())
            .prop_map(|(server, handshake)| MetricEvent::ServerReady { server, handshake }),
        server().prop_map(|server| MetricEvent::LaunchFailed { server }),
        server().prop_map(|server| MetricEvent::ServerStopped { server }),
        (
            server(),
            prop::sample::select(&ExitReason::ALL[..]),
            any::<Option<i32>>()
        )
            .prop_map(|(server, reason, code)| {
                MetricEvent::ServerExited {
                    server,
                    exit: ExitInfo {
                        code,
                        signal: None,
                        at: SystemTime::UNIX_EPOCH,
                        reason: None,
                    },
                    reason,
                }
            }),
        server().prop_map(|server| MetricEvent::ServerRestarted { server }),
        (
            server(),
            prop::sample::select(&fleet_protocol::ServerState::NAMES[..])
        )
            .prop_map(|(server, state)| MetricEvent::StateChanged { server, state }),
        (server(), process_sample())
            .prop_map(|(server, sample)| MetricEvent::ProcessSampled { server, sample }),
        Just(MetricEvent::SessionCreated),
        prop_oneof![Just(SessionEnd::Expired), Just(SessionEnd::Closed)]
            .prop_map(|reason| MetricEvent::SessionEnded { reason }),
        (
            prop::sample::select(&[200u16, 202, 400, 404, 503][..]),
            1u64..1000
        )
            .prop_map(|(status, count)| MetricEvent::HttpResponses {
                path: "/mcp",
                status,
                count,
            }),
        (server(), latency(), any::<bool>()).prop_map(|(server, latency, ok)| MetricEvent::Probe {
            server,
            latency,
            ok
        }),
        (
            server(),
            prop::sample::select(&["tools/call", "tools/list", "ping"][..]),
            prop::sample::select(&["echo", "add", "_undeclared"][..]),
            latency(),
            outcome()
        )
            .prop_map(
                |(server, method, tool, latency, outcome)| MetricEvent::Request {
                    server,
                    method: method.to_owned(),
                    tool: (method == "tools/call").then(|| tool.to_owned()),
                    latency,
                    outcome,
                }
            ),
        server().prop_map(|server| MetricEvent::BadStdoutLine { server }),
        (server(), line_count())
            .prop_map(|(server, count)| MetricEvent::StderrLines { server, count }),
        (actor(), line_count())
            .prop_map(|(actor, count)| MetricEvent::MessagesHandled { actor, count }),
        actor().prop_map(|actor| MetricEvent::ActorRestarted { actor }),
    ]
}

fn apply_all<'a>(events: impl IntoIterator<Item = &'a MetricEvent>) -> MetricsSnapshot {
    let mut aggregates = Aggregates::new();
    for event in events {
        aggregates.apply(event);
    }
    MetricsSnapshot::clone(&aggregates.snapshot())
}

/// The server an event is about, if any.
fn server_of(event: &MetricEvent) -> Option<&str> {
    match event {
        MetricEvent::ServerStarted { server }
        | MetricEvent::ServerReady { server, .. }
        | MetricEvent::LaunchFailed { server }
        | MetricEvent::ServerStopped { server }
        | MetricEvent::ServerExited { server, .. }
        | MetricEvent::Probe { server, .. }
        | MetricEvent::Request { server, .. }
        | MetricEvent::BadStdoutLine { server }
        | MetricEvent::StderrLines { server, .. }
        | MetricEvent::ServerRestarted { server }
        | MetricEvent::StateChanged { server, .. }
        | MetricEvent::ProcessSampled { server, .. } => Some(server),
        MetricEvent::MessagesHandled { .. }
        | MetricEvent::ActorRestarted { .. }
        | MetricEvent::SessionCreated
        | MetricEvent::SessionEnded { .. }
        | MetricEvent::HttpResponses { .. }
        | MetricEvent::Batch(_) => None,
    }
}

fn actor_of(event: &MetricEvent) -> Option<&str> {
    match event {
        MetricEvent::MessagesHandled { actor, .. } | MetricEvent::ActorRestarted { actor } => {
            Some(actor)
        }
        _ => None,
    }
}

/// A sum of `u64`s as the aggregates keep it: saturating at `u64::MAX`.
fn clamped_sum(values: impl Iterator<Item = u64>) -> u64 {
    let sum: u128 = values.map(u128::from).sum();
    u64::try_from(sum).unwrap_or(u64::MAX)
}

/// A sum of latencies as the aggregates keep it: saturating at `Duration::MAX`.
fn clamped_total(values: impl Iterator<Item = Duration>) -> Duration {
    let nanos: u128 = values.map(|d| d.as_nanos()).sum();
    let secs = nanos / 1_000_000_000;
    match u64::try_from(secs) {
        Ok(secs) => Duration::new(secs, (nanos % 1_000_000_000) as u32),
        Err(_) => Duration::MAX,
    }
}

fn check_latency(stats: &LatencyStats, latencies: &[Duration]) -> Result<(), TestCaseError> {
    prop_assert_eq!(stats.count, latencies.len() as u64);
    prop_assert_eq!(stats.min, latencies.iter().copied().min());
    prop_assert_eq!(stats.max, latencies.iter().copied().max());
    prop_assert_eq!(stats.last, latencies.last().copied());
    prop_assert_eq!(stats.total, clamped_total(latencies.iter().copied()));
    if let (Some(min), Some(max)) = (stats.min, stats.max) {
        prop_assert!(min <= max);
        let mean = stats.mean();
        prop_assert!(mean.is_some_and(|m| m <= max));
    } else {
        prop_assert_eq!(stats.count, 0);
        prop_assert_eq!(stats.mean(), None);
    }
    Ok(())
}

/// Everything but what depends on order by definition: the `last` latency, the latest state
/// and process reading, and the active sessions (which cannot go below 0).
fn without_last(mut snap: MetricsSnapshot) -> MetricsSnapshot {
    for s in snap.servers.values_mut() {
        s.handshake.last = None;
        s.probe_latency.last = None;
        s.request_latency.last = None;
        s.state = None;
        s.process = ProcessSample::default();
    }
    snap.gateway.sessions_active = 0;
    snap
}

fn count(events: &[&MetricEvent], pred: impl Fn(&MetricEvent) -> bool) -> u64 {
    events.iter().filter(|e| pred(e)).count() as u64
}

fn latencies(
    events: &[&MetricEvent],
    latency: impl Fn(&MetricEvent) -> Option<Duration>,
) -> Vec<Duration> {
    events.iter().filter_map(|e| latency(e)).collect()
}

/// Every aggregate of `events`, checked against counts taken straight from the sequence.
fn check_totals(events: &[MetricEvent]) -> Result<(), TestCaseError> {
    use MetricEvent as E;

    let snap = apply_all(events);
    prop_assert_eq!(snap.events, events.len() as u64);

    let servers: BTreeSet<&str> = events.iter().filter_map(server_of).collect();
    let seen: BTreeSet<&str> = snap.servers.keys().map(String::as_str).collect();
    prop_assert_eq!(seen, servers);
    let actors: BTreeSet<&str> = events.iter().filter_map(actor_of).collect();
    let seen: BTreeSet<&str> = snap.actors.keys().map(String::as_str).collect();
    prop_assert_eq!(seen, actors);

    for (name, s) in &snap.servers {
        let of: Vec<&MetricEvent> = events
            .iter()
            .filter(|e| server_of(e) == Some(name.as_str()))
            .collect();

        prop_assert_eq!(
            s.starts,
            count(&of, |e| matches!(e, E::ServerStarted { .. }))
        );
        prop_assert_eq!(s.ready, count(&of, |e| matches!(e, E::ServerReady { .. })));
        prop_assert_eq!(
            s.launch_failures,
            count(&of, |e| matches!(e, E::LaunchFailed { .. }))
        );
        prop_assert_eq!(
            s.stops,
            count(&of, |e| matches!(e, E::ServerStopped { .. }))
        );
        prop_assert_eq!(s.exits, count(&of, |e| matches!(e, E::ServerExited { .. })));
        prop_assert_eq!(
            s.unexpected_exits,
            count(
                &of,
                |e| matches!(e, E::ServerExited { reason, .. } if *reason != ExitReason::Stopped)
            )
        );
        for reason in ExitReason::ALL {
            prop_assert_eq!(
                s.exits_by_reason.get(reason.as_str()).copied().unwrap_or(0),
                count(
                    &of,
                    |e| matches!(e, E::ServerExited { reason: r, .. } if *r == reason)
                )
            );
        }
        prop_assert_eq!(
            s.restarts,
            count(&of, |e| matches!(e, E::ServerRestarted { .. }))
        );
        for (tool, calls) in &s.tool_calls {
            prop_assert_eq!(
                *calls,
                count(
                    &of,
                    |e| matches!(e, E::Request { tool: Some(t), .. } if t == tool)
                )
            );
        }
        prop_assert_eq!(
            s.tool_calls.values().sum::<u64>(),
            count(&of, |e| matches!(e, E::Request { tool: Some(_), .. }))
        );
        let last_state = of.iter().rev().find_map(|e| match e {
            E::StateChanged { state, .. } => Some(state.to_string()),
            _ => None,
        });
        prop_assert_eq!(&s.state, &last_state);
        // The latest reading, or zeros when an exit came after it.
        let last_process = of.iter().rev().find_map(|e| match e {
            E::ProcessSampled { sample, .. } => Some(*sample),
            E::ServerExited { .. } => Some(ProcessSample::default()),
            _ => None,
        });
        prop_assert_eq!(s.process, last_process.unwrap_or_default());
        prop_assert_eq!(
            s.probes_ok,
            count(&of, |e| matches!(e, E::Probe { ok: true, .. }))
        );
        prop_assert_eq!(
            s.probes_failed,
            count(&of, |e| matches!(e, E::Probe { ok: false, .. }))
        );
        prop_assert_eq!(
            s.requests_ok
                + s.requests_error
                + s.requests_timeout
                + s.requests_cancelled
                + s.requests_failed,
            count(&of, |e| matches!(e, E::Request { .. }))
        );
        for (field, outcome) in [
            (s.requests_ok, RequestOutcome::Ok),
            (s.requests_error, RequestOutcome::Error),
            (s.requests_timeout, RequestOutcome::Timeout),
            (s.requests_cancelled, RequestOutcome::Cancelled),
            (s.requests_failed, RequestOutcome::Failed),
        ] {
            prop_assert_eq!(
                field,
                count(
                    &of,
                    |e| matches!(e, E::Request { outcome: o, .. } if *o == outcome)
                )
            );
        }
        prop_assert_eq!(
            s.bad_stdout_lines,
            count(&of, |e| matches!(e, E::BadStdoutLine { .. }))
        );
        prop_assert_eq!(
            s.stderr_lines,
            clamped_sum(of.iter().filter_map(|e| match e {
                E::StderrLines { count, .. } => Some(*count),
                _ => None,
            }))
        );

        let handshakes = latencies(&of, |e| match e {
            E::ServerReady { handshake, .. } => Some(*handshake),
            _ => None,
        });
        check_latency(&s.handshake, &handshakes)?;
        let probes = latencies(&of, |e| match e {
            E::Probe { latency, .. } => Some(*latency),
            _ => None,
        });
        check_latency(&s.probe_latency, &probes)?;
        let requests = latencies(&of, |e| match e {
            E::Request { latency, .. } => Some(*latency),
            _ => None,
        });
        check_latency(&s.request_latency, &requests)?;
    }

    for (name, a) in &snap.actors {
        let messages = clamped_sum(events.iter().filter_map(|e| match e {
            E::MessagesHandled { actor, count } if actor == name => Some(*count),
            _ => None,
        }));
        prop_assert_eq!(a.messages, messages);
        let restarts = events
            .iter()
            .filter(|e| matches!(e, E::ActorRestarted { actor } if actor == name))
            .count() as u64;
        prop_assert_eq!(a.restarts, restarts);
    }

    let g = &snap.gateway;
    prop_assert_eq!(
        g.sessions_created,
        events
            .iter()
            .filter(|e| matches!(e, E::SessionCreated))
            .count() as u64
    );
    for (field, end) in [
        (g.sessions_expired, SessionEnd::Expired),
        (g.sessions_closed, SessionEnd::Closed),
    ] {
        prop_assert_eq!(
            field,
            events
                .iter()
                .filter(|e| matches!(e, E::SessionEnded { reason } if *reason == end))
                .count() as u64
        );
    }
    let active = events.iter().fold(0u64, |n, e| match e {
        E::SessionCreated => n + 1,
        E::SessionEnded { .. } => n.saturating_sub(1),
        _ => n,
    });
    prop_assert_eq!(g.sessions_active, active);
    prop_assert_eq!(
        g.http_responses.values().sum::<u64>(),
        clamped_sum(events.iter().filter_map(|e| match e {
            E::HttpResponses { count, .. } => Some(*count),
            _ => None,
        }))
    );
    Ok(())
}

proptest! {
    #[test]
    fn totals_match_counts_taken_from_the_sequence(
        events in prop::collection::vec(event(), 0..200)
    ) {
        check_totals(&events)?;
    }

    #[test]
    fn counters_do_not_depend_on_order(events in prop::collection::vec(event(), 0..200)) {
        let forward = without_last(apply_all(&events));
        let backward = without_last(apply_all(events.iter().rev()));
        prop_assert_eq!(&forward, &backward);
    }

    #[test]
    fn counters_do_not_depend_on_any_interleaving(
        (events, shuffled) in prop::collection::vec(event(), 0..100)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
    ) {
        prop_assert_eq!(without_last(apply_all(&events)), without_last(apply_all(&shuffled)));
    }

    /// Events cut into batches (nested ones included) leave exactly what they leave told one
    /// by one, `last` values and the event count included.
    #[test]
    fn batches_are_their_events_in_order(
        events in prop::collection::vec(event(), 0..120),
        cuts in prop::collection::vec(0usize..8, 1..40),
    ) {
        let mut batched = Vec::new();
        let mut rest = events.as_slice();
        for (i, cut) in cuts.iter().cycle().take(events.len() + 1).enumerate() {
            let (batch, tail) = rest.split_at((*cut).min(rest.len()));
            rest = tail;
            let batch = MetricEvent::Batch(batch.to_vec());
            // Every third batch goes inside another one.
            batched.push(if i % 3 == 2 { MetricEvent::Batch(vec![batch]) } else { batch });
        }
        batched.extend(rest.iter().cloned());
        prop_assert_eq!(apply_all(&batched), apply_all(&events));
    }
}
