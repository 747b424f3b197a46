//! Live sources and outputs: CRUD, start, stop, statistics, and a source's TS over HTTP.
//! Reading is for admin, operator and service; changing for admin and operator.

use std::sync::Arc;

use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ErrorBody;
use super::routes::Page;
use super::{ApiError, Body, Caller, Path, S};
use crate::catalog::recording::Recording;
use crate::catalog::{Principal, Role};
use crate::config::appliance::{LiveOutput, LiveRecording, LiveSource};
use crate::hub::record::RecordingStats;
use crate::hub::registry::{LiveService, OutputStats, OutputView, SourceStats, SourceView};
use crate::hub::Recv;

type Res<T> = Result<T, ApiError>;

/// Chunks an HTTP reader of a source may have waiting: the HTTP stack and the socket buffer
/// hundreds of kilobytes more behind it.
const HTTP_READER_QUEUE: usize = 64;

fn created<T: Serialize>(v: T) -> Response {
    (StatusCode::CREATED, axum::Json(v)).into_response()
}

fn reader_role(who: &Principal) -> Res<()> {
    if matches!(who.role, Role::Admin | Role::Operator | Role::Service) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "role {} may not see live sources",
            who.role.as_str()
        )))
    }
}

fn operator_role(who: &Principal) -> Res<()> {
    if matches!(who.role, Role::Admin | Role::Operator) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "role {} may not change live sources or outputs",
            who.role.as_str()
        )))
    }
}

fn live(st: &S) -> Res<&Arc<LiveService>> {
    st.live.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the live service is not running",
        )
    })
}

// ---- sources ----

/// Every live source with its state; secrets show as `********`.
#[utoipa::path(get, path = "/v1/live/sources", tag = "live",
    responses((status = 200, body = Page<SourceView>), (status = 403, body = ErrorBody)))]
pub async fn list_sources(State(st): State<S>, c: Caller) -> Res<axum::Json<Page<SourceView>>> {
    reader_role(&c.0)?;
    Ok(axum::Json(Page {
        items: live(&st)?.list_sources().await?,
        next: None,
    }))
}

/// Creates a live source and starts it (unless `enabled` is false). A kind this machine lacks
/// (NDI runtime, DeckLink) or this build has no transport for is a 422 saying which.
#[utoipa::path(post, path = "/v1/live/sources", tag = "live", request_body = LiveSource,
    responses((status = 201, body = SourceView), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the name is taken, or the transport cannot start (an address in use)"),
        (status = 422, body = ErrorBody, description = "an invalid setting, or a kind not available here (`kind_unavailable`)")))]
pub async fn create_source(
    State(st): State<S>,
    c: Caller,
    Body(i): Body<LiveSource>,
) -> Res<Response> {
    operator_role(&c.0)?;
    Ok(created(live(&st)?.create_source(i, &c.0).await?))
}

#[utoipa::path(get, path = "/v1/live/sources/{id}", tag = "live", params(("id" = i64, Path)),
    responses((status = 200, body = SourceView), (status = 404, body = ErrorBody)))]
