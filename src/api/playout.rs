//! Playout channels over HTTP: CRUD, the rundown (JSON, CSV, BXF in; per-item warnings out),
//! on-air edits, EPG (XMLTV, now/next), the as-run log (JSON, CSV, BXF) and the channel engine's
//! controls (start, stop, emergency slate). Changing channels is for admin and operator; a
//! rundown's assets must be readable by whoever schedules or reads it (admin, operator and
//! service read everything).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::error::ErrorBody;
use super::routes::Page;
use super::{ApiError, Body, Caller, Path, Query, S};
use crate::config::playout::Channel;
use crate::playout::schedule::edit::Edit;
use crate::playout::schedule::exchange::{self, AsRun, NowNext};
use crate::playout::schedule::ScheduleError;
use crate::playout::service::{
    ChannelView, ControlError, PlayoutError, PlayoutService, ScheduleView,
};

type Res<T> = Result<T, ApiError>;

impl From<PlayoutError> for ApiError {
    fn from(e: PlayoutError) -> Self {
        let with_field = |code, field: String, m: String| ApiError {
            field: Some(field),
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, m)
        };
        match e {
            PlayoutError::Catalog(c) => c.into(),
            PlayoutError::Forbidden(m) => ApiError::forbidden(m),
            PlayoutError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            PlayoutError::Invalid { field, why } => {
                with_field("invalid_field", field.clone(), format!("{field}: {why}"))
            }
            PlayoutError::Control(c @ ControlError::Unavailable) => ApiError::new(
                StatusCode::CONFLICT,
                "channel_engine_unavailable",
                c.to_string(),
            ),
            PlayoutError::Control(c @ ControlError::Failed(_)) => {
                ApiError::new(StatusCode::CONFLICT, "channel_engine_failed", c.to_string())
            }
            PlayoutError::Schedule(s) => match s {
                ScheduleError::Item { ref field, .. } => {
                    with_field("invalid_item", field.clone(), s.to_string())
                }
                ScheduleError::Import { .. } => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_schedule",
                    s.to_string(),
                ),
                ScheduleError::NoSuchItem(_) => ApiError::not_found(s.to_string()),
                ScheduleError::Aired { .. } => {
                    ApiError::new(StatusCode::CONFLICT, "schedule_aired", s.to_string())
                }
                ScheduleError::Nothing(_) => {
                    ApiError::new(StatusCode::CONFLICT, "nothing_to_cue", s.to_string())
                }
            },
        }
    }
}

fn svc(st: &S) -> Res<&Arc<PlayoutService>> {
    st.playout.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the playout service is not running",
        )
    })
}

/// The routes, merged into the API's router.
pub fn routes() -> Router<S> {
    Router::new()
        .route("/v1/channels", get(list_channels).post(create_channel))
        .route(
            "/v1/channels/{id}",
            get(get_channel).put(put_channel).delete(delete_channel),
        )
        .route(
            "/v1/channels/{id}/schedule",
            get(get_schedule).put(put_schedule).post(append_schedule),
        )
        .route("/v1/channels/{id}/schedule/edits", post(edit_schedule))
        .route("/v1/channels/{id}/cue", post(cue))
        .route("/v1/channels/{id}/epg.xml", get(epg_xml))
        .route("/v1/channels/{id}/now", get(now_next))
        .route("/v1/channels/{id}/asrun", get(asrun))
        .route("/v1/channels/{id}/start", post(start))
        .route("/v1/channels/{id}/stop", post(stop))
        .route("/v1/channels/{id}/slate", post(slate_on).delete(slate_off))
}

/// Every channel with its settings and state.
#[utoipa::path(get, path = "/v1/channels", tag = "playout",
    responses((status = 200, body = Page<ChannelView>)))]
pub async fn list_channels(State(st): State<S>, _c: Caller) -> Res<axum::Json<Page<ChannelView>>> {
    Ok(axum::Json(Page {
        items: svc(&st)?.list().await?,
        next: None,
    }))
}

/// Creates a channel (stopped; `POST /v1/channels/{id}/start` airs it).
#[utoipa::path(post, path = "/v1/channels", tag = "playout", request_body = Channel,
    responses((status = 201, body = ChannelView), (status = 409, body = ErrorBody, description = "the name is taken"),
        (status = 422, body = ErrorBody)))]
