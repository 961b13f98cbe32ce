//! Wire types shared by the `caas` CLI, the `caasd` control plane and its agents.
//!
//! Everything here is plain data plus validation: serde only, no I/O, no async runtime. The REST
//! API is JSON over HTTP; each type below names the endpoint that carries it. Field names are part
//! of the public contract (`--json` output and scripts depend on them): add fields, never rename.

pub mod access;
pub mod addons;
pub mod agent;
pub mod canary;
pub mod checks;
pub mod domains;
pub mod gateway;
pub mod hooks;
mod hosts;
pub mod metrics;
pub mod names;
pub mod ports;
pub mod run;
pub mod servers;
mod text;
mod time;
pub mod users;

pub use names::{
    validate_app_name, validate_config_key, validate_process_type, validate_user_name, NameError,
    WEB,
};

pub use hosts::*;
pub use text::{format_bytes, path_segment};
pub use time::Timestamp;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Header that carries the API version a client speaks; reserved for future negotiation.
pub const API_PREFIX: &str = "/v1";

/// The body of every non-2xx response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable machine-readable code, see [`ErrorCode`].
    pub code: ErrorCode,
    /// One line, for humans, saying what to do.
    pub message: String,
}

/// Machine-readable error codes. The CLI maps them to exit codes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed or invalid input (400, 422).
    InvalidInput,
    /// Missing or wrong token (401).
    Unauthorized,
    /// The token is valid but may not do this (403).
    Forbidden,
    /// Unknown app, release, build, ... (404).
    NotFound,
    /// Already exists, or a concurrent change won (409).
    Conflict,
    /// The server does not have the image the deploy names; upload it first (409).
    ImageUploadNeeded,
    /// The upload is larger than the server accepts (413).
    TooLarge,
    /// A build failed (422).
    BuildFailed,
    /// The server could not do it; details are in the server log (500).
    Internal,
    /// A dependency (Docker Engine) is not answering (503).
    Unavailable,
    /// Too little free disk on the server for new work; nothing was changed (507).
    InsufficientStorage,
    /// Too many failed authentications from this address; `Retry-After` says when to try
    /// again (429).
    RateLimited,
}

// ---------------------------------------------------------------------------------------------
// Apps: GET/POST /v1/apps, GET/DELETE /v1/apps/{app}
// ---------------------------------------------------------------------------------------------

/// `POST /v1/apps`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateApp {
    pub name: String,
}

/// `PATCH /v1/apps/{app}`: the app's new name (`caas apps:rename`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RenameApp {
    pub name: String,
}

/// An app as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct App {
    pub name: String,
    pub created_at: Timestamp,
    /// `http://NAME.DOMAIN:PORT` as the gateway serves it.
    pub url: String,
    /// Version of the release that serves (the last one that came up), if any.
    pub release: Option<u64>,
    /// A release being rolled out: it becomes `release` once every instance it needs is up, or
    /// is marked failed (and `release` keeps serving).
    #[serde(default)]
    pub deploying: Option<u64>,
    /// Desired instance count per process type.
    pub formation: BTreeMap<String, u32>,
    /// The buildpack pinned with `caas buildpacks:set`, if any.
    #[serde(default)]
    pub buildpack: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Releases and deploys
// ---------------------------------------------------------------------------------------------

/// `POST /v1/apps/{app}/deploys`: deploy an image that the server's Docker engine has.
///
/// When `image_id` is set (the CLI's local image id), the server deploys exactly that image and
/// answers [`ErrorCode::ImageUploadNeeded`] when it does not have it; the CLI then uploads it with
/// `POST /v1/images` and retries. Without `image_id` the server resolves `image` itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeployImage {
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
}

/// `POST /v1/images` answers with the images that the uploaded `docker save` archive held.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoadedImages {
    pub images: Vec<String>,
}

