//! Opening the catalog database, migrations, write transactions and the change/audit ordering.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use tokio::sync::broadcast;

use super::{Change, Result};
use crate::config::appliance::CustomField;
use crate::naming::Template;

/// Time for tokens, sessions and records; tests inject their own.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;
}

#[derive(Debug)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How to open the catalog.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// `sqlite:PATH` or `postgres://…`; empty = `catalog.db` in `data_dir`.
    pub url: String,
    pub data_dir: PathBuf,
    pub max_connections: u32,
    pub naming: Template,
    pub channel: String,
    pub fields: Vec<CustomField>,
}

/// The catalog: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Catalog {
    pub(super) pool: AnyPool,
    pub(super) backend: Backend,
    pub(crate) naming: Arc<Template>,
    pub(crate) channel: Arc<str>,
    pub(crate) fields: Arc<[CustomField]>,
    pub(crate) clock: Arc<dyn Clock>,
    events: broadcast::Sender<Change>,
    /// Assets indexed for full-text search since start (see `Catalog::keep_search_merged`).
    pub(crate) fts_writes: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Test hook: `ANTENNE_TEST_FAULT=<point>` ends the process at that point, as a crash would
/// (the pattern of the job queue's hook). Honoured only by debug builds; a release build
/// ignores it. Points: `audit` (inside a change's transaction, its audit entry written, before
/// the commit).
pub(crate) fn fault_point(point: &str) {
    if cfg!(debug_assertions)
        && std::env::var("ANTENNE_TEST_FAULT").is_ok_and(|v| v.split(',').any(|p| p == point))
    {
        eprintln!("antenne: test fault at {point}: the process ends here");
        std::process::exit(137);
    }
}

/// The URL of the embedded catalog in a data directory.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

impl Catalog {
    /// Opens (creating the SQLite file when needed) and migrates the catalog.
    pub async fn open(o: OpenOptions, clock: Arc<dyn Clock>) -> Result<Catalog> {
        sqlx::any::install_default_drivers();
        let url = if o.url.is_empty() {
            sqlite_url(&o.data_dir.join("catalog.db"))
        } else if let Some(p) = o.url.strip_prefix("sqlite:") {
            let p = p.trim_start_matches("//");
            if p.contains('?') {
                format!("sqlite://{p}")
            } else {
                sqlite_url(Path::new(p))
            }
        } else {
            o.url.clone()
        };
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let max = match (o.max_connections, backend) {
            (0, Backend::Sqlite) => 8,
            (0, Backend::Postgres) => 16,
            (n, _) => n,
        };
        let mut opts = AnyPoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(15));
        if backend == Backend::Sqlite {
            opts = opts.after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL lets readers run beside the writer; FULL makes each commit durable.
                    // A 32 MiB page cache per connection (SQLite's default is 2 MiB) holds the
                    // hot part of a million-asset catalog: a search that walks a thousand
                    // matches for its total then reads its pages from memory, not by a system
                    // call each.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 15000; \
                         PRAGMA cache_size = -32768;",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        let pool = opts.connect(&url).await?;
        match backend {
            Backend::Sqlite => {
                SQLITE_MIGRATIONS.run(&pool).await?;
                super::terms::backfill(&pool).await?;
            }
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let (events, _) = broadcast::channel(1024);
        Ok(Catalog {
            pool,
            backend,
            naming: Arc::new(o.naming),
            channel: o.channel.into(),
            fields: o.fields.into(),
            clock,
            events,
            fts_writes: Arc::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// New changes as they commit.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.events.subscribe()
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A write transaction. On SQLite it takes the write lock at once (no deadlock on upgrade);
    /// on PostgreSQL, [`Catalog::record`] serialises the change feed.
    pub(super) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Takes the lock that orders the change feed and the audit chain (PostgreSQL: a
    /// transaction-scoped advisory lock, so that sequence numbers commit in order and a reader
    /// at cursor N never later sees a change below N appear).
    pub(crate) async fn order_lock(&self, tx: &mut sqlx::AnyConnection) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7340)")
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    /// Appends to the change feed inside the caller's transaction; publish after commit.
    pub(super) async fn record(
        &self,
        tx: &mut sqlx::AnyConnection,
        object: &str,
        id: i64,
        op: &str,
        asset_id: Option<i64>,
    ) -> Result<Change> {
        self.record_detail(tx, object, id, op, asset_id, None).await
    }

    /// [`Self::record`] with what the entry says beyond its op (see [`Change::detail`]).
    pub(crate) async fn record_detail(
        &self,
        tx: &mut sqlx::AnyConnection,
        object: &str,
        id: i64,
        op: &str,
        asset_id: Option<i64>,
        detail: Option<serde_json::Value>,
    ) -> Result<Change> {
        self.order_lock(tx).await?;
        let now = self.now_ms();
        let row: AnyRow = sqlx::query(
            "INSERT INTO changes (ts_ms, object_kind, object_id, op, asset_id, detail) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
        )
        .bind(now)
        .bind(object)
        .bind(id)
        .bind(op)
        .bind(asset_id)
        .bind(detail.as_ref().map(|d| d.to_string()))
        .fetch_one(&mut *tx)
        .await?;
        let seq = row.try_get("seq")?;
        // The request's audit entry, in the transaction of the change it records.
        self.audit_change(tx).await?;
        Ok(Change {
            seq,
            at: super::rfc3339(now),
            object: object.to_string(),
            id,
            op: op.to_string(),
            asset_id,
            detail,
        })
    }

    pub(super) fn publish(&self, changes: impl IntoIterator<Item = Change>) {
        for c in changes {
            // No subscriber is not an error.
            let _ = self.events.send(c);
        }
    }
}
