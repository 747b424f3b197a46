//! The audit log (append-only, each entry hashing the one before it) and the change feed.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use super::access::hex;
use super::{Catalog, Change, Principal, Result};

/// The request a change is made for, as its audit entry names it.
#[derive(Debug)]
struct RequestAudit {
    who: Option<Principal>,
    action: String,
    object: String,
    detail: String,
    /// The next change's transaction writes the entry.
    armed: bool,
    /// Entries written so far (sequence number and hash), committed or not.
    written: Vec<(i64, String)>,
}

tokio::task_local! {
    static REQUEST: Arc<Mutex<RequestAudit>>;
}

/// The audit entry of one request: the first catalog transaction that records a change while
/// [`AuditScope::run`] runs writes it, in that transaction. What the scope did not see commit
/// (a refused request, a change outside the catalog) the caller writes afterwards, best-effort.
#[derive(Debug, Clone)]
pub struct AuditScope(Arc<Mutex<RequestAudit>>);

impl AuditScope {
    pub fn new(who: Option<Principal>, action: String, object: String) -> AuditScope {
        AuditScope(Arc::new(Mutex::new(RequestAudit {
            who,
            action,
            object,
            detail: String::new(),
            armed: true,
            written: Vec::new(),
        })))
    }

    /// Runs `f` (a request's handler) in this scope.
    pub async fn run<F: Future>(&self, f: F) -> F::Output {
        REQUEST.scope(Arc::clone(&self.0), f).await
    }

    /// The entries written in the scope's transactions (committed or rolled back).
    pub fn written(&self) -> Vec<(i64, String)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .written
            .clone()
    }
}

/// Within a request's scope: the next change's transaction writes one more entry, naming
/// `object` (a bulk edit writes one per object it changes). Outside a scope, nothing.
pub fn audit_next(object: String, detail: String) {
    let _ = REQUEST.try_with(|c| {
        let mut g = c.lock().unwrap_or_else(PoisonError::into_inner);
        g.object = object;
        g.detail = detail;
        g.armed = true;
    });
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: String,
    pub actor_id: Option<i64>,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub result: String,
    pub detail: String,
    pub hash: String,
}

/// The outcome of checking the chain.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditCheck {
    pub entries: i64,
    pub intact: bool,
    /// The first entry whose hash or link does not hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<i64>,
    pub head: String,
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[allow(clippy::too_many_arguments)]
fn entry_hash(
    prev: &str,
    ts: i64,
    actor_id: Option<i64>,
    actor: &str,
    action: &str,
    object: &str,
    result: &str,
    detail: &str,
) -> String {
    let mut h = Sha256::new();
    // Length-prefixed fields: no two different entries give the same byte string.
    for f in [
        prev,
        &ts.to_string(),
        &actor_id.map_or_else(String::new, |a| a.to_string()),
        actor,
        action,
        object,
        result,
        detail,
    ] {
        h.update((f.len() as u64).to_le_bytes());
        h.update(f.as_bytes());
    }
    hex(&h.finalize())
}

fn change_of(r: &AnyRow) -> Result<Change> {
    Ok(Change {
        seq: r.try_get("seq")?,
        at: super::rfc3339(r.try_get("ts_ms")?),
        object: r.try_get("object_kind")?,
        id: r.try_get("object_id")?,
        op: r.try_get("op")?,
        asset_id: r.try_get("asset_id")?,
        detail: r
            .try_get::<Option<String>, _>("detail")?
            .and_then(|d| serde_json::from_str(&d).ok()),
    })
}

