use super::*;
use caas_api::agent::HealthCheck;
use caas_api::checks::Check;

pub(super) const T0: Timestamp = Timestamp(1_700_000_000_000);

/// `T0` plus `ms` milliseconds.
pub(super) fn at(ms: u64) -> Timestamp {
    T0.plus(Duration::from_millis(ms))
}

pub(super) fn assignment(health: HealthCheck) -> Assignment {
    Assignment {
        id: "a1".into(),
        app: "a".into(),
        release: 1,
        process: "web".into(),
        index: 1,
        image: "sha256:x".into(),
        command: None,
        env: Default::default(),
        container_port: Some(5000),
        memory_mb: 512,
        cpu_shares: 1024,
        pids_limit: 512,
        cpus: None,
        health,
        checks: Vec::new(),
        stop_timeout_ms: None,
        networks: Vec::new(),
    }
}

/// `web.1` with the app's `checks`.
pub(super) fn web_with(checks: &[Check]) -> Instance {
    let mut a = assignment(HealthCheck::Tcp);
    a.checks = checks.to_vec();
    Instance::new(&a)
}

/// The probe of the check the state runs (startup while starting, liveness after) passed
/// or failed, as the default TCP probe sees it.
pub(super) fn probe(i: &mut Instance, ok: bool, now: Timestamp) -> Option<Effect> {
    let which = match container(i).state {
        Starting | Crashed => Which::Startup,
        _ => Which::Liveness,
    };
    let seen = if ok {
        Seen::pass("connected")
    } else {
        Seen::refused()
    };
    on_probe(i, which, &seen, now)
}

/// `web.1`, checked by TCP connect, with nothing known yet.
pub(super) fn web() -> Instance {
    Instance::new(&assignment(HealthCheck::Tcp))
}

/// `web.1` whose container `c1` is in `state` since `since`, `failed` probes in a row.
pub(super) fn web_in(state: ObservedState, since: Timestamp, failed: u32) -> Instance {
    let mut i = web();
    on_created(&mut i, "c1", Some(30001), since);
    let c = i.container.as_mut().unwrap();
    c.state = state;
    c.failures[Which::Liveness.at()] = failed;
    i
}

pub(super) fn container(i: &Instance) -> &Container {
    i.container.as_ref().expect("a container")
}

pub(super) fn container_mut(i: &mut Instance) -> &mut Container {
    i.container.as_mut().expect("a container")
}

pub(super) fn exit(status: i64, finished_at: Timestamp) -> Exit {
    Exit {
        container_id: "c1".into(),
        port: Some(30001),
        status,
        oom_killed: false,
        finished_at: Some(finished_at),
    }
}

/// An effect the way a table reads it.
pub(super) fn show(e: &Option<Effect>) -> String {
    match e {
        None => "-".into(),
        Some(Effect::Say(e)) => format!("say {}: {}", e.tag, e.text),
        Some(Effect::Stop {
            container_id, say, ..
        }) => {
            format!("stop {container_id}, say {}: {}", say.tag, say.text)
        }
        Some(Effect::Restart { after, say }) => {
            format!(
                "restart in {}s, say {}: {}",
                after.as_secs(),
                say.tag,
                say.text
            )
        }
    }
}

