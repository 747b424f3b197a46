//! What a media manager works with beside the metadata: markers and sub-clips on an asset
//! (timecodes at the asset's frame rate), and each user's saved searches.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::assets::SearchQuery;
use super::{Catalog, CatalogError, Perms, Principal, Result};
use crate::config::Rate;
use crate::timecode::Timecode;

/// A marker (a point: `tc_in` only) or a sub-clip (`tc_in` to `tc_out`, both included).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Marker {
    pub id: i64,
    pub asset_id: i64,
    /// SMPTE timecode at the asset's frame rate (`;` before the frames in drop-frame).
    pub tc_in: String,
    /// Absent for a point marker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tc_out: Option<String>,
    /// The frame rate the timecodes count in, e.g. `25/1`, `30000/1001`.
    pub rate: String,
    pub label: String,
    pub colour: String,
    pub comment: String,
    pub created_by: Option<i64>,
    pub created: String,
    pub updated: String,
}

/// A new marker, or the fields of one to change (absent: left as it is).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkerInput {
    /// `HH:MM:SS:FF` (`HH:MM:SS;FF` drop-frame) at the asset's frame rate; required on create.
    pub tc_in: Option<String>,
    /// The end of a sub-clip, not before `tc_in`; `""` makes a sub-clip a point marker again.
    pub tc_out: Option<String>,
    /// At most 200 characters.
    pub label: Option<String>,
    /// One of red, orange, yellow, green, cyan, blue, purple, magenta, white, black, or
    /// `#rrggbb`; `""` for none.
    pub colour: Option<String>,
    /// At most 10000 bytes.
    pub comment: Option<String>,
}

/// A saved search: the query parameters of `GET /v1/search`, by name, for its owner only.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SavedSearch {
    pub id: i64,
    pub name: String,
    /// The parameters of `GET /v1/search` (`q`, `tag`, `sort`, …; no `limit` or `after`).
    #[schema(value_type = Object)]
    pub query: Map<String, Value>,
    pub created: String,
    pub updated: String,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SavedSearchInput {
    /// 1-100 characters; unique among the user's saved searches. Required on create.
    pub name: Option<String>,
    /// The parameters of `GET /v1/search`. Required on create.
    #[schema(value_type = Option<Object>)]
    pub query: Option<Map<String, Value>>,
}

const COLOURS: &[&str] = &[
    "red", "orange", "yellow", "green", "cyan", "blue", "purple", "magenta", "white", "black",
];

fn check_text(field: &str, v: &str, max_bytes: usize) -> Result<()> {
    if v.len() > max_bytes || v.contains('\0') {
        return Err(CatalogError::invalid(
            field,
            format!("at most {max_bytes} bytes, no NUL"),
        ));
    }
    Ok(())
}

fn check_colour(v: &str) -> Result<String> {
    let c = v.trim().to_ascii_lowercase();
    let hex = c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|b| b.is_ascii_hexdigit());
    if c.is_empty() || hex || COLOURS.contains(&c.as_str()) {
        Ok(c)
    } else {
        Err(CatalogError::invalid(
            "colour",
            format!("{v:?}: one of {} or #rrggbb", COLOURS.join(", ")),
        ))
    }
}

fn marker_of(r: &AnyRow) -> Result<Marker> {
    Ok(Marker {
        id: r.try_get("id")?,
        asset_id: r.try_get("asset_id")?,
        tc_in: r.try_get("tc_in")?,
        tc_out: r.try_get("tc_out")?,
        rate: r.try_get("rate")?,
        label: r.try_get("label")?,
        colour: r.try_get("colour")?,
        comment: r.try_get("comment")?,
        created_by: r.try_get("created_by")?,
        created: super::rfc3339(r.try_get("created_ms")?),
        updated: super::rfc3339(r.try_get("updated_ms")?),
    })
}

/// The timing of an asset's media: its frame rate, and the first and last frame its timecode
/// counts (when known).
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    rate: Rate,
    span: Option<(u64, u64)>,
}

/// A timecode parsed at `t`'s rate and checked against the media's span.
pub(super) fn frame_of(field: &str, v: &str, t: Timing) -> Result<(String, u64)> {
    let tc = Timecode::parse(v, t.rate).map_err(|e| CatalogError::invalid(field, e.to_string()))?;
    if let Some((first, last)) = t.span {
        if tc.frames < first || tc.frames > last {
            let at = |f: u64| Timecode { frames: f, ..tc }.to_string();
            return Err(CatalogError::invalid(
                field,
                format!("{v} is outside the media ({} to {})", at(first), at(last)),
            ));
        }
    }
    Ok((tc.to_string(), tc.frames))
}

