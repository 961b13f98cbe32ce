//! Agents talk to the control plane over TLS, pinning its certificate at join: an agent started
//! with the command `caas hosts:add` prints joins over TLS and runs an instance; one given another
//! fingerprint refuses the control plane with one line and exit 1, before its join token is sent
//! (the token still works after), and an https:// server without a fingerprint is refused too.
//! Everything on loopback: the agent is 127.0.0.2/127.0.0.3, the API 127.0.0.1.

use caas_e2e::{join_command, test_image, AgentProcess, Platform};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

fn value_of<'a>(args: &'a [String], flag: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    &args[i + 1]
}

fn with_value(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut args = args.to_vec();
    let i = args.iter().position(|a| a == flag).unwrap();
    args[i + 1] = value.to_string();
    args
}

fn without(args: &[String], flag: &str) -> Vec<String> {
    let i = args.iter().position(|a| a == flag).unwrap();
    let mut args = args.to_vec();
    args.drain(i..i + 2);
    args
}

fn host_names(p: &Platform) -> Vec<String> {
    p.caas_json(&["hosts", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_string())
        .collect()
}

/// The lines of `log` that say the agent stopped (`caasd: error: ...`).
fn error_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.starts_with("caasd: error:"))
        .collect()
}

#[test]
fn an_agent_joins_over_tls_pinning_the_certificate_and_refuses_any_other() {
    let image = test_image("Pinned");
    // Only the joining hosts run instances.
    let p = Platform::start_with(&["--no-agent"]);

    // The certificate caasd made, readable by its owner only, and the fingerprint hosts:add
    // prints for it.
    let cert = p.data_dir().join("api-cert.pem");
    let key = p.data_dir().join("api-key.pem");
    for f in [&cert, &key] {
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(f).unwrap().permissions());
        assert_eq!(mode & 0o077, 0, "{} is private", f.display());
    }
    let args = join_command(&p, "host2", "127.0.0.2");
    let server = value_of(&args, "--server").to_string();
    let pin = value_of(&args, "--server-fingerprint").to_string();
    assert!(server.starts_with("https://127.0.0.1:"), "{args:?}");
    assert_eq!(
        pin,
        fingerprint_of(&cert),
        "hosts:add prints the certificate's SHA-256"
    );

    // A wrong fingerprint: refused before anything is sent, one line, exit 1.
    let wrong = format!("sha256:{}", "00".repeat(32));
    let mut bad = AgentProcess::run(&p, &with_value(&args, "--server-fingerprint", &wrong), None);
    let code = bad.wait_exit(WAIT);
    let log = bad.log();
    println!(
        "tried: an agent pinning {wrong} -> exit {code:?}: {:?}",
        error_lines(&log)
    );
    assert_eq!(code, Some(1), "{log}");
    let errors = error_lines(&log);
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains(&format!(
            "presented the certificate {pin}, not the pinned {wrong}"
        )),
        "{log}"
    );
    assert!(!bad.data_dir().join("identity.json").exists());
    assert_eq!(host_names(&p), Vec::<String>::new(), "nothing registered");

    // https:// without a fingerprint: refused, one line, exit 1.
    let mut unpinned = AgentProcess::run(&p, &without(&args, "--server-fingerprint"), None);
    let code = unpinned.wait_exit(WAIT);
    let log = unpinned.log();
    println!(
        "tried: an https:// agent without a fingerprint -> exit {code:?}: {:?}",
        error_lines(&log)
    );
    assert_eq!(code, Some(1), "{log}");
    assert_eq!(error_lines(&log).len(), 1, "{log}");
    assert!(log.contains("--server-fingerprint"), "{log}");

    // The same join token (never sent above) with the right pin: joins over TLS and runs an
    // instance that answers through the gateway.
    let agent = AgentProcess::run(&p, &args, None);
    p.wait_for(WAIT, "host2 to join", || {
        (host_names(&p) == ["host2"]).then_some(())
    });
    p.caas_ok(&["apps:create", "pinned"]);
    p.caas_ok(&["push", "--image", &image, "-a", "pinned"]);
    let body = p.wait_for(WAIT, "the app to answer", || p.ok_body("pinned"));
    assert!(body.starts_with("Pinned"), "{body}");
    let ps = p.ps("pinned");
    assert_eq!(ps[0]["host"], "host2", "{ps:?}");
    // The pin is kept with the agent's identity, and no plain-HTTP warning was logged.
    let identity = std::fs::read_to_string(agent.data_dir().join("identity.json")).unwrap();
    assert!(identity.contains(&pin), "{identity}");
    assert!(!agent.log().contains("in clear"), "{}", agent.log());
}

/// `sha256:HEX` of the certificate in a PEM file.
fn fingerprint_of(pem: &std::path::Path) -> String {
    let out = caas_e2e::run(
        std::process::Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(pem),
        None,
        Duration::from_secs(30),
    );
    assert!(out.success(), "{out}");
    // `sha256 Fingerprint=AB:CD:...`
    let hex = out
        .stdout
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_ascii_lowercase();
    format!("sha256:{hex}")
}
