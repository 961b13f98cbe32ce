//! Builds from git hosting webhooks and deploy notifications.
//!
//! - `PUT/GET/DELETE /v1/apps/{app}/git`: the repository an app builds from (`caas
//!   git:connect`). Connecting reads the branch's head first, so a repository caasd cannot
//!   clone is refused with why (authentication, not found, network) and nothing is stored.
//! - `POST /v1/apps/{app}/webhooks/git`: push events from GitHub, GitLab and Gitea. It takes no
//!   API token: the event's signature (or GitLab's token) made with the connection's webhook
//!   secret is its authentication (`crate::webhook` checks it). The pushed commit is fetched
//!   into the app's repository and built through the same builder as `git push`. Each delivery
//!   id and each commit builds once.
//! - `GET/POST/DELETE /v1/apps/{app}/webhooks`: notification webhooks (`crate::notify` sends).

use super::auth::{load_app, Access, Caller, ClientAddr};
use super::error::{ApiError, ApiResult, JsonBody};
use super::AppState;
use crate::git::remote::{self, FetchError};
use crate::store::{GitLinkRecord, NotifyHookRecord};
use crate::webhook::{self, Reading};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use caas_api::hooks::{
    AddNotifyHook, GitConnect, GitConnection, GitDelivery, NotifyHook, WebhookAnswer, NOTIFY_EVENTS,
};
use caas_api::{validate_app_name, SourceKind, Timestamp};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A push event: GitHub sends at most 25 MB; pushes of many commits come near.
pub const PUSH_EVENT_LIMIT: usize = 25 * 1024 * 1024;
/// Notification webhooks one app may have.
const MAX_HOOKS: usize = 10;
/// How long reading a repository's head may take when connecting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(40);

/// One push event of an app at a time: the check for a delivery or commit already taken and
/// the record that takes it are one step, so two deliveries of one push cannot both build.
#[derive(Default)]
pub struct PushLocks {
    apps: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl PushLocks {
    fn of(&self, app: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut apps = self.apps.lock().unwrap();
        apps.retain(|_, l| Arc::strong_count(l) > 1); // unused ones go
        apps.entry(app.to_string()).or_default().clone()
    }
}

fn webhook_path(app: &str) -> String {
    format!("/v1/apps/{app}/webhooks/git")
}

fn connection_view(app: &str, rec: &GitLinkRecord, secret: bool) -> GitConnection {
    GitConnection {
        app: app.to_string(),
        url: rec.url.clone(),
        branch: rec.branch.clone(),
        token: rec.token.is_some(),
        webhook_path: webhook_path(app),
        webhook_secret: secret.then(|| rec.webhook_secret.clone()),
        created_at: rec.created_at,
        last_delivery: rec.last.clone(),
    }
}

/// A repository URL caasd may clone: `https://HOST/PATH` (or `http://`, without a token
/// unless the host is this machine: a token must not cross a network in the clear), with no
/// credentials in it.
fn check_repo_url(url: &str, token: bool) -> Result<(), String> {
    let bad = |why: &str| format!("invalid repository URL {url:?}: {why}");
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it has spaces or control characters, or is too long"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    let host = parsed.host_str().ok_or_else(|| bad("it has no host"))?;
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => {}
        "http" if !token || loopback => {}
        "http" => {
            return Err(bad(
                "the deploy token would cross the network unencrypted; use https://",
            ))
        }
        other => {
            return Err(bad(&format!(
                "caasd clones over https:// only, not {other}://"
            )))
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "it holds credentials; give the token with --secret-from-env (CAAS_GIT_TOKEN) instead",
        ));
    }
    Ok(())
}

/// A branch name as git allows it, narrowed to what needs no quoting anywhere.
fn check_branch(branch: &str) -> Result<(), String> {
    let ok = (1..=200).contains(&branch.len())
        && branch
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
        && !branch.starts_with(['-', '/', '.'])
        && !branch.ends_with(['/', '.'])
        && !branch.contains("..")
        && !branch.contains("//")
        && !branch.ends_with(".lock");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid branch {branch:?}: use letters, digits, '.', '_', '-' and '/'"
        ))
    }
}

