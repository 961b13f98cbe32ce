//! The rest of the Heroku workflow: `git push caas main`, config vars, releases and rollback.

use caas_e2e::{run, test_image, CmdOutput, Platform};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

fn ok_body(p: &Platform, app: &str) -> Option<String> {
    match p.http_get(app, "/") {
        Ok((200, body)) => Some(body),
        _ => None,
    }
}

/// `git ARGS` in `dir`, with the environment the CLI gets (so git's credential helper, which is
/// `caas git:credential`, finds the server and token) and no global git config of the machine.
fn git(p: &Platform, dir: &Path, args: &[&str]) -> CmdOutput {
    let base = p.caas_command(&[]);
    let mut cmd = Command::new("git");
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .args(args);
    run(&mut cmd, None, Duration::from_secs(300))
}

fn git_ok(p: &Platform, dir: &Path, args: &[&str]) -> CmdOutput {
    let out = git(p, dir, args);
    assert!(out.success(), "git {} failed\n{out}", args.join(" "));
    out
}

/// `caas ARGS` run inside `dir`.
fn caas_in(p: &Platform, dir: &Path, args: &[&str]) -> CmdOutput {
    let mut cmd = p.caas_command(args);
    cmd.current_dir(dir);
    run(&mut cmd, None, Duration::from_secs(300))
}

fn site(dir: &Path, text: &str) {
    std::fs::write(dir.join("index.html"), format!("<h1>{text}</h1>\n")).unwrap();
}

#[test]
fn git_push_builds_deploys_and_rejects_failed_builds() {
    let stack = caas_e2e::docker(&["image", "inspect", "caas/stack:latest"]);
    assert!(
        stack.success(),
        "the stack image is missing: build it with stack/build.sh"
    );
    let p = Platform::start();
    p.caas_ok(&["apps:create", "gitsite"]);
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path();
    git_ok(&p, dir, &["init", "-q", "-b", "main"]);
    site(dir, "first version");
    git_ok(&p, dir, &["add", "."]);
    git_ok(&p, dir, &["commit", "-qm", "first"]);

    let out = caas_in(&p, dir, &["git:remote", "-a", "gitsite"]);
    assert!(out.success(), "{out}");
    let config = std::fs::read_to_string(dir.join(".git/config")).unwrap();
    assert!(
        config.contains(&format!("{}/gitsite.git", p.api_url())),
        "{config}"
    );
    assert!(
        !config.contains(p.token()),
        "the token must not be in the repository's config: {config}"
    );

    let pushed = git_ok(&p, dir, &["push", "caas", "main"]);
    assert!(
        pushed.stderr.contains("remote: -----> "),
        "build output comes through the push: {pushed}"
    );
    assert!(pushed.stderr.contains("main -> main"), "{pushed}");
    let body = p.wait_for(WAIT, "the first version", || {
        ok_body(&p, "gitsite").filter(|b| b.contains("first version"))
    });
    assert!(body.contains("first version"));
    let first = git_ok(&p, dir, &["rev-parse", "HEAD"])
        .stdout
        .trim()
        .to_string();

    // A change.
    site(dir, "second version");
    git_ok(&p, dir, &["commit", "-qam", "second"]);
    git_ok(&p, dir, &["push", "caas", "main"]);
    p.wait_for(WAIT, "the second version", || {
        ok_body(&p, "gitsite").filter(|b| b.contains("second version"))
    });

    // A broken build: the push is rejected and the old body stays.
    std::fs::write(
        dir.join("package.json"),
        r#"{"name":"x","version":"1.0.0","dependencies":{"caas-no-such-package-xyz":"9.9.9"}}"#,
    )
    .unwrap();
    git_ok(&p, dir, &["add", "."]);
    git_ok(&p, dir, &["commit", "-qm", "broken"]);
    let rejected = git(&p, dir, &["push", "caas", "main"]);
    assert!(!rejected.success(), "{rejected}");
    assert!(
        rejected
            .stderr
            .contains("[remote rejected] main -> main (build failed)"),
        "{rejected}"
    );
    assert!(ok_body(&p, "gitsite").unwrap().contains("second version"));

    // Another branch: refused with the hint; BRANCH:main works; so does a force push.
    git_ok(&p, dir, &["checkout", "-qb", "feature"]);
    git_ok(&p, dir, &["reset", "-q", "--hard", &first]);
    let other = git(&p, dir, &["push", "caas", "feature"]);
    assert!(!other.success());
    assert!(
        other.stderr.contains("git push caas feature:main"),
        "{other}"
    );
    git_ok(&p, dir, &["push", "--force", "caas", "feature:main"]);
    p.wait_for(WAIT, "the first version again", || {
        ok_body(&p, "gitsite").filter(|b| b.contains("first version"))
    });

    // Without -a, inside the repository, the CLI finds the app from the remote.
    let releases = caas_in(&p, dir, &["releases", "--json"]);
    assert!(releases.success(), "{releases}");
    let releases: serde_json::Value = serde_json::from_str(&releases.stdout).unwrap();
    assert_eq!(releases.as_array().unwrap().len(), 3, "{releases}");
    let builds = p.caas_json(&["builds", "-a", "gitsite", "--json"]);
    assert!(
        builds[0]["source"]
            .as_str()
            .unwrap()
            .starts_with("git main@"),
        "{builds}"
    );
}

