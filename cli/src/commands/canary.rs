//! `releases:canary`, `releases:canary:set`, `releases:promote`, `releases:abort`: run a release
//! beside the serving one with a share of the requests, then promote or abort it; and the
//! side-by-side figures `ps`, `releases` and `metrics` show while one runs.

use super::releases::parse_version;
use super::{client, AppArg, JsonArg};
use crate::app::resolve_app;
use crate::client::Client;
use crate::deploy::{wait_until_up, WaitArgs, Waited};
use crate::error::CliError;
use crate::output::{print_json, print_table, sanitize, say};
use anyhow::Result;
use caas_api::canary::{Canary, CanaryAuto, CanaryRequest, CanaryStatus, CanaryWeight, Increase};
use caas_api::{ErrorCode, Release};
use clap::Args;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The release to run as the canary (v3 or 3) [default: the newest release not serving]
    #[arg(value_name = "RELEASE")]
    version: Option<String>,
    /// Percent of requests the canary gets, 1 to 99
    #[arg(
        long,
        value_name = "PERCENT",
        default_value = "10",
        allow_negative_numbers = true
    )]
    weight: String,
    /// Keep each browser on the release it first got (a cookie)
    #[arg(long)]
    sticky: bool,
    /// Abort the canary when it does worse than the serving release, promote it when it stays
    /// healthy (the thresholds below)
    #[arg(long)]
    auto: bool,
    /// --auto: abort when its 5xx rate passes the serving release's by more than these
    /// percentage points [default: 1]
    #[arg(
        long = "max-5xx-increase",
        value_name = "POINTS",
        allow_negative_numbers = true
    )]
    max_5xx_increase: Option<String>,
    /// --auto: abort when its p95 passes the serving release's by more than this: 200ms, 1s or
    /// 50% [default: 200ms]
    #[arg(long, value_name = "DURATION|PERCENT")]
    max_p95_increase: Option<String>,
    /// --auto: promote once it ran this long without being aborted [default: 5m]
    #[arg(long, value_name = "DURATION")]
    promote_after: Option<String>,
    /// --auto: judge it only once it answered this many requests [default: 20]
    #[arg(long, value_name = "N")]
    min_requests: Option<String>,
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    wait: WaitArgs,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// Percent of requests the canary gets, 1 to 99
    #[arg(long, value_name = "PERCENT", allow_negative_numbers = true)]
    weight: String,
    #[command(flatten)]
    app: AppArg,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct AbortArgs {
    #[command(flatten)]
    app: AppArg,
}

/// `--weight`: a whole percentage from 1 to 99.
pub fn parse_weight(text: &str) -> Result<u8, CliError> {
    let digits = text.strip_suffix('%').unwrap_or(text);
    match digits.parse::<u8>() {
        Ok(w) if (1..=99).contains(&w) && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(w),
        _ => Err(CliError::usage(format!(
            "invalid --weight {:?}: give a percentage of requests from 1 to 99",
            sanitize(text)
        ))),
    }
}

fn auto_of(args: &StartArgs) -> Result<Option<CanaryAuto>, CliError> {
    let given = [
        ("--max-5xx-increase", &args.max_5xx_increase),
        ("--max-p95-increase", &args.max_p95_increase),
        ("--promote-after", &args.promote_after),
        ("--min-requests", &args.min_requests),
    ];
    if !args.auto {
        return match given.iter().find(|(_, v)| v.is_some()) {
            Some((flag, _)) => Err(CliError::usage(format!(
                "{flag} is a threshold of --auto: add --auto"
            ))),
            None => Ok(None),
        };
    }
    let mut auto = CanaryAuto::default();
    if let Some(t) = &args.max_5xx_increase {
        auto.max_5xx_increase = match t.strip_suffix('%').unwrap_or(t).parse::<f64>() {
            Ok(v) if v.is_finite() && (0.0..=100.0).contains(&v) => v,
            _ => {
                return Err(CliError::usage(format!(
                    "invalid --max-5xx-increase {:?}: give percentage points from 0 to 100",
                    sanitize(t)
                )))
            }
        };
    }
    if let Some(t) = &args.max_p95_increase {
        auto.max_p95_increase = Increase::parse(t).map_err(CliError::usage)?;
    }
    if let Some(t) = &args.promote_after {
        auto.promote_after_secs = super::autoscale::parse_secs("--promote-after", t)?;
    }
    if let Some(t) = &args.min_requests {
        auto.min_requests = match t.parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(CliError::usage(format!(
                    "invalid --min-requests {:?}: give a number above 0",
                    sanitize(t)
                )))
            }
        };
    }
    Ok(Some(auto))
}

/// `caas releases:canary [vN]`: starts the canary and waits until an instance of it is up.
pub fn start(args: StartArgs) -> Result<()> {
    let weight = parse_weight(&args.weight)?;
    let version = args.version.as_deref().map(parse_version).transpose()?;
    let auto = auto_of(&args)?;
    let name = resolve_app(args.app.app.clone())?;
    let client = client()?;
    let started: CanaryStatus = client.post(
        &format!("/v1/apps/{name}/canary"),
        &CanaryRequest {
            version,
            weight,
            sticky: args.sticky,
            auto,
        },
    )?;
    let c = &started.canary;
    let beside = started
        .stable
        .map_or_else(String::new, |v| format!(" beside v{v}"));
    let what = format!(
        "canary v{} of {name} with {}% of requests{beside}",
        c.version, c.weight
    );
    let Some(timeout) = args.wait.timeout() else {
        return done(&args.json, &started, &format!("Starting {what}"));
    };
    let now = wait_up(&client, &name, &what, timeout)?;
    done(&args.json, &now, &format!("Started {what}: up"))
}

