//! What caasd counts about itself for `GET /metrics` (scheduler passes, agent heartbeats, log
//! lines dropped on the way), and the Prometheus exposition of everything it knows
//! (`expose.rs`). The per-app figures live where they are made (the gateway's counts in
//! `traffic.rs`, instances in `observed.rs`, builds and releases in the store, log lines in the
//! hub); a scrape gathers them into a [`expose::Snapshot`] and encodes that.

pub mod expose;
pub mod history;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters of the platform's own work, since caasd started.
#[derive(Default)]
pub struct Counters {
    scheduler_passes: AtomicU64,
    /// Per host id.
    heartbeats: Mutex<BTreeMap<String, u64>>,
    agent_dropped_lines: AtomicU64,
    gateway_dropped_lines: AtomicU64,
    reader_missed_lines: AtomicU64,
}

/// Where log lines were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// An agent's queue to the control plane was full (its own events; app output waits).
    Agent,
    /// The gateway held router lines longer than it could while the control plane was away.
    Gateway,
    /// A `caas logs --tail` reader fell behind (it is told how many).
    Reader,
}

impl Counters {
    pub fn scheduler_pass(&self) {
        self.scheduler_passes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn heartbeat(&self, host_id: &str) {
        *self
            .heartbeats
            .lock()
            .unwrap()
            .entry(host_id.to_string())
            .or_default() += 1;
    }

    pub fn dropped(&self, place: Dropped, lines: u64) {
        let counter = match place {
            Dropped::Agent => &self.agent_dropped_lines,
            Dropped::Gateway => &self.gateway_dropped_lines,
            Dropped::Reader => &self.reader_missed_lines,
        };
        counter.fetch_add(lines, Ordering::Relaxed);
    }

    pub fn scheduler_passes(&self) -> u64 {
        self.scheduler_passes.load(Ordering::Relaxed)
    }

    pub fn heartbeats(&self) -> BTreeMap<String, u64> {
        self.heartbeats.lock().unwrap().clone()
    }

    pub fn dropped_lines(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("agent", self.agent_dropped_lines.load(Ordering::Relaxed)),
            (
                "gateway",
                self.gateway_dropped_lines.load(Ordering::Relaxed),
            ),
            ("reader", self.reader_missed_lines.load(Ordering::Relaxed)),
        ]
    }
}
