//! The security suite: one test per threat, each saying what it tried and what happened. The
//! tally of cases tried and escapes found is kept in docs/security.md.

use caas_e2e::{run, test_image, CmdOutput, Platform, CLI_TIMEOUT};
use std::time::Duration;

/// `caas ARGS` with another user's (or scope's) token.
fn caas_as(p: &Platform, token: &str, args: &[&str]) -> CmdOutput {
    let mut cmd = p.caas_command(args);
    cmd.env("CAAS_TOKEN", token);
    run(&mut cmd, None, CLI_TIMEOUT)
}

/// The token a `users:add` or `tokens:create` printed (its last line).
fn token_of(out: &str) -> String {
    out.lines().last().expect("a token line").trim().to_string()
}

/// One attempt of the threat model: prints it, and checks the outcome is the refusal wanted.
fn attempt(p: &Platform, who: &str, token: &str, args: &[&str], want_code: i32, want: &str) {
    let out = caas_as(p, token, args);
    println!(
        "tried: {who}: caas {} -> exit {} {}",
        args.join(" "),
        out.code,
        out.stderr.trim()
    );
    assert_eq!(out.code, want_code, "{who}: caas {}\n{out}", args.join(" "));
    assert!(
        out.stderr.contains(want),
        "{who}: caas {}: wanted {want:?}\n{out}",
        args.join(" ")
    );
}

fn users(p: &Platform) -> (String, String) {
    let ann = token_of(&p.caas_ok(&["users:add", "ann"]));
    let bob = token_of(&p.caas_ok(&["users:add", "bob"]));
    (ann, bob)
}

#[test]
fn a_member_cannot_see_or_touch_an_app_not_theirs() {
    let p = Platform::start();
    let (ann, bob) = users(&p);
    let image = test_image("private");
    assert!(caas_as(&p, &ann, &["apps:create", "anns"]).success());
    assert!(caas_as(&p, &ann, &["push", "--image", &image, "-a", "anns"]).success());

    let listing = caas_as(&p, &bob, &["apps", "--json"]);
    assert_eq!(listing.stdout.trim(), "[]", "bob sees no app: {listing}");
    let missing = "no app named \"anns\"";
    for args in [
        &["apps:info", "anns"][..],
        &["ps", "-a", "anns"],
        &["ps:scale", "web=2", "-a", "anns"],
        &["logs", "-a", "anns"],
        &["releases", "-a", "anns"],
        &["config", "-a", "anns"],
        &["config:set", "X=1", "-a", "anns"],
        &["push", "--image", &image, "-a", "anns", "--no-wait"],
        &["rollback", "-a", "anns"],
        &["metrics", "-a", "anns"],
        &["drains", "-a", "anns"],
        &["access", "-a", "anns"],
        &["apps:destroy", "anns", "--confirm", "anns"],
    ] {
        attempt(&p, "bob on ann's app", &bob, args, 4, missing);
    }
    // Answers as for an app that does not exist at all: names do not leak.
    let ghost = caas_as(&p, &bob, &["ps", "-a", "ghost"]);
    assert_eq!(ghost.code, 4);
    // Git push as bob: the repository is not there for him.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "x").unwrap();
    let basic = format!(
        "http.extraHeader=Authorization: Basic {}",
        base64_basic(&bob)
    );
    let git = |args: &[&str]| {
        let mut all = vec!["-c", "credential.helper=", "-c", basic.as_str()];
        all.extend_from_slice(args);
        run(&mut p.git_command(dir.path(), &all), None, CLI_TIMEOUT)
    };
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "."],
        &["commit", "-qm", "x"],
    ] {
        assert!(git(args).success());
    }
    let url = format!("{}/anns.git", p.api_url());
    let pushed = git(&["push", &url, "main"]);
    println!("tried: bob: git push to anns -> {}", pushed.stderr.trim());
    assert!(!pushed.success(), "{pushed}");
    assert!(pushed.stderr.contains("no app named"), "{pushed}");
    // A member is no admin.
    attempt(&p, "bob", &bob, &["users:add", "eve"], 3, "only an admin");
    attempt(&p, "bob", &bob, &["hosts"], 3, "only an admin");

    // Given access, bob may; taken away, he may not again.
    attempt(
        &p,
        "bob",
        &bob,
        &["access:add", "bob", "-a", "anns"],
        4,
        missing,
    );
    p.caas_ok(&["access:add", "bob", "-a", "anns"]);
    let ps = caas_as(&p, &bob, &["ps", "-a", "anns"]);
    assert!(ps.success(), "{ps}");
    // A collaborator is no owner: it cannot hand the app on.
    attempt(
        &p,
        "bob, collaborator",
        &bob,
        &["access:add", "ann", "-a", "anns"],
        3,
        "owner or an admin",
    );
    assert!(caas_as(&p, &ann, &["access:remove", "bob", "-a", "anns"]).success());
    attempt(
        &p,
        "bob after removal",
        &bob,
        &["ps", "-a", "anns"],
        4,
        missing,
    );
}

