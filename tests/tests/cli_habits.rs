//! The Heroku habits: `caas ps:restart` and `ps:stop` replace instances with fresh ones,
//! `releases:info vN` shows a release in full (config keys, never values), `caas open` hands the
//! app's URL to a browser; and completions and man pages generated from the commands.

use caas_e2e::{binaries, run, test_image, Platform, CLI_TIMEOUT};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const APP: &str = "habits";
const WAIT: Duration = Duration::from_secs(120);

/// The id of the running instance `name` once it is up, if it is now.
fn up_id(p: &Platform, name: &str) -> Option<String> {
    p.ps(APP).into_iter().find_map(|i: Value| {
        (i["name"] == name && i["state"] == "up").then(|| i["id"].as_str().unwrap().to_string())
    })
}

#[test]
fn restart_stop_release_info_and_open_work_as_on_heroku() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", APP]);
    p.caas_ok(&["push", "--image", &test_image("habits"), "-a", APP]);
    let first = p.wait_for(WAIT, "web.1 up", || up_id(&p, "web.1"));

    // ps:restart web.1: a fresh web.1 replaces the old one.
    let out = p.caas_ok(&["ps:restart", "web.1", "-a", APP]);
    assert!(out.contains("Restarting web.1 of habits"), "{out}");
    let second = p.wait_for(WAIT, "a fresh web.1 up", || {
        up_id(&p, "web.1").filter(|id| *id != first)
    });
    // ps:stop web.1: it stops at once, and the formation starts another.
    let out = p.caas_ok(&["ps:stop", "web.1", "-a", APP]);
    assert!(out.contains("Stopping web.1 of habits"), "{out}");
    p.wait_for(WAIT, "another web.1 up", || {
        up_id(&p, "web.1").filter(|id| *id != second)
    });
    assert_eq!(
        p.caas_json(&["apps:info", "-a", APP, "--json"])["formation"]["web"],
        1
    );
    let logs = p.caas_ok(&["logs", "-a", APP, "--source", "caas", "-n", "200"]);
    assert!(logs.contains("Restarting web.1 (by admin)"), "{logs}");
    assert!(logs.contains("Stopping web.1 (by admin)"), "{logs}");
    // Bad targets: exit 2 for a malformed one, 4 for one that does not run.
    p.caas_code(2, &["ps:restart", "Web", "-a", APP]);
    p.caas_code(4, &["ps:stop", "web.9", "-a", APP]);
    p.caas_code(2, &["ps:stop", "-a", APP]);

    // releases:info: who, image, config keys but not values.
    p.caas_ok(&["config:set", "SECRET_KEY=not-for-eyes", "-a", APP]);
    let info = p.caas_ok(&["releases:info", "v2", "-a", APP]);
    for want in [
        "=== habits v2",
        "By:           admin",
        "Config keys:  SECRET_KEY",
        "Image:        caas/habits:",
    ] {
        assert!(info.contains(want), "{want:?} missing:\n{info}");
    }
    assert!(!info.contains("not-for-eyes"), "{info}");
    let v1 = p.caas_json(&["releases:info", "1", "-a", APP, "--json"]);
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["created_by"], "admin");
    assert_eq!(v1["config_keys"], serde_json::json!([]));
    p.caas_code(4, &["releases:info", "v9", "-a", APP]);
    p.caas_code(2, &["releases:info", "vx", "-a", APP]);

    // open: the URL goes to $BROWSER.
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("opened");
    let browser = dir.path().join("browser.sh");
    std::fs::write(
        &browser,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > {}\n", seen.display()),
    )
    .unwrap();
    run(
        Command::new("chmod").arg("+x").arg(&browser),
        None,
        CLI_TIMEOUT,
    );
    let mut cmd = p.caas_command(&["open", "-a", APP]);
    cmd.env("BROWSER", &browser);
    let out = run(&mut cmd, None, CLI_TIMEOUT);
    assert!(out.success(), "{out}");
    let url = p.caas_json(&["apps:info", "-a", APP, "--json"])["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), url);
    assert!(out.stdout.contains(&format!("Opening {url}")), "{out}");
}

#[test]
fn completions_and_man_pages_come_from_the_commands() {
    let caas = &binaries().caas;
    for shell in ["bash", "zsh", "fish"] {
        let out = run(
            Command::new(caas).args(["completions", shell]),
            None,
            CLI_TIMEOUT,
        );
        assert!(out.success(), "{shell}: {out}");
        for command in ["ps:restart", "releases:info", "apps:create", "open"] {
            assert!(out.stdout.contains(command), "{shell} lacks {command}");
        }
    }
    let bad = run(
        Command::new(caas).args(["completions", "tcsh"]),
        None,
        CLI_TIMEOUT,
    );
    assert_eq!(bad.code, 2, "{bad}");

    let dir = tempfile::tempdir().unwrap();
    let out = run(
        Command::new(caas).arg("man").arg(dir.path()),
        None,
        CLI_TIMEOUT,
    );
    assert!(out.success(), "{out}");
    let page = std::fs::read_to_string(dir.path().join("caas-ps:restart.1")).unwrap();
    assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
    assert!(page.contains("Replace instances with fresh ones"), "{page}");
    let top = std::fs::read_to_string(dir.path().join("caas.1")).unwrap();
    assert!(top.contains("releases:info"), "{top}");
    let pages = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(pages > 40, "only {pages} man pages");
}
