//! A small client of etcd's v3 API through its JSON gateway (`POST /v3/kv/range` and friends,
//! keys and values base64), over the HTTP client caasd already has. No gRPC stack, no `protoc`
//! at build time; what the store needs is a handful of unary calls and one watch stream.
//!
//! The store's interface is synchronous (it was sled's), so the client runs on a runtime of its
//! own (one thread, [`runtime`]) and synchronous callers wait for it through [`Etcd::wait`],
//! which lets a multi-threaded tokio runtime move its other tasks away while it blocks.
//! Several endpoints may be given: a call that cannot reach one tries the next, and the one that
//! answered is tried first from then on.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("no etcd endpoint answers ({0})")]
    Unreachable(String),
    #[error("etcd refused {call}: {message}")]
    Refused { call: &'static str, message: String },
    #[error("etcd: {0}")]
    Url(String),
}

/// One key-value pair as etcd keeps it.
#[derive(Debug, Clone)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// A condition of a transaction: the key holds exactly `value` (`None`: the key is absent).
pub struct Compare {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// A write of a transaction: put `value`, or delete the key (`None`).
pub struct Write {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// The runtime every etcd call of this process runs on: one thread, for as long as the process
/// lives (a runtime dropped inside another's context panics, so it is never dropped).
fn runtime() -> &'static tokio::runtime::Handle {
    static RT: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    RT.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("etcd".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("building the etcd runtime");
                tx.send(rt.handle().clone())
                    .expect("handing out the handle");
                rt.block_on(std::future::pending::<()>());
            })
            .expect("starting the etcd thread");
        rx.recv().expect("the etcd runtime starts")
    })
}

#[derive(Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<String>,
    /// The endpoint that answered last; tried first.
    current: AtomicUsize,
    http: reqwest::Client,
}

/// `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` → endpoints and the key prefix (default `/caas`).
pub fn parse_url(url: &str) -> Result<(Vec<String>, String), EtcdError> {
    let rest = url.strip_prefix("etcd://").ok_or_else(|| {
        EtcdError::Url(format!("{url}: expected etcd://HOST:PORT[,HOST:PORT...]"))
    })?;
    let (hosts, prefix) = match rest.split_once('/') {
        Some((h, p)) if !p.is_empty() => (h, format!("/{}", p.trim_end_matches('/'))),
        Some((h, _)) => (h, "/caas".to_string()),
        None => (rest, "/caas".to_string()),
    };
    let endpoints: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| format!("http://{h}"))
        .collect();
    if endpoints.is_empty() {
        return Err(EtcdError::Url(format!("{url}: no HOST:PORT given")));
    }
    Ok((endpoints, prefix))
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(v: &Value) -> Vec<u8> {
    v.as_str()
        .and_then(|s| B64.decode(s).ok())
        .unwrap_or_default()
}

/// The first key after every key starting with `prefix` (etcd's `range_end` for a prefix).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn num(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

impl Etcd {
    pub fn new(endpoints: Vec<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("building the etcd HTTP client");
        Self {
            inner: Arc::new(Inner {
                endpoints,
                current: AtomicUsize::new(0),
                http,
            }),
        }
    }

