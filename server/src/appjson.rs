//! `app.json` at the top of a pushed source: the health checks in it, in Dokku's `healthchecks`
//! format, so apps that carry one for Dokku work unchanged.
//!
//! ```json
//! { "healthchecks": { "web": [ { "type": "startup", "path": "/health", "attempts": 3 } ] } }
//! ```
//!
//! Pure: text in, checks and warnings out ([`parse`]); [`read`] only adds the file. The builder
//! calls [`read`] where it knows the process types, and a build whose `app.json` is not valid
//! JSON, or holds a check caas would refuse from the CLI, fails with the one line [`parse`] says.
//! What caas does not do (command, uptime and listening checks, `port`, `https`, headers,
//! `onFailure`, warn-only checks) is left out with a warning in the build output, so the deploy
//! goes on as it would without that check.
//!
//! Fields, with their meaning in caas: `type` (startup, the default; readiness; liveness),
//! `path`, `content`, `timeout` (seconds per try), `wait` (seconds between tries; 0 is taken as
//! 1), `attempts`, `initialDelay` (seconds before the first try). Two of caas's own are taken
//! too: `status` (the one status that passes) and `strategy` (liveness: recreate, none, keep=N).

use caas_api::checks::{Check, CheckKind, CheckSource};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// What an `app.json` says about health checks.
#[derive(Debug, Default, PartialEq)]
pub struct AppJson {
    /// The checks to run, at most one per process type and kind.
    pub checks: Vec<Check>,
    /// The process types it has a `healthchecks` entry for: their checks are exactly `checks`'
    /// (a type listed with no usable check has none).
    pub named: BTreeSet<String>,
    /// What was left out, and why, one line each.
    pub warnings: Vec<String>,
}

impl AppJson {
    /// The app's checks after this build: the process types `app.json` names get its checks,
    /// the others keep theirs (set with `caas checks:set`); checks of process types the release
    /// does not define go.
    pub fn merge(&self, app_checks: &[Check], types: &BTreeSet<String>) -> Vec<Check> {
        let mut out: Vec<Check> = app_checks
            .iter()
            .filter(|c| !self.named.contains(&c.process) && types.contains(&c.process))
            .cloned()
            .collect();
        out.extend(self.checks.iter().cloned());
        out.sort_by(|a, b| (&a.process, a.kind).cmp(&(&b.process, b.kind)));
        out
    }
}

/// Reads `SOURCE/app.json`, if there is one; its checks for process types the release does not
/// define are left out with a warning.
pub fn read(source: &Path, types: &BTreeSet<String>) -> Result<AppJson, String> {
    let path = source.join("app.json");
    let text = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AppJson::default()),
        Err(e) => return Err(format!("cannot read app.json: {e}")),
    };
    let text = String::from_utf8(text).map_err(|_| "app.json is not UTF-8 text".to_string())?;
    let mut parsed = parse(&text)?;
    let unknown: Vec<String> = parsed
        .named
        .iter()
        .filter(|p| !types.contains(*p))
        .cloned()
        .collect();
    for p in unknown {
        parsed.warnings.push(format!(
            "healthchecks.{p}: the app has no process type {p}; its checks are left out"
        ));
        parsed.checks.retain(|c| c.process != p);
        parsed.named.remove(&p);
    }
    Ok(parsed)
}

/// The health checks of an `app.json`'s text. An error is one line: where and what.
pub fn parse(text: &str) -> Result<AppJson, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| {
        let what = e.to_string();
        // serde_json ends its message with " at line L column C"; say it once, our way.
        let what = what.split(" at line ").next().unwrap_or(&what).to_string();
        format!(
            "app.json is not valid JSON: {what} at line {}, column {}",
            e.line(),
            e.column()
        )
    })?;
    let Value::Object(root) = root else {
        return Err("app.json must hold a JSON object ({ ... })".into());
    };
    let mut out = AppJson::default();
    let Some(hc) = root.get("healthchecks") else {
        return Ok(out);
    };
    let Value::Object(hc) = hc else {
        return Err(
            "app.json: healthchecks must be an object of process types, e.g. {\"web\": [ ... ]}"
                .into(),
        );
    };
    for (process, list) in hc {
        caas_api::validate_process_type(process)
            .map_err(|e| format!("app.json: healthchecks: {e}"))?;
        let Value::Array(list) = list else {
            return Err(format!(
                "app.json: healthchecks.{process} must be a list of checks ([ {{ ... }} ])"
            ));
        };
        out.named.insert(process.clone());
        let mut kinds: BTreeMap<CheckKind, usize> = BTreeMap::new();
        for (i, entry) in list.iter().enumerate() {
            let at = format!("healthchecks.{process}[{i}]");
            let Value::Object(fields) = entry else {
                return Err(format!("app.json: {at} must be an object"));
            };
            let Some(check) = one(process, &at, fields, &mut out.warnings)? else {
                continue;
            };
            if let Some(first) = kinds.get(&check.kind) {
                out.warnings.push(format!(
                    "{at}: a second {} check of {process}; caas runs one per kind, the first (healthchecks.{process}[{first}])",
                    check.kind
                ));
                continue;
            }
            kinds.insert(check.kind, i);
            out.checks.push(check);
        }
    }
    out.checks
        .sort_by(|a, b| (&a.process, a.kind).cmp(&(&b.process, b.kind)));
    Ok(out)
}

