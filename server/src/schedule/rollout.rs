//! `assess(world) -> verdicts`: whether each deploying release is up, failed, or still on its
//! way. Pure, like [`super::reconcile`]: the scheduler writes the verdicts to the store
//! (`Store::finish_rollout`), and the CLI and the git endpoint read them from there. Nothing else
//! decides whether a release is up.
//!
//! A deploying release is
//! - **up** when every process type the formation asks for has that many instances of it up,
//!   each for the app's `min-up` at least (its startup check passed, and it stayed up); with
//!   nothing asked for (`web=0`), it is up at once;
//! - **failed** when one of its instances crashed (exited, restarted, or was stopped by a
//!   failing check: the reason then says the check's last result) before that, or when it is
//!   not up by its start deadline, or when one of its instances has had no host that could
//!   take it for [`UNPLACEABLE_FOR`] (no room, and none coming from draining instances: waiting
//!   would only keep the pusher waiting; the reason says which resource and what to do): `start_timeout` after the release's creation or its newest
//!   instance's placement (a later batch), and never sooner than `start_timeout` after this
//!   control plane started, so a restart of caasd does not fail a rollout for want of the
//!   heartbeats that were about to come;
//! - otherwise still deploying.
//!
//! A failed release never served: the release before it keeps serving, every process type of
//! it (see rule 3 of `reconcile`).

use super::reconcile::{AppView, World};
use crate::store::{AllocationRecord, Desired};
use caas_api::agent::ObservedState;
use caas_api::checks::format_duration;
use std::collections::HashMap;
use std::time::Duration;

/// How long an instance of a deploying release may find no host before the release fails: long
/// enough for the room a superseded release frees in the same pass to be seen.
pub const UNPLACEABLE_FOR: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub app: String,
    pub version: u64,
    /// `Ok(what runs)`, e.g. `web=2 worker=1`; `Err(why)` in one line.
    pub outcome: Result<String, String>,
    /// The allocation that failed it, whose last output the release keeps.
    pub culprit: Option<String>,
}

pub fn assess(w: &World<'_>) -> Vec<Verdict> {
    // Each app's allocations, grouped once rather than filtered out of all of them per app
    // (quadratic while many apps deploy at once).
    let mut by_app: HashMap<&str, Vec<&AllocationRecord>> = HashMap::new();
    for a in w.allocations {
        by_app.entry(a.app.as_str()).or_default().push(a);
    }
    w.apps
        .iter()
        .filter_map(|app| {
            let all = by_app.get(app.name.as_str()).map_or(&[][..], Vec::as_slice);
            assess_app(w, app, all)
        })
        .collect()
}

