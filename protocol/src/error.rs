//! The error carried by every actor reply in the fleet.

use std::time::Duration;

use crate::jsonrpc::{ErrorObject, error_codes};
use crate::status::ExitInfo;

/// Everything that can go wrong between an actor and a caller.
///
/// It is `Clone` so that one failure can answer many waiting callers (kameo replies need
/// `Send + 'static`; several callers may wait on one launch).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FleetError {
    #[error("unknown server `{name}`")]
    UnknownServer { name: String },
    #[error("a server named `{name}` already exists")]
    DuplicateServer { name: String },
    #[error("server `{server}` could not be started: {reason}")]
    Spawn { server: String, reason: String },
    #[error("server `{server}` failed the MCP handshake: {reason}")]
    Handshake { server: String, reason: String },
    #[error("server `{server}` did not answer `{method}` within {after:?}")]
    Timeout {
        server: String,
        method: String,
        after: Duration,
    },
    #[error("server `{server}` exited{}", exit.as_ref().map(|e| format!(" ({e})")).unwrap_or_default())]
    ServerExited {
        server: String,
        exit: Option<ExitInfo>,
    },
    #[error("server `{server}` is not ready (state: {state})")]
    NotReady { server: String, state: String },
    #[error("server `{server}` is not reading its input fast enough; request refused")]
    Overloaded { server: String },
    #[error("server `{server}` answered with error {}: {}", error.code, error.message)]
    Upstream {
        server: String,
        /// Boxed: the error object is large and this is the rare path.
        error: Box<ErrorObject>,
        /// The response's top-level members other than `jsonrpc`, `id` and `error`, passed on
        /// with the error as they came.
        extra: serde_json::Map<String, serde_json::Value>,
    },
    #[error(
        "server `{server}` answered `{method}` with a message that is not valid JSON-RPC: {reason}"
    )]
    BadAnswer {
        server: String,
        method: String,
        reason: String,
    },
    #[error("the call of `{method}` on server `{server}` was cancelled")]
    Cancelled { server: String, method: String },
    #[error("mcp-fleet serves at most {max} sessions; try again once some have ended")]
    TooManySessions { max: usize },
    #[error("no session `{id}` (it ended or never existed); initialize a new one")]
    UnknownSession { id: String },
    #[error("this request needs an `Mcp-Session-Id` header: initialize first")]
    MissingSession,
    #[error("unsupported protocol version `{version}`; supported: {}", supported.join(", "))]
    UnsupportedVersion {
        version: String,
        supported: Vec<String>,
    },
    #[error("{what} is not supported yet")]
    Unsupported { what: String },
    #[error("actor `{actor}` is unavailable: {reason}")]
    ActorUnavailable { actor: String, reason: String },
    #[error("invalid request: {reason}")]
    InvalidRequest { reason: String },
}

impl FleetError {
    /// The JSON-RPC error object a client of the fleet should receive for this failure.
    /// An upstream error passes through unchanged; the fleet's own failures get the server's name
    /// in the message so a client can tell which backend failed.
    pub fn to_jsonrpc(&self) -> ErrorObject {
        match self {
            FleetError::Upstream { error, .. } => (**error).clone(),
            FleetError::UnknownServer { .. } => {
                ErrorObject::new(error_codes::INVALID_PARAMS, self.to_string())
            }
            FleetError::InvalidRequest { .. }
            | FleetError::UnknownSession { .. }
            | FleetError::MissingSession => {
                ErrorObject::new(error_codes::INVALID_REQUEST, self.to_string())
            }
            FleetError::UnsupportedVersion { supported, version } => {
                let mut e =
                    ErrorObject::new(error_codes::UNSUPPORTED_PROTOCOL_VERSION, self.to_string());
                e.data = Some(serde_json::json!({ "supported": supported, "requested": version }));
                e
            }
            _ => ErrorObject::new(error_codes::INTERNAL_ERROR, self.to_string()),
        }
    }
}
