//! `checks`, `checks:set`, `checks:clear`: an app's health checks; `apps:settings`,
//! `apps:settings:set`, `apps:settings:unset`: how its rollouts and drains go.
//!
//! Checks are part of a release: a change makes a new release that rolls out as a config change
//! does, and the command waits for it. Settings apply at once.

use super::{client, AppArg, JsonArg};
use crate::app::resolve_app;
use crate::client::Client;
use crate::deploy::{wait_until_up, WaitArgs, Waited};
use crate::error::CliError;
use crate::output::{note, print_json, print_table, sanitize, say};
use anyhow::Result;
use caas_api::checks::{
    format_duration, parse_duration, AppSettings, Check, CheckKind, CheckSource, CheckTarget,
    ChecksChange, ChecksUpdate, SettingsUpdate, SettingsView, Strategy, SETTINGS,
};
use caas_api::App;
use clap::Args;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    json: JsonArg,
}

// Values are taken as text and checked here, so that `--timeout -2s` or `--kind ready` gets
// one line saying what is wrong (and exit 2), as every bad input does.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The process type to check (only web instances listen on $PORT)
    process: String,
    /// The path to GET on the instance, e.g. /health
    #[arg(long, allow_hyphen_values = true)]
    path: String,
    /// startup (gates "up"), readiness (out of the routes while failing) or liveness (replaced)
    #[arg(long, default_value = "startup", allow_hyphen_values = true)]
    kind: String,
    /// How long one try may take
    #[arg(long, default_value = "2s", allow_hyphen_values = true)]
    timeout: String,
    /// Time between tries
    #[arg(long, default_value = "2s", allow_hyphen_values = true)]
    interval: String,
    /// Failed tries in a row that count as failing
    #[arg(long, default_value = "5", allow_hyphen_values = true)]
    attempts: String,
    /// Time after the instance starts before the first try
    #[arg(long, default_value = "0s", allow_hyphen_values = true)]
    wait: String,
    /// Text the answer's body must contain
    #[arg(long, allow_hyphen_values = true)]
    content: Option<String>,
    /// The status that passes [default: any 2xx or 3xx]
    #[arg(long, allow_hyphen_values = true)]
    status: Option<String>,
    /// Liveness only: recreate (restart it), none (only report it) or keep=N (replace it while
    /// N others are up) [default: recreate]
    #[arg(long, allow_hyphen_values = true)]
    strategy: Option<String>,
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    wait_args: WaitArgs,
}

#[derive(Debug, Args)]
pub struct ClearArgs {
    /// The process type whose checks go
    process: String,
    /// Only this kind's check [default: every kind]
    #[arg(long, allow_hyphen_values = true)]
    kind: Option<String>,
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    wait_args: WaitArgs,
}

fn usage(message: String) -> CliError {
    CliError::usage(sanitize(&message))
}

fn ms(what: &str, text: &str) -> Result<u64, CliError> {
    let d = parse_duration(what, text).map_err(usage)?;
    Ok(d.as_millis().min(u128::from(u64::MAX)) as u64)
}

impl SetArgs {
    /// The check these arguments describe, or the one line saying what is wrong with them.
    fn check(&self) -> Result<Check, CliError> {
        let kind: CheckKind = self.kind.parse().map_err(usage)?;
        let mut c = Check::new(&self.process, kind, &self.path);
        c.timeout_ms = ms("timeout", &self.timeout)?;
        c.interval_ms = ms("interval", &self.interval)?;
        c.wait_ms = ms("wait", &self.wait)?;
        c.attempts = self.attempts.parse().map_err(|_| {
            usage(format!(
                "invalid attempts {:?}: use a whole number from 1 to 100",
                self.attempts
            ))
        })?;
        c.content = self.content.clone();
        c.status = self
            .status
            .as_deref()
            .map(|s| {
                s.parse::<u16>().map_err(|_| {
                    usage(format!(
                        "invalid status {s:?}: use an HTTP status from 100 to 599"
                    ))
                })
            })
            .transpose()?;
        c.strategy = self
            .strategy
            .as_deref()
            .map(|s| s.parse::<Strategy>().map_err(usage))
            .transpose()?;
        c.validate().map_err(usage)?;
        Ok(c)
    }
}

