//! Health checks and the per-app settings of rollouts and draining: what the user says (`caas
//! checks:set`, an `app.json`, `caas apps:settings:set`), checked here so the CLI refuses bad
//! input before any request and the server refuses it with the same one-line message.
//!
//! `GET /v1/apps/{app}/checks` lists an app's checks, `PATCH /v1/apps/{app}/checks` changes them
//! ([`ChecksUpdate`] → [`ChecksChange`]: a new release, as a config change makes one).
//! `GET /v1/apps/{app}/settings` shows its settings, `PATCH /v1/apps/{app}/settings` changes them
//! ([`SettingsUpdate`] → [`SettingsView`]; no release: they apply to the next rollout or drain).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What a check decides, as Dokku and Kubernetes name them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Gates "up": a new instance takes no traffic, and a rollout does not count it, until it
    /// passes; failing it `attempts` times stops the instance.
    Startup,
    /// While failing, the instance is out of the routes; it comes back when it passes.
    Readiness,
    /// Failing it gets the instance replaced (see [`Strategy`]).
    Liveness,
}

impl CheckKind {
    pub const ALL: [CheckKind; 3] = [Self::Startup, Self::Readiness, Self::Liveness];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Readiness => "readiness",
            Self::Liveness => "liveness",
        }
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CheckKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown check kind {}: use startup, readiness or liveness",
                    quoted(s)
                )
            })
    }
}

/// What happens to an instance failing its liveness check, after Rancher's strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Its container is stopped (SIGTERM, grace, SIGKILL) and started again, as after a crash.
    #[default]
    Recreate,
    /// Only reported: it is `unhealthy` (out of the routes) until it passes again.
    None,
    /// Replaced only while at least this many other instances of its process type are up; else
    /// reported, as `none`.
    Keep(u32),
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Recreate => f.write_str("recreate"),
            Self::None => f.write_str("none"),
            Self::Keep(n) => write!(f, "keep={n}"),
        }
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "unknown strategy {}: use recreate, none or keep=N (replace only while N others are up)",
                quoted(s)
            )
        };
        match s {
            "recreate" => Ok(Self::Recreate),
            "none" => Ok(Self::None),
            _ => {
                let n = s.strip_prefix("keep=").ok_or_else(bad)?;
                match n.parse::<u32>() {
                    Ok(v) if (1..=MAX_KEEP).contains(&v) && v.to_string() == n => Ok(Self::Keep(v)),
                    _ => Err(format!(
                        "invalid strategy {}: keep=N takes N from 1 to {MAX_KEEP}",
                        quoted(s)
                    )),
                }
            }
        }
    }
}

impl Serialize for Strategy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Strategy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a check came from: `caas checks` says it, and a build's `app.json` replaces the checks
/// of the process types it names.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CheckSource {
    #[default]
    Cli,
    AppJson,
}

/// One HTTP check of one process type. An app has at most one per process type and kind.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Check {
    pub process: String,
    pub kind: CheckKind,
    /// `GET` of this path on the instance's own address and port (`$PORT`).
    pub path: String,
    /// The status that passes; `None`: any 2xx or 3xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Text the body must contain to pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// How long one try may take.
    pub timeout_ms: u64,
    /// Time between tries.
    pub interval_ms: u64,
    /// Failed tries in a row that count as failing.
    pub attempts: u32,
    /// Time after the container starts before the first try.
    pub wait_ms: u64,
    /// Liveness only: what a failing instance gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub strategy: Option<Strategy>,
    #[serde(default)]
    pub source: CheckSource,
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
pub const DEFAULT_ATTEMPTS: u32 = 5;
pub const DEFAULT_WAIT: Duration = Duration::ZERO;

const MIN_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
const MIN_INTERVAL: Duration = Duration::from_secs(1);
const MAX_INTERVAL: Duration = Duration::from_secs(300);
const MAX_ATTEMPTS: u32 = 100;
const MAX_WAIT: Duration = Duration::from_secs(600);
const MAX_PATH: usize = 1024;
const MAX_CONTENT: usize = 256;
const MAX_KEEP: u32 = 1000;

