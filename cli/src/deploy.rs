//! Getting an image onto the server and released: the local Docker engine, the image upload, the
//! deploy request and waiting for the new release to come up. `commands::push` decides what to
//! push; this module knows how.

use crate::client::Client;
use crate::error::CliError;
use crate::output::{note, sanitize, stderr_is_term};
use anyhow::{Context, Result};
use caas_api::{DeployImage, ErrorCode, Instance, InstanceState, LoadedImages, Release};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An image the local Docker engine has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalImage {
    /// Content id, `sha256:...`.
    pub id: String,
    /// Bytes, as `docker image inspect` reports; the `docker save` archive is about this big.
    pub size: u64,
}

/// Refuses references that could be mistaken for options or that no registry would accept,
/// before they reach a `docker` command line or the server.
pub fn check_image_ref(reference: &str) -> Result<(), CliError> {
    let bad = reference.is_empty()
        || reference.starts_with('-')
        || reference.len() > 512
        || reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control());
    if bad {
        return Err(CliError::usage(format!(
            "invalid image reference {:?}: use NAME[:TAG] or NAME@sha256:DIGEST",
            sanitize(reference)
        )));
    }
    Ok(())
}

/// The image as the local Docker engine knows it, or `None` when there is no docker CLI, no
/// engine, or no such image; the server may still have it.
pub fn inspect_local_image(reference: &str) -> Option<LocalImage> {
    let out = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{.Size}}",
            "--",
            reference,
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_inspect(&String::from_utf8_lossy(&out.stdout))
}

fn parse_inspect(text: &str) -> Option<LocalImage> {
    let mut words = text.split_whitespace();
    let id = words.next()?.to_string();
    let size = words.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    // One reference, one line; anything else (several images?) is not something to upload.
    (words.next().is_none() && id.starts_with("sha256:")).then_some(LocalImage { id, size })
}

/// `POST /v1/apps/APP/deploys`.
pub fn deploy(client: &Client, app: &str, request: &DeployImage) -> Result<Release> {
    client.post(&format!("/v1/apps/{app}/deploys"), request)
}

pub fn is_upload_needed(err: &anyhow::Error) -> bool {
    api_code(err) == Some(ErrorCode::ImageUploadNeeded)
}

pub fn is_not_found(err: &anyhow::Error) -> bool {
    api_code(err) == Some(ErrorCode::NotFound)
}

fn api_code(err: &anyhow::Error) -> Option<ErrorCode> {
    err.downcast_ref::<CliError>().and_then(CliError::api_code)
}

/// Streams `docker save -- REF` into `POST /v1/images`. The archive is never held in memory or
/// written to disk, and its length is not known in advance (the inspect size is an estimate),
/// so it goes chunked.
pub fn upload_image(client: &Client, reference: &str, size_estimate: u64) -> Result<LoadedImages> {
    let mut child = Command::new("docker")
        .args(["save", "--", reference])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running docker save")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    // Drained to the end on its own thread so a chatty docker cannot fill the pipe and stall
    // the upload; only the start is kept for the error message.
    let stderr_reader = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = stderr.read(&mut chunk) {
            let room = (64 * 1024usize).saturating_sub(kept.len());
            kept.extend_from_slice(&chunk[..n.min(room)]);
        }
        String::from_utf8_lossy(&kept).into_owned()
    });

    let progress = UploadProgress::start(reference, size_estimate);
    let body = reqwest::blocking::Body::new(progress.bar.wrap_read(stdout));
    let result = client.post_stream::<LoadedImages>("/v1/images", "application/x-tar", body);
    // If the server stopped reading, docker save would block on a full pipe forever.
    let killed = result.is_err() && child.kill().is_ok();
    let status = child.wait().context("waiting for docker save")?;
    let docker_errors = stderr_reader.join().unwrap_or_default();
    progress.finish();

    // A docker save that failed on its own is the root cause: the server then only saw a
    // truncated archive, and its complaint about that would mislead.
    let we_stopped_it = killed && was_killed(status);
    if !status.success() && !we_stopped_it {
        return Err(CliError::Failed(format!(
            "docker save {reference} failed: {}",
            sanitize(docker_errors.trim())
        ))
        .into());
    }
    result.map_err(|e| match e.downcast_ref::<CliError>() {
        // The transport broke mid-upload (a server refusing the body closes the connection
        // before its answer can be read); say what was going on.
        Some(CliError::Failed(m)) => {
            CliError::Failed(format!("uploading image {reference} failed: {m}")).into()
        }
        _ => e,
    })
}

#[cfg(unix)]
fn was_killed(status: std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(9)
}

#[cfg(not(unix))]
fn was_killed(_: std::process::ExitStatus) -> bool {
    true
}

struct UploadProgress {
    bar: ProgressBar,
    started: Instant,
}

