//! Who this agent is to the control plane: registration with the join token, the identity file
//! that lets a restarted agent keep its host id (and so adopt its containers instead of
//! restarting them), and re-registration when the control plane no longer knows the token.

use super::client::{Client, ClientError};
use super::files::write_private;
use super::AgentConfig;
use crate::docker::Engine;
use anyhow::Context;
use caas_api::agent::RegisterRequest;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Who this host is to the control plane; persisted (`DATA_DIR/identity.json`, readable by its
/// owner only) so a restarted agent keeps its id and adopts the containers labelled with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Identity {
    host_id: String,
    token: String,
    cluster_id: String,
    /// The control plane's certificate as pinned at join (`--server-fingerprint`); absent for
    /// an agent that joined over plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server_fingerprint: Option<String>,
}

/// The agent's standing with the control plane, shared by its tasks.
pub(super) struct Session {
    pub cfg: AgentConfig,
    pub client: Client,
    identity: RwLock<Identity>,
    reauth: tokio::sync::Mutex<()>,
}

impl Session {
    /// The saved identity, or a new one from registering, retried while the control plane is
    /// unreachable (an agent may start before it). `None` when shut down meanwhile.
    pub async fn open(
        cfg: AgentConfig,
        engine: &Engine,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<Session>> {
        let path = identity_path(&cfg);
        let saved: Option<Identity> = match std::fs::read(&path) {
            Ok(bytes) => Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("reading {}", path.display()))?,
            ),
            Err(_) => None,
        };
        // The pin given now (a re-pin by the operator), else the one kept since the join.
        let mut cfg = cfg;
        if cfg.fingerprint.is_none() {
            cfg.fingerprint = saved.as_ref().and_then(|id| id.server_fingerprint.clone());
        }
        let client = Client::new(&cfg.server, cfg.fingerprint.as_deref())?;
        let identity = match saved {
            Some(mut id) => {
                if id.server_fingerprint != cfg.fingerprint && cfg.server.starts_with("https://") {
                    id.server_fingerprint = cfg.fingerprint.clone();
                    write_private(&path, &serde_json::to_vec_pretty(&id)?)?;
                }
                id
            }
            None => loop {
                match register(&cfg, &client, engine).await {
                    Ok(id) => {
                        write_private(&path, &serde_json::to_vec_pretty(&id)?)?;
                        break id;
                    }
                    Err(e)
                        if e.downcast_ref::<ClientError>()
                            .is_some_and(|c| matches!(c, ClientError::Transport(_))) =>
                    {
                        tracing::warn!(
                            "cannot reach the control plane at {} yet: {e:#}",
                            cfg.server
                        );
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(None),
                            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        }
                    }
                    Err(e) => return Err(e.context("registering with the control plane")),
                }
            },
        };
        tracing::info!(host = cfg.name, host_id = identity.host_id, "agent running");
        Ok(Some(Session {
            cfg,
            client,
            identity: RwLock::new(identity),
            reauth: Default::default(),
        }))
    }

    pub fn token(&self) -> String {
        self.identity.read().unwrap().token.clone()
    }

    /// `(cluster id, host id)`: the labels that make a container this agent's.
    pub fn labels(&self) -> (String, String) {
        let id = self.identity.read().unwrap();
        (id.cluster_id.clone(), id.host_id.clone())
    }

    /// Registers again after the control plane refused our token (its data was replaced, or the
    /// host was re-registered elsewhere). One re-registration at a time.
    pub async fn reauthenticate(&self, engine: &Engine, stale: &str) -> anyhow::Result<()> {
        let _guard = self.reauth.lock().await;
        if self.token() != stale {
            return Ok(()); // someone else already did
        }
        let id = register(&self.cfg, &self.client, engine).await?;
        write_private(&identity_path(&self.cfg), &serde_json::to_vec_pretty(&id)?)?;
        tracing::warn!(host_id = id.host_id, "re-registered with the control plane");
        *self.identity.write().unwrap() = id;
        Ok(())
    }
}

fn identity_path(cfg: &AgentConfig) -> PathBuf {
    cfg.data_dir.join("identity.json")
}

async fn register(cfg: &AgentConfig, client: &Client, engine: &Engine) -> anyhow::Result<Identity> {
    let join = cfg.join_token.as_deref().context(
        "this agent has no identity yet: pass --join-token (an admin makes one with caas hosts:add NAME)",
    )?;
    let info = engine.info().await?;
    let resp = client
        .register(
            join,
            &RegisterRequest {
                name: cfg.name.clone(),
                address: cfg.address.to_string(),
                memory_mb: super::offer(info.memory_mb, cfg.host_memory_mb),
                overcommit: Some(cfg.overcommit),
                cpus: info.cpus,
                port_min: cfg.port_min,
                port_max: cfg.port_max,
                colocated: cfg.colocated,
            },
        )
        .await?;
    Ok(Identity {
        host_id: resp.host_id,
        token: resp.token,
        cluster_id: resp.cluster_id,
        server_fingerprint: cfg.fingerprint.clone(),
    })
}
