//! Custom domains: `GET/POST /v1/apps/{app}/domains`, `DELETE /v1/apps/{app}/domains/{hostname}`,
//! and the host name rules they are checked against.
//!
//! A domain is an exact name (`www.example.com`) or a one-level wildcard (`*.example.com`, which
//! matches `a.example.com` but neither `example.com` nor `a.b.example.com`). A name belongs to at
//! most one app. The gateway picks the exact name first, then the wildcard, then `APP.DOMAIN`.

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// Longest host name DNS carries (RFC 1035, without the trailing dot).
pub const HOSTNAME_MAX: usize = 253;
/// Longest label.
pub const LABEL_MAX: usize = 63;

/// `POST /v1/apps/{app}/domains`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddDomain {
    pub hostname: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DomainKind {
    /// One name.
    Exact,
    /// `*.example.com`: every name one label below `example.com`.
    Wildcard,
}

/// One of an app's domains: `GET /v1/apps/{app}/domains`, and the answer to adding one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Domain {
    /// Lowercase, without a trailing dot; `*.` first for a wildcard.
    pub hostname: String,
    pub kind: DomainKind,
    /// What to point the name's DNS record at: the app's own `APP.DOMAIN`.
    pub dns_target: String,
    /// The kind of DNS record that does it: `CNAME` for a name below a registered domain (and
    /// for wildcards); for a name that may be a zone apex (two labels, `example.com`), where a
    /// CNAME is not allowed, `ALIAS` (an ALIAS/ANAME record to `dns_target`, or A/AAAA records
    /// with the gateway's addresses).
    pub dns_record: String,
    pub created_at: Timestamp,
}

/// How the gateway serves an app besides where: `GET/PATCH /v1/apps/{app}/routing`. A `PATCH`
/// sets the fields it names (`null` or absent: unchanged).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoutingSettings {
    /// Plain HTTP requests get a 308 to the same URL over HTTPS.
    #[serde(default)]
    pub redirect_https: bool,
    /// The app's web process speaks HTTP/2 on `$PORT` (cleartext, prior knowledge, as gRPC
    /// servers do): the gateway talks HTTP/2 to it, end to end.
    #[serde(default)]
    pub http2: bool,
    /// Certificates for the app's domains are obtained and renewed over ACME (`caas certs:auto`).
    #[serde(default)]
    pub certs_auto: bool,
}

/// `PATCH /v1/apps/{app}/routing`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoutingUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_https: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certs_auto: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// Certificates: GET/POST /v1/apps/{app}/certs, DELETE /v1/apps/{app}/certs/{id}
// ---------------------------------------------------------------------------------------------

/// `POST /v1/apps/{app}/certs`: a certificate chain (leaf first) and its private key, PEM.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddCert {
    pub cert_pem: String,
    pub key_pem: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CertSource {
    /// Added with `caas certs:add`.
    #[default]
    Uploaded,
    /// Obtained over ACME (`caas certs:auto on`).
    Auto,
}

impl CertSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uploaded => "uploaded",
            Self::Auto => "auto",
        }
    }
}

/// One of an app's certificates, as the API shows it: never its private key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cert {
    /// The first 12 hex digits of the SHA-256 of the leaf certificate.
    pub id: String,
    /// The names it is valid for (its subject alternative names).
    pub names: Vec<String>,
    /// Which of the app's names it serves (the others are served with another certificate).
    #[serde(default)]
    pub serves: Vec<String>,
    pub issuer: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    #[serde(default)]
    pub source: CertSource,
    pub created_at: Timestamp,
}

/// `GET /v1/apps/{app}/certs/auto`: automatic certificates, and where each name's stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AutoCerts {
    pub enabled: bool,
    /// The ACME server's directory (`caasd --acme-directory`).
    pub directory: String,
    /// One per custom domain of the app, by host name.
    pub orders: Vec<AcmeOrder>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AcmeState {
    /// Not asked for yet, or being asked for now.
    Pending,
    /// A certificate was obtained; it is renewed 30 days before it expires.
    Valid,
    /// The last order failed (`error` says why); it is tried again at `next_try`.
    Failed,
    /// caas cannot obtain it (a wildcard needs a DNS-01 challenge).
    Unsupported,
}

impl AcmeState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Valid => "valid",
            Self::Failed => "failed",
            Self::Unsupported => "unsupported",
        }
    }
}

/// Where one name's automatic certificate stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AcmeOrder {
    pub hostname: String,
    pub state: AcmeState,
    /// Why the last order failed, in one line.
    #[serde(default)]
    pub error: Option<String>,
    pub updated_at: Timestamp,
    /// When a failed order is tried again.
    #[serde(default)]
    pub next_try: Option<Timestamp>,
    /// The certificate it obtained.
    #[serde(default)]
    pub cert_id: Option<String>,
}

