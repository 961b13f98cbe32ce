//! `caas ps:resize`: a process type's memory limit, memory reservation and CPU cap, within the
//! operator's bounds. The scheduler counts the reservation on a host; the container gets the
//! limit.
//! `GET /v1/apps/{app}/resources` (what each process type gets), `PUT
//! /v1/apps/{app}/resources/{process}` (a change makes a release, which rolls out like a config
//! change: new instances with the new limits replace the old ones, gated by the rollout).

use super::auth::{load_app, Access, Caller};
use super::config::release_change;
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use crate::schedule::place::Need;
use axum::extract::{Path, State};
use axum::Json;
use caas_api::{Resize, Resources};
use std::collections::BTreeMap;

/// The least memory an instance may be given: less than this and hardly any runtime starts.
const MIN_MEMORY_MB: u64 = 16;
const MIN_CPUS: f64 = 0.01;
const RETRIES: usize = 5;

/// Each process type of the app's newest release (else its formation) with what it gets: its
/// own settings, the operator's defaults for the rest.
#[utoipa::path(get, path = "/v1/apps/{app}/resources", tag = "resources", operation_id = "resources_get", params(("app" = String, Path)), responses((status = 200, description = "OK", body = BTreeMap<String, Resources>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn get(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<BTreeMap<String, Resources>>> {
    let rec = load_app(&s, &caller, &app, Access::Read)?;
    let mut types: Vec<String> = rec.formation.keys().cloned().collect();
    if let Some(latest) = rec.latest() {
        if let Some(r) = s.store.release(&app, latest)? {
            types.extend(r.process_types.into_keys());
        }
    }
    types.extend(rec.resources.keys().cloned());
    Ok(Json(
        types
            .into_iter()
            .map(|p| {
                let own = rec.resources.get(&p).copied().unwrap_or_default();
                let need = Need::of(own.memory_mb, own.reserve_mb, s.config.memory());
                let r = Resources {
                    memory_mb: Some(need.limit_mb),
                    reserve_mb: Some(need.reserve_mb),
                    cpus: own.cpus,
                };
                (p, r)
            })
            .collect(),
    ))
}

/// Checks a resize against the operator's bounds and the hosts there are.
fn check(s: &AppState, r: &Resources) -> ApiResult<()> {
    if r.memory_mb.is_none() && r.cpus.is_none() && r.reserve_mb.is_none() {
        return Err(ApiError::Invalid(
            "nothing to change: give --memory SIZE, --reserve SIZE and/or --cpu N".into(),
        ));
    }
    if r.reserve_mb == Some(0) {
        return Err(ApiError::Invalid(
            "--reserve 0 reserves nothing: give at least 1M".into(),
        ));
    }
    let hosts = s.store.hosts()?;
    if let Some(mb) = r.memory_mb {
        let max = s.config.max_instance_memory_mb;
        let largest = hosts.iter().map(|h| h.memory_mb).max().unwrap_or(u64::MAX);
        if mb < MIN_MEMORY_MB {
            return Err(ApiError::Invalid(format!(
                "--memory {mb}M is too little: give at least {MIN_MEMORY_MB}M"
            )));
        }
        if mb > max {
            return Err(ApiError::Invalid(format!(
                "--memory {mb}M is over this server's limit of {max}M per instance \
                 (caasd --max-instance-memory)"
            )));
        }
        if mb > largest {
            return Err(ApiError::Invalid(format!(
                "--memory {mb}M is more than any host has ({largest}M): see caas hosts"
            )));
        }
    }
    if let Some(cpus) = r.cpus {
        let max = s.config.max_instance_cpus;
        let largest = hosts.iter().map(|h| h.cpus).max().unwrap_or(u32::MAX);
        if !cpus.is_finite() || cpus < MIN_CPUS {
            return Err(ApiError::Invalid(format!(
                "--cpu {cpus} is too little: give at least {MIN_CPUS} (a hundredth of a core)"
            )));
        }
        if cpus > max {
            return Err(ApiError::Invalid(format!(
                "--cpu {cpus} is over this server's limit of {max} per instance \
                 (caasd --max-instance-cpus)"
            )));
        }
        if cpus > f64::from(largest) {
            return Err(ApiError::Invalid(format!(
                "--cpu {cpus} is more than any host has ({largest} cores): see caas hosts"
            )));
        }
    }
    Ok(())
}

