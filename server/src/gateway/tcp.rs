//! TCP routes: a listener per public port in the routing table, opened and closed as the table
//! changes; each connection goes, round robin, to one of the app's web instances that accepts it
//! (on the route's target port), after the app's access rules (a denied client's connection is
//! closed at once). Bytes are copied both ways until either side closes; one router line per
//! connection says where it went and how much moved.

use super::report::Reporter;
use super::table::RouteTable;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a port that could not be bound is tried again.
const RETRY_BIND: Duration = Duration::from_secs(5);

/// Keeps a listener open for every TCP route of the table until `stop`, then lets open
/// connections go on for up to `drain`.
pub async fn run(
    mut table: watch::Receiver<Arc<RouteTable>>,
    ip: IpAddr,
    reporter: Arc<Reporter>,
    stop: CancellationToken,
    drain: Duration,
) {
    let tracker = TaskTracker::new();
    let mut open: HashMap<u16, CancellationToken> = HashMap::new();
    loop {
        let wanted: Vec<u16> = table.borrow_and_update().tcp.keys().copied().collect();
        open.retain(|port, token| {
            let keep = wanted.contains(port);
            if !keep {
                tracing::info!(port, "TCP route removed: no new connections");
                token.cancel();
            }
            keep
        });
        let mut failed = false;
        for port in wanted {
            if open.contains_key(&port) {
                continue;
            }
            let addr = SocketAddr::new(ip, port);
            match super::process::bind(addr) {
                Ok(listener) => {
                    tracing::info!(%addr, "TCP route listening");
                    let token = stop.child_token();
                    open.insert(port, token.clone());
                    tracker.spawn(accept(
                        listener,
                        port,
                        table.clone(),
                        reporter.clone(),
                        token,
                        tracker.clone(),
                    ));
                }
                Err(e) => {
                    tracing::warn!(%addr, "cannot open the TCP route: {e:#}");
                    failed = true;
                }
            }
        }
        let retry = async {
            if failed {
                tokio::time::sleep(RETRY_BIND).await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            r = table.changed() => if r.is_err() { break },
            _ = retry => {}
        }
    }
    tracker.close();
    let _ = tokio::time::timeout(drain, tracker.wait()).await;
}

async fn accept(
    listener: tokio::net::TcpListener,
    port: u16,
    table: watch::Receiver<Arc<RouteTable>>,
    reporter: Arc<Reporter>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(port, "accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let table = table.borrow().clone();
        let reporter = reporter.clone();
        tracker.spawn(async move { forward(stream, peer, port, &table, &reporter).await });
    }
}

async fn forward(
    mut client: TcpStream,
    peer: SocketAddr,
    port: u16,
    table: &RouteTable,
    reporter: &Reporter,
) {
    let started = Instant::now();
    let Some(route) = table.tcp.get(&port) else {
        return;
    };
    let app = route.app.as_str();
    let Some(routes) = table.apps.get(app) else {
        return;
    };
    if !routes.admits(peer.ip()) {
        reporter.line(
            app,
            format!(
                "at=error code=H26 desc=\"access denied\" proto=tcp port={port} fwd=\"{}\" closed",
                peer.ip()
            ),
        );
        return;
    }
    let _ = client.set_nodelay(true);
    let mut last_error = String::from("no instance is up");
    for backend in routes.rotation(None) {
        let addr = SocketAddr::new(
            backend.addr.ip(),
            route.target.unwrap_or(backend.addr.port()),
        );
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
        let mut upstream = match connected {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                last_error = e.to_string();
                continue;
            }
            Err(_) => {
                last_error = "connect timed out".into();
                continue;
            }
        };
        let _ = upstream.set_nodelay(true);
        let connect_ms = started.elapsed().as_millis();
        let moved = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        let (to_app, to_client) = moved.unwrap_or((0, 0));
        reporter.line(
            app,
            format!(
                "at=info proto=tcp port={port} fwd=\"{}\" dyno={} connect={connect_ms}ms duration={}ms bytes_in={to_app} bytes_out={to_client}",
                peer.ip(),
                backend.instance,
                started.elapsed().as_millis()
            ),
        );
        return;
    }
    reporter.line(
        app,
        format!(
            "at=error code=H10 desc=\"no instance accepted\" proto=tcp port={port} fwd=\"{}\" error={last_error:?}",
            peer.ip()
        ),
    );
}
