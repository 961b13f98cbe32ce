//! What connects an app to the outside by webhook: its git connection (`git/APP` → the
//! repository, branch, deploy token and webhook secret, and which deliveries and commits it
//! took) and its notification webhooks (`notify/APP` → URL, events, signing secret). Both are
//! secrets at rest in the store, as config vars are; the API never shows them after creation.

use super::{decode, encode, Result, Store, UpdateError};
use caas_api::Timestamp;
use serde::{Deserialize, Serialize};

/// Delivery ids and commits a connection remembers, to take each push once.
pub const REMEMBERED: usize = 100;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GitLinkRecord {
    pub url: String,
    pub branch: String,
    /// The deploy token caasd clones with (HTTP Basic password), if any.
    pub token: Option<String>,
    /// What push events are signed with (GitHub, Gitea) or carry (GitLab).
    pub webhook_secret: String,
    pub created_at: Timestamp,
    /// Delivery ids taken, oldest first, at most [`REMEMBERED`].
    #[serde(default)]
    pub deliveries: Vec<String>,
    /// Commits built from push events, oldest first, at most [`REMEMBERED`].
    #[serde(default)]
    pub commits: Vec<String>,
    #[serde(default)]
    pub last: Option<caas_api::hooks::GitDelivery>,
}

impl GitLinkRecord {
    /// Remembers a delivery that was taken, forgetting the oldest past [`REMEMBERED`].
    pub fn took(&mut self, delivery: caas_api::hooks::GitDelivery) {
        if let Some(id) = &delivery.id {
            self.deliveries.push(id.clone());
        }
        self.commits.push(delivery.commit.clone());
        for list in [&mut self.deliveries, &mut self.commits] {
            let over = list.len().saturating_sub(REMEMBERED);
            list.drain(..over);
        }
        self.last = Some(delivery);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NotifyHookRecord {
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub created_at: Timestamp,
}

fn git_key(app: &str) -> String {
    format!("git/{app}")
}

fn notify_key(app: &str) -> String {
    format!("notify/{app}")
}

impl Store {
    pub fn git_link(&self, app: &str) -> Result<Option<GitLinkRecord>> {
        self.inner
            .hooks
            .get(git_key(app))?
            .map(|v| decode("hooks", &v))
            .transpose()
    }

    pub fn put_git_link(&self, app: &str, rec: &GitLinkRecord) -> Result<()> {
        self.inner.hooks.insert(git_key(app), encode(rec))
    }

    /// `false` when the app had no connection.
    pub fn remove_git_link(&self, app: &str) -> Result<bool> {
        self.inner.hooks.remove(git_key(app))
    }

    pub fn notify_hooks(&self, app: &str) -> Result<Vec<NotifyHookRecord>> {
        Ok(self
            .inner
            .hooks
            .get(notify_key(app))?
            .map(|v| decode("hooks", &v))
            .transpose()?
            .unwrap_or_default())
    }

    /// Read-modify-write of an app's notification webhooks with compare-and-swap; `f` may run
    /// more than once.
    pub fn update_notify_hooks<E>(
        &self,
        app: &str,
        mut f: impl FnMut(&mut Vec<NotifyHookRecord>) -> std::result::Result<(), E>,
    ) -> Result<Vec<NotifyHookRecord>, UpdateError<E>> {
        let key = notify_key(app);
        loop {
            let old = self.inner.hooks.get(&key)?;
            let mut hooks: Vec<NotifyHookRecord> = match &old {
                Some(v) => decode("hooks", v)?,
                None => Vec::new(),
            };
            f(&mut hooks).map_err(UpdateError::Rejected)?;
            let new = (!hooks.is_empty()).then(|| encode(&hooks));
            let swapped = self.inner.hooks.cas(&key, old.as_deref(), new.as_deref())?;
            if swapped {
                return Ok(hooks);
            }
        }
    }

    pub(super) fn forget_app_hooks(&self, app: &str) -> Result<()> {
        self.inner.hooks.remove(git_key(app))?;
        self.inner.hooks.remove(notify_key(app))?;
        Ok(())
    }
}
