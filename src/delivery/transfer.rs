//! One delivery to a declared destination, resumable and idempotent: each file goes to
//! `<name>.part` at the far end (continued from where an interrupted attempt stopped), is
//! checked there (size, and SHA-256 read back unless the destination asks for size only), then
//! renamed to its name. A file already there with the same size (and hash) is not sent again.
//! Media files go first, sidecar manifests last, so that a system watching for the manifest
//! finds the media complete.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::delivery::Destination;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sftp {what}: {source}")]
    Ssh {
        what: String,
        #[source]
        source: ssh2::Error,
    },
    #[error("sftp: the server at {host} shows host key {got}, not the declared {expected}")]
    HostKey {
        host: String,
        expected: String,
        got: String,
    },
    #[error("{name}: {check} at the far end is {got}, expected {expected}")]
    Verify {
        name: String,
        check: &'static str,
        expected: String,
        got: String,
    },
    #[error("{0}")]
    Refused(String),
    /// The far end failed in a way another attempt may mend (an object store that is down).
    #[error("{0}")]
    Unavailable(String),
}

impl TransferError {
    /// Whether another attempt could succeed: a refused login or a wrong host key will not
    /// mend by itself; a dropped connection or a bad copy may.
    pub fn retryable(&self) -> bool {
        !matches!(
            self,
            TransferError::HostKey { .. } | TransferError::Refused(_)
        )
    }
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TransferError {
    let what = what.into();
    move |source| TransferError::Io { what, source }
}

/// The far end, with names relative to the destination's folder.
pub trait Far {
    /// The size of `name`, `None` when absent.
    fn size(&mut self, name: &str) -> Result<Option<u64>, TransferError>;
    /// Writes `src` into `name` from byte `offset` on (created empty when `offset` is 0),
    /// calling `sent` with each chunk's length; the data is on the far end's disk on return.
    fn write_from(
        &mut self,
        name: &str,
        offset: u64,
        src: &mut dyn Read,
        sent: &mut dyn FnMut(u64),
    ) -> Result<(), TransferError>;
    /// The SHA-256 of `name` as read back from the far end.
    fn sha256(&mut self, name: &str) -> Result<String, TransferError>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), TransferError>;
    fn remove(&mut self, name: &str) -> Result<(), TransferError>;
    /// Whether a write appears under its name only once complete (an S3 multipart upload): then
    /// each file is written under its own name, not through a `.part` renamed after, and an
    /// interrupted file starts over (the files already there are not sent again).
    fn atomic_writes(&self) -> bool {
        false
    }
}

/// A file to send: a stored file, or a sidecar's bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    /// Its name at the far end.
    pub name: String,
    /// The stored file; absent for a sidecar.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A sidecar's content.
    #[serde(default)]
    pub content: Option<String>,
    pub size: u64,
    pub sha256: String,
    #[serde(default)]
    pub profile: String,
}

/// What happened to one file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sent {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// Bytes sent by this run (0: it was there already).
    pub sent_bytes: u64,
    /// Where this run started in the file (an earlier attempt's part).
    pub resumed_from: u64,
    /// `sha256` or `size`: how it was checked at the far end.
    pub verified: String,
    pub already_there: bool,
}

/// Test hook (debug builds): `ANTENNE_TEST_FAULT=deliver_mid` ends the process once half of a
/// file started from its beginning is written, after another file was completed in this run.
fn fault_mid(done_here: usize, offset: u64, written: u64, size: u64) {
    if cfg!(debug_assertions)
        && done_here > 0
        && offset == 0
        && written >= size / 2
        && std::env::var("ANTENNE_TEST_FAULT")
            .is_ok_and(|v| v.split(',').any(|p| p == "deliver_mid"))
    {
        eprintln!("antenne: test fault at deliver_mid: the process ends here");
        std::process::exit(137);
    }
}

fn part_name(name: &str) -> String {
    format!("{name}.part")
}

