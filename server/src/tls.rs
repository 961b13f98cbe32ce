//! Certificates: what one says about itself (names, issuer, validity), the checks a certificate
//! passes before caas serves it, and the self-signed one caasd makes when the operator gives
//! none. TLS itself is rustls (aws-lc-rs); nothing here links OpenSSL.

use caas_api::domains::hostname_matches;
use caas_api::Timestamp;
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What a certificate says, and that its key goes with it.
#[derive(Debug, Clone, PartialEq)]
pub struct CertInfo {
    /// First 12 hex digits of the SHA-256 of the leaf (DER).
    pub id: String,
    /// Subject alternative names (DNS), lowercase; the common name when it has none.
    pub names: Vec<String>,
    pub issuer: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

/// A chain and key that parse and belong together.
pub struct Parsed {
    pub info: CertInfo,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Parses a PEM chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1) and checks
/// that the key is the leaf's. The error is one line saying what is wrong.
pub fn parse(chain_pem: &str, key_pem: &str) -> Result<Parsed, String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate file does not parse as PEM: {e}"))?;
    if chain.is_empty() {
        return Err(
            "the certificate file holds no certificate (a PEM \"BEGIN CERTIFICATE\" block)".into(),
        );
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
        format!("the key file holds no private key that parses (PKCS#8, RSA or EC PEM): {e}")
    })?;
    let info = describe(&chain[0])?;
    let certified =
        rustls::sign::CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                "the private key does not belong to the certificate".to_string()
            }
            other => format!("the key or certificate cannot be used: {other}"),
        })?;
    certified
        .keys_match()
        .map_err(|_| "the private key does not belong to the certificate".to_string())?;
    Ok(Parsed { info })
}

/// Names, issuer and validity of a DER certificate.
pub fn describe(der: &CertificateDer<'_>) -> Result<CertInfo, String> {
    use sha2::Digest;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("the certificate does not parse as X.509: {e}"))?;
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    names.sort();
    names.dedup();
    let ts = |t: x509_parser::time::ASN1Time| {
        Timestamp::from_millis((t.timestamp().max(0) as u64).saturating_mul(1000))
    };
    Ok(CertInfo {
        id: hex::encode(&sha2::Sha256::digest(der.as_ref())[..6]),
        names,
        issuer: cert.issuer().to_string(),
        not_before: ts(cert.validity().not_before),
        not_after: ts(cert.validity().not_after),
    })
}

/// Whether a certificate valid for `names` serves `host` (an exact name or a `*.` wildcard): a
/// certificate wildcard covers one label, and a wildcard host needs the same wildcard.
pub fn covers(names: &[String], host: &str) -> bool {
    names.iter().any(|n| {
        if host.starts_with("*.") {
            n == host
        } else {
            hostname_matches(n, host)
        }
    })
}

/// A self-signed certificate for `DOMAIN` and `*.DOMAIN`, valid for a year: `(chain, key)`, PEM.
pub fn self_signed(domain: &str) -> anyhow::Result<(String, String)> {
    let mut params =
        rcgen::CertificateParams::new(vec![domain.to_string(), format!("*.{domain}")])?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("caas self-signed *.{domain}"),
    );
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(3600)).into();
    params.not_after = (now + std::time::Duration::from_secs(365 * 24 * 3600)).into();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str], days: i64) -> (String, String) {
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let now = std::time::SystemTime::now();
        let day = std::time::Duration::from_secs(86400);
        if days < 0 {
            p.not_before = (now - day * 10).into();
            p.not_after = (now - day).into();
        } else {
            p.not_before = (now - day).into();
            p.not_after = (now + day * days as u32).into();
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn a_certificate_and_its_key_parse_and_say_what_they_are() {
        let (c, k) = cert(&["www.a.test", "*.a.test"], 30);
        let p = parse(&c, &k).unwrap();
        assert_eq!(p.info.names, ["*.a.test", "www.a.test"]);
        assert_eq!(p.info.id.len(), 12);
        assert!(p.info.not_after > Timestamp::now());
        let (_, other_key) = cert(&["x.test"], 30);
        assert_eq!(
            parse(&c, &other_key).err().unwrap(),
            "the private key does not belong to the certificate"
        );
        assert!(parse("nonsense", &k)
            .err()
            .unwrap()
            .contains("no certificate"));
        assert!(parse(&c, "nonsense")
            .err()
            .unwrap()
            .contains("no private key"));
        assert!(parse(&k, &k).err().unwrap().contains("no certificate"));
    }

    #[test]
    fn names_cover_hosts_as_tls_says() {
        let names = vec!["*.a.test".to_string(), "www.b.test".to_string()];
        assert!(covers(&names, "x.a.test"));
        assert!(covers(&names, "*.a.test"));
        assert!(!covers(&names, "a.test"));
        assert!(!covers(&names, "y.x.a.test"));
        assert!(covers(&names, "www.b.test"));
        assert!(!covers(&names, "*.b.test"));
    }

    #[test]
    fn the_self_signed_certificate_covers_the_domain() {
        let (c, k) = self_signed("apps.test").unwrap();
        let p = parse(&c, &k).unwrap();
        assert!(covers(&p.info.names, "demo.apps.test"));
        assert!(covers(&p.info.names, "apps.test"));
    }
}
