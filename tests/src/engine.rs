//! A second Docker engine on this machine, for tests that need an engine other than the one caasd
//! uses: another host's, or the user's own.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::docker::require_docker;
use crate::process::{run, CmdOutput};

/// A second Docker engine on this machine: its own socket, data root and bridge, no iptables
/// rules (its published ports go through its userland proxy). It stands for another host's
/// engine, or for the user's own. It gets a bridge of its own: a dockerd started with
/// `--bridge=none` deletes `docker0`, which would cut every container of the main engine off.
pub struct SecondEngine {
    child: Child,
    dir: tempfile::TempDir,
    bridge: String,
    id: u32,
}

fn ip(args: &[&str]) -> CmdOutput {
    run(Command::new("ip").args(args), None, Duration::from_secs(30))
}

impl SecondEngine {
    pub fn start() -> SecondEngine {
        require_docker();
        let dir = tempfile::Builder::new()
            .prefix("caas-e2e-engine-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        // Unique per engine: per process, and per engine within a process.
        static ENGINES: AtomicU32 = AtomicU32::new(0);
        let n = ENGINES.fetch_add(1, Ordering::Relaxed);
        let id = std::process::id().wrapping_mul(7).wrapping_add(n);
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
        let child = spawn_dockerd(d, &bridge, id);
        let engine = SecondEngine {
            child,
            dir,
            bridge,
            id,
        };
        engine.wait_ready();
        engine
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.docker(&["info"]).success() {
            assert!(
                Instant::now() < deadline,
                "the second dockerd did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops dockerd as a service manager would (SIGTERM: it stops its containers, which are
    /// not live-restored) and starts it again on the same data, as after an upgrade or a crash.
    pub fn restart(&mut self) {
        self.stop_dockerd();
        self.child = spawn_dockerd(self.dir.path(), &self.bridge, self.id);
        self.wait_ready();
    }

    /// Freezes dockerd (SIGSTOP): every Docker call to it hangs until [`SecondEngine::resume`],
    /// as when an engine stalls; its containers keep running.
    pub fn pause(&self) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGSTOP) };
    }

    pub fn resume(&self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGCONT) };
    }

    fn stop_dockerd(&mut self) {
        self.resume();
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `DOCKER_HOST` for this engine.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    /// `docker ARGS` against this engine.
    pub fn docker(&self, args: &[&str]) -> CmdOutput {
        run(
            Command::new("docker")
                .env("DOCKER_HOST", self.host())
                .args(args),
            None,
            Duration::from_secs(120),
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        self.stop_dockerd();
        // Its overlay mounts are gone with it; the data root and the bridge can go.
        let _ = std::fs::remove_dir_all(self.dir.path().join("data"));
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// A dockerd on `dir`'s data, socket and pid file, with its own bridge and containerd namespace.
fn spawn_dockerd(dir: &std::path::Path, bridge: &str, id: u32) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("dockerd.log"))
        .unwrap();
    Command::new("dockerd")
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("dockerd.pid"))
        .arg("-H")
        .arg(format!("unix://{}", dir.join("docker.sock").display()))
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
        .expect("starting a second dockerd")
}
