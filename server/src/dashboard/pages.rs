//! The pages. Each gathers what it shows from the API as the signed-in user and renders it; what
//! the API refuses is said in the page.

use super::client::{As, Failure};
use super::session::{self, Lookup};
use super::{view, Dash, Signed};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use caas_api::{App, Build, Formation, Host, Instance, InstanceState, LogSource, Release};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What every page's frame shows: who is signed in, and the token changes carry.
#[derive(Serialize)]
pub struct Me {
    pub user: String,
    pub admin: bool,
    pub scope: Option<String>,
    pub csrf: String,
    pub flash: Option<String>,
}

impl Me {
    pub fn of(dash: &Dash, signed: &Signed) -> Self {
        let s = &signed.session;
        Me {
            user: s.user.clone(),
            admin: s.admin,
            scope: s.scope.clone(),
            csrf: s.csrf.clone(),
            flash: dash.sessions.take_flash(&s.id),
        }
    }
}

/// Ends the session when the API no longer takes its token, and says so on the sign-in page.
pub fn signed_out(dash: &Dash, signed: &Signed) -> Response {
    dash.sessions.end(&signed.session.id);
    let mut resp = Redirect::to("/?expired=token").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session::set_cookie(None, signed.https));
    resp
}

/// The page for a failure that stops a whole page: a refused token signs out, a missing app is
/// a 404 page, anything else is said as it is.
pub fn failed(dash: &Dash, signed: &Signed, f: Failure) -> Response {
    if f.signs_out() {
        return signed_out(dash, signed);
    }
    let title = if f.status == StatusCode::NOT_FOUND {
        "Not found"
    } else {
        "Something went wrong"
    };
    // Still signed in: the page keeps its header (who, sign out).
    dash.view.page(
        f.status,
        "message.html",
        minijinja::context! { title => title, text => f.message, me => Me::of(dash, signed) },
    )
}

#[derive(Deserialize)]
pub struct HomeQuery {
    expired: Option<String>,
}

/// `GET /`: the apps, or the sign-in page.
pub async fn home(
    State(dash): State<Dash>,
    Query(q): Query<HomeQuery>,
    parts: axum::http::request::Parts,
) -> Response {
    match dash.sessions.lookup(&parts.headers) {
        Lookup::Active(session) => {
            let signed = Signed {
                who: As {
                    token: session.token.clone(),
                    addr: super::client_addr(&parts),
                },
                https: super::is_https(&parts.headers),
                session,
            };
            apps_page(&dash, &signed, None, StatusCode::OK).await
        }
        lookup @ (Lookup::Expired | Lookup::Refused) => {
            let why = match lookup {
                Lookup::Refused => Some("token"),
                _ => q.expired.as_deref(),
            };
            let mut resp = signin_page(&dash, Some(expired_message(why)), StatusCode::OK);
            resp.headers_mut().insert(
                header::SET_COOKIE,
                session::set_cookie(None, super::is_https(&parts.headers)),
            );
            resp
        }
        Lookup::None => {
            let notice = q.expired.as_deref().map(|e| expired_message(Some(e)));
            signin_page(&dash, notice, StatusCode::OK)
        }
    }
}

fn expired_message(why: Option<&str>) -> String {
    match why {
        Some("token") => {
            "Your token no longer works (it was revoked, it expired, or its user was removed). \
             Sign in again with a valid token."
        }
        _ => "Your session has expired. Sign in again.",
    }
    .to_string()
}

pub fn signin_page(dash: &Dash, notice: Option<String>, status: StatusCode) -> Response {
    signin_with(dash, notice, None, status)
}

pub fn signin_with(
    dash: &Dash,
    notice: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    dash.view.page(
        status,
        "signin.html",
        minijinja::context! { notice => notice, error => error },
    )
}

/// One app in the list.
#[derive(Serialize)]
struct AppRow {
    app: App,
    counts: Vec<(String, usize)>,
    last_deploy: Option<String>,
    last_deploy_version: Option<u64>,
}

