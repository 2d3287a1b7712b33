//! The pure health policy: per-server probe bookkeeping and the healthy/unhealthy verdicts.
//! No kameo, no I/O, no clock; the actor feeds it probe outcomes and acts on the verdicts.

use std::time::Duration;

use fleet_protocol::ServerState;
use fleet_protocol::messages::health::{HealthChanged, ServerHealth};

/// When a server's verdict changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Failed probes in a row that make a healthy server unhealthy. Zero is read as one: a
    /// threshold of "no failures" would call a server unhealthy before it ever failed.
    pub failure_threshold: u32,
}

impl HealthPolicy {
    /// The threshold actually applied (at least one).
    pub fn effective_threshold(&self) -> u32 {
        self.failure_threshold.max(1)
    }
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            failure_threshold: 3,
        }
    }
}

/// A change of a server's health verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The failure run just reached the threshold while the server was healthy.
    BecameUnhealthy,
    /// The first good probe after the server was unhealthy.
    Recovered,
}

/// What the monitor knows of one server's probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTracker {
    /// Probes observed in all.
    pub probes: u64,
    /// Failed probes in all.
    pub failures: u64,
    /// The length of the current run of failed probes.
    pub consecutive_failures: u32,
    /// The current verdict.
    pub healthy: bool,
    /// The round trip of the last good probe.
    pub last_latency: Option<Duration>,
    /// The last probe error of the current failure run; cleared by a good probe.
    pub last_error: Option<String>,
}

impl Default for HealthTracker {
    /// A server starts healthy.
    fn default() -> Self {
        HealthTracker::new(true)
    }
}

impl HealthTracker {
    /// A tracker with no probes yet and the given verdict.
    pub fn new(healthy: bool) -> Self {
        HealthTracker {
            probes: 0,
            failures: 0,
            consecutive_failures: 0,
            healthy,
            last_latency: None,
            last_error: None,
        }
    }

    /// Counts one probe outcome and returns the verdict change it causes, if any.
    ///
    /// `BecameUnhealthy` is returned exactly when the failure run reaches the threshold while the
    /// server is healthy; `Recovered` on the first good probe while it is unhealthy.
    pub fn observe(
        &mut self,
        outcome: &Result<Duration, String>,
        policy: &HealthPolicy,
    ) -> Option<Verdict> {
        self.probes = self.probes.saturating_add(1);
        match outcome {
            Ok(latency) => {
                self.consecutive_failures = 0;
                self.last_latency = Some(*latency);
                self.last_error = None;
                if self.healthy {
                    None
                } else {
                    self.healthy = true;
                    Some(Verdict::Recovered)
                }
            }
            Err(error) => {
                self.failures = self.failures.saturating_add(1);
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.last_error = Some(error.clone());
                if self.healthy && self.consecutive_failures >= policy.effective_threshold() {
                    self.healthy = false;
                    Some(Verdict::BecameUnhealthy)
                } else {
                    None
                }
            }
        }
    }

    /// A new process of the same server: the failure run and the verdict start over (the
    /// verdict as given, normally healthy), the totals and the last latency are kept.
    pub fn new_process(&mut self, healthy: bool) {
        self.consecutive_failures = 0;
        self.healthy = healthy;
        self.last_error = None;
    }

    /// The snapshot `GetHealth` reports.
    pub fn to_health(&self, server: &str) -> ServerHealth {
        ServerHealth {
            server: server.to_owned(),
            healthy: self.healthy,
            probes: self.probes,
            failures: self.failures,
            consecutive_failures: self.consecutive_failures,
            last_latency: self.last_latency,
            last_error: self.last_error.clone(),
        }
    }

    /// The event announcing the current verdict (sent after a [`Verdict`]), about no process
    /// in particular: the monitor names the process it probed.
    pub fn to_event(&self, server: &str) -> HealthChanged {
        HealthChanged {
            server: server.to_owned(),
            healthy: self.healthy,
            consecutive_failures: self.consecutive_failures,
            reason: if self.healthy {
                None
            } else {
                self.last_error.clone()
            },
            pid: None,
            started_at: None,
        }
    }
}

/// The verdict a tracker starts with for a server first seen (or seen with a new process) in
/// `state`: the server manager's view is adopted, so that after the monitor restarts a server
/// the manager still marks unhealthy gets its `Recovered` event once it answers again.
pub fn initial_verdict(state: &ServerState) -> bool {
    *state != ServerState::Unhealthy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Result<Duration, String> {
        Ok(Duration::from_millis(1))
    }

    fn fail() -> Result<Duration, String> {
        Err("boom".to_owned())
    }

    #[test]
    fn unhealthy_exactly_at_threshold_then_recovers() {
        let policy = HealthPolicy {
            failure_threshold: 3,
        };
        let mut t = HealthTracker::default();
        assert_eq!(t.observe(&fail(), &policy), None);
        assert_eq!(t.observe(&fail(), &policy), None);
        assert_eq!(t.observe(&fail(), &policy), Some(Verdict::BecameUnhealthy));
        assert_eq!(t.to_event("b").reason.as_deref(), Some("boom"));
        assert_eq!(t.observe(&fail(), &policy), None);
        assert_eq!(t.observe(&ok(), &policy), Some(Verdict::Recovered));
        assert_eq!(t.observe(&ok(), &policy), None);
        let h = t.to_health("b");
        assert_eq!((h.probes, h.failures, h.consecutive_failures), (6, 4, 0));
        assert!(h.healthy);
        assert_eq!(h.last_error, None);
    }

    #[test]
    fn zero_threshold_acts_as_one() {
        let policy = HealthPolicy {
            failure_threshold: 0,
        };
        let mut t = HealthTracker::default();
        assert_eq!(t.observe(&ok(), &policy), None);
        assert_eq!(t.observe(&fail(), &policy), Some(Verdict::BecameUnhealthy));
    }

    #[test]
    fn a_tracker_started_unhealthy_recovers_on_a_good_probe() {
        let policy = HealthPolicy::default();
        let mut t = HealthTracker::new(initial_verdict(&ServerState::Unhealthy));
        assert!(!t.healthy);
        assert_eq!(t.observe(&fail(), &policy), None);
        assert_eq!(t.observe(&ok(), &policy), Some(Verdict::Recovered));
        assert!(initial_verdict(&ServerState::Ready));
    }

    #[test]
    fn a_new_process_starts_a_new_failure_run() {
        let policy = HealthPolicy {
            failure_threshold: 2,
        };
        let mut t = HealthTracker::default();
        t.observe(&fail(), &policy);
        assert_eq!(t.observe(&fail(), &policy), Some(Verdict::BecameUnhealthy));
        t.new_process(true);
        assert_eq!(t.observe(&fail(), &policy), None);
        assert_eq!(t.observe(&fail(), &policy), Some(Verdict::BecameUnhealthy));
        assert_eq!((t.probes, t.failures), (4, 4));
    }
}
