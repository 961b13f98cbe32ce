//! Add-on services: Postgres, Redis and MySQL (MariaDB) as containers of images made here from
//! Debian packages on the stack image (`image.rs`), each with its own volume, password, memory
//! limit and network. This module does the engine side (image, network, volume, container,
//! health, dumps); the API (`api/addons.rs`) keeps the records and the apps' config.
//!
//! A service runs on the control plane's own host and stays there: its data is its volume on
//! that host. It is never recreated empty: a container that is gone while its volume is there is
//! made again on the same volume; a volume that is gone makes the add-on `lost`.

mod image;

use crate::docker::{Command, ContainerSpec, Engine, EngineError, ExecResult};
use crate::labels;
use crate::store::{AddonRecord, Store};
use bytes::Bytes;
use caas_api::addons::{AddonKind, AddonState};
use futures_util::Stream;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

pub use image::Images;

/// How long a new or restarted service has to answer its health check.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

/// What a kind of service is made of and how it is reached.
#[derive(Debug, Clone, Copy)]
pub struct Recipe {
    pub kind: AddonKind,
    /// Debian packages installed on the stack image.
    pub packages: &'static str,
    /// The user the service runs as (the package makes it).
    pub user: &'static str,
    pub port: u16,
    pub memory_mb: u64,
    pub scheme: &'static str,
    /// The user name in its URL (Redis has none).
    pub url_user: &'static str,
    /// The database in its URL.
    pub url_path: &'static str,
    /// The first bytes of a dump `restore` accepts.
    pub dump_magic: &'static [&'static [u8]],
    /// What a dump of it is called in messages.
    pub dump_name: &'static str,
}

pub fn recipe(kind: AddonKind) -> Option<Recipe> {
    match kind {
        AddonKind::Postgres => Some(Recipe {
            kind,
            packages: "postgresql",
            user: "postgres",
            port: 5432,
            memory_mb: 256,
            scheme: "postgres",
            url_user: "caas",
            url_path: "/caas",
            dump_magic: &[b"PGDMP"],
            dump_name: "pg_dump custom-format archive (caas addons:backup of a postgres add-on)",
        }),
        AddonKind::Redis => Some(Recipe {
            kind,
            packages: "redis-server",
            user: "redis",
            port: 6379,
            memory_mb: 128,
            scheme: "redis",
            url_user: "",
            url_path: "",
            dump_magic: &[b"REDIS"],
            dump_name: "Redis RDB file (caas addons:backup of a redis add-on)",
        }),
        AddonKind::Mysql => Some(Recipe {
            kind,
            packages: "mariadb-server",
            user: "mysql",
            port: 3306,
            memory_mb: 512,
            scheme: "mysql",
            url_user: "caas",
            url_path: "/caas",
            dump_magic: &[b"-- MariaDB dump", b"-- MySQL dump", b"/*M!999999"],
            dump_name: "mysqldump file (caas addons:backup of a mysql add-on)",
        }),
        AddonKind::External => None,
    }
}

impl Recipe {
    /// What attached apps get: the service by its name on the add-on's network.
    pub fn url(&self, name: &str, password: &str) -> String {
        self.url_at(&format!("{name}:{}", self.port), password)
    }

    /// The service's URL at `authority` (`NAME:PORT`, or a published `ADDRESS:PORT`).
    pub fn url_at(&self, authority: &str, password: &str) -> String {
        format!(
            "{}://{}:{password}@{authority}{}",
            self.scheme, self.url_user, self.url_path
        )
    }

    /// Whether `head` (a dump's first bytes) starts as this kind's dumps do.
    pub fn is_dump(&self, head: &[u8]) -> bool {
        self.dump_magic.iter().any(|m| head.starts_with(m))
    }

    fn argv(&self, action: &str) -> Vec<String> {
        vec![
            "caas-addon".into(),
            self.kind.as_str().into(),
            action.into(),
        ]
    }
}

/// 32 hex digits from the OS's random source: safe in a URL as it is.
pub fn new_password() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source is available");
    hex::encode(b)
}

/// The add-on networks each app's instances join: those of the services attached to it.
/// (One-offs, which run on the services' host.)
pub fn networks_by_app(
    store: &Store,
    cluster: &str,
) -> crate::store::Result<HashMap<String, Vec<String>>> {
    Ok(bindings_by_app(store, cluster)?
        .into_iter()
        .map(|(app, b)| (app, b.into_iter().map(|b| b.network).collect()))
        .collect())
}

/// How an app reaches one service attached to it: on the service's host through the add-on's
/// network, by its name; from any other host at the address the service is published on.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub network: String,
    /// The service's host (its name).
    pub host: Option<String>,
    pub var: String,
    /// The URL by name (what the app's config holds).
    pub url: String,
    /// The URL at the published address, when the service is published.
    pub remote_url: Option<String>,
}

