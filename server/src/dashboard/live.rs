//! The live parts of the pages, as server-sent events carrying HTML that htmx's SSE extension
//! swaps in: an app's instances and metrics (read from the API every second, sent when they
//! change), its releases and scale form (sent when a release or the formation changes, so a
//! deploy or a scale from the CLI shows without a reload), its log (the API's `logs?tail=true` stream, one event per line) and a running
//! build's output (`output?follow=true`). A stream ends when the browser goes away, when the
//! session ends, and when the API ends it (a revoked token ends the API's own streams).

use super::client::{As, Failure};
use super::pages::{instances_view, process_types, LogFilters, RELEASES_SHOWN};
use super::{Dash, Signed};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use caas_api::{Formation, LogEvent, Release};
use futures_util::StreamExt;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const POLL: Duration = Duration::from_secs(1);
const METRICS_EVERY: u32 = 5;

/// Text as a page may show it: control characters other than line breaks and tabs removed (an
/// app's output is untrusted; HTML escaping is the templates').
pub fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

type Tx = mpsc::Sender<Result<Event, Infallible>>;

fn sse(rx: mpsc::Receiver<Result<Event, Infallible>>) -> Response {
    let mut resp = Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(5)))
        .into_response();
    resp.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    resp
}

async fn send(tx: &Tx, name: &str, html: String) -> bool {
    tx.send(Ok(Event::default().event(name).data(html)))
        .await
        .is_ok()
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, "sign in again").into_response()
}

/// Ends the session when the API no longer takes its token; whether the stream may go on.
fn still_signed(dash: &Dash, session: &str, f: Option<&Failure>) -> bool {
    if f.is_some_and(Failure::signs_out) {
        dash.sessions.refuse(session);
    }
    dash.sessions.active(session)
}

/// `GET /apps/{app}/live`: `instances` and `metrics` events.
pub async fn app(State(dash): State<Dash>, signed: Signed, Path(app): Path<String>) -> Response {
    if caas_api::validate_app_name(&app).is_err() {
        return (StatusCode::NOT_FOUND, "no such app").into_response();
    }
    let (tx, rx) = mpsc::channel(16);
    let manage = signed.session.scope.is_none();
    tokio::spawn(async move {
        let Signed { session, who, .. } = signed;
        let mut last_instances = String::new();
        let mut last_metrics = String::new();
        let mut releases_and_formation = None;
        let mut tick = tokio::time::interval(POLL);
        let mut n: u32 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tx.closed() => return,
            }
            match instances_view(&dash, &who, &app, &session.csrf, manage).await {
                Ok(view) => {
                    let html = dash.view.fragment("_instances.html", &view);
                    if html != last_instances {
                        if !send(&tx, "instances", html.clone()).await {
                            return;
                        }
                        last_instances = html;
                    }
                }
                Err(f) => {
                    if !still_signed(&dash, &session.id, Some(&f))
                        || f.status == StatusCode::NOT_FOUND
                    {
                        return;
                    }
                }
            }
            if n.is_multiple_of(METRICS_EVERY) {
                if let (Some(m), graphs) = super::graphs::load(&dash, &who, &app).await {
                    let html = dash.view.fragment(
                        "_metrics.html",
                        minijinja::context! { metrics => m, graphs => graphs },
                    );
                    if html != last_metrics {
                        if !send(&tx, "metrics", html.clone()).await {
                            return;
                        }
                        last_metrics = html;
                    }
                }
            }
            if !send_releases_and_formation(
                &dash,
                &tx,
                &who,
                &app,
                manage,
                &session.csrf,
                &mut releases_and_formation,
            )
            .await
            {
                return;
            }
            n = n.wrapping_add(1);
            if !still_signed(&dash, &session.id, None) {
                return;
            }
        }
    });
    sse(rx)
}

/// What the releases table and the scale form depend on, but for the passing of time: they are
/// sent again only when this changes (their ages would change them every second, and a form
/// replaced while someone types in it loses what they typed).
#[derive(PartialEq)]
struct ReleasesKey {
    releases: Vec<(u64, String, bool)>,
    formation: Option<std::collections::BTreeMap<String, u32>>,
}

