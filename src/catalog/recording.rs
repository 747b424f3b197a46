//! Live recordings as records: each piece of a recording is an asset (kind `live_recording`)
//! with one source file, and a row saying where it stands (`recording` while it grows, then
//! `done` or `failed`), its bytes and duration so far. The recorder itself lives in
//! `hub::record`; this is only what the catalog keeps of it.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::assets::{AssetInput, NewFile};
use super::{Catalog, Principal, Result};

/// One piece of a live recording.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Recording {
    pub id: i64,
    pub source_id: i64,
    pub source_name: String,
    /// The recording the piece belongs to (one per start, API or schedule).
    pub session: String,
    /// 1 for the first piece of a session, then 2, 3… at each `segment_s` cut.
    pub piece: i64,
    pub asset_id: i64,
    pub file_id: i64,
    pub path: String,
    /// `recording` (growing), `done` or `failed` (`error` says why; the part written is kept).
    pub state: String,
    pub bytes: i64,
    pub duration_s: f64,
    pub error: String,
    /// The workflow its steps (QC, proxies) run through once it is done.
    pub workflow: String,
    pub started: String,
    pub updated: String,
    pub ended: Option<String>,
}

fn rec_of(r: &AnyRow) -> Result<Recording> {
    let ended: Option<i64> = r.try_get("ended_ms")?;
    Ok(Recording {
        id: r.try_get("id")?,
        source_id: r.try_get("source_id")?,
        source_name: r.try_get("source_name")?,
        session: r.try_get("session")?,
        piece: r.try_get("piece")?,
        asset_id: r.try_get("asset_id")?,
        file_id: r.try_get("file_id")?,
        path: r.try_get("path")?,
        state: r.try_get("state")?,
        bytes: r.try_get("bytes")?,
        duration_s: r.try_get("duration_s")?,
        error: r.try_get("error")?,
        workflow: r.try_get("workflow")?,
        started: super::rfc3339(r.try_get("started_ms")?),
        updated: super::rfc3339(r.try_get("updated_ms")?),
        ended: ended.map(super::rfc3339),
    })
}

/// What a new piece is.
#[derive(Debug, Clone)]
pub struct NewPiece<'a> {
    pub source_id: i64,
    pub source_name: &'a str,
    pub session: &'a str,
    pub piece: i64,
    pub workflow: &'a str,
}

impl Catalog {
    /// A new growing piece: its asset (kind and status `live_recording`), its source file (the
    /// path it is being written to, no hash yet) and its row, in one transaction.
    pub async fn recording_start(
        &self,
        who: &Principal,
        input: &AssetInput,
        file: &NewFile,
        p: &NewPiece<'_>,
    ) -> Result<Recording> {
        self.check_creator(who)?;
        let input = AssetInput {
            kind: Some("live_recording".into()),
            status: Some("live_recording".into()),
            ..input.clone()
        };
        self.check_input(who, &input, true)?;
        let mut tx = self.begin().await?;
        let asset_id = self.insert_asset(&mut tx, who, &input, None).await?;
        let c1 = self
            .record(&mut tx, "asset", asset_id, "created", Some(asset_id))
            .await?;
        let (file_id, c2) = self.insert_file(&mut tx, asset_id, file).await?;
        let now = self.now_ms();
        let id: i64 = sqlx::query(
            "INSERT INTO live_recordings (source_id, source_name, session, piece, asset_id, \
             file_id, path, state, workflow, started_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, \
             $6, $7, 'recording', $8, $9, $9) RETURNING id",
        )
        .bind(p.source_id)
        .bind(p.source_name)
        .bind(p.session)
        .bind(p.piece)
        .bind(asset_id)
        .bind(file_id)
        .bind(&file.path)
        .bind(p.workflow)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let c3 = self
            .record(&mut tx, "live_recording", id, "created", Some(asset_id))
            .await?;
        tx.commit().await?;
        self.publish([c1, c2, c3]);
        self.recording(id).await
    }

