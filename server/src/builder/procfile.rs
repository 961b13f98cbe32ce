//! Process types of a built app: the `Procfile` (what the user says) over the buildpack's
//! `default_process_types` from `bin/release` (what the buildpack guesses).

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcfileError {
    #[error("Procfile line {line}: expected `TYPE: COMMAND`, e.g. `web: python app.py`")]
    Syntax { line: usize },
    #[error("Procfile line {line}: {source}")]
    Name {
        line: usize,
        source: caas_api::NameError,
    },
}

/// `web: gunicorn app:app` lines. Blank lines and `#` comments are skipped.
pub fn parse_procfile(text: &str) -> Result<BTreeMap<String, String>, ProcfileError> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, command) = line
            .split_once(':')
            .ok_or(ProcfileError::Syntax { line: i + 1 })?;
        let (name, command) = (name.trim(), command.trim());
        caas_api::validate_process_type(name).map_err(|source| ProcfileError::Name {
            line: i + 1,
            source,
        })?;
        if command.is_empty() {
            return Err(ProcfileError::Syntax { line: i + 1 });
        }
        out.insert(name.to_string(), command.to_string());
    }
    Ok(out)
}

/// The `default_process_types` mapping of a buildpack's `bin/release` YAML. Only that much of
/// YAML is understood: a top-level key with an indented `name: command` block under it. Lines
/// that do not fit are ignored (a buildpack's release output is advice, not a contract).
pub fn parse_release_yaml(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inside = false;
    for raw in text.lines() {
        if raw.trim().is_empty() || raw.trim_start().starts_with('#') {
            continue;
        }
        let indented = raw.starts_with(' ') || raw.starts_with('\t');
        if !indented {
            inside = raw.trim_end().trim_end_matches(':') == "default_process_types"
                && raw.trim_end().ends_with(':');
            continue;
        }
        if !inside {
            continue;
        }
        let Some((name, command)) = raw.trim().split_once(':') else {
            continue;
        };
        let name = name.trim().trim_matches(|c| c == '"' || c == '\'');
        let command = unquote(command.trim());
        if caas_api::validate_process_type(name).is_ok() && !command.is_empty() {
            out.insert(name.to_string(), command);
        }
    }
    out
}

fn unquote(s: &str) -> String {
    let b = s.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        let inner = &s[1..s.len() - 1];
        if b[0] == b'"' {
            return inner.replace("\\\"", "\"").replace("\\\\", "\\");
        }
        return inner.replace("''", "'");
    }
    s.to_string()
}

/// A built app's process types and their commands: the `Procfile` (what the user says) over the
/// buildpack's `default_process_types` (`release`, what the buildpack guesses).
pub fn process_types(
    procfile: Option<&str>,
    release: Option<&str>,
) -> Result<BTreeMap<String, String>, ProcfileError> {
    let mut types = release.map(parse_release_yaml).unwrap_or_default();
    if let Some(text) = procfile {
        types.extend(parse_procfile(text)?);
    }
    Ok(types)
}

/// Quotes `s` for a POSIX shell: one single-quoted word.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfiles() {
        let p = parse_procfile("# comment\nweb: gunicorn app:app --bind 0.0.0.0:$PORT\n\nworker:   python worker.py  \n").unwrap();
        assert_eq!(p["web"], "gunicorn app:app --bind 0.0.0.0:$PORT");
        assert_eq!(p["worker"], "python worker.py");
        assert_eq!(
            parse_procfile("web python app.py"),
            Err(ProcfileError::Syntax { line: 1 })
        );
        assert_eq!(
            parse_procfile("web:"),
            Err(ProcfileError::Syntax { line: 1 })
        );
        assert!(matches!(
            parse_procfile("\nWeb Server: x"),
            Err(ProcfileError::Name { line: 2, .. })
        ));
    }

    #[test]
    fn release_yaml() {
        let y = "---\naddons: []\ndefault_process_types:\n  web: node server.js\n  worker: \"node worker.js --name \\\"x\\\"\"\n  clock: 'sh -c ''tick'''\nconfig_vars:\n  A: b\n";
        let p = parse_release_yaml(y);
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(p["web"], "node server.js");
        assert_eq!(p["worker"], "node worker.js --name \"x\"");
        assert_eq!(p["clock"], "sh -c 'tick'");
        assert!(parse_release_yaml("default_process_types: {}\n").is_empty());
        assert!(parse_release_yaml("").is_empty());
    }

    #[test]
    fn the_procfile_wins_over_the_buildpacks_defaults() {
        struct Case {
            procfile: Option<&'static str>,
            release: Option<&'static str>,
            want: &'static [(&'static str, &'static str)],
        }
        let release = Some("default_process_types:\n  web: python app.py\n  worker: python w.py\n");
        let table = [
            Case {
                procfile: None,
                release: None,
                want: &[],
            },
            Case {
                procfile: None,
                release,
                want: &[("web", "python app.py"), ("worker", "python w.py")],
            },
            Case {
                procfile: Some("web: gunicorn app:app\nclock: python c.py\n"),
                release,
                want: &[
                    ("clock", "python c.py"),
                    ("web", "gunicorn app:app"),
                    ("worker", "python w.py"),
                ],
            },
            Case {
                procfile: Some("web: ./run\n"),
                release: None,
                want: &[("web", "./run")],
            },
        ];
        for c in table {
            let got = process_types(c.procfile, c.release).unwrap();
            let want: BTreeMap<String, String> = c
                .want
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, want, "{:?} over {:?}", c.procfile, c.release);
        }
        assert_eq!(
            process_types(Some("web"), release),
            Err(ProcfileError::Syntax { line: 1 })
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
    }
}
