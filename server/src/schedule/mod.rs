//! The scheduler: reads the store and the agents' observations, asks [`rollout::assess`] whether
//! deploying releases are up or failed and [`reconcile`] what to do, and writes the answers back
//! (verdicts with a store transaction, allocations with compare-and-swap). It owns the
//! allocations and routes trees and the end of every rollout; nothing else writes them.

pub mod reconcile;
pub mod rollout;

use crate::logs::LogHub;
use crate::observed::Observed;
use crate::store::{Store, StoreError};
use caas_api::checks::{Amount, AppSettings, CheckKind};
use caas_api::Timestamp;
use reconcile::{AppView, HostView, Plan, ReleaseView, Settings, World};
use rollout::Verdict;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Ticks even without a wake-up, so drain deadlines, start deadlines and lost hosts are noticed.
const TICK: Duration = Duration::from_millis(500);
/// An unplaceable instance is reported again after this long, not on every tick.
const UNPLACED_REPEAT: Duration = Duration::from_secs(60);

/// What an app's drain and rollout settings are when it sets none: `drain` is `caasd --drain`;
/// SIGTERM gets 10 s before SIGKILL; a new instance must be up 2 s before a rollout counts it;
/// a rollout may start 5 instances beyond the count (so formations of up to 5 roll at once,
/// larger ones in batches of 5) and never goes below the count.
pub fn app_defaults(drain: Duration) -> AppSettings {
    AppSettings {
        drain_ms: Some(drain.as_millis() as u64),
        stop_timeout_ms: Some(10_000),
        min_up_ms: Some(2_000),
        max_surge: Some(Amount::Count(5)),
        max_unavailable: Some(Amount::Count(0)),
    }
}

pub struct Scheduler {
    pub store: Store,
    pub observed: Arc<Observed>,
    pub logs: Arc<LogHub>,
    pub settings: Settings,
    pub wake: Arc<Notify>,
    /// Counts its passes (`GET /metrics`).
    pub counters: Arc<crate::metrics::Counters>,
}

/// What one pass remembers for the next.
#[derive(Default)]
struct Memory {
    /// Releases are immutable in what the scheduler reads of them, so they are cached.
    releases: HashMap<(String, u64), ReleaseView>,
    unplaced_said: HashMap<(String, String), Timestamp>,
}

