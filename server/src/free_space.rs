//! Free disk space: what `caas hosts` shows, and the floor under which new builds and uploads are
//! refused up front (`caasd --min-free-disk`), so that they do not fail half-way through and
//! running apps keep the space they write logs and data to.

use caas_api::DiskUsage;
use std::path::{Path, PathBuf};

/// Total and free bytes of the filesystem that holds `path` (free as an unprivileged writer
/// sees it: the root reserve is not counted as free).
pub fn usage(path: &Path) -> std::io::Result<DiskUsage> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: statvfs(3) with a NUL-terminated path and a zeroed struct it fills in.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = s.f_frsize as u64;
    Ok(DiskUsage {
        total_bytes: s.f_blocks as u64 * frsize,
        free_bytes: s.f_bavail as u64 * frsize,
    })
}

/// The places new work writes to, and how much must stay free on each.
#[derive(Debug, Clone)]
pub struct Floor {
    pub min_free_bytes: u64,
    /// caasd's data dir (uploads, sources, git repositories, logs) and the engine's root dir
    /// (images, containers), when the engine is on this machine.
    pub paths: Vec<PathBuf>,
}

impl Floor {
    /// `Err(message)` when a filesystem that new work writes to has less than the floor free.
    /// A filesystem that cannot be read is not a reason to refuse (it is logged).
    pub fn check(&self, what: &str) -> Result<(), String> {
        for path in &self.paths {
            match usage(path) {
                Ok(u) => below(u, self.min_free_bytes, path, what)?,
                Err(e) => tracing::debug!("free space of {}: {e}", path.display()),
            }
        }
        Ok(())
    }
}

/// The refusal, if `u` has less than `min_free` bytes free.
fn below(u: DiskUsage, min_free: u64, path: &Path, what: &str) -> Result<(), String> {
    if u.free_bytes >= min_free {
        return Ok(());
    }
    Err(format!(
        "refusing {what}: only {} free on {} (caasd keeps {} free for running apps, \
         --min-free-disk); free some space (caas apps:destroy, older releases) and try again",
        human(u.free_bytes),
        path.display(),
        human(min_free)
    ))
}

/// Bytes in MB or GB of 1024, as the CLI prints sizes.
pub fn human(bytes: u64) -> String {
    const MB: u64 = 1024 * 1024;
    if bytes >= 1024 * MB {
        format!("{:.1} GB", bytes as f64 / (1024 * MB) as f64)
    } else {
        format!("{} MB", bytes / MB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_below_the_floor_and_says_where() {
        let u = |free| DiskUsage {
            total_bytes: 10 << 30,
            free_bytes: free,
        };
        let p = Path::new("/var/lib/caas");
        assert!(below(u(2 << 30), 1 << 30, p, "the upload").is_ok());
        assert!(below(u(1 << 30), 1 << 30, p, "the upload").is_ok());
        let e = below(u(300 << 20), 1 << 30, p, "the upload").unwrap_err();
        assert!(e.starts_with("refusing the upload: only 300 MB free on /var/lib/caas"));
        assert!(e.contains("keeps 1.0 GB free"), "{e}");
    }

    #[test]
    fn reads_a_real_filesystem() {
        let u = usage(Path::new("/")).unwrap();
        assert!(u.total_bytes > 0 && u.free_bytes <= u.total_bytes);
        assert!(usage(Path::new("/no/such/dir")).is_err());
    }
}
