//! Runs the probes the lifecycle chooses (`lifecycle::Probe`) against a container: the I/O half
//! of health checks. What a result means is the lifecycle's business, not this file's.

use super::lifecycle::Probe;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Where and how a probe is tried.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Target {
    /// Nothing to try: the process runs, which is all the probe asks.
    Passes,
    /// Connect to the process at its container address.
    Connect(SocketAddr, Duration),
    /// An HTTP exchange through the published port: any answer shows a process behind it.
    Exchange(SocketAddr, Duration),
    /// Nowhere to reach the process.
    Fails,
}

/// Where to try `probe` on a container with address `ip` whose process listens on
/// `container_port`, published at `host:host_port`.
///
/// The process itself is probed at its container address: Docker's userland proxy accepts
/// connections on the published port even when nothing listens behind it. Without a container
/// address, an HTTP exchange through the published port tells the same.
pub(super) fn aim(
    probe: &Probe,
    ip: Option<IpAddr>,
    container_port: Option<u16>,
    host: IpAddr,
    host_port: Option<u16>,
) -> Target {
    match (probe, ip, container_port, host_port) {
        (Probe::Running, ..) => Target::Passes,
        (&Probe::Connect { timeout }, Some(ip), Some(port), _) => {
            Target::Connect(SocketAddr::new(ip, port), timeout)
        }
        (&Probe::Connect { timeout }, None, _, Some(port)) => {
            Target::Exchange(SocketAddr::new(host, port), timeout)
        }
        (Probe::Connect { .. }, ..) => Target::Fails,
    }
}

impl Target {
    /// Whether the probe passed.
    pub async fn run(self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        match self {
            Target::Passes => true,
            Target::Fails => false,
            Target::Connect(addr, limit) => {
                matches!(
                    tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await,
                    Ok(Ok(_))
                )
            }
            Target::Exchange(addr, limit) => {
                let exchange = async {
                    let mut s = tokio::net::TcpStream::connect(addr).await?;
                    s.write_all(b"HEAD / HTTP/1.0\r\nHost: localhost\r\n\r\n")
                        .await?;
                    let mut buf = [0u8; 5];
                    s.read_exact(&mut buf).await?;
                    Ok::<bool, std::io::Error>(&buf == b"HTTP/")
                };
                matches!(tokio::time::timeout(limit, exchange).await, Ok(Ok(true)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_aims_at_the_process_not_the_proxy() {
        let connect = Probe::Connect {
            timeout: Duration::from_secs(2),
        };
        let ip: IpAddr = "172.17.0.5".parse().unwrap();
        let host: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Duration::from_secs(2);
        // (probe, container address, container port, host port) → target
        let table = [
            (Probe::Running, None, None, None, Target::Passes),
            (
                Probe::Running,
                Some(ip),
                Some(5000),
                Some(30001),
                Target::Passes,
            ),
            (
                connect.clone(),
                Some(ip),
                Some(5000),
                Some(30001),
                Target::Connect("172.17.0.5:5000".parse().unwrap(), t),
            ),
            (
                connect.clone(),
                None,
                Some(5000),
                Some(30001),
                Target::Exchange("10.0.0.1:30001".parse().unwrap(), t),
            ),
            (connect.clone(), Some(ip), None, Some(30001), Target::Fails),
            (connect.clone(), None, Some(5000), None, Target::Fails),
        ];
        for (probe, ip, cport, hport, want) in table {
            assert_eq!(
                aim(&probe, ip, cport, host, hport),
                want,
                "{probe:?} {ip:?} {cport:?} {hport:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_connect_passes_only_when_something_listens() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let t = Duration::from_secs(2);
        assert!(Target::Connect(addr, t).run().await);
        drop(listener);
        assert!(!Target::Connect(addr, t).run().await);
        assert!(Target::Passes.run().await);
        assert!(!Target::Fails.run().await);
    }
}