impl Check {
    /// A check with the default timing: `timeout 2s`, `interval 2s`, `attempts 5`, `wait 0s`.
    pub fn new(process: &str, kind: CheckKind, path: &str) -> Check {
        Check {
            process: process.to_string(),
            kind,
            path: path.to_string(),
            status: None,
            content: None,
            timeout_ms: DEFAULT_TIMEOUT.as_millis() as u64,
            interval_ms: DEFAULT_INTERVAL.as_millis() as u64,
            attempts: DEFAULT_ATTEMPTS,
            wait_ms: DEFAULT_WAIT.as_millis() as u64,
            strategy: None,
            source: CheckSource::Cli,
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
    pub fn wait(&self) -> Duration {
        Duration::from_millis(self.wait_ms)
    }

    /// `GET /health → 2xx/3xx`, `GET /health → 200 with "ok"`: what passes, for people.
    pub fn expects(&self) -> String {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => "2xx/3xx".into(),
        };
        match &self.content {
            Some(c) => format!("GET {} → {status} with {c:?}", self.path),
            None => format!("GET {} → {status}", self.path),
        }
    }

    /// Everything about the check that is not its process type: in one line, the first thing
    /// wrong.
    pub fn validate(&self) -> Result<(), String> {
        crate::validate_process_type(&self.process).map_err(|e| e.to_string())?;
        validate_path(&self.path)?;
        if let Some(s) = self.status {
            if !(100..=599).contains(&s) {
                return Err(format!(
                    "invalid status {s}: use an HTTP status from 100 to 599"
                ));
            }
        }
        if let Some(c) = &self.content {
            if c.is_empty() || c.len() > MAX_CONTENT || c.chars().any(char::is_control) {
                return Err(format!(
                    "invalid content {}: use 1 to {MAX_CONTENT} characters without control characters",
                    quoted(c)
                ));
            }
        }
        within("timeout", self.timeout(), MIN_TIMEOUT, MAX_TIMEOUT)?;
        within("interval", self.interval(), MIN_INTERVAL, MAX_INTERVAL)?;
        within("wait", self.wait(), Duration::ZERO, MAX_WAIT)?;
        if !(1..=MAX_ATTEMPTS).contains(&self.attempts) {
            return Err(format!(
                "invalid attempts {}: use a whole number from 1 to {MAX_ATTEMPTS}",
                self.attempts
            ));
        }
        if self.strategy.is_some() && self.kind != CheckKind::Liveness {
            return Err(format!(
                "a strategy is for liveness checks only (this one is a {} check)",
                self.kind
            ));
        }
        Ok(())
    }
}

/// The strategy of `process`'s liveness check among `checks`: what its failing instances get.
pub fn strategy_of(checks: &[Check], process: &str) -> Strategy {
    checks
        .iter()
        .find(|c| c.process == process && c.kind == CheckKind::Liveness)
        .and_then(|c| c.strategy)
        .unwrap_or_default()
}

/// A path to `GET`: absolute, printable ASCII without spaces, a query allowed, no fragment.
pub fn validate_path(path: &str) -> Result<(), String> {
    let ok = path.starts_with('/')
        && path.len() <= MAX_PATH
        && !path.starts_with("//")
        && path.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid check path {}: use an absolute path such as /health (printable, no spaces, at most {MAX_PATH} characters)",
            quoted(path)
        ))
    }
}

fn within(what: &str, d: Duration, min: Duration, max: Duration) -> Result<(), String> {
    if d < min || d > max {
        return Err(format!(
            "invalid {what} {}: use {} to {}",
            format_duration(d),
            format_duration(min),
            format_duration(max)
        ));
    }
    Ok(())
}

/// A value as the user wrote it, quoted and cut short, for a message.
fn quoted(s: &str) -> String {
    let cut: String = s.chars().take(60).collect();
    format!("{cut:?}")
}

/// A duration as the CLI and app settings take it: `2s`, `500ms`, `1m30s`; a bare number is
/// seconds. `what` names the value in the message.
pub fn parse_duration(what: &str, text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "invalid {what} {}: use a duration such as 2s, 500ms or 1m",
            quoted(text)
        )
    };
    if t.is_empty() || t.starts_with('-') || t.starts_with('+') {
        return Err(bad());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<u64>().map(Duration::from_secs).map_err(|_| bad());
    }
    humantime::parse_duration(t).map_err(|_| bad())
}

/// `2s`, `500ms`, `1m30s`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    // Fractions of a second are said only where they matter: below a minute.
    if !ms.is_multiple_of(1000) && ms < 60_000 {
        return if ms < 1000 {
            format!("{ms}ms")
        } else {
            let fraction = format!("{:03}", ms % 1000);
            format!("{}.{}s", ms / 1000, fraction.trim_end_matches('0'))
        };
    }
    let s = ms / 1000;
    let mut out = String::new();
    for (n, unit) in [(s / 3600, "h"), (s % 3600 / 60, "m"), (s % 60, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

/// What to clear: every check of `process`, or only the one of `kind`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckTarget {
    pub process: String,
    #[serde(default)]
    pub kind: Option<CheckKind>,
}

/// `PATCH /v1/apps/{app}/checks`: set (replacing the one of the same process type and kind) and
/// clear checks, all at once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChecksUpdate {
    #[serde(default)]
    pub set: Vec<Check>,
    #[serde(default)]
    pub clear: Vec<CheckTarget>,
}

/// The answer to a checks change: the checks now, and the release it made (none before the first
/// deploy, or when nothing changed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChecksChange {
    pub checks: Vec<Check>,
    pub release: Option<u64>,
    pub changed: bool,
}

// ---------------------------------------------------------------------------------------------
// App settings: rollouts and draining
// ---------------------------------------------------------------------------------------------

/// The settings `caas apps:settings:set` takes, by the names it takes them.
pub const SETTINGS: [(&str, &str); 5] = [
    (
        "drain",
        "how long an instance leaving the routes keeps running for requests in flight",
    ),
    (
        "stop-timeout",
        "after the drain: SIGTERM, then this long before SIGKILL",
    ),
    (
        "min-up",
        "how long a new instance must stay up before a rollout counts it",
    ),
    (
        "max-surge",
        "new instances a rollout may start beyond the count, per process type (N or N%)",
    ),
    (
        "max-unavailable",
        "how far below the count a rollout may go, per process type (N or N%)",
    ),
];

