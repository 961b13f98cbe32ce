//! `ps` and `ps:scale`: an app's instances and how many of each process type it should run.

use super::{client, AppArg, JsonArg};
use crate::app::resolve_app;
use crate::error::CliError;
use crate::output::{age, print_json, print_table, say};
use anyhow::Result;
use caas_api::{Formation, Instance, ScaleRequest};
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
    /// TYPE=COUNT pairs, e.g. web=3 worker=1
    // Negative numbers are let through so `-1` gets our message rather than clap's "unexpected
    // argument". (allow_hyphen_values would also swallow a following `-a APP` as a pair.)
    #[arg(
        required = true,
        value_name = "TYPE=COUNT",
        allow_negative_numbers = true
    )]
    pairs: Vec<String>,
    #[command(flatten)]
    app: AppArg,
}

pub fn list(args: PsArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let instances: Vec<Instance> = client()?.get(&format!("/v1/apps/{name}/ps"))?;
    if args.json.json {
        return print_json(&instances);
    }
    if instances.is_empty() {
        return say(&format!(
            "No instances. Scale up with: caas ps:scale web=1 -a {name}"
        ));
    }
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                format!("v{}", i.release),
                i.state.as_str().to_string(),
                i.host.clone(),
                i.address.clone().unwrap_or_else(|| "-".to_string()),
                age(i.since),
                i.restarts.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "INSTANCE", "RELEASE", "STATE", "HOST", "ADDRESS", "AGE", "RESTARTS",
        ],
        &rows,
    )
}

pub fn scale(args: ScaleArgs) -> Result<()> {
    // Arguments first: a typo should not need a server, or an app, to be reported.
    let quantities = parse_scale_args(&args.pairs)?;
    let name = resolve_app(args.app.app)?;
    let formation: Formation = client()?.patch(
        &format!("/v1/apps/{name}/formation"),
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
    say(&format!("Scaled {name}: {}", scaled.join(" ")))
}

/// `web=3 worker=0` → {web: 3, worker: 0}. Each bad argument is named in the error.
pub fn parse_scale_args(pairs: &[String]) -> Result<BTreeMap<String, i64>, CliError> {
    let mut quantities = BTreeMap::new();
    for pair in pairs {
        let Some((process, count)) = pair.split_once('=') else {
            return Err(CliError::usage(format!(
                "invalid scale argument {pair:?}: use TYPE=COUNT, e.g. web=2"
            )));
        };
        caas_api::validate_process_type(process).map_err(|e| CliError::usage(e.to_string()))?;
        // Digits only: Rust's parser would also take "+3", which is not a count anyone types
        // on purpose (and Heroku reads it as "3 more").
        let n = Some(count)
            .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<i64>().ok())
            .ok_or_else(|| {
                CliError::usage(format!(
                    "invalid count {count:?} for {process}: use a whole number from 0 up"
                ))
            })?;
        if quantities.insert(process.to_string(), n).is_some() {
            return Err(CliError::usage(format!(
                "{process} is given more than once: give each process type once"
            )));
        }
    }
    Ok(quantities)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<BTreeMap<String, i64>, String> {
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
                ("clock_2".to_string(), 12),
                ("web".to_string(), 3),
                ("worker".to_string(), 0)
            ]
        );
        assert_eq!(parse(&["web=007"]).unwrap()["web"], 7);
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
        assert_eq!(
            parse(&["web"]).unwrap_err(),
            r#"invalid scale argument "web": use TYPE=COUNT, e.g. web=2"#
        );
        assert_eq!(
            parse(&["-1"]).unwrap_err(),
            r#"invalid scale argument "-1": use TYPE=COUNT, e.g. web=2"#
        );
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
}
