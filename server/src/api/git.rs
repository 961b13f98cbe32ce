//! `git push caas main`: git's smart HTTP (receive-pack) at `/{APP}.git`.
//!
//! Authentication is HTTP Basic with the API token as the password (git asks its credential
//! helper after our 401; `caas git:remote` configures one, so the token never sits in the remote
//! URL). The pushed commit builds through the same builder as `caas push`, and its output reaches
//! the pusher as `remote:` lines while it happens. The branch moves only when the build succeeds;
//! a failed build rejects the push and nothing is deployed.

use super::auth::{self, load_app, Access, Caller, ClientAddr};
use super::error::ApiError;
use super::AppState;
use crate::builder::BuildError;
use crate::git::protocol::{self, Command};
use crate::git::{GitError, PushLimits};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine as _;
use bytes::Bytes;
use caas_api::{BuildEvent, ReleaseStatus, SourceKind};
use futures_util::StreamExt;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const BRANCHES: [&str; 2] = ["refs/heads/main", "refs/heads/master"];
/// How long a push waits for the verdict on its release beyond the server's start timeout
/// (after which the scheduler has decided).
const UP_WAIT_SLACK: Duration = Duration::from_secs(30);

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text + "\n",
    )
        .into_response()
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "Basic realm=\"caas\""),
            (header::CONTENT_TYPE, "text/plain"),
        ],
        "missing or invalid token: run caas login, then caas git:remote -a APP\n",
    )
        .into_response()
}

/// The token from `Authorization: Basic base64(user:TOKEN)` or `Bearer TOKEN`.
fn token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(b) = value.strip_prefix("Bearer ") {
        return Some(b.trim().to_string());
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(value.strip_prefix("Basic ")?.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    Some(text.split_once(':')?.1.to_string())
}

/// Checks the token and the repository name: the app's name and who pushes, when the caller may
/// deploy to it. An app the caller may not see answers as one that does not exist.
fn authorize(
    s: &AppState,
    headers: &HeaderMap,
    addr: Option<std::net::SocketAddr>,
    repo: &str,
) -> Result<(String, Caller), Box<Response>> {
    let app = repo.strip_suffix(".git").unwrap_or(repo);
    let refused = |e: ApiError| -> Box<Response> {
        Box::new(match e {
            ApiError::Unauthorized => unauthorized(),
            ApiError::NotFound(_) => plain(
                StatusCode::NOT_FOUND,
                format!("no app named {app:?}: create it with caas apps:create NAME"),
            ),
            ApiError::Internal(detail) => {
                tracing::error!("git auth: {detail}");
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the server failed; see its log".into(),
                )
            }
            other => other.into_response(),
        })
    };
    let caller = auth::caller(s, token(headers).as_deref(), addr).map_err(refused)?;
    load_app(s, &caller, app, Access::Deploy).map_err(refused)?;
    Ok((app.to_string(), caller))
}

#[derive(Deserialize)]
pub struct InfoQuery {
    service: Option<String>,
}

