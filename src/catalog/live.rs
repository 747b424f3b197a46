//! Live sources and outputs as records: kind, settings (JSON, as the live service validated
//! them), origin (`config` or `api`) and whether each should run; and the live events (a source
//! lost or restored) on the change feed. What they mean is the live service's business.

use sqlx::any::AnyRow;
// Table names in the SQL come from `LiveTable` only, never from input.
use sqlx::{AssertSqlSafe, Row};

use super::{Catalog, CatalogError, Change, Result};

/// Which of the two tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveTable {
    Sources,
    Outputs,
}

impl LiveTable {
    fn table(self) -> &'static str {
        match self {
            LiveTable::Sources => "live_sources",
            LiveTable::Outputs => "live_outputs",
        }
    }

    /// The object name on the change feed.
    pub fn object(self) -> &'static str {
        match self {
            LiveTable::Sources => "live_source",
            LiveTable::Outputs => "live_output",
        }
    }

    fn what(self) -> &'static str {
        match self {
            LiveTable::Sources => "live source",
            LiveTable::Outputs => "live output",
        }
    }
}

/// One stored live source or output.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRow {
    pub id: i64,
    pub name: String,
    pub kind: String,
    /// The settings, as JSON.
    pub settings: String,
    /// `config` (declared in antenne.toml) or `api`.
    pub origin: String,
    pub running: bool,
    /// The source an output is attached to (`None` for a source).
    pub source_id: Option<i64>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// What is written for a new or changed row.
#[derive(Debug, Clone)]
pub struct LiveWrite<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub settings: &'a str,
    pub origin: &'a str,
    pub running: bool,
    pub source_id: Option<i64>,
}

fn row_of(t: LiveTable, r: &AnyRow) -> Result<LiveRow> {
    Ok(LiveRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        kind: r.try_get("kind")?,
        settings: r.try_get("settings")?,
        origin: r.try_get("origin")?,
        running: r.try_get::<i64, _>("running")? != 0,
        source_id: match t {
            LiveTable::Sources => None,
            LiveTable::Outputs => Some(r.try_get("source_id")?),
        },
        created_ms: r.try_get("created_ms")?,
        updated_ms: r.try_get("updated_ms")?,
    })
}

impl Catalog {
    pub async fn live_list(&self, t: LiveTable) -> Result<Vec<LiveRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT * FROM {} ORDER BY id",
            t.table()
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| row_of(t, r)).collect()
    }

    pub async fn live_get(&self, t: LiveTable, id: i64) -> Result<LiveRow> {
        let r = sqlx::query(AssertSqlSafe(format!(
            "SELECT * FROM {} WHERE id = $1",
            t.table()
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| CatalogError::NotFound(format!("{} {id}", t.what())))?;
        row_of(t, &r)
    }

    /// Creates (`id` None) or replaces a row; a change on the feed either way.
    pub async fn live_put(
        &self,
        t: LiveTable,
        id: Option<i64>,
        w: &LiveWrite<'_>,
    ) -> Result<LiveRow> {
        let now = self.now_ms();
        let taken = |e: sqlx::Error| {
            if e.as_database_error()
                .is_some_and(|d| d.is_unique_violation())
            {
                CatalogError::Conflict(format!("a {} is named {:?} already", t.what(), w.name))
            } else if e
                .as_database_error()
                .is_some_and(|d| d.is_foreign_key_violation())
            {
                CatalogError::invalid("source_id", "no such live source")
            } else {
                e.into()
            }
        };
        let mut tx = self.begin().await?;
        let (id, op) = match id {
            None => {
                let (cols, vals) = match t {
                    LiveTable::Sources => ("", ""),
                    LiveTable::Outputs => (", source_id", ", $7"),
                };
                let q = format!(
                    "INSERT INTO {} (name, kind, settings, origin, running, created_ms, \
                     updated_ms{cols}) VALUES ($1, $2, $3, $4, $5, $6, $6{vals}) RETURNING id",
                    t.table()
                );
                let mut query = sqlx::query(AssertSqlSafe(q))
                    .bind(w.name)
                    .bind(w.kind)
                    .bind(w.settings)
                    .bind(w.origin)
                    .bind(i64::from(w.running))
                    .bind(now);
                if t == LiveTable::Outputs {
                    query = query.bind(w.source_id.unwrap_or(0));
                }
                let id: i64 = query.fetch_one(&mut *tx).await.map_err(taken)?.try_get(0)?;
                (id, "created")
            }
            Some(id) => {
                let set_source = match t {
                    LiveTable::Sources => "",
                    LiveTable::Outputs => ", source_id = $8",
                };
                let q = format!(
                    "UPDATE {} SET name = $2, kind = $3, settings = $4, origin = $5, \
                     running = $6, updated_ms = $7{set_source} WHERE id = $1",
                    t.table()
                );
                let mut query = sqlx::query(AssertSqlSafe(q))
                    .bind(id)
                    .bind(w.name)
                    .bind(w.kind)
                    .bind(w.settings)
                    .bind(w.origin)
                    .bind(i64::from(w.running))
                    .bind(now);
                if t == LiveTable::Outputs {
                    query = query.bind(w.source_id.unwrap_or(0));
                }
                let n = query
                    .execute(&mut *tx)
                    .await
                    .map_err(taken)?
                    .rows_affected();
                if n == 0 {
                    return Err(CatalogError::NotFound(format!("{} {id}", t.what())));
                }
                (id, "updated")
            }
        };
        let c = self.record(&mut tx, t.object(), id, op, None).await?;
        tx.commit().await?;
        self.publish([c]);
        self.live_get(t, id).await
    }

    /// Whether the row should run (kept across restarts); no change on the feed.
    pub async fn live_set_running(&self, t: LiveTable, id: i64, running: bool) -> Result<()> {
        let n = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET running = $2 WHERE id = $1",
            t.table()
        )))
        .bind(id)
        .bind(i64::from(running))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(CatalogError::NotFound(format!("{} {id}", t.what())));
        }
        Ok(())
    }

    /// Deletes a row; a source with outputs attached is a conflict.
    pub async fn live_delete(&self, t: LiveTable, id: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        if t == LiveTable::Sources {
            let n: i64 = sqlx::query("SELECT COUNT(*) FROM live_outputs WHERE source_id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            if n > 0 {
                return Err(CatalogError::Conflict(format!(
                    "live source {id} has {n} output(s) attached: delete them first"
                )));
            }
        }
        let n = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {} WHERE id = $1",
            t.table()
        )))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(CatalogError::NotFound(format!("{} {id}", t.what())));
        }
        let c = self
            .record(&mut tx, t.object(), id, "deleted", None)
            .await?;
        tx.commit().await?;
        self.publish([c]);
        Ok(())
    }

    /// A live event on the change feed (`op`: `lost`, `restored`) for a source or output.
    pub async fn live_event(
        &self,
        t: LiveTable,
        id: i64,
        op: &str,
        detail: Option<serde_json::Value>,
    ) -> Result<Change> {
        let mut tx = self.begin().await?;
        let c = self
            .record_detail(&mut tx, t.object(), id, op, None, detail)
            .await?;
        tx.commit().await?;
        self.publish([c.clone()]);
        Ok(c)
    }
}

