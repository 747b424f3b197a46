//! Delivery destinations over HTTP: the declared destinations (without credentials), a
//! delivery of an asset's renditions to one (a job for folder and SFTP, signed URLs for a pull
//! destination), the deliveries recorded on an asset, and the public pull route a playout
//! system fetches from (signed, expiring, with byte ranges).

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::ErrorBody;
use super::{ApiError, Body, Caller, Path, Query, S};
use crate::catalog::review::Delivery;
use crate::catalog::Perms;
use crate::config::delivery::Destination;
use crate::delivery::pull;

type Res<T> = Result<T, ApiError>;

/// Routes behind authentication.
pub fn routes() -> Router<S> {
    Router::new()
        .route("/v1/destinations", get(list_destinations))
        .route(
            "/v1/assets/{id}/deliveries",
            get(list_deliveries).post(deliver),
        )
        .route("/v1/deliveries/{id}", get(get_delivery))
}

/// The public pull route: the signature in the URL is the authority.
pub fn public_routes() -> Router<S> {
    Router::new().route("/v1/pull/{dest}/{file}/{name}", get(pull_file))
}

/// A destination as the API shows it: never a credential nor where one is kept.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DestinationView {
    pub name: String,
    pub kind: String,
    pub naming: String,
    pub profiles: Vec<String>,
    pub manifests: Vec<String>,
    pub require_approval: bool,
    /// `sha256` or `size`.
    pub verify: String,
    /// sftp: `host:port` and the remote folder; s3: endpoint, bucket and key prefix; folder:
    /// the folder.
    pub target: String,
}

fn view(d: &Destination) -> DestinationView {
    DestinationView {
        name: d.name.clone(),
        kind: d.kind.clone(),
        naming: d.naming().to_string(),
        profiles: d.profiles.clone(),
        manifests: d.manifests.clone(),
        require_approval: d.require_approval,
        verify: if d.verify_hash() { "sha256" } else { "size" }.into(),
        target: match d.kind.as_str() {
            "sftp" => format!("{}:{}/{}", d.host, d.port.unwrap_or(22), d.path),
            "pull" => String::new(),
            "s3" => format!(
                "{}/{}/{}",
                d.endpoint.as_deref().unwrap_or("s3:/"),
                d.bucket,
                d.path
            ),
            _ => d.path.clone(),
        },
    }
}

/// The declared delivery destinations.
#[utoipa::path(get, path = "/v1/destinations", tag = "delivery",
    responses((status = 200, body = Vec<DestinationView>)))]
pub async fn list_destinations(
    State(st): State<S>,
    _c: Caller,
) -> axum::Json<Vec<DestinationView>> {
    axum::Json(st.cfg.delivery.destinations.iter().map(view).collect())
}

fn destination<'a>(st: &'a S, name: &str) -> Res<&'a Destination> {
    st.cfg
        .delivery
        .destinations
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no destination {name:?} is declared")))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliverInput {
    /// A declared destination's name.
    pub destination: String,
    /// Deliver again although the same files already went there (files still there intact
    /// are not sent twice).
    #[serde(default)]
    pub again: bool,
}

/// A delivery; for a pull destination, the signed URLs to fetch each file from.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryOut {
    #[serde(flatten)]
    pub delivery: Delivery,
    /// pull: each file's name and its signed URL (path and query, on this server).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<PullUrl>,
    /// pull: when the URLs expire (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PullUrl {
    pub name: String,
    pub url: String,
}

/// The signing secret of pull URLs: the configured file, else `pull.secret` in the data
/// directory, made (random, 0600) on first use.
fn pull_secret(st: &S) -> Res<Vec<u8>> {
    let path = match &st.cfg.delivery.pull_secret_file {
        Some(p) => p.clone(),
        None => st.cfg.storage.data_dir.join("pull.secret"),
    };
    match std::fs::read(&path) {
        Ok(s) if s.len() >= 32 => return Ok(s),
        Ok(_) => {
            tracing::error!(path = %path.display(), "pull: the secret is under 32 bytes");
            return Err(ApiError::internal());
        }
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && st.cfg.delivery.pull_secret_file.is_none() => {}
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "pull: cannot read the secret");
            return Err(ApiError::internal());
        }
    }
    let secret = crate::catalog::access::new_secret("");
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let made = (|| -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(secret.as_bytes())?;
        f.sync_all()?;
        // Another request may have made one first: theirs stands.
        std::fs::hard_link(&tmp, &path).or_else(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        std::fs::remove_file(&tmp)
    })();
    if let Err(e) = made {
        let _ = std::fs::remove_file(&tmp);
        tracing::error!(path = %path.display(), error = %e, "pull: cannot make the secret");
        return Err(ApiError::internal());
    }
    std::fs::read(&path).map_err(|_| ApiError::internal())
}