#[utoipa::path(get, path = "/{repo}/info/refs", tag = "git", operation_id = "git_info_refs", params(("repo" = String, Path)), responses((status = 200, description = "see docs/api.md"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn info_refs(
    State(s): State<AppState>,
    Path(repo): Path<String>,
    Query(q): Query<InfoQuery>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
) -> Response {
    if q.service.as_deref() != Some("git-receive-pack") {
        return plain(
            StatusCode::FORBIDDEN,
            "caas app repositories take pushes only: git push caas main".into(),
        );
    }
    let addr = client.map(|c| c.0 .0);
    let app = match authorize(&s, &headers, addr, &repo) {
        Ok((app, _)) => app,
        Err(resp) => return *resp,
    };
    // Refused before the pack is sent: git shows this text as `remote: ...` lines.
    if let Err(e) = s.builder.room_for("the push") {
        return plain(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    }
    let repos = s.repos.clone();
    let refs = match tokio::task::spawn_blocking(move || repos.refs(&app)).await {
        Ok(Ok(refs)) => refs,
        other => {
            tracing::error!("git refs: {:?}", other.map(|r| r.err()));
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the server failed; see its log".into(),
            );
        }
    };
    (
        [
            (
                header::CONTENT_TYPE,
                "application/x-git-receive-pack-advertisement",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        protocol::advertisement(&refs),
    )
        .into_response()
}

#[utoipa::path(post, path = "/{repo}/git-receive-pack", tag = "git", operation_id = "git_receive_pack", params(("repo" = String, Path)), responses((status = 200, description = "see docs/api.md"), (status = "4XX", description = "refused; the message says why", body = caas_api::ErrorBody)))]
pub async fn receive_pack(
    State(s): State<AppState>,
    Path(repo): Path<String>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let addr = client.map(|c| c.0 .0);
    let (app, caller) = match authorize(&s, &headers, addr, &repo) {
        Ok(ok) => ok,
        Err(resp) => return *resp,
    };
    if let Err(e) = s.builder.room_for("the push") {
        return plain(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    }
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let work = s.repos_tmp.join(crate::auth::short_id());
    let raw = work.join("push");
    match receive(&s, body, &work, &raw, gzip).await {
        Ok(()) => {}
        Err(resp) => {
            let _ = tokio::fs::remove_dir_all(&work).await;
            return resp;
        }
    }
    let mut head = vec![0u8; 1024 * 1024];
    let n = match tokio::fs::File::open(&raw).await {
        Ok(mut f) => f.read(&mut head).await.unwrap_or(0),
        Err(_) => 0,
    };
    let (commands, caps, offset) = match protocol::parse_commands(&head[..n]) {
        Ok(parsed) => parsed,
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&work).await;
            return plain(StatusCode::BAD_REQUEST, format!("bad push: {e}"));
        }
    };
    let sideband = caps
        .iter()
        .any(|c| c == "side-band-64k" || c == "side-band");
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let state = s.clone();
    tokio::spawn(async move {
        let push = Push {
            s: state,
            app,
            caller,
            tx,
            sideband,
            work: work.clone(),
        };
        push.run(commands, raw, offset as u64).await;
        let _ = tokio::fs::remove_dir_all(&work).await;
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
    (
        [
            (
                header::CONTENT_TYPE,
                "application/x-git-receive-pack-result",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Stores the request body (decompressed) in `raw`, within the upload limit.
async fn receive(
    s: &AppState,
    body: Body,
    work: &std::path::Path,
    raw: &std::path::Path,
    gzip: bool,
) -> Result<(), Response> {
    let fail = |e: std::io::Error| {
        tracing::error!("receiving a push: {e}");
        plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server failed; see its log".into(),
        )
    };
    tokio::fs::create_dir_all(work).await.map_err(fail)?;
    let limit = s.config.max_upload;
    let too_large = || {
        plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the push is larger than this server accepts ({} MB; caasd --max-upload-mb)",
                limit / (1024 * 1024)
            ),
        )
    };
    let mut file = tokio::fs::File::create(raw).await.map_err(fail)?;
    let mut stream = body.into_data_stream();
    let mut seen = 0u64;
    if gzip {
        let mut decoder = async_gzip::Decoder::default();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| plain(StatusCode::BAD_REQUEST, format!("the push broke off: {e}")))?;
            let out = decoder
                .feed(&chunk)
                .map_err(|e| plain(StatusCode::BAD_REQUEST, format!("bad gzip body: {e}")))?;
            seen += out.len() as u64;
            if seen > limit {
                return Err(too_large());
            }
            file.write_all(&out).await.map_err(fail)?;
        }
    } else {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| plain(StatusCode::BAD_REQUEST, format!("the push broke off: {e}")))?;
            seen += chunk.len() as u64;
            if seen > limit {
                return Err(too_large());
            }
            file.write_all(&chunk).await.map_err(fail)?;
        }
    }
    file.flush().await.map_err(fail)?;
    Ok(())
}

/// Incremental gzip decoding for request bodies (git compresses some requests).
mod async_gzip {
    use std::io::Write;

    #[derive(Default)]
    pub struct Decoder {
        inner: Option<flate2::write::GzDecoder<Vec<u8>>>,
    }

    impl Decoder {
        pub fn feed(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
            let d = self
                .inner
                .get_or_insert_with(|| flate2::write::GzDecoder::new(Vec::new()));
            d.write_all(data)?;
            d.flush()?;
            Ok(std::mem::take(d.get_mut()))
        }
    }
}

struct Push {
    s: AppState,
    app: String,
    /// Who pushes: audited, and the push stops when their token is revoked.
    caller: Caller,
    tx: mpsc::Sender<Bytes>,
    sideband: bool,
    work: PathBuf,
}

impl Push {
    async fn say(&self, text: &str) {
        if self.sideband {
            for line in text.lines() {
                let _ = self.tx.send(protocol::progress(line)).await;
            }
        }
    }

