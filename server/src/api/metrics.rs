//! `GET /v1/apps/{app}/metrics?window=SECS`: an app's traffic over the last seconds, from the
//! counts the gateway reports.

use super::apps::instance_state;
use super::auth::{load_app, Access, Caller};
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::traffic::WINDOW_SECS;
use axum::extract::{Path, Query, State};
use axum::Json;
use caas_api::metrics::InstanceMetrics;
use caas_api::{AppMetrics, Timestamp};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct MetricsQuery {
    #[serde(default = "default_window")]
    window: u64,
}

fn default_window() -> u64 {
    300
}

#[utoipa::path(get, path = "/v1/apps/{app}/metrics", tag = "metrics", operation_id = "metrics_app", params(("app" = String, Path)), responses((status = 200, description = "OK", body = AppMetrics), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn app(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    Query(q): Query<MetricsQuery>,
) -> ApiResult<Json<AppMetrics>> {
    load_app(&s, &caller, &app, Access::Read)?;
    if q.window == 0 || q.window > WINDOW_SECS {
        return Err(ApiError::Invalid(format!(
            "invalid window {}: give 1 to {WINDOW_SECS} seconds",
            q.window
        )));
    }
    let now = Timestamp::now().millis() / 1000;
    let c = s.traffic.window(&app, now, q.window);
    let instances = instances(&s, &app)?;
    Ok(Json(AppMetrics {
        app,
        window_secs: q.window,
        requests: c.requests(),
        rps: c.requests() as f64 / q.window as f64,
        status: c.status,
        p50_ms: c.quantile_ms(0.5),
        p95_ms: c.quantile_ms(0.95),
        p99_ms: c.quantile_ms(0.99),
        bytes: c.bytes,
        instances,
    }))
}

/// The app's instances with their CPU and memory, as `caas ps` orders them.
fn instances(s: &AppState, app: &str) -> ApiResult<Vec<InstanceMetrics>> {
    let now = Timestamp::now();
    let mut out: Vec<(u32, InstanceMetrics)> = s
        .store
        .allocations()?
        .into_iter()
        .filter(|a| a.app == app)
        .map(|a| {
            let report = s.observed.report(&a.id);
            let state = instance_state(s, &a, report.as_ref(), now);
            let m = InstanceMetrics {
                name: a.instance_name(),
                process: a.process.clone(),
                release: a.release,
                state,
                usage: report.and_then(|r| r.usage),
            };
            (a.index, m)
        })
        .collect();
    out.sort_by(|(ia, a), (ib, b)| (&a.process, ia, a.release).cmp(&(&b.process, ib, b.release)));
    Ok(out.into_iter().map(|(_, m)| m).collect())
}
