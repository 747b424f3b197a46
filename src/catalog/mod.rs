//! The media catalog: assets and their files, descriptive metadata and search, users, groups,
//! roles and access lists, rights windows, the hash-chained audit log and the change feed.
//!
//! One implementation over sqlx's `Any` driver serves SQLite (embedded default) and PostgreSQL
//! (several appliances); the few statements that differ (full-text search, locking, the start
//! of a write transaction) are chosen by [`Backend`]. This module knows nothing of HTTP: the API
//! maps [`CatalogError`] to status codes. No libav here: probing is the caller's. Records only:
//! the files themselves are removed by `storage`. Its pool and transactions are its own: a
//! component with tables in its database (the job queue) reaches them through [`Hosted`].
//! Imports `config` (custom fields) and the pure `naming` and `timecode` only: never jobs, av,
//! ingest, storage or api.

pub mod access;
pub mod assets;
pub mod copies;
mod hosted;
pub mod live;
pub mod log;
pub mod mam;
pub mod playout;
pub mod recording;
pub mod review;
mod store;
mod terms;
pub mod uploads;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use hosted::{Hosted, Write};
pub use log::AuditScope;
pub use store::{Backend, Catalog, Clock, OpenOptions, SystemClock};

/// What went wrong, with the cause kept; the API turns each kind into one stable code.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The object does not exist, or the caller may not see it (the same answer for both).
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    /// A field the caller's role may not set.
    #[error("field {0:?} may not be set by this role")]
    FieldForbidden(&'static str),
    #[error("{field}: {why}")]
    Invalid { field: String, why: String },
    #[error("{0}")]
    Conflict(String),
    /// Content already in the catalog (same SHA-256); where it is, when the caller may know.
    #[error("the same content is already in the catalog{}", .ids.map_or_else(String::new, |(a, f)| format!(" (file {f} of asset {a})")))]
    Duplicate { ids: Option<(i64, i64)> },
    #[error("catalog database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("catalog migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("password hashing: {0}")]
    Hash(String),
}

impl CatalogError {
    pub(crate) fn invalid(field: impl Into<String>, why: impl Into<String>) -> Self {
        CatalogError::Invalid {
            field: field.into(),
            why: why.into(),
        }
    }
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// A user's role: what they may do regardless of access lists, and the most an access list can
/// give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including users, groups and the audit log.
    Admin,
    /// Master control: reads and downloads every asset, ingests, reads the change feed.
    Operator,
    /// Creates assets and edits those they own or are granted.
    Editor,
    /// Reads (and downloads, when granted) what access lists give them.
    Viewer,
    /// An integration (MAM, playout): reads, downloads and describes every asset, ingests,
    /// follows the change feed; never deletes.
    Service,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
            Role::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "operator" => Role::Operator,
            "editor" => Role::Editor,
            "viewer" => Role::Viewer,
            "service" => Role::Service,
            _ => return None,
        })
    }

    /// Rights on every asset, with no access list.
    pub fn base(self) -> Perms {
        match self {
            Role::Admin => Perms::ALL,
            // Master control approves material for air and delivery.
            Role::Operator => Perms::READ | Perms::DOWNLOAD | Perms::APPROVE,
            Role::Service => Perms::READ | Perms::WRITE | Perms::DOWNLOAD,
            Role::Editor | Role::Viewer => Perms::NONE,
        }
    }

    /// The most this role can hold on an asset, whatever the access lists say.
    pub fn cap(self) -> Perms {
        match self {
            Role::Admin | Role::Operator | Role::Editor => Perms::ALL,
            Role::Service => Perms::READ | Perms::WRITE | Perms::DOWNLOAD,
            // A reviewer outside the station may be granted approval.
            Role::Viewer => Perms::READ | Perms::DOWNLOAD | Perms::APPROVE,
        }
    }

    pub fn may_create_assets(self) -> bool {
        !matches!(self, Role::Viewer)
    }

    /// Reads the change feed and every event.
    pub fn sees_everything(self) -> bool {
        matches!(self, Role::Admin | Role::Operator | Role::Service)
    }
}

/// Rights on an asset or collection, as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perms(pub i64);

impl Perms {
    pub const NONE: Perms = Perms(0);
    pub const READ: Perms = Perms(1);
    pub const WRITE: Perms = Perms(2);
    pub const DOWNLOAD: Perms = Perms(4);
    pub const DELETE: Perms = Perms(8);
    /// Approves or rejects an asset in review (review and approval).
    pub const APPROVE: Perms = Perms(16);
    pub const ALL: Perms = Perms(31);

    pub fn has(self, p: Perms) -> bool {
        self.0 & p.0 == p.0
    }

    pub fn names(self) -> Vec<&'static str> {
        [
            (Perms::READ, "read"),
            (Perms::WRITE, "write"),
            (Perms::DOWNLOAD, "download"),
            (Perms::DELETE, "delete"),
            (Perms::APPROVE, "approve"),
        ]
        .into_iter()
        .filter(|(p, _)| self.has(*p))
        .map(|(_, n)| n)
        .collect()
    }

    pub fn from_names(names: &[String]) -> Result<Perms> {
        let mut p = 0;
        for n in names {
            p |= match n.as_str() {
                "read" => 1,
                "write" => 2,
                "download" => 4,
                "delete" => 8,
                "approve" => 16,
                other => {
                    return Err(CatalogError::invalid(
                        "perms",
                        format!("{other:?} is not read, write, download, delete or approve"),
                    ))
                }
            };
        }
        Ok(Perms(p))
    }
}

impl std::ops::BitOr for Perms {
    type Output = Perms;
    fn bitor(self, o: Perms) -> Perms {
        Perms(self.0 | o.0)
    }
}

impl std::ops::BitAnd for Perms {
    type Output = Perms;
    fn bitand(self, o: Perms) -> Perms {
        Perms(self.0 & o.0)
    }
}

/// Who is asking: an authenticated user with their role and groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    pub groups: Arc<[i64]>,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// A change to a catalog object, as the change feed and the event stream give it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Change {
    /// The cursor: strictly increasing in commit order.
    pub seq: i64,
    pub at: String,
    /// `asset`, `file`, `collection`, `user`, `group`, `live_source`, `live_output`.
    pub object: String,
    pub id: i64,
    /// `created`, `updated`, `deleted`; for a live source also `lost` and `restored`.
    pub op: String,
    /// The asset concerned, for assets and their files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset_id: Option<i64>,
    /// What the change says beyond its op: for a live output's `switched`, `from` (absent at the
    /// start), `to` and `reason`; for a source's `lost`, the `reason`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// Unix milliseconds as RFC 3339 UTC.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// RFC 3339 (or a plain `YYYY-MM-DD`, taken as midnight UTC) to Unix milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok();
    }
    let d = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(d.midnight().assume_utc().unix_timestamp() * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_caps_bound_the_grants() {
        for r in [
            Role::Admin,
            Role::Operator,
            Role::Editor,
            Role::Viewer,
            Role::Service,
        ] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert!(r.cap().has(r.base()), "{r:?}");
        }
        assert!(!Role::Viewer.cap().has(Perms::WRITE));
        assert!(!Role::Service.cap().has(Perms::DELETE));
        assert_eq!(
            Perms::from_names(&["read".into(), "delete".into()]).unwrap(),
            Perms(9)
        );
        assert!(Perms::from_names(&["own".into()]).is_err());
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_time("2026-11-29"), Some(1_795_910_400_000));
        assert_eq!(parse_time("2026-11-29T00:00:01Z"), Some(1_795_910_401_000));
        assert_eq!(parse_time("29/11/2026"), None);
    }
}
