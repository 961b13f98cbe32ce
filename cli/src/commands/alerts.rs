//! `alerts`, `alerts:set`, `alerts:clear`: conditions on an app's traffic that raise and clear a
//! `caas[alert]` line (and call a webhook).

use super::autoscale::{parse_number, parse_secs};
use super::{client, AppArg, JsonArg};
use crate::app::resolve_app;
use crate::error::CliError;
use crate::output::{print_json, sanitize, say};
use anyhow::Result;
use caas_api::metrics::{AlertSettings, Alerts};
use clap::Args;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("condition").required(true).multiple(true).args(["p95", "error_rate"])))]
pub struct SetArgs {
    /// Raise when the 95th percentile of latency is above this: 500ms, 2s
    #[arg(long, value_name = "DURATION")]
    p95: Option<String>,
    /// Raise when the share of 5xx answers is above this: 1%
    #[arg(long = "5xx-rate", value_name = "PERCENT")]
    error_rate: Option<String>,
    /// The window the conditions are computed over: 30s, 1m (5s to 10m)
    #[arg(long, value_name = "DURATION", default_value = "1m")]
    window: String,
    /// POST a JSON notice here when an alert is raised or cleared (http:// or https://)
    #[arg(long, value_name = "URL")]
    webhook: Option<String>,
    #[command(flatten)]
    app: AppArg,
}

#[derive(Debug, Args)]
pub struct ClearArgs {
    #[command(flatten)]
    app: AppArg,
}

fn parse_ms(text: &str) -> Result<u64, CliError> {
    let bad = || {
        CliError::usage(format!(
            "invalid --p95 {text:?}: give a duration, e.g. 500ms or 2s"
        ))
    };
    let d = humantime::parse_duration(text).map_err(|_| bad())?;
    match d.as_millis() {
        0 => Err(bad()),
        ms => Ok(ms.min(u64::MAX as u128) as u64),
    }
}

fn describe(s: &AlertSettings) -> String {
    let mut what = Vec::new();
    if let Some(p) = s.p95_ms {
        what.push(format!("p95 above {p} ms"));
    }
    if let Some(r) = s.error_rate_percent {
        what.push(format!("5xx rate above {r}%"));
    }
    format!(
        "{} over {}{}",
        what.join(" or "),
        humantime::format_duration(Duration::from_secs(s.window_secs)),
        s.webhook
            .as_ref()
            .map(|w| format!(", webhook {w}"))
            .unwrap_or_default()
    )
}

pub fn show(args: ShowArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let alerts: Alerts = client()?.get(&format!("/v1/apps/{name}/alerts"))?;
    if args.json.json {
        return print_json(&alerts);
    }
    let Some(settings) = &alerts.settings else {
        return say(&format!(
            "{name} has no alerts. Set some with: caas alerts:set --p95 500ms --5xx-rate 1% -a {name}"
        ));
    };
    let raised = if alerts.raised.is_empty() {
        "nothing".to_string()
    } else {
        alerts.raised.join(", ")
    };
    say(&sanitize(&format!(
        "=== {name} alerts\nwhen    {}\nraised  {raised}",
        describe(settings)
    )))
}

pub fn set(args: SetArgs) -> Result<()> {
    let p95_ms = args.p95.as_deref().map(parse_ms).transpose()?;
    let error_rate_percent = args
        .error_rate
        .as_deref()
        .map(|t| parse_number("--5xx-rate", t, true))
        .transpose()?;
    let window_secs = parse_secs("--window", &args.window)?;
    let name = resolve_app(args.app.app)?;
    let settings = AlertSettings {
        p95_ms,
        error_rate_percent,
        window_secs,
        webhook: args.webhook,
    };
    let alerts: Alerts = client()?.put(&format!("/v1/apps/{name}/alerts"), &settings)?;
    let set = alerts.settings.as_ref().unwrap_or(&settings);
    say(&sanitize(&format!("Alerting on {name}: {}", describe(set))))
}

pub fn clear(args: ClearArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    client()?.delete(&format!("/v1/apps/{name}/alerts"))?;
    say(&format!("Alerts of {name} are off"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_takes_a_duration() {
        assert_eq!(parse_ms("500ms").unwrap(), 500);
        assert_eq!(parse_ms("2s").unwrap(), 2000);
        for bad in ["0ms", "fast", "500"] {
            assert_eq!(parse_ms(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }
}
