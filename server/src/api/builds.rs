//! Builds: push an upload, stream the build, list builds, replay their output, buildpacks.

use super::auth::{load_app, Access, Caller};
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use crate::builder::BuildError;
use crate::store::BuildRecord;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::Response;
use axum::Json;
use bytes::Bytes;
use caas_api::{Build, BuildEvent, BuildStatus, Buildpack, SetBuildpack, SourceKind};
use futures_util::StreamExt;
use serde::Deserialize;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_stream::wrappers::ReceiverStream;

impl From<BuildError> for ApiError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::NoApp(app) => ApiError::no_app(&app),
            BuildError::TooLarge(_) => ApiError::TooLarge(e.to_string()),
            BuildError::Refused(m) | BuildError::Failed(m) => ApiError::Invalid(m),
            // During the upload: the app it was for is gone.
            BuildError::Destroyed => ApiError::NotFound(e.to_string()),
            BuildError::NoRoom(m) => ApiError::NoRoom(m),
            BuildError::Store(s) => s.into(),
            BuildError::Internal(m) => ApiError::Internal(m),
        }
    }
}

fn view(b: BuildRecord) -> Build {
    Build {
        app: b.app,
        number: b.number,
        status: b.status,
        source: b.source,
        builder: b.builder,
        release: b.release,
        image_size: b.image_size,
        error: b.error,
        created_at: b.created_at,
        finished_at: b.finished_at,
    }
}

#[derive(Deserialize)]
pub struct CreateQuery {
    source: SourceKind,
    /// The uploaded file's name, for messages and for the `.war`/`.jar` kept in the build.
    #[serde(default)]
    name: Option<String>,
    /// `caas push --canary --weight N`: hold the release and start it as a canary with N % of
    /// requests instead of rolling it out.
    #[serde(default)]
    canary: Option<u8>,
}

/// A file name from a client, for display only: printable, no path, bounded.
fn display_name(name: Option<String>, kind: SourceKind) -> ApiResult<String> {
    let default = match kind {
        SourceKind::Dir => "directory",
        SourceKind::TarGz => "app.tar.gz",
        SourceKind::Zip => "app.zip",
        SourceKind::War => "app.war",
        SourceKind::Jar => "app.jar",
    };
    let name = name.unwrap_or_else(|| default.to_string());
    let ok = (1..=200).contains(&name.len())
        && !name.contains('/')
        && !name.contains('\\')
        && name.chars().all(|c| !c.is_control());
    if ok {
        Ok(name)
    } else {
        Err(ApiError::Invalid(format!("invalid file name {name:?}")))
    }
}

/// `POST /v1/apps/{app}/builds`: the body is the upload. Refusals (unknown app, too large, not
/// the archive its name says, hostile entries) answer with an error status before anything
/// streams; after that the answer is the build's event stream.
#[utoipa::path(post, path = "/v1/apps/{app}/builds", tag = "builds", operation_id = "builds_create", params(("app" = String, Path)), responses((status = 200, description = "see docs/api.md"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn create(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    Query(q): Query<CreateQuery>,
    body: Body,
) -> ApiResult<Response> {
    let rec = load_app(&s, &caller, &app, Access::Deploy)?;
    let name = display_name(q.name, q.source)?;
    let mut body = body.into_data_stream();
    if let Some(weight) = q.canary {
        // Refused before the build (the release's write checks again); the upload is read to
        // its end so that the client gets to read why.
        let refused = super::canary::check_weight(weight)
            .and_then(|()| Ok(crate::canary::refuse_start(&rec)?));
        if let Err(e) = refused {
            crate::builder::discard(&mut body, s.config.max_upload).await;
            return Err(e);
        }
    }
    let mut prepared = s.builder.prepare(&app, q.source, &name, body).await?;
    prepared.user = Some(caller.user.clone());
    prepared.canary = q.canary;
    let what = match q.canary {
        Some(w) => format!("build of {name} as a canary with {w}% of requests"),
        None => format!("build of {name}"),
    };
    super::audit(&s, &caller, "push", Some(&app), what);
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    s.builder.spawn(prepared, tx);
    let stream = ReceiverStream::new(rx).map(|ev: BuildEvent| super::ndjson(&ev));
    Ok(super::ndjson_response(Body::from_stream(stream)))
}

#[utoipa::path(get, path = "/v1/apps/{app}/builds", tag = "builds", operation_id = "builds_list", params(("app" = String, Path)), responses((status = 200, description = "OK", body = Vec<Build>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn list(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Build>>> {
    load_app(&s, &caller, &app, Access::Read)?;
    let mut builds: Vec<Build> = s.store.builds(&app)?.into_iter().map(view).collect();
    builds.reverse();
    Ok(Json(builds))
}

