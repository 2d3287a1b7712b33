//! Server lifecycle states and the status snapshot of a server.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::ServerHealthPolicy;

/// The MCP protocol era a server speaks, detected at launch and kept for the life of the process
/// (a health probe must use the era the process started in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Era {
    /// 2025-11-25 and before: `initialize`, sessions, `ping`.
    #[serde(rename = "2025-11-25")]
    Legacy,
    /// 2026-07-28: stateless, `server/discover`, `_meta` on every request.
    #[serde(rename = "2026-07-28")]
    Modern,
}

impl fmt::Display for Era {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Era::Legacy => "2025-11-25",
            Era::Modern => "2026-07-28",
        })
    }
}

/// Where a server is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ServerState {
    /// The process is being spawned.
    Starting,
    /// The process runs; the MCP handshake is under way.
    Initializing,
    /// Handshake done; requests are served.
    Ready,
    /// Ready, but health probes are failing.
    Unhealthy,
    /// Waiting out the backoff before starting again after an exit nobody asked for (see
    /// `ServerStatus::next_restart_at`). A restart someone asks for goes through `Stopping`,
    /// `Stopped` and `Starting` instead.
    Restarting,
    /// A stop is under way (stdin closed, signals may follow).
    Stopping,
    /// Stopped on request.
    Stopped,
    /// It could not start, failed its handshake, or exited on its own.
    Failed { reason: String },
}

impl ServerState {
    /// Whether requests may be sent to the server in this state.
    pub fn is_serving(&self) -> bool {
        matches!(self, ServerState::Ready | ServerState::Unhealthy)
    }

    /// Whether the process is gone for good (until someone asks for a new one).
    pub fn is_terminal(&self) -> bool {
        matches!(self, ServerState::Stopped | ServerState::Failed { .. })
    }

    /// Every value [`ServerState::name`] can return, in lifecycle order.
    pub const NAMES: [&'static str; 8] = [
        "starting",
        "initializing",
        "ready",
        "unhealthy",
        "restarting",
        "stopping",
        "stopped",
        "failed",
    ];

    /// A short lowercase name, for tables, logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            ServerState::Starting => "starting",
            ServerState::Initializing => "initializing",
            ServerState::Ready => "ready",
            ServerState::Unhealthy => "unhealthy",
            ServerState::Restarting => "restarting",
            ServerState::Stopping => "stopping",
            ServerState::Stopped => "stopped",
            ServerState::Failed { .. } => "failed",
        }
    }
}

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerState::Failed { reason } => write!(f, "failed: {reason}"),
            other => f.write_str(other.name()),
        }
    }
}

/// How a child process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// The exit code, if it exited.
    pub code: Option<i32>,
    /// The signal number, if a signal ended it.
    pub signal: Option<i32>,
    pub at: SystemTime,
    /// Why it ended, when mcp-fleet knows more than the code or signal tell: it killed the
    /// process (failed health checks, a failed handshake, stdout closed) or lost a remote
    /// server's link (and why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ExitInfo {
    /// Whether the process ended cleanly (exit code 0).
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}")?,
            (None, Some(sig)) => write!(f, "killed by signal {sig} ({})", signal_name(sig))?,
            (None, None) => f.write_str("exit status unknown")?,
        }
        match &self.reason {
            Some(reason) => write!(f, ": {reason}"),
            None => Ok(()),
        }
    }
}

/// The conventional name of a Linux signal number.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        6 => "SIGABRT",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        19 => "SIGSTOP",
        _ => "signal",
    }
}

/// What the MCP handshake told us about a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handshake {
    pub era: Era,
    /// The negotiated protocol version (2025 era) or the one chosen from `supportedVersions`.
    pub protocol_version: String,
    /// `serverInfo` as the server sent it.
    pub server_info: Value,
    /// `capabilities` as the server sent it.
    pub capabilities: Value,
    pub instructions: Option<String>,
    /// The tools from `tools/list` (every page), each object exactly as the server sent it.
    pub tools: Arc<[Value]>,
    /// Time from spawn to the end of the handshake, tool listing included.
    pub took: Duration,
}

impl Handshake {
    /// The names of the server's tools, in its order.
    pub fn tool_names(&self) -> impl Iterator<Item = &str> {
        self.tools
            .iter()
            .filter_map(|t| t.get("name").and_then(Value::as_str))
    }
}

/// A snapshot of one server. Cheap to clone: the large parts are shared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub name: String,
    #[serde(flatten)]
    pub state: ServerState,
    pub pid: Option<u32>,
    /// Present once the handshake has succeeded.
    pub handshake: Option<Arc<Handshake>>,
    /// When the current process was spawned.
    pub started_at: Option<SystemTime>,
    /// How the previous process ended, if one did.
    pub last_exit: Option<ExitInfo>,
    /// How many times this server has been started again after its first start.
    pub restarts: u32,
    /// When the next automatic restart is due, while the state is `Restarting`.
    pub next_restart_at: Option<SystemTime>,
    /// The last few exits nobody asked for, oldest first (a crash loop shows them).
    pub recent_exits: Vec<ExitInfo>,
    /// Lines the server wrote to stderr.
    pub stderr_lines: u64,
    /// Lines on stdout that were not JSON-RPC (garbage, over-long, invalid UTF-8).
    pub bad_stdout_lines: u64,
    /// Requests sent and not yet answered.
    pub in_flight: usize,
    /// How the health monitor probes this server (its spec's policy).
    #[serde(default, skip_serializing_if = "ServerHealthPolicy::is_default")]
    pub health: ServerHealthPolicy,
}

impl ServerStatus {
    pub fn new(name: impl Into<String>, state: ServerState) -> Self {
        ServerStatus {
            name: name.into(),
            state,
            pid: None,
            handshake: None,
            started_at: None,
            last_exit: None,
            restarts: 0,
            next_restart_at: None,
            recent_exits: Vec::new(),
            stderr_lines: 0,
            bad_stdout_lines: 0,
            in_flight: 0,
            health: ServerHealthPolicy::default(),
        }
    }

    /// The era, once known.
    pub fn era(&self) -> Option<Era> {
        self.handshake.as_ref().map(|h| h.era)
    }

    /// Time since the current process was spawned.
    pub fn uptime(&self, now: SystemTime) -> Option<Duration> {
        self.started_at.and_then(|s| now.duration_since(s).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lists_every_state_once_in_order() {
        let states = [
            ServerState::Starting,
            ServerState::Initializing,
            ServerState::Ready,
            ServerState::Unhealthy,
            ServerState::Restarting,
            ServerState::Stopping,
            ServerState::Stopped,
            ServerState::Failed { reason: "x".into() },
        ];
        let names: Vec<&str> = states.iter().map(ServerState::name).collect();
        assert_eq!(names, ServerState::NAMES);
    }
}