#[utoipa::path(put, path = "/v1/apps/{app}/git", tag = "git", operation_id = "git_connect", params(("app" = String, Path)), request_body = GitConnect, responses((status = "2XX", description = "done", body = GitConnection), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn connect(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<GitConnect>,
) -> ApiResult<(StatusCode, Json<GitConnection>)> {
    load_app(&s, &caller, &app, Access::Manage)?;
    let url = req.url.trim().to_string();
    let branch = req.branch.unwrap_or_else(|| "main".into());
    let token = req.token.filter(|t| !t.is_empty());
    check_repo_url(&url, token.is_some()).map_err(ApiError::Invalid)?;
    check_branch(&branch).map_err(ApiError::Invalid)?;
    if token
        .as_deref()
        .is_some_and(|t| t.len() > 1000 || t.chars().any(|c| c.is_control() || c == ' '))
    {
        return Err(ApiError::Invalid(
            "invalid deploy token: it has spaces or control characters, or is too long".into(),
        ));
    }
    // Read before stored: a repository caasd cannot clone is refused now, not at the first push.
    let (u, b, t) = (url.clone(), branch.clone(), token.clone());
    let head = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::task::spawn_blocking(move || remote::head_of(&u, &b, t.as_deref())),
    )
    .await;
    match head {
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err(e))) => return Err(ApiError::Invalid(e.to_string())),
        Ok(Err(e)) => return Err(ApiError::Internal(e.to_string())),
        Err(_) => {
            return Err(ApiError::Invalid(format!(
                "{url}: the host could not be reached (no answer in {}s); check the URL",
                CONNECT_TIMEOUT.as_secs()
            )))
        }
    }
    let rec = GitLinkRecord {
        url: url.clone(),
        branch: branch.clone(),
        token,
        webhook_secret: crate::auth::generate("caaswh_"),
        created_at: Timestamp::now(),
        deliveries: Vec::new(),
        commits: Vec::new(),
        last: None,
    };
    s.store.put_git_link(&app, &rec)?;
    s.store.flush().await?;
    super::audit(
        &s,
        &caller,
        "git:connect",
        Some(&app),
        format!("{url} {branch}"),
    );
    s.logs.event(
        &app,
        "git",
        format!("Connected to {url} ({branch}): pushes to it build by webhook"),
    );
    Ok((StatusCode::CREATED, Json(connection_view(&app, &rec, true))))
}

fn no_connection(app: &str) -> ApiError {
    ApiError::NotFound(format!(
        "{app} is not connected to a repository: caas git:connect URL -a {app}"
    ))
}

#[utoipa::path(get, path = "/v1/apps/{app}/git", tag = "git", operation_id = "git_connection", params(("app" = String, Path)), responses((status = 200, description = "OK", body = GitConnection), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn show(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<GitConnection>> {
    load_app(&s, &caller, &app, Access::Read)?;
    let rec = s.store.git_link(&app)?.ok_or_else(|| no_connection(&app))?;
    Ok(Json(connection_view(&app, &rec, false)))
}

#[utoipa::path(delete, path = "/v1/apps/{app}/git", tag = "git", operation_id = "git_disconnect", params(("app" = String, Path)), responses((status = "2XX", description = "done"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn disconnect(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<StatusCode> {
    load_app(&s, &caller, &app, Access::Manage)?;
    if !s.store.remove_git_link(&app)? {
        return Err(no_connection(&app));
    }
    s.store.flush().await?;
    super::audit(&s, &caller, "git:disconnect", Some(&app), "");
    s.logs
        .event(&app, "git", "Disconnected from its repository");
    Ok(StatusCode::NO_CONTENT)
}

fn answer(status: StatusCode, message: impl Into<String>, build: Option<u64>) -> Response {
    let message = message.into();
    (status, Json(WebhookAnswer { message, build })).into_response()
}

