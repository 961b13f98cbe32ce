//! Every kind of bad input gets a clear one-line message, a non-zero exit code a script can
//! trust, and changes nothing that is stored.

use caas_e2e::{test_image, Platform};
use serde_json::Value;

/// What the platform holds, as a user can see it.
fn snapshot(p: &Platform) -> Value {
    let apps = p.caas_json(&["apps", "--json"]);
    let mut releases = Vec::new();
    for app in apps.as_array().unwrap() {
        let name = app["name"].as_str().unwrap();
        releases.push(p.caas_json(&["releases", "-a", name, "--json"]));
    }
    serde_json::json!({"apps": apps, "releases": releases})
}

fn expect(p: &Platform, code: i32, args: &[&str], message: &str) {
    let out = p.caas_code(code, args);
    assert!(
        out.stderr.contains(message),
        "caas {}: expected {message:?} in stderr\n{out}",
        args.join(" ")
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "one line: {out}");
}

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "kept"]);
    p.caas_ok(&["push", "--image", &test_image("kept"), "-a", "kept"]);
    let before = snapshot(&p);

    // Names.
    expect(&p, 2, &["apps:create", "--", "-dash"], "invalid app name");
    for bad in [
        "Upper",
        "a",
        "dash-",
        "under_score",
        "dot.ted",
        "x23456789012345678901234567890x",
        "../etc",
    ] {
        expect(&p, 2, &["apps:create", bad], "invalid app name");
    }
    expect(
        &p,
        2,
        &["apps:create", "Upper"],
        "lowercase letters, digits and dashes",
    );
    // Duplicates.
    expect(&p, 5, &["apps:create", "kept"], "already exists");
    // Unknown apps, everywhere an app is named.
    for args in [
        &["apps:info", "-a", "ghost"][..],
        &["ps", "-a", "ghost"],
        &["logs", "-a", "ghost"],
        &["releases", "-a", "ghost"],
        &["ps:scale", "web=1", "-a", "ghost"],
        &["push", "--image", "whatever:1", "-a", "ghost"],
        &["apps:destroy", "-a", "ghost", "--confirm", "ghost"],
    ] {
        expect(&p, 4, args, "ghost");
    }
    // Scaling.
    expect(
        &p,
        2,
        &["ps:scale", "Web=1", "-a", "kept"],
        "invalid process type",
    );
    expect(
        &p,
        2,
        &["ps:scale", "web=-1", "-a", "kept"],
        "invalid count",
    );
    expect(
        &p,
        2,
        &["ps:scale", "web=lots", "-a", "kept"],
        "invalid count",
    );
    expect(&p, 2, &["ps:scale", "web", "-a", "kept"], "web");
    expect(
        &p,
        2,
        &["ps:scale", "worker=1", "-a", "kept"],
        "unknown process type \"worker\"",
    );
    expect(&p, 2, &["ps:scale", "web=21", "-a", "kept"], "from 0 to 20");
    // An image that exists nowhere.
    expect(
        &p,
        4,
        &["push", "--image", "caas-no-such-image:never", "-a", "kept"],
        "not found",
    );
    expect(&p, 2, &["push", "--image=-rf", "-a", "kept"], "-rf");
    // No app given.
    let out = p.caas(&["ps"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("-a APP"), "{out}");

    // Tokens: missing and wrong both say how to fix it.
    for token in [
        "",
        "caas_0000000000000000000000000000000000000000000000000000000000000000",
        "garbage",
    ] {
        let out = caas_e2e::run(
            p.caas_command(&["apps"]).env("CAAS_TOKEN", token),
            None,
            caas_e2e::CLI_TIMEOUT,
        );
        assert_eq!(out.code, 3, "token {token:?}: {out}");
        assert!(out.stderr.contains("caas login"), "{out}");
    }
    // Nothing reachable at the server address.
    let out = caas_e2e::run(
        p.caas_command(&["apps"])
            .env("CAAS_SERVER", "http://127.0.0.1:9"),
        None,
        caas_e2e::CLI_TIMEOUT,
    );
    assert_eq!(out.code, 6, "{out}");

    assert_eq!(snapshot(&p), before, "bad input changed what is stored");
    let formation = p.caas_json(&["apps:info", "-a", "kept", "--json"]);
    assert_eq!(formation["formation"]["web"], 1);
    assert!(p.http_get("kept", "/").is_ok_and(|(s, _)| s == 200));
}
