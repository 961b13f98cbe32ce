//! `reconcile(world) -> Plan`: what the cluster should do next, as data. No I/O, no clock, no
//! randomness (ids come from the caller), so every decision is tested as a table of inputs and
//! outputs. Whether a deploying release is up is decided before, by [`super::rollout`]; here a
//! release is either the app's serving (`current`) one, its `deploying` one, or retired.
//!
//! The rules, one function each:
//! 1. [`remove_the_dead`]: allocations of destroyed apps, on lost hosts, or whose drain deadline
//!    passed are deleted. (Deleting is what makes an agent stop the container.)
//! 2. [`converge`]: the current and the deploying release (and a canary, `web` only) each get one allocation for each of
//!    as many indices `1..=n` of each process type as [`pace`] gives them, placed on a live host;
//!    extra ones (scaled down, duplicates, making way) start draining. A formation no larger than
//!    the app's max-surge rolls at once: while a release deploys, the one before keeps running
//!    whole, every process type of it. A larger one rolls in batches: the new release gets
//!    max-surge instances more than the count, and the old one gives way by as many as the new
//!    one has up (and settled, `min-up`), so capacity never drops below the count less
//!    max-unavailable; an old instance that crashes or is lost meanwhile is replaced, not
//!    drained. An instance failing its liveness check under `keep=N` is replaced while N others
//!    of its process type are up.
//! 3. [`retire`]: allocations of any other release go: those of releases older than the serving
//!    one drain (they served: in-flight requests finish); newer ones (failed, superseded) are
//!    deleted at once, except those that took traffic in a batched rollout: they drain, and not
//!    before the serving release has enough instances up to take their place.
//! 4. [`routes`]: routes are the current release's and the canary's `web` allocations that are
//!    wanted and up, and in a batched rollout the deploying release's settled ones too; an allocation of another
//!    release keeps a route it was given while it is wanted and up. An allocation whose state is
//!    unknown (right after a control-plane restart, before its host reported) keeps its route.

use super::place::{place, Capacity, Defaults, Need, Pending, Unplaced};
use crate::store::{AllocationRecord, Desired, RouteKey};
use caas_api::agent::ObservedState;
use caas_api::checks::{AppSettings, Strategy};
use caas_api::{Timestamp, WEB};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// A release as the scheduler needs it.
#[derive(Debug, Clone)]
pub struct ReleaseView {
    pub version: u64,
    /// The process types it defines.
    pub types: BTreeSet<String>,
    pub created_at: Timestamp,
    /// What its liveness checks do to a failing instance, per process type that has one.
    pub strategies: BTreeMap<String, Strategy>,
    /// Memory limits of the process types resized from the default (`caas ps:resize`), MB.
    pub memory_mb: BTreeMap<String, u64>,
    /// Memory reservations of the process types given their own (`ps:resize --reserve`), MB.
    pub reserve_mb: BTreeMap<String, u64>,
}

#[derive(Debug, Clone)]
pub struct AppView {
    pub name: String,
    pub formation: BTreeMap<String, u32>,
    /// The release that serves.
    pub release: Option<ReleaseView>,
    /// The release being rolled out beside it.
    pub deploying: Option<ReleaseView>,
    /// A canary release running beside it (`web` only) with a share of the requests.
    pub canary: Option<ReleaseView>,
    /// Its own drain and rollout settings (`caas apps:settings`); the rest are the defaults.
    pub settings: AppSettings,
}

