//! Add-ons end to end: Postgres and Redis services made from Debian packages, bound to apps as
//! config vars, keeping their data across restarts of their container and a `kill -9` of caasd,
//! backed up and restored through the API, reachable by their apps only; external bindings
//! updated in one place; bad input refused with nothing changed.

use caas_e2e::{docker, docker_ok, echo_image, run, test_image, wait_until, CmdOutput, Platform};
use serde_json::Value;
use std::fs::File;
use std::process::Stdio;
use std::time::Duration;

/// The first create of a kind builds its image from Debian packages: minutes on a loaded host.
const CREATE_TIMEOUT: Duration = Duration::from_secs(900);
const WAIT: Duration = Duration::from_secs(120);

fn create(p: &Platform, args: &[&str]) -> CmdOutput {
    let mut all = vec!["addons:create"];
    all.extend_from_slice(args);
    let out = run(&mut p.caas_command(&all), None, CREATE_TIMEOUT);
    assert!(out.success(), "caas {}\n{out}\n{}", all.join(" "), log(p));
    out
}

/// caasd's last log lines, for a failure's message.
fn log(p: &Platform) -> String {
    caas_e2e::tail(
        &std::fs::read_to_string(p.log_path()).unwrap_or_default(),
        40,
    )
}

fn service(p: &Platform, addon: &str) -> String {
    let short: String = p.cluster_id().chars().take(8).collect();
    format!("caas-{short}-addon-{addon}")
}

fn config(p: &Platform, app: &str) -> Value {
    p.caas_json(&["config", "-a", app, "--json"])
}

fn psql(p: &Platform, addon: &str, sql: &str) -> String {
    let c = service(p, addon);
    let out = docker(&[
        "exec", &c, "psql", "-h", "/tmp", "-U", "caas", "caas", "-tAc", sql,
    ]);
    assert!(out.success(), "psql {sql}\n{out}");
    out.stdout.trim().to_string()
}

fn redis(p: &Platform, addon: &str, password: &str, args: &[&str]) -> String {
    let c = service(p, addon);
    let env = format!("REDISCLI_AUTH={password}");
    let mut all = vec!["exec", "-e", &env, &c, "redis-cli"];
    all.extend_from_slice(args);
    let out = docker(&all);
    assert!(out.success(), "redis-cli {args:?}\n{out}");
    out.stdout.trim().to_string()
}

/// Waits until `caas addons:info` says the add-on is available (after a restart of it, or of
/// caasd).
fn available(p: &Platform, addon: &str) {
    wait_until(WAIT, &format!("{addon} to be available"), || {
        let out = p.caas(&["addons:info", addon, "--json"]);
        let v: Value = serde_json::from_str(&out.stdout).ok()?;
        (v["state"] == "available").then_some(())
    });
}

/// The app's running container that has `var` in its environment (the release made by the
/// attachment, not an older one still draining).
fn container_with(p: &Platform, app: &str, var: &str) -> String {
    wait_until(WAIT, &format!("a container of {app} with {var}"), || {
        p.running_containers(app).into_iter().find_map(|c| {
            let test = format!("test -n \"${var}\"");
            docker(&["exec", &c.id, "sh", "-c", &test])
                .success()
                .then_some(c.id)
        })
    })
}

/// Whether a TCP connection from inside `container` to `host:port` opens (within 3 s).
fn connects(container: &str, host: &str, port: &str) -> bool {
    let script = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)";
    docker(&["exec", container, "python3", "-c", script, host, port]).success()
}

fn backup(p: &Platform, addon: &str, to: &std::path::Path) {
    let status = p
        .caas_command(&["addons:backup", addon])
        .stdout(Stdio::from(File::create(to).unwrap()))
        .status()
        .unwrap();
    assert!(status.success(), "caas addons:backup {addon}\n{}", log(p));
}

fn restore(p: &Platform, addon: &str, from: &std::path::Path) -> CmdOutput {
    let data = std::fs::read(from).unwrap();
    run(
        &mut p.caas_command(&["addons:restore", addon]),
        Some(&data),
        CREATE_TIMEOUT,
    )
}

