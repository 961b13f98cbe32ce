//! `GET /v1/apps/{app}/logs?lines=N&tail=BOOL`: recent lines, then (with `tail`) live ones, as
//! newline-delimited JSON `LogEvent`s.

use super::apps::load_app;
use super::auth::Admin;
use super::error::ApiResult;
use super::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use caas_api::LogEvent;
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};

#[derive(Deserialize)]
pub struct LogQuery {
    #[serde(default = "default_lines")]
    lines: usize,
    #[serde(default)]
    tail: bool,
}

fn default_lines() -> usize {
    100
}

pub async fn stream(
    _: Admin,
    State(s): State<AppState>,
    Path(app): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    load_app(&s, &app)?;
    let (recent, rx) = s.logs.subscribe(&app, q.lines);
    let head = stream::iter(
        recent
            .into_iter()
            .map(|l| super::ndjson(&LogEvent::Line(l))),
    );
    let body = if q.tail {
        let live = BroadcastStream::new(rx).map(|item| match item {
            Ok(line) => super::ndjson(&LogEvent::Line(line)),
            Err(BroadcastStreamRecvError::Lagged(count)) => {
                super::ndjson(&LogEvent::Missed { count })
            }
        });
        Body::from_stream(head.chain(live))
    } else {
        Body::from_stream(head)
    };
    Ok(super::ndjson_response(body))
}
