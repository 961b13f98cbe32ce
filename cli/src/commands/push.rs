//! `push`: build a directory or an archive into a release, or deploy a Docker image.

use super::{client, AppArg};
use crate::app::resolve_app;
use crate::client::Client;
use crate::error::CliError;
use crate::output::{format_bytes, note, sanitize, say, stderr_is_term};
use crate::{build, deploy, source};
use anyhow::{Context, Result};
use caas_api::{App, DeployImage, ServerInfo, SourceKind};
use clap::Args;
use indicatif::ProgressBar;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct PushArgs {
    /// A source directory (packed without what .gitignore and .caasignore exclude, and without
    /// .git), or a .war, .jar, .zip or .tar.gz, to build [default: .]
    #[arg(conflicts_with = "image")]
    path: Option<PathBuf>,
    /// Deploy this Docker image instead; uploaded from the local engine if the server lacks it
    #[arg(long, value_name = "REF")]
    image: Option<String>,
    /// Build and record the release, but instead of rolling it out start it as a canary beside
    /// the serving release (see caas releases:canary)
    #[arg(long, conflicts_with = "image")]
    canary: bool,
    /// With --canary: percent of requests the canary gets, 1 to 99 [default: 10]
    #[arg(
        long,
        value_name = "PERCENT",
        requires = "canary",
        allow_negative_numbers = true
    )]
    weight: Option<String>,
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    wait: deploy::WaitArgs,
}

pub fn push(args: PushArgs) -> Result<()> {
    let wait = args.wait.timeout();
    let canary = match (args.canary, &args.weight) {
        (false, _) => None,
        (true, w) => Some(super::canary::parse_weight(w.as_deref().unwrap_or("10"))?),
    };
    match args.image {
        Some(image) => push_image_cmd(&image, args.app.app, wait),
        None => {
            let path = args.path.unwrap_or_else(|| PathBuf::from("."));
            push_source(&path, args.app.app, wait, canary)
        }
    }
}

fn push_image_cmd(image: &str, app: Option<String>, wait: Option<Duration>) -> Result<()> {
    deploy::check_image_ref(image)?;
    let name = resolve_app(app)?;
    let client = client()?;
    // Asked first so that a typo in the app name fails before a large image is uploaded.
    let _: App = client.get(&format!("/v1/apps/{name}"))?;

    let release = push_image(&client, &name, image)?;
    say(&sanitize(&format!(
        "Released v{} ({})",
        release.version, release.image
    )))?;
    after_release(&client, &name, release.version, wait)
}

/// `caas push PATH`: pack or take the file, upload it as a build, print the build's output as it
/// happens, then wait for the release like an image push does.
fn push_source(
    path: &Path,
    app: Option<String>,
    wait: Option<Duration>,
    canary: Option<u8>,
) -> Result<()> {
    // Everything that can be found out locally is, before the first request.
    let target = source::classify(path)?;
    let name = resolve_app(app)?;
    let client = client()?;
    // A typo in the app name fails before a directory is packed or a file uploaded.
    let _: App = client.get(&format!("/v1/apps/{name}"))?;
    // Only for the size check; a server that cannot say is left to enforce its own limit.
    let max_upload_mb = client
        .get::<ServerInfo>("/v1/info")
        .map_or(0, |info| info.max_upload_mb);

    let upload = match target {
        source::Target::Dir(dir) => {
            let packed = pack(&dir)?;
            build::Upload {
                kind: SourceKind::Dir,
                name: source::upload_name(&dir, "directory"),
                file: packed.file,
                len: packed.len,
            }
        }
        source::Target::File { path, kind } => {
            let file = File::open(&path)
                .with_context(|| format!("reading {}", sanitize(&path.display().to_string())))?;
            let len = file.metadata()?.len();
            build::Upload {
                kind,
                name: source::upload_name(&path, &format!("app.{}", kind.as_str())),
                file,
                len,
            }
        }
    };
    build::check_size(&upload.name, upload.len, max_upload_mb)?;

    let stream = build::upload(&client, &name, upload, canary)?;
    // The server's build output ends with its own `-----> Released vN (IMAGE, SIZE)` line.
    let built = {
        let mut out = std::io::stdout().lock();
        build::follow(stream, &name, &mut out)?
    };
    let Some(weight) = canary else {
        return after_release(&client, &name, built.release, wait);
    };
    let v = built.release;
    let what = format!("canary v{v} of {name} with {weight}% of requests");
    match wait {
        None => note(&format!(
            "Starting {what}; caas ps -a {name} shows both releases"
        )),
        Some(timeout) => {
            super::canary::wait_up(&client, &name, &what, timeout)?;
            say(&format!(
                "Started {what}: up (caas releases:promote or releases:abort -a {name})"
            ))?;
        }
    }
    Ok(())
}

