//! The platform spine, end to end: deploy an image, reach it through the gateway, scale it, read
//! its logs, survive crashes of instances and of caasd itself.

use caas_e2e::{docker, docker_ok, test_image, Platform};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn create_and_push(p: &Platform, app: &str, image: &str) {
    p.caas_ok(&["apps:create", app]);
    p.caas_ok(&["push", "--image", image, "-a", app]);
}

/// The body of `GET /` through the gateway, when it answers 200.
fn ok_body(p: &Platform, app: &str) -> Option<String> {
    match p.http_get(app, "/") {
        Ok((200, body)) => Some(body),
        _ => None,
    }
}

fn ps(p: &Platform, app: &str) -> Vec<Value> {
    p.caas_json(&["ps", "-a", app, "--json"])
        .as_array()
        .expect("ps --json is an array")
        .clone()
}

fn states(p: &Platform, app: &str) -> Vec<String> {
    ps(p, app)
        .iter()
        .map(|i| {
            format!(
                "{} v{} {}",
                i["name"].as_str().unwrap(),
                i["release"],
                i["state"].as_str().unwrap()
            )
        })
        .collect()
}

/// Bodies seen over `n` requests.
fn distinct_bodies(p: &Platform, app: &str, n: usize) -> BTreeSet<String> {
    (0..n).filter_map(|_| ok_body(p, app)).collect()
}

#[test]
fn deploy_scale_and_read_logs() {
    let image = test_image("Hello from spine");
    let p = Platform::start();
    let out = p.caas(&["push", "--image", &image, "-a", "web-app"]);
    assert_eq!(out.code, 4, "push to an app that does not exist: {out}");

    p.caas_ok(&["apps:create", "web-app"]);
    let pushed = p.caas_ok(&["push", "--image", &image, "-a", "web-app"]);
    assert!(pushed.contains("Released v1"), "{pushed}");
    assert!(
        pushed.contains(&p.app_url("web-app")),
        "push ends with the URL: {pushed}"
    );
    // The CLI waited until an instance was up, so the first request already answers.
    let body = ok_body(&p, "web-app").expect("the app answers right after push");
    assert!(body.starts_with("Hello from spine: web.1 on "), "{body}");

    let apps = p.caas_json(&["apps", "--json"]);
    assert_eq!(apps[0]["name"], "web-app");
    assert_eq!(apps[0]["release"], 1);
    assert_eq!(apps[0]["formation"]["web"], 1);
    let info = p.caas_json(&["apps:info", "-a", "web-app", "--json"]);
    assert_eq!(info["url"], p.app_url("web-app"));
    let releases = p.caas_json(&["releases", "-a", "web-app", "--json"]);
    assert_eq!(releases[0]["version"], 1);
    assert_eq!(releases[0]["image"], "caas/web-app:v1");

    // Scale to three: three distinct instances answer, round robin.
    p.caas_ok(&["ps:scale", "web=3", "-a", "web-app"]);
    p.wait_for(WAIT, "three instances up", || {
        (states(&p, "web-app") == ["web.1 v1 up", "web.2 v1 up", "web.3 v1 up"]).then_some(())
    });
    let bodies = p.wait_for(WAIT, "three distinct instances to answer", || {
        let b = distinct_bodies(&p, "web-app", 9);
        (b.len() == 3).then_some(b)
    });
    let names: BTreeSet<&str> = bodies
        .iter()
        .map(|b| b.split(' ').nth(3).unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["web.1", "web.2", "web.3"]),
        "{bodies:?}"
    );
    let table = p.caas_ok(&["ps", "-a", "web-app"]);
    assert_eq!(
        table.lines().filter(|l| l.contains(" up ")).count(),
        3,
        "{table}"
    );
    assert_eq!(p.running_containers("web-app").len(), 3);

    // The app's own output and the platform's events, as a user reads them.
    let logs = p.wait_for(WAIT, "the app's start line in caas logs", || {
        let logs = p.caas_ok(&["logs", "-a", "web-app", "-n", "500"]);
        logs.contains("app[web.1]: demo listening on port 5000 as web.1")
            .then_some(logs)
    });
    assert!(logs.contains("caas[deploy]: Deploying v1"), "{logs}");
    assert!(
        logs.contains("caas[scale]: Scaled to web=3 (was web=1)"),
        "{logs}"
    );
    assert!(
        logs.contains("caas[router]: at=info method=GET path=\"/\""),
        "{logs}"
    );
    let last_two = p.caas_ok(&["logs", "-a", "web-app", "-n", "2"]);
    assert_eq!(last_two.lines().count(), 2, "{last_two}");

    // Scale to zero: the app exists but nothing runs: 503, and the containers go.
    p.caas_ok(&["scale", "web=0", "-a", "web-app"]);
    p.wait_for(WAIT, "503 after scaling to zero", || {
        matches!(p.http_get("web-app", "/"), Ok((503, _))).then_some(())
    });
    p.wait_for(WAIT, "the containers to be stopped", || {
        p.running_containers("web-app").is_empty().then_some(())
    });
    p.wait_for(WAIT, "ps to be empty", || {
        ps(&p, "web-app").is_empty().then_some(())
    });
    let empty = p.caas_ok(&["ps", "-a", "web-app"]);
    assert!(empty.contains("No instances"), "{empty}");
}

