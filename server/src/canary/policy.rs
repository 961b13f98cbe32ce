//! `--auto`: whether a canary is aborted, promoted or left to run, from both releases' figures
//! since it started. Pure, no clock: tested as a table.

use caas_api::canary::{CanaryAuto, ReleaseFigures};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Keep running; why, in one line (for `caas releases:canary` and `caas ps`).
    Wait(String),
    /// Worse than the stable release by more than the margin: why.
    Abort(String),
    /// Healthy for the set time.
    Promote(String),
}

/// `v3 5xx 0.0% p95 25ms of 120 requests`.
pub fn describe(f: &ReleaseFigures) -> String {
    let p95 = f
        .p95_ms
        .map_or_else(|| "-".to_string(), |ms| format!("{ms}ms"));
    format!(
        "v{} 5xx {:.1}% p95 {p95} of {} requests",
        f.version,
        f.error_rate(),
        f.requests
    )
}

/// The figures of both, as every decision's line carries them.
pub fn figures(stable: &ReleaseFigures, canary: &ReleaseFigures) -> String {
    format!("canary {}; stable {}", describe(canary), describe(stable))
}

pub fn decide(
    auto: &CanaryAuto,
    stable: &ReleaseFigures,
    canary: &ReleaseFigures,
    running: Duration,
) -> Decision {
    let (c, s) = (canary.version, stable.version);
    if canary.requests < auto.min_requests {
        return Decision::Wait(format!(
            "v{c} answered {} of the {} requests it needs to be judged",
            canary.requests, auto.min_requests
        ));
    }
    let increase = canary.error_rate() - stable.error_rate();
    if increase > auto.max_5xx_increase {
        return Decision::Abort(format!(
            "its 5xx rate {:.1}% is {increase:.1} points above v{s}'s {:.1}% (--max-5xx-increase {})",
            canary.error_rate(),
            stable.error_rate(),
            auto.max_5xx_increase
        ));
    }
    if let (Some(cp), Some(sp)) = (canary.p95_ms, stable.p95_ms) {
        let limit = auto.max_p95_increase.limit(sp);
        if cp > limit {
            return Decision::Abort(format!(
                "its p95 {cp}ms is above v{s}'s {sp}ms {} (--max-p95-increase {})",
                auto.max_p95_increase,
                match auto.max_p95_increase {
                    caas_api::canary::Increase::Ms(ms) => format!("{ms}ms"),
                    caas_api::canary::Increase::Percent(p) => format!("{p}%"),
                }
            ));
        }
    }
    let after = Duration::from_secs(auto.promote_after_secs);
    if running >= after {
        return Decision::Promote(format!(
            "healthy for {} (--promote-after)",
            humantime::format_duration(after)
        ));
    }
    let left = Duration::from_secs((after - running).as_secs());
    Decision::Wait(format!(
        "v{c} is healthy so far; promoted in {} unless it gets worse",
        humantime::format_duration(left)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use caas_api::canary::Increase;

    fn f(version: u64, requests: u64, errors_5xx: u64, p95_ms: Option<u64>) -> ReleaseFigures {
        ReleaseFigures {
            version,
            requests,
            errors_5xx,
            p95_ms,
            ..ReleaseFigures::default()
        }
    }

    fn kind(d: &Decision) -> &'static str {
        match d {
            Decision::Wait(_) => "wait",
            Decision::Abort(_) => "abort",
            Decision::Promote(_) => "promote",
        }
    }

    #[test]
    fn canaries_are_judged_against_the_stable_release() {
        let auto = CanaryAuto {
            max_5xx_increase: 1.0,
            max_p95_increase: Increase::Ms(200),
            promote_after_secs: 300,
            min_requests: 20,
        };
        let pct = CanaryAuto {
            max_p95_increase: Increase::Percent(50.0),
            ..auto.clone()
        };
        let early = Duration::from_secs(60);
        let late = Duration::from_secs(300);
        let stable = f(2, 400, 0, Some(50));
        let cases = [
            // Too few requests to say anything, however bad, however long.
            (
                &auto,
                stable.clone(),
                f(3, 19, 19, Some(30_000)),
                late,
                "wait",
            ),
            // Healthy: waits until --promote-after, then promotes.
            (&auto, stable.clone(), f(3, 100, 0, Some(50)), early, "wait"),
            (
                &auto,
                stable.clone(),
                f(3, 100, 0, Some(50)),
                late,
                "promote",
            ),
            // 5xx: 1 point more is allowed, more is not; all 500s is aborted at once.
            (&auto, stable.clone(), f(3, 100, 1, Some(50)), early, "wait"),
            (
                &auto,
                stable.clone(),
                f(3, 100, 2, Some(50)),
                early,
                "abort",
            ),
            (&auto, stable.clone(), f(3, 20, 20, Some(5)), early, "abort"),
            (&auto, stable.clone(), f(3, 20, 20, Some(5)), late, "abort"),
            // Compared with the stable release's own rate, not with zero.
            (
                &auto,
                f(2, 400, 40, Some(50)),
                f(3, 100, 10, Some(50)),
                late,
                "promote",
            ),
            // p95: stable 50ms + 200ms is allowed, 500ms is not.
            (
                &auto,
                stable.clone(),
                f(3, 100, 0, Some(250)),
                early,
                "wait",
            ),
            (
                &auto,
                stable.clone(),
                f(3, 100, 0, Some(500)),
                early,
                "abort",
            ),
            // +50%: 75ms allowed, 100ms not.
            (&pct, stable.clone(), f(3, 100, 0, Some(50)), early, "wait"),
            (
                &pct,
                stable.clone(),
                f(3, 100, 0, Some(100)),
                early,
                "abort",
            ),
            // A stable release without requests (weight 99): its rate counts as 0, no p95.
            (
                &auto,
                f(2, 0, 0, None),
                f(3, 100, 0, Some(30_000)),
                late,
                "promote",
            ),
            (
                &auto,
                f(2, 0, 0, None),
                f(3, 100, 5, Some(5)),
                late,
                "abort",
            ),
        ];
        for (i, (auto, stable, canary, running, want)) in cases.iter().enumerate() {
            let d = decide(auto, stable, canary, *running);
            assert_eq!(kind(&d), *want, "case {i}: {d:?}");
        }
    }

    #[test]
    fn decisions_say_why_with_the_figures() {
        let auto = CanaryAuto::default();
        let d = decide(
            &auto,
            &f(2, 80, 0, Some(5)),
            &f(3, 20, 20, Some(5)),
            Duration::ZERO,
        );
        assert_eq!(
            d,
            Decision::Abort(
                "its 5xx rate 100.0% is 100.0 points above v2's 0.0% (--max-5xx-increase 1)".into()
            )
        );
        assert_eq!(
            figures(&f(2, 80, 0, Some(5)), &f(3, 20, 20, None)),
            "canary v3 5xx 100.0% p95 - of 20 requests; stable v2 5xx 0.0% p95 5ms of 80 requests"
        );
        let d = decide(
            &auto,
            &f(2, 80, 0, Some(5)),
            &f(3, 30, 0, Some(5)),
            Duration::from_secs(299),
        );
        assert_eq!(
            d,
            Decision::Wait("v3 is healthy so far; promoted in 1s unless it gets worse".into())
        );
    }
}
