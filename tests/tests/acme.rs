//! Automatic certificates over ACME, end to end against Debian's pebble: `caas certs:auto on`
//! obtains a certificate for each custom domain with an HTTP-01 challenge that pebble really
//! validates through the gateway (pebble's DNS answers 127.0.0.1, its `httpPort` is the
//! gateway's); the certificate is then served by SNI and verifies against pebble's root. A name
//! pebble cannot reach fails with pebble's reason, shown by `caas certs`; a wildcard is
//! unsupported without a DNS-01 hook, and with one (`--acme-dns-hook`, here a script that
//! publishes the TXT record in pebble's DNS) it is obtained and served for any name under it. A
//! short-lived certificate is renewed on its own before it expires, and the renewed one is
//! served.

use caas_e2e::{test_image, Pebble, PebblePorts, Platform, TestCa};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

fn order<'a>(auto: &'a Value, host: &str) -> &'a Value {
    auto["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["hostname"] == host)
        .unwrap_or_else(|| panic!("no order for {host}: {auto}"))
}

/// A caasd with HTTPS that obtains certificates from the pebble on `ports` (started by the
/// test with `ca` once the gateway's port is known), with `more` flags.
fn acme_platform(dir: &std::path::Path, more: &[&str]) -> (Platform, TestCa, PebblePorts) {
    acme_platform_on(dir, PebblePorts::choose(), more)
}

/// As [`acme_platform`], for pebble on `ports` chosen by the caller.
fn acme_platform_on(
    dir: &std::path::Path,
    ports: PebblePorts,
    more: &[&str],
) -> (Platform, TestCa, PebblePorts) {
    let ca = TestCa::new(dir);
    let directory = ports.directory();
    let ca_file = ca.ca_path();
    let mut args = vec![
        "--https",
        "127.0.0.1:0",
        "--acme-directory",
        &directory,
        "--acme-ca-file",
        ca_file.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    (Platform::start_with(&args), ca, ports)
}

#[test]
fn certs_auto_obtains_certificates_from_pebble_and_says_why_one_failed() {
    let tmp = tempfile::tempdir().unwrap();
    // The account is registered with a contact (pebble refuses one that is not mailto:).
    let (p, ca, ports) = acme_platform(tmp.path(), &["--acme-email", "ops@acme.test"]);
    let directory = ports.directory();
    let pebble = Pebble::start(tmp.path(), &ca, ports, p.gateway().port());
    p.caas_ok(&["apps:create", "web"]);
    p.caas_ok(&["push", "--image", &test_image("web"), "-a", "web"]);
    for name in ["www.acme.test", "*.wild.test", "unreachable.acme.test"] {
        p.caas_ok(&["domains:add", name, "-a", "web"]);
    }
    // Pebble's validation of this one goes to an address nothing listens on.
    pebble.resolve("unreachable.acme.test", "127.0.0.2");

    let off = p.caas_ok(&["certs:auto", "-a", "web"]);
    assert!(off.contains("off"), "{off}");
    let bad = p.caas(&["certs:auto", "maybe", "-a", "web"]);
    assert_eq!(bad.code, 2, "{bad}");
    let on = p.caas_ok(&["certs:auto", "on", "-a", "web"]);
    assert!(on.contains("ACME"), "{on}");

    let auto = p.wait_for(WAIT, "both orders to finish", || {
        let auto = p.caas_json(&["certs:auto", "-a", "web", "--json"]);
        let done = |h: &str| order(&auto, h)["state"] != "pending";
        (done("www.acme.test") && done("unreachable.acme.test")).then_some(auto)
    });
    assert_eq!(auto["enabled"], true);
    assert_eq!(auto["directory"], directory.as_str());
    let www = order(&auto, "www.acme.test");
    assert_eq!(www["state"], "valid", "{auto}");
    let id = www["cert_id"]
        .as_str()
        .expect("a certificate id")
        .to_string();
    let failed = order(&auto, "unreachable.acme.test");
    assert_eq!(failed["state"], "failed", "{auto}");
    let why = failed["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(why.contains("refused"), "pebble's reason: {auto}");
    assert!(failed["next_try"].is_string(), "{auto}");
    assert_eq!(
        order(&auto, "*.wild.test")["state"],
        "unsupported",
        "{auto}"
    );

    // The certificate is the app's, obtained (source auto), and served by SNI: curl verifies it
    // against pebble's root for the name it asked for.
    let certs = p.caas_json(&["certs", "-a", "web", "--json"]);
    let cert = certs
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id.as_str())
        .unwrap_or_else(|| panic!("certificate {id} is not listed: {certs}"));
    assert_eq!(cert["source"], "auto");
    assert_eq!(cert["names"], serde_json::json!(["www.acme.test"]));
    let root = pebble.root_file();
    let body = p.wait_for(
        WAIT,
        "www.acme.test over HTTPS with pebble's certificate",
        || {
            let out = p.curl_https("www.acme.test", "/", &["--cacert", root.to_str().unwrap()]);
            (out.code == 0).then_some(out.stdout)
        },
    );
    assert!(body.starts_with("web"), "{body}");

    // caas certs says where each name stands, and why the failed one failed.
    let table = p.caas_ok(&["certs", "-a", "web"]);
    for word in [
        "auto",
        "valid",
        "failed",
        "unsupported",
        "unreachable.acme.test",
    ] {
        assert!(table.contains(word), "{word}: {table}");
    }
    assert!(table.to_lowercase().contains("refused"), "{table}");
    let events = p.caas_ok(&["logs", "-a", "web", "--source", "caas"]);
    assert!(
        events.contains("Obtained certificate") && events.contains("Could not obtain"),
        "{events}"
    );
}

/// A DNS-01 hook as an operator would write one for their DNS provider: this one publishes the
/// record in pebble's DNS through its management API, logs each call to `calls`, and fails, as a
/// provider would, for a zone it does not hold.
fn dns_hook(dir: &std::path::Path, dns: std::net::SocketAddr) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("dns-hook.sh");
    let calls = dir.join("calls");
    let script = format!(
        r#"#!/bin/sh
set -eu
echo "$1 $2" >> '{calls}'
case "$2" in *nozone*) echo "no zone holds $2" >&2; exit 1;; esac
case "$1" in
  present) curl -sS --fail -X POST -d "{{\"host\":\"$2\",\"value\":\"$3\"}}" http://{dns}/set-txt ;;
  cleanup) curl -sS --fail -X POST -d "{{\"host\":\"$2\"}}" http://{dns}/clear-txt ;;
  *) exit 2 ;;