/// The count of instances in each state, in the order states are listed.
pub fn counts(instances: &[Instance]) -> Vec<(String, usize)> {
    let order = [
        InstanceState::Up,
        InstanceState::Starting,
        InstanceState::Pending,
        InstanceState::Unhealthy,
        InstanceState::Crashed,
        InstanceState::Draining,
        InstanceState::Lost,
    ];
    order
        .iter()
        .filter_map(|s| {
            let n = instances.iter().filter(|i| i.state == *s).count();
            (n > 0).then(|| (s.as_str().to_string(), n))
        })
        .collect()
}

/// `GET /` signed in, and the page a failed create shows again.
pub async fn apps_page(
    dash: &Dash,
    signed: &Signed,
    error: Option<(String, String)>,
    status: StatusCode,
) -> Response {
    let apps: Vec<App> = match dash.api.get(&signed.who, "/v1/apps").await {
        Ok(a) => a,
        Err(f) => return failed(dash, signed, f),
    };
    let mut rows = Vec::new();
    for app in apps {
        let ps: Vec<Instance> = dash
            .api
            .get(&signed.who, &format!("/v1/apps/{}/ps", app.name))
            .await
            .unwrap_or_default();
        let releases: Vec<Release> = dash
            .api
            .get(&signed.who, &format!("/v1/apps/{}/releases", app.name))
            .await
            .unwrap_or_default();
        let last = releases.first();
        rows.push(AppRow {
            counts: counts(&ps),
            last_deploy: last.map(|r| r.created_at.to_string()),
            last_deploy_version: last.map(|r| r.version),
            app,
        });
    }
    let (error, typed) = match error {
        Some((e, typed)) => (Some(e), Some(typed)),
        None => (None, None),
    };
    dash.view.page(
        status,
        "apps.html",
        minijinja::context! {
            me => Me::of(dash, signed),
            apps => rows,
            error => error,
            typed => typed,
            title => "Apps",
        },
    )
}

/// `GET /hosts` (admins; others get the API's refusal in the page).
pub async fn hosts(State(dash): State<Dash>, signed: Signed) -> Response {
    let (hosts, error) = match dash.api.get::<Vec<Host>>(&signed.who, "/v1/hosts").await {
        Ok(h) => (h, None),
        Err(f) if f.signs_out() => return signed_out(&dash, &signed),
        Err(f) => (Vec::new(), Some(f.message)),
    };
    let status = if error.is_some() {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::OK
    };
    dash.view.page(
        status,
        "hosts.html",
        minijinja::context! {
            me => Me::of(&dash, &signed), hosts => hosts, error => error, title => "Hosts",
        },
    )
}

/// The log filters of the app page, as the address has them.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct LogFilters {
    #[serde(default)]
    pub source: Vec<String>,
    #[serde(default)]
    pub ps: String,
}

impl LogFilters {
    /// From the page's query string (`?source=app&source=caas&ps=web.1`).
    pub fn parse(query: Option<&str>) -> Self {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query.unwrap_or("")).unwrap_or_default();
        let mut f = LogFilters::default();
        for (k, v) in pairs {
            match k.as_str() {
                "source" if !v.is_empty() => f.source.push(v),
                "ps" => f.ps = v.trim().to_string(),
                _ => {}
            }
        }
        f
    }

    /// The API's query for these filters.
    pub fn api_query(&self, lines: usize, tail: bool) -> String {
        let mut q: Vec<(&str, String)> = vec![("lines", lines.to_string())];
        if tail {
            q.push(("tail", "true".into()));
        }
        if !self.source.is_empty() {
            q.push(("source", self.source.join(",")));
        }
        if !self.ps.is_empty() {
            q.push(("ps", self.ps.clone()));
        }
        serde_urlencoded::to_string(q).unwrap_or_default()
    }

    /// The dashboard's own query for them (the live stream's address).
    pub fn page_query(&self) -> String {
        let mut q: Vec<(&str, &str)> = self.source.iter().map(|s| ("source", s.as_str())).collect();
        if !self.ps.is_empty() {
            q.push(("ps", &self.ps));
        }
        serde_urlencoded::to_string(q).unwrap_or_default()
    }
}

