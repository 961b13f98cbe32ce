//! Users, per-app access, tokens and the audit log. Admins manage users; an app's owner (its
//! creator) and admins give and take access to it; everyone manages their own tokens.

use super::auth::{load_app, Access, Admin, Caller};
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use crate::auth;
use crate::store::{AuditRecord, Role, StoreError, TokenRecord, UpdateError, UserRecord};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use caas_api::users::{
    AppAccess, AuditEntry, CreateToken, CreateUser, GrantAccess, NewToken, TokenInfo, User, WhoAmI,
};
use caas_api::Timestamp;
use serde::Deserialize;
use std::time::Duration;

/// The longest a token may be made to live: a year. (Without an expiry it lives until revoked.)
const MAX_EXPIRY: Duration = Duration::from_secs(366 * 24 * 3600);

fn user_view(u: UserRecord) -> User {
    User {
        name: u.name,
        admin: u.admin,
        created_at: u.created_at,
    }
}

fn token_view(rec: &TokenRecord) -> TokenInfo {
    TokenInfo {
        id: rec.id.clone(),
        user: match &rec.role {
            Role::User { name } => name.clone(),
            _ => String::new(),
        },
        description: rec.label.clone(),
        app: rec.app.clone(),
        created_at: rec.created_at,
        expires_at: rec.expires_at,
        last_used: rec.last_used,
    }
}

fn no_user(name: &str) -> ApiError {
    ApiError::NotFound(format!("no user named {name:?}: see caas users"))
}

#[utoipa::path(get, path = "/v1/whoami", tag = "users", operation_id = "users_whoami", responses((status = 200, description = "OK", body = WhoAmI), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn whoami(caller: Caller, State(s): State<AppState>) -> ApiResult<Json<WhoAmI>> {
    let user = s.store.user(&caller.user)?.ok_or(ApiError::Unauthorized)?;
    let token = s
        .store
        .token(&caller.token_hash)?
        .ok_or(ApiError::Unauthorized)?;
    Ok(Json(WhoAmI {
        user: user_view(user),
        token: token_view(&token),
    }))
}

#[utoipa::path(get, path = "/v1/users", tag = "users", operation_id = "users_list", responses((status = 200, description = "OK", body = Vec<User>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn list(_: Admin, State(s): State<AppState>) -> ApiResult<Json<Vec<User>>> {
    Ok(Json(s.store.users()?.into_iter().map(user_view).collect()))
}

#[utoipa::path(post, path = "/v1/users", tag = "users", operation_id = "users_create", request_body = CreateUser, responses((status = "2XX", description = "done", body = NewToken), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn create(
    Admin(caller): Admin,
    State(s): State<AppState>,
    JsonBody(req): JsonBody<CreateUser>,
) -> ApiResult<(StatusCode, Json<NewToken>)> {
    caas_api::validate_user_name(&req.name)?;
    let user = UserRecord {
        name: req.name.clone(),
        admin: req.admin,
        created_at: Timestamp::now(),
    };
    match s.store.create_user(&user) {
        Ok(()) => {}
        Err(StoreError::Exists) => {
            return Err(ApiError::Conflict(format!(
                "a user named {:?} already exists",
                req.name
            )))
        }
        Err(e) => return Err(e.into()),
    }
    let (token, rec) = new_token(&s, &req.name, "first token", None, None)?;
    s.store.flush().await?;
    let role = if req.admin { "admin" } else { "member" };
    super::audit(
        &s,
        &caller,
        "users:add",
        None,
        format!("{} ({role})", req.name),
    );
    Ok((
        StatusCode::CREATED,
        Json(NewToken {
            token,
            info: token_view(&rec),
        }),
    ))
}

#[utoipa::path(delete, path = "/v1/users/{name}", tag = "users", operation_id = "users_remove", params(("name" = String, Path)), responses((status = "2XX", description = "done"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn remove(
    Admin(caller): Admin,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let user = s.store.user(&name)?.ok_or_else(|| no_user(&name))?;
    let admins = s.store.users()?.iter().filter(|u| u.admin).count();
    if user.admin && admins <= 1 {
        return Err(ApiError::Invalid(format!(
            "{name} is the last admin: add another admin first (caas users:add NAME --admin)"
        )));
    }
    match s.store.delete_user(&name) {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(no_user(&name)),
        Err(e) => return Err(e.into()),
    }
    s.store.flush().await?;
    super::audit(&s, &caller, "users:remove", None, name);
    Ok(StatusCode::NO_CONTENT)
}

