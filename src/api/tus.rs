//! Resumable uploads over the tus 1.0 protocol (core, creation, termination, expiration and
//! checksum extensions), so that existing tus clients can send masters over unreliable links:
//! `POST /v1/ingest/tus` (a new asset) or `POST /v1/assets/{id}/upload/tus` (a file for an
//! existing asset) creates an upload, `HEAD` on its URL says how much arrived, `PATCH` appends
//! at that offset, `DELETE` drops it. The same rules as the plain upload routes hold: the caller's
//! rights, `ingest.max_upload`, the upload slots, hashing while the bytes arrive, the duplicate
//! check and the media probe at completion. State is in the catalog and the bytes in a part
//! file, so an upload resumes after a restart; an upload idle for `ingest.upload_expiry_s` is
//! removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::StreamExt;

use super::error::ErrorBody;
use super::{ApiError, Caller, Path, S};
use crate::catalog::assets::AssetInput;
use crate::catalog::uploads::{NewUpload, UploadRec};
use crate::catalog::{Perms, Principal};
use crate::ingest::resumable::{self, Part};

type Res<T> = Result<T, ApiError>;

pub const TUS_VERSION: &str = "1.0.0";
const EXTENSIONS: &str = "creation,termination,expiration,checksum";
const CHECKSUMS: &str = "sha1,sha256";
/// Where uploads live; an upload's URL is this and its id.
const BASE: &str = "/v1/ingest/tus";
/// A request's bytes are made durable and recorded at least this often.
const CHECKPOINT: u64 = 64 << 20;
/// Parts kept open between requests; past this, idle ones are closed (and re-read when their
/// upload resumes).
const LIVE_MAX: usize = 256;

const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
const UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");
const UPLOAD_CHECKSUM: HeaderName = HeaderName::from_static("upload-checksum");
const ASSET_ID: HeaderName = HeaderName::from_static("antenne-asset-id");
const FILE_ID: HeaderName = HeaderName::from_static("antenne-file-id");

/// The part files open in this process, one lock each: one request at a time appends to an
/// upload.
#[derive(Default)]
pub struct Live {
    parts: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Part>>>>>,
}

impl Live {
    fn slot(&self, id: &str) -> Res<Arc<tokio::sync::Mutex<Option<Part>>>> {
        let mut m = self.parts.lock().map_err(|_| ApiError::internal())?;
        if m.len() >= LIVE_MAX && !m.contains_key(id) {
            m.retain(|_, v| Arc::strong_count(v) > 1);
        }
        Ok(m.entry(id.to_string()).or_default().clone())
    }

    fn forget(&self, id: &str) {
        if let Ok(mut m) = self.parts.lock() {
            m.remove(id);
        }
    }
}

/// Every answer of the tus routes says which protocol version the server speaks.
pub async fn tus_headers(req: Request, next: Next) -> Response {
    let tus = is_tus_path(req.uri().path());
    let mut r = next.run(req).await;
    if tus {
        let h = r.headers_mut();
        h.insert(TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
        h.insert(
            HeaderName::from_static("tus-version"),
            HeaderValue::from_static(TUS_VERSION),
        );
    }
    r
}

fn is_tus_path(p: &str) -> bool {
    p == BASE
        || p.starts_with("/v1/ingest/tus/")
        || (p.starts_with("/v1/assets/") && p.ends_with("/upload/tus"))
}

fn invalid_header(name: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError {
        field: Some(name.to_string()),
        ..ApiError::bad("invalid_header", format!("{name}: {why}"))
    }
}

fn text<'a>(h: &'a HeaderMap, name: &HeaderName) -> Res<Option<&'a str>> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| invalid_header(name.as_str(), "not visible ASCII")),
    }
}

fn number(h: &HeaderMap, name: &HeaderName) -> Res<Option<u64>> {
    text(h, name)?
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| invalid_header(name.as_str(), "a non-negative integer"))
        })
        .transpose()
}

