//! `hosts`: the machines running agents.

use super::{client, JsonArg};
use crate::output::{format_mb, print_json, print_table, say};
use anyhow::Result;
use caas_api::{Host, HostState};
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
        return say("No hosts. Start caasd, or join one with: caasd agent");
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
            ]
        })
        .collect();
    print_table(&["NAME", "ADDRESS", "STATE", "INSTANCES", "MEMORY"], &rows)
}

fn host_state(state: HostState) -> &'static str {
    match state {
        HostState::Ready => "ready",
        HostState::Lost => "lost",
    }
}
