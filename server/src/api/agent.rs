//! The server side of the agent protocol (see `caas_api::agent`).

use super::auth::{AgentHost, Joiner};
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use crate::auth;
use crate::store::{AllocationRecord, HostRecord, ReleaseRecord, Role, TokenRecord};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use caas_api::agent::{
    Assignment, Assignments, HealthCheck, Heartbeat, LogBatch, RegisterRequest, RegisterResponse,
};
use caas_api::checks::AppSettings;
use caas_api::WEB;
use caas_api::{LogSource, Timestamp};
use futures_util::StreamExt;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The port every web process listens on inside its container (`$PORT`).
pub const CONTAINER_PORT: u16 = 5000;
const CPU_SHARES: u64 = 1024;
const PIDS_LIMIT: i64 = 512;
/// Longest a blocking query may wait.
const MAX_WAIT: Duration = Duration::from_secs(60);

pub(super) fn validate_host_name(name: &str) -> ApiResult<()> {
    let b = name.as_bytes();
    let ok = (1..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::Invalid(format!(
            "invalid host name {name:?}: use up to 63 lowercase letters, digits, '-' and '.'"
        )))
    }
}

#[utoipa::path(post, path = "/v1/agent/register", tag = "agent", operation_id = "agent_register", request_body = RegisterRequest, responses((status = 200, description = "OK", body = RegisterResponse), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn register(
    joiner: Joiner,
    State(s): State<AppState>,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> ApiResult<Json<RegisterResponse>> {
    validate_host_name(&req.name)?;
    let address: std::net::IpAddr = req.address.parse().map_err(|_| {
        ApiError::Invalid(format!(
            "invalid host address {:?}: give an IP address",
            req.address
        ))
    })?;
    if req.port_min < 1024 || req.port_min > req.port_max {
        return Err(ApiError::Invalid(format!(
            "invalid port range {}-{}: give LOW-HIGH with 1024 <= LOW <= HIGH",
            req.port_min, req.port_max
        )));
    }
    // What the join token allows, and nothing else: its host name; its address, or else the
    // address the registration comes from (so an agent cannot send the gateway elsewhere); the
    // control plane's own host only for the embedded agent.
    let refuse = |why: String| {
        tracing::warn!(
            host = req.name,
            address = req.address,
            "refused a registration: {why}"
        );
        ApiError::Forbidden(why)
    };
    if let Some(bound) = &joiner.host {
        if *bound != req.name {
            return Err(refuse(format!(
                "this join token is for host {bound:?}, not {:?}",
                req.name
            )));
        }
    }
    if req.colocated && !joiner.colocated {
        return Err(refuse(
            "only the control plane's embedded agent registers as its own host".into(),
        ));
    }
    let allowed = match (&joiner.address, joiner.colocated) {
        (Some(a), _) => a.parse::<std::net::IpAddr>().ok() == Some(address),
        (None, true) => true,
        (None, false) => joiner.peer.is_some_and(|p| p.ip() == address),
    };
    if !allowed {
        return Err(refuse(format!(
            "host {:?} may only register the address its join token names or the one it \
             connects from, not {address}",
            req.name
        )));
    }
    let existing = s.store.hosts()?.into_iter().find(|h| h.name == req.name);
    // A registered host's name is taken: only a token made for that name (caas hosts:add NAME
    // again, or the embedded agent's) registers it anew, keeping its id so what runs there stays
    // its own.
    if existing.is_some() && joiner.host.as_deref() != Some(req.name.as_str()) {
        return Err(ApiError::Conflict(format!(
            "a host named {:?} is registered already; remove it (caas hosts:remove) or pick another name",
            req.name
        )));
    }
    if joiner.once {
        s.store.delete_token(&joiner.token_hash)?;
    }
    let id = existing
        .as_ref()
        .map_or_else(auth::short_id, |h| h.id.clone());
    let host = HostRecord {
        id: id.clone(),
        name: req.name.clone(),
        address: req.address.clone(),
        memory_mb: req.memory_mb,
        cpus: req.cpus,
        port_min: req.port_min,
        port_max: req.port_max,
        registered_at: existing.map_or_else(Timestamp::now, |h| h.registered_at),
        colocated: req.colocated,
        overcommit: req.overcommit,
    };
    s.store.put_host(&host)?;
    s.store.delete_tokens_where(|t| {
        t.role
            == Role::Agent {
                host_id: id.clone(),
            }
    })?;
    let token = auth::generate(auth::AGENT_PREFIX);
    s.store.put_token(
        &auth::hash(&token),
        &TokenRecord::new(
            Role::Agent {
                host_id: id.clone(),
            },
            &format!("agent {}", req.name),
        ),
    )?;
    s.store.flush().await?;
    tracing::info!(
        host = req.name,
        id,
        address = req.address,
        "host registered"
    );
    s.wake.notify_one();
    Ok(Json(RegisterResponse {
        host_id: id,
        token,
        cluster_id: s.config.cluster_id.clone(),
    }))
}

#[derive(Deserialize)]
pub struct AssignmentsQuery {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    wait: u64,
}

