//! The end-to-end test harness: drives the real `caas` and `caasd` binaries against the real
//! Docker engine.
//!
//! ```no_run
//! use caas_e2e::{test_image, Platform};
//! use std::time::Duration;
//!
//! let image = test_image("Hello from a test");
//! let p = Platform::start();
//! p.caas_ok(&["apps:create", "demo"]);
//! p.caas_ok(&["push", "--image", &image, "-a", "demo"]);
//! let body = p.wait_for(Duration::from_secs(30), "demo to answer 200", || {
//!     match p.http_get("demo", "/") {
//!         Ok((200, body)) => Some(body),
//!         _ => None,
//!     }
//! });
//! assert!(body.contains("Hello from a test"));
//! // Dropping `p` kills caasd and removes every container of its cluster.
//! ```
//!
//! Binaries: the harness looks for `caas` and `caasd` in the cargo target directory the test
//! executable runs from (`target/debug/deps/x` → `target/debug/`). `cargo test --workspace` builds
//! the binaries of a package only when that package has integration tests of its own, so when it
//! runs under cargo the harness first runs `cargo build --workspace --bins` (a no-op when they are
//! fresh) so that a test never runs stale binaries. `CAAS_E2E_NO_BUILD=1` skips that step;
//! `CAAS_E2E_BIN_DIR=DIR` takes the binaries from DIR instead (e.g. `/usr/local/bin`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// How long one CLI command may take before the harness kills it and fails the test.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(180);
/// How long caasd may take to bind its listeners and write `caasd.json`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The default timeout of the harness's HTTP client.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The domain every test platform serves apps under (`APP.localhost`).
pub const DOMAIN: &str = "localhost";

const POLL: Duration = Duration::from_millis(200);
const LOG_TAIL_LINES: usize = 60;

// ---------------------------------------------------------------------------------------------
// Paths and binaries
// ---------------------------------------------------------------------------------------------

/// The root of the caas repository (the cargo workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// Where the built `caas` and `caasd` are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub caas: PathBuf,
    pub caasd: PathBuf,
}

/// The `caas` and `caasd` binaries (built first when running under cargo; see the crate docs).
/// Panics with "build the binaries first: cargo build --workspace" when they cannot be found.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(locate_binaries)
}

fn locate_binaries() -> Binaries {
    let dir = match std::env::var_os("CAAS_E2E_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let dir = profile_dir();
            if std::env::var_os("CAAS_E2E_NO_BUILD").is_none() {
                build_binaries(&dir);
            }
            dir
        }
    };
    let bins = Binaries {
        caas: dir.join(format!("caas{}", std::env::consts::EXE_SUFFIX)),
        caasd: dir.join(format!("caasd{}", std::env::consts::EXE_SUFFIX)),
    };
    for bin in [&bins.caas, &bins.caasd] {
        if !bin.is_file() {
            panic!(
                "{} does not exist: build the binaries first: cargo build --workspace",
                bin.display()
            );
        }
    }
    bins
}

/// The cargo profile directory (`<target>/debug`) this test executable was built into. The test
/// executable lives in `<target>/<profile>/deps/`, wherever `CARGO_TARGET_DIR` put `<target>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("cannot find the test executable's path");
    let mut dir = exe
        .parent()
        .expect("the test executable has a parent directory")
        .to_path_buf();
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir.pop();
        return dir;
    }
    // Not run from a cargo target directory (a copied executable): fall back to the usual one.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("debug")
}

