//! Rollouts as the server decides them: a release that does not come up fails (said once, with
//! why, by `caas push`, `git push`, `caas releases` and the logs), and changes nothing that runs;
//! config changes that change nothing make no release; the gateway's 503 says what is the case.

use caas_e2e::{docker, docker_ok, temp_dir_with, test_image, Platform};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const STACK: &str = "caas/stack:latest";

fn require_stack() {
    caas_e2e::require_docker();
    if !docker(&["image", "inspect", STACK]).success() {
        panic!("the stack image {STACK} is missing: build it with stack/build.sh (install.sh and .ci/run do)");
    }
}

/// `web.1 v1 up` for every instance of `app`.
fn states(p: &Platform, app: &str) -> Vec<String> {
    let ps = p.caas_json(&["ps", "-a", app, "--json"]);
    ps.as_array()
        .unwrap()
        .iter()
        .map(|i| format!("{} v{} {}", i["name"], i["release"], i["state"]).replace('"', ""))
        .collect()
}

fn body(p: &Platform, app: &str) -> Option<String> {
    match p.http_get(app, "/") {
        Ok((200, body)) => Some(body),
        _ => None,
    }
}

/// The container id of `app`'s running `instance` (`worker.1`) of `release` (`v1`).
fn container_of(p: &Platform, app: &str, release: &str, instance: &str) -> String {
    let running: Vec<_> = p
        .running_containers(app)
        .into_iter()
        .filter(|c| c.instance == instance && c.release == release)
        .collect();
    assert_eq!(running.len(), 1, "{running:?}");
    running[0].id.clone()
}