/// `POST /v1/apps/{app}/webhooks/git`: a push event from the app's git host.
#[utoipa::path(post, path = "/v1/apps/{app}/webhooks/git", tag = "git", operation_id = "git_webhook", params(("app" = String, Path)), responses((status = "2XX", description = "taken or ignored; the message says which", body = WebhookAnswer), (status = "4XX", description = "refused; the message says why", body = WebhookAnswer)))]
pub async fn push_event(
    State(s): State<AppState>,
    Path(app): Path<String>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ip = client.map(|c| c.0 .0.ip());
    let Ok(body) = axum::body::to_bytes(body, PUSH_EVENT_LIMIT).await else {
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a push event may have at most {PUSH_EVENT_LIMIT} bytes"),
            None,
        );
    };
    if let Some(secs) = ip.and_then(|ip| s.auth_failures.blocked(ip)) {
        return ApiError::RateLimited(secs).into_response();
    }
    // Unknown apps and apps without a connection answer alike, before any key is made of the
    // name.
    let link = match validate_app_name(&app).ok().map(|_| s.store.git_link(&app)) {
        Some(Ok(Some(link))) => link,
        Some(Err(e)) => return ApiError::from(e).into_response(),
        _ => return answer(StatusCode::NOT_FOUND, no_connection(&app).to_string(), None),
    };
    let push = match webhook::read(&headers, &body, &link.webhook_secret) {
        Reading::Unauthorized(why) => {
            if let Some(ip) = ip {
                s.auth_failures.failed(ip);
            }
            return answer(StatusCode::UNAUTHORIZED, why, None);
        }
        Reading::Malformed(why) => return answer(StatusCode::BAD_REQUEST, why, None),
        Reading::Ignored(why) => return answer(StatusCode::ACCEPTED, why, None),
        Reading::Push(p) => p,
    };
    if push.branch != link.branch {
        return answer(
            StatusCode::ACCEPTED,
            format!(
                "ignored: a push to {}; {app} builds {}",
                push.branch, link.branch
            ),
            None,
        );
    }
    let lock = s.push_locks.of(&app);
    let _held = lock.lock().await;
    // Read again under the lock: the delivery before this one may have just been taken.
    let link = match s.store.git_link(&app) {
        Ok(Some(link)) => link,
        Ok(None) => return answer(StatusCode::NOT_FOUND, no_connection(&app).to_string(), None),
        Err(e) => return ApiError::from(e).into_response(),
    };
    if let Some(id) = push
        .delivery
        .as_ref()
        .filter(|id| link.deliveries.contains(id))
    {
        return answer(
            StatusCode::CONFLICT,
            format!("delivery {id} was taken already: nothing to do"),
            None,
        );
    }
    if link.commits.contains(&push.commit) {
        return answer(
            StatusCode::OK,
            format!(
                "commit {} was built from a webhook already: nothing to do",
                &push.commit[..12]
            ),
            None,
        );
    }
    match build(&s, &app, &link, &push).await {
        Ok(number) => answer(
            StatusCode::ACCEPTED,
            format!(
                "building {} of {} (build {number}): caas builds:output {number} -a {app}",
                &push.commit[..12],
                push.branch
            ),
            Some(number),
        ),
        Err(e) => e.into_response(),
    }
}

/// Fetches the pushed commit, hands it to the builder and records the delivery as taken.
async fn build(
    s: &AppState,
    app: &str,
    link: &GitLinkRecord,
    push: &webhook::Push,
) -> ApiResult<u64> {
    s.builder
        .room_for("the build")
        .map_err(|e| ApiError::NoRoom(e.to_string()))?;
    let work = s.repos_tmp.join(crate::auth::short_id());
    let result = fetch_and_prepare(s, app, link, push, &work).await;
    let _ = tokio::fs::remove_dir_all(&work).await;
    let mut prepared = result?;
    let number = prepared.number;
    prepared.user = Some(format!("webhook ({})", push.host.as_str()));
    let delivery = GitDelivery {
        id: push.delivery.clone(),
        host: push.host.as_str().to_string(),
        commit: push.commit.clone(),
        build: number,
        at: Timestamp::now(),
    };
    let mut taken = link.clone();
    taken.took(delivery);
    s.store.put_git_link(app, &taken)?;
    s.store.flush().await?;
    let detail = format!("{} {} -> build {number}", push.branch, &push.commit[..12]);
    let caller = Caller {
        user: format!("webhook:{}", push.host.as_str()),
        admin: false,
        scope: Some(app.to_string()),
        token_id: "-".into(),
        token_hash: String::new(),
        addr: None,
    };
    super::audit(s, &caller, "git:webhook", Some(app), detail);
    // Nobody follows the events: the build's log is its record (`caas builds:output`).
    let (tx, _) = tokio::sync::mpsc::channel(1);
    s.builder.spawn(prepared, tx);
    Ok(number)
}