#[test]
fn instances_run_confined_with_port_in_their_environment() {
    let p = Platform::start();
    create_and_push(&p, "confined", &test_image("confined"));
    let c = &p.running_containers("confined")[0];
    let inspect: Value = serde_json::from_str(&docker_ok(&["inspect", &c.id])).unwrap();
    let host = &inspect[0]["HostConfig"];
    assert_eq!(host["Memory"], 512 * 1024 * 1024);
    assert_eq!(host["CpuShares"], 1024);
    assert!(host["PidsLimit"].as_i64().unwrap() > 0, "{host}");
    assert_eq!(host["Privileged"], false);
    assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]));
    assert!(
        host["SecurityOpt"]
            .to_string()
            .contains("no-new-privileges"),
        "{host}"
    );
    let mounts = inspect[0]["Mounts"].to_string();
    assert!(!mounts.contains("docker.sock"), "{mounts}");
    let env = inspect[0]["Config"]["Env"].to_string();
    for var in [
        "PORT=5000",
        "CAAS_APP=confined",
        "CAAS_INSTANCE=web.1",
        "CAAS_RELEASE=v1",
    ] {
        assert!(env.contains(var), "{var} missing from {env}");
    }
    let labels = &inspect[0]["Config"]["Labels"];
    assert_eq!(labels["caas.app"], "confined");
    assert_eq!(labels["caas.instance"], "web.1");
    assert_eq!(labels["caas.cluster"], p.cluster_id());
    // Published on loopback, from this platform's range.
    let inst = &ps(&p, "confined")[0];
    let addr = inst["address"].as_str().unwrap();
    let port: u16 = addr.strip_prefix("127.0.0.1:").unwrap().parse().unwrap();
    let (lo, hi) = p.port_range();
    assert!((lo..=hi).contains(&port), "{addr} outside {lo}-{hi}");
}

#[test]
fn a_killed_instance_is_replaced_and_the_crash_is_logged() {
    let p = Platform::start();
    create_and_push(&p, "crashy", &test_image("crashy"));
    let before = p.running_containers("crashy");
    assert_eq!(before.len(), 1);
    docker_ok(&["kill", &before[0].id]);
    p.wait_for(WAIT, "the instance to be restarted and answer", || {
        let restarted = ps(&p, "crashy")
            .first()
            .is_some_and(|i| i["restarts"].as_u64() >= Some(1) && i["state"] == "up");
        (restarted && ok_body(&p, "crashy").is_some()).then_some(())
    });
    // The agent's events travel apart from its heartbeats (which ps shows): wait for them.
    let logs = p.wait_for(WAIT, "the crash and the restart in the logs", || {
        let logs = p.caas_ok(&["logs", "-a", "crashy", "-n", "200"]);
        logs.contains("caas[restart]: Restarted web.1")
            .then_some(logs)
    });
    assert!(
        logs.contains("caas[crash]: web.1 crashed: exited with status 137"),
        "{logs}"
    );
    // Replaced, not duplicated.
    assert_eq!(p.running_containers("crashy").len(), 1);
}