fn check_version(h: &HeaderMap) -> Res<()> {
    match h.get(&TUS_RESUMABLE).and_then(|v| v.to_str().ok()) {
        Some(TUS_VERSION) => Ok(()),
        other => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "unsupported_version",
            format!(
                "Tus-Resumable: {} is not supported; this server speaks tus {TUS_VERSION}",
                other.unwrap_or("(absent)")
            ),
        )),
    }
}

/// `Upload-Metadata`: `key base64,key base64,…` (a value may be absent).
fn parse_metadata(v: &str) -> Res<HashMap<String, String>> {
    let mut m = HashMap::new();
    for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut it = pair.split(' ').filter(|s| !s.is_empty());
        let key = it.next().unwrap_or_default();
        let value = it.next().unwrap_or_default();
        if it.next().is_some() || key.is_empty() {
            return Err(invalid_header(
                "Upload-Metadata",
                format!("{pair:?} is not `key base64value`"),
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| {
                invalid_header(
                    "Upload-Metadata",
                    format!("the value of {key:?} is not base64"),
                )
            })?;
        let value = String::from_utf8(bytes).map_err(|_| {
            invalid_header(
                "Upload-Metadata",
                format!("the value of {key:?} is not UTF-8"),
            )
        })?;
        if m.insert(key.to_string(), value).is_some() {
            return Err(invalid_header(
                "Upload-Metadata",
                format!("{key:?} is given twice"),
            ));
        }
    }
    Ok(m)
}

fn http_date(ms: i64) -> Option<HeaderValue> {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).ok()?);
    HeaderValue::from_str(&httpdate::fmt_http_date(t)).ok()
}

fn set(h: &mut HeaderMap, name: HeaderName, v: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&v.to_string()) {
        h.insert(name, v);
    }
}

fn no_content(offset: u64, expires_ms: i64, done: Option<(i64, i64)>) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    set(h, UPLOAD_OFFSET, offset);
    if let Some(v) = http_date(expires_ms) {
        h.insert(UPLOAD_EXPIRES, v);
    }
    if let Some((a, f)) = done {
        set(h, ASSET_ID, a);
        set(h, FILE_ID, f);
    }
    r
}

fn expiry_ms(st: &S) -> i64 {
    i64::from(st.cfg.ingest.upload_expiry_s) * 1000
}

/// What the server supports (public: it describes, it reveals nothing).
#[utoipa::path(options, path = "/v1/ingest/tus", tag = "ingest", security(()),
    responses((status = 204, description = "`Tus-Version`, `Tus-Extension`, `Tus-Max-Size`, `Tus-Checksum-Algorithm`")))]
pub async fn options(State(st): State<S>) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(
        HeaderName::from_static("tus-extension"),
        HeaderValue::from_static(EXTENSIONS),
    );
    h.insert(
        HeaderName::from_static("tus-checksum-algorithm"),
        HeaderValue::from_static(CHECKSUMS),
    );
    set(
        h,
        HeaderName::from_static("tus-max-size"),
        st.cfg.ingest.max_upload.0,
    );
    r
}

/// Starts a resumable upload that becomes a new asset at completion. Headers:
/// `Tus-Resumable: 1.0.0`, `Upload-Length`, `Upload-Metadata` with `filename` (or `name`;
/// required), and optionally `title`, `kind`, `role`, `allow_duplicate` (`true`). Answers 201
/// with the upload's URL in `Location`. The last `PATCH` answers the new asset's and file's ids
/// in `Antenne-Asset-Id` and `Antenne-File-Id`.
#[utoipa::path(post, path = "/v1/ingest/tus", tag = "ingest",
    params(("Tus-Resumable" = String, Header, description = "1.0.0"),
        ("Upload-Length" = u64, Header, description = "the file's size in bytes"),
        ("Upload-Metadata" = String, Header, description = "`filename <base64>` and optionally `title`, `kind`, `role`, `allow_duplicate`, comma-separated")),
    responses((status = 201, description = "created: `Location`, `Upload-Expires`"),
        (status = 400, body = ErrorBody, description = "a missing or malformed header (`invalid_header`)"),
        (status = 403, body = ErrorBody), (status = 412, body = ErrorBody, description = "another tus version (`unsupported_version`)"),
        (status = 413, body = ErrorBody, description = "`Upload-Length` over `ingest.max_upload`")))]
