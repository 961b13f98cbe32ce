//! The Docker engine the platform runs on: the `docker` command, checks that the engine and the
//! stack image are there, and the test image.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::binaries::repo_root;
use crate::process::{run, wait_output, CmdOutput};

/// The run image built apps are laid on, and caasd's default `--stack-image`.
pub const STACK_IMAGE: &str = "caas/stack:latest";
/// The image every buildpack build runs in, and caasd's default `--build-image`.
pub const BUILD_IMAGE: &str = "caas/build:latest";

/// Runs `docker ARGS` (timeout 120 s).
pub fn docker(args: &[&str]) -> CmdOutput {
    run(
        Command::new("docker").args(args),
        None,
        Duration::from_secs(120),
    )
}

/// Runs `docker ARGS`, panics unless it succeeds, returns its stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    if !out.success() {
        panic!("docker {} failed\n{out}", args.join(" "));
    }
    out.stdout
}

/// Panics with a clear message unless the Docker Engine answers. Never skips.
pub fn require_docker() {
    static DOCKER: OnceLock<Result<String, String>> = OnceLock::new();
    let state = DOCKER.get_or_init(|| {
        let mut cmd = Command::new("docker");
        cmd.args(["info", "--format", "{{.ServerVersion}}"]);
        let spawned = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match spawned {
            Err(e) => Err(format!("cannot run the docker command: {e}")),
            Ok(child) => {
                // `docker info` against a wedged daemon can hang: give it 60 s.
                let out = wait_output(child, Duration::from_secs(60));
                match out {
                    Some(o) if o.code == 0 => Ok(o.stdout.trim().to_string()),
                    Some(o) => Err(format!("docker info: {}", o.stderr.trim())),
                    None => Err("docker info did not answer within 60 s".to_string()),
                }
            }
        }
    });
    if let Err(e) = state {
        panic!(
            "Docker Engine is not running: start dockerd (./install.sh does it) — \
             end-to-end tests need it\n({e})"
        );
    }
}

/// Panics with how to get it unless the engine has the stack image (and answers at all). Tests
/// that build from source call this first, so that a missing image is said plainly instead of as
/// an obscure build failure. Never skips.
pub fn require_stack() {
    require_docker();
    for image in [STACK_IMAGE, BUILD_IMAGE] {
        if !docker(&["image", "inspect", image]).success() {
            panic!(
                "the stack image {image} is missing: build it with stack/build.sh \
                 (install.sh and .ci/run do)"
            );
        }
    }
}

/// An image of the demo web app (examples/demo) with `GREETING` baked in, tagged
/// `caas-test-web:<hash of greeting>`, built if missing or out of date. Safe to call from many
/// threads and processes at once (the build script locks per tag and moves the tag atomically).
pub fn test_image(greeting: &str) -> String {
    require_docker();
    static BUILT: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(tag) = built.get(greeting) {
        return tag.clone();
    }
    let tag = format!("caas-test-web:{:016x}", fnv1a(greeting.as_bytes()));
    let script = repo_root().join("examples/demo/build-image.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg("--greeting").arg(greeting).arg(&tag);
    // Generous: the first build may apt-get install busybox-static.
    let out = run(&mut cmd, None, Duration::from_secs(600));
    if !out.success() {
        panic!("building the test image {tag} failed\n{out}");
    }
    built.insert(greeting.to_string(), tag.clone());
    tag
}

/// The echo app (`tests/fixtures/echo`): node on the stack image, answering every request with
/// JSON of what it received (HTTP version, method, path, headers, body size), over HTTP/1.1 on
/// `$PORT`, or cleartext HTTP/2 (h2c, prior knowledge) with the config var `ECHO_PROTOCOL=h2c`;
/// with `ECHO_TCP_PORT=N` it also answers each line sent to port N with `INSTANCE: LINE`. Tagged `caas-test-echo:<hash of the fixture and the
/// stack image>`, built when missing. Needs the stack image.
pub fn echo_image() -> String {
    require_stack();
    static BUILT: Mutex<Option<String>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tag) = built.as_ref() {
        return tag.clone();
    }
    let dir = repo_root().join("tests/fixtures/echo");
    let mut recipe = Vec::new();
    for f in ["server.js", "Dockerfile"] {
        recipe.extend(std::fs::read(dir.join(f)).expect("the echo fixture is there"));
    }
    recipe.extend(docker_ok(&["image", "inspect", "--format", "{{.Id}}", STACK_IMAGE]).bytes());
    let tag = format!("caas-test-echo:{:016x}", fnv1a(&recipe));
    if !docker(&["image", "inspect", &tag]).success() {
        let out = run(
            Command::new("docker")
                .env("DOCKER_BUILDKIT", "0")
                .args(["build", "--pull=false", "--force-rm", "-q", "-t", &tag])
                .arg(&dir),
            None,
            Duration::from_secs(300),
        );
        if !out.success() {
            panic!("building the echo image {tag} failed\n{out}");
        }
    }
    *built = Some(tag.clone());
    tag
}

/// FNV-1a, 64 bits: a stable hash for tags (std's hasher may change between Rust versions).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn tags_hash_stably() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
