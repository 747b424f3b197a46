//! Taking files in: a file already on disk (confined to the configured roots) or an HTTP upload
//! (streamed to a temporary name, capped, hashed while it arrives, fsynced and renamed), and watch
//! folders ([`watch`]: which files are complete; jobs queues them). Each
//! becomes a [`NewFile`] with its probe for the catalog. Live sources: [`srt`] (listener and
//! caller, routed by stream ID). Knows nothing of HTTP or SQL.
//! Imports `av` (probe), `catalog` (what a file becomes), `link` and `srt` (live transports);
//! never jobs or api.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::catalog::assets::NewFile;

pub mod hls;
pub mod looped;
pub mod ndi;
pub mod resumable;
pub mod rtmp;
pub mod sidecar;
pub mod srt;
pub mod udp;
pub mod watch;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The path is not acceptable (outside the roots, `..`, NUL, a symlink out, not a file).
    #[error("path {path:?}: {why}")]
    Path { path: String, why: String },
    #[error("upload larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{path}: {}", source.reason())]
    NotMedia {
        path: String,
        #[source]
        source: crate::av::AvError,
    },
    #[error("upload: {0}")]
    Upload(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> IngestError + '_ {
    move |e| IngestError::Io {
        path: path.display().to_string(),
        source: e,
    }
}

/// Resolves a path a client gave to a regular file inside one of `roots`: absolute, no NUL, no
/// `..`, and after resolving symlinks still inside the root it named.
pub fn confine(given: &str, roots: &[PathBuf]) -> Result<PathBuf, IngestError> {
    let bad = |why: &str| IngestError::Path {
        path: given.chars().take(300).collect(),
        why: why.to_string(),
    };
    if given.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    let p = Path::new(given);
    if !p.is_absolute() {
        return Err(bad("must be an absolute path"));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(bad("must not contain .."));
    }
    if roots.is_empty() {
        return Err(bad(
            "no ingest root is configured (ingest.roots): files can only be uploaded",
        ));
    }
    let Some(root) = roots.iter().find(|r| p.starts_with(r)) else {
        return Err(bad("is not under a configured ingest root"));
    };
    let real = p
        .canonicalize()
        .map_err(|e| bad(&format!("cannot be resolved: {e}")))?;
    let real_root = root
        .canonicalize()
        .map_err(|e| bad(&format!("its root cannot be resolved: {e}")))?;
    if !real.starts_with(&real_root) {
        return Err(bad("leads out of its ingest root (a symbolic link)"));
    }
    if !real.metadata().map_err(io(&real))?.is_file() {
        return Err(bad("is not a regular file"));
    }
    Ok(real)
}

/// SHA-256 and size of a file, read in large blocks.
pub fn hash_file(path: &Path) -> Result<(String, u64), IngestError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
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
    Ok((crate::catalog::access::hex(&h.finalize()), n))
}

/// Probes a file and describes it for the catalog (the hash given when already computed).
pub fn describe(
    path: &Path,
    role: &str,
    known: Option<(String, u64)>,
) -> Result<NewFile, IngestError> {
    let report = crate::av::probe::probe(path).map_err(|e| IngestError::NotMedia {
        path: path.display().to_string(),
        source: e,
    })?;
    let (sha256, size) = match known {
        Some(k) => k,
        None => hash_file(path)?,
    };
    let v = report.video.first();
    // A rendition antenne made carries its verification report beside it.
    let verification: Option<serde_json::Value> = std::fs::read(verify_report_of(path))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let profile = verification
        .as_ref()
        .and_then(|v| v["profile"].as_str())
        .unwrap_or_default()
        .to_string();
    Ok(NewFile {
        role: role.to_string(),
        path: path.display().to_string(),
        size: size as i64,
        sha256,
        container: report.container.format.clone(),
        video_codec: v.map(|v| v.codec.clone()).unwrap_or_default(),
        width: v.map_or(0, |v| i64::from(v.width)),
        height: v.map_or(0, |v| i64::from(v.height)),
        duration_s: report.container.duration_s.unwrap_or(0.0),
        technical: serde_json::to_value(&report).unwrap_or_default(),
        profile,
        verification,
    })
}

/// `<file>.verify.json`, where `antenne transcode` and `antenne verify` put their report.
pub fn verify_report_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".verify.json");
    PathBuf::from(s)
}

/// A file name from a client, made safe to store: no directories, no control characters.
pub fn safe_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let s: String = base
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    let s = s.trim_start_matches('.').to_string();
    if s.is_empty() {
        "upload".into()
    } else {
        s
    }
}

/// An upload being written: a temporary name in the media directory, the hash and size so far.
pub struct Upload {
    tmp: PathBuf,
    file: Option<tokio::fs::File>,
    hash: Sha256,
    size: u64,
    limit: u64,
}

