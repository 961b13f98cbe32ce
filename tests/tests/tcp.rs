//! TCP routes: a public port of the gateway forwards connections round robin to an app's web
//! instances (to `$PORT`, or `--target PORT`); a denied client's connection is closed; ports out
//! of range or taken are refused.

use caas_e2e::{echo_image, http_request, Platform};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Sends one line over a fresh connection to `addr` and reads the answer line; `None` when the
/// connection fails or closes without one.
fn line_through(addr: SocketAddr, text: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("{text}\n").as_bytes()).ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    (!line.is_empty()).then(|| line.trim_end().to_string())
}

fn ports(p: &Platform, app: &str) -> Vec<serde_json::Value> {
    p.caas_json(&["ports", "-a", app, "--json"])
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_tcp_route_forwards_round_robin_and_denied_clients_are_closed() {
    let p = Platform::start();
    let (low, high) = p.tcp_ports();
    p.caas_ok(&["apps:create", "lines"]);
    p.caas_ok(&["config:set", "ECHO_TCP_PORT=7000", "-a", "lines"]);
    p.caas_ok(&["push", "--image", &echo_image(), "-a", "lines"]);
    p.caas_ok(&["ps:scale", "web=2", "-a", "lines"]);
    p.wait_for(WAIT, "two instances up", || {
        (p.states("lines") == ["web.1 v1 up", "web.2 v1 up"]).then_some(())
    });

    // A custom protocol on port 7000 of the instances.
    let out = p.caas_ok(&["ports:add", "tcp", "--target", "7000", "-a", "lines"]);
    let route = &ports(&p, "lines")[0];
    let port = route["port"].as_u64().unwrap() as u16;
    assert!((low..=high).contains(&port), "{route}");
    assert_eq!(route["target"], 7000);
    assert_eq!(route["address"], format!("lines.localhost:{port}"));
    assert!(out.contains(&format!("Port {port}")), "{out}");
    let gw = SocketAddr::new(p.gateway().ip(), port);
    let first = p.wait_for(WAIT, "the TCP route to answer", || {
        line_through(gw, "hello")
    });
    assert!(first.ends_with(": hello"), "{first}");
    // Round robin: both instances answer, one connection each in turn.
    let mut seen: Vec<String> = (0..6)
        .filter_map(|_| line_through(gw, "hi"))
        .map(|l| l.split(':').next().unwrap().to_string())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["web.1", "web.2"]);
    // One connection carries many lines, both ways.
    let mut s = TcpStream::connect(gw).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    for i in 0..20 {
        s.write_all(format!("line {i}\n").as_bytes()).unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.ends_with(&format!(": line {i}\n")), "{line}");
    }
    drop(s);

    // Without --target, connections go to $PORT: the app's HTTP, passed through untouched.
    let next = high.min(port + 1);
    p.caas_ok(&[
        "ports:add",
        "tcp",
        "--port",
        &next.to_string(),
        "-a",
        "lines",
    ]);
    let raw = SocketAddr::new(p.gateway().ip(), next);
    let answer = p.wait_for(WAIT, "HTTP through the TCP route", || {
        http_request(
            raw,
            "GET",
            "lines.localhost",
            "/raw",
            &[],
            b"",
            Duration::from_secs(5),
        )
        .ok()
        .filter(|r| r.status == 200)
    });
    let seen: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(seen["path"], "/raw");
    assert!(
        seen["headers"]["x-forwarded-for"].is_null(),
        "bytes pass as they are: {seen}"
    );

    // A denied client's connection is closed without reaching an instance.
    p.caas_ok(&["access-rules:deny", "127.0.0.0/8", "-a", "lines"]);
    p.wait_for(WAIT, "the denied client to be closed", || {
        line_through(gw, "let me in").is_none().then_some(())
    });
    let mut s = TcpStream::connect(gw).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"hello\n");
    let mut buf = [0u8; 64];
    assert!(
        matches!(s.read(&mut buf), Ok(0) | Err(_)),
        "closed without an answer"
    );
    p.caas_ok(&["access-rules:remove", "127.0.0.0/8", "-a", "lines"]);
    p.wait_for(WAIT, "the client admitted again", || {
        line_through(gw, "back")
    });
    p.wait_for(WAIT, "TCP router lines", || {
        let logs = p.caas_ok(&["logs", "-a", "lines", "--source", "router"]);
        (logs.contains("proto=tcp") && logs.contains("code=H26")).then_some(())
    });

    // Removing the route closes the port.
    p.caas_ok(&["ports:remove", &port.to_string(), "-a", "lines"]);
    p.wait_for(WAIT, "the port to close", || {
        TcpStream::connect_timeout(&gw, Duration::from_secs(2))
            .is_err()
            .then_some(())
    });
    let table = p.caas_ok(&["ports", "-a", "lines"]);
    assert!(
        table.contains(&next.to_string()) && table.contains("$PORT"),
        "{table}"
    );
}

#[test]
fn ports_out_of_range_or_taken_are_refused_and_change_nothing() {
    let p = Platform::start();
    let (low, high) = p.tcp_ports();
    for app in ["first", "second"] {
        p.caas_ok(&["apps:create", app]);
    }
    p.caas_ok(&[
        "ports:add",
        "tcp",
        "--port",
        &low.to_string(),
        "-a",
        "first",
    ]);
    // Something else on this machine listens on the next port.
    let busy = std::net::TcpListener::bind(("127.0.0.1", low + 1)).unwrap();
    for (args, says) in [
        (
            vec!["--port".to_string(), (high + 1).to_string()],
            "outside the gateway's TCP ports",
        ),
        (
            vec!["--port".into(), "80".into()],
            "outside the gateway's TCP ports",
        ),
        (
            vec!["--port".into(), low.to_string()],
            "taken by another TCP route",
        ),
        (
            vec!["--port".into(), (low + 1).to_string()],
            "in use on the gateway's machine",
        ),
        (
            vec!["--target".into(), "70000".into()],
            "invalid target port",
        ),
        (vec!["--target".into(), "0".into()], "invalid target port"),
    ] {
        let mut all = vec!["ports:add", "tcp", "-a", "second"];
        all.extend(args.iter().map(String::as_str));
        let out = p.caas_code(2, &all);
        assert!(out.stderr.contains(says), "{all:?}: {out}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
    }
    let out = p.caas_code(2, &["ports:add", "udp", "-a", "second"]);
    assert!(out.stderr.contains("caas routes tcp"), "{out}");
    assert!(ports(&p, "second").is_empty());
    // Left to pick, caas skips both.
    p.caas_ok(&["ports:add", "tcp", "-a", "second"]);
    assert_eq!(ports(&p, "second")[0]["port"], low + 2);
    drop(busy);
    p.caas_code(4, &["ports:remove", &low.to_string(), "-a", "second"]);
    assert_eq!(ports(&p, "first").len(), 1);
}
