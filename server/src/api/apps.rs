//! The user API: apps, deploys, images, releases, formation, instances, hosts.

use super::auth::{load_app, Access, Caller};
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use crate::builder::Names;
use crate::docker::EngineError;
use crate::schedule::place::Need;
use crate::store::{AppRecord, Desired, ReleaseRecord, StoreError};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use caas_api::agent::ObservedState;
use caas_api::ReleaseStatus;
use caas_api::WEB;
use caas_api::{
    App, CreateApp, DeployImage, Formation, Instance, InstanceState, LoadedImages, Release,
    ScaleRequest, ServerInfo, Timestamp,
};
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[utoipa::path(get, path = "/v1/info", tag = "apps", operation_id = "apps_info", responses((status = 200, description = "OK", body = ServerInfo), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn info(State(s): State<AppState>) -> Json<ServerInfo> {
    Json(ServerInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        domain: s.config.domain.clone(),
        app_url_template: s.config.app_url_template.clone(),
        max_upload_mb: s.config.max_upload / (1024 * 1024),
    })
}

pub(super) fn app_view(s: &AppState, rec: AppRecord) -> App {
    App {
        url: s.config.app_url(&rec.name),
        name: rec.name,
        created_at: rec.created_at,
        release: rec.release,
        deploying: rec.deploying,
        formation: rec.formation,
        buildpack: rec.buildpack,
    }
}

/// The apps the caller may see.
#[utoipa::path(get, path = "/v1/apps", tag = "apps", operation_id = "apps_list", responses((status = 200, description = "OK", body = Vec<App>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn list(caller: Caller, State(s): State<AppState>) -> ApiResult<Json<Vec<App>>> {
    let apps = s
        .store
        .apps()?
        .into_iter()
        .filter(|a| caller.sees(a))
        .map(|a| app_view(&s, a))
        .collect();
    Ok(Json(apps))
}

#[utoipa::path(post, path = "/v1/apps", tag = "apps", operation_id = "apps_create", request_body = CreateApp, responses((status = "2XX", description = "done", body = App), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn create(
    caller: Caller,
    State(s): State<AppState>,
    JsonBody(req): JsonBody<CreateApp>,
) -> ApiResult<(StatusCode, Json<App>)> {
    caller.unscoped()?;
    caas_api::validate_app_name(&req.name)?;
    let mut rec = AppRecord::new(&req.name, Timestamp::now());
    // Its creator may use it, and give others access.
    rec.access.insert(caller.user.clone());
    rec.owner = Some(caller.user.clone());
    match s.store.create_app(&rec) {
        Ok(()) => {}
        Err(StoreError::Exists) => {
            return Err(ApiError::Conflict(format!(
                "an app named {:?} already exists; pick another name",
                req.name
            )))
        }
        Err(e) => return Err(e.into()),
    }
    s.store.flush().await?;
    s.logs
        .event(&rec.name, "api", format!("App created by {}", caller.user));
    super::audit(&s, &caller, "apps:create", Some(&rec.name), "");
    Ok((StatusCode::CREATED, Json(app_view(&s, rec))))
}

#[utoipa::path(get, path = "/v1/apps/{app}", tag = "apps", operation_id = "apps_show", params(("app" = String, Path)), responses((status = 200, description = "OK", body = App), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn show(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<App>> {
    let rec = load_app(&s, &caller, &app, Access::Read)?;
    Ok(Json(app_view(&s, rec)))
}

#[utoipa::path(delete, path = "/v1/apps/{app}", tag = "apps", operation_id = "apps_destroy", params(("app" = String, Path)), responses((status = "2XX", description = "done"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn destroy(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<StatusCode> {
    load_app(&s, &caller, &app, Access::Manage)?;
    super::audit(&s, &caller, "apps:destroy", Some(&app), "");
    // Runs to its end even when the client goes away: half a destroy would leave the name
    // closed to builds, or files behind for the next app of that name.
    tokio::spawn(destroy_app(s, app))
        .await
        .map_err(|e| ApiError::Internal(format!("destroying: {e}")))?
}

