//! The buildpack pipeline. One throw-away container of the build image (the run image plus
//! compilers and `-dev` headers) gets one tar (the source
//! owned by uid 1000, the config vars as `ENV_DIR` files, the buildpacks, `driver.sh`) and runs
//! the driver as the unprivileged user with the app's cache volume at `/cache`: detect, compile,
//! release. Its `/app` is then taken out as the slug and laid on a fresh container of the run
//! image (`caas/stack`), which is committed as the app image: no compilers, headers, caches or
//! build leftovers in it.
//!
//! Everything goes in and out as tar uploads and downloads, never bind mounts: the build sees no
//! host path, ownership is set in the tar, and the same code works against a remote engine.

use super::output::Output;
use super::upload::Prepared;
use super::{file_stream, internal, procfile, tarball, BuildError, Builder, Image};
use crate::docker::{Command, ContainerSpec, ImageConfig};
use crate::store::{AppRecord, BuildRecord};
use caas_api::WEB;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

const DRIVER: &str = include_str!("driver.sh");
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the driver left: `/app` as a tar, and the buildpack that built it.
struct Slug {
    path: PathBuf,
    buildpack: String,
}

/// What the driver's exit status says (`driver.sh` defines 10-14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverExit {
    /// `/app` is the slug.
    Built,
    /// The app could not be built. For the failures it knows (10-13) the driver leaves its own
    /// one-line reason in `/tmp/caas-failure` (`left_reason`), which is said instead of `reason`:
    /// once, as the build's failure, not also as a line of output.
    Failed { reason: String, left_reason: bool },
    /// The build container's environment is broken (14): the stack's or caasd's fault, not the
    /// app's, so the pusher is told to look at the server rather than at the app.
    Broken,
}

/// Maps the driver's exit status to what the build reports. `memory_mb` is the build
/// containers' limit, which a kill (137) most likely hit.
pub fn driver_exit(code: i64, memory_mb: u64) -> DriverExit {
    let known = |reason: &str| DriverExit::Failed {
        reason: reason.to_string(),
        left_reason: true,
    };
    let other = |reason: String| DriverExit::Failed {
        reason,
        left_reason: false,
    };
    match code {
        0 => DriverExit::Built,
        10 => known("no buildpack detected this app"),
        11 => known("the pinned buildpack cannot build this app"),
        12 => known("the compile step failed"),
        13 => known("the release step failed"),
        14 => DriverExit::Broken,
        137 => other(format!(
            "the build was killed: out of memory? (build containers get {memory_mb} MB; caasd --build-memory)"
        )),
        n => other(format!("the build exited with status {n}")),
    }
}

/// The first line of what the driver wrote as its reason, without control characters (it goes
/// to terminals), or `None` when it says nothing.
fn one_line(text: &str) -> Option<String> {
    let line: String = text
        .lines()
        .next()?
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    (!line.trim().is_empty()).then(|| line.trim().to_string())
}

impl Builder {
    pub(super) async fn buildpack_build(
        &self,
        p: &Prepared,
        out: &mut Output,
        record: &mut BuildRecord,
        app: &AppRecord,
    ) -> Result<Image, BuildError> {
        let stack = &self.settings.build_image;
        for image in [stack, &self.settings.stack_image] {
            if self
                .engine
                .image_id(image)
                .await
                .map_err(internal)?
                .is_none()
            {
                return Err(BuildError::Failed(format!(
                    "the stack image {image} is missing on the server: build it with stack/build.sh (install.sh does)"
                )));
            }
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
            cpus: None,
            // Builds reach the package registries, not the apps' containers.
            network: Some(self.ensure_network().await?),
            aliases: Vec::new(),
            extra_networks: Vec::new(),
            restart: false,
            stdio: Default::default(),
        };
        let container = self.engine.create(&spec).await.map_err(internal)?;
        let result = self.run_driver(p, out, &container, &input).await;
        let _ = self.engine.remove(&container).await;
        let slug = result?;
        record.builder = Some(slug.buildpack.clone());
        self.store.put_build(record)?;

        let files = {
            let path = slug.path.clone();
            tokio::task::spawn_blocking(move || {
                tarball::read_files(&path, &["app/Procfile", "app/.caas/release.yml"], 64 * 1024)
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
        let types = procfile::process_types(file("app/Procfile"), file("app/.caas/release.yml"))
            .map_err(|e| BuildError::Failed(e.to_string()))?;

        out.line("-----> Making the app image from the slug").await;
        let id = self.commit_slug(p, &slug, types.get(WEB).cloned()).await?;
        Ok(Image {
            id,
            process_types: types.into_iter().map(|(k, v)| (k, Some(v))).collect(),
            launcher: true,
        })
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
        one_line(&files.into_iter().next()?.1)
    }

    /// Runs the driver in the prepared container; streams its output; takes `/app` out as the
    /// slug.
    async fn run_driver(
        &self,
        p: &Prepared,
        out: &mut Output,
        container: &str,
        input: &Path,
    ) -> Result<Slug, BuildError> {
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
        match driver_exit(code, self.settings.memory_mb) {
            DriverExit::Built => {}
            DriverExit::Broken => {
                return Err(BuildError::Internal(format!(
                    "the build container's environment is broken (driver exit {code}; see the build output)"
                )))
            }
            DriverExit::Failed {
                reason,
                left_reason,
            } => {
                let told = if left_reason {
                    self.driver_failure(p, container).await
                } else {
                    None
                };
                return Err(BuildError::Failed(told.unwrap_or(reason)));
            }
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
        Ok(Slug {
            path: slug,
            buildpack,
        })
    }

    /// Lays the slug on a fresh container of the stack image and commits it as the app image.
    async fn commit_slug(
        &self,
        p: &Prepared,
        slug: &Slug,
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
            cpus: None,
            network: None, // never started: committed as the app image
            aliases: Vec::new(),
            extra_networks: Vec::new(),
            restart: false,
            stdio: Default::default(),
        };
        let container = self.engine.create(&spec).await.map_err(internal)?;
        let result = async {
            self.engine
                .upload_tar(&container, "/", file_stream(&slug.path).await?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_exit_codes_become_failures() {
        let known = |r: &str| DriverExit::Failed {
            reason: r.into(),
            left_reason: true,
        };
        let other = |r: &str| DriverExit::Failed {
            reason: r.into(),
            left_reason: false,
        };
        let table = [
            (0, DriverExit::Built),
            (10, known("no buildpack detected this app")),
            (11, known("the pinned buildpack cannot build this app")),
            (12, known("the compile step failed")),
            (13, known("the release step failed")),
            (14, DriverExit::Broken),
            (
                137,
                other("the build was killed: out of memory? (build containers get 512 MB; caasd --build-memory)"),
            ),
            (1, other("the build exited with status 1")),
            (15, other("the build exited with status 15")),
            (-1, other("the build exited with status -1")),
        ];
        for (code, want) in table {
            assert_eq!(driver_exit(code, 512), want, "exit {code}");
        }
    }

    #[test]
    fn the_drivers_reason_is_one_clean_line() {
        let table = [
            (
                "the jar has no Main-Class\n",
                Some("the jar has no Main-Class"),
            ),
            ("  padded  \nsecond line\n", Some("padded")),
            (
                "bell\u{7} and \u{1b}[31mcolour\n",
                Some("bell and [31mcolour"),
            ),
            ("\n", None),
            ("   \nlater\n", None),
            ("", None),
        ];
        for (text, want) in table {
            assert_eq!(one_line(text).as_deref(), want, "{text:?}");
        }
    }
}
