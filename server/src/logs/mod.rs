//! The log hub: every app's lines, kept on disk and fanned out live to readers.
//!
//! - **Kept**: each app has a bounded log on disk (`disk.rs`: append-only segments, oldest
//!   dropped first, `caasd --app-log-size`), so `caas logs` shows what happened before a restart
//!   or a `kill -9`. Platform events, build output and app output shipped by agents are written
//!   through before the call returns; router lines (one per request, on the gateway's hot path)
//!   are buffered and written every [`FLUSH_EVERY`] by [`LogHub::flusher`], or sooner when a
//!   buffer fills.
//! - **Fanned out**: a `broadcast` channel per app, made when the first reader comes and dropped
//!   with the last, so an app nobody follows costs no buffer. Writers never wait: a reader that
//!   falls behind loses lines and is told how many (`broadcast`'s lag count), rather than slowing
//!   the app, the gateway or the agent down.
//! - A reader's snapshot of stored lines and its live receiver meet exactly: both are taken under
//!   the app's lock, so each line reaches it once.

mod disk;
mod drain;
mod filter;

pub use drain::Target as DrainTarget;
pub use filter::LogFilter;

use caas_api::{LogLine, LogSource, Timestamp};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Longest line kept; longer output is cut (apps can print anything).
const MAX_LINE: usize = 8 * 1024;
/// How often buffered router lines reach the disk.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// A buffer this full is written at once.
const BUFFER_LIMIT: usize = 64 * 1024;
/// Lines kept per app when there is no disk (tests).
const MEMORY_HISTORY: usize = 1500;

pub struct LogHub {
    /// `None`: keep a bounded history in memory instead (tests).
    dir: Option<PathBuf>,
    cap: u64,
    fanout: usize,
    apps: Mutex<HashMap<String, Arc<Mutex<AppLog>>>>,
    /// Parent of every drain's task: cancelled when the hub's flusher ends.
    drains_stop: CancellationToken,
    /// Platform lines are offered here too (deploy notifications, `crate::notify`), without
    /// waiting: a full queue drops the line rather than hold up a writer.
    tap: std::sync::OnceLock<tokio::sync::mpsc::Sender<(String, LogLine)>>,
}

#[derive(Default)]
struct AppLog {
    /// Each line also goes to these, without waiting.
    drains: Vec<drain::Drain>,
    file: Option<disk::AppFile>,
    /// Encoded lines not yet written.
    pending: Vec<u8>,
    /// Without a disk: the recent lines.
    memory: VecDeque<LogLine>,
    tx: Option<broadcast::Sender<LogLine>>,
    /// A write failed (disk full?): said once, not on every line.
    failing: bool,
    /// Lines published since caasd started, by source (`GET /metrics`).
    counts: [u64; 4],
}

/// An app's log figures since caasd started (`GET /metrics`).
pub struct AppLogStats {
    pub app: String,
    /// Lines published, by source (sources with none left out).
    pub lines: Vec<(LogSource, u64)>,
    /// `(drain id, delivered, dropped)`.
    pub drains: Vec<(String, u64, u64)>,
}

/// What a reader gets: the stored lines it asked for and a receiver for what comes after them.
pub struct Subscription {
    pub recent: Vec<LogLine>,
    pub live: broadcast::Receiver<LogLine>,
}

impl LogHub {
    /// Logs kept in `dir/APP/`, at most about `cap` bytes per app; `fanout` lines of slack per
    /// live reader.
    pub fn new(dir: PathBuf, cap: u64, fanout: usize) -> Self {
        Self {
            dir: Some(dir),
            cap,
            fanout,
            apps: Mutex::new(HashMap::new()),
            drains_stop: CancellationToken::new(),
            tap: std::sync::OnceLock::new(),
        }
    }

    /// A hub that keeps recent lines in memory only.
    #[cfg(test)]
    pub fn in_memory(fanout: usize) -> Self {
        Self {
            dir: None,
            cap: 0,
            fanout,
            apps: Mutex::new(HashMap::new()),
            drains_stop: CancellationToken::new(),
            tap: std::sync::OnceLock::new(),
        }
    }

