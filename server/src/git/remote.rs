//! Repositories on a git host that caasd clones over HTTPS (`caas git:connect`): checking that
//! one can be read, and fetching a pushed commit into the app's own repository, where
//! [`Repos::export`] makes the builder's tarball of it exactly as for a `git push`.

use super::{GitError, Repos};

/// How long connecting to, or waiting on, a git host may take.
const TIMEOUT_MS: i32 = 30_000;

/// Why a repository could not be read, in words a user can act on.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RemoteError {
    #[error("{url}: authentication failed: the host refused the deploy token (or wants one); connect again with a token that may read the repository")]
    Auth { url: String },
    #[error(
        "{url}: repository not found: check the URL (a private repository needs a deploy token)"
    )]
    NotFound { url: String },
    #[error("{url}: the host could not be reached ({why}); check the URL and that caasd's host can reach it")]
    Network { url: String, why: String },
    #[error("{url} has no branch {branch:?}")]
    NoBranch { url: String, branch: String },
    #[error("{url}: {why}")]
    Other { url: String, why: String },
}

/// Who to clone as: a token alone is the HTTP password (GitHub, Gitea take any user name);
/// `USER:TOKEN` names the user too (a GitLab deploy token has one).
pub fn credentials(token: &str) -> (String, String) {
    match token.split_once(':') {
        Some((user, pass)) if !user.is_empty() => (user.to_string(), pass.to_string()),
        _ => ("caas".to_string(), token.to_string()),
    }
}

/// What libgit2 said, as one of [`RemoteError`]'s cases.
fn classify(url: &str, e: &git2::Error) -> RemoteError {
    let text = e.message().to_string();
    let lower = text.to_lowercase();
    let url = url.to_string();
    if e.code() == git2::ErrorCode::Auth
        || lower.contains("authentication")
        || lower.contains("status code: 401")
        || lower.contains("status code: 403")
        || lower.contains("too many redirects or authentication replays")
    {
        RemoteError::Auth { url }
    } else if lower.contains("status code: 404") || lower.contains("not found") {
        RemoteError::NotFound { url }
    } else if matches!(
        e.class(),
        git2::ErrorClass::Net | git2::ErrorClass::Os | git2::ErrorClass::Ssl
    ) || lower.contains("failed to connect")
        || lower.contains("failed to resolve")
        || lower.contains("timed out")
    {
        RemoteError::Network { url, why: text }
    } else {
        RemoteError::Other { url, why: text }
    }
}

fn callbacks(token: Option<&str>) -> git2::RemoteCallbacks<'static> {
    let mut cb = git2::RemoteCallbacks::new();
    let cred = token.map(credentials);
    let mut asked = false;
    cb.credentials(move |_url, _user, _allowed| {
        // libgit2 asks again after every 401: once is an answer, twice is a refusal.
        match (&cred, asked) {
            (Some((user, pass)), false) => {
                asked = true;
                git2::Cred::userpass_plaintext(user, pass)
            }
            _ => Err(git2::Error::new(
                git2::ErrorCode::Auth,
                git2::ErrorClass::Http,
                "authentication required",
            )),
        }
    });
    cb
}

fn set_timeouts() {
    // SAFETY: process-wide libgit2 settings, set to the same values by every caller.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(TIMEOUT_MS);
        let _ = git2::opts::set_server_timeout_in_milliseconds(TIMEOUT_MS);
    }
}

/// The commit `branch` points at on the host: proves the repository can be read.
pub fn head_of(url: &str, branch: &str, token: Option<&str>) -> Result<String, RemoteError> {
    set_timeouts();
    let mut remote = git2::Remote::create_detached(url).map_err(|e| classify(url, &e))?;
    let conn = remote
        .connect_auth(git2::Direction::Fetch, Some(callbacks(token)), None)
        .map_err(|e| classify(url, &e))?;
    let want = format!("refs/heads/{branch}");
    let heads = conn.list().map_err(|e| classify(url, &e))?;
    heads
        .iter()
        .find(|h| h.name() == want)
        .map(|h| h.oid().to_string())
        .ok_or_else(|| RemoteError::NoBranch {
            url: url.to_string(),
            branch: branch.to_string(),
        })
}

impl Repos {
    /// Fetches `branch` from `url` into the app's repository (under `refs/remotes/caas/`, which
    /// the push endpoint's advertisement does not show), and checks that `commit` arrived.
    pub fn fetch_remote(
        &self,
        app: &str,
        url: &str,
        branch: &str,
        token: Option<&str>,
        commit: &str,
    ) -> Result<(), FetchError> {
        set_timeouts();
        let repo = self.open_or_create(app)?;
        let mut remote = repo.remote_anonymous(url)?;
        let mut options = git2::FetchOptions::new();
        options.remote_callbacks(callbacks(token));
        let refspec = format!("+refs/heads/{branch}:refs/remotes/caas/{branch}");
        remote
            .fetch(&[refspec.as_str()], Some(&mut options), None)
            .map_err(|e| FetchError::Remote(classify(url, &e)))?;
        let oid = git2::Oid::from_str(commit).map_err(|_| GitError::NoCommit(commit.into()))?;
        repo.find_commit(oid).map_err(|_| {
            FetchError::Remote(RemoteError::Other {
                url: url.to_string(),
                why: format!("commit {commit} is not on branch {branch} any more (pushed over?)"),
            })
        })?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Local(#[from] GitError),
}

impl From<git2::Error> for FetchError {
    fn from(e: git2::Error) -> Self {
        Self::Local(GitError::Git(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_user_when_they_have_one() {
        assert_eq!(credentials("ghp_abc"), ("caas".into(), "ghp_abc".into()));
        assert_eq!(
            credentials("gitlab+deploy-token-1:xyz"),
            ("gitlab+deploy-token-1".into(), "xyz".into())
        );
        assert_eq!(credentials(":xyz"), ("caas".into(), ":xyz".into()));
    }

    #[test]
    fn unreachable_and_missing_repositories_say_why() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing listens on port 1 of loopback.
        let e = head_of("http://127.0.0.1:1/x.git", "main", None).unwrap_err();
        assert!(matches!(e, RemoteError::Network { .. }), "{e:?}");
        let missing = format!("file://{}/none.git", dir.path().display());
        assert!(head_of(&missing, "main", None).is_err());
    }
}