pub async fn create_channel(
    State(st): State<S>,
    c: Caller,
    Body(i): Body<Channel>,
) -> Res<Response> {
    let v = svc(&st)?.create(i, &c.0).await?;
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

#[utoipa::path(get, path = "/v1/channels/{id}", tag = "playout", params(("id" = i64, Path)),
    responses((status = 200, body = ChannelView), (status = 404, body = ErrorBody)))]
pub async fn get_channel(
    State(st): State<S>,
    _c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<ChannelView>> {
    Ok(axum::Json(svc(&st)?.get(id).await?))
}

/// Replaces a channel's settings; declared channels are changed in antenne.toml (409).
#[utoipa::path(put, path = "/v1/channels/{id}", tag = "playout", params(("id" = i64, Path)), request_body = Channel,
    responses((status = 200, body = ChannelView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn put_channel(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Body(i): Body<Channel>,
) -> Res<axum::Json<ChannelView>> {
    Ok(axum::Json(svc(&st)?.update(id, i, &c.0).await?))
}

/// Deletes a channel with its rundown and as-run log (not while on air).
#[utoipa::path(delete, path = "/v1/channels/{id}", tag = "playout", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_channel(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<StatusCode> {
    svc(&st)?.delete(id, &c.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DayQuery {
    /// `YYYY-MM-DD`: only the items that air that day (UTC).
    pub day: Option<String>,
}

/// The rundown: each item with its resolved slot (start, end, frames, timecode of its day) and
/// warnings (`asset_missing`, `asset_not_ready`, `rights`, `gap`, `overlap`, ...).
#[utoipa::path(get, path = "/v1/channels/{id}/schedule", tag = "playout", params(("id" = i64, Path), DayQuery),
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_schedule(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Query(q): Query<DayQuery>,
) -> Res<axum::Json<ScheduleView>> {
    Ok(axum::Json(
        svc(&st)?.schedule(id, q.day.as_deref(), &c.0).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VersionQuery {
    /// The schedule version the change is based on: refused (409) when it moved on.
    pub version: Option<i64>,
}

async fn write_schedule(
    st: &S,
    c: &Caller,
    id: i64,
    headers: &HeaderMap,
    body: &[u8],
    append: bool,
    version: Option<i64>,
) -> Res<axum::Json<ScheduleView>> {
    let s = svc(st)?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let items = s.parse_body(id, ct, body)?;
    Ok(axum::Json(
        s.put_schedule(id, items, append, version, &c.0).await?,
    ))
}

/// Replaces the rundown: JSON (`{"items": [...]}`), CSV (`text/csv`) or BXF schedule XML
/// (`application/xml`). Validated and answered with its warnings; refused (409
/// `schedule_aired`) when it would change what has aired.
#[utoipa::path(put, path = "/v1/channels/{id}/schedule", tag = "playout", params(("id" = i64, Path), VersionQuery),
    request_body(content = String, description = "JSON, CSV or BXF", content_type = "application/json"),
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_schedule(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Query(q): Query<VersionQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Res<axum::Json<ScheduleView>> {
    write_schedule(&st, &c, id, &headers, &body, false, q.version).await
}

/// Adds items at the end of the rundown (same formats as PUT).
#[utoipa::path(post, path = "/v1/channels/{id}/schedule", tag = "playout", params(("id" = i64, Path), VersionQuery),
    request_body(content = String, description = "JSON, CSV or BXF", content_type = "application/json"),
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn append_schedule(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Query(q): Query<VersionQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Res<axum::Json<ScheduleView>> {
    write_schedule(&st, &c, id, &headers, &body, true, q.version).await
}

/// An edit on air: `{"op": "insert", "item": {...}, "after": "id"}`, `{"op": "move", "item":
/// "id", "after": "id"}`, `{"op": "replace", "item": "id", "with": {...}}`, `{"op": "skip",
/// "item": "id"}`, `{"op": "cue"}`. What has aired never changes (409 `schedule_aired`).
#[utoipa::path(post, path = "/v1/channels/{id}/schedule/edits", tag = "playout", params(("id" = i64, Path)),
    request_body = Edit,
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn edit_schedule(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Body(e): Body<Edit>,
) -> Res<axum::Json<ScheduleView>> {
    Ok(axum::Json(svc(&st)?.edit(id, e, &c.0).await?))
}

/// Cues the next live event now (the one on air ends, or the next one starts now).
#[utoipa::path(post, path = "/v1/channels/{id}/cue", tag = "playout", params(("id" = i64, Path)),
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "no live event to cue (`nothing_to_cue`)")))]
pub async fn cue(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<ScheduleView>> {
    Ok(axum::Json(svc(&st)?.edit(id, Edit::Cue, &c.0).await?))
}

/// The EPG as XMLTV.
#[utoipa::path(get, path = "/v1/channels/{id}/epg.xml", tag = "playout", params(("id" = i64, Path)),
    responses((status = 200, content_type = "application/xml", body = String), (status = 404, body = ErrorBody)))]
pub async fn epg_xml(State(st): State<S>, c: Caller, Path(id): Path<i64>) -> Res<Response> {
    let x = svc(&st)?.epg_xmltv(id, &c.0).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        x,
    )
        .into_response())
}

/// Now and next, with the time to the next event.
#[utoipa::path(get, path = "/v1/channels/{id}/now", tag = "playout", params(("id" = i64, Path)),
    responses((status = 200, body = NowNext), (status = 404, body = ErrorBody)))]
