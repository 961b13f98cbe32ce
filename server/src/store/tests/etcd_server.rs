//! A real etcd for the store's tests: one member, started once per test process on free
//! loopback ports, its data in a temporary directory, stopped when the test process ends (a
//! shell beside it waits for the test process to be gone; nothing is left behind by a test run
//! that is killed).

use std::net::TcpListener;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The client address of the shared test etcd, starting it the first time.
fn endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("caas-test-etcd")
            .tempdir()
            .expect("a temporary directory")
            .keep();
        let (client, peer) = (free_port(), free_port());
        let script = format!(
            "etcd --name t --data-dir {dir}/data \
             --listen-client-urls http://127.0.0.1:{client} --advertise-client-urls http://127.0.0.1:{client} \
             --listen-peer-urls http://127.0.0.1:{peer} --initial-advertise-peer-urls http://127.0.0.1:{peer} \
             --initial-cluster t=http://127.0.0.1:{peer} >{dir}/log 2>&1 & \
             e=$!; while kill -0 {me} 2>/dev/null && kill -0 $e 2>/dev/null; do sleep 1; done; kill $e; wait $e; rm -rf {dir}",
            dir = dir.display(),
            me = std::process::id(),
        );
        // The shell outlives this process by design (it stops etcd once the tests' process is
        // gone), so it is not waited for.
        #[allow(clippy::zombie_processes)]
        std::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("starting etcd (Debian's etcd-server; .ci/run installs it)");
        let url = format!("127.0.0.1:{client}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&url).is_err() {
            assert!(
                Instant::now() < deadline,
                "etcd did not start; see {}/log",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        url
    })
}

/// A store URL on the test etcd with a key prefix of the test's own.
pub fn url(test: &str) -> String {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).unwrap();
    format!("etcd://{}/test-{test}-{}", endpoint(), hex::encode(b))
}
