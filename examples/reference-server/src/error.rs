//! The JSON-RPC errors the server answers with, and their wire form.

use serde_json::{Map, Value, json};

use crate::protocol::MODERN_VERSION;

/// JSON-RPC code for a line that is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC code for a JSON value that is not a valid request.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC code for a method the server does not implement.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC code for parameters the method cannot accept.
pub const INVALID_PARAMS: i64 = -32602;
/// MCP code for a protocol version (or era) the server does not speak.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// Every way a message can fail; each maps to one JSON-RPC error code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RpcError {
    /// The line was not JSON (or not UTF-8).
    #[error("Parse error: {0}")]
    Parse(String),
    /// The JSON value was not a valid JSON-RPC 2.0 request.
    #[error("Invalid request: {0}")]
    InvalidRequest(String),
    /// The method is unknown, or not offered in the era this process speaks.
    #[error("Method not found: {0}")]
    MethodNotFound(String),
    /// The parameters (including tool names and tool arguments) were wrong.
    #[error("Invalid params: {0}")]
    InvalidParams(String),
    /// The client asked for a protocol version or era this process does not speak.
    #[error("Unsupported protocol version: {0}")]
    UnsupportedProtocolVersion(String),
}

impl RpcError {
    /// The JSON-RPC error code of this error.
    pub fn code(&self) -> i64 {
        match self {
            Self::Parse(_) => PARSE_ERROR,
            Self::InvalidRequest(_) => INVALID_REQUEST,
            Self::MethodNotFound(_) => METHOD_NOT_FOUND,
            Self::InvalidParams(_) => INVALID_PARAMS,
            Self::UnsupportedProtocolVersion(_) => UNSUPPORTED_PROTOCOL_VERSION,
        }
    }

    /// The JSON-RPC `error` object for this error.
    pub fn to_json(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), self.code().into());
        error.insert("message".into(), self.to_string().into());
        // Clients of the stateless era read `supported` to pick a version they share with us.
        if let Self::UnsupportedProtocolVersion(_) = self {
            error.insert("data".into(), json!({ "supported": [MODERN_VERSION] }));
        }
        Value::Object(error)
    }
}
