//! What an app's (or a build's) container may not reach, enforced by the host's firewall: the
//! control plane's API, and link-local addresses (cloud metadata services hand out credentials
//! there). Containers of the installation run on its own bridge (`labels::bridge`), whose
//! inter-container traffic Docker turns off; these rules cover what leaves the bridge, and the
//! bridges of its add-ons' networks (`labels::addon_bridge`: internal, but the host has an
//! address on each):
//!
//! - `INPUT`: new TCP connections from the bridge to the API's port on this host (any of its
//!   addresses) are dropped;
//! - on the control plane's host, new TCP connections from them to the ports add-on services are
//!   published on (`caasd --addon-ports`) are dropped too: those are for other hosts;
//! - `DOCKER-USER` (forwarded traffic): to `169.254.0.0/16`, and to the control plane's API when
//!   it is another machine, dropped.
//!
//! The rules live in two chains of the installation's own (`CAAS-<cluster>-IN`/`-FWD`), flushed
//! and refilled at each agent start, so installations sharing a host never undo each other's.
//! They stay when caasd or the agent stops, even cleanly: the containers they confine keep
//! running. `remove` (run by `caasd uninstall`, which `install.sh --uninstall` runs once the
//! installation's containers are stopped) takes the jumps and the chains away.
//! The only place caas runs `iptables`.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

/// The rules for one installation's bridge, as `iptables` argument lists (without `-w`).
pub fn rules(
    cluster: &str,
    bridge: &str,
    api: SocketAddr,
    api_is_local: bool,
    addon_ports: Option<(u16, u16)>,
) -> Vec<Vec<String>> {
    let short: String = cluster.chars().take(8).collect();
    let input = format!("CAAS-{short}-IN");
    let forward = format!("CAAS-{short}-FWD");
    let port = api.port().to_string();
    let v = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut r = vec![
        v(&[
            "-A",
            &input,
            "-p",
            "tcp",
            "--dport",
            &port,
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
            "-j",
            "DROP",
        ]),
        v(&["-A", &forward, "-d", "169.254.0.0/16", "-j", "DROP"]),
    ];
    // Add-on services published here are for instances on other hosts: this host's own reach
    // theirs by network, and another app's must not get round that through the published port
    // (Docker's proxy answers it on the host).
    if let Some((lo, hi)) = addon_ports {
        let range = format!("{lo}:{hi}");
        r.push(v(&[
            "-A",
            &input,
            "-p",
            "tcp",
            "--dport",
            &range,
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
            "-j",
            "DROP",
        ]));
    }
    if !api_is_local {
        let dest = api.ip().to_string();
        r.push(v(&[
            "-A", &forward, "-d", &dest, "-p", "tcp", "--dport", &port, "-j", "DROP",
        ]));
    }
    // The jumps, each checked (-C) before it is inserted (-I), by `install`: from the
    // installation's bridge, and from its add-ons' bridges (instances on an add-on's network
    // reach the host's address on it; see `labels::addon_bridge`).
    for from in [bridge.to_string(), crate::labels::addon_bridges(cluster)] {
        r.push(v(&["-I", "INPUT", "-i", &from, "-j", &input]));
        r.push(v(&["-I", "DOCKER-USER", "-i", &from, "-j", &forward]));
    }
    r
}

/// Installs the rules; `Err` says what failed (the agent logs it loudly and goes on: a host
/// without iptables still runs apps, unprotected).
pub fn install(
    cluster: &str,
    bridge: &str,
    api: SocketAddr,
    addon_ports: Option<(u16, u16)>,
) -> Result<(), String> {
    let api_is_local = is_local(api.ip());
    let short: String = cluster.chars().take(8).collect();
    for chain in [format!("CAAS-{short}-IN"), format!("CAAS-{short}-FWD")] {
        // -N fails when the chain exists: fine, it is flushed next.
        let _ = iptables(&["-N", &chain]);
        iptables(&["-F", &chain])?;
    }
    for rule in rules(cluster, bridge, api, api_is_local, addon_ports) {
        let args: Vec<&str> = rule.iter().map(String::as_str).collect();
        if args[0] == "-I" {
            let mut check = args.clone();
            check[0] = "-C";
            if iptables(&check).is_ok() {
                continue;
            }
        }
        iptables(&args)?;
    }
    Ok(())
}

/// Removes the installation's chains and the jumps to them. `Ok(false)` when there were none.
pub fn remove(cluster: &str, bridge: &str) -> Result<bool, String> {
    let short: String = cluster.chars().take(8).collect();
    let mut found = false;
    for (parent, chain) in [("INPUT", "IN"), ("DOCKER-USER", "FWD")] {
        let chain = format!("CAAS-{short}-{chain}");
        // A jump inserted twice (two agents of one installation on a host) goes twice.
        for from in [bridge.to_string(), crate::labels::addon_bridges(cluster)] {
            while iptables(&["-D", parent, "-i", &from, "-j", &chain]).is_ok() {
                found = true;
            }
        }
        if iptables(&["-L", &chain, "-n"]).is_ok() {
            found = true;
            iptables(&["-F", &chain])?;
            iptables(&["-X", &chain])?;
        }
    }
    Ok(found)
}

/// Whether `ip` is this machine's: loopback, unspecified, or an address of one of its
/// interfaces (as far as binding to it tells).
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback()
        || ip.is_unspecified()
        || std::net::TcpListener::bind(SocketAddr::new(ip, 0)).is_ok()
}

fn iptables(args: &[&str]) -> Result<(), String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| format!("running iptables: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(r: Vec<Vec<String>>) -> Vec<String> {
        r.into_iter().map(|a| a.join(" ")).collect()
    }

    #[test]
    fn a_local_api_is_closed_on_input_and_link_local_on_forward() {
        let api: SocketAddr = "127.0.0.1:7080".parse().unwrap();
        assert_eq!(
            joined(rules("0123456789ab", "caas01234567", api, true, None)),
            [
                "-A CAAS-01234567-IN -p tcp --dport 7080 -m conntrack --ctstate NEW -j DROP",
                "-A CAAS-01234567-FWD -d 169.254.0.0/16 -j DROP",
                "-I INPUT -i caas01234567 -j CAAS-01234567-IN",
                "-I DOCKER-USER -i caas01234567 -j CAAS-01234567-FWD",
                "-I INPUT -i cad01234567+ -j CAAS-01234567-IN",
                "-I DOCKER-USER -i cad01234567+ -j CAAS-01234567-FWD",
            ]
        );
    }

    #[test]
    fn a_remote_api_is_closed_on_forward_too() {
        let api: SocketAddr = "10.0.0.1:7080".parse().unwrap();
        let r = joined(rules("0123456789ab", "caas01234567", api, false, None));
        assert!(
            r.contains(&"-A CAAS-01234567-FWD -d 10.0.0.1 -p tcp --dport 7080 -j DROP".to_string())
        );
    }

    #[test]
    fn the_control_planes_agent_closes_the_add_on_ports() {
        let api: SocketAddr = "127.0.0.1:7080".parse().unwrap();
        let r = joined(rules(
            "0123456789ab",
            "caas01234567",
            api,
            true,
            Some((15400, 15499)),
        ));
        assert!(r.contains(
            &"-A CAAS-01234567-IN -p tcp --dport 15400:15499 -m conntrack --ctstate NEW -j DROP"
                .to_string()
        ));
    }
}
