//! The CLI's own habits, end to end: what it does with a closed stdout, a wrong server address, a
//! missing app name, a terminal, and the Heroku shortcuts users type without thinking.

use caas_e2e::{run, temp_dir_with, test_image, CmdOutput, Platform, CLI_TIMEOUT};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

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
        &["ps:scale", "-a", "piped"],
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

#[test]
fn apps_create_picks_a_name_and_apps_are_named_positionally_too() {
    let p = Platform::start();

    // Without a name, apps:create picks one that keeps to the app-name rule, and says which.
    let out = p.caas_ok(&["apps:create"]);
    let picked = out
        .strip_prefix("Created ")
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("no name in {out:?}"))
        .to_string();
    let parts: Vec<&str> = picked.split('-').collect();
    assert_eq!(parts.len(), 3, "{picked}");
    assert!(parts[2].bytes().all(|b| b.is_ascii_digit()), "{picked}");
    let apps = p.caas_json(&["apps", "--json"]);
    assert_eq!(apps[0]["name"], picked.as_str(), "{apps}");
    let out = p.caas_ok(&["apps:create"]);
    assert!(
        !out.contains(&picked),
        "a second app got the same name: {out}"
    );

    // The app as a positional argument or with -a, not both.
    p.caas_ok(&["apps:create", "named"]);
    let info = p.caas_ok(&["apps:info", "named"]);
    assert!(info.starts_with("=== named"), "{info}");
    assert!(info.contains("Release:    none"), "{info}");
    assert_eq!(p.caas_ok(&["info", "-a", "named"]), info);
    p.caas_code(2, &["apps:info", "named", "-a", "other"]);
    let out = p.caas_code(2, &["apps:destroy", "named"]);
    assert!(out.stderr.contains("--confirm named"), "{out}");
    p.caas_ok(&["apps:destroy", "named", "--confirm", "named"]);
    p.caas_code(4, &["apps:info", "named"]);

    // No app given anywhere: the message names every way to give one.
    let outside = temp_dir_with(&[]);
    let out = run(
        p.caas_command(&["ps"]).current_dir(outside.path()),
        None,
        CLI_TIMEOUT,
    );
    assert_eq!(out.code, 2, "{out}");
    for way in ["-a APP", "CAAS_APP", "caas git:remote -a APP"] {
        assert!(out.stderr.contains(way), "{way}: {out}");
    }
}

#[test]
fn ps_scale_shows_and_changes_the_formation_and_ps_says_why_nothing_runs() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "scaly"]);

    // No release yet, yet web is wanted: ps says what is missing instead of suggesting a scale.
    p.caas_ok(&["ps:scale", "web=2", "-a", "scaly"]);
    let ps = p.caas_ok(&["ps", "-a", "scaly"]);
    assert!(ps.contains("no release yet"), "{ps}");
    assert!(ps.contains("caas push -a scaly"), "{ps}");
    assert!(!ps.contains("ps:scale"), "{ps}");

    // ps:scale alone shows the formation; relative counts build on it and never go below 0.
    assert_eq!(p.caas_ok(&["ps:scale", "-a", "scaly"]).trim(), "web=2");
    assert_eq!(
        p.caas_ok(&["ps:scale", "web+1", "-a", "scaly"]).trim(),
        "Scaled scaly: web=3"
    );
    assert_eq!(
        p.caas_ok(&["scale", "web-2", "-a", "scaly"]).trim(),
        "Scaled scaly: web=1"
    );
    let out = p.caas_code(2, &["ps:scale", "web-2", "-a", "scaly"]);
    assert!(out.stderr.contains("below 0"), "{out}");
    assert_eq!(p.caas_ok(&["ps:scale", "-a", "scaly"]).trim(), "web=1");

    // Released and scaled to 0: now scaling up is the answer, and ps says so.
    p.caas_ok(&["push", "--image", &test_image("scaly"), "-a", "scaly"]);
    p.caas_ok(&["ps:scale", "web-1", "-a", "scaly"]);
    p.wait_for(WAIT, "ps to be empty", || {
        let ps = p.caas_json(&["ps", "-a", "scaly", "--json"]);
        ps.as_array().unwrap().is_empty().then_some(())
    });
    let ps = p.caas_ok(&["ps", "-a", "scaly"]);
    assert!(ps.contains("scaled to 0"), "{ps}");
    assert!(ps.contains("caas ps:scale web=1 -a scaly"), "{ps}");
}

