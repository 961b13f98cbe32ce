//! Builds through the real pipeline: fixture apps pushed as directories, `.war`, `.jar` and
//! `.zip`, built by the bundled buildpacks (or their Dockerfile) in the stack image, and curled
//! through the gateway. Hostile and broken uploads are refused with the entry named.

use caas_e2e::{docker, docker_ok, repo_root, run, Platform};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const STACK: &str = "caas/stack:latest";

/// Builds need the stack image; say how to get it instead of failing obscurely.
fn require_stack() {
    caas_e2e::require_docker();
    if !docker(&["image", "inspect", STACK]).success() {
        panic!("the stack image {STACK} is missing: build it with stack/build.sh (install.sh and .ci/run do)");
    }
}

fn fixture(name: &str) -> PathBuf {
    repo_root().join("examples/apps").join(name)
}

fn ok_body(p: &Platform, app: &str) -> Option<String> {
    match p.http_get(app, "/") {
        Ok((200, body)) => Some(body),
        _ => None,
    }
}

/// `caas push PATH -a APP`, which waits until the release is up; then the body.
fn push_ok(p: &Platform, app: &str, path: &Path) -> (String, String) {
    p.caas_ok(&["apps:create", app]);
    let out = p.caas_ok(&["push", path.to_str().unwrap(), "-a", app]);
    let body = ok_body(p, app).unwrap_or_else(|| panic!("{app} does not answer after push\n{out}"));
    (out, body)
}

fn python(script: &str, args: &[&str]) {
    let out = run(
        Command::new("python3").arg("-c").arg(script).args(args),
        None,
        Duration::from_secs(60),
    );
    assert!(out.success(), "python3 failed\n{out}");
}

#[test]
fn a_static_site_and_a_python_app_build_and_answer() {
    require_stack();
    let p = Platform::start();
    let (out, body) = push_ok(&p, "site", &fixture("static"));
    assert!(body.contains("static site works"), "{body}");
    // The build streamed in Heroku's shape and ended with the release and the URL.
    assert!(out.contains("-----> "), "{out}");
    assert!(out.contains("Released v1"), "{out}");
    assert!(out.contains(&p.app_url("site")), "{out}");

    let (out, body) = push_ok(&p, "pyapp", &fixture("python"));
    assert!(out.contains("Python app detected"), "{out}");
    assert!(
        body.contains("python app works: web.1 (six 1.16.0"),
        "{body}"
    );

    let builds = p.caas_json(&["builds", "-a", "pyapp", "--json"]);
    assert_eq!(builds[0]["status"], "succeeded");
    assert_eq!(builds[0]["builder"], "python");
    assert_eq!(builds[0]["release"], 1);
    assert!(builds[0]["image_size"].as_u64().unwrap() > 0);

    // The app image holds the app, not the build's caches.
    let image = "caas/pyapp:v1";
    let listing = docker_ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        "ls -A /cache; ls /app",
    ]);
    assert!(listing.contains("app.py"), "{listing}");
    assert!(
        !listing.contains("pip"),
        "the pip cache leaked into the image: {listing}"
    );
}

#[test]
fn a_nodejs_app_builds_with_its_npm_dependency_and_rebuilds_from_cache() {
    require_stack();
    let p = Platform::start();
    let (out, body) = push_ok(&p, "nodeapp", &fixture("nodejs"));
    assert!(out.contains("Node.js app detected"), "{out}");
    assert!(
        body.contains("nodejs app works: web.1 (port is a number"),
        "{body}"
    );
    let again = p.caas_ok(&["push", fixture("nodejs").to_str().unwrap(), "-a", "nodeapp"]);
    assert!(again.contains("Released v2"), "{again}");
    assert!(
        again.contains("Reusing node_modules from the last build"),
        "the rebuild used the cache: {again}"
    );
}

