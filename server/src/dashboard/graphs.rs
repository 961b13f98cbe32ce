//! The app page's graphs of its last hour (requests/s, p95, 5xx, CPU, memory): inline SVG
//! polylines computed here from `GET /v1/apps/{app}/metrics/history`, the API the CLI could use
//! too. No script and no chart library: the page swaps them in with the metrics it already
//! streams, and the style sheet colours them.

use super::client::As;
use super::Dash;
use caas_api::metrics::MetricsHistory;
use caas_api::AppMetrics;
use serde::Serialize;

/// The SVG's own coordinates; the style sheet stretches it to the width of the page.
const WIDTH: f64 = 240.0;
const HEIGHT: f64 = 60.0;
/// Room above the peak and below zero, so a line at either is not cut by the frame.
const MARGIN: f64 = 2.0;
/// Lines drawn per graph at most (one per process type): more would not be told apart.
const MAX_LINES: usize = 4;

#[derive(Debug, Serialize, PartialEq)]
pub struct Graph {
    /// `rps`, `p95`, `5xx`, `cpu`, `memory`.
    pub id: &'static str,
    pub title: &'static str,
    /// The highest value shown, as the graph labels it (`12.50`, `250 ms`, `64 MB`).
    pub peak: String,
    /// Whether anything above zero was measured (tests and readers of the page look for it).
    pub measured: bool,
    pub lines: Vec<Line>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Line {
    pub name: String,
    /// `x,y x,y ...`, one point a minute with a value.
    pub points: String,
    /// `s0` .. `s3`: the style sheet's colours.
    pub class: String,
}

type Series = (String, Vec<Option<f64>>);

/// What `_metrics.html` shows: the last five minutes' figures and the last hour's graphs (each
/// `None`/empty when the API did not answer: the section says there are no figures yet).
pub async fn load(dash: &Dash, who: &As, app: &str) -> (Option<AppMetrics>, Vec<Graph>) {
    let metrics = dash
        .api
        .get(who, &format!("/v1/apps/{app}/metrics?window=300"))
        .await
        .ok();
    let history: Option<MetricsHistory> = dash
        .api
        .get(who, &format!("/v1/apps/{app}/metrics/history"))
        .await
        .ok();
    (metrics, history.as_ref().map(graphs).unwrap_or_default())
}

pub fn graphs(h: &MetricsHistory) -> Vec<Graph> {
    let m = &h.minutes;
    let one = |f: &dyn Fn(&caas_api::metrics::MinuteMetrics) -> Option<f64>| -> Vec<Series> {
        vec![("all".to_string(), m.iter().map(f).collect())]
    };
    let mut processes: Vec<&String> = m
        .iter()
        .flat_map(|x| x.memory_bytes.keys().chain(x.cpu_percent.keys()))
        .collect();
    processes.sort();
    processes.dedup();
    processes.truncate(MAX_LINES);
    let per_process = |f: &dyn Fn(&caas_api::metrics::MinuteMetrics, &str) -> Option<f64>| {
        processes
            .iter()
            .map(|p| (p.to_string(), m.iter().map(|x| f(x, p)).collect()))
            .collect::<Vec<Series>>()
    };
    vec![
        graph("rps", "Requests/s", one(&|x| Some(x.rps)), |v| {
            format!("{v:.2}")
        }),
        graph(
            "p95",
            "p95 latency",
            one(&|x| x.p95_ms.map(|v| v as f64)),
            |v| format!("{v:.0} ms"),
        ),
        graph(
            "5xx",
            "5xx answers",
            one(&|x| Some(x.status_5xx as f64)),
            |v| format!("{v:.0}"),
        ),
        graph(
            "cpu",
            "CPU",
            per_process(&|x, p| x.cpu_percent.get(p).copied()),
            |v| format!("{v:.0} %"),
        ),
        graph(
            "memory",
            "Memory",
            per_process(&|x, p| x.memory_bytes.get(p).map(|b| *b as f64)),
            |v| caas_api::format_bytes(v as u64),
        ),
    ]
}

fn graph(
    id: &'static str,
    title: &'static str,
    series: Vec<Series>,
    label: fn(f64) -> String,
) -> Graph {
    let peak = series
        .iter()
        .flat_map(|(_, values)| values.iter().flatten())
        .fold(0.0_f64, |a, b| a.max(*b));
    let scale = if peak > 0.0 { peak } else { 1.0 };
    let lines = series
        .into_iter()
        .enumerate()
        .map(|(i, (name, values))| {
            let step = WIDTH / (values.len().max(2) - 1) as f64;
            let points: Vec<String> = values
                .iter()
                .enumerate()
                .filter_map(|(x, v)| {
                    let y = HEIGHT - MARGIN - (*v)? / scale * (HEIGHT - 2.0 * MARGIN);
                    Some(format!("{:.1},{y:.1}", x as f64 * step))
                })
                .collect();
            Line {
                name,
                points: points.join(" "),
                class: format!("s{i}"),
            }
        })
        .collect();
    Graph {
        id,
        title,
        peak: label(peak),
        measured: peak > 0.0,
        lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caas_api::metrics::MinuteMetrics;
    use std::collections::BTreeMap;

    #[test]
    fn points_scale_to_the_peak_and_gaps_are_left_out() {
        let mut minutes = vec![MinuteMetrics::default(); 3];
        minutes[0].rps = 1.0;
        minutes[2].rps = 4.0;
        minutes[2].p95_ms = Some(250);
        minutes[1].memory_bytes = BTreeMap::from([("web".into(), 64 << 20)]);
        let g = graphs(&MetricsHistory {
            app: "a".into(),
            minutes,
        });
        let ids: Vec<&str> = g.iter().map(|g| g.id).collect();
        assert_eq!(ids, ["rps", "p95", "5xx", "cpu", "memory"]);
        assert_eq!(g[0].lines[0].points, "0.0,44.0 120.0,58.0 240.0,2.0");
        assert_eq!((g[0].peak.as_str(), g[0].measured), ("4.00", true));
        // Minutes without requests have no latency: no point there.
        assert_eq!(g[1].lines[0].points, "240.0,2.0");
        assert_eq!(g[1].peak, "250 ms");
        assert!(!g[2].measured, "no 5xx: a flat line at zero");
        assert_eq!(g[4].lines[0].name, "web");
        assert_eq!(g[4].lines[0].points, "120.0,2.0");
        assert_eq!(g[4].peak, "64.0 MB");
    }
}
