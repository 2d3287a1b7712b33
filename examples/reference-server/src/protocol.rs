//! JSON-RPC 2.0 message classification and the MCP constants of both protocol eras.

use serde_json::{Map, Value, json};

use crate::error::RpcError;

/// Protocol versions of the handshake era that `initialize` accepts as they are.
pub const LEGACY_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// The version `initialize` answers with when the client asks for one it does not know.
pub const LATEST_LEGACY_VERSION: &str = "2025-11-25";
/// The single version of the stateless era.
pub const MODERN_VERSION: &str = "2026-07-28";
/// The `_meta` key that carries a stateless request's protocol version.
pub const PROTOCOL_VERSION_META_KEY: &str = "io.modelcontextprotocol/protocolVersion";
/// The `_meta` key that names the `subscriptions/listen` a notification belongs to.
pub const SUBSCRIPTION_ID_META_KEY: &str = "io.modelcontextprotocol/subscriptionId";
/// The `_meta` key that carries the server's identity in a `server/discover` result.
pub const SERVER_INFO_META_KEY: &str = "io.modelcontextprotocol/serverInfo";

/// One well-formed JSON-RPC message received from the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A request, which must be answered with its id.
    Request {
        /// The id, a number or a string, echoed unchanged in the answer.
        id: Value,
        /// The method name.
        method: String,
        /// The raw `params` member, if any.
        params: Option<Value>,
    },
    /// A notification, which is never answered.
    Notification {
        /// The method name.
        method: String,
        /// The raw `params` member, if any.
        params: Option<Value>,
    },
    /// A response from the client; this server sends no requests, so it is ignored.
    Response,
}

/// A line that could not be accepted, with the id its error answer must carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The request's id when it could be read, otherwise null.
    pub id: Value,
    /// Why the line was rejected.
    pub error: RpcError,
}

impl Rejected {
    fn new(id: Value, error: RpcError) -> Self {
        Self { id, error }
    }
}

/// Classifies one line (without its newline) as a JSON-RPC message.
///
/// # Errors
///
/// Returns the error answer's id and error when the line is not JSON (`-32700`) or not a valid
/// JSON-RPC 2.0 message (`-32600`).
pub fn parse_line(line: &[u8]) -> Result<Incoming, Rejected> {
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| Rejected::new(Value::Null, RpcError::Parse(e.to_string())))?;
    classify(value)
}

/// Classifies an already parsed JSON value as a JSON-RPC message.
///
/// # Errors
///
/// Returns the error answer's id and error (`-32600`) when the value is not a valid JSON-RPC 2.0
/// message; batches are not supported.
pub fn classify(value: Value) -> Result<Incoming, Rejected> {
    let mut object = match value {
        Value::Object(object) => object,
        // Batches were dropped from MCP in 2025-06-18, and no era this server speaks has them.
        Value::Array(_) => {
            return Err(Rejected::new(
                Value::Null,
                RpcError::InvalidRequest("batches are not supported".into()),
            ));
        }
        _ => {
            return Err(Rejected::new(
                Value::Null,
                RpcError::InvalidRequest("a message must be a JSON object".into()),
            ));
        }
    };

    // A response is never answered, whatever its shape, so that two peers that both answer
    // malformed messages cannot bounce errors back and forth forever.
    if !object.contains_key("method")
        && (object.contains_key("result") || object.contains_key("error"))
    {
        return Ok(Incoming::Response);
    }

    // An id that is present but neither a number nor a string cannot be echoed, so the error
    // answer carries null as JSON-RPC prescribes.
    let id = match object.remove("id") {
        None => None,
        Some(id @ (Value::Number(_) | Value::String(_))) => Some(id),
        Some(_) => {
            return Err(Rejected::new(
                Value::Null,
                RpcError::InvalidRequest("id must be a number or a string".into()),
            ));
        }
    };
    let reply_id = id.clone().unwrap_or(Value::Null);

    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Rejected::new(
            reply_id,
            RpcError::InvalidRequest("jsonrpc must be \"2.0\"".into()),
        ));
    }

    let method = match object.remove("method") {
        Some(Value::String(method)) => method,
        Some(_) => {
            return Err(Rejected::new(
                reply_id,
                RpcError::InvalidRequest("method must be a string".into()),
            ));
        }
        None => {
            return Err(Rejected::new(
                reply_id,
                RpcError::InvalidRequest("method is missing".into()),
            ));
        }
    };

    let params = object.remove("params");
    Ok(match id {
        Some(id) => Incoming::Request { id, method, params },
        None => Incoming::Notification { method, params },
    })
}

/// Reads `params` as an object, treating an absent or null member as no parameters.
///
/// # Errors
///
/// Returns invalid params (`-32602`) when `params` is neither an object nor null.
pub fn params_object(params: Option<&Value>) -> Result<Option<&Map<String, Value>>, RpcError> {
    match params {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(object)) => Ok(Some(object)),
        Some(_) => Err(RpcError::InvalidParams("params must be an object".into())),
    }
}

/// Builds a success answer.
pub fn success(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// Builds an error answer.
pub fn failure(id: Value, error: &RpcError) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": error.to_json() })
}

/// Marks a result as complete, as every result of the stateless era must be.
pub fn mark_complete(result: Value) -> Value {
    match result {
        Value::Object(fields) => {
            // The discriminator goes first so that a person reading the wire sees it at once.
            let mut marked = Map::with_capacity(fields.len() + 1);
            marked.insert("resultType".into(), "complete".into());
            for (key, value) in fields {
                marked.entry(key).or_insert(value);
            }
            Value::Object(marked)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_requests_notifications_and_responses() {
        let request = parse_line(br#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#).unwrap();
        assert_eq!(
            request,
            Incoming::Request {
                id: json!("a"),
                method: "ping".into(),
                params: None
            }
        );
        let notification =
            parse_line(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(notification, Incoming::Notification { .. }));
        let response = parse_line(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#).unwrap();
        assert_eq!(response, Incoming::Response);
        let error = parse_line(br#"{"jsonrpc":"2.0","id":null,"error":{"code":1}}"#).unwrap();
        assert_eq!(error, Incoming::Response);
    }

    #[test]
    fn rejects_malformed_messages_with_the_right_codes() {
        let cases: [(&[u8], i64, Value); 7] = [
            (b"not json", -32700, Value::Null),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}",
                -32700,
                Value::Null,
            ),
            (
                br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
                -32600,
                Value::Null,
            ),
            (b"42", -32600, Value::Null),
            (br#"{"id":7,"method":"ping"}"#, -32600, json!(7)),
            (
                br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                -32600,
                Value::Null,
            ),
            (br#"{"jsonrpc":"2.0","id":8,"method":3}"#, -32600, json!(8)),
        ];
        for (line, code, id) in cases {
            let rejected = parse_line(line).unwrap_err();
            assert_eq!(
                rejected.error.code(),
                code,
                "{}",
                String::from_utf8_lossy(line)
            );
            assert_eq!(rejected.id, id);
        }
    }

    #[test]
    fn mark_complete_puts_the_discriminator_first() {
        let marked = mark_complete(json!({ "tools": [] }));
        assert_eq!(
            serde_json::to_string(&marked).unwrap(),
            r#"{"resultType":"complete","tools":[]}"#
        );
    }
}
