//! `apps`, `apps:create`, `apps:info`, `apps:destroy`.

use super::{client, AppArg, JsonArg};
use crate::app::{check_app_name, resolve_app};
use crate::error::CliError;
use crate::output::{age, format_ts, print_json, print_table, sanitize, say};
use anyhow::Result;
use caas_api::{App, CreateApp};
use clap::Args;
use std::collections::BTreeMap;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of the new app: 3 to 30 lowercase letters, digits and dashes
    name: String,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    app: AppArg,
    /// The app's name again, to confirm
    #[arg(long, value_name = "APP")]
    confirm: Option<String>,
}

pub fn list(args: ListArgs) -> Result<()> {
    let apps: Vec<App> = client()?.get("/v1/apps")?;
    if args.json.json {
        return print_json(&apps);
    }
    if apps.is_empty() {
        return say("No apps yet. Create one with: caas apps:create NAME");
    }
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                release_label(a.release),
                instance_count(&a.formation).to_string(),
                a.url.clone(),
            ]
        })
        .collect();
    print_table(&["NAME", "RELEASE", "INSTANCES", "URL"], &rows)
}

pub fn create(args: CreateArgs) -> Result<()> {
    check_app_name(&args.name)?;
    let app: App = client()?.post("/v1/apps", &CreateApp { name: args.name })?;
    say(&sanitize(&format!("Created {}: {}", app.name, app.url)))
}

pub fn info(args: InfoArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let app: App = client()?.get(&format!("/v1/apps/{name}"))?;
    if args.json.json {
        return print_json(&app);
    }
    let mut lines = vec![
        format!("=== {}", app.name),
        format!("URL:        {}", app.url),
        format!("Release:    {}", release_label(app.release)),
        format!("Formation:  {}", formation_label(&app.formation)),
    ];
    if let Some(pack) = &app.buildpack {
        lines.push(format!("Buildpack:  {pack}"));
    }
    lines.push(format!(
        "Created:    {} ({} ago)",
        format_ts(app.created_at),
        age(app.created_at)
    ));
    let text: Vec<String> = lines.iter().map(|l| sanitize(l)).collect();
    say(&text.join("\n"))
}

pub fn destroy(args: DestroyArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    if args.confirm.as_deref() != Some(name.as_str()) {
        return Err(CliError::usage(format!(
            "this destroys {name} and all its releases; pass --confirm {name}"
        ))
        .into());
    }
    client()?.delete(&format!("/v1/apps/{name}"))?;
    say(&format!("Destroyed {name}"))
}

pub fn release_label(release: Option<u64>) -> String {
    release.map_or_else(|| "-".to_string(), |v| format!("v{v}"))
}

fn instance_count(formation: &BTreeMap<String, u32>) -> u64 {
    formation.values().map(|n| u64::from(*n)).sum()
}

/// `web=2 worker=1`, or `none`.
pub fn formation_label(formation: &BTreeMap<String, u32>) -> String {
    if formation.is_empty() {
        return "none".to_string();
    }
    formation
        .iter()
        .map(|(process, n)| format!("{process}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}
