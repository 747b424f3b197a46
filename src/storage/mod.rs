//! Storage: the media the appliance keeps on its disks. Today file deletion (purge, retention)
//! done off the async runtime; later tiers (local, S3), copies, fixity and health. The catalog
//! keeps the records, this module the files. Imports nothing of the crate (no catalog, jobs or
//! api; no SQL or libav).

use std::path::{Path, PathBuf};

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
