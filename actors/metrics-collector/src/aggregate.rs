//! The pure core: folds [`MetricEvent`]s into a [`MetricsSnapshot`]. No actor, no I/O, no clock.

use std::time::Duration;

use fleet_protocol::messages::metrics::{
    LatencyStats, MetricEvent, MetricsSnapshot, RequestOutcome, ServerMetrics,
};

/// Every aggregate the collector keeps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregates {
    snapshot: MetricsSnapshot,
}

impl Aggregates {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one event in. An event for a server or actor not seen before creates its entry.
    pub fn apply(&mut self, event: &MetricEvent) {
        let snap = &mut self.snapshot;
        snap.events = snap.events.saturating_add(1);
        match event {
            MetricEvent::ServerStarted { server } => inc(&mut server_entry(snap, server).starts),
            MetricEvent::ServerReady { server, handshake } => {
                let s = server_entry(snap, server);
                inc(&mut s.ready);
                record_latency(&mut s.handshake, *handshake);
            }
            MetricEvent::LaunchFailed { server } => {
                inc(&mut server_entry(snap, server).launch_failures)
            }
            MetricEvent::ServerStopped { server } => inc(&mut server_entry(snap, server).stops),
            MetricEvent::ServerExited {
                server, expected, ..
            } => {
                let s = server_entry(snap, server);
                inc(&mut s.exits);
                if !expected {
                    inc(&mut s.unexpected_exits);
                }
            }
            MetricEvent::Probe {
                server,
                latency,
                ok,
            } => {
                let s = server_entry(snap, server);
                inc(if *ok {
                    &mut s.probes_ok
                } else {
                    &mut s.probes_failed
                });
                // A failed probe's latency is how long it took to fail: worth seeing too.
                record_latency(&mut s.probe_latency, *latency);
            }
            MetricEvent::Request {
                server,
                latency,
                outcome,
                ..
            } => {
                let s = server_entry(snap, server);
                inc(match outcome {
                    RequestOutcome::Ok => &mut s.requests_ok,
                    RequestOutcome::Error => &mut s.requests_error,
                    RequestOutcome::Timeout => &mut s.requests_timeout,
                    RequestOutcome::Failed => &mut s.requests_failed,
                });
                record_latency(&mut s.request_latency, *latency);
            }
            MetricEvent::BadStdoutLine { server } => {
                inc(&mut server_entry(snap, server).bad_stdout_lines)
            }
            MetricEvent::StderrLines { server, count } => {
                let s = server_entry(snap, server);
                s.stderr_lines = s.stderr_lines.saturating_add(*count);
            }
            MetricEvent::MessagesHandled { actor, count } => {
                let a = snap.actors.entry(actor.clone()).or_default();
                a.messages = a.messages.saturating_add(*count);
            }
            MetricEvent::ActorRestarted { actor } => {
                inc(&mut snap.actors.entry(actor.clone()).or_default().restarts)
            }
        }
    }

    /// A copy of every aggregate.
    pub fn snapshot(&self) -> MetricsSnapshot {
        self.snapshot.clone()
    }
}

fn server_entry<'a>(snap: &'a mut MetricsSnapshot, server: &str) -> &'a mut ServerMetrics {
    snap.servers.entry(server.to_owned()).or_default()
}

fn inc(n: &mut u64) {
    *n = n.saturating_add(1);
}

/// Like [`LatencyStats::record`], but saturating: a peer's absurd latency must not panic us.
fn record_latency(stats: &mut LatencyStats, d: Duration) {
    stats.count = stats.count.saturating_add(1);
    stats.total = stats.total.saturating_add(d);
    stats.min = Some(stats.min.map_or(d, |m| m.min(d)));
    stats.max = Some(stats.max.map_or(d, |m| m.max(d)));
    stats.last = Some(d);
}
