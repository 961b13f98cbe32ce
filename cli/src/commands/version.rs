//! `version`: this client's version and the server's.

use super::{client, JsonArg};
use crate::output::{print_json, sanitize, say};
use anyhow::Result;
use caas_api::ServerInfo;
use clap::Args;
use serde::Serialize;

#[derive(Debug, Args)]
pub struct VersionArgs {
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Serialize)]
struct Versions {
    client: &'static str,
    server_url: String,
    /// `null` when the server cannot be reached.
    server: Option<ServerInfo>,
}

pub fn show(args: VersionArgs) -> Result<()> {
    let client_version = env!("CARGO_PKG_VERSION");
    // The server's version is a nice-to-have: an unreachable or misconfigured server is reported,
    // not an error, because `caas version` is what people run when things do not work.
    let (server_url, info) = match client() {
        Ok(c) => {
            let info = c.get::<ServerInfo>("/v1/info");
            (c.server().to_string(), info)
        }
        Err(e) => (String::new(), Err(e)),
    };
    if args.json.json {
        return print_json(&Versions {
            client: client_version,
            server_url,
            server: info.ok(),
        });
    }
    say(&format!("client: {client_version}"))?;
    match info {
        Ok(info) => say(&sanitize(&format!(
            "server: {} ({server_url})",
            info.version
        ))),
        Err(e) => say(&sanitize(&format!("server: unknown ({e:#})"))),
    }
}
