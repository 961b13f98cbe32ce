use super::testkit::*;
use super::*;
use ObservedState::*;

fn created(plan: &Plan) -> Vec<(String, u32, String)> {
    plan.create
        .iter()
        .map(|a| (a.process.clone(), a.index, a.host_id.clone()))
        .collect()
}

fn drained(plan: &Plan) -> Vec<String> {
    plan.update
        .iter()
        .map(|(_, new)| {
            assert_eq!(
                new.desired,
                Desired::Drain {
                    until: Timestamp(T0 + 5000)
                }
            );
            new.id.clone()
        })
        .collect()
}

fn deleted(plan: &Plan) -> Vec<String> {
    plan.delete.iter().map(|a| a.id.clone()).collect()
}

#[test]
fn an_app_without_release_runs_nothing() {
    let plan = Case::new(vec![app("a", None, &[("web", 1)])], vec![]).run();
    assert!(plan.is_empty());
}

#[test]
fn a_first_deploy_places_every_index() {
    let plan = Case::new(vec![app("a", Some(1), &[("web", 3)])], vec![]).run();
    assert_eq!(
        created(&plan),
        [
            ("web".into(), 1, "h1".into()),
            ("web".into(), 2, "h1".into()),
            ("web".into(), 3, "h1".into())
        ]
    );
    assert!(plan.put_routes.is_empty(), "nothing is up yet");
}

#[test]
fn a_steady_app_needs_nothing() {
    let c = Case::new(
        vec![app("a", Some(1), &[("web", 1)])],
        vec![alloc("x", "a", 1, "web", 1, "h1")],
    )
    .up("x", 20001)
    .route("a", 1, "web.1", "10.0.0.2:20001");
    assert_eq!(c.run(), Plan::default());
}

#[test]
fn instances_on_the_gateways_own_host_are_routed_at_their_container_address() {
    let mut c = Case::new(
        vec![app("a", Some(1), &[("web", 1)])],
        vec![alloc("x", "a", 1, "web", 1, "h1")],
    )
    .up("x", 20001);
    c.hosts[0].colocated = true;
    assert_eq!(
        c.run().put_routes,
        [(rk("a", 1, "web.1"), "172.17.0.9:20001".to_string())]
    );
    // Without a container address it falls back to the published port.
    c.observed.get_mut("x").unwrap().container_addr = None;
    assert_eq!(
        c.run().put_routes,
        [(rk("a", 1, "web.1"), "10.0.0.2:20001".to_string())]
    );
}

#[test]
fn an_up_web_instance_gets_a_route_and_a_worker_does_not() {
    let c = Case::new(
        vec![app("a", Some(1), &[("web", 1), ("worker", 1)])],
        vec![
            alloc("x", "a", 1, "web", 1, "h1"),
            alloc("w", "a", 1, "worker", 1, "h1"),
        ],
    )
    .up("x", 20001)
    .up("w", 20002);
    let plan = c.run();
    assert_eq!(
        plan.put_routes,
        [(rk("a", 1, "web.1"), "10.0.0.2:20001".to_string())]
    );
}

#[test]
fn scaling_down_drains_the_highest_indices_and_unroutes_them_at_once() {
    let c = Case::new(
        vec![app("a", Some(1), &[("web", 1)])],
        vec![
            alloc("x1", "a", 1, "web", 1, "h1"),
            alloc("x2", "a", 1, "web", 2, "h1"),
        ],
    )
    .up("x1", 1)
    .up("x2", 2)
    .route("a", 1, "web.1", "10.0.0.2:1")
    .route("a", 1, "web.2", "10.0.0.2:2");
    let plan = c.run();
    assert_eq!(drained(&plan), ["x2"]);
    assert_eq!(plan.delete_routes, [rk("a", 1, "web.2")]);
    assert!(plan.create.is_empty());
}

#[test]
fn scaling_to_zero_drains_everything() {
    let c = Case::new(
        vec![app("a", Some(1), &[("web", 0)])],
        vec![alloc("x1", "a", 1, "web", 1, "h1")],
    )
    .up("x1", 1)
    .route("a", 1, "web.1", "10.0.0.2:1");
    let plan = c.run();
    assert_eq!(drained(&plan), ["x1"]);
    assert_eq!(plan.delete_routes, [rk("a", 1, "web.1")]);
}

