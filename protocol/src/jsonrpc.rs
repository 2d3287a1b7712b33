//! JSON-RPC 2.0 message types for MCP that keep every field they do not interpret.
//!
//! The fleet sits between clients and servers, so a message must leave as it came in: fields the
//! fleet does not know (a newer spec's, a vendor's) are kept in `extra` and written back out.
//! Parameters, results and error data stay as [`serde_json::Value`] with key order preserved.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};

/// The standard JSON-RPC error codes, and the MCP ones the fleet uses.
pub mod error_codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// 2026-07-28: the requested protocol version is not supported (`data.supported` lists them).
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
    /// 2026-07-28 over HTTP: a header disagrees with the body, or a required one is missing.
    pub const HEADER_MISMATCH: i64 = -32020;
}

/// A request id: a JSON number or string, kept exactly as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum RequestId {
    Number(Number),
    String(String),
}

/// Read as a `Value`, then [`RequestId::from_json`]: a derived untagged reading would buffer a
/// number through serde's `Content`, which has no room for one beyond 64 bits.
impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RequestId::from_json(Value::deserialize(deserializer)?)
            .ok_or_else(|| serde::de::Error::custom(InvalidMessage::Id))
    }
}

impl From<u64> for RequestId {
    fn from(n: u64) -> Self {
        RequestId::Number(n.into())
    }
}

impl RequestId {
    /// The id a JSON value is, if it is one: a number (its text kept) or a string. Unlike
    /// `serde_json::from_value`, which reads a number through `u64`, `i64` or `f64` again and
    /// so writes `-0` as `0` or `1e-7` where `0.0000001` came.
    pub fn from_json(value: Value) -> Option<RequestId> {
        parse_id(value).ok()
    }

    /// The id as an unsigned integer, when it is one (the fleet numbers its own requests so).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            RequestId::Number(n) => n.as_u64(),
            RequestId::String(_) => None,
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Number(n) => write!(f, "{n}"),
            RequestId::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// A JSON-RPC error object; unknown members are kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorObject {
    pub code: i64,
    pub message: String,
    /// `Some(Value::Null)` when the member was present as `null`: kept apart from absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ErrorObject {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        ErrorObject {
            code,
            message: message.into(),
            data: None,
            extra: Map::new(),
        }
    }

    /// The error object these members make, taking them: an integer `code` and a string
    /// `message` are required. `data` and the unknown members are moved as they are, so their
    /// numbers keep their text (`serde_json::from_value` would read each through `u64`, `i64`
    /// or `f64` again: `-0` would leave as `0`, `0.0000001` as `1e-7`).
    pub fn from_members(mut members: Map<String, Value>) -> Option<ErrorObject> {
        // (Also what `Deserialize` does: a derived reading would put the unknown members
        // through serde's `Content`, which keeps no number's text.)
        let code = members.shift_remove("code")?.as_i64()?;
        let Value::String(message) = members.shift_remove("message")? else {
            return None;
        };
        let data = members.shift_remove("data");
        Some(ErrorObject {
            code,
            message,
            data,
            extra: members,
        })
    }
}

/// Read as a map, then [`ErrorObject::from_members`].
impl<'de> Deserialize<'de> for ErrorObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ErrorObject::from_members(Map::deserialize(deserializer)?)
            .ok_or_else(|| serde::de::Error::custom(InvalidMessage::ErrorMember))
    }
}

/// A request: it has an id and expects exactly one response.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: RequestId,
    pub method: String,
    pub params: Option<Value>,
    /// Top-level members other than `jsonrpc`, `id`, `method` and `params`.
    pub extra: Map<String, Value>,
}

/// A notification: no id, no response.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub method: String,
    pub params: Option<Value>,
    pub extra: Map<String, Value>,
}

/// What a response carries: a result or an error, never both.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Result(Value),
    Error(ErrorObject),
}

