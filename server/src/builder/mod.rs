//! The builder: turns an upload (a directory's tarball, a `.war`, a `.jar`, a `.zip`, a
//! `.tar.gz`) into an app image and a release.
//!
//! 1. [`Builder::prepare`] (`upload.rs`) stores the upload (counting bytes against the limit),
//!    checks it is what its name says, and unpacks it safely ([`unpack`]). Refusals happen here,
//!    before a build exists to wait for, and are recorded as failed builds.
//! 2. [`Builder::spawn`] queues the build (`queue.rs`, deciding with `turns.rs`): one at a time per
//!    app (a second push waits and is told so), a bounded number across apps. Output streams to
//!    the pusher, to the build's log file and to the app's log hub as it happens (`output.rs`).
//! 3. A `Dockerfile` at the root is built by the engine (`dockerfile.rs`). Otherwise the buildpack
//!    pipeline (`buildpack.rs`) runs the driver in a throw-away container of the stack image and
//!    commits the slug it leaves on a fresh one as the app image.
//! 4. A release is recorded and the scheduler rolls it out (here). A failed build changes nothing
//!    that runs. The build record's status moves only through `record.rs`.
//!
//! A destroy of an app goes through the builder too (`forget.rs`): it stops the app's builds and
//! removes everything the builder keeps of it, by the names in `names.rs`.

mod buildpack;
mod dockerfile;
mod forget;
mod names;
mod output;
mod procfile;
mod prune;
mod queue;
mod record;
mod tarball;
mod turns;
pub mod unpack;
mod upload;

use crate::docker::Engine;
use crate::logs::LogHub;
use crate::store::{BuildRecord, ReleaseRecord, Store, StoreError};
use bytes::Bytes;
use caas_api::WEB;
use caas_api::{BuildEvent, ReleaseStatus, Timestamp};
use futures_util::{Stream, StreamExt};
use output::Output;
use queue::Queue;
use record::Step;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
pub use upload::Prepared;

pub use names::Names;
pub use procfile::sh_quote;
pub use upload::discard;

/// Detect order of the bundled buildpacks; others in the buildpacks folder follow by name.
pub const BUNDLED: [&str; 6] = [
    "java-war", "jvm-jar", "nodejs", "python", "static", "procfile",
];

#[derive(Debug, Clone)]
pub struct BuildSettings {
    /// `DATA_DIR/builds`: uploads, unpacked sources and logs, one folder per app.
    pub root: PathBuf,
    pub buildpacks: PathBuf,
    /// The run image: app images are laid on it.
    pub stack_image: String,
    /// The build image (the run image plus compilers and headers): builds run in it.
    pub build_image: String,
    pub memory_mb: u64,
    pub max_upload: u64,
    pub limits: unpack::Limits,
    pub cluster_id: String,
    /// A build still running after this long is stopped and fails (`caasd --build-timeout`).
    pub timeout: std::time::Duration,
    /// New work is refused while the disk is below it (`caasd --min-free-disk`).
    pub floor: crate::free_space::Floor,
    /// Images of this many newest releases per app are kept (`caasd --keep-releases`; 0 keeps all).
    pub keep_releases: usize,
}