/// An app's own values; `None` takes the server's default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_up_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub max_surge: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub max_unavailable: Option<Amount>,
}

const MAX_DRAIN: Duration = Duration::from_secs(3600);
const MAX_STOP_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_MIN_UP: Duration = Duration::from_secs(600);

impl AppSettings {
    /// Sets (`Some`) or resets (`None`) the setting named `key` from its text.
    pub fn apply(&mut self, key: &str, value: Option<&str>) -> Result<(), String> {
        let ms = |what: &str, text: &str, max: Duration| -> Result<u64, String> {
            let d = parse_duration(what, text)?;
            within(what, d, Duration::ZERO, max)?;
            Ok(d.as_millis() as u64)
        };
        match (key, value) {
            ("drain", v) => self.drain_ms = v.map(|t| ms(key, t, MAX_DRAIN)).transpose()?,
            ("stop-timeout", v) => {
                self.stop_timeout_ms = v.map(|t| ms(key, t, MAX_STOP_TIMEOUT)).transpose()?
            }
            ("min-up", v) => self.min_up_ms = v.map(|t| ms(key, t, MAX_MIN_UP)).transpose()?,
            ("max-surge", v) => self.max_surge = v.map(|t| Amount::parse(key, t)).transpose()?,
            ("max-unavailable", v) => {
                self.max_unavailable = v.map(|t| Amount::parse(key, t)).transpose()?
            }
            _ => {
                let names: Vec<&str> = SETTINGS.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "unknown setting {}: use {}",
                    quoted(key),
                    names.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// A rollout must be able to move: with no surge and no unavailability it never could.
    pub fn validate(&self, defaults: &AppSettings) -> Result<(), String> {
        let surge = self.max_surge.or(defaults.max_surge);
        let unavailable = self.max_unavailable.or(defaults.max_unavailable);
        if surge.is_some_and(Amount::is_zero) && unavailable.is_some_and(Amount::is_zero) {
            return Err(
                "max-surge and max-unavailable cannot both be 0: a rollout could never start a new instance"
                    .into(),
            );
        }
        Ok(())
    }

    /// The value of `key` for people (`30s`, `25%`), if set.
    pub fn show(&self, key: &str) -> Option<String> {
        let d = |ms: Option<u64>| ms.map(|ms| format_duration(Duration::from_millis(ms)));
        match key {
            "drain" => d(self.drain_ms),
            "stop-timeout" => d(self.stop_timeout_ms),
            "min-up" => d(self.min_up_ms),
            "max-surge" => self.max_surge.map(|a| a.to_string()),
            "max-unavailable" => self.max_unavailable.map(|a| a.to_string()),
            _ => None,
        }
    }
}

/// A number of instances, or a share of the count (`25%`: of 10, 3 for a surge, rounded up; 2 for
/// unavailability, rounded down, as Kubernetes rounds them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Count(u32),
    Percent(u32),
}

impl Amount {
    fn parse(what: &str, text: &str) -> Result<Amount, String> {
        let t = text.trim();
        let bad = || {
            format!(
                "invalid {what} {}: use a number of instances (2) or a share of the count (25%)",
                quoted(text)
            )
        };
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
        if let Some(p) = t.strip_suffix('%') {
            if !digits(p) {
                return Err(bad());
            }
            let p: u32 = p.parse().map_err(|_| bad())?;
            if p > 100 {
                return Err(format!("invalid {what} {}: use 0% to 100%", quoted(text)));
            }
            return Ok(Amount::Percent(p));
        }
        if !digits(t) {
            return Err(bad());
        }
        let n: u32 = t.parse().map_err(|_| bad())?;
        if n > MAX_KEEP {
            return Err(format!(
                "invalid {what} {}: use 0 to {MAX_KEEP}",
                quoted(text)
            ));
        }
        Ok(Amount::Count(n))
    }

    fn is_zero(self) -> bool {
        matches!(self, Amount::Count(0) | Amount::Percent(0))
    }

    /// Instances for a count of `n`, a share rounded up (`up`) or down.
    pub fn of(self, n: u32, up: bool) -> u32 {
        match self {
            Amount::Count(c) => c,
            Amount::Percent(p) => {
                let x = u64::from(n) * u64::from(p);
                let r = if up { x.div_ceil(100) } else { x / 100 };
                r as u32
            }
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Amount::parse("amount", &s).map_err(serde::de::Error::custom)
    }
}

/// `PATCH /v1/apps/{app}/settings`: set (a value as `caas apps:settings:set` takes it) or reset
/// (`null`) settings by name, all at once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SettingsUpdate {
    pub values: BTreeMap<String, Option<String>>,
}

/// `GET /v1/apps/{app}/settings` and the answer to a change: what the app sets, and the server's
/// defaults for the rest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SettingsView {
    pub app: String,
    pub settings: AppSettings,
    pub defaults: AppSettings,
}

#[cfg(test)]
mod tests;
