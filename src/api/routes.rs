//! The handlers: each checks the caller's rights through the catalog and answers JSON.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::body::Body as HttpBody;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use super::download;
use super::error::ErrorBody;
use super::{ApiError, Body, Caller, Path, Query, S, SESSION_COOKIE};
use crate::catalog::access::{Grant, Group, TokenInfo, User};
use crate::catalog::assets::{
    Asset, AssetInput, Collection, FileRec, RightsInput, RightsWindow, SearchQuery, TagCount, Total,
};
use crate::catalog::log::{AuditCheck, AuditEntry};
use crate::catalog::{Change, Perms, Principal, Role};
use crate::ingest::{self, Upload};

type Res<T> = Result<T, ApiError>;

/// A page of a list: `next` is the cursor of the following page (absent on the last).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Paging parameters of the simple lists.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    /// 1-500, default 100.
    pub limit: Option<i64>,
    /// The `next` of the previous page.
    pub after: Option<i64>,
}

impl Paging {
    fn limit(&self) -> i64 {
        self.limit.unwrap_or(100).clamp(1, 500)
    }
    fn after(&self) -> i64 {
        self.after.unwrap_or(0)
    }
}

fn page<T>(items: Vec<T>, limit: i64, key: impl Fn(&T) -> i64) -> Page<T> {
    let next = (items.len() as i64 >= limit)
        .then(|| items.last().map(|i| key(i).to_string()))
        .flatten();
    Page { items, next }
}

fn created<T: Serialize>(v: T) -> Response {
    (StatusCode::CREATED, axum::Json(v)).into_response()
}

fn require_role(who: &Principal, ok: &[Role]) -> Res<()> {
    if ok.contains(&who.role) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "role {} may not do this",
            who.role.as_str()
        )))
    }
}

/// The address of the client: the peer, or behind a trusted proxy (`server.trusted_proxies`)
/// the client it forwarded for.
pub struct PeerIp(pub std::net::IpAddr);

impl FromRequestParts<S> for PeerIp {
    type Rejection = Infallible;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &S,
    ) -> Result<Self, Self::Rejection> {
        let peer = super::peer(parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned());
        Ok(PeerIp(super::client::client_ip(
            peer,
            &parts.headers,
            &st.cfg.server.trusted_proxies,
        )))
    }
}

// ---- service ----

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
}

/// Liveness: public, answers while the process runs.
#[utoipa::path(get, path = "/health", tag = "service", security(()), responses((status = 200, body = Health)))]
pub async fn health() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Readiness: public; 200 when the catalog answers and the service is not starting or
/// stopping, else 503.
#[utoipa::path(get, path = "/ready", tag = "service", security(()), responses((status = 200), (status = 503, body = ErrorBody)))]
pub async fn ready(State(st): State<S>) -> Res<axum::Json<serde_json::Value>> {
    if !st.ready.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "starting or stopping",
        ));
    }
    st.catalog.ping().await.map_err(|e| {
        tracing::error!(error = %e, "ready: catalog");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the catalog database does not answer",
        )
    })?;
    Ok(axum::Json(serde_json::json!({"ready": true})))
}

/// Prometheus metrics: requests, latencies, catalog size.
#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics_text(State(st): State<S>, c: Caller) -> Res<Response> {
    require_role(&c.0, &[Role::Admin, Role::Operator, Role::Service])?;
    let n = st.catalog.asset_count().await?;
    metrics::gauge!("antenne_catalog_assets").set(n as f64);
    for state in crate::jobs::queue::STATES {
        metrics::gauge!("antenne_jobs", "state" => *state).set(0.0);
    }
    for (state, count) in st.queue.job_counts().await? {
        metrics::gauge!("antenne_jobs", "state" => state).set(count as f64);
    }
    if let Some(l) = st.live.get() {
        l.export_metrics();
    }
    let text = st.metrics.render();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

// ---- sessions ----

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    pub username: String,
    pub password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LoginOutput {
    /// Send as `Authorization: Bearer <token>`; also set as an HttpOnly cookie.
    pub token: String,
    pub expires: String,
    pub user: User,
}

/// Logs in: a session token (and cookie) for a user name and password.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", security(()), request_body = LoginInput,
    responses((status = 200, body = LoginOutput), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(st): State<S>,
    PeerIp(ip): PeerIp,
    Body(i): Body<LoginInput>,
) -> Res<Response> {
    if i.username.len() > 64 || i.password.len() > 1024 || i.username.chars().any(char::is_control)
    {
        return Err(ApiError::unauthorized());
    }
    st.login_attempt(&i.username, ip)?;
    let Some(user) = st.catalog.check_login(&i.username, &i.password).await? else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong user name or password",
        ));
    };
    st.login_succeeded(&i.username, ip);
    let ttl_ms = i64::from(st.cfg.auth.session_hours) * 3_600_000;
    let (token, info) = st
        .catalog
        .issue_token(user.id, "session", "login", ttl_ms)
        .await?;
    let cookie = format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        ttl_ms / 1000
    );
    let mut r = axum::Json(LoginOutput {
        token,
        expires: info.expires,
        user,
    })
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// Ends the session (or revokes the API token) the request came with.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", responses((status = 204)))]
pub async fn logout(State(st): State<S>, c: Caller) -> Res<Response> {
    st.catalog.revoke_token(&c.0, c.1).await?;
    st.forget_tokens();
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("antenne_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    Ok(r)
}

// ---- assets ----

/// A page of search results with the count of all of them.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SearchPage {
    pub items: Vec<Asset>,
    /// The `after` of the next page, absent on the last.
    pub next: Option<String>,
    /// All matches over every page: exact up to 500, then an estimate (`exact: false`).
    pub total: Total,
}

/// Lists and searches assets the caller may read (newest first unless `sort` says otherwise),
/// with the total count.
#[utoipa::path(get, path = "/v1/assets", tag = "assets", params(SearchQuery),
    responses((status = 200, body = SearchPage), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_assets(
    State(st): State<S>,
    c: Caller,
    Query(q): Query<SearchQuery>,
) -> Res<axum::Json<SearchPage>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let (items, total) = st.catalog.search_page(&c.0, &q).await?;
    let Page { items, next } = page(items, limit, |a| a.id);
    Ok(axum::Json(SearchPage { items, next, total }))
}

