//! The app's checks (startup, readiness, liveness) as the lifecycle runs them.

use super::tests::*;
use super::*;
use caas_api::agent::HealthCheck;
use caas_api::checks::{Check, CheckKind};

#[test]
fn checks_come_from_the_release_and_default_per_kind() {
    let plain = web();
    assert_eq!(
        plain.checks.startup.probe,
        Probe::Connect {
            timeout: Duration::from_secs(2)
        }
    );
    assert!(!plain.checks.startup_gives_up && !plain.checks.startup.configured);
    assert_eq!(plain.checks.readiness, None);
    assert_eq!(plain.checks.liveness, plain.checks.startup);
    assert_eq!(
        (plain.checks.replace_after, plain.checks.stop_grace),
        (Duration::from_secs(30), STOP_GRACE)
    );

    // Without a startup check, the readiness check's first pass is the start.
    let ready = Check::new("web", CheckKind::Readiness, "/ready");
    let i = web_with(std::slice::from_ref(&ready));
    assert_eq!(i.checks.startup.what, "readiness check GET /ready");
    assert!(!i.checks.startup_gives_up, "it waits, as the default does");

    let mut live = Check::new("web", CheckKind::Liveness, "/live");
    live.strategy = Some(Strategy::None);
    live.interval_ms = 5_000;
    let mut a = assignment(HealthCheck::Tcp);
    a.checks = vec![
        Check::new("web", CheckKind::Startup, "/up"),
        ready,
        live,
        Check::new("worker", CheckKind::Startup, "/not-mine"),
    ];
    a.stop_timeout_ms = Some(30_000);
    let c = Checks::of(&a);
    assert_eq!(c.startup.what, "startup check GET /up");
    assert!(c.startup_gives_up);
    assert_eq!(c.readiness.unwrap().what, "readiness check GET /ready");
    assert_eq!(c.liveness.what, "liveness check GET /live");
    assert_eq!(c.liveness.interval, Duration::from_secs(5));
    assert_eq!(c.strategy, Strategy::None);
    assert_eq!(c.replace_after, Duration::ZERO);
    assert_eq!(c.stop_grace, Duration::from_secs(30));
}

/// `on_probe` for `which`, shown.
fn saw(i: &mut Instance, which: Which, seen: Seen, ms: u64) -> String {
    show(&on_probe(i, which, &seen, at(ms)))
}

#[test]
fn a_startup_check_counts_answers_only_and_gives_up_after_its_attempts() {
    let mut s = Check::new("web", CheckKind::Startup, "/health");
    s.attempts = 3;
    let mut i = web_with(&[s.clone()]);
    on_created(&mut i, "c1", Some(30001), T0);
    let st = Which::Startup;
    // Nothing listens yet: booting, not failing.
    assert_eq!(saw(&mut i, st, Seen::refused(), 1_000), "-");
    assert_eq!(
        container(&i).check.as_deref(),
        Some("startup check GET /health: connection refused (not listening yet)")
    );
    assert_eq!(saw(&mut i, st, Seen::fail("answered 500"), 2_000), "-");
    assert_eq!(
        container(&i).check.as_deref(),
        Some("startup check GET /health: answered 500 (1 of 3)")
    );
    assert_eq!(saw(&mut i, st, Seen::fail("answered 500"), 4_000), "-");
    assert_eq!(
            saw(&mut i, st, Seen::fail("answered 500"), 6_000),
            "stop c1, say health: web.1 failed its startup check GET /health 3 times (answered 500); restarting it"
        );
    assert_eq!(container(&i).state, Starting);
    assert_eq!(container(&i).stopping, Some(at(6_000)));

    // Passing it is a line of its own, and clears what the failures said.
    let mut i = web_with(&[s]);
    on_created(&mut i, "c1", Some(30001), T0);
    saw(&mut i, st, Seen::fail("no answer within 2s"), 1_000);
    assert_eq!(
        saw(&mut i, st, Seen::pass("answered 200"), 3_000),
        "say health: web.1 passed its startup check GET /health (answered 200); up"
    );
    let c = container(&i);
    assert_eq!(
        (c.state, c.since, c.check.as_deref()),
        (Up, at(3_000), None)
    );
    // A late result of the startup check changes nothing once it is up.
    assert_eq!(saw(&mut i, st, Seen::fail("answered 500"), 4_000), "-");
    assert_eq!(container(&i).state, Up);
}

#[test]
fn a_startup_check_that_never_passes_stops_at_the_start_timeout() {
    let mut i = web_with(&[Check::new("web", CheckKind::Startup, "/health")]);
    on_created(&mut i, "c1", Some(30001), T0);
    assert_eq!(saw(&mut i, Which::Startup, Seen::refused(), 119_999), "-");
    assert_eq!(
            saw(&mut i, Which::Startup, Seen::refused(), 120_000),
            "stop c1, say health: web.1 did not pass its startup check GET /health within 120s (connection refused); restarting it"
        );
}

