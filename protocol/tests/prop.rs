//! Property tests of the JSON-RPC wire layer: messages round-trip through the codec, and no
//! sequence of bytes makes the decoder panic or lose the message that follows it. And of the
//! config's `${env:NAME}` substitution.

use bytes::BytesMut;
use fleet_protocol::codec::{FrameError, JsonRpcCodec, answered_id, replace_lone_surrogates};
use fleet_protocol::config::substitute_env;
use fleet_protocol::jsonrpc::{
    ErrorObject, InvalidMessage, Message, Notification, Outcome, Request, RequestId, Response,
};
use fleet_protocol::mcp::{decode_header_value, encode_header_value};
use proptest::prelude::*;
use serde_json::{Map, Value};
use tokio_util::codec::{Decoder, Encoder};

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_/]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn extras() -> impl Strategy<Value = Map<String, Value>> {
    // Extra top-level members must not collide with the JSON-RPC ones.
    prop::collection::btree_map("x_[a-z]{1,6}", json_value(), 0..3)
        .prop_map(|m| m.into_iter().collect())
}

fn request_id() -> impl Strategy<Value = RequestId> {
    prop_oneof![
        any::<u64>().prop_map(RequestId::from),
        any::<i64>().prop_map(|n| RequestId::Number(n.into())),
        ".{0,12}".prop_map(RequestId::String),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            request_id(),
            "[a-z/]{1,20}",
            prop::option::of(json_value()),
            extras()
        )
            .prop_map(|(id, method, params, extra)| Message::Request(Request {
                id,
                method,
                params,
                extra
            })),
        ("[a-z/]{1,20}", prop::option::of(json_value()), extras()).prop_map(
            |(method, params, extra)| {
                Message::Notification(Notification {
                    method,
                    params,
                    extra,
                })
            }
        ),
        (request_id(), json_value(), extras()).prop_map(|(id, result, extra)| {
            Message::Response(Response {
                id: Some(id),
                outcome: Outcome::Result(result),
                extra,
            })
        }),
        (
            prop::option::of(request_id()),
            any::<i64>(),
            ".{0,20}",
            prop::option::of(json_value())
        )
            .prop_map(|(id, code, message, data)| {
                let mut e = ErrorObject::new(code, message);
                e.data = data;
                Message::Response(Response::error(id, e))
            }),
    ]
}

/// Extra members that may also name a JSON-RPC member, as a message built in code can have.
fn colliding_extras() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(
        prop_oneof![
            Just("jsonrpc".to_owned()),
            Just("id".to_owned()),
            Just("method".to_owned()),
            Just("params".to_owned()),
            Just("result".to_owned()),
            Just("error".to_owned()),
            "x_[a-z]{1,6}",
        ],
        json_value(),
        0..4,
    )
    .prop_map(|m| m.into_iter().collect())
}

fn with_extra(mut m: Message, extra: Map<String, Value>) -> Message {
    match &mut m {
        Message::Request(r) => r.extra = extra,
        Message::Notification(n) => n.extra = extra,
        Message::Response(r) => r.extra = extra,
    }
    m
}

