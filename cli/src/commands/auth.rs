//! `login` and `logout`: the saved credentials.

use crate::client::Client;
use crate::config::{self, normalize_server, process_env, Settings};
use crate::error::CliError;
use crate::output::{note, sanitize, say};
use anyhow::{Context, Result};
use caas_api::App;
use clap::Args;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server's API URL [default: $CAAS_SERVER, the saved server, or http://127.0.0.1:7080]
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// API token (the admin token is in the server's DATA_DIR/admin-token). Without this flag
    /// caas asks for it on a terminal, without echoing it, or reads it from standard input;
    /// both keep it out of the process list and the shell history
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
}

fn config_path() -> Result<PathBuf> {
    config::config_path(&process_env).ok_or_else(|| {
        CliError::Failed(
            "no place to save credentials: set HOME, XDG_CONFIG_HOME or CAAS_CONFIG".into(),
        )
        .into()
    })
}

pub fn login(args: LoginArgs) -> Result<()> {
    let server = match args.server {
        Some(s) => normalize_server(&s),
        None => config::settings()?.server,
    };
    let token = match args.token {
        Some(t) => t,
        None => read_token()?,
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(CliError::usage(NO_TOKEN).into());
    }
    let settings = Settings {
        server: server.clone(),
        token: Some(token.clone()),
    };
    // Checked before saving, so a wrong token or server never replaces working credentials.
    let _: Vec<App> = Client::new(&settings)?.get("/v1/apps")?;

    let path = config_path()?;
    let mut file = config::load(&path)?;
    file.server = Some(server.clone());
    file.token = Some(token);
    config::save(&path, &file)?;
    if process_env("CAAS_TOKEN").is_some() || process_env("CAAS_SERVER").is_some() {
        note("note: CAAS_SERVER/CAAS_TOKEN are set and take precedence over the saved login");
    }
    say(&sanitize(&format!("Logged in to {server}")))?;
    say("For git pushes, run caas git:remote -a APP in your repository")
}

const NO_TOKEN: &str = "no token given: pass --token TOKEN, pipe it on standard input \
     (caas login < FILE), or run caas login on a terminal to be asked for it";

/// Asks on the terminal when there is one to ask on (the prompt goes to stderr, so stderr must be
/// one too), else reads the first line of standard input.
fn read_token() -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        if !std::io::stderr().is_terminal() {
            return Err(CliError::usage(NO_TOKEN).into());
        }
        let term = console::Term::stderr();
        term.write_str("Token (caasd's DATA_DIR/admin-token; typing is not shown): ")?;
        return term
            .read_secure_line()
            .context("reading the token from the terminal");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the token from standard input")?;
    Ok(line)
}

pub fn logout() -> Result<()> {
    let path = config_path()?;
    let mut file = config::load(&path)?;
    let had_token = file.token.take().is_some();
    if had_token {
        config::save(&path, &file)?;
    }
    if process_env("CAAS_TOKEN").is_some() {
        note("note: CAAS_TOKEN is still set in the environment and is used while it is");
    }
    let server = file
        .server
        .unwrap_or_else(|| config::DEFAULT_SERVER.to_string());
    if had_token {
        say(&sanitize(&format!("Logged out of {server}")))
    } else {
        say("Not logged in")
    }
}
