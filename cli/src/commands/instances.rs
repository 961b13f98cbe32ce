//! `ps:restart` and `ps:stop`: replace instances with fresh ones, as Heroku's commands do. Both
//! leave the formation as it is; the server drains the old instances.

use super::{client, AppArg};
use crate::app::resolve_app;
use crate::output::{sanitize, say};
use anyhow::Result;
use caas_api::{InstancesChanged, InstancesRequest};
use clap::Args;

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// A process type (web: all of its instances) or one instance (web.1) [default: every
    /// instance of the app]
    #[arg(value_name = "TYPE|INSTANCE")]
    target: Option<String>,
    #[command(flatten)]
    app: AppArg,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// One instance (web.1) or a process type (web: all of its instances)
    #[arg(value_name = "TYPE|INSTANCE")]
    target: String,
    #[command(flatten)]
    app: AppArg,
}

/// `caas ps:restart [web|web.1]`: each instance drains while a fresh one of its index starts.
pub fn restart(args: RestartArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let changed: InstancesChanged = client()?.post(
        &format!("/v1/apps/{name}/ps/restart"),
        &InstancesRequest {
            target: args.target,
        },
    )?;
    say(&format!(
        "Restarting {} of {name}",
        sanitize(&changed.instances.join(", "))
    ))
}

/// `caas ps:stop web.1`: stops it now; since the formation still wants it, a fresh one starts.
pub fn stop(args: StopArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let changed: InstancesChanged = client()?.post(
        &format!("/v1/apps/{name}/ps/stop"),
        &InstancesRequest {
            target: Some(args.target),
        },
    )?;
    say(&format!(
        "Stopping {} of {name}; the formation starts fresh ones in their place",
        sanitize(&changed.instances.join(", "))
    ))
}
