//! Request counts per app, as the gateway reports them: totals since caasd started (for
//! `/metrics`), one slot per second for the last ten minutes (for `caas metrics` and for
//! autoscaling on the requests of the last seconds) and one per minute for the last hour (the
//! dashboard's graphs, `GET /v1/apps/{app}/metrics/history`). Memory only: they are observations, and a
//! restart starts them from zero, as Prometheus counters may.

use caas_api::gateway::{AppTraffic, LATENCY_BUCKETS_MS};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Seconds of history kept per app.
pub const WINDOW_SECS: u64 = 600;
/// Minutes of history kept per app.
pub const HISTORY_MINUTES: u64 = 60;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub status: [u64; 5],
    pub latency: Vec<u64>,
    pub latency_sum_ms: u64,
    pub bytes: u64,
}

impl Counts {
    fn add(&mut self, t: &AppTraffic) {
        for (a, b) in self.status.iter_mut().zip(t.status) {
            *a += b;
        }
        if self.latency.len() < t.latency.len() {
            self.latency.resize(t.latency.len(), 0);
        }
        for (a, b) in self.latency.iter_mut().zip(&t.latency) {
            *a += b;
        }
        self.latency_sum_ms += t.latency_sum_ms;
        self.bytes += t.bytes;
    }

    fn merge(&mut self, other: &Counts) {
        for (a, b) in self.status.iter_mut().zip(other.status) {
            *a += b;
        }
        if self.latency.len() < other.latency.len() {
            self.latency.resize(other.latency.len(), 0);
        }
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            *a += b;
        }
        self.latency_sum_ms += other.latency_sum_ms;
        self.bytes += other.bytes;
    }

    pub fn requests(&self) -> u64 {
        self.status.iter().sum()
    }

    /// The `q` quantile (0..=1) of the latency, as the upper bound of its bucket, ms; `None`
    /// without requests. Past the last bucket it says the last bound.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(
                    LATENCY_BUCKETS_MS
                        .get(i)
                        .copied()
                        .unwrap_or(*LATENCY_BUCKETS_MS.last().expect("buckets")),
                );
            }
        }
        LATENCY_BUCKETS_MS.last().copied()
    }
}

#[derive(Default)]
struct AppSeries {
    total: Counts,
    /// `(second, counts)`, oldest first, at most [`WINDOW_SECS`] of them.
    seconds: VecDeque<(u64, Counts)>,
    /// `(minute, counts)`, oldest first, at most [`HISTORY_MINUTES`] of them.
    minutes: VecDeque<(u64, Counts)>,
}

/// Adds `t` to the slot of `at` (the newest, else a new one) and drops slots `keep` or more
/// before it.
fn add_to_slot(slots: &mut VecDeque<(u64, Counts)>, at: u64, keep: u64, t: &AppTraffic) {
    match slots.back_mut() {
        Some((s, counts)) if *s == at => counts.add(t),
        _ => {
            let mut counts = Counts::default();
            counts.add(t);
            slots.push_back((at, counts));
        }
    }
    while slots
        .front()
        .is_some_and(|(s, _)| at.saturating_sub(*s) >= keep)
    {
        slots.pop_front();
    }
}

#[derive(Default)]
pub struct Traffic {
    apps: Mutex<HashMap<String, AppSeries>>,
    /// Per release of an app, while it runs a canary: `caas metrics` side by side, and what
    /// `--auto` judges the canary by.
    releases: Mutex<HashMap<(String, u64), AppSeries>>,
}

impl AppSeries {
    fn add(&mut self, now_secs: u64, t: &AppTraffic) {
        self.total.add(t);
        add_to_slot(&mut self.seconds, now_secs, WINDOW_SECS, t);
        add_to_slot(&mut self.minutes, now_secs / 60, HISTORY_MINUTES, t);
    }

    /// Everything of the last `secs` seconds up to `now_secs` (this second included).
    fn window(&self, now_secs: u64, secs: u64) -> Counts {
        let mut out = Counts::default();
        for (s, c) in &self.seconds {
            if now_secs.saturating_sub(*s) < secs {
                out.merge(c);
            }
        }
        out
    }
}

impl Traffic {
    /// Adds a gateway's report, counted in the second `now_secs`.
    pub fn record(&self, now_secs: u64, traffic: &[AppTraffic]) {
        let mut apps = self.apps.lock().unwrap();
        let mut releases = self.releases.lock().unwrap();
        for t in traffic {
            match t.release {
                None => apps.entry(t.app.clone()).or_default().add(now_secs, t),
                Some(v) => releases
                    .entry((t.app.clone(), v))
                    .or_default()
                    .add(now_secs, t),
            }
        }
    }

    /// Everything of the last `secs` seconds up to `now_secs` (this second included).
    pub fn window(&self, app: &str, now_secs: u64, secs: u64) -> Counts {
        let apps = self.apps.lock().unwrap();
        apps.get(app)
            .map(|s| s.window(now_secs, secs))
            .unwrap_or_default()
    }

    /// [`Traffic::window`] of one release of the app (counted while it ran a canary).
    pub fn release_window(&self, app: &str, version: u64, now_secs: u64, secs: u64) -> Counts {
        let releases = self.releases.lock().unwrap();
        releases
            .get(&(app.to_string(), version))
            .map(|s| s.window(now_secs, secs))
            .unwrap_or_default()
    }

