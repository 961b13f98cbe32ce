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
//! let body = p.wait_for(Duration::from_secs(30), "demo to answer 200", || p.ok_body("demo"));
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
//!
//! Modules, by concern (everything public is re-exported here, so tests import from the crate
//! root): `binaries` finds and builds `caas` and `caasd`; `process` runs commands with timeouts and
//! polls; `http` is the small HTTP client; `docker` has the engine, stack-image and test-image
//! helpers; `fixtures` makes what a test pushes; `platform` is the caasd under test with its CLI,
//! gateway and containers; `engine` is a second Docker engine; `agent` is a `caasd agent` of a
//! test's own (another host); `hooks` is a git host and a webhook receiver on loopback;
//! `browser` is a headless Chromium driven over WebDriver, for the dashboard.

mod agent;
mod binaries;
mod browser;
mod docker;
mod engine;
mod etcd;
mod fixtures;
mod hooks;
mod http;
mod netns;
mod pebble;
mod platform;
mod process;
mod tls;

pub use agent::{join_command, AgentProcess};
pub use binaries::{binaries, repo_root, Binaries};
pub use browser::{Browser, PAGE_TIMEOUT};
pub use docker::{
    docker, docker_ok, echo_image, require_docker, require_stack, test_image, BUILD_IMAGE,
    STACK_IMAGE,
};
pub use engine::SecondEngine;
pub use etcd::Etcd;
pub use fantoccini;
pub use fixtures::{example_app, python3_ok, temp_dir_with};
pub use hooks::{GitHost, Receiver, Request as HookRequest};
pub use http::{http_request, HttpResponse, HTTP_TIMEOUT};
pub use pebble::{Pebble, PebblePorts};
pub use platform::{
    CaasdInfo, Container, Platform, CLI_TIMEOUT, DOMAIN, GIT_TIMEOUT, START_TIMEOUT,
};
pub use process::{run, tail, wait_until, CmdOutput};
pub use tls::{Issued, TestCa};
