//! The accept loop both listeners use (the gateway and the API): a header-read timeout against
//! slowloris (`axum::serve` has none), bounded header buffers, HTTP/1.1 and HTTP/2, upgrades, a cap
//! on open connections, optional TLS, an optional idle limit, and a graceful end: on shutdown, no
//! new connections, and those open get `grace` to finish what they are doing (a connection
//! accepted just before the stop still gets its first request answered). Each connection's
//! service is made from a [`Conn`]: the client's address, the port and scheme it used.

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to finish a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BUF: usize = 64 * 1024;

/// What a request knows about the connection it arrived on.
#[derive(Debug, Clone)]
pub struct Conn {
    pub peer: SocketAddr,
    /// The gateway's port the client connected to (`X-Forwarded-Port`).
    pub port: u16,
    /// It came over TLS.
    pub https: bool,
    /// Requests of this connection sent whole and waiting for their instance's answer: the
    /// idle limit does not apply while there is one.
    pub busy: Arc<AtomicUsize>,
}

/// One request's part in `Conn::busy`: counted from `begin` (its body read whole) until `end`
/// (its answer has begun), whichever order they come in.
pub struct Waiting {
    /// 0: not begun, 1: counted, 2: ended.
    state: std::sync::atomic::AtomicU8,
    busy: Arc<AtomicUsize>,
}

impl Waiting {
    pub fn new(busy: &Arc<AtomicUsize>) -> Arc<Self> {
        Arc::new(Self {
            state: std::sync::atomic::AtomicU8::new(0),
            busy: busy.clone(),
        })
    }

    pub fn begin(&self) {
        if self
            .state
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.busy.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn end(&self) {
        if self.state.swap(2, Ordering::AcqRel) == 1 {
            self.busy.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Ends it when the guard drops.
    pub fn end_on_drop(self: &Arc<Self>) -> EndOnDrop {
        EndOnDrop(self.clone())
    }
}

pub struct EndOnDrop(Arc<Waiting>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end();
    }
}

pub struct Options {
    /// How long open connections get to finish after shutdown.
    pub grace: Duration,
    /// Connections open at once; past it a new one gets `overloaded` and is closed.
    pub max_connections: usize,
    /// A whole HTTP response, written as is.
    pub overloaded: &'static [u8],
    /// A connection on which nothing moved for this long, with no request being answered, is
    /// closed (keep-alive connections between requests, bodies that stall). The API has none:
    /// `caas logs --tail` is a response that may be quiet for hours.
    pub idle_timeout: Option<Duration>,
}

impl Options {
    /// The API's: no cap on connections and no idle limit (a quiet `logs --tail` stays open).
    pub fn api() -> Self {
        Self {
            grace: Duration::from_secs(5),
            max_connections: usize::MAX,
            overloaded: b"",
            idle_timeout: None,
        }
    }
}

/// Accepts connections until `shutdown`, then waits up to `options.grace` for the open ones;
/// `service(conn)` makes each connection's service. With `tls`, connections are TLS.
pub async fn serve<F, S, B>(
    listener: TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    shutdown: CancellationToken,
    options: Options,
    service: F,
) where
    F: Fn(Conn) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tracker = TaskTracker::new();
    let open = Arc::new(AtomicUsize::new(0));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let epoch = Instant::now();
    let https = tls.is_some();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (mut stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if open.load(Ordering::Relaxed) >= options.max_connections {
            let overloaded = options.overloaded;
            tracker.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    let _ = stream.write_all(overloaded).await;
                    let _ = stream.shutdown().await;
                })
                .await;
            });
            continue;
        }
        let _ = stream.set_nodelay(true);
        let busy = Arc::new(AtomicUsize::new(0));
        let svc = service(Conn {
            peer,
            port,
            https,
            busy: busy.clone(),
        });
        let acceptor = acceptor.clone();
        let stop = shutdown.clone();
        let open = open.clone();
        let idle_timeout = options.idle_timeout;
        open.fetch_add(1, Ordering::Relaxed);
        tracker.spawn(async move {
            let last = Arc::new(AtomicU64::new(0));
            let io = IdleIo {
                inner: stream,
                last: last.clone(),
                epoch,
            };
            let idle = Idle {
                last,
                busy,
                epoch,
                limit: idle_timeout,
            };
            match acceptor {
                None => serve_connection(io, Proto::Either, svc, stop, idle).await,
                Some(acceptor) => {
                    let accepted = tokio::select! {
                        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)) => r,
                        _ = stop.cancelled() => Ok(Err(io::ErrorKind::Interrupted.into())),
                    };
                    if let Ok(Ok(tls)) = accepted {
                        let proto = match tls.get_ref().1.alpn_protocol() {
                            Some(b"h2") => Proto::H2,
                            _ => Proto::H1,
                        };
                        serve_connection(tls, proto, svc, stop, idle).await;
                    }
                }
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(options.grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connections still open after {:?}; closing them",
            open.load(Ordering::Relaxed),
            options.grace
        );
    }
}

