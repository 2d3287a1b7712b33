//! fleet-supervisor: the root actor of mcp-fleet.
//!
//! The [`Supervisor`] spawns the service actors (server manager, health monitor, metrics
//! collector, and the MCP gateway when there is one) as supervised children and restarts one that panics (kameo one-for-one
//! supervision with a restart limit), counting and logging each restart. It coordinates what
//! concerns the whole system: launching a fleet, the status of everything, and the ordered
//! graceful shutdown.
//!
//! It never names the service actors' types: runtime hands it a [`Wiring`] that spawns them
//! (with [`supervise_service`]) and returns [`Services`], the protocol recipients the
//! supervisor needs. That keeps this crate independent of the other actor crates.
//!
//! Messages handled: see `fleet_protocol::messages::supervisor` (the closed set).
//! Emits: `ActorRestarted` metric events.
//!
//! Invariants:
//! - Shutdown order: the gateway first (its sessions end, so their HTTP streams close), then the
//!   health monitor (no probe of a stopping server), then every server, then the server
//!   manager, then a metrics flush, then the metrics collector, then itself.
//! - A service actor restarted after a panic keeps its address (kameo reuses the mailbox), so the
//!   recipients other actors hold stay valid.

mod actor;
mod handlers;
mod services;

pub use actor::{Supervisor, SupervisorArgs, SupervisorConfig};
pub use services::{
    GatewayServicePort, HealthPort, MetricsPort, ServerManagerPort, Services, Wiring,
    supervise_service,
};

/// The actor name used in metrics and logs.
pub const ACTOR_NAME: &str = "supervisor";
