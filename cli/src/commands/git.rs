//! `git:remote` (point a repository's `caas` remote at an app) and `git:credential` (the
//! credential helper that remote uses, so that `git push caas main` needs no token in any URL).

use super::AppArg;
use crate::app::resolve_app;
use crate::client::Client;
use crate::config;
use crate::error::CliError;
use crate::git;
use crate::output::{note, sanitize, say};
use anyhow::{Context, Result};
use caas_api::App;
use clap::Args;
use std::io::Write;

#[derive(Debug, Args)]
pub struct RemoteArgs {
    #[command(flatten)]
    app: AppArg,
    /// The name of the git remote
    #[arg(short, long, value_name = "NAME", default_value = git::DEFAULT_REMOTE)]
    remote: String,
}

#[derive(Debug, Args)]
pub struct CredentialArgs {
    /// What git asks: get, store or erase (only get answers anything)
    action: String,
}

pub fn remote(args: RemoteArgs) -> Result<()> {
    git::check_remote_name(&args.remote)?;
    if !git::in_repository()? {
        return Err(CliError::usage("not a git repository: run git init first").into());
    }
    let app = resolve_app(args.app.app)?;
    let settings = config::settings()?;
    let client = Client::new(&settings)?;
    // A typo in the app name fails here (exit 4) rather than at the first push.
    let _: App = client.get(&format!("/v1/apps/{app}"))?;

    let exe = std::env::current_exe().context("finding the path of this caas executable")?;
    let exe = exe.to_str().ok_or_else(|| {
        CliError::Failed(format!(
            "the path of this caas executable is not UTF-8: {}",
            exe.display()
        ))
    })?;
    let plan = git::plan(&settings.server, &app, &args.remote, exe);
    git::apply(&plan)?;
    say(&sanitize(&format!(
        "set git remote {} to {}",
        plan.remote, plan.url
    )))
}

/// git's credential helper protocol: attributes on stdin, up to a blank line; for `get`, the
/// answer on stdout. Anything else (`store`, `erase`, and actions git may add later) is read
/// and ignored, as the protocol asks.
pub fn credential(args: CredentialArgs) -> Result<()> {
    let request = git::read_request(std::io::stdin().lock())?;
    if args.action != "get" {
        return Ok(());
    }
    let settings = config::settings()?;
    if !git::request_matches(&request, &settings.server) {
        return Ok(());
    }
    match git::credential_answer(&request, &settings) {
        Some(answer) => {
            let mut out = std::io::stdout().lock();
            out.write_all(answer.as_bytes())?;
            out.flush()?;
        }
        // git shows a helper's stderr to the user before it falls back to prompting.
        None => note(&format!(
            "caas: no token for {}: run caas login",
            sanitize(&settings.server)
        )),
    }
    Ok(())
}
