//! One-off processes: `caas run` and the release phase. A one-off is a container of a release
//! (its image, its config, the app's limits, on the installation's network) that runs one
//! command once, on the control plane's own host, and is removed when it ends.
//!
//! One-offs are not allocations: the scheduler never places, restarts or moves them, and the
//! agent never sees them (their labels carry no host, so the agent's "not assigned: remove"
//! rule does not apply). The registry here is what `caas ps` lists; it is memory, and a caasd
//! that restarts removes the one-off containers the previous process left (`recover`).

pub mod release_phase;
pub mod session;

use crate::docker::{Attached, Command, ContainerSpec, Engine, EngineError, Stdio};
use crate::labels;
use crate::logs::LogHub;
use crate::store::ReleaseRecord;
use caas_api::{LogLine, LogSource, Timestamp};
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The label that marks a one-off container (its value is the app).
const LABEL_ONEOFF: &str = "caas.oneoff";
const CPU_SHARES: u64 = 1024;
const PIDS_LIMIT: i64 = 512;

/// What the runner needs to know of the installation.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub cluster_id: String,
    /// The control plane's host, where one-offs run (shown by `caas ps`).
    pub host_name: String,
    /// Memory of a one-off whose release names none for `run` or `web` (`--instance-memory`).
    pub memory_mb: u64,
}

/// A running one-off, as `caas ps` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub app: String,
    /// `run` or `release`.
    pub process: String,
    pub index: u32,
    pub release: u64,
    pub container: String,
    pub started_at: Timestamp,
    pub memory_mb: u64,
    pub cpus: Option<f64>,
}

impl RunInfo {
    /// `run.3`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.process, self.index)
    }
}

/// What to run.
pub struct Start<'a> {
    pub release: &'a ReleaseRecord,
    /// `run` for `caas run`, `release` for the release phase.
    pub process: &'static str,
    pub argv: Vec<String>,
    pub stdio: Stdio,
    pub term: Option<String>,
    /// Attach to its output (and stdin, when `stdio.stdin`) before it starts.
    pub attach: bool,
}

#[derive(Default)]
struct AppRuns {
    /// The last index given, per process type: `run.N` numbers only grow while caasd runs.
    last: HashMap<String, u32>,
    running: BTreeMap<String, RunInfo>,
}

pub struct Runner {
    engine: Engine,
    logs: Arc<LogHub>,
    /// For the app's add-ons, whose networks a one-off joins as its instances do.
    store: crate::store::Store,
    settings: RunSettings,
    runs: Mutex<HashMap<String, AppRuns>>,
}

