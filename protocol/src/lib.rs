//! fleet-protocol: everything the mcp-fleet actors share, and nothing that runs.
//!
//! - [`config`]: the server specification ([`ServerSpec`]) and the parser of the `mcpServers`
//!   JSON that Claude Desktop and Cursor write (parsing from text; reading files is runtime's job).
//! - [`status`]: the lifecycle states and status snapshots of servers ([`ServerStatus`]).
//! - [`jsonrpc`] and [`codec`]: the MCP JSON-RPC wire layer: message types that keep every field
//!   they do not interpret, and newline-delimited framing with a maximum message size.
//! - [`messages`]: one struct per message each actor accepts, grouped by the actor that handles it.
//! - [`error`]: [`FleetError`], the error every actor reply carries.
//!
//! Architecture invariant: this crate depends on no actor framework and no other fleet crate, so
//! every actor crate can depend on it and on nothing else of ours. From tokio it uses only
//! channels and a cancellation token, for streams that are not actor messages (server events,
//! progress notifications).

pub mod codec;
pub mod config;
pub mod counter;
pub mod error;
mod json_keys;
pub mod jsonrpc;
pub mod mcp;
pub mod messages;
pub mod status;

pub use config::{
    ConfigError, FleetConfig, RestartMode, RestartPolicy, ServerHealthPolicy, ServerSpec, Transport,
};
pub use error::FleetError;
pub use status::{Era, ExitInfo, ServerState, ServerStatus};