#[utoipa::path(get, path = "/v1/agent/assignments", tag = "agent", operation_id = "agent_assignments", responses((status = 200, description = "OK", body = Assignments), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn assignments(
    AgentHost(host_id): AgentHost,
    State(s): State<AppState>,
    Query(q): Query<AssignmentsQuery>,
) -> ApiResult<Json<Assignments>> {
    let mut rx = s.store.assignment_index();
    let wait = Duration::from_secs(q.wait).min(MAX_WAIT);
    if *rx.borrow_and_update() == q.index && !wait.is_zero() {
        let _ = tokio::time::timeout(wait, rx.changed()).await;
    }
    // Read the index before the data: a change in between makes the agent ask once more, never
    // miss an update.
    let index = *rx.borrow();
    let mut releases: HashMap<(String, u64), Option<ReleaseRecord>> = HashMap::new();
    let settings: HashMap<String, AppSettings> = s
        .store
        .apps()?
        .into_iter()
        .map(|a| (a.name, a.settings))
        .collect();
    let bindings = crate::addons::bindings_by_app(&s.store, &s.config.cluster_id)?;
    // Add-ons are reached by network on their own host, at their published address elsewhere.
    let host_name = s.store.host(&host_id)?.map(|h| h.name).unwrap_or_default();
    let mut out: Vec<Assignment> = Vec::new();
    for a in s
        .store
        .allocations()?
        .into_iter()
        .filter(|a| a.host_id == host_id)
    {
        let key = (a.app.clone(), a.release);
        if !releases.contains_key(&key) {
            releases.insert(key.clone(), s.store.release(&a.app, a.release)?);
        }
        if let Some(release) = &releases[&key] {
            let stop_timeout_ms = settings.get(&a.app).and_then(|st| st.stop_timeout_ms);
            let app_bindings = bindings.get(&a.app).map(Vec::as_slice).unwrap_or_default();
            out.push(assignment(
                &s,
                a,
                release,
                stop_timeout_ms,
                app_bindings,
                &host_name,
            ));
        }
    }
    s.observed.note_assigned(
        &host_id,
        out.iter().map(|a| a.app.clone()),
        Timestamp::now(),
    );
    Ok(Json(Assignments {
        index,
        assignments: out,
    }))
}

fn assignment(
    s: &AppState,
    a: AllocationRecord,
    release: &ReleaseRecord,
    stop_timeout_ms: Option<u64>,
    bindings: &[crate::addons::Binding],
    host_name: &str,
) -> Assignment {
    let web = a.process == WEB;
    let mut env: BTreeMap<String, String> = release.config.clone();
    let networks = crate::addons::bind(bindings, host_name, &mut env);
    env.insert("CAAS_APP".into(), a.app.clone());
    env.insert("CAAS_RELEASE".into(), format!("v{}", a.release));
    env.insert("CAAS_PROCESS".into(), a.process.clone());
    env.insert("CAAS_INSTANCE".into(), a.instance_name());
    if web {
        env.insert("PORT".into(), CONTAINER_PORT.to_string());
    }
    // Built apps start through the stack's launcher, which sources `.profile.d` (PATH to the
    // virtualenv, node_modules/.bin, ...) the way Heroku's dynos do.
    let command = release
        .process_types
        .get(&a.process)
        .cloned()
        .flatten()
        .map(|c| {
            if release.launcher {
                format!("exec caas-launch {}", crate::builder::sh_quote(&c))
            } else {
                c
            }
        });
    let resources = release
        .resources
        .get(&a.process)
        .copied()
        .unwrap_or_default();
    Assignment {
        command,
        image: release.image_id.clone(),
        container_port: web.then_some(CONTAINER_PORT),
        // What placement reserved; records from before carry 0: the release's, else the default.
        memory_mb: match a.memory_mb {
            0 => resources.memory_mb.unwrap_or(s.config.instance_memory_mb),
            mb => mb,
        },
        cpus: resources.cpus,
        cpu_shares: CPU_SHARES,
        pids_limit: PIDS_LIMIT,
        health: if web {
            HealthCheck::Tcp
        } else {
            HealthCheck::Running
        },
        checks: release
            .checks
            .iter()
            .filter(|c| c.process == a.process)
            .cloned()
            .collect(),
        stop_timeout_ms,
        networks,
        env,
        id: a.id,
        app: a.app,
        release: a.release,
        process: a.process,
        index: a.index,
    }
}

