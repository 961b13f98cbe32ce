//! Extractors that authenticate a request by its bearer token and check the token's role. A
//! handler states what it needs by taking `Admin`, `Joiner`, `AgentHost` or `GatewayCaller` as an
//! argument.

use super::error::ApiError;
use super::AppState;
use crate::auth;
use crate::store::Role;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

fn role_of(parts: &Parts, state: &AppState) -> Result<Role, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthorized)?;
    let token = header
        .strip_prefix("Bearer ")
        .ok_or(ApiError::Unauthorized)?
        .trim();
    let hash = auth::hash(token);
    let rec = state.store.token(&hash)?.ok_or(ApiError::Unauthorized)?;
    Ok(rec.role)
}

/// A user with the admin token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match role_of(parts, state)? {
            Role::Admin => Ok(Admin),
            _ => Err(ApiError::Forbidden(
                "this token is for agents; use the admin token".into(),
            )),
        }
    }
}

/// A host joining the cluster with the join token.
pub struct Joiner;

impl FromRequestParts<AppState> for Joiner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match role_of(parts, state)? {
            Role::Join => Ok(Joiner),
            _ => Err(ApiError::Forbidden(
                "registering a host needs the join token".into(),
            )),
        }
    }
}

/// A registered agent, speaking for its host.
pub struct AgentHost(pub String);

impl FromRequestParts<AppState> for AgentHost {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match role_of(parts, state)? {
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
        match role_of(parts, state)? {
            Role::Gateway => Ok(GatewayCaller),
            _ => Err(ApiError::Forbidden(
                "the gateway API needs the gateway token".into(),
            )),
        }
    }
}
