//! The gateway protocol: how the gateway process (`caasd gateway`) learns where to send each
//! app's requests, and reports what it served.
//!
//! 1. `GET /v1/gateway/routes?index=N&wait=SECS` (blocking query, the gateway token): the routing
//!    table, answered at once when the server's routing index differs from `N`, else when it
//!    changes or `wait` passes. The gateway keeps the last table on its own disk and serves from
//!    it while the control plane is away.
//! 2. `POST /v1/gateway/report` every second or so: router log lines and per-app request counts
//!    since the last report (the source of `caas metrics`, `/metrics` and autoscaling).

use crate::agent::AppLogLine;
use serde::{Deserialize, Serialize};

/// Why an app that exists takes no traffic: what the gateway's 503 says.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Idle {
    /// It has a serving release and wants web instances, but none is up (starting, crashed).
    #[default]
    NoneUp,
    /// Nothing was ever deployed.
    NoRelease,
    /// Nothing serves because every release so far failed; `version` is the latest.
    Failed { version: u64 },
    /// Its first release is deploying.
    Starting { version: u64 },
    /// `web=0`.
    ScaledToZero,
}

/// One instance taking an app's traffic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Backend {
    /// `web.1`, for router lines.
    pub instance: String,
    /// `IP:PORT`.
    pub addr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppRouting {
    pub name: String,
    pub backends: Vec<Backend>,
    /// What the 503 says when `backends` is empty.
    #[serde(default)]
    pub idle: Idle,
    /// Custom domains served as this app besides `APP.DOMAIN`: exact names and `*.` wildcards
    /// (lowercase, no trailing dot).
    #[serde(default)]
    pub domains: Vec<String>,
    /// Plain HTTP requests get a 308 to HTTPS.
    #[serde(default)]
    pub redirect_https: bool,
    /// Who may reach it (`crate::access::allowed`): `(action, normalized CIDR)`.
    #[serde(default)]
    pub access: Vec<(crate::access::AccessAction, String)>,
    /// Its instances speak HTTP/2 (cleartext, prior knowledge): the gateway talks HTTP/2 to them.
    #[serde(default)]
    pub backend_h2: bool,
}

/// A certificate the gateway serves over TLS, with its private key (the gateway token's API
/// only; the user API never shows a key).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TlsCert {
    /// Stable for the certificate (a hash of the leaf), so the gateway parses each one once.
    pub id: String,
    /// The app whose names it serves (those of `names` that route to it); `None` for the
    /// platform's own, served for everything else (`*.DOMAIN`, and names no certificate covers).
    #[serde(default)]
    pub app: Option<String>,
    /// The names it is valid for, lowercase (`*.` for wildcards).
    pub names: Vec<String>,
    /// When it expires, ms since the epoch: of two that cover a name, the later one serves.
    #[serde(default)]
    pub not_after_ms: u64,
    pub chain_pem: String,
    pub key_pem: String,
}

/// `GET /v1/gateway/routes`: every app and where its traffic goes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoutingTable {
    /// Changes whenever the table does; the next request waits for another one.
    pub index: u64,
    /// The apps' domain (`APP.DOMAIN`).
    pub domain: String,
    pub apps: Vec<AppRouting>,
    /// Certificates for TLS, picked by SNI.
    #[serde(default)]
    pub certs: Vec<TlsCert>,
    /// TCP routes: public ports that forward to an app's web instances.
    #[serde(default)]
    pub tcp: Vec<TcpRoute>,
    /// ACME HTTP-01 challenges the gateway answers: `GET /.well-known/acme-challenge/TOKEN` on
    /// any host gets the key authorization.
    #[serde(default)]
    pub challenges: Vec<AcmeChallenge>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AcmeChallenge {
    pub token: String,
    pub key_authorization: String,
}

/// A public TCP port of the gateway and where its connections go.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TcpRoute {
    pub port: u16,
    pub app: String,
    /// The instances' port; `None`: the port of their HTTP backend address.
    #[serde(default)]
    pub target: Option<u16>,
}

/// Requests of one app since the last report, by the gateway that served them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppTraffic {
    pub app: String,
    /// Answers by status class: `[1xx, 2xx, 3xx, 4xx, 5xx]`. The gateway's own errors (502, 503,
    /// 504) count as 5xx.
    pub status: [u64; 5],
    /// Request durations in the buckets of [`LATENCY_BUCKETS_MS`] (upper bounds, ms), the last
    /// one for everything slower.
    pub latency: Vec<u64>,
    /// Sum of the durations, ms.
    pub latency_sum_ms: u64,
    /// Response body bytes sent to clients (as far as the instance declared them).
    pub bytes: u64,
}

/// Upper bounds of the latency buckets, in ms: Prometheus' habit of roughly doubling steps.
pub const LATENCY_BUCKETS_MS: [u64; 12] =
    [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];

/// `POST /v1/gateway/report`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GatewayReport {
    pub lines: Vec<AppLogLine>,
    pub traffic: Vec<AppTraffic>,
    /// Lines the gateway dropped because the control plane was away too long to hold them.
    #[serde(default)]
    pub dropped_lines: u64,
    /// The index of the routing table the gateway serves now: the control plane knows from it
    /// when a change of routes reaches clients (a deploy is "up at URL" then, not before).
    #[serde(default)]
    pub serving_index: Option<u64>,
}
