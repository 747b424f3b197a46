//! Assets, their files and rights windows, tags, collections and search.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::access::{effective, PRINCIPAL_MATCH};
use super::{Backend, Catalog, CatalogError, Change, Perms, Principal, Result, Role};
use crate::config::appliance::FieldType;

pub const KINDS: &[&str] = &["programme", "clip", "promo", "live_recording", "commercial"];
pub const STATUSES: &[&str] = &[
    "live_recording",
    "ingesting",
    "qc_failed",
    "rendition_failed",
    "ready",
    "archived",
    "purged",
];
pub const FILE_ROLES: &[&str] = &["source", "house", "proxy", "platform", "sidecar"];

/// The Dublin Core / EBUCore core set, in the order the API gives it.
const DC: [&str; 11] = [
    "title",
    "description",
    "subject",
    "creator",
    "contributor",
    "date",
    "language",
    "rights",
    "identifier",
    "series",
    "episode",
];

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Asset {
    pub id: i64,
    pub house_id: String,
    /// `programme`, `clip`, `promo`, `live_recording`, `commercial`.
    pub kind: String,
    /// `live_recording` (a live recording still growing), `ingesting`, `qc_failed` (its QC failed), `rendition_failed` (QC passed, but a rendition
    /// did not meet its profile: the transcode job says which checks), `ready`, `archived`,
    /// `purged`.
    pub status: String,
    pub title: String,
    pub description: String,
    pub subject: String,
    pub creator: String,
    pub contributor: String,
    pub date: String,
    pub language: String,
    pub rights: String,
    pub identifier: String,
    pub series: String,
    pub episode: String,
    /// The house's own fields, as declared in the configuration.
    #[schema(value_type = Object)]
    pub custom: Map<String, Value>,
    pub tags: Vec<String>,
    pub collections: Vec<i64>,
    pub owner_id: Option<i64>,
    pub created: String,
    pub updated: String,
    /// Increases with each change; give it back in a PATCH to refuse a lost update.
    pub version: i64,
    /// What the caller may do with it.
    pub access: Vec<&'static str>,
    pub rights_windows: Vec<RightsWindow>,
    /// A live recording's piece: its source, state, bytes and duration so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<super::recording::Recording>,
}

/// The fields of an asset a caller sets; absent fields are left as they are.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetInput {
    /// Only admin and service callers may give one; otherwise it comes from the naming template.
    pub house_id: Option<String>,
    pub kind: Option<String>,
    pub status: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub subject: Option<String>,
    pub creator: Option<String>,
    pub contributor: Option<String>,
    pub date: Option<String>,
    pub language: Option<String>,
    pub rights: Option<String>,
    pub identifier: Option<String>,
    pub series: Option<String>,
    pub episode: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub custom: Option<Map<String, Value>>,
    pub tags: Option<Vec<String>>,
    /// Admin only.
    pub owner_id: Option<i64>,
    /// On PATCH: the version read; a different current version is a conflict.
    pub version: Option<i64>,
}

impl AssetInput {
    pub(crate) fn dc(&self, name: &str) -> Option<&String> {
        match name {
            "title" => self.title.as_ref(),
            "description" => self.description.as_ref(),
            "subject" => self.subject.as_ref(),
            "creator" => self.creator.as_ref(),
            "contributor" => self.contributor.as_ref(),
            "date" => self.date.as_ref(),
            "language" => self.language.as_ref(),
            "rights" => self.rights.as_ref(),
            "identifier" => self.identifier.as_ref(),
            "series" => self.series.as_ref(),
            "episode" => self.episode.as_ref(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FileRec {
    pub id: i64,
    pub asset_id: i64,
    /// `source`, `house`, `proxy`, `platform`, `sidecar`.
    pub role: String,
    pub path: String,
    /// `local` today.
    pub storage: String,
    pub size: i64,
    pub sha256: String,
    pub container: String,
    pub video_codec: String,
    pub width: i64,
    pub height: i64,
    pub duration_s: f64,
    /// The probe report.
    #[schema(value_type = Object)]
    pub technical: Value,
    pub profile: String,
    /// The verification report, when the file was made against a profile.
    #[schema(value_type = Option<Object>)]
    pub verification: Option<Value>,
    pub created: String,
}

/// A file to record, already on disk and hashed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewFile {
    pub role: String,
    pub path: String,
    pub size: i64,
    pub sha256: String,
    pub container: String,
    pub video_codec: String,
    pub width: i64,
    pub height: i64,
    pub duration_s: f64,
    pub technical: Value,
    pub profile: String,
    pub verification: Option<Value>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RightsWindow {
    pub id: i64,
    pub licensed_from: Option<String>,
    pub licensed_until: Option<String>,
    pub territories: Vec<String>,
    pub platforms: Vec<String>,
    pub note: String,
    /// Whether now lies inside the window.
    pub active: bool,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RightsInput {
    /// RFC 3339 or `YYYY-MM-DD`; absent = open.
    pub licensed_from: Option<String>,
    pub licensed_until: Option<String>,
    #[serde(default)]
    pub territories: Vec<String>,
    #[serde(default)]
    pub platforms: Vec<String>,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Collection {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub owner_id: Option<i64>,
    pub assets: i64,
    pub created: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TagCount {
    pub tag: String,
    pub assets: i64,
}

/// A search: every given filter must hold. Results come newest first unless `sort` says
/// otherwise; `after` is the `id` of the last item of the previous page (in any order).
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// Words, all required, each matched as the start of a word (`even` finds "Evening"; a
    /// one-letter word matches whole), over title, description, subject, creator,
    /// contributor, series, episode, identifier, tags and searchable custom fields.
    /// `"evening news"` matches the words in that order (the last one as a prefix);
    /// `-rerun` (or `-"phrase"`) leaves out assets that match it. Other punctuation is
    /// ignored; at most 16 words.
    pub q: Option<String>,
    pub status: Option<String>,
    pub kind: Option<String>,
    pub tag: Option<String>,
    pub collection: Option<i64>,
    /// Created at or after (RFC 3339 or `YYYY-MM-DD`).
    pub created_from: Option<String>,
    /// Created before.
    pub created_to: Option<String>,
    /// Video codec of any of its files (`mpeg2video`, `h264`, …).
    pub codec: Option<String>,
    /// Lowest picture height of any of its files.
    pub min_height: Option<i64>,
    /// Order: `created` (the default: newest first), `title` (A to Z), `date` (the
    /// descriptive date, oldest first), `duration` (shortest first), `updated` (least
    /// recently changed first); a leading `-` reverses it (`-updated`: latest change first,
    /// `-created`: the same as `created`).
    pub sort: Option<String>,
    pub limit: Option<i64>,
    pub after: Option<i64>,
}

/// A result count: exact up to [`COUNT_EXACT_UP_TO`], above that estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Total {
    /// How many assets the search finds (all pages).
    pub value: i64,
    /// Whether `value` is exact; when false it is an estimate from the density of the
    /// newest matches over the catalog's id range, and the true count is above
    /// `COUNT_EXACT_UP_TO` (500).
    pub exact: bool,
}

/// Counts up to this are exact; above, estimated (counting every match of a common word in a
/// large catalog would cost more than the search).
pub const COUNT_EXACT_UP_TO: i64 = 500;

/// The order of a search, with the column (index) it walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sort {
    Created,
    Title,
    Date,
    Duration,
    Updated,
}

impl Sort {
    /// `(order, descending)` from the `sort` parameter.
    fn parse(s: Option<&str>) -> Result<(Sort, bool)> {
        let Some(s) = s.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok((Sort::Created, true));
        };
        let (name, reverse) = match s.strip_prefix('-') {
            Some(n) => (n, true),
            None => (s, false),
        };
        let sort = match name {
            "created" => return Ok((Sort::Created, true)),
            "title" => Sort::Title,
            "date" => Sort::Date,
            "duration" => Sort::Duration,
            "updated" => Sort::Updated,
            _ => {
                return Err(CatalogError::invalid(
                    "sort",
                    format!("{s:?}: created, title, date, duration or updated, with - to reverse"),
                ))
            }
        };
        Ok((sort, reverse))
    }

    /// The sort key of asset `a` (matching the `assets_sort_*` indexes).
    fn key(self, alias: &str) -> String {
        match self {
            Sort::Created => format!("{alias}.id"),
            Sort::Title => format!("lower({alias}.title)"),
            Sort::Date => format!("{alias}.date"),
            Sort::Duration => format!("{alias}.duration_s"),
            Sort::Updated => format!("{alias}.updated_ms"),
        }
    }
}

/// The columns of an asset record (not the PostgreSQL search vector, which `Any` cannot read).
const ASSET_COLUMNS: &str = "a.id, a.house_id, a.kind, a.status, a.title, a.description, \
    a.subject, a.creator, a.contributor, a.date, a.language, a.rights, a.identifier, a.series, \
    a.episode, a.custom, a.owner_id, a.created_ms, a.updated_ms, a.version";

/// The ids of the assets user `$<uid>` may read: owned, granted, or in a collection granted.
fn readable_set(uid: usize) -> String {
    let m = PRINCIPAL_MATCH.replace("$2", &format!("${uid}"));
    format!(
        "SELECT o.id FROM assets o WHERE o.owner_id = ${uid} \
         UNION SELECT acl.object_id FROM acl WHERE acl.object_kind = 'asset' \
         AND (acl.perms & 1) = 1 AND {m} \
         UNION SELECT ca.asset_id FROM collection_assets ca JOIN acl ON acl.object_kind = \
         'collection' AND acl.object_id = ca.collection_id WHERE (acl.perms & 1) = 1 AND {m}"
    )
}

/// The rights a caller holds, or not found when they cannot read, or forbidden when they lack
/// `need`.
fn needing(perms: Option<Perms>, what: &str, id: i64, need: Perms) -> Result<Perms> {
    let p = perms.ok_or_else(|| CatalogError::NotFound(format!("{what} {id}")))?;
    if !p.has(need) {
        return Err(CatalogError::Forbidden(format!(
            "no {} right on {what} {id}",
            need.names().join("+")
        )));
    }
    Ok(p)
}

/// Builds a statement with numbered parameters for both backends.
#[derive(Default)]
struct Sql {
    text: String,
    args: Vec<Arg>,
}

enum Arg {
    I(i64),
    S(String),
}

impl Sql {
    fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }
    fn int(&mut self, v: i64) -> &mut Self {
        self.args.push(Arg::I(v));
        self.text.push_str(&format!("${}", self.args.len()));
        self
    }
    fn str(&mut self, v: impl Into<String>) -> &mut Self {
        self.args.push(Arg::S(v.into()));
        self.text.push_str(&format!("${}", self.args.len()));
        self
    }
    fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
        let mut q = sqlx::query(AssertSqlSafe(self.text.clone()));
        for a in &self.args {
            q = match a {
                Arg::I(v) => q.bind(*v),
                Arg::S(v) => q.bind(v.clone()),
            };
        }
        q
    }
}

fn clean_tag(t: &str) -> Result<String> {
    let t = t.trim().to_lowercase();
    if t.is_empty() || t.len() > 64 || t.chars().any(|c| c.is_control() || c == '\u{1f}') {
        return Err(CatalogError::invalid(
            "tags",
            format!("{t:?}: a tag is 1-64 printable characters"),
        ));
    }
    Ok(t)
}

/// One condition of a text search: words that must follow each other (one word: anywhere),
/// the last matched as a prefix when `prefix`. Only letters and digits get in, so no operator
/// of FTS5 or `to_tsquery` can.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    words: Vec<String>,
    prefix: bool,
    /// The whole words the last (prefix) word stands for, when the dictionary knows them
    /// (SQLite, see [`super::terms`]).
    expanded: Option<Vec<String>>,
}

