//! Log drains, as Heroku's: every line of an app also goes to a syslog server (`syslog://HOST:PORT`
//! over TCP, `syslog+tls://HOST:PORT` over TLS, RFC 5424 frames with octet counting) or is POSTed
//! in batches to an `https://` URL.
//!
//! A drain is a subscriber of the hub with a bounded queue of its own: the hub hands it a line
//! without waiting, a full queue drops the line and counts it, and one task per drain sends what
//! is queued, reconnecting with back-off while the far end is down. So a drain that is down never
//! slows an app, the hub or the other drains.

use caas_api::{DrainState, LogLine};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Lines a drain holds while its far end is slow or down; past it, lines are dropped and counted.
pub const QUEUE: usize = 10_000;
/// Lines per HTTPS POST.
const BATCH: usize = 500;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where a drain sends, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Syslog { host: String, port: u16, tls: bool },
    Https(String),
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("invalid drain URL {url:?}: {why}; use syslog://HOST:PORT, syslog+tls://HOST:PORT or https://HOST/PATH")
        };
        if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it has spaces or control characters, or is too long"));
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("it has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        match parsed.scheme() {
            "syslog" | "syslog+tls" => {
                let port = parsed.port().ok_or_else(|| bad("it has no port"))?;
                if parsed.path().len() > 1 || parsed.query().is_some() {
                    return Err(bad("a syslog drain has no path"));
                }
                Ok(Target::Syslog {
                    host,
                    port,
                    tls: parsed.scheme() == "syslog+tls",
                })
            }
            "https" => Ok(Target::Https(url.to_string())),
            other => Err(bad(&format!(
                "the scheme {other:?} is not one caas sends to"
            ))),
        }
    }
}

/// An RFC 5424 message framed with octet counting (RFC 6587), as Heroku's drains send: the app
/// is the HOSTNAME, the source the APP-NAME (`app`, `caas`, `router`, `build`), the tag the
/// PROCID (`web.1`).
pub fn syslog_frame(app: &str, line: &LogLine) -> Vec<u8> {
    // local7.info, like Heroku's router and app lines.
    const PRI: u8 = 190;
    let nil = |s: &str| -> String {
        // Header fields are printable ASCII without spaces, at most 48 characters.
        let clean: String = s
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(48)
            .collect();
        if clean.is_empty() {
            "-".into()
        } else {
            clean
        }
    };
    let msg = format!(
        "<{PRI}>1 {} {} {} {} - - {}",
        line.ts,
        nil(app),
        line.source.as_str(),
        nil(&line.tag),
        line.text.replace('\n', " ")
    );
    let mut frame = format!("{} ", msg.len()).into_bytes();
    frame.extend_from_slice(msg.as_bytes());
    frame
}

/// A drain's counters, shared by its task and whoever lists the drains.
#[derive(Default)]
pub struct Stats {
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    state: Mutex<(DrainState, Option<String>)>,
}

impl Stats {
    fn set(&self, state: DrainState, error: Option<String>) {
        *self.state.lock().unwrap() = (state, error);
    }

    pub fn state(&self) -> (DrainState, Option<String>) {
        self.state.lock().unwrap().clone()
    }
}

/// One running drain: the hub's end of its queue.
pub struct Drain {
    pub url: String,
    tx: mpsc::Sender<LogLine>,
    pub stats: Arc<Stats>,
    stop: CancellationToken,
}

impl Drain {
    /// Starts the drain's task; it ends when `stop` (or its parent) is cancelled.
    pub fn start(app: &str, url: &str, target: Target, parent: &CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(Stats::default());
        stats.set(DrainState::Connecting, None);
        let stop = parent.child_token();
        let task = Sender {
            app: app.to_string(),
            target,
            stats: stats.clone(),
        };
        tokio::spawn(task.run(rx, stop.clone()));
        Self {
            url: url.to_string(),
            tx,
            stats,
            stop,
        }
    }

