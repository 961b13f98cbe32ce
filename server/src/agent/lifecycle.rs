//! The life of one assigned instance on this host, as data: what follows when its container is
//! created, restarted, found running after an agent restart, answers or fails a probe, or exits.
//!
//! Pure, like `plan.rs`: a record and a fact go in (a probe's result, an exit, the time), the
//! record changes and an [`Effect`] comes out. The driving code (`mod.rs`) makes the Docker calls,
//! runs the probe [`next_probe`] chooses, says the events and stops what it is told to stop.
//!
//! ```text
//! state      fact                                             next       effect
//! (none)     created, or adopted running                      Starting
//! (none)     adopted stopped                                  Crashed
//! (none)     creating it failed                               (none)     Restart after back-off
//! Starting   probe passes                                     Up
//! Starting   probe fails, `start_timeout` after it started    Starting   Stop
//! Up         `unhealthy_after` failed probes in a row         Unhealthy  Say
//! Unhealthy  probe passes                                     Up         Say "healthy again"
//! Unhealthy  probe fails, `unhealthy_timeout` after that      Unhealthy  Stop
//! any        the container exits (each exit counted once)     Crashed    Restart after back-off
//! Crashed    restarted by the agent                           Starting   Say "Restarted"
//! Crashed    seen running (started by hand)                   Starting
//! ```
//!
//! A stopped container exits and takes the crash path. The back-off doubles from 1 s to a minute
//! with each crash in a row and starts over after a run of [`STABLE_AFTER`]; `plan` starts the
//! instance again once it has passed.
//!
//! The state is what the control plane sees (`ObservedState`); it routes only to `Up`
//! instances and fails a deploying release on a crash or a restart.
//! Draining is not the agent's: the control plane takes an instance out of the routes and later
//! out of the assignments, and `plan` then removes its container.
//!
//! How an instance is checked and when it is given up on are parameters of its record
//! ([`Checks`]), not constants of the transitions: checks of other kinds (HTTP, readiness,
//! liveness) add fields there, a choice in [`next_probe`] and rows here, not driving code.

use caas_api::agent::{Assignment, HealthCheck, ObservedState};
use caas_api::Timestamp;
use std::time::Duration;
use ObservedState::{Crashed, Starting, Unhealthy, Up};

/// An instance that ran this long before it exited starts its back-off from the beginning: it
/// was working, so its next crash is news, not a crash loop.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// What to try against a running instance. The lifecycle chooses it ([`next_probe`]); the
/// driving code runs it (`probe.rs`) and hands the result to [`on_probe`].
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// Passes while the process runs: for processes that do not listen (workers).
    Running,
    /// The process accepts a connection on its port (`$PORT`) within `timeout`.
    Connect { timeout: Duration },
}

/// How an instance is checked, and when the agent gives up on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Checks {
    pub probe: Probe,
    /// Not up this long after it (re)started: stopped, to be restarted.
    pub start_timeout: Duration,
    /// Failed probes in a row before an up instance counts as unhealthy.
    pub unhealthy_after: u32,
    /// Unhealthy this long: stopped, to be restarted.
    pub unhealthy_timeout: Duration,
}

impl Checks {
    /// The checks every instance has today: the kind the control plane assigns, fixed limits.
    pub fn of(a: &Assignment) -> Checks {
        Checks {
            probe: match a.health {
                HealthCheck::Running => Probe::Running,
                HealthCheck::Tcp => Probe::Connect {
                    timeout: Duration::from_secs(2),
                },
            },
            start_timeout: Duration::from_secs(120),
            unhealthy_after: 3,
            unhealthy_timeout: Duration::from_secs(30),
        }
    }
}

/// When an assignment may be (re)started next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Consecutive failures (crashes, failed starts).
    pub failures: u32,
    pub next_at: Timestamp,
}

