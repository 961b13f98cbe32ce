//! The control plane's side of routing: the table the gateway process serves from, made from the
//! store (apps and the routes the scheduler writes), and an index that changes whenever it does,
//! for the gateway's blocking query (`GET /v1/gateway/routes`).

use crate::store::{
    AppRecord, CertRecord, DomainRecord, RouteKey, Store, StoreError, TcpRouteRecord,
};
use caas_api::gateway::{
    AcmeChallenge, AppRouting, Backend, Idle, RoutingTable, TcpRoute, TlsCert,
};
use caas_api::WEB;
use std::collections::BTreeMap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Why an app takes no traffic, from its record alone.
pub fn idle_of(app: &AppRecord) -> Idle {
    match (app.release, app.deploying) {
        (None, Some(version)) => Idle::Starting { version },
        // Releases are numbered from 1: a next number past 1 means one was made and failed.
        (None, None) if app.next_version > 1 => Idle::Failed {
            version: app.next_version - 1,
        },
        (None, None) => Idle::NoRelease,
        (Some(_), _) if app.formation.get(WEB).copied().unwrap_or(0) == 0 => Idle::ScaledToZero,
        (Some(_), _) => Idle::NoneUp,
    }
}

/// What the table is made of, as the store has it.
#[derive(Debug, Default)]
pub struct Inputs {
    pub apps: Vec<AppRecord>,
    pub routes: Vec<(RouteKey, String)>,
    /// Custom domains: `(hostname, record)`.
    pub domains: Vec<(String, DomainRecord)>,
    /// Certificates, the platform's own included.
    pub certs: Vec<CertRecord>,
    /// TCP routes.
    pub tcp: Vec<TcpRouteRecord>,
    /// ACME HTTP-01 challenges: `(token, key authorization)`.
    pub challenges: Vec<(String, String)>,
}

impl Inputs {
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        Ok(Self {
            apps: store.apps()?,
            routes: store.routes()?,
            domains: store.domains()?,
            certs: store.certs()?,
            tcp: store.tcp_routes()?,
            challenges: store.challenges()?,
        })
    }
}

/// The routing table for `inputs`: every app with its backends sorted by instance and its
/// domains sorted by name; routes and domains of apps that do not exist are left out.
pub fn table(index: u64, domain: &str, inputs: Inputs) -> RoutingTable {
    let Inputs {
        apps,
        routes,
        domains,
        certs,
        tcp,
        challenges,
    } = inputs;
    let mut by_app: BTreeMap<&str, AppRouting> = apps
        .iter()
        .map(|a| {
            (
                a.name.as_str(),
                AppRouting {
                    name: a.name.clone(),
                    backends: Vec::new(),
                    idle: idle_of(a),
                    domains: Vec::new(),
                    redirect_https: a.redirect_https,
                    access: a
                        .access_rules
                        .iter()
                        .map(|r| (r.action, r.cidr.clone()))
                        .collect(),
                    backend_h2: a.backend_h2,
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
    for (hostname, d) in domains {
        if let Some(app) = by_app.get_mut(d.app.as_str()) {
            app.domains.push(hostname);
        }
    }
    let mut apps: Vec<AppRouting> = by_app.into_values().collect();
    for a in &mut apps {
        a.backends
            .sort_by(|x, y| x.instance.cmp(&y.instance).then(x.addr.cmp(&y.addr)));
        a.domains.sort();
    }
    let known: std::collections::HashSet<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    let mut certs: Vec<TlsCert> = certs
        .into_iter()
        .filter(|c| c.app.as_deref().is_none_or(|a| known.contains(a)))
        .map(|c| TlsCert {
            id: c.id,
            app: c.app,
            names: c.names,
            not_after_ms: c.not_after.millis(),
            chain_pem: c.chain_pem,
            key_pem: c.key_pem,
        })
        .collect();
    certs.sort_by(|a, b| a.app.cmp(&b.app).then(a.id.cmp(&b.id)));
    let mut tcp: Vec<TcpRoute> = tcp
        .into_iter()
        .filter(|r| known.contains(r.app.as_str()))
        .map(|r| TcpRoute {
            port: r.port,
            app: r.app,
            target: r.target,
        })
        .collect();
    tcp.sort_by_key(|r| r.port);
    RoutingTable {
        index,
        domain: domain.to_string(),
        apps,
        certs,
        tcp,
        challenges: challenges
            .into_iter()
            .map(|(token, key_authorization)| AcmeChallenge {
                token,
                key_authorization,
            })
            .collect(),
    }
}

/// Reads the table from the store now.
pub fn load(store: &Store, index: u64, domain: &str) -> Result<RoutingTable, StoreError> {
    Ok(table(index, domain, Inputs::load(store)?))
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
        let mut failed = rec("a", None, None, 1);
        failed.next_version = 3;
        assert_eq!(idle_of(&failed), Idle::Failed { version: 2 });
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
        let dom = |app: &str| DomainRecord {
            app: app.into(),
            created_at: Timestamp(0),
        };
        let t = table(
            7,
            "example.com",
            Inputs {
                apps: vec![rec("a", Some(1), None, 2), rec("b", None, None, 1)],
                routes: vec![
                    (key("a", "web.2"), "127.0.0.1:2".into()),
                    (key("a", "web.1"), "127.0.0.1:1".into()),
                    (key("zombie", "web.1"), "127.0.0.1:3".into()),
                ],
                domains: vec![
                    ("www.a.test".into(), dom("a")),
                    ("*.a.test".into(), dom("a")),
                    ("ghost.test".into(), dom("zombie")),
                ],
                certs: vec![],
                tcp: vec![],
                challenges: vec![],
            },
        );
        assert_eq!(t.apps[0].domains, ["*.a.test", "www.a.test"]);
        assert!(t.apps[1].domains.is_empty());
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
