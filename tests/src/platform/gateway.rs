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
}
