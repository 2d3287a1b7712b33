//! The supervisor driven through its protocol messages. The services under it are small test
//! actors that speak the same protocol messages (the real ones live in crates this one must not
//! depend on; runtime's tests run the supervisor with the real services).

use std::sync::Arc;
use std::time::Duration;

use fleet_protocol::messages::gateway::{GatewayStats, GetGatewayStats};
use fleet_protocol::messages::health::GetHealth;
use fleet_protocol::messages::metrics::{FlushMetrics, GetMetrics, MetricsSnapshot, RecordMetric};
use fleet_protocol::messages::server::{LaunchServer, ListServers, StopAllServers, StoppedServer};
use fleet_protocol::messages::supervisor::{GetFleetStatus, LaunchFleet, ServiceKind, Shutdown};
use fleet_protocol::{FleetError, ServerSpec, ServerState, ServerStatus};
use fleet_supervisor::{
    GatewayServicePort, HealthPort, MetricsPort, ServerManagerPort, Services, Supervisor,
    SupervisorArgs, SupervisorConfig, supervise_service,
};
use kameo::Actor;
use kameo::actor::{ActorRef, Spawn, WeakActorRef};
use kameo::error::{ActorStopReason, Infallible};
use kameo::message::{Context, Message};
use tokio::sync::mpsc;

/// A service stand-in: answers the protocol messages, panics on demand, reports its stop.
struct Service {
    kind: ServiceKind,
    stops: mpsc::UnboundedSender<ServiceKind>,
    launched: Vec<String>,
}

impl Actor for Service {
    type Args = (ServiceKind, mpsc::UnboundedSender<ServiceKind>);
    type Error = Infallible;

    async fn on_start(args: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(Service {
            kind: args.0,
            stops: args.1,
            launched: Vec::new(),
        })
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        reason: ActorStopReason,
    ) -> Result<(), Self::Error> {
        if matches!(reason, ActorStopReason::Normal) {
            let _ = self.stops.send(self.kind);
        }
        Ok(())
    }
}

struct Panic;

impl Message<Panic> for Service {
    type Reply = ();
    async fn handle(&mut self, _: Panic, _: &mut Context<Self, ()>) {
        panic!("test panic in {}", self.kind);
    }
}

impl Message<LaunchServer> for Service {
    type Reply = Result<ServerStatus, FleetError>;
    async fn handle(
        &mut self,
        msg: LaunchServer,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        if msg.spec.name == "bad" {
            return Err(FleetError::Spawn {
                server: "bad".into(),
                reason: "no".into(),
            });
        }
        self.launched.push(msg.spec.name.clone());
        Ok(ServerStatus::new(msg.spec.name, ServerState::Ready))
    }
}

impl Message<ListServers> for Service {
    type Reply = Vec<ServerStatus>;
    async fn handle(&mut self, _: ListServers, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.launched
            .iter()
            .map(|n| ServerStatus::new(n.clone(), ServerState::Ready))
            .collect()
    }
}

impl Message<StopAllServers> for Service {
    type Reply = Vec<StoppedServer>;
    async fn handle(
        &mut self,
        _: StopAllServers,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let _ = self.stops.send(ServiceKind::ServerManager);
        Vec::new()
    }
}

impl Message<GetHealth> for Service {
    type Reply = Vec<fleet_protocol::messages::health::ServerHealth>;
    async fn handle(&mut self, _: GetHealth, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        Vec::new()
    }
}

impl Message<GetMetrics> for Service {
    type Reply = Arc<MetricsSnapshot>;
    async fn handle(&mut self, _: GetMetrics, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        Arc::default()
    }
}

impl Message<FlushMetrics> for Service {
    type Reply = ();
    async fn handle(&mut self, _: FlushMetrics, _: &mut Context<Self, ()>) {}
}

impl Message<GetGatewayStats> for Service {
    type Reply = Result<GatewayStats, FleetError>;
    async fn handle(
        &mut self,
        _: GetGatewayStats,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        Ok(GatewayStats::default())
    }
}

impl Message<RecordMetric> for Service {
    type Reply = ();
    async fn handle(&mut self, _: RecordMetric, _: &mut Context<Self, ()>) {}
}

struct Fleet {
    supervisor: ActorRef<Supervisor>,
    server_manager: ActorRef<Service>,
    events: mpsc::UnboundedReceiver<ServiceKind>,
}

async fn start() -> Fleet {
    start_with(SupervisorConfig::default()).await
}

