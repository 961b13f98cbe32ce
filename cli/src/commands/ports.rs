//! `ports`, `ports:add`, `ports:remove`: an app's TCP routes, public ports of the gateway that
//! forward connections to the app's web instances.

use super::{client, AppArg, JsonArg};
use crate::app::resolve_app;
use crate::error::CliError;
use crate::output::{age, print_json, print_table, sanitize, say};
use anyhow::Result;
use caas_api::ports::{AddPort, PortRoute};
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
    /// The protocol: tcp
    protocol: String,
    /// The instances' port connections go to [default: their $PORT]
    #[arg(long, value_name = "PORT")]
    target: Option<u32>,
    /// The public port wanted [default: a free one of the gateway's TCP ports]
    #[arg(long, value_name = "PORT")]
    port: Option<u32>,
    #[command(flatten)]
    app: AppArg,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The public port, as caas ports lists it
    port: String,
    #[command(flatten)]
    app: AppArg,
}

fn target(r: &PortRoute) -> String {
    r.target
        .map_or_else(|| "$PORT".to_string(), |t| t.to_string())
}

pub fn list(args: ListArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let routes: Vec<PortRoute> = client()?.get(&format!("/v1/apps/{name}/ports"))?;
    if args.json.json {
        return print_json(&routes);
    }
    if routes.is_empty() {
        return say(&format!(
            "{name} has no TCP routes. Add one with: caas ports:add tcp -a {name} [--target PORT]"
        ));
    }
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|r| {
            vec![
                r.protocol.clone(),
                r.port.to_string(),
                target(r),
                sanitize(&r.address),
                age(r.created_at),
            ]
        })
        .collect();
    print_table(&["PROTO", "PORT", "TARGET", "ADDRESS", "ADDED"], &rows)
}

pub fn add(args: AddArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    if !args.protocol.eq_ignore_ascii_case("tcp") {
        return Err(CliError::usage(format!(
            "unknown protocol {:?}: caas routes tcp (caas ports:add tcp -a {name})",
            sanitize(&args.protocol)
        ))
        .into());
    }
    let r: PortRoute = client()?.post(
        &format!("/v1/apps/{name}/ports"),
        &AddPort {
            protocol: "tcp".into(),
            port: args.port,
            target: args.target,
        },
    )?;
    say(&sanitize(&format!(
        "Port {} of the gateway forwards TCP to {name}'s web instances (port {}): connect to {}",
        r.port,
        target(&r),
        r.address
    )))
}

pub fn remove(args: RemoveArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let port = args.port.trim();
    if port.parse::<u16>().is_err() {
        return Err(CliError::usage(format!(
            "invalid port {:?}: give the public port caas ports lists",
            sanitize(port)
        ))
        .into());
    }
    client()?.delete(&format!("/v1/apps/{name}/ports/{port}"))?;
    say(&format!("Removed the TCP route on port {port} from {name}"))
}
