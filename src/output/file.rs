//! The atomic file: an output written under a temporary name (`<name>.part`), synced, and
//! renamed to its final name only once it is whole, so that nothing half written ever stands
//! under a final name. The engine calls it through `av::io::Publish`; a package's texts and its
//! folder use the same steps ([`write_atomic`], [`rename_synced`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::av::io::{FileSink, OutputSink, Publish};

/// Published by rename (see the module's text).
#[derive(Debug, Clone, Copy, Default)]
pub struct Atomic;

/// A file output published atomically.
pub fn atomic(path: impl Into<PathBuf>) -> FileSink {
    FileSink::published(path, Arc::new(Atomic))
}

/// [`atomic`] as a pipeline's output.
pub fn atomic_sink(path: impl Into<PathBuf>) -> OutputSink {
    OutputSink::File(atomic(path))
}

/// A file written in place (inside a folder published or served whole) as a pipeline's output.
pub fn in_place_sink(path: impl Into<PathBuf>) -> OutputSink {
    OutputSink::File(FileSink::in_place(path))
}

/// Where a file published by rename is written until then: `final_path` + `.part`.
pub fn part_path(final_path: &Path) -> PathBuf {
    let mut s = final_path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

impl Publish for Atomic {
    fn writing(&self, path: &Path) -> PathBuf {
        part_path(path)
    }

    fn seal(&self, written: &Path) -> std::io::Result<()> {
        std::fs::File::open(written)?.sync_all()
    }

    fn publish(&self, written: &Path, path: &Path) -> std::io::Result<()> {
        rename_synced(written, path)
    }

    fn discard(&self, written: &Path) {
        let _ = std::fs::remove_file(written);
    }
}

/// Renames a complete, synced file or folder to its final name, and syncs the folder that
/// holds it so that the new name lasts.
pub fn rename_synced(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    if let Some(dir) = to.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Writes `bytes` as `path` through a temporary name beside it, synced, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = part_path(path);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_file_is_written_aside_and_published_by_rename() {
        let d = tempfile::tempdir().unwrap();
        let f = atomic(d.path().join("a.mp4"));
        let p = f.publisher().unwrap();
        let w = f.writing();
        assert_eq!(w, d.path().join("a.mp4.part"));
        std::fs::write(&w, b"x").unwrap();
        p.seal(&w).unwrap();
        assert!(!f.path.exists());
        p.publish(&w, &f.path).unwrap();
        assert!(f.path.exists() && !w.exists());
        std::fs::write(&w, b"y").unwrap();
        p.discard(&w);
        assert!(!w.exists() && f.path.exists());
    }

    #[test]
    fn a_text_written_atomically_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("index.m3u8");
        write_atomic(&p, b"#EXTM3U\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"#EXTM3U\n");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        let missing = d.path().join("no-such-dir").join("x");
        assert!(write_atomic(&missing, b"x").is_err());
    }
}
