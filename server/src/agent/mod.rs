//! The agent: makes the containers on its host match what the control plane assigns, checks
//! their health, restarts crashed ones with back-off, ships their output, and reports.
//!
//! It is the same code whether it runs embedded in `caasd` (talking to the API over loopback) or
//! as `caasd agent` on another host. This file is the driving code: it asks the pure cores what
//! to do (`plan` for which containers to create, start and remove; `lifecycle` for each
//! instance's state, probes and restarts) and makes the Docker calls. Tasks, all owned by [`run`]
//! and ended by its shutdown token:
//! - the poller long-polls assignments into a `watch` channel;
//! - the main loop (this task) reconciles on every new assignment set and every second, and
//!   hands each probe result to the lifecycle as it comes;
//! - probes run as tasks of their own (a slow check never holds up a pass), owned by the loop;
//! - the heartbeat task sends what the loop last published, every 2 s and on every change, and
//!   never waits on Docker or a probe: a stalled engine does not make this host look lost;
//! - one log follower per running container feeds the shipper, which batches lines to the API
//!   (`shipper.rs`), and keeps each instance's last lines for the reports;
//! - image fetches run in the background, owned by `images.rs`;
//! - removals of containers (graceful stops take seconds) run as short-lived tasks.

mod client;
mod containers;
mod files;
mod firewall;
mod heartbeat;
mod images;
pub mod lifecycle;
pub mod plan;
mod probe;
mod session;
mod shipped;
mod shipper;
mod stats;
pub mod uninstall;

pub use files::write_private;

use crate::docker::{ContainerInfo, Engine, EngineError, Publish};
use anyhow::Context;
use caas_api::agent::{Assignment, Assignments, InstanceReport, ObservedState};
use caas_api::Timestamp;
use client::ClientError;
use containers::Ports;
use images::Images;
use lifecycle::{Backoff, Effect, Exit, Instance, Which};
use plan::{Action, Seen};
use session::Session;
use shipper::{Followers, Outbox};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::labels::{self, ALLOC as LABEL_ALLOC, CLUSTER as LABEL_CLUSTER, HOST as LABEL_HOST};

const PASS_INTERVAL: Duration = Duration::from_secs(1);
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
const POLL_WAIT: Duration = Duration::from_secs(30);
/// Longest a heartbeat may take before the next one is tried.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Base URL of the control plane's API.
    pub server: String,
    /// The pinned fingerprint of the control plane's certificate, for an https:// `server`.
    pub fingerprint: Option<String>,
    pub join_token: Option<String>,
    pub data_dir: PathBuf,
    pub name: String,
    /// Where instances are published; the gateway connects here.
    pub address: IpAddr,
    pub port_min: u16,
    pub port_max: u16,
    /// Embedded in caasd: on the gateway's machine (see `RegisterRequest::colocated`).
    pub colocated: bool,
    /// The ports add-on services are published on here (`caasd --addon-ports`; the embedded
    /// agent's): closed to this host's own containers, which reach services by network.
    pub addon_ports: Option<(u16, u16)>,
    /// The memory this host offers to the scheduler, MB (`--host-memory`); `None`: the
    /// machine's less a margin ([`offer`]).
    pub host_memory_mb: Option<u64>,
    /// How far its instances' limits may add up past the offer (`--overcommit`).
    pub overcommit: f64,
}

/// The memory a host offers when the operator does not say: the machine's, less a tenth for
/// the system, caasd and the engine (at least 256 MB, at most 2 GB).
pub fn offer(machine_mb: u64, asked_mb: Option<u64>) -> u64 {
    asked_mb.unwrap_or_else(|| machine_mb.saturating_sub((machine_mb / 10).clamp(256, 2048)))
}

