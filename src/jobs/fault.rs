//! Why a job failed, by class. What a failure counts against (the GPU it ran on, the machine,
//! the material) is read from the type of its cause, never from its text: "No space left on
//! device" is the disk's fault, not the GPU's.
//!
//! Owns [`Fault`] and the worker's [`Failure`]; reads the error types of the engine and of the
//! domains the worker calls into. Imports nothing of `api`.

use std::error::Error;

use serde::{Deserialize, Serialize};

use crate::av::engine::StageError;
use crate::av::{ff, AvError};

/// The class of a job's failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The material: it does not decode, or it is not what the job needs.
    Media,
    /// The GPU the job was placed on: its device did not open, or its filters or encoder
    /// failed. The only class that counts against a GPU.
    Device,
    /// The machine: a full disk, no memory, too many open files, a peer that refused.
    Resource,
    /// The job was cancelled.
    Cancelled,
    /// Something did not answer in time.
    Timeout,
    /// A fault of antenne itself or of its configuration.
    #[default]
    Internal,
}

impl Fault {
    /// Whether a failure of this class counts against the GPU the job ran on.
    pub fn against_gpu(self) -> bool {
        self == Fault::Device
    }
}

type Cause = Box<dyn Error + Send + Sync + 'static>;

/// A job's failure: its class, whether another attempt could succeed, and its cause.
#[derive(Debug, thiserror::Error)]
#[error("{}", message(.context.as_deref(), .source.as_deref()))]
pub struct Failure {
    pub fault: Fault,
    pub retry: bool,
    /// What the job was doing, outermost first ("proxy: verification").
    context: Option<String>,
    #[source]
    source: Option<Cause>,
}

