//! Metrics and alerts: `GET /metrics` counts exactly the requests a test sends, in Prometheus'
//! text format; `caas metrics` shows the instances' CPU and memory; alerts raise and clear a
//! `caas[alert]` line and call a webhook on this machine.

use caas_e2e::{http_request, test_image, Platform, HTTP_TIMEOUT};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

fn api_addr(p: &Platform) -> SocketAddr {
    p.api_url()
        .trim_start_matches("http://")
        .parse()
        .expect("the API address")
}

/// `GET /metrics` with the admin token (or another): `(status, body)`.
fn scrape(p: &Platform, token: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    let r = http_request(
        api_addr(p),
        "GET",
        "localhost",
        "/metrics",
        &[("Authorization", &auth)],
        b"",
        HTTP_TIMEOUT,
    )
    .expect("GET /metrics");
    (r.status, r.body)
}

/// The value of one series (`name{labels}`), if it is there.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_exactly_the_requests_a_test_sent() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "counted"]);
    // `push` waits until the instance is up; nothing has asked the app anything yet.
    p.caas_ok(&["push", "--image", &test_image("counted"), "-a", "counted"]);

    let (status, _) = scrape(&p, "caas_not-the-token");
    assert_eq!(status, 401, "/metrics needs the admin token");

    let mut statuses = Vec::new();
    for i in 0..30 {
        let path = if i % 5 == 4 { "/nothing-here" } else { "/" };
        let (status, _) = p.http_get("counted", path).expect("a request");
        statuses.push(status);
    }
    let want = |class: u16| statuses.iter().filter(|s| **s / 100 == class).count() as f64;
    let series = |class: &str| {
        format!(r#"caas_requests_total{{app="counted",process="web",status="{class}"}}"#)
    };
    let text = p.wait_for(WAIT, "the gateway's counts of 30 requests", || {
        let (status, text) = scrape(&p, p.token());
        assert_eq!(status, 200, "{text}");
        let total: f64 = ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .iter()
            .filter_map(|c| sample(&text, &series(c)))
            .sum();
        (total >= 30.0).then_some(text)
    });
    for (class, n) in [("2xx", 2), ("4xx", 4), ("5xx", 5)] {
        assert_eq!(
            sample(&text, &series(class)).unwrap_or(0.0),
            want(n),
            "{class}: {statuses:?}\n{text}"
        );
    }
    assert_eq!(
        sample(
            &text,
            r#"caas_request_duration_seconds_count{app="counted",process="web"}"#
        ),
        Some(30.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"caas_request_duration_seconds_bucket{app="counted",process="web",le="+Inf"}"#
        ),
        Some(30.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            r#"caas_response_bytes_total{app="counted",process="web"}"#
        )
        .unwrap_or(0.0)
            > 0.0
    );
    assert_eq!(
        sample(
            &text,
            r#"caas_instances{app="counted",process="web",state="up"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"caas_deploys_total{app="counted",outcome="succeeded"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "caas_scheduler_passes_total").unwrap_or(0.0) > 0.0,
        "{text}"
    );
    assert!(
        sample(&text, r#"caas_agent_heartbeats_total{host="local"}"#).unwrap_or(0.0) > 0.0,
        "{text}"
    );
    assert!(
        sample(&text, "caas_store_size_bytes").unwrap_or(0.0) > 0.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            r#"caas_log_lines_total{app="counted",source="caas"}"#
        )
        .unwrap_or(0.0)
            > 0.0,
        "{text}"
    );
    assert!(
        text.contains("# TYPE caas_requests_total counter"),
        "{text}"
    );

    // Nothing counted twice: a later scrape says the same.
    let (_, again) = scrape(&p, p.token());
    assert_eq!(
        sample(&again, &series("2xx")),
        sample(&text, &series("2xx"))
    );

    // CPU and memory per instance, from the agent's readings of the engine.
    let m = p.wait_for(WAIT, "the instance's CPU and memory", || {
        let m = p.caas_json(&["metrics", "-a", "counted", "--json"]);
        let usage = &m["instances"][0]["usage"];
        (usage["memory_bytes"].as_u64().unwrap_or(0) > 0 && usage["cpu_percent"].is_number())
            .then_some(m)
    });
    assert_eq!(m["instances"][0]["name"], "web.1", "{m}");
    let (_, text) = scrape(&p, p.token());
    assert!(
        sample(
            &text,
            r#"caas_instance_memory_bytes{app="counted",process="web",instance="web.1"}"#
        )
        .unwrap_or(0.0)
            > 0.0,
        "{text}"
    );
    let shown = p.caas_ok(&["metrics", "-a", "counted"]);
    assert!(
        shown.contains("web.1 v1 up  cpu ") && shown.contains(" of 512.0 MB"),
        "{shown}"
    );
}

/// An HTTP server on loopback that answers 200 to every POST and keeps the bodies.
struct Webhook {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Webhook {
    fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (bodies.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut raw = Vec::new();
                let mut buf = [0u8; 8192];
                // Headers, then Content-Length bytes of body.
                let body = loop {
                    let Ok(n @ 1..) = c.read(&mut buf) else {
                        break None;
                    };
                    raw.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&raw).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break Some(body.to_string());
                    }
                };
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                if let Some(body) = body {
                    b.lock().unwrap().push(body);
                }
            }
        });
        Webhook { port, bodies, stop }
    }

    fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn alerts_raise_and_clear_a_line_and_call_the_webhook() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "watched"]);
    p.caas_ok(&["push", "--image", &test_image("watched"), "-a", "watched"]);
    let hook = Webhook::start();
    let url = format!("http://127.0.0.1:{}/hook", hook.port);

    // Bad input: one line, exit 2, nothing set.
    for (args, want) in [
        (&["--5xx-rate", "0%"][..], "--5xx-rate"),
        (&["--5xx-rate", "150%"], "at most 100"),
        (&["--p95", "soon"], "--p95"),
        (&["--5xx-rate", "1%", "--window", "1s"], "5s to 10m"),
        (
            &["--5xx-rate", "1%", "--webhook", "ftp://x/y"],
            "invalid webhook",
        ),
        (&[], "--p95"),
    ] {
        let mut all = vec!["alerts:set", "-a", "watched"];
        all.extend_from_slice(args);
        let out = p.caas_code(2, &all);
        assert!(out.stderr.contains(want), "{args:?}: {out}");
        if !args.is_empty() {
            assert_eq!(out.stderr.trim().lines().count(), 1, "{args:?}: {out}");
        }
    }
    let none = p.caas_json(&["alerts", "-a", "watched", "--json"]);
    assert!(none["settings"].is_null(), "{none}");

    p.caas_ok(&[
        "alerts:set",
        "-a",
        "watched",
        "--5xx-rate",
        "10%",
        "--p95",
        "5s",
        "--window",
        "5s",
        "--webhook",
        &url,
    ]);
    // web=0: the gateway answers 503 for the app, which count as its 5xx.
    p.caas_ok(&["ps:scale", "web=0", "-a", "watched"]);
    let logs =
        |p: &Platform| p.caas_ok(&["logs", "-a", "watched", "-n", "1000", "--source", "caas"]);
    p.wait_for(WAIT, "the 5xx alert to be raised", || {
        let (status, _) = p.http_get("watched", "/").ok()?;
        if status != 503 {
            return None;
        }
        logs(&p)
            .contains("caas[alert]: RAISED 5xx_rate: 5xx rate")
            .then_some(())
    });
    let raised = p.caas_json(&["alerts", "-a", "watched", "--json"]);
    assert_eq!(
        raised["raised"],
        serde_json::json!(["5xx_rate"]),
        "{raised}"
    );
    assert!(
        !logs(&p).contains("RAISED p95"),
        "503s are fast: {}",
        logs(&p)
    );

    p.caas_ok(&["ps:scale", "web=1", "-a", "watched"]);
    p.wait_for(WAIT, "the 5xx alert to clear", || {
        let _ = p.http_get("watched", "/");
        logs(&p)
            .contains("caas[alert]: CLEARED 5xx_rate")
            .then_some(())
    });
    let notices = p.wait_for(WAIT, "the webhook to hear both", || {
        let b = hook.bodies();
        (b.len() >= 2).then_some(b)
    });
    assert_eq!(notices[0]["app"], "watched", "{notices:?}");
    assert_eq!(notices[0]["alert"], "5xx_rate");
    assert_eq!(notices[0]["state"], "raised");
    assert_eq!(notices[1]["state"], "cleared");
    assert_eq!(
        logs(&p).matches("RAISED 5xx_rate").count(),
        1,
        "{}",
        logs(&p)
    );

    p.caas_ok(&["alerts:clear", "-a", "watched"]);
    let off = p.caas_json(&["alerts", "-a", "watched", "--json"]);
    assert!(off["settings"].is_null(), "{off}");
}