#[test]
fn every_probe_transition() {
    /// A container's state, its failed probes in a row, and since when (ms after `T0`).
    type Where = (ObservedState, u32, u64);
    // (before, probe passed, now) → (after, effect)
    #[rustfmt::skip]
        let table: &[(Where, bool, u64, Where, &str)] = &[
            ((Starting, 0, 0), true, 5_000, (Up, 0, 5_000), "-"),
            ((Starting, 0, 0), false, 5_000, (Starting, 0, 0), "-"),
            ((Starting, 0, 0), false, 119_999, (Starting, 0, 0), "-"),
            ((Starting, 0, 0), false, 120_000, (Starting, 0, 0),
                "stop c1, say health: web.1 did not listen on $PORT within 120s; restarting it"),
            ((Up, 2, 0), true, 5_000, (Up, 0, 0), "-"),
            ((Up, 0, 0), false, 5_000, (Up, 1, 0), "-"),
            ((Up, 1, 0), false, 5_000, (Up, 2, 0), "-"),
            ((Up, 2, 0), false, 5_000, (Unhealthy, 3, 5_000),
                "say health: web.1 failed 3 health checks in a row"),
            ((Unhealthy, 3, 0), true, 5_000, (Up, 0, 5_000), "say health: web.1 is healthy again"),
            ((Unhealthy, 3, 0), false, 29_999, (Unhealthy, 4, 0), "-"),
            ((Unhealthy, 3, 0), false, 30_000, (Unhealthy, 4, 0),
                "stop c1, say health: web.1 stayed unhealthy for 30s; restarting it"),
        ];
    for &((state, failed, since), ok, now, (want_state, want_failed, want_since), want) in table {
        let mut i = web_in(state, at(since), failed);
        let effect = probe(&mut i, ok, at(now));
        let c = container(&i);
        let row = format!("{state:?}/{failed} since {since}, ok={ok} at {now}");
        assert_eq!(show(&effect), want, "{row}");
        assert_eq!(
            (c.state, c.failures[Which::Liveness.at()], c.since),
            (want_state, want_failed, at(want_since)),
            "{row}"
        );
    }
}

#[test]
fn a_stopping_container_is_not_probed_until_its_stop_had_time_to_end() {
    let mut i = web_in(Starting, T0, 0);
    assert!(matches!(
        probe(&mut i, false, at(120_000)),
        Some(Effect::Stop { .. })
    ));
    // Grace 10 s, and 5 s more: nothing is asked of it meanwhile.
    assert_eq!(due(&mut i, at(121_000)), []);
    assert_eq!(due(&mut i, at(134_999)), []);
    // Still running after that: the checks go on and ask for the stop again.
    assert_eq!(due(&mut i, at(135_000)).len(), 1);
    assert!(matches!(
        probe(&mut i, false, at(135_000)),
        Some(Effect::Stop { .. })
    ));
    assert!(on_exit(&mut i, &exit(143, at(136_000)), at(136_000)).is_some());
    let c = container(&i);
    assert_eq!((c.state, c.stopping), (Crashed, None));
}

#[test]
fn a_container_seen_running_after_a_crash_is_starting_from_then() {
    let mut i = web_in(Crashed, T0, 0);
    assert_eq!(due(&mut i, at(5_000)).len(), 1);
    let c = container(&i);
    assert_eq!((c.state, c.since), (Starting, at(5_000)));
    assert_eq!(show(&probe(&mut i, true, at(6_000))), "-");
    assert_eq!(container(&i).state, Up);
}

#[test]
fn failed_probes_count_in_a_row_only() {
    let mut i = web_in(Up, T0, 0);
    let said: Vec<String> = [false, false, true, false, false, false, false]
        .iter()
        .enumerate()
        .map(|(n, &ok)| show(&probe(&mut i, ok, at(n as u64 * 1000))))
        .collect();
    assert_eq!(
        said,
        [
            "-",
            "-",
            "-",
            "-",
            "-",
            "say health: web.1 failed 3 health checks in a row",
            "-"
        ]
    );
    assert_eq!(container(&i).since, at(5_000), "unhealthy since the third");
}

#[test]
fn limits_are_the_records_not_the_transitions() {
    let mut i = web_in(Starting, T0, 0);
    i.checks.start_timeout = Duration::from_secs(5);
    i.checks.liveness.attempts = 1;
    i.checks.replace_after = Duration::from_secs(2);
    assert_eq!(
        show(&probe(&mut i, false, at(5_000))),
        "stop c1, say health: web.1 did not listen on $PORT within 5s; restarting it"
    );
    container_mut(&mut i).stopping = None;
    assert_eq!(show(&probe(&mut i, true, at(6_000))), "-");
    assert_eq!(
        show(&probe(&mut i, false, at(7_000))),
        "say health: web.1 failed 1 health checks in a row"
    );
    assert_eq!(show(&probe(&mut i, false, at(8_999))), "-");
    assert_eq!(
        show(&probe(&mut i, false, at(9_000))),
        "stop c1, say health: web.1 stayed unhealthy for 2s; restarting it"
    );
}

