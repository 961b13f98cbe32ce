//! The errors the CLI reports and the exit codes scripts rely on.

use caas_api::ErrorCode;
use thiserror::Error;

/// Exit codes; part of the CLI's contract and listed in `caas --help`.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const UNAUTHORIZED: i32 = 3;
    pub const NOT_FOUND: i32 = 4;
    pub const CONFLICT: i32 = 5;
    pub const UNREACHABLE: i32 = 6;
}

/// Errors that carry their own exit code. Anything else reaching `main` exits with 1.
#[derive(Debug, Error)]
pub enum CliError {
    /// Bad arguments or input, found locally.
    #[error("{0}")]
    Usage(String),
    /// A non-2xx answer from the server. `code` is `None` when the body was not an `ErrorBody`
    /// (a proxy in between, or a server that is not caas).
    #[error("{message}")]
    Api {
        status: u16,
        code: Option<ErrorCode>,
        message: String,
    },
    /// Something the user named does not exist, found out by the CLI rather than by one request.
    #[error("{0}")]
    NotFound(String),
    /// No answer at all: connection refused, DNS failure, timeout.
    #[error("{0}")]
    Unreachable(String),
    /// Everything else that is not the user's fault: a deploy that did not come up, a docker
    /// command that failed.
    #[error("{0}")]
    Failed(String),
    /// `caas run`'s process ended with this status, which becomes the CLI's own; nothing more
    /// is said.
    #[error("the process exited with status {0}")]
    Exit(i32),
}

impl CliError {
    pub fn usage(msg: impl Into<String>) -> Self {
        Self::Usage(msg.into())
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => exit::USAGE,
            Self::NotFound(_) => exit::NOT_FOUND,
            Self::Unreachable(_) => exit::UNREACHABLE,
            Self::Failed(_) => exit::FAILURE,
            Self::Exit(code) => *code,
            Self::Api { status, code, .. } => match code {
                // The code is more precise than the status: `build_failed` is a 422 like
                // `invalid_input`, but it is not the user's typing that is wrong.
                // Input the server refuses is invalid input, whether its content (a hostile
                // archive, 422) or its size (413).
                Some(ErrorCode::InvalidInput | ErrorCode::TooLarge) => exit::USAGE,
                Some(ErrorCode::Unauthorized | ErrorCode::Forbidden | ErrorCode::RateLimited) => {
                    exit::UNAUTHORIZED
                }
                Some(ErrorCode::NotFound) => exit::NOT_FOUND,
                Some(ErrorCode::Conflict) => exit::CONFLICT,
                Some(
                    ErrorCode::ImageUploadNeeded
                    | ErrorCode::BuildFailed
                    | ErrorCode::Internal
                    | ErrorCode::Unavailable
                    | ErrorCode::InsufficientStorage,
                ) => exit::FAILURE,
                None => match status {
                    400 | 413 | 422 => exit::USAGE,
                    401 | 403 | 429 => exit::UNAUTHORIZED,
                    404 => exit::NOT_FOUND,
                    409 => exit::CONFLICT,
                    _ => exit::FAILURE,
                },
            },
        }
    }

    /// The API error code, if this is an answer from a caas server.
    pub fn api_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { code, .. } => *code,
            _ => None,
        }
    }
}

/// What `main` prints and exits with for an error that ended `run`. `None` as the message means
/// exit quietly: the reader of our stdout went away (`caas logs | head`), which is not a failure
/// worth a message.
pub fn report(err: &anyhow::Error) -> (i32, Option<String>) {
    if let Some(cli) = err.downcast_ref::<CliError>() {
        if let CliError::Exit(code) = cli {
            return (*code, None);
        }
        return (cli.exit_code(), Some(cli.to_string()));
    }
    if err.chain().any(is_broken_pipe) {
        return (exit::OK, None);
    }
    // `{:#}` keeps the context chain on one line: "reading config ...: permission denied".
    (exit::FAILURE, Some(format!("{err:#}")))
}

