//! Playout channels, their rundowns and their as-run logs as records: a channel's settings and
//! a rundown's items are JSON that the playout service validated; what they mean is its business.
//! Also the catalog's view of a scheduled asset (status, file, duration, rights windows).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Catalog, CatalogError, Change, Result};

/// One stored channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRow {
    pub id: i64,
    pub name: String,
    /// The settings, as JSON.
    pub settings: String,
    /// `config` (declared in antenne.toml) or `api`.
    pub origin: String,
    pub running: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
}

fn channel_of(r: &AnyRow) -> Result<ChannelRow> {
    Ok(ChannelRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        settings: r.try_get("settings")?,
        origin: r.try_get("origin")?,
        running: r.try_get::<i64, _>("running")? != 0,
        created_ms: r.try_get("created_ms")?,
        updated_ms: r.try_get("updated_ms")?,
    })
}

/// One as-run record (frames of the channel's house rate from its epoch).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AsRunRow {
    pub id: i64,
    pub channel_id: i64,
    pub item: String,
    pub kind: String,
    pub title: String,
    pub asset_id: Option<i64>,
    pub house_id: String,
    pub scheduled_start_frame: i64,
    pub scheduled_frames: i64,
    pub actual_start_frame: i64,
    pub actual_frames: i64,
    pub substitution: Option<String>,
    pub recorded_ms: i64,
}

/// What playout needs to know of a scheduled asset.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledAsset {
    pub id: i64,
    pub house_id: String,
    pub title: String,
    pub status: String,
    /// The file to air: the house file, else the source, else any but a proxy ("" if none).
    pub path: String,
    pub duration_s: f64,
    pub windows: Vec<ScheduledWindow>,
}

/// A rights window of a scheduled asset (Unix ms; empty lists: everywhere).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledWindow {
    pub from_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub territories: Vec<String>,
    pub platforms: Vec<String>,
}

