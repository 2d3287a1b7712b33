//! One struct per message, grouped by the actor that accepts it. Each module's doc lists the
//! closed set of messages that actor handles and what it replies; replies are std types or
//! `Result<_, FleetError>`, so this crate needs no actor framework.

pub mod gateway;
pub mod health;
pub mod metrics;
pub mod server;
pub mod supervisor;