/// Sends `items` through `far` (see the module's description); `log` hears each step.
pub fn deliver(
    far: &mut dyn Far,
    items: &[Item],
    verify_hash: bool,
    log: &mut dyn FnMut(String),
) -> Result<Vec<Sent>, TransferError> {
    let mut out = Vec::new();
    let mut done_here = 0;
    let (media, sidecars): (Vec<&Item>, Vec<&Item>) = items.iter().partition(|i| i.path.is_some());
    for it in media.into_iter().chain(sidecars) {
        let check = if verify_hash { "sha256" } else { "size" };
        if far.size(&it.name)? == Some(it.size)
            && (!verify_hash || far.sha256(&it.name)? == it.sha256)
        {
            log(format!("{}: already there, verified by {check}", it.name));
            out.push(Sent {
                name: it.name.clone(),
                size: it.size,
                sha256: it.sha256.clone(),
                sent_bytes: 0,
                resumed_from: 0,
                verified: check.into(),
                already_there: true,
            });
            continue;
        }
        let atomic = far.atomic_writes();
        let part = if atomic {
            it.name.clone()
        } else {
            part_name(&it.name)
        };
        let mut offset = if atomic {
            0
        } else {
            far.size(&part)?.unwrap_or(0)
        };
        if offset > it.size {
            far.remove(&part)?;
            offset = 0;
        }
        let mut src: Box<dyn Read> = match (&it.path, &it.content) {
            (Some(p), _) => {
                let mut f = std::fs::File::open(p).map_err(io(p.display().to_string()))?;
                f.seek(SeekFrom::Start(offset))
                    .map_err(io(p.display().to_string()))?;
                Box::new(f)
            }
            (None, Some(c)) => Box::new(std::io::Cursor::new(
                c.as_bytes()[(offset as usize).min(c.len())..].to_vec(),
            )),
            (None, None) => {
                return Err(TransferError::Refused(format!(
                    "{}: nothing to send",
                    it.name
                )))
            }
        };
        if offset > 0 {
            log(format!("{}: resuming at byte {offset}", it.name));
        }
        let mut written = offset;
        far.write_from(&part, offset, &mut src, &mut |n| {
            written += n;
            if it.path.is_some() {
                fault_mid(done_here, offset, written, it.size);
            }
        })?;
        let got = far.size(&part)?.unwrap_or(0);
        if got != it.size {
            far.remove(&part)?;
            return Err(TransferError::Verify {
                name: it.name.clone(),
                check: "size",
                expected: it.size.to_string(),
                got: got.to_string(),
            });
        }
        if verify_hash {
            let h = far.sha256(&part)?;
            if h != it.sha256 {
                // A resumed part whose beginning differs: start over on the next attempt.
                far.remove(&part)?;
                return Err(TransferError::Verify {
                    name: it.name.clone(),
                    check: "SHA-256",
                    expected: it.sha256.clone(),
                    got: h,
                });
            }
        }
        if !atomic {
            far.rename(&part, &it.name)?;
        }
        if far.size(&it.name)? != Some(it.size) {
            return Err(TransferError::Verify {
                name: it.name.clone(),
                check: "size after rename",
                expected: it.size.to_string(),
                got: "another".into(),
            });
        }
        log(format!(
            "{}: delivered {} bytes (from byte {offset}), verified by {check}",
            it.name,
            it.size - offset
        ));
        done_here += 1;
        out.push(Sent {
            name: it.name.clone(),
            size: it.size,
            sha256: it.sha256.clone(),
            sent_bytes: it.size - offset,
            resumed_from: offset,
            verified: check.into(),
            already_there: false,
        });
    }
    Ok(out)
}

/// Connects to a destination: a folder, or an SFTP server (an S3 destination goes through a
/// storage, see `jobs`).
pub fn connect(d: &Destination) -> Result<Box<dyn Far>, TransferError> {
    match d.kind.as_str() {
        "folder" => Ok(Box::new(FolderFar::new(Path::new(&d.path))?)),
        "sftp" => Ok(Box::new(super::sftp::SftpFar::connect(d)?)),
        k => Err(TransferError::Refused(format!(
            "destination {:?}: kind {k:?} is not sent to here (folder or sftp)",
            d.name
        ))),
    }
}

