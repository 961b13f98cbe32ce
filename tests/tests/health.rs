//! Health checks as a user sets them (`caas checks:set`, an `app.json`): a release answering 500
//! on its check never takes traffic while the old one serves throughout; readiness takes an
//! instance out of the routes and back; liveness gets it restarted (or only reported); a request
//! of 10 s started just before a deploy completes; bad checks are refused and change nothing.
//!
//! The test image answers `GET /cgi-bin/health` with 200, or with what `/tmp/health-status` in
//! its container (or `$HEALTH_STATUS`) says, and `GET /cgi-bin/sleep?N` after N seconds (see
//! examples/demo/build-image.sh).

use caas_e2e::{
    docker_ok, http_request, require_stack, temp_dir_with, test_image, Platform, DOMAIN,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);
const CHECK: &str = "/cgi-bin/health";

/// `GET /` of an app through the gateway every 50 ms, from a thread of its own, until stopped:
/// every answer seen, as `(status, body)` (status 0: no answer).
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(u16, String)>>>,
    thread: Option<JoinHandle<()>>,
}

impl Load {
    fn start(gateway: SocketAddr, app: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, v, host) = (stop.clone(), seen.clone(), format!("{app}.{DOMAIN}"));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let r = http_request(
                    gateway,
                    "GET",
                    &host,
                    "/",
                    &[],
                    b"",
                    Duration::from_secs(10),
                );
                let answer = match r {
                    Ok(r) => (r.status, r.body),
                    Err(e) => (0, e.to_string()),
                };
                v.lock().unwrap().push(answer);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Load {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<(u16, String)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// The id of the running container of `app`'s `instance` of `release` (`v2`).
fn container_of(p: &Platform, app: &str, release: &str, instance: &str) -> String {
    let running: Vec<_> = p
        .running_containers(app)
        .into_iter()
        .filter(|c| c.instance == instance && c.release == release)
        .collect();
    assert_eq!(running.len(), 1, "{running:?}");
    running[0].id.clone()
}

/// Makes the instance's health check answer `status` (none: its default, 200).
fn health(container: &str, status: Option<u16>) {
    let script = match status {
        Some(s) => format!("echo {s} > /tmp/health-status"),
        None => "rm -f /tmp/health-status".to_string(),
    };
    docker_ok(&["exec", container, "sh", "-c", &script]);
}

fn logs(p: &Platform, app: &str) -> String {
    p.caas_ok(&["logs", "-a", app, "-n", "2000", "--source", "caas"])
}

/// Waits until the app's platform lines hold `want`: an agent's events travel apart from its
/// heartbeats, so they may come a moment after the state `ps` shows.
fn wait_log(p: &Platform, app: &str, want: &str) {
    p.wait_for(WAIT, &format!("{want:?} in the logs"), || {
        logs(p, app).contains(want).then_some(())
    });
}

#[test]
fn a_release_answering_500_on_its_check_never_takes_traffic_and_the_old_one_serves_throughout() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "gate"]);
    p.caas_ok(&["push", "--image", &test_image("gate one"), "-a", "gate"]);
    let out = p.caas_ok(&[
        "checks:set",
        "web",
        "--path",
        CHECK,
        "--interval",
        "1s",
        "--attempts",
        "3",
        "-a",
        "gate",
    ]);
    assert!(
        out.contains("Setting web's startup check and restarting gate... done, v2"),
        "{out}"
    );
    let checks = p.caas_json(&["checks", "-a", "gate", "--json"]);
    assert_eq!(checks.as_array().unwrap().len(), 1, "{checks}");
    assert_eq!(checks[0]["path"], CHECK);
    assert_eq!(checks[0]["kind"], "startup");
    assert_eq!(checks[0]["source"], "cli");

    // v3 answers 500 on its check, and would greet differently if it ever took a request.
    let load = Load::start(p.gateway(), "gate");
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let out = p.caas(&[
        "config:set",
        "HEALTH_STATUS=500",
        "GREETING=broken",
        "-a",
        "gate",
    ]);
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let seen = load.finish();
    println!(
        "measured: v3 failed {took:?} after config:set; {} requests meanwhile",
        seen.len()
    );
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains(
            "error: release v3 failed: web.1 failed its startup check GET /cgi-bin/health: \
             answered 500 (3 of 3); the previous release keeps serving (v2)"
        ),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("The last output of the instance that failed v3:"),
        "{out}"
    );
    assert!(
        out.stderr.contains("| health 500 for GET /cgi-bin/health"),
        "{out}"
    );
    assert!(
        took < Duration::from_secs(60),
        "failed by its check, not the deadline: {took:?}"
    );
    // The old release served every request, before, during and after.
    assert!(seen.len() > 20, "{} requests", seen.len());
    let odd: Vec<_> = seen
        .iter()
        .filter(|(s, b)| *s != 200 || !b.starts_with("gate one: web.1"))
        .collect();
    assert!(odd.is_empty(), "{} of {}: {odd:?}", odd.len(), seen.len());

    let releases = p.caas_json(&["releases", "-a", "gate", "--json"]);
    assert_eq!(releases[0]["version"], 3);
    assert_eq!(releases[0]["status"], "failed");
    assert_eq!(
        releases[0]["error"],
        "web.1 failed its startup check GET /cgi-bin/health: answered 500 (3 of 3)"
    );
    assert_eq!(releases[0]["checks"][0]["path"], CHECK, "{releases}");
    assert_eq!(releases[1]["current"], true);
    for want in [
        "caas[health]: web.1 passed its startup check GET /cgi-bin/health (answered 200); up",
        "caas[health]: web.1 failed its startup check GET /cgi-bin/health 3 times (answered 500); restarting it",
        "caas[deploy]: v3 failed: web.1 failed its startup check GET /cgi-bin/health: answered 500 (3 of 3); v2 keeps serving",
    ] {
        wait_log(&p, "gate", want);
    }
    assert_eq!(p.body("gate").split(':').next(), Some("gate one"));
}

