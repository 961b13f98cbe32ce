//! Several hosts: a second `caasd agent` on its own loopback address (127.0.0.2) joins with the
//! join token; instances spread over both hosts; when the agent dies its instances move, and when
//! it comes back it does not leave the old copies running beside the new ones.

use caas_e2e::{binaries, test_image, Platform, SecondEngine};
use serde_json::Value;
use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

/// A `caasd agent` process, killed when dropped.
struct Agent {
    child: Option<Child>,
    data_dir: tempfile::TempDir,
}

impl Agent {
    fn start(p: &Platform, data_dir: tempfile::TempDir) -> Agent {
        Agent::start_on(p, data_dir, None)
    }

    /// With `docker_host`, the agent drives that engine instead of the default one.
    fn start_on(p: &Platform, data_dir: tempfile::TempDir, docker_host: Option<&str>) -> Agent {
        let (lo, _) = p.port_range();
        // A token made for this host; a restarted agent keeps the identity it got with it.
        let token = if data_dir.path().join("identity.json").exists() {
            "used".to_string()
        } else {
            join_token(p, "host2", "127.0.0.2")
        };
        let log = File::create(data_dir.path().join("agent.log")).unwrap();
        let mut cmd = Command::new(&binaries().caasd);
        if let Some(host) = docker_host {
            cmd.env("DOCKER_HOST", host);
        }
        let child = cmd
            .arg("agent")
            .args(["--server", p.api_url()])
            .args(["--join-token", &token])
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--address", "127.0.0.2", "--name", "host2"])
            .args(["--port-range", &format!("{}-{}", lo + 100, lo + 199)])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Agent {
            child: Some(child),
            data_dir,
        }
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.data_dir.path().join("agent.log")).unwrap_or_default();
            eprintln!("--- the second agent's log ---\n{log}");
        }
    }
}

/// `caas hosts:add NAME --address IP`: the join token it printed.
fn join_token(p: &Platform, name: &str, address: &str) -> String {
    let out = p.caas_ok(&["hosts:add", name, "--address", address]);
    let after = out
        .split("--join-token ")
        .nth(1)
        .unwrap_or_else(|| panic!("no token in {out}"));
    after.split_whitespace().next().unwrap().to_string()
}

