//! The REST API (axum): the user API under `/v1/apps`, `/v1/images`, `/v1/hosts`, and the agent
//! protocol under `/v1/agent`. Handlers validate, write the store (flushing before they answer
//! success), and wake the scheduler; they never talk to agents or containers directly.

mod access;
mod addons;
mod addons_dump;
mod addons_hosts;
mod agent;
mod apps;
pub mod auth;
mod builds;
mod canary;
mod certs;
mod checks;
mod config;
mod domains;
mod drains;
mod error;
mod gateway;
mod git;
pub mod hooks;
mod hosts;
mod instances;
mod logs;
mod metrics;
mod openapi;
mod ports;
mod prometheus;
mod rename;
mod resources;
mod runs;
mod scaling;
mod servers;
mod users;

pub use addons_hosts::recover as recover_addons;
pub use agent::CONTAINER_PORT;
pub use error::ApiError;
pub use rename::recover as recover_renames;

use crate::builder::Builder;
use crate::docker::Engine;
use crate::logs::LogHub;
use crate::observed::Observed;
use crate::store::Store;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;
use std::sync::Arc;
use tokio::sync::Notify;

/// What the API needs to know about the installation.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub domain: String,
    /// `http://{app}.localhost:8080`: `{app}` is replaced by the app name.
    pub app_url_template: String,
    pub max_scale: u32,
    pub instance_memory_mb: u64,
    /// The memory reservation of a process type that sets none (`caasd --instance-reserve`).
    pub instance_reserve_mb: u64,
    /// Bounds of `caas ps:resize` (`caasd --max-instance-memory`, `--max-instance-cpus`).
    pub max_instance_memory_mb: u64,
    pub max_instance_cpus: f64,
    pub max_image_upload: u64,
    /// Largest build upload, in bytes.
    pub max_upload: u64,
    pub cluster_id: String,
    /// How long a release has to come up (`caasd --start-timeout`).
    pub start_timeout: std::time::Duration,
    /// What an app's settings are when it sets none (`caasd --drain`, the rollout defaults).
    pub settings_defaults: caas_api::checks::AppSettings,
    /// Public ports TCP routes are given from (`caasd --tcp-ports`), inclusive.
    pub tcp_ports: (u16, u16),
    /// The address the gateway listens on, where TCP routes listen too.
    pub gateway_ip: std::net::IpAddr,
    /// The ACME server's directory (`caasd --acme-directory`).
    pub acme_directory: String,
    /// How long a replaced instance keeps serving (`caasd --drain`): restarts drain this long.
    pub drain: std::time::Duration,
    /// `sha256:...` of the API's certificate, which agents pin (`caas hosts:add` prints it).
    pub api_fingerprint: String,
}