async fn destroy_app(s: AppState, app: String) -> ApiResult<StatusCode> {
    // One destroy at a time, the app looked up inside it: of two destroys of one app, the second
    // finds it gone instead of destroying a new app that took the name in between.
    let mut destroy = s.builder.destroy().await;
    s.store.app(&app)?.ok_or_else(|| ApiError::no_app(&app))?;
    // Builds first: once they have stopped nothing writes records of the app any more, so what
    // the store deletes next stays deleted, and a pusher hears why its build ended.
    destroy.stop_builds(&app).await;
    let releases = s.store.releases(&app)?;
    match s.store.delete_app(&app) {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    s.store.flush().await?;
    // Its one-offs die with it: after the delete, so a run that starts meanwhile either is
    // among the containers listed here or finds the app gone (`runs::start` checks).
    s.runner.end_app(&app).await;
    s.logs.remove(&app);
    s.traffic.remove(&app);
    s.usage.remove(&app);
    // The scheduler deletes the app's allocations; agents then stop the containers.
    s.wake.notify_one();
    let repos = s.repos.clone();
    let name = app.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || repos.remove(&name)).await {
        tracing::warn!(app, "removing the git repository: {e}");
    }
    // Build logs, cache, images: images that instances still use go once the agents have
    // stopped them.
    destroy.forget(&releases).await;
    tracing::info!(app, "app destroyed");
    Ok(StatusCode::NO_CONTENT)
}

/// Image references reach the Docker API only (never a shell), but are still held to the
/// reference grammar's alphabet so nothing odd is stored or logged.
fn validate_image_ref(image: &str) -> ApiResult<()> {
    let ok = (1..=255).contains(&image.len())
        && !image.starts_with('-')
        && image
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-/:@+".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::Invalid(format!(
            "invalid image reference {image:?}"
        )))
    }
}

#[utoipa::path(post, path = "/v1/apps/{app}/deploys", tag = "apps", operation_id = "apps_deploy", params(("app" = String, Path)), request_body = DeployImage, responses((status = "2XX", description = "done", body = Release), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn deploy(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<DeployImage>,
) -> ApiResult<(StatusCode, Json<Release>)> {
    load_app(&s, &caller, &app, Access::Deploy)?;
    validate_image_ref(&req.image)?;
    let image_id = match &req.image_id {
        Some(id) => {
            validate_image_ref(id)?;
            s.engine.image_id(id).await?.ok_or_else(|| {
                ApiError::ImageUploadNeeded(format!(
                    "the server does not have image {} ({id}); upload it with POST /v1/images (caas push --image does)",
                    req.image
                ))
            })?
        }
        None => s.engine.image_id(&req.image).await?.ok_or_else(|| {
            ApiError::NotFound(format!("image {} not found on the server", req.image))
        })?,
    };
    let description = format!("Deploy image {}", req.image);
    let (rec, release) = s.store.create_release::<ApiError>(
        &app,
        |rec, version| {
            Ok(ReleaseRecord {
                app: app.clone(),
                version,
                image: Names::release_image(&app, version),
                image_id: image_id.clone(),
                description: description.clone(),
                created_at: Timestamp::now(),
                process_types: BTreeMap::from([(WEB.to_string(), None)]),
                config: rec.config.clone(),
                launcher: false,
                status: ReleaseStatus::Deploying,
                error: None,
                checks: rec.checks.clone(),
                output: Vec::new(),
                created_by: Some(caller.user.clone()),
                build: None,
                resources: rec.resources.clone(),
            })
        },
        |rec| {
            if rec.formation.is_empty() {
                rec.formation.insert(WEB.into(), 1);
            }
        },
    )?;
    s.store.flush().await?;
    super::config::tag_release(&s, &release).await;
    s.logs.event(
        &app,
        "deploy",
        format!("Deploying v{} ({})", release.version, req.image),
    );
    super::audit(
        &s,
        &caller,
        "deploy",
        Some(&app),
        format!("v{} image {}", release.version, req.image),
    );
    s.wake.notify_one();
    Ok((
        StatusCode::CREATED,
        Json(release_view(release, rec.release)),
    ))
}

/// A release as the API shows it; `serving` is the app's serving release.
pub(super) fn release_view(r: ReleaseRecord, serving: Option<u64>) -> Release {
    Release {
        current: serving == Some(r.version),
        config_keys: r.config.keys().cloned().collect(),
        created_by: r.created_by,
        build: r.build,
        app: r.app,
        version: r.version,
        image: r.image,
        image_id: r.image_id,
        description: r.description,
        created_at: r.created_at,
        process_types: r.process_types,
        status: r.status,
        error: r.error,
        checks: r.checks,
        output: r.output,
        canary: false,
    }
}

