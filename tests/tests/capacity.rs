//! Capacity: what `caas hosts` says of each host (memory reserved and used, disk), the disk floor
//! under which new work is refused up front while running apps keep serving, and the images of
//! old releases that are pruned.

use caas_e2e::{docker, run, temp_dir_with, test_image, Platform};
use std::fs;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const GIT_TIMEOUT: Duration = Duration::from_secs(120);

fn answers(p: &Platform, app: &str, greeting: &str) -> bool {
    matches!(p.http_get(app, "/"), Ok((200, body)) if body.starts_with(greeting))
}

/// Free bytes of the filesystem holding `path`, as `df` counts them.
fn free_bytes(path: &std::path::Path) -> u64 {
    let out = run(
        std::process::Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(path),
        None,
        WAIT,
    );
    assert!(out.success(), "{out}");
    out.stdout.lines().nth(1).unwrap().trim().parse().unwrap()
}

#[test]
fn a_full_disk_refuses_new_work_up_front_and_loses_nothing() {
    let image = test_image("Full disk");
    // A data dir of 96 MB of its own, of which caasd keeps 48 MB free.
    let p = Platform::start_on_small_disk(96, &["--min-free-disk", "48M"]);
    p.caas_ok(&["apps:create", "full"]);
    p.caas_ok(&["push", "--image", &image, "-a", "full"]);
    assert!(answers(&p, "full", "Full disk"));
    p.caas_ok(&["config:set", "KEPT=yes", "-a", "full"]);

    // Once v1's instance has drained: one instance reserving 128 MB (of its 512 MB limit),
    // its disk and memory reported.
    let hosts = p.wait_for(
        WAIT,
        "the host to report one instance, its disk and memory",
        || {
            let h = p.caas_json(&["hosts", "--json"]);
            (h[0]["instances"] == 1
                && h[0]["reserved_mb"] == 128
                && h[0]["disk"]["total_bytes"].as_u64().unwrap_or(0) > 0
                && h[0]["used_mb"].is_u64())
            .then_some(h)
        },
    );
    let disk = &hosts[0]["disk"];
    assert!(
        disk["free_bytes"].as_u64().unwrap() <= disk["total_bytes"].as_u64().unwrap(),
        "{hosts}"
    );
    let table = p.caas_ok(&["hosts"]);
    assert!(
        table.contains("RESERVED") && table.contains("DISK FREE") && table.contains(" of "),
        "{table}"
    );

    // Fill the data dir's filesystem until 20 MB are left: under the floor.
    let filler = p.data_dir().join("filler");
    let fill = free_bytes(p.data_dir()).saturating_sub(20 << 20);
    fs::write(&filler, vec![0u8; fill as usize]).expect("filling the tmpfs");

    let src = temp_dir_with(&[("index.html", "<p>new</p>\n")]);
    let out = p.caas(&["push", src.path().to_str().unwrap(), "-a", "full"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("refusing the upload: only ") && out.stderr.contains("--min-free-disk"),
        "{out}"
    );
    assert!(
        out.stderr
            .trim()
            .lines()
            .last()
            .unwrap()
            .starts_with("error: refusing the upload"),
        "one line that says what to do, at the end: {out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| run(&mut p.git_command(dir.path(), args), None, GIT_TIMEOUT);
    assert!(git(&["init", "-q", "-b", "main"]).success());
    fs::write(dir.path().join("index.html"), "<p>git</p>\n").unwrap();
    assert!(git(&["add", "."]).success());
    assert!(git(&["commit", "-q", "-m", "one"]).success());
    assert!(p
        .caas_in(dir.path(), &["git:remote", "-a", "full"])
        .success());
    let pushed = git(&["push", "caas", "main"]);
    assert!(!pushed.success(), "{pushed}");
    assert!(
        pushed.stderr.contains("refusing the push: only "),
        "{pushed}"
    );

    // Nothing already stored was lost, and the app keeps serving.
    assert!(answers(&p, "full", "Full disk"));
    let releases = p.caas_json(&["releases", "-a", "full", "--json"]);
    assert_eq!(releases.as_array().unwrap().len(), 2, "{releases}");
    assert_eq!(
        p.caas_json(&["builds", "-a", "full", "--json"]),
        serde_json::json!([])
    );
    assert!(p.caas_ok(&["config", "-a", "full"]).contains("KEPT"));

    // Space again: the same push goes through.
    fs::remove_file(&filler).unwrap();
    let again = p.caas(&["push", "--image", &image, "-a", "full"]);
    assert_eq!(again.code, 0, "{again}");
    assert!(p
        .caas_in(dir.path(), &["git:remote", "-a", "full"])
        .success());
}

/// `docker image inspect REF` → its id, if the engine has it.
fn image_id(reference: &str) -> Option<String> {
    let out = docker(&["image", "inspect", "--format", "{{.Id}}", reference]);
    out.success().then(|| out.stdout.trim().to_string())
}

#[test]
fn only_the_last_releases_keep_their_images() {
    caas_e2e::require_stack();
    let p = Platform::start_with(&["--keep-releases", "2"]);
    // Image tags are shared by every caasd on the engine: a name no other test uses.
    let app = "pruned";
    p.caas_ok(&["apps:create", app]);
    let site = |text: &str| temp_dir_with(&[("index.html", text)]);
    let one = site("<p>one</p>\n");
    p.caas_ok(&["push", one.path().to_str().unwrap(), "-a", app]);
    let v1 = image_id(&format!("caas/{app}:v1")).expect("v1 is tagged");
    p.caas_ok(&["config:set", "A=1", "-a", app]); // v2: v1's image
    let two = site("<p>two</p>\n");
    p.caas_ok(&["push", two.path().to_str().unwrap(), "-a", app]); // v3
    let v3 = image_id(&format!("caas/{app}:v3")).expect("v3 is tagged");
    assert_ne!(v1, v3);
    p.caas_ok(&["config:set", "A=2", "-a", app]); // v4: v3's image

    // v1 and v2 are older than the last two: their tags go, and with them v1's image, which
    // this installation built and no kept release runs.
    p.wait_for(WAIT, "the old releases' images to be removed", || {
        (image_id(&v1).is_none()
            && image_id(&format!("caas/{app}:v1")).is_none()
            && image_id(&format!("caas/{app}:v2")).is_none())
        .then_some(())
    });
    assert_eq!(image_id(&format!("caas/{app}:v3")), Some(v3.clone()));
    assert_eq!(image_id(&format!("caas/{app}:v4")), Some(v3));
    let releases = p.caas_json(&["releases", "-a", app, "--json"]);
    assert_eq!(
        releases.as_array().unwrap().len(),
        4,
        "releases stay listed"
    );

    let out = p.caas(&["releases:rollback", "v1", "-a", app]);
    assert_eq!(out.code, 5, "{out}");
    assert!(
        out.stderr.contains("no longer on the server") && out.stderr.contains("--keep-releases"),
        "{out}"
    );
    // v3's image is kept: rolling back to it works.
    p.caas_ok(&["releases:rollback", "v3", "-a", app]);
}
