//! `ps` and `ps:scale`: an app's instances and how many of each process type it should run.

use super::apps::formation_label;
use super::{client, AppArg, JsonArg};
use crate::app::resolve_app;
use crate::error::CliError;
use crate::output::{age, format_mb, print_json, print_table, sanitize, say};
use anyhow::Result;
use caas_api::{App, Formation, Instance, InstanceState, Release, ScaleRequest, WEB};
use clap::Args;
use std::collections::BTreeMap;

#[derive(Debug, Args)]
pub struct PsArgs {
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// TYPE=COUNT to set, TYPE+N or TYPE-N to change by N, e.g. web=3 worker+1; without any,
    /// show how many of each type the app runs
    // Negative numbers are let through so `-1` gets our message rather than clap's "unexpected
    // argument". (allow_hyphen_values would also swallow a following `-a APP` as a pair.)
    #[arg(value_name = "TYPE=COUNT", allow_negative_numbers = true)]
    pairs: Vec<String>,
    #[command(flatten)]
    app: AppArg,
}

pub fn list(args: PsArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let client = client()?;
    let instances: Vec<Instance> = client.get(&format!("/v1/apps/{name}/ps"))?;
    if args.json.json {
        return print_json(&instances);
    }
    if instances.is_empty() {
        let app: App = client.get(&format!("/v1/apps/{name}"))?;
        let mut text = no_instances(&app);
        if app.release.is_none() && app.deploying.is_none() {
            // Never served: say so of a release that failed, rather than "no release yet".
            let releases: Vec<Release> = client.get(&format!("/v1/apps/{name}/releases"))?;
            if let Some(failed) = releases.first() {
                text = never_served(&app.name, failed);
            }
        }
        return say(&sanitize(&text));
    }
    if let Some(c) = super::canary::running(&client, &name)? {
        super::canary::print_side_by_side(&c)?;
    }
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                format!("v{}", i.release),
                i.state.as_str().to_string(),
                Some(i.host.clone())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "-".to_string()),
                i.address.clone().unwrap_or_else(|| "-".to_string()),
                age(i.since),
                i.restarts.to_string(),
                format_mb(i.memory_mb),
                i.cpus.map_or_else(|| "-".to_string(), |c| format!("{c}")),
            ]
        })
        .collect();
    print_table(
        &[
            "INSTANCE", "RELEASE", "STATE", "HOST", "ADDRESS", "AGE", "RESTARTS", "MEMORY", "CPU",
        ],
        &rows,
    )?;
    // Why an instance is not up: why it has no host, or what its check saw last.
    for i in &instances {
        if let Some(reason) = &i.reason {
            say(&sanitize(&format!(
                "{} v{} {}: {reason}",
                i.name,
                i.release,
                i.state.as_str()
            )))?;
        } else if let (Some(check), false) = (&i.check, i.state == InstanceState::Up) {
            say(&sanitize(&format!(
                "{} v{} {}: {check}",
                i.name,
                i.release,
                i.state.as_str()
            )))?;
        }
    }
    Ok(())
}

/// What `ps` says of an app whose releases all failed (or were superseded) before serving.
fn never_served(name: &str, newest: &Release) -> String {
    let why = newest
        .error
        .as_deref()
        .map_or(String::new(), |e| format!(": {e}"));
    format!(
        "No instances: v{} of {name} did not come up{why}. Deploy again with: caas push -a {name} (caas releases -a {name} lists what failed)",
        newest.version
    )
}

/// What `ps` says instead of an empty table: why nothing runs, and the one thing to do about it.
/// Suggesting a scale-up is only right when the app is scaled to 0.
fn no_instances(app: &App) -> String {
    let name = &app.name;
    let wanted: BTreeMap<String, u32> = app
        .formation
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(process, n)| (process.clone(), *n))
        .collect();
    if app.release.is_none() && app.deploying.is_none() {
        return format!(
            "No instances: {name} has no release yet. Deploy one with: caas push -a {name}"
        );
    }
    if wanted.is_empty() {
        let process = match app.formation.keys().next() {
            Some(first) if !app.formation.contains_key(WEB) => first.as_str(),
            _ => WEB,
        };
        return format!(
            "No instances: {name} is scaled to 0. Scale up with: caas ps:scale {process}=1 -a {name}"
        );
    }
    let wanted = formation_label(&wanted);
    match app.deploying {
        Some(v) => format!(
            "No instances yet: v{v} is deploying ({wanted} wanted). If none appear, see why with: caas logs -a {name}"
        ),
        None => format!(
            "No instances, though {wanted} is wanted: none could be placed. See why with: caas logs -a {name}"
        ),
    }
}

