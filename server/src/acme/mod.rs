//! Automatic certificates (`caas certs:auto on`): an intent writer beside the scheduler. It
//! wakes when the routing inputs change (apps, domains) and every minute, asks `plan` what is
//! due, and obtains each certificate over ACME (RFC 8555) with an HTTP-01 challenge that the
//! gateway answers: the challenge goes into the store, reaches the gateway in its routing table,
//! and the ACME server is told to validate only once the gateway is seen answering it. Wildcards
//! can only be proved with DNS-01: the operator's hook (`--acme-dns-hook`, see `dns.rs`) publishes
//! the TXT record. The certificate is written like an uploaded one (`source: auto`); each name's order record says
//! where it stands and why the last order failed.

pub mod dns;
pub mod plan;

use crate::logs::LogHub;
use crate::store::{AcmeOrderRecord, CertRecord, Store};
use caas_api::domains::{AcmeState, CertSource};
use caas_api::Timestamp;
use instant_acme::{
    Account, AccountBuilder, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier,
    NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use plan::Step;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// How often the plan is looked at without a change (renewals, retries).
const RECHECK: Duration = Duration::from_secs(60);
/// How long the gateway has to start answering a challenge.
const GATEWAY_WAIT: Duration = Duration::from_secs(15);
/// How long the ACME server has to validate, and then to issue.
const ORDER_WAIT: Duration = Duration::from_secs(90);

/// `--acme-email`: one address, `local@domain`, nothing an ACME server or a mail header would
/// read as more than that.
pub fn parse_email(text: &str) -> Result<String, String> {
    let bad =
        || format!("invalid e-mail address {text:?}: give one address such as ops@example.com");
    let (local, domain) = text.split_once('@').ok_or_else(bad)?;
    let fine = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_+".contains(&b))
    };
    if !fine(local) || !fine(domain) || !domain.contains('.') || domain.starts_with('.') {
        return Err(bad());
    }
    Ok(text.to_string())
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// The ACME server's directory URL (`caasd --acme-directory`).
    pub directory: String,
    /// A PEM certificate to trust for it instead of the system's roots (`--acme-ca-file`).
    pub ca_file: Option<PathBuf>,
    /// The account's contact (`--acme-email`), checked by [`parse_email`].
    pub email: Option<String>,
    /// The gateway's plain HTTP address, to see it answer a challenge before validation.
    pub gateway: SocketAddr,
    /// The program that publishes DNS-01 TXT records (`--acme-dns-hook`); without one, wildcard
    /// names cannot have automatic certificates.
    pub dns_hook: Option<PathBuf>,
}

pub struct Acme {
    store: Store,
    logs: Arc<LogHub>,
    settings: Settings,
    account: Option<Account>,
    http: reqwest::Client,
}

