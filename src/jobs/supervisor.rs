//! The service side of jobs: claims jobs up to the machine's slots, runs each media job in an
//! `antenne worker` child process, watches it (progress, hang, memory, crash, cancellation),
//! records the outcome with what the job made in one transaction, and moves workflows on.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::devices::{Claimable, Encode, GpuSpec, Needs, Placement, Pool, SlotsView};
use super::fault::Fault;
use super::queue::{Failing, JobQueue, Lane, Then};
use super::workflow::{After, Workflow};
use super::{Job, NewJob, WorkerJob, WorkerMsg};
use crate::catalog::assets::{AssetInput, FileRec, NewFile};
use crate::catalog::{Catalog, CatalogError, Principal};
use crate::ingest::watch::{self, Watcher};

/// How the supervisor runs jobs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This appliance's name: worker names are `<appliance>/w<n>`.
    pub appliance: String,
    /// Jobs running at once (CPU encode slots).
    pub slots: usize,
    /// Light jobs (ingest, fixity, delivery, webhooks, purge) running at once in their own
    /// lane, beside the encode slots; 0: they share the encode slots.
    pub light_slots: usize,
    /// A worker silent for this long is killed (a hang).
    pub hang: Duration,
    /// A worker whose resident memory passes this is killed.
    pub memory_limit: u64,
    pub lease_ms: i64,
    pub data_dir: PathBuf,
    pub media_dir: PathBuf,
    pub profiles_dir: Option<PathBuf>,
    pub backend: String,
    /// The program run as `<exe> worker`.
    pub worker_exe: PathBuf,
    /// The GPUs jobs may be placed on.
    pub gpus: Vec<GpuSpec>,
    /// Device failures in a row that take a GPU out of rotation.
    pub gpu_max_failures: u32,
    /// A job running longer than this is stopped and fails (`None`: no limit; a workflow step
    /// may set its own).
    pub job_timeout: Option<Duration>,
}

pub struct Supervisor {
    pub catalog: Catalog,
    /// The job queue, in the catalog's database.
    pub queue: JobQueue,
    pub workflows: Vec<Arc<Workflow>>,
    pub settings: Settings,
    /// The principal workflows act as (a `service` user that cannot log in).
    pub system: Principal,
    pub wake: Notify,
    pool: std::sync::Mutex<Pool>,
    serial: AtomicU64,
    storages: std::sync::OnceLock<Arc<crate::storage::Storages>>,
    destinations: std::sync::OnceLock<Vec<crate::config::delivery::Destination>>,
}

enum Outcome {
    Done(Value),
    /// The error, whether another attempt could succeed, and its class.
    Failed(String, bool, Fault),
    /// The worker crashed, hung or could not start.
    Lost(String),
    Cancelled,
}

/// How long a job waits for a storage that does not answer before its attempt fails (it is
/// retried with backoff).
const RESTORE_WAIT: Duration = Duration::from_secs(90);

/// The last lines a worker wrote to its stderr.
type StderrTail = Arc<std::sync::Mutex<Vec<String>>>;

/// What the supervisor keeps while it watches a worker.
struct Watching {
    started: Instant,
    timeout: Option<Duration>,
    pid: u32,
    /// When the queue was last told of progress (or asked whether the job was cancelled).
    last_db: Instant,
    last_line: Instant,
    logs: usize,
}

/// What a worker's message or a tick of the watch means for it.
enum Step {
    Go,
    /// The outcome, once the worker has ended by itself.
    Set(Outcome),
    /// The outcome now: the worker is stopped.
    Stop(Outcome),
}

/// A worker that ended without a result: how it ended, and what it last wrote.
fn lost(status: std::io::Result<std::process::ExitStatus>, tail: &StderrTail) -> Outcome {
    let tail = tail.lock().map(|t| t.join(" | ")).unwrap_or_default();
    let how = match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            match s.signal() {
                Some(sig) => format!("killed by signal {sig}"),
                None => format!("exited with {}", s.code().unwrap_or(-1)),
            }
        }
        Err(e) => e.to_string(),
    };
    Outcome::Lost(format!(
        "the worker crashed ({how}) without a result; {tail}"
    ))
}

/// Whether an outcome counts against the GPU the job was placed on: a device fault, or a
/// worker lost on it (a driver that crashes or hangs the process).
fn against_gpu(outcome: &Outcome, placed: &Placement) -> bool {
    let on_gpu = matches!(placed, Placement::Gpu { .. });
    match outcome {
        Outcome::Failed(_, _, fault) => on_gpu && fault.against_gpu(),
        Outcome::Lost(_) => on_gpu,
        _ => false,
    }
}

/// Resident memory of a process, from `/proc/<pid>/status`.
fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A free name for `name` in `dir` (`name`, then `name (2)` …).
fn free_name(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    if !p.exists() {
        return p;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) => (s.to_string(), format!(".{e}")),
        None => (name.to_string(), String::new()),
    };
    (2..10_000)
        .map(|i| dir.join(format!("{stem} ({i}){ext}")))
        .find(|p| !p.exists())
        .unwrap_or(p)
}

fn role_for(profile: &str) -> &'static str {
    match profile {
        p if ["xdcam", "avci", "imx", "prores", "dnxhd"]
            .iter()
            .any(|k| p.starts_with(k)) =>
        {
            "house"
        }
        "proxy" | "thumbnails" => "proxy",
        _ => "platform",
    }
}

/// A sidecar's catalog fields (already read by type) as the new asset's metadata.
fn asset_input(
    side: &crate::ingest::sidecar::Sidecar,
    kind: &str,
    fallback_title: &str,
) -> AssetInput {
    let f = &side.fields;
    let s = |k: &str| f.get(k).and_then(Value::as_str).map(String::from);
    let tags = f.get("tags").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect()
    });
    AssetInput {
        house_id: s("house_id"),
        kind: s("kind").or_else(|| Some(kind.to_string())),
        title: s("title").or_else(|| Some(fallback_title.to_string())),
        description: s("description"),
        subject: s("subject"),
        creator: s("creator"),
        contributor: s("contributor"),
        date: s("date"),
        language: s("language"),
        rights: s("rights"),
        identifier: s("identifier"),
        series: s("series"),
        episode: s("episode"),
        custom: f.get("custom").and_then(Value::as_object).cloned(),
        tags,
        ..Default::default()
    }
}

impl Supervisor {
    pub fn new(
        catalog: Catalog,
        workflows: Vec<Workflow>,
        settings: Settings,
        system: Principal,
    ) -> Arc<Self> {
        for g in &settings.gpus {
            metrics::gauge!("antenne_gpu_in_rotation", "gpu" => g.id.clone()).set(1.0);
        }
        Arc::new(Supervisor {
            queue: JobQueue::new(catalog.clone()),
            catalog,
            workflows: workflows.into_iter().map(Arc::new).collect(),
            system,
            wake: Notify::new(),
            pool: std::sync::Mutex::new(
                Pool::new(
                    settings.slots,
                    settings.gpus.clone(),
                    settings.gpu_max_failures,
                )
                .with_light_slots(settings.light_slots),
            ),
            settings,
            serial: AtomicU64::new(0),
            storages: std::sync::OnceLock::new(),
            destinations: std::sync::OnceLock::new(),
        })
    }

    /// Lets jobs bring files back from nearline or archive before they run (set once the
    /// storages are built).
    pub fn set_storages(&self, s: Arc<crate::storage::Storages>) {
        let _ = self.storages.set(s);
    }

    /// The declared delivery destinations a workflow's `deliver` step may name.
    pub fn set_destinations(&self, d: Vec<crate::config::delivery::Destination>) {
        let _ = self.destinations.set(d);
    }

