//! `caasd`: the caas control plane (with an embedded agent), or `caasd agent` for extra hosts.
//!
//! `main` parses arguments and decides how errors print and which exit code they get; everything
//! else returns `anyhow::Result`.

mod agent;
mod api;
mod auth;
mod builder;
mod docker;
mod gateway;
mod git;
mod http;
mod logs;
mod observed;
mod schedule;
mod server;
mod store;

use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "caasd",
    version,
    about = "The caas control plane: API, scheduler, gateway, log hub and an embedded agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run only an agent, for an extra host that joins a control plane.
    Agent(AgentArgs),
}

/// An inclusive port range `LOW-HIGH`.
#[derive(Clone, Copy, Debug)]
pub struct PortRange(pub u16, pub u16);

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid port range {s:?}: use LOW-HIGH, e.g. 20000-29999");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if a < 1024 || a > b {
            return Err(bad());
        }
        Ok(PortRange(a, b))
    }
}

/// A duration with its unit (`90s`, `2m`, `1h 30m`), or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?} ({e}): use e.g. 90s or 2m"))
}

#[derive(Args)]
pub struct ServerArgs {
    /// Where the store, tokens and the embedded agent's identity live.
    #[arg(long, env = "CAAS_DATA_DIR", default_value = "/var/lib/caas")]
    pub data_dir: PathBuf,
    /// Address of the REST API (port 0 picks a free port; see DATA_DIR/caasd.json).
    #[arg(long, default_value = "127.0.0.1:7080")]
    pub api: SocketAddr,
    /// Address of the HTTP gateway apps are served on (port 0 picks a free port).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub gateway: SocketAddr,
    /// Apps are served at APP.DOMAIN; `localhost` needs no DNS set-up.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// Host ports the embedded agent publishes instances on.
    #[arg(long, default_value = "20000-29999")]
    pub port_range: PortRange,
    /// Largest instance count one process type may be scaled to.
    #[arg(long, default_value_t = 20)]
    pub max_scale: u32,
    /// Memory limit of each instance, in MB.
    #[arg(long, default_value_t = 512)]
    pub instance_memory: u64,
    /// Seconds an instance keeps running after it leaves the routes, for requests in flight.
    #[arg(long, default_value_t = 5)]
    pub drain_seconds: u64,
    /// How long a new release has to be up (every instance its formation asks for) before its
    /// rollout fails and the release before it keeps serving: `90s`, `2m` (a bare number is
    /// seconds).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub start_timeout: std::time::Duration,
    /// Seconds without a heartbeat after which a host is lost and its instances move.
    #[arg(long, default_value_t = 15)]
    pub lost_after: u64,
    /// Largest image upload accepted, in MB.
    #[arg(long, default_value_t = 8192)]
    pub max_image_upload: u64,
    /// Address the embedded agent publishes instances on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host_address: IpAddr,
    /// Name of this host in `caas hosts` and `caas ps`.
    #[arg(long, default_value = "local")]
    pub host_name: String,
    /// Run without the embedded agent (instances then run only on `caasd agent` hosts).
    #[arg(long)]
    pub no_agent: bool,
    /// Folder of buildpacks, one folder each (default: CAAS_BUILDPACKS, then
    /// /usr/local/share/caas/buildpacks, then the source tree's buildpacks/ next to a dev build).
    #[arg(long, env = "CAAS_BUILDPACKS")]
    pub buildpacks: Option<PathBuf>,
    /// Image builds run in and built apps are laid on (stack/build.sh makes it).
    #[arg(long, default_value = "caas/stack:latest")]
    pub stack_image: String,
    /// Memory limit of a build container, in MB.
    #[arg(long, default_value_t = 2048)]
    pub build_memory: u64,
    /// Builds of different apps that may run at once (one app builds one at a time).
    #[arg(long, default_value_t = 2)]
    pub build_concurrency: usize,
    /// Largest build upload accepted, in MB.
    #[arg(long, default_value_t = 1024)]
    pub max_upload_mb: u64,
    /// Largest total size an upload may unpack to, in MB.
    #[arg(long, default_value_t = 1024)]
    pub max_unpacked_mb: u64,
    /// Most entries (files, folders, links) an upload may hold.
    #[arg(long, default_value_t = 100_000)]
    pub max_archive_entries: u64,
    /// Largest unpacked:compressed ratio an upload may have (past its first 16 MB).
    #[arg(long, default_value_t = 200)]
    pub max_compression_ratio: u64,
}

#[derive(Args)]
pub struct AgentArgs {
    /// The control plane's API URL, e.g. http://10.0.0.1:7080
    #[arg(long, env = "CAAS_AGENT_SERVER")]
    pub server: String,
    /// The cluster's join token (the server's DATA_DIR/join-token); needed on first start only.
    #[arg(long, env = "CAAS_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// Read the join token from this file instead.
    #[arg(long, conflicts_with = "join_token")]
    pub join_token_file: Option<PathBuf>,
    #[arg(
        long,
        env = "CAAS_AGENT_DATA_DIR",
        default_value = "/var/lib/caas-agent"
    )]
    pub data_dir: PathBuf,
    /// This host's address: instances are published here and the gateway connects to it.
    #[arg(long)]
    pub address: IpAddr,
    /// This host's name in the cluster.
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value = "20000-29999")]
    pub port_range: PortRange,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,hyper=warn,bollard=warn,sled=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("caasd: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Agent(args)) => server::run_agent(args).await,
            None => server::run_server(cli.server).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("caasd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
