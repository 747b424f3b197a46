//! The bytes of a resumable upload while they arrive: a part file under a temporary name
//! (`media/incoming/.tus-<id>.part`), appended to by successive requests, hashed as it grows.
//! It outlives the process: after a restart the part is cut back to what the catalog recorded
//! as durable and its hash rebuilt from those bytes. At completion it is linked to its final
//! name as a plain upload is. Which upload is whose, and how much is durable, is the catalog's.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{io, place, IngestError, Stored};

const PREFIX: &str = ".tus-";
const SUFFIX: &str = ".part";

/// Where the bytes of upload `id` lie until it completes.
pub fn part_path(media_dir: &Path, id: &str) -> PathBuf {
    media_dir
        .join("incoming")
        .join(format!("{PREFIX}{id}{SUFFIX}"))
}

/// A part file open for appending, with the SHA-256 of its content so far.
pub struct Part {
    path: PathBuf,
    file: tokio::fs::File,
    hash: Sha256,
    size: u64,
}

/// A point to come back to when a request's bytes are refused (see [`Part::rollback`]).
pub struct Mark {
    hash: Sha256,
    size: u64,
}

impl Part {
    /// Creates the empty part file of a new upload.
    pub async fn create(media_dir: &Path, id: &str) -> Result<Part, IngestError> {
        let path = part_path(media_dir, id);
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
        }
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(io(&path))?;
        Ok(Part {
            path,
            file,
            hash: Sha256::new(),
            size: 0,
        })
    }

    /// Opens the part of an upload whose first `durable` bytes were recorded as received: bytes
    /// past them (written but not recorded before a crash) are cut, and the hash is rebuilt by
    /// reading what is kept. A part shorter than `durable` is kept whole: the caller reads the
    /// size back and answers the offset it really has.
    pub async fn resume(media_dir: &Path, id: &str, durable: u64) -> Result<Part, IngestError> {
        let path = part_path(media_dir, id);
        let p = path.clone();
        let (hash, size) = tokio::task::spawn_blocking(move || rehash(&p, durable))
            .await
            .map_err(|_| IngestError::Upload("hashing the received part failed".into()))??;
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await
            .map_err(io(&path))?;
        file.set_len(size).await.map_err(io(&path))?;
        let mut part = Part {
            path,
            file,
            hash,
            size,
        };
        part.seek_end().await?;
        Ok(part)
    }

    async fn seek_end(&mut self) -> Result<(), IngestError> {
        use tokio::io::AsyncSeekExt;
        self.file
            .seek(std::io::SeekFrom::Start(self.size))
            .await
            .map_err(io(&self.path))?;
        Ok(())
    }

    /// Bytes in the part.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), IngestError> {
        self.file.write_all(chunk).await.map_err(io(&self.path))?;
        self.hash.update(chunk);
        self.size += chunk.len() as u64;
        Ok(())
    }

    /// Flushes and fsyncs: what is written so far survives a crash.
    pub async fn sync(&mut self) -> Result<(), IngestError> {
        self.file.flush().await.map_err(io(&self.path))?;
        self.file.sync_data().await.map_err(io(&self.path))
    }

    pub fn mark(&self) -> Mark {
        Mark {
            hash: self.hash.clone(),
            size: self.size,
        }
    }

    /// Drops what was written since `m`.
    pub async fn rollback(&mut self, m: Mark) -> Result<(), IngestError> {
        self.file.flush().await.map_err(io(&self.path))?;
        self.file.set_len(m.size).await.map_err(io(&self.path))?;
        self.hash = m.hash;
        self.size = m.size;
        self.seek_end().await
    }

    /// The SHA-256 of the part so far.
    pub fn hash_so_far(&self) -> String {
        crate::catalog::access::hex(&self.hash.clone().finalize())
    }

    /// Fsyncs and links the complete file to its final name (see [`super::Upload::finish`]).
    pub async fn finish(
        mut self,
        media_dir: &Path,
        name: &str,
        now_ms: i64,
    ) -> Result<Stored, IngestError> {
        self.file.flush().await.map_err(io(&self.path))?;
        self.file.sync_all().await.map_err(io(&self.path))?;
        let hash = crate::catalog::access::hex(&self.hash.finalize());
        place(&self.path, media_dir, name, hash, self.size, now_ms).await
    }
}

/// The SHA-256 and length of the first `limit` bytes of a file (fewer when it is shorter).
fn rehash(path: &Path, limit: u64) -> Result<(Sha256, u64), IngestError> {
    let f = std::fs::File::open(path).map_err(io(path))?;
    let mut f = f.take(limit);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io(path))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((h, n))
}

/// Removes an upload's part file (terminated, expired or refused); none is not an error.
pub async fn remove(media_dir: &Path, id: &str) -> Result<(), IngestError> {
    let p = part_path(media_dir, id);
    match tokio::fs::remove_file(&p).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(&p)(e)),
    }
}

/// Ids of the part files in the media directory.
pub fn part_ids(media_dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(media_dir.join("incoming")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            let id = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
            Some(id.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(b: &[u8]) -> String {
        crate::catalog::access::hex(&Sha256::digest(b))
    }

    #[tokio::test]
    async fn resumes_with_the_right_hash_and_cuts_what_was_not_recorded() {
        let d = tempfile::tempdir().unwrap();
        let mut p = Part::create(d.path(), "abc").await.unwrap();
        p.write(b"hello ").await.unwrap();
        p.sync().await.unwrap();
        p.write(b"lost").await.unwrap();
        p.sync().await.unwrap();
        drop(p);
        assert_eq!(part_ids(d.path()), vec!["abc".to_string()]);
        // Only 6 bytes were recorded as received: the rest goes, the hash is of those 6.
        let mut p = Part::resume(d.path(), "abc", 6).await.unwrap();
        assert_eq!(p.size(), 6);
        assert_eq!(p.hash_so_far(), sha(b"hello "));
        let m = p.mark();
        p.write(b"refused").await.unwrap();
        p.rollback(m).await.unwrap();
        p.write(b"world").await.unwrap();
        assert_eq!(p.hash_so_far(), sha(b"hello world"));
        let stored = p.finish(d.path(), "greeting.txt", 0).await.unwrap();
        assert_eq!(stored.hash, sha(b"hello world"));
        assert_eq!(std::fs::read(&stored.path).unwrap(), b"hello world");
        assert!(!part_path(d.path(), "abc").exists());
        // A part shorter than recorded is kept whole.
        let mut p = Part::create(d.path(), "short").await.unwrap();
        p.write(b"abc").await.unwrap();
        // Dropped unsynced, tokio's file may still be writing on its blocking thread.
        p.sync().await.unwrap();
        drop(p);
        let p = Part::resume(d.path(), "short", 10).await.unwrap();
        assert_eq!((p.size(), p.hash_so_far()), (3, sha(b"abc")));
        remove(d.path(), "short").await.unwrap();
        remove(d.path(), "short").await.unwrap();
        assert!(part_ids(d.path()).is_empty());
    }
}