/// One entry of `healthchecks.PROCESS`: a check, or `None` (with a warning) when caas does not
/// run checks of its sort.
fn one(
    process: &str,
    at: &str,
    f: &Map<String, Value>,
    warnings: &mut Vec<String>,
) -> Result<Option<Check>, String> {
    let kind = match f.get("type") {
        None | Some(Value::Null) => CheckKind::Startup,
        Some(Value::String(s)) if s.is_empty() => CheckKind::Startup,
        Some(Value::String(s)) => s.parse().map_err(|e| format!("app.json: {at}.type: {e}"))?,
        Some(_) => return Err(format!("app.json: {at}.type must be a string")),
    };
    let path = match f.get("path") {
        Some(Value::String(p)) => p.clone(),
        Some(_) => return Err(format!("app.json: {at}.path must be a string")),
        None => {
            let sort = if f.contains_key("command") {
                "command checks are not run by caas"
            } else if f.contains_key("uptime") {
                "uptime checks are not run by caas: every new instance must stay up for min-up (caas apps:settings) before a rollout counts it"
            } else if f.contains_key("listening") {
                "listening checks are what caas does for web without a check"
            } else {
                "a check without a path is not run by caas"
            };
            warnings.push(format!("{at}: {sort}; left out"));
            return Ok(None);
        }
    };
    if f.get("warn") == Some(&Value::Bool(true)) {
        warnings.push(format!(
            "{at}: warn-only checks are not run by caas; left out"
        ));
        return Ok(None);
    }
    let mut c = Check::new(process, kind, &path);
    c.source = CheckSource::AppJson;
    if let Some(v) = f.get("content") {
        match v {
            Value::String(s) if s.is_empty() => {}
            Value::String(s) => c.content = Some(s.clone()),
            _ => return Err(format!("app.json: {at}.content must be a string")),
        }
    }
    if let Some(n) = seconds(at, "timeout", f)? {
        c.timeout_ms = n * 1000;
    }
    if let Some(n) = seconds(at, "wait", f)? {
        // Dokku's wait is the pause between tries; 0 would probe without pause.
        c.interval_ms = n.max(1) * 1000;
    }
    if let Some(n) = seconds(at, "initialDelay", f)? {
        c.wait_ms = n * 1000;
    }
    if let Some(n) = whole(at, "attempts", f)? {
        c.attempts = u32::try_from(n).unwrap_or(u32::MAX);
    }
    if let Some(n) = whole(at, "status", f)? {
        c.status = Some(u16::try_from(n).unwrap_or(u16::MAX));
    }
    match f.get("strategy") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            c.strategy = Some(
                s.parse()
                    .map_err(|e| format!("app.json: {at}.strategy: {e}"))?,
            )
        }
        Some(_) => return Err(format!("app.json: {at}.strategy must be a string")),
    }
    if let Some(port) = f.get("port") {
        if port.as_u64() != Some(u64::from(crate::api::CONTAINER_PORT)) {
            warnings.push(format!(
                "{at}.port: caas checks the port the app listens on ($PORT, {}); port left out",
                crate::api::CONTAINER_PORT
            ));
        }
    }
    if f.get("scheme")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.eq_ignore_ascii_case("http"))
    {
        warnings.push(format!(
            "{at}.scheme: caas checks over plain HTTP inside the host; scheme left out"
        ));
    }
    for (key, what) in [("httpHeaders", "headers"), ("onFailure", "failure hooks")] {
        if f.contains_key(key) {
            warnings.push(format!("{at}.{key}: {what} are not used by caas; left out"));
        }
    }
    c.validate().map_err(|e| format!("app.json: {at}: {e}"))?;
    Ok(Some(c))
}

