//! One storage's bytes: a local folder or an S3 bucket behind `object_store`, with streaming
//! writes and reads that hash (SHA-256) on the way. Writes are atomic: a local write goes to a
//! staging name renamed when complete, an S3 write is a multipart upload that only becomes an
//! object when completed — a write cut short (kill -9) leaves no object under the key.
//! Credentials stay inside: `Debug`, `Display` and every error name the storage, never a secret.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::config::storage::{Role, StoreConfig, StoreKind};

/// What went wrong with a storage; never carries a credential.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage {storage}: {key} is missing")]
    Missing { storage: String, key: String },
    #[error("storage {storage} is unavailable: {source}")]
    Unavailable {
        storage: String,
        #[source]
        source: object_store::Error,
    },
    #[error("storage {storage}: {path}: {source}")]
    Io {
        storage: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("storage {storage}: {why}")]
    Invalid { storage: String, why: String },
    #[error("storage {0} is not writable")]
    ReadOnly(String),
    #[error("storage {storage} is too full: writing {need} bytes would pass {limit_percent}% of its capacity ({free} bytes free)")]
    Full {
        storage: String,
        need: u64,
        free: u64,
        limit_percent: f64,
    },
}

/// Bytes and SHA-256 (hex) of what was read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digested {
    pub size: u64,
    pub sha256: String,
}

/// Keeps a reader under a byte rate (bytes per second) by pausing between chunks.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_s: f64,
    start: Instant,
    done: u64,
}

impl RateLimit {
    pub fn new(mb_per_s: f64) -> Option<RateLimit> {
        (mb_per_s > 0.0).then(|| RateLimit {
            bytes_per_s: mb_per_s * 1_000_000.0,
            start: Instant::now(),
            done: 0,
        })
    }

