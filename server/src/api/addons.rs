//! Add-ons: `GET/POST /v1/addons`, `GET/PATCH/DELETE /v1/addons/{name}`, attachments, and
//! backups (`addons_dump.rs`). The records are intent in the store; the services are made by
//! `crate::addons` in a task of their own (a create answers 202 and the CLI follows the record),
//! and an attachment is a config var set through `config::change_config`, so it is a release
//! that rolls out as any config change does.
//!
//! Who sees an add-on: admins, its creator, and whoever may manage an app it is attached to;
//! everyone else is told it does not exist.

use super::auth::{load_app, Access, Caller};
use super::config::change_config;
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use crate::addons::{recipe, ServiceError, START_TIMEOUT};
use crate::store::{AddonRecord, StoreError, UpdateError};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use caas_api::addons::{
    attachment_var, validate_addon_name, Addon, AddonAttach, AddonChange, AddonCreate, AddonKind,
    AddonState, AddonUpdate, AppRelease, Attachment,
};
use caas_api::Timestamp;
use serde::Deserialize;
use std::collections::BTreeMap;

const MAX_URL: usize = 4096;

pub(super) fn no_addon(name: &str) -> ApiError {
    ApiError::NotFound(format!("no add-on named {name:?}: see caas addons"))
}

fn view(rec: AddonRecord) -> Addon {
    Addon {
        name: rec.name,
        kind: rec.kind,
        state: rec.state,
        message: rec.message,
        host: rec.host,
        memory_mb: rec.memory_mb,
        published: rec.published.map(|a| a.to_string()),
        attachments: rec.attachments,
        created_at: rec.created_at,
        created_by: rec.created_by,
        releases: rec.releases,
    }
}

/// Whether `caller` may see (and change) `rec`: admins and its creator, and whoever may manage
/// an app it is attached to; an app-scoped token only an add-on of its app.
fn sees(s: &AppState, caller: &Caller, rec: &AddonRecord) -> bool {
    if let Some(scope) = &caller.scope {
        return rec.attached_to(scope).is_some();
    }
    caller.admin
        || rec.created_by == caller.user
        || rec
            .attachments
            .iter()
            .any(|t| load_app(s, caller, &t.app, Access::Manage).is_ok())
}

/// Loads an add-on for `caller`, or answers 404 as if it did not exist.
pub(super) fn load_addon(s: &AppState, caller: &Caller, name: &str) -> ApiResult<AddonRecord> {
    if validate_addon_name(name).is_err() {
        return Err(no_addon(name));
    }
    let rec = s.store.addon(name)?.ok_or_else(|| no_addon(name))?;
    if !sees(s, caller, &rec) {
        return Err(no_addon(name));
    }
    Ok(rec)
}

/// The var an attachment of `kind` gets in `app`, refused when the app has it already.
fn free_var(
    s: &AppState,
    app: &crate::store::AppRecord,
    kind: AddonKind,
    as_name: Option<&str>,
) -> ApiResult<String> {
    let var = match (as_name, kind.default_var()) {
        (Some(a), _) => attachment_var(a),
        (None, Some(v)) => v.to_string(),
        (None, None) => {
            return Err(ApiError::Invalid(
                "an external add-on needs --as NAME: the app gets NAME_URL".into(),
            ))
        }
    };
    caas_api::validate_config_key(&var)?;
    let taken_by = s
        .store
        .addons_of(&app.name)?
        .into_iter()
        .find(|a| a.attached_to(&app.name).is_some_and(|t| t.var == var));
    if app.config.contains_key(&var) || taken_by.is_some() {
        let why = match taken_by {
            Some(a) => format!("the add-on {}", a.name),
            None => "its config".into(),
        };
        return Err(ApiError::Conflict(format!(
            "{} already has {var} (from {why}): give another name with --as NAME, or \
             caas config:unset {var} -a {} first",
            app.name, app.name
        )));
    }
    Ok(var)
}

fn check_url(url: &str) -> ApiResult<()> {
    let ok = url.len() <= MAX_URL
        && url.split_once("://").is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b))
                && !rest.is_empty()
        })
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(ApiError::Invalid(format!(
            "--url must be a URL like postgres://user:password@host:5432/db (at most {MAX_URL} \
             characters, no spaces)"
        )))
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only those attached to this app.
    pub app: Option<String>,
}

