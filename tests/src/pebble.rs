//! Pebble, Let's Encrypt's ACME test server (Debian's `pebble`), on loopback, for a test's caasd to
//! obtain certificates from. `pebble-challtestsrv` is its DNS: every name resolves to 127.0.0.1
//! (or what `resolve` says), and pebble's `httpPort` is the platform's gateway port, so pebble's
//! HTTP-01 validation really reaches the gateway. Pebble's own HTTPS certificate comes from the
//! test's CA, which caasd trusts with `--acme-ca-file`.
//!
//! The ports are chosen before caasd starts (it is told the directory URL), pebble itself after
//! (it is told the gateway's port).

use crate::http::{http_request, HTTP_TIMEOUT};
use crate::process::{run, wait_until};
use crate::tls::TestCa;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BINARIES: [&str; 2] = ["pebble", "pebble-challtestsrv"];

/// Loopback ports for pebble and its DNS, free when chosen.
pub struct PebblePorts {
    acme: u16,
    management: u16,
    dns: u16,
    dns_management: u16,
}

impl PebblePorts {
    /// Four free loopback ports; panics when pebble is not installed.
    pub fn choose() -> PebblePorts {
        for bin in BINARIES {
            let found = std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
                .unwrap_or(false);
            assert!(
                found,
                "{bin} is not installed: the ACME tests need Debian's pebble (apt-get install pebble; \
                 install.sh's test packages include it)"
            );
        }
        let listeners: Vec<TcpListener> = (0..4)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port"))
            .collect();
        let port = |i: usize| listeners[i].local_addr().unwrap().port();
        PebblePorts {
            acme: port(0),
            management: port(1),
            dns: port(2),
            dns_management: port(3),
        }
    }

    /// pebble-challtestsrv's management address (`/set-txt`, `/clear-txt`, `/add-a`): what a
    /// test's DNS-01 hook publishes records through.
    pub fn dns_management(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.dns_management))
    }

    /// The ACME directory URL, for `caasd --acme-directory`.
    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme)
    }
}

/// Pebble and its DNS, running; both are killed when it is dropped.
pub struct Pebble {
    children: Vec<Child>,
    ports: PebblePorts,
    ca: PathBuf,
    dir: PathBuf,
}

impl Pebble {
    /// Starts pebble-challtestsrv and pebble on `ports`, pebble serving HTTPS with a certificate
    /// of `ca` and validating HTTP-01 challenges on `http_port`; files go to `dir`.
    pub fn start(dir: &Path, ca: &TestCa, ports: PebblePorts, http_port: u16) -> Pebble {
        Self::start_issuing_for(dir, ca, ports, http_port, None)
    }

    /// As [`Pebble::start`], issuing certificates valid for `validity` (pebble's default is
    /// years) — to see one renewed.
    pub fn start_issuing_for(
        dir: &Path,
        ca: &TestCa,
        ports: PebblePorts,
        http_port: u16,
        validity: Option<Duration>,
    ) -> Pebble {
        let cert = ca.issue("pebble", &["127.0.0.1", "localhost"], 30);
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{}", ports.acme),
                "managementListenAddress": format!("127.0.0.1:{}", ports.management),
                "certificate": cert.cert_path,
                "privateKey": cert.key_path,
                "httpPort": http_port,
                "tlsPort": http_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        if let Some(v) = validity {
            config["pebble"]["certificateValidityPeriod"] = v.as_secs().into();
        }
        let config_path = dir.join("pebble-config.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = |name: &str| {
            std::fs::File::create(dir.join(name)).expect("cannot create a pebble log file")
        };
        let mut pebble = Pebble {
            children: Vec::new(),
            ports,
            ca: ca.ca_path(),
            dir: dir.to_path_buf(),
        };
        let dns = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{}", pebble.ports.dns)])
            .args([
                "-management",
                &format!("127.0.0.1:{}", pebble.ports.dns_management),
            ])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdin(Stdio::null())
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.log"))
            .spawn()
            .expect("cannot start pebble-challtestsrv");
        pebble.children.push(dns);
        let server = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{}", pebble.ports.dns)])
            // Validate at once, and never refuse a good nonce on purpose.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdin(Stdio::null())
            .stdout(log("pebble.log"))
            .stderr(log("pebble.log"))
            .spawn()
            .expect("cannot start pebble");
        pebble.children.push(server);
        for port in [pebble.ports.acme, pebble.ports.dns_management] {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            wait_until(Duration::from_secs(20), "pebble to listen", || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                    .ok()
                    .map(|_| ())
            });
        }
        pebble
    }

    /// Makes pebble's DNS answer `host` with `ip` instead of 127.0.0.1.
    pub fn resolve(&self, host: &str, ip: &str) {
        let addr = self.ports.dns_management();
        let body = serde_json::json!({"host": host, "addresses": [ip]}).to_string();
        let resp = http_request(
            addr,
            "POST",
            "127.0.0.1",
            "/add-a",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
            HTTP_TIMEOUT,
        )
        .expect("pebble-challtestsrv answers");
        assert_eq!(resp.status, 200, "add-a {host}: {}", resp.body);
    }

    /// Pebble's root certificate (made at its start), written to a file for `curl --cacert`.
    pub fn root_file(&self) -> PathBuf {
        let path = self.dir.join("pebble-root.pem");
        let out = run(
            Command::new("curl")
                .args(["-sS", "--fail", "--cacert"])
                .arg(&self.ca)
                .arg(format!(
                    "https://127.0.0.1:{}/roots/0",
                    self.ports.management
                ))
                .arg("-o")
                .arg(&path),
            None,
            HTTP_TIMEOUT,
        );
        assert!(out.success(), "fetching pebble's root: {out}");
        path
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