impl Catalog {
    /// Appends one entry to the audit log in a transaction of its own (refused attempts, and
    /// requests whose change is not a catalog transaction).
    pub async fn audit(
        &self,
        who: Option<&Principal>,
        action: &str,
        object: &str,
        result: &str,
        detail: &str,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        self.append_audit(&mut tx, who, action, object, result, detail)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Appends one entry inside the caller's transaction; returns its sequence number and hash.
    pub(crate) async fn append_audit(
        &self,
        tx: &mut sqlx::AnyConnection,
        who: Option<&Principal>,
        action: &str,
        object: &str,
        result: &str,
        detail: &str,
    ) -> Result<(i64, String)> {
        let detail: String = detail.chars().take(2000).collect();
        self.order_lock(tx).await?;
        let prev: String = sqlx::query("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<String, _>(0))
            .transpose()?
            .unwrap_or_else(|| GENESIS.to_string());
        let ts = self.now_ms();
        let actor_id = who.map(|p| p.user_id);
        let actor = who.map_or("anonymous", |p| p.username.as_str());
        let hash = entry_hash(&prev, ts, actor_id, actor, action, object, result, &detail);
        let seq: i64 = sqlx::query(
            "INSERT INTO audit (ts_ms, actor_id, actor, action, object, result, detail, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq",
        )
        .bind(ts)
        .bind(actor_id)
        .bind(actor)
        .bind(action)
        .bind(object)
        .bind(result)
        .bind(&detail)
        .bind(&prev)
        .bind(&hash)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        Ok((seq, hash))
    }

    /// Inside a change's transaction: when a request is being served (see [`AuditScope`]) and
    /// its entry is not written yet, writes it here, so that the change and the record of it
    /// commit together or not at all.
    pub(crate) async fn audit_change(&self, tx: &mut sqlx::AnyConnection) -> Result<()> {
        let Ok(ctx) = REQUEST.try_with(Arc::clone) else {
            return Ok(());
        };
        let pending = {
            let g = ctx.lock().unwrap_or_else(PoisonError::into_inner);
            g.armed.then(|| {
                (
                    g.who.clone(),
                    g.action.clone(),
                    g.object.clone(),
                    g.detail.clone(),
                )
            })
        };
        let Some((who, action, object, detail)) = pending else {
            return Ok(());
        };
        let written = self
            .append_audit(tx, who.as_ref(), &action, &object, "ok", &detail)
            .await?;
        {
            let mut g = ctx.lock().unwrap_or_else(PoisonError::into_inner);
            g.armed = false;
            g.written.push(written);
        }
        super::store::fault_point("audit");
        Ok(())
    }

    /// Whether any of these entries (sequence number and hash) was committed.
    pub async fn audit_committed(&self, entries: &[(i64, String)]) -> Result<bool> {
        for (seq, hash) in entries {
            let found: Option<String> = sqlx::query("SELECT hash FROM audit WHERE seq = $1")
                .bind(seq)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
            if found.as_deref() == Some(hash.as_str()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub async fn audit_entries(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query("SELECT * FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    seq: r.try_get("seq")?,
                    at: super::rfc3339(r.try_get("ts_ms")?),
                    actor_id: r.try_get("actor_id")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    object: r.try_get("object")?,
                    result: r.try_get("result")?,
                    detail: r.try_get("detail")?,
                    hash: r.try_get("hash")?,
                })
            })
            .collect()
    }

    /// Recomputes the chain from the first entry: an edited, removed or inserted entry breaks it.
    pub async fn audit_verify(&self) -> Result<AuditCheck> {
        let mut prev = GENESIS.to_string();
        let mut after = 0;
        let mut n = 0;
        loop {
            let rows = sqlx::query("SELECT * FROM audit WHERE seq > $1 ORDER BY seq LIMIT 1000")
                .bind(after)
                .fetch_all(&self.pool)
                .await?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let seq: i64 = r.try_get("seq")?;
                let stored_prev: String = r.try_get("prev_hash")?;
                let hash: String = r.try_get("hash")?;
                let want = entry_hash(
                    &prev,
                    r.try_get("ts_ms")?,
                    r.try_get("actor_id")?,
                    &r.try_get::<String, _>("actor")?,
                    &r.try_get::<String, _>("action")?,
                    &r.try_get::<String, _>("object")?,
                    &r.try_get::<String, _>("result")?,
                    &r.try_get::<String, _>("detail")?,
                );
                if stored_prev != prev || hash != want {
                    return Ok(AuditCheck {
                        entries: n,
                        intact: false,
                        broken_at: Some(seq),
                        head: prev,
                    });
                }
                prev = hash;
                after = seq;
                n += 1;
            }
        }
        Ok(AuditCheck {
            entries: n,
            intact: true,
            broken_at: None,
            head: prev,
        })
    }

    /// Changes after `since`, oldest first.
    pub async fn changes(&self, since: i64, limit: i64) -> Result<Vec<Change>> {
        let rows = sqlx::query("SELECT * FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(since)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(change_of).collect()
    }

    /// The newest cursor.
    pub async fn change_head(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM changes")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_covers_every_field_and_the_link() {
        let a = entry_hash(GENESIS, 1, Some(1), "admin", "POST", "/x", "201", "");
        assert_ne!(
            a,
            entry_hash(GENESIS, 1, Some(1), "admin", "POST", "/x", "200", "")
        );
        assert_ne!(
            a,
            entry_hash(&a, 1, Some(1), "admin", "POST", "/x", "201", "")
        );
        assert_ne!(
            entry_hash(GENESIS, 1, None, "ab", "c", "", "", ""),
            entry_hash(GENESIS, 1, None, "a", "bc", "", "", "")
        );
    }
}
