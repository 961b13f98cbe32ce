//! DNS-01 through the operator's hook (`caasd --acme-dns-hook PATH`): the only way an ACME server
//! lets anyone prove control of a wildcard name is a TXT record, and caas is no DNS provider, so
//! it runs a program the operator gives, with the arguments lego's `exec` provider uses (a
//! convention many DNS scripts already follow):
//!
//! ```text
//! PATH present _acme-challenge.example.com. VALUE
//! PATH cleanup _acme-challenge.example.com. VALUE
//! ```
//!
//! `present` must exit 0 only once the record is published (the ACME server asks for it next);
//! `cleanup` removes it after the order, whether it succeeded or not.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// How long one run of the hook may take: long enough for a provider's API and propagation
/// check, short enough that a hung script does not hold the ACME client for good.
const HOOK_WAIT: Duration = Duration::from_secs(180);

/// `--acme-dns-hook`: an executable file, given as a path.
pub fn parse_hook(text: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let path = PathBuf::from(text);
    let meta = std::fs::metadata(&path)
        .map_err(|e| format!("cannot use {text} as the DNS-01 hook: {e}"))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "{text} is not an executable file: give a program that publishes and removes TXT records (chmod +x it)"
        ));
    }
    Ok(path)
}

/// The TXT record's name for `hostname` (a wildcard's is its base name's), fully qualified.
pub fn record_name(hostname: &str) -> String {
    let base = hostname.strip_prefix("*.").unwrap_or(hostname);
    format!("_acme-challenge.{}.", base.trim_end_matches('.'))
}

/// The operator's hook.
#[derive(Debug, Clone)]
pub struct Hook {
    pub path: PathBuf,
}

impl Hook {
    /// Publishes `value` at `record`; `Err` says why not, in one line.
    pub async fn present(&self, record: &str, value: &str) -> Result<(), String> {
        self.run("present", record, value).await
    }

    /// Removes what `present` published.
    pub async fn cleanup(&self, record: &str, value: &str) -> Result<(), String> {
        self.run("cleanup", record, value).await
    }

    async fn run(&self, action: &str, record: &str, value: &str) -> Result<(), String> {
        let shown = self.path.display();
        let child = tokio::process::Command::new(&self.path)
            .args([action, record, value])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run the DNS-01 hook {shown}: {e}"))?;
        let out = tokio::time::timeout(HOOK_WAIT, child.wait_with_output())
            .await
            .map_err(|_| {
                format!(
                    "the DNS-01 hook {shown} {action} {record} did not finish within {}s",
                    HOOK_WAIT.as_secs()
                )
            })?
            .map_err(|e| format!("the DNS-01 hook {shown}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "the DNS-01 hook {shown} {action} {record} failed ({}): {}",
            out.status,
            last_line(&out.stderr, &out.stdout)
        ))
    }
}

/// The hook's own last word: the last non-empty line of its stderr, else of its stdout.
fn last_line(stderr: &[u8], stdout: &[u8]) -> String {
    [stderr, stdout]
        .iter()
        .find_map(|b| {
            String::from_utf8_lossy(b)
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(super::one_line)
        })
        .unwrap_or_else(|| "it printed nothing".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_of_a_name_and_of_its_wildcard_is_the_same() {
        for (host, record) in [
            ("example.com", "_acme-challenge.example.com."),
            ("*.example.com", "_acme-challenge.example.com."),
            ("*.apps.example.org.", "_acme-challenge.apps.example.org."),
        ] {
            assert_eq!(record_name(host), record, "{host}");
        }
    }

    #[test]
    fn the_hook_must_be_an_executable_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(parse_hook(missing.to_str().unwrap())
            .unwrap_err()
            .contains("cannot use"));
        assert!(parse_hook(dir.path().to_str().unwrap())
            .unwrap_err()
            .contains("not an executable file"));
        let script = dir.path().join("hook.sh");
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        assert!(parse_hook(script.to_str().unwrap())
            .unwrap_err()
            .contains("chmod +x"));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(parse_hook(script.to_str().unwrap()).unwrap(), script);
    }

    #[tokio::test]
    async fn a_failing_hook_says_what_it_printed_last() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("hook.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"$1 $2 $3\" >> \"$(dirname \"$0\")/calls\"\n[ \"$1\" = cleanup ] && exit 0\necho 'no zone for that name' >&2\nexit 3\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let hook = Hook {
            path: script.clone(),
        };
        let err = hook
            .present("_acme-challenge.example.com.", "abc")
            .await
            .unwrap_err();
        assert!(err.contains("no zone for that name"), "{err}");
        assert!(
            err.contains("present _acme-challenge.example.com."),
            "{err}"
        );
        hook.cleanup("_acme-challenge.example.com.", "abc")
            .await
            .unwrap();
        let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
        assert_eq!(
            calls,
            "present _acme-challenge.example.com. abc\ncleanup _acme-challenge.example.com. abc\n"
        );
    }
}
