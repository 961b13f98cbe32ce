//! `metrics`: an app's traffic over the last minutes, at a glance.

use super::{client, AppArg, JsonArg};
use crate::app::resolve_app;
use crate::error::CliError;
use crate::output::{format_bytes, print_json, say};
use anyhow::Result;
use caas_api::AppMetrics;
use clap::Args;

#[derive(Debug, Args)]
pub struct MetricsArgs {
    #[command(flatten)]
    app: AppArg,
    /// How far back: 30s, 5m, 10m (at most 10m)
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    window: String,
    #[command(flatten)]
    json: JsonArg,
}

fn parse_window(text: &str) -> Result<u64, CliError> {
    let bad = || {
        CliError::usage(format!(
            "invalid --window {text:?}: give a duration from 1s to 10m, e.g. 30s or 5m"
        ))
    };
    let secs = match text.parse::<u64>() {
        Ok(n) => n,
        Err(_) => humantime::parse_duration(text)
            .map_err(|_| bad())?
            .as_secs(),
    };
    if (1..=600).contains(&secs) {
        Ok(secs)
    } else {
        Err(bad())
    }
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v} ms"))
}

/// The few lines `caas metrics` prints.
fn render(m: &AppMetrics) -> String {
    let pct = |n: u64| {
        if m.requests == 0 {
            String::new()
        } else {
            format!(" ({:.1}%)", n as f64 * 100.0 / m.requests as f64)
        }
    };
    let window = humantime::format_duration(std::time::Duration::from_secs(m.window_secs));
    format!(
        "=== {} over the last {window}\n\
         requests   {} ({:.2}/s)\n\
         responses  2xx {}  3xx {}  4xx {}  5xx {}{}\n\
         latency    p50 {}  p95 {}  p99 {}\n\
         sent       {}\n",
        m.app,
        m.requests,
        m.rps,
        m.status[1],
        m.status[2],
        m.status[3],
        m.status[4],
        pct(m.status[4]),
        ms(m.p50_ms),
        ms(m.p95_ms),
        ms(m.p99_ms),
        format_bytes(m.bytes),
    ) + &render_instances(m)
}

/// One line per instance: its state, CPU and memory.
fn render_instances(m: &AppMetrics) -> String {
    let mut out = String::new();
    for i in &m.instances {
        let (cpu, mem) = match &i.usage {
            Some(u) => (
                u.cpu_percent
                    .map_or_else(|| "-".to_string(), |c| format!("{c:.1}%")),
                if u.memory_limit_bytes > 0 {
                    format!(
                        "{} of {}",
                        format_bytes(u.memory_bytes),
                        format_bytes(u.memory_limit_bytes)
                    )
                } else {
                    format_bytes(u.memory_bytes)
                },
            ),
            None => ("-".to_string(), "-".to_string()),
        };
        out.push_str(&format!(
            "{:<10} {} v{} {}  cpu {cpu}  memory {mem}\n",
            if out.is_empty() { "instances" } else { "" },
            i.name,
            i.release,
            i.state.as_str(),
        ));
    }
    out
}

pub fn show(args: MetricsArgs) -> Result<()> {
    let window = parse_window(&args.window)?;
    let name = resolve_app(args.app.app)?;
    let client = client()?;
    let m: AppMetrics = client.get(&format!("/v1/apps/{name}/metrics?window={window}"))?;
    if args.json.json {
        return print_json(&m);
    }
    if let Some(c) = super::canary::running(&client, &name)? {
        super::canary::print_side_by_side(&c)?;
    }
    say(render(&m).trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_within_ten_minutes() {
        assert_eq!(parse_window("30s").unwrap(), 30);
        assert_eq!(parse_window("5m").unwrap(), 300);
        assert_eq!(parse_window("90").unwrap(), 90);
        for bad in ["0s", "11m", "soon", ""] {
            assert_eq!(parse_window(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }

    use caas_api::metrics::{InstanceMetrics, InstanceUsage};
    use caas_api::InstanceState;

    #[test]
    fn renders_a_few_lines() {
        let m = AppMetrics {
            app: "demo".into(),
            window_secs: 300,
            requests: 200,
            rps: 0.6667,
            status: [0, 190, 0, 8, 2],
            p50_ms: Some(5),
            p95_ms: Some(25),
            p99_ms: None,
            bytes: 2048,
            instances: vec![
                InstanceMetrics {
                    name: "web.1".into(),
                    process: "web".into(),
                    release: 3,
                    state: InstanceState::Up,
                    usage: Some(InstanceUsage {
                        cpu_percent: Some(12.25),
                        cpu_seconds: 4.0,
                        memory_bytes: 3 << 20,
                        memory_limit_bytes: 512 << 20,
                    }),
                },
                InstanceMetrics {
                    name: "web.2".into(),
                    process: "web".into(),
                    release: 3,
                    state: InstanceState::Starting,
                    usage: None,
                },
            ],
        };
        assert_eq!(
            render(&m),
            "=== demo over the last 5m\n\
             requests   200 (0.67/s)\n\
             responses  2xx 190  3xx 0  4xx 8  5xx 2 (1.0%)\n\
             latency    p50 5 ms  p95 25 ms  p99 -\n\
             sent       2.0 KB\n\
             instances  web.1 v3 up  cpu 12.2%  memory 3.0 MB of 512.0 MB\n"
                .to_string()
                + "           web.2 v3 starting  cpu -  memory -\n"
        );
    }
}