#[test]
fn war_and_jar_files_build_and_answer() {
    require_stack();
    let tmp = tempfile::tempdir().unwrap();
    let war = tmp.path().join("hello.war");
    let jar = tmp.path().join("hello.jar");
    for (script, out) in [("war/build.sh", &war), ("jar/build.sh", &jar)] {
        let built = run(
            Command::new("bash").arg(fixture(script)).arg(out),
            None,
            Duration::from_secs(120),
        );
        assert!(built.success(), "{built}");
    }
    // The same jar inside a zip.
    let zip = tmp.path().join("bundle.zip");
    python(
        "import sys, zipfile; zipfile.ZipFile(sys.argv[2], 'w').write(sys.argv[1], 'hello.jar')",
        &[jar.to_str().unwrap(), zip.to_str().unwrap()],
    );

    let p = Platform::start();
    let (out, body) = push_ok(&p, "warapp", &war);
    assert!(out.contains("app detected"), "{out}");
    // The JSP was compiled and run by the servlet container: 6*7 evaluated.
    assert!(
        body.starts_with("war app works: web.1 (JSP compiled at run time, 6*7=42"),
        "{body}"
    );
    assert_eq!(
        p.caas_json(&["builds", "-a", "warapp", "--json"])[0]["builder"],
        "java-war"
    );
    let (_, body) = push_ok(&p, "jarapp", &jar);
    assert!(body.starts_with("jar app works: web.1"), "{body}");
    let (_, body) = push_ok(&p, "zipapp", &zip);
    assert!(body.starts_with("jar app works: web.1"), "{body}");
    assert_eq!(
        p.caas_json(&["builds", "-a", "zipapp", "--json"])[0]["builder"],
        "jvm-jar"
    );
}

#[test]
fn a_dockerfile_app_and_a_procfile_worker() {
    require_stack();
    let p = Platform::start();
    let (out, body) = push_ok(&p, "dock", &fixture("dockerfile"));
    assert!(out.contains("Dockerfile"), "{out}");
    assert!(body.contains("dockerfile app works"), "{body}");

    push_ok(&p, "workers", &fixture("worker"));
    p.caas_ok(&["ps:scale", "worker=2", "-a", "workers"]);
    let logs = p.wait_for(WAIT, "both workers' ticks in caas logs", || {
        let logs = p.caas_ok(&["logs", "-a", "workers", "-n", "300"]);
        (logs.contains("app[worker.1]: worker tick") && logs.contains("app[worker.2]: worker tick"))
            .then_some(logs)
    });
    assert!(!logs.contains("app[web.1]: worker tick"), "{logs}");
    // Only web is routed: the workers are not in the gateway's rotation.
    for _ in 0..5 {
        assert!(ok_body(&p, "workers").is_some());
    }
}

#[test]
fn a_failed_build_leaves_the_previous_release_serving_and_its_log_replayable() {
    require_stack();
    let mut p = Platform::start();
    push_ok(&p, "stable", &fixture("static"));
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(
        broken.path().join("package.json"),
        r#"{"name":"x","version":"1.0.0","dependencies":{"caas-no-such-package-xyz":"9.9.9"}}"#,
    )
    .unwrap();
    let out = p.caas(&["push", broken.path().to_str().unwrap(), "-a", "stable"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("build 2 failed"), "{out}");
    assert!(
        out.stderr.contains("compile step"),
        "it says which step failed: {out}"
    );
    assert!(ok_body(&p, "stable").is_some_and(|b| b.contains("static site works")));
    assert_eq!(
        p.caas_json(&["apps:info", "-a", "stable", "--json"])["release"],
        1
    );

    // Undetectable source: the message lists what was tried.
    let nothing = caas_e2e::temp_dir_with(&[("README.txt", "hello")]);
    let out = p.caas(&["push", nothing.path().to_str().unwrap(), "-a", "stable"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains("Tried: java-war, jvm-jar, nodejs, python, static, procfile"),
        "{out}"
    );

    // Every build, failed ones too, with its whole log, also after a restart; and the built app's
    // instance is adopted, not replaced.
    let before: Vec<String> = p
        .running_containers("stable")
        .into_iter()
        .map(|c| c.id)
        .collect();
    p.kill9();
    p.restart();
    let builds = p.caas_json(&["builds", "-a", "stable", "--json"]);
    let statuses: Vec<&str> = builds
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["failed", "failed", "succeeded"]);
    let log = p.caas_ok(&["builds:output", "2", "-a", "stable"]);
    assert!(log.contains("caas-no-such-package-xyz"), "{log}");
    assert!(ok_body(&p, "stable").is_some());
    std::thread::sleep(Duration::from_secs(3));
    let after: Vec<String> = p
        .running_containers("stable")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        after, before,
        "the built app's container was adopted after the restart"
    );
}

