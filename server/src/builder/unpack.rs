//! Safe unpacking of user uploads (`.tar.gz`, `.zip`, `.jar`, `.war`) into a build folder.
//!
//! Everything in an upload is hostile until proven otherwise. [`unpack`] writes only below `dest`,
//! and only what a plain source tree needs: folders, regular files, and symlinks that stay inside
//! the tree. It refuses, naming the offending entry:
//!
//! - paths with `..` components or absolute paths (`/x`, and in zips also `\x`, `C:\x`, `..\x`);
//! - symlinks whose target, resolved from the link's own folder (following the other symlinks of
//!   the archive), leaves the tree, absolute targets, and symlink loops. This is checked when the
//!   link is written and again once the whole archive is unpacked, so a later link cannot turn an
//!   earlier one into an escape;
//! - any entry below a symlink or below a file: every parent of every path written must be a
//!   folder this unpacking created, so nothing is ever written *through* a link;
//! - hard links to anything but a regular file unpacked earlier (allowed ones become copies);
//! - devices, fifos, sockets, unknown entry kinds, encrypted or exotically compressed zip entries;
//! - setuid, setgid and sticky bits. Other permissions are normalised: folders `0755`, files
//!   `0755` when any executable bit was set, else `0644`, owned by whoever runs caasd;
//! - a later entry that would turn a folder into a file or a file into a folder (a later file may
//!   replace an earlier file or symlink; the old one is unlinked first, never followed).
//!
//! Limits ([`Limits`]) count the bytes actually written, never declared sizes, and stop before the
//! write that would pass them, so a zip or gzip bomb stops after at most the limit, not after
//! gigabytes.
//!
//! The public face is [`unpack`], [`sniff`], [`Limits`], [`ArchiveKind`], [`Unpacked`] and the
//! error types.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

const MIB: u64 = 1024 * 1024;

/// What one unpacking may produce. `caasd` exposes each as an operator flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of file content written, in total (`caasd --max-unpacked-mb`).
    pub max_unpacked_bytes: u64,
    /// Entries in the archive, folders and links included (`caasd --max-archive-entries`).
    pub max_entries: u64,
    /// Bytes written per byte of compressed input (`caasd --max-compression-ratio`). For a
    /// `.tar.gz` the input is what has been read of the archive so far; for a zip it is the
    /// archive's size.
    pub max_ratio: u64,
    /// The ratio is only enforced once more than this many bytes have been written, so small,
    /// very compressible apps are never refused.
    pub ratio_grace_bytes: u64,
}

impl Default for Limits {
    /// 1 GiB unpacked, 100 000 entries, ratio 200 past the first 16 MiB.
    fn default() -> Self {
        Limits {
            max_unpacked_bytes: 1024 * MIB,
            max_entries: 100_000,
            max_ratio: 200,
            ratio_grace_bytes: 16 * MIB,
        }
    }
}

/// The archive formats [`unpack`] reads. A `.jar` or `.war` is a [`ArchiveKind::Zip`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveKind {
    TarGz,
    Zip,
}

impl fmt::Display for ArchiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArchiveKind::TarGz => "tar.gz",
            ArchiveKind::Zip => "zip",
        })
    }
}

/// What a successful [`unpack`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unpacked {
    /// Files and symlinks in the tree (folders not counted).
    pub files: u64,
    /// Bytes of file content written (what [`Limits::max_unpacked_bytes`] counts).
    pub bytes: u64,
}

/// Which limit an archive went over, with the limit's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    UnpackedBytes(u64),
    Entries(u64),
    Ratio(u64),
}

/// Why one entry was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `..` components or an absolute path.
    OutsideTree,
    /// An empty name, or one with a NUL byte.
    BadName,
    SymlinkOutside {
        target: String,
    },
    SymlinkLoop {
        target: String,
    },
    /// The entry lies below this (earlier) symlink.
    ThroughSymlink {
        link: String,
    },
    /// The entry lies below this (earlier) file.
    UnderFile {
        file: String,
    },
    /// A file or symlink where an earlier entry made a folder.
    ReplacesFolder,
    /// A folder where an earlier entry made a file or symlink.
    ReplacesFile,
    HardlinkTarget {
        target: String,
    },
    /// A device, fifo or socket: what kind.
    Special(&'static str),
    /// setuid, setgid or sticky: the mode as found in the archive.
    SpecialBits(u32),
    /// Something caasd cannot unpack (encryption, a compression method, an entry type).
    Unsupported(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::OutsideTree => f.write_str(
                "it points outside the app folder; paths in an archive must be relative and \
                 must not contain `..`",
            ),
            Refusal::BadName => f.write_str("its name is empty or contains a NUL byte"),
            Refusal::SymlinkOutside { target } => write!(
                f,
                "it is a symlink to {}, which points outside the app folder; only symlinks that \
                 stay inside the app are allowed",
                Quoted(target)
            ),
            Refusal::SymlinkLoop { target } => write!(
                f,
                "it is a symlink to {} that loops or goes through too many other symlinks",
                Quoted(target)
            ),
            Refusal::ThroughSymlink { link } => write!(
                f,
                "it lies below the symlink {}, and nothing is unpacked through a symlink; put \
                 the real folder in the archive instead",
                Quoted(link)
            ),
            Refusal::UnderFile { file } => write!(
                f,
                "it lies below {}, which the archive made a file, not a folder",
                Quoted(file)
            ),
            Refusal::ReplacesFolder => f.write_str(
                "an earlier entry of the same name is a folder, and a file or link cannot \
                 replace a folder",
            ),
            Refusal::ReplacesFile => f.write_str(
                "an earlier entry of the same name is a file or link, and a folder cannot \
                 replace it",
            ),
            Refusal::HardlinkTarget { target } => write!(
                f,
                "it is a hard link to {}, which is not a file unpacked earlier inside the app \
                 folder",
                Quoted(target)
            ),
            Refusal::Special(what) => write!(
                f,
                "it is a {what}; an app archive may hold only files, folders and symlinks"
            ),
            Refusal::SpecialBits(mode) => write!(
                f,
                "it has the setuid, setgid or sticky bit set (mode {mode:o}); clear it \
                 (chmod u-s,g-s,-t) and pack the app again"
            ),
            Refusal::Unsupported(what) => write!(
                f,
                "it uses {what}, which caasd cannot unpack; pack the app as a plain .tar.gz or \
                 a zip with deflate compression"
            ),
        }
    }
}

/// Why [`unpack`] failed. Each message is one line, meant for the user who uploaded the archive.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("not a valid {kind} archive: {}", Clean(.detail))]
    NotAnArchive { kind: ArchiveKind, detail: String },
    #[error("the archive is empty: it holds no files to build")]
    Empty,
    #[error("refused archive entry {}: {reason}", Quoted(.entry))]
    Refused { entry: String, reason: Refusal },
    #[error("{}", limit_message(.limit, .entry))]
    LimitExceeded { limit: Limit, entry: String },
    #[error("{}", damaged_message(.entry, .detail))]
    Damaged {
        /// The entry being read when the damage showed, or the last good one.
        entry: Option<String>,
        detail: String,
    },
    /// A failure on the server's side (disk full, bad build folder), not the archive's fault.
    #[error("could not unpack {} into the build folder: {source}", Quoted(.path))]
    Io { path: String, source: io::Error },
}

fn limit_message(limit: &Limit, entry: &str) -> String {
    let at = Quoted(entry);
    match limit {
        Limit::UnpackedBytes(max) => format!(
            "the archive unpacks to more than {} (stopped at entry {at}); an operator can raise \
             this with `caasd --max-unpacked-mb`",
            Size(*max)
        ),
        Limit::Entries(max) => format!(
            "the archive has more than {max} entries (stopped at entry {at}); an operator can \
             raise this with `caasd --max-archive-entries`"
        ),
        Limit::Ratio(max) => format!(
            "the archive expands to more than {max} times its compressed size (stopped at entry \
             {at}), which looks like a compression bomb; an operator can raise this with \
             `caasd --max-compression-ratio`"
        ),
    }
}

fn damaged_message(entry: &Option<String>, detail: &str) -> String {
    match entry {
        Some(entry) => format!(
            "the archive is damaged at entry {}: {}; pack the app again and re-upload",
            Quoted(entry),
            Clean(detail)
        ),
        None => format!(
            "the archive is damaged: {}; pack the app again and re-upload",
            Clean(detail)
        ),
    }
}

/// Detects what a file really is from its first bytes: gzip (`1f 8b`, taken to be a `.tar.gz`)
/// or zip (`PK\x03\x04`, or `PK\x05\x06` for an empty zip). `None` for anything else, or when
/// the file cannot be read.
pub fn sniff(path: &Path) -> Option<ArchiveKind> {
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut File::open(path).ok()?, &mut magic).ok()?;
    match &magic[..n] {
        [0x1f, 0x8b, ..] => Some(ArchiveKind::TarGz),
        b"PK\x03\x04" | b"PK\x05\x06" => Some(ArchiveKind::Zip),
        _ => None,
    }
}

