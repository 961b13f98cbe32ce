//! Autoscaling and alerts, as the API records them: `GET /v1/apps/{app}/autoscale`,
//! `PUT/DELETE /v1/apps/{app}/autoscale/{process}`, `GET/PUT/DELETE /v1/apps/{app}/alerts`. The
//! settings live in the app's record; the autoscaler and the alerter (spawned beside the API)
//! act on them.

use super::auth::{load_app, Access, Caller};
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use crate::autoscale::policy::trim;
use crate::store::AppRecord;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use caas_api::metrics::{AlertSettings, Alerts, Autoscale, AutoscaleSettings};
use caas_api::WEB;
use std::time::Duration;

fn view(s: &AppState, rec: &AppRecord, process: &str, settings: &AutoscaleSettings) -> Autoscale {
    let seen = s.autoscale.get(&rec.name, process);
    Autoscale {
        process: process.to_string(),
        settings: settings.clone(),
        quantity: rec.formation.get(process).copied().unwrap_or(0),
        observed: seen.observed,
        last_decision_at: seen.last_decision.as_ref().map(|d| d.1),
        last_decision: seen.last_decision.map(|d| d.0),
    }
}

#[utoipa::path(get, path = "/v1/apps/{app}/autoscale", tag = "scaling", operation_id = "scaling_list", params(("app" = String, Path)), responses((status = 200, description = "OK", body = Vec<Autoscale>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn list(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Autoscale>>> {
    let rec = load_app(&s, &caller, &app, Access::Read)?;
    Ok(Json(
        rec.autoscale
            .iter()
            .map(|(p, settings)| view(&s, &rec, p, settings))
            .collect(),
    ))
}

/// What `caas autoscale:set` says it set, in one line.
pub fn describe(process: &str, a: &AutoscaleSettings) -> String {
    let target = match (a.rps, a.cpu_percent) {
        (Some(r), _) => format!("{} req/s per instance", trim(r)),
        (None, Some(c)) => format!("{}% CPU per instance", trim(c)),
        (None, None) => "no target".into(),
    };
    format!(
        "{process} from {} to {} at {target}, cool-down {}",
        a.min,
        a.max,
        humantime::format_duration(Duration::from_secs(a.cooldown_secs))
    )
}

fn check_autoscale(
    process: &str,
    a: &AutoscaleSettings,
    known: &[String],
    max_scale: u32,
) -> ApiResult<()> {
    caas_api::validate_process_type(process)?;
    let bad = |m: String| Err(ApiError::Invalid(m));
    if !known.iter().any(|k| k == process) {
        return bad(format!(
            "unknown process type {process:?}: this app's release defines {}",
            known.join(", ")
        ));
    }
    if a.min < 1 {
        return bad(format!("invalid --min {}: keep at least 1 instance", a.min));
    }
    if a.min > a.max {
        return bad(format!(
            "--min {} is above --max {}: give min <= max",
            a.min, a.max
        ));
    }
    if a.max > max_scale {
        return bad(format!(
            "--max {} is above this server's limit of {max_scale} (caasd --max-scale)",
            a.max
        ));
    }
    match (a.rps, a.cpu_percent) {
        (Some(_), Some(_)) | (None, None) => {
            return bad("give one target: --rps N or --cpu N%".into())
        }
        (Some(r), None) if !(r.is_finite() && r > 0.0 && r <= 1e6) => {
            return bad(format!(
                "invalid --rps {r}: give requests per second per instance above 0"
            ))
        }
        (Some(_), None) if process != WEB => {
            return bad(format!(
                "only web takes requests: scale {process} on --cpu instead"
            ))
        }
        (None, Some(c)) if !(c.is_finite() && c > 0.0 && c <= 100.0) => {
            return bad(format!(
                "invalid --cpu {c}%: give a percentage of one core above 0 and at most 100"
            ))
        }
        _ => {}
    }
    if !(1..=86_400).contains(&a.cooldown_secs) {
        return bad(format!(
            "invalid --cooldown {}s: give 1s to 24h",
            a.cooldown_secs
        ));
    }
    Ok(())
}

