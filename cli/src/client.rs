//! HTTP to the caas server, and turning its failures into [`CliError`]s.

use crate::config::{Settings, DEFAULT_SERVER};
use crate::error::CliError;
use crate::output::sanitize;
use anyhow::{Context, Result};
use caas_api::ErrorBody;
use reqwest::blocking::{Body, RequestBuilder, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// The header caasd's gateway puts on the answers it makes itself (unknown host, no instance):
/// an answer with it comes from the gateway, which serves apps, not from the API.
const GATEWAY_HEADER: &str = "x-caas-gateway";

/// Ordinary requests give up after this; streams (logs) and uploads have no overall limit, only
/// the connect timeout, because they legitimately last as long as the user wants.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Client {
    http: reqwest::blocking::Client,
    server: String,
    token: Option<String>,
}

impl Client {
    pub fn new(settings: &Settings) -> Result<Self> {
        let url = reqwest::Url::parse(&settings.server).map_err(|e| {
            CliError::usage(format!(
                "invalid server URL {:?} ({e}): use http://HOST:PORT or https://HOST",
                settings.server
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(CliError::usage(format!(
                "invalid server URL {:?}: use http://HOST:PORT or https://HOST",
                settings.server
            ))
            .into());
        }
        if let Some(token) = &settings.token {
            if HeaderValue::from_str(token).is_err() {
                return Err(CliError::usage(
                    "the token contains characters a token cannot have: run caas login --server URL --token TOKEN",
                )
                .into());
            }
        }
        let http = reqwest::blocking::Client::builder()
            // Per request instead: see REQUEST_TIMEOUT.
            .timeout(None)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("caas-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("setting up the HTTP client")?;
        Ok(Self {
            http,
            server: settings.server.clone(),
            token: settings.token.clone(),
        })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// The token this client sends, for the one connection that is not made by the blocking
    /// client (`caas run`'s upgrade).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// A transport failure of a request made elsewhere, mapped as this client maps its own.
    pub fn failed_transport(&self, err: reqwest::Error) -> anyhow::Error {
        self.transport_error(err)
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.authorize(
            self.http
                .request(method, format!("{}{}", self.server, path)),
        )
    }

    fn authorize(&self, mut req: RequestBuilder) -> RequestBuilder {
        if let Some(token) = &self.token {
            // Validated in `new`; marked sensitive so it never shows in debug output.
            if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {token}")) {
                value.set_sensitive(true);
                req = req.header(AUTHORIZATION, value);
            }
        }
        req
    }

    /// Sends a request and returns the response if it is a success, else the server's error.
    fn send(&self, req: RequestBuilder) -> Result<Response> {
        let resp = req.send().map_err(|e| self.transport_error(e))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(error_from_response(resp, &self.server).into())
        }
    }

    fn send_json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T> {
        let resp = self.send(req.timeout(REQUEST_TIMEOUT))?;
        let url = resp.url().path().to_string();
        let bytes = resp.bytes().map_err(|e| self.transport_error(e))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("the server's answer to {url} is not what caas expects"))
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send_json(self.request(Method::GET, path))
    }

    pub fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.send_json(self.request(Method::POST, path).json(body))
    }

    pub fn patch<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.send_json(self.request(Method::PATCH, path).json(body))
    }