/// Unpacks `archive` (a file on disk) of the given kind into `dest`, which must be an existing,
/// empty directory.
///
/// Nothing is ever created outside `dest`. On error `dest` may hold a partial tree (including a
/// partially written file): the caller must delete `dest`, and must never build from it.
pub fn unpack(
    archive: &Path,
    kind: ArchiveKind,
    dest: &Path,
    limits: &Limits,
) -> Result<Unpacked, UnpackError> {
    let counters = Counters::default();
    let mut tree = Tree::new(dest, limits, &counters)?;
    match kind {
        ArchiveKind::TarGz => unpack_tar_gz(archive, &mut tree)?,
        ArchiveKind::Zip => unpack_zip(archive, &mut tree)?,
    }
    tree.finish()
}

// ---- tar.gz --------------------------------------------------------------------------------

/// Bytes of tar stream allowed besides file contents (headers, long names, pax records, padding,
/// data of entries that are skipped): a base plus so much per entry. The tar crate reads long
/// names and pax records into memory, so this also bounds its memory.
const HEADER_BASE_ALLOWANCE: u64 = 32 * MIB;
const HEADER_PER_ENTRY_ALLOWANCE: u64 = 8 * 1024;

fn unpack_tar_gz(archive: &Path, tree: &mut Tree<'_>) -> Result<(), UnpackError> {
    let counters = tree.counters;
    let mut file = File::open(archive).map_err(|e| io_error(archive, e))?;
    let mut magic = [0u8; 2];
    let n = read_up_to(&mut file, &mut magic).map_err(|e| io_error(archive, e))?;
    if magic[..n] != [0x1f, 0x8b] {
        return Err(UnpackError::NotAnArchive {
            kind: ArchiveKind::TarGz,
            detail: "it does not start with the gzip signature".into(),
        });
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| io_error(archive, e))?;

    let compressed = CountCompressed {
        inner: file,
        counters,
    };
    let stream = GuardStream {
        inner: flate2::read::MultiGzDecoder::new(compressed),
        counters,
    };
    let mut tar = tar::Archive::new(stream);
    let mut last: Option<String> = None;
    let entries = tar
        .entries()
        .map_err(|e| stream_error(counters, &last, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| stream_error(counters, &last, e))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        last = Some(name.clone());
        tree.count_entry(&name)?;

        let header = entry.header();
        let kind = header.entry_type();
        let damaged = |e: io::Error| UnpackError::Damaged {
            entry: Some(name.clone()),
            detail: e.to_string(),
        };
        let mode = header.mode().map_err(damaged)?;
        use tar::EntryType as T;
        match kind {
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            T::Char => return Err(refused(&name, Refusal::Special("character device"))),
            T::Block => return Err(refused(&name, Refusal::Special("block device"))),
            T::Fifo => return Err(refused(&name, Refusal::Special("fifo"))),
            _ => {}
        }
        let path = entry.path().map_err(damaged)?.into_owned();
        let rel = relative_path(&path).map_err(|r| refused(&name, r))?;
        match kind {
            T::Directory => tree.dir(&name, &rel, mode)?,
            T::Regular | T::Continuous | T::GNUSparse if name.ends_with('/') => {
                tree.dir(&name, &rel, mode)?
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                tree.file(&name, &rel, mode, &mut entry, true)?
            }
            T::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(damaged)?
                    .ok_or_else(|| UnpackError::Damaged {
                        entry: Some(name.clone()),
                        detail: "a symlink without a target".into(),
                    })?
                    .into_owned();
                tree.symlink(&name, &rel, &target)?
            }
            T::Link => {
                let target = entry
                    .link_name()
                    .map_err(damaged)?
                    .ok_or_else(|| UnpackError::Damaged {
                        entry: Some(name.clone()),
                        detail: "a hard link without a target".into(),
                    })?
                    .into_owned();
                tree.hardlink(&name, &rel, &target, mode)?
            }
            other => {
                return Err(refused(
                    &name,
                    Refusal::Unsupported(format!("tar entry type {:?}", other.as_byte() as char)),
                ))
            }
        }
    }
    Ok(())
}

/// Turns an error from the tar stream into the right [`UnpackError`].
fn stream_error(counters: &Counters, last: &Option<String>, e: io::Error) -> UnpackError {
    if counters.headers_too_big.get() {
        UnpackError::Damaged {
            entry: last.clone(),
            detail: format!(
                "its tar headers take more than {} besides the file contents, which no normal \
                 archive needs",
                Size(header_allowance(counters))
            ),
        }
    } else if last.is_none() {
        // gzip errors are InvalidInput/InvalidData; the tar crate's own are Other.
        let detail = if e.kind() == io::ErrorKind::Other {
            format!("the gzip data inside holds no tar archive ({e})")
        } else {
            e.to_string()
        };
        UnpackError::NotAnArchive {
            kind: ArchiveKind::TarGz,
            detail,
        }
    } else {
        UnpackError::Damaged {
            entry: last.clone(),
            detail: e.to_string(),
        }
    }
}

fn header_allowance(counters: &Counters) -> u64 {
    HEADER_BASE_ALLOWANCE
        .saturating_add(HEADER_PER_ENTRY_ALLOWANCE.saturating_mul(counters.entries.get() + 1))
}

/// Counts the compressed bytes read from the archive file.
struct CountCompressed<'c> {
    inner: File,
    counters: &'c Counters,
}

impl Read for CountCompressed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let c = &self.counters.compressed;
        c.set(c.get().saturating_add(n as u64));
        Ok(n)
    }
}

/// Counts the decompressed tar stream, and fails it once what is not file content (headers, pax
/// records, skipped data) passes [`header_allowance`].
struct GuardStream<'c, R> {
    inner: R,
    counters: &'c Counters,
}

impl<R: Read> Read for GuardStream<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let c = self.counters;
        c.stream.set(c.stream.get().saturating_add(n as u64));
        let overhead = c.stream.get().saturating_sub(c.content.get());
        // The caller has not counted the chunk it is reading yet: allow for it.
        if overhead.saturating_sub(n as u64) > header_allowance(c) {
            c.headers_too_big.set(true);
            return Err(io::Error::other("tar headers too large"));
        }
        Ok(n)
    }
}

// ---- zip -----------------------------------------------------------------------------------

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;
const S_IFSOCK: u32 = 0o140000;

/// Longest symlink target read from a zip entry.
const MAX_LINK_TARGET: u64 = 4096;

/// Bytes of central directory allowed per entry allowed: a header is 46 bytes plus a name (up to
/// 64 KiB, but rarely more than a few hundred bytes) and extra fields.
const CENTRAL_BYTES_PER_ENTRY: u64 = 1024;

/// What a zip's end-of-central-directory record (zip64's when there is one) declares: the entry
/// count and the central directory's size. Read before the zip crate reads the central
/// directory into memory, so an archive declaring millions of entries is refused first.
fn zip_declared(file: &mut File) -> std::io::Result<Option<(u64, u64)>> {
    use std::io::{Seek, SeekFrom};
    let len = file.seek(SeekFrom::End(0))?;
    // The record is 22 bytes plus a comment of up to 64 KiB, at the very end.
    let tail_len = len.min(22 + 65_535 + 20);
    file.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact(&mut tail)?;
    let Some(eocd) = tail.windows(4).rposition(|w| w == b"PK\x05\x06") else {
        return Ok(None);
    };
    let rec = &tail[eocd..];
    if rec.len() < 22 {
        return Ok(None);
    }
    let u16_at = |b: &[u8], i: usize| u64::from(u16::from_le_bytes([b[i], b[i + 1]]));
    let u32_at =
        |b: &[u8], i: usize| u64::from(u32::from_le_bytes(b[i..i + 4].try_into().unwrap()));
    let u64_at = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    let (mut entries, mut size) = (u16_at(rec, 10), u32_at(rec, 12));
    // zip64: the locator (20 bytes) just before the record points at the zip64 record.
    if (entries == 0xFFFF || size == 0xFFFF_FFFF) && eocd >= 20 {
        let loc = &tail[eocd - 20..eocd];
        if loc[..4] == *b"PK\x06\x07" {
            let at = u64_at(loc, 8);
            if at < len {
                file.seek(SeekFrom::Start(at))?;
                let mut z = [0u8; 56];
                if file.read_exact(&mut z).is_ok() && z[..4] == *b"PK\x06\x06" {
                    entries = u64_at(&z, 32);
                    size = u64_at(&z, 40);
                }
            }
        }
    }
    Ok(Some((entries, size)))
}

