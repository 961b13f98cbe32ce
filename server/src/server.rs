//! Process wiring: opens the store, makes the first-start credentials, binds the listeners,
//! starts every long-running task with one shutdown token, and waits for a signal.

use crate::agent::{self, write_private, AgentConfig};
use crate::api::{self, ApiConfig, AppState};
use crate::auth;
use crate::builder::{unpack, BuildSettings, Builder};
use crate::docker::Engine;
use crate::gateway;
use crate::logs::LogHub;
use crate::observed::Observed;
use crate::schedule::reconcile::Settings;
use crate::schedule::Scheduler;
use crate::store::{Role, Store, TokenRecord, UserRecord};
use crate::{AgentArgs, GatewayArgs, ServerArgs};
use anyhow::Context;
use caas_api::Timestamp;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Lines of slack per live log reader before it is told it missed some.
const LOG_FANOUT: usize = 4096;

async fn connect_engine() -> anyhow::Result<Engine> {
    Engine::connect().await.context(
        "caasd needs Docker Engine: start dockerd (./install.sh installs and starts it), or set DOCKER_HOST",
    )
}

/// Resolves on SIGTERM or SIGINT.
async fn signalled() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The first admin user, `admin`, and its token are created on first start; only the token's
/// hash is stored, the token itself goes to `DIR/admin-token` for `install.sh` and the operator.
/// The admin token of a store from before users becomes the `admin` user's.
fn ensure_admin(store: &Store, dir: &Path) -> anyhow::Result<()> {
    store.migrate_to_users()?;
    if store.users()?.iter().any(|u| u.admin) {
        return Ok(());
    }
    store.put_user(&UserRecord {
        name: "admin".into(),
        admin: true,
        created_at: Timestamp::now(),
    })?;
    let token = auth::generate(auth::ADMIN_PREFIX);
    store.put_token(
        &auth::hash(&token),
        &TokenRecord::new(
            Role::User {
                name: "admin".into(),
            },
            "admin (first start)",
        ),
    )?;
    let path = dir.join("admin-token");
    write_private(&path, format!("{token}\n").as_bytes())?;
    tracing::info!("created the admin user and its token in {}", path.display());
    Ok(())
}

/// The embedded agent's join token: for the control plane's own host only, made anew at every
/// start and never written down. Join tokens of the first version (for any host, from
/// `DIR/join-token`) are removed: hosts now join with a token made for them (`caas hosts:add`).
fn embedded_join_token(store: &Store, dir: &Path, host: &str) -> anyhow::Result<String> {
    let legacy = dir.join("join-token");
    if legacy.exists() {
        let _ = std::fs::remove_file(&legacy);
        tracing::warn!(
            "removed {}: hosts now join with a token made for each (caas hosts:add NAME)",
            legacy.display()
        );
    }
    store.delete_tokens_where(|t| match &t.role {
        Role::Join {
            host: None,
            colocated,
            ..
        } => !colocated,
        // Only this server's: servers sharing an etcd store each have an embedded agent.
        Role::Join {
            colocated: true,
            host: Some(h),
            ..
        } => h == host,
        _ => false,
    })?;
    let token = auth::generate(auth::JOIN_PREFIX);
    store.put_token(
        &auth::hash(&token),
        &TokenRecord::new(
            Role::Join {
                host: Some(host.to_string()),
                address: None,
                once: false,
                colocated: true,
            },
            "embedded agent",
        ),
    )?;
    Ok(token)
}

/// A token whose plain text lives only in `DIR/FILE` (the join token agents register with, the
/// gateway's token): when that file is gone or stale, a new token replaces this server's old
/// one (labelled `FILE (HOST)`; servers sharing an etcd store each have their own).
fn ensure_token_file(
    store: &Store,
    dir: &Path,
    file: &str,
    host: &str,
    role: Role,
    prefix: &str,
) -> anyhow::Result<String> {
    let path = dir.join(file);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let token = text.trim().to_string();
        if store
            .token(&auth::hash(&token))?
            .is_some_and(|t| t.role == role)
        {
            return Ok(token);
        }
    }
    let label = format!("{file} ({host})");
    // Unlabelled: made before servers could share a store.
    store.delete_tokens_where(|t| t.role == role && (t.label == file || t.label == label))?;
    let token = auth::generate(prefix);
    store.put_token(&auth::hash(&token), &TokenRecord::new(role, &label))?;
    write_private(&path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

/// The buildpacks folder: the flag, else the installed one, else the source tree's (a build
/// from the repository runs as `target/*/caasd`).
fn find_buildpacks(flag: Option<std::path::PathBuf>) -> anyhow::Result<std::path::PathBuf> {
    if let Some(dir) = flag {
        anyhow::ensure!(
            dir.is_dir(),
            "the buildpacks folder {} does not exist",
            dir.display()
        );
        return Ok(dir);
    }
    let installed = std::path::PathBuf::from("/usr/local/share/caas/buildpacks");
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        exe.parent()?
            .parent()?
            .parent()
            .map(|repo| repo.join("buildpacks"))
    });
    let found = [Some(installed.clone()), from_exe]
        .into_iter()
        .flatten()
        .find(|d| d.is_dir());
    Ok(found.unwrap_or_else(|| {
        tracing::warn!(
            "no buildpacks folder found (pass --buildpacks DIR); buildpack builds will find none"
        );
        installed
    }))
}