    async fn finish(&self, unpack_ok: bool, results: Vec<(String, Result<(), String>)>) {
        let report = protocol::report(unpack_ok, &results);
        let bytes = if self.sideband {
            let mut b = protocol::band(1, &report).to_vec();
            b.extend_from_slice(protocol::FLUSH);
            Bytes::from(b)
        } else {
            report
        };
        let _ = self.tx.send(bytes).await;
    }

    async fn run(self, commands: Vec<Command>, raw: PathBuf, offset: u64) {
        let has_pack = tokio::fs::metadata(&raw)
            .await
            .map(|m| m.len() > offset)
            .unwrap_or(false);
        if has_pack {
            let (repos, app, raw2) = (self.s.repos.clone(), self.app.clone(), raw.clone());
            let limits = self.limits();
            let ingested =
                tokio::task::spawn_blocking(move || repos.ingest_pack(&app, &raw2, offset, limits))
                    .await;
            let failed = match ingested {
                Ok(Ok(())) => None,
                Ok(Err(GitError::TooBig(why))) => Some(why),
                Ok(Err(e)) => Some(format!("the pushed pack could not be read: {e}")),
                Err(e) => Some(format!("the pushed pack could not be read: {e}")),
            };
            if let Some(e) = failed {
                tracing::warn!(app = self.app, "push: unpacking: {e}");
                self.say(&format!(" !     {e}")).await;
                let results = commands
                    .iter()
                    .map(|c| (c.refname.clone(), Err("unpacker error".to_string())))
                    .collect();
                return self.finish(false, results).await;
            }
        }
        let target = commands
            .iter()
            .position(|c| BRANCHES.contains(&c.refname.as_str()) && !c.is_delete());
        let mut results = Vec::new();
        for (i, c) in commands.iter().enumerate() {
            let result = if Some(i) == target {
                self.build(c).await
            } else if c.is_delete() {
                Err("deleting branches is not supported".to_string())
            } else if BRANCHES.contains(&c.refname.as_str()) {
                Err("one branch builds per push".to_string())
            } else {
                let branch = c.refname.strip_prefix("refs/heads/").unwrap_or(&c.refname);
                self.say(&format!(" !     caas builds main or master only; push this branch with: git push caas {branch}:main"))
                    .await;
                Err(format!("push to main: git push caas {branch}:main"))
            };
            results.push((c.refname.clone(), result));
        }
        self.finish(true, results).await;
    }

    /// Builds the pushed commit and, when it succeeds, moves the branch and waits for the
    /// release to be up.
    async fn build(&self, c: &Command) -> Result<(), String> {
        let tarball = self.work.join("source.tar.gz");
        let (repos, app, new, out) = (
            self.s.repos.clone(),
            self.app.clone(),
            c.new.clone(),
            tarball.clone(),
        );
        let limits = self.limits();
        let exported =
            tokio::task::spawn_blocking(move || repos.export(&app, &new, &out, limits)).await;
        let exported = match exported {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => {
                self.say(&format!(" !     {e}")).await;
                return Err("the pushed commit could not be read".into());
            }
            Err(e) => return Err(format!("internal error: {e}")),
        };
        for sub in &exported.submodules {
            self.say(&format!(
                " !     skipping submodule {sub}: its content is not in this repository"
            ))
            .await;
        }
        let branch = c.refname.trim_start_matches("refs/heads/");
        let source = format!("git {branch}@{}", &c.new[..7]);
        let file = match tokio::fs::File::open(&tarball).await {
            Ok(f) => f,
            Err(e) => return Err(format!("internal error: {e}")),
        };
        let body = tokio_util::io::ReaderStream::new(file);
        let prepared = match self
            .s
            .builder
            .prepare(&self.app, SourceKind::Dir, &source, body)
            .await
        {
            Ok(mut p) => {
                p.user = Some(self.caller.user.clone());
                p
            }
            Err(e) => {
                let message = match &e {
                    BuildError::Internal(_) => {
                        "the server failed; its log has the details".to_string()
                    }
                    other => other.to_string(),
                };
                self.say(&format!(" !     {message}")).await;
                return Err("build refused".into());
            }
        };
        let (tx, mut rx) = mpsc::channel(256);
        self.s.builder.spawn(prepared, tx);
        let mut release = None;
        let mut checked = std::time::Instant::now();
        while let Some(ev) = rx.recv().await {
            if checked.elapsed() >= Duration::from_secs(1) {
                checked = std::time::Instant::now();
                if !self.token_valid().await {
                    return Err("token revoked".into());
                }
            }
            match ev {
                BuildEvent::Line { text } => self.say(&text).await,
                // The output says so in a line of its own.
                BuildEvent::Queued { .. } | BuildEvent::Started { .. } => {}
                BuildEvent::Succeeded { release: r, .. } => release = Some(r),
                BuildEvent::Failed { message, .. } => {
                    self.say(&format!(" !     {message}")).await;
                    return Err("build failed".into());
                }
            }
        }
        let Some(version) = release else {
            return Err("the build ended without a result".into());
        };
        super::audit(
            &self.s,
            &self.caller,
            "git:push",
            Some(&self.app),
            format!(
                "{} {} -> v{version}",
                c.refname,
                &c.new[..c.new.len().min(12)]
            ),
        );
        // The branch moves only to a commit whose release came up (or may still): a release
        // that failed rejects the push, as a failed build does, so main never names it.
        if !self.wait_up(version).await {
            return Err(format!("v{version} failed to start"));
        }
        let (repos, app, refname, new) = (
            self.s.repos.clone(),
            self.app.clone(),
            c.refname.clone(),
            c.new.clone(),
        );
        if let Ok(Err(e)) | Err(e) =
            tokio::task::spawn_blocking(move || repos.update_ref(&app, &refname, &new))
                .await
                .map(|r| r.map_err(|e| e.to_string()))
                .map_err(|e| e.to_string())
        {
            tracing::error!(app = self.app, "push: moving {}: {e}", c.refname);
        }
        Ok(())
    }

