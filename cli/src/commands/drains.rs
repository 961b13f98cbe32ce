//! `drains`, `drains:add`, `drains:remove`: an app's log drains, as Heroku's.

use super::{client, AppArg, JsonArg};
use crate::app::resolve_app;
use crate::error::CliError;
use crate::output::{print_json, print_table, sanitize, say};
use anyhow::Result;
use caas_api::{AddDrain, Drain};
use clap::Args;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Where to send the app's lines: syslog://HOST:PORT, syslog+tls://HOST:PORT or https://URL
    url: String,
    #[command(flatten)]
    app: AppArg,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The drain's URL or id, as caas drains lists them
    drain: String,
    #[command(flatten)]
    app: AppArg,
}

pub fn list(args: ListArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let drains: Vec<Drain> = client()?.get(&format!("/v1/apps/{name}/drains"))?;
    if args.json.json {
        return print_json(&drains);
    }
    if drains.is_empty() {
        return say(&format!(
            "{name} has no log drains. Add one with: caas drains:add syslog://HOST:PORT -a {name}"
        ));
    }
    let rows: Vec<Vec<String>> = drains
        .iter()
        .map(|d| {
            let state = match &d.error {
                Some(e) => format!("{}: {}", d.state.as_str(), e),
                None => d.state.as_str().to_string(),
            };
            vec![
                d.id.clone(),
                sanitize(&d.url),
                sanitize(&state),
                d.delivered.to_string(),
                d.queued.to_string(),
                d.dropped.to_string(),
            ]
        })
        .collect();
    print_table(
        &["ID", "URL", "STATE", "DELIVERED", "QUEUED", "DROPPED"],
        &rows,
    )
}

pub fn add(args: AddArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let drain: Drain = client()?.post(
        &format!("/v1/apps/{name}/drains"),
        &AddDrain { url: args.url },
    )?;
    say(&sanitize(&format!(
        "Successfully added drain {} ({}) to {name}",
        drain.url, drain.id
    )))
}

pub fn remove(args: RemoveArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let client = client()?;
    // The server takes an id; a URL is looked up among the app's drains.
    let id = if args.drain.starts_with("d.") {
        args.drain.clone()
    } else {
        let drains: Vec<Drain> = client.get(&format!("/v1/apps/{name}/drains"))?;
        drains
            .into_iter()
            .find(|d| d.url == args.drain)
            .map(|d| d.id)
            .ok_or_else(|| {
                CliError::NotFound(sanitize(&format!(
                    "{name} has no drain {}: see caas drains -a {name}",
                    args.drain
                )))
            })?
    };
    client.delete(&format!("/v1/apps/{name}/drains/{id}"))?;
    say(&sanitize(&format!(
        "Successfully removed drain {} from {name}",
        args.drain
    )))
}
