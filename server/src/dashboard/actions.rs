//! The forms. Each change is one API call as the signed-in user; the dashboard checks nothing
//! the API checks (names, counts, keys), so a refusal reads the same as in the CLI. On success
//! the browser is sent back to the page with a line saying what happened; on a refusal the page
//! is shown again with the API's message beside the form, and nothing has changed.

use super::client::Failure;
use super::pages::{self, app_page, apps_page, LogFilters, Problem};
use super::session;
use super::{Change, Dash};
use axum::extract::{Path, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use caas_api::users::WhoAmI;
use caas_api::{
    App, ConfigChange, ConfigUpdate, CreateApp, Formation, InstancesChanged, InstancesRequest,
    Release, RollbackRequest, ScaleRequest,
};
use std::collections::BTreeMap;

/// Tokens are short; anything longer is not one.
const MAX_TOKEN: usize = 512;

/// `POST /login` `token=...`: checks the token with the API and only then makes a session.
pub async fn login(State(dash): State<Dash>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if !session::same_origin(&parts.headers) {
        return dash.view.message(
            StatusCode::FORBIDDEN,
            "Refused",
            "This sign-in did not come from this dashboard's own page.",
        );
    }
    let https = super::is_https(&parts.headers);
    let form: Vec<(String, String)> = match axum::body::to_bytes(body, super::MAX_FORM)
        .await
        .ok()
        .and_then(|b| serde_urlencoded::from_bytes(&b).ok())
    {
        Some(f) => f,
        None => return (StatusCode::BAD_REQUEST, "the form does not parse").into_response(),
    };
    let token = form
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let refuse = |message: &str, status: StatusCode| {
        let mut resp = pages::signin_with(&dash, None, Some(message.to_string()), status);
        // Whatever session the browser had is not half-kept: it is ended too.
        if let Some(id) = session::cookie(&parts.headers, session::COOKIE) {
            dash.sessions.end(&id);
        }
        resp.headers_mut()
            .insert(header::SET_COOKIE, session::set_cookie(None, https));
        resp
    };
    if token.is_empty() {
        return refuse(
            "Paste a token: caas tokens:create makes one, and the first admin's is the server's \
             DATA_DIR/admin-token.",
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    if token.len() > MAX_TOKEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return refuse(
            "That is not a caas token (they look like caas_ and 64 hex digits).",
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let who = super::client::As {
        token: token.clone(),
        addr: super::client_addr(&parts),
    };
    let me: WhoAmI = match dash.api.get(&who, "/v1/whoami").await {
        Ok(me) => me,
        Err(f) => {
            let message = match f.status {
                StatusCode::UNAUTHORIZED => {
                    "That token does not work: it is wrong, revoked, or its user was removed."
                        .to_string()
                }
                _ => f.message,
            };
            return refuse(&message, f.status);
        }
    };
    // A previous session of this browser ends; the new one replaces it.
    if let Some(id) = session::cookie(&parts.headers, session::COOKIE) {
        dash.sessions.end(&id);
    }
    let s = dash
        .sessions
        .create(token, me.user.name, me.user.admin, me.token.app);
    let mut resp = Redirect::to("/").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session::set_cookie(Some(&s.id), https));
    resp
}

/// `POST /logout`: the session ends whole; the token itself stays valid (revoke it with `caas
/// tokens:revoke`).
pub async fn logout(State(dash): State<Dash>, change: Change) -> Response {
    dash.sessions.end(&change.signed.session.id);
    let mut resp = Redirect::to("/").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session::set_cookie(None, change.signed.https),
    );
    resp
}

/// Back to a page with a line saying what happened.
pub(super) fn done(dash: &Dash, change: &Change, to: &str, message: String) -> Response {
    dash.sessions.set_flash(&change.signed.session.id, message);
    Redirect::to(to).into_response()
}

/// The app page again, with the API's refusal beside the form of `section`.
pub(super) async fn refused(
    dash: &Dash,
    change: &Change,
    app: &str,
    section: &str,
    f: Failure,
) -> Response {
    if f.signs_out() {
        return pages::signed_out(dash, &change.signed);
    }
    let typed: BTreeMap<String, String> = change
        .form
        .iter()
        .filter(|(k, _)| k != "_csrf")
        .cloned()
        .collect();
    let problem = Problem {
        section: section.to_string(),
        message: f.message,
        typed,
    };
    let status = if f.status.is_success() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        f.status
    };
    app_page(
        dash,
        &change.signed,
        app,
        LogFilters::default(),
        Some((status, problem)),
    )
    .await
}

/// A refusal the dashboard makes itself, before calling the API (a confirmation that does not
/// match).
pub(super) fn own(message: impl Into<String>) -> Failure {
    Failure {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message: message.into(),
    }
}

pub(super) fn app_path(app: &str) -> String {
    format!("/apps/{app}")
}

/// `POST /apps` `name=...`.
pub async fn create_app(State(dash): State<Dash>, change: Change) -> Response {
    let name = change.field("name").unwrap_or("").trim().to_string();
    let req = CreateApp { name: name.clone() };
    match dash
        .api
        .call::<_, App>(&change.signed.who, Method::POST, "/v1/apps", &req)
        .await
    {
        Ok(app) => {
            let to = app_path(&app.name);
            done(
                &dash,
                &change,
                &to,
                format!("Created {} at {}", app.name, app.url),
            )
        }
        Err(f) if f.signs_out() => pages::signed_out(&dash, &change.signed),
        Err(f) => apps_page(&dash, &change.signed, Some((f.message, name)), f.status).await,
    }
}

/// `POST /apps/{app}/destroy` `confirm=NAME`.
pub async fn destroy(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    let confirm = change.field("confirm").unwrap_or("").trim();
    if confirm != app {
        let f = own(format!(
            "Type the app's name, {app}, to confirm; nothing was destroyed."
        ));
        return refused(&dash, &change, &app, "destroy", f).await;
    }
    match dash
        .api
        .delete(&change.signed.who, &format!("/v1/apps/{app}"))
        .await
    {
        Ok(()) => done(&dash, &change, "/", format!("Destroyed {app}")),
        Err(f) => refused(&dash, &change, &app, "destroy", f).await,
    }
}

/// `POST /apps/{app}/scale` `TYPE=N ...`: the counts as typed, whole numbers or not (the API
/// says what is wrong with them).
pub async fn scale(State(dash): State<Dash>, Path(app): Path<String>, change: Change) -> Response {
    let mut quantities = BTreeMap::new();
    for (k, v) in &change.form {
        let Some(process) = k.strip_prefix("qty.") else {
            continue;
        };
        let v = v.trim();
        match v.parse::<i64>() {
            Ok(n) => {
                quantities.insert(process.to_string(), n);
            }
            Err(_) => {
                let f = own(format!(
                    "invalid count {v:?} for {process}: use a whole number"
                ));
                return refused(&dash, &change, &app, "scale", f).await;
            }
        }
    }
    match dash
        .api
        .call::<_, Formation>(
            &change.signed.who,
            Method::PATCH,
            &format!("/v1/apps/{app}/formation"),
            &ScaleRequest { quantities },
        )
        .await
    {
        Ok(f) => {
            let summary: Vec<String> = f
                .quantities
                .iter()
                .map(|(p, n)| format!("{p}={n}"))
                .collect();
            done(
                &dash,
                &change,
                &app_path(&app),
                format!("Scaled {app} to {}", summary.join(" ")),
            )
        }
        Err(f) => refused(&dash, &change, &app, "scale", f).await,
    }
}

async fn instances(dash: Dash, app: String, change: Change, what: &str) -> Response {
    let target = change
        .field("target")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    match dash
        .api
        .call::<_, InstancesChanged>(
            &change.signed.who,
            Method::POST,
            &format!("/v1/apps/{app}/ps/{what}"),
            &InstancesRequest { target },
        )
        .await
    {
        Ok(c) => {
            let verb = if what == "stop" {
                "Stopping"
            } else {
                "Restarting"
            };
            done(
                &dash,
                &change,
                &app_path(&app),
                format!("{verb} {}", c.instances.join(", ")),
            )
        }
        Err(f) => refused(&dash, &change, &app, "instances", f).await,
    }
}

/// `POST /apps/{app}/restart` `target=web|web.1|` (empty: every instance).
pub async fn restart(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    instances(dash, app, change, "restart").await
}

/// `POST /apps/{app}/stop` `target=web.1`.
pub async fn stop(State(dash): State<Dash>, Path(app): Path<String>, change: Change) -> Response {
    instances(dash, app, change, "stop").await
}

async fn config(
    dash: &Dash,
    app: &str,
    change: &Change,
    vars: BTreeMap<String, Option<String>>,
) -> Response {
    match dash
        .api
        .call::<_, ConfigChange>(
            &change.signed.who,
            Method::PATCH,
            &format!("/v1/apps/{app}/config"),
            &ConfigUpdate { vars: vars.clone() },
        )
        .await
    {
        Ok(c) => {
            let keys: Vec<&str> = vars.keys().map(String::as_str).collect();
            let what = if vars.values().all(Option::is_some) {
                "Set"
            } else {
                "Unset"
            };
            let message = match (c.changed, c.release) {
                (false, _) => format!("No change: {} already as asked", keys.join(", ")),
                (true, Some(v)) => format!("{what} {}; deploying v{v}", keys.join(", ")),
                (true, None) => format!("{what} {}", keys.join(", ")),
            };
            done(dash, change, &app_path(app), message)
        }
        Err(f) => refused(dash, change, app, "config", f).await,
    }
}

/// `POST /apps/{app}/config` `key=K&value=V`.
pub async fn config_set(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    let key = change.field("key").unwrap_or("").trim().to_string();
    // Browsers send line breaks in a textarea as CRLF; a value keeps the user's LF.
    let value = change.field("value").unwrap_or("").replace("\r\n", "\n");
    config(&dash, &app, &change, BTreeMap::from([(key, Some(value))])).await
}

/// `POST /apps/{app}/config/unset` `key=K`.
pub async fn config_unset(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    let key = change.field("key").unwrap_or("").trim().to_string();
    config(&dash, &app, &change, BTreeMap::from([(key, None)])).await
}

/// `POST /apps/{app}/rollback` `version=N` (empty: the release before the serving one).
pub async fn rollback(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    let version = match change
        .field("version")
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        None => None,
        Some(v) => match v.trim_start_matches('v').parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                let f = own(format!("invalid release {v:?}: use a number such as 3"));
                return refused(&dash, &change, &app, "releases", f).await;
            }
        },
    };
    match dash
        .api
        .call::<_, Release>(
            &change.signed.who,
            Method::POST,
            &format!("/v1/apps/{app}/rollback"),
            &RollbackRequest { version },
        )
        .await
    {
        Ok(r) => done(
            &dash,
            &change,
            &app_path(&app),
            format!("{}: deploying v{}", r.description, r.version),
        ),
        Err(f) => refused(&dash, &change, &app, "releases", f).await,
    }
}
