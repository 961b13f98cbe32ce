//! `addons`, `addons:create`, `addons:info`, `addons:attach`, `addons:detach`, `addons:update`,
//! `addons:destroy`, `addons:backup`, `addons:restore`: services caas runs for apps (Postgres,
//! Redis, MySQL) and external bindings, each reaching an app as a `*_URL` config var.

use super::{client, JsonArg};
use crate::client::Client;
use crate::deploy::{wait_until_up, WaitArgs};
use crate::error::CliError;
use crate::output::{age, note, print_json, print_table, sanitize, say, stderr_is_term};
use anyhow::Result;
use caas_api::addons::{
    Addon, AddonAttach, AddonChange, AddonCreate, AddonState, AddonUpdate, AppRelease,
};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only the add-ons attached to this app
    #[arg(short, long, value_name = "APP")]
    app: Option<String>,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// postgres, redis, mysql, or external (a URL of a service run elsewhere)
    kind: String,
    /// The app to attach it to
    #[arg(short, long, value_name = "APP", required = true)]
    app: String,
    /// The app gets NAME_URL instead of DATABASE_URL / REDIS_URL / MYSQL_URL
    #[arg(long = "as", value_name = "NAME")]
    as_name: Option<String>,
    /// The add-on's name [default: KIND-XXXXXX]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// For external: the URL every attached app gets
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    name: String,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    name: String,
    /// The app to attach it to
    #[arg(short, long, value_name = "APP", required = true)]
    app: String,
    /// The app gets VAR_URL instead of the kind's default var
    #[arg(long = "as", value_name = "VAR")]
    as_name: Option<String>,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct DetachArgs {
    name: String,
    #[arg(short, long, value_name = "APP", required = true)]
    app: String,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    name: String,
    /// The new URL of an external add-on: every attached app gets a new release with it
    #[arg(long, value_name = "URL", required = true)]
    url: String,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    name: String,
    /// The add-on's name again, to confirm: its data goes with it
    #[arg(long, value_name = "NAME")]
    confirm: Option<String>,
    /// Detach it from its apps first (each gets a release without its var)
    #[arg(long)]
    detach: bool,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    name: String,
}

fn path(name: &str) -> Result<String> {
    caas_api::addons::validate_addon_name(name).map_err(|_| {
        CliError::NotFound(format!(
            "no add-on named {:?}: see caas addons",
            sanitize(name)
        ))
    })?;
    Ok(format!("/v1/addons/{name}"))
}

pub fn list(args: ListArgs) -> Result<()> {
    let mut url = "/v1/addons".to_string();
    if let Some(app) = &args.app {
        url = format!("/v1/addons?app={app}");
        caas_api::validate_app_name(app).map_err(|_| {
            CliError::NotFound(format!("no app named {:?}: see caas apps", sanitize(app)))
        })?;
    }
    let addons: Vec<Addon> = client()?.get(&url)?;
    if args.json.json {
        return print_json(&addons);
    }
    if addons.is_empty() {
        return say(&match &args.app {
            Some(app) => format!(
                "{app} has no add-ons. Create one with: caas addons:create postgres -a {app}"
            ),
            None => "No add-ons. Create one with: caas addons:create postgres -a APP".to_string(),
        });
    }
    let rows: Vec<Vec<String>> = addons
        .iter()
        .map(|a| {
            let attached: Vec<String> = a
                .attachments
                .iter()
                .map(|t| format!("{} ({})", t.app, t.var))
                .collect();
            vec![
                sanitize(&a.name),
                a.kind.to_string(),
                a.state.as_str().to_string(),
                sanitize(&attached.join(", ")),
                age(a.created_at),
            ]
        })
        .collect();
    print_table(&["NAME", "KIND", "STATE", "ATTACHED TO", "CREATED"], &rows)
}

