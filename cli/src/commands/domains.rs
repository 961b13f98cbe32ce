//! `domains`, `domains:add`, `domains:remove`: the custom domains an app is served at, besides
//! `APP.DOMAIN`.

use super::{client, AppArg, JsonArg};
use crate::app::resolve_app;
use crate::error::CliError;
use crate::output::{age, print_json, print_table, sanitize, say};
use anyhow::Result;
use caas_api::domains::{AddDomain, Domain, RoutingSettings, RoutingUpdate};
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
    /// The host name: www.example.com, or a wildcard *.example.com (quote it in the shell)
    hostname: String,
    #[command(flatten)]
    app: AppArg,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The host name, as caas domains lists it
    hostname: String,
    #[command(flatten)]
    app: AppArg,
}

#[derive(Debug, Args)]
pub struct RedirectArgs {
    /// on: answer plain HTTP with a 308 to HTTPS; off: serve it; nothing: show which
    state: Option<String>,
    #[command(flatten)]
    app: AppArg,
}

/// `on`/`off` (and the usual spellings of both).
pub(crate) fn on_off(text: &str) -> Result<bool> {
    match text.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "enable" | "enabled" => Ok(true),
        "off" | "false" | "no" | "disable" | "disabled" => Ok(false),
        _ => Err(CliError::usage(format!("{:?}: say on or off", sanitize(text))).into()),
    }
}

pub fn redirect_https(args: RedirectArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let path = format!("/v1/apps/{name}/routing");
    let client = client()?;
    let settings: RoutingSettings = match &args.state {
        None => client.get(&path)?,
        Some(state) => client.patch(
            &path,
            &RoutingUpdate {
                redirect_https: Some(on_off(state)?),
                ..RoutingUpdate::default()
            },
        )?,
    };
    say(&if settings.redirect_https {
        format!("{name}: plain HTTP is redirected to HTTPS (308)")
    } else {
        format!("{name}: plain HTTP is served, not redirected")
    })
}

/// What to tell the user to do in DNS for `d`.
pub(crate) fn dns_advice(d: &Domain) -> String {
    if d.dns_record == "CNAME" {
        format!(
            "Point it at the app: a CNAME record {} -> {}",
            d.hostname, d.dns_target
        )
    } else {
        format!(
            "Point it at the app: an ALIAS (or ANAME) record {} -> {}, or A/AAAA records with the addresses {} has (a zone's apex cannot have a CNAME)",
            d.hostname, d.dns_target, d.dns_target
        )
    }
}

pub fn list(args: ListArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let domains: Vec<Domain> = client()?.get(&format!("/v1/apps/{name}/domains"))?;
    if args.json.json {
        return print_json(&domains);
    }
    if domains.is_empty() {
        return say(&format!(
            "{name} has no custom domains. Add one with: caas domains:add www.example.com -a {name}"
        ));
    }
    let rows: Vec<Vec<String>> = domains
        .iter()
        .map(|d| {
            vec![
                sanitize(&d.hostname),
                d.kind.as_str().to_string(),
                format!("{} {}", d.dns_record, sanitize(&d.dns_target)),
                age(d.created_at),
            ]
        })
        .collect();
    print_table(&["DOMAIN", "KIND", "DNS RECORD", "ADDED"], &rows)
}

pub fn add(args: AddArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let d: Domain = client()?.post(
        &format!("/v1/apps/{name}/domains"),
        &AddDomain {
            hostname: args.hostname,
        },
    )?;
    say(&sanitize(&format!(
        "Added {} to {name}.\n{}",
        d.hostname,
        dns_advice(&d)
    )))
}

pub fn remove(args: RemoveArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    client()?.delete(&format!(
        "/v1/apps/{name}/domains/{}",
        caas_api::path_segment(&args.hostname)
    ))?;
    say(&sanitize(&format!(
        "Removed {} from {name}",
        args.hostname.trim()
    )))
}

#[derive(Debug, Args)]
pub struct Http2Args {
    /// on: the app's web process speaks HTTP/2 on $PORT (cleartext, prior knowledge, as gRPC
    /// servers do) and the gateway talks HTTP/2 to it; off: HTTP/1.1; nothing: show which
    state: Option<String>,
    #[command(flatten)]
    app: AppArg,
}

pub fn http2(args: Http2Args) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let path = format!("/v1/apps/{name}/routing");
    let client = client()?;
    let settings: RoutingSettings = match &args.state {
        None => client.get(&path)?,
        Some(state) => client.patch(
            &path,
            &RoutingUpdate {
                http2: Some(on_off(state)?),
                ..RoutingUpdate::default()
            },
        )?,
    };
    say(&if settings.http2 {
        format!("{name}: the gateway talks HTTP/2 to its web process (gRPC works end to end)")
    } else {
        format!("{name}: the gateway talks HTTP/1.1 to its web process")
    })
}
