//! Property tests of the pure health policy: verdicts follow the failure runs of any sequence of
//! probe outcomes.

use std::time::Duration;

use fleet_health_monitor::{HealthPolicy, HealthTracker, Verdict};
use proptest::prelude::*;

fn outcome(ok: bool, latency_ms: u64) -> Result<Duration, String> {
    if ok {
        Ok(Duration::from_millis(latency_ms))
    } else {
        Err(format!("failed after {latency_ms} ms"))
    }
}

proptest! {
    #[test]
    fn verdicts_follow_failure_runs(
        failure_threshold in 0u32..6,
        outcomes in prop::collection::vec((any::<bool>(), 0u64..100), 0..200),
    ) {
        let policy = HealthPolicy { failure_threshold };
        let threshold = failure_threshold.max(1);
        let mut tracker = HealthTracker::default();
        prop_assert!(tracker.healthy);

        let mut run = 0u32;
        let mut healthy = true;
        let mut successes = 0u64;
        let mut last_verdict = None;

        for (ok, latency_ms) in outcomes {
            let outcome = outcome(ok, latency_ms);
            let was_healthy = healthy;
            if ok {
                run = 0;
                successes += 1;
            } else {
                run += 1;
            }
            let verdict = tracker.observe(&outcome, &policy);

            let expected = if !ok && was_healthy && run == threshold {
                healthy = false;
                Some(Verdict::BecameUnhealthy)
            } else if ok && !was_healthy {
                healthy = true;
                Some(Verdict::Recovered)
            } else {
                None
            };
            prop_assert_eq!(verdict, expected);

            if let Some(verdict) = verdict {
                // Verdicts alternate, and the first is always BecameUnhealthy.
                let alternates = matches!(
                    (last_verdict, verdict),
                    (None, Verdict::BecameUnhealthy)
                        | (Some(Verdict::Recovered), Verdict::BecameUnhealthy)
                        | (Some(Verdict::BecameUnhealthy), Verdict::Recovered)
                );
                prop_assert!(alternates, "{:?} after {:?}", verdict, last_verdict);
                last_verdict = Some(verdict);
            }

            prop_assert_eq!(tracker.healthy, healthy);
            prop_assert_eq!(tracker.consecutive_failures, run);
            prop_assert_eq!(tracker.probes, tracker.failures + successes);
            // Unhealthy only while a run at least as long as the threshold goes on.
            prop_assert!(tracker.healthy || tracker.consecutive_failures >= threshold);

            let health = tracker.to_health("s");
            prop_assert_eq!(health.consecutive_failures, run);
            prop_assert_eq!(health.healthy, healthy);
            prop_assert_eq!(health.last_error.is_some(), run > 0);
            let event = tracker.to_event("s");
            prop_assert_eq!(event.reason.is_some(), !healthy);
        }
    }
}