/// Waits until an instance of the app's canary (`what`, for messages) is up.
pub fn wait_up(client: &Client, name: &str, what: &str, timeout: Duration) -> Result<CanaryStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        let now: CanaryStatus = match client.get(&format!("/v1/apps/{name}/canary")) {
            Ok(s) => s,
            // Aborted (or promoted) meanwhile: by a person, or by --auto.
            Err(e) if is_not_found(&e) => {
                return Err(CliError::Failed(format!(
                    "the {what} ended before it came up; see caas logs -a {name}"
                ))
                .into())
            }
            Err(e) => return Err(e),
        };
        if now
            .releases
            .iter()
            .any(|r| r.role == "canary" && r.instances_up > 0)
        {
            return Ok(now);
        }
        if Instant::now() >= deadline {
            return Err(CliError::Failed(format!(
                "the {what} is not up after {}s; see caas ps -a {name} (caas releases:abort ends it)",
                timeout.as_secs()
            ))
            .into());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn done(json: &JsonArg, status: &CanaryStatus, line: &str) -> Result<()> {
    if json.json {
        print_json(status)
    } else {
        say(line)
    }
}

fn is_not_found(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<CliError>(),
        Some(CliError::Api {
            code: Some(ErrorCode::NotFound),
            ..
        })
    )
}

/// `caas releases:canary:set --weight N`.
pub fn set(args: SetArgs) -> Result<()> {
    let weight = parse_weight(&args.weight)?;
    let name = resolve_app(args.app.app)?;
    let s: CanaryStatus =
        client()?.patch(&format!("/v1/apps/{name}/canary"), &CanaryWeight { weight })?;
    say(&format!(
        "Canary v{} of {name} now gets {}% of requests",
        s.canary.version, s.canary.weight
    ))
}

/// `caas releases:promote`: the canary rolls out as the app's release; waits for it like a deploy.
pub fn promote(args: PromoteArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let client = client()?;
    let release: Release = client.post(
        &format!("/v1/apps/{name}/canary/promote"),
        &serde_json::json!({}),
    )?;
    let v = release.version;
    match args.wait.timeout() {
        None => say(&format!("Promoting canary v{v} of {name}... deploying")),
        Some(timeout) => match wait_until_up(&client, &name, v, timeout)? {
            Waited::Up => say(&format!(
                "Promoting canary v{v} of {name}... done, v{v} serves"
            )),
            Waited::Superseded(newer) => say(&format!(
                "Promoting canary v{v} of {name}... v{v} was replaced by v{newer} before it came up"
            )),
        },
    }
}

/// `caas releases:abort`: the canary's instances drain and go.
pub fn abort(args: AbortArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let ended: Canary = client()?.post(
        &format!("/v1/apps/{name}/canary/abort"),
        &serde_json::json!({}),
    )?;
    say(&format!(
        "Aborted canary v{} of {name}: its instances drain; the serving release takes every request",
        ended.version
    ))
}

/// The app's canary, if one runs (for `ps`, `releases` and `metrics`).
pub fn running(client: &Client, app: &str) -> Result<Option<CanaryStatus>> {
    match client.get(&format!("/v1/apps/{app}/canary")) {
        Ok(s) => Ok(Some(s)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Both releases side by side: weight, instances up, requests, 5xx, p95.
pub fn print_side_by_side(s: &CanaryStatus) -> Result<()> {
    let c = &s.canary;
    let mut how = vec![format!("{}% of requests", c.weight)];
    if c.sticky {
        how.push("sticky".into());
    }
    if c.auto.is_some() {
        how.push("auto".into());
    }
    say(&format!("=== Canary v{} ({})", c.version, how.join(", ")))?;
    let rows: Vec<Vec<String>> = s
        .releases
        .iter()
        .map(|r| {
            vec![
                format!("v{}", r.version),
                r.role.clone(),
                format!("{}%", r.weight),
                r.instances_up.to_string(),
                r.requests.to_string(),
                format!("{} ({:.1}%)", r.errors_5xx, r.error_rate()),
                r.p95_ms.map_or_else(|| "-".into(), |ms| format!("{ms}ms")),
            ]
        })
        .collect();
    print_table(
        &["RELEASE", "ROLE", "WEIGHT", "UP", "REQUESTS", "5XX", "P95"],
        &rows,
    )?;
    if let Some(v) = &s.verdict {
        say(&format!("Auto: {}", sanitize(v)))?;
    }
    say("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_whole_percentages_from_1_to_99() {
        assert_eq!(parse_weight("10").unwrap(), 10);
        assert_eq!(parse_weight("99%").unwrap(), 99);
        for bad in ["0", "100", "-5", "", "ten", "5.5", "+5", "256"] {
            let e = parse_weight(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }
}