#[utoipa::path(get, path = "/v1/addons", tag = "addons", operation_id = "addons_list", params(ListQuery), responses((status = 200, description = "OK", body = Vec<Addon>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn list(
    caller: Caller,
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<Addon>>> {
    let all = match &q.app {
        Some(app) => {
            load_app(&s, &caller, app, Access::Read)?;
            s.store.addons_of(app)?
        }
        None => s.store.addons()?,
    };
    let visible = all
        .into_iter()
        .filter(|a| q.app.is_some() || sees(&s, &caller, a))
        .map(view)
        .collect();
    Ok(Json(visible))
}

#[utoipa::path(get, path = "/v1/addons/{name}", tag = "addons", operation_id = "addons_info", params(("name" = String, Path)), responses((status = 200, description = "OK", body = Addon), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn info(
    caller: Caller,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Addon>> {
    let mut rec = load_addon(&s, &caller, &name)?;
    // What the host says now, for a service that was up: it may have stopped or lost its data.
    let was_up = matches!(
        rec.state,
        AddonState::Available | AddonState::Unhealthy | AddonState::Lost
    );
    if recipe(rec.kind).is_some() && was_up {
        let (state, message) = match super::addons_hosts::foreign_host(&s, &rec)? {
            Some(judged) => judged,
            None => s.addons.observe(&rec).await,
        };
        rec.state = state;
        rec.message = message;
    }
    Ok(Json(view(rec)))
}

#[utoipa::path(post, path = "/v1/addons", tag = "addons", operation_id = "addons_create", request_body = AddonCreate, responses((status = "2XX", description = "recorded; a service is made in the background (202), an external binding at once (201)", body = AddonChange), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn create(
    caller: Caller,
    State(s): State<AppState>,
    JsonBody(req): JsonBody<AddonCreate>,
) -> ApiResult<(StatusCode, Json<AddonChange>)> {
    caller.unscoped()?;
    let app = load_app(&s, &caller, &req.app, Access::Manage)?;
    let kind = AddonKind::parse(&req.kind).ok_or_else(|| {
        ApiError::Invalid(format!(
            "unknown add-on kind {:?}: use postgres, redis, mysql or external",
            req.kind
        ))
    })?;
    let url = match (kind, &req.url) {
        (AddonKind::External, Some(url)) => {
            check_url(url)?;
            Some(url.clone())
        }
        (AddonKind::External, None) => {
            return Err(ApiError::Invalid(
                "an external add-on needs --url URL (what the app gets)".into(),
            ))
        }
        (_, Some(_)) => {
            return Err(ApiError::Invalid(format!(
                "--url is for external add-ons; caas makes a {kind}'s URL itself"
            )))
        }
        (_, None) => None,
    };
    let name = match &req.name {
        Some(n) => {
            validate_addon_name(n).map_err(|e| ApiError::Invalid(e.to_string()))?;
            n.clone()
        }
        None => format!("{kind}-{}", &crate::addons::new_password()[..6]),
    };
    let var = free_var(&s, &app, kind, req.as_name.as_deref())?;
    let password = recipe(kind).map(|_| crate::addons::new_password());
    // Where instances on other hosts reach it (`caasd --addon-ports`).
    let published = match recipe(kind) {
        Some(_) => Some(s.addons.free_port(&s.store)?.ok_or_else(|| {
            ApiError::Conflict(
                "every port of caasd's --addon-ports is taken: destroy an add-on, or give                  caasd a wider range"
                    .into(),
            )
        })?),
        None => None,
    };
    let rec = AddonRecord {
        name: name.clone(),
        kind,
        state: if url.is_some() {
            AddonState::Available
        } else {
            AddonState::Creating
        },
        message: None,
        host: recipe(kind).map(|_| s.addons.host.clone()),
        memory_mb: recipe(kind).map(|r| r.memory_mb),
        url: match (&url, recipe(kind), &password) {
            (Some(u), _, _) => u.clone(),
            (None, Some(r), Some(pw)) => r.url(&name, pw),
            _ => unreachable!("a service has a recipe and a password"),
        },
        published,
        password,
        attachments: vec![Attachment {
            app: app.name.clone(),
            var: var.clone(),
        }],
        created_at: Timestamp::now(),
        created_by: caller.user.clone(),
        releases: Vec::new(),
    };
    match s.store.create_addon(&rec) {
        Ok(()) => {}
        Err(StoreError::Exists) => {
            return Err(ApiError::Conflict(format!(
                "an add-on named {name} exists already: choose another --name"
            )))
        }
        Err(e) => return Err(e.into()),
    }
    s.store.flush().await?;
    super::audit(
        &s,
        &caller,
        "addons:create",
        Some(&app.name),
        format!("{name} ({kind}) as {var}"),
    );
    if kind == AddonKind::External {
        let rec = attach_everywhere(&s, &caller, &name, &[]).await?;
        return Ok((
            StatusCode::CREATED,
            Json(AddonChange {
                releases: rec.releases.clone(),
                addon: view(rec),
            }),
        ));
    }
    s.logs
        .event(&app.name, "addons", format!("Creating {name} ({kind})"));
    let task_state = s.clone();
    let task_caller = caller.clone();
    let task_name = name.clone();
    tokio::spawn(async move { provision(task_state, task_caller, task_name, true).await });
    Ok((
        StatusCode::ACCEPTED,
        Json(AddonChange {
            addon: view(rec),
            releases: Vec::new(),
        }),
    ))
}

