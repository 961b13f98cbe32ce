//! HTTP/2: to clients over TLS (ALPN) and over cleartext with prior knowledge, and end to end to
//! an app that asks for it (`caas apps:http2 on`): an h2c round trip the app itself sees as
//! HTTP/2. curl is the client.

use caas_e2e::{echo_image, Platform, TestCa};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// `(HTTP version curl used, what the echo app saw)` for a request through the gateway.
fn echo(out: caas_e2e::CmdOutput) -> Option<(String, Value)> {
    if out.code != 0 {
        return None;
    }
    // The body, then `-w`'s " %{http_version}".
    let (body, version) = out.stdout.trim_end().rsplit_once(' ')?;
    Some((version.to_string(), serde_json::from_str(body).ok()?))
}

#[test]
fn clients_speak_http2_and_an_app_that_asks_gets_it_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = TestCa::new(tmp.path());
    let p = Platform::start_with(&["--https", "127.0.0.1:0"]);
    p.caas_ok(&["apps:create", "echo"]);
    p.caas_ok(&["push", "--image", &echo_image(), "-a", "echo"]);
    p.caas_ok(&["domains:add", "www.echo.test", "-a", "echo"]);
    let cert = ca.issue("echo", &["www.echo.test"], 30);
    p.caas_ok(&[
        "certs:add",
        cert.cert_path.to_str().unwrap(),
        cert.key_path.to_str().unwrap(),
        "-a",
        "echo",
    ]);
    let cacert = ca.ca_path();
    let cacert = cacert.to_str().unwrap();
    let w = ["-w", " %{http_version}"];

    // HTTP/2 over TLS (ALPN), to an app that speaks HTTP/1.1: the gateway translates.
    let (version, seen) = p.wait_for(WAIT, "HTTP/2 over TLS", || {
        echo(p.curl_https(
            "www.echo.test",
            "/tls?x=1",
            &[&["--http2", "--cacert", cacert][..], &w].concat(),
        ))
    });
    assert_eq!(version, "2", "{seen}");
    assert_eq!(seen["http_version"], "1.1", "{seen}");
    assert_eq!(seen["path"], "/tls?x=1");
    assert_eq!(
        seen["headers"]["host"],
        format!("www.echo.test:{}", p.https().port()),
        "the authority becomes Host: {seen}"
    );
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https", "{seen}");

    // HTTP/2 over cleartext with prior knowledge; HTTP/1.1 still works on the same port.
    let (version, seen) = echo(p.curl_http(
        "www.echo.test",
        "/h2c",
        &[&["--http2-prior-knowledge"][..], &w].concat(),
    ))
    .expect("h2c with prior knowledge");
    assert_eq!(version, "2", "{seen}");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http", "{seen}");
    let (version, _) = echo(p.curl_http("www.echo.test", "/", &w)).expect("HTTP/1.1");
    assert_eq!(version, "1.1");
    // A client that offers both over TLS may still get HTTP/1.1.
    let (version, _) = echo(p.curl_https(
        "www.echo.test",
        "/",
        &[&["--http1.1", "--cacert", cacert][..], &w].concat(),
    ))
    .expect("HTTP/1.1 over TLS");
    assert_eq!(version, "1.1");

    // An app that speaks only HTTP/2 asks for it: every client's request reaches it as
    // HTTP/2 (h2c), bodies too.
    p.caas_ok(&["apps:create", "grpc"]);
    p.caas_ok(&["config:set", "ECHO_PROTOCOL=h2c", "-a", "grpc"]);
    let out = p.caas_ok(&["apps:http2", "on", "-a", "grpc"]);
    assert!(out.contains("HTTP/2"), "{out}");
    p.caas_ok(&["push", "--image", &echo_image(), "-a", "grpc"]);
    p.caas_ok(&["domains:add", "www.grpc.test", "-a", "grpc"]);
    let cert = ca.issue("grpc", &["www.grpc.test"], 30);
    p.caas_ok(&[
        "certs:add",
        cert.cert_path.to_str().unwrap(),
        cert.key_path.to_str().unwrap(),
        "-a",
        "grpc",
    ]);
    let body = "x".repeat(100_000);
    let (_, seen) = p.wait_for(WAIT, "the app to answer over HTTP/2", || {
        echo(p.curl_http(
            "www.grpc.test",
            "/grpc.Echo/Say",
            &[&["--data-binary", &body][..], &w].concat(),
        ))
    });
    assert_eq!(seen["http_version"], "2.0", "{seen}");
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/grpc.Echo/Say");
    assert_eq!(seen["body_bytes"], 100_000);
    let (version, seen) = p.wait_for(WAIT, "h2 end to end over TLS", || {
        echo(p.curl_https(
            "www.grpc.test",
            "/",
            &[&["--http2", "--cacert", cacert][..], &w].concat(),
        ))
    });
    assert_eq!(
        (version.as_str(), &seen["http_version"]),
        ("2", &Value::from("2.0")),
        "{seen}"
    );
    let (_, seen) = echo(p.curl_http(
        "www.grpc.test",
        "/",
        &[&["--http2-prior-knowledge"][..], &w].concat(),
    ))
    .expect("h2c end to end");
    assert_eq!(seen["http_version"], "2.0", "{seen}");
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1", "{seen}");
    let shown = p.caas_ok(&["apps:http2", "-a", "grpc"]);
    assert!(shown.contains("HTTP/2"), "{shown}");
    let shown = p.caas_ok(&["apps:http2", "-a", "echo"]);
    assert!(shown.contains("HTTP/1.1"), "{shown}");
}
