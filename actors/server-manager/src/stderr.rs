//! A bounded ring buffer of a server's stderr lines, shared between the reader task and the
//! manager (which serves `GetServerLogs` from it without asking the server's actor).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use fleet_protocol::messages::server::ServerLogs;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The longest stderr line kept; the rest of a longer one is cut. A child that writes without
/// a newline would otherwise grow our memory without bound, and our log with it.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Lines of a child's stderr, each at most `max` bytes: the rest of a longer line is skipped,
/// and counted.
pub struct CappedLines<R> {
    reader: R,
    max: usize,
    line: Vec<u8>,
    cut: usize,
}

impl<R: AsyncBufRead + Unpin> CappedLines<R> {
    pub fn new(reader: R, max: usize) -> Self {
        CappedLines {
            reader,
            max,
            line: Vec::new(),
            cut: 0,
        }
    }

    /// The next line without its newline, and how many of its bytes were cut; `None` at the
    /// end. Cancel-safe: a line read in part is kept for the next call.
    pub async fn next_line(&mut self) -> std::io::Result<Option<(Vec<u8>, usize)>> {
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                if self.line.is_empty() && self.cut == 0 {
                    return Ok(None);
                }
                return Ok(Some(self.take()));
            }
            let newline = buf.iter().position(|b| *b == b'\n');
            let chunk = &buf[..newline.unwrap_or(buf.len())];
            let keep = chunk.len().min(self.max.saturating_sub(self.line.len()));
            self.line.extend_from_slice(&chunk[..keep]);
            self.cut += chunk.len() - keep;
            let used = newline.map_or(buf.len(), |i| i + 1);
            self.reader.consume(used);
            if newline.is_some() {
                return Ok(Some(self.take()));
            }
        }
    }

    fn take(&mut self) -> (Vec<u8>, usize) {
        (
            std::mem::take(&mut self.line),
            std::mem::take(&mut self.cut),
        )
    }
}

/// The newest lines a server wrote to stderr, at most `max_bytes` of them.
#[derive(Debug)]
pub struct StderrRing {
    lines: VecDeque<String>,
    /// The lines' bytes, each counted with its newline (so empty lines count too).
    bytes: usize,
    max_bytes: usize,
    total: u64,
    /// Random: names this log in [`ServerLogs`].
    id: u64,
}

impl StderrRing {
    pub fn new(max_bytes: usize) -> Self {
        StderrRing {
            lines: VecDeque::new(),
            bytes: 0,
            max_bytes,
            total: 0,
            // 53 bits: JSON readers that hold numbers as doubles (JavaScript, jq) read it exactly.
            id: crate::process::random_u64() & ((1 << 53) - 1),
        }
    }

    pub fn push(&mut self, line: String) {
        self.total += 1;
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.bytes > self.max_bytes {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len() + 1,
                None => break,
            }
        }
    }

    /// Lines ever pushed, including those dropped from the buffer.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The lines pushed after the first `after` (all, with none), at most the newest `max` of
    /// them, with the total and how many after `after` are not given.
    pub fn since(&self, after: Option<u64>, max: usize) -> ServerLogs {
        let kept_from = self.total - self.lines.len() as u64;
        let after = after.unwrap_or(0).min(self.total);
        let first = after.max(kept_from);
        let available = (self.total - first) as usize;
        let skip = self.lines.len() - available + available.saturating_sub(max);
        let lines: Vec<String> = self.lines.iter().skip(skip).cloned().collect();
        ServerLogs {
            missed: self.total - after - lines.len() as u64,
            lines,
            total: self.total,
            log_id: self.id,
        }
    }
}

/// The ring as the reader task and the manager share it. The lock is held only to push or copy.
pub type SharedStderr = Arc<Mutex<StderrRing>>;

pub fn shared(max_bytes: usize) -> SharedStderr {
    Arc::new(Mutex::new(StderrRing::new(max_bytes)))
}