/// A response to a request. The id is `None` only for errors about a request whose id could not
/// be read (a parse error), which JSON-RPC writes as `"id": null`.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub id: Option<RequestId>,
    pub outcome: Outcome,
    pub extra: Map<String, Value>,
}

/// Any JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request(Request),
    Notification(Notification),
    Response(Response),
}

/// Why a JSON value is not a JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMessage {
    #[error("a JSON-RPC message must be a JSON object")]
    NotAnObject,
    #[error("JSON-RPC batches (arrays) are not allowed")]
    Batch,
    #[error("`jsonrpc` must be \"2.0\"")]
    Version,
    #[error("`method` must be a string")]
    Method,
    #[error("`id` must be a string or a number")]
    Id,
    #[error("`error` must be an object with an integer code and a string message")]
    ErrorMember,
    #[error("a response must have exactly one of `result` and `error`")]
    ResultAndError,
    #[error("the object is neither a request, a notification nor a response")]
    Unclassified,
    /// serde_json with `arbitrary_precision` reads an object of this one member as a number:
    /// such a message cannot pass through as it came, so it is refused.
    #[error("the member name `{NUMBER_TOKEN}` is reserved (it would be read as a number)")]
    ReservedMember,
}

impl Request {
    pub fn new(id: impl Into<RequestId>, method: impl Into<String>, params: Option<Value>) -> Self {
        Request {
            id: id.into(),
            method: method.into(),
            params,
            extra: Map::new(),
        }
    }
}

impl Notification {
    pub fn new(method: impl Into<String>, params: Option<Value>) -> Self {
        Notification {
            method: method.into(),
            params,
            extra: Map::new(),
        }
    }
}

impl Response {
    pub fn result(id: RequestId, result: Value) -> Self {
        Response {
            id: Some(id),
            outcome: Outcome::Result(result),
            extra: Map::new(),
        }
    }

    pub fn error(id: Option<RequestId>, error: ErrorObject) -> Self {
        Response {
            id,
            outcome: Outcome::Error(error),
            extra: Map::new(),
        }
    }
}

impl Message {
    /// Classifies a parsed JSON value. Members the fleet does not interpret are kept in `extra`,
    /// in the order they came in.
    pub fn from_value(value: Value) -> Result<Message, InvalidMessage> {
        let obj = match value {
            Value::Object(obj) => obj,
            Value::Array(_) => return Err(InvalidMessage::Batch),
            _ => return Err(InvalidMessage::NotAnObject),
        };
        let mut members = Members::default();
        for (key, value) in obj {
            members.put(Key::from(key), value);
        }
        members.classify()
    }

    /// The message as a JSON value, members in the order JSON-RPC writes them, then the extras.
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("jsonrpc".into(), Value::String("2.0".into()));
        let extra = match self {
            Message::Request(r) => {
                obj.insert("id".into(), id_value(Some(&r.id)));
                obj.insert("method".into(), Value::String(r.method.clone()));
                if let Some(p) = &r.params {
                    obj.insert("params".into(), p.clone());
                }
                &r.extra
            }
            Message::Notification(n) => {
                obj.insert("method".into(), Value::String(n.method.clone()));
                if let Some(p) = &n.params {
                    obj.insert("params".into(), p.clone());
                }
                &n.extra
            }
            Message::Response(r) => {
                obj.insert("id".into(), id_value(r.id.as_ref()));
                match &r.outcome {
                    Outcome::Result(v) => obj.insert("result".into(), v.clone()),
                    Outcome::Error(e) => obj.insert(
                        "error".into(),
                        serde_json::to_value(e).unwrap_or(Value::Null),
                    ),
                };
                &r.extra
            }
        };
        for (k, v) in extra {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Value::Object(obj)
    }

    /// The id of a request.
    pub fn request_id(&self) -> Option<&RequestId> {
        match self {
            Message::Request(r) => Some(&r.id),
            _ => None,
        }
    }