impl Runner {
    pub fn new(
        engine: Engine,
        logs: Arc<LogHub>,
        store: crate::store::Store,
        settings: RunSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            engine,
            logs,
            store,
            settings,
            runs: Mutex::default(),
        })
    }

    pub fn host_name(&self) -> &str {
        &self.settings.host_name
    }

    /// The app's one-offs running now.
    pub fn running(&self, app: &str) -> Vec<RunInfo> {
        let runs = self.runs.lock().unwrap();
        runs.get(app)
            .map(|r| r.running.values().cloned().collect())
            .unwrap_or_default()
    }

    /// After a restart: the one-offs the previous process ran are nobody's now (their clients
    /// lost their connection with it); remove them.
    pub async fn recover(&self) {
        let cluster = self.settings.cluster_id.as_str();
        let found = self
            .engine
            .list_containers(&[(labels::CLUSTER, cluster)])
            .await;
        for c in found.unwrap_or_default() {
            if c.labels.contains_key(LABEL_ONEOFF) {
                let _ = self.engine.remove(&c.id).await;
            }
        }
    }

    /// Creates the one-off's container, attaches to it when asked, and starts it.
    pub async fn start(&self, s: Start<'_>) -> Result<(RunInfo, Option<Attached>), EngineError> {
        let r = s.release;
        let index = {
            let mut runs = self.runs.lock().unwrap();
            let app = runs.entry(r.app.clone()).or_default();
            let n = app.last.entry(s.process.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        let resources = r
            .resources
            .get(caas_api::run::RUN_PROCESS)
            .or_else(|| r.resources.get(caas_api::WEB))
            .copied()
            .unwrap_or_default();
        let short: String = self.settings.cluster_id.chars().take(8).collect();
        let info = RunInfo {
            app: r.app.clone(),
            process: s.process.to_string(),
            index,
            release: r.version,
            container: format!(
                "caas-{short}-{}-{}.{index}-{}",
                r.app,
                s.process,
                crate::auth::short_id()
            ),
            started_at: Timestamp::now(),
            memory_mb: resources.memory_mb.unwrap_or(self.settings.memory_mb),
            cpus: resources.cpus,
        };
        let spec = self.spec(&info, &s);
        let id = self.engine.create(&spec).await?;
        let attached = if s.attach {
            match self.engine.attach(&id, s.stdio.stdin).await {
                Ok(a) => Some(a),
                Err(e) => {
                    let _ = self.engine.remove(&id).await;
                    return Err(e);
                }
            }
        } else {
            None
        };
        if let Err(e) = self.engine.start(&id).await {
            let _ = self.engine.remove(&id).await;
            return Err(e);
        }
        let mut runs = self.runs.lock().unwrap();
        let app = runs.entry(r.app.clone()).or_default();
        app.running.insert(info.name(), info.clone());
        Ok((info, attached))
    }

    fn spec(&self, info: &RunInfo, s: &Start<'_>) -> ContainerSpec {
        let r = s.release;
        let mut env: BTreeMap<String, String> = r.config.clone();
        env.insert("CAAS_APP".into(), r.app.clone());
        env.insert("CAAS_RELEASE".into(), format!("v{}", r.version));
        env.insert("CAAS_PROCESS".into(), info.process.clone());
        env.insert("CAAS_INSTANCE".into(), info.name());
        if s.stdio.tty {
            let term = s.term.clone().filter(|t| valid_term(t));
            env.insert("TERM".into(), term.unwrap_or_else(|| "xterm".into()));
        }
        // Built apps run through the stack's launcher, as their instances do, so the
        // buildpacks' `.profile.d` (PATH to the virtualenv, node_modules/.bin) applies.
        let argv = if r.launcher {
            std::iter::once("caas-launch".to_string())
                .chain(s.argv.iter().cloned())
                .collect()
        } else {
            s.argv.clone()
        };
        // The app's add-ons' networks, so `caas run -- psql "$DATABASE_URL"` reaches them.
        let extra_networks = crate::addons::networks_by_app(&self.store, &self.settings.cluster_id)
            .map(|mut by_app| by_app.remove(&s.release.app).unwrap_or_default())
            .unwrap_or_else(|e| {
                tracing::warn!(app = s.release.app, "reading the app's add-ons: {e}");
                Vec::new()
            });
        ContainerSpec {
            aliases: Vec::new(),
            extra_networks,
            restart: false,
            name: info.container.clone(),
            image: r.image_id.clone(),
            command: Command::Exec(argv),
            user: None,
            volumes: Vec::new(),
            env: env.into_iter().collect(),
            labels: HashMap::from([
                (
                    labels::CLUSTER.to_string(),
                    self.settings.cluster_id.clone(),
                ),
                (LABEL_ONEOFF.to_string(), r.app.clone()),
                (labels::APP.to_string(), r.app.clone()),
                (labels::RELEASE.to_string(), format!("v{}", r.version)),
                (labels::PROCESS.to_string(), info.process.clone()),
                (labels::INSTANCE.to_string(), info.name()),
            ]),
            publish: None,
            memory_mb: info.memory_mb,
            cpu_shares: CPU_SHARES,
            pids_limit: PIDS_LIMIT,
            cpus: info.cpus,
            network: Some(labels::network(&self.settings.cluster_id)),
            stdio: s.stdio,
        }
    }

    /// Waits for the one-off to end, removes its container and forgets it: its exit status.
    pub async fn finish(&self, info: &RunInfo) -> Result<i64, EngineError> {
        let code = self.engine.wait(&info.container).await;
        self.end(info).await;
        code
    }

    /// Sets the size of the one-off's terminal.
    pub async fn resize(&self, info: &RunInfo, cols: u16, rows: u16) -> Result<(), EngineError> {
        self.engine.resize_tty(&info.container, cols, rows).await
    }

    /// Kills and removes the one-off (its client went away) and forgets it.
    pub async fn end(&self, info: &RunInfo) {
        if let Err(e) = self.engine.remove(&info.container).await {
            tracing::warn!(app = info.app, "removing {}: {e}", info.container);
        }
        let mut runs = self.runs.lock().unwrap();
        if let Some(app) = runs.get_mut(&info.app) {
            app.running.remove(&info.name());
        }
    }

    /// Kills and removes every one-off of `app` (it is being destroyed): those registered here
    /// and any container of it the engine has, so one created but not yet registered goes too.
    pub async fn end_app(&self, app: &str) {
        let registered: Vec<RunInfo> = {
            let mut runs = self.runs.lock().unwrap();
            runs.get_mut(app)
                .map(|r| std::mem::take(&mut r.running).into_values().collect())
                .unwrap_or_default()
        };
        let mut containers: Vec<String> = registered.into_iter().map(|i| i.container).collect();
        let labels = [
            (labels::CLUSTER, self.settings.cluster_id.as_str()),
            (LABEL_ONEOFF, app),
        ];
        match self.engine.list_containers(&labels).await {
            Ok(found) => containers.extend(found.into_iter().map(|c| c.id)),
            Err(e) => tracing::warn!(app, "listing the app's one-offs: {e}"),
        }
        for c in containers {
            if let Err(e) = self.engine.remove(&c).await {
                tracing::warn!(app, "removing the one-off {c}: {e}");
            }
        }
    }

    /// A detached one-off: its output goes to the app's log as `app[run.N]` lines, its end is
    /// a `caas[run]` line, and then it is removed.
    pub fn follow_detached(self: &Arc<Self>, info: RunInfo) {
        let runner = self.clone();
        tokio::spawn(async move {
            let name = info.name();
            let mut output = Box::pin(runner.engine.follow_logs(&info.container, 0));
            while let Some(Ok(chunk)) = output.next().await {
                runner.logs.publish(
                    &info.app,
                    LogLine {
                        ts: Timestamp::now(),
                        source: LogSource::App,
                        tag: name.clone(),
                        text: chunk.text,
                    },
                );
            }
            let said = match runner.finish(&info).await {
                Ok(code) => format!("{name} exited with status {code}"),
                Err(e) => format!("{name} ended: {e}"),
            };
            runner.logs.event(&info.app, "run", said);
        });
    }
}

/// A `TERM` value passed on only when it looks like one (`xterm-256color`).
fn valid_term(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_term_values_are_passed_on() {
        for (t, ok) in [
            ("xterm-256color", true),
            ("screen.xterm", true),
            ("", false),
            ("x\ny", false),
            ("x y", false),
        ] {
            assert_eq!(valid_term(t), ok, "{t:?}");
        }
    }
}