#[derive(Debug, Clone)]
pub struct HostView {
    pub id: String,
    pub name: String,
    pub address: String,
    /// The memory it offers to the scheduler, MB: reservations are counted against it.
    pub memory_mb: u64,
    /// Limits may add up to `memory_mb` times this.
    pub overcommit: f64,
    pub port_slots: u32,
    pub alive: bool,
    /// On the gateway's machine: route to container addresses, skipping Docker's port proxy
    /// (which costs about as much CPU per request as the gateway itself).
    pub colocated: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Obs {
    pub state: ObservedState,
    pub port: Option<u16>,
    pub container_addr: Option<String>,
    /// Restarts after crashes since the instance was placed.
    pub restarts: u32,
    /// When it entered `state`.
    pub since: Timestamp,
    /// Its last failing check result, as its agent said it.
    pub check: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// The memory limit of a process type that sets none, MB.
    pub instance_memory_mb: u64,
    /// The memory reservation of a process type that sets none, MB (capped at its limit).
    pub instance_reserve_mb: u64,
    /// How long a deploying release has to be up before it fails.
    pub start_timeout: Duration,
    /// What an app's settings are when it sets none (`super::app_defaults`).
    pub defaults: AppSettings,
}

/// An app's drain and rollout settings, its own over the defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    pub drain: Duration,
    /// How long a new instance must be up before a rollout counts it.
    pub min_up: Duration,
    pub max_surge: caas_api::checks::Amount,
    pub max_unavailable: caas_api::checks::Amount,
}

impl Settings {
    pub fn memory(&self) -> Defaults {
        Defaults {
            limit_mb: self.instance_memory_mb,
            reserve_mb: self.instance_reserve_mb,
        }
    }

    pub fn pacing(&self, app: &AppView) -> Pacing {
        let (own, d) = (&app.settings, &self.defaults);
        let ms = |a: Option<u64>, b: Option<u64>| Duration::from_millis(a.or(b).unwrap_or(0));
        Pacing {
            drain: ms(own.drain_ms, d.drain_ms),
            min_up: ms(own.min_up_ms, d.min_up_ms),
            max_surge: own
                .max_surge
                .or(d.max_surge)
                .unwrap_or(caas_api::checks::Amount::Percent(100)),
            max_unavailable: own
                .max_unavailable
                .or(d.max_unavailable)
                .unwrap_or(caas_api::checks::Amount::Count(0)),
        }
    }
}

/// How many instances of one process type the old and the new release of a rollout run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Instances the serving release keeps.
    pub old: u32,
    /// Instances the deploying release may have.
    pub new: u32,
    /// The new release's settled instances take traffic before the verdict (a batched rollout:
    /// old instances made way for them).
    pub mixed: bool,
}

/// The pace of a rollout of `n` instances with `surge` more allowed and `unavailable` fewer,
/// `ready` of the new ones up and settled. With room for the whole new release beside the old
/// (`surge >= n`), both run whole until the verdict; otherwise the old release gives way as the
/// new one comes up, never below `n - unavailable` up between them.
pub fn pace(n: u32, surge: u32, unavailable: u32, ready: u32) -> Pace {
    if surge >= n {
        return Pace {
            old: n,
            new: n,
            mixed: false,
        };
    }
    let old = n.saturating_sub(unavailable.saturating_add(ready));
    let new = n.min((n + surge).saturating_sub(old));
    Pace {
        old,
        new,
        mixed: true,
    }
}

pub struct World<'a> {
    pub now: Timestamp,
    /// When this control plane started: observations before then are unknown.
    pub started: Timestamp,
    pub apps: &'a [AppView],
    pub allocations: &'a [AllocationRecord],
    pub hosts: &'a [HostView],
    pub observed: &'a HashMap<String, Obs>,
    pub routes: &'a BTreeMap<RouteKey, String>,
    pub settings: &'a Settings,
    /// The instances no host could take in the passes before, since when.
    pub pending: &'a [Pending],
}