/// Back-off after `failures` consecutive failures: 1 s, 2 s, 4 s, ... up to a minute.
pub fn backoff_delay(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// What the agent knows of one assigned instance, across the containers it has had here.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// `web.1`, for what the events say.
    pub name: String,
    /// Its memory limit, to say why the kernel killed it.
    pub memory_mb: u64,
    pub checks: Checks,
    /// Restarts by this agent, reported to the control plane (which fails a deploying release
    /// on one).
    pub restarts: u32,
    /// Set by a crash or a failed start; `plan` starts nothing for the instance before it passes.
    pub backoff: Option<Backoff>,
    /// Its current container, from the first one created, adopted or seen exited.
    pub container: Option<Container>,
}

/// One container of an instance, as the lifecycle tracks it.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub id: String,
    /// The host port it is published on.
    pub port: Option<u16>,
    pub state: ObservedState,
    /// When it entered `state` (for `Up` after an adoption: when the container started).
    pub since: Timestamp,
    /// Failed probes in a row while up.
    pub failed_probes: u32,
    /// `finished_at` of the last exit counted, so one exit counts once.
    pub last_exit: Option<Timestamp>,
    /// Since when it runs, as far as this agent knows; how long it ran decides the back-off.
    pub running_since: Option<Timestamp>,
    /// When an adopted container started: its first "up" dates from then, not from adoption.
    pub adopted: Option<Timestamp>,
    /// It was made but never started (the agent stopped in between): starting it is its first
    /// start, not a restart after a crash.
    pub never_ran: bool,
}

impl Container {
    fn new(id: &str, state: ObservedState, since: Timestamp, port: Option<u16>) -> Container {
        Container {
            id: id.to_string(),
            port,
            state,
            since,
            failed_probes: 0,
            last_exit: None,
            running_since: None,
            adopted: None,
            never_ran: false,
        }
    }
}

/// How a container ended, as the engine tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    pub container_id: String,
    /// The host port it was created with (an exited container lists none).
    pub port: Option<u16>,
    pub status: i64,
    pub oom_killed: bool,
    pub finished_at: Option<Timestamp>,
}

/// A platform line for the app's logs: `caas[TAG]: TEXT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub tag: &'static str,
    pub text: String,
}

impl Event {
    fn new(tag: &'static str, text: String) -> Event {
        Event { tag, text }
    }
}

/// What the driving code is to do about a transition.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Say it; nothing else changes on the host.
    Say(Event),
    /// Say why, then stop the container (gracefully). It exits and takes the crash path.
    Stop { container_id: String, say: Event },
    /// Say why; the instance is started again once `after` has passed. The back-off is in the
    /// record already, and `plan` follows it: there is nothing to schedule.
    Restart { after: Duration, say: Event },
}

impl Instance {
    /// The record of an assignment the agent has not dealt with yet.
    pub fn new(a: &Assignment) -> Instance {
        Instance {
            name: a.instance_name(),
            memory_mb: a.memory_mb,
            checks: Checks::of(a),
            restarts: 0,
            backoff: None,
            container: None,
        }
    }
}

/// A container was created and started for the instance. Restarts and back-off carry over:
/// they count the instance, not the container.
pub fn on_created(inst: &mut Instance, container_id: &str, port: Option<u16>, now: Timestamp) {
    let mut c = Container::new(container_id, Starting, now, port);
    c.running_since = Some(now);
    inst.container = Some(c);
}

/// Creating a container failed (no port, no image, an engine error): try again after a back-off.
pub fn on_create_failed(inst: &mut Instance, why: &str, now: Timestamp) -> Effect {
    let failures = inst.backoff.map_or(0, |b| b.failures) + 1;
    let delay = backoff_delay(failures);
    inst.backoff = Some(Backoff {
        failures,
        next_at: now.plus(delay),
    });
    Effect::Restart {
        after: delay,
        say: Event::new(
            "crash",
            format!(
                "cannot start {}: {why}; retrying in {}s",
                inst.name,
                delay.as_secs()
            ),
        ),
    }
}

/// The instance's exited container was started again.
pub fn on_restarted(inst: &mut Instance, container_id: &str, now: Timestamp) -> Effect {
    let c = inst
        .container
        .get_or_insert_with(|| Container::new(container_id, Starting, now, None));
    c.state = Starting;
    c.since = now;
    c.failed_probes = 0;
    c.running_since = Some(now);
    if std::mem::take(&mut c.never_ran) {
        return Effect::Say(Event::new("start", format!("Started {}", inst.name)));
    }
    inst.restarts += 1;
    Effect::Say(Event::new(
        "restart",
        format!("Restarted {} (restart {})", inst.name, inst.restarts),
    ))
}