#[utoipa::path(put, path = "/v1/apps/{app}/autoscale/{process}", tag = "scaling", operation_id = "scaling_set", params(("app" = String, Path), ("process" = String, Path)), request_body = AutoscaleSettings, responses((status = 200, description = "OK", body = Autoscale), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn set(
    caller: Caller,
    State(s): State<AppState>,
    Path((app, process)): Path<(String, String)>,
    JsonBody(settings): JsonBody<AutoscaleSettings>,
) -> ApiResult<Json<Autoscale>> {
    let rec = load_app(&s, &caller, &app, Access::Manage)?;
    let known: Vec<String> = match rec.latest() {
        Some(v) => s
            .store
            .release(&app, v)?
            .map(|r| r.process_types.into_keys().collect())
            .unwrap_or_default(),
        None => vec![WEB.to_string()],
    };
    check_autoscale(&process, &settings, &known, s.config.max_scale)?;
    let rec = s.store.update_app::<ApiError>(&app, |a| {
        a.autoscale.insert(process.clone(), settings.clone());
        Ok(())
    })?;
    s.store.flush().await?;
    let what = describe(&process, &settings);
    super::audit(&s, &caller, "autoscale:set", Some(&app), what.clone());
    s.logs
        .event(&app, "autoscale", format!("Autoscaling {what}"));
    Ok(Json(view(&s, &rec, &process, &settings)))
}

#[utoipa::path(delete, path = "/v1/apps/{app}/autoscale/{process}", tag = "scaling", operation_id = "scaling_off", params(("app" = String, Path), ("process" = String, Path)), responses((status = "2XX", description = "done"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn off(
    caller: Caller,
    State(s): State<AppState>,
    Path((app, process)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let rec = load_app(&s, &caller, &app, Access::Manage)?;
    if !rec.autoscale.contains_key(&process) {
        return Err(ApiError::NotFound(format!(
            "{process} of {app} is not autoscaled (see caas autoscale -a {app})"
        )));
    }
    let rec = s.store.update_app::<ApiError>(&app, |a| {
        a.autoscale.remove(&process);
        Ok(())
    })?;
    s.store.flush().await?;
    super::audit(&s, &caller, "autoscale:off", Some(&app), process.clone());
    s.logs.event(
        &app,
        "autoscale",
        format!(
            "Autoscaling of {process} is off; it stays at {}",
            rec.formation.get(&process).copied().unwrap_or(0)
        ),
    );
    Ok(StatusCode::NO_CONTENT)
}

fn alerts_view(s: &AppState, rec: AppRecord) -> Alerts {
    Alerts {
        raised: s.alerts.of(&rec.name),
        app: rec.name,
        settings: rec.alerts,
    }
}

#[utoipa::path(get, path = "/v1/apps/{app}/alerts", tag = "scaling", operation_id = "scaling_alerts", params(("app" = String, Path)), responses((status = 200, description = "OK", body = Alerts), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn alerts(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<Alerts>> {
    let rec = load_app(&s, &caller, &app, Access::Read)?;
    Ok(Json(alerts_view(&s, rec)))
}

fn check_alerts(a: &AlertSettings) -> ApiResult<()> {
    let bad = |m: String| Err(ApiError::Invalid(m));
    if a.p95_ms.is_none() && a.error_rate_percent.is_none() {
        return bad("give a condition: --p95 DURATION and/or --5xx-rate N%".into());
    }
    if let Some(p) = a.p95_ms {
        if !(1..=600_000).contains(&p) {
            return bad(format!("invalid --p95 {p}ms: give 1ms to 10m"));
        }
    }
    if let Some(r) = a.error_rate_percent {
        if !(r.is_finite() && r > 0.0 && r <= 100.0) {
            return bad(format!(
                "invalid --5xx-rate {r}%: give a percentage above 0 and at most 100"
            ));
        }
    }
    if !(5..=600).contains(&a.window_secs) {
        return bad(format!(
            "invalid --window {}s: give 5s to 10m",
            a.window_secs
        ));
    }
    if let Some(url) = &a.webhook {
        crate::alerts::check_webhook(url).map_err(ApiError::Invalid)?;
    }
    Ok(())
}

