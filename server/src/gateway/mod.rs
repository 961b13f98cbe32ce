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
pub mod process;
pub mod report;
pub mod supervise;
pub mod table;
mod tcp;
pub mod tls;

use crate::http as listen;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pool::{Pool, Sender};
use report::Reporter;
use std::sync::Arc;
use std::time::{Duration, Instant};
use table::RouteTable;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub type UpBody = BoxBody<Bytes, hyper::Error>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request body on its way to an instance: the client's, capped at `Limits::max_body`.
pub type ReqBody = BoxBody<Bytes, BoxError>;
type Resp = Response<UpBody>;

/// Bounds the gateway keeps to.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections from clients open at once; past it a new one gets a 503 at once.
    pub max_connections: usize,
    /// How long an instance may take to start answering a request (its headers) before the
    /// client gets a 504.
    pub upstream_timeout: Duration,
    /// How long an instance that refused a connection is skipped before it is tried again.
    pub eject_for: Duration,
    /// The largest request body passed on, in bytes: a larger declared length gets a 413 at
    /// once, a longer stream is cut off there (and gets a 413 if no answer has begun).
    pub max_body: u64,
    /// A client connection on which nothing moved for this long, with no request being
    /// answered, is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            upstream_timeout: Duration::from_secs(60),
            eject_for: Duration::from_secs(5),
            max_body: 100 * 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