fn load_build(s: &AppState, app: &str, number: &str) -> ApiResult<BuildRecord> {
    let not_found = || {
        ApiError::NotFound(format!(
            "{app} has no build {number:?}: see caas builds -a {app}"
        ))
    };
    let n: u64 = number
        .trim_start_matches('#')
        .parse()
        .map_err(|_| not_found())?;
    s.store.build(app, n)?.ok_or_else(not_found)
}

#[utoipa::path(get, path = "/v1/apps/{app}/builds/{number}", tag = "builds", operation_id = "builds_show", params(("app" = String, Path), ("number" = String, Path)), responses((status = 200, description = "OK", body = Build), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn show(
    caller: Caller,
    State(s): State<AppState>,
    Path((app, number)): Path<(String, String)>,
) -> ApiResult<Json<Build>> {
    load_app(&s, &caller, &app, Access::Read)?;
    Ok(Json(view(load_build(&s, &app, &number)?)))
}

#[derive(Deserialize)]
pub struct OutputQuery {
    #[serde(default)]
    follow: bool,
}

/// `GET /v1/apps/{app}/builds/{n}/output[?follow=true]`: the build's output as text; with
/// `follow`, more as it comes until the build ends.
#[utoipa::path(get, path = "/v1/apps/{app}/builds/{number}/output", tag = "builds", operation_id = "builds_output", params(("app" = String, Path), ("number" = String, Path)), responses((status = 200, description = "see docs/api.md"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn output(
    caller: Caller,
    State(s): State<AppState>,
    Path((app, number)): Path<(String, String)>,
    Query(q): Query<OutputQuery>,
) -> ApiResult<Response> {
    load_app(&s, &caller, &app, Access::Read)?;
    let build = load_build(&s, &app, &number)?;
    let path = s.builder.log_path(&app, build.number);
    let file = tokio::fs::File::open(&path).await.ok();
    if file.is_none() && build.status == BuildStatus::Failed {
        // Refusals recorded before they were written to the build's output have only the
        // record's reason.
        if let Some(error) = build.error {
            return Ok(Response::builder()
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(Body::from(format!(" !     {error}\n")))
                .expect("static headers are valid"));
        }
    }
    let store = s.store.clone();
    let state = (
        file,
        0u64,
        store,
        (app, path),
        build.number,
        q.follow,
        false,
    );
    let stream = futures_util::stream::unfold(
        state,
        |(mut file, mut pos, store, (app, path), n, follow, mut done)| async move {
            loop {
                if done {
                    return None;
                }
                let mut buf = Vec::new();
                if let Some(f) = file.as_mut() {
                    if f.seek(std::io::SeekFrom::Start(pos)).await.is_ok() {
                        let _ = f.read_to_end(&mut buf).await;
                    }
                }
                pos += buf.len() as u64;
                let running = follow
                    && store.build(&app, n).ok().flatten().is_some_and(|b| {
                        matches!(b.status, BuildStatus::Queued | BuildStatus::Running)
                    });
                if !running {
                    // One last read happened above after the build ended; nothing more will come.
                    done = true;
                }
                if !buf.is_empty() {
                    return Some((
                        Ok::<_, std::io::Error>(Bytes::from(buf)),
                        (file, pos, store, (app, path), n, follow, done),
                    ));
                }
                if done {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                if file.is_none() {
                    file = tokio::fs::File::open(&path).await.ok();
                }
            }
        },
    );
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from_stream(stream))
        .expect("static headers are valid"))
}

#[utoipa::path(get, path = "/v1/buildpacks", tag = "builds", operation_id = "builds_buildpacks", responses((status = 200, description = "OK", body = Vec<Buildpack>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn buildpacks(_: Caller, State(s): State<AppState>) -> Json<Vec<Buildpack>> {
    Json(s.builder.buildpacks())
}

#[utoipa::path(put, path = "/v1/apps/{app}/buildpack", tag = "builds", operation_id = "builds_set_buildpack", params(("app" = String, Path)), request_body = SetBuildpack, responses((status = 200, description = "OK", body = caas_api::App), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn set_buildpack(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<SetBuildpack>,
) -> ApiResult<Json<caas_api::App>> {
    load_app(&s, &caller, &app, Access::Manage)?;
    if let Some(name) = &req.buildpack {
        let known: Vec<String> = s.builder.buildpacks().into_iter().map(|b| b.name).collect();
        if !known.contains(name) {
            return Err(ApiError::Invalid(format!(
                "no buildpack named {name:?}; installed: {}",
                known.join(", ")
            )));
        }
    }
    let rec = s.store.update_app::<ApiError>(&app, |a| {
        a.buildpack = req.buildpack.clone();
        Ok(())
    })?;
    s.store.flush().await?;
    let detail = req.buildpack.clone().unwrap_or_else(|| "(detect)".into());
    super::audit(&s, &caller, "buildpacks:set", Some(&app), detail);
    Ok(Json(super::apps::app_view(&s, rec)))
}
