//! The dashboard in a real headless Chromium against a real caasd and Docker: sign in with a
//! token (a wrong one is refused and leaves no session), create an app, deploy from the CLI and
//! watch the instance appear without a reload, see a line the app prints arrive live, scale from
//! the page (and be told when the count is too high), set a config var whose value stays hidden
//! until revealed, roll back, be refused a change from another origin or without the CSRF
//! token, be signed out when the token is revoked, sign in as a member who does not see the
//! admin's app, destroy the app once its name is typed, and sign out; the page fits a phone;
//! a running build's output streams into its page; domains, autoscaling and alerts are
//! managed from the app page, with the checks shown there; the graphs of the last hour show the
//! requests made; and add-ons (created, detached, attached), a canary (weight, abort, promote)
//! and notification webhooks (added with their deliveries listed, removed) are managed from it. Screenshots of the main pages go to
//! docs/screenshots/ (or `CAAS_E2E_SCREENSHOTS`), which docs/guide.md shows.

use caas_e2e::fantoccini::Locator;
use caas_e2e::{
    example_app, http_request, repo_root, require_stack, temp_dir_with, test_image, Browser,
    Platform, HTTP_TIMEOUT,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

const APP: &str = "dash";
/// Long enough for a deploy or a config release on a busy machine.
const DEPLOY: Duration = Duration::from_secs(120);

fn screenshots() -> PathBuf {
    std::env::var_os("CAAS_E2E_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("docs/screenshots"))
}

/// `(id, secret)` of a new token of the admin's, from `caas tokens:create`.
fn new_token(p: &Platform, description: &str) -> (String, String) {
    let out = p.caas_ok(&["tokens:create", "--description", description]);
    let id = out
        .split_whitespace()
        .skip_while(|w| *w != "token")
        .nth(1)
        .unwrap_or_else(|| panic!("no token id in {out:?}"))
        .to_string();
    let secret = out
        .split_whitespace()
        .find(|w| w.starts_with("caas_"))
        .unwrap_or_else(|| panic!("no token in {out:?}"))
        .to_string();
    (id, secret)
}

fn formation(p: &Platform) -> serde_json::Value {
    p.caas_json(&["apps:info", "-a", APP, "--json"])["formation"].clone()
}

/// The serving release's version and description, once `version` serves.
fn serving(p: &Platform, version: u64) -> Option<String> {
    let releases = p.caas_json(&["releases", "-a", APP, "--json"]);
    releases.as_array()?.iter().find_map(|r| {
        (r["version"] == version && r["current"] == true)
            .then(|| r["description"].as_str().unwrap_or("").to_string())
    })
}

/// A page on another origin (another loopback port) that posts a scale to the dashboard as soon
/// as it loads, as a malicious site the user visits would. Serves a bounded number of requests.
fn attacker_page(api: &str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the attacker's page");
    let addr = listener.local_addr().unwrap();
    let page = format!(
        "<!doctype html><title>not caas</title>\
         <form id=f method=post action=\"{api}/apps/{APP}/scale\">\
         <input name=_csrf value=guessed><input name=qty.web value=5></form>\
         <script>document.getElementById('f').submit()</script>"
    );
    std::thread::spawn(move || {
        for conn in listener.incoming().take(8) {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 8192];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    addr
}

#[test]
fn the_dashboard_signs_in_deploys_live_scales_configures_rolls_back_and_refuses_forgeries() {
    let image = test_image("Hello from the dashboard");
    let p = Platform::start();
    runtime().block_on(drive(&p, &image));
}

async fn drive(p: &Platform, image: &str) {
    let api = p.api_url().trim_end_matches('/').to_string();
    let shots = screenshots();
    let b = Browser::start(&[api_port(p)]).await;

    // Sign-in: a wrong token is refused in the page and leaves no session behind.
    b.goto(&format!("{api}/")).await;
    assert!(b.text("h1").await.contains("Sign in"));
    b.screenshot(&shots, "sign-in").await;
    b.fill("#token", "caas_0123456789abcdef").await;
    b.click("#sign-in").await;
    b.wait_text("That token does not work").await;
    let cookies = b.client.get_all_cookies().await.expect("cookies");
    assert!(
        cookies
            .iter()
            .all(|c| c.name() != "caas_session" || c.value().is_empty()),
        "{cookies:?}"
    );

    let (token_id, token) = new_token(p, "dashboard test");
    b.fill("#token", &token).await;
    b.click("#sign-in").await;
    assert_eq!(b.text("#signed-in-as").await, "admin");
    let cookies = b.client.get_all_cookies().await.expect("cookies");
    let session = cookies
        .iter()
        .find(|c| c.name() == "caas_session")
        .unwrap_or_else(|| panic!("no session cookie: {cookies:?}"));
    assert_eq!(session.http_only(), Some(true), "{session:?}");
    assert_eq!(
        format!("{:?}", session.same_site()),
        "Some(Strict)",
        "{session:?}"
    );
    let session_cookie = format!("caas_session={}", session.value());

    // Create an app from the page.
    b.fill("#new-app", APP).await;
    b.click("#create-app").await;
    b.wait_text(&format!("Created {APP} at")).await;
    assert!(b.url().await.ends_with(&format!("/apps/{APP}")));

    // Deploy from the CLI; the instance appears in the open page without a reload.
    b.client
        .execute("window.caasMarker = 'not reloaded'; return true;", vec![])
        .await
        .expect("setting a marker");
    p.caas_ok(&["push", "--image", image, "-a", APP]);
    b.client
        .wait()
        .at_most(DEPLOY)
        .for_element(Locator::Css("tr[data-instance='web.1'][data-state='up']"))
        .await
        .unwrap_or_else(|e| panic!("web.1 never showed up in the page: {e}"));
    let marker = || async {
        b.client
            .execute("return window.caasMarker || null;", vec![])
            .await
            .expect("reading the marker")
    };
    assert_eq!(marker().await, "not reloaded", "the page was reloaded");

    // A line the app prints arrives in the open page.
    let request_id = "dashboard-e2e-request-1";
    let r = p
        .http(
            "GET",
            &format!("{APP}.localhost"),
            "/",
            &[("X-Request-Id", request_id)],
            b"",
        )
        .expect("a request to the app");
    assert_eq!(r.status, 200, "{}", r.body);
    b.wait_for("the app's log line in the page", || async {
        let text = b
            .client
            .execute(
                "return Array.from(document.querySelectorAll('#logs .log.app'))\
                 .map(e => e.textContent).join('\\n');",
                vec![],
            )
            .await
            .ok()?;
        let text = text.as_str()?.to_string();
        text.contains(request_id).then_some(text)
    })
    .await;
    assert_eq!(marker().await, "not reloaded", "the page was reloaded");
    // The last hour's graphs: the requests just made show in the requests/s graph, drawn from
    // the API's per-minute history, without a reload.
    for _ in 0..5 {
        let r = p.http("GET", &format!("{APP}.localhost"), "/", &[], b"");
        assert_eq!(r.expect("a request to the app").status, 200);
    }
    b.client
        .wait()
        .at_most(DEPLOY)
        .for_element(Locator::Css(
            "figure[data-series='rps'][data-measured='true'] polyline",
        ))
        .await
        .unwrap_or_else(|e| panic!("the requests graph never showed the requests: {e}"));
    let graphs = b.text(".graphs").await;
    for title in ["Requests/s", "p95 latency", "5xx answers", "CPU", "Memory"] {
        assert!(graphs.contains(title), "{title} missing: {graphs}");
    }
    // The same figures through the JSON API: sixty minutes, the requests in the last ones.
    let api_addr: SocketAddr = api.trim_start_matches("http://").parse().unwrap();
    let auth = format!("Bearer {}", p.token());
    let r = http_request(
        api_addr,
        "GET",
        &api_addr.to_string(),
        &format!("/v1/apps/{APP}/metrics/history"),
        &[("Authorization", &auth)],
        b"",
        HTTP_TIMEOUT,
    )
    .expect("the history");
    let history: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    let minutes = history["minutes"].as_array().expect("minutes");
    assert_eq!(minutes.len(), 60, "{history}");
    let requests: u64 = minutes
        .iter()
        .map(|m| m["requests"].as_u64().unwrap())
        .sum();
    assert!(requests >= 6, "{history}");
    assert_eq!(marker().await, "not reloaded", "the page was reloaded");
    b.screenshot(&shots, "app").await;

    // At phone width nothing makes the page scroll sideways (wide tables scroll in their box).
    b.client.set_window_size(390, 844).await.expect("resizing");
    let measured = b
        .client
        .execute(
            "const W = window.innerWidth;\
             const wide = document.documentElement.scrollWidth > W;\
             const clipped = e => { for (let a = e.parentElement; a && a !== document.body; \
                 a = a.parentElement) { if (getComputedStyle(a).overflowX !== 'visible') \
                 return true; } return false; };\
             return { wide: wide, culprits: Array.from(document.querySelectorAll('body *'))\
                 .filter(e => e.getBoundingClientRect().right > W + 1 && (!clipped(e) \
                     || getComputedStyle(e).position === 'absolute'))\
                 .map(e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 20) };",
            vec![],
        )
        .await
        .expect("measuring the page");
    b.screenshot(&shots, "app-phone").await;
    assert_eq!(
        measured["wide"], false,
        "the app page is wider than a phone: {measured}"
    );
    b.client
        .set_window_size(1280, 1000)
        .await
        .expect("resizing");

    // Scale from the page; the second instance appears.
    b.fill("#qty-web", "2").await;
    b.click("#scale").await;
    b.wait_text(&format!("Scaled {APP} to web=2")).await;
    b.client
        .wait()
        .at_most(DEPLOY)
        .for_element(Locator::Css("tr[data-instance='web.2'][data-state='up']"))
        .await
        .unwrap_or_else(|e| panic!("web.2 never showed up in the page: {e}"));
    assert_eq!(formation(p)["web"], 2);

    // Too many: the page says why and nothing changes.
    b.fill("#qty-web", "99").await;
    b.click("#scale").await;
    let error = b.text("#scale-error").await;
    assert!(error.contains("from 0 to 20"), "{error}");
    assert_eq!(formation(p)["web"], 2);

    // A config var: its value is not in the page until revealed.
    b.fill("#config-key", "bad-key").await;
    b.fill("#config-value", "x").await;
    b.click("#config-set").await;
    let error = b.text("#config-error").await;
    assert!(error.contains("invalid config key"), "{error}");
    b.fill("#config-key", "DASH_SECRET").await;
    b.fill("#config-value", "s3cret-value").await;
    b.click("#config-set").await;
    b.wait_text("Set DASH_SECRET; deploying v2").await;
    let source = b.source().await;
    assert!(source.contains("DASH_SECRET") && !source.contains("s3cret-value"));
    b.click("#reveal-config").await;
    b.wait_for("the revealed value", || async {
        let el = b.client.find(Locator::Css("#config-values")).await.ok()?;
        el.text().await.ok().filter(|t| t.contains("s3cret-value"))
    })
    .await;

    // Roll back to v1 from the releases table.
    p.wait_for(DEPLOY, "v2 to serve", || serving(p, 2));
    // Alerts and autoscaling set with the CLI show on the page.
    assert!(b.text("#autoscale").await.contains("No alerts set"));
    p.caas_ok(&["alerts:set", "--p95", "500ms", "-a", APP]);
    b.goto(&format!("{api}/apps/{APP}")).await;
    let autoscale = b.text("#autoscale").await;
    assert!(
        autoscale.contains("No process type is autoscaled")
            && autoscale.contains("p95 above 500 ms"),
        "{autoscale}"
    );
    b.click("#rollback-1").await;
    b.wait_text("Rollback to v1: deploying v3").await;
    let description = p.wait_for(DEPLOY, "v3 to serve", || serving(p, 3));
    assert_eq!(description, "Rollback to v1");
    assert!(!p.caas_ok(&["config", "-a", APP]).contains("DASH_SECRET"));
    b.goto(&format!("{api}/")).await;
    b.wait_text("v3").await;
    b.screenshot(&shots, "apps").await;

    // A change from another origin is refused, though the browser sends the cookie along
    // (another port of the same address is the same site).
    let attacker = attacker_page(&api);
    b.reach(attacker.port());
    b.goto(&format!("http://{attacker}/")).await;
    b.wait_text("did not come from this dashboard").await;
    assert_eq!(formation(p)["web"], 2);
    // And from our own origin without the session's CSRF token.
    let addr: SocketAddr = api.trim_start_matches("http://").parse().unwrap();
    let forged = http_request(
        addr,
        "POST",
        &addr.to_string(),
        &format!("/apps/{APP}/scale"),
        &[
            ("Cookie", &session_cookie),
            ("Origin", &api),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"_csrf=0000&qty.web=4",
        HTTP_TIMEOUT,
    )
    .expect("posting without the CSRF token");
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(formation(p)["web"], 2);

    // A revoked token ends its session: the next page is the sign-in page, saying why.
    p.caas_ok(&["tokens:revoke", &token_id]);
    b.goto(&format!("{api}/apps/{APP}")).await;
    b.wait_text("Your token no longer works").await;
    assert!(b.url().await.ends_with("/?expired=token"));

    // A member signs in as themselves and sees only what they may: not the admin's app.
    let added = p.caas_ok(&["users:add", "ann"]);
    let ann = added
        .split_whitespace()
        .find(|w| w.starts_with("caas_"))
        .unwrap_or_else(|| panic!("no token in {added:?}"));
    b.fill("#token", ann).await;
    b.click("#sign-in").await;
    assert_eq!(b.text("#signed-in-as").await, "ann");
    assert!(b.text("#no-apps").await.contains("No apps yet"));
    b.goto(&format!("{api}/apps/{APP}")).await;
    assert_eq!(b.text("h1").await, "Not found");
    b.click("#sign-out").await;

    // Sign in again as the admin and out: the session is gone, pages ask to sign in.
    b.fill("#token", p.token()).await;
    b.click("#sign-in").await;
    assert_eq!(b.text("#signed-in-as").await, "admin");

    // Destroy takes the app's name typed out; anything else destroys nothing.
    b.goto(&format!("{api}/apps/{APP}")).await;
    b.fill("#confirm", "dahs").await;
    b.click("#destroy").await;
    let error = b.text("#destroy-error").await;
    assert!(error.contains("nothing was destroyed"), "{error}");
    p.caas_ok(&["apps:info", "-a", APP]);
    b.fill("#confirm", APP).await;
    b.click("#destroy").await;
    b.wait_text(&format!("Destroyed {APP}")).await;
    assert!(b.text("#no-apps").await.contains("No apps yet"));
    p.caas_code(4, &["apps:info", "-a", APP]);

    b.click("#sign-out").await;
    b.wait_text("Sign in").await;
    b.goto(&format!("{api}/apps/{APP}")).await;
    assert!(b.text("h1").await.contains("Sign in"));
    let cookies = b.client.get_all_cookies().await.expect("cookies");
    assert!(
        cookies
            .iter()
            .all(|c| c.name() != "caas_session" || c.value().is_empty()),
        "{cookies:?}"
    );
    b.close().await;
}

/// The runtime a browser test drives its async WebDriver client on.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The API's port, which the browser is given.
fn api_port(p: &Platform) -> u16 {
    let addr: SocketAddr = p
        .api_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("the API's address");
    addr.port()
}

/// Signs the browser in with `token`.
async fn sign_in(b: &Browser, api: &str, token: &str) {
    b.goto(&format!("{api}/")).await;
    b.fill("#token", token).await;
    b.click("#sign-in").await;
    assert_eq!(b.text("#signed-in-as").await, "admin");
}

#[test]
fn a_running_build_streams_its_output_into_the_page() {
    require_stack();
    let p = Platform::start();
    p.caas_ok(&["apps:create", "watched"]);
    // A Dockerfile build that says one thing, waits, then says another. The markers are what the
    // shell prints (the step's own line shows `$((40+2))`), and unique, so no cached layer skips
    // them.
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let server = std::fs::read_to_string(example_app("dockerfile").join("server.py")).unwrap();
    let dockerfile = format!(
        "FROM caas/stack:latest\n\
         COPY --chown=caas:caas server.py /app/server.py\n\
         RUN echo started-$((40+2))-{nonce} && sleep 20 && echo finished-$((40+2))-{nonce}\n\
         ENV GREETING=\"built while watched\"\n\
         CMD [\"caas-launch\", \"python3 /app/server.py\"]\n"
    );
    let dir = temp_dir_with(&[("Dockerfile", &dockerfile), ("server.py", &server)]);
    let mut push = p
        .caas_command(&["push", dir.path().to_str().unwrap(), "-a", "watched"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting caas push");
    p.wait_for(DEPLOY, "build 1 to run", || {
        let builds = p.caas_json(&["builds", "-a", "watched", "--json"]);
        builds
            .as_array()?
            .iter()
            .any(|b| b["number"] == 1 && b["status"] == "running")
            .then_some(())
    });
    runtime().block_on(async {
        let api = p.api_url().trim_end_matches('/').to_string();
        let b = Browser::start(&[api_port(&p)]).await;
        sign_in(&b, &api, p.token()).await;
        b.goto(&format!("{api}/apps/watched/builds/1")).await;
        let output = |b: &Browser| {
            let b = b.client.clone();
            async move {
                let el = b.find(Locator::Css("#build-output")).await.ok()?;
                el.text().await.ok()
            }
        };
        let started = format!("started-42-{nonce}");
        let finished = format!("finished-42-{nonce}");
        let first = b
            .wait_for("the build's first marker in the page", || async {
                output(&b).await.filter(|t| t.contains(&started))
            })
            .await;
        assert!(
            !first.contains(&finished),
            "the page was opened after the build ended, so nothing streamed:\n{first}"
        );
        assert!(b.source().await.contains("sse-connect"), "not a live page");
        b.screenshot(&screenshots(), "build").await;
        let client = b.client.clone();
        client
            .wait()
            .at_most(DEPLOY)
            .for_element(Locator::Css("#build-done p"))
            .await
            .unwrap_or_else(|e| panic!("the build's end never reached the page: {e}"));
        let all = output(&b).await.unwrap_or_default();
        assert!(all.contains(&finished), "{all}");
        assert_eq!(all.matches(&started).count(), 1, "output repeated:\n{all}");
        b.close().await;
    });
    let status = p.wait_for(DEPLOY, "caas push to end", || {
        push.try_wait().ok().flatten()
    });
    assert!(status.success(), "caas push failed: {status}");
}

#[test]
fn the_dashboard_manages_domains_checks_autoscaling_and_alerts() {
    let p = Platform::start();
    p.caas_ok(&["apps:create", "tuned"]);
    p.caas_ok(&["checks:set", "web", "--path", "/", "-a", "tuned"]);
    let image = test_image("Hello from a tuned app");
    runtime().block_on(async {
        let api = p.api_url().trim_end_matches('/').to_string();
        let b = Browser::start(&[api_port(&p)]).await;
        sign_in(&b, &api, p.token()).await;
        b.goto(&format!("{api}/apps/tuned")).await;
        let checks = b.text("#checks").await;
        assert!(checks.contains("GET /, every"), "{checks}");

        // A domain: added from the page with what to point DNS at; the CLI sees it.
        b.fill("#domain-name", "www.tuned.test").await;
        b.click("#domain-add").await;
        b.wait_text("Added www.tuned.test: point a CNAME record for it at tuned.")
            .await;
        assert!(b.text("#domains").await.contains("www.tuned.test"));
        let domains = p.caas_json(&["domains", "-a", "tuned", "--json"]);
        assert_eq!(domains[0]["hostname"], "www.tuned.test", "{domains}");
        // A name that is not one: the API's line beside the form, nothing added.
        b.fill("#domain-name", "not a name").await;
        b.click("#domain-add").await;
        let error = b.text("#domains-error").await;
        assert!(error.contains("invalid"), "{error}");
        assert_eq!(
            p.caas_json(&["domains", "-a", "tuned", "--json"])
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        b.click("button[aria-label='Remove www.tuned.test']").await;
        b.wait_text("Removed www.tuned.test").await;
        assert_eq!(
            p.caas_json(&["domains", "-a", "tuned", "--json"]),
            serde_json::json!([])
        );

        // Autoscaling: a refusal the API makes (min above max) is said; a good one is set.
        b.fill("#as-min", "5").await;
        b.fill("#as-max", "2").await;
        b.fill("#as-rps", "50").await;
        b.click("#autoscale-set").await;
        let error = b.text("#autoscale-error").await;
        assert!(error.contains("min"), "{error}");
        assert_eq!(
            p.caas_json(&["autoscale", "-a", "tuned", "--json"]),
            serde_json::json!([])
        );
        b.fill("#as-min", "1").await;
        b.fill("#as-max", "3").await;
        b.fill("#as-rps", "50").await;
        b.click("#autoscale-set").await;
        b.wait_text("Autoscaling web between 1 and 3 instances")
            .await;
        let scaled = p.caas_json(&["autoscale", "-a", "tuned", "--json"]);
        assert_eq!(scaled[0]["settings"]["max"], 3, "{scaled}");
        b.click("#autoscale-off-web").await;
        b.wait_text("web is no longer autoscaled").await;
        assert_eq!(
            p.caas_json(&["autoscale", "-a", "tuned", "--json"]),
            serde_json::json!([])
        );

        // Alerts, set and cleared from the page.
        b.fill("#al-p95", "750").await;
        b.click("#alerts-set").await;
        b.wait_text("Alerts set").await;
        assert!(b.text("#alerts").await.contains("p95 above 750 ms"));
        let alerts = p.caas_json(&["alerts", "-a", "tuned", "--json"]);
        assert_eq!(alerts["settings"]["p95_ms"], 750, "{alerts}");
        b.click("#alerts-clear").await;
        b.wait_text("Alerts cleared").await;
        assert!(b.text("#alerts").await.contains("No alerts set"));

        // A deploy and a scale made with the CLI reach the open page without a reload: the
        // releases table and the scale form follow.
        p.caas_ok(&["push", "--image", &image, "-a", "tuned"]);
        b.client
            .wait()
            .at_most(DEPLOY)
            .for_element(Locator::Css("#releases tr[data-version='1'] .current"))
            .await
            .unwrap_or_else(|e| panic!("v1 never showed as serving in the open page: {e}"));
        p.caas_ok(&["ps:scale", "web=2", "-a", "tuned"]);
        b.wait_for("the scale form to say web=2", || async {
            let el = b.client.find(Locator::Css("#qty-web")).await.ok()?;
            el.prop("value").await.ok().flatten().filter(|v| v == "2")
        })
        .await;
        extras(&p, &b, &api).await;
        b.close().await;
    });
}

/// Sets a `<select>` of the page (typing into one is not portable across drivers).
async fn select(b: &Browser, css: &str, value: &str) {
    b.client
        .execute(
            "document.querySelector(arguments[0]).value = arguments[1]; return true;",
            vec![css.into(), value.into()],
        )
        .await
        .unwrap_or_else(|e| panic!("choosing {value} in {css}: {e}"));
}

/// The add-ons, canary and webhooks sections of the app page `tuned` (v1 serving, web=2): each
/// change made from the page is seen by the CLI, a refusal is said beside its form, and a
/// webhook's deliveries are listed.
async fn extras(p: &Platform, b: &Browser, api: &str) {
    let page = format!("{api}/apps/tuned");
    b.goto(&page).await;
    assert!(b.text("#addons").await.contains("No add-ons attached"));
    assert!(b.text("#canary").await.contains("No canary runs"));

    // A notification webhook for releases, with a nothing-listens loopback receiver.
    let hook = "http://127.0.0.1:9/hook";
    b.fill("#webhook-url", hook).await;
    b.click("input[name='event'][value='release']").await;
    b.click("#webhook-add").await;
    b.wait_text(&format!(
        "Added webhook {hook} for release; its signing secret"
    ))
    .await;
    let hooks = p.caas_json(&["webhooks", "-a", "tuned", "--json"]);
    assert_eq!(hooks[0]["url"], hook, "{hooks}");

    // An external add-on: a refusal first (no URL), then made and attached from the page.
    select(b, "#addon-kind", "external").await;
    b.fill("#addon-name", "tuned-mail").await;
    b.fill("#addon-as", "mail").await;
    b.click("#addon-create").await;
    let error = b.text("#addons-error").await;
    assert!(error.contains("--url"), "{error}");
    assert_eq!(p.caas_json(&["addons", "--json"]), serde_json::json!([]));
    select(b, "#addon-kind", "external").await;
    b.fill("#addon-url", "smtp://mail.example.test:25").await;
    b.click("#addon-create").await;
    b.wait_text("Created tuned-mail as MAIL_URL").await;
    assert!(b.text("#addons").await.contains("tuned-mail"));
    let config = p.caas_json(&["config", "-a", "tuned", "--json"]);
    assert_eq!(
        config["MAIL_URL"], "smtp://mail.example.test:25",
        "{config}"
    );
    b.click("button[aria-label='Detach tuned-mail']").await;
    b.wait_text("Detached tuned-mail from tuned").await;
    assert!(p.caas_json(&["config", "-a", "tuned", "--json"])["MAIL_URL"].is_null());
    select(b, "#attach-name", "tuned-mail").await;
    b.fill("#attach-as", "mail").await;
    b.click("#addon-attach").await;
    b.wait_text("Attached tuned-mail as MAIL_URL").await;
    let listed = p.caas_json(&["addons", "-a", "tuned", "--json"]);
    assert_eq!(listed[0]["name"], "tuned-mail", "{listed}");

    // The releases those changes made were announced to the webhook: its deliveries show.
    let deadline = std::time::Instant::now() + DEPLOY;
    loop {
        b.goto(&page).await;
        let html = b.source().await;
        if html.contains("class=\"deliveries\"") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no delivery listed for the webhook"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(b.text(".deliveries").await.contains("release"));

    // A canary of v1 beside the serving release: its weight changed and it is aborted from the
    // page; started again, it is promoted from the page.
    p.wait_for(DEPLOY, "the add-on releases to roll out", || {
        p.caas_json(&["apps:info", "-a", "tuned", "--json"])["deploying"]
            .is_null()
            .then_some(())
    });
    p.caas_ok(&["releases:canary", "v1", "--weight", "20", "-a", "tuned"]);
    b.goto(&page).await;
    let canary = b.text("#canary").await;
    assert!(
        canary.contains("v1 runs beside") && canary.contains("20%"),
        "{canary}"
    );
    b.fill("#canary-weight", "150").await;
    b.click("#canary-set").await;
    let error = b.text("#canary-error").await;
    assert!(error.contains("150"), "{error}");
    b.fill("#canary-weight", "30").await;
    b.click("#canary-set").await;
    b.wait_text("Canary v1 now gets 30% of requests").await;
    b.client
        .execute(
            "document.getElementById('addons-title').scrollIntoView(); return true;",
            vec![],
        )
        .await
        .expect("scrolling");
    b.screenshot(&screenshots(), "app-addons-canary-webhooks")
        .await;
    b.click("#canary-abort").await;
    b.wait_text("Aborted canary v1").await;
    let releases = p.caas_json(&["releases", "-a", "tuned", "--json"]);
    assert!(
        releases
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["canary"] == false),
        "{releases}"
    );
    p.caas_ok(&["releases:canary", "v1", "--weight", "10", "-a", "tuned"]);
    b.goto(&page).await;
    b.click("#canary-promote").await;
    b.wait_text("Promoting canary v1: it rolls out now").await;

    b.click(&format!("button[aria-label='Remove webhook {hook}']"))
        .await;
    b.wait_text(&format!("Removed webhook {hook}")).await;
    assert_eq!(
        p.caas_json(&["webhooks", "-a", "tuned", "--json"]),
        serde_json::json!([])
    );
}