/// The bindings of every app to the services attached to it.
pub fn bindings_by_app(
    store: &Store,
    cluster: &str,
) -> crate::store::Result<HashMap<String, Vec<Binding>>> {
    let mut out: HashMap<String, Vec<Binding>> = HashMap::new();
    for a in store.addons()? {
        let Some(r) = recipe(a.kind) else { continue };
        let remote_url = match (a.published, &a.password) {
            (Some(at), Some(pw)) => Some(r.url_at(&at.to_string(), pw)),
            _ => None,
        };
        for t in &a.attachments {
            out.entry(t.app.clone()).or_default().push(Binding {
                network: labels::addon_network(cluster, &a.name),
                host: a.host.clone(),
                var: t.var.clone(),
                url: a.url.clone(),
                remote_url: remote_url.clone(),
            });
        }
    }
    Ok(out)
}

/// What an instance on `host` gets of its app's `bindings`: the add-on networks to join (of the
/// services on its own host), and `env` with the vars of services on other hosts pointing at
/// their published address (only where the var still holds the add-on's URL: a value the user
/// set stays).
pub fn bind(bindings: &[Binding], host: &str, env: &mut BTreeMap<String, String>) -> Vec<String> {
    let mut networks = Vec::new();
    for b in bindings {
        if b.host.as_deref().is_none_or(|h| h == host) {
            networks.push(b.network.clone());
            continue;
        }
        if let (Some(remote), Some(v)) = (&b.remote_url, env.get_mut(&b.var)) {
            if *v == b.url {
                *v = remote.clone();
            }
        }
    }
    networks
}

/// The engine side of add-on services on this host.
pub struct Services {
    pub engine: Engine,
    pub cluster: String,
    /// The host services are placed on: the control plane's own.
    pub host: String,
    /// The host's address (`caasd --host-address`), where services are published for
    /// instances on other hosts, at a port of `ports` (`caasd --addon-ports`).
    pub address: std::net::IpAddr,
    pub ports: (u16, u16),
    pub images: Images,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Failed(String),
    /// The data is gone from its host.
    #[error("{0}")]
    Lost(String),
}

impl Services {
    /// A port of `--addon-ports` for a new service: one no other add-on has and nothing listens
    /// on at the host's address now. `None` when there is none.
    pub fn free_port(&self, store: &Store) -> crate::store::Result<Option<std::net::SocketAddr>> {
        let taken: Vec<u16> = store
            .addons()?
            .iter()
            .filter_map(|a| a.published.map(|p| p.port()))
            .collect();
        let (lo, hi) = self.ports;
        // From a random place in the range: two creates at once rarely pick the same port.
        let width = u32::from(hi.saturating_sub(lo)) + 1;
        let start = u32::from_str_radix(&new_password()[..6], 16).unwrap_or(0) % width;
        Ok((0..width)
            .map(|i| lo + ((start + i) % width) as u16)
            .filter(|p| !taken.contains(p))
            .map(|p| std::net::SocketAddr::new(self.address, p))
            .find(|at| std::net::TcpListener::bind(at).is_ok()))
    }

    fn labels(&self, name: &str) -> HashMap<String, String> {
        HashMap::from([
            (labels::CLUSTER.to_string(), self.cluster.clone()),
            (labels::HOST.to_string(), self.host.clone()),
            (labels::ADDON.to_string(), name.to_string()),
        ])
    }

    fn container(&self, name: &str) -> String {
        labels::addon_container(&self.cluster, name)
    }

