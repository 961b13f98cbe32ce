//! Logs that last: what an app printed and what the platform said are on disk, so they survive a
//! `kill -9` of caasd; readers filter by source, process and time, and get JSON when asked.

use caas_e2e::{test_image, Platform};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

fn logs(p: &Platform, args: &[&str]) -> String {
    let mut all = vec!["logs", "-a", "kept", "-n", "1000"];
    all.extend_from_slice(args);
    p.caas_ok(&all)
}

#[test]
fn logs_survive_a_kill_9_of_caasd_and_filter_by_source_process_and_time() {
    let mut p = Platform::start();
    p.caas_ok(&["apps:create", "kept"]);
    p.caas_ok(&["push", "--image", &test_image("kept"), "-a", "kept"]);
    p.wait_for(WAIT, "the app's first output", || {
        logs(&p, &[])
            .contains("app[web.1]: demo listening")
            .then_some(())
    });
    let before = logs(&p, &[]);
    assert!(before.contains("caas[deploy]: Deploying v1"), "{before}");

    p.kill9();
    p.restart();
    let after = logs(&p, &[]);
    for line in [
        "caas[deploy]: Deploying v1",
        "caas[deploy]: v1 is up (web=1)",
        "app[web.1]: demo listening",
    ] {
        assert!(
            after.contains(line),
            "{line:?} is gone after kill -9:\n{after}"
        );
    }
    // Nothing twice: the restart adopted the instance and did not re-ship its output.
    assert_eq!(
        after.matches("app[web.1]: demo listening").count(),
        1,
        "{after}"
    );

    // Filters.
    let app_only = logs(&p, &["--source", "app"]);
    assert!(
        app_only.contains("app[web.1]") && !app_only.contains("caas["),
        "{app_only}"
    );
    let web1 = logs(&p, &["--ps", "web.1"]);
    assert!(web1.contains("app[web.1]: demo listening"), "{web1}");
    assert!(!web1.contains("App created"), "{web1}");
    let recent = p.caas_ok(&["logs", "-a", "kept", "--since", "1h"]);
    assert!(recent.contains("caas[deploy]: Deploying v1"), "{recent}");
    let future = p.caas_ok(&["logs", "-a", "kept", "--since", "2999-01-01T00:00:00Z"]);
    assert!(future.trim().is_empty(), "{future}");
    let json = logs(&p, &["--json", "--source", "caas"]);
    for line in json.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["type"], "line");
        assert_eq!(v["source"], "caas");
    }
    assert!(json.lines().count() >= 3, "{json}");

    // Bad filters: exit 2, one line that says what to use.
    for (args, want) in [
        (&["--source", "apps"][..], "use app, caas, router or build"),
        (
            &["--ps", "Web.1"],
            "use a process type (web) or an instance (web.1)",
        ),
        (
            &["--since", "yesterday"],
            "use a duration (10m, 2h) or a time",
        ),
    ] {
        let mut all = vec!["logs", "-a", "kept"];
        all.extend_from_slice(args);
        let out = p.caas_code(2, &all);
        assert!(out.stderr.contains(want), "{args:?}: {out}");
    }
}