impl Catalog {
    pub async fn channels(&self) -> Result<Vec<ChannelRow>> {
        let rows = sqlx::query("SELECT * FROM playout_channels ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(channel_of).collect()
    }

    pub async fn channel(&self, id: i64) -> Result<ChannelRow> {
        let r = sqlx::query("SELECT * FROM playout_channels WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("channel {id}")))?;
        channel_of(&r)
    }

    /// Creates (`id` None) or replaces a channel; a change on the feed either way.
    pub async fn channel_put(
        &self,
        id: Option<i64>,
        name: &str,
        settings: &str,
        origin: &str,
        running: bool,
    ) -> Result<ChannelRow> {
        let now = self.now_ms();
        let taken = |e: sqlx::Error| {
            if e.as_database_error()
                .is_some_and(|d| d.is_unique_violation())
            {
                CatalogError::Conflict(format!("a channel is named {name:?} already"))
            } else {
                e.into()
            }
        };
        let mut tx = self.begin().await?;
        let (id, op) = match id {
            None => {
                let id: i64 = sqlx::query(
                    "INSERT INTO playout_channels (name, settings, origin, running, created_ms, \
                     updated_ms) VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
                )
                .bind(name)
                .bind(settings)
                .bind(origin)
                .bind(i64::from(running))
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(taken)?
                .try_get(0)?;
                (id, "created")
            }
            Some(id) => {
                let n = sqlx::query(
                    "UPDATE playout_channels SET name = $2, settings = $3, origin = $4, \
                     running = $5, updated_ms = $6 WHERE id = $1",
                )
                .bind(id)
                .bind(name)
                .bind(settings)
                .bind(origin)
                .bind(i64::from(running))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(taken)?
                .rows_affected();
                if n == 0 {
                    return Err(CatalogError::NotFound(format!("channel {id}")));
                }
                (id, "updated")
            }
        };
        let c = self.record(&mut tx, "channel", id, op, None).await?;
        tx.commit().await?;
        self.publish([c]);
        self.channel(id).await
    }

    pub async fn channel_set_running(&self, id: i64, running: bool) -> Result<()> {
        let n = sqlx::query("UPDATE playout_channels SET running = $2 WHERE id = $1")
            .bind(id)
            .bind(i64::from(running))
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(CatalogError::NotFound(format!("channel {id}")));
        }
        Ok(())
    }

    /// Deletes a channel with its rundown and as-run log.
    pub async fn channel_delete(&self, id: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        for t in ["playout_asrun", "playout_schedules"] {
            // Table names from this list only.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {t} WHERE channel_id = $1"
            )))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        let n = sqlx::query("DELETE FROM playout_channels WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(CatalogError::NotFound(format!("channel {id}")));
        }
        let c = self.record(&mut tx, "channel", id, "deleted", None).await?;
        tx.commit().await?;
        self.publish([c]);
        Ok(())
    }

    /// A channel's rundown (its items as JSON) and version; `("[]", 0)` when it has none.
    pub async fn schedule(&self, channel_id: i64) -> Result<(String, i64)> {
        let r = sqlx::query("SELECT items, version FROM playout_schedules WHERE channel_id = $1")
            .bind(channel_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match r {
            Some(r) => (r.try_get("items")?, r.try_get("version")?),
            None => ("[]".into(), 0),
        })
    }

    /// Replaces a channel's rundown when its version is still `expect` (else a conflict: someone
    /// changed it meanwhile); the new version, and a change (`schedule`) on the feed.
    pub async fn schedule_put(&self, channel_id: i64, items: &str, expect: i64) -> Result<i64> {
        let now = self.now_ms();
        let mut tx = self.begin().await?;
        let cur: Option<i64> =
            sqlx::query("SELECT version FROM playout_schedules WHERE channel_id = $1")
                .bind(channel_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
        if cur.unwrap_or(0) != expect {
            return Err(CatalogError::Conflict(format!(
                "the schedule of channel {channel_id} changed meanwhile (version {}, not {expect})",
                cur.unwrap_or(0)
            )));
        }
        let version = expect + 1;
        if cur.is_some() {
            sqlx::query(
                "UPDATE playout_schedules SET items = $2, version = $3, updated_ms = $4 \
                 WHERE channel_id = $1",
            )
            .bind(channel_id)
            .bind(items)
            .bind(version)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "INSERT INTO playout_schedules (channel_id, items, version, updated_ms) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(channel_id)
            .bind(items)
            .bind(version)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if e.as_database_error()
                    .is_some_and(|d| d.is_foreign_key_violation())
                {
                    CatalogError::NotFound(format!("channel {channel_id}"))
                } else {
                    e.into()
                }
            })?;
        }
        let c = self
            .record(&mut tx, "schedule", channel_id, "updated", None)
            .await?;
        tx.commit().await?;
        self.publish([c]);
        Ok(version)
    }

    /// A playout event on the change feed (object `channel` or `schedule`, op e.g. `warning`,
    /// `started`, `stopped`), with the asset concerned.
    pub async fn playout_event(
        &self,
        object: &str,
        id: i64,
        op: &str,
        asset_id: Option<i64>,
    ) -> Result<Change> {
        let mut tx = self.begin().await?;
        let c = self.record(&mut tx, object, id, op, asset_id).await?;
        tx.commit().await?;
        self.publish([c.clone()]);
        Ok(c)
    }

    pub async fn asrun_add(&self, r: &AsRunRow) -> Result<i64> {
        let now = self.now_ms();
        let id: i64 = sqlx::query(
            "INSERT INTO playout_asrun (channel_id, item, kind, title, asset_id, house_id, \
             scheduled_start_frame, scheduled_frames, actual_start_frame, actual_frames, \
             substitution, recorded_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             RETURNING id",
        )
        .bind(r.channel_id)
        .bind(&r.item)
        .bind(&r.kind)
        .bind(&r.title)
        .bind(r.asset_id)
        .bind(&r.house_id)
        .bind(r.scheduled_start_frame)
        .bind(r.scheduled_frames)
        .bind(r.actual_start_frame)
        .bind(r.actual_frames)
        .bind(r.substitution.as_deref())
        .bind(now)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(id)
    }

    /// A channel's as-run records that started in `[from, until)` (frames), oldest first.
    pub async fn asrun(
        &self,
        channel_id: i64,
        from: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<AsRunRow>> {
        let rows = sqlx::query(
            "SELECT * FROM playout_asrun WHERE channel_id = $1 AND actual_start_frame >= $2 \
             AND actual_start_frame < $3 ORDER BY actual_start_frame, id LIMIT $4",
        )
        .bind(channel_id)
        .bind(from)
        .bind(until)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AsRunRow {
                    id: r.try_get("id")?,
                    channel_id: r.try_get("channel_id")?,
                    item: r.try_get("item")?,
                    kind: r.try_get("kind")?,
                    title: r.try_get("title")?,
                    asset_id: r.try_get("asset_id")?,
                    house_id: r.try_get("house_id")?,
                    scheduled_start_frame: r.try_get("scheduled_start_frame")?,
                    scheduled_frames: r.try_get("scheduled_frames")?,
                    actual_start_frame: r.try_get("actual_start_frame")?,
                    actual_frames: r.try_get("actual_frames")?,
                    substitution: r.try_get("substitution")?,
                    recorded_ms: r.try_get("recorded_ms")?,
                })
            })
            .collect()
    }

    /// The asset with this catalog id or house id, as playout sees it; `None` when absent.
    pub async fn scheduled_asset(
        &self,
        id: Option<i64>,
        house_id: Option<&str>,
    ) -> Result<Option<ScheduledAsset>> {
        let r = match (id, house_id) {
            (Some(id), _) => {
                sqlx::query("SELECT id, house_id, title, status FROM assets WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
            }
            (None, Some(h)) => {
                sqlx::query("SELECT id, house_id, title, status FROM assets WHERE house_id = $1")
                    .bind(h)
                    .fetch_optional(&self.pool)
                    .await?
            }
            (None, None) => None,
        };
        let Some(r) = r else { return Ok(None) };
        let id: i64 = r.try_get("id")?;
        let files =
            sqlx::query("SELECT role, path, duration_s FROM files WHERE asset_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        let mut best: Option<(u8, String, f64)> = None;
        for f in &files {
            let role: String = f.try_get("role")?;
            let rank = match role.as_str() {
                "house" => 0,
                "source" => 1,
                "proxy" => continue,
                _ => 2,
            };
            if best.as_ref().is_none_or(|b| rank < b.0) {
                best = Some((rank, f.try_get("path")?, f.try_get("duration_s")?));
            }
        }
        let list = |s: String| -> Vec<String> {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect()
        };
        let windows = sqlx::query(
            "SELECT licensed_from_ms, licensed_until_ms, territories, platforms \
             FROM rights_windows WHERE asset_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|w| {
            Ok(ScheduledWindow {
                from_ms: w.try_get("licensed_from_ms")?,
                until_ms: w.try_get("licensed_until_ms")?,
                territories: list(w.try_get("territories")?),
                platforms: list(w.try_get("platforms")?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let (_, path, duration_s) = best.unwrap_or((9, String::new(), 0.0));
        Ok(Some(ScheduledAsset {
            id,
            house_id: r.try_get("house_id")?,
            title: r.try_get("title")?,
            status: r.try_get("status")?,
            path,
            duration_s,
            windows,
        }))
    }
}
