//! TLS on the gateway's HTTPS listener: certificates the test makes (its own CA), picked by SNI
//! between apps, checked when added, replaced without a restart; redirect-https; the scheme the
//! client used reaches the app. curl is the client, verifying against the test's CA.

use caas_e2e::{echo_image, test_image, Platform, TestCa};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// The body of a verified HTTPS `GET` of `host`, when it succeeds right now.
fn verified(p: &Platform, ca: &TestCa, host: &str) -> Option<String> {
    let ca = ca.ca_path();
    let out = p.curl_https(host, "/", &["--cacert", ca.to_str().unwrap()]);
    (out.code == 0).then_some(out.stdout)
}

#[test]
fn https_picks_each_apps_certificate_by_sni_and_redirects_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = TestCa::new(tmp.path());
    let p = Platform::start_with(&["--https", "127.0.0.1:0"]);
    assert!(
        p.log_tail(200).contains("self-signed certificate"),
        "caasd says it serves a self-signed certificate"
    );
    for app in ["one", "two"] {
        p.caas_ok(&["apps:create", app]);
        p.caas_ok(&["push", "--image", &test_image(app), "-a", app]);
    }
    p.caas_ok(&["domains:add", "www.one.test", "-a", "one"]);
    p.caas_ok(&["domains:add", "*.two.test", "-a", "two"]);
    let one = ca.issue("one", &["www.one.test"], 30);
    let two = ca.issue("two", &["*.two.test"], 30);
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let out = p.caas_ok(&[
        "certs:add",
        &path(&one.cert_path),
        &path(&one.key_path),
        "-a",
        "one",
    ]);
    assert!(
        out.contains("Added certificate") && out.contains("www.one.test"),
        "{out}"
    );
    p.caas_ok(&[
        "certs:add",
        &path(&two.cert_path),
        &path(&two.key_path),
        "-a",
        "two",
    ]);

    // Each name gets its own app's certificate: curl checks it against the name it asked for.
    let body = p.wait_for(WAIT, "www.one.test over HTTPS", || {
        verified(&p, &ca, "www.one.test")
    });
    assert!(body.starts_with("one"), "{body}");
    let body = p.wait_for(WAIT, "api.two.test over HTTPS", || {
        verified(&p, &ca, "api.two.test")
    });
    assert!(body.starts_with("two"), "{body}");
    // APP.DOMAIN gets the platform's self-signed certificate, which the test's CA did not sign.
    assert!(verified(&p, &ca, "one.localhost").is_none());
    let out = p.curl_https("one.localhost", "/", &["-k"]);
    assert!(out.stdout.starts_with("one"), "{out}");

    // What caas certs says, and never a key.
    let listing = p.caas_ok(&["certs", "-a", "one", "--json"]);
    assert!(
        !listing.contains("PRIVATE KEY") && !listing.contains("key_pem"),
        "{listing}"
    );
    let json: serde_json::Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(json[0]["names"], serde_json::json!(["www.one.test"]));
    assert_eq!(json[0]["serves"], serde_json::json!(["www.one.test"]));
    assert_eq!(json[0]["source"], "uploaded");
    let id = json[0]["id"].as_str().unwrap().to_string();
    let table = p.caas_ok(&["certs", "-a", "one"]);
    assert!(table.contains(&id) && table.contains("days"), "{table}");

    // redirect-https: plain HTTP gets a 308 to the HTTPS listener; HTTPS is served.
    let out = p.caas_ok(&["domains:redirect-https", "on", "-a", "one"]);
    assert!(out.contains("redirected to HTTPS"), "{out}");
    let location = format!("https://www.one.test:{}/x?y=1", p.https().port());
    p.wait_for(WAIT, "a 308 to HTTPS", || {
        let r = p.http("GET", "www.one.test", "/x?y=1", &[], b"").ok()?;
        (r.status == 308 && r.header("location") == Some(location.as_str())).then_some(())
    });
    assert!(verified(&p, &ca, "www.one.test").is_some());
    let r = p.http("GET", "www.two.test", "/", &[], b"").unwrap();
    assert_eq!(r.status, 200, "other apps are not redirected");
    p.caas_ok(&["domains:redirect-https", "off", "-a", "one"]);
    p.wait_for(WAIT, "plain HTTP again", || {
        (p.http("GET", "www.one.test", "/", &[], b"").ok()?.status == 200).then_some(())
    });

    // Removing the certificate (by a name it is for) hands the name to the platform's.
    p.caas_ok(&["certs:remove", "www.one.test", "-a", "one"]);
    p.wait_for(WAIT, "the platform's certificate for www.one.test", || {
        verified(&p, &ca, "www.one.test").is_none().then_some(())
    });
    assert!(p
        .curl_https("www.one.test", "/", &["-k"])
        .stdout
        .starts_with("one"));
    p.caas_code(4, &["certs:remove", &id, "-a", "one"]);
}

