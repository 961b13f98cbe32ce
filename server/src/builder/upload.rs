//! Taking an upload in: it is stored (counted against `--max-upload-mb`), checked to be what its
//! name says, and unpacked safely (`unpack.rs`). Every refusal happens here, before a build exists
//! to wait for, and is recorded as a failed build whose output says why, so `builds:output` shows
//! it to every client, not only to the one whose upload it refused.

use super::output;
use super::queue::Lease;
use super::record::{self, Step};
use super::unpack::{self, Unpacked};
use super::{internal, BuildError, Builder};
use crate::store::StoreError;
use bytes::Bytes;
use caas_api::{SourceKind, Timestamp};
use futures_util::{Stream, StreamExt};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// An upload that was stored and unpacked, ready to build.
pub struct Prepared {
    pub app: String,
    pub number: u64,
    /// The build's folder: `upload`, `src` and what the build makes of them.
    pub(super) dir: PathBuf,
    pub(super) kind: SourceKind,
    pub(super) received: Received,
    /// Stops the build when the app is destroyed, and keeps the destroy waiting until it has.
    pub(super) lease: Lease,
    /// Who pushed it: the release it makes records them.
    pub user: Option<String>,
    /// `caas push --canary --weight N`: the release is held and starts as a canary with N % of
    /// requests instead of rolling out.
    pub canary: Option<u8>,
}

/// What an upload held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Files (and symlinks) in the source, and bytes of their content.
    pub unpacked: Unpacked,
    /// Bytes received: what the client packed and sent.
    pub uploaded: u64,
}

impl Builder {
    /// Stores and unpacks an upload as build N of `app`. Every refusal is recorded as a failed
    /// build and returned; the caller answers with it.
    pub async fn prepare<S, E>(
        &self,
        app: &str,
        kind: SourceKind,
        file_name: &str,
        body: S,
    ) -> Result<Prepared, BuildError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let lease = self.queue.enter(app)?;
        if self.store.app(app)?.is_none() {
            return Err(BuildError::NoApp(app.into()));
        }
        if let Err(e) = self.room_for("the upload") {
            // Read (and drop) what the client sends, so that it gets to read the answer.
            discard(body, self.settings.max_upload).await;
            return Err(e);
        }
        let source = record::source_label(kind, file_name);
        let record = self
            .store
            .create_build(app, |number| {
                record::queued(app, number, source.clone(), Timestamp::now())
            })
            .map_err(|e| match e {
                StoreError::NotFound => BuildError::NoApp(app.into()),
                other => other.into(),
            })?;
        let dir = self.names.build_dir(app, record.number);
        let result = tokio::select! {
            r = self.receive(&dir, kind, file_name, body) => r,
            // The destroy removes the folder and the record once this has returned.
            _ = lease.destroyed() => Err(BuildError::Destroyed),
        };
        match result {
            Ok(received) => {
                self.store.flush().await?;
                Ok(Prepared {
                    app: app.into(),
                    number: record.number,
                    dir,
                    kind,
                    received,
                    lease,
                    user: None,
                    canary: None,
                })
            }
            Err(BuildError::Destroyed) => Err(BuildError::Destroyed),
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                let message = match &e {
                    BuildError::Internal(detail) => {
                        tracing::error!(
                            app,
                            build = record.number,
                            "receiving the upload: {detail}"
                        );
                        "the server failed to store the upload; its log has the details".to_string()
                    }
                    other => other.to_string(),
                };
                // The refusal is the build's output: `builds:output` shows it to every client,
                // not only to the one whose upload it refused.
                let log = self.names.log_path(app, record.number);
                let text = format!("{}\n", output::failure_line(&message));
                if let Err(e) = tokio::fs::write(&log, text).await {
                    tracing::warn!("writing {}: {e}", log.display());
                }
                self.finish(record, Step::Fail { reason: message }).await?;
                Err(e)
            }
        }
    }

    async fn receive<S, E>(
        &self,
        dir: &Path,
        kind: SourceKind,
        file_name: &str,
        mut body: S,
    ) -> Result<Received, BuildError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        tokio::fs::create_dir_all(dir).await.map_err(internal)?;
        let upload = dir.join("upload");
        let mut file = tokio::fs::File::create(&upload).await.map_err(internal)?;
        let mut received: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| BuildError::Refused(format!("the upload broke off: {e}")))?;
            received += chunk.len() as u64;
            if received > self.settings.max_upload {
                return Err(BuildError::TooLarge(
                    self.settings.max_upload / (1024 * 1024),
                ));
            }
            file.write_all(&chunk).await.map_err(internal)?;
        }
        file.flush().await.map_err(internal)?;
        drop(file);
        if received == 0 {
            return Err(BuildError::Refused(
                "the upload is empty: nothing to build".into(),
            ));
        }
        let src = dir.join("src");
        let limits = self.settings.limits;
        let name = file_name.to_string();
        let unpacked =
            tokio::task::spawn_blocking(move || place_source(&upload, kind, &name, &src, &limits))
                .await
                .map_err(internal)??;
        Ok(Received {
            unpacked,
            uploaded: received,
        })
    }
}

