//! fleet-server-manager: the actor that owns the fleet's MCP server processes.
//!
//! Two kinds of actor live here:
//! - [`ServerManager`], one per fleet: the table of servers by name. It answers status queries
//!   from a cache each server pushes to it, and forwards requests, probes and stops to the server's
//!   own actor, so a slow server never holds up the others.
//! - `ServerActor`, one per server: it owns the child process (stdin, stdout, stderr piped), runs
//!   the MCP handshake in the server's era, numbers requests with ids of its own and maps the
//!   answers back (its stdout reader answers the caller directly), times requests out and
//!   notices cancellations (a watchdog task per server), keeps stderr in a bounded ring buffer,
//!   and stops the process in order: close stdin, wait, SIGTERM to the process group, wait,
//!   SIGKILL. While its server serves, it holds open the server's lane, by which a caller with
//!   the manager's `ServerDirectory` sends ordinary calls itself, without a message.
//!
//! Messages handled: see `fleet_protocol::messages::server` (the closed set).
//! Emits: `RecordMetric` events to the metrics collector, if one is given (lifecycle, state
//! changes, restarts, exits by reason, requests with their declared tool, stderr and bad-line
//! counts, a `/proc` sample of each process tree every `sample_every`, and handled messages of
//! the manager and, together, of its server actors); `ServerEvent`s (state changes, list changes)
//! to every subscriber of `SubscribeServerEvents`.
//!
//! Invariants:
//! - Every request gets exactly one answer: the server's, or why not (timeout, cancelled,
//!   overloaded, server exited). Whoever takes it out of the pending table answers it. A lane's
//!   request goes into the table under the lock that an exit's drain takes, so it is drained
//!   with the rest or handed back to the actor.
//! - No process outlives its actor: the actor's stop kills the whole process group.
//! - A manager restarted by its supervisor (the same [`ManagerMemory`] in its arguments)
//!   takes over every server of the one before, once the old actors and processes are gone:
//!   started again, or `Stopped` if it was stopped on request; its event subscribers carry over.
//! - A line on a child's stdout that is not JSON-RPC is logged and counted, never fatal.
//! - Launches run concurrently: each server's actor does its own handshake.
//! - The `tool` of a request metric is a name the server declared, or `_undeclared`: a client
//!   cannot add label values.
//! - A caller's progress token never reaches a server: each request's token is replaced by one
//!   of the actor's own and mapped back, so callers picking the same token never cross.

mod actor;
mod events;
mod handlers;
mod handshake;
mod lane;
mod memory;
mod pending;
pub mod policy;
mod process;
mod remote;
mod sample;
mod server;
mod stderr;

pub use actor::{
    DirectEntry, ServerDirectory, ServerManager, ServerManagerArgs, ServerManagerConfig,
};
pub use memory::ManagerMemory;
pub use process::{
    BASE_ENV, INSTANCE_VAR, LAUNCH_VAR, Orphan, end_launch, new_instance_id, process_running,
    sweep_orphans,
};

/// The actor name used in metrics and logs.
pub const ACTOR_NAME: &str = "server-manager";
/// The actor kind under which the per-server actors' handled messages are reported (together).
pub const SERVER_ACTOR_NAME: &str = "server";
