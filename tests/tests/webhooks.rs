//! Builds from git hosting webhooks and deploy notifications, with no outside service: the git
//! host is `git http-backend` on loopback (behind a deploy token), the push events are signed as
//! GitHub, Gitea and GitLab sign them, and the notification receiver is a loopback server of
//! the test.

use caas_e2e::{
    docker_ok, http_request, run, temp_dir_with, test_image, GitHost, HookRequest, Platform,
    Receiver,
};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(180);
const TOKEN: &str = "glpat-test-deploy-token";

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn api_addr(p: &Platform) -> SocketAddr {
    p.api_url()
        .trim_start_matches("http://")
        .parse()
        .expect("the API listens on an IP address")
}

/// POSTs a push event to the app's webhook endpoint as a host would; `(status, answer)`.
fn deliver(p: &Platform, app: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    let r = http_request(
        api_addr(p),
        "POST",
        "caas",
        &format!("/v1/apps/{app}/webhooks/git"),
        &all,
        body,
        Duration::from_secs(60),
    )
    .expect("the API answers");
    let answer = serde_json::from_str(&r.body).unwrap_or(Value::String(r.body.clone()));
    (r.status, answer)
}

fn push_payload(branch: &str, commit: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": format!("refs/heads/{branch}"),
        "before": "0000000000000000000000000000000000000000",
        "after": commit,
        "repository": {"full_name": "acme/site"},
        "pusher": {"name": "t"},
    }))
    .unwrap()
}

fn github(p: &Platform, app: &str, secret: &str, delivery: &str, body: &[u8]) -> (u16, Value) {
    let sig = format!("sha256={}", hmac_hex(secret, body));
    deliver(
        p,
        app,
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", &sig),
        ],
        body,
    )
}

fn site(p: &Platform, work: &Path, text: &str) -> String {
    std::fs::write(work.join("index.html"), format!("<h1>{text}</h1>\n")).unwrap();
    p.git_ok(work, &["add", "."]);
    p.git_ok(work, &["commit", "-qm", text]);
    p.git_ok(work, &["push", "-q", "origin", "main"]);
    p.git_ok(work, &["rev-parse", "HEAD"])
        .stdout
        .trim()
        .to_string()
}

fn builds(p: &Platform, app: &str) -> Vec<Value> {
    match p.caas_json(&["builds", "-a", app, "--json"]) {
        Value::Array(b) => b,
        other => panic!("{other}"),
    }
}

/// `caas git:connect` with the deploy token in CAAS_GIT_TOKEN.
fn connect(p: &Platform, url: &str, token: &str, app: &str) -> caas_e2e::CmdOutput {
    let mut cmd = p.caas_command(&["git:connect", url, "--secret-from-env", "-a", app]);
    cmd.env("CAAS_GIT_TOKEN", token);
    run(&mut cmd, None, Duration::from_secs(120))
}

