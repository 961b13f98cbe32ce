//! `push`: deploy an image (and, later, source) to an app.

use super::{client, AppArg};
use crate::app::resolve_app;
use crate::deploy;
use crate::error::CliError;
use crate::output::{note, sanitize, say};
use anyhow::Result;
use caas_api::{App, DeployImage};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct PushArgs {
    /// A source directory or archive to build (not supported yet: use --image)
    path: Option<PathBuf>,
    /// Deploy this Docker image; uploaded from the local engine if the server lacks it
    #[arg(long, value_name = "REF")]
    image: Option<String>,
    #[command(flatten)]
    app: AppArg,
    /// Return once the release is recorded, without waiting for it to be up
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the new release to be up
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    wait_timeout: u64,
}

pub fn push(args: PushArgs) -> Result<()> {
    if args.path.is_some() {
        return Err(CliError::usage("pushing source is not supported yet; use --image REF").into());
    }
    let Some(image) = args.image else {
        return Err(CliError::usage("nothing to push: pass --image REF").into());
    };
    deploy::check_image_ref(&image)?;
    let name = resolve_app(args.app.app)?;
    let client = client()?;
    // Asked first so that a typo in the app name fails before a large image is uploaded.
    let _: App = client.get(&format!("/v1/apps/{name}"))?;

    let release = push_image(&client, &name, &image)?;
    say(&sanitize(&format!(
        "Released v{} ({})",
        release.version, release.image
    )))?;
    if args.no_wait {
        return Ok(());
    }

    // Read after the deploy: a first deploy gives the app web=1.
    let app: App = client.get(&format!("/v1/apps/{name}"))?;
    if app.formation.get("web").copied().unwrap_or(0) == 0 {
        note(&format!(
            "web is scaled to 0, so there is nothing to wait for; scale up with: caas ps:scale web=1 -a {name}"
        ));
        return Ok(());
    }
    deploy::wait_until_up(
        &client,
        &name,
        release.version,
        Duration::from_secs(args.wait_timeout),
    )?;
    say(&sanitize(&format!("{name} is up at {}", app.url)))
}

/// Deploys `image`, uploading it first only when the server says it lacks exactly the image the
/// local engine has.
fn push_image(client: &crate::client::Client, app: &str, image: &str) -> Result<caas_api::Release> {
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
