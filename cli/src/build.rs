//! Sending a build to the server and following it: the size check against the server's limit,
//! the upload with its progress bar, and the event stream the server answers with. What to send
//! is decided in `source`; waiting for the resulting release is `deploy`'s.

use crate::client::Client;
use crate::error::CliError;
use crate::output::{format_bytes, note, sanitize, stderr_is_term};
use anyhow::Result;
use caas_api::{BuildEvent, SourceKind};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use reqwest::blocking::Response;
use std::fs::File;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;

/// A file ready to send as a build.
pub struct Upload {
    pub kind: SourceKind,
    /// The file's (or directory's) name, for the server's messages.
    pub name: String,
    pub file: File,
    pub len: u64,
}

/// Refuses locally what the server would refuse after receiving `max_upload_mb` of it. A limit of
/// 0 means the server did not say (an older server), so there is nothing to check.
pub fn check_size(name: &str, len: u64, max_upload_mb: u64) -> Result<(), CliError> {
    if max_upload_mb == 0 || len <= max_upload_mb.saturating_mul(MIB) {
        return Ok(());
    }
    Err(CliError::usage(sanitize(&format!(
        "the upload ({name}, {}) is larger than this server accepts ({max_upload_mb} MB; caasd --max-upload-mb raises it)",
        format_bytes(len)
    ))))
}

/// `POST /v1/apps/APP/builds?source=KIND&name=NAME` with the file as the body. Answers the open
/// event stream; refusals (404, 413, 422) are errors with the server's message.
/// `canary`: the weight of `caas push --canary` (the release is held and runs as a canary).
pub fn upload(client: &Client, app: &str, upload: Upload, canary: Option<u8>) -> Result<Response> {
    let Upload {
        kind,
        name,
        file,
        len,
    } = upload;
    let progress = UploadProgress::start(len);
    let reader = Counting {
        inner: file,
        bar: progress.bar.clone(),
        sent: 0,
        len,
    };
    let body = reqwest::blocking::Body::sized(reader, len);
    let weight = canary.map(|w| w.to_string());
    let mut query = vec![("source", kind.as_str()), ("name", name.as_str())];
    if let Some(w) = &weight {
        query.push(("canary", w.as_str()));
    }
    let result = client.post_upload(
        &format!("/v1/apps/{app}/builds"),
        &query,
        "application/octet-stream",
        body,
    );
    progress.finish(result.is_ok());
    result.map_err(|e| match e.downcast_ref::<CliError>() {
        // The transport broke mid-upload: a server refusing the body (over a limit it changed
        // since `/v1/info` said otherwise, say) stops reading, and its answer is lost. It
        // records every refusal as a failed build, with the reason.
        Some(CliError::Failed(m)) => CliError::Failed(format!(
            "uploading {} failed: {m}; the server may have refused it, see caas builds -a {app}",
            sanitize(&name)
        ))
        .into(),
        _ => e,
    })
}

/// A progress bar style whose `{size}`, `{sent}` and `{rate}` are byte counts in the one
/// convention of `format_bytes` (indicatif's own keys would say KiB and MiB).
pub fn byte_progress(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("valid template")
        .with_key("size", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}", format_bytes(s.len().unwrap_or(0)));
        })
        .with_key("sent", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}", format_bytes(s.pos()));
        })
        .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}/s", format_bytes(s.per_sec() as u64));
        })
        .progress_chars("=> ")
}

/// Counts what reqwest reads of the body into the bar, and turns the bar into a spinner once it
/// has all been read: what follows is the server storing and unpacking the upload.
struct Counting {
    inner: File,
    bar: ProgressBar,
    sent: u64,
    len: u64,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let before = self.sent;
        self.sent += n as u64;
        self.bar.inc(n as u64);
        if before < self.len && self.sent >= self.len && !self.bar.is_hidden() {
            self.bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}").expect("valid template"),
            );
            self.bar.set_message(format!(
                "Uploaded {}; the server is unpacking it",
                format_bytes(self.len)
            ));
        }
        Ok(n)
    }
}

struct UploadProgress {
    bar: ProgressBar,
    started: Instant,
    len: u64,
}

impl UploadProgress {
    fn start(len: u64) -> Self {
        let bar = if stderr_is_term() {
            let bar = ProgressBar::new(len);
            bar.set_style(byte_progress(
                "Uploading {size} [{bar:30}] {sent} {rate} ETA {eta}",
            ));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        } else {
            note(&format!("Uploading {}...", format_bytes(len)));
            ProgressBar::hidden()
        };
        Self {
            bar,
            started: Instant::now(),
            len,
        }
    }

    fn finish(self, accepted: bool) {
        self.bar.finish_and_clear();
        if accepted {
            let secs = self.started.elapsed().as_secs_f64();
            note(&format!(
                "Uploaded {} in {secs:.1}s",
                format_bytes(self.len)
            ));
        }
    }
}

/// How a build that succeeded ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub build: u64,
    pub release: u64,
    pub image: String,
    pub image_size: u64,
}

