//! Records of resumable uploads (the API's tus endpoints): who started one, for which asset,
//! how long it is, how much of it is durable, when it expires, and what it became. The bytes
//! themselves are `ingest`'s; this module only keeps the state that must outlive a restart.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Catalog, CatalogError, Principal, Result};

/// A resumable upload's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRec {
    pub id: String,
    pub user_id: i64,
    /// The asset the file is for; `None`: a new asset is made at completion.
    pub asset_id: Option<i64>,
    pub length: u64,
    /// Bytes received and made durable.
    pub received: u64,
    pub filename: String,
    pub role: String,
    pub title: Option<String>,
    pub kind: Option<String>,
    pub allow_duplicate: bool,
    /// The `Upload-Metadata` header as sent.
    pub metadata: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// Asset and file it became, once complete.
    pub done: Option<(i64, i64)>,
}

/// What a new upload is for.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub asset_id: Option<i64>,
    pub length: u64,
    pub filename: String,
    pub role: String,
    pub title: Option<String>,
    pub kind: Option<String>,
    pub allow_duplicate: bool,
    pub metadata: String,
}

fn upload_of(r: &AnyRow) -> Result<UploadRec> {
    let done_asset: Option<i64> = r.try_get("done_asset_id")?;
    let done_file: Option<i64> = r.try_get("done_file_id")?;
    Ok(UploadRec {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        asset_id: r.try_get("asset_id")?,
        length: r.try_get::<i64, _>("length")?.max(0) as u64,
        received: r.try_get::<i64, _>("received")?.max(0) as u64,
        filename: r.try_get("filename")?,
        role: r.try_get("role")?,
        title: r.try_get("title")?,
        kind: r.try_get("kind")?,
        allow_duplicate: r.try_get::<i64, _>("allow_duplicate")? != 0,
        metadata: r.try_get("metadata")?,
        created_ms: r.try_get("created_ms")?,
        expires_ms: r.try_get("expires_ms")?,
        done: done_asset.zip(done_file),
    })
}

macro_rules! columns {
    () => {
        "id, user_id, asset_id, length, received, filename, role, title, kind, allow_duplicate, \
         metadata, created_ms, expires_ms, done_asset_id, done_file_id"
    };
}

impl Catalog {
    /// Records a new upload of `who`, expiring `expiry_ms` from now.
    pub async fn create_upload(
        &self,
        who: &Principal,
        n: &NewUpload,
        expiry_ms: i64,
    ) -> Result<UploadRec> {
        let id = super::access::new_secret("")
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(32)
            .collect::<String>();
        let now = self.now_ms();
        let length = i64::try_from(n.length)
            .map_err(|_| CatalogError::invalid("Upload-Length", "too large"))?;
        let r = sqlx::query(concat!(
            "INSERT INTO uploads (id, user_id, asset_id, length, received, filename, role, title, \
             kind, allow_duplicate, metadata, created_ms, updated_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $8, $9, $10, $11, $11, $12) RETURNING ",
            columns!()
        ))
        .bind(&id)
        .bind(who.user_id)
        .bind(n.asset_id)
        .bind(length)
        .bind(&n.filename)
        .bind(&n.role)
        .bind(n.title.as_deref())
        .bind(n.kind.as_deref())
        .bind(i64::from(n.allow_duplicate))
        .bind(&n.metadata)
        .bind(now)
        .bind(now.saturating_add(expiry_ms))
        .fetch_one(&self.pool)
        .await?;
        upload_of(&r)
    }

    /// An upload of `who`'s: another user's, an expired one or none at all is not found (the
    /// same answer, so that upload ids cannot be probed).
    pub async fn upload(&self, who: &Principal, id: &str) -> Result<UploadRec> {
        let r = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM uploads WHERE id = $1 AND user_id = $2 AND expires_ms > $3"
        ))
        .bind(id)
        .bind(who.user_id)
        .bind(self.now_ms())
        .fetch_optional(&self.pool)
        .await?;
        match r {
            Some(r) => upload_of(&r),
            None => Err(CatalogError::NotFound(format!("upload {id}"))),
        }
    }

    /// Records how many bytes are durable and pushes the expiry `expiry_ms` from now; returns
    /// the new expiry.
    pub async fn upload_progress(&self, id: &str, received: u64, expiry_ms: i64) -> Result<i64> {
        let now = self.now_ms();
        let expires = now.saturating_add(expiry_ms);
        sqlx::query(
            "UPDATE uploads SET received = $1, updated_ms = $2, expires_ms = $3 WHERE id = $4",
        )
        .bind(i64::try_from(received).unwrap_or(i64::MAX))
        .bind(now)
        .bind(expires)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(expires)
    }

    /// Records what a complete upload became.
    pub async fn upload_done(&self, id: &str, asset_id: i64, file_id: i64) -> Result<()> {
        sqlx::query("UPDATE uploads SET done_asset_id = $1, done_file_id = $2 WHERE id = $3")
            .bind(asset_id)
            .bind(file_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets an upload (terminated, refused at completion, or swept).
    pub async fn delete_upload(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ids of uploads past their expiry, at most `limit`.
    pub async fn expired_uploads(&self, limit: i64) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM uploads WHERE expires_ms <= $1 LIMIT $2")
            .bind(self.now_ms())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(CatalogError::from))
            .collect()
    }

    /// Ids of every upload still recorded (expired or not), to tell orphaned part files.
    pub async fn upload_ids(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM uploads")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(CatalogError::from))
            .collect()
    }
}
