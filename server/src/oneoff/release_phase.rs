//! The release phase (Heroku's): a `release:` process type runs once, as a one-off of the new
//! release, before that release is recorded as deploying. Exit 0 lets it roll out; anything else
//! records it failed with the reason and the last lines, and the serving release stays.

use super::{Runner, Start};
use crate::docker::Stdio;
use crate::store::ReleaseRecord;
use caas_api::{LogLine, LogSource, Timestamp};
use futures_util::StreamExt;
use std::collections::VecDeque;
use tokio::sync::mpsc;

/// The process type of the release phase.
pub const RELEASE_PROCESS: &str = "release";
/// Lines of its output kept with a failed release.
const KEEP_LINES: usize = 10;

/// Why the release phase failed, and its last lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: String,
    pub output: Vec<String>,
}

/// The release phase's command, when the release has one.
pub fn command(release: &ReleaseRecord) -> Option<String> {
    release
        .process_types
        .get(RELEASE_PROCESS)
        .cloned()
        .flatten()
        .filter(|c| !c.trim().is_empty())
}

/// Runs `release`'s release phase, if it has one, to its end. Each line of its output goes to
/// `say` (the push, or nowhere) and to the app's log as `app[release.N]`.
pub async fn run(
    runner: &Runner,
    release: &ReleaseRecord,
    say: Option<mpsc::UnboundedSender<String>>,
) -> Result<(), Failure> {
    let Some(cmd) = command(release) else {
        return Ok(());
    };
    let fail = |reason: String, output: Vec<String>| Failure { reason, output };
    let argv = if release.launcher {
        vec![cmd.clone()]
    } else {
        vec!["/bin/sh".into(), "-c".into(), cmd.clone()]
    };
    let started = runner
        .start(Start {
            release,
            process: RELEASE_PROCESS,
            argv,
            stdio: Stdio::default(),
            term: None,
            attach: true,
        })
        .await;
    let (info, attached) = match started {
        Ok((info, Some(a))) => (info, a),
        Ok((info, None)) => {
            runner.end(&info).await;
            return Err(fail("release phase: not attached".into(), vec![]));
        }
        Err(e) => {
            tracing::error!(app = release.app, "release phase: {e}");
            return Err(fail(
                "the release phase could not start; the server's log has the details".into(),
                vec![],
            ));
        }
    };
    let name = info.name();
    runner.logs.event(
        &release.app,
        "release",
        format!(
            "Running release command `{cmd}` for v{} ({name})",
            release.version
        ),
    );
    let mut last: VecDeque<String> = VecDeque::new();
    let mut pending = Vec::new();
    let mut output = attached.output;
    let line = |raw: &[u8], last: &mut VecDeque<String>| {
        let text = String::from_utf8_lossy(raw)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if let Some(tx) = &say {
            let _ = tx.send(text.clone());
        }
        runner.logs.publish(
            &release.app,
            LogLine {
                ts: Timestamp::now(),
                source: LogSource::App,
                tag: name.clone(),
                text: text.clone(),
            },
        );
        if last.len() == KEEP_LINES {
            last.pop_front();
        }
        last.push_back(text);
    };
    while let Some(Ok(chunk)) = output.next().await {
        pending.extend_from_slice(&chunk.data);
        while let Some(at) = pending.iter().position(|&b| b == b'\n') {
            let rest = pending.split_off(at + 1);
            line(&pending, &mut last);
            pending = rest;
        }
    }
    if !pending.is_empty() {
        line(&pending, &mut last);
    }
    let output: Vec<String> = last.into();
    let code = match runner.finish(&info).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(app = release.app, "release phase: {e}");
            return Err(fail("the release phase's end was not seen".into(), output));
        }
    };
    runner.logs.event(
        &release.app,
        "release",
        format!("{name} exited with status {code}"),
    );
    if code == 0 {
        Ok(())
    } else {
        Err(fail(
            format!("the release command `{cmd}` exited with status {code}"),
            output,
        ))
    }
}
