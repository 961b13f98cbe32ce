//! The store: the single source of truth, on sled. The only module that imports sled.
//!
//! One tree per kind of record; values are JSON. Writes that race use compare-and-swap or a sled
//! transaction (optimistic concurrency; no lock is ever held across I/O). Callers that acknowledge
//! a change to a user call [`Store::flush`] first: sled only reaches the disk on its own
//! background flush otherwise.
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

mod edge;
mod people;
mod records;

pub use edge::*;
pub use records::*;

use caas_api::ReleaseStatus;
use serde::{de::DeserializeOwned, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the data directory is in use by another caasd, or unreadable: {0}")]
    Open(#[source] sled::Error),
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
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

struct Inner {
    db: sled::Db,
    apps: sled::Tree,
    releases: sled::Tree,
    builds: sled::Tree,
    allocations: sled::Tree,
    hosts: sled::Tree,
    routes: sled::Tree,
    tokens: sled::Tree,
    users: sled::Tree,
    audit: sled::Tree,
    meta: sled::Tree,
    /// Custom domains: host name → `DomainRecord` (`edge.rs`).
    domains: sled::Tree,
    /// Certificates: `APP/ID` (and `_platform` for the platform's own) → `CertRecord`
    /// (`edge.rs`).
    certs: sled::Tree,
    /// TCP routes: public port (big-endian) → `TcpRouteRecord` (`edge.rs`).
    tcp_ports: sled::Tree,
    /// ACME: `order/HOST` → `AcmeOrderRecord`, `account/ID` → account credentials (`edge.rs`).
    acme: sled::Tree,
    /// ACME HTTP-01 challenges the gateway answers: token → key authorization (`edge.rs`).
    challenges: sled::Tree,
    /// Bumped on every allocation write; agents long-poll on it. It starts from the clock so a
    /// restarted server never repeats an index an agent already saw.
    assignment_index: watch::Sender<u64>,
    /// Bumped on every route write, here, and on app writes by `routing::spawn_index` (from
    /// sled's change feed): the gateway's blocking query waits on it.
    routing_index: watch::Sender<u64>,
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

fn app_prefix(app: &str) -> Vec<u8> {
    let mut k = app.as_bytes().to_vec();
    k.push(b'/');
    k
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .open()
            .map_err(StoreError::Open)?;
        let tree = |name: &str| db.open_tree(name);
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
            assignment_index: watch::Sender::new(caas_api::Timestamp::now().millis()),
            routing_index: watch::Sender::new(caas_api::Timestamp::now().millis()),
            db,
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The store's size on disk, bytes (`GET /metrics`).
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.inner.db.size_on_disk()?)
    }

    /// Makes everything written so far durable. Call before acknowledging a change.
    pub async fn flush(&self) -> Result<()> {
        self.inner.db.flush_async().await?;
        Ok(())
    }

    // --- meta -----------------------------------------------------------------------------

    /// A value created once and then fixed forever (cluster id), race-free.
    pub fn meta_get_or_init(&self, key: &str, init: impl FnOnce() -> String) -> Result<String> {
        if let Some(v) = self.inner.meta.get(key)? {
            return Ok(String::from_utf8_lossy(&v).into_owned());
        }
        let fresh = init();
        match self.inner.meta.compare_and_swap(
            key,
            None as Option<&[u8]>,
            Some(fresh.as_bytes()),
        )? {
            Ok(()) => Ok(fresh),
            Err(e) => Ok(String::from_utf8_lossy(&e.current.unwrap_or_default()).into_owned()),
        }
    }

    // --- apps -----------------------------------------------------------------------------

    pub fn create_app(&self, rec: &AppRecord) -> Result<()> {
        match self.inner.apps.compare_and_swap(
            &rec.name,
            None as Option<&[u8]>,
            Some(encode(rec)),
        )? {
            Ok(()) => Ok(()),
            Err(_) => Err(StoreError::Exists),
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
            .iter()
            .map(|kv| decode("apps", &kv?.1))
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
            let old = self
                .inner
                .apps
                .get(name)
                .map_err(StoreError::from)?
                .ok_or(StoreError::NotFound)?;
            let mut rec: AppRecord = decode("apps", &old)?;
            f(&mut rec).map_err(UpdateError::Rejected)?;
            let swapped = self
                .inner
                .apps
                .compare_and_swap(name, Some(&old), Some(encode(&rec)))
                .map_err(StoreError::from)?;
            if swapped.is_ok() {
                return Ok(rec);
            }
        }
    }

    /// Deletes an app, its releases, builds and routes. Its allocations are left to the
    /// scheduler, which deletes allocations of apps that no longer exist (so agents stop them).
    pub fn delete_app(&self, name: &str) -> Result<()> {
        if self.inner.apps.remove(name)?.is_none() {
            return Err(StoreError::NotFound);
        }
        let prefix = app_prefix(name);
        for tree in [&self.inner.releases, &self.inner.builds, &self.inner.routes] {
            for k in tree.scan_prefix(&prefix).keys() {
                tree.remove(k?)?;
            }
        }
        self.forget_app_edge(name)?;
        Ok(())
    }

    // --- releases -------------------------------------------------------------------------

    /// Records a new release and makes it the app's deploying one, atomically; a release that
    /// was deploying is marked superseded in the same transaction. The serving release does not
    /// change: the scheduler promotes the new one once it is up ([`Store::finish_rollout`]).
    /// `adjust` may change the app in the same transaction (default formation, new config);
    /// `make` then gets the app as it will be stored and the new version number, and may refuse
    /// (nothing is written). Both may run more than once and must not have side effects.
    pub fn create_release<E>(
        &self,
        app: &str,
        make: impl Fn(&AppRecord, u64) -> std::result::Result<ReleaseRecord, E>,
        adjust: impl Fn(&mut AppRecord),
    ) -> Result<(AppRecord, ReleaseRecord), UpdateError<E>> {
        self.write_release(app, make, adjust, None)
    }

    /// Records a release that failed before it could deploy (its release phase), atomically
    /// with the app's version counter: it takes a version, and nothing else of the app changes
    /// (the serving and the deploying release stay).
    pub fn record_failed_release<E>(
        &self,
        app: &str,
        make: impl Fn(&AppRecord, u64) -> std::result::Result<ReleaseRecord, E>,
        reason: &str,
        output: &[String],
    ) -> Result<ReleaseRecord, UpdateError<E>> {
        let failed = (reason.to_string(), output.to_vec());
        self.write_release(app, make, |_| {}, Some(&failed))
            .map(|(_, r)| r)
    }

    fn write_release<E>(
        &self,
        app: &str,
        make: impl Fn(&AppRecord, u64) -> std::result::Result<ReleaseRecord, E>,
        adjust: impl Fn(&mut AppRecord),
        failed: Option<&(String, Vec<String>)>,
    ) -> Result<(AppRecord, ReleaseRecord), UpdateError<E>> {
        enum Abort<E> {
            NotFound,
            Codec(serde_json::Error),
            Rejected(E),
        }
        let res = (&self.inner.apps, &self.inner.releases).transaction(|(apps, releases)| {
            let raw = apps
                .get(app)?
                .ok_or(ConflictableTransactionError::Abort(Abort::NotFound))?;
            let mut rec: AppRecord = serde_json::from_slice(&raw)
                .map_err(|e| ConflictableTransactionError::Abort(Abort::Codec(e)))?;
            let version = rec.next_version;
            adjust(&mut rec);
            let mut release = make(&rec, version)
                .map_err(|e| ConflictableTransactionError::Abort(Abort::Rejected(e)))?;
            if let Some((reason, output)) = failed {
                release.status = ReleaseStatus::Failed;
                release.error = Some(reason.clone());
                release.output = output.clone();
                // Only the version counter of the stored app moves.
                let mut stored: AppRecord = serde_json::from_slice(&raw)
                    .map_err(|e| ConflictableTransactionError::Abort(Abort::Codec(e)))?;
                stored.next_version = version + 1;
                releases.insert(release_key(app, version), encode(&release))?;
                apps.insert(app, encode(&stored))?;
                return Ok((stored, release));
            }
            release.status = ReleaseStatus::Deploying;
            release.error = None;
            if let Some(previous) = rec.deploying {
                let key = release_key(app, previous);
                if let Some(raw) = releases.get(&key)? {
                    let mut old: ReleaseRecord = serde_json::from_slice(&raw)
                        .map_err(|e| ConflictableTransactionError::Abort(Abort::Codec(e)))?;
                    old.status = ReleaseStatus::Superseded;
                    old.error = Some(format!("replaced by v{version} before it came up"));
                    releases.insert(key, encode(&old))?;
                }
            }
            rec.next_version = version + 1;
            rec.deploying = Some(version);
            releases.insert(release_key(app, version), encode(&release))?;
            apps.insert(app, encode(&rec))?;
            Ok((rec, release))
        });
        match res {
            Ok(v) => Ok(v),
            Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e).into()),
            Err(TransactionError::Abort(Abort::NotFound)) => Err(StoreError::NotFound.into()),
            Err(TransactionError::Abort(Abort::Codec(source))) => Err(StoreError::Codec {
                tree: "apps",
                source,
            }
            .into()),
            Err(TransactionError::Abort(Abort::Rejected(e))) => Err(UpdateError::Rejected(e)),
        }
    }

    /// Ends the rollout of `version`, atomically with the app: `Ok` makes it the serving release,
    /// `Err(reason)` marks it failed (the serving release stays), with `output`, the last lines
    /// of the instance that failed it. Returns `false`, writing nothing, when `version` is no
    /// longer the app's deploying release (a newer one replaced it, or the app is gone).
    pub fn finish_rollout(
        &self,
        app: &str,
        version: u64,
        outcome: std::result::Result<(), String>,
        output: &[String],
    ) -> Result<bool> {
        let res = (&self.inner.apps, &self.inner.releases).transaction(|(apps, releases)| {
            let Some(raw) = apps.get(app)? else {
                return Ok(false);
            };
            let mut rec: AppRecord = serde_json::from_slice(&raw)
                .map_err(|e| ConflictableTransactionError::Abort(("apps", e)))?;
            let key = release_key(app, version);
            let Some(raw) = releases.get(&key)? else {
                return Ok(false);
            };
            if rec.deploying != Some(version) {
                return Ok(false);
            }
            let mut release: ReleaseRecord = serde_json::from_slice(&raw)
                .map_err(|e| ConflictableTransactionError::Abort(("releases", e)))?;
            rec.deploying = None;
            match &outcome {
                Ok(()) => {
                    rec.release = Some(version);
                    release.status = ReleaseStatus::Succeeded;
                    release.error = None;
                }
                Err(reason) => {
                    release.status = ReleaseStatus::Failed;
                    release.error = Some(reason.clone());
                    release.output = output.to_vec();
                }
            }
            releases.insert(key, encode(&release))?;
            apps.insert(app, encode(&rec))?;
            Ok(true)
        });
        match res {
            Ok(done) => Ok(done),
            Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
            Err(TransactionError::Abort((tree, source))) => Err(StoreError::Codec { tree, source }),
        }
    }

    pub fn release(&self, app: &str, version: u64) -> Result<Option<ReleaseRecord>> {
        self.inner
            .releases
            .get(release_key(app, version))?
            .map(|v| decode("releases", &v))
            .transpose()
    }

    /// All releases of an app, oldest first.
    pub fn releases(&self, app: &str) -> Result<Vec<ReleaseRecord>> {
        self.inner
            .releases
            .scan_prefix(app_prefix(app))
            .values()
            .map(|v| decode("releases", &v?))
            .collect()
    }

    // --- builds ---------------------------------------------------------------------------

    /// Records a new build with the app's next build number, atomically.
    pub fn create_build(
        &self,
        app: &str,
        make: impl Fn(u64) -> BuildRecord,
    ) -> Result<BuildRecord> {
        enum Abort {
            NotFound,
            Codec(serde_json::Error),
        }
        let res = (&self.inner.apps, &self.inner.builds).transaction(|(apps, builds)| {
            let raw = apps
                .get(app)?
                .ok_or(ConflictableTransactionError::Abort(Abort::NotFound))?;
            let mut rec: AppRecord = serde_json::from_slice(&raw)
                .map_err(|e| ConflictableTransactionError::Abort(Abort::Codec(e)))?;
            let number = rec.next_build;
            rec.next_build = number + 1;
            let build = make(number);
            builds.insert(release_key(app, number), encode(&build))?;
            apps.insert(app, encode(&rec))?;
            Ok(build)
        });
        match res {
            Ok(b) => Ok(b),
            Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
            Err(TransactionError::Abort(Abort::NotFound)) => Err(StoreError::NotFound),
            Err(TransactionError::Abort(Abort::Codec(source))) => Err(StoreError::Codec {
                tree: "apps",
                source,
            }),
        }
    }

    pub fn put_build(&self, rec: &BuildRecord) -> Result<()> {
        self.inner
            .builds
            .insert(release_key(&rec.app, rec.number), encode(rec))?;
        Ok(())
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
            .scan_prefix(app_prefix(app))
            .values()
            .map(|v| decode("builds", &v?))
            .collect()
    }

    /// Every build of every app still marked queued or running (after a crash: none really is).
    pub fn unfinished_builds(&self) -> Result<Vec<BuildRecord>> {
        let mut out = Vec::new();
        for v in self.inner.builds.iter().values() {
            let b: BuildRecord = decode("builds", &v?)?;
            if matches!(
                b.status,
                caas_api::BuildStatus::Queued | caas_api::BuildStatus::Running
            ) {
                out.push(b);
            }
        }
        Ok(out)
    }

    // --- allocations ----------------------------------------------------------------------

    pub fn allocations(&self) -> Result<Vec<AllocationRecord>> {
        self.inner
            .allocations
            .iter()
            .map(|kv| decode("allocations", &kv?.1))
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
        let swapped = self
            .inner
            .allocations
            .compare_and_swap(id, current, new.map(encode))?
            .is_ok();
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
            .iter()
            .map(|kv| decode("hosts", &kv?.1))
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
        Ok(())
    }

    pub fn put_host(&self, rec: &HostRecord) -> Result<()> {
        self.inner.hosts.insert(&rec.id, encode(rec))?;
        Ok(())
    }

    // --- routes ---------------------------------------------------------------------------

    pub fn routes(&self) -> Result<Vec<(RouteKey, String)>> {
        let mut out = Vec::new();
        for kv in self.inner.routes.iter() {
            let (k, v) = kv?;
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
    /// cache re-reads what it needs; the event itself only says "something changed".
    pub fn watch_routing(&self) -> RoutingWatch {
        RoutingWatch {
            routes: self.inner.routes.watch_prefix(b""),
            apps: self.inner.apps.watch_prefix(b""),
            edge: self.edge_watch(),
        }
    }
}

pub struct RoutingWatch {
    routes: sled::Subscriber,
    apps: sled::Subscriber,
    /// Domains, certificates, TCP routes (`edge.rs`).
    edge: EdgeWatch,
}

impl RoutingWatch {
    /// Waits for the next change. Returns `false` when the store is closed.
    pub async fn changed(&mut self) -> bool {
        tokio::select! {
            ev = &mut self.routes => ev.is_some(),
            ev = &mut self.apps => ev.is_some(),
            alive = self.edge.changed() => alive,
        }
    }
}

#[cfg(test)]
mod tests;