#[test]
fn postgres_and_redis_keep_their_data_back_up_and_reach_only_their_apps() {
    let image = echo_image();
    let mut p = Platform::start_with(&["--drain", "1"]);
    for app in ["shop", "other"] {
        p.caas_ok(&["apps:create", app]);
        p.caas_ok(&["push", "--image", &image, "-a", app]);
    }

    // Created and bound: the app gets DATABASE_URL / REDIS_URL in a release that is up.
    create(&p, &["postgres", "-a", "shop", "--name", "shop-db"]);
    create(&p, &["redis", "-a", "shop", "--name", "shop-cache"]);
    let cfg = config(&p, "shop");
    let db_url = cfg["DATABASE_URL"]
        .as_str()
        .expect("DATABASE_URL")
        .to_string();
    assert!(
        db_url.starts_with("postgres://caas:") && db_url.ends_with("@shop-db:5432/caas"),
        "{db_url}"
    );
    let redis_url = cfg["REDIS_URL"].as_str().expect("REDIS_URL").to_string();
    let password = redis_url
        .strip_prefix("redis://:")
        .and_then(|r| r.split('@').next())
        .expect("a password in REDIS_URL")
        .to_string();
    let listed = p.caas_json(&["addons", "-a", "shop", "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert!(config(&p, "other").get("DATABASE_URL").is_none());

    // The app reaches its add-ons by name; the other app reaches neither by name nor by address.
    let shop = container_with(&p, "shop", "REDIS_URL");
    assert!(
        connects(&shop, "shop-db", "5432"),
        "shop cannot reach its database"
    );
    assert!(
        connects(&shop, "shop-cache", "6379"),
        "shop cannot reach its redis"
    );
    let other = p.running_containers("other").pop().expect("other runs").id;
    assert!(
        !connects(&other, "shop-db", "5432"),
        "another app resolves shop's database"
    );
    // The service has an address on its own network and one on the installation's (which
    // publishes its port for other hosts, and whose inter-container traffic is off).
    let db_ips = docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
        &service(&p, "shop-db"),
    ]);
    assert_eq!(db_ips.split_whitespace().count(), 2, "{db_ips}");
    for ip in db_ips.split_whitespace() {
        assert!(
            !connects(&other, ip, "5432"),
            "another app reaches shop's database at {ip}"
        );
    }

    // Written, then read back after a restart of each service container...
    psql(
        &p,
        "shop-db",
        "CREATE TABLE items (name text); INSERT INTO items VALUES ('apple'), ('pear')",
    );
    redis(&p, "shop-cache", &password, &["SET", "greeting", "hello"]);
    for addon in ["shop-db", "shop-cache"] {
        docker_ok(&["restart", &service(&p, addon)]);
        available(&p, addon);
    }
    assert_eq!(
        psql(
            &p,
            "shop-db",
            "SELECT string_agg(name, ',' ORDER BY name) FROM items"
        ),
        "apple,pear"
    );
    assert_eq!(
        redis(&p, "shop-cache", &password, &["GET", "greeting"]),
        "hello"
    );

    // ... and after kill -9 of caasd (its services run on, and it finds them again).
    p.kill9();
    p.restart();
    available(&p, "shop-db");
    available(&p, "shop-cache");
    assert_eq!(psql(&p, "shop-db", "SELECT count(*) FROM items"), "2");
    assert_eq!(
        redis(&p, "shop-cache", &password, &["GET", "greeting"]),
        "hello"
    );

    // Backup, then restore into a second add-on: the same rows, the same keys.
    let dir = tempfile::tempdir().unwrap();
    let pg_dump = dir.path().join("db.dump");
    let rdb = dir.path().join("cache.rdb");
    backup(&p, "shop-db", &pg_dump);
    backup(&p, "shop-cache", &rdb);
    create(
        &p,
        &[
            "postgres", "-a", "shop", "--name", "shop-db2", "--as", "RESTORED",
        ],
    );
    create(
        &p,
        &[
            "redis",
            "-a",
            "shop",
            "--name",
            "shop-cache2",
            "--as",
            "RESTORED_CACHE",
        ],
    );
    let out = restore(&p, "shop-db2", &pg_dump);
    assert!(out.success(), "{out}");
    assert_eq!(
        psql(
            &p,
            "shop-db2",
            "SELECT string_agg(name, ',' ORDER BY name) FROM items"
        ),
        "apple,pear"
    );
    let out = restore(&p, "shop-cache2", &rdb);
    assert!(out.success(), "{out}");
    let cache2_url = config(&p, "shop")["RESTORED_CACHE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    let pw2 = cache2_url
        .strip_prefix("redis://:")
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        redis(&p, "shop-cache2", &pw2, &["GET", "greeting"]),
        "hello"
    );

    // A dump of another kind is refused with nothing changed.
    let out = restore(&p, "shop-db2", &rdb);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("not a pg_dump"), "{out}");
    let out = restore(&p, "shop-cache2", &pg_dump);
    assert_eq!(out.code, 2, "{out}");
    assert_eq!(psql(&p, "shop-db2", "SELECT count(*) FROM items"), "2");
    assert_eq!(
        redis(&p, "shop-cache2", &pw2, &["GET", "greeting"]),
        "hello"
    );

    // Destroying one that is attached is refused; with --detach it goes, volume and all.
    let out = p.caas_code(5, &["addons:destroy", "shop-db2", "--confirm", "shop-db2"]);
    assert!(out.stderr.contains("attached to shop"), "{out}");
    p.caas_ok(&[
        "addons:destroy",
        "shop-db2",
        "--confirm",
        "shop-db2",
        "--detach",
    ]);
    assert!(config(&p, "shop").get("RESTORED_URL").is_none());
    assert!(!docker(&["volume", "inspect", &service(&p, "shop-db2")]).success());
    assert_eq!(psql(&p, "shop-db", "SELECT count(*) FROM items"), "2");
}

