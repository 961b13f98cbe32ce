//! TLS for the gateway: which certificate a handshake gets, picked by SNI from the routing table
//! (so certificates change with the table, without a restart), and the rustls configuration of
//! the HTTPS listener.
//!
//! An app's certificate serves only the app's own names it covers (its custom domains and
//! `APP.DOMAIN`); the platform's certificate (`caasd --tls-cert`, or the self-signed one) serves
//! everything else. Of two certificates for one name, the one that expires later serves.

use caas_api::domains::hostname_matches;
use caas_api::gateway::RoutingTable;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::sign::CertifiedKey;

use super::table::RouteTable;

/// Certificates parsed from the table, by name.
#[derive(Default)]
pub struct Certs {
    /// An app name (exact, or `*.` wildcard) → its certificate and when that expires.
    by_name: HashMap<String, (Arc<CertifiedKey>, u64)>,
    /// The platform's.
    default: Option<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certs")
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .field("default", &self.default.is_some())
            .finish()
    }
}

/// Parsed certificates by id, kept across tables so each is parsed once.
#[derive(Default)]
pub struct CertCache(Mutex<HashMap<String, Arc<CertifiedKey>>>);

fn load(chain_pem: &str, key_pem: &str) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| e.to_string())?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(|e| e.to_string())
}

impl Certs {
    /// The certificates of `wire`, for the names that route to their apps.
    pub fn build(wire: &RoutingTable, cache: &CertCache) -> Self {
        let mut cache = cache.0.lock().unwrap();
        let mut fresh: HashMap<String, Arc<CertifiedKey>> = HashMap::new();
        let mut certs = Certs::default();
        let names_of: HashMap<&str, Vec<String>> = wire
            .apps
            .iter()
            .map(|a| {
                let mut names = a.domains.clone();
                names.push(format!("{}.{}", a.name, wire.domain));
                (a.name.as_str(), names)
            })
            .collect();
        for c in &wire.certs {
            let key = match cache.get(&c.id).or_else(|| fresh.get(&c.id)) {
                Some(k) => k.clone(),
                None => match load(&c.chain_pem, &c.key_pem) {
                    Ok(k) => Arc::new(k),
                    Err(e) => {
                        tracing::warn!("certificate {} cannot be served: {e}", c.id);
                        continue;
                    }
                },
            };
            fresh.insert(c.id.clone(), key.clone());
            let Some(app) = &c.app else {
                certs.default = Some(key);
                continue;
            };
            let Some(names) = names_of.get(app.as_str()) else {
                continue;
            };
            for name in names {
                if !crate::tls::covers(&c.names, name) {
                    continue;
                }
                let later = certs
                    .by_name
                    .get(name)
                    .is_none_or(|(_, until)| *until < c.not_after_ms);
                if later {
                    certs
                        .by_name
                        .insert(name.clone(), (key.clone(), c.not_after_ms));
                }
            }
        }
        *cache = fresh;
        certs
    }

    /// The certificate for a handshake that asked for `sni` (lowercase): an app's for its
    /// exact name, else an app's for the wildcard name that covers it (unless the name is
    /// another app's exact domain), else the platform's.
    pub fn pick(&self, sni: Option<&str>, table: &RouteTable) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni {
            if let Some((key, _)) = self.by_name.get(name) {
                return Some(key.clone());
            }
            if !table.exact.contains_key(name) {
                if let Some((_, suffix)) = name.split_once('.') {
                    let wild = format!("*.{suffix}");
                    if hostname_matches(&wild, name) {
                        if let Some((key, _)) = self.by_name.get(&wild) {
                            return Some(key.clone());
                        }
                    }
                }
            }
        }
        self.default.clone()
    }
}

/// Picks certificates from the table the gateway serves now.
pub struct Resolver(pub watch::Receiver<Arc<RouteTable>>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl rustls::server::ResolvesServerCert for Resolver {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.0.borrow().clone();
        let sni = hello.server_name().map(str::to_ascii_lowercase);
        let sni = sni.as_deref().map(|n| n.strip_suffix('.').unwrap_or(n));
        table.certs.pick(sni, &table)
    }
}

/// The HTTPS listener's configuration: TLS 1.2 and 1.3, certificates from the table, HTTP/2 or
/// HTTP/1.1 by ALPN.
pub fn server_config(table: watch::Receiver<Arc<RouteTable>>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the default protocol versions are supported")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(table)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}
