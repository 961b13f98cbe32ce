//! The web dashboard, served by caasd at the root of its API address (`/`; the JSON API stays
//! under `/v1`). Pages are rendered on the server from templates (minijinja) embedded in the
//! binary, with one small pinned front-end library vendored in `static/vendor/` (htmx and its
//! server-sent-events extension) for the live parts: instances, metrics, logs and a running
//! build's output arrive as server-sent events carrying HTML.
//!
//! The dashboard is a client of the API and nothing more: every read and every change goes
//! through [`client::Api`], the API's own router called in-process with the session's token, so
//! it adds no second way to change state. Its own state is the sessions (`session.rs`).
//!
//! - `pages.rs`: the pages (GET): sign-in, apps, an app, a build, hosts.
//! - `actions.rs`: the forms (POST): sign-in and -out, and one handler per API change; each
//!   checks the origin and the session's CSRF token, calls the API, and either redirects back
//!   with what happened or renders the page again with the API's message beside the form.
//! - `settings.rs`: the app page's settings sections (domains and certificates, checks,
//!   autoscaling and alerts) and their forms; `extras.rs`: its add-ons, canary and
//!   notification webhooks sections and their forms; `graphs.rs`: its graphs of the last hour.
//! - `live.rs`: the server-sent event streams.
//! - `view.rs`: templates, filters and the headers every page carries.

mod actions;
mod client;
mod extras;
mod graphs;
mod live;
mod pages;
mod session;
mod settings;
mod view;

use crate::api::auth::ClientAddr;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use client::{Api, As};
use session::{Lookup, Session, Sessions};
use std::sync::Arc;

#[derive(Clone)]
pub struct Dash(Arc<Inner>);

pub struct Inner {
    api: Api,
    sessions: Sessions,
    view: view::View,
}

impl std::ops::Deref for Dash {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The dashboard's routes, calling `api` (the API's router) for everything they show or change.
/// Merged beside the API's routes by `server.rs`.
pub fn router(api: Router) -> Router {
    let dash = Dash(Arc::new(Inner {
        api: Api::new(api),
        sessions: Sessions::default(),
        view: view::View::new(),
    }));
    Router::new()
        .route("/", get(pages::home))
        .route("/login", post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/hosts", get(pages::hosts))
        .route("/apps", post(actions::create_app))
        .route("/apps/{app}", get(pages::app))
        .route("/apps/{app}/destroy", post(actions::destroy))
        .route("/apps/{app}/scale", post(actions::scale))
        .route("/apps/{app}/restart", post(actions::restart))
        .route("/apps/{app}/stop", post(actions::stop))
        .route("/apps/{app}/config", post(actions::config_set))
        .route("/apps/{app}/config/unset", post(actions::config_unset))
        .route("/apps/{app}/config/values", get(pages::config_values))
        .route("/apps/{app}/rollback", post(actions::rollback))
        .route("/apps/{app}/domains", post(settings::domain_add))
        .route("/apps/{app}/domains/remove", post(settings::domain_remove))
        .route("/apps/{app}/routing", post(settings::routing))
        .route("/apps/{app}/autoscale", post(settings::autoscale_set))
        .route("/apps/{app}/autoscale/off", post(settings::autoscale_off))
        .route("/apps/{app}/alerts", post(settings::alerts_set))
        .route("/apps/{app}/alerts/clear", post(settings::alerts_clear))
        .route("/apps/{app}/addons", post(extras::addon_create))
        .route("/apps/{app}/addons/attach", post(extras::addon_attach))
        .route("/apps/{app}/addons/detach", post(extras::addon_detach))
        .route("/apps/{app}/canary/weight", post(extras::canary_weight))
        .route("/apps/{app}/canary/promote", post(extras::canary_promote))
        .route("/apps/{app}/canary/abort", post(extras::canary_abort))
        .route("/apps/{app}/webhooks", post(extras::webhook_add))
        .route("/apps/{app}/webhooks/remove", post(extras::webhook_remove))
        .route("/apps/{app}/live", get(live::app))
        .route("/apps/{app}/logs/live", get(live::logs))
        .route("/apps/{app}/builds/{number}", get(pages::build))
        .route("/apps/{app}/builds/{number}/live", get(live::build))
        .route("/static/{file}", get(view::asset))
        .with_state(dash)
}

/// The browser's address, for the API's audit log and its rate limit on failed sign-ins.
fn client_addr(parts: &Parts) -> Option<ClientAddr> {
    parts.extensions.get::<ClientAddr>().copied()
}

/// A signed-in visitor: their session and how to speak to the API as them. Without a session, a
/// page answers with the sign-in page's address (saying why when the session ran out).
pub struct Signed {
    pub session: Session,
    pub who: As,
    pub https: bool,
}

/// Where a visitor without a session goes.
pub struct SignIn {
    expired: bool,
    /// It ended because the API refused its token.
    refused: bool,
    https: bool,
    /// An event stream or a fragment: answer 401 rather than a page.
    bare: bool,
}

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        let mut resp = if self.bare {
            (StatusCode::UNAUTHORIZED, "sign in again").into_response()
        } else if self.refused {
            Redirect::to("/?expired=token").into_response()
        } else if self.expired {
            Redirect::to("/?expired=1").into_response()
        } else {
            Redirect::to("/").into_response()
        };
        if self.expired {
            resp.headers_mut()
                .insert(header::SET_COOKIE, session::set_cookie(None, self.https));
        }
        resp
    }
}