pub fn list(args: ListArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let checks: Vec<Check> = client()?.get(&format!("/v1/apps/{name}/checks"))?;
    if args.json.json {
        return print_json(&checks);
    }
    if checks.is_empty() {
        return say(&format!(
            "{name} has no health checks: a web instance is up once it accepts a connection on $PORT. Add one with: caas checks:set web --path /health -a {name}"
        ));
    }
    let d = |ms: u64| format_duration(Duration::from_millis(ms));
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            vec![
                c.process.clone(),
                c.kind.to_string(),
                sanitize(&c.expects()),
                d(c.timeout_ms),
                d(c.interval_ms),
                c.attempts.to_string(),
                d(c.wait_ms),
                match (c.kind, c.strategy) {
                    (CheckKind::Liveness, s) => s.unwrap_or_default().to_string(),
                    _ => "-".into(),
                },
                match c.source {
                    CheckSource::Cli => "cli".into(),
                    CheckSource::AppJson => "app.json".into(),
                },
            ]
        })
        .collect();
    print_table(
        &[
            "PROCESS", "KIND", "CHECK", "TIMEOUT", "INTERVAL", "ATTEMPTS", "WAIT", "STRATEGY",
            "FROM",
        ],
        &rows,
    )
}

/// Sends a change of checks and waits for the release it makes, like a config change.
fn change(
    client: &Client,
    app: &str,
    what: &str,
    req: &ChecksUpdate,
    wait: &WaitArgs,
) -> Result<()> {
    let result: ChecksChange = client.patch(&format!("/v1/apps/{app}/checks"), req)?;
    if !result.changed {
        return say(&format!("No change: {app} already has that"));
    }
    let Some(version) = result.release else {
        return say(&format!(
            "{what} on {app}... done (no release yet: the first deploy uses it)"
        ));
    };
    let Some(timeout) = wait.timeout() else {
        return say(&format!("{what} on {app}... v{version} deploying"));
    };
    if let Waited::Superseded(newer) = wait_until_up(client, app, version, timeout)? {
        note(&format!(
            "v{version} was replaced by v{newer} before it came up; caas releases -a {app} shows how v{newer} goes"
        ));
        return Ok(());
    }
    let a: App = client.get(&format!("/v1/apps/{app}"))?;
    if a.formation.values().any(|n| *n > 0) {
        say(&format!("{what} and restarting {app}... done, v{version}"))
    } else {
        say(&format!(
            "{what} on {app}... done, v{version} (nothing runs: every process type is scaled to 0)"
        ))
    }
}

pub fn set(args: SetArgs) -> Result<()> {
    // The arguments are checked before the app is looked for: a typo fails without a request.
    let check = args.check()?;
    let app = resolve_app(args.app.app.clone())?;
    let what = format!("Setting {}'s {} check", check.process, check.kind);
    let req = ChecksUpdate {
        set: vec![check],
        clear: vec![],
    };
    change(&client()?, &app, &what, &req, &args.wait_args)
}

pub fn clear(args: ClearArgs) -> Result<()> {
    caas_api::validate_process_type(&args.process)
        .map_err(|e| CliError::usage(sanitize(&e.to_string())))?;
    let kind: Option<CheckKind> = args
        .kind
        .as_deref()
        .map(|k| k.parse().map_err(usage))
        .transpose()?;
    let app = resolve_app(args.app.app)?;
    let what = match kind {
        Some(k) => format!("Clearing {}'s {k} check", args.process),
        None => format!("Clearing {}'s checks", args.process),
    };
    let req = ChecksUpdate {
        set: vec![],
        clear: vec![CheckTarget {
            process: args.process.clone(),
            kind,
        }],
    };
    change(&client()?, &app, &what, &req, &args.wait_args)
}