    fn app(&self, app: &str) -> Arc<Mutex<AppLog>> {
        let mut apps = self.apps.lock().unwrap();
        if let Some(log) = apps.get(app) {
            return log.clone();
        }
        let mut log = AppLog::default();
        if let Some(dir) = &self.dir {
            match disk::AppFile::open(dir.join(app), self.cap) {
                Ok(f) => log.file = Some(f),
                Err(e) => {
                    tracing::error!(app, "opening the app's log: {e}; its lines are not kept")
                }
            }
        }
        let log = Arc::new(Mutex::new(log));
        apps.insert(app.to_string(), log.clone());
        log
    }

    pub fn publish(&self, app: &str, line: LogLine) {
        let buffered = line.source == LogSource::Router;
        self.publish_all(app, vec![line], buffered);
    }

    /// Several lines of one app, written in one go (a batch an agent shipped).
    pub fn publish_batch(&self, app: &str, lines: Vec<LogLine>) {
        self.publish_all(app, lines, false);
    }

    fn publish_all(&self, app: &str, lines: Vec<LogLine>, buffered: bool) {
        let log = self.app(app);
        let mut log = log.lock().unwrap();
        for mut line in lines {
            log.counts[line.source as usize] += 1;
            if line.text.len() > MAX_LINE {
                let mut cut = MAX_LINE;
                while !line.text.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.text.truncate(cut);
            }
            if log.file.is_some() {
                disk::encode(&line, &mut log.pending);
            } else {
                if log.memory.len() == MEMORY_HISTORY {
                    log.memory.pop_front();
                }
                log.memory.push_back(line.clone());
            }
            for d in &log.drains {
                d.offer(&line);
            }
            if line.source == LogSource::Caas {
                if let Some(tap) = self.tap.get() {
                    let sent = tap.try_send((app.to_string(), line.clone()));
                    if let Err(tokio::sync::mpsc::error::TrySendError::Full(_)) = sent {
                        tracing::warn!(app, "the notification queue is full: an event was dropped");
                    }
                }
            }
            // Sent under the app's lock: a reader sees each line once, stored or live.
            if let Some(tx) = &log.tx {
                if tx.send(line).is_err() {
                    log.tx = None; // the last reader went: free the buffer
                }
            }
        }
        if !buffered || log.pending.len() >= BUFFER_LIMIT {
            log.write_pending(app);
        }
    }

    /// Where platform lines go besides the log (set once, at start).
    pub fn set_tap(&self, tx: tokio::sync::mpsc::Sender<(String, LogLine)>) {
        let _ = self.tap.set(tx);
    }

    /// A platform event from the control plane: `caas[TAG]: TEXT`.
    pub fn event(&self, app: &str, tag: &str, text: impl Into<String>) {
        let text = text.into();
        tracing::info!(app, tag, "{text}");
        self.publish(
            app,
            LogLine {
                ts: Timestamp::now(),
                source: LogSource::Caas,
                tag: tag.into(),
                text,
            },
        );
    }

    /// The last `lines` lines that `filter` accepts, and a receiver for every line after them
    /// (unfiltered: the reader filters what it receives).
    pub fn subscribe(&self, app: &str, lines: usize, filter: &LogFilter) -> Subscription {
        let log = self.app(app);
        let (reader, memory, live) = {
            let mut log = log.lock().unwrap();
            log.write_pending(app);
            let fanout = self.fanout;
            let live = log
                .tx
                .get_or_insert_with(|| broadcast::channel(fanout).0)
                .subscribe();
            let memory: Vec<LogLine> = if log.file.is_none() {
                log.memory.iter().cloned().collect()
            } else {
                Vec::new()
            };
            (log.file.as_ref().map(|f| f.reader()), memory, live)
        };
        let recent = match reader {
            // Read outside the lock: writers go on meanwhile, past the snapshot's end.
            Some(reader) => reader
                .tail(lines, |l| filter.matches(l))
                .unwrap_or_else(|e| {
                    tracing::error!(app, "reading the app's log: {e}");
                    Vec::new()
                }),
            None => {
                let kept: Vec<LogLine> = memory.into_iter().filter(|l| filter.matches(l)).collect();
                let skip = kept.len().saturating_sub(lines);
                kept.into_iter().skip(skip).collect()
            }
        };
        Subscription { recent, live }
    }

