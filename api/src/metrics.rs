//! Wire types of what caas measures and what acts on it: instances' resource use (agents report
//! it in their heartbeats; `caas metrics` shows it), alerts (`/v1/apps/{app}/alerts`) and
//! autoscaling (`/v1/apps/{app}/autoscale`).

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// An instance's resource use, as its agent last read it from the engine.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceUsage {
    /// CPU over the last few seconds, in percent of one core (200 = two cores busy); `None`
    /// until there are two readings.
    #[serde(default)]
    pub cpu_percent: Option<f64>,
    /// CPU time used since the container started, seconds.
    #[serde(default)]
    pub cpu_seconds: f64,
    /// Memory in use (without the inactive page cache), bytes.
    #[serde(default)]
    pub memory_bytes: u64,
    /// The instance's memory limit, bytes.
    #[serde(default)]
    pub memory_limit_bytes: u64,
}

/// One instance in `GET /v1/apps/{app}/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceMetrics {
    /// `web.1`
    pub name: String,
    pub process: String,
    pub release: u64,
    /// `up`, `starting`, ... as `caas ps` says.
    pub state: crate::InstanceState,
    /// `None` when its agent has not read it yet.
    pub usage: Option<InstanceUsage>,
}

/// `GET /v1/apps/{app}/metrics/history`: the app's last hour, one entry a minute, oldest first
/// (the current, unfinished minute last). Memory only on the server: a restart starts it anew.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricsHistory {
    pub app: String,
    pub minutes: Vec<MinuteMetrics>,
}

/// One minute of an app: its traffic through the gateway and its instances' resource use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MinuteMetrics {
    /// The minute's start.
    pub at: Timestamp,
    pub requests: u64,
    /// Requests per second over the minute.
    pub rps: f64,
    /// Answers with a 5xx status.
    pub status_5xx: u64,
    /// Latency's 95th percentile (upper bound of its bucket), ms; `None` without requests.
    pub p95_ms: Option<u64>,
    /// Per process type: the CPU of all its instances together, the minute's average of the
    /// readings, percent of one core; absent without readings.
    #[serde(default)]
    pub cpu_percent: std::collections::BTreeMap<String, f64>,
    /// Per process type: the memory of all its instances together, the minute's highest
    /// reading, bytes.
    #[serde(default)]
    pub memory_bytes: std::collections::BTreeMap<String, u64>,
}

// ---------------------------------------------------------------------------------------------
// Alerts: GET/PUT/DELETE /v1/apps/{app}/alerts
// ---------------------------------------------------------------------------------------------

/// `PUT /v1/apps/{app}/alerts`: the conditions that raise a `caas[alert]` line (and call the
/// webhook) while they hold over the window, and clear it when they stop holding. At least one
/// condition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertSettings {
    /// The 95th percentile of latency above this, ms.
    #[serde(default)]
    pub p95_ms: Option<u64>,
    /// The share of 5xx answers above this, percent (0 < x <= 100).
    #[serde(default)]
    pub error_rate_percent: Option<f64>,
    /// The window the conditions are computed over, seconds (5 to 600).
    #[serde(default = "default_alert_window")]
    pub window_secs: u64,
    /// `http://` or `https://` URL POSTed a JSON [`AlertNotice`] when an alert is raised or
    /// cleared (best effort: bounded, never waited for).
    #[serde(default)]
    pub webhook: Option<String>,
}

fn default_alert_window() -> u64 {
    60
}

/// `GET /v1/apps/{app}/alerts`: the settings and what is raised now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alerts {
    pub app: String,
    /// `None`: no alerts set.
    pub settings: Option<AlertSettings>,
    /// The conditions that hold now: `p95`, `5xx_rate`.
    #[serde(default)]
    pub raised: Vec<String>,
}

/// What the webhook receives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertNotice {
    pub app: String,
    /// `p95` or `5xx_rate`.
    pub alert: String,
    /// `raised` or `cleared`.
    pub state: String,
    /// The `caas[alert]` line's text.
    pub text: String,
    pub at: Timestamp,
}

// ---------------------------------------------------------------------------------------------
// Autoscaling: GET /v1/apps/{app}/autoscale, PUT/DELETE /v1/apps/{app}/autoscale/{process}
// ---------------------------------------------------------------------------------------------

/// `PUT /v1/apps/{app}/autoscale/{process}`: keep the process type between `min` and `max`
/// instances, sized for one target: requests per second per instance over the last 10 s (`web`
/// only), or CPU per instance. Exactly one target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AutoscaleSettings {
    pub min: u32,
    pub max: u32,
    #[serde(default)]
    pub rps: Option<f64>,
    /// Percent of one core.
    #[serde(default)]
    pub cpu_percent: Option<f64>,
    /// How long the load must stay low before instances are removed, seconds.
    #[serde(default = "default_cooldown")]
    pub cooldown_secs: u64,
}

pub const DEFAULT_COOLDOWN_SECS: u64 = 300;

fn default_cooldown() -> u64 {
    DEFAULT_COOLDOWN_SECS
}

/// One autoscaled process type and where it stands: `GET /v1/apps/{app}/autoscale`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Autoscale {
    pub process: String,
    pub settings: AutoscaleSettings,
    /// The formation's count now.
    pub quantity: u32,
    /// What the autoscaler last measured: requests/s over the last 10 s (all instances), or the
    /// mean CPU percent of the running instances.
    #[serde(default)]
    pub observed: Option<f64>,
    /// Its last decision, as its `caas[autoscale]` line said it.
    #[serde(default)]
    pub last_decision: Option<String>,
    #[serde(default)]
    pub last_decision_at: Option<Timestamp>,
}
