//! Newline-delimited JSON-RPC framing (MCP's stdio transport) with a maximum message size.
//!
//! Line splitting, the size limit and discarding the rest of an over-long line are
//! `tokio_util::codec::LinesCodec`'s work; this codec turns each line into a [`Message`].
//! A bad line is an *item* (`Err(FrameError)`), not a decoder error, so a stream of a child's
//! stdout carries on after garbage instead of ending: one bad line harms nothing else.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LinesCodec, LinesCodecError};

use crate::jsonrpc::{InvalidMessage, Message, RequestId};

/// The default maximum size of one message: 16 MiB (a large `resources/read` fits).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Why one line was not a message. The line has been consumed; the next one decodes normally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A line over the limit. `answers` is the request it answers, when its first bytes show
    /// an answer and its id: that request can be failed at once instead of at its timeout.
    #[error("line longer than the limit of {limit} bytes; discarded")]
    TooLong {
        limit: usize,
        answers: Option<RequestId>,
    },
    #[error("line is not valid UTF-8")]
    InvalidUtf8,
    #[error("line is not JSON: {reason}")]
    NotJson { reason: String },
    #[error("line is JSON but not JSON-RPC: {0}")]
    NotJsonRpc(InvalidMessage),
    /// An object with an `id` and no `method` (an answer, then) that is not a valid response:
    /// the request it answers can be failed at once instead of waiting for its timeout.
    #[error("answer to id {id} is not a valid JSON-RPC response: {problem}")]
    BadAnswer {
        id: RequestId,
        problem: InvalidMessage,
    },
}

/// Encodes messages as one line of JSON each; decodes lines into messages or [`FrameError`]s.
#[derive(Debug, Clone)]
pub struct JsonRpcCodec {
    lines: LinesCodec,
    max: usize,
}

impl JsonRpcCodec {
    pub fn new(max_message_bytes: usize) -> Self {
        JsonRpcCodec {
            lines: LinesCodec::new_with_max_length(max_message_bytes),
            max: max_message_bytes,
        }
    }

    /// `src` is the buffer just decoded from: on an over-long line it still begins with the
    /// line (`LinesCodec` discards it on the next call).
    fn item(
        &self,
        decoded: Result<Option<String>, LinesCodecError>,
        src: &[u8],
    ) -> Option<DecodedLine> {
        match decoded {
            Ok(Some(line)) => Some(parse_line(&line)),
            Ok(None) => None,
            Err(LinesCodecError::MaxLineLengthExceeded) => Some(Err(FrameError::TooLong {
                limit: self.max,
                answers: answered_id(&src[..src.len().min(ANSWER_PREFIX)]),
            })),
            // LinesCodec does no I/O of its own: its only I/O-typed error is invalid UTF-8.
            Err(LinesCodecError::Io(_)) => Some(Err(FrameError::InvalidUtf8)),
        }
    }
}

impl Default for JsonRpcCodec {
    fn default() -> Self {
        JsonRpcCodec::new(DEFAULT_MAX_MESSAGE_BYTES)
    }
}

/// One decoded line: a message, or why it was not one.
pub type DecodedLine = Result<Message, FrameError>;

/// Parses one line (without its newline) into a message.
pub fn parse_line(line: &str) -> DecodedLine {
    parse_json(line.as_bytes())
}

/// Parses JSON text into a message, in one pass ([`Message`]'s `Deserialize`). Text that is not
/// a message, the rare case, is read again as a `Value` to tell text that is not JSON
/// ([`FrameError::NotJson`]) from JSON that is not JSON-RPC ([`FrameError::NotJsonRpc`]).
pub fn parse_json(text: &[u8]) -> DecodedLine {
    let parsed = serde_json::from_slice::<Message>(text);
    if let Ok(message) = &parsed
        && holds_number_token(text)
    {
        let answers = match message {
            Message::Response(r) => r.id.clone(),
            _ => None,
        };
        return Err(match answers {
            Some(id) => FrameError::BadAnswer {
                id,
                problem: InvalidMessage::ReservedMember,
            },
            None => FrameError::NotJsonRpc(InvalidMessage::ReservedMember),
        });
    }
    parsed.or_else(|_| {
        let value: serde_json::Value = match serde_json::from_slice(text) {
            Ok(v) => v,
            Err(e) => {
                // JavaScript and Python write a string cut inside a surrogate pair as a lone
                // `\ud83d`, which serde_json refuses: such text is read with U+FFFD instead.
                let not_json = FrameError::NotJson {
                    reason: e.to_string(),
                };
                let repaired = replace_lone_surrogates(text).ok_or(not_json)?;
                return parse_json(&repaired);
            }
        };
        let answers = match &value {
            serde_json::Value::Object(o) if !o.contains_key("method") => {
                o.get("id").and_then(|id| RequestId::from_json(id.clone()))
            }
            _ => None,
        };
        Message::from_value(value).map_err(|problem| match answers {
            Some(id) => FrameError::BadAnswer { id, problem },
            None => FrameError::NotJsonRpc(problem),
        })
    })
}