/// Makes a token for `user`; the secret and its record.
fn new_token(
    s: &AppState,
    user: &str,
    description: &str,
    expires_in: Option<Duration>,
    app: Option<String>,
) -> ApiResult<(String, TokenRecord)> {
    let token = auth::generate(auth::ADMIN_PREFIX);
    let mut rec = TokenRecord::new(
        Role::User {
            name: user.to_string(),
        },
        description,
    );
    rec.expires_at = expires_in.map(|d| Timestamp::now().plus(d));
    rec.app = app;
    s.store.put_token(&auth::hash(&token), &rec)?;
    Ok((token, rec))
}

#[utoipa::path(get, path = "/v1/tokens", tag = "users", operation_id = "users_tokens", responses((status = 200, description = "OK", body = Vec<TokenInfo>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn tokens(caller: Caller, State(s): State<AppState>) -> ApiResult<Json<Vec<TokenInfo>>> {
    caller.unscoped()?;
    let role = Role::User {
        name: caller.user.clone(),
    };
    let mut list: Vec<TokenInfo> = s
        .store
        .tokens()?
        .into_iter()
        .filter(|(_, t)| t.role == role)
        .map(|(_, t)| token_view(&t))
        .collect();
    list.sort_by_key(|t| t.created_at);
    Ok(Json(list))
}

#[utoipa::path(post, path = "/v1/tokens", tag = "users", operation_id = "users_create_token", request_body = CreateToken, responses((status = "2XX", description = "done", body = NewToken), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn create_token(
    caller: Caller,
    State(s): State<AppState>,
    JsonBody(req): JsonBody<CreateToken>,
) -> ApiResult<(StatusCode, Json<NewToken>)> {
    caller.unscoped()?;
    let description = req.description.trim();
    if description.is_empty()
        || description.len() > 200
        || description.chars().any(char::is_control)
    {
        return Err(ApiError::Invalid(
            "give the token a description of 1 to 200 characters (what it is for)".into(),
        ));
    }
    let expires_in = match req.expires_in_secs {
        None => None,
        Some(0) => {
            return Err(ApiError::Invalid(
                "an expiry must be in the future: give e.g. 30d".into(),
            ))
        }
        Some(secs) if Duration::from_secs(secs) > MAX_EXPIRY => {
            return Err(ApiError::Invalid(
                "a token may live at most a year; leave the expiry out for one that lives until revoked"
                    .into(),
            ))
        }
        Some(secs) => Some(Duration::from_secs(secs)),
    };
    if let Some(app) = &req.app {
        load_app(&s, &caller, app, Access::Deploy)?;
    }
    let (token, rec) = new_token(&s, &caller.user, description, expires_in, req.app.clone())?;
    s.store.flush().await?;
    let scope = req
        .app
        .as_deref()
        .map_or(String::new(), |a| format!(" for {a}"));
    super::audit(
        &s,
        &caller,
        "tokens:create",
        req.app.as_deref(),
        format!("{}{scope}", rec.id),
    );
    Ok((
        StatusCode::CREATED,
        Json(NewToken {
            token,
            info: token_view(&rec),
        }),
    ))
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "users", operation_id = "users_revoke_token", params(("id" = String, Path)), responses((status = "2XX", description = "done"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn revoke_token(
    caller: Caller,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.unscoped()?;
    let mine = Role::User {
        name: caller.user.clone(),
    };
    let found = s
        .store
        .tokens()?
        .into_iter()
        .find(|(_, t)| t.id == id && matches!(t.role, Role::User { .. }))
        // Admins may revoke anyone's; members their own.
        .filter(|(_, t)| caller.admin || t.role == mine);
    let Some((hash, _)) = found else {
        return Err(ApiError::NotFound(format!(
            "no token {id:?} of yours: see caas tokens"
        )));
    };
    s.store.delete_token(&hash)?;
    s.store.flush().await?;
    super::audit(&s, &caller, "tokens:revoke", None, id);
    Ok(StatusCode::NO_CONTENT)
}

fn access_view(app: &crate::store::AppRecord) -> AppAccess {
    AppAccess {
        app: app.name.clone(),
        owner: app.owner.clone(),
        users: app.access.iter().cloned().collect(),
    }
}

#[utoipa::path(get, path = "/v1/apps/{app}/access", tag = "users", operation_id = "users_access", params(("app" = String, Path)), responses((status = 200, description = "OK", body = AppAccess), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn access(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<AppAccess>> {
    let rec = load_app(&s, &caller, &app, Access::Read)?;
    Ok(Json(access_view(&rec)))
}

/// Only admins and the app's owner give and take access.
fn may_grant(caller: &Caller, app: &crate::store::AppRecord) -> ApiResult<()> {
    if caller.admin || app.owner.as_deref() == Some(caller.user.as_str()) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "only {}'s owner or an admin may give or take access",
            app.name
        )))
    }
}