#[test]
fn an_external_binding_updated_once_reaches_two_apps() {
    let image = test_image("external");
    let p = Platform::start_with(&["--drain", "1"]);
    for app in ["shop", "admin"] {
        p.caas_ok(&["apps:create", app]);
        p.caas_ok(&["push", "--image", &image, "-a", app]);
    }
    let old = "postgres://user:pass@db.example.com/shop";
    let new = "postgres://user:pass2@db2.example.com/shop";
    create(
        &p,
        &[
            "external", "--url", old, "--as", "DATABASE", "-a", "shop", "--name", "shopdb",
        ],
    );
    p.caas_ok(&["addons:attach", "shopdb", "-a", "admin"]);
    for app in ["shop", "admin"] {
        assert_eq!(config(&p, app)["DATABASE_URL"], old);
    }
    let before: Vec<usize> = ["shop", "admin"]
        .iter()
        .map(|a| {
            p.caas_json(&["releases", "-a", a, "--json"])
                .as_array()
                .unwrap()
                .len()
        })
        .collect();
    p.caas_ok(&["addons:update", "shopdb", "--url", new]);
    for (i, app) in ["shop", "admin"].iter().enumerate() {
        assert_eq!(config(&p, app)["DATABASE_URL"], new);
        let releases = p.caas_json(&["releases", "-a", app, "--json"]);
        assert_eq!(
            releases.as_array().unwrap().len(),
            before[i] + 1,
            "{releases}"
        );
        // The running instance has it: the release rolled out.
        let c = container_with(&p, app, "DATABASE_URL");
        let env = docker_ok(&["exec", &c, "sh", "-c", "echo $DATABASE_URL"]);
        assert_eq!(env.trim(), new);
    }
    let info = p.caas_json(&["addons:info", "shopdb", "--json"]);
    assert_eq!(
        info["attachments"].as_array().map(Vec::len),
        Some(2),
        "{info}"
    );
}

