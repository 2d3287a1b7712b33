//! One `impl Message` per message in `fleet_protocol::messages::metrics`; each is thin: the pure
//! core ([`crate::aggregate`]) plus the facade ([`crate::export`]).

use std::sync::Arc;
use std::time::Instant;

use fleet_protocol::messages::metrics::{FlushMetrics, GetMetrics, MetricsSnapshot, RecordMetric};
use kameo::message::{Context, Message};

use crate::actor::MetricsCollector;

impl Message<RecordMetric> for MetricsCollector {
    type Reply = ();

    async fn handle(&mut self, msg: RecordMetric, _ctx: &mut Context<Self, Self::Reply>) {
        self.apply(&msg.event);
        self.count_message(Instant::now());
    }
}

impl Message<GetMetrics> for MetricsCollector {
    // The shared snapshot, not a copy of its maps: see `Aggregates`.
    type Reply = Arc<MetricsSnapshot>;

    async fn handle(
        &mut self,
        _msg: GetMetrics,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.count_message(Instant::now());
        self.aggregates.snapshot()
    }
}

impl Message<FlushMetrics> for MetricsCollector {
    type Reply = ();

    async fn handle(&mut self, _msg: FlushMetrics, _ctx: &mut Context<Self, Self::Reply>) {
        // The mailbox is FIFO, so every event sent before this one is already applied; taking the
        // pending count as well makes a snapshot right after a flush complete. One clock reading
        // serves both.
        let now = Instant::now();
        self.count_message(now);
        self.take_pending_count(now);
    }
}
