//! Per-app access rules: `GET/POST/DELETE /v1/apps/{app}/access-rules`. The rules are intent in the
//! app's record; the gateway checks every request (403) and TCP connection (closed) against them.

use super::auth::{load_app, Access, Caller};
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use caas_api::access::{AccessRule, AccessRuleRequest, Cidr};
use caas_api::Timestamp;

/// Rules one app may have.
const MAX_RULES: usize = 100;

#[utoipa::path(get, path = "/v1/apps/{app}/access-rules", tag = "access", operation_id = "access_list", params(("app" = String, Path)), responses((status = 200, description = "OK", body = Vec<AccessRule>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn list(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<AccessRule>>> {
    Ok(Json(
        load_app(&s, &caller, &app, Access::Read)?.access_rules,
    ))
}

#[utoipa::path(post, path = "/v1/apps/{app}/access-rules", tag = "access", operation_id = "access_add", params(("app" = String, Path)), request_body = AccessRuleRequest, responses((status = "2XX", description = "done", body = AccessRule), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn add(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<AccessRuleRequest>,
) -> ApiResult<(StatusCode, Json<AccessRule>)> {
    load_app(&s, &caller, &app, Access::Manage)?;
    let cidr = Cidr::parse(&req.cidr)
        .map_err(ApiError::Invalid)?
        .to_string();
    let rule = AccessRule {
        action: req.action,
        cidr: cidr.clone(),
        created_at: Timestamp::now(),
    };
    s.store.update_app::<ApiError>(&app, |a| {
        if a.access_rules
            .iter()
            .any(|r| r.action == rule.action && r.cidr == rule.cidr)
        {
            return Err(ApiError::Conflict(format!(
                "{app} already has the rule {} {cidr}",
                rule.action.as_str()
            )));
        }
        if a.access_rules.len() >= MAX_RULES {
            return Err(ApiError::Invalid(format!(
                "{app} has {MAX_RULES} access rules, the most an app may have; remove one first"
            )));
        }
        a.access_rules.push(rule.clone());
        Ok(())
    })?;
    s.store.flush().await?;
    let what = format!("{} {cidr}", rule.action.as_str());
    super::audit(&s, &caller, "access-rules:add", Some(&app), what.clone());
    s.logs
        .event(&app, "access", format!("Added access rule: {what}"));
    Ok((StatusCode::CREATED, Json(rule)))
}

#[utoipa::path(delete, path = "/v1/apps/{app}/access-rules", tag = "access", operation_id = "access_remove", params(("app" = String, Path), ("action" = String, Query, description = "allow or deny"), ("cidr" = String, Query)), responses((status = "2XX", description = "done"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn remove(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    Query(req): Query<AccessRuleRequest>,
) -> ApiResult<StatusCode> {
    load_app(&s, &caller, &app, Access::Manage)?;
    let cidr = Cidr::parse(&req.cidr)
        .map_err(ApiError::Invalid)?
        .to_string();
    let mut found = false;
    s.store.update_app::<ApiError>(&app, |a| {
        let before = a.access_rules.len();
        a.access_rules
            .retain(|r| !(r.action == req.action && r.cidr == cidr));
        found = a.access_rules.len() != before;
        Ok(())
    })?;
    if !found {
        return Err(ApiError::NotFound(format!(
            "{app} has no rule {} {cidr}: see caas access-rules -a {app}",
            req.action.as_str()
        )));
    }
    s.store.flush().await?;
    let what = format!("{} {cidr}", req.action.as_str());
    super::audit(&s, &caller, "access-rules:remove", Some(&app), what.clone());
    s.logs
        .event(&app, "access", format!("Removed access rule: {what}"));
    Ok(StatusCode::NO_CONTENT)
}