impl World<'_> {
    fn is_up(&self, a: &AllocationRecord) -> bool {
        self.observed
            .get(&a.id)
            .is_some_and(|o| o.state == ObservedState::Up)
    }

    /// Up for `min_up` at least: a rollout counts it.
    pub fn is_settled(&self, a: &AllocationRecord, min_up: Duration) -> bool {
        self.observed
            .get(&a.id)
            .is_some_and(|o| o.state == ObservedState::Up && o.since.plus(min_up) <= self.now)
    }

    fn state(&self, a: &AllocationRecord) -> Option<ObservedState> {
        self.observed.get(&a.id).map(|o| o.state)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub app: String,
    pub tag: &'static str,
    pub text: String,
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub create: Vec<AllocationRecord>,
    /// `(old, new)`: the write is a compare-and-swap against `old`.
    pub update: Vec<(AllocationRecord, AllocationRecord)>,
    pub delete: Vec<AllocationRecord>,
    pub put_routes: Vec<(RouteKey, String)>,
    pub delete_routes: Vec<RouteKey>,
    pub events: Vec<Event>,
    /// Instances no host could take, and why.
    pub unplaced: Vec<Unplaced>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty()
            && self.update.is_empty()
            && self.delete.is_empty()
            && self.put_routes.is_empty()
            && self.delete_routes.is_empty()
    }

    fn drain(&mut self, a: &AllocationRecord, until: Timestamp) {
        let mut new = a.clone();
        new.desired = Desired::Drain { until };
        self.update.push((a.clone(), new));
    }
}

pub fn reconcile(w: &World<'_>, new_id: &mut dyn FnMut() -> String) -> Plan {
    let mut plan = Plan::default();
    let survivors = remove_the_dead(w, &mut plan);
    let mut cap = Capacity::of(&survivors, w.settings.memory());
    let mut apps: Vec<&AppView> = w.apps.iter().collect();
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    // Apps whose deploying release's web instances take traffic before the verdict: the
    // version, and how long an instance must be up to count.
    let mut mixed: HashMap<String, (u64, Duration)> = HashMap::new();
    // Each app's allocations, grouped in one pass: filtering all of them for every app made a
    // pass quadratic in the number of apps (a million comparisons at 1,000 apps, twice a second).
    let mut by_app: HashMap<&str, Vec<&AllocationRecord>> = HashMap::new();
    for a in &survivors {
        by_app.entry(a.app.as_str()).or_default().push(a);
    }
    for app in apps {
        let mine = by_app.remove(app.name.as_str()).unwrap_or_default();
        let pacing = w.settings.pacing(app);
        let paces = paces(w, app, &mine, &pacing);
        if let (Some(d), Some(web)) = (&app.deploying, paces.get(WEB)) {
            if web.mixed {
                mixed.insert(app.name.clone(), (d.version, pacing.min_up));
            }
        }
        let roles = [
            (&app.release, Role::Serving),
            (&app.deploying, Role::Deploying),
            (&app.canary, Role::Canary),
        ];
        for (release, role) in roles {
            if let Some(release) = release {
                let how = Converge {
                    role,
                    paces: &paces,
                    pacing: &pacing,
                };
                converge(w, &mut plan, &mut cap, app, release, &mine, &how, new_id);
            }
        }
        retire(w, &mut plan, app, &mine, &pacing);
    }
    routes(w, &mut plan, &survivors, &mixed);
    plan
}

/// The pace of each process type of an app's rollout (none without one, or for a process type
/// only one of the two releases runs).
fn paces(
    w: &World<'_>,
    app: &AppView,
    mine: &[&AllocationRecord],
    pacing: &Pacing,
) -> BTreeMap<String, Pace> {
    let (Some(old), Some(new)) = (&app.release, &app.deploying) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (process, &n) in &app.formation {
        if n == 0 || !old.types.contains(process) || !new.types.contains(process) {
            continue;
        }
        let ready: BTreeSet<u32> = mine
            .iter()
            .filter(|a| {
                a.release == new.version
                    && &a.process == process
                    && a.desired == Desired::Run
                    && (1..=n).contains(&a.index)
                    && w.is_settled(a, pacing.min_up)
            })
            .map(|a| a.index)
            .collect();
        let mut surge = pacing.max_surge.of(n, true);
        let unavailable = pacing.max_unavailable.of(n, false);
        if surge == 0 && unavailable == 0 {
            // Shares that round to nothing for a small count: one at a time, never stuck.
            surge = 1;
        }
        out.insert(
            process.clone(),
            pace(n, surge, unavailable, ready.len() as u32),
        );
    }
    out
}