#[test]
fn a_drained_allocation_is_deleted_after_its_deadline_only() {
    let mut early = alloc("x1", "a", 1, "web", 2, "h1");
    early.desired = Desired::Drain {
        until: Timestamp(T0 + 1),
    };
    let mut due = alloc("x2", "a", 1, "web", 3, "h1");
    due.desired = Desired::Drain {
        until: Timestamp(T0),
    };
    let c = Case::new(
        vec![app("a", Some(1), &[("web", 1)])],
        vec![alloc("x0", "a", 1, "web", 1, "h1"), early, due],
    )
    .up("x0", 1)
    .route("a", 1, "web.1", "10.0.0.2:1");
    let plan = c.run();
    assert_eq!(deleted(&plan), ["x2"]);
    assert!(plan.update.is_empty() && plan.create.is_empty());
}

/// `a` serving v1, deploying v2.
fn rolling(formation: &[(&str, u32)]) -> AppView {
    let mut a = app("a", Some(1), formation);
    a.deploying = Some(release_view(2, T0 - 1000));
    a
}

#[test]
fn a_rollout_starts_new_before_it_stops_old() {
    // Step 1: v2 is deploying and not placed yet: place it, keep v1 serving.
    let c = Case::new(
        vec![rolling(&[("web", 1)])],
        vec![alloc("v1", "a", 1, "web", 1, "h1")],
    )
    .up("v1", 1)
    .route("a", 1, "web.1", "10.0.0.2:1");
    let plan = c.run();
    assert_eq!(created(&plan), [("web".into(), 1, "h1".into())]);
    assert_eq!(plan.create[0].release, 2);
    assert!(plan.update.is_empty() && plan.delete_routes.is_empty());

    // Step 2: v2 is up but not promoted yet (rollout::assess decides that): it takes no
    // traffic, and nothing stops.
    let both = vec![
        alloc("v1", "a", 1, "web", 1, "h1"),
        alloc("v2", "a", 2, "web", 1, "h1"),
    ];
    let c = Case::new(vec![rolling(&[("web", 1)])], both.clone())
        .up("v1", 1)
        .up("v2", 2)
        .route("a", 1, "web.1", "10.0.0.2:1");
    assert_eq!(c.run(), Plan::default());

    // Step 3: v2 serves: route it, unroute and drain v1, say so.
    let c = Case::new(vec![app("a", Some(2), &[("web", 1)])], both)
        .up("v1", 1)
        .up("v2", 2)
        .route("a", 1, "web.1", "10.0.0.2:1");
    let plan = c.run();
    assert_eq!(drained(&plan), ["v1"]);
    assert_eq!(
        plan.put_routes,
        [(rk("a", 2, "web.1"), "10.0.0.2:2".to_string())]
    );
    assert_eq!(plan.delete_routes, [rk("a", 1, "web.1")]);
    assert_eq!(plan.events[0].tag, "deploy");
    assert_eq!(plan.events[0].text, "Stopping v1 (web.1)");
}

#[test]
fn while_a_release_deploys_every_process_type_of_the_serving_one_keeps_running() {
    // v2's worker is up and its web crashed: v1 stays whole, web and worker.
    let allocs = vec![
        alloc("w1", "a", 1, "web", 1, "h1"),
        alloc("k1", "a", 1, "worker", 1, "h1"),
        alloc("w2", "a", 2, "web", 1, "h1"),
        alloc("k2", "a", 2, "worker", 1, "h1"),
    ];
    let formation = [("web", 1), ("worker", 1)];
    let c = Case::new(vec![rolling(&formation)], allocs.clone())
        .up("w1", 1)
        .up("k1", 2)
        .state("w2", Crashed)
        .up("k2", 3)
        .route("a", 1, "web.1", "10.0.0.2:1");
    assert_eq!(c.run(), Plan::default());
}

#[test]
fn a_failed_release_is_removed_at_once_and_the_serving_one_is_untouched() {
    // After the verdict: v1 serves, nothing deploys; v2's instances never took traffic.
    let c = Case::new(
        vec![app("a", Some(1), &[("web", 1), ("worker", 1)])],
        vec![
            alloc("w1", "a", 1, "web", 1, "h1"),
            alloc("k1", "a", 1, "worker", 1, "h1"),
            alloc("w2", "a", 2, "web", 1, "h1"),
            alloc("k2", "a", 2, "worker", 1, "h1"),
        ],
    )
    .up("w1", 1)
    .up("k1", 2)
    .state("w2", Crashed)
    .up("k2", 3)
    .route("a", 1, "web.1", "10.0.0.2:1");
    let plan = c.run();
    assert_eq!(deleted(&plan), ["w2", "k2"]);
    assert!(plan.update.is_empty() && plan.create.is_empty());
    assert!(plan.put_routes.is_empty() && plan.delete_routes.is_empty());
    assert!(plan.events.is_empty(), "{:?}", plan.events);
}

