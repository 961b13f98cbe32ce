//! Releases: their records (`APP/` + version big-endian in `releases`) and the transactions
//! that change them together with the app (a new release, the end of a rollout, a canary's
//! promotion), so the version counter, the app's serving and deploying releases and the
//! releases' statuses never disagree.

use super::{
    app_prefix, decode, encode, release_key, AppRecord, ReleaseRecord, Result, Store, StoreError,
    TxnAbort, UpdateError,
};
use caas_api::canary::Canary;
use caas_api::ReleaseStatus;

/// How a release that does not roll out is recorded (`write_release`).
enum Held<'a, E> {
    /// Failed before it could deploy: why, and the last output.
    Failed(&'a str, &'a [String]),
    /// Started as the app's canary: the canary, from the app and the new version.
    Canary(&'a dyn Fn(&AppRecord, u64) -> std::result::Result<Canary, E>),
}

impl Store {
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
        let failed = Held::Failed(reason, output);
        self.write_release(app, make, |_| {}, Some(&failed))
            .map(|(_, r)| r)
    }

    /// Records a release without rolling it out (`caas push --canary`) and starts it as the
    /// app's canary, atomically with the app's version counter: `canary` sees the app and the
    /// new version and may refuse (a canary already runs; nothing is written then). The serving
    /// and the deploying release stay; the release's status is `held` until it is promoted.
    pub fn create_canary_release<E>(
        &self,
        app: &str,
        make: impl Fn(&AppRecord, u64) -> std::result::Result<ReleaseRecord, E>,
        canary: impl Fn(&AppRecord, u64) -> std::result::Result<Canary, E>,
    ) -> Result<(AppRecord, ReleaseRecord), UpdateError<E>> {
        self.write_release(app, make, |_| {}, Some(&Held::Canary(&canary)))
    }

    fn write_release<E>(
        &self,
        app: &str,
        make: impl Fn(&AppRecord, u64) -> std::result::Result<ReleaseRecord, E>,
        adjust: impl Fn(&mut AppRecord),
        held: Option<&Held<'_, E>>,
    ) -> Result<(AppRecord, ReleaseRecord), UpdateError<E>> {
        let (apps, releases) = (&self.inner.apps, &self.inner.releases);
        let res = self.transact(|tx| {
            let raw = tx.get(apps, app)?.ok_or(StoreError::NotFound)?;
            let mut rec: AppRecord = decode("apps", &raw)?;
            let version = rec.next_version;
            adjust(&mut rec);
            let mut release = make(&rec, version).map_err(TxnAbort::Rejected)?;
            if let Some(held) = held {
                // Only the version counter of the stored app moves (and a canary starts).
                let mut stored: AppRecord = decode("apps", &raw)?;
                match held {
                    Held::Failed(reason, output) => {
                        release.status = ReleaseStatus::Failed;
                        release.error = Some(reason.to_string());
                        release.output = output.to_vec();
                    }
                    Held::Canary(start) => {
                        stored.canary = Some(start(&stored, version).map_err(TxnAbort::Rejected)?);
                        release.status = ReleaseStatus::Held;
                        release.error = None;
                    }
                }
                stored.next_version = version + 1;
                tx.insert(releases, release_key(app, version), encode(&release));
                tx.insert(apps, app, encode(&stored));
                return Ok((stored, release));
            }
            release.status = ReleaseStatus::Deploying;
            release.error = None;
            if let Some(previous) = rec.deploying {
                let key = release_key(app, previous);
                if let Some(raw) = tx.get(releases, &key)? {
                    let mut old: ReleaseRecord = decode("releases", &raw)?;
                    old.status = ReleaseStatus::Superseded;
                    old.error = Some(format!("replaced by v{version} before it came up"));
                    tx.insert(releases, key, encode(&old));
                }
            }
            rec.next_version = version + 1;
            rec.deploying = Some(version);
            tx.insert(releases, release_key(app, version), encode(&release));
            tx.insert(apps, app, encode(&rec));
            Ok((rec, release))
        });
        res.map_err(|e| match e {
            TxnAbort::Store(e) => UpdateError::Store(e),
            TxnAbort::Rejected(e) => UpdateError::Rejected(e),
        })
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
        let (apps, releases) = (&self.inner.apps, &self.inner.releases);
        let res = self.transact::<_, std::convert::Infallible>(|tx| {
            let Some(raw) = tx.get(apps, app)? else {
                return Ok(false);
            };
            let mut rec: AppRecord = decode("apps", &raw)?;
            let key = release_key(app, version);
            let Some(raw) = tx.get(releases, &key)? else {
                return Ok(false);
            };
            if rec.deploying != Some(version) {
                return Ok(false);
            }
            let mut release: ReleaseRecord = decode("releases", &raw)?;
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
            tx.insert(releases, key, encode(&release));
            tx.insert(apps, app, encode(&rec));
            Ok(true)
        });
        res.map_err(TxnAbort::into_store)
    }

    /// Makes the app's canary its deploying release, atomically with the release's status: the
    /// canary's instances are kept and the scheduler rolls it out as usual (promoting it, or
    /// failing it with the serving release kept). `refuse` sees the app first and may stop it
    /// (no canary, a rollout under way): nothing is written then. Returns the version.
    pub fn promote_canary<E>(
        &self,
        app: &str,
        refuse: impl Fn(&AppRecord) -> std::result::Result<u64, E>,
    ) -> Result<u64, UpdateError<E>> {
        let (apps, releases) = (&self.inner.apps, &self.inner.releases);
        let res = self.transact(|tx| {
            let raw = tx.get(apps, app)?.ok_or(StoreError::NotFound)?;
            let mut rec: AppRecord = decode("apps", &raw)?;
            let version = refuse(&rec).map_err(TxnAbort::Rejected)?;
            let key = release_key(app, version);
            let raw = tx.get(releases, &key)?.ok_or(StoreError::NotFound)?;
            let mut release: ReleaseRecord = decode("releases", &raw)?;
            release.status = ReleaseStatus::Deploying;
            release.error = None;
            rec.canary = None;
            rec.deploying = Some(version);
            tx.insert(releases, key, encode(&release));
            tx.insert(apps, app, encode(&rec));
            Ok(version)
        });
        res.map_err(|e| match e {
            TxnAbort::Store(e) => UpdateError::Store(e),
            TxnAbort::Rejected(e) => UpdateError::Rejected(e),
        })
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
            .scan(app_prefix(app))?
            .iter()
            .map(|(_, v)| decode("releases", v))
            .collect()
    }
}
