//! Storage: the media the appliance keeps — storages (local folders, S3 stores) and their bytes
//! ([`Store`]), copies kept by policy and verified by reading back, restore to online, the fixity
//! audit with repair, retention with legal holds and tombstones, and storage health. The catalog
//! keeps the records (`catalog::copies`), this module the bytes. Imports `catalog` (records) and
//! `config` (the `[storages]` section) only: never jobs, api or libav, and no SQL of its own.

mod service;
mod store;

use std::path::{Path, PathBuf};

pub use service::{
    AuditReport, Health, Kept, NoSchedule, Notify, PolicyReport, RetentionItem, RetentionReport,
    ScheduleCheck, StorageError, Storages, NOTIFIED,
};
pub use store::{Digested, RateLimit, Store, StoreError};

/// Removes the files among `paths` that the appliance itself stored (those under `media_root`;
/// registered files belong to their owners), on a blocking thread; returns how many went. A file
/// that cannot be removed is logged and skipped.
pub async fn remove_stored(media_root: &Path, paths: Vec<PathBuf>) -> usize {
    let root = media_root.to_path_buf();
    let removing = tokio::task::spawn_blocking(move || {
        let mut removed = 0;
        for p in paths.iter().filter(|p| p.starts_with(&root)) {
            match std::fs::remove_file(p) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "purge: cannot remove a file")
                }
            }
        }
        removed
    });
    match removing.await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "purge: file removal did not finish");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn removes_only_what_is_under_the_media_root() {
        let base = std::env::temp_dir().join(format!("antenne-storage-{}", std::process::id()));
        let (media, other) = (base.join("media"), base.join("elsewhere"));
        std::fs::create_dir_all(&media).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        let (ours, theirs) = (media.join("a.mxf"), other.join("b.mxf"));
        std::fs::write(&ours, b"x").unwrap();
        std::fs::write(&theirs, b"y").unwrap();
        let gone = media.join("missing.mxf");
        let n = remove_stored(&media, vec![ours.clone(), theirs.clone(), gone]).await;
        assert_eq!(n, 1);
        assert!(!ours.exists());
        assert!(theirs.exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
