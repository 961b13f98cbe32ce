//! Attaching to a container's standard streams (one-off processes, `caas run`): the engine's
//! HTTP upgrade on `/containers/ID/attach`, made before the container starts so no output is
//! missed, and the terminal's size.

use super::*;
use bollard::query_parameters::{AttachContainerOptionsBuilder, ResizeContainerTTYOptionsBuilder};
use std::pin::Pin;
use tokio::io::AsyncWrite;

/// How a container's standard streams are set up at creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stdio {
    /// Keep stdin open for an attached client; it closes when that client's stream ends.
    pub stdin: bool,
    /// A terminal: output comes as one stream, and the terminal's line discipline turns a
    /// client's Ctrl-C into SIGINT for the process.
    pub tty: bool,
}

/// A chunk of a container's output.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub stream: Stream2,
    pub data: Bytes,
}

/// The two ends of an attached container: its output, and a writer to its stdin (shut it down
/// to close the process's stdin).
pub struct Attached {
    pub output: Pin<Box<dyn Stream<Item = Result<Output>> + Send>>,
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
}

impl Engine {
    /// Attaches to a created container's stdout and stderr, and its stdin when it was created
    /// with one. The output stream ends when the container stops.
    pub async fn attach(&self, id: &str, stdin: bool) -> Result<Attached> {
        let opts = AttachContainerOptionsBuilder::new()
            .stream(true)
            .stdin(stdin)
            .stdout(true)
            .stderr(true)
            .build();
        let r = self.docker.attach_container(id, Some(opts)).await?;
        let output = r.output.map(|item| {
            Ok(match item? {
                bollard::container::LogOutput::StdErr { message } => Output {
                    stream: Stream2::Stderr,
                    data: message,
                },
                other => Output {
                    stream: Stream2::Stdout,
                    data: other.into_bytes(),
                },
            })
        });
        Ok(Attached {
            output: Box::pin(output),
            stdin: r.input,
        })
    }

    /// Sets the size of a container's terminal.
    pub async fn resize_tty(&self, id: &str, cols: u16, rows: u16) -> Result<()> {
        let opts = ResizeContainerTTYOptionsBuilder::new()
            .w(cols as i32)
            .h(rows as i32)
            .build();
        self.docker.resize_container_tty(id, opts).await?;
        Ok(())
    }
}