#[test]
fn git_push_bad_input() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "gitbad"]);
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path();
    git_ok(&p, dir, &["init", "-q", "-b", "main"]);
    site(dir, "x");
    git_ok(&p, dir, &["add", "."]);
    git_ok(&p, dir, &["commit", "-qm", "x"]);
    // Unknown app (with good credentials).
    let url = format!(
        "{}/nosuchapp.git",
        p.api_url()
            .replace("http://", &format!("http://caas:{}@", p.token()))
    );
    let out = git(&p, dir, &["push", &url, "main"]);
    assert!(!out.success());
    assert!(out.stderr.contains("no app named \"nosuchapp\""), "{out}");
    // No credentials at all, and a wrong token.
    let url = format!("{}/gitbad.git", p.api_url());
    let out = git(&p, dir, &["push", &url, "main"]);
    assert!(!out.success());
    // git asks for credentials (no helper here, no terminal to prompt on) and gives up.
    assert!(
        out.stderr.contains("could not read Username")
            || out.stderr.contains("Authentication failed"),
        "{out}"
    );
    let bad = format!(
        "{}/gitbad.git",
        p.api_url().replace("http://", "http://caas:wrong@")
    );
    let out = git(&p, dir, &["push", &bad, "main"]);
    assert!(!out.success());
    assert!(out.stderr.contains("caas login"), "{out}");
    // Outside a repository, git:remote says so.
    let empty = tempfile::tempdir().unwrap();
    let out = caas_in(&p, empty.path(), &["git:remote", "-a", "gitbad"]);
    assert_eq!(out.code, 2, "{out}");
    // Nothing was deployed.
    assert_eq!(
        p.caas_json(&["apps:info", "-a", "gitbad", "--json"])["release"],
        serde_json::Value::Null
    );
}

