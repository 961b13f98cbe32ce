//! The CLI against a platform: `caas` with the platform's server and token and a home of its own.

use std::process::Command;
use std::time::Duration;

use super::{clear_caas_env, Platform};
use crate::binaries::binaries;
use crate::process::{run, CmdOutput};

/// How long one CLI command may take before the harness kills it and fails the test.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(180);

impl Platform {
    /// A `caas ARGS` command set up for this platform: `CAAS_SERVER`, `CAAS_TOKEN`, and HOME,
    /// XDG_CONFIG_HOME and CAAS_CONFIG inside the temp dir, so the real config is never touched.
    /// For what [`Platform::caas`] does not cover (stdin, a streaming `logs --tail`, other env).
    pub fn caas_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&binaries().caas);
        clear_caas_env(&mut cmd);
        cmd.args(args)
            .env("CAAS_SERVER", self.api_url())
            .env("CAAS_TOKEN", &self.token)
            .env("CAAS_CONFIG", self.home.join(".config/caas/config.json"))
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("NO_COLOR", "1");
        cmd
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
}