/// Rule 1: what goes away regardless of desire. Returns the allocations that stay.
fn remove_the_dead(w: &World<'_>, plan: &mut Plan) -> Vec<AllocationRecord> {
    let apps: BTreeSet<&str> = w.apps.iter().map(|a| a.name.as_str()).collect();
    let hosts: HashMap<&str, &HostView> = w.hosts.iter().map(|h| (h.id.as_str(), h)).collect();
    let mut survivors = Vec::new();
    let mut lost_by_app: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for a in w.allocations {
        let host = hosts.get(a.host_id.as_str());
        let drained = matches!(a.desired, Desired::Drain { until } if until <= w.now);
        if !apps.contains(a.app.as_str()) || drained {
            plan.delete.push(a.clone());
        } else if !host.is_some_and(|h| h.alive) {
            if a.desired == Desired::Run {
                let host_name = host.map_or_else(|| a.host_id.clone(), |h| h.name.clone());
                lost_by_app
                    .entry(a.app.clone())
                    .or_insert_with(|| (host_name, Vec::new()))
                    .1
                    .push(a.instance_name());
            }
            plan.delete.push(a.clone());
        } else {
            survivors.push(a.clone());
        }
    }
    for (app, (host, names)) in lost_by_app {
        plan.events.push(Event {
            app,
            tag: "host",
            text: format!(
                "host {host} stopped answering; replacing {}",
                names.join(", ")
            ),
        });
    }
    survivors
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Serving,
    Deploying,
    /// Runs as many `web` instances as the formation asks for, and nothing else: a canary
    /// takes requests; its workers would run beside the serving release's.
    Canary,
}

/// How rule 2 treats one release of an app.
struct Converge<'a> {
    role: Role,
    paces: &'a BTreeMap<String, Pace>,
    pacing: &'a Pacing,
}

/// Rule 2: one running allocation per index of every process type of `release`, for as many
/// indices as its pace gives it.
#[allow(clippy::too_many_arguments)]
fn converge(
    w: &World<'_>,
    plan: &mut Plan,
    cap: &mut Capacity,
    app: &AppView,
    release: &ReleaseView,
    mine: &[&AllocationRecord],
    how: &Converge<'_>,
    new_id: &mut dyn FnMut() -> String,
) {
    let processes: BTreeSet<&str> = app
        .formation
        .keys()
        .map(String::as_str)
        .chain(
            mine.iter()
                .filter(|a| a.release == release.version)
                .map(|a| a.process.as_str()),
        )
        .collect();
    let drain_until = w.now.plus(how.pacing.drain);
    let mut making_way: Vec<String> = Vec::new();
    for process in processes {
        let n = if release.types.contains(process) && (how.role != Role::Canary || process == WEB) {
            app.formation.get(process).copied().unwrap_or(0)
        } else {
            0
        };
        let target = match (how.role, how.paces.get(process)) {
            (Role::Serving, Some(p)) => p.old,
            (Role::Deploying, Some(p)) => p.new,
            _ => n,
        };
        let mut current: Vec<&AllocationRecord> = mine
            .iter()
            .filter(|a| {
                a.process == process && a.release == release.version && a.desired == Desired::Run
            })
            .copied()
            .collect();
        // Up instances first, so when an index has duplicates the serving one stays.
        current.sort_by_key(|a| (a.index, !w.is_up(a), a.created_at));
        let mut kept: Vec<&AllocationRecord> = Vec::new();
        let mut indices: BTreeSet<u32> = BTreeSet::new();
        for a in current {
            if a.index >= 1 && a.index <= n && indices.insert(a.index) {
                kept.push(a);
            } else {
                plan.drain(a, drain_until);
            }
        }
        if how.role == Role::Serving {
            replace_failing(w, plan, app, release, process, &mut kept, drain_until);
        }
        // Making way in a batched rollout: the ones not up go first, then the highest indices.
        if kept.len() > target as usize {
            kept.sort_by_key(|a| (w.is_up(a), std::cmp::Reverse(a.index)));
            let excess = kept.len() - target as usize;
            for a in kept.drain(..excess) {
                plan.drain(a, drain_until);
                making_way.push(a.instance_name());
            }
        }
        let need = Need::of(
            release.memory_mb.get(process).copied(),
            release.reserve_mb.get(process).copied(),
            w.settings.memory(),
        );
        let have: BTreeSet<u32> = kept.iter().map(|a| a.index).collect();
        let wanted = (target as usize).saturating_sub(kept.len());
        for index in (1..=n).filter(|i| !have.contains(i)).take(wanted) {
            match place(w, cap, &app.name, need) {
                Ok(host_id) => plan.create.push(AllocationRecord {
                    memory_mb: need.limit_mb,
                    reserved_mb: need.reserve_mb,
                    id: new_id(),
                    app: app.name.clone(),
                    release: release.version,
                    process: process.to_string(),
                    index,
                    host_id,
                    created_at: w.now,
                    desired: Desired::Run,
                }),
                Err((reason, waiting)) => plan.unplaced.push(Unplaced {
                    app: app.name.clone(),
                    release: release.version,
                    instance: format!("{process}.{index}"),
                    need,
                    reason,
                    waiting,
                }),
            }
        }
    }
    if let (false, Some(new)) = (making_way.is_empty(), &app.deploying) {
        making_way.sort_by_key(|n| instance_order(n));
        plan.events.push(Event {
            app: app.name.clone(),
            tag: "deploy",
            text: format!(
                "Stopping v{} ({}) to make way for v{}",
                release.version,
                making_way.join(", "),
                new.version
            ),
        });
    }
}