#[test]
fn config_changes_release_and_roll_out_and_rollback_restores() {
    let image = test_image("from the image");
    let p = Platform::start();
    p.caas_ok(&["apps:create", "configured"]);
    // Config before the first deploy is kept for it.
    p.caas_ok(&["config:set", "EARLY=yes", "-a", "configured"]);
    p.caas_ok(&["push", "--image", &image, "-a", "configured"]);
    assert!(ok_body(&p, "configured")
        .unwrap()
        .starts_with("from the image: web.1"));

    let out = p.caas_ok(&["config:set", "GREETING=from config", "-a", "configured"]);
    assert!(out.contains("v2"), "{out}");
    assert!(
        !out.contains("from config"),
        "values are never printed: {out}"
    );
    p.wait_for(WAIT, "the new config in the app's answer", || {
        ok_body(&p, "configured").filter(|b| b.starts_with("from config: web.1"))
    });
    // Values keep `=`, spaces and newlines exactly.
    let tricky = "a=b c\nsecond line";
    p.caas_ok(&[
        "config:set",
        &format!("TRICKY={tricky}"),
        "-a",
        "configured",
    ]);
    assert_eq!(
        p.caas_ok(&["config:get", "TRICKY", "-a", "configured"]),
        format!("{tricky}\n")
    );
    let all = p.caas_json(&["config", "-a", "configured", "--json"]);
    assert_eq!(all["EARLY"], "yes");
    assert_eq!(all["GREETING"], "from config");
    // Never in the logs.
    let logs = p.caas_ok(&["logs", "-a", "configured", "-n", "1000"]);
    assert!(!logs.contains("from config"), "{logs}");
    assert!(!logs.contains("second line"), "{logs}");

    let releases = p.caas_json(&["releases", "-a", "configured", "--json"]);
    let descriptions: Vec<&str> = releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["description"].as_str().unwrap())
        .collect();
    assert_eq!(
        descriptions,
        [
            "Set TRICKY config var",
            "Set GREETING config var",
            format!("Deploy image {image}").as_str()
        ]
    );

    // Roll back to v1: its image and its config (no GREETING).
    let out = p.caas_ok(&["rollback", "v1", "-a", "configured"]);
    assert!(out.contains("v4"), "{out}");
    p.wait_for(WAIT, "the old answer after the rollback", || {
        ok_body(&p, "configured").filter(|b| b.starts_with("from the image: web.1"))
    });
    let releases = p.caas_json(&["releases", "-a", "configured", "--json"]);
    assert_eq!(releases[0]["description"], "Rollback to v1");
    assert_eq!(
        p.caas(&["config:get", "GREETING", "-a", "configured"]).code,
        4
    );
    // Default rollback: the release before the current one (v3, with GREETING).
    p.caas_ok(&["rollback", "-a", "configured"]);
    p.wait_for(WAIT, "v3's config again", || {
        ok_body(&p, "configured").filter(|b| b.starts_with("from config: web.1"))
    });
    p.caas_ok(&["config:unset", "GREETING", "TRICKY", "-a", "configured"]);
    p.wait_for(WAIT, "the image's default again", || {
        ok_body(&p, "configured").filter(|b| b.starts_with("from the image"))
    });

    // Bad input changes nothing.
    let before = p.caas_json(&["releases", "-a", "configured", "--json"]);
    for (args, code, message) in [
        (
            &["config:set", "1BAD=x", "-a", "configured"][..],
            2,
            "invalid config key",
        ),
        (
            &["config:set", "NOEQUALS", "-a", "configured"],
            2,
            "KEY=VALUE",
        ),
        (
            &["config:set", "PORT=1", "-a", "configured"],
            2,
            "set by caas",
        ),
        (&["rollback", "v99", "-a", "configured"], 4, "v99"),
        (&["rollback", "vx", "-a", "configured"], 2, "vx"),
        (&["config:set", "A=b", "-a", "ghost"], 4, "ghost"),
    ] {
        let out = p.caas(args);
        assert_eq!(out.code, code, "caas {}: {out}", args.join(" "));
        assert!(
            out.stderr.contains(message),
            "caas {}: {out}",
            args.join(" ")
        );
    }
    assert_eq!(
        p.caas_json(&["releases", "-a", "configured", "--json"]),
        before
    );
}

#[test]
fn a_release_is_written_whole_even_when_caasd_is_killed_mid_change() {
    let image = test_image("atomic");
    let mut p = Platform::start();
    p.caas_ok(&["apps:create", "atomic"]);
    p.caas_ok(&["push", "--image", &image, "-a", "atomic"]);
    // Fire config changes and kill caasd while they are in flight, a few times.
    for round in 0..5 {
        let mut child = p
            .caas_command(&["config:set", &format!("ROUND={round}"), "-a", "atomic"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(5 + 7 * round as u64));
        p.kill9();
        let _ = child.kill();
        let _ = child.wait();
        p.restart();
        // Whatever happened, the config and the newest release agree...
        let config = p.caas_json(&["config", "-a", "atomic", "--json"]);
        let info = p.caas_json(&["apps:info", "-a", "atomic", "--json"]);
        let releases = p.caas_json(&["releases", "-a", "atomic", "--json"]);
        // (It may still be deploying: the app's release changes only once it is up.)
        let newest = info["deploying"]
            .as_u64()
            .or(info["release"].as_u64())
            .unwrap();
        assert_eq!(
            releases[0]["version"].as_u64().unwrap(),
            newest,
            "the newest release is the one serving or deploying"
        );
        let described = releases[0]["description"].as_str().unwrap().to_string();
        let value = config["ROUND"].as_str().map(str::to_string);
        if described.starts_with("Set ROUND") {
            assert!(
                value.is_some(),
                "release {newest} says ROUND was set but the config lacks it"
            );
        }
        if value.is_some() {
            let said = releases
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["description"] == "Set ROUND config var");
            assert!(
                said,
                "the config holds ROUND but no release recorded setting it"
            );
        }
        // ...versions have no gaps...
        let versions: Vec<u64> = releases
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["version"].as_u64().unwrap())
            .collect();
        assert_eq!(versions, (1..=newest).rev().collect::<Vec<_>>());
        // ...and the app answers.
        p.wait_for(WAIT, "the app to answer after the restart", || {
            ok_body(&p, "atomic")
        });
    }
}