/// A parsed text search: clauses that must match, and clauses that must not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TextQuery {
    must: Vec<Clause>,
    not: Vec<Clause>,
}

impl TextQuery {
    fn is_empty(&self) -> bool {
        self.must.is_empty() && self.not.is_empty()
    }

    /// The FTS5 expression of `clauses`, joined by `op`.
    fn fts5(clauses: &[Clause], op: &str) -> String {
        clauses
            .iter()
            .map(|c| match &c.expanded {
                Some(alts) if c.prefix && !alts.is_empty() => {
                    let head = &c.words[..c.words.len().saturating_sub(1)];
                    let alts: Vec<String> = alts
                        .iter()
                        .filter(|w| w.chars().all(char::is_alphanumeric))
                        .map(|w| {
                            let mut ws = head.to_vec();
                            ws.push(w.clone());
                            format!("\"{}\"", ws.join(" "))
                        })
                        .collect();
                    format!("({})", alts.join(" OR "))
                }
                _ => {
                    let star = if c.prefix { "*" } else { "" };
                    format!("\"{}\"{star}", c.words.join(" "))
                }
            })
            .collect::<Vec<_>>()
            .join(op)
    }

    /// The FTS5 MATCH expression, when there is something that must match.
    fn fts5_match(&self) -> Option<String> {
        if self.must.is_empty() {
            return None;
        }
        let m = Self::fts5(&self.must, " AND ");
        Some(if self.not.is_empty() {
            m
        } else {
            format!("({m}) NOT ({})", Self::fts5(&self.not, " OR "))
        })
    }

    /// The `to_tsquery('simple', …)` text.
    fn tsquery(&self) -> String {
        let one = |c: &Clause| -> String {
            let n = c.words.len();
            let ws: Vec<String> = c
                .words
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    if c.prefix && i + 1 == n {
                        format!("{w}:*")
                    } else {
                        w.clone()
                    }
                })
                .collect();
            if n > 1 {
                format!("({})", ws.join(" <-> "))
            } else {
                ws.join("")
            }
        };
        self.must
            .iter()
            .map(one)
            .chain(self.not.iter().map(|c| format!("!{}", one(c))))
            .collect::<Vec<_>>()
            .join(" & ")
    }
}

/// Parses what a person types into a search box: words (each a prefix, but one letter matches
/// whole), `"a phrase"` (its words in order, the last a prefix; an unclosed quote runs to the
/// end), and `-word` / `-"phrase"` to leave matches out. Anything but letters and digits
/// separates words. At most 16 words in all.
fn parse_text_query(q: &str) -> TextQuery {
    let mut out = TextQuery::default();
    let mut words_total = 0;
    let chars: Vec<char> = q.chars().collect();
    let mut i = 0;
    let word_at = |i: &mut usize| -> String {
        let mut w = String::new();
        while *i < chars.len() && chars[*i].is_alphanumeric() {
            w.extend(chars[*i].to_lowercase());
            *i += 1;
        }
        w
    };
    while i < chars.len() && words_total < 16 {
        let c = chars[i];
        // `-` leaves out what follows it, when it starts a term.
        let negate = c == '-'
            && (i == 0 || chars[i - 1].is_whitespace())
            && chars
                .get(i + 1)
                .is_some_and(|n| n.is_alphanumeric() || *n == '"');
        if negate {
            i += 1;
        }
        let c = chars[i];
        let clause = if c == '"' {
            i += 1;
            let mut words = Vec::new();
            while i < chars.len() && chars[i] != '"' {
                if chars[i].is_alphanumeric() {
                    if words_total + words.len() < 16 {
                        words.push(word_at(&mut i));
                    } else {
                        word_at(&mut i);
                    }
                } else {
                    i += 1;
                }
            }
            i += 1; // the closing quote
            (!words.is_empty()).then(|| Clause {
                prefix: words.last().is_some_and(|w| w.chars().count() > 1),
                words,
                expanded: None,
            })
        } else if c.is_alphanumeric() {
            let w = word_at(&mut i);
            Some(Clause {
                prefix: w.chars().count() > 1,
                words: vec![w],
                expanded: None,
            })
        } else {
            i += 1;
            None
        };
        if let Some(cl) = clause {
            words_total += cl.words.len();
            if negate {
                out.not.push(cl);
            } else {
                out.must.push(cl);
            }
        }
    }
    out
}

