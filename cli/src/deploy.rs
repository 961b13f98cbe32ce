//! Getting an image onto the server and released: the local Docker engine, the image upload, the
//! deploy request and waiting for the new release to come up. `commands::push` decides what to
//! push; this module knows how.

use crate::client::Client;
use crate::error::CliError;
use crate::output::{format_bytes, note, sanitize, stderr_is_term};
use anyhow::{Context, Result};
use caas_api::{
    App, DeployImage, ErrorCode, Instance, InstanceState, LoadedImages, Release, ReleaseStatus,
};
use indicatif::ProgressBar;
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
            bar.set_style(crate::build::byte_progress(
                "Uploading {msg} [{bar:30}] {sent}/~{size} {rate}",
            ));
            bar.set_message(sanitize(reference));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        } else {
            note(&format!(
                "Uploading {} to the server (about {})...",
                sanitize(reference),
                format_bytes(size_estimate)
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
        note(&format!("Uploaded {} in {secs:.1}s", format_bytes(sent)));
    }
}

/// `--no-wait` and `--wait-timeout`, for every command that makes a release.
#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// Return once the release is recorded, without waiting for it to be up
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the new release to be up (the server fails a release that is not up
    /// within its start timeout, 60 s by default)
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub wait_timeout: u64,
}

impl WaitArgs {
    /// `None` for `--no-wait`.
    pub fn timeout(&self) -> Option<Duration> {
        (!self.no_wait).then(|| Duration::from_secs(self.wait_timeout))
    }
}

/// How waiting for a release ended, when it did not fail.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// The server says it came up and took over.
    Up,
    /// A newer release (another push, a config change) replaced it before it came up; the newer
    /// one is deploying, and waiting for the old one would never end.
    Superseded(u64),
}

const POLL_EVERY: Duration = Duration::from_millis(300);

/// `instances: web.1 starting, worker.1 up`, for the spinner and for a timeout; an instance
/// that is not up says what its check saw last.
fn instance_states(instances: &[Instance], version: u64) -> String {
    instances
        .iter()
        .filter(|i| i.release == version)
        .map(|i| match &i.check {
            Some(check) if i.state != InstanceState::Up => {
                format!("{} {} [{check}]", i.name, i.state.as_str())
            }
            _ => format!("{} {}", i.name, i.state.as_str()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the instance that failed a release printed last, before the error says why.
fn say_output(release: &Release) {
    if release.output.is_empty() {
        return;
    }
    note(&format!(
        "The last output of the instance that failed v{}:",
        release.version
    ));
    for line in &release.output {
        note(&format!("  | {}", sanitize(line)));
    }
}

/// The error for a release the server marked failed.
fn failed(app: &str, release: &Release, serving: Option<u64>) -> CliError {
    let why = release.error.as_deref().unwrap_or("it did not come up");
    let serving = match serving {
        Some(v) => format!("the previous release keeps serving (v{v})"),
        None => "no release is serving".to_string(),
    };
    CliError::Failed(sanitize(&format!(
        "release v{} failed: {why}; {serving}; see caas logs -a {app}",
        release.version
    )))
}

/// Waits for the server's verdict on release `version` (`GET /v1/apps/APP/releases/vN`): the
/// server decides whether a release is up, this only asks. A failed release is an error (exit
/// 1) that says why and what serves; so is still waiting after `timeout`.
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
        // `served`: the answer for a release that came up waits until the gateway serves it.
        let path = format!("/v1/apps/{app}/releases/{version}?served=true");
        let release: Release = match client.get(&path) {
            Ok(r) => r,
            Err(e) => break Err(e),
        };
        match release.status {
            ReleaseStatus::Succeeded => break Ok(Waited::Up),
            ReleaseStatus::Failed | ReleaseStatus::Superseded => {
                let a: App = match client.get(&format!("/v1/apps/{app}")) {
                    Ok(a) => a,
                    Err(e) => break Err(e),
                };
                if release.status == ReleaseStatus::Failed {
                    spinner.finish_and_clear();
                    say_output(&release);
                    break Err(failed(app, &release, a.release).into());
                }
                break Ok(Waited::Superseded(
                    a.deploying.or(a.release).unwrap_or(version),
                ));
            }
            // Held: a canary (`push --canary`), until promoted.
            ReleaseStatus::Deploying | ReleaseStatus::Held => {}
        }
        // Only for people: what the instances of this release are doing.
        let states = client
            .get::<Vec<Instance>>(&format!("/v1/apps/{app}/ps"))
            .map(|all| instance_states(&all, version))
            .unwrap_or_default();
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            let states = if states.is_empty() {
                String::new()
            } else {
                format!(" ({states})")
            };
            break Err(CliError::Failed(sanitize(&format!(
                "release v{version} is still deploying after {}s{states}; the previous release keeps serving meanwhile; see caas ps -a {app}",
                elapsed.as_secs()
            )))
            .into());
        }
        if !states.is_empty() {
            spinner.set_message(sanitize(&format!(
                "Waiting for v{version} to be up ({states})"
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

    fn instance(name: &str, release: u64, state: InstanceState) -> Instance {
        Instance {
            id: "x".into(),
            name: name.into(),
            process: "web".into(),
            index: 1,
            release,
            host: "local".into(),
            address: None,
            state,
            restarts: 0,
            since: Timestamp::now(),
            created_at: Timestamp::now(),
            check: None,
            memory_mb: 512,
            reserved_mb: 128,
            cpus: None,
            reason: None,
        }
    }

    #[test]
    fn instance_states_name_only_the_release_waited_for() {
        let all = [
            instance("web.1", 1, InstanceState::Up),
            instance("web.1", 2, InstanceState::Starting),
            instance("worker.1", 2, InstanceState::Up),
        ];
        assert_eq!(instance_states(&all, 2), "web.1 starting, worker.1 up");
        assert_eq!(instance_states(&all, 3), "");
        let mut checked = instance("web.1", 4, InstanceState::Starting);
        checked.check = Some("startup check GET /health: answered 500 (1 of 5)".into());
        assert_eq!(
            instance_states(&[checked], 4),
            "web.1 starting [startup check GET /health: answered 500 (1 of 5)]"
        );
    }

    #[test]
    fn a_failed_release_says_why_and_what_serves() {
        let release = Release {
            app: "demo".into(),
            version: 3,
            image: "caas/demo:v3".into(),
            image_id: "sha256:x".into(),
            description: "d".into(),
            created_at: Timestamp::now(),
            process_types: Default::default(),
            status: ReleaseStatus::Failed,
            current: false,
            error: Some("web.1 crashed on start".into()),
            checks: Vec::new(),
            output: Vec::new(),
            created_by: None,
            build: None,
            config_keys: Vec::new(),
            canary: false,
        };
        let err = failed("demo", &release, Some(2));
        assert_eq!(err.exit_code(), 1);
        assert_eq!(
            err.to_string(),
            "release v3 failed: web.1 crashed on start; the previous release keeps serving (v2); \
             see caas logs -a demo"
        );
        assert!(failed("demo", &release, None)
            .to_string()
            .contains("no release is serving"));
    }
}
