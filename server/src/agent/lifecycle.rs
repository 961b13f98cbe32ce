//! The life of one assigned instance on this host, as data: what follows when its container is
//! created, restarted, found running after an agent restart, answers or fails a probe, or exits.
//!
//! Pure, like `plan.rs`: a record and a fact go in (a probe's result, an exit, the time), the
//! record changes and an [`Effect`] comes out. The driving code (`mod.rs`) makes the Docker calls,
//! runs the probes [`due`] hands out (`probe.rs`), says the events and stops what it is told to.
//!
//! An instance has three checks ([`Checks`]): `startup` gates "up", `readiness` takes it out of
//! the routes while failing, `liveness` gets it replaced. Each is the app's HTTP check of that
//! kind (`caas checks:set`, `app.json`) or a default: without a startup check the readiness check
//! gates "up" (its first pass), and without either a TCP connect to `$PORT` does (a running
//! process, for workers); without a liveness check that same default probe runs every second.
//!
//! ```text
//! state      fact                                                next       effect
//! (none)     created, or adopted running                         Starting
//! (none)     adopted stopped                                     Crashed
//! (none)     creating it failed                                  (none)     Restart after back-off
//! Starting   startup probe passes                                Up         Say (a configured check)
//! Starting   startup check fails `attempts` times, answering     Starting   Stop
//! Starting   startup probe fails, `start_timeout` after start    Starting   Stop
//! Up         readiness fails `attempts` times in a row           Unready    Say
//! Unready    readiness passes                                    Up         Say
//! Up/Unready liveness fails `attempts` times in a row            Unhealthy  per strategy:
//!              recreate, configured check                                   Stop
//!              recreate, default probe                                      Say; Stop 30 s on
//!              none / keep=N                                                Say (keep=N: the
//!                                                                           control plane
//!                                                                           replaces it)
//! Unhealthy  liveness passes                                     Up         Say "healthy again"
//! any        the container exits (each exit counted once)        Crashed    Restart after back-off
//! Crashed    restarted by the agent                              Starting   Say "Restarted"
//! Crashed    seen running (started by hand)                      Starting
//! ```
//!
//! A startup check's failures count only once the app answers: a refused connection means it
//! is still booting, which `start_timeout` bounds. A stopped container exits and takes the crash
//! path; it is not probed while its stop runs. The back-off doubles from 1 s to a minute with each
//! crash in a row and starts over after a run of [`STABLE_AFTER`]; `plan` starts the instance
//! again once it has passed. A container adopted running is reported unchecked until its first
//! startup probe ([`Container::unchecked`]): it most likely was up, and the control plane keeps
//! its route meanwhile.
//!
//! The state is what the control plane sees (`ObservedState`); it routes only to `Up`
//! instances and fails a deploying release on a crash or a restart. Every check result that
//! changes the state is said as a `caas[health]` line with what the probe saw, and the last
//! failing result is kept in the record (`Container::check`) for `caas ps`.
//! Draining is not the agent's: the control plane takes an instance out of the routes and later
//! out of the assignments, and `plan` then removes its container.

use caas_api::agent::{Assignment, ObservedState};
use caas_api::checks::{format_duration, Strategy};
use caas_api::Timestamp;
use std::time::Duration;
use ObservedState::{Crashed, Starting, Unhealthy, Unready, Up};

mod checks;
pub use checks::{Checks, Probe, Seen, Which};