impl Catalog {
    fn agg(&self, expr: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!("group_concat({expr}, char(31))"),
            Backend::Postgres => format!("string_agg(({expr})::text, chr(31))"),
        }
    }

    fn asset_select(&self) -> String {
        format!(
            "SELECT {}, (SELECT {} FROM asset_tags t WHERE t.asset_id = a.id) AS tag_list, \
             (SELECT {} FROM collection_assets c WHERE c.asset_id = a.id) AS coll_list FROM assets a",
            ASSET_COLUMNS,
            self.agg("t.tag"),
            self.agg("c.collection_id")
        )
    }

    /// [`Self::asset_select`] with the rights windows as a JSON array, for one asset in one
    /// round trip.
    fn asset_select_full(&self) -> String {
        let windows = match self.backend {
            Backend::Sqlite => {
                "(SELECT json_group_array(json_object('id', w.id, 'from', w.licensed_from_ms, \
                 'until', w.licensed_until_ms, 'territories', w.territories, 'platforms', \
                 w.platforms, 'note', w.note)) FROM rights_windows w WHERE w.asset_id = a.id)"
            }
            Backend::Postgres => {
                "(SELECT json_agg(json_build_object('id', w.id, 'from', w.licensed_from_ms, \
                 'until', w.licensed_until_ms, 'territories', w.territories, 'platforms', \
                 w.platforms, 'note', w.note) ORDER BY w.id)::text FROM rights_windows w \
                 WHERE w.asset_id = a.id)"
            }
        };
        self.asset_select().replace(
            " FROM assets a",
            &format!(", {windows} AS windows FROM assets a"),
        )
    }

    fn asset_of(&self, r: &AnyRow, perms: Perms) -> Result<Asset> {
        let split = |v: Option<String>| -> Vec<String> {
            let mut v: Vec<String> = v
                .unwrap_or_default()
                .split('\u{1f}')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            v.sort();
            v
        };
        let custom: String = r.try_get("custom")?;
        Ok(Asset {
            id: r.try_get("id")?,
            house_id: r.try_get("house_id")?,
            kind: r.try_get("kind")?,
            status: r.try_get("status")?,
            title: r.try_get("title")?,
            description: r.try_get("description")?,
            subject: r.try_get("subject")?,
            creator: r.try_get("creator")?,
            contributor: r.try_get("contributor")?,
            date: r.try_get("date")?,
            language: r.try_get("language")?,
            rights: r.try_get("rights")?,
            identifier: r.try_get("identifier")?,
            series: r.try_get("series")?,
            episode: r.try_get("episode")?,
            custom: serde_json::from_str(&custom).unwrap_or_default(),
            tags: split(r.try_get("tag_list")?),
            collections: split(r.try_get("coll_list")?)
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
            owner_id: r.try_get("owner_id")?,
            created: super::rfc3339(r.try_get("created_ms")?),
            updated: super::rfc3339(r.try_get("updated_ms")?),
            version: r.try_get("version")?,
            access: perms.names(),
            rights_windows: Vec::new(),
            recording: None,
        })
    }

    /// Checks and normalises custom fields: declared names only, the declared type, a listed
    /// choice; `creating` also requires the required ones.
    fn check_custom(&self, custom: &Map<String, Value>, creating: bool) -> Result<()> {
        for (k, v) in custom {
            let Some(f) = self.fields.iter().find(|f| &f.name == k) else {
                return Err(CatalogError::invalid(
                    format!("custom.{k}"),
                    "not a declared field (catalog.fields)",
                ));
            };
            if v.is_null() {
                if f.required {
                    return Err(CatalogError::invalid(format!("custom.{k}"), "is required"));
                }
                continue;
            }
            let ok = match f.kind {
                FieldType::Text => v
                    .as_str()
                    .is_some_and(|s| s.len() <= 10_000 && !s.contains('\0')),
                FieldType::Integer => v.as_i64().is_some(),
                FieldType::Boolean => v.is_boolean(),
                FieldType::Date => v.as_str().is_some_and(|s| {
                    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
                        .is_ok()
                }),
                FieldType::Choice => v.as_str().is_some_and(|s| f.choices.iter().any(|c| c == s)),
            };
            if !ok {
                let want = match f.kind {
                    FieldType::Text => "text (at most 10000 bytes)".to_string(),
                    FieldType::Integer => "an integer".into(),
                    FieldType::Boolean => "true or false".into(),
                    FieldType::Date => "a date YYYY-MM-DD".into(),
                    FieldType::Choice => format!("one of {}", f.choices.join(", ")),
                };
                return Err(CatalogError::invalid(
                    format!("custom.{k}"),
                    format!("{v} is not {want}"),
                ));
            }
        }
        if creating {
            if let Some(f) = self
                .fields
                .iter()
                .find(|f| f.required && !custom.contains_key(&f.name))
            {
                return Err(CatalogError::invalid(
                    format!("custom.{}", f.name),
                    "is required",
                ));
            }
        }
        Ok(())
    }

    pub(super) fn check_input(
        &self,
        who: &Principal,
        i: &AssetInput,
        creating: bool,
    ) -> Result<()> {
        if i.owner_id.is_some() && !who.is_admin() {
            return Err(CatalogError::FieldForbidden("owner_id"));
        }
        if i.house_id.is_some() && !creating {
            return Err(CatalogError::invalid(
                "house_id",
                "a house ID does not change once given",
            ));
        }
        if i.house_id.is_some() && !matches!(who.role, Role::Admin | Role::Service) {
            return Err(CatalogError::FieldForbidden("house_id"));
        }
        if let Some(h) = &i.house_id {
            if h.is_empty() || h.len() > 128 || h.chars().any(char::is_control) {
                return Err(CatalogError::invalid(
                    "house_id",
                    "1-128 printable characters",
                ));
            }
        }
        if let Some(k) = &i.kind {
            if !KINDS.contains(&k.as_str()) {
                return Err(CatalogError::invalid(
                    "kind",
                    format!("{k:?} is not one of {}", KINDS.join(", ")),
                ));
            }
        }
        if let Some(s) = &i.status {
            if s == "purged" {
                return Err(CatalogError::invalid(
                    "status",
                    "an asset is purged by deleting it",
                ));
            }
            if !STATUSES.contains(&s.as_str()) {
                return Err(CatalogError::invalid(
                    "status",
                    format!("{s:?} is not one of {}", STATUSES.join(", ")),
                ));
            }
        }
        if creating && i.title.as_deref().is_none_or(|t| t.trim().is_empty()) {
            return Err(CatalogError::invalid("title", "is required"));
        }
        for f in DC {
            let max = match f {
                "title" => 1_000,
                "description" => 100_000,
                _ => 10_000,
            };
            if i.dc(f).is_some_and(|v| v.len() > max) {
                return Err(CatalogError::invalid(f, format!("longer than {max} bytes")));
            }
            if i.dc(f).is_some_and(|v| v.contains('\0')) {
                return Err(CatalogError::invalid(f, "contains a NUL character"));
            }
        }
        if let Some(c) = &i.custom {
            self.check_custom(c, creating)?;
        } else if creating {
            self.check_custom(&Map::new(), true)?;
        }
        Ok(())
    }

    /// The text full-text search covers: the descriptive fields, searchable custom fields and
    /// tags, capped at 256 KiB (PostgreSQL limits a tsvector to 1 MB).
    fn fts_body(&self, dc: &[String], custom: &Map<String, Value>, tags: &[String]) -> String {
        let mut body = String::new();
        for v in dc {
            body.push_str(v);
            body.push('\n');
        }
        for f in self.fields.iter().filter(|f| f.searchable) {
            match custom.get(&f.name) {
                Some(Value::String(s)) => body.push_str(s),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => body.push_str(&v.to_string()),
                _ => continue,
            }
            body.push('\n');
        }
        for t in tags {
            body.push_str(t);
            body.push('\n');
        }
        if body.len() > 256 * 1024 {
            let mut cut = 256 * 1024;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
        }
        body
    }

    async fn reindex(&self, tx: &mut sqlx::AnyConnection, id: i64) -> Result<()> {
        let r = sqlx::query(
            "SELECT title, description, subject, creator, contributor, series, episode, identifier, \
             custom FROM assets WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let dc: Vec<String> = (0..8)
            .map(|i| r.try_get::<String, _>(i))
            .collect::<std::result::Result<_, _>>()?;
        let custom: Map<String, Value> =
            serde_json::from_str(&r.try_get::<String, _>(8)?).unwrap_or_default();
        let tags: Vec<String> = sqlx::query("SELECT tag FROM asset_tags WHERE asset_id = $1")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|t| t.try_get::<String, _>(0))
            .collect::<std::result::Result<_, _>>()?;
        let body = self.fts_body(&dc, &custom, &tags);
        self.write_fts(tx, id, &body, true).await
    }

    async fn write_fts(
        &self,
        tx: &mut sqlx::AnyConnection,
        id: i64,
        body: &str,
        replace: bool,
    ) -> Result<()> {
        match self.backend {
            Backend::Sqlite => {
                if replace {
                    sqlx::query("DELETE FROM assets_fts WHERE rowid = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("INSERT INTO assets_fts (rowid, body) VALUES ($1, $2)")
                    .bind(id)
                    .bind(body)
                    .execute(&mut *tx)
                    .await?;
                super::terms::add(tx, &super::terms::words(body)).await?;
                self.fts_writes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Backend::Postgres => {
                sqlx::query("UPDATE assets SET search = to_tsvector('simple', $2) WHERE id = $1")
                    .bind(id)
                    .bind(body)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        Ok(())
    }

    async fn set_tags(&self, tx: &mut sqlx::AnyConnection, id: i64, tags: &[String]) -> Result<()> {
        let clean = Self::clean_tags(tags)?;
        sqlx::query("DELETE FROM asset_tags WHERE asset_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for t in clean {
            sqlx::query("INSERT INTO asset_tags (asset_id, tag) VALUES ($1, $2)")
                .bind(id)
                .bind(t)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    /// Clean, sorted, unique tags.
    fn clean_tags(tags: &[String]) -> Result<Vec<String>> {
        let mut clean: Vec<String> = tags.iter().map(|t| clean_tag(t)).collect::<Result<_>>()?;
        clean.sort();
        clean.dedup();
        if clean.len() > 200 {
            return Err(CatalogError::invalid("tags", "at most 200 tags"));
        }
        Ok(clean)
    }

    /// House IDs for `n` new assets: one sequence update for all, numbers already taken (given
    /// by hand, imported) skipped.
    async fn house_ids(&self, tx: &mut sqlx::AnyConnection, n: usize) -> Result<Vec<String>> {
        let now = time::OffsetDateTime::from_unix_timestamp(self.now_ms() / 1000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let scope = if self.naming.per_year() {
            now.year().to_string()
        } else {
            "all".to_string()
        };
        let date = (
            now.year(),
            u32::from(u8::from(now.month())),
            u32::from(now.day()),
        );
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let want = (n - out.len()) as i64;
            let first: i64 = sqlx::query(
                "INSERT INTO naming_seq (scope, next) VALUES ($1, $2 + 1) ON CONFLICT (scope) \
                 DO UPDATE SET next = naming_seq.next + $2 RETURNING next - $2",
            )
            .bind(&scope)
            .bind(want)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            let ids: Vec<String> = (first..first + want)
                .map(|seq| self.naming.render(&self.channel, date, seq as u64))
                .collect();
            let mut taken = std::collections::HashSet::new();
            for chunk in ids.chunks(1000) {
                let mut q = Sql::default();
                q.push("SELECT house_id FROM assets WHERE house_id IN (");
                for (k, h) in chunk.iter().enumerate() {
                    if k > 0 {
                        q.push(", ");
                    }
                    q.str(h.clone());
                }
                q.push(")");
                for r in q.query().fetch_all(&mut *tx).await? {
                    taken.insert(r.try_get::<String, _>(0)?);
                }
            }
            out.extend(ids.into_iter().filter(|h| !taken.contains(h)));
        }
        Ok(out)
    }

    /// Inserts a new asset (its tags and search text written from memory: nothing to replace).
    pub(super) async fn insert_asset(
        &self,
        tx: &mut sqlx::AnyConnection,
        who: &Principal,
        i: &AssetInput,
        house: Option<String>,
    ) -> Result<i64> {
        let house_id = match (&i.house_id, house) {
            (Some(h), _) => h.clone(),
            (None, Some(h)) => h,
            (None, None) => self
                .house_ids(tx, 1)
                .await?
                .pop()
                .ok_or_else(|| CatalogError::Conflict("no house ID left".into()))?,
        };
        let now = self.now_ms();
        let custom = i.custom.clone().unwrap_or_default();
        let s = |f: &str| i.dc(f).cloned().unwrap_or_default();
        let r = sqlx::query(
            "INSERT INTO assets (house_id, kind, status, title, description, subject, creator, \
             contributor, date, language, rights, identifier, series, episode, custom, owner_id, \
             created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
             $14, $15, $16, $17, $17) RETURNING id",
        )
        .bind(&house_id)
        .bind(i.kind.clone().unwrap_or_else(|| "clip".into()))
        .bind(i.status.clone().unwrap_or_else(|| "ready".into()))
        .bind(s("title").trim().to_string())
        .bind(s("description"))
        .bind(s("subject"))
        .bind(s("creator"))
        .bind(s("contributor"))
        .bind(s("date"))
        .bind(s("language"))
        .bind(s("rights"))
        .bind(s("identifier"))
        .bind(s("series"))
        .bind(s("episode"))
        .bind(serde_json::to_string(&custom).unwrap_or_else(|_| "{}".into()))
        .bind(Some(i.owner_id.unwrap_or(who.user_id)))
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if e.as_database_error().is_some_and(|d| d.is_unique_violation()) {
                CatalogError::Conflict(format!("house ID {house_id:?} is taken"))
            } else {
                e.into()
            }
        })?;
        let id: i64 = r.try_get(0)?;
        let tags = Self::clean_tags(i.tags.as_deref().unwrap_or_default())?;
        for t in &tags {
            sqlx::query("INSERT INTO asset_tags (asset_id, tag) VALUES ($1, $2)")
                .bind(id)
                .bind(t)
                .execute(&mut *tx)
                .await?;
        }
        let dc: Vec<String> = [
            "title",
            "description",
            "subject",
            "creator",
            "contributor",
            "series",
            "episode",
            "identifier",
        ]
        .iter()
        .map(|f| s(f))
        .collect();
        let body = self.fts_body(&dc, &custom, &tags);
        self.write_fts(tx, id, &body, false).await?;
        Ok(id)
    }

    pub(crate) fn check_creator(&self, who: &Principal) -> Result<()> {
        if who.role.may_create_assets() {
            Ok(())
        } else {
            Err(CatalogError::Forbidden(format!(
                "role {} may not create assets",
                who.role.as_str()
            )))
        }
    }

    pub async fn create_asset(&self, who: &Principal, i: &AssetInput) -> Result<Asset> {
        self.check_creator(who)?;
        self.check_input(who, i, true)?;
        if let Some(o) = i.owner_id {
            self.user(o)
                .await
                .map_err(|_| CatalogError::invalid("owner_id", format!("no user {o}")))?;
        }
        let mut tx = self.begin().await?;
        let id = self.insert_asset(&mut tx, who, i, None).await?;
        let c = self
            .record(&mut tx, "asset", id, "created", Some(id))
            .await?;
        tx.commit().await?;
        self.publish([c]);
        self.asset(who, id).await
    }

    /// Registers many assets in one transaction (bulk import); returns their ids.
    pub async fn create_assets_bulk(
        &self,
        who: &Principal,
        items: &[AssetInput],
    ) -> Result<Vec<i64>> {
        self.check_creator(who)?;
        for i in items {
            self.check_input(who, i, true)?;
        }
        let mut tx = self.begin().await?;
        let mut ids = Vec::with_capacity(items.len());
        let mut changes = Vec::with_capacity(items.len());
        let need = items.iter().filter(|i| i.house_id.is_none()).count();
        let mut house = self.house_ids(&mut tx, need).await?.into_iter();
        for i in items {
            let h = if i.house_id.is_none() {
                house.next()
            } else {
                None
            };
            let id = self.insert_asset(&mut tx, who, i, h).await?;
            changes.push(
                self.record(&mut tx, "asset", id, "created", Some(id))
                    .await?,
            );
            ids.push(id);
        }
        tx.commit().await?;
        self.publish(changes);
        Ok(ids)
    }

    /// An asset as `who` may see it; not found when they may not read it.
    pub async fn asset(&self, who: &Principal, id: i64) -> Result<Asset> {
        if who.role.base() == who.role.cap() {
            // The same rights on every asset: no access list to read.
            return self.asset_with(id, who.role.cap()).await;
        }
        let perms = self
            .asset_perms(who, id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("asset {id}")))?;
        self.asset_with(id, perms).await
    }

    async fn asset_with(&self, id: i64, perms: Perms) -> Result<Asset> {
        let sql = format!("{} WHERE a.id = $1", self.asset_select_full());
        let r = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("asset {id}")))?;
        let mut a = self.asset_of(&r, perms)?;
        let windows: Option<String> = r.try_get("windows")?;
        let now = self.now_ms();
        let list = |v: &Value| -> Vec<String> {
            v.as_str()
                .unwrap_or_default()
                .split(',')
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect()
        };
        let mut ws: Vec<RightsWindow> =
            serde_json::from_str::<Vec<Value>>(windows.as_deref().unwrap_or("[]"))
                .unwrap_or_default()
                .iter()
                .map(|w| {
                    let (from, until) = (w["from"].as_i64(), w["until"].as_i64());
                    RightsWindow {
                        id: w["id"].as_i64().unwrap_or_default(),
                        licensed_from: from.map(super::rfc3339),
                        licensed_until: until.map(super::rfc3339),
                        territories: list(&w["territories"]),
                        platforms: list(&w["platforms"]),
                        note: w["note"].as_str().unwrap_or_default().to_string(),
                        active: from.is_none_or(|f| f <= now) && until.is_none_or(|u| now < u),
                    }
                })
                .collect();
        ws.sort_by_key(|w| w.id);
        a.rights_windows = ws;
        if a.kind == "live_recording" {
            a.recording = self.recording_of_asset(id).await?;
        }
        Ok(a)
    }

    /// Checks that `who` holds `need` on the asset: not found when they cannot read it,
    /// forbidden when they can read but not do this.
    pub async fn require(&self, who: &Principal, id: i64, need: Perms) -> Result<Perms> {
        needing(self.asset_perms(who, id).await?, "asset", id, need)
    }

    pub async fn update_asset(&self, who: &Principal, id: i64, i: &AssetInput) -> Result<Asset> {
        let perms = self.require(who, id, Perms::WRITE).await?;
        self.check_input(who, i, false)?;
        if let Some(o) = i.owner_id {
            self.user(o)
                .await
                .map_err(|_| CatalogError::invalid("owner_id", format!("no user {o}")))?;
        }
        let mut tx = self.begin().await?;
        let cur = sqlx::query("SELECT version, status, custom FROM assets WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let version: i64 = cur.try_get(0)?;
        if i.version.is_some_and(|v| v != version) {
            return Err(CatalogError::Conflict(format!(
                "asset {id} is at version {version}, not {}",
                i.version.unwrap_or_default()
            )));
        }
        if cur.try_get::<String, _>(1)? == "purged" {
            return Err(CatalogError::Conflict(format!("asset {id} is purged")));
        }
        let mut custom: Map<String, Value> =
            serde_json::from_str(&cur.try_get::<String, _>(2)?).unwrap_or_default();
        if let Some(c) = &i.custom {
            for (k, v) in c {
                if v.is_null() {
                    custom.remove(k);
                } else {
                    custom.insert(k.clone(), v.clone());
                }
            }
        }
        let mut sql = Sql::default();
        sql.push("UPDATE assets SET version = version + 1, updated_ms = ")
            .int(self.now_ms());
        for f in DC {
            if let Some(v) = i.dc(f) {
                if f == "title" && v.trim().is_empty() {
                    return Err(CatalogError::invalid("title", "must not be empty"));
                }
                sql.push(&format!(", {f} = ")).str(v.clone());
            }
        }
        if let Some(k) = &i.kind {
            sql.push(", kind = ").str(k.clone());
        }
        if let Some(s) = &i.status {
            sql.push(", status = ").str(s.clone());
        }
        if i.custom.is_some() {
            sql.push(", custom = ")
                .str(serde_json::to_string(&custom).unwrap_or_else(|_| "{}".into()));
        }
        if let Some(o) = i.owner_id {
            sql.push(", owner_id = ").int(o);
        }
        sql.push(" WHERE id = ").int(id);
        if let Some(v) = i.version {
            sql.push(" AND version = ").int(v);
        }
        if sql.query().execute(&mut *tx).await?.rows_affected() == 0 {
            return Err(CatalogError::Conflict(format!(
                "asset {id} changed meanwhile; read it again"
            )));
        }
        if let Some(t) = &i.tags {
            self.set_tags(&mut tx, id, t).await?;
        }
        self.reindex(&mut tx, id).await?;
        let c = self
            .record(&mut tx, "asset", id, "updated", Some(id))
            .await?;
        tx.commit().await?;
        self.publish([c]);
        // The owner may have changed: recompute what the caller may do.
        match self.asset_perms(who, id).await? {
            Some(p) => self.asset_with(id, p).await,
            None => self.asset_with(id, perms & Perms::NONE).await,
        }
    }

    /// Purges an asset: its record stays (status `purged`, for the audit and the change feed),
    /// its files' records go; returns the paths those records held (`storage` removes the
    /// media).
    pub async fn purge_asset(&self, who: &Principal, id: i64) -> Result<Vec<PathBuf>> {
        self.require(who, id, Perms::DELETE).await?;
        self.purge_by_workflow(id).await
    }

    /// Purges an asset for a workflow (retention, configured by the administrator): its records
    /// only; returns the paths its files' records held.
    pub async fn purge_by_workflow(&self, id: i64) -> Result<Vec<PathBuf>> {
        let mut tx = self.begin().await?;
        let files = sqlx::query("SELECT path FROM files WHERE asset_id = $1")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM files WHERE asset_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE assets SET status = 'purged', version = version + 1, updated_ms = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(self.now_ms())
        .execute(&mut *tx)
        .await?;
        let c = self
            .record(&mut tx, "asset", id, "deleted", Some(id))
            .await?;
        tx.commit().await?;
        self.publish([c]);
        let mut paths = Vec::with_capacity(files.len());
        for f in files {
            let p: String = f.try_get(0)?;
            paths.push(PathBuf::from(p));
        }
        Ok(paths)
    }

    /// Search and list (newest first unless `q.sort` says otherwise), restricted to what
    /// `who` may read.
    pub async fn search(&self, who: &Principal, q: &SearchQuery) -> Result<Vec<Asset>> {
        let limit = q.limit.unwrap_or(50).clamp(1, 200);
        let (sort, desc) = Sort::parse(q.sort.as_deref())?;
        let (mut sql, key) = self.search_sql(who, q, &self.asset_select(), sort).await?;
        let dir = if desc { "DESC" } else { "ASC" };
        if sort == Sort::Created {
            if let Some(after) = q.after {
                sql.push(&format!(" AND {key} < ")).int(after);
            }
            sql.push(&format!(" ORDER BY {key} DESC LIMIT ")).int(limit);
        } else {
            // Keyset paging on (sort key, id): `after` names the last asset of the page.
            let k = sort.key("a");
            if let Some(after) = q.after {
                let cmp = if desc { "<" } else { ">" };
                sql.push(&format!(
                    " AND ({k}, a.id) {cmp} ((SELECT {} FROM assets a2 WHERE a2.id = ",
                    sort.key("a2")
                ))
                .int(after)
                .push("), ")
                .int(after)
                .push(")");
            }
            sql.push(&format!(" ORDER BY {k} {dir}, a.id {dir} LIMIT "))
                .int(limit);
        }
        let rows = sql.query().fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let perms = if who.role.base() == who.role.cap() {
                who.role.cap()
            } else {
                let id: i64 = r.try_get("id")?;
                self.asset_perms(who, id).await?.unwrap_or(Perms::READ)
            };
            out.push(self.asset_of(r, perms)?);
        }
        Ok(out)
    }

    /// A page of a search and the total over every page, as `GET /v1/assets` gives them. The
    /// count runs beside the page on a connection of its own (readers do not block each other),
    /// so the caller waits for the slower of the two, not their sum; a first page that is not
    /// full is the whole result and its length the exact total.
    pub async fn search_page(
        &self,
        who: &Principal,
        q: &SearchQuery,
    ) -> Result<(Vec<Asset>, Total)> {
        let limit = q.limit.unwrap_or(50).clamp(1, 200);
        let (items, total) = tokio::join!(self.search(who, q), self.search_total(who, q));
        let items = items?;
        if q.after.is_none() && (items.len() as i64) < limit {
            let n = items.len() as i64;
            return Ok((
                items,
                Total {
                    value: n,
                    exact: true,
                },
            ));
        }
        Ok((items, total?))
    }

    /// How many assets a search finds over all its pages: counted up to
    /// [`COUNT_EXACT_UP_TO`]; above that, estimated from how densely the newest matches lie
    /// in the catalog's id range.
    pub async fn search_total(&self, who: &Principal, q: &SearchQuery) -> Result<Total> {
        Sort::parse(q.sort.as_deref())?;
        let (mut sql, key) = self
            .search_sql(who, q, "SELECT a.id AS id FROM assets a", Sort::Created)
            .await?;
        sql.push(&format!(" ORDER BY {key} DESC LIMIT "))
            .int(COUNT_EXACT_UP_TO + 1);
        let inner = std::mem::take(&mut sql.text);
        sql.text = format!("SELECT COUNT(*) AS n, MIN(id) AS lo, MAX(id) AS hi FROM ({inner}) m");
        let r = sql.query().fetch_one(&self.pool).await?;
        let n: i64 = r.try_get("n")?;
        if n <= COUNT_EXACT_UP_TO {
            return Ok(Total {
                value: n,
                exact: true,
            });
        }
        let (lo, hi): (i64, i64) = (r.try_get("lo")?, r.try_get("hi")?);
        let first: i64 = sqlx::query("SELECT COALESCE(MIN(id), 0) FROM assets")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        let span = (hi - lo + 1).max(1) as f64;
        let whole = (hi - first + 1).max(1) as f64;
        let estimate = (n as f64 * whole / span).round() as i64;
        Ok(Total {
            value: estimate.max(n),
            exact: false,
        })
    }

    /// The statement of a search up to its order and limit: `select` (which reads `FROM
    /// assets a`) with the text match and every filter, and the column the newest-first order
    /// walks (`f.rowid` when the full-text index drives the scan).
    async fn search_sql(
        &self,
        who: &Principal,
        q: &SearchQuery,
        select: &str,
        sort: Sort,
    ) -> Result<(Sql, &'static str)> {
        let mut sql = Sql::default();
        let mut text = q.q.as_deref().map(parse_text_query).unwrap_or_default();
        let restricted = !who.role.base().has(Perms::READ);
        let sqlite = self.backend == Backend::Sqlite;
        if sqlite {
            for c in text.must.iter_mut().chain(text.not.iter_mut()) {
                if c.prefix {
                    if let Some(last) = c.words.last() {
                        c.expanded = self.expand_prefix(last).await?;
                    }
                }
            }
        }
        let fts = if sqlite { text.fts5_match() } else { None };
        // A caller who reads few assets: walk what they may read and test each against the
        // index, rather than walking every match of a common word to find the few they see.
        let few = fts.is_some() && restricted && self.readable_at_most(who, 20_000).await?;
        // (A caller who reads a part of the catalog walks what they may read instead.)
        let tag_drives =
            sqlite && fts.is_none() && !restricted && q.tag.is_some() && sort == Sort::Created;
        let mut key = "a.id";
        match fts {
            Some(m) if few => {
                sql.push(select)
                    .push(" WHERE EXISTS (SELECT 1 FROM assets_fts WHERE assets_fts MATCH ")
                    .str(m)
                    .push(" AND assets_fts.rowid = a.id)");
            }
            Some(m) if sort == Sort::Created => {
                // CROSS JOIN keeps the full-text index as the outer loop: matches come newest
                // first and the scan stops at the page size instead of sorting every match.
                sql.push(&select.replace(
                    " FROM assets a",
                    " FROM assets_fts f CROSS JOIN assets a ON a.id = f.rowid",
                ))
                .push(" WHERE assets_fts MATCH ")
                .str(m);
                key = "f.rowid";
            }
            Some(m)
                if self
                    .fts_matches_more_than(&m, self.dense_matches().await?)
                    .await? =>
            {
                // Another order and a common word: walk the order's own index and test each
                // asset, since a page fills within a few hundred of them, where gathering
                // every match first would take longer than the search.
                sql.push(select)
                    .push(" WHERE EXISTS (SELECT 1 FROM assets_fts WHERE assets_fts MATCH ")
                    .str(m)
                    .push(" AND assets_fts.rowid = a.id)");
            }
            Some(m) => {
                // Another order and a rarer word: the matches once (an ephemeral index), then
                // the order's own index or a sort of the matches, as the planner finds cheaper.
                sql.push(select)
                    .push(" WHERE a.id IN (SELECT rowid FROM assets_fts WHERE assets_fts MATCH ")
                    .str(m)
                    .push(")");
            }
            None if tag_drives => {
                // A tag alone, newest first: its index walked backwards, so that the scan
                // stops at the page (or the count's bound) however rare the tag.
                sql.push(&select.replace(
                    " FROM assets a",
                    " FROM asset_tags tg CROSS JOIN assets a ON a.id = tg.asset_id",
                ))
                .push(" WHERE tg.tag = ")
                .str(q.tag.as_deref().unwrap_or_default().trim().to_lowercase());
                key = "tg.asset_id";
            }
            None => {
                sql.push(select).push(" WHERE 1 = 1");
            }
        }
        if sqlite && text.must.is_empty() && !text.not.is_empty() {
            // Only exclusions: FTS5 cannot match "not", so test each candidate.
            sql.push(" AND NOT EXISTS (SELECT 1 FROM assets_fts WHERE assets_fts MATCH ")
                .str(TextQuery::fts5(&text.not, " OR "))
                .push(" AND assets_fts.rowid = a.id)");
        }
        if !sqlite && !text.is_empty() {
            sql.push(" AND a.search @@ to_tsquery('simple', ")
                .str(text.tsquery())
                .push(")");
        }
        if restricted {
            let uid = sql.args.len() + 1;
            sql.args.push(Arg::I(who.user_id));
            // The readable set, from the owner and grant indexes, rather than a test per row.
            sql.push(&format!(" AND a.id IN ({})", readable_set(uid)));
        }
        if let Some(s) = &q.status {
            sql.push(" AND a.status = ").str(s.clone());
        } else {
            sql.push(" AND a.status <> 'purged'");
        }
        if let Some(k) = &q.kind {
            sql.push(" AND a.kind = ").str(k.clone());
        }
        if let Some(t) = q.tag.as_ref().filter(|_| !tag_drives) {
            sql.push(
                " AND EXISTS (SELECT 1 FROM asset_tags t2 WHERE t2.asset_id = a.id AND t2.tag = ",
            )
            .str(t.trim().to_lowercase())
            .push(")");
        }
        if let Some(c) = q.collection {
            sql.push(" AND EXISTS (SELECT 1 FROM collection_assets c2 WHERE c2.asset_id = a.id AND c2.collection_id = ")
                .int(c)
                .push(")");
        }
        for (v, op, name) in [
            (&q.created_from, ">=", "created_from"),
            (&q.created_to, "<", "created_to"),
        ] {
            if let Some(v) = v {
                let ms = super::parse_time(v).ok_or_else(|| {
                    CatalogError::invalid(name, format!("{v:?} is not RFC 3339 or YYYY-MM-DD"))
                })?;
                sql.push(&format!(" AND a.created_ms {op} ")).int(ms);
            }
        }
        if q.codec.is_some() || q.min_height.is_some() {
            sql.push(" AND EXISTS (SELECT 1 FROM files f2 WHERE f2.asset_id = a.id");
            if let Some(c) = &q.codec {
                sql.push(" AND f2.video_codec = ").str(c.clone());
            }
            if let Some(h) = q.min_height {
                sql.push(" AND f2.height >= ").int(h);
            }
            sql.push(")");
        }
        Ok((sql, key))
    }

    /// Past this many matches, a search in another order than the newest first walks that
    /// order's index testing each asset against the text, rather than gathering every match
    /// first: a page of 50 needs about 50 × assets / matches tests, against one step per match,
    /// so the two cost the same around sqrt(250 × assets) matches (16,000 in a million; the
    /// highest id stands for the number of assets).
    async fn dense_matches(&self) -> Result<i64> {
        let n: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM assets")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(((250.0 * n as f64).sqrt() as i64).max(100))
    }

    /// Whether the full-text index matches more than `n` assets (counted lazily, up to n + 1).
    async fn fts_matches_more_than(&self, m: &str, n: i64) -> Result<bool> {
        let c: i64 = sqlx::query(
            "SELECT COUNT(*) FROM (SELECT rowid FROM assets_fts WHERE assets_fts MATCH $1 LIMIT $2) m",
        )
        .bind(m)
        .bind(n + 1)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(c > n)
    }

    /// Whether `who` may read at most `n` assets (their own, granted, or through collections).
    async fn readable_at_most(&self, who: &Principal, n: i64) -> Result<bool> {
        let sql = format!("SELECT COUNT(*) FROM ({} LIMIT $1) r", readable_set(2));
        let c: i64 = sqlx::query(AssertSqlSafe(sql))
            .bind(n + 1)
            .bind(who.user_id)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(c <= n)
    }

    /// The ids of the assets a user owns, in order (the catalog bench measures a catalog it
    /// filled in an earlier run through them).
    pub async fn asset_ids_owned_by(&self, user_id: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query("SELECT id FROM assets WHERE owner_id = $1 ORDER BY id")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    pub async fn asset_count(&self) -> Result<i64> {
        Ok(
            sqlx::query("SELECT COUNT(*) FROM assets WHERE status <> 'purged'")
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        )
    }

    /// `(asset, file)` already holding this content, checked under the ordering lock so that two
    /// appliances ingesting the same content at once cannot both pass.
    pub(super) async fn same_content(
        &self,
        tx: &mut sqlx::AnyConnection,
        sha256: &str,
    ) -> Result<Option<(i64, i64)>> {
        self.order_lock(tx).await?;
        let r = sqlx::query("SELECT asset_id, id FROM files WHERE sha256 = $1 LIMIT 1")
            .bind(sha256)
            .fetch_optional(&mut *tx)
            .await?;
        Ok(match r {
            Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
            None => None,
        })
    }

    /// The duplicate error, naming the asset only to a caller who may read it.
    pub async fn duplicate(&self, who: &Principal, asset_id: i64, file_id: i64) -> CatalogError {
        let visible = matches!(self.asset_perms(who, asset_id).await, Ok(Some(_)));
        CatalogError::Duplicate {
            ids: visible.then_some((asset_id, file_id)),
        }
    }

    /// The file with this content, if the catalog has one.
    pub async fn find_by_hash(&self, sha256: &str) -> Result<Option<(i64, i64)>> {
        let r = sqlx::query("SELECT asset_id, id FROM files WHERE sha256 = $1 ORDER BY id LIMIT 1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match r {
            Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
            None => None,
        })
    }

    pub(super) async fn insert_file(
        &self,
        tx: &mut sqlx::AnyConnection,
        asset_id: i64,
        f: &NewFile,
    ) -> Result<(i64, Change)> {
        if !FILE_ROLES.contains(&f.role.as_str()) {
            return Err(CatalogError::invalid(
                "role",
                format!("{:?} is not one of {}", f.role, FILE_ROLES.join(", ")),
            ));
        }
        let r = sqlx::query(
            "INSERT INTO files (asset_id, role, path, storage, size, sha256, container, video_codec, \
             width, height, duration_s, technical, profile, verification, created_ms) VALUES \
             ($1, $2, $3, 'local', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        )
        .bind(asset_id)
        .bind(&f.role)
        .bind(&f.path)
        .bind(f.size)
        .bind(&f.sha256)
        .bind(&f.container)
        .bind(&f.video_codec)
        .bind(f.width)
        .bind(f.height)
        .bind(f.duration_s)
        .bind(f.technical.to_string())
        .bind(&f.profile)
        .bind(f.verification.as_ref().map_or_else(String::new, Value::to_string))
        .bind(self.now_ms())
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = r.try_get(0)?;
        let c = self
            .record(tx, "file", id, "created", Some(asset_id))
            .await?;
        Ok((id, c))
    }

    /// Ingest: a new asset with its first file, in one transaction. Content already in the
    /// catalog is refused unless `allow_duplicate`.
    pub async fn ingest(
        &self,
        who: &Principal,
        i: &AssetInput,
        f: &NewFile,
        allow_duplicate: bool,
    ) -> Result<(Asset, FileRec)> {
        self.check_creator(who)?;
        self.check_input(who, i, true)?;
        let mut tx = self.begin().await?;
        if !allow_duplicate {
            if let Some((a, id)) = self.same_content(&mut tx, &f.sha256).await? {
                return Err(self.duplicate(who, a, id).await);
            }
        }
        let id = self.insert_asset(&mut tx, who, i, None).await?;
        let c1 = self
            .record(&mut tx, "asset", id, "created", Some(id))
            .await?;
        let (fid, c2) = self.insert_file(&mut tx, id, f).await?;
        tx.commit().await?;
        self.publish([c1, c2]);
        Ok((self.asset(who, id).await?, self.file_row(fid).await?))
    }

    /// Sets an asset's status (workflows).
    pub async fn set_status(&self, asset_id: i64, status: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE assets SET status = $2, version = version + 1, updated_ms = $3 \
             WHERE id = $1 AND status <> 'purged'",
        )
        .bind(asset_id)
        .bind(status)
        .bind(self.now_ms())
        .execute(&mut *tx)
        .await?;
        let c = self
            .record(&mut tx, "asset", asset_id, "updated", Some(asset_id))
            .await?;
        tx.commit().await?;
        self.publish([c]);
        Ok(())
    }

    /// Adds a file to an asset the caller may write.
    pub async fn add_file(
        &self,
        who: &Principal,
        asset_id: i64,
        f: &NewFile,
        allow_duplicate: bool,
    ) -> Result<FileRec> {
        self.require(who, asset_id, Perms::WRITE).await?;
        let mut tx = self.begin().await?;
        if !allow_duplicate {
            if let Some((a, id)) = self.same_content(&mut tx, &f.sha256).await? {
                return Err(self.duplicate(who, a, id).await);
            }
        }
        let (fid, c) = self.insert_file(&mut tx, asset_id, f).await?;
        tx.commit().await?;
        self.publish([c]);
        self.file_row(fid).await
    }

    pub(crate) async fn file_row(&self, id: i64) -> Result<FileRec> {
        let r = sqlx::query("SELECT * FROM files WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("file {id}")))?;
        file_of(&r)
    }

    /// A file, when `who` may read its asset.
    pub async fn file(&self, who: &Principal, id: i64) -> Result<(FileRec, Perms)> {
        let f = self.file_row(id).await?;
        let p = self
            .asset_perms(who, f.asset_id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("file {id}")))?;
        Ok((f, p))
    }

    pub async fn files(&self, who: &Principal, asset_id: i64) -> Result<Vec<FileRec>> {
        self.require(who, asset_id, Perms::READ).await?;
        let rows = sqlx::query("SELECT * FROM files WHERE asset_id = $1 ORDER BY id")
            .bind(asset_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(file_of).collect()
    }

    pub async fn rights_windows(&self, asset_id: i64) -> Result<Vec<RightsWindow>> {
        let now = self.now_ms();
        let rows = sqlx::query("SELECT * FROM rights_windows WHERE asset_id = $1 ORDER BY id")
            .bind(asset_id)
            .fetch_all(&self.pool)
            .await?;
        let list = |s: String| -> Vec<String> {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect()
        };
        rows.iter()
            .map(|r| {
                let from: Option<i64> = r.try_get("licensed_from_ms")?;
                let until: Option<i64> = r.try_get("licensed_until_ms")?;
                Ok(RightsWindow {
                    id: r.try_get("id")?,
                    licensed_from: from.map(super::rfc3339),
                    licensed_until: until.map(super::rfc3339),
                    territories: list(r.try_get("territories")?),
                    platforms: list(r.try_get("platforms")?),
                    note: r.try_get("note")?,
                    active: from.is_none_or(|f| f <= now) && until.is_none_or(|u| now < u),
                })
            })
            .collect()
    }

    pub async fn add_rights_window(
        &self,
        who: &Principal,
        asset_id: i64,
        w: &RightsInput,
    ) -> Result<RightsWindow> {
        self.require(who, asset_id, Perms::WRITE).await?;
        let parse = |v: &Option<String>, name: &str| -> Result<Option<i64>> {
            v.as_ref()
                .map(|s| {
                    super::parse_time(s).ok_or_else(|| {
                        CatalogError::invalid(name, format!("{s:?} is not RFC 3339 or YYYY-MM-DD"))
                    })
                })
                .transpose()
        };
        let from = parse(&w.licensed_from, "licensed_from")?;
        let until = parse(&w.licensed_until, "licensed_until")?;
        if let (Some(f), Some(u)) = (from, until) {
            if u <= f {
                return Err(CatalogError::invalid(
                    "licensed_until",
                    "must be after licensed_from",
                ));
            }
        }
        let codes = |v: &[String], name: &str| -> Result<String> {
            for c in v {
                if c.is_empty()
                    || c.len() > 32
                    || !c
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
                {
                    return Err(CatalogError::invalid(
                        name,
                        format!("{c:?}: use codes such as GB, FR, EU, web, linear"),
                    ));
                }
            }
            Ok(v.join(","))
        };
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "INSERT INTO rights_windows (asset_id, licensed_from_ms, licensed_until_ms, territories, \
             platforms, note) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(asset_id)
        .bind(from)
        .bind(until)
        .bind(codes(&w.territories, "territories")?)
        .bind(codes(&w.platforms, "platforms")?)
        .bind(&w.note)
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = r.try_get(0)?;
        let c = self
            .record(&mut tx, "asset", asset_id, "updated", Some(asset_id))
            .await?;
        tx.commit().await?;
        self.publish([c]);
        self.rights_windows(asset_id)
            .await?
            .into_iter()
            .find(|w| w.id == id)
            .ok_or_else(|| CatalogError::NotFound(format!("rights window {id}")))
    }

    pub async fn delete_rights_window(
        &self,
        who: &Principal,
        asset_id: i64,
        id: i64,
    ) -> Result<()> {
        self.require(who, asset_id, Perms::WRITE).await?;
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM rights_windows WHERE id = $1 AND asset_id = $2")
            .bind(id)
            .bind(asset_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(CatalogError::NotFound(format!("rights window {id}")));
        }
        let c = self
            .record(&mut tx, "asset", asset_id, "updated", Some(asset_id))
            .await?;
        tx.commit().await?;
        self.publish([c]);
        Ok(())
    }

    /// Tags in use on assets `who` may read, with how many assets carry each.
    pub async fn tags(&self, who: &Principal, limit: i64) -> Result<Vec<TagCount>> {
        let rows = if who.role.base().has(Perms::READ) {
            sqlx::query(
                "SELECT tag, COUNT(*) AS n FROM asset_tags GROUP BY tag ORDER BY n DESC, tag LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
        } else {
            let sql = format!(
                "SELECT t.tag, COUNT(*) AS n FROM asset_tags t WHERE t.asset_id IN ({}) \
                 GROUP BY t.tag ORDER BY n DESC, t.tag LIMIT $1",
                readable_set(2)
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(limit)
                .bind(who.user_id)
                .fetch_all(&self.pool)
                .await?
        };
        rows.iter()
            .map(|r| {
                Ok(TagCount {
                    tag: r.try_get(0)?,
                    assets: r.try_get(1)?,
                })
            })
            .collect()
    }

    // ---- collections ----

    /// The rights of `who` on a collection; `None` when it does not exist or is hidden.
    pub async fn collection_perms(&self, who: &Principal, id: i64) -> Result<Option<Perms>> {
        let sql = format!(
            "SELECT c.owner_id, COALESCE((SELECT MAX(perms & 1) + MAX(perms & 2) + MAX(perms & 4) \
             + MAX(perms & 8) FROM acl WHERE acl.object_kind = 'collection' AND acl.object_id = c.id \
             AND {PRINCIPAL_MATCH}), 0) AS granted FROM collections c WHERE c.id = $1"
        );
        let r = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(who.user_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = r else { return Ok(None) };
        Ok(effective(
            who,
            r.try_get("owner_id")?,
            r.try_get("granted")?,
        ))
    }

    async fn require_collection(&self, who: &Principal, id: i64, need: Perms) -> Result<Perms> {
        needing(
            self.collection_perms(who, id).await?,
            "collection",
            id,
            need,
        )
    }

    pub async fn create_collection(
        &self,
        who: &Principal,
        name: &str,
        description: &str,
    ) -> Result<Collection> {
        self.check_creator(who)?;
        if name.trim().is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(CatalogError::invalid("name", "1-200 printable characters"));
        }
        if description.len() > 10_000 || description.contains('\0') {
            return Err(CatalogError::invalid(
                "description",
                "at most 10000 bytes, no NUL",
            ));
        }
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "INSERT INTO collections (name, description, owner_id, created_ms) VALUES ($1, $2, $3, $4) \
             RETURNING id",
        )
        .bind(name.trim())
        .bind(description)
        .bind(who.user_id)
        .bind(self.now_ms())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if e.as_database_error().is_some_and(|d| d.is_unique_violation()) {
                CatalogError::Conflict(format!("collection {name:?} exists"))
            } else {
                e.into()
            }
        })?;
        let id: i64 = r.try_get(0)?;
        let c = self
            .record(&mut tx, "collection", id, "created", None)
            .await?;
        tx.commit().await?;
        self.publish([c]);
        self.collection(who, id).await
    }

    pub async fn collection(&self, who: &Principal, id: i64) -> Result<Collection> {
        self.require_collection(who, id, Perms::READ).await?;
        let r = sqlx::query(
            "SELECT c.*, (SELECT COUNT(*) FROM collection_assets x WHERE x.collection_id = c.id) AS n \
             FROM collections c WHERE c.id = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        collection_of(&r)
    }

    pub async fn collections(
        &self,
        who: &Principal,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Collection>> {
        let sql = format!(
            "SELECT c.*, (SELECT COUNT(*) FROM collection_assets x WHERE x.collection_id = c.id) AS n \
             FROM collections c WHERE c.id > $3 AND ($4 = 1 OR c.owner_id = $2 OR EXISTS (SELECT 1 \
             FROM acl WHERE acl.object_kind = 'collection' AND acl.object_id = c.id AND \
             (acl.perms & 1) = 1 AND {PRINCIPAL_MATCH})) ORDER BY c.id LIMIT $1"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(limit)
            .bind(who.user_id)
            .bind(after)
            .bind(i64::from(who.role.base().has(Perms::READ)))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(collection_of).collect()
    }

    pub async fn delete_collection(&self, who: &Principal, id: i64) -> Result<()> {
        self.require_collection(who, id, Perms::DELETE).await?;
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM collections WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM acl WHERE object_kind = 'collection' AND object_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let c = self
            .record(&mut tx, "collection", id, "deleted", None)
            .await?;
        tx.commit().await?;
        self.publish([c]);
        Ok(())
    }

    /// Puts an asset in a collection (write on the collection, read on the asset) or takes it out.
    pub async fn set_in_collection(
        &self,
        who: &Principal,
        collection: i64,
        asset: i64,
        member: bool,
    ) -> Result<()> {
        self.require_collection(who, collection, Perms::WRITE)
            .await?;
        if member {
            // Putting an asset in a collection shares it with whoever the collection is shared
            // with: only its owner (or an admin) may.
            self.require_owner(who, "asset", asset).await?;
        } else {
            self.require(who, asset, Perms::READ).await?;
        }
        let mut tx = self.begin().await?;
        if member {
            sqlx::query(
                "INSERT INTO collection_assets (collection_id, asset_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
        } else {
            sqlx::query("DELETE FROM collection_assets WHERE collection_id = $1 AND asset_id = $2")
        }
        .bind(collection)
        .bind(asset)
        .execute(&mut *tx)
        .await?;
        let c1 = self
            .record(&mut tx, "collection", collection, "updated", None)
            .await?;
        let c2 = self
            .record(&mut tx, "asset", asset, "updated", Some(asset))
            .await?;
        tx.commit().await?;
        self.publish([c1, c2]);
        Ok(())
    }

    /// Who may change the access list: the owner, or an admin.
    pub async fn require_owner(&self, who: &Principal, object_kind: &str, id: i64) -> Result<()> {
        let (perms, table) = match object_kind {
            "asset" => (self.asset_perms(who, id).await?, "assets"),
            _ => (self.collection_perms(who, id).await?, "collections"),
        };
        if perms.is_none() {
            return Err(CatalogError::NotFound(format!("{object_kind} {id}")));
        }
        if who.is_admin() {
            return Ok(());
        }
        let owner: Option<i64> = sqlx::query(AssertSqlSafe(format!(
            "SELECT owner_id FROM {table} WHERE id = $1"
        )))
        .bind(id)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        if owner == Some(who.user_id) {
            Ok(())
        } else {
            Err(CatalogError::Forbidden(format!(
                "only the owner or an admin changes the access list of {object_kind} {id}"
            )))
        }
    }
}

fn collection_of(r: &AnyRow) -> Result<Collection> {
    Ok(Collection {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        owner_id: r.try_get("owner_id")?,
        assets: r.try_get("n")?,
        created: super::rfc3339(r.try_get("created_ms")?),
    })
}

fn file_of(r: &AnyRow) -> Result<FileRec> {
    let verification: String = r.try_get("verification")?;
    let technical: String = r.try_get("technical")?;
    Ok(FileRec {
        id: r.try_get("id")?,
        asset_id: r.try_get("asset_id")?,
        role: r.try_get("role")?,
        path: r.try_get("path")?,
        storage: r.try_get("storage")?,
        size: r.try_get("size")?,
        sha256: r.try_get("sha256")?,
        container: r.try_get("container")?,
        video_codec: r.try_get("video_codec")?,
        width: r.try_get("width")?,
        height: r.try_get("height")?,
        duration_s: r.try_get("duration_s")?,
        technical: serde_json::from_str(&technical).unwrap_or(Value::Null),
        profile: r.try_get("profile")?,
        verification: serde_json::from_str(&verification).ok(),
        created: super::rfc3339(r.try_get("created_ms")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_words_are_safe() {
        let c = |ws: &[&str], prefix: bool| Clause {
            words: ws.iter().map(|w| w.to_string()).collect(),
            prefix,
            expanded: None,
        };
        let t = parse_text_query("News \"AT\" 10* OR x-ray é* a");
        assert_eq!(
            t.must,
            vec![
                c(&["news"], true),
                c(&["at"], true),
                c(&["10"], true),
                c(&["or"], true),
                c(&["x"], false),
                c(&["ray"], true),
                c(&["é"], false),
                c(&["a"], false)
            ]
        );
        assert!(t.not.is_empty());
        assert!(parse_text_query("\" * ( ) - -- \"\"").is_empty());
        assert_eq!(
            TextQuery::fts5(&t.must[..3], " AND "),
            "\"news\"* AND \"at\"* AND \"10\"*"
        );
    }

    #[test]
    fn phrases_and_exclusions() {
        let t = parse_text_query("\"Evening News\" -rerun -\"late edition\" sport");
        assert_eq!(
            t.fts5_match().unwrap(),
            "(\"evening news\"* AND \"sport\"*) NOT (\"rerun\"* OR \"late edition\"*)"
        );
        assert_eq!(
            t.tsquery(),
            "(evening <-> news:*) & sport:* & !rerun:* & !(late <-> edition:*)"
        );
        let t = parse_text_query("-rerun");
        assert!(t.must.is_empty() && t.fts5_match().is_none());
        assert_eq!(t.tsquery(), "!rerun:*");
        // An unclosed quote runs to the end; a dash inside a word is not an exclusion.
        let t = parse_text_query("\"evening ne");
        assert_eq!(t.fts5_match().unwrap(), "\"evening ne\"*");
        let t = parse_text_query("well-known");
        assert_eq!(t.must.len(), 2);
        assert!(t.not.is_empty());
        // At most 16 words.
        let long = (0..40)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(parse_text_query(&long).must.len(), 16);
        let long = format!("\"{long}\"");
        assert_eq!(parse_text_query(&long).must[0].words.len(), 16);
    }

    #[test]
    fn sorts() {
        assert_eq!(Sort::parse(None).unwrap(), (Sort::Created, true));
        assert_eq!(Sort::parse(Some("title")).unwrap(), (Sort::Title, false));
        assert_eq!(
            Sort::parse(Some("-updated")).unwrap(),
            (Sort::Updated, true)
        );
        assert_eq!(
            Sort::parse(Some("-created")).unwrap(),
            (Sort::Created, true)
        );
        assert!(Sort::parse(Some("colour")).is_err());
        assert!(Sort::parse(Some("--title")).is_err());
    }
}
