//! Autoscaling on requests per second: a step in load takes web from 1 to 3 instances, and the
//! end of it back to 1 after the cool-down; every change is a `caas[autoscale]` line; a manual
//! scale of an autoscaled process type is refused with a hint; bad settings change nothing.

use caas_e2e::{http_request, test_image, Platform, HTTP_TIMEOUT};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);

/// Requests to the app through the gateway, one after another with a pause, until stopped (or
/// three minutes at most).
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(p: &Platform, app: &str) -> Load {
        let gateway = p.gateway();
        let host = format!("{app}.localhost");
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(180);
            while !s.load(Ordering::Relaxed) && Instant::now() < until {
                let _ = http_request(gateway, "GET", &host, "/", &[], b"", HTTP_TIMEOUT);
                n.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Load {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn web_scales_out_under_load_and_back_after_the_cool_down() {
    let p = Platform::start_with(&["--max-scale", "5"]);
    p.caas_ok(&["apps:create", "elastic"]);
    p.caas_ok(&["push", "--image", &test_image("elastic"), "-a", "elastic"]);

    // Bad input: one line, exit 2, nothing set.
    for (args, want) in [
        (
            &["web", "--min", "3", "--max", "2", "--rps", "5"][..],
            "--min 3 is above --max 2",
        ),
        (&["web", "--max", "3", "--rps", "0"], "--rps"),
        (&["web", "--max", "3", "--rps", "-4"], "--rps"),
        (&["web", "--max", "3", "--cpu", "0%"], "--cpu"),
        (&["web", "--max", "9", "--rps", "5"], "--max-scale"),
        (
            &["worker", "--max", "3", "--cpu", "50%"],
            "unknown process type",
        ),
        (
            &["web", "--max", "3", "--rps", "5", "--cooldown", "soon"],
            "--cooldown",
        ),
    ] {
        let mut all = vec!["autoscale:set", "-a", "elastic"];
        all.extend_from_slice(args);
        let out = p.caas_code(2, &all);
        assert!(out.stderr.contains(want), "{args:?}: {out}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{args:?}: {out}");
    }
    p.caas_code(2, &["autoscale:set", "web", "--max", "3", "-a", "elastic"]);
    assert_eq!(
        p.caas_json(&["autoscale", "-a", "elastic", "--json"]),
        serde_json::json!([])
    );

    let set = p.caas_ok(&[
        "autoscale:set",
        "web",
        "--min",
        "1",
        "--max",
        "3",
        "--rps",
        "5",
        "--cooldown",
        "5s",
        "-a",
        "elastic",
    ]);
    assert!(
        set.contains("Autoscaling web of elastic from 1 to 3 at 5 req/s"),
        "{set}"
    );
    // A manual scale of an autoscaled type is refused with a hint, and changes nothing.
    let refused = p.caas_code(5, &["ps:scale", "web=2", "-a", "elastic"]);
    assert!(
        refused.stderr.contains("caas autoscale:off web"),
        "{refused}"
    );
    assert_eq!(
        p.caas_json(&["apps:info", "elastic", "--json"])["formation"]["web"],
        1
    );

    // A step in load: about 50 requests/s against a target of 5 per instance, capped at 3.
    let mut load = Load::start(&p, "elastic");
    p.wait_for(WAIT, "three web instances up under load", || {
        let states = p.states("elastic");
        (states == ["web.1 v1 up", "web.2 v1 up", "web.3 v1 up"]).then_some(())
    });
    let a = p.caas_json(&["autoscale", "-a", "elastic", "--json"]);
    assert_eq!(a[0]["quantity"], 3, "{a}");
    assert!(a[0]["observed"].as_f64().unwrap_or(0.0) > 0.0, "{a}");
    let sent = load.stop();
    assert!(sent > 0);

    // No load: back to the minimum once the cool-down has passed.
    p.wait_for(WAIT, "back to one instance", || {
        (p.states("elastic") == ["web.1 v1 up"]).then_some(())
    });
    let logs = p.caas_ok(&["logs", "-a", "elastic", "-n", "1000", "--source", "caas"]);
    assert!(
        logs.contains("caas[autoscale]: Scaled web from 1 to "),
        "{logs}"
    );
    assert!(logs.contains(" req/s over the last 10 s, "), "{logs}");
    let down = logs
        .lines()
        .find(|l| l.contains("caas[autoscale]: Scaled web from 3 to 1: "))
        .unwrap_or_else(|| panic!("no scale-down line:\n{logs}"));
    assert!(down.contains(", for "), "the cool-down is said: {down}");
    assert!(!logs.contains("to 4"), "never above max: {logs}");

    p.caas_ok(&["autoscale:off", "web", "-a", "elastic"]);
    p.caas_ok(&["ps:scale", "web=2", "-a", "elastic"]);
    p.caas_code(4, &["autoscale:off", "web", "-a", "elastic"]);
}
