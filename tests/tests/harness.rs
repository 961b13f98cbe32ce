//! Tests that prove the harness itself: the test image, and a platform that starts.

use std::time::Duration;

use caas_e2e::{docker, docker_ok, http_request, require_docker, test_image, wait_until, Platform};

/// Removes a container when dropped, so a failing test leaves nothing behind.
struct RmOnDrop(String);

impl Drop for RmOnDrop {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

/// The test image runs under the constraints caasd applies (and read-only on top), prints its
/// start line, answers on $PORT with the baked-in greeting, logs each request to the container's
/// output (not into the response), and stops promptly on SIGTERM.
#[test]
fn test_image_answers_on_port_under_caasd_constraints() {
    require_docker();
    let image = test_image("hi");
    assert!(image.starts_with("caas-test-web:"), "{image}");
    // A second call is served from the cache and names the same image.
    assert_eq!(test_image("hi"), image);

    let id = docker_ok(&[
        "run",
        "-d",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--read-only",
        "--memory",
        "512m",
        "--pids-limit",
        "100",
        "-e",
        "PORT=5000",
        "-e",
        "CAAS_INSTANCE=web.7",
        "-p",
        "127.0.0.1::5000",
        &image,
    ])
    .trim()
    .to_string();
    let _cleanup = RmOnDrop(id.clone());

    let port = docker_ok(&["port", &id, "5000/tcp"]);
    let addr: std::net::SocketAddr = port
        .lines()
        .find(|l| l.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no 127.0.0.1 binding in `docker port`: {port}"))
        .trim()
        .parse()
        .expect("docker port prints an address");

    let hostname = docker_ok(&["inspect", "--format", "{{.Config.Hostname}}", &id])
        .trim()
        .to_string();
    let response = wait_until(Duration::from_secs(20), "the test image to answer", || {
        http_request(
            addr,
            "GET",
            "x.localhost",
            "/",
            &[("X-Request-Id", "req-42")],
            b"",
            Duration::from_secs(5),
        )
        .ok()
    });
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, format!("hi: web.7 on {hostname}\n"));
    assert!(
        !response.body.contains("request GET"),
        "the request log line leaked into the response: {response:?}"
    );

    let logs = wait_until(Duration::from_secs(10), "the request log line", || {
        let out = docker(&["logs", &id]);
        let all = format!("{}{}", out.stdout, out.stderr);
        all.contains("request GET / from").then_some(all)
    });
    assert!(
        logs.contains("demo listening on port 5000 as web.7"),
        "{logs}"
    );
    assert!(logs.contains("id=req-42"), "{logs}");

    // The start script traps SIGTERM: far below docker's 10 s grace period.
    let started = std::time::Instant::now();
    docker_ok(&["stop", "-t", "10", &id]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "docker stop took {:?}",
        started.elapsed()
    );
}

/// A platform starts on a fresh data dir and has no apps. (Needs a working caasd and caas.)
#[test]
fn platform_starts_with_no_apps() {
    let p = Platform::start();
    assert!(
        p.api_url().starts_with("http://127.0.0.1:"),
        "{}",
        p.api_url()
    );
    assert!(!p.cluster_id().is_empty());
    assert!(!p.token().is_empty());
    let apps = p.caas_json(&["apps", "--json"]);
    assert_eq!(apps, serde_json::json!([]));
    assert!(p.containers().is_empty());
}
