//! Canary releases: `GET/POST/PATCH /v1/apps/{app}/canary`, `POST .../canary/promote` and
//! `.../canary/abort`. The canary lives in the app's record; the scheduler runs and routes it,
//! the gateway splits requests by its weight, and `crate::canary` promotes and aborts it.

use super::apps::release_view;
use super::auth::{load_app, Access, Caller};
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use crate::canary::{policy, Refused};
use crate::store::AppRecord;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use caas_api::canary::{Canary, CanaryAuto, CanaryRequest, CanaryStatus, CanaryWeight};
use caas_api::{Release, Timestamp, WEB};

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::NoCanary { .. } => ApiError::NotFound(r.to_string()),
            Refused::Deploying { .. }
            | Refused::Running { .. }
            | Refused::NoServing { .. }
            | Refused::NoWeb { .. } => ApiError::Conflict(r.to_string()),
        }
    }
}

pub(super) fn check_weight(weight: u8) -> ApiResult<()> {
    crate::canary::check_weight(weight).map_err(ApiError::Invalid)
}

fn check_auto(a: &CanaryAuto) -> ApiResult<()> {
    let bad = |m: String| Err(ApiError::Invalid(m));
    if !(a.max_5xx_increase.is_finite() && (0.0..=100.0).contains(&a.max_5xx_increase)) {
        return bad(format!(
            "invalid --max-5xx-increase {}: give percentage points from 0 to 100",
            a.max_5xx_increase
        ));
    }
    if let caas_api::canary::Increase::Percent(p) = a.max_p95_increase {
        if !(p.is_finite() && p >= 0.0) {
            return bad(format!("invalid --max-p95-increase {p}%"));
        }
    }
    if !(1..=7 * 86_400).contains(&a.promote_after_secs) {
        return bad(format!(
            "invalid --promote-after {}s: give 1s to 7 days",
            a.promote_after_secs
        ));
    }
    if a.min_requests == 0 {
        return bad("invalid --min-requests 0: give at least 1".into());
    }
    Ok(())
}

/// `v3 with 20% of requests beside v2 (sticky; auto: ...)`.
fn describe(c: &Canary, stable: Option<u64>) -> String {
    let mut how = Vec::new();
    if c.sticky {
        how.push("sticky".to_string());
    }
    if let Some(a) = &c.auto {
        how.push(format!(
            "auto: abort past 5xx +{} points or p95 {}, promote after {}",
            a.max_5xx_increase,
            a.max_p95_increase,
            humantime::format_duration(std::time::Duration::from_secs(a.promote_after_secs))
        ));
    }
    let beside = stable.map_or_else(String::new, |v| format!(" beside v{v}"));
    let how = if how.is_empty() {
        String::new()
    } else {
        format!(" ({})", how.join("; "))
    };
    format!("v{} with {}% of requests{beside}{how}", c.version, c.weight)
}

fn status(s: &AppState, rec: &AppRecord) -> ApiResult<CanaryStatus> {
    let Some(canary) = rec.canary.clone() else {
        return Err(Refused::NoCanary {
            app: rec.name.clone(),
        }
        .into());
    };
    let now = Timestamp::now();
    let allocations = s.store.allocations()?;
    let (stable, figures) =
        crate::canary::figures(&s.traffic, &s.observed, &allocations, rec, &canary, now);
    let verdict = crate::canary::judge(&stable, &figures, &canary, now).map(|d| match d {
        policy::Decision::Wait(why) => why,
        policy::Decision::Abort(why) => format!("about to abort: {why}"),
        policy::Decision::Promote(why) => format!("about to promote: {why}"),
    });
    Ok(CanaryStatus {
        app: rec.name.clone(),
        stable: rec.release,
        canary,
        releases: vec![stable, figures],
        verdict,
    })
}

#[utoipa::path(get, path = "/v1/apps/{app}/canary", tag = "canary", operation_id = "canary_get", params(("app" = String, Path)), responses((status = 200, description = "OK", body = CanaryStatus), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn get(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<CanaryStatus>> {
    let rec = load_app(&s, &caller, &app, Access::Read)?;
    Ok(Json(status(&s, &rec)?))
}

