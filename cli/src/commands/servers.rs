//! `servers`: the control-plane servers sharing the platform's store.

use super::{client, JsonArg};
use crate::output::{print_json, print_table};
use anyhow::Result;
use caas_api::servers::ControlServer;
use clap::Args;

#[derive(Debug, Args)]
pub struct ServersArgs {
    #[command(flatten)]
    json: JsonArg,
}

pub fn list(args: ServersArgs) -> Result<()> {
    let servers: Vec<ControlServer> = client()?.get("/v1/servers")?;
    if args.json.json {
        return print_json(&servers);
    }
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.api.clone(),
                if s.leader { "leader" } else { "-" }.to_string(),
                if s.healthy { "up" } else { "not answering" }.to_string(),
                s.version.clone(),
                s.started_at.to_string(),
            ]
        })
        .collect();
    print_table(
        &["NAME", "API", "ROLE", "HEALTH", "VERSION", "STARTED"],
        &rows,
    )
}