/// Full-text search with filters, sorting and the total count (the same as `GET /v1/assets`).
#[utoipa::path(get, path = "/v1/search", tag = "assets", params(SearchQuery),
    responses((status = 200, body = SearchPage), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn search(st: State<S>, c: Caller, q: Query<SearchQuery>) -> Res<axum::Json<SearchPage>> {
    list_assets(st, c, q).await
}

/// Creates an asset (metadata only; files come by ingest or upload).
#[utoipa::path(post, path = "/v1/assets", tag = "assets", request_body = AssetInput,
    responses((status = 201, body = Asset), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_asset(
    State(st): State<S>,
    c: Caller,
    Body(i): Body<AssetInput>,
) -> Res<Response> {
    if i.version.is_some() {
        return Err(ApiError::bad(
            "invalid_body",
            "version is given on PATCH only",
        ));
    }
    Ok(created(st.catalog.create_asset(&c.0, &i).await?))
}

#[utoipa::path(get, path = "/v1/assets/{id}", tag = "assets", params(("id" = i64, Path)),
    responses((status = 200, body = Asset), (status = 404, body = ErrorBody)))]
pub async fn get_asset(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<Asset>> {
    Ok(axum::Json(st.catalog.asset(&c.0, id).await?))
}

/// Changes descriptive metadata, tags, status; give `version` to refuse a lost update.
#[utoipa::path(patch, path = "/v1/assets/{id}", tag = "assets", params(("id" = i64, Path)), request_body = AssetInput,
    responses((status = 200, body = Asset), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn patch_asset(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Body(i): Body<AssetInput>,
) -> Res<axum::Json<Asset>> {
    Ok(axum::Json(st.catalog.update_asset(&c.0, id, &i).await?))
}

/// Purges an asset: the record stays as `purged`; media the appliance stored is removed.
#[utoipa::path(delete, path = "/v1/assets/{id}", tag = "assets", params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_asset(State(st): State<S>, c: Caller, Path(id): Path<i64>) -> Res<StatusCode> {
    let paths = st.catalog.purge_asset(&c.0, id).await?;
    crate::storage::remove_stored(&st.media_dir, paths).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/assets/{id}/files", tag = "files", params(("id" = i64, Path)),
    responses((status = 200, body = Page<FileRec>), (status = 404, body = ErrorBody)))]
pub async fn list_files(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<Page<FileRec>>> {
    let items = st.catalog.files(&c.0, id).await?;
    Ok(axum::Json(Page { items, next: None }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterInput {
    /// An absolute path under one of the configured ingest roots.
    pub path: String,
    /// `source` (default), `house`, `proxy`, `platform`, `sidecar`.
    pub role: Option<String>,
    #[serde(default)]
    pub allow_duplicate: bool,
}

/// Probes and hashes a file; `shown` is the client's own name for it, the only one an error
/// answer gives.
pub(super) async fn describe(
    path: std::path::PathBuf,
    role: String,
    known: Option<(String, u64)>,
    shown: &str,
) -> Res<crate::catalog::assets::NewFile> {
    tokio::task::spawn_blocking(move || ingest::describe(&path, &role, known))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| ApiError::from_ingest(e, shown))
}

/// The last component of a path a client gave.
fn base_name(given: &str) -> &str {
    given.rsplit('/').find(|s| !s.is_empty()).unwrap_or(given)
}

/// Registers a file already on disk (under a configured root) to an asset.
#[utoipa::path(post, path = "/v1/assets/{id}/files", tag = "files", params(("id" = i64, Path)), request_body = RegisterInput,
    responses((status = 201, body = FileRec), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn register_file(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Body(i): Body<RegisterInput>,
) -> Res<Response> {
    st.catalog.require(&c.0, id, Perms::WRITE).await?;
    let path = ingest::confine(&i.path, &st.cfg.ingest.roots)?;
    let f = describe(
        path,
        i.role.unwrap_or_else(|| "source".into()),
        None,
        base_name(&i.path),
    )
    .await?;
    Ok(created(
        st.catalog.add_file(&c.0, id, &f, i.allow_duplicate).await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The original file name (stored sanitised).
    pub filename: String,
    pub role: Option<String>,
    pub title: Option<String>,
    pub kind: Option<String>,
    #[serde(default)]
    pub allow_duplicate: bool,
}

/// Streams a request body to storage: refused before reading when the declared length is over
/// the cap, stopped (and removed) when the stream passes it.
async fn receive(st: &S, who: &Principal, req: Request, q: &UploadQuery) -> Res<ingest::Stored> {
    let cap = st.cfg.ingest.max_upload.0;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared {
        if n > cap {
            return Err(ingest::IngestError::TooLarge { limit: cap }.into());
        }
    }
    super::storage::room_for_ingest(st, declared.unwrap_or(0)).await?;
    if q.filename.is_empty() || q.filename.len() > 1000 || q.filename.contains('\0') {
        return Err(ApiError {
            field: Some("filename".into()),
            ..ApiError::bad("invalid_query", "filename: 1-1000 bytes, no NUL")
        });
    }
    let _permit = st.uploads.try_acquire().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "too many uploads at once; retry shortly",
        )
    })?;
    let mut up = Upload::start(&st.media_dir, cap).await?;
    let mut stream = req.into_body().into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad("invalid_body", format!("upload interrupted: {e}")))?;
        up.write(&chunk).await?;
    }
    if !q.allow_duplicate {
        if let Some((asset_id, file_id)) = st.catalog.find_by_hash(&up.hash_so_far()).await? {
            return Err(st.catalog.duplicate(who, asset_id, file_id).await.into());
        }
    }
    Ok(up
        .finish(&st.media_dir, &q.filename, st.catalog.now_ms())
        .await?)
}

/// Uploads a file to an asset: the raw body is the file.
#[utoipa::path(post, path = "/v1/assets/{id}/upload", tag = "files", params(("id" = i64, Path), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = FileRec), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn upload_file(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Query(q): Query<UploadQuery>,
    req: Request,
) -> Res<Response> {
    if q.title.is_some() || q.kind.is_some() {
        return Err(ApiError::bad(
            "invalid_query",
            "title and kind belong to /v1/ingest/upload",
        ));
    }
    st.catalog.require(&c.0, id, Perms::WRITE).await?;
    let stored = receive(&st, &c.0, req, &q).await?;
    let f = describe(
        stored.path.clone(),
        q.role.clone().unwrap_or_else(|| "source".into()),
        Some((stored.hash.clone(), stored.size)),
        &q.filename,
    )
    .await?;
    let rec = st.catalog.add_file(&c.0, id, &f, q.allow_duplicate).await?;
    stored.keep();
    Ok(created(rec))
}