pub fn info(args: InfoArgs) -> Result<()> {
    let a: Addon = client()?.get(&path(&args.name)?)?;
    if args.json.json {
        return print_json(&a);
    }
    let mut lines = vec![
        format!("=== {}", a.name),
        format!("Kind:       {}", a.kind),
        format!("State:      {}", a.state.as_str()),
    ];
    if let Some(m) = &a.message {
        lines.push(format!("Message:    {m}"));
    }
    if let Some(h) = &a.host {
        lines.push(format!("Host:       {h}"));
    }
    if let Some(mb) = a.memory_mb {
        lines.push(format!("Memory:     {mb} MB"));
    }
    if let Some(at) = &a.published {
        lines.push(format!("Published:  {at} (for instances on other hosts)"));
    }
    for (i, t) in a.attachments.iter().enumerate() {
        let label = if i == 0 { "Attached:" } else { "" };
        lines.push(format!("{label:<11} {} as {}", t.app, t.var));
    }
    lines.push(format!(
        "Created:    {} ago by {}",
        age(a.created_at),
        a.created_by
    ));
    let text: Vec<String> = lines.iter().map(|l| sanitize(l)).collect();
    say(&text.join("\n"))
}

/// Waits for the releases a change made, as config:set does.
fn wait_releases(client: &Client, releases: &[AppRelease], wait: &WaitArgs) -> Result<()> {
    for r in releases {
        match (r.release, wait.timeout()) {
            (Some(v), Some(timeout)) => {
                wait_until_up(client, &r.app, v, timeout)?;
                note(&format!("{} v{v} is up with {}", r.app, r.var));
            }
            (Some(v), None) => note(&format!("{} gets {} in v{v}", r.app, r.var)),
            (None, _) => note(&format!(
                "{} has {} (its first release will have it)",
                r.app, r.var
            )),
        }
    }
    Ok(())
}

pub fn create(args: CreateArgs) -> Result<()> {
    let client = client()?;
    let change: AddonChange = client.post(
        "/v1/addons",
        &AddonCreate {
            kind: args.kind,
            app: args.app.clone(),
            name: args.name,
            as_name: args.as_name,
            url: args.url,
        },
    )?;
    let mut a = change.addon;
    let name = a.name.clone();
    note(&format!("Creating {name} ({}) for {}...", a.kind, args.app));
    // The service is made in the background; its record says how far it got.
    let mut said = None;
    while a.state == AddonState::Creating {
        if a.message.is_some() && a.message != said {
            note(&sanitize(a.message.as_deref().unwrap_or("")));
            said = a.message.clone();
        }
        std::thread::sleep(Duration::from_millis(500));
        a = client.get(&path(&name)?)?;
    }
    if a.state != AddonState::Available {
        return Err(CliError::Failed(sanitize(&format!(
            "creating {name} failed: {}",
            a.message.as_deref().unwrap_or("see caas addons:info")
        )))
        .into());
    }
    wait_releases(&client, &a.releases, &args.wait)?;
    let vars: Vec<String> = a
        .attachments
        .iter()
        .map(|t| format!("{} on {}", t.var, t.app))
        .collect();
    say(&sanitize(&format!("Created {name}: {}", vars.join(", "))))
}

pub fn attach(args: AttachArgs) -> Result<()> {
    let client = client()?;
    let change: AddonChange = client.post(
        &format!("{}/attachments", path(&args.name)?),
        &AddonAttach {
            app: args.app.clone(),
            as_name: args.as_name,
        },
    )?;
    wait_releases(&client, &change.releases, &args.wait)?;
    let var = change
        .releases
        .first()
        .map(|r| r.var.clone())
        .unwrap_or_default();
    say(&sanitize(&format!(
        "Attached {} to {} as {var}",
        args.name, args.app
    )))
}