#[test]
fn hostile_and_broken_uploads_are_refused_naming_the_entry() {
    let p = Platform::start_with(&["--max-unpacked-mb", "20"]);
    p.caas_ok(&["apps:create", "target"]);
    let tmp = tempfile::tempdir().unwrap();
    let path = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let canary = tmp.path().join("canary");

    // A zip with a `..` entry.
    python(
        "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], 'w'); z.writestr('index.html', 'x'); z.writestr('../../canary', 'pwned')",
        &[&path("evil.zip")],
    );
    // A tar.gz with a symlink out of the tree and a file written through it.
    python(
        "import sys, tarfile, io\n\
         t = tarfile.open(sys.argv[1], 'w:gz')\n\
         l = tarfile.TarInfo('etc'); l.type = tarfile.SYMTYPE; l.linkname = '/etc'; t.addfile(l)\n\
         f = tarfile.TarInfo('etc/passwd'); data = b'root::0:0::/:/bin/sh\\n'; f.size = len(data); t.addfile(f, io.BytesIO(data))\n\
         t.close()",
        &[&path("evil.tar.gz")],
    );
    // A setuid file.
    python(
        "import sys, tarfile, io\n\
         t = tarfile.open(sys.argv[1], 'w:gz')\n\
         f = tarfile.TarInfo('bin/su'); f.mode = 0o4755; f.size = 2; t.addfile(f, io.BytesIO(b'hi'))\n\
         t.close()",
        &[&path("setuid.tar.gz")],
    );
    // A gzip bomb: 200 MB of zeros in a tar, a few hundred KB compressed.
    python(
        "import sys, tarfile, io\n\
         class Zeros(io.RawIOBase):\n\
         \x20   def __init__(self, n): self.n = n\n\
         \x20   def readable(self): return True\n\
         \x20   def readinto(self, b):\n\
         \x20       k = min(len(b), self.n); b[:k] = bytes(k); self.n -= k; return k\n\
         t = tarfile.open(sys.argv[1], 'w:gz')\n\
         f = tarfile.TarInfo('zeros'); f.size = 200 * 1024 * 1024; t.addfile(f, Zeros(f.size))\n\
         t.close()",
        &[&path("bomb.tar.gz")],
    );
    std::fs::write(path("fake.zip"), "this is not a zip").unwrap();
    std::fs::write(path("fake.war"), "neither is this").unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();

    for (file, code, message) in [
        ("evil.zip", 2, "refused archive entry \"../../canary\""),
        ("evil.tar.gz", 2, "\"etc\""),
        ("setuid.tar.gz", 2, "\"bin/su\""),
        ("bomb.tar.gz", 2, "--max-"),
        ("fake.zip", 2, "fake.zip is not a zip archive"),
        ("fake.war", 2, "fake.war is not a .war"),
    ] {
        let out = p.caas(&["push", &path(file), "-a", "target"]);
        assert_eq!(out.code, code, "{file}: {out}");
        assert!(
            out.stderr.contains(message),
            "{file}: expected {message:?}\n{out}"
        );
    }
    let out = p.caas(&["push", empty.to_str().unwrap(), "-a", "target"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("nothing to push"), "{out}");
    assert!(!canary.exists(), "an entry escaped the build folder");
    // Nothing was deployed, every refusal is on record.
    assert_eq!(
        p.caas_json(&["apps:info", "-a", "target", "--json"])["release"],
        serde_json::Value::Null
    );
    let builds = p.caas_json(&["builds", "-a", "target", "--json"]);
    assert_eq!(builds.as_array().unwrap().len(), 6);
    assert!(builds
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["status"] == "failed"));
}

