//! What a test pushes: files in a temp dir, the example apps, and archives made with python3's
//! zipfile, which writes whatever entry a test needs (`../escape`, a hand-made jar manifest) and
//! is on every test machine already.

use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::binaries::repo_root;
use crate::process::run;

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

/// `examples/apps/NAME`: one of the example apps the builds are tested with (see
/// examples/apps/README.md for what each answers).
pub fn example_app(name: &str) -> PathBuf {
    repo_root().join("examples/apps").join(name)
}

/// Runs `python3 -c SCRIPT ARGS` (timeout 60 s), panics unless it succeeds, returns its stdout.
/// `sys.argv[1..]` are `args`.
pub fn python3_ok(script: &str, args: &[&str]) -> String {
    let out = run(
        Command::new("python3").arg("-c").arg(script).args(args),
        None,
        Duration::from_secs(60),
    );
    if !out.success() {
        panic!("python3 -c {script:?} failed\n{out}");
    }
    out.stdout
}
