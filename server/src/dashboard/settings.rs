//! The app page's settings sections: domains and certificates, health checks, autoscaling and
//! alerts. What each shows is read from the API as the signed-in user ([`Settings::load`]); each
//! form is one API call ([`domain_add`] and the rest), refused or done as `actions.rs`'s are.

use super::actions::{app_path, done, own, refused};
use super::client::{As, Failure};
use super::{Change, Dash};
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use caas_api::checks::Check;
use caas_api::domains::{AddDomain, AutoCerts, Cert, Domain, RoutingSettings, RoutingUpdate};
use caas_api::metrics::{AlertSettings, Alerts, Autoscale, AutoscaleSettings};
use serde::Serialize;

/// What the settings sections show. A part the API refuses to this user (an app-scoped token
/// may not read some) is left empty rather than failing the page.
#[derive(Serialize, Default)]
pub struct Settings {
    pub domains: Vec<Domain>,
    pub certs: Vec<Cert>,
    pub auto_certs: Option<AutoCerts>,
    pub routing: Option<RoutingSettings>,
    pub checks: Vec<Check>,
    pub autoscale: Vec<Autoscale>,
    pub alerts: Option<Alerts>,
}

impl Settings {
    pub async fn load(dash: &Dash, who: &As, app: &str) -> Self {
        let api = &dash.api;
        let base = format!("/v1/apps/{app}");
        Settings {
            domains: api
                .get(who, &format!("{base}/domains"))
                .await
                .unwrap_or_default(),
            certs: api
                .get(who, &format!("{base}/certs"))
                .await
                .unwrap_or_default(),
            auto_certs: api.get(who, &format!("{base}/certs/auto")).await.ok(),
            routing: api.get(who, &format!("{base}/routing")).await.ok(),
            checks: api
                .get(who, &format!("{base}/checks"))
                .await
                .unwrap_or_default(),
            autoscale: api
                .get(who, &format!("{base}/autoscale"))
                .await
                .unwrap_or_default(),
            alerts: api.get(who, &format!("{base}/alerts")).await.ok(),
        }
    }
}

/// A form field, trimmed; `None` when empty.
fn field<'a>(change: &'a Change, name: &str) -> Option<&'a str> {
    change.field(name).map(str::trim).filter(|v| !v.is_empty())
}

/// `POST /apps/{app}/domains` `hostname=...`.
pub async fn domain_add(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    let hostname = field(&change, "hostname").unwrap_or("").to_string();
    match dash
        .api
        .call::<_, Domain>(
            &change.signed.who,
            Method::POST,
            &format!("/v1/apps/{app}/domains"),
            &AddDomain { hostname },
        )
        .await
    {
        Ok(d) => done(
            &dash,
            &change,
            &app_path(&app),
            format!(
                "Added {}: point a {} record for it at {}",
                d.hostname, d.dns_record, d.dns_target
            ),
        ),
        Err(f) => refused(&dash, &change, &app, "domains", f).await,
    }
}

/// `POST /apps/{app}/domains/remove` `hostname=...`.
pub async fn domain_remove(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    let hostname = field(&change, "hostname").unwrap_or("").to_string();
    // A wildcard's `*` and any other byte stay one path segment.
    let path = format!(
        "/v1/apps/{app}/domains/{}",
        caas_api::path_segment(&hostname)
    );
    match dash.api.delete(&change.signed.who, &path).await {
        Ok(()) => done(
            &dash,
            &change,
            &app_path(&app),
            format!("Removed {hostname}"),
        ),
        Err(f) => refused(&dash, &change, &app, "domains", f).await,
    }
}