fn app_url_template(domain: &str, gateway: SocketAddr) -> String {
    match gateway.port() {
        80 => format!("http://{{app}}.{domain}"),
        port => format!("http://{{app}}.{domain}:{port}"),
    }
}

/// Loopback when bound to every address, so the embedded agent and clients on this host reach
/// the API whatever it is bound to.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    }
}

/// The store `--store` names: sled in DATA_DIR/db, or etcd.
fn open_store(spec: &str, dir: &Path) -> anyhow::Result<Store> {
    if spec == "sled" {
        return Store::open(&dir.join("db"))
            .with_context(|| format!("opening the store in {}", dir.join("db").display()));
    }
    anyhow::ensure!(
        spec.starts_with("etcd://"),
        "--store {spec}: give sled, or etcd://HOST:2379[,HOST:2379...]"
    );
    Store::open_etcd(spec).with_context(|| format!("opening the store at {spec}"))
}

pub async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let run_file = dir.join("caasd.json");
    let _ = std::fs::remove_file(&run_file);

    let engine = connect_engine().await?;
    let store = open_store(&args.store, dir)?;
    let cluster_id = store.meta_get_or_init("cluster_id", auth::short_id)?;
    ensure_admin(&store, dir)?;
    let join_token = embedded_join_token(&store, dir, &args.host_name)?;
    ensure_token_file(
        &store,
        dir,
        "gateway-token",
        &args.host_name,
        Role::Gateway,
        auth::GATEWAY_PREFIX,
    )?;
    store.flush().await?;

    let api_listener = TcpListener::bind(args.api)
        .await
        .with_context(|| format!("binding the API to {}", args.api))?;
    let api_addr = reachable(api_listener.local_addr()?);
    // Agents reach the API over TLS, pinning this certificate (caas hosts:add prints it).
    let api_cert = crate::api_tls::ensure(dir, &store)?;
    // The gateway is a process of its own that outlives caasd: find the one serving, or start
    // one. It follows the API's address through DATA_DIR/caasd.json, written below.
    crate::platform_cert::ensure(&store, &args).await?;
    let gw_spec = gateway::supervise::Spec {
        data_dir: dir.join("gateway"),
        listen: args.gateway,
        https: args.https,
        server: format!("file:{}", run_file.display()),
        token_file: dir.join("gateway-token"),
        domain: args.domain.clone(),
        args: vec![
            "--max-connections".into(),
            args.max_connections.to_string(),
            "--upstream-timeout".into(),
            format!("{}s", args.upstream_timeout.as_secs()),
            "--max-body".into(),
            format!("{}B", args.max_body.bytes()),
            "--idle-timeout".into(),
            format!("{}s", args.idle_timeout.as_secs().max(1)),
        ],
    };
    let gw_serving = gateway::supervise::ensure(&gw_spec).await?;
    let gw_bound = gw_serving.http;
    let gw_addr = reachable(gw_bound);
    let https_addr = gw_serving.https.map(reachable);

    let shutdown = CancellationToken::new();
    let logs = Arc::new(LogHub::new(
        dir.join("logs"),
        args.app_log_size.bytes(),
        LOG_FANOUT,
    ));
    let lost_after = args.lost_after.max(Duration::from_secs(3));
    let observed = Arc::new(Observed::new(Timestamp::now(), lost_after));
    let wake = Arc::new(Notify::new());
    let engine_root = engine.info().await.ok().and_then(|i| i.root_dir);
    let runner = crate::oneoff::Runner::new(
        engine.clone(),
        logs.clone(),
        store.clone(),
        crate::oneoff::RunSettings {
            cluster_id: cluster_id.clone(),
            host_name: args.host_name.clone(),
            memory_mb: args.instance_memory.mb(),
        },
    );
    runner.recover().await;
    let builder = Builder::new(
        store.clone(),
        engine.clone(),
        logs.clone(),
        wake.clone(),
        BuildSettings {
            root: dir.join("builds"),
            buildpacks: find_buildpacks(args.buildpacks.clone())?,
            stack_image: args.stack_image.clone(),
            build_image: args.build_image.clone(),
            memory_mb: args.build_memory.mb(),
            max_upload: args.max_upload_mb * 1024 * 1024,
            limits: unpack::Limits {
                max_unpacked_bytes: args.max_unpacked_mb * 1024 * 1024,
                max_entries: args.max_archive_entries,
                max_ratio: args.max_compression_ratio,
                ..unpack::Limits::default()
            },
            cluster_id: cluster_id.clone(),
            timeout: args.build_timeout,
            keep_releases: args.keep_releases,
            floor: crate::free_space::Floor {
                min_free_bytes: args.min_free_disk.bytes(),
                paths: [Some(dir.to_path_buf()), engine_root]
                    .into_iter()
                    .flatten()
                    .collect(),
            },
        },
        args.build_concurrency,
        shutdown.clone(),
        runner.clone(),
    );
    builder
        .recover()
        .await
        .context("cleaning up after builds of the previous run")?;
    let config = Arc::new(ApiConfig {
        domain: args.domain.clone(),
        app_url_template: app_url_template(&args.domain, gw_bound),
        max_scale: args.max_scale,
        instance_memory_mb: args.instance_memory.mb(),
        instance_reserve_mb: args.instance_reserve().mb(),
        max_instance_memory_mb: args.max_instance_memory.mb(),
        max_instance_cpus: args.max_instance_cpus,
        max_image_upload: args.max_image_upload.bytes(),
        max_upload: args.max_upload_mb * 1024 * 1024,
        cluster_id: cluster_id.clone(),
        start_timeout: args.start_timeout,
        settings_defaults: crate::schedule::app_defaults(args.drain),
        tcp_ports: (args.tcp_ports.0, args.tcp_ports.1),
        gateway_ip: args.gateway.ip(),
        acme_directory: args.acme_directory.clone(),
        drain: args.drain,
        api_fingerprint: api_cert.fingerprint.clone(),
    });

    let mut tasks = tokio::task::JoinSet::new();
    let counters = Arc::new(crate::metrics::Counters::default());
    let server_id = format!("{}-{}", args.host_name, auth::short_id());
    let leading = store.join_servers(
        crate::store::ServerRecord {
            id: server_id.clone(),
            name: args.host_name.clone(),
            api: format!("http://{api_addr}"),
            started_at: Timestamp::now(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        shutdown.clone(),
    );
    let board = Arc::new(crate::schedule::Board::default());
    let settings = Settings {
        instance_memory_mb: args.instance_memory.mb(),
        instance_reserve_mb: args.instance_reserve().mb(),
        start_timeout: args.start_timeout,
        defaults: crate::schedule::app_defaults(args.drain),
    };
    let (st, ob, lg, wk, ct, bd) = (
        store.clone(),
        observed.clone(),
        logs.clone(),
        wake.clone(),
        counters.clone(),
        board.clone(),
    );
    tasks.spawn(crate::leading::while_leading(
        leading.clone(),
        shutdown.clone(),
        move |stop| {
            Scheduler {
                store: st.clone(),
                observed: ob.clone(),
                logs: lg.clone(),
                settings: settings.clone(),
                wake: wk.clone(),
                counters: ct.clone(),
                board: bd.clone(),
            }
            .run(stop)
        },
    ));
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        tasks.spawn(crate::platform_cert::follow(
            store.clone(),
            cert.clone(),
            key.clone(),
            shutdown.clone(),
        ));
    }
    tasks.spawn(logs.clone().flusher(shutdown.clone()));
    for app in store.apps()? {
        if !app.drains.is_empty() {
            logs.set_drains(&app.name, &app.drains);
        }
    }

    if let Some(file) = &args.acme_ca_file {
        std::fs::metadata(file)
            .with_context(|| format!("reading --acme-ca-file {}", file.display()))?;
    }
    if store.is_shared() {
        let b = builder.clone();
        tasks.spawn(crate::leading::while_leading(
            leading.clone(),
            shutdown.clone(),
            move |stop| b.clone().sweep_orphans(stop),
        ));
        tasks.spawn(crate::observed::follow_shared(
            store.clone(),
            observed.clone(),
            wake.clone(),
            shutdown.clone(),
        ));
    }
    let routing_index = crate::routing::spawn_index(&store, shutdown.clone());
    let acme_settings = crate::acme::Settings {
        directory: args.acme_directory.clone(),
        ca_file: args.acme_ca_file.clone(),
        email: args.acme_email.clone(),
        gateway: gw_addr,
        dns_hook: args.acme_dns_hook.clone(),
    };
    let (st, lg, ri) = (store.clone(), logs.clone(), routing_index.clone());
    tasks.spawn(crate::leading::while_leading(
        leading.clone(),
        shutdown.clone(),
        move |stop| {
            crate::acme::Acme::new(st.clone(), lg.clone(), acme_settings.clone())
                .run(ri.clone(), stop)
        },
    ));

    // Deploy notifications follow the platform's lines from the hub, in their own task.
    let (tap, tapped) = tokio::sync::mpsc::channel(crate::notify::TAP_QUEUE);
    logs.set_tap(tap);
    tasks.spawn(
        crate::notify::Notifier {
            store: store.clone(),
            rx: tapped,
        }
        .run(shutdown.clone()),
    );
    let state = AppState {
        store: store.clone(),
        engine: engine.clone(),
        logs,
        observed,
        wake,
        config,
        builder: builder.clone(),
        repos: crate::git::Repos::new(dir.join("git")),
        repos_tmp: dir.join("git-pushes"),
        routing_index,
        traffic: Arc::new(crate::traffic::Traffic::default()),
        usage: Arc::default(),
        counters,
        autoscale: Arc::new(crate::autoscale::Status::default()),
        alerts: Arc::new(crate::alerts::Raised::default()),
        auth_failures: Arc::default(),
        gateway_serving: Arc::new(tokio::sync::watch::Sender::new(0)),
        push_locks: Arc::default(),
        addons: Arc::new(crate::addons::Services {
            engine: engine.clone(),
            cluster: cluster_id.clone(),
            host: args.host_name.clone(),
            address: args.host_address,
            ports: (args.addon_ports.0, args.addon_ports.1),
            images: crate::addons::Images::new(args.stack_image.clone()),
        }),
        board,
        runner,
    };
    tasks.spawn(crate::metrics::history::sample(
        store.clone(),
        state.observed.clone(),
        state.usage.clone(),
        shutdown.clone(),
    ));
    // Renames a stopped caasd left half done get their folders, before anything reads them.
    api::recover_renames(&state).await;
    // Services a stopped caasd left half made are finished; stopped ones are started.
    tokio::spawn(api::recover_addons(state.clone()));
    let (st, max_scale, shared) = (store.clone(), args.max_scale, state.clone());
    tasks.spawn(crate::leading::while_leading(
        leading.clone(),
        shutdown.clone(),
        move |stop| {
            crate::autoscale::Autoscaler {
                store: st.clone(),
                traffic: shared.traffic.clone(),
                observed: shared.observed.clone(),
                logs: shared.logs.clone(),
                wake: shared.wake.clone(),
                status: shared.autoscale.clone(),
                max_scale,
            }
            .run(stop)
        },
    ));
    let (st, shared) = (store.clone(), state.clone());
    tasks.spawn(crate::leading::while_leading(
        leading.clone(),
        shutdown.clone(),
        move |stop| {
            crate::alerts::Alerter {
                store: st.clone(),
                traffic: shared.traffic.clone(),
                logs: shared.logs.clone(),
                raised: shared.alerts.clone(),
            }
            .run(stop)
        },
    ));
    let (st, shared) = (store.clone(), state.clone());
    tasks.spawn(crate::leading::while_leading(
        leading.clone(),
        shutdown.clone(),
        move |stop| {
            crate::canary::Judge {
                store: st.clone(),
                traffic: shared.traffic.clone(),
                observed: shared.observed.clone(),
                logs: shared.logs.clone(),
                wake: shared.wake.clone(),
            }
            .run(stop)
        },
    ));
    let _ = std::fs::remove_dir_all(dir.join("git-pushes"));
    let api_router = api::router(state);
    // The dashboard at `/` is a client of the same router (in-process); the API stays under /v1.
    let app = api_router
        .clone()
        .merge(crate::dashboard::router(api_router));
    tasks.spawn(crate::http::serve(
        api_listener,
        // Agents speak TLS with the certificate they pinned; plain HTTP stays on the same port.
        Some(api_cert.config.clone()),
        shutdown.clone(),
        crate::http::Options::api(),
        move |conn| {
            let peer = conn.peer;
            // Who is calling, for the audit log and the per-address limit on failed logins.
            let app = tower::ServiceExt::map_request(
                app.clone(),
                move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(api::auth::ClientAddr(peer));
                    req
                },
            );
            hyper_util::service::TowerToHyperService::new(app)
        },
    ));

    if !args.no_agent {
        // The embedded agent speaks TLS too, though over loopback: one protocol for every agent.
        let cfg = AgentConfig {
            server: format!("https://{api_addr}"),
            fingerprint: Some(api_cert.fingerprint.clone()),
            join_token: Some(join_token),
            data_dir: dir.join("agent"),
            name: args.host_name.clone(),
            address: args.host_address,
            port_min: args.port_range.0,
            port_max: args.port_range.1,
            colocated: true,
            addon_ports: Some((args.addon_ports.0, args.addon_ports.1)),
            host_memory_mb: args.host_memory.map(crate::units::Size::mb),
            overcommit: args.overcommit,
        };
        let agent_engine = engine.clone();
        let agent_stop = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = agent::run(cfg, agent_engine, agent_stop).await {
                tracing::error!("embedded agent stopped: {e:#}");
            }
        });
    }

    let info = serde_json::json!({
        "api": format!("http://{api_addr}"),
        "gateway": gw_addr.to_string(),
        "https": https_addr.map(|a| a.to_string()),
        "cluster_id": cluster_id,
        "api_fingerprint": api_cert.fingerprint,
        "pid": std::process::id(),
    });
    write_private(&run_file, serde_json::to_string_pretty(&info)?.as_bytes())?;
    tracing::info!(api = %api_addr, gateway = %gw_addr, "caasd ready; apps at {}", app_url_template(&args.domain, gw_addr));

    signalled().await;
    tracing::info!("shutting down; app containers keep running and are adopted on the next start");
    shutdown.cancel();
    let drain = async {
        while tasks.join_next().await.is_some() {}
        builder.closed().await;
    };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within 10s");
    }
    store.flush().await?;
    let _ = std::fs::remove_file(&run_file);
    Ok(())
}

