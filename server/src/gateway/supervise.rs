//! caasd's side of the gateway process: make sure one serves for this data dir, without ever
//! having a moment when none does.
//!
//! - A gateway that runs (its `gateway.json` names a live `caasd gateway` process of this data
//!   dir), of this version and asked for the same address, is left alone: a restart, an upgrade
//!   of the same version or a `kill -9` of caasd does not touch the apps' traffic.
//! - Otherwise a new one starts, detached (its own process group, so signals for caasd do not
//!   reach it), on the same address: the address the old one actually has when it was asked for
//!   port 0. Once it writes its run file, the old one gets SIGTERM and finishes its requests.

use super::process::{run_file, RunFile};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a new gateway gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct Spec {
    /// The gateway's own folder: run file, route cache, log.
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Where to serve HTTPS, if anywhere.
    pub https: Option<SocketAddr>,
    pub server: String,
    pub token_file: PathBuf,
    pub domain: String,
    /// Extra arguments (`--drain 30s`, limits).
    pub args: Vec<String>,
}

impl Spec {
    /// What a running gateway must match to be kept: everything it was started with, and the
    /// binary (an upgrade replaces it). Recorded in its run file through `--spec`.
    pub fn id(&self) -> String {
        use sha2::Digest;
        let exe = std::env::current_exe().unwrap_or_default();
        let stamp = std::fs::metadata(&exe)
            .ok()
            .map(|m| (m.len(), m.modified().ok()));
        let text = format!(
            "{}|{:?}|{}|{}|{}|{:?}|{}|{:?}|{}",
            self.listen,
            self.https,
            self.server,
            self.token_file.display(),
            self.domain,
            self.args,
            exe.display(),
            stamp,
            env!("CARGO_PKG_VERSION"),
        );
        hex::encode(&sha2::Sha256::digest(text.as_bytes())[..8])
    }
}

fn read_run_file(data_dir: &Path) -> Option<RunFile> {
    serde_json::from_slice(&std::fs::read(run_file(data_dir)).ok()?).ok()
}

/// Whether `pid` is a running `caasd gateway` of `data_dir`.
fn is_our_gateway(pid: u32, data_dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let dir = data_dir.as_os_str().as_encoded_bytes();
    args.contains(&b"gateway".as_slice()) && args.contains(&dir)
}

/// Where a gateway serves: HTTP, and HTTPS when asked to.
#[derive(Debug, Clone, Copy)]
pub struct Serving {
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
}

/// The gateway serving for `spec`, started when needed. Answers the addresses it listens on.
pub async fn ensure(spec: &Spec) -> anyhow::Result<Serving> {
    std::fs::create_dir_all(&spec.data_dir)
        .with_context(|| format!("creating {}", spec.data_dir.display()))?;
    let running = read_run_file(&spec.data_dir).filter(|r| is_our_gateway(r.pid, &spec.data_dir));
    let id = spec.id();
    if let Some(r) = &running {
        if r.spec == id {
            tracing::info!(pid = r.pid, addr = %r.addr, "the gateway is already serving");
            return Ok(Serving {
                http: r.addr,
                https: r.https,
            });
        }
        tracing::info!(
            pid = r.pid,
            "the gateway runs another binary or other options: handing over to a new one"
        );
    }
    // A port 0 request for a gateway that replaces one takes over that one's port.
    let listen = match &running {
        Some(r) if spec.listen.port() == 0 && r.requested == spec.listen => r.addr,
        _ => spec.listen,
    };
    let https = match (&running, spec.https) {
        (Some(r), Some(want)) if want.port() == 0 && r.https_requested == Some(want) => {
            r.https.or(Some(want))
        }
        (_, want) => want,
    };
    let pid = spawn(spec, listen, https, &id)?;
    let addr = wait_ready(&spec.data_dir, pid).await?;
    if let Some(old) = running {
        tracing::info!(
            old = old.pid,
            new = pid,
            "a new gateway took over; the old one finishes its requests"
        );
        // SAFETY: sending a signal to a process id we checked is our gateway.
        unsafe {
            libc::kill(old.pid as i32, libc::SIGTERM);
        }
    }
    Ok(addr)
}

fn spawn(
    spec: &Spec,
    listen: SocketAddr,
    https: Option<SocketAddr>,
    id: &str,
) -> anyhow::Result<u32> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("finding caasd's own executable")?;
    let log_path = spec.data_dir.join("gateway.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("gateway")
        .arg("--data-dir")
        .arg(&spec.data_dir)
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--server")
        .arg(&spec.server)
        .arg("--token-file")
        .arg(&spec.token_file)
        .arg("--domain")
        .arg(&spec.domain)
        .arg("--spec")
        .arg(id)
        .args(https.map(|a| format!("--https={a}")))
        .args(&spec.args)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: Ctrl-C or a kill of caasd's group leaves it serving.
        .process_group(0);
    let child = cmd.spawn().context("starting the gateway process")?;
    let pid = child.id();
    // Reaped when it ends, so it never lingers as a zombie while caasd runs.
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    Ok(pid)
}

async fn wait_ready(data_dir: &Path, pid: u32) -> anyhow::Result<Serving> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(r) = read_run_file(data_dir).filter(|r| r.pid == pid) {
            return Ok(Serving {
                http: r.addr,
                https: r.https,
            });
        }
        if !Path::new(&format!("/proc/{pid}")).exists() || Instant::now() >= deadline {
            let log = std::fs::read_to_string(data_dir.join("gateway.log")).unwrap_or_default();
            let last: Vec<&str> = log.lines().rev().take(5).collect();
            anyhow::bail!(
                "the gateway did not start (see {}): {}",
                data_dir.join("gateway.log").display(),
                last.into_iter().rev().collect::<Vec<_>>().join(" / ")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
