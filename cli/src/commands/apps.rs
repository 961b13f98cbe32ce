//! `apps`, `apps:create`, `apps:info`, `apps:destroy`.

use super::{client, AppArg, JsonArg};
use crate::app::{check_app_name, resolve_app};
use crate::error::CliError;
use crate::output::{age, format_ts, print_json, print_table, sanitize, say};
use anyhow::Result;
use caas_api::{App, CreateApp, ErrorCode};
use clap::Args;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of the new app: 3 to 30 lowercase letters, digits and dashes, starting with a letter
    /// and not ending with a dash [default: a free name such as calm-river-4821]
    name: Option<String>,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The app to show (or -a APP)
    #[arg(value_name = "APP", conflicts_with = "app")]
    name: Option<String>,
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// The app to destroy (or -a APP)
    #[arg(value_name = "APP", conflicts_with = "app")]
    name: Option<String>,
    #[command(flatten)]
    app: AppArg,
    /// The app's name again, to confirm
    #[arg(long, value_name = "APP")]
    confirm: Option<String>,
}

pub fn list(args: ListArgs) -> Result<()> {
    let apps: Vec<App> = client()?.get("/v1/apps")?;
    if args.json.json {
        return print_json(&apps);
    }
    if apps.is_empty() {
        return say("No apps yet. Create one with: caas apps:create NAME");
    }
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                release_label(a.release),
                instance_count(&a.formation).to_string(),
                a.url.clone(),
            ]
        })
        .collect();
    print_table(&["NAME", "RELEASE", "INSTANCES", "URL"], &rows)
}

pub fn create(args: CreateArgs) -> Result<()> {
    if let Some(name) = &args.name {
        check_app_name(name)?;
    }
    let client = client()?;
    let post = |name: &str| -> Result<App> {
        client.post(
            "/v1/apps",
            &CreateApp {
                name: name.to_string(),
            },
        )
    };
    let app = match &args.name {
        Some(name) => post(name)?,
        None => create_with_picked_name(post, random_u64)?,
    };
    say(&sanitize(&format!("Created {}: {}", app.name, app.url)))
}

/// How many picked names are tried before a conflict is reported. With some 2,300 word pairs
/// times 9,000 numbers, a second clash in a row already means something else is wrong.
const NAME_ATTEMPTS: usize = 5;

/// Creates an app under a picked name, picking another when the server says it is taken.
fn create_with_picked_name(
    mut create: impl FnMut(&str) -> Result<App>,
    mut random: impl FnMut() -> u64,
) -> Result<App> {
    let mut attempt = 1;
    loop {
        match create(&picked_name(random())) {
            Err(e) if attempt < NAME_ATTEMPTS && is_conflict(&e) => attempt += 1,
            result => return result,
        }
    }
}

fn is_conflict(err: &anyhow::Error) -> bool {
    err.downcast_ref::<CliError>()
        .is_some_and(|e| e.api_code() == Some(ErrorCode::Conflict))
}

const ADJECTIVES: &[&str] = &[
    "amber", "ancient", "autumn", "bold", "brave", "bright", "calm", "clever", "cosmic", "crimson",
    "curious", "dapper", "eager", "fancy", "gentle", "golden", "happy", "hidden", "humble", "icy",
    "jolly", "lively", "lucky", "mellow", "misty", "nimble", "noble", "polished", "proud", "quiet",
    "rapid", "rustic", "shiny", "silent", "silver", "snowy", "solar", "steady", "sunny", "swift",
    "tidy", "vast", "velvet", "vivid", "warm", "wild", "witty",
];

const NOUNS: &[&str] = &[
    "anchor", "aspen", "badger", "beacon", "breeze", "brook", "canyon", "cedar", "comet", "coral",
    "cove", "dawn", "delta", "falcon", "fern", "fjord", "forest", "glacier", "grove", "harbor",
    "heron", "island", "lagoon", "lake", "lantern", "maple", "meadow", "mesa", "meteor", "moon",
    "otter", "owl", "pebble", "pine", "planet", "prairie", "raven", "reef", "ridge", "river",
    "shore", "sparrow", "spruce", "star", "stream", "summit", "tundra", "valley", "willow",
];

/// `adjective-noun-NNNN`, Heroku style, from one random number. Every word list entry is short
/// enough that the result keeps to the app-name rule (a test checks them all).
fn picked_name(random: u64) -> String {
    let (a, n) = (ADJECTIVES.len() as u64, NOUNS.len() as u64);
    let adjective = ADJECTIVES[(random % a) as usize];
    let noun = NOUNS[(random / a % n) as usize];
    let number = 1000 + random / a / n % 9000;
    format!("{adjective}-{noun}-{number}")
}

/// A name only has to be unlikely to be taken, not secret: std's `RandomState` is seeded from the
/// operating system, which spares a dependency on a random number crate.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    hasher.write_u128(now.map_or(0, |d| d.as_nanos()));
    hasher.finish()
}

pub fn info(args: InfoArgs) -> Result<()> {
    let name = resolve_app(args.name.or(args.app.app))?;
    let app: App = client()?.get(&format!("/v1/apps/{name}"))?;
    if args.json.json {
        return print_json(&app);
    }
    let mut lines = vec![
        format!("=== {}", app.name),
        format!("URL:        {}", app.url),
        format!("Release:    {}", release_line(&app)),
        format!("Formation:  {}", formation_label(&app.formation)),
    ];
    if let Some(pack) = &app.buildpack {
        lines.push(format!("Buildpack:  {pack}"));
    }
    lines.push(format!(
        "Created:    {} ({} ago)",
        format_ts(app.created_at),
        age(app.created_at)
    ));
    let text: Vec<String> = lines.iter().map(|l| sanitize(l)).collect();
    say(&text.join("\n"))
}

