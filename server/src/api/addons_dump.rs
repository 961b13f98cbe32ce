//! `GET /v1/addons/{name}/backup` streams a logical dump of an add-on's data (pg_dump's custom
//! format, a Redis RDB, mysqldump's SQL); `PUT` of the same path restores one. A restore whose
//! first bytes are not a dump of the add-on's kind is refused before anything runs, and the
//! service applies the rest whole or not at all (one transaction; Redis checks the whole file
//! before it swaps it in), so a bad file changes nothing.

use super::addons::load_addon;
use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::addons::{recipe, Recipe, ServiceError};
use crate::store::AddonRecord;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use caas_api::addons::AddonState;
use futures_util::{StreamExt, TryStreamExt};

/// Bytes read before judging whether an upload is a dump of the right kind.
const HEAD: usize = 16;

fn service(rec: &AddonRecord) -> ApiResult<Recipe> {
    let r = recipe(rec.kind).ok_or_else(|| {
        ApiError::Invalid(format!(
            "{} is an external add-on: back up the service at its URL with its own tools",
            rec.name
        ))
    })?;
    if rec.state != AddonState::Available {
        return Err(ApiError::Conflict(format!(
            "{} is {}: see caas addons:info {}",
            rec.name,
            rec.state.as_str(),
            rec.name
        )));
    }
    Ok(r)
}

fn service_error(e: ServiceError) -> ApiError {
    match e {
        ServiceError::Engine(e) => e.into(),
        ServiceError::Failed(m) => ApiError::Invalid(m),
        ServiceError::Lost(m) => ApiError::Conflict(m),
    }
}

#[utoipa::path(get, path = "/v1/addons/{name}/backup", tag = "addons", operation_id = "addons_backup", params(("name" = String, Path)), responses((status = 200, description = "the dump, streamed (application/octet-stream); a body cut short means the dump failed"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn backup(
    caller: Caller,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller.unscoped()?;
    let rec = load_addon(&s, &caller, &name)?;
    service(&rec)?;
    let stream = s.addons.backup(&rec).await.map_err(service_error)?;
    super::audit(&s, &caller, "addons:backup", None, name.clone());
    // An error item aborts the response: the client sees a cut-short body, never a short dump
    // that looks whole.
    let stream = stream.map_err(move |e| {
        tracing::warn!(addon = name, "backup failed: {e}");
        std::io::Error::other(e.to_string())
    });
    Ok(Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/octet-stream")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(stream))
        .expect("static headers are valid"))
}

#[utoipa::path(put, path = "/v1/addons/{name}/backup", tag = "addons", operation_id = "addons_restore", params(("name" = String, Path)), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "a dump made by GET of the same path, of an add-on of the same kind"), responses((status = 204, description = "restored"), (status = "4XX", description = "refused, nothing changed; the message says why", body = caas_api::ErrorBody)))]
pub async fn restore(
    caller: Caller,
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<StatusCode> {
    caller.unscoped()?;
    let rec = load_addon(&s, &caller, &name)?;
    let r = service(&rec)?;
    let mut body = body.into_data_stream();
    let mut head = BytesMut::new();
    while head.len() < HEAD {
        match body.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(e)) => return Err(ApiError::Invalid(format!("reading the dump: {e}"))),
            None => break,
        }
    }
    if !r.is_dump(&head) {
        return Err(ApiError::Invalid(format!(
            "this is not a {}: nothing was changed",
            r.dump_name
        )));
    }
    let first: Bytes = head.freeze();
    let rest = body.map(|c| c.map_err(std::io::Error::other));
    let dump = futures_util::stream::once(async move { Ok(first) }).chain(rest);
    s.addons.restore(&rec, dump).await.map_err(service_error)?;
    super::audit(&s, &caller, "addons:restore", None, name);
    Ok(StatusCode::NO_CONTENT)
}
