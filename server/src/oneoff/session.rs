//! An attached one-off: the client's upgraded connection bridged to the container's standard
//! streams, in [`caas_api::run::Frame`]s. The process's stdin is written by a task of its own,
//! so a process that does not read its stdin never holds up its output.

use super::{RunInfo, Runner};
use crate::docker::{Attached, Stream2};
use caas_api::run::Frame;
use futures_util::StreamExt;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

/// Runs the session to its end: the process's exit status is the last frame. A client that goes
/// away ends the process (its container is removed), as closing a terminal ends its shell.
pub async fn serve<IO>(runner: Arc<Runner>, info: RunInfo, attached: Attached, io: IO)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (client_in, mut client_out) = tokio::io::split(io);
    let Attached { mut output, stdin } = attached;
    let (gone_tx, mut gone) = oneshot::channel::<()>();
    let input = tokio::spawn(pump_input(
        runner.clone(),
        info.clone(),
        client_in,
        stdin,
        gone_tx,
    ));
    let mut client_left = false;
    loop {
        tokio::select! {
            chunk = output.next() => match chunk {
                Some(Ok(o)) => {
                    let frame = match o.stream {
                        Stream2::Stdout => Frame::Stdout(o.data.to_vec()),
                        Stream2::Stderr => Frame::Stderr(o.data.to_vec()),
                    };
                    if client_out.write_all(&frame.encode()).await.is_err() {
                        client_left = true;
                        break;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(app = info.app, "{}: output: {e}", info.name());
                    break;
                }
                None => break,
            },
            Ok(()) = &mut gone => {
                client_left = true;
                break;
            }
        }
    }
    input.abort();
    if client_left {
        runner.end(&info).await;
        return;
    }
    let last = match runner.finish(&info).await {
        Ok(code) => Frame::Exit(code.clamp(i32::MIN as i64, i32::MAX as i64) as i32),
        Err(e) => {
            tracing::warn!(app = info.app, "{}: waiting: {e}", info.name());
            Frame::Error(format!(
                "{} ended, but its exit status is unknown",
                info.name()
            ))
        }
    };
    let _ = client_out.write_all(&last.encode()).await;
    let _ = client_out.shutdown().await;
}

/// Client → process: stdin bytes, the end of stdin, terminal sizes. Says `gone` when the client
/// closes its side without ending stdin first, or breaks the protocol.
async fn pump_input<R>(
    runner: Arc<Runner>,
    info: RunInfo,
    mut client: R,
    mut stdin: std::pin::Pin<Box<dyn AsyncWrite + Send>>,
    gone: oneshot::Sender<()>,
) where
    R: AsyncRead + Unpin,
{
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut stdin_open = true;
    loop {
        loop {
            match Frame::decode(&mut buf) {
                Ok(Some(Frame::Stdin(data))) if stdin_open => {
                    if stdin.write_all(&data).await.is_err() || stdin.flush().await.is_err() {
                        stdin_open = false;
                    }
                }
                Ok(Some(Frame::StdinEnd)) if stdin_open => {
                    stdin_open = false;
                    let _ = stdin.shutdown().await;
                }
                Ok(Some(Frame::Resize { cols, rows })) => {
                    if let Err(e) = runner.resize(&info, cols, rows).await {
                        tracing::debug!("{}: resize: {e}", info.name());
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!("{}: client: {e}", info.name());
                    let _ = gone.send(());
                    return;
                }
            }
        }
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                // A client that ended stdin may half-close and wait for the output.
                if stdin_open {
                    let _ = gone.send(());
                }
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