#[test]
fn kill_9_of_caasd_loses_nothing_and_adopts_what_runs() {
    let mut p = Platform::start();
    create_and_push(&p, "durable", &test_image("durable"));
    p.caas_ok(&["scale", "web=2", "-a", "durable"]);
    p.wait_for(WAIT, "two instances up", || {
        (states(&p, "durable") == ["web.1 v1 up", "web.2 v1 up"]).then_some(())
    });
    p.caas_ok(&["apps:create", "second"]);
    let ids = |p: &Platform| {
        p.running_containers("durable")
            .into_iter()
            .map(|c| c.id)
            .collect::<BTreeSet<_>>()
    };
    let before = ids(&p);
    assert_eq!(before.len(), 2);

    let killed_at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    p.kill9();
    p.restart();

    // Everything acknowledged is there...
    let apps: Vec<String> = p
        .caas_json(&["apps", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(apps, ["durable", "second"]);
    let formation = p.caas_json(&["apps:info", "-a", "durable", "--json"]);
    assert_eq!(formation["formation"]["web"], 2);
    assert_eq!(formation["release"], 1);
    // ...the app answers at once from the persisted routes...
    let body = ok_body(&p, "durable").expect("the app answers right after the restart");
    assert!(body.starts_with("durable: web."), "{body}");
    // ...and the running containers were adopted: not restarted, not duplicated.
    p.wait_for(WAIT, "both instances reported up again", || {
        (states(&p, "durable") == ["web.1 v1 up", "web.2 v1 up"]).then_some(())
    });
    for i in ps(&p, "durable") {
        // RFC 3339 in UTC compares as text: adopted instances keep their age.
        assert!(
            i["since"].as_str().unwrap() < killed_at.as_str(),
            "{i} restarted its clock"
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(ids(&p), before, "the same containers run after the restart");
    for c in p.containers() {
        assert_eq!(c.state, "running", "{c:?}");
    }
    assert_eq!(distinct_bodies(&p, "durable", 6).len(), 2);
}

#[test]
fn a_rollout_starts_new_instances_before_stopping_old_ones() {
    let (v1, v2) = (test_image("rollout one"), test_image("rollout two"));
    let p = Arc::new(Platform::start());
    create_and_push(&p, "rolling", &v1);
    p.caas_ok(&["scale", "web=2", "-a", "rolling"]);
    p.wait_for(WAIT, "two v1 instances up", || {
        (states(&p, "rolling") == ["web.1 v1 up", "web.2 v1 up"]).then_some(())
    });

    // Hammer the app while v2 rolls out: every request must be answered.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hammer = {
        let (p, stop, seen) = (p.clone(), stop.clone(), seen.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = p.http_get("rolling", "/");
                seen.lock().unwrap().push(r.unwrap_or((0, String::new())));
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let pushed = p.caas_ok(&["push", "--image", &v2, "-a", "rolling"]);
    assert!(pushed.contains("Released v2"), "{pushed}");
    p.wait_for(WAIT, "only v2 to run", || {
        (states(&p, "rolling") == ["web.1 v2 up", "web.2 v2 up"]
            && p.running_containers("rolling").len() == 2)
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    hammer.join().unwrap();

    let seen = seen.lock().unwrap();
    let failures: Vec<_> = seen.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the rollout: {failures:?}",
        failures.len(),
        seen.len()
    );
    let first_two = seen
        .iter()
        .position(|(_, b)| b.starts_with("rollout two"))
        .expect("v2 answered");
    assert!(seen[..first_two]
        .iter()
        .all(|(_, b)| b.starts_with("rollout one")));
    assert!(seen.last().unwrap().1.starts_with("rollout two"));
    // The platform's lines only: v1 drains for 30 s under the hammer, whose router and app lines
    // would push them out of any last N.
    let logs = p.caas_ok(&["logs", "-a", "rolling", "-n", "1000", "--source", "caas"]);
    assert!(logs.contains("caas[deploy]: v2 is up (web=2)"), "{logs}");
    assert!(
        logs.contains("caas[deploy]: Stopping v1 (web.1, web.2)"),
        "{logs}"
    );
}

#[test]
fn a_release_that_crashes_leaves_the_old_one_serving() {
    let good = test_image("still good");
    // The same image, made to exit at once.
    let base = docker_ok(&["create", &good]).trim().to_string();
    let bad = format!("caas-test-crasher:{}", std::process::id());
    docker_ok(&[
        "commit",
        "--change",
        r#"CMD ["/bin/busybox", "sh", "-c", "echo about to fail; exit 3"]"#,
        &base,
        &bad,
    ]);
    docker_ok(&["rm", &base]);

    let p = Platform::start();
    create_and_push(&p, "steady", &good);
    let out = p.caas(&[
        "push",
        "--image",
        &bad,
        "-a",
        "steady",
        "--wait-timeout",
        "15",
    ]);
    let _ = docker(&["rmi", &bad]);
    assert_eq!(
        out.code, 1,
        "a release that never comes up fails the push: {out}"
    );
    assert!(
        out.stderr.contains("previous release keeps serving"),
        "{out}"
    );
    for _ in 0..5 {
        assert_eq!(
            ok_body(&p, "steady").as_deref().map(|b| &b[..10]),
            Some("still good")
        );
    }
    let logs = p.caas_ok(&["logs", "-a", "steady", "-n", "500"]);
    assert!(logs.contains("app[web.1]: about to fail"), "{logs}");
    assert!(
        logs.contains("caas[crash]: web.1 crashed: exited with status 3"),
        "{logs}"
    );
}

#[test]
fn logs_tail_streams_new_lines_as_they_happen() {
    let p = Platform::start();
    create_and_push(&p, "chatty", &test_image("chatty"));
    let mut child = p
        .caas_command(&["logs", "-a", "chatty", "--tail", "-n", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        })
    };
    // Until the stream is connected requests may go unseen, so keep asking until one request
    // shows up whole: its router line and the app's own line.
    let mut attempt = 0;
    p.wait_for(
        WAIT,
        "a request's router and app lines in the tailed logs",
        || {
            attempt += 1;
            let marker = format!("tail-{}-{attempt}", std::process::id());
            let _ = p.http(
                "GET",
                "chatty.localhost",
                "/",
                &[("X-Request-Id", &marker)],
                b"",
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
            let got = lines.lock().unwrap().clone();
            let router = got.iter().any(|l| {
                l.contains("caas[router]: at=info") && l.contains(&format!("request_id={marker} "))
            });
            let app = got
                .iter()
                .any(|l| l.contains("app[web.1]: request GET / ") && l.contains(&marker));
            (router && app).then_some(())
        },
    );
    let _ = child.kill();
    let _ = child.wait();
    reader.join().unwrap();
}

#[test]
fn destroy_removes_containers_routes_and_records() {
    let p = Platform::start();
    create_and_push(&p, "doomed", &test_image("doomed"));
    let out = p.caas(&["apps:destroy", "-a", "doomed"]);
    assert_eq!(out.code, 2, "destroy without --confirm is refused: {out}");
    let out = p.caas(&["apps:destroy", "-a", "doomed", "--confirm", "other"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(
        ok_body(&p, "doomed").is_some(),
        "a refused destroy changes nothing"
    );

    p.caas_ok(&["apps:destroy", "-a", "doomed", "--confirm", "doomed"]);
    assert!(matches!(p.http_get("doomed", "/"), Ok((404, _))));
    p.wait_for(WAIT, "the containers to be removed", || {
        p.containers().is_empty().then_some(())
    });
    assert_eq!(p.caas_json(&["apps", "--json"]), serde_json::json!([]));
    assert_eq!(p.caas(&["ps", "-a", "doomed"]).code, 4);
    let tags = docker_ok(&["images", "-q", "caas/doomed"]);
    assert!(tags.trim().is_empty(), "the release tags are gone: {tags}");
    // The name is free again.
    p.caas_ok(&["apps:create", "doomed"]);
}

#[test]
fn installations_sharing_an_engine_keep_to_their_own_and_skip_taken_ports() {
    let image = test_image("neighbours");
    let a = Platform::start();
    // Someone else holds the first port of b's range: b must skip it, not fail.
    let b = Platform::start();
    let (lo, _) = b.port_range();
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", lo))
        .expect("the first port of the range is free");
    create_and_push(&a, "same-name", &image);
    create_and_push(&b, "same-name", &image);
    assert!(ok_body(&a, "same-name").is_some() && ok_body(&b, "same-name").is_some());
    let addr = ps(&b, "same-name")[0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(addr, format!("127.0.0.1:{lo}"));

    a.caas_ok(&["apps:destroy", "-a", "same-name", "--confirm", "same-name"]);
    a.wait_for(WAIT, "a's containers to go", || {
        a.containers().is_empty().then_some(())
    });
    assert_eq!(
        b.running_containers("same-name").len(),
        1,
        "b's instance is untouched"
    );
    assert!(ok_body(&b, "same-name").is_some());
}