#[test]
fn certificates_that_do_not_fit_are_refused_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = TestCa::new(tmp.path());
    let p = Platform::start();
    p.caas_ok(&["apps:create", "strict"]);
    p.caas_ok(&["domains:add", "www.strict.test", "-a", "strict"]);
    let good = ca.issue("good", &["www.strict.test"], 30);
    let other = ca.issue("other", &["www.other.test"], 30);
    let old = ca.issue("old", &["www.strict.test"], -1);
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    for (cert, key, says) in [
        (s(&junk), s(&good.key_path), "no certificate"),
        (s(&good.cert_path), s(&junk), "no private key"),
        (
            s(&good.cert_path),
            s(&other.key_path),
            "does not belong to the certificate",
        ),
        (
            s(&other.cert_path),
            s(&other.key_path),
            "none of which is strict's",
        ),
        (s(&old.cert_path), s(&old.key_path), "expired"),
        (s(&good.key_path), s(&good.key_path), "no certificate"),
        ("/nonexistent.pem".into(), s(&good.key_path), "cannot read"),
    ] {
        let out = p.caas_code(2, &["certs:add", &cert, &key, "-a", "strict"]);
        assert!(out.stderr.contains(says), "{cert} {key}: {out}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
    }
    assert_eq!(
        p.caas_json(&["certs", "-a", "strict", "--json"]),
        serde_json::json!([])
    );
    let (c, k) = (s(&good.cert_path), s(&good.key_path));
    p.caas_ok(&["certs:add", &c, &k, "-a", "strict"]);
    let out = p.caas_code(5, &["certs:add", &c, &k, "-a", "strict"]);
    assert!(out.stderr.contains("already"), "{out}");
}

#[test]
fn the_platform_certificate_is_replaced_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = TestCa::new(tmp.path());
    let first = ca.issue("platform", &["*.plat.test"], 30);
    let p = Platform::start_with(&[
        "--https",
        "127.0.0.1:0",
        "--tls-cert",
        first.cert_path.to_str().unwrap(),
        "--tls-key",
        first.key_path.to_str().unwrap(),
    ]);
    assert!(
        !p.log_tail(200).contains("self-signed"),
        "an operator's certificate is served"
    );
    p.caas_ok(&["apps:create", "site"]);
    p.caas_ok(&["push", "--image", &test_image("site"), "-a", "site"]);
    p.caas_ok(&["domains:add", "x.plat.test", "-a", "site"]);
    p.caas_ok(&["domains:add", "www.new.test", "-a", "site"]);
    let body = p.wait_for(WAIT, "x.plat.test with the platform's certificate", || {
        verified(&p, &ca, "x.plat.test")
    });
    assert!(body.starts_with("site"), "{body}");
    assert!(
        verified(&p, &ca, "www.new.test").is_none(),
        "not covered yet"
    );

    // The operator renews the certificate in place: the new one is served, caasd runs on.
    let pid = p.pid();
    let renewed = ca.issue("renewed", &["*.plat.test", "www.new.test"], 60);
    std::fs::copy(&renewed.key_path, &first.key_path).unwrap();
    std::fs::copy(&renewed.cert_path, &first.cert_path).unwrap();
    p.wait_for(WAIT, "the renewed certificate", || {
        verified(&p, &ca, "www.new.test")
    });
    assert!(verified(&p, &ca, "x.plat.test").is_some());
    assert_eq!(p.pid(), pid);
}

#[test]
fn the_app_is_told_which_scheme_the_client_used() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = TestCa::new(tmp.path());
    let p = Platform::start_with(&["--https", "127.0.0.1:0"]);
    p.caas_ok(&["apps:create", "scheme"]);
    p.caas_ok(&["push", "--image", &echo_image(), "-a", "scheme"]);
    p.caas_ok(&["domains:add", "www.scheme.test", "-a", "scheme"]);
    let cert = ca.issue("scheme", &["www.scheme.test"], 30);
    p.caas_ok(&[
        "certs:add",
        cert.cert_path.to_str().unwrap(),
        cert.key_path.to_str().unwrap(),
        "-a",
        "scheme",
    ]);
    let body = p.wait_for(WAIT, "the echo over HTTPS", || {
        verified(&p, &ca, "www.scheme.test")
    });
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https", "{seen}");
    assert_eq!(
        seen["headers"]["x-forwarded-port"],
        p.https().port().to_string(),
        "{seen}"
    );
    let out = p.curl_http("www.scheme.test", "/", &["-H", "X-Forwarded-Proto: https"]);
    let seen: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http", "{seen}");
    assert_eq!(seen["headers"]["x-real-ip"], "127.0.0.1", "{seen}");
}
