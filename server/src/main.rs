//! `caasd`: the caas control plane (with an embedded agent), or `caasd agent` for extra hosts.
//!
//! `main` parses arguments and decides how errors print and which exit code they get; everything
//! else returns `anyhow::Result`.

mod acme;
mod addons;
mod agent;
mod alerts;
mod api;
mod api_tls;
mod appjson;
mod auth;
mod autoscale;
mod builder;
mod canary;
mod dashboard;
mod docker;
mod free_space;
mod gateway;
mod git;
mod http;
mod labels;
mod leading;
mod logs;
mod memory;
mod metrics;
mod notify;
mod observed;
mod oneoff;
mod platform_cert;
mod rename;
mod routing;
mod schedule;
mod server;
mod store;
mod tls;
mod traffic;
mod units;
mod webhook;

use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use units::{parse_duration, parse_memory, Size};

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
    /// Run only the gateway (caasd starts one when none serves: this is for a service manager).
    Gateway(GatewayArgs),
    /// After caasd (or `caasd agent`) has stopped for good: stop this installation's containers
    /// (kept, for a reinstall) and remove its firewall chains. `install.sh --uninstall` runs it.
    Uninstall(UninstallArgs),
}

#[derive(Args)]
pub struct UninstallArgs {
    /// The data dir of the caasd (`/var/lib/caas`) or agent (`/var/lib/caas-agent`) to remove.
    #[arg(long, default_value = "/var/lib/caas")]
    pub data_dir: PathBuf,
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

#[derive(Args)]
pub struct ServerArgs {
    /// Where the store, tokens and the embedded agent's identity live.
    #[arg(long, env = "CAAS_DATA_DIR", default_value = "/var/lib/caas")]
    pub data_dir: PathBuf,
    /// Where the platform's records live: `sled` (DATA_DIR/db, nothing else to install), or
    /// `etcd://HOST:2379[,HOST:2379...][/PREFIX]`, shared by several caasd servers, of which
    /// one leads (runs the scheduler) and any serves the API.
    #[arg(long, env = "CAAS_STORE", default_value = "sled")]
    pub store: String,
    /// Address of the REST API (port 0 picks a free port; see DATA_DIR/caasd.json).
    #[arg(long, default_value = "127.0.0.1:7080")]
    pub api: SocketAddr,
    /// Address of the HTTP gateway apps are served on (port 0 picks a free port).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub gateway: SocketAddr,
    /// Address the gateway serves HTTPS on (e.g. 0.0.0.0:443; port 0 picks a free port):
    /// certificates are picked by SNI.
    #[arg(long)]
    pub https: Option<SocketAddr>,
    /// The platform's certificate (PEM chain, leaf first), normally a wildcard for *.DOMAIN,
    /// served for every name no app's certificate covers; without it caasd makes a self-signed
    /// one. Re-read when the file changes.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Public ports the gateway gives TCP routes from (caas ports:add tcp).
    #[arg(long, default_value = "10000-10999")]
    pub tcp_ports: PortRange,
    /// The ACME server's directory URL, where `caas certs:auto on` obtains certificates (an
    /// HTTP-01 challenge the gateway answers on --gateway, which must be reachable on port 80).
    #[arg(long, default_value = acme::LETS_ENCRYPT)]
    pub acme_directory: String,
    /// A PEM certificate to trust for the ACME server instead of the system's roots (a private
    /// ACME server's).
    #[arg(long)]
    pub acme_ca_file: Option<PathBuf>,
    /// An e-mail address for the ACME account, where the CA sends expiry and problem notices
    /// (Let's Encrypt's account contact). Without it the account has no contact.
    #[arg(long, value_parser = acme::parse_email)]
    pub acme_email: Option<String>,
    /// A program that publishes and removes the DNS-01 TXT records a wildcard certificate needs,
    /// called as `PATH present|cleanup _acme-challenge.NAME. VALUE` (lego's exec convention).
    /// Without it, `certs:auto` skips wildcard domains.
    #[arg(long, value_parser = acme::dns::parse_hook)]
    pub acme_dns_hook: Option<PathBuf>,
    /// Apps are served at APP.DOMAIN; `localhost` needs no DNS set-up.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// Host ports the embedded agent publishes instances on.
    #[arg(long, default_value = "20000-29999")]
    pub port_range: PortRange,
    /// Ports add-on services are published on at --host-address, for app instances on other
    /// hosts (guarded by each service's password); this host's own containers may not open them.
    #[arg(long, default_value = "15400-15499")]
    pub addon_ports: PortRange,
    /// Largest instance count one process type may be scaled to.
    #[arg(long, default_value_t = 20)]
    pub max_scale: u32,
    /// Memory limit of each instance: `512M`, `1G` (a bare number is MB).
    #[arg(long, alias = "instance-memory-mb", default_value = "512M", value_parser = parse_memory)]
    pub instance_memory: Size,
    /// Memory reservation of each instance, what the scheduler counts on its host (as
    /// Kubernetes' requests): `128M` [default: 128M, or --instance-memory when that is less].
    /// `caas ps:resize --reserve` sets a process type's own.
    #[arg(long, value_parser = parse_memory)]
    pub instance_reserve: Option<Size>,
    /// Memory this host offers to the scheduler: `8G` [default: the machine's, less a margin
    /// for the system (a tenth, at least 256M, at most 2G)]. Lowering it never stops what runs;
    /// it only stops new placements.
    #[arg(long, value_parser = parse_memory)]
    pub host_memory: Option<Size>,
    /// How far the memory limits of this host's instances may add up past the memory it
    /// offers: `4` lets them reach four times --host-memory (reservations never pass it).
    #[arg(long, default_value_t = 4.0, value_parser = parse_overcommit)]
    pub overcommit: f64,
    /// The most memory `caas ps:resize --memory` may give one instance.
    #[arg(long, default_value = "4G", value_parser = parse_memory)]
    pub max_instance_memory: Size,
    /// The largest CPU cap `caas ps:resize --cpu` may give one instance, in cores.
    #[arg(long, default_value_t = 4.0)]
    pub max_instance_cpus: f64,
    /// How long an instance keeps running after it leaves the routes, for requests in flight,
    /// before it gets SIGTERM: `30s` (`--drain-seconds N`, the old spelling, still works). An
    /// app may set its own (`caas apps:settings:set drain=60s`).
    #[arg(long, alias = "drain-seconds", default_value = "30s", value_parser = parse_duration)]
    pub drain: std::time::Duration,
    /// How long a new release has to be up (every instance its formation asks for) before its
    /// rollout fails and the release before it keeps serving: `90s`, `2m` (a bare number is
    /// seconds).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub start_timeout: std::time::Duration,
    /// How long a host may go without a heartbeat before it is lost and its instances move:
    /// `15s` (a bare number is seconds; at least 3s).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub lost_after: std::time::Duration,
    /// How much of each app's log (app output, platform events, router and build lines) is kept
    /// on disk, in DATA_DIR/logs: `16M` (a bare number is MB); the oldest lines go first.
    #[arg(long, default_value = "16M")]
    pub app_log_size: Size,
    /// Largest image upload accepted: `8G` (a bare number is MB).
    #[arg(long, alias = "max-image-upload-mb", default_value = "8G")]
    pub max_image_upload: Size,
    /// Client connections the gateway holds open at once; past it new ones get a 503.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// How long an instance may take to start answering a request before the client gets a 504:
    /// `60s`.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub upstream_timeout: std::time::Duration,
    /// Largest request body the gateway passes on to an app: `100M` (a bare number is MB);
    /// larger ones get a 413.
    #[arg(long, default_value = "100M")]
    pub max_body: Size,
    /// How long a client connection to the gateway may sit idle (no byte moving, no request
    /// being answered) before it is closed: `60s`.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: std::time::Duration,
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
    /// The run image: built apps are laid on it (stack/build.sh makes it).
    #[arg(long, default_value = "caas/stack:latest")]
    pub stack_image: String,
    /// The build image buildpack builds run in: the run image plus compilers and headers
    /// (stack/build.sh makes it).
    #[arg(long, default_value = "caas/build:latest")]
    pub build_image: String,
    /// Memory limit of a build container: `2G` (a bare number is MB).
    #[arg(long, alias = "build-memory-mb", default_value = "2G", value_parser = parse_memory)]
    pub build_memory: Size,
    /// How long a build may run before it is stopped and fails: `30m`.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub build_timeout: std::time::Duration,
    /// Free disk space kept for running apps: below it, on the data dir's or the engine's
    /// filesystem, new builds, uploads and pushes are refused up front. `1G`.
    #[arg(long, default_value = "1G", value_parser = parse_memory)]
    pub min_free_disk: Size,
    /// Images of this many newest releases of each app are kept for rollbacks; older ones are
    /// removed (0 keeps every one).
    #[arg(long, default_value_t = 10)]
    pub keep_releases: usize,
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
    /// The control plane's API URL, e.g. https://10.0.0.1:7080 (as `caas hosts:add` prints it;
    /// an http:// URL sends the agent's traffic in clear). Several servers sharing one etcd:
    /// their URLs separated by commas; the agent moves to the next when its own does not answer.
    #[arg(long, env = "CAAS_AGENT_SERVER")]
    pub server: String,
    /// The SHA-256 fingerprint of the control plane's certificate (`sha256:...`, printed by
    /// `caas hosts:add`): the agent accepts that certificate and no other. Needed at join with an
    /// https:// --server; kept in DATA_DIR/identity.json after.
    #[arg(long, env = "CAAS_SERVER_FINGERPRINT")]
    pub server_fingerprint: Option<String>,
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
    /// Memory this host offers to the scheduler: `8G` [default: the machine's, less a margin
    /// for the system]. Lowering it never stops what runs; it only stops new placements.
    #[arg(long, value_parser = parse_memory)]
    pub host_memory: Option<Size>,
    /// How far the memory limits of this host's instances may add up past the memory it
    /// offers (at least 1).
    #[arg(long, default_value_t = 4.0, value_parser = parse_overcommit)]
    pub overcommit: f64,
}

/// An overcommit ratio: 1 (limits never add up past the offer) or more.
fn parse_overcommit(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && (1.0..=100.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "invalid overcommit ratio {s:?}: give a number from 1 to 100, e.g. 4"
        )),
    }
}