fn not_approved(reason: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "not_approved", reason)
}

fn plan_error(e: crate::jobs::deliveries::PlanError) -> ApiError {
    use crate::jobs::deliveries::PlanError;
    match e {
        PlanError::Catalog(e) => e.into(),
        PlanError::Nothing(m) => ApiError::new(StatusCode::CONFLICT, "nothing_to_deliver", m),
        PlanError::Clash(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
        PlanError::NotApproved(m) => not_approved(m),
    }
}

/// Delivers an asset's renditions that a destination takes (with its sidecar manifests). A
/// destination that requires approval refuses an asset that is not approved (409
/// `not_approved`, with the reason). Folder and SFTP: a job (202), retried with backoff;
/// asked again for the same files, the same delivery is answered (200) unless `again`. Pull:
/// signed URLs at once (201). Needs the download right on the asset.
#[utoipa::path(post, path = "/v1/assets/{id}/deliveries", tag = "delivery",
    params(("id" = i64, Path)), request_body = DeliverInput,
    responses((status = 202, body = DeliveryOut), (status = 200, body = DeliveryOut),
        (status = 201, body = DeliveryOut), (status = 409, body = ErrorBody)))]
pub async fn deliver(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Body(i): Body<DeliverInput>,
) -> Res<Response> {
    let d = destination(&st, &i.destination)?.clone();
    st.catalog.require(&c.0, id, Perms::DOWNLOAD).await?;
    let plan = crate::jobs::deliveries::plan(&st.catalog, &st.media_dir, &c.0, id, &d)
        .await
        .map_err(plan_error)?;
    plan.check_approval(&st.catalog, id, &d)
        .await
        .map_err(plan_error)?;
    let files = &plan.files;
    let listed = plan.listed();
    if d.kind == "pull" {
        let secret = pull_secret(&st)?;
        let exp = st.catalog.now_ms() / 1000 + d.url_ttl_s() as i64;
        let urls = files
            .iter()
            .map(|(fid, n, _)| PullUrl {
                name: n.clone(),
                url: format!(
                    "/v1/pull/{}/{fid}/{n}?exp={exp}&sig={}",
                    d.name,
                    pull::sign(&secret, &d.name, *fid, n, exp)
                ),
            })
            .collect();
        let delivery = st
            .catalog
            .create_delivery(&c.0, id, &d.name, "pull", "ready", &listed)
            .await?;
        return Ok((
            StatusCode::CREATED,
            axum::Json(DeliveryOut {
                delivery,
                urls,
                expires: Some(exp),
            }),
        )
            .into_response());
    }
    if !i.again {
        let same = st
            .catalog
            .deliveries(&c.0, id)
            .await?
            .into_iter()
            .find(|x| {
                x.destination == d.name
                    && !matches!(x.state.as_str(), "failed" | "cancelled")
                    && x.files == listed
            });
        if let Some(delivery) = same {
            return Ok((
                StatusCode::OK,
                axum::Json(DeliveryOut {
                    delivery,
                    urls: vec![],
                    expires: None,
                }),
            )
                .into_response());
        }
    }
    let items = plan.items(&d);
    let delivery = st
        .catalog
        .create_delivery(&c.0, id, &d.name, &d.kind, "queued", &listed)
        .await?;
    let job = st
        .queue
        .enqueue(&crate::jobs::NewJob {
            kind: "deliver".into(),
            priority: 0,
            max_attempts: i64::from(d.attempts.unwrap_or(5)),
            asset_id: Some(id),
            workflow: String::new(),
            idempotency_key: Some(format!("delivery:{}", delivery.id)),
            params: json!({"delivery_id": delivery.id, "destination": d, "items": items}),
            gpu_only: false,
        })
        .await?;
    if let Some(j) = &job {
        st.catalog.set_delivery_job(delivery.id, j.id).await?;
        tracing::info!(asset = id, destination = %d.name, delivery = delivery.id, job = j.id, "delivery queued");
    }
    let delivery = st.catalog.delivery(delivery.id).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(DeliveryOut {
            delivery,
            urls: vec![],
            expires: None,
        }),
    )
        .into_response())
}

