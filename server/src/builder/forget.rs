//! What a destroy asks of the builder: stop the app's builds, then forget everything the builder
//! keeps of the app (build folders and logs, the cache volume, containers, images), so that a
//! new app of the same name starts from nothing.
//!
//! Images need care: several installations may share one Docker engine, and `caas/APP:vN` tags
//! are the same in all of them. An image this installation built carries its `caas.cluster`
//! label; it goes with the app. An image it did not build (`caas push --image`, or a build from
//! before the label) only loses this app's tags, and only when another tag still names it, since
//! removing the last tag would delete an image that may be another installation's too.

use super::names::Names;
use super::queue::Closed;
use super::Builder;
use crate::docker::{EngineError, Removal};
use crate::labels;
use crate::store::ReleaseRecord;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;

/// How long images that containers still use are retried: the agents stop a destroyed app's
/// containers within seconds, unless a host is down.
const IMAGE_RETRY_FOR: Duration = Duration::from_secs(600);
const IMAGE_RETRY_EVERY: Duration = Duration::from_secs(2);
/// How long a destroy waits for the app's builds to stop (each removes its containers first).
const STOP_WAIT: Duration = Duration::from_secs(60);

/// One destroy, from start to end. Destroys run one at a time, so a second request for the same
/// app finds it gone, rather than cleaning up after an app that took the name meanwhile. While
/// the app's builds are stopped, new builds of that name are refused; dropping this opens the
/// name again.
pub struct Destroy {
    builder: Arc<Builder>,
    _one_at_a_time: OwnedMutexGuard<()>,
    closed: Option<Closed>,
}

/// An image to remove: its id, and whether this installation built it.
type Doomed = (String, bool);

impl Builder {
    /// Starts a destroy (waiting for one under way to end).
    pub async fn destroy(self: &Arc<Self>) -> Destroy {
        Destroy {
            _one_at_a_time: self.destroys.clone().lock_owned().await,
            builder: self.clone(),
            closed: None,
        }
    }

    /// Removes what a destroy leaves of an image: this app's tags, and the image itself when this
    /// installation built it and no other tag names it. `Ok(false)`: a container still uses it.
    async fn purge_image(
        &self,
        app: &str,
        id: &str,
        built_here: bool,
    ) -> Result<bool, EngineError> {
        let Some(image) = self.engine.image_refs(id).await? else {
            return Ok(true);
        };
        let prefix = format!("{}:", Names::image_repo(app));
        let (mine, others): (Vec<String>, Vec<String>) =
            image.tags.into_iter().partition(|t| t.starts_with(&prefix));
        if !built_here && others.is_empty() {
            return Ok(true);
        }
        for tag in &mine {
            if self.engine.remove_image(tag).await? == Removal::InUse {
                return Ok(false);
            }
        }
        if built_here && others.is_empty() {
            // Usually gone with its last tag already; an untagged one (a build stopped before its
            // release) goes by id.
            return Ok(self.engine.remove_image(id).await? == Removal::Removed);
        }
        Ok(true)
    }

    /// Purges `images` of `app`; those still in use are retried in the background.
    pub(super) async fn purge_images(self: &Arc<Self>, app: &str, images: Vec<Doomed>) {
        let mut left = Vec::new();
        for (id, built_here) in images {
            match self.purge_image(app, &id, built_here).await {
                Ok(true) => {}
                Ok(false) => left.push((id, built_here)),
                Err(e) => {
                    tracing::warn!(app, "removing image {id}: {e}");
                    left.push((id, built_here));
                }
            }
        }
        if left.is_empty() {
            return;
        }
        // Owned by the builder's task tracker; ends at shutdown, and the sweep at the next start
        // takes over what it had left.
        let this = self.clone();
        let app = app.to_string();
        self.tasks.spawn(async move {
            let deadline = tokio::time::Instant::now() + IMAGE_RETRY_FOR;
            while !left.is_empty() && tokio::time::Instant::now() < deadline {
                tokio::select! {
                    _ = tokio::time::sleep(IMAGE_RETRY_EVERY) => {}
                    _ = this.shutdown.cancelled() => return,
                }
                let mut still = Vec::new();
                for (id, built_here) in left {
                    match this.purge_image(&app, &id, built_here).await {
                        Ok(true) => {}
                        Ok(false) => still.push((id, built_here)),
                        Err(e) => {
                            tracing::debug!(app, "removing image {id}: {e}");
                            still.push((id, built_here));
                        }
                    }
                }
                left = still;
            }
            for (id, _) in left {
                tracing::warn!(
                    app,
                    "image {id} of the destroyed app is still in use; left in place"
                );
            }
        });
    }