/// Follows the NDJSON stream of [`BuildEvent`]s: each output line goes to `out` as soon as it
/// arrives (sanitised, flushed). Ends with the build's outcome: `Ok` for
/// `succeeded`, a failure (exit 1) for `failed` or for a stream that stops before either.
pub fn follow(stream: impl Read, app: &str, out: &mut impl Write) -> Result<Built> {
    let broke = || {
        CliError::Failed(format!(
            "the connection to the server broke during the build; see caas builds -a {app}"
        ))
    };
    crate::events::follow(stream, "build", broke, |event: BuildEvent| match event {
        BuildEvent::Line { text } => {
            writeln!(out, "{}", sanitize(&text))?;
            out.flush()?;
            Ok(None)
        }
        // The server's output says so in a line of its own (which `builds:output` keeps).
        BuildEvent::Queued { .. } => Ok(None),
        // The server's own first line says which build this is.
        BuildEvent::Started { .. } => Ok(None),
        BuildEvent::Succeeded {
            build,
            release,
            image,
            image_size,
        } => Ok(Some(Built {
            build,
            release,
            image,
            image_size,
        })),
        BuildEvent::Failed { build, message } => {
            Err(CliError::Failed(sanitize(&format!("build {build} failed: {message}"))).into())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stream: &str) -> (Result<Built>, String) {
        let mut out = Vec::new();
        let result = follow(stream.as_bytes(), "demo", &mut out);
        (result, String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_successful_build_prints_its_lines_and_returns_the_release() {
        let (result, out) = run(concat!(
            r#"{"type":"queued","build":4,"waiting_for":3}"#,
            "\n",
            r#"{"type":"started","build":4}"#,
            "\n",
            r#"{"type":"line","text":"-----> Python app detected"}"#,
            "\n\n",
            r#"{"type":"future_kind","x":1}"#,
            "\n",
            r#"{"type":"line","text":"\u001b[31mred\u001b[0m\ttabbed\r"}"#,
            "\n",
            r#"{"type":"succeeded","build":4,"release":7,"image":"caas/demo:v7","image_size":61234567}"#,
            "\n",
        ));
        assert_eq!(
            result.unwrap(),
            Built {
                build: 4,
                release: 7,
                image: "caas/demo:v7".into(),
                image_size: 61234567
            }
        );
        // The queued event prints nothing: the server's output has a line that says so.
        assert_eq!(out, "-----> Python app detected\n[31mred[0m\ttabbed\n");
    }

    #[test]
    fn a_failed_build_is_exit_1_with_its_message() {
        let (result, out) = run(concat!(
            r#"{"type":"started","build":5}"#,
            "\n",
            r#"{"type":"line","text":"oops"}"#,
            "\n",
            r#"{"type":"failed","build":5,"message":"the compile step failed (see the output above)\u001b[2J"}"#,
            "\n",
        ));
        let err = result.unwrap_err();
        let cli = err.downcast_ref::<CliError>().unwrap();
        assert_eq!(cli.exit_code(), 1);
        assert_eq!(
            cli.to_string(),
            "build 5 failed: the compile step failed (see the output above)[2J"
        );
        assert_eq!(out, "oops\n");
    }

    #[test]
    fn a_stream_that_stops_early_says_the_connection_broke() {
        let want = "the connection to the server broke during the build; see caas builds -a demo";
        for stream in [
            "",
            "{\"type\":\"started\",\"build\":5}\n{\"type\":\"line\",\"text\":\"a\"}\n",
            "{\"type\":\"started\",\"build\":5}\n{\"type\":\"line\",\"te",
        ] {
            let (result, _) = run(stream);
            let err = result.unwrap_err();
            let cli = err.downcast_ref::<CliError>().expect("a CliError");
            assert_eq!(cli.exit_code(), 1);
            assert_eq!(cli.to_string(), want, "{stream:?}");
        }

        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::ConnectionReset.into())
            }
        }
        let err = follow(Broken, "demo", &mut Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), want);
    }

    #[test]
    fn garbage_is_an_error() {
        let (result, _) = run("<html>\n");
        assert!(result.is_err());
    }

    #[test]
    fn uploads_over_the_servers_limit_are_refused_locally() {
        assert!(check_size("app.zip", 10 * MIB, 10).is_ok());
        assert!(check_size("app.zip", u64::MAX, 0).is_ok());
        let err = check_size("app.zip", 10 * MIB + 1, 10).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.to_string(),
            "the upload (app.zip, 10.0 MB) is larger than this server accepts (10 MB; caasd --max-upload-mb raises it)"
        );
    }

    /// Each line is written before the next is read: output appears as the build makes it.
    #[test]
    fn prints_each_line_before_reading_the_next() {
        let (reader, mut out) = crate::testutil::one_line_at_a_time(vec![
            b"{\"type\":\"line\",\"text\":\"one\"}\n",
            b"{\"type\":\"line\",\"text\":\"two\"}\n",
        ]);
        let printed = out.0.clone();
        // The stream ends without an outcome, which is an error; the lines still came first.
        assert!(follow(reader, "demo", &mut out).is_err());
        assert_eq!(&*printed.borrow(), b"one\ntwo\n");
    }
}
