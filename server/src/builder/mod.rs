//! The builder: turns an upload (a directory's tarball, a `.war`, a `.jar`, a `.zip`, a
//! `.tar.gz`) into an app image and a release.
//!
//! 1. [`Builder::prepare`] stores the upload (counting bytes against the limit), checks it is what
//!    its name says, and unpacks it safely ([`unpack`]). Refusals happen here, before a build
//!    exists to wait for, and are recorded as failed builds.
//! 2. [`Builder::spawn`] queues the build: one at a time per app (a second push waits and is told
//!    so), a bounded number across apps. Output streams to the pusher, to the build's log file and
//!    to the app's log hub as it happens.
//! 3. A `Dockerfile` at the root is built by the engine. Otherwise a throw-away container of the
//!    stack image runs the driver (`driver.sh`) as the unprivileged user, with the per-app cache
//!    volume, the config vars as `ENV_DIR` and the buildpacks: detect, compile, release.
//! 4. The built `/app` is taken out as a slug and laid on a fresh container of the stack image,
//!    committed as the app image: no compilers, caches or build leftovers in it.
//! 5. A release is recorded and the scheduler rolls it out. A failed build changes nothing that
//!    runs.

mod forget;
mod names;
mod output;
mod procfile;
mod queue;
mod record;
mod tarball;
mod turns;
pub mod unpack;
mod upload;

use crate::docker::{Command, ContainerSpec, Engine, ImageConfig};
use crate::logs::LogHub;
use crate::schedule::reconcile::WEB;
use crate::store::{BuildRecord, ReleaseRecord, Store, StoreError};
use bytes::Bytes;
use caas_api::ReleaseStatus;
use caas_api::{BuildEvent, Timestamp};
use futures_util::{Stream, StreamExt};
use names::Names;
use output::Output;
use queue::Queue;
use record::Step;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use upload::Prepared;

pub use procfile::sh_quote;

/// Detect order of the bundled buildpacks; others in the buildpacks folder follow by name.
pub const BUNDLED: [&str; 6] = [
    "java-war", "jvm-jar", "nodejs", "python", "static", "procfile",
];
const DRIVER: &str = include_str!("driver.sh");
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone)]
pub struct BuildSettings {
    /// `DATA_DIR/builds`: uploads, unpacked sources and logs, one folder per app.
    pub root: PathBuf,
    pub buildpacks: PathBuf,
    pub stack_image: String,
    pub memory_mb: u64,
    pub max_upload: u64,
    pub limits: unpack::Limits,
    pub cluster_id: String,
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
}

