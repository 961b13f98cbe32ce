//! The gateway against real HTTP backends on loopback.

use super::report::Reporter;
use super::table::{AppRoutes, Backend, RouteTable};
use super::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A backend that answers `NAME` plus the forwarding headers it received.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                    let h = |n: &str| {
                        req.headers()
                            .get(n)
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default()
                    };
                    let head = format!(
                        "{name} xff={} xfh={} xfp={} xri={} xfport={} fwd={} rid={} cl={} te={}",
                        h("x-forwarded-for"),
                        h("x-forwarded-host"),
                        h("x-forwarded-proto"),
                        h("x-real-ip"),
                        h("x-forwarded-port"),
                        h("forwarded"),
                        h("x-request-id"),
                        h("content-length"),
                        h("transfer-encoding"),
                    );
                    let uri = req.uri().clone();
                    let got = req.into_body().collect().await.map(|b| b.to_bytes().len());
                    let body = match got {
                        Ok(n) if n > 0 => format!("{head} body={n} path={uri}"),
                        _ => format!("{head} path={uri}"),
                    };
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(body))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A port nothing listens on.
async fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

async fn gateway(apps: Vec<(&str, Vec<SocketAddr>)>) -> (SocketAddr, CancellationToken) {
    let (addr, stop, _) = gateway_with(apps, Limits::default()).await;
    (addr, stop)
}

async fn gateway_with(
    apps: Vec<(&str, Vec<SocketAddr>)>,
    limits: Limits,
) -> (SocketAddr, CancellationToken, Arc<Reporter>) {
    let mut map = HashMap::new();
    for (app, addrs) in apps {
        let backends = addrs
            .into_iter()
            .enumerate()
            .map(|(i, addr)| Backend {
                addr,
                instance: format!("web.{}", i + 1),
                release: 1,
            })
            .collect();
        map.insert(app.to_string(), AppRoutes::new(backends));
    }
    let mut table = RouteTable {
        domain: "localhost".into(),
        apps: map,
        ..RouteTable::default()
    };
    table.exact.insert("www.custom.test".into(), "demo".into());
    table.wildcard.insert("custom.test".into(), "demo".into());
    let (_tx, rx) = watch::channel(Arc::new(table));
    std::mem::forget(_tx);
    let reporter = Arc::new(Reporter::default());
    let gw = Gateway::new(rx, reporter.clone(), limits);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(gw.serve(listener, None, stop.clone(), Duration::from_secs(1)));
    (addr, stop, reporter)
}

/// One raw HTTP/1.1 exchange, so tests control every byte sent.
async fn raw(gw: SocketAddr, request: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(gw).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn get(gw: SocketAddr, host: &str, extra: &str) -> (u16, String) {
    raw(
        gw,
        &format!("GET /p?q=1 HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"),
    )
    .await
}

#[tokio::test]
async fn round_robin_over_every_instance() {
    let (a, b, c) = (backend("A").await, backend("B").await, backend("C").await);
    let (gw, _stop) = gateway(vec![("demo", vec![a, b, c])]).await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        let (status, body) = get(gw, "demo.localhost:8080", "").await;
        assert_eq!(status, 200, "{body}");
        seen.push(body[..1].to_string());
    }
    assert_eq!(seen, ["A", "B", "C", "A", "B", "C"]);
}

#[tokio::test]
async fn a_refused_connection_moves_on_to_the_next_instance() {
    let (dead, live) = (dead_port().await, backend("LIVE").await);
    let (gw, _stop) = gateway(vec![("demo", vec![dead, live])]).await;
    for _ in 0..4 {
        let (status, body) = get(gw, "demo.localhost", "").await;
        assert_eq!((status, &body[..4]), (200, "LIVE"));
    }
}

#[tokio::test]
async fn unknown_hosts_get_404_and_apps_without_instances_503() {
    let (gw, _stop) = gateway(vec![("idle", vec![])]).await;
    let (status, body) = get(gw, "nope.localhost", "").await;
    assert_eq!(status, 404);
    assert!(body.contains("no app named \"nope\""), "{body}");
    let (status, body) = get(gw, "example.com", "").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(gw, "idle.localhost", "").await;
    assert_eq!(status, 503);
    assert!(body.contains("caas ps -a idle"), "{body}");
}

#[tokio::test]
async fn all_instances_down_is_a_502() {
    let (gw, _stop) = gateway(vec![("demo", vec![dead_port().await])]).await;
    assert_eq!(get(gw, "demo.localhost", "").await.0, 502);
}