    pub fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.send_json(self.request(Method::PUT, path).json(body))
    }

    pub fn delete(&self, path: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, path).timeout(REQUEST_TIMEOUT))?;
        Ok(())
    }

    /// DELETE `path?query`, the query form-encoded.
    pub fn delete_query(&self, path: &str, query: &[(&str, &str)]) -> Result<()> {
        let mut url = reqwest::Url::parse(&format!("{}{}", self.server, path))
            .with_context(|| format!("building the URL for {path}"))?;
        url.query_pairs_mut().extend_pairs(query);
        self.send(
            self.authorize(self.http.request(Method::DELETE, url))
                .timeout(REQUEST_TIMEOUT),
        )?;
        Ok(())
    }

    /// PATCHes `body` as JSON asking for a stream of events (`Accept: application/x-ndjson`):
    /// the answer is read as it arrives, with no overall timeout, since the server works for as
    /// long as what it streams (a release phase) takes.
    pub fn patch_events<B: Serialize + ?Sized>(&self, path: &str, body: &B) -> Result<Response> {
        let req = self
            .request(Method::PATCH, path)
            .header(reqwest::header::ACCEPT, "application/x-ndjson")
            .json(body);
        self.send(req)
    }

    /// A request whose answer is read as it arrives (`Response` is `Read`); no overall timeout.
    /// `query` is form-encoded onto `path`.
    pub fn get_stream(&self, path: &str, query: &[(&str, &str)]) -> Result<Response> {
        let mut url = reqwest::Url::parse(&format!("{}{}", self.server, path))
            .with_context(|| format!("building the URL for {path}"))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        self.send(self.authorize(self.http.request(Method::GET, url)))
    }

    /// Streams `body` as the request body (chunked, no Content-Length), no overall timeout.
    pub fn post_stream<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &'static str,
        body: Body,
    ) -> Result<T> {
        let req = self
            .request(Method::POST, path)
            .header(CONTENT_TYPE, content_type)
            .body(body);
        let resp = self.send(req)?;
        let bytes = resp.bytes().map_err(|e| self.transport_error(e))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("the server's answer to {path} is not what caas expects"))
    }

    /// Sends `body` streamed with `method` (a restore's dump), no overall timeout; answers the
    /// response once the server has taken it all.
    pub fn send_stream(
        &self,
        method: Method,
        path: &str,
        content_type: &'static str,
        body: Body,
    ) -> Result<Response> {
        let req = self
            .request(method, path)
            .header(CONTENT_TYPE, content_type)
            .body(body);
        self.send(req)
    }

    /// POSTs `body` (with its length, so the server can refuse an oversized upload at once) to
    /// `path?query`, the query form-encoded. Answers the response to read as it arrives: no
    /// overall timeout, since what follows the upload (a build) takes as long as it takes.
    pub fn post_upload(
        &self,
        path: &str,
        query: &[(&str, &str)],
        content_type: &'static str,
        body: Body,
    ) -> Result<Response> {
        let mut url = reqwest::Url::parse(&format!("{}{}", self.server, path))
            .with_context(|| format!("building the URL for {path}"))?;
        url.query_pairs_mut().extend_pairs(query);
        let req = self
            .authorize(self.http.request(Method::POST, url))
            .header(CONTENT_TYPE, content_type)
            .body(body);
        self.send(req)
    }

    /// Connection failures and timeouts become exit code 6; anything else a plain failure.
    fn transport_error(&self, err: reqwest::Error) -> anyhow::Error {
        let detail = root_cause(&err);
        if err.is_connect() || err.is_timeout() {
            let what = if err.is_timeout() {
                "timed out"
            } else {
                "connection failed"
            };
            return CliError::Unreachable(format!(
                "cannot reach the caas server at {} ({what}: {detail}); check CAAS_SERVER or run caas login --server URL --token TOKEN",
                self.server
            ))
            .into();
        }
        CliError::Failed(format!("talking to {}: {detail}", self.server)).into()
    }
}

/// The innermost error: "Connection refused (os error 111)" says more than "error sending request".
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn error_from_response(resp: Response, server: &str) -> CliError {
    if resp.headers().contains_key(GATEWAY_HEADER) {
        return gateway_error(server);
    }
    let status = resp.status();
    // An error body is small; if reading it fails we still have the status.
    let body = resp.bytes().map(|b| b.to_vec()).unwrap_or_default();
    api_error(status, &body)
}

/// The server URL names caas's gateway. Its own answer ("no app is served at host ...") would send
/// the user after apps; what is wrong is the address, so this is "cannot reach the API" (exit 6).
fn gateway_error(server: &str) -> CliError {
    CliError::Unreachable(format!(
        "{server} is caas's gateway (it serves apps), not its API; the API is at the address of \
         caasd's --api (default {DEFAULT_SERVER}): set CAAS_SERVER to it or run caas login --server URL"
    ))
}