/// `GET /v1/agent/images/{id}`: `docker save` of an image this host is assigned, for agents
/// whose Docker engine does not have it (no registry is needed between hosts).
#[utoipa::path(get, path = "/v1/agent/images/{id}", tag = "agent", operation_id = "agent_image", params(("id" = String, Path)), responses((status = 200, description = "see docs/api.md"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn image(
    AgentHost(host_id): AgentHost,
    State(s): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult<axum::response::Response> {
    let hex = id.strip_prefix("sha256:").unwrap_or("");
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::Invalid(format!("invalid image id {id:?}")));
    }
    // Only what this host runs: an agent token does not open the whole image store.
    let mut wanted = false;
    for a in s
        .store
        .allocations()?
        .into_iter()
        .filter(|a| a.host_id == host_id)
    {
        if s.store
            .release(&a.app, a.release)?
            .is_some_and(|r| r.image_id == id)
        {
            wanted = true;
            break;
        }
    }
    if !wanted {
        return Err(ApiError::Forbidden(format!(
            "image {id} is not assigned to this host"
        )));
    }
    if s.engine.image_id(&id).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "image {id} is not on the control plane"
        )));
    }
    let body = axum::body::Body::from_stream(
        s.engine
            .export_image(&id)
            .map(|c| c.map_err(|e| std::io::Error::other(e.to_string()))),
    );
    Ok(axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/x-tar")
        .body(body)
        .expect("static headers are valid"))
}

#[utoipa::path(post, path = "/v1/agent/heartbeat", tag = "agent", operation_id = "agent_heartbeat", request_body = Heartbeat, responses((status = "2XX", description = "done"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn heartbeat(
    AgentHost(host_id): AgentHost,
    State(s): State<AppState>,
    JsonBody(mut hb): JsonBody<Heartbeat>,
) -> ApiResult<StatusCode> {
    // An agent reports for the instances placed on its own host, published in its own port
    // range: anything else (another host's instance, a port the gateway must not be sent to,
    // a container address from a host that is not the control plane's) is dropped and logged.
    let Some(host) = s.store.host(&host_id)? else {
        return Err(ApiError::Forbidden(
            "this host was removed: join again with a token from caas hosts:add".into(),
        ));
    };
    let mine: std::collections::HashSet<String> = s
        .store
        .allocations()?
        .into_iter()
        .filter(|a| a.host_id == host_id)
        .map(|a| a.id)
        .collect();
    let before = hb.instances.len();
    hb.instances.retain(|r| {
        mine.contains(&r.assignment_id)
            && r.port
                .is_none_or(|p| (host.port_min..=host.port_max).contains(&p))
    });
    if !host.colocated {
        for r in &mut hb.instances {
            r.container_addr = None;
        }
    }
    if hb.instances.len() != before {
        tracing::warn!(
            host = host.name,
            "dropped {} instance reports that were not this host's to make",
            before - hb.instances.len()
        );
    }
    s.counters.heartbeat(&host_id);
    s.counters
        .dropped(crate::metrics::Dropped::Agent, hb.dropped_log_lines);
    if let Some(disk) = hb.disk {
        s.observed.note_disk(&host_id, disk);
    }
    // A new offer (the agent restarted with another --host-memory or --overcommit) is written
    // down; a lower one only stops new placements, nothing placed moves.
    let offer = (
        hb.memory_mb.unwrap_or(host.memory_mb),
        hb.overcommit.or(host.overcommit),
    );
    if offer != (host.memory_mb, host.overcommit) {
        let mut updated = host.clone();
        (updated.memory_mb, updated.overcommit) = offer;
        s.store.put_host(&updated)?;
        s.wake.notify_one();
        tracing::info!(
            host = host.name,
            memory_mb = offer.0,
            "host offers other memory now"
        );
    }
    // The other servers sharing the store (etcd) see this host through it: the leader
    // schedules from it, and any server may answer `caas hosts`.
    s.store.share_report(&host_id, &hb.instances, hb.disk)?;
    if s.observed
        .heartbeat(&host_id, hb.instances, Timestamp::now())
    {
        s.wake.notify_one();
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/agent/logs", tag = "agent", operation_id = "agent_logs", request_body = LogBatch, responses((status = "2XX", description = "done"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn logs(
    AgentHost(host_id): AgentHost,
    State(s): State<AppState>,
    JsonBody(batch): JsonBody<LogBatch>,
) -> ApiResult<StatusCode> {
    // An agent speaks for the apps it runs instances of, or did lately (a stopping container's
    // last lines come after its allocation went), and no others.
    let now = Timestamp::now();
    let mut exists: HashMap<String, bool> = HashMap::new();
    let mut by_app: Vec<(String, Vec<caas_api::LogLine>)> = Vec::new();
    for l in batch.lines {
        // Agents ship app output and their own events; router and build lines are the control
        // plane's to write.
        if !matches!(l.line.source, LogSource::App | LogSource::Caas) {
            continue;
        }
        let known = match exists.get(&l.app) {
            Some(k) => *k,
            None => {
                let k = s.observed.ran_lately(&host_id, &l.app, now)
                    && caas_api::validate_app_name(&l.app).is_ok()
                    && s.store.app(&l.app)?.is_some();
                exists.insert(l.app.clone(), k);
                k
            }
        };
        if known {
            match by_app.iter_mut().find(|(app, _)| *app == l.app) {
                Some((_, lines)) => lines.push(l.line),
                None => by_app.push((l.app, vec![l.line])),
            }
        }
    }
    // Written before the answer: a batch the agent saw accepted is on disk.
    for (app, lines) in by_app {
        s.logs.publish_batch(&app, lines);
    }
    Ok(StatusCode::NO_CONTENT)
}
