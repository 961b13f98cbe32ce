//! Which app a command acts on.

use crate::config::process_env;
use crate::error::CliError;
use anyhow::Result;

/// The app named by `-a/--app`, else by `CAAS_APP`. This is the one place that decides, so finding
/// the app from a `caas` git remote can be added here as the next fallback.
///
/// The name is checked against the app-name rules before it is put into any URL path.
pub fn resolve_app(explicit: Option<String>) -> Result<String> {
    resolve_app_from(explicit, process_env("CAAS_APP"))
}

fn resolve_app_from(explicit: Option<String>, from_env: Option<String>) -> Result<String> {
    let app = explicit
        .filter(|a| !a.is_empty())
        .or(from_env)
        .ok_or_else(|| CliError::usage("no app given: pass -a APP"))?;
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

    #[test]
    fn explicit_wins_over_env() {
        assert_eq!(
            resolve_app_from(Some("demo".into()), Some("other".into())).unwrap(),
            "demo"
        );
        assert_eq!(
            resolve_app_from(None, Some("other".into())).unwrap(),
            "other"
        );
    }

    #[test]
    fn missing_or_invalid_is_a_usage_error() {
        let err = resolve_app_from(None, None).unwrap_err();
        assert_eq!(err.to_string(), "no app given: pass -a APP");
        assert_eq!(code(resolve_app_from(None, None)), 2);
        assert_eq!(code(resolve_app_from(Some("../etc".into()), None)), 2);
        assert_eq!(code(resolve_app_from(Some("Demo".into()), None)), 2);
    }
}
