//! A `caasd agent` of a test's own: another host joining a platform with a join token made for
//! it (`caas hosts:add`), on an address and port range of its own, optionally driving another
//! Docker engine.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::binaries::binaries;
use crate::platform::Platform;

/// A `caasd agent` process, killed when dropped (its log is printed when the test failed).
pub struct AgentProcess {
    child: Option<Child>,
    data_dir: tempfile::TempDir,
}

impl AgentProcess {
    /// Adds the host (`caas hosts:add NAME --address ADDRESS`) and starts `caasd agent` with the
    /// join token that printed, for `p`, on the 100 ports above the platform's own range; with
    /// `docker_host`, against that engine (`SecondEngine::host`).
    pub fn start(
        p: &Platform,
        name: &str,
        address: &str,
        docker_host: Option<&str>,
    ) -> AgentProcess {
        let data_dir = tempfile::Builder::new()
            .prefix("caas-e2e-agent-")
            .tempdir()
            .unwrap();
        let (lo, _) = p.port_range();
        let token = join_token(p, name, address);
        let log = File::create(data_dir.path().join("agent.log")).unwrap();
        let mut cmd = Command::new(&binaries().caasd);
        if let Some(host) = docker_host {
            cmd.env("DOCKER_HOST", host);
        }
        let child = cmd
            .arg("agent")
            .args(["--server", p.api_url()])
            .args(["--join-token", &token])
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--address", address, "--name", name])
            .args(["--port-range", &format!("{}-{}", lo + 100, lo + 199)])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        AgentProcess {
            child: Some(child),
            data_dir,
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.path().join("agent.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `caas hosts:add NAME --address IP`: the join token it printed.
fn join_token(p: &Platform, name: &str, address: &str) -> String {
    let out = p.caas_ok(&["hosts:add", name, "--address", address]);
    let after = out
        .split("--join-token ")
        .nth(1)
        .unwrap_or_else(|| panic!("no token in {out}"));
    after.split_whitespace().next().unwrap().to_string()
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- the agent's log ---\n{}", self.log());
        }
    }
}