    /// What a job needs before its worker starts: a workflow delivery to a declared destination
    /// is planned (its files, names, manifests) and recorded on the asset, once (kept in the
    /// job's parameters for its retries); every stored file it reads that has no online copy is
    /// brought back from nearline or archive (verified), the job waiting for it.
    async fn prepare(&self, job: &mut Job, worker: &str) -> Result<(), Outcome> {
        if job.kind == "deliver" {
            if let Some(name) = job.params["destination"].as_str().map(String::from) {
                self.plan_delivery(job, &name).await?;
            }
        }
        if !matches!(job.kind.as_str(), "transcode" | "qc" | "verify" | "deliver") {
            return Ok(());
        }
        let mut paths: Vec<String> = Vec::new();
        let p = &job.params;
        if matches!(job.kind.as_str(), "transcode" | "qc") {
            paths.extend(p["path"].as_str().map(String::from));
        }
        for f in p["files"].as_array().into_iter().flatten() {
            paths.extend(f.as_str().or(f["path"].as_str()).map(String::from));
        }
        for f in p["items"].as_array().into_iter().flatten() {
            paths.extend(f["path"].as_str().map(String::from));
        }
        let media = &self.settings.media_dir;
        let missing: Vec<String> = paths
            .into_iter()
            .filter(|p| Path::new(p).starts_with(media) && !Path::new(p).exists())
            .collect();
        let (Some(asset), false) = (job.asset_id, missing.is_empty()) else {
            return Ok(());
        };
        let fail = |why: String| Outcome::Failed(why, true, Fault::Resource);
        let Some(storages) = self.storages.get() else {
            return Err(fail(format!(
                "{} has no online copy and the storages are not started yet",
                missing[0]
            )));
        };
        let files = self
            .catalog
            .files_of_asset(asset)
            .await
            .map_err(|e| fail(e.to_string()))?;
        for p in missing {
            let Some(f) = files.iter().find(|f| f.path == p) else {
                continue;
            };
            let msg = format!(
                "file {}: no online copy; waiting for it to be restored from another storage",
                f.file_id
            );
            let _ = self.queue.job_log(job.id, "info", &msg).await;
            tracing::info!(
                job = job.id,
                file = f.file_id,
                "restoring a file before its job runs"
            );
            let at = self
                .restore(job, worker, storages, f.file_id)
                .await
                .map_err(|o| match o {
                    Outcome::Failed(e, retry, fault) => Outcome::Failed(
                        format!(
                            "file {}: no online copy, and it cannot be restored now: {e}",
                            f.file_id
                        ),
                        retry,
                        fault,
                    ),
                    o => o,
                })?;
            if at != Path::new(&p) {
                return Err(fail(format!(
                    "file {}: restored to {}, not where the job reads it ({p})",
                    f.file_id,
                    at.display()
                )));
            }
        }
        Ok(())
    }

    /// Brings `file_id` back online for `job`, keeping the job's lease meanwhile. A storage that
    /// does not answer is waited for (up to [`RESTORE_WAIT`], asking again every few seconds);
    /// a file with no good copy anywhere fails the job for good.
    async fn restore(
        &self,
        job: &Job,
        worker: &str,
        storages: &crate::storage::Storages,
        file_id: i64,
    ) -> Result<PathBuf, Outcome> {
        let t0 = Instant::now();
        let mut said = false;
        loop {
            let restoring = storages.ensure_online(file_id);
            tokio::pin!(restoring);
            let got = loop {
                tokio::select! {
                    r = &mut restoring => break r,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {
                        let p = (0.0, 0.0, 0.0, 0.0);
                        if let Ok(false) = self
                            .queue
                            .progress(job.id, worker, p, self.settings.lease_ms, false)
                            .await
                        {
                            return Err(Outcome::Cancelled);
                        }
                    }
                }
            };
            let e = match got {
                Ok(at) => {
                    let msg = format!(
                        "file {file_id}: restored to online (verified) in {:.1} s",
                        t0.elapsed().as_secs_f64()
                    );
                    let _ = self.queue.job_log(job.id, "info", &msg).await;
                    return Ok(at);
                }
                Err(e) => e,
            };
            let known_good = self
                .catalog
                .copies_of_file(file_id)
                .await
                .is_ok_and(|c| c.iter().any(|c| c.state == "ok"));
            if !known_good {
                return Err(Outcome::Failed(e.to_string(), false, Fault::Internal));
            }
            if t0.elapsed() >= RESTORE_WAIT {
                return Err(Outcome::Failed(e.to_string(), true, Fault::Resource));
            }
            if !said {
                let msg = format!("file {file_id}: waiting for its storage: {e}");
                let _ = self.queue.job_log(job.id, "warn", &msg).await;
                tracing::warn!(job = job.id, file = file_id, error = %e, "restore waits for a storage");
                said = true;
            }
            for _ in 0..2 {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let p = (0.0, 0.0, 0.0, 0.0);
                if let Ok(false) = self
                    .queue
                    .progress(job.id, worker, p, self.settings.lease_ms, false)
                    .await
                {
                    return Err(Outcome::Cancelled);
                }
            }
        }
    }

    /// A workflow step's delivery to a declared destination: planned as the API plans one,
    /// recorded on the asset, and its parameters kept on the job.
    async fn plan_delivery(&self, job: &mut Job, name: &str) -> Result<(), Outcome> {
        let fatal = |why: String| Outcome::Failed(why, false, Fault::Internal);
        let d = self
            .destinations
            .get()
            .and_then(|ds| ds.iter().find(|d| d.name == name))
            .cloned()
            .ok_or_else(|| fatal(format!("deliver: no destination {name:?} is declared")))?;
        if d.kind == "pull" {
            return Err(fatal(format!(
                "deliver: destination {name:?} is a pull destination: its URLs are asked for \
                 over the API"
            )));
        }
        let asset = job
            .asset_id
            .ok_or_else(|| fatal("deliver: no asset".into()))?;
        let media = self.settings.media_dir.clone();
        let plan = super::deliveries::plan(&self.catalog, &media, &self.system, asset, &d)
            .await
            .map_err(|e| match e {
                super::deliveries::PlanError::Catalog(e) => {
                    Outcome::Failed(e.to_string(), true, Fault::Internal)
                }
                e => fatal(format!("deliver to {name:?}: {e}")),
            })?;
        plan.check_approval(&self.catalog, asset, &d)
            .await
            .map_err(|e| fatal(format!("deliver to {name:?}: {e}")))?;
        let retry = |e: CatalogError| Outcome::Failed(e.to_string(), true, Fault::Internal);
        // An earlier attempt cut short after recording it: the same delivery.
        let earlier = self
            .catalog
            .deliveries(&self.system, asset)
            .await
            .map_err(retry)?
            .into_iter()
            .find(|x| x.job_id == Some(job.id));
        let delivery = match earlier {
            Some(d) => d,
            None => self
                .catalog
                .create_delivery(
                    &self.system,
                    asset,
                    &d.name,
                    &d.kind,
                    "queued",
                    &plan.listed(),
                )
                .await
                .map_err(retry)?,
        };
        self.catalog
            .set_delivery_job(delivery.id, job.id)
            .await
            .map_err(retry)?;
        let items = json!(plan.items(&d));
        let dest = serde_json::to_value(&d).unwrap_or_default();
        for (k, v) in [
            ("delivery_id", json!(delivery.id)),
            ("items", items),
            ("destination", dest),
        ] {
            self.queue
                .set_job_param(job.id, k, v.clone())
                .await
                .map_err(retry)?;
            job.params[k] = v;
        }
        tracing::info!(asset, destination = %d.name, delivery = delivery.id, job = job.id, "workflow delivery planned");
        Ok(())
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The machine's slots and GPUs, as the API reports them.
    pub fn slots(&self) -> SlotsView {
        self.pool().view()
    }

    /// Puts a GPU taken out of rotation back; `false` when there is no such GPU.
    pub fn restore_gpu(&self, id: &str) -> bool {
        let ok = self.pool().restore(id);
        if ok {
            tracing::warn!(gpu = id, "GPU put back in rotation");
            metrics::gauge!("antenne_gpu_in_rotation", "gpu" => id.to_string()).set(1.0);
            self.wake.notify_one();
        }
        ok
    }

    /// What a job needs of the machine: a transcode's video encodes that a GPU can make, and
    /// whether anything is left for the CPU.
    pub fn needs(&self, kind: &str, params: &Value) -> Needs {
        if kind != "transcode" {
            return Needs::cpu_only();
        }
        let dir = crate::profile::profiles_dir(self.settings.profiles_dir.as_deref());
        let mut needs = Needs::default();
        for name in params["profiles"].as_array().into_iter().flatten() {
            let Some(prof) = name
                .as_str()
                .and_then(|n| crate::profile::find(n, dir.as_deref()).ok())
            else {
                needs.cpu = true;
                continue;
            };
            for o in &prof.outputs {
                match &o.video {
                    Some(v)
                        if v.encoder.is_none() && crate::av::hw::gpu_can(&v.codec, &v.pix_fmt) =>
                    {
                        needs.gpu.push(Encode {
                            codec: v.codec.clone(),
                            pix_fmt: v.pix_fmt.clone(),
                        })
                    }
                    Some(_) => needs.cpu = true,
                    None => {}
                }
            }
        }
        if needs.gpu.is_empty() {
            needs.cpu = true;
        }
        needs
    }

    pub fn workflow(&self, name: &str) -> Option<Arc<Workflow>> {
        self.workflows.iter().find(|w| w.name == name).cloned()
    }

    /// The folder a workflow watches.
    pub fn watch_dir(&self, w: &Workflow) -> Option<PathBuf> {
        w.trigger.watch.as_ref().map(|d| {
            if d.is_absolute() {
                d.clone()
            } else {
                self.settings.data_dir.join(d)
            }
        })
    }

    /// Runs until `stopping`: watch folders, scheduled triggers, the lease sweeper and the job
    /// loop.
    pub async fn run(self: Arc<Self>, stopping: CancellationToken) {
        let prefix = format!("{}/", self.settings.appliance);
        let n = self.recover(Some(&prefix)).await;
        if n > 0 {
            tracing::warn!(jobs = n, "jobs of a previous run queued again or settled");
        }
        for w in &self.workflows {
            let Some(dir) = self.watch_dir(w) else {
                continue;
            };
            // Made before the service says it is ready.
            for d in [dir.clone(), dir.join("done"), dir.join("failed")] {
                if let Err(e) = std::fs::create_dir_all(&d) {
                    tracing::error!(error = %e, dir = %d.display(), "watch folder cannot be made");
                }
            }
            tokio::spawn(self.clone().watch(w.clone(), dir, stopping.clone()));
        }
        for w in &self.workflows {
            let Some(Ok(sched)) = w
                .trigger
                .schedule
                .as_deref()
                .map(super::trigger::Schedule::parse)
            else {
                continue;
            };
            tokio::spawn(self.clone().schedule(w.clone(), sched, stopping.clone()));
        }
        tokio::spawn(self.clone().sweep_leases(stopping.clone()));
        loop {
            // Light jobs first, in their own lane: a file dropped during a long transcode is
            // catalogued at once; then what the encode slots and GPU sessions can take.
            while self.claim_light(&prefix, &stopping).await
                || self.claim_heavy(&prefix, &stopping).await
            {}
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stopping.cancelled() => return,
            }
        }
    }

