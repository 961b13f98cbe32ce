//! The store: the single source of truth, on sled (embedded, the default) or etcd (shared by
//! several caasd servers). The only module that imports sled or talks to etcd; `kv.rs` is the
//! interface both backends implement, so everything above it is written once.
//!
//! One tree per kind of record; values are JSON. Writes that race use compare-and-swap or an
//! optimistic transaction (no lock is ever held across I/O). Callers that acknowledge a change
//! to a user call [`Store::flush`] first: sled only reaches the disk on its own background flush
//! otherwise.
//!
//! Invariants:
//! - an app's `release` and `deploying` name releases that exist; release versions of an app
//!   only grow;
//! - releases are written in the same transaction that bumps the app's `next_version` and makes
//!   them `deploying`, so a crash leaves the new release either whole or absent;
//! - `release` changes only when a rollout succeeds ([`Store::finish_rollout`]): a release that
//!   never came up never serves;
//! - allocations are written only through [`Store::cas_allocation`], which bumps the assignment
//!   index agents long-poll on.

mod addons;
mod edge;
mod etcd;
mod hooks;
mod kv;
mod observed;
mod people;
mod records;
mod releases;
mod rename;
mod servers;

pub use addons::*;
pub use edge::*;
pub use hooks::*;
pub use observed::SharedReport;
pub use records::*;
pub use servers::ServerRecord;

use kv::{Backend, EtcdBackend, Tree, TreeWatch, Txn};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the data directory is in use by another caasd, or unreadable: {0}")]
    Open(#[source] sled::Error),
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Etcd(etcd::EtcdError),
    #[error("corrupt record in {tree}: {source}")]
    Codec {
        tree: &'static str,
        source: serde_json::Error,
    },
    #[error("already exists")]
    Exists,
    #[error("not found")]
    NotFound,
}

/// An error from an update closure, or from the store itself.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError<E> {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Rejected(E),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Audit entries kept; older ones go first.
pub const AUDIT_KEEP: usize = 100_000;

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// The trees, by name (sled's tree names; etcd's second key segment).
const TREES: [&str; 18] = [
    "apps",
    "releases",
    "builds",
    "allocations",
    "hosts",
    "routes",
    "tokens",
    "users",
    "audit",
    "meta",
    "domains",
    "certs",
    "tcp_ports",
    "acme",
    "challenges",
    "hooks",
    "addons",
    "observed",
];

struct Inner {
    backend: Backend,
    apps: Tree,
    releases: Tree,
    builds: Tree,
    allocations: Tree,
    hosts: Tree,
    routes: Tree,
    tokens: Tree,
    users: Tree,
    audit: Tree,
    meta: Tree,
    /// Custom domains: host name → `DomainRecord` (`edge.rs`).
    domains: Tree,
    /// Certificates: `APP/ID` (and `_platform` for the platform's own) → `CertRecord`
    /// (`edge.rs`).
    certs: Tree,
    /// TCP routes: public port (big-endian) → `TcpRouteRecord` (`edge.rs`).
    tcp_ports: Tree,
    /// ACME: `order/HOST` → `AcmeOrderRecord`, `account/ID` → account credentials (`edge.rs`).
    acme: Tree,
    /// ACME HTTP-01 challenges the gateway answers: token → key authorization (`edge.rs`).
    challenges: Tree,
    /// Git connections (`git/APP`) and notification webhooks (`notify/APP`) (`hooks.rs`).
    hooks: Tree,
    /// Add-ons: name → `AddonRecord` (`addons.rs`).
    addons: Tree,
    /// Agents' last reports, shared between servers on etcd: host id → `SharedReport`
    /// (`observed.rs`; empty on sled).
    observed: Tree,
    /// Bumped on every allocation write; agents long-poll on it. It starts from the clock so a
    /// restarted server never repeats an index an agent already saw. On etcd, every change of
    /// an allocation or an app that any server makes bumps it too (etcd's watch).
    assignment_index: Arc<watch::Sender<u64>>,
    /// Bumped on every route write, here, and on app writes by `routing::spawn_index` (from
    /// the store's change feed): the gateway's blocking query waits on it.
    routing_index: watch::Sender<u64>,
    /// This server, once it joined (`servers.rs`).
    me: std::sync::Mutex<Option<ServerRecord>>,
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records always serialize")
}

fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Codec { tree, source })
}

