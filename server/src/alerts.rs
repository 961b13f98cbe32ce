//! Alerts: every second, each app's alert conditions are computed over their window from the
//! gateway's counts; a condition that starts holding raises a `caas[alert]` line (and a POST to
//! the app's webhook), one that stops holding clears it the same way. `evaluate` is the pure
//! part (counts and settings → which conditions hold, with their text); the transitions are
//! `Raised::update`'s, also pure. Webhooks go through a bounded queue to one sender task: a slow
//! or dead webhook never holds up the loop, and a full queue drops the notice (said in caasd's
//! log).

use crate::logs::LogHub;
use crate::store::Store;
use crate::traffic::{Counts, Traffic};
use caas_api::metrics::{AlertNotice, AlertSettings};
use caas_api::Timestamp;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(1);
/// Notices waiting for their webhook; past this they are dropped.
const WEBHOOK_QUEUE: usize = 100;
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

pub const P95: &str = "p95";
pub const ERROR_RATE: &str = "5xx_rate";

/// One condition as it stands: whether it holds, and the line that says so.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub name: &'static str,
    pub holds: bool,
    pub text: String,
}

fn window_text(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// The app's conditions over the window's counts.
pub fn evaluate(settings: &AlertSettings, c: &Counts) -> Vec<Condition> {
    let window = window_text(settings.window_secs);
    let mut out = Vec::new();
    if let Some(limit) = settings.p95_ms {
        let p95 = c.quantile_ms(0.95);
        out.push(Condition {
            name: P95,
            holds: p95.is_some_and(|p| p > limit),
            text: match p95 {
                Some(p) => format!("p95 latency {p} ms over the last {window} (limit {limit} ms)"),
                None => format!("no requests over the last {window} (p95 limit {limit} ms)"),
            },
        });
    }
    if let Some(limit) = settings.error_rate_percent {
        let requests = c.requests();
        let rate = if requests == 0 {
            0.0
        } else {
            c.status[4] as f64 * 100.0 / requests as f64
        };
        out.push(Condition {
            name: ERROR_RATE,
            holds: requests > 0 && rate > limit,
            text: format!(
                "5xx rate {rate:.1}% ({} of {requests}) over the last {window} (limit {}%)",
                c.status[4],
                crate::autoscale::policy::trim(limit)
            ),
        });
    }
    out
}

/// What is raised, per app.
#[derive(Default)]
pub struct Raised {
    inner: Mutex<HashMap<String, BTreeSet<&'static str>>>,
}

/// A change to say: `(condition, raised?, text)`.
pub type Change = (&'static str, bool, String);

impl Raised {
    /// Takes the conditions' new state; returns what was raised or cleared by it.
    pub fn update(&self, app: &str, conditions: &[Condition]) -> Vec<Change> {
        let mut inner = self.inner.lock().unwrap();
        let raised = inner.entry(app.to_string()).or_default();
        let mut changes = Vec::new();
        for c in conditions {
            if c.holds && raised.insert(c.name) {
                changes.push((c.name, true, c.text.clone()));
            } else if !c.holds && raised.remove(c.name) {
                changes.push((c.name, false, c.text.clone()));
            }
        }
        // Conditions no longer set are forgotten without a word (alerts:set changed them).
        raised.retain(|n| conditions.iter().any(|c| c.name == *n));
        changes
    }

    pub fn of(&self, app: &str) -> Vec<String> {
        self.inner
            .lock()
            .unwrap()
            .get(app)
            .map(|s| s.iter().map(|n| n.to_string()).collect())
            .unwrap_or_default()
    }

    pub fn forget(&self, app: &str) {
        self.inner.lock().unwrap().remove(app);
    }
}

/// Checks a webhook URL: `http://` or `https://` with a host.
pub fn check_webhook(url: &str) -> Result<(), String> {
    let bad = |why: &str| {
        format!("invalid webhook {url:?}: {why}; use http://HOST/PATH or https://HOST/PATH")
    };
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it has spaces or control characters, or is too long"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(&format!(
            "the scheme {:?} is not one caas calls",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    Ok(())
}

pub struct Alerter {
    pub store: Store,
    pub traffic: Arc<Traffic>,
    pub logs: Arc<LogHub>,
    pub raised: Arc<Raised>,
}

impl Alerter {
    pub async fn run(self, shutdown: CancellationToken) {
        let (tx, rx) = mpsc::channel::<(String, AlertNotice)>(WEBHOOK_QUEUE);
        let sender = tokio::spawn(send_webhooks(rx));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(EVERY) => {}
            }
            let apps = match self.store.apps() {
                Ok(apps) => apps,
                Err(e) => {
                    tracing::error!("alerts: {e}");
                    continue;
                }
            };
            let now = Timestamp::now();
            let mut set: BTreeMap<String, ()> = BTreeMap::new();
            for app in apps {
                let Some(settings) = &app.alerts else {
                    continue;
                };
                set.insert(app.name.clone(), ());
                let counts =
                    self.traffic
                        .window(&app.name, now.millis() / 1000, settings.window_secs);
                let conditions = evaluate(settings, &counts);
                for (name, raised, text) in self.raised.update(&app.name, &conditions) {
                    let word = if raised { "RAISED" } else { "CLEARED" };
                    self.logs
                        .event(&app.name, "alert", format!("{word} {name}: {text}"));
                    if let Some(url) = &settings.webhook {
                        let notice = AlertNotice {
                            app: app.name.clone(),
                            alert: name.to_string(),
                            state: if raised { "raised" } else { "cleared" }.into(),
                            text,
                            at: now,
                        };
                        if tx.try_send((url.clone(), notice)).is_err() {
                            tracing::warn!(
                                app = app.name,
                                "the alert webhook queue is full: a notice was dropped"
                            );
                        }
                    }
                }
            }
            let gone: Vec<String> = self
                .raised
                .inner
                .lock()
                .unwrap()
                .keys()
                .filter(|a| !set.contains_key(*a))
                .cloned()
                .collect();
            for app in gone {
                self.raised.forget(&app);
            }
        }
        drop(tx);
        sender.abort();
    }
}

