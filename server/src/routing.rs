//! The control plane's side of routing: the table the gateway process serves from, made from the
//! store (apps and the routes the scheduler writes), and an index that changes whenever it does,
//! for the gateway's blocking query (`GET /v1/gateway/routes`).

use crate::store::{AppRecord, RouteKey, Store, StoreError};
use caas_api::gateway::{AppRouting, Backend, Idle, RoutingTable};
use caas_api::WEB;
use std::collections::BTreeMap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Why an app takes no traffic, from its record alone.
pub fn idle_of(app: &AppRecord) -> Idle {
    match (app.release, app.deploying) {
        (None, Some(version)) => Idle::Starting { version },
        (None, None) => Idle::NoRelease,
        (Some(_), _) if app.formation.get(WEB).copied().unwrap_or(0) == 0 => Idle::ScaledToZero,
        (Some(_), _) => Idle::NoneUp,
    }
}

/// The routing table for `apps` and `routes`: every app, its backends sorted by instance.
pub fn table(
    index: u64,
    domain: &str,
    apps: &[AppRecord],
    routes: Vec<(RouteKey, String)>,
) -> RoutingTable {
    let mut by_app: BTreeMap<&str, AppRouting> = apps
        .iter()
        .map(|a| {
            (
                a.name.as_str(),
                AppRouting {
                    name: a.name.clone(),
                    backends: Vec::new(),
                    idle: idle_of(a),
                },
            )
        })
        .collect();
    for (key, addr) in routes {
        if let Some(app) = by_app.get_mut(key.app.as_str()) {
            app.backends.push(Backend {
                instance: key.instance,
                addr,
            });
        }
    }
    let mut apps: Vec<AppRouting> = by_app.into_values().collect();
    for a in &mut apps {
        a.backends
            .sort_by(|x, y| x.instance.cmp(&y.instance).then(x.addr.cmp(&y.addr)));
    }
    RoutingTable {
        index,
        domain: domain.to_string(),
        apps,
    }
}

/// Reads the table from the store now.
pub fn load(store: &Store, index: u64, domain: &str) -> Result<RoutingTable, StoreError> {
    Ok(table(index, domain, &store.apps()?, store.routes()?))
}

/// The index that changes whenever a route or an app is written, until `shutdown`: route writes
/// bump it themselves (`Store::put_route`); app writes reach it through the store's change feed.
pub fn spawn_index(store: &Store, shutdown: CancellationToken) -> watch::Receiver<u64> {
    let mut feed = store.watch_routing();
    let rx = store.routing_index();
    let store = store.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                alive = feed.changed() => if !alive { return },
            }
            // Fold a burst of changes into one step. (sled blocks writers once a subscriber
            // lags 1024 events behind, so this loop must keep draining.)
            while let Some(true) = futures_util::FutureExt::now_or_never(feed.changed()) {}
            store.routing_changed();
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use caas_api::Timestamp;

    fn rec(name: &str, release: Option<u64>, deploying: Option<u64>, web: u32) -> AppRecord {
        AppRecord {
            formation: [(WEB.to_string(), web)].into(),
            release,
            deploying,
            ..AppRecord::new(name, Timestamp(0))
        }
    }

    #[test]
    fn an_idle_app_says_what_is_the_case() {
        assert_eq!(idle_of(&rec("a", None, None, 1)), Idle::NoRelease);
        assert_eq!(
            idle_of(&rec("a", None, Some(1), 1)),
            Idle::Starting { version: 1 }
        );
        assert_eq!(idle_of(&rec("a", Some(1), Some(2), 0)), Idle::ScaledToZero);
        assert_eq!(idle_of(&rec("a", Some(1), None, 2)), Idle::NoneUp);
    }

    #[test]
    fn tables_know_apps_without_routes_and_skip_strangers() {
        let key = |app: &str, inst: &str| RouteKey {
            app: app.into(),
            release: 1,
            instance: inst.into(),
        };
        let t = table(
            7,
            "example.com",
            &[rec("a", Some(1), None, 2), rec("b", None, None, 1)],
            vec![
                (key("a", "web.2"), "127.0.0.1:2".into()),
                (key("a", "web.1"), "127.0.0.1:1".into()),
                (key("zombie", "web.1"), "127.0.0.1:3".into()),
            ],
        );
        assert_eq!((t.index, t.domain.as_str()), (7, "example.com"));
        let names: Vec<_> = t.apps.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let instances: Vec<_> = t.apps[0]
            .backends
            .iter()
            .map(|b| b.instance.as_str())
            .collect();
        assert_eq!(instances, ["web.1", "web.2"]);
        assert!(t.apps[1].backends.is_empty());
        assert_eq!(t.apps[1].idle, Idle::NoRelease);
    }
}
