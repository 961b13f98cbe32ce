//! `reconcile(world) -> Plan`: what the cluster should do next, as data. No I/O, no clock, no
//! randomness (ids come from the caller), so every decision is tested as a table of inputs and
//! outputs. Whether a deploying release is up is decided before, by [`super::rollout`]; here a
//! release is either the app's serving (`current`) one, its `deploying` one, or retired.
//!
//! The rules, one function each:
//! 1. [`remove_the_dead`]: allocations of destroyed apps, on lost hosts, or whose drain deadline
//!    passed are deleted. (Deleting is what makes an agent stop the container.)
//! 2. [`converge`]: the current and the deploying release each get exactly one allocation for
//!    each index `1..=n` of each process type, placed on a live host; extra ones (scaled down,
//!    duplicates) start draining. So while a release deploys, the one before keeps running
//!    whole, every process type of it.
//! 3. [`retire`]: allocations of any other release go: those of releases older than the serving
//!    one drain (they served: in-flight requests finish), newer ones are deleted at once (a
//!    failed or superseded release never took traffic).
//! 4. [`routes`]: routes are the current release's `web` allocations that are wanted and up. An
//!    allocation whose state is unknown (right after a control-plane restart, before its host
//!    reported) keeps its route.

use crate::store::{AllocationRecord, Desired, RouteKey};
use caas_api::agent::ObservedState;
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
    /// Memory of the process types resized from the default (`caas ps:resize`), MB.
    pub memory_mb: BTreeMap<String, u64>,
}

#[derive(Debug, Clone)]
pub struct AppView {
    pub name: String,
    pub formation: BTreeMap<String, u32>,
    /// The release that serves.
    pub release: Option<ReleaseView>,
    /// The release being rolled out beside it.
    pub deploying: Option<ReleaseView>,
}

#[derive(Debug, Clone)]
pub struct HostView {
    pub id: String,
    pub name: String,
    pub address: String,
    pub memory_mb: u64,
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
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub drain: Duration,
    pub instance_memory_mb: u64,
    /// How long a deploying release has to be up before it fails.
    pub start_timeout: Duration,
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
}

