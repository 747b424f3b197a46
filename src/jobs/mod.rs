//! Durable jobs: the queue in the catalog database (states, priority, attempts with backoff,
//! leases, progress, logs), the supervisor that runs media jobs in `antenne worker` child
//! processes, the worker side of that protocol, workflows and their triggers (watch folders
//! through `ingest::watch`, times through [`trigger`]).
//!
//! The worker never touches the database: it gets a job on stdin, prints progress and a result
//! as JSON lines, and the service records the outcome, together with what the job produced, in
//! one transaction, so that a crash anywhere leaves either all of it or none.
//! Imports the domain it runs (catalog, av, ingest, profile, qc, pipeline, delivery, storage,
//! config); never api.

pub mod deliveries;
pub mod devices;
pub mod fault;
pub mod queue;
mod s3_far;
pub mod supervisor;
pub mod trigger;
pub mod worker;
pub mod workflow;

use serde::{Deserialize, Serialize};

pub use fault::{Failure, Fault};
pub use queue::{Job, JobFilter, JobQueue, NewJob};

/// A line a worker prints on stdout.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum WorkerMsg {
    Progress {
        percent: f64,
        fps: f64,
        speed: f64,
        eta_s: f64,
    },
    Log {
        level: String,
        message: String,
    },
    Done {
        result: serde_json::Value,
    },
    Failed {
        error: String,
        /// Whether another attempt could succeed (a missing file will not reappear).
        retry: bool,
        /// Its class: only [`Fault::Device`] counts against the GPU the job was placed on.
        #[serde(default)]
        fault: Fault,
    },
}

/// What a worker is given on stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerJob {
    pub id: i64,
    pub kind: String,
    pub params: serde_json::Value,
    /// Where renditions go (`data_dir/media/renditions`).
    pub media_dir: std::path::PathBuf,
    pub profiles_dir: Option<std::path::PathBuf>,
    /// `auto`, `software`, `nvenc`, …
    pub backend: String,
    /// The scheduler placed it on a GPU of `backend` (`ANTENNE_HW_DEVICE` names which): that
    /// GPU takes what it can encode, the CPU the rest.
    #[serde(default)]
    pub placed_on_gpu: bool,
}