#[derive(Args)]
pub struct GatewayArgs {
    /// Where the gateway keeps its route cache, run file and log.
    #[arg(long, default_value = "/var/lib/caas/gateway")]
    pub data_dir: PathBuf,
    /// Address apps are served on.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Address apps are served on over HTTPS, if any.
    #[arg(long)]
    pub https: Option<SocketAddr>,
    /// The control plane's API URL, or `file:PATH` of its caasd.json.
    #[arg(long, default_value = "file:/var/lib/caas/caasd.json")]
    pub server: String,
    /// The gateway token (the control plane's DATA_DIR/gateway-token).
    #[arg(long, default_value = "/var/lib/caas/gateway-token")]
    pub token_file: PathBuf,
    /// Apps are served at APP.DOMAIN (until the control plane says otherwise).
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// How long requests in flight get to finish when the gateway stops: `30s`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain: std::time::Duration,
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub upstream_timeout: std::time::Duration,
    /// Largest request body passed on: `100M`.
    #[arg(long, default_value = "100M")]
    pub max_body: Size,
    /// How long an idle client connection is kept: `60s`.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: std::time::Duration,
    /// Set by caasd: what it started this gateway with, to know it again.
    #[arg(long, hide = true, default_value = "")]
    pub spec: String,
}