#[test]
fn readiness_takes_an_instance_out_of_the_routes_and_back() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "ready"]);
    p.caas_ok(&["push", "--image", &test_image("ready"), "-a", "ready"]);
    p.caas_ok(&["ps:scale", "web=2", "-a", "ready"]);
    // Old instances gone at once, so `states` shows the new ones only.
    p.caas_ok(&["apps:settings:set", "drain=1s", "-a", "ready"]);
    p.caas_ok(&[
        "checks:set",
        "web",
        "--path",
        CHECK,
        "--kind",
        "readiness",
        "--interval",
        "1s",
        "--attempts",
        "2",
        "-a",
        "ready",
    ]);
    p.wait_for(WAIT, "both instances of v2 up", || {
        (p.states("ready") == ["web.1 v2 up", "web.2 v2 up"]).then_some(())
    });
    let web2 = container_of(&p, "ready", "v2", "web.2");

    health(&web2, Some(503));
    p.wait_for(WAIT, "web.2 unready", || {
        (p.states("ready") == ["web.1 v2 up", "web.2 v2 unready"]).then_some(())
    });
    let ps = p.caas_ok(&["ps", "-a", "ready"]);
    assert!(
        ps.contains("web.2 v2 unready: readiness check GET /cgi-bin/health: answered 503"),
        "{ps}"
    );
    // Out of the routes: web.1 answers everything (after the gateway's table follows).
    p.wait_for(WAIT, "only web.1 to answer", || {
        let bodies: Vec<String> = (0..8).filter_map(|_| p.ok_body("ready")).collect();
        (bodies.len() == 8 && bodies.iter().all(|b| b.contains("web.1"))).then_some(())
    });
    assert_eq!(
        container_of(&p, "ready", "v2", "web.2"),
        web2,
        "left running"
    );

    health(&web2, None);
    p.wait_for(WAIT, "web.2 back", || {
        (p.states("ready") == ["web.1 v2 up", "web.2 v2 up"]).then_some(())
    });
    p.wait_for(WAIT, "both to answer again", || {
        let bodies: Vec<String> = (0..8).filter_map(|_| p.ok_body("ready")).collect();
        (bodies.iter().any(|b| b.contains("web.1")) && bodies.iter().any(|b| b.contains("web.2")))
            .then_some(())
    });
    for want in [
        "caas[health]: web.2 failed its readiness check GET /cgi-bin/health 2 times in a row (answered 503); out of the routes until it passes",
        "caas[health]: web.2 passed its readiness check GET /cgi-bin/health (answered 200); back in the routes",
    ] {
        wait_log(&p, "ready", want);
    }
}

