//! Hosts (admins only): `GET /v1/hosts`, `POST /v1/hosts` (a one-time join token made for one
//! host), `DELETE /v1/hosts/{name}` (its credentials revoked; its instances move elsewhere).

use super::auth::Admin;
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use crate::auth;
use crate::schedule::place::Need;
use crate::store::{Role, TokenRecord};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use caas_api::{AddHost, Host, HostJoin, HostState, Timestamp};
use std::time::Duration;

/// How long a join token works unless asked otherwise.
const JOIN_EXPIRY: Duration = Duration::from_secs(3600);
const MAX_JOIN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

#[utoipa::path(get, path = "/v1/hosts", tag = "hosts", operation_id = "hosts_list", responses((status = 200, description = "OK", body = Vec<Host>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn list(_: Admin, State(s): State<AppState>) -> ApiResult<Json<Vec<Host>>> {
    let now = Timestamp::now();
    let allocations = s.store.allocations()?;
    let hosts = s
        .store
        .hosts()?
        .into_iter()
        .map(|h| {
            let on_host: Vec<_> = allocations.iter().filter(|a| a.host_id == h.id).collect();
            let instances = on_host.len() as u32;
            let (disk, used_mb) = s.observed.host_usage(&h.id);
            Host {
                state: if s.observed.host_alive(&h.id, now) {
                    HostState::Ready
                } else {
                    HostState::Lost
                },
                instances,
                // What placement counts: the instances' reservations.
                reserved_mb: on_host
                    .iter()
                    .map(|a| Need::of_allocation(a, s.config.memory()).reserve_mb)
                    .sum(),
                overcommit: Some(h.overcommit.unwrap_or(1.0)),
                used_mb,
                disk,
                id: h.id,
                name: h.name,
                address: h.address,
                memory_mb: h.memory_mb,
                cpus: h.cpus,
                registered_at: h.registered_at,
            }
        })
        .collect();
    Ok(Json(hosts))
}

#[utoipa::path(post, path = "/v1/hosts", tag = "hosts", operation_id = "hosts_add", request_body = AddHost, responses((status = "2XX", description = "done", body = HostJoin), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn add(
    Admin(caller): Admin,
    State(s): State<AppState>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<AddHost>,
) -> ApiResult<(StatusCode, Json<HostJoin>)> {
    super::agent::validate_host_name(&req.name)?;
    if let Some(a) = &req.address {
        a.parse::<std::net::IpAddr>().map_err(|_| {
            ApiError::Invalid(format!("invalid host address {a:?}: give an IP address"))
        })?;
    }
    let expires = match req.expires_in_secs {
        None => JOIN_EXPIRY,
        Some(secs) if secs == 0 || Duration::from_secs(secs) > MAX_JOIN_EXPIRY => {
            return Err(ApiError::Invalid(
                "a join token may work from 1 second to 7 days".into(),
            ))
        }
        Some(secs) => Duration::from_secs(secs),
    };
    let token = auth::generate(auth::JOIN_PREFIX);
    let mut rec = TokenRecord::new(
        Role::Join {
            host: Some(req.name.clone()),
            address: req.address.clone(),
            once: true,
            colocated: false,
        },
        &format!("join {}", req.name),
    );
    let expires_at = Timestamp::now().plus(expires);
    rec.expires_at = Some(expires_at);
    s.store.put_token(&auth::hash(&token), &rec)?;
    s.store.flush().await?;
    super::audit(&s, &caller, "hosts:add", None, req.name.clone());
    // The API as the admin reached it: the address the host will reach it at too, usually. The
    // same port speaks TLS, with the certificate the agent pins.
    let server = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(
            || "https://CONTROL-PLANE:7080".to_string(),
            |h| format!("https://{h}"),
        );
    // With several servers (etcd), every one's, this one first: the agent moves to another when
    // its own stops answering, and they all serve the one certificate it pins.
    let server = if s.store.is_shared() {
        let (servers, _) = s.store.servers()?;
        let mut all = vec![server];
        for api in servers
            .iter()
            .map(|r| r.api.replacen("http://", "https://", 1))
        {
            if !all.contains(&api) {
                all.push(api);
            }
        }
        all.join(",")
    } else {
        server
    };
    let address = req.address.clone().unwrap_or_else(|| "THIS-HOST-IP".into());
    let fingerprint = s.config.api_fingerprint.clone();
    let args = format!(
        "{server} --server-fingerprint {fingerprint} --join-token {token} --address {address} --name {}",
        req.name
    );
    Ok((
        StatusCode::CREATED,
        Json(HostJoin {
            install_command: format!("./install.sh --agent {args}"),
            agent_command: format!("caasd agent --server {args}"),
            fingerprint,
            name: req.name,
            token,
            expires_at,
        }),
    ))
}

#[utoipa::path(delete, path = "/v1/hosts/{name}", tag = "hosts", operation_id = "hosts_remove", params(("name" = String, Path)), responses((status = "2XX", description = "done"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn remove(
    Admin(caller): Admin,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let Some(host) = s.store.hosts()?.into_iter().find(|h| h.name == name) else {
        return Err(ApiError::NotFound(format!(
            "no host named {name:?}: see caas hosts"
        )));
    };
    if host.colocated {
        return Err(ApiError::Invalid(format!(
            "{name} is the control plane's own host: run caasd with --no-agent instead"
        )));
    }
    s.store.delete_host(&host.id)?;
    // Its agent's token and any join token made for its name stop working at once.
    s.store.delete_tokens_where(|t| match &t.role {
        Role::Agent { host_id } => *host_id == host.id,
        Role::Join { host: Some(h), .. } => *h == name,
        _ => false,
    })?;
    s.store.flush().await?;
    s.wake.notify_one();
    super::audit(&s, &caller, "hosts:remove", None, name);
    Ok(StatusCode::NO_CONTENT)
}
