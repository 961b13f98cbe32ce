//! `buildpacks`, `buildpacks:set`, `buildpacks:clear`: what the server can build with, and pinning
//! one for an app instead of detecting it.

use super::{client, AppArg, JsonArg};
use crate::app::resolve_app;
use crate::output::{print_json, print_table, sanitize, say};
use anyhow::Result;
use caas_api::{App, Buildpack, SetBuildpack};
use clap::Args;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// A buildpack's name, as caas buildpacks lists it
    name: String,
    #[command(flatten)]
    app: AppArg,
}

#[derive(Debug, Args)]
pub struct ClearArgs {
    #[command(flatten)]
    app: AppArg,
}

pub fn list(args: ListArgs) -> Result<()> {
    let packs: Vec<Buildpack> = client()?.get("/v1/buildpacks")?;
    if args.json.json {
        return print_json(&packs);
    }
    if packs.is_empty() {
        return say("No buildpacks installed on the server.");
    }
    // In the server's order, which is the order `detect` tries them in.
    let rows: Vec<Vec<String>> = packs
        .iter()
        .map(|p| {
            let bundled = if p.bundled { "yes" } else { "no" };
            vec![p.name.clone(), bundled.to_string()]
        })
        .collect();
    print_table(&["NAME", "BUNDLED"], &rows)
}

pub fn set(args: SetArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    // The server knows which buildpacks exist and refuses others with the list (exit 2).
    let app = put(&name, Some(args.name))?;
    match &app.buildpack {
        Some(pack) => say(&sanitize(&format!("{} will build with {pack}", app.name))),
        None => say(&sanitize(&format!(
            "{} will detect its buildpack",
            app.name
        ))),
    }
}

pub fn clear(args: ClearArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let app = put(&name, None)?;
    say(&sanitize(&format!(
        "{} will detect its buildpack",
        app.name
    )))
}

fn put(app: &str, buildpack: Option<String>) -> Result<App> {
    client()?.put(
        &format!("/v1/apps/{app}/buildpack"),
        &SetBuildpack { buildpack },
    )
}
