//! What `caas push PATH` sends: a file as it is, its kind told by its name, or a directory packed
//! as a gzipped tar the way git would see it (`.gitignore`, plus `.caasignore`, never `.git/`).
//! Local only: nothing here talks to the server.

use crate::error::CliError;
use crate::output::sanitize;
use anyhow::{Context, Result};
use caas_api::SourceKind;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The ignore file that is read like `.gitignore`, for what git should keep but caas should not
/// get (tests, docs, local data).
pub const CAASIGNORE: &str = ".caasignore";

/// The server refuses longer names; see `display_name` in the server's builds API.
const MAX_NAME_BYTES: usize = 200;

/// What PATH is.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Dir(PathBuf),
    File { path: PathBuf, kind: SourceKind },
}

/// The kind of an archive by its file name (case-insensitive), or `None` for anything else.
pub fn kind_for_file_name(name: &str) -> Option<SourceKind> {
    let name = name.to_ascii_lowercase();
    let kinds = [
        (".war", SourceKind::War),
        (".jar", SourceKind::Jar),
        (".zip", SourceKind::Zip),
        (".tar.gz", SourceKind::TarGz),
        (".tgz", SourceKind::TarGz),
    ];
    kinds.into_iter().find_map(|(ext, kind)| {
        // `.war` alone is a hidden file, not a war.
        (name.len() > ext.len() && name.ends_with(ext)).then_some(kind)
    })
}

/// Decides what PATH is; anything caas cannot build is a usage error (exit 2) found before any
/// request is made.
pub fn classify(path: &Path) -> Result<Target, CliError> {
    let shown = display_path(path);
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            CliError::usage(format!("cannot push {shown}: no such file or directory"))
        } else {
            CliError::usage(format!("cannot push {shown}: {e}"))
        }
    })?;
    if meta.is_dir() {
        return Ok(Target::Dir(path.to_path_buf()));
    }
    let kind = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(kind_for_file_name)
        .filter(|_| meta.is_file());
    match kind {
        Some(kind) => Ok(Target::File {
            path: path.to_path_buf(),
            kind,
        }),
        None => Err(CliError::usage(format!(
            "cannot push {shown}: give a directory, a .war, .jar, .zip or .tar.gz"
        ))),
    }
}

/// The `name` sent with an upload, for the server's messages and for the `.war`/`.jar` it keeps:
/// the file's or directory's own name, made printable, without separators, within the server's
/// length limit. `fallback` when there is no usable name (`/`).
pub fn upload_name(path: &Path, fallback: &str) -> String {
    // `.` and `..` have no file name of their own: the directory they mean does.
    let named = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let raw = named
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name: String = sanitize(&raw)
        .chars()
        .map(|c| if matches!(c, '/' | '\\') { '_' } else { c })
        .collect();
    while name.len() > MAX_NAME_BYTES {
        name.pop();
    }
    if name.trim().is_empty() {
        fallback.to_string()
    } else {
        name
    }
}

/// PATH for messages, sanitised: as the user gave it, unless it has no name of its own (`.`,
/// `..`, `/`), which says little in "Packing ." or "nothing to push: ..": then the absolute path.
pub fn display_path(path: &Path) -> String {
    let path = match path.file_name() {
        Some(_) => path.to_path_buf(),
        None => std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
    };
    sanitize(&path.display().to_string())
}

/// A directory packed into an anonymous temporary file, rewound and ready to upload.
#[derive(Debug)]
pub struct Packed {
    pub file: File,
    /// Size of the archive (compressed).
    pub len: u64,
    pub contents: Contents,
}

/// What went into an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Contents {
    /// Regular files and symlinks.
    pub files: u64,
    /// Bytes of the regular files, uncompressed: what the server counts as it unpacks.
    pub bytes: u64,
}

/// Packs `dir` into a temporary file (deleted when dropped; it never had a name). Fails with a
/// usage error when nothing is left to push after the ignore files.
pub fn pack_to_temp(dir: &Path) -> Result<Packed> {
    let mut file = tempfile::tempfile().context("creating a temporary file to pack into")?;
    let contents = pack_dir(dir, BufWriter::new(&mut file))?;
    let len = file
        .seek(SeekFrom::End(0))
        .context("measuring the packed directory")?;
    file.rewind().context("rewinding the packed directory")?;
    Ok(Packed {
        file,
        len,
        contents,
    })
}