    /// The app's counts of each of the last [`HISTORY_MINUTES`] minutes, oldest first, the
    /// current one last; a minute without requests has none.
    pub fn minutes(&self, app: &str, now_secs: u64) -> Vec<Counts> {
        let now = now_secs / 60;
        let mut out = vec![Counts::default(); HISTORY_MINUTES as usize];
        if let Some(series) = self.apps.lock().unwrap().get(app) {
            for (m, c) in &series.minutes {
                if let Some(back) = now.checked_sub(*m).filter(|b| *b < HISTORY_MINUTES) {
                    out[(HISTORY_MINUTES - 1 - back) as usize] = c.clone();
                }
            }
        }
        out
    }

    /// Totals since caasd started, per app (for `/metrics`).
    pub fn totals(&self) -> Vec<(String, Counts)> {
        let apps = self.apps.lock().unwrap();
        let mut out: Vec<(String, Counts)> = apps
            .iter()
            .map(|(k, v)| (k.clone(), v.total.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Forgets an app (it was destroyed).
    pub fn remove(&self, app: &str) {
        self.apps.lock().unwrap().remove(app);
        self.releases.lock().unwrap().retain(|(a, _), _| a != app);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(app: &str, ok: u64, errors: u64, bucket: usize) -> AppTraffic {
        let mut latency = vec![0; LATENCY_BUCKETS_MS.len() + 1];
        latency[bucket] = ok + errors;
        AppTraffic {
            app: app.into(),
            release: None,
            status: [0, ok, 0, 0, errors],
            latency,
            latency_sum_ms: 0,
            bytes: 10,
        }
    }

    #[test]
    fn windows_count_the_last_seconds_and_totals_everything() {
        let traffic = Traffic::default();
        traffic.record(100, &[t("a", 5, 0, 0)]);
        traffic.record(100, &[t("a", 5, 1, 0)]);
        traffic.record(105, &[t("a", 20, 0, 4)]);
        traffic.record(105, &[t("b", 1, 0, 0)]);
        let last10 = traffic.window("a", 105, 10);
        assert_eq!(last10.requests(), 31);
        assert_eq!(last10.status[4], 1);
        let last3 = traffic.window("a", 105, 3);
        assert_eq!(last3.requests(), 20);
        assert_eq!(traffic.window("a", 200, 10).requests(), 0);
        assert_eq!(traffic.window("nobody", 105, 10), Counts::default());
        let totals = traffic.totals();
        assert_eq!(totals[0].0, "a");
        assert_eq!(totals[0].1.requests(), 31);
        assert_eq!(totals[0].1.bytes, 30);
    }

    #[test]
    fn releases_are_counted_apart_from_their_app() {
        let traffic = Traffic::default();
        let mut canary = t("a", 1, 3, 0);
        canary.release = Some(3);
        traffic.record(100, &[t("a", 9, 3, 0), canary]);
        assert_eq!(traffic.window("a", 100, 10).requests(), 12);
        let c = traffic.release_window("a", 3, 100, 10);
        assert_eq!((c.requests(), c.status[4]), (4, 3));
        assert_eq!(traffic.release_window("a", 2, 100, 10).requests(), 0);
        traffic.remove("a");
        assert_eq!(traffic.release_window("a", 3, 100, 10).requests(), 0);
    }

    #[test]
    fn history_is_bounded_to_the_window() {
        let traffic = Traffic::default();
        for s in 0..(WINDOW_SECS * 2) {
            traffic.record(s, &[t("a", 1, 0, 0)]);
        }
        let apps = traffic.apps.lock().unwrap();
        assert_eq!(apps["a"].seconds.len() as u64, WINDOW_SECS);
        assert_eq!(apps["a"].total.requests(), WINDOW_SECS * 2);
    }

    #[test]
    fn minutes_cover_the_last_hour_oldest_first() {
        let traffic = Traffic::default();
        // Two hours of one request a second: only the last hour's minutes are kept.
        for s in 0..(2 * 3600) {
            traffic.record(s, &[t("a", 1, 0, 0)]);
        }
        traffic.record(2 * 3600 - 1, &[t("a", 0, 2, 0)]);
        assert_eq!(
            traffic.apps.lock().unwrap()["a"].minutes.len() as u64,
            HISTORY_MINUTES
        );
        let minutes = traffic.minutes("a", 2 * 3600 - 1);
        assert_eq!(minutes.len() as u64, HISTORY_MINUTES);
        assert!(minutes[..59].iter().all(|c| c.requests() == 60));
        assert_eq!((minutes[59].requests(), minutes[59].status[4]), (62, 2));
        // Ten minutes later, the newest ten minutes had no requests.
        let later = traffic.minutes("a", 2 * 3600 - 1 + 600);
        assert!(later[50..].iter().all(|c| c.requests() == 0));
        assert_eq!(later[49].requests(), 62);
        assert!(traffic
            .minutes("nobody", 0)
            .iter()
            .all(|c| c.requests() == 0));
    }

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut c = Counts {
            latency: vec![0; LATENCY_BUCKETS_MS.len() + 1],
            ..Counts::default()
        };
        assert_eq!(c.quantile_ms(0.5), None);
        c.latency[0] = 90; // <= 5 ms
        c.latency[5] = 9; // <= 250 ms
        c.latency[LATENCY_BUCKETS_MS.len()] = 1; // slower than the last bound
        assert_eq!(c.quantile_ms(0.5), Some(5));
        assert_eq!(c.quantile_ms(0.95), Some(250));
        assert_eq!(c.quantile_ms(1.0), Some(30_000));
    }
}
