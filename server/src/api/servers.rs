//! The control-plane servers (admins only): `GET /v1/servers`, every caasd registered in the
//! store, which one leads, and whether each answers now.

use super::auth::Admin;
use super::error::ApiResult;
use super::AppState;
use axum::extract::State;
use axum::Json;
use caas_api::servers::ControlServer;
use std::time::Duration;

#[utoipa::path(get, path = "/v1/servers", tag = "servers", operation_id = "servers_list", responses((status = 200, description = "OK", body = Vec<ControlServer>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn list(_: Admin, State(s): State<AppState>) -> ApiResult<Json<Vec<ControlServer>>> {
    let store = s.store.clone();
    let (servers, leader) = tokio::task::spawn_blocking(move || store.servers())
        .await
        .map_err(|e| super::error::ApiError::Internal(e.to_string()))??;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(1))
        .build()
        .map_err(|e| super::error::ApiError::Internal(e.to_string()))?;
    // Each asked at once: a server that does not answer costs the listing one second, not one
    // second per server.
    let checks = servers.iter().map(|srv| {
        let url = format!("{}/v1/info", srv.api);
        let http = http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    });
    let healthy = futures_util::future::join_all(checks).await;
    Ok(Json(
        servers
            .into_iter()
            .zip(healthy)
            .map(|(srv, healthy)| ControlServer {
                leader: leader.as_deref() == Some(srv.id.as_str()),
                healthy,
                id: srv.id,
                name: srv.name,
                api: srv.api,
                started_at: srv.started_at,
                version: srv.version,
            })
            .collect(),
    ))
}
