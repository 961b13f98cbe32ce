//! The API's own certificate and the agents' pin on it. caasd makes a self-signed certificate at
//! first start (`DATA_DIR/api-cert.pem`, key in `DATA_DIR/api-key.pem`, both readable by caasd's
//! user only) and serves the API over TLS with it on the API's own port, beside plain HTTP (the
//! first byte of a connection tells which). `caas hosts:add` prints the certificate's SHA-256
//! fingerprint in the join command; an agent given it accepts that certificate and no other
//! (`PinnedVerifier`), as kubeadm's `--discovery-token-ca-cert-hash` does. No name or expiry
//! is checked: the pin says exactly which certificate is the control plane's.
//!
//! Servers sharing a store (etcd) serve one certificate, the first server's, kept in the store:
//! an agent pins one fingerprint and may move to any server when its own stops answering.

use crate::agent::write_private;
use anyhow::Context;
use sha2::Digest;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// `sha256:` and the lowercase hex SHA-256 of a certificate's DER.
pub fn fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(der)))
}

/// A fingerprint as an operator may paste it: `sha256:HEX`, bare hex, or `AB:CD:...` as
/// openssl prints it. Normalised to `sha256:` and lowercase hex.
pub fn parse_fingerprint(s: &str) -> Result<String, String> {
    let hex_part = s.trim();
    let hex_part = hex_part
        .strip_prefix("sha256:")
        .or_else(|| hex_part.strip_prefix("SHA256:"))
        .unwrap_or(hex_part);
    let hex_part: String = hex_part.chars().filter(|c| *c != ':').collect();
    if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid --server-fingerprint {s:?}: give the sha256:... that caas hosts:add printed"
        ));
    }
    Ok(format!("sha256:{}", hex_part.to_ascii_lowercase()))
}

/// The API's certificate as caasd serves it.
pub struct ApiCert {
    pub config: Arc<rustls::ServerConfig>,
    pub fingerprint: String,
}

/// Loads `DIR/api-cert.pem` and `DIR/api-key.pem`, making them first when either is missing;
/// on a shared store, the pair is the cluster's (the first server's), written over this
/// server's own. The pair is kept for good: agents pinned it when they joined.
pub fn ensure(dir: &Path, store: &crate::store::Store) -> anyhow::Result<ApiCert> {
    make_if_missing(dir)?;
    if store.is_shared() {
        share(dir, store)?;
    }
    load(dir)
}

/// The cluster's pair from the store, this server's own put there if it is the first; written
/// to `dir` when it differs from what is there.
fn share(dir: &Path, store: &crate::store::Store) -> anyhow::Result<()> {
    let (cert_path, key_path) = (dir.join("api-cert.pem"), dir.join("api-key.pem"));
    let read =
        |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let mine = serde_json::json!({"cert": read(&cert_path)?, "key": read(&key_path)?}).to_string();
    let theirs = store
        .meta_get_or_init("api_cert", || mine.clone())
        .context("sharing the API's certificate through the store")?;
    if theirs == mine {
        return Ok(());
    }
    let pair: serde_json::Value =
        serde_json::from_str(&theirs).context("the store's API certificate is not readable")?;
    let field = |f: &str| {
        pair[f]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("the store's API certificate has no {f}"))
    };
    write_private(&key_path, field("key")?.as_bytes())?;
    write_private(&cert_path, field("cert")?.as_bytes())?;
    tracing::info!("serving the API certificate the servers share (the first server's)");
    Ok(())
}

