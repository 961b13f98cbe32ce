//! `completions SHELL` and `man DIR`: shell completions and man pages generated from the clap
//! definitions, so they always match the commands (install.sh installs both).

use crate::error::CliError;
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to print completions for
    shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Where to write caas.1 and one caas-COMMAND.1 per command
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// Prints the completion script for `shell` on stdout.
pub fn completions(args: CompletionsArgs, mut cmd: clap::Command) -> Result<()> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "caas", &mut out);
    std::io::stdout()
        .write_all(&out)
        .context("writing the completions")
}

/// Writes `caas.1` and one page per command (`caas-ps:scale.1`) into `dir`.
pub fn man(args: ManArgs, cmd: clap::Command) -> Result<()> {
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| CliError::usage(format!("cannot create {}: {e}", args.dir.display())))?;
    let mut written = 0;
    let mut write = |name: String, page: clap::Command| -> Result<()> {
        let mut out = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut out)
            .with_context(|| format!("rendering {name}"))?;
        let path = args.dir.join(format!("{name}.1"));
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
        written += 1;
        Ok(())
    };
    let cmd = cmd.version(env!("CARGO_PKG_VERSION"));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // clap takes a command's name as &'static str; this process ends right after.
        let name: &'static str = Box::leak(format!("caas-{}", sub.get_name()).into_boxed_str());
        write(name.to_string(), sub.clone().name(name))?;
    }
    write("caas".into(), cmd.clone())?;
    crate::output::say(&format!(
        "Wrote {written} man pages to {}",
        args.dir.display()
    ))
}
