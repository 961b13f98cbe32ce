//! How far each container's output has been delivered: the engine timestamp (ns) of the last line
//! of it the control plane accepted, per container id. Kept in `DATA_DIR/shipped.json`, so a
//! restarted agent (or caasd, with its embedded agent) follows an adopted container from there:
//! what it printed while nobody followed it is read back from the engine, and nothing that was
//! delivered is sent twice.
//!
//! A mark moves only after the control plane answered a batch (which it has written by then), so
//! a line is never marked before it is kept. The file is replaced after every answered batch,
//! without fsync (like the hub's logs: it survives `kill -9`, not a power cut); a kill between an
//! answer and that write repeats at most that one batch.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;

pub(super) struct Shipped {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    marks: HashMap<String, u64>,
    /// There was a file: a container missing from it has had nothing delivered. Without one
    /// (the first run of an agent that keeps marks) adopted containers are followed from now.
    known: bool,
    dirty: bool,
}

/// Where to follow an adopted container from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resume {
    /// After this engine timestamp (ns); 0 is from its first line.
    After(u64),
    /// Nothing is known of it: from now.
    Now,
}

impl Shipped {
    pub fn load(path: PathBuf) -> Shipped {
        let read = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<HashMap<String, u64>>(&b).ok());
        let known = read.is_some();
        Shipped {
            path,
            inner: Mutex::new(Inner {
                marks: read.unwrap_or_default(),
                known,
                dirty: false,
            }),
        }
    }

    pub fn resume(&self, container_id: &str) -> Resume {
        let inner = self.inner.lock().unwrap();
        match inner.marks.get(container_id) {
            Some(n) => Resume::After(*n),
            None if inner.known => Resume::After(0),
            None => Resume::Now,
        }
    }

    /// Notes that the control plane accepted a line of `container_id` stamped `nanos`.
    pub fn delivered(&self, container_id: &str, nanos: u64) {
        let mut inner = self.inner.lock().unwrap();
        let mark = inner.marks.entry(container_id.to_string()).or_insert(0);
        if nanos > *mark {
            *mark = nanos;
            inner.dirty = true;
        }
    }

    /// Forgets containers that are gone.
    pub fn retain(&self, live: &HashSet<&str>) {
        let mut inner = self.inner.lock().unwrap();
        let before = inner.marks.len();
        inner.marks.retain(|id, _| live.contains(id.as_str()));
        if inner.marks.len() != before {
            inner.dirty = true;
        }
    }

    /// Writes the marks when they moved (atomically: a temp file renamed over the old one).
    pub fn save(&self) {
        let data = {
            let mut inner = self.inner.lock().unwrap();
            if !inner.dirty {
                return;
            }
            inner.dirty = false;
            inner.known = true;
            serde_json::to_vec(&inner.marks).expect("a map of numbers serializes")
        };
        let tmp = self.path.with_extension("tmp");
        let result = std::fs::write(&tmp, &data).and_then(|_| std::fs::rename(&tmp, &self.path));
        if let Err(e) = result {
            tracing::warn!("saving {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_survive_a_restart_and_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shipped.json");
        let s = Shipped::load(path.clone());
        assert_eq!(s.resume("c1"), Resume::Now, "no file yet: from now");
        s.delivered("c1", 500);
        s.delivered("c1", 400);
        s.delivered("c2", 7);
        s.save();
        let s = Shipped::load(path.clone());
        assert_eq!(s.resume("c1"), Resume::After(500));
        assert_eq!(s.resume("c2"), Resume::After(7));
        assert_eq!(
            s.resume("c3"),
            Resume::After(0),
            "a container the file does not name had nothing delivered"
        );
        s.retain(&["c2"].into_iter().collect());
        s.save();
        let s = Shipped::load(path);
        assert_eq!(s.resume("c1"), Resume::After(0));
        assert_eq!(s.resume("c2"), Resume::After(7));
    }
}
