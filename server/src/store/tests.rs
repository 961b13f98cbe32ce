use super::*;
use caas_api::Timestamp;
use std::collections::BTreeMap;

fn app(name: &str) -> AppRecord {
    AppRecord::new(name, Timestamp::now())
}

fn release(app: &str, version: u64) -> ReleaseRecord {
    ReleaseRecord {
        app: app.into(),
        version,
        image: format!("caas/{app}:v{version}"),
        image_id: "sha256:x".into(),
        description: "test".into(),
        created_at: Timestamp::now(),
        process_types: BTreeMap::new(),
        config: BTreeMap::new(),
        launcher: false,
        status: ReleaseStatus::Succeeded,
        error: None,
        checks: Vec::new(),
        output: Vec::new(),
        created_by: None,
        build: None,
        resources: BTreeMap::new(),
    }
}

#[test]
fn apps_are_created_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.create_app(&app("demo")).unwrap();
    assert!(matches!(
        s.create_app(&app("demo")),
        Err(StoreError::Exists)
    ));
    assert_eq!(s.apps().unwrap().len(), 1);
}

#[test]
fn releases_number_up_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        s.create_app(&app("demo")).unwrap();
        for _ in 0..3 {
            s.create_release::<()>("demo", |_, v| Ok(release("demo", v)), |_| {})
                .unwrap();
        }
        s.inner.db.flush().unwrap();
    }
    // sled's background flusher lets go of the directory lock a moment after the drop.
    let s = (0..100)
        .find_map(|_| {
            Store::open(dir.path()).ok().or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                None
            })
        })
        .expect("the store reopens");
    let versions: Vec<u64> = s
        .releases("demo")
        .unwrap()
        .iter()
        .map(|r| r.version)
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(s.app("demo").unwrap().unwrap().deploying, Some(3));
    assert_eq!(s.app("demo").unwrap().unwrap().next_version, 4);
}

fn status(s: &Store, version: u64) -> (ReleaseStatus, Option<String>) {
    let r = s.release("demo", version).unwrap().unwrap();
    (r.status, r.error)
}

#[test]
fn a_release_serves_only_once_its_rollout_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.create_app(&app("demo")).unwrap();
    let new = |s: &Store| {
        s.create_release::<()>("demo", |_, v| Ok(release("demo", v)), |_| {})
            .unwrap()
            .1
            .version
    };
    assert_eq!(new(&s), 1);
    let a = s.app("demo").unwrap().unwrap();
    assert_eq!((a.release, a.deploying), (None, Some(1)));
    assert_eq!(status(&s, 1).0, ReleaseStatus::Deploying);

    assert!(s.finish_rollout("demo", 1, Ok(()), &[]).unwrap());
    let a = s.app("demo").unwrap().unwrap();
    assert_eq!((a.release, a.deploying), (Some(1), None));
    assert_eq!(status(&s, 1), (ReleaseStatus::Succeeded, None));
    assert!(
        !s.finish_rollout("demo", 1, Ok(()), &[]).unwrap(),
        "a finished rollout is not finished twice"
    );

    // A failed rollout leaves the serving release alone.
    assert_eq!(new(&s), 2);
    assert!(s
        .finish_rollout(
            "demo",
            2,
            Err("web.1 crashed".into()),
            &["last words".into()]
        )
        .unwrap());
    let a = s.app("demo").unwrap().unwrap();
    assert_eq!((a.release, a.deploying), (Some(1), None));
    assert_eq!(
        status(&s, 2),
        (ReleaseStatus::Failed, Some("web.1 crashed".into()))
    );
    assert_eq!(
        s.release("demo", 2).unwrap().unwrap().output,
        ["last words"]
    );

    // A newer release supersedes the deploying one; the older verdict then writes nothing.
    assert_eq!(new(&s), 3);
    assert_eq!(new(&s), 4);
    assert_eq!(status(&s, 3).0, ReleaseStatus::Superseded);
    assert!(status(&s, 3).1.unwrap().contains("v4"));
    assert!(!s.finish_rollout("demo", 3, Ok(()), &[]).unwrap());
    let a = s.app("demo").unwrap().unwrap();
    assert_eq!(
        (a.release, a.deploying, a.latest()),
        (Some(1), Some(4), Some(4))
    );
    assert!(!s.finish_rollout("gone", 1, Ok(()), &[]).unwrap());
}

