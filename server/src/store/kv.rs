//! The store's two backends behind one small interface: a [`Tree`] per kind of record (get, put,
//! delete, compare-and-swap, prefix scans, change notifications) and multi-key transactions
//! ([`Txn`]: optimistic; every key read must still hold what was read when the writes apply).
//! sled keeps them in an embedded database (one machine is a whole platform); etcd in a cluster
//! that several caasd servers share, under `PREFIX/TREE/KEY`.

use super::etcd::{Compare, Etcd, EtcdError, Write};
use super::StoreError;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

type Result<T> = std::result::Result<T, StoreError>;

/// Where the trees live.
#[derive(Clone)]
pub(super) enum Backend {
    Sled(sled::Db),
    Etcd(Arc<EtcdBackend>),
}

pub(super) struct EtcdBackend {
    pub client: Etcd,
    pub prefix: String,
    /// Bumped on every change of a tree seen on etcd's watch (any server's writes).
    pub changes: HashMap<&'static str, watch::Sender<u64>>,
}

#[derive(Clone)]
pub(super) enum Tree {
    Sled(sled::Tree),
    Etcd {
        backend: Arc<EtcdBackend>,
        name: &'static str,
        /// `PREFIX/NAME/`
        prefix: Vec<u8>,
    },
}

impl From<EtcdError> for StoreError {
    fn from(e: EtcdError) -> Self {
        StoreError::Etcd(e)
    }
}

impl Backend {
    pub fn tree(&self, name: &'static str) -> Result<Tree> {
        Ok(match self {
            Backend::Sled(db) => Tree::Sled(db.open_tree(name)?),
            Backend::Etcd(b) => Tree::Etcd {
                backend: b.clone(),
                name,
                prefix: format!("{}/{name}/", b.prefix).into_bytes(),
            },
        })
    }
}

