//! The composition root of `antenne serve`: configuration → data directory → catalog → first
//! admin → HTTP API; systemd readiness and watchdog; graceful shutdown on SIGTERM/SIGINT.
//! The only place besides `cli` that imports `api`; it wires the domain, and nothing imports it but
//! `cli`.

mod live_engine;
mod playout_engine;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::api::{self, AppState};
use crate::catalog::{Catalog, OpenOptions, Role, SystemClock};
use crate::config::appliance::ApplianceConfig;
use crate::naming::Template;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{key}: {path}: {source}")]
    Dir {
        key: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}: {why}")]
    Machine { key: &'static str, why: String },
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("server.listen: cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("live: {0}")]
    Live(#[from] crate::hub::registry::LiveError),
    #[error("playout: {0}")]
    Playout(#[from] crate::playout::service::PlayoutError),
    #[error("HTTP server: {0}")]
    Serve(#[source] std::io::Error),
}

/// The directories of a data directory, created when missing.
pub struct DataDirs {
    pub root: PathBuf,
    pub media: PathBuf,
    pub watch: PathBuf,
}

/// An ingest root holding the data directory would let any editor ingest the catalog itself.
fn check_roots(cfg: &ApplianceConfig) -> Result<(), AppError> {
    let data = std::path::absolute(&cfg.storage.data_dir).unwrap_or(cfg.storage.data_dir.clone());
    let data = data.canonicalize().unwrap_or(data);
    for r in &cfg.ingest.roots {
        let root = r.canonicalize().unwrap_or(r.clone());
        if data.starts_with(&root) {
            return Err(AppError::Machine {
                key: "ingest.roots",
                why: format!(
                    "{} contains the data directory {}: the catalog would be ingestible",
                    r.display(),
                    data.display()
                ),
            });
        }
    }
    Ok(())
}

/// Whether `p` lies in the data directory (and so is made at start).
fn in_data_dir(cfg: &ApplianceConfig, p: &Path) -> bool {
    std::path::absolute(&cfg.storage.data_dir).is_ok_and(|d| p.starts_with(d))
}

pub fn prepare_dirs(cfg: &ApplianceConfig) -> Result<DataDirs, AppError> {
    check_roots(cfg)?;
    let root = cfg.storage.data_dir.clone();
    let d = DataDirs {
        media: root.join("media"),
        watch: root.join("watch"),
        root,
    };
    // Ingest roots inside the data directory (the default `incoming/`) are made with it.
    let inside: Vec<&PathBuf> = cfg
        .ingest
        .roots
        .iter()
        .filter(|r| in_data_dir(cfg, r))
        .collect();
    for p in [&d.root, &d.media, &d.watch].into_iter().chain(inside) {
        std::fs::create_dir_all(p).map_err(|e| AppError::Dir {
            key: "storage.data_dir",
            path: p.display().to_string(),
            source: e,
        })?;
    }
    // Writable: a probe file, created and removed.
    let probe = d.root.join(".antenne-write-test");
    std::fs::write(&probe, b"ok")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| AppError::Dir {
            key: "storage.data_dir",
            path: d.root.display().to_string(),
            source: e,
        })?;
    Ok(d)
}

/// What `antenne validate` checks of the machine beyond the configuration itself.
pub fn check_machine(cfg: &ApplianceConfig) -> Result<(), AppError> {
    check_roots(cfg)?;
    for r in &cfg.ingest.roots {
        if !r.is_dir() && !in_data_dir(cfg, r) {
            return Err(AppError::Machine {
                key: "ingest.roots",
                why: format!("{} is not a directory on this machine", r.display()),
            });
        }
    }
    let d = &cfg.storage.data_dir;
    let existing = d.ancestors().find(|p| p.exists()).unwrap_or(Path::new("."));
    let meta = std::fs::metadata(existing).map_err(|e| AppError::Dir {
        key: "storage.data_dir",
        path: existing.display().to_string(),
        source: e,
    })?;
    if meta.permissions().readonly() {
        return Err(AppError::Machine {
            key: "storage.data_dir",
            why: format!("{} is read-only", existing.display()),
        });
    }
    Ok(())
}

/// The process-wide Prometheus recorder (installed once; later calls get the same handle).
pub fn metrics_handle() -> PrometheusHandle {
    static H: OnceLock<PrometheusHandle> = OnceLock::new();
    H.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ])
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        // Another recorder may be installed already (tests, benches): then ours stays local.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
    .clone()
}

pub async fn open_catalog(cfg: &ApplianceConfig, dirs: &DataDirs) -> Result<Catalog, AppError> {
    let naming = Template::parse(&cfg.naming.template).map_err(|e| AppError::Machine {
        key: "naming.template",
        why: e.why,
    })?;
    Ok(Catalog::open(
        OpenOptions {
            url: cfg.catalog.url.clone(),
            data_dir: dirs.root.clone(),
            max_connections: cfg.catalog.max_connections,
            naming,
            channel: cfg.naming.channel.clone(),
            fields: cfg.catalog.fields.clone(),
        },
        Arc::new(SystemClock),
    )
    .await?)
}

/// On a catalog without users: an `admin` whose password comes from `ANTENNE_ADMIN_PASSWORD`,
/// else a random one printed this once.
pub async fn bootstrap_admin(catalog: &Catalog) -> Result<(), AppError> {
    if catalog.user_count().await? > 0 {
        return Ok(());
    }
    let (password, shown) = match std::env::var("ANTENNE_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => (
            crate::catalog::access::new_secret("")[..20].to_string(),
            true,
        ),
    };
    catalog
        .create_user("admin", "Administrator", Role::Admin, &password)
        .await?;
    if shown {
        println!(
            "antenne: first start: user \"admin\" created with the one-time password {password}\n\
             antenne: it is not shown again; log in and change it (POST /v1/users/me/password)"
        );
    } else {
        println!("antenne: first start: user \"admin\" created with the password from ANTENNE_ADMIN_PASSWORD");
    }
    Ok(())
}