/// SHA-256 of a reader, as lower-case hex.
pub fn sha256_of(r: &mut dyn Read) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Copies `src` to `dst` in 1 MiB chunks, reporting each.
pub(crate) fn copy_chunks(
    src: &mut dyn Read,
    dst: &mut dyn Write,
    sent: &mut dyn FnMut(u64),
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        dst.write_all(&buf[..n])?;
        sent(n as u64);
    }
}

/// A local (or mounted) folder.
pub struct FolderFar {
    dir: PathBuf,
}

impl FolderFar {
    pub fn new(dir: &Path) -> Result<FolderFar, TransferError> {
        if !dir.is_absolute() {
            return Err(TransferError::Refused(format!(
                "{}: not an absolute folder",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(io(dir.display().to_string()))?;
        Ok(FolderFar {
            dir: dir.to_path_buf(),
        })
    }
}

impl Far for FolderFar {
    fn size(&mut self, name: &str) -> Result<Option<u64>, TransferError> {
        match std::fs::metadata(self.dir.join(name)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(name)(e)),
        }
    }

    fn write_from(
        &mut self,
        name: &str,
        offset: u64,
        src: &mut dyn Read,
        sent: &mut dyn FnMut(u64),
    ) -> Result<(), TransferError> {
        let p = self.dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(offset == 0)
            .open(&p)
            .map_err(io(name))?;
        f.set_len(offset).map_err(io(name))?;
        f.seek(SeekFrom::Start(offset)).map_err(io(name))?;
        copy_chunks(src, &mut f, sent).map_err(io(name))?;
        f.sync_all().map_err(io(name))
    }

    fn sha256(&mut self, name: &str) -> Result<String, TransferError> {
        let mut f = std::fs::File::open(self.dir.join(name)).map_err(io(name))?;
        sha256_of(&mut f).map_err(io(name))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), TransferError> {
        std::fs::rename(self.dir.join(from), self.dir.join(to)).map_err(io(to))?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<(), TransferError> {
        match std::fs::remove_file(self.dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(name)(e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(dir: &Path, name: &str, bytes: &[u8]) -> Item {
        let p = dir.join(format!("src-{name}"));
        std::fs::write(&p, bytes).unwrap();
        Item {
            name: name.into(),
            path: Some(p.clone()),
            content: None,
            size: bytes.len() as u64,
            sha256: sha256_of(&mut std::fs::File::open(&p).unwrap()).unwrap(),
            profile: "p".into(),
        }
    }

    #[test]
    fn folder_delivery_resumes_verifies_and_never_sends_twice() {
        let d = tempfile::tempdir().unwrap();
        let to = d.path().join("to");
        let a: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let items = vec![
            item(d.path(), "a.bin", &a),
            Item {
                name: "m.json".into(),
                path: None,
                content: Some("{}".into()),
                size: 2,
                sha256: "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a".into(),
                profile: String::new(),
            },
        ];
        // An interrupted attempt left a part with the first megabyte.
        let mut far = FolderFar::new(&to).unwrap();
        std::fs::write(to.join("a.bin.part"), &a[..1 << 20]).unwrap();
        let sent = deliver(&mut far, &items, true, &mut |_| {}).unwrap();
        assert_eq!(sent[0].resumed_from, 1 << 20);
        assert_eq!(sent[0].sent_bytes, a.len() as u64 - (1 << 20));
        assert_eq!(std::fs::read(to.join("a.bin")).unwrap(), a);
        assert!(!to.join("a.bin.part").exists());
        let again = deliver(&mut far, &items, true, &mut |_| {}).unwrap();
        assert!(again.iter().all(|s| s.already_there && s.sent_bytes == 0));
        // A part whose beginning is wrong fails the hash and is dropped, not kept.
        std::fs::remove_file(to.join("a.bin")).unwrap();
        std::fs::write(to.join("a.bin.part"), vec![9u8; 100]).unwrap();
        let e = deliver(&mut far, &items, true, &mut |_| {}).unwrap_err();
        assert!(
            matches!(e, TransferError::Verify { .. }) && e.retryable(),
            "{e}"
        );
        assert!(!to.join("a.bin.part").exists());
        deliver(&mut far, &items, true, &mut |_| {}).unwrap();
        assert_eq!(std::fs::read(to.join("a.bin")).unwrap(), a);
    }
}
