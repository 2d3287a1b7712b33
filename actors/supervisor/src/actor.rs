//! The supervisor actor: its configuration, state and lifecycle.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fleet_protocol::messages::metrics::{MetricEvent, RecordMetric};
use fleet_protocol::messages::supervisor::ServiceKind;
use kameo::Actor;
use kameo::actor::ActorRef;
use kameo::error::Infallible;
use kameo::message::BoxMessage;
use kameo::reply::{BoxReplySender, ReplyError};
use kameo::supervision::SupervisionStrategy;

use crate::services::{Services, Wiring};

/// Knobs of the supervisor.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Restarts of one service allowed within `service_restart_window` before it stays down
    /// (Erlang/OTP's intensity and period; kameo restarts at once, without backoff).
    pub service_restart_limit: u32,
    pub service_restart_window: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            service_restart_limit: 5,
            service_restart_window: Duration::from_secs(10),
        }
    }
}

pub struct SupervisorArgs {
    pub config: SupervisorConfig,
    pub wiring: Wiring,
}

/// The supervisor: its state, boxed. kameo keeps an actor's state by value in the actor's
/// task, more than once over, so a boxed state keeps the task small.
#[derive(derive_more::Deref, derive_more::DerefMut)]
#[deref(forward)]
#[deref_mut(forward)]
pub struct Supervisor(Box<State>);

/// What the supervisor keeps.
pub struct State {
    pub(crate) services: Services,
    pub(crate) restarts: BTreeMap<ServiceKind, u32>,
    pub(crate) own_startup: Duration,
    pub(crate) config: SupervisorConfig,
}

impl Actor for Supervisor {
    type Args = SupervisorArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "Supervisor"
    }

    fn supervision_strategy() -> SupervisionStrategy {
        // A panicking service is restarted alone; the others keep their state.
        SupervisionStrategy::OneForOne
    }

    async fn on_start(args: Self::Args, actor_ref: ActorRef<Self>) -> Result<Self, Self::Error> {
        let begin = Instant::now();
        let services = (args.wiring)(actor_ref).await;
        let children: Duration = services.startup.iter().map(|(_, d)| *d).sum();
        for (kind, took) in &services.startup {
            tracing::debug!(service = %kind, took_us = took.as_micros() as u64, "service started");
        }
        Ok(Supervisor(Box::new(State {
            services,
            restarts: BTreeMap::new(),
            // The supervisor's own start-up, without the children it waited for.
            own_startup: begin.elapsed().saturating_sub(children),
            config: args.config,
        })))
    }

    async fn on_message(
        &mut self,
        msg: BoxMessage<Self>,
        actor_ref: ActorRef<Self>,
        tx: Option<BoxReplySender>,
        stop: &mut bool,
    ) -> Result<(), Box<dyn ReplyError>> {
        // The supervisor handles few messages (launch, status, restarts, shutdown): each is
        // reported at once, with no batching.
        let event = MetricEvent::MessagesHandled {
            actor: crate::ACTOR_NAME.into(),
            count: 1,
        };
        let _ = self
            .services
            .metrics
            .record
            .tell(RecordMetric { event })
            .try_send();
        msg.handle_dyn(self, actor_ref, tx, stop).await
    }
}