pub fn detach(args: DetachArgs) -> Result<()> {
    let client = client()?;
    let url = format!("{}/attachments/{}", path(&args.name)?, args.app);
    let resp = client.send_stream(
        reqwest::Method::DELETE,
        &url,
        "application/json",
        Vec::new().into(),
    )?;
    let change: AddonChange = serde_json::from_reader(resp)?;
    wait_releases(&client, &change.releases, &args.wait)?;
    say(&sanitize(&format!(
        "Detached {} from {}",
        args.name, args.app
    )))
}

pub fn update(args: UpdateArgs) -> Result<()> {
    let client = client()?;
    let change: AddonChange = client.patch(&path(&args.name)?, &AddonUpdate { url: args.url })?;
    if change.releases.is_empty() {
        return say(&format!(
            "{} has that URL already: nothing changed",
            args.name
        ));
    }
    wait_releases(&client, &change.releases, &args.wait)?;
    say(&sanitize(&format!(
        "Updated {}: {} app(s) got a new release",
        args.name,
        change.releases.len()
    )))
}

pub fn destroy(args: DestroyArgs) -> Result<()> {
    let name = args.name;
    if args.confirm.as_deref() != Some(name.as_str()) {
        return Err(CliError::usage(format!(
            "this destroys {} and its data; pass --confirm {}",
            sanitize(&name),
            sanitize(&name)
        ))
        .into());
    }
    let mut url = path(&name)?;
    if args.detach {
        url.push_str("?detach=true");
    }
    client()?.delete(&url)?;
    say(&format!("Destroyed {name}"))
}

/// Bytes moved, on a terminal as a live counter; a line at the end in any case.
struct Progress {
    bar: ProgressBar,
    started: Instant,
}

impl Progress {
    fn start(what: &str, len: Option<u64>) -> Self {
        let bar = if stderr_is_term() {
            let bar = match len {
                Some(len) => {
                    let bar = ProgressBar::new(len);
                    bar.set_style(
                        ProgressStyle::with_template(&format!(
                            "{what} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}}"
                        ))
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar
                }
                None => {
                    let bar = ProgressBar::new_spinner();
                    bar.set_style(
                        ProgressStyle::with_template(&format!(
                            "{{spinner}} {what} {{bytes}} {{bytes_per_sec}}"
                        ))
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar
                }
            };
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        } else {
            ProgressBar::hidden()
        };
        Self {
            bar,
            started: Instant::now(),
        }
    }
}

pub fn backup(args: DumpArgs) -> Result<()> {
    let client = client()?;
    let url = format!("{}/backup", path(&args.name)?);
    let mut resp = client.get_stream(&url, &[])?;
    let progress = Progress::start(&format!("Backing up {}", args.name), None);
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = resp.read(&mut buf).map_err(|e| {
            CliError::Failed(format!(
                "the backup of {} was cut short ({e}): the output is not a whole dump",
                args.name
            ))
        })?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        total += n as u64;
        progress.bar.set_position(total);
    }
    out.flush()?;
    progress.bar.finish_and_clear();
    note(&format!(
        "Backed up {} ({}) in {:.1}s",
        args.name,
        caas_api::format_bytes(total),
        progress.started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Counts what the upload has read, for the progress bar.
struct Counted<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

pub fn restore(args: DumpArgs) -> Result<()> {
    let client = client()?;
    let url = format!("{}/backup", path(&args.name)?);
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(CliError::usage(format!(
            "give the dump on stdin: caas addons:restore {} < dump",
            args.name
        ))
        .into());
    }
    // The length when stdin is a file, for a bar with an end.
    let len = std::fs::metadata("/dev/stdin")
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    let progress = Progress::start(&format!("Restoring {}", args.name), len);
    let body = Counted {
        inner: std::io::stdin(),
        bar: progress.bar.clone(),
    };
    let result = client.send_stream(
        reqwest::Method::PUT,
        &url,
        "application/octet-stream",
        reqwest::blocking::Body::new(body),
    );
    progress.bar.finish_and_clear();
    result?;
    say(&format!(
        "Restored {} in {:.1}s",
        args.name,
        progress.started.elapsed().as_secs_f64()
    ))
}
