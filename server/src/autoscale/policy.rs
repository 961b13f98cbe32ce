//! The autoscaling policy as data: `decide(observation, settings, memory, now) -> decision`. No
//! I/O, no clock; tested as a table. The loop in `mod.rs` gathers the observation, asks, and
//! writes the formation.
//!
//! The count wanted is the load divided by the target per instance, rounded up, within `min` and
//! `max` (and the operator's `--max-scale`): for requests, the requests per second of the last
//! 10 s over the target; for CPU, the CPU of the running instances added up over the target. More
//! instances are added at once; fewer only after the count wanted has stayed below the count for
//! the whole cool-down, so a dip in traffic does not take instances away.

use caas_api::metrics::AutoscaleSettings;
use caas_api::Timestamp;
use std::time::Duration;

/// What the autoscaler sees of one process type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// The formation's count now.
    pub quantity: u32,
    /// Requests per second over the last 10 s, all instances together.
    pub rps: f64,
    /// The CPU of its running instances added up, percent of one core; `None` without readings.
    pub cpu: Option<f64>,
    /// Instances with a CPU reading.
    pub with_cpu: u32,
}

/// What the policy remembers between passes, per process type.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Memory {
    /// Since when fewer instances than there are would do.
    pub low_since: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Keep,
    Scale { to: u32, reason: String },
}

fn ceil_div(load: f64, target: f64) -> u32 {
    if !load.is_finite() || load <= 0.0 || target <= 0.0 {
        return 0;
    }
    (load / target - 1e-9).ceil().clamp(0.0, u32::MAX as f64) as u32
}

pub fn decide(
    obs: &Observation,
    settings: &AutoscaleSettings,
    max_scale: u32,
    memory: &mut Memory,
    now: Timestamp,
) -> Decision {
    let ceiling = settings.max.min(max_scale);
    let floor = settings.min.min(ceiling);
    let q = obs.quantity;
    if q < floor || q > ceiling {
        memory.low_since = None;
        let to = q.clamp(floor, ceiling);
        return Decision::Scale {
            to,
            reason: format!("the count must stay from {floor} to {ceiling}"),
        };
    }
    let (wanted, load) = match (settings.rps, settings.cpu_percent) {
        (Some(target), _) => (
            ceil_div(obs.rps, target),
            format!(
                "{:.1} req/s over the last 10 s, {:.1} per instance for a target of {}",
                obs.rps,
                obs.rps / q.max(1) as f64,
                trim(target)
            ),
        ),
        (None, Some(target)) => match obs.cpu {
            // No reading yet: nothing to decide from.
            None => return Decision::Keep,
            Some(total) => (
                ceil_div(total, target),
                format!(
                    "CPU {:.0}% per instance for a target of {}%",
                    total / obs.with_cpu.max(1) as f64,
                    trim(target)
                ),
            ),
        },
        (None, None) => return Decision::Keep,
    };
    let wanted = wanted.clamp(floor, ceiling);
    if wanted > q {
        memory.low_since = None;
        return Decision::Scale {
            to: wanted,
            reason: load,
        };
    }
    if wanted == q {
        memory.low_since = None;
        return Decision::Keep;
    }
    let since = *memory.low_since.get_or_insert(now);
    let cooldown = Duration::from_secs(settings.cooldown_secs);
    if since.until(now) < cooldown {
        return Decision::Keep;
    }
    memory.low_since = None;
    Decision::Scale {
        to: wanted,
        reason: format!(
            "{load}, for {}",
            humantime::format_duration(Duration::from_secs(since.until(now).as_secs()))
        ),
    }
}

