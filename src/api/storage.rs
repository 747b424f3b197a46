//! Storages over HTTP: health (space, growth, alerts, read errors), the storage event log, each
//! file's copies, restore to online, the fixity audit, copy policies, retention (dry run, purge)
//! and legal holds. Reading health and copies: admin, operator, service (copies also whoever may
//! read the file's asset); running audits, policies, retention and holds: admin.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::error::ErrorBody;
use super::{ApiError, Body, Caller, Path, Query, S};
use crate::catalog::copies::{CopyRec, Hold, StorageEvent};
use crate::catalog::{Principal, Role};
use crate::storage::{AuditReport, Health, PolicyReport, RetentionReport, Storages};

type Res<T> = Result<T, ApiError>;
type J<T> = axum::Json<T>;

pub fn routes() -> Router<S> {
    Router::new()
        .route("/v1/storages", get(list_storages))
        .route("/v1/storages/events", get(storage_events))
        .route("/v1/storages/audit", post(run_audit))
        .route("/v1/storages/policies/run", post(run_policies))
        .route("/v1/storages/{id}", get(get_storage))
        .route("/v1/files/{id}/copies", get(file_copies))
        .route("/v1/files/{id}/restore", post(restore_file))
        .route("/v1/retention/dry-run", post(retention_dry_run))
        .route("/v1/retention/purge", post(retention_purge))
        .route(
            "/v1/assets/{id}/hold",
            get(get_hold).put(put_hold).delete(delete_hold),
        )
        .route("/v1/assets/{id}/tombstone", get(get_tombstone))
}

fn storages(st: &S) -> Res<&Arc<Storages>> {
    st.storages.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the storage service is not running",
        )
    })
}

/// Refuses an ingest of `need` bytes that would take the online storage past its refuse
/// threshold, before anything is written (`storage_full`, 409).
pub(crate) async fn room_for_ingest(st: &S, need: u64) -> Res<()> {
    if let Some(s) = st.storages.get() {
        s.room_for_ingest(need).await?;
    }
    Ok(())
}

fn reader(who: &Principal) -> Res<()> {
    if matches!(who.role, Role::Admin | Role::Operator | Role::Service) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "role {} may not see storages",
            who.role.as_str()
        )))
    }
}

fn admin(who: &Principal) -> Res<()> {
    if who.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "role {} may not run storage work",
            who.role.as_str()
        )))
    }
}

/// Every storage: role, reachability, used and free bytes, growth, days to full, alert level.
#[utoipa::path(get, path = "/v1/storages", tag = "storage",
    responses((status = 200, body = Vec<Health>), (status = 403, body = ErrorBody)))]
pub async fn list_storages(State(st): State<S>, c: Caller) -> Res<J<Vec<Health>>> {
    reader(&c.0)?;
    Ok(axum::Json(storages(&st)?.health().await?))
}

#[utoipa::path(get, path = "/v1/storages/{id}", tag = "storage", params(("id" = String, Path)),
    responses((status = 200, body = Health), (status = 404, body = ErrorBody)))]
pub async fn get_storage(State(st): State<S>, c: Caller, Path(id): Path<String>) -> Res<J<Health>> {
    reader(&c.0)?;
    storages(&st)?
        .health()
        .await?
        .into_iter()
        .find(|h| h.id == id)
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found(format!("storage {id:?} not found")))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Events after this id.
    #[serde(default)]
    pub after: i64,
    #[serde(default = "hundred")]
    pub limit: i64,
}

fn hundred() -> i64 {
    100
}

/// The storage event log: detections (`bad`, `missing`, `read_error`), repairs, copies, drops,
/// purges and alerts, oldest first.
#[utoipa::path(get, path = "/v1/storages/events", tag = "storage", params(EventsQuery),
    responses((status = 200, body = Vec<StorageEvent>), (status = 403, body = ErrorBody)))]
pub async fn storage_events(
    State(st): State<S>,
    c: Caller,
    Query(q): Query<EventsQuery>,
) -> Res<J<Vec<StorageEvent>>> {
    reader(&c.0)?;
    Ok(axum::Json(
        st.catalog
            .storage_events(q.after, q.limit.clamp(1, 1000))
            .await?,
    ))
}