    async fn take(&mut self, n: usize) {
        self.done += n as u64;
        let due = Duration::from_secs_f64(self.done as f64 / self.bytes_per_s);
        let spent = self.start.elapsed();
        if due > spent {
            tokio::time::sleep(due - spent).await;
        }
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const CHUNK: usize = 1 << 20;
/// Multipart part size for S3 writes (S3's minimum is 5 MiB).
const PART: usize = 8 << 20;

/// One storage. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub id: String,
    pub role: Role,
    pub writable: bool,
    pub kind: StoreKind,
    inner: Arc<dyn ObjectStore>,
    /// Local folders: read directly (large buffers) for hashing.
    root: Option<PathBuf>,
    /// S3: keys start with this.
    prefix: String,
    pub capacity: Option<u64>,
    pub audit_mb_s: f64,
    read_errors: Arc<AtomicU64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A local folder (created when missing).
    pub fn local(id: &str, role: Role, root: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(root).map_err(|e| StoreError::Io {
            storage: id.into(),
            path: root.display().to_string(),
            source: e,
        })?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(root)
            .map_err(|e| unavailable(id, e))?
            .with_automatic_cleanup(true);
        Ok(Store {
            id: id.into(),
            role,
            writable: true,
            kind: StoreKind::Local,
            inner: Arc::new(fs),
            root: Some(root.to_path_buf()),
            prefix: String::new(),
            capacity: None,
            audit_mb_s: 0.0,
            read_errors: Arc::default(),
        })
    }

    /// A storage as configured; `env` answers `secret_access_key_env`.
    pub fn open(
        c: &StoreConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Store, StoreError> {
        let mut s = match c.kind {
            StoreKind::Local => {
                let root = c.path.clone().ok_or_else(|| StoreError::Invalid {
                    storage: c.id.clone(),
                    why: "a local storage needs a path".into(),
                })?;
                Store::local(&c.id, c.role, &root)?
            }
            StoreKind::S3 => {
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(c.bucket.clone().unwrap_or_default())
                    .with_region(c.region.clone().unwrap_or_else(|| "us-east-1".into()))
                    .with_retry(object_store::RetryConfig {
                        max_retries: 2,
                        retry_timeout: Duration::from_secs(10),
                        backoff: object_store::BackoffConfig::default(),
                    })
                    .with_client_options(
                        object_store::ClientOptions::new()
                            .with_connect_timeout(Duration::from_secs(3))
                            .with_timeout(Duration::from_secs(120))
                            .with_allow_http(true),
                    );
                if let Some(e) = &c.endpoint {
                    b = b.with_endpoint(e.clone()).with_allow_http(true);
                }
                if let Some(k) = &c.access_key_id {
                    let secret = c
                        .secret_access_key
                        .clone()
                        .or_else(|| c.secret_access_key_env.as_deref().and_then(env))
                        .ok_or_else(|| StoreError::Invalid {
                            storage: c.id.clone(),
                            why: "no secret access key (secret_access_key_env unset?)".into(),
                        })?;
                    b = b
                        .with_access_key_id(k.clone())
                        .with_secret_access_key(secret);
                }
                let s3 = b.build().map_err(|e| StoreError::Invalid {
                    storage: c.id.clone(),
                    why: format!("S3 settings: {}", redact(&e.to_string())),
                })?;
                Store {
                    id: c.id.clone(),
                    role: c.role,
                    writable: true,
                    kind: StoreKind::S3,
                    inner: Arc::new(s3),
                    root: None,
                    prefix: c
                        .prefix
                        .clone()
                        .unwrap_or_default()
                        .trim_matches('/')
                        .to_string(),
                    capacity: None,
                    audit_mb_s: 0.0,
                    read_errors: Arc::default(),
                }
            }
        };
        s.writable = c.writable;
        s.capacity = c.capacity.map(|b| b.0);
        s.audit_mb_s = c.audit_mb_s;
        Ok(s)
    }

    /// The local folder, for local storages.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Read errors seen on this storage since start.
    pub fn read_errors(&self) -> u64 {
        self.read_errors.load(Ordering::Relaxed)
    }

    fn key(&self, key: &str) -> Result<Key, StoreError> {
        let full = if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        };
        Key::parse(&full).map_err(|e| StoreError::Invalid {
            storage: self.id.clone(),
            why: format!("key {key:?}: {e}"),
        })
    }

    fn err(&self, key: &str, e: object_store::Error) -> StoreError {
        match e {
            object_store::Error::NotFound { .. } => StoreError::Missing {
                storage: self.id.clone(),
                key: key.into(),
            },
            e => {
                self.read_errors.fetch_add(1, Ordering::Relaxed);
                unavailable(&self.id, e)
            }
        }
    }

    /// Whether the storage answers: a local folder exists, an S3 bucket can be listed.
    pub async fn reachable(&self) -> Result<(), StoreError> {
        if let Some(r) = &self.root {
            return if r.is_dir() {
                Ok(())
            } else {
                Err(StoreError::Io {
                    storage: self.id.clone(),
                    path: r.display().to_string(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "folder is gone"),
                })
            };
        }
        let p = (!self.prefix.is_empty()).then(|| Key::from(self.prefix.as_str()));
        let mut l = self.inner.list(p.as_ref());
        match l.next().await {
            Some(Err(e)) => Err(self.err("", e)),
            _ => Ok(()),
        }
    }

    /// Writes the stream under `key` (atomic), returning its size and SHA-256.
    pub async fn put_stream<S>(&self, key: &str, mut data: S) -> Result<Digested, StoreError>
    where
        S: Stream<Item = Result<Bytes, StoreError>> + Unpin,
    {
        if !self.writable {
            return Err(StoreError::ReadOnly(self.id.clone()));
        }
        if self.root.as_ref().is_some_and(|r| !r.is_dir()) {
            self.reachable().await?;
        }
        let k = self.key(key)?;
        let upload = self
            .inner
            .put_multipart(&k)
            .await
            .map_err(|e| self.err(key, e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut h = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = data.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(e);
                }
            };
            h.update(&chunk);
            size += chunk.len() as u64;
            if let Err(e) = w.wait_for_capacity(4).await {
                return Err(self.err(key, e));
            }
            w.put(chunk);
        }
        w.finish().await.map_err(|e| self.err(key, e))?;
        Ok(Digested {
            size,
            sha256: hex(&h.finalize()),
        })
    }

    /// Writes a local file under `key`.
    pub async fn put_file(&self, src: &Path, key: &str) -> Result<Digested, StoreError> {
        let f = tokio::fs::File::open(src)
            .await
            .map_err(|e| StoreError::Io {
                storage: self.id.clone(),
                path: src.display().to_string(),
                source: e,
            })?;
        self.put_stream(
            key,
            file_stream(self.id.clone(), src.to_path_buf(), f).boxed(),
        )
        .await
    }

