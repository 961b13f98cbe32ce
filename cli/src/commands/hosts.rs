//! `hosts`: the machines running agents.

use super::{client, JsonArg};
use crate::error::CliError;
use crate::output::{format_mb, print_json, print_table, sanitize, say};
use anyhow::Result;
use caas_api::{AddHost, Host, HostJoin, HostState};
use clap::Args;

#[derive(Debug, Args)]
pub struct HostsArgs {
    #[command(flatten)]
    json: JsonArg,
}

pub fn list(args: HostsArgs) -> Result<()> {
    let hosts: Vec<Host> = client()?.get("/v1/hosts")?;
    if args.json.json {
        return print_json(&hosts);
    }
    if hosts.is_empty() {
        return say("No hosts. Start caasd, or let one join with: caas hosts:add NAME");
    }
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            vec![
                h.name.clone(),
                h.address.clone(),
                host_state(h.state).to_string(),
                h.instances.to_string(),
                format_mb(h.memory_mb),
                format_mb(h.reserved_mb),
                h.used_mb.map_or_else(|| "-".into(), format_mb),
                h.disk.map_or_else(|| "-".into(), disk_column),
            ]
        })
        .collect();
    print_table(
        &[
            "NAME",
            "ADDRESS",
            "STATE",
            "INSTANCES",
            "MEMORY",
            "RESERVED",
            "USED",
            "DISK FREE",
        ],
        &rows,
    )
}

/// `12.3 GiB of 40.0 GiB`
fn disk_column(d: caas_api::DiskUsage) -> String {
    const MB: u64 = 1024 * 1024;
    format!(
        "{} of {}",
        format_mb(d.free_bytes / MB),
        format_mb(d.total_bytes / MB)
    )
}

fn host_state(state: HostState) -> &'static str {
    match state {
        HostState::Ready => "ready",
        HostState::Lost => "lost",
    }
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The new host's name (up to 63 lowercase letters, digits, '-' and '.')
    name: String,
    /// The address it registers, which the gateway reaches it at [default: the address it
    /// connects to the control plane from]
    #[arg(long, value_name = "IP")]
    address: Option<String>,
    /// How long the join token works: 1h, 30m, 2d (at most 7d)
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    expires: String,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    name: String,
    /// The host's name again, to confirm
    #[arg(long, value_name = "NAME")]
    confirm: Option<String>,
}

/// `caas hosts:add NAME`: a join token for that one host, once, and the command to run there.
pub fn add(args: AddArgs) -> Result<()> {
    let secs = humantime::parse_duration(&args.expires)
        .map_err(|_| {
            CliError::usage(format!(
                "invalid --expires {:?}: give a duration such as 1h or 2d",
                sanitize(&args.expires)
            ))
        })?
        .as_secs();
    let join: HostJoin = client()?.post(
        "/v1/hosts",
        &AddHost {
            name: args.name,
            address: args.address,
            expires_in_secs: Some(secs),
        },
    )?;
    // Each part sanitized on its own: sanitizing the whole would take the line breaks too.
    say(&format!(
        "Join token for {} (works once, until {}). On that host, from a checkout of caas, run:\n\n  {}\n\nor, where caasd is installed:\n\n  {}",
        sanitize(&join.name),
        join.expires_at,
        sanitize(&join.install_command),
        sanitize(&join.agent_command)
    ))
}

pub fn remove(args: RemoveArgs) -> Result<()> {
    if args.confirm.as_deref() != Some(args.name.as_str()) {
        return Err(CliError::usage(format!(
            "this revokes {0}'s credentials and moves its instances elsewhere; pass --confirm {0}",
            sanitize(&args.name)
        ))
        .into());
    }
    client()?.delete(&format!("/v1/hosts/{}", args.name))?;
    say(&format!(
        "Removed host {}; its instances start elsewhere",
        sanitize(&args.name)
    ))
}
