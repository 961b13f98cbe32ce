//! Which release a request goes to while a canary runs: the `X-Caas-Release` header first (for
//! testing a release on purpose), then a `--sticky` canary's cookie, then the canary's share.
//! Pure: the draw is given, so every rule is tested as a table.
//!
//! The share is not a coin flip per request: the n-th request of the app draws the fractional
//! part of `n × φ` (a Weyl sequence), which spreads any run of requests over `0..100` almost
//! evenly, so 20 % of 500 requests is 100 ± 1 rather than 100 ± 18, and no state is kept per
//! client.

use super::table::AppRoutes;
use caas_api::canary::{RELEASE_COOKIE, RELEASE_HEADER};
use caas_api::gateway::CanaryRoute;
use hyper::header::{HeaderMap, HeaderValue, COOKIE, SET_COOKIE};

/// Where a request goes: only backends of `release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub release: u64,
    /// The answer sets the sticky cookie (the client had none that holds).
    pub set_cookie: bool,
}

/// Put on a response of an app with a canary: the release that answered, for the per-release
/// counts.
#[derive(Debug, Clone, Copy)]
pub struct ServedBy(pub u64);

/// `v8`, `V8` or `8`.
fn version(text: &str) -> Option<u64> {
    let t = text.trim();
    t.strip_prefix(['v', 'V']).unwrap_or(t).parse().ok()
}

/// The value of the sticky cookie in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == RELEASE_COOKIE).then_some(value)
        })
}

/// The release for one request. `has(v)`: release `v` has backends now. `draw` is in `0..100`.
/// `None`: every backend (no canary, and no header asking for a release that has some).
pub fn pick(
    canary: Option<&CanaryRoute>,
    has: impl Fn(u64) -> bool,
    header: Option<&str>,
    cookie: Option<&str>,
    draw: u32,
) -> Option<Pick> {
    if let Some(v) = header.and_then(version).filter(|&v| has(v)) {
        return Some(Pick {
            release: v,
            set_cookie: false,
        });
    }
    let c = canary?;
    let mine = |v: u64| (v == c.version || v == c.stable) && has(v);
    if c.sticky {
        if let Some(v) = cookie.and_then(version).filter(|&v| mine(v)) {
            return Some(Pick {
                release: v,
                set_cookie: false,
            });
        }
    }
    let (first, other) = if draw < u32::from(c.weight) {
        (c.version, c.stable)
    } else {
        (c.stable, c.version)
    };
    let release = [first, other].into_iter().find(|&v| has(v))?;
    Some(Pick {
        release,
        set_cookie: c.sticky,
    })
}

/// The n-th draw of `0..100`: the fractional part of `n × φ`.
pub fn draw(n: u64) -> u32 {
    const PHI_FRACTION: f64 = 0.618_033_988_749_894_9;
    ((n as f64 * PHI_FRACTION).fract() * 100.0) as u32
}

/// The release a request to `routes` goes to, from its headers.
pub fn choose(routes: &AppRoutes, headers: &HeaderMap) -> Option<Pick> {
    let header = headers.get(RELEASE_HEADER).and_then(|v| v.to_str().ok());
    if header.is_none() && routes.canary.is_none() {
        return None;
    }
    let has = |v: u64| routes.backends.iter().any(|b| b.release == v);
    pick(
        routes.canary.as_ref(),
        has,
        header,
        cookie(headers),
        draw(routes.next_draw()),
    )
}

/// Marks an answer of an app with a canary: which release served it, and the sticky cookie.
pub fn mark<B>(resp: &mut hyper::Response<B>, routes: &AppRoutes, pick: Option<Pick>) {
    let (Some(_), Some(p)) = (routes.canary, pick) else {
        return;
    };
    resp.extensions_mut().insert(ServedBy(p.release));
    if p.set_cookie {
        let value = format!(
            "{RELEASE_COOKIE}=v{}; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax",
            p.release
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().append(SET_COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: CanaryRoute = CanaryRoute {
        version: 3,
        stable: 2,
        weight: 20,
        sticky: false,
    };
    const STICKY: CanaryRoute = CanaryRoute { sticky: true, ..C };

    fn p(release: u64, set_cookie: bool) -> Option<Pick> {
        Some(Pick {
            release,
            set_cookie,
        })
    }

    #[test]
    fn requests_go_by_header_then_cookie_then_share() {
        let both = |v: u64| v == 2 || v == 3;
        let only_stable = |v: u64| v == 2;
        let old_too = |v: u64| (1..=3).contains(&v);
        #[allow(clippy::type_complexity)]
        let cases: &[(
            Option<CanaryRoute>,
            &dyn Fn(u64) -> bool,
            Option<&str>,
            Option<&str>,
            u32,
            Option<Pick>,
        )] = &[
            // No canary, no header: every backend.
            (None, &both, None, None, 0, None),
            // The header reaches a release that has backends, canary or not.
            (None, &old_too, Some("v1"), None, 0, p(1, false)),
            (Some(C), &both, Some("v3"), None, 99, p(3, false)),
            (Some(C), &both, Some("2"), None, 0, p(2, false)),
            // A header naming a release without backends is ignored.
            (Some(C), &both, Some("v9"), None, 0, p(3, false)),
            (None, &both, Some("v9"), None, 0, None),
            (None, &both, Some("nonsense"), None, 0, None),
            // The share: draws below the weight go to the canary.
            (Some(C), &both, None, None, 0, p(3, false)),
            (Some(C), &both, None, None, 19, p(3, false)),
            (Some(C), &both, None, None, 20, p(2, false)),
            (Some(C), &both, None, None, 99, p(2, false)),
            // A canary not up yet: the stable release takes everything.
            (Some(C), &only_stable, None, None, 0, p(2, false)),
            // Sticky: a first visit gets the cookie; a cookie of either release holds.
            (Some(STICKY), &both, None, None, 50, p(2, true)),
            (Some(STICKY), &both, None, Some("v3"), 50, p(3, false)),
            (Some(STICKY), &both, None, Some("v2"), 0, p(2, false)),
            // A cookie of another release, or of one without backends, is drawn again.
            (Some(STICKY), &old_too, None, Some("v1"), 0, p(3, true)),
            (Some(STICKY), &only_stable, None, Some("v3"), 0, p(2, true)),
            // Without --sticky a cookie means nothing.
            (Some(C), &both, None, Some("v3"), 50, p(2, false)),
        ];
        for (i, (canary, has, header, cookie, draw, want)) in cases.iter().enumerate() {
            assert_eq!(
                pick(canary.as_ref(), has, *header, *cookie, *draw),
                *want,
                "case {i}"
            );
        }
    }

    #[test]
    fn draws_spread_evenly_over_any_run() {
        for start in [0u64, 1, 77, 1_000_003] {
            let below = (start..start + 500).filter(|&n| draw(n) < 20).count();
            assert!((98..=102).contains(&below), "{start}: {below}");
        }
        assert!((0..10_000).all(|n| draw(n) < 100));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; caas_release=v3; b=2"),
        );
        assert_eq!(cookie(&h), Some("v3"));
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("xcaas_release=v3"));
        assert_eq!(cookie(&h), None);
    }
}
