//! `GET /v1/apps/{app}/metrics?window=SECS`: an app's traffic over the last seconds, from the
//! counts the gateway reports; `GET /v1/apps/{app}/metrics/history`: its last hour, a minute
//! at a time (the dashboard's graphs).

use super::apps::instance_state;
use super::auth::{load_app, Access, Caller};
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::traffic::WINDOW_SECS;
use axum::extract::{Path, Query, State};
use axum::Json;
use caas_api::metrics::{InstanceMetrics, MetricsHistory, MinuteMetrics};
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

#[utoipa::path(get, path = "/v1/apps/{app}/metrics/history", tag = "metrics", operation_id = "metrics_history", params(("app" = String, Path)), responses((status = 200, description = "OK", body = MetricsHistory), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn history(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<MetricsHistory>> {
    load_app(&s, &caller, &app, Access::Read)?;
    let now = Timestamp::now().millis() / 1000;
    let first = (now / 60 + 1).saturating_sub(crate::traffic::HISTORY_MINUTES) * 60;
    let usage = s.usage.minutes(&app, now);
    let minutes = s
        .traffic
        .minutes(&app, now)
        .into_iter()
        .zip(usage)
        .zip(0u64..)
        .map(|((c, u), i)| {
            let start = first + i * 60;
            // The current minute has run only so far.
            let secs = (now + 1).saturating_sub(start).clamp(1, 60);
            MinuteMetrics {
                at: Timestamp::from_millis(start * 1000),
                requests: c.requests(),
                rps: c.requests() as f64 / secs as f64,
                status_5xx: c.status[4],
                p95_ms: c.quantile_ms(0.95),
                cpu_percent: u.cpu_percent,
                memory_bytes: u.memory_bytes,
            }
        })
        .collect();
    Ok(Json(MetricsHistory { app, minutes }))
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