/// What a failed change leaves on the app page: which section's form, what the API said, and
/// what was typed (so it need not be typed again).
#[derive(Default, Serialize)]
pub struct Problem {
    pub section: String,
    pub message: String,
    pub typed: BTreeMap<String, String>,
}

/// The instances part of the app page (also what the live stream sends).
#[derive(Serialize)]
pub struct InstancesView {
    pub app: App,
    pub instances: Vec<Instance>,
    pub counts: Vec<(String, usize)>,
    pub csrf: String,
    pub manage: bool,
}

pub async fn instances_view(
    dash: &Dash,
    who: &As,
    app: &str,
    csrf: &str,
    manage: bool,
) -> Result<InstancesView, Failure> {
    let app_rec: App = dash.api.get(who, &format!("/v1/apps/{app}")).await?;
    let instances: Vec<Instance> = dash.api.get(who, &format!("/v1/apps/{app}/ps")).await?;
    Ok(InstancesView {
        counts: counts(&instances),
        app: app_rec,
        instances,
        csrf: csrf.to_string(),
        manage,
    })
}

/// What the scale form offers: the process types the newest release defines, and any other the
/// formation has.
pub fn process_types(releases: &[Release], formation: Option<&Formation>) -> Vec<String> {
    let mut types: Vec<String> = releases
        .first()
        .map(|r| r.process_types.keys().cloned().collect())
        .unwrap_or_else(|| vec![caas_api::WEB.to_string()]);
    for t in formation.iter().flat_map(|f| f.quantities.keys()) {
        if !types.contains(t) {
            types.push(t.clone());
        }
    }
    types
}

/// Releases the app page lists.
pub const RELEASES_SHOWN: usize = 30;

/// `GET /apps/{app}`.
pub async fn app(
    State(dash): State<Dash>,
    signed: Signed,
    Path(app): Path<String>,
    uri: axum::http::Uri,
) -> Response {
    let filters = LogFilters::parse(uri.query());
    app_page(&dash, &signed, &app, filters, None).await
}

/// The app page, with the problem a failed change left, if any.
pub async fn app_page(
    dash: &Dash,
    signed: &Signed,
    app: &str,
    filters: LogFilters,
    problem: Option<(StatusCode, Problem)>,
) -> Response {
    if caas_api::validate_app_name(app).is_err() {
        return dash.view.message(
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("no app named {app:?}"),
        );
    }
    let who = &signed.who;
    let manage = signed.session.scope.is_none();
    let instances = match instances_view(dash, who, app, &signed.session.csrf, manage).await {
        Ok(v) => v,
        Err(f) => return failed(dash, signed, f),
    };
    let formation: Option<Formation> = dash
        .api
        .get(who, &format!("/v1/apps/{app}/formation"))
        .await
        .ok();
    let releases: Vec<Release> = dash
        .api
        .get(who, &format!("/v1/apps/{app}/releases"))
        .await
        .unwrap_or_default();
    let builds: Vec<Build> = dash
        .api
        .get(who, &format!("/v1/apps/{app}/builds"))
        .await
        .unwrap_or_default();
    // An app-scoped token may not read config: the section says so.
    let config: Result<BTreeMap<String, String>, Failure> =
        dash.api.get(who, &format!("/v1/apps/{app}/config")).await;
    let (config_keys, config_error) = match config {
        Ok(c) => (c.into_keys().collect::<Vec<_>>(), None),
        Err(f) => (Vec::new(), Some(f.message)),
    };
    let (metrics, graphs) = super::graphs::load(dash, who, app).await;
    let settings = super::settings::Settings::load(dash, who, app).await;
    let extras = super::extras::Extras::load(dash, who, app).await;
    let types = process_types(&releases, formation.as_ref());
    // The filters are checked by the API before the page connects to the live stream.
    let log_error = match dash
        .api
        .stream(
            who,
            &format!("/v1/apps/{app}/logs?{}", filters.api_query(0, false)),
        )
        .await
    {
        Ok(_) => None,
        Err(f) => Some(f.message),
    };
    let sources: Vec<&str> = [
        LogSource::App,
        LogSource::Caas,
        LogSource::Router,
        LogSource::Build,
    ]
    .iter()
    .map(|s| s.as_str())
    .collect();
    let (status, problem) = match problem {
        Some((s, p)) => (s, Some(p)),
        None => (StatusCode::OK, None),
    };
    dash.view.page(
        status,
        "app.html",
        minijinja::context! {
            me => Me::of(dash, signed),
            title => app,
            app => instances.app.clone(),
            instances => instances,
            formation => formation,
            types => types,
            releases => releases.into_iter().take(RELEASES_SHOWN).collect::<Vec<_>>(),
            builds => builds.into_iter().take(15).collect::<Vec<_>>(),
            config_keys => config_keys,
            config_error => config_error,
            metrics => metrics,
            graphs => graphs,
            settings => settings,
            extras => extras,
            filters => filters.clone(),
            live_query => filters.page_query(),
            log_error => log_error,
            sources => sources,
            problem => problem,
            manage => manage,
        },
    )
}