fn base64_basic(token: &str) -> String {
    use std::io::Write;
    let mut out = Vec::new();
    let mut child = std::process::Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("x:{token}").as_bytes())
        .unwrap();
    use std::io::Read;
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    child.wait().unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn an_app_scoped_token_deploys_and_reads_its_app_only() {
    let p = Platform::start();
    let (ann, _) = users(&p);
    assert!(caas_as(&p, &ann, &["apps:create", "shop"]).success());
    assert!(caas_as(&p, &ann, &["apps:create", "blog"]).success());
    let out = caas_as(
        &p,
        &ann,
        &["tokens:create", "--description", "CI", "--app", "shop"],
    );
    assert!(out.success(), "{out}");
    let ci = token_of(&out.stdout);
    let image = test_image("scoped");
    let pushed = caas_as(&p, &ci, &["push", "--image", &image, "-a", "shop"]);
    assert!(pushed.success(), "the CI token deploys its app: {pushed}");
    assert!(caas_as(&p, &ci, &["logs", "-a", "shop"]).success());
    let only = "may only deploy to and read shop";
    attempt(
        &p,
        "CI token",
        &ci,
        &["config:set", "A=1", "-a", "shop"],
        3,
        only,
    );
    attempt(
        &p,
        "CI token",
        &ci,
        &["ps:scale", "web=3", "-a", "shop"],
        3,
        only,
    );
    attempt(&p, "CI token", &ci, &["apps:create", "other"], 3, only);
    attempt(&p, "CI token", &ci, &["tokens"], 3, only);
    attempt(
        &p,
        "CI token",
        &ci,
        &["ps", "-a", "blog"],
        4,
        "no app named \"blog\"",
    );
    attempt(
        &p,
        "CI token",
        &ci,
        &["push", "--image", &image, "-a", "blog", "--no-wait"],
        4,
        "no app named",
    );
}

#[test]
fn a_revoked_token_stops_at_once_open_log_streams_included() {
    let p = Platform::start();
    let (ann, _) = users(&p);
    assert!(caas_as(&p, &ann, &["apps:create", "tailed"]).success());
    let out = caas_as(&p, &ann, &["tokens:create", "--description", "laptop"]);
    let laptop = token_of(&out.stdout);
    let id = caas_as(&p, &ann, &["tokens", "--json"]).stdout;
    let tokens: serde_json::Value = serde_json::from_str(&id).unwrap();
    let laptop_id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["description"] == "laptop")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!id.contains(&laptop), "tokens never shows a secret");

    let mut tail = p.caas_command(&["logs", "-a", "tailed", "--tail"]);
    tail.env("CAAS_TOKEN", &laptop)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = tail.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(child.try_wait().unwrap().is_none(), "the tail is open");
    assert!(caas_as(&p, &ann, &["tokens:revoke", &laptop_id]).success());
    let ended = caas_e2e::wait_until(Duration::from_secs(15), "the tail to end", || {
        child.try_wait().unwrap()
    });
    println!("tried: a logs --tail whose token is revoked -> it ended ({ended})");
    attempt(
        &p,
        "revoked token",
        &laptop,
        &["ps", "-a", "tailed"],
        3,
        "missing or invalid token",
    );

    // Expired tokens stop too.
    let out = caas_as(
        &p,
        &ann,
        &["tokens:create", "--description", "brief", "--expires", "1s"],
    );
    let brief = token_of(&out.stdout);
    std::thread::sleep(Duration::from_millis(1500));
    attempt(&p, "expired token", &brief, &["apps"], 3, "expired");
}

