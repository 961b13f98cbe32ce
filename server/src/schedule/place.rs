//! Placement as data: what an instance asks of a host ([`Need`]: a memory *reservation*, which
//! the scheduler counts, and a *limit*, which the container gets), the running tallies per host
//! while one plan places ([`Capacity`]), the choice of a host ([`place`]) and, when no host can
//! take an instance, why: which resource, on how many hosts ([`explain`]).
//!
//! A host takes an instance when it is up, has a free port, the reservations placed on it plus
//! the new one fit in the memory it offers, and the limits plus the new one fit in the memory it
//! offers times its overcommit ratio. Nothing here ever moves or stops a placed instance: a host
//! that offers less than it holds (its offer was lowered) only stops taking new ones.

use super::reconcile::{HostView, World};
use crate::store::{AllocationRecord, Desired};
use caas_api::Timestamp;
use std::collections::HashMap;

/// What one instance asks of a host, MB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Need {
    /// Counted against the memory the host offers.
    pub reserve_mb: u64,
    /// What the container may use; the sum of limits is bounded by the overcommit ratio.
    pub limit_mb: u64,
}

/// The operator's defaults (`caasd --instance-memory`, `--instance-reserve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    pub limit_mb: u64,
    pub reserve_mb: u64,
}

impl Need {
    /// A process type's own limit and reservation over the defaults. The default reservation
    /// is capped at the limit, so a small limit does not reserve more than it may use.
    pub fn of(limit: Option<u64>, reserve: Option<u64>, d: Defaults) -> Need {
        let limit_mb = limit.unwrap_or(d.limit_mb);
        Need {
            limit_mb,
            reserve_mb: reserve.unwrap_or(d.reserve_mb.min(limit_mb)),
        }
    }

    /// What placement recorded for an allocation; records from before reservations (0) count
    /// as the defaults would have them.
    pub fn of_allocation(a: &AllocationRecord, d: Defaults) -> Need {
        let set = |mb: u64| (mb > 0).then_some(mb);
        Need::of(set(a.memory_mb), set(a.reserved_mb), d)
    }
}

/// An instance no host could take.
#[derive(Debug, Clone, PartialEq)]
pub struct Unplaced {
    pub app: String,
    pub release: u64,
    /// `web.3`
    pub instance: String,
    pub need: Need,
    /// Which resource, on how many hosts.
    pub reason: String,
    /// Room is coming: it would fit once draining instances stop. Not a reason to fail.
    pub waiting: bool,
}

/// An unplaced instance and since when it has been (kept by the scheduler across passes).
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub unplaced: Unplaced,
    pub since: Timestamp,
}

/// What to do about an instance no host can take, said with the reason.
pub fn hint(app: &str, process: &str) -> String {
    format!(
        "free capacity (caas hosts shows it: scale down or destroy an app), lower the reservation \
         (caas ps:resize {process} --reserve 64M -a {app}) or add a host (caas hosts:add NAME)"
    )
}

#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    reserved_mb: u64,
    limits_mb: u64,
    slots: u32,
}

impl Tally {
    fn add(&mut self, need: Need) {
        self.reserved_mb += need.reserve_mb;
        self.limits_mb += need.limit_mb;
        self.slots += 1;
    }

    fn minus(self, other: Tally) -> Tally {
        Tally {
            reserved_mb: self.reserved_mb.saturating_sub(other.reserved_mb),
            limits_mb: self.limits_mb.saturating_sub(other.limits_mb),
            slots: self.slots.saturating_sub(other.slots),
        }
    }
}

/// Which resource a host lacks for an instance, the first one checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Short {
    Ports,
    /// Free memory to reserve, MB.
    Memory(u64),
    /// Room left under the overcommitted limits, MB.
    Limits(u64),
}

fn limit_room(h: &HostView) -> u64 {
    (h.memory_mb as f64 * h.overcommit.max(1.0)) as u64
}

fn check(h: &HostView, t: Tally, need: Need) -> Result<u64, Short> {
    if t.slots >= h.port_slots {
        return Err(Short::Ports);
    }
    let free = h.memory_mb.saturating_sub(t.reserved_mb);
    if free < need.reserve_mb {
        return Err(Short::Memory(free));
    }
    let room = limit_room(h).saturating_sub(t.limits_mb);
    if room < need.limit_mb {
        return Err(Short::Limits(room));
    }
    Ok(free)
}

/// Running tallies per host while placing, so one plan does not overfill a host.
pub struct Capacity {
    taken: HashMap<String, Tally>,
    /// The part of `taken` that draining instances hold: room that is coming.
    draining: HashMap<String, Tally>,
    per_app: HashMap<(String, String), u32>,
}

