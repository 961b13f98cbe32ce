//! Certificates: `GET/POST /v1/apps/{app}/certs`, `DELETE /v1/apps/{app}/certs/{id}`, and
//! where automatic ones stand, `GET /v1/apps/{app}/certs/auto` (`crate::acme` obtains them). A
//! certificate is checked before it is stored (it parses, its key is the leaf's, it is not
//! expired, it covers one of the app's names); the gateway picks it by SNI for the app's names it
//! covers. Private keys are kept in the store and reach only the gateway (its token's API); no
//! answer here carries one.

use super::auth::{load_app, Access, Caller};
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use crate::store::CertRecord;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use caas_api::domains::{AcmeOrder, AcmeState, AddCert, AutoCerts, Cert, CertSource};
use caas_api::Timestamp;

/// Certificates one app may have.
const MAX_CERTS: usize = 50;
/// Largest PEM accepted, each of chain and key.
const MAX_PEM: usize = 64 * 1024;

/// The names an app is served at: its `APP.DOMAIN` and its custom domains.
pub(super) fn app_names(s: &AppState, app: &str) -> ApiResult<Vec<String>> {
    let mut names = vec![format!("{app}.{}", s.config.domain)];
    names.extend(s.store.app_domains(app)?.into_iter().map(|(h, _)| h));
    Ok(names)
}

pub(super) fn cert_view(rec: &CertRecord, names: &[String]) -> Cert {
    Cert {
        id: rec.id.clone(),
        names: rec.names.clone(),
        serves: names
            .iter()
            .filter(|n| crate::tls::covers(&rec.names, n))
            .cloned()
            .collect(),
        issuer: rec.issuer.clone(),
        not_before: rec.not_before,
        not_after: rec.not_after,
        source: rec.source,
        created_at: rec.created_at,
    }
}

#[utoipa::path(get, path = "/v1/apps/{app}/certs", tag = "certs", operation_id = "certs_list", params(("app" = String, Path)), responses((status = 200, description = "OK", body = Vec<Cert>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn list(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Cert>>> {
    load_app(&s, &caller, &app, Access::Read)?;
    let names = app_names(&s, &app)?;
    let certs = s
        .store
        .app_certs(&app)?
        .iter()
        .map(|c| cert_view(c, &names))
        .collect();
    Ok(Json(certs))
}

#[utoipa::path(post, path = "/v1/apps/{app}/certs", tag = "certs", operation_id = "certs_add", params(("app" = String, Path)), request_body = AddCert, responses((status = "2XX", description = "done", body = Cert), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn add(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<AddCert>,
) -> ApiResult<(StatusCode, Json<Cert>)> {
    load_app(&s, &caller, &app, Access::Manage)?;
    if req.cert_pem.len() > MAX_PEM || req.key_pem.len() > MAX_PEM {
        return Err(ApiError::Invalid(format!(
            "the certificate or key file is over {} KB; give the PEM files of one certificate",
            MAX_PEM / 1024
        )));
    }
    let parsed = crate::tls::parse(&req.cert_pem, &req.key_pem).map_err(ApiError::Invalid)?;
    let info = parsed.info;
    let now = Timestamp::now();
    if info.not_after <= now {
        return Err(ApiError::Invalid(format!(
            "the certificate expired at {}; get a new one",
            info.not_after
        )));
    }
    if info.not_before > now {
        return Err(ApiError::Invalid(format!(
            "the certificate is not valid before {}",
            info.not_before
        )));
    }
    let names = app_names(&s, &app)?;
    if !names.iter().any(|n| crate::tls::covers(&info.names, n)) {
        return Err(ApiError::Invalid(format!(
            "the certificate is for {}, none of which is {app}'s ({}); add the domain first with caas domains:add",
            info.names.join(", "),
            names.join(", ")
        )));
    }
    let existing = s.store.app_certs(&app)?;
    if existing.iter().any(|c| c.id == info.id) {
        return Err(ApiError::Conflict(format!(
            "this certificate is already one of {app}'s ({})",
            info.id
        )));
    }
    if existing.len() >= MAX_CERTS {
        return Err(ApiError::Invalid(format!(
            "{app} has {MAX_CERTS} certificates, the most an app may have; remove one first"
        )));
    }
    let rec = CertRecord {
        app: Some(app.clone()),
        id: info.id.clone(),
        names: info.names,
        issuer: info.issuer,
        not_before: info.not_before,
        not_after: info.not_after,
        chain_pem: req.cert_pem,
        key_pem: req.key_pem,
        source: CertSource::Uploaded,
        created_at: now,
        origin: String::new(),
    };
    s.store.put_cert(&rec)?;
    s.store.flush().await?;
    super::audit(
        &s,
        &caller,
        "certs:add",
        Some(&app),
        format!("{} {}", rec.id, rec.names.join(",")),
    );
    s.logs.event(
        &app,
        "cert",
        format!("Added certificate {} for {}", rec.id, rec.names.join(", ")),
    );
    Ok((StatusCode::CREATED, Json(cert_view(&rec, &names))))
}

#[utoipa::path(delete, path = "/v1/apps/{app}/certs/{id}", tag = "certs", operation_id = "certs_remove", params(("app" = String, Path), ("id" = String, Path)), responses((status = "2XX", description = "done"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn remove(
    caller: Caller,
    State(s): State<AppState>,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    load_app(&s, &caller, &app, Access::Manage)?;
    let sane = id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !sane || !s.store.remove_cert(&app, &id)? {
        return Err(ApiError::NotFound(format!(
            "{app} has no certificate {id:?}: see caas certs -a {app}"
        )));
    }
    s.store.flush().await?;
    super::audit(&s, &caller, "certs:remove", Some(&app), id.clone());
    s.logs
        .event(&app, "cert", format!("Removed certificate {id}"));
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/apps/{app}/certs/auto`: whether certificates come over ACME, and one order per custom
/// domain (a domain the ACME client has not got to yet is `pending`).
#[utoipa::path(get, path = "/v1/apps/{app}/certs/auto", tag = "certs", operation_id = "certs_auto", params(("app" = String, Path)), responses((status = 200, description = "OK", body = AutoCerts), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn auto(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<AutoCerts>> {
    let rec = load_app(&s, &caller, &app, Access::Read)?;
    let records = s.store.acme_orders()?;
    let now = Timestamp::now();
    let orders = if rec.certs_auto {
        s.store
            .app_domains(&app)?
            .into_iter()
            .map(|(hostname, _)| {
                match records
                    .iter()
                    .find(|o| o.app == app && o.hostname == hostname)
                {
                    Some(o) => AcmeOrder {
                        hostname,
                        state: o.state,
                        error: o.error.clone(),
                        updated_at: o.updated_at,
                        next_try: o.next_try,
                        cert_id: o.cert_id.clone(),
                    },
                    None => AcmeOrder {
                        hostname,
                        state: AcmeState::Pending,
                        error: None,
                        updated_at: now,
                        next_try: None,
                        cert_id: None,
                    },
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(Json(AutoCerts {
        enabled: rec.certs_auto,
        directory: s.config.acme_directory.clone(),
        orders,
    }))
}
