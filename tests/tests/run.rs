//! One-off processes (`caas run`): stdin and stdout streamed without a terminal, the process's
//! exit status as the CLI's, an interactive terminal (driven through a pty made by `script`),
//! `--detach` with its output in `caas logs --ps run.N`, one-offs in `caas ps` while they run
//! and gone when they end or their app is destroyed, and the bad input.

use caas_e2e::{run, test_image, Platform};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);

/// A platform with `app` deployed from the busybox test image (sh, cat, sleep...).
fn deployed(app: &str) -> Platform {
    let p = Platform::start();
    p.caas_ok(&["apps:create", app]);
    p.caas_ok(&["push", "--image", &test_image("one-off"), "-a", app]);
    p
}

/// `caas run -a APP -- sh -c SCRIPT`.
fn sh(p: &Platform, app: &str, script: &str) -> caas_e2e::CmdOutput {
    p.caas(&["run", "-a", app, "--", "sh", "-c", script])
}

/// The one-off containers the engine has (running or not).
fn one_off_containers(p: &Platform) -> Vec<caas_e2e::Container> {
    p.containers()
        .into_iter()
        .filter(|c| c.instance.starts_with("run."))
        .collect()
}

fn one_off_names(p: &Platform, app: &str) -> Vec<String> {
    p.ps(app)
        .iter()
        .filter(|i| i["process"] == "run")
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_one_off_streams_stdin_and_stdout_and_exits_with_the_process_status() {
    let p = deployed("oneoff");
    let out = run(
        &mut p.caas_command(&["run", "-a", "oneoff", "--", "cat"]),
        Some(b"hi\nthere\n"),
        WAIT,
    );
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "hi\nthere\n", "{out}");

    let out = sh(&p, "oneoff", "echo out; echo err >&2; exit 7");
    assert_eq!(out.code, 7, "the process's status is caas run's: {out}");
    assert_eq!(out.stdout, "out\n");
    assert!(out.stderr.contains("err"), "{out}");
    assert!(
        !out.stderr.contains("error:"),
        "an exit status is not an error: {out}"
    );

    // The release's config reaches it, and it knows which one-off it is.
    p.caas_ok(&["config:set", "GREETING=from config", "-a", "oneoff"]);
    let out = sh(
        &p,
        "oneoff",
        "echo \"$GREETING|$CAAS_PROCESS|$CAAS_INSTANCE\"",
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.starts_with("from config|run|run."), "{out}");

    // Finished one-offs are gone: from ps and from the engine.
    assert!(one_off_names(&p, "oneoff").is_empty());
    let leftovers = one_off_containers(&p);
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_detached_one_off_logs_its_output_and_is_listed_while_it_runs() {
    let p = deployed("detach");
    let out = p.caas_ok(&[
        "run",
        "--detach",
        "-a",
        "detach",
        "--",
        "sh",
        "-c",
        "echo detached says hello",
    ]);
    let name = out
        .split("up, ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run.N in {out}"))
        .to_string();
    assert!(name.starts_with("run."), "{out}");
    let logs = p.wait_for(WAIT, "the detached output in the logs", || {
        let logs = p.caas_ok(&["logs", "-a", "detach", "--ps", &name]);
        logs.contains(&format!("{name} exited with status 0"))
            .then_some(logs)
    });
    assert!(logs.contains("detached says hello"), "{logs}");
    assert!(!one_off_names(&p, "detach").contains(&name));

    // One that keeps running is listed by ps, as run.N, up.
    let out = p.caas_ok(&["run", "-d", "-a", "detach", "--", "sleep", "600"]);
    assert!(out.contains("up, run."), "{out}");
    let ps = p.ps("detach");
    let runs: Vec<_> = ps.iter().filter(|i| i["process"] == "run").collect();
    assert_eq!(runs.len(), 1, "{ps:?}");
    assert_eq!(runs[0]["state"], "up");
    assert_eq!(runs[0]["release"], 1);
    let table = p.caas_ok(&["ps", "-a", "detach"]);
    assert!(table.contains("run."), "{table}");

    // Destroying the app kills its one-offs, detached and attached: the attached client ends.
    let mut attached = p
        .caas_command(&[
            "run",
            "-a",
            "detach",
            "--",
            "sh",
            "-c",
            "echo ready; sleep 600",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 5];
    attached
        .stdout
        .take()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    assert_eq!(&first, b"ready");
    assert_eq!(one_off_names(&p, "detach").len(), 2);
    p.caas_ok(&["apps:destroy", "-a", "detach", "--confirm", "detach"]);
    let status = p.wait_for(WAIT, "the attached one-off's client to end", || {
        attached.try_wait().unwrap()
    });
    assert!(!status.success(), "{status:?}");
    let leftovers = one_off_containers(&p);
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn an_interactive_one_off_gets_a_terminal_and_ctrl_c() {
    let p = deployed("tty");
    // `script` gives caas a pseudo-terminal on both stdin and stdout.
    let caas = p.caas_command(&[]);
    let mut cmd = Command::new("script");
    cmd.args(["-qec"])
        .arg(format!(
            "{} run -a tty -- sh -c 'tty; echo ready; sleep 600'",
            caas_e2e::binaries().caas.display()
        ))
        .arg("/dev/null")
        .envs(caas.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("script(1) runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let deadline = Instant::now() + WAIT;
    // The process's own line, not the command caas echoes first (which has "echo ready" in it).
    while !seen.contains("\nready") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(b) => seen.push_str(&String::from_utf8_lossy(&b)),
            Err(_) => {
                let _ = child.kill();
                panic!("no 'ready' from the one-off: {seen:?}\n{}", p.log_tail(40));
            }
        }
    }
    assert!(
        seen.contains("/dev/pts/"),
        "the process has a terminal: {seen:?}"
    );
    // Ctrl-C: the byte reaches the process's terminal, which interrupts it.
    stdin.write_all(&[3]).unwrap();
    stdin.flush().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("Ctrl-C did not end the one-off: {seen:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130), "interrupted by SIGINT: {seen:?}");
    p.wait_for(WAIT, "the interrupted one-off removed", || {
        one_off_names(&p, "tty").is_empty().then_some(())
    });
}

#[test]
fn bad_one_offs_are_refused_with_one_line() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "norelease"]);
    let out = p.caas_code(2, &["run", "-a", "norelease"]);
    assert!(out.stderr.contains("no command"), "{out}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");

    let out = p.caas_code(4, &["run", "-a", "nosuchapp", "--", "true"]);
    assert!(out.stderr.contains("nosuchapp"), "{out}");

    let out = p.caas_code(4, &["run", "-a", "norelease", "--", "true"]);
    assert!(out.stderr.contains("no release yet"), "{out}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
    let out = p.caas_code(4, &["run", "--detach", "-a", "norelease", "--", "true"]);
    assert!(out.stderr.contains("no release yet"), "{out}");
    // Nothing was started or recorded.
    assert!(p.ps("norelease").is_empty());
    assert!(p.containers().is_empty(), "{:?}", p.containers());
}
