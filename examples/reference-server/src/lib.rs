//! A controllable MCP server over stdio, for the tests and demos of mcp-fleet.
//!
//! The binary `mcp-reference-server` speaks newline-delimited JSON-RPC 2.0 on stdin and stdout,
//! in the handshake era (`initialize`, 2024-11-05 to 2025-11-25) and the stateless era
//! (`server/discover`, 2026-07-28), and offers three tools: `echo`, `add` and `sleep`. Flags and
//! environment variables (see [`Config`]) make it crash, hang, start slowly or write garbage, so
//! that a supervisor can be tested against each failure.
//!
//! Other crates' tests get the binary with [`binary_path`]; the server can also run in-process
//! over any byte streams with [`serve`].

mod binary;
pub mod config;
pub mod error;
mod log;
mod output;
pub mod protocol;
mod server;
pub mod tools;

pub use binary::binary_path;
pub use config::{Config, EraMode};
pub use error::RpcError;
pub use server::{CRASH_EXIT_CODE, Exit, run, serve};

/// The name of the server's binary (and package).
pub const BINARY_NAME: &str = "mcp-reference-server";
