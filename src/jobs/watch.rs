//! Watch folders, by polling (the same on local disks and network shares, where no file events
//! come; nothing to overflow). A file is taken once its size and modification time have held
//! for the workflow's window, and exactly once: its ingest job carries an idempotency key made
//! of the folder, the name, the size and the modification time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::workflow::Workflow;
use super::NewJob;
use crate::catalog::Catalog;

/// Names never taken: hidden and temporary files, sidecars, the done/failed folders.
pub fn ignored(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || name.starts_with('~')
        || [
            ".part",
            ".tmp",
            ".partial",
            ".crdownload",
            ".json",
            ".xml",
            ".verify.json",
        ]
        .iter()
        .any(|e| lower.ends_with(e))
}

/// The identity of one version of a file in a folder.
pub fn version_key(dir: &Path, name: &str, size: u64, mtime: SystemTime) -> String {
    let ns = mtime
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = Sha256::new();
    h.update(dir.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(name.as_bytes());
    h.update([0]);
    h.update(size.to_le_bytes());
    h.update(ns.to_le_bytes());
    format!("watch:{}", crate::catalog::access::hex(&h.finalize()))
}

struct Seen {
    size: u64,
    mtime: SystemTime,
    stable_since: Instant,
    taken: bool,
}

/// One watch folder bound to a workflow.
pub struct Watcher {
    pub dir: PathBuf,
    pub workflow: Arc<Workflow>,
    seen: HashMap<String, Seen>,
}

impl Watcher {
    pub fn new(dir: PathBuf, workflow: Arc<Workflow>) -> Watcher {
        Watcher {
            dir,
            workflow,
            seen: HashMap::new(),
        }
    }

    /// One pass over the folder: files stable for the window are queued (once); returns how
    /// many jobs were queued.
    pub async fn scan(&mut self, catalog: &Catalog) -> usize {
        let stable = Duration::from_secs_f64(self.workflow.trigger.stable_s);
        let mut present = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut queued = 0;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if ignored(&name) {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let (size, mtime) = (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            present.push(name.clone());
            let s = self.seen.entry(name.clone()).or_insert(Seen {
                size,
                mtime,
                stable_since: Instant::now(),
                taken: false,
            });
            if s.size != size || s.mtime != mtime {
                *s = Seen {
                    size,
                    mtime,
                    stable_since: Instant::now(),
                    taken: false,
                };
                continue;
            }
            if s.taken || s.stable_since.elapsed() < stable {
                continue;
            }
            let path = self.dir.join(&name);
            let job = NewJob {
                kind: "ingest".into(),
                priority: 0,
                max_attempts: 3,
                asset_id: None,
                workflow: self.workflow.name.clone(),
                idempotency_key: Some(version_key(&self.dir, &name, size, mtime)),
                params: serde_json::json!({
                    "path": path,
                    "moved_to": self.dir.join("done").join(&name),
                    "size": size,
                }),
                gpu_only: false,
            };
            match catalog.enqueue(&job).await {
                Ok(Some(_)) => {
                    queued += 1;
                    s.taken = true;
                }
                Ok(None) => s.taken = true,
                Err(e) => tracing::warn!(error = %e, file = %path.display(), "watch: cannot queue"),
            }
        }
        self.seen.retain(|k, _| present.contains(k));
        queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        for n in [
            ".hidden.mxf",
            "clip.mxf.part",
            "clip.json",
            "CLIP.XML",
            "~lock",
            "x.crdownload",
        ] {
            assert!(ignored(n), "{n}");
        }
        assert!(!ignored("News at 10.mxf"));
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let k = version_key(Path::new("/w"), "a.mxf", 10, t);
        assert_ne!(k, version_key(Path::new("/w"), "a.mxf", 11, t));
        assert_ne!(
            k,
            version_key(Path::new("/w"), "a.mxf", 10, t + Duration::from_nanos(1))
        );
        assert_ne!(k, version_key(Path::new("/v"), "a.mxf", 10, t));
        assert_eq!(k, version_key(Path::new("/w"), "a.mxf", 10, t));
    }
}
