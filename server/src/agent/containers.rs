//! What a container of an assignment looks like, and which host port it is published on.

use super::{LABEL_ALLOC, LABEL_CLUSTER, LABEL_HOST};
use crate::docker::{Command, ContainerSpec, Publish};
use crate::labels;
use caas_api::agent::Assignment;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

/// The container `a` runs in on this host. Its labels make it this installation's and this
/// host's (the agent lists and touches nothing else) and tie it to its allocation, so a
/// restarted agent adopts it; the name says whose it is to someone running `docker ps`.
pub(super) fn spec(
    a: &Assignment,
    cluster: &str,
    host_id: &str,
    publish: Option<Publish>,
) -> ContainerSpec {
    let labels = HashMap::from([
        (LABEL_CLUSTER.to_string(), cluster.to_string()),
        (LABEL_HOST.to_string(), host_id.to_string()),
        (LABEL_ALLOC.to_string(), a.id.clone()),
        (labels::APP.to_string(), a.app.clone()),
        (labels::RELEASE.to_string(), format!("v{}", a.release)),
        (labels::PROCESS.to_string(), a.process.clone()),
        (labels::INSTANCE.to_string(), a.instance_name()),
    ]);
    let short_cluster: String = cluster.chars().take(8).collect();
    ContainerSpec {
        name: format!(
            "caas-{short_cluster}-{}-{}-{}",
            a.app,
            a.instance_name(),
            a.id
        ),
        image: a.image.clone(),
        command: a
            .command
            .clone()
            .map_or(Command::ImageDefault, Command::Shell),
        user: None,
        volumes: Vec::new(),
        env: a.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        labels,
        publish,
        memory_mb: a.memory_mb,
        cpu_shares: a.cpu_shares,
        pids_limit: a.pids_limit,
        cpus: a.cpus,
        network: Some(labels::network(cluster)),
        aliases: Vec::new(),
        extra_networks: a.networks.clone(),
        restart: false,
        stdio: Default::default(),
    }
}

/// This host's range of ports for instances.
pub(super) struct Ports {
    min: u16,
    max: u16,
    /// Where the next search starts: after the last port handed out.
    cursor: u16,
}

impl Ports {
    pub fn new(min: u16, max: u16) -> Ports {
        Ports {
            min,
            max,
            cursor: 0,
        }
    }

    /// A port from the range that nothing listens on, starting after the last one handed out so
    /// retries and parallel installations spread out.
    pub fn next(&mut self, address: IpAddr, taken: &HashSet<u16>) -> Option<u16> {
        let span = (self.max - self.min) as u32 + 1;
        for _ in 0..span {
            let port = self.min + (self.cursor as u32 % span) as u16;
            self.cursor = self.cursor.wrapping_add(1);
            if taken.contains(&port) {
                continue;
            }
            // Someone else (another installation, any process) may hold it: skip, don't fail.
            if std::net::TcpListener::bind(SocketAddr::new(address, port)).is_ok() {
                return Some(port);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caas_api::agent::HealthCheck;

    #[test]
    fn a_container_carries_whose_it_is() {
        let a = Assignment {
            id: "al1".into(),
            app: "shop".into(),
            release: 7,
            process: "web".into(),
            index: 2,
            image: "sha256:abc".into(),
            command: Some("./serve".into()),
            env: [("PORT".to_string(), "5000".to_string())].into(),
            container_port: Some(5000),
            memory_mb: 256,
            cpu_shares: 512,
            pids_limit: 100,
            cpus: Some(0.5),
            health: HealthCheck::Tcp,
            checks: Vec::new(),
            stop_timeout_ms: None,
            networks: Vec::new(),
        };
        let s = spec(&a, "0123456789abcdef", "h1", None);
        assert_eq!(s.name, "caas-01234567-shop-web.2-al1");
        assert_eq!(s.network.as_deref(), Some("caas-01234567"));
        assert_eq!(s.cpus, Some(0.5));
        let mut labels: Vec<_> = s.labels.iter().collect();
        labels.sort();
        let want = [
            ("caas.alloc", "al1"),
            ("caas.app", "shop"),
            ("caas.cluster", "0123456789abcdef"),
            ("caas.host", "h1"),
            ("caas.instance", "web.2"),
            ("caas.process", "web"),
            ("caas.release", "v7"),
        ];
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(labels, want);
        assert!(matches!(s.command, Command::Shell(ref c) if c == "./serve"));
        assert_eq!(s.env, [("PORT".to_string(), "5000".to_string())]);
        assert_eq!((s.memory_mb, s.cpu_shares, s.pids_limit), (256, 512, 100));

        let worker = Assignment { command: None, ..a };
        assert!(matches!(
            spec(&worker, "c", "h", None).command,
            Command::ImageDefault
        ));
    }

    #[test]
    fn ports_taken_or_listened_on_are_skipped() {
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let mut ports = Ports::new(port, port);
        assert_eq!(ports.next(local, &HashSet::new()), None, "someone listens");
        drop(busy);
        assert_eq!(ports.next(local, &HashSet::from([port])), None, "taken");
        assert_eq!(ports.next(local, &HashSet::new()), Some(port));
    }
}
