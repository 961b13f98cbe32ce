//! An add-on reached from another host. Its service runs on the control plane's host and is
//! published there (the host's address, a port of `caasd --addon-ports`): an instance the
//! scheduler places on a second host (a `caasd agent` of the test's own, joined with `caas
//! hosts:add`) gets that address in its var and is not put on the add-on's network, while the
//! instance on the service's own host keeps the name on the private network. At the published
//! address the service answers only to its password. (The second host shares this machine's
//! bridge, so its container cannot show the connection itself: the control plane host's firewall
//! rightly closes the published ports to containers of its own bridge.)

use caas_e2e::{docker_ok, run, test_image, AgentProcess, Platform};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
/// The first create of a kind builds its image from Debian packages: minutes on a loaded host.
const CREATE_TIMEOUT: Duration = Duration::from_secs(900);

/// `(instance, host, release)` of the app's instances that are up.
fn up(p: &Platform, app: &str) -> Vec<(String, String, u64)> {
    let ps: Value = p.caas_json(&["ps", "-a", app, "--json"]);
    ps.as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] == "up" && i["process"] == "web")
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["host"].as_str().unwrap().to_string(),
                i["release"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn container_of(p: &Platform, app: &str, instance: &str) -> String {
    p.running_containers(app)
        .into_iter()
        .find(|c| c.instance == instance)
        .unwrap_or_else(|| panic!("no container of {app} {instance}"))
        .id
}

fn env_of(container: &str, var: &str) -> String {
    docker_ok(&["exec", container, "sh", "-c", &format!("echo \"${var}\"")])
        .trim()
        .to_string()
}

fn networks_of(container: &str) -> String {
    docker_ok(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        container,
    ])
}

/// `AUTH password` then `PING` to the Redis at `addr` (inline commands): its two answers.
fn auth_and_ping(addr: &str, password: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "AUTH {password}\r\nPING\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while got.iter().filter(|b| **b == b'\n').count() < 2 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn an_instance_on_another_host_gets_the_published_address_guarded_by_the_password() {
    let image = test_image("add-on hosts");
    let p = Platform::start();
    let _host2 = AgentProcess::start(&p, "host2", "127.0.0.2", None);
    p.wait_for(WAIT, "host2 to join", || {
        let hosts = p.caas_json(&["hosts", "--json"]);
        let ready = hosts.as_array().unwrap().iter();
        (ready.filter(|h| h["state"] == "ready").count() == 2).then_some(())
    });
    p.caas_ok(&["apps:create", "shop"]);
    p.caas_ok(&["push", "--image", &image, "-a", "shop"]);
    p.caas_ok(&["scale", "web=2", "-a", "shop"]);
    let out = run(
        &mut p.caas_command(&["addons:create", "redis", "-a", "shop", "--name", "cache"]),
        None,
        CREATE_TIMEOUT,
    );
    assert!(out.success(), "{out}\n{}", p.log_tail(40));
    let url = p.caas_json(&["config", "-a", "shop", "--json"])["REDIS_URL"]
        .as_str()
        .expect("REDIS_URL")
        .to_string();
    assert!(url.ends_with("@cache:6379"), "{url}");
    let password = url
        .strip_prefix("redis://:")
        .and_then(|r| r.split('@').next())
        .unwrap()
        .to_string();
    let info = p.caas_json(&["addons:info", "cache", "--json"]);
    let published = info["published"].as_str().expect("published").to_string();
    assert!(published.starts_with("127.0.0.1:"), "{info}");
    let release = p.caas_json(&["apps:info", "-a", "shop", "--json"])["release"]
        .as_u64()
        .unwrap();

    // The attachment's release, up on both hosts.
    let placed = p.wait_for(WAIT, "the new release up on both hosts", || {
        let mut on = up(&p, "shop");
        on.retain(|(_, _, r)| *r == release);
        let mut hosts: Vec<&str> = on.iter().map(|(_, h, _)| h.as_str()).collect();
        hosts.sort();
        (hosts == ["host2", "local"]).then_some(on)
    });
    let network = format!(
        "caas-addon-{}-cache",
        p.cluster_id().chars().take(8).collect::<String>()
    );
    for (instance, host, _) in &placed {
        let c = container_of(&p, "shop", instance);
        let nets = networks_of(&c);
        let env = env_of(&c, "REDIS_URL");
        if host == "local" {
            assert_eq!(env, url, "the service's own host keeps the name");
            assert!(nets.contains(&network), "{nets}");
        } else {
            assert_eq!(env, format!("redis://:{password}@{published}"));
            assert!(
                !nets.contains(&network),
                "not on the private network: {nets}"
            );
        }
    }
    // The config itself is unchanged: the address is the instance's, chosen by where it runs.
    assert_eq!(
        p.caas_json(&["config", "-a", "shop", "--json"])["REDIS_URL"],
        url
    );

    // At the published address the service answers to its password, and only to it.
    let good = auth_and_ping(&published, &password);
    assert!(good.starts_with("+OK\r\n+PONG"), "{good:?}");
    let bad = auth_and_ping(&published, "0123456789abcdef0123456789abcdef");
    assert!(bad.starts_with('-') && !bad.contains("PONG"), "{bad:?}");
}
