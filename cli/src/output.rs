//! Everything that decides how text looks: tables, ages, colour, and making text from servers and
//! apps safe to print.

use anyhow::Result;
use caas_api::{LogLine, LogSource, Timestamp};
use console::Style;
use serde::Serialize;
use std::io::Write;
use std::time::Duration;

/// Removes control characters (C0, DEL, C1) except tab. Text from apps and servers goes through
/// this before it reaches a terminal, so an app cannot move the cursor, recolour the screen or
/// rewrite the window title with escape sequences in its log lines.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|c| *c == '\t' || !c.is_control())
        .collect()
}

/// `5s`, `3m`, `2h`, `4d`: the largest whole unit, as in `docker ps` and `kubectl get`.
pub fn format_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Age of `ts` now; a timestamp slightly in the future (clock skew) shows as `0s`.
pub fn age(ts: Timestamp) -> String {
    format_age(ts.until(Timestamp::now()))
}

/// RFC 3339 at second precision: `2026-11-25T07:39:33Z`.
pub fn format_ts(ts: Timestamp) -> String {
    humantime::format_rfc3339_seconds(ts.to_system_time()).to_string()
}

pub use caas_api::format_bytes;

pub fn format_mb(mb: u64) -> String {
    if mb >= 1024 {
        format!("{:.1} GiB", mb as f64 / 1024.0)
    } else {
        format!("{mb} MiB")
    }
}

/// Whether stdout gets colour: a terminal, and NO_COLOR unset (console checks both).
pub fn stdout_color() -> bool {
    console::colors_enabled()
}

/// Whether a person (rather than a script) reads stdout: decorations such as headers only then.
pub fn stdout_is_term() -> bool {
    console::Term::stdout().is_term()
}

pub fn stderr_is_term() -> bool {
    console::Term::stderr().is_term()
}

fn styled(style: Style, color: bool, text: &str) -> String {
    if color {
        style.force_styling(true).apply_to(text).to_string()
    } else {
        text.to_string()
    }
}

/// Prints rows as left-aligned columns, two spaces apart, every cell sanitised. The last column
/// is not padded, so lines carry no trailing spaces.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let text = render_table(headers, rows, stdout_color());
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

pub fn render_table(headers: &[&str], rows: &[Vec<String>], color: bool) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| sanitize(c)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>, out: &mut String, style: Option<&Style>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            text.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 2;
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        match style {
            Some(s) => out.push_str(&styled(s.clone(), color, &text)),
            None => out.push_str(&text),
        }
        out.push('\n');
    };
    let mut out = String::new();
    line(
        headers.iter().map(|h| h.to_string()).collect(),
        &mut out,
        Some(&Style::new().bold()),
    );
    for row in rows {
        line(row, &mut out, None);
    }
    out
}