#[tokio::test]
async fn forwarding_headers_are_set_and_spoofs_overwritten() {
    let (gw, _stop) = gateway(vec![("demo", vec![backend("A").await])]).await;
    let (status, body) = get(
        gw,
        "demo.localhost:8080",
        "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nX-Request-Id: abc-123\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("xff=127.0.0.1 "), "{body}");
    assert!(body.contains("xfh=demo.localhost:8080 "), "{body}");
    assert!(body.contains("xfp=http "), "{body}");
    assert!(body.contains("rid=abc-123 "), "{body}");
    assert!(body.ends_with("path=/p?q=1"), "{body}");
}

#[tokio::test]
async fn custom_domains_route_exact_then_wildcard_and_duplicate_hosts_are_refused() {
    let (gw, _stop) = gateway(vec![("demo", vec![backend("A").await])]).await;
    for host in ["www.custom.test", "WWW.Custom.Test:443", "x.custom.test"] {
        let (status, body) = get(gw, host, "").await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    assert_eq!(get(gw, "custom.test", "").await.0, 404);
    assert_eq!(get(gw, "a.b.custom.test", "").await.0, 404);
    let (status, body) = get(gw, "demo.localhost", "Host: evil.localhost\r\n").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("more than one Host"), "{body}");
    // An absolute-form target names the host; Host is then ignored (RFC 9112 §3.2.2).
    let (status, body) = raw(
        gw,
        "GET http://www.custom.test/x HTTP/1.1\r\nHost: nope.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn client_set_forwarding_headers_are_replaced() {
    let (gw, _stop) = gateway(vec![("demo", vec![backend("A").await])]).await;
    let (status, body) = get(
        gw,
        "demo.localhost",
        "X-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Port: 1\r\nX-Forwarded-Proto: https\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("xri=127.0.0.1 "), "{body}");
    assert!(body.contains("xfp=http "), "{body}");
    assert!(body.contains(&format!("xfport={} ", gw.port())), "{body}");
    assert!(body.contains("fwd= "), "{body}");
}

#[tokio::test]
async fn request_bodies_over_the_limit_get_a_413() {
    let limits = Limits {
        max_body: 10,
        ..Limits::default()
    };
    let (gw, _stop, _) = gateway_with(vec![("demo", vec![backend("A").await])], limits).await;
    let (status, body) = raw(
        gw,
        "POST / HTTP/1.1\r\nHost: demo.localhost\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("body=10 "), "{body}");
    let (status, body) = raw(
        gw,
        "POST / HTTP/1.1\r\nHost: demo.localhost\r\nContent-Length: 11\r\nConnection: close\r\n\r\n0123456789a",
    )
    .await;
    assert_eq!(status, 413, "{body}");
    // A chunked body is cut off where it passes the limit.
    let (status, body) = raw(
        gw,
        "POST / HTTP/1.1\r\nHost: demo.localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n8\r\n01234567\r\n8\r\n01234567\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 413, "{body}");
}

#[tokio::test]
async fn idle_client_connections_are_closed() {
    let limits = Limits {
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (gw, _stop, _) = gateway_with(vec![("demo", vec![backend("A").await])], limits).await;
    let mut s = tokio::net::TcpStream::connect(gw).await.unwrap();
    // Half a request, then nothing: the connection is closed.
    s.write_all(b"POST / HTTP/1.1\r\nHost: demo.localhost\r\nContent-Length: 5\r\n\r\nab")
        .await
        .unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the connection was not closed");
}

#[tokio::test]
async fn ambiguous_request_lengths_never_reach_an_instance() {
    let (gw, _stop) = gateway(vec![("demo", vec![backend("A").await])]).await;
    // Content-Length with Transfer-Encoding: the length is dropped, the body is chunked.
    let (status, body) = raw(
        gw,
        "POST / HTTP/1.1\r\nHost: demo.localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(
        status == 400 || (status == 200 && body.contains("cl= te=chunked")),
        "{status} {body}"
    );
    // Two different lengths: refused.
    let (status, _) = raw(
        gw,
        "POST / HTTP/1.1\r\nHost: demo.localhost\r\nContent-Length: 4\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcd",
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn keep_alive_connections_are_reused_for_many_requests() {
    let (gw, _stop) = gateway(vec![("demo", vec![backend("A").await])]).await;
    let mut s = tokio::net::TcpStream::connect(gw).await.unwrap();
    let mut buf = vec![0u8; 4096];
    for _ in 0..20 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: demo.localhost\r\n\r\n")
            .await
            .unwrap();
        let n = s.read(&mut buf).await.unwrap();
        let resp = String::from_utf8_lossy(&buf[..n]);
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
}

/// Like Docker's userland proxy in front of a dead instance: accepts, then hangs up.
async fn hang_up() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            drop(stream);
        }
    });
    addr
}

#[tokio::test]
async fn a_get_is_retried_when_an_instance_hangs_up_but_a_post_is_not() {
    let (bad, good) = (hang_up().await, backend("GOOD").await);
    let (gw, _stop) = gateway(vec![("demo", vec![bad, good])]).await;
    for _ in 0..4 {
        let (status, body) = get(gw, "demo.localhost", "").await;
        assert_eq!((status, &body[..4]), (200, "GOOD"));
    }
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let req = "POST / HTTP/1.1\r\nHost: demo.localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi";
        statuses.push(raw(gw, req).await.0);
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 502],
        "one POST went to the failing instance and was not replayed"
    );
}

#[test]
fn generated_request_ids_do_not_repeat() {
    let ids: std::collections::HashSet<String> =
        (0..10_000).map(|_| super::new_request_id()).collect();
    assert_eq!(ids.len(), 10_000);
    assert!(ids
        .iter()
        .all(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())));
}

/// A backend that switches protocols on `Upgrade: websocket` and then echoes raw bytes.
async fn upgrade_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                assert!(text.contains("upgrade: websocket"), "{text}");
                assert!(text.contains("connection: upgrade"), "{text}");
                stream
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                    .await
                    .unwrap();
                let mut buf = [0u8; 1024];
                loop {
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_upgrades_pass_through_both_ways() {
    let (gw, _stop) = gateway(vec![("demo", vec![upgrade_echo().await])]).await;
    let mut s = tokio::net::TcpStream::connect(gw).await.unwrap();
    s.write_all(
        b"GET /socket HTTP/1.1\r\nHost: demo.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).await.unwrap(),
            1,
            "the gateway hung up: {head:?}"
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    for msg in [&b"ping"[..], b"frames go both ways"] {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(got, msg);
    }
}

/// A backend that accepts and reads, and never answers.
async fn silent() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            held.push(s);
        }
    });
    addr
}