/// Why a build could not start or did not finish. The message is for the user, one line.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no app named {0:?}: see caas apps")]
    NoApp(String),
    #[error(
        "the upload is larger than this server accepts ({0} MB; caasd --max-upload-mb raises it)"
    )]
    TooLarge(u64),
    /// Bad input: not the archive its name says, hostile entries, limits, empty.
    #[error("{0}")]
    Refused(String),
    /// The build ran and failed.
    #[error("{0}")]
    Failed(String),
    /// The app was destroyed while the build was being uploaded, queued or running.
    #[error("the app was destroyed while it was building")]
    Destroyed,
    /// Too little disk left for new work (`caasd --min-free-disk`).
    #[error("{0}")]
    NoRoom(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl From<crate::store::UpdateError<BuildError>> for BuildError {
    fn from(e: crate::store::UpdateError<BuildError>) -> Self {
        match e {
            crate::store::UpdateError::Store(s) => s.into(),
            crate::store::UpdateError::Rejected(b) => b,
        }
    }
}

fn internal(e: impl std::fmt::Display) -> BuildError {
    BuildError::Internal(e.to_string())
}

/// What either path (Dockerfile, buildpacks) made of the source.
struct Image {
    /// The engine's id of the app image.
    id: String,
    /// Process types and their commands; `None`: the image's own `CMD` (a Dockerfile's `web`).
    process_types: BTreeMap<String, Option<String>>,
    /// Commands run through `caas-launch`, which sources the slug's `.profile.d` first.
    launcher: bool,
}

/// The release a build recorded.
struct Released {
    version: u64,
    /// `caas/APP:vN`.
    image: String,
    /// Bytes.
    image_size: u64,
}

pub struct Builder {
    store: Store,
    engine: Engine,
    logs: Arc<LogHub>,
    wake: Arc<Notify>,
    settings: BuildSettings,
    names: Names,
    queue: Queue,
    /// Held by a destroy from start to end (see [`forget::Destroy`]).
    destroys: Arc<tokio::sync::Mutex<()>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Runs the release phase.
    runner: Arc<crate::oneoff::Runner>,
}

impl Builder {
    // Handles to the builder's collaborators plus its settings; a struct for them would only
    // be taken apart again here.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        engine: Engine,
        logs: Arc<LogHub>,
        wake: Arc<Notify>,
        settings: BuildSettings,
        concurrency: usize,
        shutdown: CancellationToken,
        runner: Arc<crate::oneoff::Runner>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            engine,
            logs,
            wake,
            names: Names::new(settings.root.clone(), settings.cluster_id.clone()),
            settings,
            queue: Queue::new(concurrency),
            destroys: Arc::default(),
            tasks: TaskTracker::new(),
            shutdown,
            runner,
        })
    }

    /// After a restart: builds the store still shows as queued or running died with the old
    /// process; say so, and remove their containers. Finishes what destroys left undone.
    pub async fn recover(self: &Arc<Self>) -> Result<(), BuildError> {
        self.fail_orphans().await?;
        // By name, not by label: labels of the slug container end up in the app image and in
        // every app container made from it, and those must survive a restart.
        for prefix in self.names.container_prefixes() {
            for (id, _) in self
                .engine
                .containers_named(&prefix)
                .await
                .map_err(internal)?
            {
                let _ = self.engine.remove(&id).await;
            }
        }
        self.remove_trash().await;
        self.sweep().await;
        Ok(())
    }

    /// Marks failed the builds whose server stopped while they ran (`Store::orphaned_builds`):
    /// at start, and on the leader while servers share a store (`sweep_orphans`), since a
    /// server that died fails nothing itself. A build another server is running is left alone.
    pub async fn fail_orphans(&self) -> Result<(), BuildError> {
        let orphans = self.store.orphaned_builds()?;
        if orphans.is_empty() {
            return Ok(());
        }
        for mut b in orphans {
            let reason = "interrupted: caasd stopped while this build ran; push again".into();
            record::advance(&mut b, Step::Fail { reason }, Timestamp::now()).map_err(internal)?;
            self.store.put_build(&b)?;
            self.logs.event(
                &b.app,
                "build",
                format!(
                    "Build #{} was interrupted: the server running it stopped; push again",
                    b.number
                ),
            );
        }
        self.store.flush().await?;
        Ok(())
    }

    /// On the leader of servers sharing a store: fails, every few seconds until `stop`, the
    /// builds of servers that died (no server fails its own builds when it is killed).
    pub async fn sweep_orphans(self: Arc<Self>, stop: CancellationToken) {
        loop {
            if let Err(e) = self.fail_orphans().await {
                tracing::warn!("failing the builds of servers that stopped: {e}");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            }
        }
    }

    /// Waits for running builds to notice shutdown and clean up.
    pub async fn closed(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Installed buildpacks in detect order: the bundled ones first, then the rest by name.
    /// The limits every upload is held to (a git push is checked against them too).
    /// The installation's isolated network, made if missing (the agent makes it too).
    async fn ensure_network(&self) -> Result<String, BuildError> {
        let cluster = self.names.cluster_id();
        let name = crate::labels::network(cluster);
        self.engine
            .ensure_isolated_network(
                &name,
                &crate::labels::bridge(cluster),
                HashMap::from([(crate::labels::CLUSTER.to_string(), cluster.to_string())]),
            )
            .await
            .map_err(internal)?;
        Ok(name)
    }

    /// Refuses new work (`what`: "the upload", "the push") while the disk is below the floor.
    pub fn room_for(&self, what: &str) -> Result<(), BuildError> {
        self.settings.floor.check(what).map_err(BuildError::NoRoom)
    }

    pub fn limits(&self) -> unpack::Limits {
        self.settings.limits
    }

    pub fn buildpacks(&self) -> Vec<caas_api::Buildpack> {
        let mut names: Vec<String> = std::fs::read_dir(&self.settings.buildpacks)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("bin/detect").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| {
                caas_api::validate_process_type(n).is_ok()
                    || n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            })
            .collect();
        names.sort_by_key(|n| {
            (
                BUNDLED.iter().position(|b| b == n).unwrap_or(BUNDLED.len()),
                n.clone(),
            )
        });
        names
            .into_iter()
            .map(|name| caas_api::Buildpack {
                bundled: BUNDLED.contains(&name.as_str()),
                name,
            })
            .collect()
    }

    pub fn log_path(&self, app: &str, number: u64) -> PathBuf {
        self.names.log_path(app, number)
    }

    /// Runs a prepared build in the background; its events go to `sink` (dropped receivers are
    /// fine: the build goes on, its output stays replayable).
    pub fn spawn(self: &Arc<Self>, prepared: Prepared, sink: mpsc::Sender<BuildEvent>) {
        let this = self.clone();
        self.tasks.spawn(async move {
            let app = prepared.app.clone();
            let number = prepared.number;
            if let Err(e) = this.run(prepared, sink).await {
                tracing::error!(app, build = number, "build bookkeeping failed: {e}");
            }
            this.prune_later(&app);
        });
    }

    async fn run(&self, p: Prepared, sink: mpsc::Sender<BuildEvent>) -> Result<(), BuildError> {
        let path = self.names.log_path(&p.app, p.number);
        let mut out = Output::create(&path, &p.app, p.number, self.logs.clone(), sink)
            .await
            .map_err(internal)?;
        let finished = tokio::select! {
            // Checked first: once its app is being destroyed a build is not polled again, so it
            // takes no further step, however far it was.
            biased;
            _ = p.lease.destroyed() => None,
            r = self.take_turn_and_build(&p, &mut out) => Some(r),
        };
        if let Some(result) = finished {
            return result;
        }
        // The app was destroyed: the build stopped wherever it was (waiting its turn included).
        // Its containers go now, before the destroy answers; its record, folder and log are
        // the destroy's to delete, so nothing is written here but the pusher's answer.
        for name in [
            self.names.build_container(&p.app, p.number),
            self.names.slug_container(&p.app, p.number),
        ] {
            if let Err(e) = self.engine.remove(&name).await {
                tracing::warn!(app = p.app, build = p.number, "removing {name}: {e}");
            }
        }
        let message = BuildError::Destroyed.to_string();
        out.event_now(BuildEvent::Failed {
            build: p.number,
            message,
        });
        Ok(())
    }

    /// Waits for the app's earlier builds and a free slot, then builds and records the outcome.
    async fn take_turn_and_build(&self, p: &Prepared, out: &mut Output) -> Result<(), BuildError> {
        // Held to the end, past the record's last write: the next build of the app starts after
        // this one has said its last word.
        let mut ticket = self.queue.join(&p.app, p.number);
        // The queued event names the build of this app it waits for. A wait for a slot has no
        // such build (any app's build may free one) and is not announced.
        if let turns::Place::BehindApp { behind } = ticket.joined() {
            out.event(BuildEvent::Queued {
                build: p.number,
                waiting_for: behind,
            })
            .await;
            out.line(&format!(
                "-----> Waiting for build {behind} of {} to finish",
                p.app
            ))
            .await;
        }
        ticket.turn().await;

        let Some(mut record) = self.store.build(&p.app, p.number)? else {
            return Err(BuildError::Internal("the build record vanished".into()));
        };
        record::advance(&mut record, Step::Start, Timestamp::now()).map_err(internal)?;
        self.store.put_build(&record)?;
        out.event(BuildEvent::Started { build: p.number }).await;
        out.line(&format!(
            "-----> Building {} (build {}): {}",
            p.app,
            p.number,
            upload::size_summary(p.kind, &p.received)
        ))
        .await;

        let timeout = self.settings.timeout;
        let result = tokio::select! {
            r = self.build(p, out, &mut record) => r,
            _ = self.shutdown.cancelled() => Err(BuildError::Failed("interrupted: caasd is stopping; push again".into())),
            // The build's containers go in `cleanup` below, so a stuck build holds nothing.
            _ = tokio::time::sleep(timeout) => Err(BuildError::Failed(format!(
                "the build took longer than {} and was stopped (caasd --build-timeout)",
                humantime::format_duration(timeout)
            ))),
        };
        let result = match result {
            Ok(release) => Ok(release),
            Err(e) => {
                if let BuildError::Internal(detail) = &e {
                    tracing::error!(
                        app = p.app,
                        build = p.number,
                        "build failed internally: {detail}"
                    );
                }
                Err(match e {
                    BuildError::Internal(_) => {
                        "the build failed inside caasd; its log has the details".to_string()
                    }
                    other => other.to_string(),
                })
            }
        };
        self.cleanup(p).await;
        match &result {
            Ok(r) => {
                out.line(&format!(
                    "-----> Released v{} ({}, {})",
                    r.version,
                    r.image,
                    caas_api::format_bytes(r.image_size)
                ))
                .await;
                out.event(BuildEvent::Succeeded {
                    build: p.number,
                    release: r.version,
                    image: r.image.clone(),
                    image_size: r.image_size,
                })
                .await;
            }
            Err(message) => out.failed(message).await,
        }
        out.close().await;
        let step = match result {
            Ok(r) => Step::Succeed {
                release: r.version,
                image_size: r.image_size,
            },
            Err(reason) => Step::Fail { reason },
        };
        self.finish(record, step).await
    }

    /// Writes the build's last word: its record, finished.
    async fn finish(&self, mut record: BuildRecord, step: Step) -> Result<(), BuildError> {
        record::advance(&mut record, step, Timestamp::now()).map_err(internal)?;
        if let Some(reason) = &record.error {
            self.logs.event(
                &record.app,
                "build",
                format!("Build {} failed: {reason}", record.number),
            );
        }
        self.store.put_build(&record)?;
        self.store.flush().await?;
        Ok(())
    }

    /// Keeps the log; removes the upload, the source and the slug.
    async fn cleanup(&self, p: &Prepared) {
        if let Err(e) = tokio::fs::remove_dir_all(&p.dir).await {
            tracing::warn!("removing {}: {e}", p.dir.display());
        }
    }

    /// The build proper: the image, by one path or the other, then the release.
    async fn build(
        &self,
        p: &Prepared,
        out: &mut Output,
        record: &mut BuildRecord,
    ) -> Result<Released, BuildError> {
        let app_rec = self
            .store
            .app(&p.app)?
            .ok_or_else(|| BuildError::NoApp(p.app.clone()))?;
        let image = if p.dir.join("src/Dockerfile").is_file() {
            record.builder = Some("Dockerfile".into());
            self.store.put_build(record)?;
            self.dockerfile_build(p, out).await?
        } else {
            self.buildpack_build(p, out, record, &app_rec).await?
        };
        if image.process_types.is_empty() {
            return Err(BuildError::Failed(
                "the build made no process types: add a Procfile (e.g. `web: COMMAND`)".into(),
            ));
        }
        // Health checks from an app.json at the top of the source (`crate::appjson`).
        let types = image.process_types.keys().cloned().collect();
        let app_json =
            crate::appjson::read(&p.dir.join("src"), &types).map_err(BuildError::Failed)?;
        for warning in &app_json.warnings {
            out.line(&format!("       app.json: {warning}")).await;
        }
        self.release(p, record, image, &app_json, out).await
    }

    /// Records the release of a built image: what changes what runs, at the build's very end.
    async fn release(
        &self,
        p: &Prepared,
        record: &BuildRecord,
        image: Image,
        app_json: &crate::appjson::AppJson,
        out: &mut Output,
    ) -> Result<Released, BuildError> {
        let Image {
            id: image_id,
            process_types,
            launcher,
        } = image;
        let size = self.engine.image_size(&image_id).await.map_err(internal)?;
        let description = format!(
            "Build {} ({})",
            p.number,
            record.builder.clone().unwrap_or_default()
        );
        let make = |rec: &crate::store::AppRecord, version| {
            Ok::<_, BuildError>(ReleaseRecord {
                app: p.app.clone(),
                version,
                image: Names::release_image(&p.app, version),
                image_id: image_id.clone(),
                description: description.clone(),
                created_at: Timestamp::now(),
                process_types: process_types.clone(),
                config: rec.config.clone(),
                resources: rec.resources.clone(),
                launcher,
                status: ReleaseStatus::Deploying,
                error: None,
                checks: rec.checks.clone(),
                output: Vec::new(),
                created_by: p.user.clone(),
                build: Some(p.number),
            })
        };
        let adjust = |rec: &mut crate::store::AppRecord| {
            if rec.formation.is_empty() && process_types.contains_key(WEB) {
                rec.formation.insert(WEB.into(), 1);
            }
            let types = process_types.keys().cloned().collect();
            rec.checks = app_json.merge(&rec.checks, &types);
        };
        // The release phase runs before the release exists as deploying: the one gate.
        let mut candidate = self
            .store
            .app(&p.app)?
            .ok_or_else(|| BuildError::NoApp(p.app.clone()))?;
        adjust(&mut candidate);
        let candidate = make(&candidate, candidate.next_version)?;
        let failure = self.release_phase(&candidate, out).await;
        let release = match (&failure, p.canary) {
            // Recorded failed: nothing of the app changes and nothing of it starts.
            (Some(f), _) => self
                .store
                .record_failed_release::<BuildError>(&p.app, make, &f.reason, &f.output)?,
            (None, Some(weight)) => {
                let (rec, release) = self.store.create_canary_release(&p.app, make, |rec, v| {
                    crate::canary::refuse_start(rec)
                        .map_err(|r| BuildError::Failed(r.to_string()))?;
                    Ok(caas_api::canary::Canary {
                        version: v,
                        weight,
                        sticky: false,
                        started_at: Timestamp::now(),
                        auto: None,
                    })
                })?;
                self.store.flush().await?;
                let what = format!(
                    "v{} with {weight}% of requests beside v{} (build {})",
                    release.version,
                    rec.release.unwrap_or(0),
                    p.number
                );
                out.line(&format!("-----> Started {what} as a canary"))
                    .await;
                self.logs.event(&p.app, "canary", format!("Canary {what}"));
                self.tag_and_wake(p, &image_id, release.version).await;
                return Ok(Released {
                    version: release.version,
                    image: release.image,
                    image_size: size,
                });
            }
            (None, None) => {
                self.store
                    .create_release::<BuildError>(&p.app, make, adjust)?
                    .1
            }
        };
        self.store.flush().await?;
        let said = match &failure {
            Some(f) => format!("v{} failed: {}", release.version, f.reason),
            None => format!("Deploying v{} (build {})", release.version, p.number),
        };
        self.logs.event(&p.app, "deploy", said);
        self.tag_and_wake(p, &image_id, release.version).await;
        Ok(Released {
            version: release.version,
            image: release.image,
            image_size: size,
        })
    }
}