// ---------------------------------------------------------------------------------------------
// apps:settings
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Args)]
pub struct SettingsArgs {
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
pub struct SettingsSetArgs {
    /// KEY=VALUE pairs: drain=60s, stop-timeout=20s, min-up=5s, max-surge=2, max-unavailable=25%
    #[arg(required = true, value_name = "KEY=VALUE")]
    pairs: Vec<String>,
    #[command(flatten)]
    app: AppArg,
}

#[derive(Debug, Args)]
pub struct SettingsUnsetArgs {
    /// The settings to put back to the server's defaults
    #[arg(required = true, value_name = "KEY")]
    keys: Vec<String>,
    #[command(flatten)]
    app: AppArg,
}

/// Checks a change of settings as the server would (same rules, same messages), so a typo needs
/// no request.
fn check_settings(values: &BTreeMap<String, Option<String>>) -> Result<(), CliError> {
    let mut s = AppSettings::default();
    for (k, v) in values {
        s.apply(k, v.as_deref()).map_err(usage)?;
    }
    Ok(())
}

fn show_settings(view: &SettingsView) -> Result<()> {
    let rows: Vec<Vec<String>> = SETTINGS
        .iter()
        .map(|(key, what)| {
            let (value, from) = match view.settings.show(key) {
                Some(v) => (v, "set"),
                None => (
                    view.defaults.show(key).unwrap_or_else(|| "-".into()),
                    "default",
                ),
            };
            vec![key.to_string(), value, from.to_string(), what.to_string()]
        })
        .collect();
    print_table(&["SETTING", "VALUE", "", "WHAT IT DOES"], &rows)
}

pub fn settings(args: SettingsArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let view: SettingsView = client()?.get(&format!("/v1/apps/{name}/settings"))?;
    if args.json.json {
        return print_json(&view);
    }
    show_settings(&view)
}

fn send_settings(app: &str, values: BTreeMap<String, Option<String>>) -> Result<()> {
    check_settings(&values)?;
    let view: SettingsView = client()?.patch(
        &format!("/v1/apps/{app}/settings"),
        &SettingsUpdate { values },
    )?;
    show_settings(&view)
}

pub fn settings_set(args: SettingsSetArgs) -> Result<()> {
    let mut values = BTreeMap::new();
    for pair in &args.pairs {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(usage(format!(
                "invalid argument {pair:?}: use KEY=VALUE, e.g. drain=60s"
            ))
            .into());
        };
        values.insert(k.to_string(), Some(v.to_string()));
    }
    check_settings(&values)?;
    let app = resolve_app(args.app.app)?;
    send_settings(&app, values)
}

pub fn settings_unset(args: SettingsUnsetArgs) -> Result<()> {
    let values = args.keys.iter().map(|k| (k.clone(), None)).collect();
    check_settings(&values)?;
    let app = resolve_app(args.app.app)?;
    send_settings(&app, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_args(extra: &[&str]) -> SetArgs {
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            a: SetArgs,
        }
        let args = ["caas", "web", "--path", "/health"]
            .iter()
            .chain(extra.iter())
            .copied();
        <Wrap as clap::Parser>::try_parse_from(args).unwrap().a
    }

    #[test]
    fn a_check_from_flags_with_defaults_and_units() {
        let c = set_args(&[]).check().unwrap();
        assert_eq!(
            (c.kind, c.timeout_ms, c.interval_ms, c.attempts, c.wait_ms),
            (CheckKind::Startup, 2000, 2000, 5, 0)
        );
        let c = set_args(&[
            "--kind",
            "liveness",
            "--timeout",
            "500ms",
            "--interval",
            "10s",
            "--attempts",
            "3",
            "--wait",
            "1m",
            "--content",
            "ok",
            "--status",
            "200",
            "--strategy",
            "keep=2",
        ])
        .check()
        .unwrap();
        assert_eq!(
            (c.kind, c.timeout_ms, c.interval_ms, c.attempts, c.wait_ms),
            (CheckKind::Liveness, 500, 10_000, 3, 60_000)
        );
        assert_eq!(
            (c.content.as_deref(), c.status, c.strategy),
            (Some("ok"), Some(200), Some(Strategy::Keep(2)))
        );
    }

    #[test]
    fn bad_flags_are_one_line_and_exit_2() {
        for (extra, want) in [
            (&["--kind", "ready"][..], "unknown check kind \"ready\""),
            (&["--timeout", "-2s"], "invalid timeout \"-2s\""),
            (&["--interval", "0s"], "invalid interval 0s: use 1s to 5m"),
            (&["--wait", "2h"], "invalid wait 2h: use 0s to 10m"),
            (&["--attempts", "-1"], "invalid attempts \"-1\""),
            (&["--attempts", "0"], "invalid attempts 0"),
            (&["--status", "9999"], "invalid status 9999"),
            (&["--status", "ok"], "invalid status \"ok\""),
            (
                &["--strategy", "keep=2"],
                "a strategy is for liveness checks only",
            ),
        ] {
            let err = set_args(extra).check().unwrap_err();
            assert_eq!(err.exit_code(), 2, "{extra:?}");
            let text = err.to_string();
            assert!(text.starts_with(want), "{extra:?}: {text}");
            assert!(!text.contains('\n'), "{text}");
        }
    }
}
