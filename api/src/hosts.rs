//! Hosts: the machines that run instances (`GET /v1/hosts`, `caas hosts:add`), and what each
//! says about its disk.

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// A host running an agent: `GET /v1/hosts`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Host {
    pub id: String,
    pub name: String,
    /// Address instances are published on.
    pub address: String,
    pub state: HostState,
    /// Memory the host offers to the scheduler.
    pub memory_mb: u64,
    /// Memory the scheduler counts as taken by the instances placed on the host: the sum of
    /// their reservations.
    #[serde(default)]
    pub reserved_mb: u64,
    /// The sum of its instances' memory limits may reach `memory_mb` times this.
    #[serde(default)]
    pub overcommit: Option<f64>,
    /// Memory its instances use now (from the engine's stats), when the host has reported it.
    #[serde(default)]
    pub used_mb: Option<u64>,
    /// The engine's filesystem on the host (images, containers), as last reported.
    #[serde(default)]
    pub disk: Option<DiskUsage>,
    pub cpus: u32,
    pub instances: u32,
    pub registered_at: Timestamp,
}

/// Total and free bytes of a filesystem.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DiskUsage {
    pub total_bytes: u64,
    pub free_bytes: u64,
}

/// `POST /v1/hosts`: let a host join, once, with a token made for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddHost {
    pub name: String,
    /// The address it will register (that the gateway reaches it at); without one, the address
    /// it registers from.
    #[serde(default)]
    pub address: Option<String>,
    /// How long the token works, seconds (default an hour).
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

/// The answer to `POST /v1/hosts`: the one-time join token, and the commands that use it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostJoin {
    pub name: String,
    pub token: String,
    pub expires_at: Timestamp,
    /// `./install.sh --agent ...` to run on the host, from a checkout of caas.
    pub install_command: String,
    /// `caasd agent ...`, for a host that has the binary already.
    pub agent_command: String,
    /// `sha256:...` of the control plane's certificate, which the agent pins at join.
    #[serde(default)]
    pub fingerprint: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    Ready,
    Lost,
}