/// Runs the agent until `shutdown`. Containers keep running after it returns.
pub async fn run(
    cfg: AgentConfig,
    engine: Engine,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let Some(session) = Session::open(cfg, &engine, &shutdown).await? else {
        return Ok(());
    };
    let session = Arc::new(session);
    isolate(&session, &engine).await;

    let (assign_tx, assign_rx) = watch::channel(None);
    let poller = tokio::spawn(poll(
        session.clone(),
        engine.clone(),
        assign_tx,
        shutdown.clone(),
    ));
    let (outbox, outbox_rx) = Outbox::new();
    let shipped = Arc::new(shipped::Shipped::load(
        session.cfg.data_dir.join("shipped.json"),
    ));
    let shipper = tokio::spawn(shipper::ship(
        session.clone(),
        engine.clone(),
        shipped.clone(),
        outbox_rx,
    ));
    let (reports, reports_rx) = watch::channel(Vec::new());
    let dropped_lines = Arc::new(AtomicU64::new(0));
    let heartbeats = tokio::spawn(heartbeat::heartbeat(
        session.clone(),
        engine.clone(),
        reports_rx,
        dropped_lines.clone(),
        shutdown.clone(),
    ));

    let mut agent = Agent {
        images: Images::new(session.clone(), engine.clone(), outbox.clone()),
        followers: Followers::new(engine.clone(), outbox.clone(), shipped),
        stats: stats::Stats::start(engine.clone()),
        ports: Ports::new(session.cfg.port_min, session.cfg.port_max),
        session,
        engine,
        outbox,
        instances: HashMap::new(),
        removing: Arc::new(Mutex::new(HashSet::new())),
        probes: JoinSet::new(),
        probing: HashSet::new(),
        assigned: Vec::new(),
        listed: HashMap::new(),
        reports,
        dropped_lines,
    };
    agent.main_loop(assign_rx, shutdown).await;

    poller.abort();
    heartbeats.abort();
    drop(agent); // ends the followers and closes the outbox, so the shipper sends what it has and ends
    let mut shipper = shipper;
    if tokio::time::timeout(Duration::from_secs(2), &mut shipper)
        .await
        .is_err()
    {
        shipper.abort(); // the control plane is away: what it did not take is re-read next start
    }
    Ok(())
}

/// The installation's network for containers, and the firewall rules that keep them from the
/// control plane's API and link-local addresses. Failures are logged, not fatal: apps still run.
async fn isolate(session: &Session, engine: &Engine) {
    let (cluster, _) = session.labels();
    let bridge = labels::bridge(&cluster);
    let network_labels = HashMap::from([(LABEL_CLUSTER.to_string(), cluster.clone())]);
    if let Err(e) = engine
        .ensure_isolated_network(&labels::network(&cluster), &bridge, network_labels)
        .await
    {
        tracing::error!("creating the network for instances: {e}");
    }
    let api = reqwest::Url::parse(&session.cfg.server)
        .ok()
        .and_then(|u| u.socket_addrs(|| None).ok())
        .and_then(|a| a.into_iter().next());
    let Some(api) = api else {
        tracing::error!(
            "cannot tell the control plane's address from {}: instances are not kept from it",
            session.cfg.server
        );
        return;
    };
    if let Err(e) = firewall::install(&cluster, &bridge, api, session.cfg.addon_ports) {
        tracing::error!(
            "installing the firewall rules that keep instances from caasd's API and link-local \
             addresses: {e}"
        );
    }
}

