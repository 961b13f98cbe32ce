//! Custom domains: an app answers at names of the user's own domain (exact and one-level
//! wildcards) besides `APP.DOMAIN`; a name belongs to one app; and the gateway's hardening
//! (duplicate Host, body limit) on the way.

use caas_e2e::{test_image, Platform};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// The body of `GET /` at `host` through the gateway when it answers 200 right now.
fn body_at(p: &Platform, host: &str) -> Option<String> {
    match p.http("GET", host, "/", &[], b"") {
        Ok(r) if r.status == 200 => Some(r.body),
        _ => None,
    }
}

fn status_at(p: &Platform, host: &str) -> u16 {
    p.http("GET", host, "/", &[], b"")
        .map(|r| r.status)
        .unwrap_or(0)
}

fn hostnames(p: &Platform, app: &str) -> Vec<String> {
    p.caas_json(&["domains", "-a", app, "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["hostname"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn custom_domains_route_by_host_exact_then_wildcard_then_app_domain() {
    let p = Platform::start();
    for app in ["alpha", "beta"] {
        p.caas_ok(&["apps:create", app]);
        p.caas_ok(&["push", "--image", &test_image(app), "-a", app]);
    }
    let out = p.caas_ok(&["domains:add", "www.example.test", "-a", "alpha"]);
    assert!(out.contains("Added www.example.test to alpha"), "{out}");
    assert!(
        out.contains("CNAME record www.example.test -> alpha.localhost"),
        "what to point DNS at: {out}"
    );
    let out = p.caas_ok(&["domains:add", "example.test", "-a", "alpha"]);
    assert!(out.contains("ALIAS"), "an apex cannot be a CNAME: {out}");
    p.caas_ok(&["domains:add", "*.Example.TEST.", "-a", "beta"]);

    // The exact name wins over the wildcard; the wildcard covers one level; APP.DOMAIN stays.
    p.wait_for(WAIT, "www.example.test to be alpha", || {
        body_at(&p, "www.example.test").filter(|b| b.starts_with("alpha"))
    });
    p.wait_for(WAIT, "api.example.test to be beta", || {
        body_at(&p, "api.example.test:8080").filter(|b| b.starts_with("beta"))
    });
    assert!(body_at(&p, "example.test").unwrap().starts_with("alpha"));
    assert!(body_at(&p, "alpha.localhost").unwrap().starts_with("alpha"));
    assert_eq!(status_at(&p, "a.b.example.test"), 404, "one level only");
    assert_eq!(status_at(&p, "www.other.test"), 404);

    assert_eq!(hostnames(&p, "alpha"), ["example.test", "www.example.test"]);
    let json = p.caas_json(&["domains", "-a", "beta", "--json"]);
    assert_eq!(json[0]["hostname"], "*.example.test");
    assert_eq!(json[0]["kind"], "wildcard");
    assert_eq!(json[0]["dns_target"], "beta.localhost");
    let table = p.caas_ok(&["domains", "-a", "alpha"]);
    assert!(
        table.contains("www.example.test") && table.contains("exact"),
        "{table}"
    );

    // A name belongs to one app; the conflict does not say whose it is.
    let out = p.caas_code(5, &["domains:add", "www.example.test", "-a", "beta"]);
    assert!(
        out.stderr.contains("already in use by another app"),
        "{out}"
    );
    assert!(!out.stderr.contains("alpha"), "names no other app: {out}");
    let out = p.caas_code(5, &["domains:add", "www.example.test", "-a", "alpha"]);
    assert!(
        out.stderr.contains("already one of alpha's domains"),
        "{out}"
    );

    // Removing the exact name hands the host to the wildcard, without a restart.
    p.caas_ok(&["domains:remove", "www.example.test", "-a", "alpha"]);
    p.wait_for(WAIT, "www.example.test to fall to the wildcard", || {
        body_at(&p, "www.example.test").filter(|b| b.starts_with("beta"))
    });
    p.caas_code(4, &["domains:remove", "www.example.test", "-a", "alpha"]);

    // A destroyed app lets go of its names: another app may take them.
    p.caas_ok(&["apps:destroy", "beta", "--confirm", "beta"]);
    p.caas_ok(&["domains:add", "*.example.test", "-a", "alpha"]);
    p.wait_for(WAIT, "the wildcard to be alpha's", || {
        body_at(&p, "api.example.test").filter(|b| b.starts_with("alpha"))
    });
}

#[test]
fn bad_domains_are_refused_with_one_line_and_change_nothing() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "keeper"]);
    p.caas_ok(&["apps:create", "other"]);
    p.caas_ok(&["domains:add", "www.keeper.test", "-a", "keeper"]);
    let long = format!("{}.test", "a".repeat(250));
    for (bad, says) in [
        ("bad_name!.test", "letters, digits and dashes"),
        (long.as_str(), "longer than 253"),
        ("nodots", "at least two labels"),
        ("a.*.test", "wildcard"),
        ("*.test", "wildcard"),
        ("10.0.0.1", "IP address"),
        ("localhost", "at least two labels"),
        ("other.localhost", "under the platform's domain"),
        ("*.localhost", "wildcard"),
        ("*.other.localhost", "under the platform's domain"),
        ("keeper.localhost", "keeper's own address"),
    ] {
        let out = p.caas_code(2, &["domains:add", bad, "-a", "keeper"]);
        assert!(out.stderr.contains(says), "{bad}: {out}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{bad}: {out}");
    }
    assert_eq!(hostnames(&p, "keeper"), ["www.keeper.test"]);
    assert!(hostnames(&p, "other").is_empty());
    p.caas_code(4, &["domains", "-a", "ghost"]);
}

#[test]
fn duplicate_hosts_and_bodies_over_the_limit_are_refused() {
    let p = Platform::start_with(&["--max-body", "1K"]);
    p.caas_ok(&["apps:create", "guarded"]);
    p.caas_ok(&["push", "--image", &test_image("guarded"), "-a", "guarded"]);
    let r = p
        .http(
            "GET",
            "guarded.localhost",
            "/",
            &[("Host", "x.localhost")],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 400, "{r:?}");
    let r = p
        .http("POST", "guarded.localhost", "/", &[], &[b'x'; 2048])
        .unwrap();
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.body.contains("1.0 KB"), "{r:?}");
    let r = p.http("GET", "guarded.localhost", "/", &[], b"").unwrap();
    assert_eq!(r.status, 200, "{r:?}");
}
