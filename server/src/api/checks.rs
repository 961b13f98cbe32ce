//! Health checks and app settings. A change of checks records a new release with the app's
//! latest image and config, written whole in one store transaction like a config change, and
//! rolls out like one; settings (drain, stop timeout, rollout pace) apply at once, no release.

use super::auth::{load_app, Access, Caller};
use super::config::release_change;
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use crate::store::AppRecord;
use axum::extract::{Path, State};
use axum::Json;
use caas_api::checks::{
    AppSettings, Check, CheckSource, CheckTarget, ChecksChange, ChecksUpdate, SettingsUpdate,
    SettingsView,
};
use caas_api::WEB;
use std::collections::BTreeSet;

/// Attempts when a concurrent deploy changes the latest release under us.
const RETRIES: usize = 5;

#[utoipa::path(get, path = "/v1/apps/{app}/checks", tag = "checks", operation_id = "checks_list", params(("app" = String, Path)), responses((status = 200, description = "OK", body = Vec<Check>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn list(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Check>>> {
    Ok(Json(load_app(&s, &caller, &app, Access::Read)?.checks))
}

/// The process types a check may name: those of the app's latest release (`web` before the
/// first one, which is what a first deploy of an image runs).
fn process_types(s: &AppState, rec: &AppRecord) -> ApiResult<BTreeSet<String>> {
    Ok(match rec.latest() {
        Some(v) => s
            .store
            .release(&rec.name, v)?
            .map(|r| r.process_types.into_keys().collect())
            .unwrap_or_default(),
        None => BTreeSet::from([WEB.to_string()]),
    })
}

/// Every check and target of `req` is one the app can have, or the one line saying why not.
fn validate(req: &ChecksUpdate, types: &BTreeSet<String>) -> Result<(), String> {
    if req.set.is_empty() && req.clear.is_empty() {
        return Err("nothing to change: give a check to set or one to clear".into());
    }
    let known = |process: &str| -> Result<(), String> {
        caas_api::validate_process_type(process).map_err(|e| e.to_string())?;
        if !types.contains(process) {
            let list: Vec<&str> = types.iter().map(String::as_str).collect();
            return Err(format!(
                "unknown process type {process:?}: this app's release defines {}",
                list.join(", ")
            ));
        }
        Ok(())
    };
    let mut seen = BTreeSet::new();
    for c in &req.set {
        c.validate()?;
        known(&c.process)?;
        if c.process != WEB {
            return Err(format!(
                "{} has no HTTP port to check: only {WEB} instances listen on $PORT",
                c.process
            ));
        }
        if !seen.insert((c.process.clone(), c.kind)) {
            return Err(format!(
                "two {} checks of {} in one change: give one",
                c.kind, c.process
            ));
        }
    }
    for t in &req.clear {
        known(&t.process)?;
    }
    Ok(())
}

/// The checks after `req`: cleared ones gone, set ones replacing the one of their process type
/// and kind; in a stable order.
fn applied(checks: &[Check], req: &ChecksUpdate) -> Vec<Check> {
    let cleared =
        |c: &Check, t: &CheckTarget| c.process == t.process && t.kind.is_none_or(|k| k == c.kind);
    let mut out: Vec<Check> = checks
        .iter()
        .filter(|c| !req.clear.iter().any(|t| cleared(c, t)))
        .filter(|c| {
            !req.set
                .iter()
                .any(|n| n.process == c.process && n.kind == c.kind)
        })
        .cloned()
        .collect();
    out.extend(req.set.iter().cloned().map(|mut c| {
        c.source = CheckSource::Cli;
        c
    }));
    out.sort_by(|a, b| (&a.process, a.kind).cmp(&(&b.process, b.kind)));
    out
}

/// `Set web startup check GET /health`, `Clear web checks`: what made the release.
fn describe(req: &ChecksUpdate) -> String {
    let mut parts: Vec<String> = req
        .set
        .iter()
        .map(|c| format!("Set {} {} check {}", c.process, c.kind, c.expects()))
        .collect();
    parts.extend(req.clear.iter().map(|t| match t.kind {
        Some(k) => format!("Clear {} {k} check", t.process),
        None => format!("Clear {} checks", t.process),
    }));
    parts.join("; ")
}

