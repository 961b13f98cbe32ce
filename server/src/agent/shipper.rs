//! Everything the agent says ends up in an app's logs through here: container output (one
//! follower per running container) and platform events (`caas[TAG]: TEXT`), queued in the
//! [`Outbox`] and sent to the control plane in batches by [`ship`]. What the control plane
//! accepted of each container is remembered ([`Shipped`]), so an adopted container is followed
//! from there, not from now.

use super::client::ClientError;
use super::session::Session;
use super::shipped::{Resume, Shipped};
use super::LABEL_ALLOC;
use crate::docker::{ContainerInfo, Engine};
use caas_api::agent::{AppLogLine, Assignment, LogBatch};
use caas_api::{LogLine, LogSource, Timestamp};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Lines waiting for the shipper; past this, lines are dropped and counted.
const LOG_BUFFER: usize = 10_000;

/// A line waiting for the shipper, with the container and engine timestamp it came from.
pub(super) struct Queued {
    line: AppLogLine,
    from: Option<(Arc<str>, u64)>,
}

/// The shipper's queue, cloned into every task that says something.
#[derive(Clone)]
pub(super) struct Outbox {
    tx: mpsc::Sender<Queued>,
    dropped: Arc<AtomicU64>,
}

impl Outbox {
    /// An outbox and the end [`ship`] reads. The shipper ends when every clone is dropped.
    pub fn new() -> (Outbox, mpsc::Receiver<Queued>) {
        let (tx, rx) = mpsc::channel(LOG_BUFFER);
        let outbox = Outbox {
            tx,
            dropped: Arc::default(),
        };
        (outbox, rx)
    }

    /// A platform event from the agent: `caas[TAG]: TEXT` in the app's logs.
    pub fn event(&self, app: &str, tag: &str, text: String) {
        tracing::info!(app, tag, "{text}");
        let line = LogLine {
            ts: Timestamp::now(),
            source: LogSource::Caas,
            tag: tag.into(),
            text,
        };
        self.line(app, line);
    }