/// `keep=N`: an instance failing its liveness check is replaced (drained, and a new one placed
/// at its index) while at least N others of its process type are up.
fn replace_failing(
    w: &World<'_>,
    plan: &mut Plan,
    app: &AppView,
    release: &ReleaseView,
    process: &str,
    kept: &mut Vec<&AllocationRecord>,
    drain_until: Timestamp,
) {
    let Some(&Strategy::Keep(k)) = release.strategies.get(process) else {
        return;
    };
    let up = kept.iter().filter(|a| w.is_up(a)).count() as u32;
    if up < k {
        return;
    }
    let mut replaced = Vec::new();
    kept.retain(|a| {
        if w.state(a) != Some(ObservedState::Unhealthy) {
            return true;
        }
        plan.drain(a, drain_until);
        replaced.push(a.instance_name());
        false
    });
    if !replaced.is_empty() {
        plan.events.push(Event {
            app: app.name.clone(),
            tag: "health",
            text: format!(
                "Replacing {} of v{}: failing its liveness check, and {up} others are up (strategy keep={k})",
                replaced.join(", "),
                release.version
            ),
        });
    }
}

/// Rule 3: allocations of releases that neither serve nor deploy go.
fn retire(
    w: &World<'_>,
    plan: &mut Plan,
    app: &AppView,
    mine: &[&AllocationRecord],
    pacing: &Pacing,
) {
    let live: BTreeSet<u64> = [&app.release, &app.deploying, &app.canary]
        .into_iter()
        .flatten()
        .map(|r| r.version)
        .collect();
    // Releases older than the serving one served before it: they drain, so in-flight requests
    // finish. Newer ones failed or were superseded before they came up, and never took traffic,
    // except in a batched rollout: those that did stay while the serving release has too few
    // instances up to take their place, then drain.
    let serving = app.release.as_ref().map_or(0, |r| r.version);
    let drain_until = w.now.plus(pacing.drain);
    let mut room: BTreeMap<&str, u32> = BTreeMap::new();
    for (process, &n) in &app.formation {
        let up = mine
            .iter()
            .filter(|a| {
                a.release == serving
                    && a.process == *process
                    && a.desired == Desired::Run
                    && w.is_up(a)
            })
            .count() as u32;
        let floor = n.saturating_sub(pacing.max_unavailable.of(n, false));
        room.insert(process.as_str(), floor.saturating_sub(up));
    }
    let mut stopping: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut rest: Vec<&&AllocationRecord> = mine
        .iter()
        .filter(|a| a.desired == Desired::Run && !live.contains(&a.release))
        .collect();
    rest.sort_by_key(|a| (a.release, a.index));
    for a in rest {
        let routed = w.routes.contains_key(&RouteKey {
            app: a.app.clone(),
            release: a.release,
            instance: a.instance_name(),
        });
        if a.release > serving && !routed {
            plan.delete.push((*a).clone());
            continue;
        }
        if a.release > serving && w.is_up(a) {
            if let Some(left) = room.get_mut(a.process.as_str()).filter(|r| **r > 0) {
                *left -= 1;
                continue;
            }
        }
        plan.drain(a, drain_until);
        stopping
            .entry(a.release)
            .or_default()
            .push(a.instance_name());
    }
    for (version, mut names) in stopping {
        names.sort_by_key(|n| instance_order(n));
        plan.events.push(Event {
            app: app.name.clone(),
            tag: "deploy",
            text: format!("Stopping v{version} ({})", names.join(", ")),
        });
    }
}