#[utoipa::path(post, path = "/v1/apps/{app}/access", tag = "users", operation_id = "users_grant", params(("app" = String, Path)), request_body = GrantAccess, responses((status = "2XX", description = "done", body = AppAccess), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn grant(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<GrantAccess>,
) -> ApiResult<(StatusCode, Json<AppAccess>)> {
    let rec = load_app(&s, &caller, &app, Access::Manage)?;
    may_grant(&caller, &rec)?;
    caas_api::validate_user_name(&req.user).map_err(|_| no_user(&req.user))?;
    s.store.user(&req.user)?.ok_or_else(|| no_user(&req.user))?;
    let rec = s.store.update_app(&app, |a| {
        if a.access.contains(&req.user) {
            return Err(ApiError::Conflict(format!(
                "{} already has access to {app}",
                req.user
            )));
        }
        a.access.insert(req.user.clone());
        Ok(())
    })?;
    s.store.flush().await?;
    super::audit(&s, &caller, "access:add", Some(&app), req.user.clone());
    Ok((StatusCode::CREATED, Json(access_view(&rec))))
}

#[utoipa::path(delete, path = "/v1/apps/{app}/access/{user}", tag = "users", operation_id = "users_revoke", params(("app" = String, Path), ("user" = String, Path)), responses((status = "2XX", description = "done"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn revoke(
    caller: Caller,
    State(s): State<AppState>,
    Path((app, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let rec = load_app(&s, &caller, &app, Access::Manage)?;
    may_grant(&caller, &rec)?;
    let result = s.store.update_app(&app, |a| {
        if !a.access.remove(&user) {
            return Err(ApiError::NotFound(format!(
                "{user} has no access to {app}: see caas access -a {app}"
            )));
        }
        Ok(())
    });
    match result {
        Ok(_) => {}
        Err(UpdateError::Rejected(e)) => return Err(e),
        Err(UpdateError::Store(e)) => return Err(e.into()),
    }
    s.store.flush().await?;
    super::audit(&s, &caller, "access:remove", Some(&app), user);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct AuditQuery {
    app: Option<String>,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

/// The audit log: everything for admins; a member sees the entries of apps it may see.
#[utoipa::path(get, path = "/v1/audit", tag = "users", operation_id = "users_audit", responses((status = 200, description = "OK", body = Vec<AuditEntry>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn audit(
    caller: Caller,
    State(s): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    caller.unscoped()?;
    let limit = q.limit.clamp(1, 10_000);
    if let Some(app) = &q.app {
        load_app(&s, &caller, app, Access::Manage)?;
    } else if !caller.admin {
        return Err(ApiError::Invalid(
            "give an app (caas audit -a APP): only admins see every app's changes".into(),
        ));
    }
    let view = |r: AuditRecord| AuditEntry {
        at: r.at,
        user: r.user,
        token: r.token,
        address: r.address,
        action: r.action,
        app: r.app,
        detail: r.detail,
    };
    Ok(Json(
        s.store
            .audit_log(q.app.as_deref(), limit)?
            .into_iter()
            .map(view)
            .collect(),
    ))
}