#[test]
fn a_failing_liveness_check_gets_the_instance_restarted_or_only_reported() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "alive"]);
    p.caas_ok(&["push", "--image", &test_image("alive"), "-a", "alive"]);
    p.caas_ok(&["apps:settings:set", "drain=1s", "-a", "alive"]);
    p.caas_ok(&[
        "checks:set",
        "web",
        "--path",
        CHECK,
        "--kind",
        "liveness",
        "--interval",
        "1s",
        "--attempts",
        "2",
        "-a",
        "alive",
    ]);
    p.wait_for(WAIT, "v2 up", || {
        (p.states("alive") == ["web.1 v2 up"]).then_some(())
    });
    let c = container_of(&p, "alive", "v2", "web.1");
    health(&c, Some(500));
    // Restarted (its start clears the failure), and up again.
    p.wait_for(WAIT, "web.1 restarted and up", || {
        let ps = p.ps("alive");
        (ps.len() == 1 && ps[0]["restarts"] == 1 && ps[0]["state"] == "up").then_some(())
    });
    assert!(p.ok_body("alive").is_some());
    wait_log(
        &p,
        "alive",
        "caas[health]: web.1 failed its liveness check GET /cgi-bin/health 2 times in a row (answered 500); restarting it",
    );
    wait_log(&p, "alive", "caas[restart]: Restarted web.1 (restart 1)");

    // Strategy none: reported, out of the routes, never restarted.
    p.caas_ok(&[
        "checks:set",
        "web",
        "--path",
        CHECK,
        "--kind",
        "liveness",
        "--interval",
        "1s",
        "--attempts",
        "2",
        "--strategy",
        "none",
        "-a",
        "alive",
    ]);
    let c = container_of(&p, "alive", "v3", "web.1");
    health(&c, Some(500));
    p.wait_for(WAIT, "web.1 unhealthy", || {
        (p.states("alive") == ["web.1 v3 unhealthy"]).then_some(())
    });
    std::thread::sleep(Duration::from_secs(5));
    let ps = p.ps("alive");
    assert_eq!(ps[0]["state"], "unhealthy", "{ps:?}");
    assert_eq!(ps[0]["restarts"], 0, "{ps:?}");
    assert_eq!(container_of(&p, "alive", "v3", "web.1"), c);
    let (status, _) = p.http_get("alive", "/").unwrap();
    assert_eq!(status, 503, "no instance is up");
    health(&c, None);
    p.wait_for(WAIT, "web.1 healthy again", || {
        (p.states("alive") == ["web.1 v3 up"]).then_some(())
    });
    wait_log(
        &p,
        "alive",
        "out of the routes, left running (strategy none)",
    );
    wait_log(
        &p,
        "alive",
        "caas[health]: web.1 passed its liveness check GET /cgi-bin/health (answered 200); healthy again",
    );
}

