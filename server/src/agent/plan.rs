//! The agent's reconcile step as data: `plan(assigned, seen, backoff, now) -> actions`.
//!
//! The server's assignments are the truth. Containers of this cluster on this host that are not
//! assigned are removed (so a reconnecting agent never leaves an old and a replacement instance
//! both running); an assigned instance without a container gets one; an exited one is started
//! again once its back-off (kept by `lifecycle`) has passed; duplicates keep the running one.

use super::lifecycle::Backoff;
use caas_api::agent::Assignment;
use caas_api::Timestamp;
use std::collections::HashMap;

/// A container of this cluster on this host, as the engine lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub container_id: String,
    pub assignment_id: String,
    pub running: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create and start a container for the assignment.
    Run(Box<Assignment>),
    /// Start an exited container again.
    Start {
        container_id: String,
        assignment_id: String,
    },
    /// Stop (gracefully when running) and remove a container.
    Remove { container_id: String, running: bool },
}

pub fn plan(
    assigned: &[Assignment],
    seen: &[Seen],
    backoff: &HashMap<String, Backoff>,
    now: Timestamp,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut by_assignment: HashMap<&str, Vec<&Seen>> = HashMap::new();
    for s in seen {
        by_assignment
            .entry(s.assignment_id.as_str())
            .or_default()
            .push(s);
    }
    let may_retry = |id: &str| backoff.get(id).is_none_or(|b| b.next_at <= now);

    for a in assigned {
        match by_assignment.remove(a.id.as_str()) {
            None => {
                if may_retry(&a.id) {
                    actions.push(Action::Run(Box::new(a.clone())));
                }
            }
            Some(mut containers) => {
                // Keep a running container if there is one; remove the rest.
                containers.sort_by_key(|c| (!c.running, c.container_id.clone()));
                let (keep, extra) = containers.split_first().expect("entry holds one at least");
                for c in extra {
                    actions.push(Action::Remove {
                        container_id: c.container_id.clone(),
                        running: c.running,
                    });
                }
                if !keep.running && may_retry(&a.id) {
                    actions.push(Action::Start {
                        container_id: keep.container_id.clone(),
                        assignment_id: a.id.clone(),
                    });
                }
            }
        }
    }
    // What is left is not assigned here (any more): stop it.
    let mut rest: Vec<&Seen> = by_assignment.into_values().flatten().collect();
    rest.sort_by(|a, b| a.container_id.cmp(&b.container_id));
    for c in rest {
        actions.push(Action::Remove {
            container_id: c.container_id.clone(),
            running: c.running,
        });
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use caas_api::agent::HealthCheck;

    fn assignment(id: &str) -> Assignment {
        Assignment {
            id: id.into(),
            app: "a".into(),
            release: 1,
            process: "web".into(),
            index: 1,
            image: "sha256:x".into(),
            command: None,
            env: Default::default(),
            container_port: Some(5000),
            memory_mb: 512,
            cpu_shares: 1024,
            pids_limit: 512,
            cpus: None,
            health: HealthCheck::Tcp,
            checks: Vec::new(),
            stop_timeout_ms: None,
            networks: Vec::new(),
        }
    }

    fn seen(c: &str, a: &str, running: bool) -> Seen {
        Seen {
            container_id: c.into(),
            assignment_id: a.into(),
            running,
        }
    }

    const NOW: Timestamp = Timestamp(10_000);

    #[test]
    fn missing_instances_are_created_and_running_ones_adopted() {
        let actions = plan(
            &[assignment("a1"), assignment("a2")],
            &[seen("c1", "a1", true)],
            &HashMap::new(),
            NOW,
        );
        assert_eq!(actions, [Action::Run(Box::new(assignment("a2")))]);
    }

    #[test]
    fn unassigned_containers_are_removed() {
        let actions = plan(
            &[],
            &[seen("c1", "gone", true), seen("c2", "old", false)],
            &HashMap::new(),
            NOW,
        );
        assert_eq!(
            actions,
            [
                Action::Remove {
                    container_id: "c1".into(),
                    running: true
                },
                Action::Remove {
                    container_id: "c2".into(),
                    running: false
                },
            ]
        );
    }

    #[test]
    fn an_exited_container_restarts_only_after_its_backoff() {
        let s = [seen("c1", "a1", false)];
        let waiting = HashMap::from([(
            "a1".to_string(),
            Backoff {
                failures: 2,
                next_at: Timestamp(10_001),
            },
        )]);
        assert_eq!(plan(&[assignment("a1")], &s, &waiting, NOW), []);
        let due = HashMap::from([(
            "a1".to_string(),
            Backoff {
                failures: 2,
                next_at: NOW,
            },
        )]);
        assert_eq!(
            plan(&[assignment("a1")], &s, &due, NOW),
            [Action::Start {
                container_id: "c1".into(),
                assignment_id: "a1".into()
            }]
        );
    }

    #[test]
    fn a_failed_create_waits_for_its_backoff_too() {
        let waiting = HashMap::from([(
            "a1".to_string(),
            Backoff {
                failures: 1,
                next_at: Timestamp(10_500),
            },
        )]);
        assert_eq!(plan(&[assignment("a1")], &[], &waiting, NOW), []);
    }

    #[test]
    fn duplicates_keep_the_running_container() {
        let actions = plan(
            &[assignment("a1")],
            &[
                seen("c1", "a1", false),
                seen("c2", "a1", true),
                seen("c3", "a1", true),
            ],
            &HashMap::new(),
            NOW,
        );
        assert_eq!(
            actions,
            [
                Action::Remove {
                    container_id: "c3".into(),
                    running: true
                },
                Action::Remove {
                    container_id: "c1".into(),
                    running: false
                },
            ]
        );
    }
}
