//! Agents' reports shared between control-plane servers. An agent reports to the one server it
//! talks to, but liveness and instance states must be seen by whichever server leads (it
//! schedules) and by every server that answers `caas hosts` or `caas ps`. On etcd each server
//! writes what its agents last reported to `observed/HOST`, and every server reads the others'
//! reports (`observed::follow_shared`). On sled there is one server: nothing is written, so a
//! heartbeat costs no disk write.
//!
//! A report carries the writing server and a sequence number, not a clock: a reader counts a
//! host alive when a report it has not seen arrives, on its own clock, so servers' clocks need
//! not agree, and a report left behind by a server that died keeps nothing alive.

use super::kv::Backend;
use super::{decode, encode, Result, Store};
use caas_api::agent::InstanceReport;
use caas_api::DiskUsage;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// What a host's agent last reported to one server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SharedReport {
    /// The server that received it (`ServerRecord::id`).
    pub server: String,
    /// Grows with every report that server writes.
    pub seq: u64,
    pub instances: Vec<InstanceReport>,
    pub disk: Option<DiskUsage>,
}

/// This process's report counter; it starts from the clock so a restarted server's reports are
/// never taken for ones already seen.
static SEQ: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Whether other servers may share this store (etcd): agents' reports and the API's
    /// certificate are then shared through it.
    pub fn is_shared(&self) -> bool {
        matches!(self.inner.backend, Backend::Etcd(_))
    }

    /// This server's id, once it joined (`join_servers`).
    pub fn server_id(&self) -> Option<String> {
        let me = self.inner.me.lock().expect("not poisoned");
        me.as_ref().map(|m| m.id.clone())
    }

    /// Writes what `host_id`'s agent reported to this server, for the other servers (nothing on
    /// sled).
    pub fn share_report(
        &self,
        host_id: &str,
        instances: &[InstanceReport],
        disk: Option<DiskUsage>,
    ) -> Result<()> {
        if !self.is_shared() {
            return Ok(());
        }
        let Some(server) = self.server_id() else {
            return Ok(());
        };
        let _ = SEQ.compare_exchange(
            0,
            caas_api::Timestamp::now().millis(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        let report = SharedReport {
            server,
            seq: SEQ.fetch_add(1, Ordering::SeqCst),
            instances: instances.to_vec(),
            disk,
        };
        self.inner.observed.insert(host_id, encode(&report))
    }

    /// Every host's last shared report: `(host id, report)`.
    pub fn shared_reports(&self) -> Result<Vec<(String, SharedReport)>> {
        self.inner
            .observed
            .all()?
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    decode("observed", &v)?,
                ))
            })
            .collect()
    }
}
