//! Who builds next: the build queue's decisions, as data.
//!
//! Two rules. One build per app at a time, first come first served: a second push of an app waits
//! for the first and is told which build it waits for. At most `limit` builds at once across apps
//! (`--build-concurrency`): a freed slot goes to the build whose app's turn came first. A build
//! leaves the queue when it ends, however it ends (finished, failed, stopped while it waited), and
//! a destroy takes all of its app's builds out at once, so their slots go on at once too.
//!
//! No clock, no I/O, no async: `queue.rs` holds this under a mutex and wakes the builds whose turn
//! came.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A build's place in the queue, from joining to leaving. Build numbers are not enough: after a
/// destroy, a new app of the same name numbers its builds from 1 again, while a stopped build of
/// the old one may not have left yet.
pub type TicketId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// It builds now.
    Running,
    /// It has its app's turn and waits for a slot, which the end of any app's build frees.
    ForSlot,
    /// It waits for build `behind` of the same app, which has the app's turn, to end.
    BehindApp { behind: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    pub ticket: TicketId,
    pub place: Place,
}

/// A build that was waiting and runs now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub ticket: TicketId,
    pub app: String,
    pub build: u64,
}

/// What a destroy took out of the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// Every build of the app, running or waiting: all of them stop.
    pub stopped: Vec<u64>,
    /// Builds of other apps that got the slots the app's running build held.
    pub started: Vec<Started>,
}

#[derive(Debug)]
struct Entry {
    app: String,
    build: u64,
}

/// One app's builds: the one whose turn it is, and those behind it in arrival order.
#[derive(Debug, Default)]
struct AppLine {
    turn: Option<TicketId>,
    waiting: VecDeque<TicketId>,
}

#[derive(Debug)]
pub struct Turns {
    limit: usize,
    next_ticket: TicketId,
    entries: BTreeMap<TicketId, Entry>,
    /// Only apps with a build in the queue.
    apps: BTreeMap<String, AppLine>,
    /// Builds that have their app's turn and wait for a slot, in the order the turn came.
    ready: VecDeque<TicketId>,
    running: BTreeSet<TicketId>,
}