    /// Writes every buffered line.
    pub fn flush(&self) {
        let apps: Vec<(String, Arc<Mutex<AppLog>>)> = self
            .apps
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, log) in apps {
            log.lock().unwrap().write_pending(&name);
        }
    }

    /// Writes buffered lines every [`FLUSH_EVERY`] until `shutdown`, and once more then.
    pub async fn flusher(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(FLUSH_EVERY) => {}
            }
            self.flush();
        }
        self.flush();
        self.drains_stop.cancel();
    }

    /// Makes `urls` the app's drains: new ones start, removed ones stop, the others go on with
    /// their counters. The URLs were checked when they were added.
    pub fn set_drains(&self, app: &str, urls: &[String]) {
        let log = self.app(app);
        let mut log = log.lock().unwrap();
        let mut old = std::mem::take(&mut log.drains);
        for url in urls {
            if let Some(i) = old.iter().position(|d| &d.url == url) {
                log.drains.push(old.swap_remove(i));
                continue;
            }
            match DrainTarget::parse(url) {
                Ok(target) => {
                    log.drains
                        .push(drain::Drain::start(app, url, target, &self.drains_stop))
                }
                Err(e) => tracing::error!(app, "not starting a drain: {e}"),
            }
        }
        // What is left in `old` stops as it drops.
    }

    /// The app's drains and how they are doing.
    pub fn drains(&self, app: &str) -> Vec<caas_api::Drain> {
        let log = self.app(app);
        let log = log.lock().unwrap();
        log.drains
            .iter()
            .map(|d| {
                let (state, error) = d.stats.state();
                caas_api::Drain {
                    id: drain_id(&d.url),
                    url: d.url.clone(),
                    state,
                    delivered: d.stats.delivered.load(std::sync::atomic::Ordering::Relaxed),
                    queued: d.queued(),
                    dropped: d.stats.dropped.load(std::sync::atomic::Ordering::Relaxed),
                    error,
                }
            })
            .collect()
    }

    /// Lines published per app and source since caasd started, with every drain's counters.
    pub fn stats(&self) -> Vec<AppLogStats> {
        use std::sync::atomic::Ordering::Relaxed;
        let apps: Vec<(String, Arc<Mutex<AppLog>>)> = self
            .apps
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let sources = [
            LogSource::App,
            LogSource::Caas,
            LogSource::Router,
            LogSource::Build,
        ];
        let mut out: Vec<_> = apps
            .into_iter()
            .map(|(name, log)| {
                let log = log.lock().unwrap();
                let lines = sources
                    .iter()
                    .map(|s| (*s, log.counts[*s as usize]))
                    .filter(|(_, n)| *n > 0)
                    .collect();
                let drains = log
                    .drains
                    .iter()
                    .map(|d| {
                        (
                            drain_id(&d.url),
                            d.stats.delivered.load(Relaxed),
                            d.stats.dropped.load(Relaxed),
                        )
                    })
                    .collect();
                AppLogStats {
                    app: name,
                    lines,
                    drains,
                }
            })
            .collect();
        out.sort_by(|a, b| a.app.cmp(&b.app));
        out
    }

    /// An app was renamed: its log on disk moves to the new name (a log already moved, or
    /// never made, is left alone, so this can run again after a crash), and readers of the old
    /// name see their stream end. The map's lock is held throughout, so no line of either name
    /// is written meanwhile; drains are set again by the caller.
    pub fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        let mut apps = self.apps.lock().unwrap();
        if let Some(log) = apps.remove(from) {
            let mut log = log.lock().unwrap();
            log.write_pending(from);
            *log = AppLog::default();
        }
        apps.remove(to);
        match &self.dir {
            Some(dir) => crate::rename::move_dir(&dir.join(from), &dir.join(to)),
            None => Ok(()),
        }
    }

    /// Forgets an app: its log on disk goes, and live readers see their stream end.
    pub fn remove(&self, app: &str) {
        let removed = self.apps.lock().unwrap().remove(app);
        let file = match removed {
            Some(log) => std::mem::take(&mut *log.lock().unwrap()).file,
            None => None,
        };
        let result = match (file, &self.dir) {
            (Some(f), _) => f.delete(),
            (None, Some(dir)) => match std::fs::remove_dir_all(dir.join(app)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            (None, None) => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(app, "removing the app's log: {e}");
        }
    }
}

