//! Where add-on services run, seen from the API: at caasd's start the services of this host are
//! finished or started again (never one pinned to another host), and a service of another host
//! is judged by that host's heartbeats.

use super::addons::provision;
use super::auth::Caller;
use super::error::ApiResult;
use super::AppState;
use crate::addons::{recipe, ServiceError};
use crate::store::AddonRecord;
use caas_api::addons::AddonState;
use caas_api::Timestamp;

/// For a service on a host that is not this server's: `lost` when that host is (no heartbeat
/// within `--lost-after`, or no such host any more), else what its record says. `None` for a
/// service of this server's host, which its engine answers for.
pub(super) fn foreign_host(
    s: &AppState,
    rec: &AddonRecord,
) -> ApiResult<Option<(AddonState, Option<String>)>> {
    let Some(host) = rec.host.as_deref().filter(|h| *h != s.addons.host) else {
        return Ok(None);
    };
    let alive = s
        .store
        .hosts()?
        .iter()
        .find(|h| h.name == host)
        .is_some_and(|h| s.observed.host_alive(&h.id, Timestamp::now()));
    Ok(Some(if alive {
        (rec.state, rec.message.clone())
    } else {
        (
            AddonState::Lost,
            Some(format!(
                "its host {host} is lost: its data is on that host and is never made again                  elsewhere; bring the host back, or destroy it and restore a backup into a new one"
            )),
        )
    }))
}

/// At start: services whose creation a stopped caasd left half way are finished, and services
/// whose container is gone while their volume is there are made again on it. A service whose
/// volume is gone is marked lost, never made again empty.
pub async fn recover(s: AppState) {
    let Ok(all) = s.store.addons() else { return };
    // Only this host's services: one pinned to another host is never made here.
    let ours = |a: &AddonRecord| a.host.as_deref().is_none_or(|h| h == s.addons.host);
    for rec in all
        .into_iter()
        .filter(|a| recipe(a.kind).is_some() && ours(a))
    {
        let caller = Caller {
            user: rec.created_by.clone(),
            admin: true,
            scope: None,
            token_id: "caasd".into(),
            token_hash: String::new(),
            addr: None,
        };
        match rec.state {
            AddonState::Creating => provision(s.clone(), caller, rec.name.clone(), true).await,
            AddonState::Available | AddonState::Unhealthy => {
                let outcome = s.addons.ensure_running(&rec, false, |_| {}).await;
                if let Err(ServiceError::Lost(message)) = outcome {
                    tracing::error!(addon = rec.name, "{message}");
                    let _ = s.store.update_addon::<()>(&rec.name, |a| {
                        a.state = AddonState::Lost;
                        a.message = Some(message.clone());
                        Ok(())
                    });
                } else if let Err(e) = outcome {
                    tracing::warn!(addon = rec.name, "starting its service: {e}");
                }
            }
            AddonState::Lost | AddonState::Failed => {}
        }
    }
    let _ = s.store.flush().await;
}