/// What the idle limit watches on one connection.
struct Idle {
    last: Arc<AtomicU64>,
    busy: Arc<AtomicUsize>,
    epoch: Instant,
    limit: Option<Duration>,
}

/// Which HTTP a connection speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    /// Cleartext: HTTP/1.1, or HTTP/2 when the client opens with its preface (prior knowledge).
    Either,
    /// TLS with ALPN `h2`.
    H2,
    /// TLS without it.
    H1,
}

/// How long a connection that has not sent its first request yet gets for it once the listener
/// stops.
const FIRST_REQUEST_WAIT: Duration = Duration::from_millis(500);

/// Concurrent streams one HTTP/2 client connection may have open.
const MAX_STREAMS: u32 = 256;

/// Serves HTTP on one connection until it ends, goes idle, or `stop` (then the request in flight
/// may finish; the caller bounds the wait).
async fn serve_connection<I, S, B>(io: I, proto: Proto, svc: S, stop: CancellationToken, idle: Idle)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_BUF as u32);
    let builder = match proto {
        Proto::Either => builder,
        Proto::H2 => builder.http2_only(),
        Proto::H1 => builder.http1_only(),
    };
    // Notes the connection's first request, for the stop below.
    let first = Arc::new(tokio::sync::Notify::new());
    let svc = {
        let first = first.clone();
        hyper::service::service_fn(move |req| {
            first.notify_one();
            svc.call(req)
        })
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let quiet = async {
        match idle.limit {
            Some(limit) => watch_idle(&idle.last, &idle.busy, idle.epoch, limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(quiet);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = &mut quiet => return,
        _ = stop.cancelled() => {}
    }
    // A connection accepted just before the stop may hold a request not read yet: closing it
    // now would reset it. It gets a moment for its first request, which is then answered.
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = first.notified() => {}
        _ = tokio::time::sleep(FIRST_REQUEST_WAIT) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Resolves once the connection has been idle for `limit`: no byte read or written since, and no
/// request being answered.
async fn watch_idle(last: &AtomicU64, busy: &AtomicUsize, epoch: Instant, limit: Duration) {
    let mut deadline = Instant::now() + limit;
    loop {
        tokio::time::sleep_until(deadline.into()).await;
        let last_activity = epoch + Duration::from_millis(last.load(Ordering::Relaxed));
        let now = Instant::now();
        if busy.load(Ordering::Relaxed) > 0 {
            deadline = now + limit;
        } else if now.duration_since(last_activity) >= limit {
            return;
        } else {
            deadline = last_activity + limit;
        }
    }
}

/// An IO that notes when it last moved a byte, in ms since `epoch`.
struct IdleIo<T> {
    inner: T,
    last: Arc<AtomicU64>,
    epoch: Instant,
}

impl<T> IdleIo<T> {
    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        // Only the owner writes; skip the store when the millisecond has not changed.
        if self.last.load(Ordering::Relaxed) != ms {
            self.last.store(ms, Ordering::Relaxed);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
