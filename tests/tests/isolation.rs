//! What an app's container can reach: not another app's containers (they share a bridge whose
//! inter-container traffic is off), not caasd's API, not link-local addresses (the firewall
//! rules the agent installs; checked as rules: tests never send traffic to such addresses).

use caas_e2e::{docker, run, test_image, Platform};
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// `(container id, IP:PORT on its network)` of an app's running `web.1`.
fn web1(p: &Platform, app: &str) -> (String, String) {
    let filter = format!("label=caas.cluster={}", p.cluster_id());
    let out = docker(&[
        "ps",
        "-q",
        "--filter",
        &filter,
        "--filter",
        &format!("label=caas.app={app}"),
    ]);
    let id = out
        .stdout
        .split_whitespace()
        .next()
        .expect("a container")
        .to_string();
    let ip = docker(&[
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &id,
    ]);
    let port = docker(&[
        "inspect",
        "--format",
        "{{range .Config.Env}}{{println .}}{{end}}",
        &id,
    ])
    .stdout
    .lines()
    .find_map(|l| l.strip_prefix("PORT="))
    .expect("PORT in the environment")
    .to_string();
    (id, format!("{}:{port}", ip.stdout.trim()))
}

/// `wget` from inside `container` (busybox's, stopped after 4 s; its own `-T` crashes in this
/// image): whether it got an answer.
fn reaches(container: &str, addr: &str) -> bool {
    let url = format!("http://{addr}/");
    docker(&[
        "exec", container, "timeout", "4", "wget", "-q", "-O", "-", &url,
    ])
    .success()
}

fn iptables(args: &[&str]) -> String {
    let out = run(
        Command::new("iptables").arg("-w").args(args),
        None,
        Duration::from_secs(30),
    );
    assert!(out.success(), "iptables {args:?}: {out}");
    out.stdout
}

#[test]
fn an_app_reaches_neither_another_app_nor_the_api_nor_link_local_addresses() {
    let image = test_image("Isolated");
    let p = Platform::start();
    for app in ["alpha", "beta"] {
        p.caas_ok(&["apps:create", app]);
        p.caas_ok(&["push", "--image", &image, "-a", app]);
    }
    let (alpha, alpha_addr) = web1(&p, "alpha");
    let (_, beta_addr) = web1(&p, "beta");
    // The instance itself answers on that address (so a refusal below is the network's doing),
    // and the gateway, on the host, reaches both.
    assert!(
        reaches(&alpha, &alpha_addr),
        "alpha answers on {alpha_addr}"
    );
    let body = p.wait_for(WAIT, "beta to answer through the gateway", || {
        p.http_get("beta", "/").ok().filter(|(s, _)| *s == 200)
    });
    assert!(body.1.starts_with("Isolated"), "{body:?}");
    let crossed = reaches(&alpha, &beta_addr);
    println!("tried: from alpha's container to beta's at {beta_addr} -> reached: {crossed}");
    assert!(!crossed, "alpha's container reached beta's at {beta_addr}");

    // The API and link-local addresses: the rules for this installation's bridge.
    let short: String = p.cluster_id().chars().take(8).collect();
    let bridge = format!("caas{short}");
    let api_port = p
        .api_url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let input = iptables(&["-S", &format!("CAAS-{short}-IN")]);
    assert!(
        input.contains(&format!("--dport {api_port} ")) && input.contains("--ctstate NEW -j DROP"),
        "new connections to the API's port are dropped: {input}"
    );
    let forward = iptables(&["-S", &format!("CAAS-{short}-FWD")]);
    assert!(
        forward.contains("-d 169.254.0.0/16 -j DROP"),
        "link-local addresses are dropped: {forward}"
    );
    let jumps = iptables(&["-S", "INPUT"]) + &iptables(&["-S", "DOCKER-USER"]);
    for chain in ["IN", "FWD"] {
        assert!(
            jumps.contains(&format!("-i {bridge} -j CAAS-{short}-{chain}")),
            "the bridge's traffic goes through CAAS-{short}-{chain}: {jumps}"
        );
    }
    let network = docker(&[
        "network",
        "inspect",
        "--format",
        "{{index .Options \"com.docker.network.bridge.enable_icc\"}}",
        &format!("caas-{short}"),
    ]);
    assert_eq!(network.stdout.trim(), "false", "{network}");
}
