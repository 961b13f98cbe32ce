//! Commands run inside running containers (`docker exec`), and what add-on services need
//! besides: their own networks, restarts, whether their container and volume exist.

use super::*;
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{EndpointSettings, ExecConfig, NetworkConnectRequest};
use tokio::io::AsyncWriteExt;

/// What a command run to its end said.
#[derive(Debug, Clone)]
pub struct ExecResult {
    pub code: i64,
    pub stderr: String,
}

/// Output kept from one exec: enough for a health check's or a restore's message.
const EXEC_KEEP: usize = 64 * 1024;

impl Engine {
    async fn start_exec(
        &self,
        container: &str,
        argv: &[String],
        user: Option<&str>,
        stdin: bool,
    ) -> Result<(String, StartExecResults)> {
        let config = ExecConfig {
            attach_stdin: Some(stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(argv.to_vec()),
            user: user.map(str::to_string),
            ..Default::default()
        };
        let id = self.docker.create_exec(container, config).await?.id;
        let opts = StartExecOptions {
            detach: false,
            tty: false,
            output_capacity: Some(64 * 1024),
        };
        let started = self.docker.start_exec(&id, Some(opts)).await?;
        Ok((id, started))
    }

    async fn exec_code(&self, id: &str) -> Result<i64> {
        Ok(self.docker.inspect_exec(id).await?.exit_code.unwrap_or(-1))
    }

    /// Runs `argv` in the running `container` to its end, feeding it `stdin` (then closing it),
    /// and keeps the first 64 KiB of its stderr (for a message).
    pub async fn exec<S>(
        &self,
        container: &str,
        argv: &[String],
        user: Option<&str>,
        stdin: Option<S>,
    ) -> Result<ExecResult>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let (id, started) = self
            .start_exec(container, argv, user, stdin.is_some())
            .await?;
        let StartExecResults::Attached { mut output, input } = started else {
            return Err(EngineError::Other("exec did not attach".into()));
        };
        // Feeding and reading at once: a command that writes while it reads must not block on
        // a full pipe.
        let feeder = stdin.map(|stdin| {
            tokio::spawn(async move {
                let mut input = input;
                let mut stdin = Box::pin(stdin);
                while let Some(chunk) = stdin.next().await {
                    input.write_all(&chunk?).await?;
                }
                input.shutdown().await
            })
        });
        let mut stderr = Vec::new();
        while let Some(item) = output.next().await {
            if let LogOutput::StdErr { message } = item? {
                keep(&mut stderr, &message);
            }
        }
        if let Some(feeder) = feeder {
            match feeder.await {
                Ok(Ok(())) => {}
                // The command may end before reading everything (it refused the input): its
                // exit code says so.
                Ok(Err(e)) => tracing::debug!("exec stdin: {e}"),
                Err(e) => tracing::debug!("exec stdin task: {e}"),
            }
        }
        Ok(ExecResult {
            code: self.exec_code(&id).await?,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Runs `argv` in the running `container` and streams its stdout. The stream ends with an
    /// error item when the command fails (its stderr's last line), so a reader never takes a
    /// cut-short output for a whole one.
    pub async fn exec_stdout(
        &self,
        container: &str,
        argv: &[String],
        user: Option<&str>,
    ) -> Result<impl Stream<Item = Result<Bytes>> + Send + 'static> {
        let (id, started) = self.start_exec(container, argv, user, false).await?;
        let StartExecResults::Attached { output, .. } = started else {
            return Err(EngineError::Other("exec did not attach".into()));
        };
        let engine = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(16);
        tokio::spawn(async move {
            let mut output = output;
            let mut stderr = Vec::new();
            while let Some(item) = output.next().await {
                match item {
                    Ok(LogOutput::StdOut { message }) => {
                        if tx.send(Ok(message)).await.is_err() {
                            return;
                        }
                    }
                    Ok(LogOutput::StdErr { message }) => keep(&mut stderr, &message),
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
            }
            match engine.exec_code(&id).await {
                Ok(0) => {}
                Ok(code) => {
                    let text = String::from_utf8_lossy(&stderr);
                    let last = text.lines().last().unwrap_or("").trim().to_string();
                    let _ = tx
                        .send(Err(EngineError::Other(format!("exit {code}: {last}"))))
                        .await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
            }
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
    }

    /// Whether the container named `name` exists and runs: `None` when it does not exist.
    pub async fn container_running(&self, name: &str) -> Result<Option<bool>> {
        match self.docker.inspect_container(name, None).await {
            Ok(c) => Ok(Some(c.state.and_then(|s| s.running).unwrap_or(false))),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound => Ok(None),
                other => Err(other),
            },
        }
    }

    pub async fn volume_exists(&self, name: &str) -> Result<bool> {
        match self.docker.inspect_volume(name).await {
            Ok(_) => Ok(true),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound => Ok(false),
                other => Err(other),
            },
        }
    }

    pub async fn restart(&self, id: &str, grace_secs: i32) -> Result<()> {
        let opts = bollard::query_parameters::RestartContainerOptionsBuilder::new()
            .t(grace_secs)
            .build();
        self.docker.restart_container(id, Some(opts)).await?;
        Ok(())
    }

    /// Removes the network `name`, disconnecting what is still on it first (an app's instance
    /// of an older release, still draining).
    pub async fn remove_network(&self, name: &str) -> Result<()> {
        if let Ok(net) = self.docker.inspect_network(name, None).await {
            for id in net.containers.unwrap_or_default().into_keys() {
                let request = bollard::models::NetworkDisconnectRequest {
                    container: id,
                    force: Some(true),
                };
                if let Err(e) = self.docker.disconnect_network(name, request).await {
                    tracing::debug!("disconnecting from {name}: {e}");
                }
            }
        }
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Joins `container` to `network`, reachable there by `aliases` too.
    pub async fn connect_network(
        &self,
        network: &str,
        container: &str,
        aliases: Vec<String>,
    ) -> Result<()> {
        let request = NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(EndpointSettings {
                aliases: (!aliases.is_empty()).then_some(aliases),
                ..Default::default()
            }),
        };
        self.docker.connect_network(network, request).await?;
        Ok(())
    }
}

fn keep(buf: &mut Vec<u8>, data: &[u8]) {
    let room = EXEC_KEEP.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..data.len().min(room)]);
}
