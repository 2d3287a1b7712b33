//! A per-actor count of handled messages, reported in batches so counting costs no extra message
//! per message.

use std::time::{Duration, Instant};

/// Counts messages and says when a batch is due. Pure: time comes in as an argument.
#[derive(Debug, Clone)]
pub struct MessageCounter {
    pending: u64,
    last_report: Instant,
    every: Duration,
}

impl MessageCounter {
    pub fn new(now: Instant, every: Duration) -> Self {
        MessageCounter {
            pending: 0,
            last_report: now,
            every,
        }
    }

    /// Counts one message; returns the batch to report when `every` has passed since the last.
    pub fn record(&mut self, now: Instant) -> Option<u64> {
        self.pending += 1;
        if now.duration_since(self.last_report) >= self.every {
            self.take(now)
        } else {
            None
        }
    }

    /// Takes whatever is pending (for a final report on stop, or a flush).
    pub fn take(&mut self, now: Instant) -> Option<u64> {
        self.last_report = now;
        (self.pending > 0).then(|| std::mem::take(&mut self.pending))
    }
}