    /// The params of a request or notification.
    pub fn params(&self) -> Option<&Value> {
        match self {
            Message::Request(r) => r.params.as_ref(),
            Message::Notification(n) => n.params.as_ref(),
            Message::Response(_) => None,
        }
    }

    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request(r) => Some(&r.method),
            Message::Notification(n) => Some(&n.method),
            Message::Response(_) => None,
        }
    }
}

fn parse_id(v: Value) -> Result<RequestId, InvalidMessage> {
    match v {
        Value::Number(n) => Ok(RequestId::Number(n)),
        Value::String(s) => Ok(RequestId::String(s)),
        _ => Err(InvalidMessage::Id),
    }
}

fn id_value(id: Option<&RequestId>) -> Value {
    match id {
        Some(RequestId::Number(n)) => Value::Number(n.clone()),
        Some(RequestId::String(s)) => Value::String(s.clone()),
        None => Value::Null,
    }
}

/// Written straight from the fields, in the order of [`Message::to_value`] and with the same
/// members, without building (and deep-copying into) a `Value` first: every message to a server
/// and every answer to a client goes through here.
impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("jsonrpc", "2.0")?;
        match self {
            Message::Request(r) => {
                map.serialize_entry("id", &r.id)?;
                map.serialize_entry("method", &r.method)?;
                let written: &[&str] = match &r.params {
                    Some(p) => {
                        map.serialize_entry("params", p)?;
                        &["id", "method", "params"]
                    }
                    None => &["id", "method"],
                };
                serialize_extra(&mut map, &r.extra, written)?;
            }
            Message::Notification(n) => {
                map.serialize_entry("method", &n.method)?;
                let written: &[&str] = match &n.params {
                    Some(p) => {
                        map.serialize_entry("params", p)?;
                        &["method", "params"]
                    }
                    None => &["method"],
                };
                serialize_extra(&mut map, &n.extra, written)?;
            }
            Message::Response(r) => {
                map.serialize_entry("id", &r.id)?;
                match &r.outcome {
                    Outcome::Result(v) => {
                        map.serialize_entry("result", v)?;
                        serialize_extra(&mut map, &r.extra, &["id", "result"])?;
                    }
                    Outcome::Error(e) => {
                        map.serialize_entry("error", e)?;
                        serialize_extra(&mut map, &r.extra, &["id", "error"])?;
                    }
                }
            }
        }
        map.end()
    }
}

/// The extra members after the message's own, skipping any that names one already written
/// (`jsonrpc` or one of `written`), as [`Message::to_value`] keeps the first of two members of
/// one name.
fn serialize_extra<M: serde::ser::SerializeMap>(
    map: &mut M,
    extra: &Map<String, Value>,
    written: &[&str],
) -> Result<(), M::Error> {
    for (k, v) in extra {
        if k != "jsonrpc" && !written.contains(&k.as_str()) {
            map.serialize_entry(k, v)?;
        }
    }
    Ok(())
}

/// The name under which serde_json (with `arbitrary_precision`, which keeps a number's text as
/// it came) hands a number to a visitor: as a map with this one member.
pub(crate) const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// A top-level member's name: one the fleet reads, or another.
enum Key {
    Jsonrpc,
    Id,
    Method,
    Params,
    Result,
    Error,
    Other(String),
}

impl Key {
    fn of(name: &str) -> Option<Key> {
        Some(match name {
            "jsonrpc" => Key::Jsonrpc,
            "id" => Key::Id,
            "method" => Key::Method,
            "params" => Key::Params,
            "result" => Key::Result,
            "error" => Key::Error,
            _ => return None,
        })
    }
}

impl From<String> for Key {
    fn from(name: String) -> Key {
        Key::of(&name).unwrap_or(Key::Other(name))
    }
}

