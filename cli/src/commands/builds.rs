//! `builds`, `builds:output`: an app's builds and what they printed.

use super::{client, AppArg, JsonArg};
use crate::app::resolve_app;
use crate::commands::apps::release_label;
use crate::error::CliError;
use crate::output::{age, format_bytes, print_json, print_table, sanitize, say};
use anyhow::Result;
use caas_api::{Build, BuildStatus};
use clap::Args;
use std::io::{BufRead, BufReader, Read, Write};

#[derive(Debug, Args)]
pub struct BuildsArgs {
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// The build's number, as `caas builds` shows it: 3 or #3
    #[arg(value_name = "BUILD")]
    build: String,
    #[command(flatten)]
    app: AppArg,
    /// While the build runs, keep printing its output until it ends
    #[arg(short, long)]
    follow: bool,
}

pub fn list(args: BuildsArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let builds: Vec<Build> = client()?.get(&format!("/v1/apps/{name}/builds"))?;
    if args.json.json {
        return print_json(&builds);
    }
    if builds.is_empty() {
        return say(&format!("No builds yet. Push with: caas push -a {name}"));
    }
    let rows: Vec<Vec<String>> = builds
        .iter()
        .map(|b| {
            vec![
                format!("#{}", b.number),
                b.status.as_str().to_string(),
                b.source.clone(),
                b.builder.clone().unwrap_or_else(|| "-".to_string()),
                release_label(b.release),
                b.image_size.map_or_else(|| "-".to_string(), format_bytes),
                format!("{} ago", age(b.created_at)),
                match (b.status, &b.error) {
                    (BuildStatus::Failed, Some(error)) => short_reason(error),
                    _ => "-".to_string(),
                },
            ]
        })
        .collect();
    print_table(
        &[
            "BUILD", "STATUS", "SOURCE", "BUILDER", "RELEASE", "SIZE", "CREATED", "REASON",
        ],
        &rows,
    )
}

/// Longest reason in the `caas builds` table; `builds:output N` has the whole of it.
const REASON_WIDTH: usize = 60;

/// A failed build's reason cut to fit a table row: its first line, at most [`REASON_WIDTH`]
/// characters.
fn short_reason(error: &str) -> String {
    let line = error.lines().next().unwrap_or_default().trim();
    if line.chars().count() <= REASON_WIDTH {
        return line.to_string();
    }
    let cut: String = line.chars().take(REASON_WIDTH - 1).collect();
    format!("{}…", cut.trim_end())
}

pub fn output(args: OutputArgs) -> Result<()> {
    let number = parse_build_number(&args.build)?;
    let name = resolve_app(args.app.app)?;
    let query: &[(&str, &str)] = if args.follow {
        &[("follow", "true")]
    } else {
        &[]
    };
    let resp = client()?.get_stream(&format!("/v1/apps/{name}/builds/{number}/output"), query)?;
    let mut out = std::io::stdout().lock();
    print_text(resp, &mut out)
}

/// `3` or `#3`.
fn parse_build_number(text: &str) -> Result<u64, CliError> {
    text.strip_prefix('#')
        .unwrap_or(text)
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            CliError::usage(format!(
                "invalid build {:?}: give its number, as caas builds shows it (3 or #3)",
                sanitize(text)
            ))
        })
}

/// Copies text to `out` a line at a time as it arrives, each line sanitised; a last line without
/// a newline still gets one.
fn print_text(stream: impl Read, out: &mut impl Write) -> Result<()> {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| CliError::Failed(format!("the build output broke off: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        writeln!(out, "{}", sanitize(&String::from_utf8_lossy(&buf)))?;
        out.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_numbers_with_or_without_a_hash() {
        assert_eq!(parse_build_number("3").unwrap(), 3);
        assert_eq!(parse_build_number("#12").unwrap(), 12);
        for bad in ["", "#", "x", "-1", "0", "##3", "3.0", "../3"] {
            let err = parse_build_number(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn reasons_are_cut_to_one_short_line() {
        assert_eq!(
            short_reason("the compile step failed (see the output above)"),
            "the compile step failed (see the output above)"
        );
        assert_eq!(short_reason("first line\nsecond"), "first line");
        let long = format!("{} tail", "x".repeat(70));
        let cut = short_reason(&long);
        assert_eq!(cut.chars().count(), REASON_WIDTH);
        assert!(cut.ends_with('…') && cut.starts_with("xxx"), "{cut}");
    }

    #[test]
    fn output_is_sanitised_line_by_line() {
        let mut out = Vec::new();
        print_text(
            &b"-----> Building\r\n\x1b[2Jcleared\n\xffbad utf8\nno newline"[..],
            &mut out,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "-----> Building\n[2Jcleared\n\u{fffd}bad utf8\nno newline\n"
        );
    }
}