/// The walk `caas push` packs: `.gitignore` files (nested ones too) and `.caasignore` files,
/// hidden files included, `.git` never, symlinks not followed, in a stable order. Ignore files
/// above `dir`, git's global excludes and `.ignore` files do not count: what is pushed depends
/// on the directory alone.
fn walker(dir: &Path) -> ignore::Walk {
    ignore::WalkBuilder::new(dir)
        .standard_filters(false)
        .hidden(false)
        .git_ignore(true)
        .require_git(false)
        .parents(false)
        .add_custom_ignore_filename(CAASIGNORE)
        .follow_links(false)
        .filter_entry(|e| e.file_name() != ".git")
        .sort_by_file_name(|a, b| a.cmp(b))
        .build()
}

/// Writes `dir` as a gzipped tar to `out`, paths relative to `dir`. Directories are 0755, files
/// 0755 when any execute bit is set and 0644 otherwise, owned by 0:0; symlinks stay symlinks with
/// their target as written; sockets, FIFOs and devices are left out. Returns what went in.
pub fn pack_dir(dir: &Path, out: impl Write) -> Result<Contents> {
    let shown = display_path(dir);
    let mut tar = tar::Builder::new(GzEncoder::new(out, Compression::default()));
    let mut files = 0u64;
    let mut bytes = 0u64;
    for entry in walker(dir) {
        let entry = entry.map_err(|e| anyhow::anyhow!("packing {shown}: {e}"))?;
        if let Some(warning) = entry.error() {
            // A line of an ignore file that does not parse; git skips those too.
            crate::output::note(&sanitize(&format!("warning: {warning}")));
        }
        if entry.depth() == 0 {
            continue;
        }
        let path = entry.path();
        let rel = path
            .strip_prefix(dir)
            .with_context(|| format!("packing {shown}: {} is outside it", path.display()))?;
        let meta = std::fs::symlink_metadata(path)
            .with_context(|| format!("reading {}", path.display()))?;
        let kind = meta.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_mtime(mtime(&meta));
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(0);
        if kind.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            tar.append_data(&mut header, rel, io::empty())
        } else if kind.is_symlink() {
            let target =
                std::fs::read_link(path).with_context(|| format!("reading {}", path.display()))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            files += 1;
            tar.append_link(&mut header, rel, target)
        } else if kind.is_file() {
            let file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
            // The length from the open file, and exactly that many bytes are written: a file that
            // changes while being packed cannot misalign the archive.
            let len = file.metadata()?.len();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if is_executable(&meta) { 0o755 } else { 0o644 });
            header.set_size(len);
            files += 1;
            bytes += len;
            let data = Exactly {
                inner: file,
                left: len,
                path: path.to_path_buf(),
            };
            tar.append_data(&mut header, rel, data)
        } else {
            continue;
        }
        .with_context(|| format!("packing {}", path.display()))?;
    }
    if files == 0 {
        return Err(CliError::usage(format!(
            "nothing to push: {shown} has no files (after .gitignore/.caasignore)"
        ))
        .into());
    }
    let gz = tar.into_inner().context("finishing the archive")?;
    let mut out = gz.finish().context("finishing the archive")?;
    out.flush().context("writing the archive")?;
    Ok(Contents { files, bytes })
}

fn mtime(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}

/// Reads exactly `left` bytes from `inner`, failing if it ends sooner.
struct Exactly<R> {
    inner: R,
    left: u64,
    path: PathBuf,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::other(format!(
                "{} got shorter while it was being packed",
                self.path.display()
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::fs;

    #[test]
    fn kinds_by_file_name() {
        let cases = [
            ("app.war", Some(SourceKind::War)),
            ("ROOT.WAR", Some(SourceKind::War)),
            ("app.jar", Some(SourceKind::Jar)),
            ("site.zip", Some(SourceKind::Zip)),
            ("src.tar.gz", Some(SourceKind::TarGz)),
            ("SRC.TAR.GZ", Some(SourceKind::TarGz)),
            ("src.Tar.Gz", Some(SourceKind::TarGz)),
            ("src.tgz", Some(SourceKind::TarGz)),
            ("src.TGZ", Some(SourceKind::TarGz)),
            ("src.tar", None),
            ("src.gz", None),
            ("app.war.bak", None),
            ("readme.md", None),
            (".war", None),
            ("war", None),
        ];
        for (name, want) in cases {
            assert_eq!(kind_for_file_name(name), want, "{name}");
        }
    }

    #[test]
    fn classify_dirs_archives_and_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let war = tmp.path().join("App.WAR");
        fs::write(&war, b"PK").unwrap();
        let txt = tmp.path().join("notes.txt");
        fs::write(&txt, b"x").unwrap();
        assert_eq!(
            classify(tmp.path()).unwrap(),
            Target::Dir(tmp.path().to_path_buf())
        );
        assert_eq!(
            classify(&war).unwrap(),
            Target::File {
                path: war.clone(),
                kind: SourceKind::War
            }
        );
        let err = classify(&txt).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string()
                .ends_with("notes.txt: give a directory, a .war, .jar, .zip or .tar.gz"),
            "{err}"
        );
        let err = classify(&tmp.path().join("missing.zip")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("no such file"), "{err}");
    }

