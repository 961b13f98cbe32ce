//! Runs the probes the lifecycle chooses (`lifecycle::Probe`) against a container: the I/O half
//! of health checks. It reports what it saw ([`Seen`]); what that means is the lifecycle's
//! business, not this file's.

use super::lifecycle::{Probe, Seen};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where and how a probe is tried.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Target {
    /// Nothing to try: the process runs, which is all the probe asks.
    Passes,
    /// Connect to the process at its container address.
    Connect(SocketAddr, Duration),
    /// An HTTP exchange through the published port: any answer shows a process behind it.
    Exchange(SocketAddr, Duration),
    /// `GET path` at the address (the container's own, else the published port).
    Get {
        addr: SocketAddr,
        path: String,
        status: Option<u16>,
        content: Option<String>,
        timeout: Duration,
    },
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
    let direct = ip.zip(container_port).map(|(ip, p)| SocketAddr::new(ip, p));
    let published = host_port.map(|p| SocketAddr::new(host, p));
    match probe {
        Probe::Running => Target::Passes,
        &Probe::Connect { timeout } => match (direct, published) {
            (Some(addr), _) => Target::Connect(addr, timeout),
            (None, Some(addr)) if container_port.is_some() => Target::Exchange(addr, timeout),
            _ => Target::Fails,
        },
        Probe::Http {
            path,
            status,
            content,
            timeout,
        } => match direct.or(published.filter(|_| container_port.is_some())) {
            Some(addr) => Target::Get {
                addr,
                path: path.clone(),
                status: *status,
                content: content.clone(),
                timeout: *timeout,
            },
            None => Target::Fails,
        },
    }
}

/// The most of an answer read: enough for the status, headers and a health page.
const MAX_ANSWER: usize = 64 * 1024;

impl Target {
    /// What the probe saw.
    pub async fn run(self) -> Seen {
        match self {
            Target::Passes => Seen::pass("running"),
            Target::Fails => Seen::fail("no address to reach it at"),
            Target::Connect(addr, limit) => {
                match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await {
                    Ok(Ok(_)) => Seen::pass("connected"),
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        Seen::refused()
                    }
                    Ok(Err(e)) => Seen::fail(&format!("cannot connect: {e}")),
                    Err(_) => Seen::fail(&format!("no connection within {}", secs(limit))),
                }
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
                match tokio::time::timeout(limit, exchange).await {
                    Ok(Ok(true)) => Seen::pass("answered"),
                    Ok(Ok(false)) => Seen::fail("answered something other than HTTP"),
                    Ok(Err(_)) => Seen::refused(),
                    Err(_) => Seen::fail(&format!("no answer within {}", secs(limit))),
                }
            }
            Target::Get {
                addr,
                path,
                status,
                content,
                timeout,
            } => match tokio::time::timeout(timeout, get(addr, &path)).await {
                Err(_) => Seen::fail(&format!("no answer within {}", secs(timeout))),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Seen::refused(),
                Ok(Err(e)) => Seen::fail(&format!("{e}")),
                Ok(Ok(answer)) => judge(&answer, status, content.as_deref()),
            },
        }
    }
}

fn secs(d: Duration) -> String {
    caas_api::checks::format_duration(d)
}

/// An answer as far as it was read.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    /// The body's start (up to [`MAX_ANSWER`] with the head).
    body: Vec<u8>,
}

/// `GET path` over HTTP/1.0 (so the answer is neither chunked nor kept alive), read until the
/// server closes or enough came. The `Host` is the address probed, as Kubernetes sends it.
async fn get(addr: SocketAddr, path: &str) -> std::io::Result<Answer> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: caas-health/1\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n.min(MAX_ANSWER - buf.len())]);
        if buf.len() >= MAX_ANSWER {
            break;
        }
    }
    parse_answer(&buf).ok_or_else(|| {
        let what = if buf.is_empty() {
            "closed the connection without answering"
        } else {
            "answered something other than HTTP"
        };
        std::io::Error::other(what)
    })
}

/// The status and body of an HTTP/1.x answer.
fn parse_answer(buf: &[u8]) -> Option<Answer> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[..line_end]).ok()?;
    let mut words = line.split(' ');
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = words.next()?;
    if code.len() != 3 {
        return None;
    }
    let status: u16 = code.parse().ok()?;
    let body = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&[][..], |head| &buf[head + 4..]);
    Some(Answer {
        status,
        body: body.to_vec(),
    })
}

