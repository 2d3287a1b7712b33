//! Newline-delimited JSON-RPC framing (MCP's stdio transport) with a maximum message size.
//!
//! Line splitting, the size limit and discarding the rest of an over-long line are
//! `tokio_util::codec::LinesCodec`'s work; this codec turns each line into a [`Message`].
//! A bad line is an *item* (`Err(FrameError)`), not a decoder error, so a stream of a child's
//! stdout carries on after garbage instead of ending: one bad line harms nothing else.

use bytes::{BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LinesCodec, LinesCodecError};

use crate::jsonrpc::{InvalidMessage, Message};

/// The default maximum size of one message: 16 MiB (a large `resources/read` fits).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Why one line was not a message. The line has been consumed; the next one decodes normally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("line longer than the limit of {limit} bytes; discarded")]
    TooLong { limit: usize },
    #[error("line is not valid UTF-8")]
    InvalidUtf8,
    #[error("line is not JSON: {reason}")]
    NotJson { reason: String },
    #[error("line is JSON but not JSON-RPC: {0}")]
    NotJsonRpc(InvalidMessage),
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

    fn item(&self, decoded: Result<Option<String>, LinesCodecError>) -> Option<DecodedLine> {
        match decoded {
            Ok(Some(line)) => Some(parse_line(&line)),
            Ok(None) => None,
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                Some(Err(FrameError::TooLong { limit: self.max }))
            }
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
    serde_json::from_slice::<Message>(text).or_else(|_| {
        let value: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| FrameError::NotJson {
                reason: e.to_string(),
            })?;
        Message::from_value(value).map_err(FrameError::NotJsonRpc)
    })
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
            return Ok(self.item(decoded));
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        loop {
            let decoded = self.lines.decode_eof(src);
            if matches!(&decoded, Ok(Some(l)) if l.trim().is_empty()) {
                continue;
            }
            return Ok(self.item(decoded));
        }
    }
}

/// Why a message could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLong { size: usize, limit: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Encoder<&Message> for JsonRpcCodec {
    type Error = EncodeError;

    fn encode(&mut self, item: &Message, dst: &mut BytesMut) -> Result<(), Self::Error> {
        let start = dst.len();
        serde_json::to_writer((&mut *dst).writer(), item).map_err(std::io::Error::from)?;
        let size = dst.len() - start;
        if size > self.max {
            dst.truncate(start);
            return Err(EncodeError::TooLong {
                size,
                limit: self.max,
            });
        }
        dst.put_u8(b'\n');
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
        assert_eq!(out[0], Err(FrameError::TooLong { limit: 16 }));
        // The valid message after it is over this tiny limit too; with room it decodes.
        let out_big = decode_all(&mut codec_big, &input);
        assert_eq!(out_big[0], Err(FrameError::TooLong { limit: 64 }));
        assert!(matches!(out_big[1], Ok(Message::Notification(_))));
    }
}
