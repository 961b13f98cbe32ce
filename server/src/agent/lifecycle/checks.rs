//! How an instance is checked, as data: the probes ([`Probe`]) and what they saw ([`Seen`]), one
//! [`Plan`] per check, and an instance's [`Checks`], made from its assignment (the release's
//! checks of its process type, defaults for the kinds it has none of).

use super::STOP_GRACE;
use caas_api::agent::{Assignment, HealthCheck};
use caas_api::checks::{Check, CheckKind, Strategy};
use std::time::Duration;

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
    pub(crate) fn at(self) -> usize {
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

    pub(crate) fn plan(&self, which: Which) -> Option<&Plan> {
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
