//! A small host, said out loud: the scheduler counts memory reservations, not limits; an instance
//! no host can take is `pending` in `caas ps` with its reason; a scale, a push, a config change or
//! a `git push` (whose `remote:` lines say why) that cannot be placed fails at once (exit 1, the
//! reason and what to do) while the old release serves; and a pending instance starts once room
//! appears (another app destroyed).

use caas_e2e::{binaries, run, temp_dir_with, test_image, Platform};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// 320 MB offered, 100 MB reserved and 128 MB limit per instance: three instances fit, the
/// fourth does not (20 MB free). Limits (4 x 128) stay well under the overcommit (4 x 320).
const FLAGS: &[&str] = &[
    "--host-memory",
    "320M",
    "--instance-reserve",
    "100M",
    "--instance-memory",
    "128M",
];

fn web(ps: &Value, name: &str) -> Option<Value> {
    ps.as_array()?.iter().find(|i| i["name"] == name).cloned()
}

#[test]
fn past_capacity_an_instance_is_pending_with_why_a_push_fails_fast_and_room_places_it() {
    let old = test_image("Small host v1");
    let new = test_image("Small host v2");
    let p = Platform::start_with(FLAGS);
    for app in ["alpha", "bravo", "charlie"] {
        p.caas_ok(&["apps:create", app]);
        p.caas_ok(&["push", "--image", &old, "-a", app]);
    }
    // Three instances of 128 MB limits, reserving 100 MB each, on a host that offers 320 MB.
    let hosts = p.wait_for(WAIT, "the host to count three reservations", || {
        let h = p.caas_json(&["hosts", "--json"]);
        (h[0]["instances"] == 3).then_some(h)
    });
    assert_eq!(hosts[0]["memory_mb"], 320, "{hosts}");
    assert_eq!(hosts[0]["reserved_mb"], 300, "{hosts}");
    let ps = p.caas_json(&["ps", "-a", "alpha", "--json"]);
    assert_eq!(
        (&ps[0]["memory_mb"], &ps[0]["reserved_mb"]),
        (&128.into(), &100.into())
    );

    // Bad input: one line, exit 2, nothing released.
    for (args, want) in [
        (
            vec!["--reserve", "200M"],
            "a reservation is at most the limit",
        ),
        (vec!["--memory", "1G"], "more than any host has (320M)"),
        (vec!["--memory", "5G"], "caasd --max-instance-memory"),
    ] {
        let mut full = vec!["ps:resize", "web"];
        full.extend(args.iter().copied());
        full.extend(["-a", "alpha"]);
        let out = p.caas_code(2, &full);
        assert!(out.stderr.contains(want), "{full:?}: {out}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
    }
    assert_eq!(
        p.caas_json(&["releases", "-a", "alpha", "--json"])
            .as_array()
            .map(Vec::len),
        Some(1),
        "nothing was released"
    );

    // A scale past capacity: recorded, failed at once with the reason, the instance pending.
    let out = p.caas_code(1, &["ps:scale", "web=2", "-a", "charlie"]);
    assert!(
        out.stderr.contains(
            "web.2: no host can take it: 1 of 1 host short of memory (100 MB to reserve, 20 MB free at most)"
        ),
        "{out}"
    );
    assert!(out.stderr.contains("caas ps:resize web --reserve"), "{out}");
    let ps = p.caas_json(&["ps", "-a", "charlie", "--json"]);
    let pending = web(&ps, "web.2").expect("web.2 is listed");
    assert_eq!(pending["state"], "pending", "{ps}");
    assert!(
        pending["reason"]
            .as_str()
            .is_some_and(|r| r.contains("short of memory")),
        "{ps}"
    );
    let table = p.caas_ok(&["ps", "-a", "charlie"]);
    assert!(
        table.contains("pending") && table.contains("web.2 v1 pending: no host can take it"),
        "{table}"
    );

    // A push whose instance no host can take fails fast, saying why; v1 keeps serving.
    let out = p.caas_code(1, &["push", "--image", &new, "-a", "alpha"]);
    assert!(
        out.stderr
            .contains("release v2 failed: cannot place web.1: no host can take it"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("the previous release keeps serving (v1)"),
        "{out}"
    );
    assert!(
        out.stderr.contains("add a host (caas hosts:add NAME)"),
        "{out}"
    );
    assert!(
        p.ok_body("alpha")
            .is_some_and(|b| b.starts_with("Small host v1")),
        "v1 serves"
    );

    // A config change goes through the same verdict: exit 1 with the reason, and v1 serves.
    let out = p.caas_code(1, &["config:set", "MARK=unplaced", "-a", "alpha"]);
    assert!(
        out.stderr
            .contains("cannot place web.1: no host can take it"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("the previous release keeps serving (v1)"),
        "{out}"
    );
    assert!(
        p.ok_body("alpha")
            .is_some_and(|b| b.starts_with("Small host v1")),
        "v1 serves after the config change"
    );

    // So does a `git push`: the build succeeds, the release cannot be placed, the push is
    // rejected with the reason in `remote:` lines, and v1 still serves.
    caas_e2e::require_stack();
    let src = temp_dir_with(&[
        ("Procfile", "web: busybox httpd -f -p $PORT -h /app/www\n"),
        ("www/index.html", "from git\n"),
    ]);
    let dir = src.path();
    p.git_ok(dir, &["init", "-q", "-b", "main"]);
    p.git_ok(dir, &["add", "."]);
    p.git_ok(dir, &["commit", "-qm", "one"]);
    p.caas_in(dir, &["git:remote", "-a", "alpha"]);
    let out = p.git(dir, &["push", "caas", "main"]);
    assert!(!out.success(), "{out}");
    let remote = |want: &str| {
        out.stderr
            .lines()
            .any(|l| l.starts_with("remote:") && l.contains(want))
    };
    assert!(
        remote("cannot place web.1: no host can take it: 1 of 1 host short of memory"),
        "{out}"
    );
    assert!(remote("the previous release keeps serving (v1)"), "{out}");
    assert!(remote("add a host (caas hosts:add NAME)"), "{out}");
    assert!(
        out.stderr.contains("[remote rejected] main -> main"),
        "{out}"
    );
    assert!(
        p.ok_body("alpha")
            .is_some_and(|b| b.starts_with("Small host v1")),
        "v1 serves after the git push"
    );
    let info = p.caas_json(&["apps:info", "-a", "alpha", "--json"]);
    assert_eq!(info["release"], 1, "{info}");

    // Room appears: charlie's pending instance is placed and comes up, and the log says so.
    p.caas_ok(&["apps:destroy", "-a", "bravo", "--confirm", "bravo"]);
    p.wait_for(WAIT, "charlie's web.2 to be up", || {
        let ps = p.caas_json(&["ps", "-a", "charlie", "--json"]);
        web(&ps, "web.2").filter(|i| i["state"] == "up")
    });
    let logs = p.caas_ok(&["logs", "-a", "charlie", "-n", "200", "--source", "caas"]);
    assert!(
        logs.contains("caas[scale]: cannot place web.2: no host can take it"),
        "{logs}"
    );
    assert!(
        logs.contains("caas[scale]: placed web.2 on local after it waited"),
        "{logs}"
    );
}

#[test]
fn an_overcommit_below_one_or_a_reservation_over_the_limit_is_refused_at_start() {
    for args in [
        &["--overcommit", "0.5"][..],
        &["--instance-reserve", "1G", "--instance-memory", "512M"],
        &[
            "agent",
            "--server",
            "http://127.0.0.1:1",
            "--address",
            "127.0.0.1",
            "--name",
            "x",
            "--overcommit",
            "0",
        ],
    ] {
        let out = run(
            Command::new(&binaries().caasd).args(args),
            None,
            Duration::from_secs(30),
        );
        assert_eq!(out.code, 2, "{args:?}: {out}");
        assert!(
            out.stderr.contains("overcommit") || out.stderr.contains("at most the limit"),
            "{args:?}: {out}"
        );
    }
}
