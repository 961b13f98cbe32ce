//! One-off processes: `POST /v1/apps/{app}/runs` (`caas run`). An attached run is an HTTP
//! upgrade carrying [`caas_api::run::Frame`]s; a detached one answers at once and its output
//! goes to the app's log. The container work is `crate::oneoff`'s.

use super::auth::{load_app, Access, Caller};
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use crate::docker::Stdio;
use crate::oneoff::{session, Start};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use caas_api::run::{
    RunRequest, RunStarted, RUN_NAME_HEADER, RUN_PROCESS, RUN_PROTOCOL, RUN_RELEASE_HEADER,
};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Arguments of one command, at most.
const MAX_ARGS: usize = 256;
const MAX_ARGS_BYTES: usize = 64 * 1024;

/// The connection's pending upgrade, when the client asked for one.
pub struct Upgrade(Option<OnUpgrade>);

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.remove::<OnUpgrade>()))
    }
}

fn wants_run_protocol(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(RUN_PROTOCOL))
}

/// What is wrong with a command, if anything.
fn check_command(command: &[String]) -> Result<(), String> {
    if command.is_empty() || command[0].trim().is_empty() {
        return Err("no command: give one after --, e.g. caas run -a APP -- bash".into());
    }
    let bytes: usize = command.iter().map(String::len).sum();
    if command.len() > MAX_ARGS || bytes > MAX_ARGS_BYTES {
        return Err(format!(
            "the command is too long: at most {MAX_ARGS} arguments and {} KB",
            MAX_ARGS_BYTES / 1024
        ));
    }
    if command.iter().any(|a| a.contains('\0')) {
        return Err("the command contains a NUL byte".into());
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/apps/{app}/runs", tag = "runs", operation_id = "runs_start", params(("app" = String, Path)), request_body = RunRequest, responses((status = 101, description = "attached: the connection carries frames (see docs/api.md)"), (status = 201, description = "detached", body = RunStarted), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn start(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    Upgrade(upgrade): Upgrade,
    headers: HeaderMap,
    JsonBody(req): JsonBody<RunRequest>,
) -> ApiResult<Response> {
    // Config vars reach the process: the same access as reading them.
    let rec = load_app(&s, &caller, &app, Access::Manage)?;
    check_command(&req.command).map_err(ApiError::Invalid)?;
    let attach = !req.detach;
    let upgrade = match (attach, upgrade) {
        (true, Some(u)) if wants_run_protocol(&headers) => Some(u),
        (true, _) => {
            return Err(ApiError::Invalid(format!(
                "an attached run needs an HTTP/1.1 upgrade to {RUN_PROTOCOL} (or detach: true)"
            )))
        }
        (false, _) => None,
    };
    let Some(version) = rec.release.or(rec.deploying) else {
        return Err(ApiError::NotFound(format!(
            "{app} has no release yet: deploy it first (caas push -a {app})"
        )));
    };
    let release = s
        .store
        .release(&app, version)?
        .ok_or_else(|| ApiError::Internal(format!("{app} v{version} is missing")))?;
    let stdio = Stdio {
        stdin: attach,
        tty: attach && req.tty,
    };
    let (info, attached) = s
        .runner
        .start(Start {
            release: &release,
            process: RUN_PROCESS,
            argv: req.command.clone(),
            stdio,
            term: req.term.clone(),
            attach,
        })
        .await
        .map_err(|e| ApiError::Internal(format!("starting a one-off of {app}: {e}")))?;
    // Destroyed while it started: `apps::destroy_app` may have listed the one-offs before this
    // one existed.
    if s.store.app(&app)?.is_none() {
        s.runner.end(&info).await;
        return Err(ApiError::no_app(&app));
    }
    let name = info.name();
    let shown = req.command.join(" ");
    s.logs.event(
        &app,
        "run",
        format!(
            "Starting process with command `{shown}` by {} ({name})",
            caller.user
        ),
    );
    super::audit(&s, &caller, "run", Some(&app), format!("{name} v{version}"));
    let (Some(upgrade), Some(attached)) = (upgrade, attached) else {
        s.runner.follow_detached(info);
        let started = RunStarted {
            name,
            release: version,
        };
        return Ok((StatusCode::CREATED, Json(started)).into_response());
    };
    if stdio.tty {
        if let (Some(cols), Some(rows)) = (req.cols, req.rows) {
            let _ = s.runner.resize(&info, cols, rows).await;
        }
    }
    let runner = s.runner.clone();
    let header_name = name.clone();
    tokio::spawn(async move {
        match upgrade.await {
            Ok(conn) => session::serve(runner, info, attached, TokioIo::new(conn)).await,
            Err(e) => {
                tracing::warn!("{name}: the upgrade failed: {e}");
                runner.end(&info).await;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, RUN_PROTOCOL)
        .header(RUN_NAME_HEADER, header_name)
        .header(RUN_RELEASE_HEADER, version.to_string())
        .body(axum::body::Body::empty())
        .map_err(|e| ApiError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_checked() {
        let cmd = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_command(&cmd(&["bash"])).is_ok());
        assert!(check_command(&cmd(&["psql", "postgres://x"])).is_ok());
        for bad in [
            cmd(&[]),
            cmd(&[" "]),
            cmd(&["a\0b"]),
            vec!["x".to_string(); 300],
        ] {
            assert!(check_command(&bad).is_err(), "{bad:?}");
        }
    }
}
