//! An S3 delivery destination: the transfer's far end ([`Far`]) over a [`Store`], the same
//! `object_store` client the storages use. Each object is one multipart upload, which exists
//! only once completed: a killed attempt leaves no object, and the next one sends again the
//! files that are not there whole ([`Far::atomic_writes`]). The secret access key is read from
//! its file here, in the worker, and never put in a message.

use std::io::Read;
use std::task::Poll;

use bytes::Bytes;

use crate::config::delivery::Destination;
use crate::config::storage::{Role, StoreConfig, StoreKind};
use crate::delivery::transfer::{Far, TransferError};
use crate::storage::{Store, StoreError};

pub struct S3Far {
    rt: tokio::runtime::Runtime,
    store: Store,
    /// `endpoint/bucket` for messages.
    at: String,
    access_key_id: String,
}

impl S3Far {
    pub fn connect(d: &Destination) -> Result<S3Far, TransferError> {
        let at = format!(
            "s3 {}/{}",
            d.endpoint.as_deref().unwrap_or("aws").trim_end_matches('/'),
            d.bucket
        );
        let secret = match &d.secret_access_key_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| {
                        TransferError::Refused(format!(
                            "{at}: secret access key file {}: {e}",
                            f.display()
                        ))
                    })?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        let c = StoreConfig {
            id: format!("destination {}", d.name),
            kind: StoreKind::S3,
            role: Role::Online,
            writable: true,
            path: None,
            endpoint: d.endpoint.clone(),
            bucket: Some(d.bucket.clone()),
            region: d.region.clone(),
            access_key_id: (!d.access_key_id.is_empty()).then(|| d.access_key_id.clone()),
            secret_access_key: secret,
            secret_access_key_env: None,
            prefix: (!d.path.is_empty()).then(|| d.path.clone()),
            capacity: None,
            audit_mb_s: 0.0,
        };
        let store =
            Store::open(&c, &|_| None).map_err(|e| TransferError::Refused(format!("{at}: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| TransferError::Io {
                what: "s3: runtime".into(),
                source: e,
            })?;
        let far = S3Far {
            rt,
            store,
            at,
            access_key_id: d.access_key_id.clone(),
        };
        // Credentials and bucket are checked before anything is sent.
        let reach = far.rt.block_on(far.store.reachable());
        reach.map_err(|e| far.fail("list the bucket", e))?;
        Ok(far)
    }

    fn fail(&self, what: &str, e: StoreError) -> TransferError {
        use object_store::Error as O;
        let status = |code: &str| e.to_string().contains(&format!("status code: {code}"));
        let refused = matches!(
            &e,
            StoreError::Unavailable {
                source: O::PermissionDenied { .. } | O::Unauthenticated { .. },
                ..
            }
        ) || status("401")
            || status("403");
        if refused {
            return TransferError::Refused(format!(
                "{}: {what}: the store refused the credentials of access key id {:?} (403)",
                self.at, self.access_key_id
            ));
        }
        if e.to_string().contains("NoSuchBucket") {
            return TransferError::Refused(format!("{}: {what}: no such bucket", self.at));
        }
        TransferError::Unavailable(format!("{}: {what}: {e}", self.at))
    }
}

impl Far for S3Far {
    fn size(&mut self, name: &str) -> Result<Option<u64>, TransferError> {
        let r = self.rt.block_on(self.store.head(name));
        r.map_err(|e| self.fail(&format!("head {name}"), e))
    }

    fn write_from(
        &mut self,
        name: &str,
        offset: u64,
        src: &mut dyn Read,
        sent: &mut dyn FnMut(u64),
    ) -> Result<(), TransferError> {
        if offset != 0 {
            return Err(TransferError::Refused(format!(
                "{}: {name}: an object is written whole, not from byte {offset}",
                self.at
            )));
        }
        let mut failed = None;
        let chunks = futures_util::stream::poll_fn(|_| {
            let mut buf = vec![0u8; 4 << 20];
            let mut n = 0;
            while n < buf.len() {
                match src.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failed = Some(e.to_string());
                        return Poll::Ready(Some(Err(StoreError::Invalid {
                            storage: "source".into(),
                            why: e.to_string(),
                        })));
                    }
                }
            }
            if n == 0 {
                return Poll::Ready(None);
            }
            buf.truncate(n);
            sent(n as u64);
            Poll::Ready(Some(Ok(Bytes::from(buf))))
        });
        let r = self.rt.block_on(self.store.put_stream(name, chunks));
        if let Some(e) = failed {
            return Err(TransferError::Io {
                what: format!("read the file sent as {name}"),
                source: std::io::Error::other(e),
            });
        }
        r.map(|_| ())
            .map_err(|e| self.fail(&format!("upload {name}"), e))
    }

    fn sha256(&mut self, name: &str) -> Result<String, TransferError> {
        let r = self.rt.block_on(self.store.digest(name, None));
        r.map(|d| d.sha256)
            .map_err(|e| self.fail(&format!("read back {name}"), e))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), TransferError> {
        Err(TransferError::Refused(format!(
            "{}: objects are not renamed ({from} to {to})",
            self.at
        )))
    }

    fn remove(&mut self, name: &str) -> Result<(), TransferError> {
        let r = self.rt.block_on(self.store.delete(name));
        r.map_err(|e| self.fail(&format!("delete {name}"), e))
    }

    fn atomic_writes(&self) -> bool {
        true
    }
}
