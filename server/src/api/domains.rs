//! Custom domains: `GET/POST /v1/apps/{app}/domains`, `DELETE /v1/apps/{app}/domains/{hostname}`.
//! The names are intent in the store's `domains` tree; the gateway learns them from the routing
//! table (`routing.rs`), within moments of the write.

use super::auth::{load_app, Access, Caller};
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use crate::store::{DomainError, DomainRecord};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use caas_api::domains::{
    dns_record_for, validate_hostname, AddDomain, Domain, DomainKind, RoutingSettings,
    RoutingUpdate,
};
use caas_api::Timestamp;

/// Domains one app may have.
const MAX_DOMAINS: usize = 100;

pub(super) fn domain_view(s: &AppState, app: &str, hostname: String, rec: &DomainRecord) -> Domain {
    Domain {
        kind: DomainKind::of(&hostname),
        dns_record: dns_record_for(&hostname).to_string(),
        dns_target: format!("{app}.{}", s.config.domain),
        created_at: rec.created_at,
        hostname,
    }
}

#[utoipa::path(get, path = "/v1/apps/{app}/domains", tag = "domains", operation_id = "domains_list", params(("app" = String, Path)), responses((status = 200, description = "OK", body = Vec<Domain>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn list(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Domain>>> {
    load_app(&s, &caller, &app, Access::Read)?;
    let domains = s
        .store
        .app_domains(&app)?
        .into_iter()
        .map(|(h, rec)| domain_view(&s, &app, h, &rec))
        .collect();
    Ok(Json(domains))
}

/// Checks a name an app asks for: the host name rules, and nothing at or under the platform's
/// own domain (those are the apps' `APP.DOMAIN` addresses).
fn check_hostname(s: &AppState, app: &str, name: &str) -> ApiResult<String> {
    let hostname = validate_hostname(name).map_err(|e| ApiError::Invalid(e.to_string()))?;
    let domain = &s.config.domain;
    let bare = hostname.strip_prefix("*.").unwrap_or(&hostname);
    if bare == domain.as_str() || bare.ends_with(&format!(".{domain}")) {
        if hostname == format!("{app}.{domain}") {
            return Err(ApiError::Invalid(format!(
                "{hostname} is {app}'s own address already; add the names of your own domain"
            )));
        }
        return Err(ApiError::Invalid(format!(
            "{hostname} is under the platform's domain {domain}, whose names are the apps' own (APP.{domain}); add the names of your own domain"
        )));
    }
    Ok(hostname)
}

#[utoipa::path(post, path = "/v1/apps/{app}/domains", tag = "domains", operation_id = "domains_add", params(("app" = String, Path)), request_body = AddDomain, responses((status = "2XX", description = "done", body = Domain), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn add(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<AddDomain>,
) -> ApiResult<(StatusCode, Json<Domain>)> {
    load_app(&s, &caller, &app, Access::Manage)?;
    let hostname = check_hostname(&s, &app, &req.hostname)?;
    if s.store.app_domains(&app)?.len() >= MAX_DOMAINS {
        return Err(ApiError::Invalid(format!(
            "{app} has {MAX_DOMAINS} domains, the most an app may have; remove one first"
        )));
    }
    let rec = DomainRecord {
        app: app.clone(),
        created_at: Timestamp::now(),
    };
    match s.store.add_domain(&hostname, &rec) {
        Ok(()) => {}
        Err(DomainError::TakenByOther) => {
            return Err(ApiError::Conflict(format!(
                "{hostname} is already in use by another app"
            )))
        }
        Err(DomainError::AlreadyOurs) => {
            return Err(ApiError::Conflict(format!(
                "{hostname} is already one of {app}'s domains"
            )))
        }
        Err(DomainError::Store(e)) => return Err(e.into()),
    }
    s.store.flush().await?;
    super::audit(&s, &caller, "domains:add", Some(&app), hostname.clone());
    s.logs
        .event(&app, "domain", format!("Added domain {hostname}"));
    Ok((
        StatusCode::CREATED,
        Json(domain_view(&s, &app, hostname, &rec)),
    ))
}

#[utoipa::path(delete, path = "/v1/apps/{app}/domains/{hostname}", tag = "domains", operation_id = "domains_remove", params(("app" = String, Path), ("hostname" = String, Path)), responses((status = "2XX", description = "done"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn remove(
    caller: Caller,
    State(s): State<AppState>,
    Path((app, hostname)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    load_app(&s, &caller, &app, Access::Manage)?;
    let normalized = caas_api::domains::normalize_hostname(&hostname);
    if !s.store.remove_domain(&app, &normalized)? {
        return Err(ApiError::NotFound(format!(
            "{app} has no domain {hostname:?}: see caas domains -a {app}"
        )));
    }
    s.store.flush().await?;
    super::audit(
        &s,
        &caller,
        "domains:remove",
        Some(&app),
        normalized.clone(),
    );
    s.logs
        .event(&app, "domain", format!("Removed domain {normalized}"));
    Ok(StatusCode::NO_CONTENT)
}

fn settings_of(rec: &crate::store::AppRecord) -> RoutingSettings {
    RoutingSettings {
        redirect_https: rec.redirect_https,
        http2: rec.backend_h2,
        certs_auto: rec.certs_auto,
    }
}

#[utoipa::path(get, path = "/v1/apps/{app}/routing", tag = "domains", operation_id = "domains_routing", params(("app" = String, Path)), responses((status = 200, description = "OK", body = RoutingSettings), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn routing(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<RoutingSettings>> {
    Ok(Json(settings_of(&load_app(
        &s,
        &caller,
        &app,
        Access::Read,
    )?)))
}

#[utoipa::path(patch, path = "/v1/apps/{app}/routing", tag = "domains", operation_id = "domains_set_routing", params(("app" = String, Path)), request_body = RoutingUpdate, responses((status = 200, description = "OK", body = RoutingSettings), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn set_routing(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<RoutingUpdate>,
) -> ApiResult<Json<RoutingSettings>> {
    let before = settings_of(&load_app(&s, &caller, &app, Access::Manage)?);
    let rec = s.store.update_app::<ApiError>(&app, |a| {
        if let Some(on) = req.redirect_https {
            a.redirect_https = on;
        }
        if let Some(on) = req.http2 {
            a.backend_h2 = on;
        }
        if let Some(on) = req.certs_auto {
            a.certs_auto = on;
        }
        Ok(())
    })?;
    s.store.flush().await?;
    let after = settings_of(&rec);
    if after != before {
        super::audit(
            &s,
            &caller,
            "routing",
            Some(&app),
            format!(
                "redirect_https={} http2={} certs_auto={}",
                after.redirect_https, after.http2, after.certs_auto
            ),
        );
    }
    if after.redirect_https != before.redirect_https {
        let what = if after.redirect_https {
            "Plain HTTP now redirects to HTTPS"
        } else {
            "Plain HTTP no longer redirects to HTTPS"
        };
        s.logs.event(&app, "routing", what.to_string());
    }
    if after.http2 != before.http2 {
        let what = if after.http2 {
            "The gateway talks HTTP/2 to the web process"
        } else {
            "The gateway talks HTTP/1.1 to the web process"
        };
        s.logs.event(&app, "routing", what.to_string());
    }
    if after.certs_auto != before.certs_auto {
        let what = if after.certs_auto {
            "Certificates for the custom domains are obtained and renewed over ACME"
        } else {
            "Certificates are no longer obtained over ACME (those obtained stay until removed)"
        };
        s.logs.event(&app, "routing", what.to_string());
    }
    Ok(Json(after))
}