/// A process type's limit and reservation together, as they would be after the change: the
/// reservation at most the limit, and no more than any host offers.
fn check_pair(s: &AppState, new: &Resources) -> ApiResult<()> {
    let need = Need::of(new.memory_mb, new.reserve_mb, s.config.memory());
    if need.reserve_mb > need.limit_mb {
        return Err(ApiError::Invalid(format!(
            "--reserve {}M is more than the memory limit of {}M: a reservation is at most the \
             limit; give a smaller --reserve, or a larger --memory with it",
            need.reserve_mb, need.limit_mb
        )));
    }
    let largest = s.store.hosts()?.iter().map(|h| h.memory_mb).max();
    if let Some(largest) = largest.filter(|l| need.reserve_mb > *l) {
        return Err(ApiError::Invalid(format!(
            "--reserve {}M is more than any host offers ({largest}M): see caas hosts",
            need.reserve_mb
        )));
    }
    Ok(())
}

/// `12 GiB, 0.5 CPU`
fn describe(process: &str, r: &Resources) -> String {
    let mut parts = Vec::new();
    if let Some(mb) = r.memory_mb {
        parts.push(format!("{mb}M memory"));
    }
    if let Some(mb) = r.reserve_mb {
        parts.push(format!("{mb}M reserved"));
    }
    if let Some(c) = r.cpus {
        parts.push(format!("{c} CPU"));
    }
    format!("Resize {process}: {}", parts.join(", "))
}

#[utoipa::path(put, path = "/v1/apps/{app}/resources/{process}", tag = "resources", operation_id = "resources_put", params(("app" = String, Path), ("process" = String, Path)), request_body = Resources, responses((status = 200, description = "OK", body = Resize), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn put(
    caller: Caller,
    State(s): State<AppState>,
    Path((app, process)): Path<(String, String)>,
    JsonBody(req): JsonBody<Resources>,
) -> ApiResult<Json<Resize>> {
    load_app(&s, &caller, &app, Access::Manage)?;
    caas_api::validate_process_type(&process)?;
    check(&s, &req)?;
    let merge = |old: Resources| Resources {
        memory_mb: req.memory_mb.or(old.memory_mb),
        reserve_mb: req.reserve_mb.or(old.reserve_mb),
        cpus: req.cpus.or(old.cpus),
    };
    let apply = |all: &mut BTreeMap<String, Resources>| {
        let new = merge(all.get(&process).copied().unwrap_or_default());
        all.insert(process.clone(), new);
    };
    let description = describe(&process, &req);
    for _ in 0..RETRIES {
        let rec = load_app(&s, &caller, &app, Access::Manage)?;
        let old = rec.resources.get(&process).copied().unwrap_or_default();
        let new = merge(old);
        check_pair(&s, &new)?;
        let answer = |release| Resize {
            process: process.clone(),
            resources: new,
            release,
            changed: release.is_some() || new != old,
        };
        if new == old {
            return Ok(Json(answer(None)));
        }
        let Some(latest) = rec.latest() else {
            // Never deployed: the first release picks them up.
            s.store.update_app::<ApiError>(&app, |a| {
                apply(&mut a.resources);
                Ok(())
            })?;
            s.store.flush().await?;
            s.logs.event(&app, "resize", description.clone());
            super::audit(&s, &caller, "resize", Some(&app), description.clone());
            return Ok(Json(answer(None)));
        };
        let base = s
            .store
            .release(&app, latest)?
            .ok_or_else(|| ApiError::Internal(format!("{app} v{latest} is missing")))?;
        if !base.process_types.contains_key(&process) {
            return Err(ApiError::NotFound(format!(
                "v{latest} of {app} has no process type {process:?}: see caas ps -a {app}"
            )));
        }
        let change = |rec: &mut crate::store::AppRecord| apply(&mut rec.resources);
        if let Some((_, release)) =
            release_change(&s, &caller, &base, "resize", &description, change, None).await?
        {
            return Ok(Json(answer(Some(release.version))));
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
    fn describes_what_changes() {
        let r = Resources {
            memory_mb: Some(1024),
            reserve_mb: Some(64),
            cpus: Some(0.5),
        };
        assert_eq!(
            describe("web", &r),
            "Resize web: 1024M memory, 64M reserved, 0.5 CPU"
        );
        let r = Resources {
            cpus: Some(2.0),
            ..Resources::default()
        };
        assert_eq!(describe("worker", &r), "Resize worker: 2 CPU");
    }
}