pub async fn create_ingest(State(st): State<S>, c: Caller, headers: HeaderMap) -> Res<Response> {
    check_version(&headers)?;
    if !c.0.role.may_create_assets() {
        return Err(ApiError::forbidden("this role may not ingest"));
    }
    create(&st, &c.0, &headers, None).await
}

/// Starts a resumable upload of a file for an existing asset (the write right on it); as
/// `POST /v1/ingest/tus`, without `title` and `kind`.
#[utoipa::path(post, path = "/v1/assets/{id}/upload/tus", tag = "files",
    params(("id" = i64, Path), ("Tus-Resumable" = String, Header, description = "1.0.0"),
        ("Upload-Length" = u64, Header, description = "the file's size in bytes"),
        ("Upload-Metadata" = String, Header, description = "`filename <base64>` and optionally `role`, `allow_duplicate`")),
    responses((status = 201, description = "created: `Location`, `Upload-Expires`"),
        (status = 400, body = ErrorBody, description = "a missing or malformed header (`invalid_header`)"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 412, body = ErrorBody, description = "another tus version (`unsupported_version`)"),
        (status = 413, body = ErrorBody, description = "`Upload-Length` over `ingest.max_upload`")))]
pub async fn create_for_asset(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Res<Response> {
    check_version(&headers)?;
    st.catalog.require(&c.0, id, Perms::WRITE).await?;
    create(&st, &c.0, &headers, Some(id)).await
}

async fn create(st: &S, who: &Principal, h: &HeaderMap, asset: Option<i64>) -> Res<Response> {
    if h.contains_key("upload-defer-length") {
        return Err(invalid_header(
            "Upload-Defer-Length",
            "not supported: give Upload-Length",
        ));
    }
    let length =
        number(h, &UPLOAD_LENGTH)?.ok_or_else(|| invalid_header("Upload-Length", "required"))?;
    if length == 0 {
        return Err(invalid_header(
            "Upload-Length",
            "an empty file cannot be media",
        ));
    }
    let cap = st.cfg.ingest.max_upload.0;
    if length > cap {
        return Err(crate::ingest::IngestError::TooLarge { limit: cap }.into());
    }
    super::storage::room_for_ingest(st, length).await?;
    let raw = text(h, &UPLOAD_METADATA)?.unwrap_or_default();
    if raw.len() > 8192 {
        return Err(invalid_header("Upload-Metadata", "at most 8192 bytes"));
    }
    let mut meta = parse_metadata(raw)?;
    let filename = meta
        .remove("filename")
        .or_else(|| meta.remove("name"))
        .ok_or_else(|| invalid_header("Upload-Metadata", "filename is required"))?;
    if filename.is_empty() || filename.len() > 1000 || filename.contains('\0') {
        return Err(invalid_header(
            "Upload-Metadata",
            "filename: 1-1000 bytes, no NUL",
        ));
    }
    let title = meta.remove("title");
    let kind = meta.remove("kind");
    if asset.is_some() && (title.is_some() || kind.is_some()) {
        return Err(invalid_header(
            "Upload-Metadata",
            "title and kind belong to /v1/ingest/tus",
        ));
    }
    let allow_duplicate = match meta.remove("allow_duplicate").as_deref() {
        None | Some("" | "false" | "0") => false,
        Some("true" | "1") => true,
        Some(v) => {
            return Err(invalid_header(
                "Upload-Metadata",
                format!("allow_duplicate: {v:?} is not true or false"),
            ))
        }
    };
    let rec = st
        .catalog
        .create_upload(
            who,
            &NewUpload {
                asset_id: asset,
                length,
                filename,
                role: meta.remove("role").unwrap_or_else(|| "source".into()),
                title,
                kind,
                allow_duplicate,
                metadata: raw.to_string(),
            },
            expiry_ms(st),
        )
        .await?;
    let part = match Part::create(&st.media_dir, &rec.id).await {
        Ok(p) => p,
        Err(e) => {
            let _ = st.catalog.delete_upload(&rec.id).await;
            return Err(e.into());
        }
    };
    *st.tus.slot(&rec.id)?.lock().await = Some(part);
    let mut r = StatusCode::CREATED.into_response();
    let h = r.headers_mut();
    set(h, header::LOCATION, format!("{BASE}/{}", rec.id));
    set(h, UPLOAD_OFFSET, 0);
    if let Some(v) = http_date(rec.expires_ms) {
        h.insert(UPLOAD_EXPIRES, v);
    }
    Ok(r)
}

/// How much of the upload arrived (`Upload-Offset`), with `Upload-Length`, `Upload-Metadata`
/// and `Upload-Expires`; once complete, `Antenne-Asset-Id` and `Antenne-File-Id`. Only its
/// creator sees an upload (404 for anyone else).
#[utoipa::path(head, path = "/v1/ingest/tus/{upload}", tag = "ingest",
    params(("upload" = String, Path), ("Tus-Resumable" = String, Header, description = "1.0.0")),
    responses((status = 200, description = "`Upload-Offset`, `Upload-Length`, `Upload-Expires`"),
        (status = 404, body = ErrorBody, description = "no such upload, another user's, or expired (no body, as for any HEAD)"),
        (status = 412, body = ErrorBody, description = "another tus version (no body, as for any HEAD)")))]