/// A drain's id: stable for its URL, short, and safe in a URL path.
pub fn drain_id(url: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(url.as_bytes());
    format!("d.{}", &hex::encode(digest)[..12])
}

impl AppLog {
    fn write_pending(&mut self, app: &str) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        if self.pending.is_empty() {
            return;
        }
        match file.append(&self.pending) {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::error!(
                    app,
                    "writing the app's log: {e}; lines are lost until it works again"
                );
            }
            Err(_) => {}
        }
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> LogLine {
        LogLine {
            ts: Timestamp::now(),
            source: LogSource::App,
            tag: "web.1".into(),
            text: text.into(),
        }
    }

    fn texts(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    fn everything() -> LogFilter {
        LogFilter::default()
    }

    #[tokio::test]
    async fn stored_lines_and_live_ones_meet_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let hub = LogHub::new(dir.path().to_path_buf(), 1 << 20, 16);
        for i in 0..5 {
            hub.publish("a", line(&i.to_string()));
        }
        let mut sub = hub.subscribe("a", 3, &everything());
        assert_eq!(texts(&sub.recent), ["2", "3", "4"]);
        hub.publish("a", line("5"));
        assert_eq!(sub.live.recv().await.unwrap().text, "5");
        let other = hub.subscribe("b", 10, &everything());
        assert!(
            other.recent.is_empty(),
            "apps do not see each other's lines"
        );
    }

    #[test]
    fn lines_survive_a_new_hub_on_the_same_folder() {
        let dir = tempfile::tempdir().unwrap();
        {
            let hub = LogHub::new(dir.path().to_path_buf(), 1 << 20, 16);
            hub.event("a", "deploy", "Deploying v1");
            hub.publish("a", line("hello"));
            // Router lines are buffered until a flush.
            hub.publish(
                "a",
                LogLine {
                    source: LogSource::Router,
                    tag: "router".into(),
                    ..line("GET /")
                },
            );
            hub.flush();
        }
        let hub = LogHub::new(dir.path().to_path_buf(), 1 << 20, 16);
        let sub = hub.subscribe("a", 10, &everything());
        assert_eq!(texts(&sub.recent), ["Deploying v1", "hello", "GET /"]);
        let only_app = LogFilter::parse(Some("app"), None, None).unwrap();
        assert_eq!(texts(&hub.subscribe("a", 10, &only_app).recent), ["hello"]);
    }

    #[test]
    fn a_removed_app_leaves_nothing_for_its_successor() {
        let dir = tempfile::tempdir().unwrap();
        let hub = LogHub::new(dir.path().to_path_buf(), 1 << 20, 16);
        hub.publish("a", line("old"));
        hub.remove("a");
        assert!(!dir.path().join("a").exists());
        assert!(hub.subscribe("a", 10, &everything()).recent.is_empty());
    }

    #[tokio::test]
    async fn a_slow_reader_is_told_what_it_missed() {
        let hub = LogHub::in_memory(4);
        let mut sub = hub.subscribe("a", 0, &everything());
        for i in 0..10 {
            hub.publish("a", line(&i.to_string()));
        }
        match sub.live.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, 6),
            other => panic!("expected lag, got {other:?}"),
        }
        assert_eq!(sub.live.recv().await.unwrap().text, "6");
    }

    #[test]
    fn an_app_nobody_follows_has_no_fanout_buffer() {
        let hub = LogHub::in_memory(4);
        let sub = hub.subscribe("a", 0, &everything());
        drop(sub);
        hub.publish("a", line("x"));
        assert!(hub.app("a").lock().unwrap().tx.is_none());
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let hub = LogHub::in_memory(4);
        hub.publish("a", line(&"é".repeat(MAX_LINE)));
        let sub = hub.subscribe("a", 1, &everything());
        assert!(sub.recent[0].text.len() <= MAX_LINE);
    }
}
