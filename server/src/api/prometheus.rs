//! `GET /metrics` (admin token): everything caasd knows, in Prometheus' text format. The figures
//! are gathered from where they live at each scrape (`metrics::expose` encodes them).

use super::apps::instance_state;
use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::metrics::expose::{self, BuildSample, InstanceSample, Snapshot};
use axum::extract::State;
use axum::response::Response;
use caas_api::Timestamp;
use std::collections::BTreeMap;

#[utoipa::path(get, path = "/metrics", tag = "prometheus", operation_id = "prometheus_metrics", responses((status = 200, description = "see docs/api.md"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn metrics(_: Admin, State(s): State<AppState>) -> ApiResult<Response> {
    // The store is read whole (builds, releases): off the async threads.
    let text = tokio::task::spawn_blocking(move || gather(&s).map(expose::encode))
        .await
        .map_err(|e| ApiError::Internal(format!("gathering metrics: {e}")))??;
    Ok(Response::builder()
        .header(axum::http::header::CONTENT_TYPE, expose::CONTENT_TYPE)
        .body(text.into())
        .expect("static headers are valid"))
}

fn gather(s: &AppState) -> ApiResult<Snapshot> {
    let now = Timestamp::now();
    let instances = s
        .store
        .allocations()?
        .into_iter()
        .map(|a| {
            let report = s.observed.report(&a.id);
            InstanceSample {
                state: instance_state(s, &a, report.as_ref(), now).as_str(),
                restarts: report.as_ref().map_or(0, |r| r.restarts),
                usage: report.and_then(|r| r.usage),
                instance: a.instance_name(),
                app: a.app,
                process: a.process,
            }
        })
        .collect();
    let mut builds = Vec::new();
    let mut deploys = Vec::new();
    for app in s.store.apps()? {
        for b in s.store.builds(&app.name)? {
            builds.push(BuildSample {
                app: app.name.clone(),
                status: b.status.as_str(),
                seconds: b.finished_at.map(|f| b.created_at.until(f).as_secs_f64()),
            });
        }
        let mut by_status: BTreeMap<&'static str, u64> = BTreeMap::new();
        for r in s.store.releases(&app.name)? {
            *by_status.entry(r.status.as_str()).or_default() += 1;
        }
        deploys.extend(
            by_status
                .into_iter()
                .map(|(status, n)| (app.name.clone(), status, n)),
        );
    }
    let host_names: BTreeMap<String, String> = s
        .store
        .hosts()?
        .into_iter()
        .map(|h| (h.id, h.name))
        .collect();
    let mut log_lines = Vec::new();
    let mut drains = Vec::new();
    for crate::logs::AppLogStats {
        app,
        lines,
        drains: app_drains,
    } in s.logs.stats()
    {
        log_lines.extend(
            lines
                .into_iter()
                .map(|(source, n)| (app.clone(), source.as_str(), n)),
        );
        drains.extend(
            app_drains
                .into_iter()
                .map(|(id, delivered, dropped)| (app.clone(), id, delivered, dropped)),
        );
    }
    Ok(Snapshot {
        traffic: s.traffic.totals(),
        instances,
        builds,
        deploys,
        store_bytes: s.store.size_on_disk()?,
        scheduler_passes: s.counters.scheduler_passes(),
        heartbeats: s
            .counters
            .heartbeats()
            .into_iter()
            .map(|(id, n)| (host_names.get(&id).cloned().unwrap_or(id), n))
            .collect(),
        log_lines,
        drains,
        dropped_lines: s.counters.dropped_lines(),
    })
}
