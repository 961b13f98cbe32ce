//! Tar archives caasd makes itself: what goes into a build container (source, config, buildpacks,
//! the driver) and what comes out of it (the slug). Blocking I/O: call from `spawn_blocking`.

use std::fs::File;
use std::io::{self, BufWriter, Read};
use std::path::Path;

/// Ownership and a mode mask for everything appended by one call.
#[derive(Clone, Copy)]
pub struct Owner {
    pub uid: u64,
    pub gid: u64,
}

pub const ROOT: Owner = Owner { uid: 0, gid: 0 };
/// The `caas` user of the stack image.
pub const CAAS: Owner = Owner {
    uid: 1000,
    gid: 1000,
};

pub struct TarWriter {
    inner: tar::Builder<BufWriter<File>>,
}

fn header(kind: tar::EntryType, owner: Owner, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_uid(owner.uid);
    h.set_gid(owner.gid);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h
}

impl TarWriter {
    pub fn create(path: &Path) -> io::Result<Self> {
        let mut inner = tar::Builder::new(BufWriter::new(File::create(path)?));
        inner.follow_symlinks(false);
        Ok(Self { inner })
    }

    pub fn dir(&mut self, name: &str, owner: Owner, mode: u32) -> io::Result<()> {
        let mut h = header(tar::EntryType::Directory, owner, mode, 0);
        self.inner.append_data(&mut h, name, io::empty())
    }

    pub fn file(&mut self, name: &str, owner: Owner, mode: u32, data: &[u8]) -> io::Result<()> {
        let mut h = header(tar::EntryType::Regular, owner, mode, data.len() as u64);
        self.inner.append_data(&mut h, name, data)
    }

    /// Appends the tree under `src` as `prefix/...`, owned by `owner`. Modes keep only the
    /// executable bit (0755/0644): nothing setuid or world-writable goes into a container.
    /// Symlinks are kept as links (the unpacker already refused those that leave the tree).
    pub fn tree(&mut self, src: &Path, prefix: &str, owner: Owner) -> io::Result<u64> {
        self.dir(prefix, owner, 0o755)?;
        let mut count = 0;
        let mut stack = vec![(src.to_path_buf(), prefix.to_string())];
        while let Some((dir, name)) = stack.pop() {
            let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let file_name = entry.file_name();
                let Some(file_name) = file_name.to_str() else {
                    return Err(io::Error::other(format!("{:?} is not UTF-8", entry.path())));
                };
                let path = entry.path();
                let child = format!("{name}/{file_name}");
                let meta = std::fs::symlink_metadata(&path)?;
                let ft = meta.file_type();
                if ft.is_symlink() {
                    let target = std::fs::read_link(&path)?;
                    let mut h = header(tar::EntryType::Symlink, owner, 0o777, 0);
                    self.inner.append_link(&mut h, &child, &target)?;
                } else if ft.is_dir() {
                    self.dir(&child, owner, 0o755)?;
                    stack.push((path, child));
                } else if ft.is_file() {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = if meta.permissions().mode() & 0o111 != 0 {
                        0o755
                    } else {
                        0o644
                    };
                    let mut h = header(tar::EntryType::Regular, owner, mode, meta.len());
                    self.inner.append_data(&mut h, &child, File::open(&path)?)?;
                }
                count += 1;
            }
        }
        Ok(count)
    }

    pub fn finish(self) -> io::Result<()> {
        let mut w = self.inner.into_inner()?;
        io::Write::flush(&mut w)
    }
}

/// The contents of the named regular files in a tar (e.g. `app/Procfile`), those that exist.
/// Files over `max` bytes are skipped.
pub fn read_files(tar_path: &Path, names: &[&str], max: u64) -> io::Result<Vec<(String, String)>> {
    let mut archive = tar::Archive::new(File::open(tar_path)?);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if entry.header().entry_type().is_file()
            && names.contains(&path.as_str())
            && entry.size() <= max
        {
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            out.push((path, text));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_are_owned_masked_and_readable_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("bin")).unwrap();
        std::fs::write(src.join("Procfile"), "web: ./bin/run\n").unwrap();
        std::fs::write(src.join("bin/run"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(src.join("bin/run"), std::fs::Permissions::from_mode(0o4777))
            .unwrap();
        std::os::unix::fs::symlink("bin/run", src.join("start")).unwrap();

        let out = dir.path().join("out.tar");
        let mut w = TarWriter::create(&out).unwrap();
        assert_eq!(w.tree(&src, "app", CAAS).unwrap(), 4);
        w.file("caas/driver.sh", ROOT, 0o644, b"echo hi").unwrap();
        w.finish().unwrap();

        let mut seen = Vec::new();
        for e in tar::Archive::new(File::open(&out).unwrap())
            .entries()
            .unwrap()
        {
            let e = e.unwrap();
            let h = e.header();
            seen.push((
                e.path().unwrap().display().to_string(),
                h.mode().unwrap(),
                h.uid().unwrap(),
            ));
        }
        assert!(
            seen.contains(&("app/bin/run".into(), 0o755, 1000)),
            "{seen:?}"
        );
        assert!(
            seen.contains(&("app/Procfile".into(), 0o644, 1000)),
            "{seen:?}"
        );
        assert!(
            seen.contains(&("caas/driver.sh".into(), 0o644, 0)),
            "{seen:?}"
        );
        let files = read_files(&out, &["app/Procfile", "app/missing"], 1024).unwrap();
        assert_eq!(
            files,
            [("app/Procfile".to_string(), "web: ./bin/run\n".to_string())]
        );
    }
}