impl EtcdBackend {
    /// Makes the notifications of the trees in `names` and starts following etcd's changes
    /// under `prefix`; `on_tree` is told of every change too (by tree name).
    pub fn start(
        client: Etcd,
        prefix: String,
        names: &[&'static str],
        on_tree: impl Fn(&str) + Send + Sync + 'static,
    ) -> Arc<Self> {
        let backend = Arc::new(Self {
            client: client.clone(),
            changes: names.iter().map(|n| (*n, watch::Sender::new(0))).collect(),
            prefix,
        });
        let root = format!("{}/", backend.prefix).into_bytes();
        let on_tree = Arc::new(on_tree);
        let (b1, b2) = (Arc::downgrade(&backend), Arc::downgrade(&backend));
        let (t1, t2) = (on_tree.clone(), on_tree);
        let root_len = root.len();
        Etcd::spawn(client.watch(
            root,
            move |key| {
                let Some(b) = b1.upgrade() else { return };
                let rest = &key[root_len.min(key.len())..];
                let name = rest.split(|c| *c == b'/').next().unwrap_or_default();
                if let Some((n, tx)) = b.changes.iter().find(|(n, _)| n.as_bytes() == name) {
                    tx.send_modify(|i| *i += 1);
                    t1(n);
                }
            },
            move || {
                // Changes made while the stream was down went unseen: say everything changed.
                let Some(b) = b2.upgrade() else { return };
                for (n, tx) in &b.changes {
                    tx.send_modify(|i| *i += 1);
                    t2(n);
                }
            },
        ));
        backend
    }
}

fn full(prefix: &[u8], key: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(key);
    k
}

/// A tree's change feed: resolves on the next change.
pub(super) enum TreeWatch {
    Sled(sled::Subscriber),
    Etcd(watch::Receiver<u64>),
}

impl TreeWatch {
    /// Waits for the next change; `false` when the store is closed.
    pub async fn changed(&mut self) -> bool {
        match self {
            TreeWatch::Sled(s) => s.await.is_some(),
            TreeWatch::Etcd(rx) => rx.changed().await.is_ok(),
        }
    }
}

impl Tree {
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        match self {
            Tree::Sled(t) => Ok(t.get(key)?.map(|v| v.to_vec())),
            Tree::Etcd {
                backend, prefix, ..
            } => {
                let (c, k) = (backend.client.clone(), full(prefix, key.as_ref()));
                Ok(Etcd::wait(async move { c.get(k).await })?)
            }
        }
    }

    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        match self {
            Tree::Sled(t) => {
                t.insert(key.as_ref(), value.as_ref())?;
            }
            Tree::Etcd {
                backend, prefix, ..
            } => {
                let (c, k, v) = (
                    backend.client.clone(),
                    full(prefix, key.as_ref()),
                    value.as_ref().to_vec(),
                );
                Etcd::wait(async move { c.put(k, v, 0).await })?;
            }
        }
        Ok(())
    }

    /// Removes a key; whether it was there.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        match self {
            Tree::Sled(t) => Ok(t.remove(key)?.is_some()),
            Tree::Etcd {
                backend, prefix, ..
            } => {
                let (c, k) = (backend.client.clone(), full(prefix, key.as_ref()));
                Ok(Etcd::wait(async move { c.delete(k).await })?)
            }
        }
    }

    /// Writes `new` (`None`: deletes) if the key holds `old` (`None`: absent); whether it did.
    pub fn cas(
        &self,
        key: impl AsRef<[u8]>,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool> {
        match self {
            Tree::Sled(t) => Ok(t.compare_and_swap(key, old, new)?.is_ok()),
            Tree::Etcd {
                backend, prefix, ..
            } => {
                let k = full(prefix, key.as_ref());
                let compare = Compare {
                    key: k.clone(),
                    value: old.map(<[u8]>::to_vec),
                };
                let write = Write {
                    key: k,
                    value: new.map(<[u8]>::to_vec),
                };
                let c = backend.client.clone();
                Ok(Etcd::wait(async move {
                    c.txn(vec![compare], vec![write], 0).await
                })?)
            }
        }
    }

    /// Every pair whose key starts with `key_prefix`, in key order (keys without the prefix of
    /// the tree).
    pub fn scan(&self, key_prefix: impl AsRef<[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_limit(key_prefix, 0)
    }

    fn scan_limit(
        &self,
        key_prefix: impl AsRef<[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        match self {
            Tree::Sled(t) => t
                .scan_prefix(key_prefix)
                .take(if limit == 0 { usize::MAX } else { limit })
                .map(|kv| {
                    let (k, v) = kv?;
                    Ok((k.to_vec(), v.to_vec()))
                })
                .collect(),
            Tree::Etcd {
                backend, prefix, ..
            } => {
                let (c, p) = (backend.client.clone(), full(prefix, key_prefix.as_ref()));
                let kvs = Etcd::wait(async move { c.scan(p, limit).await })?;
                Ok(kvs
                    .into_iter()
                    .map(|kv| (kv.key[prefix.len()..].to_vec(), kv.value))
                    .collect())
            }
        }
    }

    /// Up to `limit` pairs with keys below `before` (all keys when `None`), highest first.
    pub fn scan_rev(&self, before: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        match self {
            Tree::Sled(t) => {
                let range = match before {
                    Some(b) => t.range(..b),
                    None => t.range::<&[u8], _>(..),
                };
                range
                    .rev()
                    .take(limit)
                    .map(|kv| {
                        let (k, v) = kv?;
                        Ok((k.to_vec(), v.to_vec()))
                    })
                    .collect()
            }
            Tree::Etcd {
                backend, prefix, ..
            } => {
                let c = backend.client.clone();
                let (from, to) = (
                    prefix.clone(),
                    before.map_or_else(|| super::etcd::prefix_end(prefix), |b| full(prefix, b)),
                );
                let kvs = Etcd::wait(async move { c.scan_rev(from, to, limit).await })?;
                Ok(kvs
                    .into_iter()
                    .map(|kv| (kv.key[prefix.len()..].to_vec(), kv.value))
                    .collect())
            }
        }
    }

    /// Every pair, in key order.
    pub fn all(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan(b"")
    }

    /// Every value, in key order.
    pub fn values(&self) -> Result<Vec<Vec<u8>>> {
        Ok(self.all()?.into_iter().map(|(_, v)| v).collect())
    }

    pub fn len(&self) -> Result<usize> {
        match self {
            Tree::Sled(t) => Ok(t.len()),
            Tree::Etcd {
                backend, prefix, ..
            } => {
                let (c, p) = (backend.client.clone(), prefix.clone());
                Ok(Etcd::wait(async move { c.count(p).await })? as usize)
            }
        }
    }

    /// Removes the pair with the lowest key; `false` when there was none.
    pub fn pop_min(&self) -> Result<bool> {
        match self {
            Tree::Sled(t) => Ok(t.pop_min()?.is_some()),
            Tree::Etcd { .. } => match self.scan_limit(b"", 1)?.into_iter().next() {
                Some((k, _)) => self.remove(k),
                None => Ok(false),
            },
        }
    }

    pub fn watch(&self) -> TreeWatch {
        match self {
            Tree::Sled(t) => TreeWatch::Sled(t.watch_prefix(b"")),
            Tree::Etcd { backend, name, .. } => TreeWatch::Etcd(backend.changes[name].subscribe()),
        }
    }

    fn name(&self) -> Vec<u8> {
        match self {
            Tree::Sled(t) => t.name().to_vec(),
            Tree::Etcd { name, .. } => name.as_bytes().to_vec(),
        }
    }
}

/// An optimistic transaction over several trees: reads go to the store and are remembered,
/// writes are kept until [`Txn::commit`], which applies them only if every key read still holds
/// what was read. Reads see the transaction's own writes.
#[derive(Default)]
pub(super) struct Txn {
    reads: Vec<(Tree, Vec<u8>, Option<Vec<u8>>)>,
    writes: Vec<(Tree, Vec<u8>, Option<Vec<u8>>)>,
}

impl Txn {
    pub fn get(&mut self, tree: &Tree, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        let key = key.as_ref();
        let name = tree.name();
        if let Some((_, _, v)) = self
            .writes
            .iter()
            .rev()
            .find(|(t, k, _)| k == key && t.name() == name)
        {
            return Ok(v.clone());
        }
        if let Some((_, _, v)) = self
            .reads
            .iter()
            .find(|(t, k, _)| k == key && t.name() == name)
        {
            return Ok(v.clone());
        }
        let v = tree.get(key)?;
        self.reads.push((tree.clone(), key.to_vec(), v.clone()));
        Ok(v)
    }

    pub fn insert(&mut self, tree: &Tree, key: impl AsRef<[u8]>, value: Vec<u8>) {
        self.writes
            .push((tree.clone(), key.as_ref().to_vec(), Some(value)));
    }

    /// Deletes `key` when the transaction commits.
    pub fn remove(&mut self, tree: &Tree, key: impl AsRef<[u8]>) {
        self.writes
            .push((tree.clone(), key.as_ref().to_vec(), None));
    }

    /// Applies the writes if nothing read changed; `false` (nothing written) when something did.
    pub fn commit(self) -> Result<bool> {
        let Some((first, _, _)) = self.reads.first().or(self.writes.first()) else {
            return Ok(true);
        };
        match first {
            Tree::Sled(_) => self.commit_sled(),
            Tree::Etcd { backend, .. } => {
                let full_key = |t: &Tree, k: &[u8]| match t {
                    Tree::Etcd { prefix, .. } => full(prefix, k),
                    Tree::Sled(_) => unreachable!("one store has one backend"),
                };
                let compares = self
                    .reads
                    .iter()
                    .map(|(t, k, v)| Compare {
                        key: full_key(t, k),
                        value: v.clone(),
                    })
                    .collect();
                let writes = self
                    .writes
                    .iter()
                    .map(|(t, k, v)| Write {
                        key: full_key(t, k),
                        value: v.clone(),
                    })
                    .collect();
                let c = backend.client.clone();
                Ok(Etcd::wait(async move { c.txn(compares, writes, 0).await })?)
            }
        }
    }

    fn commit_sled(self) -> Result<bool> {
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        use sled::Transactional;
        let mut trees: Vec<sled::Tree> = Vec::new();
        let mut slot = |t: &Tree| -> usize {
            let Tree::Sled(t) = t else {
                unreachable!("one store has one backend")
            };
            match trees.iter().position(|x| x.name() == t.name()) {
                Some(i) => i,
                None => {
                    trees.push(t.clone());
                    trees.len() - 1
                }
            }
        };
        let reads: Vec<_> = self.reads.iter().map(|(t, k, v)| (slot(t), k, v)).collect();
        let writes: Vec<_> = self
            .writes
            .iter()
            .map(|(t, k, v)| (slot(t), k, v))
            .collect();
        let res = trees[..].transaction(|txs| {
            for (i, k, v) in &reads {
                if txs[*i].get(k)?.as_deref() != v.as_deref() {
                    return Err(ConflictableTransactionError::Abort(()));
                }
            }
            for (i, k, v) in &writes {
                match v {
                    Some(v) => txs[*i].insert(k.as_slice(), v.as_slice())?,
                    None => txs[*i].remove(k.as_slice())?,
                };
            }
            Ok(())
        });
        match res {
            Ok(()) => Ok(true),
            Err(TransactionError::Abort(())) => Ok(false),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }
}
