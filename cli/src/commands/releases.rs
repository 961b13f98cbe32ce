//! `releases` and `rollback`: an app's release history, and going back to an earlier release.

use super::{client, AppArg, JsonArg};
use crate::app::resolve_app;
use crate::deploy::{wait_until_up, WaitArgs, Waited};
use crate::error::CliError;
use crate::output::{age, format_ts, print_json, print_table, sanitize, say};
use anyhow::Result;
use caas_api::{Release, ReleaseStatus, RollbackRequest};
use clap::Args;

#[derive(Debug, Args)]
pub struct ReleasesArgs {
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    json: JsonArg,
}

pub fn list(args: ReleasesArgs) -> Result<()> {
    let name = resolve_app(args.app.app)?;
    let client = client()?;
    let releases: Vec<Release> = client.get(&format!("/v1/apps/{name}/releases"))?;
    if args.json.json {
        return print_json(&releases);
    }
    if releases.iter().any(|r| r.canary) {
        if let Some(c) = super::canary::running(&client, &name)? {
            super::canary::print_side_by_side(&c)?;
        }
    }
    if releases.is_empty() {
        return say(&format!(
            "No releases yet. Deploy one with: caas push -a {name}"
        ));
    }
    let rows: Vec<Vec<String>> = releases
        .iter()
        .map(|r| {
            vec![
                format!("v{}", r.version),
                status(r),
                r.description.clone(),
                r.image.clone(),
                format!("{} ago", age(r.created_at)),
            ]
        })
        .collect();
    print_table(
        &["VERSION", "STATUS", "DESCRIPTION", "IMAGE", "CREATED"],
        &rows,
    )
}

/// `current`, `deploying`, `failed: web.1 crashed on start`, `superseded`; older releases that
/// served once show nothing.
fn status(r: &Release) -> String {
    match (r.status, r.current) {
        (_, true) => "current".into(),
        _ if r.canary => "canary".into(),
        (ReleaseStatus::Succeeded, false) => String::new(),
        (ReleaseStatus::Failed, false) => match &r.error {
            Some(why) => format!("failed: {why}"),
            None => "failed".into(),
        },
        (other, false) => other.as_str().into(),
    }
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The release to go back to, as caas releases lists it (v3 or 3) [default: the release
    /// before the current one]
    #[arg(value_name = "RELEASE")]
    version: Option<String>,
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    wait: WaitArgs,
}

/// `caas rollback [vN]`: a new release with vN's image, process types and config; no rebuild.
/// Like a push, it waits for the new release to be up.
pub fn rollback(args: RollbackArgs) -> Result<()> {
    let version = args.version.as_deref().map(parse_version).transpose()?;
    let name = resolve_app(args.app.app)?;
    let client = client()?;
    let release: Release = client.post(
        &format!("/v1/apps/{name}/rollback"),
        &RollbackRequest { version },
    )?;
    let target = version.or_else(|| rollback_target(&release.description));
    let to = target.map_or_else(String::new, |v| format!(" to v{v}"));
    match args.wait.timeout() {
        None => say(&format!(
            "Rolling back {name}{to}... v{} deploying",
            release.version
        )),
        Some(timeout) => match wait_until_up(&client, &name, release.version, timeout)? {
            Waited::Up => say(&format!(
                "Rolling back {name}{to}... done, v{}",
                release.version
            )),
            Waited::Superseded(newer) => say(&format!(
                "Rolling back {name}{to}... v{} was replaced by v{newer} before it came up",
                release.version
            )),
        },
    }
}

/// `v3`, `V3` or `3` → 3. Releases count from 1.
pub fn parse_version(text: &str) -> Result<u64, CliError> {
    let digits = text.strip_prefix(['v', 'V']).unwrap_or(text);
    match digits.parse::<u64>() {
        Ok(v) if v > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(v),
        _ => Err(CliError::usage(format!(
            "invalid release {:?}: use vN or N, as caas releases lists them",
            sanitize(text)
        ))),
    }
}

/// The server describes a rollback release as `Rollback to vN`; without a version given, that is
/// where to learn which release it went back to.
fn rollback_target(description: &str) -> Option<u64> {
    description
        .strip_prefix("Rollback to v")
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_with_or_without_v() {
        assert_eq!(parse_version("v3").unwrap(), 3);
        assert_eq!(parse_version("3").unwrap(), 3);
        assert_eq!(parse_version("V12").unwrap(), 12);
        for bad in [
            "",
            "v",
            "v0",
            "0",
            "-1",
            "+3",
            "v+3",
            "3.0",
            "vv3",
            "v3x",
            "three",
            " 3",
            "v 3",
            "99999999999999999999999",
        ] {
            let err = parse_version(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
        assert_eq!(
            parse_version("x").unwrap_err().to_string(),
            "invalid release \"x\": use vN or N, as caas releases lists them"
        );
    }

    #[test]
    fn the_target_comes_from_the_description() {
        assert_eq!(rollback_target("Rollback to v2"), Some(2));
        assert_eq!(rollback_target("Deploy image x"), None);
        assert_eq!(rollback_target("Rollback to vx"), None);
    }
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The release, as caas releases lists it (v3 or 3)
    #[arg(value_name = "RELEASE")]
    version: String,
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    json: JsonArg,
}

/// `caas releases:info vN`: one release in full (config keys, never values).
pub fn info(args: InfoArgs) -> Result<()> {
    let version = parse_version(&args.version)?;
    let name = resolve_app(args.app.app)?;
    let r: Release = client()?.get(&format!("/v1/apps/{name}/releases/{version}"))?;
    if args.json.json {
        return print_json(&r);
    }
    let state = match status(&r) {
        s if s.is_empty() => r.status.as_str().to_string(),
        s => s,
    };
    let types: Vec<&str> = r.process_types.keys().map(String::as_str).collect();
    let lines = [
        format!("=== {name} v{}", r.version),
        format!("Status:       {state}"),
        format!("Description:  {}", r.description),
        format!("Image:        {}", r.image),
        format!("Image id:     {}", r.image_id),
        format!(
            "Created:      {} ({} ago)",
            format_ts(r.created_at),
            age(r.created_at)
        ),
        format!("By:           {}", r.created_by.as_deref().unwrap_or("-")),
        format!(
            "Build:        {}",
            r.build.map_or_else(|| "-".to_string(), |b| b.to_string())
        ),
        format!("Processes:    {}", types.join(", ")),
        format!(
            "Config keys:  {}",
            if r.config_keys.is_empty() {
                "-".to_string()
            } else {
                r.config_keys.join(", ")
            }
        ),
    ];
    let text: Vec<String> = lines.iter().map(|l| sanitize(l)).collect();
    say(&text.join("\n"))
}