fn search_query(q: &Map<String, Value>) -> Result<SearchQuery> {
    for k in ["limit", "after"] {
        if q.contains_key(k) {
            return Err(CatalogError::invalid(
                "query",
                format!("{k} is given when the search is run, not saved"),
            ));
        }
    }
    serde_json::from_value(Value::Object(q.clone()))
        .map_err(|e| CatalogError::invalid("query", format!("not a search: {e}")))
}

fn saved_of(r: &AnyRow) -> Result<SavedSearch> {
    let q: String = r.try_get("query")?;
    Ok(SavedSearch {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        query: serde_json::from_str(&q).unwrap_or_default(),
        created: super::rfc3339(r.try_get("created_ms")?),
        updated: super::rfc3339(r.try_get("updated_ms")?),
    })
}

impl Catalog {
    /// The frame rate and span of an asset's media: its source file's first video stream, else
    /// any file's. A conflict when it has no video yet (timecodes need a frame rate).
    pub(super) async fn timing(&self, asset_id: i64) -> Result<Timing> {
        let rows = sqlx::query(
            "SELECT technical, duration_s FROM files WHERE asset_id = $1 \
             ORDER BY CASE WHEN role = 'source' THEN 0 ELSE 1 END, id",
        )
        .bind(asset_id)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            let t: Value = serde_json::from_str(&r.try_get::<String, _>(0)?).unwrap_or_default();
            let v = &t["video"][0];
            let Some(rate) = v["frame_rate"]
                .as_str()
                .and_then(|s| s.parse::<Rate>().ok())
            else {
                continue;
            };
            if rate.as_f64() > 1000.0 {
                continue;
            }
            let start = v["timecode"]
                .as_str()
                .or(t["container"]["start_timecode"].as_str())
                .and_then(|s| Timecode::parse(s, rate).ok());
            let start_frames = start.map_or(0, |s| s.frames);
            let dur: f64 = r.try_get(1)?;
            let frames = rate.frames_in(dur);
            let base = u64::from(rate.timecode_base());
            // A span that runs past midnight is not checked (the timecode wraps).
            let span = (frames > 0 && start_frames + frames < 24 * 3600 * base)
                .then(|| (start_frames, start_frames + frames - 1));
            return Ok(Timing { rate, span });
        }
        Err(CatalogError::Conflict(format!(
            "asset {asset_id} has no video file yet: its frame rate, which timecodes count in, \
             is unknown"
        )))
    }

    pub async fn markers(&self, who: &Principal, asset_id: i64) -> Result<Vec<Marker>> {
        self.require(who, asset_id, Perms::READ).await?;
        let rows = sqlx::query(
            "SELECT * FROM markers WHERE asset_id = $1 ORDER BY in_frame, id LIMIT 10000",
        )
        .bind(asset_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(marker_of).collect()
    }

    pub async fn marker(&self, who: &Principal, asset_id: i64, id: i64) -> Result<Marker> {
        self.require(who, asset_id, Perms::READ).await?;
        let r = sqlx::query("SELECT * FROM markers WHERE id = $1 AND asset_id = $2")
            .bind(id)
            .bind(asset_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("marker {id}")))?;
        marker_of(&r)
    }

    /// Adds a marker, or changes one (`id`), after checking the caller may write the asset and
    /// that the timecodes are valid at its frame rate and within its media.
    pub async fn put_marker(
        &self,
        who: &Principal,
        asset_id: i64,
        id: Option<i64>,
        i: &MarkerInput,
    ) -> Result<Marker> {
        self.require(who, asset_id, Perms::WRITE).await?;
        let cur = match id {
            Some(id) => Some(self.marker(who, asset_id, id).await?),
            None => None,
        };
        if let Some(l) = &i.label {
            check_text("label", l, 200)?;
        }
        if let Some(c) = &i.comment {
            check_text("comment", c, 10_000)?;
        }
        let colour = i.colour.as_deref().map(check_colour).transpose()?;
        let t = self.timing(asset_id).await?;
        let tc_in = match (&i.tc_in, &cur) {
            (Some(v), _) => v.clone(),
            (None, Some(c)) => c.tc_in.clone(),
            (None, None) => return Err(CatalogError::invalid("tc_in", "required")),
        };
        let tc_out = match (&i.tc_out, &cur) {
            (Some(v), _) if v.is_empty() => None,
            (Some(v), _) => Some(v.clone()),
            (None, Some(c)) => c.tc_out.clone(),
            (None, None) => None,
        };
        let (tc_in, in_frame) = frame_of("tc_in", &tc_in, t)?;
        let out = tc_out
            .as_deref()
            .map(|v| frame_of("tc_out", v, t))
            .transpose()?;
        if let Some((_, o)) = &out {
            if *o < in_frame {
                return Err(CatalogError::invalid("tc_out", "must not be before tc_in"));
            }
        }
        let (tc_out, out_frame) = out.map_or((None, None), |(s, f)| (Some(s), Some(f as i64)));
        let now = self.now_ms();
        let rate = format!("{}/{}", t.rate.num, t.rate.den);
        let mut tx = self.begin().await?;
        let (mid, op) = match id {
            None => {
                let r = sqlx::query(
                    "INSERT INTO markers (asset_id, tc_in, tc_out, in_frame, out_frame, rate, label, \
                     colour, comment, created_by, created_ms, updated_ms) VALUES ($1, $2, $3, $4, \
                     $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id",
                )
                .bind(asset_id)
                .bind(&tc_in)
                .bind(&tc_out)
                .bind(in_frame as i64)
                .bind(out_frame)
                .bind(&rate)
                .bind(i.label.clone().unwrap_or_default())
                .bind(colour.clone().unwrap_or_default())
                .bind(i.comment.clone().unwrap_or_default())
                .bind(who.user_id)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                (r.try_get::<i64, _>(0)?, "created")
            }
            Some(id) => {
                let n = sqlx::query(
                    "UPDATE markers SET tc_in = $3, tc_out = $4, in_frame = $5, out_frame = $6, \
                     rate = $7, label = COALESCE($8, label), colour = COALESCE($9, colour), \
                     comment = COALESCE($10, comment), updated_ms = $11 \
                     WHERE id = $1 AND asset_id = $2",
                )
                .bind(id)
                .bind(asset_id)
                .bind(&tc_in)
                .bind(&tc_out)
                .bind(in_frame as i64)
                .bind(out_frame)
                .bind(&rate)
                .bind(i.label.clone())
                .bind(colour.clone())
                .bind(i.comment.clone())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Err(CatalogError::NotFound(format!("marker {id}")));
                }
                (id, "updated")
            }
        };
        let c = self
            .record(&mut tx, "marker", mid, op, Some(asset_id))
            .await?;
        tx.commit().await?;
        self.publish([c]);
        self.marker(who, asset_id, mid).await
    }

    pub async fn delete_marker(&self, who: &Principal, asset_id: i64, id: i64) -> Result<()> {
        self.require(who, asset_id, Perms::WRITE).await?;
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM markers WHERE id = $1 AND asset_id = $2")
            .bind(id)
            .bind(asset_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(CatalogError::NotFound(format!("marker {id}")));
        }
        let c = self
            .record(&mut tx, "marker", id, "deleted", Some(asset_id))
            .await?;
        tx.commit().await?;
        self.publish([c]);
        Ok(())
    }

    pub async fn saved_searches(&self, who: &Principal) -> Result<Vec<SavedSearch>> {
        let rows = sqlx::query(
            "SELECT * FROM saved_searches WHERE user_id = $1 ORDER BY name, id LIMIT 1000",
        )
        .bind(who.user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(saved_of).collect()
    }

    /// One of the caller's saved searches (another user's is not found, whoever asks).
    pub async fn saved_search(&self, who: &Principal, id: i64) -> Result<SavedSearch> {
        let r = sqlx::query("SELECT * FROM saved_searches WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(who.user_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("saved search {id}")))?;
        saved_of(&r)
    }

    /// The query of a saved search, with this run's paging.
    pub async fn saved_search_query(
        &self,
        who: &Principal,
        id: i64,
        limit: Option<i64>,
        after: Option<i64>,
    ) -> Result<SearchQuery> {
        let s = self.saved_search(who, id).await?;
        let mut q = search_query(&s.query)?;
        q.limit = limit;
        q.after = after;
        Ok(q)
    }

    /// Saves a search, or changes one (`id`); the query is checked by running it once.
    pub async fn put_saved_search(
        &self,
        who: &Principal,
        id: Option<i64>,
        i: &SavedSearchInput,
    ) -> Result<SavedSearch> {
        let cur = match id {
            Some(id) => Some(self.saved_search(who, id).await?),
            None => None,
        };
        let name = match (&i.name, &cur) {
            (Some(n), _) => n.trim().to_string(),
            (None, Some(c)) => c.name.clone(),
            (None, None) => return Err(CatalogError::invalid("name", "required")),
        };
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(CatalogError::invalid("name", "1-100 printable characters"));
        }
        let query = match (&i.query, &cur) {
            (Some(q), _) => q.clone(),
            (None, Some(c)) => c.query.clone(),
            (None, None) => return Err(CatalogError::invalid("query", "required")),
        };
        let text = Value::Object(query.clone()).to_string();
        check_text("query", &text, 10_000)?;
        let mut q = search_query(&query)?;
        q.limit = Some(1);
        self.search(who, &q).await?;
        let now = self.now_ms();
        let taken = |e: sqlx::Error| {
            if e.as_database_error()
                .is_some_and(|d| d.is_unique_violation())
            {
                CatalogError::Conflict(format!("a saved search is named {name:?} already"))
            } else {
                e.into()
            }
        };
        let mut tx = self.begin().await?;
        let sid = match id {
            None => sqlx::query(
                "INSERT INTO saved_searches (user_id, name, query, created_ms, updated_ms) \
                 VALUES ($1, $2, $3, $4, $4) RETURNING id",
            )
            .bind(who.user_id)
            .bind(&name)
            .bind(&text)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(taken)?
            .try_get::<i64, _>(0)?,
            Some(id) => {
                sqlx::query(
                    "UPDATE saved_searches SET name = $3, query = $4, updated_ms = $5 \
                     WHERE id = $1 AND user_id = $2",
                )
                .bind(id)
                .bind(who.user_id)
                .bind(&name)
                .bind(&text)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(taken)?;
                id
            }
        };
        // Saved searches are the user's own: no change-feed entry, but an audit entry.
        self.audit_change(&mut tx).await?;
        tx.commit().await?;
        self.saved_search(who, sid).await
    }

    pub async fn delete_saved_search(&self, who: &Principal, id: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM saved_searches WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(who.user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(CatalogError::NotFound(format!("saved search {id}")));
        }
        self.audit_change(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The present version and tags of an asset the caller may write (for a bulk edit).
    pub async fn version_and_tags(&self, who: &Principal, id: i64) -> Result<(i64, Vec<String>)> {
        self.require(who, id, Perms::WRITE).await?;
        let v: i64 = sqlx::query("SELECT version FROM assets WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("asset {id}")))?
            .try_get(0)?;
        let tags = sqlx::query("SELECT tag FROM asset_tags WHERE asset_id = $1 ORDER BY tag")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<std::result::Result<_, _>>()?;
        Ok((v, tags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_and_timecodes() {
        assert_eq!(check_colour("Red").unwrap(), "red");
        assert_eq!(check_colour("#00FF7f").unwrap(), "#00ff7f");
        assert!(check_colour("chartreuse").is_err());
        assert!(check_colour("#12345").is_err());
        let t = Timing {
            rate: Rate::new(25, 1),
            span: Some((0, 49)),
        };
        assert_eq!(frame_of("tc_in", "00:00:01:12", t).unwrap().1, 37);
        assert!(frame_of("tc_in", "00:00:00:25", t).is_err());
        assert!(frame_of("tc_in", "00:00:02:00", t).is_err());
        let ntsc = Timing {
            rate: Rate::new(30000, 1001),
            span: None,
        };
        assert!(frame_of("tc_in", "00:01:00;00", ntsc).is_err());
        assert_eq!(
            frame_of("tc_in", "00:01:00;02", ntsc).unwrap().0,
            "00:01:00;02"
        );
    }

    #[test]
    fn saved_queries_hold_no_paging() {
        let q: Map<String, Value> =
            serde_json::from_str(r#"{"q": "news", "sort": "title"}"#).unwrap();
        assert_eq!(search_query(&q).unwrap().q.as_deref(), Some("news"));
        let q: Map<String, Value> = serde_json::from_str(r#"{"q": "news", "limit": 5}"#).unwrap();
        assert!(search_query(&q).is_err());
        let q: Map<String, Value> = serde_json::from_str(r#"{"qq": "news"}"#).unwrap();
        assert!(search_query(&q).is_err());
    }
}
