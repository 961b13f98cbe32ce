//! The one file-system step of renaming an app (`caas apps:rename`), shared by the parts that
//! keep a folder per app (the log hub, the builder, the git repositories). The store renames the
//! records in one transaction with a "moved" marker (`store/rename.rs`); the folders follow
//! (`api/rename.rs`), at once or at the next start after a crash, so every step here must be
//! safe to run twice.

use std::io;
use std::path::Path;

/// Moves the folder `from` to `to`. Nothing to move (moved already, or never made) is fine. A
/// folder already at `to` is left over from something of that name that no longer exists (the
/// store said the name was free), and is removed first.
pub fn move_dir(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(from) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    match std::fs::remove_dir_all(to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::rename(from, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_runs_twice_and_replaces_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("shop"), dir.path().join("store"));
        std::fs::create_dir_all(&from).unwrap();
        std::fs::write(from.join("1.log"), "kept").unwrap();
        std::fs::create_dir_all(to.join("stale")).unwrap();
        move_dir(&from, &to).unwrap();
        assert_eq!(std::fs::read_to_string(to.join("1.log")).unwrap(), "kept");
        assert!(!to.join("stale").exists() && !from.exists());
        // Again, as after a crash between the move and the marker's removal.
        move_dir(&from, &to).unwrap();
        assert!(to.join("1.log").exists());
    }
}
