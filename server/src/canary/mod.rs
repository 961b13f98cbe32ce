//! Canary releases: what starting, promoting and aborting one does to the store (shared by the
//! API and the judge), both releases' figures from the gateway's per-release counts, and the
//! judge — an intent writer beside the API that, every second, asks the pure [`policy`] about
//! each `--auto` canary and promotes or aborts it, saying each decision as a `caas[canary]` line
//! with the figures.
//!
//! A canary is a field of the app's record (`AppRecord::canary`). The scheduler runs its `web`
//! instances beside the serving release's and routes them; the routing table carries its share,
//! and the gateway splits requests by it. Aborting clears the field (the instances drain, as any
//! release's that no longer serves); promoting makes it the deploying release, so the usual
//! rollout decides it, with its instances already up.

pub mod policy;

use crate::logs::LogHub;
use crate::observed::Observed;
use crate::store::{AllocationRecord, AppRecord, Desired, Store, StoreError, UpdateError};
use crate::traffic::{Traffic, WINDOW_SECS};
use caas_api::agent::ObservedState;
use caas_api::canary::{Canary, ReleaseFigures};
use caas_api::{Timestamp, WEB};
use policy::Decision;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Why a canary could not be started, promoted or aborted.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{app} runs no canary; start one with: caas releases:canary -a {app}")]
    NoCanary { app: String },
    #[error("v{version} of {app} is rolling out; wait until it is up, then try again")]
    Deploying { app: String, version: u64 },
    #[error(
        "{app} already runs v{version} as a canary with {weight}% of requests: promote or abort \
         it first (caas releases:promote / releases:abort -a {app})"
    )]
    Running {
        app: String,
        version: u64,
        weight: u8,
    },
    #[error("{app} has no serving release for a canary to run beside: deploy one first")]
    NoServing { app: String },
    #[error("{app} runs no web instances (web=0): a canary takes requests; scale web up first")]
    NoWeb { app: String },
}

/// The serving release a canary of the app would run beside, unless the app cannot start one
/// now (checked before a canary's build or start, and again in the write that starts it).
pub fn refuse_start(rec: &AppRecord) -> Result<u64, Refused> {
    let app = rec.name.clone();
    if let Some(c) = &rec.canary {
        return Err(Refused::Running {
            app,
            version: c.version,
            weight: c.weight,
        });
    }
    let Some(serving) = rec.release else {
        return Err(Refused::NoServing { app });
    };
    if let Some(version) = rec.deploying {
        return Err(Refused::Deploying { app, version });
    }
    if rec.formation.get(WEB).copied().unwrap_or(0) == 0 {
        return Err(Refused::NoWeb { app });
    }
    Ok(serving)
}

/// A weight is a whole percentage of requests from 1 to 99.
pub fn check_weight(weight: u8) -> Result<(), String> {
    if (1..=99).contains(&weight) {
        Ok(())
    } else {
        Err(format!(
            "invalid --weight {weight}: give a percentage of requests from 1 to 99"
        ))
    }
}

fn running(rec: &AppRecord, expect: Option<u64>) -> Result<&Canary, Refused> {
    rec.canary
        .as_ref()
        .filter(|c| expect.is_none_or(|v| v == c.version))
        .ok_or_else(|| Refused::NoCanary {
            app: rec.name.clone(),
        })
}

/// Ends the app's canary (only version `expect`, when given): its instances drain.
pub fn abort(
    store: &Store,
    app: &str,
    expect: Option<u64>,
) -> Result<Canary, UpdateError<Refused>> {
    let mut ended = None;
    store.update_app(app, |rec| {
        ended = Some(running(rec, expect)?.clone());
        rec.canary = None;
        Ok(())
    })?;
    Ok(ended.expect("set by the update"))
}

/// Makes the app's canary (only version `expect`, when given) its deploying release.
pub fn promote(store: &Store, app: &str, expect: Option<u64>) -> Result<u64, UpdateError<Refused>> {
    store.promote_canary(app, |rec| {
        let version = running(rec, expect)?.version;
        if let Some(deploying) = rec.deploying {
            return Err(Refused::Deploying {
                app: rec.name.clone(),
                version: deploying,
            });
        }
        Ok(version)
    })
}

