//! Logs that last: what an app printed and what the platform said are on disk, so they survive a
//! `kill -9` of caasd; readers filter by source, process and time, and get JSON when asked.

use caas_e2e::{test_image, Platform};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

fn logs(p: &Platform, args: &[&str]) -> String {
    let mut all = vec!["logs", "-a", "kept", "-n", "1000"];
    all.extend_from_slice(args);
    p.caas_ok(&all)
}

#[test]
fn logs_survive_a_kill_9_of_caasd_and_filter_by_source_process_and_time() {
    let mut p = Platform::start();
    p.caas_ok(&["apps:create", "kept"]);
    p.caas_ok(&["push", "--image", &test_image("kept"), "-a", "kept"]);
    p.wait_for(WAIT, "the app's first output", || {
        logs(&p, &[])
            .contains("app[web.1]: demo listening")
            .then_some(())
    });
    let before = logs(&p, &[]);
    assert!(before.contains("caas[deploy]: Deploying v1"), "{before}");

    p.kill9();
    p.restart();
    let after = logs(&p, &[]);
    for line in [
        "caas[deploy]: Deploying v1",
        "caas[deploy]: v1 is up (web=1)",
        "app[web.1]: demo listening",
    ] {
        assert!(
            after.contains(line),
            "{line:?} is gone after kill -9:\n{after}"
        );
    }
    // Nothing twice: the restart adopted the instance and did not re-ship its output.
    assert_eq!(
        after.matches("app[web.1]: demo listening").count(),
        1,
        "{after}"
    );

    // Filters.
    let app_only = logs(&p, &["--source", "app"]);
    assert!(
        app_only.contains("app[web.1]") && !app_only.contains("caas["),
        "{app_only}"
    );
    let web1 = logs(&p, &["--ps", "web.1"]);
    assert!(web1.contains("app[web.1]: demo listening"), "{web1}");
    assert!(!web1.contains("App created"), "{web1}");
    let recent = p.caas_ok(&["logs", "-a", "kept", "--since", "1h"]);
    assert!(recent.contains("caas[deploy]: Deploying v1"), "{recent}");
    let future = p.caas_ok(&["logs", "-a", "kept", "--since", "2999-01-01T00:00:00Z"]);
    assert!(future.trim().is_empty(), "{future}");
    let json = logs(&p, &["--json", "--source", "caas"]);
    for line in json.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["type"], "line");
        assert_eq!(v["source"], "caas");
    }
    assert!(json.lines().count() >= 3, "{json}");

    // Bad filters: exit 2, one line that says what to use.
    for (args, want) in [
        (&["--source", "apps"][..], "use app, caas, router or build"),
        (
            &["--ps", "Web.1"],
            "use a process type (web) or an instance (web.1)",
        ),
        (
            &["--since", "yesterday"],
            "use a duration (10m, 2h) or a time",
        ),
    ] {
        let mut all = vec!["logs", "-a", "kept"];
        all.extend_from_slice(args);
        let out = p.caas_code(2, &all);
        assert!(out.stderr.contains(want), "{args:?}: {out}");
    }
}