#[test]
fn readiness_takes_an_instance_out_of_the_routes_and_back() {
    let mut r = Check::new("web", CheckKind::Readiness, "/ready");
    r.attempts = 2;
    let mut i = web_with(&[r]);
    on_created(&mut i, "c1", Some(30001), T0);
    // The gate is the readiness check: its first pass.
    assert_eq!(
        saw(&mut i, Which::Startup, Seen::pass("answered 200"), 1_000),
        "say health: web.1 passed its readiness check GET /ready (answered 200); up"
    );
    let rd = Which::Readiness;
    assert_eq!(saw(&mut i, rd, Seen::fail("answered 503"), 2_000), "-");
    assert_eq!(container(&i).state, Up);
    assert_eq!(
            saw(&mut i, rd, Seen::fail("answered 503"), 4_000),
            "say health: web.1 failed its readiness check GET /ready 2 times in a row (answered 503); out of the routes until it passes"
        );
    assert_eq!(
        (container(&i).state, container(&i).since),
        (Unready, at(4_000))
    );
    assert_eq!(saw(&mut i, rd, Seen::fail("answered 503"), 6_000), "-");
    // Alive all along: the default liveness probe passing changes nothing.
    assert_eq!(
        saw(&mut i, Which::Liveness, Seen::pass("connected"), 6_500),
        "-"
    );
    assert_eq!(container(&i).state, Unready);
    assert_eq!(
        container(&i).check.as_deref(),
        Some("readiness check GET /ready: answered 503 (3 in a row)")
    );
    assert_eq!(
            saw(&mut i, rd, Seen::pass("answered 200"), 8_000),
            "say health: web.1 passed its readiness check GET /ready (answered 200); back in the routes"
        );
    let c = container(&i);
    assert_eq!(
        (c.state, c.since, c.check.as_deref()),
        (Up, at(8_000), None)
    );
}

#[test]
fn a_failing_liveness_check_gets_what_its_strategy_says() {
    let failed = "web.1 failed its liveness check GET /live 2 times in a row (answered 500)";
    // (strategy, what the second failure does)
    let table = [
            (None, format!("stop c1, say health: {failed}; restarting it")),
            (
                Some(Strategy::Recreate),
                format!("stop c1, say health: {failed}; restarting it"),
            ),
            (
                Some(Strategy::None),
                format!("say health: {failed}; out of the routes, left running (strategy none)"),
            ),
            (
                Some(Strategy::Keep(2)),
                format!("say health: {failed}; out of the routes, replaced while 2 other instances are up (strategy keep=2)"),
            ),
        ];
    let lv = Which::Liveness;
    for (strategy, want) in table {
        let mut l = Check::new("web", CheckKind::Liveness, "/live");
        l.attempts = 2;
        l.strategy = strategy;
        let mut i = web_with(&[l]);
        on_created(&mut i, "c1", Some(30001), T0);
        saw(&mut i, Which::Startup, Seen::pass("connected"), 1_000);
        assert_eq!(saw(&mut i, lv, Seen::fail("answered 500"), 2_000), "-");
        assert_eq!(saw(&mut i, lv, Seen::fail("answered 500"), 4_000), want);
        assert_eq!(container(&i).state, Unhealthy, "{strategy:?}");
        if strategy.is_some_and(|s| s != Strategy::Recreate) {
            // Reported, never stopped by the agent, however long it fails.
            assert_eq!(saw(&mut i, lv, Seen::fail("answered 500"), 600_000), "-");
            assert_eq!(
                    saw(&mut i, lv, Seen::pass("answered 200"), 602_000),
                    "say health: web.1 passed its liveness check GET /live (answered 200); healthy again"
                );
            assert_eq!(container(&i).state, Up);
        }
    }
}

#[test]
fn each_check_keeps_its_own_time() {
    let mut s = Check::new("web", CheckKind::Startup, "/up");
    s.wait_ms = 3_000;
    let mut r = Check::new("web", CheckKind::Readiness, "/ready");
    r.interval_ms = 5_000;
    let mut i = web_with(&[s, r]);
    on_created(&mut i, "c1", Some(30001), T0);
    let kinds = |i: &mut Instance, ms: u64| -> Vec<Which> {
        due(i, at(ms)).into_iter().map(|(w, _)| w).collect()
    };
    assert_eq!(kinds(&mut i, 0), [], "its initial wait");
    assert_eq!(kinds(&mut i, 3_000), [Which::Startup]);
    assert_eq!(kinds(&mut i, 4_000), [], "every 2 s");
    assert_eq!(kinds(&mut i, 5_000), [Which::Startup]);
    saw(&mut i, Which::Startup, Seen::pass("answered 200"), 5_000);
    assert_eq!(kinds(&mut i, 5_000), [Which::Readiness, Which::Liveness]);
    assert_eq!(
        kinds(&mut i, 6_000),
        [Which::Liveness],
        "the default: every 1 s"
    );
    assert_eq!(kinds(&mut i, 10_000), [Which::Readiness, Which::Liveness]);
    // Unhealthy: only liveness runs.
    container_mut(&mut i).state = Unhealthy;
    assert_eq!(kinds(&mut i, 20_000), [Which::Liveness]);
}
