//! `config`, `config:get`, `config:set`, `config:unset`: an app's config vars, with Heroku's
//! names and output. Values are never printed by the commands that change them.

use super::{client, AppArg, JsonArg};
use crate::app::resolve_app;
use crate::client::Client;
use crate::deploy::{wait_until_up, WaitArgs, Waited};
use crate::error::CliError;
use crate::output::{note, print_json, sanitize, say, stdout_is_term};
use anyhow::Result;
use caas_api::{App, ConfigChange, ConfigEvent, ConfigUpdate};
use clap::Args;
use std::collections::BTreeMap;
use std::io::Write;

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The config var to print
    key: String,
    #[command(flatten)]
    app: AppArg,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// KEY=VALUE pairs; the value is everything after the first '=' and may be empty
    #[arg(required = true, value_name = "KEY=VALUE")]
    pairs: Vec<String>,
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct UnsetArgs {
    /// The config vars to remove
    #[arg(required = true, value_name = "KEY")]
    keys: Vec<String>,
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    wait: WaitArgs,
}

type Vars = BTreeMap<String, String>;

fn fetch(app: &str) -> Result<Vars> {
    client()?.get(&format!("/v1/apps/{app}/config"))
}

pub fn show(args: ShowArgs) -> Result<()> {
    let app = resolve_app(args.app.app)?;
    let vars = fetch(&app)?;
    if args.json.json {
        return print_json(&vars);
    }
    let text = render_config(&app, &vars, stdout_is_term());
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `KEY: value` lines with the values aligned, as Heroku prints them; the `=== APP Config Vars`
/// header only for a person at a terminal. A value's newlines show as `\n`, so one var is one
/// line; other control characters are removed.
pub fn render_config(app: &str, vars: &Vars, header: bool) -> String {
    if vars.is_empty() {
        return format!("{app} has no config vars.\n");
    }
    let mut out = String::new();
    if header {
        out.push_str(&format!("=== {app} Config Vars\n"));
    }
    let keys: Vec<String> = vars.keys().map(|k| sanitize(k)).collect();
    let width = keys.iter().map(|k| k.chars().count()).max().unwrap_or(0) + 1;
    for (key, value) in keys.iter().zip(vars.values()) {
        let label = format!("{key}:");
        let value = sanitize(&value.replace('\n', "\\n"));
        if value.is_empty() {
            // No padding after the colon: lines carry no trailing spaces.
            out.push_str(&format!("{label}\n"));
        } else {
            out.push_str(&format!("{label:<width$} {value}\n"));
        }
    }
    out
}

pub fn get(args: GetArgs) -> Result<()> {
    let app = resolve_app(args.app.app)?;
    let vars = fetch(&app)?;
    let Some(value) = vars.get(&args.key) else {
        return Err(
            CliError::NotFound(format!("{app} has no config var {}", sanitize(&args.key))).into(),
        );
    };
    // Raw for scripts (`$(caas config:get KEY)`); on a terminal, without control characters
    // other than newlines and tabs.
    let value = if stdout_is_term() {
        value
            .split('\n')
            .map(sanitize)
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        value.clone()
    };
    let mut out = std::io::stdout().lock();
    out.write_all(value.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// `KEY=VALUE` arguments, split at the first `=`, keys checked with the server's rule. Later
/// pairs win over earlier ones for the same key.
pub fn parse_pairs(args: &[String]) -> Result<Vec<(String, String)>, CliError> {
    args.iter()
        .map(|arg| {
            let Some((key, value)) = arg.split_once('=') else {
                return Err(CliError::usage(format!(
                    "invalid argument {:?}: use KEY=VALUE",
                    sanitize(arg)
                )));
            };
            check_key(key)?;
            Ok((key.to_string(), value.to_string()))
        })
        .collect()
}

fn check_key(key: &str) -> Result<(), CliError> {
    caas_api::validate_config_key(key).map_err(|e| CliError::usage(sanitize(&e.to_string())))
}

/// `A`, `A and B`, `A, B and C`: each key once, in the order given.
fn key_list<'a>(keys: impl IntoIterator<Item = &'a str>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for key in keys {
        if !seen.contains(&key) {
            seen.push(key);
        }
    }
    match seen.split_last() {
        None => String::new(),
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// Sends the change and follows it: the release phase's lines (when the app has one, which the
/// server runs before recording the release) go to stderr as they come.
fn send(
    client: &Client,
    app: &str,
    vars: BTreeMap<String, Option<String>>,
) -> Result<ConfigChange> {
    let resp = client.patch_events(&format!("/v1/apps/{app}/config"), &ConfigUpdate { vars })?;
    let events = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-ndjson"));
    if !events {
        // A server from before the events answers the change itself.
        let bytes = resp.bytes().map_err(|e| client.failed_transport(e))?;
        return serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("the server's answer to a config change: {e}"));
    }
    follow(resp, app, &mut std::io::stderr())
}

/// Reads a config change's [`ConfigEvent`]s: lines to `out` as they come, then the outcome; a
/// stream that stops before it is a failure (exit 1) that says where to look.
fn follow(stream: impl std::io::Read, app: &str, out: &mut impl Write) -> Result<ConfigChange> {
    let broke = || {
        CliError::Failed(format!(
            "the connection to the server broke during the config change; caas releases -a \
             {app} shows whether it was made"
        ))
    };
    crate::events::follow(stream, "config change", broke, |event| match event {
        ConfigEvent::Line { text } => {
            writeln!(out, "{}", sanitize(&text))?;
            out.flush()?;
            Ok(None)
        }
        ConfigEvent::Done { change } => Ok(Some(change)),
        ConfigEvent::Failed { status, error } => {
            let status = reqwest::StatusCode::from_u16(status)
                .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR);
            let body = serde_json::to_vec(&error)?;
            Err(crate::client::api_error(status, &body).into())
        }
    })
}

/// Whether a config change is about to set or unset vars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Set,
    Unset,
}

/// The one line a config change ends with, Heroku's `Setting KEYS and restarting APP... done,
/// vN`, said only once it is true: after the new release is up, and without "restarting" when
/// nothing runs. `runs` is whether the app wants any instance.
fn outcome(verb: Verb, keys: &str, app: &str, change: &ConfigChange, runs: bool) -> String {
    let (ing, many) = match verb {
        Verb::Set => ("Setting", keys.contains(" and ")),
        Verb::Unset => ("Unsetting", keys.contains(" and ")),
    };
    if !change.changed {
        return match (verb, many) {
            (Verb::Set, false) => format!("No change: {keys} already has that value on {app}"),
            (Verb::Set, true) => format!("No change: {keys} already have those values on {app}"),
            (Verb::Unset, false) => format!("No change: {keys} is not set on {app}"),
            (Verb::Unset, true) => format!("No change: {keys} are not set on {app}"),
        };
    }
    match change.release {
        None => format!("{ing} {keys} on {app}... done (no release yet: the first deploy uses it)"),
        Some(v) if runs => format!("{ing} {keys} and restarting {app}... done, v{v}"),
        Some(v) => format!(
            "{ing} {keys} on {app}... done, v{v} (nothing runs: every process type is scaled to 0)"
        ),
    }
}

fn change(
    verb: Verb,
    app: &str,
    keys: &str,
    vars: BTreeMap<String, Option<String>>,
    wait: &WaitArgs,
) -> Result<()> {
    let client = client()?;
    let result = send(&client, app, vars)?;
    if let (true, Some(version), Some(timeout)) = (result.changed, result.release, wait.timeout()) {
        if let Waited::Superseded(newer) = wait_until_up(&client, app, version, timeout)? {
            note(&format!(
                "v{version} was replaced by v{newer} before it came up; caas releases -a {app} shows how v{newer} goes"
            ));
            return Ok(());
        }
    } else if let (true, Some(version)) = (result.changed, result.release) {
        return say(&format!(
            "{} {keys} on {app}... v{version} deploying",
            match verb {
                Verb::Set => "Setting",
                Verb::Unset => "Unsetting",
            }
        ));
    }
    let a: App = client.get(&format!("/v1/apps/{app}"))?;
    let runs = a.formation.values().any(|n| *n > 0);
    say(&outcome(verb, keys, app, &result, runs))
}

pub fn set(args: SetArgs) -> Result<()> {
    // The arguments are checked before the app is looked for: a typo fails without a request.
    let pairs = parse_pairs(&args.pairs)?;
    let app = resolve_app(args.app.app)?;
    let keys = key_list(pairs.iter().map(|(k, _)| k.as_str()));
    let vars = pairs.into_iter().map(|(k, v)| (k, Some(v))).collect();
    change(Verb::Set, &app, &keys, vars, &args.wait)
}

pub fn unset(args: UnsetArgs) -> Result<()> {
    for key in &args.keys {
        check_key(key)?;
    }
    let app = resolve_app(args.app.app)?;
    let keys = key_list(args.keys.iter().map(String::as_str));
    let vars = args.keys.iter().map(|k| (k.clone(), None)).collect();
    change(Verb::Unset, &app, &keys, vars, &args.wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(args: &[&str]) -> Result<Vec<(String, String)>, CliError> {
        parse_pairs(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn splits_at_the_first_equals_sign() {
        assert_eq!(
            pairs(&[
                "A=1",
                "URL=postgres://u:p@h/db?sslmode=require&x=y",
                "GREETING=hello world",
                "CERT=-----BEGIN-----\nabc==\n-----END-----\n",
                "EMPTY=",
                "EQ==",
                "_lower_ok9=x",
            ])
            .unwrap(),
            vec![
                pair("A", "1"),
                pair("URL", "postgres://u:p@h/db?sslmode=require&x=y"),
                pair("GREETING", "hello world"),
                pair("CERT", "-----BEGIN-----\nabc==\n-----END-----\n"),
                pair("EMPTY", ""),
                pair("EQ", "="),
                pair("_lower_ok9", "x"),
            ]
        );
    }

    #[test]
    fn a_pair_without_equals_is_a_usage_error() {
        let err = pairs(&["A=1", "FOO"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(err.to_string(), "invalid argument \"FOO\": use KEY=VALUE");
    }

    #[test]
    fn bad_keys_are_refused_with_the_servers_message() {
        for (arg, key) in [
            ("=x", ""),
            ("1A=x", "1A"),
            ("A-B=x", "A-B"),
            ("A B=x", "A B"),
            ("PORT=1", "PORT"),
            ("CAAS_APP=x", "CAAS_APP"),
        ] {
            let err = pairs(&[arg]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{arg}");
            let want = caas_api::validate_config_key(key).unwrap_err().to_string();
            assert_eq!(err.to_string(), want, "{arg}");
        }
    }

    #[test]
    fn key_lists_read_like_heroku() {
        assert_eq!(key_list(["A"]), "A");
        assert_eq!(key_list(["A", "B"]), "A and B");
        assert_eq!(key_list(["A", "B", "C"]), "A, B and C");
        assert_eq!(key_list(["B", "A", "B"]), "B and A");
    }

    #[test]
    fn a_change_streams_its_release_phase_then_its_outcome() {
        let stream = concat!(
            r#"{"type":"line","text":"migrating\u001b[2J"}"#,
            "\n",
            r#"{"type":"newer","x":1}"#,
            "\n",
            r#"{"type":"done","change":{"config":{"A":"1"},"release":4,"changed":true}}"#,
            "\n"
        );
        let mut out = Vec::new();
        let change = follow(stream.as_bytes(), "demo", &mut out).unwrap();
        assert_eq!(change.release, Some(4));
        assert_eq!(String::from_utf8(out).unwrap(), "migrating[2J\n");

        let failed = concat!(
            r#"{"type":"line","text":"boom"}"#,
            "\n",
            r#"{"type":"failed","status":409,"error":{"code":"conflict","message":"busy"}}"#,
            "\n"
        );
        let err = follow(failed.as_bytes(), "demo", &mut Vec::new()).unwrap_err();
        let cli = err.downcast_ref::<CliError>().unwrap();
        assert_eq!(cli.exit_code(), 5, "{cli}");
        assert!(cli.to_string().contains("busy"), "{cli}");

        for cut in ["", r#"{"type":"line","text":"a"}"#, r#"{"type":"li"#] {
            let err = follow(cut.as_bytes(), "demo", &mut Vec::new()).unwrap_err();
            let cli = err.downcast_ref::<CliError>().unwrap();
            assert_eq!(cli.exit_code(), 1, "{cut:?}");
            assert!(cli.to_string().contains("caas releases -a demo"), "{cli}");
        }
    }

    #[test]
    fn the_last_line_says_what_happened() {
        let change = |release, changed| ConfigChange {
            config: Vars::new(),
            release,
            changed,
        };
        assert_eq!(
            outcome(Verb::Set, "A", "demo", &change(Some(7), true), true),
            "Setting A and restarting demo... done, v7"
        );
        assert_eq!(
            outcome(Verb::Unset, "A and B", "demo", &change(Some(7), true), false),
            "Unsetting A and B on demo... done, v7 (nothing runs: every process type is scaled to 0)"
        );
        assert_eq!(
            outcome(Verb::Set, "A", "demo", &change(None, true), true),
            "Setting A on demo... done (no release yet: the first deploy uses it)"
        );
        assert_eq!(
            outcome(Verb::Set, "A", "demo", &change(None, false), true),
            "No change: A already has that value on demo"
        );
        assert_eq!(
            outcome(Verb::Unset, "A and B", "demo", &change(None, false), true),
            "No change: A and B are not set on demo"
        );
    }

    #[test]
    fn renders_aligned_with_newlines_escaped() {
        let vars: Vars = [
            ("A", "1"),
            ("GREETING", "hello world"),
            ("MULTI", "one\ntwo\r\x1b[2J"),
            ("EMPTY", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            render_config("demo", &vars, false),
            "A:        1\nEMPTY:\nGREETING: hello world\nMULTI:    one\\ntwo[2J\n"
        );
        assert!(render_config("demo", &vars, true).starts_with("=== demo Config Vars\nA:  "));
        assert_eq!(
            render_config("demo", &Vars::new(), true),
            "demo has no config vars.\n"
        );
    }
}
