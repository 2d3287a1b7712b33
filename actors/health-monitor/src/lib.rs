//! fleet-health-monitor: the actor that probes every serving MCP server periodically and
//! announces when one becomes unhealthy or recovers.
//!
//! **Owns**: one [`HealthTracker`] per probed server (probes, failures, the current failure run,
//! the verdict, the last latency and error), and the periodic ticker. Nothing else: servers,
//! processes and connections belong to the server manager.
//!
//! **Handles** (the closed set of `fleet_protocol::messages::health`):
//! - `ProbeAll` → `Vec<ProbeResult>`: a probe round that starts after the request (right away,
//!   or right after the round under way), answered once its results are applied.
//! - `GetHealth` → `Vec<ServerHealth>`, sorted by server name.
//! - internally, `Tick` (from its ticker, every `interval`) and `ProbeRoundFinished` (from the
//!   task that ran a round).
//!
//! **Asks** the server manager `ListServers` and, for every server whose state is serving,
//! `ProbeServer { name, timeout }`, all concurrently, on a task off the mailbox.
//!
//! **Emits** `HealthChanged` to every `health_events` recipient when a verdict changes
//! ([`Verdict`]: unhealthy exactly when `failure_threshold` probes in a row failed, healthy again
//! on the first good probe after that), and to the metrics collector `MetricEvent::Probe` per
//! probe and `MetricEvent::MessagesHandled` batches.
//!
//! **Invariants**:
//! - A probe never opens a process or a session: it only asks the server manager, which probes
//!   over the server's existing connection in the era the process started in.
//! - Rounds never overlap: a tick during a round is skipped, a `ProbeAll` during a round waits
//!   for the next one.
//! - A probe never waits longer than `timeout` (plus [`PROBE_GRACE`] for a manager that never
//!   answers); a probe that does not answer in time counts as a failure, and the round still ends.
//! - The mailbox never waits on a server: rounds run on their own task, so `GetHealth` answers
//!   while a round is under way.
//! - Trackers of servers no longer listed are dropped; a server seen with a new process
//!   (another pid or start time) starts a new failure run; a tracker starts with the manager's
//!   view (unhealthy if the manager still marks it so, e.g. after the monitor restarted).

mod actor;
mod handlers;
pub mod policy;

pub use actor::{
    ACTOR_NAME, HealthMonitor, HealthMonitorArgs, HealthMonitorConfig, PROBE_GRACE, ProbeRecipient,
    ServersRecipient,
};
pub use policy::{HealthPolicy, HealthTracker, Verdict};
