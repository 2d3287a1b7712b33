//! The stdout writer: the single owner of stdout, which also plays the output misbehaviours
//! (long line, garbage lines, crash or hang after N answers).

use serde_json::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::log::Log;

/// A message for the client.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    /// The answer to a request; these are what the crash and hang counters count.
    Answer(Value),
    /// The error answer to a line that was not a request (not JSON, a batch, ...).
    Rejection(Value),
    /// A notification (progress of a `sleep`); not counted either.
    Notification(Value),
}

/// Why the writer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriterEnd {
    /// Every sender went away: the server is shutting down normally.
    Drained,
    /// The crash counter ran out.
    Crashed,
    /// Writing to the output failed, so the client can no longer be reached.
    Failed,
}

/// The output misbehaviours, taken from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutputBehaviour {
    long_line_bytes: Option<usize>,
    garbage: bool,
    crash_after: Option<u64>,
    hang_after: Option<u64>,
}

impl OutputBehaviour {
    pub(crate) fn from_config(config: &Config) -> Self {
        Self {
            long_line_bytes: config.long_line_bytes,
            garbage: config.garbage_stdout,
            crash_after: config.crash_after_requests,
            hang_after: config.hang_after_requests,
        }
    }
}

/// Writes every outgoing message as one line, flushing after each, until told to stop.
pub(crate) async fn write_loop<W>(
    output: W,
    rx: mpsc::UnboundedReceiver<Outgoing>,
    behaviour: OutputBehaviour,
    log: Log,
) -> WriterEnd
where
    W: AsyncWrite + Unpin,
{
    match write_messages(output, rx, behaviour, &log).await {
        Ok(end) => end,
        Err(error) => {
            log.line(&format!("cannot write to stdout: {error}"));
            WriterEnd::Failed
        }
    }
}

async fn write_messages<W>(
    output: W,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    behaviour: OutputBehaviour,
    log: &Log,
) -> std::io::Result<WriterEnd>
where
    W: AsyncWrite + Unpin,
{
    let mut out = BufWriter::new(output);
    if let Some(bytes) = behaviour.long_line_bytes.filter(|bytes| *bytes > 0) {
        out.write_all(&long_line(bytes)).await?;
        out.write_all(b"\n").await?;
        out.flush().await?;
    }

    let mut answered = 0;
    let mut garbage_written = 0;
    if behaviour.crash_after == Some(0) {
        log.line("crashing before any answer (simulated)");
        return Ok(WriterEnd::Crashed);
    }
    if behaviour.hang_after == Some(0) {
        log.line("hanging from the start (simulated)");
    }

    while let Some(message) = rx.recv().await {
        // A hanging server still drains its queue, so that it keeps reading like a live process.
        if behaviour.hang_after.is_some_and(|limit| answered >= limit) {
            continue;
        }
        let (value, is_answer) = match message {
            Outgoing::Answer(value) => (value, true),
            Outgoing::Rejection(value) | Outgoing::Notification(value) => (value, false),
        };
        if is_answer && behaviour.garbage {
            out.write_all(garbage_line(garbage_written)).await?;
            garbage_written += 1;
        }
        let mut line = match serde_json::to_vec(&value) {
            Ok(line) => line,
            Err(error) => {
                log.line(&format!("cannot serialise an answer: {error}"));
                continue;
            }
        };
        line.push(b'\n');
        out.write_all(&line).await?;
        out.flush().await?;
        if !is_answer {
            continue;
        }
        answered += 1;
        if behaviour.crash_after == Some(answered) {
            log.line(&format!(
                "crashing after {answered} answered requests (simulated)"
            ));
            return Ok(WriterEnd::Crashed);
        }
        if behaviour.hang_after == Some(answered) {
            log.line(&format!(
                "hanging after {answered} answered requests (simulated)"
            ));
        }
    }
    Ok(WriterEnd::Drained)
}

/// One over-long line of exactly `bytes` bytes, without its newline.
pub(crate) fn long_line(bytes: usize) -> Vec<u8> {
    const PREFIX: &[u8] =
        br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":""#;
    const SUFFIX: &[u8] = br#""}}"#;
    // Below the size of the envelope the line cannot be JSON, so it is plain padding.
    if bytes < PREFIX.len() + SUFFIX.len() {
        return vec![b'x'; bytes];
    }
    let mut line = Vec::with_capacity(bytes);
    line.extend_from_slice(PREFIX);
    line.resize(bytes - SUFFIX.len(), b'x');
    line.extend_from_slice(SUFFIX);
    line
}

/// The `index`th garbage line, newline included; the three kinds take turns.
pub(crate) fn garbage_line(index: u64) -> &'static [u8] {
    match index % 3 {
        0 => b"this line is not JSON: garbage from mcp-reference-server\n",
        1 => b"invalid UTF-8 follows: \xff\xfe\xc3\x28 garbage\n",
        _ => b"{\"garbage\":true,\"note\":\"valid JSON that is not JSON-RPC\"}\n",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_have_the_exact_length() {
        for bytes in [1, 10, 88, 89, 90, 1000, 100_000] {
            let line = long_line(bytes);
            assert_eq!(line.len(), bytes);
            assert!(!line.contains(&b'\n'));
        }
        let json: Value = serde_json::from_slice(&long_line(1000)).unwrap();
        assert_eq!(json["method"], "notifications/message");
    }

    #[test]
    fn garbage_lines_cover_the_three_kinds() {
        assert!(serde_json::from_slice::<Value>(garbage_line(0).trim_ascii()).is_err());
        assert!(std::str::from_utf8(garbage_line(1)).is_err());
        let json: Value = serde_json::from_slice(garbage_line(2)).unwrap();
        assert!(json.get("jsonrpc").is_none());
    }
}
