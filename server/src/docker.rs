//! The Docker Engine, reached over its local socket. The only module that imports bollard; the
//! rest of caasd sees the narrow types below.

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
        })
    }

    // --- images ---------------------------------------------------------------------------

    /// The content id of an image reference or id, if the engine has it.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(reference).await {
            Ok(img) => Ok(img.id),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound => Ok(None),
                // A malformed reference is "no such image" to the caller.
                EngineError::Other(m) if m.contains("invalid reference") => Ok(None),
                other => Err(other),
            },
        }
    }

    pub async fn tag_image(&self, image: &str, repo: &str, tag: &str) -> Result<()> {
        let opts = TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
        self.docker.tag_image(image, Some(opts)).await?;
        Ok(())
    }

    /// `docker save` of one image, streamed (for agents whose engine lacks it). Runs in a task of
    /// its own that ends with the stream.
    pub fn export_image(&self, id: &str) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
        let docker = self.docker.clone();
        let id = id.to_string();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut stream = Box::pin(docker.export_image(&id));
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(EngineError::from);
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }

    /// An image's id, tags and labels, if the engine has it.
    pub async fn image_refs(&self, reference: &str) -> Result<Option<ImageRefs>> {
        match self.docker.inspect_image(reference).await {
            Ok(img) => Ok(img.id.map(|id| ImageRefs {
                id,
                tags: real_tags(img.repo_tags.unwrap_or_default()),
                labels: img.config.and_then(|c| c.labels).unwrap_or_default(),
            })),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound => Ok(None),
                EngineError::Other(m) if m.contains("invalid reference") => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Images (tagged or not) carrying all the given labels.
    pub async fn images_labelled(&self, labels: &[(&str, &str)]) -> Result<Vec<ImageRefs>> {
        let filters: HashMap<String, Vec<String>> = HashMap::from([(
            "label".to_string(),
            labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        )]);
        let opts = ListImagesOptionsBuilder::new()
            .all(false)
            .filters(&filters)
            .build();
        Ok(self
            .docker
            .list_images(Some(opts))
            .await?
            .into_iter()
            .map(|i| ImageRefs {
                id: i.id,
                tags: real_tags(i.repo_tags),
                labels: i.labels,
            })
            .collect())
    }

    /// Removes a tag, or an image by id, without force: Docker then refuses to take away the
    /// last reference of an image a container still uses (answered as `InUse`), and an image by
    /// id that other tags still name. A reference that is already gone counts as removed.
    pub async fn remove_image(&self, reference: &str) -> Result<Removal> {
        match self
            .docker
            .remove_image(
                reference,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await
        {
            Ok(_) => Ok(Removal::Removed),
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(Removal::InUse),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound => Ok(Removal::Removed),
                other => Err(other),
            },
        }
    }

    /// Removes a tag (and the image, if that was its last tag and nothing uses it).
    pub async fn untag(&self, reference: &str) -> Result<()> {
        match self
            .docker
            .remove_image(
                reference,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound => Ok(()),
                other => Err(other),
            },
        }
    }

    /// `docker load` of a `docker save` archive, streamed. Returns the references and ids the
    /// engine reports as loaded.
    pub async fn load_images<S, E>(&self, archive: S) -> Result<Vec<String>>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let opts = bollard::query_parameters::ImportImageOptionsBuilder::new()
            .quiet(true)
            .build();
        let mut progress = Box::pin(self.docker.import_image_stream(opts, archive, None));
        let mut loaded = Vec::new();
        while let Some(info) = progress.next().await {
            let info = info.map_err(|e| match e {
                BollardError::DockerStreamError { error } => EngineError::Other(error),
                other => EngineError::from(other),
            })?;
            for line in info.stream.unwrap_or_default().lines() {
                if let Some(name) = line
                    .strip_prefix("Loaded image: ")
                    .or_else(|| line.strip_prefix("Loaded image ID: "))
                {
                    loaded.push(name.trim().to_string());
                }
            }
        }
        Ok(loaded)
    }

    // --- containers -----------------------------------------------------------------------

    /// Every container, running or not, matching all `values` of one filter kind.
    async fn list_all(
        &self,
        kind: &str,
        values: Vec<String>,
    ) -> Result<Vec<bollard::models::ContainerSummary>> {
        let filters: HashMap<String, Vec<String>> = HashMap::from([(kind.to_string(), values)]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        Ok(self.docker.list_containers(Some(opts)).await?)
    }

    /// Containers, running or not, carrying all the given labels.
    pub async fn list_containers(&self, labels: &[(&str, &str)]) -> Result<Vec<ContainerInfo>> {
        let list = self
            .list_all(
                "label",
                labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            )
            .await?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                use bollard::models::ContainerSummaryStateEnum as S;
                let state = c.state?;
                // A container being removed is gone as far as callers are concerned.
                if matches!(state, S::REMOVING | S::DEAD) {
                    return None;
                }
                let running = matches!(state, S::RUNNING | S::RESTARTING | S::PAUSED | S::STOPPING);
                let host_port = c
                    .ports
                    .unwrap_or_default()
                    .iter()
                    .find_map(|p| p.public_port);
                let ip = c
                    .network_settings
                    .and_then(|n| n.networks)
                    .into_iter()
                    .flat_map(|m| m.into_values())
                    .find_map(|e| e.ip_address.filter(|a| !a.is_empty())?.parse().ok());
                Some(ContainerInfo {
                    id: c.id?,
                    labels: c.labels.unwrap_or_default(),
                    running,
                    host_port,
                    ip,
                })
            })
            .collect())
    }

    /// `(id, name)` of containers, running or not, whose name starts with `prefix`.
    pub async fn containers_named(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let list = self.list_all("name", vec![prefix.to_string()]).await?;
        // Docker's name filter matches anywhere in the name; keep true prefixes only.
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let name = c
                    .names
                    .iter()
                    .flatten()
                    .map(|n| n.trim_start_matches('/'))
                    .find(|n| n.starts_with(prefix))?
                    .to_string();
                Some((c.id?, name))
            })
            .collect())
    }

    /// When a container last started, if it has.
    pub async fn started_at(&self, id: &str) -> Result<Option<Timestamp>> {
        let c = self.docker.inspect_container(id, None).await?;
        Ok(c.state
            .and_then(|s| s.started_at)
            .as_deref()
            .and_then(parse_docker_time))
    }

    /// How a stopped container ended, and the host port it was created with (for an exited
    /// container the summary lists no ports).
    pub async fn exit_info(&self, id: &str) -> Result<(ExitInfo, Option<u16>)> {
        let c = self.docker.inspect_container(id, None).await?;
        let state = c.state.unwrap_or_default();
        let port = c
            .host_config
            .and_then(|h| h.port_bindings)
            .and_then(|m| {
                m.into_values()
                    .flatten()
                    .flatten()
                    .find_map(|b| b.host_port)
            })
            .and_then(|p| p.parse().ok());
        Ok((
            ExitInfo {
                exit_code: state.exit_code.unwrap_or(-1),
                oom_killed: state.oom_killed.unwrap_or(false),
                finished_at: state.finished_at.as_deref().and_then(parse_docker_time),
            },
            port,
        ))
    }

    /// Creates and starts a container. On `PortTaken` the half-made container is removed, so the
    /// caller can retry with another port.
    pub async fn run(&self, spec: &ContainerSpec) -> Result<String> {
        let id = self.create(spec).await?;
        if let Err(e) = self.docker.start_container(&id, None).await {
            let _ = self.remove(&id).await;
            return Err(e.into());
        }
        Ok(id)
    }

    /// Creates a container without starting it.
    pub async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let port_key = spec.publish.map(|p| format!("{}/tcp", p.container_port));
        let host_config = HostConfig {
            memory: Some((spec.memory_mb * 1024 * 1024) as i64),
            // Same as memory: no swap on top of the limit.
            memory_swap: Some((spec.memory_mb * 1024 * 1024) as i64),
            cpu_shares: Some(spec.cpu_shares as i64),
            pids_limit: Some(spec.pids_limit),
            security_opt: Some(vec!["no-new-privileges".into()]),
            cap_drop: Some(vec!["ALL".into()]),
            privileged: Some(false),
            // The agent decides about restarts (with back-off and reporting), not the engine.
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            port_bindings: spec.publish.map(|p| {
                HashMap::from([(
                    format!("{}/tcp", p.container_port),
                    Some(vec![PortBinding {
                        host_ip: Some(p.host_ip.to_string()),
                        host_port: Some(p.host_port.to_string()),
                    }]),
                )])
            }),
            init: Some(true),
            // The engine's own copy of the output, which the agent follows, is rotated: a chatty
            // app cannot fill the disk. (caas keeps its own bounded copy in DATA_DIR/logs.)
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), CONTAINER_LOG_SIZE.to_string()),
                    ("max-file".to_string(), CONTAINER_LOG_FILES.to_string()),
                ])),
            }),
            binds: (!spec.volumes.is_empty()).then(|| {
                spec.volumes
                    .iter()
                    .map(|(v, path)| format!("{v}:{path}"))
                    .collect()
            }),
            ..Default::default()
        };
        let (entrypoint, cmd) = match &spec.command {
            Command::ImageDefault => (None, None),
            Command::Shell(c) => (
                Some(vec![]),
                Some(vec!["/bin/sh".into(), "-c".into(), c.clone()]),
            ),
            Command::Exec(argv) => (Some(vec![]), Some(argv.clone())),
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd,
            entrypoint,
            user: spec.user.clone(),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(spec.labels.clone()),
            exposed_ports: port_key.map(|k| vec![k]),
            host_config: Some(host_config),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        Ok(self.docker.create_container(Some(opts), body).await?.id)
    }

    pub async fn start(&self, id: &str) -> Result<()> {
        self.docker.start_container(id, None).await?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace_secs`.
    pub async fn stop(&self, id: &str, grace_secs: i32) -> Result<()> {
        let opts = StopContainerOptionsBuilder::new().t(grace_secs).build();
        match self.docker.stop_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            // 304: already stopped.
            Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a container, killing it if it still runs.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound => Ok(()),
                // "removal already in progress"
                EngineError::Other(m) if m.contains("already in progress") => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Waits for a container to exit; its exit code.
    pub async fn wait(&self, id: &str) -> Result<i64> {
        let mut stream = Box::pin(self.docker.wait_container(id, None));
        match stream.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(e.into()),
            None => Err(EngineError::Other(format!("waiting for {id}: no answer"))),
        }
    }

    /// Extracts a tar stream into a container's filesystem at `path` (a directory that exists).
    pub async fn upload_tar<S>(&self, id: &str, path: &str, tar: S) -> Result<()>
    where
        S: Stream<Item = Bytes> + Send + 'static,
    {
        let opts = bollard::query_parameters::UploadToContainerOptionsBuilder::new()
            .path(path)
            .build();
        self.docker
            .upload_to_container(id, Some(opts), bollard::body_stream(tar))
            .await?;
        Ok(())
    }

    /// A tar stream of `path` in a container (its last component is the tar's top folder).
    pub fn download_tar(
        &self,
        id: &str,
        path: &str,
    ) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
        let opts = bollard::query_parameters::DownloadFromContainerOptionsBuilder::new()
            .path(path)
            .build();
        self.docker
            .download_from_container(id, Some(opts))
            .map_err(EngineError::from)
    }

    /// Makes an image of a container's filesystem with the given run configuration.
    pub async fn commit(&self, id: &str, image: &ImageConfig) -> Result<String> {
        let opts = bollard::query_parameters::CommitContainerOptionsBuilder::new()
            .container(id)
            .pause(false)
            .build();
        let config = bollard::models::ContainerConfig {
            user: image.user.clone(),
            env: Some(image.env.clone()),
            cmd: Some(image.cmd.clone()),
            entrypoint: Some(vec![]),
            working_dir: image.working_dir.clone(),
            labels: Some(image.labels.clone()),
            ..Default::default()
        };
        let created = self.docker.commit_container(opts, config).await?;
        Ok(created.id)
    }

    /// The size of an image, in bytes.
    pub async fn image_size(&self, reference: &str) -> Result<u64> {
        Ok(self
            .docker
            .inspect_image(reference)
            .await?
            .size
            .unwrap_or(0)
            .max(0) as u64)
    }

    /// Creates a named volume with labels, or finds the existing one.
    pub async fn ensure_volume(&self, name: &str, labels: HashMap<String, String>) -> Result<()> {
        let req = bollard::models::VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..Default::default()
        };
        self.docker.create_volume(req).await?;
        Ok(())
    }

    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        match self
            .docker
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound => Ok(()),
                other => Err(other),
            },
        }
    }

    /// `docker build` of a context tar, streaming the builder's output. The stream ends with an
    /// error item when the build fails. The build runs in a task of its own that ends with it.
    pub fn build_image<S>(
        &self,
        context: S,
        tag: &str,
        memory_mb: u64,
        labels: &HashMap<String, String>,
    ) -> impl Stream<Item = Result<String>> + Send + 'static
    where
        S: Stream<Item = Bytes> + Send + 'static,
    {
        let opts = bollard::query_parameters::BuildImageOptionsBuilder::new()
            .t(tag)
            .rm(true)
            .forcerm(true)
            .pull("false")
            .memory((memory_mb * 1024 * 1024).min(i32::MAX as u64) as i32)
            .labels(labels)
            .build();
        // bollard's stream borrows the client; a clone moved into a task lets it outlive `self`.
        let docker = self.docker.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            let mut stream =
                Box::pin(docker.build_image(opts, None, Some(bollard::body_stream(context))));
            loop {
                // A build whose caller went away (cancelled: its app was destroyed) must stop
                // now, not at its next line of output: dropping the request makes the engine
                // cancel the build and remove its step container.
                let item = tokio::select! {
                    item = stream.next() => item,
                    _ = tx.closed() => return,
                };
                let Some(item) = item else { return };
                let item = match item {
                    Ok(info) => match info.error_detail.and_then(|d| d.message) {
                        Some(detail) => Err(EngineError::Other(detail)),
                        None => Ok(info.stream.or(info.status).unwrap_or_default()),
                    },
                    Err(BollardError::DockerStreamError { error }) => {
                        Err(EngineError::Other(error))
                    }
                    Err(e) => Err(e.into()),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }

    /// Follows a container's stdout and stderr from `since_secs` (Unix seconds; 0 = from the
    /// start). The stream ends when the container stops.
    pub fn follow_logs(
        &self,
        id: &str,
        since_secs: i64,
    ) -> impl Stream<Item = Result<LogChunk>> + Send + 'static {
        let opts = LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .since(since_secs.clamp(0, i32::MAX as i64) as i32)
            .build();
        self.docker
            .logs(id, Some(opts))
            .map_err(EngineError::from)
            .map(|item| {
                let item = item?;
                let (stream, message) = match item {
                    bollard::container::LogOutput::StdErr { message } => (Stream2::Stderr, message),
                    other => (Stream2::Stdout, other.into_bytes()),
                };
                let raw = String::from_utf8_lossy(&message);
                let (ts, text) = raw.split_once(' ').unwrap_or(("", &raw));
                Ok(LogChunk {
                    stream,
                    ts_nanos: parse_nanos(ts).unwrap_or(0),
                    text: text.trim_end_matches(['\n', '\r']).to_string(),
                })
            })
    }
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