fn hosts(p: &Platform) -> Vec<(String, String)> {
    p.caas_json(&["hosts", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_string(),
                h["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn placement(p: &Platform, app: &str) -> Vec<(String, String, String)> {
    let ps: Value = p.caas_json(&["ps", "-a", app, "--json"]);
    ps.as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["host"].as_str().unwrap().to_string(),
                i["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn instances_spread_over_hosts_and_move_when_one_dies() {
    let image = test_image("two hosts");
    let p = Platform::start_with(&["--lost-after", "8"]);
    let mut agent = Agent::start(&p, tempfile::tempdir().unwrap());
    p.wait_for(WAIT, "host2 to join", || {
        let h = hosts(&p);
        (h.len() == 2 && h.iter().all(|(_, s)| s == "ready")).then_some(())
    });

    p.caas_ok(&["apps:create", "spread"]);
    p.caas_ok(&["push", "--image", &image, "-a", "spread"]);
    p.caas_ok(&["scale", "web=2", "-a", "spread"]);
    let placed = p.wait_for(WAIT, "two instances up on two hosts", || {
        let pl = placement(&p, "spread");
        let up = pl.iter().filter(|(_, _, s)| s == "up").count() == 2;
        let mut on: Vec<&str> = pl.iter().map(|(_, h, _)| h.as_str()).collect();
        on.sort();
        (up && pl.len() == 2 && on == ["host2", "local"]).then_some(pl)
    });
    let on_host2 = placed
        .iter()
        .find(|(_, h, _)| h == "host2")
        .unwrap()
        .0
        .clone();
    let addr = p
        .caas_json(&["ps", "-a", "spread", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["host"] == "host2")
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        addr.starts_with("127.0.0.2:"),
        "published on host2's address: {addr}"
    );
    // Both answer through the gateway.
    p.wait_for(WAIT, "both instances to answer", || {
        let bodies: std::collections::BTreeSet<String> = (0..6)
            .filter_map(|_| p.http_get("spread", "/").ok())
            .map(|(_, b)| b)
            .collect();
        (bodies.len() == 2).then_some(())
    });

    // host2 dies (its containers keep running, as they would on a partitioned host).
    agent.kill9();
    p.wait_for(
        WAIT,
        "host2 to be lost and its instance to move to local",
        || {
            let lost = hosts(&p).iter().any(|(n, s)| n == "host2" && s == "lost");
            let pl = placement(&p, "spread");
            let moved = pl.len() == 2 && pl.iter().all(|(_, h, s)| h == "local" && s == "up");
            (lost && moved).then_some(())
        },
    );
    for _ in 0..6 {
        assert!(
            matches!(p.http_get("spread", "/"), Ok((200, _))),
            "the app keeps answering"
        );
    }
    let logs = p.caas_ok(&["logs", "-a", "spread", "-n", "500"]);
    assert!(
        logs.contains(&format!(
            "caas[host]: host host2 stopped answering; replacing {on_host2}"
        )),
        "{logs}"
    );

    // host2 comes back with the same identity: it must not keep its old copy running.
    let dir = std::mem::replace(&mut agent.data_dir, tempfile::tempdir().unwrap());
    let _back = Agent::start(&p, dir);
    p.wait_for(
        WAIT,
        "host2 to be ready again and its stale copy to be gone",
        || {
            let ready = hosts(&p).iter().any(|(n, s)| n == "host2" && s == "ready");
            (ready && p.running_containers("spread").len() == 2).then_some(())
        },
    );
    assert_eq!(
        hosts(&p).len(),
        2,
        "the returning host kept its identity: {:?}",
        hosts(&p)
    );
}

#[test]
fn a_host_with_its_own_engine_fetches_images_from_the_control_plane() {
    let image = test_image("own engine");
    let engine = SecondEngine::start();
    let p = Platform::start();
    let _agent = Agent::start_on(&p, tempfile::tempdir().unwrap(), Some(&engine.host()));
    p.wait_for(WAIT, "host2 to join", || {
        (hosts(&p).len() == 2).then_some(())
    });

    // Checked before the push: web.1 may well be placed on host2 and fetch it at once.
    let id = caas_e2e::docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image])
        .trim()
        .to_string();
    assert!(
        !engine.docker(&["image", "inspect", &id]).success(),
        "host2's engine starts without the image"
    );
    p.caas_ok(&["apps:create", "remote"]);
    p.caas_ok(&["push", "--image", &image, "-a", "remote"]);
    p.caas_ok(&["scale", "web=2", "-a", "remote"]);
    p.wait_for(WAIT, "an instance up on each host", || {
        let pl = placement(&p, "remote");
        let mut on: Vec<&str> = pl
            .iter()
            .filter(|(_, _, s)| s == "up")
            .map(|(_, h, _)| h.as_str())
            .collect();
        on.sort();
        (on == ["host2", "local"]).then_some(())
    });
    assert!(
        engine.docker(&["image", "inspect", &id]).success(),
        "host2 fetched the image"
    );
    let logs = p.caas_ok(&["logs", "-a", "remote", "-n", "300"]);
    assert!(logs.contains("caas[start]: Fetching image"), "{logs}");
    assert!(logs.contains("caas[start]: Fetched image"), "{logs}");
    // Both instances answer through the gateway: host2's through its published port.
    p.wait_for(WAIT, "both instances to answer", || {
        let bodies: std::collections::BTreeSet<String> = (0..6)
            .filter_map(|_| p.http_get("remote", "/").ok())
            .map(|(_, b)| b)
            .collect();
        (bodies.len() == 2).then_some(())
    });
}
