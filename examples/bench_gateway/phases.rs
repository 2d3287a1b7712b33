//! Where a call's time goes: the same `tools/call echo` asked in-process of mcp-fleet's actors,
//! without HTTP. This program starts the actor system itself (`Fleet::start`, default options,
//! the same log filter and Prometheus recorder as `mcp-fleet run`) with the one backend, then
//! asks `CallServer` of the server manager (the server manager and the server's actor, the
//! pipes and the backend) and `ClientMessage` of the gateway in a 2025 session (plus the gateway
//! and session actors and the dispatcher). With direct stdio below and `/mcp` above, the
//! differences split the gateway's overhead by layer.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use fleet_gateway::Gateway;
use fleet_protocol::ServerSpec;
use fleet_protocol::jsonrpc::{Message, Outcome, Request};
use fleet_protocol::mcp::{self, methods};
use fleet_protocol::messages::gateway::{ClientMessage, ClientReply};
use fleet_protocol::messages::server::CallServer;
use fleet_protocol::messages::supervisor::{LaunchFleet, Shutdown};
use fleet_runtime::{Fleet, FleetOptions};
use fleet_server_manager::ServerManager;
use kameo::actor::ActorRef;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Checks a `tools/call` result holding the echo of `msg`.
fn check_result(v: &Value, msg: &str) -> anyhow::Result<()> {
    if v.get("isError").and_then(Value::as_bool) == Some(true) {
        bail!("tool error");
    }
    let text = v
        .pointer("/content/0/text")
        .and_then(Value::as_str)
        .context("no text content")?;
    if text == msg || text.strip_prefix("Echo: ") == Some(msg) {
        Ok(())
    } else {
        bail!("echo {text:?} for {msg:?}")
    }
}

/// The server manager, asked directly.
pub struct ManagerCaller {
    pub manager: ActorRef<ServerManager>,
    pub server: String,
}

impl ManagerCaller {
    pub async fn call_echo(&self, msg: &str) -> anyhow::Result<()> {
        let v = self
            .manager
            .ask(CallServer::new(
                self.server.clone(),
                methods::TOOLS_CALL,
                Some(json!({"name": "echo", "arguments": {"message": msg}})),
            ))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        check_result(&v.result, msg)
    }
}

/// The gateway actor, asked directly in a 2025 session.
pub struct GatewayCaller {
    pub gateway: ActorRef<Gateway>,
    pub session: String,
    pub tool: String,
    pub next_id: u64,
}

impl GatewayCaller {
    pub async fn open(gateway: ActorRef<Gateway>, tool: String) -> anyhow::Result<GatewayCaller> {
        let session = fleet_examples::open_session(&gateway, "bench_gateway").await?;
        Ok(GatewayCaller {
            gateway,
            session,
            tool,
            next_id: 1,
        })
    }

    pub async fn call_echo(&mut self, msg: &str) -> anyhow::Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        let reply = self
            .gateway
            .ask(ClientMessage {
                session: Some(self.session.clone()),
                protocol_version: Some(mcp::LEGACY_VERSION.into()),
                message: Message::Request(Request::new(
                    id,
                    methods::TOOLS_CALL,
                    Some(json!({"name": self.tool, "arguments": {"message": msg}})),
                )),
                progress: None,
                cancel: CancellationToken::new(),
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let ClientReply::Response { response, .. } = reply else {
            bail!("not a response");
        };
        match response.outcome {
            Outcome::Result(v) => check_result(&v, msg),
            Outcome::Error(e) => bail!("JSON-RPC error {} {}", e.code, e.message),
        }
    }
}

/// The actor system with one server, started in this process.
pub struct InProcess {
    pub fleet: Fleet,
    pub server: String,
}

impl InProcess {
    pub async fn start(name: &str, program: &Path, args: &[String]) -> anyhow::Result<InProcess> {
        let fleet = Fleet::start(FleetOptions::default()).await;
        let spec = ServerSpec::stdio(name, program.to_string_lossy(), args.iter().cloned());
        let report = fleet
            .supervisor
            .ask(LaunchFleet { specs: vec![spec] })
            .await
            .map_err(|e| anyhow::anyhow!("launch: {e:?}"))?;
        for r in &report.results {
            if let Err(e) = r {
                bail!("launch: {e}");
            }
        }
        // The gateway lists the server's tools once it is ready: wait until a call routes.
        let me = InProcess {
            fleet,
            server: name.to_owned(),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut probe =
                GatewayCaller::open(me.fleet.gateway.clone(), format!("{name}__echo")).await?;
            if probe.call_echo("ready").await.is_ok() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{name}__echo not routed by the in-process gateway after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(me)
    }

    pub async fn stop(self) {
        // The supervisor's shutdown stops the gateway first.
        let _ = tokio::time::timeout(Duration::from_secs(15), self.fleet.supervisor.ask(Shutdown))
            .await;
    }
}