/// `docker load` of an uploaded `docker save` archive, streamed into the engine with a size cap.
#[utoipa::path(post, path = "/v1/images", tag = "apps", operation_id = "apps_load_images", responses((status = 200, description = "OK", body = LoadedImages), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn load_images(
    _: Caller,
    State(s): State<AppState>,
    body: Body,
) -> ApiResult<Json<LoadedImages>> {
    let limit = s.config.max_image_upload;
    if let Err(e) = s.builder.room_for("the image upload") {
        crate::builder::discard(body.into_data_stream(), limit).await;
        return Err(e.into());
    }
    let exceeded = Arc::new(AtomicBool::new(false));
    let flag = exceeded.clone();
    let mut seen: u64 = 0;
    let stream = body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        seen += chunk.len() as u64;
        if seen > limit {
            flag.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other("upload over the limit"));
        }
        Ok(chunk)
    });
    let result = s.engine.load_images(stream).await;
    if exceeded.load(Ordering::Relaxed) {
        return Err(ApiError::TooLarge(format!(
            "image uploads are limited to {} MB on this server (caasd --max-image-upload)",
            limit / (1024 * 1024)
        )));
    }
    match result {
        Ok(images) if images.is_empty() => Err(ApiError::Invalid(
            "the upload held no image; send the output of docker save".into(),
        )),
        Ok(images) => {
            tracing::info!("loaded images {images:?}");
            Ok(Json(LoadedImages { images }))
        }
        Err(EngineError::Other(m)) => Err(ApiError::Invalid(format!(
            "the Docker engine could not load the upload: {m}"
        ))),
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(get, path = "/v1/apps/{app}/releases", tag = "apps", operation_id = "apps_releases", params(("app" = String, Path)), responses((status = 200, description = "OK", body = Vec<Release>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn releases(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Release>>> {
    let rec = load_app(&s, &caller, &app, Access::Read)?;
    let mut list: Vec<Release> = s
        .store
        .releases(&app)?
        .into_iter()
        .map(|r| release_view(r, rec.release))
        .collect();
    let canary = rec.canary.as_ref().map(|c| c.version);
    for r in &mut list {
        r.canary = canary == Some(r.version);
    }
    list.reverse();
    Ok(Json(list))
}

/// `GET /v1/apps/{app}/releases/{version}` (`7` or `v7`): one release, with where its rollout
/// stands. `caas push` and `git push` wait on this.
#[derive(serde::Deserialize)]
pub struct ReleaseQuery {
    /// For a release that came up: answer once the gateway serves it.
    #[serde(default)]
    served: bool,
}

#[utoipa::path(get, path = "/v1/apps/{app}/releases/{version}", tag = "apps", operation_id = "apps_release", params(("app" = String, Path), ("version" = String, Path)), responses((status = 200, description = "OK", body = Release), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn release(
    caller: Caller,
    State(s): State<AppState>,
    Path((app, version)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<ReleaseQuery>,
) -> ApiResult<Json<Release>> {
    let rec = load_app(&s, &caller, &app, Access::Read)?;
    let missing = || {
        ApiError::NotFound(format!(
            "{app} has no release {version:?}: see caas releases -a {app}"
        ))
    };
    let v: u64 = version
        .strip_prefix('v')
        .unwrap_or(&version)
        .parse()
        .map_err(|_| missing())?;
    let r = s.store.release(&app, v)?.ok_or_else(missing)?;
    if q.served && r.status == ReleaseStatus::Succeeded && rec.release == Some(v) {
        super::until_served(&s, &app, v).await;
    }
    Ok(Json(release_view(r, rec.release)))
}

fn formation_view(s: &AppState, rec: &AppRecord) -> Formation {
    Formation {
        app: rec.name.clone(),
        quantities: rec.formation.clone(),
        max_per_process: s.config.max_scale,
        pending: Vec::new(),
        hint: None,
    }
}

#[utoipa::path(get, path = "/v1/apps/{app}/formation", tag = "apps", operation_id = "apps_formation", params(("app" = String, Path)), responses((status = 200, description = "OK", body = Formation), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn formation(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<Formation>> {
    let rec = load_app(&s, &caller, &app, Access::Read)?;
    Ok(Json(formation_view(&s, &rec)))
}

#[utoipa::path(patch, path = "/v1/apps/{app}/formation", tag = "apps", operation_id = "apps_scale", params(("app" = String, Path)), request_body = ScaleRequest, responses((status = 200, description = "OK", body = Formation), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn scale(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<ScaleRequest>,
) -> ApiResult<Json<Formation>> {
    let rec = load_app(&s, &caller, &app, Access::Manage)?;
    if req.quantities.is_empty() {
        return Err(ApiError::Invalid(
            "nothing to scale: give TYPE=COUNT, e.g. web=2".into(),
        ));
    }
    let known: Vec<String> = match rec.latest() {
        Some(v) => s
            .store
            .release(&app, v)?
            .map(|r| r.process_types.into_keys().collect())
            .unwrap_or_default(),
        None => vec![WEB.to_string()],
    };
    let max = s.config.max_scale;
    let mut wanted = BTreeMap::new();
    for (process, &count) in &req.quantities {
        caas_api::validate_process_type(process)?;
        if process == crate::oneoff::release_phase::RELEASE_PROCESS {
            return Err(ApiError::Invalid(
                "release is the release phase: it runs once per release, not as instances".into(),
            ));
        }
        if !known.contains(process) {
            return Err(ApiError::Invalid(format!(
                "unknown process type {process:?}: this app's release defines {}",
                known.join(", ")
            )));
        }
        if !(0..=max as i64).contains(&count) {
            return Err(ApiError::Invalid(format!(
                "invalid count {count} for {process}: use a whole number from 0 to {max}"
            )));
        }
        wanted.insert(process.clone(), count as u32);
    }
    if let Some((process, a)) = rec.autoscale.iter().find(|(p, _)| wanted.contains_key(*p)) {
        return Err(ApiError::Conflict(format!(
            "{process} is autoscaled ({}): change it with caas autoscale:set {process} -a {app}, or turn it off with caas autoscale:off {process} -a {app}",
            super::scaling::describe(process, a)
        )));
    }
    let mut before = BTreeMap::new();
    let rec = s.store.update_app::<ApiError>(&app, |a| {
        before = a.formation.clone();
        a.formation.extend(wanted.clone());
        Ok(())
    })?;
    s.store.flush().await?;
    let summary: Vec<String> = wanted.iter().map(|(p, n)| format!("{p}={n}")).collect();
    let was: Vec<String> = wanted
        .keys()
        .map(|p| format!("{p}={}", before.get(p).copied().unwrap_or(0)))
        .collect();
    s.logs.event(
        &app,
        "scale",
        format!("Scaled to {} (was {})", summary.join(" "), was.join(" ")),
    );
    super::audit(
        &s,
        &caller,
        "ps:scale",
        Some(&app),
        format!("{} (was {})", summary.join(" "), was.join(" ")),
    );
    s.wake.notify_one();
    let mut view = formation_view(&s, &rec);
    // Say now, not never, when the new instances have no host to go to: the scheduler's next
    // pass places them or says why not. Those for which room is coming (draining instances)
    // are not a failure.
    s.board.next_pass(PLACED_WITHIN).await;
    let stuck: Vec<_> = s
        .board
        .pending(&app)
        .into_iter()
        .map(|p| p.unplaced)
        .filter(|u| {
            !u.waiting
                && wanted
                    .keys()
                    .any(|p| u.instance.starts_with(&format!("{p}.")))
        })
        .collect();
    if let Some(first) = stuck.first() {
        let process = first.instance.split('.').next().unwrap_or_default();
        view.hint = Some(crate::schedule::place::hint(&app, process));
    }
    view.pending = stuck
        .into_iter()
        .map(|u| format!("{}: {}", u.instance, u.reason))
        .collect();
    Ok(Json(view))
}

/// How long a scale waits for the scheduler's pass that places its instances (it takes
/// milliseconds unless the store is slow).
const PLACED_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

/// An instance's state as `caas ps` shows it: its allocation's, else its host's, else what its
/// agent last reported.
pub(super) fn instance_state(
    s: &AppState,
    a: &crate::store::AllocationRecord,
    report: Option<&caas_api::agent::InstanceReport>,
    now: Timestamp,
) -> InstanceState {
    if matches!(a.desired, Desired::Drain { .. }) {
        InstanceState::Draining
    } else if !s.observed.host_alive(&a.host_id, now) {
        InstanceState::Lost
    } else {
        match report.map(|r| r.state) {
            None => InstanceState::Pending,
            Some(ObservedState::Starting) => InstanceState::Starting,
            Some(ObservedState::Up) => InstanceState::Up,
            Some(ObservedState::Unhealthy) => InstanceState::Unhealthy,
            Some(ObservedState::Unready) => InstanceState::Unready,
            Some(ObservedState::Crashed) => InstanceState::Crashed,
        }
    }
}

#[utoipa::path(get, path = "/v1/apps/{app}/ps", tag = "apps", operation_id = "apps_ps", params(("app" = String, Path)), responses((status = 200, description = "OK", body = Vec<Instance>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn ps(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Instance>>> {
    load_app(&s, &caller, &app, Access::Read)?;
    let now = Timestamp::now();
    let hosts: BTreeMap<String, String> = s
        .store
        .hosts()?
        .into_iter()
        .map(|h| (h.id, h.name))
        .collect();
    let allocations: Vec<_> = s
        .store
        .allocations()?
        .into_iter()
        .filter(|a| a.app == app)
        .collect();
    // Each release's resources, read once per release.
    let mut resources: HashMap<u64, BTreeMap<String, caas_api::Resources>> = HashMap::new();
    for a in &allocations {
        if let std::collections::hash_map::Entry::Vacant(e) = resources.entry(a.release) {
            let r = s.store.release(&app, a.release)?;
            e.insert(r.map(|r| r.resources).unwrap_or_default());
        }
    }
    let mut out: Vec<Instance> = allocations
        .into_iter()
        .map(|a| {
            let res = resources[&a.release]
                .get(&a.process)
                .copied()
                .unwrap_or_default();
            let report = s.observed.report(&a.id);
            let state = instance_state(&s, &a, report.as_ref(), now);
            let need = Need::of_allocation(&a, s.config.memory());
            let address = report.as_ref().and_then(|r| r.port).and_then(|p| {
                s.store
                    .host(&a.host_id)
                    .ok()
                    .flatten()
                    .map(|h| format!("{}:{p}", h.address))
            });
            Instance {
                name: a.instance_name(),
                host: hosts
                    .get(&a.host_id)
                    .cloned()
                    .unwrap_or_else(|| a.host_id.clone()),
                address,
                state,
                restarts: report.as_ref().map_or(0, |r| r.restarts),
                since: report.as_ref().map_or(a.created_at, |r| r.since),
                created_at: a.created_at,
                check: report.as_ref().and_then(|r| r.check.clone()),
                memory_mb: need.limit_mb,
                reserved_mb: need.reserve_mb,
                cpus: res.cpus,
                reason: None,
                id: a.id,
                process: a.process,
                index: a.index,
                release: a.release,
            }
        })
        .collect();
    // Instances no host could take: pending, with why, rather than absent.
    for p in s.board.pending(&app) {
        let u = p.unplaced;
        let (process, index) = u.instance.split_once('.').unwrap_or((&u.instance, "0"));
        out.push(Instance {
            id: String::new(),
            name: u.instance.clone(),
            process: process.to_string(),
            index: index.parse().unwrap_or(0),
            release: u.release,
            host: String::new(),
            address: None,
            state: InstanceState::Pending,
            restarts: 0,
            since: p.since,
            created_at: p.since,
            check: None,
            memory_mb: u.need.limit_mb,
            reserved_mb: u.need.reserve_mb,
            cpus: None,
            reason: Some(u.reason),
        });
    }
    // One-offs (`run.N`, `release.N`) while they run: on the control plane's host, up.
    out.extend(s.runner.running(&app).into_iter().map(|r| Instance {
        id: r.container.clone(),
        name: r.name(),
        host: s.runner.host_name().to_string(),
        address: None,
        state: InstanceState::Up,
        restarts: 0,
        since: r.started_at,
        created_at: r.started_at,
        check: None,
        memory_mb: r.memory_mb,
        cpus: r.cpus,
        process: r.process,
        index: r.index,
        release: r.release,
        reserved_mb: r.memory_mb,
        reason: None,
    }));
    out.sort_by(|a, b| (&a.process, a.index, a.release).cmp(&(&b.process, b.index, b.release)));
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        for good in [
            "demo",
            "demo:latest",
            "registry:5000/team/app:v1.2",
            "sha256:abc123",
            "a@sha256:ff",
        ] {
            assert!(validate_image_ref(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "a b", "a;b", "a\nb", "$(x)", &"a".repeat(256)] {
            assert!(validate_image_ref(bad).is_err(), "{bad}");
        }
    }
}