impl ServerArgs {
    /// Each instance's reservation: --instance-reserve, or by default 128M capped at the limit
    /// (so `--instance-memory 32M` alone is fine and reserves 32M).
    pub fn instance_reserve(&self) -> Size {
        self.instance_reserve
            .unwrap_or(Size(DEFAULT_RESERVE.min(self.instance_memory.bytes())))
    }
}

const DEFAULT_RESERVE: u64 = 128 * 1024 * 1024;

/// Flags that are each fine but do not go together.
fn conflict(s: &ServerArgs) -> Option<String> {
    let (reserve, limit) = (s.instance_reserve?, s.instance_memory);
    (reserve > limit).then(|| {
        format!("--instance-reserve {reserve} is more than --instance-memory {limit}: a reservation is at most the limit")
    })
}

fn main() -> ExitCode {
    memory::bound_malloc_arenas();
    let cli = Cli::parse();
    if let Some(conflict) = conflict(&cli.server) {
        use clap::CommandFactory;
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, conflict)
            .exit(); // exit code 2, as for any other bad flag
    }
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
    memory::trim_periodically();
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
            Some(Command::Gateway(args)) => server::run_gateway(args).await,
            Some(Command::Uninstall(args)) => agent::uninstall::run(&args.data_dir).await,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn server(args: &[&str]) -> ServerArgs {
        let cli = Cli::try_parse_from(std::iter::once("caasd").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        cli.server
    }

    #[test]
    fn flags_take_units_and_the_old_spellings_still_work() {
        let s = server(&[
            "--instance-memory",
            "1G",
            "--lost-after",
            "20s",
            "--drain",
            "2s",
            "--build-memory",
            "3G",
            "--max-image-upload",
            "512M",
            "--start-timeout",
            "2m",
        ]);
        assert_eq!(s.instance_memory.mb(), 1024);
        assert_eq!(s.lost_after, Duration::from_secs(20));
        assert_eq!(s.drain, Duration::from_secs(2));
        assert_eq!(s.build_memory.mb(), 3072);
        assert_eq!(s.max_image_upload.mb(), 512);
        assert_eq!(s.start_timeout, Duration::from_secs(120));

        // Before units: bare MB and seconds, and --drain-seconds.
        let s = server(&[
            "--instance-memory",
            "256",
            "--lost-after",
            "8",
            "--drain-seconds",
            "7",
            "--build-memory",
            "1024",
        ]);
        assert_eq!(s.instance_memory.mb(), 256);
        assert_eq!(s.lost_after, Duration::from_secs(8));
        assert_eq!(s.drain, Duration::from_secs(7));
        assert_eq!(s.build_memory.mb(), 1024);

        let defaults = server(&[]);
        assert_eq!(defaults.instance_memory.mb(), 512);
        assert_eq!(defaults.drain, Duration::from_secs(30));
        assert_eq!(defaults.max_image_upload.mb(), 8192);

        assert_eq!(defaults.instance_reserve().mb(), 128);
        assert_eq!(conflict(&defaults), None);
        // The default reservation follows a smaller limit instead of conflicting with it.
        let small = server(&["--instance-memory", "32M"]);
        assert_eq!(
            (small.instance_reserve().mb(), conflict(&small)),
            (32, None)
        );
        assert_eq!(
            conflict(&server(&["--instance-memory", "256M", "--instance-reserve", "300M"])),
            Some("--instance-reserve 300.0 MB is more than --instance-memory 256.0 MB: a reservation is at most the limit".into())
        );
        assert_eq!((defaults.overcommit, defaults.host_memory), (4.0, None));
        let s = server(&["--host-memory", "300M", "--overcommit", "1.5"]);
        assert_eq!(
            (s.host_memory.map(Size::mb), s.overcommit),
            (Some(300), 1.5)
        );

        for bad in [
            &["--instance-memory", "2M"][..],
            &["--lost-after", "soon"],
            &["--build-memory", "lots"],
            &["--overcommit", "0.5"],
            &["--overcommit", "lots"],
            &["--host-memory", "1M"],
            &[
                "agent",
                "--server",
                "x",
                "--address",
                "127.0.0.1",
                "--name",
                "a",
                "--overcommit",
                "0.9",
            ],
        ] {
            let args = std::iter::once("caasd").chain(bad.iter().copied());
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
    }
}
