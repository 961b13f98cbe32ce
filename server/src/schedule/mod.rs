//! The scheduler: reads the store and the agents' observations, asks [`rollout::assess`] whether
//! deploying releases are up or failed and [`reconcile`] what to do, and writes the answers back
//! (verdicts with a store transaction, allocations with compare-and-swap). It owns the
//! allocations and routes trees and the end of every rollout; nothing else writes them.

pub mod place;
pub mod reconcile;
pub mod rollout;

use crate::logs::LogHub;
use crate::observed::Observed;
use crate::store::{Store, StoreError};
use caas_api::checks::{Amount, AppSettings, CheckKind};
use caas_api::Timestamp;
use place::{Pending, Unplaced};
use reconcile::{AppView, HostView, Plan, ReleaseView, Settings, World};
use rollout::Verdict;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{watch, Notify};
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

/// What the scheduler could not place, for `caas ps` and `ps:scale`, and a count of its passes
/// so a handler can wait for the pass after its change.
pub struct Board {
    pending: RwLock<Vec<Pending>>,
    passes: watch::Sender<u64>,
}

impl Default for Board {
    fn default() -> Self {
        Self {
            pending: RwLock::new(Vec::new()),
            passes: watch::channel(0).0,
        }
    }
}

impl Board {
    /// The instances of `app` no host could take in the last pass.
    pub fn pending(&self, app: &str) -> Vec<Pending> {
        let all = self.pending.read().unwrap_or_else(|e| e.into_inner());
        all.iter()
            .filter(|p| p.unplaced.app == app)
            .cloned()
            .collect()
    }

    /// Waits (at most `limit`) until a pass that started after this call has ended.
    pub async fn next_pass(&self, limit: Duration) {
        let mut rx = self.passes.subscribe();
        let start = *rx.borrow_and_update();
        let _ = tokio::time::timeout(limit, rx.wait_for(|n| *n >= start + 2)).await;
    }

    fn publish(&self, pending: Option<Vec<Pending>>) {
        if let Some(p) = pending {
            *self.pending.write().unwrap_or_else(|e| e.into_inner()) = p;
        }
        self.passes.send_modify(|n| *n += 1);
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
    /// Where it says what it could not place.
    pub board: Arc<Board>,
}

/// What one pass remembers for the next.
#[derive(Default)]
struct Memory {
    /// Releases are immutable in what the scheduler reads of them, so they are cached.
    releases: HashMap<(String, u64), ReleaseView>,
    unplaced_said: HashMap<(String, String), Timestamp>,
    /// Instances no host could take, since when: `(app, release, instance)`.
    pending: HashMap<(String, u64, String), Pending>,
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
                let result = self.tick(&mut memory).await;
                self.board.publish(
                    result
                        .is_ok()
                        .then(|| memory.pending.values().cloned().collect()),
                );
                match result {
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
            reserve_mb: r
                .resources
                .iter()
                .filter_map(|(p, res)| Some((p.clone(), res.reserve_mb?)))
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
        let names: std::collections::HashSet<&str> = apps.iter().map(|a| a.name.as_str()).collect();
        memory
            .releases
            .retain(|(app, _), _| names.contains(app.as_str()));

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
                overcommit: h.overcommit.unwrap_or(1.0),
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
        let pending: Vec<Pending> = memory.pending.values().cloned().collect();
        let world = World {
            now,
            started: self.observed.started(),
            apps: &apps,
            allocations: &allocations,
            hosts: &hosts,
            observed: &observed,
            routes: &routes,
            settings: &self.settings,
            pending: &pending,
        };

        let verdicts = rollout::assess(&world);
        if !verdicts.is_empty() {
            return self.conclude(&apps, verdicts).await;
        }

        let plan = reconcile::reconcile(&world, &mut crate::auth::short_id);
        self.say_unplaced(memory, &plan, &hosts, now);
        if plan.is_empty() {
            return Ok(false);
        }
        self.apply(plan).await
    }

    /// Says what could not be placed (again after a while, not on every pass), and what was
    /// placed after it waited; remembers since when each instance is pending.
    fn say_unplaced(&self, memory: &mut Memory, plan: &Plan, hosts: &[HostView], now: Timestamp) {
        let key = |u: &Unplaced| (u.app.clone(), u.release, u.instance.clone());
        for u in &plan.unplaced {
            let said = (u.app.clone(), u.instance.clone());
            let due = memory
                .unplaced_said
                .get(&said)
                .is_none_or(|t| t.until(now) >= UNPLACED_REPEAT);
            if due {
                let text = format!("cannot place {}: {}", u.instance, u.reason);
                self.logs.event(&u.app, "scale", text);
                memory.unplaced_said.insert(said, now);
            }
        }
        memory.unplaced_said.retain(|k, _| {
            plan.unplaced
                .iter()
                .any(|u| u.app == k.0 && u.instance == k.1)
        });
        for a in &plan.create {
            let k = (a.app.clone(), a.release, a.instance_name());
            if let Some(p) = memory.pending.get(&k) {
                let host = hosts.iter().find(|h| h.id == a.host_id);
                let text = format!(
                    "placed {} on {} after it waited {} for room",
                    k.2,
                    host.map_or(a.host_id.as_str(), |h| h.name.as_str()),
                    caas_api::checks::format_duration(p.since.until(now))
                );
                self.logs.event(&a.app, "scale", text);
            }
        }
        let before = std::mem::take(&mut memory.pending);
        for u in &plan.unplaced {
            let since = before.get(&key(u)).map_or(now, |p| p.since);
            let pending = Pending {
                unplaced: u.clone(),
                since,
            };
            memory.pending.insert(key(u), pending);
        }
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
