//! A real headless Chromium, driven over WebDriver (Debian's `chromium` and `chromium-driver`,
//! through the fantoccini client), for the dashboard's tests.
//!
//! Loopback only, and a loopback of its own: chromedriver and Chromium run in a network namespace
//! the test made, with nothing in it but `lo` (so Docker's interface changes, which make Chromium
//! abort page loads with `ERR_NETWORK_CHANGED`, never reach it). The host ports a test names
//! ([`Browser::start`], [`Browser::reach`]) are forwarded into it on the same numbers. Chromium
//! also runs with its background networking off and every request that is not to a loopback
//! address sent to a proxy that does not exist.
//!
//! A missing browser fails the test with how to install it; it never skips.

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use std::future::Future;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts them; `CAAS_E2E_CHROMIUM` and `CAAS_E2E_CHROMEDRIVER` override.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a page may take to show what a test waits for: a form's change is flushed to disk
/// before its page answers, which takes seconds when the whole suite writes at once.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// A chromedriver of its own (its own process group, killed when dropped) and one browser
/// session on it.
pub struct Browser {
    pub client: Client,
    driver: Child,
    netns: crate::netns::NetNs,
    _profile: tempfile::TempDir,
}

fn tool(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    if !path.is_file() {
        panic!(
            "{} is missing: the dashboard's end-to-end tests drive a real headless Chromium. \
             Install Debian's chromium and chromium-driver (`apt-get install chromium \
             chromium-driver`; `./install.sh --deps-only` and .ci/run do), or set {env}",
            path.display()
        );
    }
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot find a free loopback port")
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session on it, able to reach the host's
    /// loopback `ports` (the API under test).
    pub async fn start(ports: &[u16]) -> Browser {
        let chromium = tool("CAAS_E2E_CHROMIUM", CHROMIUM);
        let chromedriver = tool("CAAS_E2E_CHROMEDRIVER", CHROMEDRIVER);
        let profile = tempfile::Builder::new()
            .prefix("caas-e2e-chromium-")
            .tempdir()
            .expect("cannot create a browser profile dir");
        let netns = crate::netns::NetNs::new().unwrap_or_else(|e| {
            panic!("cannot make a network namespace for the browser (the tests run as root): {e}")
        });
        for port in ports {
            netns
                .reach_host(*port)
                .unwrap_or_else(|e| panic!("forwarding port {port} to the browser: {e}"));
        }
        // Inside the namespace every port is free.
        let port = free_port();
        let ns_fd = netns.fd();
        let mut cmd = Command::new(&chromedriver);
        // SAFETY: only setns(2), async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || crate::netns::enter_fd(ns_fd));
        }
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!(
                "--log-path={}",
                profile.path().join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut driver = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let exposed = netns
            .expose(port)
            .unwrap_or_else(|e| panic!("exposing chromedriver's port: {e}"));
        let url = format!("http://127.0.0.1:{exposed}");
        let caps = capabilities(&chromium, &profile.path().join("profile"));
        let deadline = Instant::now() + PAGE_TIMEOUT;
        let client = loop {
            let attempt =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps.clone())
                    .connect(&url)
                    .await;
            match attempt {
                Ok(c) => break c,
                Err(e) => {
                    if let Ok(Some(status)) = driver.try_wait() {
                        panic!(
                            "chromedriver exited ({status}): {e}\n{}",
                            log(profile.path())
                        );
                    }
                    if Instant::now() >= deadline {
                        kill_group(&mut driver);
                        panic!(
                            "no browser session within {PAGE_TIMEOUT:?}: {e}\n{}",
                            log(profile.path())
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        Browser {
            client,
            driver,
            netns,
            _profile: profile,
        }
    }

    /// Lets pages reach the host's loopback `port` too (a server started after the browser).
    pub fn reach(&self, port: u16) {
        self.netns
            .reach_host(port)
            .unwrap_or_else(|e| panic!("forwarding port {port} to the browser: {e}"));
    }

    /// Ends the session (Chromium quits) and chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        kill_group(&mut self.driver);
    }

    /// Waits for the element `css` and returns its text.
    pub async fn text(&self, css: &str) -> String {
        self.client
            .wait()
            .at_most(PAGE_TIMEOUT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("reading {css}: {e}"))
    }

    /// Clears the field `css` and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self
            .client
            .wait()
            .at_most(PAGE_TIMEOUT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no field {css}: {e}"));
        field.clear().await.unwrap_or_else(|e| panic!("{css}: {e}"));
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    /// Clicks the element `css`.
    pub async fn click(&self, css: &str) {
        self.client
            .wait()
            .at_most(PAGE_TIMEOUT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("nothing to click at {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// The page's address now.
    pub async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_else(|e| panic!("reading the address: {e}"))
    }

    /// The page's text (what a reader sees).
    pub async fn page_text(&self) -> String {
        self.text("body").await
    }

    /// The page's HTML as the browser has it now.
    pub async fn source(&self) -> String {
        self.client
            .source()
            .await
            .unwrap_or_else(|e| panic!("reading the page: {e}"))
    }

    /// Polls `f` until it gives a value, panicking after [`PAGE_TIMEOUT`] with `what` and the
    /// page's text.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            if let Some(v) = f().await {
                return v;
            }
            if Instant::now() >= deadline {
                let text = self.client.source().await.unwrap_or_default();
                panic!("timed out after {PAGE_TIMEOUT:?} waiting for {what}; the page:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the page's text contains `needle`; returns the text.
    pub async fn wait_text(&self, needle: &str) -> String {
        self.wait_for(&format!("{needle:?} on the page"), || async {
            let t = self.client.find(Locator::Css("body")).await.ok()?;
            let t = t.text().await.ok()?;
            t.contains(needle).then_some(t)
        })
        .await
    }

    /// Writes a PNG of the page to `dir/name.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str) {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}

/// Kills chromedriver and the browser it started (its process group), and reaps it.
fn kill_group(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        // SAFETY: kill(2) on the process group this harness made for its own chromedriver.
        unsafe {
            libc::kill(-(child.id() as i32), libc::SIGKILL);
        }
    }
    let _ = child.wait();
}

fn log(profile: &Path) -> String {
    let text = std::fs::read_to_string(profile.join("chromedriver.log")).unwrap_or_default();
    crate::process::tail(&text, 40)
}

/// Headless, with nothing to reach but loopback: no background networking, no updates, no
/// sign-in, and a proxy that refuses for everything else.
fn capabilities(chromium: &Path, profile: &Path) -> Capabilities {
    let args = [
        "--headless=new".to_string(),
        "--no-sandbox".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-gpu".into(),
        "--window-size=1280,1000".into(),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--disable-extensions".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-domain-reliability".into(),
        "--disable-client-side-phishing-detection".into(),
        "--metrics-recording-only".into(),
        "--no-pings".into(),
        "--dns-prefetch-disable".into(),
        "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication"
            .into(),
        "--proxy-server=http://127.0.0.1:9".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium.display().to_string(),
            "args": args,
        },
    });
    match caps {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("a JSON object"),
    }
}
