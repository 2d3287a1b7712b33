//! Spawning the actor system: the supervisor, and under it the metrics collector, the server
//! manager, the health monitor and the gateway (which subscribes to the server manager's events
//! at each start), wired to each other through protocol recipients.

use std::time::{Duration, Instant};

use fleet_gateway::{Gateway, GatewayArgs, GatewayConfig, GatewayPort, SessionDirectory};
use fleet_health_monitor::{HealthMonitor, HealthMonitorArgs, HealthMonitorConfig};
use fleet_metrics_collector::{MetricsCollector, MetricsCollectorConfig};
use fleet_protocol::messages::supervisor::ServiceKind;
use fleet_server_manager::{ServerManager, ServerManagerArgs, ServerManagerConfig};
use fleet_supervisor::{
    GatewayServicePort, HealthPort, MetricsPort, ServerManagerPort, Services, Supervisor,
    SupervisorArgs, SupervisorConfig, supervise_service,
};
use kameo::actor::{ActorRef, Spawn};
use tokio::sync::oneshot;

/// Mailbox capacity of the server manager and the health monitor: room for bursts (a fleet
/// launch, many concurrent calls) while still pushing back on a runaway sender.
const SERVICE_MAILBOX: usize = 1024;

/// The tokio runtime mcp-fleet's actors run on: the multi-thread scheduler with `workers`
/// worker threads ([`crate::config::worker_threads`]: one by default) and every driver.
/// `bench_actors` builds its runtime here too, so that it measures the actors as mcp-fleet runs
/// them.
pub fn async_runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
}

/// Every actor's configuration.
#[derive(Debug, Clone, Default)]
pub struct FleetOptions {
    pub supervisor: SupervisorConfig,
    pub server_manager: ServerManagerConfig,
    pub health: HealthMonitorConfig,
    pub metrics: MetricsCollectorConfig,
    pub gateway: GatewayConfig,
}

