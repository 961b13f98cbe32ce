//! A Docker engine that stalls or restarts is not a lost host: the agent's heartbeats do not wait
//! on Docker, so a frozen engine leaves the host ready and its instances where they are; after
//! the engine restarts (and stops every container, as it does without live-restore), the agent
//! starts each instance again, without duplicates. The engine is a `SecondEngine` of the test's
//! own, driven by a `caasd agent`: restarting the machine's engine would hit everyone on it.

use caas_e2e::{test_image, AgentProcess, Platform, SecondEngine};
use serde_json::Value;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);

fn host_states(p: &Platform) -> Vec<String> {
    p.caas_json(&["hosts", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{} {}",
                h["name"].as_str().unwrap(),
                h["state"].as_str().unwrap()
            )
        })
        .collect()
}

/// The allocation ids of the app's instances, with their state.
fn instances(p: &Platform, app: &str) -> Vec<(String, String, String)> {
    let ps: Value = p.caas_json(&["ps", "-a", app, "--json"]);
    ps.as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("id"), s("state"))
        })
        .collect()
}

/// Every container of `app` on the engine, running or not: `(instance, state)`.
fn containers_on(engine: &SecondEngine, app: &str) -> Vec<(String, String)> {
    let out = engine.docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=caas.app={app}"),
        "--format",
        "{{.Label \"caas.instance\"}} {{.State}}",
    ]);
    assert!(out.success(), "{out}");
    let mut v: Vec<(String, String)> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_stalled_or_restarted_engine_is_not_a_lost_host_and_instances_come_back_once() {
    let image = test_image("engine trouble");
    let mut engine = SecondEngine::start();
    // Only host2 runs instances; it is lost after 6 s without a heartbeat.
    let p = Platform::start_with(&["--no-agent", "--lost-after", "6s"]);
    let agent = AgentProcess::start(&p, "host2", "127.0.0.2", Some(&engine.host()));
    p.wait_for(WAIT, "host2 to join", || {
        (host_states(&p) == ["host2 ready"]).then_some(())
    });
    p.caas_ok(&["apps:create", "sturdy"]);
    p.caas_ok(&["push", "--image", &image, "-a", "sturdy"]);
    p.caas_ok(&["ps:scale", "web=2", "-a", "sturdy"]);
    p.wait_for(WAIT, "both instances up", || {
        (p.states("sturdy") == ["web.1 v1 up", "web.2 v1 up"]).then_some(())
    });
    let before: Vec<(String, String)> = instances(&p, "sturdy")
        .into_iter()
        .map(|(n, id, _)| (n, id))
        .collect();

    // Frozen for well over --lost-after: Docker calls hang, heartbeats go on.
    engine.pause();
    let frozen = Instant::now();
    while frozen.elapsed() < Duration::from_secs(15) {
        let hosts = host_states(&p);
        if hosts != ["host2 ready"] {
            engine.resume();
            panic!(
                "host2 looked lost {:?} into the stall: {hosts:?}\n{}",
                frozen.elapsed(),
                agent.log()
            );
        }
        assert!(
            p.ok_body("sturdy").is_some(),
            "the app answers while the engine is frozen"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    engine.resume();
    assert_eq!(
        instances(&p, "sturdy")
            .into_iter()
            .map(|(n, id, _)| (n, id))
            .collect::<Vec<_>>(),
        before,
        "nothing was moved or replaced"
    );

    // Restarted: it stops every container; the agent starts each again, once.
    engine.restart();
    p.wait_for(WAIT, "both instances restarted and up", || {
        let ps = p.ps("sturdy");
        let ids: Vec<(String, String)> = ps
            .iter()
            .map(|i| {
                let s = |k: &str| i[k].as_str().unwrap_or_default().to_string();
                (s("name"), s("id"))
            })
            .collect();
        let back = ps.iter().all(|i| i["state"] == "up" && i["restarts"] == 1);
        (ids == before && back).then_some(())
    });
    assert_eq!(
        containers_on(&engine, "sturdy"),
        [
            ("web.1".to_string(), "running".to_string()),
            ("web.2".to_string(), "running".to_string())
        ],
        "one container per instance"
    );
    p.wait_for(WAIT, "the app to answer", || p.ok_body("sturdy"));
    assert_eq!(host_states(&p), ["host2 ready"]);
    // The agent's events travel apart from its heartbeats: they may come a moment later.
    let logs = p.wait_for(WAIT, "both restarts in the logs", || {
        let logs = p.caas_ok(&["logs", "-a", "sturdy", "-n", "500", "--source", "caas"]);
        (logs.contains("caas[restart]: Restarted web.1")
            && logs.contains("caas[restart]: Restarted web.2"))
        .then_some(logs)
    });
    assert!(!logs.contains("stopped answering"), "{logs}");
}
