//! `ps:resize`: a process type's memory limit, memory reservation and CPU cap, as Heroku's dyno
//! sizes, Dokku's `resource:limit`/`resource:reserve` or Kubernetes' limits and requests. A change makes a release that replaces the instances (waited for like
//! `config:set`).

use super::{client, AppArg};
use crate::app::resolve_app;
use crate::deploy::{wait_until_up, WaitArgs, Waited};
use crate::error::CliError;
use crate::output::{format_mb, note, sanitize, say};
use anyhow::Result;
use caas_api::{Resize, Resources};
use clap::Args;

#[derive(Debug, Args)]
pub struct ResizeArgs {
    /// The process type, e.g. web
    process: String,
    /// Memory limit of each instance: 256M, 1G (a bare number is MB)
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    memory: Option<u64>,
    /// Memory reserved for each instance on its host, what placement counts (at most the
    /// limit): 64M, 256M
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    reserve: Option<u64>,
    /// CPU cap of each instance, in cores: 0.5, 1, 2
    #[arg(long, value_name = "CORES", value_parser = parse_cpus)]
    cpu: Option<f64>,
    #[command(flatten)]
    app: AppArg,
    #[command(flatten)]
    wait: WaitArgs,
}

/// `512M`, `1G`, `1.5G`, `256` (MB) → MB.
fn parse_memory(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let (number, factor) = match lower.trim_end_matches("ib").trim_end_matches('b') {
        n if n.ends_with('g') => (n.trim_end_matches('g').to_string(), 1024.0),
        n if n.ends_with('m') => (n.trim_end_matches('m').to_string(), 1.0),
        n => (n.to_string(), 1.0),
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok((n * factor).round() as u64),
        _ => Err(format!("{t:?} is not a size: give one such as 256M or 1G")),
    }
}

fn parse_cpus(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err(format!(
            "{text:?} is not a number of cores: give one such as 0.5 or 2"
        )),
    }
}

pub fn resize(args: ResizeArgs) -> Result<()> {
    if args.memory.is_none() && args.cpu.is_none() && args.reserve.is_none() {
        return Err(CliError::usage(
            "give --memory SIZE and/or --cpu CORES, and/or --reserve SIZE, e.g. caas ps:resize web --memory 1G --reserve 256M",
        )
        .into());
    }
    caas_api::validate_process_type(&args.process).map_err(|e| CliError::usage(e.to_string()))?;
    let app = resolve_app(args.app.app)?;
    let client = client()?;
    let result: Resize = client.put(
        &format!("/v1/apps/{app}/resources/{}", args.process),
        &Resources {
            memory_mb: args.memory,
            reserve_mb: args.reserve,
            cpus: args.cpu,
        },
    )?;
    let what = describe(&result.resources);
    let process = sanitize(&result.process);
    match (result.changed, result.release, args.wait.timeout()) {
        (false, _, _) => say(&format!("{process} of {app} already has {what}")),
        (true, None, _) => say(&format!(
            "{process} of {app} gets {what} from its first release"
        )),
        (true, Some(v), None) => say(&format!(
            "Resizing {process} of {app} to {what}... v{v} deploying"
        )),
        (true, Some(v), Some(timeout)) => {
            if let Waited::Superseded(newer) = wait_until_up(&client, &app, v, timeout)? {
                note(&format!(
                    "v{v} was replaced by v{newer} before it came up; caas releases -a {app} shows how v{newer} goes"
                ));
                return Ok(());
            }
            say(&format!("Resized {process} of {app} to {what}: v{v} is up"))
        }
    }
}

/// `1.0 GiB memory, 0.5 CPU` (what is set; the defaults are not known here).
fn describe(r: &Resources) -> String {
    let mut parts = Vec::new();
    if let Some(mb) = r.memory_mb {
        parts.push(format!("{} memory", format_mb(mb)));
    }
    if let Some(mb) = r.reserve_mb {
        parts.push(format!("{} reserved", format_mb(mb)));
    }
    if let Some(c) = r.cpus {
        parts.push(format!("{c} CPU"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_cores_parse_or_say_why() {
        for (text, mb) in [
            ("256M", 256),
            ("1G", 1024),
            ("1.5g", 1536),
            ("512", 512),
            ("2GiB", 2048),
            ("64MB", 64),
        ] {
            assert_eq!(parse_memory(text), Ok(mb), "{text}");
        }
        for bad in ["", "-1G", "lots", "0"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_cpus("0.5"), Ok(0.5));
        assert!(parse_cpus("-1").is_err() && parse_cpus("x").is_err() && parse_cpus("0").is_err());
    }
}