impl Acme {
    pub fn new(store: Store, logs: Arc<LogHub>, settings: Settings) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a plain HTTP client builds");
        Self {
            store,
            logs,
            settings,
            account: None,
            http,
        }
    }

    /// Runs until `shutdown`; `changed` is the routing index (apps, domains, certificates).
    pub async fn run(mut self, mut changed: watch::Receiver<u64>, shutdown: CancellationToken) {
        // Challenges left by a run that stopped mid-order are stale.
        if let Ok(stale) = self.store.challenges() {
            for (token, _) in stale {
                let _ = self.store.remove_challenge(&token);
            }
        }
        loop {
            let mut next = None;
            match self.steps() {
                Ok((steps, due)) => {
                    next = due;
                    for step in steps {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            () = self.act(step) => {}
                        }
                    }
                }
                Err(e) => tracing::warn!("acme: reading the store: {e}"),
            }
            if let Err(e) = self.store.flush().await {
                tracing::warn!("acme: flushing the store: {e}");
            }
            changed.borrow_and_update();
            let wait = next.map_or(RECHECK, |t| Timestamp::now().until(t).min(RECHECK));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = changed.changed() => if r.is_err() { return },
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// What to do now, and when something next falls due by itself.
    fn steps(&self) -> Result<(Vec<Step>, Option<Timestamp>), crate::store::StoreError> {
        let apps = self.store.apps()?;
        let domains = self.store.domains()?;
        let wanted: Vec<(String, String)> = domains
            .into_iter()
            .filter(|(_, d)| apps.iter().any(|a| a.name == d.app && a.certs_auto))
            .map(|(host, d)| (d.app, host))
            .collect();
        let orders = self.store.acme_orders()?;
        let certs = self.store.certs()?;
        let now = Timestamp::now();
        Ok((
            plan::plan(
                &wanted,
                &orders,
                &certs,
                now,
                self.settings.dns_hook.is_some(),
            ),
            plan::next_due(&orders, &certs, now),
        ))
    }

    async fn act(&mut self, step: Step) {
        let result = match step {
            Step::Forget { hostname } => self.store.remove_acme_order(&hostname),
            Step::Unsupported { app, hostname } => {
                let mut rec = fresh(&app, &hostname);
                rec.state = AcmeState::Unsupported;
                rec.error = Some(
                    "a wildcard needs a DNS-01 challenge: the operator can start caasd with --acme-dns-hook, or add its certificate with caas certs:add".into(),
                );
                self.store.put_acme_order(&rec)
            }
            Step::Obtain { app, hostname } => self.obtain(&app, &hostname).await,
        };
        if let Err(e) = result {
            tracing::warn!("acme: writing the store: {e}");
        }
    }

    /// Orders a certificate for one name and records how it went.
    async fn obtain(&mut self, app: &str, hostname: &str) -> Result<(), crate::store::StoreError> {
        let before = self
            .store
            .acme_orders()?
            .into_iter()
            .find(|o| o.hostname == hostname && o.app == app);
        let mut rec = before.clone().unwrap_or_else(|| fresh(app, hostname));
        rec.state = AcmeState::Pending;
        rec.updated_at = Timestamp::now();
        self.store.put_acme_order(&rec)?;
        let mut published = Published::default();
        let mut result = self.order(hostname, &mut published).await;
        for token in &published.tokens {
            self.store.remove_challenge(token)?;
        }
        if let Some(hook) = self.dns_hook() {
            for (record, value) in &published.records {
                if let Err(why) = hook.cleanup(record, value).await {
                    // The certificate is good either way, but a stale TXT record is the
                    // operator's to remove: say so where they look.
                    tracing::warn!("acme: {why}");
                    if result.is_ok() {
                        self.logs
                            .event(app, "cert", format!("{why}; remove {record} by hand"));
                    } else {
                        result = result.map_err(|e| format!("{e} (and cleanup: {why})"));
                    }
                }
            }
        }
        let now = Timestamp::now();
        rec.updated_at = now;
        match result.and_then(|(chain, key)| self.keep(app, &chain, key)) {
            Ok(cert) => {
                if let Some(old) = before.and_then(|o| o.cert_id).filter(|id| *id != cert.id) {
                    self.store.remove_cert(app, &old)?;
                }
                self.store.put_cert(&cert)?;
                rec.state = AcmeState::Valid;
                rec.error = None;
                rec.next_try = None;
                rec.failures = 0;
                rec.cert_id = Some(cert.id.clone());
                self.store.put_acme_order(&rec)?;
                self.logs.event(
                    app,
                    "cert",
                    format!(
                        "Obtained certificate {} for {hostname} over ACME, valid until {}",
                        cert.id, cert.not_after
                    ),
                );
            }
            Err(why) => {
                rec.failures = rec.failures.saturating_add(1);
                let wait = plan::retry_after(rec.failures);
                rec.state = AcmeState::Failed;
                rec.error = Some(why.clone());
                rec.next_try = Some(now.plus(wait));
                self.store.put_acme_order(&rec)?;
                self.logs.event(
                    app,
                    "cert",
                    format!(
                        "Could not obtain a certificate for {hostname} over ACME: {why}; trying again in {}",
                        humantime::format_duration(wait)
                    ),
                );
            }
        }
        self.store.flush().await
    }

    /// A certificate record for what the ACME server issued, checked as an upload is.
    fn keep(&self, app: &str, chain: &str, key: String) -> Result<CertRecord, String> {
        let info = crate::tls::parse(chain, &key)
            .map_err(|e| format!("the ACME server issued a certificate caas cannot use: {e}"))?
            .info;
        Ok(CertRecord {
            app: Some(app.to_string()),
            id: info.id,
            names: info.names,
            issuer: info.issuer,
            not_before: info.not_before,
            not_after: info.not_after,
            chain_pem: chain.to_string(),
            key_pem: key,
            source: CertSource::Auto,
            created_at: Timestamp::now(),
            origin: self.settings.directory.clone(),
        })
    }

    fn dns_hook(&self) -> Option<dns::Hook> {
        self.settings
            .dns_hook
            .clone()
            .map(|path| dns::Hook { path })
    }

    /// One ACME order for `hostname`: the certificate chain and its key (PEM), or why not, in
    /// one line. What it published for the challenges (HTTP-01 tokens in the store, DNS-01
    /// records through the hook) is recorded in `published`, for the caller to take down.
    async fn order(
        &mut self,
        hostname: &str,
        published: &mut Published,
    ) -> Result<(String, String), String> {
        let account = self.account().await?;
        let ids = [Identifier::Dns(hostname.to_string())];
        let mut order = account
            .new_order(&NewOrder::new(&ids))
            .await
            .map_err(|e| format!("the ACME server refused the order: {}", say(&e)))?;
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| say(&e))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("the authorization for {hostname} is {other:?}")),
            }
            if authz.identifier().wildcard {
                let hook = self.dns_hook().ok_or_else(|| {
                    format!("{hostname} needs a DNS-01 challenge and caasd has no --acme-dns-hook")
                })?;
                let mut challenge = authz.challenge(ChallengeType::Dns01).ok_or_else(|| {
                    format!("the ACME server offers no DNS-01 challenge for {hostname}")
                })?;
                let record = dns::record_name(hostname);
                let value = challenge.key_authorization().dns_value();
                published.records.push((record.clone(), value.clone()));
                hook.present(&record, &value).await?;
                challenge.set_ready().await.map_err(|e| say(&e))?;
                continue;
            }
            let mut challenge = authz.challenge(ChallengeType::Http01).ok_or_else(|| {
                format!("the ACME server offers no HTTP-01 challenge for {hostname}")
            })?;
            let token = challenge.token.clone();
            let key_auth = challenge.key_authorization().as_str().to_string();
            self.store
                .put_challenge(&token, &key_auth)
                .map_err(|e| e.to_string())?;
            published.tokens.push(token.clone());
            self.gateway_answers(hostname, &token, &key_auth).await?;
            challenge.set_ready().await.map_err(|e| say(&e))?;
        }
        let retries = RetryPolicy::new().timeout(ORDER_WAIT);
        match order.poll_ready(&retries).await {
            Ok(OrderStatus::Ready) => {}
            Ok(_) => return Err(why_invalid(&mut order).await),
            Err(e) => return Err(format!("validation failed: {}", say(&e))),
        }
        let key = order.finalize().await.map_err(|e| say(&e))?;
        let chain = order
            .poll_certificate(&retries)
            .await
            .map_err(|e| say(&e))?;
        Ok((chain, key))
    }

    /// Waits until the gateway serves the challenge, so the ACME server's validation finds it.
    async fn gateway_answers(&self, host: &str, token: &str, key_auth: &str) -> Result<(), String> {
        let url = format!(
            "http://{}/.well-known/acme-challenge/{token}",
            self.settings.gateway
        );
        let deadline = tokio::time::Instant::now() + GATEWAY_WAIT;
        loop {
            let answer = self
                .http
                .get(&url)
                .header(reqwest::header::HOST, host)
                .send()
                .await;
            if let Ok(resp) = answer {
                if resp.status().is_success()
                    && resp.text().await.is_ok_and(|b| b.trim_end() == key_auth)
                {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the gateway at {} did not serve the challenge within {}s",
                    self.settings.gateway,
                    GATEWAY_WAIT.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The ACME account for the directory: the one in the store, or a new one registered now.
    async fn account(&mut self) -> Result<Account, String> {
        if let Some(account) = &self.account {
            return Ok(account.clone());
        }
        let directory = self.settings.directory.clone();
        // One account per directory and contact: a new e-mail registers a new account (without
        // one, the key is the directory alone, as before there was a contact).
        let key = match &self.settings.email {
            Some(email) => format!("{directory}\n{email}"),
            None => directory.clone(),
        };
        let id = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes())[..8]);
        let stored = self.store.acme_account(&id).map_err(|e| e.to_string())?;
        let account =
            match stored.and_then(|b| serde_json::from_slice::<AccountCredentials>(&b).ok()) {
                Some(credentials) => self
                    .builder()?
                    .from_credentials(credentials)
                    .await
                    .map_err(|e| format!("the ACME server at {directory}: {}", say(&e)))?,
                None => {
                    let contact = self.settings.email.as_ref().map(|e| format!("mailto:{e}"));
                    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
                    let new = NewAccount {
                        contact: &contact,
                        terms_of_service_agreed: true,
                        only_return_existing: false,
                    };
                    let (account, credentials) = self
                        .builder()?
                        .create(&new, directory.clone(), None)
                        .await
                        .map_err(|e| {
                            format!(
                                "cannot register with the ACME server at {directory}: {}",
                                say(&e)
                            )
                        })?;
                    let bytes = serde_json::to_vec(&credentials).map_err(|e| e.to_string())?;
                    self.store
                        .put_acme_account(&id, &bytes)
                        .map_err(|e| e.to_string())?;
                    account
                }
            };
        self.account = Some(account.clone());
        Ok(account)
    }

    fn builder(&self) -> Result<AccountBuilder, String> {
        match &self.settings.ca_file {
            Some(file) => Account::builder_with_root(file)
                .map_err(|e| format!("cannot use --acme-ca-file {}: {}", file.display(), say(&e))),
            None => Account::builder().map_err(|e| say(&e)),
        }
    }
}

/// What one order put in place for its challenges.
#[derive(Default)]
struct Published {
    /// HTTP-01 tokens in the store (the gateway answers them).
    tokens: Vec<String>,
    /// DNS-01 TXT records the hook published: `(name, value)`.
    records: Vec<(String, String)>,
}

fn fresh(app: &str, hostname: &str) -> AcmeOrderRecord {
    AcmeOrderRecord {
        app: app.to_string(),
        hostname: hostname.to_string(),
        state: AcmeState::Pending,
        error: None,
        updated_at: Timestamp::now(),
        next_try: None,
        failures: 0,
        cert_id: None,
    }
}

/// Why an order went invalid: the first challenge error the ACME server gives.
async fn why_invalid(order: &mut Order) -> String {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        if let Ok(state) = authz.refresh().await {
            for c in &state.challenges {
                if let Some(problem) = &c.error {
                    return format!(
                        "validation failed: {}",
                        one_line(problem.detail.as_deref().unwrap_or("no detail given"))
                    );
                }
            }
        }
    }
    "the ACME server found the order invalid and gave no reason".into()
}

/// An ACME error in one line: the server's own detail when it gave one.
fn say(e: &instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(p) => one_line(p.detail.as_deref().unwrap_or("no detail given")),
        other => one_line(&other.to_string()),
    }
}

fn one_line(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    line.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_acme_contact_is_one_plain_address() {
        for ok in ["ops@example.com", "a.b+certs@mail.example.org"] {
            assert_eq!(super::parse_email(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "",
            "ops",
            "ops@",
            "@example.com",
            "ops@localhost",
            "ops@.com",
            "a@b.com,c@d.com",
            "ops@example.com\r\nBcc: x@y.z",
            "mailto:ops@example.com",
        ] {
            let err = super::parse_email(bad).unwrap_err();
            assert!(err.contains("give one address"), "{bad:?}: {err}");
        }
    }
}