pub async fn run_agent(args: AgentArgs) -> anyhow::Result<()> {
    let join_token = match (&args.join_token, &args.join_token_file) {
        (Some(t), _) => Some(t.trim().to_string()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the join token from {}", path.display()))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    let fingerprint = args
        .server_fingerprint
        .as_deref()
        .map(crate::api_tls::parse_fingerprint)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let engine = connect_engine().await?;
    let cfg = AgentConfig {
        server: args.server.trim_end_matches('/').to_string(),
        fingerprint,
        join_token,
        data_dir: args.data_dir,
        name: args.name,
        address: args.address,
        port_min: args.port_range.0,
        port_max: args.port_range.1,
        colocated: false,
        addon_ports: None,
        host_memory_mb: args.host_memory.map(crate::units::Size::mb),
        overcommit: args.overcommit,
    };
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let agent = tokio::spawn(agent::run(cfg, engine, shutdown));
    tokio::select! {
        _ = signalled() => stop.cancel(),
        r = agent => return r.context("agent task")?,
    }
    Ok(())
}

pub async fn run_gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| {
            format!(
                "reading the gateway token from {}",
                args.token_file.display()
            )
        })?
        .trim()
        .to_string();
    let cfg = gateway::process::GatewayConfig {
        listen: args.listen,
        server: args.server,
        token,
        data_dir: args.data_dir,
        domain: args.domain,
        https: args.https,
        drain: args.drain,
        limits: gateway::Limits {
            max_connections: args.max_connections,
            upstream_timeout: args.upstream_timeout,
            max_body: args.max_body.bytes(),
            idle_timeout: args.idle_timeout,
            ..gateway::Limits::default()
        },
        spec: args.spec,
    };
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let mut gw = tokio::spawn(gateway::process::run(cfg, shutdown));
    tokio::select! {
        _ = signalled() => stop.cancel(),
        r = &mut gw => return r.context("gateway task")?,
    }
    gw.await.context("gateway task")?
}
