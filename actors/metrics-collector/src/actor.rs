//! The metrics-collector actor: its state, configuration and lifecycle hooks.

use std::time::{Duration, Instant};

use fleet_protocol::counter::MessageCounter;
use fleet_protocol::messages::metrics::MetricEvent;
use kameo::actor::{Actor, ActorRef, WeakActorRef};
use kameo::error::{ActorStopReason, Infallible};

use crate::aggregate::Aggregates;
use crate::export::{self, Exporter};

/// The actor kind under which the collector reports its own handled messages.
pub const ACTOR_NAME: &str = "metrics-collector";

/// How the collector runs. `Clone` so a supervisor can restart it with the same arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsCollectorConfig {
    /// How often the collector reports its own handled-message count (at the next message after
    /// this much time; a flush reports at once).
    pub report_every: Duration,
}

impl Default for MetricsCollectorConfig {
    fn default() -> Self {
        MetricsCollectorConfig {
            report_every: Duration::from_secs(1),
        }
    }
}

/// Aggregates metric events and records them through the `metrics` facade.
///
/// The exporter (over 200 bytes of maps and handles) is boxed to keep the state small: kameo's
/// actor task holds the state by value in its output, and every poll of that task (one per
/// message) copies that output, with calls to `memcpy` once it passes about 100 bytes.
pub struct MetricsCollector {
    pub(crate) aggregates: Aggregates,
    pub(crate) exporter: Box<Exporter>,
    counter: MessageCounter,
}

impl MetricsCollector {
    /// Applies one event to the aggregates and records it through the facade.
    pub(crate) fn apply(&mut self, event: &MetricEvent) {
        self.aggregates.apply(event);
        self.exporter.record(event);
    }
}

impl MetricsCollector {
    /// Counts one handled message; applies the batch when one is due.
    pub(crate) fn count_message(&mut self, now: Instant) {
        if let Some(count) = self.counter.record(now) {
            self.apply_own_count(count);
        }
    }

    /// Applies whatever count is pending, due or not.
    pub(crate) fn take_pending_count(&mut self, now: Instant) {
        if let Some(count) = self.counter.take(now) {
            self.apply_own_count(count);
        }
    }

    /// Our own count goes straight into the aggregates and the facade: a message to ourselves
    /// would be one more message to count, and would race a flush. It is applied as a
    /// `MessagesHandled { actor: ACTOR_NAME, count }` event would be, without building one.
    fn apply_own_count(&mut self, count: u64) {
        self.aggregates.apply_messages_handled(ACTOR_NAME, count);
        self.exporter.record_own_messages(count);
    }
}

impl Actor for MetricsCollector {
    type Args = MetricsCollectorConfig;
    type Error = Infallible;

    fn name() -> &'static str {
        ACTOR_NAME
    }

    async fn on_start(config: Self::Args, _actor_ref: ActorRef<Self>) -> Result<Self, Self::Error> {
        export::describe_once();
        tracing::debug!(report_every = ?config.report_every, "metrics collector started");
        Ok(MetricsCollector {
            aggregates: Aggregates::new(),
            exporter: Box::new(Exporter::new()),
            counter: MessageCounter::new(Instant::now(), config.report_every),
        })
    }

    async fn on_stop(
        &mut self,
        _actor_ref: WeakActorRef<Self>,
        _reason: ActorStopReason,
    ) -> Result<(), Self::Error> {
        // The aggregates die with us, but the facade's counters outlive us: report the rest.
        self.take_pending_count(Instant::now());
        Ok(())
    }
}
