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

/// Whether the IPv4 `ip` is in `cidr` (`A.B.C.D/N`).
fn in_subnet(ip: &str, cidr: &str) -> bool {
    let v4 = |s: &str| u32::from(s.parse::<std::net::Ipv4Addr>().unwrap());
    let (net, bits) = cidr.split_once('/').unwrap();
    let bits: u32 = bits.parse().unwrap();
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    ip.parse::<std::net::Ipv4Addr>().is_ok() && v4(ip) & mask == v4(net) & mask
}

#[test]
fn a_dockerfile_build_runs_on_the_installations_network_and_its_rules() {
    caas_e2e::require_stack();
    let p = Platform::start();
    let short: String = p.cluster_id().chars().take(8).collect();
    // The cluster id makes the step new to the engine's layer cache, so it runs and prints.
    let dockerfile = format!(
        "FROM caas/stack:latest\nRUN echo \"build-{short}-at $(hostname -I)\"\nCMD exec python3 -m http.server \"$PORT\"\n"
    );
    let src = caas_e2e::temp_dir_with(&[("Dockerfile", &dockerfile)]);
    p.caas_ok(&["apps:create", "docked"]);
    let out = p.caas(&["push", src.path().to_str().unwrap(), "-a", "docked"]);
    assert!(out.success(), "{out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    // The last mention: the first is the step's own command line, echoed by the engine.
    let ip = all
        .rsplit(&format!("build-{short}-at "))
        .next()
        .filter(|_| all.contains(&format!("build-{short}-at ")))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the RUN step's address in {out}"))
        .to_string();
    let subnet = docker(&[
        "network",
        "inspect",
        "--format",
        "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
        &format!("caas-{short}"),
    ]);
    let subnet = subnet
        .stdout
        .split_whitespace()
        .find(|s| s.contains('.'))
        .expect("an IPv4 subnet")
        .to_string();
    println!("tried: a Dockerfile RUN step's address -> {ip}, the installation's network {subnet}");
    assert!(
        in_subnet(&ip, &subnet),
        "the RUN step ran on caas-{short} ({subnet}), not the engine's default network: {ip}"
    );
    // On that bridge, new connections to the API's port are dropped (checked as a rule, never
    // sent), as for apps and buildpack builds.
    let api_port = p
        .api_url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let input = iptables(&["-S", &format!("CAAS-{short}-IN")]);
    assert!(
        input.contains(&format!("--dport {api_port} ")) && input.contains("-j DROP"),
        "{input}"
    );
    let jumps = iptables(&["-S", "INPUT"]);
    assert!(
        jumps.contains(&format!("-i caas{short} -j CAAS-{short}-IN")),
        "{jumps}"
    );
}

/// Whether the chain `CAAS-<short>-<kind>` exists.
fn chain_exists(short: &str, kind: &str) -> bool {
    run(
        Command::new("iptables")
            .args(["-w", "-S"])
            .arg(format!("CAAS-{short}-{kind}")),
        None,
        Duration::from_secs(30),
    )
    .success()
}

#[test]
fn the_firewall_rules_outlive_a_stop_of_caasd_and_go_with_uninstall() {
    let image = test_image("Confined");
    let mut p = Platform::start();
    p.caas_ok(&["apps:create", "confined"]);
    p.caas_ok(&["push", "--image", &image, "-a", "confined"]);
    let short: String = p.cluster_id().chars().take(8).collect();
    let filter = format!("label=caas.cluster={}", p.cluster_id());
    let running = || {
        docker(&["ps", "-q", "--filter", &filter])
            .stdout
            .split_whitespace()
            .count()
    };
    assert_eq!(running(), 1);

    // A clean stop: the app keeps running, so the rules that confine it stay.
    p.terminate();
    assert_eq!(running(), 1, "the app container outlives caasd");
    for kind in ["IN", "FWD"] {
        assert!(
            chain_exists(&short, kind),
            "CAAS-{short}-{kind} stays after a stop"
        );
    }

    // What install.sh --uninstall runs once caasd has stopped.
    let uninstall = || {
        run(
            Command::new(&caas_e2e::binaries().caasd)
                .args(["uninstall", "--data-dir"])
                .arg(p.data_dir()),
            None,
            Duration::from_secs(120),
        )
    };
    let out = uninstall();
    println!("tried: caasd uninstall -> {}", out.stdout.trim());
    assert!(out.success(), "{out}");
    assert!(
        out.stdout
            .contains(&format!("Removed the firewall chains CAAS-{short}-IN")),
        "{out}"
    );
    for kind in ["IN", "FWD"] {
        assert!(!chain_exists(&short, kind), "CAAS-{short}-{kind} is gone");
    }
    let jumps = iptables(&["-S", "INPUT"]) + &iptables(&["-S", "DOCKER-USER"]);
    assert!(!jumps.contains(&format!("CAAS-{short}-")), "{jumps}");
    assert_eq!(
        running(),
        0,
        "nothing serves the app any more: it is stopped"
    );
    let kept = docker(&["ps", "-aq", "--filter", &filter]);
    assert_eq!(
        kept.stdout.split_whitespace().count(),
        1,
        "and kept: {kept}"
    );
    // Again: nothing left to do, and it says so.
    let again = uninstall();
    assert!(again.success(), "{again}");
    assert!(again.stdout.contains("No firewall chains"), "{again}");
}
