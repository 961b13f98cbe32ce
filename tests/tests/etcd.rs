//! Three caasd servers on one etcd (`--store etcd://...`, loopback): every one answers the API,
//! exactly one leads; `kill -9` of the leader while changes are made through another server
//! loses none that was acknowledged, and another server leads within 10 s.
//!
//! The servers run without embedded agents: three embedded agents on one Docker engine would
//! be three hosts that are one machine, and agents talk to one server (see docs/guide.md,
//! "Several control-plane servers on etcd", for what is not shared yet).

use caas_e2e::{Etcd, Platform};
use serde_json::Value;
use std::time::{Duration, Instant};

fn server(store: &str, name: &str, first: Option<&Platform>) -> Platform {
    let args = ["--store", store, "--host-name", name, "--no-agent"];
    match first {
        None => Platform::start_with(&args),
        Some(first) => Platform::start_beside(first, &args),
    }
}

/// `caas servers --json` through `p`: (API addresses, the leader's API address).
fn servers(p: &Platform) -> (Vec<String>, Option<String>) {
    let list = p.caas_json(&["servers", "--json"]);
    let list = list.as_array().expect("a list").clone();
    let apis = list
        .iter()
        .map(|s| s["api"].as_str().unwrap().to_string())
        .collect();
    let leader = list
        .iter()
        .filter(|s| s["leader"] == Value::Bool(true))
        .map(|s| s["api"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert!(leader.len() <= 1, "at most one leader: {list:?}");
    (apis, leader.into_iter().next())
}

#[test]
fn the_control_plane_survives_losing_its_leader() {
    let etcd = Etcd::start();
    let store = etcd.store_url();
    let first = server(&store, "s1", None);
    let mut all = vec![
        server(&store, "s2", Some(&first)),
        server(&store, "s3", Some(&first)),
    ];
    all.insert(0, first);

    // Every server sees all three, and one leads.
    let leader = all[1].wait_for(
        Duration::from_secs(30),
        "three servers and a leader",
        || {
            let (apis, leader) = servers(&all[1]);
            (apis.len() == 3).then_some(leader).flatten()
        },
    );
    for p in &all {
        assert_eq!(servers(p).1.as_deref(), Some(leader.as_str()));
        let list = p.caas_json(&["servers", "--json"]);
        assert!(
            list.as_array()
                .unwrap()
                .iter()
                .all(|s| s["healthy"] == Value::Bool(true)),
            "all answer: {list}"
        );
    }
    let at = all
        .iter()
        .position(|p| p.api_url() == leader)
        .expect("the leader is one of ours");
    let mut dead = all.remove(at);

    // Changes through a follower, before and while the leader dies.
    let (writer, reader) = (&all[0], &all[1]);
    writer.caas_ok(&["apps:create", "before"]);
    writer.caas_ok(&["config:set", "KEY=one", "-a", "before"]);
    let killed_at = Instant::now();
    let mut acknowledged = vec!["before".to_string()];
    std::thread::scope(|s| {
        let writes = s.spawn(|| {
            let mut ok = Vec::new();
            for i in 0..10 {
                let name = format!("during-{i}");
                if writer.caas(&["apps:create", &name]).code == 0 {
                    ok.push(name);
                }
            }
            ok
        });
        dead.kill9();
        acknowledged.extend(writes.join().unwrap());
    });
    assert!(acknowledged.len() > 1, "the follower went on answering");

    // Another server leads, within 10 s of the kill.
    let new_leader = reader.wait_for(Duration::from_secs(20), "a new leader", || {
        let (apis, leader) = servers(reader);
        leader.filter(|l| *l != leader_of(&dead) && apis.len() == 2)
    });
    assert!(
        killed_at.elapsed() < Duration::from_secs(12),
        "{new_leader} took over {:?} after the kill (the issue asks for 10 s, plus this test's polling)",
        killed_at.elapsed()
    );
    assert!(all.iter().any(|p| p.api_url() == new_leader));

    // Nothing acknowledged is lost, whichever server is asked.
    for p in &all {
        let apps = p.caas_json(&["apps", "--json"]);
        let names: Vec<&str> = apps
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        for a in &acknowledged {
            assert!(names.contains(&a.as_str()), "{a} is missing: {names:?}");
        }
        let config = p.caas_json(&["config", "-a", "before", "--json"]);
        assert_eq!(config["KEY"], "one", "{config}");
    }
    drop(etcd);
}

fn leader_of(p: &Platform) -> String {
    p.api_url().to_string()
}
