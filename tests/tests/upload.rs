//! `caas push --image` when the image is only on the user's machine: the CLI uploads it with
//! `docker save`, the server loads it, and a second push uploads nothing.
//!
//! "The user's machine" is a second Docker engine on this machine, with its own socket and data
//! root, reached by the CLI through `DOCKER_HOST`; caasd keeps using the default engine. So the
//! image really exists on one side only.

use caas_e2e::{docker, repo_root, run, CmdOutput, Platform};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A second dockerd that only holds images. It gets a bridge of its own: a dockerd started with
/// `--bridge=none` deletes `docker0`, which would cut every container of the main engine off.
struct SecondEngine {
    child: Child,
    dir: tempfile::TempDir,
    bridge: String,
}

fn ip(args: &[&str]) -> CmdOutput {
    run(Command::new("ip").args(args), None, Duration::from_secs(30))
}

impl SecondEngine {
    fn start() -> SecondEngine {
        caas_e2e::require_docker();
        let dir = tempfile::Builder::new()
            .prefix("caas-e2e-engine-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
        let id = std::process::id();
        let bridge = format!("caasu{}", id % 100_000);
        let _ = ip(&["link", "del", &bridge]);
        for args in [
            vec!["link", "add", bridge.as_str(), "type", "bridge"],
            vec![
                "addr",
                "add",
                &format!("10.213.{}.1/24", id % 250),
                "dev",
                bridge.as_str(),
            ],
            vec!["link", "set", bridge.as_str(), "up"],
        ] {
            let out = ip(&args);
            assert!(out.success(), "ip {}: {out}", args.join(" "));
        }
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .arg(format!("--bridge={bridge}"))
            .args(["--iptables=false", "--ip-masq=false"])
            .args(["--containerd-namespace", &format!("caas-e2e-{id}")])
            .args([
                "--containerd-plugins-namespace",
                &format!("caas-e2e-{id}-plugins"),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting a second dockerd");
        let engine = SecondEngine { child, dir, bridge };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !engine.docker(&["info"]).success() {
            assert!(
                Instant::now() < deadline,
                "the second dockerd did not start:\n{}",
                engine.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        engine
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    fn docker(&self, args: &[&str]) -> CmdOutput {
        run(
            Command::new("docker")
                .env("DOCKER_HOST", self.host())
                .args(args),
            None,
            Duration::from_secs(120),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Its overlay mounts are gone with it; the data root and the bridge can go.
        let _ = std::fs::remove_dir_all(self.dir.path().join("data"));
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

#[test]
fn an_image_only_the_user_has_is_uploaded_once() {
    let local = SecondEngine::start();
    let tag = format!(
        "caas-e2e-upload:{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    let script: PathBuf = repo_root().join("examples/demo/build-image.sh");
    let built = run(
        Command::new("bash")
            .env("DOCKER_HOST", local.host())
            .arg(&script)
            .arg("--greeting")
            .arg(format!("uploaded {tag}"))
            .arg(&tag),
        None,
        Duration::from_secs(300),
    );
    assert!(built.success(), "{built}");
    assert!(
        !docker(&["image", "inspect", &tag]).success(),
        "the server's engine must not have {tag}"
    );

    let p = Platform::start();
    p.caas_ok(&["apps:create", "uploaded"]);
    let push = |p: &Platform| {
        let mut cmd = p.caas_command(&["push", "--image", &tag, "-a", "uploaded"]);
        cmd.env("DOCKER_HOST", local.host());
        run(&mut cmd, None, Duration::from_secs(300))
    };
    let first = push(&p);
    assert!(first.success(), "{first}");
    let said = format!("{}{}", first.stdout, first.stderr);
    assert!(said.contains("Upload"), "the first push uploads: {first}");
    assert!(
        docker(&["image", "inspect", &tag]).success(),
        "the server's engine has it now"
    );
    let body = p.wait_for(
        Duration::from_secs(60),
        "the uploaded image to answer",
        || match p.http_get("uploaded", "/") {
            Ok((200, b)) => Some(b),
            _ => None,
        },
    );
    assert!(
        body.starts_with(&format!("uploaded {tag}: web.1")),
        "{body}"
    );

    let second = push(&p);
    assert!(second.success(), "{second}");
    let said = format!("{}{}", second.stdout, second.stderr);
    assert!(
        !said.contains("Upload"),
        "the server already has it: nothing is uploaded: {second}"
    );
    assert!(said.contains("Released v2"), "{second}");

    drop(p);
    let _ = docker(&["rmi", "-f", &tag]);
}