/// A container of the instance that this agent did not know: it was there before the agent
/// (re)started. It is taken over as it is; a running one keeps its age (`started_at`), so a
/// restart of the agent does not make every instance look new. Nothing happens when the
/// instance has a container already.
pub fn adopt(
    inst: &mut Instance,
    container_id: &str,
    running: bool,
    started_at: Option<Timestamp>,
    port: Option<u16>,
    now: Timestamp,
) {
    if inst.container.is_some() {
        return;
    }
    let started = started_at.filter(|_| running);
    let since = started.unwrap_or(now);
    let mut c = Container::new(
        container_id,
        if running { Starting } else { Crashed },
        since,
        port,
    );
    c.running_since = running.then_some(since);
    c.adopted = started;
    inst.container = Some(c);
}

/// The engine lists a container of the instance: follow it (after duplicates, the one kept)
/// and the port it is published on.
pub fn on_listed(inst: &mut Instance, container_id: &str, port: Option<u16>) {
    let Some(c) = &mut inst.container else {
        return;
    };
    if c.id != container_id {
        c.id = container_id.to_string();
    }
    if port.is_some() {
        c.port = port;
    }
}

/// The instance's container is not running. Each exit counts once (the engine lists a stopped
/// container on every pass until it is started again): a new one backs off, longer with each
/// crash in a row, from the beginning after a run of [`STABLE_AFTER`].
pub fn on_exit(inst: &mut Instance, exit: &Exit, now: Timestamp) -> Option<Effect> {
    let finished = exit.finished_at.unwrap_or(now);
    let c = inst
        .container
        .get_or_insert_with(|| Container::new(&exit.container_id, Crashed, finished, exit.port));
    if c.last_exit == Some(finished) {
        return None;
    }
    // A container that never ran (created, and the agent stopped before starting it) has no
    // finish time. It did not crash: it is started at once, once, and the instance stays
    // starting (a rollout waiting for it must not take it for a crash).
    if exit.finished_at.is_none() && c.running_since.is_none() {
        if c.never_ran {
            return None;
        }
        c.never_ran = true;
        c.state = Starting;
        c.since = now;
        c.port = c.port.or(exit.port);
        let failures = inst.backoff.map_or(0, |b| b.failures);
        inst.backoff = Some(Backoff {
            failures,
            next_at: now,
        });
        return Some(Effect::Restart {
            after: Duration::ZERO,
            say: Event::new(
                "start",
                format!(
                    "{}'s container was made but not started; starting it",
                    inst.name
                ),
            ),
        });
    }
    // Never seen running by this agent: it stopped while the agent was not looking.
    let first_sight = c.last_exit.is_none() && c.running_since.is_none() && c.state == Crashed;
    let ran_long = c
        .running_since
        .is_some_and(|s| s.until(finished) >= STABLE_AFTER);
    c.last_exit = Some(finished);
    c.state = Crashed;
    c.since = finished;
    c.port = c.port.or(exit.port);
    c.running_since = None;
    // The adopted run is over: up after a restart is up from then, not from the old start.
    c.adopted = None;
    let failures = if ran_long {
        1
    } else {
        inst.backoff.map_or(0, |b| b.failures) + 1
    };
    let delay = backoff_delay(failures);
    inst.backoff = Some(Backoff {
        failures,
        // Noticed late, it still waits its whole delay from now.
        next_at: finished.max(now).plus(delay),
    });
    let why = if exit.oom_killed {
        format!(
            "was killed for using more than {} MB of memory",
            inst.memory_mb
        )
    } else {
        format!("exited with status {}", exit.status)
    };
    let when = if first_sight {
        "found stopped: it"
    } else {
        "crashed:"
    };
    Some(Effect::Restart {
        after: delay,
        say: Event::new(
            "crash",
            format!(
                "{} {when} {why}; restarting in {}s",
                inst.name,
                delay.as_secs()
            ),
        ),
    })
}

