//! fleet-metrics-collector: the actor that aggregates the fleet's metric events.
//!
//! **Owns** the aggregates ([`aggregate::Aggregates`]): per server, counts of starts, ready
//! handshakes, launch failures, stops, restarts, exits (by reason, and unexpected ones), probes,
//! requests by outcome, tool calls by tool, bad stdout lines and stderr lines, with handshake,
//! probe and request latency statistics, the last state and the last process sample; for the
//! gateway, sessions created, expired, closed and active, and HTTP responses by status; per
//! actor kind, handled messages and restarts; and the number of events recorded in all. It also
//! owns the [`export::Exporter`], its handles into the `metrics` facade.
//!
//! **Handles** the closed set in [`fleet_protocol::messages::metrics`]:
//!
//! | message | reply |
//! |---|---|
//! | `RecordMetric` | `()`; applies the event and records it through the `metrics` facade |
//! | `GetMetrics` | `Arc<MetricsSnapshot>`: the aggregates as they are, shared copy-on-write |
//! | `FlushMetrics` | `()`, once everything sent before it is recorded, its own count too |
//!
//! **Emits** every event through the [`metrics`] facade under `mcp_fleet_*` names
//! ([`export`]); whichever recorder runtime installs (the Prometheus exporter, configured with
//! [`export::LATENCY_BUCKETS`]) receives them. Without a recorder the facade drops them.
//!
//! **Invariants**
//! - It never blocks nor awaits in a handler: applying an event is arithmetic on in-memory maps,
//!   and recording through the facade is in-memory too (the exporter renders on scrape, elsewhere).
//!   Senders use `tell`, so no actor waits on it.
//! - An event from a server or actor it has not seen creates that entry; there is no registration.
//! - A snapshot never changes once returned: the next event copies the aggregates if a reader
//!   still holds it (`Arc::make_mut`), so a query itself copies nothing.
//! - It counts its own handled messages with a `MessageCounter` and applies the batches as
//!   `MessagesHandled { actor: "metrics-collector" }` events directly, without a message to itself.
//! - No input panics it: counts and latency sums saturate instead of overflowing.
//! - Label values are bounded: `method` is an MCP request method or `other`; the other labels
//!   come from the config, the code, or closed sets (see [`export`]).
//! - Aggregates live in the actor: a restart starts them from zero (the facade's counters, held by
//!   the global recorder, carry on).

pub mod actor;
pub mod aggregate;
pub mod export;
mod handlers;

pub use actor::{ACTOR_NAME, MetricsCollector, MetricsCollectorConfig};
pub use aggregate::Aggregates;
