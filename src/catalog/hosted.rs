//! The catalog's database as a component that keeps tables of its own in it sees it (the job
//! queue: `jobs` and `job_logs`). The statements on its own tables are its own; what it writes
//! on the catalog's side (assets, their files and status) and the change feed go through
//! [`Write`], so that the feed's order, the audit chain and publish-after-commit hold whoever
//! writes. The catalog's pool and transactions stay private to it.

use sqlx::{AnyPool, Row};

use super::assets::{AssetInput, NewFile};
use super::{Backend, Catalog, CatalogError, Change, Principal, Result};

/// A handle on the catalog's database for a component's own tables (see [`Catalog::hosted`]).
#[derive(Debug, Clone)]
pub struct Hosted {
    cat: Catalog,
}

impl Catalog {
    /// The database, for a component that keeps tables of its own in it.
    pub fn hosted(&self) -> Hosted {
        Hosted { cat: self.clone() }
    }
}

impl Hosted {
    /// Reads, and single statements that change nothing the feed reports, on the component's
    /// own tables.
    pub fn pool(&self) -> &AnyPool {
        &self.cat.pool
    }

    pub fn now_ms(&self) -> i64 {
        self.cat.now_ms()
    }

    /// What a `SELECT` that picks rows to update ends with: on PostgreSQL, appliances sharing
    /// the catalog skip each other's locked rows; SQLite's write lock serialises them anyway.
    pub fn skip_locked(&self) -> &'static str {
        match self.cat.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }

    /// Starts a write transaction.
    pub async fn write(&self) -> Result<Write> {
        Ok(Write {
            tx: self.cat.begin().await?,
            cat: self.cat.clone(),
            changes: Vec::new(),
        })
    }
}

/// A write transaction on the catalog's database: the component's statements run on
/// [`Write::conn`]; each object it changes goes into the change feed with [`Write::record`],
/// and the feed's subscribers hear of it once [`Write::commit`] has committed. Dropped without
/// a commit, nothing of it was written.
pub struct Write {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    cat: Catalog,
    changes: Vec<Change>,
}

impl Write {
    pub fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }

    /// Records in the change feed that `object` `id` was `op` (`created`, `updated`, …).
    pub async fn record(
        &mut self,
        object: &str,
        id: i64,
        op: &str,
        asset_id: Option<i64>,
    ) -> Result<()> {
        let c = self
            .cat
            .record(&mut self.tx, object, id, op, asset_id)
            .await?;
        self.changes.push(c);
        Ok(())
    }

    /// A new asset made by `who` from `input`, with `source` its first file; refused when the
    /// catalog already holds that content. The asset's id, its house ID and the file's id.
    pub async fn new_asset(
        &mut self,
        who: &Principal,
        input: &AssetInput,
        source: &NewFile,
    ) -> Result<(i64, String, i64)> {
        self.cat.check_input(who, input, true)?;
        if let Some(ids) = self.cat.same_content(&mut self.tx, &source.sha256).await? {
            return Err(CatalogError::Duplicate { ids: Some(ids) });
        }
        let id = self
            .cat
            .insert_asset(&mut self.tx, who, input, None)
            .await?;
        self.record("asset", id, "created", Some(id)).await?;
        let file_id = self.add_file(id, source).await?;
        let house_id: String = sqlx::query("SELECT house_id FROM assets WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *self.tx)
            .await?
            .try_get(0)?;
        Ok((id, house_id, file_id))
    }

    /// A file registered on an asset; its id.
    pub async fn add_file(&mut self, asset_id: i64, f: &NewFile) -> Result<i64> {
        let (id, c) = self.cat.insert_file(&mut self.tx, asset_id, f).await?;
        self.changes.push(c);
        Ok(id)
    }

    /// Sets an asset's status when it is one of `from` (any but `purged` when `from` is
    /// empty); whether it was set.
    pub async fn set_status(&mut self, asset_id: i64, to: &str, from: &[String]) -> Result<bool> {
        let cur = sqlx::query("SELECT status FROM assets WHERE id = $1")
            .bind(asset_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        let Some(cur) = cur else { return Ok(false) };
        let cur: String = cur.try_get(0)?;
        if cur == "purged" || cur == to || !(from.is_empty() || from.contains(&cur)) {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE assets SET status = $2, version = version + 1, updated_ms = $3 WHERE id = $1",
        )
        .bind(asset_id)
        .bind(to)
        .bind(self.cat.now_ms())
        .execute(&mut *self.tx)
        .await?;
        self.record("asset", asset_id, "updated", Some(asset_id))
            .await?;
        Ok(true)
    }

    /// Commits, then tells the feed's subscribers what changed.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        self.cat.publish(self.changes);
        Ok(())
    }
}