#[test]
fn a_hundred_bad_tokens_from_one_address_are_answered_with_429() {
    let p = Platform::start();
    let api: std::net::SocketAddr = p.api_url().trim_start_matches("http://").parse().unwrap();
    let mut limited = 0;
    for i in 0..100 {
        let bearer = format!("Bearer caas_{i:064}");
        let r = caas_e2e::http_request(
            api,
            "GET",
            "127.0.0.1",
            "/v1/apps",
            &[("Authorization", bearer.as_str())],
            b"",
            Duration::from_secs(10),
        )
        .unwrap();
        if r.status == 429 {
            limited += 1;
            assert!(r.header("retry-after").is_some(), "429 says when to retry");
        } else {
            assert_eq!(r.status, 401);
        }
    }
    println!("tried: 100 bad tokens from one address -> {limited} answered 429");
    assert!(limited >= 70, "only {limited} of 100 were limited");
    // The right token from that address waits too: guessing is not rewarded.
    let out = p.caas(&["apps"]);
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("too many failed logins"), "{out}");
}

#[test]
fn users_access_and_the_audit_log_refuse_bad_input_and_record_who_did_what() {
    let p = Platform::start();
    let (ann, _) = users(&p);
    attempt(
        &p,
        "admin",
        p.token(),
        &["users:add", "ann"],
        5,
        "already exists",
    );
    attempt(
        &p,
        "admin",
        p.token(),
        &["users:add", "Bad Name"],
        2,
        "invalid user name",
    );
    attempt(
        &p,
        "admin",
        p.token(),
        &["users:remove", "admin", "--confirm", "admin"],
        2,
        "last admin",
    );
    assert!(caas_as(&p, &ann, &["apps:create", "audited"]).success());
    attempt(
        &p,
        "ann",
        &ann,
        &["access:add", "nobody", "-a", "audited"],
        4,
        "no user named",
    );
    assert!(caas_as(&p, &ann, &["access:add", "bob", "-a", "audited"]).success());
    attempt(
        &p,
        "ann",
        &ann,
        &["access:add", "bob", "-a", "audited"],
        5,
        "already has access",
    );
    assert!(caas_as(&p, &ann, &["config:set", "SECRET=hunter2", "-a", "audited"]).success());
    let log = caas_as(&p, &ann, &["audit", "-a", "audited", "--json"]);
    assert!(log.success(), "{log}");
    let entries: serde_json::Value = serde_json::from_str(&log.stdout).unwrap();
    let actions: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["config", "access:add", "apps:create"], "{log}");
    assert_eq!(entries[0]["user"], "ann");
    assert_eq!(entries[0]["address"], "127.0.0.1");
    assert!(
        !log.stdout.contains("hunter2"),
        "values never reach the log"
    );
    attempt(&p, "ann", &ann, &["audit"], 2, "only admins see every app");
    assert!(p.caas_ok(&["audit"]).contains("users:add"));
}