/// A syslog receiver on loopback: everything it reads, in one string.
struct Receiver {
    port: u16,
    got: std::sync::Arc<std::sync::Mutex<String>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    fn start(port: u16) -> Receiver {
        use std::io::Read;
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let got = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((c, _)) = listener.accept() {
                    c.set_nonblocking(true).unwrap();
                    conns.push(c);
                }
                for c in &mut conns {
                    let mut buf = [0u8; 65536];
                    if let Ok(n @ 1..) = c.read(&mut buf) {
                        g.lock()
                            .unwrap()
                            .push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Receiver { port, got, stop }
    }

    fn text(&self) -> String {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_syslog_drain_gets_app_and_platform_lines_and_catches_up_after_being_down() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "drained"]);
    let rx = Receiver::start(0);
    let url = format!("syslog://127.0.0.1:{}", rx.port);
    let out = p.caas_ok(&["drains:add", &url, "-a", "drained"]);
    assert!(out.contains("Successfully added drain"), "{out}");
    p.caas_ok(&["push", "--image", &test_image("drained"), "-a", "drained"]);
    p.wait_for(WAIT, "app and platform lines at the receiver", || {
        let text = rx.text();
        (text.contains(" drained app web.1 - - demo listening")
            && text.contains(" drained caas deploy - - Deploying v1"))
        .then_some(())
    });
    // Octet counting: every frame starts with its length.
    let text = rx.text();
    let first = text.split_once(' ').unwrap().0;
    assert!(first.parse::<usize>().is_ok(), "{text}");

    // The receiver goes away; lines queue; it comes back on the same port; they arrive.
    let port = rx.port;
    drop(rx);
    p.caas_ok(&["config:set", "WHILE_DOWN=1", "-a", "drained"]);
    let rx = Receiver::start(port);
    p.wait_for(
        Duration::from_secs(90),
        "the lines of the down time",
        || {
            rx.text()
                .contains("Set WHILE_DOWN config var")
                .then_some(())
        },
    );
    let drains = p.caas_json(&["drains", "-a", "drained", "--json"]);
    assert_eq!(drains[0]["url"], url.as_str());
    assert!(drains[0]["delivered"].as_u64().unwrap() >= 3, "{drains}");
    assert_eq!(drains[0]["dropped"], 0, "{drains}");

    // Bad input: exit 2, 4 or 5 and nothing changes.
    for (code, args, want) in [
        (
            2,
            &["drains:add", "http://127.0.0.1:1/x", "-a", "drained"][..],
            "use syslog://HOST:PORT",
        ),
        (
            2,
            &["drains:add", "syslog://127.0.0.1", "-a", "drained"],
            "no port",
        ),
        (
            5,
            &["drains:add", url.as_str(), "-a", "drained"],
            "already drains to",
        ),
        (
            4,
            &["drains:remove", "syslog://127.0.0.1:9", "-a", "drained"],
            "has no drain",
        ),
        (4, &["drains", "-a", "nosuchapp"], "nosuchapp"),
    ] {
        let out = p.caas_code(code, args);
        assert!(out.stderr.contains(want), "{args:?}: {out}");
    }
    let out = p.caas_ok(&["drains:remove", &url, "-a", "drained"]);
    assert!(out.contains("Successfully removed drain"), "{out}");
    assert_eq!(
        p.caas_json(&["drains", "-a", "drained", "--json"]),
        serde_json::json!([])
    );
}

/// What an adopted instance printed while caasd was down is read back from the engine when caasd
/// comes back: every line once, before and after, through two `kill -9`s.
#[test]
fn output_written_while_caasd_was_down_is_recovered_once() {
    let mut p = Platform::start();
    p.caas_ok(&["apps:create", "gap"]);
    p.caas_ok(&["push", "--image", &test_image("gap"), "-a", "gap"]);
    p.wait_for(WAIT, "gap to answer", || p.ok_body("gap"));
    // The demo app prints `request GET / from ADDR id=X-Request-Id` for every request; the
    // gateway keeps serving while caasd is away.
    let hit = |p: &Platform, id: &str| {
        let r = p
            .http("GET", "gap.localhost", "/", &[("X-Request-Id", id)], b"")
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(r.status, 200, "{id}: {}", r.body);
    };
    let app_logs =
        |p: &Platform| p.caas_ok(&["logs", "-a", "gap", "-n", "1000", "--source", "app"]);
    let ids: Vec<String> = ["before", "down1", "down2"]
        .iter()
        .flat_map(|phase| (0..4).map(move |i| format!("{phase}-{i}")))
        .collect();
    let count = |logs: &str, id: &str| {
        logs.lines()
            .filter(|l| l.ends_with(&format!(" id={id}")))
            .count()
    };

    for id in &ids[0..4] {
        hit(&p, id);
    }
    p.wait_for(WAIT, "the lines before the kill", || {
        (count(&app_logs(&p), "before-3") == 1).then_some(())
    });
    p.kill9();
    for id in &ids[4..8] {
        hit(&p, id);
    }
    p.restart();
    p.wait_for(WAIT, "the lines written while caasd was down", || {
        let logs = app_logs(&p);
        ids[..8]
            .iter()
            .all(|id| count(&logs, id) >= 1)
            .then_some(())
    });

    // Once more, to a caasd that has just taken over the container.
    p.kill9();
    for id in &ids[8..] {
        hit(&p, id);
    }
    p.restart();
    let logs = p.wait_for(WAIT, "the lines of the second gap", || {
        let logs = app_logs(&p);
        ids.iter().all(|id| count(&logs, id) >= 1).then_some(logs)
    });
    for id in &ids {
        assert_eq!(
            count(&logs, id),
            1,
            "{id} is not there exactly once:\n{logs}"
        );
    }
    assert_eq!(
        logs.matches("demo listening").count(),
        1,
        "the start line came back twice:\n{logs}"
    );
}
