//! The Docker Engine, reached over its local socket. The only module that imports bollard; the
//! rest of caasd sees the narrow types below.

mod attach;
mod containers;
mod exec;
mod images;
mod networks;
mod stats;

pub use attach::{Attached, Stdio};
pub use exec::ExecResult;
pub use stats::Usage;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
    TagImageOptionsBuilder,
};
use bollard::Docker;
use bytes::Bytes;
use caas_api::Timestamp;
use futures_util::{Stream, StreamExt, TryStreamExt};
use std::collections::HashMap;

/// The engine's log of one container: at most this many files of this size.
const CONTAINER_LOG_SIZE: &str = "10m";
const CONTAINER_LOG_FILES: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the Docker engine is not answering at its socket ({0}); is dockerd running?")]
    Unavailable(String),
    #[error("host port is taken")]
    PortTaken,
    #[error("not found in the Docker engine")]
    NotFound,
    #[error("Docker engine: {0}")]
    Other(String),
}

impl From<BollardError> for EngineError {
    fn from(e: BollardError) -> Self {
        match e {
            BollardError::DockerResponseServerError {
                status_code: 404, ..
            } => Self::NotFound,
            BollardError::DockerResponseServerError { message, .. }
                if message.contains("port is already allocated")
                    || message.contains("address already in use") =>
            {
                Self::PortTaken
            }
            BollardError::DockerResponseServerError { message, .. } => Self::Other(message),
            BollardError::HyperResponseError { .. }
            | BollardError::IOError { .. }
            | BollardError::SocketNotFoundError(_) => Self::Unavailable(e.to_string()),
            other => Self::Other(other.to_string()),
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[derive(Clone)]
pub struct Engine {
    docker: Docker,
}

#[derive(Debug, Clone)]
pub struct EngineInfo {
    pub memory_mb: u64,
    pub cpus: u32,
    /// Where the engine keeps images and containers (`/var/lib/docker`).
    pub root_dir: Option<std::path::PathBuf>,
}

/// What a container runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// The image's own entrypoint and cmd.
    ImageDefault,
    /// `/bin/sh -c TEXT`, replacing the image's entrypoint.
    Shell(String),
    /// This argument vector, replacing the image's entrypoint.
    Exec(Vec<String>),
}

/// What to run. Resource limits and hardening are always applied; callers cannot turn them off.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub command: Command,
    /// `uid:gid` or a user name; the image's user when `None`.
    pub user: Option<String>,
    /// Named volumes: `(volume, path in the container)`.
    pub volumes: Vec<(String, String)>,
    pub env: Vec<(String, String)>,
    pub labels: HashMap<String, String>,
    /// Publish `container_port` on `host_ip:host_port`.
    pub publish: Option<Publish>,
    pub memory_mb: u64,
    pub cpu_shares: u64,
    pub pids_limit: i64,
    /// A hard CPU cap in cores (CFS quota), beside the shares.
    pub cpus: Option<f64>,
    /// The network to join instead of the engine's default bridge.
    pub network: Option<String>,
    /// Other names the container answers to on `network`.
    pub aliases: Vec<String>,
    /// Networks joined besides `network` before it starts (an app's add-ons'); one missing on
    /// this engine is skipped with a warning.
    pub extra_networks: Vec<String>,
    /// The engine restarts it when it stops by itself or the engine restarts (add-on services,
    /// which no agent watches); `false`: the agent decides.
    pub restart: bool,
    /// Standard streams for an attached client (one-off processes); none for instances.
    pub stdio: Stdio,
}

#[derive(Debug, Clone, Copy)]
pub struct Publish {
    pub host_ip: std::net::IpAddr,
    pub host_port: u16,
    pub container_port: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub labels: HashMap<String, String>,
    pub running: bool,
    /// Host port of the first published port.
    pub host_port: Option<u16>,
    /// The container's own address on its network, when it has one.
    pub ip: Option<std::net::IpAddr>,
}

/// The run configuration an image is committed with.
#[derive(Debug, Clone, Default)]
pub struct ImageConfig {
    pub user: Option<String>,
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
    pub labels: HashMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExitInfo {
    pub exit_code: i64,
    pub oom_killed: bool,
    pub finished_at: Option<Timestamp>,
}

/// An image as the engine knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRefs {
    /// The content id (`sha256:...`).
    pub id: String,
    /// `repo:tag` references naming it.
    pub tags: Vec<String>,
    pub labels: HashMap<String, String>,
}

/// What became of an image reference asked to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// A container still uses it, or (by id) other tags still name it: nothing was removed.
    InUse,
}

/// Engines before API 1.44 list an untagged image with the pseudo tag `<none>:<none>`.
fn real_tags(tags: Vec<String>) -> Vec<String> {
    tags.into_iter().filter(|t| t != "<none>:<none>").collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream2 {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogChunk {
    pub stream: Stream2,
    /// Docker's own timestamp of the line, with nanoseconds as Docker gives them.
    pub ts_nanos: u128,
    pub text: String,
}

fn parse_docker_time(s: &str) -> Option<Timestamp> {
    humantime::parse_rfc3339_weak(s)
        .ok()
        .map(Timestamp::from)
        .filter(|t| t.millis() > 0)
}

/// `2026-11-25T07:45:01.123456789Z` → nanoseconds since the epoch.
fn parse_nanos(s: &str) -> Option<u128> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos())
}

impl Engine {
    /// Connects to the local socket (or `DOCKER_HOST`) and agrees on an API version, so both the
    /// Debian 20.10 engine and newer ones work.
    pub async fn connect() -> Result<Self> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        docker
            .ping()
            .await
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        Ok(Self { docker })
    }

    pub async fn info(&self) -> Result<EngineInfo> {
        let info = self.docker.info().await?;
        Ok(EngineInfo {
            memory_mb: info.mem_total.unwrap_or(0).max(0) as u64 / (1024 * 1024),
            cpus: info.ncpu.unwrap_or(1).max(1) as u32,
            root_dir: info.docker_root_dir.map(Into::into),
        })
    }

    // --- images ---------------------------------------------------------------------------
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_timestamps() {
        assert_eq!(parse_docker_time("0001-01-01T00:00:00Z"), None);
        let t = parse_docker_time("2026-11-25T07:45:01.123456789Z").unwrap();
        assert_eq!(t.millis() % 1000, 123);
        assert_eq!(
            parse_nanos("2026-11-25T07:45:01.123456789Z").unwrap() % 1_000_000_000,
            123_456_789
        );
    }
}
