//! Containers: listing, creating with caas's limits, starting, stopping, removing, their output
//! and files; and volumes.

use super::*;

impl Engine {
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
                    .flat_map(|m| {
                        // The installation's network first: an app on its add-ons' networks
                        // is reached (by the gateway, the probes) on its own.
                        let mut nets: Vec<_> = m.into_iter().collect();
                        nets.sort_by_key(|(name, _)| crate::labels::is_addon_network(name));
                        nets.into_iter().map(|(_, e)| e)
                    })
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
            nano_cpus: spec.cpus.map(|c| (c * 1e9).round() as i64),
            pids_limit: Some(spec.pids_limit),
            security_opt: Some(vec!["no-new-privileges".into()]),
            cap_drop: Some(vec!["ALL".into()]),
            privileged: Some(false),
            // The agent decides about restarts (with back-off and reporting), not the engine.
            restart_policy: Some(RestartPolicy {
                name: Some(if spec.restart {
                    RestartPolicyNameEnum::UNLESS_STOPPED
                } else {
                    RestartPolicyNameEnum::NO
                }),
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
            network_mode: spec.network.clone(),
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
            tty: Some(spec.stdio.tty),
            open_stdin: Some(spec.stdio.stdin),
            attach_stdin: Some(spec.stdio.stdin),
            stdin_once: Some(spec.stdio.stdin),
            host_config: Some(host_config),
            networking_config: spec
                .network
                .as_ref()
                .filter(|_| !spec.aliases.is_empty())
                .map(|n| bollard::models::NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(
                        n.clone(),
                        bollard::models::EndpointSettings {
                            aliases: Some(spec.aliases.clone()),
                            ..Default::default()
                        },
                    )])),
                }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        let id = self.docker.create_container(Some(opts), body).await?.id;
        for net in &spec.extra_networks {
            // Engines before API 1.44 take one network at creation: the others join before
            // the start. A network this engine lacks (an add-on on another host) is skipped.
            match self.connect_network(net, &id, Vec::new()).await {
                Ok(()) => {}
                Err(EngineError::NotFound) => {
                    tracing::warn!("{}: network {net} is not on this host; skipped", spec.name)
                }
                Err(e) => {
                    let _ = self.remove(&id).await;
                    return Err(e);
                }
            }
        }
        Ok(id)
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