pub async fn head(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Res<Response> {
    check_version(&headers)?;
    let rec = st.catalog.upload(&c.0, &id).await?;
    let mut r = StatusCode::OK.into_response();
    let h = r.headers_mut();
    set(h, UPLOAD_OFFSET, rec.received);
    set(h, UPLOAD_LENGTH, rec.length);
    if !rec.metadata.is_empty() {
        set(h, UPLOAD_METADATA, &rec.metadata);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(v) = http_date(rec.expires_ms) {
        h.insert(UPLOAD_EXPIRES, v);
    }
    if let Some((a, f)) = rec.done {
        set(h, ASSET_ID, a);
        set(h, FILE_ID, f);
    }
    Ok(r)
}

/// A request body's checksum (`Upload-Checksum: sha1|sha256 <base64>`), computed as it arrives.
enum Checksum {
    Sha1(sha1::Sha1, Vec<u8>),
    Sha256(sha2::Sha256, Vec<u8>),
}

impl Checksum {
    fn parse(v: &str) -> Res<Checksum> {
        let bad = |why: &str| invalid_header("Upload-Checksum", why);
        let (alg, b64) = v
            .split_once(' ')
            .ok_or_else(|| bad("`algorithm base64digest`"))?;
        let want = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| bad("the digest is not base64"))?;
        use sha2::Digest as _;
        match alg {
            "sha1" => Ok(Checksum::Sha1(sha1::Digest::new(), want)),
            "sha256" => Ok(Checksum::Sha256(sha2::Sha256::new(), want)),
            _ => Err(bad(&format!(
                "algorithm {alg:?} is not supported ({CHECKSUMS})"
            ))),
        }
    }

    fn update(&mut self, b: &[u8]) {
        match self {
            Checksum::Sha1(h, _) => sha1::Digest::update(h, b),
            Checksum::Sha256(h, _) => sha2::Digest::update(h, b),
        }
    }

    fn matches(self) -> bool {
        match self {
            Checksum::Sha1(h, want) => sha1::Digest::finalize(h).as_slice() == want.as_slice(),
            Checksum::Sha256(h, want) => sha2::Digest::finalize(h).as_slice() == want.as_slice(),
        }
    }
}

/// Appends the body at `Upload-Offset` (which must be the upload's offset: 409 otherwise).
/// `Content-Type: application/offset+octet-stream`. An interrupted request keeps the bytes that
/// arrived (unless it carried a checksum). The request that completes the upload hashes, checks
/// for duplicates and probes the file, and catalogues it: its answer carries
/// `Antenne-Asset-Id` and `Antenne-File-Id`, or the error that refused the file (the upload is
/// then gone).
#[utoipa::path(patch, path = "/v1/ingest/tus/{upload}", tag = "ingest",
    params(("upload" = String, Path), ("Tus-Resumable" = String, Header, description = "1.0.0"),
        ("Upload-Offset" = u64, Header, description = "where these bytes go: the upload's current offset"),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha1 <base64>` or `sha256 <base64>` of this request's body")),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses((status = 204, description = "stored: the new `Upload-Offset`, `Upload-Expires`; when complete `Antenne-Asset-Id`, `Antenne-File-Id`"),
        (status = 400, body = ErrorBody, description = "a missing or malformed header (`invalid_header`)"),
        (status = 404, body = ErrorBody, description = "no such upload, another user's, or expired"),
        (status = 409, body = ErrorBody, description = "`Upload-Offset` is not the upload's offset, another request is appending (`conflict`), or the content is already in the catalog (`duplicate`)"),
        (status = 412, body = ErrorBody, description = "another tus version"),
        (status = 413, body = ErrorBody, description = "more bytes than `Upload-Length`"),
        (status = 410, body = ErrorBody, description = "the upload's bytes are on another appliance sharing the catalog (`gone`)"),
        (status = 415, body = ErrorBody, description = "not `application/offset+octet-stream`"),
        (status = 422, body = ErrorBody, description = "the complete file is not media (`not_media`)"),
        (status = 460, body = ErrorBody, description = "the body does not match `Upload-Checksum` (`checksum_mismatch`)"),
        (status = 503, body = ErrorBody, description = "too many uploads at once")))]
pub async fn patch(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<String>,
    req: Request,
) -> Res<Response> {
    let h = req.headers();
    check_version(h)?;
    let ct = text(h, &header::CONTENT_TYPE)?.unwrap_or_default();
    if !ct.eq_ignore_ascii_case("application/offset+octet-stream") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a PATCH of a resumable upload is sent as application/offset+octet-stream",
        ));
    }
    let offset =
        number(h, &UPLOAD_OFFSET)?.ok_or_else(|| invalid_header("Upload-Offset", "required"))?;
    let declared = number(h, &header::CONTENT_LENGTH)?;
    let mut checksum = text(h, &UPLOAD_CHECKSUM)?
        .map(Checksum::parse)
        .transpose()?;
    let rec = st.catalog.upload(&c.0, &id).await?;
    if let Some(done) = rec.done {
        // The answer to the completing request was lost: the same answer again.
        if offset == rec.length && declared.unwrap_or(0) == 0 {
            return Ok(no_content(rec.length, rec.expires_ms, Some(done)));
        }
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("upload {id} is complete: Upload-Offset is {}", rec.length),
        ));
    }
    if declared.is_some_and(|n| offset.saturating_add(n) > rec.length) {
        return Err(too_long(rec.length));
    }
    let _permit = st.uploads.try_acquire().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "too many uploads at once; retry shortly",
        )
    })?;
    let slot = st.tus.slot(&id)?;
    let mut guard = slot.try_lock_owned().map_err(|_| {
        ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("upload {id} is receiving bytes in another request"),
        )
    })?;
    if guard.as_ref().is_none_or(|p| p.size() != rec.received) {
        // Not open here (a restart), or ahead of what was recorded: from the disk.
        if !resumable::part_path(&st.media_dir, &id).exists() {
            return Err(ApiError::new(
                StatusCode::GONE,
                "gone",
                format!(
                    "the bytes of upload {id} are not on this appliance: an upload resumes on \
                     the appliance that started it"
                ),
            ));
        }
        *guard = Some(Part::resume(&st.media_dir, &id, rec.received).await?);
    }
    let Some(part) = guard.as_mut() else {
        return Err(ApiError::internal());
    };
    if part.size() != offset {
        return Err(ApiError {
            field: Some("Upload-Offset".into()),
            ..ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "Upload-Offset is {offset} but upload {id} has {} bytes: resume from there",
                    part.size()
                ),
            )
        });
    }
    let expiry = expiry_ms(&st);
    let mark = part.mark();
    let mut recorded = part.size();
    let mut stream = req.into_body().into_data_stream();
    let mut outcome: Res<()> = Ok(());
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                outcome = Err(ApiError::bad(
                    "invalid_body",
                    format!("upload interrupted: {e}"),
                ));
                break;
            }
        };
        if part.size() + chunk.len() as u64 > rec.length {
            outcome = Err(too_long(rec.length));
            break;
        }
        if let Err(e) = part.write(&chunk).await {
            outcome = Err(e.into());
            break;
        }
        if let Some(c) = checksum.as_mut() {
            c.update(&chunk);
        } else if part.size() - recorded >= CHECKPOINT {
            part.sync().await?;
            st.catalog.upload_progress(&id, part.size(), expiry).await?;
            recorded = part.size();
        }
    }
    let interrupted = matches!(&outcome, Err(e) if e.code == "invalid_body");
    // Refused bytes go; an interruption keeps what arrived, unless a checksum was to vouch
    // for it.
    if outcome.is_ok() && checksum.take().is_some_and(|c| !c.matches()) {
        outcome = Err(ApiError::new(
            StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
            "checksum_mismatch",
            "the body does not match Upload-Checksum; send it again",
        ));
    }
    let keep = outcome.is_ok() || (interrupted && checksum.is_none());
    if !keep {
        part.rollback(mark).await?;
    }
    part.sync().await?;
    let expires = st.catalog.upload_progress(&id, part.size(), expiry).await?;
    outcome?;
    if part.size() < rec.length {
        return Ok(no_content(part.size(), expires, None));
    }
    let Some(part) = guard.take() else {
        return Err(ApiError::internal());
    };
    let done = complete(&st, &c.0, &rec, part).await;
    st.tus.forget(&id);
    let done = done?;
    Ok(no_content(rec.length, expires, Some(done)))
}

fn too_long(length: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("more bytes than the upload's Upload-Length of {length}"),
    )
}

/// Catalogues a complete upload; whatever refuses it ends the upload.
async fn complete(st: &S, who: &Principal, rec: &UploadRec, part: Part) -> Res<(i64, i64)> {
    let r = catalogue(st, who, rec, part).await;
    match &r {
        Ok((a, f)) => st.catalog.upload_done(&rec.id, *a, *f).await?,
        Err(_) => discard(st, &rec.id).await,
    }
    r
}

async fn catalogue(st: &S, who: &Principal, rec: &UploadRec, part: Part) -> Res<(i64, i64)> {
    if rec.asset_id.is_none() && !who.role.may_create_assets() {
        return Err(ApiError::forbidden("this role may not ingest"));
    }
    if !rec.allow_duplicate {
        if let Some((asset_id, file_id)) = st.catalog.find_by_hash(&part.hash_so_far()).await? {
            return Err(st.catalog.duplicate(who, asset_id, file_id).await.into());
        }
    }
    let stored = part
        .finish(&st.media_dir, &rec.filename, st.catalog.now_ms())
        .await?;
    let f = super::routes::describe(
        stored.path.clone(),
        rec.role.clone(),
        Some((stored.hash.clone(), stored.size)),
        &rec.filename,
    )
    .await?;
    let ids = match rec.asset_id {
        Some(asset) => {
            let file = st
                .catalog
                .add_file(who, asset, &f, rec.allow_duplicate)
                .await?;
            (asset, file.id)
        }
        None => {
            let mut input = AssetInput {
                title: rec.title.clone(),
                kind: rec.kind.clone(),
                ..Default::default()
            };
            super::routes::default_title(&mut input, &crate::ingest::safe_name(&rec.filename));
            let (asset, file) = st
                .catalog
                .ingest(who, &input, &f, rec.allow_duplicate)
                .await?;
            (asset.id, file.id)
        }
    };
    stored.keep();
    Ok(ids)
}

/// Forgets an upload and removes its bytes (the record first: a part file without one is
/// swept).
async fn discard(st: &S, id: &str) {
    if let Err(e) = st.catalog.delete_upload(id).await {
        tracing::warn!(upload = id, error = %e, "resumable upload: cannot forget");
        return;
    }
    st.tus.forget(id);
    if let Err(e) = resumable::remove(&st.media_dir, id).await {
        tracing::warn!(upload = id, error = %e, "resumable upload: cannot remove its part");
    }
}

/// Terminates an upload: its bytes are removed (a complete upload's file stays catalogued).
#[utoipa::path(delete, path = "/v1/ingest/tus/{upload}", tag = "ingest",
    params(("upload" = String, Path), ("Tus-Resumable" = String, Header, description = "1.0.0")),
    responses((status = 204, description = "terminated"),
        (status = 404, body = ErrorBody, description = "no such upload, another user's, or expired"),
        (status = 409, body = ErrorBody, description = "a request is appending to it"),
        (status = 412, body = ErrorBody, description = "another tus version")))]
pub async fn delete(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Res<Response> {
    check_version(&headers)?;
    st.catalog.upload(&c.0, &id).await?;
    let slot = st.tus.slot(&id)?;
    let _guard = slot.try_lock_owned().map_err(|_| {
        ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("upload {id} is receiving bytes in another request"),
        )
    })?;
    st.catalog.delete_upload(&id).await?;
    st.tus.forget(&id);
    resumable::remove(&st.media_dir, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Removes expired uploads and part files no upload owns, until the service stops; the first
/// pass runs at once (what expired while the service was down).
pub async fn sweep(st: S) {
    let every = Duration::from_secs(u64::from(st.cfg.ingest.upload_expiry_s / 4).clamp(1, 60));
    loop {
        sweep_once(&st).await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = st.stopping.cancelled() => return,
        }
    }
}

async fn sweep_once(st: &S) {
    let expired = match st.catalog.expired_uploads(1000).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "resumable uploads: cannot list the expired");
            return;
        }
    };
    for id in expired {
        let Ok(slot) = st.tus.slot(&id) else { return };
        // One receiving now is not idle: its request pushes the expiry on.
        let Ok(_guard) = slot.try_lock_owned() else {
            continue;
        };
        tracing::info!(upload = %id, "resumable upload expired: removed");
        discard(st, &id).await;
    }
    let media = st.media_dir.clone();
    let parts = tokio::task::spawn_blocking(move || resumable::part_ids(&media))
        .await
        .unwrap_or_default();
    if parts.is_empty() {
        return;
    }
    let Ok(known) = st.catalog.upload_ids().await else {
        return;
    };
    let known: std::collections::HashSet<String> = known.into_iter().collect();
    for id in parts.into_iter().filter(|p| !known.contains(p)) {
        tracing::info!(upload = %id, "removing a part file no upload owns");
        let _ = resumable::remove(&st.media_dir, &id).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata() {
        let m = parse_metadata("filename bmV3cy5teGY=,title RXZlbmluZyBuZXdz, is_confidential")
            .unwrap();
        assert_eq!(m["filename"], "news.mxf");
        assert_eq!(m["title"], "Evening news");
        assert_eq!(m["is_confidential"], "");
        for bad in ["filename !!!", "a YQ== b", "a YQ==,a YQ==", "a /w=="] {
            let e = parse_metadata(bad).unwrap_err();
            assert_eq!(e.code, "invalid_header", "{bad}");
        }
        assert!(parse_metadata("").unwrap().is_empty());
    }

    #[test]
    fn checksums() {
        let c = Checksum::parse("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=").unwrap();
        let mut c2 = c;
        c2.update(b"hello world");
        assert!(c2.matches());
        let mut c = Checksum::parse("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=").unwrap();
        c.update(b"hello");
        assert!(!c.matches());
        assert!(Checksum::parse("md5 AAAA").is_err());
        assert!(Checksum::parse("sha1").is_err());
    }

    #[test]
    fn paths() {
        assert!(is_tus_path("/v1/ingest/tus"));
        assert!(is_tus_path("/v1/ingest/tus/abc"));
        assert!(is_tus_path("/v1/assets/3/upload/tus"));
        assert!(!is_tus_path("/v1/ingest/upload"));
    }
}
