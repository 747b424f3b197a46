//! Review and approval over HTTP: put an asset (or a rendition) in review, approve or reject it
//! (the approve right), comments at a timecode, whether it is approved (what deliveries and the
//! playout schedule check). Each change notifies the configured webhooks and e-mail addresses
//! through notify jobs (retried with backoff).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::ErrorBody;
use super::{ApiError, Body, Caller, Path, S};
use crate::catalog::review::{Approval, Comment, Review};
use crate::catalog::Principal;

type Res<T> = Result<T, ApiError>;

pub fn routes() -> Router<S> {
    Router::new()
        .route("/v1/assets/{id}/review", get(get_review).post(submit))
        .route("/v1/assets/{id}/review/approve", post(approve))
        .route("/v1/assets/{id}/review/reject", post(reject))
        .route(
            "/v1/assets/{id}/comments",
            get(list_comments).post(add_comment),
        )
        .route("/v1/assets/{id}/approval", get(approval))
}

/// An asset's review: the states of the asset (`file_id` 0) and its renditions, every decision
/// in order, and whether it may go out.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReviewView {
    pub states: Vec<Review>,
    pub history: Vec<Review>,
    pub approval: Approval,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Decision {
    /// A rendition; absent or 0: the asset as a whole.
    pub file_id: i64,
    /// Why: required to reject.
    pub reason: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentInput {
    /// `HH:MM:SS:FF` at the asset's frame rate, within its media.
    pub timecode: String,
    pub body: String,
    #[serde(default)]
    pub file_id: i64,
}

#[utoipa::path(get, path = "/v1/assets/{id}/review", tag = "review", params(("id" = i64, Path)),
    responses((status = 200, body = ReviewView)))]
pub async fn get_review(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<ReviewView>> {
    Ok(axum::Json(ReviewView {
        states: st.catalog.reviews(&c.0, id).await?,
        history: st.catalog.review_history(&c.0, id).await?,
        approval: st.catalog.is_approved(id).await?,
    }))
}

/// Whether an asset is approved, with the reason when not: what the playout schedule and the
/// deliveries check (`state`: `approved` or `not_approved`).
#[utoipa::path(get, path = "/v1/assets/{id}/approval", tag = "review", params(("id" = i64, Path)),
    responses((status = 200, body = Approval)))]
pub async fn approval(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<Approval>> {
    st.catalog
        .require(&c.0, id, crate::catalog::Perms::READ)
        .await?;
    Ok(axum::Json(st.catalog.is_approved(id).await?))
}

async fn change(st: S, who: &Principal, id: i64, to: &str, d: Decision) -> Res<Response> {
    let r = st
        .catalog
        .set_review(who, id, d.file_id, to, &d.reason)
        .await?;
    notify(&st, who, id, &json!({"event": "review", "review": r})).await;
    Ok((StatusCode::OK, axum::Json(r)).into_response())
}

/// Puts the asset (or `file_id`) in review: needs the write right.
#[utoipa::path(post, path = "/v1/assets/{id}/review", tag = "review", params(("id" = i64, Path)),
    request_body = Decision, responses((status = 200, body = Review), (status = 409, body = ErrorBody)))]
pub async fn submit(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Body(d): Body<Decision>,
) -> Res<Response> {
    change(st, &c.0, id, "in_review", d).await
}

/// Approves the asset (or `file_id`) in review: needs the approve right (a grant, or the
/// operator and admin roles; owning the asset is not enough).
#[utoipa::path(post, path = "/v1/assets/{id}/review/approve", tag = "review",
    params(("id" = i64, Path)), request_body = Decision,
    responses((status = 200, body = Review), (status = 409, body = ErrorBody)))]
pub async fn approve(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Body(d): Body<Decision>,
) -> Res<Response> {
    change(st, &c.0, id, "approved", d).await
}

/// Rejects the asset (or `file_id`) in review, saying why: needs the approve right.
#[utoipa::path(post, path = "/v1/assets/{id}/review/reject", tag = "review",
    params(("id" = i64, Path)), request_body = Decision,
    responses((status = 200, body = Review), (status = 409, body = ErrorBody)))]
pub async fn reject(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Body(d): Body<Decision>,
) -> Res<Response> {
    change(st, &c.0, id, "rejected", d).await
}

#[utoipa::path(get, path = "/v1/assets/{id}/comments", tag = "review", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<Comment>)))]
pub async fn list_comments(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<Vec<Comment>>> {
    Ok(axum::Json(st.catalog.comments(&c.0, id).await?))
}

/// A review comment anchored at a timecode of the asset's media: needs the read right.
#[utoipa::path(post, path = "/v1/assets/{id}/comments", tag = "review", params(("id" = i64, Path)),
    request_body = CommentInput, responses((status = 201, body = Comment)))]
pub async fn add_comment(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Body(i): Body<CommentInput>,
) -> Res<Response> {
    let cm = st
        .catalog
        .add_comment(&c.0, id, i.file_id, &i.timecode, &i.body)
        .await?;
    notify(
        &st,
        &c.0,
        id,
        &json!({"event": "review_comment", "comment": cm}),
    )
    .await;
    Ok((StatusCode::CREATED, axum::Json(cm)).into_response())
}

/// Queues the notifications of a review change: a webhook POST each, one e-mail to the
/// addresses. Best-effort here (the change is made); each job retries with backoff.
async fn notify(st: &S, who: &Principal, asset_id: i64, event: &serde_json::Value) {
    let r = &st.cfg.delivery.review;
    let title = st
        .catalog
        .asset(who, asset_id)
        .await
        .map(|a| format!("{} {}", a.house_id, a.title))
        .unwrap_or_else(|_| format!("asset {asset_id}"));
    let mut event = event.clone();
    event["asset_id"] = json!(asset_id);
    event["asset"] = json!(title);
    event["by"] = json!(who.username);
    let mut jobs: Vec<serde_json::Value> = r
        .webhooks
        .iter()
        .map(|u| json!({"url": u, "event": event}))
        .collect();
    if !r.smtp.is_empty() && !r.emails.is_empty() {
        let what = match (event["event"].as_str(), event["review"]["state"].as_str()) {
            (Some("review_comment"), _) => format!(
                "comment at {}: {}",
                event["comment"]["timecode"].as_str().unwrap_or("?"),
                event["comment"]["body"].as_str().unwrap_or("")
            ),
            (_, Some(s)) => {
                let reason = event["review"]["reason"].as_str().unwrap_or("");
                if reason.is_empty() {
                    s.replace('_', " ")
                } else {
                    format!("{}: {reason}", s.replace('_', " "))
                }
            }
            _ => "changed".into(),
        };
        jobs.push(json!({"mail": {
            "relay": r.smtp,
            "starttls": r.smtp_starttls,
            "ca_file": r.smtp_ca_file,
            "user": r.smtp_user,
            "password_file": r.smtp_password_file,
            "from": r.mail_from,
            "to": r.emails,
            "subject": format!("[antenne] {title}: {}", what.lines().next().unwrap_or("")),
            "body": format!("{title}\n\n{what}\n\nby {}\n", who.username),
        }}));
    }
    for params in jobs {
        let job = crate::jobs::NewJob {
            kind: "notify".into(),
            priority: 0,
            max_attempts: 5,
            asset_id: Some(asset_id),
            workflow: String::new(),
            idempotency_key: None,
            params,
            gpu_only: false,
        };
        if let Err(e) = st.queue.enqueue(&job).await {
            tracing::warn!(asset = asset_id, error = %e, "review: cannot queue a notification");
        }
    }
}
