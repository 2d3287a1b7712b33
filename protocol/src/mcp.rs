//! MCP specifics on top of JSON-RPC: versions, method names, and the parameters and results of the
//! handshake in both eras.

use serde_json::{Map, Value, json};

use crate::status::Era;

/// The newest 2025-era revision; offered in `initialize`.
pub const LEGACY_VERSION: &str = "2025-11-25";
/// The stateless revision.
pub const MODERN_VERSION: &str = "2026-07-28";
/// `_meta` key carrying the protocol version of a 2026-era request.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The `_meta` key naming the `subscriptions/listen` a notification belongs to (its request id).
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
/// `_meta` key carrying the client's capabilities on a 2026-era request.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key carrying client information on a 2026-era request.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key carrying server information on a 2026-era result.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

pub mod methods {
    pub const INITIALIZE: &str = "initialize";
    pub const INITIALIZED: &str = "notifications/initialized";
    pub const PING: &str = "ping";
    pub const DISCOVER: &str = "server/discover";
    pub const TOOLS_LIST: &str = "tools/list";
    pub const TOOLS_CALL: &str = "tools/call";
    pub const CANCELLED: &str = "notifications/cancelled";
    pub const PROGRESS: &str = "notifications/progress";
    pub const RESOURCE_UPDATED: &str = "notifications/resources/updated";
    pub const LOG_MESSAGE: &str = "notifications/message";
    pub const TOOLS_LIST_CHANGED: &str = "notifications/tools/list_changed";
    pub const RESOURCES_LIST_CHANGED: &str = "notifications/resources/list_changed";
    pub const PROMPTS_LIST_CHANGED: &str = "notifications/prompts/list_changed";
    pub const RESOURCES_LIST: &str = "resources/list";
    pub const RESOURCE_TEMPLATES_LIST: &str = "resources/templates/list";
    pub const RESOURCES_READ: &str = "resources/read";
    pub const PROMPTS_LIST: &str = "prompts/list";
    pub const PROMPTS_GET: &str = "prompts/get";
    pub const COMPLETE: &str = "completion/complete";
    pub const SET_LOG_LEVEL: &str = "logging/setLevel";
    pub const SUBSCRIPTIONS_LISTEN: &str = "subscriptions/listen";
    /// The first message on a `subscriptions/listen` stream: which list changes it will carry.
    pub const SUBSCRIPTIONS_ACKNOWLEDGED: &str = "notifications/subscriptions/acknowledged";
    pub const RESOURCES_SUBSCRIBE: &str = "resources/subscribe";
    pub const RESOURCES_UNSUBSCRIBE: &str = "resources/unsubscribe";

    /// Every request method of both eras a client or the fleet may send to a server. Metrics
    /// label any other method `other`, so a caller cannot grow the label set without bound.
    pub const REQUESTS: &[&str] = &[
        INITIALIZE,
        PING,
        DISCOVER,
        TOOLS_LIST,
        TOOLS_CALL,
        RESOURCES_LIST,
        RESOURCE_TEMPLATES_LIST,
        RESOURCES_READ,
        RESOURCES_SUBSCRIBE,
        RESOURCES_UNSUBSCRIBE,
        PROMPTS_LIST,
        PROMPTS_GET,
        COMPLETE,
        SET_LOG_LEVEL,
        SUBSCRIPTIONS_LISTEN,
    ];
}

/// Who the fleet says it is when it acts as an MCP client.
pub fn client_info() -> Value {
    json!({"name": "mcp-fleet", "version": env!("CARGO_PKG_VERSION")})
}

/// A list change a 2026-07-28 `subscriptions/listen` can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenFilter {
    /// Its key in the request's `notifications` filter (and in the acknowledgement).
    pub key: &'static str,
    /// The server capability whose `listChanged` offers it.
    pub capability: &'static str,
    /// The notification that announces the change.
    pub notification: &'static str,
}

/// Every list change a `subscriptions/listen` can ask for.
pub const LISTEN_FILTERS: &[ListenFilter] = &[
    ListenFilter {
        key: "toolsListChanged",
        capability: "tools",
        notification: methods::TOOLS_LIST_CHANGED,
    },
    ListenFilter {
        key: "promptsListChanged",
        capability: "prompts",
        notification: methods::PROMPTS_LIST_CHANGED,
    },
    ListenFilter {
        key: "resourcesListChanged",
        capability: "resources",
        notification: methods::RESOURCES_LIST_CHANGED,
    },
];