#[utoipa::path(get, path = "/v1/files/{id}", tag = "files", params(("id" = i64, Path)),
    responses((status = 200, body = FileRec), (status = 404, body = ErrorBody)))]
pub async fn get_file(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<FileRec>> {
    Ok(axum::Json(st.catalog.file(&c.0, id).await?.0))
}

/// Downloads a file (the download right on its asset). Serves one byte range (`Range:
/// bytes=…`, answered 206 with `Content-Range`; several ranges or one past the end are 416),
/// a strong `ETag` (the file's SHA-256) for `If-None-Match` (304) and `If-Range`, and the file
/// name in `Content-Disposition` (`filename*` in UTF-8).
#[utoipa::path(get, path = "/v1/files/{id}/content", tag = "files", params(("id" = i64, Path),
        ("Range" = Option<String>, Header, description = "one range: `bytes=0-1023`, `bytes=1024-` or `bytes=-500`"),
        ("If-None-Match" = Option<String>, Header, description = "ETags; a match answers 304"),
        ("If-Range" = Option<String>, Header, description = "the ETag the range is meant for; another serves the whole file")),
    responses((status = 200, content_type = "application/octet-stream"),
        (status = 206, content_type = "application/octet-stream", description = "the requested range"),
        (status = 304, description = "not modified (If-None-Match)"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 410, body = ErrorBody, description = "recorded but no longer readable"),
        (status = 416, body = ErrorBody, description = "a range past the end, several ranges, or a malformed range")))]
pub async fn file_content(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Res<Response> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let (f, perms) = st.catalog.file(&c.0, id).await?;
    if !perms.has(Perms::DOWNLOAD) {
        return Err(ApiError::forbidden(format!(
            "no download right on asset {}",
            f.asset_id
        )));
    }
    // Not through a symbolic link put in its place after it was recorded.
    let mut file = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&f.path)
        .await
        .map_err(|e| {
            tracing::warn!(file = id, path = %f.path, error = %e, "download: cannot open");
            ApiError::new(
                StatusCode::GONE,
                "gone",
                format!("file {id} is recorded but cannot be read: {}", e.kind()),
            )
        })?;
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let etag = format!("\"{}\"", f.sha256);
    let name = download::file_name(&f.path, &f.sha256, &st.media_dir);
    let mut common = HeaderMap::new();
    common.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        common.insert(header::ETAG, v);
    }
    let text = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    if let Some(inm) = text(header::IF_NONE_MATCH) {
        if download::etag_matches(inm, &etag) {
            let mut r = StatusCode::NOT_MODIFIED.into_response();
            r.headers_mut().extend(common);
            return Ok(r);
        }
    }
    // A range for another version of the file (If-Range) gets the whole file.
    let range_applies = text(header::IF_RANGE).is_none_or(|v| v.trim() == etag);
    let range = match text(header::RANGE) {
        Some(r) if range_applies => download::parse_range(r, len).map_err(|why| {
            let mut e = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                why,
            );
            e.content_range_len = Some(len);
            e
        })?,
        _ => None,
    };
    let (status, start, count) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        None => (StatusCode::OK, 0, len),
    };
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| {
                tracing::warn!(file = id, error = %e, "download: seek");
                ApiError::internal()
            })?;
    }
    let body = HttpBody::from_stream(tokio_util::io::ReaderStream::with_capacity(
        file.take(count),
        1 << 20,
    ));
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.extend(common);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(download::content_type(&name)),
    );
    if let Ok(v) = HeaderValue::from_str(&count.to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", start + count - 1))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&download::content_disposition(&name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestInput {
    /// An absolute path under one of the configured ingest roots.
    pub path: String,
    /// Metadata of the new asset; the title defaults to the file name.
    #[serde(default)]
    pub asset: AssetInput,
    #[serde(default)]
    pub allow_duplicate: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IngestOutput {
    pub asset: Asset,
    pub file: FileRec,
}

pub(super) fn default_title(i: &mut AssetInput, name: &str) {
    if i.title.as_deref().is_none_or(|t| t.trim().is_empty()) {
        let p = std::path::Path::new(name);
        i.title = Some(
            p.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("untitled")
                .to_string(),
        );
    }
}

/// Ingests a file already on disk: probes, hashes, refuses duplicates, makes a new asset.
#[utoipa::path(post, path = "/v1/ingest", tag = "ingest", request_body = IngestInput,
    responses((status = 201, body = IngestOutput), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn ingest_path(
    State(st): State<S>,
    c: Caller,
    Body(mut i): Body<IngestInput>,
) -> Res<Response> {
    if !c.0.role.may_create_assets() {
        return Err(ApiError::forbidden("this role may not ingest"));
    }
    let path = ingest::confine(&i.path, &st.cfg.ingest.roots)?;
    default_title(&mut i.asset, &i.path);
    let f = describe(path, "source".into(), None, base_name(&i.path)).await?;
    let (asset, file) = st
        .catalog
        .ingest(&c.0, &i.asset, &f, i.allow_duplicate)
        .await?;
    Ok(created(IngestOutput { asset, file }))
}

/// Ingests an upload: the raw body is the file; a new asset is made for it.
#[utoipa::path(post, path = "/v1/ingest/upload", tag = "ingest", params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = IngestOutput), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn ingest_upload(
    State(st): State<S>,
    c: Caller,
    Query(q): Query<UploadQuery>,
    req: Request,
) -> Res<Response> {
    if !c.0.role.may_create_assets() {
        return Err(ApiError::forbidden("this role may not ingest"));
    }
    let mut input = AssetInput {
        title: q.title.clone(),
        kind: q.kind.clone(),
        ..Default::default()
    };
    default_title(&mut input, &ingest::safe_name(&q.filename));
    let stored = receive(&st, &c.0, req, &q).await?;
    let f = describe(
        stored.path.clone(),
        q.role.clone().unwrap_or_else(|| "source".into()),
        Some((stored.hash.clone(), stored.size)),
        &q.filename,
    )
    .await?;
    let (asset, file) = st
        .catalog
        .ingest(&c.0, &input, &f, q.allow_duplicate)
        .await?;
    stored.keep();
    Ok(created(IngestOutput { asset, file }))
}

// ---- access lists, rights windows, tags ----

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Acl {
    pub grants: Vec<Grant>,
}

#[utoipa::path(get, path = "/v1/assets/{id}/acl", tag = "access", params(("id" = i64, Path)),
    responses((status = 200, body = Acl), (status = 404, body = ErrorBody)))]