#[test]
fn bad_input_is_refused_with_nothing_changed() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "shop"]);
    p.caas_ok(&[
        "config:set",
        "DATABASE_URL=postgres://mine@elsewhere/db",
        "-a",
        "shop",
    ]);
    let url = "postgres://u:p@db.example.com/x";
    let before = config(&p, "shop");

    let out = p.caas_code(2, &["addons:create", "mongodb", "-a", "shop"]);
    assert!(out.stderr.contains("unknown add-on kind"), "{out}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
    // The app has DATABASE_URL already.
    let out = p.caas_code(
        5,
        &[
            "addons:create",
            "external",
            "--url",
            url,
            "--as",
            "DATABASE",
            "-a",
            "shop",
        ],
    );
    assert!(out.stderr.contains("already has DATABASE_URL"), "{out}");
    p.caas_code(2, &["addons:create", "external", "--as", "X", "-a", "shop"]);
    p.caas_code(
        2,
        &[
            "addons:create",
            "external",
            "--url",
            "not a url",
            "--as",
            "X",
            "-a",
            "shop",
        ],
    );
    p.caas_code(4, &["addons:create", "redis", "-a", "nosuchapp"]);
    assert_eq!(config(&p, "shop"), before);
    assert_eq!(p.caas_json(&["addons", "--json"]), serde_json::json!([]));

    create(
        &p,
        &[
            "external", "--url", url, "--as", "REPORTS", "-a", "shop", "--name", "reports",
        ],
    );
    // The name is taken.
    let out = p.caas_code(
        5,
        &[
            "addons:create",
            "external",
            "--url",
            url,
            "--as",
            "OTHER",
            "-a",
            "shop",
            "--name",
            "reports",
        ],
    );
    assert!(out.stderr.contains("exists already"), "{out}");
    // Attaching to an app that has the var already (it is attached).
    p.caas_code(5, &["addons:attach", "reports", "-a", "shop"]);
    p.caas_code(
        5,
        &["addons:attach", "reports", "-a", "shop", "--as", "DATABASE"],
    );
    // Destroying an attached add-on; without --confirm.
    let out = p.caas_code(5, &["addons:destroy", "reports", "--confirm", "reports"]);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
    p.caas_code(2, &["addons:destroy", "reports"]);
    p.caas_code(4, &["addons:info", "nosuch"]);
    p.caas_code(4, &["addons:backup", "nosuch"]);
    p.caas_code(2, &["addons:backup", "reports"]);
    let after = config(&p, "shop");
    assert_eq!(after["DATABASE_URL"], before["DATABASE_URL"]);
    assert_eq!(after["REPORTS_URL"], url);
    let listed = p.caas_json(&["addons", "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

/// Runs `sql` against the MySQL add-on at `$VAR` from a one-off of `app` (`caas run`, with the
/// stack's `mysql` client, which takes no URL: the shell takes `$VAR` apart); its output.
fn mysql_one_off(p: &Platform, app: &str, var: &str, sql: &str) -> String {
    let script = format!(
        "set -e; u=${{{var}#mysql://}}; creds=${{u%%@*}}; hp=${{u#*@}}; \
         host=${{hp%%:*}}; rest=${{hp#*:}}; \
         MYSQL_PWD=${{creds#*:}} exec mysql -N -B -h \"$host\" -P \"${{rest%%/*}}\" \
         -u \"${{creds%%:*}}\" \"${{rest#*/}}\" -e \"$1\""
    );
    let out = run(
        &mut p.caas_command(&["run", "-a", app, "--", "sh", "-c", &script, "sql", sql]),
        None,
        WAIT,
    );
    assert!(out.success(), "mysql {sql}\n{out}\n{}", log(p));
    out.stdout.trim().to_string()
}

#[test]
fn mysql_is_written_by_a_one_off_keeps_its_data_and_backs_up() {
    let image = echo_image();
    let p = Platform::start();
    p.caas_ok(&["apps:create", "shop"]);
    p.caas_ok(&["push", "--image", &image, "-a", "shop"]);
    create(&p, &["mysql", "-a", "shop", "--name", "shop-mysql"]);
    let url = config(&p, "shop")["MYSQL_URL"]
        .as_str()
        .expect("MYSQL_URL")
        .to_string();
    assert!(
        url.starts_with("mysql://caas:") && url.ends_with("@shop-mysql:3306/caas"),
        "{url}"
    );

    // The add-on's network is a bridge the installation's firewall rules cover (the host has an
    // address on it, as on every bridge): its instances reach the API's port there no more than
    // on the installation's own bridge. Checked as rules.
    let short: String = p.cluster_id().chars().take(8).collect();
    let bridge = docker_ok(&[
        "network",
        "inspect",
        "--format",
        "{{index .Options \"com.docker.network.bridge.name\"}}",
        &format!("caas-addon-{short}-shop-mysql"),
    ]);
    assert!(
        bridge.trim().starts_with(&format!("cad{short}")),
        "{bridge}"
    );
    let jumps = caas_e2e::run(
        std::process::Command::new("iptables").args(["-w", "-S", "INPUT"]),
        None,
        WAIT,
    );
    assert!(
        jumps
            .stdout
            .contains(&format!("-i cad{short}+ -j CAAS-{short}-IN")),
        "{jumps}"
    );
    // The port it is published on for other hosts is closed to this host's containers.
    let published = p.caas_json(&["addons:info", "shop-mysql", "--json"])["published"]
        .as_str()
        .expect("published")
        .to_string();
    let port: u16 = published.rsplit(':').next().unwrap().parse().unwrap();
    let input = caas_e2e::run(
        std::process::Command::new("iptables").args(["-w", "-S", &format!("CAAS-{short}-IN")]),
        None,
        WAIT,
    );
    let closed = input.stdout.lines().any(|l| {
        l.contains("NEW -j DROP")
            && l.split("--dport ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|r| r.split_once(':'))
                .is_some_and(|(lo, hi)| {
                    lo.parse::<u16>().is_ok_and(|lo| lo <= port)
                        && hi.parse::<u16>().is_ok_and(|hi| port <= hi)
                })
    });
    assert!(closed, "port {port} is closed to the bridge: {input}");

    // Written through `caas run` with the app's own URL, read back after a restart of the
    // service's container.
    mysql_one_off(
        &p,
        "shop",
        "MYSQL_URL",
        "CREATE TABLE items (name varchar(20)); INSERT INTO items VALUES ('apple'), ('pear')",
    );
    docker_ok(&["restart", &service(&p, "shop-mysql")]);
    available(&p, "shop-mysql");
    let all = "SELECT GROUP_CONCAT(name ORDER BY name) FROM items";
    assert_eq!(mysql_one_off(&p, "shop", "MYSQL_URL", all), "apple,pear");

    // Backup, then restore into a second add-on: the same rows.
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("shop.sql");
    backup(&p, "shop-mysql", &dump);
    let text = std::fs::read_to_string(&dump).unwrap();
    let head: String = text.chars().take(200).collect();
    assert!(head.contains("-- MariaDB dump"), "{head:?}");
    assert!(text.contains("INSERT INTO `items`"), "{head:?}");
    create(
        &p,
        &[
            "mysql",
            "-a",
            "shop",
            "--name",
            "shop-mysql2",
            "--as",
            "RESTORED",
        ],
    );
    let out = restore(&p, "shop-mysql2", &dump);
    assert!(out.success(), "{out}");
    assert_eq!(mysql_one_off(&p, "shop", "RESTORED_URL", all), "apple,pear");

    // A file that is not a mysqldump is refused, with nothing changed.
    let other = dir.path().join("not.sql");
    std::fs::write(&other, b"REDIS0011 not sql").unwrap();
    let out = restore(&p, "shop-mysql2", &other);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("not a mysqldump"), "{out}");
    assert_eq!(mysql_one_off(&p, "shop", "RESTORED_URL", all), "apple,pear");
}