/// Sends the `releases` and `formation` events when what they show changed since `last`. The
/// first time only notes it: the page was rendered with the same a moment ago. Whether the
/// stream may go on.
async fn send_releases_and_formation(
    dash: &Dash,
    tx: &Tx,
    who: &As,
    app: &str,
    manage: bool,
    csrf: &str,
    last: &mut Option<ReleasesKey>,
) -> bool {
    let (Ok(releases), formation) = (
        dash.api
            .get::<Vec<Release>>(who, &format!("/v1/apps/{app}/releases"))
            .await,
        dash.api
            .get::<Formation>(who, &format!("/v1/apps/{app}/formation"))
            .await
            .ok(),
    ) else {
        return true;
    };
    let releases: Vec<Release> = releases.into_iter().take(RELEASES_SHOWN).collect();
    let key = ReleasesKey {
        releases: releases
            .iter()
            .map(|r| (r.version, format!("{:?}", r.status), r.current))
            .collect(),
        formation: formation.as_ref().map(|f| f.quantities.clone()),
    };
    let Some(before) = last.replace(key) else {
        return true;
    };
    let now = last.as_ref().expect("just set");
    let ctx = minijinja::context! {
        app => minijinja::context! { name => app },
        me => minijinja::context! { csrf => csrf },
        manage => manage,
        types => process_types(&releases, formation.as_ref()),
        formation => formation,
        releases => releases,
    };
    if before.releases != now.releases
        && !send(tx, "releases", dash.view.fragment("_releases.html", &ctx)).await
    {
        return false;
    }
    if manage
        && before.formation != now.formation
        && !send(tx, "formation", dash.view.fragment("_scale.html", &ctx)).await
    {
        return false;
    }
    true
}

/// Follows an API stream line by line, calling `each` with every line until it says stop, the
/// stream ends, or the session does.
async fn follow_lines<F, Fut>(dash: &Dash, session: &str, body: Body, tx: &Tx, mut each: F)
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut check = tokio::time::interval(POLL);
    loop {
        let chunk = tokio::select! {
            c = stream.next() => c,
            _ = tx.closed() => return,
            _ = check.tick() => {
                if !dash.sessions.active(session) {
                    return;
                }
                continue;
            }
        };
        let Some(Ok(chunk)) = chunk else {
            if !buf.is_empty() {
                each(String::from_utf8_lossy(&buf).into_owned()).await;
            }
            return;
        };
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if !each(line).await {
                return;
            }
        }
    }
}

/// `GET /apps/{app}/logs/live?source=app&ps=web.1`: one `log` event per line, the last 100
/// first.
pub async fn logs(
    State(dash): State<Dash>,
    signed: Signed,
    Path(app): Path<String>,
    uri: axum::http::Uri,
) -> Response {
    if caas_api::validate_app_name(&app).is_err() {
        return (StatusCode::NOT_FOUND, "no such app").into_response();
    }
    let filters = LogFilters::parse(uri.query());
    let path = format!("/v1/apps/{app}/logs?{}", filters.api_query(100, true));
    let body = match dash.api.stream(&signed.who, &path).await {
        Ok(b) => b,
        Err(f) => {
            if !still_signed(&dash, &signed.session.id, Some(&f)) {
                return unauthorized();
            }
            return (f.status, f.message).into_response();
        }
    };
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        let session = signed.session.id.clone();
        let tx2 = tx.clone();
        let view = dash.clone();
        follow_lines(&dash, &session, body, &tx, move |line| {
            let tx = tx2.clone();
            let view = view.clone();
            async move {
                let html = match serde_json::from_str::<LogEvent>(&line) {
                    Ok(LogEvent::Line(l)) => view.view.fragment(
                        "_log_line.html",
                        minijinja::context! {
                            ts => l.ts.to_string(),
                            source => l.source.as_str(),
                            tag => printable(&l.tag),
                            text => printable(&l.text),
                        },
                    ),
                    Ok(LogEvent::Missed { count }) => view
                        .view
                        .fragment("_log_line.html", minijinja::context! { missed => count }),
                    Err(_) => return true,
                };
                send(&tx, "log", html).await
            }
        })
        .await;
    });
    sse(rx)
}

/// `GET /apps/{app}/builds/{n}/live`: the build's output from its start as `output` events (one
/// per line), then `done`.
pub async fn build(
    State(dash): State<Dash>,
    signed: Signed,
    Path((app, number)): Path<(String, u64)>,
) -> Response {
    if caas_api::validate_app_name(&app).is_err() {
        return (StatusCode::NOT_FOUND, "no such app").into_response();
    }
    let who: As = signed.who.clone();
    let path = format!("/v1/apps/{app}/builds/{number}/output?follow=true");
    let body = match dash.api.stream(&who, &path).await {
        Ok(b) => b,
        Err(f) => {
            if !still_signed(&dash, &signed.session.id, Some(&f)) {
                return unauthorized();
            }
            return (f.status, f.message).into_response();
        }
    };
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        let session = signed.session.id.clone();
        let tx2 = tx.clone();
        follow_lines(&dash, &session, body, &tx, move |line| {
            let tx = tx2.clone();
            async move {
                let html = format!("{}\n", minijinja::HtmlEscape(&printable(&line)));
                send(&tx, "output", html).await
            }
        })
        .await;
        let _ = send(
            &tx,
            "done",
            "<p role=\"status\">The build has ended. <a href=\"\">Reload</a> for its result.</p>"
                .to_string(),
        )
        .await;
    });
    sse(rx)
}