async fn poll(
    session: Arc<Session>,
    engine: Engine,
    tx: watch::Sender<Option<Assignments>>,
    shutdown: CancellationToken,
) {
    let mut index = 0;
    loop {
        let token = session.token();
        let res = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = session.client.assignments(&token, index, POLL_WAIT) => r,
        };
        match res {
            Ok(a) => {
                index = a.index;
                tx.send_replace(Some(a));
            }
            Err(ClientError::Unauthorized) => {
                if let Err(e) = session.reauthenticate(&engine, &token).await {
                    tracing::error!(
                        "the control plane refused this agent and re-registering failed: {e:#}"
                    );
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
            Err(e) => {
                tracing::warn!("polling assignments: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// A probe that ended: for which assignment, container and check, and what it saw.
struct ProbeDone {
    assignment_id: String,
    container_id: String,
    which: Which,
    seen: lifecycle::Seen,
}

struct Agent {
    session: Arc<Session>,
    engine: Engine,
    outbox: Outbox,
    /// Per assignment id: its lifecycle record. Forgotten when it is no longer assigned.
    instances: HashMap<String, Instance>,
    followers: Followers,
    /// CPU and memory of the running containers, for the heartbeat.
    stats: stats::Stats,
    images: Images,
    /// Containers being stopped and removed; the engine still lists them meanwhile.
    removing: Arc<Mutex<HashSet<String>>>,
    ports: Ports,
    /// Probes under way, each a task of its own, and which check of which assignment each is.
    probes: JoinSet<ProbeDone>,
    probing: HashSet<(String, Which)>,
    /// The assignments and the engine's containers (by id) as the last pass saw them: what
    /// reports are made of between passes.
    assigned: Vec<Assignment>,
    listed: HashMap<String, ContainerInfo>,
    /// What the heartbeat task sends.
    reports: watch::Sender<Vec<InstanceReport>>,
    /// Log lines dropped since the last heartbeat that went through (the heartbeat task sends
    /// and resets the count).
    dropped_lines: Arc<AtomicU64>,
}

impl Agent {
    async fn main_loop(
        &mut self,
        mut assign_rx: watch::Receiver<Option<Assignments>>,
        shutdown: CancellationToken,
    ) {
        // Nothing is touched before the first answer: until then we do not know what is wanted.
        loop {
            if assign_rx.borrow_and_update().is_some() {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = assign_rx.changed() => if r.is_err() { return },
            }
        }
        let mut ticker = tokio::time::interval(PASS_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let assigned: Vec<Assignment> = assign_rx
                .borrow_and_update()
                .as_ref()
                .map(|a| a.assignments.clone())
                .unwrap_or_default();
            if let Err(e) = self.pass(&assigned).await {
                tracing::warn!("agent pass: {e:#}");
            }
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = assign_rx.changed() => break,
                    _ = ticker.tick() => break,
                    Some(done) = self.probes.join_next(), if !self.probes.is_empty() => {
                        if let Ok(done) = done {
                            self.probed(done);
                        }
                    }
                }
            }
        }
    }

    /// The lifecycle record of an assignment, made on first use.
    fn instance(&mut self, a: &Assignment) -> &mut Instance {
        self.instances
            .entry(a.id.clone())
            .or_insert_with(|| Instance::new(a))
    }

    /// Does what the lifecycle decided about an instance of `app`.
    fn apply(&self, app: &str, effect: Effect) {
        match effect {
            Effect::Say(e) => self.outbox.event(app, e.tag, e.text),
            // The back-off is in the record; `plan` starts the instance once it has passed.
            Effect::Restart { say, .. } => self.outbox.event(app, say.tag, say.text),
            Effect::Stop {
                container_id,
                grace,
                say,
            } => {
                self.outbox.event(app, say.tag, say.text);
                // Stopped, it exits and takes the crash path: back-off, restart, event.
                let engine = self.engine.clone();
                tokio::spawn(async move {
                    let _ = engine.stop(&container_id, grace_secs(grace)).await;
                });
            }
        }
    }

    async fn pass(&mut self, assigned: &[Assignment]) -> anyhow::Result<()> {
        let (cluster, host_id) = self.session.labels();
        let containers = self
            .engine
            .list_containers(&[(LABEL_CLUSTER, &cluster), (LABEL_HOST, &host_id)])
            .await?;
        let by_id: HashMap<&str, &Assignment> =
            assigned.iter().map(|a| (a.id.as_str(), a)).collect();
        let now = Timestamp::now();
        // The stop timeout is the app's setting of now, not of when the instance was placed.
        for a in assigned {
            if let Some(inst) = self.instances.get_mut(&a.id) {
                inst.checks.stop_grace = lifecycle::Checks::of(a).stop_grace;
            }
        }

        // Notice exits of assigned instances, once each.
        for c in containers.iter().filter(|c| !c.running) {
            let Some(a) = c
                .labels
                .get(LABEL_ALLOC)
                .and_then(|id| by_id.get(id.as_str()))
            else {
                continue;
            };
            self.note_exit(a, c, now).await;
        }

        let removing = self.removing.lock().unwrap().clone();
        let seen: Vec<Seen> = containers
            .iter()
            .filter(|c| !removing.contains(&c.id))
            .filter_map(|c| {
                Some(Seen {
                    container_id: c.id.clone(),
                    assignment_id: c.labels.get(LABEL_ALLOC)?.clone(),
                    running: c.running,
                })
            })
            .collect();
        let backoff: HashMap<String, Backoff> = self
            .instances
            .iter()
            .filter_map(|(id, i)| Some((id.clone(), i.backoff?)))
            .collect();
        for action in plan::plan(assigned, &seen, &backoff, now) {
            match action {
                Action::Run(a) => self.create(&a, &cluster, &host_id, &containers).await,
                Action::Start {
                    container_id,
                    assignment_id,
                } => {
                    if let Some(a) = by_id.get(assignment_id.as_str()) {
                        self.restart(a, &container_id).await;
                    }
                }
                Action::Remove {
                    container_id,
                    running,
                } => self.remove(container_id, running),
            }
        }

        // Adopt what runs and we do not know yet (a restarted agent), then check health.
        let containers = self
            .engine
            .list_containers(&[(LABEL_CLUSTER, &cluster), (LABEL_HOST, &host_id)])
            .await?;
        for c in &containers {
            let Some(a) = c
                .labels
                .get(LABEL_ALLOC)
                .and_then(|id| by_id.get(id.as_str()))
            else {
                continue;
            };
            if removing.contains(&c.id) {
                continue;
            }
            let inst = self
                .instances
                .entry(a.id.clone())
                .or_insert_with(|| Instance::new(a));
            if inst.container.is_none() {
                let started = match c.running {
                    true => self.engine.started_at(&c.id).await.ok().flatten(),
                    false => None,
                };
                lifecycle::adopt(inst, &c.id, c.running, started, c.host_port, now);
            }
            lifecycle::on_listed(inst, &c.id, c.host_port);
        }
        self.assigned = assigned.to_vec();
        self.listed = containers
            .iter()
            .map(|c| (c.id.clone(), c.clone()))
            .collect();
        self.start_probes();
        self.followers.converge(assigned, &containers);

        // Forget what is no longer assigned.
        self.instances
            .retain(|id, _| by_id.contains_key(id.as_str()));
        let dropped = self.outbox.take_dropped();
        if dropped > 0 {
            tracing::warn!("dropped {dropped} log lines: the control plane is not keeping up");
        }
        self.dropped_lines.fetch_add(dropped, Ordering::Relaxed);
        self.stats.watch(
            containers
                .iter()
                .filter(|c| {
                    c.running
                        && c.labels
                            .get(LABEL_ALLOC)
                            .is_some_and(|id| by_id.contains_key(id.as_str()))
                })
                .map(|c| c.id.as_str()),
        );
        self.publish();
        Ok(())
    }

    async fn note_exit(&mut self, a: &Assignment, c: &ContainerInfo, now: Timestamp) {
        let Ok((exit, port)) = self.engine.exit_info(&c.id).await else {
            return;
        };
        let exit = Exit {
            container_id: c.id.clone(),
            port,
            status: exit.exit_code,
            oom_killed: exit.oom_killed,
            finished_at: exit.finished_at,
        };
        if let Some(effect) = lifecycle::on_exit(self.instance(a), &exit, now) {
            self.apply(&a.app, effect);
        }
    }

    async fn create(
        &mut self,
        a: &Assignment,
        cluster: &str,
        host_id: &str,
        containers: &[ContainerInfo],
    ) {
        // Hosts share no registry: an image the control plane built or was given comes from it.
        if let Ok(None) = self.engine.image_id(&a.image).await {
            self.images.fetch(a);
            return;
        }
        let address = self.session.cfg.address;
        let mut taken: HashSet<u16> = containers.iter().filter_map(|c| c.host_port).collect();
        let mut result = Err(EngineError::PortTaken);
        let mut port = None;
        for _ in 0..20 {
            let publish = match a.container_port {
                Some(container_port) => match self.ports.next(address, &taken) {
                    Some(host_port) => Some(Publish {
                        host_ip: address,
                        host_port,
                        container_port,
                    }),
                    None => break,
                },
                None => None,
            };
            let spec = containers::spec(a, cluster, host_id, publish);
            port = publish.map(|p| p.host_port);
            result = self.engine.run(&spec).await;
            match &result {
                Err(EngineError::PortTaken) => {
                    taken.extend(port);
                    continue;
                }
                Err(EngineError::Other(m)) if m.contains("is already in use by container") => {
                    // A container of this name exists but our listing missed it (being removed).
                    break;
                }
                _ => break,
            }
        }
        let now = Timestamp::now();
        match result {
            Ok(container_id) => {
                let at = port
                    .map(|p| format!(" at {address}:{p}"))
                    .unwrap_or_default();
                self.outbox.event(
                    &a.app,
                    "start",
                    format!("Starting {} (v{}){at}", a.instance_name(), a.release),
                );
                self.followers.start(a, &container_id);
                lifecycle::on_created(self.instance(a), &container_id, port, now);
            }
            Err(e) => {
                let why = match e {
                    EngineError::NotFound => format!("its image {} is not on this host", a.image),
                    EngineError::PortTaken => "no free port in this host's range".to_string(),
                    other => other.to_string(),
                };
                let effect = lifecycle::on_create_failed(self.instance(a), &why, now);
                self.apply(&a.app, effect);
            }
        }
    }

    async fn restart(&mut self, a: &Assignment, container_id: &str) {
        let now = Timestamp::now();
        match self.engine.start(container_id).await {
            Ok(()) => {
                let effect = lifecycle::on_restarted(self.instance(a), container_id, now);
                self.apply(&a.app, effect);
            }
            Err(e) => {
                // The port it was published on may have been taken meanwhile: make a new one.
                self.outbox.event(
                    &a.app,
                    "restart",
                    format!("cannot restart {}: {e}; replacing it", a.instance_name()),
                );
                self.remove(container_id.to_string(), false);
            }
        }
    }

    fn remove(&mut self, container_id: String, running: bool) {
        if !self.removing.lock().unwrap().insert(container_id.clone()) {
            return;
        }
        // Its instance's grace (`caas apps:settings:set stop-timeout=...`), while the agent still
        // knows it: an unassigned instance's record goes at the end of the pass that removes it.
        let grace = self
            .instances
            .values()
            .find(|i| i.container.as_ref().is_some_and(|c| c.id == container_id))
            .map_or(lifecycle::STOP_GRACE, |i| i.checks.stop_grace);
        let engine = self.engine.clone();
        let removing = self.removing.clone();
        tokio::spawn(async move {
            if running {
                if let Err(e) = engine.stop(&container_id, grace_secs(grace)).await {
                    tracing::warn!("stopping {container_id}: {e}");
                }
            }
            if let Err(e) = engine.remove(&container_id).await {
                tracing::warn!("removing {container_id}: {e}");
            }
            removing.lock().unwrap().remove(&container_id);
        });
    }

    /// Starts the probes each instance's lifecycle says are due against its running container,
    /// each as a task of its own; [`Agent::probed`] takes their results as they come.
    fn start_probes(&mut self) {
        let address = self.session.cfg.address;
        let now = Timestamp::now();
        for a in &self.assigned {
            let Some(inst) = self.instances.get_mut(&a.id) else {
                continue;
            };
            let Some(local) = &inst.container else {
                continue;
            };
            let Some(c) = self.listed.get(&local.id).filter(|c| c.running) else {
                continue;
            };
            let (container_id, ip, port) = (local.id.clone(), c.ip, local.port);
            for (which, chosen) in lifecycle::due(inst, now) {
                if !self.probing.insert((a.id.clone(), which)) {
                    continue; // the last one is still under way
                }
                let target = probe::aim(&chosen, ip, a.container_port, address, port);
                let (assignment_id, container_id) = (a.id.clone(), container_id.clone());
                self.probes.spawn(async move {
                    let seen = target.run().await;
                    ProbeDone {
                        assignment_id,
                        container_id,
                        which,
                        seen,
                    }
                });
            }
        }
    }

    /// A probe ended: the lifecycle decides, its effect is carried out, and a change goes to
    /// the heartbeat at once.
    fn probed(&mut self, done: ProbeDone) {
        self.probing
            .remove(&(done.assignment_id.clone(), done.which));
        let Some(app) = self
            .assigned
            .iter()
            .find(|a| a.id == done.assignment_id)
            .map(|a| a.app.clone())
        else {
            return;
        };
        let Some(inst) = self.instances.get_mut(&done.assignment_id) else {
            return;
        };
        // The container it probed is not the instance's any more (replaced meanwhile).
        if inst
            .container
            .as_ref()
            .is_none_or(|c| c.id != done.container_id)
        {
            return;
        }
        if let Some(effect) = lifecycle::on_probe(inst, done.which, &done.seen, Timestamp::now()) {
            self.apply(&app, effect);
        }
        self.publish();
    }

    /// Hands the heartbeat task what the agent knows of each assigned instance now.
    fn publish(&self) {
        let instances: Vec<InstanceReport> = self
            .assigned
            .iter()
            .filter_map(|a| {
                let i = self.instances.get(&a.id)?;
                let l = i.container.as_ref()?;
                let c = self.listed.get(&l.id)?;
                let container_addr = match (c.ip, a.container_port) {
                    (Some(ip), Some(port)) => Some(SocketAddr::new(ip, port).to_string()),
                    _ => None,
                };
                Some(InstanceReport {
                    assignment_id: a.id.clone(),
                    container_id: l.id.clone(),
                    state: l.state,
                    port: l.port,
                    container_addr,
                    restarts: i.restarts,
                    since: l.since,
                    check: l.check.clone(),
                    // What it said last, while it is not up: a failed rollout quotes it.
                    output: match l.state {
                        ObservedState::Up => Vec::new(),
                        _ => self.followers.tail(&a.id),
                    },
                    unchecked: l.unchecked(),
                    usage: self.stats.usage(&l.id),
                })
            })
            .collect();
        self.reports.send_replace(instances);
    }
}

/// Docker's stop timeout, in whole seconds (at least 1).
fn grace_secs(grace: Duration) -> i32 {
    grace.as_secs().clamp(1, i32::MAX as u64) as i32
}

#[cfg(test)]
mod offer_tests {
    #[test]
    fn a_host_offers_its_memory_less_a_margin_unless_told() {
        for (machine, asked, offered) in [
            (24_576, None, 22_528), // 24 GiB: 2 GiB kept (a tenth, at most 2 GiB)
            (4096, None, 3687),     // a tenth
            (1024, None, 768),      // at least 256 MB
            (100, None, 0),
            (24_576, Some(320), 320), // --host-memory, as said
        ] {
            assert_eq!(super::offer(machine, asked), offered, "{machine} {asked:?}");
        }
    }
}