impl Upload {
    pub async fn start(media_dir: &Path, limit: u64) -> Result<Upload, IngestError> {
        let dir = media_dir.join("incoming");
        tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
        let tmp = dir.join(format!(
            ".upload-{}.part",
            crate::catalog::access::new_secret("")
                .get(..16)
                .unwrap_or("x")
        ));
        let file = tokio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
        Ok(Upload {
            tmp,
            file: Some(file),
            hash: Sha256::new(),
            size: 0,
            limit,
        })
    }

    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), IngestError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(IngestError::TooLarge { limit: self.limit });
        }
        self.hash.update(chunk);
        match self.file.as_mut() {
            Some(f) => f.write_all(chunk).await.map_err(io(&self.tmp)),
            None => Err(IngestError::Upload("already finished".into())),
        }
    }

    /// The SHA-256 of what was written so far.
    pub fn hash_so_far(&self) -> String {
        crate::catalog::access::hex(&self.hash.clone().finalize())
    }

    /// Flushes and fsyncs, then links the file to `media_dir/YYYY/MM/<hash16>-<name>` (never
    /// over an existing file: another name when taken) and fsyncs the directory. The stored file
    /// is removed again unless [`Stored::keep`] is called once the catalog has recorded it.
    pub async fn finish(
        mut self,
        media_dir: &Path,
        name: &str,
        now_ms: i64,
    ) -> Result<Stored, IngestError> {
        let mut f = self
            .file
            .take()
            .ok_or_else(|| IngestError::Upload("already finished".into()))?;
        f.flush().await.map_err(io(&self.tmp))?;
        f.sync_all().await.map_err(io(&self.tmp))?;
        drop(f);
        let hash = crate::catalog::access::hex(&std::mem::take(&mut self.hash).finalize());
        place(&self.tmp, media_dir, name, hash, self.size, now_ms).await
    }
}

/// Links a complete, fsynced temporary file to `media_dir/YYYY/MM/<hash16>-<name>` (never over
/// an existing file: another name when taken), removes the temporary name and fsyncs the
/// directory.
async fn place(
    tmp: &Path,
    media_dir: &Path,
    name: &str,
    hash: String,
    size: u64,
    now_ms: i64,
) -> Result<Stored, IngestError> {
    let t = time::OffsetDateTime::from_unix_timestamp(now_ms / 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let dir = media_dir
        .join(format!("{:04}", t.year()))
        .join(format!("{:02}", u8::from(t.month())));
    tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
    let mut dest = dir.join(format!("{}-{}", &hash[..16], safe_name(name)));
    let mut tries = 0;
    loop {
        // A hard link fails when the name exists, where a rename would replace it.
        match tokio::fs::hard_link(tmp, &dest).await {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 8 => {
                tries += 1;
                let tag = crate::catalog::access::new_secret("");
                dest = dir.join(format!("{}-{}-{}", &hash[..16], &tag[..8], safe_name(name)));
            }
            Err(e) => return Err(io(&dest)(e)),
        }
    }
    let stored = Stored {
        path: dest,
        hash,
        size,
        keep: false,
    };
    tokio::fs::remove_file(tmp).await.map_err(io(tmp))?;
    if let Ok(d) = tokio::fs::File::open(&dir).await {
        let _ = d.sync_all().await;
    }
    Ok(stored)
}

impl Drop for Upload {
    fn drop(&mut self) {
        // An upload that did not finish leaves nothing behind.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// An upload in its final place, removed when dropped unless kept.
pub struct Stored {
    pub path: PathBuf,
    pub hash: String,
    pub size: u64,
    keep: bool,
}

impl Stored {
    /// The catalog recorded it: it stays.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Stored {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Removes uploads a crash or kill interrupted (`media/incoming/.upload-*.part`).
pub fn sweep_incoming(media_dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(media_dir.join("incoming")) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".upload-")
            && name.ends_with(".part")
            && std::fs::remove_file(e.path()).is_ok()
        {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confinement() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.mxf"), b"x").unwrap();
        std::fs::write(d.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), root.join("link")).unwrap();
        let roots = vec![root.clone()];
        let ok = root.join("sub/a.mxf");
        assert!(confine(ok.to_str().unwrap(), &roots).is_ok());
        for (p, why) in [
            (format!("{}/sub/../sub/a.mxf", root.display()), ".."),
            (format!("{}/link", root.display()), "out of its ingest root"),
            (format!("{}/secret", d.path().display()), "not under"),
            ("sub/a.mxf".to_string(), "absolute"),
            (format!("{}/sub/a\0.mxf", root.display()), "NUL"),
            (format!("{}/sub", root.display()), "not a regular file"),
            (format!("{}/sub/none", root.display()), "cannot be resolved"),
        ] {
            let e = confine(&p, &roots).unwrap_err().to_string();
            assert!(e.contains(why), "{p}: {e}");
        }
        assert!(confine(ok.to_str().unwrap(), &[])
            .unwrap_err()
            .to_string()
            .contains("no ingest root"));
    }

    #[test]
    fn names() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("C:\\x\\news at 10.mxf"), "news_at_10.mxf");
        assert_eq!(safe_name(".hidden"), "hidden");
        assert_eq!(safe_name(""), "upload");
    }
}
