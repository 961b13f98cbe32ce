//! Add-ons: services caas runs for apps (Postgres, Redis, MySQL) and named external bindings,
//! each attached to apps as a `*_URL` config var (`/v1/addons`).

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// What an add-on is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AddonKind {
    Postgres,
    Redis,
    Mysql,
    /// A URL the user gives (a database run elsewhere): no container, no volume.
    External,
}

impl AddonKind {
    pub const ALL: [AddonKind; 4] = [Self::Postgres, Self::Redis, Self::Mysql, Self::External];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Redis => "redis",
            Self::Mysql => "mysql",
            Self::External => "external",
        }
    }

    /// `postgresql` is accepted for `postgres`, `mariadb` for `mysql` (what people type).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "postgres" | "postgresql" => Some(Self::Postgres),
            "redis" => Some(Self::Redis),
            "mysql" | "mariadb" => Some(Self::Mysql),
            "external" => Some(Self::External),
            _ => None,
        }
    }

    /// The config var an attachment gets without `--as`.
    pub fn default_var(self) -> Option<&'static str> {
        match self {
            Self::Postgres => Some("DATABASE_URL"),
            Self::Redis => Some("REDIS_URL"),
            Self::Mysql => Some("MYSQL_URL"),
            Self::External => None,
        }
    }
}

impl std::fmt::Display for AddonKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an add-on stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AddonState {
    /// Its image is being built or its service is starting.
    Creating,
    /// The service answers its health check (an external binding is always available).
    Available,
    /// Its service does not answer its health check now (restarting, crashed).
    Unhealthy,
    /// Its container or its volume is gone from its host: the data cannot be reached. It is never
    /// recreated empty; destroy it (and restore a backup into a new one).
    Lost,
    /// Creating it failed; see `message`.
    Failed,
}

impl AddonState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Available => "available",
            Self::Unhealthy => "unhealthy",
            Self::Lost => "lost",
            Self::Failed => "failed",
        }
    }
}

/// An app an add-on is attached to, and the config var that carries its URL there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attachment {
    pub app: String,
    pub var: String,
}

/// An add-on (`GET /v1/addons`, `GET /v1/addons/{name}`). Its URL (with the password) is only in
/// the attached apps' config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Addon {
    pub name: String,
    pub kind: AddonKind,
    pub state: AddonState,
    /// Why it is not available, when it says.
    #[serde(default)]
    pub message: Option<String>,
    /// The host its service runs on (none for an external binding).
    #[serde(default)]
    pub host: Option<String>,
    /// The service's memory limit, MiB.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// `ADDRESS:PORT` where instances on other hosts reach the service (guarded by its
    /// password); instances on its own host reach it by name on its network.
    #[serde(default)]
    pub published: Option<String>,
    pub attachments: Vec<Attachment>,
    pub created_at: Timestamp,
    pub created_by: String,
    /// The releases its last change (create, attach, detach, update) made in its apps.
    #[serde(default)]
    pub releases: Vec<AppRelease>,
}

/// `POST /v1/addons`: provision (or record, for `external`) and attach to `app`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddonCreate {
    /// `postgres`, `redis`, `mysql` or `external`.
    pub kind: String,
    pub app: String,
    /// The add-on's name; `KIND-XXXXXX` when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// `NAME`: the app gets `NAME_URL` instead of the kind's default var.
    #[serde(default, rename = "as")]
    pub as_name: Option<String>,
    /// For `external` only: the URL every attached app gets.
    #[serde(default)]
    pub url: Option<String>,
}

/// `POST /v1/addons/{name}/attachments`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddonAttach {
    pub app: String,
    #[serde(default, rename = "as")]
    pub as_name: Option<String>,
}

/// `PATCH /v1/addons/{name}`: a new URL for an external binding.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddonUpdate {
    pub url: String,
}

/// What a change to an add-on did to its apps: the release each attached app got.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddonChange {
    pub addon: Addon,
    /// `(app, version)`: the releases made; an app never deployed gets none (its first release
    /// copies the config).
    pub releases: Vec<AppRelease>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppRelease {
    pub app: String,
    pub var: String,
    pub release: Option<u64>,
}

/// The config var for `--as NAME`: `NAME_URL`, upper-cased; `NAME_URL` given whole is kept.
pub fn attachment_var(as_name: &str) -> String {
    let upper = as_name.to_ascii_uppercase().replace('-', "_");
    if upper.ends_with("_URL") {
        upper
    } else {
        format!("{upper}_URL")
    }
}

/// Add-on names follow app names' rules (they become Docker names and host names).
pub fn validate_addon_name(name: &str) -> Result<(), crate::NameError> {
    crate::validate_app_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_vars() {
        for k in AddonKind::ALL {
            assert_eq!(AddonKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(AddonKind::parse("postgresql"), Some(AddonKind::Postgres));
        assert_eq!(AddonKind::parse("mongodb"), None);
        assert_eq!(attachment_var("cache"), "CACHE_URL");
        assert_eq!(attachment_var("DATABASE"), "DATABASE_URL");
        assert_eq!(attachment_var("SHOP_URL"), "SHOP_URL");
        assert_eq!(attachment_var("read-replica"), "READ_REPLICA_URL");
    }
}