impl Turns {
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            next_ticket: 1,
            entries: BTreeMap::new(),
            apps: BTreeMap::new(),
            ready: VecDeque::new(),
            running: BTreeSet::new(),
        }
    }

    /// Build `build` of `app` joins the queue.
    pub fn join(&mut self, app: &str, build: u64) -> Joined {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.entries.insert(
            ticket,
            Entry {
                app: app.to_string(),
                build,
            },
        );
        let line = self.apps.entry(app.to_string()).or_default();
        let place = match line.turn {
            Some(holder) => {
                line.waiting.push_back(ticket);
                Place::BehindApp {
                    behind: self.entries[&holder].build,
                }
            }
            None => {
                line.turn = Some(ticket);
                // While a slot is free nobody waits for one, so this jumps no queue.
                if self.running.len() < self.limit {
                    self.running.insert(ticket);
                    Place::Running
                } else {
                    self.ready.push_back(ticket);
                    Place::ForSlot
                }
            }
        };
        Joined { ticket, place }
    }

    /// The build ended, or stopped waiting. Returns the builds that run now. Leaving twice, or
    /// after a destroy took the build out, changes nothing.
    pub fn leave(&mut self, ticket: TicketId) -> Vec<Started> {
        let Some(entry) = self.entries.remove(&ticket) else {
            return Vec::new();
        };
        if let Some(line) = self.apps.get_mut(&entry.app) {
            if line.turn == Some(ticket) {
                self.running.remove(&ticket);
                self.ready.retain(|t| *t != ticket);
                line.turn = line.waiting.pop_front();
                if let Some(next) = line.turn {
                    // Behind the builds of other apps whose turn came earlier.
                    self.ready.push_back(next);
                }
            } else {
                line.waiting.retain(|t| *t != ticket);
            }
            if line.turn.is_none() {
                self.apps.remove(&entry.app);
            }
        }
        self.fill_slots()
    }

    /// A destroy of `app`: all its builds leave at once.
    pub fn remove_app(&mut self, app: &str) -> Removed {
        let Some(line) = self.apps.remove(app) else {
            return Removed::default();
        };
        let mut stopped = Vec::new();
        for ticket in line.turn.into_iter().chain(line.waiting) {
            self.running.remove(&ticket);
            self.ready.retain(|t| *t != ticket);
            if let Some(entry) = self.entries.remove(&ticket) {
                stopped.push(entry.build);
            }
        }
        Removed {
            stopped,
            started: self.fill_slots(),
        }
    }

    fn fill_slots(&mut self) -> Vec<Started> {
        let mut started = Vec::new();
        while self.running.len() < self.limit {
            let Some(ticket) = self.ready.pop_front() else {
                break;
            };
            self.running.insert(ticket);
            if let Some(e) = self.entries.get(&ticket) {
                started.push(Started {
                    ticket,
                    app: e.app.clone(),
                    build: e.build,
                });
            }
        }
        started
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use Place::*;

    /// One step of a script and what it must answer.
    enum Op {
        Join(&'static str, u64, Place),
        /// The build ends; these (app, build) run now.
        Leave(&'static str, u64, &'static [(&'static str, u64)]),
        /// A destroy of the app: it stops these builds; these of other apps run now.
        Destroy(&'static str, &'static [u64], &'static [(&'static str, u64)]),
        /// Where a build is now.
        Is(&'static str, u64, Option<Place>),
    }
    use Op::*;

    /// Where a build is now; `None` once it left.
    fn place(t: &Turns, ticket: TicketId) -> Option<Place> {
        let entry = t.entries.get(&ticket)?;
        if t.running.contains(&ticket) {
            return Some(Place::Running);
        }
        if t.ready.contains(&ticket) {
            return Some(Place::ForSlot);
        }
        let holder = t.apps.get(&entry.app)?.turn?;
        Some(Place::BehindApp {
            behind: t.entries.get(&holder)?.build,
        })
    }

    fn names(started: &[Started]) -> Vec<(String, u64)> {
        started.iter().map(|s| (s.app.clone(), s.build)).collect()
    }

    fn owned(want: &[(&str, u64)]) -> Vec<(String, u64)> {
        want.iter().map(|(a, b)| (a.to_string(), *b)).collect()
    }

    /// Runs the script, checking every answer and, after every step, the invariants: never more
    /// than `limit` running, nobody waits for a slot while one is free, one turn per app.
    fn play(limit: usize, script: &[Op]) {
        let mut t = Turns::new(limit);
        let mut tickets: HashMap<(&str, u64), TicketId> = HashMap::new();
        for (i, op) in script.iter().enumerate() {
            match *op {
                Join(app, build, want) => {
                    let j = t.join(app, build);
                    assert_eq!(j.place, want, "step {i}: join {app} {build}");
                    tickets.insert((app, build), j.ticket);
                }
                Leave(app, build, want) => {
                    let started = t.leave(tickets[&(app, build)]);
                    assert_eq!(
                        names(&started),
                        owned(want),
                        "step {i}: leave {app} {build}"
                    );
                }
                Destroy(app, stopped, started) => {
                    let r = t.remove_app(app);
                    assert_eq!(r.stopped, stopped, "step {i}: destroy {app}");
                    assert_eq!(names(&r.started), owned(started), "step {i}: destroy {app}");
                }
                Is(app, build, want) => {
                    let place = tickets.get(&(app, build)).and_then(|id| place(&t, *id));
                    assert_eq!(place, want, "step {i}: where is {app} {build}");
                }
            }
            assert!(t.running.len() <= t.limit, "step {i}: over the limit");
            assert!(
                t.running.len() == t.limit || t.ready.is_empty(),
                "step {i}: a build waits while a slot is free"
            );
            for (app, line) in &t.apps {
                let turn = line.turn.expect("an app in the queue has a turn");
                let busy = t.running.iter().chain(&t.ready);
                let of_app = busy.filter(|id| &t.entries[id].app == app).count();
                assert_eq!(
                    (of_app, t.running.contains(&turn) || t.ready.contains(&turn)),
                    (1, true),
                    "step {i}: {app}"
                );
            }
        }
    }

    #[test]
    fn builds_of_one_app_run_one_at_a_time_in_arrival_order() {
        play(
            4,
            &[
                Join("a", 1, Running),
                Join("a", 2, BehindApp { behind: 1 }),
                Join("a", 3, BehindApp { behind: 1 }),
                Leave("a", 1, &[("a", 2)]),
                Is("a", 3, Some(BehindApp { behind: 2 })),
                Leave("a", 2, &[("a", 3)]),
                Leave("a", 3, &[]),
                // The app's queue is empty again: the next build runs at once.
                Join("a", 4, Running),
            ],
        );
    }

    #[test]
    fn the_limit_counts_builds_of_every_app() {
        play(
            2,
            &[
                Join("a", 1, Running),
                Join("b", 1, Running),
                Join("c", 1, ForSlot),
                Join("d", 1, ForSlot),
                Leave("b", 1, &[("c", 1)]),
                Is("d", 1, Some(ForSlot)),
                Leave("a", 1, &[("d", 1)]),
                Leave("c", 1, &[]),
                Leave("d", 1, &[]),
            ],
        );
    }

    #[test]
    fn a_freed_slot_goes_to_the_build_whose_turn_came_first() {
        play(
            1,
            &[
                Join("a", 1, Running),
                Join("b", 1, ForSlot),
                Join("a", 2, BehindApp { behind: 1 }),
                // a2's turn comes only now, after b1's: b1 gets the slot.
                Leave("a", 1, &[("b", 1)]),
                Is("a", 2, Some(ForSlot)),
                Leave("b", 1, &[("a", 2)]),
            ],
        );
    }

    #[test]
    fn a_queued_build_is_told_of_the_build_with_its_apps_turn_even_when_that_one_waits_too() {
        play(
            1,
            &[
                Join("b", 1, Running),
                Join("a", 1, ForSlot),
                Join("a", 2, BehindApp { behind: 1 }),
            ],
        );
    }

    #[test]
    fn a_build_that_stops_waiting_gives_up_its_place_and_hands_on_nothing() {
        play(
            1,
            &[
                Join("a", 1, Running),
                Join("a", 2, BehindApp { behind: 1 }),
                Join("a", 3, BehindApp { behind: 1 }),
                Join("b", 1, ForSlot),
                Leave("a", 2, &[]),
                Leave("b", 1, &[]),
                Leave("a", 1, &[("a", 3)]),
                // Leaving twice changes nothing.
                Leave("a", 1, &[]),
                Is("a", 3, Some(Running)),
            ],
        );
    }

    #[test]
    fn a_destroy_stops_every_build_of_its_app_and_only_those() {
        play(
            2,
            &[
                Join("a", 1, Running),
                Join("a", 2, BehindApp { behind: 1 }),
                Join("b", 1, Running),
                Join("c", 1, ForSlot),
                Join("a", 3, BehindApp { behind: 1 }),
                Destroy("a", &[1, 2, 3], &[("c", 1)]),
                Is("a", 2, None),
                Is("b", 1, Some(Running)),
                // The stopped builds leave later, as their tasks end: nothing happens then.
                Leave("a", 1, &[]),
                Leave("a", 2, &[]),
                // A new app of the same name starts its own queue.
                Join("a", 1, ForSlot),
                Leave("b", 1, &[("a", 1)]),
                Destroy("zzz", &[], &[]),
            ],
        );
    }

    #[test]
    fn a_destroy_of_an_app_that_only_waits_frees_no_slot() {
        play(
            1,
            &[
                Join("b", 1, Running),
                Join("a", 1, ForSlot),
                Join("c", 1, ForSlot),
                Destroy("a", &[1], &[]),
                Leave("b", 1, &[("c", 1)]),
            ],
        );
    }

    #[test]
    fn a_limit_of_zero_still_builds() {
        play(0, &[Join("a", 1, Running), Join("b", 1, ForSlot)]);
    }
}
