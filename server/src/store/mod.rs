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

mod records;

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

    // --- tokens ---------------------------------------------------------------------------

    pub fn token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        self.inner
            .tokens
            .get(hash)?
            .map(|v| decode("tokens", &v))
            .transpose()
    }

    pub fn put_token(&self, hash: &str, rec: &TokenRecord) -> Result<()> {
        self.inner.tokens.insert(hash, encode(rec))?;
        Ok(())
    }

    pub fn delete_tokens_where(&self, pred: impl Fn(&TokenRecord) -> bool) -> Result<()> {
        for kv in self.inner.tokens.iter() {
            let (k, v) = kv?;
            if pred(&decode("tokens", &v)?) {
                self.inner.tokens.remove(k)?;
            }
        }
        Ok(())
    }

    /// Every token with its hash.
    pub fn tokens(&self) -> Result<Vec<(String, TokenRecord)>> {
        self.inner
            .tokens
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    decode("tokens", &v)?,
                ))
            })
            .collect()
    }

    pub fn delete_token(&self, hash: &str) -> Result<()> {
        self.inner.tokens.remove(hash)?;
        Ok(())
    }

    /// Before users: the admin token(s) become the first admin user's, `admin`. Idempotent; run
    /// at every start.
    pub fn migrate_to_users(&self) -> Result<()> {
        for (hash, mut rec) in self.tokens()? {
            if rec.role == Role::Admin {
                if self.user("admin")?.is_none() {
                    self.put_user(&UserRecord {
                        name: "admin".into(),
                        admin: true,
                        created_at: rec.created_at,
                    })?;
                }
                rec.role = Role::User {
                    name: "admin".into(),
                };
                if rec.id.is_empty() {
                    rec.id = crate::auth::short_id();
                }
                self.put_token(&hash, &rec)?;
            }
        }
        Ok(())
    }

    // --- users ----------------------------------------------------------------------------

    pub fn users(&self) -> Result<Vec<UserRecord>> {
        self.inner
            .users
            .iter()
            .map(|kv| decode("users", &kv?.1))
            .collect()
    }

    pub fn user(&self, name: &str) -> Result<Option<UserRecord>> {
        self.inner
            .users
            .get(name)?
            .map(|v| decode("users", &v))
            .transpose()
    }

    pub fn put_user(&self, rec: &UserRecord) -> Result<()> {
        self.inner.users.insert(&rec.name, encode(rec))?;
        Ok(())
    }

    /// Adds a user; `Exists` when the name is taken.
    pub fn create_user(&self, rec: &UserRecord) -> Result<()> {
        match self.inner.users.compare_and_swap(
            &rec.name,
            None as Option<&[u8]>,
            Some(encode(rec)),
        )? {
            Ok(()) => Ok(()),
            Err(_) => Err(StoreError::Exists),
        }
    }

    /// Removes a user, its tokens, and its access to every app.
    pub fn delete_user(&self, name: &str) -> Result<()> {
        if self.inner.users.remove(name)?.is_none() {
            return Err(StoreError::NotFound);
        }
        let role = Role::User {
            name: name.to_string(),
        };
        self.delete_tokens_where(|t| t.role == role)?;
        for app in self.apps()? {
            if app.access.contains(name) {
                match self.update_app::<std::convert::Infallible>(&app.name, |a| {
                    a.access.remove(name);
                    Ok(())
                }) {
                    Ok(_) | Err(UpdateError::Store(StoreError::NotFound)) => {}
                    Err(UpdateError::Store(e)) => return Err(e),
                    Err(UpdateError::Rejected(never)) => match never {},
                }
            }
        }
        Ok(())
    }

    // --- audit ----------------------------------------------------------------------------

    /// Appends a change to the audit log, which keeps the newest [`AUDIT_KEEP`] entries.
    pub fn audit(&self, rec: &AuditRecord) -> Result<()> {
        // Keys sort by time: milliseconds, then a sequence number against collisions.
        let seq = self.inner.db.generate_id()?;
        let mut key = rec.at.millis().to_be_bytes().to_vec();
        key.extend_from_slice(&seq.to_be_bytes());
        self.inner.audit.insert(key, encode(rec))?;
        while self.inner.audit.len() > AUDIT_KEEP {
            if self.inner.audit.pop_min()?.is_none() {
                break;
            }
        }
        Ok(())
    }

    /// The newest `limit` entries (of one app, when given), newest first.
    pub fn audit_log(&self, app: Option<&str>, limit: usize) -> Result<Vec<AuditRecord>> {
        let mut out = Vec::new();
        for v in self.inner.audit.iter().values().rev() {
            let rec: AuditRecord = decode("audit", &v?)?;
            if app.is_none_or(|a| rec.app.as_deref() == Some(a)) {
                out.push(rec);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
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
    /// `Err(reason)` marks it failed (the serving release stays). Returns `false`, writing
    /// nothing, when `version` is no longer the app's deploying release (a newer one replaced
    /// it, or the app is gone).
    pub fn finish_rollout(
        &self,
        app: &str,
        version: u64,
        outcome: std::result::Result<(), String>,
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
        }
    }
}

pub struct RoutingWatch {
    routes: sled::Subscriber,
    apps: sled::Subscriber,
}

impl RoutingWatch {
    /// Waits for the next change. Returns `false` when the store is closed.
    pub async fn changed(&mut self) -> bool {
        tokio::select! {
            ev = &mut self.routes => ev.is_some(),
            ev = &mut self.apps => ev.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caas_api::Timestamp;
    use std::collections::BTreeMap;

    fn app(name: &str) -> AppRecord {
        AppRecord::new(name, Timestamp::now())
    }

    fn release(app: &str, version: u64) -> ReleaseRecord {
        ReleaseRecord {
            app: app.into(),
            version,
            image: format!("caas/{app}:v{version}"),
            image_id: "sha256:x".into(),
            description: "test".into(),
            created_at: Timestamp::now(),
            process_types: BTreeMap::new(),
            config: BTreeMap::new(),
            launcher: false,
            status: ReleaseStatus::Succeeded,
            error: None,
            created_by: None,
            build: None,
            resources: BTreeMap::new(),
        }
    }

    #[test]
    fn apps_are_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.create_app(&app("demo")).unwrap();
        assert!(matches!(
            s.create_app(&app("demo")),
            Err(StoreError::Exists)
        ));
        assert_eq!(s.apps().unwrap().len(), 1);
    }

    #[test]
    fn releases_number_up_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.create_app(&app("demo")).unwrap();
            for _ in 0..3 {
                s.create_release::<()>("demo", |_, v| Ok(release("demo", v)), |_| {})
                    .unwrap();
            }
            s.inner.db.flush().unwrap();
        }
        // sled's background flusher lets go of the directory lock a moment after the drop.
        let s = (0..100)
            .find_map(|_| {
                Store::open(dir.path()).ok().or_else(|| {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    None
                })
            })
            .expect("the store reopens");
        let versions: Vec<u64> = s
            .releases("demo")
            .unwrap()
            .iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(versions, [1, 2, 3]);
        assert_eq!(s.app("demo").unwrap().unwrap().deploying, Some(3));
        assert_eq!(s.app("demo").unwrap().unwrap().next_version, 4);
    }

    fn status(s: &Store, version: u64) -> (ReleaseStatus, Option<String>) {
        let r = s.release("demo", version).unwrap().unwrap();
        (r.status, r.error)
    }

    #[test]
    fn a_release_serves_only_once_its_rollout_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.create_app(&app("demo")).unwrap();
        let new = |s: &Store| {
            s.create_release::<()>("demo", |_, v| Ok(release("demo", v)), |_| {})
                .unwrap()
                .1
                .version
        };
        assert_eq!(new(&s), 1);
        let a = s.app("demo").unwrap().unwrap();
        assert_eq!((a.release, a.deploying), (None, Some(1)));
        assert_eq!(status(&s, 1).0, ReleaseStatus::Deploying);

        assert!(s.finish_rollout("demo", 1, Ok(())).unwrap());
        let a = s.app("demo").unwrap().unwrap();
        assert_eq!((a.release, a.deploying), (Some(1), None));
        assert_eq!(status(&s, 1), (ReleaseStatus::Succeeded, None));
        assert!(
            !s.finish_rollout("demo", 1, Ok(())).unwrap(),
            "a finished rollout is not finished twice"
        );

        // A failed rollout leaves the serving release alone.
        assert_eq!(new(&s), 2);
        assert!(s
            .finish_rollout("demo", 2, Err("web.1 crashed".into()))
            .unwrap());
        let a = s.app("demo").unwrap().unwrap();
        assert_eq!((a.release, a.deploying), (Some(1), None));
        assert_eq!(
            status(&s, 2),
            (ReleaseStatus::Failed, Some("web.1 crashed".into()))
        );

        // A newer release supersedes the deploying one; the older verdict then writes nothing.
        assert_eq!(new(&s), 3);
        assert_eq!(new(&s), 4);
        assert_eq!(status(&s, 3).0, ReleaseStatus::Superseded);
        assert!(status(&s, 3).1.unwrap().contains("v4"));
        assert!(!s.finish_rollout("demo", 3, Ok(())).unwrap());
        let a = s.app("demo").unwrap().unwrap();
        assert_eq!(
            (a.release, a.deploying, a.latest()),
            (Some(1), Some(4), Some(4))
        );
        assert!(!s.finish_rollout("gone", 1, Ok(())).unwrap());
    }

    #[test]
    fn a_refused_release_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.create_app(&app("demo")).unwrap();
        let err = s
            .create_release("demo", |_, _| Err("no"), |_| {})
            .unwrap_err();
        assert!(matches!(err, UpdateError::Rejected("no")));
        assert!(s.releases("demo").unwrap().is_empty());
        assert_eq!(s.app("demo").unwrap().unwrap().next_version, 1);
    }

    #[test]
    fn releases_of_one_app_do_not_leak_into_a_prefixed_name() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.create_app(&app("abc")).unwrap();
        s.create_app(&app("abc-d")).unwrap();
        s.create_release::<()>("abc-d", |_, v| Ok(release("abc-d", v)), |_| {})
            .unwrap();
        assert!(s.releases("abc").unwrap().is_empty());
    }

    #[test]
    fn allocation_cas_detects_a_lost_race_and_bumps_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let idx = s.assignment_index();
        let before = *idx.borrow();
        let a = AllocationRecord {
            id: "a1".into(),
            app: "demo".into(),
            release: 1,
            process: "web".into(),
            index: 1,
            host_id: "h".into(),
            created_at: Timestamp::now(),
            desired: Desired::Run,
            memory_mb: 0,
        };
        assert!(s.cas_allocation("a1", None, Some(&a)).unwrap());
        assert!(
            !s.cas_allocation("a1", None, Some(&a)).unwrap(),
            "second create must lose"
        );
        let mut drained = a.clone();
        drained.desired = Desired::Drain {
            until: Timestamp::now(),
        };
        assert!(s.cas_allocation("a1", Some(&a), Some(&drained)).unwrap());
        assert!(
            !s.cas_allocation("a1", Some(&a), None).unwrap(),
            "stale old must lose"
        );
        assert!(s.cas_allocation("a1", Some(&drained), None).unwrap());
        assert!(s.allocations().unwrap().is_empty());
        assert_eq!(*idx.borrow(), before + 3);
    }

    #[test]
    fn update_app_applies_the_closure() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.create_app(&app("demo")).unwrap();
        let rec = s
            .update_app::<()>("demo", |a| {
                a.formation.insert("web".into(), 3);
                Ok(())
            })
            .unwrap();
        assert_eq!(rec.formation["web"], 3);
        assert!(matches!(
            s.update_app::<()>("nope", |_| Ok(())),
            Err(UpdateError::Store(StoreError::NotFound))
        ));
    }
}
