//! One `impl Message` per message in `fleet_protocol::messages::metrics`; each is thin: the pure
//! core ([`crate::aggregate`]) plus the facade ([`crate::export`]).

use fleet_protocol::messages::metrics::{FlushMetrics, GetMetrics, MetricsSnapshot, RecordMetric};
use kameo::error::Infallible;
use kameo::message::{Context, Message};

use crate::actor::MetricsCollector;

impl Message<RecordMetric> for MetricsCollector {
    type Reply = ();

    async fn handle(&mut self, msg: RecordMetric, _ctx: &mut Context<Self, Self::Reply>) {
        self.apply(&msg.event);
        self.count_message();
    }
}

impl Message<GetMetrics> for MetricsCollector {
    // kameo implements `Reply` for `Result` but cannot for protocol's snapshot type (orphan rule);
    // an infallible `Result` gives `ask` callers the same `Result<MetricsSnapshot, SendError>`.
    type Reply = Result<MetricsSnapshot, Infallible>;

    async fn handle(
        &mut self,
        _msg: GetMetrics,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.count_message();
        Ok(self.aggregates.snapshot())
    }
}

impl Message<FlushMetrics> for MetricsCollector {
    type Reply = ();

    async fn handle(&mut self, _msg: FlushMetrics, _ctx: &mut Context<Self, Self::Reply>) {
        // The mailbox is FIFO, so every event sent before this one is already applied; taking the
        // pending count as well makes a snapshot right after a flush complete.
        self.count_message();
        self.take_pending_count();
    }
}
