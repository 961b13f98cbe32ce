//! The control-plane servers (`GET /v1/servers`, `caas servers`).

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// One caasd server sharing the platform's store. With the embedded store there is one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ControlServer {
    pub id: String,
    /// The host name it was started with (`caasd --host-name`).
    pub name: String,
    /// Its API, as clients reach it.
    pub api: String,
    /// It runs the scheduler (exactly one server leads at a time).
    pub leader: bool,
    /// It answered the server that made this list just now (itself always does).
    pub healthy: bool,
    pub started_at: Timestamp,
    pub version: String,
}
