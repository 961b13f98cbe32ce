//! TCP routes: `GET/POST /v1/apps/{app}/ports`, `DELETE /v1/apps/{app}/ports/{port}`. A route is
//! a public port of the gateway (from `caasd --tcp-ports`) that forwards connections to the app's
//! web instances; the store's `tcp_ports` tree gives each port to one app (compare-and-swap).

use super::auth::{load_app, Access, Caller};
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use crate::store::TcpRouteRecord;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use caas_api::ports::{AddPort, PortRoute};
use caas_api::Timestamp;

/// TCP routes one app may have.
const MAX_PORTS: usize = 10;

fn view(s: &AppState, r: &TcpRouteRecord) -> PortRoute {
    PortRoute {
        protocol: "tcp".into(),
        port: r.port,
        target: r.target,
        address: format!("{}.{}:{}", r.app, s.config.domain, r.port),
        created_at: r.created_at,
    }
}

/// Whether nothing on this machine listens on `port` at the gateway's address (the gateway
/// itself binds it with `SO_REUSEPORT` once the route is in its table).
fn bindable(s: &AppState, port: u16) -> bool {
    std::net::TcpListener::bind((s.config.gateway_ip, port)).is_ok()
}

#[utoipa::path(get, path = "/v1/apps/{app}/ports", tag = "ports", operation_id = "ports_list", params(("app" = String, Path)), responses((status = 200, description = "OK", body = Vec<PortRoute>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn list(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<PortRoute>>> {
    load_app(&s, &caller, &app, Access::Read)?;
    let routes = s
        .store
        .tcp_routes()?
        .iter()
        .filter(|r| r.app == app)
        .map(|r| view(&s, r))
        .collect();
    Ok(Json(routes))
}

#[utoipa::path(post, path = "/v1/apps/{app}/ports", tag = "ports", operation_id = "ports_add", params(("app" = String, Path)), request_body = AddPort, responses((status = "2XX", description = "done", body = PortRoute), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn add(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<AddPort>,
) -> ApiResult<(StatusCode, Json<PortRoute>)> {
    load_app(&s, &caller, &app, Access::Manage)?;
    if !req.protocol.eq_ignore_ascii_case("tcp") {
        return Err(ApiError::Invalid(format!(
            "unknown protocol {:?}: caas routes tcp",
            req.protocol.chars().take(20).collect::<String>()
        )));
    }
    let (low, high) = s.config.tcp_ports;
    let target = match req.target {
        None => None,
        Some(t) if (1..=65535).contains(&t) => Some(t as u16),
        Some(t) => {
            return Err(ApiError::Invalid(format!(
                "invalid target port {t}: use 1 to 65535"
            )))
        }
    };
    let routes = s.store.tcp_routes()?;
    if routes.iter().filter(|r| r.app == app).count() >= MAX_PORTS {
        return Err(ApiError::Invalid(format!(
            "{app} has {MAX_PORTS} TCP routes, the most an app may have; remove one first"
        )));
    }
    let taken = |p: u16| routes.iter().any(|r| r.port == p);
    let port = match req.port {
        Some(p) => {
            if !(low as u32..=high as u32).contains(&p) {
                return Err(ApiError::Invalid(format!(
                    "port {p} is outside the gateway's TCP ports {low}-{high} (caasd --tcp-ports)"
                )));
            }
            let p = p as u16;
            if taken(p) {
                return Err(ApiError::Invalid(format!(
                    "port {p} is taken by another TCP route; pick another or let caas pick"
                )));
            }
            if !bindable(&s, p) {
                return Err(ApiError::Invalid(format!(
                    "port {p} is in use on the gateway's machine; pick another or let caas pick"
                )));
            }
            p
        }
        None => (low..=high)
            .find(|p| !taken(*p) && bindable(&s, *p))
            .ok_or_else(|| {
                ApiError::Invalid(format!(
                    "every TCP port of the gateway ({low}-{high}) is taken; remove a route or widen caasd --tcp-ports"
                ))
            })?,
    };
    let rec = TcpRouteRecord {
        app: app.clone(),
        port,
        target,
        created_at: Timestamp::now(),
    };
    if !s.store.add_tcp_route(&rec)? {
        return Err(ApiError::Invalid(format!(
            "port {port} is taken by another TCP route; pick another or let caas pick"
        )));
    }
    s.store.flush().await?;
    let what = match target {
        Some(t) => format!("tcp {port} -> {t}"),
        None => format!("tcp {port} -> $PORT"),
    };
    super::audit(&s, &caller, "ports:add", Some(&app), what.clone());
    s.logs
        .event(&app, "ports", format!("Added TCP route {what}"));
    Ok((StatusCode::CREATED, Json(view(&s, &rec))))
}

#[utoipa::path(delete, path = "/v1/apps/{app}/ports/{port}", tag = "ports", operation_id = "ports_remove", params(("app" = String, Path), ("port" = String, Path)), responses((status = "2XX", description = "done"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn remove(
    caller: Caller,
    State(s): State<AppState>,
    Path((app, port)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    load_app(&s, &caller, &app, Access::Manage)?;
    let removed = match port.parse::<u16>() {
        Ok(p) => s.store.remove_tcp_route(&app, p)?,
        Err(_) => false,
    };
    if !removed {
        return Err(ApiError::NotFound(format!(
            "{app} has no TCP route on port {port:?}: see caas ports -a {app}"
        )));
    }
    s.store.flush().await?;
    super::audit(&s, &caller, "ports:remove", Some(&app), port.clone());
    s.logs
        .event(&app, "ports", format!("Removed TCP route {port}"));
    Ok(StatusCode::NO_CONTENT)
}
