//! The allowlists for names users choose. Names reach DNS labels, Docker container names, image
//! tags, file paths and git URLs, so they are validated against a small alphabet before anything
//! is built from them (Dokku's app-name code execution is the cautionary tale).

/// The one process type that takes HTTP traffic, and the one a bare image runs as.
pub const WEB: &str = "web";

use thiserror::Error;

/// Why a name was refused. The message states the rule, so the user can fix the name.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("invalid app name {0:?}: use 3 to 30 characters, lowercase letters, digits and dashes, starting with a letter and not ending with a dash")]
    App(String),
    #[error("invalid process type {0:?}: use 1 to 30 characters, lowercase letters, digits, '_' and '-', starting with a letter")]
    Process(String),
    #[error("invalid config key {0:?}: use letters, digits and '_', not starting with a digit, at most 200 characters")]
    ConfigKey(String),
    #[error("config key {0:?} is set by caas itself and cannot be changed")]
    ReservedConfigKey(String),
    #[error("invalid user name {0:?}: use 2 to 32 characters, lowercase letters, digits, '.', '_' and '-', starting with a letter")]
    User(String),
}

pub const APP_NAME_MAX: usize = 30;

/// `^[a-z][a-z0-9-]{1,28}[a-z0-9]$`
pub fn validate_app_name(name: &str) -> Result<(), NameError> {
    let b = name.as_bytes();
    let ok = (3..=APP_NAME_MAX).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(NameError::App(name.to_string()))
    }
}

/// `^[a-z][a-z0-9._-]{1,31}$`
pub fn validate_user_name(name: &str) -> Result<(), NameError> {
    let b = name.as_bytes();
    let ok = (2..=32).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(NameError::User(name.to_string()))
    }
}

/// `^[a-z][a-z0-9_-]{0,29}$`
pub fn validate_process_type(name: &str) -> Result<(), NameError> {
    let b = name.as_bytes();
    let ok = (1..=30).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(NameError::Process(name.to_string()))
    }
}

/// `^[A-Za-z_][A-Za-z0-9_]{0,199}$`, and not one the platform sets (`PORT`, `CAAS_*`).
pub fn validate_config_key(key: &str) -> Result<(), NameError> {
    let b = key.as_bytes();
    let ok = (1..=200).contains(&b.len())
        && !b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if !ok {
        return Err(NameError::ConfigKey(key.to_string()));
    }
    if key == "PORT" || key.starts_with("CAAS_") {
        return Err(NameError::ReservedConfigKey(key.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        for good in ["abc", "my-app", "a1-2b", "x23456789012345678901234567890"] {
            assert_eq!(validate_app_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "ab",
            "Abc",
            "1abc",
            "-abc",
            "abc-",
            "a_b",
            "a.b",
            "a b",
            "ab/c",
            "../x",
            "x234567890123456789012345678901",
            "ábc",
            "abc\n",
        ] {
            assert!(validate_app_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn process_types() {
        for good in ["web", "worker", "w", "clock_2", "queue-high"] {
            assert_eq!(validate_process_type(good), Ok(()), "{good}");
        }
        for bad in ["", "Web", "1web", "web.1", "we b", "w;rm"] {
            assert!(validate_process_type(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_keys() {
        for good in ["A", "DATABASE_URL", "_x", "lower_ok1"] {
            assert_eq!(validate_config_key(good), Ok(()), "{good}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "$(x)"] {
            assert_eq!(
                validate_config_key(bad),
                Err(NameError::ConfigKey(bad.into()))
            );
        }
        assert!(matches!(
            validate_config_key("PORT"),
            Err(NameError::ReservedConfigKey(_))
        ));
        assert!(matches!(
            validate_config_key("CAAS_APP"),
            Err(NameError::ReservedConfigKey(_))
        ));
    }
}
