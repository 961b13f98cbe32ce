//! The git side of caas: running git, the `caas` remote of a repository, and git's credential
//! helper protocol (`caas git:credential`).
//!
//! git is always run with an argument vector (never through a shell) and with `--` before values
//! wherever git accepts it. The token never goes into a remote URL or a git config file: git asks
//! `caas git:credential get` for it when the server answers 401, and the helper reads it from
//! the same place every other command does (CAAS_TOKEN or the saved login).

use crate::config::{normalize_server, Settings};
use crate::error::CliError;
use anyhow::{Context, Result};
use std::io::BufRead;
use std::process::{Command, Output, Stdio};

/// The remote `caas git:remote` adds unless told otherwise, and the one `resolve_app` reads.
pub const DEFAULT_REMOTE: &str = "caas";
/// The user name git sends; the server ignores it and checks the password (the token).
pub const GIT_USERNAME: &str = "caas";

/// Runs `git ARGS` in the current directory with no stdin. A missing git is a failure (exit 1)
/// that says so; a git that ran but failed is returned as it is, for the caller to judge.
fn run(args: &[&str]) -> Result<Output> {
    Command::new("git")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                CliError::Failed("git is not installed (no git command on PATH)".into()).into()
            } else {
                anyhow::Error::new(e).context("running git")
            }
        })
}

/// Runs git and requires success; the failure carries git's own message.
fn run_ok(args: &[&str]) -> Result<String> {
    let out = run(args)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let detail = stderr.trim();
        return Err(CliError::Failed(format!(
            "git {} failed: {}",
            args.first().copied().unwrap_or(""),
            if detail.is_empty() {
                "no message"
            } else {
                detail
            }
        ))
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the current directory is inside a git repository (a work tree or a bare one).
pub fn in_repository() -> Result<bool> {
    Ok(run(&["rev-parse", "--git-dir"])?.status.success())
}

/// The repository's remote names.
fn remote_names() -> Result<Vec<String>> {
    Ok(run_ok(&["remote"])?
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// The app named by the current repository's `caas` remote, if there is one. Any failure (no
/// git, not a repository, no such remote, a URL that names no app) is just "none".
pub fn remote_app() -> Option<String> {
    let key = format!("remote.{DEFAULT_REMOTE}.url");
    let out = run(&["config", "--get", "--", &key]).ok()?;
    if !out.status.success() {
        return None;
    }
    app_from_remote_url(String::from_utf8_lossy(&out.stdout).trim())
}

/// `http(s)://SERVER[/PREFIX]/APP.git[/]` → `APP`, when APP is a valid app name.
pub fn app_from_remote_url(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    let last = parsed.path().trim_end_matches('/').rsplit('/').next()?;
    let app = last.strip_suffix(".git")?;
    caas_api::validate_app_name(app).ok()?;
    Some(app.to_string())
}

/// After `apps:rename OLD NEW`: the current repository's `caas` remote, when it names OLD,
/// names NEW on the same server (as Heroku does). `Ok(None)`: nothing to update (no git, no
/// repository, no such remote, or it names another app).
pub fn follow_rename(old: &str, new: &str) -> Result<Option<String>> {
    if remote_app().as_deref() != Some(old) {
        return Ok(None);
    }
    let key = format!("remote.{DEFAULT_REMOTE}.url");
    let url = run_ok(&["config", "--get", "--", &key])?;
    let Some(url) = renamed_remote_url(url.trim(), new) else {
        return Ok(None);
    };
    run_ok(&["remote", "set-url", "--", DEFAULT_REMOTE, &url])?;
    Ok(Some(url))
}

/// `SERVER[/PREFIX]/OLD.git[/]` → `SERVER[/PREFIX]/NEW.git`.
fn renamed_remote_url(url: &str, new: &str) -> Option<String> {
    let (base, _) = url.trim_end_matches('/').rsplit_once('/')?;
    Some(format!("{base}/{new}.git"))
}

/// `SERVER/APP.git`: where git pushes. Holds no credentials.
pub fn remote_url(server: &str, app: &str) -> String {
    format!("{}/{app}.git", normalize_server(server))
}

/// Remote names git would accept, narrowed to what is safe to show and pass around.
pub fn check_remote_name(name: &str) -> Result<(), CliError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['.', '/'])
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(CliError::usage(format!(
            "invalid remote name {name:?}: use letters, digits, '-', '_' and '.'"
        )))
    }
}

/// Quotes `s` for a POSIX shell: git runs `!` credential helpers with `sh -c`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What `caas git:remote` writes into the repository's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePlan {
    pub remote: String,
    pub url: String,
    /// `credential.SERVER.helper`
    pub helper_key: String,
    /// `!'/path/to/caas' git:credential`
    pub helper: String,
    /// `credential.SERVER.username`
    pub username_key: String,
}

