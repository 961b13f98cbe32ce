//! The gateway's routing table: an immutable snapshot per change, swapped in whole, so the
//! request path reads memory only and never waits for the store.

use crate::store::{RouteKey, Store};
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
    next: AtomicUsize,
}

impl AppRoutes {
    pub fn new(backends: Vec<Backend>) -> Self {
        Self {
            backends,
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
        app_names: impl IntoIterator<Item = String>,
        routes: Vec<(RouteKey, String)>,
    ) -> Self {
        let mut apps: HashMap<String, Vec<Backend>> =
            app_names.into_iter().map(|n| (n, Vec::new())).collect();
        for (key, addr) in routes {
            let (Some(backends), Ok(addr)) = (apps.get_mut(&key.app), addr.parse()) else {
                continue;
            };
            backends.push(Backend {
                addr,
                instance: key.instance,
            });
        }
        let apps = apps
            .into_iter()
            .map(|(name, mut backends)| {
                backends.sort_by(|a, b| a.instance.cmp(&b.instance).then(a.addr.cmp(&b.addr)));
                (name, AppRoutes::new(backends))
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
    let names = store.apps()?.into_iter().map(|a| a.name);
    Ok(RouteTable::build(names, store.routes()?))
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
            ["a".to_string(), "b".to_string()],
            vec![
                (key("a", "web.2"), "127.0.0.1:2".into()),
                (key("a", "web.1"), "127.0.0.1:1".into()),
                (key("zombie", "web.1"), "127.0.0.1:3".into()),
                (key("a", "web.3"), "not-an-addr".into()),
            ],
        );
        assert_eq!(t.apps.len(), 2);
        assert!(t.apps["b"].backends.is_empty());
        let names: Vec<_> = t.apps["a"]
            .backends
            .iter()
            .map(|b| b.instance.as_str())
            .collect();
        assert_eq!(names, ["web.1", "web.2"]);
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