fn unpack_zip(archive: &Path, tree: &mut Tree<'_>) -> Result<(), UnpackError> {
    let mut file = File::open(archive).map_err(|e| io_error(archive, e))?;
    let size = file.metadata().map_err(|e| io_error(archive, e))?.len();
    tree.counters.compressed.set(size);
    if let Some((entries, central)) = zip_declared(&mut file).map_err(|e| io_error(archive, e))? {
        let max = tree.limits.max_entries;
        if entries > max || central > max.saturating_mul(CENTRAL_BYTES_PER_ENTRY) {
            return Err(UnpackError::LimitExceeded {
                limit: Limit::Entries(max),
                entry: format!("the central directory ({entries} entries, {central} bytes)"),
            });
        }
    }
    std::io::Seek::rewind(&mut file).map_err(|e| io_error(archive, e))?;
    let mut zip =
        zip::ZipArchive::new(BufReader::new(file)).map_err(|e| UnpackError::NotAnArchive {
            kind: ArchiveKind::Zip,
            detail: e.to_string(),
        })?;
    let name_of = |zip: &zip::ZipArchive<_>, i: usize| match zip.name_for_index(i) {
        Some(Ok(name)) => name.into_owned(),
        _ => format!("#{}", i + 1),
    };
    // The central directory tells the entry count up front: refuse before writing anything.
    if zip.len() as u64 > tree.limits.max_entries {
        let name = name_of(&zip, tree.limits.max_entries as usize);
        return Err(UnpackError::LimitExceeded {
            limit: Limit::Entries(tree.limits.max_entries),
            entry: name,
        });
    }
    for i in 0..zip.len() {
        let name = name_of(&zip, i);
        tree.count_entry(&name)?;
        let mut entry = zip.by_index(i).map_err(|e| zip_entry_error(&name, e))?;
        let method = entry.compression();
        if !zip::SUPPORTED_COMPRESSION_METHODS.contains(&method) {
            let what = format!("compression method {method}");
            return Err(refused(&name, Refusal::Unsupported(what)));
        }
        let raw_name = entry
            .name()
            .map_err(|e| zip_entry_error(&name, e))?
            .into_owned();
        let rel =
            zip_relative_path(&raw_name, entry.enclosed_name()).map_err(|r| refused(&name, r))?;
        let mode = entry.unix_mode();
        // `unix_mode()` clears setuid, setgid and sticky: look for them in the raw attributes.
        let special = match (mode, entry.system()) {
            (None, _) | (_, zip::System::Dos) => 0,
            _ => (entry.external_attributes() >> 16) & 0o7000,
        };
        let perms = (mode.unwrap_or(0o644) & 0o777) | special;
        let kind = match mode.map(|m| m & S_IFMT) {
            _ if entry.is_dir() => S_IFDIR,
            Some(0) | None => S_IFREG,
            Some(kind) => kind,
        };
        match kind {
            S_IFDIR => tree.dir(&name, &rel, perms)?,
            S_IFREG => tree.file(&name, &rel, perms, &mut entry, true)?,
            S_IFLNK => {
                let mut target = Vec::new();
                (&mut entry)
                    .take(MAX_LINK_TARGET + 1)
                    .read_to_end(&mut target)
                    .map_err(|e| UnpackError::Damaged {
                        entry: Some(name.clone()),
                        detail: e.to_string(),
                    })?;
                if target.len() as u64 > MAX_LINK_TARGET {
                    return Err(refused(
                        &name,
                        Refusal::Unsupported("a symlink target longer than 4096 bytes".into()),
                    ));
                }
                tree.symlink(&name, &rel, Path::new(&OsString::from_vec(target)))?
            }
            S_IFCHR => return Err(refused(&name, Refusal::Special("character device"))),
            S_IFBLK => return Err(refused(&name, Refusal::Special("block device"))),
            S_IFIFO => return Err(refused(&name, Refusal::Special("fifo"))),
            S_IFSOCK => return Err(refused(&name, Refusal::Special("socket"))),
            other => {
                return Err(refused(
                    &name,
                    Refusal::Unsupported(format!("file type {other:o}")),
                ))
            }
        }
    }
    Ok(())
}

fn zip_entry_error(name: &str, e: zip::result::ZipError) -> UnpackError {
    use zip::result::ZipError;
    match e {
        ZipError::UnsupportedArchive(ZipError::PASSWORD_REQUIRED) | ZipError::InvalidPassword => {
            refused(name, Refusal::Unsupported("encryption".into()))
        }
        ZipError::UnsupportedArchive(what) => refused(name, Refusal::Unsupported(what.into())),
        ZipError::CompressionMethodNotSupported(method) => refused(
            name,
            Refusal::Unsupported(format!("compression method {method}")),
        ),
        e => UnpackError::Damaged {
            entry: Some(name.to_owned()),
            detail: e.to_string(),
        },
    }
}

/// A zip entry's path below the app folder. `enclosed` is the zip crate's `enclosed_name()`,
/// which understands Windows separators and drive prefixes; on top of it, refuse what it would
/// silently make relative (`/x`, `\x`, `C:\x`) and every `..`, as for tar.
fn zip_relative_path(raw: &str, enclosed: Option<PathBuf>) -> Result<PathBuf, Refusal> {
    if raw.contains('\0') {
        return Err(Refusal::BadName);
    }
    let bytes = raw.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if drive || raw.starts_with(['/', '\\']) || raw.split(['/', '\\']).any(|c| c == "..") {
        return Err(Refusal::OutsideTree);
    }
    relative_path(&enclosed.ok_or(Refusal::OutsideTree)?)
}

// ---- the tree being written ----------------------------------------------------------------

#[derive(Default)]
struct Counters {
    /// Compressed bytes read (tar.gz), or the archive's size (zip).
    compressed: Cell<u64>,
    /// Decompressed tar stream bytes read.
    stream: Cell<u64>,
    /// Of those, bytes of file content.
    content: Cell<u64>,
    /// Entries seen.
    entries: Cell<u64>,
    headers_too_big: Cell<bool>,
}

#[derive(Clone, Debug)]
enum Node {
    Dir,
    File { executable: bool },
    Symlink(PathBuf),
}

/// The tree written so far. `nodes` is the truth about every path below `root`: `dest` started
/// empty and only this writes to it, so a path not in `nodes` does not exist.
struct Tree<'a> {
    root: PathBuf,
    limits: &'a Limits,
    counters: &'a Counters,
    nodes: HashMap<PathBuf, Node>,
    /// Every symlink written, with its entry name, for the final check.
    symlinks: Vec<(PathBuf, String)>,
    written: u64,
    buf: Vec<u8>,
}

impl<'a> Tree<'a> {
    fn new(dest: &Path, limits: &'a Limits, counters: &'a Counters) -> Result<Self, UnpackError> {
        let root = fs::canonicalize(dest).map_err(|e| io_error(dest, e))?;
        let mut listing = fs::read_dir(&root).map_err(|e| io_error(dest, e))?;
        if listing.next().is_some() {
            return Err(io_error(
                dest,
                io::Error::new(io::ErrorKind::InvalidInput, "the build folder is not empty"),
            ));
        }
        Ok(Tree {
            root,
            limits,
            counters,
            nodes: HashMap::new(),
            symlinks: Vec::new(),
            written: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    fn count_entry(&self, name: &str) -> Result<(), UnpackError> {
        let entries = &self.counters.entries;
        entries.set(entries.get() + 1);
        if entries.get() > self.limits.max_entries {
            return Err(UnpackError::LimitExceeded {
                limit: Limit::Entries(self.limits.max_entries),
                entry: name.to_owned(),
            });
        }
        Ok(())
    }

    fn dir(&mut self, name: &str, rel: &Path, mode: u32) -> Result<(), UnpackError> {
        check_mode(name, mode)?;
        if rel.as_os_str().is_empty() {
            return Ok(()); // "./": the app folder itself
        }
        self.make_parents(name, rel)?;
        match self.nodes.get(rel) {
            Some(Node::Dir) => Ok(()),
            Some(_) => Err(refused(name, Refusal::ReplacesFile)),
            None => self.mkdir(name, rel),
        }
    }

    /// Writes a regular file from `data`, counting every byte against the limits. `from_stream`
    /// says the bytes come from the tar stream (not from a hard link's copy).
    fn file(
        &mut self,
        name: &str,
        rel: &Path,
        mode: u32,
        data: &mut dyn Read,
        from_stream: bool,
    ) -> Result<(), UnpackError> {
        check_mode(name, mode)?;
        self.make_room(name, rel)?;
        let executable = mode & 0o111 != 0;
        let perms = if executable { 0o755 } else { 0o644 };
        let path = self.root.join(rel);
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true) // O_EXCL: never opens an existing file or follows a symlink
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(perms)
            .open(&path)
            .map_err(|e| io_error(rel, e))?;
        self.nodes.insert(rel.to_owned(), Node::File { executable });
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An entry was found, so this is an archive: a read error means damage.
                Err(e) => return Err(stream_error(self.counters, &Some(name.to_owned()), e)),
            };
            if from_stream {
                let c = &self.counters.content;
                c.set(c.get().saturating_add(n as u64));
            }
            self.account(name, n as u64)?;
            out.write_all(&self.buf[..n])
                .map_err(|e| io_error(rel, e))?;
        }
        // The umask may have narrowed the mode given at creation.
        out.set_permissions(fs::Permissions::from_mode(perms))
            .map_err(|e| io_error(rel, e))?;
        Ok(())
    }