/// The seconds of counts that cover the canary's life so far (ten minutes at most).
fn window_secs(canary: &Canary, now: Timestamp) -> u64 {
    (now.millis().saturating_sub(canary.started_at.millis()) / 1000 + 1).clamp(1, WINDOW_SECS)
}

/// The stable release's and the canary's figures since the canary started.
pub fn figures(
    traffic: &Traffic,
    observed: &Observed,
    allocations: &[AllocationRecord],
    rec: &AppRecord,
    canary: &Canary,
    now: Timestamp,
) -> (ReleaseFigures, ReleaseFigures) {
    let secs = window_secs(canary, now);
    let one = |version: u64, role: &str, weight: u8| {
        let c = traffic.release_window(&rec.name, version, now.millis() / 1000, secs);
        let instances_up = allocations
            .iter()
            .filter(|a| {
                a.app == rec.name
                    && a.release == version
                    && a.process == WEB
                    && a.desired == Desired::Run
                    && observed
                        .report(&a.id)
                        .is_some_and(|r| r.state == ObservedState::Up)
            })
            .count() as u32;
        ReleaseFigures {
            version,
            role: role.into(),
            weight,
            requests: c.requests(),
            errors_5xx: c.status[4],
            p95_ms: c.quantile_ms(0.95),
            instances_up,
        }
    };
    (
        one(rec.release.unwrap_or(0), "stable", 100 - canary.weight),
        one(canary.version, "canary", canary.weight),
    )
}

/// What `--auto` decides now for the app's canary (`None` without `--auto`).
pub fn judge(
    stable: &ReleaseFigures,
    canary: &ReleaseFigures,
    c: &Canary,
    now: Timestamp,
) -> Option<Decision> {
    let auto = c.auto.as_ref()?;
    let running = Duration::from_millis(now.millis().saturating_sub(c.started_at.millis()));
    Some(policy::decide(auto, stable, canary, running))
}

/// The judge of `--auto` canaries.
pub struct Judge {
    pub store: Store,
    pub traffic: Arc<Traffic>,
    pub observed: Arc<Observed>,
    pub logs: Arc<LogHub>,
    pub wake: Arc<Notify>,
}

impl Judge {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if let Err(e) = self.pass().await {
                tracing::error!("canary judge: {e}");
            }
        }
    }

    async fn pass(&self) -> Result<(), StoreError> {
        let apps: Vec<AppRecord> = self
            .store
            .apps()?
            .into_iter()
            .filter(|a| a.canary.as_ref().is_some_and(|c| c.auto.is_some()))
            .collect();
        if apps.is_empty() {
            return Ok(());
        }
        let allocations = self.store.allocations()?;
        let now = Timestamp::now();
        for rec in apps {
            let Some(canary) = rec.canary.clone() else {
                continue;
            };
            let (stable, figures) = figures(
                &self.traffic,
                &self.observed,
                &allocations,
                &rec,
                &canary,
                now,
            );
            let said = policy::figures(&stable, &figures);
            let v = canary.version;
            let line = match judge(&stable, &figures, &canary, now) {
                Some(Decision::Abort(why)) => match abort(&self.store, &rec.name, Some(v)) {
                    Ok(_) => format!(
                        "Aborted canary v{v}: {why}; v{} keeps serving ({said})",
                        stable.version
                    ),
                    Err(e) => {
                        tracing::info!(app = rec.name, "canary judge: {e}");
                        continue;
                    }
                },
                Some(Decision::Promote(why)) => match promote(&self.store, &rec.name, Some(v)) {
                    Ok(_) => format!("Promoting canary v{v}: {why}; it rolls out now ({said})"),
                    // A rollout under way: judged again once it ends.
                    Err(UpdateError::Rejected(_)) => continue,
                    Err(UpdateError::Store(e)) => return Err(e),
                },
                _ => continue,
            };
            self.store.flush().await?;
            self.logs.event(&rec.name, "canary", line);
            self.wake.notify_one();
        }
        Ok(())
    }
}
