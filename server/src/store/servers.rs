//! The control-plane servers sharing a store, and which of them leads. Every server serves the
//! API; the leader alone runs what must run once (the scheduler, the autoscaler, alerts, ACME).
//!
//! On etcd each server keeps `PREFIX/servers/ID` under a lease of [`LEASE_TTL`] seconds that it
//! renews every second, and the leader is whoever created `PREFIX/leader` (a transaction that
//! succeeds only while the key is absent), under the same lease. A server that dies stops
//! renewing: etcd deletes both keys when the lease runs out, and the next server to try takes
//! over — within `LEASE_TTL` + 1 s. A server that cannot renew gives up leading at once, before
//! its lease can run out, so two never lead together for longer than a renewal takes. On sled
//! there is one server, and it leads.

use super::etcd::{Compare, Etcd, Write};
use super::kv::Backend;
use super::{Result, Store};
use caas_api::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Seconds a server's registration and leadership outlive its last renewal.
pub const LEASE_TTL: u64 = 5;

/// One control-plane server as it registers itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerRecord {
    pub id: String,
    pub name: String,
    /// Its API, as clients reach it (`http://HOST:PORT`).
    pub api: String,
    pub started_at: Timestamp,
    pub version: String,
}

impl Store {
    /// Registers this server and campaigns for leadership until `shutdown`; the receiver says
    /// whether this server leads now. On sled: at once, for ever.
    pub fn join_servers(
        &self,
        me: ServerRecord,
        shutdown: CancellationToken,
    ) -> watch::Receiver<bool> {
        match &self.inner.backend {
            Backend::Sled(_) => {
                *self.inner.me.lock().expect("not poisoned") = Some(me);
                watch::Sender::new(true).subscribe()
            }
            Backend::Etcd(b) => {
                *self.inner.me.lock().expect("not poisoned") = Some(me.clone());
                let (tx, rx) = watch::channel(false);
                let client = b.client.clone();
                let root = b.prefix.clone();
                Etcd::spawn(campaign(client, root, me, tx, shutdown));
                rx
            }
        }
    }

    /// Every server registered now, with the id of the one that leads (`None`: none does, an
    /// election is under way).
    pub fn servers(&self) -> Result<(Vec<ServerRecord>, Option<String>)> {
        match &self.inner.backend {
            Backend::Sled(_) => {
                let me = self.inner.me.lock().expect("not poisoned").clone();
                let leader = me.as_ref().map(|m| m.id.clone());
                Ok((me.into_iter().collect(), leader))
            }
            Backend::Etcd(b) => {
                let c = b.client.clone();
                let root = b.prefix.clone();
                let (servers, leader) = Etcd::wait(async move {
                    let servers = c.scan(format!("{root}/servers/").into_bytes(), 0).await?;
                    let leader = c.get(format!("{root}/leader").into_bytes()).await?;
                    Ok::<_, super::etcd::EtcdError>((servers, leader))
                })?;
                let servers = servers
                    .iter()
                    .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
                    .collect();
                Ok((
                    servers,
                    leader.map(|l| String::from_utf8_lossy(&l).into_owned()),
                ))
            }
        }
    }
}

/// The campaign of one server: runs on the etcd runtime until `shutdown`, then revokes its
/// lease so another server takes over at once.
async fn campaign(
    client: Etcd,
    root: String,
    me: ServerRecord,
    leading: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let server_key = format!("{root}/servers/{}", me.id).into_bytes();
    let leader_key = format!("{root}/leader").into_bytes();
    let record = serde_json::to_vec(&me).expect("records always serialize");
    let tick = Duration::from_secs(1);
    let mut lease = 0;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        if lease == 0 {
            lease = match client.grant(LEASE_TTL).await {
                Ok(id) => id,
                Err(e) => {
                    tracing::warn!("registering with etcd: {e}");
                    0
                }
            };
            if lease != 0 {
                if let Err(e) = client.put(server_key.clone(), record.clone(), lease).await {
                    tracing::warn!("registering with etcd: {e}");
                    lease = 0;
                }
            }
        } else if !matches!(client.keep_alive(lease).await, Ok(true)) {
            // Not renewed: the lease may run out before we hear again; stop leading now.
            let was = *leading.borrow();
            if was {
                tracing::warn!("lost contact with etcd: no longer leading");
            }
            leading.send_replace(false);
            lease = 0;
        }
        if lease != 0 {
            let was = *leading.borrow();
            let lead = match was {
                false => client
                    .txn(
                        vec![Compare {
                            key: leader_key.clone(),
                            value: None,
                        }],
                        vec![Write {
                            key: leader_key.clone(),
                            value: Some(me.id.clone().into_bytes()),
                        }],
                        lease,
                    )
                    .await
                    .unwrap_or(false),
                // Still ours? (an operator may have deleted the key)
                true => client
                    .get(leader_key.clone())
                    .await
                    .map(|v| v.as_deref() == Some(me.id.as_bytes()))
                    .unwrap_or(false),
            };
            if lead != was {
                match lead {
                    true => tracing::info!("leading the control plane"),
                    false => tracing::warn!("no longer leading the control plane"),
                }
                leading.send_replace(lead);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(tick) => {}
        }
    }
    leading.send_replace(false);
    if lease != 0 {
        let _ = client.revoke(lease).await;
    }
}