    /// Reads `key` as a stream of chunks.
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<futures_util::stream::BoxStream<'static, Result<Bytes, StoreError>>, StoreError>
    {
        if let Some(root) = &self.root {
            let p = root.join(key);
            let f = tokio::fs::File::open(&p).await.map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    StoreError::Missing {
                        storage: self.id.clone(),
                        key: key.into(),
                    }
                } else {
                    self.read_errors.fetch_add(1, Ordering::Relaxed);
                    StoreError::Io {
                        storage: self.id.clone(),
                        path: p.display().to_string(),
                        source: e,
                    }
                }
            })?;
            return Ok(file_stream(self.id.clone(), p, f).boxed());
        }
        let k = self.key(key)?;
        let r = self.inner.get(&k).await.map_err(|e| self.err(key, e))?;
        let (id, key, errs) = (self.id.clone(), key.to_string(), self.read_errors.clone());
        Ok(r.into_stream()
            .map(move |c| {
                c.map_err(|e| {
                    errs.fetch_add(1, Ordering::Relaxed);
                    match e {
                        object_store::Error::NotFound { .. } => StoreError::Missing {
                            storage: id.clone(),
                            key: key.clone(),
                        },
                        e => unavailable(&id, e),
                    }
                })
            })
            .boxed())
    }

    /// Reads `key` whole and hashes it, no faster than `limit`.
    pub async fn digest(
        &self,
        key: &str,
        mut limit: Option<RateLimit>,
    ) -> Result<Digested, StoreError> {
        let mut s = self.get_stream(key).await?;
        let mut h = Sha256::new();
        let mut size = 0u64;
        while let Some(c) = s.next().await {
            let c = c?;
            if let Some(l) = limit.as_mut() {
                l.take(c.len()).await;
            }
            size += c.len() as u64;
            h.update(&c);
        }
        Ok(Digested {
            size,
            sha256: hex(&h.finalize()),
        })
    }

    /// Copies `key` to `dst` under `dst_key`, hashing on the way (what was sent).
    pub async fn copy_to(
        &self,
        key: &str,
        dst: &Store,
        dst_key: &str,
    ) -> Result<Digested, StoreError> {
        let s = self.get_stream(key).await?;
        dst.put_stream(dst_key, s).await
    }

    /// Size of `key`, `None` when absent.
    pub async fn head(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let k = self.key(key)?;
        match self.inner.head(&k).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(key, e)),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        if !self.writable {
            return Err(StoreError::ReadOnly(self.id.clone()));
        }
        let k = self.key(key)?;
        match self.inner.delete(&k).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(key, e)),
        }
    }

    /// Keys (relative to the storage) and sizes under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let p = if prefix.is_empty() && self.prefix.is_empty() {
            None
        } else if prefix.is_empty() {
            Some(Key::from(self.prefix.as_str()))
        } else {
            Some(self.key(prefix)?)
        };
        let mut l = self.inner.list(p.as_ref());
        let mut out = Vec::new();
        while let Some(m) = l.next().await {
            let m = m.map_err(|e| self.err(prefix, e))?;
            let full = m.location.to_string();
            let rel = if self.prefix.is_empty() {
                full
            } else {
                full.strip_prefix(&format!("{}/", self.prefix))
                    .unwrap_or(&full)
                    .to_string()
            };
            out.push((rel, m.size));
        }
        Ok(out)
    }

    /// (capacity, free) in bytes: the file system's for a local folder (or the configured
    /// capacity), the configured capacity for S3 (free = capacity - `used`).
    pub fn space(&self, used: u64) -> Option<(u64, u64)> {
        if let Some(root) = &self.root {
            if let Ok(st) = rustix::fs::statvfs(root) {
                // As `df` counts: the blocks reserved for root are neither ours nor free.
                let total = st
                    .f_blocks
                    .saturating_sub(st.f_bfree)
                    .saturating_add(st.f_bavail)
                    .saturating_mul(st.f_frsize);
                let free = st.f_bavail.saturating_mul(st.f_frsize);
                return Some(match self.capacity {
                    Some(c) => (c, c.saturating_sub(used).min(free)),
                    None => (total, free),
                });
            }
            return None;
        }
        self.capacity.map(|c| (c, c.saturating_sub(used)))
    }
}

fn unavailable(id: &str, e: object_store::Error) -> StoreError {
    StoreError::Unavailable {
        storage: id.to_string(),
        source: e,
    }
}

/// Takes out anything that looks like a credential from a message.
fn redact(s: &str) -> String {
    s.split_whitespace()
        .map(|w| {
            if w.len() >= 16
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/+=".contains(c))
            {
                "[redacted]"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn file_stream(
    storage: String,
    path: PathBuf,
    f: tokio::fs::File,
) -> impl Stream<Item = Result<Bytes, StoreError>> + Send + 'static {
    futures_util::stream::unfold(Some(f), move |f| {
        let (storage, path) = (storage.clone(), path.clone());
        async move {
            let mut f = f?;
            let mut buf = vec![0u8; CHUNK];
            let mut n = 0;
            while n < CHUNK {
                match f.read(&mut buf[n..]).await {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) => {
                        return Some((
                            Err(StoreError::Io {
                                storage,
                                path: path.display().to_string(),
                                source: e,
                            }),
                            None,
                        ))
                    }
                }
            }
            if n == 0 {
                return None;
            }
            buf.truncate(n);
            Some((Ok(Bytes::from(buf)), Some(f)))
        }
    })
}
