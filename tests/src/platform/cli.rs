//! The CLI against a platform: `caas` with the platform's server and token and a home of its own,
//! and git with the same environment (its credential helper is `caas git:credential`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::{clear_caas_env, Platform};
use crate::binaries::binaries;
use crate::process::{run, CmdOutput};

/// How long one CLI command may take before the harness kills it and fails the test.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(180);
/// How long one git command may take: longer than [`CLI_TIMEOUT`] because a `git push` builds
/// from source and waits for the release's verdict, on a machine that runs other tests too.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(300);

impl Platform {
    /// A `caas ARGS` command set up for this platform: `CAAS_SERVER`, `CAAS_TOKEN`, and HOME,
    /// XDG_CONFIG_HOME and CAAS_CONFIG inside the temp dir, so the real config is never touched.
    /// For what [`Platform::caas`] does not cover (stdin, a streaming `logs --tail`, other env).
    pub fn caas_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&binaries().caas);
        self.cli_env(&mut cmd);
        cmd.args(args);
        cmd
    }

    /// The environment of [`Platform::caas_command`], for the CLI and for what runs it (git).
    fn cli_env(&self, cmd: &mut Command) {
        clear_caas_env(cmd);
        cmd.env("CAAS_SERVER", self.api_url())
            .env("CAAS_TOKEN", &self.token)
            .env("CAAS_CONFIG", self.home.join(".config/caas/config.json"))
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("NO_COLOR", "1");
    }

    /// Runs `caas ARGS` (timeout 180 s).
    pub fn caas(&self, args: &[&str]) -> CmdOutput {
        run(&mut self.caas_command(args), None, CLI_TIMEOUT)
    }

    /// Runs `caas ARGS`, panics unless it exits 0, returns its stdout.
    pub fn caas_ok(&self, args: &[&str]) -> String {
        let out = self.caas(args);
        if out.code != 0 {
            panic!(
                "caas {} failed\n{out}\n{}",
                args.join(" "),
                self.log_report()
            );
        }
        out.stdout
    }

    /// Runs `caas ARGS`, panics unless it exits with `code`, returns the output.
    pub fn caas_code(&self, code: i32, args: &[&str]) -> CmdOutput {
        let out = self.caas(args);
        if out.code != code {
            panic!(
                "caas {}: expected exit code {code}\n{out}\n{}",
                args.join(" "),
                self.log_report()
            );
        }
        out
    }

    /// Runs `caas ARGS` (add `--json` yourself), panics unless it exits 0 with JSON on stdout.
    pub fn caas_json(&self, args: &[&str]) -> serde_json::Value {
        let stdout = self.caas_ok(args);
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "caas {}: stdout is not JSON ({e}):\n{stdout}",
                args.join(" ")
            )
        })
    }

    /// Runs `caas ARGS` inside `dir` (timeout 180 s): for what the CLI reads from the current
    /// directory, such as the app named by a git remote, or `push` of `.`.
    pub fn caas_in(&self, dir: &Path, args: &[&str]) -> CmdOutput {
        let mut cmd = self.caas_command(args);
        cmd.current_dir(dir);
        run(&mut cmd, None, CLI_TIMEOUT)
    }

    /// `caas ps -a APP --json`: one object per instance.
    pub fn ps(&self, app: &str) -> Vec<Value> {
        match self.caas_json(&["ps", "-a", app, "--json"]) {
            Value::Array(instances) => instances,
            other => panic!("caas ps -a {app} --json is not an array: {other}"),
        }
    }

    /// One line per instance of `app`, in `caas ps`'s order, such as `web.1 v1 up`: compare it
    /// with a whole list to check a formation in one assertion.
    pub fn states(&self, app: &str) -> Vec<String> {
        self.ps(app).iter().map(state_line).collect()
    }

    // --- git ---------------------------------------------------------------------------------

    /// `git ARGS` in `dir` with the environment [`Platform::caas_command`] gives the CLI, so
    /// that git's credential helper (`caas git:credential`) finds the server and the token; no
    /// system or user git config of the machine (HOME is the platform's), no prompts, and a
    /// fixed author so commits need no setup.
    pub fn git_command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("git");
        self.cli_env(&mut cmd);
        cmd.current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .args(args);
        cmd
    }

    /// Runs [`Platform::git_command`] (timeout [`GIT_TIMEOUT`]).
    pub fn git(&self, dir: &Path, args: &[&str]) -> CmdOutput {
        run(&mut self.git_command(dir, args), None, GIT_TIMEOUT)
    }

    /// Runs `git ARGS` in `dir`, panics unless it succeeds, returns the output.
    pub fn git_ok(&self, dir: &Path, args: &[&str]) -> CmdOutput {
        let out = self.git(dir, args);
        if !out.success() {
            panic!(
                "git {} failed\n{out}\n{}",
                args.join(" "),
                self.log_report()
            );
        }
        out
    }
}

/// `web.1 v1 up` for one instance of `caas ps --json`. Strings without their quotes; anything
/// else (a release number, a missing field's `null`) as JSON.
fn state_line(instance: &Value) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    format!(
        "{} v{} {}",
        text(&instance["name"]),
        text(&instance["release"]),
        text(&instance["state"])
    )
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn a_state_line_names_instance_release_and_state() {
        let ps = serde_json::json!([
            {"name": "web.1", "release": 3, "state": "up", "host": "local"},
            {"name": "worker.1", "release": 2, "state": "crashed"},
            {"name": "web.2"},
        ]);
        let lines: Vec<String> = ps.as_array().unwrap().iter().map(state_line).collect();
        assert_eq!(
            lines,
            ["web.1 v3 up", "worker.1 v2 crashed", "web.2 vnull null"]
        );
    }
}