/// Makes (or, after a restart of caasd, finishes making) the service of `name`, waits for its
/// health check, then gives its apps their var. A failure is recorded on the add-on.
pub(super) async fn provision(s: AppState, caller: Caller, name: String, fresh: bool) {
    let Ok(Some(rec)) = s.store.addon(&name) else {
        return;
    };
    let note = |message: String| {
        let _ = s.store.update_addon::<()>(&name, |a| {
            a.message = Some(message.clone());
            Ok(())
        });
        for t in &rec.attachments {
            s.logs.event(&t.app, "addons", format!("{name}: {message}"));
        }
    };
    let made = async {
        s.addons.ensure_running(&rec, fresh, &note).await?;
        note(format!("waiting for {name} to answer its health check"));
        s.addons.wait_healthy(&rec, START_TIMEOUT).await
    }
    .await;
    let result = match made {
        // The vars first, then `available`: the CLI follows the record while it is `creating`
        // and then waits for the releases it names, which must be there by then.
        Ok(()) => attach_everywhere(&s, &caller, &name, &[]).await.map(|_| {
            let _ = s.store.update_addon::<()>(&name, |a| {
                a.state = AddonState::Available;
                a.message = None;
                Ok(())
            });
        }),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    };
    if let Err(e) = result {
        let message = match e {
            ApiError::Internal(m) => m,
            other => other.to_string(),
        };
        tracing::warn!(addon = name, "creating the add-on failed: {message}");
        if fresh {
            if let Ok(Some(rec)) = s.store.addon(&name) {
                let _ = s.addons.remove(&rec).await;
            }
        }
        let _ = s.store.update_addon::<()>(&name, |a| {
            a.state = AddonState::Failed;
            a.message = Some(format!("{message}; destroy it and try again"));
            Ok(())
        });
    }
    let _ = s.store.flush().await;
}

/// Sets every attachment's var to the add-on's URL (but `skip`'s apps), recording the releases
/// made on the add-on.
async fn attach_everywhere(
    s: &AppState,
    caller: &Caller,
    name: &str,
    skip: &[&str],
) -> ApiResult<AddonRecord> {
    let rec = s.store.addon(name)?.ok_or_else(|| no_addon(name))?;
    let mut releases = Vec::new();
    for t in rec
        .attachments
        .iter()
        .filter(|t| !skip.contains(&t.app.as_str()))
    {
        let vars = BTreeMap::from([(t.var.clone(), Some(rec.url.clone()))]);
        let description = format!("Attach {name} as {}", t.var);
        let change = change_config(s, caller, &t.app, &vars, &description, None).await?;
        releases.push(AppRelease {
            app: t.app.clone(),
            var: t.var.clone(),
            release: change.release,
        });
    }
    finish(s, name, releases).await
}

/// Records the releases a change made on the add-on, flushed.
async fn finish(s: &AppState, name: &str, releases: Vec<AppRelease>) -> ApiResult<AddonRecord> {
    let rec = s.store.update_addon::<()>(name, |a| {
        a.releases = releases.clone();
        Ok(())
    });
    let rec = match rec {
        Ok(r) => r,
        Err(UpdateError::Store(StoreError::NotFound)) => return Err(no_addon(name)),
        Err(UpdateError::Store(e)) => return Err(e.into()),
        Err(UpdateError::Rejected(())) => unreachable!("the update never refuses"),
    };
    s.store.flush().await?;
    Ok(rec)
}

