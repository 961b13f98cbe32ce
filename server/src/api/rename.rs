//! `PATCH /v1/apps/{app}` (`caas apps:rename OLD NEW`): the app takes a new name, and its URL,
//! git remote, domains, add-ons, access, webhooks, drains and canary go with it.
//!
//! Three steps: the store renames every record in one transaction, with a "moved" marker
//! (`store/rename.rs`); the folders on disk (logs, builds, git repository) follow and the marker
//! is cleared ([`move_folders`], run again by [`recover`] at the next start if caasd died in
//! between); then a release of the same image rolls the instances over, so their labels and
//! log lines carry the new name. Between the first step and the last, the old instances are the
//! renamed app's (their allocations were renamed too) and go on serving at the new URL.

use super::apps::app_view;
use super::auth::{load_app, Access, Caller};
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use crate::store::{AppRecord, StoreError};
use axum::extract::{Path, State};
use axum::Json;
use caas_api::{App, BuildStatus, RenameApp};

/// Attempts when a deploy changes the app's newest release under the rollover.
const RETRIES: usize = 5;

#[utoipa::path(patch, path = "/v1/apps/{app}", tag = "apps", operation_id = "apps_rename", params(("app" = String, Path)), request_body = RenameApp, responses((status = 200, description = "OK", body = App), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn rename(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<RenameApp>,
) -> ApiResult<Json<App>> {
    load_app(&s, &caller, &app, Access::Manage)?;
    caller.unscoped()?;
    caas_api::validate_app_name(&req.name)?;
    if req.name == app {
        return Err(ApiError::Invalid(format!(
            "{app} already has that name; give a new one"
        )));
    }
    // Runs to its end even when the client goes away: the folders must follow the records.
    let rec = tokio::spawn(rename_app(s.clone(), caller, app, req.name))
        .await
        .map_err(|e| ApiError::Internal(format!("renaming: {e}")))??;
    Ok(Json(app_view(&s, rec)))
}

async fn rename_app(s: AppState, caller: Caller, from: String, to: String) -> ApiResult<AppRecord> {
    // One at a time with destroys, and with the old name closed to builds meanwhile: a build
    // writes its records and folder under the name it started with. A running one is waited
    // for by the user, not stopped.
    let mut closed = s.builder.destroy().await;
    let running = s
        .store
        .builds(&from)?
        .into_iter()
        .find(|b| matches!(b.status, BuildStatus::Queued | BuildStatus::Running));
    if let Some(b) = running {
        return Err(ApiError::Conflict(format!(
            "build {} of {from} is still running; rename once it ended (caas builds -a {from})",
            b.number
        )));
    }
    closed.stop_builds(&from).await;
    let rec = match s.store.rename_app(&from, &to) {
        Ok(rec) => rec,
        Err(StoreError::Exists) => {
            return Err(ApiError::Conflict(format!(
                "an app named {to:?} already exists; pick another name"
            )))
        }
        Err(StoreError::NotFound) => return Err(ApiError::no_app(&from)),
        Err(e) => return Err(e.into()),
    };
    s.store.flush().await?;
    move_folders(&s, &from, &to).await;
    drop(closed);
    s.traffic.remove(&from);
    s.usage.remove(&from);
    s.alerts.forget(&from);
    s.logs.set_drains(&to, &rec.drains);
    s.logs.event(
        &to,
        "api",
        format!("App renamed from {from} by {}", caller.user),
    );
    super::audit(
        &s,
        &caller,
        "apps:rename",
        Some(&to),
        format!("from {from}"),
    );
    s.wake.notify_one();
    roll_over(&s, &caller, &from, &to).await
}

/// Moves the renamed app's folders and clears the store's marker. A folder that cannot move is
/// logged and left with the marker, for the next start to try again.
pub(crate) async fn move_folders(s: &AppState, from: &str, to: &str) {
    let moved = match s.logs.rename(from, to) {
        Ok(()) => match s.repos.rename(from, to) {
            Ok(()) => s.builder.rename_app(from, to).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    if let Err(e) = moved {
        return tracing::error!(app = to, "moving the folders of {from}: {e}");
    }
    if let Err(e) = s.store.finish_move(from) {
        return tracing::error!(app = to, "clearing the rename marker of {from}: {e}");
    }
    if let Err(e) = s.store.flush().await {
        tracing::error!(app = to, "flushing the store: {e}");
    }
}

/// At start: the folders of renames a stopped caasd had not finished move now.
pub async fn recover(s: &AppState) {
    match s.store.pending_moves() {
        Ok(moves) => {
            for (from, to) in moves {
                tracing::info!(app = to, "finishing the rename from {from}");
                move_folders(s, &from, &to).await;
            }
        }
        Err(e) => tracing::error!("reading unfinished renames: {e}"),
    }
}

/// A release of the app's newest image and config, so every instance is made again under the
/// new name. An app with no release has nothing to roll over.
async fn roll_over(s: &AppState, caller: &Caller, from: &str, to: &str) -> ApiResult<AppRecord> {
    let description = format!("Renamed from {from}");
    for _ in 0..RETRIES {
        let rec = s.store.app(to)?.ok_or_else(|| ApiError::no_app(to))?;
        let Some(latest) = rec.latest() else {
            return Ok(rec);
        };
        let base = super::config::named_release(s, to, latest)?;
        let made =
            super::config::release_change(s, caller, &base, "rename", &description, |_| {}, None)
                .await?;
        if let Some((rec, _)) = made {
            return Ok(rec);
        }
    }
    Err(ApiError::Conflict(format!(
        "{to} was renamed, but deployed again while its instances were being rolled over; \
         they roll over with the next deploy"
    )))
}
