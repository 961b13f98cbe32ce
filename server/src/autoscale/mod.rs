//! The autoscaler: an intent writer beside the API. Every second it reads the observations (the
//! gateway's request counts, the instances' CPU), asks the pure [`policy`] what each autoscaled
//! process type needs, and writes the formation through the store call `ps:scale` uses, then
//! wakes the scheduler: rollouts, health gating and placement apply to what it adds as to any
//! scale. It never touches allocations. Every change it makes is a `caas[autoscale]` line with
//! its reason.

pub mod policy;

use crate::logs::LogHub;
use crate::observed::Observed;
use crate::store::{Desired, Store, StoreError, UpdateError};
use crate::traffic::Traffic;
use caas_api::Timestamp;
use policy::{Decision, Memory, Observation};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(1);
/// The window requests per second are measured over.
pub const RPS_WINDOW_SECS: u64 = 10;

/// What the autoscaler last saw and did, per app and process type, for `caas autoscale`.
#[derive(Default)]
pub struct Status {
    inner: Mutex<HashMap<(String, String), Seen>>,
}

#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Requests/s (all instances) or mean CPU percent, as the target is.
    pub observed: Option<f64>,
    pub last_decision: Option<(String, Timestamp)>,
}

impl Status {
    pub fn get(&self, app: &str, process: &str) -> Seen {
        self.inner
            .lock()
            .unwrap()
            .get(&(app.to_string(), process.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    fn observed(&self, app: &str, process: &str, value: Option<f64>) {
        self.inner
            .lock()
            .unwrap()
            .entry((app.to_string(), process.to_string()))
            .or_default()
            .observed = value;
    }

    fn decided(&self, app: &str, process: &str, text: String, at: Timestamp) {
        self.inner
            .lock()
            .unwrap()
            .entry((app.to_string(), process.to_string()))
            .or_default()
            .last_decision = Some((text, at));
    }

    fn retain(&self, keep: impl Fn(&(String, String)) -> bool) {
        self.inner.lock().unwrap().retain(|k, _| keep(k));
    }
}

pub struct Autoscaler {
    pub store: Store,
    pub traffic: Arc<Traffic>,
    pub observed: Arc<Observed>,
    pub logs: Arc<LogHub>,
    pub wake: Arc<Notify>,
    pub status: Arc<Status>,
    /// `caasd --max-scale`.
    pub max_scale: u32,
}

impl Autoscaler {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut memory: HashMap<(String, String), Memory> = HashMap::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
            if let Err(e) = self.pass(&mut memory).await {
                tracing::error!("autoscaler: {e}");
            }
        }
    }

    async fn pass(&self, memory: &mut HashMap<(String, String), Memory>) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let apps: Vec<_> = self
            .store
            .apps()?
            .into_iter()
            .filter(|a| !a.autoscale.is_empty())
            .collect();
        let live = |k: &(String, String)| {
            apps.iter()
                .any(|a| a.name == k.0 && a.autoscale.contains_key(&k.1))
        };
        memory.retain(|k, _| live(k));
        self.status.retain(live);
        if apps.is_empty() {
            return Ok(());
        }
        let wants_cpu = apps
            .iter()
            .any(|a| a.autoscale.values().any(|s| s.cpu_percent.is_some()));
        let allocations = if wants_cpu {
            self.store.allocations()?
        } else {
            Vec::new()
        };
        for app in &apps {
            let window = self
                .traffic
                .window(&app.name, now.millis() / 1000, RPS_WINDOW_SECS);
            let rps = window.requests() as f64 / RPS_WINDOW_SECS as f64;
            for (process, settings) in &app.autoscale {
                let mut cpu = None;
                let mut with_cpu = 0;
                for a in allocations.iter().filter(|a| {
                    a.app == app.name
                        && &a.process == process
                        && a.desired == Desired::Run
                        && Some(a.release) == app.release.or(app.deploying)
                }) {
                    if let Some(c) = self
                        .observed
                        .report(&a.id)
                        .and_then(|r| r.usage)
                        .and_then(|u| u.cpu_percent)
                    {
                        *cpu.get_or_insert(0.0) += c;
                        with_cpu += 1;
                    }
                }
                let obs = Observation {
                    quantity: app.formation.get(process).copied().unwrap_or(0),
                    rps,
                    cpu,
                    with_cpu,
                };
                let shown = match settings.cpu_percent {
                    Some(_) => cpu.map(|c| c / with_cpu.max(1) as f64),
                    None => Some(rps),
                };
                self.status.observed(&app.name, process, shown);
                let key = (app.name.clone(), process.clone());
                let m = memory.entry(key).or_default();
                if let Decision::Scale { to, reason } =
                    policy::decide(&obs, settings, self.max_scale, m, now)
                {
                    self.scale(&app.name, process, obs.quantity, to, &reason, now)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Writes the formation as `ps:scale` does, if the process type is still autoscaled.
    async fn scale(
        &self,
        app: &str,
        process: &str,
        from: u32,
        to: u32,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut done = false;
        let result = self.store.update_app::<std::convert::Infallible>(app, |a| {
            if a.autoscale.contains_key(process) {
                a.formation.insert(process.to_string(), to);
                done = true;
            }
            Ok(())
        });
        match result {
            Ok(_) => {}
            Err(UpdateError::Store(StoreError::NotFound)) => return Ok(()), // destroyed meanwhile
            Err(UpdateError::Store(e)) => return Err(e),
            Err(UpdateError::Rejected(never)) => match never {},
        }
        if !done {
            return Ok(());
        }
        self.store.flush().await?;
        let text = format!("Scaled {process} from {from} to {to}: {reason}");
        self.logs.event(app, "autoscale", text.clone());
        self.status.decided(app, process, text, now);
        self.wake.notify_one();
        Ok(())
    }
}