/// Whether `text` has a member named as serde_json's number token: read as a number, it would
/// not pass through as it came. Text with no `$` and no escape (nearly all) is not scanned.
fn holds_number_token(text: &[u8]) -> bool {
    memchr::memchr2(b'$', b'\\', text).is_some()
        && crate::json_keys::has_key(text, crate::jsonrpc::NUMBER_TOKEN)
}

/// `text` with each `\uXXXX` escape of a lone UTF-16 surrogate (one not in a high-low pair)
/// replaced by `\ufffd`; `None` if it has none. Only escapes are looked at: a backslash and
/// the character after it are skipped as a pair, so `\\u` (an escaped backslash) is left alone.
pub fn replace_lone_surrogates(text: &[u8]) -> Option<Vec<u8>> {
    // Most bad lines have no `\u` escape at all: nothing to copy then.
    if !text.windows(2).any(|w| w == b"\\u") {
        return None;
    }
    let hex = |at: usize| -> Option<u16> {
        let digits = std::str::from_utf8(text.get(at..at + 4)?).ok()?;
        u16::from_str_radix(digits, 16).ok()
    };
    // The surrogate escaped at `at` (the backslash), if one is.
    let surrogate = |at: usize| -> Option<u16> {
        (text.get(at) == Some(&b'\\') && text.get(at + 1) == Some(&b'u'))
            .then(|| hex(at + 2))
            .flatten()
            .filter(|u| (0xD800..=0xDFFF).contains(u))
    };
    let mut out = Vec::with_capacity(text.len());
    let mut replaced = false;
    let mut i = 0;
    while i < text.len() {
        if text[i] != b'\\' {
            out.push(text[i]);
            i += 1;
            continue;
        }
        match surrogate(i) {
            Some(0xD800..=0xDBFF)
                if surrogate(i + 6).is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) =>
            {
                out.extend_from_slice(&text[i..i + 12]);
                i += 12;
            }
            Some(_) => {
                out.extend_from_slice(b"\\ufffd");
                replaced = true;
                i += 6;
            }
            None => {
                out.extend_from_slice(&text[i..(i + 2).min(text.len())]);
                i += 2;
            }
        }
    }
    replaced.then_some(out)
}

impl Decoder for JsonRpcCodec {
    type Item = DecodedLine;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        loop {
            let decoded = self.lines.decode(src);
            // Blank lines separate nothing; skip them rather than report them.
            if matches!(&decoded, Ok(Some(l)) if l.trim().is_empty()) {
                continue;
            }
            return Ok(self.item(decoded, src));
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        loop {
            let decoded = self.lines.decode_eof(src);
            if matches!(&decoded, Ok(Some(l)) if l.trim().is_empty()) {
                continue;
            }
            return Ok(self.item(decoded, src));
        }
    }
}

/// How much of an over-long line is searched for the id it answers.
const ANSWER_PREFIX: usize = 64 * 1024;

/// The id of the answer `text` begins, if its first members show one: an `id` at the top level,
/// complete, before a `result` or `error` member (an answer) and with no `method` before that
/// (a request of the server's, whose ids are not ours). SDKs write `id` before `result`.
pub fn answered_id(text: &[u8]) -> Option<RequestId> {
    let first = text.iter().position(|b| !b.is_ascii_whitespace())?;
    if text[first] != b'{' {
        return None;
    }
    let mut id = None;
    for key in crate::json_keys::keys(text).filter(|k| k.depth == 1) {
        match &text[key.start..key.end] {
            b"\"id\"" => id = leading_scalar(&text[key.value..]).and_then(RequestId::from_json),
            b"\"result\"" | b"\"error\"" => return id,
            b"\"method\"" => return None,
            _ => {}
        }
    }
    None
}

