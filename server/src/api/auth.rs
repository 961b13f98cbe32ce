//! Who is calling, and what they may do. A handler states what it needs by taking `Caller`
//! (a user, or one of their tokens), `Admin` (an admin user), `Joiner`, `AgentHost` or
//! `GatewayCaller` as an argument; for an app, it asks [`load_app`], the one place that answers
//! "may this caller do this to this app?". An app the caller may not see answers exactly as an
//! app that does not exist, so names do not leak.
//!
//! Failed authentications are counted per client address: past [`MAX_FAILURES`] in
//! [`FAILURE_WINDOW`], the address gets 429 with `Retry-After` before its token is even looked
//! at.

use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::auth;
use crate::store::{AppRecord, Role, TokenRecord};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use caas_api::Timestamp;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed authentications an address may make per window.
pub const MAX_FAILURES: u32 = 20;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// `last_used` is written at most this often per token.
const LAST_USED_EVERY: Duration = Duration::from_secs(60);

/// The client's address, set on every request by the accept loop (`server.rs`).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts.extensions.get::<ClientAddr>().map(|c| c.0.ip())
}

/// Failed authentications per address.
#[derive(Default)]
pub struct Failures {
    by_ip: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Failures {
    /// Seconds to wait, when the address is over its limit.
    pub(crate) fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let by_ip = self.by_ip.lock().unwrap();
        let (count, since) = by_ip.get(&ip)?;
        let left = FAILURE_WINDOW.checked_sub(since.elapsed())?;
        (*count >= MAX_FAILURES).then(|| left.as_secs().max(1))
    }

    pub(crate) fn failed(&self, ip: IpAddr) {
        let mut by_ip = self.by_ip.lock().unwrap();
        if by_ip.len() > 100_000 {
            by_ip.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        }
        let entry = by_ip.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }
}

/// The bearer token of a request, if it has one.
fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
}

/// A token, checked: the hash and the record of a token that exists and has not expired. A
/// missing or unknown token counts against the client's address.
fn check_token(
    state: &AppState,
    token: Option<&str>,
    ip: Option<IpAddr>,
) -> Result<(String, TokenRecord), ApiError> {
    if let Some(secs) = ip.and_then(|ip| state.auth_failures.blocked(ip)) {
        return Err(ApiError::RateLimited(secs));
    }
    let fail = || {
        if let Some(ip) = ip {
            state.auth_failures.failed(ip);
        }
        ApiError::Unauthorized
    };
    let token = token.ok_or_else(fail)?;
    let hash = auth::hash(token);
    let rec = state.store.token(&hash)?.ok_or_else(fail)?;
    if rec.expires_at.is_some_and(|t| t <= Timestamp::now()) {
        fail();
        return Err(ApiError::Forbidden(
            "this token has expired: make another with caas tokens:create".into(),
        ));
    }
    Ok((hash, rec))
}

fn token_of(parts: &Parts, state: &AppState) -> Result<(String, TokenRecord), ApiError> {
    check_token(state, bearer(parts), client_ip(parts))
}

/// Whether the token with this hash still works (not revoked, not expired): open streams (`logs
/// --tail`, a git push) end when it does not.
pub fn still_valid(state: &AppState, hash: &str) -> bool {
    matches!(
        state.store.token(hash),
        Ok(Some(rec)) if rec.expires_at.is_none_or(|t| t > Timestamp::now())
    )
}

/// The user a token speaks for: the same checks for the API and for git's Basic auth.
pub fn caller(
    state: &AppState,
    token: Option<&str>,
    addr: Option<SocketAddr>,
) -> ApiResult<Caller> {
    let (hash, rec) = check_token(state, token, addr.map(|a| a.ip()))?;
    let Role::User { name } = &rec.role else {
        return Err(ApiError::Forbidden(
            "this token is for agents or the gateway; use a user's token".into(),
        ));
    };
    // A removed user's tokens went with it; this covers a race with that.
    let user = state.store.user(name)?.ok_or(ApiError::Unauthorized)?;
    let now = Timestamp::now();
    if rec
        .last_used
        .is_none_or(|t| t.until(now) >= LAST_USED_EVERY)
    {
        let mut used = rec.clone();
        used.last_used = Some(now);
        state.store.put_token(&hash, &used)?;
    }
    Ok(Caller {
        user: user.name,
        admin: user.admin,
        scope: rec.app.clone(),
        token_id: rec.id.clone(),
        token_hash: hash,
        addr,
    })
}

/// What a caller wants to do to an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// See it: info, instances, releases, builds, logs, metrics.
    Read,
    /// Deploy to it: pushes, image deploys, rollbacks.
    Deploy,
    /// Change it otherwise: config, scale, drains, buildpack, access, destroy.
    Manage,
}

/// A user of the API, through one of their tokens.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub admin: bool,
    /// An app-scoped token: only this app, only `Read` and `Deploy`.
    pub scope: Option<String>,
    /// The token's id (for the audit log; never the secret).
    pub token_id: String,
    /// The token's hash, to notice when it is revoked mid-stream.
    pub token_hash: String,
    pub addr: Option<SocketAddr>,
}