fn available(rec: &AddonRecord) -> ApiResult<()> {
    match rec.state {
        AddonState::Available | AddonState::Unhealthy => Ok(()),
        AddonState::Creating => Err(ApiError::Conflict(format!(
            "{} is still being created: see caas addons:info {}",
            rec.name, rec.name
        ))),
        AddonState::Failed | AddonState::Lost => Err(ApiError::Conflict(format!(
            "{} is {}: destroy it (caas addons:destroy {} --confirm {})",
            rec.name,
            rec.state.as_str(),
            rec.name,
            rec.name
        ))),
    }
}

#[utoipa::path(post, path = "/v1/addons/{name}/attachments", tag = "addons", operation_id = "addons_attach", params(("name" = String, Path)), request_body = AddonAttach, responses((status = 200, description = "OK", body = AddonChange), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn attach(
    caller: Caller,
    State(s): State<AppState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<AddonAttach>,
) -> ApiResult<Json<AddonChange>> {
    caller.unscoped()?;
    let rec = load_addon(&s, &caller, &name)?;
    let app = load_app(&s, &caller, &req.app, Access::Manage)?;
    available(&rec)?;
    if let Some(t) = rec.attached_to(&app.name) {
        return Err(ApiError::Conflict(format!(
            "{name} is attached to {} already (as {})",
            app.name, t.var
        )));
    }
    // An external binding has no var of its own: by default the one it has elsewhere.
    let as_name = req
        .as_name
        .clone()
        .or_else(|| rec.attachments.first().map(|t| t.var.clone()));
    let var = free_var(&s, &app, rec.kind, as_name.as_deref())?;
    let attachment = Attachment {
        app: app.name.clone(),
        var: var.clone(),
    };
    let updated = s.store.update_addon(&name, |a| {
        if a.attached_to(&attachment.app).is_some() {
            return Err(ApiError::Conflict(format!("{name} was attached meanwhile")));
        }
        a.attachments.push(attachment.clone());
        Ok(())
    });
    updated.map_err(|e| match e {
        UpdateError::Rejected(e) => e,
        UpdateError::Store(StoreError::NotFound) => no_addon(&name),
        UpdateError::Store(e) => e.into(),
    })?;
    s.store.flush().await?;
    super::audit(
        &s,
        &caller,
        "addons:attach",
        Some(&app.name),
        format!("{name} as {var}"),
    );
    let vars = BTreeMap::from([(var.clone(), Some(rec.url.clone()))]);
    let change = change_config(
        &s,
        &caller,
        &app.name,
        &vars,
        &format!("Attach {name} as {var}"),
        None,
    )
    .await?;
    let releases = vec![AppRelease {
        app: app.name.clone(),
        var,
        release: change.release,
    }];
    let rec = finish(&s, &name, releases.clone()).await?;
    Ok(Json(AddonChange {
        addon: view(rec),
        releases,
    }))
}

#[utoipa::path(delete, path = "/v1/addons/{name}/attachments/{app}", tag = "addons", operation_id = "addons_detach", params(("name" = String, Path), ("app" = String, Path)), responses((status = 200, description = "OK", body = AddonChange), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn detach(
    caller: Caller,
    State(s): State<AppState>,
    Path((name, app)): Path<(String, String)>,
) -> ApiResult<Json<AddonChange>> {
    caller.unscoped()?;
    let rec = load_addon(&s, &caller, &name)?;
    let app = load_app(&s, &caller, &app, Access::Manage)?;
    let Some(t) = rec.attached_to(&app.name).cloned() else {
        return Err(ApiError::NotFound(format!(
            "{name} is not attached to {}: see caas addons -a {}",
            app.name, app.name
        )));
    };
    let releases = detach_one(&s, &caller, &rec, &t).await?;
    let rec = finish(&s, &name, releases.clone()).await?;
    Ok(Json(AddonChange {
        addon: view(rec),
        releases,
    }))
}