/// `--json`: the API's own types, pretty, with their field names.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Prints one line to stdout, returning write errors (a closed pipe) instead of panicking like
/// `println!` does.
pub fn say(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// A progress note on stderr, for when there is no terminal to draw a spinner on.
pub fn note(text: &str) {
    eprintln!("{text}");
}

fn source_style(source: LogSource) -> Style {
    match source {
        LogSource::App => Style::new().cyan(),
        LogSource::Caas => Style::new().magenta(),
        LogSource::Router => Style::new().green(),
        LogSource::Build => Style::new().yellow(),
    }
}

/// `2026-11-25T07:39:33Z app[web.1]: hello`. The tag and text come from apps, so both are
/// sanitised; only the `SOURCE[TAG]` prefix is ever coloured. Router lines read
/// `caas[router]`, as Heroku's read `heroku[router]`: the router is part of the platform.
pub fn render_log_line(line: &LogLine, color: bool) -> String {
    let source = match line.source {
        LogSource::Router => "caas",
        other => other.as_str(),
    };
    let prefix = format!("{source}[{}]", sanitize(&line.tag));
    format!(
        "{} {}: {}",
        format_ts(line.ts),
        styled(source_style(line.source), color, &prefix),
        sanitize(&line.text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_control_characters_but_keeps_tabs_and_unicode() {
        assert_eq!(sanitize("plain text"), "plain text");
        assert_eq!(sanitize("a\tb"), "a\tb");
        assert_eq!(sanitize("\x1b[31mred\x1b[0m"), "[31mred[0m");
        assert_eq!(sanitize("line\r\nnext\x07\x08\x7f"), "linenext");
        assert_eq!(sanitize("c1:\u{9b}31m"), "c1:31m");
        assert_eq!(sanitize("title\x1b]0;pwned\x07"), "title]0;pwned");
        assert_eq!(sanitize("héllo — 日本"), "héllo — 日本");
        assert_eq!(sanitize("nul\0byte"), "nulbyte");
    }

    #[test]
    fn ages_use_the_largest_whole_unit() {
        let cases = [
            (0, "0s"),
            (5, "5s"),
            (59, "59s"),
            (60, "1m"),
            (3 * 60 + 59, "3m"),
            (3599, "59m"),
            (3600, "1h"),
            (2 * 3600 + 1, "2h"),
            (86399, "23h"),
            (86400, "1d"),
            (4 * 86400 + 3600, "4d"),
            (400 * 86400, "400d"),
        ];
        for (secs, want) in cases {
            assert_eq!(format_age(Duration::from_secs(secs)), want, "{secs}");
        }
        assert_eq!(format_age(Duration::from_millis(1999)), "1s");
    }

    #[test]
    fn future_timestamps_show_zero_age() {
        let future = Timestamp::now().plus(Duration::from_secs(60));
        assert_eq!(age(future), "0s");
    }

    fn line(source: LogSource, tag: &str, text: &str) -> LogLine {
        LogLine {
            // 2026-11-25T07:39:33.123Z
            ts: Timestamp::from_millis(1_795_592_373_123),
            source,
            tag: tag.into(),
            text: text.into(),
        }
    }

    #[test]
    fn renders_log_lines_plain() {
        assert_eq!(
            render_log_line(&line(LogSource::App, "web.1", "hello"), false),
            "2026-11-25T07:39:33Z app[web.1]: hello"
        );
        assert_eq!(
            render_log_line(&line(LogSource::Caas, "deploy", "Deployed v2"), false),
            "2026-11-25T07:39:33Z caas[deploy]: Deployed v2"
        );
    }

    #[test]
    fn log_lines_cannot_smuggle_escapes() {
        let hostile = line(
            LogSource::App,
            "web.1\x1b[2J",
            "\x1b[1A\rcaas[deploy]: fake\x1b[0m",
        );
        let out = render_log_line(&hostile, false);
        assert_eq!(
            out,
            "2026-11-25T07:39:33Z app[web.1[2J]: [1Acaas[deploy]: fake[0m"
        );
        assert!(!out.contains('\x1b'));
    }

    #[test]
    fn colours_only_the_prefix_and_only_when_asked() {
        let out = render_log_line(&line(LogSource::Router, "web.1", "GET /"), true);
        assert_eq!(
            out,
            "2026-11-25T07:39:33Z \x1b[32mcaas[web.1]\x1b[0m: GET /"
        );
        let build = render_log_line(&line(LogSource::Build, "b", "x"), true);
        assert!(build.contains("\x1b[33mbuild[b]\x1b[0m"));
        let app = render_log_line(&line(LogSource::App, "web.1", "\x1b[31mx"), true);
        assert!(app.contains("\x1b[36mapp[web.1]\x1b[0m"));
        assert!(app.ends_with(": [31mx"));
    }

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let rows = vec![
            vec!["demo".to_string(), "v2".to_string(), "1".to_string()],
            vec!["longer-name".to_string(), "-".to_string(), "12".to_string()],
        ];
        let out = render_table(&["NAME", "RELEASE", "INSTANCES"], &rows, false);
        assert_eq!(
            out,
            "NAME         RELEASE  INSTANCES\n\
             demo         v2       1\n\
             longer-name  -        12\n"
        );
    }

    #[test]
    fn table_cells_are_sanitised() {
        let rows = vec![vec!["a\x1b[31m".to_string(), "b".to_string()]];
        let out = render_table(&["X", "Y"], &rows, false);
        assert_eq!(out, "X      Y\na[31m  b\n");
    }
}