/// Reads a member's name without allocating for the names the fleet reads.
impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Key, E> {
                Ok(Key::of(name).unwrap_or_else(|| Key::Other(name.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, name: String) -> Result<Key, E> {
                Ok(Key::from(name))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A message's top-level members, as read, before it is classified.
#[derive(Default)]
struct Members {
    jsonrpc: Option<Value>,
    id: Option<Value>,
    method: Option<Value>,
    /// Read by requests and notifications; an unknown member of a response.
    params: Option<Deferred>,
    /// Read by responses; unknown members of requests and notifications.
    result: Option<Deferred>,
    error: Option<Deferred>,
    extra: Map<String, Value>,
    /// How many unknown or deferred members have been seen: the next one's place.
    seen: usize,
}

/// A member that is known or unknown depending on the kind of message, and where it came among
/// the unknown and deferred ones.
struct Deferred {
    at: usize,
    value: Value,
}

impl Members {
    /// Takes a member; of two members of one name the last value counts, at the first one's
    /// place, as in a parsed `Value`.
    fn put(&mut self, key: Key, value: Value) {
        let slot = match key {
            Key::Jsonrpc => &mut self.jsonrpc,
            Key::Id => &mut self.id,
            Key::Method => &mut self.method,
            Key::Params => return defer(&mut self.params, &mut self.seen, value),
            Key::Result => return defer(&mut self.result, &mut self.seen, value),
            Key::Error => return defer(&mut self.error, &mut self.seen, value),
            Key::Other(name) => {
                if self.extra.insert(name, value).is_none() {
                    self.seen += 1;
                }
                return;
            }
        };
        *slot = Some(value);
    }

    fn classify(self) -> Result<Message, InvalidMessage> {
        match self.jsonrpc {
            Some(Value::String(v)) if v == "2.0" => {}
            _ => return Err(InvalidMessage::Version),
        }
        let id = match self.id {
            None => None,
            Some(Value::Null) => Some(None),
            Some(v) => Some(Some(parse_id(v)?)),
        };
        if let Some(method) = self.method {
            let Value::String(method) = method else {
                return Err(InvalidMessage::Method);
            };
            let consumed = self.params.as_ref().map(|d| d.at);
            let extra = put_back(
                self.extra,
                consumed,
                [("result", self.result), ("error", self.error)],
            );
            let params = self.params.map(|d| d.value);
            return match id {
                None => Ok(Message::Notification(Notification {
                    method,
                    params,
                    extra,
                })),
                Some(Some(id)) => Ok(Message::Request(Request {
                    id,
                    method,
                    params,
                    extra,
                })),
                Some(None) => Err(InvalidMessage::Id),
            };
        }
        let (outcome, consumed) = match (self.result, self.error) {
            (Some(result), None) => (Outcome::Result(result.value), result.at),
            (None, Some(error)) => {
                let Value::Object(members) = error.value else {
                    return Err(InvalidMessage::ErrorMember);
                };
                let error_object =
                    ErrorObject::from_members(members).ok_or(InvalidMessage::ErrorMember)?;
                (Outcome::Error(error_object), error.at)
            }
            (Some(_), Some(_)) => return Err(InvalidMessage::ResultAndError),
            (None, None) => return Err(InvalidMessage::Unclassified),
        };
        let extra = put_back(self.extra, Some(consumed), [("params", self.params)]);
        match id {
            Some(id) => Ok(Message::Response(Response { id, outcome, extra })),
            None => Err(InvalidMessage::Unclassified),
        }
    }
}

/// Takes a deferred member: its first place (the next one, `seen`), its last value.
fn defer(slot: &mut Option<Deferred>, seen: &mut usize, value: Value) {
    match slot {
        Some(d) => d.value = value,
        None => {
            *slot = Some(Deferred { at: *seen, value });
            *seen += 1;
        }
    }
}

/// Puts the deferred members a kind of message does not read among its unknown ones, where
/// they came in; `consumed` is the place of the one it reads, if any.
fn put_back<const N: usize>(
    mut extra: Map<String, Value>,
    consumed: Option<usize>,
    kept: [(&str, Option<Deferred>); N],
) -> Map<String, Value> {
    let mut kept = kept.map(|(name, d)| d.map(|d| (name, d)));
    kept.sort_by_key(|k| k.as_ref().map(|(_, d)| d.at));
    for (name, d) in kept.into_iter().flatten() {
        let at = d.at - usize::from(consumed.is_some_and(|c| c < d.at));
        extra.shift_insert(at.min(extra.len()), name.to_owned(), d.value);
    }
    extra
}

/// Read in one pass: the top-level object never becomes a map of its own, and the names of the
/// members the fleet reads are not copied. Accepts and refuses what
/// `Message::from_value(Value::deserialize(..))` does, with the same [`InvalidMessage`]s.
impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{Error, MapAccess, SeqAccess, Visitor};
        struct MessageVisitor;
        fn not_an_object<E: Error>() -> Result<Message, E> {
            Err(E::custom(InvalidMessage::NotAnObject))
        }
        impl<'de> Visitor<'de> for MessageVisitor {
            type Value = Message;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON-RPC message")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
                let mut members = Members::default();
                let mut first = true;
                while let Some(key) = map.next_key::<Key>()? {
                    // With `arbitrary_precision`, serde_json hands a number over as a map of one
                    // member under this name, holding the number's text. (An object whose first
                    // member has that name reads as a number to serde_json's own `Value` too.)
                    if std::mem::take(&mut first)
                        && matches!(&key, Key::Other(name) if name == NUMBER_TOKEN)
                    {
                        let _ = map.next_value::<serde::de::IgnoredAny>()?;
                        return not_an_object();
                    }
                    members.put(key, map.next_value()?);
                }
                members.classify().map_err(A::Error::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Message, A::Error> {
                // Read to the end first, so that text that is not JSON says so, as a `Value` would.
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Err(A::Error::custom(InvalidMessage::Batch))
            }
            fn visit_bool<E: Error>(self, _: bool) -> Result<Message, E> {
                not_an_object()
            }
            fn visit_i64<E: Error>(self, _: i64) -> Result<Message, E> {
                not_an_object()
            }
            fn visit_u64<E: Error>(self, _: u64) -> Result<Message, E> {
                not_an_object()
            }
            fn visit_f64<E: Error>(self, _: f64) -> Result<Message, E> {
                not_an_object()
            }
            fn visit_str<E: Error>(self, _: &str) -> Result<Message, E> {
                not_an_object()
            }
            fn visit_unit<E: Error>(self) -> Result<Message, E> {
                not_an_object()
            }
            fn visit_none<E: Error>(self) -> Result<Message, E> {
                not_an_object()
            }
        }
        deserializer.deserialize_any(MessageVisitor)
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Self {
        Message::Request(r)
    }
}

impl From<Notification> for Message {
    fn from(n: Notification) -> Self {
        Message::Notification(n)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Self {
        Message::Response(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_members_survive_a_round_trip() {
        let v = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","z":1,"a":2},"vendor":{"k":true}});
        let m = Message::from_value(v.clone()).unwrap();
        assert_eq!(m.to_value(), v);
        assert_eq!(serde_json::to_string(&m.to_value()).unwrap(), v.to_string());
    }

    #[test]
    fn classifies_each_kind() {
        assert!(matches!(
            Message::from_value(json!({"jsonrpc":"2.0","method":"n"})),
            Ok(Message::Notification(_))
        ));
        assert!(matches!(
            Message::from_value(json!({"jsonrpc":"2.0","id":"a","result":{}})),
            Ok(Message::Response(_))
        ));
        assert!(matches!(
            Message::from_value(
                json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"p"}})
            ),
            Ok(Message::Response(Response { id: None, .. }))
        ));
        assert_eq!(Message::from_value(json!([1])), Err(InvalidMessage::Batch));
        assert_eq!(
            Message::from_value(json!({"jsonrpc":"1.0","method":"x"})),
            Err(InvalidMessage::Version)
        );
        assert_eq!(
            Message::from_value(
                json!({"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":""}})
            ),
            Err(InvalidMessage::ResultAndError)
        );
        assert_eq!(
            Message::from_value(json!({"jsonrpc":"2.0","id":[1],"method":"m"})),
            Err(InvalidMessage::Id)
        );
    }
}