    /// Watches a workflow's folder until `stop`: a scan every `poll_s`, and one soon after a
    /// file is closed or renamed in.
    async fn watch(self: Arc<Self>, w: Arc<Workflow>, dir: PathBuf, stop: CancellationToken) {
        let mut events = match watch::Events::open(&dir) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "watch folder: no file events, polling only");
                None
            }
        };
        let mut watcher = Watcher::new(dir, Duration::from_secs_f64(w.trigger.stable_s));
        let poll = Duration::from_secs_f64(w.trigger.poll_s);
        loop {
            if queue_arrivals(&self.queue, &w, &mut watcher).await > 0 {
                self.wake.notify_one();
            }
            // Counted once its arrivals are queued: a test (or an operator) sees that the
            // folder was looked at, and what it found, without waiting blind.
            metrics::counter!("antenne_ingest_watch_scans_total", "workflow" => w.name.clone())
                .increment(1);
            let next = async {
                match events.as_mut() {
                    Some(e) => e.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                e = next => match e {
                    Some(first) => {
                        // Everything queued now, then one scan after the grace.
                        let mut e = Some(first);
                        while let Some(ev) = e {
                            match ev {
                                watch::Event::Closed(name) => watcher.closed(&name),
                                watch::Event::Overflow => watcher.overflowed(),
                            }
                            e = events.as_mut().and_then(|s| s.next().now_or_never().flatten());
                        }
                        tokio::time::sleep(watch::CLOSED_GRACE).await;
                    }
                    None => events = None,
                },
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Fires a workflow's schedule until `stop`.
    async fn schedule(
        self: Arc<Self>,
        w: Arc<Workflow>,
        sched: super::trigger::Schedule,
        stop: CancellationToken,
    ) {
        loop {
            let now_ms = self.catalog.now_ms();
            let Some((at, n)) = sched.next_after(now_ms.div_euclid(1000)) else {
                return;
            };
            let wait = Duration::from_millis((at * 1000 - now_ms).max(0) as u64);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
            match self.fire(&w, n).await {
                Ok(0) => {}
                Ok(k) => {
                    tracing::info!(workflow = %w.name, assets = k, "scheduled run started");
                    self.wake.notify_one();
                }
                Err(e) => {
                    tracing::error!(workflow = %w.name, error = %e, "scheduled run failed")
                }
            }
            metrics::counter!("antenne_jobs_trigger_firings_total", "workflow" => w.name.clone())
                .increment(1);
        }
    }

    /// Every half lease until `stop`: jobs whose worker was lost queued again or settled.
    async fn sweep_leases(self: Arc<Self>, stop: CancellationToken) {
        let every = Duration::from_millis((self.settings.lease_ms / 2).max(1000) as u64);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => return,
            }
            let n = self.recover(None).await;
            if n > 0 {
                tracing::warn!(
                    jobs = n,
                    "jobs whose worker was lost queued again or settled"
                );
                self.wake.notify_one();
            }
        }
    }

    /// Claims one light job (ingest, fixity, delivery, webhook, purge) into a free slot of the
    /// light lane; whether one was taken.
    async fn claim_light(self: &Arc<Self>, prefix: &str, stopping: &CancellationToken) -> bool {
        if !self.pool().light_free() {
            return false;
        }
        let n = self.serial.fetch_add(1, Ordering::SeqCst);
        let worker = format!("{prefix}w{n}");
        let job = match self
            .queue
            .claim(&worker, self.settings.lease_ms, false, Lane::Light)
            .await
        {
            Ok(Some(job)) => job,
            Ok(None) => return false,
            Err(e) => {
                tracing::error!(error = %e, "jobs: cannot claim");
                return false;
            }
        };
        let Some(placed) = self.pool().take_light() else {
            // Not reached: the lane had a free slot, and only this loop takes them.
            if let Err(e) = self.queue.release(job.id, &worker).await {
                tracing::error!(error = %e, "jobs: cannot give a job back");
            }
            return false;
        };
        self.spawn_job(job, worker, placed, stopping.clone());
        true
    }

    /// Claims one job for the CPU encode slots or a GPU (with a light lane, only jobs that are
    /// not light); whether one was taken.
    async fn claim_heavy(self: &Arc<Self>, prefix: &str, stopping: &CancellationToken) -> bool {
        let (can, lane) = {
            let p = self.pool();
            let lane = if p.has_light_lane() {
                Lane::Heavy
            } else {
                Lane::Any
            };
            (p.claimable(), lane)
        };
        if can == Claimable::Nothing {
            return false;
        }
        let n = self.serial.fetch_add(1, Ordering::SeqCst);
        let worker = format!("{prefix}w{n}");
        let claimed = self
            .queue
            .claim(
                &worker,
                self.settings.lease_ms,
                can == Claimable::GpuOnly,
                lane,
            )
            .await;
        let job = match claimed {
            Ok(Some(job)) => job,
            Ok(None) => return false,
            Err(e) => {
                tracing::error!(error = %e, "jobs: cannot claim");
                return false;
            }
        };
        let needs = self.needs(&job.kind, &job.params);
        let avoid: Vec<String> = job.params["avoid_gpus"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        let placed = self.pool().place(&needs, &avoid);
        let Some(placed) = placed else {
            // Only GPU sessions were free, and no GPU here can make it.
            if let Err(e) = self.queue.release(job.id, &worker).await {
                tracing::error!(error = %e, "jobs: cannot give a job back");
            }
            return false;
        };
        if !matches!(placed, Placement::Cpu | Placement::Light) {
            let _ = self.queue.set_placed(job.id, &worker, placed.name()).await;
        }
        self.spawn_job(job, worker, placed, stopping.clone());
        true
    }

    fn spawn_job(
        self: &Arc<Self>,
        job: Job,
        worker: String,
        placed: Placement,
        stop: CancellationToken,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            me.run_job(job, worker, &placed, stop).await;
            me.pool().release(&placed);
            me.wake.notify_one();
        });
    }

    async fn run_job(
        &self,
        mut job: Job,
        worker: String,
        placed: &Placement,
        stopping: CancellationToken,
    ) {
        let outcome = match self.prepare(&mut job, &worker).await {
            Err(outcome) => outcome,
            Ok(()) => self.execute(&job, &worker, placed, &stopping).await,
        };
        let device_failed = against_gpu(&outcome, placed);
        if !matches!(outcome, Outcome::Cancelled) {
            self.tell_pool(job.id, placed, &outcome, device_failed)
                .await;
        }
        if device_failed {
            self.avoid_gpu(&job, placed).await;
        }
        if let Err(e) = self
            .record_outcome(&job, &worker, placed, outcome, device_failed)
            .await
        {
            tracing::error!(job = job.id, error = %e, "jobs: cannot record the outcome");
        }
    }

    /// Runs `job`: in a worker process, or here for what has no media to decode.
    async fn execute(
        &self,
        job: &Job,
        worker: &str,
        placed: &Placement,
        stopping: &CancellationToken,
    ) -> Outcome {
        if job.kind == "noop" && job.params.as_object().is_none_or(|o| o.is_empty()) {
            // Nothing to isolate: the scheduler's own cost.
            return Outcome::Done(json!({"ok": true}));
        }
        if job.kind != "purge" {
            return self.spawn_worker(job, worker, placed, stopping).await;
        }
        // Catalog work and unlinks, no media to decode: done here.
        let Some(a) = job.asset_id else {
            return Outcome::Failed("purge: no asset".into(), false, Fault::Internal);
        };
        match self.catalog.purge_by_workflow(a).await {
            Ok(paths) => {
                let n = crate::storage::remove_stored(&self.settings.media_dir, paths).await;
                Outcome::Done(json!({"purged": a, "files_removed": n}))
            }
            Err(e) => Outcome::Failed(e.to_string(), true, Fault::Internal),
        }
    }

    /// Tells the pool how the job ended where it was placed; a GPU that fails too often is
    /// taken out of rotation, and the job's log says so.
    async fn tell_pool(&self, id: i64, placed: &Placement, outcome: &Outcome, device_failed: bool) {
        let why = match outcome {
            Outcome::Failed(e, ..) | Outcome::Lost(e) => e.as_str(),
            _ => "",
        };
        let out = self.pool().outcome(placed, device_failed, why);
        if let Some(reason) = out {
            let gpu = placed.name().to_string();
            tracing::error!(gpu = %gpu, %reason, "GPU taken out of rotation: its jobs go elsewhere");
            metrics::gauge!("antenne_gpu_in_rotation", "gpu" => gpu.clone()).set(0.0);
            let _ = self
                .queue
                .job_log(
                    id,
                    "error",
                    &format!("GPU {gpu} taken out of rotation: {reason}"),
                )
                .await;
        }
    }

    /// The job's next attempt goes to another GPU or the CPU.
    async fn avoid_gpu(&self, job: &Job, placed: &Placement) {
        let mut avoid = job.params["avoid_gpus"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        avoid.push(json!(placed.name()));
        let _ = self
            .queue
            .set_job_param(job.id, "avoid_gpus", json!(avoid))
            .await;
    }

    /// Records how the job ended; a device's failure is retried at once, elsewhere.
    async fn record_outcome(
        &self,
        job: &Job,
        worker: &str,
        placed: &Placement,
        outcome: Outcome,
        device_failed: bool,
    ) -> Result<(), CatalogError> {
        match outcome {
            Outcome::Done(result) => self.complete(job, worker, result).await,
            Outcome::Failed(e, _, _) | Outcome::Lost(e) if device_failed => {
                let e = format!("on {}: {e}", placed.name());
                let f = Failing {
                    error: &e,
                    retry: true,
                    delay_ms: Some(0),
                    ..Default::default()
                };
                self.failed_with(job, worker, f).await
            }
            Outcome::Failed(e, retry, _) => self.failed(job, worker, &e, retry).await,
            Outcome::Lost(e) => self.failed(job, worker, &e, true).await,
            Outcome::Cancelled => Ok(()),
        }
    }

    /// Runs `job` in a worker process and watches it to the end: its messages, its time limit,
    /// its silence (a hang), its memory, a cancel over the API, and the service stopping.
    async fn spawn_worker(
        &self,
        job: &Job,
        worker: &str,
        placed: &Placement,
        stopping: &CancellationToken,
    ) -> Outcome {
        let (mut child, pid, stderr_tail) = match self.start_worker(job, worker, placed).await {
            Ok(started) => started,
            Err(outcome) => return outcome,
        };
        let Some(out) = child.stdout.take() else {
            return Outcome::Failed("worker has no stdout".into(), true, Fault::Internal);
        };
        let mut lines = BufReader::new(out).lines();
        let mut outcome = None;
        let mut w = Watching {
            started: Instant::now(),
            timeout: job.params["timeout_s"]
                .as_f64()
                .filter(|t| *t > 0.0)
                .map(Duration::from_secs_f64)
                .or(self.settings.job_timeout),
            pid,
            last_db: Instant::now() - Duration::from_secs(10),
            last_line: Instant::now(),
            logs: 0,
        };
        let mut mem_tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let step = tokio::select! {
                line = lines.next_line() => {
                    w.last_line = Instant::now();
                    match line {
                        Ok(Some(l)) => self.on_message(job, worker, &mut w, &l).await,
                        Ok(None) | Err(_) => break,
                    }
                }
                _ = mem_tick.tick() => self.on_tick(job, worker, &mut w).await,
                _ = stopping.cancelled() => {
                    // The job stays running under this appliance's name: the next start (or
                    // another appliance, when the lease runs out) queues it again.
                    let _ = child.kill().await;
                    return Outcome::Cancelled;
                }
            };
            match step {
                Step::Go => {}
                Step::Set(o) => outcome = Some(o),
                Step::Stop(o) => {
                    outcome = Some(o);
                    break;
                }
            }
        }
        if !matches!(outcome, Some(Outcome::Done(_)) | Some(Outcome::Failed(..))) {
            let _ = child.kill().await;
        }
        let status = child.wait().await;
        outcome.unwrap_or_else(|| lost(status, &stderr_tail))
    }

    /// Starts the worker process with the job on its stdin; the process, its pid, and the last
    /// lines of its stderr as they come.
    async fn start_worker(
        &self,
        job: &Job,
        worker: &str,
        placed: &Placement,
    ) -> Result<(tokio::process::Child, u32, StderrTail), Outcome> {
        let (backend, gpu, device) = match placed {
            Placement::Gpu {
                backend, device, ..
            } => (backend.name().to_string(), true, device.clone()),
            // Without GPUs in the pool, the configured backend as it was (`auto` finds one).
            Placement::Cpu | Placement::Light if self.settings.gpus.is_empty() => {
                (self.settings.backend.clone(), false, None)
            }
            Placement::Cpu | Placement::Light => ("software".to_string(), false, None),
        };
        let spec = WorkerJob {
            id: job.id,
            kind: job.kind.clone(),
            params: job.params.clone(),
            media_dir: self.settings.media_dir.clone(),
            profiles_dir: self.settings.profiles_dir.clone(),
            backend,
            placed_on_gpu: gpu,
        };
        let mut cmd = tokio::process::Command::new(&self.settings.worker_exe);
        match &device {
            Some(d) => cmd.env("ANTENNE_HW_DEVICE", d),
            None => cmd.env_remove("ANTENNE_HW_DEVICE"),
        };
        let mut child = cmd
            .arg("worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Outcome::Failed(format!("cannot start a worker: {e}"), true, Fault::Resource)
            })?;
        let pid = child.id().unwrap_or(0);
        let _ = self
            .queue
            .job_log(
                job.id,
                "info",
                &format!("worker {worker} (pid {pid}) started on {}", placed.name()),
            )
            .await;
        if let Some(mut stdin) = child.stdin.take() {
            let text = serde_json::to_vec(&spec).unwrap_or_default();
            let _ = stdin.write_all(&text).await;
        }
        let stderr_tail = StderrTail::default();
        if let Some(err) = child.stderr.take() {
            let tail = stderr_tail.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    if let Ok(mut t) = tail.lock() {
                        t.push(l);
                        if t.len() > 20 {
                            t.remove(0);
                        }
                    }
                }
            });
        }
        Ok((child, pid, stderr_tail))
    }

    /// One line from the worker: progress (at most once a second to the queue, which says
    /// when the job was cancelled), a log line (the first 500), or its result.
    async fn on_message(&self, job: &Job, worker: &str, w: &mut Watching, line: &str) -> Step {
        match serde_json::from_str::<WorkerMsg>(line) {
            Ok(WorkerMsg::Progress {
                percent,
                fps,
                speed,
                eta_s,
            }) => {
                if w.last_db.elapsed() >= Duration::from_secs(1) {
                    w.last_db = Instant::now();
                    let p = (percent, fps, speed, eta_s);
                    match self
                        .queue
                        .progress(job.id, worker, p, self.settings.lease_ms, true)
                        .await
                    {
                        Ok(false) => return Step::Stop(Outcome::Cancelled),
                        Ok(true) => {}
                        Err(e) => tracing::warn!(error = %e, "jobs: progress"),
                    }
                }
                Step::Go
            }
            Ok(WorkerMsg::Log { level, message }) => {
                w.logs += 1;
                if w.logs <= 500 {
                    let _ = self.queue.job_log(job.id, &level, &message).await;
                }
                Step::Go
            }
            Ok(WorkerMsg::Done { result }) => Step::Set(Outcome::Done(result)),
            Ok(WorkerMsg::Failed {
                error,
                retry,
                fault,
            }) => Step::Set(Outcome::Failed(error, retry, fault)),
            Err(_) => Step::Go,
        }
    }

    /// Every second: the time limit, a hang, the memory limit, and a cancel over the API.
    async fn on_tick(&self, job: &Job, worker: &str, w: &mut Watching) -> Step {
        if let Some(t) = w.timeout.filter(|t| w.started.elapsed() > *t) {
            return Step::Stop(Outcome::Failed(
                format!("ran past its time limit of {} s: stopped", t.as_secs_f64()),
                false,
                Fault::Timeout,
            ));
        }
        if w.last_line.elapsed() > self.settings.hang {
            return Step::Stop(Outcome::Lost(format!(
                "no progress for {} s: the worker was stopped (hang)",
                self.settings.hang.as_secs()
            )));
        }
        if let Some(rss) = rss_bytes(w.pid) {
            if rss > self.settings.memory_limit {
                return Step::Stop(Outcome::Failed(
                    format!(
                        "the worker used {} MiB, over the limit of {} MiB: stopped",
                        rss >> 20,
                        self.settings.memory_limit >> 20
                    ),
                    true,
                    Fault::Resource,
                ));
            }
        }
        // A job cancelled over the API stops its worker. The lease is renewed on a line's
        // progress too; a quiet worker's every two seconds here.
        if w.last_db.elapsed() >= Duration::from_secs(2) {
            w.last_db = Instant::now();
            let p = (job.progress, 0.0, 0.0, 0.0);
            if let Ok(false) = self
                .queue
                .progress(job.id, worker, p, self.settings.lease_ms, false)
                .await
            {
                return Step::Stop(Outcome::Cancelled);
            }
        }
        Step::Go
    }

    async fn failed(
        &self,
        job: &Job,
        worker: &str,
        error: &str,
        retry: bool,
    ) -> Result<(), CatalogError> {
        self.failed_with(
            job,
            worker,
            Failing {
                error,
                retry,
                ..Default::default()
            },
        )
        .await
    }

    /// Records a failed attempt with what it leaves (one transaction); a job that failed for
    /// good settles its source and its asset.
    async fn failed_with(
        &self,
        job: &Job,
        worker: &str,
        mut f: Failing<'_>,
    ) -> Result<(), CatalogError> {
        let _ = self.queue.job_log(job.id, "error", f.error).await;
        if f.status_if_failed.is_none() {
            f.status_if_failed = failed_status(&job.kind);
        }
        let j = self.queue.fail_step(job.id, worker, &f).await?;
        if j.state == "failed" {
            // The record as it is now: its source where it was last moved to.
            self.settle_failed(&j).await;
        }
        Ok(())
    }

    /// A job failed for good: an ingest's source goes to `failed/` (and the same file put back
    /// is taken again); a QC or transcode leaves its asset in a state that says so.
    async fn settle_failed(&self, job: &Job) {
        if let Some(d) = job.params["delivery_id"].as_i64() {
            tracing::warn!(delivery = d, job = job.id, error = %job.error, "delivery failed");
            let dest = job.params["destination"]["name"].as_str().unwrap_or("?");
            metrics::counter!("antenne_delivery_failed_total", "destination" => dest.to_string())
                .increment(1);
            if let Err(e) = self.catalog.finish_delivery(d, None, &job.error).await {
                tracing::warn!(delivery = d, error = %e, "jobs: cannot record the delivery");
            }
        }
        if job.kind == "ingest" {
            let moved = self.move_source(job, "failed").await;
            let out_of_watch = moved
                .as_deref()
                .and_then(Path::parent)
                .is_some_and(|d| d.ends_with("failed"));
            if out_of_watch {
                if let Err(e) = self.queue.release_key(job.id).await {
                    tracing::warn!(job = job.id, error = %e, "jobs: cannot release a key");
                }
            }
        }
        if let (Some(a), Some(st)) = (job.asset_id, failed_status(&job.kind)) {
            if let Err(e) = self.queue.set_status_if(a, st, &["ingesting"]).await {
                tracing::warn!(asset = a, error = %e, "jobs: cannot set the status");
            }
        }
    }

    /// Jobs whose worker was lost: queued again, or settled when no attempt is left.
    async fn recover(&self, prefix: Option<&str>) -> u64 {
        match self.queue.recover_jobs(prefix).await {
            Ok(r) => {
                for j in &r.failed {
                    tracing::error!(job = j.id, kind = %j.kind, "job failed for good: its worker was lost on every attempt");
                    let _ = self.queue.job_log(j.id, "error", &j.error).await;
                    self.settle_failed(j).await;
                }
                r.requeued + r.failed.len() as u64
            }
            Err(e) => {
                tracing::error!(error = %e, "jobs: cannot recover");
                0
            }
        }
    }

    /// Moves an ingested (or refused) source to `done/` or `failed/` beside it, when its
    /// workflow says so; returns where it is now.
    async fn move_source(&self, job: &Job, to: &str) -> Option<PathBuf> {
        let src = PathBuf::from(job.params["path"].as_str()?);
        let w = self.workflow(&job.workflow)?;
        if w.trigger.after != After::Move {
            return Some(src);
        }
        let planned = PathBuf::from(job.params["moved_to"].as_str()?);
        let src = if src.exists() {
            src
        } else if to == "failed" && planned.exists() {
            // Moved to done/ by an attempt whose outcome was never recorded.
            planned.clone()
        } else {
            return planned.exists().then_some(planned);
        };
        // `moved_to` is `<watch>/done/<name>`: done/ and failed/ sit in the watch folder.
        let dir = planned.parent()?.parent()?.join(to);
        let _ = std::fs::create_dir_all(&dir);
        let name = src.file_name()?.to_string_lossy().into_owned();
        let dest = if to == "done" && !planned.exists() {
            planned
        } else {
            free_name(&dir, &name)
        };
        if to == "done"
            && self
                .queue
                .set_job_param(job.id, "moved_to", json!(dest))
                .await
                .is_err()
        {
            return Some(src);
        }
        match std::fs::rename(&src, &dest) {
            Ok(()) => {
                if let Some(side) = crate::jobs::worker::read_sidecar(&src) {
                    if let Some(f) = side["file"].as_str() {
                        let _ = std::fs::rename(f, dir.join(Path::new(f).file_name()?));
                    }
                }
                Some(dest)
            }
            Err(e) => {
                tracing::warn!(error = %e, src = %src.display(), "cannot move the source");
                Some(src)
            }
        }
    }

    async fn complete(&self, job: &Job, worker: &str, result: Value) -> Result<(), CatalogError> {
        match job.kind.as_str() {
            "ingest" => self.complete_ingest(job, worker, result).await,
            "qc" => {
                let verdict = result["verdict"].as_str().unwrap_or("fail").to_string();
                let status = (verdict == "fail").then_some("qc_failed");
                let mut ctx = job.params["ctx"].clone();
                ctx["qc"] = json!({"verdict": verdict});
                let then = self.plan_next(job, &job.params, ctx, &[], status).await?;
                self.queue
                    .complete_for_job(job.asset_id, &[], status, job.id, worker, &result, &then)
                    .await?;
                self.wake.notify_one();
                Ok(())
            }
            "transcode" => self.complete_transcode(job, worker, result).await,
            _ => {
                let then = if job.params.get("step").is_some() {
                    self.plan_next(job, &job.params, job.params["ctx"].clone(), &[], None)
                        .await?
                } else {
                    Then::Nothing
                };
                self.queue
                    .complete_for_job(job.asset_id, &[], None, job.id, worker, &result, &then)
                    .await?;
                if let Some(d) = job.params["delivery_id"].as_i64() {
                    self.catalog.finish_delivery(d, Some(&result), "").await?;
                    let dest = result["destination"].as_str().unwrap_or("?").to_string();
                    metrics::counter!("antenne_delivery_completed_total", "destination" => dest.clone())
                        .increment(1);
                    metrics::counter!("antenne_delivery_sent_bytes_total", "destination" => dest)
                        .increment(result["sent_bytes"].as_u64().unwrap_or(0));
                }
                self.wake.notify_one();
                Ok(())
            }
        }
    }

    /// A transcode's outputs: each that passed its verification is registered (whatever the
    /// others did) and remembered, so that a retry makes only what is missing; any that failed
    /// fails the job, naming each failed check with what was expected and measured, and the
    /// asset becomes `rendition_failed`.
    async fn complete_transcode(
        &self,
        job: &Job,
        worker: &str,
        result: Value,
    ) -> Result<(), CatalogError> {
        let outputs = result["outputs"].as_array().cloned().unwrap_or_default();
        let done = job.params["done"].as_array().cloned().unwrap_or_default();
        let r = match Renditions::sort(&outputs, done) {
            Ok(r) => r,
            Err(e) => {
                return self
                    .failed(job, worker, &format!("worker result: {e}"), true)
                    .await
            }
        };
        if r.failed.is_empty() {
            self.transcode_succeeded(job, worker, &r.files, &result)
                .await
        } else {
            self.transcode_failed(job, worker, r, outputs.len(), result)
                .await
        }
    }

    /// Every output registered: the asset goes on (a retry that completes what was missing
    /// puts it back where it was before it failed).
    async fn transcode_succeeded(
        &self,
        job: &Job,
        worker: &str,
        files: &[NewFile],
        result: &Value,
    ) -> Result<(), CatalogError> {
        let back = match job.asset_id {
            Some(a) => self.catalog.asset(&self.system, a).await.ok(),
            None => None,
        }
        .filter(|a| a.status == "rendition_failed")
        .map(|_| {
            if job.params["run"].as_str().unwrap_or_default().is_empty() {
                "ingesting"
            } else {
                "ready"
            }
        });
        let then = self
            .plan_next(job, &job.params, job.params["ctx"].clone(), files, back)
            .await?;
        self.queue
            .complete_for_job(job.asset_id, files, back, job.id, worker, result, &then)
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Some output failed its profile: the job fails for good with what passed registered
    /// and remembered, the failed reports kept on its record.
    async fn transcode_failed(
        &self,
        job: &Job,
        worker: &str,
        r: Renditions<'_>,
        total: usize,
        mut result: Value,
    ) -> Result<(), CatalogError> {
        let error = rendition_failures(&r.failed, total, &r.withheld);
        result["failed"] = json!(r
            .failed
            .iter()
            .map(|o| json!({
                "profile": o["profile"],
                "output": o["output"],
                "path": o["path"],
                "report": o["verification"],
            }))
            .collect::<Vec<_>>());
        result["registered"] = json!(r.files.iter().map(|f| f.path.clone()).collect::<Vec<_>>());
        result["withheld"] = json!(r.withheld);
        let mut params = job.params.clone();
        params["done"] = json!(r.done);
        self.failed_with(
            job,
            worker,
            Failing {
                error: &error,
                // The same source through the same profile fails the same way: an operator
                // retries (only what is missing) once the profile or the source is fixed.
                retry: false,
                result: Some(&result),
                params: Some(&params),
                files: &r.files,
                status_if_failed: Some("rendition_failed"),
                ..Default::default()
            },
        )
        .await
    }

    async fn complete_ingest(
        &self,
        job: &Job,
        worker: &str,
        result: Value,
    ) -> Result<(), CatalogError> {
        let mut file: NewFile = match serde_json::from_value(result["file"].clone()) {
            Ok(f) => f,
            Err(e) => {
                return self
                    .failed(job, worker, &format!("worker result: {e}"), true)
                    .await
            }
        };
        let workflow = self.workflow(&job.workflow);
        let sidecar = result["sidecar"].clone();
        let name = Path::new(&file.path)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "untitled".into());
        let kind = workflow
            .as_ref()
            .map_or("clip".to_string(), |w| w.asset_kind.clone());
        let (mut input, declared) = self.sidecar_input(job, &sidecar, &kind, &name).await;
        let has_steps = workflow.as_ref().is_some_and(|w| !w.steps.is_empty());
        input.status = Some(if has_steps { "ingesting" } else { "ready" }.into());
        // Where the source will be: moved first, so that the catalog records its final place.
        if let Some(now_at) = self.move_source(job, "done").await {
            file.path = now_at.display().to_string();
        }
        let source = file.clone();
        let plan = |asset_id: i64, house_id: &str, file_id: i64| {
            let Some(w) = workflow.as_ref() else {
                return Then::Nothing;
            };
            let params = json!({
                "path": source.path,
                "file_id": file_id,
                "declared": declared,
                "ctx": {"source": source.technical},
                "step": -1,
            });
            let facts = AssetFacts {
                id: asset_id,
                house_id: house_id.to_string(),
                title: input.title.clone().unwrap_or_default(),
                status: input.status.clone().unwrap_or_default(),
                files: vec![FileFact::of(&source)],
            };
            self.plan(w, &facts, &params, params["ctx"].clone())
        };
        match self
            .queue
            .ingest_for_job(&self.system, &input, &file, job.id, worker, &result, plan)
            .await
        {
            Ok(_) => {
                self.wake.notify_one();
                Ok(())
            }
            Err(
                e @ (CatalogError::Duplicate { .. }
                | CatalogError::Invalid { .. }
                | CatalogError::Conflict(_)
                | CatalogError::FieldForbidden(_)),
            ) => {
                // Move it back out of done/: it was not taken.
                let mut j = job.clone();
                j.params["path"] = json!(file.path);
                self.failed(&j, worker, &e.to_string(), false).await
            }
            Err(e) => Err(e),
        }
    }

    /// The new asset's metadata from an ingest's sidecar, each field by its type whatever
    /// carried it, and the fields as declared (for QC); the job's log says where each went,
    /// or why the sidecar could not be read.
    async fn sidecar_input(
        &self,
        job: &Job,
        sidecar: &Value,
        kind: &str,
        name: &str,
    ) -> (AssetInput, Value) {
        let side = crate::ingest::sidecar::typed(&sidecar["fields"]);
        let input = asset_input(&side, kind, name);
        if sidecar["fields"].is_object() {
            let level = if side.unknown.is_empty() && side.invalid.is_empty() {
                "info"
            } else {
                "warn"
            };
            let from = sidecar["file"].as_str().unwrap_or("sidecar");
            let _ = self
                .queue
                .job_log(job.id, level, &format!("{from}: {}", side.summary()))
                .await;
        }
        if let Some(e) = sidecar["error"].as_str() {
            let _ = self
                .queue
                .job_log(job.id, "warn", &format!("sidecar unreadable: {e}"))
                .await;
        }
        (input, Value::Object(side.fields))
    }

    /// Starts a workflow's steps on an asset already in the catalog (a schedule, or the API);
    /// `run` names the run in the steps' idempotency keys. Returns the first step's job;
    /// `None` when this run already started on it, or no step applies.
    pub async fn start_on_asset(
        &self,
        w: &Workflow,
        asset_id: i64,
        run: &str,
    ) -> Result<Option<i64>, CatalogError> {
        let files = self.catalog.files(&self.system, asset_id).await?;
        let source = files
            .iter()
            .find(|f| f.role == "source")
            .or_else(|| files.first());
        let params = json!({
            "path": source.map(|f| f.path.clone()),
            "file_id": source.map(|f| f.id),
            "declared": {},
            "ctx": {"source": source.map(|f| f.technical.clone())},
            "step": -1,
            "run": run,
        });
        let Some((first, _)) = w.next_step(0, &params["ctx"]) else {
            return Ok(None);
        };
        let key = format!("wf:{}:{run}:{asset_id}:{first}", w.name);
        if self.queue.job_by_key(&key).await?.is_some() {
            return Ok(None);
        }
        let asset = self.catalog.asset(&self.system, asset_id).await?;
        let facts = AssetFacts {
            id: asset_id,
            house_id: asset.house_id,
            title: asset.title,
            status: asset.status,
            files: files.iter().map(FileFact::from_rec).collect(),
        };
        let then = self.plan(w, &facts, &params, params["ctx"].clone());
        self.queue.start_step(Some(asset_id), &then).await?;
        self.wake.notify_one();
        self.queue.job_by_key(&key).await
    }

    /// One firing of a scheduled workflow: its steps started on every asset its `select`
    /// finds (at most `limit`); returns how many.
    pub async fn fire(&self, w: &Workflow, n: i64) -> Result<usize, CatalogError> {
        let sel = &w.trigger.select;
        let created_to = sel
            .older_than_days
            .map(|d| crate::catalog::rfc3339(self.catalog.now_ms() - (d * 86_400_000.0) as i64));
        let run = format!("sched{n}");
        let mut started = 0;
        let mut seen = 0;
        let mut after = None;
        while seen < sel.limit {
            let page = self
                .catalog
                .search(
                    &self.system,
                    &crate::catalog::assets::SearchQuery {
                        q: sel.q.clone(),
                        status: sel.status.clone(),
                        kind: sel.kind.clone(),
                        tag: sel.tag.clone(),
                        collection: sel.collection,
                        created_to: created_to.clone(),
                        limit: Some(200.min((sel.limit - seen) as i64)),
                        after,
                        ..Default::default()
                    },
                )
                .await?;
            if page.is_empty() {
                break;
            }
            seen += page.len();
            after = page.last().map(|a| a.id);
            for a in &page {
                if a.status == "purged" || self.queue.job_active(a.id, &w.name).await? {
                    continue;
                }
                if self.start_on_asset(w, a.id, &run).await?.is_some() {
                    started += 1;
                }
            }
        }
        Ok(started)
    }

    /// The step that follows `job` in its workflow, planned from the asset as the job's
    /// outcome leaves it (`new_files` registered, `status_after` set), to be recorded in the
    /// same transaction as that outcome.
    async fn plan_next(
        &self,
        job: &Job,
        params: &Value,
        ctx: Value,
        new_files: &[NewFile],
        status_after: Option<&str>,
    ) -> Result<Then, CatalogError> {
        let Some(w) = self.workflow(&job.workflow) else {
            return Ok(Then::Nothing);
        };
        let Some(asset_id) = job.asset_id else {
            return Ok(Then::Nothing);
        };
        let asset = self.catalog.asset(&self.system, asset_id).await?;
        let mut files: Vec<FileFact> = self
            .catalog
            .files(&self.system, asset_id)
            .await?
            .iter()
            .map(FileFact::from_rec)
            .collect();
        files.extend(new_files.iter().map(FileFact::of));
        let facts = AssetFacts {
            id: asset_id,
            house_id: asset.house_id,
            title: asset.title,
            status: status_after.map_or(asset.status, String::from),
            files,
        };
        Ok(self.plan(&w, &facts, params, ctx))
    }

    /// The next step of a workflow whose condition holds, as a job to queue; the end of an
    /// ingest run marks the asset ready. Pure planning: nothing is written here.
    fn plan(&self, w: &Workflow, asset: &AssetFacts, params: &Value, ctx: Value) -> Then {
        let asset_id = asset.id;
        let from = (params["step"].as_i64().unwrap_or(-1) + 1).max(0) as usize;
        let Some((i, step)) = w.next_step(from, &ctx) else {
            // The end of an ingest run: the asset is ready (a scheduled run leaves it be).
            if ctx["qc"]["verdict"].as_str() != Some("fail") {
                return Then::Status {
                    to: "ready".into(),
                    from: vec!["ingesting".into()],
                };
            }
            return Then::Nothing;
        };
        let run = params["run"].as_str().unwrap_or_default().to_string();
        let ctx_qc = ctx["qc"]["verdict"].clone();
        let mut params = json!({
            "step": i,
            "path": params["path"],
            "file_id": params["file_id"],
            "declared": params["declared"],
            "ctx": ctx,
            "run": run,
        });
        if let Some(t) = step.timeout_s {
            params["timeout_s"] = json!(t);
        }
        let kind = self.step_params(w, i, step, asset, &mut params, ctx_qc);
        // A declared destination says how often its deliveries are tried.
        let max_attempts = step
            .destination
            .as_ref()
            .and_then(|n| self.destinations.get()?.iter().find(|d| &d.name == n))
            .and_then(|d| d.attempts)
            .map_or(3, i64::from);
        Then::Enqueue(NewJob {
            kind: kind.into(),
            priority: step.priority,
            max_attempts,
            asset_id: Some(asset_id),
            workflow: w.name.clone(),
            idempotency_key: Some(if run.is_empty() {
                format!("wf:{}:{asset_id}:{i}", w.name)
            } else {
                format!("wf:{}:{run}:{asset_id}:{i}", w.name)
            }),
            gpu_only: self.needs(kind, &params).gpu_only(),
            params,
        })
    }

    /// What step `i` of `w` needs in its parameters beside the run's own; its job's kind.
    fn step_params(
        &self,
        w: &Workflow,
        i: usize,
        step: &super::workflow::Step,
        asset: &AssetFacts,
        params: &mut Value,
        ctx_qc: Value,
    ) -> &'static str {
        let asset_id = asset.id;
        match step.kind.as_str() {
            "qc" => {
                params["rules"] = serde_json::to_value(&w.qc).unwrap_or_default();
                let mut declared = params["declared"].clone();
                if !declared.is_object() {
                    declared = json!({});
                }
                params["declared"] = declared;
                "qc"
            }
            "transcode" => {
                params["profiles"] = json!(step.profiles);
                params["out_dir"] = json!(self
                    .settings
                    .media_dir
                    .join("renditions")
                    .join(crate::ingest::safe_name(&asset.house_id)));
                "transcode"
            }
            "notify" => {
                params["url"] = json!(step.url);
                params["event"] = json!({
                    "workflow": w.name,
                    "step": i,
                    "asset_id": asset_id,
                    "house_id": asset.house_id,
                    "title": asset.title,
                    "status": asset.status,
                    "qc": ctx_qc,
                });
                "notify"
            }
            "verify" => {
                params["files"] = json!(asset
                    .files
                    .iter()
                    .map(|f| json!({"path": f.path, "sha256": f.sha256, "size": f.size}))
                    .collect::<Vec<_>>());
                "verify"
            }
            "purge" => "purge",
            _ if step.destination.is_some() => {
                // Planned when the job starts (see `prepare`): names, manifests, the record.
                params["destination"] = json!(step.destination);
                "deliver"
            }
            _ => {
                let paths: Vec<String> = asset
                    .files
                    .iter()
                    .filter(|f| {
                        f.role != "source"
                            && (step.profiles.is_empty() || step.profiles.contains(&f.profile))
                    })
                    .map(|f| f.path.clone())
                    .collect();
                params["files"] = json!(paths);
                params["to"] = json!(step.to);
                "deliver"
            }
        }
    }
}