#[test]
fn signed_pushes_build_and_deploy_the_pushed_commit_once() {
    caas_e2e::require_stack();
    let p = Platform::start();
    p.caas_ok(&["apps:create", "hooksite"]);

    // The host: a bare repository behind a deploy token, and a clone of it to push from.
    let host_dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    p.git_ok(
        host_dir.path(),
        &["init", "-q", "--bare", "-b", "main", "site.git"],
    );
    let host = GitHost::start(host_dir.path(), TOKEN);
    p.git_ok(work.path(), &["init", "-q", "-b", "main"]);
    let bare = host_dir.path().join("site.git");
    p.git_ok(
        work.path(),
        &["remote", "add", "origin", bare.to_str().unwrap()],
    );
    let first = site(&p, work.path(), "first version");
    p.git_ok(work.path(), &["checkout", "-q", "-b", "feature"]);
    let feature = site_on(&p, work.path(), "feature", "a feature");
    p.git_ok(work.path(), &["checkout", "-q", "main"]);

    // Repositories caasd cannot clone are refused with why, and nothing is stored.
    let url = host.url("site.git");
    let bad: Vec<(String, &str, &str)> = vec![
        (url.clone(), "wrong-token", "authentication failed"),
        (host.url("nothing-here.git"), TOKEN, "not found"),
        (
            "http://127.0.0.1:1/site.git".into(),
            TOKEN,
            "could not be reached",
        ),
        ("ssh://git@127.0.0.1/site.git".into(), TOKEN, "https://"),
    ];
    for (u, token, says) in &bad {
        let out = connect(&p, u, token, "hooksite");
        assert_eq!(out.code, 2, "{u}: {out}");
        assert!(out.stderr.contains(says), "{u}: {out}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "one line: {out}");
    }
    let mut missing = p.caas_command(&["git:connect", &url, "--secret-from-env", "-a", "hooksite"]);
    missing.env_remove("CAAS_GIT_TOKEN");
    let out = run(&mut missing, None, Duration::from_secs(60));
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("CAAS_GIT_TOKEN"), "{out}");
    p.caas_code(4, &["git:connection", "-a", "hooksite"]);

    let out = connect(&p, &url, TOKEN, "hooksite");
    assert!(out.success(), "{out}");
    let secret = out
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Secret: "))
        .expect("the webhook secret is shown at connect")
        .to_string();
    assert!(
        out.stdout.contains("/v1/apps/hooksite/webhooks/git"),
        "{out}"
    );
    let shown = p.caas_ok(&["git:connection", "-a", "hooksite"]);
    assert!(
        shown.contains(&url) && shown.contains("set (not shown)"),
        "{shown}"
    );
    assert!(
        !shown.contains(&secret) && !shown.contains(TOKEN),
        "{shown}"
    );
    let json = p.caas_json(&["git:connection", "-a", "hooksite", "--json"]);
    assert!(json.get("webhook_secret").is_none(), "{json}");

    // Unsigned, wrongly signed, or signed with another token: 401, nothing built.
    let body = push_payload("main", &first);
    let (status, _) = deliver(&p, "hooksite", &[("X-GitHub-Event", "push")], &body);
    assert_eq!(status, 401);
    let (status, answer) = github(&p, "hooksite", "not-the-secret", "d-0", &body);
    assert_eq!(status, 401, "{answer}");
    let (status, _) = deliver(
        &p,
        "hooksite",
        &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "nope")],
        &body,
    );
    assert_eq!(status, 401);
    // A push to another branch is said and ignored.
    let (status, answer) = github(
        &p,
        "hooksite",
        &secret,
        "d-f",
        &push_payload("feature", &feature),
    );
    assert_eq!(status, 202, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("ignored"),
        "{answer}"
    );
    assert!(builds(&p, "hooksite").is_empty(), "nothing was built");

    // The signed push builds and deploys the pushed commit.
    let (status, answer) = github(&p, "hooksite", &secret, "d-1", &body);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["build"], 1, "{answer}");
    p.wait_for(WAIT, "the first version through the gateway", || {
        p.ok_body("hooksite")
            .filter(|b| b.contains("first version"))
    });
    // A redelivery, and the same commit in another delivery, build nothing more.
    let (status, answer) = github(&p, "hooksite", &secret, "d-1", &body);
    assert_eq!(status, 409, "{answer}");
    let (status, answer) = github(&p, "hooksite", &secret, "d-1b", &body);
    assert_eq!(status, 200, "{answer}");
    let listed = builds(&p, "hooksite");
    assert_eq!(listed.len(), 1, "{listed:?}");
    // The builder labels sources by kind first (`directory ...`), as for a `git push`.
    let label = format!("webhook github main@{}", &first[..7]);
    let source = listed[0]["source"].as_str().unwrap();
    assert!(source.ends_with(&label), "{source}");
    let table = p.caas_ok(&["builds", "-a", "hooksite"]);
    assert!(table.contains(&label), "{table}");
    let log = p.caas_ok(&["builds:output", "1", "-a", "hooksite"]);
    assert!(log.contains("-----> Building hooksite"), "{log}");

    // The next commit, pushed as Gitea sends it.
    let second = site(&p, work.path(), "second version");
    let body = push_payload("main", &second);
    let sig = hmac_hex(&secret, &body);
    let (status, answer) = deliver(
        &p,
        "hooksite",
        &[
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Delivery", "g-1"),
            ("X-Gitea-Signature", &sig),
        ],
        &body,
    );
    assert_eq!(status, 202, "{answer}");
    p.wait_for(WAIT, "the second version through the gateway", || {
        p.ok_body("hooksite")
            .filter(|b| b.contains("second version"))
    });
    let shown = p.caas_ok(&["git:connection", "-a", "hooksite"]);
    assert!(
        shown.contains(&second[..12]) && shown.contains("gitea"),
        "{shown}"
    );

    // Disconnected: push events find no connection and build nothing.
    p.caas_ok(&["git:disconnect", "-a", "hooksite"]);
    let (status, _) = github(
        &p,
        "hooksite",
        &secret,
        "d-9",
        &push_payload("main", &first),
    );
    assert_eq!(status, 404);
    assert_eq!(builds(&p, "hooksite").len(), 2);
    p.caas_code(4, &["git:disconnect", "-a", "hooksite"]);
    drop(host);
}