    #[test]
    fn paths_without_a_name_of_their_own_show_in_full() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        assert_eq!(display_path(Path::new("site")), "site");
        assert_eq!(display_path(Path::new("a/b\x1b.zip")), "a/b.zip");
        let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
        assert_eq!(display_path(Path::new(".")), cwd.display().to_string());
        fs::create_dir(dir.join("x")).unwrap();
        assert_eq!(display_path(&dir.join("x/..")), dir.display().to_string());
        assert_eq!(
            display_path(&dir.join("y/..")),
            dir.join("y/..").display().to_string(),
            "a path that cannot be resolved stays as given"
        );
        assert_eq!(display_path(Path::new("/")), "/");
    }

    #[test]
    fn upload_names_are_the_last_component_made_safe() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("my-app");
        fs::create_dir(&dir).unwrap();
        assert_eq!(upload_name(&dir, "directory"), "my-app");
        assert_eq!(upload_name(&dir.join("."), "directory"), "my-app");
        assert_eq!(upload_name(Path::new("/"), "directory"), "directory");
        assert_eq!(upload_name(Path::new("x/a\x1bb.war"), "app.war"), "ab.war");
        let long = "é".repeat(150);
        let name = upload_name(Path::new(&long), "d");
        assert!(name.len() <= MAX_NAME_BYTES && name.chars().all(|c| c == 'é'));
    }

    /// What an archive holds: path → (kind, mode, content or link target).
    type Listing = BTreeMap<String, (char, u32, String)>;

    fn unpack(bytes: &[u8]) -> Listing {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        let mut out = Listing::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let header = entry.header();
            let mode = header.mode().unwrap();
            assert_eq!(header.uid().unwrap(), 0);
            let (kind, text) = match header.entry_type() {
                tar::EntryType::Directory => ('d', String::new()),
                tar::EntryType::Symlink => (
                    'l',
                    entry
                        .link_name()
                        .unwrap()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                ),
                tar::EntryType::Regular => {
                    let mut s = String::new();
                    entry.read_to_string(&mut s).unwrap();
                    ('f', s)
                }
                other => panic!("unexpected entry type {other:?} for {path}"),
            };
            out.insert(path.trim_end_matches('/').to_string(), (kind, mode, text));
        }
        out
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn packs_what_git_would_keep_with_links_and_exec_bits() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, ".gitignore", "*.log\n/build/\n");
        write(root, ".caasignore", "docs/\nsecret.txt\n");
        write(root, "app.py", "print('hi')\n");
        write(root, "debug.log", "x");
        write(root, "build/out.bin", "x");
        write(root, "docs/guide.md", "x");
        write(root, "secret.txt", "x");
        write(root, ".env.example", "A=1\n");
        write(root, "sub/.gitignore", "local.txt\n");
        write(root, "sub/local.txt", "x");
        write(root, "sub/kept.txt", "kept\n");
        write(root, "sub/deeper/note.log", "x");
        write(root, "sub/deeper/.caasignore", "tmp*\n");
        write(root, "sub/deeper/tmp1", "x");
        write(root, "sub/deeper/data.csv", "1,2\n");
        write(root, ".git/HEAD", "ref: refs/heads/main\n");
        write(root, ".git/config", "x");
        write(root, "vendor/lib/.git", "gitdir: ../../.git/modules/lib\n");
        write(root, "vendor/lib/lib.js", "x\n");
        write(root, "bin/start", "#!/bin/sh\n");
        fs::set_permissions(root.join("bin/start"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(root.join("app.py"), fs::Permissions::from_mode(0o600)).unwrap();
        symlink("app.py", root.join("main.py")).unwrap();
        symlink("/etc/passwd", root.join("outside")).unwrap();
        symlink("../nowhere", root.join("sub/dangling")).unwrap();
        // A link to a directory stays a link: what it points at is not walked.
        fs::create_dir(tmp.path().join("sub/real")).unwrap();
        write(root, "sub/real/in.txt", "x");
        symlink("real", root.join("sub/linked")).unwrap();
        // An empty directory is kept as such.
        fs::create_dir(root.join("empty")).unwrap();

        let mut bytes = Vec::new();
        let contents = pack_dir(root, &mut bytes).unwrap();
        let got = unpack(&bytes);

        let want: Listing = [
            (".caasignore", ('f', 0o644, "docs/\nsecret.txt\n")),
            (".env.example", ('f', 0o644, "A=1\n")),
            (".gitignore", ('f', 0o644, "*.log\n/build/\n")),
            ("app.py", ('f', 0o644, "print('hi')\n")),
            ("bin", ('d', 0o755, "")),
            ("bin/start", ('f', 0o755, "#!/bin/sh\n")),
            ("empty", ('d', 0o755, "")),
            ("main.py", ('l', 0o777, "app.py")),
            ("outside", ('l', 0o777, "/etc/passwd")),
            ("sub", ('d', 0o755, "")),
            ("sub/.gitignore", ('f', 0o644, "local.txt\n")),
            ("sub/dangling", ('l', 0o777, "../nowhere")),
            ("sub/deeper", ('d', 0o755, "")),
            ("sub/deeper/.caasignore", ('f', 0o644, "tmp*\n")),
            ("sub/deeper/data.csv", ('f', 0o644, "1,2\n")),
            ("sub/kept.txt", ('f', 0o644, "kept\n")),
            ("sub/linked", ('l', 0o777, "real")),
            ("sub/real", ('d', 0o755, "")),
            ("sub/real/in.txt", ('f', 0o644, "x")),
            ("vendor", ('d', 0o755, "")),
            ("vendor/lib", ('d', 0o755, "")),
            ("vendor/lib/lib.js", ('f', 0o644, "x\n")),
        ]
        .into_iter()
        .map(|(p, (k, m, t))| (p.to_string(), (k, m, t.to_string())))
        .collect();
        assert_eq!(got, want);
        assert_eq!(contents.files, 15);
        let file_bytes: u64 = want
            .values()
            .filter(|(k, _, _)| *k == 'f')
            .map(|(_, _, t)| t.len() as u64)
            .sum();
        assert_eq!(contents.bytes, file_bytes);
    }

    #[test]
    fn nothing_left_after_ignores_is_a_usage_error() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, ".caasignore", "*\n");
        write(root, "a.txt", "x");
        write(root, ".git/HEAD", "x");
        fs::create_dir(root.join("empty")).unwrap();
        let err = pack_dir(root, Vec::new()).unwrap_err();
        let cli = err.downcast_ref::<CliError>().expect("a CliError");
        assert_eq!(cli.exit_code(), 2);
        assert_eq!(
            cli.to_string(),
            format!(
                "nothing to push: {} has no files (after .gitignore/.caasignore)",
                root.display()
            )
        );

        let empty = tempfile::tempdir().unwrap();
        let err = pack_dir(empty.path(), Vec::new()).unwrap_err();
        assert!(err.to_string().starts_with("nothing to push: "), "{err}");
    }

    #[test]
    fn packs_into_a_rewound_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "index.html", "<h1>hi</h1>\n");
        let mut packed = pack_to_temp(tmp.path()).unwrap();
        assert_eq!(packed.contents.files, 1);
        let mut bytes = Vec::new();
        packed.file.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, packed.len);
        let got = unpack(&bytes);
        assert_eq!(got["index.html"], ('f', 0o644, "<h1>hi</h1>\n".to_string()));
    }

    #[test]
    fn a_file_that_shrinks_while_packed_is_an_error_not_a_bad_archive() {
        let mut r = Exactly {
            inner: &b"abc"[..],
            left: 5,
            path: PathBuf::from("f"),
        };
        let mut buf = Vec::new();
        let err = r.read_to_end(&mut buf).unwrap_err();
        assert!(err.to_string().contains("got shorter"), "{err}");
        let mut r = Exactly {
            inner: &b"abcdef"[..],
            left: 3,
            path: PathBuf::from("f"),
        };
        let mut buf = Vec::new();
        r.read_to_end(&mut buf).unwrap();
        assert_eq!(buf, b"abc");
    }
}