#[utoipa::path(post, path = "/v1/apps/{app}/canary", tag = "canary", operation_id = "canary_start", params(("app" = String, Path)), request_body = CanaryRequest, responses((status = 201, description = "started", body = CanaryStatus), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn start(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<CanaryRequest>,
) -> ApiResult<(StatusCode, Json<CanaryStatus>)> {
    let rec = load_app(&s, &caller, &app, Access::Deploy)?;
    check_weight(req.weight)?;
    if let Some(a) = &req.auto {
        check_auto(a)?;
    }
    let serving = crate::canary::refuse_start(&rec)?;
    let target = match req.version {
        Some(v) => super::config::named_release(&s, &app, v)?,
        None => s
            .store
            .releases(&app)?
            .into_iter()
            .rev()
            .find(|r| r.version != serving)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "{app} has no release besides the serving v{serving}: deploy one, or name one"
                ))
            })?,
    };
    if target.version == serving {
        return Err(ApiError::Conflict(format!(
            "v{serving} is {app}'s serving release: a canary runs another one (see caas releases -a {app})"
        )));
    }
    if !target.process_types.contains_key(WEB) {
        return Err(ApiError::Invalid(format!(
            "v{} has no web process: a canary takes requests",
            target.version
        )));
    }
    super::config::image_kept(&s, &target).await?;
    let canary = Canary {
        version: target.version,
        weight: req.weight,
        sticky: req.sticky,
        started_at: Timestamp::now(),
        auto: req.auto.clone(),
    };
    let rec = s.store.update_app::<ApiError>(&app, |rec| {
        if crate::canary::refuse_start(rec)? != serving {
            return Err(ApiError::Conflict(format!(
                "{app}'s serving release changed meanwhile; try again"
            )));
        }
        rec.canary = Some(canary.clone());
        Ok(())
    })?;
    s.store.flush().await?;
    let what = describe(&canary, rec.release);
    super::audit(&s, &caller, "releases:canary", Some(&app), what.clone());
    s.logs.event(&app, "canary", format!("Canary {what}"));
    s.wake.notify_one();
    Ok((StatusCode::CREATED, Json(status(&s, &rec)?)))
}

#[utoipa::path(patch, path = "/v1/apps/{app}/canary", tag = "canary", operation_id = "canary_set", params(("app" = String, Path)), request_body = CanaryWeight, responses((status = 200, description = "OK", body = CanaryStatus), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn set(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<CanaryWeight>,
) -> ApiResult<Json<CanaryStatus>> {
    load_app(&s, &caller, &app, Access::Deploy)?;
    check_weight(req.weight)?;
    let rec = s.store.update_app::<ApiError>(&app, |rec| {
        let name = rec.name.clone();
        let c = rec.canary.as_mut().ok_or(Refused::NoCanary { app: name })?;
        c.weight = req.weight;
        Ok(())
    })?;
    s.store.flush().await?;
    let version = rec.canary.as_ref().map_or(0, |c| c.version);
    let what = format!("v{version} now gets {}% of requests", req.weight);
    super::audit(&s, &caller, "releases:canary:set", Some(&app), what.clone());
    s.logs.event(&app, "canary", format!("Canary {what}"));
    Ok(Json(status(&s, &rec)?))
}

#[utoipa::path(post, path = "/v1/apps/{app}/canary/promote", tag = "canary", operation_id = "canary_promote", params(("app" = String, Path)), responses((status = 200, description = "the canary's release, now deploying", body = Release), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn promote(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<Release>> {
    let rec = load_app(&s, &caller, &app, Access::Deploy)?;
    let version = crate::canary::promote(&s.store, &app, None)?;
    s.store.flush().await?;
    super::audit(
        &s,
        &caller,
        "releases:promote",
        Some(&app),
        format!("v{version}"),
    );
    s.logs.event(
        &app,
        "canary",
        format!("Promoting canary v{version}: it rolls out now"),
    );
    s.wake.notify_one();
    let release = s
        .store
        .release(&app, version)?
        .ok_or_else(|| ApiError::Internal(format!("release v{version} of {app} is gone")))?;
    Ok(Json(release_view(release, rec.release)))
}

#[utoipa::path(post, path = "/v1/apps/{app}/canary/abort", tag = "canary", operation_id = "canary_abort", params(("app" = String, Path)), responses((status = 200, description = "the canary that ended", body = Canary), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn abort(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<Canary>> {
    let rec = load_app(&s, &caller, &app, Access::Deploy)?;
    let ended = crate::canary::abort(&s.store, &app, None)?;
    s.store.flush().await?;
    super::audit(
        &s,
        &caller,
        "releases:abort",
        Some(&app),
        format!("v{}", ended.version),
    );
    let serving = rec
        .release
        .map_or_else(String::new, |v| format!("; v{v} takes every request"));
    s.logs.event(
        &app,
        "canary",
        format!(
            "Aborted canary v{}: its instances drain{serving}",
            ended.version
        ),
    );
    s.wake.notify_one();
    Ok(Json(ended))
}
