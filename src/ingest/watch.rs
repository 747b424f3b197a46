//! Watch folders. A file is taken once it is complete: closed after writing or renamed into the
//! folder (inotify, on local disks), or its size and modification time held for the workflow's
//! window (polling, which also covers network shares where no events come, and event queue
//! overflows). It is taken exactly once: its ingest job carries an idempotency key made of the
//! folder, the name, the size and the modification time.
//!
//! Owns the folder side only: which files are complete. It hands them back as [`Arrival`]s and
//! `jobs` queues them, so it imports `catalog` (hex) and nothing of jobs, api or SQL.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

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

/// A file closed after writing (or renamed in), as it was then.
struct Closed {
    size: u64,
    mtime: SystemTime,
    at: Instant,
}

/// After a close, how long the file must stay as it was (some writers close and reopen).
pub const CLOSED_GRACE: Duration = Duration::from_millis(300);

/// A complete file, not yet taken: it is taken once [`Watcher::taken`] says so.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    /// Its [`version_key`].
    pub key: String,
}

/// One watch folder, with the window a file must stay unchanged to count as complete.
pub struct Watcher {
    pub dir: PathBuf,
    stable: Duration,
    seen: HashMap<String, Seen>,
    closed: HashMap<String, Closed>,
}

impl Watcher {
    pub fn new(dir: PathBuf, stable: Duration) -> Watcher {
        Watcher {
            dir,
            stable,
            seen: HashMap::new(),
            closed: HashMap::new(),
        }
    }

    /// `name` (an [`Arrival`] of the last scan) was queued or was already known: it is not
    /// handed back again while it stays as it is.
    pub fn taken(&mut self, name: &str) {
        if let Some(s) = self.seen.get_mut(name) {
            s.taken = true;
        }
    }

    /// A file event: `name` was closed after writing or renamed into the folder.
    pub fn closed(&mut self, name: &str) {
        if ignored(name) {
            return;
        }
        if let Ok(m) = std::fs::metadata(self.dir.join(name)) {
            if m.is_file() {
                self.closed.insert(
                    name.to_string(),
                    Closed {
                        size: m.len(),
                        mtime: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                        at: Instant::now(),
                    },
                );
            }
        }
    }

    /// Events were lost (the kernel queue overflowed): what was known of closes is dropped,
    /// and files go by the stability window.
    pub fn overflowed(&mut self) {
        self.closed.clear();
    }

    /// One pass over the folder: the files complete (closed and unchanged since, or stable for
    /// the window) and not yet [`taken`](Watcher::taken).
    pub fn scan(&mut self) -> Vec<Arrival> {
        let stable = self.stable;
        let mut present = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut arrivals = Vec::new();
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
            // Closed after writing and unchanged since: complete without the window.
            let closed = self.closed.get(&name).is_some_and(|c| {
                c.size == size && c.mtime == mtime && c.at.elapsed() >= CLOSED_GRACE
            });
            if s.taken || (!closed && s.stable_since.elapsed() < stable) {
                continue;
            }
            arrivals.push(Arrival {
                path: self.dir.join(&name),
                key: version_key(&self.dir, &name, size, mtime),
                name,
                size,
            });
        }
        self.seen.retain(|k, _| present.contains(k));
        self.closed.retain(|k, _| present.contains(k));
        arrivals
    }
}

/// Close and rename events of a folder, where the kernel gives them (not on network shares).
pub struct Events {
    stream: inotify::EventStream<Vec<u8>>,
}

/// What a folder's events said.
pub enum Event {
    Closed(String),
    Overflow,
}

impl Events {
    pub fn open(dir: &Path) -> std::io::Result<Events> {
        use inotify::{Inotify, WatchMask};
        let ino = Inotify::init()?;
        ino.watches()
            .add(dir, WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO)?;
        Ok(Events {
            stream: ino.into_event_stream(vec![0u8; 64 * 1024])?,
        })
    }

    /// The next event; `None` when the stream ended (the folder went away).
    pub async fn next(&mut self) -> Option<Event> {
        use futures_util::StreamExt;
        loop {
            let e = match self.stream.next().await? {
                Ok(e) => e,
                Err(_) => return Some(Event::Overflow),
            };
            if e.mask.contains(inotify::EventMask::Q_OVERFLOW) {
                return Some(Event::Overflow);
            }
            if e.mask.contains(inotify::EventMask::IGNORED) {
                return None;
            }
            if let Some(n) = e.name {
                return Some(Event::Closed(n.to_string_lossy().into_owned()));
            }
        }
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