impl FromRequestParts<Dash> for Signed {
    type Rejection = SignIn;

    async fn from_request_parts(parts: &mut Parts, dash: &Dash) -> Result<Self, SignIn> {
        let https = session::https(&parts.headers);
        let bare = parts.uri.path().ends_with("/live") || parts.uri.path().ends_with("/values");
        match dash.sessions.lookup(&parts.headers) {
            Lookup::Active(session) => Ok(Signed {
                who: As {
                    token: session.token.clone(),
                    addr: client_addr(parts),
                },
                session,
                https,
            }),
            Lookup::Expired => Err(SignIn {
                expired: true,
                refused: false,
                https,
                bare,
            }),
            Lookup::Refused => Err(SignIn {
                expired: true,
                refused: true,
                https,
                bare,
            }),
            Lookup::None => Err(SignIn {
                expired: false,
                refused: false,
                https,
                bare,
            }),
        }
    }
}

/// A change from one of our own pages: a signed-in session, an `Origin` that is ours, and the
/// session's CSRF token in the form's `_csrf` field. Anything else changes nothing.
pub struct Change {
    pub signed: Signed,
    pub form: Vec<(String, String)>,
}

impl Change {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a change was refused before it reached the API.
pub enum Refused {
    SignIn(SignIn),
    Forged(Dash),
    BadForm,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::SignIn(s) => s.into_response(),
            Refused::Forged(dash) => dash.view.message(
                StatusCode::FORBIDDEN,
                "Refused",
                "This request did not come from this dashboard's own pages, so nothing was \
                 changed. Go back to the dashboard and try again from there.",
            ),
            Refused::BadForm => {
                (StatusCode::BAD_REQUEST, "the form does not parse").into_response()
            }
        }
    }
}

/// Forms are small.
const MAX_FORM: usize = 256 * 1024;

impl FromRequest<Dash> for Change {
    type Rejection = Refused;

    async fn from_request(req: Request, dash: &Dash) -> Result<Self, Refused> {
        let (mut parts, body) = req.into_parts();
        if !session::same_origin(&parts.headers) {
            return Err(Refused::Forged(dash.clone()));
        }
        let signed = Signed::from_request_parts(&mut parts, dash)
            .await
            .map_err(Refused::SignIn)?;
        let bytes = axum::body::to_bytes(body, MAX_FORM)
            .await
            .map_err(|_| Refused::BadForm)?;
        let form: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&bytes).map_err(|_| Refused::BadForm)?;
        let csrf = form
            .iter()
            .find(|(k, _)| k == "_csrf")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        if !session::same(csrf, &signed.session.csrf) {
            return Err(Refused::Forged(dash.clone()));
        }
        Ok(Change { signed, form })
    }
}

/// Whether the request came from a browser that asked for the page over HTTPS.
fn is_https(headers: &HeaderMap) -> bool {
    session::https(headers)
}