/// An instance that ran this long before it exited starts its back-off from the beginning: it
/// was working, so its next crash is news, not a crash loop.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);
/// SIGTERM to SIGKILL when the assignment does not say.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

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
    /// Failed tries in a row, per check ([`Which`]).
    pub failures: [u32; 3],
    /// When each check is due next; `None`: at once.
    pub next_at: [Option<Timestamp>; 3],
    /// The last failing check result that counted (`startup check GET /health: answered 500`),
    /// until a check of that kind passes: why it is not up, for `caas ps`.
    pub check: Option<String>,
    /// When the lifecycle asked for it to be stopped: it is not probed while the stop runs.
    pub stopping: Option<Timestamp>,
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
            failures: [0; 3],
            next_at: [None; 3],
            check: None,
            stopping: None,
            last_exit: None,
            running_since: None,
            adopted: None,
            never_ran: false,
        }
    }

    /// Adopted running (the agent restarted) and not checked since: `Starting` until its first
    /// startup probe, but it most likely was up and in the routes. The report says so
    /// (`InstanceReport::unchecked`) and the control plane keeps what it knew, rather than take
    /// every instance of the host out of the routes until its probe (503s under load after a
    /// restart of caasd with its embedded agent). The first probe result, pass or failure, ends
    /// it.
    pub fn unchecked(&self) -> bool {
        self.state == Starting && self.adopted.is_some() && self.check.is_none()
    }

    /// A fresh run: every check from the start.
    fn afresh(&mut self) {
        self.failures = [0; 3];
        self.next_at = [None; 3];
        self.stopping = None;
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
    /// Say why, then stop the container (SIGTERM, `grace`, SIGKILL). It exits and takes the
    /// crash path.
    Stop {
        container_id: String,
        grace: Duration,
        say: Event,
    },
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
    c.afresh();
    c.check = None;
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
    if c.stopping.take().is_none() {
        // It was not stopped for failing a check: what a check said last is not why it ended.
        c.check = None;
    }
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

/// The probes to run against the instance's running container now, each with the check it is
/// for. The driving code calls it for running containers only (a container seen running is a
/// fact too: one the lifecycle thought crashed was started by hand, and is starting), runs them
/// and hands each result to [`on_probe`]. Handing a probe out schedules its check's next try.
pub fn due(inst: &mut Instance, now: Timestamp) -> Vec<(Which, Probe)> {
    let Instance {
        checks, container, ..
    } = inst;
    let Some(c) = container.as_mut() else {
        return Vec::new();
    };
    if c.state == Crashed {
        // Running again: started by hand, or a restart whose end we did not see.
        c.state = Starting;
        c.since = now;
        c.running_since.get_or_insert(now);
        c.afresh();
    }
    if let Some(asked) = c.stopping {
        // Its stop is under way; should it still run once the stop had time to end, the
        // checks go on (and ask for the stop again).
        if asked.until(now) < checks.stop_grace + Duration::from_secs(5) {
            return Vec::new();
        }
        c.stopping = None;
    }
    let kinds: &[Which] = match c.state {
        Starting => &[Which::Startup],
        Up | Unready => &[Which::Readiness, Which::Liveness],
        Unhealthy => &[Which::Liveness],
        Crashed => &[],
    };
    let ran_from = c.running_since.unwrap_or(c.since);
    let mut out = Vec::new();
    for &which in kinds {
        let Some(plan) = checks.plan(which) else {
            continue;
        };
        if ran_from.until(now) < plan.wait {
            continue;
        }
        let slot = &mut c.next_at[which.at()];
        if slot.is_some_and(|at| now < at) {
            continue;
        }
        *slot = Some(now.plus(plan.interval));
        out.push((which, plan.probe.clone()));
    }
    out
}

/// A probe for `which` check of the instance's running container saw `seen`. A result for a
/// check the instance is past (a late startup result after it came up) changes nothing.
pub fn on_probe(inst: &mut Instance, which: Which, seen: &Seen, now: Timestamp) -> Option<Effect> {
    let state = inst.container.as_ref()?.state;
    match (state, which) {
        (Starting, Which::Startup) => starting(inst, seen, now),
        (Up | Unready, Which::Readiness) => readiness(inst, seen, now),
        (Up | Unready | Unhealthy, Which::Liveness) => liveness(inst, seen, now),
        _ => None,
    }
}

/// Asks for the container to be stopped, once: it is not probed while the stop runs.
fn stop(c: &mut Container, grace: Duration, now: Timestamp, text: String) -> Effect {
    c.stopping = Some(now);
    Effect::Stop {
        container_id: c.id.clone(),
        grace,
        say: Event::new("health", text),
    }
}

fn starting(inst: &mut Instance, seen: &Seen, now: Timestamp) -> Option<Effect> {
    let Instance {
        name,
        checks,
        container,
        ..
    } = inst;
    let c = container.as_mut()?;
    let plan = &checks.startup;
    if seen.ok {
        c.state = Up;
        c.since = c.adopted.take().unwrap_or(now);
        c.failures = [0; 3];
        c.check = None;
        return plan.configured.then(|| {
            Effect::Say(Event::new(
                "health",
                format!("{name} passed its {} ({}); up", plan.what, seen.detail),
            ))
        });
    }
    let counts = checks.startup_gives_up && !seen.refused;
    let tries = &mut c.failures[Which::Startup.at()];
    if counts {
        *tries += 1;
    }
    let tries = *tries;
    c.check = Some(match (plan.configured, counts) {
        (true, true) => format!(
            "{}: {} ({tries} of {})",
            plan.what, seen.detail, plan.attempts
        ),
        (true, false) => format!("{}: {} (not listening yet)", plan.what, seen.detail),
        (false, _) => format!("{}: {}", plan.what, seen.detail),
    });
    if counts && tries >= plan.attempts {
        let text = format!(
            "{name} failed its {} {tries} times ({}); restarting it",
            plan.what, seen.detail
        );
        return Some(stop(c, checks.stop_grace, now, text));
    }
    if c.since.until(now) < checks.start_timeout {
        return None;
    }
    let secs = checks.start_timeout.as_secs();
    let text = match &plan.probe {
        Probe::Running => format!("{name} did not start within {secs}s; restarting it"),
        Probe::Connect { .. } => {
            format!("{name} did not listen on $PORT within {secs}s; restarting it")
        }
        Probe::Http { .. } => format!(
            "{name} did not pass its {} within {secs}s ({}); restarting it",
            plan.what, seen.detail
        ),
    };
    Some(stop(c, checks.stop_grace, now, text))
}

fn readiness(inst: &mut Instance, seen: &Seen, now: Timestamp) -> Option<Effect> {
    let Instance {
        name,
        checks,
        container,
        ..
    } = inst;
    let c = container.as_mut()?;
    let plan = checks.readiness.as_ref()?;
    let tries = &mut c.failures[Which::Readiness.at()];
    if seen.ok {
        *tries = 0;
        c.check = None;
        if c.state != Unready {
            return None;
        }
        c.state = Up;
        c.since = now;
        return Some(Effect::Say(Event::new(
            "health",
            format!(
                "{name} passed its {} ({}); back in the routes",
                plan.what, seen.detail
            ),
        )));
    }
    *tries += 1;
    let tries = *tries;
    c.check = Some(format!(
        "{}: {} ({} in a row)",
        plan.what, seen.detail, tries
    ));
    if c.state != Up || tries < plan.attempts {
        return None;
    }
    c.state = Unready;
    c.since = now;
    Some(Effect::Say(Event::new(
        "health",
        format!(
            "{name} failed its {} {tries} times in a row ({}); out of the routes until it passes",
            plan.what, seen.detail
        ),
    )))
}

fn liveness(inst: &mut Instance, seen: &Seen, now: Timestamp) -> Option<Effect> {
    let Instance {
        name,
        checks,
        container,
        ..
    } = inst;
    let c = container.as_mut()?;
    let plan = &checks.liveness;
    let tries = &mut c.failures[Which::Liveness.at()];
    if seen.ok {
        *tries = 0;
        if c.state != Unhealthy {
            return None;
        }
        c.state = Up;
        c.since = now;
        c.check = None;
        c.failures[Which::Readiness.at()] = 0;
        let text = match plan.configured {
            true => format!(
                "{name} passed its {} ({}); healthy again",
                plan.what, seen.detail
            ),
            false => format!("{name} is healthy again"),
        };
        return Some(Effect::Say(Event::new("health", text)));
    }
    *tries += 1;
    let tries = *tries;
    if plan.configured || c.state == Unhealthy || tries >= plan.attempts {
        c.check = Some(format!(
            "{}: {} ({} in a row)",
            plan.what, seen.detail, tries
        ));
    }
    if c.state == Unhealthy {
        let stayed = c.since.until(now);
        if checks.strategy != Strategy::Recreate || stayed < checks.replace_after {
            return None;
        }
        let text = format!(
            "{name} stayed unhealthy for {}; restarting it",
            format_duration(checks.replace_after)
        );
        return Some(stop(c, checks.stop_grace, now, text));
    }
    if tries < plan.attempts {
        return None;
    }
    c.state = Unhealthy;
    c.since = now;
    if !plan.configured {
        // The default probe, as before checks were configurable: unhealthy first, replaced
        // after `replace_after` of it.
        return Some(Effect::Say(Event::new(
            "health",
            format!("{name} failed {tries} health checks in a row"),
        )));
    }
    let failed = format!(
        "{name} failed its {} {tries} times in a row ({})",
        plan.what, seen.detail
    );
    Some(match checks.strategy {
        Strategy::Recreate if checks.replace_after.is_zero() => {
            stop(c, checks.stop_grace, now, format!("{failed}; restarting it"))
        }
        Strategy::Recreate => Effect::Say(Event::new(
            "health",
            format!(
                "{failed}; restarting it in {}",
                format_duration(checks.replace_after)
            ),
        )),
        Strategy::None => Effect::Say(Event::new(
            "health",
            format!("{failed}; out of the routes, left running (strategy none)"),
        )),
        Strategy::Keep(n) => Effect::Say(Event::new(
            "health",
            format!(
                "{failed}; out of the routes, replaced while {n} other instances are up (strategy keep={n})"
            ),
        )),
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod check_tests;