pub fn scale(args: ScaleArgs) -> Result<()> {
    // Arguments first: a typo should not need a server, or an app, to be reported.
    let counts = parse_scale_args(&args.pairs)?;
    let name = resolve_app(args.app.app)?;
    let client = client()?;
    let path = format!("/v1/apps/{name}/formation");
    if counts.is_empty() {
        let formation: Formation = client.get(&path)?;
        if formation.quantities.is_empty() {
            return say(&format!(
                "{name} has no process types yet. Deploy with: caas push -a {name}"
            ));
        }
        return say(&formation_label(&formation.quantities));
    }
    let current = if counts.values().any(|c| matches!(c, Count::By(_))) {
        // Read, then set: the API has no increment. Two `web+1` at the same moment can both
        // read 1 and set 2, as two `web=2` would; the answer shows what was set.
        client.get::<Formation>(&path)?.quantities
    } else {
        BTreeMap::new()
    };
    let quantities = resolve_counts(&counts, &current)?;
    let formation: Formation = client.patch(
        &path,
        &ScaleRequest {
            quantities: quantities.clone(),
        },
    )?;
    let scaled: Vec<String> = quantities
        .keys()
        .map(|process| {
            let n = formation
                .quantities
                .get(process)
                .map_or(quantities[process], |n| i64::from(*n));
            format!("{process}={n}")
        })
        .collect();
    say(&format!("Scaled {name}: {}", scaled.join(" ")))?;
    if formation.pending.is_empty() {
        return Ok(());
    }
    // Recorded, but no host can take some of the new instances: fail now, saying why.
    let hint = formation
        .hint
        .map_or(String::new(), |h| format!("; to make room, {h}"));
    Err(CliError::Failed(sanitize(&format!(
        "{} cannot be placed ({}); it stays pending and starts when room appears{hint}",
        if formation.pending.len() == 1 {
            "an instance"
        } else {
            "instances"
        },
        formation.pending.join("; ")
    )))
    .into())
}

/// One scale argument's count: `web=3` sets, `web+1` and `web-1` change what is wanted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    To(i64),
    By(i64),
}

/// `web=3 worker+1` → {web: To(3), worker: By(1)}. Each bad argument is named in the error.
pub fn parse_scale_args(pairs: &[String]) -> Result<BTreeMap<String, Count>, CliError> {
    let mut counts = BTreeMap::new();
    for pair in pairs {
        let (process, sign, number) = match pair.split_once('=') {
            Some((process, number)) => (process, '=', number),
            None => split_relative(pair).ok_or_else(|| {
                CliError::usage(format!(
                    "invalid scale argument {pair:?}: use TYPE=COUNT, TYPE+N or TYPE-N, e.g. web=2 or web+1"
                ))
            })?,
        };
        caas_api::validate_process_type(process).map_err(|e| CliError::usage(e.to_string()))?;
        let n = whole_number(process, number)?;
        let count = match sign {
            '=' => Count::To(n),
            '-' => Count::By(-n),
            _ => Count::By(n),
        };
        if counts.insert(process.to_string(), count).is_some() {
            return Err(CliError::usage(format!(
                "{process} is given more than once: give each process type once"
            )));
        }
    }
    Ok(counts)
}

/// Digits only: Rust's parser would also take "+3" or "-1" after `=`, which is not a count anyone
/// types on purpose (`web+3` is how to say "3 more").
fn whole_number(process: &str, count: &str) -> Result<i64, CliError> {
    Some(count)
        .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse::<i64>().ok())
        .ok_or_else(|| {
            CliError::usage(format!(
                "invalid count {count:?} for {process}: use a whole number from 0 up"
            ))
        })
}

