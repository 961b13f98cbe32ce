//! The agent's HTTP client for the control plane: one or several servers (`--server
//! URL[,URL...]`, servers sharing one etcd), the one it talks to now first. When that one does not
//! answer (no connection, or no answer in time), the request goes to the next: all of them serve
//! the same API from the same store and, sharing one certificate, match the same pin.

use crate::api_tls::PinnedVerifier;
use anyhow::Context;
use caas_api::agent::{Assignments, Heartbeat, LogBatch, RegisterRequest, RegisterResponse};
use caas_api::ErrorBody;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the control plane refused the agent token")]
    Unauthorized,
    #[error("control plane answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("control plane unreachable: {0}")]
    Transport(#[from] reqwest::Error),
    /// The server showed another certificate than the pinned one: someone may be in between, or
    /// the pin is wrong. Never retried.
    #[error("the control plane at {server} presented the certificate {seen}, not the pinned {pin}: check --server-fingerprint against what caas hosts:add printed (or someone is intercepting)")]
    NotPinned {
        server: String,
        seen: String,
        pin: String,
    },
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The servers' URLs, without a trailing `/`.
    bases: Arc<Vec<String>>,
    /// Which of `bases` answered last: requests go there first.
    current: Arc<AtomicUsize>,
    verifier: Option<Arc<PinnedVerifier>>,
}

impl Client {
    /// A client for `servers` (`URL[,URL...]`): over TLS trusting only the certificate `pin` for
    /// `https://`, plain for `http://` (an agent that joined before TLS; warned about unless on
    /// loopback). Every URL must use the same scheme.
    pub fn new(servers: &str, pin: Option<&str>) -> anyhow::Result<Self> {
        let bases: Vec<String> = servers
            .split(',')
            .map(|b| b.trim().trim_end_matches('/').to_string())
            .filter(|b| !b.is_empty())
            .collect();
        let base = bases.first().cloned().unwrap_or_default();
        let scheme = |b: &str| b.split_once("://").map(|(s, _)| s.to_string());
        anyhow::ensure!(
            bases.iter().all(|b| scheme(b) == scheme(&base)),
            "invalid --server {servers:?}: give every server's URL with the same scheme, https://HOST:PORT,https://HOST:PORT"
        );
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30));
        let (builder, verifier) = if base.starts_with("https://") {
            let pin = pin.context(
                "an https:// --server needs --server-fingerprint sha256:... (caas hosts:add prints it)",
            )?;
            let (config, verifier) = crate::api_tls::pinned_client(pin);
            (builder.tls_backend_preconfigured(config), Some(verifier))
        } else if base.starts_with("http://") {
            anyhow::ensure!(
                pin.is_none(),
                "--server-fingerprint pins a TLS certificate: give --server as https://{}",
                base.trim_start_matches("http://")
            );
            if !bases.iter().all(|b| loopback(b)) {
                tracing::warn!(
                    "talking to the control plane at {base} in clear: tokens and config vars cross the network unencrypted; use the https:// URL and --server-fingerprint that caas hosts:add prints"
                );
            }
            (builder, None)
        } else {
            anyhow::bail!(
                "invalid --server {base:?}: give the control plane's URL, https://HOST:PORT"
            );
        };
        Ok(Self {
            http: builder
                .build()
                .context("setting up the agent's HTTP client")?,
            bases: Arc::new(bases),
            current: Arc::new(AtomicUsize::new(0)),
            verifier,
        })
    }

    /// The server requests go to now.
    pub fn server(&self) -> &str {
        &self.bases[self.current.load(Ordering::Relaxed) % self.bases.len()]
    }

    /// A transport error as the pin mismatch it was, if the server showed another certificate.
    fn transport(&self, e: reqwest::Error) -> ClientError {
        match self
            .verifier
            .as_ref()
            .and_then(|v| v.refused().map(|s| (v, s)))
        {
            Some((v, seen)) => ClientError::NotPinned {
                server: self.server().to_string(),
                seen,
                pin: v.pin().to_string(),
            },
            None => ClientError::Transport(e),
        }
    }

    /// Sends the request `make` builds for a server's URL: to the server that answered last,
    /// then, while servers do not answer, to each of the others in turn.
    async fn send(
        &self,
        make: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let first = self.current.load(Ordering::Relaxed);
        let mut tried = 0;
        loop {
            let at = (first + tried) % self.bases.len();
            let base = &self.bases[at];
            match make(base).send().await {
                Ok(resp) => {
                    if at != first {
                        self.current.store(at, Ordering::Relaxed);
                        tracing::info!("talking to the control plane at {base} now");
                    }
                    return Self::check(resp).await;
                }
                Err(e) => {
                    let err = self.transport(e);
                    tried += 1;
                    let unanswered = matches!(&err, ClientError::Transport(t) if t.is_connect() || t.is_timeout());
                    if !unanswered || tried >= self.bases.len() {
                        return Err(err);
                    }
                    tracing::warn!(
                        "the control plane at {base} does not answer ({err}); trying {}",
                        self.bases[(first + tried) % self.bases.len()]
                    );
                }
            }
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
            .send(|base| {
                self.http
                    .post(format!("{base}/v1/agent/register"))
                    .bearer_auth(join_token)
                    .json(req)
                    .timeout(Duration::from_secs(15))
            })
            .await?;
        Ok(resp.json().await?)
    }

    /// Blocking query: returns when the assignment index differs from `index`, or after `wait`.
    pub async fn assignments(
        &self,
        token: &str,
        index: u64,
        wait: Duration,
    ) -> Result<Assignments, ClientError> {
        let resp = self
            .send(|base| {
                self.http
                    .get(format!(
                        "{base}/v1/agent/assignments?index={index}&wait={}",
                        wait.as_secs()
                    ))
                    .bearer_auth(token)
                    .timeout(wait + Duration::from_secs(10))
            })
            .await?;
        Ok(resp.json().await?)
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
            .send(|base| {
                self.http
                    .get(format!("{base}/v1/agent/images/{id}"))
                    .bearer_auth(token)
                    // Images can be large; only a stalled connection should end this.
                    .timeout(Duration::from_secs(3600))
            })
            .await?;
        Ok(resp.bytes_stream())
    }

    pub async fn heartbeat(&self, token: &str, hb: &Heartbeat) -> Result<(), ClientError> {
        self.send(|base| {
            self.http
                .post(format!("{base}/v1/agent/heartbeat"))
                .bearer_auth(token)
                .json(hb)
                .timeout(Duration::from_secs(10))
        })
        .await?;
        Ok(())
    }

    pub async fn ship_logs(&self, token: &str, batch: &LogBatch) -> Result<(), ClientError> {
        self.send(|base| {
            self.http
                .post(format!("{base}/v1/agent/logs"))
                .bearer_auth(token)
                .json(batch)
                .timeout(Duration::from_secs(10))
        })
        .await?;
        Ok(())
    }
}

/// Whether a URL names a loopback host, where traffic in clear does not cross the network.
fn loopback(base: &str) -> bool {
    let host = base
        .split("://")
        .nth(1)
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