    /// At start: images this installation built that no release uses are left over from a
    /// destroy that caasd stopped in the middle of, or from builds that failed after making their
    /// image. No build runs yet, so none of them is about to be released.
    pub(super) async fn sweep(self: &Arc<Self>) {
        let mut used = HashSet::new();
        let apps = match self.store.apps() {
            Ok(apps) => apps,
            Err(e) => return tracing::warn!("sweeping images: {e}"),
        };
        for app in apps {
            match self.store.releases(&app.name) {
                Ok(releases) => used.extend(releases.into_iter().map(|r| r.image_id)),
                Err(e) => return tracing::warn!("sweeping images: {e}"),
            }
        }
        let cluster = self.names.cluster_id().to_string();
        let images = match self
            .engine
            .images_labelled(&[(labels::CLUSTER, &cluster)])
            .await
        {
            Ok(images) => images,
            Err(e) => return tracing::warn!("sweeping images: {e}"),
        };
        let mut unused: BTreeMap<String, Vec<Doomed>> = BTreeMap::new();
        for image in images {
            let Some(app) = image.labels.get(labels::APP) else {
                continue;
            };
            if caas_api::validate_app_name(app).is_ok() && !used.contains(&image.id) {
                unused
                    .entry(app.clone())
                    .or_default()
                    .push((image.id, true));
            }
        }
        if unused.is_empty() {
            return;
        }
        // In the background: the start does not wait for the engine to delete images.
        let this = self.clone();
        self.tasks.spawn(async move {
            for (app, images) in unused {
                tracing::info!(
                    app,
                    "removing {} unused image(s) of earlier builds",
                    images.len()
                );
                this.purge_images(&app, images).await;
            }
        });
    }
}

impl Destroy {
    /// Stops every upload and build of `app`, queued ones too, and waits until they have
    /// ended: each removes its containers and, from the moment it is stopped, writes nothing,
    /// so what the store holds of the app can be deleted once this returns and stays deleted.
    pub async fn stop_builds(&mut self, app: &str) {
        let closed = self.builder.queue.close(app);
        if !closed.stopped.is_empty() {
            tracing::info!(app, builds = ?closed.stopped, "stopping the builds of the app");
        }
        let closed = self.closed.insert(closed);
        if tokio::time::timeout(STOP_WAIT, closed.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                app,
                "builds of the destroyed app did not stop within {STOP_WAIT:?}"
            );
        }
    }

    /// Removes everything the builder keeps of the app whose builds [`Destroy::stop_builds`]
    /// stopped: leftover build containers, build folders and logs, the cache volume, and the
    /// images of `releases` (the app's, read before the store deleted them) and of its builds.
    pub async fn forget(self, releases: &[ReleaseRecord]) {
        let Some(Closed { app, .. }) = &self.closed else {
            return;
        };
        let b = &self.builder;
        // Builds that a crash of caasd interrupted left their containers (removed at the next
        // start too); builds stopped just now removed their own.
        for prefix in b.names.app_container_prefixes(app) {
            match b.engine.containers_named(&prefix).await {
                Ok(found) => {
                    for (id, name) in found {
                        if Names::is_numbered(&prefix, &name) {
                            let _ = b.engine.remove(&id).await;
                        }
                    }
                }
                Err(e) => tracing::warn!(app, "listing build containers: {e}"),
            }
        }
        b.remove_app_dir(app).await;
        if let Err(e) = b.engine.remove_volume(&b.names.cache_volume(app)).await {
            tracing::warn!(app, "removing the build cache: {e}");
        }
        let cluster = b.names.cluster_id().to_string();
        let mut images: BTreeMap<String, bool> = BTreeMap::new();
        match b
            .engine
            .images_labelled(&[(labels::CLUSTER, &cluster), (labels::APP, app)])
            .await
        {
            Ok(built) => images.extend(built.into_iter().map(|i| (i.id, true))),
            Err(e) => tracing::warn!(app, "listing the app's images: {e}"),
        }
        for r in releases {
            images.entry(r.image_id.clone()).or_insert(false);
        }
        b.purge_images(app, images.into_iter().collect()).await;
    }
}

impl Drop for Destroy {
    fn drop(&mut self) {
        if let Some(closed) = &self.closed {
            self.builder.queue.reopen(closed);
        }
    }
}

impl Builder {
    /// Moves the app's build folder (sources, logs) out of the way in one step, then deletes it:
    /// a stopped build's blocking work (unpacking, tarring) may still write into the old folder
    /// for a moment, and must not write where the next app of that name keeps its builds.
    async fn remove_app_dir(&self, app: &str) {
        let dir = self.names.app_dir(app);
        let trash = self.names.trash_dir(app, &crate::auth::short_id());
        match tokio::fs::rename(&dir, &trash).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::warn!("moving {} aside: {e}", dir.display());
                let _ = tokio::fs::remove_dir_all(&dir).await;
                return;
            }
        }
        if let Err(e) = tokio::fs::remove_dir_all(&trash).await {
            tracing::warn!("removing {}: {e}", trash.display());
        }
    }

    /// A renamed app's build folder (sources, build logs) moves with it; safe to run again.
    /// Its cache volume cannot be renamed (Docker has no such call): it is removed, and the
    /// app's next build starts without a cache.
    pub async fn rename_app(&self, from: &str, to: &str) -> std::io::Result<()> {
        crate::rename::move_dir(&self.names.app_dir(from), &self.names.app_dir(to))?;
        if let Err(e) = self
            .engine
            .remove_volume(&self.names.cache_volume(from))
            .await
        {
            tracing::warn!(app = to, "removing the build cache of its old name: {e}");
        }
        Ok(())
    }

    /// At start: folders of destroyed apps that could not be deleted then.
    pub(super) async fn remove_trash(&self) {
        let Ok(mut entries) = tokio::fs::read_dir(self.names.root()).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            if Names::is_trash(&entry.file_name().to_string_lossy()) {
                let _ = tokio::fs::remove_dir_all(entry.path()).await;
            }
        }
    }
}
