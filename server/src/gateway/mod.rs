//! The gateway: an HTTP/1.1 reverse proxy on hyper. `Host: APP.DOMAIN` → the app's instances
//! that are up, round robin over pooled keep-alive connections; a connection failure moves on to
//! the next instance.
//!
//! It runs on the accept loop of `crate::http` (not `axum::serve`), which has the timers a
//! public listener needs: a header-read timeout against slowloris. Ambiguous framing is settled by hyper's parser before a
//! request reaches us: differing `Content-Length`s are refused with 400, and `Transfer-Encoding`
//! wins over `Content-Length`, which is dropped (RFC 9112 §6.1), so an instance never receives
//! both (tests pin this down). It overwrites `X-Forwarded-*` (clients are untrusted), adds `X-Request-Id`,
//! passes WebSocket upgrades through, streams bodies both ways, and writes one `router` log line
//! per request.

mod pool;
pub mod table;

use crate::logs::LogHub;
use bytes::Bytes;
use caas_api::{LogLine, LogSource, Timestamp};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pool::Pool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use table::RouteTable;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub type UpBody = BoxBody<Bytes, hyper::Error>;
type Resp = Response<UpBody>;

pub struct Gateway {
    domain: String,
    table: watch::Receiver<Arc<RouteTable>>,
    pool: Pool,
    logs: Arc<LogHub>,
}

fn text(status: StatusCode, body: String) -> Resp {
    let mut resp = Response::new(
        Full::new(Bytes::from(body + "\n"))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // Marks the gateway's own answers, so that a CLI pointed here instead of at the API can
    // tell the user so (cli/src/client.rs).
    resp.headers_mut().insert(
        HeaderName::from_static("x-caas-gateway"),
        HeaderValue::from_static("1"),
    );
    resp
}

/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

fn request_id(headers: &HeaderMap) -> String {
    // Keep a caller's id if it is sane, so a request can be followed across systems.
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(new_request_id)
}

/// A fresh request id without a system call per request: a per-process random seed plus a
/// counter, through splitmix64 (a bijection, so ids never repeat within a process). They
/// correlate log lines; they are not secrets.
fn new_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("the OS random source is available");
        u64::from_le_bytes(b)
    });
    let mut z = seed.wrapping_add(
        COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("{:016x}", z ^ (z >> 31))
}

impl Gateway {
    pub fn new(
        domain: String,
        table: watch::Receiver<Arc<RouteTable>>,
        logs: Arc<LogHub>,
    ) -> Arc<Self> {
        Arc::new(Self {
            domain,
            table,
            pool: Pool::default(),
            logs,
        })
    }