/// `all`: the app's allocations.
fn assess_app(w: &World<'_>, app: &AppView, all: &[&AllocationRecord]) -> Option<Verdict> {
    let target = app.deploying.as_ref()?;
    let min_up = w.settings.pacing(app).min_up;
    let verdict = |outcome, culprit: Option<&AllocationRecord>| {
        Some(Verdict {
            app: app.name.clone(),
            version: target.version,
            outcome,
            culprit: culprit.map(|a| a.id.clone()),
        })
    };
    let mine: Vec<&AllocationRecord> = all
        .iter()
        .filter(|a| a.release == target.version && a.desired == Desired::Run)
        .copied()
        .collect();

    // A crash before the release is up fails it at once: waiting would only show the same
    // crash again after a back-off, while the pusher waits. A check that stopped the instance
    // says why.
    for a in &mine {
        if let Some(obs) = w.observed.get(&a.id) {
            if obs.state == ObservedState::Crashed || obs.restarts > 0 {
                let why = match &obs.check {
                    Some(check) => format!("{} failed its {check}", a.instance_name()),
                    None => format!("{} crashed on start", a.instance_name()),
                };
                return verdict(Err(why), Some(a));
            }
        }
    }

    // No host can take one of its instances, and no room is coming: say so now.
    let stuck = w.pending.iter().find(|p| {
        let u = &p.unplaced;
        u.app == app.name
            && u.release == target.version
            && !u.waiting
            && p.since.plus(UNPLACEABLE_FOR) <= w.now
    });
    if let Some(p) = stuck {
        let u = &p.unplaced;
        let process = u.instance.split('.').next().unwrap_or(&u.instance);
        return verdict(
            Err(format!(
                "cannot place {}: {}; to make room, {}",
                u.instance,
                u.reason,
                super::place::hint(&app.name, process)
            )),
            None,
        );
    }

    let mut wanted = Vec::new();
    let mut missing: Vec<(String, Option<&AllocationRecord>)> = Vec::new();
    for (process, &n) in &app.formation {
        if n == 0 || !target.types.contains(process) {
            continue;
        }
        wanted.push(format!("{process}={n}"));
        for index in 1..=n {
            let of_index: Vec<&AllocationRecord> = mine
                .iter()
                .filter(|a| &a.process == process && a.index == index)
                .copied()
                .collect();
            if of_index.iter().any(|a| w.is_settled(a, min_up)) {
                continue;
            }
            // The one furthest along speaks for the index.
            let best = of_index
                .iter()
                .max_by_key(|a| w.observed.get(&a.id).map(|o| o.state == ObservedState::Up))
                .copied();
            missing.push((format!("{process}.{index}"), best));
        }
    }
    if missing.is_empty() {
        let what = if wanted.is_empty() {
            "nothing to run: every process type is scaled to 0".to_string()
        } else {
            wanted.join(" ")
        };
        return verdict(Ok(what), None);
    }

    // Instances placed later (a batch of a batched rollout) get the whole timeout too.
    let newest = mine
        .iter()
        .map(|a| a.created_at)
        .max()
        .unwrap_or(target.created_at);
    let deadline = target
        .created_at
        .max(newest)
        .max(w.started)
        .plus(w.settings.start_timeout);
    if w.now < deadline {
        return None;
    }
    let secs = w.settings.start_timeout.as_secs();
    let states: Vec<String> = missing
        .iter()
        .map(|(name, a)| match a.and_then(|a| w.observed.get(&a.id)) {
            None if a.is_some() => format!("{name} pending"),
            None => format!("{name} not placed"),
            Some(o) if o.state == ObservedState::Up => {
                format!("{name} not up for {} yet", format_duration(min_up))
            }
            Some(o) => format!("{name} {}", observed_name(o.state)),
        })
        .collect();
    let culprit = missing.iter().find_map(|(_, a)| *a);
    let last_check = missing.iter().find_map(|(name, a)| {
        let check = w.observed.get(&a.as_ref()?.id)?.check.as_ref()?;
        Some(format!("; {name}'s last check: {check}"))
    });
    verdict(
        Err(format!(
            "not up within {secs}s ({}){}",
            states.join(", "),
            last_check.unwrap_or_default()
        )),
        culprit,
    )
}

