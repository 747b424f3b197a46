//! The storages at work: copies kept by policy (each verified by reading it back before it
//! counts), restore to online, the fixity audit with repair, retention (dry-run, then purge after
//! a grace period, leaving a tombstone) and health (space, growth, alerts, read errors).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::store::{Digested, RateLimit, Store, StoreError};
use crate::catalog::copies::{CopyRec, FileRef};
use crate::catalog::{Catalog, CatalogError};
use crate::config::storage::{Role, Selector, Storages as StoragesConfig, StoreKind, MEDIA};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("no storage {0:?}")]
    UnknownStorage(String),
    #[error("file {0} not found")]
    NoFile(i64),
    #[error("file {file_id}: no good copy to read from ({why})")]
    NoGoodCopy { file_id: i64, why: String },
    #[error("file {file_id}: the copy on {storage} does not match the catalog after writing (size {size}, sha256 {sha256})")]
    Unverified {
        file_id: i64,
        storage: String,
        size: u64,
        sha256: String,
    },
}

/// The playout side answers whether an asset is on a channel's schedule (from now on): such an
/// asset is never purged. Until a playout schedule exists, nothing is scheduled.
pub trait ScheduleCheck: Send + Sync {
    fn is_scheduled(&self, asset_id: i64, now_ms: i64) -> bool;
}

/// Hears the storage events that need someone (see [`NOTIFIED`]), each as a JSON event: the
/// service sends them to the configured webhooks.
pub trait Notify: Send + Sync {
    fn notify(&self, event: serde_json::Value);
}

/// The event kinds sent on: copies bad or missing, repairs and their failures, files with no
/// good copy, copies that could not be made, threshold alerts, ingest paused and resumed.
pub const NOTIFIED: &[&str] = &[
    "bad",
    "missing",
    "repaired",
    "repair_failed",
    "unrepairable",
    "copy_failed",
    "alert",
    "ingest_paused",
    "ingest_resumed",
];

/// Nothing scheduled (no playout channel yet).
pub struct NoSchedule;

impl ScheduleCheck for NoSchedule {
    fn is_scheduled(&self, _: i64, _: i64) -> bool {
        false
    }
}

#[derive(Debug, Default, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditReport {
    pub checked: u64,
    pub ok: u64,
    pub bad: u64,
    pub missing: u64,
    pub read_errors: u64,
    pub repaired: u64,
    pub repair_failed: u64,
    /// Files whose every copy is bad or missing: reported, left untouched.
    pub unrepairable: Vec<i64>,
    pub bytes: u64,
    pub seconds: f64,
}