#[test]
fn pushes_to_one_app_queue() {
    require_stack();
    let p = std::sync::Arc::new(Platform::start());
    p.caas_ok(&["apps:create", "queued"]);
    let dir = fixture("static");
    let pushes: Vec<_> = (0..2)
        .map(|_| {
            let (p, dir) = (p.clone(), dir.clone());
            std::thread::spawn(move || p.caas(&["push", dir.to_str().unwrap(), "-a", "queued"]))
        })
        .collect();
    let outs: Vec<_> = pushes.into_iter().map(|h| h.join().unwrap()).collect();
    for out in &outs {
        assert_eq!(out.code, 0, "{out}");
    }
    assert!(
        outs.iter()
            .any(|o| o.stderr.contains("Waiting for build")
                || o.stdout.contains("Waiting for build")),
        "one push waited for the other: {outs:?}"
    );
    let releases = p.caas_json(&["releases", "-a", "queued", "--json"]);
    assert_eq!(releases.as_array().unwrap().len(), 2);
}

/// Writes an executable script.
fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_third_party_buildpack_dropped_in_runs_sees_config_and_can_be_pinned() {
    require_stack();
    // The operator's buildpacks folder: the bundled ones plus one of Heroku's classic API.
    let packs = tempfile::tempdir().unwrap();
    let copied = run(
        Command::new("cp")
            .arg("-a")
            .arg(repo_root().join("buildpacks/."))
            .arg(packs.path()),
        None,
        Duration::from_secs(30),
    );
    assert!(copied.success(), "{copied}");
    let hello = packs.path().join("hello");
    script(
        &hello.join("bin/detect"),
        "#!/bin/sh\n[ -f \"$1/hello.txt\" ] && echo Hello || exit 1\n",
    );
    script(
        &hello.join("bin/compile"),
        "#!/bin/sh\nset -e\necho '-----> Hello buildpack compiling'\n\
         echo \"       ENV_DIR holds $(ls \"$3\" | tr '\\n' ' ')\"\n\
         mkdir -p \"$1/www\"\n\
         { cat \"$1/hello.txt\"; printf ' (greeting from the build: %s)' \"$(cat \"$3/GREETING\")\"; } > \"$1/www/index.html\"\n",
    );
    script(&hello.join("bin/release"), "#!/bin/sh\ncat <<'YAML'\n---\ndefault_process_types:\n  web: busybox httpd -f -p $PORT -h /app/www\nYAML\n");

    let p = Platform::start_with(&["--buildpacks", packs.path().to_str().unwrap()]);
    let listed = p.caas_json(&["buildpacks", "--json"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["java-war", "jvm-jar", "nodejs", "python", "static", "procfile", "hello"]
    );

    p.caas_ok(&["apps:create", "hello"]);
    // Config set before the first build reaches the build as ENV_DIR.
    p.caas_ok(&["config:set", "GREETING=from config", "-a", "hello"]);
    let app = caas_e2e::temp_dir_with(&[("hello.txt", "hello from a dropped-in buildpack")]);
    let out = p.caas_ok(&["push", app.path().to_str().unwrap(), "-a", "hello"]);
    assert!(out.contains("Hello app detected"), "{out}");
    assert!(out.contains("ENV_DIR holds GREETING"), "{out}");
    let body = ok_body(&p, "hello").unwrap();
    assert!(
        body.contains("hello from a dropped-in buildpack (greeting from the build: from config)"),
        "{body}"
    );

    // Pinning: a source both `static` and `hello` detect builds with the pinned one.
    let both = caas_e2e::temp_dir_with(&[
        ("hello.txt", "pinned hello"),
        ("index.html", "static wins by default"),
    ]);
    let out = p.caas_ok(&["push", both.path().to_str().unwrap(), "-a", "hello"]);
    assert!(out.contains("Static HTML app detected"), "{out}");
    p.caas_ok(&["buildpacks:set", "hello", "-a", "hello"]);
    assert_eq!(
        p.caas_json(&["apps:info", "-a", "hello", "--json"])["buildpack"],
        "hello"
    );
    let out = p.caas_ok(&["push", both.path().to_str().unwrap(), "-a", "hello"]);
    assert!(out.contains("Hello app detected"), "{out}");
    assert!(ok_body(&p, "hello").unwrap().contains("pinned hello"));
    let out = p.caas(&["buildpacks:set", "nope", "-a", "hello"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("no buildpack named \"nope\""), "{out}");
}