impl Capacity {
    pub fn of(survivors: &[AllocationRecord], d: Defaults) -> Self {
        let mut cap = Capacity {
            taken: HashMap::new(),
            draining: HashMap::new(),
            per_app: HashMap::new(),
        };
        for a in survivors {
            let need = Need::of_allocation(a, d);
            cap.taken.entry(a.host_id.clone()).or_default().add(need);
            if matches!(a.desired, Desired::Drain { .. }) {
                cap.draining.entry(a.host_id.clone()).or_default().add(need);
            }
            *cap.per_app
                .entry((a.host_id.clone(), a.app.clone()))
                .or_default() += 1;
        }
        cap
    }

    fn taken(&self, host: &str) -> Tally {
        self.taken.get(host).copied().unwrap_or_default()
    }

    fn same_app(&self, host: &str, app: &str) -> u32 {
        self.per_app
            .get(&(host.to_string(), app.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

/// Filter live hosts with room (a free port, memory to reserve, room under the overcommitted
/// limits), then prefer the host with the fewest instances of this app (spread), then the most
/// free memory, then the id (determinism). On success the host's tallies take the instance.
/// On failure: why, and whether room is coming from draining instances.
pub fn place(
    w: &World<'_>,
    cap: &mut Capacity,
    app: &str,
    need: Need,
) -> Result<String, (String, bool)> {
    let best = w
        .hosts
        .iter()
        .filter(|h| h.alive)
        .filter_map(|h| Some((h, check(h, cap.taken(&h.id), need).ok()?)))
        .min_by(|(a, free_a), (b, free_b)| {
            cap.same_app(&a.id, app)
                .cmp(&cap.same_app(&b.id, app))
                .then(free_b.cmp(free_a))
                .then(a.id.cmp(&b.id))
        });
    match best {
        Some((h, _)) => {
            cap.taken.entry(h.id.clone()).or_default().add(need);
            *cap.per_app
                .entry((h.id.clone(), app.to_string()))
                .or_default() += 1;
            Ok(h.id.clone())
        }
        None => Err(explain(w, cap, need)),
    }
}

/// Why no host takes an instance: each resource short, on how many of the hosts, and whether
/// it would fit once the draining instances stop.
fn explain(w: &World<'_>, cap: &Capacity, need: Need) -> (String, bool) {
    let alive: Vec<&HostView> = w.hosts.iter().filter(|h| h.alive).collect();
    if alive.is_empty() {
        return ("no host is up".into(), false);
    }
    let (mut ports, mut memory, mut limits) = (0usize, 0usize, 0usize);
    let (mut most_free, mut most_room) = (0u64, 0u64);
    let mut waiting = false;
    for h in &alive {
        let taken = cap.taken(&h.id);
        match check(h, taken, need) {
            Ok(_) => {}
            Err(Short::Ports) => ports += 1,
            Err(Short::Memory(free)) => {
                memory += 1;
                most_free = most_free.max(free);
            }
            Err(Short::Limits(room)) => {
                limits += 1;
                most_room = most_room.max(room);
            }
        }
        let draining = cap.draining.get(&h.id).copied().unwrap_or_default();
        waiting |= check(h, taken.minus(draining), need).is_ok();
    }
    let total = alive.len();
    let hosts = |n: usize| {
        let s = if total == 1 { "" } else { "s" };
        format!("{n} of {total} host{s}")
    };
    let mut parts = Vec::new();
    if memory > 0 {
        parts.push(format!(
            "{} short of memory ({} MB to reserve, {most_free} MB free at most)",
            hosts(memory),
            need.reserve_mb
        ));
    }
    if limits > 0 {
        parts.push(format!(
            "{} at their overcommit ratio ({} MB limit, room for {most_room} MB at most)",
            hosts(limits),
            need.limit_mb
        ));
    }
    if ports > 0 {
        parts.push(format!("{} out of ports", hosts(ports)));
    }
    let down = w.hosts.len() - total;
    if down > 0 {
        parts.push(format!("{down} more down"));
    }
    let mut reason = format!("no host can take it: {}", parts.join("; "));
    if waiting {
        reason.push_str("; room is coming as draining instances stop");
    }
    (reason, waiting)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::reconcile::testkit::*;

    const D: Defaults = Defaults {
        limit_mb: 512,
        reserve_mb: 128,
    };

    fn need(reserve_mb: u64, limit_mb: u64) -> Need {
        Need {
            reserve_mb,
            limit_mb,
        }
    }

    #[test]
    fn a_need_is_its_own_over_the_defaults_and_the_default_reservation_fits_the_limit() {
        for (limit, reserve, want) in [
            (None, None, need(128, 512)),
            (Some(1024), None, need(128, 1024)),
            (Some(64), None, need(64, 64)),
            (None, Some(256), need(256, 512)),
            (Some(256), Some(32), need(32, 256)),
        ] {
            assert_eq!(Need::of(limit, reserve, D), want, "{limit:?} {reserve:?}");
        }
        let mut a = alloc("a1", "a", 1, "web", 1, "h1");
        (a.memory_mb, a.reserved_mb) = (0, 0);
        assert_eq!(
            Need::of_allocation(&a, D),
            need(128, 512),
            "a record from before"
        );
        a.memory_mb = 300;
        a.reserved_mb = 50;
        assert_eq!(Need::of_allocation(&a, D), need(50, 300));
    }

    /// `h1` offers `memory` MB with `overcommit`, and holds `allocs`; where does `need` go?
    fn try_place(
        memory: u64,
        overcommit: f64,
        allocs: &[AllocationRecord],
        need: Need,
    ) -> Result<String, (String, bool)> {
        let mut c = Case::new(vec![], allocs.to_vec());
        c.hosts[0].memory_mb = memory;
        c.hosts[0].overcommit = overcommit;
        c.with_world(|w| {
            let mut cap = Capacity::of(w.allocations, D);
            place(w, &mut cap, "a", need)
        })
    }

    fn held(n: usize, reserve: u64, limit: u64) -> Vec<AllocationRecord> {
        (1..=n)
            .map(|i| {
                let mut a = alloc(&format!("x{i}"), "x", 1, "web", i as u32, "h1");
                a.memory_mb = limit;
                a.reserved_mb = reserve;
                a
            })
            .collect()
    }

    #[test]
    fn reservations_are_counted_against_the_offer_and_limits_against_the_overcommit() {
        // 3 x 100 reserved of 400: a fourth fits, a fifth does not.
        assert!(try_place(400, 4.0, &held(3, 100, 256), need(100, 256)).is_ok());
        let (why, waiting) = try_place(400, 4.0, &held(4, 100, 256), need(100, 256)).unwrap_err();
        assert_eq!(
            why,
            "no host can take it: 1 of 1 host short of memory (100 MB to reserve, 0 MB free at most)"
        );
        assert!(!waiting);
        // Reservations fit, limits do not: 2 x 512 of 400 x 2 = 800.
        let (why, _) = try_place(400, 2.0, &held(1, 10, 512), need(10, 512)).unwrap_err();
        assert_eq!(
            why,
            "no host can take it: 1 of 1 host at their overcommit ratio (512 MB limit, room for 288 MB at most)"
        );
        // An offer lowered below what the host holds: nothing new, nothing taken away.
        let (why, _) = try_place(100, 4.0, &held(3, 100, 512), need(10, 10)).unwrap_err();
        assert!(why.contains("short of memory"), "{why}");
    }

    #[test]
    fn room_held_by_draining_instances_is_coming() {
        let mut allocs = held(4, 100, 256);
        allocs[0].desired = Desired::Drain {
            until: caas_api::Timestamp(T0 + 5000),
        };
        let (why, waiting) = try_place(400, 4.0, &allocs, need(100, 256)).unwrap_err();
        assert!(waiting);
        assert!(
            why.ends_with("room is coming as draining instances stop"),
            "{why}"
        );
    }

    #[test]
    fn says_how_many_hosts_lack_what() {
        let mut c = Case::new(vec![], held(2, 100, 100));
        c.hosts = vec![host("h1", true), host("h2", true), host("h3", false)];
        c.hosts[0].memory_mb = 200;
        c.hosts[1].port_slots = 0;
        let (why, waiting) = c.with_world(|w| {
            let mut cap = Capacity::of(w.allocations, D);
            place(w, &mut cap, "a", need(100, 100)).unwrap_err()
        });
        assert_eq!(
            why,
            "no host can take it: 1 of 2 hosts short of memory (100 MB to reserve, 0 MB free at most); 1 of 2 hosts out of ports; 1 more down"
        );
        assert!(!waiting);
        c.hosts.iter_mut().for_each(|h| h.alive = false);
        let err = c.with_world(|w| {
            let mut cap = Capacity::of(w.allocations, D);
            place(w, &mut cap, "a", need(1, 1)).unwrap_err()
        });
        assert_eq!(err, ("no host is up".to_string(), false));
    }

    #[test]
    fn one_plan_does_not_overfill_a_host() {
        let c = Case::new(vec![], vec![]);
        let placed = c.with_world(|w| {
            let mut cap = Capacity::of(&[], D);
            (0..5)
                .map(|_| place(w, &mut cap, "a", need(1024, 1024)).is_ok())
                .collect::<Vec<_>>()
        });
        // The test host offers 4096 MB.
        assert_eq!(placed, [true, true, true, true, false]);
    }
}
