//! The last hour of every app's resource use, one slot a minute per process type (the
//! dashboard's CPU and memory graphs, `GET /v1/apps/{app}/metrics/history`). Agents report each
//! instance's latest reading in their heartbeats (`observed.rs`); [`sample`] adds them up per
//! app and process type every [`SAMPLE_EVERY`] and keeps, per minute, the sum of the CPU
//! readings (for their average) and the highest memory reading. Memory only, bounded: at most
//! [`HISTORY_MINUTES`] slots per app and process type; an app without instances ages out.

use crate::observed::Observed;
use crate::store::Store;
use crate::traffic::HISTORY_MINUTES;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// One minute of one process type.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Slot {
    minute: u64,
    cpu_sum: f64,
    cpu_readings: u32,
    memory_max: u64,
}

/// One sample: per app and process type, the CPU (percent of a core, if read) and memory
/// (bytes) of all its instances together.
pub type Sample = HashMap<String, BTreeMap<String, (Option<f64>, u64)>>;

#[derive(Default)]
pub struct UsageHistory {
    /// App → process type → slots, oldest first.
    apps: Mutex<HashMap<String, BTreeMap<String, VecDeque<Slot>>>>,
}

/// One minute of an app: per process type, its average CPU and highest memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MinuteUsage {
    pub cpu_percent: BTreeMap<String, f64>,
    pub memory_bytes: BTreeMap<String, u64>,
}

impl UsageHistory {
    /// Adds one sample taken at `now_secs`, and drops what is older than the hour.
    pub fn record(&self, now_secs: u64, sample: &Sample) {
        let minute = now_secs / 60;
        let mut apps = self.apps.lock().unwrap();
        for (app, processes) in sample {
            let slots = apps.entry(app.clone()).or_default();
            for (process, (cpu, memory)) in processes {
                let slots = slots.entry(process.clone()).or_default();
                if slots.back().is_none_or(|s| s.minute != minute) {
                    slots.push_back(Slot {
                        minute,
                        ..Slot::default()
                    });
                }
                let slot = slots.back_mut().expect("pushed above");
                if let Some(cpu) = cpu {
                    slot.cpu_sum += cpu;
                    slot.cpu_readings += 1;
                }
                slot.memory_max = slot.memory_max.max(*memory);
            }
        }
        for processes in apps.values_mut() {
            for slots in processes.values_mut() {
                while slots
                    .front()
                    .is_some_and(|s| minute.saturating_sub(s.minute) >= HISTORY_MINUTES)
                {
                    slots.pop_front();
                }
            }
            processes.retain(|_, slots| !slots.is_empty());
        }
        apps.retain(|_, processes| !processes.is_empty());
    }

    /// The app's last [`HISTORY_MINUTES`] minutes, oldest first, the current one last.
    pub fn minutes(&self, app: &str, now_secs: u64) -> Vec<MinuteUsage> {
        let now = now_secs / 60;
        let mut out = vec![MinuteUsage::default(); HISTORY_MINUTES as usize];
        let apps = self.apps.lock().unwrap();
        for (process, slots) in apps.get(app).into_iter().flatten() {
            for slot in slots {
                let Some(back) = now
                    .checked_sub(slot.minute)
                    .filter(|b| *b < HISTORY_MINUTES)
                else {
                    continue;
                };
                let m = &mut out[(HISTORY_MINUTES - 1 - back) as usize];
                if slot.cpu_readings > 0 {
                    let average = slot.cpu_sum / f64::from(slot.cpu_readings);
                    m.cpu_percent.insert(process.clone(), average);
                }
                m.memory_bytes.insert(process.clone(), slot.memory_max);
            }
        }
        out
    }

    /// Forgets an app (destroyed, or renamed: its old name's figures).
    pub fn remove(&self, app: &str) {
        self.apps.lock().unwrap().remove(app);
    }
}

/// Adds up the instances' last readings per app and process type.
fn take(store: &Store, observed: &Observed) -> crate::store::Result<Sample> {
    let usages = observed.usages();
    let mut sample = Sample::new();
    for a in store.allocations()? {
        let Some(u) = usages.get(&a.id) else {
            continue;
        };
        let entry = sample
            .entry(a.app.clone())
            .or_default()
            .entry(a.process.clone())
            .or_default();
        if let Some(cpu) = u.cpu_percent {
            entry.0 = Some(entry.0.unwrap_or(0.0) + cpu);
        }
        entry.1 += u.memory_bytes;
    }
    Ok(sample)
}

/// Samples every [`SAMPLE_EVERY`] until `shutdown`.
pub async fn sample(
    store: Store,
    observed: Arc<Observed>,
    history: Arc<UsageHistory>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match take(&store, &observed) {
            Ok(s) => history.record(caas_api::Timestamp::now().millis() / 1000, &s),
            Err(e) => tracing::warn!("sampling the instances' resource use: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(app: &str, process: &str, cpu: Option<f64>, memory: u64) -> Sample {
        HashMap::from([(
            app.to_string(),
            BTreeMap::from([(process.to_string(), (cpu, memory))]),
        )])
    }

    #[test]
    fn a_minute_averages_cpu_keeps_the_highest_memory_and_the_hour_is_bounded() {
        let h = UsageHistory::default();
        h.record(600, &sample("a", "web", Some(10.0), 100));
        h.record(610, &sample("a", "web", Some(30.0), 300));
        h.record(620, &sample("a", "web", None, 200));
        h.record(620, &sample("a", "worker", Some(5.0), 50));
        let m = h.minutes("a", 659);
        assert_eq!(m.len() as u64, HISTORY_MINUTES);
        assert_eq!(m[59].cpu_percent["web"], 20.0);
        assert_eq!(m[59].memory_bytes["web"], 300);
        assert_eq!(m[59].cpu_percent["worker"], 5.0);
        assert!(m[58].cpu_percent.is_empty());
        // Half an hour on, the minute is 30 back; an hour on, it is gone, and so is the app.
        assert_eq!(h.minutes("a", 659 + 1800)[29].memory_bytes["web"], 300);
        h.record(600 + 3600, &sample("b", "web", None, 1));
        assert!(h
            .minutes("a", 600 + 3600)
            .iter()
            .all(|m| m.memory_bytes.is_empty()));
        assert!(!h.apps.lock().unwrap().contains_key("a"));
        h.remove("b");
        assert!(h.apps.lock().unwrap().is_empty());
    }
}
