//! A build's record and the one place its status changes: `queued → running → succeeded` or
//! `→ failed`, and `queued → failed` for an upload that was refused before it could run, or a
//! build that a stop of caasd interrupted while it waited. A finished record never changes
//! again: `builds:info` and the git endpoint read it as the build's last word.

use crate::store::BuildRecord;
use caas_api::{BuildStatus, SourceKind, Timestamp};

/// What happens to a build, as its record sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// It has its app's turn and a build slot.
    Start,
    /// It recorded `release`, whose image is `image_size` bytes.
    Succeed { release: u64, image_size: u64 },
    /// It was refused, failed, or was interrupted; `reason` is one line for the user.
    Fail { reason: String },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("build {number} of {app} cannot go from {} to {to}", from.as_str())]
pub struct StatusError {
    pub app: String,
    pub number: u64,
    pub from: BuildStatus,
    pub to: &'static str,
}

/// A new build: queued until it has its turn.
pub fn queued(app: &str, number: u64, source: String, now: Timestamp) -> BuildRecord {
    BuildRecord {
        server: None,
        app: app.into(),
        number,
        status: BuildStatus::Queued,
        source,
        builder: None,
        release: None,
        image_size: None,
        error: None,
        created_at: now,
        finished_at: None,
    }
}

/// Moves `rec` on by `step`, or says why it cannot (and leaves it as it was).
pub fn advance(rec: &mut BuildRecord, step: Step, now: Timestamp) -> Result<(), StatusError> {
    let refuse = |to| StatusError {
        app: rec.app.clone(),
        number: rec.number,
        from: rec.status,
        to,
    };
    match (rec.status, step) {
        (BuildStatus::Queued, Step::Start) => rec.status = BuildStatus::Running,
        (
            BuildStatus::Running,
            Step::Succeed {
                release,
                image_size,
            },
        ) => {
            rec.status = BuildStatus::Succeeded;
            rec.release = Some(release);
            rec.image_size = Some(image_size);
            rec.finished_at = Some(now);
        }
        (BuildStatus::Queued | BuildStatus::Running, Step::Fail { reason }) => {
            rec.status = BuildStatus::Failed;
            rec.error = Some(reason);
            rec.finished_at = Some(now);
        }
        (_, Step::Start) => return Err(refuse("running")),
        (_, Step::Succeed { .. }) => return Err(refuse("succeeded")),
        (_, Step::Fail { .. }) => return Err(refuse("failed")),
    }
    Ok(())
}

/// What a build says it builds from (`builds`' SOURCE column): `directory`, `directory NAME`,
/// `git main@1a2b3c4`, or the file's name.
pub fn source_label(kind: SourceKind, file_name: &str) -> String {
    match kind {
        SourceKind::Dir if file_name == "directory" => "directory".to_string(),
        SourceKind::Dir if file_name.starts_with("git ") => file_name.to_string(),
        SourceKind::Dir => format!("directory {file_name}"),
        _ => file_name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THEN: Timestamp = Timestamp(1_000);
    const NOW: Timestamp = Timestamp(2_000);

    fn record(status: BuildStatus) -> BuildRecord {
        let mut r = queued("web", 3, "directory".into(), THEN);
        r.status = status;
        r
    }

    fn fail() -> Step {
        Step::Fail {
            reason: "the compile step failed".into(),
        }
    }

    fn succeed() -> Step {
        Step::Succeed {
            release: 4,
            image_size: 1234,
        }
    }

    #[test]
    fn the_status_moves_only_forward() {
        use BuildStatus::*;
        let table = [
            (Queued, Step::Start, Some(Running)),
            (Queued, fail(), Some(Failed)),
            (Queued, succeed(), None),
            (Running, succeed(), Some(Succeeded)),
            (Running, fail(), Some(Failed)),
            (Running, Step::Start, None),
            (Succeeded, Step::Start, None),
            (Succeeded, fail(), None),
            (Succeeded, succeed(), None),
            (Failed, Step::Start, None),
            (Failed, fail(), None),
            (Failed, succeed(), None),
        ];
        for (from, step, want) in table {
            let mut r = record(from);
            let before = r.clone();
            let got = advance(&mut r, step.clone(), NOW);
            match want {
                Some(to) => {
                    assert_eq!(got, Ok(()), "{from:?} + {step:?}");
                    assert_eq!(r.status, to, "{from:?} + {step:?}");
                }
                None => {
                    assert!(got.is_err(), "{from:?} + {step:?} was allowed");
                    assert_eq!(r, before, "a refused step changed the record");
                }
            }
        }
    }

    #[test]
    fn a_finished_build_says_when_and_how() {
        let mut r = record(BuildStatus::Running);
        advance(&mut r, succeed(), NOW).unwrap();
        assert_eq!(
            (r.release, r.image_size, r.error, r.finished_at),
            (Some(4), Some(1234), None, Some(NOW))
        );

        let mut r = record(BuildStatus::Queued);
        advance(&mut r, fail(), NOW).unwrap();
        assert_eq!(
            (r.release, r.error.as_deref(), r.finished_at),
            (None, Some("the compile step failed"), Some(NOW))
        );
        assert_eq!(r.created_at, THEN);
    }

    #[test]
    fn starting_is_not_finishing() {
        let mut r = record(BuildStatus::Queued);
        advance(&mut r, Step::Start, NOW).unwrap();
        assert_eq!(r.finished_at, None);
    }

    #[test]
    fn a_refusal_names_the_build_and_both_ends() {
        let mut r = record(BuildStatus::Failed);
        let e = advance(&mut r, Step::Start, NOW).unwrap_err();
        assert_eq!(
            e.to_string(),
            "build 3 of web cannot go from failed to running"
        );
    }

    #[test]
    fn the_source_says_what_was_pushed() {
        let table = [
            (SourceKind::Dir, "directory", "directory"),
            (SourceKind::Dir, "git main@1a2b3c4", "git main@1a2b3c4"),
            (SourceKind::Dir, "myapp", "directory myapp"),
            (SourceKind::War, "app.war", "app.war"),
            (SourceKind::TarGz, "src.tar.gz", "src.tar.gz"),
        ];
        for (kind, name, want) in table {
            assert_eq!(source_label(kind, name), want);
        }
    }
}