#[test]
fn a_refused_release_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.create_app(&app("demo")).unwrap();
    let err = s
        .create_release("demo", |_, _| Err("no"), |_| {})
        .unwrap_err();
    assert!(matches!(err, UpdateError::Rejected("no")));
    assert!(s.releases("demo").unwrap().is_empty());
    assert_eq!(s.app("demo").unwrap().unwrap().next_version, 1);
}

#[test]
fn releases_of_one_app_do_not_leak_into_a_prefixed_name() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.create_app(&app("abc")).unwrap();
    s.create_app(&app("abc-d")).unwrap();
    s.create_release::<()>("abc-d", |_, v| Ok(release("abc-d", v)), |_| {})
        .unwrap();
    assert!(s.releases("abc").unwrap().is_empty());
}

#[test]
fn allocation_cas_detects_a_lost_race_and_bumps_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let idx = s.assignment_index();
    let before = *idx.borrow();
    let a = AllocationRecord {
        id: "a1".into(),
        app: "demo".into(),
        release: 1,
        process: "web".into(),
        index: 1,
        host_id: "h".into(),
        created_at: Timestamp::now(),
        desired: Desired::Run,
        memory_mb: 0,
    };
    assert!(s.cas_allocation("a1", None, Some(&a)).unwrap());
    assert!(
        !s.cas_allocation("a1", None, Some(&a)).unwrap(),
        "second create must lose"
    );
    let mut drained = a.clone();
    drained.desired = Desired::Drain {
        until: Timestamp::now(),
    };
    assert!(s.cas_allocation("a1", Some(&a), Some(&drained)).unwrap());
    assert!(
        !s.cas_allocation("a1", Some(&a), None).unwrap(),
        "stale old must lose"
    );
    assert!(s.cas_allocation("a1", Some(&drained), None).unwrap());
    assert!(s.allocations().unwrap().is_empty());
    assert_eq!(*idx.borrow(), before + 3);
}

#[test]
fn update_app_applies_the_closure() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.create_app(&app("demo")).unwrap();
    let rec = s
        .update_app::<()>("demo", |a| {
            a.formation.insert("web".into(), 3);
            Ok(())
        })
        .unwrap();
    assert_eq!(rec.formation["web"], 3);
    assert!(matches!(
        s.update_app::<()>("nope", |_| Ok(())),
        Err(UpdateError::Store(StoreError::NotFound))
    ));
}

#[test]
fn a_release_failed_before_deploying_takes_a_version_and_changes_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.create_app(&app("demo")).unwrap();
    s.create_release::<()>("demo", |_, v| Ok(release("demo", v)), |_| {})
        .unwrap();
    assert!(s.finish_rollout("demo", 1, Ok(()), &[]).unwrap());
    s.create_release::<()>("demo", |_, v| Ok(release("demo", v)), |_| {})
        .unwrap();
    let before = s.app("demo").unwrap().unwrap();

    let failed = s
        .record_failed_release::<()>(
            "demo",
            |_, v| Ok(release("demo", v)),
            "the release command exited with status 1",
            &["migration failed".into()],
        )
        .unwrap();
    assert_eq!(failed.version, 3);
    assert_eq!(
        status(&s, 3),
        (
            ReleaseStatus::Failed,
            Some("the release command exited with status 1".into())
        )
    );
    assert_eq!(
        s.release("demo", 3).unwrap().unwrap().output,
        ["migration failed"]
    );
    let after = s.app("demo").unwrap().unwrap();
    assert_eq!((after.release, after.deploying), (Some(1), Some(2)));
    assert_eq!(
        status(&s, 2).0,
        ReleaseStatus::Deploying,
        "v2 is not superseded"
    );
    assert_eq!(after.next_version, 4);
    assert_eq!(
        AppRecord {
            next_version: before.next_version,
            ..after
        },
        before,
        "only the version counter moved"
    );
}
