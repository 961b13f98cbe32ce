//! The HTTP/1.1 accept loop both listeners use (the gateway and the API): a header-read timeout
//! against slowloris (`axum::serve` has none), bounded header buffers, upgrades passed through,
//! an optional cap on open connections, and a graceful end: on shutdown, no new connections, and
//! those open get `grace` to finish what they are doing before `serve` returns. With `tls`, a
//! connection whose first byte opens a TLS handshake is served over TLS and any other as plain
//! HTTP, on the same port (the API: agents speak TLS, the CLI on loopback may not).

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BUF: usize = 64 * 1024;

pub struct Options {
    /// How long open connections get to finish after shutdown.
    pub grace: Duration,
    /// Connections open at once; past it a new one gets `overloaded` and is closed.
    pub max_connections: Option<usize>,
    /// A whole HTTP response, written as is.
    pub overloaded: &'static [u8],
    /// Serve TLS to connections that open with a TLS handshake.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(5),
            max_connections: None,
            overloaded: b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            tls: None,
        }
    }
}

/// Accepts connections until `shutdown`, then waits up to `options.grace` for the open ones;
/// `service(peer)` makes each connection's service.
pub async fn serve<F, S, B>(
    listener: TcpListener,
    shutdown: CancellationToken,
    options: Options,
    service: F,
) where
    F: Fn(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tracker = TaskTracker::new();
    let open = Arc::new(AtomicUsize::new(0));
    let acceptor = options.tls.clone().map(tokio_rustls::TlsAcceptor::from);
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
        if options
            .max_connections
            .is_some_and(|max| open.load(Ordering::Relaxed) >= max)
        {
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
        let svc = service(peer);
        let stop = shutdown.clone();
        let open = open.clone();
        open.fetch_add(1, Ordering::Relaxed);
        let acceptor = acceptor.clone();
        tracker.spawn(async move {
            match acceptor {
                Some(acceptor) => {
                    // The first byte of a TLS connection is a handshake record (22); a plain
                    // HTTP request starts with a method's letter. Both wait at most as long as a
                    // request's head may take.
                    let mut first = [0u8; 1];
                    let peeked =
                        tokio::time::timeout(HEADER_READ_TIMEOUT, stream.peek(&mut first)).await;
                    if matches!(peeked, Ok(Ok(1))) && first[0] == 22 {
                        let accepted =
                            tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream))
                                .await;
                        if let Ok(Ok(tls)) = accepted {
                            connection(tls, svc, stop).await;
                        }
                    } else if matches!(peeked, Ok(Ok(1))) {
                        connection(stream, svc, stop).await;
                    }
                }
                None => connection(stream, svc, stop).await,
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

/// Serves one connection until it closes or, after `stop`, until its request in flight is done.
async fn connection<I, S, B>(io: I, svc: S, stop: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.cancelled() => {
            // Finish the request in flight, then close; the caller bounds the wait.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
