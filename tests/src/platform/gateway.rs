//! Requests to a platform's apps through its gateway, as a user's browser or curl makes them.

use std::io;

use super::{Platform, DOMAIN};
use crate::http::{http_request, HttpResponse, HTTP_TIMEOUT};

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
