//! A bounded ring buffer of a server's stderr lines, shared between the reader task and the
//! manager (which serves `GetServerLogs` from it without asking the server's actor).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// The newest lines a server wrote to stderr, at most `max_bytes` of them.
#[derive(Debug)]
pub struct StderrRing {
    lines: VecDeque<String>,
    bytes: usize,
    max_bytes: usize,
    total: u64,
}

impl StderrRing {
    pub fn new(max_bytes: usize) -> Self {
        StderrRing {
            lines: VecDeque::new(),
            bytes: 0,
            max_bytes,
            total: 0,
        }
    }

    pub fn push(&mut self, line: String) {
        self.total += 1;
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.bytes > self.max_bytes {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len(),
                None => break,
            }
        }
    }

    /// The newest `max` lines, oldest first.
    pub fn tail(&self, max: usize) -> Vec<String> {
        let skip = self.lines.len().saturating_sub(max);
        self.lines.iter().skip(skip).cloned().collect()
    }

    /// Lines ever pushed, including those dropped from the buffer.
    pub fn total(&self) -> u64 {
        self.total
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
        let mut r = StderrRing::new(10);
        for i in 0..10 {
            r.push(format!("line{i}"));
        }
        assert_eq!(r.tail(100), vec!["line8", "line9"]);
        assert_eq!(r.tail(1), vec!["line9"]);
        assert_eq!(r.total(), 10);
    }
}
