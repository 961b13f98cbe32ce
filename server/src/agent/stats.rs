//! CPU and memory of the running containers, for the heartbeat. A task of its own reads them from
//! the engine every [`EVERY`] (one `stats` call per container, all at once), not the agent's pass
//! every second: a reading costs the engine a few milliseconds of CPU per container (see
//! `bench/README.md`), too much to pay per container per second. CPU is a rate, computed from two
//! readings.

use crate::docker::{Engine, Usage};
use caas_api::metrics::InstanceUsage;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How often the running containers are read.
pub const EVERY: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
struct Reading {
    at: Instant,
    usage: Usage,
    cpu_percent: Option<f64>,
}

#[derive(Default)]
struct Inner {
    /// Containers to read: the running ones of assigned instances.
    running: HashSet<String>,
    readings: HashMap<String, Reading>,
}

/// The readings; the task that takes them ends when this is dropped.
pub(super) struct Stats {
    inner: Arc<Mutex<Inner>>,
    task: JoinHandle<()>,
}

impl Drop for Stats {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// CPU in percent of one core between two readings `elapsed` apart.
pub fn cpu_percent(before: u64, after: u64, elapsed: Duration) -> Option<f64> {
    let wall = elapsed.as_nanos() as f64;
    if after < before || wall <= 0.0 {
        return None; // the container restarted meanwhile: its counter started again
    }
    Some((after - before) as f64 / wall * 100.0)
}

impl Stats {
    pub fn start(engine: Engine) -> Stats {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let task = tokio::spawn(read_every(engine, inner.clone()));
        Stats { inner, task }
    }

    /// The containers to read from now on; readings of others are forgotten.
    pub fn watch<'a>(&self, running: impl Iterator<Item = &'a str>) {
        let mut inner = self.inner.lock().unwrap();
        inner.running = running.map(str::to_string).collect();
        let Inner { running, readings } = &mut *inner;
        readings.retain(|id, _| running.contains(id));
    }

    /// The last reading of a container.
    pub fn usage(&self, container_id: &str) -> Option<InstanceUsage> {
        let inner = self.inner.lock().unwrap();
        let r = inner.readings.get(container_id)?;
        Some(InstanceUsage {
            cpu_percent: r.cpu_percent.map(|c| (c * 10.0).round() / 10.0),
            cpu_seconds: r.usage.cpu_nanos as f64 / 1e9,
            memory_bytes: r.usage.memory_bytes,
            memory_limit_bytes: r.usage.memory_limit,
        })
    }
}

async fn read_every(engine: Engine, inner: Arc<Mutex<Inner>>) {
    let mut ticker = tokio::time::interval(EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let ids: Vec<String> = inner.lock().unwrap().running.iter().cloned().collect();
        if ids.is_empty() {
            continue;
        }
        let started = Instant::now();
        let reads = ids.iter().map(|id| {
            let engine = engine.clone();
            async move { (id, engine.usage(id).await) }
        });
        let results = futures_util::future::join_all(reads).await;
        tracing::debug!(
            containers = ids.len(),
            ms = started.elapsed().as_millis() as u64,
            "read the containers' stats"
        );
        let mut inner = inner.lock().unwrap();
        for (id, result) in results {
            let Ok(Some(usage)) = result else {
                inner.readings.remove(id);
                continue;
            };
            if !inner.running.contains(id) {
                continue;
            }
            let at = Instant::now();
            let cpu_percent = inner
                .readings
                .get(id)
                .and_then(|r| cpu_percent(r.usage.cpu_nanos, usage.cpu_nanos, at - r.at));
            inner.readings.insert(
                id.clone(),
                Reading {
                    at,
                    usage,
                    cpu_percent,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_a_rate_between_two_readings() {
        let s = Duration::from_secs;
        for (before, after, elapsed, want) in [
            (0, 0, s(5), Some(0.0)),
            (1_000_000_000, 3_500_000_000, s(5), Some(50.0)),
            (0, 10_000_000_000, s(5), Some(200.0)), // two cores
            (5_000_000_000, 1_000, s(5), None),     // restarted: the counter went back
            (0, 10, Duration::ZERO, None),
        ] {
            assert_eq!(
                cpu_percent(before, after, elapsed),
                want,
                "{before} {after} {elapsed:?}"
            );
        }
    }
}
