//! The app page's sections for what add-ons, canaries and webhooks bring to an app: its add-ons
//! (create one, attach one the user already has, detach), a running canary (its weight and both
//! releases' figures; change the weight, promote, abort) and its notification webhooks with
//! their recent deliveries (add, remove). Read with [`Extras::load`]; each form is one call of
//! the API the CLI makes (`addons:*`, `releases:canary:set|promote|abort`, `webhooks:*`).

use super::actions::{app_path, done, own, refused};
use super::client::As;
use super::{Change, Dash};
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use caas_api::addons::{Addon, AddonAttach, AddonChange, AddonCreate};
use caas_api::canary::{Canary, CanaryStatus, CanaryWeight};
use caas_api::hooks::{AddNotifyHook, NotifyHook, NOTIFY_EVENTS};
use caas_api::Release;
use serde::Serialize;

#[derive(Serialize, Default)]
pub struct Extras {
    /// The add-ons attached to the app.
    pub addons: Vec<Addon>,
    /// The add-ons the user sees that are not attached to it (to attach).
    pub attachable: Vec<String>,
    /// `None`: no canary runs (the API answers 404).
    pub canary: Option<CanaryStatus>,
    pub webhooks: Vec<NotifyHook>,
    pub events: Vec<&'static str>,
}

impl Extras {
    pub async fn load(dash: &Dash, who: &As, app: &str) -> Self {
        let api = &dash.api;
        let addons: Vec<Addon> = api
            .get(who, &format!("/v1/addons?app={app}"))
            .await
            .unwrap_or_default();
        let all: Vec<Addon> = api.get(who, "/v1/addons").await.unwrap_or_default();
        let attachable = all
            .into_iter()
            .filter(|a| !addons.iter().any(|b| b.name == a.name))
            .map(|a| a.name)
            .collect();
        Extras {
            addons,
            attachable,
            canary: api.get(who, &format!("/v1/apps/{app}/canary")).await.ok(),
            webhooks: api
                .get(who, &format!("/v1/apps/{app}/webhooks"))
                .await
                .unwrap_or_default(),
            events: NOTIFY_EVENTS.to_vec(),
        }
    }
}

/// A form field, trimmed; `None` when empty.
fn field<'a>(change: &'a Change, name: &str) -> Option<&'a str> {
    change.field(name).map(str::trim).filter(|v| !v.is_empty())
}

/// What an add-on change did, in one line: the var each app got and the release it made.
fn addon_done(verb: &str, c: &AddonChange) -> String {
    let vars: Vec<String> = c
        .releases
        .iter()
        .map(|r| match r.release {
            Some(v) => format!("{} (v{v} deploying)", r.var),
            None => r.var.clone(),
        })
        .collect();
    if vars.is_empty() {
        format!("{verb} {}", c.addon.name)
    } else {
        format!("{verb} {} as {}", c.addon.name, vars.join(", "))
    }
}

/// `POST /apps/{app}/addons` `kind=redis&name=&as=&url=`.
pub async fn addon_create(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    let create = AddonCreate {
        kind: field(&change, "kind").unwrap_or("").to_string(),
        app: app.clone(),
        name: field(&change, "name").map(str::to_string),
        as_name: field(&change, "as").map(str::to_string),
        url: field(&change, "url").map(str::to_string),
    };
    let who = &change.signed.who;
    match dash
        .api
        .call::<_, AddonChange>(who, Method::POST, "/v1/addons", &create)
        .await
    {
        Ok(c) => done(&dash, &change, &app_path(&app), addon_done("Created", &c)),
        Err(f) => refused(&dash, &change, &app, "addons", f).await,
    }
}

/// `POST /apps/{app}/addons/attach` `name=...&as=`.
pub async fn addon_attach(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    let Some(name) = field(&change, "name").map(str::to_string) else {
        let f = own("Choose an add-on to attach.");
        return refused(&dash, &change, &app, "addons", f).await;
    };
    let attach = AddonAttach {
        app: app.clone(),
        as_name: field(&change, "as").map(str::to_string),
    };
    let path = format!("/v1/addons/{}/attachments", caas_api::path_segment(&name));
    match dash
        .api
        .call::<_, AddonChange>(&change.signed.who, Method::POST, &path, &attach)
        .await
    {
        Ok(c) => done(&dash, &change, &app_path(&app), addon_done("Attached", &c)),
        Err(f) => refused(&dash, &change, &app, "addons", f).await,
    }
}

