//! Requests to a platform's apps through its gateway, as a user's browser or curl makes them.

use std::io;

use super::{Platform, DOMAIN};
use crate::http::{http_request, HttpResponse, HTTP_TIMEOUT};
use crate::process::{run, CmdOutput};
use std::process::Command;
use std::time::Duration;

impl Platform {
    /// `GET path` through the gateway with `Host: APP.localhost`: `(status, body)`.
    pub fn http_get(&self, app: &str, path: &str) -> io::Result<(u16, String)> {
        let r = self.http("GET", &format!("{app}.{DOMAIN}"), path, &[], b"")?;
        Ok((r.status, r.body))
    }

    /// Any request through the gateway, with any Host header.
    pub fn http(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<HttpResponse> {
        http_request(
            self.gateway(),
            method,
            host,
            path,
            headers,
            body,
            HTTP_TIMEOUT,
        )
    }

    /// `curl -sS ARGS URL` for `https://HOST:PORT/PATH` on the gateway's HTTPS listener, with
    /// `HOST` resolved to it (`--resolve`), so SNI and certificate checks are what a client on
    /// the real name gets. Add `--cacert FILE`, `-k`, `--http2`... as needed; `-w` output is
    /// stdout after the body.
    pub fn curl_https(&self, host: &str, path: &str, args: &[&str]) -> CmdOutput {
        let addr = self.https();
        let url = format!("https://{host}:{}{path}", addr.port());
        let resolve = format!("{host}:{}:{}", addr.port(), addr.ip());
        run(
            Command::new("curl")
                .args(["-sS", "--max-time", "20", "--resolve", &resolve])
                .args(args)
                .arg(url),
            None,
            Duration::from_secs(30),
        )
    }

    /// `curl -sS ARGS http://HOST:PORT/PATH` against the gateway's plain HTTP listener.
    pub fn curl_http(&self, host: &str, path: &str, args: &[&str]) -> CmdOutput {
        let addr = self.gateway();
        let url = format!("http://{host}:{}{path}", addr.port());
        let resolve = format!("{host}:{}:{}", addr.port(), addr.ip());
        run(
            Command::new("curl")
                .args(["-sS", "--max-time", "20", "--resolve", &resolve])
                .args(args)
                .arg(url),
            None,
            Duration::from_secs(30),
        )
    }

    /// The body of `GET /` for `app`, when it answers 200 right now; `None` for any other answer
    /// or none. For polling: `p.wait_for(t, "v2", || p.ok_body(app).filter(|b| b.contains("v2")))`.
    pub fn ok_body(&self, app: &str) -> Option<String> {
        match self.http_get(app, "/") {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    }

    /// The body of `GET /` for `app`, which must answer 200 right now: panics with what came
    /// back instead, and the tail of caasd's log.
    pub fn body(&self, app: &str) -> String {
        match self.http_get(app, "/") {
            Ok((200, body)) => body,
            other => panic!(
                "{app} does not answer 200: {other:?}\n{}",
                self.log_report()
            ),
        }
    }
}
