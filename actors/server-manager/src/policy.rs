//! The restart policy: whether and when a server that exited on its own starts again.
//!
//! Pure: no kameo, no I/O, no clock; time comes in as an argument and jitter as a number in
//! `[0, 1)`, so every decision can be checked by property tests.
//!
//! - The delay doubles from `backoff_base` with each consecutive failure, up to `backoff_cap`;
//!   jitter moves it by at most `jitter` of itself, and it always stays within `[base, cap]`.
//! - At most `budget` restarts within any `window`; the next exit inside the window escalates to
//!   a crash loop, and the server stays down until someone asks for it again.
//! - A process that ran for `stable_after` before exiting earns a clean slate: backoff and budget
//!   start over.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use fleet_protocol::config::{RestartMode, RestartPolicy};

/// What to do about an exit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Start again after this delay.
    Restart { after: Duration, attempt: u32 },
    /// The budget is spent: stay down until asked (a crash loop).
    CrashLoop { restarts: u32 },
    /// The mode says not to restart after this kind of exit.
    Stay,
}

/// The restart history of one server.
#[derive(Debug, Clone, Default)]
pub struct RestartTracker {
    /// When each restart within the current window was decided.
    recent: VecDeque<Instant>,
    /// Consecutive failures since the last stable run: the backoff exponent.
    attempt: u32,
}

impl RestartTracker {
    /// Decides about an exit nobody asked for. `ran_for` is how long the process ran; `failure`
    /// is whether the exit counts as a failure; `jitter_sample` is uniform in `[0, 1)`.
    pub fn on_exit(
        &mut self,
        policy: &RestartPolicy,
        now: Instant,
        ran_for: Duration,
        failure: bool,
        jitter_sample: f64,
    ) -> Decision {
        if ran_for >= policy.stable_after {
            self.reset();
        }
        match policy.mode {
            RestartMode::Never => return Decision::Stay,
            RestartMode::OnFailure if !failure => return Decision::Stay,
            _ => {}
        }
        while let Some(&t) = self.recent.front() {
            if now.saturating_duration_since(t) >= policy.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() >= policy.budget as usize {
            return Decision::CrashLoop {
                restarts: self.recent.len() as u32,
            };
        }
        let after = delay(policy, self.attempt, jitter_sample);
        self.attempt = self.attempt.saturating_add(1);
        self.recent.push_back(now);
        Decision::Restart {
            after,
            attempt: self.attempt,
        }
    }

    /// Forgets the history (after a stable run, or when someone asks for a fresh start).
    pub fn reset(&mut self) {
        self.recent.clear();
        self.attempt = 0;
    }

    /// Restarts counted in the current window.
    pub fn recent_restarts(&self) -> usize {
        self.recent.len()
    }
}

/// The delay before restart number `attempt + 1`: `base * 2^attempt` capped at `cap`, moved by
/// jitter of at most `jitter` of itself, and kept within `[base, cap]`.
pub fn delay(policy: &RestartPolicy, attempt: u32, jitter_sample: f64) -> Duration {
    let base = policy.backoff_base;
    let cap = policy.backoff_cap.max(base);
    let nominal = base
        .checked_mul(2u32.saturating_pow(attempt.min(31)))
        .unwrap_or(cap)
        .min(cap);
    let jitter = policy.jitter.clamp(0.0, 1.0);
    let sample = if jitter_sample.is_finite() {
        jitter_sample.clamp(0.0, 1.0)
    } else {
        0.5
    };
    // Uniform in [1 - jitter, 1 + jitter].
    let factor = 1.0 + jitter * (2.0 * sample - 1.0);
    nominal.mul_f64(factor).clamp(base, cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_then_escalates_then_resets_after_a_stable_run() {
        let policy = RestartPolicy {
            jitter: 0.0,
            budget: 3,
            ..RestartPolicy::default()
        };
        let mut t = RestartTracker::default();
        let now = Instant::now();
        let short = Duration::from_millis(10);
        let delays: Vec<_> = (0..3)
            .map(|i| t.on_exit(&policy, now + Duration::from_secs(i), short, true, 0.5))
            .collect();
        assert_eq!(
            delays,
            [1, 2, 4].map(|s| Decision::Restart {
                after: Duration::from_secs(s),
                attempt: [1, 2, 4].iter().position(|x| *x == s).unwrap() as u32 + 1
            })
        );
        assert_eq!(
            t.on_exit(&policy, now + Duration::from_secs(4), short, true, 0.5),
            Decision::CrashLoop { restarts: 3 }
        );
        // A long, stable run starts over.
        assert_eq!(
            t.on_exit(
                &policy,
                now + Duration::from_secs(5),
                Duration::from_secs(60),
                true,
                0.5
            ),
            Decision::Restart {
                after: Duration::from_secs(1),
                attempt: 1
            }
        );
    }

    #[test]
    fn modes() {
        let mut t = RestartTracker::default();
        let now = Instant::now();
        let on_failure = RestartPolicy {
            mode: RestartMode::OnFailure,
            ..RestartPolicy::default()
        };
        assert_eq!(
            t.on_exit(&on_failure, now, Duration::ZERO, false, 0.0),
            Decision::Stay
        );
        assert!(matches!(
            t.on_exit(&on_failure, now, Duration::ZERO, true, 0.0),
            Decision::Restart { .. }
        ));
        let never = RestartPolicy {
            mode: RestartMode::Never,
            ..RestartPolicy::default()
        };
        assert_eq!(
            t.on_exit(&never, now, Duration::ZERO, true, 0.0),
            Decision::Stay
        );
    }
}
