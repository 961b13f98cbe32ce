use super::*;

pub const T0: u64 = 1_000_000;

/// A drain of 5 s, no minimum up time, and room for 5 more instances in a rollout.
pub fn settings() -> Settings {
    let mut defaults = crate::schedule::app_defaults(Duration::from_secs(5));
    defaults.min_up_ms = Some(0);
    Settings {
        instance_memory_mb: 512,
        instance_reserve_mb: 512,
        start_timeout: Duration::from_secs(60),
        defaults,
    }
}

pub fn host(id: &str, alive: bool) -> HostView {
    HostView {
        id: id.into(),
        name: format!("{id}-name"),
        address: format!("10.0.0.{}", id.len()),
        memory_mb: 4096,
        overcommit: 1.0,
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
        strategies: BTreeMap::new(),
        memory_mb: BTreeMap::new(),
        reserve_mb: BTreeMap::new(),
    }
}

pub fn app(name: &str, release: Option<u64>, formation: &[(&str, u32)]) -> AppView {
    AppView {
        name: name.into(),
        formation: formation.iter().map(|(p, n)| (p.to_string(), *n)).collect(),
        release: release.map(|r| release_view(r, T0 - 100_000)),
        deploying: None,
        canary: None,
        settings: AppSettings::default(),
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
        reserved_mb: 512,
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
    pub settings: Settings,
    pub pending: Vec<crate::schedule::place::Pending>,
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
            settings: settings(),
            pending: Vec::new(),
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
                since: Timestamp(T0 - 60_000),
                check: None,
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
                since: Timestamp(T0 - 60_000),
                check: None,
            },
        );
        self
    }
    pub fn route(mut self, app: &str, release: u64, instance: &str, addr: &str) -> Self {
        self.routes.insert(rk(app, release, instance), addr.into());
        self
    }
    pub fn with_world<T>(&self, f: impl FnOnce(&World<'_>) -> T) -> T {
        let s = &self.settings;
        let w = World {
            now: Timestamp(self.now),
            started: Timestamp(self.started),
            apps: &self.apps,
            allocations: &self.allocs,
            hosts: &self.hosts,
            observed: &self.observed,
            routes: &self.routes,
            settings: s,
            pending: &self.pending,
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
