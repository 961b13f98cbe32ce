//! `run`: a one-off process of the app's current release, like `heroku run`. Attached, it is an
//! HTTP upgrade of `POST /v1/apps/APP/runs` carrying frames (`caas_api::run::Frame`): with a
//! terminal on both ends the local one goes into raw mode (Ctrl-C reaches the process through
//! its terminal) and its size follows the window; without one, stdin and stdout are streamed.
//! The process's exit status is the CLI's.

use super::{client, AppArg};
use crate::app::resolve_app;
use crate::client::{api_error, Client};
use crate::error::CliError;
use anyhow::{Context, Result};
use caas_api::run::{Frame, RunRequest, RunStarted, RUN_NAME_HEADER, RUN_PROTOCOL};
use clap::Args;
use std::io::{IsTerminal, Read, Write};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    app: AppArg,
    /// Return at once; the output goes to `caas logs --ps run.N`
    #[arg(short, long)]
    detach: bool,
    /// No terminal for the process, even when this one is a terminal
    #[arg(long)]
    no_tty: bool,
    /// The command and its arguments, after `--` (one argument is run by a shell)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
}

pub fn run(args: RunArgs) -> Result<()> {
    if args.command.is_empty() || args.command[0].trim().is_empty() {
        return Err(
            CliError::usage("no command: give one after --, e.g. caas run -a APP -- bash").into(),
        );
    }
    let app = resolve_app(args.app.app)?;
    let client = client()?;
    let shown = args.command.join(" ");
    if args.detach {
        let req = RunRequest {
            command: args.command,
            tty: false,
            detach: true,
            cols: None,
            rows: None,
            term: None,
        };
        let started: RunStarted = client.post(&format!("/v1/apps/{app}/runs"), &req)?;
        let name = &started.name;
        crate::output::say(&format!("Running `{shown}` on {app}... up, {name}"))?;
        crate::output::say(&format!(
            "Run caas logs -a {app} --ps {name} to see its output."
        ))?;
        return Ok(());
    }
    let tty = !args.no_tty && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let size = if tty { terminal::size() } else { None };
    let req = RunRequest {
        command: args.command,
        tty,
        detach: false,
        cols: size.map(|s| s.0),
        rows: size.map(|s| s.1),
        term: std::env::var("TERM").ok(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the I/O runtime")?;
    let code = runtime.block_on(attached(&client, &app, &shown, req))?;
    if code != 0 {
        return Err(CliError::Exit(code).into());
    }
    Ok(())
}

async fn attached(client: &Client, app: &str, shown: &str, req: RunRequest) -> Result<i32> {
    let http = reqwest::Client::builder()
        // The upgrade is HTTP/1.1's.
        .http1_only()
        .connect_timeout(std::time::Duration::from_secs(10))
        .user_agent(concat!("caas-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("setting up the HTTP client")?;
    let mut post = http
        .post(format!("{}/v1/apps/{app}/runs", client.server()))
        .header(reqwest::header::CONNECTION, "upgrade")
        .header(reqwest::header::UPGRADE, RUN_PROTOCOL)
        .json(&req);
    if let Some(token) = client.token() {
        post = post.bearer_auth(token);
    }
    let resp = post.send().await.map_err(|e| client.failed_transport(e))?;
    let status = resp.status();
    if status != reqwest::StatusCode::SWITCHING_PROTOCOLS {
        let body = resp.bytes().await.unwrap_or_default();
        return Err(api_error(status, &body).into());
    }
    let name = resp
        .headers()
        .get(RUN_NAME_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("run")
        .to_string();
    let conn = resp
        .upgrade()
        .await
        .map_err(|e| client.failed_transport(e))?;
    if std::io::stderr().is_terminal() {
        eprintln!("Running `{shown}` on {app}... up, {name}");
    }
    // Raw mode from here until the guard drops, whatever happens.
    let _raw = if req.tty { terminal::raw() } else { None };
    session(conn, req.tty).await
}

/// Bridges this terminal (or pipes) and the connection until the process's exit status arrives.
async fn session(conn: reqwest::Upgraded, tty: bool) -> Result<i32> {
    let (mut from_server, mut to_server) = tokio::io::split(conn);
    let (stdin_tx, mut stdin_rx) = mpsc::channel::<Option<Vec<u8>>>(16);
    // A plain thread: a blocking read of stdin cannot be cancelled, and the process exits
    // without waiting for it.
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = stdin_tx.blocking_send(None);
                    return;
                }
                Ok(n) => {
                    if stdin_tx.blocking_send(Some(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut winch = terminal::window_changes(tty);
    let mut stdin_open = true;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let lost = || {
        CliError::Failed("the connection to the server was lost; the process was stopped".into())
    };
    loop {
        tokio::select! {
            input = stdin_rx.recv(), if stdin_open => {
                let frame = match input.flatten() {
                    Some(data) => Frame::Stdin(data),
                    None => {
                        stdin_open = false;
                        Frame::StdinEnd
                    }
                };
                to_server.write_all(&frame.encode()).await.map_err(|_| lost())?;
            }
            Some(()) = winch.recv() => {
                if let Some((cols, rows)) = terminal::size() {
                    let frame = Frame::Resize { cols, rows };
                    to_server.write_all(&frame.encode()).await.map_err(|_| lost())?;
                }
            }
            read = from_server.read(&mut chunk) => {
                let n = read.map_err(|_| lost())?;
                if n == 0 {
                    return Err(lost().into());
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(frame) = Frame::decode(&mut buf).map_err(|e| {
                    CliError::Failed(format!("the server sent something caas does not understand: {e}"))
                })? {
                    match frame {
                        Frame::Stdout(data) => {
                            let mut out = std::io::stdout().lock();
                            out.write_all(&data)?;
                            out.flush()?;
                        }
                        Frame::Stderr(data) => {
                            let mut err = std::io::stderr().lock();
                            let _ = err.write_all(&data);
                            let _ = err.flush();
                        }
                        Frame::Exit(code) => return Ok(code),
                        Frame::Error(message) => return Err(CliError::Failed(message).into()),
                        Frame::Stdin(_) | Frame::StdinEnd | Frame::Resize { .. } => {}
                    }
                }
            }
        }
    }
}

/// The local terminal: raw mode, its size, and its window changes.
mod terminal {
    use tokio::sync::mpsc;

    /// Puts stdin's terminal back as it was when dropped.
    pub struct Raw {
        saved: libc::termios,
    }

    impl Drop for Raw {
        fn drop(&mut self) {
            // SAFETY: restores the attributes read from the same descriptor.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved);
            }
        }
    }

    /// Raw mode: keys (Ctrl-C included) go to the process's terminal as bytes, unechoed.
    pub fn raw() -> Option<Raw> {
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(Raw { saved })
        }
    }

    /// `(columns, rows)` of stdout's terminal.
    pub fn size() -> Option<(u16, u16)> {
        // SAFETY: winsize is plain data; the ioctl fills it or fails.
        unsafe {
            let mut ws: libc::winsize = std::mem::zeroed();
            if libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) != 0 || ws.ws_col == 0 {
                return None;
            }
            Some((ws.ws_col, ws.ws_row))
        }
    }

    /// A message per SIGWINCH while `tty`; never one otherwise.
    pub fn window_changes(tty: bool) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel(1);
        if tty {
            use tokio::signal::unix::{signal, SignalKind};
            if let Ok(mut s) = signal(SignalKind::window_change()) {
                tokio::spawn(async move {
                    while s.recv().await.is_some() {
                        let _ = tx.try_send(());
                    }
                });
            }
        }
        rx
    }
}
