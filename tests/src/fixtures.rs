//! What a test pushes: files in a temp dir.

use std::fs::{self, File};
use std::io::Write;

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
