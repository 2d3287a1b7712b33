//! Messages the gateway accepts (the closed set). The HTTP layer in runtime turns each
//! Streamable HTTP request into one of them and the reply into a status code and a body.
//!
//! | message | reply | HTTP |
//! |---|---|---|
//! | [`ClientMessage`] | `Result<ClientReply, FleetError>` | `POST /mcp` |
//! | [`OpenStream`] | `Result<(), FleetError>` | `GET /mcp` |
//! | [`CloseSession`] | `Result<(), FleetError>` | `DELETE /mcp` |
//! | [`GetGatewayStats`] | `Result<GatewayStats, FleetError>` | (status, tests) |
//! | [`ServerEvent`](crate::messages::server::ServerEvent) | `()` | (from the server manager) |

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::FleetError;
use crate::jsonrpc::{Message, Notification, Response};

/// One JSON-RPC message POSTed by an MCP client.
#[derive(Debug)]
pub struct ClientMessage {
    /// The `Mcp-Session-Id` header, if any.
    pub session: Option<String>,
    /// The `MCP-Protocol-Version` header, if any.
    pub protocol_version: Option<String>,
    pub message: Message,
    /// Where progress notifications of this request go while it runs (the POST's SSE stream).
    pub progress: Option<mpsc::Sender<Notification>>,
    /// Cancelled when the client goes away: upstream work for this request is cancelled.
    pub cancel: CancellationToken,
}
pub type ClientMessageReply = Result<ClientReply, FleetError>;

/// What the client gets back for a [`ClientMessage`].
#[derive(Debug)]
pub enum ClientReply {
    /// The answer to a request. `session` is set when the request was an `initialize` that
    /// opened a session (the `Mcp-Session-Id` response header).
    Response {
        response: Response,
        session: Option<String>,
    },
    /// A notification or a response from the client, accepted (HTTP 202).
    Accepted,
    /// A stream that stays open (2026-07-28 `subscriptions/listen`): notifications until the
    /// client goes away. `first` is sent first (the acknowledgement).
    Stream {
        first: Option<Message>,
        messages: mpsc::Receiver<Message>,
    },
}

/// Open the server-to-client stream of a session (`GET /mcp`). The session sends on `sink`
/// until the client closes it or the session ends; a newer stream replaces an older one.
#[derive(Debug)]
pub struct OpenStream {
    pub session: String,
    pub sink: mpsc::Sender<Message>,
}
pub type OpenStreamReply = Result<(), FleetError>;

/// End a session (`DELETE /mcp`).
#[derive(Debug, Clone)]
pub struct CloseSession {
    pub session: String,
}
pub type CloseSessionReply = Result<(), FleetError>;

/// How many sessions there are and how many ended, and what the gateway offers.
#[derive(Debug, Clone, Copy, Default)]
pub struct GetGatewayStats;
pub type GetGatewayStatsReply = Result<GatewayStats, FleetError>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayStats {
    pub active_sessions: usize,
    pub sessions_created: u64,
    pub sessions_expired: u64,
    pub sessions_closed: u64,
    /// Items offered to clients now, over every ready server.
    pub tools: usize,
    pub resources: usize,
    pub resource_templates: usize,
    pub prompts: usize,
    /// The servers whose items are offered now.
    pub servers: Vec<String>,
}