pub struct Gateway {
    table: watch::Receiver<Arc<RouteTable>>,
    pool: Pool,
    reporter: Arc<Reporter>,
    limits: Limits,
    /// The HTTPS listener's port, when there is one: where plain HTTP is redirected to.
    https_port: std::sync::OnceLock<u16>,
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
        table: watch::Receiver<Arc<RouteTable>>,
        reporter: Arc<Reporter>,
        limits: Limits,
    ) -> Arc<Self> {
        Arc::new(Self {
            table,
            pool: Pool::default(),
            reporter,
            limits,
            https_port: std::sync::OnceLock::new(),
        })
    }

    /// Accepts connections until `shutdown`, then gives those open up to `drain` to finish;
    /// with `tls`, an HTTPS listener.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
        shutdown: CancellationToken,
        drain: Duration,
    ) {
        if tls.is_some() {
            if let Ok(addr) = listener.local_addr() {
                let _ = self.https_port.set(addr.port());
            }
        }
        let options = listen::Options {
            grace: drain,
            max_connections: self.limits.max_connections,
            overloaded: b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nx-caas-gateway: 1\r\ncontent-length: 50\r\nconnection: close\r\n\r\ncaas: the gateway is at its limit of connections.\n\n",
            idle_timeout: Some(self.limits.idle_timeout),
        };
        listen::serve(listener, tls, shutdown, options, move |conn| {
            let gw = self.clone();
            let conn = Arc::new(conn);
            hyper::service::service_fn(move |req| {
                let gw = gw.clone();
                let conn = conn.clone();
                async move { Ok::<_, std::convert::Infallible>(gw.handle(req, &conn).await) }
            })
        })
        .await
    }

    /// Drops pooled connections to instances that left the table, until `shutdown`.
    pub async fn prune_pool(self: Arc<Self>, shutdown: CancellationToken) {
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

    async fn handle(&self, req: Request<Incoming>, conn: &listen::Conn) -> Resp {
        let started = Instant::now();
        let (resp, app) = self.route(req, conn, started).await;
        if let Some(app) = app {
            let bytes = resp
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            self.reporter
                .request(&app, resp.status().as_u16(), started.elapsed(), bytes);
        }
        resp
    }

    /// Sends the request where its `Host` says; answers with the response and the app it was
    /// for (none for a host that names no app).
    async fn route(
        &self,
        req: Request<Incoming>,
        conn: &listen::Conn,
        started: Instant,
    ) -> (Resp, Option<String>) {
        let host = match request_host(&req) {
            Ok(host) => host,
            Err(why) => return (text(StatusCode::BAD_REQUEST, why.into()), None),
        };
        let table = self.table.borrow().clone();
        if let Some(key_authorization) = table.challenge(req.uri().path()) {
            return (text(StatusCode::OK, key_authorization.to_string()), None);
        }
        let Some(app) = table.app_for(&host).map(str::to_string) else {
            // The port the client used, so the hint is an address that works.
            let port = host
                .rsplit_once(':')
                .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
                .map_or(String::new(), |(_, p)| format!(":{p}"));
            let resp = text(
                StatusCode::NOT_FOUND,
                format!(
                    "caas: no app is served at host {host:?}; apps are at http://APP.{}{port}",
                    table.domain
                ),
            );
            return (resp, None);
        };
        let Some(routes) = table.apps.get(&app) else {
            let resp = text(
                StatusCode::NOT_FOUND,
                format!("caas: there is no app named {app:?} here"),
            );
            return (resp, None);
        };
        if !routes.admits(conn.peer.ip()) {
            self.log(
                &app,
                format!(
                    "at=error code=H26 desc=\"access denied\" method={} path={:?} host={host} fwd=\"{}\" status=403",
                    req.method(),
                    req.uri().path(),
                    conn.peer.ip()
                ),
            );
            let resp = text(
                StatusCode::FORBIDDEN,
                format!("caas: {app} does not admit requests from this address"),
            );
            return (resp, Some(app));
        }
        if routes.redirect_https && !conn.https {
            if let Some(port) = self.https_port.get() {
                return (redirect_to_https(&req, &host, *port), Some(app));
            }
        }
        if routes.backends.is_empty() {
            let resp = text(
                StatusCode::SERVICE_UNAVAILABLE,
                table::idle_message(routes.idle, &app),
            );
            return (resp, Some(app));
        }
        let resp = self.forward(req, conn, started, &app, &host, routes).await;
        (resp, Some(app))
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        conn: &listen::Conn,
        started: Instant,
        app: &str,
        host: &str,
        routes: &table::AppRoutes,
    ) -> Resp {
        let peer = conn.peer;
        let rid = request_id(req.headers());
        let method = req.method().clone();
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.limits.max_body) {
            self.log(app, format!(
                "at=error code=H27 desc=\"request body too large\" method={method} host={host} request_id={rid} fwd=\"{}\" status=413",
                peer.ip()
            ));
            return too_large(self.limits.max_body);
        }
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
        // Whatever the client said about where it came from is dropped; what the gateway saw
        // is said instead.
        for name in CLIENT_FORWARDING_HEADERS {
            h.remove(*name);
        }
        let ip = HeaderValue::from_str(&peer.ip().to_string()).expect("an IP is a valid header");
        h.insert("x-forwarded-for", ip.clone());
        h.insert("x-real-ip", ip);
        h.insert(
            "x-forwarded-proto",
            HeaderValue::from_static(if conn.https { "https" } else { "http" }),
        );
        h.insert("x-forwarded-port", HeaderValue::from(conn.port));
        if let Ok(v) = HeaderValue::from_str(host) {
            h.insert("x-forwarded-host", v);
        }
        h.insert(
            "x-request-id",
            HeaderValue::from_str(&rid).expect("checked or generated ASCII"),
        );
        // An HTTP/2 client names the host in `:authority` only; an HTTP/1.1 instance needs it as
        // `Host`.
        if !h.contains_key(header::HOST) {
            if let Ok(v) = HeaderValue::from_str(host) {
                h.insert(header::HOST, v);
            }
        }
        let upgrade = upgrade && !routes.h2;
        if let (true, Some(u)) = (upgrade, upgrade_value) {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(header::UPGRADE, u);
        }
        // Origin-form towards an HTTP/1.1 instance; HTTP/2 needs `:scheme` and `:authority`.
        parts.uri = if routes.h2 {
            hyper::Uri::builder()
                .scheme("http")
                .authority(host)
                .path_and_query(path.as_str())
                .build()
                .or_else(|_| format!("http://localhost{path}").parse())
                .unwrap_or_else(|_| "http://localhost/".parse().expect("static"))
        } else {
            path.parse()
                .unwrap_or_else(|_| "/".parse().expect("static"))
        };
        if routes.h2 {
            parts.version = hyper::Version::HTTP_2;
        } else {
            parts.version = hyper::Version::HTTP_11;
        }
        // A bodiless GET/HEAD/OPTIONS can be sent again to the next instance when one fails
        // without answering (an instance dying, or Docker's proxy accepting for a dead one).
        let replay = (!upgrade
            && matches!(
                method,
                hyper::Method::GET | hyper::Method::HEAD | hyper::Method::OPTIONS
            )
            && body.is_end_stream())
        .then(|| parts.clone());
        let over = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // While the instance works on a request the client has sent whole, the client's
        // connection may be quiet for longer than the idle limit.
        let waiting = listen::Waiting::new(&conn.busy);
        let _done = waiting.end_on_drop();
        if body.is_end_stream() {
            waiting.begin();
        }
        let body = Capped {
            inner: body,
            left: self.limits.max_body,
            over: over.clone(),
            sent: Some(waiting.clone()),
        };
        let mut request = Some(Request::from_parts(parts, body.boxed()));

        let mut last_error = String::new();
        // Instances that refused a connection lately go last: they are tried only when every
        // other one failed too.
        let (healthy, ejected): (Vec<_>, Vec<_>) = routes
            .rotation()
            .partition(|b| !self.pool.is_ejected(b.addr));
        for backend in healthy.into_iter().chain(ejected) {
            // A pooled connection may have been closed by the instance meanwhile; hyper hands the
            // request back when it could not be written, and we retry on a fresh connection.
            let mut tries = 0;
            loop {
                tries += 1;
                let connected = if routes.h2 {
                    // The shared connection; a new one when it failed to take the request.
                    let fresh = tries > 1;
                    self.pool
                        .h2(backend.addr, fresh)
                        .await
                        .map(|s| (Sender::H2(s), fresh))
                } else {
                    match self.pool.take_idle(backend.addr) {
                        Some(s) => Ok((Sender::H1(s), false)),
                        None => self
                            .pool
                            .connect(backend.addr)
                            .await
                            .map(|s| (Sender::H1(s), true)),
                    }
                };
                let (mut sender, fresh) = match connected {
                    Ok(c) => c,
                    Err(e) => {
                        self.pool.eject(backend.addr, self.limits.eject_for);
                        last_error = e.to_string();
                        break; // next instance
                    }
                };
                let connect_ms = started.elapsed().as_millis();
                let req = request.take().expect("request is present until sent");
                let sent = tokio::time::timeout(
                    self.limits.upstream_timeout,
                    sender.try_send_request(req),
                )
                .await;
                let Ok(sent) = sent else {
                    // Sent, and no answer in time: the client is told, not left waiting.
                    self.log(app, format!(
                        "at=error code=H12 desc=\"request timeout\" method={method} path={path:?} host={host} request_id={rid} dyno={} service={}ms status=504",
                        backend.instance, started.elapsed().as_millis()
                    ));
                    return text(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                            "caas: {app}'s instance {} did not answer within {}s",
                            backend.instance,
                            self.limits.upstream_timeout.as_secs()
                        ),
                    );
                };
                match sent {
                    Ok(mut resp) => {
                        if let (false, Sender::H1(sender)) = (upgrade, sender) {
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
                        self.log(app, format!(
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
                            None if over.load(std::sync::atomic::Ordering::Relaxed) => {
                                self.log(app, format!(
                                    "at=error code=H27 desc=\"request body too large\" method={method} path={path:?} host={host} request_id={rid} dyno={} status=413",
                                    backend.instance
                                ));
                                return too_large(self.limits.max_body);
                            }
                            None => {
                                // Sent, and the instance failed mid-request: retrying could run
                                // it twice, so the client gets the error.
                                let err = e.into_error();
                                self.log(app, format!(
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
        self.log(app, format!(
            "at=error code=H10 desc=\"no instance answered\" method={method} path={path:?} host={host} request_id={rid} status=502 error={last_error:?}"
        ));
        text(
            StatusCode::BAD_GATEWAY,
            format!("caas: none of {app}'s instances accepted a connection"),
        )
    }

    fn log(&self, app: &str, text: String) {
        self.reporter.line(app, text);
    }
}

fn empty_body() -> ReqBody {
    http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A 308 to the same URL over HTTPS on the gateway's HTTPS port.
fn redirect_to_https<B>(req: &Request<B>, host: &str, port: u16) -> Resp {
    let name = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = if port == 443 {
        format!("https://{name}{path}")
    } else {
        format!("https://{name}:{port}{path}")
    };
    let mut resp = text(
        StatusCode::PERMANENT_REDIRECT,
        format!("caas: this app is served over HTTPS: {location}"),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn too_large(max: u64) -> Resp {
    let mut resp = text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "caas: the request body is larger than the gateway takes ({})",
            caas_api::format_bytes(max)
        ),
    );
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Headers a client may send to claim where it came from, or which proxy it passed: dropped
/// from every request, then the gateway sets `X-Forwarded-For/Proto/Port/Host` and `X-Real-IP`
/// to what it saw. (`Forwarded` too, which the gateway does not set.)
const CLIENT_FORWARDING_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-proto",
    "x-forwarded-scheme",
    "x-forwarded-server",
    "x-forwarded-ssl",
    "x-forwarded-prefix",
    "x-forwarded-client-cert",
    "x-original-forwarded-for",
    "x-real-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "front-end-https",
    "x-url-scheme",
];

/// The host a request is for, lowercase: the authority of an absolute-form target or of an
/// HTTP/2 request (`:authority`), else the one `Host` header. More than one `Host` header, or a
/// `Host` that is not text, is refused.
fn request_host<B>(req: &Request<B>) -> Result<String, &'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err("caas: the request has more than one Host header");
    }
    if let Some(authority) = req.uri().authority() {
        return Ok(authority.as_str().to_ascii_lowercase());
    }
    match first {
        Some(v) => v
            .to_str()
            .map(str::to_ascii_lowercase)
            .map_err(|_| "caas: the Host header is not a host name"),
        None => Ok(String::new()),
    }
}

/// The client's body, counted: past `left` bytes it fails (and says so in `over`), so an instance
/// never receives more than the limit and the request is not taken for complete.
struct Capped {
    inner: Incoming,
    left: u64,
    over: Arc<std::sync::atomic::AtomicBool>,
    /// Told when the body has been read whole.
    sent: Option<Arc<listen::Waiting>>,
}

impl hyper::body::Body for Capped {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > self.left {
                        self.over.store(true, std::sync::atomic::Ordering::Relaxed);
                        return Poll::Ready(Some(Err("the request body is over the limit".into())));
                    }
                    self.left -= n;
                }
                if self.inner.is_end_stream() {
                    if let Some(w) = self.sent.take() {
                        w.begin();
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                if let Some(w) = self.sent.take() {
                    w.begin();
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
