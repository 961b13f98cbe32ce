//! What the gateway tells the control plane: one router line per request and per-app request
//! counts (by status class, latency bucket, bytes). The request path only appends to memory;
//! [`Reporter::ship`] sends what piled up every [`SHIP_EVERY`] (`POST /v1/gateway/report`), and
//! keeps it, bounded, while the control plane is away.

use caas_api::agent::AppLogLine;
use caas_api::gateway::{AppTraffic, GatewayReport, LATENCY_BUCKETS_MS};
use caas_api::{LogLine, LogSource, Timestamp};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How often reports go out.
pub const SHIP_EVERY: Duration = Duration::from_millis(200);
/// Router lines held while the control plane does not answer; older ones are dropped first.
const MAX_LINES: usize = 50_000;

#[derive(Default)]
pub struct Reporter {
    pending: Mutex<Pending>,
    /// The routing table's index the gateway serves, and a wake-up for the shipper when it
    /// changes (reported at once: a deploy waits for it).
    serving: std::sync::atomic::AtomicU64,
    pub changed: tokio::sync::Notify,
}

#[derive(Default)]
struct Pending {
    lines: Vec<AppLogLine>,
    /// By app, and by app and release while a canary runs (the app's own entry counts every
    /// request).
    traffic: HashMap<(String, Option<u64>), AppTraffic>,
    dropped: u64,
}

/// Which bucket of [`LATENCY_BUCKETS_MS`] a duration falls in (the last for slower ones).
fn bucket(ms: u64) -> usize {
    LATENCY_BUCKETS_MS
        .iter()
        .position(|&upper| ms <= upper)
        .unwrap_or(LATENCY_BUCKETS_MS.len())
}

impl Reporter {
    /// A router line for `app`.
    pub fn line(&self, app: &str, text: String) {
        let mut p = self.pending.lock().unwrap();
        if p.lines.len() >= MAX_LINES {
            p.dropped += 1;
            return;
        }
        p.lines.push(AppLogLine {
            app: app.to_string(),
            line: LogLine {
                ts: Timestamp::now(),
                source: LogSource::Router,
                tag: "router".into(),
                text,
            },
        });
    }

    /// One answered request of `app`; `release` while a canary runs (the one that answered).
    pub fn request(
        &self,
        app: &str,
        release: Option<u64>,
        status: u16,
        elapsed: Duration,
        bytes: u64,
    ) {
        let ms = elapsed.as_millis().min(u64::MAX as u128) as u64;
        let mut p = self.pending.lock().unwrap();
        for release in [Some(None), release.map(Some)].into_iter().flatten() {
            let t = p
                .traffic
                .entry((app.to_string(), release))
                .or_insert_with(|| AppTraffic {
                    app: app.to_string(),
                    release,
                    latency: vec![0; LATENCY_BUCKETS_MS.len() + 1],
                    ..AppTraffic::default()
                });
            let class = (status / 100).clamp(1, 5) as usize - 1;
            t.status[class] += 1;
            t.latency[bucket(ms)] += 1;
            t.latency_sum_ms += ms;
            t.bytes += bytes;
        }
    }

