//! The app repositories behind `git push caas main`. The only module that imports git2.
//!
//! One bare repository per app in `DATA_DIR/git/APP.git`. A push arrives through the smart HTTP
//! endpoint (`api/git.rs`), which uses [`protocol`] for the wire format and this module to take
//! the pack in, export the pushed commit as a source tarball for the builder, and move the branch
//! once the build succeeded. Names reach paths only after `validate_app_name`; refs and paths
//! never reach a shell (there is no shell: libgit2 does the work).

pub mod protocol;
pub mod remote;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0} is not a commit this repository has")]
    NoCommit(String),
    /// Past a limit: what, and the flag that raises it.
    #[error("{0}")]
    TooBig(String),
}

/// What a push may hold, checked before anything is written out: objects in the pack, and the
/// entries and bytes of the tree a commit expands to (a tree that names one subtree many times
/// expands to far more than the pack's size).
#[derive(Debug, Clone, Copy)]
pub struct PushLimits {
    pub max_objects: u64,
    pub max_entries: u64,
    pub max_bytes: u64,
}

#[derive(Clone)]
pub struct Repos {
    root: PathBuf,
}

/// What an exported commit holds.
pub struct Exported {
    /// Submodules skipped (their content is not in this repository).
    pub submodules: Vec<String>,
}

impl Repos {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn path(&self, app: &str) -> PathBuf {
        debug_assert!(caas_api::validate_app_name(app).is_ok());
        self.root.join(format!("{app}.git"))
    }

    /// The app's repository, created on first use: a push starts with the ref advertisement.
    fn open_or_create(&self, app: &str) -> Result<git2::Repository, GitError> {
        let path = self.path(app);
        match git2::Repository::open_bare(&path) {
            Ok(r) => Ok(r),
            Err(_) => {
                std::fs::create_dir_all(&self.root)?;
                let repo = git2::Repository::init_bare(&path)?;
                repo.set_head("refs/heads/main")?;
                Ok(repo)
            }
        }
    }

    /// The app's repository as the ref advertisement made it. Never creates one: a push that
    /// outlived a destroy of its app must not bring the repository back for the next app of
    /// that name.
    fn open(&self, app: &str) -> Result<git2::Repository, GitError> {
        Ok(git2::Repository::open_bare(self.path(app))?)
    }

    /// `(oid, refname)` of every branch, for the ref advertisement.
    pub fn refs(&self, app: &str) -> Result<Vec<(String, String)>, GitError> {
        let repo = self.open_or_create(app)?;
        let mut out = Vec::new();
        for r in repo.references_glob("refs/heads/*")? {
            let r = r?;
            if let (Ok(name), Some(oid)) = (r.name(), r.target()) {
                out.push((oid.to_string(), name.to_string()));
            }
        }
        out.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(out)
    }