/// Runs `cargo build --workspace --bins` for the profile in `dir`, when running under cargo.
fn build_binaries(dir: &Path) {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return; // not run by cargo: use whatever is there
    };
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo_root())
        .args(["build", "--workspace", "--bins"]);
    match dir.file_name().and_then(OsStr::to_str) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
    }
    eprintln!("caas-e2e: building the binaries: {cmd:?}");
    let out = run(&mut cmd, None, Duration::from_secs(3600));
    if out.code != 0 {
        panic!(
            "build the binaries first: cargo build --workspace ({cmd:?} failed)\n{}",
            tail(&out.stderr, 80)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------------------------

/// What a finished command left.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// The exit code; -1 when the process was killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "exit code: {}", self.code)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

/// Runs `cmd` to completion with `stdin` as its input (none: /dev/null), capturing its output.
/// Panics when it cannot be started or runs longer than `timeout` (it is killed then).
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> CmdOutput {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let writer = match (stdin, child.stdin.take()) {
        (Some(input), Some(mut pipe)) => {
            let input = input.to_vec();
            Some(thread::spawn(move || {
                let _ = pipe.write_all(&input);
            }))
        }
        _ => None,
    };
    let stdout = reader_thread(child.stdout.take());
    let stderr = reader_thread(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let out = CmdOutput {
        code: status.and_then(|s| s.code()).unwrap_or(-1),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    if status.is_none() {
        panic!("{cmd:?} did not finish within {timeout:?}; killed it\n{out}");
    }
    out
}

fn reader_thread<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

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

fn wait_output(mut child: Child, timeout: Duration) -> Option<CmdOutput> {
    let stdout = reader_thread(child.stdout.take());
    let stderr = reader_thread(child.stderr.take());
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Some(CmdOutput {
                    code: status.code().unwrap_or(-1),
                    stdout: stdout.join().unwrap_or_default(),
                    stderr: stderr.join().unwrap_or_default(),
                })
            }
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
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

/// FNV-1a, 64 bits: a stable hash for tags (std's hasher may change between Rust versions).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Polls `f` every 200 ms until it returns `Some`, or panics after `timeout` saying `what`.
pub fn wait_until<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    poll(timeout, f).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL);
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// A response read by [`http_request`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names as received; look them up with [`HttpResponse::header`].
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`), read to the end.
/// Understands `Content-Length` and chunked bodies. `timeout` bounds the whole exchange.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || !matches!(method, "GET" | "HEAD" | "DELETE") {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;

    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no complete answer from {addr} within {timeout:?}"),
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A reset after a complete answer still leaves a usable answer.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !raw.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    parse_response(&raw, method == "HEAD")
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn parse_response(raw: &[u8], head: bool) -> io::Result<HttpResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            bad(format!(
                "incomplete HTTP answer ({} bytes): {:?}",
                raw.len(),
                String::from_utf8_lossy(&raw[..raw.len().min(200)])
            ))
        })?;
    let head_text = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next(), parts.next());
    if !version.is_some_and(|v| v.starts_with("HTTP/")) {
        return Err(bad(format!("not an HTTP status line: {status_line:?}")));
    }
    let status: u16 = code
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad(format!("bad status line: {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line: {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let rest = &raw[end + 4..];
    let mut response = HttpResponse {
        status,
        headers,
        body: String::new(),
    };
    if head || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(response);
    }
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        decode_chunked(rest)?
    } else if let Some(len) = response.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| bad(format!("bad Content-Length: {len:?}")))?;
        if rest.len() < len {
            return Err(bad(format!(
                "body cut short: {} of {len} bytes",
                rest.len()
            )));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    response.body = String::from_utf8_lossy(&body).into_owned();
    Ok(response)
}

fn decode_chunked(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("chunked body cut short"))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| bad(format!("bad chunk size: {size_text:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(bad("chunked body cut short"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

// ---------------------------------------------------------------------------------------------
// Platform: one caasd on a fresh data dir
// ---------------------------------------------------------------------------------------------

/// What caasd writes to `DATA_DIR/caasd.json` once its listeners are bound.
#[derive(Debug, Clone, Deserialize)]
pub struct CaasdInfo {
    /// e.g. `http://127.0.0.1:41234`
    pub api: String,
    /// e.g. `127.0.0.1:41235`
    pub gateway: String,
    pub cluster_id: String,
    pub pid: u32,
}

/// A container of a platform's cluster, as `docker ps` shows it.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub app: String,
    pub release: String,
    pub process: String,
    /// e.g. `web.1`
    pub instance: String,
    /// `running`, `exited`, `created`, ...
    pub state: String,
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
        require_docker();
        let bins = binaries();
        let tmp = tempfile::Builder::new()
            .prefix("caas-e2e-")
            .tempdir()
            .expect("cannot create a temp dir");
        let root = tmp.path().to_path_buf();
        let data_dir = root.join("data");
        let home = root.join("home");
        fs::create_dir_all(home.join(".config")).expect("cannot create the temp home");
        let mut platform = Platform {
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
        };
        // On a panic in here `platform` is dropped, which kills caasd and keeps its log.
        platform.spawn(&bins.caasd);
        platform
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
        let range = format!("{}-{}", self.port_range.0, self.port_range.1);
        let mut cmd = Command::new(caasd);
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--api", "127.0.0.1:0"])
            .args(["--gateway", "127.0.0.1:0"])
            .args(["--domain", DOMAIN])
            .args(["--port-range", &range])
            .args(&self.extra_args);
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

    /// The host port range given to caasd for app instances.
    pub fn port_range(&self) -> (u16, u16) {
        self.port_range
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

    // --- the CLI ---------------------------------------------------------------------------

    /// A `caas ARGS` command set up for this platform: `CAAS_SERVER`, `CAAS_TOKEN`, and HOME,
    /// XDG_CONFIG_HOME and CAAS_CONFIG inside the temp dir, so the real config is never touched.
    /// For what [`Platform::caas`] does not cover (stdin, a streaming `logs --tail`, other env).
    pub fn caas_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&binaries().caas);
        clear_caas_env(&mut cmd);
        cmd.args(args)
            .env("CAAS_SERVER", self.api_url())
            .env("CAAS_TOKEN", &self.token)
            .env("CAAS_CONFIG", self.home.join(".config/caas/config.json"))
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("NO_COLOR", "1");
        cmd
    }

    /// Runs `caas ARGS` (timeout 180 s).
    pub fn caas(&self, args: &[&str]) -> CmdOutput {
        run(&mut self.caas_command(args), None, CLI_TIMEOUT)
    }

    /// Runs `caas ARGS`, panics unless it exits 0, returns its stdout.
    pub fn caas_ok(&self, args: &[&str]) -> String {
        let out = self.caas(args);
        if out.code != 0 {
            panic!(
                "caas {} failed\n{out}\n{}",
                args.join(" "),
                self.log_report()
            );
        }
        out.stdout
    }

    /// Runs `caas ARGS`, panics unless it exits with `code`, returns the output.
    pub fn caas_code(&self, code: i32, args: &[&str]) -> CmdOutput {
        let out = self.caas(args);
        if out.code != code {
            panic!(
                "caas {}: expected exit code {code}\n{out}\n{}",
                args.join(" "),
                self.log_report()
            );
        }
        out
    }

    /// Runs `caas ARGS` (add `--json` yourself), panics unless it exits 0 with JSON on stdout.
    pub fn caas_json(&self, args: &[&str]) -> serde_json::Value {
        let stdout = self.caas_ok(args);
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "caas {}: stdout is not JSON ({e}):\n{stdout}",
                args.join(" ")
            )
        })
    }

    // --- HTTP through the gateway -----------------------------------------------------------

    /// `GET path` through the gateway with `Host: APP.localhost`: `(status, body)`.
    pub fn http_get(&self, app: &str, path: &str) -> io::Result<(u16, String)> {
        let r = self.http("GET", &format!("{app}.{DOMAIN}"), path, &[], b"")?;
        Ok((r.status, r.body))
    }

    /// Any request through the gateway, with any Host header.
    pub fn http(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<HttpResponse> {
        http_request(
            self.gateway(),
            method,
            host,
            path,
            headers,
            body,
            HTTP_TIMEOUT,
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

    // --- docker ------------------------------------------------------------------------------

    /// Every container (running or not) labelled with this platform's cluster id.
    pub fn containers(&self) -> Vec<Container> {
        let filter = format!("label=caas.cluster={}", self.cluster_id());
        let format = "{{.ID}}\t{{.Names}}\t{{.Label \"caas.app\"}}\t{{.Label \"caas.release\"}}\t\
                      {{.Label \"caas.process\"}}\t{{.Label \"caas.instance\"}}\t{{.State}}";
        docker_ok(&[
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &filter,
            "--format",
            format,
        ])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let field = |i: usize| f.get(i).copied().unwrap_or_default().to_string();
            Container {
                id: field(0),
                name: field(1),
                app: field(2),
                release: field(3),
                process: field(4),
                instance: field(5),
                state: field(6),
            }
        })
        .collect()
    }

    /// The running containers of one app.
    pub fn running_containers(&self, app: &str) -> Vec<Container> {
        self.containers()
            .into_iter()
            .filter(|c| c.app == app && c.state == "running")
            .collect()
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

    fn remove_cluster_objects(&self) {
        let Some(info) = &self.info else { return };
        if info.cluster_id.is_empty() {
            return;
        }
        let filter = format!("label=caas.cluster={}", info.cluster_id);
        let list = |args: &[&str]| -> Vec<String> {
            let out = docker(args);
            out.stdout.split_whitespace().map(str::to_string).collect()
        };
        let containers = list(&["ps", "-aq", "--no-trunc", "--filter", &filter]);
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            let out = docker(&args);
            if !out.success() {
                eprintln!("caas-e2e: removing the cluster's containers failed\n{out}");
            }
        }
        for kind in ["network", "volume"] {
            let names = list(&[kind, "ls", "-q", "--filter", &filter]);
            if !names.is_empty() {
                let mut args = vec![kind, "rm"];
                args.extend(names.iter().map(String::as_str));
                let _ = docker(&args);
            }
        }
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.kill9();
        self.remove_cluster_objects();
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

/// A fresh temp dir holding `files` (`(relative path, contents)`), e.g. an app directory to push.
/// It is removed when dropped.
pub fn temp_dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("caas-e2e-files-")
        .tempdir()
        .expect("cannot create a temp dir");
    for (name, contents) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("cannot create a directory");
        }
        File::create(&path)
            .and_then(|mut f| f.write_all(contents.as_bytes()))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    dir
}

