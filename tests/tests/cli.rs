//! The CLI's own habits, end to end: what it does with a closed stdout, a wrong server address, a
//! missing app name, a terminal, and the Heroku shortcuts users type without thinking.

use caas_e2e::{run, test_image, CmdOutput, Platform, CLI_TIMEOUT};
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

#[test]
fn version_prints_the_client_and_exits_6_when_the_server_cannot_be_reached() {
    let p = Platform::start();
    let unreachable = |args: &[&str]| {
        run(
            p.caas_command(args)
                .env("CAAS_SERVER", "http://127.0.0.1:9"),
            None,
            CLI_TIMEOUT,
        )
    };
    let out = unreachable(&["version"]);
    assert_eq!(out.code, 6, "{out}");
    assert_eq!(
        out.stdout.trim(),
        format!("client: {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(out.stderr.contains("cannot reach"), "{out}");
    let out = unreachable(&["version", "--json"]);
    assert_eq!(out.code, 6, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["client"], env!("CARGO_PKG_VERSION"), "{out}");
    assert!(json["server"].is_null(), "{out}");

    let out = p.caas_ok(&["version"]);
    assert!(
        out.contains(&format!("server: {}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
}

#[test]
fn the_gateway_given_as_the_server_is_named_as_such_with_exit_6() {
    let p = Platform::start();
    let gateway = format!("http://{}", p.gateway());
    for args in [
        &["apps"][..],
        &["apps:info", "-a", "demo"],
        &["ps", "-a", "demo"],
        &["version"],
        &["login", "--server", &gateway, "--token", p.token()],
    ] {
        let out = run(
            p.caas_command(args).env("CAAS_SERVER", &gateway),
            None,
            CLI_TIMEOUT,
        );
        assert_eq!(out.code, 6, "caas {}\n{out}", args.join(" "));
        let err = out.stderr.trim();
        assert_eq!(err.lines().count(), 1, "{out}");
        // The address as given, port and all, then what to use instead.
        assert!(
            err.contains(&format!("{gateway} is caas's gateway")),
            "{out}"
        );
        assert!(err.contains("--api"), "{out}");
    }
}