/// Why a host name was refused. The message states the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostnameError {
    #[error("invalid host name {0:?}: it is empty")]
    Empty(String),
    #[error("invalid host name {0:?}: longer than {HOSTNAME_MAX} characters")]
    TooLong(String),
    #[error("invalid host name {0:?}: a label (between dots) is empty or longer than {LABEL_MAX} characters")]
    Label(String),
    #[error("invalid host name {0:?}: use letters, digits and dashes between dots, no dash at either end of a label")]
    Characters(String),
    #[error(
        "invalid host name {0:?}: use a name with at least two labels, such as www.example.com"
    )]
    OneLabel(String),
    #[error("invalid host name {0:?}: a wildcard is one \"*.\" in front of at least two labels, such as *.example.com")]
    Wildcard(String),
    #[error("invalid host name {0:?}: an IP address is not a domain")]
    Address(String),
}

/// A host name in the form caas keeps it: lowercase, no trailing dot.
pub fn normalize_hostname(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    n.strip_suffix('.').map(str::to_string).unwrap_or(n)
}

/// Checks a domain name an app may be served at, normalized first ([`normalize_hostname`]);
/// returns it normalized. Internationalized names are given in their ASCII (`xn--`) form.
pub fn validate_hostname(name: &str) -> Result<String, HostnameError> {
    let n = normalize_hostname(name);
    let shown = || name.chars().take(300).collect::<String>();
    if n.is_empty() {
        return Err(HostnameError::Empty(shown()));
    }
    if n.len() > HOSTNAME_MAX {
        return Err(HostnameError::TooLong(shown()));
    }
    let (wild, rest) = match n.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, n.as_str()),
    };
    let labels: Vec<&str> = rest.split('.').collect();
    if labels.iter().any(|l| l.contains('*')) {
        return Err(HostnameError::Wildcard(shown()));
    }
    for l in &labels {
        if l.is_empty() || l.len() > LABEL_MAX {
            return Err(HostnameError::Label(shown()));
        }
        let b = l.as_bytes();
        let ok = b
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-';
        if !ok {
            return Err(HostnameError::Characters(shown()));
        }
    }
    if labels.len() < 2 {
        return Err(if wild {
            HostnameError::Wildcard(shown())
        } else {
            HostnameError::OneLabel(shown())
        });
    }
    // A top-level label of digits only is an IPv4 address (or no real domain).
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|c| c.is_ascii_digit()))
    {
        return Err(HostnameError::Address(shown()));
    }
    Ok(n)
}

/// Whether `pattern` (an exact name or `*.suffix`) covers `host` (both normalized).
pub fn hostname_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .and_then(|h| h.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        None => pattern == host,
    }
}

impl DomainKind {
    pub fn of(hostname: &str) -> Self {
        if hostname.starts_with("*.") {
            Self::Wildcard
        } else {
            Self::Exact
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Wildcard => "wildcard",
        }
    }
}

/// The DNS record to point `hostname` at the app: `CNAME`, or `ALIAS` for a two-label name, which
/// may be a zone apex where a CNAME is not allowed.
pub fn dns_record_for(hostname: &str) -> &'static str {
    if !hostname.starts_with("*.") && hostname.split('.').count() == 2 {
        "ALIAS"
    } else {
        "CNAME"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_normalized_and_checked() {
        assert_eq!(
            validate_hostname("WWW.Example.COM.").unwrap(),
            "www.example.com"
        );
        assert_eq!(validate_hostname("*.example.com").unwrap(), "*.example.com");
        assert_eq!(
            validate_hostname("xn--bcher-kva.example").unwrap(),
            "xn--bcher-kva.example"
        );
        let long_label = format!("{}.com", "a".repeat(64));
        let too_long = format!("{}com", "abcdefghi.".repeat(26));
        for (bad, want) in [
            ("", "empty"),
            ("localhost", "two labels"),
            ("*.com", "wildcard"),
            ("a.*.example.com", "wildcard"),
            ("*example.com", "wildcard"),
            ("**.example.com", "wildcard"),
            ("under_score.example.com", "letters, digits"),
            ("-a.example.com", "letters, digits"),
            ("a-.example.com", "letters, digits"),
            ("a..example.com", "empty or longer"),
            (long_label.as_str(), "empty or longer"),
            (too_long.as_str(), "longer than 253"),
            ("10.0.0.1", "IP address"),
            ("ex ample.com", "letters, digits"),
            ("example.com/x", "letters, digits"),
            ("[::1]", "letters, digits"),
            ("host.example.com:80", "letters, digits"),
        ] {
            let e = validate_hostname(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }

    #[test]
    fn wildcards_cover_one_level() {
        assert!(hostname_matches("*.example.com", "a.example.com"));
        assert!(!hostname_matches("*.example.com", "example.com"));
        assert!(!hostname_matches("*.example.com", "a.b.example.com"));
        assert!(!hostname_matches("*.example.com", "aexample.com"));
        assert!(hostname_matches("www.example.com", "www.example.com"));
        assert!(!hostname_matches("www.example.com", "a.www.example.com"));
    }

    #[test]
    fn apexes_get_an_alias() {
        assert_eq!(dns_record_for("example.com"), "ALIAS");
        assert_eq!(dns_record_for("www.example.com"), "CNAME");
        assert_eq!(dns_record_for("*.example.com"), "CNAME");
    }
}
