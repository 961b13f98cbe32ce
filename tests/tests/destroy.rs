//! Destroying an app leaves nothing of it: a new app of the same name starts from nothing, a
//! build under way stops and its pusher hears why. Also what a build's record shows when the
//! server refused its upload.

use caas_e2e::{docker, repo_root, run, temp_dir_with, Platform};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const STACK: &str = "caas/stack:latest";

fn require_stack() {
    caas_e2e::require_docker();
    if !docker(&["image", "inspect", STACK]).success() {
        panic!("the stack image {STACK} is missing: build it with stack/build.sh (install.sh and .ci/run do)");
    }
}

fn fixture(name: &str) -> String {
    repo_root()
        .join("examples/apps")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

fn destroy(p: &Platform, app: &str) {
    p.caas_ok(&["apps:destroy", "-a", app, "--confirm", app]);
}

/// `docker image inspect REF` → its id, if the engine has it.
fn image_id(reference: &str) -> Option<String> {
    let out = docker(&["image", "inspect", "--format", "{{.Id}}", reference]);
    out.success().then(|| out.stdout.trim().to_string())
}

#[test]
fn a_recreated_app_shows_nothing_of_the_destroyed_one() {
    require_stack();
    let p = Platform::start();
    // Image tags are shared by every caasd on the engine: a name no other test uses.
    let app = "reborn";
    p.caas_ok(&["apps:create", app]);
    p.caas_ok(&["push", &fixture("python"), "-a", app]);
    p.caas_ok(&["config:set", "OLD_SETTING=1", "-a", app]);
    let old_image = image_id(&format!("caas/{app}:v1")).expect("v1 is tagged");
    assert_eq!(
        image_id(&format!("caas/{app}:v2")).as_deref(),
        Some(old_image.as_str()),
        "the config change's release tags the same image"
    );
    let cache = format!("caas-cache-{}-{app}", p.cluster_id());
    assert!(docker(&["volume", "inspect", &cache]).success());

    destroy(&p, app);
    assert!(
        !docker(&["volume", "inspect", &cache]).success(),
        "the build cache volume is gone when the destroy answers"
    );
    // The image goes as soon as the agent has stopped the instance that runs it.
    p.wait_for(WAIT, "the destroyed app's image to be removed", || {
        image_id(&old_image).is_none().then_some(())
    });
    for tag in ["v1", "v2"] {
        assert_eq!(image_id(&format!("caas/{app}:{tag}")), None, "{tag}");
    }

    p.caas_ok(&["apps:create", app]);
    let pushed = p.caas(&["push", &fixture("static"), "-a", app]);
    assert_eq!(pushed.code, 0, "{pushed}");
    assert!(
        pushed
            .stdout
            .contains(&format!("-----> Building {app} (build 1): 2 files, "))
            && pushed.stdout.contains(" unpacked from a "),
        "the first line says what it counts: {pushed}"
    );

    let builds = p.caas_json(&["builds", "-a", app, "--json"]);
    let builds = builds.as_array().unwrap();
    assert_eq!(builds.len(), 1, "{builds:?}");
    assert_eq!(builds[0]["number"], 1);
    assert_eq!(builds[0]["builder"], "static");
    let output = p.caas_ok(&["builds:output", "1", "-a", app]);
    assert!(
        output.starts_with(&format!("-----> Building {app} (build 1)")),
        "{output}"
    );
    assert!(!output.to_lowercase().contains("python"), "{output}");

    let releases = p.caas_json(&["releases", "-a", app, "--json"]);
    let versions: Vec<u64> = releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1]);
    assert_ne!(image_id(&format!("caas/{app}:v1")), Some(old_image));
    assert_eq!(image_id(&format!("caas/{app}:v2")), None);
    assert_eq!(
        p.caas_json(&["config", "-a", app, "--json"]),
        serde_json::json!({})
    );

    let logs = p.caas_ok(&["logs", "-a", app, "-n", "1500"]);
    assert!(!logs.to_lowercase().contains("python"), "{logs}");
    assert!(!logs.contains("OLD_SETTING"), "{logs}");
    assert_eq!(logs.matches("App created").count(), 1, "{logs}");
}

/// A `caas` command running in the background, its output collected when it ends.
struct Background {
    done: mpsc::Receiver<(i32, String, String)>,
}

