//! Per-app access rules: `GET/POST/DELETE /v1/apps/{app}/access-rules`. Clients whose address is
//! in a `deny` rule's network are refused (403 on HTTP, a closed connection on TCP); when an app
//! has `allow` rules, only clients in one of their networks are let in. A deny wins over an allow.

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AccessAction {
    Allow,
    Deny,
}

impl AccessAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// `POST /v1/apps/{app}/access-rules`, and `DELETE` with the same fields as query parameters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessRuleRequest {
    pub action: AccessAction,
    /// `203.0.113.0/24`, `2001:db8::/32`, or one address.
    pub cidr: String,
}

/// One rule, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessRule {
    pub action: AccessAction,
    /// Normalized: the network address and its prefix length (`203.0.113.0/24`).
    pub cidr: String,
    pub created_at: Timestamp,
}

/// A network: an address with its host bits zero, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) as the IPv4 address they are.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

impl Cidr {
    /// `ADDR/PREFIX` or a bare address (one host). Host bits are cleared:
    /// `203.0.113.7/24` is `203.0.113.0/24`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let bad = || {
            format!(
                "invalid CIDR {:?}: use an address or a network such as 203.0.113.0/24 or 2001:db8::/32",
                text.chars().take(100).collect::<String>()
            )
        };
        let (addr, prefix) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| bad())?;
        let ip = canonical_ip(ip);
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 3 {
                    return Err(bad());
                }
                let n: u8 = p.parse().map_err(|_| bad())?;
                if n > max {
                    return Err(bad());
                }
                n
            }
        };
        Ok(Self {
            addr: mask(ip, prefix),
            prefix,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Whether a client at `ip` may reach an app with `rules`: not in a deny network, and in an allow
/// network when there are any.
pub fn allowed(rules: &[(AccessAction, Cidr)], ip: IpAddr) -> bool {
    let mut any_allow = false;
    let mut allowed = false;
    for (action, cidr) in rules {
        match action {
            AccessAction::Deny if cidr.contains(ip) => return false,
            AccessAction::Deny => {}
            AccessAction::Allow => {
                any_allow = true;
                allowed |= cidr.contains(ip);
            }
        }
    }
    !any_allow || allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_normalize() {
        assert_eq!(
            Cidr::parse("203.0.113.7/24").unwrap().to_string(),
            "203.0.113.0/24"
        );
        assert_eq!(Cidr::parse("10.1.2.3").unwrap().to_string(), "10.1.2.3/32");
        assert_eq!(
            Cidr::parse("2001:db8::1/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(
            Cidr::parse("::ffff:10.0.0.1").unwrap().to_string(),
            "10.0.0.1/32"
        );
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "::/129",
            "10.0.0.0/8/8",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deny_wins_and_allow_lists_are_exclusive() {
        let r = |a, c: &str| (a, Cidr::parse(c).unwrap());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let deny = vec![r(AccessAction::Deny, "203.0.113.0/24")];
        assert!(!allowed(&deny, ip("203.0.113.9")));
        assert!(!allowed(&deny, ip("::ffff:203.0.113.9")));
        assert!(allowed(&deny, ip("198.51.100.1")));
        let mixed = vec![
            r(AccessAction::Allow, "10.0.0.0/8"),
            r(AccessAction::Deny, "10.6.6.0/24"),
        ];
        assert!(allowed(&mixed, ip("10.1.1.1")));
        assert!(!allowed(&mixed, ip("10.6.6.6")));
        assert!(!allowed(&mixed, ip("192.0.2.1")));
        assert!(allowed(&[], ip("192.0.2.1")));
        let v6 = vec![r(AccessAction::Deny, "2001:db8::/32")];
        assert!(!allowed(&v6, ip("2001:db8::5")));
        assert!(allowed(&v6, ip("127.0.0.1")));
    }
}