/// The number or string `text` begins with (after blanks), if it is complete there.
fn leading_scalar(text: &[u8]) -> Option<serde_json::Value> {
    let start = text.iter().position(|b| !b.is_ascii_whitespace())?;
    let text = &text[start..];
    let len = if text.first() == Some(&b'"') {
        let mut at = 1;
        while at < text.len() && text[at] != b'"' {
            at += if text[at] == b'\\' { 2 } else { 1 };
        }
        (at < text.len()).then_some(at + 1)?
    } else {
        let len = text
            .iter()
            .position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))?;
        (len > 0).then_some(len)?
    };
    serde_json::from_slice(&text[..len]).ok()
}

/// Why a message could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLong { size: usize, limit: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl JsonRpcCodec {
    /// One message as a line of its own. serde_json writes into a `Vec`: through `BytesMut`'s
    /// writer each of the many small pieces of a message is a `put_slice` of its own: about 4,500
    /// instructions more per forwarded request, counted with callgrind (BENCHMARKS.md).
    pub fn encode_line(&self, item: &Message) -> Result<Bytes, EncodeError> {
        let mut line = Vec::with_capacity(256);
        serde_json::to_writer(&mut line, item).map_err(std::io::Error::from)?;
        if line.len() > self.max {
            return Err(EncodeError::TooLong {
                size: line.len(),
                limit: self.max,
            });
        }
        line.push(b'\n');
        Ok(Bytes::from(line))
    }
}

impl Encoder<&Message> for JsonRpcCodec {
    type Error = EncodeError;

    fn encode(&mut self, item: &Message, dst: &mut BytesMut) -> Result<(), Self::Error> {
        dst.extend_from_slice(&self.encode_line(item)?);
        Ok(())
    }
}

impl Encoder<Message> for JsonRpcCodec {
    type Error = EncodeError;