impl Background {
    fn start(mut cmd: Command) -> Background {
        let mut child: Child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting caas");
        let (tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            let mut stderr = child.stderr.take().unwrap();
            let err = std::thread::spawn(move || {
                let mut s = String::new();
                let _ = stderr.read_to_string(&mut s);
                s
            });
            let mut out = String::new();
            let _ = child.stdout.take().unwrap().read_to_string(&mut out);
            let code = child.wait().map(|s| s.code().unwrap_or(-1)).unwrap_or(-1);
            let _ = tx.send((code, out, err.join().unwrap_or_default()));
        });
        Background { done }
    }

    fn finish(self, timeout: Duration) -> (i32, String, String) {
        self.done
            .recv_timeout(timeout)
            .unwrap_or_else(|_| panic!("caas did not end within {timeout:?}"))
    }
}

#[test]
fn destroying_an_app_while_it_builds_stops_its_builds() {
    require_stack();
    let p = Platform::start();
    let app = "halfbuilt";
    p.caas_ok(&["apps:create", app]);
    // A Node.js app whose build script takes ten minutes: the build is under way for as long
    // as the test needs.
    let slow = temp_dir_with(&[(
        "package.json",
        r#"{"name": "slow", "version": "1.0.0",
            "scripts": {"build": "echo slow build started && sleep 600", "start": "node -e 0"}}"#,
    )]);
    let dir = slow.path().to_str().unwrap();
    let first = Background::start(p.caas_command(&["push", dir, "-a", app]));
    p.wait_for(WAIT, "build 1 to be in its build script", || {
        let out = p.caas(&["builds:output", "1", "-a", app]);
        out.stdout.contains("slow build started").then_some(())
    });
    // A second push waits for the first.
    let second = Background::start(p.caas_command(&["push", dir, "-a", app]));
    p.wait_for(WAIT, "build 2 to be queued", || {
        let builds = p.caas_json(&["builds", "-a", app, "--json"]);
        (builds[0]["number"] == 2 && builds[0]["status"] == "queued").then_some(())
    });
    let build_container = format!("caas-build-{}-{app}-1", p.cluster_id());
    assert!(
        p.containers().iter().any(|c| c.name == build_container),
        "{:?}",
        p.containers()
    );

    destroy(&p, app);
    let left: Vec<_> = p
        .containers()
        .into_iter()
        .filter(|c| c.app == app || c.name.contains(app))
        .collect();
    assert!(
        left.is_empty(),
        "the builds' containers are gone when the destroy answers: {left:?}"
    );
    for push in [first, second] {
        let (code, out, err) = push.finish(Duration::from_secs(30));
        assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
        assert!(
            err.contains("the app was destroyed while it was building"),
            "stdout:\n{out}\nstderr:\n{err}"
        );
        assert!(!err.contains("not found"), "{err}");
    }

    p.caas_ok(&["apps:create", app]);
    assert_eq!(
        p.caas_json(&["builds", "-a", app, "--json"]),
        serde_json::json!([])
    );
    p.caas_code(4, &["builds:output", "1", "-a", app]);
    assert!(
        !p.data_dir().join("builds").join(app).exists(),
        "no build folder or log of the old app"
    );
}

#[test]
fn a_refused_upload_shows_why_in_its_build_output_and_in_the_list() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "refused"]);
    let tmp = tempfile::tempdir().unwrap();
    let zip = tmp.path().join("evil.zip");
    let made = run(
        Command::new("python3")
            .arg("-c")
            .arg(
                "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], 'w'); \
             z.writestr('index.html', 'x'); z.writestr('../escape', 'x')",
            )
            .arg(&zip),
        None,
        Duration::from_secs(60),
    );
    assert!(made.success(), "{made}");
    let pushed = p.caas_code(2, &["push", zip.to_str().unwrap(), "-a", "refused"]);
    assert!(pushed.stderr.contains("../escape"), "{pushed}");

    // Every client sees the reason, not only the one whose upload was refused.
    let output = p.caas_ok(&["builds:output", "1", "-a", "refused"]);
    assert!(output.contains("../escape"), "{output}");
    let list = p.caas_ok(&["builds", "-a", "refused"]);
    let row = list
        .lines()
        .find(|l| l.starts_with("#1"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(row.contains("failed"), "{list}");
    assert!(list.lines().next().unwrap().contains("REASON"), "{list}");
    let reason = row.split("ago").nth(1).unwrap_or_default().trim();
    assert!(
        !reason.is_empty() && reason != "-",
        "a short reason: {list}"
    );
}
