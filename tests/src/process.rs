//! Running processes: a command to completion with its output captured and a timeout, and
//! polling until something holds.

use std::fmt;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How often [`wait_until`] and `Platform::wait_for` poll: often enough that a test does not
/// idle, seldom enough that polling `caas` or Docker does not load the machine.
const POLL: Duration = Duration::from_millis(200);

/// What a finished command left.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// The exit code; -1 when the process was killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "exit code: {}", self.code)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

/// Runs `cmd` to completion with `stdin` as its input (none: /dev/null), capturing its output.
/// Panics when it cannot be started or runs longer than `timeout` (it is killed then).
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> CmdOutput {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let writer = match (stdin, child.stdin.take()) {
        (Some(input), Some(mut pipe)) => {
            let input = input.to_vec();
            Some(thread::spawn(move || {
                let _ = pipe.write_all(&input);
            }))
        }
        _ => None,
    };
    let stdout = reader_thread(child.stdout.take());
    let stderr = reader_thread(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let out = CmdOutput {
        code: status.and_then(|s| s.code()).unwrap_or(-1),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    if status.is_none() {
        panic!("{cmd:?} did not finish within {timeout:?}; killed it\n{out}");
    }
    out
}

fn reader_thread<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Waits up to `timeout` for `child` (spawned with its stdout and stderr piped) and collects its
/// output; `None` when it had to be killed. Unlike [`run`] it never panics, for callers such as
/// `require_docker` that turn a failure into a message of their own.
pub(crate) fn wait_output(mut child: Child, timeout: Duration) -> Option<CmdOutput> {
    let stdout = reader_thread(child.stdout.take());
    let stderr = reader_thread(child.stderr.take());
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Some(CmdOutput {
                    code: status.code().unwrap_or(-1),
                    stdout: stdout.join().unwrap_or_default(),
                    stderr: stderr.join().unwrap_or_default(),
                })
            }
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Polls `f` every 200 ms until it returns `Some`, or panics after `timeout` saying `what`.
pub fn wait_until<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    poll(timeout, f).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// [`wait_until`] without the panic: `None` on timeout, so that callers can say more.
pub(crate) fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL);
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn run_feeds_stdin_and_captures_both_outputs_and_the_code() {
        let out = run(
            Command::new("sh").args(["-c", "cat; echo oops >&2; exit 3"]),
            Some(b"fed in"),
            Duration::from_secs(30),
        );
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (3, "fed in", "oops\n")
        );
        assert!(!out.success());
    }

    // A hung command must fail its test, not hang it: the harness kills it at the timeout.
    #[test]
    #[should_panic(expected = "did not finish within")]
    fn run_kills_a_command_past_its_timeout_and_panics() {
        run(
            Command::new("sleep").arg("30"),
            None,
            Duration::from_millis(200),
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a\nb", 5), "a\nb");
        assert_eq!(tail("", 3), "");
    }
}
