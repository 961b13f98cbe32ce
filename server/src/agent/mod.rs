//! The agent: makes the containers on its host match what the control plane assigns, checks
//! their health, restarts crashed ones with back-off, ships their output, and reports.
//!
//! It is the same code whether it runs embedded in `caasd` (talking to the API over loopback) or
//! as `caasd agent` on another host. Tasks, all owned by [`run`] and ended by its shutdown token:
//! - the poller long-polls assignments into a `watch` channel;
//! - the main loop (this task) reconciles on every new assignment set and every second;
//! - one log follower per running container feeds the shipper, which batches lines to the API;
//! - removals of containers (graceful stops take seconds) run as short-lived tasks.

mod client;
pub mod plan;

use crate::docker::{Command, ContainerInfo, ContainerSpec, Engine, EngineError, Publish};
use anyhow::Context;
use caas_api::agent::{
    AppLogLine, Assignment, Assignments, HealthCheck, Heartbeat, InstanceReport, LogBatch,
    ObservedState, RegisterRequest,
};
use caas_api::{LogLine, LogSource, Timestamp};
use client::{Client, ClientError};
use plan::{Action, Backoff, Seen};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const LABEL_CLUSTER: &str = "caas.cluster";
const LABEL_HOST: &str = "caas.host";
const LABEL_ALLOC: &str = "caas.alloc";

const PASS_INTERVAL: Duration = Duration::from_secs(1);
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
const POLL_WAIT: Duration = Duration::from_secs(30);
/// An instance that does not listen on `$PORT` this long after it started is restarted.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// An instance that failed its health checks this long is restarted.
const UNHEALTHY_TIMEOUT: Duration = Duration::from_secs(30);
/// Health-check failures in a row before an up instance counts as unhealthy.
const UNHEALTHY_AFTER: u32 = 3;
/// An instance that ran this long before it crashed starts its back-off from the beginning.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// SIGTERM to SIGKILL when an instance is stopped.
const STOP_GRACE_SECS: i32 = 10;
const LOG_BUFFER: usize = 10_000;
/// How long after a failed image fetch the next one is tried.
const IMAGE_RETRY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Base URL of the control plane's API.
    pub server: String,
    pub join_token: Option<String>,
    pub data_dir: PathBuf,
    pub name: String,
    /// Where instances are published; the gateway connects here.
    pub address: IpAddr,
    pub port_min: u16,
    pub port_max: u16,
    /// Embedded in caasd: on the gateway's machine (see `RegisterRequest::colocated`).
    pub colocated: bool,
}

/// Who this host is to the control plane; persisted so a restarted agent keeps its id and adopts
/// the containers labelled with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Identity {
    host_id: String,
    token: String,
    cluster_id: String,
}

struct Session {
    cfg: AgentConfig,
    client: Client,
    identity: RwLock<Identity>,
    reauth: tokio::sync::Mutex<()>,
}

impl Session {
    fn token(&self) -> String {
        self.identity.read().unwrap().token.clone()
    }

    fn identity_path(&self) -> PathBuf {
        self.cfg.data_dir.join("identity.json")
    }

    async fn register(
        cfg: &AgentConfig,
        client: &Client,
        engine: &Engine,
    ) -> anyhow::Result<Identity> {
        let join = cfg
            .join_token
            .as_deref()
            .context("this agent has no identity yet: pass --join-token (see DATA_DIR/join-token on the server)")?;
        let info = engine.info().await?;
        let resp = client
            .register(
                join,
                &RegisterRequest {
                    name: cfg.name.clone(),
                    address: cfg.address.to_string(),
                    memory_mb: info.memory_mb,
                    cpus: info.cpus,
                    port_min: cfg.port_min,
                    port_max: cfg.port_max,
                    colocated: cfg.colocated,
                },
            )
            .await?;
        Ok(Identity {
            host_id: resp.host_id,
            token: resp.token,
            cluster_id: resp.cluster_id,
        })
    }