impl ApiConfig {
    pub fn app_url(&self, app: &str) -> String {
        self.app_url_template.replace("{app}", app)
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub engine: Engine,
    pub logs: Arc<LogHub>,
    pub observed: Arc<Observed>,
    /// Wakes the scheduler after a change it must act on.
    pub wake: Arc<Notify>,
    pub config: Arc<ApiConfig>,
    pub builder: Arc<Builder>,
    pub repos: crate::git::Repos,
    /// Scratch space for pushes in flight.
    pub repos_tmp: std::path::PathBuf,
    /// Changes whenever the routing table does (the gateway's blocking query waits on it).
    pub routing_index: tokio::sync::watch::Receiver<u64>,
    /// Request counts the gateway reports.
    pub traffic: Arc<crate::traffic::Traffic>,
    /// The instances' resource use over the last hour.
    pub usage: Arc<crate::metrics::history::UsageHistory>,
    /// The platform's own counts (`GET /metrics`).
    pub counters: Arc<crate::metrics::Counters>,
    /// What the autoscaler last saw and did.
    pub autoscale: Arc<crate::autoscale::Status>,
    /// The alerts raised now.
    pub alerts: Arc<crate::alerts::Raised>,
    /// Failed authentications per client address.
    pub auth_failures: Arc<auth::Failures>,
    /// The routing index the gateway says it serves (0 until it reports).
    pub gateway_serving: Arc<tokio::sync::watch::Sender<u64>>,
    /// One push event per app at a time (`hooks.rs`).
    pub push_locks: Arc<hooks::PushLocks>,
    /// Add-on services on this host (`crate::addons`).
    pub addons: Arc<crate::addons::Services>,
    /// What the scheduler could not place.
    pub board: Arc<crate::schedule::Board>,
    /// One-off processes (`caas run`, the release phase).
    pub runner: Arc<crate::oneoff::Runner>,
}

impl ApiConfig {
    pub fn memory(&self) -> crate::schedule::place::Defaults {
        crate::schedule::place::Defaults {
            limit_mb: self.instance_memory_mb,
            reserve_mb: self.instance_reserve_mb,
        }
    }
}

/// Waits (a few seconds at most) until the gateway serves what the routes say now, so a deploy
/// that is up is up at its URL. Without a gateway that reports, it does not wait.
pub(crate) async fn until_served(s: &AppState, app: &str, version: u64) {
    use std::time::Duration;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    // The scheduler writes a new release's routes in the pass after it promoted it.
    let web_wanted = s
        .store
        .app(app)
        .ok()
        .flatten()
        .is_some_and(|a| a.formation.get(caas_api::WEB).copied().unwrap_or(0) > 0);
    if web_wanted {
        loop {
            let routed = s
                .store
                .routes()
                .is_ok_and(|r| r.iter().any(|(k, _)| k.app == app && k.release == version));
            if routed || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Route writes bump the index right after they land: let that settle, then the gateway must
    // serve at least that.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let target = *s.routing_index.borrow();
    let mut served = s.gateway_serving.subscribe();
    if *served.borrow() == 0 {
        return;
    }
    let _ = tokio::time::timeout_at(deadline, served.wait_for(|i| *i >= target)).await;
}

/// Records a change in the audit log: who, from where, what. A failure to record is logged,
/// not the caller's problem.
pub(crate) fn audit(
    s: &AppState,
    caller: &auth::Caller,
    action: &str,
    app: Option<&str>,
    detail: impl Into<String>,
) {
    let rec = crate::store::AuditRecord {
        at: caas_api::Timestamp::now(),
        user: caller.user.clone(),
        token: caller.token_id.clone(),
        address: caller
            .addr
            .map_or_else(|| "-".to_string(), |a| a.ip().to_string()),
        action: action.to_string(),
        app: app.map(str::to_string),
        detail: detail.into(),
    };
    if let Err(e) = s.store.audit(&rec) {
        tracing::error!("writing the audit log: {e}");
    }
}

/// One value as a line of newline-delimited JSON.
fn ndjson<T: serde::Serialize>(value: &T) -> Result<bytes::Bytes, std::io::Error> {
    let mut v = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    v.push(b'\n');
    Ok(v.into())
}

/// A live NDJSON stream (logs, build events).
fn ndjson_response(body: axum::body::Body) -> axum::response::Response {
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/x-ndjson")
        // Proxies in front of caasd must not buffer a live stream.
        .header("x-accel-buffering", "no")
        .body(body)
        .expect("static headers are valid")
}

/// JSON bodies are small; uploads have their own, larger limit.
const JSON_LIMIT: usize = 1024 * 1024;
/// The gateway's reports: 50,000 router lines of up to a few hundred bytes.
const GATEWAY_REPORT_LIMIT: usize = 64 * 1024 * 1024;

pub fn router(state: AppState) -> Router {
    // Uploads stream to disk or to the engine with limits of their own; the default limit (for
    // JSON bodies) applies to everything else. The route-level layer is inside the router-level
    // one, so it wins.
    let upload = || DefaultBodyLimit::disable();
    Router::new()
        .route("/v1/info", get(apps::info))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/metrics", get(prometheus::metrics))
        .route("/v1/apps", get(apps::list).post(apps::create))
        .route(
            "/v1/apps/{app}",
            get(apps::show).delete(apps::destroy).patch(rename::rename),
        )
        .route("/v1/apps/{app}/deploys", post(apps::deploy))
        .route("/v1/apps/{app}/releases", get(apps::releases))
        .route("/v1/apps/{app}/releases/{version}", get(apps::release))
        .route("/v1/apps/{app}/rollback", post(config::rollback))
        .route(
            "/v1/apps/{app}/canary",
            get(canary::get).post(canary::start).patch(canary::set),
        )
        .route("/v1/apps/{app}/canary/promote", post(canary::promote))
        .route("/v1/apps/{app}/canary/abort", post(canary::abort))
        .route(
            "/v1/apps/{app}/config",
            get(config::get).patch(config::patch),
        )
        .route("/v1/apps/{app}/resources", get(resources::get))
        .route("/v1/apps/{app}/resources/{process}", put(resources::put))
        .route(
            "/v1/apps/{app}/formation",
            get(apps::formation).patch(apps::scale),
        )
        .route("/v1/apps/{app}/ps", get(apps::ps))
        .route(
            "/v1/apps/{app}/checks",
            get(checks::list).patch(checks::patch),
        )
        .route(
            "/v1/apps/{app}/settings",
            get(checks::settings).patch(checks::patch_settings),
        )
        .route("/v1/apps/{app}/ps/restart", post(instances::restart))
        .route("/v1/apps/{app}/ps/stop", post(instances::stop))
        .route("/v1/apps/{app}/logs", get(logs::stream))
        .route("/v1/apps/{app}/runs", post(runs::start))
        .route("/v1/apps/{app}/metrics", get(metrics::app))
        .route("/v1/apps/{app}/metrics/history", get(metrics::history))
        .route("/v1/apps/{app}/autoscale", get(scaling::list))
        .route(
            "/v1/apps/{app}/autoscale/{process}",
            put(scaling::set).delete(scaling::off),
        )
        .route(
            "/v1/apps/{app}/alerts",
            get(scaling::alerts)
                .put(scaling::set_alerts)
                .delete(scaling::clear_alerts),
        )
        .route("/v1/apps/{app}/drains", get(drains::list).post(drains::add))
        .route("/v1/apps/{app}/drains/{id}", delete(drains::remove))
        .route(
            "/v1/apps/{app}/git",
            get(hooks::show)
                .put(hooks::connect)
                .delete(hooks::disconnect),
        )
        .route(
            "/v1/apps/{app}/webhooks",
            get(hooks::list).post(hooks::add).delete(hooks::remove),
        )
        .route(
            "/v1/apps/{app}/webhooks/git",
            post(hooks::push_event).layer(upload()),
        )
        .route(
            "/v1/apps/{app}/domains",
            get(domains::list).post(domains::add),
        )
        .route("/v1/apps/{app}/domains/{hostname}", delete(domains::remove))
        .route(
            "/v1/apps/{app}/routing",
            get(domains::routing).patch(domains::set_routing),
        )
        .route("/v1/apps/{app}/certs", get(certs::list).post(certs::add))
        .route("/v1/apps/{app}/certs/auto", get(certs::auto))
        .route("/v1/apps/{app}/certs/{id}", delete(certs::remove))
        .route("/v1/apps/{app}/ports", get(ports::list).post(ports::add))
        .route("/v1/apps/{app}/ports/{port}", delete(ports::remove))
        .route(
            "/v1/apps/{app}/access-rules",
            get(access::list).post(access::add).delete(access::remove),
        )
        .route(
            "/v1/apps/{app}/builds",
            post(builds::create).layer(upload()).get(builds::list),
        )
        .route("/v1/apps/{app}/builds/{number}", get(builds::show))
        .route("/v1/apps/{app}/builds/{number}/output", get(builds::output))
        .route("/v1/apps/{app}/buildpack", put(builds::set_buildpack))
        .route("/v1/buildpacks", get(builds::buildpacks))
        .route("/v1/images", post(apps::load_images).layer(upload()))
        .route("/v1/addons", get(addons::list).post(addons::create))
        .route(
            "/v1/addons/{name}",
            get(addons::info)
                .patch(addons::update)
                .delete(addons::destroy),
        )
        .route("/v1/addons/{name}/attachments", post(addons::attach))
        .route(
            "/v1/addons/{name}/attachments/{app}",
            delete(addons::detach),
        )
        .route(
            "/v1/addons/{name}/backup",
            get(addons_dump::backup)
                .put(addons_dump::restore)
                .layer(upload()),
        )
        .route("/v1/hosts", get(hosts::list).post(hosts::add))
        .route("/v1/hosts/{name}", delete(hosts::remove))
        .route("/v1/servers", get(servers::list))
        .route("/v1/whoami", get(users::whoami))
        .route("/v1/users", get(users::list).post(users::create))
        .route("/v1/users/{name}", delete(users::remove))
        .route("/v1/tokens", get(users::tokens).post(users::create_token))
        .route("/v1/tokens/{id}", delete(users::revoke_token))
        .route(
            "/v1/apps/{app}/access",
            get(users::access).post(users::grant),
        )
        .route("/v1/apps/{app}/access/{user}", delete(users::revoke))
        .route("/v1/audit", get(users::audit))
        .route("/v1/agent/register", post(agent::register))
        .route("/v1/agent/assignments", get(agent::assignments))
        .route("/v1/agent/heartbeat", post(agent::heartbeat))
        .route("/v1/agent/logs", post(agent::logs))
        .route("/v1/agent/images/{id}", get(agent::image))
        .route("/v1/gateway/routes", get(gateway::routes))
        // A report holds up to 50,000 router lines (what the gateway kept while the control plane
        // was slow or away): far past the JSON limit, which would refuse it for ever after, and
        // with it the request counts that metrics and autoscaling live on.
        .route(
            "/v1/gateway/report",
            post(gateway::report).layer(DefaultBodyLimit::max(GATEWAY_REPORT_LIMIT)),
        )
        .route("/{repo}/info/refs", get(git::info_refs))
        .route(
            "/{repo}/git-receive-pack",
            post(git::receive_pack).layer(upload()),
        )
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
        .fallback(|| async { ApiError::NotFound("no such endpoint: see docs/api.md".into()) })
        .with_state(state)
}
