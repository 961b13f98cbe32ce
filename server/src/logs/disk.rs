//! One app's log on disk: append-only segment files of newline-delimited JSON (`00000001.ndjson`,
//! `00000002.ndjson`, ...) in `DIR/APP/`, the oldest deleted whole once the app's total passes its
//! cap. Lines are written with plain `write` calls (no fsync): they survive a `kill -9` of caasd,
//! which is what the log promises, not a power cut.
//!
//! Not sled: a log is high-volume, append-only and bounded by dropping its oldest part, which
//! files do with one `unlink`, and it must not compete with the store's own flushes.

use caas_api::LogLine;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Smallest segment: a tiny cap still keeps a few lines.
const MIN_SEGMENT: u64 = 16 * 1024;
/// Segments per cap: the part dropped at a time is an eighth of what is kept.
const SEGMENTS: u64 = 8;

/// Where a reader's snapshot ends: everything before it is on disk, everything after reaches the
/// reader live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

pub struct AppFile {
    dir: PathBuf,
    cap: u64,
    segment_size: u64,
    /// The segment being written, and its length.
    current: u64,
    len: u64,
    file: Option<File>,
    /// Numbers of the segments on disk, oldest first, with their sizes.
    segments: Vec<(u64, u64)>,
}

fn segment_name(n: u64) -> String {
    format!("{n:08}.ndjson")
}

fn segment_number(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".ndjson")?.parse().ok()
}

impl AppFile {
    /// Opens (creating it if needed) the log in `dir`, keeping at most about `cap` bytes.
    pub fn open(dir: PathBuf, cap: u64) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        let mut segments = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if let Some(n) = segment_number(&path) {
                segments.push((n, fs::metadata(&path)?.len()));
            }
        }
        segments.sort_unstable();
        let (current, len) = segments.last().copied().unwrap_or((1, 0));
        if segments.is_empty() {
            segments.push((1, 0));
        }
        let mut f = Self {
            dir,
            cap,
            segment_size: (cap / SEGMENTS).max(MIN_SEGMENT),
            current,
            len,
            file: None,
            segments,
        };
        f.trim()?;
        Ok(f)
    }

    pub fn position(&self) -> Position {
        Position {
            segment: self.current,
            offset: self.len,
        }
    }

    /// Appends already-encoded lines (each ending in `\n`) in one write, starting a new segment
    /// first when the current one is full.
    pub fn append(&mut self, encoded: &[u8]) -> io::Result<()> {
        if encoded.is_empty() {
            return Ok(());
        }
        if self.len > 0 && self.len + encoded.len() as u64 > self.segment_size {
            self.current += 1;
            self.len = 0;
            self.file = None;
            self.segments.push((self.current, 0));
        }
        if self.file.is_none() {
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join(segment_name(self.current)))?,
            );
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(encoded)?;
        self.len += encoded.len() as u64;
        if let Some(last) = self.segments.last_mut() {
            last.1 = self.len;
        }
        self.trim()
    }

    /// Deletes the oldest segments while the total is over the cap (never the current one).
    fn trim(&mut self) -> io::Result<()> {
        let mut total: u64 = self.segments.iter().map(|s| s.1).sum();
        while total > self.cap && self.segments.len() > 1 {
            let (n, size) = self.segments.remove(0);
            match fs::remove_file(self.dir.join(segment_name(n))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            total -= size;
        }
        Ok(())
    }

    /// What a reader needs to read the log up to now without holding the writer.
    pub fn reader(&self) -> Reader {
        Reader {
            dir: self.dir.clone(),
            segments: self.segments.iter().map(|s| s.0).collect(),
            upto: self.position(),
        }
    }

    /// Deletes every segment and the folder (the app was destroyed).
    pub fn delete(self) -> io::Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Bytes on disk.
    #[cfg(test)]
    pub fn size(&self) -> u64 {
        self.segments.iter().map(|s| s.1).sum()
    }
}

/// A snapshot of which segments held the log, and where it ended, at one moment.
pub struct Reader {
    dir: PathBuf,
    segments: Vec<u64>,
    upto: Position,
}