/// A transcode's outputs sorted for the record.
struct Renditions<'a> {
    /// The files of the outputs that passed (a storyboard's every sheet).
    files: Vec<NewFile>,
    /// The outputs that failed their verification.
    failed: Vec<&'a Value>,
    /// `profile/output` of those that passed but are withheld with their failed package.
    withheld: Vec<String>,
    /// `profile/output` of every output registered so far, by this attempt or earlier ones.
    done: Vec<Value>,
}

impl<'a> Renditions<'a> {
    /// `outputs` as the worker reported them; `done` what earlier attempts registered.
    fn sort(outputs: &'a [Value], done: Vec<Value>) -> Result<Self, serde_json::Error> {
        let key = |o: &Value| {
            format!(
                "{}/{}",
                o["profile"].as_str().unwrap_or("?"),
                o["output"].as_str().unwrap_or("?")
            )
        };
        // A package is published whole: one failed rendition withholds the others.
        let failed_packages: Vec<&str> = outputs
            .iter()
            .filter(|o| o["pass"] != true && o["package"] == true)
            .filter_map(|o| o["profile"].as_str())
            .collect();
        let mut r = Renditions {
            files: Vec::new(),
            failed: Vec::new(),
            withheld: Vec::new(),
            done,
        };
        for o in outputs {
            let profile = o["profile"].as_str().unwrap_or_default();
            if o["pass"] != true {
                r.failed.push(o);
            } else if failed_packages.contains(&profile) {
                r.withheld.push(key(o));
            } else {
                r.files.extend(output_files(o, profile)?);
                r.done.push(json!(key(o)));
            }
        }
        Ok(r)
    }
}