    fn encode(&mut self, item: Message, dst: &mut BytesMut) -> Result<(), Self::Error> {
        self.encode(&item, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_surrogate_is_read_as_a_replacement_character() {
        // A JavaScript string cut inside an emoji; a pair and an escaped backslash are kept.
        let line =
            br#"{"jsonrpc":"2.0","id":4,"result":{"t":"cut \ud83d","ok":"\ud83d\ude00 \\ud800"}}"#;
        let Ok(Message::Response(r)) = parse_json(line) else {
            panic!("{:?}", parse_json(line))
        };
        let crate::jsonrpc::Outcome::Result(v) = r.outcome else {
            panic!()
        };
        assert_eq!(v["t"], "cut \u{fffd}");
        assert_eq!(v["ok"], "\u{1f600} \\ud800");
        assert_eq!(replace_lone_surrogates(br#"{"a":"\ud83d\ude00"}"#), None);
        assert_eq!(
            replace_lone_surrogates(br#""\ude00\ud83d""#).as_deref(),
            Some(&br#""\ufffd\ufffd""#[..])
        );
    }

    #[test]
    fn an_over_long_answer_names_the_request_it_answers() {
        let id = |text: &str| answered_id(text.as_bytes());
        assert_eq!(
            id(r#"{"jsonrpc":"2.0","id":5,"result":{"x":"#),
            RequestId::from_json(5.into())
        );
        assert_eq!(
            id(r#" { "id" : "a\"b" , "error":"#),
            RequestId::from_json("a\"b".into())
        );
        // A request of the server's: its id is not ours.
        assert_eq!(
            id(r#"{"jsonrpc":"2.0","id":5,"method":"sampling/createMessage","params":"#),
            None
        );
        // An id inside the result, one cut short, or a result before the id: unknown.
        assert_eq!(id(r#"{"result":{"id":3,"#), None);
        assert_eq!(id(r#"{"jsonrpc":"2.0","id":12"#), None);
        assert_eq!(id(r#"{"jsonrpc":"2.0","id":5"#), None);
        assert_eq!(id(r#"[{"id":1,"result":"#), None);
        // Through the codec: the line's first bytes are read before it is discarded.
        let mut codec = JsonRpcCodec::new(64);
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":9,"result":"{}"}}"#,
            "x".repeat(100)
        );
        let mut buf =
            BytesMut::from(format!("{line}\n{{\"jsonrpc\":\"2.0\",\"method\":\"n\"}}\n").as_str());
        let mut out = Vec::new();
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            out.push(item);
        }
        assert_eq!(
            out[0],
            Err(FrameError::TooLong {
                limit: 64,
                answers: RequestId::from_json(9.into())
            })
        );
        assert!(matches!(out[1], Ok(Message::Notification(_))), "{out:?}");
    }

    #[test]
    fn an_invalid_answer_names_the_request_it_answers() {
        let line = br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32603}}"#;
        match parse_json(line) {
            Err(FrameError::BadAnswer { id, problem }) => {
                assert_eq!(id, RequestId::from(7));
                assert_eq!(problem, InvalidMessage::ErrorMember);
            }
            other => panic!("{other:?}"),
        }
        // Without an id, or with a method, it answers nothing.
        let no_id = br#"{"jsonrpc":"2.0","error":{"code":-32603}}"#;
        assert!(matches!(parse_json(no_id), Err(FrameError::NotJsonRpc(_))));
    }

    /// serde_json (with `arbitrary_precision`) would read an object named by its number token
    /// as a number: a message holding one is refused rather than passed on changed.
    #[test]
    fn a_member_named_as_serde_jsons_number_token_is_refused() {
        let reserved = Err(FrameError::NotJsonRpc(InvalidMessage::ReservedMember));
        let plain = br#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"x":{"$serde_json::private::Number":"12"}}}"#;
        assert_eq!(parse_json(plain), reserved);
        let escaped = br#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"x":{"\u0024serde_json::private::Number":"12"}}}"#;
        assert_eq!(parse_json(escaped), reserved);
        let answer =
            br#"{"jsonrpc":"2.0","id":7,"result":{"n":{"$serde_json::private::Number":"1"}}}"#;
        assert_eq!(
            parse_json(answer),
            Err(FrameError::BadAnswer {
                id: RequestId::from(7),
                problem: InvalidMessage::ReservedMember
            })
        );
        // As a string value, or a key near it, it is text like any other and passes.
        let text = br#"{"jsonrpc":"2.0","method":"m","params":{"$serde_json::private::Numbers":"$serde_json::private::Number","a\nb":1}}"#;
        let Ok(Message::Notification(n)) = parse_json(text) else {
            panic!("{:?}", parse_json(text))
        };
        assert_eq!(
            n.params.unwrap()["$serde_json::private::Numbers"],
            "$serde_json::private::Number"
        );
    }

    fn decode_all(codec: &mut JsonRpcCodec, bytes: &[u8]) -> Vec<DecodedLine> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            out.push(item);
        }
        while let Some(item) = codec.decode_eof(&mut buf).unwrap() {
            out.push(item);
        }
        out
    }

    #[test]
    fn a_line_is_one_message_and_its_newline_within_the_limit() {
        let m = Message::Notification(crate::jsonrpc::Notification::new("x", None));
        let text = serde_json::to_string(&m).unwrap();
        let exact = JsonRpcCodec::new(text.len());
        assert_eq!(
            exact.encode_line(&m).unwrap(),
            format!("{text}\n").as_bytes()
        );
        let mut short = JsonRpcCodec::new(text.len() - 1);
        let size = text.len();
        assert!(matches!(
            short.encode_line(&m),
            Err(EncodeError::TooLong { size: s, .. }) if s == size
        ));
        // The codec's `Encoder` writes the same line, and nothing when it is too long.
        let mut buf = BytesMut::from(&b"before"[..]);
        assert!(short.encode(&m, &mut buf).is_err());
        assert_eq!(&buf[..], b"before");
    }

    #[test]
    fn garbage_is_reported_and_the_next_line_decodes() {
        let mut codec = JsonRpcCodec::new(64);
        let input = b"hello\n\xff\xfe\n{\"a\":1}\n\n{\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n";
        let out = decode_all(&mut codec, input);
        assert!(matches!(out[0], Err(FrameError::NotJson { .. })));
        assert_eq!(out[1], Err(FrameError::InvalidUtf8));
        assert!(matches!(out[2], Err(FrameError::NotJsonRpc(_))));
        assert!(matches!(out[3], Ok(Message::Notification(_))));
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn an_over_long_line_is_reported_once_and_skipped() {
        let mut codec = JsonRpcCodec::new(16);
        let mut input = vec![b'x'; 100];
        input.extend_from_slice(b"\n{\"jsonrpc\":\"2.0\",\"method\":\"m\"}\n");
        let mut codec_big = JsonRpcCodec::new(64);
        let out = decode_all(&mut codec, &input);
        assert_eq!(
            out[0],
            Err(FrameError::TooLong {
                limit: 16,
                answers: None
            })
        );
        // The valid message after it is over this tiny limit too; with room it decodes.
        let out_big = decode_all(&mut codec_big, &input);
        assert_eq!(
            out_big[0],
            Err(FrameError::TooLong {
                limit: 64,
                answers: None
            })
        );
        assert!(matches!(out_big[1], Ok(Message::Notification(_))));
    }
}
