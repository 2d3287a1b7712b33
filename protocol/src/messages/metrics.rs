//! Messages the metrics collector accepts (the closed set):
//!
//! | message | reply |
//! |---|---|
//! | [`RecordMetric`] | `()`; sent by tell from every actor |
//! | [`GetMetrics`] | `Arc<MetricsSnapshot>`, shared with the collector until its next event, so an ask copies nothing |
//! | [`FlushMetrics`] | `()`, once every event sent before it is recorded |

use std::collections::BTreeMap;
use std::sync::Arc;
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
pub type GetMetricsReply = Arc<MetricsSnapshot>;

/// Wait until everything sent before is recorded (the mailbox is FIFO), for ordered shutdown.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlushMetrics;

/// How a request to a server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutcome {
    /// A result came back.
    Ok,
    /// The server answered with a JSON-RPC error.
    Error,
    /// No answer within the timeout.
    Timeout,
    /// The caller cancelled it (a client's `notifications/cancelled`, or it went away).
    Cancelled,
    /// The server exited, was not ready, or could not take the request.
    Failed,
}

impl RequestOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Ok => "ok",
            RequestOutcome::Error => "error",
            RequestOutcome::Timeout => "timeout",
            RequestOutcome::Cancelled => "cancelled",
            RequestOutcome::Failed => "failed",
        }
    }
}

/// Why a server process ended, as the `reason` label of the exit counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// A stop asked for it.
    Stopped,
    /// It exited on its own with code 0.
    ExitedOk,
    /// It exited on its own with a non-zero code.
    ExitedError,
    /// A signal nobody in the fleet sent ended it (an OOM kill, a kill by hand).
    Signaled,
    /// The fleet killed it because it stopped answering health probes.
    Unresponsive,
    /// The exit status could not be read.
    Unknown,
}

impl ExitReason {
    pub const ALL: [ExitReason; 6] = [
        ExitReason::Stopped,
        ExitReason::ExitedOk,
        ExitReason::ExitedError,
        ExitReason::Signaled,
        ExitReason::Unresponsive,
        ExitReason::Unknown,
    ];

    /// Classifies an exit: `stopping` when a stop asked for it, `killed_unresponsive` when the
    /// fleet killed the process for failing its probes.
    pub fn classify(exit: &ExitInfo, stopping: bool, killed_unresponsive: bool) -> Self {
        if stopping {
            ExitReason::Stopped
        } else if killed_unresponsive {
            ExitReason::Unresponsive
        } else {
            match (exit.code, exit.signal) {
                (Some(0), _) => ExitReason::ExitedOk,
                (Some(_), _) => ExitReason::ExitedError,
                (None, Some(_)) => ExitReason::Signaled,
                (None, None) => ExitReason::Unknown,
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Stopped => "stopped",
            ExitReason::ExitedOk => "exited_ok",
            ExitReason::ExitedError => "exited_error",
            ExitReason::Signaled => "signaled",
            ExitReason::Unresponsive => "unresponsive",
            ExitReason::Unknown => "unknown",
        }
    }

    /// Whether a stop asked for it.
    pub fn expected(self) -> bool {
        self == ExitReason::Stopped
    }
}

/// How a client session of the gateway ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEnd {
    /// Idle past the TTL, or never finished `initialize` in time.
    Expired,
    /// The client ended it (HTTP DELETE).
    Closed,
}

/// The label a `tools/call` of a tool the server did not declare is counted under, so the tool
/// label only ever takes names the server itself listed.
pub const UNDECLARED_TOOL: &str = "_undeclared";

