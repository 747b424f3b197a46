//! Review and approval (an asset, or one rendition, goes `in_review` → `approved` / `rejected`
//! by a user holding the approve right; comments anchored at a timecode) and the record of
//! deliveries to declared destinations (what went where, when, how it was verified). Each
//! change is on the change feed (`review`, `review_comment`, `delivery`).

use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Catalog, CatalogError, Perms, Principal, Result};

/// Whether an asset may go out, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Approval {
    /// Approved by user `by` at `at`.
    Approved {
        by: i64,
        at: String,
    },
    NotApproved {
        reason: String,
    },
}

impl Approval {
    pub fn is_approved(&self) -> bool {
        matches!(self, Approval::Approved { .. })
    }
}

/// The review state of an asset (file 0) or a rendition.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Review {
    pub asset_id: i64,
    /// 0: the asset as a whole.
    pub file_id: i64,
    /// `in_review`, `approved` or `rejected`.
    pub state: String,
    /// Who put it in review or decided.
    pub by: Option<i64>,
    pub reason: String,
    pub updated: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Comment {
    pub id: i64,
    pub asset_id: i64,
    pub file_id: i64,
    pub user_id: i64,
    /// SMPTE timecode at the asset's frame rate.
    pub timecode: String,
    /// Frames from 00:00:00:00.
    pub frame: i64,
    pub body: String,
    pub created: String,
}

/// A delivery to a declared destination.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub asset_id: i64,
    pub destination: String,
    /// `folder`, `sftp` or `pull`.
    pub kind: String,
    /// `queued`, `running`, `delivered`, `failed`, `cancelled` (pull: `ready`).
    pub state: String,
    pub job_id: Option<i64>,
    pub requested_by: Option<i64>,
    /// What was asked: each file's name there, size, SHA-256, profile.
    #[schema(value_type = Object)]
    pub files: Value,
    /// What was done: each file with the bytes sent and how it was verified at the far end.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub error: String,
    pub created: String,
    pub finished: Option<String>,
}

fn review_of(r: &AnyRow) -> Result<Review> {
    Ok(Review {
        asset_id: r.try_get("asset_id")?,
        file_id: r.try_get("file_id")?,
        state: r.try_get("state")?,
        by: r.try_get("by_user")?,
        reason: r.try_get("reason")?,
        updated: super::rfc3339(r.try_get("updated_ms")?),
    })
}

/// A delivery's columns with its job's state: a queued delivery shows `running` while its job
/// runs, and `cancelled` when its job was cancelled.
const DELIVERY_SQL: &str = "SELECT d.*, j.state AS job_state FROM deliveries d \
     LEFT JOIN jobs j ON j.id = d.job_id";

fn delivery_of(r: &AnyRow) -> Result<Delivery> {
    let files: String = r.try_get("files")?;
    let result: String = r.try_get("result")?;
    let mut state: String = r.try_get("state")?;
    if state == "queued" {
        match r.try_get::<Option<String>, _>("job_state")?.as_deref() {
            Some("running") => state = "running".into(),
            Some("cancelled") => state = "cancelled".into(),
            _ => {}
        }
    }
    Ok(Delivery {
        id: r.try_get("id")?,
        asset_id: r.try_get("asset_id")?,
        destination: r.try_get("destination")?,
        kind: r.try_get("kind")?,
        state,
        job_id: r.try_get("job_id")?,
        requested_by: r.try_get("requested_by")?,
        files: serde_json::from_str(&files).unwrap_or(Value::Null),
        result: serde_json::from_str(&result).ok(),
        error: r.try_get("error")?,
        created: super::rfc3339(r.try_get("created_ms")?),
        finished: r
            .try_get::<Option<i64>, _>("finished_ms")?
            .map(super::rfc3339),
    })
}

impl Catalog {
    /// Whether the asset as a whole is approved (the check a delivery and the playout
    /// schedule make); when not, the reason in words.
    pub async fn is_approved(&self, asset_id: i64) -> Result<Approval> {
        self.is_approved_file(asset_id, 0).await
    }

    /// Whether a rendition (`file_id`, or the asset as a whole with 0) is approved.
    pub async fn is_approved_file(&self, asset_id: i64, file_id: i64) -> Result<Approval> {
        let r = sqlx::query(
            "SELECT state, by_user, reason, updated_ms FROM reviews WHERE asset_id = $1 \
             AND file_id = $2",
        )
        .bind(asset_id)
        .bind(file_id)
        .fetch_optional(&self.pool)
        .await?;
        let asset_id = if file_id == 0 {
            format!("asset {asset_id}")
        } else {
            format!("file {file_id} of asset {asset_id}")
        };
        let Some(r) = r else {
            return Ok(Approval::NotApproved {
                reason: format!("{asset_id} was never put in review, so never approved"),
            });
        };
        let state: String = r.try_get(0)?;
        let by: Option<i64> = r.try_get(1)?;
        let reason: String = r.try_get(2)?;
        let at = super::rfc3339(r.try_get(3)?);
        Ok(match state.as_str() {
            "approved" => Approval::Approved {
                by: by.unwrap_or(0),
                at,
            },
            "rejected" => Approval::NotApproved {
                reason: format!(
                    "{asset_id} was rejected by user {} at {at}: {reason}",
                    by.unwrap_or(0)
                ),
            },
            _ => Approval::NotApproved {
                reason: format!("{asset_id} is in review since {at}, not yet approved"),
            },
        })
    }