/// The running actor system.
pub struct Fleet {
    pub supervisor: ActorRef<Supervisor>,
    pub server_manager: ActorRef<ServerManager>,
    pub health: ActorRef<HealthMonitor>,
    pub metrics: ActorRef<MetricsCollector>,
    /// The MCP gateway (sessions and the aggregated catalog).
    pub gateway: ActorRef<Gateway>,
    /// What `/mcp` sends client messages to: the gateway, or an open session directly.
    pub gateway_port: GatewayPort,
    /// Measured start-up of each actor: spawn until its `on_start` finished. The supervisor's
    /// excludes the time it spent waiting for its children.
    pub startup: Vec<(&'static str, Duration)>,
    /// What every start of the server manager shares: once the manager stopped for good,
    /// [`ManagerMemory::servers_stopped`](fleet_server_manager::ManagerMemory::servers_stopped)
    /// says when its servers are gone.
    pub manager_memory: fleet_server_manager::ManagerMemory,
}

struct Refs {
    server_manager: ActorRef<ServerManager>,
    health: ActorRef<HealthMonitor>,
    metrics: ActorRef<MetricsCollector>,
    gateway: ActorRef<Gateway>,
}

impl Fleet {
    /// Starts the supervisor, which starts the services. Returns once all five are running.
    pub async fn start(options: FleetOptions) -> Fleet {
        let gateway_config = std::sync::Arc::new(options.gateway.clone());
        let sessions = SessionDirectory::default();
        let gateway_sessions = sessions.clone();
        let (refs_tx, refs_rx) = oneshot::channel();
        let sup_config = options.supervisor.clone();
        let begin = Instant::now();
        // The manager keeps each server's actor here; the gateway calls them directly.
        let directory = fleet_server_manager::ServerDirectory::default();
        let directory_for_manager = directory.clone();
        let manager_memory = fleet_server_manager::ManagerMemory::default();
        let memory_for_manager = manager_memory.clone();
        let directory_for_gateway = directory;
        let supervisor = Supervisor::spawn(SupervisorArgs {
            config: options.supervisor.clone(),
            wiring: Box::new(move |sup| {
                Box::pin(async move {
                    let mc_config = options.metrics.clone();
                    let (metrics, mc_took) = supervise_service::<MetricsCollector>(
                        &sup,
                        ServiceKind::MetricsCollector,
                        &sup_config,
                        None,
                        move || mc_config.clone(),
                    )
                    .await;
                    let sm_args = ServerManagerArgs {
                        config: std::sync::Arc::new(options.server_manager.clone()),
                        metrics: Some(metrics.clone().recipient()),
                        directory: Some(directory_for_manager),
                        // The same one for every incarnation: the factory clones these.
                        memory: memory_for_manager,
                    };
                    let (server_manager, sm_took) = supervise_service::<ServerManager>(
                        &sup,
                        ServiceKind::ServerManager,
                        &sup_config,
                        Some(SERVICE_MAILBOX),
                        move || sm_args.clone(),
                    )
                    .await;
                    let hm_args = HealthMonitorArgs {
                        config: options.health.clone(),
                        servers: server_manager.clone().reply_recipient(),
                        probe: server_manager.clone().reply_recipient(),
                        health_events: vec![server_manager.clone().recipient()],
                        metrics: Some(metrics.clone().recipient()),
                    };
                    let (health, hm_took) = supervise_service::<HealthMonitor>(
                        &sup,
                        ServiceKind::HealthMonitor,
                        &sup_config,
                        Some(SERVICE_MAILBOX),
                        move || hm_args.clone(),
                    )
                    .await;
                    let gw_args = GatewayArgs {
                        config: gateway_config,
                        servers: server_manager.clone().reply_recipient(),
                        status: server_manager.clone().reply_recipient(),
                        metrics: Some(metrics.clone().recipient()),
                        directory: Some(directory_for_gateway),
                        sessions: gateway_sessions,
                        events: Some(server_manager.clone().recipient()),
                    };
                    // Unbounded, as its event sink needs (see `GatewayArgs::events`).
                    let (gateway, gw_took) = supervise_service::<Gateway>(
                        &sup,
                        ServiceKind::Gateway,
                        &sup_config,
                        None,
                        move || gw_args.clone(),
                    )
                    .await;
                    let services = Services {
                        server_manager: ServerManagerPort {
                            launch: server_manager.clone().reply_recipient(),
                            list: server_manager.clone().reply_recipient(),
                            stop_all: server_manager.clone().reply_recipient(),
                        },
                        health: HealthPort {
                            get_health: health.clone().reply_recipient(),
                        },
                        metrics: MetricsPort {
                            record: metrics.clone().recipient(),
                            get: metrics.clone().reply_recipient(),
                            flush: metrics.clone().reply_recipient(),
                        },
                        gateway: Some(GatewayServicePort {
                            stats: gateway.clone().reply_recipient(),
                        }),
                        startup: vec![
                            (ServiceKind::MetricsCollector, mc_took),
                            (ServiceKind::ServerManager, sm_took),
                            (ServiceKind::HealthMonitor, hm_took),
                            (ServiceKind::Gateway, gw_took),
                        ],
                    };
                    let _ = refs_tx.send(Refs {
                        server_manager,
                        health,
                        metrics,
                        gateway,
                    });
                    services
                })
            }),
        });
        supervisor.wait_for_startup().await;
        let total = begin.elapsed();
        let refs = refs_rx
            .await
            .expect("the supervisor's on_start runs the wiring before it finishes");
        let status = supervisor
            .ask(fleet_protocol::messages::supervisor::GetFleetStatus)
            .await
            .ok();
        let mut startup = Vec::new();
        let mut children = Duration::ZERO;
        if let Some(status) = &status {
            for s in &status.services {
                children += s.startup;
                startup.push((s.kind.as_str(), s.startup));
            }
        }
        startup.insert(
            0,
            (fleet_supervisor::ACTOR_NAME, total.saturating_sub(children)),
        );
        Fleet {
            supervisor,
            server_manager: refs.server_manager,
            health: refs.health,
            metrics: refs.metrics,
            gateway_port: GatewayPort::new(refs.gateway.clone(), sessions),
            gateway: refs.gateway,
            startup,
            manager_memory,
        }
    }
}

/// Raises this process's soft limit of open files to its hard limit. Each stdio server holds
/// three pipes, so the usual soft limit of 1024 runs out near 300 servers; children inherit the
/// raised limit. A failure is logged and changes nothing.
pub fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-file limit"),
            Err(e) => tracing::warn!(soft, hard, error = %e, "could not raise the open-file limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not read the open-file limit"),
    }
}
