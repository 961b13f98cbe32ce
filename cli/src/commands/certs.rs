//! `certs`, `certs:add`, `certs:remove`: an app's TLS certificates, picked by SNI for the app's
//! names they cover; `certs:auto`: certificates obtained and renewed over ACME.

use super::{client, AppArg, JsonArg};
use crate::app::resolve_app;
use crate::error::CliError;
use crate::output::{format_ts, print_json, print_table, sanitize, say};
use anyhow::Result;
use caas_api::domains::{AcmeOrder, AddCert, AutoCerts, Cert, RoutingSettings, RoutingUpdate};
use caas_api::Timestamp;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The certificate chain, PEM, leaf first (a fullchain.pem)
    cert: PathBuf,
    /// Its private key, PEM
    key: PathBuf,
    #[command(flatten)]
    app: AppArg,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The certificate's id, or a name it is for, as caas certs lists them
    cert: String,
    #[command(flatten)]
    app: AppArg,
}

#[derive(Debug, Args)]
pub struct AutoArgs {
    /// on: obtain and renew certificates for the app's custom domains over ACME; off: stop;
    /// nothing: show where each name's certificate stands
    state: Option<String>,
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    json: JsonArg,
}

/// Largest PEM file read (the server takes 64 KB).
const MAX_FILE: u64 = 1024 * 1024;

fn read_pem(path: &PathBuf, what: &str) -> Result<String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| CliError::usage(format!("cannot read the {what} {}: {e}", path.display())))?;
    if meta.len() > MAX_FILE {
        return Err(CliError::usage(format!(
            "{} is {} bytes: not a PEM {what}",
            path.display(),
            meta.len()
        ))
        .into());
    }
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::usage(format!("cannot read the {what} {}: {e}", path.display())))?;
    String::from_utf8(bytes).map_err(|_| {
        CliError::usage(format!(
            "{} is not text: give the {what} as PEM",
            path.display()
        ))
        .into()
    })
}

fn expiry(c: &Cert) -> String {
    let now = Timestamp::now();
    if c.not_after <= now {
        format!("{} (expired)", format_ts(c.not_after))
    } else {
        let days = (c.not_after.millis() - now.millis()) / 86_400_000;
        format!("{} ({days} days)", format_ts(c.not_after))
    }
}

pub fn list(args: ListArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let client = client()?;
    let certs: Vec<Cert> = client.get(&format!("/v1/apps/{name}/certs"))?;
    if args.json.json {
        return print_json(&certs);
    }
    let auto: AutoCerts = client.get(&format!("/v1/apps/{name}/certs/auto"))?;
    if certs.is_empty() {
        say(&format!(
            "{name} has no certificates of its own (HTTPS serves the platform's). Add one with: caas certs:add CERT.pem KEY.pem -a {name}"
        ))?;
    } else {
        print_certs(&certs)?;
    }
    if auto.enabled {
        say("")?;
        print_auto(&name, &auto)?;
    }
    Ok(())
}

fn print_certs(certs: &[Cert]) -> Result<()> {
    let rows: Vec<Vec<String>> = certs
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                sanitize(&c.names.join(", ")),
                sanitize(&c.serves.join(", ")),
                expiry(c),
                c.source.as_str().to_string(),
            ]
        })
        .collect();
    print_table(&["ID", "NAMES", "SERVES", "EXPIRES", "SOURCE"], &rows)
}

pub fn add(args: AddArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let cert_pem = read_pem(&args.cert, "certificate")?;
    let key_pem = read_pem(&args.key, "private key")?;
    let c: Cert = client()?.post(
        &format!("/v1/apps/{name}/certs"),
        &AddCert { cert_pem, key_pem },
    )?;
    say(&sanitize(&format!(
        "Added certificate {} to {name}: {}, expires {}; it serves {}",
        c.id,
        c.names.join(", "),
        expiry(&c),
        c.serves.join(", ")
    )))
}

pub fn remove(args: RemoveArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let client = client()?;
    let wanted = args.cert.trim().to_ascii_lowercase();
    let looks_like_id = wanted.len() == 12 && wanted.bytes().all(|b| b.is_ascii_hexdigit());
    let id = if looks_like_id {
        wanted.clone()
    } else {
        let certs: Vec<Cert> = client.get(&format!("/v1/apps/{name}/certs"))?;
        let found: Vec<&Cert> = certs.iter().filter(|c| c.names.contains(&wanted)).collect();
        match found.as_slice() {
            [one] => one.id.clone(),
            [] => {
                return Err(CliError::NotFound(sanitize(&format!(
                    "{name} has no certificate {}: see caas certs -a {name}",
                    args.cert
                )))
                .into())
            }
            _ => {
                return Err(CliError::usage(sanitize(&format!(
                    "{} names more than one of {name}'s certificates: give its id (caas certs -a {name})",
                    args.cert
                )))
                .into())
            }
        }
    };
    client.delete(&format!("/v1/apps/{name}/certs/{id}"))?;
    say(&sanitize(&format!("Removed certificate {id} from {name}")))
}

pub fn auto(args: AutoArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let client = client()?;
    if let Some(state) = &args.state {
        let on = super::domains::on_off(state)?;
        let _: RoutingSettings = client.patch(
            &format!("/v1/apps/{name}/routing"),
            &RoutingUpdate {
                certs_auto: Some(on),
                ..RoutingUpdate::default()
            },
        )?;
        if !args.json.json {
            return say(&if on {
                format!("{name}: certificates for its custom domains are obtained and renewed over ACME; see caas certs -a {name}")
            } else {
                format!("{name}: certificates are no longer obtained over ACME (those obtained stay until removed)")
            });
        }
    }
    let auto: AutoCerts = client.get(&format!("/v1/apps/{name}/certs/auto"))?;
    if args.json.json {
        return print_json(&auto);
    }
    print_auto(&name, &auto)
}

fn print_auto(name: &str, auto: &AutoCerts) -> Result<()> {
    if !auto.enabled {
        return say(&format!(
            "{name}: automatic certificates are off; turn them on with: caas certs:auto on -a {name}"
        ));
    }
    say(&sanitize(&format!(
        "Automatic certificates (ACME, {}):",
        auto.directory
    )))?;
    if auto.orders.is_empty() {
        return say(&format!(
            "{name} has no custom domains yet; add one with: caas domains:add NAME -a {name}"
        ));
    }
    let rows: Vec<Vec<String>> = auto.orders.iter().map(order_row).collect();
    print_table(&["DOMAIN", "STATE", "CERTIFICATE", "DETAIL"], &rows)
}

fn order_row(o: &AcmeOrder) -> Vec<String> {
    let mut detail = o.error.clone().unwrap_or_default();
    if let Some(t) = o.next_try {
        detail = format!("{detail} (next try {})", format_ts(t));
    }
    vec![
        sanitize(&o.hostname),
        o.state.as_str().to_string(),
        o.cert_id.clone().unwrap_or_else(|| "-".into()),
        sanitize(detail.trim()),
    ]
}
