//! The dashboard's client of the API. Every read and every change the dashboard makes is an HTTP
//! request to the same router the CLI talks to (`Authorization: Bearer` with the session's
//! token, the browser's address as the client address), handed to it in-process rather than
//! over a socket: the same handlers, authorization, validation, audit log and rate limit, and no
//! second way to change state.

use crate::api::auth::ClientAddr;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use caas_api::ErrorBody;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tower::ServiceExt;

/// Largest JSON answer the dashboard reads whole.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct Api {
    router: Router,
}

/// Who is asking: the session's token, from the browser's address.
#[derive(Clone)]
pub struct As {
    pub token: String,
    pub addr: Option<ClientAddr>,
}

/// An API answer that was not a success, as the page shows it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
}

impl Failure {
    fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }

    /// The token no longer works: the session must end.
    pub fn signs_out(&self) -> bool {
        self.status == StatusCode::UNAUTHORIZED
            || (self.status == StatusCode::FORBIDDEN && self.message.contains("expired"))
    }
}

impl Api {
    pub fn new(router: Router) -> Self {
        Self { router }
    }

    async fn send(
        &self,
        who: &As,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<axum::response::Response, Failure> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", who.token));
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let mut req = req
            .body(body.map_or_else(Body::empty, Body::from))
            .map_err(|e| Failure::internal(format!("building a request: {e}")))?;
        if let Some(addr) = who.addr {
            req.extensions_mut().insert(addr);
        }
        let resp = match self.router.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = read(resp.into_body()).await.unwrap_or_default();
        Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) => Failure {
                status,
                message: e.message,
            },
            Err(_) => Failure {
                status,
                message: format!("the API answered {status}"),
            },
        })
    }

    /// `GET path` as `T`.
    pub async fn get<T: DeserializeOwned>(&self, who: &As, path: &str) -> Result<T, Failure> {
        let resp = self.send(who, Method::GET, path, None).await?;
        decode(resp).await
    }

    /// A change with a JSON body; the answer as `T`.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        who: &As,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, Failure> {
        let body = serde_json::to_vec(body).map_err(|e| Failure::internal(e.to_string()))?;
        let resp = self.send(who, method, path, Some(body)).await?;
        decode(resp).await
    }

    /// A change whose answer has no body worth reading (`DELETE`: 204).
    pub async fn delete(&self, who: &As, path: &str) -> Result<(), Failure> {
        self.send(who, Method::DELETE, path, None).await?;
        Ok(())
    }

    /// `GET path` as a stream (logs, build output), once the API has accepted it.
    pub async fn stream(&self, who: &As, path: &str) -> Result<Body, Failure> {
        Ok(self.send(who, Method::GET, path, None).await?.into_body())
    }
}

async fn read(body: Body) -> Result<Vec<u8>, Failure> {
    let limited = http_body_util::Limited::new(body, MAX_ANSWER);
    limited
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .map_err(|e| Failure::internal(format!("reading the API's answer: {e}")))
}

async fn decode<T: DeserializeOwned>(resp: axum::response::Response) -> Result<T, Failure> {
    let bytes = read(resp.into_body()).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Failure::internal(format!("the API's answer does not parse: {e}")))
}

impl Api {
    /// `GET path` as text (a build's output).
    pub async fn text(&self, who: &As, path: &str) -> Result<String, Failure> {
        let resp = self.send(who, Method::GET, path, None).await?;
        let bytes = read(resp.into_body()).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