#[test]
fn a_failed_first_release_leaves_nothing_running() {
    let c = Case::new(
        vec![app("a", None, &[("web", 1)])],
        vec![alloc("w1", "a", 1, "web", 1, "h1")],
    )
    .state("w1", Crashed);
    assert_eq!(deleted(&c.run()), ["w1"]);
}

#[test]
fn a_superseded_release_makes_way_for_the_newer_one() {
    let mut a = app("a", Some(1), &[("web", 1)]);
    a.deploying = Some(release_view(3, T0));
    let c = Case::new(
        vec![a],
        vec![
            alloc("w1", "a", 1, "web", 1, "h1"),
            alloc("w2", "a", 2, "web", 1, "h1"),
        ],
    )
    .up("w1", 1)
    .state("w2", Starting)
    .route("a", 1, "web.1", "10.0.0.2:1");
    let plan = c.run();
    assert_eq!(deleted(&plan), ["w2"]);
    assert_eq!(plan.create.len(), 1);
    assert_eq!(plan.create[0].release, 3);
}

#[test]
fn the_stopping_event_names_instances_in_order_whatever_the_store_order() {
    let c = Case::new(
        vec![app("a", Some(2), &[("web", 0)])],
        vec![
            alloc("x10", "a", 1, "web", 10, "h1"),
            alloc("x2", "a", 1, "web", 2, "h1"),
            alloc("k1", "a", 1, "worker", 1, "h1"),
            alloc("x1", "a", 1, "web", 1, "h1"),
        ],
    );
    let plan = c.run();
    assert_eq!(
        plan.events[0].text,
        "Stopping v1 (web.1, web.2, web.10, worker.1)"
    );
}

#[test]
fn older_releases_still_running_drain_when_a_newer_one_serves() {
    // A rollback made v4 of v2's image; v3 served before it.
    let c = Case::new(
        vec![app("a", Some(4), &[("web", 1), ("worker", 1)])],
        vec![
            alloc("w3", "a", 3, "web", 1, "h1"),
            alloc("k3", "a", 3, "worker", 1, "h1"),
            alloc("w4", "a", 4, "web", 1, "h1"),
            alloc("k4", "a", 4, "worker", 1, "h1"),
        ],
    )
    .up("w3", 1)
    .up("k3", 2)
    .up("w4", 3)
    .up("k4", 4)
    .route("a", 3, "web.1", "10.0.0.2:1");
    let plan = c.run();
    assert_eq!(drained(&plan), ["w3", "k3"]);
    assert_eq!(plan.events[0].text, "Stopping v3 (web.1, worker.1)");
}

#[test]
fn after_a_control_plane_restart_unknown_instances_keep_their_routes() {
    // No observations at all yet: nothing is replaced, nothing unrouted.
    let c = Case::new(
        vec![app("a", Some(1), &[("web", 2)])],
        vec![
            alloc("x1", "a", 1, "web", 1, "h1"),
            alloc("x2", "a", 1, "web", 2, "h1"),
        ],
    )
    .route("a", 1, "web.1", "10.0.0.2:1")
    .route("a", 1, "web.2", "10.0.0.2:2");
    assert_eq!(c.run(), Plan::default());
}

#[test]
fn a_crashed_instance_is_unrouted_but_not_replaced() {
    // Restarting a crashed instance is its agent's job; the scheduler only unroutes it.
    let c = Case::new(
        vec![app("a", Some(1), &[("web", 1)])],
        vec![alloc("x1", "a", 1, "web", 1, "h1")],
    )
    .state("x1", Crashed)
    .route("a", 1, "web.1", "10.0.0.2:1");
    let plan = c.run();
    assert_eq!(plan.delete_routes, [rk("a", 1, "web.1")]);
    assert!(plan.create.is_empty() && plan.update.is_empty() && plan.delete.is_empty());
}