/// `GET /apps/{app}/config/values`: the config section with the values shown (the "Reveal"
/// button fetches it; values are not in the page before).
pub async fn config_values(
    State(dash): State<Dash>,
    signed: Signed,
    Path(app): Path<String>,
) -> Response {
    if caas_api::validate_app_name(&app).is_err() {
        return (StatusCode::NOT_FOUND, "no such app").into_response();
    }
    match dash
        .api
        .get::<BTreeMap<String, String>>(&signed.who, &format!("/v1/apps/{app}/config"))
        .await
    {
        Ok(config) => view::with_headers(
            axum::response::Html(dash.view.fragment(
                "_config.html",
                minijinja::context! {
                    app_name => app, config => config, revealed => true,
                    me => minijinja::context! { csrf => signed.session.csrf.clone() },
                    manage => signed.session.scope.is_none(),
                },
            ))
            .into_response(),
        ),
        Err(f) if f.signs_out() => {
            dash.sessions.refuse(&signed.session.id);
            (StatusCode::UNAUTHORIZED, "sign in again").into_response()
        }
        Err(f) => (
            f.status,
            axum::response::Html(format!(
                "<p class=\"error\" role=\"alert\">{}</p>",
                minijinja::HtmlEscape(&f.message)
            )),
        )
            .into_response(),
    }
}

/// `GET /apps/{app}/builds/{number}`: a build and its output; a running build's output streams.
pub async fn build(
    State(dash): State<Dash>,
    signed: Signed,
    Path((app, number)): Path<(String, u64)>,
) -> Response {
    if caas_api::validate_app_name(&app).is_err() {
        return dash
            .view
            .message(StatusCode::NOT_FOUND, "Not found", "no such app");
    }
    let b: Build = match dash
        .api
        .get(&signed.who, &format!("/v1/apps/{app}/builds/{number}"))
        .await
    {
        Ok(b) => b,
        Err(f) => return failed(&dash, &signed, f),
    };
    let running = matches!(
        b.status,
        caas_api::BuildStatus::Queued | caas_api::BuildStatus::Running
    );
    let output = if running {
        String::new()
    } else {
        match dash
            .api
            .text(
                &signed.who,
                &format!("/v1/apps/{app}/builds/{number}/output"),
            )
            .await
        {
            Ok(t) => t,
            Err(f) => return failed(&dash, &signed, f),
        }
    };
    dash.view.page(
        StatusCode::OK,
        "build.html",
        minijinja::context! {
            me => Me::of(&dash, &signed),
            title => format!("{app} build {number}"),
            app => app,
            build => b,
            running => running,
            output => crate::dashboard::live::printable(&output),
        },
    )
}
