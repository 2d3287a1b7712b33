//! fleet-gateway: one MCP server for clients, made of every server in the fleet.
//!
//! Two kinds of actor live here:
//! - [`Gateway`], one per fleet: the registry of client sessions by id, the stateless
//!   (2026-07-28) path, and the [`Catalog`] of what every ready server offers, kept current from
//!   the server manager's events.
//! - [`Session`], one per 2025-era client session: with the core it shares with the port, it
//!   has the session's requests served, cancels them when the client says so or goes away, and
//!   owns the session's server-to-client stream.
//!
//! Client messages come through a [`GatewayPort`]: a request of an open session, found in the
//! gateway's [`SessionDirectory`], is prepared by the session's core and served in the caller's
//! task; another message of an open session goes to the session's actor; the rest go to the
//! gateway.
//!
//! Messages handled: see `fleet_protocol::messages::gateway` (the closed set) and
//! `ServerEvent`s from the server manager. Sends: `CallServer` to a server's lane or actor
//! (from the manager's `ServerDirectory`, when given one) or to the server manager, `GetServerStatus` to the
//! server manager, and `SubscribeServerEvents` to it at each start when given its recipient;
//! `RecordMetric` to the metrics collector, if one is given (sessions created
//! and ended, and the messages the gateway and its sessions handled). Each request is served in
//! a `debug` tracing span `mcp_request` with its session, method, id, server and route (lane,
//! actor or manager). The HTTP
//! transport is runtime's; this crate sees JSON-RPC messages only.
//!
//! Invariants:
//! - Every client request gets exactly one response: the server's, or a JSON-RPC error saying
//!   why not (unknown tool, server not ready, timeout, cancelled).
//! - Results pass through unchanged; only the names the gateway exposes are rewritten (the tool
//!   or prompt `name` in lists, and back to the server's own name in calls).
//! - A server that is not ready offers nothing: its items are withdrawn when it stops serving
//!   and listed again when it is ready, and clients are told each time.
//! - Sessions never own processes: every session shares the fleet's servers.
//! - A session ends by DELETE, by idling past its TTL, by never finishing `initialize`, or with
//!   the gateway (the fleet's shutdown, or a crash: the supervisor starts a gateway without
//!   sessions); ending it cancels its requests in flight.

mod catalog;
mod config;
pub mod dispatch;
mod gateway;
pub mod naming;
mod port;
mod session;

pub use catalog::{Catalog, ListKind, Route, ServerLists, template_match};
pub use config::GatewayConfig;
pub use dispatch::ServerDirectory;
pub use gateway::{Gateway, GatewayArgs, event_sink};
pub use port::{GatewayPort, SessionDirectory};
pub use session::Session;

/// The actor name used in metrics and logs.
pub const ACTOR_NAME: &str = "gateway";

use fleet_protocol::FleetError;
use kameo::error::SendError;

/// Turns a failed ask to a session into the fleet's error. A session that ended between the
/// lookup and the ask (DELETE, expiry) is an unknown session, as it would be a moment later.
pub(crate) fn session_error<M>(e: SendError<M, FleetError>, id: String) -> FleetError {
    match e {
        SendError::HandlerError(e) => e,
        SendError::ActorNotRunning(_) | SendError::ActorStopped => {
            FleetError::UnknownSession { id }
        }
        other => FleetError::ActorUnavailable {
            actor: format!("session {id}"),
            reason: other.to_string(),
        },
    }
}
