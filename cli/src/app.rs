//! Which app a command acts on.

use crate::config::process_env;
use crate::error::CliError;
use anyhow::Result;

/// The app named by `-a/--app`, else by `CAAS_APP`, else by the current git repository's remote
/// named `caas` (`.../APP.git`, as `caas git:remote` sets it). This is the one place that decides.
///
/// The name is checked against the app-name rules before it is put into any URL path.
pub fn resolve_app(explicit: Option<String>) -> Result<String> {
    resolve_app_from(explicit, process_env("CAAS_APP"), crate::git::remote_app)
}

/// `from_remote` is only asked when neither the flag nor the environment names an app, so git
/// runs only when it is needed.
fn resolve_app_from(
    explicit: Option<String>,
    from_env: Option<String>,
    from_remote: impl FnOnce() -> Option<String>,
) -> Result<String> {
    let app = explicit
        .filter(|a| !a.is_empty())
        .or(from_env)
        .or_else(from_remote)
        .ok_or_else(|| {
            CliError::usage(
                "no app given: pass -a APP, set CAAS_APP, or run caas git:remote -a APP in your repository",
            )
        })?;
    check_app_name(&app)?;
    Ok(app)
}

/// The server's own rule and message, checked early so that a bad name fails fast (exit 2) and
/// never reaches a URL.
pub fn check_app_name(name: &str) -> Result<()> {
    caas_api::validate_app_name(name).map_err(|e| CliError::usage(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<String>) -> i32 {
        r.unwrap_err()
            .downcast_ref::<CliError>()
            .unwrap()
            .exit_code()
    }

    fn no_remote() -> Option<String> {
        None
    }

    #[test]
    fn explicit_wins_over_env_and_env_over_the_remote() {
        let remote = || Some("from-git".to_string());
        assert_eq!(
            resolve_app_from(Some("demo".into()), Some("other".into()), remote).unwrap(),
            "demo"
        );
        assert_eq!(
            resolve_app_from(None, Some("other".into()), remote).unwrap(),
            "other"
        );
        assert_eq!(resolve_app_from(None, None, remote).unwrap(), "from-git");
        assert_eq!(
            resolve_app_from(Some(String::new()), None, remote).unwrap(),
            "from-git"
        );
    }

    #[test]
    fn the_remote_is_not_asked_when_not_needed() {
        let asked = || -> Option<String> { panic!("git was run") };
        resolve_app_from(Some("demo".into()), None, asked).unwrap();
        resolve_app_from(None, Some("demo".into()), asked).unwrap();
    }

    #[test]
    fn missing_or_invalid_is_a_usage_error() {
        let err = resolve_app_from(None, None, no_remote).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no app given: pass -a APP, set CAAS_APP, or run caas git:remote -a APP in your repository"
        );
        assert_eq!(code(resolve_app_from(None, None, no_remote)), 2);
        assert_eq!(
            code(resolve_app_from(Some("../etc".into()), None, no_remote)),
            2
        );
        assert_eq!(
            code(resolve_app_from(Some("Demo".into()), None, no_remote)),
            2
        );
    }
}
