//! The gateway's routing table: an immutable snapshot per change, swapped in whole, so the
//! request path reads memory only and never waits for the store.

use crate::schedule::reconcile::WEB;
use crate::store::{AppRecord, RouteKey, Store};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub addr: SocketAddr,
    /// `web.1`, for router log lines.
    pub instance: String,
}

#[derive(Debug, Default)]
pub struct AppRoutes {
    pub backends: Vec<Backend>,
    /// Why there are no backends, when there are none: what the 503 says.
    pub idle: Idle,
    next: AtomicUsize,
}

/// Why an app that exists takes no traffic, as far as the store tells: the gateway's 503 says
/// what is the case rather than guessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Idle {
    /// It has a serving release and wants web instances, but none is up (starting, crashed).
    #[default]
    NoneUp,
    /// Nothing was ever deployed, or the first release failed.
    NoRelease,
    /// Its first release is deploying.
    Starting(u64),
    /// `web=0`.
    ScaledToZero,
}

impl Idle {
    pub fn of(app: &AppRecord) -> Self {
        match (app.release, app.deploying) {
            (None, Some(v)) => Idle::Starting(v),
            (None, None) => Idle::NoRelease,
            (Some(_), _) if app.formation.get(WEB).copied().unwrap_or(0) == 0 => Idle::ScaledToZero,
            (Some(_), _) => Idle::NoneUp,
        }
    }

    /// The 503's one line.
    pub fn message(self, app: &str) -> String {
        match self {
            Idle::NoneUp => format!(
                "caas: none of {app}'s web instances is up right now (starting or crashed); see caas ps -a {app}"
            ),
            Idle::NoRelease => {
                format!("caas: {app} has no release yet; deploy one with: caas push -a {app}")
            }
            Idle::Starting(v) => {
                format!("caas: {app} v{v} is starting; try again in a moment")
            }
            Idle::ScaledToZero => format!(
                "caas: {app} is scaled to web=0; scale up with: caas ps:scale web=1 -a {app}"
            ),
        }
    }
}

impl AppRoutes {
    #[cfg(test)]
    pub fn new(backends: Vec<Backend>) -> Self {
        Self::with_idle(backends, Idle::default())
    }

    pub fn with_idle(backends: Vec<Backend>, idle: Idle) -> Self {
        Self {
            backends,
            idle,
            next: AtomicUsize::new(0),
        }
    }

    /// Backends in the order to try them: round robin for the first, then the others, so a
    /// connect failure moves on to the next instance.
    pub fn rotation(&self) -> impl Iterator<Item = &Backend> {
        let n = self.backends.len();
        let start = if n == 0 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        (0..n).map(move |i| &self.backends[(start + i) % n])
    }
}

/// Every known app, with the instances that take traffic. An app with no entry in `apps` does
/// not exist (404); one with no backends exists but runs nothing (503).
#[derive(Debug, Default)]
pub struct RouteTable {
    pub apps: HashMap<String, AppRoutes>,
}

impl RouteTable {
    pub fn build(
        apps: impl IntoIterator<Item = (String, Idle)>,
        routes: Vec<(RouteKey, String)>,
    ) -> Self {
        let mut apps: HashMap<String, (Idle, Vec<Backend>)> = apps
            .into_iter()
            .map(|(n, idle)| (n, (idle, Vec::new())))
            .collect();
        for (key, addr) in routes {
            let (Some((_, backends)), Ok(addr)) = (apps.get_mut(&key.app), addr.parse()) else {
                continue;
            };
            backends.push(Backend {
                addr,
                instance: key.instance,
            });
        }
        let apps = apps
            .into_iter()
            .map(|(name, (idle, mut backends))| {
                backends.sort_by(|a, b| a.instance.cmp(&b.instance).then(a.addr.cmp(&b.addr)));
                (name, AppRoutes::with_idle(backends, idle))
            })
            .collect();
        Self { apps }
    }

    pub fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.apps
            .values()
            .flat_map(|a| a.backends.iter().map(|b| b.addr))
    }
}

fn load(store: &Store) -> Result<RouteTable, crate::store::StoreError> {
    let apps = store.apps()?.into_iter().map(|a| {
        let idle = Idle::of(&a);
        (a.name, idle)
    });
    Ok(RouteTable::build(apps, store.routes()?))
}