    /// Counts `n` more bytes about to be written, failing before the write that would pass a limit.
    fn account(&mut self, name: &str, n: u64) -> Result<(), UnpackError> {
        let total = self.written.saturating_add(n);
        let limits = self.limits;
        let over = if total > limits.max_unpacked_bytes {
            Some(Limit::UnpackedBytes(limits.max_unpacked_bytes))
        } else if total > limits.ratio_grace_bytes
            && total
                > self
                    .counters
                    .compressed
                    .get()
                    .saturating_mul(limits.max_ratio)
        {
            Some(Limit::Ratio(limits.max_ratio))
        } else {
            None
        };
        if let Some(limit) = over {
            return Err(UnpackError::LimitExceeded {
                limit,
                entry: name.to_owned(),
            });
        }
        self.written = total;
        Ok(())
    }

    fn symlink(&mut self, name: &str, rel: &Path, target: &Path) -> Result<(), UnpackError> {
        if target.as_os_str().is_empty() || target.as_os_str().as_bytes().contains(&0) {
            return Err(refused(
                name,
                Refusal::Unsupported("an empty symlink target".into()),
            ));
        }
        self.check_link(rel, target).map_err(|r| refused(name, r))?;
        self.make_room(name, rel)?;
        std::os::unix::fs::symlink(target, self.root.join(rel)).map_err(|e| io_error(rel, e))?;
        self.nodes
            .insert(rel.to_owned(), Node::Symlink(target.to_owned()));
        self.symlinks.push((rel.to_owned(), name.to_owned()));
        Ok(())
    }

    /// A hard link to a file unpacked earlier becomes a copy of it.
    fn hardlink(
        &mut self,
        name: &str,
        rel: &Path,
        target: &Path,
        mode: u32,
    ) -> Result<(), UnpackError> {
        check_mode(name, mode)?;
        let bad_target = || {
            refused(
                name,
                Refusal::HardlinkTarget {
                    target: target.to_string_lossy().into_owned(),
                },
            )
        };
        let source = relative_path(target).map_err(|_| bad_target())?;
        let Some(Node::File { executable }) = self.nodes.get(&source) else {
            return Err(bad_target());
        };
        let mode = if *executable { 0o755 } else { 0o644 };
        let mut input = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.root.join(&source))
            .map_err(|e| io_error(&source, e))?;
        self.file(name, rel, mode, &mut input, false)
    }

    /// Prepares `rel` to be created as a file or symlink: its parents are real folders, and an
    /// earlier file or symlink of the same name is unlinked (never followed).
    fn make_room(&mut self, name: &str, rel: &Path) -> Result<(), UnpackError> {
        if rel.as_os_str().is_empty() {
            return Err(refused(name, Refusal::BadName));
        }
        self.make_parents(name, rel)?;
        match self.nodes.get(rel) {
            None => Ok(()),
            Some(Node::Dir) => Err(refused(name, Refusal::ReplacesFolder)),
            Some(_) => {
                fs::remove_file(self.root.join(rel)).map_err(|e| io_error(rel, e))?;
                self.nodes.remove(rel);
                Ok(())
            }
        }
    }

    /// Makes every parent of `rel` a folder, refusing to go through a symlink or a file.
    fn make_parents(&mut self, name: &str, rel: &Path) -> Result<(), UnpackError> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        let mut at = PathBuf::new();
        for part in parent.components() {
            at.push(part);
            match self.nodes.get(&at) {
                Some(Node::Dir) => {}
                Some(Node::Symlink(_)) => {
                    let link = at.to_string_lossy().into_owned();
                    return Err(refused(name, Refusal::ThroughSymlink { link }));
                }
                Some(Node::File { .. }) => {
                    let file = at.to_string_lossy().into_owned();
                    return Err(refused(name, Refusal::UnderFile { file }));
                }
                None => self.mkdir(name, &at.clone())?,
            }
        }
        Ok(())
    }

    fn mkdir(&mut self, _name: &str, rel: &Path) -> Result<(), UnpackError> {
        let path = self.root.join(rel);
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .map_err(|e| io_error(rel, e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .map_err(|e| io_error(rel, e))?;
        self.nodes.insert(rel.to_owned(), Node::Dir);
        Ok(())
    }

    /// Resolves the symlink `link -> target` through the tree as it stands, following the
    /// archive's other symlinks, and refuses it if it leaves the tree at any step.
    fn check_link(&self, link: &Path, target: &Path) -> Result<(), Refusal> {
        let text = || target.to_string_lossy().into_owned();
        let outside = || Refusal::SymlinkOutside { target: text() };
        // Where resolution stands, as components below the root.
        let mut at: Vec<OsString> = link
            .parent()
            .map(|p| p.iter().map(OsStr::to_owned).collect())
            .unwrap_or_default();
        // What is left to resolve, last component first.
        let mut pending: Vec<OsString> = Vec::new();
        push_components(&mut pending, target).map_err(|()| outside())?;
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                at.pop().ok_or_else(outside)?;
                continue;
            }
            at.push(part);
            let here: PathBuf = at.iter().collect();
            if let Some(Node::Symlink(next)) = self.nodes.get(&here) {
                hops += 1;
                if hops > 40 {
                    return Err(Refusal::SymlinkLoop { target: text() });
                }
                at.pop();
                push_components(&mut pending, next).map_err(|()| outside())?;
            }
        }
        Ok(())
    }

    /// Checks every symlink against the final tree and counts what was written.
    fn finish(self) -> Result<Unpacked, UnpackError> {
        for (rel, name) in &self.symlinks {
            if let Some(Node::Symlink(target)) = self.nodes.get(rel) {
                self.check_link(rel, target).map_err(|r| refused(name, r))?;
            }
        }
        let files = self
            .nodes
            .values()
            .filter(|n| !matches!(n, Node::Dir))
            .count() as u64;
        if files == 0 {
            return Err(UnpackError::Empty);
        }
        Ok(Unpacked {
            files,
            bytes: self.written,
        })
    }
}

/// Pushes `path`'s components onto `pending` in reverse (so they pop in order), `..` kept as
/// `..`. Fails for an absolute path.
fn push_components(pending: &mut Vec<OsString>, path: &Path) -> Result<(), ()> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_owned()),
            Component::ParentDir => parts.push(OsString::from("..")),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err(()),
        }
    }
    pending.extend(parts.into_iter().rev());
    Ok(())
}

/// An archive path as plain components below the app folder ("" for the folder itself).
fn relative_path(path: &Path) -> Result<PathBuf, Refusal> {
    if path.as_os_str().as_bytes().contains(&0) {
        return Err(Refusal::BadName);
    }
    let mut rel = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => rel.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(Refusal::OutsideTree)
            }
        }
    }
    Ok(rel)
}

fn check_mode(name: &str, mode: u32) -> Result<(), UnpackError> {
    if mode & 0o7000 != 0 {
        return Err(refused(name, Refusal::SpecialBits(mode & 0o7777)));
    }
    Ok(())
}

fn refused(name: &str, reason: Refusal) -> UnpackError {
    UnpackError::Refused {
        entry: name.to_owned(),
        reason,
    }
}

fn io_error(path: &Path, source: io::Error) -> UnpackError {
    UnpackError::Io {
        path: path.to_string_lossy().into_owned(),
        source,
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A name from an archive, quoted for a one-line message: quotes and control characters
/// escaped, and cut short when very long.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        write_clean(f, self.0, 200, true)?;
        f.write_str("\"")
    }
}

/// Text that may echo archive bytes (a library's error message), made one short line.
struct Clean<'a>(&'a str);

impl fmt::Display for Clean<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_clean(f, self.0, 160, false)
    }
}

fn write_clean(f: &mut fmt::Formatter<'_>, text: &str, max: usize, quotes: bool) -> fmt::Result {
    for (i, c) in text.chars().enumerate() {
        if i == max {
            return f.write_str("…");
        }
        match c {
            '"' if quotes => f.write_str("\\\"")?,
            c if c.is_control() => write!(f, "{}", c.escape_default())?,
            c => write!(f, "{c}")?,
        }
    }
    Ok(())
}

