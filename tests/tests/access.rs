//! Per-app access rules: a denied client gets a 403 from the gateway (and a closed connection on
//! TCP routes: see tcp.rs); allow rules admit only their networks; bad CIDRs change nothing.

use caas_e2e::{test_image, Platform};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn status(p: &Platform, app: &str) -> u16 {
    p.http_get(app, "/").map(|r| r.0).unwrap_or(0)
}

fn cidrs(p: &Platform, app: &str) -> Vec<String> {
    p.caas_json(&["access-rules", "-a", app, "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["action"].as_str().unwrap(),
                r["cidr"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn a_deny_rule_refuses_its_clients_with_403_and_allow_rules_admit_only_theirs() {
    let p = Platform::start();
    for app in ["guarded", "open"] {
        p.caas_ok(&["apps:create", app]);
        p.caas_ok(&["push", "--image", &test_image(app), "-a", app]);
    }
    // The tests' client is 127.0.0.1.
    let out = p.caas_ok(&["access-rules:deny", "127.0.0.9/8", "-a", "guarded"]);
    assert!(out.contains("127.0.0.0/8"), "normalized: {out}");
    p.wait_for(WAIT, "a 403 for the denied client", || {
        (status(&p, "guarded") == 403).then_some(())
    });
    let (_, body) = p.http_get("guarded", "/").unwrap();
    assert!(
        body.contains("does not admit requests from this address"),
        "{body}"
    );
    assert_eq!(status(&p, "open"), 200, "other apps are not affected");
    p.wait_for(WAIT, "the refusal in the router log", || {
        p.caas_ok(&["logs", "-a", "guarded", "--source", "router"])
            .contains("status=403")
            .then_some(())
    });

    // Allow rules: only their networks get in; a deny still wins.
    p.caas_ok(&["access-rules:remove", "127.0.0.0/8", "-a", "guarded"]);
    p.caas_ok(&["access-rules:allow", "10.0.0.0/8", "-a", "guarded"]);
    p.wait_for(WAIT, "the allow list to keep 127.0.0.1 out", || {
        (status(&p, "guarded") == 403 && cidrs(&p, "guarded") == ["allow 10.0.0.0/8"]).then_some(())
    });
    p.caas_ok(&["access-rules:allow", "127.0.0.1", "-a", "guarded"]);
    p.wait_for(WAIT, "127.0.0.1 admitted", || {
        (status(&p, "guarded") == 200).then_some(())
    });
    p.caas_ok(&["access-rules:deny", "127.0.0.0/24", "-a", "guarded"]);
    p.wait_for(WAIT, "deny to win over allow", || {
        (status(&p, "guarded") == 403).then_some(())
    });
    let table = p.caas_ok(&["access-rules", "-a", "guarded"]);
    assert!(
        table.contains("deny") && table.contains("127.0.0.0/24"),
        "{table}"
    );

    // Bad input: one line, exit 2, nothing changed.
    let before = cidrs(&p, "guarded");
    for bad in [
        "10.0.0.0/33",
        "300.1.1.1",
        "nonsense",
        "10.0.0.0/x",
        "::/129",
    ] {
        let out = p.caas_code(2, &["access-rules:deny", bad, "-a", "guarded"]);
        assert!(out.stderr.contains("invalid CIDR"), "{bad}: {out}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
    }
    p.caas_code(5, &["access-rules:deny", "127.0.0.0/24", "-a", "guarded"]);
    p.caas_code(4, &["access-rules:remove", "192.0.2.0/24", "-a", "guarded"]);
    assert_eq!(cidrs(&p, "guarded"), before);
}