/// Whether `cause` is a write to a closed pipe. The `io::Error` is not always in the chain itself:
/// serde_json (`--json` output) wraps it and its `source()` skips it, and a custom `io::Error`
/// hides the error it wraps the same way.
fn is_broken_pipe(cause: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(io) = cause.downcast_ref::<std::io::Error>() {
        return io.kind() == std::io::ErrorKind::BrokenPipe
            || io.get_ref().is_some_and(|inner| is_broken_pipe(inner));
    }
    if let Some(json) = cause.downcast_ref::<serde_json::Error>() {
        return json.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: Option<ErrorCode>) -> CliError {
        CliError::Api {
            status,
            code,
            message: "m".into(),
        }
    }

    #[test]
    fn api_codes_map_to_exit_codes() {
        let cases = [
            (400, Some(ErrorCode::InvalidInput), 2),
            (422, Some(ErrorCode::InvalidInput), 2),
            (401, Some(ErrorCode::Unauthorized), 3),
            (403, Some(ErrorCode::Forbidden), 3),
            (404, Some(ErrorCode::NotFound), 4),
            (409, Some(ErrorCode::Conflict), 5),
            (409, Some(ErrorCode::ImageUploadNeeded), 1),
            (413, Some(ErrorCode::TooLarge), 2),
            (507, Some(ErrorCode::InsufficientStorage), 1),
            (422, Some(ErrorCode::BuildFailed), 1),
            (500, Some(ErrorCode::Internal), 1),
            (503, Some(ErrorCode::Unavailable), 1),
            (429, Some(ErrorCode::RateLimited), 3),
        ];
        for (status, code, want) in cases {
            assert_eq!(api(status, code).exit_code(), want, "{status} {code:?}");
        }
    }

    #[test]
    fn statuses_without_a_caas_body_map_by_status() {
        for (status, want) in [
            (400, 2),
            (413, 2),
            (422, 2),
            (401, 3),
            (403, 3),
            (404, 4),
            (409, 5),
            (500, 1),
            (502, 1),
        ] {
            assert_eq!(api(status, None).exit_code(), want, "{status}");
        }
    }

    #[test]
    fn local_errors_have_their_own_codes() {
        assert_eq!(CliError::usage("x").exit_code(), 2);
        assert_eq!(CliError::NotFound("x".into()).exit_code(), 4);
        assert_eq!(CliError::Unreachable("x".into()).exit_code(), 6);
        assert_eq!(CliError::Failed("x".into()).exit_code(), 1);
    }

    #[test]
    fn report_finds_cli_errors_under_context_and_passes_the_message_verbatim() {
        let err = anyhow::Error::new(CliError::Api {
            status: 404,
            code: Some(ErrorCode::NotFound),
            message: "app \"x\" not found".into(),
        });
        assert_eq!(report(&err), (4, Some("app \"x\" not found".into())));

        let other = anyhow::anyhow!("disk full").context("saving config");
        assert_eq!(report(&other), (1, Some("saving config: disk full".into())));
    }

    #[test]
    fn broken_pipe_exits_quietly() {
        let err = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing output");
        assert_eq!(report(&err), (0, None));
    }

    /// A writer whose reader has gone, as stdout is under `caas ... | head -1`.
    struct ClosedPipe;

    impl std::io::Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn broken_pipe_under_serde_json_exits_quietly() {
        let err = serde_json::to_writer_pretty(ClosedPipe, &[1, 2, 3]).unwrap_err();
        assert_eq!(report(&anyhow::Error::new(err)), (0, None));
    }

    #[test]
    fn broken_pipe_inside_a_custom_io_error_exits_quietly() {
        let inner = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let err = anyhow::Error::new(std::io::Error::other(inner));
        assert_eq!(report(&err), (0, None));
    }

    #[test]
    fn other_serde_json_errors_are_failures() {
        let err = serde_json::from_str::<u32>("x").unwrap_err();
        assert_eq!(report(&anyhow::Error::new(err)).0, 1);
    }
}