/// The first line of a build says what it builds from, in the units `caas push` uses: files and
/// symlinks counted as the CLI counts them when it packs a directory, their content's size once
/// unpacked, and the size of the upload as sent (the CLI's "Packed DIR: N files, SIZE").
pub fn size_summary(kind: SourceKind, received: &Received) -> String {
    let bytes = caas_api::format_bytes(received.unpacked.bytes);
    let uploaded = caas_api::format_bytes(received.uploaded);
    match kind {
        // Kept whole: its size is the upload's.
        SourceKind::War | SourceKind::Jar => format!("1 file, {uploaded} uploaded"),
        _ => {
            let files = match received.unpacked.files {
                1 => "1 file".to_string(),
                n => format!("{n} files"),
            };
            format!("{files}, {bytes} unpacked from a {uploaded} upload")
        }
    }
}

/// Puts an upload where the build expects it: archives unpacked into `src`, a `.war`/`.jar`
/// copied in as a file. Refuses files that are not what their name says.
fn place_source(
    upload: &Path,
    kind: SourceKind,
    file_name: &str,
    src: &Path,
    limits: &unpack::Limits,
) -> Result<Unpacked, BuildError> {
    std::fs::create_dir_all(src).map_err(internal)?;
    let actual = unpack::sniff(upload);
    let want = match kind {
        SourceKind::Dir | SourceKind::TarGz => unpack::ArchiveKind::TarGz,
        SourceKind::Zip | SourceKind::War | SourceKind::Jar => unpack::ArchiveKind::Zip,
    };
    if actual != Some(want) {
        let what = match kind {
            SourceKind::Dir => "a gzipped tar of a directory".to_string(),
            SourceKind::TarGz => "a .tar.gz archive".to_string(),
            SourceKind::Zip => "a zip archive".to_string(),
            SourceKind::War => "a .war (zip) archive".to_string(),
            SourceKind::Jar => "a .jar (zip) archive".to_string(),
        };
        return Err(BuildError::Refused(format!("{file_name} is not {what}")));
    }
    match kind {
        SourceKind::War | SourceKind::Jar => {
            // Checked as a zip (so a broken one fails here, not in Tomcat), kept whole.
            let probe = src.with_file_name("probe");
            std::fs::create_dir_all(&probe).map_err(internal)?;
            let checked = unpack::unpack(upload, want, &probe, limits);
            let _ = std::fs::remove_dir_all(&probe);
            checked.map_err(|e| BuildError::Refused(format!("{file_name}: {e}")))?;
            let ext = if kind == SourceKind::War {
                "war"
            } else {
                "jar"
            };
            let stem: String = Path::new(file_name)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("app")
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let size =
                std::fs::copy(upload, src.join(format!("{stem}.{ext}"))).map_err(internal)?;
            Ok(Unpacked {
                files: 1,
                bytes: size,
            })
        }
        _ => {
            let done = unpack::unpack(upload, want, src, limits)
                .map_err(|e| BuildError::Refused(e.to_string()))?;
            if done.files == 0 {
                return Err(BuildError::Refused(
                    "nothing to build: the upload holds no files".into(),
                ));
            }
            Ok(done)
        }
    }
}