/// Packs `dir` with a spinner on a terminal, and says what went in.
fn pack(dir: &Path) -> Result<source::Packed> {
    let shown = source::display_path(dir);
    let spinner = if stderr_is_term() {
        let s = ProgressBar::new_spinner();
        s.enable_steady_tick(Duration::from_millis(100));
        s.set_message(format!("Packing {shown}..."));
        s
    } else {
        ProgressBar::hidden()
    };
    let packed = source::pack_to_temp(dir);
    spinner.finish_and_clear();
    let packed = packed?;
    // The same figures the server's "Building" line gives, then what travels.
    let noun = if packed.contents.files == 1 {
        "file"
    } else {
        "files"
    };
    note(&format!(
        "Packed {shown}: {} {noun}, {} ({} compressed)",
        packed.contents.files,
        format_bytes(packed.contents.bytes),
        format_bytes(packed.len)
    ));
    Ok(packed)
}

/// After a release is recorded: unless `wait` is `None` (`--no-wait`), wait for the server's
/// verdict on it and print where it is served.
pub fn after_release(
    client: &Client,
    name: &str,
    version: u64,
    wait: Option<Duration>,
) -> Result<()> {
    let Some(timeout) = wait else {
        note(&format!(
            "v{version} is deploying; caas releases -a {name} shows how it went"
        ));
        return Ok(());
    };
    match deploy::wait_until_up(client, name, version, timeout)? {
        deploy::Waited::Up => {
            // Read after the verdict: a first deploy gives the app web=1.
            let app: App = client.get(&format!("/v1/apps/{name}"))?;
            if app.formation.get(caas_api::WEB).copied().unwrap_or(0) == 0 {
                say(&sanitize(&format!(
                    "v{version} is released; web is scaled to 0, so nothing serves it: caas ps:scale web=1 -a {name}"
                )))
            } else {
                say(&sanitize(&format!("{name} is up at {}", app.url)))
            }
        }
        deploy::Waited::Superseded(newer) => {
            note(&format!(
                "v{version} was replaced by v{newer} before it came up (a newer push or config change); caas releases -a {name} shows how v{newer} goes"
            ));
            Ok(())
        }
    }
}

/// Deploys `image`, uploading it first only when the server says it lacks exactly the image the
/// local engine has.
fn push_image(client: &Client, app: &str, image: &str) -> Result<caas_api::Release> {
    let local = deploy::inspect_local_image(image);
    let request = DeployImage {
        image: image.to_string(),
        image_id: local.as_ref().map(|l| l.id.clone()),
    };
    match deploy::deploy(client, app, &request) {
        Ok(release) => Ok(release),
        Err(e) if deploy::is_upload_needed(&e) => {
            let Some(local) = local else {
                return Err(e);
            };
            deploy::upload_image(client, image, local.size)?;
            deploy::deploy(client, app, &request).map_err(|e| {
                if deploy::is_upload_needed(&e) {
                    CliError::Failed(format!(
                        "the server still lacks image {image} ({}) after the upload",
                        local.id
                    ))
                    .into()
                } else {
                    e
                }
            })
        }
        // The app exists (checked above), so a 404 here is about the image.
        Err(e) if local.is_none() && deploy::is_not_found(&e) => Err(CliError::NotFound(format!(
            "image {image} not found: not in the local Docker engine and not on the server"
        ))
        .into()),
        Err(e) => Err(e),
    }
}
