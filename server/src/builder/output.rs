//! Where one build's output goes: the pusher (while it is connected), the build's log file
//! (`builds:output`, kept across restarts) and the app's log hub (`build[N]` lines).
//!
//! A failure's reason is said once. It is kept in the log file and the hub as the last line
//! (` !     REASON`, Heroku's shape), but the pusher gets it only as the `failed` event, never also
//! as a line: each client prints that event once (`caas push` as `error: build N failed: ...`, git
//! as one `remote:  !` line).

use crate::logs::LogHub;
use caas_api::{BuildEvent, LogLine, LogSource, Timestamp};
use std::path::Path;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// How a failure's reason is kept in a build's log.
pub fn failure_line(reason: &str) -> String {
    format!(" !     {reason}")
}

pub struct Output {
    app: String,
    number: u64,
    file: tokio::io::BufWriter<tokio::fs::File>,
    /// `None` once the pusher went away: the build goes on, its output stays replayable.
    sink: Option<mpsc::Sender<BuildEvent>>,
    logs: Arc<LogHub>,
}

impl Output {
    pub async fn create(
        path: &Path,
        app: &str,
        number: u64,
        logs: Arc<LogHub>,
        sink: mpsc::Sender<BuildEvent>,
    ) -> std::io::Result<Self> {
        // Truncated, not appended to: a build number is never reused by one app, so whatever a
        // file of this name holds is not this build's.
        let file = tokio::fs::File::create(path).await?;
        Ok(Self {
            app: app.to_string(),
            number,
            file: tokio::io::BufWriter::new(file),
            sink: Some(sink),
            logs,
        })
    }

    /// An event for the pusher; waits while the pusher's queue is full, so output is not lost
    /// to a slow connection.
    pub async fn event(&mut self, ev: BuildEvent) {
        if let Some(sink) = &self.sink {
            if sink.send(ev).await.is_err() {
                self.sink = None;
            }
        }
    }

    /// An event that must not wait for a slow pusher (a destroy is waiting for this build to
    /// end): dropped when the pusher's queue is full.
    pub fn event_now(&mut self, ev: BuildEvent) {
        if let Some(sink) = &self.sink {
            if sink.try_send(ev).is_err() {
                self.sink = None;
            }
        }
    }

    /// A line of output: kept, published to the app's logs and streamed to the pusher.
    pub async fn line(&mut self, text: &str) {
        self.keep(text).await;
        self.event(BuildEvent::Line {
            text: text.to_string(),
        })
        .await;
    }

    /// The build failed: the reason is kept as the log's last line and sent as the `failed`
    /// event, not streamed as a line too.
    pub async fn failed(&mut self, reason: &str) {
        self.keep(&failure_line(reason)).await;
        self.event(BuildEvent::Failed {
            build: self.number,
            message: reason.to_string(),
        })
        .await;
    }

    /// A line kept in the build's log and published to the app's logs, not streamed.
    async fn keep(&mut self, text: &str) {
        // Flushed per line: `builds:output` of a running build reads the file.
        let _ = self.file.write_all(text.as_bytes()).await;
        let _ = self.file.write_all(b"\n").await;
        let _ = self.file.flush().await;
        self.logs.publish(
            &self.app,
            LogLine {
                ts: Timestamp::now(),
                source: LogSource::Build,
                tag: self.number.to_string(),
                text: text.to_string(),
            },
        );
    }

    pub async fn close(&mut self) {
        let _ = self.file.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogFilter;

    async fn output(dir: &Path, queue: usize) -> (Output, mpsc::Receiver<BuildEvent>, Arc<LogHub>) {
        let logs = Arc::new(LogHub::in_memory(16));
        let (tx, rx) = mpsc::channel(queue);
        let out = Output::create(&dir.join("7.log"), "web", 7, logs.clone(), tx)
            .await
            .unwrap();
        (out, rx, logs)
    }

    fn hub_lines(logs: &LogHub) -> Vec<(String, String)> {
        logs.subscribe("web", 100, &LogFilter::default())
            .recent
            .into_iter()
            .map(|l| {
                assert_eq!(l.source, LogSource::Build);
                (l.tag, l.text)
            })
            .collect()
    }

    #[tokio::test]
    async fn a_line_goes_to_the_pusher_the_log_file_and_the_hub() {
        let dir = tempfile::tempdir().unwrap();
        let (mut out, mut rx, logs) = output(dir.path(), 8).await;
        out.line("-----> Building").await;
        out.close().await;
        assert_eq!(
            rx.try_recv().unwrap(),
            BuildEvent::Line {
                text: "-----> Building".into()
            }
        );
        let file = std::fs::read_to_string(dir.path().join("7.log")).unwrap();
        assert_eq!(file, "-----> Building\n");
        assert_eq!(
            hub_lines(&logs),
            [("7".to_string(), "-----> Building".to_string())]
        );
    }

    #[tokio::test]
    async fn a_failure_is_kept_in_the_log_but_sent_only_as_the_failed_event() {
        let dir = tempfile::tempdir().unwrap();
        let (mut out, mut rx, logs) = output(dir.path(), 8).await;
        out.line("compiling").await;
        out.failed("the compile step failed").await;
        out.close().await;
        drop(out);
        let mut events = Vec::new();
        while let Some(ev) = rx.recv().await {
            events.push(ev);
        }
        assert_eq!(
            events,
            [
                BuildEvent::Line {
                    text: "compiling".into()
                },
                BuildEvent::Failed {
                    build: 7,
                    message: "the compile step failed".into()
                },
            ]
        );
        let file = std::fs::read_to_string(dir.path().join("7.log")).unwrap();
        assert_eq!(file, "compiling\n !     the compile step failed\n");
        assert_eq!(
            hub_lines(&logs).last().unwrap().1,
            " !     the compile step failed"
        );
    }

    #[tokio::test]
    async fn the_build_goes_on_when_the_pusher_leaves_and_its_output_is_still_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (mut out, rx, _) = output(dir.path(), 8).await;
        drop(rx);
        out.line("one").await;
        out.line("two").await;
        out.close().await;
        let file = std::fs::read_to_string(dir.path().join("7.log")).unwrap();
        assert_eq!(file, "one\ntwo\n");
    }

    #[tokio::test]
    async fn an_urgent_event_never_waits_for_a_full_queue() {
        let dir = tempfile::tempdir().unwrap();
        let (mut out, mut rx, _) = output(dir.path(), 1).await;
        out.line("fills the queue").await;
        out.event_now(BuildEvent::Failed {
            build: 7,
            message: "dropped".into(),
        });
        // The pusher is then treated as gone: nothing more is queued for it.
        out.line("kept only").await;
        assert!(matches!(rx.try_recv(), Ok(BuildEvent::Line { .. })));
        assert!(rx.try_recv().is_err());
    }
}
