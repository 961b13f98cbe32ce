//! Where the CLI finds its server and token: environment first, then the saved config file.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7080";

/// The saved credentials file (`config.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// What a command uses to reach the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub server: String,
    pub token: Option<String>,
}

/// Reads one environment variable; tests pass their own so they never touch the process env.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `$CAAS_CONFIG`, else `$XDG_CONFIG_HOME/caas/config.json`, else `~/.config/caas/config.json`.
/// `None` only when there is no home directory to put it in.
pub fn config_path(env: Env) -> Option<PathBuf> {
    if let Some(p) = env("CAAS_CONFIG") {
        return Some(PathBuf::from(p));
    }
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(xdg) = env("XDG_CONFIG_HOME").filter(|x| Path::new(x).is_absolute()) {
        return Some(Path::new(&xdg).join("caas").join("config.json"));
    }
    env("HOME").map(|home| {
        Path::new(&home)
            .join(".config")
            .join("caas")
            .join("config.json")
    })
}

/// A missing file is an empty config; a file that exists but cannot be read or parsed is an
/// error, so a typo in it is not silently replaced by defaults.
pub fn load(path: &Path) -> Result<ConfigFile> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("reading {}: not a caas config file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the file so that the token is never readable by others, not even for a moment: a new
/// file created 0600 in the same directory, then renamed over the old one.
pub fn save(path: &Path, config: &ConfigFile) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut json = serde_json::to_vec_pretty(config)?;
    json.push(b'\n');
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config"),
        std::process::id()
    ));
    let written = (|| -> std::io::Result<()> {
        let _ = fs::remove_file(&tmp);
        let mut f = private_file(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.with_context(|| format!("writing {}", path.display()))
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// `CAAS_SERVER` and `CAAS_TOKEN` win over the file, each on its own, so a script can point a
/// logged-in user's CLI at another server without touching the saved token (and the other way).
pub fn resolve(env: Env, file: &ConfigFile) -> Settings {
    let server = env("CAAS_SERVER")
        .or_else(|| file.server.clone())
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());
    let token = env("CAAS_TOKEN").or_else(|| file.token.clone());
    Settings {
        server: normalize_server(&server),
        token: token
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()),
    }
}

/// Loads the settings from the real environment and config file.
pub fn settings() -> Result<Settings> {
    let file = match config_path(&process_env) {
        Some(path) => load(&path)?,
        None => ConfigFile::default(),
    };
    Ok(resolve(&process_env, &file))
}

/// API paths are appended to the server URL, so a trailing slash would double up.
pub fn normalize_server(server: &str) -> String {
    server.trim().trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned().filter(|v| !v.is_empty())
    }

    #[test]
    fn round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("caas").join("config.json");
        let cfg = ConfigFile {
            server: Some("http://example.test:7080".into()),
            token: Some("caas_secret".into()),
        };
        save(&path, &cfg).unwrap();
        assert_eq!(load(&path).unwrap(), cfg);

        // Saving again replaces the file rather than failing on the existing one.
        let cfg2 = ConfigFile {
            token: None,
            ..cfg.clone()
        };
        save(&path, &cfg2).unwrap();
        assert_eq!(load(&path).unwrap(), cfg2);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
        }
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn missing_file_is_empty_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        assert_eq!(load(&path).unwrap(), ConfigFile::default());
        fs::write(&path, "not json").unwrap();
        assert!(load(&path).is_err());
    }

    #[test]
    fn config_path_precedence() {
        let env = env_of(&[
            ("CAAS_CONFIG", "/c/config.json"),
            ("XDG_CONFIG_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(config_path(&env), Some("/c/config.json".into()));
        let env = env_of(&[("XDG_CONFIG_HOME", "/xdg"), ("HOME", "/home/u")]);
        assert_eq!(config_path(&env), Some("/xdg/caas/config.json".into()));
        let env = env_of(&[("XDG_CONFIG_HOME", "relative"), ("HOME", "/home/u")]);
        assert_eq!(
            config_path(&env),
            Some("/home/u/.config/caas/config.json".into())
        );
        assert_eq!(config_path(&env_of(&[])), None);
    }

    #[test]
    fn env_overrides_file_each_value_on_its_own() {
        let file = ConfigFile {
            server: Some("http://file:7080/".into()),
            token: Some("file-token".into()),
        };
        let none = env_of(&[]);
        assert_eq!(
            resolve(&none, &file),
            Settings {
                server: "http://file:7080".into(),
                token: Some("file-token".into())
            }
        );

        let server_only = env_of(&[("CAAS_SERVER", "http://env:1")]);
        assert_eq!(
            resolve(&server_only, &file),
            Settings {
                server: "http://env:1".into(),
                token: Some("file-token".into())
            }
        );

        let both = env_of(&[("CAAS_SERVER", "http://env:1"), ("CAAS_TOKEN", "env-token")]);
        assert_eq!(
            resolve(&both, &file),
            Settings {
                server: "http://env:1".into(),
                token: Some("env-token".into())
            }
        );

        // An empty variable counts as unset, like most tools treat it.
        let empty = env_of(&[("CAAS_TOKEN", "")]);
        assert_eq!(resolve(&empty, &file).token, Some("file-token".into()));
    }

    #[test]
    fn default_server_when_nothing_is_configured() {
        let s = resolve(&env_of(&[]), &ConfigFile::default());
        assert_eq!(s.server, DEFAULT_SERVER);
        assert_eq!(s.token, None);
    }
}