#[test]
fn the_probe_follows_the_assigned_health_check() {
    let mut worker = Instance::new(&assignment(HealthCheck::Running));
    assert_eq!(
        due(&mut worker, T0),
        [],
        "no container yet: nothing to probe"
    );
    on_created(&mut worker, "c1", None, T0);
    assert_eq!(due(&mut worker, T0), [(Which::Startup, Probe::Running)]);
    let seen = Seen::pass("running");
    assert_eq!(
        show(&on_probe(&mut worker, Which::Startup, &seen, at(1_000))),
        "-"
    );
    assert_eq!(container(&worker).state, Up);

    let mut web = web();
    on_created(&mut web, "c1", Some(30001), T0);
    assert_eq!(
        due(&mut web, T0),
        [(
            Which::Startup,
            Probe::Connect {
                timeout: Duration::from_secs(2)
            }
        )]
    );
}

#[test]
fn backoff_doubles_up_to_a_minute() {
    let secs: Vec<u64> = (1..=9).map(|n| backoff_delay(n).as_secs()).collect();
    assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
}

/// Runs `web.1` from `start` for `ran` ms, then it exits: the delay before its next start.
fn crash_after(i: &mut Instance, start: Timestamp, ran: u64) -> (u64, Timestamp) {
    let end = start.plus(Duration::from_millis(ran));
    let effect = on_exit(i, &exit(1, end), end);
    let Some(Effect::Restart { after, .. }) = effect else {
        panic!("an exit restarts: {effect:?}");
    };
    let next = i.backoff.unwrap().next_at;
    assert_eq!(next, end.plus(after));
    on_restarted(i, "c1", next);
    (after.as_secs(), next)
}

#[test]
fn quick_crashes_back_off_longer_and_a_stable_run_starts_over() {
    let mut i = web();
    on_created(&mut i, "c1", Some(30001), T0);
    let mut t = T0;
    let mut delays = Vec::new();
    for _ in 0..8 {
        let (delay, next) = crash_after(&mut i, t, 1_000);
        delays.push(delay);
        t = next;
    }
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
    assert_eq!(i.restarts, 8);

    // Just short of a stable run: still a crash loop.
    let (delay, t) = crash_after(&mut i, t, STABLE_AFTER.as_millis() as u64 - 1);
    assert_eq!(delay, 60);
    // A stable run: the next crash is the first again.
    let (delay, t) = crash_after(&mut i, t, STABLE_AFTER.as_millis() as u64);
    assert_eq!(delay, 1);
    let (delay, _) = crash_after(&mut i, t, 1_000);
    assert_eq!(delay, 2);
    assert_eq!(i.backoff.unwrap().failures, 2);
}

#[test]
fn an_exit_counts_once() {
    let mut i = web_in(Up, T0, 0);
    let first = on_exit(&mut i, &exit(137, at(10_000)), at(10_100));
    assert_eq!(
        show(&first),
        "restart in 1s, say crash: web.1 crashed: exited with status 137; restarting in 1s"
    );
    let before = i.clone();
    // Listed again, stopped, on the next passes: the same exit.
    assert_eq!(on_exit(&mut i, &exit(137, at(10_000)), at(11_100)), None);
    assert_eq!(on_exit(&mut i, &exit(137, at(10_000)), at(12_100)), None);
    assert_eq!(i, before);
}

#[test]
fn a_container_that_never_ran_is_started_once_and_is_no_crash() {
    let never_ran = Exit {
        finished_at: None,
        ..exit(0, T0)
    };
    let mut i = web();
    let said = show(&on_exit(&mut i, &never_ran, at(1_000)));
    assert!(
        said.contains("web.1's container was made but not started; starting it"),
        "{said}"
    );
    let c = i.container.as_ref().unwrap();
    assert_eq!(
        c.state, Starting,
        "not a crash: a rollout waiting for it goes on waiting"
    );
    let due = i.backoff.unwrap().next_at;
    assert_eq!(due, at(1_000), "started at once");
    // Listed again, still never run: nothing new, and its start stays due.
    assert_eq!(on_exit(&mut i, &never_ran, at(2_000)), None);
    assert_eq!(i.backoff.unwrap().next_at, due);
    // Its start is its first, not a restart.
    let said = show(&Some(on_restarted(&mut i, "c1", at(2_000))));
    assert!(said.contains("Started web.1"), "{said}");
    assert_eq!(i.restarts, 0);
    // Once it ran, a stop without a finish time is an exit again.
    let said = show(&on_exit(&mut i, &never_ran, at(3_000)));
    assert!(
        said.contains("web.1 crashed: exited with status 0; restarting in 1s"),
        "{said}"
    );
}

