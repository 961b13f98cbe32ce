//! Canary releases as a user runs them: a share of the requests goes to the canary, a header
//! reaches either release, a sticky cookie holds a browser, `ps`/`releases`/`metrics` show both
//! releases side by side, promote and abort change what serves without one failed request, an
//! `--auto` canary answering 500 is aborted while the serving release answers throughout, a
//! healthy one is promoted by itself, and `push --canary` builds a release that starts as a
//! canary instead of rolling out.

use caas_e2e::{http_request, temp_dir_with, test_image, Platform, DOMAIN};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

/// One answer: status, body, and whether the gateway made it itself (`x-caas-gateway`).
type Answer = (u16, String, bool);

/// Requests to `path` of an app, one after another, until finished.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Answer>>>,
    thread: Option<JoinHandle<()>>,
}

impl Load {
    fn start(gateway: SocketAddr, app: &str, path: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, v, host) = (stop.clone(), seen.clone(), format!("{app}.{DOMAIN}"));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let answer = match get(gateway, &host, path, &[]) {
                    Ok(a) => a,
                    Err(e) => (0, e.to_string(), false),
                };
                v.lock().unwrap().push(answer);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Load {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn finish(mut self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

fn get(
    gateway: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Answer> {
    let r = http_request(
        gateway,
        "GET",
        host,
        path,
        headers,
        b"",
        Duration::from_secs(10),
    )?;
    let made_by_gateway = r.header("x-caas-gateway").is_some();
    Ok((r.status, r.body, made_by_gateway))
}

/// `GET /` of `app` with extra headers; panics unless it answers 200. Returns the body and the
/// `Set-Cookie` header.
fn greet(p: &Platform, app: &str, headers: &[(&str, &str)]) -> (String, Option<String>) {
    let r = p
        .http("GET", &format!("{app}.{DOMAIN}"), "/", headers, b"")
        .expect("the gateway answers");
    assert_eq!(r.status, 200, "{r:?}");
    let cookie = r.header("set-cookie").map(str::to_string);
    (r.body, cookie)
}

/// Of `n` requests to `app` with no header, how many the canary answered; every other one must
/// be the stable release's.
fn to_canary(p: &Platform, app: &str, n: usize) -> usize {
    let mut count = 0;
    for _ in 0..n {
        let body = greet(p, app, &[]).0;
        if body.starts_with("canary: ") {
            count += 1;
        } else {
            assert!(body.starts_with("stable: "), "{body}");
        }
    }
    count
}

fn logs(p: &Platform, app: &str) -> String {
    p.caas_ok(&["logs", "-a", app, "--source", "caas", "-n", "200"])
}

/// The answers that are neither a 200 nor `also_fine`.
fn failures(seen: &[Answer], also_fine: impl Fn(&Answer) -> bool) -> Vec<&Answer> {
    seen.iter()
        .filter(|a| a.0 != 200 && !also_fine(a))
        .collect()
}

#[test]
fn a_canary_takes_its_share_and_is_promoted_or_aborted_without_a_failed_request() {
    let p = Platform::start();
    let app = "grey";
    p.caas_ok(&["apps:create", app]);
    // Replaced instances go quickly, so the test does not wait out 30 s drains.
    p.caas_ok(&["apps:settings:set", "drain=2s", "-a", app]);
    p.caas_ok(&["push", "--image", &test_image("canary"), "-a", app]);
    p.caas_ok(&["config:set", "GREETING=stable", "-a", app]);
    assert!(greet(&p, app, &[]).0.starts_with("stable: web.1"));

    // Bad input before any canary runs: one line, the right code, nothing changed.
    for (code, args, want) in [
        (
            2,
            vec!["--weight", "0"],
            "invalid --weight \"0\": give a percentage of requests from 1 to 99",
        ),
        (
            2,
            vec!["--weight", "100"],
            "invalid --weight \"100\": give a percentage of requests from 1 to 99",
        ),
        (
            2,
            vec!["--max-5xx-increase", "1"],
            "--max-5xx-increase is a threshold of --auto: add --auto",
        ),
        (
            4,
            vec!["v9"],
            "grey has no release v9: see caas releases -a grey",
        ),
        (
            5,
            vec!["v2"],
            "v2 is grey's serving release: a canary runs another one",
        ),
    ] {
        let mut all = vec!["releases:canary", "-a", app];
        all.extend(args);
        let out = p.caas_code(code, &all);
        assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
        assert!(out.stderr.contains(want), "{out}");
    }
    for cmd in ["releases:promote", "releases:abort"] {
        let out = p.caas_code(4, &[cmd, "-a", app]);
        assert_eq!(
            out.stderr.trim(),
            "error: grey runs no canary; start one with: caas releases:canary -a grey",
            "{out}"
        );
    }
    let out = p.caas_code(4, &["releases:canary:set", "--weight", "50", "-a", app]);
    assert!(out.stderr.contains("grey runs no canary"), "{out}");
    let releases = p.caas_json(&["releases", "-a", app, "--json"]);
    assert!(
        releases
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["canary"] == false),
        "{releases}"
    );

    // The newest release not serving is v1: it runs beside v2 with a fifth of the requests.
    let out = p.caas_ok(&["releases:canary", "--weight", "20", "-a", app]);
    assert!(
        out.contains("Started canary v1 of grey with 20% of requests beside v2: up"),
        "{out}"
    );
    p.wait_for(WAIT, "the gateway to route v1", || {
        greet(&p, app, &[("X-Caas-Release", "v1")])
            .0
            .starts_with("canary: ")
            .then_some(())
    });

    // A second canary, or a weight out of range, changes nothing.
    let out = p.caas_code(5, &["releases:canary", "v1", "-a", app]);
    assert_eq!(
        out.stderr.trim(),
        "error: grey already runs v1 as a canary with 20% of requests: promote or abort it first \
         (caas releases:promote / releases:abort -a grey)",
        "{out}"
    );
    let out = p.caas_code(2, &["releases:canary:set", "--weight", "-1", "-a", app]);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");

    // 500 requests: about a fifth reach the canary. With independent 20 % draws, 60..=140 is
    // 4.5 standard deviations (sd = sqrt(500 x 0.2 x 0.8) = 8.9) either side of 100: a chance
    // below 1e-5 of failing; the gateway's even spread keeps it far closer.
    let to_canary = to_canary(&p, app, 500);
    println!("measured: {to_canary} of 500 requests reached the 20% canary");
    assert!((60..=140).contains(&to_canary), "{to_canary} of 500");

    // The header reaches either release, whatever the share.
    for _ in 0..20 {
        assert!(greet(&p, app, &[("X-Caas-Release", "v1")])
            .0
            .starts_with("canary: "));
        assert!(greet(&p, app, &[("X-Caas-Release", "v2")])
            .0
            .starts_with("stable: "));
    }

    // Side by side in ps, releases and metrics.
    for cmd in ["ps", "releases", "metrics"] {
        let out = p.caas_ok(&[cmd, "-a", app]);
        assert!(
            out.contains("=== Canary v1 (20% of requests)"),
            "{cmd}: {out}"
        );
        let row = |v: &str, role: &str, weight: &str| {
            out.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() >= 5 && cols[0] == v && cols[1] == role && cols[2] == weight
            })
        };
        assert!(row("v2", "stable", "80%"), "{cmd}: {out}");
        assert!(row("v1", "canary", "20%"), "{cmd}: {out}");
    }
    let releases = p.caas_json(&["releases", "-a", app, "--json"]);
    assert_eq!(releases[1]["version"], 1);
    assert_eq!(releases[1]["canary"], true, "{releases}");

    let out = p.caas_ok(&["releases:canary:set", "--weight", "50", "-a", app]);
    assert!(
        out.contains("Canary v1 of grey now gets 50% of requests"),
        "{out}"
    );

    // Abort under continuous requests: none fails, and v2 alone answers after.
    let load = Load::start(p.gateway(), app, "/");
    p.wait_for(WAIT, "some requests", || (load.count() > 20).then_some(()));
    let out = p.caas_ok(&["releases:abort", "-a", app]);
    assert!(out.contains("Aborted canary v1 of grey"), "{out}");
    std::thread::sleep(Duration::from_secs(1));
    let seen = load.finish();
    assert_eq!(failures(&seen, |_| false), Vec::<&Answer>::new());
    for _ in 0..20 {
        assert!(greet(&p, app, &[]).0.starts_with("stable: "));
    }
    assert!(!p.caas_ok(&["ps", "-a", app]).contains("=== Canary"));

    // Sticky: the first answer sets a cookie, and the cookie holds the browser there.
    let out = p.caas_ok(&[
        "releases:canary",
        "v1",
        "--weight",
        "50",
        "--sticky",
        "-a",
        app,
    ]);
    assert!(out.contains("Started canary v1"), "{out}");
    p.wait_for(WAIT, "the gateway to route v1 again", || {
        greet(&p, app, &[("X-Caas-Release", "v1")])
            .0
            .starts_with("canary: ")
            .then_some(())
    });
    let (body, cookie) = greet(&p, app, &[]);
    let cookie = cookie.expect("a sticky canary sets its cookie");
    let pair = cookie.split(';').next().unwrap().to_string();
    let mine = if body.starts_with("canary: ") {
        "canary: "
    } else {
        "stable: "
    };
    assert_eq!(
        pair,
        format!("caas_release=v{}", if mine == "canary: " { 1 } else { 2 })
    );
    for _ in 0..20 {
        let (body, again) = greet(&p, app, &[("Cookie", &pair)]);
        assert!(body.starts_with(mine), "{body} with {pair}");
        assert_eq!(again, None, "a cookie that holds is not set again");
    }

    // Promote under continuous requests: v1 rolls out and serves, none fails.
    let load = Load::start(p.gateway(), app, "/");
    p.wait_for(WAIT, "some requests", || (load.count() > 20).then_some(()));
    let out = p.caas_ok(&["releases:promote", "-a", app]);
    assert!(
        out.contains("Promoting canary v1 of grey... done, v1 serves"),
        "{out}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let seen = load.finish();
    assert_eq!(failures(&seen, |_| false), Vec::<&Answer>::new());
    println!(
        "measured: {} requests during abort and promote, 0 failed",
        seen.len()
    );
    p.wait_for(WAIT, "v1 alone to answer", || {
        (0..10)
            .all(|_| greet(&p, app, &[]).0.starts_with("canary: "))
            .then_some(())
    });
    let releases = p.caas_json(&["releases", "-a", app, "--json"]);
    assert_eq!(releases[1]["version"], 1);
    assert_eq!(releases[1]["current"], true, "{releases}");
    let events = logs(&p, app);
    for want in [
        "caas[canary]: Canary v1 with 20% of requests beside v2",
        "caas[canary]: Canary v1 now gets 50% of requests",
        "caas[canary]: Aborted canary v1: its instances drain; v2 takes every request",
        "caas[canary]: Promoting canary v1: it rolls out now",
    ] {
        assert!(events.contains(want), "{want:?} in\n{events}");
    }
}

#[test]
fn an_auto_canary_answering_500_is_aborted_while_the_serving_release_answers() {
    let p = Platform::start();
    let app = "auto";
    p.caas_ok(&["apps:create", app]);
    p.caas_ok(&["apps:settings:set", "drain=2s", "-a", app]);
    p.caas_ok(&["push", "--image", &test_image("auto"), "-a", app]);
    // v2 answers 500 on /cgi-bin/health (its instances still come up: web's default check is
    // a TCP connect); v3 answers 200 again and serves.
    p.caas_ok(&["config:set", "HEALTH_STATUS=500", "-a", app]);
    p.caas_ok(&["config:unset", "HEALTH_STATUS", "-a", app]);
    assert_eq!(
        p.http_get(app, "/cgi-bin/health").unwrap().0,
        200,
        "v3 serves"
    );

    let load = Load::start(p.gateway(), app, "/cgi-bin/health");
    p.wait_for(WAIT, "some requests", || (load.count() > 10).then_some(()));
    let out = p.caas_ok(&[
        "releases:canary",
        "--weight",
        "30",
        "--auto",
        "--max-5xx-increase",
        "5",
        "--max-p95-increase",
        "500ms",
        "--promote-after",
        "10m",
        "--min-requests",
        "10",
        "--no-wait",
        "-a",
        app,
    ]);
    assert!(
        out.contains("Starting canary v2 of auto with 30% of requests beside v3"),
        "{out}"
    );
    let want =
        "caas[canary]: Aborted canary v2: its 5xx rate 100.0% is 100.0 points above v3's 0.0% \
                (--max-5xx-increase 5); v3 keeps serving (canary v2 5xx 100.0%";
    p.wait_for(WAIT, "the judge to abort v2", || {
        logs(&p, app).contains(want).then_some(())
    });
    // Its instances leave the routes: twenty answers in a row from v3.
    p.wait_for(WAIT, "v3 alone to answer", || {
        (0..20)
            .all(|_| {
                p.http_get(app, "/cgi-bin/health")
                    .is_ok_and(|(s, _)| s == 200)
            })
            .then_some(())
    });
    let seen = load.finish();
    // The canary's own 500s are what it was judged by; everything else was v3's 200.
    let canary_500s = seen.iter().filter(|a| a.0 == 500 && !a.2).count();
    println!(
        "measured: {} requests, {canary_500s} answered 500 by the canary before it was aborted",
        seen.len()
    );
    assert!(
        canary_500s >= 10,
        "judged after --min-requests: {canary_500s}"
    );
    assert_eq!(
        failures(&seen, |a| a.0 == 500 && !a.2),
        Vec::<&Answer>::new()
    );

    let out = p.caas_code(4, &["releases:abort", "-a", app]);
    assert!(out.stderr.contains("auto runs no canary"), "{out}");
    let releases = p.caas_json(&["releases", "-a", app, "--json"]);
    assert_eq!(releases[0]["version"], 3);
    assert_eq!(releases[0]["current"], true, "{releases}");
    assert!(
        releases
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["canary"] == false),
        "{releases}"
    );
}

#[test]
fn a_healthy_auto_canary_is_promoted_and_the_old_release_drains() {
    let p = Platform::start();
    let app = "ripe";
    p.caas_ok(&["apps:create", app]);
    p.caas_ok(&["apps:settings:set", "drain=2s", "-a", app]);
    p.caas_ok(&["push", "--image", &test_image("ripe"), "-a", app]);
    p.caas_ok(&["config:set", "GREETING=stable", "-a", app]);
    assert!(greet(&p, app, &[]).0.starts_with("stable: "));

    // v1 (the image's own greeting) runs beside v2 with half the requests; it stays healthy,
    // so the judge promotes it once --promote-after has passed. The margins are wide: this is
    // about promotion, not about a busy machine's latency.
    let load = Load::start(p.gateway(), app, "/");
    let out = p.caas_ok(&[
        "releases:canary",
        "--weight",
        "50",
        "--auto",
        "--max-5xx-increase",
        "50",
        "--max-p95-increase",
        "5s",
        "--promote-after",
        "5s",
        "--min-requests",
        "5",
        "-a",
        app,
    ]);
    assert!(
        out.contains("Started canary v1 of ripe with 50% of requests beside v2: up"),
        "{out}"
    );
    let want = "caas[canary]: Promoting canary v1: healthy for 5s (--promote-after); it rolls \
                out now (canary v1 5xx 0.0% p95 ";
    let events = p.wait_for(WAIT, "the judge to promote v1", || {
        let l = logs(&p, app);
        l.contains(want).then_some(l)
    });
    let line = events.lines().find(|l| l.contains(want)).unwrap();
    assert!(line.contains("; stable v2 5xx 0.0% p95 "), "{line}");
    p.wait_for(WAIT, "v1 to serve", || {
        let releases = p.caas_json(&["releases", "-a", app, "--json"]);
        let v1 = releases.as_array()?.iter().find(|r| r["version"] == 1)?;
        (v1["current"] == true).then_some(())
    });
    // The old release drains and goes; v1 alone answers.
    p.wait_for(WAIT, "v2's instances to go", || {
        p.ps(app).iter().all(|i| i["release"] == 1).then_some(())
    });
    p.wait_for(WAIT, "v1 alone to answer", || {
        (0..10)
            .all(|_| greet(&p, app, &[]).0.starts_with("ripe: "))
            .then_some(())
    });
    let seen = load.finish();
    println!(
        "measured: {} requests while the auto canary ran and was promoted, {} failed",
        seen.len(),
        failures(&seen, |_| false).len()
    );
    assert_eq!(failures(&seen, |_| false), Vec::<&Answer>::new());
    assert!(p
        .caas_code(4, &["releases:promote", "-a", app])
        .stderr
        .contains("ripe runs no canary"));
}

/// The one line a refused push ends with (it says what it packed and uploaded before).
fn error_line(out: &caas_e2e::CmdOutput) -> &str {
    out.stderr.trim().lines().last().unwrap_or_default()
}

/// `caas builds -a APP --json`, as a list.
fn builds(p: &Platform, app: &str) -> Vec<serde_json::Value> {
    p.caas_json(&["builds", "-a", app, "--json"])
        .as_array()
        .cloned()
        .expect("builds are a list")
}

#[test]
fn a_pushed_canary_is_built_and_held_beside_the_serving_release_until_promoted() {
    let p = Platform::start();
    let app = "pushed";
    p.caas_ok(&["apps:create", app]);
    p.caas_ok(&["apps:settings:set", "drain=2s", "-a", app]);
    let base = test_image("stable");
    // The changed app: the same image with another greeting, built from a Dockerfile.
    let changed = temp_dir_with(&[("Dockerfile", &format!("FROM {base}\nENV GREETING=canary\n"))]);
    let dir = changed.path().to_str().unwrap();

    // Bad input: one line, the right code, no build and no release.
    for (code, args, want) in [
        (
            5,
            vec!["--canary"],
            "error: pushed has no serving release for a canary to run beside: deploy one first",
        ),
        (
            2,
            vec!["--canary", "--weight", "0"],
            "error: invalid --weight \"0\": give a percentage of requests from 1 to 99",
        ),
        (
            2,
            vec!["--canary", "--weight", "100"],
            "error: invalid --weight \"100\": give a percentage of requests from 1 to 99",
        ),
    ] {
        let mut all = vec!["push", dir, "-a", app];
        all.extend(args);
        let out = p.caas_code(code, &all);
        assert_eq!(error_line(&out), want, "{out}");
    }
    let out = p.caas_code(2, &["push", dir, "--weight", "20", "-a", app]);
    assert!(out.stderr.contains("--canary"), "{out}");
    assert!(builds(&p, app).is_empty());
    assert_eq!(
        p.caas_json(&["releases", "-a", app, "--json"]),
        serde_json::json!([])
    );

    p.caas_ok(&["push", "--image", &base, "-a", app]);
    assert!(greet(&p, app, &[]).0.starts_with("stable: "));

    // Built and recorded as v2, then started as a 20 % canary instead of rolling out.
    let out = p.caas_ok(&["push", dir, "--canary", "--weight", "20", "-a", app]);
    assert!(
        out.contains("-----> Started v2 with 20% of requests beside v1 (build 1) as a canary"),
        "{out}"
    );
    assert!(
        out.contains("Started canary v2 of pushed with 20% of requests: up"),
        "{out}"
    );
    let releases = p.caas_json(&["releases", "-a", app, "--json"]);
    assert_eq!(releases[0]["version"], 2, "{releases}");
    assert_eq!(releases[0]["status"], "held", "{releases}");
    assert_eq!(releases[0]["canary"], true, "{releases}");
    assert_eq!(releases[1]["current"], true, "{releases}");
    p.wait_for(WAIT, "the gateway to route v2", || {
        greet(&p, app, &[("X-Caas-Release", "v2")])
            .0
            .starts_with("canary: ")
            .then_some(())
    });

    // Both answer: by weight, and by header.
    let to_canary = to_canary(&p, app, 200);
    println!("measured: {to_canary} of 200 requests reached the pushed 20% canary");
    assert!((20..=60).contains(&to_canary), "{to_canary} of 200");
    for _ in 0..10 {
        assert!(greet(&p, app, &[("X-Caas-Release", "v1")])
            .0
            .starts_with("stable: "));
        assert!(greet(&p, app, &[("X-Caas-Release", "v2")])
            .0
            .starts_with("canary: "));
    }

    // A second pushed canary while this one runs: refused before it builds.
    let out = p.caas_code(5, &["push", dir, "--canary", "-a", app]);
    assert_eq!(
        error_line(&out),
        "error: pushed already runs v2 as a canary with 20% of requests: promote or abort it \
         first (caas releases:promote / releases:abort -a pushed)",
        "{out}"
    );
    assert_eq!(builds(&p, app).len(), 1);

    // Aborted, it stays held; with no version named, releases:canary takes it again (the
    // newest release not serving).
    p.caas_ok(&["releases:abort", "-a", app]);
    let releases = p.caas_json(&["releases", "-a", app, "--json"]);
    assert_eq!(releases[0]["status"], "held", "{releases}");
    assert_eq!(releases[0]["canary"], false, "{releases}");
    let out = p.caas_ok(&["releases:canary", "--weight", "20", "-a", app]);
    assert!(
        out.contains("Started canary v2 of pushed with 20% of requests beside v1: up"),
        "{out}"
    );

    let out = p.caas_ok(&["releases:promote", "-a", app]);
    assert!(
        out.contains("Promoting canary v2 of pushed... done, v2 serves"),
        "{out}"
    );
    p.wait_for(WAIT, "v2 alone to answer", || {
        (0..10)
            .all(|_| greet(&p, app, &[]).0.starts_with("canary: "))
            .then_some(())
    });
    let releases = p.caas_json(&["releases", "-a", app, "--json"]);
    assert_eq!(releases[0]["current"], true, "{releases}");
    assert_eq!(releases[0]["status"], "succeeded", "{releases}");
    assert!(
        logs(&p, app).contains("caas[canary]: Canary v2 with 20% of requests beside v1 (build 1)")
    );
}