/// Turns a non-2xx answer into a [`CliError`]: the server's `ErrorBody` when it sent one, with its
/// message verbatim, else a message made from the status.
pub fn api_error(status: StatusCode, body: &[u8]) -> CliError {
    if let Ok(ErrorBody { code, message }) = serde_json::from_slice::<ErrorBody>(body) {
        return CliError::Api {
            status: status.as_u16(),
            code: Some(code),
            message: sanitize(&message),
        };
    }
    // A newer server may send a code this client does not know; its message is still the best
    // thing to show, and the status still gives the exit code.
    #[derive(serde::Deserialize)]
    struct UnknownCode {
        message: String,
    }
    if let Ok(UnknownCode { message }) = serde_json::from_slice::<UnknownCode>(body) {
        return CliError::Api {
            status: status.as_u16(),
            code: None,
            message: sanitize(&message),
        };
    }
    let message = match status {
        StatusCode::UNAUTHORIZED => {
            "unauthorized: run caas login --server URL --token TOKEN".to_string()
        }
        StatusCode::FORBIDDEN => "forbidden: this token may not do that".to_string(),
        _ => {
            // Show the start of whatever came back (a proxy's error page, say), on one line.
            let text = sanitize(&String::from_utf8_lossy(body).replace(['\n', '\r'], " "));
            let text: String = text.trim().chars().take(200).collect();
            if text.is_empty() {
                format!("the server answered {status}")
            } else {
                format!("the server answered {status}: {text}")
            }
        }
    };
    CliError::Api {
        status: status.as_u16(),
        code: None,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caas_api::ErrorCode;

    #[test]
    fn error_bodies_keep_the_server_message() {
        let body = br#"{"code":"conflict","message":"app \"demo\" already exists"}"#;
        let err = api_error(StatusCode::CONFLICT, body);
        assert_eq!(err.to_string(), "app \"demo\" already exists");
        assert_eq!(err.api_code(), Some(ErrorCode::Conflict));
        assert_eq!(err.exit_code(), 5);

        let body = br#"{"code":"unauthorized","message":"wrong token: run caas login"}"#;
        let err = api_error(StatusCode::UNAUTHORIZED, body);
        assert_eq!(err.to_string(), "wrong token: run caas login");
        assert_eq!(err.exit_code(), 3);

        let body = br#"{"code":"image_upload_needed","message":"upload it"}"#;
        let err = api_error(StatusCode::CONFLICT, body);
        assert_eq!(err.api_code(), Some(ErrorCode::ImageUploadNeeded));
    }

    #[test]
    fn non_json_401_says_to_log_in() {
        let err = api_error(StatusCode::UNAUTHORIZED, b"<html>nope</html>");
        assert_eq!(
            err.to_string(),
            "unauthorized: run caas login --server URL --token TOKEN"
        );
        assert_eq!(err.exit_code(), 3);
    }

    #[test]
    fn other_non_json_answers_name_the_status() {
        let err = api_error(StatusCode::BAD_GATEWAY, b"upstream\ndown\x1b[2J");
        assert_eq!(
            err.to_string(),
            "the server answered 502 Bad Gateway: upstream down[2J"
        );
        assert_eq!(err.exit_code(), 1);
        let err = api_error(StatusCode::NOT_FOUND, b"");
        assert_eq!(err.to_string(), "the server answered 404 Not Found");
        assert_eq!(err.exit_code(), 4);
    }

    #[test]
    fn unknown_codes_fall_back_to_the_status() {
        // A newer server may add codes; the status still gives a sensible exit code.
        let body = br#"{"code":"some_future_code","message":"slow down"}"#;
        let err = api_error(StatusCode::SERVICE_UNAVAILABLE, body);
        assert_eq!(err.to_string(), "slow down");
        assert_eq!(err.exit_code(), 1);
        let err = api_error(StatusCode::UNPROCESSABLE_ENTITY, body);
        assert_eq!(err.exit_code(), 2);
        // Known now: too many failed logins is about authentication.
        let limited = br#"{"code":"rate_limited","message":"slow down"}"#;
        assert_eq!(
            api_error(StatusCode::TOO_MANY_REQUESTS, limited).exit_code(),
            3
        );
    }

    #[test]
    fn refuses_server_urls_without_a_scheme() {
        let settings = Settings {
            server: "127.0.0.1:7080".into(),
            token: None,
        };
        let err = Client::new(&settings).err().unwrap();
        assert_eq!(err.downcast_ref::<CliError>().unwrap().exit_code(), 2);
    }

    #[test]
    fn the_gateway_is_named_with_its_port_and_exits_6() {
        let err = gateway_error("http://127.0.0.1:8080");
        assert_eq!(err.exit_code(), 6);
        let text = err.to_string();
        assert!(
            text.starts_with("http://127.0.0.1:8080 is caas's gateway"),
            "{text}"
        );
        assert!(
            text.contains("--api (default http://127.0.0.1:7080)"),
            "{text}"
        );
    }

    #[test]
    fn refused_connections_exit_6() {
        // Port 1 on loopback: nothing listens there, so the connect fails at once.
        let settings = Settings {
            server: "http://127.0.0.1:1".into(),
            token: Some("t".into()),
        };
        let client = Client::new(&settings).unwrap();
        let err = client.get::<serde_json::Value>("/v1/apps").unwrap_err();
        let cli = err.downcast_ref::<CliError>().unwrap();
        assert_eq!(cli.exit_code(), 6, "{cli}");
        assert!(cli.to_string().contains("cannot reach"), "{cli}");
    }
}