esac
"#,
        calls = calls.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_wildcard_certificate_is_obtained_over_dns01_through_the_operators_hook() {
    let tmp = tempfile::tempdir().unwrap();
    let ports = PebblePorts::choose();
    let hook = dns_hook(tmp.path(), ports.dns_management());
    let (p, ca, ports) = acme_platform_on(
        tmp.path(),
        ports,
        &["--acme-dns-hook", hook.to_str().unwrap()],
    );
    let pebble = Pebble::start(tmp.path(), &ca, ports, p.gateway().port());
    p.caas_ok(&["apps:create", "web"]);
    p.caas_ok(&["push", "--image", &test_image("web"), "-a", "web"]);
    for name in ["*.wild.acme.test", "*.nozone.acme.test"] {
        p.caas_ok(&["domains:add", name, "-a", "web"]);
    }
    p.caas_ok(&["certs:auto", "on", "-a", "web"]);
    let auto = p.wait_for(WAIT, "both wildcard orders to finish", || {
        let auto = p.caas_json(&["certs:auto", "-a", "web", "--json"]);
        let done = |h: &str| order(&auto, h)["state"] != "pending";
        (done("*.wild.acme.test") && done("*.nozone.acme.test")).then_some(auto)
    });
    let wild = order(&auto, "*.wild.acme.test");
    assert_eq!(wild["state"], "valid", "{auto}");
    let id = wild["cert_id"].as_str().expect("a certificate id");
    // The hook's own words say why the other failed.
    let failed = order(&auto, "*.nozone.acme.test");
    assert_eq!(failed["state"], "failed", "{auto}");
    let why = failed["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("no zone holds _acme-challenge.nozone.acme.test."),
        "{auto}"
    );

    let certs = p.caas_json(&["certs", "-a", "web", "--json"]);
    let cert = certs
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("certificate {id} is not listed: {certs}"));
    assert_eq!(cert["names"], serde_json::json!(["*.wild.acme.test"]));
    // Any name under the wildcard is served with it, and it verifies against pebble's root.
    let root = pebble.root_file();
    let body = p.wait_for(WAIT, "shop.wild.acme.test over HTTPS", || {
        let out = p.curl_https(
            "shop.wild.acme.test",
            "/",
            &["--cacert", root.to_str().unwrap()],
        );
        (out.code == 0).then_some(out.stdout)
    });
    assert!(body.starts_with("web"), "{body}");
    // The record was published before validation and taken down after it.
    let calls = std::fs::read_to_string(tmp.path().join("calls")).unwrap();
    let lines: Vec<&str> = calls
        .lines()
        .filter(|l| l.contains("_acme-challenge.wild.acme.test."))
        .collect();
    assert_eq!(
        lines,
        [
            "present _acme-challenge.wild.acme.test.",
            "cleanup _acme-challenge.wild.acme.test."
        ],
        "{calls}"
    );
}

