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
    /// Nothing was ever deployed, or the first release failed.
    NoRelease,
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
