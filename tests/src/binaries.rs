//! Finding the `caas` and `caasd` binaries under test, and building them first when running under
//! cargo, so that a test never runs stale binaries.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::process::{run, tail};

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