#[test]
fn a_failed_deploy_leaves_every_process_type_of_the_previous_release_running() {
    require_stack();
    let p = Platform::start();
    let v1 = temp_dir_with(&[
        (
            "Procfile",
            "web: busybox httpd -f -p $PORT -h /app/www\n\
             worker: while true; do echo tick; sleep 1; done\n",
        ),
        ("www/index.html", "release one\n"),
    ]);
    p.caas_ok(&["apps:create", "pair"]);
    p.caas_ok(&["push", v1.path().to_str().unwrap(), "-a", "pair"]);
    p.caas_ok(&["ps:scale", "worker=1", "-a", "pair"]);
    p.wait_for(WAIT, "web and worker of v1 up", || {
        (states(&p, "pair") == ["web.1 v1 up", "worker.1 v1 up"]).then_some(())
    });
    let worker = container_of(&p, "pair", "v1", "worker.1");

    // v2's web exits at once; its worker would run fine.
    let v2 = temp_dir_with(&[
        (
            "Procfile",
            "web: echo web of v2 gives up; exit 3\n\
             worker: while true; do echo tick two; sleep 1; done\n",
        ),
        ("www/index.html", "release two\n"),
    ]);
    let out = p.caas(&["push", v2.path().to_str().unwrap(), "-a", "pair"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains(
            "release v2 failed: web.1 crashed on start; the previous release keeps serving (v1)"
        ),
        "{out}"
    );

    // Nothing of v1 changed: the same worker container, the same release serving.
    assert_eq!(container_of(&p, "pair", "v1", "worker.1"), worker);
    let info = p.caas_json(&["apps:info", "-a", "pair", "--json"]);
    assert_eq!(info["release"], 1, "{info}");
    assert!(info["deploying"].is_null(), "{info}");
    p.wait_for(WAIT, "only v1's instances", || {
        (states(&p, "pair") == ["web.1 v1 up", "worker.1 v1 up"]).then_some(())
    });
    assert_eq!(body(&p, "pair").as_deref(), Some("release one\n"));

    let releases = p.caas_json(&["releases", "-a", "pair", "--json"]);
    assert_eq!(releases[0]["version"], 2);
    assert_eq!(releases[0]["status"], "failed");
    assert_eq!(releases[0]["current"], false);
    assert_eq!(releases[0]["error"], "web.1 crashed on start");
    assert_eq!(releases[1]["current"], true);
    let table = p.caas_ok(&["releases", "-a", "pair"]);
    assert!(table.contains("failed: web.1 crashed on start"), "{table}");
    let logs = p.caas_ok(&["logs", "-a", "pair", "-n", "1000"]);
    assert!(
        logs.contains("caas[deploy]: v2 failed: web.1 crashed on start; v1 keeps serving"),
        "{logs}"
    );
    assert!(logs.contains("app[web.1]: web of v2 gives up"), "{logs}");

    // A config change builds on the newest release asked for that has not failed: nothing
    // deploys, so on v1, the one serving.
    p.caas_ok(&["config:set", "GREETING=x", "-a", "pair"]);
    let info = p.caas_json(&["apps:info", "-a", "pair", "--json"]);
    assert_eq!(info["release"], 3, "{info}");
    assert_eq!(body(&p, "pair").as_deref(), Some("release one\n"));
}

#[test]
fn a_web_process_that_never_listens_fails_at_the_start_deadline_and_the_gateway_says_so() {
    let p = Platform::start_with(&["--start-timeout", "4s"]);
    p.caas_ok(&["apps:create", "mute"]);
    // The gateway learns of the app within moments.
    p.wait_for(WAIT, "the gateway to know the app", || {
        let (status, text) = p.http_get("mute", "/").ok()?;
        (status == 503
            && text.contains("mute has no release yet; deploy one with: caas push -a mute"))
        .then_some(())
    });

    // The demo image that sleeps instead of serving: up as a process, never listening.
    let good = test_image("never listens");
    let base = docker_ok(&["create", &good]).trim().to_string();
    let mute = format!("caas-test-mute:{}", std::process::id());
    docker_ok(&[
        "commit",
        "--change",
        r#"CMD ["/bin/busybox", "sleep", "3600"]"#,
        &base,
        &mute,
    ]);
    docker_ok(&["rm", &base]);
    let out = p.caas(&["push", "--image", &mute, "-a", "mute"]);
    let _ = docker(&["rmi", &mute]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains(
            "release v1 failed: not up within 4s (web.1 starting); \
             web.1's last check: health check: connection refused; no release is serving"
        ),
        "{out}"
    );
    // Not "no release yet": one was made, and the 503 says it failed and where to read why.
    p.wait_for(WAIT, "the gateway to say v1 failed", || {
        let (status, text) = p.http_get("mute", "/").ok()?;
        (status == 503
            && text.contains(
                "mute v1 did not come up, and no earlier release serves; \
                 see why with: caas releases:info v1 -a mute",
            ))
        .then_some(())
    });
    p.wait_for(WAIT, "the failed instance to go", || {
        p.running_containers("mute").is_empty().then_some(())
    });
    let ps = p.caas_ok(&["ps", "-a", "mute"]);
    assert!(!ps.contains("ps:scale web=1"), "web is already 1: {ps}");
    assert!(
        ps.contains("No instances: v1 of mute did not come up: not up within 4s"),
        "a release that failed is not 'no release yet': {ps}"
    );

    // Scaled to 0 after a good release: the 503 says that, not "scale up" when web is up.
    p.caas_ok(&["push", "--image", &good, "-a", "mute"]);
    assert_eq!(
        body(&p, "mute").as_deref().map(|b| &b[..13]),
        Some("never listens")
    );
    p.caas_ok(&["ps:scale", "web=0", "-a", "mute"]);
    p.wait_for(WAIT, "web=0 to show in the gateway", || {
        let (status, text) = p.http_get("mute", "/").ok()?;
        (status == 503 && text.contains("mute is scaled to web=0")).then_some(())
    });
}

#[test]
fn a_release_that_crashes_rejects_the_git_push_and_main_stays() {
    require_stack();
    let p = Platform::start();
    p.caas_ok(&["apps:create", "gitfail"]);
    let repo = temp_dir_with(&[
        ("Procfile", "web: busybox httpd -f -p $PORT -h /app/www\n"),
        ("www/index.html", "good commit\n"),
    ]);
    let dir = repo.path();
    // git with the CLI's environment, so its credential helper (`caas git:credential`) finds
    // the server and token, and without the machine's git config.
    let git = |args: &[&str]| {
        let base = p.caas_command(&[]);
        let mut cmd = std::process::Command::new("git");
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
        caas_e2e::run(&mut cmd, None, WAIT)
    };
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "."],
        &["commit", "-qm", "one"],
    ] {
        assert!(git(args).success(), "git {args:?}");
    }
    let mut remote = p.caas_command(&["git:remote", "-a", "gitfail"]);
    let out = caas_e2e::run(remote.current_dir(dir), None, WAIT);
    assert!(out.success(), "{out}");
    let out = git(&["push", "caas", "main"]);
    assert!(out.success(), "{out}");
    let good = git(&["rev-parse", "HEAD"]).stdout.trim().to_string();

    std::fs::write(dir.join("Procfile"), "web: echo nope; exit 3\n").unwrap();
    assert!(git(&["commit", "-qam", "two"]).success());
    let out = git(&["push", "caas", "main"]);
    assert!(
        !out.success(),
        "a release that crashes rejects the push: {out}"
    );
    assert!(
        out.stderr
            .contains("v2 failed: web.1 crashed on start; the previous release keeps serving (v1)"),
        "{out}"
    );
    // The server's main still names the commit that serves.
    let server_repo = p.data_dir().join("git/gitfail.git");
    let main = git(&[
        "--git-dir",
        server_repo.to_str().unwrap(),
        "rev-parse",
        "refs/heads/main",
    ]);
    assert_eq!(main.stdout.trim(), good, "{main}");
    assert_eq!(body(&p, "gitfail").as_deref(), Some("good commit\n"));
}

#[test]
fn config_changes_that_change_nothing_make_no_release() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "same"]);
    p.caas_ok(&["push", "--image", &test_image("same"), "-a", "same"]);
    let out = p.caas_ok(&["config:set", "A=1", "B=2", "-a", "same"]);
    assert!(
        out.contains("Setting A and B and restarting same... done, v2"),
        "{out}"
    );

    let out = p.caas_ok(&["config:set", "A=1", "-a", "same"]);
    assert!(
        out.contains("No change: A already has that value on same"),
        "{out}"
    );
    let out = p.caas_ok(&["config:unset", "NOPE", "-a", "same"]);
    assert!(out.contains("No change: NOPE is not set on same"), "{out}");
    let releases = p.caas_json(&["releases", "-a", "same", "--json"]);
    assert_eq!(releases.as_array().unwrap().len(), 2, "{releases}");

    // A change that is partly new is a change.
    let out = p.caas_ok(&["config:set", "A=1", "B=3", "-a", "same"]);
    assert!(out.contains("done, v3"), "{out}");

    // Nothing runs: no "restarting".
    p.caas_ok(&["ps:scale", "web=0", "-a", "same"]);
    let out = p.caas_ok(&["config:set", "C=1", "-a", "same"]);
    assert!(
        out.contains("Setting C on same... done, v4 (nothing runs"),
        "{out}"
    );
}
