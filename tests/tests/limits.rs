//! Per process type resources (`caas ps:resize`): a real CPU cap and a memory limit, shown in
//! `caas ps`, within the operator's bounds; and what they bound: a memory hog is killed inside its
//! instance, a fork bomb stops at the pids limit, and the app keeps serving meanwhile.

use caas_e2e::{docker, docker_ok, test_image, Platform};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn running_web1(p: &Platform, app: &str) -> String {
    p.wait_for(WAIT, "one running instance", || {
        let c = p.running_containers(app);
        (c.len() == 1).then(|| c[0].id.clone())
    })
}

#[test]
fn ps_resize_sets_memory_and_a_real_cpu_cap_within_bounds() {
    let image = test_image("Resized");
    let p = Platform::start_with(&["--max-instance-memory", "1G", "--max-instance-cpus", "2"]);
    p.caas_ok(&["apps:create", "sized"]);
    p.caas_ok(&["push", "--image", &image, "-a", "sized"]);

    // Bad input: a one-line reason, exit 2 (4 for an unknown type), nothing changed.
    for (args, code, want) in [
        (vec!["web"], 2, "give --memory SIZE and/or --cpu CORES"),
        (
            vec!["web", "--memory", "2G"],
            2,
            "over this server's limit of 1024M",
        ),
        (vec!["web", "--memory", "8M"], 2, "give at least 16M"),
        (vec!["web", "--cpu", "3"], 2, "caasd --max-instance-cpus"),
        (vec!["web", "--cpu", "lots"], 2, "not a number of cores"),
        (vec!["Web!", "--cpu", "1"], 2, "process type"),
        (vec!["clock", "--cpu", "1"], 4, "no process type \"clock\""),
    ] {
        let mut full = vec!["ps:resize"];
        full.extend(args.iter().copied());
        full.extend(["-a", "sized"]);
        let out = p.caas_code(code, &full);
        assert!(out.stderr.contains(want), "{full:?}: {out}");
    }
    let releases = p.caas_json(&["releases", "-a", "sized", "--json"]);
    assert_eq!(
        releases.as_array().unwrap().len(),
        1,
        "nothing was released"
    );

    let out = p.caas_ok(&[
        "ps:resize",
        "web",
        "--memory",
        "64M",
        "--cpu",
        "0.5",
        "-a",
        "sized",
    ]);
    assert!(
        out.contains("Resized web of sized to 64 MiB memory, 0.5 CPU: v2 is up"),
        "{out}"
    );
    let id = running_web1(&p, "sized");
    let host: Value = serde_json::from_str(&docker_ok(&["inspect", &id])).unwrap();
    let host = &host[0]["HostConfig"];
    assert_eq!(host["Memory"], 64 * 1024 * 1024, "{host}");
    assert_eq!(
        host["NanoCpus"], 500_000_000,
        "a CFS quota, not only shares: {host}"
    );
    let ps = p.caas_json(&["ps", "-a", "sized", "--json"]);
    assert_eq!(ps[0]["memory_mb"], 64, "{ps}");
    assert_eq!(ps[0]["cpus"], 0.5, "{ps}");
    let table = p.caas_ok(&["ps", "-a", "sized"]);
    assert!(table.contains("64 MiB") && table.contains("0.5"), "{table}");
    assert!(p.ok_body("sized").is_some_and(|b| b.starts_with("Resized")));
    // The same again: nothing to do, no release.
    let again = p.caas_ok(&["ps:resize", "web", "--cpu", "0.5", "-a", "sized"]);
    assert!(again.contains("already has"), "{again}");
    let resources = p.caas_json(&["releases", "-a", "sized", "--json"]);
    assert_eq!(resources.as_array().unwrap().len(), 2, "{resources}");

    // A memory hog inside the instance is killed by its limit, and the app serves on.
    let hog = docker(&[
        "exec",
        &id,
        "sh",
        "-c",
        "head -c 300000000 /dev/zero | tail",
    ]);
    println!("tried: 300 MB in a 64 MB instance -> exit {}", hog.code);
    assert_eq!(hog.code, 137, "the hog was killed: {hog}");
    assert!(
        p.ok_body("sized").is_some_and(|b| b.starts_with("Resized")),
        "the app still answers after the hog"
    );

    // A fork bomb in another app stops at the pids limit; this one is not disturbed.
    p.caas_ok(&["apps:create", "bomb"]);
    p.caas_ok(&["push", "--image", &image, "-a", "bomb"]);
    let bomb_id = running_web1(&p, "bomb");
    let bomb = docker(&[
        "exec",
        &bomb_id,
        "sh",
        "-c",
        "i=0; while [ $i -lt 2000 ]; do sleep 30 & i=$((i+1)); done; echo started",
    ]);
    let pids = docker_ok(&["stats", "--no-stream", "--format", "{{.PIDs}}", &bomb_id]);
    println!(
        "tried: 2000 processes in one instance -> exit {}, {} processes",
        bomb.code,
        pids.trim()
    );
    assert!(
        bomb.stderr.contains("can't fork"),
        "forking stopped at the limit: {bomb}"
    );
    let inspect: Value = serde_json::from_str(&docker_ok(&["inspect", &bomb_id])).unwrap();
    let limit = inspect[0]["HostConfig"]["PidsLimit"].as_i64().unwrap();
    let running: i64 = pids.trim().parse().unwrap();
    assert!(
        running > 0 && running <= limit,
        "{running} processes, limit {limit}"
    );
    assert!(
        p.ok_body("sized").is_some_and(|b| b.starts_with("Resized")),
        "the other app still answers"
    );
    let _ = docker(&["exec", &bomb_id, "killall", "sleep"]);
}
