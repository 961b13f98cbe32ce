//! Users, per-app access, tokens and the audit log: `/v1/whoami`, `/v1/users`,
//! `/v1/apps/{app}/access`, `/v1/tokens`, `/v1/audit`.

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// A user: `admin` may do everything (users and hosts included), a member only what it may do
/// to the apps it created or was given.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub name: String,
    pub admin: bool,
    pub created_at: Timestamp,
}

/// `POST /v1/users`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateUser {
    pub name: String,
    #[serde(default)]
    pub admin: bool,
}

/// A token as its owner sees it: never the secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    pub id: String,
    pub user: String,
    pub description: String,
    /// Only this app, to deploy to and read.
    pub app: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    /// Roughly (to the minute).
    pub last_used: Option<Timestamp>,
}

/// `POST /v1/tokens`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateToken {
    pub description: String,
    /// Seconds until it stops working; none: it works until revoked.
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
    /// Scope it to this app (deploy and read only).
    #[serde(default)]
    pub app: Option<String>,
}

/// A new token: the secret is in this answer and nowhere else.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewToken {
    pub token: String,
    pub info: TokenInfo,
}

/// `GET /v1/whoami`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WhoAmI {
    pub user: User,
    pub token: TokenInfo,
}

/// `GET /v1/apps/{app}/access`: who may use the app besides admins.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppAccess {
    pub app: String,
    /// Who created it (may give and take access).
    pub owner: Option<String>,
    pub users: Vec<String>,
}

/// `POST /v1/apps/{app}/access`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GrantAccess {
    pub user: String,
}

/// One change: `GET /v1/audit?app=APP&limit=N`, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub at: Timestamp,
    pub user: String,
    /// The id of the token used.
    pub token: String,
    /// The client's IP address.
    pub address: String,
    /// `apps:create`, `config:set`, `ps:scale`, `git:push`, ...
    pub action: String,
    pub app: Option<String>,
    /// Keys, counts, versions: never a config value or a secret.
    pub detail: String,
}