fn release_key(app: &str, version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(app.len() + 9);
    k.extend_from_slice(app.as_bytes());
    k.push(b'/');
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// sled's page cache. Its default, 1 GB, is a database server's: every page once read stays in
/// memory, so caasd's resident memory grew with its history (releases, builds, the audit log)
/// rather than with what it serves. What a scheduler pass reads (apps, allocations, routes,
/// hosts) is a few KB per app, and releases it reads are cached by the scheduler itself; 8 MB
/// holds all of it for a thousand apps, and anything colder is read again from sled's log, which
/// the kernel's page cache keeps (see docs/architecture.md, "caasd's memory").
const SLED_CACHE: u64 = 8 * 1024 * 1024;

fn app_prefix(app: &str) -> Vec<u8> {
    let mut k = app.as_bytes().to_vec();
    k.push(b'/');
    k
}

impl Store {
    /// The embedded store in `dir` (sled).
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(SLED_CACHE)
            .open()
            .map_err(StoreError::Open)?;
        Self::with(Backend::Sled(db), Arc::new(Self::fresh_index()))
    }

    /// The store kept in etcd: `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` (keys under
    /// `PREFIX`, `/caas` by default). Fails when no endpoint answers.
    pub fn open_etcd(url: &str) -> Result<Self> {
        let (endpoints, prefix) = etcd::parse_url(url)?;
        let client = etcd::Etcd::new(endpoints);
        let probe = client.clone();
        etcd::Etcd::wait(async move { probe.db_size().await })?;
        let index = Arc::new(Self::fresh_index());
        let bump = Arc::downgrade(&index);
        let backend = EtcdBackend::start(client, prefix, &TREES, move |tree| {
            if matches!(tree, "allocations" | "apps") {
                if let Some(i) = bump.upgrade() {
                    i.send_modify(|i| *i += 1);
                }
            }
        });
        Self::with(Backend::Etcd(backend), index)
    }

    fn fresh_index() -> watch::Sender<u64> {
        watch::Sender::new(caas_api::Timestamp::now().millis())
    }

    fn with(backend: Backend, assignment_index: Arc<watch::Sender<u64>>) -> Result<Self> {
        let tree = |name: &'static str| backend.tree(name);
        let inner = Inner {
            apps: tree("apps")?,
            releases: tree("releases")?,
            builds: tree("builds")?,
            allocations: tree("allocations")?,
            hosts: tree("hosts")?,
            routes: tree("routes")?,
            tokens: tree("tokens")?,
            users: tree("users")?,
            audit: tree("audit")?,
            meta: tree("meta")?,
            domains: tree("domains")?,
            certs: tree("certs")?,
            tcp_ports: tree("tcp_ports")?,
            acme: tree("acme")?,
            challenges: tree("challenges")?,
            hooks: tree("hooks")?,
            addons: tree("addons")?,
            observed: tree("observed")?,
            assignment_index,
            routing_index: watch::Sender::new(caas_api::Timestamp::now().millis()),
            me: Default::default(),
            backend,
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The store's size on disk, bytes (`GET /metrics`; on etcd, the database of the member
    /// that answered).
    pub fn size_on_disk(&self) -> Result<u64> {
        match &self.inner.backend {
            Backend::Sled(db) => Ok(db.size_on_disk()?),
            Backend::Etcd(b) => {
                let c = b.client.clone();
                Ok(etcd::Etcd::wait(async move { c.db_size().await })?)
            }
        }
    }

    /// Makes everything written so far durable. Call before acknowledging a change. (etcd
    /// answers a write once a quorum has it on disk: nothing to do.)
    pub async fn flush(&self) -> Result<()> {
        if let Backend::Sled(db) = &self.inner.backend {
            db.flush_async().await?;
        }
        Ok(())
    }

    /// A number no other call of this store returns (ordering audit entries of one millisecond).
    fn unique_id(&self) -> Result<u64> {
        match &self.inner.backend {
            Backend::Sled(db) => Ok(db.generate_id()?),
            // Servers sharing etcd share no counter: 64 random bits do not collide.
            Backend::Etcd(_) => {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).expect("the system's random source");
                Ok(u64::from_be_bytes(b))
            }
        }
    }

    /// Retries `f` as one optimistic transaction until nothing it read changed meanwhile.
    fn transact<T, A>(
        &self,
        mut f: impl FnMut(&mut Txn) -> std::result::Result<T, TxnAbort<A>>,
    ) -> std::result::Result<T, TxnAbort<A>> {
        loop {
            let mut tx = Txn::default();
            let out = f(&mut tx)?;
            if tx.commit()? {
                return Ok(out);
            }
        }
    }

    // --- meta -----------------------------------------------------------------------------

    /// A value created once and then fixed forever (cluster id), race-free.
    pub fn meta_get_or_init(&self, key: &str, init: impl FnOnce() -> String) -> Result<String> {
        if let Some(v) = self.inner.meta.get(key)? {
            return Ok(String::from_utf8_lossy(&v).into_owned());
        }
        let fresh = init();
        if self.inner.meta.cas(key, None, Some(fresh.as_bytes()))? {
            return Ok(fresh);
        }
        let current = self.inner.meta.get(key)?.unwrap_or_default();
        Ok(String::from_utf8_lossy(&current).into_owned())
    }

    // --- apps -----------------------------------------------------------------------------

    pub fn create_app(&self, rec: &AppRecord) -> Result<()> {
        match self.inner.apps.cas(&rec.name, None, Some(&encode(rec)))? {
            true => Ok(()),
            false => Err(StoreError::Exists),
        }
    }

    pub fn app(&self, name: &str) -> Result<Option<AppRecord>> {
        self.inner
            .apps
            .get(name)?
            .map(|v| decode("apps", &v))
            .transpose()
    }

    pub fn apps(&self) -> Result<Vec<AppRecord>> {
        self.inner
            .apps
            .values()?
            .iter()
            .map(|v| decode("apps", v))
            .collect()
    }

    /// Read-modify-write of one app with compare-and-swap, retried when another writer won.
    /// `f` may run more than once and must not have side effects.
    pub fn update_app<E>(
        &self,
        name: &str,
        mut f: impl FnMut(&mut AppRecord) -> std::result::Result<(), E>,
    ) -> Result<AppRecord, UpdateError<E>> {
        loop {
            let old = self.inner.apps.get(name)?.ok_or(StoreError::NotFound)?;
            let mut rec: AppRecord = decode("apps", &old)?;
            f(&mut rec).map_err(UpdateError::Rejected)?;
            if self.inner.apps.cas(name, Some(&old), Some(&encode(&rec)))? {
                return Ok(rec);
            }
        }
    }

    /// Deletes an app, its releases, builds and routes. Its allocations are left to the
    /// scheduler, which deletes allocations of apps that no longer exist (so agents stop them).
    pub fn delete_app(&self, name: &str) -> Result<()> {
        if !self.inner.apps.remove(name)? {
            return Err(StoreError::NotFound);
        }
        let prefix = app_prefix(name);
        for tree in [&self.inner.releases, &self.inner.builds, &self.inner.routes] {
            for (k, _) in tree.scan(&prefix)? {
                tree.remove(k)?;
            }
        }
        self.forget_app_edge(name)?;
        self.forget_app_hooks(name)?;
        self.forget_app_addons(name)?;
        Ok(())
    }

    // --- builds ---------------------------------------------------------------------------

    /// Records a new build with the app's next build number, atomically.
    pub fn create_build(
        &self,
        app: &str,
        make: impl Fn(u64) -> BuildRecord,
    ) -> Result<BuildRecord> {
        let (apps, builds) = (&self.inner.apps, &self.inner.builds);
        let res = self.transact::<_, std::convert::Infallible>(|tx| {
            let raw = tx.get(apps, app)?.ok_or(StoreError::NotFound)?;
            let mut rec: AppRecord = decode("apps", &raw)?;
            let number = rec.next_build;
            rec.next_build = number + 1;
            let mut build = make(number);
            build.server = self.server_id();
            tx.insert(builds, release_key(app, number), encode(&build));
            tx.insert(apps, app, encode(&rec));
            Ok(build)
        });
        res.map_err(TxnAbort::into_store)
    }

    pub fn put_build(&self, rec: &BuildRecord) -> Result<()> {
        self.inner
            .builds
            .insert(release_key(&rec.app, rec.number), encode(rec))
    }

    pub fn build(&self, app: &str, number: u64) -> Result<Option<BuildRecord>> {
        self.inner
            .builds
            .get(release_key(app, number))?
            .map(|v| decode("builds", &v))
            .transpose()
    }

    /// All builds of an app, oldest first.
    pub fn builds(&self, app: &str) -> Result<Vec<BuildRecord>> {
        self.inner
            .builds
            .scan(app_prefix(app))?
            .iter()
            .map(|(_, v)| decode("builds", v))
            .collect()
    }

    /// Every build of every app still marked queued or running (after a crash: none really is).
    pub fn unfinished_builds(&self) -> Result<Vec<BuildRecord>> {
        let mut out = Vec::new();
        for v in self.inner.builds.values()? {
            let b: BuildRecord = decode("builds", &v)?;
            if matches!(
                b.status,
                caas_api::BuildStatus::Queued | caas_api::BuildStatus::Running
            ) {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// The unfinished builds no running server is running: their server is not registered any
    /// more (it stopped or died), or they are from before servers were recorded. On sled that
    /// is every unfinished build of an earlier run.
    pub fn orphaned_builds(&self) -> Result<Vec<BuildRecord>> {
        let (live, _) = self.servers()?;
        let live: Vec<String> = live.into_iter().map(|s| s.id).collect();
        Ok(self
            .unfinished_builds()?
            .into_iter()
            .filter(|b| b.server.as_ref().is_none_or(|s| !live.contains(s)))
            .collect())
    }

    // --- allocations ----------------------------------------------------------------------

    pub fn allocations(&self) -> Result<Vec<AllocationRecord>> {
        self.inner
            .allocations
            .values()?
            .iter()
            .map(|v| decode("allocations", v))
            .collect()
    }

    /// Compare-and-swap of one allocation: `old` must be what is stored (`None`: absent) for
    /// `new` (`None`: delete) to be written. Returns whether it was.
    pub fn cas_allocation(
        &self,
        id: &str,
        old: Option<&AllocationRecord>,
        new: Option<&AllocationRecord>,
    ) -> Result<bool> {
        let current = self.inner.allocations.get(id)?;
        let current_rec: Option<AllocationRecord> = current
            .as_ref()
            .map(|v| decode("allocations", v))
            .transpose()?;
        if current_rec.as_ref() != old {
            return Ok(false);
        }
        let swapped =
            self.inner
                .allocations
                .cas(id, current.as_deref(), new.map(encode).as_deref())?;
        if swapped {
            self.inner.assignment_index.send_modify(|i| *i += 1);
        }
        Ok(swapped)
    }

    /// Makes agents ask for their assignments again: something they carry besides the
    /// allocations changed (an app's stop timeout).
    pub fn touch_assignments(&self) {
        self.inner.assignment_index.send_modify(|i| *i += 1);
    }

    pub fn assignment_index(&self) -> watch::Receiver<u64> {
        self.inner.assignment_index.subscribe()
    }

    // --- hosts ----------------------------------------------------------------------------

    pub fn hosts(&self) -> Result<Vec<HostRecord>> {
        self.inner
            .hosts
            .values()?
            .iter()
            .map(|v| decode("hosts", v))
            .collect()
    }

    pub fn host(&self, id: &str) -> Result<Option<HostRecord>> {
        self.inner
            .hosts
            .get(id)?
            .map(|v| decode("hosts", &v))
            .transpose()
    }

    pub fn delete_host(&self, id: &str) -> Result<()> {
        self.inner.hosts.remove(id)?;
        self.inner.observed.remove(id)?;
        Ok(())
    }

    pub fn put_host(&self, rec: &HostRecord) -> Result<()> {
        self.inner.hosts.insert(&rec.id, encode(rec))
    }

    // --- routes ---------------------------------------------------------------------------

    pub fn routes(&self) -> Result<Vec<(RouteKey, String)>> {
        let mut out = Vec::new();
        for (k, v) in self.inner.routes.all()? {
            if let Some(key) = RouteKey::decode(&String::from_utf8_lossy(&k)) {
                out.push((key, String::from_utf8_lossy(&v).into_owned()));
            }
        }
        Ok(out)
    }

    pub fn routing_index(&self) -> watch::Receiver<u64> {
        self.inner.routing_index.subscribe()
    }

    /// Says that what the routing table is made of changed.
    pub fn routing_changed(&self) {
        self.inner.routing_index.send_modify(|i| *i += 1);
    }

    pub fn put_route(&self, key: &RouteKey, addr: &str) -> Result<()> {
        self.inner.routes.insert(key.encode(), addr.as_bytes())?;
        self.routing_changed();
        Ok(())
    }

    pub fn delete_route(&self, key: &RouteKey) -> Result<()> {
        self.inner.routes.remove(key.encode())?;
        self.routing_changed();
        Ok(())
    }

    /// Resolves whenever a route or an app is written, for caches of them (the gateway). The
    /// cache re-reads what it needs; the event itself only says "something changed". On etcd
    /// this includes other servers' writes.
    pub fn watch_routing(&self) -> RoutingWatch {
        RoutingWatch {
            routes: self.inner.routes.watch(),
            apps: self.inner.apps.watch(),
            edge: self.edge_watch(),
        }
    }
}

/// Why a transaction gave up: the store failed, or the caller's closure refused.
enum TxnAbort<A> {
    Store(StoreError),
    Rejected(A),
}

impl<A> From<StoreError> for TxnAbort<A> {
    fn from(e: StoreError) -> Self {
        TxnAbort::Store(e)
    }
}

impl TxnAbort<std::convert::Infallible> {
    fn into_store(self) -> StoreError {
        match self {
            TxnAbort::Store(e) => e,
            TxnAbort::Rejected(never) => match never {},
        }
    }
}

pub struct RoutingWatch {
    routes: TreeWatch,
    apps: TreeWatch,
    /// Domains, certificates, TCP routes (`edge.rs`).
    edge: EdgeWatch,
}

impl RoutingWatch {
    /// Waits for the next change. Returns `false` when the store is closed.
    pub async fn changed(&mut self) -> bool {
        tokio::select! {
            alive = self.routes.changed() => alive,
            alive = self.apps.changed() => alive,
            alive = self.edge.changed() => alive,
        }
    }
}

#[cfg(test)]
mod tests;
