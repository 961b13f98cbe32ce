//! `autoscale`, `autoscale:set`, `autoscale:off`: keep a process type between a minimum and a
//! maximum, sized for requests per second or CPU per instance.

use super::{client, AppArg, JsonArg};
use crate::app::resolve_app;
use crate::error::CliError;
use crate::output::{format_age, print_json, print_table, sanitize, say};
use anyhow::Result;
use caas_api::metrics::{Autoscale, AutoscaleSettings, DEFAULT_COOLDOWN_SECS};
use clap::Args;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["rps", "cpu"])))]
pub struct SetArgs {
    /// The process type to autoscale (web, worker, ...)
    process: String,
    /// Never fewer instances than this
    #[arg(long, default_value_t = 1)]
    min: u32,
    /// Never more instances than this (nor the server's --max-scale)
    #[arg(long)]
    max: u32,
    /// Target requests per second per instance over the last 10 s (web only)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    rps: Option<String>,
    /// Target CPU per instance, percent of one core: 70%
    #[arg(long, value_name = "PERCENT", allow_negative_numbers = true)]
    cpu: Option<String>,
    /// How long the load must stay low before instances are removed: 30s, 5m
    #[arg(long, value_name = "DURATION")]
    cooldown: Option<String>,
    #[command(flatten)]
    app: AppArg,
}

#[derive(Debug, Args)]
pub struct OffArgs {
    /// The process type to stop autoscaling; it keeps the count it has
    process: String,
    #[command(flatten)]
    app: AppArg,
}

/// A number above 0, with an optional `%` when `percent`.
pub(super) fn parse_number(flag: &str, text: &str, percent: bool) -> Result<f64, CliError> {
    let digits = if percent {
        text.strip_suffix('%').unwrap_or(text)
    } else {
        text
    };
    match digits.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(CliError::usage(format!(
            "invalid {flag} {text:?}: give a number above 0{}",
            if percent { ", e.g. 70%" } else { ", e.g. 100" }
        ))),
    }
}

/// A duration such as `30s`, `5m` or a number of seconds.
pub(super) fn parse_secs(flag: &str, text: &str) -> Result<u64, CliError> {
    let bad = || {
        CliError::usage(format!(
            "invalid {flag} {text:?}: give a duration, e.g. 30s or 5m"
        ))
    };
    let secs = match text.parse::<u64>() {
        Ok(n) => n,
        Err(_) => humantime::parse_duration(text)
            .map_err(|_| bad())?
            .as_secs(),
    };
    if secs == 0 {
        return Err(bad());
    }
    Ok(secs)
}

fn target(a: &AutoscaleSettings) -> String {
    match (a.rps, a.cpu_percent) {
        (Some(r), _) => format!("{r} req/s"),
        (None, Some(c)) => format!("{c}% cpu"),
        _ => "-".into(),
    }
}

pub fn list(args: ListArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let all: Vec<Autoscale> = client()?.get(&format!("/v1/apps/{name}/autoscale"))?;
    if args.json.json {
        return print_json(&all);
    }
    if all.is_empty() {
        return say(&format!(
            "{name} is not autoscaled. Turn it on with: caas autoscale:set web --min 1 --max 10 --rps 100 -a {name}"
        ));
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|a| {
            let observed = match (a.observed, a.settings.cpu_percent) {
                (None, _) => "-".to_string(),
                (Some(v), Some(_)) => format!("{v:.0}% cpu"),
                (Some(v), None) => format!("{v:.1} req/s"),
            };
            let last = match (&a.last_decision, a.last_decision_at) {
                (Some(d), Some(at)) => {
                    let ago = at.until(caas_api::Timestamp::now());
                    format!("{} ago: {}", format_age(ago), sanitize(d))
                }
                _ => "-".into(),
            };
            vec![
                a.process.clone(),
                a.quantity.to_string(),
                a.settings.min.to_string(),
                a.settings.max.to_string(),
                target(&a.settings),
                humantime::format_duration(Duration::from_secs(a.settings.cooldown_secs))
                    .to_string(),
                observed,
                last,
            ]
        })
        .collect();
    print_table(
        &[
            "PROCESS",
            "NOW",
            "MIN",
            "MAX",
            "TARGET",
            "COOL-DOWN",
            "LOAD",
            "LAST CHANGE",
        ],
        &rows,
    )
}

pub fn set(args: SetArgs) -> Result<()> {
    let rps = args
        .rps
        .as_deref()
        .map(|t| parse_number("--rps", t, false))
        .transpose()?;
    let cpu_percent = args
        .cpu
        .as_deref()
        .map(|t| parse_number("--cpu", t, true))
        .transpose()?;
    let cooldown_secs = match &args.cooldown {
        Some(t) => parse_secs("--cooldown", t)?,
        None => DEFAULT_COOLDOWN_SECS,
    };
    if args.min > args.max {
        return Err(CliError::usage(format!(
            "--min {} is above --max {}: give min <= max",
            args.min, args.max
        ))
        .into());
    }
    let name = resolve_app(args.app.app)?;
    let settings = AutoscaleSettings {
        min: args.min,
        max: args.max,
        rps,
        cpu_percent,
        cooldown_secs,
    };
    let a: Autoscale = client()?.put(
        &format!("/v1/apps/{name}/autoscale/{}", args.process),
        &settings,
    )?;
    say(&sanitize(&format!(
        "Autoscaling {} of {name} from {} to {} at {} per instance (now {}; cool-down {})",
        a.process,
        a.settings.min,
        a.settings.max,
        target(&a.settings),
        a.quantity,
        humantime::format_duration(Duration::from_secs(a.settings.cooldown_secs))
    )))
}

pub fn off(args: OffArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    client()?.delete(&format!("/v1/apps/{name}/autoscale/{}", args.process))?;
    say(&sanitize(&format!(
        "Autoscaling of {} is off for {name}; it keeps its count (caas ps:scale changes it)",
        args.process
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_durations_parse() {
        assert_eq!(parse_number("--cpu", "70%", true).unwrap(), 70.0);
        assert_eq!(parse_number("--cpu", "70", true).unwrap(), 70.0);
        assert_eq!(parse_number("--rps", "2.5", false).unwrap(), 2.5);
        for bad in ["0", "-1", "x", "", "70%%"] {
            assert_eq!(
                parse_number("--cpu", bad, true).unwrap_err().exit_code(),
                2,
                "{bad}"
            );
        }
        assert_eq!(
            parse_number("--rps", "10%", false).unwrap_err().exit_code(),
            2
        );
        assert_eq!(parse_secs("--cooldown", "30s").unwrap(), 30);
        assert_eq!(parse_secs("--cooldown", "5m").unwrap(), 300);
        assert_eq!(parse_secs("--cooldown", "45").unwrap(), 45);
        for bad in ["0s", "soon", ""] {
            assert_eq!(
                parse_secs("--cooldown", bad).unwrap_err().exit_code(),
                2,
                "{bad}"
            );
        }
    }
}
