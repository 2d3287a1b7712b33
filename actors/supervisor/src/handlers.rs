//! The supervisor's handlers, one per message of `fleet_protocol::messages::supervisor`.
//! Each system-wide operation runs in a task, so the supervisor stays responsive meanwhile.

use std::time::Instant;

use fleet_protocol::FleetError;
use fleet_protocol::messages::metrics::{FlushMetrics, MetricEvent, RecordMetric};
use fleet_protocol::messages::server::{LaunchServer, ListServers, StopAllServers};
use fleet_protocol::messages::supervisor::{
    FleetLaunchReport, FleetStatus, GetFleetStatus, LaunchFleet, ServiceKind, ServiceRestarted,
    ServiceStatus, Shutdown, ShutdownReport,
};
use kameo::error::SendError;
use kameo::message::{Context, Message};
use kameo::reply::DelegatedReply;

use crate::actor::Supervisor;

fn unavailable<M, E: std::fmt::Debug>(kind: ServiceKind, e: SendError<M, E>) -> FleetError {
    FleetError::ActorUnavailable {
        actor: kind.to_string(),
        reason: match e {
            SendError::HandlerError(e) => format!("{e:?}"),
            SendError::ActorNotRunning(_) | SendError::ActorStopped => "not running".into(),
            SendError::ActorRestarting(_) => "restarting".into(),
            SendError::MailboxFull(_) => "mailbox full".into(),
            SendError::Timeout(_) => "timed out".into(),
        },
    }
}

impl Message<LaunchFleet> for Supervisor {
    type Reply = DelegatedReply<Result<FleetLaunchReport, FleetError>>;

    async fn handle(
        &mut self,
        msg: LaunchFleet,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let launch = self.services.server_manager.launch.clone();
        ctx.spawn(async move {
            let begin = Instant::now();
            tracing::info!(servers = msg.specs.len(), "launching fleet");
            let launches = msg.specs.into_iter().map(|spec| {
                let launch = launch.clone();
                async move {
                    launch
                        .ask(LaunchServer { spec })
                        .await
                        .map_err(|e| match e {
                            SendError::HandlerError(e) => e,
                            other => unavailable(ServiceKind::ServerManager, other),
                        })
                }
            });
            let results = futures::future::join_all(launches).await;
            Ok(FleetLaunchReport {
                results,
                took: begin.elapsed(),
            })
        })
    }
}

impl Message<GetFleetStatus> for Supervisor {
    type Reply = DelegatedReply<Result<FleetStatus, FleetError>>;

    async fn handle(
        &mut self,
        _: GetFleetStatus,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let list = self.services.server_manager.list.clone();
        let services = ServiceKind::ALL
            .iter()
            .filter_map(|&kind| {
                let alive = match kind {
                    ServiceKind::ServerManager => self.services.server_manager.list.is_alive(),
                    ServiceKind::HealthMonitor => self.services.health.get_health.is_alive(),
                    ServiceKind::MetricsCollector => self.services.metrics.get.is_alive(),
                    ServiceKind::Gateway => self.services.gateway.as_ref()?.stats.is_alive(),
                };
                Some(ServiceStatus {
                    kind,
                    alive,
                    restarts: self.restarts.get(&kind).copied().unwrap_or(0),
                    startup: self
                        .services
                        .startup
                        .iter()
                        .find(|(k, _)| *k == kind)
                        .map(|(_, d)| *d)
                        .unwrap_or_default(),
                })
            })
            .collect();
        let supervisor_startup = self.own_startup;
        ctx.spawn(async move {
            let servers = list
                .ask(ListServers)
                .await
                .map_err(|e| unavailable(ServiceKind::ServerManager, e))?;
            Ok(FleetStatus {
                supervisor_startup,
                services,
                servers,
            })
        })
    }
}

impl Message<Shutdown> for Supervisor {
    type Reply = DelegatedReply<Result<ShutdownReport, FleetError>>;

    async fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let sm = self.services.server_manager.clone();
        let health = self.services.health.clone();
        let metrics = self.services.metrics.clone();
        let gateway = self.services.gateway.clone();
        let me = ctx.actor_ref().clone();
        ctx.spawn(async move {
            let begin = Instant::now();
            if let Some(gateway) = gateway {
                tracing::info!("shutdown: ending the gateway's sessions");
                let _ = gateway.stats.stop_gracefully().await;
                gateway.stats.wait_for_shutdown().await;
            }
            tracing::info!("shutdown: stopping the health monitor");
            let _ = health.get_health.stop_gracefully().await;
            health.get_health.wait_for_shutdown().await;

            tracing::info!("shutdown: stopping every server");
            let servers = sm.stop_all.ask(StopAllServers).await.unwrap_or_default();
            for s in &servers {
                tracing::info!(server = %s.name, method = ?s.method, exit = ?s.exit, "server stopped");
            }
            let _ = sm.list.stop_gracefully().await;
            sm.list.wait_for_shutdown().await;

            tracing::info!("shutdown: flushing metrics");
            let _ = metrics.flush.ask(FlushMetrics).await;
            let _ = metrics.get.stop_gracefully().await;
            metrics.get.wait_for_shutdown().await;

            // The supervisor itself goes last, after this reply is sent.
            let _ = me.stop_gracefully().await;
            tracing::info!(took_ms = begin.elapsed().as_millis() as u64, "shutdown complete");
            Ok(ShutdownReport {
                servers,
                took: begin.elapsed(),
            })
        })
    }
}

impl Message<ServiceRestarted> for Supervisor {
    type Reply = ();

    async fn handle(&mut self, msg: ServiceRestarted, _: &mut Context<Self, Self::Reply>) {
        let limit = self.config.service_restart_limit;
        let n = self.restarts.entry(msg.kind).or_default();
        *n += 1;
        tracing::warn!(service = %msg.kind, restarts = *n, limit, "service actor restarted after a failure");
        let _ = self
            .services
            .metrics
            .record
            .tell(RecordMetric {
                event: MetricEvent::ActorRestarted {
                    actor: msg.kind.to_string(),
                },
            })
            .try_send();
    }
}