/// A numbered, immutable release of an app: an image plus configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Release {
    pub app: String,
    pub version: u64,
    /// The tag caas gave the image (`caas/APP:vN`).
    pub image: String,
    /// The image's content id (`sha256:...`); containers are created from this.
    pub image_id: String,
    /// What made this release, for humans ("Deploy image demo:latest", "Rollback to v2").
    pub description: String,
    pub created_at: Timestamp,
    /// Command per process type; `None` runs the image's own entrypoint/cmd.
    pub process_types: BTreeMap<String, Option<String>>,
    /// How its rollout went. The server decides it; clients only read it.
    #[serde(default)]
    pub status: ReleaseStatus,
    /// It is the app's serving release.
    #[serde(default)]
    pub current: bool,
    /// Why it failed or was superseded, in one line.
    #[serde(default)]
    pub error: Option<String>,
    /// Its health checks (`caas checks`), part of it like its image and config.
    #[serde(default)]
    pub checks: Vec<checks::Check>,
    /// When it failed because of one instance: that instance's last lines of output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<String>,
    /// The user who made it (a deploy, a push, a config change, a rollback); `None` for releases
    /// from before this was recorded.
    #[serde(default)]
    pub created_by: Option<String>,
    /// The build that made it, for a build's release.
    #[serde(default)]
    pub build: Option<u64>,
    /// The names of its config vars (never their values).
    #[serde(default)]
    pub config_keys: Vec<String>,
    /// It runs as the app's canary beside the serving release (`caas releases:canary`).
    #[serde(default)]
    pub canary: bool,
}

/// Where a release's rollout stands: `GET /v1/apps/{app}/releases/{version}`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// Its instances are starting; the previous release keeps serving meanwhile.
    Deploying,
    /// Every instance it needed came up and it took over (it may have been replaced since).
    #[default]
    Succeeded,
    /// It did not come up (an instance crashed, or was not up before the start deadline); it
    /// never served, and the release before it kept serving.
    Failed,
    /// A newer release replaced it before it came up.
    Superseded,
    /// Recorded without rolling out (`caas push --canary`): it takes requests only as the
    /// app's canary, until promoted (then it rolls out as usual).
    Held,
}

impl ReleaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deploying => "deploying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Superseded => "superseded",
            Self::Held => "held",
        }
    }
}

/// `PATCH /v1/apps/{app}/config`: set (a value) or unset (`null`) config vars, all at once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigUpdate {
    pub vars: BTreeMap<String, Option<String>>,
}

/// The answer to a config change: the config now, and the release it made (none while the app
/// has never been deployed: the first deploy picks the config up).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigChange {
    pub config: BTreeMap<String, String>,
    pub release: Option<u64>,
    /// `false` when every var already had the value asked for (or an unset var was not set):
    /// nothing was recorded and no release was made.
    #[serde(default = "yes")]
    pub changed: bool,
}

/// `PATCH /v1/apps/{app}/config` asked with `Accept: application/x-ndjson`: the release
/// phase's output as it runs (a config change of an app with a `release:` process waits for it,
/// which may take minutes), then the outcome, one per line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConfigEvent {
    /// One line of the release phase's output.
    Line {
        text: String,
    },
    Done {
        change: ConfigChange,
    },
    /// What the plain request would have answered with `status`.
    Failed {
        status: u16,
        error: ErrorBody,
    },
}

fn yes() -> bool {
    true
}

/// `POST /v1/apps/{app}/rollback`: a new release with the image and config of `version`
/// (default: the release before the current one).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RollbackRequest {
    #[serde(default)]
    pub version: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// Formation and instances
// ---------------------------------------------------------------------------------------------

/// `PATCH /v1/apps/{app}/formation`: set instance counts per process type.
///
/// Counts are signed on the wire so that a negative count reaches the server's validation (and
/// gets its message) instead of failing to parse.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScaleRequest {
    pub quantities: BTreeMap<String, i64>,
}

/// `GET /v1/apps/{app}/formation` and the answer to a scale.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Formation {
    pub app: String,
    pub quantities: BTreeMap<String, u32>,
    /// Upper bound for any one quantity on this server.
    pub max_per_process: u32,
    /// After a scale: the instances no host could take, each with why (`web.3: ...`). They stay
    /// pending and are placed when capacity appears.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
    /// With `pending`: how to make room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// What an instance is doing, as the control plane last heard from its host.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Placed, the host has not reported it yet.
    Pending,
    /// The container runs but has not passed its health check yet.
    Starting,
    /// Healthy and, for `web`, receiving traffic.
    Up,
    /// Running but failing its health check (its liveness check, when it has one).
    Unhealthy,
    /// Running but failing its readiness check: out of the routes until it passes again.
    Unready,
    /// Exited; the host restarts it with back-off.
    Crashed,
    /// Replaced or scaled down: out of the routes, stops when the drain deadline passes.
    Draining,
    /// Its host stopped sending heartbeats.
    Lost,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Starting => "starting",
            Self::Up => "up",
            Self::Unhealthy => "unhealthy",
            Self::Unready => "unready",
            Self::Crashed => "crashed",
            Self::Draining => "draining",
            Self::Lost => "lost",
        }
    }
}