/// An app whose web is wanted but that no host can run: ps lists the instance as pending with
/// why, instead of "no instances" or a scale that is already set.
#[test]
fn ps_lists_an_instance_no_host_can_take_as_pending_with_why() {
    let p = Platform::start_with(&["--no-agent"]);
    p.caas_ok(&["apps:create", "stuck"]);
    p.caas_ok(&[
        "push",
        "--image",
        &test_image("stuck"),
        "-a",
        "stuck",
        "--no-wait",
    ]);
    // Once the scheduler has tried (its first pass after the push).
    let ps = p.wait_for(WAIT, "web.1 pending with its reason", || {
        let ps = p.caas_ok(&["ps", "-a", "stuck"]);
        ps.contains("web.1 v1 pending: no host is up").then_some(ps)
    });
    assert!(!ps.starts_with("No instances"), "{ps}");
    assert!(!ps.contains("ps:scale"), "{ps}");
}

/// A pseudo-terminal: the CLI sees a terminal on stdin, stdout and stderr.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

fn open_pty() -> Pty {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two new descriptors into the pointers; the other arguments may be
    // null (no name, default termios and window size).
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nothing else.
    unsafe {
        Pty {
            master: OwnedFd::from_raw_fd(master),
            slave: OwnedFd::from_raw_fd(slave),
        }
    }
}

fn echo_is_on(fd: &OwnedFd) -> bool {
    let mut termios = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: tcgetattr fills the struct on success, which is checked before it is read.
    let rc = unsafe { libc::tcgetattr(fd.as_raw_fd(), termios.as_mut_ptr()) };
    assert_eq!(rc, 0, "tcgetattr: {}", std::io::Error::last_os_error());
    // SAFETY: initialised by the successful tcgetattr above.
    unsafe { termios.assume_init() }.c_lflag & libc::ECHO != 0
}

#[test]
fn login_asks_for_the_token_on_a_terminal_without_echoing_it() {
    let p = Platform::start();
    let pty = open_pty();
    let mut cmd = p.caas_command(&["login", "--server", p.api_url()]);
    cmd.env_remove("CAAS_TOKEN").env_remove("CAAS_SERVER");
    for fd in 0..3 {
        let io = Stdio::from(pty.slave.try_clone().unwrap());
        match fd {
            0 => cmd.stdin(io),
            1 => cmd.stdout(io),
            _ => cmd.stderr(io),
        };
    }
    let mut child = cmd.spawn().expect("cannot run caas login");
    // The command holds copies of the slave side; the read below ends only once all are closed.
    drop(cmd);

    // Everything the terminal shows, read as it comes; the read fails (EIO) once the CLI is gone
    // and the last copy of the slave side is closed.
    let screen = Arc::new(Mutex::new(Vec::new()));
    let mut master = std::fs::File::from(pty.master.try_clone().unwrap());
    let reader = {
        let screen = screen.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let shown = || String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();

    // The prompt appears and the terminal stops echoing before the token is typed.
    let deadline = Instant::now() + WAIT;
    while !shown().contains("Token") || echo_is_on(&pty.slave) {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!(
                "no hidden prompt for the token; the terminal shows:\n{}",
                shown()
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    let mut typing = std::fs::File::from(pty.master.try_clone().unwrap());
    std::io::Write::write_all(&mut typing, format!("{}\n", p.token()).as_bytes()).unwrap();

    let status = child.wait().unwrap();
    drop(pty.slave);
    reader.join().unwrap();
    let shown = shown();
    assert!(status.success(), "{status}; the terminal shows:\n{shown}");
    assert!(shown.contains("Logged in to"), "{shown}");
    assert!(!shown.contains(p.token()), "the token was echoed:\n{shown}");

    // Saved: the CLI works without CAAS_TOKEN now.
    let out = run(
        p.caas_command(&["apps"]).env_remove("CAAS_TOKEN"),
        None,
        CLI_TIMEOUT,
    );
    assert_eq!(out.code, 0, "{out}");

    // Without a terminal and without --token, it says how to pass one.
    let out = run(
        &mut p.caas_command(&["login", "--server", p.api_url()]),
        None,
        CLI_TIMEOUT,
    );
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("--token TOKEN"), "{out}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
}
