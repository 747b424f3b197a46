//! The dictionary of words the SQLite full-text index holds (`search_terms`), so that a word
//! typed as a prefix becomes the few whole words it starts: FTS5 answers `"report"*` without
//! a prefix index by first merging the postings of every word with that prefix (tens of
//! milliseconds for a common word in a million assets, for each row tested), whereas
//! `"report" OR "reports"` is walked lazily like any word. Words are added as text is indexed
//! and never removed (a word no asset holds any longer only costs a useless alternative).

use std::collections::BTreeSet;

use sqlx::{AssertSqlSafe, Row};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use super::{Backend, Catalog, Result};

/// Alternatives a prefix may become; past this the prefix is left to FTS5.
pub(crate) const MAX_EXPANSION: usize = 48;
/// Words per INSERT.
const CHUNK: usize = 400;

/// A word as FTS5's `unicode61 remove_diacritics 2` tokenizer folds it: diacritics off,
/// lower case.
pub(crate) fn fold(word: &str) -> String {
    word.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The words of a text, folded, as the index splits it (letters and digits; anything else
/// separates).
pub(crate) fn words(text: &str) -> BTreeSet<String> {
    let folded = fold(text);
    folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.len() <= 200)
        .map(str::to_string)
        .collect()
}

/// Records `words` in the dictionary, inside the caller's transaction.
pub(crate) async fn add(tx: &mut sqlx::AnyConnection, words: &BTreeSet<String>) -> Result<()> {
    let all: Vec<&String> = words.iter().collect();
    for chunk in all.chunks(CHUNK) {
        let mut sql = String::from("INSERT OR IGNORE INTO search_terms (term) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${})", i + 1));
        }
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for w in chunk {
            q = q.bind(w.as_str());
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

/// Indexed writes after which the service merges the full-text index again.
const MERGE_AFTER_WRITES: u64 = 20_000;

impl Catalog {
    /// Merges the SQLite full-text index into one segment. Writes leave it in many segments
    /// (FTS5 merges them only partly as it goes), and every lookup of a word visits each: a
    /// test of one asset against a word costs ~0.6 ms in a freshly filled million-asset
    /// catalog, ~10 µs once merged. Takes the write lock for a few seconds at that size.
    pub async fn optimize_search(&self) -> Result<()> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO assets_fts (assets_fts) VALUES ('optimize')")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Keeps the full-text index merged: once now, then whenever
    /// [`MERGE_AFTER_WRITES`] assets were indexed since (checked every minute). Runs until
    /// the runtime ends.
    pub async fn keep_search_merged(self) {
        if self.backend != Backend::Sqlite {
            return;
        }
        let mut merged_at = u64::MAX;
        loop {
            let writes = self.fts_writes.load(std::sync::atomic::Ordering::Relaxed);
            if merged_at == u64::MAX || writes.saturating_sub(merged_at) >= MERGE_AFTER_WRITES {
                let t = std::time::Instant::now();
                match self.optimize_search().await {
                    Ok(()) => tracing::info!(
                        ms = t.elapsed().as_millis() as u64,
                        "search: full-text index merged"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "search: cannot merge the full-text index")
                    }
                }
                merged_at = writes;
            }
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        }
    }

    /// The whole words that start with `prefix` (folded), when there are between 1 and
    /// [`MAX_EXPANSION`]; `None` leaves the prefix to the index (none known, or too many).
    pub(crate) async fn expand_prefix(&self, prefix: &str) -> Result<Option<Vec<String>>> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        let p = fold(prefix);
        if p.is_empty() || !p.chars().all(char::is_alphanumeric) {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT term FROM search_terms WHERE term >= $1 AND term < $2 ORDER BY term LIMIT $3",
        )
        .bind(&p)
        .bind(format!("{p}\u{10FFFF}"))
        .bind(MAX_EXPANSION as i64 + 1)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() || rows.len() > MAX_EXPANSION {
            return Ok(None);
        }
        let terms = rows
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Some(terms))
    }
}

/// Fills the dictionary of a catalog indexed before it existed (once: it is empty and the
/// index is not).
pub(crate) async fn backfill(pool: &sqlx::AnyPool) -> Result<()> {
    let have: Option<i64> = sqlx::query("SELECT 1 FROM search_terms LIMIT 1")
        .fetch_optional(pool)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    let indexed: Option<i64> = sqlx::query("SELECT rowid FROM assets_fts LIMIT 1")
        .fetch_optional(pool)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    if have.is_some() || indexed.is_none() {
        return Ok(());
    }
    let mut after = i64::MIN;
    let mut rows_done = 0u64;
    loop {
        let rows = sqlx::query(
            "SELECT rowid, body FROM assets_fts WHERE rowid > $1 ORDER BY rowid LIMIT 5000",
        )
        .bind(after)
        .fetch_all(pool)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get(0)?;
        let mut batch = BTreeSet::new();
        for r in &rows {
            batch.extend(words(&r.try_get::<String, _>(1)?));
        }
        let mut tx = pool.begin().await?;
        add(&mut tx, &batch).await?;
        tx.commit().await?;
        rows_done += rows.len() as u64;
    }
    tracing::info!(
        assets = rows_done,
        "search: the word dictionary was built from the index"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_fold_as_the_index_does() {
        let w = words("Évening NEWS—at 10, naïve café\nx-ray");
        let got: Vec<&str> = w.iter().map(String::as_str).collect();
        assert_eq!(
            got,
            vec!["10", "at", "cafe", "evening", "naive", "news", "ray", "x"]
        );
        assert_eq!(fold("Ève"), "eve");
    }
}