/// Commits on the checked-out branch `branch` and pushes it.
fn site_on(p: &Platform, work: &Path, branch: &str, text: &str) -> String {
    std::fs::write(work.join("index.html"), format!("<h1>{text}</h1>\n")).unwrap();
    p.git_ok(work, &["commit", "-qam", text]);
    p.git_ok(work, &["push", "-q", "origin", branch]);
    p.git_ok(work, &["rev-parse", "HEAD"])
        .stdout
        .trim()
        .to_string()
}

#[test]
fn notifications_are_signed_and_retried() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "notified"]);
    // Bad input: refused with one line, nothing added.
    let out = p.caas_code(2, &["webhooks:add", "ftp://127.0.0.1/x", "-a", "notified"]);
    assert!(out.stderr.contains("http"), "{out}");
    let out = p.caas_code(
        2,
        &[
            "webhooks:add",
            "http://127.0.0.1:9/x",
            "--events",
            "release,nope",
            "-a",
            "notified",
        ],
    );
    assert!(out.stderr.contains("unknown event"), "{out}");
    assert_eq!(
        p.caas_json(&["webhooks", "-a", "notified", "--json"]),
        json!([])
    );

    // The receiver fails the first delivery: it is retried.
    let receiver = Receiver::start(1);
    let out = p.caas_ok(&[
        "webhooks:add",
        &receiver.url(),
        "--events",
        "release",
        "-a",
        "notified",
    ]);
    let secret = signing_secret(&out);
    p.caas_code(5, &["webhooks:add", &receiver.url(), "-a", "notified"]);

    p.caas_ok(&["push", "--image", &test_image("notify"), "-a", "notified"]);
    let got = p.wait_for(WAIT, "the release event, retried", || {
        let r = receiver.received();
        (r.len() >= 2).then_some(r)
    });
    let (first, retry) = (&got[0], &got[1]);
    assert_eq!(first.body, retry.body, "a retry sends the same event");
    assert_eq!(
        first.header("x-caas-delivery"),
        retry.header("x-caas-delivery")
    );
    let sig = format!("sha256={}", hmac_hex(&secret, &retry.body));
    assert_eq!(retry.header("x-caas-signature-256"), Some(sig.as_str()));
    let event: Value = serde_json::from_slice(&retry.body).unwrap();
    assert_eq!(event["event"], "release", "{event}");
    assert_eq!(event["status"], "succeeded", "{event}");
    assert_eq!(event["app"], "notified", "{event}");
    assert_eq!(event["release"], 1, "{event}");

    let listed = p.wait_for(Duration::from_secs(30), "the delivery recorded", || {
        let l = p.caas_json(&["webhooks", "-a", "notified", "--json"]);
        (l[0]["deliveries"][0]["state"] == "delivered").then_some(l)
    });
    let d = &listed[0]["deliveries"][0];
    assert_eq!(d["attempts"], 2, "{listed}");
    assert_eq!(d["status"], 200, "{listed}");
    assert!(
        listed[0].get("secret").is_none(),
        "the secret is shown once: {listed}"
    );
    let table = p.caas_ok(&["webhooks", "-a", "notified"]);
    assert!(table.contains("delivered"), "{table}");

    p.caas_ok(&["webhooks:remove", &receiver.url(), "-a", "notified"]);
    p.caas_code(4, &["webhooks:remove", &receiver.url(), "-a", "notified"]);
    assert_eq!(
        p.caas_json(&["webhooks", "-a", "notified", "--json"]),
        json!([])
    );
}

