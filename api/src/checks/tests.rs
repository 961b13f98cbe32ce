use super::*;

#[test]
fn kinds_and_strategies_parse_and_print_alike() {
    for k in CheckKind::ALL {
        assert_eq!(k.as_str().parse::<CheckKind>().unwrap(), k);
    }
    assert_eq!(
        "ready".parse::<CheckKind>().unwrap_err(),
        "unknown check kind \"ready\": use startup, readiness or liveness"
    );
    for s in ["recreate", "none", "keep=2"] {
        assert_eq!(s.parse::<Strategy>().unwrap().to_string(), s);
    }
    for bad in [
        "keep",
        "keep=0",
        "keep=-1",
        "keep=x",
        "restart",
        "keep=1001",
    ] {
        assert!(bad.parse::<Strategy>().is_err(), "{bad}");
    }
    let json = serde_json::to_string(&Strategy::Keep(3)).unwrap();
    assert_eq!(json, "\"keep=3\"");
    assert_eq!(
        serde_json::from_str::<Strategy>(&json).unwrap(),
        Strategy::Keep(3)
    );
}

#[test]
fn durations_parse_with_units_and_print_short() {
    let d = |t: &str| parse_duration("timeout", t);
    assert_eq!(d("2s").unwrap(), Duration::from_secs(2));
    assert_eq!(d("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(d("3").unwrap(), Duration::from_secs(3));
    assert_eq!(d("1m").unwrap(), Duration::from_secs(60));
    for bad in ["", "-2s", "+2s", "soon", "2 parsecs", "1e9"] {
        assert!(d(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        d("-2s").unwrap_err(),
        "invalid timeout \"-2s\": use a duration such as 2s, 500ms or 1m"
    );
    let f = |ms: u64| format_duration(Duration::from_millis(ms));
    assert_eq!(
        [
            f(0),
            f(500),
            f(1500),
            f(2000),
            f(60_000),
            f(90_000),
            f(3_600_000)
        ],
        ["0s", "500ms", "1.5s", "2s", "1m", "1m30s", "1h"]
    );
}

#[test]
fn a_check_is_refused_with_the_first_thing_wrong() {
    let ok = Check::new("web", CheckKind::Startup, "/health?deep=1");
    assert_eq!(ok.validate(), Ok(()));
    let with = |f: &dyn Fn(&mut Check)| {
        let mut c = ok.clone();
        f(&mut c);
        c.validate().unwrap_err()
    };
    // (change, the message starts with)
    type Change = Box<dyn Fn(&mut Check)>;
    let table: Vec<(Change, &str)> = vec![
        (
            Box::new(|c| c.path = "health".into()),
            "invalid check path \"health\"",
        ),
        (
            Box::new(|c| c.path = "/a b".into()),
            "invalid check path \"/a b\"",
        ),
        (
            Box::new(|c| c.path = "//evil.example/".into()),
            "invalid check path",
        ),
        (
            Box::new(|c| c.path = "/\u{7f}".into()),
            "invalid check path",
        ),
        (
            Box::new(|c| c.path = format!("/{}", "a".repeat(1024))),
            "invalid check path",
        ),
        (
            Box::new(|c| c.process = "Web".into()),
            "invalid process type \"Web\"",
        ),
        (Box::new(|c| c.status = Some(99)), "invalid status 99"),
        (Box::new(|c| c.status = Some(600)), "invalid status 600"),
        (
            Box::new(|c| c.content = Some(String::new())),
            "invalid content",
        ),
        (
            Box::new(|c| c.content = Some("a\nb".into())),
            "invalid content",
        ),
        (
            Box::new(|c| c.timeout_ms = 10),
            "invalid timeout 10ms: use 100ms to 1m",
        ),
        (
            Box::new(|c| c.timeout_ms = 3_600_000),
            "invalid timeout 1h: use 100ms to 1m",
        ),
        (
            Box::new(|c| c.interval_ms = 0),
            "invalid interval 0s: use 1s to 5m",
        ),
        (
            Box::new(|c| c.wait_ms = 3_600_000),
            "invalid wait 1h: use 0s to 10m",
        ),
        (Box::new(|c| c.attempts = 0), "invalid attempts 0"),
        (Box::new(|c| c.attempts = 101), "invalid attempts 101"),
        (
            Box::new(|c| c.strategy = Some(Strategy::None)),
            "a strategy is for liveness checks only",
        ),
    ];
    for (change, want) in table {
        let got = with(&*change);
        assert!(
            got.starts_with(want),
            "{got:?} does not start with {want:?}"
        );
        assert!(!got.contains('\n'), "{got:?}");
    }
    let mut live = Check::new("web", CheckKind::Liveness, "/");
    live.strategy = Some(Strategy::Keep(2));
    assert_eq!(live.validate(), Ok(()));
}

#[test]
fn settings_parse_reset_and_refuse() {
    let mut s = AppSettings::default();
    s.apply("drain", Some("1m")).unwrap();
    s.apply("stop-timeout", Some("20s")).unwrap();
    s.apply("min-up", Some("0s")).unwrap();
    s.apply("max-surge", Some("25%")).unwrap();
    s.apply("max-unavailable", Some("1")).unwrap();
    assert_eq!(
        (s.drain_ms, s.stop_timeout_ms, s.min_up_ms),
        (Some(60_000), Some(20_000), Some(0))
    );
    assert_eq!(s.show("max-surge").as_deref(), Some("25%"));
    assert_eq!(s.show("drain").as_deref(), Some("1m"));
    s.apply("drain", None).unwrap();
    assert_eq!(s.drain_ms, None);
    for (k, v, want) in [
        ("drain", "-1s", "invalid drain \"-1s\""),
        ("drain", "2h", "invalid drain 2h: use 0s to 1h"),
        (
            "max-surge",
            "150%",
            "invalid max-surge \"150%\": use 0% to 100%",
        ),
        ("max-surge", "-1", "invalid max-surge \"-1\""),
        ("max-surge", "two", "invalid max-surge \"two\""),
        ("speed", "1", "unknown setting \"speed\""),
    ] {
        let err = s.clone().apply(k, Some(v)).unwrap_err();
        assert!(err.starts_with(want), "{err:?} for {k}={v}");
    }
    let mut z = AppSettings::default();
    z.apply("max-surge", Some("0")).unwrap();
    z.apply("max-unavailable", Some("0%")).unwrap();
    assert!(z.validate(&AppSettings::default()).is_err());
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<AppSettings>(&json).unwrap(), s);
}

#[test]
fn shares_round_the_way_kubernetes_rounds_them() {
    assert_eq!(Amount::Percent(25).of(10, true), 3);
    assert_eq!(Amount::Percent(25).of(10, false), 2);
    assert_eq!(Amount::Percent(100).of(7, true), 7);
    assert_eq!(Amount::Count(4).of(2, true), 4);
}