/// `web.2` before `web.10`: by process type, then by index as a number.
fn instance_order(name: &str) -> (String, u32) {
    match name.split_once('.') {
        Some((process, index)) => (process.to_string(), index.parse().unwrap_or(u32::MAX)),
        None => (name.to_string(), 0),
    }
}

/// Rule 4: routes follow the allocations as they will be after this plan.
fn routes(
    w: &World<'_>,
    plan: &mut Plan,
    survivors: &[AllocationRecord],
    mixed: &HashMap<String, (u64, Duration)>,
) {
    let hosts: HashMap<&str, &HostView> = w.hosts.iter().map(|h| (h.id.as_str(), h)).collect();
    let serving: HashMap<&str, u64> = w
        .apps
        .iter()
        .filter_map(|a| Some((a.name.as_str(), a.release.as_ref()?.version)))
        .collect();
    let canaries: HashMap<&str, u64> = w
        .apps
        .iter()
        .filter_map(|a| Some((a.name.as_str(), a.canary.as_ref()?.version)))
        .collect();
    let updated: HashMap<&str, &AllocationRecord> = plan
        .update
        .iter()
        .map(|(_, new)| (new.id.as_str(), new))
        .collect();
    let deleted: BTreeSet<&str> = plan.delete.iter().map(|a| a.id.as_str()).collect();
    let mut desired_routes: BTreeMap<RouteKey, String> = BTreeMap::new();
    for a in survivors {
        let a = updated.get(a.id.as_str()).copied().unwrap_or(a);
        if a.process != WEB || a.desired != Desired::Run || deleted.contains(a.id.as_str()) {
            continue;
        }
        let key = RouteKey {
            app: a.app.clone(),
            release: a.release,
            instance: a.instance_name(),
        };
        let serves = serving.get(a.app.as_str()) == Some(&a.release)
            || canaries.get(a.app.as_str()) == Some(&a.release);
        let takes_over = mixed
            .get(&a.app)
            .is_some_and(|&(version, min_up)| version == a.release && w.is_settled(a, min_up));
        if !(serves || takes_over || w.routes.contains_key(&key)) {
            continue;
        }
        match w.observed.get(&a.id) {
            Some(Obs {
                state: ObservedState::Up,
                port: Some(port),
                container_addr,
                ..
            }) => {
                let host = hosts[a.host_id.as_str()];
                let addr = match container_addr {
                    Some(direct) if host.colocated => direct.clone(),
                    _ => format!("{}:{port}", host.address),
                };
                desired_routes.insert(key, addr);
            }
            None => {
                if let Some(existing) = w.routes.get(&key) {
                    desired_routes.insert(key, existing.clone());
                }
            }
            Some(_) => {}
        }
    }
    for (key, addr) in &desired_routes {
        if w.routes.get(key) != Some(addr) {
            plan.put_routes.push((key.clone(), addr.clone()));
        }
    }
    for key in w.routes.keys() {
        if !desired_routes.contains_key(key) {
            plan.delete_routes.push(key.clone());
        }
    }
}

/// Builders for tables of worlds, shared by the scheduler's pure cores' tests.
#[cfg(test)]
pub(crate) mod testkit;

#[cfg(test)]
mod tests;
