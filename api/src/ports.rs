//! TCP routes: `GET/POST /v1/apps/{app}/ports`, `DELETE /v1/apps/{app}/ports/{port}`. A public
//! port on the gateway that forwards TCP connections, round robin, to the app's web instances
//! (a database, a custom protocol served by an app).

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// `POST /v1/apps/{app}/ports`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddPort {
    /// Only `tcp` for now.
    pub protocol: String,
    /// The public port wanted; the server picks a free one in its range without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// The instances' port connections go to; without it, their `$PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u32>,
}

/// One of an app's TCP routes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortRoute {
    pub protocol: String,
    /// The gateway's public port.
    pub port: u16,
    /// The instances' port; `None`: their `$PORT`.
    pub target: Option<u16>,
    /// Where clients connect: `APP.DOMAIN:PORT`.
    pub address: String,
    pub created_at: Timestamp,
}
