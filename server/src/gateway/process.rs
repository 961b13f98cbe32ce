//! `caasd gateway`: the gateway as a process of its own, so that apps keep being served while the
//! control plane stops, restarts, upgrades or is killed.
//!
//! - It starts from the routing table it last saw, kept in `DATA_DIR/routes.json`, and serves
//!   from it at once; then it follows the control plane's table with a blocking query and writes
//!   each new one to that file (atomically).
//! - It reports router lines and request counts to the control plane (`report.rs`), holding them
//!   while the control plane is away.
//! - It writes `DATA_DIR/gateway.json` (pid, address, version) once it listens, which is how
//!   caasd finds a gateway already running instead of starting another (`supervise.rs`).
//! - It listens with `SO_REUSEPORT`, so a newer gateway can bind the same address beside it;
//!   on SIGTERM it stops accepting, lets requests in flight finish (up to `--drain`), and exits.

use super::report::{Reporter, SHIP_EVERY};
use super::table::RouteTable;
use super::Gateway;
use anyhow::Context;
use caas_api::gateway::{GatewayReport, RoutingTable};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long a stopping gateway goes on accepting beside its successor.
const HANDOVER_OVERLAP: Duration = Duration::from_millis(500);
/// How long the blocking query waits for a change before it asks again.
const POLL_WAIT: Duration = Duration::from_secs(30);

/// What `caasd gateway` is told.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// The control plane's API: a URL (`http://10.0.0.1:7080`), or `file:PATH` of a caasd run
    /// file (`DATA_DIR/caasd.json`) to read it from, so the gateway follows a control plane on
    /// this machine whose API address changes between starts.
    pub server: String,
    pub token: String,
    /// `routes.json`, `gateway.json`.
    pub data_dir: PathBuf,
    /// Apps served before the first table arrives (from neither cache nor control plane).
    pub domain: String,
    /// How long requests in flight get to finish when the gateway is asked to stop.
    pub drain: Duration,
    pub limits: super::Limits,
    /// Recorded in the run file (see `RunFile::spec`).
    pub spec: String,
}

/// `DATA_DIR/gateway.json`: which gateway serves, written once it listens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunFile {
    pub pid: u32,
    /// The address it listens on (the port chosen, when asked for port 0).
    pub addr: SocketAddr,
    /// The address it was asked to listen on.
    pub requested: SocketAddr,
    pub version: String,
    pub server: String,
    /// What it was started with (`supervise::Spec::id`): caasd keeps a gateway whose spec is its
    /// own, and hands over to a new one otherwise.
    #[serde(default)]
    pub spec: String,
}

pub fn run_file(data_dir: &Path) -> PathBuf {
    data_dir.join("gateway.json")
}

fn cache_file(data_dir: &Path) -> PathBuf {
    data_dir.join("routes.json")
}

/// Binds `addr` with `SO_REUSEPORT`, so a newer gateway can take over the address without a
/// moment when nothing listens.
fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(tokio::net::TcpListener::from_std(socket.into())?)
}

/// The table the gateway last saw, if it kept one.
fn load_cache(data_dir: &Path) -> Option<RoutingTable> {
    let bytes = std::fs::read(cache_file(data_dir)).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!("ignoring the route cache: {e}");
            None
        }
    }
}

fn save_cache(data_dir: &Path, table: &RoutingTable) {
    let result = serde_json::to_vec(table)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| crate::agent::write_private(&cache_file(data_dir), &bytes));
    if let Err(e) = result {
        tracing::warn!("writing the route cache: {e:#}");
    }
}