/// `web+1` → ("web", '+', "1"). Process types may contain dashes (`my-worker-2` is my-worker
/// minus 2), so the split is at the last sign that only digits follow.
fn split_relative(pair: &str) -> Option<(&str, char, &str)> {
    let at = pair.rfind(['+', '-'])?;
    let (process, rest) = pair.split_at(at);
    let digits = &rest[1..];
    let valid =
        !process.is_empty() && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    valid.then(|| (process, rest.chars().next().unwrap_or('+'), digits))
}

/// The quantities to send: relative counts applied to `current` (what the formation wants now;
/// a process type missing from it wants 0). Below 0 is refused rather than clamped: `web-3` on
/// `web=2` is more likely a typo than a wish to stop everything.
pub fn resolve_counts(
    counts: &BTreeMap<String, Count>,
    current: &BTreeMap<String, u32>,
) -> Result<BTreeMap<String, i64>, CliError> {
    let mut quantities = BTreeMap::new();
    for (process, count) in counts {
        let n = match *count {
            Count::To(n) => n,
            Count::By(delta) => {
                let now = current.get(process).copied().unwrap_or(0);
                let n = i64::from(now).saturating_add(delta);
                if n < 0 {
                    return Err(CliError::usage(format!(
                        "cannot scale {process} below 0: it is {process}={now} now, and {process}{delta:+} would make it {n}"
                    )));
                }
                n
            }
        };
        quantities.insert(process.clone(), n);
    }
    Ok(quantities)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<BTreeMap<String, Count>, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse_scale_args(&args).map_err(|e| {
            assert_eq!(e.exit_code(), 2);
            e.to_string()
        })
    }

    #[test]
    fn parses_pairs() {
        let q = parse(&["web=3", "worker=0", "clock_2=12"]).unwrap();
        assert_eq!(
            q.into_iter().collect::<Vec<_>>(),
            vec![
                ("clock_2".to_string(), Count::To(12)),
                ("web".to_string(), Count::To(3)),
                ("worker".to_string(), Count::To(0))
            ]
        );
        assert_eq!(parse(&["web=007"]).unwrap()["web"], Count::To(7));
    }

    #[test]
    fn rejects_negative_counts() {
        assert_eq!(
            parse(&["web=-1"]).unwrap_err(),
            r#"invalid count "-1" for web: use a whole number from 0 up"#
        );
    }

    #[test]
    fn rejects_non_numeric_counts() {
        for bad in [
            "web=two",
            "web=",
            "web=1.5",
            "web=+1",
            "web= 1",
            "web=99999999999999999999",
        ] {
            let err = parse(&[bad]).unwrap_err();
            assert!(err.starts_with("invalid count"), "{bad}: {err}");
            assert!(
                err.ends_with("for web: use a whole number from 0 up"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn rejects_bad_process_types() {
        let err = parse(&["Web=1"]).unwrap_err();
        assert!(err.starts_with(r#"invalid process type "Web""#), "{err}");
        let err = parse(&["web.1=1"]).unwrap_err();
        assert!(err.contains(r#""web.1""#), "{err}");
        let err = parse(&["=1"]).unwrap_err();
        assert!(err.starts_with(r#"invalid process type """#), "{err}");
    }

    #[test]
    fn rejects_missing_equals_sign() {
        for bad in [
            "web", "-1", "+1", "web+", "web-", "web+x", "web-1x", "web~1",
        ] {
            assert_eq!(
                parse(&[bad]).unwrap_err(),
                format!(
                    "invalid scale argument {bad:?}: use TYPE=COUNT, TYPE+N or TYPE-N, e.g. web=2 or web+1"
                )
            );
        }
    }

    #[test]
    fn names_the_bad_one_among_good_ones() {
        let err = parse(&["web=1", "worker=x"]).unwrap_err();
        assert!(err.contains(r#""x" for worker"#), "{err}");
    }

    #[test]
    fn rejects_duplicates() {
        let err = parse(&["web=1", "web=2"]).unwrap_err();
        assert!(err.starts_with("web is given more than once"), "{err}");
    }

    #[test]
    fn parses_relative_counts() {
        let q = parse(&["web+1", "worker-2", "my-worker-3", "clock+007"]).unwrap();
        assert_eq!(
            q.into_iter().collect::<Vec<_>>(),
            vec![
                ("clock".to_string(), Count::By(7)),
                ("my-worker".to_string(), Count::By(-3)),
                ("web".to_string(), Count::By(1)),
                ("worker".to_string(), Count::By(-2)),
            ]
        );
        let err = parse(&["Web+1"]).unwrap_err();
        assert!(err.starts_with(r#"invalid process type "Web""#), "{err}");
        let err = parse(&["web+99999999999999999999"]).unwrap_err();
        assert!(err.starts_with("invalid count"), "{err}");
        let err = parse(&["web+1", "web=2"]).unwrap_err();
        assert!(err.starts_with("web is given more than once"), "{err}");
    }

    fn now(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(p, n)| (p.to_string(), *n)).collect()
    }

    #[test]
    fn relative_counts_build_on_the_formation() {
        let counts = parse(&["web+2", "worker-1", "clock=3", "new+1"]).unwrap();
        let set = resolve_counts(&counts, &now(&[("web", 1), ("worker", 1), ("clock", 9)]));
        assert_eq!(
            set.unwrap().into_iter().collect::<Vec<_>>(),
            vec![
                ("clock".to_string(), 3),
                ("new".to_string(), 1),
                ("web".to_string(), 3),
                ("worker".to_string(), 0),
            ]
        );
    }

    #[test]
    fn relative_counts_never_go_below_zero() {
        let counts = parse(&["web-2"]).unwrap();
        let err = resolve_counts(&counts, &now(&[("web", 1)])).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.to_string(),
            "cannot scale web below 0: it is web=1 now, and web-2 would make it -1"
        );
        let err = resolve_counts(&parse(&["worker-1"]).unwrap(), &now(&[])).unwrap_err();
        assert!(err.to_string().contains("worker=0 now"), "{err}");
    }

    fn app(release: Option<u64>, deploying: Option<u64>, formation: &[(&str, u32)]) -> App {
        App {
            name: "demo".into(),
            created_at: caas_api::Timestamp::from_millis(0),
            url: "http://demo.localhost:8080".into(),
            release,
            deploying,
            formation: now(formation),
            buildpack: None,
        }
    }

    #[test]
    fn no_instances_says_what_is_actually_the_case() {
        // No release: scaling would not help, whatever the formation says.
        for formation in [&[][..], &[("web", 2)]] {
            assert_eq!(
                no_instances(&app(None, None, formation)),
                "No instances: demo has no release yet. Deploy one with: caas push -a demo"
            );
        }
        // Scaled to 0: the one case where scaling up is the answer.
        assert_eq!(
            no_instances(&app(Some(1), None, &[("web", 0)])),
            "No instances: demo is scaled to 0. Scale up with: caas ps:scale web=1 -a demo"
        );
        assert_eq!(
            no_instances(&app(Some(1), None, &[("clock", 0), ("worker", 0)])),
            "No instances: demo is scaled to 0. Scale up with: caas ps:scale clock=1 -a demo"
        );
        assert_eq!(
            no_instances(&app(None, Some(2), &[("web", 0)])),
            "No instances: demo is scaled to 0. Scale up with: caas ps:scale web=1 -a demo"
        );
        // A release on its way.
        assert_eq!(
            no_instances(&app(None, Some(1), &[("web", 1), ("worker", 0)])),
            "No instances yet: v1 is deploying (web=1 wanted). If none appear, see why with: caas logs -a demo"
        );
        assert_eq!(
            no_instances(&app(Some(1), Some(2), &[("web", 2), ("worker", 1)])),
            "No instances yet: v2 is deploying (web=2 worker=1 wanted). If none appear, see why with: caas logs -a demo"
        );
        // Wanted, released, and still nothing: the platform could not place it.
        let text = no_instances(&app(Some(3), None, &[("web", 1)]));
        assert_eq!(
            text,
            "No instances, though web=1 is wanted: none could be placed. See why with: caas logs -a demo"
        );
    }
}
