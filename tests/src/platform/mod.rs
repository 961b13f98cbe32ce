//! The platform under test: one caasd of its own on a fresh data dir, started, restarted, killed
//! and cleaned up after. What a test does with it is in the submodules: the CLI (`cli`), requests
//! through the gateway (`gateway`) and what Docker runs for it (`containers`).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::binaries::binaries;
use crate::docker::require_docker;
use crate::process::{poll, tail};

mod cli;
mod containers;
mod gateway;

pub use cli::{CLI_TIMEOUT, GIT_TIMEOUT};
pub use containers::Container;

/// How long caasd may take to bind its listeners and write `caasd.json`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many ports at the top of a platform's range are its gateway's TCP route ports
/// ([`Platform::tcp_ports`]).
pub const TCP_PORTS: u16 = 10;

/// The domain every test platform serves apps under (`APP.localhost`).
pub const DOMAIN: &str = "localhost";

/// How much of caasd's log a failure message quotes: enough for the lines that led up to it.
const LOG_TAIL_LINES: usize = 60;

/// What caasd writes to `DATA_DIR/caasd.json` once its listeners are bound.
#[derive(Debug, Clone, Deserialize)]
pub struct CaasdInfo {
    /// e.g. `http://127.0.0.1:41234`
    pub api: String,
    /// e.g. `127.0.0.1:41235`
    pub gateway: String,
    /// The gateway's HTTPS address, when caasd was started with `--https`.
    #[serde(default)]
    pub https: Option<String>,
    pub cluster_id: String,
    pub pid: u32,
}

/// A caasd of its own: a fresh temp data dir, loopback listeners on free ports, and a port range
/// for app instances of its own. Dropping it kills caasd and removes every container, network
/// and volume of its cluster; when the test is panicking, the temp dir is kept and the path of
/// caasd's log is printed.
pub struct Platform {
    tmp: Option<tempfile::TempDir>,
    data_dir: PathBuf,
    home: PathBuf,
    log_path: PathBuf,
    port_range: (u16, u16),
    extra_args: Vec<String>,
    child: Option<Child>,
    info: Option<CaasdInfo>,
    gateway: Option<SocketAddr>,
    token: String,
    /// The data dir is a tmpfs of its own ([`Platform::start_on_small_disk`]).
    small_disk: bool,
}

static PLATFORMS: AtomicU32 = AtomicU32::new(0);

/// A 100-port range for one platform's instances, distinct for each platform of this process and
/// offset by the process id, within 20000-32767: below Linux's ephemeral range (32768-60999), so
/// the local end of some unrelated connection never sits on a port a test expects to be free.
/// (caasd also skips ports that are taken.)
fn next_port_range() -> (u16, u16) {
    const FIRST: u32 = 20_000;
    const WIDTH: u32 = 100;
    const SLOTS: u32 = (32_768 - FIRST) / WIDTH;
    let n = PLATFORMS.fetch_add(1, Ordering::Relaxed);
    let slot = (std::process::id().wrapping_mul(37).wrapping_add(n)) % SLOTS;
    let start = FIRST + slot * WIDTH;
    (start as u16, (start + WIDTH - 1) as u16)
}

impl Platform {
    /// Starts caasd on a fresh data dir and waits until it is up.
    pub fn start() -> Platform {
        Platform::start_with(&[])
    }

    /// Like [`Platform::start`], with extra caasd arguments (e.g. `["--max-scale", "3"]`); they
    /// are passed again on every restart.
    pub fn start_with(extra_args: &[&str]) -> Platform {
        let mut platform = Platform::prepare(extra_args);
        // On a panic in here `platform` is dropped, which kills caasd and keeps its log.
        platform.spawn(&binaries().caasd);
        platform
    }

    /// Another caasd server sharing `first`'s store (`extra_args` name it: `--store etcd://...`):
    /// the admin user is `first`'s, so its token is copied here before the start.
    pub fn start_beside(first: &Platform, extra_args: &[&str]) -> Platform {
        let mut platform = Platform::prepare(extra_args);
        fs::create_dir_all(&platform.data_dir).expect("cannot create the data dir");
        fs::write(
            platform.data_dir.join("admin-token"),
            format!("{}\n", first.token()),
        )
        .expect("cannot copy the admin token");
        platform.spawn(&binaries().caasd);
        platform
    }