/// POSTs each notice to its webhook, one at a time, each bounded by [`WEBHOOK_TIMEOUT`].
async fn send_webhooks(mut rx: mpsc::Receiver<(String, AlertNotice)>) {
    let client = match reqwest::Client::builder()
        .timeout(WEBHOOK_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("alert webhooks are off: {e}");
            return;
        }
    };
    while let Some((url, notice)) = rx.recv().await {
        match client.post(&url).json(&notice).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(app = notice.app, "alert webhook answered {}", r.status()),
            Err(e) => tracing::warn!(app = notice.app, "alert webhook: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caas_api::gateway::LATENCY_BUCKETS_MS;

    fn counts(ok: u64, errors: u64, slow_bucket: Option<usize>) -> Counts {
        let mut latency = vec![0; LATENCY_BUCKETS_MS.len() + 1];
        latency[slow_bucket.unwrap_or(0)] = ok + errors;
        Counts {
            status: [0, ok, 0, 0, errors],
            latency,
            latency_sum_ms: 0,
            bytes: 0,
        }
    }

    fn settings(p95_ms: Option<u64>, rate: Option<f64>) -> AlertSettings {
        AlertSettings {
            p95_ms,
            error_rate_percent: rate,
            window_secs: 60,
            webhook: None,
        }
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn conditions_hold_from_the_window_counts() {
        // (what, settings, counts) -> [(condition, holds)]
        let rows: Vec<(&str, AlertSettings, Counts, Vec<(&str, bool)>)> = vec![
            (
                "fast and fine",
                settings(Some(500), Some(1.0)),
                counts(100, 0, Some(0)),
                vec![(P95, false), (ERROR_RATE, false)],
            ),
            (
                "slow: 1 s > 500 ms",
                settings(Some(500), None),
                counts(100, 0, Some(7)),
                vec![(P95, true)],
            ),
            (
                "exactly the limit does not hold",
                settings(Some(500), None),
                counts(100, 0, Some(6)),
                vec![(P95, false)],
            ),
            (
                "2% 5xx > 1%",
                settings(None, Some(1.0)),
                counts(98, 2, None),
                vec![(ERROR_RATE, true)],
            ),
            (
                "1% 5xx is not above 1%",
                settings(None, Some(1.0)),
                counts(99, 1, None),
                vec![(ERROR_RATE, false)],
            ),
            (
                "no requests: nothing holds",
                settings(Some(500), Some(1.0)),
                counts(0, 0, None),
                vec![(P95, false), (ERROR_RATE, false)],
            ),
        ];
        for (what, s, c, want) in rows {
            let got: Vec<(&str, bool)> =
                evaluate(&s, &c).iter().map(|c| (c.name, c.holds)).collect();
            assert_eq!(got, want, "{what}");
        }
        let text = &evaluate(&settings(None, Some(1.0)), &counts(98, 2, None))[0].text;
        assert_eq!(text, "5xx rate 2.0% (2 of 100) over the last 1m (limit 1%)");
    }

    #[test]
    fn a_condition_is_raised_once_and_cleared_once() {
        let r = Raised::default();
        let c = |holds| Condition {
            name: ERROR_RATE,
            holds,
            text: format!("{holds}"),
        };
        assert_eq!(r.update("a", &[c(false)]), vec![]);
        assert_eq!(
            r.update("a", &[c(true)]),
            vec![(ERROR_RATE, true, "true".into())]
        );
        assert_eq!(
            r.update("a", &[c(true)]),
            vec![],
            "still holding: said once"
        );
        assert_eq!(r.of("a"), vec!["5xx_rate"]);
        assert_eq!(
            r.update("a", &[c(false)]),
            vec![(ERROR_RATE, false, "false".into())]
        );
        assert_eq!(r.update("a", &[c(false)]), vec![]);
        assert!(r.of("a").is_empty());
    }

    #[test]
    fn webhooks_are_http_urls() {
        assert!(check_webhook("https://hooks.example.com/caas").is_ok());
        assert!(check_webhook("http://127.0.0.1:9000/x").is_ok());
        for bad in ["ftp://x/y", "hooks.example.com", "http://", "https://a b/"] {
            assert!(check_webhook(bad).is_err(), "{bad}");
        }
    }
}
