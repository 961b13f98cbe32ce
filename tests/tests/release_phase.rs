//! The release phase: a `release:` process runs once as a one-off before a new release takes
//! traffic; its output streams to the push (`caas push`, and `git push` as `remote:` lines);
//! a failure (from a build or a config change) is recorded as a failed release with the reason,
//! and the old release keeps serving, as the gateway shows; a config change waits for a release
//! phase longer than the CLI's request timeout, streaming its lines.

use caas_e2e::{temp_dir_with, Platform};
use serde_json::Value;

fn procfile(release: &str) -> String {
    format!("web: busybox httpd -f -p $PORT -h /app/www\nrelease: {release}\n")
}

fn body(p: &Platform, app: &str) -> Option<String> {
    match p.http_get(app, "/") {
        Ok((200, body)) => Some(body),
        _ => None,
    }
}

fn release(p: &Platform, app: &str, version: u64) -> Value {
    let all = p.caas_json(&["releases", "-a", app, "--json"]);
    all.as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == version)
        .unwrap_or_else(|| panic!("no v{version} in {all}"))
        .clone()
}

#[test]
fn a_failing_release_phase_keeps_the_old_release_serving() {
    caas_e2e::require_stack();
    let p = Platform::start();
    p.caas_ok(&["apps:create", "phased"]);
    let src = temp_dir_with(&[
        ("Procfile", &procfile("echo migrating to \"$MARK\"")),
        ("www/index.html", "release one\n"),
    ]);
    let dir = src.path().to_str().unwrap();
    p.caas_ok(&["config:set", "MARK=first", "-a", "phased"]);
    let out = p.caas(&["push", dir, "-a", "phased"]);
    assert_eq!(out.code, 0, "{out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("Running release command"), "{all}");
    assert!(
        all.contains("migrating to first"),
        "its output streams to the push: {all}"
    );
    assert_eq!(body(&p, "phased").as_deref(), Some("release one\n"));
    let logs = p.caas_ok(&["logs", "-a", "phased", "--ps", "release"]);
    assert!(logs.contains("migrating to first"), "{logs}");
    // The release phase is no process type to scale.
    let out = p.caas_code(2, &["ps:scale", "release=1", "-a", "phased"]);
    assert!(out.stderr.contains("release phase"), "{out}");

    // A release phase that fails: the release is recorded failed, the push says why, and the
    // gateway still serves release one.
    std::fs::write(src.path().join("www/index.html"), "release two\n").unwrap();
    std::fs::write(
        src.path().join("Procfile"),
        procfile("sh -c 'echo migration blew up >&2; exit 3'"),
    )
    .unwrap();
    let out = p.caas_code(1, &["push", dir, "-a", "phased"]);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("migration blew up"), "{all}");
    assert!(all.contains("exited with status 3"), "{all}");
    assert!(all.contains("keeps serving (v1)"), "{all}");
    let failed = release(&p, "phased", 2);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("status 3"),
        "{failed}"
    );
    assert_eq!(body(&p, "phased").as_deref(), Some("release one\n"));
    let info = p.caas_json(&["apps:info", "-a", "phased", "--json"]);
    assert_eq!(info["release"], 1, "{info}");
    assert!(p
        .ps("phased")
        .iter()
        .all(|i| i["release"] == 1 && i["process"] == "web"));

    // A config change runs the release phase of the serving release's image: it passes now
    // that MARK says so, and fails (changing nothing) otherwise.
    std::fs::write(
        src.path().join("Procfile"),
        procfile(
            "sh -c 'echo checking $MARK; [ \"$MARK\" != slow ] || sleep 35; test \"$MARK\" != bad'",
        ),
    )
    .unwrap();
    std::fs::write(src.path().join("www/index.html"), "release three\n").unwrap();
    let out = p.caas(&["push", dir, "-a", "phased"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(body(&p, "phased").as_deref(), Some("release three\n"));
    let out = p.caas_code(1, &["config:set", "MARK=bad", "-a", "phased"]);
    assert!(out.stderr.contains("exited with status 1"), "{out}");
    let info = p.caas_json(&["apps:info", "-a", "phased", "--json"]);
    assert_eq!(info["release"], 3, "{info}");
    let config = p.caas_json(&["config", "-a", "phased", "--json"]);
    assert_eq!(
        config["MARK"], "first",
        "the failed change changed nothing: {config}"
    );
    assert_eq!(body(&p, "phased").as_deref(), Some("release three\n"));
    p.caas_ok(&["config:set", "MARK=good", "-a", "phased"]);
    assert_eq!(body(&p, "phased").as_deref(), Some("release three\n"));

    // A release phase longer than the CLI's 30 s request timeout: the change streams its lines
    // and waits for it, as a push does.
    let out = p.caas(&["config:set", "MARK=slow", "-a", "phased"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stderr.contains("checking slow"), "{out}");
    let config = p.caas_json(&["config", "-a", "phased", "--json"]);
    assert_eq!(config["MARK"], "slow", "{config}");
    assert_eq!(body(&p, "phased").as_deref(), Some("release three\n"));
}

#[test]
fn git_push_streams_the_release_phase_as_remote_lines() {
    caas_e2e::require_stack();
    let p = Platform::start();
    p.caas_ok(&["apps:create", "gitphase"]);
    let src = temp_dir_with(&[
        ("Procfile", &procfile("sh -c 'echo db migrated; exit 0'")),
        ("www/index.html", "from git\n"),
    ]);
    let dir = src.path();
    p.git_ok(dir, &["init", "-q", "-b", "main"]);
    p.git_ok(dir, &["add", "."]);
    p.git_ok(
        dir,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "one",
        ],
    );
    p.caas_in(dir, &["git:remote", "-a", "gitphase"]);
    let out = p.git_ok(dir, &["push", "caas", "main"]);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("remote:") && l.contains("db migrated")),
        "{out}"
    );
    assert_eq!(body(&p, "gitphase").as_deref(), Some("from git\n"));
}