#[utoipa::path(patch, path = "/v1/apps/{app}/checks", tag = "checks", operation_id = "checks_patch", params(("app" = String, Path)), request_body = ChecksUpdate, responses((status = 200, description = "OK", body = ChecksChange), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn patch(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<ChecksUpdate>,
) -> ApiResult<Json<ChecksChange>> {
    let rec = load_app(&s, &caller, &app, Access::Manage)?;
    validate(&req, &process_types(&s, &rec)?).map_err(ApiError::Invalid)?;
    let description = describe(&req);
    for _ in 0..RETRIES {
        let rec = load_app(&s, &caller, &app, Access::Manage)?;
        let next = applied(&rec.checks, &req);
        if next == rec.checks {
            return Ok(Json(ChecksChange {
                checks: rec.checks,
                release: None,
                changed: false,
            }));
        }
        let Some(latest) = rec.latest() else {
            // Never deployed: the first release takes them.
            let rec = s.store.update_app::<ApiError>(&app, |a| {
                a.checks = applied(&a.checks, &req);
                Ok(())
            })?;
            s.store.flush().await?;
            s.logs.event(&app, "checks", description.clone());
            super::audit(&s, &caller, "checks", Some(&app), description.clone());
            return Ok(Json(ChecksChange {
                checks: rec.checks,
                release: None,
                changed: true,
            }));
        };
        let base = s
            .store
            .release(&app, latest)?
            .ok_or_else(|| ApiError::Internal(format!("{app} v{latest} is missing")))?;
        let change = |rec: &mut AppRecord| rec.checks = applied(&rec.checks, &req);
        if let Some((rec, release)) =
            release_change(&s, &caller, &base, "checks", &description, change, None).await?
        {
            return Ok(Json(ChecksChange {
                checks: rec.checks,
                release: Some(release.version),
                changed: true,
            }));
        }
    }
    Err(ApiError::Conflict(
        "the app kept being deployed meanwhile; try again".into(),
    ))
}

fn settings_view(s: &AppState, rec: AppRecord) -> SettingsView {
    SettingsView {
        app: rec.name,
        settings: rec.settings,
        defaults: s.config.settings_defaults.clone(),
    }
}

#[utoipa::path(get, path = "/v1/apps/{app}/settings", tag = "checks", operation_id = "checks_settings", params(("app" = String, Path)), responses((status = 200, description = "OK", body = SettingsView), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn settings(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<SettingsView>> {
    let rec = load_app(&s, &caller, &app, Access::Read)?;
    Ok(Json(settings_view(&s, rec)))
}

/// The settings after `req`, or the one line saying what is wrong.
fn settings_applied(
    now: &AppSettings,
    req: &SettingsUpdate,
    defaults: &AppSettings,
) -> Result<AppSettings, String> {
    if req.values.is_empty() {
        return Err("nothing to change: give KEY=VALUE, e.g. drain=60s".into());
    }
    let mut next = now.clone();
    for (key, value) in &req.values {
        next.apply(key, value.as_deref())?;
    }
    next.validate(defaults)?;
    Ok(next)
}

