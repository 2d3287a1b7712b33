//! Messages the metrics collector accepts (the closed set):
//!
//! | message | reply |
//! |---|---|
//! | [`RecordMetric`] | `()`; sent by tell from every actor |
//! | [`GetMetrics`] | `Result<MetricsSnapshot, Infallible>` (a `Result` because kameo implements its `Reply` trait for `Result`, and the orphan rule keeps it off our snapshot type) |
//! | [`FlushMetrics`] | `()`, once every event sent before it is recorded |

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::status::ExitInfo;

/// Record one event.
#[derive(Debug, Clone)]
pub struct RecordMetric {
    pub event: MetricEvent,
}

/// A snapshot of every aggregate.
#[derive(Debug, Clone, Copy, Default)]
pub struct GetMetrics;
pub type GetMetricsReply = MetricsSnapshot;

/// Wait until everything sent before is recorded (the mailbox is FIFO), for ordered shutdown.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlushMetrics;

/// How a request to a server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutcome {
    /// A result came back.
    Ok,
    /// The server answered with a JSON-RPC error.
    Error,
    /// No answer within the timeout.
    Timeout,
    /// The server exited, was not ready, or could not take the request.
    Failed,
}

impl RequestOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Ok => "ok",
            RequestOutcome::Error => "error",
            RequestOutcome::Timeout => "timeout",
            RequestOutcome::Failed => "failed",
        }
    }
}

/// Everything an actor can report.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricEvent {
    /// A server process was spawned.
    ServerStarted { server: String },
    /// A server finished its handshake.
    ServerReady { server: String, handshake: Duration },
    /// A server could not be spawned or failed its handshake.
    LaunchFailed { server: String },
    /// A server was stopped on request.
    ServerStopped { server: String },
    /// A server process ended; `expected` when a stop asked for it.
    ServerExited {
        server: String,
        exit: ExitInfo,
        expected: bool,
    },
    /// A health probe finished.
    Probe {
        server: String,
        latency: Duration,
        ok: bool,
    },
    /// A request to a server finished.
    Request {
        server: String,
        method: String,
        latency: Duration,
        outcome: RequestOutcome,
    },
    /// A line on a server's stdout was not JSON-RPC.
    BadStdoutLine { server: String },
    /// Lines a server wrote to stderr since the last report.
    StderrLines { server: String, count: u64 },
    /// An actor handled this many messages since its last report.
    MessagesHandled { actor: String, count: u64 },
    /// A service actor was restarted by its supervisor after a panic.
    ActorRestarted { actor: String },
}

/// Count, sum and extremes of a latency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    pub count: u64,
    pub total: Duration,
    pub min: Option<Duration>,
    pub max: Option<Duration>,
    pub last: Option<Duration>,
}

impl LatencyStats {
    pub fn record(&mut self, d: Duration) {
        self.count += 1;
        self.total += d;
        self.min = Some(self.min.map_or(d, |m| m.min(d)));
        self.max = Some(self.max.map_or(d, |m| m.max(d)));
        self.last = Some(d);
    }

    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| self.total / self.count.min(u32::MAX as u64) as u32)
    }
}

/// Aggregates of one server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerMetrics {
    pub starts: u64,
    pub ready: u64,
    pub launch_failures: u64,
    pub stops: u64,
    pub exits: u64,
    pub unexpected_exits: u64,
    pub handshake: LatencyStats,
    pub probes_ok: u64,
    pub probes_failed: u64,
    pub probe_latency: LatencyStats,
    pub requests_ok: u64,
    pub requests_error: u64,
    pub requests_timeout: u64,
    pub requests_failed: u64,
    pub request_latency: LatencyStats,
    pub bad_stdout_lines: u64,
    pub stderr_lines: u64,
}

/// Aggregates of one actor kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ActorMetrics {
    pub messages: u64,
    pub restarts: u64,
}

/// Every aggregate, as [`GetMetrics`] returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    pub servers: BTreeMap<String, ServerMetrics>,
    pub actors: BTreeMap<String, ActorMetrics>,
    /// Events recorded in all.
    pub events: u64,
}
