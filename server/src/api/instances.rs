//! Restarting and stopping instances (`caas ps:restart`, `caas ps:stop`).
//!
//! Both are drain marks on the instances' allocations, written with compare-and-swap like the
//! scheduler's: a draining allocation leaves the routes, no longer fills its index (so the
//! scheduler places a fresh instance of that index at once), and is deleted when its deadline
//! passes, which makes its agent stop the container. A restart gives the old instance the
//! `--drain` period to finish its requests while its replacement starts; a stop sets the deadline
//! to now, so it stops at the scheduler's next pass. Either way the formation stays as it was,
//! as on Heroku, where a stopped dyno of a scaled process type is started again.

use super::auth::{load_app, Access, Caller};
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use crate::store::{AllocationRecord, Desired};
use axum::extract::{Path, State};
use axum::Json;
use caas_api::{InstancesChanged, InstancesRequest, Timestamp};

/// Which instance a target names: `web` (every web instance), `web.1` (one), or none (all).
fn matches(target: Option<&str>, a: &AllocationRecord) -> bool {
    match target {
        None => true,
        Some(t) => match t.split_once('.') {
            Some((process, index)) => {
                a.process == process && index.parse::<u32>().ok() == Some(a.index)
            }
            None => a.process == t,
        },
    }
}

/// Checks a target's shape: a process type, or `TYPE.N`.
fn validate_target(target: &str) -> ApiResult<()> {
    let (process, index) = match target.split_once('.') {
        Some((p, i)) => (p, Some(i)),
        None => (target, None),
    };
    caas_api::validate_process_type(process)?;
    if let Some(i) = index {
        if !i.parse::<u32>().is_ok_and(|n| n >= 1) {
            return Err(ApiError::Invalid(format!(
                "invalid instance {target:?}: use a process type (web) or an instance (web.1)"
            )));
        }
    }
    Ok(())
}

async fn drain(
    s: &AppState,
    caller: &Caller,
    app: &str,
    target: Option<&str>,
    until: Timestamp,
    action: &str,
) -> ApiResult<Json<InstancesChanged>> {
    load_app(s, caller, app, Access::Manage)?;
    if let Some(t) = target {
        validate_target(t)?;
    }
    let mut names = Vec::new();
    for a in s.store.allocations()? {
        if a.app != app || a.desired != Desired::Run || !matches(target, &a) {
            continue;
        }
        let mut new = a.clone();
        new.desired = Desired::Drain { until };
        // Lost to a concurrent write of the scheduler: it is being replaced or drained already.
        if s.store.cas_allocation(&a.id, Some(&a), Some(&new))? {
            names.push(a.instance_name());
        }
    }
    if names.is_empty() {
        return Err(ApiError::NotFound(match target {
            Some(t) => format!("{app} has no running instance {t}: see caas ps -a {app}"),
            None => format!("{app} has no running instances: see caas ps -a {app}"),
        }));
    }
    names.sort_by_key(|n| {
        let (p, i) = n.split_once('.').unwrap_or((n, "0"));
        (p.to_string(), i.parse::<u32>().unwrap_or(0))
    });
    names.dedup();
    s.store.flush().await?;
    let verb = if action == "ps:stop" {
        "Stopping"
    } else {
        "Restarting"
    };
    s.logs.event(
        app,
        if action == "ps:stop" {
            "stop"
        } else {
            "restart"
        },
        format!("{verb} {} (by {})", names.join(", "), caller.user),
    );
    super::audit(s, caller, action, Some(app), names.join(" "));
    s.wake.notify_one();
    Ok(Json(InstancesChanged { instances: names }))
}

/// `POST /v1/apps/{app}/ps/restart` `{"target": "web" | "web.1" | null}`: replaces the instances
/// with fresh ones, each old one draining while its replacement starts.
#[utoipa::path(post, path = "/v1/apps/{app}/ps/restart", tag = "instances", operation_id = "instances_restart", params(("app" = String, Path)), request_body = InstancesRequest, responses((status = 200, description = "OK", body = InstancesChanged), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn restart(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<InstancesRequest>,
) -> ApiResult<Json<InstancesChanged>> {
    let until = Timestamp::now().plus(s.config.drain);
    drain(
        &s,
        &caller,
        &app,
        req.target.as_deref(),
        until,
        "ps:restart",
    )
    .await
}

/// `POST /v1/apps/{app}/ps/stop` `{"target": "web.1"}`: stops the instances now; the formation
/// still wants them, so fresh ones start in their place.
#[utoipa::path(post, path = "/v1/apps/{app}/ps/stop", tag = "instances", operation_id = "instances_stop", params(("app" = String, Path)), request_body = InstancesRequest, responses((status = 200, description = "OK", body = InstancesChanged), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn stop(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<InstancesRequest>,
) -> ApiResult<Json<InstancesChanged>> {
    let Some(target) = req.target.as_deref() else {
        return Err(ApiError::Invalid(
            "say which instances to stop: a process type (web) or an instance (web.1)".into(),
        ));
    };
    drain(&s, &caller, &app, Some(target), Timestamp::now(), "ps:stop").await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(process: &str, index: u32) -> AllocationRecord {
        AllocationRecord {
            id: format!("{process}{index}"),
            app: "demo".into(),
            release: 1,
            process: process.into(),
            index,
            host_id: "h".into(),
            created_at: Timestamp(0),
            desired: Desired::Run,
            memory_mb: 0,
            reserved_mb: 0,
        }
    }

    #[test]
    fn targets_name_a_type_an_instance_or_everything() {
        let (w1, w2, k1) = (alloc("web", 1), alloc("web", 2), alloc("worker", 1));
        let pick = |t: Option<&str>| -> Vec<String> {
            [&w1, &w2, &k1]
                .into_iter()
                .filter(|a| matches(t, a))
                .map(|a| a.instance_name())
                .collect()
        };
        assert_eq!(pick(None), ["web.1", "web.2", "worker.1"]);
        assert_eq!(pick(Some("web")), ["web.1", "web.2"]);
        assert_eq!(pick(Some("web.2")), ["web.2"]);
        assert_eq!(pick(Some("worker.2")), Vec::<String>::new());
        for bad in ["", "web.", "web.0", "web.x", "Web", "web.1.2", "../x"] {
            assert!(validate_target(bad).is_err(), "{bad}");
        }
        for good in ["web", "web.1", "worker.12"] {
            assert!(validate_target(good).is_ok(), "{good}");
        }
    }
}