    /// The gateway now serves the table with this index.
    pub fn serving(&self, index: u64) {
        self.serving
            .store(index, std::sync::atomic::Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// Everything since the last take.
    pub fn take(&self) -> GatewayReport {
        let mut p = self.pending.lock().unwrap();
        let serving = self.serving.load(std::sync::atomic::Ordering::Relaxed);
        GatewayReport {
            lines: std::mem::take(&mut p.lines),
            traffic: std::mem::take(&mut p.traffic).into_values().collect(),
            dropped_lines: std::mem::take(&mut p.dropped),
            serving_index: (serving != 0).then_some(serving),
        }
    }

    /// Puts back a report that could not be sent: its lines before the newer ones (the oldest
    /// dropped past the bound), its counts added to those since.
    pub fn restore(&self, report: GatewayReport) {
        let mut p = self.pending.lock().unwrap();
        let mut lines = report.lines;
        lines.append(&mut p.lines);
        if lines.len() > MAX_LINES {
            let excess = lines.len() - MAX_LINES;
            lines.drain(..excess);
            p.dropped += excess as u64;
        }
        p.lines = lines;
        p.dropped += report.dropped_lines;
        for t in report.traffic {
            match p.traffic.get_mut(&(t.app.clone(), t.release)) {
                None => {
                    p.traffic.insert((t.app.clone(), t.release), t);
                }
                Some(now) => {
                    for (a, b) in now.status.iter_mut().zip(t.status) {
                        *a += b;
                    }
                    for (a, b) in now.latency.iter_mut().zip(t.latency) {
                        *a += b;
                    }
                    now.latency_sum_ms += t.latency_sum_ms;
                    now.bytes += t.bytes;
                }
            }
        }
    }

    /// Lines waiting to be sent (tests).
    #[cfg(test)]
    pub fn lines(&self) -> Vec<String> {
        let p = self.pending.lock().unwrap();
        p.lines.iter().map(|l| l.line.text.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_class_and_bucket() {
        let r = Reporter::default();
        r.request("a", None, 200, Duration::from_millis(3), 10);
        r.request("a", None, 204, Duration::from_millis(70), 0);
        r.request("a", None, 503, Duration::from_secs(60), 5);
        r.request("b", None, 404, Duration::from_millis(10), 1);
        let mut report = r.take();
        report.traffic.sort_by(|x, y| x.app.cmp(&y.app));
        let a = &report.traffic[0];
        assert_eq!(a.status, [0, 2, 0, 0, 1]);
        assert_eq!(a.latency[0], 1, "3 ms is in the 5 ms bucket");
        assert_eq!(a.latency[4], 1, "70 ms is in the 100 ms bucket");
        assert_eq!(
            a.latency[LATENCY_BUCKETS_MS.len()],
            1,
            "60 s is past the last"
        );
        assert_eq!(a.latency_sum_ms, 60_073);
        assert_eq!(a.bytes, 15);
        assert_eq!(report.traffic[1].status, [0, 0, 0, 1, 0]);
        assert!(r.take().traffic.is_empty(), "a take empties it");
    }

    #[test]
    fn a_canary_app_is_counted_whole_and_by_release() {
        let r = Reporter::default();
        r.request("a", Some(3), 500, Duration::from_millis(3), 0);
        r.request("a", Some(2), 200, Duration::from_millis(3), 0);
        r.request("a", Some(2), 200, Duration::from_millis(3), 0);
        let mut report = r.take();
        report.traffic.sort_by_key(|t| t.release);
        let got: Vec<(Option<u64>, [u64; 5])> = report
            .traffic
            .iter()
            .map(|t| (t.release, t.status))
            .collect();
        assert_eq!(
            got,
            [
                (None, [0, 2, 0, 0, 1]),
                (Some(2), [0, 2, 0, 0, 0]),
                (Some(3), [0, 0, 0, 0, 1])
            ]
        );
    }

    #[test]
    fn an_unsent_report_comes_back_in_order_and_bounded() {
        let r = Reporter::default();
        r.line("a", "one".into());
        r.request("a", None, 200, Duration::from_millis(1), 1);
        let unsent = r.take();
        r.line("a", "two".into());
        r.request("a", None, 500, Duration::from_millis(1), 1);
        r.restore(unsent);
        assert_eq!(r.lines(), ["one", "two"]);
        let report = r.take();
        assert_eq!(report.traffic[0].status, [0, 1, 0, 0, 1]);

        for i in 0..MAX_LINES + 10 {
            r.line("a", i.to_string());
        }
        let full = r.take();
        assert_eq!(full.lines.len(), MAX_LINES);
        assert_eq!(full.dropped_lines, 10);
        r.line("a", "late".into());
        r.restore(full);
        let again = r.take();
        assert_eq!(again.lines.len(), MAX_LINES);
        assert_eq!(again.lines.last().unwrap().line.text, "late");
        assert_eq!(again.dropped_lines, 11);
    }
}