#[tokio::test]
async fn an_instance_that_does_not_answer_in_time_is_a_504_and_is_reported() {
    let limits = Limits {
        upstream_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (gw, _stop, reporter) = gateway_with(vec![("slow", vec![silent().await])], limits).await;
    let (status, body) = get(gw, "slow.localhost", "").await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("did not answer within"), "{body}");
    let report = reporter.take();
    assert_eq!(report.traffic[0].status, [0, 0, 0, 0, 1]);
    assert!(
        report.lines[0].line.text.contains("code=H12"),
        "{:?}",
        report.lines
    );
}

#[tokio::test]
async fn past_the_connection_limit_a_client_gets_a_503_at_once() {
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let (gw, _stop, _) = gateway_with(vec![("a", vec![backend("A").await])], limits).await;
    // One connection held open (no request yet) takes the only place.
    let _held = tokio::net::TcpStream::connect(gw).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = get(gw, "a.localhost", "").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("limit of connections"), "{body}");
}

#[tokio::test]
async fn answered_requests_are_counted_for_their_app_and_logged() {
    let (gw, _stop, reporter) = gateway_with(
        vec![("a", vec![backend("A").await]), ("idle", vec![])],
        Limits::default(),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(get(gw, "a.localhost", "").await.0, 200);
    }
    assert_eq!(get(gw, "idle.localhost", "").await.0, 503);
    assert_eq!(get(gw, "nobody.localhost", "").await.0, 404);
    let mut report = reporter.take();
    report.traffic.sort_by(|x, y| x.app.cmp(&y.app));
    assert_eq!(
        report.traffic.len(),
        2,
        "an unknown app is nobody's traffic"
    );
    assert_eq!(report.traffic[0].status, [0, 3, 0, 0, 0]);
    assert_eq!(report.traffic[1].status, [0, 0, 0, 0, 1]);
    assert_eq!(report.lines.len(), 3);
    assert!(report.lines[0].line.text.starts_with("at=info method=GET"));
}