impl Builder {
    pub fn new(
        store: Store,
        engine: Engine,
        logs: Arc<LogHub>,
        wake: Arc<Notify>,
        settings: BuildSettings,
        concurrency: usize,
        shutdown: CancellationToken,
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
        })
    }

    /// After a restart: builds the store still shows as queued or running died with the old
    /// process; say so, and remove their containers. Finishes what destroys left undone.
    pub async fn recover(self: &Arc<Self>) -> Result<(), BuildError> {
        for mut b in self.store.unfinished_builds()? {
            let reason = "interrupted: caasd stopped while this build ran; push again".into();
            record::advance(&mut b, Step::Fail { reason }, Timestamp::now()).map_err(internal)?;
            self.store.put_build(&b)?;
        }
        self.store.flush().await?;
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

    /// Waits for running builds to notice shutdown and clean up.
    pub async fn closed(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Installed buildpacks in detect order: the bundled ones first, then the rest by name.
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
        });
    }

    async fn run(&self, p: Prepared, sink: mpsc::Sender<BuildEvent>) -> Result<(), BuildError> {
        let path = self.names.log_path(&p.app, p.number);
        let mut out = Output::create(&path, &p.app, p.number, self.logs.clone(), sink)
            .await
            .map_err(internal)?;
        let finished = tokio::select! {
            // A build of an app being destroyed never goes on: not even to its next await.
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

        let result = tokio::select! {
            r = self.build(p, out, &mut record) => r,
            _ = self.shutdown.cancelled() => Err(BuildError::Failed("interrupted: caasd is stopping; push again".into())),
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
            Ok((release, image, size)) => {
                out.line(&format!(
                    "-----> Released v{release} ({image}, {})",
                    caas_api::format_bytes(*size)
                ))
                .await;
                out.event(BuildEvent::Succeeded {
                    build: p.number,
                    release: *release,
                    image: image.clone(),
                    image_size: *size,
                })
                .await;
            }
            Err(message) => out.failed(message).await,
        }
        out.close().await;
        let step = match result {
            Ok((release, _, image_size)) => Step::Succeed {
                release,
                image_size,
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

    /// The build proper: image, then release. Returns (release version, image tag, size).
    async fn build(
        &self,
        p: &Prepared,
        out: &mut Output,
        record: &mut BuildRecord,
    ) -> Result<(u64, String, u64), BuildError> {
        let app_rec = self
            .store
            .app(&p.app)?
            .ok_or_else(|| BuildError::NoApp(p.app.clone()))?;
        let src = p.dir.join("src");
        let dockerfile = src.join("Dockerfile").is_file();
        let (image_id, mut process_types, launcher) = if dockerfile {
            record.builder = Some("Dockerfile".into());
            self.store.put_build(record)?;
            self.docker_build(p, out).await?
        } else {
            self.buildpack_build(p, out, record, &app_rec).await?
        };
        if dockerfile {
            // A Dockerfile app's web process is its image's CMD unless the Procfile says otherwise.
            process_types.entry(WEB.to_string()).or_insert(None);
        }
        if process_types.is_empty() {
            return Err(BuildError::Failed(
                "the build made no process types: add a Procfile (e.g. `web: COMMAND`)".into(),
            ));
        }
        let size = self.engine.image_size(&image_id).await.map_err(internal)?;
        let description = format!(
            "Build {} ({})",
            p.number,
            record.builder.clone().unwrap_or_default()
        );
        let (_, release) = self.store.create_release::<BuildError>(
            &p.app,
            |rec, version| {
                Ok(ReleaseRecord {
                    app: p.app.clone(),
                    version,
                    image: Names::release_image(&p.app, version),
                    image_id: image_id.clone(),
                    description: description.clone(),
                    created_at: Timestamp::now(),
                    process_types: process_types.clone(),
                    config: rec.config.clone(),
                    launcher,
                    status: ReleaseStatus::Deploying,
                    error: None,
                })
            },
            |rec| {
                if rec.formation.is_empty() && process_types.contains_key(WEB) {
                    rec.formation.insert(WEB.into(), 1);
                }
            },
        )?;
        self.store.flush().await?;
        let tag = format!("v{}", release.version);
        if let Err(e) = self
            .engine
            .tag_image(&image_id, &Names::image_repo(&p.app), &tag)
            .await
        {
            tracing::warn!(app = p.app, "tagging {tag}: {e}");
        }
        let _ = self
            .engine
            .untag(&self.names.build_tag(&p.app, p.number))
            .await;
        self.logs.event(
            &p.app,
            "deploy",
            format!("Deploying v{} (build {})", release.version, p.number),
        );
        self.wake.notify_one();
        Ok((release.version, release.image, size))
    }

    async fn docker_build(
        &self,
        p: &Prepared,
        out: &mut Output,
    ) -> Result<(String, BTreeMap<String, Option<String>>, bool), BuildError> {
        out.line("-----> Dockerfile detected: building it with the Docker engine")
            .await;
        let context = p.dir.join("context.tar");
        let src = p.dir.join("src");
        let ctx = context.clone();
        tokio::task::spawn_blocking(move || {
            let mut w = tarball::TarWriter::create(&ctx)?;
            // The context's root is `.`: entries are named as in the source folder.
            w.tree(&src, ".", tarball::ROOT)?;
            w.finish()
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        let tag = self.names.build_tag(&p.app, p.number);
        let image_labels = self.names.image_labels(&p.app, p.number);
        let mut lines = Box::pin(self.engine.build_image(
            file_stream(&context).await?,
            &tag,
            self.settings.memory_mb,
            &image_labels,
        ));
        let mut pending = String::new();
        while let Some(item) = lines.next().await {
            match item {
                Ok(text) => {
                    pending.push_str(&text);
                    while let Some(i) = pending.find('\n') {
                        let line: String = pending.drain(..=i).collect();
                        out.line(&format!("       {}", line.trim_end())).await;
                    }
                }
                Err(e) => {
                    if !pending.trim().is_empty() {
                        out.line(&format!("       {}", pending.trim_end())).await;
                    }
                    return Err(BuildError::Failed(format!(
                        "the Dockerfile build failed: {e}"
                    )));
                }
            }
        }
        let id = self
            .engine
            .image_id(&tag)
            .await
            .map_err(internal)?
            .ok_or_else(|| BuildError::Failed("the Dockerfile build produced no image".into()))?;
        let procfile = std::fs::read_to_string(p.dir.join("src/Procfile")).ok();
        let types = match procfile {
            Some(text) => procfile::parse_procfile(&text)
                .map_err(|e| BuildError::Failed(e.to_string()))?
                .into_iter()
                .map(|(k, v)| (k, Some(v)))
                .collect(),
            None => BTreeMap::new(),
        };
        Ok((id, types, false))
    }

    async fn buildpack_build(
        &self,
        p: &Prepared,
        out: &mut Output,
        record: &mut BuildRecord,
        app: &crate::store::AppRecord,
    ) -> Result<(String, BTreeMap<String, Option<String>>, bool), BuildError> {
        let stack = &self.settings.stack_image;
        if self
            .engine
            .image_id(stack)
            .await
            .map_err(internal)?
            .is_none()
        {
            return Err(BuildError::Failed(format!(
                "the stack image {stack} is missing on the server: build it with stack/build.sh (install.sh does)"
            )));
        }
        let order: Vec<String> = self.buildpacks().into_iter().map(|b| b.name).collect();
        if let Some(pinned) = &app.buildpack {
            out.line(&format!("-----> Using the pinned buildpack {pinned}"))
                .await;
        }

        // Everything the build container gets, in one archive: source, config, buildpacks, driver.
        let input = p.dir.join("input.tar");
        let (src, bp_dir, config, input2) = (
            p.dir.join("src"),
            self.settings.buildpacks.clone(),
            app.config.clone(),
            input.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mut w = tarball::TarWriter::create(&input2)?;
            w.tree(&src, "app", tarball::CAAS)?;
            w.dir("env", tarball::CAAS, 0o700)?;
            for (k, v) in &config {
                w.file(&format!("env/{k}"), tarball::CAAS, 0o600, v.as_bytes())?;
            }
            w.tree(&bp_dir, "buildpacks", tarball::ROOT)?;
            w.dir("caas", tarball::ROOT, 0o755)?;
            w.file("caas/driver.sh", tarball::ROOT, 0o755, DRIVER.as_bytes())?;
            w.finish()
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;

        let cache = self.names.cache_volume(&p.app);
        self.engine
            .ensure_volume(&cache, self.names.cache_labels(&p.app))
            .await
            .map_err(internal)?;
        let spec = ContainerSpec {
            name: self.names.build_container(&p.app, p.number),
            image: stack.clone(),
            command: Command::Exec(vec!["/bin/sh".into(), "/caas/driver.sh".into()]),
            user: Some("1000:1000".into()),
            volumes: vec![(cache, "/cache".into())],
            env: vec![
                (
                    "CAAS_BUILDPACK".into(),
                    app.buildpack.clone().unwrap_or_default(),
                ),
                ("CAAS_BUILDPACK_ORDER".into(), order.join(" ")),
                ("HOME".into(), "/app".into()),
            ],
            labels: self.names.build_labels(&p.app, p.number),
            publish: None,
            memory_mb: self.settings.memory_mb,
            cpu_shares: 1024,
            pids_limit: 4096,
        };
        let container = self.engine.create(&spec).await.map_err(internal)?;
        let result = self.run_driver(p, out, &container, &input).await;
        let _ = self.engine.remove(&container).await;
        let (slug, buildpack) = result?;
        record.builder = Some(buildpack);
        self.store.put_build(record)?;

        let files = {
            let slug = slug.clone();
            tokio::task::spawn_blocking(move || {
                tarball::read_files(&slug, &["app/Procfile", "app/.caas/release.yml"], 64 * 1024)
            })
            .await
            .map_err(internal)?
            .map_err(internal)?
        };
        let file = |name: &str| {
            files
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.as_str())
        };
        let mut types: BTreeMap<String, Option<String>> = file("app/.caas/release.yml")
            .map(procfile::parse_release_yaml)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
        if let Some(text) = file("app/Procfile") {
            let procs =
                procfile::parse_procfile(text).map_err(|e| BuildError::Failed(e.to_string()))?;
            types.extend(procs.into_iter().map(|(k, v)| (k, Some(v))));
        }

        out.line("-----> Making the app image from the slug").await;
        let image = self
            .commit_slug(p, &slug, types.get(WEB).cloned().flatten())
            .await?;
        Ok((image, types, true))
    }

    /// The reason the driver gave for failing (`/tmp/caas-failure` in its container), if any.
    async fn driver_failure(&self, p: &Prepared, container: &str) -> Option<String> {
        let path = p.dir.join("failure.tar");
        let mut file = tokio::fs::File::create(&path).await.ok()?;
        let mut tar = Box::pin(self.engine.download_tar(container, "/tmp/caas-failure"));
        while let Some(chunk) = tar.next().await {
            file.write_all(&chunk.ok()?).await.ok()?;
        }
        file.flush().await.ok()?;
        let files = tokio::task::spawn_blocking(move || {
            tarball::read_files(&path, &["caas-failure"], 4096)
        })
        .await
        .ok()?
        .ok()?;
        let text = files.into_iter().next()?.1;
        // One line, as the driver wrote it, without control characters.
        let line: String = text
            .lines()
            .next()?
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        (!line.trim().is_empty()).then(|| line.trim().to_string())
    }

    /// Runs the driver in the prepared container; streams its output; takes `/app` out as the
    /// slug. Returns the slug's path and the buildpack that built it.
    async fn run_driver(
        &self,
        p: &Prepared,
        out: &mut Output,
        container: &str,
        input: &Path,
    ) -> Result<(PathBuf, String), BuildError> {
        self.engine
            .upload_tar(container, "/", file_stream(input).await?.map(|b| b))
            .await
            .map_err(internal)?;
        self.engine.start(container).await.map_err(internal)?;
        let mut logs = Box::pin(self.engine.follow_logs(container, 0));
        while let Some(chunk) = logs.next().await {
            match chunk {
                Ok(c) => out.line(&c.text).await,
                Err(e) => {
                    tracing::warn!("following build output: {e}");
                    break;
                }
            }
        }
        let code = self.engine.wait(container).await.map_err(internal)?;
        // For the failures it knows (10-13) the driver leaves its one-line reason in a file, so
        // the reason is said once: as the build's failure, not also as a line of output.
        let reason = match code {
            10..=13 => self.driver_failure(p, container).await,
            _ => None,
        };
        let generic = match code {
            0 => None,
            10 => Some("no buildpack detected this app".to_string()),
            11 => Some("the pinned buildpack cannot build this app".to_string()),
            12 => Some("the compile step failed".to_string()),
            13 => Some("the release step failed".to_string()),
            14 => {
                return Err(BuildError::Internal(
                    "the build container's environment is broken (driver exit 14; see the build output)".into(),
                ))
            }
            137 => Some(format!(
                "the build was killed: out of memory? (build containers get {} MB; caasd --build-memory)",
                self.settings.memory_mb
            )),
            n => Some(format!("the build exited with status {n}")),
        };
        if let Some(generic) = generic {
            return Err(BuildError::Failed(reason.unwrap_or(generic)));
        }
        let slug = p.dir.join("slug.tar");
        let mut file = tokio::fs::File::create(&slug).await.map_err(internal)?;
        let mut tar = Box::pin(self.engine.download_tar(container, "/app"));
        while let Some(chunk) = tar.next().await {
            file.write_all(&chunk.map_err(internal)?)
                .await
                .map_err(internal)?;
        }
        file.flush().await.map_err(internal)?;
        let slug2 = slug.clone();
        let buildpack = tokio::task::spawn_blocking(move || {
            tarball::read_files(&slug2, &["app/.caas/buildpack"], 1024)
        })
        .await
        .map_err(internal)?
        .map_err(internal)?
        .into_iter()
        .next()
        .map(|(_, name)| name.trim().to_string())
        .unwrap_or_else(|| "buildpack".into());
        Ok((slug, buildpack))
    }

    /// Lays the slug on a fresh container of the stack image and commits it as the app image.
    async fn commit_slug(
        &self,
        p: &Prepared,
        slug: &Path,
        web: Option<String>,
    ) -> Result<String, BuildError> {
        let spec = ContainerSpec {
            name: self.names.slug_container(&p.app, p.number),
            image: self.settings.stack_image.clone(),
            command: Command::ImageDefault,
            user: None,
            volumes: vec![],
            env: vec![],
            // None: the committed image would carry them into every app container.
            labels: HashMap::new(),
            publish: None,
            memory_mb: 64,
            cpu_shares: 1024,
            pids_limit: 64,
        };
        let container = self.engine.create(&spec).await.map_err(internal)?;
        let result = async {
            self.engine
                .upload_tar(&container, "/", file_stream(slug).await?)
                .await
                .map_err(internal)?;
            let config = ImageConfig {
                user: Some("caas".into()),
                env: vec![PATH_ENV.into(), "LANG=C.UTF-8".into(), "HOME=/app".into()],
                cmd: web
                    .map(|w| vec!["caas-launch".into(), w])
                    .unwrap_or_default(),
                working_dir: Some("/app".into()),
                labels: self.names.image_labels(&p.app, p.number),
            };
            self.engine
                .commit(&container, &config)
                .await
                .map_err(internal)
        }
        .await;
        let _ = self.engine.remove(&container).await;
        result
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
