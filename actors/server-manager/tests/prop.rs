//! Property tests of the restart policy: delays within bounds and growing to the cap, the budget
//! never exceeded within any window, escalation to a crash loop, and the reset after a stable run.

use std::time::{Duration, Instant};

use fleet_protocol::config::{RestartMode, RestartPolicy};
use fleet_server_manager::policy::{Decision, RestartTracker, delay};
use proptest::prelude::*;

fn policy() -> impl Strategy<Value = RestartPolicy> {
    (
        1u64..5_000,
        1u64..50,
        0.0f64..=1.0,
        1u32..10,
        1u64..600_000,
        1u64..600_000,
    )
        .prop_map(
            |(base_ms, cap_factor, jitter, budget, window_ms, stable_ms)| RestartPolicy {
                mode: RestartMode::Always,
                backoff_base: Duration::from_millis(base_ms),
                backoff_cap: Duration::from_millis(base_ms * cap_factor),
                jitter,
                budget,
                window: Duration::from_millis(window_ms),
                stable_after: Duration::from_millis(stable_ms),
            },
        )
}

/// An exit: milliseconds after the previous one, how long the process ran, a jitter sample.
fn exits() -> impl Strategy<Value = Vec<(u64, u64, f64)>> {
    prop::collection::vec((0u64..120_000, 0u64..120_000, 0.0f64..1.0), 1..60)
}

proptest! {
    #[test]
    fn every_delay_is_within_base_and_cap_and_near_its_nominal(
        p in policy(),
        attempt in 0u32..64,
        sample in 0.0f64..1.0,
    ) {
        let d = delay(&p, attempt, sample);
        prop_assert!(d >= p.backoff_base && d <= p.backoff_cap, "{d:?} outside [{:?}, {:?}]", p.backoff_base, p.backoff_cap);
        let nominal = p.backoff_base.saturating_mul(2u32.saturating_pow(attempt.min(31))).min(p.backoff_cap);
        let low = nominal.mul_f64(1.0 - p.jitter).max(p.backoff_base);
        let high = nominal.mul_f64(1.0 + p.jitter).min(p.backoff_cap);
        // One microsecond of slack for float rounding.
        prop_assert!(d + Duration::from_micros(1) >= low && d <= high + Duration::from_micros(1),
            "{d:?} not within jitter of {nominal:?}");
    }

    #[test]
    fn without_jitter_delays_double_until_the_cap(p in policy()) {
        let p = RestartPolicy { jitter: 0.0, ..p };
        let mut last = Duration::ZERO;
        for attempt in 0..40 {
            let d = delay(&p, attempt, 0.5);
            prop_assert!(d >= last);
            if last > Duration::ZERO && last < p.backoff_cap {
                prop_assert_eq!(d, (last * 2).min(p.backoff_cap));
            }
            last = d;
        }
        prop_assert_eq!(last, p.backoff_cap);
    }

    #[test]
    fn the_budget_is_never_exceeded_within_any_window(p in policy(), exits in exits()) {
        let start = Instant::now();
        let mut t = RestartTracker::default();
        let mut now = start;
        let mut restarts = Vec::new();
        for (gap, ran, sample) in exits {
            now += Duration::from_millis(gap);
            // Short runs only: a stable run may legitimately reset the budget.
            let ran = Duration::from_millis(ran).min(p.stable_after.saturating_sub(Duration::from_millis(1)));
            if let Decision::Restart { .. } = t.on_exit(&p, now, ran, true, sample) {
                restarts.push(now);
            }
        }
        for (i, &from) in restarts.iter().enumerate() {
            let within = restarts[i..].iter().take_while(|&&r| r.duration_since(from) < p.window).count();
            prop_assert!(within <= p.budget as usize, "{within} restarts within {:?}, budget {}", p.window, p.budget);
        }
    }

    #[test]
    fn exits_beyond_the_budget_inside_the_window_escalate(p in policy(), sample in 0.0f64..1.0) {
        let now = Instant::now();
        let mut t = RestartTracker::default();
        for i in 0..p.budget {
            let d = t.on_exit(&p, now, Duration::ZERO, true, sample);
            let ok = matches!(d, Decision::Restart { attempt, .. } if attempt == i + 1);
            prop_assert!(ok, "{:?}", d);
        }
        prop_assert_eq!(t.on_exit(&p, now, Duration::ZERO, true, sample), Decision::CrashLoop { restarts: p.budget });
        // Still a crash loop on a further exit in the window.
        let again = t.on_exit(&p, now, Duration::ZERO, true, sample);
        prop_assert!(matches!(again, Decision::CrashLoop { .. }), "{:?}", again);
    }

    #[test]
    fn a_stable_run_resets_backoff_and_budget(p in policy(), n in 1u32..10, sample in 0.0f64..1.0) {
        let now = Instant::now();
        let mut t = RestartTracker::default();
        for _ in 0..n {
            t.on_exit(&p, now, Duration::ZERO, true, sample);
        }
        let d = t.on_exit(&p, now, p.stable_after, true, sample);
        prop_assert_eq!(d, Decision::Restart { after: delay(&p, 0, sample), attempt: 1 });
        prop_assert_eq!(t.recent_restarts(), 1);
    }
}
