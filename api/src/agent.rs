//! The agent protocol: how a host running `caasd agent` (or the agent embedded in `caasd`) joins
//! the cluster, learns what to run and reports what it runs.
//!
//! 1. `POST /v1/agent/register` with the cluster's join token → a host id and an agent token.
//! 2. `GET /v1/agent/assignments?index=N&wait=SECS` (blocking query): answers at once when the
//!    server's assignment index differs from `N`, else when it changes or `wait` passes.
//! 3. `POST /v1/agent/heartbeat` every couple of seconds and on every change, with the state of
//!    every instance the agent runs. Missed heartbeats mark the host lost.
//! 4. `POST /v1/agent/logs` with batches of app output and platform events.
//!
//! The server's assignments are the truth: the agent starts what is assigned and missing, and
//! stops every container of this cluster on its host that is not assigned.

use crate::{LogLine, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `POST /v1/agent/register`, authenticated with the join token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterRequest {
    /// Human name of the host, unique in the cluster (re-registering a name replaces the host).
    pub name: String,
    /// IP address instances are published on and the gateway connects to.
    pub address: String,
    pub memory_mb: u64,
    pub cpus: u32,
    /// Inclusive range of host ports instances may be published on.
    pub port_min: u16,
    pub port_max: u16,
    /// The agent runs on the control plane's own machine (the embedded agent), so the gateway
    /// can reach instances at their container addresses instead of through published ports.
    #[serde(default)]
    pub colocated: bool,
    /// The sum of its instances' memory limits may reach `memory_mb` times this.
    #[serde(default)]
    pub overcommit: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterResponse {
    pub host_id: String,
    /// The agent's own token (shown once; the server keeps only its hash).
    pub token: String,
    /// Labels every container of this cluster, so installations sharing one Docker engine never
    /// touch each other's containers.
    pub cluster_id: String,
}

/// How the agent decides an instance is healthy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HealthCheck {
    /// A TCP connect to the published port succeeds.
    Tcp,
    /// The process is running (for processes that do not listen, like workers).
    Running,
}

/// One instance the server wants on this host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Assignment {
    /// Allocation id; also a container label, so a restarted agent adopts what runs.
    pub id: String,
    pub app: String,
    pub release: u64,
    pub process: String,
    pub index: u32,
    /// Image id (`sha256:...`).
    pub image: String,
    /// Shell command (`/bin/sh -c`); `None` runs the image's entrypoint/cmd.
    pub command: Option<String>,
    /// Environment, `PORT` included for processes that listen.
    pub env: BTreeMap<String, String>,
    /// The port the process listens on inside the container, published on a host port.
    pub container_port: Option<u16>,
    pub memory_mb: u64,
    pub cpu_shares: u64,
    pub pids_limit: i64,
    /// A hard CPU cap in cores, if the process type has one (`caas ps:resize --cpu`).
    #[serde(default)]
    pub cpus: Option<f64>,
    /// How it is checked when its release has no check for its process type.
    pub health: HealthCheck,
    /// Its release's checks of its process type (`caas checks`).
    #[serde(default)]
    pub checks: Vec<crate::checks::Check>,
    /// SIGTERM to SIGKILL when it is stopped; `None`: the agent's default (10 s).
    #[serde(default)]
    pub stop_timeout_ms: Option<u64>,
    /// The networks of the add-ons its app is attached to, joined besides the installation's.
    #[serde(default)]
    pub networks: Vec<String>,
}

impl Assignment {
    /// `web.1`
    pub fn instance_name(&self) -> String {
        format!("{}.{}", self.process, self.index)
    }
}

/// `GET /v1/agent/assignments` answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Assignments {
    pub index: u64,
    pub assignments: Vec<Assignment>,
}

/// What the agent observes of one instance.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ObservedState {
    /// Created or running, not yet healthy.
    Starting,
    /// Running and healthy.
    Up,
    /// Running, health check (its liveness check) failing after it had passed.
    Unhealthy,
    /// Running and alive, its readiness check failing: out of the routes until it passes.
    Unready,
    /// Exited; a restart is scheduled with back-off.
    Crashed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceReport {
    pub assignment_id: String,
    pub container_id: String,
    pub state: ObservedState,
    /// Host port the instance is published on.
    pub port: Option<u16>,
    /// `IP:PORT` of the process on its container network, when it listens and has one.
    #[serde(default)]
    pub container_addr: Option<String>,
    pub restarts: u32,
    pub since: Timestamp,
    /// The last check result that counted, while it is not up or a check fails: what the
    /// check saw (`startup check GET /health: answered 500`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// Its last lines of output, while it is not up (a failed rollout says them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<String>,
    /// Found running by an agent that (re)started, and not checked since: `state` (starting)
    /// says nothing yet. The control plane keeps what it knew of the instance, its route
    /// included, until the agent's first probe of it decides.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unchecked: bool,
    /// CPU and memory, read from the engine every few seconds.
    #[serde(default)]
    pub usage: Option<crate::metrics::InstanceUsage>,
}

/// `POST /v1/agent/heartbeat`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Heartbeat {
    pub instances: Vec<InstanceReport>,
    /// Log lines the agent dropped since its last heartbeat (its queue was full).
    #[serde(default)]
    pub dropped_log_lines: u64,
    /// The filesystem of the host's engine (or the agent's data dir), read at each heartbeat.
    #[serde(default)]
    pub disk: Option<crate::DiskUsage>,
    /// The memory the host offers to the scheduler now, MB (`caasd agent --host-memory`), so a
    /// restarted agent's new offer is heard without registering again.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    #[serde(default)]
    pub overcommit: Option<f64>,
}

/// `POST /v1/agent/logs`: a batch of lines, each for one app.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogBatch {
    pub lines: Vec<AppLogLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppLogLine {
    pub app: String,
    pub line: LogLine,
}