/// One instance (`web.1`) of an app: `GET /v1/apps/{app}/ps`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Instance {
    /// Allocation id, unique across the cluster.
    pub id: String,
    /// `PROCESS.INDEX`, e.g. `web.1`.
    pub name: String,
    pub process: String,
    pub index: u32,
    pub release: u64,
    /// Host name the instance is placed on.
    pub host: String,
    /// `IP:PORT` the instance is published on, once known.
    pub address: Option<String>,
    pub state: InstanceState,
    /// Restarts after crashes since the instance was placed.
    pub restarts: u32,
    /// When the instance entered its current state (or was placed, if not yet reported).
    pub since: Timestamp,
    pub created_at: Timestamp,
    /// Why it is not up, or what its failing check saw: the last check result that counted
    /// (`startup check GET /health: answered 500`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// Its memory limit (the most the container may use), MB.
    #[serde(default)]
    pub memory_mb: u64,
    /// The memory placement counts for it on its host (its reservation), MB.
    #[serde(default)]
    pub reserved_mb: u64,
    /// Its CPU cap in cores (`None`: no cap, a fair share of the host).
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Why a `pending` instance has no host yet: which resource no host has, on how many hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A process type's resources (`caas ps:resize`): `None` keeps the operator's default.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resources {
    /// Memory limit, MB: the container may not use more.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Memory reservation, MB: what placement counts on a host (as Kubernetes' request); at most
    /// the limit. `None`: the operator's default (`caasd --instance-reserve`), capped at the limit.
    #[serde(default)]
    pub reserve_mb: Option<u64>,
    /// CPU cap in cores (`0.5`, `2`): a hard cap, not only a share.
    #[serde(default)]
    pub cpus: Option<f64>,
}

/// `PUT /v1/apps/{app}/resources/{process}`: what changed, and the release it made (none while
/// the app has never been deployed, or when nothing changed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resize {
    pub process: String,
    pub resources: Resources,
    pub release: Option<u64>,
    pub changed: bool,
}

/// `POST /v1/apps/{app}/ps/restart` and `POST /v1/apps/{app}/ps/stop`: which instances. A
/// process type (`web`) names all of its instances, an instance name (`web.1`) one; no target
/// (restart only) means every instance of the app.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstancesRequest {
    #[serde(default)]
    pub target: Option<String>,
}

/// The answer to a restart or a stop: the instances it applies to, e.g. `["web.1", "web.2"]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstancesChanged {
    pub instances: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Logs: GET /v1/apps/{app}/logs?lines=N&tail=BOOL  (newline-delimited JSON of LogEvent)
// ---------------------------------------------------------------------------------------------

/// Where a log line came from. The source is set by whoever produced the line (the agent for app
/// output, the control plane for its own events), never parsed out of the text, so an app cannot
/// print lines that pass for platform lines.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    /// The app's own stdout/stderr.
    App,
    /// Platform events: deploy, scale, crash, restart, health.
    Caas,
    /// One line per request through the gateway.
    Router,
    /// Build output.
    Build,
}

impl LogSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::Caas => "caas",
            Self::Router => "router",
            Self::Build => "build",
        }
    }
}

/// One log line. Rendered as `TIMESTAMP SOURCE[TAG]: TEXT`, e.g. `app[web.1]: listening`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    pub ts: Timestamp,
    pub source: LogSource,
    /// `web.1` for app output, `deploy`/`scale`/`crash`/... for platform events.
    pub tag: String,
    pub text: String,
}

/// An element of the log stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogEvent {
    Line(LogLine),
    /// The reader fell behind and this many lines were dropped for it.
    Missed {
        count: u64,
    },
}

// ---------------------------------------------------------------------------------------------
// Log drains: GET/POST /v1/apps/{app}/drains, DELETE /v1/apps/{app}/drains/{id}
// ---------------------------------------------------------------------------------------------

/// `POST /v1/apps/{app}/drains`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddDrain {
    pub url: String,
}

