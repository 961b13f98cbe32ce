//! Push events from git hosts (`POST /v1/apps/APP/webhooks/git`), read and checked: which host
//! sent it (by its headers), whether it is signed with the app's webhook secret, what kind of
//! event it is, and which branch and commit a push names. Pure: headers, body and secret in, a
//! [`Reading`] out; `api/hooks.rs` acts on it.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    GitHub,
    GitLab,
    Gitea,
}

impl Host {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Gitea => "gitea",
        }
    }
}

/// A push to a branch.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    pub host: Host,
    pub delivery: Option<String>,
    pub branch: String,
    pub commit: String,
}

#[derive(Debug, PartialEq)]
pub enum Reading {
    /// Not from a known host, or not signed with the secret: 401, nothing done.
    Unauthorized(String),
    /// Signed, but nothing to build (another event, a tag, a deleted branch): said and ignored.
    Ignored(String),
    /// Signed, but the body is not what the host sends: 400.
    Malformed(String),
    Push(Push),
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn hmac_matches(secret: &str, body: &[u8], hex_signature: &str) -> bool {
    let Ok(given) = hex::decode(hex_signature) else {
        return false;
    };
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    // Constant time: an attacker learns nothing from how long the refusal took.
    mac.verify_slice(&given).is_ok()
}

/// Equal strings, compared in constant time (through their digests).
fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// Reads an event. Gitea also sends GitHub's headers, so its own are looked at first.
pub fn read(headers: &HeaderMap, body: &[u8], secret: &str) -> Reading {
    let (host, signed, event, delivery) = if let Some(sig) = header(headers, "x-gitea-signature") {
        (
            Host::Gitea,
            hmac_matches(secret, body, sig),
            header(headers, "x-gitea-event"),
            header(headers, "x-gitea-delivery"),
        )
    } else if let Some(token) = header(headers, "x-gitlab-token") {
        (
            Host::GitLab,
            same_secret(token, secret),
            header(headers, "x-gitlab-event"),
            header(headers, "x-gitlab-event-uuid").or(header(headers, "idempotency-key")),
        )
    } else if let Some(sig) = header(headers, "x-hub-signature-256") {
        let signed = sig
            .strip_prefix("sha256=")
            .is_some_and(|hex| hmac_matches(secret, body, hex));
        (
            Host::GitHub,
            signed,
            header(headers, "x-github-event"),
            header(headers, "x-github-delivery"),
        )
    } else {
        return Reading::Unauthorized(
            "unsigned: a push event needs X-Hub-Signature-256 (GitHub), X-Gitea-Signature (Gitea) or X-Gitlab-Token (GitLab) made with the app's webhook secret".into(),
        );
    };
    if !signed {
        return Reading::Unauthorized(format!(
            "the {} signature does not match this app's webhook secret: paste the secret caas git:connect showed into the webhook's settings",
            host.as_str()
        ));
    }
    let event = event.unwrap_or("");
    let is_push = match host {
        Host::GitHub | Host::Gitea => event == "push",
        Host::GitLab => event == "Push Hook",
    };
    if event == "ping" {
        return Reading::Ignored("pong: the webhook works; pushes will build".into());
    }
    if !is_push {
        return Reading::Ignored(format!("ignored: a {event:?} event; only pushes build"));
    }
    let payload: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Reading::Malformed(format!("the push event is not JSON: {e}")),
    };
    let (Some(refname), Some(after)) = (payload["ref"].as_str(), payload["after"].as_str()) else {
        return Reading::Malformed("the push event has no \"ref\" and \"after\"".into());
    };
    let Some(branch) = refname.strip_prefix("refs/heads/") else {
        return Reading::Ignored(format!("ignored: {refname} is not a branch"));
    };
    if after.len() != 40 || !after.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Reading::Malformed(format!("{after:?} is not a commit id"));
    }
    if after.bytes().all(|b| b == b'0') {
        return Reading::Ignored(format!("ignored: branch {branch} was deleted"));
    }
    Reading::Push(Push {
        host,
        delivery: delivery
            .filter(|d| !d.is_empty() && d.len() <= 200)
            .map(str::to_string),
        branch: branch.to_string(),
        commit: after.to_ascii_lowercase(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cret";
    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn sig(body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn headers(pairs: &[(&str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn push_body(refname: &str, after: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"ref": refname, "after": after})).unwrap()
    }

    #[test]
    fn each_hosts_push_is_read_when_signed() {
        let body = push_body("refs/heads/main", COMMIT);
        let want = |host, delivery: &str| {
            Reading::Push(Push {
                host,
                delivery: Some(delivery.into()),
                branch: "main".into(),
                commit: COMMIT.into(),
            })
        };
        let github = headers(&[
            ("x-github-event", "push".into()),
            ("x-github-delivery", "d1".into()),
            ("x-hub-signature-256", format!("sha256={}", sig(&body))),
        ]);
        assert_eq!(read(&github, &body, SECRET), want(Host::GitHub, "d1"));
        // Gitea sends GitHub's headers too; its own win.
        let gitea = headers(&[
            ("x-gitea-event", "push".into()),
            ("x-gitea-delivery", "d2".into()),
            ("x-gitea-signature", sig(&body)),
            ("x-github-event", "push".into()),
            ("x-hub-signature-256", "sha256=00".into()),
        ]);
        assert_eq!(read(&gitea, &body, SECRET), want(Host::Gitea, "d2"));
        let gitlab = headers(&[
            ("x-gitlab-event", "Push Hook".into()),
            ("x-gitlab-event-uuid", "d3".into()),
            ("x-gitlab-token", SECRET.into()),
        ]);
        assert_eq!(read(&gitlab, &body, SECRET), want(Host::GitLab, "d3"));
    }

    #[test]
    fn unsigned_or_wrongly_signed_events_are_refused() {
        let body = push_body("refs/heads/main", COMMIT);
        let other = push_body("refs/heads/main", &"1".repeat(40));
        let cases: Vec<(&str, HeaderMap)> = vec![
            (
                "no signature",
                headers(&[("x-github-event", "push".into())]),
            ),
            (
                "another body's signature",
                headers(&[
                    ("x-github-event", "push".into()),
                    ("x-hub-signature-256", format!("sha256={}", sig(&other))),
                ]),
            ),
            (
                "no sha256= prefix",
                headers(&[("x-hub-signature-256", sig(&body))]),
            ),
            ("not hex", headers(&[("x-gitea-signature", "zz".into())])),
            (
                "wrong gitlab token",
                headers(&[
                    ("x-gitlab-event", "Push Hook".into()),
                    ("x-gitlab-token", "s3cre".into()),
                ]),
            ),
        ];
        for (what, h) in cases {
            assert!(
                matches!(read(&h, &body, SECRET), Reading::Unauthorized(_)),
                "{what}"
            );
        }
    }

    #[test]
    fn signed_events_that_build_nothing_are_said_and_ignored() {
        let signed = |event: &str, body: &[u8]| {
            headers(&[
                ("x-github-event", event.into()),
                ("x-hub-signature-256", format!("sha256={}", sig(body))),
            ])
        };
        let rows: Vec<(&str, Vec<u8>, &str)> = vec![
            ("ping", b"{}".to_vec(), "pong"),
            ("issues", b"{}".to_vec(), "only pushes build"),
            ("push", push_body("refs/tags/v1", COMMIT), "not a branch"),
            (
                "push",
                push_body("refs/heads/main", &"0".repeat(40)),
                "deleted",
            ),
        ];
        for (event, body, says) in rows {
            match read(&signed(event, &body), &body, SECRET) {
                Reading::Ignored(m) => assert!(m.contains(says), "{event}: {m}"),
                other => panic!("{event}: {other:?}"),
            }
        }
        let bad = b"not json".to_vec();
        assert!(matches!(
            read(&signed("push", &bad), &bad, SECRET),
            Reading::Malformed(_)
        ));
    }
}
