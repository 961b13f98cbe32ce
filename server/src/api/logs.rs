//! `GET /v1/apps/{app}/logs?lines=N&tail=BOOL&source=app,caas&ps=web.1&since=10m`: stored lines,
//! then (with `tail`) live ones, as newline-delimited JSON `LogEvent`s, filtered alike.

use super::auth::{load_app, Access, Caller};
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::logs::LogFilter;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use caas_api::{LogEvent, Timestamp};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};

/// Lines answered when the reader says neither how many nor since when.
const DEFAULT_LINES: usize = 100;
/// The most stored lines one request gets (`--since` without `-n`).
const MAX_LINES: usize = 100_000;

#[derive(Deserialize)]
pub struct LogQuery {
    lines: Option<usize>,
    #[serde(default)]
    tail: bool,
    source: Option<String>,
    ps: Option<String>,
    /// An RFC 3339 time, or a duration back from now (`10m`, `1h`).
    since: Option<String>,
}

fn parse_since(text: &str) -> Result<Timestamp, ApiError> {
    let text = text.trim();
    if let Ok(d) = humantime::parse_duration(text) {
        let now = Timestamp::now();
        return Ok(Timestamp(now.0.saturating_sub(d.as_millis() as u64)));
    }
    humantime::parse_rfc3339_weak(text)
        .map(Timestamp::from)
        .map_err(|_| {
            ApiError::Invalid(format!(
                "invalid since {text:?}: use a duration (10m, 2h) or a time (2026-11-25T07:39:33Z)"
            ))
        })
}

#[utoipa::path(get, path = "/v1/apps/{app}/logs", tag = "logs", operation_id = "logs_stream", params(("app" = String, Path)), responses((status = 200, description = "see docs/api.md"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn stream(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    load_app(&s, &caller, &app, Access::Read)?;
    let since = q.since.as_deref().map(parse_since).transpose()?;
    let filter =
        LogFilter::parse(q.source.as_deref(), q.ps.as_deref(), since).map_err(ApiError::Invalid)?;
    let lines = match (q.lines, since) {
        (Some(n), _) => n.min(MAX_LINES),
        (None, Some(_)) => MAX_LINES,
        (None, None) => DEFAULT_LINES,
    };
    // Reading the stored lines is file I/O: off the async threads.
    let (logs, name, f) = (s.logs.clone(), app.clone(), filter.clone());
    let sub = tokio::task::spawn_blocking(move || logs.subscribe(&name, lines, &f))
        .await
        .map_err(|e| ApiError::Internal(format!("reading logs: {e}")))?;
    let head = stream::iter(
        sub.recent
            .into_iter()
            .map(|l| super::ndjson(&LogEvent::Line(l))),
    );
    let body = if q.tail {
        let counters = s.counters.clone();
        let live = BroadcastStream::new(sub.live).filter_map(move |item| {
            let event = match item {
                Ok(line) if filter.matches(&line) => Some(super::ndjson(&LogEvent::Line(line))),
                Ok(_) => None,
                Err(BroadcastStreamRecvError::Lagged(count)) => {
                    counters.dropped(crate::metrics::Dropped::Reader, count);
                    Some(super::ndjson(&LogEvent::Missed { count }))
                }
            };
            std::future::ready(event)
        });
        // The stream ends when the reader's token is revoked (checked every second).
        let (state, hash) = (s.clone(), caller.token_hash.clone());
        let revoked = async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                if !super::auth::still_valid(&state, &hash) {
                    return;
                }
            }
        };
        Body::from_stream(head.chain(live).take_until(Box::pin(revoked)))
    } else {
        Body::from_stream(head)
    };
    Ok(super::ndjson_response(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_duration_or_a_time() {
        let ten_min_ago = parse_since("10m").unwrap();
        let now = Timestamp::now();
        assert!(now.0 - ten_min_ago.0 >= 600_000 && now.0 - ten_min_ago.0 < 610_000);
        assert_eq!(
            parse_since("2025-11-25T07:39:33.123Z").unwrap(),
            Timestamp(1_764_056_373_123)
        );
        assert!(parse_since("yesterday").is_err());
    }
}