    /// Like [`Platform::start_with`], with the data dir on a tmpfs of `mb` MB of its own: a
    /// small filesystem a test can fill. It is unmounted when the platform is dropped (caasd's
    /// log is copied out first).
    pub fn start_on_small_disk(mb: u64, extra_args: &[&str]) -> Platform {
        let mut platform = Platform::prepare(extra_args);
        fs::create_dir_all(&platform.data_dir).expect("cannot create the data dir");
        let size = format!("size={mb}m");
        let data = platform.data_dir.to_str().expect("a UTF-8 temp path");
        let out = crate::run(
            Command::new("mount").args(["-t", "tmpfs", "-o", &size, "tmpfs", data]),
            None,
            Duration::from_secs(30),
        );
        assert_eq!(out.code, 0, "mounting a tmpfs needs root: {out}");
        platform.small_disk = true;
        platform.spawn(&binaries().caasd);
        platform
    }

    fn prepare(extra_args: &[&str]) -> Platform {
        require_docker();
        let tmp = tempfile::Builder::new()
            .prefix("caas-e2e-")
            .tempdir()
            .expect("cannot create a temp dir");
        let root = tmp.path().to_path_buf();
        let data_dir = root.join("data");
        let home = root.join("home");
        fs::create_dir_all(home.join(".config")).expect("cannot create the temp home");
        Platform {
            small_disk: false,
            tmp: Some(tmp),
            log_path: data_dir.join("caasd.log"),
            data_dir,
            home,
            port_range: next_port_range(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
            info: None,
            gateway: None,
            token: String::new(),
        }
    }

    fn spawn(&mut self, caasd: &Path) {
        fs::create_dir_all(&self.data_dir).expect("cannot create the data dir");
        let json_path = self.data_dir.join("caasd.json");
        match fs::remove_file(&json_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot remove the stale {}: {e}", json_path.display()),
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("cannot open caasd's log file");
        // The top ports of the platform's range are the gateway's TCP route ports
        // (`caas ports:add`); instances get the rest.
        let (lo, hi) = self.port_range;
        let range = format!("{lo}-{}", hi - TCP_PORTS);
        let tcp_ports = format!("{}-{hi}", hi - TCP_PORTS + 1);
        let mut cmd = Command::new(caasd);
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--api", "127.0.0.1:0"])
            .args(["--gateway", "127.0.0.1:0"])
            .args(["--domain", DOMAIN])
            .args(["--port-range", &range])
            .args(&self.extra_args);
        if !self.extra_args.iter().any(|a| a == "--tcp-ports") {
            cmd.args(["--tcp-ports", &tcp_ports]);
        }
        clear_caas_env(&mut cmd);
        let _ = writeln!(log, "=== caas-e2e: {cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("cannot clone the log file handle"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", caasd.display()));
        let pid = child.id();
        self.child = Some(child);
        self.info = None;
        self.gateway = None;

        let deadline = Instant::now() + START_TIMEOUT;
        let info: CaasdInfo = loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "caasd exited ({status}) before writing {}\n{}",
                    json_path.display(),
                    self.log_report()
                );
            }
            // caasd writes it atomically (rename), so a file that parses is complete.
            if let Ok(text) = fs::read_to_string(&json_path) {
                match serde_json::from_str::<CaasdInfo>(&text) {
                    Ok(info) => break info,
                    Err(e) if Instant::now() >= deadline => {
                        panic!("{} does not parse: {e}\n{text}", json_path.display())
                    }
                    Err(_) => {}
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "caasd did not write {} within {START_TIMEOUT:?}\n{}",
                    json_path.display(),
                    self.log_report()
                );
            }
            thread::sleep(Duration::from_millis(50));
        };
        if info.pid != pid {
            panic!(
                "{} names pid {}, but the caasd started is pid {pid}",
                json_path.display(),
                info.pid
            );
        }
        let gateway: SocketAddr = info.gateway.parse().unwrap_or_else(|e| {
            panic!(
                "caasd.json: gateway {:?} is not an address: {e}",
                info.gateway
            )
        });
        let token_path = self.data_dir.join("admin-token");
        let token = fs::read_to_string(&token_path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", token_path.display()));
        let token = token.trim().to_string();
        assert!(!token.is_empty(), "{} is empty", token_path.display());
        self.info = Some(info);
        self.gateway = Some(gateway);
        self.token = token;
    }

    /// What caasd wrote to `caasd.json` at its latest start.
    pub fn info(&self) -> &CaasdInfo {
        self.info.as_ref().expect("caasd is not started")
    }

    /// The API base URL, e.g. `http://127.0.0.1:41234`.
    pub fn api_url(&self) -> &str {
        &self.info().api
    }

    /// The gateway's address.
    pub fn gateway(&self) -> SocketAddr {
        self.gateway.expect("caasd is not started")
    }

    /// The gateway's HTTPS address (caasd started with `--https 127.0.0.1:0`).
    pub fn https(&self) -> SocketAddr {
        self.info()
            .https
            .as_deref()
            .expect("caasd was started without --https")
            .parse()
            .expect("caasd.json: https is an address")
    }

    /// The admin token.
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn cluster_id(&self) -> &str {
        &self.info().cluster_id
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The temp HOME the CLI runs with (its config lands under `HOME/.config/caas`).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// caasd's stdout and stderr, across restarts.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The host port range of this platform: caasd's instance ports, and at its top the
    /// gateway's TCP route ports ([`Platform::tcp_ports`]).
    pub fn port_range(&self) -> (u16, u16) {
        self.port_range
    }

    /// The gateway's TCP route ports (`caasd --tcp-ports`): the top [`TCP_PORTS`] of the range.
    pub fn tcp_ports(&self) -> (u16, u16) {
        (self.port_range.1 - TCP_PORTS + 1, self.port_range.1)
    }

    /// The pid of the running caasd.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `http://APP.localhost:PORT`: an app's URL through this platform's gateway.
    pub fn app_url(&self, app: &str) -> String {
        format!("http://{app}.{DOMAIN}:{}", self.gateway().port())
    }

    /// The last `n` lines of caasd's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log_path.display()));
        tail(&text, n)
    }

    fn log_report(&self) -> String {
        format!(
            "--- last {LOG_TAIL_LINES} lines of caasd's log ({}) ---\n{}",
            self.log_path.display(),
            self.log_tail(LOG_TAIL_LINES)
        )
    }

    /// Polls `f` every 200 ms until it returns `Some`; on timeout panics with `what` and the
    /// tail of caasd's log.
    pub fn wait_for<T>(&self, timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
        poll(timeout, f).unwrap_or_else(|| {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                self.log_report()
            )
        })
    }

    // --- process control ---------------------------------------------------------------------

    /// Whether caasd is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILLs caasd and waits for it to be gone. Its containers keep running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The extra caasd arguments for the next (re)start.
    pub fn set_args(&mut self, extra_args: &[&str]) {
        self.extra_args = extra_args.iter().map(|s| s.to_string()).collect();
    }

    /// The gateway process caasd started (it outlives caasd: a restart or a kill -9 of caasd
    /// leaves it serving), from `DATA_DIR/gateway/gateway.json`.
    pub fn gateway_pid(&self) -> Option<u32> {
        let text = fs::read_to_string(self.data_dir.join("gateway/gateway.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let pid = v["pid"].as_u64()? as u32;
        // Still that gateway, not a process that got its pid since.
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let dir = self.data_dir.join("gateway");
        let ours = cmdline
            .split(|b| *b == 0)
            .any(|a| a == dir.as_os_str().as_encoded_bytes());
        ours.then_some(pid)
    }

    /// Kills the gateway process with SIGKILL (when the test is over, or to test without it).
    pub fn kill_gateway(&mut self) {
        if let Some(pid) = self.gateway_pid() {
            // SAFETY: kill(2); the pid is the gateway of this platform's data dir.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }

    /// SIGTERMs caasd and waits (up to 30 s, then SIGKILL and panic) until it exits.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) with the pid of a child we have not reaped yet.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "caasd did not exit within 30 s of SIGTERM; killed it\n{}",
                        self.log_report()
                    );
                }
            }
        }
    }

    /// Starts caasd again on the same data dir and port range (new API and gateway ports) and
    /// waits for a fresh `caasd.json`. A caasd still running is stopped with SIGTERM first.
    pub fn restart(&mut self) {
        if self.is_running() {
            self.terminate();
        }
        self.child = None;
        self.spawn(&binaries().caasd);
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.kill9();
        self.kill_gateway();
        self.remove_cluster_objects();
        if self.small_disk {
            let kept = self.data_dir.with_file_name("caasd.log");
            let _ = fs::copy(&self.log_path, &kept);
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.data_dir)
                .status();
            self.log_path = kept;
        }
        if thread::panicking() {
            if let Some(tmp) = self.tmp.take() {
                let kept = tmp.keep();
                eprintln!(
                    "caas-e2e: the test failed; kept {} — caasd's log: {}\n{}",
                    kept.display(),
                    self.log_path.display(),
                    self.log_report()
                );
            }
        }
    }
}

/// Removes the caller's CAAS_* variables so a test runs only with what the harness sets.
fn clear_caas_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CAAS_") {
            cmd.env_remove(name);
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn port_ranges_are_distinct_and_in_bounds() {
        let a = next_port_range();
        let b = next_port_range();
        assert_ne!(a, b);
        for (lo, hi) in [a, b] {
            assert!(lo >= 20_000 && hi < 32_768 && hi - lo == 99, "{lo}-{hi}");
        }
    }
}
