//! The server side of the gateway protocol (see `caas_api::gateway`): the routing table as a
//! blocking query, and the gateway's reports (router lines, request counts).

use super::auth::GatewayCaller;
use super::error::{ApiResult, JsonBody};
use super::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use caas_api::gateway::{GatewayReport, RoutingTable};
use caas_api::{LogSource, Timestamp};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// Longest a blocking query may wait.
const MAX_WAIT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
pub struct RoutesQuery {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    wait: u64,
}

#[utoipa::path(get, path = "/v1/gateway/routes", tag = "gateway", operation_id = "gateway_routes", responses((status = 200, description = "OK", body = RoutingTable), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn routes(
    _: GatewayCaller,
    State(s): State<AppState>,
    Query(q): Query<RoutesQuery>,
) -> ApiResult<Json<RoutingTable>> {
    let mut rx = s.routing_index.clone();
    let wait = Duration::from_secs(q.wait).min(MAX_WAIT);
    if *rx.borrow_and_update() == q.index && !wait.is_zero() {
        let _ = tokio::time::timeout(wait, rx.changed()).await;
    }
    // The index before the data: a change in between makes the gateway ask once more.
    let index = *rx.borrow();
    Ok(Json(crate::routing::load(
        &s.store,
        index,
        &s.config.domain,
    )?))
}

#[utoipa::path(post, path = "/v1/gateway/report", tag = "gateway", operation_id = "gateway_report", request_body = GatewayReport, responses((status = "2XX", description = "done"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn report(
    _: GatewayCaller,
    State(s): State<AppState>,
    JsonBody(report): JsonBody<GatewayReport>,
) -> ApiResult<StatusCode> {
    let mut exists: HashMap<String, bool> = HashMap::new();
    let mut known = |app: &str| -> ApiResult<bool> {
        if let Some(k) = exists.get(app) {
            return Ok(*k);
        }
        let k = caas_api::validate_app_name(app).is_ok() && s.store.app(app)?.is_some();
        exists.insert(app.to_string(), k);
        Ok(k)
    };
    let mut by_app: Vec<(String, Vec<caas_api::LogLine>)> = Vec::new();
    for l in report.lines {
        // A gateway writes router lines only.
        if l.line.source != LogSource::Router || !known(&l.app)? {
            continue;
        }
        match by_app.iter_mut().find(|(app, _)| *app == l.app) {
            Some((_, lines)) => lines.push(l.line),
            None => by_app.push((l.app, vec![l.line])),
        }
    }
    for (app, lines) in by_app {
        s.logs.publish_batch(&app, lines);
    }
    let mut traffic = Vec::new();
    for t in report.traffic {
        if known(&t.app)? {
            traffic.push(t);
        }
    }
    s.traffic.record(Timestamp::now().millis() / 1000, &traffic);
    if let Some(i) = report.serving_index {
        s.gateway_serving.send_if_modified(|v| {
            let changed = *v != i;
            *v = i;
            changed
        });
    }
    s.counters
        .dropped(crate::metrics::Dropped::Gateway, report.dropped_lines);
    if report.dropped_lines > 0 {
        tracing::warn!(
            "the gateway dropped {} router lines while the control plane was away",
            report.dropped_lines
        );
    }
    Ok(StatusCode::NO_CONTENT)
}