#[test]
fn a_10s_request_started_just_before_a_deploy_completes() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "slow"]);
    p.caas_ok(&["push", "--image", &test_image("slow one"), "-a", "slow"]);
    let gateway = p.gateway();
    let request = std::thread::spawn(move || {
        let started = Instant::now();
        let r = http_request(
            gateway,
            "GET",
            &format!("slow.{DOMAIN}"),
            "/cgi-bin/sleep?10",
            &[],
            b"",
            Duration::from_secs(60),
        );
        (r, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    // The deploy ends (v2 up, v1 out of the routes) while the request is in flight.
    let out = p.caas_ok(&["config:set", "GREETING=slow two", "-a", "slow"]);
    assert!(out.contains("done, v2"), "{out}");
    assert!(p.body("slow").starts_with("slow two"));
    let (answer, took) = request.join().unwrap();
    println!("measured: the 10 s request took {took:?} across the deploy");
    let answer = answer.expect("an answer");
    assert_eq!((answer.status, answer.body.as_str()), (200, "slept 10\n"));
    assert!(took >= Duration::from_secs(10), "{took:?}");
    let logs = logs(&p, "slow");
    assert!(logs.contains("caas[deploy]: Stopping v1 (web.1)"), "{logs}");
}

#[test]
fn bad_checks_and_settings_are_refused_in_one_line_and_change_nothing() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "picky"]);
    p.caas_ok(&["push", "--image", &test_image("picky"), "-a", "picky"]);
    let settings_before = p.caas_json(&["apps:settings", "-a", "picky", "--json"]);
    // (arguments, the message starts with)
    let table: [(&[&str], &str); 12] = [
        (
            &["checks:set", "web", "--path", "health"],
            "invalid check path \"health\"",
        ),
        (
            &["checks:set", "web", "--path", "/a b"],
            "invalid check path",
        ),
        (
            &["checks:set", "web", "--path", "/h", "--kind", "ready"],
            "unknown check kind \"ready\": use startup, readiness or liveness",
        ),
        (
            &["checks:set", "web", "--path", "/h", "--timeout", "-2s"],
            "invalid timeout \"-2s\"",
        ),
        (
            &["checks:set", "web", "--path", "/h", "--interval", "1000h"],
            "invalid interval 1000h: use 1s to 5m",
        ),
        (
            &["checks:set", "web", "--path", "/h", "--attempts", "-1"],
            "invalid attempts \"-1\"",
        ),
        (
            &["checks:set", "web", "--path", "/h", "--attempts", "0"],
            "invalid attempts 0",
        ),
        (
            &["checks:set", "worker", "--path", "/h"],
            "unknown process type \"worker\": this app's release defines web",
        ),
        (
            &["checks:clear", "clock"],
            "unknown process type \"clock\": this app's release defines web",
        ),
        (&["apps:settings:set", "drain=-1s"], "invalid drain \"-1s\""),
        (
            &["apps:settings:set", "speed=2"],
            "unknown setting \"speed\"",
        ),
        (
            &["apps:settings:set", "max-surge=0"],
            "max-surge and max-unavailable cannot both be 0",
        ),
    ];
    for (args, want) in table {
        let mut args = args.to_vec();
        args.extend(["-a", "picky"]);
        let out = p.caas_code(2, &args);
        let text = out.stderr.trim();
        assert_eq!(text.lines().count(), 1, "{args:?}: {out}");
        assert!(
            text.starts_with(&format!("error: {want}")),
            "{args:?}: {out}"
        );
    }
    // The server holds the same rules for whoever calls it.
    let api: SocketAddr = p.api_url().trim_start_matches("http://").parse().unwrap();
    let auth = format!("Bearer {}", p.token());
    let r = http_request(
        api,
        "PATCH",
        &api.to_string(),
        "/v1/apps/picky/checks",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        br#"{"set": [{"process": "web", "kind": "startup", "path": "/h", "timeout_ms": -5,
              "interval_ms": 1000, "attempts": 1, "wait_ms": 0}]}"#,
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(matches!(r.status, 400 | 422), "{r:?}");
    let r = http_request(
        api,
        "PATCH",
        &api.to_string(),
        "/v1/apps/picky/checks",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        br#"{"set": [{"process": "web", "kind": "startup", "path": "/h", "timeout_ms": 999999999,
              "interval_ms": 1000, "attempts": 1, "wait_ms": 0}]}"#,
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(r.status, 422, "{r:?}");
    assert!(
        r.body.contains(
            "\"code\":\"invalid_input\",\"message\":\"invalid timeout 277h46m39s: use 100ms to 1m\""
        ),
        "{r:?}"
    );

    // Nothing changed: no release, no check, the same settings.
    let releases = p.caas_json(&["releases", "-a", "picky", "--json"]);
    assert_eq!(releases.as_array().unwrap().len(), 1, "{releases}");
    let checks = p.caas_json(&["checks", "-a", "picky", "--json"]);
    assert_eq!(checks.as_array().unwrap().len(), 0, "{checks}");
    assert_eq!(
        p.caas_json(&["apps:settings", "-a", "picky", "--json"]),
        settings_before
    );
    // Settings that are fine take, and go back.
    let out = p.caas_ok(&[
        "apps:settings:set",
        "drain=45s",
        "max-surge=25%",
        "-a",
        "picky",
    ]);
    assert!(out.contains("drain") && out.contains("45s"), "{out}");
    let s = p.caas_json(&["apps:settings", "-a", "picky", "--json"]);
    assert_eq!(s["settings"]["drain_ms"], 45_000, "{s}");
    assert_eq!(s["settings"]["max_surge"], "25%", "{s}");
    p.caas_ok(&["apps:settings:unset", "drain", "max-surge", "-a", "picky"]);
    assert_eq!(
        p.caas_json(&["apps:settings", "-a", "picky", "--json"]),
        settings_before
    );
}

