//! What Docker runs for a platform: its cluster's containers, and removing everything labelled
//! with its cluster id when the platform is dropped.

use super::Platform;
use crate::docker::{docker, docker_ok};

/// A container of a platform's cluster, as `docker ps` shows it.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub app: String,
    pub release: String,
    pub process: String,
    /// e.g. `web.1`
    pub instance: String,
    /// `running`, `exited`, `created`, ...
    pub state: String,
}

impl Platform {
    /// Every container (running or not) labelled with this platform's cluster id.
    pub fn containers(&self) -> Vec<Container> {
        let filter = format!("label=caas.cluster={}", self.cluster_id());
        let format = "{{.ID}}\t{{.Names}}\t{{.Label \"caas.app\"}}\t{{.Label \"caas.release\"}}\t\
                      {{.Label \"caas.process\"}}\t{{.Label \"caas.instance\"}}\t{{.State}}";
        docker_ok(&[
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &filter,
            "--format",
            format,
        ])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let field = |i: usize| f.get(i).copied().unwrap_or_default().to_string();
            Container {
                id: field(0),
                name: field(1),
                app: field(2),
                release: field(3),
                process: field(4),
                instance: field(5),
                state: field(6),
            }
        })
        .collect()
    }

    /// The running containers of one app.
    pub fn running_containers(&self, app: &str) -> Vec<Container> {
        self.containers()
            .into_iter()
            .filter(|c| c.app == app && c.state == "running")
            .collect()
    }

    /// Removes every container (with its anonymous volumes), network and volume labelled with
    /// this platform's cluster id, running or not: what a dropped platform must not leave behind.
    pub(super) fn remove_cluster_objects(&self) {
        let Some(info) = &self.info else { return };
        if info.cluster_id.is_empty() {
            return;
        }
        let filter = format!("label=caas.cluster={}", info.cluster_id);
        let list = |args: &[&str]| -> Vec<String> {
            let out = docker(args);
            out.stdout.split_whitespace().map(str::to_string).collect()
        };
        let containers = list(&["ps", "-aq", "--no-trunc", "--filter", &filter]);
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            let out = docker(&args);
            if !out.success() {
                eprintln!("caas-e2e: removing the cluster's containers failed\n{out}");
            }
        }
        // The agent's firewall chains for the cluster's bridge (see server/src/agent/firewall.rs).
        let short: String = info.cluster_id.chars().take(8).collect();
        let bridge = format!("caas{short}");
        for (parent, chain) in [("INPUT", "IN"), ("DOCKER-USER", "FWD")] {
            let chain = format!("CAAS-{short}-{chain}");
            let ipt = |args: &[&str]| {
                let _ = std::process::Command::new("iptables")
                    .arg("-w")
                    .args(args)
                    .output();
            };
            ipt(&["-D", parent, "-i", &bridge, "-j", &chain]);
            ipt(&["-F", &chain]);
            ipt(&["-X", &chain]);
        }
        for kind in ["network", "volume"] {
            let names = list(&[kind, "ls", "-q", "--filter", &filter]);
            if !names.is_empty() {
                let mut args = vec![kind, "rm"];
                args.extend(names.iter().map(String::as_str));
                let _ = docker(&args);
            }
        }
    }
}
