//! The `[storages]` section: the storages files may have copies on (local folders, S3 stores),
//! the copy policies, the fixity audit and the retention rules. Values and their validation only.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::appliance::ByteSize;

/// The id of the storage that is always there: `data_dir/media`, online, where ingest writes.
pub const MEDIA: &str = "media";

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Storages {
    /// Every copy is re-hashed at least this often (seconds; 0 = only on request).
    pub audit_interval_s: u64,
    /// Copy policies run this often (seconds; 0 = only on request).
    pub policy_interval_s: u64,
    /// Alert when a storage is this full (percent of its capacity).
    pub warn_percent: f64,
    /// Refuse new writes (ingest, copies) when a write would leave it fuller than this.
    pub refuse_percent: f64,
    /// Bandwidth of `data_dir/media` given to the audit (MB/s; 0 = no cap).
    pub media_audit_mb_s: f64,
    pub store: Vec<StoreConfig>,
    pub policy: Vec<Policy>,
    pub retention: Vec<RetentionRule>,
    /// `http://` URLs POSTed a JSON event on each storage event that needs someone: a copy
    /// found bad or missing, repaired or not, a file with no good copy left, a copy that could
    /// not be made, a threshold crossed, ingest paused (and resumed) before a disk fills.
    pub webhooks: Vec<String>,
}

impl Default for Storages {
    fn default() -> Self {
        Storages {
            audit_interval_s: 7 * 86_400,
            policy_interval_s: 3_600,
            warn_percent: 85.0,
            refuse_percent: 97.0,
            media_audit_mb_s: 0.0,
            store: Vec::new(),
            policy: Vec::new(),
            retention: Vec::new(),
            webhooks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Online,
    Nearline,
    Archive,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Online => "online",
            Role::Nearline => "nearline",
            Role::Archive => "archive",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// A folder (one per disk or volume).
    Local,
    /// An S3-compatible object store.
    S3,
}

/// One storage. Secrets: `secret_access_key` may instead come from the environment variable
/// named by `secret_access_key_env`; neither is ever shown (see the `Debug` of the stores).
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub id: String,
    pub kind: StoreKind,
    pub role: Role,
    #[serde(default = "yes")]
    pub writable: bool,
    /// Local: the folder.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// S3: `http://host:port` (none = AWS).
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub bucket: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default, skip_serializing)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub secret_access_key_env: Option<String>,
    /// Keys start with this (S3) — lets several appliances share a bucket.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Capacity to plan with; local folders default to their file system's size.
    #[serde(default)]
    pub capacity: Option<ByteSize>,
    /// Audit read bandwidth cap (MB/s; 0 = none).
    #[serde(default)]
    pub audit_mb_s: f64,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("role", &self.role)
            .field("writable", &self.writable)
            .field("path", &self.path)
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

fn yes() -> bool {
    true
}

/// Which assets a policy or a retention rule takes: every given condition holds.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Selector {
    pub kind: Option<String>,
    pub status: Option<String>,
    pub tag: Option<String>,
    pub collection: Option<i64>,
    /// Created at least this many days ago.
    pub older_than_days: Option<f64>,
    /// Every rights window of the asset ended (and it had one) at least this many days ago.
    pub rights_ended_days: Option<f64>,
}

/// A copy policy: the files of the selected assets get a verified copy on each storage of
/// `copy_to` (`keep` of them at least, on distinct storages); `move` then drops the copies on
/// `move_from` once the new ones are verified.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    #[serde(default)]
    pub select: Selector,
    /// Storages copies go to, in order of preference.
    pub copy_to: Vec<String>,
    /// Copies (on distinct storages, the existing ones included) each file must have.
    #[serde(default = "two")]
    pub keep: usize,
    /// Storages whose copies are dropped once `keep` verified copies exist elsewhere.
    #[serde(default)]
    pub move_from: Vec<String>,
}

fn two() -> usize {
    2
}

/// A retention rule: the selected assets are proposed for purge (dry-run), then purged once the
/// proposal is `grace_days` old, unless held, in a rights window, or scheduled.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    pub name: String,
    #[serde(default)]
    pub select: Selector,
    #[serde(default = "seven")]
    pub grace_days: f64,
}

fn seven() -> f64 {
    7.0
}

impl Storages {
    /// Every mistake, as (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut ids = vec![MEDIA.to_string()];
        if !(0.0..=100.0).contains(&self.warn_percent)
            || !(0.0..=100.0).contains(&self.refuse_percent)
            || self.warn_percent > self.refuse_percent
        {
            out.push((
                "storages.warn_percent",
                "warn_percent and refuse_percent are 0-100, warn at most refuse".into(),
            ));
        }
        for w in &self.webhooks {
            if !w.starts_with("http://") {
                out.push(("storages.webhooks", format!("{w:?}: only http:// webhooks")));
            }
        }
        for s in &self.store {
            let ok_id = !s.id.is_empty()
                && s.id.len() <= 64
                && s.id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok_id {
                out.push((
                    "storages.store.id",
                    format!("{:?}: 1-64 letters, digits, - and _", s.id),
                ));
            }
            if ids.contains(&s.id) {
                out.push((
                    "storages.store.id",
                    format!("{:?} is declared twice (\"media\" is data_dir/media)", s.id),
                ));
            }
            ids.push(s.id.clone());
            match s.kind {
                StoreKind::Local if s.path.as_ref().is_none_or(|p| !p.is_absolute()) => out.push((
                    "storages.store.path",
                    format!("storage {:?}: a local storage needs an absolute path", s.id),
                )),
                StoreKind::S3 if s.bucket.as_deref().is_none_or(str::is_empty) => out.push((
                    "storages.store.bucket",
                    format!("storage {:?}: an S3 storage needs a bucket", s.id),
                )),
                StoreKind::S3
                    if s.access_key_id.is_some()
                        && s.secret_access_key.is_none()
                        && s.secret_access_key_env.is_none() =>
                {
                    out.push((
                        "storages.store.secret_access_key",
                        format!("storage {:?}: access_key_id without a secret", s.id),
                    ))
                }
                _ => {}
            }
            if s.audit_mb_s.is_nan() || s.audit_mb_s < 0.0 {
                out.push((
                    "storages.store.audit_mb_s",
                    format!("storage {:?}: must be >= 0", s.id),
                ));
            }
        }
        for p in &self.policy {
            for t in p.copy_to.iter().chain(&p.move_from) {
                if !ids.contains(t) {
                    out.push((
                        "storages.policy.copy_to",
                        format!("policy {:?}: no storage {t:?}", p.name),
                    ));
                }
            }
            if p.keep == 0 || p.copy_to.is_empty() {
                out.push((
                    "storages.policy.keep",
                    format!("policy {:?}: keep >= 1 and copy_to not empty", p.name),
                ));
            }
        }
        for r in &self.retention {
            if r.grace_days.is_nan() || r.grace_days < 0.0 {
                out.push((
                    "storages.retention.grace_days",
                    format!("rule {:?}: must be >= 0", r.name),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_unknown_storages_in_policies_and_secrets_stay_out_of_debug() {
        let s: Storages = toml::from_str(
            r#"
            [[store]]
            id = "s3a"
            kind = "s3"
            role = "archive"
            bucket = "b"
            access_key_id = "AK"
            secret_access_key = "TOPSECRET"
            [[policy]]
            name = "p"
            copy_to = ["nope"]
            "#,
        )
        .unwrap();
        let p = s.problems();
        assert!(
            p.iter().any(|(_, m)| m.contains("no storage \"nope\"")),
            "{p:?}"
        );
        assert!(!format!("{s:?}").contains("TOPSECRET"));
    }
}
