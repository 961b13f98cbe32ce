//! The gateway's routing table: an immutable snapshot per change, swapped in whole, so the
//! request path reads memory only and never waits for the control plane. It is made from the
//! wire table (`caas_api::gateway::RoutingTable`) the feed brings or the disk cache holds.

use caas_api::access::{AccessAction, Cidr};
use caas_api::gateway::{Idle, RoutingTable};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    /// Plain HTTP gets a 308 to HTTPS.
    pub redirect_https: bool,
    /// Who may reach it; empty: everyone.
    pub access: Vec<(AccessAction, Cidr)>,
    /// Its instances speak HTTP/2 (cleartext, prior knowledge).
    pub h2: bool,
    next: AtomicUsize,
}

/// The 503's one line for an app that takes no traffic.
pub fn idle_message(idle: Idle, app: &str) -> String {
    match idle {
        Idle::NoneUp => format!(
            "caas: none of {app}'s web instances is up right now (starting or crashed); see caas ps -a {app}"
        ),
        Idle::NoRelease => {
            format!("caas: {app} has no release yet; deploy one with: caas push -a {app}")
        }
        Idle::Failed { version } => format!(
            "caas: {app} v{version} did not come up, and no earlier release serves; see why with: caas releases:info v{version} -a {app}"
        ),
        Idle::Starting { version } => {
            format!("caas: {app} v{version} is starting; try again in a moment")
        }
        Idle::ScaledToZero => format!(
            "caas: {app} is scaled to web=0; scale up with: caas ps:scale web=1 -a {app}"
        ),
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
            redirect_https: false,
            access: Vec::new(),
            h2: false,
            next: AtomicUsize::new(0),
        }
    }

    /// Whether a client at `ip` may reach the app.
    pub fn admits(&self, ip: std::net::IpAddr) -> bool {
        self.access.is_empty() || caas_api::access::allowed(&self.access, ip)
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
    /// Apps are served at `APP.DOMAIN`.
    pub domain: String,
    pub apps: HashMap<String, AppRoutes>,
    /// Custom domains, exact names: host → app.
    pub exact: HashMap<String, String>,
    /// Custom domains, wildcards: `example.com` (for `*.example.com`) → app.
    pub wildcard: HashMap<String, String>,
    /// Certificates for the HTTPS listener, by name.
    pub certs: super::tls::Certs,
    /// TCP routes by public port.
    pub tcp: HashMap<u16, TcpTarget>,
    /// ACME HTTP-01 challenges: token → key authorization.
    pub challenges: HashMap<String, String>,
}

/// Where ACME HTTP-01 challenges are asked for (RFC 8555 §8.3).
const ACME_CHALLENGE: &str = "/.well-known/acme-challenge/";

/// Where a TCP route's connections go.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpTarget {
    pub app: String,
    /// The instances' port; `None`: the port of their HTTP address.
    pub target: Option<u16>,
}

impl RouteTable {
    /// The table the wire one describes; a backend whose address does not parse is left out.
    #[cfg(test)]
    pub fn from_wire(wire: &RoutingTable) -> Self {
        Self::from_wire_cached(wire, &super::tls::CertCache::default())
    }

    /// [`RouteTable::from_wire`], with certificates parsed before taken from `cache`.
    pub fn from_wire_cached(wire: &RoutingTable, cache: &super::tls::CertCache) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for a in &wire.apps {
            for d in &a.domains {
                match d.strip_prefix("*.") {
                    Some(suffix) => wildcard.insert(suffix.to_string(), a.name.clone()),
                    None => exact.insert(d.clone(), a.name.clone()),
                };
            }
        }
        let apps = wire
            .apps
            .iter()
            .map(|a| {
                let backends = a
                    .backends
                    .iter()
                    .filter_map(|b| {
                        Some(Backend {
                            addr: b.addr.parse().ok()?,
                            instance: b.instance.clone(),
                        })
                    })
                    .collect();
                let mut routes = AppRoutes::with_idle(backends, a.idle);
                routes.redirect_https = a.redirect_https;
                routes.h2 = a.backend_h2;
                routes.access = a
                    .access
                    .iter()
                    .filter_map(|(action, cidr)| Some((*action, Cidr::parse(cidr).ok()?)))
                    .collect();
                (a.name.clone(), routes)
            })
            .collect();
        Self {
            domain: wire.domain.clone(),
            apps,
            exact,
            wildcard,
            certs: super::tls::Certs::build(wire, cache),
            tcp: wire
                .tcp
                .iter()
                .map(|r| {
                    (
                        r.port,
                        TcpTarget {
                            app: r.app.clone(),
                            target: r.target,
                        },
                    )
                })
                .collect(),
            challenges: wire
                .challenges
                .iter()
                .map(|c| (c.token.clone(), c.key_authorization.clone()))
                .collect(),
        }
    }

    /// The key authorization for a request of `path`, when it asks for an ACME challenge this
    /// gateway answers (on any host: the ACME server asks at the name being validated).
    pub fn challenge(&self, path: &str) -> Option<&str> {
        if self.challenges.is_empty() {
            return None;
        }
        let token = path.strip_prefix(ACME_CHALLENGE)?;
        self.challenges.get(token).map(String::as_str)
    }

    /// The app a request's host (`Host` or `:authority`, lowercase) names: an exact custom
    /// domain first, then a wildcard one, then `APP.DOMAIN`.
    pub fn app_for<'a>(&'a self, host: &'a str) -> Option<&'a str> {
        let name = strip_port(host);
        let name = name.strip_suffix('.').unwrap_or(name);
        if !self.exact.is_empty() {
            if let Some(app) = self.exact.get(name) {
                return Some(app);
            }
        }
        if !self.wildcard.is_empty() {
            if let Some((label, suffix)) = name.split_once('.') {
                if !label.is_empty() {
                    if let Some(app) = self.wildcard.get(suffix) {
                        return Some(app);
                    }
                }
            }
        }
        app_for_host(host, &self.domain)
    }

    pub fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.apps
            .values()
            .flat_map(|a| a.backends.iter().map(|b| b.addr))
    }
}