/// Keeps a `RouteTable` current from the store's change feed until `shutdown`.
pub fn spawn_cache(
    store: Store,
    shutdown: CancellationToken,
) -> anyhow::Result<watch::Receiver<Arc<RouteTable>>> {
    let mut feed = store.watch_routing();
    // Subscribe before the first load, so no change falls between the two.
    let (tx, rx) = watch::channel(Arc::new(load(&store)?));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                alive = feed.changed() => if !alive { return },
            }
            // Fold a burst of changes into one rebuild. (sled blocks writers once a
            // subscriber lags 1024 events behind, so this loop must keep draining.)
            while let Some(true) = futures_util::FutureExt::now_or_never(feed.changed()) {}
            match load(&store) {
                Ok(table) => {
                    tx.send_replace(Arc::new(table));
                }
                Err(e) => tracing::error!("gateway: reloading routes: {e}"),
            }
        }
    });
    Ok(rx)
}

/// The app a `Host` header names: `APP.DOMAIN[:PORT]` → `APP`.
pub fn app_for_host<'h>(host: &'h str, domain: &str) -> Option<&'h str> {
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let app = host.strip_suffix(domain)?.strip_suffix('.')?;
    if app.is_empty() || app.contains('.') {
        return None;
    }
    Some(app)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_map_to_apps() {
        assert_eq!(app_for_host("demo.localhost", "localhost"), Some("demo"));
        assert_eq!(
            app_for_host("demo.localhost:8080", "localhost"),
            Some("demo")
        );
        assert_eq!(app_for_host("demo.localhost.", "localhost"), Some("demo"));
        assert_eq!(
            app_for_host("demo.apps.example.com", "apps.example.com"),
            Some("demo")
        );
        assert_eq!(app_for_host("localhost", "localhost"), None);
        assert_eq!(app_for_host(".localhost", "localhost"), None);
        assert_eq!(app_for_host("a.b.localhost", "localhost"), None);
        assert_eq!(app_for_host("demolocalhost", "localhost"), None);
        assert_eq!(app_for_host("demo.example.com", "localhost"), None);
    }

    #[test]
    fn tables_know_apps_without_routes_and_skip_strangers() {
        let key = |app: &str, inst: &str| RouteKey {
            app: app.into(),
            release: 1,
            instance: inst.into(),
        };
        let t = RouteTable::build(
            [
                ("a".to_string(), Idle::NoneUp),
                ("b".to_string(), Idle::NoRelease),
            ],
            vec![
                (key("a", "web.2"), "127.0.0.1:2".into()),
                (key("a", "web.1"), "127.0.0.1:1".into()),
                (key("zombie", "web.1"), "127.0.0.1:3".into()),
                (key("a", "web.3"), "not-an-addr".into()),
            ],
        );
        assert_eq!(t.apps.len(), 2);
        assert!(t.apps["b"].backends.is_empty());
        assert_eq!(t.apps["b"].idle, Idle::NoRelease);
        let names: Vec<_> = t.apps["a"]
            .backends
            .iter()
            .map(|b| b.instance.as_str())
            .collect();
        assert_eq!(names, ["web.1", "web.2"]);
    }

    #[test]
    fn an_idle_app_says_what_is_the_case() {
        let rec = |release, deploying, web| AppRecord {
            formation: [(WEB.to_string(), web)].into(),
            release,
            deploying,
            ..AppRecord::new("a", caas_api::Timestamp(0))
        };
        assert_eq!(Idle::of(&rec(None, None, 1)), Idle::NoRelease);
        assert_eq!(Idle::of(&rec(None, Some(1), 1)), Idle::Starting(1));
        assert_eq!(Idle::of(&rec(Some(1), Some(2), 0)), Idle::ScaledToZero);
        assert_eq!(Idle::of(&rec(Some(1), None, 2)), Idle::NoneUp);
        assert!(Idle::ScaledToZero
            .message("a")
            .contains("caas ps:scale web=1 -a a"));
        assert!(!Idle::NoneUp.message("a").contains("ps:scale"));
        assert!(Idle::NoRelease.message("a").contains("caas push -a a"));
    }

    #[test]
    fn rotation_is_round_robin_and_covers_every_backend() {
        let routes = AppRoutes::new(
            (1..=3)
                .map(|i| Backend {
                    addr: format!("127.0.0.1:{i}").parse().unwrap(),
                    instance: format!("web.{i}"),
                })
                .collect(),
        );
        let firsts: Vec<u16> = (0..6)
            .map(|_| routes.rotation().next().unwrap().addr.port())
            .collect();
        assert_eq!(firsts, [1, 2, 3, 1, 2, 3]);
        let all: Vec<u16> = routes.rotation().map(|b| b.addr.port()).collect();
        assert_eq!(all, [1, 2, 3]);
        assert_eq!(AppRoutes::new(vec![]).rotation().count(), 0);
    }
}
