//! What the agents last reported: host liveness and instance states. Kept in memory only: it is
//! observation, not intent, and it is rebuilt from the first heartbeats after a restart. Until a
//! host has reported, its instances are "unknown", which the scheduler treats carefully (no
//! replacing, routes kept), and the host counts as alive for one `lost_after` period from start.

use crate::schedule::reconcile::Obs;
use caas_api::agent::{InstanceReport, ObservedState};
use caas_api::{DiskUsage, Timestamp};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub struct Observed {
    started: Timestamp,
    lost_after: Duration,
    inner: Mutex<Inner>,
}

/// How long an app stays one a host may write log lines for after its last instance there went
/// (a stopping container's last lines come after its allocation is gone).
const RECENT_APP: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Inner {
    /// host id → apps assigned to it lately, and when last.
    recent_apps: HashMap<String, HashMap<String, Timestamp>>,
    last_seen: HashMap<String, Timestamp>,
    /// host id → its last report of every instance it runs.
    reports: HashMap<String, Vec<InstanceReport>>,
    /// host id → its disk, as last reported.
    disks: HashMap<String, DiskUsage>,
}

impl Observed {
    pub fn new(started: Timestamp, lost_after: Duration) -> Self {
        Self {
            started,
            lost_after,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Records a heartbeat. Returns whether anything the scheduler acts on changed (an instance
    /// appeared, went, changed state or port), so it is woken only then.
    pub fn heartbeat(&self, host_id: &str, instances: Vec<InstanceReport>, now: Timestamp) -> bool {
        let mut inner = self.inner.lock().unwrap();
        let was_alive = self.alive_locked(&inner, host_id, now);
        inner.last_seen.insert(host_id.to_string(), now);
        let key = |r: &InstanceReport| {
            (
                r.assignment_id.clone(),
                r.state,
                r.port,
                r.container_addr.clone(),
                r.unchecked,
            )
        };
        let changed = match inner.reports.get(host_id) {
            None => true,
            Some(old) => {
                let mut a: Vec<_> = old.iter().map(key).collect();
                let mut b: Vec<_> = instances.iter().map(key).collect();
                a.sort_by(|x, y| x.0.cmp(&y.0));
                b.sort_by(|x, y| x.0.cmp(&y.0));
                a != b
            }
        };
        inner.reports.insert(host_id.to_string(), instances);
        changed || !was_alive
    }

    fn alive_locked(&self, inner: &Inner, host_id: &str, now: Timestamp) -> bool {
        let seen = inner
            .last_seen
            .get(host_id)
            .copied()
            .unwrap_or(self.started)
            .max(self.started);
        seen.until(now) < self.lost_after
    }

    /// Records a host's disk, from its heartbeat.
    pub fn note_disk(&self, host_id: &str, disk: DiskUsage) {
        let mut inner = self.inner.lock().unwrap();
        inner.disks.insert(host_id.to_string(), disk);
    }

    /// A host's disk and the memory its instances use, as last reported (`None` before its
    /// first report of each).
    pub fn host_usage(&self, host_id: &str) -> (Option<DiskUsage>, Option<u64>) {
        let inner = self.inner.lock().unwrap();
        let used = inner.reports.get(host_id).map(|rs| {
            rs.iter()
                .filter_map(|r| r.usage.as_ref())
                .map(|u| u.memory_bytes)
                .sum::<u64>()
                / (1024 * 1024)
        });
        (inner.disks.get(host_id).copied(), used)
    }

    /// The apps a host is assigned instances of now.
    pub fn note_assigned(&self, host_id: &str, apps: impl Iterator<Item = String>, now: Timestamp) {
        let mut inner = self.inner.lock().unwrap();
        let recent = inner.recent_apps.entry(host_id.to_string()).or_default();
        for app in apps {
            recent.insert(app, now);
        }
        recent.retain(|_, at| at.until(now) < RECENT_APP);
    }

    /// Whether `host_id` ran an instance of `app` lately (it may ship that app's lines).
    pub fn ran_lately(&self, host_id: &str, app: &str, now: Timestamp) -> bool {
        let inner = self.inner.lock().unwrap();
        inner
            .recent_apps
            .get(host_id)
            .and_then(|apps| apps.get(app))
            .is_some_and(|at| at.until(now) < RECENT_APP)
    }

    /// When this control plane started observing.
    pub fn started(&self) -> Timestamp {
        self.started
    }

    pub fn host_alive(&self, host_id: &str, now: Timestamp) -> bool {
        self.alive_locked(&self.inner.lock().unwrap(), host_id, now)
    }

    /// The scheduler's view: for every allocation id a host has reported, its state. For hosts
    /// that have reported at least once, `assigned` allocations missing from the report are
    /// `Starting` (placed, not running yet); on hosts that have not, they stay unknown, and so
    /// do instances reported `unchecked` (found running by a restarted agent, not probed yet).
    pub fn snapshot(
        &self,
        assigned: impl Iterator<Item = (String, String)>,
    ) -> HashMap<String, Obs> {
        let inner = self.inner.lock().unwrap();
        let unchecked: std::collections::HashSet<&str> = inner
            .reports
            .values()
            .flatten()
            .filter(|r| r.unchecked)
            .map(|r| r.assignment_id.as_str())
            .collect();
        let mut out: HashMap<String, Obs> = inner
            .reports
            .values()
            .flatten()
            .filter(|r| !r.unchecked)
            .map(|r| {
                (
                    r.assignment_id.clone(),
                    Obs {
                        state: r.state,
                        port: r.port,
                        container_addr: r.container_addr.clone(),
                        restarts: r.restarts,
                        since: r.since,
                        check: r.check.clone(),
                    },
                )
            })
            .collect();
        for (alloc_id, host_id) in assigned {
            if inner.reports.contains_key(&host_id) && !unchecked.contains(alloc_id.as_str()) {
                out.entry(alloc_id).or_insert(Obs {
                    state: ObservedState::Starting,
                    port: None,
                    container_addr: None,
                    restarts: 0,
                    since: self.started,
                    check: None,
                });
            }
        }
        out
    }

    /// The last CPU and memory reading of every instance reported with one, by allocation id.
    pub fn usages(&self) -> HashMap<String, caas_api::metrics::InstanceUsage> {
        let inner = self.inner.lock().unwrap();
        inner
            .reports
            .values()
            .flatten()
            .filter_map(|r| Some((r.assignment_id.clone(), r.usage?)))
            .collect()
    }

    /// The last report of one allocation.
    pub fn report(&self, alloc_id: &str) -> Option<InstanceReport> {
        let inner = self.inner.lock().unwrap();
        inner
            .reports
            .values()
            .flatten()
            .find(|r| r.assignment_id == alloc_id)
            .cloned()
    }
}

/// How often a server reads the reports other servers' agents made (`follow_shared`); with
/// agents' 2 s heartbeats, a host reporting elsewhere is seen here within about 3 s.
const SHARED_POLL: Duration = Duration::from_secs(1);

/// On a store shared by several servers (etcd): takes in, until `stop`, the agents' reports
/// that other servers received, as if they were heartbeats received here, and wakes the
/// scheduler when one changed something. Every server runs it, not only the leader: `caas
/// hosts` and `caas ps` must say the same whichever server answers, and a server that takes
/// the lead must already know which hosts are alive.
pub async fn follow_shared(
    store: crate::store::Store,
    observed: std::sync::Arc<Observed>,
    wake: std::sync::Arc<tokio::sync::Notify>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut seen = HashMap::new();
    loop {
        match store.shared_reports() {
            Ok(reports) => {
                let me = store.server_id();
                for (host, report) in unseen(&mut seen, me.as_deref(), reports) {
                    if let Some(disk) = report.disk {
                        observed.note_disk(&host, disk);
                    }
                    if observed.heartbeat(&host, report.instances, Timestamp::now()) {
                        wake.notify_one();
                    }
                }
            }
            Err(e) => tracing::warn!("reading the agents' reports other servers shared: {e}"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            () = tokio::time::sleep(SHARED_POLL) => {}
        }
    }
}

/// The reports in `reports` not seen before (by their server and number) and not written by
/// this server `me` (its own agents' heartbeats reached it directly); `seen` remembers them.
fn unseen(
    seen: &mut HashMap<String, (String, u64)>,
    me: Option<&str>,
    reports: Vec<(String, crate::store::SharedReport)>,
) -> Vec<(String, crate::store::SharedReport)> {
    reports
        .into_iter()
        .filter(|(host, r)| {
            let stamp = (r.server.clone(), r.seq);
            if Some(r.server.as_str()) == me || seen.get(host) == Some(&stamp) {
                return false;
            }
            seen.insert(host.clone(), stamp);
            true
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reports_from_other_servers_not_seen_before_are_taken_in() {
        let shared = |server: &str, seq: u64| crate::store::SharedReport {
            server: server.into(),
            seq,
            instances: vec![report("a1", ObservedState::Up)],
            disk: None,
        };
        let hosts = |taken: Vec<(String, crate::store::SharedReport)>| {
            taken
                .into_iter()
                .map(|(h, r)| format!("{h}@{}#{}", r.server, r.seq))
                .collect::<Vec<_>>()
        };
        let mut seen = HashMap::new();
        let batch = vec![
            ("h1".to_string(), shared("s2", 7)),
            ("h2".to_string(), shared("s1", 3)),
        ];
        // s1 is this server: its own agents' reports reached it as heartbeats.
        assert_eq!(
            hosts(unseen(&mut seen, Some("s1"), batch.clone())),
            ["h1@s2#7"]
        );
        // The same report again (its agent stopped): nothing, so the host ages towards lost.
        assert!(unseen(&mut seen, Some("s1"), batch).is_empty());
        // A newer one, or one from another server after the agent moved: taken in.
        let moved = vec![("h1".to_string(), shared("s3", 1))];
        assert_eq!(hosts(unseen(&mut seen, Some("s1"), moved)), ["h1@s3#1"]);
        let newer = vec![("h1".to_string(), shared("s3", 2))];
        assert_eq!(hosts(unseen(&mut seen, Some("s1"), newer)), ["h1@s3#2"]);
    }

    fn report(id: &str, state: ObservedState) -> InstanceReport {
        InstanceReport {
            assignment_id: id.into(),
            container_id: "c".into(),
            state,
            port: Some(1),
            container_addr: None,
            restarts: 0,
            since: Timestamp(0),
            check: None,
            output: Vec::new(),
            unchecked: false,
            usage: None,
        }
    }

    #[test]
    fn hosts_get_a_grace_period_from_start_then_need_heartbeats() {
        let o = Observed::new(Timestamp(10_000), Duration::from_secs(15));
        assert!(
            o.host_alive("h", Timestamp(20_000)),
            "unknown host alive during grace"
        );
        assert!(
            !o.host_alive("h", Timestamp(26_000)),
            "lost after the grace period"
        );
        o.heartbeat("h", vec![], Timestamp(26_000));
        assert!(o.host_alive("h", Timestamp(40_000)));
        assert!(!o.host_alive("h", Timestamp(41_000)));
    }

    #[test]
    fn heartbeats_report_change_only_when_something_moved() {
        let o = Observed::new(Timestamp(0), Duration::from_secs(15));
        assert!(o.heartbeat(
            "h",
            vec![report("a", ObservedState::Starting)],
            Timestamp(1)
        ));
        assert!(!o.heartbeat(
            "h",
            vec![report("a", ObservedState::Starting)],
            Timestamp(2)
        ));
        assert!(o.heartbeat("h", vec![report("a", ObservedState::Up)], Timestamp(3)));
        assert!(o.heartbeat("h", vec![], Timestamp(4)));
    }

    #[test]
    fn unreported_allocations_are_unknown_until_their_host_reports() {
        let o = Observed::new(Timestamp(0), Duration::from_secs(15));
        let assigned = || {
            vec![
                ("a".to_string(), "h".to_string()),
                ("b".to_string(), "h".to_string()),
            ]
            .into_iter()
        };
        assert!(o.snapshot(assigned()).is_empty());
        o.heartbeat("h", vec![report("a", ObservedState::Up)], Timestamp(1));
        let snap = o.snapshot(assigned());
        assert_eq!(snap["a"].state, ObservedState::Up);
        assert_eq!(
            snap["b"],
            Obs {
                state: ObservedState::Starting,
                port: None,
                container_addr: None,
                restarts: 0,
                since: Timestamp(0),
                check: None,
            }
        );
    }

    #[test]
    fn instances_a_restarted_agent_has_not_checked_yet_stay_unknown() {
        let o = Observed::new(Timestamp(0), Duration::from_secs(15));
        let assigned = || {
            vec![
                ("a".to_string(), "h".to_string()),
                ("b".to_string(), "h".to_string()),
            ]
            .into_iter()
        };
        let mut adopted = report("a", ObservedState::Starting);
        adopted.unchecked = true;
        o.heartbeat("h", vec![adopted], Timestamp(1));
        let snap = o.snapshot(assigned());
        assert!(!snap.contains_key("a"), "unknown, not starting: {snap:?}");
        assert_eq!(snap["b"].state, ObservedState::Starting);
        o.heartbeat("h", vec![report("a", ObservedState::Up)], Timestamp(2));
        assert_eq!(o.snapshot(assigned())["a"].state, ObservedState::Up);
    }
}