impl UploadProgress {
    fn start(reference: &str, size_estimate: u64) -> Self {
        let bar = if stderr_is_term() {
            let bar = ProgressBar::new(size_estimate);
            bar.set_style(
                ProgressStyle::with_template(
                    "Uploading {msg} [{bar:30}] {bytes}/~{total_bytes} {binary_bytes_per_sec}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_message(sanitize(reference));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        } else {
            note(&format!(
                "Uploading {} to the server (about {})...",
                sanitize(reference),
                HumanBytes(size_estimate)
            ));
            // Still counts the bytes, for the summary line; draws nothing.
            ProgressBar::hidden()
        };
        Self {
            bar,
            started: Instant::now(),
        }
    }

    fn finish(self) {
        let sent = self.bar.position();
        self.bar.finish_and_clear();
        let secs = self.started.elapsed().as_secs_f64();
        note(&format!("Uploaded {} in {secs:.1}s", HumanBytes(sent)));
    }
}

/// Why waiting for a release ended badly.
fn not_up(app: &str, version: u64, elapsed: Duration, instances: &[&Instance]) -> CliError {
    let states = if instances.is_empty() {
        "none placed yet".to_string()
    } else {
        instances
            .iter()
            .map(|i| format!("{} {}", i.name, i.state.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    CliError::Failed(sanitize(&format!(
        "release v{version} is not up after {}s (instances: {states}); the previous release keeps serving; see caas logs -a {app}",
        elapsed.as_secs()
    )))
}

/// What one look at the instances says about release `version`.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    Up,
    Crashed,
    Waiting,
}

fn assess(instances: &[&Instance]) -> Progress {
    if instances.iter().any(|i| i.state == InstanceState::Up) {
        Progress::Up
    } else if instances.iter().any(|i| i.state == InstanceState::Crashed) {
        Progress::Crashed
    } else {
        Progress::Waiting
    }
}

const POLL_EVERY: Duration = Duration::from_millis(300);

/// Polls `GET /v1/apps/APP/ps` until a `web` instance of release `version` is up. Fails when one
/// of them crashes or `timeout` passes.
/// How waiting for a release ended, when it did not fail.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    Up,
    /// A newer release (another push, a config change) replaced it before it came up; the newer
    /// one is deploying, and waiting for the old one would never end.
    Superseded(u64),
}

pub fn wait_until_up(
    client: &Client,
    app: &str,
    version: u64,
    timeout: Duration,
) -> Result<Waited> {
    let started = Instant::now();
    let spinner = if stderr_is_term() {
        let s = ProgressBar::new_spinner();
        s.enable_steady_tick(Duration::from_millis(100));
        s.set_message(format!("Waiting for v{version} to be up"));
        s
    } else {
        note(&format!("Waiting for {app} v{version} to be up..."));
        ProgressBar::hidden()
    };
    let result = loop {
        let all: Vec<Instance> = match client.get(&format!("/v1/apps/{app}/ps")) {
            Ok(all) => all,
            Err(e) => break Err(e),
        };
        let mine: Vec<&Instance> = all
            .iter()
            .filter(|i| i.release == version && i.process == "web")
            .collect();
        let elapsed = started.elapsed();
        let progress = assess(&mine);
        if progress != Progress::Up {
            match client.get::<caas_api::App>(&format!("/v1/apps/{app}")) {
                Ok(a) if a.release.is_some_and(|r| r > version) => {
                    break Ok(Waited::Superseded(a.release.unwrap_or(version)))
                }
                Ok(_) => {}
                Err(e) => break Err(e),
            }
        }
        match progress {
            Progress::Up => break Ok(Waited::Up),
            Progress::Crashed => break Err(not_up(app, version, elapsed, &mine).into()),
            Progress::Waiting if elapsed >= timeout => {
                break Err(not_up(app, version, elapsed, &mine).into())
            }
            Progress::Waiting => {}
        }
        let states: Vec<String> = mine
            .iter()
            .map(|i| format!("{} {}", i.name, i.state.as_str()))
            .collect();
        if !states.is_empty() {
            spinner.set_message(sanitize(&format!(
                "Waiting for v{version} to be up ({})",
                states.join(", ")
            )));
        }
        std::thread::sleep(
            POLL_EVERY
                .min(timeout.saturating_sub(elapsed))
                .max(Duration::from_millis(10)),
        );
    };
    spinner.finish_and_clear();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use caas_api::Timestamp;

    #[test]
    fn parses_docker_inspect_output() {
        assert_eq!(
            parse_inspect("sha256:789699dd 1982263\n"),
            Some(LocalImage {
                id: "sha256:789699dd".into(),
                size: 1982263
            })
        );
        assert_eq!(parse_inspect(""), None);
        assert_eq!(parse_inspect("sha256:a 1\nsha256:b 2\n"), None);
        assert_eq!(parse_inspect("garbage"), None);
    }

    #[test]
    fn image_refs_that_look_like_options_are_refused() {
        for bad in ["", "-x", "--output=/etc/passwd", "a b", "a\nb"] {
            assert_eq!(check_image_ref(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
        for good in [
            "demo",
            "demo:latest",
            "registry:5000/team/demo:v1",
            "demo@sha256:abc",
        ] {
            assert!(check_image_ref(good).is_ok(), "{good}");
        }
    }

    fn instance(name: &str, state: InstanceState) -> Instance {
        Instance {
            id: "x".into(),
            name: name.into(),
            process: "web".into(),
            index: 1,
            release: 2,
            host: "local".into(),
            address: None,
            state,
            restarts: 0,
            since: Timestamp::now(),
            created_at: Timestamp::now(),
        }
    }

    #[test]
    fn one_up_instance_is_enough_and_a_crash_fails() {
        let up = instance("web.1", InstanceState::Up);
        let crashed = instance("web.2", InstanceState::Crashed);
        let starting = instance("web.3", InstanceState::Starting);
        assert_eq!(assess(&[&crashed, &up]), Progress::Up);
        assert_eq!(assess(&[&starting, &crashed]), Progress::Crashed);
        assert_eq!(assess(&[&starting]), Progress::Waiting);
        assert_eq!(assess(&[]), Progress::Waiting);
    }

    #[test]
    fn not_up_message_names_states_and_what_to_do() {
        let crashed = instance("web.1", InstanceState::Crashed);
        let starting = instance("web.2", InstanceState::Starting);
        let err = not_up("demo", 3, Duration::from_secs(120), &[&crashed, &starting]);
        assert_eq!(err.exit_code(), 1);
        assert_eq!(
            err.to_string(),
            "release v3 is not up after 120s (instances: web.1 crashed, web.2 starting); \
             the previous release keeps serving; see caas logs -a demo"
        );
    }
}