fn make_if_missing(dir: &Path) -> anyhow::Result<()> {
    let (cert_path, key_path) = (dir.join("api-cert.pem"), dir.join("api-key.pem"));
    if !cert_path.exists() || !key_path.exists() {
        let mut params = rcgen::CertificateParams::new(vec!["caasd".to_string()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "caasd API (pinned by agents)");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.self_signed(&key)?;
        // The key first: a crash between the writes leaves no certificate without its key.
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        write_private(&cert_path, cert.pem().as_bytes())?;
        tracing::info!(
            "made the API's certificate {} for agents to pin",
            cert_path.display()
        );
    }
    Ok(())
}

fn load(dir: &Path) -> anyhow::Result<ApiCert> {
    let (cert_path, key_path) = (dir.join("api-cert.pem"), dir.join("api-key.pem"));
    let read = |p: &Path| {
        std::fs::read(p).with_context(|| format!("reading the API's certificate {}", p.display()))
    };
    let cert = CertificateDer::from_pem_slice(&read(&cert_path)?)
        .with_context(|| format!("{} holds no certificate", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&read(&key_path)?)
        .with_context(|| format!("{} holds no private key", key_path.display()))?;
    let fingerprint = fingerprint(cert.as_ref());
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .with_context(|| format!("{} does not go with its key", cert_path.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ApiCert {
        config: Arc::new(config),
        fingerprint,
    })
}

/// Accepts the one certificate whose fingerprint it was given, and remembers the fingerprint of
/// any other one it was shown, so the agent can say which certificate it refused.
#[derive(Debug)]
pub struct PinnedVerifier {
    pin: String,
    refused: Mutex<Option<String>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl PinnedVerifier {
    /// The fingerprint of the last certificate refused, if any.
    pub fn refused(&self) -> Option<String> {
        self.refused.lock().unwrap().clone()
    }

    pub fn pin(&self) -> &str {
        &self.pin
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = fingerprint(end_entity.as_ref());
        // Constant time is not needed: the fingerprint is public, the key behind it is not.
        if seen == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        *self.refused.lock().unwrap() = Some(seen.clone());
        Err(rustls::Error::General(format!(
            "certificate {seen} is not the pinned {}",
            self.pin
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client configuration that trusts exactly the certificate `pin` (from `parse_fingerprint`).
pub fn pinned_client(pin: &str) -> (rustls::ClientConfig, Arc<PinnedVerifier>) {
    let provider = provider();
    let verifier = Arc::new(PinnedVerifier {
        pin: pin.to_string(),
        refused: Mutex::new(None),
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the default provider supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (config, verifier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_as_operators_paste_them() {
        let hex = "ab".repeat(32);
        let want = format!("sha256:{hex}");
        assert_eq!(parse_fingerprint(&want).unwrap(), want);
        assert_eq!(parse_fingerprint(&hex.to_uppercase()).unwrap(), want);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(
            parse_fingerprint(&format!("SHA256:{colons}")).unwrap(),
            want
        );
        for bad in [
            "",
            "sha256:",
            "sha256:abc",
            &"zz".repeat(32),
            &"ab".repeat(33),
        ] {
            let e = parse_fingerprint(bad).unwrap_err();
            assert!(e.contains("caas hosts:add"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_certificate_is_made_once_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("db")).unwrap();
        let first = ensure(dir.path(), &store).unwrap();
        assert!(parse_fingerprint(&first.fingerprint).is_ok());
        for f in ["api-cert.pem", "api-key.pem"] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        assert_eq!(
            ensure(dir.path(), &store).unwrap().fingerprint,
            first.fingerprint
        );
    }

    #[tokio::test]
    async fn an_agent_accepts_the_pinned_certificate_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("db")).unwrap();
        let cert = ensure(dir.path(), &store).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(cert.config.clone());
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(s).await;
                });
            }
        });
        let connect = |pin: String| async move {
            let (config, verifier) = pinned_client(&pin);
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("caasd").unwrap();
            (
                connector.connect(name, tcp).await.is_ok(),
                verifier.refused(),
            )
        };
        assert_eq!(connect(cert.fingerprint.clone()).await, (true, None));
        let wrong = format!("sha256:{}", "00".repeat(32));
        assert_eq!(connect(wrong).await, (false, Some(cert.fingerprint)));
    }
}
