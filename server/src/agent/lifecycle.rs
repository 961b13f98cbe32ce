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

use caas_api::agent::{Assignment, HealthCheck, ObservedState};
use caas_api::checks::{format_duration, Check, CheckKind, Strategy};
use caas_api::Timestamp;
use std::time::Duration;
use ObservedState::{Crashed, Starting, Unhealthy, Unready, Up};

/// An instance that ran this long before it exited starts its back-off from the beginning: it
/// was working, so its next crash is news, not a crash loop.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);
/// SIGTERM to SIGKILL when the assignment does not say.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// What to try against a running instance. The lifecycle chooses it ([`due`]); the driving code
/// runs it (`probe.rs`) and hands the result to [`on_probe`].
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// Passes while the process runs: for processes that do not listen (workers).
    Running,
    /// The process accepts a connection on its port (`$PORT`) within `timeout`.
    Connect { timeout: Duration },
    /// `GET path` on its port answers `status` (any 2xx/3xx when `None`), with `content` in the
    /// body when given, within `timeout`.
    Http {
        path: String,
        status: Option<u16>,
        content: Option<String>,
        timeout: Duration,
    },
}

/// What a probe saw, as `probe.rs` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub ok: bool,
    /// Nothing listens (the connection was refused): the app is not up yet, or is gone.
    pub refused: bool,
    /// For people: `answered 200`, `answered 500`, `no answer within 2s`, `connection refused`.
    pub detail: String,
}

impl Seen {
    pub fn pass(detail: &str) -> Seen {
        Seen {
            ok: true,
            refused: false,
            detail: detail.into(),
        }
    }
    pub fn fail(detail: &str) -> Seen {
        Seen {
            ok: false,
            refused: false,
            detail: detail.into(),
        }
    }
    pub fn refused() -> Seen {
        Seen {
            ok: false,
            refused: true,
            detail: "connection refused".into(),
        }
    }
}

/// The three checks of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Which {
    Startup,
    Readiness,
    Liveness,
}

impl Which {
    fn at(self) -> usize {
        self as usize
    }
}

/// One check as the lifecycle runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub probe: Probe,
    /// Between tries.
    pub interval: Duration,
    /// Failed tries in a row that count as failing.
    pub attempts: u32,
    /// After the container starts, before the first try.
    pub wait: Duration,
    /// `startup check GET /health`, for what the events say.
    pub what: String,
    /// The app's check (`caas checks:set`, `app.json`), not a default.
    pub configured: bool,
}

/// How an instance is checked, and when the agent gives up on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Checks {
    /// Gates "up": the startup check, else the readiness check, else the default probe.
    pub startup: Plan,
    /// The app's own startup check: failing it `attempts` times (once the app answers) stops
    /// the instance. A default only waits, up to `start_timeout`.
    pub startup_gives_up: bool,
    pub readiness: Option<Plan>,
    pub liveness: Plan,
    /// What an instance failing its liveness check gets.
    pub strategy: Strategy,
    /// Not up this long after it (re)started: stopped, to be restarted.
    pub start_timeout: Duration,
    /// Unhealthy this long before `recreate` stops it: 0 for the app's liveness check (its
    /// attempts are the grace), 30 s for the default probe, as before checks were configurable.
    pub replace_after: Duration,
    /// SIGTERM to SIGKILL when it is stopped.
    pub stop_grace: Duration,
}

impl Checks {
    /// The checks of an assignment: its release's checks of its process type, and defaults for
    /// the kinds it has none of.
    pub fn of(a: &Assignment) -> Checks {
        let own = |kind: CheckKind| {
            a.checks
                .iter()
                .find(|c| c.kind == kind && c.process == a.process)
        };
        let default = Plan {
            probe: match a.health {
                HealthCheck::Running => Probe::Running,
                HealthCheck::Tcp => Probe::Connect {
                    timeout: Duration::from_secs(2),
                },
            },
            interval: Duration::from_secs(1),
            attempts: 3,
            wait: Duration::ZERO,
            what: "health check".into(),
            configured: false,
        };
        let readiness = own(CheckKind::Readiness).map(http);
        let (startup, startup_gives_up) = match own(CheckKind::Startup) {
            Some(c) => (http(c), true),
            None => (readiness.clone().unwrap_or_else(|| default.clone()), false),
        };
        let liveness_check = own(CheckKind::Liveness);
        Checks {
            startup,
            startup_gives_up,
            readiness,
            liveness: liveness_check.map_or(default, http),
            strategy: liveness_check.and_then(|c| c.strategy).unwrap_or_default(),
            start_timeout: Duration::from_secs(120),
            replace_after: match liveness_check {
                Some(_) => Duration::ZERO,
                None => Duration::from_secs(30),
            },
            stop_grace: a.stop_timeout_ms.map_or(STOP_GRACE, Duration::from_millis),
        }
    }

    fn plan(&self, which: Which) -> Option<&Plan> {
        match which {
            Which::Startup => Some(&self.startup),
            Which::Readiness => self.readiness.as_ref(),
            Which::Liveness => Some(&self.liveness),
        }
    }
}

/// An HTTP check of the app's, as a plan.
fn http(c: &Check) -> Plan {
    Plan {
        probe: Probe::Http {
            path: c.path.clone(),
            status: c.status,
            content: c.content.clone(),
            timeout: c.timeout(),
        },
        interval: c.interval(),
        attempts: c.attempts,
        wait: c.wait(),
        what: format!("{} check GET {}", c.kind, c.path),
        configured: true,
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
            health,
            checks: Vec::new(),
            stop_timeout_ms: None,
        }
    }

    /// `web.1` with the app's `checks`.
    fn web_with(checks: &[Check]) -> Instance {
        let mut a = assignment(HealthCheck::Tcp);
        a.checks = checks.to_vec();
        Instance::new(&a)
    }

    /// The probe of the check the state runs (startup while starting, liveness after) passed
    /// or failed, as the default TCP probe sees it.
    fn probe(i: &mut Instance, ok: bool, now: Timestamp) -> Option<Effect> {
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
    fn web() -> Instance {
        Instance::new(&assignment(HealthCheck::Tcp))
    }

    /// `web.1` whose container `c1` is in `state` since `since`, `failed` probes in a row.
    fn web_in(state: ObservedState, since: Timestamp, failed: u32) -> Instance {
        let mut i = web();
        on_created(&mut i, "c1", Some(30001), since);
        let c = i.container.as_mut().unwrap();
        c.state = state;
        c.failures[Which::Liveness.at()] = failed;
        i
    }

    fn container(i: &Instance) -> &Container {
        i.container.as_ref().expect("a container")
    }

    fn container_mut(i: &mut Instance) -> &mut Container {
        i.container.as_mut().expect("a container")
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
        for &((state, failed, since), ok, now, (want_state, want_failed, want_since), want) in table
        {
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
}
