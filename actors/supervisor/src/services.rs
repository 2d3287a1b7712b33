//! What runtime hands the supervisor: how to spawn the services, and the recipients to reach them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fleet_protocol::FleetError;
use fleet_protocol::ServerStatus;
use fleet_protocol::messages::gateway::{GatewayStats, GetGatewayStats};
use fleet_protocol::messages::health::{GetHealth, ServerHealth};
use fleet_protocol::messages::metrics::{FlushMetrics, GetMetrics, MetricsSnapshot, RecordMetric};
use fleet_protocol::messages::server::{LaunchServer, ListServers, StopAllServers, StoppedServer};
use fleet_protocol::messages::supervisor::{ServiceKind, ServiceRestarted};
use futures::future::BoxFuture;
use kameo::Actor;
use kameo::actor::{ActorRef, Recipient, ReplyRecipient, Spawn};
use kameo::error::Infallible;
use kameo::mailbox;
use kameo::supervision::RestartPolicy;

use crate::actor::{Supervisor, SupervisorConfig};

/// Spawns the services under the supervisor (runtime writes it; see [`supervise_service`]).
pub type Wiring = Box<dyn FnOnce(ActorRef<Supervisor>) -> BoxFuture<'static, Services> + Send>;

/// The server manager as the supervisor sees it.
#[derive(Clone)]
pub struct ServerManagerPort {
    pub launch: ReplyRecipient<LaunchServer, ServerStatus, FleetError>,
    pub list: ReplyRecipient<ListServers, Vec<ServerStatus>, Infallible>,
    pub stop_all: ReplyRecipient<StopAllServers, Vec<StoppedServer>, Infallible>,
}

/// The health monitor as the supervisor sees it.
#[derive(Clone)]
pub struct HealthPort {
    pub get_health: ReplyRecipient<GetHealth, Vec<ServerHealth>, Infallible>,
}

/// The metrics collector as the supervisor sees it.
#[derive(Clone)]
pub struct MetricsPort {
    pub record: Recipient<RecordMetric>,
    pub get: ReplyRecipient<GetMetrics, Arc<MetricsSnapshot>, Infallible>,
    pub flush: ReplyRecipient<FlushMetrics, (), Infallible>,
}

/// The MCP gateway as the supervisor sees it: whether it runs, and how to stop it (first, at a
/// shutdown: its sessions end before the servers they use).
#[derive(Clone)]
pub struct GatewayServicePort {
    pub stats: ReplyRecipient<GetGatewayStats, GatewayStats, FleetError>,
}

/// The spawned services, with the start-up time measured for each.
pub struct Services {
    pub server_manager: ServerManagerPort,
    pub health: HealthPort,
    pub metrics: MetricsPort,
    /// The gateway, when the fleet serves MCP clients.
    pub gateway: Option<GatewayServicePort>,
    /// Time from spawn until the service's `on_start` finished.
    pub startup: Vec<(ServiceKind, Duration)>,
}

/// Spawns a service actor supervised by `supervisor` (one-for-one; restarted after a panic or an
/// error, not after a normal stop; at most `config.service_restart_limit` restarts within
/// `config.service_restart_window`). `make_args` is called at every start; every start after the
/// first is reported to the supervisor as [`ServiceRestarted`].
/// `mailbox_capacity` bounds the mailbox; `None` makes it unbounded (for the metrics collector,
/// whose senders must never wait and whose events must never be dropped).
/// Returns the actor and its measured start-up time.
pub async fn supervise_service<C: Actor>(
    supervisor: &ActorRef<Supervisor>,
    kind: ServiceKind,
    config: &SupervisorConfig,
    mailbox_capacity: Option<usize>,
    make_args: impl Fn() -> C::Args + Send + Sync + 'static,
) -> (ActorRef<C>, Duration) {
    let started_once = Arc::new(AtomicBool::new(false));
    let sup = supervisor.downgrade();
    let factory = move || {
        if started_once.swap(true, Ordering::AcqRel)
            && let Some(sup) = sup.upgrade()
        {
            let _ = sup.tell(ServiceRestarted { kind }).try_send();
        }
        make_args()
    };
    let begin = Instant::now();
    let mailbox = match mailbox_capacity {
        Some(n) => mailbox::bounded(n),
        None => mailbox::unbounded(),
    };
    let actor = C::supervise_with(supervisor, factory)
        .restart_policy(RestartPolicy::Transient)
        .restart_limit(config.service_restart_limit, config.service_restart_window)
        .spawn_with_mailbox(mailbox)
        .await;
    actor.wait_for_startup().await;
    (actor, begin.elapsed())
}
