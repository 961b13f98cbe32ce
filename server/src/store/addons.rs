//! Add-ons (`addons` tree: name → `AddonRecord`): the services caas runs for apps and the named
//! external bindings, with the apps they are attached to. A name is taken by compare-and-swap,
//! so two creates of one name cannot both win; every change is a compare-and-swap of the whole
//! record, so attachments never get lost to a concurrent writer.

use super::{decode, encode, Result, Store, StoreError, UpdateError};
use caas_api::addons::{AddonKind, AddonState, AppRelease, Attachment};
use caas_api::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AddonRecord {
    pub name: String,
    pub kind: AddonKind,
    pub state: AddonState,
    #[serde(default)]
    pub message: Option<String>,
    /// The host its service runs on (pinned: never moved, `lost` when its data is gone).
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// The service's password (a service's only; an external URL carries its own).
    #[serde(default)]
    pub password: Option<String>,
    /// What attached apps get in their var.
    pub url: String,
    /// Where the service is published on its host (the host's address and a port of
    /// `caasd --addon-ports`), for instances on other hosts; `None` for records from before.
    #[serde(default)]
    pub published: Option<std::net::SocketAddr>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    pub created_at: Timestamp,
    pub created_by: String,
    /// The releases its last change made in its apps (the CLI waits for them).
    #[serde(default)]
    pub releases: Vec<AppRelease>,
}

impl AddonRecord {
    pub fn attached_to(&self, app: &str) -> Option<&Attachment> {
        self.attachments.iter().find(|a| a.app == app)
    }
}

impl Store {
    /// Records a new add-on; `Exists` when the name is taken.
    pub fn create_addon(&self, rec: &AddonRecord) -> Result<()> {
        if self.inner.addons.cas(&rec.name, None, Some(&encode(rec)))? {
            Ok(())
        } else {
            Err(StoreError::Exists)
        }
    }

    pub fn addon(&self, name: &str) -> Result<Option<AddonRecord>> {
        self.inner
            .addons
            .get(name)?
            .map(|v| decode("addons", &v))
            .transpose()
    }

    pub fn addons(&self) -> Result<Vec<AddonRecord>> {
        self.inner
            .addons
            .values()?
            .iter()
            .map(|v| decode("addons", v))
            .collect()
    }

    /// The add-ons attached to `app`.
    pub fn addons_of(&self, app: &str) -> Result<Vec<AddonRecord>> {
        Ok(self
            .addons()?
            .into_iter()
            .filter(|a| a.attached_to(app).is_some())
            .collect())
    }

    /// Read-modify-write of one add-on with compare-and-swap, retried when another writer won.
    /// `f` may run more than once and must not have side effects.
    pub fn update_addon<E>(
        &self,
        name: &str,
        mut f: impl FnMut(&mut AddonRecord) -> std::result::Result<(), E>,
    ) -> Result<AddonRecord, UpdateError<E>> {
        let tree = &self.inner.addons;
        loop {
            let old = tree.get(name)?.ok_or(StoreError::NotFound)?;
            let mut rec: AddonRecord = decode("addons", &old)?;
            f(&mut rec).map_err(UpdateError::Rejected)?;
            let swapped = tree.cas(name, Some(&old), Some(&encode(&rec)))?;
            if swapped {
                return Ok(rec);
            }
        }
    }

    pub fn delete_addon(&self, name: &str) -> Result<()> {
        self.inner.addons.remove(name)?;
        Ok(())
    }

    /// A destroyed app is attached to nothing (its add-ons stay: their data is not the app's).
    pub(super) fn forget_app_addons(&self, app: &str) -> Result<()> {
        for rec in self.addons_of(app)? {
            let r = self.update_addon::<()>(&rec.name, |a| {
                a.attachments.retain(|t| t.app != app);
                Ok(())
            });
            match r {
                Ok(_) | Err(UpdateError::Store(StoreError::NotFound)) => {}
                Err(UpdateError::Store(e)) => return Err(e),
                Err(UpdateError::Rejected(())) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str) -> AddonRecord {
        AddonRecord {
            name: name.into(),
            kind: AddonKind::Redis,
            state: AddonState::Available,
            message: None,
            host: Some("h1".into()),
            memory_mb: Some(128),
            password: Some("pw".into()),
            url: "redis://:pw@x:6379".into(),
            published: None,
            attachments: vec![Attachment {
                app: "shop".into(),
                var: "REDIS_URL".into(),
            }],
            created_at: Timestamp::now(),
            created_by: "admin".into(),
            releases: Vec::new(),
        }
    }

    #[test]
    fn names_are_taken_once_and_a_destroyed_app_is_detached() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_addon(&rec("cache")).unwrap();
        assert!(matches!(
            store.create_addon(&rec("cache")),
            Err(StoreError::Exists)
        ));
        assert_eq!(store.addons_of("shop").unwrap().len(), 1);
        store.forget_app_addons("shop").unwrap();
        assert!(store.addons_of("shop").unwrap().is_empty());
        assert!(store.addon("cache").unwrap().is_some(), "the add-on stays");
    }
}