    /// The review states of an asset and its renditions (needs read).
    pub async fn reviews(&self, who: &Principal, asset_id: i64) -> Result<Vec<Review>> {
        self.require(who, asset_id, Perms::READ).await?;
        let rows = sqlx::query("SELECT * FROM reviews WHERE asset_id = $1 ORDER BY file_id")
            .bind(asset_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(review_of).collect()
    }

    /// Every review decision of an asset, in order (needs read).
    pub async fn review_history(&self, who: &Principal, asset_id: i64) -> Result<Vec<Review>> {
        self.require(who, asset_id, Perms::READ).await?;
        let rows = sqlx::query(
            "SELECT asset_id, file_id, state, by_user, reason, at_ms AS updated_ms \
             FROM review_history WHERE asset_id = $1 ORDER BY id LIMIT 10000",
        )
        .bind(asset_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(review_of).collect()
    }

    /// Moves an asset (`file_id` 0) or a rendition to `to`: `in_review` needs write on the
    /// asset (from nothing, `rejected` or `approved`: a new version goes back in review);
    /// `approved` and `rejected` need the approve right and an asset in review; a rejection
    /// gives its reason.
    pub async fn set_review(
        &self,
        who: &Principal,
        asset_id: i64,
        file_id: i64,
        to: &str,
        reason: &str,
    ) -> Result<Review> {
        let need = match to {
            "in_review" => Perms::WRITE,
            "approved" | "rejected" => Perms::APPROVE,
            other => {
                return Err(CatalogError::invalid(
                    "state",
                    format!("{other:?} is not in_review, approved or rejected"),
                ))
            }
        };
        let perms = self
            .asset_perms(who, asset_id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("asset {asset_id}")))?;
        if !perms.has(need) {
            return Err(CatalogError::Forbidden(if need == Perms::APPROVE {
                format!("no approve right on asset {asset_id}")
            } else {
                format!("no write right on asset {asset_id}")
            }));
        }
        if to == "rejected" && reason.trim().is_empty() {
            return Err(CatalogError::invalid(
                "reason",
                "a rejection says why (reason)",
            ));
        }
        if reason.len() > 4000 {
            return Err(CatalogError::invalid("reason", "at most 4000 bytes"));
        }
        if file_id != 0 {
            let owner: Option<i64> = sqlx::query("SELECT asset_id FROM files WHERE id = $1")
                .bind(file_id)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
            if owner != Some(asset_id) {
                return Err(CatalogError::invalid(
                    "file_id",
                    format!("file {file_id} is not a file of asset {asset_id}"),
                ));
            }
        }
        let mut tx = self.begin().await?;
        let cur: Option<String> =
            sqlx::query("SELECT state FROM reviews WHERE asset_id = $1 AND file_id = $2")
                .bind(asset_id)
                .bind(file_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
        match (cur.as_deref(), to) {
            (Some("in_review"), "in_review") => {
                return Err(CatalogError::Conflict(format!(
                    "asset {asset_id} is already in review"
                )))
            }
            (Some("in_review"), _) | (_, "in_review") => {}
            (c, _) => {
                return Err(CatalogError::Conflict(format!(
                    "asset {asset_id} is {}: only an asset in review is approved or rejected",
                    c.unwrap_or("not in review")
                )))
            }
        }
        let now = self.now_ms();
        sqlx::query(
            "INSERT INTO reviews (asset_id, file_id, state, by_user, reason, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (asset_id, file_id) DO UPDATE SET \
             state = excluded.state, by_user = excluded.by_user, reason = excluded.reason, \
             updated_ms = excluded.updated_ms",
        )
        .bind(asset_id)
        .bind(file_id)
        .bind(to)
        .bind(who.user_id)
        .bind(reason)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let id: i64 = sqlx::query(
            "INSERT INTO review_history (asset_id, file_id, state, by_user, reason, at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(asset_id)
        .bind(file_id)
        .bind(to)
        .bind(who.user_id)
        .bind(reason)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let c = self
            .record(&mut tx, "review", id, "updated", Some(asset_id))
            .await?;
        tx.commit().await?;
        self.publish([c]);
        Ok(Review {
            asset_id,
            file_id,
            state: to.into(),
            by: Some(who.user_id),
            reason: reason.into(),
            updated: super::rfc3339(now),
        })
    }

    /// A comment at a timecode of the asset's media (needs read: reviewers comment).
    pub async fn add_comment(
        &self,
        who: &Principal,
        asset_id: i64,
        file_id: i64,
        timecode: &str,
        body: &str,
    ) -> Result<Comment> {
        self.require(who, asset_id, Perms::READ).await?;
        if body.trim().is_empty() || body.len() > 8000 {
            return Err(CatalogError::invalid("body", "1-8000 bytes of text"));
        }
        let timing = self.timing(asset_id).await?;
        let (tc, frame) = super::mam::frame_of("timecode", timecode, timing)?;
        let now = self.now_ms();
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO review_comments (asset_id, file_id, user_id, timecode, frame, body, \
             created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(asset_id)
        .bind(file_id)
        .bind(who.user_id)
        .bind(&tc)
        .bind(frame as i64)
        .bind(body)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let c = self
            .record(&mut tx, "review_comment", id, "created", Some(asset_id))
            .await?;
        tx.commit().await?;
        self.publish([c]);
        Ok(Comment {
            id,
            asset_id,
            file_id,
            user_id: who.user_id,
            timecode: tc,
            frame: frame as i64,
            body: body.into(),
            created: super::rfc3339(now),
        })
    }

    /// An asset's comments in timecode order.
    pub async fn comments(&self, who: &Principal, asset_id: i64) -> Result<Vec<Comment>> {
        self.require(who, asset_id, Perms::READ).await?;
        let rows = sqlx::query(
            "SELECT * FROM review_comments WHERE asset_id = $1 ORDER BY frame, id LIMIT 10000",
        )
        .bind(asset_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Comment {
                    id: r.try_get("id")?,
                    asset_id: r.try_get("asset_id")?,
                    file_id: r.try_get("file_id")?,
                    user_id: r.try_get("user_id")?,
                    timecode: r.try_get("timecode")?,
                    frame: r.try_get("frame")?,
                    body: r.try_get("body")?,
                    created: super::rfc3339(r.try_get("created_ms")?),
                })
            })
            .collect()
    }

    /// Records a delivery asked for (`state` `queued`, or `ready` for a pull destination).
    pub async fn create_delivery(
        &self,
        who: &Principal,
        asset_id: i64,
        destination: &str,
        kind: &str,
        state: &str,
        files: &Value,
    ) -> Result<Delivery> {
        let now = self.now_ms();
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO deliveries (asset_id, destination, kind, state, requested_by, files, \
             created_ms, finished_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(asset_id)
        .bind(destination)
        .bind(kind)
        .bind(state)
        .bind(who.user_id)
        .bind(files.to_string())
        .bind(now)
        .bind((state == "ready").then_some(now))
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let c = self
            .record(&mut tx, "delivery", id, "created", Some(asset_id))
            .await?;
        tx.commit().await?;
        self.publish([c]);
        self.delivery(id).await
    }

    /// The job that carries out delivery `id`.
    pub async fn set_delivery_job(&self, id: i64, job_id: i64) -> Result<()> {
        sqlx::query("UPDATE deliveries SET job_id = $2 WHERE id = $1")
            .bind(id)
            .bind(job_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The outcome of delivery `id`: `delivered` with its job's result, or `failed` with the
    /// reason (for good: the attempts are spent).
    pub async fn finish_delivery(
        &self,
        id: i64,
        result: Option<&Value>,
        error: &str,
    ) -> Result<()> {
        let now = self.now_ms();
        let mut tx = self.begin().await?;
        let asset: Option<i64> = sqlx::query(
            "UPDATE deliveries SET state = $2, result = $3, error = $4, finished_ms = $5 \
             WHERE id = $1 RETURNING asset_id",
        )
        .bind(id)
        .bind(if result.is_some() {
            "delivered"
        } else {
            "failed"
        })
        .bind(result.map_or_else(String::new, Value::to_string))
        .bind(error)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
        let Some(asset) = asset else {
            return Ok(());
        };
        let c = self
            .record(&mut tx, "delivery", id, "updated", Some(asset))
            .await?;
        tx.commit().await?;
        self.publish([c]);
        Ok(())
    }

    pub async fn delivery(&self, id: i64) -> Result<Delivery> {
        let r = sqlx::query(AssertSqlSafe(format!("{DELIVERY_SQL} WHERE d.id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("delivery {id}")))?;
        delivery_of(&r)
    }

    /// The deliveries of an asset, newest first (needs read).
    pub async fn deliveries(&self, who: &Principal, asset_id: i64) -> Result<Vec<Delivery>> {
        self.require(who, asset_id, Perms::READ).await?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{DELIVERY_SQL} WHERE d.asset_id = $1 ORDER BY d.id DESC LIMIT 1000"
        )))
        .bind(asset_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_of).collect()
    }
}
