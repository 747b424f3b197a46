//! An SFTP destination through libssh2 (the `ssh2` crate): the server's host key is checked
//! against the declared fingerprint before anything is sent, the login is by key file or
//! password file. The secret is read here, in the connecting process, and never put in a
//! message: errors name the host, the user and the step, never the key or the password.

use std::io::{Read, Seek, SeekFrom};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;

use super::transfer::{copy_chunks, io, sha256_of, Far, TransferError};
use crate::config::delivery::Destination;

pub struct SftpFar {
    // The session must outlive the SFTP channel built on it.
    sftp: ssh2::Sftp,
    _session: ssh2::Session,
    dir: PathBuf,
}

fn ssh(what: impl Into<String>) -> impl FnOnce(ssh2::Error) -> TransferError {
    let what = what.into();
    move |source| TransferError::Ssh { what, source }
}

impl SftpFar {
    pub fn connect(d: &Destination) -> Result<SftpFar, TransferError> {
        let port = d.port.unwrap_or(22);
        let at = format!("{}@{}:{port}", d.user, d.host);
        let tcp = std::net::ToSocketAddrs::to_socket_addrs(&(d.host.as_str(), port))
            .map_err(io(format!("sftp {at}: resolve")))?
            .next()
            .ok_or_else(|| TransferError::Refused(format!("sftp {at}: no address")))?;
        let tcp = TcpStream::connect_timeout(&tcp, Duration::from_secs(15))
            .map_err(io(format!("sftp {at}: connect")))?;
        let mut s = ssh2::Session::new().map_err(ssh(format!("{at}: session")))?;
        s.set_timeout(60_000);
        s.set_tcp_stream(tcp);
        s.handshake().map_err(ssh(format!("{at}: handshake")))?;
        let got = s
            .host_key_hash(ssh2::HashType::Sha256)
            .map(|h| {
                format!(
                    "SHA256:{}",
                    base64::engine::general_purpose::STANDARD_NO_PAD.encode(h)
                )
            })
            .unwrap_or_default();
        if got != d.host_key_sha256 {
            return Err(TransferError::HostKey {
                host: format!("{}:{port}", d.host),
                expected: d.host_key_sha256.clone(),
                got,
            });
        }
        let refused = |how: &str| {
            TransferError::Refused(format!("sftp {at}: the server refused the login by {how}"))
        };
        if let Some(key) = &d.key_file {
            s.userauth_pubkey_file(&d.user, None, key, None)
                .map_err(|_| refused(&format!("key file {}", key.display())))?;
        } else if let Some(pf) = &d.password_file {
            let pw = std::fs::read_to_string(pf)
                .map_err(io(format!("sftp {at}: password file {}", pf.display())))?;
            s.userauth_password(&d.user, pw.trim_end_matches(['\r', '\n']))
                .map_err(|_| refused(&format!("password file {}", pf.display())))?;
        }
        if !s.authenticated() {
            return Err(refused("the declared credentials"));
        }
        let sftp = s.sftp().map_err(ssh(format!("{at}: sftp subsystem")))?;
        let dir = PathBuf::from(if d.path.is_empty() { "." } else { &d.path });
        let mut far = SftpFar {
            sftp,
            _session: s,
            dir,
        };
        far.make_dirs()?;
        Ok(far)
    }

    fn make_dirs(&mut self) -> Result<(), TransferError> {
        let mut p = PathBuf::new();
        for c in self.dir.components() {
            p.push(c);
            if self.sftp.stat(&p).is_err() {
                self.sftp
                    .mkdir(&p, 0o755)
                    .map_err(ssh(format!("mkdir {}", p.display())))?;
            }
        }
        Ok(())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(Path::new(name))
    }
}

/// libssh2's "no such file" (SSH_FX_NO_SUCH_FILE).
fn absent(e: &ssh2::Error) -> bool {
    matches!(e.code(), ssh2::ErrorCode::SFTP(2))
}

impl Far for SftpFar {
    fn size(&mut self, name: &str) -> Result<Option<u64>, TransferError> {
        match self.sftp.stat(&self.path(name)) {
            Ok(st) => Ok(st.size),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(ssh(format!("stat {name}"))(e)),
        }
    }

    fn write_from(
        &mut self,
        name: &str,
        offset: u64,
        src: &mut dyn Read,
        sent: &mut dyn FnMut(u64),
    ) -> Result<(), TransferError> {
        use ssh2::OpenFlags;
        let flags = if offset == 0 {
            OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE
        } else {
            OpenFlags::WRITE
        };
        let mut f = self
            .sftp
            .open_mode(self.path(name), flags, 0o644, ssh2::OpenType::File)
            .map_err(ssh(format!("open {name}")))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(io(format!("sftp seek {name}")))?;
        copy_chunks(src, &mut f, sent).map_err(io(format!("sftp write {name}")))?;
        // fsync@openssh.com where the server has it; the close below flushes either way.
        let _ = f.fsync();
        drop(f);
        Ok(())
    }

    fn sha256(&mut self, name: &str) -> Result<String, TransferError> {
        let mut f = self
            .sftp
            .open(self.path(name))
            .map_err(ssh(format!("open {name}")))?;
        sha256_of(&mut f).map_err(io(format!("sftp read {name}")))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), TransferError> {
        // SFTP v3 servers refuse to rename over an existing file.
        self.remove(to)?;
        self.sftp
            .rename(&self.path(from), &self.path(to), None)
            .map_err(ssh(format!("rename {from} to {to}")))
    }

    fn remove(&mut self, name: &str) -> Result<(), TransferError> {
        match self.sftp.unlink(&self.path(name)) {
            Err(e) if !absent(&e) => Err(ssh(format!("remove {name}"))(e)),
            _ => Ok(()),
        }
    }
}