#[derive(Debug, Default, Clone, Serialize, utoipa::ToSchema)]
pub struct PolicyReport {
    pub copied: u64,
    pub dropped: u64,
    pub bytes: u64,
    /// Copies that could not be made, each with the reason.
    pub failures: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RetentionItem {
    pub asset_id: i64,
    pub house_id: String,
    pub title: String,
    pub bytes: i64,
    pub rule: String,
    /// When the proposal was first made (ms); purge comes at `proposed_ms + grace`.
    pub proposed_ms: i64,
    pub purge_after_ms: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Kept {
    pub asset_id: i64,
    pub rule: String,
    /// `legal_hold`, `rights_window` or `scheduled`.
    pub why: String,
}

#[derive(Debug, Default, Clone, Serialize, utoipa::ToSchema)]
pub struct RetentionReport {
    pub dry_run: bool,
    /// Dry run: what would go; purge: what went.
    pub items: Vec<RetentionItem>,
    pub bytes: i64,
    pub kept: Vec<Kept>,
    /// Purge: proposals still inside their grace period.
    pub waiting: Vec<RetentionItem>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub id: String,
    pub kind: String,
    pub role: String,
    pub writable: bool,
    pub reachable: bool,
    /// Why it is not reachable (never a credential).
    pub error: Option<String>,
    pub copies: i64,
    /// Bytes of the copies it holds.
    pub used_bytes: i64,
    pub capacity_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
    pub used_percent: Option<f64>,
    /// Bytes per day, from the samples since start.
    pub growth_bytes_per_day: Option<f64>,
    pub days_to_full: Option<f64>,
    pub read_errors: u64,
    /// `ok`, `warn` or `full`.
    pub alert: String,
}

/// The storages, the catalog's copy records and the rules over them.
pub struct Storages {
    stores: BTreeMap<String, Store>,
    catalog: Catalog,
    pub cfg: StoragesConfig,
    media_root: PathBuf,
    schedule: Arc<dyn ScheduleCheck>,
    /// Used bytes sampled per storage (ms, bytes), for the growth rate.
    samples: Mutex<HashMap<String, Vec<(i64, u64)>>>,
    alerts: Mutex<HashMap<String, String>>,
    notify: Option<Arc<dyn Notify>>,
    /// Whether ingest is refused now for want of room (events on each change).
    ingest_paused: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Storages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storages")
            .field("stores", &self.stores.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Storages {
    /// `media_root` is `data_dir/media` (the storage `media`, online); the others as declared.
    pub fn new(
        catalog: Catalog,
        cfg: &StoragesConfig,
        media_root: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Storages, StoreError> {
        let mut stores = BTreeMap::new();
        let mut media = Store::local(MEDIA, Role::Online, media_root)?;
        media.audit_mb_s = cfg.media_audit_mb_s;
        stores.insert(MEDIA.to_string(), media);
        for c in &cfg.store {
            stores.insert(c.id.clone(), Store::open(c, env)?);
        }
        Ok(Storages {
            stores,
            catalog,
            cfg: cfg.clone(),
            media_root: media_root.to_path_buf(),
            schedule: Arc::new(NoSchedule),
            samples: Mutex::default(),
            alerts: Mutex::default(),
            notify: None,
            ingest_paused: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Lets the playout side say which assets are scheduled.
    pub fn with_schedule(mut self, s: Arc<dyn ScheduleCheck>) -> Self {
        self.schedule = s;
        self
    }

    /// Lets the service send the events that need someone (to webhooks).
    pub fn with_notify(mut self, n: Arc<dyn Notify>) -> Self {
        self.notify = Some(n);
        self
    }

    pub fn store(&self, id: &str) -> Result<&Store, StorageError> {
        self.stores
            .get(id)
            .ok_or_else(|| StorageError::UnknownStorage(id.into()))
    }

    pub fn stores(&self) -> impl Iterator<Item = &Store> {
        self.stores.values()
    }

    fn now(&self) -> i64 {
        self.catalog.now_ms()
    }

    async fn event(&self, kind: &str, storage: &str, f: Option<&FileRef>, detail: &str) {
        metrics::counter!("antenne_storage_events_total", "kind" => kind.to_string(), "storage" => storage.to_string())
            .increment(1);
        let (fid, aid) = (f.map(|f| f.file_id), f.map(|f| f.asset_id));
        if let Err(e) = self
            .catalog
            .storage_event(kind, storage, fid, aid, detail)
            .await
        {
            tracing::error!(error = %e, kind, storage, "storage: cannot record an event");
        }
        tracing::info!(kind, storage, file_id = ?fid, detail, "storage event");
        if let Some(n) = self.notify.as_ref().filter(|_| NOTIFIED.contains(&kind)) {
            n.notify(serde_json::json!({
                "event": "storage",
                "kind": kind,
                "storage": storage,
                "file_id": fid,
                "asset_id": aid,
                "detail": detail,
                "at_ms": self.now(),
            }));
        }
    }

    /// Refuses an ingest of `need` bytes that would take the online storage past its refuse
    /// threshold, before anything is written; the first refusal pauses ingest (an event), the
    /// first ingest let in again resumes it (another).
    pub async fn room_for_ingest(&self, need: u64) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let Some(media) = self.stores.get(MEDIA) else {
            return Ok(());
        };
        let r = self.check_room(media, need).await;
        let paused = r.is_err();
        if self.ingest_paused.swap(paused, Ordering::SeqCst) != paused {
            let detail = match &r {
                Err(e) => e.to_string(),
                Ok(()) => "room again: ingest goes on".into(),
            };
            let kind = if paused {
                "ingest_paused"
            } else {
                "ingest_resumed"
            };
            self.event(kind, MEDIA, None, &detail).await;
        }
        r
    }

    /// Records the media copy of files that have none yet (files stored before storages, or
    /// just ingested): the ingest hashed them; the audit reads them again first (verified 0).
    pub async fn sync_media_copies(&self) -> Result<u64, StorageError> {
        let mut n = 0;
        let mut last = -1;
        loop {
            let files = self.catalog.files_without_copies(10_000).await?;
            let files: Vec<_> = files.into_iter().filter(|f| f.file_id > last).collect();
            if files.is_empty() {
                return Ok(n);
            }
            for f in &files {
                last = last.max(f.file_id);
                let Ok(rel) = Path::new(&f.path).strip_prefix(&self.media_root) else {
                    continue; // registered in place: its owner's file, not a copy of ours
                };
                let key = rel.to_string_lossy();
                self.catalog
                    .put_copy(f.file_id, MEDIA, &key, f.size, &f.sha256, "ok")
                    .await?;
                n += 1;
            }
            // Copies just recorded are checked first by the next audit.
            let ids: Vec<i64> = files.iter().map(|f| f.file_id).collect();
            self.catalog.mark_unverified(MEDIA, &ids).await?;
        }
    }

    /// Writes `file` onto `to` from a good copy, reads it back, and records it only when size
    /// and SHA-256 equal the catalog's. A copy that does not verify is deleted and not counted.
    pub async fn copy_file(
        &self,
        file: &FileRef,
        to: &str,
        copies: &[CopyRec],
    ) -> Result<Digested, StorageError> {
        let dst = self.store(to)?;
        if !dst.writable {
            return Err(StoreError::ReadOnly(to.into()).into());
        }
        self.check_room(dst, file.size.max(0) as u64).await?;
        let key = copies
            .iter()
            .find(|c| c.state == "ok")
            .map(|c| c.key.clone())
            .ok_or_else(|| StorageError::NoGoodCopy {
                file_id: file.file_id,
                why: "no copy is known good".into(),
            })?;
        // Online first: the fastest to read.
        let mut sources: Vec<&CopyRec> = copies
            .iter()
            .filter(|c| c.state == "ok" && c.storage != to)
            .collect();
        sources.sort_by_key(|c| self.stores.get(&c.storage).map(|s| s.role));
        let mut last_err = None;
        for src in sources {
            let Ok(s) = self.store(&src.storage) else {
                continue;
            };
            match s.copy_to(&src.key, dst, &key).await {
                Ok(sent) if matches(&sent, file) => {
                    let back = dst.digest(&key, None).await?;
                    if !matches(&back, file) {
                        let _ = dst.delete(&key).await;
                        return Err(StorageError::Unverified {
                            file_id: file.file_id,
                            storage: to.into(),
                            size: back.size,
                            sha256: back.sha256,
                        });
                    }
                    self.catalog
                        .put_copy(file.file_id, to, &key, file.size, &file.sha256, "ok")
                        .await?;
                    return Ok(back);
                }
                Ok(sent) => {
                    // The source itself is not what the catalog holds: not a source.
                    let _ = dst.delete(&key).await;
                    last_err = Some(format!(
                        "copy on {} reads back as {} bytes / {}",
                        src.storage, sent.size, sent.sha256
                    ));
                }
                Err(e) => last_err = Some(e.to_string()),
            }
        }
        Err(StorageError::NoGoodCopy {
            file_id: file.file_id,
            why: last_err.unwrap_or_else(|| "no other storage holds a good copy".into()),
        })
    }

    /// Runs every policy once.
    pub async fn run_policies(&self) -> Result<PolicyReport, StorageError> {
        self.sync_media_copies().await?;
        let mut rep = PolicyReport::default();
        let now = self.now();
        for p in &self.cfg.policy {
            for a in self.select(&p.select, now).await? {
                for f in self.catalog.files_of_asset(a).await? {
                    let mut copies = self.catalog.copies_of_file(f.file_id).await?;
                    for to in &p.copy_to {
                        let good = copies.iter().filter(|c| c.state == "ok").count();
                        let on_target = copies.iter().any(|c| &c.storage == to && c.state == "ok");
                        let moving = !p.move_from.is_empty();
                        if on_target || (good >= p.keep && !moving) {
                            continue;
                        }
                        match self.copy_file(&f, to, &copies).await {
                            Ok(d) => {
                                rep.copied += 1;
                                rep.bytes += d.size;
                                self.event("copied", to, Some(&f), &format!("policy {}", p.name))
                                    .await;
                                copies = self.catalog.copies_of_file(f.file_id).await?;
                            }
                            Err(e) => {
                                rep.failures.push(format!("file {}: {e}", f.file_id));
                                self.event("copy_failed", to, Some(&f), &e.to_string())
                                    .await;
                            }
                        }
                    }
                    for from in &p.move_from {
                        let elsewhere = copies
                            .iter()
                            .filter(|c| c.state == "ok" && !p.move_from.contains(&c.storage))
                            .count();
                        let Some(c) = copies.iter().find(|c| &c.storage == from) else {
                            continue;
                        };
                        if elsewhere < p.keep.max(1) {
                            continue;
                        }
                        let s = self.store(from)?;
                        // Uncounted first, then deleted: cut short between the two, the bytes
                        // stay behind uncounted, never a counted copy without its bytes.
                        self.catalog.delete_copy(f.file_id, from).await?;
                        rep.dropped += 1;
                        if let Err(e) = s.delete(&c.key).await {
                            rep.failures.push(format!("file {}: {e}", f.file_id));
                        }
                        self.event("dropped", from, Some(&f), &format!("policy {}", p.name))
                            .await;
                    }
                }
            }
        }
        Ok(rep)
    }

    /// The path of a file on the online storage, brought back there from nearline or archive
    /// (verified) when it is not there: what a transcode, delivery or playout waits for.
    pub async fn ensure_online(&self, file_id: i64) -> Result<PathBuf, StorageError> {
        self.sync_media_copies().await?;
        let f = self
            .catalog
            .file_ref(file_id)
            .await?
            .ok_or(StorageError::NoFile(file_id))?;
        let copies = self.catalog.copies_of_file(file_id).await?;
        if let Some(c) = copies
            .iter()
            .find(|c| c.storage == MEDIA && c.state == "ok")
        {
            let p = self.media_root.join(&c.key);
            if tokio::fs::metadata(&p)
                .await
                .is_ok_and(|m| m.len() as i64 == f.size)
            {
                return Ok(p);
            }
        }
        self.copy_file(&f, MEDIA, &copies).await?;
        self.event("restored", MEDIA, Some(&f), "to online").await;
        let c = self.catalog.copies_of_file(file_id).await?;
        let k = c
            .iter()
            .find(|c| c.storage == MEDIA)
            .map(|c| c.key.clone())
            .unwrap_or_default();
        Ok(self.media_root.join(k))
    }

    /// Re-hashes up to `limit` copies (least recently verified first), each storage no faster
    /// than its cap; then repairs every bad or missing copy from a good one and verifies it.
    /// A file with no good copy is reported and left as it is.
    pub async fn audit(&self, limit: i64) -> Result<AuditReport, StorageError> {
        let t0 = std::time::Instant::now();
        self.sync_media_copies().await?;
        let mut rep = AuditReport::default();
        let mut limits: HashMap<String, Option<RateLimit>> = HashMap::new();
        let mut touched = Vec::new();
        for c in self.catalog.copies_to_audit(limit).await? {
            let Some(store) = self.stores.get(&c.storage) else {
                continue;
            };
            let f = FileRef {
                file_id: c.file_id,
                asset_id: c.asset_id,
                path: String::new(),
                size: c.size,
                sha256: c.sha256.clone(),
            };
            let Some(want) = self.catalog.file_ref(c.file_id).await? else {
                continue;
            };
            rep.checked += 1;
            let lim = limits
                .entry(c.storage.clone())
                .or_insert_with(|| RateLimit::new(store.audit_mb_s));
            let got = store.digest(&c.key, lim.take()).await;
            // The limiter is per storage and per run: keep its count.
            let new_state = match got {
                Ok(d) => {
                    rep.bytes += d.size;
                    if matches(&d, &want) {
                        rep.ok += 1;
                        "ok"
                    } else {
                        rep.bad += 1;
                        metrics::counter!("antenne_storage_fixity_failures_total", "storage" => c.storage.clone(), "kind" => "bad").increment(1);
                        self.event(
                            "bad",
                            &c.storage,
                            Some(&f),
                            &format!(
                                "{}: {} bytes, sha256 {} (catalog: {} bytes, {})",
                                c.key, d.size, d.sha256, want.size, want.sha256
                            ),
                        )
                        .await;
                        "bad"
                    }
                }
                Err(StoreError::Missing { .. }) => {
                    rep.missing += 1;
                    metrics::counter!("antenne_storage_fixity_failures_total", "storage" => c.storage.clone(), "kind" => "missing").increment(1);
                    self.event("missing", &c.storage, Some(&f), &c.key).await;
                    "missing"
                }
                Err(e) => {
                    rep.read_errors += 1;
                    metrics::counter!("antenne_storage_read_errors_total", "storage" => c.storage.clone()).increment(1);
                    self.event("read_error", &c.storage, Some(&f), &e.to_string())
                        .await;
                    continue;
                }
            };
            self.catalog
                .put_copy(
                    c.file_id,
                    &c.storage,
                    &c.key,
                    want.size,
                    &want.sha256,
                    new_state,
                )
                .await?;
            if new_state != "ok" {
                touched.push(c.file_id);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for file_id in touched {
            let Some(f) = self.catalog.file_ref(file_id).await? else {
                continue;
            };
            let copies = self.catalog.copies_of_file(file_id).await?;
            if !copies.iter().any(|c| c.state == "ok") {
                rep.unrepairable.push(file_id);
                self.event(
                    "unrepairable",
                    "",
                    Some(&f),
                    "no good copy: every copy left as it is",
                )
                .await;
                continue;
            }
            for bad in copies.iter().filter(|c| c.state != "ok") {
                // Sources keep their own keys; the target gets the bad copy's key.
                let sources: Vec<CopyRec> =
                    copies.iter().filter(|c| c.state == "ok").cloned().collect();
                match self.repair(&f, bad, &sources).await {
                    Ok(()) => {
                        rep.repaired += 1;
                        metrics::counter!("antenne_storage_repairs_total", "storage" => bad.storage.clone()).increment(1);
                        self.event("repaired", &bad.storage, Some(&f), &bad.key)
                            .await;
                    }
                    Err(e) => {
                        rep.repair_failed += 1;
                        self.event("repair_failed", &bad.storage, Some(&f), &e.to_string())
                            .await;
                    }
                }
            }
        }
        rep.seconds = t0.elapsed().as_secs_f64();
        Ok(rep)
    }

    /// Rewrites `bad` (same storage, same key) from a good copy and verifies it.
    async fn repair(
        &self,
        f: &FileRef,
        bad: &CopyRec,
        sources: &[CopyRec],
    ) -> Result<(), StorageError> {
        let dst = self.store(&bad.storage)?;
        let mut why = String::from("no reachable good copy");
        for src in sources {
            let Ok(s) = self.store(&src.storage) else {
                continue;
            };
            match s.copy_to(&src.key, dst, &bad.key).await {
                Ok(sent) if matches(&sent, f) => {
                    let back = dst.digest(&bad.key, None).await?;
                    if !matches(&back, f) {
                        return Err(StorageError::Unverified {
                            file_id: f.file_id,
                            storage: bad.storage.clone(),
                            size: back.size,
                            sha256: back.sha256,
                        });
                    }
                    self.catalog
                        .put_copy(f.file_id, &bad.storage, &bad.key, f.size, &f.sha256, "ok")
                        .await?;
                    return Ok(());
                }
                Ok(_) => {
                    why = format!("the copy on {} changed since it was audited", src.storage);
                    // Never left worse than found: the write replaced a bad copy only.
                }
                Err(e) => why = e.to_string(),
            }
        }
        Err(StorageError::NoGoodCopy {
            file_id: f.file_id,
            why,
        })
    }

    /// The assets `s` selects (rights conditions included).
    async fn select(&self, s: &Selector, now: i64) -> Result<Vec<i64>, StorageError> {
        let mut out = Vec::new();
        for a in self.catalog.select_assets(s, now).await? {
            if let Some(days) = s.rights_ended_days {
                let spans = self.catalog.rights_spans(a.id).await?;
                let cutoff = now - (days * 86_400_000.0) as i64;
                let ended = !spans.is_empty()
                    && spans
                        .iter()
                        .all(|(_, until)| until.is_some_and(|u| u <= cutoff));
                if !ended {
                    continue;
                }
            }
            out.push(a.id);
        }
        Ok(out)
    }

    /// Why an asset may not be purged now, if it may not.
    async fn protected(
        &self,
        asset_id: i64,
        now: i64,
    ) -> Result<Option<&'static str>, StorageError> {
        if self.catalog.hold(asset_id).await?.is_some() {
            return Ok(Some("legal_hold"));
        }
        let spans = self.catalog.rights_spans(asset_id).await?;
        if spans
            .iter()
            .any(|(from, until)| from.is_none_or(|f| f <= now) && until.is_none_or(|u| u > now))
        {
            return Ok(Some("rights_window"));
        }
        if self.schedule.is_scheduled(asset_id, now) {
            return Ok(Some("scheduled"));
        }
        Ok(None)
    }

    /// The dry run: what each rule would purge and how much it frees; records the proposals
    /// (their grace period starts at the first dry run that proposed them).
    pub async fn retention_dry_run(&self) -> Result<RetentionReport, StorageError> {
        let now = self.now();
        let mut rep = RetentionReport {
            dry_run: true,
            ..Default::default()
        };
        for r in &self.cfg.retention {
            let grace = (r.grace_days * 86_400_000.0) as i64;
            let selected = self.select(&r.select, now).await?;
            for p in self.catalog.proposals(&r.name).await? {
                if !selected.contains(&p.asset_id) {
                    self.catalog.withdraw_proposal(p.asset_id, &r.name).await?;
                }
            }
            for id in selected {
                if let Some(why) = self.protected(id, now).await? {
                    self.catalog.withdraw_proposal(id, &r.name).await?;
                    rep.kept.push(Kept {
                        asset_id: id,
                        rule: r.name.clone(),
                        why: why.into(),
                    });
                    continue;
                }
                let bytes = self.bytes_of(id).await?;
                self.catalog.propose_purge(id, &r.name, bytes).await?;
                let p = self
                    .catalog
                    .proposals(&r.name)
                    .await?
                    .into_iter()
                    .find(|p| p.asset_id == id);
                let proposed = p.map_or(now, |p| p.proposed_ms);
                let a = self
                    .catalog
                    .select_assets(&Selector::default(), now)
                    .await?;
                let a = a.into_iter().find(|a| a.id == id);
                rep.bytes += bytes;
                rep.items.push(RetentionItem {
                    asset_id: id,
                    house_id: a.as_ref().map(|a| a.house_id.clone()).unwrap_or_default(),
                    title: a.map(|a| a.title).unwrap_or_default(),
                    bytes,
                    rule: r.name.clone(),
                    proposed_ms: proposed,
                    purge_after_ms: proposed + grace,
                });
            }
        }
        Ok(rep)
    }

    async fn bytes_of(&self, asset_id: i64) -> Result<i64, StorageError> {
        let mut n = 0;
        for f in self.catalog.files_of_asset(asset_id).await? {
            let copies = self.catalog.copies_of_file(f.file_id).await?;
            n += copies.iter().map(|c| c.size).sum::<i64>().max(f.size);
        }
        Ok(n)
    }

    /// Purges what a dry run proposed at least a grace period ago and that is still selected
    /// and unprotected now: tombstone first, then the records, then every copy's bytes.
    pub async fn retention_purge(&self, who: &str) -> Result<RetentionReport, StorageError> {
        let now = self.now();
        let mut rep = RetentionReport::default();
        for r in &self.cfg.retention {
            let grace = (r.grace_days * 86_400_000.0) as i64;
            let selected = self.select(&r.select, now).await?;
            for p in self.catalog.proposals(&r.name).await? {
                let item = RetentionItem {
                    asset_id: p.asset_id,
                    house_id: String::new(),
                    title: String::new(),
                    bytes: p.bytes,
                    rule: r.name.clone(),
                    proposed_ms: p.proposed_ms,
                    purge_after_ms: p.proposed_ms + grace,
                };
                if !selected.contains(&p.asset_id) {
                    self.catalog.withdraw_proposal(p.asset_id, &r.name).await?;
                    continue;
                }
                if let Some(why) = self.protected(p.asset_id, now).await? {
                    self.catalog.withdraw_proposal(p.asset_id, &r.name).await?;
                    rep.kept.push(Kept {
                        asset_id: p.asset_id,
                        rule: r.name.clone(),
                        why: why.into(),
                    });
                    continue;
                }
                if p.proposed_ms + grace > now {
                    rep.waiting.push(item);
                    continue;
                }
                let bytes = self.purge_asset(p.asset_id, who, &r.name).await?;
                rep.bytes += bytes;
                rep.items.push(RetentionItem { bytes, ..item });
            }
        }
        Ok(rep)
    }

    async fn purge_asset(&self, asset_id: i64, who: &str, rule: &str) -> Result<i64, StorageError> {
        let mut copies = Vec::new();
        for f in self.catalog.files_of_asset(asset_id).await? {
            copies.extend(self.catalog.copies_of_file(f.file_id).await?);
        }
        let why = format!("retention rule {rule}");
        // The tombstone decides the purge; the bytes go before the records, so that a purge cut
        // short is finished by the next run (its proposal and copies still there), never
        // leaving bytes no record knows.
        let bytes = self.catalog.write_tombstone(asset_id, who, &why).await?;
        for c in &copies {
            // A storage no longer declared keeps what it has.
            if let Ok(s) = self.store(&c.storage) {
                s.delete(&c.key).await?;
            }
        }
        let paths = self.catalog.purge_by_workflow(asset_id).await?;
        super::remove_stored(&self.media_root, paths).await;
        self.catalog
            .storage_event(
                "purged",
                "",
                None,
                Some(asset_id),
                &format!("{why}, by {who}"),
            )
            .await?;
        metrics::counter!("antenne_storage_purged_bytes_total").increment(bytes.max(0) as u64);
        Ok(bytes)
    }

    /// Until `stop`: health every minute (samples for growth, alerts), the copy policies and
    /// the audit at their configured intervals.
    pub async fn keep(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let (mut last_policy, mut last_audit) =
            (std::time::Instant::now(), std::time::Instant::now());
        let due = |last: std::time::Instant, every: u64| {
            every > 0 && last.elapsed() >= std::time::Duration::from_secs(every)
        };
        loop {
            if let Err(e) = self.health().await {
                tracing::warn!(error = %e, "storage health");
            }
            if due(last_policy, self.cfg.policy_interval_s) {
                last_policy = std::time::Instant::now();
                match self.run_policies().await {
                    Ok(r) if !r.failures.is_empty() => {
                        tracing::warn!(failures = ?r.failures, "storage policies")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "storage policies"),
                }
            }
            if due(last_audit, self.cfg.audit_interval_s) {
                last_audit = std::time::Instant::now();
                match self.audit(i64::MAX).await {
                    Ok(r) => tracing::info!(
                        checked = r.checked,
                        bad = r.bad,
                        missing = r.missing,
                        repaired = r.repaired,
                        "storage audit"
                    ),
                    Err(e) => tracing::warn!(error = %e, "storage audit"),
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
            }
        }
    }

    /// Refuses a write of `need` bytes that would take `s` past `refuse_percent`.
    pub async fn check_room(&self, s: &Store, need: u64) -> Result<(), StoreError> {
        let used = self.used(&s.id).await;
        let Some((cap, free)) = s.space(used) else {
            return Ok(());
        };
        let limit = self.cfg.refuse_percent;
        let after = cap.saturating_sub(free).saturating_add(need);
        if cap > 0 && (after as f64) * 100.0 / (cap as f64) > limit {
            return Err(StoreError::Full {
                storage: s.id.clone(),
                need,
                free,
                limit_percent: limit,
            });
        }
        Ok(())
    }

    async fn used(&self, id: &str) -> u64 {
        self.catalog
            .bytes_per_storage()
            .await
            .ok()
            .and_then(|v| v.into_iter().find(|(s, _, _)| s == id))
            .map_or(0, |(_, b, _)| b.max(0) as u64)
    }

    /// Space, growth, alerts and read errors of every storage; records metrics and raises an
    /// alert event when a storage crosses a threshold.
    pub async fn health(&self) -> Result<Vec<Health>, StorageError> {
        let per = self.catalog.bytes_per_storage().await?;
        let now = self.now();
        let mut out = Vec::new();
        for s in self.stores.values() {
            let (used, copies) = per
                .iter()
                .find(|(id, _, _)| id == &s.id)
                .map_or((0, 0), |(_, b, n)| (*b, *n));
            let reach = s.reachable().await;
            let space = s.space(used.max(0) as u64);
            let used_fs = space.map(|(c, f)| c.saturating_sub(f));
            let percent = space
                .filter(|(c, _)| *c > 0)
                .map(|(c, f)| (c - f.min(c)) as f64 * 100.0 / c as f64);
            let growth = used_fs.and_then(|u| self.growth(&s.id, now, u));
            let days = match (growth, space) {
                (Some(g), Some((_, free))) if g > 0.0 => Some(free as f64 / g),
                _ => None,
            };
            let alert = match percent {
                Some(p) if p >= self.cfg.refuse_percent => "full",
                Some(p) if p >= self.cfg.warn_percent => "warn",
                _ => "ok",
            };
            let label = s.id.clone();
            metrics::gauge!("antenne_storage_used_bytes", "storage" => label.clone())
                .set(used as f64);
            if let Some((c, f)) = space {
                metrics::gauge!("antenne_storage_capacity_bytes", "storage" => label.clone())
                    .set(c as f64);
                metrics::gauge!("antenne_storage_free_bytes", "storage" => label.clone())
                    .set(f as f64);
            }
            metrics::gauge!("antenne_storage_alert_level", "storage" => label.clone()).set(
                match alert {
                    "full" => 2.0,
                    "warn" => 1.0,
                    _ => 0.0,
                },
            );
            metrics::gauge!("antenne_storage_reachable", "storage" => label.clone())
                .set(if reach.is_ok() { 1.0 } else { 0.0 });
            let previous = self
                .alerts
                .lock()
                .ok()
                .and_then(|mut m| m.insert(s.id.clone(), alert.to_string()));
            if alert != "ok" && previous.as_deref() != Some(alert) {
                self.event(
                    "alert",
                    &s.id,
                    None,
                    &format!("{alert}: {:.1}% used", percent.unwrap_or(0.0)),
                )
                .await;
            }
            out.push(Health {
                id: s.id.clone(),
                kind: match s.kind {
                    StoreKind::Local => "local",
                    StoreKind::S3 => "s3",
                }
                .into(),
                role: s.role.as_str().into(),
                writable: s.writable,
                reachable: reach.is_ok(),
                error: reach.err().map(|e| e.to_string()),
                copies,
                used_bytes: used,
                capacity_bytes: space.map(|(c, _)| c),
                free_bytes: space.map(|(_, f)| f),
                used_percent: percent,
                growth_bytes_per_day: growth,
                days_to_full: days,
                read_errors: s.read_errors(),
                alert: alert.into(),
            });
        }
        Ok(out)
    }

    /// Adds a sample and returns bytes/day over the samples kept (the last 30 days).
    fn growth(&self, id: &str, now: i64, used: u64) -> Option<f64> {
        let mut m = self.samples.lock().ok()?;
        let v = m.entry(id.to_string()).or_default();
        if v.last().is_none_or(|(t, _)| *t < now) {
            v.push((now, used));
        }
        v.retain(|(t, _)| now - t <= 30 * 86_400_000);
        let (t0, u0) = *v.first()?;
        let (t1, u1) = *v.last()?;
        (t1 - t0 >= 60_000).then(|| (u1 as f64 - u0 as f64) / ((t1 - t0) as f64 / 86_400_000.0))
    }
}

fn matches(d: &Digested, f: &FileRef) -> bool {
    d.size as i64 == f.size && d.sha256.eq_ignore_ascii_case(&f.sha256)
}
