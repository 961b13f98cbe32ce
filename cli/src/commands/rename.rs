//! `apps:rename [OLD] NEW`: the app takes a new name; its URL and git remote follow.

use super::{client, AppArg};
use crate::app::{check_app_name, resolve_app};
use crate::deploy::{wait_until_up, WaitArgs, Waited};
use crate::error::CliError;
use crate::output::{note, sanitize, say};
use anyhow::Result;
use caas_api::{App, RenameApp};
use clap::Args;

#[derive(Debug, Args)]
pub struct RenameArgs {
    /// OLD NEW, or only NEW with -a OLD (or the app of the git remote caas)
    #[arg(value_name = "NAME", required = true, num_args = 1..=2)]
    names: Vec<String>,
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    wait: WaitArgs,
}

pub fn rename(args: RenameArgs) -> Result<()> {
    let (old, new) = match args.names.as_slice() {
        [old, new] if args.app.app.is_none() => (old.clone(), new.clone()),
        [new] => (resolve_app(args.app.app)?, new.clone()),
        _ => {
            return Err(
                CliError::usage("give OLD NEW, or NEW with -a OLD, not both an OLD and -a").into(),
            )
        }
    };
    check_app_name(&old)?;
    check_app_name(&new)?;
    if old == new {
        return Err(CliError::usage(format!("{old} already has that name; give a new one")).into());
    }
    let client = client()?;
    let app: App = client.patch(&format!("/v1/apps/{old}"), &RenameApp { name: new.clone() })?;
    say(&sanitize(&format!("Renamed {old} to {new}: {}", app.url)))?;
    match crate::git::follow_rename(&old, &new) {
        Ok(Some(url)) => say(&sanitize(&format!("Git remote caas updated: {url}")))?,
        Ok(None) => {}
        // The app is renamed whatever git says: only the remote is left to fix, by hand.
        Err(e) => note(&format!(
            "the git remote caas still names {old}: {e}; run caas git:remote -a {new}"
        )),
    }
    // Its instances are made again under the new name (the old ones serve meanwhile).
    if let (Some(version), Some(timeout)) = (app.deploying, args.wait.timeout()) {
        if let Waited::Superseded(newer) = wait_until_up(&client, &new, version, timeout)? {
            note(&format!(
                "v{version} was replaced by v{newer} before it came up; caas releases -a {new} shows how v{newer} goes"
            ));
        }
    }
    Ok(())
}