/// `POST /apps/{app}/addons/detach` `name=...`.
pub async fn addon_detach(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    let name = field(&change, "name").unwrap_or("").to_string();
    let path = format!(
        "/v1/addons/{}/attachments/{app}",
        caas_api::path_segment(&name)
    );
    match dash.api.delete(&change.signed.who, &path).await {
        Ok(()) => done(
            &dash,
            &change,
            &app_path(&app),
            format!("Detached {name} from {app}"),
        ),
        Err(f) => refused(&dash, &change, &app, "addons", f).await,
    }
}

/// `POST /apps/{app}/canary/weight` `weight=N`.
pub async fn canary_weight(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    let typed = field(&change, "weight").unwrap_or("");
    let Ok(weight) = typed.trim_end_matches('%').parse::<u8>() else {
        let f = own(format!(
            "invalid weight {typed:?}: use a percentage from 1 to 99"
        ));
        return refused(&dash, &change, &app, "canary", f).await;
    };
    let path = format!("/v1/apps/{app}/canary");
    match dash
        .api
        .call::<_, CanaryStatus>(
            &change.signed.who,
            Method::PATCH,
            &path,
            &CanaryWeight { weight },
        )
        .await
    {
        Ok(c) => done(
            &dash,
            &change,
            &app_path(&app),
            format!(
                "Canary v{} now gets {}% of requests",
                c.canary.version, c.canary.weight
            ),
        ),
        Err(f) => refused(&dash, &change, &app, "canary", f).await,
    }
}

/// `POST /apps/{app}/canary/promote`.
pub async fn canary_promote(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    let path = format!("/v1/apps/{app}/canary/promote");
    let none = serde_json::json!({});
    match dash
        .api
        .call::<_, Release>(&change.signed.who, Method::POST, &path, &none)
        .await
    {
        Ok(r) => done(
            &dash,
            &change,
            &app_path(&app),
            format!("Promoting canary v{}: it rolls out now", r.version),
        ),
        Err(f) => refused(&dash, &change, &app, "canary", f).await,
    }
}

/// `POST /apps/{app}/canary/abort`.
pub async fn canary_abort(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    let path = format!("/v1/apps/{app}/canary/abort");
    let none = serde_json::json!({});
    match dash
        .api
        .call::<_, Canary>(&change.signed.who, Method::POST, &path, &none)
        .await
    {
        Ok(c) => done(
            &dash,
            &change,
            &app_path(&app),
            format!("Aborted canary v{}", c.version),
        ),
        Err(f) => refused(&dash, &change, &app, "canary", f).await,
    }
}

/// `POST /apps/{app}/webhooks` `url=...` and any of `event=release|build|crash` (none: all).
pub async fn webhook_add(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    let add = AddNotifyHook {
        url: field(&change, "url").unwrap_or("").to_string(),
        events: change
            .form
            .iter()
            .filter(|(k, _)| k == "event")
            .map(|(_, v)| v.clone())
            .collect(),
    };
    let path = format!("/v1/apps/{app}/webhooks");
    match dash
        .api
        .call::<_, NotifyHook>(&change.signed.who, Method::POST, &path, &add)
        .await
    {
        Ok(h) => done(
            &dash,
            &change,
            &app_path(&app),
            format!(
                "Added webhook {} for {}; its signing secret, shown this once: {}",
                h.url,
                h.events.join(", "),
                h.secret.as_deref().unwrap_or("-")
            ),
        ),
        Err(f) => refused(&dash, &change, &app, "webhooks", f).await,
    }
}

/// `POST /apps/{app}/webhooks/remove` `url=...`.
pub async fn webhook_remove(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    let url = field(&change, "url").unwrap_or("").to_string();
    let query = serde_urlencoded::to_string([("url", &url)]).unwrap_or_default();
    let path = format!("/v1/apps/{app}/webhooks?{query}");
    match dash.api.delete(&change.signed.who, &path).await {
        Ok(()) => done(
            &dash,
            &change,
            &app_path(&app),
            format!("Removed webhook {url}"),
        ),
        Err(f) => refused(&dash, &change, &app, "webhooks", f).await,
    }
}
