//! Messages the health monitor accepts (the closed set):
//!
//! | message | reply |
//! |---|---|
//! | [`ProbeAll`] | `Vec<ProbeResult>`: one probe round now, every serving server probed concurrently |
//! | [`GetHealth`] | `Vec<ServerHealth>`, sorted by server name |
//!
//! It emits [`HealthChanged`] (to the server manager) and probe metrics (to the metrics collector).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Run a probe round now, without waiting for the next tick.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProbeAll;
pub type ProbeAllReply = Vec<ProbeResult>;

/// The health of every server the monitor has probed.
#[derive(Debug, Clone, Copy, Default)]
pub struct GetHealth;
pub type GetHealthReply = Vec<ServerHealth>;

/// Event: a server's health verdict changed (after `failure_threshold` failed probes in a row,
/// or on the first good probe after that).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthChanged {
    pub server: String,
    pub healthy: bool,
    pub consecutive_failures: u32,
    /// The last probe error, when unhealthy.
    pub reason: Option<String>,
    /// The process the verdict is about, as the server's status named it when it was probed
    /// (its pid, and when it started): a verdict about a process that has since been replaced
    /// is not applied to its successor. Both `None`: no process in particular.
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub started_at: Option<SystemTime>,
}

/// One probe's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub server: String,
    /// The round trip, or why the probe failed.
    pub outcome: Result<Duration, String>,
}

/// What the monitor knows of one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerHealth {
    pub server: String,
    pub healthy: bool,
    pub probes: u64,
    pub failures: u64,
    pub consecutive_failures: u32,
    pub last_latency: Option<Duration>,
    pub last_error: Option<String>,
}