/// Reads a request body to its end (at most `limit` bytes) without keeping it: a client that is
/// still sending when the answer comes may otherwise see a broken connection, not the answer.
pub async fn discard<S, E>(mut body: S, limit: u64)
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut seen = 0u64;
    while let Some(Ok(chunk)) = body.next().await {
        seen += chunk.len() as u64;
        if seen > limit {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(files: u64, bytes: u64, uploaded: u64) -> Received {
        Received {
            unpacked: Unpacked { files, bytes },
            uploaded,
        }
    }

    #[test]
    fn the_first_line_counts_as_caas_push_does() {
        let table = [
            (
                SourceKind::Dir,
                received(12, 2048, 700),
                "12 files, 2.0 KB unpacked from a 700 B upload",
            ),
            (
                SourceKind::TarGz,
                received(1, 10, 30),
                "1 file, 10 B unpacked from a 30 B upload",
            ),
            // Kept whole: its size is the upload's.
            (
                SourceKind::War,
                received(1, 5000, 5000),
                "1 file, 4.9 KB uploaded",
            ),
            (
                SourceKind::Jar,
                received(1, 5000, 5000),
                "1 file, 4.9 KB uploaded",
            ),
        ];
        for (kind, r, want) in table {
            assert_eq!(size_summary(kind, &r), want, "{kind:?}");
        }
    }

    fn zip(path: &Path, entries: &[(&str, &str)]) {
        let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        for (name, text) in entries {
            z.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut z, text.as_bytes()).unwrap();
        }
        z.finish().unwrap();
    }

    fn place(upload: &Path, kind: SourceKind, name: &str) -> Result<Unpacked, BuildError> {
        let src = upload.with_file_name("src");
        place_source(upload, kind, name, &src, &unpack::Limits::default())
    }

    #[test]
    fn an_upload_must_be_what_its_name_says() {
        let dir = tempfile::tempdir().unwrap();
        let upload = dir.path().join("upload");
        std::fs::write(&upload, "plain text").unwrap();
        let table = [
            (
                SourceKind::Dir,
                "directory",
                "directory is not a gzipped tar of a directory",
            ),
            (
                SourceKind::TarGz,
                "a.tar.gz",
                "a.tar.gz is not a .tar.gz archive",
            ),
            (SourceKind::Zip, "a.zip", "a.zip is not a zip archive"),
            (
                SourceKind::War,
                "a.war",
                "a.war is not a .war (zip) archive",
            ),
            (
                SourceKind::Jar,
                "a.jar",
                "a.jar is not a .jar (zip) archive",
            ),
        ];
        for (kind, name, want) in table {
            match place(&upload, kind, name) {
                Err(BuildError::Refused(m)) => assert_eq!(m, want),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_war_is_checked_and_kept_whole_under_a_safe_name() {
        let dir = tempfile::tempdir().unwrap();
        let upload = dir.path().join("upload");
        zip(&upload, &[("WEB-INF/web.xml", "<web-app/>")]);
        let size = std::fs::metadata(&upload).unwrap().len();
        let got = place(&upload, SourceKind::War, "my app (1).war").unwrap();
        assert_eq!(
            got,
            Unpacked {
                files: 1,
                bytes: size
            }
        );
        let kept = dir.path().join("src/my_app__1_.war");
        assert_eq!(std::fs::metadata(kept).unwrap().len(), size);
        assert!(
            !dir.path().join("probe").exists(),
            "the check leaves nothing"
        );
    }

    #[test]
    fn an_archive_without_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let upload = dir.path().join("upload");
        zip(&upload, &[]);
        match place(&upload, SourceKind::Zip, "empty.zip") {
            Err(BuildError::Refused(m)) => {
                assert_eq!(m, "the archive is empty: it holds no files to build")
            }
            other => panic!("{other:?}"),
        }
    }
}
