//! The records of storage: each file's copies (storage, key, size, SHA-256, when verified), the
//! storage event log (detections, repairs, copies, purges), legal holds, retention proposals and
//! tombstones. Records only: `storage` reads and writes the bytes.

use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};

use super::{Catalog, Result};
use crate::config::storage::Selector;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CopyRec {
    pub id: i64,
    pub file_id: i64,
    pub asset_id: i64,
    pub storage: String,
    pub key: String,
    pub size: i64,
    pub sha256: String,
    /// `ok` (read back and equal to the file's size and hash), `bad` or `missing`.
    pub state: String,
    pub verified_ms: i64,
}

/// A file as the catalog knows it: what every copy must equal.
#[derive(Debug, Clone, Serialize)]
pub struct FileRef {
    pub file_id: i64,
    pub asset_id: i64,
    pub path: String,
    pub size: i64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StorageEvent {
    pub id: i64,
    pub ts_ms: i64,
    /// `bad`, `missing`, `repaired`, `repair_failed`, `unrepairable`, `copied`, `dropped`,
    /// `read_error`, `purged`, `hold_set`, `hold_cleared`, `alert`.
    pub kind: String,
    pub storage: String,
    pub file_id: Option<i64>,
    pub asset_id: Option<i64>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Hold {
    pub asset_id: i64,
    pub reason: String,
    pub set_by: String,
    pub set_ms: i64,
}

/// An asset as retention and policies see it.
#[derive(Debug, Clone, Serialize)]
pub struct AssetBrief {
    pub id: i64,
    pub house_id: String,
    pub title: String,
    pub kind: String,
    pub status: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Proposal {
    pub asset_id: i64,
    pub rule: String,
    pub bytes: i64,
    pub proposed_ms: i64,
}

const COPY_COLS: &str =
    "c.id, c.file_id, f.asset_id, c.storage, c.key, c.size, c.sha256, c.state, c.verified_ms";

fn copy_row(r: &sqlx::any::AnyRow) -> Result<CopyRec> {
    Ok(CopyRec {
        id: r.try_get(0)?,
        file_id: r.try_get(1)?,
        asset_id: r.try_get(2)?,
        storage: r.try_get(3)?,
        key: r.try_get(4)?,
        size: r.try_get(5)?,
        sha256: r.try_get(6)?,
        state: r.try_get(7)?,
        verified_ms: r.try_get(8)?,
    })
}

fn file_row(r: &sqlx::any::AnyRow) -> Result<FileRef> {
    Ok(FileRef {
        file_id: r.try_get(0)?,
        asset_id: r.try_get(1)?,
        path: r.try_get(2)?,
        size: r.try_get(3)?,
        sha256: r.try_get(4)?,
    })
}

impl Catalog {
    /// Files that have no copy record at all (recorded before storages, or just ingested).
    pub async fn files_without_copies(&self, limit: i64) -> Result<Vec<FileRef>> {
        let rows = sqlx::query(
            "SELECT f.id, f.asset_id, f.path, f.size, f.sha256 FROM files f \
             WHERE NOT EXISTS (SELECT 1 FROM copies c WHERE c.file_id = f.id) ORDER BY f.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(file_row).collect()
    }

    pub async fn file_ref(&self, file_id: i64) -> Result<Option<FileRef>> {
        let r = sqlx::query("SELECT id, asset_id, path, size, sha256 FROM files WHERE id = $1")
            .bind(file_id)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(file_row).transpose()
    }

    pub async fn files_of_asset(&self, asset_id: i64) -> Result<Vec<FileRef>> {
        let rows = sqlx::query(
            "SELECT id, asset_id, path, size, sha256 FROM files WHERE asset_id = $1 ORDER BY id",
        )
        .bind(asset_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(file_row).collect()
    }

    pub async fn copies_of_file(&self, file_id: i64) -> Result<Vec<CopyRec>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COPY_COLS} FROM copies c JOIN files f ON f.id = c.file_id \
             WHERE c.file_id = $1 ORDER BY c.id"
        )))
        .bind(file_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(copy_row).collect()
    }

    /// Every copy, least recently verified first (the audit's order).
    pub async fn copies_to_audit(&self, limit: i64) -> Result<Vec<CopyRec>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COPY_COLS} FROM copies c JOIN files f ON f.id = c.file_id \
             ORDER BY c.verified_ms, c.id LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(copy_row).collect()
    }

    /// Records a copy that was read back and found equal (`ok`), or what the audit found.
    pub async fn put_copy(
        &self,
        file_id: i64,
        storage: &str,
        key: &str,
        size: i64,
        sha256: &str,
        state: &str,
    ) -> Result<()> {
        let now = self.now_ms();
        sqlx::query(
            "INSERT INTO copies (file_id, storage, key, size, sha256, state, verified_ms, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (file_id, storage) DO UPDATE SET \
             key = excluded.key, size = excluded.size, sha256 = excluded.sha256, \
             state = excluded.state, verified_ms = excluded.verified_ms",
        )
        .bind(file_id)
        .bind(storage)
        .bind(key)
        .bind(size)
        .bind(sha256)
        .bind(state)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Puts copies first in the audit's order.
    pub async fn mark_unverified(&self, storage: &str, file_ids: &[i64]) -> Result<()> {
        for id in file_ids {
            sqlx::query("UPDATE copies SET verified_ms = 0 WHERE file_id = $1 AND storage = $2")
                .bind(id)
                .bind(storage)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    pub async fn delete_copy(&self, file_id: i64, storage: &str) -> Result<()> {
        sqlx::query("DELETE FROM copies WHERE file_id = $1 AND storage = $2")
            .bind(file_id)
            .bind(storage)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Bytes of the copies on each storage.
    pub async fn bytes_per_storage(&self) -> Result<Vec<(String, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT storage, CAST(COALESCE(SUM(size), 0) AS BIGINT), COUNT(*) FROM copies GROUP BY storage",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    pub async fn storage_event(
        &self,
        kind: &str,
        storage: &str,
        file_id: Option<i64>,
        asset_id: Option<i64>,
        detail: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO storage_events (ts_ms, kind, storage, file_id, asset_id, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(self.now_ms())
        .bind(kind)
        .bind(storage)
        .bind(file_id)
        .bind(asset_id)
        .bind(detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn storage_events(&self, after: i64, limit: i64) -> Result<Vec<StorageEvent>> {
        let rows = sqlx::query(
            "SELECT id, ts_ms, kind, storage, file_id, asset_id, detail FROM storage_events \
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StorageEvent {
                    id: r.try_get(0)?,
                    ts_ms: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    storage: r.try_get(3)?,
                    file_id: r.try_get(4)?,
                    asset_id: r.try_get(5)?,
                    detail: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// The assets (not purged) `s` selects, as of `now_ms`; rights conditions are the caller's.
    pub async fn select_assets(&self, s: &Selector, now_ms: i64) -> Result<Vec<AssetBrief>> {
        let mut sql = String::from(
            "SELECT a.id, a.house_id, a.title, a.kind, a.status, a.created_ms FROM assets a \
             WHERE a.status <> 'purged'",
        );
        let mut n = 0;
        let mut arg = |sql: &mut String, cond: &str| {
            n += 1;
            sql.push_str(&cond.replace('?', &format!("${n}")));
        };
        if s.kind.is_some() {
            arg(&mut sql, " AND a.kind = ?");
        }
        if s.status.is_some() {
            arg(&mut sql, " AND a.status = ?");
        }
        if s.tag.is_some() {
            arg(
                &mut sql,
                " AND EXISTS (SELECT 1 FROM asset_tags t WHERE t.asset_id = a.id AND t.tag = ?)",
            );
        }
        if s.collection.is_some() {
            arg(&mut sql, " AND EXISTS (SELECT 1 FROM collection_assets ca WHERE ca.asset_id = a.id AND ca.collection_id = ?)");
        }
        if s.older_than_days.is_some() {
            arg(&mut sql, " AND a.created_ms <= ?");
        }
        sql.push_str(" ORDER BY a.id");
        let mut q = sqlx::query(AssertSqlSafe(sql));
        if let Some(k) = &s.kind {
            q = q.bind(k.clone());
        }
        if let Some(st) = &s.status {
            q = q.bind(st.clone());
        }
        if let Some(t) = &s.tag {
            q = q.bind(t.clone());
        }
        if let Some(c) = s.collection {
            q = q.bind(c);
        }
        if let Some(d) = s.older_than_days {
            q = q.bind(now_ms - (d * 86_400_000.0) as i64);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(AssetBrief {
                    id: r.try_get(0)?,
                    house_id: r.try_get(1)?,
                    title: r.try_get(2)?,
                    kind: r.try_get(3)?,
                    status: r.try_get(4)?,
                    created_ms: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// The rights windows of an asset as (from, until) in ms, open ends as `None`.
    pub async fn rights_spans(&self, asset_id: i64) -> Result<Vec<(Option<i64>, Option<i64>)>> {
        let rows = sqlx::query(
            "SELECT licensed_from_ms, licensed_until_ms FROM rights_windows WHERE asset_id = $1",
        )
        .bind(asset_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    pub async fn set_hold(&self, asset_id: i64, reason: &str, by: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO legal_holds (asset_id, reason, set_by, set_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (asset_id) DO UPDATE SET reason = excluded.reason, \
             set_by = excluded.set_by, set_ms = excluded.set_ms",
        )
        .bind(asset_id)
        .bind(reason)
        .bind(by)
        .bind(self.now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn clear_hold(&self, asset_id: i64) -> Result<bool> {
        let r = sqlx::query("DELETE FROM legal_holds WHERE asset_id = $1")
            .bind(asset_id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn hold(&self, asset_id: i64) -> Result<Option<Hold>> {
        let r = sqlx::query(
            "SELECT asset_id, reason, set_by, set_ms FROM legal_holds WHERE asset_id = $1",
        )
        .bind(asset_id)
        .fetch_optional(&self.pool)
        .await?;
        r.map(|r| {
            Ok(Hold {
                asset_id: r.try_get(0)?,
                reason: r.try_get(1)?,
                set_by: r.try_get(2)?,
                set_ms: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Records that `rule` proposes the asset for purge; an older proposal keeps its time.
    pub async fn propose_purge(&self, asset_id: i64, rule: &str, bytes: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO retention_proposals (asset_id, rule, bytes, proposed_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (asset_id, rule) DO UPDATE SET bytes = excluded.bytes",
        )
        .bind(asset_id)
        .bind(rule)
        .bind(bytes)
        .bind(self.now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn proposals(&self, rule: &str) -> Result<Vec<Proposal>> {
        let rows = sqlx::query(
            "SELECT asset_id, rule, bytes, proposed_ms FROM retention_proposals WHERE rule = $1 ORDER BY asset_id",
        )
        .bind(rule)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Proposal {
                    asset_id: r.try_get(0)?,
                    rule: r.try_get(1)?,
                    bytes: r.try_get(2)?,
                    proposed_ms: r.try_get(3)?,
                })
            })
            .collect()
    }

    pub async fn withdraw_proposal(&self, asset_id: i64, rule: &str) -> Result<()> {
        sqlx::query("DELETE FROM retention_proposals WHERE asset_id = $1 AND rule = $2")
            .bind(asset_id)
            .bind(rule)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Writes the tombstone of an asset about to be purged: its record, its files with their
    /// hashes, who, when and why.
    pub async fn write_tombstone(&self, asset_id: i64, by: &str, why: &str) -> Result<i64> {
        let a = sqlx::query(
            "SELECT house_id, title, kind, status, created_ms FROM assets WHERE id = $1",
        )
        .bind(asset_id)
        .fetch_one(&self.pool)
        .await?;
        let files = self.files_of_asset(asset_id).await?;
        let bytes: i64 = files.iter().map(|f| f.size).sum();
        let house: String = a.try_get(0)?;
        let title: String = a.try_get(1)?;
        let meta = serde_json::json!({
            "kind": a.try_get::<String, _>(2)?,
            "status": a.try_get::<String, _>(3)?,
            "created_ms": a.try_get::<i64, _>(4)?,
        });
        sqlx::query(
            "INSERT INTO tombstones (asset_id, house_id, title, metadata, files, bytes, purged_by, purged_ms, why) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (asset_id) DO NOTHING",
        )
        .bind(asset_id)
        .bind(house)
        .bind(title)
        .bind(meta.to_string())
        .bind(serde_json::to_string(&files).unwrap_or_default())
        .bind(bytes)
        .bind(by)
        .bind(self.now_ms())
        .bind(why)
        .execute(&self.pool)
        .await?;
        Ok(bytes)
    }

    pub async fn tombstone(&self, asset_id: i64) -> Result<Option<serde_json::Value>> {
        let r = sqlx::query(
            "SELECT house_id, title, metadata, files, bytes, purged_by, purged_ms, why FROM tombstones WHERE asset_id = $1",
        )
        .bind(asset_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = r else { return Ok(None) };
        let meta: String = r.try_get(2)?;
        let files: String = r.try_get(3)?;
        Ok(Some(serde_json::json!({
            "asset_id": asset_id,
            "house_id": r.try_get::<String, _>(0)?,
            "title": r.try_get::<String, _>(1)?,
            "metadata": serde_json::from_str::<serde_json::Value>(&meta).unwrap_or_default(),
            "files": serde_json::from_str::<serde_json::Value>(&files).unwrap_or_default(),
            "bytes": r.try_get::<i64, _>(4)?,
            "purged_by": r.try_get::<String, _>(5)?,
            "purged_ms": r.try_get::<i64, _>(6)?,
            "why": r.try_get::<String, _>(7)?,
        })))
    }
}