#[test]
fn instances_on_a_lost_host_are_replaced_elsewhere() {
    let mut c = Case::new(
        vec![app("a", Some(1), &[("web", 2)])],
        vec![
            alloc("x1", "a", 1, "web", 1, "h1"),
            alloc("x2", "a", 1, "web", 2, "h22"),
        ],
    )
    .up("x1", 1)
    .up("x2", 2)
    .route("a", 1, "web.1", "10.0.0.2:1")
    .route("a", 1, "web.2", "10.0.0.3:2");
    c.hosts = vec![host("h1", false), host("h22", true)];
    let plan = c.run();
    assert_eq!(deleted(&plan), ["x1"]);
    assert_eq!(created(&plan), [("web".into(), 1, "h22".into())]);
    assert_eq!(plan.delete_routes, [rk("a", 1, "web.1")]);
    assert_eq!(plan.events[0].tag, "host");
    assert!(plan.events[0].text.contains("h1-name"));
}

#[test]
fn placement_spreads_an_app_then_prefers_free_memory() {
    let mut c = Case::new(vec![app("a", Some(1), &[("web", 4)])], vec![]);
    let mut big = host("big", true);
    big.memory_mb = 8192;
    c.hosts = vec![host("h1", true), big];
    let hosts: Vec<String> = c.run().create.iter().map(|a| a.host_id.clone()).collect();
    assert_eq!(hosts, ["big", "h1", "big", "h1"]);
}

#[test]
fn a_full_cluster_reports_what_it_could_not_place() {
    let mut c = Case::new(vec![app("a", Some(1), &[("web", 3)])], vec![]);
    c.hosts[0].memory_mb = 1100;
    let plan = c.run();
    assert_eq!(plan.create.len(), 2);
    assert_eq!(plan.unplaced.len(), 1);
    assert_eq!(
        (plan.unplaced[0].instance.as_str(), plan.unplaced[0].release),
        ("web.3", 1)
    );
    assert!(plan.unplaced[0].reason.contains("512 MB"));

    let mut c = Case::new(vec![app("a", Some(1), &[("web", 1)])], vec![]);
    c.hosts[0].port_slots = 0;
    assert_eq!(c.run().unplaced.len(), 1);

    let mut c = Case::new(vec![app("a", Some(1), &[("web", 1)])], vec![]);
    c.hosts[0].alive = false;
    assert_eq!(c.run().unplaced[0].reason, "no host is up");
}

#[test]
fn the_scheduler_counts_reservations_and_the_container_gets_the_limit() {
    // 1024 MB offered, 128 MB reserved each, limits of 512 up to 4x: 8 fit, not 2.
    let mut c = Case::new(vec![app("a", Some(1), &[("web", 9)])], vec![]);
    c.settings.instance_reserve_mb = 128;
    c.hosts[0].memory_mb = 1024;
    c.hosts[0].overcommit = 4.0;
    let plan = c.run();
    assert_eq!(plan.create.len(), 8);
    assert!(plan
        .create
        .iter()
        .all(|a| (a.reserved_mb, a.memory_mb) == (128, 512)));
    assert_eq!(plan.unplaced[0].instance, "web.9");

    // A process type's own reservation and limit (ps:resize) over the defaults.
    let mut a = app("a", Some(1), &[("web", 1)]);
    let r = a.release.as_mut().unwrap();
    r.memory_mb.insert("web".into(), 256);
    r.reserve_mb.insert("web".into(), 64);
    let c = Case::new(vec![a], vec![]);
    let made = &c.run().create[0];
    assert_eq!((made.reserved_mb, made.memory_mb), (64, 256));
}

#[test]
fn allocations_of_a_destroyed_app_are_deleted() {
    let c = Case::new(vec![], vec![alloc("x1", "gone", 1, "web", 1, "h1")])
        .route("gone", 1, "web.1", "a:1");
    let plan = c.run();
    assert_eq!(deleted(&plan), ["x1"]);
    assert_eq!(plan.delete_routes, [rk("gone", 1, "web.1")]);
}

#[test]
fn duplicate_indices_keep_the_serving_one() {
    let mut late = alloc("b", "a", 1, "web", 1, "h1");
    late.created_at = Timestamp(T0);
    let c = Case::new(
        vec![app("a", Some(1), &[("web", 1)])],
        vec![alloc("a1", "a", 1, "web", 1, "h1"), late],
    )
    .state("a1", Starting)
    .up("b", 7);
    let plan = c.run();
    assert_eq!(drained(&plan), ["a1"]);
    assert_eq!(
        plan.put_routes,
        [(rk("a", 1, "web.1"), "10.0.0.2:7".to_string())]
    );
}

