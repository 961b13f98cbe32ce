//! Keep-alive connections to instances, per address. Connecting is done here, before a request
//! is handed over, so a refused connection can move on to the next instance without having
//! consumed the request body. HTTP/1.1 connections carry one request at a time and wait in an
//! idle list; an app that speaks HTTP/2 gets one shared connection per instance, which carries
//! every request to it at once.

use super::ReqBody;
use hyper::body::Incoming;
use hyper::client::conn::{http1::SendRequest, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle connections older than this are dropped; app servers commonly close theirs after 5-60 s,
/// and a connection they closed is only found out when used.
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
const MAX_IDLE_PER_ADDR: usize = 64;

/// A connection ready for a request, and since when it waits.
type Idle = (SendRequest<ReqBody>, Instant);

#[derive(Clone, Default)]
pub struct Pool {
    idle: Arc<Mutex<HashMap<SocketAddr, Vec<Idle>>>>,
    /// Addresses that refused a connection lately, and until when they are skipped.
    ejected: Arc<Mutex<HashMap<SocketAddr, Instant>>>,
    /// The HTTP/2 connection to each instance of an app that speaks it.
    h2: Arc<Mutex<HashMap<SocketAddr, http2::SendRequest<ReqBody>>>>,
}

/// A connection to an instance, ready for a request.
pub enum Sender {
    H1(SendRequest<ReqBody>),
    H2(http2::SendRequest<ReqBody>),
}

impl Sender {
    /// Sends `req`; when it could not be sent at all, the error hands it back.
    pub async fn try_send_request(
        &mut self,
        req: Request<ReqBody>,
    ) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<ReqBody>>> {
        match self {
            Self::H1(s) => s.try_send_request(req).await,
            Self::H2(s) => s.try_send_request(req).await,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {0} timed out")]
    Timeout(SocketAddr),
    #[error("connect to {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("HTTP handshake with {0}: {1}")]
    Handshake(SocketAddr, hyper::Error),
}

impl Pool {
    /// An idle connection if one is usable.
    pub fn take_idle(&self, addr: SocketAddr) -> Option<SendRequest<ReqBody>> {
        let mut idle = self.idle.lock().unwrap();
        let list = idle.get_mut(&addr)?;
        while let Some((sender, since)) = list.pop() {
            if sender.is_ready() && since.elapsed() < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    }

    pub async fn connect(&self, addr: SocketAddr) -> Result<SendRequest<ReqBody>, ConnectError> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Timeout(addr))?
            .map_err(|e| ConnectError::Io(addr, e))?;
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| ConnectError::Handshake(addr, e))?;
        // The connection task ends when the connection closes, or when both sides drop.
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(sender)
    }

    /// The shared HTTP/2 connection to `addr`: the open one, or (`fresh`, or none is open) a new
    /// one.
    pub async fn h2(
        &self,
        addr: SocketAddr,
        fresh: bool,
    ) -> Result<http2::SendRequest<ReqBody>, ConnectError> {
        if !fresh {
            if let Some(s) = self.h2.lock().unwrap().get(&addr) {
                if !s.is_closed() {
                    return Ok(s.clone());
                }
            }
        }
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Timeout(addr))?
            .map_err(|e| ConnectError::Io(addr, e))?;
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .map_err(|e| ConnectError::Handshake(addr, e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.h2.lock().unwrap().insert(addr, sender.clone());
        Ok(sender)
    }

    /// Returns a connection to the pool once its current response has been read whole.
    pub fn recycle(&self, addr: SocketAddr, mut sender: SendRequest<ReqBody>) {
        let pool = self.clone();
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                let mut idle = pool.idle.lock().unwrap();
                let list = idle.entry(addr).or_default();
                list.retain(|(s, since)| !s.is_closed() && since.elapsed() < IDLE_TIMEOUT);
                if list.len() < MAX_IDLE_PER_ADDR {
                    list.push((sender, Instant::now()));
                }
            }
        });
    }

    /// Skips `addr` for `how_long` (passive health: it refused or timed out a connection).
    pub fn eject(&self, addr: SocketAddr, how_long: Duration) {
        self.ejected
            .lock()
            .unwrap()
            .insert(addr, Instant::now() + how_long);
    }

    pub fn is_ejected(&self, addr: SocketAddr) -> bool {
        let mut ejected = self.ejected.lock().unwrap();
        match ejected.get(&addr) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                ejected.remove(&addr);
                false
            }
            None => false,
        }
    }

    /// Drops idle connections to addresses that left the routing table, so a drained instance
    /// sees its keep-alive connections close.
    pub fn retain_addrs(&self, keep: &std::collections::HashSet<SocketAddr>) {
        self.idle
            .lock()
            .unwrap()
            .retain(|addr, _| keep.contains(addr));
        self.ejected
            .lock()
            .unwrap()
            .retain(|addr, _| keep.contains(addr));
        self.h2
            .lock()
            .unwrap()
            .retain(|addr, _| keep.contains(addr));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ejected_address_is_skipped_until_its_time_is_up() {
        let pool = Pool::default();
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        assert!(!pool.is_ejected(a));
        pool.eject(a, Duration::from_secs(60));
        pool.eject(b, Duration::ZERO);
        assert!(pool.is_ejected(a));
        assert!(!pool.is_ejected(b), "its time is up");
        // An address that left the table is forgotten.
        pool.retain_addrs(&std::collections::HashSet::new());
        assert!(!pool.is_ejected(a));
    }
}
