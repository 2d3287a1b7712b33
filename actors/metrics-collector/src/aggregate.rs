//! The pure core: folds [`MetricEvent`]s into a [`MetricsSnapshot`]. No actor, no I/O, no clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fleet_protocol::messages::metrics::{
    LatencyStats, MetricEvent, MetricsSnapshot, ProcessSample, RequestOutcome, ServerMetrics,
    SessionEnd,
};

/// Every aggregate the collector keeps.
///
/// The snapshot is shared copy-on-write: [`Aggregates::snapshot`] hands out the `Arc`, and the
/// next event copies the maps only if a reader still holds it. A query therefore costs no copy,
/// and a snapshot already handed out never changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregates {
    snapshot: Arc<MetricsSnapshot>,
}

impl Aggregates {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one event in. An event for a server or actor not seen before creates its entry.
    pub fn apply(&mut self, event: &MetricEvent) {
        if let MetricEvent::Batch(events) = event {
            return events.iter().for_each(|e| self.apply(e));
        }
        let snap = Arc::make_mut(&mut self.snapshot);
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
            MetricEvent::ServerExited { server, reason, .. } => {
                let s = server_entry(snap, server);
                inc(&mut s.exits);
                if !reason.expected() {
                    inc(&mut s.unexpected_exits);
                }
                inc(count_entry(&mut s.exits_by_reason, reason.as_str()));
                // The process is gone: nothing resident, nothing in flight.
                s.process = ProcessSample::default();
            }
            MetricEvent::ServerRestarted { server } => {
                inc(&mut server_entry(snap, server).restarts)
            }
            MetricEvent::StateChanged { server, state } => {
                server_entry(snap, server).state = Some((*state).to_owned())
            }
            MetricEvent::ProcessSampled { server, sample } => {
                server_entry(snap, server).process = *sample
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
                tool,
                latency,
                outcome,
                ..
            } => {
                let s = server_entry(snap, server);
                inc(match outcome {
                    RequestOutcome::Ok => &mut s.requests_ok,
                    RequestOutcome::Error => &mut s.requests_error,
                    RequestOutcome::Timeout => &mut s.requests_timeout,
                    RequestOutcome::Cancelled => &mut s.requests_cancelled,
                    RequestOutcome::Failed => &mut s.requests_failed,
                });
                record_latency(&mut s.request_latency, *latency);
                if let Some(tool) = tool {
                    inc(count_entry(&mut s.tool_calls, tool));
                }
            }
            MetricEvent::BadStdoutLine { server } => {
                inc(&mut server_entry(snap, server).bad_stdout_lines)
            }
            MetricEvent::StderrLines { server, count } => {
                let s = server_entry(snap, server);
                s.stderr_lines = s.stderr_lines.saturating_add(*count);
            }
            MetricEvent::MessagesHandled { actor, count } => add_messages(snap, actor, *count),
            MetricEvent::ActorRestarted { actor } => {
                inc(&mut count_entry(&mut snap.actors, actor).restarts)
            }
            MetricEvent::SessionCreated => {
                inc(&mut snap.gateway.sessions_created);
                inc(&mut snap.gateway.sessions_active);
            }
            MetricEvent::SessionEnded { reason } => {
                let g = &mut snap.gateway;
                inc(match reason {
                    SessionEnd::Expired => &mut g.sessions_expired,
                    SessionEnd::Closed => &mut g.sessions_closed,
                });
                g.sessions_active = g.sessions_active.saturating_sub(1);
            }
            MetricEvent::HttpResponses { status, count, .. } => {
                let n = snap.gateway.http_responses.entry(*status).or_default();
                *n = n.saturating_add(*count);
            }
            // Unpacked above: its events are counted and applied one by one.
            MetricEvent::Batch(_) => {}
        }
    }

    /// Folds in a `MessagesHandled { actor, count }` event without one being built: the
    /// collector's own count, which would otherwise cost an owned actor name per report.
    pub fn apply_messages_handled(&mut self, actor: &str, count: u64) {
        let snap = Arc::make_mut(&mut self.snapshot);
        snap.events = snap.events.saturating_add(1);
        add_messages(snap, actor, count);
    }

    /// Every aggregate as of now; later events leave it as it is.
    pub fn snapshot(&self) -> Arc<MetricsSnapshot> {
        Arc::clone(&self.snapshot)
    }
}

fn add_messages(snap: &mut MetricsSnapshot, actor: &str, count: u64) {
    let a = count_entry(&mut snap.actors, actor);
    a.messages = a.messages.saturating_add(count);
}

fn server_entry<'a>(snap: &'a mut MetricsSnapshot, server: &str) -> &'a mut ServerMetrics {
    count_entry(&mut snap.servers, server)
}

/// The entry for `key`, created on first use; the key is copied only then, not per event.
fn count_entry<'a, V: Default>(map: &'a mut BTreeMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("inserted just above")
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