/// `100` rather than `100.0`, `2.5` as it is.
pub fn trim(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rps(min: u32, max: u32, target: f64) -> AutoscaleSettings {
        AutoscaleSettings {
            min,
            max,
            rps: Some(target),
            cpu_percent: None,
            cooldown_secs: 60,
        }
    }

    fn cpu(min: u32, max: u32, target: f64) -> AutoscaleSettings {
        AutoscaleSettings {
            rps: None,
            cpu_percent: Some(target),
            ..rps(min, max, 0.0)
        }
    }

    fn obs(quantity: u32, rps: f64) -> Observation {
        Observation {
            quantity,
            rps,
            cpu: None,
            with_cpu: 0,
        }
    }

    fn at(secs: u64) -> Timestamp {
        Timestamp(secs * 1000)
    }

    fn to(d: &Decision) -> Option<u32> {
        match d {
            Decision::Keep => None,
            Decision::Scale { to, .. } => Some(*to),
        }
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn one_pass_decides_from_the_load_the_bounds_and_the_cool_down() {
        let low = |s| Memory {
            low_since: Some(at(s)),
        };
        let none = Memory::default();
        // (what, observation, settings, max_scale, memory before, now) -> (count, memory after)
        let rows: Vec<(
            &str,
            Observation,
            AutoscaleSettings,
            u32,
            Memory,
            u64,
            Option<u32>,
            Memory,
        )> = vec![
            (
                "on target",
                obs(2, 200.0),
                rps(1, 10, 100.0),
                20,
                none,
                100,
                None,
                none,
            ),
            (
                "up at once",
                obs(1, 350.0),
                rps(1, 10, 100.0),
                20,
                none,
                100,
                Some(4),
                none,
            ),
            (
                "up clears a low spell",
                obs(2, 250.0),
                rps(1, 10, 100.0),
                20,
                low(90),
                100,
                Some(3),
                none,
            ),
            (
                "up, not past max",
                obs(2, 5000.0),
                rps(1, 10, 100.0),
                20,
                none,
                100,
                Some(10),
                none,
            ),
            (
                "up, not past --max-scale",
                obs(2, 5000.0),
                rps(1, 10, 100.0),
                5,
                none,
                100,
                Some(5),
                none,
            ),
            (
                "low: the cool-down starts",
                obs(4, 100.0),
                rps(1, 10, 100.0),
                20,
                none,
                100,
                None,
                low(100),
            ),
            (
                "low: still cooling down",
                obs(4, 100.0),
                rps(1, 10, 100.0),
                20,
                low(100),
                159,
                None,
                low(100),
            ),
            (
                "low for the whole cool-down: down",
                obs(4, 100.0),
                rps(1, 10, 100.0),
                20,
                low(100),
                160,
                Some(1),
                none,
            ),
            (
                "no traffic: down to min, not below",
                obs(4, 0.0),
                rps(2, 10, 100.0),
                20,
                low(0),
                100,
                Some(2),
                none,
            ),
            (
                "at min with no traffic",
                obs(2, 0.0),
                rps(2, 10, 100.0),
                20,
                none,
                100,
                None,
                none,
            ),
            (
                "below min: at once",
                obs(0, 0.0),
                rps(1, 10, 100.0),
                20,
                none,
                100,
                Some(1),
                none,
            ),
            (
                "above max: at once",
                obs(12, 5000.0),
                rps(1, 10, 100.0),
                20,
                low(50),
                100,
                Some(10),
                none,
            ),
            (
                "a fraction more is one more",
                obs(1, 100.5),
                rps(1, 10, 100.0),
                20,
                none,
                100,
                Some(2),
                none,
            ),
            (
                "cpu: up",
                Observation {
                    quantity: 2,
                    rps: 0.0,
                    cpu: Some(180.0),
                    with_cpu: 2,
                },
                cpu(1, 10, 60.0),
                20,
                none,
                100,
                Some(3),
                none,
            ),
            (
                "cpu: new instances without a reading count nothing",
                Observation {
                    quantity: 3,
                    rps: 0.0,
                    cpu: Some(170.0),
                    with_cpu: 2,
                },
                cpu(1, 10, 60.0),
                20,
                none,
                100,
                None,
                none,
            ),
            (
                "cpu: no reading, no decision",
                obs(3, 0.0),
                cpu(1, 10, 60.0),
                20,
                none,
                100,
                None,
                none,
            ),
            (
                "cpu: low, after the cool-down",
                Observation {
                    quantity: 3,
                    rps: 0.0,
                    cpu: Some(30.0),
                    with_cpu: 3,
                },
                cpu(1, 10, 60.0),
                20,
                low(0),
                100,
                Some(1),
                none,
            ),
        ];
        for (what, o, s, max_scale, before, now, want, after) in rows {
            let mut memory = before;
            let d = decide(&o, &s, max_scale, &mut memory, at(now));
            assert_eq!(to(&d), want, "{what}: {d:?}");
            assert_eq!(memory, after, "{what}: memory");
        }
    }

    #[test]
    fn reasons_say_the_load_and_the_target() {
        let mut m = Memory::default();
        let d = decide(&obs(1, 350.0), &rps(1, 10, 100.0), 20, &mut m, at(0));
        assert_eq!(
            d,
            Decision::Scale {
                to: 4,
                reason: "350.0 req/s over the last 10 s, 350.0 per instance for a target of 100"
                    .into()
            }
        );
        let mut m = Memory {
            low_since: Some(at(0)),
        };
        let Decision::Scale { reason, .. } =
            decide(&obs(4, 0.0), &rps(1, 10, 100.0), 20, &mut m, at(90))
        else {
            panic!("down")
        };
        assert_eq!(
            reason,
            "0.0 req/s over the last 10 s, 0.0 per instance for a target of 100, for 1m 30s"
        );
    }
}
