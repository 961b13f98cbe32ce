//! The scheduler: reads the store and the agents' observations, asks [`reconcile`] what to do,
//! and writes the answer back with compare-and-swap. It owns the allocations and routes trees;
//! nothing else writes them.

pub mod reconcile;

use crate::logs::LogHub;
use crate::observed::Observed;
use crate::store::{ReleaseRecord, Store, StoreError};
use caas_api::Timestamp;
use reconcile::{AppView, HostView, Plan, Settings, World};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Ticks even without a wake-up, so drain deadlines and lost hosts are noticed.
const TICK: Duration = Duration::from_millis(500);
/// An unplaceable instance is reported again after this long, not on every tick.
const UNPLACED_REPEAT: Duration = Duration::from_secs(60);

pub struct Scheduler {
    pub store: Store,
    pub observed: Arc<Observed>,
    pub logs: Arc<LogHub>,
    pub settings: Settings,
    pub wake: Arc<Notify>,
}

impl Scheduler {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut releases: HashMap<(String, u64), ReleaseRecord> = HashMap::new();
        let mut unplaced_said: HashMap<(String, String), Timestamp> = HashMap::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
            // Converge: a plan that changed something may enable the next step at once.
            for _ in 0..8 {
                match self.tick(&mut releases, &mut unplaced_said).await {
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

    /// One pass. Returns whether it changed anything.
    async fn tick(
        &self,
        releases: &mut HashMap<(String, u64), ReleaseRecord>,
        unplaced_said: &mut HashMap<(String, String), Timestamp>,
    ) -> Result<bool, StoreError> {
        let now = Timestamp::now();
        let mut apps = Vec::new();
        for app in self.store.apps()? {
            let release = match app.release {
                None => None,
                Some(v) => {
                    let key = (app.name.clone(), v);
                    if !releases.contains_key(&key) {
                        // Releases are immutable, so caching them forever is safe.
                        match self.store.release(&app.name, v)? {
                            Some(r) => {
                                releases.insert(key.clone(), r);
                            }
                            None => continue,
                        }
                    }
                    Some((v, releases[&key].process_types.keys().cloned().collect()))
                }
            };
            apps.push(AppView {
                name: app.name,
                formation: app.formation,
                release,
            });
        }
        releases.retain(|(app, _), _| apps.iter().any(|a| &a.name == app));

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
            apps: &apps,
            allocations: &allocations,
            hosts: &hosts,
            observed: &observed,
            routes: &routes,
            settings: &self.settings,
        };
        let plan = reconcile::reconcile(&world, &mut crate::auth::short_id);

        for (app, instance, reason) in &plan.unplaced {
            let key = (app.clone(), instance.clone());
            let due = unplaced_said
                .get(&key)
                .is_none_or(|t| t.until(now) >= UNPLACED_REPEAT);
            if due {
                self.logs
                    .event(app, "scale", format!("cannot place {instance}: {reason}"));
                unplaced_said.insert(key, now);
            }
        }
        unplaced_said.retain(|k, _| plan.unplaced.iter().any(|(a, i, _)| a == &k.0 && i == &k.1));

        if plan.is_empty() {
            return Ok(false);
        }
        self.apply(plan).await
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