/// The `notifications` filter of a `subscriptions/listen` for every list change a server's
/// `capabilities` offer (`listChanged: true`); `None` when it offers none.
pub fn listen_filter_for(capabilities: &Value) -> Option<Value> {
    let wanted: Map<String, Value> = LISTEN_FILTERS
        .iter()
        .filter(|f| capabilities[f.capability]["listChanged"] == Value::Bool(true))
        .map(|f| (f.key.to_owned(), Value::Bool(true)))
        .collect();
    (!wanted.is_empty()).then(|| Value::Object(wanted))
}

/// The list changes an acknowledgement's `notifications` says its stream will carry.
pub fn acknowledged_filters(
    params: Option<&Value>,
) -> impl Iterator<Item = &'static ListenFilter> + '_ {
    let honoured = params.and_then(|p| p.get("notifications"));
    LISTEN_FILTERS
        .iter()
        .filter(move |f| honoured.and_then(|h| h.get(f.key)) == Some(&Value::Bool(true)))
}

/// Parameters of the 2025-era `initialize` request the fleet sends.
pub fn initialize_params() -> Value {
    json!({
        "protocolVersion": LEGACY_VERSION,
        "capabilities": {},
        "clientInfo": client_info(),
    })
}

/// The `_meta` a 2026-era request must carry.
pub fn modern_meta() -> Map<String, Value> {
    let mut meta = Map::new();
    meta.insert(
        META_PROTOCOL_VERSION.into(),
        Value::String(MODERN_VERSION.into()),
    );
    meta.insert(META_CLIENT_CAPABILITIES.into(), json!({}));
    meta.insert(META_CLIENT_INFO.into(), client_info());
    meta
}

/// Streamable HTTP headers, lower-case (HTTP header names are case-insensitive).
pub mod headers {
    /// The session of a 2025-era connection, assigned on the `initialize` response.
    pub const SESSION: &str = "mcp-session-id";
    /// The protocol version of every request after `initialize` (and of every 2026-era one).
    pub const VERSION: &str = "mcp-protocol-version";
    /// 2026-07-28: the body's `method`.
    pub const METHOD: &str = "mcp-method";
    /// 2026-07-28: the body's `params.name` or `params.uri` (see [`super::name_key`]).
    pub const NAME: &str = "mcp-name";
}

/// The params member a 2026-07-28 `Mcp-Name` header repeats for `method`, if it has one.
pub fn name_key(method: &str) -> Option<&'static str> {
    match method {
        methods::TOOLS_CALL | methods::PROMPTS_GET => Some("name"),
        methods::RESOURCES_READ => Some("uri"),
        _ => None,
    }
}

/// How a 2026-07-28 header value (`Mcp-Name`) is sent: as it is when it is printable ASCII
/// (0x20 to 0x7E) without surrounding spaces and does not look like the sentinel; otherwise as
/// `=?base64?...?=` of its UTF-8 bytes (standard alphabet, padded).
pub fn encode_header_value(value: &str) -> std::borrow::Cow<'_, str> {
    use base64::Engine as _;
    let plain = value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && value.trim() == value
        && !(value.starts_with(HEADER_SENTINEL.0) && value.ends_with(HEADER_SENTINEL.1));
    if plain {
        return value.into();
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(value);
    format!("{}{encoded}{}", HEADER_SENTINEL.0, HEADER_SENTINEL.1).into()
}

/// The value a 2026-07-28 header (`Mcp-Name`) carries, as [`encode_header_value`] sent it:
/// decoded from the sentinel form, as it is otherwise. The error says why it is malformed.
pub fn decode_header_value(raw: &[u8]) -> Result<std::borrow::Cow<'_, str>, &'static str> {
    use base64::Engine as _;
    let text = std::str::from_utf8(raw)
        .ok()
        .filter(|t| t.bytes().all(|b| (0x20..=0x7e).contains(&b)))
        .ok_or("a value that is not printable ASCII must be sent as `=?base64?...?=`")?
        .trim();
    let Some(encoded) = text
        .strip_prefix(HEADER_SENTINEL.0)
        .and_then(|t| t.strip_suffix(HEADER_SENTINEL.1))
    else {
        return Ok(text.into());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| "its `=?base64?...?=` form is not valid base64")?;
    String::from_utf8(bytes)
        .map(Into::into)
        .map_err(|_| "its `=?base64?...?=` form is not UTF-8")
}

/// The markers around a header value sent in base64.
const HEADER_SENTINEL: (&str, &str) = ("=?base64?", "?=");