proptest! {
    #[test]
    fn serializing_writes_what_to_value_builds(m in message(), extra in colliding_extras()) {
        // `Serialize` writes from the fields; `to_value` builds a `Value`: same text, same order.
        let m = with_extra(m, extra);
        prop_assert_eq!(serde_json::to_string(&m).unwrap(), m.to_value().to_string());
    }

    #[test]
    fn messages_round_trip(msgs in prop::collection::vec(message(), 1..8)) {
        let mut codec = JsonRpcCodec::default();
        let mut buf = BytesMut::new();
        for m in &msgs {
            codec.encode(m, &mut buf).unwrap();
        }
        let mut decoded = Vec::new();
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            decoded.push(item.unwrap());
        }
        prop_assert_eq!(decoded, msgs);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_the_next_message_survives(
        garbage in prop::collection::vec(any::<u8>(), 0..512),
        max in 8usize..256,
    ) {
        let mut codec = JsonRpcCodec::new(max.max(64));
        let mut buf = BytesMut::from(&garbage[..]);
        // Whatever the garbage was, a newline ends it, and a real message after it decodes.
        buf.extend_from_slice(b"\n{\"jsonrpc\":\"2.0\",\"method\":\"ok\"}\n");
        let mut items = Vec::new();
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            items.push(item);
        }
        let last = items.pop().expect("at least the trailing message");
        prop_assert_eq!(last, Ok(Message::Notification(Notification::new("ok", None))));
        for item in items {
            // Garbage lines become messages only if they happen to be valid JSON-RPC.
            if let Err(e) = item {
                let known = matches!(
                    e,
                    FrameError::TooLong { .. }
                        | FrameError::InvalidUtf8
                        | FrameError::NotJson { .. }
                        | FrameError::NotJsonRpc(_)
                );
                prop_assert!(known);
            }
        }
    }

    #[test]
    fn decode_in_arbitrary_chunks_equals_decode_at_once(
        msgs in prop::collection::vec(message(), 1..5),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut codec = JsonRpcCodec::default();
        let mut whole = BytesMut::new();
        for m in &msgs {
            codec.encode(m, &mut whole).unwrap();
        }
        let at = cut.index(whole.len());
        let mut buf = BytesMut::from(&whole[..at]);
        let mut decoded = Vec::new();
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            decoded.push(item.unwrap());
        }
        buf.extend_from_slice(&whole[at..]);
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            decoded.push(item.unwrap());
        }
        prop_assert_eq!(decoded, msgs);
    }
}

/// A piece of a config string: literal text without `$`, or a reference to a variable.
#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Var(usize),
}

const VARS: [(&str, &str); 3] = [("HOME", "/home/u"), ("TOKEN", "t-${x}"), ("EMPTY", "")];

/// One top-level member of an object that may or may not be a message: the names the fleet
/// reads (valid or not), and others; written as text, so a name may come twice.
fn member() -> impl Strategy<Value = (String, Value)> {
    // Mostly names that keep a message a message (unknown ones, and the ones known to one kind
    // only), so that the order of what is kept is often checked.
    let name = prop_oneof![
        1 => Just("jsonrpc"),
        1 => Just("id"),
        1 => Just("method"),
        3 => Just("params"),
        3 => Just("result"),
        3 => Just("error"),
        3 => Just("x_a"),
        3 => Just("x_b"),
        3 => Just("x_c"),
    ];
    let value = prop_oneof![
        Just(Value::from("2.0")),
        Just(Value::from("tools/call")),
        Just(Value::Null),
        Just(serde_json::json!({"code": -1, "message": "m"})),
        Just(serde_json::json!({"code": "no"})),
        any::<u32>().prop_map(Value::from),
        json_value(),
    ];
    (name.prop_map(str::to_owned), value)
}

/// The members that make a message of some kind, or none, so that most objects are messages.
fn kind_members() -> impl Strategy<Value = Vec<(String, Value)>> {
    let m = |members: &[(&str, Value)]| {
        members
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect::<Vec<_>>()
    };
    let v = Value::from("2.0");
    prop_oneof![
        Just(vec![]),
        Just(m(&[
            ("jsonrpc", v.clone()),
            ("id", 1.into()),
            ("method", "m".into())
        ])),
        Just(m(&[("jsonrpc", v.clone()), ("method", "m".into())])),
        Just(m(&[
            ("jsonrpc", v.clone()),
            ("id", 1.into()),
            ("result", 1.into())
        ])),
        Just(m(&[
            ("jsonrpc", v),
            ("id", 1.into()),
            ("error", serde_json::json!({"code": 1, "message": "m"})),
        ])),
    ]
}