/// A log drain of an app, with how it is doing since caasd started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Drain {
    /// Stable for a URL (`d.` and 12 hex digits), for `DELETE /v1/apps/{app}/drains/{id}`.
    pub id: String,
    pub url: String,
    pub state: DrainState,
    /// Lines sent and accepted by the far end.
    pub delivered: u64,
    /// Lines waiting to be sent.
    pub queued: u64,
    /// Lines dropped because the queue was full (the far end down or slow).
    pub dropped: u64,
    /// Why the last attempt failed, while it is failing.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DrainState {
    #[default]
    Connecting,
    Connected,
    /// The far end is down or refuses; lines queue (up to a bound) and it is retried.
    Failing,
}

impl DrainState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Failing => "failing",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics: GET /v1/apps/{app}/metrics?window=SECS
// ---------------------------------------------------------------------------------------------

/// An app's traffic over the last `window_secs`, as the gateway counted it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppMetrics {
    pub app: String,
    pub window_secs: u64,
    pub requests: u64,
    /// Requests per second over the window.
    pub rps: f64,
    /// Answers by status class: `[1xx, 2xx, 3xx, 4xx, 5xx]`.
    pub status: [u64; 5],
    /// Latency quantiles (upper bounds of their buckets), ms; `None` without requests.
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    /// Response bytes.
    pub bytes: u64,
    /// Every instance with its CPU and memory, as their agents last read them.
    #[serde(default)]
    pub instances: Vec<metrics::InstanceMetrics>,
}

/// `GET /v1/info`: what the server is, without authentication.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerInfo {
    pub version: String,
    pub domain: String,
    /// Base URL apps are served under, e.g. `http://{app}.localhost:8080`.
    pub app_url_template: String,
    /// Largest build upload the server accepts, in MiB.
    #[serde(default)]
    pub max_upload_mb: u64,
}

// ---------------------------------------------------------------------------------------------
// Builds: POST /v1/apps/{app}/builds?source=KIND&name=FILE, GET .../builds[/{n}[/output]]
// ---------------------------------------------------------------------------------------------

/// What a build upload is. The body of `POST /v1/apps/{app}/builds` is the raw file.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A directory, packed by the CLI as a gzipped tar.
    Dir,
    /// A `.tar.gz` / `.tgz` as the user has it.
    TarGz,
    Zip,
    War,
    Jar,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dir => "dir",
            Self::TarGz => "tar_gz",
            Self::Zip => "zip",
            Self::War => "war",
            Self::Jar => "jar",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BuildStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl BuildStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// One build of an app: `GET /v1/apps/{app}/builds`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Build {
    pub app: String,
    pub number: u64,
    pub status: BuildStatus,
    /// What was pushed: `directory`, `app.war`, `git main@1a2b3c4`, ...
    pub source: String,
    /// The buildpack that built it, or `Dockerfile`.
    pub builder: Option<String>,
    /// The release it made, when it succeeded.
    pub release: Option<u64>,
    /// Size of the app image, in bytes.
    pub image_size: Option<u64>,
    /// Why it failed, in one line.
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// The stream `POST /v1/apps/{app}/builds` answers with (newline-delimited JSON), ending with
/// `succeeded` or `failed`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BuildEvent {
    /// Another build of this app runs; this one waits for it.
    Queued {
        build: u64,
        waiting_for: u64,
    },
    Started {
        build: u64,
    },
    /// One line of build output, as the builder printed it.
    Line {
        text: String,
    },
    Succeeded {
        build: u64,
        release: u64,
        image: String,
        image_size: u64,
    },
    Failed {
        build: u64,
        message: String,
    },
}

/// `GET /v1/buildpacks`: installed buildpacks in detect order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Buildpack {
    pub name: String,
    /// Shipped with caas (as opposed to dropped in by the operator).
    pub bundled: bool,
}

/// `PUT /v1/apps/{app}/buildpack`: pin a buildpack (`null` unpins: detect again).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetBuildpack {
    pub buildpack: Option<String>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_names_are_one_path_segment() {
        assert_eq!(super::path_segment("*.example.com"), "*.example.com");
        assert_eq!(super::path_segment("a/b?c"), "a%2Fb%3Fc");
    }

    use super::format_bytes;

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.5 KB");
        assert_eq!(format_bytes(570_598_400), "544.2 MB");
        assert_eq!(format_bytes(3 << 30), "3.0 GB");
    }
}