/// `HOST[:PORT]` → `HOST`.
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The app a `Host` header names: `APP.DOMAIN[:PORT]` → `APP`.
pub fn app_for_host<'h>(host: &'h str, domain: &str) -> Option<&'h str> {
    let host = strip_port(host);
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
    use caas_api::gateway::{AppRouting, Backend as WireBackend};

    #[test]
    fn tables_come_from_the_wire_and_skip_bad_addresses() {
        let wire = RoutingTable {
            index: 1,
            domain: "example.com".into(),
            apps: vec![
                AppRouting {
                    name: "a".into(),
                    backends: vec![
                        WireBackend {
                            instance: "web.1".into(),
                            addr: "127.0.0.1:1".into(),
                        },
                        WireBackend {
                            instance: "web.2".into(),
                            addr: "not-an-addr".into(),
                        },
                    ],
                    idle: Idle::NoneUp,
                    domains: vec!["www.a.test".into(), "*.a.test".into()],
                    redirect_https: false,
                    access: vec![],
                    backend_h2: false,
                },
                AppRouting {
                    name: "b".into(),
                    backends: vec![],
                    idle: Idle::NoRelease,
                    domains: vec!["x.a.test".into(), "*.b.a.test".into()],
                    redirect_https: true,
                    access: vec![],
                    backend_h2: false,
                },
            ],
            certs: vec![],
            tcp: vec![],
            challenges: vec![caas_api::gateway::AcmeChallenge {
                token: "tok".into(),
                key_authorization: "tok.thumb".into(),
            }],
        };
        let t = RouteTable::from_wire(&wire);
        assert_eq!(t.domain, "example.com");
        assert_eq!(t.apps["a"].backends.len(), 1);
        assert_eq!(t.apps["b"].idle, Idle::NoRelease);
        assert_eq!(
            t.challenge("/.well-known/acme-challenge/tok"),
            Some("tok.thumb")
        );
        assert_eq!(t.challenge("/.well-known/acme-challenge/other"), None);
        assert_eq!(t.challenge("/tok"), None);
    }

    #[test]
    fn hosts_pick_the_exact_name_then_the_wildcard_then_app_domain() {
        let wire = RoutingTable {
            index: 1,
            domain: "example.com".into(),
            apps: ["a", "b"]
                .iter()
                .map(|n| AppRouting {
                    name: n.to_string(),
                    backends: vec![],
                    idle: Idle::NoneUp,
                    domains: match *n {
                        "a" => vec!["www.a.test".into(), "*.a.test".into()],
                        _ => vec!["x.a.test".into(), "*.b.a.test".into()],
                    },
                    redirect_https: false,
                    access: vec![],
                    backend_h2: false,
                })
                .collect(),
            certs: vec![],
            tcp: vec![],
            challenges: vec![],
        };
        let t = RouteTable::from_wire(&wire);
        for (host, app) in [
            ("www.a.test", Some("a")),
            ("www.a.test:8443", Some("a")),
            ("www.a.test.", Some("a")),
            ("y.a.test", Some("a")),
            ("x.a.test", Some("b")),
            ("z.b.a.test", Some("b")),
            ("a.test", None),
            ("q.z.a.test", None),
            (".a.test", None),
            ("b.example.com", Some("b")),
            ("c.example.com", Some("c")),
        ] {
            assert_eq!(t.app_for(host), app, "{host}");
        }
    }

    #[test]
    fn an_idle_app_says_what_is_the_case() {
        assert!(idle_message(Idle::ScaledToZero, "a").contains("caas ps:scale web=1 -a a"));
        assert!(!idle_message(Idle::NoneUp, "a").contains("ps:scale"));
        assert!(idle_message(Idle::NoRelease, "a").contains("caas push -a a"));
        assert!(idle_message(Idle::Starting { version: 3 }, "a").contains("v3 is starting"));
    }

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