fn object_text(members: &[(String, Value)]) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// How a message was read before the one-pass reader (1fa4419), kept here as an independent
/// reference: take the envelope out of a parsed object; what is left is unknown (taken out
/// with `shift_remove`, which keeps the others' order, where the old code's `remove` did not).
fn reference(value: Value) -> Result<Message, InvalidMessage> {
    let mut obj = match value {
        Value::Object(obj) => obj,
        Value::Array(_) => return Err(InvalidMessage::Batch),
        _ => return Err(InvalidMessage::NotAnObject),
    };
    match obj.shift_remove("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        _ => return Err(InvalidMessage::Version),
    }
    let id = match obj.shift_remove("id") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::Number(n)) => Some(Some(RequestId::Number(n))),
        Some(Value::String(s)) => Some(Some(RequestId::String(s))),
        Some(_) => return Err(InvalidMessage::Id),
    };
    if let Some(method) = obj.shift_remove("method") {
        let Value::String(method) = method else {
            return Err(InvalidMessage::Method);
        };
        let params = obj.shift_remove("params");
        return match id {
            None => Ok(Message::Notification(Notification {
                method,
                params,
                extra: obj,
            })),
            Some(Some(id)) => Ok(Message::Request(Request {
                id,
                method,
                params,
                extra: obj,
            })),
            Some(None) => Err(InvalidMessage::Id),
        };
    }
    let result = obj.shift_remove("result");
    let error = obj.shift_remove("error");
    let outcome = match (result, error) {
        (Some(result), None) => Outcome::Result(result),
        (None, Some(error)) => {
            Outcome::Error(serde_json::from_value(error).map_err(|_| InvalidMessage::ErrorMember)?)
        }
        (Some(_), Some(_)) => return Err(InvalidMessage::ResultAndError),
        (None, None) => return Err(InvalidMessage::Unclassified),
    };
    match id {
        Some(id) => Ok(Message::Response(Response {
            id,
            outcome,
            extra: obj,
        })),
        None => Err(InvalidMessage::Unclassified),
    }
}

/// The unknown members of a message, in order.
fn extra_of(m: &Message) -> &Map<String, Value> {
    match m {
        Message::Request(r) => &r.extra,
        Message::Notification(n) => &n.extra,
        Message::Response(r) => &r.extra,
    }
}

proptest! {
    #[test]
    fn one_pass_reading_equals_reading_a_value(
        members in (prop::collection::vec(member(), 0..7), kind_members())
            .prop_map(|(mut ms, kind)| { ms.extend(kind); ms })
            .prop_shuffle(),
        top in prop_oneof![Just(None), json_leaf().prop_map(Some), Just(Some(Value::Array(vec![])))],
        cut in any::<prop::sample::Index>(),
    ) {
        // Any object (names twice, members of the wrong kind, bad values), or a non-object.
        let text = match top {
            Some(v) => v.to_string(),
            None => object_text(&members),
        };
        let one_pass = serde_json::from_str::<Message>(&text);
        let value: Value = serde_json::from_str(&text).unwrap();
        let expected = reference(value.clone());
        let names = |m: &Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
        let from_value = Message::from_value(value);
        prop_assert_eq!(&from_value, &expected);
        if let (Ok(a), Ok(b)) = (&from_value, &expected) {
            prop_assert_eq!(names(extra_of(a)), names(extra_of(b)));
        }
        match (&one_pass, &expected) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(a, b);
                // Map equality ignores order: the unknown members keep the order they came in.
                prop_assert_eq!(names(extra_of(a)), names(extra_of(b)));
            }
            (Err(a), Err(b)) => {
                let a = a.to_string();
                prop_assert!(a.starts_with(&b.to_string()), "{} vs {}", a, b);
            }
            _ => prop_assert!(false, "{:?} vs {:?}", one_pass, expected),
        }
        // Text cut short is not JSON, whatever it would have been (an array is read to its end).
        let mut end = cut.index(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let cut = &text[..end];
        if let Err(e) = serde_json::from_str::<Value>(cut) {
            let one_pass = serde_json::from_str::<Message>(cut).map_err(|e| e.classify());
            prop_assert_eq!(one_pass.err(), Some(e.classify()), "{}", cut);
        }
    }
}