pub async fn get_source(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<SourceView>> {
    reader_role(&c.0)?;
    Ok(axum::Json(live(&st)?.get_source(id).await?))
}

/// Replaces a source's definition (a secret sent back as `********` is kept); a running source
/// restarts with it. Declared sources are changed in antenne.toml (409).
#[utoipa::path(put, path = "/v1/live/sources/{id}", tag = "live", params(("id" = i64, Path)),
    request_body = LiveSource,
    responses((status = 200, body = SourceView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_source(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Body(i): Body<LiveSource>,
) -> Res<axum::Json<SourceView>> {
    operator_role(&c.0)?;
    Ok(axum::Json(live(&st)?.update_source(id, i, &c.0).await?))
}

/// Stops and deletes a source; one with outputs attached is a 409.
#[utoipa::path(delete, path = "/v1/live/sources/{id}", tag = "live", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_source(State(st): State<S>, c: Caller, Path(id): Path<i64>) -> Res<StatusCode> {
    operator_role(&c.0)?;
    live(&st)?.delete_source(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts a source (kept running across restarts).
#[utoipa::path(post, path = "/v1/live/sources/{id}/start", tag = "live", params(("id" = i64, Path)),
    responses((status = 200, body = SourceView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn start_source(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<SourceView>> {
    operator_role(&c.0)?;
    Ok(axum::Json(live(&st)?.start_source(id).await?))
}

/// Stops a source (it stays stopped across restarts); its outputs wait for it.
#[utoipa::path(post, path = "/v1/live/sources/{id}/stop", tag = "live", params(("id" = i64, Path)),
    responses((status = 200, body = SourceView), (status = 404, body = ErrorBody)))]
pub async fn stop_source(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<SourceView>> {
    operator_role(&c.0)?;
    Ok(axum::Json(live(&st)?.stop_source(id).await?))
}

/// Starts recording a running source into the catalog: the body (optional) sets `segment_s`
/// (default 3600), `duration_s` (default: until stopped), `title`, `collection`, `workflow`.
/// Each piece is an asset of kind and status `live_recording` while it grows, then a normal
/// asset (its workflow's steps run on it).
#[utoipa::path(post, path = "/v1/live/sources/{id}/record", tag = "live", params(("id" = i64, Path)),
    request_body(content = Option<LiveRecording>, description = "optional"),
    responses((status = 201, body = RecordingStats), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the source is not running, or is being recorded already"),
        (status = 422, body = ErrorBody)))]
pub async fn start_recording(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Res<Response> {
    operator_role(&c.0)?;
    let def: LiveRecording = if body.iter().all(u8::is_ascii_whitespace) {
        LiveRecording::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("the body is not a recording: {e}"),
            )
        })?
    };
    for (k, v) in [
        ("source", def.source.is_some()),
        ("schedule", def.schedule.is_some()),
        ("enabled", def.enabled.is_some()),
    ] {
        if v {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("{k}: only for [[live.recordings]] in antenne.toml"),
            ));
        }
    }
    let l = live(&st)?;
    let src = l.get_source(id).await?;
    Ok(created(l.start_recording(id, &src.name, &def, &c.0).await?))
}

/// Stops a source's recording: its pieces are closed, hashed, probed and made normal assets
/// before the answer, which lists them.
#[utoipa::path(delete, path = "/v1/live/sources/{id}/record", tag = "live", params(("id" = i64, Path)),
    responses((status = 200, body = Page<Recording>), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "no recording runs")))]
pub async fn stop_recording(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<Page<Recording>>> {
    operator_role(&c.0)?;
    let l = live(&st)?;
    l.get_source(id).await?;
    Ok(axum::Json(Page {
        items: l.stop_recording(id).await?,
        next: None,
    }))
}

/// The same as `DELETE /v1/live/sources/{id}/record`.
#[utoipa::path(post, path = "/v1/live/sources/{id}/record/stop", tag = "live", params(("id" = i64, Path)),
    responses((status = 200, body = Page<Recording>), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn stop_recording_post(
    st: State<S>,
    c: Caller,
    id: Path<i64>,
) -> Res<axum::Json<Page<Recording>>> {
    stop_recording(st, c, id).await
}

/// A source's recorded pieces, newest first (at most 1000): growing, done or failed.
#[utoipa::path(get, path = "/v1/live/sources/{id}/recordings", tag = "live", params(("id" = i64, Path)),
    responses((status = 200, body = Page<Recording>), (status = 404, body = ErrorBody)))]
pub async fn list_recordings(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<Page<Recording>>> {
    reader_role(&c.0)?;
    let l = live(&st)?;
    l.get_source(id).await?;
    Ok(axum::Json(Page {
        items: l.catalog().recordings_of(id, 1000).await?,
        next: None,
    }))
}

/// A source's figures: state, bitrate, packets received / lost / dropped / malformed, each
/// reader's drops, time since the last packet, uptime, last error.
#[utoipa::path(get, path = "/v1/live/sources/{id}/stats", tag = "live", params(("id" = i64, Path)),
    responses((status = 200, body = SourceStats), (status = 404, body = ErrorBody)))]