#[test]
fn a_process_type_the_release_lacks_is_not_run() {
    let mut a = app("a", Some(1), &[("web", 1), ("clock", 1)]);
    a.release.as_mut().unwrap().types = ["web".to_string()].into();
    let plan = Case::new(vec![a], vec![]).run();
    assert_eq!(created(&plan), [("web".into(), 1, "h1".into())]);
}

#[test]
fn the_pace_of_a_rollout() {
    // (count, surge, unavailable, new ones settled) → (old kept, new allowed, mixed)
    #[rustfmt::skip]
        let table = [
            ((3, 5, 0, 0), (3, 3, false)),
            ((3, 3, 0, 2), (3, 3, false)),
            ((10, 5, 0, 0), (10, 5, true)),
            ((10, 5, 0, 3), (7, 8, true)),
            ((10, 5, 0, 5), (5, 10, true)),
            ((10, 5, 0, 10), (0, 10, true)),
            ((4, 0, 1, 0), (3, 1, true)),
            ((4, 0, 1, 1), (2, 2, true)),
            ((4, 1, 1, 0), (3, 2, true)),
        ];
    for ((n, surge, unavailable, ready), (old, new, mixed)) in table {
        assert_eq!(
            pace(n, surge, unavailable, ready),
            Pace { old, new, mixed },
            "{n} {surge} {unavailable} {ready}"
        );
    }
}

/// Applies `plan` to the case as the scheduler and agents would: allocations written,
/// routes set, and what was created up by the next step.
fn apply(c: &mut Case, plan: &Plan, port: &mut u16) {
    for (old, new) in &plan.update {
        let a = c.allocs.iter_mut().find(|a| a.id == old.id).unwrap();
        *a = new.clone();
    }
    let gone: BTreeSet<&str> = plan.delete.iter().map(|a| a.id.as_str()).collect();
    c.allocs.retain(|a| !gone.contains(a.id.as_str()));
    for a in &plan.create {
        c.allocs.push(a.clone());
    }
    for k in &plan.delete_routes {
        c.routes.remove(k);
    }
    for (k, addr) in &plan.put_routes {
        c.routes.insert(k.clone(), addr.clone());
    }
    for a in &plan.create {
        *port += 1;
        c.observed.insert(
            a.id.clone(),
            Obs {
                state: Up,
                port: Some(*port),
                container_addr: None,
                restarts: 0,
                since: Timestamp(T0 - 60_000),
                check: None,
            },
        );
    }
}

#[test]
fn a_large_formation_rolls_in_batches_and_never_drops_below_its_count() {
    let mut a = rolling(&[("web", 4)]);
    a.settings.max_surge = Some(caas_api::checks::Amount::Count(1));
    let v1: Vec<AllocationRecord> = (1..=4)
        .map(|i| alloc(&format!("old{i}"), "a", 1, "web", i, "h1"))
        .collect();
    let mut c = Case::new(vec![a], v1.clone());
    for (i, x) in v1.iter().enumerate() {
        c = c.up(&x.id, 100 + i as u16);
        c.routes.insert(
            rk("a", 1, &x.instance_name()),
            format!("10.0.0.2:{}", 100 + i),
        );
    }
    let mut n = 0;
    let mut ids = move || {
        n += 1;
        format!("new{n}")
    };
    let mut port = 200;
    let mut said = Vec::new();
    for step in 0..12 {
        let plan = c.with_world(|w| reconcile(w, &mut ids));
        said.extend(plan.events.iter().map(|e| e.text.clone()));
        apply(&mut c, &plan, &mut port);
        let running = c
            .allocs
            .iter()
            .filter(|a| a.desired == Desired::Run)
            .count();
        assert!(
            running <= 5,
            "step {step}: {running} running, over 4 + max-surge 1"
        );
        assert!(
            c.routes.len() >= 4,
            "step {step}: {} routed, under the count: {:?}",
            c.routes.len(),
            c.routes
        );
    }
    // Every new instance is up and routed; every old one makes way, one at a time.
    let new_routed = c.routes.keys().filter(|k| k.release == 2).count();
    assert_eq!(new_routed, 4, "{:?}", c.routes);
    assert_eq!(
        said,
        [
            "Stopping v1 (web.4) to make way for v2",
            "Stopping v1 (web.3) to make way for v2",
            "Stopping v1 (web.2) to make way for v2",
            "Stopping v1 (web.1) to make way for v2",
        ]
    );
}