/// The signing secret `webhooks:add` shows once.
fn signing_secret(out: &str) -> String {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Signing secret: "))
        .expect("the signing secret is shown once")
        .to_string()
}

/// The first request the receiver got for `event`, once its signature checked out; its body.
fn signed_event(p: &Platform, receiver: &Receiver, secret: &str, event: &str) -> Value {
    let r: HookRequest = p.wait_for(WAIT, &format!("a {event} event"), || {
        receiver
            .received()
            .into_iter()
            .find(|r| r.header("x-caas-event") == Some(event))
    });
    let sig = format!("sha256={}", hmac_hex(secret, &r.body));
    assert_eq!(
        r.header("x-caas-signature-256"),
        Some(sig.as_str()),
        "{r:?}"
    );
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["event"], event, "{body}");
    assert_eq!(r.header("x-caas-delivery"), body["id"].as_str(), "{body}");
    body
}

#[test]
fn failed_builds_and_crash_loops_are_notified_and_deliveries_outlive_a_kill_9() {
    let mut p = Platform::start();
    let app = "watched";
    p.caas_ok(&["apps:create", app]);
    let receiver = Receiver::start(0);
    let out = p.caas_ok(&[
        "webhooks:add",
        &receiver.url(),
        "--events",
        "build,crash",
        "-a",
        app,
    ]);
    let secret = signing_secret(&out);
    let base = test_image("watched");
    p.caas_ok(&["push", "--image", &base, "-a", app]);

    // A build that fails: its Dockerfile's RUN step exits 3.
    let broken = temp_dir_with(&[("Dockerfile", &format!("FROM {base}\nRUN exit 3\n"))]);
    p.caas_code(1, &["push", broken.path().to_str().unwrap(), "-a", app]);
    let build = signed_event(&p, &receiver, &secret, "build");
    assert_eq!(build["status"], "failed", "{build}");
    assert_eq!(build["app"], app, "{build}");
    assert_eq!(build["build"], 1, "{build}");
    assert!(
        build["text"]
            .as_str()
            .unwrap()
            .starts_with("Build 1 failed: "),
        "{build}"
    );

    // A crash loop: the instance's container is killed three times, each after it came back.
    for n in 1..=3u64 {
        let running = p.wait_for(WAIT, "one running container", || {
            let c = p.running_containers(app);
            (c.len() == 1).then_some(c)
        });
        docker_ok(&["kill", &running[0].id]);
        p.wait_for(WAIT, "the instance to be restarted", || {
            p.ps(app)
                .first()
                .is_some_and(|i| i["restarts"].as_u64() >= Some(n) && i["state"] == "up")
                .then_some(())
        });
    }
    let crash = signed_event(&p, &receiver, &secret, "crash");
    assert_eq!(crash["status"], "crash_loop", "{crash}");
    assert_eq!(crash["instance"], "web.1", "{crash}");
    assert!(
        crash["text"]
            .as_str()
            .unwrap()
            .starts_with("web.1 crashed: exited with status 137"),
        "{crash}"
    );
    assert_eq!(
        receiver
            .received()
            .iter()
            .filter(|r| r.header("x-caas-event") == Some("crash"))
            .count(),
        1,
        "a loop is said once"
    );

    // Both deliveries are listed, newest first, and still are after kill -9 and a restart.
    let listed = |p: &Platform| -> Vec<(String, String, String)> {
        p.caas_json(&["webhooks", "-a", app, "--json"])[0]["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
                (s("id"), s("event"), s("state"))
            })
            .collect()
    };
    let want = vec![
        (
            crash["id"].as_str().unwrap().to_string(),
            "crash".to_string(),
            "delivered".to_string(),
        ),
        (
            build["id"].as_str().unwrap().to_string(),
            "build".to_string(),
            "delivered".to_string(),
        ),
    ];
    p.wait_for(Duration::from_secs(30), "both deliveries recorded", || {
        (listed(&p) == want).then_some(())
    });
    p.kill9();
    p.restart();
    assert_eq!(listed(&p), want);
    let table = p.caas_ok(&["webhooks", "-a", app]);
    assert!(table.contains("delivered"), "{table}");
}