/// A whole, non-negative number, if the field is there.
fn whole(at: &str, key: &str, f: &Map<String, Value>) -> Result<Option<u64>, String> {
    match f.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("app.json: {at}.{key} must be a whole number, not {v}")),
    }
}

fn seconds(at: &str, key: &str, f: &Map<String, Value>) -> Result<Option<u64>, String> {
    let n = whole(at, key, f)?;
    // Absurd values are refused by `validate` with the unit; this keeps the multiplication sane.
    Ok(n.map(|n| n.min(Duration::from_secs(1 << 30).as_secs())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_healthchecks_no_checks() {
        for text in ["{}", r#"{"name": "x", "scripts": {}}"#] {
            assert_eq!(parse(text).unwrap(), AppJson::default(), "{text}");
        }
    }

    #[test]
    fn dokkus_format_maps_to_checks() {
        let text = r#"{
          "healthchecks": {
            "web": [
              {"type": "startup", "name": "web check", "description": "d",
               "path": "/health/ready", "attempts": 3, "timeout": 5, "wait": 2,
               "initialDelay": 1, "content": "ok"},
              {"type": "liveness", "path": "/live", "strategy": "keep=1"},
              {"type": "readiness", "path": "/ready", "status": 204}
            ],
            "worker": [{"path": "/"}]
          }
        }"#;
        let got = parse(text).unwrap();
        assert!(got.warnings.is_empty(), "{:?}", got.warnings);
        assert_eq!(got.named, types(&["web", "worker"]));
        let summary: Vec<String> = got
            .checks
            .iter()
            .map(|c| {
                format!(
                    "{} {} {} t{} i{} a{} w{} {:?} {:?} {:?}",
                    c.process,
                    c.kind,
                    c.path,
                    c.timeout_ms,
                    c.interval_ms,
                    c.attempts,
                    c.wait_ms,
                    c.content,
                    c.status,
                    c.strategy
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                "web startup /health/ready t5000 i2000 a3 w1000 Some(\"ok\") None None",
                "web readiness /ready t2000 i2000 a5 w0 None Some(204) None",
                "web liveness /live t2000 i2000 a5 w0 None None Some(Keep(1))",
                "worker startup / t2000 i2000 a5 w0 None None None",
            ]
        );
        assert!(got.checks.iter().all(|c| c.source == CheckSource::AppJson));
    }

    #[test]
    fn what_caas_does_not_run_is_left_out_with_a_warning() {
        let text = r#"{"healthchecks": {"web": [
            {"type": "startup", "uptime": 10},
            {"command": ["/app/check"]},
            {"listening": true},
            {"path": "/a", "warn": true},
            {"path": "/b", "port": 8080, "scheme": "https", "httpHeaders": [], "onFailure": {}},
            {"path": "/c"},
            {"type": "readiness", "path": "/d", "wait": 0}
        ]}}"#;
        let got = parse(text).unwrap();
        let kept: Vec<(&str, CheckKind, u64)> = got
            .checks
            .iter()
            .map(|c| (c.path.as_str(), c.kind, c.interval_ms))
            .collect();
        assert_eq!(
            kept,
            [
                ("/b", CheckKind::Startup, 2000),
                ("/d", CheckKind::Readiness, 1000)
            ]
        );
        let w = got.warnings.join("\n");
        for want in [
            "healthchecks.web[0]: uptime checks are not run by caas",
            "healthchecks.web[1]: command checks are not run by caas; left out",
            "healthchecks.web[2]: listening checks are what caas does for web without a check",
            "healthchecks.web[3]: warn-only checks are not run by caas; left out",
            "healthchecks.web[4].port: caas checks the port the app listens on ($PORT, 5000)",
            "healthchecks.web[4].scheme:",
            "healthchecks.web[4].httpHeaders: headers are not used by caas",
            "healthchecks.web[4].onFailure: failure hooks are not used by caas",
            "healthchecks.web[5]: a second startup check of web; caas runs one per kind, the first (healthchecks.web[4])",
        ] {
            assert!(w.contains(want), "missing {want:?} in\n{w}");
        }
        assert!(got.warnings.iter().all(|l| !l.contains('\n')));
    }

    #[test]
    fn bad_input_fails_with_where_and_what() {
        // (text, the error starts with)
        let table = [
            (
                "{\"healthchecks\": {\n  \"web\": [\n    {\"path\": \"/\",}\n  ]\n}}",
                "app.json is not valid JSON: trailing comma at line 3, column 18",
            ),
            (
                "",
                "app.json is not valid JSON: EOF while parsing a value at line 1, column 0",
            ),
            ("[1]", "app.json must hold a JSON object"),
            (
                r#"{"healthchecks": []}"#,
                "app.json: healthchecks must be an object",
            ),
            (
                r#"{"healthchecks": {"web": {}}}"#,
                "app.json: healthchecks.web must be a list",
            ),
            (
                r#"{"healthchecks": {"Web!": []}}"#,
                "app.json: healthchecks: invalid process type \"Web!\"",
            ),
            (
                r#"{"healthchecks": {"web": [1]}}"#,
                "app.json: healthchecks.web[0] must be an object",
            ),
            (
                r#"{"healthchecks": {"web": [{"type": "ready", "path": "/"}]}}"#,
                "app.json: healthchecks.web[0].type: unknown check kind \"ready\"",
            ),
            (
                r#"{"healthchecks": {"web": [{"path": "health"}]}}"#,
                "app.json: healthchecks.web[0]: invalid check path \"health\"",
            ),
            (
                r#"{"healthchecks": {"web": [{"path": "/", "timeout": -1}]}}"#,
                "app.json: healthchecks.web[0].timeout must be a whole number, not -1",
            ),
            (
                r#"{"healthchecks": {"web": [{"path": "/", "timeout": 1.5}]}}"#,
                "app.json: healthchecks.web[0].timeout must be a whole number, not 1.5",
            ),
            (
                r#"{"healthchecks": {"web": [{"path": "/", "timeout": 100000}]}}"#,
                "app.json: healthchecks.web[0]: invalid timeout 27h46m40s: use 100ms to 1m",
            ),
            (
                r#"{"healthchecks": {"web": [{"path": "/", "attempts": 0}]}}"#,
                "app.json: healthchecks.web[0]: invalid attempts 0",
            ),
            (
                r#"{"healthchecks": {"web": [{"path": "/", "strategy": "keep=2"}]}}"#,
                "app.json: healthchecks.web[0]: a strategy is for liveness checks only",
            ),
        ];
        for (text, want) in table {
            let got = parse(text).unwrap_err();
            assert!(
                got.starts_with(want),
                "{text:?}:\n got {got:?}\nwant {want:?}"
            );
            assert!(!got.contains('\n'), "{got:?}");
        }
    }

    #[test]
    fn a_build_replaces_the_checks_of_the_types_app_json_names() {
        let mut cli_web = Check::new("web", CheckKind::Liveness, "/cli");
        cli_web.source = CheckSource::Cli;
        let cli_worker = Check::new("worker", CheckKind::Startup, "/w");
        let cli_gone = Check::new("clock", CheckKind::Startup, "/c");
        let app = [cli_web, cli_worker.clone(), cli_gone];
        let parsed = parse(r#"{"healthchecks": {"web": [{"path": "/json"}]}}"#).unwrap();
        let merged = parsed.merge(&app, &types(&["web", "worker"]));
        let paths: Vec<(&str, &str)> = merged
            .iter()
            .map(|c| (c.process.as_str(), c.path.as_str()))
            .collect();
        assert_eq!(paths, [("web", "/json"), ("worker", "/w")]);

        // A type listed with nothing caas runs has no checks after the build.
        let parsed = parse(r#"{"healthchecks": {"worker": [{"uptime": 5}]}}"#).unwrap();
        let merged = parsed.merge(&[cli_worker], &types(&["worker"]));
        assert!(merged.is_empty(), "{merged:?}");
    }

    #[test]
    fn reading_leaves_out_types_the_release_lacks() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read(dir.path(), &types(&["web"])).unwrap(),
            AppJson::default()
        );
        std::fs::write(
            dir.path().join("app.json"),
            r#"{"healthchecks": {"web": [{"path": "/"}], "clock": [{"path": "/"}]}}"#,
        )
        .unwrap();
        let got = read(dir.path(), &types(&["web"])).unwrap();
        assert_eq!(got.checks.len(), 1);
        assert_eq!(got.named, types(&["web"]));
        assert_eq!(
            got.warnings,
            ["healthchecks.clock: the app has no process type clock; its checks are left out"]
        );
    }
}