/// The deliveries recorded on an asset, newest first: what went where, when, and how each
/// file was verified at the far end.
#[utoipa::path(get, path = "/v1/assets/{id}/deliveries", tag = "delivery",
    params(("id" = i64, Path)), responses((status = 200, body = Vec<Delivery>)))]
pub async fn list_deliveries(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<Vec<Delivery>>> {
    Ok(axum::Json(st.catalog.deliveries(&c.0, id).await?))
}

/// One delivery.
#[utoipa::path(get, path = "/v1/deliveries/{id}", tag = "delivery",
    params(("id" = i64, Path)), responses((status = 200, body = Delivery)))]
pub async fn get_delivery(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<Delivery>> {
    let d = st.catalog.delivery(id).await?;
    // Not found for those who may not read its asset.
    st.catalog
        .require(&c.0, d.asset_id, Perms::READ)
        .await
        .map_err(|_| ApiError::not_found(format!("delivery {id} not found")))?;
    Ok(axum::Json(d))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct PullQuery {
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// HMAC-SHA256 signature, hex.
    pub sig: String,
}

async fn open_nofollow(path: &str) -> std::io::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .await
}

/// A file of a pull destination, by its signed URL (no token: the signature is the
/// authority): byte ranges (`Range: bytes=…`) for players and playout servers. An altered URL
/// is answered 403 `bad_signature`, an expired one 403 `url_expired`.
#[utoipa::path(get, path = "/v1/pull/{dest}/{file}/{name}", tag = "delivery", security(),
    params(("dest" = String, Path), ("file" = i64, Path), ("name" = String, Path), PullQuery),
    responses((status = 200, content_type = "application/octet-stream"),
        (status = 206, content_type = "application/octet-stream"),
        (status = 403, body = ErrorBody)))]
pub async fn pull_file(
    State(st): State<S>,
    Path((dest, file_id, fname)): Path<(String, i64, String)>,
    Query(q): Query<PullQuery>,
    headers: HeaderMap,
) -> Res<Response> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let secret = pull_secret(&st)?;
    let now = st.catalog.now_ms() / 1000;
    pull::check(&secret, &dest, file_id, &fname, q.exp, &q.sig, now).map_err(|e| {
        let code = match e {
            pull::PullError::BadSignature => "bad_signature",
            pull::PullError::Expired(_) => "url_expired",
        };
        ApiError::new(StatusCode::FORBIDDEN, code, e.to_string())
    })?;
    // Signed here, so declared here; a destination removed since no longer serves.
    let d = destination(&st, &dest)
        .ok()
        .filter(|d| d.kind == "pull")
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "bad_signature",
                format!("destination {dest:?} is no longer a pull destination"),
            )
        })?;
    let f =
        st.catalog.file_row(file_id).await.map_err(|_| {
            ApiError::new(StatusCode::GONE, "gone", format!("file {file_id} is gone"))
        })?;
    if d.require_approval {
        if let crate::catalog::review::Approval::NotApproved { reason } =
            st.catalog.is_approved(f.asset_id).await?
        {
            if !st
                .catalog
                .is_approved_file(f.asset_id, file_id)
                .await?
                .is_approved()
            {
                return Err(ApiError::new(StatusCode::FORBIDDEN, "not_approved", reason));
            }
        }
    }
    let gone = |e: std::io::Error| {
        ApiError::new(
            StatusCode::GONE,
            "gone",
            format!("file {file_id} cannot be read: {}", e.kind()),
        )
    };
    let mut file = match open_nofollow(&f.path).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Moved to nearline or archive: brought back online (verified) for the fetch.
            let Some(s) = st.storages.get() else {
                return Err(gone(e));
            };
            s.ensure_online(file_id).await?;
            open_nofollow(&f.path).await.map_err(gone)?
        }
        r => r.map_err(gone)?,
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let etag = format!("\"{}\"", f.sha256);
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r)
            if headers
                .get(header::IF_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v.trim() == etag) =>
        {
            super::download::parse_range(r, len).map_err(|why| {
                let mut e = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range_not_satisfiable",
                    why,
                );
                e.content_range_len = Some(len);
                e
            })?
        }
        _ => None,
    };
    let (status, start, count) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        None => (StatusCode::OK, 0, len),
    };
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|_| ApiError::internal())?;
    }
    metrics::counter!("antenne_delivery_pull_bytes_total", "destination" => dest.clone())
        .increment(count);
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        file.take(count),
        1 << 20,
    ));
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(super::download::content_type(&fname)),
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
    Ok(r)
}