pub async fn source_stats(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<SourceStats>> {
    reader_role(&c.0)?;
    Ok(axum::Json(live(&st)?.source_stats(id).await?))
}

/// A file of an `hls` output's live ladder: `master.m3u8`, `<rendition>/index.m3u8`, or a
/// segment. Names that would leave the ladder's folder, and files not (or no longer) there, are
/// 404.
#[utoipa::path(get, path = "/v1/live/outputs/{id}/hls/{file}", tag = "live",
    params(("id" = i64, Path), ("file" = String, Path)),
    responses((status = 200, content_type = "application/vnd.apple.mpegurl"),
        (status = 404, body = ErrorBody)))]
pub async fn output_hls(
    State(st): State<S>,
    c: Caller,
    Path((id, file)): Path<(i64, String)>,
) -> Res<Response> {
    reader_role(&c.0)?;
    let path = live(&st)?.hls_file(id, &file).await?;
    let ct = match path.extension().and_then(|e| e.to_str()) {
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("ts") => "video/mp2t",
        Some("m4s") => "video/iso.segment",
        Some("mp4") => "video/mp4",
        Some("aac") => "audio/aac",
        _ => return Err(ApiError::not_found(format!("HLS file {file:?} not found"))),
    };
    match tokio::fs::read(&path).await {
        Ok(b) => Ok((
            [
                (header::CONTENT_TYPE, ct),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            b,
        )
            .into_response()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(ApiError::not_found(format!("HLS file {file:?} not found")))
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "live: HLS file not read");
            Err(ApiError::internal())
        }
    }
}

/// The source's latest preview picture (a JPEG 320 pixels wide, made every `live.preview_s`
/// seconds from a keyframe); the last one stays while the source is lost. `Last-Modified` says
/// when it was taken and `Age` how many seconds ago. 404 until the first picture.
#[utoipa::path(get, path = "/v1/live/sources/{id}/preview.jpg", tag = "live", params(("id" = i64, Path)),
    responses((status = 200, content_type = "image/jpeg",
            headers(("Last-Modified" = String), ("Age" = u64, description = "seconds since the picture was taken"))),
        (status = 404, body = ErrorBody, description = "no such source, or no picture yet (not running, no video decoded)")))]
pub async fn source_preview(State(st): State<S>, c: Caller, Path(id): Path<i64>) -> Res<Response> {
    reader_role(&c.0)?;
    let p = live(&st)?.preview(id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg".to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (header::LAST_MODIFIED, http_date(p.taken)),
            (header::AGE, p.at.elapsed().as_secs().to_string()),
        ],
        p.jpeg,
    )
        .into_response())
}

/// An HTTP date (RFC 9110 IMF-fixdate).
fn http_date(t: std::time::SystemTime) -> String {
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::OffsetDateTime::from(t).format(&f).unwrap_or_default()
}

/// The source's MPEG-TS as it arrives (a preview for ffplay or VLC, a restream over HTTP): one
/// reader of the source, which drops (counted in the source's stats) when this client falls
/// behind, without holding anything else back.
#[utoipa::path(get, path = "/v1/live/sources/{id}/ts", tag = "live", params(("id" = i64, Path)),
    responses((status = 200, content_type = "video/mp2t"), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the source is not running")))]
pub async fn source_ts(State(st): State<S>, c: Caller, Path(id): Path<i64>) -> Res<Response> {
    reader_role(&c.0)?;
    let svc = live(&st)?;
    svc.get_source(id).await?;
    let reader = svc.reader(id, &format!("http {}", c.0.username), HTTP_READER_QUEUE)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let stopping = st.stopping.clone();
    std::thread::Builder::new()
        .name(format!("live-http {id}"))
        .spawn(move || loop {
            if stopping.is_cancelled() {
                return;
            }
            match reader.recv_timeout(std::time::Duration::from_millis(200)) {
                // A client that stops reading holds this thread here, and its hub queue fills.
                Ok(c) => {
                    if tx.blocking_send(Ok(c)).is_err() {
                        return;
                    }
                }
                Err(Recv::Timeout) if tx.is_closed() => return,
                Err(Recv::Timeout) => {}
                Err(Recv::Closed) => return,
            }
        })
        .map_err(|e| {
            tracing::error!(error = %e, "live: no thread for an HTTP reader");
            ApiError::internal()
        })?;
    let body = HttpBody::from_stream(tokio_stream_of(rx));
    Ok(([(header::CONTENT_TYPE, "video/mp2t")], body).into_response())
}

fn tokio_stream_of<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

// ---- outputs ----

#[utoipa::path(get, path = "/v1/live/outputs", tag = "live",
    responses((status = 200, body = Page<OutputView>), (status = 403, body = ErrorBody)))]