    /// Hands a line over without waiting: a full queue drops it and counts it.
    pub fn offer(&self, line: &LogLine) {
        if self.tx.try_send(line.clone()).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn queued(&self) -> u64 {
        (QUEUE - self.tx.capacity()) as u64
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Sender {
    app: String,
    target: Target,
    stats: Arc<Stats>,
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<LogLine>, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(500);
        // A line taken from the queue but not yet sent, kept across reconnects.
        let mut pending: Vec<LogLine> = Vec::new();
        loop {
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.session(&mut rx, &mut pending) => r,
            };
            match result {
                Ok(()) => return, // the queue closed: the drain was removed
                Err(e) => {
                    tracing::debug!(app = self.app, "log drain: {e}");
                    self.stats.set(DrainState::Failing, Some(e));
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Connects and sends until the connection fails (`Err`) or the queue closes (`Ok`).
    async fn session(
        &self,
        rx: &mut mpsc::Receiver<LogLine>,
        pending: &mut Vec<LogLine>,
    ) -> Result<(), String> {
        match &self.target {
            Target::Syslog { host, port, tls } => {
                let tcp = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    tokio::net::TcpStream::connect((host.as_str(), *port)),
                )
                .await
                .map_err(|_| format!("connecting to {host}:{port} timed out"))?
                .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
                let _ = tcp.set_nodelay(true);
                if *tls {
                    let stream = tls_connect(host, tcp).await?;
                    self.pump_syslog(stream, rx, pending).await
                } else {
                    self.pump_syslog(tcp, rx, pending).await
                }
            }
            Target::Https(url) => self.pump_https(url, rx, pending).await,
        }
    }

    async fn pump_syslog<W: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
        &self,
        mut w: W,
        rx: &mut mpsc::Receiver<LogLine>,
        pending: &mut Vec<LogLine>,
    ) -> Result<(), String> {
        self.stats.set(DrainState::Connected, None);
        loop {
            if pending.is_empty() {
                match rx.recv().await {
                    Some(l) => pending.push(l),
                    None => return Ok(()),
                }
                while pending.len() < BATCH {
                    match rx.try_recv() {
                        Ok(l) => pending.push(l),
                        Err(_) => break,
                    }
                }
            }
            // A receiver that went away while we waited would take the next write into its
            // closed socket without a word: look before writing, and keep the lines for the
            // next connection.
            if closed(&mut w).await {
                return Err("the receiver closed the connection".into());
            }
            let mut bytes = Vec::new();
            for line in pending.iter() {
                bytes.extend_from_slice(&syslog_frame(&self.app, line));
            }
            w.write_all(&bytes)
                .await
                .map_err(|e| format!("sending: {e}"))?;
            w.flush().await.map_err(|e| format!("sending: {e}"))?;
            self.stats
                .delivered
                .fetch_add(pending.len() as u64, Ordering::Relaxed);
            pending.clear();
        }
    }

    async fn pump_https(
        &self,
        url: &str,
        rx: &mut mpsc::Receiver<LogLine>,
        pending: &mut Vec<LogLine>,
    ) -> Result<(), String> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        loop {
            if pending.is_empty() {
                match rx.recv().await {
                    Some(l) => pending.push(l),
                    None => return Ok(()),
                }
                // Gather what arrives within a moment into one POST.
                let deadline = tokio::time::sleep(Duration::from_millis(200));
                tokio::pin!(deadline);
                while pending.len() < BATCH {
                    tokio::select! {
                        l = rx.recv() => match l {
                            Some(l) => pending.push(l),
                            None => break,
                        },
                        _ = &mut deadline => break,
                    }
                }
            }
            // Heroku's HTTPS drains POST application/logplex-1: syslog frames back to back.
            let mut body = Vec::new();
            for line in pending.iter() {
                body.extend_from_slice(&syslog_frame(&self.app, line));
            }
            let resp = client
                .post(url)
                .header("content-type", "application/logplex-1")
                .header("logplex-msg-count", pending.len().to_string())
                .body(body)
                .send()
                .await
                .map_err(|e| format!("posting: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("the drain answered {}", resp.status()));
            }
            self.stats.set(DrainState::Connected, None);
            self.stats
                .delivered
                .fetch_add(pending.len() as u64, Ordering::Relaxed);
            pending.clear();
        }
    }
}

/// Whether the far end closed a connection it never sends on (syslog receivers do not), looked
/// at without waiting. Reading through the stream (not its socket) keeps TLS intact: what a TLS
/// server does send (session tickets) is consumed by the TLS layer.
async fn closed<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(Duration::ZERO, r.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn tls_connect(
    host: &str,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    use rustls_platform_verifier::ConfigVerifierExt;
    let config = tokio_rustls::rustls::ClientConfig::with_platform_verifier()
        .map_err(|e| format!("TLS set-up: {e}"))?;
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {host}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use caas_api::{LogSource, Timestamp};
    use tokio::io::AsyncReadExt;

    #[test]
    fn urls_parse_or_say_what_to_use() {
        assert_eq!(
            Target::parse("syslog://logs.example.com:514").unwrap(),
            Target::Syslog {
                host: "logs.example.com".into(),
                port: 514,
                tls: false
            }
        );
        assert_eq!(
            Target::parse("syslog+tls://[::1]:6514").unwrap(),
            Target::Syslog {
                host: "::1".into(),
                port: 6514,
                tls: true
            }
        );
        assert!(matches!(
            Target::parse("https://user:pw@logs.example.com/drain?x=1"),
            Ok(Target::Https(_))
        ));
        for (bad, why) in [
            ("syslog://logs.example.com", "no port"),
            (
                "http://logs.example.com/x",
                "\"http\" is not one caas sends to",
            ),
            ("ftp://x:1", "is not one caas sends to"),
            ("syslog://:514", "invalid drain URL"),
            ("not a url", "spaces"),
            ("syslog://h:514/path", "no path"),
        ] {
            let err = Target::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains("use syslog://HOST:PORT"), "{err}");
        }
    }

    #[test]
    fn frames_are_rfc5424_with_octet_counting() {
        let line = LogLine {
            ts: Timestamp(1_764_056_373_123),
            source: LogSource::App,
            tag: "web.1".into(),
            text: "hello\nworld".into(),
        };
        let frame = String::from_utf8(syslog_frame("shop", &line)).unwrap();
        let msg = "<190>1 2025-11-25T07:39:33.123Z shop app web.1 - - hello world";
        assert_eq!(frame, format!("{} {msg}", msg.len()));
    }

    #[tokio::test]
    async fn a_drain_delivers_and_counts_what_it_could_not_hold() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        let target = Target::Syslog {
            host: "127.0.0.1".into(),
            port,
            tls: false,
        };
        let drain = Drain::start("shop", "syslog://x", target, &stop);
        let line = |i: usize| LogLine {
            ts: Timestamp(0),
            source: LogSource::App,
            tag: "web.1".into(),
            text: format!("line {i}"),
        };
        for i in 0..3 {
            drain.offer(&line(i));
        }
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut got = String::new();
        while !got.contains("line 2") {
            let mut buf = [0u8; 4096];
            let n = sock.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        assert!(got.contains("shop app web.1 - - line 0"), "{got}");
        assert_eq!(drain.stats.delivered.load(Ordering::Relaxed), 3);

        // Far end gone and the queue full: lines are dropped and counted, never waited for.
        drop(sock);
        drop(listener);
        for i in 0..QUEUE + 50 {
            drain.offer(&line(i));
        }
        assert!(drain.stats.dropped.load(Ordering::Relaxed) >= 50);
        stop.cancel();
    }
}
