//! Keeping the images of an app's last releases only (`caasd --keep-releases`, default 10), so
//! that a server deploying every day does not fill its disk with images nobody can roll back to.
//! Older releases stay in `caas releases`; rolling back to one whose image is gone says so.
//!
//! An image several releases share (config changes and rollbacks reuse it) stays while one kept
//! release names it; only the old releases' `caas/APP:vN` tags go. An image no kept release names
//! is purged as a destroy purges it (`forget.rs`): removed when this installation built it,
//! otherwise only untagged. The engine drops the layers no other image uses with it.

use super::Builder;
use crate::labels;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

/// What pruning an app's releases does: the versions whose tags go while their image stays
/// (a kept release shares it), and the images no kept release names.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruning {
    pub untag: Vec<u64>,
    pub purge: Vec<String>,
}

/// `releases` as (version, image id), any order. Kept: the `keep` newest, and the serving and
/// deploying ones (and a canary: `deploying` takes both) whatever their age.
pub fn plan(
    releases: &[(u64, String)],
    keep: usize,
    serving: Option<u64>,
    deploying: impl IntoIterator<Item = u64>,
) -> Pruning {
    let deploying: Vec<u64> = deploying.into_iter().collect();
    let mut versions: Vec<&(u64, String)> = releases.iter().collect();
    versions.sort_by_key(|r| std::cmp::Reverse(r.0));
    let (kept, old): (Vec<_>, Vec<_>) = versions
        .into_iter()
        .enumerate()
        .partition(|(i, r)| *i < keep || Some(r.0) == serving || deploying.contains(&r.0));
    let kept_ids: HashSet<&str> = kept.iter().map(|(_, r)| r.1.as_str()).collect();
    let mut p = Pruning::default();
    let mut purge = BTreeSet::new();
    for (_, (version, id)) in old {
        if kept_ids.contains(id.as_str()) {
            p.untag.push(*version);
        } else {
            purge.insert(id.clone());
        }
    }
    p.untag.sort_unstable();
    p.purge = purge.into_iter().collect();
    p
}

impl Builder {
    /// Prunes `app`'s old release images in the background (after a new release is recorded).
    pub fn prune_later(self: &Arc<Self>, app: &str) {
        if self.settings.keep_releases == 0 {
            return;
        }
        let this = self.clone();
        let app = app.to_string();
        self.tasks.spawn(async move {
            if let Err(e) = this.prune(&app).await {
                tracing::warn!(app, "pruning old release images: {e}");
            }
        });
    }

    async fn prune(self: &Arc<Self>, app: &str) -> anyhow::Result<()> {
        // One prune or destroy of an app at a time: a destroy purges everything anyway.
        let _one = self.destroys.clone().lock_owned().await;
        let Some(rec) = self.store.app(app)? else {
            return Ok(());
        };
        let releases: Vec<(u64, String)> = self
            .store
            .releases(app)?
            .into_iter()
            .map(|r| (r.version, r.image_id))
            .collect();
        let p = plan(
            &releases,
            self.settings.keep_releases,
            rec.release,
            rec.deploying
                .into_iter()
                .chain(rec.canary.as_ref().map(|c| c.version)),
        );
        if p.untag.is_empty() && p.purge.is_empty() {
            return Ok(());
        }
        for version in &p.untag {
            let tag = super::names::Names::release_image(app, *version);
            self.engine.untag(&tag).await?;
        }
        let cluster = self.names.cluster_id().to_string();
        let built: HashSet<String> = self
            .engine
            .images_labelled(&[(labels::CLUSTER, &cluster), (labels::APP, app)])
            .await?
            .into_iter()
            .map(|i| i.id)
            .collect();
        let doomed = p
            .purge
            .into_iter()
            .map(|id| {
                let here = built.contains(&id);
                (id, here)
            })
            .collect();
        self.purge_images(app, doomed).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(list: &[(u64, &str)]) -> Vec<(u64, String)> {
        list.iter().map(|(v, i)| (*v, i.to_string())).collect()
    }

    /// Releases, keep, serving, deploying, and what pruning does.
    type Case = (
        &'static [(u64, &'static str)],
        usize,
        Option<u64>,
        Option<u64>,
        Pruning,
    );

    #[test]
    fn keeps_the_newest_and_the_serving_and_deploying_releases() {
        let cases: &[Case] = &[
            // Fewer releases than kept: nothing.
            (&[(1, "a"), (2, "b")], 10, Some(2), None, Pruning::default()),
            // v1 and v2 are older than the 2 newest; nobody else uses their images.
            (
                &[(1, "a"), (2, "b"), (3, "c"), (4, "d")],
                2,
                Some(4),
                None,
                Pruning {
                    untag: vec![],
                    purge: vec!["a".into(), "b".into()],
                },
            ),
            // The serving release is kept however old (a newer one failed, two deploy).
            (
                &[(1, "a"), (2, "b"), (3, "c"), (4, "d")],
                2,
                Some(1),
                Some(4),
                Pruning {
                    untag: vec![],
                    purge: vec!["b".into()],
                },
            ),
            // A config change (v3) shares v2's image: v2's tag goes, its image stays.
            (
                &[(1, "a"), (2, "b"), (3, "b"), (4, "c")],
                2,
                Some(4),
                None,
                Pruning {
                    untag: vec![2],
                    purge: vec!["a".into()],
                },
            ),
            // Two old releases of one image: purged once.
            (
                &[(1, "a"), (2, "a"), (3, "c")],
                1,
                Some(3),
                None,
                Pruning {
                    untag: vec![],
                    purge: vec!["a".into()],
                },
            ),
        ];
        for (releases, keep, serving, deploying, want) in cases {
            let got = plan(&rel(releases), *keep, *serving, *deploying);
            assert_eq!(&got, want, "{releases:?} keep {keep} serving {serving:?}");
        }
    }
}
