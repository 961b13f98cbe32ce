//! Deploy notifications (`caas webhooks:add`): each release verdict, failed build and crash loop
//! is POSTed as a signed JSON event to the app's notification webhooks.
//!
//! The events are the platform's own log lines, taken from the log hub's tap (the scheduler,
//! the builder and the agents already say each of them there, once): no writer learns about
//! notifications, and the hub never waits for them. [`classify`] and [`CrashLoops`] are the
//! pure part. Each delivery is a task of its own that retries with back-off; at most
//! [`MAX_IN_FLIGHT`] run at once and past that new ones are recorded as failed, so a receiver
//! that is down costs a bounded number of sleeping tasks and never slows anything else.

use crate::store::{NotifyHookRecord, Store};
use caas_api::hooks::{DeliveryState, NotifyDelivery, NotifyEvent};
use caas_api::{LogLine, Timestamp};
use hmac::{Hmac, Mac};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Lines waiting for the notifier; past this the hub drops them.
pub const TAP_QUEUE: usize = 1024;
/// Deliveries under way (trying or waiting to retry) at once.
const MAX_IN_FLIGHT: usize = 256;
/// Tries per delivery, and the wait before the second; it doubles after each.
const ATTEMPTS: u32 = 5;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries remembered per webhook for `caas webhooks`.
const RECENT: usize = 20;
/// A crash loop: this many crashes of one instance within [`CRASH_WINDOW`]; said once per
/// window.
const CRASHES: usize = 3;
const CRASH_WINDOW: Duration = Duration::from_secs(600);

pub const SIGNATURE_HEADER: &str = "x-caas-signature-256";

/// What a platform line is news of.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    pub event: &'static str,
    pub status: &'static str,
    pub release: Option<u64>,
    pub build: Option<u64>,
    pub instance: Option<String>,
}

fn leading_number(text: &str) -> Option<(u64, &str)> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    Some((text[..end].parse().ok()?, &text[end..]))
}

/// The platform's lines that notifications are about (the texts the scheduler, builder and
/// agents write: `v3 is up (...)`, `v3 failed: ...`, `Build 4 failed: ...`, `web.1 crashed:
/// ...`).
pub fn classify(tag: &str, text: &str) -> Option<Classified> {
    let none = Classified {
        event: "",
        status: "",
        release: None,
        build: None,
        instance: None,
    };
    match tag {
        "deploy" => {
            let (version, rest) = leading_number(text.strip_prefix('v')?)?;
            let status = if rest.starts_with(" is up") {
                "succeeded"
            } else if rest.starts_with(" failed: ") {
                "failed"
            } else {
                return None;
            };
            Some(Classified {
                event: "release",
                status,
                release: Some(version),
                ..none
            })
        }
        "build" => {
            let (number, rest) = leading_number(text.strip_prefix("Build ")?)?;
            rest.starts_with(" failed").then_some(Classified {
                event: "build",
                status: "failed",
                build: Some(number),
                ..none
            })
        }
        "crash" => {
            let (instance, rest) = text.split_once(' ')?;
            rest.starts_with("crashed:").then(|| Classified {
                event: "crash",
                status: "crash_loop",
                instance: Some(instance.to_string()),
                ..none
            })
        }
        _ => None,
    }
}

/// Crashes per instance: [`CrashLoops::crashed`] says when one makes a loop.
#[derive(Default)]
pub struct CrashLoops {
    seen: HashMap<(String, String), (VecDeque<Instant>, Option<Instant>)>,
}

impl CrashLoops {
    /// Records a crash; `true` when it is the [`CRASHES`]th within the window and the loop was
    /// not said within the window.
    pub fn crashed(&mut self, app: &str, instance: &str, now: Instant) -> bool {
        if self.seen.len() > 10_000 {
            self.seen.clear(); // bounded: forgetting old crashes only delays a notice
        }
        let (times, said) = self
            .seen
            .entry((app.to_string(), instance.to_string()))
            .or_default();
        times.retain(|t| now.duration_since(*t) < CRASH_WINDOW);
        times.push_back(now);
        let recently_said = said.is_some_and(|t| now.duration_since(t) < CRASH_WINDOW);
        if times.len() >= CRASHES && !recently_said {
            *said = Some(now);
            return true;
        }
        false
    }
}

/// `sha256=HEX(HMAC-SHA256(secret, body))`, as GitHub signs its webhooks.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub struct Notifier {
    pub store: Store,
    pub rx: mpsc::Receiver<(String, LogLine)>,
}

impl Notifier {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let client = match reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("deploy notifications are off: {e}");
                return;
            }
        };
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut loops = CrashLoops::default();
        loop {
            let (app, line) = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = self.rx.recv() => match next {
                    Some(next) => next,
                    None => break,
                },
            };
            let Some(c) = classify(&line.tag, &line.text) else {
                continue;
            };
            if c.event == "crash"
                && !loops.crashed(&app, c.instance.as_deref().unwrap_or(""), Instant::now())
            {
                continue;
            }
            let hooks = match self.store.notify_hooks(&app) {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(app, "notifications: {e}");
                    continue;
                }
            };
            for hook in hooks
                .into_iter()
                .filter(|h| h.events.iter().any(|e| e == c.event))
            {
                let event = NotifyEvent {
                    id: format!("n.{}", crate::auth::short_id()),
                    event: c.event.to_string(),
                    app: app.clone(),
                    status: c.status.to_string(),
                    text: line.text.clone(),
                    release: c.release,
                    build: c.build,
                    instance: c.instance.clone(),
                    at: line.ts,
                };
                let delivery = Delivery {
                    client: client.clone(),
                    store: self.store.clone(),
                    hook,
                    event,
                };
                if in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    delivery
                        .record(
                            DeliveryState::Failed,
                            0,
                            None,
                            Some("too many deliveries under way: dropped".into()),
                        )
                        .await;
                    continue;
                }
                let (in_flight, stop) = (in_flight.clone(), shutdown.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = delivery.run() => {}
                        _ = stop.cancelled() => {}
                    }
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                });
            }
        }
    }
}

