//! The agent's HTTP client for the control plane.

use caas_api::agent::{Assignments, Heartbeat, LogBatch, RegisterRequest, RegisterResponse};
use caas_api::ErrorBody;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the control plane refused the agent token")]
    Unauthorized,
    #[error("control plane answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("control plane unreachable: {0}")]
    Transport(#[from] reqwest::Error),
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("a client without TLS always builds");
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(ClientError::Unauthorized);
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|e| e.message)
            .unwrap_or(text);
        Err(ClientError::Status {
            status: status.as_u16(),
            message,
        })
    }

    pub async fn register(
        &self,
        join_token: &str,
        req: &RegisterRequest,
    ) -> Result<RegisterResponse, ClientError> {
        let resp = self
            .http
            .post(format!("{}/v1/agent/register", self.base))
            .bearer_auth(join_token)
            .json(req)
            .timeout(Duration::from_secs(15))
            .send()
            .await?;
        Ok(Self::check(resp).await?.json().await?)
    }

    /// Blocking query: returns when the assignment index differs from `index`, or after `wait`.
    pub async fn assignments(
        &self,
        token: &str,
        index: u64,
        wait: Duration,
    ) -> Result<Assignments, ClientError> {
        let resp = self
            .http
            .get(format!(
                "{}/v1/agent/assignments?index={index}&wait={}",
                self.base,
                wait.as_secs()
            ))
            .bearer_auth(token)
            .timeout(wait + Duration::from_secs(10))
            .send()
            .await?;
        Ok(Self::check(resp).await?.json().await?)
    }

    /// `docker save` of an assigned image, streamed from the control plane.
    pub async fn image(
        &self,
        token: &str,
        id: &str,
    ) -> Result<
        impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
        ClientError,
    > {
        let resp = self
            .http
            .get(format!("{}/v1/agent/images/{id}", self.base))
            .bearer_auth(token)
            // Images can be large; only a stalled connection should end this.
            .timeout(Duration::from_secs(3600))
            .send()
            .await?;
        Ok(Self::check(resp).await?.bytes_stream())
    }

    pub async fn heartbeat(&self, token: &str, hb: &Heartbeat) -> Result<(), ClientError> {
        let resp = self
            .http
            .post(format!("{}/v1/agent/heartbeat", self.base))
            .bearer_auth(token)
            .json(hb)
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        Self::check(resp).await?;
        Ok(())
    }

    pub async fn ship_logs(&self, token: &str, batch: &LogBatch) -> Result<(), ClientError> {
        let resp = self
            .http
            .post(format!("{}/v1/agent/logs", self.base))
            .bearer_auth(token)
            .json(batch)
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        Self::check(resp).await?;
        Ok(())
    }
}