    /// Makes the service of `rec` run: its image (built on first use; `progress` hears about
    /// it), network, volume and container. With `fresh` its volume may be made; without, a
    /// missing volume is a lost add-on (never recreated empty).
    pub async fn ensure_running(
        &self,
        rec: &AddonRecord,
        fresh: bool,
        progress: impl Fn(String),
    ) -> Result<(), ServiceError> {
        let r = recipe(rec.kind).ok_or_else(|| ServiceError::Failed("not a service".into()))?;
        if let Some(host) = rec.host.as_deref().filter(|h| *h != self.host) {
            // Pinned to its data: never made on another host.
            return Err(ServiceError::Failed(format!(
                "{} runs on host {host}, not {}: it is never made elsewhere",
                rec.name, self.host
            )));
        }
        let container = self.container(&rec.name);
        match self.engine.container_running(&container).await? {
            Some(true) => return Ok(()),
            Some(false) => return Ok(self.engine.start(&container).await?),
            None => {}
        }
        if !fresh && !self.engine.volume_exists(&container).await? {
            return Err(ServiceError::Lost(format!(
                "the volume {container} is gone from host {}: its data is lost; destroy the \
                 add-on and restore a backup into a new one",
                self.host
            )));
        }
        let image = self.images.ensure(&self.engine, r, &progress).await?;
        let network = labels::addon_network(&self.cluster, &rec.name);
        self.engine
            .ensure_internal_network(
                &network,
                &labels::addon_bridge(&self.cluster, &rec.name),
                self.labels(&rec.name),
            )
            .await?;
        self.engine
            .ensure_volume(&container, self.labels(&rec.name))
            .await?;
        // Published on the host's address through the installation's network (an internal
        // network cannot publish a port), which is under the installation's firewall rules and
        // whose inter-container traffic is off: other containers do not reach it there.
        let installation = labels::network(&self.cluster);
        self.engine
            .ensure_isolated_network(
                &installation,
                &labels::bridge(&self.cluster),
                HashMap::from([(labels::CLUSTER.to_string(), self.cluster.clone())]),
            )
            .await?;
        let spec = ContainerSpec {
            name: container.clone(),
            image,
            command: Command::Exec(r.argv("start")),
            user: Some(r.user.into()),
            volumes: vec![(container.clone(), "/var/lib/caas-addon".into())],
            env: vec![(
                "CAAS_ADDON_PASSWORD".into(),
                rec.password.clone().unwrap_or_default(),
            )],
            labels: self.labels(&rec.name),
            publish: rec.published.map(|at| crate::docker::Publish {
                host_ip: at.ip(),
                host_port: at.port(),
                container_port: r.port,
            }),
            memory_mb: rec.memory_mb.unwrap_or(r.memory_mb),
            cpu_shares: 1024,
            pids_limit: 512,
            cpus: None,
            network: Some(installation),
            aliases: Vec::new(),
            extra_networks: Vec::new(),
            stdio: Default::default(),
            restart: true,
        };
        let made = async {
            let id = self.engine.create(&spec).await?;
            // Its own network, where its apps find it by its name.
            let joined = self
                .engine
                .connect_network(&network, &id, vec![rec.name.clone()])
                .await;
            match joined {
                Ok(()) => self.engine.start(&id).await,
                Err(e) => Err(e),
            }
        };
        match made.await {
            Ok(()) => Ok(()),
            // Made meanwhile by another task (a create racing the recovery at start).
            Err(_) if self.engine.container_running(&container).await? == Some(true) => Ok(()),
            Err(e) => {
                // Half made (created, not joined or not started): gone, so the next try starts
                // clean.
                let _ = self.engine.remove(&container).await;
                Err(e.into())
            }
        }
    }

    async fn exec(&self, rec: &AddonRecord, action: &str) -> Result<ExecResult, ServiceError> {
        let r = recipe(rec.kind).ok_or_else(|| ServiceError::Failed("not a service".into()))?;
        Ok(self
            .engine
            .exec(
                &self.container(&rec.name),
                &r.argv(action),
                None,
                None::<futures_util::stream::Empty<std::io::Result<Bytes>>>,
            )
            .await?)
    }

    /// Whether the service answers its health check now.
    pub async fn healthy(&self, rec: &AddonRecord) -> bool {
        matches!(self.exec(rec, "health").await, Ok(r) if r.code == 0)
    }

