//! The platform's own TLS certificate: the one the gateway serves for every name no app's
//! certificate covers. Made or loaded once at start (`ensure`), and, when the operator gave
//! files, re-read whenever they change (`follow`), so a renewed wildcard certificate is served
//! without a restart.

use crate::store::Store;
use crate::ServerArgs;
use anyhow::Context;
use caas_api::Timestamp;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The platform's own certificate, served for every name no app's certificate covers: the
/// operator's `--tls-cert`/`--tls-key`, else (with `--https`) a self-signed one for `*.DOMAIN`,
/// kept while it is valid for a month more and the domain is the same.
pub async fn ensure(store: &Store, args: &ServerArgs) -> anyhow::Result<()> {
    use crate::store::CertRecord;
    let now = Timestamp::now();
    let record =
        |chain_pem: String, key_pem: String, origin: String| -> anyhow::Result<CertRecord> {
            let parsed = crate::tls::parse(&chain_pem, &key_pem).map_err(anyhow::Error::msg)?;
            Ok(CertRecord {
                app: None,
                id: parsed.info.id,
                names: parsed.info.names,
                issuer: parsed.info.issuer,
                not_before: parsed.info.not_before,
                not_after: parsed.info.not_after,
                chain_pem,
                key_pem,
                source: caas_api::domains::CertSource::Uploaded,
                created_at: now,
                origin,
            })
        };
    let current = store.platform_cert()?;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let rec = read(cert, key, &record)?;
        if rec.not_after <= now {
            tracing::warn!(
                "the certificate {} expired at {}; clients will refuse it",
                cert.display(),
                rec.not_after
            );
        }
        if current.as_ref().is_none_or(|c| c.id != rec.id) {
            store.put_cert(&rec)?;
            store.flush().await?;
        }
        tracing::info!(
            "serving {} ({}) for names without a certificate of their own",
            cert.display(),
            rec.names.join(", ")
        );
        return Ok(());
    }
    if args.https.is_none() {
        return Ok(());
    }
    let wanted = format!("*.{}", args.domain);
    let month = Duration::from_secs(30 * 24 * 3600);
    let keep = current.as_ref().filter(|c| {
        c.origin == "self-signed" && c.names.contains(&wanted) && now.plus(month) < c.not_after
    });
    if keep.is_none() {
        let (chain, key) = crate::tls::self_signed(&args.domain)?;
        store.put_cert(&record(chain, key, "self-signed".into())?)?;
        store.flush().await?;
    }
    tracing::warn!(
        "no --tls-cert given: HTTPS serves a self-signed certificate for {wanted}, which clients do not trust; give the platform's certificate with --tls-cert and --tls-key"
    );
    Ok(())
}

fn read(
    cert: &Path,
    key: &Path,
    record: &dyn Fn(String, String, String) -> anyhow::Result<crate::store::CertRecord>,
) -> anyhow::Result<crate::store::CertRecord> {
    let chain_pem = std::fs::read_to_string(cert)
        .with_context(|| format!("reading --tls-cert {}", cert.display()))?;
    let key_pem = std::fs::read_to_string(key)
        .with_context(|| format!("reading --tls-key {}", key.display()))?;
    record(chain_pem, key_pem, cert.display().to_string()).with_context(|| {
        format!(
            "--tls-cert {} / --tls-key {}",
            cert.display(),
            key.display()
        )
    })
}

/// Re-reads the operator's certificate when its files change, so a renewed one is served
/// without a restart; one that does not parse is reported and the one before stays.
pub async fn follow(
    store: Store,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    shutdown: CancellationToken,
) {
    let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = (stamp(&cert), stamp(&key));
    let mut warned = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        let now = (stamp(&cert), stamp(&key));
        if now == seen {
            continue;
        }
        let record = |chain_pem: String, key_pem: String, origin: String| {
            let parsed = crate::tls::parse(&chain_pem, &key_pem).map_err(anyhow::Error::msg)?;
            Ok(crate::store::CertRecord {
                app: None,
                id: parsed.info.id,
                names: parsed.info.names,
                issuer: parsed.info.issuer,
                not_before: parsed.info.not_before,
                not_after: parsed.info.not_after,
                chain_pem,
                key_pem,
                source: caas_api::domains::CertSource::Uploaded,
                created_at: Timestamp::now(),
                origin,
            })
        };
        match read(&cert, &key, &record) {
            Ok(rec) => {
                let same = store
                    .platform_cert()
                    .ok()
                    .flatten()
                    .is_some_and(|c| c.id == rec.id);
                if !same {
                    if let Err(e) = store.put_cert(&rec) {
                        tracing::error!("storing the platform certificate: {e}");
                        continue;
                    }
                    let _ = store.flush().await;
                    tracing::info!(
                        "serving the new {} ({})",
                        cert.display(),
                        rec.names.join(", ")
                    );
                }
                seen = now;
            }
            // Files caught half-replaced (a new certificate, the old key) are read again at the
            // next look; what does not come right is said once.
            Err(e) => {
                if warned != Some(now) {
                    tracing::warn!("keeping the platform certificate served now: {e:#}");
                    warned = Some(now);
                }
            }
        }
    }
}
