//! Renaming an app (`caas apps:rename OLD NEW`): every record that names the app is re-keyed or
//! rewritten in one transaction, so a reader sees the app under one name or the other, never
//! half of it under each. The app's folders on disk (logs, builds, git repository) cannot move in
//! that transaction, so it also writes a "moved" marker (`meta`: `moved/OLD` → `NEW`); the caller
//! moves the folders and then clears the marker ([`Store::finish_move`]). A caasd that crashed in
//! between finds the marker at its next start ([`Store::pending_moves`]) and moves them then.
//!
//! On etcd the transaction is one etcd txn, so an app with very many releases and builds can
//! exceed the cluster's `--max-txn-ops` (128 by default, two per record moved): the rename is
//! then refused whole, and nothing changes.

use super::kv::{Tree, Txn};
use super::{
    app_prefix, decode, encode, AddonRecord, AllocationRecord, AppRecord, BuildRecord,
    DomainRecord, ReleaseRecord, Result, RouteKey, Store, StoreError, TcpRouteRecord, TokenRecord,
    TxnAbort,
};
use super::{AcmeOrderRecord, CertRecord};
use serde::{de::DeserializeOwned, Serialize};

const MOVED: &str = "moved/";

/// Rewrites the records of `entries` (`tree`'s, read outside the transaction) that `change`
/// says name the app. Each of those is read again in `tx`, so a concurrent change of it retries
/// the transaction; the others cost the transaction nothing.
fn rewrite<T: Serialize + DeserializeOwned>(
    tx: &mut Txn,
    tree: &Tree,
    name: &'static str,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    change: impl Fn(&mut T) -> bool,
) -> Result<()> {
    for (key, raw) in entries {
        if !change(&mut decode::<T>(name, &raw)?) {
            continue;
        }
        let Some(raw) = tx.get(tree, &key)? else {
            continue;
        };
        let mut rec: T = decode(name, &raw)?;
        if change(&mut rec) {
            tx.insert(tree, &key, encode(&rec));
        }
    }
    Ok(())
}

/// Moves every `FROM/...` key of `tree` to `TO/...`, with `change` applied to the value.
fn rekey<T: Serialize + DeserializeOwned>(
    tx: &mut Txn,
    tree: &Tree,
    name: &'static str,
    from: &str,
    to: &str,
    change: impl Fn(&mut T),
) -> Result<()> {
    let (old, new) = (app_prefix(from), app_prefix(to));
    for (key, raw) in tree.scan(&old)? {
        let mut rec: T = decode(name, &raw)?;
        change(&mut rec);
        let mut moved = new.clone();
        moved.extend_from_slice(&key[old.len()..]);
        tx.insert(tree, moved, encode(&rec));
        tx.remove(tree, &key);
    }
    Ok(())
}

