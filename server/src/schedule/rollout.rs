//! `assess(world) -> verdicts`: whether each deploying release is up, failed, or still on its
//! way. Pure, like [`super::reconcile`]: the scheduler writes the verdicts to the store
//! (`Store::finish_rollout`), and the CLI and the git endpoint read them from there. Nothing else
//! decides whether a release is up.
//!
//! A deploying release is
//! - **up** when every process type the formation asks for has that many instances of it up;
//!   with nothing asked for (`web=0`), it is up at once;
//! - **failed** when one of its instances crashed (exited, or restarted) before that, or when
//!   it is not up by its start deadline: the release's creation plus `start_timeout`, and never
//!   sooner than `start_timeout` after this control plane started, so a restart of caasd does
//!   not fail a rollout for want of the heartbeats that were about to come;
//! - otherwise still deploying.
//!
//! A failed release never served: the release before it keeps serving, every process type of
//! it (see rule 3 of `reconcile`).

use super::reconcile::{AppView, World};
use crate::store::Desired;
use caas_api::agent::ObservedState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub app: String,
    pub version: u64,
    /// `Ok(what runs)`, e.g. `web=2 worker=1`; `Err(why)` in one line.
    pub outcome: Result<String, String>,
}

pub fn assess(w: &World<'_>) -> Vec<Verdict> {
    w.apps.iter().filter_map(|app| assess_app(w, app)).collect()
}

fn assess_app(w: &World<'_>, app: &AppView) -> Option<Verdict> {
    let target = app.deploying.as_ref()?;
    let verdict = |outcome| {
        Some(Verdict {
            app: app.name.clone(),
            version: target.version,
            outcome,
        })
    };
    let mine: Vec<_> = w
        .allocations
        .iter()
        .filter(|a| a.app == app.name && a.release == target.version && a.desired == Desired::Run)
        .collect();

    // A crash before the release is up fails it at once: waiting would only show the same
    // crash again after a back-off, while the pusher waits.
    for a in &mine {
        if let Some(obs) = w.observed.get(&a.id) {
            if obs.state == ObservedState::Crashed || obs.restarts > 0 {
                return verdict(Err(format!("{} crashed on start", a.instance_name())));
            }
        }
    }

    let mut wanted = Vec::new();
    let mut missing = Vec::new();
    for (process, &n) in &app.formation {
        if n == 0 || !target.types.contains(process) {
            continue;
        }
        wanted.push(format!("{process}={n}"));
        for index in 1..=n {
            let instance = format!("{process}.{index}");
            let state = mine
                .iter()
                .filter(|a| &a.process == process && a.index == index)
                .filter_map(|a| w.observed.get(&a.id))
                .map(|o| o.state)
                .max_by_key(|s| *s == ObservedState::Up);
            if state != Some(ObservedState::Up) {
                missing.push((instance, state));
            }
        }
    }
    if missing.is_empty() {
        let what = if wanted.is_empty() {
            "nothing to run: every process type is scaled to 0".to_string()
        } else {
            wanted.join(" ")
        };
        return verdict(Ok(what));
    }

    let deadline = target
        .created_at
        .max(w.started)
        .plus(w.settings.start_timeout);
    if w.now < deadline {
        return None;
    }
    let secs = w.settings.start_timeout.as_secs();
    let states: Vec<String> = missing
        .iter()
        .map(|(name, state)| match state {
            None if mine.iter().any(|a| a.instance_name() == *name) => format!("{name} pending"),
            None => format!("{name} not placed"),
            Some(s) => format!("{name} {}", observed_name(*s)),
        })
        .collect();
    verdict(Err(format!(
        "not up within {secs}s ({})",
        states.join(", ")
    )))
}

fn observed_name(s: ObservedState) -> &'static str {
    match s {
        ObservedState::Starting => "starting",
        ObservedState::Up => "up",
        ObservedState::Unhealthy => "unhealthy",
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
}