pub async fn now_next(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<NowNext>> {
    Ok(axum::Json(svc(&st)?.now_next(id, &c.0).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AsRunQuery {
    /// `json` (default), `csv` or `bxf`.
    pub format: Option<String>,
    /// RFC 3339: records that started from then.
    pub from: Option<String>,
    /// RFC 3339: records that started before then.
    pub until: Option<String>,
}

/// The as-run log: every slot as it aired, scheduled against actual start and duration to the
/// frame, with any substitution's reason.
#[utoipa::path(get, path = "/v1/channels/{id}/asrun", tag = "playout", params(("id" = i64, Path), AsRunQuery),
    responses((status = 200, body = Page<AsRun>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn asrun(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Query(q): Query<AsRunQuery>,
) -> Res<Response> {
    let time = |f: &'static str, v: &Option<String>| -> Res<Option<i64>> {
        v.as_deref()
            .map(|s| {
                crate::playout::schedule::model::parse_rfc3339(s).ok_or_else(|| ApiError {
                    field: Some(f.into()),
                    ..ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_field",
                        format!("{f}: {s:?} is not an RFC 3339 time"),
                    )
                })
            })
            .transpose()
    };
    let (from, until) = (time("from", &q.from)?, time("until", &q.until)?);
    let (ch, clock, rows) = svc(&st)?.asrun(id, from, until, &c.0).await?;
    Ok(match q.format.as_deref().unwrap_or("json") {
        "json" => axum::Json(Page {
            items: rows,
            next: None,
        })
        .into_response(),
        "csv" => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            exchange::asrun_csv(&rows, &clock),
        )
            .into_response(),
        "bxf" => (
            [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
            exchange::asrun_bxf(&ch.name, &rows, &clock),
        )
            .into_response(),
        other => {
            return Err(ApiError {
                field: Some("format".into()),
                ..ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    format!("format {other:?}: json, csv or bxf"),
                )
            })
        }
    })
}

/// Airs the channel (kept running across restarts). 409 `channel_engine_unavailable` while no
/// channel engine is attached.
#[utoipa::path(post, path = "/v1/channels/{id}/start", tag = "playout", params(("id" = i64, Path)),
    responses((status = 200, body = ChannelView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn start(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<ChannelView>> {
    Ok(axum::Json(svc(&st)?.start(id, &c.0).await?))
}

#[utoipa::path(post, path = "/v1/channels/{id}/stop", tag = "playout", params(("id" = i64, Path)),
    responses((status = 200, body = ChannelView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn stop(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<ChannelView>> {
    Ok(axum::Json(svc(&st)?.stop(id, &c.0).await?))
}

/// Emergency slate on air now.
#[utoipa::path(post, path = "/v1/channels/{id}/slate", tag = "playout", params(("id" = i64, Path)),
    responses((status = 200, body = ChannelView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn slate_on(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<ChannelView>> {
    Ok(axum::Json(svc(&st)?.slate(id, true, &c.0).await?))
}

/// Back from the emergency slate to the schedule.
#[utoipa::path(delete, path = "/v1/channels/{id}/slate", tag = "playout", params(("id" = i64, Path)),
    responses((status = 200, body = ChannelView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn slate_off(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<ChannelView>> {
    Ok(axum::Json(svc(&st)?.slate(id, false, &c.0).await?))
}
