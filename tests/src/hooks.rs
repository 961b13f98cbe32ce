//! What the webhook tests stand up on loopback in place of a git host and of a notification
//! receiver: [`GitHost`] serves bare repositories over git's smart HTTP by running `git
//! http-backend` as a CGI for each request (behind HTTP Basic auth with one token, like a
//! private repository on a host), and [`Receiver`] records the POSTs it gets and fails the
//! first ones it is told to. Both are threads of the test; both go when dropped.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One HTTP request as read off the wire.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(stream: &TcpStream) -> io::Result<Request> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut req = Request {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            req.body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = req.header("content-length").and_then(|v| v.parse().ok()) {
        let mut body = vec![0u8; n];
        r.read_exact(&mut body)?;
        req.body = body;
    }
    Ok(req)
}

fn respond(mut stream: &TcpStream, status: u16, headers: &[(String, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// Accepts connections on a loopback port until dropped, handing each request to `handle`.
fn serve(
    stop: Arc<AtomicBool>,
    handle: impl Fn(Request) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    if let Ok(req) = read_request(&stream) {
                        let (status, headers, body) = handle(req);
                        respond(&stream, status, &headers, &body);
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    addr
}

/// A git host on loopback: `http://ADDR/NAME.git` for each bare repository under `root`.
pub struct GitHost {
    pub addr: SocketAddr,
    pub root: PathBuf,
    stop: Arc<AtomicBool>,
}

impl GitHost {
    /// Serves the repositories under `root` to clients with `Authorization: Basic` carrying
    /// `token` as the password (any user name); others get 401, as a private repository's host
    /// answers.
    pub fn start(root: &Path, token: &str) -> GitHost {
        let stop = Arc::new(AtomicBool::new(false));
        let (dir, token) = (root.to_path_buf(), token.to_string());
        let addr = serve(stop.clone(), move |req| cgi(&dir, &token, req));
        GitHost {
            addr,
            root: root.to_path_buf(),
            stop,
        }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://{}/{repo}", self.addr)
    }
}

impl Drop for GitHost {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn basic_password(req: &Request) -> Option<String> {
    let b64 = req.header("authorization")?.strip_prefix("Basic ")?;
    let raw = decode_base64(b64.trim())?;
    let text = String::from_utf8(raw).ok()?;
    Some(text.split_once(':')?.1.to_string())
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        acc = (acc << 6) | ABC.iter().position(|x| *x == c)? as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// One request through `git http-backend`.
fn cgi(root: &Path, token: &str, req: Request) -> (u16, Vec<(String, String)>, Vec<u8>) {
    if basic_password(&req).as_deref() != Some(token) {
        let h = vec![("WWW-Authenticate".into(), "Basic realm=\"git\"".into())];
        return (401, h, b"authentication required\n".to_vec());
    }
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let mut child = Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("REQUEST_METHOD", &req.method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REMOTE_USER", "test")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_TYPE", req.header("content-type").unwrap_or(""))
        .env("CONTENT_LENGTH", req.body.len().to_string())
        .env(
            "HTTP_CONTENT_ENCODING",
            req.header("content-encoding").unwrap_or(""),
        )
        .env("GIT_PROTOCOL", req.header("git-protocol").unwrap_or(""))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("git http-backend runs");
    let mut stdin = child.stdin.take().unwrap();
    let body = req.body.clone();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let out = child.wait_with_output().expect("git http-backend ends");
    let _ = writer.join();
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, gap)) = split else {
        return (500, Vec::new(), b"bad CGI output\n".to_vec());
    };
    let mut status = 200;
    let mut headers = Vec::new();
    for line in String::from_utf8_lossy(&raw[..end]).lines() {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("status") {
                status = v.trim()[..3].parse().unwrap_or(500);
            } else {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    (status, headers, raw[end + gap..].to_vec())
}

/// A notification receiver on loopback: records every request; answers 500 to the first
/// `fail_first` of them, 200 after.
pub struct Receiver {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    pub fn start(fail_first: usize) -> Receiver {
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = AtomicUsize::new(0);
        let log = requests.clone();
        let addr = serve(stop.clone(), move |req| {
            log.lock().unwrap().push(req);
            if seen.fetch_add(1, Ordering::SeqCst) < fail_first {
                (500, Vec::new(), b"down for now\n".to_vec())
            } else {
                (200, Vec::new(), b"ok\n".to_vec())
            }
        });
        Receiver {
            addr,
            requests,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn received(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes() {
        assert_eq!(
            super::decode_base64("dXNlcjpwYXNz").unwrap(),
            b"user:pass".to_vec()
        );
        assert_eq!(super::decode_base64("YQ==").unwrap(), b"a".to_vec());
    }
}
