//! Runnable examples of mcp-fleet; the examples live beside this file.

pub mod bench;

use anyhow::bail;
use fleet_gateway::Gateway;
use fleet_protocol::jsonrpc::{Message, Notification, Request};
use fleet_protocol::mcp::{self, methods};
use fleet_protocol::messages::gateway::{ClientMessage, ClientReply};
use kameo::actor::ActorRef;
use tokio_util::sync::CancellationToken;

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
