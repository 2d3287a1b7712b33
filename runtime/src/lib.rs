//! fleet-runtime: the thin composition of mcp-fleet.
//!
//! - [`system`]: spawns the supervisor and wires the four services under it, the gateway among
//!   them (the only place that names every actor type), returning handles to all five.
//! - [`config`]: reads configuration files, JSON and `mcp-fleet.toml` (the only crate that
//!   touches files and the environment) and turns their errors into messages naming file, line
//!   and key.
//! - [`http`]: the HTTP listener: `/metrics` in the Prometheus text format.
//! - [`admin`]: the admin API (`/healthz`, `/readyz`, `/api/servers...`).
//! - [`cli`]: the client side of `status`, `servers`, `logs` and `tools` (the admin API and
//!   `/mcp`), and the status table.
//! - [`telemetry`]: logging (`RUST_LOG`) and the Prometheus recorder.
//! - [`reload`]: applies a config diff to the running fleet, restarting only what changed.
//! - [`state`]: the changes made at runtime, kept across restarts in an atomically written file.
//!
//! Architecture invariant: runtime holds no policy of its own; it composes actors and serves.

pub mod admin;
pub mod cli;
pub mod config;
pub mod http;
pub mod mcp_http;
pub mod reload;
pub mod state;
pub mod system;
pub mod telemetry;

pub use system::{Fleet, FleetOptions};
