//! `releases`: an app's release history.

use super::{client, AppArg, JsonArg};
use crate::app::resolve_app;
use crate::output::{age, print_json, print_table, say};
use anyhow::Result;
use caas_api::Release;
use clap::Args;

#[derive(Debug, Args)]
pub struct ReleasesArgs {
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    json: JsonArg,
}

pub fn list(args: ReleasesArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let releases: Vec<Release> = client()?.get(&format!("/v1/apps/{name}/releases"))?;
    if args.json.json {
        return print_json(&releases);
    }
    if releases.is_empty() {
        return say(&format!(
            "No releases yet. Deploy one with: caas push -a {name}"
        ));
    }
    let rows: Vec<Vec<String>> = releases
        .iter()
        .map(|r| {
            vec![
                format!("v{}", r.version),
                r.description.clone(),
                r.image.clone(),
                format!("{} ago", age(r.created_at)),
            ]
        })
        .collect();
    print_table(&["VERSION", "DESCRIPTION", "IMAGE", "CREATED"], &rows)
}