    /// Runs `fut` on the etcd runtime and waits for it, from synchronous code (the store's
    /// callers, inside or outside a tokio runtime).
    pub fn wait<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        runtime().spawn(async move {
            let _ = tx.send(fut.await);
        });
        let recv = move || rx.recv().expect("the etcd runtime runs for ever");
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(recv)
            }
            _ => recv(),
        }
    }

    /// Runs `fut` on the etcd runtime in the background.
    pub fn spawn(fut: impl Future<Output = ()> + Send + 'static) {
        runtime().spawn(fut);
    }

    /// One unary call, trying every endpoint once, the last one that answered first.
    pub async fn call(
        &self,
        call: &'static str,
        path: &str,
        body: Value,
    ) -> Result<Value, EtcdError> {
        let n = self.inner.endpoints.len();
        let first = self.inner.current.load(Ordering::Relaxed);
        let mut last_err = String::new();
        for i in 0..n {
            let at = (first + i) % n;
            let url = format!("{}{path}", self.inner.endpoints[at]);
            let res = self
                .inner
                .http
                .post(&url)
                .timeout(Duration::from_secs(5))
                .json(&body)
                .send()
                .await;
            let resp = match res {
                Ok(r) => r,
                Err(e) => {
                    last_err = format!("{}: {e}", self.inner.endpoints[at]);
                    continue;
                }
            };
            let status = resp.status();
            let value: Value = match resp.json().await {
                Ok(v) => v,
                Err(e) => {
                    last_err = format!("{}: {e}", self.inner.endpoints[at]);
                    continue;
                }
            };
            if !status.is_success() {
                let message = value
                    .get("message")
                    .or_else(|| value.get("error"))
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
                    .to_string();
                // A member cut off from its cluster cannot serve; another may.
                if status.is_server_error() && n > 1 {
                    last_err = format!("{}: {message}", self.inner.endpoints[at]);
                    continue;
                }
                return Err(EtcdError::Refused { call, message });
            }
            self.inner.current.store(at, Ordering::Relaxed);
            return Ok(value);
        }
        Err(EtcdError::Unreachable(last_err))
    }

    pub async fn get(&self, key: Vec<u8>) -> Result<Option<Vec<u8>>, EtcdError> {
        let v = self
            .call("range", "/v3/kv/range", json!({"key": b64(&key)}))
            .await?;
        Ok(kvs(&v).into_iter().next().map(|kv| kv.value))
    }

    /// Every pair whose key starts with `prefix`, in key order; at most `limit` (0: all).
    pub async fn scan(&self, prefix: Vec<u8>, limit: usize) -> Result<Vec<Kv>, EtcdError> {
        let body = json!({
            "key": b64(&prefix),
            "range_end": b64(&prefix_end(&prefix)),
            "limit": limit,
        });
        Ok(kvs(&self.call("range", "/v3/kv/range", body).await?))
    }

    /// Up to `limit` pairs with `from <= key < to`, highest key first.
    pub async fn scan_rev(
        &self,
        from: Vec<u8>,
        to: Vec<u8>,
        limit: usize,
    ) -> Result<Vec<Kv>, EtcdError> {
        let body = json!({
            "key": b64(&from),
            "range_end": b64(&to),
            "limit": limit,
            "sort_order": "DESCEND",
            "sort_target": "KEY",
        });
        Ok(kvs(&self.call("range", "/v3/kv/range", body).await?))
    }

    pub async fn count(&self, prefix: Vec<u8>) -> Result<u64, EtcdError> {
        let body = json!({
            "key": b64(&prefix),
            "range_end": b64(&prefix_end(&prefix)),
            "count_only": true,
        });
        let v = self.call("range", "/v3/kv/range", body).await?;
        Ok(num(&v["count"]) as u64)
    }

    pub async fn put(&self, key: Vec<u8>, value: Vec<u8>, lease: i64) -> Result<(), EtcdError> {
        let mut body = json!({"key": b64(&key), "value": b64(&value)});
        if lease != 0 {
            body["lease"] = json!(lease.to_string());
        }
        self.call("put", "/v3/kv/put", body).await.map(drop)
    }

    /// Deletes one key; whether it existed.
    pub async fn delete(&self, key: Vec<u8>) -> Result<bool, EtcdError> {
        let v = self
            .call("delete", "/v3/kv/deleterange", json!({"key": b64(&key)}))
            .await?;
        Ok(num(&v["deleted"]) > 0)
    }

    /// Applies `writes` if every compare holds, atomically; whether it did. Puts are under
    /// `lease` unless it is 0.
    pub async fn txn(
        &self,
        compares: Vec<Compare>,
        writes: Vec<Write>,
        lease: i64,
    ) -> Result<bool, EtcdError> {
        let compare: Vec<Value> = compares
            .iter()
            .map(|c| match &c.value {
                Some(v) => json!({"key": b64(&c.key), "target": "VALUE", "result": "EQUAL", "value": b64(v)}),
                None => json!({"key": b64(&c.key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}),
            })
            .collect();
        let success: Vec<Value> = writes
            .iter()
            .map(|w| match &w.value {
                Some(v) if lease != 0 => json!({"request_put": {"key": b64(&w.key), "value": b64(v), "lease": lease.to_string()}}),
                Some(v) => json!({"request_put": {"key": b64(&w.key), "value": b64(v)}}),
                None => json!({"request_delete_range": {"key": b64(&w.key)}}),
            })
            .collect();
        let v = self
            .call(
                "txn",
                "/v3/kv/txn",
                json!({"compare": compare, "success": success}),
            )
            .await?;
        Ok(v["succeeded"].as_bool().unwrap_or(false))
    }

    /// A lease of `ttl` seconds: its id.
    pub async fn grant(&self, ttl: u64) -> Result<i64, EtcdError> {
        let v = self
            .call("lease grant", "/v3/lease/grant", json!({"TTL": ttl}))
            .await?;
        Ok(num(&v["ID"]))
    }

    /// Renews a lease; `false` when it is gone (expired or revoked).
    pub async fn keep_alive(&self, lease: i64) -> Result<bool, EtcdError> {
        let v = self
            .call(
                "lease keepalive",
                "/v3/lease/keepalive",
                json!({"ID": lease.to_string()}),
            )
            .await?;
        Ok(num(&v["result"]["TTL"]) > 0)
    }

    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call(
            "lease revoke",
            "/v3/lease/revoke",
            json!({"ID": lease.to_string()}),
        )
        .await
        .map(drop)
    }

    /// The size of the member's database, bytes.
    pub async fn db_size(&self) -> Result<u64, EtcdError> {
        let v = self
            .call("status", "/v3/maintenance/status", json!({}))
            .await?;
        Ok(num(&v["dbSize"]) as u64)
    }

    /// Follows every change under `prefix`: calls `on_key` with each changed key, and
    /// `on_reconnect` whenever the stream had to be opened again (changes may have been missed
    /// meanwhile). Runs until the process ends.
    pub async fn watch(
        self,
        prefix: Vec<u8>,
        on_key: impl Fn(&[u8]) + Send + 'static,
        on_reconnect: impl Fn() + Send + 'static,
    ) {
        use futures_util::StreamExt;
        let body = json!({"create_request": {
            "key": b64(&prefix),
            "range_end": b64(&prefix_end(&prefix)),
        }});
        let mut first = true;
        loop {
            let n = self.inner.endpoints.len();
            let at = self.inner.current.load(Ordering::Relaxed) % n;
            let url = format!("{}/v3/watch", self.inner.endpoints[at]);
            let resp = self.inner.http.post(&url).json(&body).send().await;
            match resp {
                Ok(r) if r.status().is_success() => {
                    if !first {
                        on_reconnect();
                    }
                    first = false;
                    let mut stream = r.bytes_stream();
                    let mut buf = Vec::new();
                    while let Some(Ok(chunk)) = stream.next().await {
                        buf.extend_from_slice(&chunk);
                        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = buf.drain(..=end).collect();
                            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                                continue;
                            };
                            if let Some(events) = v["result"]["events"].as_array() {
                                for e in events {
                                    on_key(&unb64(&e["kv"]["key"]));
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
            // The stream ended or never opened: the next endpoint, after a moment.
            self.inner.current.store((at + 1) % n, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn kvs(v: &Value) -> Vec<Kv> {
    v["kvs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|kv| Kv {
                    key: unb64(&kv["key"]),
                    value: unb64(&kv["value"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_endpoints_and_a_prefix() {
        let (e, p) = parse_url("etcd://10.0.0.1:2379,10.0.0.2:2379").unwrap();
        assert_eq!(e, ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]);
        assert_eq!(p, "/caas");
        let (_, p) = parse_url("etcd://127.0.0.1:2379/test/one/").unwrap();
        assert_eq!(p, "/test/one");
        assert!(parse_url("http://x:2379").is_err());
        assert!(parse_url("etcd://").is_err());
    }

    #[test]
    fn a_prefix_ends_after_its_last_key() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b""), [0]);
    }
}
