//! Certificates a test makes (rcgen): a CA of its own, and certificates it issues for whatever
//! names a test serves, written as PEM files for `caas certs:add`, `caasd --tls-cert` and curl's
//! `--cacert`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A certificate authority for one test, its certificate in `dir/ca.pem`.
pub struct TestCa {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: PathBuf,
}

/// A certificate and its key, as PEM text and as files.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

const DAY: Duration = Duration::from_secs(86_400);

impl TestCa {
    /// A new CA whose files go to `dir` (which must exist).
    pub fn new(dir: &Path) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "caas test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let now = SystemTime::now();
        params.not_before = (now - DAY).into();
        params.not_after = (now + DAY * 30).into();
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        TestCa {
            ca,
            dir: dir.to_path_buf(),
        }
    }

    /// The CA certificate's file, for `curl --cacert`.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `names`, valid from a day ago for `days` days (an expired one with a
    /// negative count), written as `dir/FILE.pem` and `dir/FILE.key`.
    pub fn issue(&self, file: &str, names: &[&str], days: i64) -> Issued {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().copied().unwrap_or("x"),
        );
        let now = SystemTime::now();
        if days < 0 {
            params.not_before = (now - DAY * 10).into();
            params.not_after = (now - DAY * (-days) as u32).into();
        } else {
            params.not_before = (now - DAY).into();
            params.not_after = (now + DAY * days as u32).into();
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let issued = Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_path: self.dir.join(format!("{file}.pem")),
            key_path: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&issued.cert_path, &issued.cert_pem).unwrap();
        std::fs::write(&issued.key_path, &issued.key_pem).unwrap();
        issued
    }
}
