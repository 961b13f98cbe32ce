//! Config vars and rollbacks: both record a new release with an existing image, written whole in
//! one store transaction (the app's config, its current release and the release record change
//! together or not at all), then roll it out like any deploy.

use super::apps::release_view;
use super::auth::{load_app, Access, Caller};
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use crate::builder::Names;
use crate::store::ReleaseRecord;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use caas_api::{
    ConfigChange, ConfigEvent, ConfigUpdate, Release, ReleaseStatus, RollbackRequest, Timestamp,
};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use tokio_stream::wrappers::ReceiverStream;

const MAX_VALUE: usize = 32 * 1024;

/// Where the release phase's output goes while a request waits for it.
pub(super) type Say = tokio::sync::mpsc::UnboundedSender<String>;
const MAX_TOTAL: usize = 256 * 1024;
/// Attempts when a concurrent deploy changes the current release under us.
const RETRIES: usize = 5;

/// Every release has its `caas/APP:vN` tag, config changes and rollbacks included (for humans
/// and `docker images`; containers run the content id).
pub(super) async fn tag_release(s: &AppState, r: &ReleaseRecord) {
    let tag = format!("v{}", r.version);
    if let Err(e) = s
        .engine
        .tag_image(&r.image_id, &Names::image_repo(&r.app), &tag)
        .await
    {
        tracing::warn!(app = r.app, "tagging {tag}: {e}");
    }
    s.builder.prune_later(&r.app);
}

/// Release `v` of `app`, which the user named: 404 saying where to look when there is none.
pub(super) fn named_release(s: &AppState, app: &str, v: u64) -> ApiResult<ReleaseRecord> {
    s.store.release(app, v)?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "{app} has no release v{v}: see caas releases -a {app}"
        ))
    })
}

/// An error unless the engine still has the image of `r` (pruning may have removed it).
pub(super) async fn image_kept(s: &AppState, r: &ReleaseRecord) -> ApiResult<()> {
    if s.engine.image_id(&r.image_id).await?.is_none() {
        return Err(ApiError::Conflict(format!(
            "the image of v{} is no longer on the server (caasd keeps the images of the last \
             releases: --keep-releases); deploy it again instead",
            r.version
        )));
    }
    Ok(())
}

#[utoipa::path(get, path = "/v1/apps/{app}/config", tag = "config", operation_id = "config_get", params(("app" = String, Path)), responses((status = 200, description = "OK", body = BTreeMap<String, String>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn get(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<BTreeMap<String, String>>> {
    Ok(Json(load_app(&s, &caller, &app, Access::Manage)?.config))
}

fn describe(vars: &BTreeMap<String, Option<String>>) -> String {
    let set: Vec<&str> = vars
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.as_str())
        .collect();
    let unset: Vec<&str> = vars
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k.as_str())
        .collect();
    let plural = |n: usize| if n == 1 { "config var" } else { "config vars" };
    match (set.is_empty(), unset.is_empty()) {
        (false, true) => format!("Set {} {}", set.join(", "), plural(set.len())),
        (true, false) => format!("Unset {} {}", unset.join(", "), plural(unset.len())),
        _ => format!(
            "Set {}; unset {} {}",
            set.join(", "),
            unset.join(", "),
            plural(set.len() + unset.len())
        ),
    }
}

/// A release that copies `base`, with the app's config and checks and a new description. Refuses (to be retried) when
/// the app's latest release is not `based_on` any more (a deploy happened meanwhile).
pub(super) fn derived(
    base: &ReleaseRecord,
    based_on: u64,
    rec: &crate::store::AppRecord,
    version: u64,
    description: &str,
    user: &str,
) -> Result<ReleaseRecord, ApiError> {
    if rec.latest() != Some(based_on) {
        return Err(ApiError::Conflict(
            "the app was deployed meanwhile; try again".into(),
        ));
    }
    Ok(ReleaseRecord {
        version,
        image: Names::release_image(&base.app, version),
        description: description.to_string(),
        created_at: Timestamp::now(),
        config: rec.config.clone(),
        checks: rec.checks.clone(),
        output: Vec::new(),
        created_by: Some(user.to_string()),
        build: None,
        resources: rec.resources.clone(),
        ..base.clone()
    })
}

