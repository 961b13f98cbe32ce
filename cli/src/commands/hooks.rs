//! `git:connect`, `git:connection`, `git:disconnect`: builds from a git host's push webhooks;
//! `webhooks`, `webhooks:add`, `webhooks:remove`: deploy notifications.

use super::{client, AppArg, JsonArg};
use crate::app::resolve_app;
use crate::config::process_env;
use crate::error::CliError;
use crate::output::{age, print_json, print_table, sanitize, say};
use anyhow::{Context, Result};
use caas_api::hooks::{AddNotifyHook, GitConnect, GitConnection, NotifyHook, NOTIFY_EVENTS};
use clap::Args;
use std::io::IsTerminal;

/// Where `--secret-from-env` reads the deploy token.
const TOKEN_ENV: &str = "CAAS_GIT_TOKEN";

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The repository caasd clones: https://HOST/OWNER/REPO.git
    url: String,
    /// The branch whose pushes build and deploy
    #[arg(long, default_value = "main")]
    branch: String,
    /// Read the deploy token from $CAAS_GIT_TOKEN (USER:TOKEN for a GitLab deploy token)
    /// instead of asking for it
    #[arg(long)]
    secret_from_env: bool,
    #[command(flatten)]
    app: AppArg,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    #[command(flatten)]
    app: AppArg,
}

/// The deploy token: from the environment when asked, else asked for on a terminal (empty for
/// a public repository), else none.
fn deploy_token(from_env: bool) -> Result<Option<String>> {
    if from_env {
        return match process_env(TOKEN_ENV).filter(|t| !t.trim().is_empty()) {
            Some(t) => Ok(Some(t.trim().to_string())),
            None => Err(CliError::usage(format!(
                "--secret-from-env: {TOKEN_ENV} is not set; export {TOKEN_ENV}=TOKEN first"
            ))
            .into()),
        };
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Ok(None);
    }
    let term = console::Term::stderr();
    term.write_str("Deploy token (empty for a public repository; typing is not shown): ")?;
    let token = term
        .read_secure_line()
        .context("reading the token from the terminal")?;
    Ok(Some(token.trim().to_string()).filter(|t| !t.is_empty()))
}

pub fn connect(args: ConnectArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let token = deploy_token(args.secret_from_env)?;
    let client = client()?;
    let c: GitConnection = client.put(
        &format!("/v1/apps/{name}/git"),
        &GitConnect {
            url: args.url,
            branch: Some(args.branch),
            token,
        },
    )?;
    let secret = c.webhook_secret.clone().unwrap_or_default();
    say_lines(&format!(
        "Connected {name} to {} ({}): pushes to it build and deploy\n\
         Add a webhook to the repository on its host (push events, content type application/json):\n  \
         URL:    {}{}\n  \
         Secret: {secret}\n\
         The secret is shown this once; caas git:connect again makes a new one.",
        c.url,
        c.branch,
        client.server(),
        c.webhook_path
    ))
}

pub fn show(args: ShowArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let client = client()?;
    let c: GitConnection = client.get(&format!("/v1/apps/{name}/git"))?;
    if args.json.json {
        return print_json(&c);
    }
    let last = match &c.last_delivery {
        Some(d) => format!(
            "{} from {} built as build {} ({} ago)",
            &d.commit[..d.commit.len().min(12)],
            d.host,
            d.build,
            age(d.at)
        ),
        None => "none yet".to_string(),
    };
    say_lines(&format!(
        "=== {name} git connection\n\
         Repository:    {}\n\
         Branch:        {}\n\
         Deploy token:  {}\n\
         Webhook URL:   {}{}\n\
         Last push:     {last}",
        c.url,
        c.branch,
        if c.token { "set (not shown)" } else { "none" },
        client.server(),
        c.webhook_path
    ))
}

pub fn disconnect(args: DisconnectArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    client()?.delete(&format!("/v1/apps/{name}/git"))?;
    say(&format!(
        "Disconnected {name} from its repository: push events are refused from now on"
    ))
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Where to POST events: http(s)://HOST/PATH
    url: String,
    /// Which events, comma-separated: release, build, crash [default: all]
    #[arg(long, value_delimiter = ',')]
    events: Vec<String>,
    #[command(flatten)]
    app: AppArg,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The webhook's URL, as caas webhooks lists it
    url: String,
    #[command(flatten)]
    app: AppArg,
}

pub fn list(args: ListArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let hooks: Vec<NotifyHook> = client()?.get(&format!("/v1/apps/{name}/webhooks"))?;
    if args.json.json {
        return print_json(&hooks);
    }
    if hooks.is_empty() {
        return say(&format!(
            "{name} has no webhooks. Add one with: caas webhooks:add https://HOST/PATH -a {name}"
        ));
    }
    let rows: Vec<Vec<String>> = hooks
        .iter()
        .map(|h| vec![sanitize(&h.url), h.events.join(","), age(h.created_at)])
        .collect();
    print_table(&["URL", "EVENTS", "ADDED"], &rows)?;
    let deliveries: Vec<Vec<String>> = hooks
        .iter()
        .flat_map(|h| {
            h.deliveries.iter().map(move |d| {
                vec![
                    sanitize(&h.url),
                    d.id.clone(),
                    d.event.clone(),
                    d.state.as_str().to_string(),
                    d.attempts.to_string(),
                    d.status.map_or("-".into(), |s| s.to_string()),
                    sanitize(d.error.as_deref().unwrap_or("")),
                    age(d.at),
                ]
            })
        })
        .collect();
    if deliveries.is_empty() {
        return say("\nNo deliveries yet.");
    }
    say("\nRecent deliveries:")?;
    print_table(
        &[
            "URL", "ID", "EVENT", "STATE", "TRIES", "STATUS", "ERROR", "WHEN",
        ],
        &deliveries,
    )
}

pub fn add(args: AddArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let events: Vec<String> = args
        .events
        .iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if let Some(bad) = events.iter().find(|e| !NOTIFY_EVENTS.contains(&e.as_str())) {
        return Err(CliError::usage(sanitize(&format!(
            "unknown event {bad:?}: use some of {}",
            NOTIFY_EVENTS.join(",")
        )))
        .into());
    }
    let hook: NotifyHook = client()?.post(
        &format!("/v1/apps/{name}/webhooks"),
        &AddNotifyHook {
            url: args.url,
            events,
        },
    )?;
    say_lines(&format!(
        "Added webhook {} to {name} (events: {})\n\
         Signing secret: {}\n\
         Each POST carries X-Caas-Signature-256: sha256=HMAC-SHA256(secret, body), in hex. \
         The secret is shown this once.",
        hook.url,
        hook.events.join(","),
        hook.secret.unwrap_or_default()
    ))
}

pub fn remove(args: RemoveArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    client()?.delete_query(&format!("/v1/apps/{name}/webhooks"), &[("url", &args.url)])?;
    say_lines(&format!("Removed webhook {} from {name}", args.url))
}

/// Prints text of several lines, each made safe to print (`sanitize` takes newlines too).
fn say_lines(text: &str) -> Result<()> {
    for line in text.lines() {
        say(&sanitize(line))?;
    }
    Ok(())
}