impl Builder {
    /// Tags the image of a recorded release `caas/APP:vN`, drops the build's own tag, and wakes
    /// the scheduler to run it.
    async fn tag_and_wake(&self, p: &Prepared, image_id: &str, version: u64) {
        let tag = format!("v{version}");
        if let Err(e) = self
            .engine
            .tag_image(image_id, &Names::image_repo(&p.app), &tag)
            .await
        {
            tracing::warn!(app = p.app, "tagging {tag}: {e}");
        }
        let _ = self
            .engine
            .untag(&self.names.build_tag(&p.app, p.number))
            .await;
        self.wake.notify_one();
    }

    /// Runs the release phase of `candidate` (when it has a `release` process), its output
    /// streamed to the push: the failure, if it failed.
    async fn release_phase(
        &self,
        candidate: &ReleaseRecord,
        out: &mut Output,
    ) -> Option<crate::oneoff::release_phase::Failure> {
        let cmd = crate::oneoff::release_phase::command(candidate)?;
        out.line(&format!("-----> Running release command: {cmd}"))
            .await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let phase = crate::oneoff::release_phase::run(&self.runner, candidate, Some(tx));
        let relay = async {
            while let Some(line) = rx.recv().await {
                out.line(&format!("       {line}")).await;
            }
        };
        let (result, ()) = tokio::join!(phase, relay);
        match result {
            Ok(()) => None,
            Err(failure) => {
                out.line(&format!(" !     Release phase failed: {}", failure.reason))
                    .await;
                Some(failure)
            }
        }
    }
}

async fn file_stream(
    path: &Path,
) -> Result<impl Stream<Item = Bytes> + Send + 'static, BuildError> {
    let file = tokio::fs::File::open(path).await.map_err(internal)?;
    Ok(
        tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).filter_map(|r| async move {
            match r {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::error!("reading a build archive: {e}");
                    None
                }
            }
        }),
    )
}
