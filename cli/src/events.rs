//! Following a stream of NDJSON events the server answers with (a build's, a config change's) as
//! it arrives: one event a line; event types of a newer server are skipped; a stream that stops
//! before the outcome is the `broke` error.

use crate::error::CliError;
use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use std::io::{BufRead, BufReader, Read};

/// Reads events of type `T` from `stream` and hands each to `on` until it answers the outcome.
/// `what` names the stream in the message for a line that is not JSON.
pub fn follow<T: DeserializeOwned, R>(
    stream: impl Read,
    what: &str,
    broke: impl Fn() -> CliError,
    mut on: impl FnMut(T) -> Result<Option<R>>,
) -> Result<R> {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|_| broke())?;
        if n == 0 {
            return Err(broke().into());
        }
        let line = buf.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let event = match serde_json::from_slice::<T>(line) {
            Ok(event) => event,
            // A newer server may add event types: skip what this client does not know. A line
            // cut short by a dropped connection is not JSON and ends the stream like EOF does.
            Err(_) if serde_json::from_slice::<serde_json::Value>(line).is_ok() => continue,
            Err(_) if !buf.ends_with(b"\n") => return Err(broke().into()),
            Err(e) => {
                return Err(e).with_context(|| format!("the server's {what} stream is not NDJSON"))
            }
        };
        if let Some(outcome) = on(event)? {
            return Ok(outcome);
        }
    }
}