struct Delivery {
    client: reqwest::Client,
    store: Store,
    hook: NotifyHookRecord,
    event: NotifyEvent,
}

impl Delivery {
    /// Keeps where the delivery stands in the store (flushed: `caas webhooks` shows it after
    /// a restart too). A store that fails loses a line of history, never the delivery.
    async fn record(
        &self,
        state: DeliveryState,
        attempts: u32,
        status: Option<u16>,
        error: Option<String>,
    ) {
        let d = NotifyDelivery {
            id: self.event.id.clone(),
            event: self.event.event.clone(),
            state,
            attempts,
            status,
            error,
            at: Timestamp::now(),
        };
        let (app, url) = (&self.event.app, &self.hook.url);
        let kept = match self.store.record_delivery(app, url, &d, RECENT) {
            Ok(()) => self.store.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = kept {
            tracing::error!(app, url, "recording a notification delivery: {e}");
        }
    }

    async fn run(self) {
        let body = serde_json::to_vec(&self.event).expect("events serialize");
        let signature = sign(&self.hook.secret, &body);
        let mut wait = FIRST_RETRY;
        for attempt in 1..=ATTEMPTS {
            let sent = self
                .client
                .post(&self.hook.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::USER_AGENT, "caasd")
                .header("x-caas-event", &self.event.event)
                .header("x-caas-delivery", &self.event.id)
                .header(SIGNATURE_HEADER, &signature)
                .body(body.clone())
                .send()
                .await;
            let (status, error) = match sent {
                Ok(r) if r.status().is_success() => {
                    let status = Some(r.status().as_u16());
                    return self
                        .record(DeliveryState::Delivered, attempt, status, None)
                        .await;
                }
                Ok(r) => (
                    Some(r.status().as_u16()),
                    format!("answered {}", r.status()),
                ),
                Err(e) => (None, e.without_url().to_string()),
            };
            let last = attempt == ATTEMPTS;
            let state = if last {
                DeliveryState::Failed
            } else {
                DeliveryState::Retrying
            };
            tracing::warn!(
                app = self.event.app,
                url = self.hook.url,
                attempt,
                "notification: {error}"
            );
            self.record(state, attempt, status, Some(error)).await;
            if !last {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A platform line's tag and text, and the event and status it makes (if any).
    type Row<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);

    #[test]
    fn the_platform_lines_notifications_are_about() {
        let rows: Vec<Row> = vec![
            ("deploy", "v3 is up (1 web)", Some(("release", "succeeded"))),
            (
                "deploy",
                "v3 failed: crashed on start; v2 keeps serving",
                Some(("release", "failed")),
            ),
            ("deploy", "Deploying v3 (build 4)", None),
            ("deploy", "Stopping v1 (web.4) to make way for v2", None),
            (
                "build",
                "Build 4 failed: no Procfile",
                Some(("build", "failed")),
            ),
            ("build", "Build 4 started", None),
            (
                "crash",
                "web.1 crashed: exited with status 3; restarting in 2s",
                Some(("crash", "crash_loop")),
            ),
            (
                "crash",
                "web.1 found stopped: it exited with status 0; restarting in 0s",
                None,
            ),
            ("config", "v3 is up", None),
        ];
        for (tag, text, want) in rows {
            let got = classify(tag, text).map(|c| (c.event, c.status));
            assert_eq!(got, want, "{tag}: {text}");
        }
        let c = classify("deploy", "v12 is up (2 web)").unwrap();
        assert_eq!(c.release, Some(12));
        assert_eq!(
            classify("build", "Build 7 failed: x").unwrap().build,
            Some(7)
        );
        assert_eq!(
            classify("crash", "worker.2 crashed: killed")
                .unwrap()
                .instance
                .as_deref(),
            Some("worker.2")
        );
    }

    #[test]
    fn the_third_crash_in_the_window_is_a_loop_said_once() {
        let mut l = CrashLoops::default();
        let t = Instant::now();
        let s = Duration::from_secs;
        assert!(!l.crashed("a", "web.1", t));
        assert!(!l.crashed("a", "web.1", t + s(1)));
        assert!(
            !l.crashed("a", "web.2", t + s(1)),
            "another instance counts apart"
        );
        assert!(l.crashed("a", "web.1", t + s(2)), "third crash: a loop");
        assert!(!l.crashed("a", "web.1", t + s(3)), "said once per window");
        assert!(!l.crashed("b", "web.1", t + s(3)));
        // Long after: the old crashes and the notice have aged out.
        let later = t + CRASH_WINDOW + s(10);
        assert!(!l.crashed("a", "web.1", later));
        assert!(!l.crashed("a", "web.1", later + s(1)));
        assert!(l.crashed("a", "web.1", later + s(2)));
    }

    #[test]
    fn signatures_are_githubs() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), RFC 4231 style.
        assert_eq!(
            sign("key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