    /// Waits until the service answers its health check, up to `timeout`.
    pub async fn wait_healthy(
        &self,
        rec: &AddonRecord,
        timeout: Duration,
    ) -> Result<(), ServiceError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.healthy(rec).await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let logs = self.last_output(rec).await;
                return Err(ServiceError::Failed(format!(
                    "{} did not answer its health check within {} s{logs}",
                    rec.name,
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn last_output(&self, rec: &AddonRecord) -> String {
        match self
            .engine
            .container_running(&self.container(&rec.name))
            .await
        {
            Ok(Some(true)) => String::new(),
            Ok(Some(false)) => ": its container stopped".into(),
            _ => ": its container is gone".into(),
        }
    }

    /// What the service's host says of it now.
    pub async fn observe(&self, rec: &AddonRecord) -> (AddonState, Option<String>) {
        let container = self.container(&rec.name);
        match self.engine.container_running(&container).await {
            Ok(Some(true)) if self.healthy(rec).await => (AddonState::Available, None),
            Ok(Some(_)) => (
                AddonState::Unhealthy,
                Some("its service does not answer its health check".into()),
            ),
            Ok(None) => match self.engine.volume_exists(&container).await {
                Ok(true) => (
                    AddonState::Unhealthy,
                    Some("its container is gone; caasd makes it again on its volume".into()),
                ),
                Ok(false) => (
                    AddonState::Lost,
                    Some(format!(
                        "its volume is gone from host {}: the data is lost; destroy it and \
                         restore a backup into a new one",
                        self.host
                    )),
                ),
                Err(e) => (AddonState::Unhealthy, Some(e.to_string())),
            },
            Err(e) => (AddonState::Unhealthy, Some(e.to_string())),
        }
    }

    /// A logical dump of the service's data, streamed.
    pub async fn backup(
        &self,
        rec: &AddonRecord,
    ) -> Result<impl Stream<Item = Result<Bytes, EngineError>> + Send + 'static, ServiceError> {
        let r = recipe(rec.kind).ok_or_else(|| ServiceError::Failed("not a service".into()))?;
        Ok(self
            .engine
            .exec_stdout(&self.container(&rec.name), &r.argv("backup"), None)
            .await?)
    }

    /// Applies a dump whole or not at all (the caller checked its first bytes). Redis takes it
    /// at a restart of its service.
    pub async fn restore<S>(&self, rec: &AddonRecord, dump: S) -> Result<(), ServiceError>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let r = recipe(rec.kind).ok_or_else(|| ServiceError::Failed("not a service".into()))?;
        let container = self.container(&rec.name);
        let out = self
            .engine
            .exec(&container, &r.argv("restore"), None, Some(dump))
            .await?;
        if out.code != 0 {
            let last = out
                .stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string();
            return Err(ServiceError::Failed(format!(
                "the dump was refused and nothing was changed: {last}"
            )));
        }
        if rec.kind == AddonKind::Redis {
            self.engine.restart(&container, 10).await?;
            self.wait_healthy(rec, START_TIMEOUT).await?;
        }
        Ok(())
    }

    /// Removes the service's container, volume and network.
    pub async fn remove(&self, rec: &AddonRecord) -> Result<(), ServiceError> {
        let container = self.container(&rec.name);
        if self.engine.container_running(&container).await?.is_some() {
            self.engine.stop(&container, 10).await.ok();
            self.engine.remove(&container).await?;
        }
        self.engine.remove_volume(&container).await?;
        self.engine
            .remove_network(&labels::addon_network(&self.cluster, &rec.name))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_on_other_hosts_get_the_published_address() {
        let b = |host: &str, remote: Option<&str>| Binding {
            network: format!("net-{host}"),
            host: Some(host.into()),
            var: "DATABASE_URL".into(),
            url: "postgres://caas:pw@db:5432/caas".into(),
            remote_url: remote.map(str::to_string),
        };
        let remote = "postgres://caas:pw@10.0.0.1:15400/caas";
        let env = |v: &str| BTreeMap::from([("DATABASE_URL".to_string(), v.to_string())]);
        for (binding, host, before, networks, after) in [
            // Same host: the network, the name.
            (
                b("h1", Some(remote)),
                "h1",
                "postgres://caas:pw@db:5432/caas",
                vec!["net-h1"],
                "postgres://caas:pw@db:5432/caas",
            ),
            // Another host: no network, the published address.
            (
                b("h1", Some(remote)),
                "h2",
                "postgres://caas:pw@db:5432/caas",
                vec![],
                remote,
            ),
            // A value the user set stays.
            (
                b("h1", Some(remote)),
                "h2",
                "postgres://mine",
                vec![],
                "postgres://mine",
            ),
            // Not published (a record from before): unchanged.
            (
                b("h1", None),
                "h2",
                "postgres://caas:pw@db:5432/caas",
                vec![],
                "postgres://caas:pw@db:5432/caas",
            ),
        ] {
            let mut e = env(before);
            assert_eq!(bind(&[binding], host, &mut e), networks, "{host} {before}");
            assert_eq!(e["DATABASE_URL"], after, "{host} {before}");
        }
    }

    #[test]
    fn urls_and_dumps() {
        let pg = recipe(AddonKind::Postgres).unwrap();
        assert_eq!(pg.url("db-1", "pw"), "postgres://caas:pw@db-1:5432/caas");
        let redis = recipe(AddonKind::Redis).unwrap();
        assert_eq!(redis.url("cache", "pw"), "redis://:pw@cache:6379");
        assert!(pg.is_dump(b"PGDMP\x01\x0e"));
        assert!(!pg.is_dump(b"REDIS0010"));
        assert!(redis.is_dump(b"REDIS0010"));
        assert!(!redis.is_dump(b"hello"));
        let my = recipe(AddonKind::Mysql).unwrap();
        assert!(my.is_dump(b"-- MariaDB dump 10.19"));
        assert!(recipe(AddonKind::External).is_none());
    }
}