#[test]
fn a_dns01_hook_that_is_not_an_executable_stops_caasd_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hook.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    for (hook, says) in [
        (dir.path().join("missing"), "cannot use"),
        (script, "chmod +x"),
    ] {
        let out = std::process::Command::new(&caas_e2e::binaries().caasd)
            .args(["--data-dir", dir.path().to_str().unwrap()])
            .arg("--acme-dns-hook")
            .arg(&hook)
            .output()
            .expect("running caasd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
    assert!(!dir.path().join("db").exists());
}

#[test]
fn an_acme_email_that_is_not_one_address_stops_caasd_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(&caas_e2e::binaries().caasd)
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args(["--acme-email", "ops@example.com, boss@example.com"])
        .output()
        .expect("running caasd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid e-mail address") && stderr.contains("give one address"),
        "{stderr}"
    );
    // It stopped before making anything.
    assert!(!dir.path().join("db").exists());
}

#[test]
fn a_short_lived_certificate_is_renewed_before_it_expires_and_served() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, ca, ports) = acme_platform(tmp.path(), &[]);
    // 90 s of life: due for renewal at a third before its end, 60 s after it was issued.
    let pebble = Pebble::start_issuing_for(
        tmp.path(),
        &ca,
        ports,
        p.gateway().port(),
        Some(Duration::from_secs(90)),
    );
    p.caas_ok(&["apps:create", "brief"]);
    p.caas_ok(&["push", "--image", &test_image("brief"), "-a", "brief"]);
    p.caas_ok(&["domains:add", "renew.acme.test", "-a", "brief"]);
    p.caas_ok(&["certs:auto", "on", "-a", "brief"]);
    let cert_of = |auto: &Value| {
        let o = order(auto, "renew.acme.test");
        (o["state"] == "valid")
            .then(|| o["cert_id"].as_str().map(str::to_string))
            .flatten()
    };
    let first = p.wait_for(WAIT, "the first certificate", || {
        cert_of(&p.caas_json(&["certs:auto", "-a", "brief", "--json"]))
    });
    // It was issued before now, so it has expired 90 s from now.
    let first_expired = std::time::Instant::now() + Duration::from_secs(92);
    let expiry = |id: &str| {
        let certs = p.caas_json(&["certs", "-a", "brief", "--json"]);
        certs.as_array()?.iter().find(|c| c["id"] == id)?["not_after"]
            .as_str()
            .map(str::to_string)
    };
    let first_expiry = expiry(&first).expect("the first certificate is listed");
    // Renewed on its own, with nothing changed: a new certificate that ends later.
    let second = p.wait_for(Duration::from_secs(150), "the renewed certificate", || {
        cert_of(&p.caas_json(&["certs:auto", "-a", "brief", "--json"])).filter(|id| *id != first)
    });
    let second_expiry = expiry(&second).expect("the renewed certificate is listed");
    assert!(
        second_expiry > first_expiry,
        "{first_expiry} then {second_expiry}"
    );
    // Once the first has expired, the site still verifies against pebble's root: the renewed
    // one is served (curl refuses an expired certificate).
    std::thread::sleep(first_expired.saturating_duration_since(std::time::Instant::now()));
    let root = pebble.root_file();
    let out = p.curl_https(
        "renew.acme.test",
        "/",
        &["--cacert", root.to_str().unwrap()],
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.starts_with("brief"), "{out}");
    let events = p.caas_ok(&["logs", "-a", "brief", "--source", "caas"]);
    assert!(
        events.matches("Obtained certificate").count() >= 2,
        "{events}"
    );
}