/// Who holds a live source's or output's lease, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveLease {
    pub owner: String,
    pub expires_ms: i64,
}

impl Catalog {
    /// Takes or renews the lease of a source or output for `owner`: true when it is now
    /// `owner`'s (it was free, expired, or `owner`'s already), false when another holds it.
    pub async fn live_lease_take(
        &self,
        t: LiveTable,
        id: i64,
        owner: &str,
        ttl_ms: i64,
    ) -> Result<bool> {
        let now = self.now_ms();
        let n = sqlx::query(
            "INSERT INTO live_leases (object, object_id, owner, expires_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (object, object_id) DO UPDATE SET owner = excluded.owner, \
             expires_ms = excluded.expires_ms \
             WHERE live_leases.owner = excluded.owner OR live_leases.expires_ms < $5",
        )
        .bind(t.object())
        .bind(id)
        .bind(owner)
        .bind(now + ttl_ms)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Renews every lease `owner` holds; what it holds now (by table and id).
    pub async fn live_lease_renew(
        &self,
        owner: &str,
        ttl_ms: i64,
    ) -> Result<Vec<(LiveTable, i64)>> {
        let now = self.now_ms();
        sqlx::query("UPDATE live_leases SET expires_ms = $1 WHERE owner = $2")
            .bind(now + ttl_ms)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        let rows = sqlx::query("SELECT object, object_id FROM live_leases WHERE owner = $1")
            .bind(owner)
            .fetch_all(&self.pool)
            .await?;
        let mut held = Vec::new();
        for r in rows {
            let object: String = r.try_get(0)?;
            let t = match object.as_str() {
                "live_source" => LiveTable::Sources,
                "live_output" => LiveTable::Outputs,
                _ => continue,
            };
            held.push((t, r.try_get(1)?));
        }
        Ok(held)
    }

    /// Gives a lease back (when `owner` holds it).
    pub async fn live_lease_release(&self, t: LiveTable, id: i64, owner: &str) -> Result<()> {
        sqlx::query("DELETE FROM live_leases WHERE object = $1 AND object_id = $2 AND owner = $3")
            .bind(t.object())
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Gives back every lease `owner` holds (it is stopping).
    pub async fn live_lease_release_all(&self, owner: &str) -> Result<()> {
        sqlx::query("DELETE FROM live_leases WHERE owner = $1")
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every lease not yet expired, by table and id.
    pub async fn live_leases(&self, t: LiveTable) -> Result<Vec<(i64, LiveLease)>> {
        let rows = sqlx::query(
            "SELECT object_id, owner, expires_ms FROM live_leases \
             WHERE object = $1 AND expires_ms >= $2",
        )
        .bind(t.object())
        .bind(self.now_ms())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    LiveLease {
                        owner: r.try_get(1)?,
                        expires_ms: r.try_get(2)?,
                    },
                ))
            })
            .collect()
    }
}