fn message(context: Option<&str>, source: Option<&(dyn Error + Send + Sync + 'static)>) -> String {
    match (context, source) {
        (Some(c), Some(s)) => format!("{c}: {s}"),
        (Some(c), None) => c.to_string(),
        (None, Some(s)) => s.to_string(),
        (None, None) => String::new(),
    }
}

impl Failure {
    /// A failure that has no underlying error: `message` says it all.
    pub fn new(fault: Fault, retry: bool, message: impl Into<String>) -> Failure {
        Failure {
            fault,
            retry,
            context: Some(message.into()),
            source: None,
        }
    }

    /// A failure caused by `source`, of the class given.
    pub fn caused(fault: Fault, retry: bool, source: impl Into<Cause>) -> Failure {
        Failure {
            fault,
            retry,
            context: None,
            source: Some(source.into()),
        }
    }

    /// Names what the job was doing when it failed: `what: <the rest>`.
    pub fn context(mut self, what: impl Into<String>) -> Failure {
        let what = what.into();
        self.context = Some(match self.context.take() {
            Some(inner) => format!("{what}: {inner}"),
            None => what,
        });
        self
    }

    /// Says whether another attempt could succeed.
    pub fn retry(mut self, retry: bool) -> Failure {
        self.retry = retry;
        self
    }

    /// Whether this failure counts against the GPU a job was placed on.
    pub fn against_gpu(&self, placed_on_gpu: bool) -> bool {
        placed_on_gpu && self.fault.against_gpu()
    }
}

/// Errnos that say the machine ran short, not that the material or the device is bad.
fn short_of(errno: i32) -> bool {
    matches!(
        errno,
        libc::ENOSPC | libc::EDQUOT | libc::ENOMEM | libc::EMFILE | libc::ENFILE | libc::EROFS
    )
}

/// An I/O error: the machine's, unless it is a timeout.
pub fn of_io(e: &std::io::Error) -> Fault {
    if e.kind() == std::io::ErrorKind::TimedOut {
        Fault::Timeout
    } else {
        Fault::Resource
    }
}

/// A libav error code: the machine's when it is an errno of shortage, the material's otherwise.
fn of_libav(e: &ff::Error) -> Fault {
    match e {
        ff::Error::Other { errno } if short_of(*errno) => Fault::Resource,
        _ => Fault::Media,
    }
}

/// One stage of an engine run: the GPU's when the filter or encoder on a GPU failed.
pub fn of_stage(e: &StageError) -> Fault {
    if e.gpu().is_some() {
        return Fault::Device;
    }
    match e {
        StageError::Cancelled => Fault::Cancelled,
        StageError::MuxerStopped
        | StageError::NeverFinished
        | StageError::NeverStarted
        | StageError::Media(_) => Fault::Media,
        StageError::Encoder { source, .. }
        | StageError::Libav { source, .. }
        | StageError::Write { source, .. } => of_libav(source),
        StageError::Filter { .. } => Fault::Media,
        StageError::Io { source, .. } => of_io(source),
        StageError::NoEncoder(_)
        | StageError::NoSampleFormat(_)
        | StageError::Missing(_)
        | StageError::Panicked => Fault::Internal,
    }
}

/// An engine error.
pub fn of_av(e: &AvError) -> Fault {
    match e {
        AvError::NotFound { .. }
        | AvError::NotAFile { .. }
        | AvError::Empty { .. }
        | AvError::Refused { .. }
        | AvError::NotMedia { .. }
        | AvError::Invalid { .. } => Fault::Media,
        AvError::Io { source, .. } => of_io(source),
        AvError::Libav { source, .. } => of_libav(source),
        AvError::Device(_) => Fault::Device,
        AvError::Thread(_) => Fault::Resource,
        AvError::Output { source, .. } => of_stage(source),
        AvError::Cancelled => Fault::Cancelled,
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::caused(of_io(&e), true, e)
    }
}

impl From<AvError> for Failure {
    fn from(e: AvError) -> Self {
        Failure::caused(of_av(&e), true, e)
    }
}

impl From<crate::pipeline::PipelineError> for Failure {
    fn from(e: crate::pipeline::PipelineError) -> Self {
        use crate::pipeline::PipelineError as T;
        let fault = match &e {
            T::Av(a) => of_av(a),
            T::Source { .. } => Fault::Media,
            T::OutDir { .. } => Fault::Resource,
            T::Unavailable { .. } => Fault::Device,
            T::Profile(_) | T::Backend { .. } => Fault::Internal,
        };
        Failure::caused(fault, true, e)
    }
}

impl From<crate::ingest::IngestError> for Failure {
    fn from(e: crate::ingest::IngestError) -> Self {
        use crate::ingest::IngestError as I;
        let fault = match &e {
            I::NotMedia { source, .. } => of_av(source),
            I::Io { source, .. } => of_io(source),
            I::Path { .. } | I::TooLarge { .. } => Fault::Media,
            I::Upload(_) => Fault::Internal,
        };
        Failure::caused(fault, true, e)
    }
}

impl From<crate::qc::QcError> for Failure {
    fn from(e: crate::qc::QcError) -> Self {
        let fault = match &e {
            crate::qc::QcError::Av(a) => of_av(a),
        };
        Failure::caused(fault, true, e)
    }
}

impl From<crate::profile::ProfileError> for Failure {
    fn from(e: crate::profile::ProfileError) -> Self {
        Failure::caused(Fault::Internal, true, e)
    }
}

impl From<crate::profile::verify::VerifyError> for Failure {
    fn from(e: crate::profile::verify::VerifyError) -> Self {
        use crate::profile::verify::VerifyError as V;
        let fault = match &e {
            V::Av(a) => of_av(a),
            V::Write { source, .. } => of_io(source),
        };
        Failure::caused(fault, true, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ENOSPC, as the kernel gives it: writing to `/dev/full`.
    fn enospc() -> std::io::Error {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let e = f
            .write_all(&[0u8; 4096])
            .and_then(|_| f.flush())
            .expect_err("/dev/full takes no bytes");
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
        e
    }

    #[test]
    fn a_full_disk_is_the_machines_fault_not_the_gpus() {
        let f = Failure::from(enospc()).context("proxy");
        assert_eq!(f.fault, Fault::Resource);
        assert!(!f.against_gpu(true));
        assert!(f.to_string().contains("No space left on device"), "{f}");
        assert!(f.source().is_some(), "the cause is kept");
        // The same through libav: a muxer's write that ran out of space.
        let e = AvError::Output {
            output: "proxy".into(),
            source: StageError::Write {
                what: "write to",
                path: "/x/proxy.mp4.part".into(),
                source: ff::Error::Other {
                    errno: libc::ENOSPC,
                },
            },
        };
        assert_eq!(of_av(&e), Fault::Resource);
    }

    #[test]
    fn a_gpu_encoder_or_device_that_fails_is_the_gpus_fault() {
        let e = AvError::Output {
            output: "web".into(),
            source: StageError::Encoder {
                what: "encoder h264_nvenc".into(),
                backend: crate::av::hw::Backend::Nvenc,
                source: ff::Error::InvalidData,
            },
        };
        assert_eq!(of_av(&e), Fault::Device);
        let f = Failure::from(e);
        assert!(f.against_gpu(true));
        assert!(!f.against_gpu(false), "only a job placed on a GPU counts");
        // The same encoder error on the CPU is the material's.
        let e = StageError::Encoder {
            what: "encoder libx264".into(),
            backend: crate::av::hw::Backend::Software,
            source: ff::Error::InvalidData,
        };
        assert_eq!(of_stage(&e), Fault::Media);
        assert_eq!(of_stage(&StageError::Cancelled), Fault::Cancelled);
    }

    #[test]
    fn context_reads_outermost_first_and_keeps_the_cause() {
        let f = Failure::from(enospc())
            .context("verification")
            .context("proxy");
        assert!(
            f.to_string()
                .starts_with("proxy: verification: No space left on device"),
            "{f}"
        );
        let f = Failure::new(Fault::Media, false, "a.mxf: no such file");
        assert_eq!(f.to_string(), "a.mxf: no such file");
        assert!(f.source().is_none());
    }
}