#[utoipa::path(patch, path = "/v1/apps/{app}/settings", tag = "checks", operation_id = "checks_patch_settings", params(("app" = String, Path)), request_body = SettingsUpdate, responses((status = 200, description = "OK", body = SettingsView), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn patch_settings(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<SettingsUpdate>,
) -> ApiResult<Json<SettingsView>> {
    let rec = load_app(&s, &caller, &app, Access::Manage)?;
    let defaults = &s.config.settings_defaults;
    settings_applied(&rec.settings, &req, defaults).map_err(ApiError::Invalid)?;
    let rec = s.store.update_app::<ApiError>(&app, |a| {
        a.settings = settings_applied(&a.settings, &req, defaults).map_err(ApiError::Invalid)?;
        Ok(())
    })?;
    s.store.flush().await?;
    let said: Vec<String> = req
        .values
        .keys()
        .map(|k| match rec.settings.show(k) {
            Some(v) => format!("{k}={v}"),
            None => format!("{k} back to its default"),
        })
        .collect();
    let said = format!("Set {}", said.join(", "));
    s.logs.event(&app, "settings", said.clone());
    super::audit(&s, &caller, "apps:settings", Some(&app), said);
    // Agents learn a new stop timeout with their next assignment list.
    s.store.touch_assignments();
    s.wake.notify_one();
    Ok(Json(settings_view(&s, rec)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use caas_api::checks::CheckKind;

    fn types() -> BTreeSet<String> {
        ["web".to_string(), "worker".to_string()].into()
    }

    fn set(checks: Vec<Check>) -> ChecksUpdate {
        ChecksUpdate {
            set: checks,
            clear: vec![],
        }
    }

    #[test]
    fn checks_are_refused_for_types_the_app_lacks_or_that_do_not_listen() {
        let web = Check::new("web", CheckKind::Startup, "/health");
        assert_eq!(validate(&set(vec![web.clone()]), &types()), Ok(()));
        let table = [
            (
                set(vec![Check::new("clock", CheckKind::Startup, "/")]),
                "unknown process type \"clock\": this app's release defines web, worker",
            ),
            (
                set(vec![Check::new("worker", CheckKind::Startup, "/")]),
                "worker has no HTTP port to check: only web instances listen on $PORT",
            ),
            (
                set(vec![web.clone(), web.clone()]),
                "two startup checks of web in one change: give one",
            ),
            (
                ChecksUpdate::default(),
                "nothing to change: give a check to set or one to clear",
            ),
            (
                ChecksUpdate {
                    set: vec![],
                    clear: vec![CheckTarget {
                        process: "nope".into(),
                        kind: None,
                    }],
                },
                "unknown process type \"nope\": this app's release defines web, worker",
            ),
        ];
        for (req, want) in table {
            assert_eq!(validate(&req, &types()).unwrap_err(), want);
        }
    }

    #[test]
    fn setting_replaces_the_check_of_its_kind_and_clearing_takes_one_or_all() {
        let start = Check::new("web", CheckKind::Startup, "/a");
        let mut live = Check::new("web", CheckKind::Liveness, "/l");
        live.source = CheckSource::AppJson;
        let now = vec![start.clone(), live.clone()];
        let next = applied(
            &now,
            &set(vec![Check::new("web", CheckKind::Startup, "/b")]),
        );
        let paths: Vec<&str> = next.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["/b", "/l"]);
        let clear = |kind| ChecksUpdate {
            set: vec![],
            clear: vec![CheckTarget {
                process: "web".into(),
                kind,
            }],
        };
        assert_eq!(applied(&now, &clear(Some(CheckKind::Startup))), [live]);
        assert!(applied(&now, &clear(None)).is_empty());
        assert_eq!(
            describe(&clear(None)),
            "Clear web checks",
            "what the release says"
        );
        assert_eq!(
            describe(&set(vec![start])),
            "Set web startup check GET /a → 2xx/3xx"
        );
    }

    #[test]
    fn settings_change_by_name_and_are_refused_whole() {
        let defaults = crate::schedule::app_defaults(std::time::Duration::from_secs(30));
        let req = |pairs: &[(&str, Option<&str>)]| SettingsUpdate {
            values: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                .collect(),
        };
        let now = AppSettings::default();
        let next = settings_applied(&now, &req(&[("drain", Some("60s"))]), &defaults).unwrap();
        assert_eq!(next.drain_ms, Some(60_000));
        let err = settings_applied(
            &now,
            &req(&[("drain", Some("60s")), ("max-surge", Some("x"))]),
            &defaults,
        )
        .unwrap_err();
        assert!(err.starts_with("invalid max-surge \"x\""), "{err}");
        let err = settings_applied(&now, &req(&[("max-surge", Some("0"))]), &defaults).unwrap_err();
        assert!(err.contains("cannot both be 0"), "{err}");
        assert!(settings_applied(&now, &req(&[]), &defaults).is_err());
    }
}