/// `caas apps:rename OLD NEW` (issue 11): the URL, the git remote, a custom domain, config,
/// releases and logs follow the app to its new name, the old name stops answering, and a push
/// to the updated remote deploys. Bad input changes nothing.
#[test]
fn a_renamed_app_takes_its_url_remote_domain_config_and_logs_along() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "oldname"]);
    p.caas_ok(&["apps:create", "taken"]);
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path();
    git_ok(&p, dir, &["init", "-q", "-b", "main"]);
    site(dir, "before the rename");
    git_ok(&p, dir, &["add", "."]);
    git_ok(&p, dir, &["commit", "-qm", "first"]);
    assert!(caas_in(&p, dir, &["git:remote", "-a", "oldname"]).success());
    git_ok(&p, dir, &["push", "caas", "main"]);
    p.wait_for(WAIT, "the first version", || {
        ok_body(&p, "oldname").filter(|b| b.contains("before the rename"))
    });
    p.caas_ok(&["config:set", "GREETING=hello", "-a", "oldname"]);
    p.caas_ok(&["domains:add", "www.renamed.test", "-a", "oldname"]);

    // Bad input: an invalid name (2), an unknown app (4), a taken name (5); nothing changes.
    p.caas_code(2, &["apps:rename", "oldname", "Not_A_Name"]);
    p.caas_code(2, &["apps:rename", "oldname", "oldname"]);
    p.caas_code(4, &["apps:rename", "nosuchapp", "freshname"]);
    let taken = p.caas_code(5, &["apps:rename", "oldname", "taken"]);
    assert!(taken.stderr.contains("pick another name"), "{taken}");
    assert!(
        ok_body(&p, "oldname").is_some(),
        "still serves under its name"
    );

    let out = caas_in(&p, dir, &["apps:rename", "oldname", "newname"]);
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains("Renamed oldname to newname"), "{out}");
    assert!(out.stdout.contains("Git remote caas updated"), "{out}");
    let config = std::fs::read_to_string(dir.join(".git/config")).unwrap();
    assert!(
        config.contains(&format!("{}/newname.git", p.api_url())),
        "{config}"
    );
    assert!(ok_body(&p, "newname")
        .unwrap()
        .contains("before the rename"));
    p.wait_for(WAIT, "the old name to stop answering", || {
        matches!(p.http_get("oldname", "/"), Ok((404, _))).then_some(())
    });
    let domain = p.http("GET", "www.renamed.test", "/", &[], b"").unwrap();
    assert_eq!(
        domain.status, 200,
        "the custom domain follows: {}",
        domain.body
    );

    let vars = p.caas_json(&["config", "-a", "newname", "--json"]);
    assert_eq!(vars["GREETING"], "hello");
    let releases = p.caas_json(&["releases", "-a", "newname", "--json"]);
    assert!(
        releases
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["description"] == "Renamed from oldname" && r["status"] == "succeeded"),
        "{releases}"
    );
    let logs = p.caas_ok(&["logs", "-a", "newname", "-n", "300"]);
    assert!(logs.contains("App renamed from oldname"), "{logs}");
    assert!(logs.contains("App created by"), "lines from before: {logs}");
    p.caas_code(4, &["config", "-a", "oldname"]);
    let apps = p.caas_ok(&["apps"]);
    assert!(!apps.contains("oldname"), "{apps}");

    // The updated remote deploys.
    site(dir, "after the rename");
    git_ok(&p, dir, &["commit", "-qam", "second"]);
    git_ok(&p, dir, &["push", "caas", "main"]);
    p.wait_for(WAIT, "the second version at the new name", || {
        ok_body(&p, "newname").filter(|b| b.contains("after the rename"))
    });
    let builds = p.caas_json(&["builds", "-a", "newname", "--json"]);
    assert_eq!(builds.as_array().unwrap().len(), 2, "{builds}");
}