    /// Hands a line to the shipper without waiting: when its buffer is full the line is dropped
    /// and counted, so a chatty app never slows the agent down.
    pub fn line(&self, app: &str, line: LogLine) {
        let line = AppLogLine {
            app: app.into(),
            line,
        };
        if self.tx.try_send(Queued { line, from: None }).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A line of a container's output. It waits for room: the engine keeps the container's
    /// output meanwhile, so waiting slows only this follower, never the app.
    async fn output(&self, line: AppLogLine, container: &Arc<str>, nanos: u64) {
        let queued = Queued {
            line,
            from: Some((container.clone(), nanos)),
        };
        let _ = self.tx.send(queued).await;
    }

    /// Lines dropped since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

/// Sends what the outbox receives, in batches, until every sender is gone.
pub(super) async fn ship(
    session: Arc<Session>,
    engine: Engine,
    shipped: Arc<Shipped>,
    mut rx: mpsc::Receiver<Queued>,
) {
    while let Some(first) = rx.recv().await {
        let mut lines = vec![first];
        // Gather what arrives within a moment, so a chatty app costs few requests.
        let deadline = tokio::time::sleep(Duration::from_millis(50));
        tokio::pin!(deadline);
        while lines.len() < 1000 {
            tokio::select! {
                l = rx.recv() => match l {
                    Some(l) => lines.push(l),
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        let mut from = Vec::new();
        let lines = lines
            .into_iter()
            .map(|q| {
                from.extend(q.from);
                q.line
            })
            .collect();
        let batch = LogBatch { lines };
        // Held until the control plane takes it (followers wait meanwhile; the engine keeps
        // their output), so a control plane that restarts loses nothing.
        let mut attempt = 0u32;
        loop {
            let token = session.token();
            match session.client.ship_logs(&token, &batch).await {
                Ok(()) => {
                    for (container, nanos) in &from {
                        shipped.delivered(container, *nanos);
                    }
                    shipped.save();
                    break;
                }
                Err(ClientError::Unauthorized) => {
                    let _ = session.reauthenticate(&engine, &token).await;
                }
                Err(e) => {
                    if attempt.is_multiple_of(20) {
                        tracing::warn!(
                            "shipping {} log lines (attempt {}): {e}",
                            batch.lines.len(),
                            attempt + 1
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            attempt += 1;
        }
    }
}

/// The task following one container's output. Dropping it stops the task.
struct Follower {
    handle: JoinHandle<()>,
    /// Docker timestamp (ns) of the last line shipped, so a re-follow skips what was sent.
    last_nanos: Arc<AtomicU64>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// One follower per running container of an assigned instance; owned by the agent's loop, and
/// every one of them ends when this is dropped.
pub(super) struct Followers {
    engine: Engine,
    outbox: Outbox,
    shipped: Arc<Shipped>,
    by_container: HashMap<String, Follower>,
}

impl Followers {
    pub fn new(engine: Engine, outbox: Outbox, shipped: Arc<Shipped>) -> Followers {
        Followers {
            engine,
            outbox,
            shipped,
            by_container: HashMap::new(),
        }
    }

    /// Follows a container the agent just created, from its first line.
    pub fn start(&mut self, a: &Assignment, container_id: &str) {
        self.spawn(a, container_id, 0);
    }

    /// Makes sure every running container of an assigned instance is followed, and stops
    /// following containers that are gone.
    pub fn converge(&mut self, assigned: &[Assignment], containers: &[ContainerInfo]) {
        let by_id: HashMap<&str, &Assignment> =
            assigned.iter().map(|a| (a.id.as_str(), a)).collect();
        let now_nanos = (Timestamp::now().millis()) * 1_000_000;
        for c in containers.iter().filter(|c| c.running) {
            let Some(a) = c
                .labels
                .get(LABEL_ALLOC)
                .and_then(|id| by_id.get(id.as_str()))
            else {
                continue;
            };
            let since = match self.by_container.get(&c.id) {
                Some(f) if !f.handle.is_finished() => continue,
                // It ended with the container; the container runs again: resume after the last line.
                Some(f) => f.last_nanos.load(Ordering::Relaxed),
                // Adopted from before a restart: after what was delivered of it, so what it
                // printed while nobody followed is recovered from the engine.
                None => match self.shipped.resume(&c.id) {
                    Resume::After(nanos) => nanos,
                    Resume::Now => now_nanos,
                },
            };
            self.spawn(a, &c.id, since);
        }
        let live: HashSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
        self.by_container.retain(|id, _| live.contains(id.as_str()));
        self.shipped.retain(&live);
    }

    fn spawn(&mut self, a: &Assignment, container_id: &str, since_nanos: u64) {
        let last_nanos = Arc::new(AtomicU64::new(since_nanos));
        let last = last_nanos.clone();
        let engine = self.engine.clone();
        let outbox = self.outbox.clone();
        let app = a.app.clone();
        let tag = a.instance_name();
        let id = container_id.to_string();
        let container: Arc<str> = Arc::from(container_id);
        let handle = tokio::spawn(async move {
            use futures_util::StreamExt;
            let since_secs = (since_nanos / 1_000_000_000) as i64;
            let mut stream = Box::pin(engine.follow_logs(&id, since_secs));
            while let Some(chunk) = stream.next().await {
                let Ok(chunk) = chunk else { break };
                let nanos = chunk.ts_nanos.min(u64::MAX as u128) as u64;
                if nanos != 0 && nanos <= last.load(Ordering::Relaxed) {
                    continue; // shipped before this re-follow
                }
                last.store(nanos, Ordering::Relaxed);
                let line = LogLine {
                    ts: Timestamp::from_millis(nanos / 1_000_000),
                    source: LogSource::App,
                    tag: tag.clone(),
                    text: chunk.text,
                };
                let line = AppLogLine {
                    app: app.clone(),
                    line,
                };
                outbox.output(line, &container, nanos).await;
            }
        });
        self.by_container
            .insert(container_id.to_string(), Follower { handle, last_nanos });
    }
}