pub fn destroy(args: DestroyArgs) -> Result<()> {
    let name = resolve_app(args.name.or(args.app.app))?;
    if args.confirm.as_deref() != Some(name.as_str()) {
        return Err(CliError::usage(format!(
            "this destroys {name} and all its releases; pass --confirm {name}"
        ))
        .into());
    }
    client()?.delete(&format!("/v1/apps/{name}"))?;
    say(&format!("Destroyed {name}"))
}

pub fn release_label(release: Option<u64>) -> String {
    release.map_or_else(|| "-".to_string(), |v| format!("v{v}"))
}

/// `v1`, `v1 (v2 deploying)`, `none (v1 deploying)`, `none`: what serves, and what is on its way.
fn release_line(app: &App) -> String {
    let serving = app
        .release
        .map_or_else(|| "none".to_string(), |v| format!("v{v}"));
    match app.deploying {
        Some(v) => format!("{serving} (v{v} deploying)"),
        None => serving,
    }
}

fn instance_count(formation: &BTreeMap<String, u32>) -> u64 {
    formation.values().map(|n| u64::from(*n)).sum()
}

/// `web=2 worker=1`, or `none`.
pub fn formation_label(formation: &BTreeMap<String, u32>) -> String {
    if formation.is_empty() {
        return "none".to_string();
    }
    formation
        .iter()
        .map(|(process, n)| format!("{process}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use caas_api::Timestamp;

    fn app(release: Option<u64>, deploying: Option<u64>) -> App {
        App {
            name: "demo".into(),
            created_at: Timestamp::from_millis(0),
            url: "http://demo.localhost:8080".into(),
            release,
            deploying,
            formation: BTreeMap::new(),
            buildpack: None,
        }
    }

    #[test]
    fn the_release_line_shows_what_serves_and_what_deploys() {
        assert_eq!(release_line(&app(Some(1), None)), "v1");
        assert_eq!(release_line(&app(Some(1), Some(2))), "v1 (v2 deploying)");
        assert_eq!(release_line(&app(None, Some(1))), "none (v1 deploying)");
        assert_eq!(release_line(&app(None, None)), "none");
    }

    #[test]
    fn picked_names_keep_to_the_app_name_rule() {
        for a in ADJECTIVES {
            for n in NOUNS {
                for number in ["1000", "9999"] {
                    let name = format!("{a}-{n}-{number}");
                    check_app_name(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
                }
            }
        }
        for r in [0, 1, 12345, u64::MAX / 3, u64::MAX] {
            let name = picked_name(r);
            check_app_name(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
            let number: u32 = name.rsplit('-').next().unwrap().parse().unwrap();
            assert!((1000..=9999).contains(&number), "{name}");
        }
        assert_ne!(picked_name(random_u64()), picked_name(random_u64()));
    }

    fn conflict() -> anyhow::Error {
        CliError::Api {
            status: 409,
            code: Some(ErrorCode::Conflict),
            message: "taken".into(),
        }
        .into()
    }

    #[test]
    fn a_taken_picked_name_is_replaced_by_another() {
        let mut tried = Vec::new();
        let mut randoms = [7u64, 8, 9].into_iter();
        let created = create_with_picked_name(
            |name| {
                tried.push(name.to_string());
                if tried.len() < 3 {
                    return Err(conflict());
                }
                Ok(App {
                    name: name.into(),
                    ..app(None, None)
                })
            },
            || randoms.next().unwrap(),
        )
        .unwrap();
        assert_eq!(tried, [picked_name(7), picked_name(8), picked_name(9)]);
        assert_eq!(created.name, picked_name(9));
    }

    #[test]
    fn picking_gives_up_after_a_few_conflicts_and_on_other_errors_at_once() {
        let mut calls = 0;
        let err = create_with_picked_name(
            |_| {
                calls += 1;
                Err(conflict())
            },
            || 1,
        )
        .unwrap_err();
        assert_eq!(calls, NAME_ATTEMPTS);
        assert!(is_conflict(&err));

        let mut calls = 0;
        create_with_picked_name(
            |_| {
                calls += 1;
                Err(CliError::Unreachable("down".into()).into())
            },
            || 1,
        )
        .unwrap_err();
        assert_eq!(calls, 1);
    }
}

#[derive(Debug, Args)]
pub struct OpenArgs {
    #[command(flatten)]
    app: AppArg,
}

/// `caas open`: the app's URL in a browser: `$BROWSER` (a command, given the URL), else
/// `xdg-open` (or `open` on macOS). Without any, it prints the URL to open by hand.
pub fn open(args: OpenArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let app: App = client()?.get(&format!("/v1/apps/{name}"))?;
    let url = app.url;
    let mut openers: Vec<String> = Vec::new();
    if let Some(browser) = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty())
    {
        openers.push(browser);
    }
    openers.push(
        if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        }
        .into(),
    );
    for opener in &openers {
        let mut words = opener.split_whitespace();
        let Some(program) = words.next() else {
            continue;
        };
        let spawned = std::process::Command::new(program)
            .args(words)
            .arg(&url)
            .stdin(std::process::Stdio::null())
            .status();
        if let Ok(status) = spawned {
            if status.success() {
                return say(&format!("Opening {}", sanitize(&url)));
            }
        }
    }
    say(&format!(
        "No browser to open it with (set BROWSER); the app is at {}",
        sanitize(&url)
    ))
}
