//! Messages the supervisor accepts (the closed set):
//!
//! | message | reply |
//! |---|---|
//! | [`LaunchFleet`] | `Result<FleetLaunchReport, FleetError>`, once every server is ready or failed |
//! | [`GetFleetStatus`] | `Result<FleetStatus, FleetError>` |
//! | [`Shutdown`] | `Result<ShutdownReport, FleetError>`, after the ordered shutdown |
//! | [`ServiceRestarted`] | `()` (counted and logged) |

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ServerSpec;
use crate::error::FleetError;
use crate::messages::server::StoppedServer;
use crate::status::ServerStatus;

/// The service actors under the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceKind {
    ServerManager,
    HealthMonitor,
    MetricsCollector,
    /// The MCP gateway: sessions and the aggregated catalog.
    Gateway,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 4] = [
        ServiceKind::ServerManager,
        ServiceKind::HealthMonitor,
        ServiceKind::MetricsCollector,
        ServiceKind::Gateway,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::ServerManager => "server-manager",
            ServiceKind::HealthMonitor => "health-monitor",
            ServiceKind::MetricsCollector => "metrics-collector",
            ServiceKind::Gateway => "gateway",
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Launch many servers concurrently.
#[derive(Debug, Clone)]
pub struct LaunchFleet {
    pub specs: Vec<ServerSpec>,
}

/// The outcome of a fleet launch, in the order of the specs.
#[derive(Debug, Clone)]
pub struct FleetLaunchReport {
    pub results: Vec<Result<ServerStatus, FleetError>>,
    pub took: Duration,
}

/// Everything's status.
#[derive(Debug, Clone, Copy, Default)]
pub struct GetFleetStatus;

/// A service actor's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub kind: ServiceKind,
    pub alive: bool,
    pub restarts: u32,
    /// Time from spawn until its `on_start` finished.
    pub startup: Duration,
}

/// The status of the supervisor's services and of every server.
#[derive(Debug, Clone)]
pub struct FleetStatus {
    pub supervisor_startup: Duration,
    pub services: Vec<ServiceStatus>,
    pub servers: Vec<ServerStatus>,
}

/// Ordered graceful shutdown: stop every server, flush metrics, stop the service actors.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shutdown;

/// What the shutdown did.
#[derive(Debug, Clone)]
pub struct ShutdownReport {
    pub servers: Vec<StoppedServer>,
    pub took: Duration,
}

/// Event: a service actor panicked and was started again by the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceRestarted {
    pub kind: ServiceKind,
}