    fn save(&self, id: &Identity) -> anyhow::Result<()> {
        write_private(&self.identity_path(), &serde_json::to_vec_pretty(id)?)
    }

    /// Registers again after the control plane refused our token (its data was replaced, or the
    /// host was re-registered elsewhere). One re-registration at a time.
    async fn reauthenticate(&self, engine: &Engine, stale: &str) -> anyhow::Result<()> {
        let _guard = self.reauth.lock().await;
        if self.token() != stale {
            return Ok(()); // someone else already did
        }
        let id = Self::register(&self.cfg, &self.client, engine).await?;
        self.save(&id)?;
        tracing::warn!(host_id = id.host_id, "re-registered with the control plane");
        *self.identity.write().unwrap() = id;
        Ok(())
    }
}

/// Writes a file readable by its owner only, atomically.
pub fn write_private(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Runs the agent until `shutdown`. Containers keep running after it returns.
pub async fn run(
    cfg: AgentConfig,
    engine: Engine,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let client = Client::new(&cfg.server);
    let path = cfg.data_dir.join("identity.json");
    let identity = match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?
        }
        Err(_) => loop {
            match Session::register(&cfg, &client, &engine).await {
                Ok(id) => {
                    write_private(&path, &serde_json::to_vec_pretty(&id)?)?;
                    break id;
                }
                Err(e)
                    if e.downcast_ref::<ClientError>()
                        .is_some_and(|c| matches!(c, ClientError::Transport(_))) =>
                {
                    tracing::warn!(
                        "cannot reach the control plane at {} yet: {e:#}",
                        cfg.server
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
                Err(e) => return Err(e.context("registering with the control plane")),
            }
        },
    };
    tracing::info!(host = cfg.name, host_id = identity.host_id, "agent running");
    let session = Arc::new(Session {
        cfg,
        client,
        identity: RwLock::new(identity),
        reauth: Default::default(),
    });

    let (assign_tx, assign_rx) = watch::channel(None);
    let poller = tokio::spawn(poll(
        session.clone(),
        engine.clone(),
        assign_tx,
        shutdown.clone(),
    ));
    let (logs_tx, logs_rx) = mpsc::channel(LOG_BUFFER);
    let shipper = tokio::spawn(ship(session.clone(), engine.clone(), logs_rx));

    let mut agent = Agent {
        session,
        engine,
        logs: logs_tx,
        instances: HashMap::new(),
        backoff: HashMap::new(),
        followers: HashMap::new(),
        removing: Arc::new(Mutex::new(HashSet::new())),
        port_cursor: 0,
        last_report: None,
        dropped: Arc::new(AtomicU64::new(0)),
        images: Arc::default(),
    };
    agent.main_loop(assign_rx, shutdown).await;

    poller.abort();
    for f in agent.followers.values() {
        f.handle.abort();
    }
    drop(agent); // closes the log channel, so the shipper sends what it has and ends
    let _ = tokio::time::timeout(Duration::from_secs(2), shipper).await;
    Ok(())
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

async fn ship(session: Arc<Session>, engine: Engine, mut rx: mpsc::Receiver<AppLogLine>) {
    while let Some(first) = rx.recv().await {
        let mut lines = vec![first];
        // Gather what arrives within a moment, so a chatty app costs few requests.
        let deadline = tokio::time::sleep(Duration::from_millis(50));
        tokio::pin!(deadline);
        while lines.len() < 1000 {
            tokio::select! {
                l = rx.recv() => match l {
                    Some(l) => lines.push(l),
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        let batch = LogBatch { lines };
        for attempt in 0..3 {
            let token = session.token();
            match session.client.ship_logs(&token, &batch).await {
                Ok(()) => break,
                Err(ClientError::Unauthorized) => {
                    let _ = session.reauthenticate(&engine, &token).await;
                }
                Err(e) => {
                    tracing::warn!(
                        "shipping {} log lines (attempt {}): {e}",
                        batch.lines.len(),
                        attempt + 1
                    );
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }
}

/// What the agent knows about one assigned instance beyond what the engine says.
#[derive(Debug, Clone)]
struct Local {
    container_id: String,
    state: ObservedState,
    since: Timestamp,
    port: Option<u16>,
    restarts: u32,
    health_failures: u32,
    /// `finished_at` of the last exit already handled, so one exit counts once.
    last_exit: Option<Timestamp>,
    running_since: Option<Timestamp>,
    /// When an adopted container started: its first "up" dates from then, not from adoption.
    adopted: Option<Timestamp>,
}

enum Probe {
    Running,
    Connect(SocketAddr),
    Http(SocketAddr),
    Fail,
}

impl Probe {
    async fn run(self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let limit = Duration::from_secs(2);
        match self {
            Probe::Running => true,
            Probe::Fail => false,
            Probe::Connect(addr) => {
                matches!(
                    tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await,
                    Ok(Ok(_))
                )
            }
            Probe::Http(addr) => {
                let exchange = async {
                    let mut s = tokio::net::TcpStream::connect(addr).await?;
                    s.write_all(b"HEAD / HTTP/1.0\r\nHost: localhost\r\n\r\n")
                        .await?;
                    let mut buf = [0u8; 5];
                    s.read_exact(&mut buf).await?;
                    Ok::<bool, std::io::Error>(&buf == b"HTTP/")
                };
                matches!(tokio::time::timeout(limit, exchange).await, Ok(Ok(true)))
            }
        }
    }
}

struct Follower {
    handle: JoinHandle<()>,
    /// Docker timestamp (ns) of the last line shipped, so a re-follow skips what was sent.
    last_nanos: Arc<AtomicU64>,
}

/// What a heartbeat said, to send the next one early only when it would say something else.
type ReportKey = Vec<(String, ObservedState, Option<u16>, Option<String>)>;

struct Agent {
    session: Arc<Session>,
    engine: Engine,
    logs: mpsc::Sender<AppLogLine>,
    instances: HashMap<String, Local>,
    backoff: HashMap<String, Backoff>,
    followers: HashMap<String, Follower>,
    removing: Arc<Mutex<HashSet<String>>>,
    port_cursor: u16,
    last_report: Option<(Instant, ReportKey)>,
    dropped: Arc<AtomicU64>,
    images: Arc<Mutex<ImageFetches>>,
}

/// Images being fetched from the control plane, and when a fetch last failed.
#[derive(Default)]
struct ImageFetches {
    running: HashSet<String>,
    failed: HashMap<String, Instant>,
}

/// A platform event from the agent: `caas[TAG]: TEXT` in the app's logs.
fn send_event(
    logs: &mpsc::Sender<AppLogLine>,
    dropped: &AtomicU64,
    app: &str,
    tag: &str,
    text: String,
) {
    tracing::info!(app, tag, "{text}");
    let line = LogLine {
        ts: Timestamp::now(),
        source: LogSource::Caas,
        tag: tag.into(),
        text,
    };
    ship_line(logs, dropped, app, line);
}

/// Hands a line to the shipper without waiting: when its buffer is full the line is dropped
/// and counted, so a chatty app never slows the agent down.
fn ship_line(logs: &mpsc::Sender<AppLogLine>, dropped: &AtomicU64, app: &str, line: LogLine) {
    if logs
        .try_send(AppLogLine {
            app: app.into(),
            line,
        })
        .is_err()
    {
        dropped.fetch_add(1, Ordering::Relaxed);
    }
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
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = assign_rx.changed() => {}
                _ = ticker.tick() => {}
            }
        }
    }

    fn event(&self, app: &str, tag: &str, text: String) {
        send_event(&self.logs, &self.dropped, app, tag, text);
    }

    /// Fetches an image this host lacks from the control plane, in the background (a large
    /// image takes a while; heartbeats must go on meanwhile). Creation is retried on later
    /// passes once the image is there.
    fn fetch_image(&self, a: &Assignment) {
        {
            let mut fetching = self.images.lock().unwrap();
            if let Some(failed) = fetching.failed.get(&a.image) {
                if failed.elapsed() < IMAGE_RETRY {
                    return;
                }
            }
            if !fetching.running.insert(a.image.clone()) {
                return;
            }
        }
        let (session, engine, images) = (
            self.session.clone(),
            self.engine.clone(),
            self.images.clone(),
        );
        let (logs, dropped) = (self.logs.clone(), self.dropped.clone());
        let (app, image, name) = (a.app.clone(), a.image.clone(), a.instance_name());
        tokio::spawn(async move {
            let short: String = image
                .trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect();
            send_event(
                &logs,
                &dropped,
                &app,
                "start",
                format!("Fetching image {short} for {name} from the control plane"),
            );
            let started = Instant::now();
            let result = async {
                let stream = session.client.image(&session.token(), &image).await?;
                engine.load_images(stream).await?;
                anyhow::Ok(())
            }
            .await;
            let mut images = images.lock().unwrap();
            images.running.remove(&image);
            match result {
                Ok(()) => {
                    images.failed.remove(&image);
                    let secs = started.elapsed().as_secs_f64();
                    send_event(
                        &logs,
                        &dropped,
                        &app,
                        "start",
                        format!("Fetched image {short} in {secs:.1}s"),
                    );
                }
                Err(e) => {
                    images.failed.insert(image.clone(), Instant::now());
                    send_event(
                        &logs,
                        &dropped,
                        &app,
                        "crash",
                        format!("cannot fetch image {short} from the control plane: {e:#}; retrying in {}s", IMAGE_RETRY.as_secs()),
                    );
                }
            }
        });
    }

    async fn pass(&mut self, assigned: &[Assignment]) -> anyhow::Result<()> {
        let (cluster, host_id) = {
            let id = self.session.identity.read().unwrap();
            (id.cluster_id.clone(), id.host_id.clone())
        };
        let containers = self
            .engine
            .list_containers(&[(LABEL_CLUSTER, &cluster), (LABEL_HOST, &host_id)])
            .await?;
        let by_id: HashMap<&str, &Assignment> =
            assigned.iter().map(|a| (a.id.as_str(), a)).collect();
        let now = Timestamp::now();

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
        for action in plan::plan(assigned, &seen, &self.backoff, now) {
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
            let Some(alloc) = c.labels.get(LABEL_ALLOC) else {
                continue;
            };
            if !by_id.contains_key(alloc.as_str()) || removing.contains(&c.id) {
                continue;
            }
            if !self.instances.contains_key(alloc) {
                // Adopted: it has been running since before this agent knew it.
                let started = match c.running {
                    true => self.engine.started_at(&c.id).await.ok().flatten(),
                    false => None,
                };
                self.instances.insert(
                    alloc.clone(),
                    Local {
                        container_id: c.id.clone(),
                        state: if c.running {
                            ObservedState::Starting
                        } else {
                            ObservedState::Crashed
                        },
                        since: started.unwrap_or(now),
                        port: c.host_port,
                        restarts: 0,
                        health_failures: 0,
                        last_exit: None,
                        running_since: c.running.then_some(started.unwrap_or(now)),
                        adopted: started,
                    },
                );
            }
            let local = self.instances.get_mut(alloc).expect("inserted above");
            if local.container_id != c.id {
                local.container_id = c.id.clone();
            }
            if c.host_port.is_some() {
                local.port = c.host_port;
            }
        }
        self.check_health(assigned, &containers).await;
        self.follow_logs(assigned, &containers);

        // Forget what is no longer assigned.
        self.instances
            .retain(|id, _| by_id.contains_key(id.as_str()));
        self.backoff.retain(|id, _| by_id.contains_key(id.as_str()));
        let live: HashSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
        self.followers.retain(|id, f| {
            let keep = live.contains(id.as_str());
            if !keep {
                f.handle.abort();
            }
            keep
        });
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!("dropped {dropped} log lines: the control plane is not keeping up");
        }
        self.report(assigned, &containers).await;
        Ok(())
    }

    async fn note_exit(&mut self, a: &Assignment, c: &ContainerInfo, now: Timestamp) {
        let Ok((exit, port)) = self.engine.exit_info(&c.id).await else {
            return;
        };
        let finished = exit.finished_at.unwrap_or(now);
        let local = self.instances.entry(a.id.clone()).or_insert_with(|| Local {
            container_id: c.id.clone(),
            state: ObservedState::Crashed,
            since: finished,
            port,
            restarts: 0,
            health_failures: 0,
            last_exit: None,
            running_since: None,
            adopted: None,
        });
        if local.last_exit == Some(finished) {
            return;
        }
        let first_sight = local.last_exit.is_none()
            && local.running_since.is_none()
            && local.state == ObservedState::Crashed;
        local.last_exit = Some(finished);
        local.state = ObservedState::Crashed;
        local.since = finished;
        local.port = local.port.or(port);
        let ran_long = local
            .running_since
            .is_some_and(|s| s.until(finished) >= STABLE_AFTER);
        local.running_since = None;
        let failures = if ran_long {
            1
        } else {
            self.backoff.get(&a.id).map_or(0, |b| b.failures) + 1
        };
        let delay = plan::backoff_delay(failures);
        self.backoff.insert(
            a.id.clone(),
            Backoff {
                failures,
                next_at: finished.max(now).plus(delay),
            },
        );
        let why = if exit.oom_killed {
            format!(
                "was killed for using more than {} MB of memory",
                a.memory_mb
            )
        } else {
            format!("exited with status {}", exit.exit_code)
        };
        let when = if first_sight {
            "found stopped: it".to_string()
        } else {
            "crashed:".to_string()
        };
        self.event(
            &a.app,
            "crash",
            format!(
                "{} {when} {why}; restarting in {}s",
                a.instance_name(),
                delay.as_secs()
            ),
        );
    }

    /// A port from this host's range that nothing listens on, starting after the last one
    /// handed out so retries and parallel installations spread out.
    fn next_port(&mut self, address: IpAddr, taken: &HashSet<u16>) -> Option<u16> {
        let (min, max) = (self.session.cfg.port_min, self.session.cfg.port_max);
        let span = (max - min) as u32 + 1;
        for _ in 0..span {
            let port = min + (self.port_cursor as u32 % span) as u16;
            self.port_cursor = self.port_cursor.wrapping_add(1);
            if taken.contains(&port) {
                continue;
            }
            // Someone else (another installation, any process) may hold it: skip, don't fail.
            if std::net::TcpListener::bind(SocketAddr::new(address, port)).is_ok() {
                return Some(port);
            }
        }
        None
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
            self.fetch_image(a);
            return;
        }
        let address = self.session.cfg.address;
        let mut taken: HashSet<u16> = containers.iter().filter_map(|c| c.host_port).collect();
        let labels = HashMap::from([
            (LABEL_CLUSTER.to_string(), cluster.to_string()),
            (LABEL_HOST.to_string(), host_id.to_string()),
            (LABEL_ALLOC.to_string(), a.id.clone()),
            ("caas.app".to_string(), a.app.clone()),
            ("caas.release".to_string(), format!("v{}", a.release)),
            ("caas.process".to_string(), a.process.clone()),
            ("caas.instance".to_string(), a.instance_name()),
        ]);
        let short_cluster: String = cluster.chars().take(8).collect();
        let mut result = Err(EngineError::PortTaken);
        let mut port = None;
        for _ in 0..20 {
            let publish = match a.container_port {
                Some(container_port) => match self.next_port(address, &taken) {
                    Some(host_port) => Some(Publish {
                        host_ip: address,
                        host_port,
                        container_port,
                    }),
                    None => break,
                },
                None => None,
            };
            let spec = ContainerSpec {
                name: format!(
                    "caas-{short_cluster}-{}-{}-{}",
                    a.app,
                    a.instance_name(),
                    a.id
                ),
                image: a.image.clone(),
                command: a
                    .command
                    .clone()
                    .map_or(Command::ImageDefault, Command::Shell),
                user: None,
                volumes: Vec::new(),
                env: a.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                labels: labels.clone(),
                publish,
                memory_mb: a.memory_mb,
                cpu_shares: a.cpu_shares,
                pids_limit: a.pids_limit,
            };
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
                self.event(
                    &a.app,
                    "start",
                    format!("Starting {} (v{}){at}", a.instance_name(), a.release),
                );
                self.followers.insert(
                    container_id.clone(),
                    self.spawn_follower(a, &container_id, 0),
                );
                let restarts = self.instances.get(&a.id).map_or(0, |l| l.restarts);
                self.instances.insert(
                    a.id.clone(),
                    Local {
                        container_id,
                        state: ObservedState::Starting,
                        since: now,
                        port,
                        restarts,
                        health_failures: 0,
                        last_exit: None,
                        running_since: Some(now),
                        adopted: None,
                    },
                );
            }
            Err(e) => {
                let failures = self.backoff.get(&a.id).map_or(0, |b| b.failures) + 1;
                let delay = plan::backoff_delay(failures);
                self.backoff.insert(
                    a.id.clone(),
                    Backoff {
                        failures,
                        next_at: now.plus(delay),
                    },
                );
                let why = match e {
                    EngineError::NotFound => format!("its image {} is not on this host", a.image),
                    EngineError::PortTaken => "no free port in this host's range".to_string(),
                    other => other.to_string(),
                };
                self.event(
                    &a.app,
                    "crash",
                    format!(
                        "cannot start {}: {why}; retrying in {}s",
                        a.instance_name(),
                        delay.as_secs()
                    ),
                );
            }
        }
    }

    async fn restart(&mut self, a: &Assignment, container_id: &str) {
        let now = Timestamp::now();
        match self.engine.start(container_id).await {
            Ok(()) => {
                let local = self.instances.entry(a.id.clone()).or_insert_with(|| Local {
                    container_id: container_id.to_string(),
                    state: ObservedState::Starting,
                    since: now,
                    port: None,
                    restarts: 0,
                    health_failures: 0,
                    last_exit: None,
                    running_since: None,
                    adopted: None,
                });
                local.restarts += 1;
                local.state = ObservedState::Starting;
                local.since = now;
                local.health_failures = 0;
                local.running_since = Some(now);
                let n = local.restarts;
                self.event(
                    &a.app,
                    "restart",
                    format!("Restarted {} (restart {n})", a.instance_name()),
                );
            }
            Err(e) => {
                // The port it was published on may have been taken meanwhile: make a new one.
                self.event(
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
        let engine = self.engine.clone();
        let removing = self.removing.clone();
        tokio::spawn(async move {
            if running {
                if let Err(e) = engine.stop(&container_id, STOP_GRACE_SECS).await {
                    tracing::warn!("stopping {container_id}: {e}");
                }
            }
            if let Err(e) = engine.remove(&container_id).await {
                tracing::warn!("removing {container_id}: {e}");
            }
            removing.lock().unwrap().remove(&container_id);
        });
    }

    async fn check_health(&mut self, assigned: &[Assignment], containers: &[ContainerInfo]) {
        let address = self.session.cfg.address;
        let running: HashMap<&str, &ContainerInfo> = containers
            .iter()
            .filter(|c| c.running)
            .map(|c| (c.id.as_str(), c))
            .collect();
        let mut probes = Vec::new();
        for a in assigned {
            let Some(local) = self.instances.get(&a.id) else {
                continue;
            };
            let Some(c) = running.get(local.container_id.as_str()) else {
                continue;
            };
            // Probe the process itself at its container address: Docker's userland proxy accepts
            // connections on the published port even when nothing listens behind it. Without a
            // container address, an HTTP exchange through the published port tells the same.
            let probe = match (&a.health, c.ip, a.container_port, local.port) {
                (HealthCheck::Running, ..) => Probe::Running,
                (HealthCheck::Tcp, Some(ip), Some(cport), _) => {
                    Probe::Connect(SocketAddr::new(ip, cport))
                }
                (HealthCheck::Tcp, None, _, Some(hport)) => {
                    Probe::Http(SocketAddr::new(address, hport))
                }
                (HealthCheck::Tcp, ..) => Probe::Fail,
            };
            probes.push(async move { (a, probe.run().await) });
        }
        let results = futures_util::future::join_all(probes).await;
        let now = Timestamp::now();
        let mut to_stop = Vec::new();
        let mut events = Vec::new();
        for (a, ok) in results {
            let Some(local) = self.instances.get_mut(&a.id) else {
                continue;
            };
            if local.state == ObservedState::Crashed {
                // Running again (started by hand, or a restart we did not see finish).
                local.state = ObservedState::Starting;
                local.since = now;
                local.running_since.get_or_insert(now);
            }
            let name = a.instance_name();
            match (local.state, ok) {
                (ObservedState::Starting, true) | (ObservedState::Unhealthy, true) => {
                    if local.state == ObservedState::Unhealthy {
                        events.push((a.app.clone(), format!("{name} is healthy again")));
                    }
                    local.state = ObservedState::Up;
                    local.since = local.adopted.take().unwrap_or(now);
                    local.health_failures = 0;
                }
                (ObservedState::Up, true) => local.health_failures = 0,
                (ObservedState::Starting, false) => {
                    if local.since.until(now) >= START_TIMEOUT {
                        to_stop.push((
                            a.app.clone(),
                            local.container_id.clone(),
                            format!(
                                "{name} did not listen on $PORT within {}s; restarting it",
                                START_TIMEOUT.as_secs()
                            ),
                        ));
                    }
                }
                (ObservedState::Up, false) => {
                    local.health_failures += 1;
                    if local.health_failures >= UNHEALTHY_AFTER {
                        local.state = ObservedState::Unhealthy;
                        local.since = now;
                        events.push((
                            a.app.clone(),
                            format!("{name} failed {UNHEALTHY_AFTER} health checks in a row"),
                        ));
                    }
                }
                (ObservedState::Unhealthy, false) => {
                    if local.since.until(now) >= UNHEALTHY_TIMEOUT {
                        to_stop.push((
                            a.app.clone(),
                            local.container_id.clone(),
                            format!(
                                "{name} stayed unhealthy for {}s; restarting it",
                                UNHEALTHY_TIMEOUT.as_secs()
                            ),
                        ));
                    }
                }
                (ObservedState::Crashed, _) => {}
            }
        }
        for (app, text) in events {
            self.event(&app, "health", text);
        }
        for (app, container_id, why) in to_stop {
            self.event(&app, "health", why);
            // Stopped, it exits and takes the crash path: back-off, restart, event.
            let engine = self.engine.clone();
            tokio::spawn(async move {
                let _ = engine.stop(&container_id, STOP_GRACE_SECS).await;
            });
        }
    }

    fn spawn_follower(&self, a: &Assignment, container_id: &str, since_nanos: u64) -> Follower {
        let last_nanos = Arc::new(AtomicU64::new(since_nanos));
        let last = last_nanos.clone();
        let engine = self.engine.clone();
        let tx = self.logs.clone();
        let dropped = self.dropped.clone();
        let app = a.app.clone();
        let tag = a.instance_name();
        let id = container_id.to_string();
        let handle = tokio::spawn(async move {
            use futures_util::StreamExt;
            let since_secs = (since_nanos / 1_000_000_000) as i64;
            let mut stream = Box::pin(engine.follow_logs(&id, since_secs));
            while let Some(chunk) = stream.next().await {
                let Ok(chunk) = chunk else { break };
                let nanos = chunk.ts_nanos.min(u64::MAX as u128) as u64;
                if nanos != 0 && nanos <= last.load(Ordering::Relaxed) {
                    continue; // shipped before this re-follow
                }
                last.store(nanos, Ordering::Relaxed);
                let line = LogLine {
                    ts: Timestamp::from_millis(nanos / 1_000_000),
                    source: LogSource::App,
                    tag: tag.clone(),
                    text: chunk.text,
                };
                ship_line(&tx, &dropped, &app, line);
            }
        });
        Follower { handle, last_nanos }
    }

    fn follow_logs(&mut self, assigned: &[Assignment], containers: &[ContainerInfo]) {
        let by_id: HashMap<&str, &Assignment> =
            assigned.iter().map(|a| (a.id.as_str(), a)).collect();
        let now_nanos = (Timestamp::now().millis()) * 1_000_000;
        for c in containers.iter().filter(|c| c.running) {
            let Some(a) = c
                .labels
                .get(LABEL_ALLOC)
                .and_then(|id| by_id.get(id.as_str()))
            else {
                continue;
            };
            let since = match self.followers.get(&c.id) {
                Some(f) if !f.handle.is_finished() => continue,
                // It ended with the container; the container runs again: resume after the last line.
                Some(f) => f.last_nanos.load(Ordering::Relaxed),
                // Adopted from before a restart: its old output was shipped (or is lost); go on from now.
                None => now_nanos,
            };
            let f = self.spawn_follower(a, &c.id, since);
            self.followers.insert(c.id.clone(), f);
        }
    }

    async fn report(&mut self, assigned: &[Assignment], containers: &[ContainerInfo]) {
        let present: HashMap<&str, &ContainerInfo> =
            containers.iter().map(|c| (c.id.as_str(), c)).collect();
        let instances: Vec<InstanceReport> = assigned
            .iter()
            .filter_map(|a| {
                let l = self.instances.get(&a.id)?;
                let c = present.get(l.container_id.as_str())?;
                let container_addr = match (c.ip, a.container_port) {
                    (Some(ip), Some(port)) => Some(SocketAddr::new(ip, port).to_string()),
                    _ => None,
                };
                Some(InstanceReport {
                    assignment_id: a.id.clone(),
                    container_id: l.container_id.clone(),
                    state: l.state,
                    port: l.port,
                    container_addr,
                    restarts: l.restarts,
                    since: l.since,
                })
            })
            .collect();
        let key: Vec<_> = instances
            .iter()
            .map(|r| {
                (
                    r.assignment_id.clone(),
                    r.state,
                    r.port,
                    r.container_addr.clone(),
                )
            })
            .collect();
        let due = match &self.last_report {
            None => true,
            Some((at, last)) => *last != key || at.elapsed() >= HEARTBEAT_INTERVAL,
        };
        if !due {
            return;
        }
        let token = self.session.token();
        match self
            .session
            .client
            .heartbeat(&token, &Heartbeat { instances })
            .await
        {
            Ok(()) => self.last_report = Some((Instant::now(), key)),
            Err(ClientError::Unauthorized) => {
                if let Err(e) = self.session.reauthenticate(&self.engine, &token).await {
                    tracing::error!("re-registering: {e:#}");
                }
            }
            Err(e) => tracing::warn!("heartbeat: {e}"),
        }
    }
}