fn lookup(name: &str) -> Option<String> {
    VARS.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| (*v).to_string())
}

proptest! {
    #[test]
    fn env_references_are_replaced_and_nothing_else_changes(
        pieces in prop::collection::vec(
            prop_oneof!["[^$]{0,8}".prop_map(Piece::Text), (0..VARS.len()).prop_map(Piece::Var)],
            0..8,
        )
    ) {
        let mut template = String::new();
        let mut expected = String::new();
        for p in &pieces {
            match p {
                Piece::Text(t) => {
                    template.push_str(t);
                    expected.push_str(t);
                }
                Piece::Var(i) => {
                    template.push_str(&format!("${{env:{}}}", VARS[*i].0));
                    expected.push_str(VARS[*i].1);
                }
            }
        }
        // A value is substituted once: `${x}` inside TOKEN's value stays as it is.
        prop_assert_eq!(substitute_env(&template, &lookup), Ok(expected));
    }

    #[test]
    fn substitution_never_panics(value in ".{0,40}") {
        let _ = substitute_env(&value, &lookup);
        if !value.contains("${") {
            prop_assert_eq!(substitute_env(&value, &|_| None), Ok(value));
        }
    }
}

proptest! {
    /// Any name or URI survives a 2026-07-28 header: what is sent is a valid header value, and
    /// it decodes to the value itself.
    #[test]
    fn header_values_round_trip(value in prop_oneof![".{0,24}", "[ -~]{0,24}", Just("=?base64?x?=".to_string())]) {
        let sent = encode_header_value(&value);
        prop_assert!(http_header_safe(&sent), "{sent:?}");
        let decoded = decode_header_value(sent.as_bytes());
        prop_assert_eq!(decoded.as_deref(), Ok(value.as_str()));
    }

    /// Nothing a client sends makes the decoding panic; what it accepts is printable ASCII.
    #[test]
    fn any_header_bytes_decode_or_are_refused(raw in prop::collection::vec(any::<u8>(), 0..40)) {
        if decode_header_value(&raw).is_ok() {
            prop_assert!(raw.iter().all(|b| (0x20..=0x7e).contains(b)));
        }
    }
}

/// A header value that is printable ASCII without surrounding spaces.
fn http_header_safe(v: &str) -> bool {
    v.bytes().all(|b| (0x20..=0x7e).contains(&b)) && v.trim() == v
}

#[test]
fn header_values_follow_the_specifications_examples() {
    // Plain ASCII goes as it is; the rest in base64 of its UTF-8.
    assert_eq!(encode_header_value("get_weather"), "get_weather");
    assert_eq!(encode_header_value("café"), "=?base64?Y2Fmw6k=?=");
    assert_eq!(encode_header_value(" padded"), "=?base64?IHBhZGRlZA==?=");
    // A plain value that looks like the sentinel is encoded, so decoding is unambiguous.
    assert_eq!(
        encode_header_value("=?base64?literal?="),
        "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="
    );
    assert_eq!(
        decode_header_value(b"=?base64?ZmlsZTovLy90bXAvY2Fmw6kudHh0?=").as_deref(),
        Ok("file:///tmp/café.txt")
    );
    assert!(decode_header_value("café".as_bytes()).is_err());
    assert!(decode_header_value(b"=?base64?not base64!?=").is_err());
    assert!(
        decode_header_value(b"=?base64?/w==?=").is_err(),
        "not UTF-8"
    );
}