    /// A growing piece's bytes and duration so far: its row, its file and an `updated` of its
    /// asset on the change feed.
    pub async fn recording_progress(&self, id: i64, bytes: i64, duration_s: f64) -> Result<()> {
        let r = self.recording(id).await?;
        let mut tx = self.begin().await?;
        let now = self.now_ms();
        sqlx::query(
            "UPDATE live_recordings SET bytes = $2, duration_s = $3, updated_ms = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(bytes)
        .bind(duration_s)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE files SET size = $2, duration_s = $3 WHERE id = $1")
            .bind(r.file_id)
            .bind(bytes)
            .bind(duration_s)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE assets SET version = version + 1, updated_ms = $2 WHERE id = $1")
            .bind(r.asset_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let c = self
            .record(&mut tx, "asset", r.asset_id, "updated", Some(r.asset_id))
            .await?;
        tx.commit().await?;
        self.publish([c]);
        Ok(())
    }

    /// A piece ends: its file's facts (hash, probe) as the ingest found them, its asset's new
    /// status, its row `done` or `failed` with why.
    pub async fn recording_end(
        &self,
        id: i64,
        file: &NewFile,
        status: &str,
        error: Option<&str>,
    ) -> Result<Recording> {
        let r = self.recording(id).await?;
        let mut tx = self.begin().await?;
        let now = self.now_ms();
        sqlx::query(
            "UPDATE files SET path = $2, size = $3, sha256 = $4, container = $5, video_codec = $6, \
             width = $7, height = $8, duration_s = $9, technical = $10 WHERE id = $1",
        )
        .bind(r.file_id)
        .bind(&file.path)
        .bind(file.size)
        .bind(&file.sha256)
        .bind(&file.container)
        .bind(&file.video_codec)
        .bind(file.width)
        .bind(file.height)
        .bind(file.duration_s)
        .bind(file.technical.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE live_recordings SET state = $2, bytes = $3, duration_s = $4, error = $5, \
             updated_ms = $6, ended_ms = $6 WHERE id = $1",
        )
        .bind(id)
        .bind(if error.is_some() { "failed" } else { "done" })
        .bind(file.size)
        .bind(file.duration_s)
        .bind(error.unwrap_or_default())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE assets SET status = $2, version = version + 1, updated_ms = $3 \
             WHERE id = $1 AND status = 'live_recording'",
        )
        .bind(r.asset_id)
        .bind(status)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let c1 = self
            .record(&mut tx, "file", r.file_id, "updated", Some(r.asset_id))
            .await?;
        let c2 = self
            .record(&mut tx, "asset", r.asset_id, "updated", Some(r.asset_id))
            .await?;
        let op = if error.is_some() { "failed" } else { "ended" };
        let c3 = self
            .record(&mut tx, "live_recording", id, op, Some(r.asset_id))
            .await?;
        tx.commit().await?;
        self.publish([c1, c2, c3]);
        self.recording(id).await
    }

    pub async fn recording(&self, id: i64) -> Result<Recording> {
        let r = sqlx::query("SELECT * FROM live_recordings WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| super::CatalogError::NotFound(format!("live recording {id}")))?;
        rec_of(&r)
    }

    pub(crate) async fn recording_of_asset(&self, asset_id: i64) -> Result<Option<Recording>> {
        let r = sqlx::query("SELECT * FROM live_recordings WHERE asset_id = $1")
            .bind(asset_id)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(rec_of).transpose()
    }

    /// A source's pieces, newest first (at most `limit`).
    pub async fn recordings_of(&self, source_id: i64, limit: i64) -> Result<Vec<Recording>> {
        let rows = sqlx::query(
            "SELECT * FROM live_recordings WHERE source_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(source_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rec_of).collect()
    }

    /// The pieces still marked growing (after a restart: the ones to close).
    pub async fn recordings_growing(&self) -> Result<Vec<Recording>> {
        let rows =
            sqlx::query("SELECT * FROM live_recordings WHERE state = 'recording' ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(rec_of).collect()
    }

    /// An event of a recording on the change feed (`op`: `gap`, `resumed`, …).
    pub async fn recording_event(&self, id: i64, asset_id: i64, op: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let c = self
            .record(&mut tx, "live_recording", id, op, Some(asset_id))
            .await?;
        tx.commit().await?;
        self.publish([c]);
        Ok(())
    }
}