/// Whether an answer passes: the status asked for (any 2xx/3xx without one), and the content
/// in the body when asked for.
fn judge(answer: &Answer, status: Option<u16>, content: Option<&str>) -> Seen {
    let code = answer.status;
    let status_ok = match status {
        Some(want) => code == want,
        None => (200..400).contains(&code),
    };
    if !status_ok {
        return Seen::fail(&format!("answered {code}"));
    }
    match content {
        Some(c)
            if !answer
                .body
                .windows(c.len().max(1))
                .any(|w| w == c.as_bytes()) =>
        {
            Seen::fail(&format!("answered {code} without {c:?} in its body"))
        }
        _ => Seen::pass(&format!("answered {code}")),
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
        let http = Probe::Http {
            path: "/health".into(),
            status: None,
            content: None,
            timeout: Duration::from_secs(2),
        };
        let ip: IpAddr = "172.17.0.5".parse().unwrap();
        let host: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Duration::from_secs(2);
        let get = |addr: &str| Target::Get {
            addr: addr.parse().unwrap(),
            path: "/health".into(),
            status: None,
            content: None,
            timeout: t,
        };
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
            (
                http.clone(),
                Some(ip),
                Some(5000),
                Some(30001),
                get("172.17.0.5:5000"),
            ),
            (
                http.clone(),
                None,
                Some(5000),
                Some(30001),
                get("10.0.0.1:30001"),
            ),
            (http.clone(), Some(ip), None, None, Target::Fails),
        ];
        for (probe, ip, cport, hport, want) in table {
            assert_eq!(
                aim(&probe, ip, cport, host, hport),
                want,
                "{probe:?} {ip:?} {cport:?} {hport:?}"
            );
        }
    }

    #[test]
    fn answers_pass_by_status_and_content() {
        let a = |raw: &str| parse_answer(raw.as_bytes()).unwrap();
        let ok = a("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nall ok\n");
        assert_eq!(ok.body, b"all ok\n");
        // (answer, status asked, content asked) → what the probe saw
        let table = [
            (&ok, None, None, Seen::pass("answered 200")),
            (&ok, Some(200), Some("ok"), Seen::pass("answered 200")),
            (&ok, Some(204), None, Seen::fail("answered 200")),
            (
                &ok,
                None,
                Some("ready"),
                Seen::fail("answered 200 without \"ready\" in its body"),
            ),
        ];
        for (answer, status, content, want) in table {
            assert_eq!(judge(answer, status, content), want);
        }
        let redirect = a("HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n");
        assert_eq!(judge(&redirect, None, None), Seen::pass("answered 302"));
        let error = a("HTTP/1.1 500 Internal Server Error\r\n\r\n");
        assert_eq!(judge(&error, None, None), Seen::fail("answered 500"));
        for junk in [
            "",
            "SSH-2.0-x\r\n",
            "HTTP/1.1 2000 OK\r\n",
            "HTTP/2 200\r\n",
        ] {
            assert_eq!(parse_answer(junk.as_bytes()), None, "{junk:?}");
        }
    }

    #[tokio::test]
    async fn a_connect_passes_only_when_something_listens() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let t = Duration::from_secs(2);
        assert!(Target::Connect(addr, t).run().await.ok);
        drop(listener);
        assert_eq!(Target::Connect(addr, t).run().await, Seen::refused());
        assert!(Target::Passes.run().await.ok);
        assert!(!Target::Fails.run().await.ok);
    }

    #[tokio::test]
    async fn a_get_reads_the_answer_of_a_real_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for answer in [
                "HTTP/1.0 503 Service Unavailable\r\n\r\nnot yet",
                "HTTP/1.0 200 OK\r\n\r\nhealthy",
            ] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut req = vec![0u8; 1024];
                let n = s.read(&mut req).await.unwrap();
                let req = String::from_utf8_lossy(&req[..n]).to_string();
                assert!(req.starts_with("GET /health?x=1 HTTP/1.0\r\n"), "{req}");
                s.write_all(answer.as_bytes()).await.unwrap();
            }
            // The third one never answers.
            let (_s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let target = |content: Option<&str>| Target::Get {
            addr,
            path: "/health?x=1".into(),
            status: None,
            content: content.map(str::to_string),
            timeout: Duration::from_millis(500),
        };
        assert_eq!(target(None).run().await, Seen::fail("answered 503"));
        assert_eq!(
            target(Some("healthy")).run().await,
            Seen::pass("answered 200")
        );
        assert_eq!(
            target(None).run().await,
            Seen::fail("no answer within 500ms")
        );
        server.abort();
    }
}