/// A raw request to the API, as a rogue agent would make it.
fn api(p: &Platform, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let addr: std::net::SocketAddr = p.api_url().trim_start_matches("http://").parse().unwrap();
    let bearer = format!("Bearer {token}");
    let r = caas_e2e::http_request(
        addr,
        method,
        "127.0.0.1",
        path,
        &[
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
        Duration::from_secs(30),
    )
    .unwrap();
    println!("tried: {method} {path} -> {} {}", r.status, r.body.trim());
    (r.status, r.body)
}

fn register(
    p: &Platform,
    token: &str,
    name: &str,
    address: &str,
    colocated: bool,
) -> (u16, String) {
    let body = serde_json::json!({
        "name": name, "address": address, "memory_mb": 1024, "cpus": 1,
        "port_min": 40000, "port_max": 40010, "colocated": colocated,
    });
    api(p, "POST", "/v1/agent/register", token, &body.to_string())
}

fn join_token(p: &Platform, name: &str, address: &str) -> String {
    let out = p.caas_ok(&["hosts:add", name, "--address", address]);
    let after = out.split("--join-token ").nth(1).expect("a token");
    after.split_whitespace().next().unwrap().to_string()
}

#[test]
fn a_rogue_agent_cannot_take_over_names_routes_logs_or_images() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "victim"]);
    p.caas_ok(&["push", "--image", &test_image("victim"), "-a", "victim"]);
    let ps = p.caas_json(&["ps", "-a", "victim", "--json"]);
    let victim_alloc = ps[0]["id"].as_str().unwrap().to_string();
    let release = p.caas_json(&["releases", "-a", "victim", "--json"]);
    let image_id = release[0]["image_id"].as_str().unwrap().to_string();

    // A join token is for one host, once.
    let token = join_token(&p, "evil", "127.0.0.1");
    let (status, _) = register(&p, &token, "local", "127.0.0.1", false);
    assert_eq!(status, 403, "a token for evil does not register local");
    let (status, _) = register(&p, &token, "evil", "127.0.0.1", true);
    assert_eq!(status, 403, "only the embedded agent is colocated");
    let (status, _) = register(&p, &token, "evil", "10.9.9.9", false);
    assert_eq!(status, 403, "not another address than the token's");
    let (status, body) = register(&p, &token, "evil", "127.0.0.1", false);
    assert_eq!(status, 200, "{body}");
    let agent_token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = register(&p, &token, "evil", "127.0.0.1", false);
    assert_eq!(status, 401, "a join token works once");
    // An address not named by the token must be the one it connects from.
    let unbound = {
        let out = p.caas_ok(&["hosts:add", "evil2"]);
        let after = out.split("--join-token ").nth(1).unwrap();
        after.split_whitespace().next().unwrap().to_string()
    };
    let (status, _) = register(&p, &unbound, "evil2", "10.9.9.9", false);
    assert_eq!(status, 403, "an address the agent does not connect from");

    // Reporting another host's instance up at the API's port: ignored.
    let api_port: u16 = p.api_url().rsplit(':').next().unwrap().parse().unwrap();
    let hb = serde_json::json!({"instances": [{
        "assignment_id": victim_alloc, "container_id": "x", "state": "up",
        "port": api_port, "container_addr": p.api_url().trim_start_matches("http://"),
        "restarts": 0, "since": "2026-01-01T00:00:00Z",
    }]});
    let (status, _) = api(
        &p,
        "POST",
        "/v1/agent/heartbeat",
        &agent_token,
        &hb.to_string(),
    );
    assert_eq!(status, 204);
    std::thread::sleep(Duration::from_secs(2));
    let ps = p.caas_json(&["ps", "-a", "victim", "--json"]);
    assert_eq!(ps.as_array().unwrap().len(), 1, "{ps}");
    assert_eq!(ps[0]["host"], "local", "{ps}");
    for _ in 0..5 {
        let body = p.body("victim");
        assert!(
            body.starts_with("victim"),
            "the app still answers itself: {body}"
        );
    }

    // Lines into an app not placed on it: dropped.
    let lines = serde_json::json!({"lines": [{"app": "victim", "line": {
        "ts": "2026-01-01T00:00:00Z", "source": "caas", "tag": "deploy",
        "text": "FORGED v9 is up",
    }}]});
    let (status, _) = api(
        &p,
        "POST",
        "/v1/agent/logs",
        &agent_token,
        &lines.to_string(),
    );
    assert_eq!(status, 204);
    let logs = p.caas_ok(&["logs", "-a", "victim"]);
    assert!(!logs.contains("FORGED"), "{logs}");

    // The image of an app not placed on it: refused.
    let (status, _) = api(
        &p,
        "GET",
        &format!("/v1/agent/images/{image_id}"),
        &agent_token,
        "",
    );
    assert_eq!(status, 403);

    // Removed, its credentials stop at once.
    p.caas_ok(&["hosts:remove", "evil", "--confirm", "evil"]);
    let (status, _) = api(
        &p,
        "GET",
        "/v1/agent/assignments?index=0&wait=0",
        &agent_token,
        "",
    );
    assert_eq!(status, 401);
}

