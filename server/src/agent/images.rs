//! Images an instance needs and this host's engine lacks come from the control plane: hosts
//! share no registry. Fetches run in the background (a large image takes a while, and
//! heartbeats must go on meanwhile); creation is retried on later passes once the image is there.
//! The fetches are owned here: they end when the agent's loop drops its `Images`.

use super::session::Session;
use super::shipper::Outbox;
use crate::docker::Engine;
use caas_api::agent::Assignment;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// How long after a failed image fetch the next one is tried.
const IMAGE_RETRY: Duration = Duration::from_secs(10);

pub(super) struct Images {
    session: Arc<Session>,
    engine: Engine,
    outbox: Outbox,
    fetches: Arc<Mutex<Fetches>>,
    /// The running fetches (and finished ones not yet reaped); dropping this aborts them.
    tasks: JoinSet<()>,
}

/// Images being fetched, and when a fetch last failed.
#[derive(Default)]
struct Fetches {
    running: HashSet<String>,
    failed: HashMap<String, Instant>,
}

impl Images {
    pub fn new(session: Arc<Session>, engine: Engine, outbox: Outbox) -> Images {
        Images {
            session,
            engine,
            outbox,
            fetches: Arc::default(),
            tasks: JoinSet::new(),
        }
    }

    /// Fetches `a`'s image unless it is being fetched, or its last fetch failed moments ago.
    pub fn fetch(&mut self, a: &Assignment) {
        while self.tasks.try_join_next().is_some() {}
        {
            let mut fetching = self.fetches.lock().unwrap();
            if let Some(failed) = fetching.failed.get(&a.image) {
                if failed.elapsed() < IMAGE_RETRY {
                    return;
                }
            }
            if !fetching.running.insert(a.image.clone()) {
                return;
            }
        }
        let (session, engine, fetches) = (
            self.session.clone(),
            self.engine.clone(),
            self.fetches.clone(),
        );
        let outbox = self.outbox.clone();
        let (app, image, name) = (a.app.clone(), a.image.clone(), a.instance_name());
        self.tasks.spawn(async move {
            let short: String = image
                .trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect();
            outbox.event(
                &app,
                "start",
                format!("Fetching image {short} for {name} from the control plane"),
            );
            let started = Instant::now();
            let result = async {
                let stream = session.client.image(&session.token(), &image).await?;
                engine.load_images(stream).await?;
                anyhow::Ok(())
            }
            .await;
            let mut fetches = fetches.lock().unwrap();
            fetches.running.remove(&image);
            match result {
                Ok(()) => {
                    fetches.failed.remove(&image);
                    let secs = started.elapsed().as_secs_f64();
                    outbox.event(
                        &app,
                        "start",
                        format!("Fetched image {short} in {secs:.1}s"),
                    );
                }
                Err(e) => {
                    fetches.failed.insert(image.clone(), Instant::now());
                    outbox.event(
                        &app,
                        "crash",
                        format!(
                            "cannot fetch image {short} from the control plane: {e:#}; retrying in {}s",
                            IMAGE_RETRY.as_secs()
                        ),
                    );
                }
            }
        });
    }
}