pub async fn list_outputs(State(st): State<S>, c: Caller) -> Res<axum::Json<Page<OutputView>>> {
    reader_role(&c.0)?;
    Ok(axum::Json(Page {
        items: live(&st)?.list_outputs().await?,
        next: None,
    }))
}

/// Attaches an output to a source (`source_id`) and starts it (unless `enabled` is false):
/// passthrough (remux, no decode), or through a live `profile` where this build has one.
#[utoipa::path(post, path = "/v1/live/outputs", tag = "live", request_body = LiveOutput,
    responses((status = 201, body = OutputView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create_output(
    State(st): State<S>,
    c: Caller,
    Body(i): Body<LiveOutput>,
) -> Res<Response> {
    operator_role(&c.0)?;
    Ok(created(live(&st)?.create_output(i, &c.0).await?))
}

#[utoipa::path(get, path = "/v1/live/outputs/{id}", tag = "live", params(("id" = i64, Path)),
    responses((status = 200, body = OutputView), (status = 404, body = ErrorBody)))]
pub async fn get_output(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<OutputView>> {
    reader_role(&c.0)?;
    Ok(axum::Json(live(&st)?.get_output(id).await?))
}

#[utoipa::path(put, path = "/v1/live/outputs/{id}", tag = "live", params(("id" = i64, Path)),
    request_body = LiveOutput,
    responses((status = 200, body = OutputView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_output(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Body(i): Body<LiveOutput>,
) -> Res<axum::Json<OutputView>> {
    operator_role(&c.0)?;
    Ok(axum::Json(live(&st)?.update_output(id, i, &c.0).await?))
}

#[utoipa::path(delete, path = "/v1/live/outputs/{id}", tag = "live", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_output(State(st): State<S>, c: Caller, Path(id): Path<i64>) -> Res<StatusCode> {
    operator_role(&c.0)?;
    live(&st)?.delete_output(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/live/outputs/{id}/start", tag = "live", params(("id" = i64, Path)),
    responses((status = 200, body = OutputView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn start_output(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<OutputView>> {
    operator_role(&c.0)?;
    Ok(axum::Json(live(&st)?.start_output(id).await?))
}

#[utoipa::path(post, path = "/v1/live/outputs/{id}/stop", tag = "live", params(("id" = i64, Path)),
    responses((status = 200, body = OutputView), (status = 404, body = ErrorBody)))]
pub async fn stop_output(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<OutputView>> {
    operator_role(&c.0)?;
    Ok(axum::Json(live(&st)?.stop_output(id).await?))
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchInput {
    /// `primary` or `backup`.
    pub to: String,
}

/// The manual failover switch: puts a transcoding output with a backup on its `primary` or its
/// `backup` source now, and keeps preferring that one (the automatic rules go on from there:
/// a failing choice is left, and taken back once healthy). The switch comes on the change
/// feed as `switched` with the reason `operator's choice`, like the automatic ones.
#[utoipa::path(post, path = "/v1/live/outputs/{id}/switch", tag = "live", params(("id" = i64, Path)),
    request_body = SwitchInput,
    responses((status = 200, body = OutputView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "no failover on this output, not on air, or the chosen source is not live"),
        (status = 422, body = ErrorBody)))]
pub async fn switch_output(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Body(i): Body<SwitchInput>,
) -> Res<axum::Json<OutputView>> {
    operator_role(&c.0)?;
    Ok(axum::Json(live(&st)?.switch_output(id, &i.to).await?))
}

/// An output's figures: state (its source's), bitrate, packets sent and dropped, its reader's
/// drops, last error.
#[utoipa::path(get, path = "/v1/live/outputs/{id}/stats", tag = "live", params(("id" = i64, Path)),
    responses((status = 200, body = OutputStats), (status = 404, body = ErrorBody)))]
pub async fn output_stats(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<OutputStats>> {
    reader_role(&c.0)?;
    Ok(axum::Json(live(&st)?.output_stats(id).await?))
}
