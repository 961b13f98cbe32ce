//! Templates (minijinja, HTML auto-escaped, embedded with `include_str!`), the filters they use,
//! the static files, and the headers every page carries.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;
use std::time::{Duration, SystemTime};

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("signin.html", include_str!("templates/signin.html")),
    ("apps.html", include_str!("templates/apps.html")),
    ("app.html", include_str!("templates/app.html")),
    ("build.html", include_str!("templates/build.html")),
    ("hosts.html", include_str!("templates/hosts.html")),
    ("message.html", include_str!("templates/message.html")),
    ("_instances.html", include_str!("templates/_instances.html")),
    ("_metrics.html", include_str!("templates/_metrics.html")),
    ("_graphs.html", include_str!("templates/_graphs.html")),
    ("_settings.html", include_str!("templates/_settings.html")),
    ("_extras.html", include_str!("templates/_extras.html")),
    ("_scale.html", include_str!("templates/_scale.html")),
    ("_releases.html", include_str!("templates/_releases.html")),
    ("_config.html", include_str!("templates/_config.html")),
    ("_log_line.html", include_str!("templates/_log_line.html")),
];

/// The files under `/static/`: (name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!("static/dashboard.css"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("static/dashboard.js"),
    ),
    (
        "htmx-2.0.11.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("static/vendor/htmx-2.0.11.min.js"),
    ),
    (
        "htmx-ext-sse-2.2.4.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("static/vendor/htmx-ext-sse-2.2.4.min.js"),
    ),
];

/// Pages load scripts and styles from this server only; no inline script, no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub struct View {
    env: Environment<'static>,
}

impl View {
    pub fn new() -> Self {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("dashboard template {name}: {e}"));
        }
        env.add_filter("ago", ago);
        env.add_filter("bytes", |n: u64| caas_api::format_bytes(n));
        Self { env }
    }

    /// A template rendered to a string (a page, or a fragment for an event stream).
    pub fn fragment<S: Serialize>(&self, name: &str, ctx: S) -> String {
        match self
            .env
            .get_template(name)
            .and_then(|t| t.render(minijinja::Value::from_serialize(&ctx)))
        {
            Ok(html) => html,
            Err(e) => {
                tracing::error!("rendering {name}: {e:#}");
                "<p class=\"error\" role=\"alert\">This part of the page failed to render; \
                 caasd's log has the details.</p>"
                    .to_string()
            }
        }
    }

    /// A whole page.
    pub fn page<S: Serialize>(&self, status: StatusCode, name: &str, ctx: S) -> Response {
        let html = self.fragment(name, ctx);
        with_headers((status, axum::response::Html(html)).into_response())
    }

    /// A page that only says something (refusals, pages that failed).
    pub fn message(&self, status: StatusCode, title: &str, text: &str) -> Response {
        self.page(
            status,
            "message.html",
            minijinja::context! { title => title, text => text },
        )
    }
}

/// The headers of every dashboard answer: no caching of pages that hold an app's state, no
/// framing, no sniffing, scripts from this server only.
pub fn with_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// `GET /static/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => {
            let mut resp = (
                [
                    (header::CONTENT_TYPE, *content_type),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                *bytes,
            )
                .into_response();
            resp.headers_mut().insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            resp
        }
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// How long ago an RFC 3339 time was, for people: `12s`, `5m`, `3h`, `2d`.
fn ago(value: Option<String>) -> String {
    let Some(t) = value.and_then(|v| humantime::parse_rfc3339_weak(&v).ok()) else {
        return "-".into();
    };
    let secs = SystemTime::now()
        .duration_since(t)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    age(secs)
}

pub fn age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caas_api::Timestamp;

    #[test]
    fn every_template_parses_and_ages_read_well() {
        let v = View::new();
        let html = v.fragment(
            "message.html",
            minijinja::context! { title => "<b>", text => "a & b" },
        );
        assert!(
            html.contains("&lt;b&gt;") && html.contains("a &amp; b"),
            "{html}"
        );
        assert_eq!(age(5), "5s");
        assert_eq!(age(300), "5m");
        assert_eq!(age(7300), "2h");
        assert_eq!(age(200_000), "2d");
        assert_eq!(ago(None), "-");
        assert_eq!(ago(Some(Timestamp::now().to_string())), "0s");
    }
}