/// The remote and credential settings for `app` on the configured server. Only the server's URL
/// and the path of this executable go in; the token is not even an input.
pub fn plan(server: &str, app: &str, remote: &str, exe: &str) -> RemotePlan {
    let server = normalize_server(server);
    RemotePlan {
        remote: remote.to_string(),
        url: remote_url(&server, app),
        helper_key: format!("credential.{server}.helper"),
        helper: format!("!{} git:credential", shell_quote(exe)),
        username_key: format!("credential.{server}.username"),
    }
}

/// Adds or updates the remote and scopes the credential helper to the server's URL, in the
/// current repository's own config.
pub fn apply(plan: &RemotePlan) -> Result<()> {
    let verb = if remote_names()?.contains(&plan.remote) {
        "set-url"
    } else {
        "add"
    };
    run_ok(&["remote", verb, "--", &plan.remote, &plan.url])?;

    // An empty helper first resets the list of helpers from the global and system config for
    // this URL, so that a `credential.helper store` there never writes the token to a file
    // (git asks every helper to `store` a credential that worked). Then ours.
    let out = run(&["config", "--local", "--unset-all", "--", &plan.helper_key])?;
    // 5: there was nothing to unset.
    if !out.status.success() && out.status.code() != Some(5) {
        return Err(CliError::Failed(format!(
            "git config failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
        .into());
    }
    run_ok(&["config", "--local", "--add", "--", &plan.helper_key, ""])?;
    run_ok(&[
        "config",
        "--local",
        "--add",
        "--",
        &plan.helper_key,
        &plan.helper,
    ])?;
    run_ok(&[
        "config",
        "--local",
        "--replace-all",
        "--",
        &plan.username_key,
        GIT_USERNAME,
    ])?;
    Ok(())
}

/// What git tells a credential helper about the URL it needs a credential for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialRequest {
    pub protocol: Option<String>,
    /// `HOST` or `HOST:PORT`, as in the URL.
    pub host: Option<String>,
    /// Only sent with `credential.useHttpPath`; no leading slash.
    pub path: Option<String>,
}

/// Reads `key=value` lines until a blank line or the end. Unknown keys (username, wwwauth[],
/// capability[], ...) and lines without `=` are skipped.
pub fn read_request(input: impl BufRead) -> Result<CredentialRequest> {
    let mut req = CredentialRequest::default();
    for line in input.lines() {
        let line = line.context("reading the credential request from git")?;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        if line.is_empty() {
            break;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let slot = match key {
            "protocol" => &mut req.protocol,
            "host" => &mut req.host,
            "path" => &mut req.path,
            _ => continue,
        };
        *slot = Some(value.to_string());
    }
    Ok(req)
}

/// Whether git asks about the configured server: same scheme, host and port (an omitted port is
/// the scheme's default), and, when both say one, a path under the server's.
pub fn request_matches(req: &CredentialRequest, server: &str) -> bool {
    let (Some(protocol), Some(host)) = (&req.protocol, &req.host) else {
        return false;
    };
    let Ok(server) = reqwest::Url::parse(server) else {
        return false;
    };
    // The host is put into a URL only to have it normalised the same way (case, default ports):
    // nothing that could change how the URL parses may be in it.
    if host.is_empty()
        || host
            .chars()
            .any(|c| matches!(c, '/' | '\\' | '@' | '?' | '#') || c.is_whitespace())
    {
        return false;
    }
    let Ok(asked) = reqwest::Url::parse(&format!("{protocol}://{host}/")) else {
        return false;
    };
    let same_origin = asked.scheme() == server.scheme()
        && asked.host_str().is_some()
        && asked.host_str() == server.host_str()
        && asked.port_or_known_default() == server.port_or_known_default();
    if !same_origin {
        return false;
    }
    let prefix = server.path().trim_matches('/');
    match &req.path {
        Some(path) if !prefix.is_empty() => {
            let path = path.trim_start_matches('/');
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        }
        _ => true,
    }
}

/// The answer to `get`: the user name and the token when git asks about the configured server
/// and there is a token; nothing otherwise (git then tries its other means).
pub fn credential_answer(req: &CredentialRequest, settings: &Settings) -> Option<String> {
    if !request_matches(req, &settings.server) {
        return None;
    }
    let token = settings.token.as_deref()?;
    // A line break would end the answer early or add attributes.
    if token.is_empty() || token.contains(['\n', '\r', '\0']) {
        return None;
    }
    Some(format!("username={GIT_USERNAME}\npassword={token}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renamed_remote_keeps_its_server_and_prefix() {
        assert_eq!(
            renamed_remote_url("http://127.0.0.1:7000/shop.git", "store").as_deref(),
            Some("http://127.0.0.1:7000/store.git")
        );
        assert_eq!(
            renamed_remote_url("https://caas.example.com/git/shop.git/", "store").as_deref(),
            Some("https://caas.example.com/git/store.git")
        );
    }

    #[test]
    fn remote_urls_name_their_app() {
        for (url, app) in [
            ("http://127.0.0.1:7080/demo.git", "demo"),
            ("https://caas.example.com/demo.git", "demo"),
            ("https://caas.example.com/demo.git/", "demo"),
            ("http://host/prefix/my-app2.git", "my-app2"),
            ("http://host:7080/demo.git?x=1", "demo"),
        ] {
            assert_eq!(app_from_remote_url(url).as_deref(), Some(app), "{url}");
        }
    }

    #[test]
    fn remote_urls_without_a_valid_app_name_give_none() {
        for url in [
            "",
            "demo.git",
            "http://host/demo",
            "http://host/",
            "http://host/.git",
            "http://host/Demo.git",
            "http://host/a_b.git",
            "http://host/ab.git",
            "http://host/..%2Fetc.git",
            "http://host/x%0a.git",
            "ssh://git@host/demo.git",
            "git@host:demo.git",
            "file:///srv/demo.git",
        ] {
            assert_eq!(app_from_remote_url(url), None, "{url}");
        }
    }

    #[test]
    fn the_remote_url_is_the_server_and_the_app() {
        assert_eq!(
            remote_url("http://127.0.0.1:7080/", "demo"),
            "http://127.0.0.1:7080/demo.git"
        );
        assert_eq!(
            remote_url("https://h/caas", "demo"),
            "https://h/caas/demo.git"
        );
    }

    #[test]
    fn the_plan_never_holds_the_token() {
        let settings = Settings {
            server: "http://127.0.0.1:7080/".into(),
            token: Some("caas_s3cr3t_token".into()),
        };
        let p = plan(&settings.server, "demo", "caas", "/usr/local/bin/caas");
        assert_eq!(
            p,
            RemotePlan {
                remote: "caas".into(),
                url: "http://127.0.0.1:7080/demo.git".into(),
                helper_key: "credential.http://127.0.0.1:7080.helper".into(),
                helper: "!'/usr/local/bin/caas' git:credential".into(),
                username_key: "credential.http://127.0.0.1:7080.username".into(),
            }
        );
        let all = format!("{p:?}");
        assert!(!all.contains("s3cr3t"), "{all}");
        // The URL is exactly server + app: no user info at all.
        let url = reqwest::Url::parse(&p.url).unwrap();
        assert_eq!((url.username(), url.password()), ("", None));
    }

    #[test]
    fn helper_paths_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("/a b/caas"), "'/a b/caas'");
        assert_eq!(shell_quote("/it's/$(x)`y`"), r"'/it'\''s/$(x)`y`'");
        let p = plan("http://h:1", "demo", "caas", "/o'brien/caas");
        assert_eq!(p.helper, r"!'/o'\''brien/caas' git:credential");
    }

    #[test]
    fn remote_names_are_checked() {
        for good in ["caas", "caas-prod", "origin_2", "a.b"] {
            assert!(check_remote_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", ".x", "a..b", "a b", "a/b", "x.", "a\nb", "a:b"] {
            assert_eq!(check_remote_name(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }

    fn request(text: &str) -> CredentialRequest {
        read_request(text.as_bytes()).unwrap()
    }

    #[test]
    fn reads_the_request_until_a_blank_line() {
        let req = request(
            "protocol=http\nhost=127.0.0.1:7080\nusername=caas\nwwwauth[]=Basic realm=\"caas\"\npath=demo.git\n\nhost=evil\n",
        );
        assert_eq!(
            req,
            CredentialRequest {
                protocol: Some("http".into()),
                host: Some("127.0.0.1:7080".into()),
                path: Some("demo.git".into()),
            }
        );
        // EOF without a blank line, CRLF, junk lines.
        let req = request("junk\r\nprotocol=https\r\nhost=caas.example.com");
        assert_eq!(req.protocol.as_deref(), Some("https"));
        assert_eq!(req.host.as_deref(), Some("caas.example.com"));
        assert_eq!(request(""), CredentialRequest::default());
    }

    fn settings(server: &str) -> Settings {
        Settings {
            server: server.into(),
            token: Some("caas_tok".into()),
        }
    }

    #[test]
    fn answers_only_for_the_configured_server() {
        let s = settings("http://127.0.0.1:7080");
        let yes = request("protocol=http\nhost=127.0.0.1:7080\n");
        assert_eq!(
            credential_answer(&yes, &s).as_deref(),
            Some("username=caas\npassword=caas_tok\n")
        );
        for no in [
            "protocol=http\nhost=127.0.0.1:7081\n",
            "protocol=http\nhost=127.0.0.1\n",
            "protocol=https\nhost=127.0.0.1:7080\n",
            "protocol=http\nhost=127.0.0.2:7080\n",
            "protocol=http\nhost=evil@127.0.0.1:7080\n",
            "protocol=http\nhost=127.0.0.1:7080/x\n",
            "host=127.0.0.1:7080\n",
            "protocol=http\n",
            "",
        ] {
            assert_eq!(credential_answer(&request(no), &s), None, "{no:?}");
        }
    }

    #[test]
    fn default_ports_and_host_case_match() {
        let s = settings("https://Caas.Example.com");
        for yes in [
            "protocol=https\nhost=caas.example.com\n",
            "protocol=https\nhost=caas.example.com:443\n",
            "protocol=https\nhost=CAAS.example.com\npath=demo.git\n",
        ] {
            assert!(request_matches(&request(yes), &s.server), "{yes:?}");
        }
        assert!(!request_matches(
            &request("protocol=https\nhost=caas.example.com:8443\n"),
            &s.server
        ));
    }

    #[test]
    fn a_server_path_must_prefix_a_given_path() {
        let server = "http://h:1/caas";
        assert!(request_matches(
            &request("protocol=http\nhost=h:1\npath=caas/demo.git\n"),
            server
        ));
        assert!(request_matches(
            &request("protocol=http\nhost=h:1\n"),
            server
        ));
        assert!(!request_matches(
            &request("protocol=http\nhost=h:1\npath=other/demo.git\n"),
            server
        ));
        assert!(!request_matches(
            &request("protocol=http\nhost=h:1\npath=caasx/demo.git\n"),
            server
        ));
    }

    #[test]
    fn no_token_or_a_broken_one_answers_nothing() {
        let req = request("protocol=http\nhost=h:1\n");
        let mut s = settings("http://h:1");
        s.token = None;
        assert_eq!(credential_answer(&req, &s), None);
        s.token = Some("a\npassword=other".into());
        assert_eq!(credential_answer(&req, &s), None);
    }
}
