//! `GET /metrics`: a [`Snapshot`] of everything caasd knows, encoded in Prometheus' text format
//! (0.0.4) by the `prometheus-client` crate. The figures are gathered at scrape time from where
//! they live, so they are handed to the crate as constant metrics of one scrape (a `Collector`)
//! rather than kept twice in its live counters.

use crate::traffic::Counts;
use caas_api::gateway::LATENCY_BUCKETS_MS;
use caas_api::metrics::InstanceUsage;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds of the build duration buckets, seconds.
const BUILD_BUCKETS_SECS: [f64; 8] = [10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0];

/// One instance as the scrape saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSample {
    pub app: String,
    pub process: String,
    /// `web.1`
    pub instance: String,
    /// `up`, `starting`, ... as `caas ps` says.
    pub state: &'static str,
    pub restarts: u32,
    pub usage: Option<InstanceUsage>,
}

/// One build: its status and, once finished, how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildSample {
    pub app: String,
    pub status: &'static str,
    pub seconds: Option<f64>,
}

/// Everything one scrape shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The gateway's counts per app since caasd started (web traffic).
    pub traffic: Vec<(String, Counts)>,
    pub instances: Vec<InstanceSample>,
    pub builds: Vec<BuildSample>,
    /// `(app, outcome, releases)`: outcome is a release status (`succeeded`, `failed`, ...).
    pub deploys: Vec<(String, &'static str, u64)>,
    pub store_bytes: u64,
    pub scheduler_passes: u64,
    /// `(host name, heartbeats)`.
    pub heartbeats: Vec<(String, u64)>,
    /// `(app, source, lines)`.
    pub log_lines: Vec<(String, &'static str, u64)>,
    /// `(app, drain id, delivered, dropped)`.
    pub drains: Vec<(String, String, u64, u64)>,
    /// `(where, lines)`: agent, gateway, reader.
    pub dropped_lines: Vec<(&'static str, u64)>,
}

type Labels = Vec<(&'static str, String)>;

/// A histogram whose buckets were counted elsewhere (cumulative counts per upper bound).
#[derive(Debug)]
struct ConstHistogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl ConstHistogram {
    /// From per-bucket counts (not cumulative; the encoder adds them up), the last one for
    /// everything past the bounds (only in `+Inf`).
    fn from_counts(bounds: &[f64], counts: &[u64], sum: f64) -> Self {
        let buckets = bounds
            .iter()
            .enumerate()
            .map(|(i, bound)| (*bound, counts.get(i).copied().unwrap_or(0)))
            .collect();
        ConstHistogram {
            sum,
            count: counts.iter().sum(),
            buckets,
        }
    }
}

impl EncodeMetric for ConstHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Writes one metric family: its descriptor and one sample per label set.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: Vec<(Labels, M)>,
) -> Result<(), std::fmt::Error> {
    let Some(first) = samples.first() else {
        return Ok(()); // no family without samples
    };
    let kind = first.1.metric_type();
    let mut metric = encoder.encode_descriptor(name, help, unit, kind)?;
    for (labels, m) in &samples {
        m.encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn gauge(v: f64) -> ConstGauge<f64> {
    ConstGauge::new(v)
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Debug)]
struct Scrape(Snapshot);

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let web = || caas_api::WEB.to_string();
        let app_web = |app: &str| -> Labels { vec![("app", app.to_string()), ("process", web())] };

        // Traffic, as the gateway counted it.
        let mut requests = Vec::new();
        let mut latency = Vec::new();
        let mut bytes = Vec::new();
        for (app, c) in &s.traffic {
            for (class, n) in CLASSES.iter().zip(c.status) {
                let mut l = app_web(app);
                l.push(("status", class.to_string()));
                requests.push((l, counter(n)));
            }
            let bounds: Vec<f64> = LATENCY_BUCKETS_MS
                .iter()
                .map(|ms| *ms as f64 / 1000.0)
                .collect();
            latency.push((
                app_web(app),
                ConstHistogram::from_counts(&bounds, &c.latency, c.latency_sum_ms as f64 / 1000.0),
            ));
            bytes.push((app_web(app), counter(c.bytes)));
        }
        family(
            &mut e,
            "caas_requests",
            "Requests the gateway answered, by status class",
            None,
            requests,
        )?;
        family(
            &mut e,
            "caas_request_duration",
            "Time to the first byte of the answer",
            Some(&Unit::Seconds),
            latency,
        )?;
        family(
            &mut e,
            "caas_response",
            "Response body bytes sent to clients",
            Some(&Unit::Bytes),
            bytes,
        )?;

        // Instances.
        let mut by_state: std::collections::BTreeMap<(String, String, &str), u64> =
            Default::default();
        let mut restarts = Vec::new();
        let mut cpu = Vec::new();
        let mut cpu_secs = Vec::new();
        let mut mem = Vec::new();
        let mut mem_limit = Vec::new();
        for i in &s.instances {
            *by_state
                .entry((i.app.clone(), i.process.clone(), i.state))
                .or_default() += 1;
            let labels: Labels = vec![
                ("app", i.app.clone()),
                ("process", i.process.clone()),
                ("instance", i.instance.clone()),
            ];
            restarts.push((labels.clone(), counter(i.restarts as u64)));
            if let Some(u) = &i.usage {
                if let Some(c) = u.cpu_percent {
                    cpu.push((labels.clone(), gauge(c)));
                }
                cpu_secs.push((labels.clone(), ConstCounter::new(u.cpu_seconds)));
                mem.push((labels.clone(), gauge(u.memory_bytes as f64)));
                mem_limit.push((labels, gauge(u.memory_limit_bytes as f64)));
            }
        }
        let instances = by_state
            .into_iter()
            .map(|((app, process, state), n)| {
                (
                    vec![("app", app), ("process", process), ("state", state.into())],
                    gauge(n as f64),
                )
            })
            .collect();
        family(
            &mut e,
            "caas_instances",
            "Instances by state, as caas ps shows them",
            None,
            instances,
        )?;
        family(
            &mut e,
            "caas_instance_restarts",
            "Restarts of an instance after crashes",
            None,
            restarts,
        )?;
        family(
            &mut e,
            "caas_instance_cpu_percent",
            "CPU of an instance over the last seconds, percent of one core",
            None,
            cpu,
        )?;
        family(
            &mut e,
            "caas_instance_cpu",
            "CPU time an instance's container used",
            Some(&Unit::Seconds),
            cpu_secs,
        )?;
        family(
            &mut e,
            "caas_instance_memory",
            "Memory an instance uses, without its inactive page cache",
            Some(&Unit::Bytes),
            mem,
        )?;
        family(
            &mut e,
            "caas_instance_memory_limit",
            "An instance's memory limit",
            Some(&Unit::Bytes),
            mem_limit,
        )?;

        // Builds and deploys.
        let mut builds: std::collections::BTreeMap<(String, &str), u64> = Default::default();
        let mut durations: std::collections::BTreeMap<String, (Vec<u64>, f64)> = Default::default();
        for b in &s.builds {
            *builds.entry((b.app.clone(), b.status)).or_default() += 1;
            if let Some(secs) = b.seconds {
                let (counts, sum) = durations
                    .entry(b.app.clone())
                    .or_insert_with(|| (vec![0; BUILD_BUCKETS_SECS.len() + 1], 0.0));
                let i = BUILD_BUCKETS_SECS
                    .iter()
                    .position(|bound| secs <= *bound)
                    .unwrap_or(BUILD_BUCKETS_SECS.len());
                counts[i] += 1;
                *sum += secs;
            }
        }
        family(
            &mut e,
            "caas_builds",
            "Builds by status",
            None,
            builds
                .into_iter()
                .map(|((app, status), n)| {
                    (vec![("app", app), ("status", status.into())], counter(n))
                })
                .collect(),
        )?;
        family(
            &mut e,
            "caas_build_duration",
            "How long finished builds took, from upload to their end",
            Some(&Unit::Seconds),
            durations
                .into_iter()
                .map(|(app, (counts, sum))| {
                    (
                        vec![("app", app)],
                        ConstHistogram::from_counts(&BUILD_BUCKETS_SECS, &counts, sum),
                    )
                })
                .collect(),
        )?;
        family(
            &mut e,
            "caas_deploys",
            "Releases by how their rollout ended (deploying: not yet)",
            None,
            s.deploys
                .iter()
                .map(|(app, outcome, n)| {
                    (
                        vec![("app", app.clone()), ("outcome", outcome.to_string())],
                        counter(*n),
                    )
                })
                .collect(),
        )?;

        // The platform itself.
        let none = || -> Labels { Vec::new() };
        family(
            &mut e,
            "caas_store_size",
            "The store's size on disk",
            Some(&Unit::Bytes),
            vec![(none(), gauge(s.store_bytes as f64))],
        )?;
        family(
            &mut e,
            "caas_scheduler_passes",
            "Passes of the scheduler",
            None,
            vec![(none(), counter(s.scheduler_passes))],
        )?;
        family(
            &mut e,
            "caas_agent_heartbeats",
            "Heartbeats received from each host's agent",
            None,
            s.heartbeats
                .iter()
                .map(|(host, n)| (vec![("host", host.clone())], counter(*n)))
                .collect(),
        )?;
        family(
            &mut e,
            "caas_log_lines",
            "Log lines written to apps' logs, by source",
            None,
            s.log_lines
                .iter()
                .map(|(app, source, n)| {
                    (
                        vec![("app", app.clone()), ("source", source.to_string())],
                        counter(*n),
                    )
                })
                .collect(),
        )?;
        family(
            &mut e,
            "caas_log_drain_delivered",
            "Log lines a drain's far end accepted",
            None,
            s.drains
                .iter()
                .map(|(app, id, delivered, _)| {
                    (
                        vec![("app", app.clone()), ("drain", id.clone())],
                        counter(*delivered),
                    )
                })
                .collect(),
        )?;
        family(
            &mut e,
            "caas_log_drain_dropped",
            "Log lines a drain dropped because its queue was full",
            None,
            s.drains
                .iter()
                .map(|(app, id, _, dropped)| {
                    (
                        vec![("app", app.clone()), ("drain", id.clone())],
                        counter(*dropped),
                    )
                })
                .collect(),
        )?;
        family(
            &mut e,
            "caas_log_dropped_lines",
            "Log lines dropped on the way: by an agent's full queue, by the gateway while caasd was away, or missed by a slow reader",
            None,
            s.dropped_lines
                .iter()
                .map(|(place, n)| (vec![("where", place.to_string())], counter(*n)))
                .collect(),
        )?;
        Ok(())
    }
}

/// The snapshot in Prometheus' text format.
pub fn encode(snapshot: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(snapshot)));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("writing to a String does not fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn a_snapshot_reads_back_as_prometheus_text() {
        let mut latency = vec![0; LATENCY_BUCKETS_MS.len() + 1];
        latency[0] = 7; // <= 5 ms
        latency[4] = 2; // <= 100 ms
        latency[LATENCY_BUCKETS_MS.len()] = 1; // past 30 s
        let snapshot = Snapshot {
            traffic: vec![(
                "demo".into(),
                Counts {
                    status: [0, 8, 0, 1, 1],
                    latency,
                    latency_sum_ms: 31_250,
                    bytes: 1234,
                },
            )],
            instances: vec![
                InstanceSample {
                    app: "demo".into(),
                    process: "web".into(),
                    instance: "web.1".into(),
                    state: "up",
                    restarts: 2,
                    usage: Some(InstanceUsage {
                        cpu_percent: Some(12.5),
                        cpu_seconds: 3.25,
                        memory_bytes: 1 << 20,
                        memory_limit_bytes: 512 << 20,
                    }),
                },
                InstanceSample {
                    app: "demo".into(),
                    process: "web".into(),
                    instance: "web.2".into(),
                    state: "up",
                    restarts: 0,
                    usage: None,
                },
            ],
            builds: vec![
                BuildSample {
                    app: "demo".into(),
                    status: "succeeded",
                    seconds: Some(42.0),
                },
                BuildSample {
                    app: "demo".into(),
                    status: "running",
                    seconds: None,
                },
            ],
            deploys: vec![
                ("demo".into(), "failed", 1),
                ("demo".into(), "succeeded", 3),
            ],
            store_bytes: 4096,
            scheduler_passes: 17,
            heartbeats: vec![("local".into(), 9)],
            log_lines: vec![("demo".into(), "app", 100)],
            drains: vec![("demo".into(), "d.1".into(), 90, 10)],
            dropped_lines: vec![("agent", 0), ("gateway", 3), ("reader", 5)],
        };
        let text = encode(snapshot);
        for (series, want) in [
            (
                r#"caas_requests_total{app="demo",process="web",status="2xx"}"#,
                8.0,
            ),
            (
                r#"caas_requests_total{app="demo",process="web",status="5xx"}"#,
                1.0,
            ),
            (
                r#"caas_request_duration_seconds_bucket{app="demo",process="web",le="0.005"}"#,
                7.0,
            ),
            (
                r#"caas_request_duration_seconds_bucket{app="demo",process="web",le="0.1"}"#,
                9.0,
            ),
            (
                r#"caas_request_duration_seconds_bucket{app="demo",process="web",le="+Inf"}"#,
                10.0,
            ),
            (
                r#"caas_request_duration_seconds_count{app="demo",process="web"}"#,
                10.0,
            ),
            (
                r#"caas_request_duration_seconds_sum{app="demo",process="web"}"#,
                31.25,
            ),
            (
                r#"caas_response_bytes_total{app="demo",process="web"}"#,
                1234.0,
            ),
            (
                r#"caas_instances{app="demo",process="web",state="up"}"#,
                2.0,
            ),
            (
                r#"caas_instance_restarts_total{app="demo",process="web",instance="web.1"}"#,
                2.0,
            ),
            (
                r#"caas_instance_cpu_percent{app="demo",process="web",instance="web.1"}"#,
                12.5,
            ),
            (
                r#"caas_instance_cpu_seconds_total{app="demo",process="web",instance="web.1"}"#,
                3.25,
            ),
            (
                r#"caas_instance_memory_bytes{app="demo",process="web",instance="web.1"}"#,
                1048576.0,
            ),
            (r#"caas_builds_total{app="demo",status="succeeded"}"#, 1.0),
            (
                r#"caas_build_duration_seconds_bucket{app="demo",le="60"}"#,
                1.0,
            ),
            (
                r#"caas_build_duration_seconds_bucket{app="demo",le="30"}"#,
                0.0,
            ),
            (
                r#"caas_build_duration_seconds_bucket{app="demo",le="+Inf"}"#,
                1.0,
            ),
            (r#"caas_deploys_total{app="demo",outcome="failed"}"#, 1.0),
            ("caas_store_size_bytes", 4096.0),
            ("caas_scheduler_passes_total", 17.0),
            (r#"caas_agent_heartbeats_total{host="local"}"#, 9.0),
            (r#"caas_log_lines_total{app="demo",source="app"}"#, 100.0),
            (
                r#"caas_log_drain_dropped_total{app="demo",drain="d.1"}"#,
                10.0,
            ),
            (r#"caas_log_dropped_lines_total{where="reader"}"#, 5.0),
        ] {
            assert_eq!(sample(&text, series), Some(want), "{series}\n{text}");
        }
        assert!(
            text.contains("# TYPE caas_requests_total counter"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE caas_request_duration_seconds histogram"),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"caas_instance_cpu_percent{app="demo",process="web",instance="web.2"}"#
            ),
            None,
            "no CPU for an instance without a reading"
        );
    }

    #[test]
    fn an_empty_platform_still_says_its_own_figures() {
        let text = encode(Snapshot::default());
        assert_eq!(sample(&text, "caas_scheduler_passes_total"), Some(0.0));
        assert!(!text.contains("caas_requests_total"), "{text}");
    }
}