    /// Indexes a received pack (the part of `file` from `offset` on) into the object store.
    pub fn ingest_pack(
        &self,
        app: &str,
        file: &Path,
        offset: u64,
        limits: PushLimits,
    ) -> Result<(), GitError> {
        use std::io::Seek;
        // The pack's header says how many objects follow: refused before one is indexed.
        {
            let mut f = File::open(file)?;
            f.seek(io::SeekFrom::Start(offset))?;
            let mut header = [0u8; 12];
            if f.read_exact(&mut header).is_ok() && &header[..4] == b"PACK" {
                let count = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
                if u64::from(count) > limits.max_objects {
                    return Err(GitError::TooBig(format!(
                        "the push holds {count} git objects; this server takes at most {} (caasd --max-archive-entries raises it)",
                        limits.max_objects
                    )));
                }
            }
        }
        let repo = self.open(app)?;
        let odb = repo.odb()?;
        let mut writer = odb.packwriter()?;
        let mut file = File::open(file)?;
        file.seek(io::SeekFrom::Start(offset))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            writer.write_all(&buf[..n])?;
        }
        writer.commit()?;
        Ok(())
    }

    /// Writes the tree of `commit` as a gzipped tar to `out` (what the CLI makes of a
    /// directory), so a git push builds through exactly the same path as `caas push`.
    pub fn export(
        &self,
        app: &str,
        commit: &str,
        out: &Path,
        limits: PushLimits,
    ) -> Result<Exported, GitError> {
        let repo = self.open(app)?;
        let oid = git2::Oid::from_str(commit).map_err(|_| GitError::NoCommit(commit.into()))?;
        let commit = repo
            .find_commit(oid)
            .map_err(|_| GitError::NoCommit(commit.to_string()))?;
        let tree = commit.tree()?;
        let gz = flate2::write::GzEncoder::new(File::create(out)?, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let mut submodules = Vec::new();
        let mut failure: Option<GitError> = None;
        let (mut entries, mut bytes) = (0u64, 0u64);
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            let Ok(name) = entry.name() else {
                return git2::TreeWalkResult::Skip;
            };
            entries += 1;
            if entries > limits.max_entries {
                failure = Some(GitError::TooBig(format!(
                    "the pushed tree has more than {} entries (caasd --max-archive-entries raises it)",
                    limits.max_entries
                )));
                return git2::TreeWalkResult::Abort;
            }
            let path = format!("{dir}{name}");
            let mode = entry.filemode();
            let result: Result<(), GitError> = (|| {
                let mut h = tar::Header::new_gnu();
                h.set_mtime(0);
                match (entry.kind(), mode) {
                    (Some(git2::ObjectType::Tree), _) => {
                        h.set_entry_type(tar::EntryType::Directory);
                        h.set_mode(0o755);
                        h.set_size(0);
                        tar.append_data(&mut h, &path, io::empty())?;
                    }
                    (Some(git2::ObjectType::Blob), 0o120000) => {
                        let blob = repo.find_blob(entry.id())?;
                        let target = String::from_utf8_lossy(blob.content()).into_owned();
                        h.set_entry_type(tar::EntryType::Symlink);
                        h.set_mode(0o777);
                        h.set_size(0);
                        tar.append_link(&mut h, &path, target)?;
                    }
                    (Some(git2::ObjectType::Blob), _) => {
                        let blob = repo.find_blob(entry.id())?;
                        bytes += blob.content().len() as u64;
                        if bytes > limits.max_bytes {
                            return Err(GitError::TooBig(format!(
                                "the pushed tree holds more than {} MB (caasd --max-unpacked-mb raises it)",
                                limits.max_bytes / (1024 * 1024)
                            )));
                        }
                        h.set_entry_type(tar::EntryType::Regular);
                        h.set_mode(if mode == 0o100755 { 0o755 } else { 0o644 });
                        h.set_size(blob.content().len() as u64);
                        tar.append_data(&mut h, &path, blob.content())?;
                    }
                    (Some(git2::ObjectType::Commit), _) => submodules.push(path.clone()),
                    _ => {}
                }
                Ok(())
            })();
            match result {
                Ok(()) => git2::TreeWalkResult::Ok,
                Err(e) => {
                    failure = Some(e);
                    git2::TreeWalkResult::Abort
                }
            }
        })
        .or_else(|e| if failure.is_some() { Ok(()) } else { Err(e) })?;
        if let Some(e) = failure {
            return Err(e);
        }
        tar.into_inner()?.finish()?.flush()?;
        Ok(Exported { submodules })
    }

    /// Points `refname` at `commit` (forced: a force push is a push).
    pub fn update_ref(&self, app: &str, refname: &str, commit: &str) -> Result<(), GitError> {
        let repo = self.open(app)?;
        let oid = git2::Oid::from_str(commit).map_err(|_| GitError::NoCommit(commit.into()))?;
        repo.find_commit(oid)
            .map_err(|_| GitError::NoCommit(commit.to_string()))?;
        repo.reference(refname, oid, true, "push")?;
        Ok(())
    }

    /// A renamed app's repository moves with it (safe to run again: `rename::move_dir`).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        crate::rename::move_dir(&self.path(from), &self.path(to))
    }

    /// Removes an app's repository (the app was destroyed). It is first renamed out of the way,
    /// in one step: a push of the old app still writing into it then cannot leave objects where
    /// the next app of that name will have its repository.
    pub fn remove(&self, app: &str) -> io::Result<()> {
        let trash = self
            .root
            .join(format!(".destroyed-{app}-{}", crate::auth::short_id()));
        match std::fs::rename(self.path(app), &trash) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            other => other?,
        }
        std::fs::remove_dir_all(&trash)
    }
}
