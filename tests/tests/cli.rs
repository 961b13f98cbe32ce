//! The CLI's own habits, end to end: what it does with a closed stdout, a wrong server address, a
//! missing app name, a terminal, and the Heroku shortcuts users type without thinking.

use caas_e2e::{test_image, CmdOutput, Platform};
use std::process::{Command, Stdio};

/// Runs `cmd` with its stdout on a pipe whose reading end is already closed, as when
/// `caas ... | head -1` has read its line and gone: every write the CLI makes fails with EPIPE.
fn run_into_closed_pipe(cmd: &mut Command) -> CmdOutput {
    let (reader, writer) = std::io::pipe().expect("cannot make a pipe");
    drop(reader);
    let out = cmd
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    CmdOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "piped"]);
    p.caas_ok(&["push", "--image", &test_image("piped"), "-a", "piped"]);
    for args in [
        &["releases", "-a", "piped", "--json"][..],
        &["releases", "-a", "piped"],
        &["builds", "-a", "piped", "--json"],
        &["builds", "-a", "piped"],
        &["apps", "--json"],
        &["apps"],
        &["apps:info", "-a", "piped", "--json"],
        &["apps:info", "-a", "piped"],
        &["ps", "-a", "piped", "--json"],
        &["ps", "-a", "piped"],
        &["config", "-a", "piped", "--json"],
        &["logs", "-a", "piped"],
        &["hosts", "--json"],
        &["hosts"],
        &["buildpacks", "--json"],
        &["buildpacks"],
        &["version", "--json"],
        &["version"],
    ] {
        let out = run_into_closed_pipe(&mut p.caas_command(args));
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (0, ""),
            "caas {} into a closed pipe\n{out}",
            args.join(" ")
        );
    }
}