/// Takes `t`'s var out of its app (a release) and the attachment off the add-on.
async fn detach_one(
    s: &AppState,
    caller: &Caller,
    rec: &AddonRecord,
    t: &Attachment,
) -> ApiResult<Vec<AppRelease>> {
    let name = &rec.name;
    let mut releases = Vec::new();
    // The var is only unset when it still holds this add-on's URL: a user may have set it since.
    let holds = s
        .store
        .app(&t.app)?
        .is_some_and(|a| a.config.get(&t.var) == Some(&rec.url));
    if holds {
        let vars = BTreeMap::from([(t.var.clone(), None)]);
        let change = change_config(
            s,
            caller,
            &t.app,
            &vars,
            &format!("Detach {name} ({})", t.var),
            None,
        )
        .await?;
        releases.push(AppRelease {
            app: t.app.clone(),
            var: t.var.clone(),
            release: change.release,
        });
    }
    let r = s.store.update_addon::<()>(name, |a| {
        a.attachments.retain(|x| x.app != t.app);
        Ok(())
    });
    if let Err(UpdateError::Store(e)) = r {
        if !matches!(e, StoreError::NotFound) {
            return Err(e.into());
        }
    }
    s.store.flush().await?;
    super::audit(
        s,
        caller,
        "addons:detach",
        Some(&t.app),
        format!("{name} ({})", t.var),
    );
    Ok(releases)
}

#[utoipa::path(patch, path = "/v1/addons/{name}", tag = "addons", operation_id = "addons_update", params(("name" = String, Path)), request_body = AddonUpdate, responses((status = 200, description = "OK", body = AddonChange), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn update(
    caller: Caller,
    State(s): State<AppState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<AddonUpdate>,
) -> ApiResult<Json<AddonChange>> {
    caller.unscoped()?;
    let rec = load_addon(&s, &caller, &name)?;
    if rec.kind != AddonKind::External {
        return Err(ApiError::Invalid(format!(
            "{name} is a {} add-on: only an external add-on's URL can be changed",
            rec.kind
        )));
    }
    check_url(&req.url)?;
    if req.url == rec.url {
        return Ok(Json(AddonChange {
            addon: view(rec),
            releases: Vec::new(),
        }));
    }
    let r = s.store.update_addon::<()>(&name, |a| {
        a.url = req.url.clone();
        Ok(())
    });
    if let Err(e) = r {
        return Err(match e {
            UpdateError::Store(StoreError::NotFound) => no_addon(&name),
            UpdateError::Store(e) => e.into(),
            UpdateError::Rejected(()) => unreachable!(),
        });
    }
    s.store.flush().await?;
    super::audit(
        &s,
        &caller,
        "addons:update",
        None,
        format!("{name}: new URL"),
    );
    let rec = attach_everywhere(&s, &caller, &name, &[]).await?;
    Ok(Json(AddonChange {
        releases: rec.releases.clone(),
        addon: view(rec),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DestroyQuery {
    /// Detach it from its apps first (each gets a release without its var).
    #[serde(default)]
    pub detach: bool,
}

#[utoipa::path(delete, path = "/v1/addons/{name}", tag = "addons", operation_id = "addons_destroy", params(("name" = String, Path), DestroyQuery), responses((status = 204, description = "destroyed with its data"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn destroy(
    caller: Caller,
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<DestroyQuery>,
) -> ApiResult<StatusCode> {
    caller.unscoped()?;
    let rec = load_addon(&s, &caller, &name)?;
    if !rec.attachments.is_empty() && !q.detach {
        let apps: Vec<&str> = rec.attachments.iter().map(|t| t.app.as_str()).collect();
        return Err(ApiError::Conflict(format!(
            "{name} is attached to {}: detach it first, or destroy with --detach",
            apps.join(", ")
        )));
    }
    if rec.state == AddonState::Creating {
        return Err(ApiError::Conflict(format!(
            "{name} is still being created; destroy it once caas addons:info {name} says it is \
             available or failed"
        )));
    }
    for t in &rec.attachments {
        detach_one(&s, &caller, &rec, t).await?;
    }
    if recipe(rec.kind).is_some() {
        s.addons.remove(&rec).await.map_err(|e| match e {
            ServiceError::Engine(e) => ApiError::from(e),
            other => ApiError::Internal(other.to_string()),
        })?;
    }
    s.store.delete_addon(&name)?;
    s.store.flush().await?;
    super::audit(&s, &caller, "addons:destroy", None, name);
    Ok(StatusCode::NO_CONTENT)
}
