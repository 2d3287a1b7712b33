//! Runnable examples of mcp-fleet; the examples live beside this file.

pub mod bench;

use anyhow::bail;
use fleet_gateway::Gateway;
use fleet_protocol::jsonrpc::{Message, Notification, Request};
use fleet_protocol::mcp::{self, methods};
use fleet_protocol::messages::gateway::{ClientMessage, ClientReply};
use kameo::actor::ActorRef;
use tokio_util::sync::CancellationToken;

/// What a benchmark's client answers a request of the server it drives (one line for the
/// server's stdin): `ping` gets its empty result, anything else (`roots/list`, sampling)
/// "method not found".
pub fn answer_server_request(method: &str, id: &serde_json::Value) -> Vec<u8> {
    let answer = if method == "ping" {
        serde_json::json!({"jsonrpc": "2.0", "id": id, "result": {}})
    } else {
        serde_json::json!({"jsonrpc": "2.0", "id": id, "error":
            {"code": -32601, "message": "not supported by the benchmark"}})
    };
    format!("{answer}\n").into_bytes()
}

/// Opens one 2025-11-25 session in-process, as `POST /mcp` would: `initialize` (from `client`),
/// then `notifications/initialized`, asked of the gateway actor. Returns the session id.
pub async fn open_session(gateway: &ActorRef<Gateway>, client: &str) -> anyhow::Result<String> {
    let params = serde_json::json!({
        "protocolVersion": mcp::LEGACY_VERSION,
        "capabilities": {},
        "clientInfo": {"name": client, "version": env!("CARGO_PKG_VERSION")},
    });
    let reply = gateway
        .ask(ClientMessage {
            session: None,
            protocol_version: None,
            message: Message::Request(Request::new(1u64, methods::INITIALIZE, Some(params))),
            progress: None,
            cancel: CancellationToken::new(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("initialize: {e}"))?;
    let ClientReply::Response {
        session: Some(session),
        ..
    } = reply
    else {
        bail!("initialize opened no session: {reply:?}");
    };
    let reply = gateway
        .ask(ClientMessage {
            session: Some(session.clone()),
            protocol_version: Some(mcp::LEGACY_VERSION.into()),
            message: Message::Notification(Notification::new(methods::INITIALIZED, None)),
            progress: None,
            cancel: CancellationToken::new(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("notifications/initialized: {e}"))?;
    if !matches!(reply, ClientReply::Accepted) {
        bail!("notifications/initialized: {reply:?}");
    }
    Ok(session)
}
