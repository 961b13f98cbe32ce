//! The log hub: per app, a bounded history of recent lines plus a live fan-out to readers.
//!
//! Writers never wait: a reader that falls behind loses lines and is told how many
//! (`broadcast`'s lag count), rather than slowing the app, the gateway or the agent down.

use caas_api::{LogLine, LogSource, Timestamp};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Longest line kept; longer output is cut (apps can print anything).
const MAX_LINE: usize = 8 * 1024;

pub struct LogHub {
    apps: Mutex<HashMap<String, Arc<AppLog>>>,
    history: usize,
    fanout: usize,
}

struct AppLog {
    recent: Mutex<VecDeque<LogLine>>,
    tx: broadcast::Sender<LogLine>,
}

impl LogHub {
    pub fn new(history: usize, fanout: usize) -> Self {
        Self {
            apps: Mutex::new(HashMap::new()),
            history,
            fanout,
        }
    }

    fn app(&self, app: &str) -> Arc<AppLog> {
        let mut apps = self.apps.lock().unwrap();
        apps.entry(app.to_string())
            .or_insert_with(|| {
                Arc::new(AppLog {
                    recent: Mutex::new(VecDeque::with_capacity(self.history.min(1024))),
                    tx: broadcast::channel(self.fanout).0,
                })
            })
            .clone()
    }

    pub fn publish(&self, app: &str, mut line: LogLine) {
        if line.text.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.text.is_char_boundary(cut) {
                cut -= 1;
            }
            line.text.truncate(cut);
        }
        let log = self.app(app);
        let mut recent = log.recent.lock().unwrap();
        if recent.len() == self.history {
            recent.pop_front();
        }
        recent.push_back(line.clone());
        // Sent under the history lock so a subscriber sees each line exactly once: either in
        // its snapshot or on its receiver. No receivers is fine.
        let _ = log.tx.send(line);
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

    /// The last `lines` lines and a receiver for everything after them.
    pub fn subscribe(
        &self,
        app: &str,
        lines: usize,
    ) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        let log = self.app(app);
        let recent = log.recent.lock().unwrap();
        let rx = log.tx.subscribe();
        let skip = recent.len().saturating_sub(lines);
        (recent.iter().skip(skip).cloned().collect(), rx)
    }

    /// Forgets an app's history (the app was destroyed). Live readers see their stream end.
    pub fn remove(&self, app: &str) {
        self.apps.lock().unwrap().remove(app);
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

    #[tokio::test]
    async fn history_is_bounded_and_live_lines_follow_it() {
        let hub = LogHub::new(3, 16);
        for i in 0..5 {
            hub.publish("a", line(&i.to_string()));
        }
        let (recent, mut rx) = hub.subscribe("a", 10);
        let texts: Vec<_> = recent.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["2", "3", "4"]);
        let (two, _) = hub.subscribe("a", 2);
        assert_eq!(two.len(), 2);
        hub.publish("a", line("5"));
        assert_eq!(rx.recv().await.unwrap().text, "5");
        let (other, _) = hub.subscribe("b", 10);
        assert!(other.is_empty(), "apps do not see each other's lines");
    }

    #[tokio::test]
    async fn a_slow_reader_is_told_what_it_missed() {
        let hub = LogHub::new(10, 4);
        let (_, mut rx) = hub.subscribe("a", 0);
        for i in 0..10 {
            hub.publish("a", line(&i.to_string()));
        }
        match rx.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, 6),
            other => panic!("expected lag, got {other:?}"),
        }
        assert_eq!(rx.recv().await.unwrap().text, "6");
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let hub = LogHub::new(10, 4);
        hub.publish("a", line(&"é".repeat(MAX_LINE)));
        let (recent, _) = hub.subscribe("a", 1);
        assert!(recent[0].text.len() <= MAX_LINE);
    }
}