proptest! {
    /// JSON with every non-ASCII character escaped, as Python's `ensure_ascii` and other
    /// writers give it, keeps its surrogate pairs; a lone half in a string is read as U+FFFD and
    /// the rest of the string as it was; and any bytes are looked at without a panic.
    #[test]
    fn surrogate_repair_keeps_pairs_and_mends_lone_halves(
        value in json_value(),
        text in "\\PC{0,12}",
        half in 0xD800u16..0xE000,
        raw in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let escaped = ascii_escaped(&serde_json::to_string(&value).unwrap());
        prop_assert_eq!(replace_lone_surrogates(escaped.as_bytes()), None);
        let quoted = ascii_escaped(&serde_json::to_string(&text).unwrap());
        let broken = format!("[{}\\u{half:04x}\"]", &quoted[..quoted.len() - 1]);
        let mended = replace_lone_surrogates(broken.as_bytes()).unwrap();
        let read: Value = serde_json::from_slice(&mended).unwrap();
        prop_assert_eq!(read[0].as_str().unwrap(), format!("{text}\u{fffd}"));
        if let Some(repaired) = replace_lone_surrogates(&raw) {
            prop_assert_eq!(repaired.len(), raw.len());
        }
    }
}

/// `text` with every non-ASCII character written as `\uXXXX` escapes (a pair for one beyond
/// the BMP).
fn ascii_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

proptest! {
    /// A number keeps every digit through the codec, in an id, a parameter, an array and an
    /// error's `data` and unknown members:
    /// beyond 64 bits, with leading-zero fractions and trailing zeros. Only the exponent's
    /// spelling is made canonical (`E` and a missing sign become `e+`), as serde_json writes it.
    #[test]
    fn numbers_keep_their_digits(
        int in "-?(0|[1-9][0-9]{0,40})",
        frac in prop::option::of("[0-9]{1,20}"),
        exp in prop::option::of(("[eE]", prop_oneof![Just(""), Just("+"), Just("-")], "[0-9]{1,2}")),
    ) {
        let mut sent = int.clone();
        if let Some(f) = &frac {
            sent = format!("{sent}.{f}");
        }
        let mut expected = sent.clone();
        if let Some((e, sign, digits)) = &exp {
            sent = format!("{sent}{e}{sign}{digits}");
            let sign = if sign.is_empty() { "+" } else { sign };
            expected = format!("{expected}e{sign}{digits}");
        }
        let text = |n: &str| {
            format!(r#"{{"jsonrpc":"2.0","id":{n},"method":"m","params":{{"x":{n},"a":[{n},{{"y":{n}}}]}}}}"#)
        };
        let error = |n: &str| {
            format!(r#"{{"jsonrpc":"2.0","id":{n},"error":{{"code":-1,"message":"m","data":{{"x":{n}}},"z":[{n}]}}}}"#)
        };
        for text in [text, error] {
            let message = fleet_protocol::codec::parse_line(&text(&sent)).unwrap();
            let line = JsonRpcCodec::default().encode_line(&message).unwrap();
            prop_assert_eq!(std::str::from_utf8(&line).unwrap(), format!("{}\n", text(&expected)));
        }
        // An id read from a value (a cancellation's `requestId`) keeps its text too.
        let id: Value = serde_json::from_str(&sent).unwrap();
        prop_assert_eq!(RequestId::from_json(id).unwrap().to_string(), expected);
    }
}

proptest! {
    /// The id an over-long answer names is read from its first bytes without a panic on any
    /// bytes, and an answer written as SDKs write it (`id` before `result`) is found from any
    /// prefix that reaches its `result`.
    #[test]
    fn an_answers_id_is_read_from_its_first_bytes(
        junk in prop::collection::vec(any::<u8>(), 0..200),
        id in request_id(),
        result in json_value(),
        cut in 0usize..64,
    ) {
        let _ = answered_id(&junk);
        let id_text = serde_json::to_string(&id).unwrap();
        let head = format!(r#"{{"jsonrpc":"2.0","id":{id_text},"result":"#);
        let text = format!("{head}{result}}}");
        let prefix = &text.as_bytes()[..(head.len() + cut).min(text.len())];
        prop_assert_eq!(answered_id(prefix), Some(id));
    }
}