    /// Accepts connections until `shutdown`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let pruner = self.clone();
        let prune_stop = shutdown.clone();
        tokio::spawn(async move { pruner.prune_pool(prune_stop).await });
        crate::http::serve(listener, shutdown, move |peer| {
            let gw = self.clone();
            hyper::service::service_fn(move |req| {
                let gw = gw.clone();
                async move { Ok::<_, std::convert::Infallible>(gw.handle(req, peer).await) }
            })
        })
        .await
    }

    /// Drops pooled connections to instances that left the table.
    async fn prune_pool(&self, shutdown: CancellationToken) {
        let mut table = self.table.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = table.changed() => if r.is_err() { return },
            }
            let keep = table.borrow_and_update().addrs().collect();
            self.pool.retain_addrs(&keep);
        }
    }

    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Resp {
        let started = Instant::now();
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default()
            .to_ascii_lowercase();
        let Some(app) = table::app_for_host(&host, &self.domain).map(str::to_string) else {
            return text(
                StatusCode::NOT_FOUND,
                format!(
                    "caas: no app is served at host {host:?}; apps are at http://APP.{}",
                    self.domain
                ),
            );
        };
        let table = self.table.borrow().clone();
        let Some(routes) = table.apps.get(&app) else {
            return text(
                StatusCode::NOT_FOUND,
                format!("caas: there is no app named {app:?} here"),
            );
        };
        if routes.backends.is_empty() {
            return text(StatusCode::SERVICE_UNAVAILABLE, routes.idle.message(&app));
        }

        let rid = request_id(req.headers());
        let method = req.method().clone();
        let path = req
            .uri()
            .path_and_query()
            .map_or("/".to_string(), |p| p.to_string());
        let upgrade = is_upgrade(req.headers());
        let upgrade_value = req.headers().get(header::UPGRADE).cloned();
        let (mut parts, body) = req.into_parts();
        let client_upgrade =
            upgrade.then(|| hyper::upgrade::on(Request::from_parts(parts.clone(), ())));
        strip_hop_by_hop(&mut parts.headers);
        let h = &mut parts.headers;
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_str(&peer.ip().to_string()).expect("an IP is a valid header"),
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        if let Ok(v) = HeaderValue::from_str(&host) {
            h.insert("x-forwarded-host", v);
        }
        h.insert(
            "x-request-id",
            HeaderValue::from_str(&rid).expect("checked or generated ASCII"),
        );
        h.remove("forwarded");
        if let (true, Some(u)) = (upgrade, upgrade_value) {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(header::UPGRADE, u);
        }
        // Origin-form towards the instance.
        parts.uri = path
            .parse()
            .unwrap_or_else(|_| "/".parse().expect("static"));
        // A bodiless GET/HEAD/OPTIONS can be sent again to the next instance when one fails
        // without answering (an instance dying, or Docker's proxy accepting for a dead one).
        let replay = (!upgrade
            && matches!(
                method,
                hyper::Method::GET | hyper::Method::HEAD | hyper::Method::OPTIONS
            )
            && body.is_end_stream())
        .then(|| parts.clone());
        let mut request = Some(Request::from_parts(parts, body.boxed()));

        let mut last_error = String::new();
        for backend in routes.rotation() {
            // A pooled connection may have been closed by the instance meanwhile; hyper hands the
            // request back when it could not be written, and we retry on a fresh connection.
            let mut tries = 0;
            loop {
                tries += 1;
                let pooled = self.pool.take_idle(backend.addr);
                let fresh = pooled.is_none();
                let mut sender = match pooled {
                    Some(s) => s,
                    None => match self.pool.connect(backend.addr).await {
                        Ok(s) => s,
                        Err(e) => {
                            last_error = e.to_string();
                            break; // next instance
                        }
                    },
                };
                let connect_ms = started.elapsed().as_millis();
                let req = request.take().expect("request is present until sent");
                match sender.try_send_request(req).await {
                    Ok(mut resp) => {
                        if !upgrade {
                            self.pool.recycle(backend.addr, sender);
                        }
                        let status = resp.status();
                        if upgrade && status == StatusCode::SWITCHING_PROTOCOLS {
                            if let Some(client) = client_upgrade {
                                let upstream = hyper::upgrade::on(&mut resp);
                                tokio::spawn(async move {
                                    if let (Ok(c), Ok(u)) = (client.await, upstream.await) {
                                        let _ = tokio::io::copy_bidirectional(
                                            &mut TokioIo::new(c),
                                            &mut TokioIo::new(u),
                                        )
                                        .await;
                                    }
                                });
                            }
                        }
                        let (mut rparts, rbody) = resp.into_parts();
                        if status != StatusCode::SWITCHING_PROTOCOLS {
                            strip_hop_by_hop(&mut rparts.headers);
                        }
                        let bytes = rparts
                            .headers
                            .get(header::CONTENT_LENGTH)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_string();
                        self.log(&app, format!(
                            "at=info method={method} path={path:?} host={host} request_id={rid} fwd=\"{}\" dyno={} connect={connect_ms}ms service={}ms status={} bytes={bytes}",
                            peer.ip(), backend.instance, started.elapsed().as_millis(), status.as_u16()
                        ));
                        return Response::from_parts(rparts, rbody.boxed());
                    }
                    Err(mut e) => {
                        match e.take_message() {
                            // Not sent: safe to try again, on a fresh connection or the next instance.
                            Some(back) => {
                                request = Some(back);
                                last_error = e.into_error().to_string();
                                if fresh || tries > 1 {
                                    break;
                                }
                            }
                            None if replay.is_some() => {
                                let template = replay.clone().expect("checked");
                                request = Some(Request::from_parts(template, empty_body()));
                                last_error = e.into_error().to_string();
                                break; // next instance
                            }
                            None => {
                                // Sent, and the instance failed mid-request: retrying could run
                                // it twice, so the client gets the error.
                                let err = e.into_error();
                                self.log(&app, format!(
                                    "at=error code=H13 desc=\"connection closed without response\" method={method} path={path:?} host={host} request_id={rid} dyno={} status=502 error={err:?}",
                                    backend.instance
                                ));
                                return text(
                                    StatusCode::BAD_GATEWAY,
                                    format!(
                                        "caas: {app}'s instance {} failed to answer",
                                        backend.instance
                                    ),
                                );
                            }
                        }
                    }
                }
            }
        }
        self.log(&app, format!(
            "at=error code=H10 desc=\"no instance answered\" method={method} path={path:?} host={host} request_id={rid} status=502 error={last_error:?}"
        ));
        text(
            StatusCode::BAD_GATEWAY,
            format!("caas: none of {app}'s instances accepted a connection"),
        )
    }

    fn log(&self, app: &str, text: String) {
        self.logs.publish(
            app,
            LogLine {
                ts: Timestamp::now(),
                source: LogSource::Router,
                tag: "router".into(),
                text,
            },
        );
    }
}

fn empty_body() -> UpBody {
    http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

#[cfg(test)]
mod tests;