pub async fn run(cfg: GatewayConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let cached = load_cache(&cfg.data_dir);
    if cached.is_some() {
        tracing::info!("serving from the route cache until the control plane answers");
    }
    let first = cached.unwrap_or_else(|| RoutingTable {
        domain: cfg.domain.clone(),
        ..RoutingTable::default()
    });
    let index = first.index;
    let (tx, rx) = watch::channel(Arc::new(RouteTable::from_wire(&first)));
    let listener =
        bind(cfg.listen).with_context(|| format!("binding the gateway to {}", cfg.listen))?;
    let addr = listener.local_addr()?;

    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .build()?;
    let api = Api {
        client,
        server: cfg.server.trim_end_matches('/').to_string(),
        token: cfg.token.clone(),
    };
    if let Some(path) = cfg.server.strip_prefix("file:") {
        tracing::info!("following the control plane's API address in {path}");
    }
    let reporter = Arc::new(Reporter::default());
    if index != 0 {
        reporter.serving(index);
    }
    let gateway = Gateway::new(rx, reporter.clone(), cfg.limits.clone());

    let mut tasks = tokio::task::JoinSet::new();
    let stop_feed = shutdown.child_token();
    tasks.spawn(follow(
        api.clone(),
        tx,
        reporter.clone(),
        index,
        cfg.data_dir.clone(),
        stop_feed.clone(),
    ));
    let stop_report = CancellationToken::new();
    tasks.spawn(ship(api, reporter, stop_report.clone()));
    let serving = CancellationToken::new();
    let serve = tokio::spawn(gateway.serve(listener, serving.clone(), cfg.drain));

    let run = RunFile {
        pid: std::process::id(),
        addr,
        requested: cfg.listen,
        version: env!("CARGO_PKG_VERSION").to_string(),
        server: cfg.server.clone(),
        spec: cfg.spec.clone(),
    };
    crate::agent::write_private(&run_file(&cfg.data_dir), &serde_json::to_vec_pretty(&run)?)?;
    tracing::info!(%addr, "gateway ready");

    shutdown.cancelled().await;
    // A newer gateway listens on the same address beside this one (SO_REUSEPORT): go on
    // accepting a moment, so no connection waits in a queue that is about to close, then stop.
    tokio::time::sleep(HANDOVER_OVERLAP).await;
    tracing::info!("gateway stopping: no new connections, requests in flight may finish");
    serving.cancel();
    let _ = serve.await;
    // The last router lines and counts go out before the process ends.
    stop_report.cancel();
    stop_feed.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    // Only our own run file: a newer gateway may have written its own meanwhile.
    let path = run_file(&cfg.data_dir);
    if let Ok(bytes) = std::fs::read(&path) {
        if serde_json::from_slice::<RunFile>(&bytes).is_ok_and(|r| r.pid == run.pid) {
            let _ = std::fs::remove_file(&path);
        }
    }
    Ok(())
}

#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    server: String,
    token: String,
}

impl Api {
    /// The API's base URL, read anew each time from the run file when that is what was given.
    fn base(&self) -> Result<String, String> {
        let Some(path) = self.server.strip_prefix("file:") else {
            return Ok(self.server.clone());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("the control plane is not running ({path}: {e})"))?;
        let info: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        info["api"]
            .as_str()
            .map(|a| a.trim_end_matches('/').to_string())
            .ok_or_else(|| format!("{path} names no API address"))
    }

    async fn routes(&self, index: u64) -> Result<RoutingTable, String> {
        let resp = self
            .client
            .get(format!(
                "{}/v1/gateway/routes?index={index}&wait={}",
                self.base()?,
                POLL_WAIT.as_secs()
            ))
            .bearer_auth(&self.token)
            .timeout(POLL_WAIT + Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("the control plane answered {}", resp.status()));
        }
        resp.json().await.map_err(|e| e.to_string())
    }

    async fn report(&self, report: &GatewayReport) -> Result<(), String> {
        let resp = self
            .client
            .post(format!("{}/v1/gateway/report", self.base()?))
            .bearer_auth(&self.token)
            .json(report)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("the control plane answered {}", resp.status()))
        }
    }
}

/// Follows the control plane's table until `stop`: each new one is served and cached.
async fn follow(
    api: Api,
    tx: watch::Sender<Arc<RouteTable>>,
    reporter: Arc<Reporter>,
    mut index: u64,
    data_dir: PathBuf,
    stop: CancellationToken,
) {
    let mut said = false;
    loop {
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = api.routes(index) => r,
        };
        match result {
            Ok(table) => {
                if said {
                    tracing::info!("the control plane answers again");
                    said = false;
                }
                if table.index != index {
                    index = table.index;
                    tx.send_replace(Arc::new(RouteTable::from_wire(&table)));
                    reporter.serving(index);
                    let dir = data_dir.clone();
                    let _ = tokio::task::spawn_blocking(move || save_cache(&dir, &table)).await;
                }
            }
            Err(e) => {
                if !said {
                    tracing::warn!(
                        "the control plane does not answer ({e}); serving the last routes"
                    );
                    said = true;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}

/// Sends reports every [`SHIP_EVERY`] until `stop`, then once more.
async fn ship(api: Api, reporter: Arc<Reporter>, stop: CancellationToken) {
    let mut reported_index = None;
    loop {
        let last = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tokio::time::sleep(SHIP_EVERY) => false,
            // A new table is said at once: a deploy waits to hear it serves.
            _ = reporter.changed.notified() => false,
        };
        let report = reporter.take();
        let news = report.serving_index != reported_index;
        if news
            || !report.lines.is_empty()
            || !report.traffic.is_empty()
            || report.dropped_lines > 0
        {
            let index = report.serving_index;
            match api.report(&report).await {
                Ok(()) => reported_index = index,
                Err(e) => {
                    tracing::debug!("reporting to the control plane: {e}");
                    reporter.restore(report);
                }
            }
        }
        if last {
            return;
        }
    }
}
