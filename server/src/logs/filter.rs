//! Which lines a `caas logs` reader asked for: by source, by process or instance, by time. Parsed
//! from the query once, with a one-line message for what does not parse, then applied to stored
//! and live lines alike.

use caas_api::{LogLine, LogSource, Timestamp};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogFilter {
    /// Empty: every source.
    pub sources: Vec<LogSource>,
    /// `web` (every instance of it) or `web.1`; app lines and platform events about it.
    pub ps: Option<String>,
    pub since: Option<Timestamp>,
}

impl LogFilter {
    /// `source` is a comma-separated list (`app,caas`); `ps` a process type or an instance.
    pub fn parse(
        source: Option<&str>,
        ps: Option<&str>,
        since: Option<Timestamp>,
    ) -> Result<Self, String> {
        let mut sources = Vec::new();
        for s in source.unwrap_or("").split(',').map(str::trim) {
            if s.is_empty() {
                continue;
            }
            let parsed = match s {
                "app" => LogSource::App,
                "caas" => LogSource::Caas,
                "router" => LogSource::Router,
                "build" => LogSource::Build,
                other => {
                    return Err(format!(
                        "unknown log source {other:?}: use app, caas, router or build"
                    ))
                }
            };
            if !sources.contains(&parsed) {
                sources.push(parsed);
            }
        }
        let ps = match ps.map(str::trim).filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => {
                let (process, index) = match p.split_once('.') {
                    Some((process, index)) => (process, Some(index)),
                    None => (p, None),
                };
                let index_ok = index.is_none_or(|i| {
                    !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()) && i.len() <= 4
                });
                if caas_api::validate_process_type(process).is_err() || !index_ok {
                    return Err(format!(
                        "invalid --ps {p:?}: use a process type (web) or an instance (web.1)"
                    ));
                }
                Some(p.to_string())
            }
        };
        Ok(Self { sources, ps, since })
    }

    pub fn matches(&self, line: &LogLine) -> bool {
        if !self.sources.is_empty() && !self.sources.contains(&line.source) {
            return false;
        }
        if self.since.is_some_and(|since| line.ts < since) {
            return false;
        }
        match &self.ps {
            None => true,
            Some(ps) => match line.source {
                // An instance's own output is tagged with its name.
                LogSource::App => tag_is(&line.tag, ps),
                // Platform events name instances in their text ("web.1 crashed: ...").
                LogSource::Caas => line
                    .text
                    .split(|c: char| !is_name_char(c))
                    .any(|w| tag_is(w, ps)),
                LogSource::Router | LogSource::Build => false,
            },
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

/// `web.1` is `web.1` and is of `web`; `web.10` is not `web.1`.
fn tag_is(tag: &str, ps: &str) -> bool {
    let tag = tag.trim_end_matches(['.', ',', ':', ';']);
    tag == ps || (!ps.contains('.') && tag.split_once('.').is_some_and(|(p, _)| p == ps))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(source: LogSource, tag: &str, text: &str, ts: u64) -> LogLine {
        LogLine {
            ts: Timestamp(ts),
            source,
            tag: tag.into(),
            text: text.into(),
        }
    }

    #[test]
    fn queries_parse_or_say_what_is_wrong() {
        let f = LogFilter::parse(Some("app, caas,app"), Some("web.1"), None).unwrap();
        assert_eq!(f.sources, [LogSource::App, LogSource::Caas]);
        assert_eq!(f.ps.as_deref(), Some("web.1"));
        assert_eq!(
            LogFilter::parse(None, None, None).unwrap(),
            LogFilter::default()
        );
        assert_eq!(
            LogFilter::parse(Some(""), Some(""), None).unwrap(),
            LogFilter::default()
        );
        for (source, ps, want) in [
            (Some("apps"), None, "unknown log source \"apps\""),
            (None, Some("web."), "invalid --ps \"web.\""),
            (None, Some("Web"), "invalid --ps"),
            (None, Some("web.x"), "invalid --ps"),
            (None, Some("../x"), "invalid --ps"),
        ] {
            let err = LogFilter::parse(source, ps, None).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn lines_match_by_source_instance_process_and_time() {
        let app1 = line(LogSource::App, "web.1", "hello", 10);
        let app10 = line(LogSource::App, "web.10", "hello", 10);
        let worker = line(LogSource::App, "worker.1", "tick", 10);
        let crash = line(
            LogSource::Caas,
            "crash",
            "web.1 crashed: exited with status 3",
            10,
        );
        let deploy = line(LogSource::Caas, "deploy", "Stopping v1 (web.1, web.2)", 10);
        let router = line(LogSource::Router, "router", "at=info method=GET", 10);
        let f =
            |source: Option<&str>, ps: Option<&str>| LogFilter::parse(source, ps, None).unwrap();

        let web1 = f(None, Some("web.1"));
        assert!(web1.matches(&app1) && !web1.matches(&app10) && !web1.matches(&worker));
        assert!(web1.matches(&crash) && web1.matches(&deploy) && !web1.matches(&router));
        let web = f(None, Some("web"));
        assert!(web.matches(&app1) && web.matches(&app10) && !web.matches(&worker));
        let apps = f(Some("app"), None);
        assert!(apps.matches(&worker) && !apps.matches(&crash));

        let since = LogFilter::parse(None, None, Some(Timestamp(11))).unwrap();
        assert!(!since.matches(&app1));
        assert!(since.matches(&line(LogSource::App, "web.1", "x", 11)));
    }
}