fn observed_name(s: ObservedState) -> &'static str {
    match s {
        ObservedState::Starting => "starting",
        ObservedState::Up => "up",
        ObservedState::Unhealthy => "unhealthy",
        ObservedState::Unready => "unready",
        ObservedState::Crashed => "crashed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::reconcile::testkit::*;
    use ObservedState::*;

    fn deploying(formation: &[(&str, u32)]) -> AppView {
        let mut a = app("a", Some(1), formation);
        a.deploying = Some(release_view(2, T0 - 1000));
        a
    }

    fn outcome(c: &Case) -> Option<Result<String, String>> {
        let verdicts = c.assess();
        assert!(verdicts.len() <= 1);
        verdicts.into_iter().next().map(|v| {
            assert_eq!((v.app.as_str(), v.version), ("a", 2));
            v.outcome
        })
    }

    #[test]
    fn a_release_whose_instance_no_host_can_take_fails_soon_unless_room_is_coming() {
        use crate::schedule::place::{Need, Pending, Unplaced};
        let pending = |release, waiting, for_ms: u64| Pending {
            unplaced: Unplaced {
                app: "a".into(),
                release,
                instance: "web.1".into(),
                need: Need::default(),
                reason: "no host can take it: 1 of 1 host short of memory".into(),
                waiting,
            },
            since: caas_api::Timestamp(T0 - for_ms),
        };
        let case = |p: Pending| {
            let mut c = Case::new(vec![deploying(&[("web", 1)])], vec![]);
            c.pending = vec![p];
            c
        };
        let failed = outcome(&case(pending(2, false, 2000)))
            .unwrap()
            .unwrap_err();
        assert!(
            failed.starts_with(
                "cannot place web.1: no host can take it: 1 of 1 host short of memory; to make room, free capacity"
            ),
            "{failed}"
        );
        assert!(
            failed.contains("caas ps:resize web --reserve 64M -a a"),
            "{failed}"
        );
        assert_eq!(outcome(&case(pending(2, false, 500))), None, "just now");
        assert_eq!(
            outcome(&case(pending(2, true, 9000))),
            None,
            "room is coming"
        );
        assert_eq!(
            outcome(&case(pending(1, false, 9000))),
            None,
            "the serving release's"
        );
    }

    #[test]
    fn an_app_with_nothing_deploying_has_no_verdict() {
        let c = Case::new(vec![app("a", Some(1), &[("web", 1)])], vec![]);
        assert!(c.assess().is_empty());
    }

    #[test]
    fn a_release_is_up_when_every_wanted_instance_is() {
        let allocs = vec![
            alloc("w1", "a", 2, "web", 1, "h1"),
            alloc("w2", "a", 2, "web", 2, "h1"),
            alloc("k1", "a", 2, "worker", 1, "h1"),
        ];
        let formation = [("web", 2), ("worker", 1)];
        let c = Case::new(vec![deploying(&formation)], allocs.clone())
            .up("w1", 1)
            .state("w2", Starting)
            .up("k1", 3);
        assert_eq!(outcome(&c), None, "web.2 is still starting");

        let c = Case::new(vec![deploying(&formation)], allocs)
            .up("w1", 1)
            .up("w2", 2)
            .up("k1", 3);
        assert_eq!(outcome(&c), Some(Ok("web=2 worker=1".into())));
    }

    #[test]
    fn nothing_to_run_is_up_at_once() {
        let c = Case::new(vec![deploying(&[("web", 0)])], vec![]);
        assert!(outcome(&c).unwrap().unwrap().contains("scaled to 0"));
    }

    #[test]
    fn a_crash_or_a_restart_fails_the_release_at_once() {
        let allocs = vec![
            alloc("w1", "a", 2, "web", 1, "h1"),
            alloc("k1", "a", 2, "worker", 1, "h1"),
        ];
        let formation = [("web", 1), ("worker", 1)];
        let c = Case::new(vec![deploying(&formation)], allocs.clone())
            .state("w1", Crashed)
            .up("k1", 3);
        assert_eq!(outcome(&c), Some(Err("web.1 crashed on start".into())));

        let mut c = Case::new(vec![deploying(&formation)], allocs)
            .state("w1", Starting)
            .up("k1", 3);
        c.observed.get_mut("w1").unwrap().restarts = 1;
        assert_eq!(outcome(&c), Some(Err("web.1 crashed on start".into())));
    }

    #[test]
    fn instances_of_other_releases_do_not_count() {
        // v1's web.1 is up and v1's worker crashed: neither says anything about v2.
        let c = Case::new(
            vec![deploying(&[("web", 1)])],
            vec![
                alloc("old", "a", 1, "web", 1, "h1"),
                alloc("oldk", "a", 1, "worker", 1, "h1"),
            ],
        )
        .up("old", 1)
        .state("oldk", Crashed);
        assert_eq!(outcome(&c), None);
    }

    #[test]
    fn the_start_deadline_fails_a_release_that_is_not_up_and_says_why() {
        let mut c = Case::new(
            vec![deploying(&[("web", 3)])],
            vec![
                alloc("w1", "a", 2, "web", 1, "h1"),
                alloc("w2", "a", 2, "web", 2, "h1"),
            ],
        )
        .state("w1", Starting);
        // Created at T0 - 1000 with a 60 s timeout: due at T0 + 59_000.
        c.now = T0 + 58_999;
        assert_eq!(outcome(&c), None);
        c.now = T0 + 59_000;
        assert_eq!(
            outcome(&c),
            Some(Err(
                "not up within 60s (web.1 starting, web.2 pending, web.3 not placed)".into()
            ))
        );
    }

    #[test]
    fn a_control_plane_restart_gives_a_rollout_its_full_start_timeout_again() {
        let mut c = Case::new(
            vec![deploying(&[("web", 1)])],
            vec![alloc("w1", "a", 2, "web", 1, "h1")],
        );
        c.now = T0 + 600_000;
        c.started = T0 + 590_000;
        assert_eq!(outcome(&c), None, "no heartbeat yet since the restart");
        c.started = T0 + 500_000;
        assert!(outcome(&c).unwrap().is_err());
    }

    #[test]
    fn draining_instances_of_the_release_do_not_count_as_up() {
        let mut w1 = alloc("w1", "a", 2, "web", 1, "h1");
        w1.desired = Desired::Drain {
            until: caas_api::Timestamp(T0 + 1),
        };
        let c = Case::new(vec![deploying(&[("web", 1)])], vec![w1]).up("w1", 1);
        assert_eq!(outcome(&c), None);
    }

    #[test]
    fn an_instance_counts_once_it_stayed_up_for_min_up() {
        let mut c = Case::new(
            vec![deploying(&[("web", 1)])],
            vec![alloc("w1", "a", 2, "web", 1, "h1")],
        )
        .up("w1", 1);
        c.settings.defaults.min_up_ms = Some(2_000);
        c.observed.get_mut("w1").unwrap().since = caas_api::Timestamp(T0 - 1_999);
        assert_eq!(outcome(&c), None, "up, not for 2 s yet");
        c.observed.get_mut("w1").unwrap().since = caas_api::Timestamp(T0 - 2_000);
        assert_eq!(outcome(&c), Some(Ok("web=1".into())));
        // An app's own min-up.
        c.apps[0].settings.min_up_ms = Some(5_000);
        assert_eq!(outcome(&c), None);
    }

    #[test]
    fn a_check_that_stopped_an_instance_is_the_reason_and_its_output_is_kept() {
        let mut c = Case::new(
            vec![deploying(&[("web", 2)])],
            vec![
                alloc("w1", "a", 2, "web", 1, "h1"),
                alloc("w2", "a", 2, "web", 2, "h1"),
            ],
        )
        .up("w1", 1)
        .state("w2", Crashed);
        c.observed.get_mut("w2").unwrap().check =
            Some("startup check GET /health: answered 500 (5 of 5)".into());
        let v = c.assess().remove(0);
        assert_eq!(
            v.outcome,
            Err("web.2 failed its startup check GET /health: answered 500 (5 of 5)".into())
        );
        assert_eq!(v.culprit.as_deref(), Some("w2"));
    }

    #[test]
    fn the_deadline_says_the_last_check_and_a_later_batch_gets_its_own() {
        let mut late = alloc("w2", "a", 2, "web", 2, "h1");
        late.created_at = caas_api::Timestamp(T0 + 30_000);
        let mut c = Case::new(
            vec![deploying(&[("web", 2)])],
            vec![alloc("w1", "a", 2, "web", 1, "h1"), late],
        )
        .state("w1", Starting)
        .state("w2", Starting);
        c.observed.get_mut("w1").unwrap().check =
            Some("startup check GET /health: connection refused (not listening yet)".into());
        c.now = T0 + 60_000;
        assert_eq!(outcome(&c), None, "web.2 was placed 30 s after the release");
        c.now = T0 + 90_000;
        let v = c.assess().remove(0);
        assert_eq!(
            v.outcome,
            Err("not up within 60s (web.1 starting, web.2 starting); web.1's last check: startup check GET /health: connection refused (not listening yet)".into())
        );
        assert_eq!(v.culprit.as_deref(), Some("w1"));
    }
}
