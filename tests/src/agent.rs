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
    /// Adds the host (`caas hosts:add NAME --address ADDRESS`) and starts the `caasd agent`
    /// command that printed (over TLS, pinning the control plane's certificate), for `p`, on the
    /// 100 ports above the platform's own range; with `docker_host`, against that engine
    /// (`SecondEngine::host`).
    pub fn start(
        p: &Platform,
        name: &str,
        address: &str,
        docker_host: Option<&str>,
    ) -> AgentProcess {
        AgentProcess::run(p, &join_command(p, name, address), docker_host)
    }

    /// Starts `caasd ARGS` (a join command, maybe altered) with a data dir of its own, on the
    /// 100 ports above the platform's own range.
    pub fn run(p: &Platform, args: &[String], docker_host: Option<&str>) -> AgentProcess {
        let data_dir = tempfile::Builder::new()
            .prefix("caas-e2e-agent-")
            .tempdir()
            .unwrap();
        let (lo, _) = p.port_range();
        let log = File::create(data_dir.path().join("agent.log")).unwrap();
        let mut cmd = Command::new(&binaries().caasd);
        if let Some(host) = docker_host {
            cmd.env("DOCKER_HOST", host);
        }
        let child = cmd
            .args(args)
            .arg("--data-dir")
            .arg(data_dir.path())
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

    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// Waits up to `timeout` for the agent to exit by itself: its exit code, `None` if it runs.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        None
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

/// `caas hosts:add NAME --address IP`: the arguments of the `caasd agent ...` command it printed
/// (without `caasd`).
pub fn join_command(p: &Platform, name: &str, address: &str) -> Vec<String> {
    let out = p.caas_ok(&["hosts:add", name, "--address", address]);
    let line = out
        .split("caasd agent ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_else(|| panic!("no caasd agent command in {out}"));
    std::iter::once("agent")
        .chain(line.split_whitespace())
        .map(String::from)
        .collect()
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- the agent's log ---\n{}", self.log());
        }
    }
}