/// `POST /apps/{app}/routing` `redirect_https=on|off` or `certs_auto=on|off`: one switch.
pub async fn routing(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    let switch = |name: &str| field(&change, name).map(|v| v == "on");
    let update = RoutingUpdate {
        redirect_https: switch("redirect_https"),
        certs_auto: switch("certs_auto"),
        ..Default::default()
    };
    let what = match (update.redirect_https, update.certs_auto) {
        (Some(on), None) => format!("Redirect to HTTPS {}", on_off(on)),
        (None, Some(on)) => format!("Automatic certificates {}", on_off(on)),
        _ => {
            let f = own("Choose one setting to change.");
            return refused(&dash, &change, &app, "domains", f).await;
        }
    };
    match dash
        .api
        .call::<_, RoutingSettings>(
            &change.signed.who,
            Method::PATCH,
            &format!("/v1/apps/{app}/routing"),
            &update,
        )
        .await
    {
        Ok(_) => done(&dash, &change, &app_path(&app), what),
        Err(f) => refused(&dash, &change, &app, "domains", f).await,
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// A number typed in a form, or the dashboard's own one-line refusal naming the field.
fn number<T: std::str::FromStr>(
    change: &Change,
    name: &str,
    what: &str,
) -> Result<Option<T>, Failure> {
    match field(change, name) {
        None => Ok(None),
        Some(v) => v
            .trim_end_matches('%')
            .parse()
            .map(Some)
            .map_err(|_| own(format!("invalid {what} {v:?}: use a number"))),
    }
}

/// `POST /apps/{app}/autoscale` `process=web&min=1&max=4&rps=50` (or `cpu=70`, `cooldown=300`).
/// The API checks the values, as it does the CLI's.
pub async fn autoscale_set(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    let process = field(&change, "process").unwrap_or("web").to_string();
    let settings = (|| -> Result<AutoscaleSettings, Failure> {
        Ok(AutoscaleSettings {
            min: number(&change, "min", "minimum")?.unwrap_or(1),
            max: number(&change, "max", "maximum")?
                .ok_or_else(|| own("Give the most instances to scale to."))?,
            rps: number(&change, "rps", "requests/s")?,
            cpu_percent: number(&change, "cpu", "CPU percentage")?,
            cooldown_secs: number(&change, "cooldown", "cool-down")?
                .unwrap_or(caas_api::metrics::DEFAULT_COOLDOWN_SECS),
        })
    })();
    let settings = match settings {
        Ok(s) => s,
        Err(f) => return refused(&dash, &change, &app, "autoscale", f).await,
    };
    match dash
        .api
        .call::<_, Autoscale>(
            &change.signed.who,
            Method::PUT,
            &format!("/v1/apps/{app}/autoscale/{process}"),
            &settings,
        )
        .await
    {
        Ok(a) => done(
            &dash,
            &change,
            &app_path(&app),
            format!(
                "Autoscaling {} between {} and {} instances",
                a.process, a.settings.min, a.settings.max
            ),
        ),
        Err(f) => refused(&dash, &change, &app, "autoscale", f).await,
    }
}

/// `POST /apps/{app}/autoscale/off` `process=web`.
pub async fn autoscale_off(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    let process = field(&change, "process").unwrap_or("web").to_string();
    match dash
        .api
        .delete(
            &change.signed.who,
            &format!("/v1/apps/{app}/autoscale/{process}"),
        )
        .await
    {
        Ok(()) => done(
            &dash,
            &change,
            &app_path(&app),
            format!("{process} is no longer autoscaled"),
        ),
        Err(f) => refused(&dash, &change, &app, "autoscale", f).await,
    }
}

/// `POST /apps/{app}/alerts` `p95_ms=500&error_rate=1&window=60&webhook=URL`.
pub async fn alerts_set(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    let settings = (|| -> Result<AlertSettings, Failure> {
        Ok(AlertSettings {
            p95_ms: number(&change, "p95_ms", "p95")?,
            error_rate_percent: number(&change, "error_rate", "5xx rate")?,
            window_secs: number(&change, "window", "window")?.unwrap_or(60),
            webhook: field(&change, "webhook").map(str::to_string),
        })
    })();
    let settings = match settings {
        Ok(s) => s,
        Err(f) => return refused(&dash, &change, &app, "autoscale", f).await,
    };
    match dash
        .api
        .call::<_, Alerts>(
            &change.signed.who,
            Method::PUT,
            &format!("/v1/apps/{app}/alerts"),
            &settings,
        )
        .await
    {
        Ok(_) => done(&dash, &change, &app_path(&app), "Alerts set".to_string()),
        Err(f) => refused(&dash, &change, &app, "autoscale", f).await,
    }
}

/// `POST /apps/{app}/alerts/clear`.
pub async fn alerts_clear(
    State(dash): State<Dash>,
    Path(app): Path<String>,
    change: Change,
) -> Response {
    match dash
        .api
        .delete(&change.signed.who, &format!("/v1/apps/{app}/alerts"))
        .await
    {
        Ok(()) => done(
            &dash,
            &change,
            &app_path(&app),
            "Alerts cleared".to_string(),
        ),
        Err(f) => refused(&dash, &change, &app, "autoscale", f).await,
    }
}
