//! Dashboard sessions: a random id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` when the
//! page was fetched over HTTPS), mapped in memory to the token the user signed in with and a
//! CSRF token. The token never reaches the browser after sign-in.
//!
//! A session exists only once its token has been checked against the API (`GET /v1/whoami`), and
//! goes whole: on sign-out, after [`IDLE`] without use or [`MAX_AGE`] in all, and as soon as the
//! API refuses its token (revoked, expired, its user removed). Sessions live in memory, so a
//! restart of caasd signs everyone out; the page then says the session expired.

use axum::http::{header, HeaderMap, HeaderValue};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const COOKIE: &str = "caas_session";
/// A session unused this long is over.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);
/// And any session after this long.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Sessions kept at most; past it the least recently used go.
const MAX_SESSIONS: usize = 10_000;

#[derive(Clone)]
pub struct Session {
    /// Its id: the cookie's value.
    pub id: String,
    /// The API token it speaks with.
    pub token: String,
    /// Sent with every change (a hidden `_csrf` field) and compared with this.
    pub csrf: String,
    pub user: String,
    pub admin: bool,
    /// Set for an app-scoped token: the one app it may see.
    pub scope: Option<String>,
    created: Instant,
    last_used: Instant,
    /// A message for the next page (after a redirect): what the last change did.
    flash: Option<String>,
    /// The API refused its token: the session is over, and its next page says why.
    refused: bool,
}

/// What a request's cookie says.
pub enum Lookup {
    /// No cookie: not signed in.
    None,
    /// A cookie for a session that is over (expired, signed out elsewhere, caasd restarted).
    Expired,
    /// A cookie for a session that ended because the API refused its token (revoked, expired,
    /// its user removed), possibly noticed by one of its live streams.
    Refused,
    Active(Session),
}

#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

/// 256 random bits, hex.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    hex::encode(bytes)
}

/// Compares without stopping at the first difference.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    /// A new session for a checked token.
    pub fn create(
        &self,
        token: String,
        user: String,
        admin: bool,
        scope: Option<String>,
    ) -> Session {
        let now = Instant::now();
        let session = Session {
            id: random_hex(),
            token,
            csrf: random_hex(),
            user,
            admin,
            scope,
            created: now,
            last_used: now,
            flash: None,
            refused: false,
        };
        let mut by_id = self.by_id.lock().unwrap();
        by_id.retain(|_, s| s.alive(now));
        if by_id.len() >= MAX_SESSIONS {
            if let Some(oldest) = by_id
                .values()
                .min_by_key(|s| s.last_used)
                .map(|s| s.id.clone())
            {
                by_id.remove(&oldest);
            }
        }
        by_id.insert(session.id.clone(), session.clone());
        session
    }

    /// The session a request's cookie names, marked as used.
    pub fn lookup(&self, headers: &HeaderMap) -> Lookup {
        let Some(id) = cookie(headers, COOKIE) else {
            return Lookup::None;
        };
        let now = Instant::now();
        let mut by_id = self.by_id.lock().unwrap();
        match by_id.get_mut(&id) {
            Some(s) if s.refused => {
                by_id.remove(&id);
                Lookup::Refused
            }
            Some(s) if s.alive(now) => {
                s.last_used = now;
                Lookup::Active(s.clone())
            }
            Some(_) => {
                by_id.remove(&id);
                Lookup::Expired
            }
            None => Lookup::Expired,
        }
    }

    /// Whether the session is still there (open streams end when it is not).
    pub fn active(&self, id: &str) -> bool {
        let now = Instant::now();
        self.by_id
            .lock()
            .unwrap()
            .get(id)
            .is_some_and(|s| s.alive(now) && !s.refused)
    }

    /// Ends a session because the API refused its token; its next page says so.
    pub fn refuse(&self, id: &str) {
        if let Some(s) = self.by_id.lock().unwrap().get_mut(id) {
            s.refused = true;
        }
    }

    pub fn end(&self, id: &str) {
        self.by_id.lock().unwrap().remove(id);
    }

    pub fn set_flash(&self, id: &str, message: String) {
        if let Some(s) = self.by_id.lock().unwrap().get_mut(id) {
            s.flash = Some(message);
        }
    }

    pub fn take_flash(&self, id: &str) -> Option<String> {
        self.by_id.lock().unwrap().get_mut(id)?.flash.take()
    }
}