#[test]
fn what_an_exit_says() {
    let oom = Exit {
        oom_killed: true,
        ..exit(137, at(10_000))
    };
    // (known before it exited, exit) → effect
    let table = [
            (true, exit(3, at(10_000)),
                "restart in 1s, say crash: web.1 crashed: exited with status 3; restarting in 1s"),
            (true, oom.clone(),
                "restart in 1s, say crash: web.1 crashed: was killed for using more than 512 MB of memory; restarting in 1s"),
            (false, exit(0, at(10_000)),
                "restart in 1s, say crash: web.1 found stopped: it exited with status 0; restarting in 1s"),
            (false, oom,
                "restart in 1s, say crash: web.1 found stopped: it was killed for using more than 512 MB of memory; restarting in 1s"),
        ];
    for (known, e, want) in table {
        let mut i = if known { web_in(Up, T0, 0) } else { web() };
        assert_eq!(show(&on_exit(&mut i, &e, at(10_000))), want);
        let c = container(&i);
        assert_eq!(
            (c.state, c.since, c.port),
            (Crashed, at(10_000), Some(30001))
        );
    }
}

#[test]
fn an_exit_noticed_late_still_waits_its_delay() {
    let mut i = web_in(Up, T0, 0);
    on_exit(&mut i, &exit(1, at(1_000)), at(9_000));
    assert_eq!(
        i.backoff.unwrap().next_at,
        at(10_000),
        "from now, not from the exit"
    );
    assert_eq!(container(&i).since, at(1_000), "crashed since it exited");
}

#[test]
fn failed_creates_back_off_and_a_later_container_keeps_the_count() {
    let mut i = web();
    let said: Vec<String> = [0, 1_000, 3_000]
        .into_iter()
        .map(|t| {
            show(&Some(on_create_failed(
                &mut i,
                "no free port in this host's range",
                at(t),
            )))
        })
        .collect();
    assert_eq!(
            said,
            [
                "restart in 1s, say crash: cannot start web.1: no free port in this host's range; retrying in 1s",
                "restart in 2s, say crash: cannot start web.1: no free port in this host's range; retrying in 2s",
                "restart in 4s, say crash: cannot start web.1: no free port in this host's range; retrying in 4s",
            ]
        );
    assert_eq!(i.container, None);
    assert_eq!(
        i.backoff,
        Some(Backoff {
            failures: 3,
            next_at: at(7_000)
        })
    );
    on_created(&mut i, "c1", Some(30001), at(7_000));
    assert_eq!(
        i.backoff.unwrap().failures,
        3,
        "a start is no proof of health"
    );
    let c = container(&i);
    assert_eq!(
        (c.state, c.since, c.running_since),
        (Starting, at(7_000), Some(at(7_000)))
    );
}

#[test]
fn a_restart_counts_and_starts_checking_afresh() {
    let mut i = web_in(Unhealthy, T0, 3);
    on_exit(&mut i, &exit(1, at(1_000)), at(1_000));
    let said = on_restarted(&mut i, "c1", at(2_000));
    assert_eq!(
        show(&Some(said)),
        "say restart: Restarted web.1 (restart 1)"
    );
    let c = container(&i);
    assert_eq!(
        (c.state, c.since, c.failures, c.running_since),
        (Starting, at(2_000), [0; 3], Some(at(2_000)))
    );
    assert_eq!(c.last_exit, Some(at(1_000)), "its exit stays counted");
    assert_eq!(on_exit(&mut i, &exit(1, at(1_000)), at(2_500)), None);
}