impl Store {
    /// Renames app `from` to `to` with everything that names it: its record, releases, builds,
    /// routes and allocations, custom domains, certificates, TCP routes, ACME orders, git
    /// connection and notification webhooks, add-on attachments and app-scoped tokens (access
    /// grants and the canary live in its record). `Exists` when `to` is taken, `NotFound` when
    /// `from` is gone. Writes the "moved" marker in the same transaction.
    ///
    /// Releases, builds and routes are keyed under the app but read outside the transaction:
    /// their writers go through the app's record (release and build numbers) or are the
    /// scheduler's, which follows the renamed allocations at its next pass.
    pub fn rename_app(&self, from: &str, to: &str) -> Result<AppRecord> {
        let i = &self.inner;
        let res = self.transact::<_, std::convert::Infallible>(|tx| {
            let raw = tx.get(&i.apps, from)?.ok_or(StoreError::NotFound)?;
            if tx.get(&i.apps, to)?.is_some() {
                return Err(StoreError::Exists.into());
            }
            let mut rec: AppRecord = decode("apps", &raw)?;
            rec.name = to.to_string();
            tx.insert(&i.apps, to, encode(&rec));
            tx.remove(&i.apps, from);
            let renamed = |app: &mut String| {
                let ours = app == from;
                if ours {
                    *app = to.to_string();
                }
                ours
            };
            rekey(
                tx,
                &i.releases,
                "releases",
                from,
                to,
                |r: &mut ReleaseRecord| {
                    renamed(&mut r.app);
                },
            )?;
            rekey(tx, &i.builds, "builds", from, to, |b: &mut BuildRecord| {
                renamed(&mut b.app);
            })?;
            for (key, addr) in i.routes.scan(app_prefix(from))? {
                let Some(mut k) = RouteKey::decode(&String::from_utf8_lossy(&key)) else {
                    continue;
                };
                k.app = to.to_string();
                tx.insert(&i.routes, k.encode(), addr);
                tx.remove(&i.routes, &key);
            }
            let all = i.allocations.all()?;
            rewrite(
                tx,
                &i.allocations,
                "allocations",
                all,
                |a: &mut AllocationRecord| renamed(&mut a.app),
            )?;
            let all = i.domains.all()?;
            rewrite(tx, &i.domains, "domains", all, |d: &mut DomainRecord| {
                renamed(&mut d.app)
            })?;
            rekey(tx, &i.certs, "certs", from, to, |c: &mut CertRecord| {
                c.app = Some(to.to_string());
            })?;
            let all = i.tcp_ports.all()?;
            rewrite(
                tx,
                &i.tcp_ports,
                "tcp_ports",
                all,
                |r: &mut TcpRouteRecord| renamed(&mut r.app),
            )?;
            let all = i.acme.scan("order/")?;
            rewrite(tx, &i.acme, "acme", all, |o: &mut AcmeOrderRecord| {
                renamed(&mut o.app)
            })?;
            for kind in ["git/", "notify/"] {
                let key = format!("{kind}{from}");
                if let Some(raw) = tx.get(&i.hooks, &key)? {
                    // Neither record names its app: the key does.
                    tx.insert(&i.hooks, format!("{kind}{to}"), raw);
                    tx.remove(&i.hooks, &key);
                }
            }
            // Recent deliveries of its notification webhooks: `delivery/APP/URL`.
            let prefix = format!("delivery/{from}/");
            for (key, raw) in i.hooks.scan(&prefix)? {
                let url = &key[prefix.len()..];
                let mut moved = format!("delivery/{to}/").into_bytes();
                moved.extend_from_slice(url);
                tx.insert(&i.hooks, moved, raw);
                tx.remove(&i.hooks, &key);
            }
            let all = i.addons.all()?;
            rewrite(tx, &i.addons, "addons", all, |a: &mut AddonRecord| {
                let mut any = false;
                for t in &mut a.attachments {
                    any |= renamed(&mut t.app);
                }
                any
            })?;
            let all = i.tokens.all()?;
            rewrite(tx, &i.tokens, "tokens", all, |t: &mut TokenRecord| {
                t.app.as_mut().is_some_and(&renamed)
            })?;
            tx.insert(&i.meta, format!("{MOVED}{from}"), to.as_bytes().to_vec());
            Ok(rec)
        });
        let rec = res.map_err(TxnAbort::into_store)?;
        // Agents learn that their instances belong to the new name; the gateway, its routes.
        self.touch_assignments();
        self.routing_changed();
        Ok(rec)
    }

    /// Renames whose folders may not have moved yet: `(from, to)`.
    pub fn pending_moves(&self) -> Result<Vec<(String, String)>> {
        Ok(self
            .inner
            .meta
            .scan(MOVED)?
            .into_iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(&k[MOVED.len()..]).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect())
    }

    /// Clears the marker of the rename of `from`: its folders have moved.
    pub fn finish_move(&self, from: &str) -> Result<()> {
        self.inner.meta.remove(format!("{MOVED}{from}"))?;
        Ok(())
    }
}