// ---------------------------------------------------------------------------------------------
// A second Docker engine
// ---------------------------------------------------------------------------------------------

/// A second Docker engine on this machine: its own socket, data root and bridge, no iptables
/// rules (its published ports go through its userland proxy). It stands for another host's
/// engine, or for the user's own. It gets a bridge of its own: a dockerd started with
/// `--bridge=none` deletes `docker0`, which would cut every container of the main engine off.
pub struct SecondEngine {
    child: Child,
    dir: tempfile::TempDir,
    bridge: String,
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
        let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
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

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn parses_content_length_and_chunked_answers() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloEXTRA",
            false,
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "hello"));
        assert_eq!(r.header("x-a"), Some("b"));

        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (404, "abcde"));

        let r = parse_response(b"HTTP/1.0 200 OK\r\n\r\nuntil close", false).unwrap();
        assert_eq!(r.body, "until close");

        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", false).is_err()
        );
        assert!(parse_response(b"garbage", false).is_err());
    }

    #[test]
    fn port_ranges_are_distinct_and_in_bounds() {
        let a = next_port_range();
        let b = next_port_range();
        assert_ne!(a, b);
        for (lo, hi) in [a, b] {
            assert!(lo >= 20_000 && hi < 32_768 && hi - lo == 99, "{lo}-{hi}");
        }
    }

    #[test]
    fn tags_hash_stably() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