/// What the fleet read from `/proc` about a server's process and its descendants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessSample {
    /// Resident memory of the whole process tree.
    pub resident_bytes: u64,
    /// User and system CPU time of the tree (reaped children included) since the process began.
    pub cpu_seconds: f64,
    /// Open file descriptors of the tree.
    pub open_fds: u64,
    /// Processes in the tree (the server's own process included).
    pub processes: u64,
    /// Requests sent to the server and not answered yet, read at the same moment.
    pub in_flight: u64,
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
    /// A server process ended.
    ServerExited {
        server: String,
        exit: ExitInfo,
        reason: ExitReason,
    },
    /// The restart policy relaunched a server after an exit nobody asked for.
    ServerRestarted { server: String },
    /// A server entered a new state (`ServerState::name`).
    StateChanged { server: String, state: &'static str },
    /// A periodic reading of a server's process tree.
    ProcessSampled {
        server: String,
        sample: ProcessSample,
    },
    /// A health probe finished.
    Probe {
        server: String,
        latency: Duration,
        ok: bool,
    },
    /// A request to a server finished. `tool` is set for `tools/call`: the tool's name when
    /// the server declared it, [`UNDECLARED_TOOL`] otherwise.
    Request {
        server: String,
        method: String,
        tool: Option<String>,
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
    /// The gateway opened a client session.
    SessionCreated,
    /// A client session ended.
    SessionEnded { reason: SessionEnd },
    /// The HTTP layer answered `count` requests for `path` (one of the paths it serves, or
    /// `other`) with this status code since it last reported.
    HttpResponses {
        path: &'static str,
        status: u16,
        count: u64,
    },
    /// Several events, recorded in order as if each had been sent alone. A producer of frequent
    /// events (a server's requests) sends them this way, so the collector is not woken for each.
    Batch(Vec<MetricEvent>),
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
    pub requests_cancelled: u64,
    pub requests_failed: u64,
    pub request_latency: LatencyStats,
    /// `tools/call` requests by tool label (declared names, or [`UNDECLARED_TOOL`]).
    pub tool_calls: BTreeMap<String, u64>,
    pub restarts: u64,
    /// Exits by [`ExitReason::as_str`].
    pub exits_by_reason: BTreeMap<String, u64>,
    /// The state last reported.
    pub state: Option<String>,
    /// The latest process reading; zeroed when the process exits.
    pub process: ProcessSample,
    pub bad_stdout_lines: u64,
    pub stderr_lines: u64,
}

/// Aggregates of one actor kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ActorMetrics {
    pub messages: u64,
    pub restarts: u64,
}

/// Aggregates of the gateway and its HTTP layer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayMetrics {
    pub sessions_created: u64,
    pub sessions_expired: u64,
    pub sessions_closed: u64,
    /// Created minus ended.
    pub sessions_active: u64,
    /// HTTP responses by status code, all paths together.
    pub http_responses: BTreeMap<u16, u64>,
}

/// Every aggregate, as [`GetMetrics`] returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    pub servers: BTreeMap<String, ServerMetrics>,
    pub actors: BTreeMap<String, ActorMetrics>,
    pub gateway: GatewayMetrics,
    /// Events recorded in all.
    pub events: u64,
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn exit(code: Option<i32>, signal: Option<i32>) -> ExitInfo {
        ExitInfo {
            code,
            signal,
            at: SystemTime::UNIX_EPOCH,
            reason: None,
        }
    }

    #[test]
    fn exit_reasons_follow_who_ended_the_process() {
        let killed = exit(None, Some(9));
        assert_eq!(
            ExitReason::classify(&killed, true, false),
            ExitReason::Stopped
        );
        assert_eq!(
            ExitReason::classify(&killed, false, true),
            ExitReason::Unresponsive
        );
        assert_eq!(
            ExitReason::classify(&killed, false, false),
            ExitReason::Signaled
        );
        assert_eq!(
            ExitReason::classify(&exit(Some(0), None), false, false),
            ExitReason::ExitedOk
        );
        assert_eq!(
            ExitReason::classify(&exit(Some(3), None), false, false),
            ExitReason::ExitedError
        );
        assert_eq!(
            ExitReason::classify(&exit(None, None), false, false),
            ExitReason::Unknown
        );
        let labels: std::collections::HashSet<_> =
            ExitReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), ExitReason::ALL.len());
    }
}
