//! What connects an app to the outside by webhook: its git connection (`git/APP` → the
//! repository, branch, deploy token and webhook secret, and which deliveries and commits it
//! took) and its notification webhooks (`notify/APP` → URL, events, signing secret). Both are
//! secrets at rest in the store, as config vars are; the API never shows them after creation.
//! Beside them, each notification webhook's recent deliveries (`delivery/APP/URL` → the newest
//! first), so that `caas webhooks` still shows them after a restart.

use super::{decode, encode, Result, Store, UpdateError};
use caas_api::hooks::NotifyDelivery;
use caas_api::Timestamp;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

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

/// App names hold no `/`, so `delivery/APP/` is the prefix of that app's webhooks alone.
fn deliveries_prefix(app: &str) -> String {
    format!("delivery/{app}/")
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
        f: impl FnMut(&mut Vec<NotifyHookRecord>) -> std::result::Result<(), E>,
    ) -> Result<Vec<NotifyHookRecord>, UpdateError<E>> {
        self.update_list(&notify_key(app), f)
    }

    /// The recent deliveries to one of the app's notification webhooks, newest first.
    pub fn notify_deliveries(&self, app: &str, url: &str) -> Result<Vec<NotifyDelivery>> {
        let key = format!("{}{url}", deliveries_prefix(app));
        Ok(self
            .inner
            .hooks
            .get(key)?
            .map(|v| decode("hooks", &v))
            .transpose()?
            .unwrap_or_default())
    }

    /// Records a delivery (a new one, or a later try of one recorded), keeping the newest
    /// `keep`.
    pub fn record_delivery(
        &self,
        app: &str,
        url: &str,
        d: &NotifyDelivery,
        keep: usize,
    ) -> Result<()> {
        let key = format!("{}{url}", deliveries_prefix(app));
        let put = |list: &mut Vec<NotifyDelivery>| {
            match list.iter_mut().find(|x| x.id == d.id) {
                Some(x) => *x = d.clone(),
                None => {
                    list.insert(0, d.clone());
                    list.truncate(keep);
                }
            }
            Ok::<_, std::convert::Infallible>(())
        };
        match self.update_list(&key, put) {
            Ok(_) => Ok(()),
            Err(UpdateError::Store(e)) => Err(e),
            Err(UpdateError::Rejected(never)) => match never {},
        }
    }

    /// The app's webhook `url` was removed: its deliveries go too.
    pub fn forget_deliveries(&self, app: &str, url: &str) -> Result<()> {
        self.inner
            .hooks
            .remove(format!("{}{url}", deliveries_prefix(app)))
            .map(|_| ())
    }

    /// Read-modify-write of a JSON list under `key` with compare-and-swap (an empty list is
    /// no key); `f` may run more than once.
    fn update_list<T: Serialize + DeserializeOwned, E>(
        &self,
        key: &str,
        mut f: impl FnMut(&mut Vec<T>) -> std::result::Result<(), E>,
    ) -> Result<Vec<T>, UpdateError<E>> {
        loop {
            let old = self.inner.hooks.get(key)?;
            let mut list: Vec<T> = match &old {
                Some(v) => decode("hooks", v)?,
                None => Vec::new(),
            };
            f(&mut list).map_err(UpdateError::Rejected)?;
            let new = (!list.is_empty()).then(|| encode(&list));
            if self.inner.hooks.cas(key, old.as_deref(), new.as_deref())? {
                return Ok(list);
            }
        }
    }

    pub(super) fn forget_app_hooks(&self, app: &str) -> Result<()> {
        self.inner.hooks.remove(git_key(app))?;
        self.inner.hooks.remove(notify_key(app))?;
        for (key, _) in self.inner.hooks.scan(deliveries_prefix(app))? {
            self.inner.hooks.remove(key)?;
        }
        Ok(())
    }
}
