//! The audit log (append-only, each entry hashing the one before it) and the change feed.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::access::hex;
use super::{Catalog, Change, Principal, Result};

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
    })
}

impl Catalog {
    /// Appends one entry to the audit log.
    pub async fn audit(
        &self,
        who: Option<&Principal>,
        action: &str,
        object: &str,
        result: &str,
        detail: &str,
    ) -> Result<()> {
        let detail: String = detail.chars().take(2000).collect();
        let mut tx = self.begin().await?;
        self.order_lock(&mut tx).await?;
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
        sqlx::query(
            "INSERT INTO audit (ts_ms, actor_id, actor, action, object, result, detail, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
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
