//! Log drains: `GET/POST /v1/apps/{app}/drains`, `DELETE /v1/apps/{app}/drains/{id}`. The URLs are
//! intent (in the app's record); the hub runs them and counts what they delivered and dropped.

use super::auth::{load_app, Access, Caller};
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use crate::logs::{drain_id, DrainTarget};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use caas_api::{AddDrain, Drain};

/// Drains one app may have.
const MAX_DRAINS: usize = 10;

#[utoipa::path(get, path = "/v1/apps/{app}/drains", tag = "drains", operation_id = "drains_list", params(("app" = String, Path)), responses((status = 200, description = "OK", body = Vec<Drain>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn list(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Drain>>> {
    load_app(&s, &caller, &app, Access::Manage)?;
    Ok(Json(s.logs.drains(&app)))
}

#[utoipa::path(post, path = "/v1/apps/{app}/drains", tag = "drains", operation_id = "drains_add", params(("app" = String, Path)), request_body = AddDrain, responses((status = "2XX", description = "done", body = Drain), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn add(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<AddDrain>,
) -> ApiResult<(StatusCode, Json<Drain>)> {
    load_app(&s, &caller, &app, Access::Manage)?;
    let url = req.url.trim().to_string();
    DrainTarget::parse(&url).map_err(ApiError::Invalid)?;
    let rec = s.store.update_app::<ApiError>(&app, |a| {
        if a.drains.contains(&url) {
            return Err(ApiError::Conflict(format!("{app} already drains to {url}")));
        }
        if a.drains.len() >= MAX_DRAINS {
            return Err(ApiError::Invalid(format!(
                "{app} has {MAX_DRAINS} drains, the most an app may have; remove one first"
            )));
        }
        a.drains.push(url.clone());
        Ok(())
    })?;
    s.store.flush().await?;
    s.logs.set_drains(&app, &rec.drains);
    s.logs
        .event(&app, "drain", format!("Added log drain {}", drain_id(&url)));
    let added = s
        .logs
        .drains(&app)
        .into_iter()
        .find(|d| d.url == url)
        .ok_or_else(|| ApiError::Internal("the new drain did not start".into()))?;
    Ok((StatusCode::CREATED, Json(added)))
}

#[utoipa::path(delete, path = "/v1/apps/{app}/drains/{id}", tag = "drains", operation_id = "drains_remove", params(("app" = String, Path), ("id" = String, Path)), responses((status = "2XX", description = "done"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn remove(
    caller: Caller,
    State(s): State<AppState>,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    load_app(&s, &caller, &app, Access::Manage)?;
    let mut found = false;
    let rec = s.store.update_app::<ApiError>(&app, |a| {
        let before = a.drains.len();
        a.drains.retain(|u| drain_id(u) != id && *u != id);
        found = a.drains.len() != before;
        Ok(())
    })?;
    if !found {
        return Err(ApiError::NotFound(format!(
            "{app} has no drain {id:?}: see caas drains -a {app}"
        )));
    }
    s.store.flush().await?;
    s.logs.set_drains(&app, &rec.drains);
    s.logs
        .event(&app, "drain", format!("Removed log drain {}", id));
    Ok(StatusCode::NO_CONTENT)
}
