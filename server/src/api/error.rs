//! The one error type of the HTTP API. Every handler returns it; `IntoResponse` turns it into the
//! `{code, message}` body. Internal failures are logged in full and answered generically, so no
//! paths, engine messages or store details leak to callers.

use crate::docker::EngineError;
use crate::store::{StoreError, UpdateError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use caas_api::{ErrorBody, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(String),
    #[error("missing or invalid token: run caas login --server URL --token TOKEN")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    ImageUploadNeeded(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// Too little disk for new work (`caasd --min-free-disk`); the message says where.
    #[error("{0}")]
    NoRoom(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("too many failed logins from this address; try again in {0} s")]
    RateLimited(u64),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn no_app(name: &str) -> Self {
        Self::NotFound(format!("no app named {name:?}: see caas apps"))
    }

    fn parts(&self) -> (StatusCode, ErrorCode) {
        match self {
            Self::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidInput),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            Self::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Conflict),
            Self::ImageUploadNeeded(_) => (StatusCode::CONFLICT, ErrorCode::ImageUploadNeeded),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
            Self::NoRoom(_) => (
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::InsufficientStorage,
            ),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
        }
    }
}

impl ApiError {
    /// The status and body the client gets (internals logged, not told), for answers that carry
    /// an error inside a stream (a config change's events).
    pub fn answer(&self) -> (StatusCode, ErrorBody) {
        let (status, code) = self.parts();
        let message = match self {
            Self::Internal(detail) => {
                tracing::error!("internal error: {detail}");
                "the server failed to do this; its log has the details".to_string()
            }
            Self::Unavailable(detail) => {
                tracing::error!("unavailable: {detail}");
                "the server's Docker engine is not answering; check dockerd on the server"
                    .to_string()
            }
            other => other.to_string(),
        };
        (status, ErrorBody { code, message })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.answer();
        let mut resp = (status, Json(body)).into_response();
        if let Self::RateLimited(secs) = self {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl<E: Into<ApiError>> From<UpdateError<E>> for ApiError {
    fn from(e: UpdateError<E>) -> Self {
        match e {
            UpdateError::Store(s) => s.into(),
            UpdateError::Rejected(r) => r.into(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Unavailable(m) => Self::Unavailable(m),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<caas_api::NameError> for ApiError {
    fn from(e: caas_api::NameError) -> Self {
        Self::Invalid(e.to_string())
    }
}

/// JSON bodies that fail to parse get our error shape, not axum's plain-text rejection.
pub struct JsonBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError::Invalid(format!(
                "invalid request body: {}",
                rejection.body_text()
            ))),
        }
    }
}
