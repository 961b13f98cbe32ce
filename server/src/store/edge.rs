//! What the gateway serves besides `APP.DOMAIN`: custom domains (a tree of their own, keyed by
//! host name, so a name belongs to at most one app without a lock: compare-and-swap decides) and
//! certificates with their private keys (the data dir is caasd's alone; the user API never
//! returns a key).

use super::{decode, encode, Result, Store, StoreError, TreeWatch};
use caas_api::Timestamp;
use serde::{Deserialize, Serialize};

/// One custom domain; the key is the normalized host name (`www.example.com`, `*.example.com`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DomainRecord {
    pub app: String,
    pub created_at: Timestamp,
}

/// A certificate with its key: one of an app's (`APP/ID`), or the platform's own (`_platform`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CertRecord {
    /// `None` for the platform's own.
    pub app: Option<String>,
    pub id: String,
    pub names: Vec<String>,
    pub issuer: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub chain_pem: String,
    pub key_pem: String,
    #[serde(default)]
    pub source: caas_api::domains::CertSource,
    pub created_at: Timestamp,
    /// Where the platform's own came from (`--tls-cert` path, or `self-signed`).
    #[serde(default)]
    pub origin: String,
}

/// The key of the platform's own certificate (no app name starts with `_`).
const PLATFORM_CERT: &str = "_platform";

fn cert_key(app: &str, id: &str) -> String {
    format!("{app}/{id}")
}

/// A TCP route: a public port of the gateway and the app it forwards to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TcpRouteRecord {
    pub app: String,
    pub port: u16,
    /// The instances' port; `None`: their `$PORT`.
    pub target: Option<u16>,
    pub created_at: Timestamp,
}

/// Where one name's automatic certificate stands (`caas certs:auto`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AcmeOrderRecord {
    pub app: String,
    pub hostname: String,
    pub state: caas_api::domains::AcmeState,
    #[serde(default)]
    pub error: Option<String>,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub next_try: Option<Timestamp>,
    /// Failed orders in a row, for the back-off.
    #[serde(default)]
    pub failures: u32,
    #[serde(default)]
    pub cert_id: Option<String>,
}