/// The probe to run against the instance's running container now, if any.
pub fn next_probe(inst: &Instance) -> Option<Probe> {
    inst.container.as_ref().map(|_| inst.checks.probe.clone())
}

/// A probe of the instance's running container passed (`ok`) or failed.
pub fn on_probe(inst: &mut Instance, ok: bool, now: Timestamp) -> Option<Effect> {
    let Instance {
        name,
        checks,
        container,
        ..
    } = inst;
    let c = container.as_mut()?;
    if c.state == Crashed {
        // Running again: started by hand, or a restart whose end we did not see.
        c.state = Starting;
        c.since = now;
        c.running_since.get_or_insert(now);
    }
    match (c.state, ok) {
        (Starting | Unhealthy, true) => {
            let was = c.state;
            c.state = Up;
            c.since = c.adopted.take().unwrap_or(now);
            c.failed_probes = 0;
            (was == Unhealthy)
                .then(|| Effect::Say(Event::new("health", format!("{name} is healthy again"))))
        }
        (Up, true) => {
            c.failed_probes = 0;
            None
        }
        (Starting, false) => (c.since.until(now) >= checks.start_timeout).then(|| {
            let not_up = match checks.probe {
                Probe::Running => "did not start",
                Probe::Connect { .. } => "did not listen on $PORT",
            };
            Effect::Stop {
                container_id: c.id.clone(),
                say: Event::new(
                    "health",
                    format!(
                        "{name} {not_up} within {}s; restarting it",
                        checks.start_timeout.as_secs()
                    ),
                ),
            }
        }),
        (Up, false) => {
            c.failed_probes += 1;
            if c.failed_probes < checks.unhealthy_after {
                return None;
            }
            c.state = Unhealthy;
            c.since = now;
            Some(Effect::Say(Event::new(
                "health",
                format!(
                    "{name} failed {} health checks in a row",
                    checks.unhealthy_after
                ),
            )))
        }
        (Unhealthy, false) => {
            (c.since.until(now) >= checks.unhealthy_timeout).then(|| Effect::Stop {
                container_id: c.id.clone(),
                say: Event::new(
                    "health",
                    format!(
                        "{name} stayed unhealthy for {}s; restarting it",
                        checks.unhealthy_timeout.as_secs()
                    ),
                ),
            })
        }
        (Crashed, _) => None, // cannot be: a crashed container that runs is starting (above)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_700_000_000_000);

    /// `T0` plus `ms` milliseconds.
    fn at(ms: u64) -> Timestamp {
        T0.plus(Duration::from_millis(ms))
    }

    fn assignment(health: HealthCheck) -> Assignment {
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
        }
    }

    /// `web.1`, checked by TCP connect, with nothing known yet.
    fn web() -> Instance {
        Instance::new(&assignment(HealthCheck::Tcp))
    }

    /// `web.1` whose container `c1` is in `state` since `since`, `failed` probes in a row.
    fn web_in(state: ObservedState, since: Timestamp, failed: u32) -> Instance {
        let mut i = web();
        on_created(&mut i, "c1", Some(30001), since);
        let c = i.container.as_mut().unwrap();
        c.state = state;
        c.failed_probes = failed;
        i
    }

    fn container(i: &Instance) -> &Container {
        i.container.as_ref().expect("a container")
    }

    fn exit(status: i64, finished_at: Timestamp) -> Exit {
        Exit {
            container_id: "c1".into(),
            port: Some(30001),
            status,
            oom_killed: false,
            finished_at: Some(finished_at),
        }
    }

    /// An effect the way a table reads it.
    fn show(e: &Option<Effect>) -> String {
        match e {
            None => "-".into(),
            Some(Effect::Say(e)) => format!("say {}: {}", e.tag, e.text),
            Some(Effect::Stop { container_id, say }) => {
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
            ((Unhealthy, 3, 0), false, 29_999, (Unhealthy, 3, 0), "-"),
            ((Unhealthy, 3, 0), false, 30_000, (Unhealthy, 3, 0),
                "stop c1, say health: web.1 stayed unhealthy for 30s; restarting it"),
            // A crashed container that runs again is starting, from now.
            ((Crashed, 0, 0), true, 5_000, (Up, 0, 5_000), "-"),
            ((Crashed, 0, 0), false, 5_000, (Starting, 0, 5_000), "-"),
        ];
        for &((state, failed, since), ok, now, (want_state, want_failed, want_since), want) in table
        {
            let mut i = web_in(state, at(since), failed);
            let effect = on_probe(&mut i, ok, at(now));
            let c = container(&i);
            let row = format!("{state:?}/{failed} since {since}, ok={ok} at {now}");
            assert_eq!(show(&effect), want, "{row}");
            assert_eq!(
                (c.state, c.failed_probes, c.since),
                (want_state, want_failed, at(want_since)),
                "{row}"
            );
        }
    }

    #[test]
    fn a_stop_is_asked_for_again_until_the_container_exits() {
        // Today's behaviour: the lifecycle stays where it was and the exit moves it on, so an
        // app that takes long to stop is told (and the logs say) once a pass.
        let mut i = web_in(Starting, T0, 0);
        assert!(matches!(
            on_probe(&mut i, false, at(120_000)),
            Some(Effect::Stop { .. })
        ));
        assert!(matches!(
            on_probe(&mut i, false, at(121_000)),
            Some(Effect::Stop { .. })
        ));
        assert!(on_exit(&mut i, &exit(143, at(121_500)), at(122_000)).is_some());
        assert_eq!(container(&i).state, Crashed);
    }

    #[test]
    fn failed_probes_count_in_a_row_only() {
        let mut i = web_in(Up, T0, 0);
        let said: Vec<String> = [false, false, true, false, false, false, false]
            .iter()
            .enumerate()
            .map(|(n, &ok)| show(&on_probe(&mut i, ok, at(n as u64 * 1000))))
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
        i.checks = Checks {
            probe: Probe::Connect {
                timeout: Duration::from_millis(500),
            },
            start_timeout: Duration::from_secs(5),
            unhealthy_after: 1,
            unhealthy_timeout: Duration::from_secs(2),
        };
        assert_eq!(
            show(&on_probe(&mut i, false, at(5_000))),
            "stop c1, say health: web.1 did not listen on $PORT within 5s; restarting it"
        );
        assert_eq!(show(&on_probe(&mut i, true, at(6_000))), "-");
        assert_eq!(
            show(&on_probe(&mut i, false, at(7_000))),
            "say health: web.1 failed 1 health checks in a row"
        );
        assert_eq!(show(&on_probe(&mut i, false, at(8_999))), "-");
        assert_eq!(
            show(&on_probe(&mut i, false, at(9_000))),
            "stop c1, say health: web.1 stayed unhealthy for 2s; restarting it"
        );
    }

    #[test]
    fn the_probe_follows_the_assigned_health_check() {
        let worker = Instance::new(&assignment(HealthCheck::Running));
        assert_eq!(
            next_probe(&worker),
            None,
            "no container yet: nothing to probe"
        );
        let mut worker = worker;
        on_created(&mut worker, "c1", None, T0);
        assert_eq!(next_probe(&worker), Some(Probe::Running));
        assert_eq!(show(&on_probe(&mut worker, true, at(1_000))), "-");
        assert_eq!(container(&worker).state, Up);

        let mut web = web();
        on_created(&mut web, "c1", Some(30001), T0);
        assert_eq!(
            next_probe(&web),
            Some(Probe::Connect {
                timeout: Duration::from_secs(2)
            })
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
            (c.state, c.since, c.failed_probes, c.running_since),
            (Starting, at(2_000), 0, Some(at(2_000)))
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
        on_probe(&mut i, true, now.plus(Duration::from_secs(1)));
        assert_eq!((container(&i).state, container(&i).since), (Up, started));
        assert_eq!(i.restarts, 0);

        // Its age counts once: up again after being unhealthy is up from then.
        for n in 2..=4 {
            on_probe(&mut i, false, now.plus(Duration::from_secs(n)));
        }
        on_probe(&mut i, true, now.plus(Duration::from_secs(5)));
        assert_eq!(container(&i).since, now.plus(Duration::from_secs(5)));
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
        on_probe(&mut i, true, back);
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
}
