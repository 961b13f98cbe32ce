//! The heartbeat task: what the agent's loop last published, sent to the control plane on its own
//! schedule, so nothing the loop waits on (Docker, a probe) holds up a heartbeat.

use super::client::ClientError;
use super::session::Session;
use super::{HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT};
use crate::docker::Engine;
use caas_api::agent::{Heartbeat, InstanceReport, ObservedState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What a heartbeat said, to send the next one early only when it would say something else.
type ReportKey = Vec<(
    String,
    ObservedState,
    Option<u16>,
    Option<String>,
    Option<String>,
)>;

fn report_key(instances: &[InstanceReport]) -> ReportKey {
    instances
        .iter()
        .map(|r| {
            (
                r.assignment_id.clone(),
                r.state,
                r.port,
                r.container_addr.clone(),
                r.check.clone(),
            )
        })
        .collect()
}

/// Sends what the main loop last published: every [`HEARTBEAT_INTERVAL`], and at once when it
/// says something new. It waits on nothing but the control plane (and a bounded time at that),
/// so a Docker engine that stalls, or a slow probe, never makes the host look lost; the
/// control plane then hears the last states the agent knew.
pub(super) async fn heartbeat(
    session: Arc<Session>,
    engine: Engine,
    mut reports: watch::Receiver<Vec<InstanceReport>>,
    dropped_lines: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
    // The first heartbeat says what the first pass found (the containers listed and adopted),
    // not the empty list the channel starts with: that would tell the control plane every
    // instance of this host is starting, and take them out of the routes until the next one.
    // It waits a bounded time, so an engine that stalls as the agent starts still does not
    // make the host look lost.
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = reports.changed() => {}
        _ = tokio::time::sleep(HEARTBEAT_INTERVAL) => {}
    }
    // Where the host's disk is read for each heartbeat: the engine's root dir (images and
    // containers), else the agent's own data dir (also when the engine does not answer now).
    let info = match tokio::time::timeout(HEARTBEAT_TIMEOUT, engine.info()).await {
        Ok(Ok(info)) => Some(info),
        _ => None,
    };
    // What this host offers the scheduler, said with every heartbeat, so a restart with another
    // --host-memory is heard without registering again.
    let cfg = &session.cfg;
    let memory_mb = match (cfg.host_memory_mb, &info) {
        (Some(mb), _) => Some(mb),
        (None, Some(info)) => Some(super::offer(info.memory_mb, None)),
        (None, None) => None,
    };
    let root_dir = info.and_then(|i| i.root_dir);
    let disk_path = root_dir.unwrap_or_else(|| session.cfg.data_dir.clone());
    let mut last: Option<(Instant, ReportKey)> = None;
    loop {
        let wait = last.as_ref().map_or(Duration::ZERO, |(at, _)| {
            HEARTBEAT_INTERVAL.saturating_sub(at.elapsed())
        });
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = reports.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
        }
        let instances = reports.borrow_and_update().clone();
        let key = report_key(&instances);
        let due = match &last {
            None => true,
            Some((at, said)) => *said != key || at.elapsed() >= HEARTBEAT_INTERVAL,
        };
        if !due {
            continue;
        }
        let token = session.token();
        let dropped = dropped_lines.swap(0, Ordering::Relaxed);
        let sent = tokio::time::timeout(
            HEARTBEAT_TIMEOUT,
            session.client.heartbeat(
                &token,
                &Heartbeat {
                    instances,
                    dropped_log_lines: dropped,
                    disk: crate::free_space::usage(&disk_path).ok(),
                    memory_mb,
                    overcommit: Some(cfg.overcommit),
                },
            ),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            // Said with the next one that goes through.
            dropped_lines.fetch_add(dropped, Ordering::Relaxed);
        }
        let ok = match sent {
            Ok(Ok(())) => {
                last = Some((Instant::now(), key));
                true
            }
            Ok(Err(ClientError::Unauthorized)) => {
                if let Err(e) = session.reauthenticate(&engine, &token).await {
                    tracing::error!("re-registering: {e:#}");
                }
                false
            }
            Ok(Err(e)) => {
                tracing::warn!("heartbeat: {e}");
                false
            }
            Err(_) => {
                tracing::warn!("heartbeat: no answer within {HEARTBEAT_TIMEOUT:?}");
                false
            }
        };
        if !ok {
            // Tried again shortly, not at once.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}
