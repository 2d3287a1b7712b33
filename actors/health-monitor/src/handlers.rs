//! One `Message` impl per message the health monitor handles: the protocol's `ProbeAll` and
//! `GetHealth`, and its internal `Tick` and `ProbeRoundFinished`. Each is thin: the decisions are
//! in `policy`, the effects in `actor`.

use fleet_protocol::ServerStatus;
use fleet_protocol::messages::health::{GetHealth, ProbeAll, ProbeResult, ServerHealth};
use kameo::message::{Context, Message};
use kameo::reply::DelegatedReply;

use crate::actor::{HealthMonitor, Probed};

/// Internal: the ticker's nudge to run a probe round (skipped while one is under way).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tick;

/// Internal: a probe round's task reporting back to the actor.
#[derive(Debug)]
pub(crate) struct ProbeRoundFinished {
    /// Which round; a result of any other round than the one under way is ignored.
    pub(crate) round: u64,
    /// What the round found, or why it could not list the servers.
    pub(crate) report: Result<RoundReport, String>,
}

/// The servers a round listed and the probes of the serving ones, in list order.
#[derive(Debug)]
pub(crate) struct RoundReport {
    pub(crate) listed: Vec<ServerStatus>,
    pub(crate) probed: Vec<Probed>,
}

impl Message<Tick> for HealthMonitor {
    type Reply = ();

    async fn handle(&mut self, _: Tick, _: &mut Context<Self, Self::Reply>) {
        self.count_message().await;
        if self.round_running() {
            tracing::debug!("probe round still under way; tick skipped");
            return;
        }
        self.request_round(None);
    }
}

impl Message<ProbeAll> for HealthMonitor {
    type Reply = DelegatedReply<Vec<ProbeResult>>;

    async fn handle(&mut self, _: ProbeAll, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.count_message().await;
        let (delegated, sender) = ctx.reply_sender();
        self.request_round(sender);
        delegated
    }
}

impl Message<GetHealth> for HealthMonitor {
    type Reply = Vec<ServerHealth>;

    async fn handle(&mut self, _: GetHealth, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.count_message().await;
        self.health()
    }
}

impl Message<ProbeRoundFinished> for HealthMonitor {
    type Reply = ();

    async fn handle(&mut self, msg: ProbeRoundFinished, _: &mut Context<Self, Self::Reply>) {
        self.count_message().await;
        self.finish_round(msg).await;
    }
}