/// Records a release built on `base` (the app's newest release) with `change` applied to the
/// app's record, and announces it: its image tag, a `caas[TAG]` line, the audit log, the
/// scheduler woken. `Ok(None)` when a deploy happened meanwhile: the caller tries again. The one
/// path of every change that makes a release without a new image (config, checks, resources).
/// `say` hears the release phase's output, which a config change runs first.
pub(super) async fn release_change(
    s: &AppState,
    caller: &Caller,
    base: &ReleaseRecord,
    tag: &'static str,
    description: &str,
    change: impl Fn(&mut crate::store::AppRecord),
    say: Option<&Say>,
) -> ApiResult<Option<(crate::store::AppRecord, ReleaseRecord)>> {
    let app = &base.app;
    // A config change runs the release phase first (the one gate before a release deploys); a
    // failure is recorded as a failed release and nothing of the app changes.
    if tag == "config" {
        if let Some(failed) = release_phase(s, caller, base, description, &change, say).await? {
            return Ok(Some(failed));
        }
    }
    match s.store.create_release::<ApiError>(
        app,
        |rec, version| derived(base, base.version, rec, version, description, &caller.user),
        change,
    ) {
        Ok((rec, release)) => {
            s.store.flush().await?;
            tag_release(s, &release).await;
            let v = release.version;
            s.logs
                .event(app, tag, format!("{description}; deploying v{v}"));
            super::audit(s, caller, tag, Some(app), format!("{description} -> v{v}"));
            s.wake.notify_one();
            Ok(Some((rec, release)))
        }
        Err(crate::store::UpdateError::Rejected(ApiError::Conflict(_))) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Runs the release phase of the release `change` would make; the failed release it recorded,
/// when it failed.
async fn release_phase(
    s: &AppState,
    caller: &Caller,
    base: &ReleaseRecord,
    description: &str,
    change: &impl Fn(&mut crate::store::AppRecord),
    say: Option<&Say>,
) -> ApiResult<Option<(crate::store::AppRecord, ReleaseRecord)>> {
    let app = &base.app;
    let Some(rec) = s.store.app(app)? else {
        return Ok(None);
    };
    let mut changed = rec.clone();
    change(&mut changed);
    let make = |rec: &crate::store::AppRecord, version| {
        derived(base, base.version, rec, version, description, &caller.user)
    };
    let mut candidate = make(&changed, changed.next_version)?;
    candidate.config = changed.config.clone();
    if crate::oneoff::release_phase::command(&candidate).is_none() {
        return Ok(None);
    }
    let phase = crate::oneoff::release_phase::run(&s.runner, &candidate, say.cloned());
    let Err(failure) = phase.await else {
        return Ok(None);
    };
    // The failed release shows the config it would have had.
    let config = changed.config.clone();
    let failed = match s.store.record_failed_release::<ApiError>(
        app,
        |rec, version| {
            let mut r = make(rec, version)?;
            r.config = config.clone();
            Ok(r)
        },
        &failure.reason,
        &failure.output,
    ) {
        Ok(r) => r,
        // A deploy happened meanwhile: the caller tries again.
        Err(crate::store::UpdateError::Rejected(ApiError::Conflict(_))) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    s.store.flush().await?;
    tag_release(s, &failed).await;
    let v = failed.version;
    s.logs
        .event(app, "release", format!("v{v} failed: {}", failure.reason));
    super::audit(
        s,
        caller,
        "config",
        Some(app),
        format!("{description} -> v{v} (failed)"),
    );
    let rec = s.store.app(app)?.unwrap_or(rec);
    Ok(Some((rec, failed)))
}

#[utoipa::path(patch, path = "/v1/apps/{app}/config", tag = "config", operation_id = "config_patch", params(("app" = String, Path)), request_body = ConfigUpdate, responses((status = 200, description = "OK: a ConfigChange, or with Accept: application/x-ndjson ConfigEvents (the release phase's lines, then the outcome)", body = ConfigChange), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn patch(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ConfigUpdate>,
) -> ApiResult<Response> {
    load_app(&s, &caller, &app, Access::Manage)?;
    if req.vars.is_empty() {
        return Err(ApiError::Invalid(
            "nothing to change: give KEY=VALUE (or KEY to unset)".into(),
        ));
    }
    for (key, value) in &req.vars {
        caas_api::validate_config_key(key)?;
        if let Some(v) = value {
            if v.len() > MAX_VALUE {
                return Err(ApiError::Invalid(format!(
                    "the value of {key} is over {} KB",
                    MAX_VALUE / 1024
                )));
            }
            if v.contains('\0') {
                return Err(ApiError::Invalid(format!(
                    "the value of {key} contains a NUL byte, which no environment can hold"
                )));
            }
        }
    }
    let description = describe(&req.vars);
    if !wants_events(&headers) {
        let change = change_config(&s, &caller, &app, &req.vars, &description, None).await?;
        return Ok(Json(change).into_response());
    }
    // A release phase may run for minutes: its lines stream as it runs (as a push's do), so
    // the client sees progress and needs no deadline shorter than the phase. The change runs to
    // its end in a task of its own even when the client goes away.
    let (say, mut said) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (tx, rx) = tokio::sync::mpsc::channel::<ConfigEvent>(64);
    let changing = tokio::spawn(async move {
        change_config(&s, &caller, &app, &req.vars, &description, Some(&say)).await
    });
    tokio::spawn(async move {
        while let Some(text) = said.recv().await {
            let _ = tx.send(ConfigEvent::Line { text }).await;
        }
        let outcome = match changing.await {
            Ok(Ok(change)) => ConfigEvent::Done { change },
            Ok(Err(e)) => {
                let (status, error) = e.answer();
                ConfigEvent::Failed {
                    status: status.as_u16(),
                    error,
                }
            }
            Err(e) => {
                let (status, error) = ApiError::Internal(format!("config change: {e}")).answer();
                ConfigEvent::Failed {
                    status: status.as_u16(),
                    error,
                }
            }
        };
        let _ = tx.send(outcome).await;
    });
    let stream = ReceiverStream::new(rx).map(|ev| super::ndjson(&ev));
    Ok(super::ndjson_response(Body::from_stream(stream)))
}

/// Whether the client asked for a config change's events (`Accept: application/x-ndjson`).
fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"))
}

/// Sets and unsets `vars` in `app`'s config: a release (through [`release_change`]) when the app
/// has one, else only its record (its first release copies the config). The caller has checked
/// the keys and values and the caller's right to change the app. Config changes and add-on
/// attachments both come here.
pub(super) async fn change_config(
    s: &AppState,
    caller: &Caller,
    app: &str,
    vars: &BTreeMap<String, Option<String>>,
    description: &str,
    say: Option<&Say>,
) -> ApiResult<ConfigChange> {
    let apply = |config: &mut BTreeMap<String, String>| {
        for (k, v) in vars {
            match v {
                Some(v) => config.insert(k.clone(), v.clone()),
                None => config.remove(k),
            };
        }
    };
    for _ in 0..RETRIES {
        let rec = s.store.app(app)?.ok_or_else(|| ApiError::no_app(app))?;
        let mut preview = rec.config.clone();
        apply(&mut preview);
        if preview
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
            > MAX_TOTAL
        {
            return Err(ApiError::Invalid(format!(
                "an app's config may hold at most {} KB",
                MAX_TOTAL / 1024
            )));
        }
        if preview == rec.config {
            // Setting what is there, or unsetting what is not: nothing to record or restart.
            return Ok(ConfigChange {
                changed: false,
                config: rec.config,
                release: None,
            });
        }
        // Built on the newest release asked for: the deploying one, else the serving one.
        let Some(latest) = rec.latest() else {
            // Never deployed: only the app's config changes; the first release copies it.
            let rec = s.store.update_app::<ApiError>(app, |a| {
                apply(&mut a.config);
                Ok(())
            })?;
            s.store.flush().await?;
            s.logs.event(app, "config", description.to_string());
            super::audit(s, caller, "config", Some(app), description.to_string());
            return Ok(ConfigChange {
                changed: true,
                config: rec.config,
                release: None,
            });
        };
        let base = s
            .store
            .release(app, latest)?
            .ok_or_else(|| ApiError::Internal(format!("{app} v{latest} is missing")))?;
        let change = |rec: &mut crate::store::AppRecord| apply(&mut rec.config);
        if let Some((rec, release)) =
            release_change(s, caller, &base, "config", description, change, say).await?
        {
            return Ok(ConfigChange {
                changed: true,
                config: rec.config,
                release: Some(release.version),
            });
        }
    }
    Err(ApiError::Conflict(
        "the app kept being deployed meanwhile; try again".into(),
    ))
}

#[utoipa::path(post, path = "/v1/apps/{app}/rollback", tag = "config", operation_id = "config_rollback", params(("app" = String, Path)), request_body = RollbackRequest, responses((status = "2XX", description = "done", body = Release), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn rollback(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<RollbackRequest>,
) -> ApiResult<(StatusCode, Json<Release>)> {
    for _ in 0..RETRIES {
        let rec = load_app(&s, &caller, &app, Access::Deploy)?;
        let (Some(current), Some(latest)) = (rec.release, rec.latest()) else {
            return Err(ApiError::NotFound(format!(
                "{app} has no serving release to roll back from"
            )));
        };
        let target = match req.version {
            Some(v) => named_release(&s, &app, v)?,
            // The newest release before the serving one that itself came up: rolling back to
            // one that failed would only fail again.
            None => s
                .store
                .releases(&app)?
                .into_iter()
                .rev()
                .find(|r| r.version < current && r.status == ReleaseStatus::Succeeded)
                .ok_or_else(|| {
                    ApiError::NotFound(format!("{app} has no working release before v{current}"))
                })?,
        };
        image_kept(&s, &target).await?;
        let description = format!("Rollback to v{}", target.version);
        match s.store.create_release::<ApiError>(
            &app,
            |rec, version| derived(&target, latest, rec, version, &description, &caller.user),
            |rec| {
                rec.config = target.config.clone();
                rec.checks = target.checks.clone();
            },
        ) {
            Ok((rec, release)) => {
                s.store.flush().await?;
                tag_release(&s, &release).await;
                s.logs.event(
                    &app,
                    "deploy",
                    format!("{description}: deploying v{}", release.version),
                );
                super::audit(
                    &s,
                    &caller,
                    "rollback",
                    Some(&app),
                    format!("{description} -> v{}", release.version),
                );
                s.wake.notify_one();
                return Ok((
                    StatusCode::CREATED,
                    Json(release_view(release, rec.release)),
                ));
            }
            Err(crate::store::UpdateError::Rejected(ApiError::Conflict(_))) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(
        "the app kept being deployed meanwhile; try again".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_name_keys_never_values() {
        let v = |pairs: &[(&str, Option<&str>)]| -> BTreeMap<String, Option<String>> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                .collect()
        };
        assert_eq!(describe(&v(&[("A", Some("secret"))])), "Set A config var");
        assert_eq!(
            describe(&v(&[("A", Some("x")), ("B", Some("y"))])),
            "Set A, B config vars"
        );
        assert_eq!(describe(&v(&[("A", None)])), "Unset A config var");
        assert_eq!(
            describe(&v(&[("A", Some("x")), ("B", None)])),
            "Set A; unset B config vars"
        );
    }
}