async fn start_with(config: SupervisorConfig) -> Fleet {
    let (tx, events) = mpsc::unbounded_channel();
    let (sm_tx, mut sm_rx) = mpsc::unbounded_channel();
    let wiring_config = config.clone();
    let supervisor = Supervisor::spawn(SupervisorArgs {
        config,
        wiring: Box::new(move |sup| {
            Box::pin(async move {
                let mut startup = Vec::new();
                let mut spawn = async |kind| {
                    let tx = tx.clone();
                    let (r, took) = supervise_service::<Service>(
                        &sup,
                        kind,
                        &wiring_config,
                        Some(64),
                        move || (kind, tx.clone()),
                    )
                    .await;
                    startup.push((kind, took));
                    r
                };
                let metrics = spawn(ServiceKind::MetricsCollector).await;
                let sm = spawn(ServiceKind::ServerManager).await;
                let health = spawn(ServiceKind::HealthMonitor).await;
                let gateway = spawn(ServiceKind::Gateway).await;
                let _ = sm_tx.send(sm.clone());
                Services {
                    server_manager: ServerManagerPort {
                        launch: sm.clone().reply_recipient(),
                        list: sm.clone().reply_recipient(),
                        stop_all: sm.reply_recipient(),
                    },
                    health: HealthPort {
                        get_health: health.reply_recipient(),
                    },
                    metrics: MetricsPort {
                        record: metrics.clone().recipient(),
                        get: metrics.clone().reply_recipient(),
                        flush: metrics.reply_recipient(),
                    },
                    gateway: Some(GatewayServicePort {
                        stats: gateway.reply_recipient(),
                    }),
                    startup,
                }
            })
        }),
    });
    supervisor.wait_for_startup().await;
    let server_manager = sm_rx.recv().await.unwrap();
    Fleet {
        supervisor,
        server_manager,
        events,
    }
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<ServiceKind>) -> ServiceKind {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an event within 5 s")
        .expect("channel open")
}

#[tokio::test]
async fn reports_startup_and_launches_a_fleet() {
    let fleet = start().await;
    let status = fleet.supervisor.ask(GetFleetStatus).await.unwrap();
    assert_eq!(status.services.len(), 4);
    for s in &status.services {
        assert!(s.alive);
        assert!(s.startup > Duration::ZERO, "{s:?}");
        assert_eq!(s.restarts, 0);
    }
    let specs = ["a", "bad", "b"].map(|n| ServerSpec::stdio(n, "x", Vec::<String>::new()));
    let report = fleet
        .supervisor
        .ask(LaunchFleet {
            specs: specs.to_vec(),
        })
        .await
        .unwrap();
    assert!(report.results[0].is_ok());
    assert!(matches!(report.results[1], Err(FleetError::Spawn { .. })));
    assert!(report.results[2].is_ok());
    let status = fleet.supervisor.ask(GetFleetStatus).await.unwrap();
    assert_eq!(status.servers.len(), 2);
}

#[tokio::test]
async fn a_panicking_service_is_restarted_counted_and_keeps_its_address() {
    let fleet = start().await;
    fleet.server_manager.tell(Panic).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = fleet.supervisor.ask(GetFleetStatus).await;
        if let Ok(status) = status {
            let sm = status
                .services
                .iter()
                .find(|s| s.kind == ServiceKind::ServerManager)
                .unwrap();
            if sm.restarts == 1 {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no restart was counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The same ActorRef reaches the restarted actor.
    let spec = ServerSpec::stdio("after", "x", Vec::<String>::new());
    fleet
        .supervisor
        .ask(LaunchFleet { specs: vec![spec] })
        .await
        .unwrap();
    let list = fleet.server_manager.ask(ListServers).await.unwrap();
    assert_eq!(list.len(), 1);
}

#[tokio::test]
async fn shutdown_stops_in_order_then_stops_the_supervisor() {
    let mut fleet = start().await;
    fleet.supervisor.ask(Shutdown).await.unwrap();
    let order = [
        next_event(&mut fleet.events).await,
        next_event(&mut fleet.events).await,
        next_event(&mut fleet.events).await,
        next_event(&mut fleet.events).await,
        next_event(&mut fleet.events).await,
    ];
    assert_eq!(
        order,
        [
            ServiceKind::Gateway,
            ServiceKind::HealthMonitor,
            ServiceKind::ServerManager, // StopAllServers
            ServiceKind::ServerManager, // the actor's stop
            ServiceKind::MetricsCollector,
        ]
    );
    tokio::time::timeout(Duration::from_secs(5), fleet.supervisor.wait_for_shutdown())
        .await
        .expect("the supervisor stops");
    assert!(!fleet.supervisor.is_alive());
}

/// Past its restart limit a service is left down and the supervisor gives up: it stops (and the
/// other services with it, which runtime's tests show with the real ones; `mcp-fleet run` then
/// exits 1).
#[tokio::test]
async fn a_service_failing_past_its_restart_limit_stops_the_supervisor() {
    let fleet = start_with(SupervisorConfig {
        service_restart_limit: 1,
        ..SupervisorConfig::default()
    })
    .await;
    // Two panics in a row: the first is within the limit (the second, queued, survives the
    // restart, as kameo keeps a told message for the next start); the second is past it.
    fleet.server_manager.tell(Panic).await.unwrap();
    fleet.server_manager.tell(Panic).await.unwrap();
    let reason = tokio::time::timeout(
        Duration::from_secs(5),
        fleet.supervisor.wait_for_shutdown_result(),
    )
    .await
    .expect("the supervisor gives up and stops");
    // Because the service died for good, of its panic.
    assert!(
        matches!(&reason, Ok(ActorStopReason::LinkDied { id, reason })
            if *id == fleet.server_manager.id()
                && matches!(**reason, ActorStopReason::Panicked(_))),
        "{reason:?}"
    );
}