impl Caller {
    /// Whether it may see `app` at all.
    pub fn sees(&self, app: &AppRecord) -> bool {
        let member = self.admin || app.access.contains(&self.user);
        member && self.scope.as_ref().is_none_or(|s| *s == app.name)
    }

    /// Refuses an app-scoped token, for what is not about one app (creating apps, tokens).
    pub fn unscoped(&self) -> ApiResult<()> {
        match &self.scope {
            None => Ok(()),
            Some(app) => Err(ApiError::Forbidden(format!(
                "this token may only deploy to and read {app}; use a user's own token"
            ))),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let addr = parts.extensions.get::<ClientAddr>().map(|c| c.0);
        caller(state, bearer(parts), addr)
    }
}

/// An admin user, with a token of their own (not an app-scoped one).
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.unscoped()?;
        if !caller.admin {
            return Err(ApiError::Forbidden(
                "only an admin may do this: ask one (caas users lists them)".into(),
            ));
        }
        Ok(Admin(caller))
    }
}

/// Loads an app for `caller` to do `what` to it, or answers 404 as if it did not exist. Checks
/// the name first, so a hostile name never reaches a key, path or command.
pub fn load_app(s: &AppState, caller: &Caller, name: &str, what: Access) -> ApiResult<AppRecord> {
    if caas_api::validate_app_name(name).is_err() {
        return Err(ApiError::no_app(name));
    }
    let rec = s.store.app(name)?.ok_or_else(|| ApiError::no_app(name))?;
    if !caller.sees(&rec) {
        return Err(ApiError::no_app(name));
    }
    if caller.scope.is_some() && what == Access::Manage {
        return Err(ApiError::Forbidden(format!(
            "this token may only deploy to and read {name}; use a user's own token"
        )));
    }
    Ok(rec)
}

/// A host joining the cluster with a join token (`caas hosts:add NAME` makes one), and what the
/// token allows: which name, which address, whether it is the embedded agent's.
pub struct Joiner {
    pub token_hash: String,
    pub host: Option<String>,
    pub address: Option<String>,
    pub once: bool,
    pub colocated: bool,
    /// Where the registration comes from.
    pub peer: Option<SocketAddr>,
}

impl FromRequestParts<AppState> for Joiner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (hash, rec) = token_of(parts, state)?;
        match rec.role {
            Role::Join {
                host,
                address,
                once,
                colocated,
            } => Ok(Joiner {
                token_hash: hash,
                host,
                address,
                once,
                colocated,
                peer: parts.extensions.get::<ClientAddr>().map(|c| c.0),
            }),
            _ => Err(ApiError::Forbidden(
                "registering a host needs a join token: caas hosts:add NAME makes one".into(),
            )),
        }
    }
}

/// A registered agent, speaking for its host.
pub struct AgentHost(pub String);

impl FromRequestParts<AppState> for AgentHost {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match token_of(parts, state)?.1.role {
            Role::Agent { host_id } => Ok(AgentHost(host_id)),
            _ => Err(ApiError::Forbidden(
                "the agent API needs an agent token".into(),
            )),
        }
    }
}

/// The gateway process, with the gateway token.
pub struct GatewayCaller;

impl FromRequestParts<AppState> for GatewayCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match token_of(parts, state)?.1.role {
            Role::Gateway => Ok(GatewayCaller),
            _ => Err(ApiError::Forbidden(
                "the gateway API needs the gateway token".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(user: &str, admin: bool, scope: Option<&str>) -> Caller {
        Caller {
            user: user.into(),
            admin,
            scope: scope.map(str::to_string),
            token_id: "t".into(),
            token_hash: "h".into(),
            addr: None,
        }
    }

    #[test]
    fn who_sees_which_app() {
        let mut shop = AppRecord::new("shop", Timestamp(0));
        shop.access.insert("ann".into());
        let blog = AppRecord::new("blog", Timestamp(0));
        for (c, sees_shop, sees_blog) in [
            (caller("root", true, None), true, true),
            (caller("ann", false, None), true, false),
            (caller("bob", false, None), false, false),
            (caller("ann", false, Some("shop")), true, false),
            (caller("ann", false, Some("blog")), false, false),
            (caller("root", true, Some("blog")), false, true),
        ] {
            assert_eq!(
                (c.sees(&shop), c.sees(&blog)),
                (sees_shop, sees_blog),
                "{c:?}"
            );
        }
        assert!(caller("ann", false, Some("shop")).unscoped().is_err());
        assert!(caller("ann", false, None).unscoped().is_ok());
    }

    #[test]
    fn failed_logins_are_limited_per_address() {
        let f = Failures::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..MAX_FAILURES - 1 {
            f.failed(a);
        }
        assert_eq!(f.blocked(a), None);
        f.failed(a);
        let wait = f.blocked(a).expect("blocked");
        assert!((1..=60).contains(&wait));
        assert_eq!(f.blocked(b), None, "another address is not");
    }
}
