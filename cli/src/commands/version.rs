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
    // `caas version` is what people run when things do not work, so the client's version is
    // printed whatever happens; a server that cannot be asked then fails the command like any
    // other (exit 6 when unreachable), so that scripts checking the server see it.
    let (server_url, info) = match client() {
        Ok(c) => {
            let info = c.get::<ServerInfo>("/v1/info");
            (c.server().to_string(), info)
        }
        Err(e) => (String::new(), Err(e)),
    };
    let (info, failure) = match info {
        Ok(info) => (Some(info), None),
        Err(e) => (None, Some(e)),
    };
    if args.json.json {
        print_json(&Versions {
            client: client_version,
            server_url: server_url.clone(),
            server: info.clone(),
        })?;
    } else {
        say(&format!("client: {client_version}"))?;
        if let Some(info) = &info {
            say(&sanitize(&format!(
                "server: {} ({server_url})",
                info.version
            )))?;
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