pub async fn get_asset_acl(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<Acl>> {
    st.catalog.require(&c.0, id, Perms::READ).await?;
    Ok(axum::Json(Acl {
        grants: st.catalog.acl("asset", id).await?,
    }))
}

/// Replaces the access list (the owner or an admin).
#[utoipa::path(put, path = "/v1/assets/{id}/acl", tag = "access", params(("id" = i64, Path)), request_body = Acl,
    responses((status = 200, body = Acl), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_asset_acl(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Body(a): Body<Acl>,
) -> Res<axum::Json<Acl>> {
    st.catalog.require_owner(&c.0, "asset", id).await?;
    Ok(axum::Json(Acl {
        grants: st.catalog.set_acl("asset", id, &a.grants).await?,
    }))
}

#[utoipa::path(get, path = "/v1/assets/{id}/rights", tag = "assets", params(("id" = i64, Path)),
    responses((status = 200, body = Page<RightsWindow>), (status = 404, body = ErrorBody)))]
pub async fn list_rights(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<Page<RightsWindow>>> {
    st.catalog.require(&c.0, id, Perms::READ).await?;
    Ok(axum::Json(Page {
        items: st.catalog.rights_windows(id).await?,
        next: None,
    }))
}

/// Adds a rights window (licensed from/until, territories, platforms).
#[utoipa::path(post, path = "/v1/assets/{id}/rights", tag = "assets", params(("id" = i64, Path)), request_body = RightsInput,
    responses((status = 201, body = RightsWindow), (status = 422, body = ErrorBody)))]
pub async fn add_rights(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Body(w): Body<RightsInput>,
) -> Res<Response> {
    Ok(created(st.catalog.add_rights_window(&c.0, id, &w).await?))
}

#[utoipa::path(delete, path = "/v1/assets/{id}/rights/{rid}", tag = "assets", params(("id" = i64, Path), ("rid" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_rights(
    State(st): State<S>,
    c: Caller,
    Path((id, rid)): Path<(i64, i64)>,
) -> Res<StatusCode> {
    st.catalog.delete_rights_window(&c.0, id, rid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Tags in use on the assets the caller may read, most used first.
#[utoipa::path(get, path = "/v1/tags", tag = "assets", params(Paging),
    responses((status = 200, body = Page<TagCount>)))]
pub async fn list_tags(
    State(st): State<S>,
    c: Caller,
    Query(p): Query<Paging>,
) -> Res<axum::Json<Page<TagCount>>> {
    if p.after.is_some() {
        return Err(ApiError::bad(
            "invalid_query",
            "tags come in one page: give limit only",
        ));
    }
    Ok(axum::Json(Page {
        items: st.catalog.tags(&c.0, p.limit()).await?,
        next: None,
    }))
}

// ---- collections ----

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionInput {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[utoipa::path(get, path = "/v1/collections", tag = "collections", params(Paging),
    responses((status = 200, body = Page<Collection>)))]
pub async fn list_collections(
    State(st): State<S>,
    c: Caller,
    Query(p): Query<Paging>,
) -> Res<axum::Json<Page<Collection>>> {
    let items = st.catalog.collections(&c.0, p.after(), p.limit()).await?;
    Ok(axum::Json(page(items, p.limit(), |c| c.id)))
}

#[utoipa::path(post, path = "/v1/collections", tag = "collections", request_body = CollectionInput,
    responses((status = 201, body = Collection), (status = 409, body = ErrorBody)))]