    /// What a push may hold: the builder's limits on uploads, counted on the git side first.
    fn limits(&self) -> PushLimits {
        let l = self.s.builder.limits();
        PushLimits {
            // History has more objects than the tree has files.
            max_objects: l.max_entries.saturating_mul(10),
            max_entries: l.max_entries,
            max_bytes: l.max_unpacked_bytes,
        }
    }

    /// Whether the pusher's token still works; says so when it does not.
    async fn token_valid(&self) -> bool {
        if auth::still_valid(&self.s, &self.caller.token_hash) {
            return true;
        }
        self.say(" !     the token of this push was revoked; it stops here")
            .await;
        false
    }

    /// Waits for the server's verdict on release `version` (the scheduler decides it) and says
    /// it. Returns `false` only when the release failed.
    async fn wait_up(&self, version: u64) -> bool {
        self.say(&format!("-----> Waiting for v{version} to be up"))
            .await;
        let wait = self.s.config.start_timeout + UP_WAIT_SLACK;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if !self.token_valid().await {
                return false;
            }
            let app = self.s.store.app(&self.app).ok().flatten();
            let release = self.s.store.release(&self.app, version).ok().flatten();
            let (Some(app), Some(release)) = (app, release) else {
                self.say(" !     the app was destroyed meanwhile").await;
                return false;
            };
            match release.status {
                ReleaseStatus::Succeeded => {
                    super::until_served(&self.s, &self.app, version).await;
                    self.say(&format!(
                        "       {} deployed (v{version})",
                        self.s.config.app_url(&self.app)
                    ))
                    .await;
                    return true;
                }
                ReleaseStatus::Failed => {
                    if !release.output.is_empty() {
                        self.say(&format!(
                            "       The last output of the instance that failed v{version}:"
                        ))
                        .await;
                        for line in &release.output {
                            self.say(&format!("       | {line}")).await;
                        }
                    }
                    let why = release.error.unwrap_or_default();
                    let serving = match app.release {
                        Some(v) => format!("the previous release keeps serving (v{v})"),
                        None => "no release is serving".to_string(),
                    };
                    self.say(&format!(
                        " !     v{version} failed: {why}; {serving}; see caas logs -a {}",
                        self.app
                    ))
                    .await;
                    return false;
                }
                ReleaseStatus::Superseded => {
                    let newer = app.deploying.or(app.release).unwrap_or(version);
                    self.say(&format!(
                        "       v{version} was replaced by v{newer} before it came up"
                    ))
                    .await;
                    return true;
                }
                // A git push never holds its release; held or deploying, it is not up yet.
                ReleaseStatus::Deploying | ReleaseStatus::Held => {}
            }
            if tokio::time::Instant::now() >= deadline {
                self.say(&format!(
                    " !     v{version} is still deploying after {}s; see caas ps -a {}",
                    wait.as_secs(),
                    self.app
                ))
                .await;
                return true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}