impl Session {
    fn alive(&self, now: Instant) -> bool {
        now.duration_since(self.last_used) < IDLE && now.duration_since(self.created) < MAX_AGE
    }
}

/// A cookie's value from the `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether the browser reached us over HTTPS: caasd's API listener speaks plain HTTP, so that is
/// a TLS-terminating proxy in front of it saying so.
pub fn https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// `Set-Cookie` for a session (or, with `None`, one that removes it).
pub fn set_cookie(id: Option<&str>, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = match id {
        Some(id) => format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            MAX_AGE.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&value).expect("a cookie of hex digits is a valid header")
}

/// Whether a state-changing request comes from our own pages: its `Origin` (which browsers send
/// with every POST) names the host it was sent to, and `Sec-Fetch-Site`, when sent, does not say
/// another site or origin. Requests without either (not from a browser) pass here; changes still
/// need the session's CSRF token.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(host)) = (
        origin.to_str(),
        headers.get(header::HOST).and_then(|h| h.to_str().ok()),
    ) else {
        return false;
    };
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    rest.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn cookies_are_read_and_set_strictly() {
        let h = headers(&[("cookie", "a=1; caas_session=ab12 ; b=2")]);
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("ab12"));
        let odd = headers(&[("cookie", "caas_session=<script>")]);
        assert_eq!(cookie(&odd, COOKIE), None);
        let set = set_cookie(Some("ab12"), false);
        let set = set.to_str().unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        assert!(!set.contains("Secure"));
        assert!(set_cookie(Some("ab"), true)
            .to_str()
            .unwrap()
            .ends_with("; Secure"));
        assert!(set_cookie(None, false)
            .to_str()
            .unwrap()
            .contains("Max-Age=0"));
    }

    #[test]
    fn only_our_own_origin_may_change_things() {
        let ok = [
            headers(&[
                ("host", "127.0.0.1:7080"),
                ("origin", "http://127.0.0.1:7080"),
            ]),
            headers(&[
                ("host", "caas.example.com"),
                ("origin", "https://caas.example.com"),
            ]),
            headers(&[("host", "127.0.0.1:7080")]),
            headers(&[
                ("host", "h"),
                ("origin", "http://h"),
                ("sec-fetch-site", "same-origin"),
            ]),
        ];
        for h in ok {
            assert!(same_origin(&h), "{h:?}");
        }
        let refused = [
            headers(&[
                ("host", "127.0.0.1:7080"),
                ("origin", "http://127.0.0.1:9999"),
            ]),
            headers(&[("host", "127.0.0.1:7080"), ("origin", "null")]),
            headers(&[("host", "h"), ("sec-fetch-site", "cross-site")]),
            headers(&[
                ("host", "h"),
                ("origin", "http://h"),
                ("sec-fetch-site", "same-site"),
            ]),
            headers(&[("origin", "http://h")]),
        ];
        for h in refused {
            assert!(!same_origin(&h), "{h:?}");
        }
    }

    #[test]
    fn sessions_end_whole() {
        let s = Sessions::default();
        let a = s.create("caas_x".into(), "ann".into(), false, None);
        let h = headers(&[("cookie", &format!("{COOKIE}={}", a.id))]);
        assert!(matches!(s.lookup(&h), Lookup::Active(ref x) if x.user == "ann"));
        s.set_flash(&a.id, "hi".into());
        assert_eq!(s.take_flash(&a.id).as_deref(), Some("hi"));
        assert_eq!(s.take_flash(&a.id), None);
        s.end(&a.id);
        assert!(matches!(s.lookup(&h), Lookup::Expired));
        assert!(matches!(s.lookup(&HeaderMap::new()), Lookup::None));
        assert!(!s.active(&a.id));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
        let b = s.create("caas_y".into(), "bob".into(), false, None);
        let h = headers(&[("cookie", &format!("{COOKIE}={}", b.id))]);
        s.refuse(&b.id);
        assert!(!s.active(&b.id));
        assert!(matches!(s.lookup(&h), Lookup::Refused));
        assert!(matches!(s.lookup(&h), Lookup::Expired));
    }
}