async fn fetch_and_prepare(
    s: &AppState,
    app: &str,
    link: &GitLinkRecord,
    push: &webhook::Push,
    work: &std::path::Path,
) -> ApiResult<crate::builder::Prepared> {
    tokio::fs::create_dir_all(work)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let tarball = work.join("source.tar.gz");
    let (repos, a, l, p, out) = (
        s.repos.clone(),
        app.to_string(),
        link.clone(),
        push.clone(),
        tarball.clone(),
    );
    let limits = s.builder.limits();
    let limits = crate::git::PushLimits {
        max_objects: limits.max_entries.saturating_mul(10),
        max_entries: limits.max_entries,
        max_bytes: limits.max_unpacked_bytes,
    };
    let fetched = tokio::task::spawn_blocking(move || {
        repos.fetch_remote(&a, &l.url, &l.branch, l.token.as_deref(), &p.commit)?;
        Ok::<_, FetchError>(repos.export(&a, &p.commit, &out, limits)?)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    match fetched {
        Ok(_) => {}
        Err(FetchError::Remote(e)) => {
            s.logs.event(
                app,
                "git",
                format!("Fetching the pushed commit failed: {e}"),
            );
            return Err(ApiError::Invalid(e.to_string()));
        }
        Err(FetchError::Local(crate::git::GitError::TooBig(why))) => {
            return Err(ApiError::TooLarge(why))
        }
        Err(FetchError::Local(e)) => return Err(ApiError::Internal(e.to_string())),
    }
    let file = tokio::fs::File::open(&tarball)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let source = format!(
        "webhook {} {}@{}",
        push.host.as_str(),
        push.branch,
        &push.commit[..7]
    );
    let body = tokio_util::io::ReaderStream::new(file);
    Ok(s.builder
        .prepare(app, SourceKind::Dir, &source, body)
        .await?)
}

// --- notification webhooks --------------------------------------------------------------

fn hook_view(s: &AppState, app: &str, h: &NotifyHookRecord, secret: bool) -> ApiResult<NotifyHook> {
    Ok(NotifyHook {
        url: h.url.clone(),
        events: h.events.clone(),
        created_at: h.created_at,
        secret: secret.then(|| h.secret.clone()),
        deliveries: s.store.notify_deliveries(app, &h.url)?,
    })
}

#[utoipa::path(get, path = "/v1/apps/{app}/webhooks", tag = "webhooks", operation_id = "webhooks_list", params(("app" = String, Path)), responses((status = 200, description = "OK", body = Vec<NotifyHook>), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn list(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<NotifyHook>>> {
    load_app(&s, &caller, &app, Access::Manage)?;
    let hooks = s.store.notify_hooks(&app)?;
    let views = hooks.iter().map(|h| hook_view(&s, &app, h, false));
    Ok(Json(views.collect::<ApiResult<_>>()?))
}

#[utoipa::path(post, path = "/v1/apps/{app}/webhooks", tag = "webhooks", operation_id = "webhooks_add", params(("app" = String, Path)), request_body = AddNotifyHook, responses((status = "2XX", description = "done", body = NotifyHook), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn add(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<AddNotifyHook>,
) -> ApiResult<(StatusCode, Json<NotifyHook>)> {
    load_app(&s, &caller, &app, Access::Manage)?;
    let url = req.url.trim().to_string();
    crate::alerts::check_webhook(&url).map_err(ApiError::Invalid)?;
    let mut events: Vec<String> = Vec::new();
    for e in &req.events {
        if !NOTIFY_EVENTS.contains(&e.as_str()) {
            return Err(ApiError::Invalid(format!(
                "unknown event {e:?}: use some of {}",
                NOTIFY_EVENTS.join(",")
            )));
        }
        if !events.contains(e) {
            events.push(e.clone());
        }
    }
    if events.is_empty() {
        events = NOTIFY_EVENTS.iter().map(|e| e.to_string()).collect();
    }
    let rec = NotifyHookRecord {
        url: url.clone(),
        events,
        secret: crate::auth::generate("caasns_"),
        created_at: Timestamp::now(),
    };
    s.store.update_notify_hooks::<ApiError>(&app, |hooks| {
        if hooks.iter().any(|h| h.url == url) {
            return Err(ApiError::Conflict(format!(
                "{app} already notifies {url}: remove it first to change it"
            )));
        }
        if hooks.len() >= MAX_HOOKS {
            return Err(ApiError::Invalid(format!(
                "{app} has {MAX_HOOKS} webhooks, the most an app may have; remove one first"
            )));
        }
        hooks.push(rec.clone());
        Ok(())
    })?;
    s.store.flush().await?;
    super::audit(&s, &caller, "webhooks:add", Some(&app), url.clone());
    s.logs
        .event(&app, "webhook", format!("Added webhook {url}"));
    Ok((StatusCode::CREATED, Json(hook_view(&s, &app, &rec, true)?)))
}