/// The files of one output that passed: its file and, for a storyboard, its further sheets,
/// each with the role of its profile.
fn output_files(o: &Value, profile: &str) -> Result<Vec<NewFile>, serde_json::Error> {
    let mut files = vec![serde_json::from_value::<NewFile>(o["file"].clone())?];
    for m in o["more_files"].as_array().into_iter().flatten() {
        files.push(serde_json::from_value(m.clone())?);
    }
    for f in &mut files {
        f.role = role_for(profile).into();
        // The sheets of a storyboard have no verification report of their own to name it.
        if f.profile.is_empty() {
            f.profile = profile.to_string();
        }
    }
    Ok(files)
}

/// The asset a next step is planned from.
struct AssetFacts {
    id: i64,
    house_id: String,
    title: String,
    status: String,
    files: Vec<FileFact>,
}

/// What planning needs of a file (recorded, or being recorded with the step's outcome).
struct FileFact {
    path: String,
    sha256: String,
    size: i64,
    role: String,
    profile: String,
}

impl FileFact {
    fn of(f: &NewFile) -> FileFact {
        FileFact {
            path: f.path.clone(),
            sha256: f.sha256.clone(),
            size: f.size,
            role: f.role.clone(),
            profile: f.profile.clone(),
        }
    }

    fn from_rec(f: &FileRec) -> FileFact {
        FileFact {
            path: f.path.clone(),
            sha256: f.sha256.clone(),
            size: f.size,
            role: f.role.clone(),
            profile: f.profile.clone(),
        }
    }
}

