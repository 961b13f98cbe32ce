//! Builds from git hosting webhooks (`/v1/apps/{app}/git`, `POST /v1/apps/{app}/webhooks/git`)
//! and deploy notifications (`/v1/apps/{app}/webhooks`).

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// The events a notification webhook may ask for.
pub const NOTIFY_EVENTS: [&str; 3] = ["release", "build", "crash"];

/// `PUT /v1/apps/{app}/git`: link the app to a repository caasd clones over HTTPS.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GitConnect {
    pub url: String,
    /// The branch whose pushes build; `main` when not given.
    #[serde(default)]
    pub branch: Option<String>,
    /// A deploy token (HTTP Basic password) for a private repository. Stored, never shown.
    #[serde(default)]
    pub token: Option<String>,
}

/// `GET /v1/apps/{app}/git`, and the answer to connecting.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GitConnection {
    pub app: String,
    pub url: String,
    pub branch: String,
    /// Whether a deploy token is stored (its value is never shown).
    pub token: bool,
    /// Where the git host sends push events: a path on the API's address.
    pub webhook_path: String,
    /// The secret to paste into the host's webhook settings: only in the answer to connecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    pub created_at: Timestamp,
    /// The last push event that was taken, if any.
    #[serde(default)]
    pub last_delivery: Option<GitDelivery>,
}

/// A push event that was taken: what it built.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GitDelivery {
    /// The host's id of the delivery (`X-GitHub-Delivery`, ...), when it sent one.
    pub id: Option<String>,
    /// `github`, `gitlab` or `gitea`.
    pub host: String,
    pub commit: String,
    pub build: u64,
    pub at: Timestamp,
}

/// The answer to a push event: what happened, in a line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookAnswer {
    pub message: String,
    /// The build it started, when it started one.
    #[serde(default)]
    pub build: Option<u64>,
}

/// `POST /v1/apps/{app}/webhooks`: notify a URL of the app's events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddNotifyHook {
    pub url: String,
    /// Some of [`NOTIFY_EVENTS`]; all of them when empty.
    #[serde(default)]
    pub events: Vec<String>,
}

/// `DELETE /v1/apps/{app}/webhooks`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RemoveNotifyHook {
    pub url: String,
}

/// One of an app's notification webhooks: `GET /v1/apps/{app}/webhooks`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotifyHook {
    pub url: String,
    pub events: Vec<String>,
    pub created_at: Timestamp,
    /// The signing secret: only in the answer to adding the webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Recent deliveries, newest first (kept in memory: a restart forgets them).
    #[serde(default)]
    pub deliveries: Vec<NotifyDelivery>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not answered with a 2xx yet; it will be tried again.
    Retrying,
    Delivered,
    /// Given up after the last try.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retrying => "retrying",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotifyDelivery {
    /// The event's id (`X-Caas-Delivery`).
    pub id: String,
    pub event: String,
    pub state: DeliveryState,
    pub attempts: u32,
    /// The receiver's last status code, when it answered.
    pub status: Option<u16>,
    /// Why the last try failed.
    pub error: Option<String>,
    pub at: Timestamp,
}

/// What caasd POSTs to a notification webhook, signed with `X-Caas-Signature-256:
/// sha256=HEX(HMAC-SHA256(secret, body))`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotifyEvent {
    pub id: String,
    /// `release`, `build` or `crash`.
    pub event: String,
    pub app: String,
    /// `succeeded` or `failed` for releases, `failed` for builds, `crash_loop` for crashes.
    pub status: String,
    /// The platform's line about it, as `caas logs` shows it.
    pub text: String,
    #[serde(default)]
    pub release: Option<u64>,
    #[serde(default)]
    pub build: Option<u64>,
    #[serde(default)]
    pub instance: Option<String>,
    pub at: Timestamp,
}