/// The watchdog period systemd asks for, as `sd_watchdog_enabled(3)` reads it: `WATCHDOG_USEC`,
/// unless `WATCHDOG_PID` names another process.
fn watchdog_usec() -> Option<u64> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then_some(usec)
}

/// The principal workflows act as: a `service` user named `system` that cannot log in.
pub async fn system_principal(catalog: &Catalog) -> Result<crate::catalog::Principal, AppError> {
    let u = match catalog.user_by_name("system").await? {
        Some(u) => u,
        None => {
            let pw = crate::catalog::access::new_secret("");
            match catalog
                .create_user("system", "Workflows", Role::Service, &pw)
                .await
            {
                Ok(u) => {
                    catalog
                        .update_user(u.id, None, None, Some(true), None)
                        .await?
                }
                // Another appliance on the same catalog made it first.
                Err(crate::catalog::CatalogError::Conflict(_)) => catalog
                    .user_by_name("system")
                    .await?
                    .ok_or_else(|| AppError::Machine {
                        key: "catalog.url",
                        why: "the system user vanished while being made".into(),
                    })?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    Ok(crate::catalog::Principal {
        user_id: u.id,
        username: u.username,
        role: Role::Service,
        groups: Arc::from(Vec::new()),
    })
}

/// The GPUs jobs may be placed on: `jobs.gpus`, narrowed to the backend `transcode.backend`
/// allows (`software`: none).
fn scheduler_gpus(cfg: &ApplianceConfig) -> Vec<crate::jobs::devices::GpuSpec> {
    let backend = cfg.transcode.backend.as_str();
    if backend == "software" {
        return Vec::new();
    }
    match crate::jobs::devices::configured_gpus(&cfg.jobs.gpus, cfg.jobs.gpu_sessions as usize) {
        Ok(g) => g
            .into_iter()
            .filter(|g| backend == "auto" || g.backend.name() == backend)
            .collect(),
        Err(e) => {
            tracing::error!(error = %e, "jobs.gpus: no GPU used");
            Vec::new()
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "antenne".into())
}

/// The workflows of this configuration, checked against the profiles.
pub fn load_workflows(
    cfg: &ApplianceConfig,
) -> Result<Vec<crate::jobs::workflow::Workflow>, AppError> {
    let dir = cfg
        .transcode
        .profiles_dir
        .is_dir()
        .then_some(cfg.transcode.profiles_dir.as_path());
    let names: Vec<String> = crate::profile::load_all(crate::profile::profiles_dir(dir).as_deref())
        .map_err(|e| AppError::Machine {
            key: "transcode.profiles_dir",
            why: e.to_string(),
        })?
        .into_iter()
        .map(|p| p.name)
        .collect();
    let wdir = cfg
        .jobs
        .workflows_dir
        .is_dir()
        .then_some(cfg.jobs.workflows_dir.as_path());
    let workflows =
        crate::jobs::workflow::load_all(wdir, &names).map_err(|e| AppError::Machine {
            key: "jobs.workflows_dir",
            why: e.to_string(),
        })?;
    let undeclared =
        crate::jobs::workflow::undeclared_destinations(&workflows, &sendable_destinations(cfg));
    if !undeclared.is_empty() {
        return Err(AppError::Machine {
            key: "jobs.workflows_dir",
            why: undeclared.join("; "),
        });
    }
    Ok(workflows)
}

/// The destinations a workflow step may deliver to (all but pull ones).
pub fn sendable_destinations(cfg: &ApplianceConfig) -> Vec<String> {
    cfg.delivery
        .destinations
        .iter()
        .filter(|d| d.kind != "pull")
        .map(|d| d.name.clone())
        .collect()
}

fn notify(state: &[sd_notify::NotifyState]) {
    // Outside systemd there is no socket: not an error.
    let _ = sd_notify::notify(false, state);
}

/// A closed recording's piece handed to a workflow's steps, as an asset already catalogued.
struct WorkflowHook(Arc<crate::jobs::supervisor::Supervisor>);

impl crate::hub::record::RecordingHook for WorkflowHook {
    fn has_steps(&self, workflow: &str) -> bool {
        self.0
            .workflow(workflow)
            .is_some_and(|w| !w.steps.is_empty())
    }

    fn start(
        &self,
        workflow: &str,
        asset_id: i64,
        run: &str,
    ) -> futures_util::future::BoxFuture<'static, Result<(), String>> {
        let (sup, workflow, run) = (self.0.clone(), workflow.to_string(), run.to_string());
        Box::pin(async move {
            let w = sup
                .workflow(&workflow)
                .ok_or_else(|| format!("no workflow {workflow:?}"))?;
            sup.start_on_asset(&w, asset_id, &run)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// Starts each `[[live.recordings]]` at its schedule's times, for its duration.
fn schedule_recordings(
    live: &Arc<crate::hub::registry::LiveService>,
    recordings: &[crate::config::appliance::LiveRecording],
    system: &crate::catalog::Principal,
    stop: &tokio_util::sync::CancellationToken,
) {
    for r in recordings.iter().filter(|r| r.enabled != Some(false)) {
        let (Some(source), Some(text)) = (r.source.clone(), r.schedule.as_deref()) else {
            continue;
        };
        let sched = match crate::jobs::trigger::Schedule::parse(text) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(source = %source, error = %e, "live.recordings: schedule not understood");
                continue;
            }
        };
        let (live, def, system, stop) = (live.clone(), r.clone(), system.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let now_ms = live.catalog().now_ms();
                let Some((at, _)) = sched.next_after(now_ms.div_euclid(1000)) else {
                    return;
                };
                let wait = Duration::from_millis((at * 1000 - now_ms).max(0) as u64);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => return,
                }
                let found = live
                    .list_sources()
                    .await
                    .map(|all| all.into_iter().find(|s| s.name == source));
                let started = match found {
                    Ok(Some(s)) => live.start_recording(s.id, &s.name, &def, &system).await,
                    Ok(None) => {
                        tracing::error!(source = %source, "live.recordings: no such source");
                        continue;
                    }
                    Err(e) => Err(e),
                };
                match started {
                    Ok(st) => {
                        tracing::info!(source = %source, session = %st.session, "scheduled recording started")
                    }
                    Err(e) => {
                        tracing::error!(source = %source, error = %e, "scheduled recording not started")
                    }
                }
                metrics::counter!("antenne_live_recording_firings_total", "source" => source.clone())
                    .increment(1);
            }
        });
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// Runs the service until SIGTERM or SIGINT.
/// The playout channels' plans, as retention asks them.
struct Scheduled(Arc<crate::playout::service::PlayoutService>);

/// Storage events that need someone, to the configured webhooks: a `notify` job for each
/// (retried with backoff), as review notifications go.
struct StorageWebhooks {
    queue: crate::jobs::JobQueue,
    urls: Vec<String>,
}

impl crate::storage::Notify for StorageWebhooks {
    fn notify(&self, event: serde_json::Value) {
        for url in &self.urls {
            let queue = self.queue.clone();
            let job = crate::jobs::NewJob {
                kind: "notify".into(),
                priority: 0,
                max_attempts: 5,
                asset_id: event["asset_id"].as_i64(),
                workflow: String::new(),
                idempotency_key: None,
                params: serde_json::json!({"url": url, "event": event}),
                gpu_only: false,
            };
            tokio::spawn(async move {
                if let Err(e) = queue.enqueue(&job).await {
                    tracing::warn!(error = %e, "storage: cannot queue a webhook");
                }
            });
        }
    }
}

impl crate::storage::ScheduleCheck for Scheduled {
    fn is_scheduled(&self, asset_id: i64, now_ms: i64) -> bool {
        self.0.schedules_asset(asset_id, now_ms)
    }
}

pub async fn serve(cfg: ApplianceConfig) -> Result<(), AppError> {
    let cfg = Arc::new(cfg);
    let dirs = prepare_dirs(&cfg)?;
    let swept = crate::ingest::sweep_incoming(&dirs.media);
    if swept > 0 {
        tracing::warn!(swept, "removed uploads a previous run left unfinished");
    }
    let catalog = open_catalog(&cfg, &dirs).await?;
    bootstrap_admin(&catalog).await?;
    let workflows = load_workflows(&cfg)?;
    let system = system_principal(&catalog).await?;
    let st = Arc::new(AppState::new(
        catalog.clone(),
        cfg.clone(),
        dirs.media.clone(),
        metrics_handle(),
    ));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let settings = crate::jobs::supervisor::Settings {
        appliance: if cfg.jobs.appliance.is_empty() {
            hostname()
        } else {
            cfg.jobs.appliance.clone()
        },
        slots: if cfg.jobs.workers == 0 {
            (cores / 2).max(1)
        } else {
            cfg.jobs.workers as usize
        },
        // Hashing, copying and webhooks: two at once beside the encodes, whatever the cores.
        light_slots: 2,
        hang: Duration::from_secs(u64::from(cfg.jobs.hang_timeout_s)),
        memory_limit: cfg.jobs.memory_limit.0,
        lease_ms: i64::from(cfg.jobs.lease_s) * 1000,
        data_dir: dirs.root.clone(),
        media_dir: dirs.media.clone(),
        profiles_dir: cfg
            .transcode
            .profiles_dir
            .is_dir()
            .then(|| cfg.transcode.profiles_dir.clone()),
        backend: cfg.transcode.backend.clone(),
        worker_exe: std::env::current_exe().map_err(|e| AppError::Machine {
            key: "jobs",
            why: format!("cannot find this program to run workers: {e}"),
        })?,
        gpus: scheduler_gpus(&cfg),
        gpu_max_failures: cfg.jobs.gpu_max_failures,
        job_timeout: (cfg.jobs.job_timeout_s > 0)
            .then(|| Duration::from_secs(u64::from(cfg.jobs.job_timeout_s))),
    };
    for g in &settings.gpus {
        tracing::info!(gpu = %g.id, sessions = g.sessions, codecs = ?g.codecs, "GPU in the job rotation");
    }
    let supervisor = crate::jobs::supervisor::Supervisor::new(
        catalog.clone(),
        workflows,
        settings,
        system.clone(),
    );
    supervisor.set_destinations(cfg.delivery.destinations.clone());
    let _ = st.jobs.set(supervisor.clone());
    tokio::spawn(supervisor.clone().run(st.stopping.clone()));
    // Live sources and outputs: the declared ones, and those made over the API that ran when
    // the service stopped. Files looped from the API come from the ingest roots or the media.
    let mut roots = cfg.ingest.roots.clone();
    roots.push(dirs.media.clone());
    let mut transports = crate::hub::registry::Transports::builtin();
    transports.set_profile_hook(Arc::new(live_engine::LiveEngine::new(
        crate::profile::profiles_dir(
            cfg.transcode
                .profiles_dir
                .is_dir()
                .then_some(cfg.transcode.profiles_dir.as_path()),
        ),
        &cfg.transcode.backend,
        dirs.root.join("live"),
    )));
    transports.add_output(
        "hls",
        Arc::new(|_: &crate::config::appliance::LiveOutput| {
            Ok(Arc::new(live_engine::HlsFolder::default())
                as Arc<dyn crate::hub::registry::OutputLink>)
        }),
    );
    let live = crate::hub::registry::LiveService::open(
        catalog.clone(),
        &cfg.live,
        transports,
        crate::hub::registry::Confinement { roots },
        crate::hub::registry::Ownership {
            appliance: if cfg.jobs.appliance.is_empty() {
                hostname()
            } else {
                cfg.jobs.appliance.clone()
            },
            lease: Duration::from_secs(u64::from(cfg.live.lease_s)),
        },
        &system,
    )
    .await?;
    let _ = st.live.set(live.clone());
    tokio::spawn(live.clone().watch(st.stopping.clone()));
    tokio::spawn(live.clone().hold_leases(st.stopping.clone()));
    // Recordings go to the media store; a closed piece goes through its workflow's steps.
    live.set_record_setup(crate::hub::record::RecordSetup {
        media: dirs.media.clone(),
        hook: Some(Arc::new(WorkflowHook(supervisor.clone()))),
        runtime: tokio::runtime::Handle::current(),
    });
    match live.close_orphan_recordings().await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(pieces = n, "recordings left growing by the last run closed"),
        Err(e) => {
            tracing::error!(error = %e, "recordings left growing by the last run: not closed")
        }
    }
    schedule_recordings(&live, &cfg.live.recordings, &system, &st.stopping);
    // Playout channels: the declared ones and those made over the API, aired by the channel
    // engine on the wall clock.
    let playout = crate::playout::service::PlayoutService::open(
        catalog.clone(),
        &cfg.playout,
        Arc::new(playout_engine::PlayoutEngine::new(
            Some(live.clone()),
            Some(playout_engine::Records {
                catalog: catalog.clone(),
                media: dirs.media.clone(),
                who: system.clone(),
                rt: tokio::runtime::Handle::current(),
            }),
        )),
    )
    .await?;
    let _ = st.playout.set(playout.clone());
    tokio::spawn(playout.clone().run_asrun(st.stopping.clone()));
    tokio::spawn(playout.clone().run_checks(st.stopping.clone()));
    let storages =
        crate::storage::Storages::new(catalog.clone(), &cfg.storages, &dirs.media, &|k| {
            std::env::var(k).ok()
        })
        .map_err(|e| AppError::Machine {
            key: "storages",
            why: e.to_string(),
        })?;
    // Retention never purges what a channel is to air.
    let mut storages = storages.with_schedule(Arc::new(Scheduled(playout.clone())));
    if !cfg.storages.webhooks.is_empty() {
        storages = storages.with_notify(Arc::new(StorageWebhooks {
            queue: st.queue.clone(),
            urls: cfg.storages.webhooks.clone(),
        }));
    }
    let storages = Arc::new(storages);
    let _ = st.storages.set(storages.clone());
    supervisor.set_storages(storages.clone());
    tokio::spawn(storages.keep(st.stopping.clone()));
    tokio::spawn(api::sweep_uploads(st.clone()));
    tokio::spawn(catalog.clone().keep_search_merged());
    let app = api::router(st.clone());
    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .map_err(|e| AppError::Listen {
            addr: cfg.server.listen.clone(),
            source: e,
        })?;
    let addr = listener.local_addr().map_err(AppError::Serve)?;
    api::set_ready(&st, true);
    tracing::info!(%addr, data_dir = %dirs.root.display(), backend = ?catalog.backend(), "antenne serving");
    println!("antenne: listening on http://{addr}");
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&format!("serving on {addr}")),
    ]);
    // The watchdog is fed only while the catalog answers: a wedged database gets us restarted.
    if let Some(usec) = watchdog_usec() {
        let c = catalog.clone();
        tokio::spawn(async move {
            let period = Duration::from_micros(usec / 2);
            loop {
                tokio::time::sleep(period).await;
                if tokio::time::timeout(period, c.ping())
                    .await
                    .is_ok_and(|r| r.is_ok())
                {
                    notify(&[sd_notify::NotifyState::Watchdog]);
                }
            }
        });
    }
    let grace = Duration::from_secs(u64::from(cfg.server.shutdown_grace_s));
    let st2 = st.clone();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("stopping: finishing requests in flight");
        notify(&[sd_notify::NotifyState::Stopping]);
        api::set_ready(&st2, false);
        st2.stopping.cancel();
    });
    let stopping = st.stopping.clone();
    tokio::select! {
        r = server => r.map_err(AppError::Serve)?,
        _ = async {
            stopping.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("stopping: requests still running after the grace period; closing");
        }
    }
    live.stop_recordings().await;
    live.shutdown();
    catalog.close().await;
    println!("antenne: stopped");
    Ok(())
}