#[derive(Deserialize)]
pub struct RemoveQuery {
    url: String,
}

#[utoipa::path(delete, path = "/v1/apps/{app}/webhooks", tag = "webhooks", operation_id = "webhooks_remove", params(("app" = String, Path), ("url" = String, Query)), responses((status = "2XX", description = "done"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn remove(
    caller: Caller,
    State(s): State<AppState>,
    Path(app): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> ApiResult<StatusCode> {
    load_app(&s, &caller, &app, Access::Manage)?;
    let mut found = false;
    s.store.update_notify_hooks::<ApiError>(&app, |hooks| {
        let before = hooks.len();
        hooks.retain(|h| h.url != q.url);
        found = hooks.len() != before;
        Ok(())
    })?;
    if !found {
        return Err(ApiError::NotFound(format!(
            "{app} has no webhook {}: see caas webhooks -a {app}",
            q.url
        )));
    }
    s.store.forget_deliveries(&app, &q.url)?;
    s.store.flush().await?;
    super::audit(&s, &caller, "webhooks:remove", Some(&app), q.url.clone());
    s.logs
        .event(&app, "webhook", format!("Removed webhook {}", q.url));
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_urls_caasd_clones() {
        let rows: Vec<(&str, bool, bool)> = vec![
            ("https://github.com/acme/shop.git", true, true),
            ("https://gitlab.example.com/acme/shop", false, true),
            ("http://127.0.0.1:9418/shop.git", true, true),
            ("http://localhost/shop.git", true, true),
            ("http://git.example.com/shop.git", false, true),
            ("http://git.example.com/shop.git", true, false),
            ("ssh://git@github.com/acme/shop.git", false, false),
            ("git@github.com:acme/shop.git", false, false),
            ("file:///etc", false, false),
            ("https://user:pass@github.com/acme/shop.git", false, false),
            ("https://github.com/a b", false, false),
        ];
        for (url, token, ok) in rows {
            assert_eq!(
                check_repo_url(url, token).is_ok(),
                ok,
                "{url} token={token}"
            );
        }
    }

    #[test]
    fn branch_names() {
        for ok in ["main", "release/1.2", "feature_x-2"] {
            assert!(check_branch(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a..b", "a b", "x.lock", "/a", "a/", "a;b", "$(x)"] {
            assert!(check_branch(bad).is_err(), "{bad}");
        }
    }
}
