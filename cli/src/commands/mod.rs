//! One module per group of commands. Each command takes its parsed arguments and returns
//! `anyhow::Result<()>`; errors that decide the exit code are [`crate::error::CliError`]s.

pub mod access;
pub mod addons;
pub mod alerts;
pub mod apps;
pub mod auth;
pub mod autoscale;
pub mod buildpacks;
pub mod builds;
pub mod canary;
pub mod certs;
pub mod checks;
pub mod config_vars;
pub mod domains;
pub mod drains;
pub mod git;
pub mod hooks;
pub mod hosts;
pub mod instances;
pub mod logs;
pub mod metrics;
pub mod ports;
pub mod ps;
pub mod push;
pub mod releases;
pub mod rename;
pub mod resize;
pub mod run;
pub mod servers;
pub mod shell;
pub mod users;
pub mod version;

use crate::client::Client;
use crate::config;
use anyhow::Result;
use clap::Args;

/// `-a/--app`, for every command that acts on one app.
#[derive(Debug, Args)]
pub struct AppArg {
    /// The app to act on [default: $CAAS_APP, else the app of the git remote caas]
    #[arg(short, long, value_name = "APP")]
    pub app: Option<String>,
}

/// `--json`, for every listing and info command.
#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print the API's JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// A client for the configured server and token.
pub fn client() -> Result<Client> {
    Client::new(&config::settings()?)
}