#[test]
fn an_adopted_container_keeps_its_age() {
    let started = at(0);
    let now = at(3_600_000);
    let mut i = web();
    adopt(&mut i, "c1", true, Some(started), Some(30001), now);
    let c = container(&i);
    assert_eq!(
        (c.state, c.since, c.running_since),
        (Starting, started, Some(started))
    );
    probe(&mut i, true, now.plus(Duration::from_secs(1)));
    assert_eq!((container(&i).state, container(&i).since), (Up, started));
    assert_eq!(i.restarts, 0);

    // Its age counts once: up again after being unhealthy is up from then.
    for n in 2..=4 {
        probe(&mut i, false, now.plus(Duration::from_secs(n)));
    }
    probe(&mut i, true, now.plus(Duration::from_secs(5)));
    assert_eq!(container(&i).since, now.plus(Duration::from_secs(5)));
}

#[test]
fn an_adopted_running_container_is_unchecked_until_its_first_probe() {
    let now = at(3_600_000);
    let mut i = web();
    adopt(&mut i, "c1", true, Some(at(0)), Some(30001), now);
    assert!(container(&i).unchecked());
    probe(&mut i, true, now.plus(Duration::from_secs(1)));
    assert!(!container(&i).unchecked());
    assert_eq!(container(&i).state, Up);

    // A first probe that fails ends it too: it is starting, out of the routes.
    let mut i = web();
    adopt(&mut i, "c1", true, Some(at(0)), Some(30001), now);
    probe(&mut i, false, now.plus(Duration::from_secs(1)));
    assert!(!container(&i).unchecked());
    assert_eq!(container(&i).state, Starting);

    // Only adopted running ones: a new container and a stopped one are what they say.
    let mut i = web();
    on_created(&mut i, "c1", Some(30001), now);
    assert!(!container(&i).unchecked());
    let mut i = web();
    adopt(&mut i, "c1", false, Some(at(0)), Some(30001), now);
    assert!(!container(&i).unchecked());
}

#[test]
fn an_adopted_container_that_exits_before_it_is_up_is_new_when_it_comes_back() {
    let started = at(0);
    let now = at(3_600_000);
    let mut i = web();
    adopt(&mut i, "c1", true, Some(started), Some(30001), now);
    on_exit(&mut i, &exit(1, now), now);
    let back = now.plus(Duration::from_secs(1));
    on_restarted(&mut i, "c1", back);
    probe(&mut i, true, back);
    assert_eq!((container(&i).state, container(&i).since), (Up, back));
}

#[test]
fn adoption_without_a_start_time_or_of_a_stopped_container_dates_from_now() {
    let now = at(5_000);
    let mut i = web();
    adopt(&mut i, "c1", true, None, Some(30001), now);
    assert_eq!((container(&i).since, container(&i).adopted), (now, None));

    let mut i = web();
    adopt(&mut i, "c1", false, Some(at(0)), Some(30001), now);
    let c = container(&i);
    assert_eq!(
        (c.state, c.since, c.running_since, c.adopted),
        (Crashed, now, None, None)
    );
    // Its exit has not been counted: it is news, found stopped.
    let said = show(&on_exit(&mut i, &exit(0, at(1_000)), now));
    assert!(
        said.contains("web.1 found stopped: it exited with status 0"),
        "{said}"
    );
}

#[test]
fn adoption_leaves_a_known_container_alone_and_listing_follows_it() {
    let mut i = web_in(Up, T0, 0);
    let before = i.clone();
    adopt(&mut i, "c2", true, Some(at(0)), Some(30002), at(9_000));
    assert_eq!(i, before);

    on_listed(&mut i, "c2", None);
    assert_eq!(
        (container(&i).id.as_str(), container(&i).port),
        ("c2", Some(30001))
    );
    on_listed(&mut i, "c2", Some(30002));
    assert_eq!(container(&i).port, Some(30002));

    let mut none = web();
    on_listed(&mut none, "c1", Some(30001));
    assert_eq!(none.container, None, "listing is not adoption");
}