impl World<'_> {
    fn is_up(&self, a: &AllocationRecord) -> bool {
        self.observed
            .get(&a.id)
            .is_some_and(|o| o.state == ObservedState::Up)
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
    /// Instances no host could take: `(app, "web.3", reason)`.
    pub unplaced: Vec<(String, String, String)>,
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

/// Running tallies per host while placing, so one plan does not overfill a host.
struct Capacity {
    used_mb: HashMap<String, u64>,
    used_slots: HashMap<String, u32>,
    per_app: HashMap<(String, String), u32>,
}

impl Capacity {
    fn of(survivors: &[AllocationRecord], instance_memory_mb: u64) -> Self {
        let mut cap = Capacity {
            used_mb: HashMap::new(),
            used_slots: HashMap::new(),
            per_app: HashMap::new(),
        };
        for a in survivors {
            let mb = if a.memory_mb > 0 {
                a.memory_mb
            } else {
                instance_memory_mb
            };
            *cap.used_mb.entry(a.host_id.clone()).or_default() += mb;
            *cap.used_slots.entry(a.host_id.clone()).or_default() += 1;
            *cap.per_app
                .entry((a.host_id.clone(), a.app.clone()))
                .or_default() += 1;
        }
        cap
    }
}

pub fn reconcile(w: &World<'_>, new_id: &mut dyn FnMut() -> String) -> Plan {
    let mut plan = Plan::default();
    let survivors = remove_the_dead(w, &mut plan);
    let mut cap = Capacity::of(&survivors, w.settings.instance_memory_mb);
    let mut apps: Vec<&AppView> = w.apps.iter().collect();
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    for app in apps {
        let mine: Vec<&AllocationRecord> = survivors.iter().filter(|a| a.app == app.name).collect();
        for release in [&app.release, &app.deploying].into_iter().flatten() {
            converge(w, &mut plan, &mut cap, app, release, &mine, new_id);
        }
        retire(w, &mut plan, app, &mine);
    }
    routes(w, &mut plan, &survivors);
    plan
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

/// Rule 2: one running allocation per index of every process type of `release`.
fn converge(
    w: &World<'_>,
    plan: &mut Plan,
    cap: &mut Capacity,
    app: &AppView,
    release: &ReleaseView,
    mine: &[&AllocationRecord],
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
    let drain_until = w.now.plus(w.settings.drain);
    for process in processes {
        let n = if release.types.contains(process) {
            app.formation.get(process).copied().unwrap_or(0)
        } else {
            0
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
        let mut kept: BTreeSet<u32> = BTreeSet::new();
        for a in current {
            if a.index >= 1 && a.index <= n && kept.insert(a.index) {
                continue;
            }
            plan.drain(a, drain_until);
        }
        let need = release
            .memory_mb
            .get(process)
            .copied()
            .unwrap_or(w.settings.instance_memory_mb);
        for index in (1..=n).filter(|i| !kept.contains(i)) {
            match place(w, cap, &app.name, need) {
                Ok(host_id) => plan.create.push(AllocationRecord {
                    memory_mb: need,
                    id: new_id(),
                    app: app.name.clone(),
                    release: release.version,
                    process: process.to_string(),
                    index,
                    host_id,
                    created_at: w.now,
                    desired: Desired::Run,
                }),
                Err(reason) => {
                    plan.unplaced
                        .push((app.name.clone(), format!("{process}.{index}"), reason))
                }
            }
        }
    }
}

/// Rule 3: allocations of releases that neither serve nor deploy go.
fn retire(w: &World<'_>, plan: &mut Plan, app: &AppView, mine: &[&AllocationRecord]) {
    let live: BTreeSet<u64> = [&app.release, &app.deploying]
        .into_iter()
        .flatten()
        .map(|r| r.version)
        .collect();
    // Releases older than the serving one served before it: they drain, so in-flight requests
    // finish. Newer ones failed or were superseded before they came up, and never took traffic.
    let serving = app.release.as_ref().map_or(0, |r| r.version);
    let drain_until = w.now.plus(w.settings.drain);
    let mut stopping: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for a in mine
        .iter()
        .filter(|a| a.desired == Desired::Run && !live.contains(&a.release))
    {
        if a.release < serving {
            plan.drain(a, drain_until);
            stopping
                .entry(a.release)
                .or_default()
                .push(a.instance_name());
        } else {
            plan.delete.push((*a).clone());
        }
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
fn routes(w: &World<'_>, plan: &mut Plan, survivors: &[AllocationRecord]) {
    let hosts: HashMap<&str, &HostView> = w.hosts.iter().map(|h| (h.id.as_str(), h)).collect();
    let serving: HashMap<&str, u64> = w
        .apps
        .iter()
        .filter_map(|a| Some((a.name.as_str(), a.release.as_ref()?.version)))
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
        if a.process != WEB
            || a.desired != Desired::Run
            || deleted.contains(a.id.as_str())
            || serving.get(a.app.as_str()) != Some(&a.release)
        {
            continue;
        }
        let key = RouteKey {
            app: a.app.clone(),
            release: a.release,
            instance: a.instance_name(),
        };
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

/// Filter live hosts with room (memory, a free port), then prefer the host with the fewest
/// instances of this app (spread), then the most free memory, then the id (determinism).
/// A host for an instance of `app` that needs `need` MB.
fn place(w: &World<'_>, cap: &mut Capacity, app: &str, need: u64) -> Result<String, String> {
    let best = w
        .hosts
        .iter()
        .filter(|h| h.alive)
        .filter(|h| cap.used_slots.get(&h.id).copied().unwrap_or(0) < h.port_slots)
        .filter_map(|h| {
            let free = h
                .memory_mb
                .saturating_sub(cap.used_mb.get(&h.id).copied().unwrap_or(0));
            (free >= need).then_some((h, free))
        })
        .min_by(|(a, free_a), (b, free_b)| {
            let same_a = cap
                .per_app
                .get(&(a.id.clone(), app.to_string()))
                .copied()
                .unwrap_or(0);
            let same_b = cap
                .per_app
                .get(&(b.id.clone(), app.to_string()))
                .copied()
                .unwrap_or(0);
            same_a
                .cmp(&same_b)
                .then(free_b.cmp(free_a))
                .then(a.id.cmp(&b.id))
        });
    match best {
        Some((h, _)) => {
            *cap.used_mb.entry(h.id.clone()).or_default() += need;
            *cap.used_slots.entry(h.id.clone()).or_default() += 1;
            *cap.per_app
                .entry((h.id.clone(), app.to_string()))
                .or_default() += 1;
            Ok(h.id.clone())
        }
        None if !w.hosts.iter().any(|h| h.alive) => Err("no host is up".into()),
        None => Err(format!(
            "no host has {need} MB of memory and a free port left"
        )),
    }
}

/// Builders for tables of worlds, shared by the scheduler's pure cores' tests.
#[cfg(test)]
pub(crate) mod testkit {
    use super::*;

    pub const T0: u64 = 1_000_000;

    pub fn settings() -> Settings {
        Settings {
            drain: Duration::from_secs(5),
            instance_memory_mb: 512,
            start_timeout: Duration::from_secs(60),
        }
    }

    pub fn host(id: &str, alive: bool) -> HostView {
        HostView {
            id: id.into(),
            name: format!("{id}-name"),
            address: format!("10.0.0.{}", id.len()),
            memory_mb: 4096,
            port_slots: 100,
            alive,
            colocated: false,
        }
    }

    /// A release defining `web` and `worker`.
    pub fn release_view(version: u64, created_at: u64) -> ReleaseView {
        ReleaseView {
            version,
            types: ["web", "worker"].iter().map(|s| s.to_string()).collect(),
            created_at: Timestamp(created_at),
            memory_mb: BTreeMap::new(),
        }
    }

    pub fn app(name: &str, release: Option<u64>, formation: &[(&str, u32)]) -> AppView {
        AppView {
            name: name.into(),
            formation: formation.iter().map(|(p, n)| (p.to_string(), *n)).collect(),
            release: release.map(|r| release_view(r, T0 - 100_000)),
            deploying: None,
        }
    }

    pub fn alloc(
        id: &str,
        app: &str,
        release: u64,
        process: &str,
        index: u32,
        host: &str,
    ) -> AllocationRecord {
        AllocationRecord {
            id: id.into(),
            app: app.into(),
            release,
            process: process.into(),
            index,
            host_id: host.into(),
            created_at: Timestamp(T0 - 1000),
            desired: Desired::Run,
            memory_mb: 512,
        }
    }

    pub struct Case {
        pub apps: Vec<AppView>,
        pub allocs: Vec<AllocationRecord>,
        pub hosts: Vec<HostView>,
        pub observed: HashMap<String, Obs>,
        pub routes: BTreeMap<RouteKey, String>,
        pub now: u64,
        pub started: u64,
    }

    impl Case {
        pub fn new(apps: Vec<AppView>, allocs: Vec<AllocationRecord>) -> Self {
            Self {
                apps,
                allocs,
                hosts: vec![host("h1", true)],
                observed: HashMap::new(),
                routes: BTreeMap::new(),
                now: T0,
                started: 0,
            }
        }
        pub fn up(mut self, id: &str, port: u16) -> Self {
            self.observed.insert(
                id.into(),
                Obs {
                    state: ObservedState::Up,
                    port: Some(port),
                    container_addr: Some(format!("172.17.0.9:{port}")),
                    restarts: 0,
                },
            );
            self
        }
        pub fn state(mut self, id: &str, state: ObservedState) -> Self {
            self.observed.insert(
                id.into(),
                Obs {
                    state,
                    port: Some(1),
                    container_addr: None,
                    restarts: 0,
                },
            );
            self
        }
        pub fn route(mut self, app: &str, release: u64, instance: &str, addr: &str) -> Self {
            self.routes.insert(rk(app, release, instance), addr.into());
            self
        }
        fn with_world<T>(&self, f: impl FnOnce(&World<'_>) -> T) -> T {
            let s = settings();
            let w = World {
                now: Timestamp(self.now),
                started: Timestamp(self.started),
                apps: &self.apps,
                allocations: &self.allocs,
                hosts: &self.hosts,
                observed: &self.observed,
                routes: &self.routes,
                settings: &s,
            };
            f(&w)
        }
        pub fn run(&self) -> Plan {
            self.with_world(|w| {
                let mut n = 0;
                reconcile(w, &mut || {
                    n += 1;
                    format!("new{n}")
                })
            })
        }
        pub fn assess(&self) -> Vec<crate::schedule::rollout::Verdict> {
            self.with_world(crate::schedule::rollout::assess)
        }
    }

    pub fn rk(app: &str, release: u64, instance: &str) -> RouteKey {
        RouteKey {
            app: app.into(),
            release,
            instance: instance.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;
    use ObservedState::*;

    fn created(plan: &Plan) -> Vec<(String, u32, String)> {
        plan.create
            .iter()
            .map(|a| (a.process.clone(), a.index, a.host_id.clone()))
            .collect()
    }

    fn drained(plan: &Plan) -> Vec<String> {
        plan.update
            .iter()
            .map(|(_, new)| {
                assert_eq!(
                    new.desired,
                    Desired::Drain {
                        until: Timestamp(T0 + 5000)
                    }
                );
                new.id.clone()
            })
            .collect()
    }

    fn deleted(plan: &Plan) -> Vec<String> {
        plan.delete.iter().map(|a| a.id.clone()).collect()
    }

    #[test]
    fn an_app_without_release_runs_nothing() {
        let plan = Case::new(vec![app("a", None, &[("web", 1)])], vec![]).run();
        assert!(plan.is_empty());
    }

    #[test]
    fn a_first_deploy_places_every_index() {
        let plan = Case::new(vec![app("a", Some(1), &[("web", 3)])], vec![]).run();
        assert_eq!(
            created(&plan),
            [
                ("web".into(), 1, "h1".into()),
                ("web".into(), 2, "h1".into()),
                ("web".into(), 3, "h1".into())
            ]
        );
        assert!(plan.put_routes.is_empty(), "nothing is up yet");
    }

    #[test]
    fn a_steady_app_needs_nothing() {
        let c = Case::new(
            vec![app("a", Some(1), &[("web", 1)])],
            vec![alloc("x", "a", 1, "web", 1, "h1")],
        )
        .up("x", 20001)
        .route("a", 1, "web.1", "10.0.0.2:20001");
        assert_eq!(c.run(), Plan::default());
    }

    #[test]
    fn instances_on_the_gateways_own_host_are_routed_at_their_container_address() {
        let mut c = Case::new(
            vec![app("a", Some(1), &[("web", 1)])],
            vec![alloc("x", "a", 1, "web", 1, "h1")],
        )
        .up("x", 20001);
        c.hosts[0].colocated = true;
        assert_eq!(
            c.run().put_routes,
            [(rk("a", 1, "web.1"), "172.17.0.9:20001".to_string())]
        );
        // Without a container address it falls back to the published port.
        c.observed.get_mut("x").unwrap().container_addr = None;
        assert_eq!(
            c.run().put_routes,
            [(rk("a", 1, "web.1"), "10.0.0.2:20001".to_string())]
        );
    }

    #[test]
    fn an_up_web_instance_gets_a_route_and_a_worker_does_not() {
        let c = Case::new(
            vec![app("a", Some(1), &[("web", 1), ("worker", 1)])],
            vec![
                alloc("x", "a", 1, "web", 1, "h1"),
                alloc("w", "a", 1, "worker", 1, "h1"),
            ],
        )
        .up("x", 20001)
        .up("w", 20002);
        let plan = c.run();
        assert_eq!(
            plan.put_routes,
            [(rk("a", 1, "web.1"), "10.0.0.2:20001".to_string())]
        );
    }

    #[test]
    fn scaling_down_drains_the_highest_indices_and_unroutes_them_at_once() {
        let c = Case::new(
            vec![app("a", Some(1), &[("web", 1)])],
            vec![
                alloc("x1", "a", 1, "web", 1, "h1"),
                alloc("x2", "a", 1, "web", 2, "h1"),
            ],
        )
        .up("x1", 1)
        .up("x2", 2)
        .route("a", 1, "web.1", "10.0.0.2:1")
        .route("a", 1, "web.2", "10.0.0.2:2");
        let plan = c.run();
        assert_eq!(drained(&plan), ["x2"]);
        assert_eq!(plan.delete_routes, [rk("a", 1, "web.2")]);
        assert!(plan.create.is_empty());
    }

    #[test]
    fn scaling_to_zero_drains_everything() {
        let c = Case::new(
            vec![app("a", Some(1), &[("web", 0)])],
            vec![alloc("x1", "a", 1, "web", 1, "h1")],
        )
        .up("x1", 1)
        .route("a", 1, "web.1", "10.0.0.2:1");
        let plan = c.run();
        assert_eq!(drained(&plan), ["x1"]);
        assert_eq!(plan.delete_routes, [rk("a", 1, "web.1")]);
    }

    #[test]
    fn a_drained_allocation_is_deleted_after_its_deadline_only() {
        let mut early = alloc("x1", "a", 1, "web", 2, "h1");
        early.desired = Desired::Drain {
            until: Timestamp(T0 + 1),
        };
        let mut due = alloc("x2", "a", 1, "web", 3, "h1");
        due.desired = Desired::Drain {
            until: Timestamp(T0),
        };
        let c = Case::new(
            vec![app("a", Some(1), &[("web", 1)])],
            vec![alloc("x0", "a", 1, "web", 1, "h1"), early, due],
        )
        .up("x0", 1)
        .route("a", 1, "web.1", "10.0.0.2:1");
        let plan = c.run();
        assert_eq!(deleted(&plan), ["x2"]);
        assert!(plan.update.is_empty() && plan.create.is_empty());
    }

    /// `a` serving v1, deploying v2.
    fn rolling(formation: &[(&str, u32)]) -> AppView {
        let mut a = app("a", Some(1), formation);
        a.deploying = Some(release_view(2, T0 - 1000));
        a
    }

    #[test]
    fn a_rollout_starts_new_before_it_stops_old() {
        // Step 1: v2 is deploying and not placed yet: place it, keep v1 serving.
        let c = Case::new(
            vec![rolling(&[("web", 1)])],
            vec![alloc("v1", "a", 1, "web", 1, "h1")],
        )
        .up("v1", 1)
        .route("a", 1, "web.1", "10.0.0.2:1");
        let plan = c.run();
        assert_eq!(created(&plan), [("web".into(), 1, "h1".into())]);
        assert_eq!(plan.create[0].release, 2);
        assert!(plan.update.is_empty() && plan.delete_routes.is_empty());

        // Step 2: v2 is up but not promoted yet (rollout::assess decides that): it takes no
        // traffic, and nothing stops.
        let both = vec![
            alloc("v1", "a", 1, "web", 1, "h1"),
            alloc("v2", "a", 2, "web", 1, "h1"),
        ];
        let c = Case::new(vec![rolling(&[("web", 1)])], both.clone())
            .up("v1", 1)
            .up("v2", 2)
            .route("a", 1, "web.1", "10.0.0.2:1");
        assert_eq!(c.run(), Plan::default());

        // Step 3: v2 serves: route it, unroute and drain v1, say so.
        let c = Case::new(vec![app("a", Some(2), &[("web", 1)])], both)
            .up("v1", 1)
            .up("v2", 2)
            .route("a", 1, "web.1", "10.0.0.2:1");
        let plan = c.run();
        assert_eq!(drained(&plan), ["v1"]);
        assert_eq!(
            plan.put_routes,
            [(rk("a", 2, "web.1"), "10.0.0.2:2".to_string())]
        );
        assert_eq!(plan.delete_routes, [rk("a", 1, "web.1")]);
        assert_eq!(plan.events[0].tag, "deploy");
        assert_eq!(plan.events[0].text, "Stopping v1 (web.1)");
    }

    #[test]
    fn while_a_release_deploys_every_process_type_of_the_serving_one_keeps_running() {
        // v2's worker is up and its web crashed: v1 stays whole, web and worker.
        let allocs = vec![
            alloc("w1", "a", 1, "web", 1, "h1"),
            alloc("k1", "a", 1, "worker", 1, "h1"),
            alloc("w2", "a", 2, "web", 1, "h1"),
            alloc("k2", "a", 2, "worker", 1, "h1"),
        ];
        let formation = [("web", 1), ("worker", 1)];
        let c = Case::new(vec![rolling(&formation)], allocs.clone())
            .up("w1", 1)
            .up("k1", 2)
            .state("w2", Crashed)
            .up("k2", 3)
            .route("a", 1, "web.1", "10.0.0.2:1");
        assert_eq!(c.run(), Plan::default());
    }

    #[test]
    fn a_failed_release_is_removed_at_once_and_the_serving_one_is_untouched() {
        // After the verdict: v1 serves, nothing deploys; v2's instances never took traffic.
        let c = Case::new(
            vec![app("a", Some(1), &[("web", 1), ("worker", 1)])],
            vec![
                alloc("w1", "a", 1, "web", 1, "h1"),
                alloc("k1", "a", 1, "worker", 1, "h1"),
                alloc("w2", "a", 2, "web", 1, "h1"),
                alloc("k2", "a", 2, "worker", 1, "h1"),
            ],
        )
        .up("w1", 1)
        .up("k1", 2)
        .state("w2", Crashed)
        .up("k2", 3)
        .route("a", 1, "web.1", "10.0.0.2:1");
        let plan = c.run();
        assert_eq!(deleted(&plan), ["w2", "k2"]);
        assert!(plan.update.is_empty() && plan.create.is_empty());
        assert!(plan.put_routes.is_empty() && plan.delete_routes.is_empty());
        assert!(plan.events.is_empty(), "{:?}", plan.events);
    }

    #[test]
    fn a_failed_first_release_leaves_nothing_running() {
        let c = Case::new(
            vec![app("a", None, &[("web", 1)])],
            vec![alloc("w1", "a", 1, "web", 1, "h1")],
        )
        .state("w1", Crashed);
        assert_eq!(deleted(&c.run()), ["w1"]);
    }

    #[test]
    fn a_superseded_release_makes_way_for_the_newer_one() {
        let mut a = app("a", Some(1), &[("web", 1)]);
        a.deploying = Some(release_view(3, T0));
        let c = Case::new(
            vec![a],
            vec![
                alloc("w1", "a", 1, "web", 1, "h1"),
                alloc("w2", "a", 2, "web", 1, "h1"),
            ],
        )
        .up("w1", 1)
        .state("w2", Starting)
        .route("a", 1, "web.1", "10.0.0.2:1");
        let plan = c.run();
        assert_eq!(deleted(&plan), ["w2"]);
        assert_eq!(plan.create.len(), 1);
        assert_eq!(plan.create[0].release, 3);
    }

    #[test]
    fn the_stopping_event_names_instances_in_order_whatever_the_store_order() {
        let c = Case::new(
            vec![app("a", Some(2), &[("web", 0)])],
            vec![
                alloc("x10", "a", 1, "web", 10, "h1"),
                alloc("x2", "a", 1, "web", 2, "h1"),
                alloc("k1", "a", 1, "worker", 1, "h1"),
                alloc("x1", "a", 1, "web", 1, "h1"),
            ],
        );
        let plan = c.run();
        assert_eq!(
            plan.events[0].text,
            "Stopping v1 (web.1, web.2, web.10, worker.1)"
        );
    }

    #[test]
    fn older_releases_still_running_drain_when_a_newer_one_serves() {
        // A rollback made v4 of v2's image; v3 served before it.
        let c = Case::new(
            vec![app("a", Some(4), &[("web", 1), ("worker", 1)])],
            vec![
                alloc("w3", "a", 3, "web", 1, "h1"),
                alloc("k3", "a", 3, "worker", 1, "h1"),
                alloc("w4", "a", 4, "web", 1, "h1"),
                alloc("k4", "a", 4, "worker", 1, "h1"),
            ],
        )
        .up("w3", 1)
        .up("k3", 2)
        .up("w4", 3)
        .up("k4", 4)
        .route("a", 3, "web.1", "10.0.0.2:1");
        let plan = c.run();
        assert_eq!(drained(&plan), ["w3", "k3"]);
        assert_eq!(plan.events[0].text, "Stopping v3 (web.1, worker.1)");
    }

    #[test]
    fn after_a_control_plane_restart_unknown_instances_keep_their_routes() {
        // No observations at all yet: nothing is replaced, nothing unrouted.
        let c = Case::new(
            vec![app("a", Some(1), &[("web", 2)])],
            vec![
                alloc("x1", "a", 1, "web", 1, "h1"),
                alloc("x2", "a", 1, "web", 2, "h1"),
            ],
        )
        .route("a", 1, "web.1", "10.0.0.2:1")
        .route("a", 1, "web.2", "10.0.0.2:2");
        assert_eq!(c.run(), Plan::default());
    }

    #[test]
    fn a_crashed_instance_is_unrouted_but_not_replaced() {
        // Restarting a crashed instance is its agent's job; the scheduler only unroutes it.
        let c = Case::new(
            vec![app("a", Some(1), &[("web", 1)])],
            vec![alloc("x1", "a", 1, "web", 1, "h1")],
        )
        .state("x1", Crashed)
        .route("a", 1, "web.1", "10.0.0.2:1");
        let plan = c.run();
        assert_eq!(plan.delete_routes, [rk("a", 1, "web.1")]);
        assert!(plan.create.is_empty() && plan.update.is_empty() && plan.delete.is_empty());
    }

    #[test]
    fn instances_on_a_lost_host_are_replaced_elsewhere() {
        let mut c = Case::new(
            vec![app("a", Some(1), &[("web", 2)])],
            vec![
                alloc("x1", "a", 1, "web", 1, "h1"),
                alloc("x2", "a", 1, "web", 2, "h22"),
            ],
        )
        .up("x1", 1)
        .up("x2", 2)
        .route("a", 1, "web.1", "10.0.0.2:1")
        .route("a", 1, "web.2", "10.0.0.3:2");
        c.hosts = vec![host("h1", false), host("h22", true)];
        let plan = c.run();
        assert_eq!(deleted(&plan), ["x1"]);
        assert_eq!(created(&plan), [("web".into(), 1, "h22".into())]);
        assert_eq!(plan.delete_routes, [rk("a", 1, "web.1")]);
        assert_eq!(plan.events[0].tag, "host");
        assert!(plan.events[0].text.contains("h1-name"));
    }

    #[test]
    fn placement_spreads_an_app_then_prefers_free_memory() {
        let mut c = Case::new(vec![app("a", Some(1), &[("web", 4)])], vec![]);
        let mut big = host("big", true);
        big.memory_mb = 8192;
        c.hosts = vec![host("h1", true), big];
        let hosts: Vec<String> = c.run().create.iter().map(|a| a.host_id.clone()).collect();
        assert_eq!(hosts, ["big", "h1", "big", "h1"]);
    }

    #[test]
    fn a_full_cluster_reports_what_it_could_not_place() {
        let mut c = Case::new(vec![app("a", Some(1), &[("web", 3)])], vec![]);
        c.hosts[0].memory_mb = 1100;
        let plan = c.run();
        assert_eq!(plan.create.len(), 2);
        assert_eq!(plan.unplaced.len(), 1);
        assert_eq!(plan.unplaced[0].1, "web.3");
        assert!(plan.unplaced[0].2.contains("512 MB"));

        let mut c = Case::new(vec![app("a", Some(1), &[("web", 1)])], vec![]);
        c.hosts[0].port_slots = 0;
        assert_eq!(c.run().unplaced.len(), 1);

        let mut c = Case::new(vec![app("a", Some(1), &[("web", 1)])], vec![]);
        c.hosts[0].alive = false;
        assert_eq!(c.run().unplaced[0].2, "no host is up");
    }

    #[test]
    fn allocations_of_a_destroyed_app_are_deleted() {
        let c = Case::new(vec![], vec![alloc("x1", "gone", 1, "web", 1, "h1")])
            .route("gone", 1, "web.1", "a:1");
        let plan = c.run();
        assert_eq!(deleted(&plan), ["x1"]);
        assert_eq!(plan.delete_routes, [rk("gone", 1, "web.1")]);
    }

    #[test]
    fn duplicate_indices_keep_the_serving_one() {
        let mut late = alloc("b", "a", 1, "web", 1, "h1");
        late.created_at = Timestamp(T0);
        let c = Case::new(
            vec![app("a", Some(1), &[("web", 1)])],
            vec![alloc("a1", "a", 1, "web", 1, "h1"), late],
        )
        .state("a1", Starting)
        .up("b", 7);
        let plan = c.run();
        assert_eq!(drained(&plan), ["a1"]);
        assert_eq!(
            plan.put_routes,
            [(rk("a", 1, "web.1"), "10.0.0.2:7".to_string())]
        );
    }

    #[test]
    fn a_process_type_the_release_lacks_is_not_run() {
        let mut a = app("a", Some(1), &[("web", 1), ("clock", 1)]);
        a.release.as_mut().unwrap().types = ["web".to_string()].into();
        let plan = Case::new(vec![a], vec![]).run();
        assert_eq!(created(&plan), [("web".into(), 1, "h1".into())]);
    }
}