#[test]
fn an_old_instance_lost_during_a_stuck_rollout_is_replaced_not_drained() {
    for formation in [2, 8] {
        let mut a = rolling(&[("web", formation)]);
        a.settings.max_surge = Some(caas_api::checks::Amount::Count(1));
        let mut allocs: Vec<AllocationRecord> = (1..=formation)
            .map(|i| alloc(&format!("old{i}"), "a", 1, "web", i, "h22"))
            .collect();
        allocs[0].host_id = "h1".into();
        let mut stuck = alloc("new1", "a", 2, "web", 1, "h22");
        stuck.created_at = Timestamp(T0 - 500);
        allocs.push(stuck);
        let mut c = Case::new(vec![a], allocs.clone());
        for x in &allocs[..formation as usize] {
            c = c.up(&x.id, 7);
        }
        c = c.state("new1", ObservedState::Starting);
        let mut room = host("h22", true);
        room.memory_mb = 16_384;
        c.hosts = vec![host("h1", false), room];
        let plan = c.run();
        assert_eq!(deleted(&plan), ["old1"], "web={formation}");
        assert_eq!(
            plan.create
                .iter()
                .map(|a| (a.release, a.instance_name(), a.host_id.as_str()))
                .collect::<Vec<_>>(),
            [(1, "web.1".to_string(), "h22")],
            "web={formation}: the serving release gets its web.1 back"
        );
        assert!(plan.update.is_empty(), "nothing drains: {:?}", plan.update);
    }
}

#[test]
fn keep_n_replaces_a_failing_instance_while_n_others_are_up() {
    let mut a = app("a", Some(1), &[("web", 3)]);
    a.release
        .as_mut()
        .unwrap()
        .strategies
        .insert("web".into(), Strategy::Keep(2));
    let allocs = vec![
        alloc("x1", "a", 1, "web", 1, "h1"),
        alloc("x2", "a", 1, "web", 2, "h1"),
        alloc("x3", "a", 1, "web", 3, "h1"),
    ];
    let c = Case::new(vec![a.clone()], allocs.clone())
        .state("x1", ObservedState::Unhealthy)
        .up("x2", 2)
        .up("x3", 3);
    let plan = c.run();
    assert_eq!(drained(&plan), ["x1"]);
    assert_eq!(created(&plan), [("web".into(), 1, "h1".into())]);
    assert_eq!(
        plan.events[0].text,
        "Replacing web.1 of v1: failing its liveness check, and 2 others are up (strategy keep=2)"
    );
    // One other up only: it is left to be, reported.
    let c = Case::new(vec![a], allocs)
        .state("x1", ObservedState::Unhealthy)
        .up("x2", 2)
        .state("x3", ObservedState::Starting);
    let plan = c.run();
    assert!(plan.update.is_empty() && plan.create.is_empty(), "{plan:?}");
}

#[test]
fn a_failed_batched_release_keeps_its_routed_instances_until_the_old_one_is_back() {
    // v2 failed after its web.1 replaced v1's web.4: v1 serves again, with three up.
    let mut allocs: Vec<AllocationRecord> = (1..=3)
        .map(|i| alloc(&format!("old{i}"), "a", 1, "web", i, "h1"))
        .collect();
    allocs.push(alloc("new1", "a", 2, "web", 1, "h1"));
    allocs.push(alloc("new2", "a", 2, "web", 2, "h1"));
    let mut c = Case::new(vec![app("a", Some(1), &[("web", 4)])], allocs)
        .up("old1", 1)
        .up("old2", 2)
        .up("old3", 3)
        .up("new1", 11)
        .state("new2", ObservedState::Starting)
        .route("a", 1, "web.1", "10.0.0.2:1")
        .route("a", 1, "web.2", "10.0.0.2:2")
        .route("a", 1, "web.3", "10.0.0.2:3")
        .route("a", 2, "web.1", "10.0.0.2:11");
    let plan = c.run();
    assert_eq!(deleted(&plan), ["new2"], "it never took traffic");
    assert!(
        plan.update.is_empty(),
        "v2's web.1 stays: {:?}",
        plan.update
    );
    assert_eq!(created(&plan), [("web".into(), 4, "h1".into())]);
    assert!(plan.delete_routes.is_empty() && plan.put_routes.is_empty());

    // v1's web.4 is up: v2's web.1 drains, and leaves the routes.
    c.allocs.retain(|a| a.id != "new2");
    c.allocs.push(alloc("old4", "a", 1, "web", 4, "h1"));
    let c = c.up("old4", 4);
    let plan = c.run();
    assert_eq!(drained(&plan), ["new1"]);
    assert_eq!(plan.delete_routes, [rk("a", 2, "web.1")]);
    assert_eq!(plan.events[0].text, "Stopping v2 (web.1)");
}