impl Scheduler {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut memory = Memory::default();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
            // Converge: a plan that changed something may enable the next step at once.
            for _ in 0..8 {
                self.counters.scheduler_pass();
                match self.tick(&mut memory).await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        tracing::error!("scheduler: {e}");
                        break;
                    }
                }
            }
        }
    }

    fn release_view(
        &self,
        memory: &mut Memory,
        app: &str,
        version: Option<u64>,
    ) -> Result<Option<ReleaseView>, StoreError> {
        let Some(version) = version else {
            return Ok(None);
        };
        let key = (app.to_string(), version);
        if let Some(v) = memory.releases.get(&key) {
            return Ok(Some(v.clone()));
        }
        let Some(r) = self.store.release(app, version)? else {
            return Ok(None);
        };
        let view = ReleaseView {
            version,
            types: r.process_types.into_keys().collect(),
            created_at: r.created_at,
            strategies: r
                .checks
                .iter()
                .filter(|c| c.kind == CheckKind::Liveness)
                .map(|c| (c.process.clone(), c.strategy.unwrap_or_default()))
                .collect(),
            memory_mb: r
                .resources
                .iter()
                .filter_map(|(p, res)| Some((p.clone(), res.memory_mb?)))
                .collect(),
        };
        memory.releases.insert(key, view.clone());
        Ok(Some(view))
    }

    /// One pass: first the verdicts on deploying releases, then, when there were none, the
    /// plan for the allocations and routes. Returns whether it changed anything.
    async fn tick(&self, memory: &mut Memory) -> Result<bool, StoreError> {
        let now = Timestamp::now();
        let mut apps = Vec::new();
        for app in self.store.apps()? {
            let release = self.release_view(memory, &app.name, app.release)?;
            let deploying = self.release_view(memory, &app.name, app.deploying)?;
            let canary =
                self.release_view(memory, &app.name, app.canary.as_ref().map(|c| c.version))?;
            apps.push(AppView {
                name: app.name,
                formation: app.formation,
                release,
                deploying,
                canary,
                settings: app.settings,
            });
        }
        memory
            .releases
            .retain(|(app, _), _| apps.iter().any(|a| &a.name == app));

        let hosts: Vec<HostView> = self
            .store
            .hosts()?
            .into_iter()
            .map(|h| HostView {
                alive: self.observed.host_alive(&h.id, now),
                port_slots: h.port_slots(),
                id: h.id,
                name: h.name,
                address: h.address,
                memory_mb: h.memory_mb,
                colocated: h.colocated,
            })
            .collect();
        let allocations = self.store.allocations()?;
        let observed = self.observed.snapshot(
            allocations
                .iter()
                .map(|a| (a.id.clone(), a.host_id.clone())),
        );
        let routes: BTreeMap<_, _> = self.store.routes()?.into_iter().collect();
        let world = World {
            now,
            started: self.observed.started(),
            apps: &apps,
            allocations: &allocations,
            hosts: &hosts,
            observed: &observed,
            routes: &routes,
            settings: &self.settings,
        };

        let verdicts = rollout::assess(&world);
        if !verdicts.is_empty() {
            return self.conclude(&apps, verdicts).await;
        }

        let plan = reconcile::reconcile(&world, &mut crate::auth::short_id);
        for (app, instance, reason) in &plan.unplaced {
            let key = (app.clone(), instance.clone());
            let due = memory
                .unplaced_said
                .get(&key)
                .is_none_or(|t| t.until(now) >= UNPLACED_REPEAT);
            if due {
                self.logs
                    .event(app, "scale", format!("cannot place {instance}: {reason}"));
                memory.unplaced_said.insert(key, now);
            }
        }
        memory
            .unplaced_said
            .retain(|k, _| plan.unplaced.iter().any(|(a, i, _)| a == &k.0 && i == &k.1));

        if plan.is_empty() {
            return Ok(false);
        }
        self.apply(plan).await
    }

    /// Writes the verdicts on deploying releases; the next pass's plan acts on them.
    async fn conclude(&self, apps: &[AppView], verdicts: Vec<Verdict>) -> Result<bool, StoreError> {
        let mut changed = false;
        for v in verdicts {
            let outcome = v.outcome.clone().map(|_| ());
            // What the instance that failed it last said, as its agent last reported.
            let output = v
                .culprit
                .as_deref()
                .and_then(|id| self.observed.report(id))
                .map(|r| r.output)
                .unwrap_or_default();
            if !self
                .store
                .finish_rollout(&v.app, v.version, outcome, &output)?
            {
                continue; // superseded meanwhile; the next pass sees the newer release
            }
            changed = true;
            let serving = apps
                .iter()
                .find(|a| a.name == v.app)
                .and_then(|a| a.release.as_ref())
                .map(|r| r.version);
            let text = match (&v.outcome, serving) {
                (Ok(what), _) => format!("v{} is up ({what})", v.version),
                (Err(why), Some(old)) => {
                    format!("v{} failed: {why}; v{old} keeps serving", v.version)
                }
                (Err(why), None) => {
                    format!("v{} failed: {why}; no release is serving", v.version)
                }
            };
            self.logs.event(&v.app, "deploy", text);
        }
        // A verdict is what `caas push` and `git push` wait for: it must survive a kill -9.
        self.store.flush().await?;
        Ok(changed)
    }

    async fn apply(&self, plan: Plan) -> Result<bool, StoreError> {
        let mut changed = false;
        for a in &plan.create {
            changed |= self.store.cas_allocation(&a.id, None, Some(a))?;
        }
        for (old, new) in &plan.update {
            changed |= self.store.cas_allocation(&old.id, Some(old), Some(new))?;
        }
        for a in &plan.delete {
            changed |= self.store.cas_allocation(&a.id, Some(a), None)?;
        }
        // Unroute before routing: during a rollout the old instances leave the table in the
        // same pass the new ones enter it.
        for key in &plan.delete_routes {
            self.store.delete_route(key)?;
        }
        for (key, addr) in &plan.put_routes {
            self.store.put_route(key, addr)?;
        }
        changed |= !plan.put_routes.is_empty() || !plan.delete_routes.is_empty();
        for e in plan.events {
            self.logs.event(&e.app, e.tag, e.text);
        }
        // Placements must survive a kill -9, or a restarted server would not recognise (and
        // would stop) the containers its agents already started for them.
        self.store.flush().await?;
        Ok(changed)
    }
}