#[test]
fn checks_come_from_app_json_and_an_app_json_that_is_not_json_fails_the_build() {
    require_stack();
    let p = Platform::start();
    p.caas_ok(&["apps:create", "manifest"]);
    let app_json = r#"{
  "name": "manifest",
  "healthchecks": {
    "web": [
      {"type": "startup", "name": "web check", "path": "/health.txt", "content": "all good",
       "attempts": 3, "wait": 1, "timeout": 2},
      {"type": "startup", "uptime": 5}
    ]
  }
}"#;
    let src = temp_dir_with(&[
        ("Procfile", "web: busybox httpd -f -p $PORT -h /app/www\n"),
        ("www/index.html", "manifest one\n"),
        ("www/health.txt", "all good\n"),
        ("app.json", app_json),
    ]);
    let out = p.caas(&["push", src.path().to_str().unwrap(), "-a", "manifest"]);
    assert_eq!(out.code, 0, "{out}");
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(
        said.contains("app.json: healthchecks.web[1]: uptime checks are not run by caas"),
        "{said}"
    );
    let checks = p.caas_json(&["checks", "-a", "manifest", "--json"]);
    assert_eq!(checks.as_array().unwrap().len(), 1, "{checks}");
    assert_eq!(checks[0]["path"], "/health.txt");
    assert_eq!(checks[0]["content"], "all good");
    assert_eq!(checks[0]["interval_ms"], 1000);
    assert_eq!(checks[0]["source"], "app_json");
    let table = p.caas_ok(&["checks", "-a", "manifest"]);
    assert!(
        table.contains("GET /health.txt → 2xx/3xx with \"all good\""),
        "{table}"
    );
    assert!(table.contains("app.json"), "{table}");
    wait_log(
        &p,
        "manifest",
        "caas[health]: web.1 passed its startup check GET /health.txt (answered 200); up",
    );

    // Not JSON: the build fails with where, and nothing else changes.
    std::fs::write(
        src.path().join("app.json"),
        "{\n  \"healthchecks\": {\n    \"web\": [}\n}\n",
    )
    .unwrap();
    let out = p.caas(&["push", src.path().to_str().unwrap(), "-a", "manifest"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr
            .contains("app.json is not valid JSON: expected value at line 3, column 13"),
        "{out}"
    );
    let info = p.caas_json(&["apps:info", "-a", "manifest", "--json"]);
    assert_eq!(info["release"], 1, "{info}");
    assert_eq!(p.caas_json(&["checks", "-a", "manifest", "--json"]), checks);
    assert_eq!(p.body("manifest"), "manifest one\n");
}

#[test]
fn a_formation_larger_than_max_surge_rolls_in_batches_without_dropping_a_request() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "herd"]);
    p.caas_ok(&["push", "--image", &test_image("herd one"), "-a", "herd"]);
    p.caas_ok(&["ps:scale", "web=3", "-a", "herd"]);
    p.caas_ok(&[
        "apps:settings:set",
        "max-surge=1",
        "min-up=1s",
        "drain=5s",
        "-a",
        "herd",
    ]);
    p.wait_for(WAIT, "three up", || {
        (p.states("herd") == ["web.1 v1 up", "web.2 v1 up", "web.3 v1 up"]).then_some(())
    });
    let load = Load::start(p.gateway(), "herd");
    // Watch the formation from a thread while the CLI waits for the rollout.
    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(Mutex::new(0usize));
    let watcher = {
        let (stop, most) = (stop.clone(), most.clone());
        let (api, token) = (p.api_url().to_string(), p.token().to_string());
        std::thread::spawn(move || {
            let api: SocketAddr = api.trim_start_matches("http://").parse().unwrap();
            let auth = format!("Bearer {token}");
            while !stop.load(Ordering::Relaxed) {
                if let Ok(r) = http_request(
                    api,
                    "GET",
                    &api.to_string(),
                    "/v1/apps/herd/ps",
                    &[("Authorization", &auth)],
                    b"",
                    Duration::from_secs(10),
                ) {
                    let all: serde_json::Value = serde_json::from_str(&r.body).unwrap();
                    let running = all
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|i| i["state"] != "draining")
                        .count();
                    let mut m = most.lock().unwrap();
                    *m = (*m).max(running);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let out = p.caas_ok(&["config:set", "GREETING=herd two", "-a", "herd"]);
    assert!(out.contains("done, v2"), "{out}");
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let seen = load.finish();
    println!(
        "measured: {} requests during the batched rollout, at most {} instances at once",
        seen.len(),
        most.lock().unwrap()
    );
    let failed: Vec<_> = seen.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {}: {failed:?}",
        failed.len(),
        seen.len()
    );
    assert!(
        *most.lock().unwrap() <= 4,
        "at most 3 + max-surge 1 at once, saw {}",
        most.lock().unwrap()
    );
    let logs = logs(&p, "herd");
    for want in [
        "caas[deploy]: Stopping v1 (web.3) to make way for v2",
        "caas[deploy]: Stopping v1 (web.2) to make way for v2",
        // The last one goes once v2 is up, as in any rollout.
        "caas[deploy]: v2 is up (web=3)",
        "caas[deploy]: Stopping v1 (web.1)",
    ] {
        assert!(logs.contains(want), "missing {want:?} in\n{logs}");
    }
    p.wait_for(WAIT, "only v2 to answer", || {
        p.ok_body("herd").filter(|b| b.starts_with("herd two"))
    });
}
