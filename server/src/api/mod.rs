//! The REST API (axum): the user API under `/v1/apps`, `/v1/images`, `/v1/hosts`, and the agent
//! protocol under `/v1/agent`. Handlers validate, write the store (flushing before they answer
//! success), and wake the scheduler; they never talk to agents or containers directly.

mod agent;
mod apps;
mod auth;
mod error;
mod logs;

pub use error::ApiError;

use crate::docker::Engine;
use crate::logs::LogHub;
use crate::observed::Observed;
use crate::store::Store;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
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
    pub max_image_upload: u64,
    pub cluster_id: String,
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
}

/// JSON bodies are small; uploads have their own, larger limit.
const JSON_LIMIT: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    let uploads = Router::new()
        .route("/v1/images", post(apps::load_images))
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .route("/v1/info", get(apps::info))
        .route("/v1/apps", get(apps::list).post(apps::create))
        .route("/v1/apps/{app}", get(apps::show).delete(apps::destroy))
        .route("/v1/apps/{app}/deploys", post(apps::deploy))
        .route("/v1/apps/{app}/releases", get(apps::releases))
        .route("/v1/apps/{app}/formation", get(apps::formation).patch(apps::scale))
        .route("/v1/apps/{app}/ps", get(apps::ps))
        .route("/v1/apps/{app}/logs", get(logs::stream))
        .route("/v1/hosts", get(apps::hosts))
        .route("/v1/agent/register", post(agent::register))
        .route("/v1/agent/assignments", get(agent::assignments))
        .route("/v1/agent/heartbeat", post(agent::heartbeat))
        .route("/v1/agent/logs", post(agent::logs))
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
        .merge(uploads)
        .fallback(|| async { ApiError::NotFound("no such endpoint: see docs/api.md".into()) })
        .with_state(state)
}