/// Queues an ingest job for each file the watch folder of `workflow` has complete (once: the
/// job's idempotency key is the file's version); returns how many jobs were queued.
async fn queue_arrivals(queue: &JobQueue, workflow: &Workflow, watcher: &mut Watcher) -> usize {
    let mut queued = 0;
    for a in watcher.scan() {
        let job = NewJob {
            kind: "ingest".into(),
            priority: 0,
            max_attempts: 3,
            asset_id: None,
            workflow: workflow.name.clone(),
            idempotency_key: Some(a.key),
            params: json!({
                "path": a.path,
                "moved_to": watcher.dir.join("done").join(&a.name),
                "size": a.size,
            }),
            gpu_only: false,
        };
        match queue.enqueue(&job).await {
            Ok(Some(_)) => {
                queued += 1;
                watcher.taken(&a.name);
            }
            Ok(None) => watcher.taken(&a.name),
            Err(e) => tracing::warn!(error = %e, file = %a.path.display(), "watch: cannot queue"),
        }
    }
    queued
}

/// The asset's status when a job of this kind fails for good.
fn failed_status(kind: &str) -> Option<&'static str> {
    match kind {
        "qc" => Some("qc_failed"),
        "transcode" => Some("rendition_failed"),
        _ => None,
    }
}