/// The protocol version a request's `params._meta` names (2026-07-28 requests carry one).
pub fn meta_version(params: &Value) -> Option<&str> {
    params.get("_meta")?.get(META_PROTOCOL_VERSION)?.as_str()
}

/// Parameters of `server/discover`.
pub fn discover_params() -> Value {
    json!({ "_meta": modern_meta() })
}

/// Makes request parameters fit the era of the server they go to: a 2026-era server needs the
/// version and capabilities in `params._meta`. Keys already present are left as they are.
pub fn params_for_era(era: Era, params: Option<Value>) -> Option<Value> {
    match era {
        Era::Legacy => params,
        Era::Modern => {
            let mut params = match params {
                Some(Value::Object(map)) => map,
                None | Some(Value::Null) => Map::new(),
                // Not an object: not ours to fix; the server will answer with its own error.
                Some(other) => return Some(other),
            };
            let meta = params
                .entry("_meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(meta) = meta {
                for (k, v) in modern_meta() {
                    meta.entry(k).or_insert(v);
                }
            }
            Some(Value::Object(params))
        }
    }
}

/// What a `server/discover` answer says, when it is a 2026-era answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovered {
    pub protocol_version: String,
    pub server_info: Value,
    pub capabilities: Value,
    pub instructions: Option<String>,
}

/// Reads a `server/discover` result; `None` unless it lists a 2026-era version we speak.
pub fn read_discover_result(result: &Value) -> Option<Discovered> {
    let versions = result.get("supportedVersions")?.as_array()?;
    if !versions.iter().any(|v| v.as_str() == Some(MODERN_VERSION)) {
        return None;
    }
    let server_info = result
        .get("serverInfo")
        .or_else(|| result.get("_meta").and_then(|m| m.get(META_SERVER_INFO)))
        .cloned()
        .unwrap_or(Value::Null);
    Some(Discovered {
        protocol_version: MODERN_VERSION.into(),
        server_info,
        capabilities: result.get("capabilities").cloned().unwrap_or(json!({})),
        instructions: result
            .get("instructions")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// The probe request for a server's era: `ping` in the 2025 era (removed in 2026), a cheap
/// `server/discover` in the 2026 era. Neither opens a session.
pub fn probe_method(era: Era) -> (&'static str, Option<Value>) {
    match era {
        Era::Legacy => (methods::PING, None),
        Era::Modern => (methods::DISCOVER, Some(discover_params())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modern_params_gain_meta_without_losing_fields() {
        let p = params_for_era(
            Era::Modern,
            Some(json!({"name": "echo", "_meta": {"progressToken": 1}})),
        )
        .unwrap();
        assert_eq!(p["name"], "echo");
        assert_eq!(p["_meta"]["progressToken"], 1);
        assert_eq!(p["_meta"][META_PROTOCOL_VERSION], MODERN_VERSION);
        assert_eq!(params_for_era(Era::Legacy, None), None);
    }

    #[test]
    fn discover_results_are_recognised() {
        let modern = json!({"resultType": "complete", "supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {}}, "_meta": {(META_SERVER_INFO): {"name": "s"}}});
        let d = read_discover_result(&modern).unwrap();
        assert_eq!(d.server_info["name"], "s");
        assert_eq!(read_discover_result(&json!({})), None);
        assert_eq!(
            read_discover_result(&json!({"supportedVersions": ["2099-01-01"]})),
            None
        );
    }

    #[test]
    fn a_listen_asks_for_the_list_changes_offered_and_the_acknowledged_ones_are_read() {
        let offered = json!({"tools": {"listChanged": true}, "prompts": {"listChanged": false},
            "resources": {"listChanged": true, "subscribe": true}, "logging": {}});
        assert_eq!(
            listen_filter_for(&offered),
            Some(json!({"toolsListChanged": true, "resourcesListChanged": true}))
        );
        assert_eq!(listen_filter_for(&json!({"tools": {}})), None);
        assert_eq!(listen_filter_for(&Value::Null), None);

        let ack = json!({"notifications": {"toolsListChanged": true, "promptsListChanged": false},
            "_meta": {"io.modelcontextprotocol/subscriptionId": 7}});
        let read: Vec<_> = acknowledged_filters(Some(&ack))
            .map(|f| f.notification)
            .collect();
        assert_eq!(read, [methods::TOOLS_LIST_CHANGED]);
        assert_eq!(acknowledged_filters(None).count(), 0);
    }
}
