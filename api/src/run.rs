//! One-off processes (`caas run`): `POST /v1/apps/{app}/runs`.
//!
//! A detached run answers `201` with a [`RunStarted`]. An attached run is an HTTP/1.1 upgrade
//! (`Connection: Upgrade`, `Upgrade: caas-run/1`): the server answers `101` with the run's name
//! in `x-caas-run`, and from then on both sides send [`Frame`]s over the connection: one kind
//! byte, a big-endian `u32` length, the payload.

use serde::{Deserialize, Serialize};

/// The `Upgrade` token of an attached run.
pub const RUN_PROTOCOL: &str = "caas-run/1";
/// The header of the `101` answer that names the run (`run.3`).
pub const RUN_NAME_HEADER: &str = "x-caas-run";
/// The header of the `101` answer that says which release it runs (`7`).
pub const RUN_RELEASE_HEADER: &str = "x-caas-release";
/// The largest payload a frame may carry.
pub const MAX_FRAME: usize = 1 << 20;
/// The process type one-offs run as (`run.1`, `run.2`, ...).
pub const RUN_PROCESS: &str = "run";

/// `POST /v1/apps/{app}/runs`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunRequest {
    /// The command and its arguments; one element is run by a shell.
    pub command: Vec<String>,
    /// Give the process a terminal (the client has one on both ends).
    #[serde(default)]
    pub tty: bool,
    /// Return at once; the output goes to the app's log as `run.N`.
    #[serde(default)]
    pub detach: bool,
    /// The terminal's size, with `tty`.
    #[serde(default)]
    pub cols: Option<u16>,
    #[serde(default)]
    pub rows: Option<u16>,
    /// The client's `TERM`, with `tty`.
    #[serde(default)]
    pub term: Option<String>,
}

/// The answer to a detached run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunStarted {
    /// `run.N`: `caas logs --ps run.N` shows its output.
    pub name: String,
    pub release: u64,
}

/// One message of an attached run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Client → server: bytes for the process's stdin.
    Stdin(Vec<u8>),
    /// Client → server: the client's stdin ended; the process's stdin closes.
    StdinEnd,
    /// Client → server: the terminal's new size.
    Resize {
        cols: u16,
        rows: u16,
    },
    /// Server → client: output (with a terminal, all output is stdout).
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// Server → client, last: the process's exit status.
    Exit(i32),
    /// Server → client, last: the run failed on the platform's side (one line).
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("frame of {0} bytes is over the limit")]
    TooLong(usize),
    #[error("frame of kind {0} has a malformed payload")]
    Malformed(u8),
}

impl Frame {
    fn kind(&self) -> u8 {
        match self {
            Frame::Stdin(_) => 0,
            Frame::StdinEnd => 1,
            Frame::Resize { .. } => 2,
            Frame::Stdout(_) => 3,
            Frame::Stderr(_) => 4,
            Frame::Exit(_) => 5,
            Frame::Error(_) => 6,
        }
    }

    /// The frame as bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let payload: Vec<u8> = match self {
            Frame::Stdin(b) | Frame::Stdout(b) | Frame::Stderr(b) => b.clone(),
            Frame::StdinEnd => Vec::new(),
            Frame::Resize { cols, rows } => [cols.to_be_bytes(), rows.to_be_bytes()].concat(),
            Frame::Exit(code) => code.to_be_bytes().to_vec(),
            Frame::Error(text) => text.as_bytes().to_vec(),
        };
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(self.kind());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Takes the first whole frame off the front of `buf`; `Ok(None)` until one has arrived.
    pub fn decode(buf: &mut Vec<u8>) -> Result<Option<Frame>, FrameError> {
        if buf.len() < 5 {
            return Ok(None);
        }
        let kind = buf[0];
        if kind > 6 {
            return Err(FrameError::Kind(kind));
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLong(len));
        }
        if buf.len() < 5 + len {
            return Ok(None);
        }
        let payload: Vec<u8> = buf.drain(..5 + len).skip(5).collect();
        let frame = match kind {
            0 => Frame::Stdin(payload),
            1 => Frame::StdinEnd,
            2 => match payload[..] {
                [a, b, c, d] => Frame::Resize {
                    cols: u16::from_be_bytes([a, b]),
                    rows: u16::from_be_bytes([c, d]),
                },
                _ => return Err(FrameError::Malformed(kind)),
            },
            3 => Frame::Stdout(payload),
            4 => Frame::Stderr(payload),
            5 => match payload[..] {
                [a, b, c, d] => Frame::Exit(i32::from_be_bytes([a, b, c, d])),
                _ => return Err(FrameError::Malformed(kind)),
            },
            _ => Frame::Error(String::from_utf8_lossy(&payload).into_owned()),
        };
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_whole_and_in_pieces() {
        let frames = [
            Frame::Stdin(b"hi\n".to_vec()),
            Frame::StdinEnd,
            Frame::Resize {
                cols: 120,
                rows: 40,
            },
            Frame::Stdout(vec![0, 1, 2]),
            Frame::Stderr(Vec::new()),
            Frame::Exit(-3),
            Frame::Error("no release".into()),
        ];
        let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        // Byte by byte: nothing is decoded before it is whole.
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for b in wire {
            buf.push(b);
            while let Some(f) = Frame::decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        assert!(buf.is_empty());
    }

    #[test]
    fn bad_frames_are_refused() {
        assert_eq!(
            Frame::decode(&mut vec![9, 0, 0, 0, 0]),
            Err(FrameError::Kind(9))
        );
        assert_eq!(
            Frame::decode(&mut vec![3, 0xff, 0, 0, 0]),
            Err(FrameError::TooLong(0xff00_0000))
        );
        assert_eq!(
            Frame::decode(&mut vec![5, 0, 0, 0, 1, 7]),
            Err(FrameError::Malformed(5))
        );
    }
}