/// A limit for a message, in the units of the flag that sets it and of every other size caas
/// prints (`caas_api::format_bytes`: MB of 1024 KB): whole MB (rounded down) from 1 MB on.
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= MIB {
            write!(f, "{} MB", self.0 / MIB)
        } else {
            write!(f, "{}", caas_api::format_bytes(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::collections::BTreeMap;
    use tar::{Builder, EntryType, Header};
    use zip::write::SimpleFileOptions;
    use zip::{CompressionMethod, ZipWriter};

    /// A temporary folder holding `dest` (empty, where archives unpack), `canary` (a sibling
    /// that attacks aim at) and `upload` (the archive).
    struct Fx {
        tmp: tempfile::TempDir,
    }

    type TarGz = Builder<GzEncoder<File>>;

    impl Fx {
        fn new() -> Fx {
            let tmp = tempfile::tempdir().unwrap();
            fs::create_dir(tmp.path().join("dest")).unwrap();
            fs::create_dir(tmp.path().join("canary")).unwrap();
            fs::write(tmp.path().join("canary/keep.txt"), "keep").unwrap();
            Fx { tmp }
        }
        fn dest(&self) -> PathBuf {
            self.tmp.path().join("dest")
        }
        fn canary(&self) -> PathBuf {
            self.tmp.path().join("canary")
        }
        fn upload(&self) -> PathBuf {
            self.tmp.path().join("upload")
        }

        fn tar_gz(&self, level: u32, add: impl FnOnce(&mut TarGz)) {
            let file = File::create(self.upload()).unwrap();
            let mut b = Builder::new(GzEncoder::new(file, Compression::new(level)));
            add(&mut b);
            b.into_inner().unwrap().finish().unwrap();
        }

        fn zip(&self, add: impl FnOnce(&mut ZipWriter<File>)) {
            let mut z = ZipWriter::new(File::create(self.upload()).unwrap());
            add(&mut z);
            z.finish().unwrap();
        }

        fn unpack(&self, kind: ArchiveKind, limits: &Limits) -> Result<Unpacked, UnpackError> {
            let result = unpack(&self.upload(), kind, &self.dest(), limits);
            self.assert_contained();
            result
        }

        fn unpack_err(&self, kind: ArchiveKind) -> UnpackError {
            self.unpack(kind, &Limits::default()).unwrap_err()
        }

        /// Nothing was written outside `dest`: the canary and the folder around it are as made.
        fn assert_contained(&self) {
            assert_eq!(
                listing(&self.canary()),
                BTreeMap::from([("keep.txt".to_string(), "file 4".to_string())])
            );
            assert_eq!(
                fs::read_to_string(self.canary().join("keep.txt")).unwrap(),
                "keep"
            );
            let mut around: Vec<String> = fs::read_dir(self.tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            around.sort();
            assert_eq!(around, ["canary", "dest", "upload"]);
        }

        /// Bytes of regular files under dest.
        fn dest_bytes(&self) -> u64 {
            listing(&self.dest())
                .values()
                .filter_map(|v| v.strip_prefix("file "))
                .map(|n| n.parse::<u64>().unwrap())
                .sum()
        }
    }

    /// Every path below `root`, with what it is: "dir", "file SIZE" or "link -> TARGET".
    fn listing(root: &Path) -> BTreeMap<String, String> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
            for e in fs::read_dir(dir).unwrap() {
                let path = e.unwrap().path();
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let meta = fs::symlink_metadata(&path).unwrap();
                if meta.file_type().is_symlink() {
                    let target = fs::read_link(&path).unwrap();
                    out.insert(rel, format!("link -> {}", target.display()));
                } else if meta.is_dir() {
                    out.insert(rel, "dir".into());
                    walk(root, &path, out);
                } else {
                    out.insert(rel, format!("file {}", meta.len()));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(root, root, &mut out);
        out
    }

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Appends a tar entry exactly as given: no path checks (the crate's helpers refuse `..`).
    fn raw(b: &mut TarGz, name: &str, kind: EntryType, mode: u32, link: &str, data: &[u8]) {
        let mut h = Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_entry_type(kind);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    fn file(b: &mut TarGz, name: &str, mode: u32, data: &str) {
        raw(b, name, EntryType::Regular, mode, "", data.as_bytes());
    }
    fn dir(b: &mut TarGz, name: &str) {
        raw(b, name, EntryType::Directory, 0o755, "", b"");
    }
    fn symlink(b: &mut TarGz, name: &str, target: &str) {
        raw(b, name, EntryType::Symlink, 0o777, target, b"");
    }
    fn hardlink(b: &mut TarGz, name: &str, target: &str) {
        raw(b, name, EntryType::Link, 0o644, target, b"");
    }

    fn opts(mode: u32) -> SimpleFileOptions {
        SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .unix_permissions(mode)
    }
    fn zfile(z: &mut ZipWriter<File>, name: &str, mode: u32, data: &str) {
        z.start_file(name, opts(mode)).unwrap();
        z.write_all(data.as_bytes()).unwrap();
    }
    /// A zip entry with raw unix mode bits (file type and special bits included).
    fn zfile_raw_mode(z: &mut ZipWriter<File>, name: &str, mode: u32) {
        let o = SimpleFileOptions::default()
            .system(zip::System::Unix)
            .external_attributes(mode << 16);
        z.start_file(name, o).unwrap();
        z.write_all(b"x").unwrap();
    }

    fn assert_refused(e: UnpackError, entry: &str, reason: Refusal) {
        match e {
            UnpackError::Refused {
                entry: ref got,
                reason: ref why,
            } if got == entry && *why == reason => {}
            e => panic!("expected {entry:?} refused with {reason:?}, got {e:?} ({e})"),
        }
    }

    fn assert_limit(e: &UnpackError, want: Limit) {
        match e {
            UnpackError::LimitExceeded { limit, .. } if *limit == want => {}
            e => panic!("expected limit {want:?}, got {e:?} ({e})"),
        }
    }

    // ---- legitimate archives ----

    #[test]
    fn tar_gz_round_trip() {
        let fx = Fx::new();
        fx.tar_gz(6, |b| {
            dir(b, "./");
            dir(b, "./app/");
            file(b, "./app/bin/run", 0o775, "#!/bin/sh\n");
            file(b, "./app/lib/x.txt", 0o666, "hello");
            file(b, "./app/lib/ro.txt", 0o400, "ro");
            dir(b, "./app/empty/");
            file(b, "deep/a/b/c.txt", 0o644, "deep");
            file(b, "./node_modules/pkg/cli.js", 0o755, "cli");
            symlink(b, "./node_modules/.bin/x", "../pkg/cli.js");
            symlink(b, "./lib", "app/lib");
            symlink(b, "./self", ".");
            symlink(b, "./dangling", "app/not-yet");
            hardlink(b, "./app/lib/y.txt", "./app/lib/x.txt");
            file(b, "./app/lib/x.txt", 0o644, "second"); // a later file replaces an earlier one
        });
        assert_eq!(sniff(&fx.upload()), Some(ArchiveKind::TarGz));
        let got = fx.unpack(ArchiveKind::TarGz, &Limits::default()).unwrap();
        let d = fx.dest();
        assert_eq!(
            listing(&d),
            BTreeMap::from(
                [
                    ("app", "dir"),
                    ("app/bin", "dir"),
                    ("app/bin/run", "file 10"),
                    ("app/empty", "dir"),
                    ("app/lib", "dir"),
                    ("app/lib/ro.txt", "file 2"),
                    ("app/lib/x.txt", "file 6"),
                    ("app/lib/y.txt", "file 5"),
                    ("dangling", "link -> app/not-yet"),
                    ("deep", "dir"),
                    ("deep/a", "dir"),
                    ("deep/a/b", "dir"),
                    ("deep/a/b/c.txt", "file 4"),
                    ("lib", "link -> app/lib"),
                    ("node_modules", "dir"),
                    ("node_modules/.bin", "dir"),
                    ("node_modules/.bin/x", "link -> ../pkg/cli.js"),
                    ("node_modules/pkg", "dir"),
                    ("node_modules/pkg/cli.js", "file 3"),
                    ("self", "link -> ."),
                ]
                .map(|(k, v)| (k.to_string(), v.to_string()))
            )
        );
        assert_eq!(
            got,
            Unpacked {
                files: 10,
                bytes: 10 + 5 + 2 + 4 + 3 + 5 + 6
            }
        );
        assert_eq!(mode_of(&d.join("app/bin/run")), 0o755);
        assert_eq!(mode_of(&d.join("app/lib/x.txt")), 0o644);
        assert_eq!(mode_of(&d.join("app/lib/ro.txt")), 0o644);
        assert_eq!(mode_of(&d.join("node_modules/pkg/cli.js")), 0o755);
        assert_eq!(mode_of(&d.join("app/empty")), 0o755);
        assert_eq!(
            fs::read_to_string(d.join("app/lib/y.txt")).unwrap(),
            "hello"
        );
        assert_eq!(
            fs::read_to_string(d.join("app/lib/x.txt")).unwrap(),
            "second"
        );
        assert_eq!(
            fs::read_to_string(d.join("node_modules/.bin/x")).unwrap(),
            "cli"
        );
    }

    #[test]
    fn zip_round_trip() {
        let fx = Fx::new();
        fx.zip(|z| {
            z.add_directory("app/", opts(0o755)).unwrap();
            zfile(z, "app/bin/run", 0o755, "#!/bin/sh\n");
            zfile(z, "app/lib/x.txt", 0o600, "hello");
            z.add_directory("app/empty/", opts(0o755)).unwrap();
            zfile(z, "node_modules/pkg/cli.js", 0o644, "cli");
            z.add_symlink("node_modules/.bin/x", "../pkg/cli.js", opts(0o777))
                .unwrap();
            // Old Windows tools write `\` separators; that is a path, not an escape.
            zfile(z, "win\\dir\\file.txt", 0o644, "win");
            // A DOS-made entry has no unix mode.
            let dos = SimpleFileOptions::default().system(zip::System::Dos);
            z.start_file("WEB-INF/web.xml", dos).unwrap();
            z.write_all(b"<web-app/>").unwrap();
        });
        assert_eq!(sniff(&fx.upload()), Some(ArchiveKind::Zip));
        let got = fx.unpack(ArchiveKind::Zip, &Limits::default()).unwrap();
        let d = fx.dest();
        assert_eq!(
            listing(&d),
            BTreeMap::from(
                [
                    ("WEB-INF", "dir"),
                    ("WEB-INF/web.xml", "file 10"),
                    ("app", "dir"),
                    ("app/bin", "dir"),
                    ("app/bin/run", "file 10"),
                    ("app/empty", "dir"),
                    ("app/lib", "dir"),
                    ("app/lib/x.txt", "file 5"),
                    ("node_modules", "dir"),
                    ("node_modules/.bin", "dir"),
                    ("node_modules/.bin/x", "link -> ../pkg/cli.js"),
                    ("node_modules/pkg", "dir"),
                    ("node_modules/pkg/cli.js", "file 3"),
                    ("win", "dir"),
                    ("win/dir", "dir"),
                    ("win/dir/file.txt", "file 3"),
                ]
                .map(|(k, v)| (k.to_string(), v.to_string()))
            )
        );
        assert_eq!(
            got,
            Unpacked {
                files: 6,
                bytes: 10 + 10 + 5 + 3 + 3
            }
        );
        assert_eq!(mode_of(&d.join("app/bin/run")), 0o755);
        assert_eq!(mode_of(&d.join("app/lib/x.txt")), 0o644);
        assert_eq!(mode_of(&d.join("WEB-INF/web.xml")), 0o644);
        assert_eq!(mode_of(&d.join("app/empty")), 0o755);
    }

    // ---- paths ----

    #[test]
    fn tar_dot_dot_is_refused() {
        for name in ["../canary/pwned", "app/../../canary/pwned", "app/.."] {
            let fx = Fx::new();
            fx.tar_gz(6, |b| {
                file(b, "ok.txt", 0o644, "ok");
                file(b, name, 0o644, "pwned");
            });
            let e = fx.unpack_err(ArchiveKind::TarGz);
            assert_eq!(
                e.to_string(),
                format!(
                    "refused archive entry \"{name}\": it points outside the app folder; paths \
                     in an archive must be relative and must not contain `..`"
                )
            );
            assert_refused(e, name, Refusal::OutsideTree);
        }
    }

    #[test]
    fn zip_dot_dot_is_refused() {
        for name in [
            "../canary/pwned",
            "..\\canary\\pwned",
            "a/../b",
            "a\\..\\..\\x",
        ] {
            let fx = Fx::new();
            fx.zip(|z| zfile(z, name, 0o644, "pwned"));
            assert_refused(fx.unpack_err(ArchiveKind::Zip), name, Refusal::OutsideTree);
        }
    }

    #[test]
    fn absolute_paths_are_refused() {
        let fx = Fx::new();
        let abs = format!("{}/pwned", fx.canary().display());
        fx.tar_gz(6, |b| file(b, &abs, 0o644, "pwned"));
        assert_refused(
            fx.unpack_err(ArchiveKind::TarGz),
            &abs,
            Refusal::OutsideTree,
        );

        for name in [
            abs.as_str(),
            "/pwned",
            "\\pwned",
            "C:\\pwned",
            "c:pwned",
            "C:/pwned",
        ] {
            let fx = Fx::new();
            fx.zip(|z| zfile(z, name, 0o644, "pwned"));
            assert_refused(fx.unpack_err(ArchiveKind::Zip), name, Refusal::OutsideTree);
        }
    }

    // ---- symlinks ----

    #[test]
    fn symlinks_leaving_the_tree_are_refused() {
        let canary = Fx::new().canary().display().to_string(); // any absolute path
        let cases = [
            ("evil", canary.as_str()),
            ("evil", "/etc"),
            ("evil", "../canary"),
            ("evil", ".."),
            ("a/b/evil", "../../../canary/keep.txt"),
            ("a/evil", "./../b/../../x"),
        ];
        for (name, target) in cases {
            let fx = Fx::new();
            fx.tar_gz(6, |b| {
                file(b, "ok.txt", 0o644, "ok");
                symlink(b, name, target);
            });
            let want = Refusal::SymlinkOutside {
                target: target.into(),
            };
            assert_refused(fx.unpack_err(ArchiveKind::TarGz), name, want.clone());

            let fx = Fx::new();
            fx.zip(|z| {
                zfile(z, "ok.txt", 0o644, "ok");
                z.add_symlink(name, target, opts(0o777)).unwrap();
            });
            assert_refused(fx.unpack_err(ArchiveKind::Zip), name, want);
        }
    }

    #[test]
    fn symlink_chains_that_leave_the_tree_are_refused() {
        // d/l -> .. is the app folder itself; d/m -> l/.. is then the folder above it.
        let fx = Fx::new();
        fx.tar_gz(6, |b| {
            symlink(b, "d/l", "..");
            symlink(b, "d/m", "l/..");
        });
        let want = Refusal::SymlinkOutside {
            target: "l/..".into(),
        };
        assert_refused(fx.unpack_err(ArchiveKind::TarGz), "d/m", want);

        // a/m -> l/../.. looks inside while a/l does not exist; a later a/l -> .. makes it
        // escape, which the check of the finished tree catches.
        let fx = Fx::new();
        fx.tar_gz(6, |b| {
            file(b, "ok.txt", 0o644, "ok");
            symlink(b, "a/m", "l/../..");
            symlink(b, "a/l", "..");
        });
        let want = Refusal::SymlinkOutside {
            target: "l/../..".into(),
        };
        assert_refused(fx.unpack_err(ArchiveKind::TarGz), "a/m", want);

        let fx = Fx::new();
        fx.tar_gz(6, |b| {
            file(b, "ok.txt", 0o644, "ok");
            symlink(b, "a", "b");
            symlink(b, "b", "a");
        });
        let want = Refusal::SymlinkLoop { target: "b".into() };
        assert_refused(fx.unpack_err(ArchiveKind::TarGz), "a", want);
    }

    #[test]
    fn nothing_is_written_through_a_symlink() {
        // An allowed link is still never a parent.
        let fx = Fx::new();
        fx.tar_gz(6, |b| {
            dir(b, "sub/");
            symlink(b, "here", ".");
            file(b, "here/file", 0o644, "x");
        });
        let want = Refusal::ThroughSymlink {
            link: "here".into(),
        };
        assert_refused(fx.unpack_err(ArchiveKind::TarGz), "here/file", want);

        let fx = Fx::new();
        fx.zip(|z| {
            z.add_directory("sub/", opts(0o755)).unwrap();
            z.add_symlink("s", "sub", opts(0o777)).unwrap();
            z.add_directory("s/inner/", opts(0o755)).unwrap();
        });
        let want = Refusal::ThroughSymlink { link: "s".into() };
        assert_refused(fx.unpack_err(ArchiveKind::Zip), "s/inner/", want);

        // `dir -> <outside>` then `dir/file`: stopped at the link, before the file.
        let fx = Fx::new();
        let outside = fx.canary().display().to_string();
        fx.tar_gz(6, |b| {
            symlink(b, "dir", &outside);
            file(b, "dir/pwned", 0o644, "pwned");
        });
        let e = fx.unpack_err(ArchiveKind::TarGz);
        assert_refused(e, "dir", Refusal::SymlinkOutside { target: outside });

        // A file under a file.
        let fx = Fx::new();
        fx.tar_gz(6, |b| {
            file(b, "a", 0o644, "a");
            file(b, "a/b", 0o644, "b");
        });
        let want = Refusal::UnderFile { file: "a".into() };
        assert_refused(fx.unpack_err(ArchiveKind::TarGz), "a/b", want);
    }

    #[test]
    fn duplicates_replace_files_but_never_folders_and_never_follow_links() {
        // A file replacing a symlink unlinks it: the link's target is untouched.
        let fx = Fx::new();
        fx.tar_gz(6, |b| {
            file(b, "target.txt", 0o644, "original");
            symlink(b, "link", "target.txt");
            file(b, "link", 0o644, "new");
        });
        fx.unpack(ArchiveKind::TarGz, &Limits::default()).unwrap();
        let d = fx.dest();
        assert_eq!(
            fs::read_to_string(d.join("target.txt")).unwrap(),
            "original"
        );
        assert_eq!(fs::read_to_string(d.join("link")).unwrap(), "new");
        assert!(!fs::symlink_metadata(d.join("link")).unwrap().is_symlink());

        let fx = Fx::new();
        fx.tar_gz(6, |b| {
            dir(b, "x/");
            file(b, "x", 0o644, "file");
        });
        assert_refused(
            fx.unpack_err(ArchiveKind::TarGz),
            "x",
            Refusal::ReplacesFolder,
        );

        let fx = Fx::new();
        fx.tar_gz(6, |b| {
            file(b, "x", 0o644, "file");
            dir(b, "x/");
        });
        assert_refused(
            fx.unpack_err(ArchiveKind::TarGz),
            "x/",
            Refusal::ReplacesFile,
        );

        let fx = Fx::new();
        fx.tar_gz(6, |b| {
            dir(b, "x/");
            symlink(b, "x", ".");
        });
        assert_refused(
            fx.unpack_err(ArchiveKind::TarGz),
            "x",
            Refusal::ReplacesFolder,
        );
    }

    // ---- hard links ----

    #[test]
    fn hardlinks_only_to_files_unpacked_before() {
        let cases = [
            ("../canary/keep.txt", vec![]),
            ("missing.txt", vec![]),
            ("d", vec![("d/", EntryType::Directory, "")]),
            (
                "l",
                vec![
                    ("f", EntryType::Regular, ""),
                    ("l", EntryType::Symlink, "f"),
                ],
            ),
            ("/etc/passwd", vec![]),
        ];
        for (target, before) in cases {
            let fx = Fx::new();
            fx.tar_gz(6, |b| {
                for (name, kind, link) in &before {
                    raw(b, name, *kind, 0o644, link, b"");
                }
                hardlink(b, "h", target);
            });
            let want = Refusal::HardlinkTarget {
                target: target.into(),
            };
            assert_refused(fx.unpack_err(ArchiveKind::TarGz), "h", want);
        }
    }

    // ---- special files and bits ----

    #[test]
    fn devices_fifos_and_sockets_are_refused() {
        for (kind, what) in [
            (EntryType::Char, "character device"),
            (EntryType::Block, "block device"),
            (EntryType::Fifo, "fifo"),
        ] {
            let fx = Fx::new();
            fx.tar_gz(6, |b| {
                file(b, "ok.txt", 0o644, "ok");
                raw(b, "dev/thing", kind, 0o644, "", b"");
            });
            let e = fx.unpack_err(ArchiveKind::TarGz);
            assert!(e.to_string().contains(what), "{e}");
            assert_refused(e, "dev/thing", Refusal::Special(what));
        }
        for (mode, what) in [
            (S_IFCHR, "character device"),
            (S_IFBLK, "block device"),
            (S_IFIFO, "fifo"),
            (S_IFSOCK, "socket"),
        ] {
            let fx = Fx::new();
            fx.zip(|z| zfile_raw_mode(z, "thing", mode | 0o644));
            assert_refused(
                fx.unpack_err(ArchiveKind::Zip),
                "thing",
                Refusal::Special(what),
            );
        }
    }

    #[test]
    fn setuid_setgid_and_sticky_are_refused() {
        for mode in [0o4755, 0o2755, 0o1777] {
            let fx = Fx::new();
            fx.tar_gz(6, |b| file(b, "bin/su", mode, "x"));
            let e = fx.unpack_err(ArchiveKind::TarGz);
            assert!(e.to_string().contains("\"bin/su\""), "{e}");
            assert_refused(e, "bin/su", Refusal::SpecialBits(mode));

            let fx = Fx::new();
            fx.zip(|z| zfile_raw_mode(z, "bin/su", S_IFREG | mode));
            assert_refused(
                fx.unpack_err(ArchiveKind::Zip),
                "bin/su",
                Refusal::SpecialBits(mode),
            );
        }
        let fx = Fx::new();
        fx.tar_gz(6, |b| raw(b, "tmp/", EntryType::Directory, 0o1777, "", b""));
        assert_refused(
            fx.unpack_err(ArchiveKind::TarGz),
            "tmp/",
            Refusal::SpecialBits(0o1777),
        );
    }

    // ---- limits ----

    #[test]
    fn gzip_bomb_stops_early() {
        // 1 GiB of zeros in one tar entry, compressed as it is generated (about 1 MiB).
        let fx = Fx::new();
        fx.tar_gz(9, |b| {
            let mut h = Header::new_gnu();
            h.set_path("zeros").unwrap();
            h.set_size(1 << 30);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, io::repeat(0).take(1 << 30)).unwrap();
        });
        let compressed = fs::metadata(fx.upload()).unwrap().len();
        assert!(compressed < 2 * MIB, "{compressed}");

        // The default limits catch it by its ratio, just past the 16 MiB grace.
        let e = fx
            .unpack(ArchiveKind::TarGz, &Limits::default())
            .unwrap_err();
        assert_limit(&e, Limit::Ratio(200));
        assert!(
            e.to_string().contains("`caasd --max-compression-ratio`"),
            "{e}"
        );
        assert!(e.to_string().contains("\"zeros\""), "{e}");
        assert!(fx.dest_bytes() <= 16 * MIB, "{}", fx.dest_bytes());

        // Without a ratio limit, the size limit stops it exactly at the limit.
        fs::remove_dir_all(fx.dest()).unwrap();
        fs::create_dir(fx.dest()).unwrap();
        let limits = Limits {
            max_unpacked_bytes: 8 * MIB,
            max_ratio: u64::MAX,
            ..Limits::default()
        };
        let e = fx.unpack(ArchiveKind::TarGz, &limits).unwrap_err();
        assert_limit(&e, Limit::UnpackedBytes(8 * MIB));
        assert!(e.to_string().contains("more than 8 MB"), "{e}");
        assert!(e.to_string().contains("`caasd --max-unpacked-mb`"), "{e}");
        assert!(fx.dest_bytes() <= 8 * MIB, "{}", fx.dest_bytes());
    }

    #[test]
    fn zip_bomb_stops_early() {
        // 64 MiB of zeros deflate to about 64 KiB: a ratio near 1000.
        let fx = Fx::new();
        fx.zip(|z| {
            z.start_file("a.txt", opts(0o644)).unwrap();
            z.write_all(b"fine").unwrap();
            let o = opts(0o644).compression_level(Some(9)).large_file(false);
            z.start_file("zeros", o).unwrap();
            io::copy(&mut io::repeat(0).take(64 * MIB), z).unwrap();
        });
        let e = fx.unpack(ArchiveKind::Zip, &Limits::default()).unwrap_err();
        assert_limit(&e, Limit::Ratio(200));
        assert!(fx.dest_bytes() <= 16 * MIB, "{}", fx.dest_bytes());

        // A lower size limit trips first.
        fs::remove_dir_all(fx.dest()).unwrap();
        fs::create_dir(fx.dest()).unwrap();
        let limits = Limits {
            max_unpacked_bytes: MIB,
            ..Limits::default()
        };
        let e = fx.unpack(ArchiveKind::Zip, &limits).unwrap_err();
        assert_limit(&e, Limit::UnpackedBytes(MIB));
        assert!(fx.dest_bytes() <= MIB, "{}", fx.dest_bytes());
    }

    #[test]
    fn zip_declared_size_lies() {
        // The headers claim 100 bytes; the data inflates to 1 MiB.
        let fx = Fx::new();
        fx.zip(|z| {
            z.start_file("big.txt", opts(0o644)).unwrap();
            io::copy(&mut io::repeat(b'a').take(MIB), z).unwrap();
        });
        let mut bytes = fs::read(fx.upload()).unwrap();
        assert_eq!(&bytes[..4], b"PK\x03\x04");
        bytes[22..26].copy_from_slice(&100u32.to_le_bytes()); // local header
        let central = bytes.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        bytes[central + 24..central + 28].copy_from_slice(&100u32.to_le_bytes());
        fs::write(fx.upload(), &bytes).unwrap();

        let e = fx.unpack_err(ArchiveKind::Zip);
        assert!(
            matches!(&e, UnpackError::Damaged { entry: Some(n), .. } if n == "big.txt"),
            "{e:?}"
        );
        assert!(fx.dest_bytes() <= 100, "{}", fx.dest_bytes());
    }

    #[test]
    fn a_zip_declaring_millions_of_entries_is_refused_before_its_directory_is_read() {
        let fx = Fx::new();
        fx.zip(|z| {
            z.start_file("a.txt", opts(0o644)).unwrap();
            z.write_all(b"a").unwrap();
        });
        let mut bytes = fs::read(fx.upload()).unwrap();
        let eocd = bytes.windows(4).rposition(|w| w == b"PK\x05\x06").unwrap();
        // 65 534 entries and a 4 GiB - 2 central directory, as claimed by the record.
        bytes[eocd + 8..eocd + 10].copy_from_slice(&0xFFFEu16.to_le_bytes());
        bytes[eocd + 10..eocd + 12].copy_from_slice(&0xFFFEu16.to_le_bytes());
        bytes[eocd + 12..eocd + 16].copy_from_slice(&0xFFFF_FFFEu32.to_le_bytes());
        fs::write(fx.upload(), &bytes).unwrap();
        let e = fx.unpack_err(ArchiveKind::Zip);
        assert!(
            matches!(&e, UnpackError::LimitExceeded { limit: Limit::Entries(_), entry } if entry.contains("central directory")),
            "{e:?}"
        );
        assert_eq!(fx.dest_bytes(), 0);
    }

    #[test]
    fn oversized_tar_headers_are_refused() {
        // A pax header of 40 MiB: the tar crate would hold it in memory.
        let fx = Fx::new();
        fx.tar_gz(9, |b| {
            let mut h = Header::new_ustar();
            h.set_path("PaxHeaders/x").unwrap();
            h.set_size(40 * MIB);
            h.set_entry_type(EntryType::XHeader);
            h.set_cksum();
            b.append(&h, io::repeat(b'a').take(40 * MIB)).unwrap();
            file(b, "x", 0o644, "x");
        });
        let e = fx.unpack_err(ArchiveKind::TarGz);
        assert!(
            matches!(&e, UnpackError::Damaged { .. }) && e.to_string().contains("tar headers"),
            "{e:?}"
        );
    }

    #[test]
    fn too_many_entries() {
        let limits = Limits {
            max_entries: 10,
            ..Limits::default()
        };
        let fx = Fx::new();
        fx.tar_gz(6, |b| {
            for i in 0..11 {
                file(b, &format!("f{i}"), 0o644, "x");
            }
        });
        let e = fx.unpack(ArchiveKind::TarGz, &limits).unwrap_err();
        assert_limit(&e, Limit::Entries(10));
        assert!(e.to_string().contains("\"f10\""), "{e}");
        assert!(
            e.to_string().contains("`caasd --max-archive-entries`"),
            "{e}"
        );

        let fx = Fx::new();
        fx.zip(|z| {
            for i in 0..11 {
                zfile(z, &format!("f{i}"), 0o644, "x");
            }
        });
        let e = fx.unpack(ArchiveKind::Zip, &limits).unwrap_err();
        assert_limit(&e, Limit::Entries(10));
        assert!(
            listing(&fx.dest()).is_empty(),
            "a zip is refused before any write"
        );
    }

    // ---- not archives, empty archives ----

    #[test]
    fn not_an_archive() {
        let fx = Fx::new();
        fs::write(fx.upload(), "hello, I am a text file\n").unwrap();
        assert_eq!(sniff(&fx.upload()), None);
        let e = fx.unpack_err(ArchiveKind::TarGz);
        assert!(matches!(e, UnpackError::NotAnArchive { .. }), "{e:?}");
        assert!(
            e.to_string().starts_with("not a valid tar.gz archive: "),
            "{e}"
        );
        let e = fx.unpack_err(ArchiveKind::Zip);
        assert!(matches!(e, UnpackError::NotAnArchive { .. }), "{e:?}");
        assert!(
            e.to_string().starts_with("not a valid zip archive: "),
            "{e}"
        );

        // gzip, but not a tar inside
        let mut gz = GzEncoder::new(File::create(fx.upload()).unwrap(), Compression::default());
        gz.write_all(&[b'x'; 2000]).unwrap();
        gz.finish().unwrap();
        let e = fx.unpack_err(ArchiveKind::TarGz);
        assert!(matches!(e, UnpackError::NotAnArchive { .. }), "{e:?}");

        // a zip cut short
        fx.zip(|z| zfile(z, "a.txt", 0o644, "hello"));
        let bytes = fs::read(fx.upload()).unwrap();
        fs::write(fx.upload(), &bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(sniff(&fx.upload()), Some(ArchiveKind::Zip));
        let e = fx.unpack_err(ArchiveKind::Zip);
        assert!(matches!(e, UnpackError::NotAnArchive { .. }), "{e:?}");

        // a tar.gz cut short, in the middle of an entry
        fx.tar_gz(1, |b| {
            file(b, "a.txt", 0o644, "a");
            raw(b, "big", EntryType::Regular, 0o644, "", &[7u8; 100_000]);
        });
        let bytes = fs::read(fx.upload()).unwrap();
        fs::write(fx.upload(), &bytes[..bytes.len() - 100]).unwrap();
        let e = fx.unpack_err(ArchiveKind::TarGz);
        assert!(
            matches!(&e, UnpackError::Damaged { entry: Some(n), .. } if n == "big"),
            "{e:?}"
        );
    }

    #[test]
    fn empty_archives() {
        let fx = Fx::new();
        fx.tar_gz(6, |_| {});
        assert!(matches!(
            fx.unpack_err(ArchiveKind::TarGz),
            UnpackError::Empty
        ));

        let fx = Fx::new();
        fx.tar_gz(6, |b| {
            dir(b, "./");
            dir(b, "./only-a-folder/");
        });
        let e = fx.unpack_err(ArchiveKind::TarGz);
        assert_eq!(
            e.to_string(),
            "the archive is empty: it holds no files to build"
        );

        let fx = Fx::new();
        fx.zip(|_| {});
        assert_eq!(sniff(&fx.upload()), Some(ArchiveKind::Zip));
        assert!(matches!(
            fx.unpack_err(ArchiveKind::Zip),
            UnpackError::Empty
        ));

        let fx = Fx::new();
        fs::write(fx.upload(), "").unwrap();
        assert_eq!(sniff(&fx.upload()), None);
        let e = fx.unpack_err(ArchiveKind::TarGz);
        assert!(matches!(e, UnpackError::NotAnArchive { .. }), "{e:?}");
    }

    // ---- other refusals ----

    #[test]
    fn unsupported_zip_compression_and_tar_types() {
        let fx = Fx::new();
        fx.zip(|z| zfile(z, "a.txt", 0o644, "hello"));
        let mut bytes = fs::read(fx.upload()).unwrap();
        bytes[8..10].copy_from_slice(&12u16.to_le_bytes()); // bzip2, local header
        let central = bytes.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        bytes[central + 10..central + 12].copy_from_slice(&12u16.to_le_bytes());
        fs::write(fx.upload(), &bytes).unwrap();
        let e = fx.unpack_err(ArchiveKind::Zip);
        assert!(
            matches!(&e, UnpackError::Refused { entry, reason: Refusal::Unsupported(_) } if entry == "a.txt"),
            "{e:?}"
        );

        let fx = Fx::new();
        fx.tar_gz(6, |b| raw(b, "label", EntryType::new(b'V'), 0o644, "", b""));
        let e = fx.unpack_err(ArchiveKind::TarGz);
        assert!(
            matches!(&e, UnpackError::Refused { entry, reason: Refusal::Unsupported(_) } if entry == "label"),
            "{e:?}"
        );
    }

    #[test]
    fn dest_must_be_empty() {
        let fx = Fx::new();
        fx.tar_gz(6, |b| file(b, "a", 0o644, "a"));
        fs::write(fx.dest().join("old"), "old").unwrap();
        let e = unpack(
            &fx.upload(),
            ArchiveKind::TarGz,
            &fx.dest(),
            &Limits::default(),
        );
        assert!(matches!(e, Err(UnpackError::Io { .. })), "{e:?}");
        fx.assert_contained();
    }

    #[test]
    fn messages_quote_hostile_names_on_one_line() {
        let e = refused("a\nb\"c", Refusal::OutsideTree);
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(
            text.starts_with("refused archive entry \"a\\nb\\\"c\": "),
            "{text}"
        );
        let long = "x".repeat(1000);
        assert!(refused(&long, Refusal::BadName).to_string().len() < 400);
        let e = UnpackError::NotAnArchive {
            kind: ArchiveKind::TarGz,
            detail: format!("bad\nheader {long}"),
        };
        let text = e.to_string();
        assert!(!text.contains('\n') && text.len() < 250, "{text}");
    }
}
