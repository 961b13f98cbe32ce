//! The gateway as a process of its own: it keeps serving while caasd is killed, restarted or
//! gone, from its own route cache when need be, and reports what it served.

use caas_e2e::{http_request, test_image, Platform};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

/// Clients that request `app` through the gateway at `addr` back to back until stopped; every
/// answer that was not a 200 is kept, with what it said. They need no caasd: only the gateway.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<u64>>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, app: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let host = format!("{app}.localhost");
        let threads = (0..clients)
            .map(|_| {
                let (stop, sent, failures, host) =
                    (stop.clone(), sent.clone(), failures.clone(), host.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let r = http_request(
                            addr,
                            "GET",
                            &host,
                            "/",
                            &[],
                            b"",
                            Duration::from_secs(10),
                        );
                        *sent.lock().unwrap() += 1;
                        match r {
                            Ok(r) if r.status == 200 => {}
                            Ok(r) => failures.lock().unwrap().push(format!(
                                "{}: {}",
                                r.status,
                                r.body.trim()
                            )),
                            Err(e) => failures.lock().unwrap().push(e.to_string()),
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        Load {
            stop,
            sent,
            failures,
            threads,
        }
    }

    fn sent(&self) -> u64 {
        *self.sent.lock().unwrap()
    }

    /// Stops the clients: how many requests they sent, and the failures.
    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let sent = *self.sent.lock().unwrap();
        let failures = self.failures.lock().unwrap().clone();
        (sent, failures)
    }
}

#[test]
fn kill_9_of_caasd_under_constant_load_drops_no_request_and_routes_follow_when_it_is_back() {
    let mut p = Platform::start();
    p.caas_ok(&["apps:create", "steady"]);
    p.caas_ok(&["push", "--image", &test_image("steady one"), "-a", "steady"]);
    p.caas_ok(&["ps:scale", "web=2", "-a", "steady"]);
    p.wait_for(WAIT, "two instances up", || {
        (p.states("steady") == ["web.1 v1 up", "web.2 v1 up"]).then_some(())
    });
    let gateway = p.gateway_pid().expect("caasd started a gateway");
    let load = Load::start(p.gateway(), "steady", 4);

    for round in 0..3 {
        p.kill9();
        // Nobody runs the control plane now; the apps are served all the same.
        let before = load.sent();
        std::thread::sleep(Duration::from_secs(2));
        assert!(
            load.sent() > before + 20,
            "round {round}: the load kept going"
        );
        p.restart();
        assert_eq!(
            p.gateway_pid(),
            Some(gateway),
            "a restart of caasd leaves the gateway running"
        );
        // Under load while the restarted agent adopts the instances and reports them: an
        // instance it has not probed yet must not leave the routes.
        p.wait_for(WAIT, "both instances reported up again", || {
            (p.states("steady") == ["web.1 v1 up", "web.2 v1 up"]).then_some(())
        });
        std::thread::sleep(Duration::from_secs(1));
    }
    // Routes follow the control plane again: a new release takes the traffic.
    p.caas_ok(&["push", "--image", &test_image("steady two"), "-a", "steady"]);
    p.wait_for(WAIT, "v2 to answer", || {
        p.ok_body("steady")
            .filter(|b| b.starts_with("steady two"))
            .map(|_| ())
    });
    let (sent, failures) = load.finish();
    assert!(sent > 200, "only {sent} requests were sent");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {failures:?}",
        failures.len()
    );
}

#[test]
fn the_gateway_serves_from_its_route_cache_when_it_starts_without_the_control_plane() {
    let mut p = Platform::start();
    p.caas_ok(&["apps:create", "cached"]);
    p.caas_ok(&["push", "--image", &test_image("cached"), "-a", "cached"]);
    let pid = p.gateway_pid().expect("a gateway");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let mut args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // It was asked for port 0; the service manager would give the port it serves on.
    let listen = args.iter().position(|a| a == "--listen").unwrap() + 1;
    args[listen] = p.gateway().to_string();

    // Both go: caasd killed, the gateway stopped (it finishes and exits).
    p.kill9();
    p.kill_gateway();
    std::thread::sleep(Duration::from_millis(300));
    assert!(p.http_get("cached", "/").is_err(), "nothing listens now");

    // The gateway alone, as a service manager would start it: it serves from its cache.
    let log = std::fs::File::create(p.data_dir().join("gateway/restarted.log")).unwrap();
    let mut gw = std::process::Command::new(&args[0])
        .args(&args[1..])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let answered = caas_e2e::wait_until(Duration::from_secs(20), "the cached routes", || {
        p.ok_body("cached")
    });
    assert!(answered.starts_with("cached"), "{answered}");
    let _ = gw.kill();
    let _ = gw.wait();
}

#[test]
fn the_gateway_reports_what_it_served() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "counted"]);
    p.caas_ok(&["push", "--image", &test_image("counted"), "-a", "counted"]);
    let requests = |p: &Platform| {
        p.caas_json(&["metrics", "-a", "counted", "--json", "--window", "10m"])["requests"]
            .as_u64()
            .unwrap()
    };
    // Counts arrive within a second of being made; wait for the push's own checks to settle.
    std::thread::sleep(Duration::from_millis(1500));
    let before = requests(&p);
    for _ in 0..25 {
        assert_eq!(p.http_get("counted", "/").unwrap().0, 200);
    }
    for _ in 0..3 {
        assert_eq!(p.http_get("counted", "/nope").unwrap().0, 404);
    }
    let m = p.wait_for(Duration::from_secs(20), "the counts", || {
        let m = p.caas_json(&["metrics", "-a", "counted", "--json", "--window", "10m"]);
        (m["requests"].as_u64().unwrap() >= before + 28).then_some(m)
    });
    assert_eq!(m["requests"].as_u64().unwrap(), before + 28, "{m}");
    assert!(m["status"][3].as_u64().unwrap() >= 3, "{m}");
    let text = p.caas_ok(&["metrics", "-a", "counted"]);
    assert!(text.contains("requests") && text.contains("p95"), "{text}");
    // Router lines still reach the app's logs.
    p.wait_for(Duration::from_secs(20), "router lines", || {
        let logs = p.caas_ok(&["logs", "-a", "counted", "--source", "router"]);
        logs.contains("path=\"/nope\"").then_some(())
    });
}

#[test]
fn a_gateway_started_with_other_options_hands_over_without_dropping_a_request() {
    let mut p = Platform::start();
    p.caas_ok(&["apps:create", "handed"]);
    p.caas_ok(&["push", "--image", &test_image("handed"), "-a", "handed"]);
    let old = p.gateway_pid().expect("a gateway");
    let load = Load::start(p.gateway(), "handed", 4);
    std::thread::sleep(Duration::from_millis(500));
    // Other gateway options: caasd starts a new gateway on the same address, then the old one
    // stops accepting and finishes what it serves.
    p.set_args(&["--upstream-timeout", "45s"]);
    p.restart();
    let new = p.gateway_pid().expect("a gateway");
    assert_ne!(new, old, "a new gateway serves");
    p.wait_for(Duration::from_secs(10), "the old gateway to exit", || {
        (!std::path::Path::new(&format!("/proc/{old}")).exists()).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let (sent, failures) = load.finish();
    assert!(sent > 50, "only {sent} requests were sent");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {failures:?}",
        failures.len()
    );
}