/// A transcode's failure: each output that failed its verification with each failed check,
/// expected against measured.
fn rendition_failures(failed: &[&Value], total: usize, withheld: &[String]) -> String {
    let each: Vec<String> = failed
        .iter()
        .map(|o| {
            let checks: Vec<String> = o["verification"]["checks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["pass"] == false)
                .map(|c| {
                    format!(
                        "{}: expected {}, measured {}",
                        c["name"].as_str().unwrap_or("?"),
                        c["expected"].as_str().unwrap_or("?"),
                        c["measured"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            format!(
                "{}/{} ({}): {}",
                o["profile"].as_str().unwrap_or("?"),
                o["output"].as_str().unwrap_or("?"),
                o["path"].as_str().unwrap_or("?"),
                if checks.is_empty() {
                    "failed (no check named)".to_string()
                } else {
                    checks.join("; ")
                }
            )
        })
        .collect();
    let mut e = format!(
        "verification failed for {} of {} outputs: {}",
        failed.len(),
        total,
        each.join(" | ")
    );
    if !withheld.is_empty() {
        e.push_str(&format!(
            " (withheld with their package: {})",
            withheld.join(", ")
        ));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::av::hw::Backend;
    use crate::jobs::{Failure, WorkerMsg};

    fn pool() -> Pool {
        let gpu = GpuSpec {
            id: "nvenc:0".into(),
            backend: Backend::Nvenc,
            device: None,
            sessions: 2,
            codecs: vec!["h264".into()],
            bit_depths: vec![8],
            chroma: vec!["420".into()],
        };
        // One device failure is enough to take it out.
        Pool::new(1, vec![gpu], 1)
    }

    fn needs() -> Needs {
        Needs {
            cpu: false,
            gpu: vec![Encode {
                codec: "h264".into(),
                pix_fmt: "yuv420p".into(),
            }],
        }
    }

    /// What the supervisor makes of the line a worker printed for `failure`.
    fn outcome_of(failure: &Failure) -> Outcome {
        let line = serde_json::to_string(&super::super::worker::report(failure)).unwrap();
        match serde_json::from_str::<WorkerMsg>(&line).unwrap() {
            WorkerMsg::Failed {
                error,
                retry,
                fault,
            } => Outcome::Failed(error, retry, fault),
            other => panic!("{other:?}"),
        }
    }

    /// The job's output hits a full disk: the kernel's own ENOSPC, from writing to /dev/full.
    fn disk_full() -> Failure {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let e = f.write_all(&[0u8; 4096]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        Failure::from(e).context("proxy")
    }

    #[test]
    fn a_gpu_placed_job_failing_with_enospc_leaves_the_gpu_in_rotation() {
        let mut p = pool();
        for _ in 0..3 {
            let placed = p.place(&needs(), &[]).unwrap();
            assert!(matches!(placed, Placement::Gpu { .. }), "{placed:?}");
            let outcome = outcome_of(&disk_full());
            let Outcome::Failed(error, _, _) = &outcome else {
                unreachable!()
            };
            assert!(error.contains("No space left on device"), "{error}");
            let device_failed = against_gpu(&outcome, &placed);
            assert!(!device_failed, "a full disk is not the GPU's fault");
            assert_eq!(p.outcome(&placed, device_failed, error), None);
            p.release(&placed);
        }
        let g = &p.view().gpus[0];
        assert!(g.in_rotation, "{g:?}");
        assert_eq!(g.failures, 0);
    }

    #[test]
    fn a_gpu_placed_job_whose_device_fails_takes_the_gpu_out() {
        let mut p = pool();
        let placed = p.place(&needs(), &[]).unwrap();
        let failure = Failure::from(crate::av::AvError::Output {
            output: "proxy".into(),
            source: crate::av::engine::StageError::Encoder {
                what: "cannot open encoder h264_nvenc with these settings".into(),
                backend: Backend::Nvenc,
                source: crate::av::ff::Error::InvalidData,
            },
        });
        let outcome = outcome_of(&failure);
        assert!(against_gpu(&outcome, &placed));
        assert!(p.outcome(&placed, true, "encoder").is_some());
        assert!(!p.view().gpus[0].in_rotation);
        // The same failure on the CPU counts against nothing.
        assert!(!against_gpu(&outcome, &Placement::Cpu));
    }
}
