//! A bounded ring buffer of a server's stderr lines, shared between the reader task and the
//! manager (which serves `GetServerLogs` from it without asking the server's actor).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use fleet_protocol::messages::server::ServerLogs;

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
            id: crate::process::random_u64(),
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
