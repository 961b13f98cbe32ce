//! `logs`: an app's recent log lines, and with `--tail` the live stream.

use super::{client, AppArg};
use crate::app::resolve_app;
use crate::error::CliError;
use crate::output::{render_log_line, stdout_color};
use anyhow::{Context, Result};
use caas_api::LogEvent;
use clap::Args;
use std::io::{BufRead, BufReader, Read, Write};

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    app: AppArg,
    /// How many recent lines to show first [default: 100, or every line since --since]
    #[arg(
        short = 'n',
        long = "num",
        visible_alias = "lines",
        value_name = "LINES"
    )]
    lines: Option<u32>,
    /// Keep the stream open and print new lines as they happen (Ctrl-C ends it)
    #[arg(short, long)]
    tail: bool,
    /// Only lines from these sources: app, caas, router, build (comma-separated)
    #[arg(short, long, value_name = "SOURCE")]
    source: Option<String>,
    /// Only lines of one process type (web) or instance (web.1): its output and the platform's
    /// events about it
    #[arg(short, long, visible_alias = "dyno", value_name = "PS")]
    ps: Option<String>,
    /// Only lines since a time: a duration back from now (10m, 2h) or a time
    /// (2026-11-25T07:39:33Z)
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Print one JSON object per line (the API's events) instead of text
    #[arg(long)]
    json: bool,
}

pub fn logs(args: LogsArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let lines = args.lines.map(|n| n.to_string());
    let mut query: Vec<(&str, &str)> = vec![("tail", if args.tail { "true" } else { "false" })];
    for (key, value) in [
        ("lines", &lines),
        ("source", &args.source),
        ("ps", &args.ps),
        ("since", &args.since),
    ] {
        if let Some(v) = value {
            query.push((key, v));
        }
    }
    let resp = client()?.get_stream(&format!("/v1/apps/{name}/logs"), &query)?;
    let color = stdout_color();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr();
    if args.json {
        return copy_events(resp, &mut out);
    }
    print_stream(resp, &mut out, &mut err, color)
}

/// `--json`: the server's events as they come, one object per line, each flushed at once.
fn copy_events(stream: impl Read, out: &mut impl Write) -> Result<()> {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| CliError::Failed(format!("the log stream broke off: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        let line = buf.trim_ascii();
        if line.is_empty() {
            continue;
        }
        // Re-encoded rather than copied: what reaches the terminal is JSON, whatever came.
        let value: serde_json::Value =
            serde_json::from_slice(line).context("the server's log stream is not NDJSON")?;
        serde_json::to_writer(&mut *out, &value)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
}

/// Prints each event as soon as its line arrives: this runs for as long as `--tail` does, so
/// nothing may wait for the end of the stream.
fn print_stream(
    stream: impl Read,
    out: &mut impl Write,
    err: &mut impl Write,
    color: bool,
) -> Result<()> {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| CliError::Failed(format!("the log stream broke off: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        let line = buf.trim_ascii();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<LogEvent>(line) {
            Ok(LogEvent::Line(l)) => {
                writeln!(out, "{}", render_log_line(&l, color))?;
                out.flush()?;
            }
            Ok(LogEvent::Missed { count }) => {
                writeln!(err, "-- missed {count} lines (reader too slow) --")?;
            }
            // A newer server may add event types; an old client skips what it does not know,
            // but a stream that is not JSON at all is not a log stream.
            Err(_) if serde_json::from_slice::<serde_json::Value>(line).is_ok() => {}
            Err(e) => return Err(e).context("the server's log stream is not NDJSON"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_lines_and_reports_missed_ones_on_stderr() {
        let stream = concat!(
            r#"{"type":"line","ts":"2026-11-25T07:39:33.123Z","source":"app","tag":"web.1","text":"hello"}"#,
            "\n",
            r#"{"type":"missed","count":12}"#,
            "\n\n",
            r#"{"type":"future_kind","x":1}"#,
            "\n",
            r#"{"type":"line","ts":"2026-11-25T07:39:34Z","source":"caas","tag":"deploy","text":"Deployed v2\u001b[2J"}"#,
        );
        let (mut out, mut err) = (Vec::new(), Vec::new());
        print_stream(stream.as_bytes(), &mut out, &mut err, false).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-11-25T07:39:33Z app[web.1]: hello\n\
             2026-11-25T07:39:34Z caas[deploy]: Deployed v2[2J\n"
        );
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "-- missed 12 lines (reader too slow) --\n"
        );
    }

    #[test]
    fn json_copies_each_event_on_a_line_of_its_own() {
        let stream = concat!(
            r#"{"type":"line","ts":"2026-11-25T07:39:33.123Z","source":"app","tag":"web.1","text":"hi\u001b[2J"}"#,
            "\n\n",
            r#"{"type":"missed","count":2}"#,
            "\n",
        );
        let mut out = Vec::new();
        copy_events(stream.as_bytes(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains(r#""text":"hi\u001b[2J""#), "{text}");
        assert_eq!(lines[1], r#"{"count":2,"type":"missed"}"#);
        assert!(copy_events(&b"<html>\n"[..], &mut Vec::new()).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert!(print_stream(&b"<html>\n"[..], &mut out, &mut err, false).is_err());
    }

    /// Each line is printed before the next is read: `--tail` shows lines as they happen.
    #[test]
    fn prints_each_line_before_reading_the_next() {
        let (reader, mut out) = crate::testutil::one_line_at_a_time(vec![
            b"{\"type\":\"line\",\"ts\":\"2026-11-25T07:39:33Z\",\"source\":\"app\",\"tag\":\"web.1\",\"text\":\"a\"}\n",
            b"{\"type\":\"line\",\"ts\":\"2026-11-25T07:39:34Z\",\"source\":\"router\",\"tag\":\"web.1\",\"text\":\"b\"}\n",
        ]);
        let printed = out.0.clone();
        print_stream(reader, &mut out, &mut Vec::new(), false).unwrap();
        assert_eq!(printed.borrow().iter().filter(|b| **b == b'\n').count(), 2);
    }
}