#[utoipa::path(put, path = "/v1/apps/{app}/alerts", tag = "scaling", operation_id = "scaling_set_alerts", params(("app" = String, Path)), request_body = AlertSettings, responses((status = 200, description = "OK", body = Alerts), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn set_alerts(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(settings): JsonBody<AlertSettings>,
) -> ApiResult<Json<Alerts>> {
    load_app(&s, &caller, &app, Access::Manage)?;
    check_alerts(&settings)?;
    let rec = s.store.update_app::<ApiError>(&app, |a| {
        a.alerts = Some(settings.clone());
        Ok(())
    })?;
    s.store.flush().await?;
    super::audit(&s, &caller, "alerts:set", Some(&app), "");
    let mut what = Vec::new();
    if let Some(p) = settings.p95_ms {
        what.push(format!("p95 above {p} ms"));
    }
    if let Some(r) = settings.error_rate_percent {
        what.push(format!("5xx rate above {}%", trim(r)));
    }
    s.logs.event(
        &app,
        "alert",
        format!(
            "Alerting on {} over {}{}",
            what.join(" or "),
            humantime::format_duration(Duration::from_secs(settings.window_secs)),
            if settings.webhook.is_some() {
                ", with a webhook"
            } else {
                ""
            }
        ),
    );
    Ok(Json(alerts_view(&s, rec)))
}

#[utoipa::path(delete, path = "/v1/apps/{app}/alerts", tag = "scaling", operation_id = "scaling_clear_alerts", params(("app" = String, Path)), responses((status = "2XX", description = "done"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn clear_alerts(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<StatusCode> {
    let rec = load_app(&s, &caller, &app, Access::Manage)?;
    if rec.alerts.is_none() {
        return Ok(StatusCode::NO_CONTENT);
    }
    s.store.update_app::<ApiError>(&app, |a| {
        a.alerts = None;
        Ok(())
    })?;
    s.store.flush().await?;
    s.alerts.forget(&app);
    super::audit(&s, &caller, "alerts:clear", Some(&app), "");
    s.logs.event(&app, "alert", "Alerts are off");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(min: u32, max: u32, rps: Option<f64>, cpu: Option<f64>) -> AutoscaleSettings {
        AutoscaleSettings {
            min,
            max,
            rps,
            cpu_percent: cpu,
            cooldown_secs: 300,
        }
    }

    #[test]
    fn autoscale_settings_are_checked() {
        let known = vec!["web".to_string(), "worker".to_string()];
        let ok = |p: &str, s: AutoscaleSettings| check_autoscale(p, &s, &known, 20).is_ok();
        assert!(ok("web", a(1, 10, Some(100.0), None)));
        assert!(ok("worker", a(2, 2, None, Some(70.0))));
        for (p, s) in [
            ("web", a(3, 2, Some(100.0), None)),
            ("web", a(0, 2, Some(100.0), None)),
            ("web", a(1, 21, Some(100.0), None)),
            ("web", a(1, 2, Some(0.0), None)),
            ("web", a(1, 2, Some(-5.0), None)),
            ("web", a(1, 2, None, None)),
            ("web", a(1, 2, Some(1.0), Some(50.0))),
            ("web", a(1, 2, None, Some(0.0))),
            ("web", a(1, 2, None, Some(150.0))),
            ("worker", a(1, 2, Some(10.0), None)),
            ("clock", a(1, 2, None, Some(50.0))),
        ] {
            assert!(!ok(p, s.clone()), "{p} {s:?}");
        }
    }

    #[test]
    fn alert_settings_are_checked() {
        let s = |p95, rate, window, hook: Option<&str>| AlertSettings {
            p95_ms: p95,
            error_rate_percent: rate,
            window_secs: window,
            webhook: hook.map(str::to_string),
        };
        assert!(check_alerts(&s(Some(500), Some(1.0), 60, Some("http://127.0.0.1:1/x"))).is_ok());
        for bad in [
            s(None, None, 60, None),
            s(Some(0), None, 60, None),
            s(None, Some(0.0), 60, None),
            s(None, Some(101.0), 60, None),
            s(Some(500), None, 1, None),
            s(Some(500), None, 60, Some("ftp://x/")),
        ] {
            assert!(check_alerts(&bad).is_err(), "{bad:?}");
        }
    }
}