/// The copies of a file: storage, key, size, SHA-256, state and when last verified.
#[utoipa::path(get, path = "/v1/files/{id}/copies", tag = "storage", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<CopyRec>), (status = 404, body = ErrorBody)))]
pub async fn file_copies(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<J<Vec<CopyRec>>> {
    st.catalog.file(&c.0, id).await?;
    if let Some(s) = st.storages.get() {
        s.sync_media_copies().await?;
    }
    Ok(axum::Json(st.catalog.copies_of_file(id).await?))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Restored {
    pub file_id: i64,
    pub online: bool,
}

/// Brings a file back to the online storage from a nearline or archive copy (verified).
#[utoipa::path(post, path = "/v1/files/{id}/restore", tag = "storage", params(("id" = i64, Path)),
    responses((status = 200, body = Restored), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn restore_file(State(st): State<S>, c: Caller, Path(id): Path<i64>) -> Res<J<Restored>> {
    st.catalog.file(&c.0, id).await?;
    if !matches!(c.0.role, Role::Admin | Role::Operator | Role::Service) {
        return Err(ApiError::forbidden("restoring needs an operator"));
    }
    storages(&st)?.ensure_online(id).await?;
    Ok(axum::Json(Restored {
        file_id: id,
        online: true,
    }))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Copies to check at most (least recently verified first).
    pub limit: Option<i64>,
}

/// Runs the fixity audit now: re-hashes copies under each storage's bandwidth cap, repairs bad
/// or missing copies from good ones and verifies the repair.
#[utoipa::path(post, path = "/v1/storages/audit", tag = "storage", params(AuditQuery),
    responses((status = 200, body = AuditReport), (status = 403, body = ErrorBody)))]
pub async fn run_audit(
    State(st): State<S>,
    c: Caller,
    Query(q): Query<AuditQuery>,
) -> Res<J<AuditReport>> {
    admin(&c.0)?;
    let limit = q.limit.unwrap_or(i64::MAX).max(1);
    Ok(axum::Json(storages(&st)?.audit(limit).await?))
}

/// Runs the copy policies now.
#[utoipa::path(post, path = "/v1/storages/policies/run", tag = "storage",
    responses((status = 200, body = PolicyReport), (status = 403, body = ErrorBody)))]
pub async fn run_policies(State(st): State<S>, c: Caller) -> Res<J<PolicyReport>> {
    admin(&c.0)?;
    Ok(axum::Json(storages(&st)?.run_policies().await?))
}

/// What the retention rules would purge and how much it frees; starts each new proposal's grace
/// period.
#[utoipa::path(post, path = "/v1/retention/dry-run", tag = "storage",
    responses((status = 200, body = RetentionReport), (status = 403, body = ErrorBody)))]
pub async fn retention_dry_run(State(st): State<S>, c: Caller) -> Res<J<RetentionReport>> {
    admin(&c.0)?;
    Ok(axum::Json(storages(&st)?.retention_dry_run().await?))
}

/// Purges what a dry run proposed at least a grace period ago and that is still unprotected
/// (no legal hold, no active rights window, not scheduled), leaving tombstones.
#[utoipa::path(post, path = "/v1/retention/purge", tag = "storage",
    responses((status = 200, body = RetentionReport), (status = 403, body = ErrorBody)))]
pub async fn retention_purge(State(st): State<S>, c: Caller) -> Res<J<RetentionReport>> {
    admin(&c.0)?;
    Ok(axum::Json(
        storages(&st)?.retention_purge(&c.0.username).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldInput {
    pub reason: String,
}

#[utoipa::path(get, path = "/v1/assets/{id}/hold", tag = "storage", params(("id" = i64, Path)),
    responses((status = 200, body = Hold), (status = 404, body = ErrorBody)))]
pub async fn get_hold(State(st): State<S>, c: Caller, Path(id): Path<i64>) -> Res<J<Hold>> {
    st.catalog.asset(&c.0, id).await?;
    st.catalog
        .hold(id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found(format!("asset {id} has no legal hold")))
}

/// Puts an asset on legal hold: never purged while held.
#[utoipa::path(put, path = "/v1/assets/{id}/hold", tag = "storage", params(("id" = i64, Path)),
    request_body = HoldInput,
    responses((status = 200, body = Hold), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_hold(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Body(i): Body<HoldInput>,
) -> Res<J<Hold>> {
    st.catalog.asset(&c.0, id).await?;
    admin(&c.0)?;
    if i.reason.trim().is_empty() || i.reason.len() > 1000 {
        return Err(ApiError {
            field: Some("reason".into()),
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "reason: 1-1000 characters",
            )
        });
    }
    st.catalog
        .set_hold(id, i.reason.trim(), &c.0.username)
        .await?;
    st.catalog
        .storage_event("hold_set", "", None, Some(id), i.reason.trim())
        .await?;
    st.catalog
        .hold(id)
        .await?
        .map(axum::Json)
        .ok_or_else(ApiError::internal)
}

#[utoipa::path(delete, path = "/v1/assets/{id}/hold", tag = "storage", params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_hold(State(st): State<S>, c: Caller, Path(id): Path<i64>) -> Res<StatusCode> {
    st.catalog.asset(&c.0, id).await?;
    admin(&c.0)?;
    if !st.catalog.clear_hold(id).await? {
        return Err(ApiError::not_found(format!("asset {id} has no legal hold")));
    }
    st.catalog
        .storage_event("hold_cleared", "", None, Some(id), &c.0.username)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What is left of a purged asset: its record, files and hashes, who purged it, when and why.
#[utoipa::path(get, path = "/v1/assets/{id}/tombstone", tag = "storage", params(("id" = i64, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn get_tombstone(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<J<serde_json::Value>> {
    admin(&c.0)?;
    st.catalog
        .tombstone(id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found(format!("no tombstone for asset {id}")))
}