#[test]
fn a_build_is_stopped_at_its_time_limit() {
    caas_e2e::require_stack();
    let p = Platform::start_with(&["--build-timeout", "3s"]);
    p.caas_ok(&["apps:create", "slow"]);
    let src = caas_e2e::temp_dir_with(&[("Dockerfile", "FROM caas/stack:latest\nRUN sleep 120\n")]);
    let started = std::time::Instant::now();
    let out = p.caas(&["push", src.path().to_str().unwrap(), "-a", "slow"]);
    println!(
        "tried: a build that sleeps 120 s under a 3 s limit -> exit {} after {:?}: {}",
        out.code,
        started.elapsed(),
        out.stderr.trim()
    );
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("took longer than 3s"), "{out}");
    // Its containers are gone.
    p.wait_for(
        Duration::from_secs(30),
        "the build's containers to go",
        || {
            let names = caas_e2e::docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
            (!names.contains(&format!("caas-build-{}-slow", p.cluster_id()))).then_some(())
        },
    );
}

#[test]
fn a_git_tree_bomb_is_refused_before_it_is_written_out() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "bomb"]);
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str], stdin: Option<&[u8]>| {
        let out = run(&mut p.git_command(dir.path(), args), stdin, CLI_TIMEOUT);
        assert!(out.success(), "git {args:?}: {out}");
        out.stdout.trim().to_string()
    };
    git(&["init", "-q", "-b", "main"], None);
    // One blob, then trees that name the level below ten times: 10^6 files in a few KB.
    let mut object = git(&["hash-object", "-w", "--stdin"], Some(b"boom\n"));
    let mut kind = "100644 blob";
    for _ in 0..6 {
        let listing: String = (0..10)
            .map(|i| format!("{kind} {object}\tn{i}\n"))
            .collect();
        object = git(&["mktree"], Some(listing.as_bytes()));
        kind = "040000 tree";
    }
    let commit = git(&["commit-tree", &object, "-m", "bomb"], None);
    git(&["update-ref", "refs/heads/main", &commit], None);
    let remote = p.caas_in(dir.path(), &["git:remote", "-a", "bomb"]);
    assert!(remote.success(), "{remote}");
    let started = std::time::Instant::now();
    let out = run(
        &mut p.git_command(dir.path(), &["push", "caas", "main"]),
        None,
        CLI_TIMEOUT,
    );
    println!(
        "tried: a git tree of a million files in a few KB -> refused after {:?}: {}",
        started.elapsed(),
        out.stderr
            .lines()
            .filter(|l| l.contains('!'))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("more than 100000 entries"), "{out}");
    let builds = p.caas_json(&["builds", "-a", "bomb", "--json"]);
    assert_eq!(builds, serde_json::json!([]), "nothing was built");
}