impl Reader {
    /// Up to `n` of the last lines before the snapshot's end that `keep` accepts, oldest first.
    /// Lines that do not parse (a line cut by a crash mid-write) are skipped.
    pub fn tail(&self, n: usize, keep: impl Fn(&LogLine) -> bool) -> io::Result<Vec<LogLine>> {
        let upto = self.upto;
        let mut out = Vec::new();
        if n == 0 {
            return Ok(out);
        }
        for &segment in self.segments.iter().rev() {
            if segment > upto.segment {
                continue;
            }
            let mut bytes = Vec::new();
            match File::open(self.dir.join(segment_name(segment))) {
                Ok(f) => {
                    let limit = if segment == upto.segment {
                        upto.offset
                    } else {
                        u64::MAX
                    };
                    f.take(limit).read_to_end(&mut bytes)?;
                }
                // Trimmed meanwhile: what it held is older than anything kept.
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => return Err(e),
            }
            for raw in bytes.split(|b| *b == b'\n').rev() {
                if raw.is_empty() {
                    continue;
                }
                let Ok(line) = serde_json::from_slice::<LogLine>(raw) else {
                    continue;
                };
                if keep(&line) {
                    out.push(line);
                    if out.len() == n {
                        out.reverse();
                        return Ok(out);
                    }
                }
            }
        }
        out.reverse();
        Ok(out)
    }
}

/// One line as it is stored: its JSON and a newline.
pub fn encode(line: &LogLine, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, line).expect("a log line always serializes");
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use caas_api::{LogSource, Timestamp};

    fn line(i: usize) -> LogLine {
        LogLine {
            ts: Timestamp(i as u64),
            source: LogSource::App,
            tag: "web.1".into(),
            text: format!("line {i}"),
        }
    }

    fn write(f: &mut AppFile, range: std::ops::Range<usize>) {
        for i in range {
            let mut buf = Vec::new();
            encode(&line(i), &mut buf);
            f.append(&buf).unwrap();
        }
    }

    fn texts(lines: &[LogLine]) -> Vec<String> {
        lines.iter().map(|l| l.text.clone()).collect()
    }

    #[test]
    fn lines_come_back_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = AppFile::open(dir.path().join("a"), 1 << 20).unwrap();
        write(&mut f, 0..5);
        let end = f.position();
        assert_eq!(
            texts(&f.reader().tail(3, |_| true).unwrap()),
            ["line 2", "line 3", "line 4"]
        );
        drop(f);
        let mut f = AppFile::open(dir.path().join("a"), 1 << 20).unwrap();
        assert_eq!(f.position(), end, "a reopened log appends where it ended");
        write(&mut f, 5..6);
        assert_eq!(
            texts(&f.reader().tail(2, |_| true).unwrap()),
            ["line 4", "line 5"]
        );
    }

    #[test]
    fn a_snapshot_position_hides_what_came_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = AppFile::open(dir.path().to_path_buf(), 1 << 20).unwrap();
        write(&mut f, 0..3);
        let snap = f.reader();
        write(&mut f, 3..6);
        assert_eq!(
            texts(&snap.tail(10, |_| true).unwrap()),
            ["line 0", "line 1", "line 2"]
        );
    }

    #[test]
    fn the_oldest_segments_go_when_the_cap_is_passed() {
        let dir = tempfile::tempdir().unwrap();
        // 16 KB segments (the minimum), a 64 KB cap.
        let mut f = AppFile::open(dir.path().to_path_buf(), 64 * 1024).unwrap();
        write(&mut f, 0..5000);
        assert!(f.size() <= 64 * 1024, "{}", f.size());
        let files = fs::read_dir(dir.path()).unwrap().count();
        assert!(files <= 5, "{files} segments");
        let all = f.reader().tail(usize::MAX, |_| true).unwrap();
        assert_eq!(all.last().unwrap().text, "line 4999");
        assert!(
            all.first().unwrap().text != "line 0",
            "the oldest lines were dropped"
        );
        // What is kept is contiguous: no line missing in the middle.
        let first: usize = all[0].text[5..].parse().unwrap();
        assert_eq!(all.len(), 5000 - first);
    }

    #[test]
    fn filters_apply_before_counting_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = AppFile::open(dir.path().to_path_buf(), 1 << 20).unwrap();
        write(&mut f, 0..10);
        f.append(b"{\"ts\":\"2026-11-2").unwrap(); // a write cut short by a crash
        f.append(b"\n").unwrap();
        write(&mut f, 10..11);
        let even = f.reader().tail(3, |l| l.ts.0 % 2 == 0).unwrap();
        assert_eq!(texts(&even), ["line 6", "line 8", "line 10"]);
    }
}
