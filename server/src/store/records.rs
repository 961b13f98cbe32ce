//! What the store keeps. These are the server's own records, not wire types: they hold fields the
//! API never shows (config values, token hashes) and may change shape behind the API.

use caas_api::checks::{AppSettings, Check};
use caas_api::{ReleaseStatus, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppRecord {
    pub name: String,
    pub created_at: Timestamp,
    /// Desired instances per process type.
    pub formation: BTreeMap<String, u32>,
    /// The release that serves: the last one whose rollout succeeded.
    pub release: Option<u64>,
    /// The release being rolled out, if any. The scheduler makes it `release` once every
    /// instance it needs is up, or marks it failed; a newer release supersedes it.
    #[serde(default)]
    pub deploying: Option<u64>,
    /// Version the next release gets; releases are numbered from 1 and never reused.
    pub next_version: u64,
    /// Config vars; every release copies them.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Number the next build gets; builds are numbered from 1 and never reused.
    #[serde(default = "one")]
    pub next_build: u64,
    /// Buildpack pinned by the user; detection otherwise.
    #[serde(default)]
    pub buildpack: Option<String>,
    /// Log drain URLs (checked when added).
    #[serde(default)]
    pub drains: Vec<String>,
    /// Health checks (`caas checks:set`, a build's `app.json`); every release copies them, as
    /// it copies the config.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Rollout and drain settings (`caas apps:settings:set`); they apply at once, no release.
    #[serde(default)]
    pub settings: AppSettings,
    /// Plain HTTP requests get a 308 to HTTPS (`caas domains:redirect-https on`).
    #[serde(default)]
    pub redirect_https: bool,
    /// Who may reach the app (`caas access-rules:deny/allow`), in the order added.
    #[serde(default)]
    pub access_rules: Vec<caas_api::access::AccessRule>,
    /// The web process speaks HTTP/2 (`caas apps:http2 on`).
    #[serde(default)]
    pub backend_h2: bool,
    /// Certificates for its domains come over ACME (`caas certs:auto on`).
    #[serde(default)]
    pub certs_auto: bool,
    /// Autoscaled process types: the autoscaler owns their count in `formation`.
    #[serde(default)]
    pub autoscale: BTreeMap<String, caas_api::metrics::AutoscaleSettings>,
    /// The conditions that raise `caas[alert]` lines.
    #[serde(default)]
    pub alerts: Option<caas_api::metrics::AlertSettings>,
    /// Per process type resources (`caas ps:resize`); every release copies them.
    #[serde(default)]
    pub resources: BTreeMap<String, caas_api::Resources>,
    /// Users who may use it besides admins (its creator, and those given access).
    #[serde(default)]
    pub access: std::collections::BTreeSet<String>,
    /// Who created it: besides admins, the one who may give and take access.
    #[serde(default)]
    pub owner: Option<String>,
    /// A release running beside the serving one with a share of the requests
    /// (`caas releases:canary`); at most one.
    #[serde(default)]
    pub canary: Option<caas_api::canary::Canary>,
}

fn one() -> u64 {
    1
}

impl AppRecord {
    /// A new app: no release, no formation, numbers from 1.
    pub fn new(name: &str, created_at: Timestamp) -> Self {
        Self {
            name: name.to_string(),
            created_at,
            formation: BTreeMap::new(),
            release: None,
            deploying: None,
            next_version: 1,
            config: BTreeMap::new(),
            next_build: 1,
            buildpack: None,
            drains: Vec::new(),
            checks: Vec::new(),
            settings: AppSettings::default(),
            redirect_https: false,
            access_rules: Vec::new(),
            backend_h2: false,
            certs_auto: false,
            autoscale: BTreeMap::new(),
            alerts: None,
            access: Default::default(),
            owner: None,
            resources: BTreeMap::new(),
            canary: None,
        }
    }

    /// The newest release the user asked for: the one deploying, else the one serving. Config
    /// changes and rollbacks build on it.
    pub fn latest(&self) -> Option<u64> {
        self.deploying.or(self.release)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReleaseRecord {
    pub app: String,
    pub version: u64,
    pub image: String,
    pub image_id: String,
    pub description: String,
    pub created_at: Timestamp,
    pub process_types: BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Built by a buildpack: commands run through `caas-launch` (sources `.profile.d`).
    #[serde(default)]
    pub launcher: bool,
    /// How its rollout went. Records from before rollouts were tracked were all made current,
    /// so the default is `succeeded`.
    #[serde(default)]
    pub status: ReleaseStatus,
    /// Why it failed or was superseded.
    #[serde(default)]
    pub error: Option<String>,
    /// Its health checks, copied from the app's when it was made.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// When it failed because of one instance: that instance's last lines of output.
    #[serde(default)]
    pub output: Vec<String>,
    /// The user who made it; `None` for records from before this was kept.
    #[serde(default)]
    pub created_by: Option<String>,
    /// The build that made it.
    #[serde(default)]
    pub build: Option<u64>,
    /// Per process type, as the app had them when the release was made (`caas ps:resize`).
    #[serde(default)]
    pub resources: BTreeMap<String, caas_api::Resources>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuildRecord {
    pub app: String,
    pub number: u64,
    pub status: caas_api::BuildStatus,
    pub source: String,
    pub builder: Option<String>,
    pub release: Option<u64>,
    pub image_size: Option<u64>,
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// The server running it (`ServerRecord::id`): while that server is registered, no other
    /// takes the build for interrupted. Set by `Store::create_build`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// One desired instance and where it is placed. Written only by the scheduler, with
/// compare-and-swap.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AllocationRecord {
    pub id: String,
    pub app: String,
    pub release: u64,
    pub process: String,
    pub index: u32,
    pub host_id: String,
    pub created_at: Timestamp,
    pub desired: Desired,
    /// Its memory limit, MB (0 in records from before: the default).
    #[serde(default)]
    pub memory_mb: u64,
    /// The memory placement counted for it on its host, MB (0 in records from before
    /// reservations: the default reservation).
    #[serde(default)]
    pub reserved_mb: u64,
}

impl AllocationRecord {
    pub fn instance_name(&self) -> String {
        format!("{}.{}", self.process, self.index)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Desired {
    /// Keep it running.
    Run,
    /// Out of the routes; keep it running until `until` so in-flight requests finish, then the
    /// scheduler deletes the allocation and the agent stops the container.
    Drain { until: Timestamp },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostRecord {
    pub id: String,
    pub name: String,
    pub address: String,
    pub memory_mb: u64,
    pub cpus: u32,
    pub port_min: u16,
    pub port_max: u16,
    pub registered_at: Timestamp,
    /// On the control plane's machine: routes may use container addresses.
    #[serde(default)]
    pub colocated: bool,
    /// Its instances' limits may add up to `memory_mb` times this (`caasd --overcommit`);
    /// `None` in records from before: 1.
    #[serde(default)]
    pub overcommit: Option<f64>,
}

impl HostRecord {
    pub fn port_slots(&self) -> u32 {
        (self.port_max as u32 + 1).saturating_sub(self.port_min as u32)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Role {
    /// The admin token of the first version, before users: becomes the `admin` user's token at
    /// the next start (`Store::migrate_to_users`).
    Admin,
    /// A person (or a CI job) using the user API as this user.
    User { name: String },
    /// May only register an agent: the host named, at the address given (else the address the
    /// registration comes from), once when `once`. A token of the first version (no fields) is
    /// refused at start.
    Join {
        #[serde(default)]
        host: Option<String>,
        #[serde(default)]
        address: Option<String>,
        /// Used up by its first registration.
        #[serde(default)]
        once: bool,
        /// The embedded agent's: it may register as the control plane's own host.
        #[serde(default)]
        colocated: bool,
    },
    /// May only speak the agent protocol, as this host.
    Agent { host_id: String },
    /// May only speak the gateway protocol (read routes, report traffic).
    Gateway,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenRecord {
    pub role: Role,
    /// What it is for ("CI deploys"), as its creator said.
    pub label: String,
    pub created_at: Timestamp,
    /// Shown and used to revoke it (`caas tokens:revoke ID`); never the secret.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// Only this app, and only deploying to it and reading it.
    #[serde(default)]
    pub app: Option<String>,
    /// Roughly: written at most once a minute.
    #[serde(default)]
    pub last_used: Option<Timestamp>,
}

impl TokenRecord {
    pub fn new(role: Role, label: &str) -> Self {
        Self {
            role,
            label: label.to_string(),
            created_at: Timestamp::now(),
            id: crate::auth::short_id(),
            expires_at: None,
            app: None,
            last_used: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    /// Everything, users and hosts included; a member only the apps it created or was given.
    pub admin: bool,
    pub created_at: Timestamp,
}

/// One change, for `caas audit`: who, from where, what, on which app.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditRecord {
    pub at: Timestamp,
    pub user: String,
    /// The token's id.
    pub token: String,
    pub address: String,
    pub action: String,
    pub app: Option<String>,
    /// Keys, counts, versions: never a config value or a secret.
    pub detail: String,
}

/// A route key: `APP/vRELEASE/PROCESS.INDEX`. The value is `HOST_IP:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteKey {
    pub app: String,
    pub release: u64,
    pub instance: String,
}

impl RouteKey {
    pub fn encode(&self) -> String {
        format!("{}/v{}/{}", self.app, self.release, self.instance)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let mut parts = s.splitn(3, '/');
        let app = parts.next()?.to_string();
        let release = parts.next()?.strip_prefix('v')?.parse().ok()?;
        let instance = parts.next()?.to_string();
        Some(Self {
            app,
            release,
            instance,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_keys_round_trip() {
        let k = RouteKey {
            app: "demo".into(),
            release: 12,
            instance: "web.3".into(),
        };
        assert_eq!(k.encode(), "demo/v12/web.3");
        assert_eq!(RouteKey::decode(&k.encode()), Some(k));
        assert_eq!(RouteKey::decode("demo/12/web.3"), None);
        assert_eq!(RouteKey::decode("demo"), None);
    }
}