#[test]
fn an_app_sets_its_own_drain() {
    let mut a = app("a", Some(1), &[("web", 0)]);
    a.settings.drain_ms = Some(60_000);
    let plan = Case::new(vec![a], vec![alloc("x1", "a", 1, "web", 1, "h1")]).run();
    assert_eq!(
        plan.update[0].1.desired,
        Desired::Drain {
            until: Timestamp(T0 + 60_000)
        }
    );
}

/// `a` serving v2 with v1 as its canary.
fn with_canary(formation: &[(&str, u32)], canary: u64) -> AppView {
    let mut a = app("a", Some(2), formation);
    a.canary = Some(release_view(canary, T0 - 1000));
    a
}

#[test]
fn a_canary_runs_web_instances_only_beside_the_serving_release() {
    for (formation, canary, want) in [
        // As many web instances as the formation, none of its workers.
        (
            vec![("web", 2), ("worker", 1)],
            3,
            vec![
                ("web".to_string(), 1, "h1".to_string()),
                ("web".into(), 2, "h1".into()),
            ],
        ),
        // An older release works the same way.
        (vec![("web", 1)], 1, vec![("web".into(), 1, "h1".into())]),
        (vec![("web", 0), ("worker", 1)], 3, vec![]),
    ] {
        let mut allocs = Vec::new();
        let mut c = Case::new(vec![with_canary(&formation, canary)], vec![]);
        for (process, n) in &formation {
            for i in 1..=*n {
                let id = format!("s-{process}{i}");
                allocs.push(alloc(&id, "a", 2, process, i, "h1"));
                c = c.up(&id, 1);
            }
        }
        c.allocs = allocs;
        let plan = c.run();
        assert_eq!(created(&plan), want, "{formation:?}");
        assert!(plan.create.iter().all(|a| a.release == canary));
        assert!(drained(&plan).is_empty() && deleted(&plan).is_empty());
    }
}

#[test]
fn a_canary_that_is_up_is_routed_beside_the_serving_release_and_kept() {
    let c = Case::new(
        vec![with_canary(&[("web", 1)], 3)],
        vec![
            alloc("s1", "a", 2, "web", 1, "h1"),
            alloc("c1", "a", 3, "web", 1, "h1"),
            alloc("cw", "a", 3, "worker", 1, "h1"),
        ],
    )
    .up("s1", 1)
    .up("c1", 2)
    .up("cw", 3);
    let plan = c.run();
    let routed: Vec<(u64, String)> = plan
        .put_routes
        .iter()
        .map(|(k, _)| (k.release, k.instance.clone()))
        .collect();
    assert_eq!(routed, [(2, "web.1".into()), (3, "web.1".into())]);
    // A worker of the canary's release is not the canary's to run.
    assert_eq!(drained(&plan), ["cw"]);
    assert!(plan.create.is_empty());
}

#[test]
fn an_aborted_canary_drains_and_loses_its_routes() {
    for canary in [1, 3] {
        let c = Case::new(
            vec![app("a", Some(2), &[("web", 1)])],
            vec![
                alloc("s1", "a", 2, "web", 1, "h1"),
                alloc("c1", "a", canary, "web", 1, "h1"),
            ],
        )
        .up("s1", 1)
        .up("c1", 2)
        .route("a", 2, "web.1", "172.17.0.9:1")
        .route("a", canary, "web.1", "172.17.0.9:2");
        let plan = c.run();
        assert_eq!(drained(&plan), ["c1"], "canary v{canary}");
        assert_eq!(plan.delete_routes, [rk("a", canary, "web.1")]);
    }
}