/// Locks the ring, recovering it if a panicking holder poisoned it (the data is still lines).
pub fn lock(ring: &SharedStderr) -> std::sync::MutexGuard<'_, StderrRing> {
    ring.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of `input` as `CappedLines` reads it, through a buffer of `buffer` bytes.
    fn read_all(input: &[u8], max: usize, buffer: usize) -> Vec<(Vec<u8>, usize)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let reader = tokio::io::BufReader::with_capacity(buffer, input);
            let mut lines = CappedLines::new(reader, max);
            let mut out = Vec::new();
            while let Some(line) = lines.next_line().await.unwrap() {
                out.push(line);
            }
            out
        })
    }

    #[test]
    fn a_long_line_is_cut_and_the_cut_counted() {
        let mut input = b"short\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100));
        input.extend(b"\nlast, with no newline");
        let lines = read_all(&input, 10, 7);
        assert_eq!(
            lines,
            [
                (b"short".to_vec(), 0),
                (b"xxxxxxxxxx".to_vec(), 90),
                (b"last, with".to_vec(), 11)
            ]
        );
    }

    proptest::proptest! {
        /// The lines are the input's lines, each cut to `max` bytes with the rest counted,
        /// whatever the reader's buffer size.
        #[test]
        fn lines_are_the_inputs_cut_to_max(
            input in proptest::collection::vec(proptest::sample::select(vec![b'a', b'b', b'\n']), 0..300),
            max in 0usize..20,
            buffer in 1usize..16,
        ) {
            let mut want: Vec<(Vec<u8>, usize)> = input
                .split(|b| *b == b'\n')
                .map(|l| (l[..l.len().min(max)].to_vec(), l.len().saturating_sub(max)))
                .collect();
            // A final newline ends the last line; it does not start another.
            if want.last().is_some_and(|(l, cut)| l.is_empty() && *cut == 0) {
                want.pop();
            }
            proptest::prop_assert_eq!(read_all(&input, max, buffer), want);
        }
    }

    #[test]
    fn keeps_the_newest_lines_within_the_byte_bound() {
        let mut r = StderrRing::new(12);
        for i in 0..10 {
            r.push(format!("line{i}"));
        }
        assert_eq!(r.since(None, 100).lines, ["line8", "line9"]);
        assert_eq!(r.since(None, 1).lines, ["line9"]);
        assert_eq!(r.total(), 10);
    }

    #[test]
    fn a_cursor_gives_each_line_once_and_counts_what_it_missed() {
        let mut r = StderrRing::new(18);
        for i in 0..3 {
            r.push(format!("line{i}"));
        }
        let all = r.since(None, 100);
        assert_eq!(all.lines, ["line0", "line1", "line2"]);
        assert_eq!((all.total, all.missed), (3, 0));
        assert_eq!(r.since(Some(3), 100).lines, Vec::<String>::new());
        r.push("line3".into());
        let next = r.since(Some(3), 100);
        assert_eq!(next.lines, ["line3"]);
        assert_eq!((next.total, next.missed), (4, 0));
        // line0 and line1 are dropped from the ring (18 bytes keep 3 lines of 5 and a newline).
        r.push("line4".into());
        let late = r.since(Some(1), 100);
        assert_eq!(late.lines, ["line2", "line3", "line4"]);
        assert_eq!((late.total, late.missed), (5, 1));
        let capped = r.since(Some(2), 2);
        assert_eq!(capped.lines, ["line3", "line4"]);
        assert_eq!(capped.missed, 1);
        // A cursor from the future (another run of the server) gives nothing.
        let future = r.since(Some(99), 100);
        assert_eq!((future.lines.len(), future.total, future.missed), (0, 5, 0));
        // Another ring is another log.
        assert_ne!(StderrRing::new(18).since(None, 1).log_id, future.log_id);
        // A double holds it exactly (JavaScript, jq).
        for _ in 0..64 {
            let id = StderrRing::new(18).since(None, 1).log_id;
            assert_eq!(id as f64 as u64, id);
        }
    }

    #[test]
    fn empty_lines_count_against_the_bound() {
        let mut r = StderrRing::new(10);
        for _ in 0..100 {
            r.push(String::new());
        }
        assert_eq!(r.since(None, 1000).lines.len(), 10);
    }
}