/// Why a domain could not be added.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Another app has it (which one is not said: the caller may not see that app).
    #[error("taken by another app")]
    TakenByOther,
    #[error("already one of the app's domains")]
    AlreadyOurs,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Gives `hostname` to `app`, unless an app that exists has it. A record left by an app
    /// that is gone (a destroy racing an add) is taken over.
    pub fn add_domain(
        &self,
        hostname: &str,
        rec: &DomainRecord,
    ) -> std::result::Result<(), DomainError> {
        let tree = &self.inner.domains;
        loop {
            let current = tree.get(hostname)?;
            if let Some(raw) = &current {
                let other: DomainRecord = decode("domains", raw)?;
                if other.app == rec.app {
                    return Err(DomainError::AlreadyOurs);
                }
                if self.inner.apps.contains_key(&other.app)? {
                    return Err(DomainError::TakenByOther);
                }
            }
            if tree.cas(hostname, current.as_deref(), Some(&encode(rec)))? {
                return Ok(());
            }
        }
    }

    /// Takes `hostname` from `app`; `false` when the app does not have it.
    pub fn remove_domain(&self, app: &str, hostname: &str) -> Result<bool> {
        let tree = &self.inner.domains;
        let Some(raw) = tree.get(hostname)? else {
            return Ok(false);
        };
        let rec: DomainRecord = decode("domains", &raw)?;
        if rec.app != app {
            return Ok(false);
        }
        tree.cas(hostname, Some(&raw), None)
    }

    /// Every domain: `(hostname, record)`, sorted by host name.
    pub fn domains(&self) -> Result<Vec<(String, DomainRecord)>> {
        self.inner
            .domains
            .all()?
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    decode("domains", &v)?,
                ))
            })
            .collect()
    }

    /// The domains of one app, sorted by host name.
    pub fn app_domains(&self, app: &str) -> Result<Vec<(String, DomainRecord)>> {
        Ok(self
            .domains()?
            .into_iter()
            .filter(|(_, d)| d.app == app)
            .collect())
    }

    // --- certificates -------------------------------------------------------------------

    /// Adds (or replaces, same id) one of an app's certificates.
    pub fn put_cert(&self, rec: &CertRecord) -> Result<()> {
        let key = match &rec.app {
            Some(app) => cert_key(app, &rec.id),
            None => PLATFORM_CERT.to_string(),
        };
        self.inner.certs.insert(key, encode(rec))
    }

    /// An app's certificates, by id.
    pub fn app_certs(&self, app: &str) -> Result<Vec<CertRecord>> {
        self.inner
            .certs
            .scan(format!("{app}/"))?
            .iter()
            .map(|(_, v)| decode("certs", v))
            .collect()
    }

    /// Every certificate, the platform's own included.
    pub fn certs(&self) -> Result<Vec<CertRecord>> {
        self.inner
            .certs
            .values()?
            .iter()
            .map(|v| decode("certs", v))
            .collect()
    }

    pub fn remove_cert(&self, app: &str, id: &str) -> Result<bool> {
        self.inner.certs.remove(cert_key(app, id))
    }

    pub fn platform_cert(&self) -> Result<Option<CertRecord>> {
        self.inner
            .certs
            .get(PLATFORM_CERT)?
            .map(|v| decode("certs", &v))
            .transpose()
    }

    // --- TCP routes -----------------------------------------------------------------------

    /// Gives `rec.port` to `rec.app` unless a route of an app that exists has it; `false` when
    /// taken.
    pub fn add_tcp_route(&self, rec: &TcpRouteRecord) -> Result<bool> {
        let tree = &self.inner.tcp_ports;
        let key = rec.port.to_be_bytes();
        loop {
            let current = tree.get(key)?;
            if let Some(raw) = &current {
                let other: TcpRouteRecord = decode("tcp_ports", raw)?;
                if self.inner.apps.contains_key(&other.app)? {
                    return Ok(false);
                }
            }
            if tree.cas(key, current.as_deref(), Some(&encode(rec)))? {
                return Ok(true);
            }
        }
    }

    /// Every TCP route, by port.
    pub fn tcp_routes(&self) -> Result<Vec<TcpRouteRecord>> {
        self.inner
            .tcp_ports
            .values()?
            .iter()
            .map(|v| decode("tcp_ports", v))
            .collect()
    }

    /// Takes `port` from `app`; `false` when the app does not have it.
    pub fn remove_tcp_route(&self, app: &str, port: u16) -> Result<bool> {
        let tree = &self.inner.tcp_ports;
        let key = port.to_be_bytes();
        let Some(raw) = tree.get(key)? else {
            return Ok(false);
        };
        let rec: TcpRouteRecord = decode("tcp_ports", &raw)?;
        if rec.app != app {
            return Ok(false);
        }
        tree.cas(key, Some(&raw), None)
    }

    // --- ACME -------------------------------------------------------------------------------

    pub fn acme_orders(&self) -> Result<Vec<AcmeOrderRecord>> {
        self.inner
            .acme
            .scan("order/")?
            .iter()
            .map(|(_, v)| decode("acme", v))
            .collect()
    }

    pub fn put_acme_order(&self, rec: &AcmeOrderRecord) -> Result<()> {
        self.inner
            .acme
            .insert(format!("order/{}", rec.hostname), encode(rec))
    }

    pub fn remove_acme_order(&self, hostname: &str) -> Result<()> {
        self.inner.acme.remove(format!("order/{hostname}"))?;
        Ok(())
    }

    /// The ACME account's credentials (JSON) for a directory, by its id.
    pub fn acme_account(&self, id: &str) -> Result<Option<Vec<u8>>> {
        self.inner.acme.get(format!("account/{id}"))
    }

    pub fn put_acme_account(&self, id: &str, credentials: &[u8]) -> Result<()> {
        self.inner.acme.insert(format!("account/{id}"), credentials)
    }

    /// HTTP-01 challenges to answer: `(token, key authorization)`.
    pub fn challenges(&self) -> Result<Vec<(String, String)>> {
        self.inner
            .challenges
            .all()?
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                ))
            })
            .collect()
    }

    pub fn put_challenge(&self, token: &str, key_authorization: &str) -> Result<()> {
        self.inner
            .challenges
            .insert(token, key_authorization.as_bytes())
    }

    pub fn remove_challenge(&self, token: &str) -> Result<()> {
        self.inner.challenges.remove(token)?;
        Ok(())
    }

    /// Removes everything of `app` kept here (its destroy).
    pub(super) fn forget_app_edge(&self, app: &str) -> Result<()> {
        for (hostname, _) in self.app_domains(app)? {
            self.remove_domain(app, &hostname)?;
        }
        for c in self.app_certs(app)? {
            self.remove_cert(app, &c.id)?;
        }
        for r in self.tcp_routes()? {
            if r.app == app {
                self.remove_tcp_route(app, r.port)?;
            }
        }
        for o in self.acme_orders()? {
            if o.app == app {
                self.remove_acme_order(&o.hostname)?;
            }
        }
        Ok(())
    }

    pub(super) fn edge_watch(&self) -> EdgeWatch {
        EdgeWatch {
            subscribers: vec![
                self.inner.domains.watch(),
                self.inner.certs.watch(),
                self.inner.tcp_ports.watch(),
                self.inner.challenges.watch(),
            ],
        }
    }
}

/// Changes to the trees of this file, for the routing index.
pub struct EdgeWatch {
    subscribers: Vec<TreeWatch>,
}

impl EdgeWatch {
    /// Waits for the next change. Returns `false` when the store is closed.
    pub async fn changed(&mut self) -> bool {
        let changes = self.subscribers.iter_mut().map(|s| Box::pin(s.changed()));
        let (alive, _, _) = futures_util::future::select_all(changes).await;
        alive
    }
}