pub async fn create_collection(
    State(st): State<S>,
    c: Caller,
    Body(i): Body<CollectionInput>,
) -> Res<Response> {
    Ok(created(
        st.catalog
            .create_collection(&c.0, &i.name, &i.description)
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/collections/{id}", tag = "collections", params(("id" = i64, Path)),
    responses((status = 200, body = Collection), (status = 404, body = ErrorBody)))]
pub async fn get_collection(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<Collection>> {
    Ok(axum::Json(st.catalog.collection(&c.0, id).await?))
}

#[utoipa::path(delete, path = "/v1/collections/{id}", tag = "collections", params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_collection(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<StatusCode> {
    st.catalog.delete_collection(&c.0, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/v1/collections/{id}/assets/{asset_id}", tag = "collections",
    params(("id" = i64, Path), ("asset_id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn add_to_collection(
    State(st): State<S>,
    c: Caller,
    Path((id, asset)): Path<(i64, i64)>,
) -> Res<StatusCode> {
    st.catalog.set_in_collection(&c.0, id, asset, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/collections/{id}/assets/{asset_id}", tag = "collections",
    params(("id" = i64, Path), ("asset_id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove_from_collection(
    State(st): State<S>,
    c: Caller,
    Path((id, asset)): Path<(i64, i64)>,
) -> Res<StatusCode> {
    st.catalog.set_in_collection(&c.0, id, asset, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/collections/{id}/acl", tag = "access", params(("id" = i64, Path)),
    responses((status = 200, body = Acl), (status = 404, body = ErrorBody)))]
pub async fn get_collection_acl(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<Acl>> {
    st.catalog.collection(&c.0, id).await?;
    Ok(axum::Json(Acl {
        grants: st.catalog.acl("collection", id).await?,
    }))
}

#[utoipa::path(put, path = "/v1/collections/{id}/acl", tag = "access", params(("id" = i64, Path)), request_body = Acl,
    responses((status = 200, body = Acl), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_collection_acl(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Body(a): Body<Acl>,
) -> Res<axum::Json<Acl>> {
    st.catalog.require_owner(&c.0, "collection", id).await?;
    Ok(axum::Json(Acl {
        grants: st.catalog.set_acl("collection", id, &a.grants).await?,
    }))
}

// ---- users, groups, tokens ----

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserInput {
    pub username: String,
    #[serde(default)]
    pub display_name: String,
    pub role: Role,
    pub password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub display_name: Option<String>,
    /// Admin only.
    pub role: Option<Role>,
    /// Admin only.
    pub disabled: Option<bool>,
    /// Admin only (users change their own with /v1/users/me/password).
    pub password: Option<String>,
}

#[utoipa::path(get, path = "/v1/users", tag = "users", params(Paging), responses((status = 200, body = Page<User>), (status = 403, body = ErrorBody)))]
pub async fn list_users(
    State(st): State<S>,
    c: Caller,
    Query(p): Query<Paging>,
) -> Res<axum::Json<Page<User>>> {
    require_role(&c.0, &[Role::Admin])?;
    let items = st.catalog.users(p.after(), p.limit()).await?;
    Ok(axum::Json(page(items, p.limit(), |u| u.id)))
}

#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = UserInput,
    responses((status = 201, body = User), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_user(
    State(st): State<S>,
    c: Caller,
    Body(i): Body<UserInput>,
) -> Res<Response> {
    require_role(&c.0, &[Role::Admin])?;
    Ok(created(
        st.catalog
            .create_user(&i.username, &i.display_name, i.role, &i.password)
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/users/me", tag = "users", responses((status = 200, body = User)))]
pub async fn me(State(st): State<S>, c: Caller) -> Res<axum::Json<User>> {
    Ok(axum::Json(st.catalog.user(c.0.user_id).await?))
}

#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub async fn get_user(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<User>> {
    if !c.0.is_admin() && c.0.user_id != id {
        return Err(ApiError::not_found(format!("user {id} not found")));
    }
    Ok(axum::Json(st.catalog.user(id).await?))
}

/// Changes a user: an admin any field; a user their own display name.
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "users", params(("id" = i64, Path)), request_body = UserPatch,
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn patch_user(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Body(p): Body<UserPatch>,
) -> Res<axum::Json<User>> {
    if !c.0.is_admin() {
        if c.0.user_id != id {
            return Err(ApiError::not_found(format!("user {id} not found")));
        }
        for (set, f) in [
            (p.role.is_some(), "role"),
            (p.disabled.is_some(), "disabled"),
            (p.password.is_some(), "password"),
        ] {
            if set {
                return Err(crate::catalog::CatalogError::FieldForbidden(f).into());
            }
        }
    }
    let u = st
        .catalog
        .update_user(
            id,
            p.display_name.as_deref(),
            p.role,
            p.disabled,
            p.password.as_deref(),
        )
        .await?;
    st.forget_tokens();
    Ok(axum::Json(u))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordInput {
    pub current: String,
    pub new: String,
}

/// Changes one's own password (the current one is required); other sessions end.
#[utoipa::path(post, path = "/v1/users/me/password", tag = "users", request_body = PasswordInput,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn change_password(
    State(st): State<S>,
    c: Caller,
    PeerIp(ip): PeerIp,
    Body(p): Body<PasswordInput>,
) -> Res<StatusCode> {
    st.login_attempt(&c.0.username, ip)?;
    if st
        .catalog
        .check_login(&c.0.username, &p.current)
        .await?
        .is_none()
    {
        return Err(ApiError::forbidden("the current password is wrong"));
    }
    st.catalog
        .update_user(c.0.user_id, None, None, None, Some(&p.new))
        .await?;
    st.forget_tokens();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupInput {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[utoipa::path(get, path = "/v1/groups", tag = "users", params(Paging), responses((status = 200, body = Page<Group>)))]
pub async fn list_groups(
    State(st): State<S>,
    c: Caller,
    Query(p): Query<Paging>,
) -> Res<axum::Json<Page<Group>>> {
    let mut items = st.catalog.groups(p.after(), p.limit()).await?;
    if !c.0.is_admin() {
        // Who belongs to which group is for admins.
        for g in &mut items {
            g.members.clear();
        }
    }
    Ok(axum::Json(page(items, p.limit(), |g| g.id)))
}

#[utoipa::path(post, path = "/v1/groups", tag = "users", request_body = GroupInput,
    responses((status = 201, body = Group), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_group(
    State(st): State<S>,
    c: Caller,
    Body(i): Body<GroupInput>,
) -> Res<Response> {
    require_role(&c.0, &[Role::Admin])?;
    Ok(created(
        st.catalog.create_group(&i.name, &i.description).await?,
    ))
}

#[utoipa::path(get, path = "/v1/groups/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 200, body = Group), (status = 404, body = ErrorBody)))]
pub async fn get_group(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<Group>> {
    let mut g = st.catalog.group(id).await?;
    if !c.0.is_admin() {
        g.members.clear();
    }
    Ok(axum::Json(g))
}

#[utoipa::path(delete, path = "/v1/groups/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_group(State(st): State<S>, c: Caller, Path(id): Path<i64>) -> Res<StatusCode> {
    require_role(&c.0, &[Role::Admin])?;
    st.catalog.delete_group(id).await?;
    st.forget_tokens();
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/v1/groups/{id}/members/{user_id}", tag = "users", params(("id" = i64, Path), ("user_id" = i64, Path)),
    responses((status = 200, body = Group), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add_member(
    State(st): State<S>,
    c: Caller,
    Path((id, user)): Path<(i64, i64)>,
) -> Res<axum::Json<Group>> {
    require_role(&c.0, &[Role::Admin])?;
    let g = st.catalog.set_member(id, user, true).await?;
    st.forget_tokens();
    Ok(axum::Json(g))
}

#[utoipa::path(delete, path = "/v1/groups/{id}/members/{user_id}", tag = "users", params(("id" = i64, Path), ("user_id" = i64, Path)),
    responses((status = 200, body = Group), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_member(
    State(st): State<S>,
    c: Caller,
    Path((id, user)): Path<(i64, i64)>,
) -> Res<axum::Json<Group>> {
    require_role(&c.0, &[Role::Admin])?;
    let g = st.catalog.set_member(id, user, false).await?;
    st.forget_tokens();
    Ok(axum::Json(g))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TokenQuery {
    /// Admin: another user's tokens.
    pub user_id: Option<i64>,
    pub limit: Option<i64>,
    pub after: Option<i64>,
}

#[utoipa::path(get, path = "/v1/tokens", tag = "auth", params(TokenQuery), responses((status = 200, body = Page<TokenInfo>)))]
pub async fn list_tokens(
    State(st): State<S>,
    c: Caller,
    Query(q): Query<TokenQuery>,
) -> Res<axum::Json<Page<TokenInfo>>> {
    let user = match q.user_id {
        Some(u) if c.0.is_admin() => Some(u),
        Some(u) if u != c.0.user_id => {
            return Err(ApiError::forbidden(
                "only an admin lists another user's tokens",
            ))
        }
        _ => Some(c.0.user_id),
    };
    let p = Paging {
        limit: q.limit,
        after: q.after,
    };
    let items = st.catalog.tokens(user, p.after(), p.limit()).await?;
    Ok(axum::Json(page(items, p.limit(), |t| t.id)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    pub name: String,
    /// Lifetime in days (at most `auth.token_max_days`).
    pub days: u32,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenOutput {
    /// The secret: shown this once, stored only as a hash.
    pub token: String,
    pub info: TokenInfo,
}

/// Issues an API token for the caller (for integrations: a user with the service role).
#[utoipa::path(post, path = "/v1/tokens", tag = "auth", request_body = TokenInput,
    responses((status = 201, body = TokenOutput), (status = 422, body = ErrorBody)))]
pub async fn create_token(
    State(st): State<S>,
    c: Caller,
    Body(i): Body<TokenInput>,
) -> Res<Response> {
    let max = st.cfg.auth.token_max_days;
    if i.days == 0 || i.days > max {
        return Err(crate::catalog::CatalogError::invalid("days", format!("1 to {max}")).into());
    }
    let (token, info) = st
        .catalog
        .issue_token(c.0.user_id, "api", &i.name, i64::from(i.days) * 86_400_000)
        .await?;
    Ok(created(TokenOutput { token, info }))
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "auth", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(State(st): State<S>, c: Caller, Path(id): Path<i64>) -> Res<StatusCode> {
    st.catalog.revoke_token(&c.0, id).await?;
    st.forget_tokens();
    Ok(StatusCode::NO_CONTENT)
}

// ---- audit, changes, events ----

#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(Paging),
    responses((status = 200, body = Page<AuditEntry>), (status = 403, body = ErrorBody)))]
pub async fn list_audit(
    State(st): State<S>,
    c: Caller,
    Query(p): Query<Paging>,
) -> Res<axum::Json<Page<AuditEntry>>> {
    require_role(&c.0, &[Role::Admin])?;
    let items = st.catalog.audit_entries(p.after(), p.limit()).await?;
    Ok(axum::Json(page(items, p.limit(), |e| e.seq)))
}

/// Recomputes the hash chain of the audit log.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", responses((status = 200, body = AuditCheck)))]
pub async fn verify_audit(State(st): State<S>, c: Caller) -> Res<axum::Json<AuditCheck>> {
    require_role(&c.0, &[Role::Admin])?;
    Ok(axum::Json(st.catalog.audit_verify().await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ChangesQuery {
    /// The `next` of the previous answer; 0 (default) from the beginning.
    pub since: Option<i64>,
    /// 1-1000, default 500.
    pub limit: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ChangesPage {
    pub changes: Vec<Change>,
    /// Give it as `since` next time; equal to `since` when nothing was new.
    pub next: i64,
}

/// The change feed: every change after a cursor, in commit order, none missed or repeated.
#[utoipa::path(get, path = "/v1/changes", tag = "sync", params(ChangesQuery),
    responses((status = 200, body = ChangesPage), (status = 403, body = ErrorBody)))]
pub async fn changes(
    State(st): State<S>,
    c: Caller,
    Query(q): Query<ChangesQuery>,
) -> Res<axum::Json<ChangesPage>> {
    if !c.0.role.sees_everything() {
        return Err(ApiError::forbidden(
            "the change feed is for admin, operator and service roles",
        ));
    }
    let since = q.since.unwrap_or(0);
    if since < 0 {
        return Err(ApiError::bad("invalid_query", "since must not be negative"));
    }
    let changes = st
        .catalog
        .changes(since, q.limit.unwrap_or(500).clamp(1, 1000))
        .await?;
    let next = changes.last().map_or(since, |c| c.seq);
    Ok(axum::Json(ChangesPage { changes, next }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Replay changes after this cursor first (as `Last-Event-ID` does).
    pub since: Option<i64>,
}

struct EventState {
    st: S,
    who: Principal,
    token_id: i64,
    rx: tokio::sync::broadcast::Receiver<Change>,
    backlog: VecDeque<Change>,
    last: i64,
    checked: std::time::Instant,
}

async fn visible(st: &S, who: &Principal, c: &Change) -> bool {
    if who.role.sees_everything() {
        return true;
    }
    match c.asset_id {
        Some(a) => st
            .catalog
            .asset_perms(who, a)
            .await
            .ok()
            .flatten()
            .is_some(),
        None => c.object == "user" && c.id == who.user_id,
    }
}

/// Server-sent events: each catalog change as it commits (`id` is the change-feed cursor; on
/// reconnect, `Last-Event-ID` replays what was missed). A `resync` event asks the client to read
/// `/v1/changes` from the cursor it carries.
#[utoipa::path(get, path = "/v1/events", tag = "sync", params(EventsQuery),
    responses((status = 200, content_type = "text/event-stream")))]
pub async fn events(
    State(st): State<S>,
    c: Caller,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Res<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let rx = st.catalog.subscribe();
    let from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .or(q.since);
    let last = match from {
        Some(f) => f.max(0),
        None => st.catalog.change_head().await?,
    };
    let state = EventState {
        st: st.clone(),
        who: c.0,
        token_id: c.1,
        rx,
        backlog: VecDeque::new(),
        last,
        checked: std::time::Instant::now(),
    };
    // The database is the source: the in-process broadcast only wakes the stream, and a poll
    // every second brings what other appliances sharing the catalog committed. So events come
    // in commit order, none is skipped, and a replay of any length is served in pages.
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(c) = s.backlog.pop_front() {
                s.last = c.seq;
                if visible(&s.st, &s.who, &c).await {
                    let ev = Event::default()
                        .id(c.seq.to_string())
                        .event("change")
                        .json_data(&c)
                        .unwrap_or_else(|_| Event::default().comment("unencodable"));
                    return Some((Ok(ev), s));
                }
                continue;
            }
            if s.checked.elapsed() >= std::time::Duration::from_secs(5) {
                // Idle: a revoked token, a disabled or demoted user ends the stream all the same.
                s.checked = std::time::Instant::now();
                if !s.st.catalog.token_valid(s.token_id).await.unwrap_or(false) {
                    return None;
                }
            }
            match s.st.catalog.changes(s.last, 500).await {
                Ok(batch) if !batch.is_empty() => {
                    // Before any of these is written, the caller is looked up again, after the
                    // batch was read: a revoked token, a disabled user or a demotion committed
                    // before one of them ends the stream here, and the present role and groups
                    // decide what is visible (an access list is read per change). Each appliance
                    // sharing the catalog reads the same rows, so this holds across them.
                    match s.st.catalog.token_principal(s.token_id).await {
                        Ok(Some(who)) => s.who = who,
                        Ok(None) => return None,
                        Err(e) => {
                            tracing::warn!(error = %e, "events: checking the caller");
                            return None;
                        }
                    }
                    s.checked = std::time::Instant::now();
                    s.backlog.extend(batch);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "events: reading the change feed");
                }
            }
            tokio::select! {
                r = s.rx.recv() => {
                    if matches!(r, Err(RecvError::Closed)) {
                        return None;
                    }
                }
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                _ = s.st.stopping.cancelled() => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

// ---- jobs and workflows ----

fn jobs_role(who: &Principal) -> Res<()> {
    require_role(who, &[Role::Admin, Role::Operator, Role::Service])
}

/// Jobs, newest first, filtered by state, kind, asset or workflow.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(crate::jobs::JobFilter),
    responses((status = 200, body = Page<crate::jobs::Job>), (status = 403, body = ErrorBody)))]
pub async fn list_jobs(
    State(st): State<S>,
    c: Caller,
    Query(f): Query<crate::jobs::JobFilter>,
) -> Res<axum::Json<Page<crate::jobs::Job>>> {
    jobs_role(&c.0)?;
    let limit = f.limit.unwrap_or(100).clamp(1, 500);
    let items = st.queue.jobs(&f).await?;
    Ok(axum::Json(page(items, limit, |j| j.id)))
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = i64, Path)),
    responses((status = 200, body = crate::jobs::Job), (status = 404, body = ErrorBody)))]
pub async fn get_job(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<crate::jobs::Job>> {
    jobs_role(&c.0)?;
    Ok(axum::Json(st.queue.job(id).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JobLogLine {
    pub id: i64,
    pub at: String,
    pub level: String,
    pub message: String,
}

#[utoipa::path(get, path = "/v1/jobs/{id}/logs", tag = "jobs", params(("id" = i64, Path), Paging),
    responses((status = 200, body = Page<JobLogLine>), (status = 404, body = ErrorBody)))]
pub async fn job_logs(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Query(p): Query<Paging>,
) -> Res<axum::Json<Page<JobLogLine>>> {
    jobs_role(&c.0)?;
    st.queue.job(id).await?;
    let items = st
        .queue
        .job_logs(id, p.after(), p.limit())
        .await?
        .into_iter()
        .map(|(id, at, level, message)| JobLogLine {
            id,
            at,
            level,
            message,
        })
        .collect();
    Ok(axum::Json(page(items, p.limit(), |l| l.id)))
}

/// Cancels a queued or running job (a running worker is stopped).
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = i64, Path)),
    responses((status = 200, body = crate::jobs::Job), (status = 409, body = ErrorBody)))]
pub async fn cancel_job(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<crate::jobs::Job>> {
    require_role(&c.0, &[Role::Admin, Role::Operator])?;
    Ok(axum::Json(st.queue.cancel_job(id).await?))
}

/// The machine's slots as the scheduler sees them: CPU encode slots in use, and per GPU its
/// encoder sessions, what it encodes, its failures, and whether it is in rotation (and why not).
#[utoipa::path(get, path = "/v1/slots", tag = "jobs",
    responses((status = 200, body = crate::jobs::devices::SlotsView), (status = 404, body = ErrorBody)))]
pub async fn list_slots(
    State(st): State<S>,
    c: Caller,
) -> Res<axum::Json<crate::jobs::devices::SlotsView>> {
    require_role(&c.0, &[Role::Admin, Role::Operator, Role::Service])?;
    let s = st
        .jobs
        .get()
        .ok_or_else(|| ApiError::not_found("no job runner"))?;
    Ok(axum::Json(s.slots()))
}

/// Puts a GPU taken out of rotation (after repeated failures) back, e.g. after a driver fix.
#[utoipa::path(post, path = "/v1/slots/gpus/{id}/restore", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = crate::jobs::devices::SlotsView), (status = 404, body = ErrorBody)))]
pub async fn restore_gpu(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<String>,
) -> Res<axum::Json<crate::jobs::devices::SlotsView>> {
    require_role(&c.0, &[Role::Admin, Role::Operator])?;
    let s = st
        .jobs
        .get()
        .ok_or_else(|| ApiError::not_found("no job runner"))?;
    if !s.restore_gpu(&id) {
        return Err(ApiError::not_found(format!(
            "no GPU {id:?} on this appliance"
        )));
    }
    Ok(axum::Json(s.slots()))
}

/// Queues a failed or cancelled job again.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs", params(("id" = i64, Path)),
    responses((status = 200, body = crate::jobs::Job), (status = 409, body = ErrorBody)))]
pub async fn retry_job(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<crate::jobs::Job>> {
    require_role(&c.0, &[Role::Admin, Role::Operator])?;
    let j = st.queue.retry_job(id).await?;
    if let Some(s) = st.jobs.get() {
        s.wake.notify_one();
    }
    Ok(axum::Json(j))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoopInput {
    /// How long the worker sleeps (0: no worker process, the scheduler's own cost).
    #[serde(default)]
    pub sleep_ms: u64,
    /// Supervisor self-test: the worker aborts, hangs, or allocates this many MiB. Refused
    /// unless `jobs.self_test` is on.
    #[serde(default)]
    pub crash: bool,
    #[serde(default)]
    pub hang: bool,
    #[serde(default)]
    pub alloc_mb: u64,
    #[serde(default = "one")]
    pub max_attempts: i64,
    #[serde(default)]
    pub priority: i64,
}

/// Queues an empty job (to measure the scheduler, or check that workers run).
#[utoipa::path(post, path = "/v1/jobs/noop", tag = "jobs", request_body = NoopInput,
    responses((status = 201, body = crate::jobs::Job)))]
pub async fn noop_job(State(st): State<S>, c: Caller, Body(i): Body<NoopInput>) -> Res<Response> {
    require_role(&c.0, &[Role::Admin, Role::Operator])?;
    if (i.crash || i.hang || i.alloc_mb > 0) && !st.cfg.jobs.self_test {
        return Err(ApiError::forbidden(
            "crash, hang and alloc_mb are for testing the supervisor: turn on jobs.self_test",
        ));
    }
    let mut params = serde_json::json!({});
    if i.sleep_ms > 0 {
        params["sleep_ms"] = i.sleep_ms.min(600_000).into();
    }
    if i.crash {
        params["crash"] = true.into();
    }
    if i.hang {
        params["hang"] = true.into();
    }
    if i.alloc_mb > 0 {
        params["alloc_mb"] = i.alloc_mb.min(1 << 16).into();
    }
    let j = st
        .queue
        .enqueue(&crate::jobs::NewJob {
            kind: "noop".into(),
            priority: i.priority,
            max_attempts: i.max_attempts.clamp(1, 10),
            params,
            ..Default::default()
        })
        .await?
        .ok_or_else(ApiError::internal)?;
    if let Some(s) = st.jobs.get() {
        s.wake.notify_one();
    }
    Ok(created(j))
}

fn one() -> i64 {
    1
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkflowInfo {
    pub name: String,
    pub description: String,
    pub watch: Option<String>,
    pub steps: Vec<String>,
}

#[utoipa::path(get, path = "/v1/workflows", tag = "jobs", responses((status = 200, body = Page<WorkflowInfo>)))]
pub async fn list_workflows(
    State(st): State<S>,
    _c: Caller,
) -> Res<axum::Json<Page<WorkflowInfo>>> {
    let Some(s) = st.jobs.get() else {
        return Ok(axum::Json(Page {
            items: Vec::new(),
            next: None,
        }));
    };
    let items = s
        .workflows
        .iter()
        .map(|w| WorkflowInfo {
            name: w.name.clone(),
            description: w.description.clone(),
            watch: s.watch_dir(w).map(|d| d.display().to_string()),
            steps: w
                .steps
                .iter()
                .map(|st| match st.kind.as_str() {
                    "transcode" => format!("transcode {}", st.profiles.join(", ")),
                    k => k.to_string(),
                })
                .collect(),
        })
        .collect();
    Ok(axum::Json(Page { items, next: None }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunInput {
    /// A file under one of the ingest roots: ingested, then the steps run on the new asset.
    pub path: Option<String>,
    /// An asset already in the catalog: the steps run on it (e.g. new renditions, a fixity
    /// check).
    pub asset_id: Option<i64>,
}

/// Runs a workflow (the API trigger) on a file (an ingest job, then the workflow's steps) or
/// on an asset in the catalog (its steps).
#[utoipa::path(post, path = "/v1/workflows/{name}/run", tag = "jobs", params(("name" = String, Path)), request_body = RunInput,
    responses((status = 201, body = crate::jobs::Job), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn run_workflow(
    State(st): State<S>,
    c: Caller,
    Path(name): Path<String>,
    Body(i): Body<RunInput>,
) -> Res<Response> {
    require_role(&c.0, &[Role::Admin, Role::Operator, Role::Service])?;
    let s = st
        .jobs
        .get()
        .ok_or_else(|| ApiError::not_found("no job runner"))?;
    let w = s
        .workflow(&name)
        .ok_or_else(|| ApiError::not_found(format!("workflow {name:?} not found")))?;
    let path = match (&i.path, i.asset_id) {
        (Some(p), None) => p,
        (None, Some(a)) => {
            st.catalog.require(&c.0, a, Perms::WRITE).await?;
            let run = format!(
                "api{}",
                crate::catalog::access::hex(&rand::random::<[u8; 6]>())
            );
            let id = s.start_on_asset(&w, a, &run).await?.ok_or_else(|| {
                ApiError::bad("invalid", "no step of this workflow applies to the asset")
            })?;
            s.wake.notify_one();
            return Ok(created(st.queue.job(id).await?));
        }
        _ => {
            return Err(ApiError::bad(
                "invalid",
                "give either `path` (a file to ingest) or `asset_id` (an asset in the catalog)",
            ))
        }
    };
    let path = ingest::confine(path, &st.cfg.ingest.roots)?;
    let meta =
        std::fs::metadata(&path).map_err(|e| ApiError::bad("path_not_allowed", e.to_string()))?;
    let j = st
        .queue
        .enqueue(&crate::jobs::NewJob {
            kind: "ingest".into(),
            workflow: w.name.clone(),
            max_attempts: 3,
            idempotency_key: Some(format!(
                "api:{}",
                crate::ingest::watch::version_key(
                    path.parent().unwrap_or(&path),
                    &path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    meta.len(),
                    meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH),
                )
            )),
            params: serde_json::json!({"path": path, "moved_to": path}),
            ..Default::default()
        })
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "duplicate",
                "this version of the file was already submitted",
            )
        })?;
    s.wake.notify_one();
    Ok(created(j))
}

/// The verification of an asset's renditions against their profiles: each registered
/// rendition's report, and each output of its transcode jobs that failed (not registered), with
/// every check expected against measured.
#[utoipa::path(get, path = "/v1/assets/{id}/verification", tag = "files", params(("id" = i64, Path)),
    responses((status = 200, body = crate::jobs::queue::Verification), (status = 404, body = ErrorBody)))]
pub async fn asset_verification(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<crate::jobs::queue::Verification>> {
    Ok(axum::Json(st.queue.verification(&c.0, id).await?))
}

/// The latest QC report of an asset.
#[utoipa::path(get, path = "/v1/assets/{id}/qc", tag = "assets", params(("id" = i64, Path)),
    responses((status = 200), (status = 404, body = ErrorBody)))]
pub async fn asset_qc(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<serde_json::Value>> {
    st.catalog.require(&c.0, id, Perms::READ).await?;
    let jobs = st
        .queue
        .jobs(&crate::jobs::JobFilter {
            kind: Some("qc".into()),
            asset_id: Some(id),
            limit: Some(1),
            ..Default::default()
        })
        .await?;
    let j = jobs
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found(format!("no QC of asset {id}")))?;
    Ok(axum::Json(serde_json::json!({
        "job_id": j.id,
        "state": j.state,
        "report": j.result,
        "error": j.error,
    })))
}
