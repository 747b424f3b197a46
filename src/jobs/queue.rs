//! The job queue in the catalog database. A job is claimed with a lease that progress extends;
//! on PostgreSQL several appliances claim from one queue (`FOR UPDATE SKIP LOCKED`), on SQLite
//! the write lock serialises claims.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::catalog::assets::{AssetInput, NewFile};
use crate::catalog::{Catalog, CatalogError, Hosted, Principal, Result, Write};

pub const KINDS: &[&str] = &[
    "ingest",
    "qc",
    "transcode",
    "deliver",
    "notify",
    "verify",
    "purge",
    "noop",
];
/// Jobs that decode no picture (hashing, copying, a webhook, catalog work): they have their
/// own lane of worker slots, so that they never wait behind a long transcode.
pub const LIGHT_KINDS: &[&str] = &["ingest", "verify", "deliver", "notify", "purge"];

/// Which jobs a claim may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Any,
    /// Only [`LIGHT_KINDS`].
    Light,
    /// Anything but [`LIGHT_KINDS`].
    Heavy,
}

pub const STATES: &[&str] = &["queued", "running", "succeeded", "failed", "cancelled"];

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`.
    pub state: String,
    pub priority: i64,
    pub attempts: i64,
    pub max_attempts: i64,
    /// Not before (RFC 3339): the backoff after a failed attempt.
    pub run_after: String,
    /// The worker process that runs or ran it (`appliance/pid`).
    pub worker: String,
    pub asset_id: Option<i64>,
    pub workflow: String,
    #[schema(value_type = Object)]
    pub params: Value,
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub error: String,
    pub progress: f64,
    pub fps: f64,
    pub speed: f64,
    pub eta_s: f64,
    pub created: String,
    pub updated: String,
    pub started: Option<String>,
    pub finished: Option<String>,
    /// Where its last attempt ran: `cpu`, a GPU (`nvenc:0`), or empty before any.
    pub placed: String,
}

#[derive(Debug, Clone, Default)]
pub struct NewJob {
    pub kind: String,
    pub priority: i64,
    pub max_attempts: i64,
    pub asset_id: Option<i64>,
    pub workflow: String,
    /// At most one job per key, ever (a watch-folder file version, a workflow step).
    pub idempotency_key: Option<String>,
    pub params: Value,
    /// Every encode it makes can run on a GPU: it may be claimed while the CPU slots are busy.
    pub gpu_only: bool,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JobFilter {
    pub state: Option<String>,
    pub kind: Option<String>,
    pub asset_id: Option<i64>,
    pub workflow: Option<String>,
    pub limit: Option<i64>,
    /// The `next` of the previous page (newest first).
    pub after: Option<i64>,
}

fn job_of(r: &AnyRow) -> Result<Job> {
    let params: String = r.try_get("params")?;
    let result: String = r.try_get("result")?;
    let t = |c: &str| -> Result<Option<String>> {
        Ok(r.try_get::<Option<i64>, _>(c)?.map(crate::catalog::rfc3339))
    };
    Ok(Job {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        state: r.try_get("state")?,
        priority: r.try_get("priority")?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        run_after: crate::catalog::rfc3339(r.try_get("run_after_ms")?),
        worker: r.try_get("worker")?,
        asset_id: r.try_get("asset_id")?,
        workflow: r.try_get("workflow")?,
        params: serde_json::from_str(&params).unwrap_or(Value::Null),
        result: serde_json::from_str(&result).ok(),
        error: r.try_get("error")?,
        progress: r.try_get("progress")?,
        fps: r.try_get("fps")?,
        speed: r.try_get("speed")?,
        eta_s: r.try_get("eta_s")?,
        created: crate::catalog::rfc3339(r.try_get("created_ms")?),
        updated: crate::catalog::rfc3339(r.try_get("updated_ms")?),
        started: t("started_ms")?,
        finished: t("finished_ms")?,
        placed: r.try_get("placed")?,
    })
}

/// What follows a step's success, written in the same transaction as that success, so that a
/// crash between the two cannot leave an asset with nothing queued to move it on.
#[derive(Debug, Clone, Default)]
pub enum Then {
    /// The job is not a workflow step, or its workflow goes no further (a failed QC).
    #[default]
    Nothing,
    /// The workflow's next step.
    Enqueue(NewJob),
    /// The workflow ended: the asset becomes `to` if its status is still one of `from`.
    Status { to: String, from: Vec<String> },
}

/// One rendition's verification against its profile, as the API gives it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RenditionCheck {
    /// The registered file; `None` for an output that failed and was not registered.
    pub file_id: Option<i64>,
    /// The transcode job that made it, for an output that failed.
    pub job_id: Option<i64>,
    pub profile: String,
    pub output: String,
    pub path: String,
    pub pass: bool,
    /// The report: every check with what was expected and what was measured.
    #[schema(value_type = Object)]
    pub report: Value,
}

/// The verification of an asset's renditions.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Verification {
    pub asset_id: i64,
    /// Whether every rendition met its profile.
    pub pass: bool,
    pub renditions: Vec<RenditionCheck>,
}

/// A job's attempt that failed, as the supervisor records it (all of it in one transaction).
#[derive(Debug, Clone, Default)]
pub struct Failing<'a> {
    pub error: &'a str,
    /// Whether another attempt could succeed.
    pub retry: bool,
    /// Queued again after this instead of the backoff.
    pub delay_ms: Option<i64>,
    /// What the attempt made, kept on the job record (e.g. the reports of failed renditions).
    pub result: Option<&'a Value>,
    /// The job's parameters from now on (e.g. the outputs already registered, that a retry
    /// does not make again).
    pub params: Option<&'a Value>,
    /// Files the attempt made that passed, registered on the job's asset whatever the outcome.
    pub files: &'a [NewFile],
    /// The asset's status when the job fails for good.
    pub status_if_failed: Option<&'a str>,
}

/// What recovery did with the jobs whose worker was lost.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// Queued again (attempts left).
    pub requeued: u64,
    /// Failed for good (no attempt left): their sources and assets still need settling.
    pub failed: Vec<Job>,
}

/// Test hook: `ANTENNE_TEST_FAULT=<point>` ends the process at that point, as a crash would.
/// Honoured only by debug builds (those `cargo test` makes); a release build ignores it.
/// Points: `step_success` (inside the transaction that records a step's success, before the
/// next step is queued in it).
pub fn fault_point(point: &str) {
    if cfg!(debug_assertions)
        && std::env::var("ANTENNE_TEST_FAULT").is_ok_and(|v| v.split(',').any(|p| p == point))
    {
        eprintln!("antenne: test fault at {point}: the process ends here");
        std::process::exit(137);
    }
}

/// Seconds before attempt `n + 1` after `n` failed: 5, 10, 20 … at most 10 minutes.
pub fn backoff_ms(attempts: i64) -> i64 {
    let exp = attempts.clamp(1, 8) - 1;
    (5_000i64 << exp).min(600_000)
}

/// The durable job queue. Its tables live in the catalog's database, reached through the
/// handle the catalog gives for them ([`Hosted`]): its own statements on `jobs` and
/// `job_logs`, the catalog's methods for what a job leaves on an asset and for the change
/// feed. The catalog knows nothing of jobs.
#[derive(Debug, Clone)]
pub struct JobQueue {
    cat: Catalog,
    db: Hosted,
}

impl JobQueue {
    pub fn new(catalog: Catalog) -> Self {
        JobQueue {
            db: catalog.hosted(),
            cat: catalog,
        }
    }

    /// The catalog the queue lives in.
    pub fn catalog(&self) -> &Catalog {
        &self.cat
    }

    /// Queues a job; `None` when its idempotency key was used before.
    pub async fn enqueue(&self, j: &NewJob) -> Result<Option<Job>> {
        if !KINDS.contains(&j.kind.as_str()) {
            return Err(CatalogError::invalid(
                "kind",
                format!("{:?} is not one of {}", j.kind, KINDS.join(", ")),
            ));
        }
        let mut w = self.db.write().await?;
        let id = self.enqueue_in(&mut w, j).await?;
        w.commit().await?;
        match id {
            Some(id) => Ok(Some(self.job(id).await?)),
            None => Ok(None),
        }
    }

    /// Queues a job inside the caller's transaction; `None` when its idempotency key was used.
    async fn enqueue_in(&self, w: &mut Write, j: &NewJob) -> Result<Option<i64>> {
        if !KINDS.contains(&j.kind.as_str()) {
            return Err(CatalogError::invalid(
                "kind",
                format!("{:?} is not one of {}", j.kind, KINDS.join(", ")),
            ));
        }
        let now = self.db.now_ms();
        let r = sqlx::query(
            "INSERT INTO jobs (kind, state, priority, max_attempts, run_after_ms, asset_id, workflow, \
             idempotency_key, params, created_ms, updated_ms, gpu_only) VALUES ($1, 'queued', $2, $3, $4, $5, \
             $6, $7, $8, $4, $4, $9) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        )
        .bind(&j.kind)
        .bind(j.priority)
        .bind(if j.max_attempts > 0 { j.max_attempts } else { 3 })
        .bind(now)
        .bind(j.asset_id)
        .bind(&j.workflow)
        .bind(j.idempotency_key.as_deref())
        .bind(j.params.to_string())
        .bind(i64::from(j.gpu_only))
        .fetch_optional(w.conn())
        .await?;
        let Some(r) = r else { return Ok(None) };
        let id: i64 = r.try_get(0)?;
        w.record("job", id, "created", j.asset_id).await?;
        Ok(Some(id))
    }

    /// What follows a step's success, inside the transaction that records it.
    async fn then_in(&self, w: &mut Write, asset_id: Option<i64>, then: &Then) -> Result<()> {
        if !matches!(then, Then::Nothing) {
            fault_point("step_success");
        }
        self.start_in(w, asset_id, then).await
    }

    /// A workflow's next step queued, or its end recorded on the asset.
    async fn start_in(&self, w: &mut Write, asset_id: Option<i64>, then: &Then) -> Result<()> {
        match (then, asset_id) {
            (Then::Enqueue(j), _) => {
                self.enqueue_in(w, j).await?;
            }
            (Then::Status { to, from }, Some(a)) => {
                w.set_status(a, to, from).await?;
            }
            (Then::Nothing, _) | (Then::Status { .. }, None) => {}
        }
        Ok(())
    }

    /// The verification of an asset's renditions (for a caller who may read it): each
    /// registered rendition's report, then each output of its transcode jobs that failed its
    /// profile and was not registered since (newest job first).
    pub async fn verification(&self, who: &Principal, asset_id: i64) -> Result<Verification> {
        let files = self.cat.files(who, asset_id).await?;
        let mut seen: std::collections::HashSet<String> =
            files.iter().map(|f| f.path.clone()).collect();
        let mut renditions: Vec<RenditionCheck> = files
            .iter()
            .filter_map(|f| {
                let report = f.verification.clone()?;
                Some(RenditionCheck {
                    file_id: Some(f.id),
                    job_id: None,
                    profile: f.profile.clone(),
                    output: report["output"].as_str().unwrap_or_default().to_string(),
                    path: f.path.clone(),
                    pass: report["pass"] == true,
                    report,
                })
            })
            .collect();
        let jobs = self
            .jobs(&JobFilter {
                kind: Some("transcode".into()),
                asset_id: Some(asset_id),
                limit: Some(100),
                ..Default::default()
            })
            .await?;
        for j in &jobs {
            let failed = j.result.as_ref().and_then(|r| r["failed"].as_array());
            for o in failed.into_iter().flatten() {
                let path = o["path"].as_str().unwrap_or_default().to_string();
                if !seen.insert(path.clone()) {
                    continue;
                }
                renditions.push(RenditionCheck {
                    file_id: None,
                    job_id: Some(j.id),
                    profile: o["profile"].as_str().unwrap_or_default().to_string(),
                    output: o["output"].as_str().unwrap_or_default().to_string(),
                    path,
                    pass: false,
                    report: o["report"].clone(),
                });
            }
        }
        Ok(Verification {
            asset_id,
            pass: renditions.iter().all(|r| r.pass),
            renditions,
        })
    }

    /// Sets an asset's status when it is one of `from` (a job that failed for good).
    pub async fn set_status_if(&self, asset_id: i64, to: &str, from: &[&str]) -> Result<()> {
        let from: Vec<String> = from.iter().map(|s| s.to_string()).collect();
        let mut w = self.db.write().await?;
        w.set_status(asset_id, to, &from).await?;
        w.commit().await
    }

    /// What a succeeded ingest job made: the asset, its source file, the job's new state and
    /// the workflow's next step (`then`, given the new asset's id, house ID and file id), in
    /// one transaction: a crash leaves all of it or none, and the job is not run twice.
    #[allow(clippy::too_many_arguments)]
    pub async fn ingest_for_job(
        &self,
        who: &Principal,
        i: &AssetInput,
        f: &NewFile,
        job_id: i64,
        worker: &str,
        result: &Value,
        then: impl FnOnce(i64, &str, i64) -> Then,
    ) -> Result<(i64, i64)> {
        let mut w = self.db.write().await?;
        let (id, house_id, fid) = w.new_asset(who, i, f).await?;
        let mut result = result.clone();
        result["asset_id"] = Value::from(id);
        result["file_id"] = Value::from(fid);
        self.succeed_in(&mut w, job_id, worker, &result, Some(id))
            .await?;
        let then = then(id, &house_id, fid);
        self.then_in(&mut w, Some(id), &then).await?;
        w.commit().await?;
        Ok((id, fid))
    }

    /// What a succeeded job made: files on its asset and/or the asset's new status, the job's
    /// new state, and what follows it in its workflow, in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn complete_for_job(
        &self,
        asset_id: Option<i64>,
        files: &[NewFile],
        status: Option<&str>,
        job_id: i64,
        worker: &str,
        result: &Value,
        then: &Then,
    ) -> Result<()> {
        let mut w = self.db.write().await?;
        if let Some(a) = asset_id {
            for f in files {
                w.add_file(a, f).await?;
            }
            if let Some(st) = status {
                w.set_status(a, st, &[]).await?;
            }
        }
        self.succeed_in(&mut w, job_id, worker, result, asset_id)
            .await?;
        self.then_in(&mut w, asset_id, then).await?;
        w.commit().await
    }

    /// A workflow's step queued (or its end recorded) on its own, outside a job's success (a
    /// schedule, or the API starting a run).
    pub async fn start_step(&self, asset_id: Option<i64>, then: &Then) -> Result<()> {
        let mut w = self.db.write().await?;
        self.start_in(&mut w, asset_id, then).await?;
        w.commit().await
    }

    pub async fn job(&self, id: i64) -> Result<Job> {
        let r = sqlx::query("SELECT * FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("job {id}")))?;
        job_of(&r)
    }

    pub async fn jobs(&self, f: &JobFilter) -> Result<Vec<Job>> {
        let limit = f.limit.unwrap_or(100).clamp(1, 500);
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE ($1 = '' OR state = $1) AND ($2 = '' OR kind = $2) \
             AND ($3 = 0 OR asset_id = $3) AND ($4 = '' OR workflow = $4) AND ($5 = 0 OR id < $5) \
             ORDER BY id DESC LIMIT $6",
        )
        .bind(f.state.clone().unwrap_or_default())
        .bind(f.kind.clone().unwrap_or_default())
        .bind(f.asset_id.unwrap_or(0))
        .bind(f.workflow.clone().unwrap_or_default())
        .bind(f.after.unwrap_or(0))
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(job_of).collect()
    }

    /// Takes the most urgent ready job of `lane` for `worker` with a lease of `lease_ms`; with
    /// `gpu_only`, only a job whose encodes can all run on a GPU.
    pub async fn claim(
        &self,
        worker: &str,
        lease_ms: i64,
        gpu_only: bool,
        lane: Lane,
    ) -> Result<Option<Job>> {
        let now = self.db.now_ms();
        let light = LIGHT_KINDS
            .iter()
            .map(|k| format!("'{k}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let only = match (gpu_only, lane) {
            (true, _) => "AND gpu_only = 1 ".to_string(),
            (false, Lane::Any) => String::new(),
            (false, Lane::Light) => format!("AND kind IN ({light}) "),
            (false, Lane::Heavy) => format!("AND kind NOT IN ({light}) "),
        };
        let lock = self.db.skip_locked();
        let pick = format!(
            "SELECT id FROM jobs WHERE state = 'queued' AND run_after_ms <= $1 {only}\
             ORDER BY priority DESC, id LIMIT 1{lock}"
        );
        let sql = format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = $2, \
             lease_until_ms = $3, started_ms = $1, updated_ms = $1, progress = 0, error = '', \
             placed = 'cpu' \
             WHERE id = ({pick}) RETURNING id, asset_id"
        );
        let mut w = self.db.write().await?;
        let r = sqlx::query(AssertSqlSafe(sql))
            .bind(now)
            .bind(worker)
            .bind(now + lease_ms)
            .fetch_optional(w.conn())
            .await?;
        let Some(r) = r else {
            w.commit().await?;
            return Ok(None);
        };
        let id: i64 = r.try_get(0)?;
        w.record("job", id, "updated", r.try_get(1)?).await?;
        w.commit().await?;
        Ok(Some(self.job(id).await?))
    }

    /// Progress of a running job; extends its lease. `false` when the job is no longer
    /// running here (cancelled, or its lease was taken over): the worker should stop.
    pub async fn progress(
        &self,
        id: i64,
        worker: &str,
        (percent, fps, speed, eta_s): (f64, f64, f64, f64),
        lease_ms: i64,
        announce: bool,
    ) -> Result<bool> {
        let now = self.db.now_ms();
        let mut w = self.db.write().await?;
        let n = sqlx::query(
            "UPDATE jobs SET progress = $3, fps = $4, speed = $5, eta_s = $6, lease_until_ms = $7, \
             updated_ms = $8 WHERE id = $1 AND worker = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(worker)
        .bind(percent.clamp(0.0, 100.0))
        .bind(fps)
        .bind(speed)
        .bind(eta_s)
        .bind(now + lease_ms)
        .bind(now)
        .execute(w.conn())
        .await?
        .rows_affected();
        if n > 0 && announce {
            w.record("job", id, "progress", None).await?;
        }
        w.commit().await?;
        Ok(n > 0)
    }

    /// The job queued under an idempotency key, if any.
    pub async fn job_by_key(&self, key: &str) -> Result<Option<i64>> {
        let r = sqlx::query("SELECT id FROM jobs WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(match r {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// Whether a workflow has a job queued or running for an asset (a scheduled run does not
    /// pile up behind a slow one).
    pub async fn job_active(&self, asset_id: i64, workflow: &str) -> Result<bool> {
        let r = sqlx::query(
            "SELECT id FROM jobs WHERE asset_id = $1 AND workflow = $2 \
             AND state IN ('queued', 'running') LIMIT 1",
        )
        .bind(asset_id)
        .bind(workflow)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(r.is_some())
    }

    /// Gives back a job claimed that this appliance cannot place after all: queued as before,
    /// the attempt not counted.
    pub async fn release(&self, id: i64, worker: &str) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = attempts - 1, worker = '', \
             lease_until_ms = NULL, started_ms = NULL WHERE id = $1 AND worker = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(worker)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Records that a claimed job runs on a GPU (a claim records `cpu`).
    pub async fn set_placed(&self, id: i64, worker: &str, placed: &str) -> Result<()> {
        sqlx::query("UPDATE jobs SET placed = $3 WHERE id = $1 AND worker = $2")
            .bind(id)
            .bind(worker)
            .bind(placed)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Sets one parameter of a job (e.g. where its source is being moved, before the move, so
    /// that a rerun after a crash finds it).
    pub async fn set_job_param(&self, id: i64, key: &str, value: Value) -> Result<()> {
        let j = self.job(id).await?;
        let mut params = j.params;
        params[key] = value;
        sqlx::query("UPDATE jobs SET params = $2 WHERE id = $1")
            .bind(id)
            .bind(params.to_string())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    pub async fn job_log(&self, id: i64, level: &str, message: &str) -> Result<()> {
        let message: String = message.chars().take(4000).collect();
        sqlx::query("INSERT INTO job_logs (job_id, ts_ms, level, message) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(self.db.now_ms())
            .bind(level)
            .bind(message.replace('\0', ""))
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    pub async fn job_logs(
        &self,
        id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, String, String)>> {
        let rows = sqlx::query(
            "SELECT id, ts_ms, level, message FROM job_logs WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(id)
        .bind(after)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    crate::catalog::rfc3339(r.try_get(1)?),
                    r.try_get(2)?,
                    r.try_get(3)?,
                ))
            })
            .collect()
    }

    /// Marks a running job succeeded inside the caller's transaction (with what it produced).
    /// The job no longer running here is a conflict: its outcome is not this worker's to say.
    async fn succeed_in(
        &self,
        w: &mut Write,
        id: i64,
        worker: &str,
        result: &Value,
        asset_id: Option<i64>,
    ) -> Result<()> {
        let now = self.db.now_ms();
        let n = sqlx::query(
            "UPDATE jobs SET state = 'succeeded', result = $3, progress = 100, finished_ms = $4, \
             updated_ms = $4, lease_until_ms = NULL, asset_id = COALESCE($5, asset_id) \
             WHERE id = $1 AND worker = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(worker)
        .bind(result.to_string())
        .bind(now)
        .bind(asset_id)
        .execute(w.conn())
        .await?
        .rows_affected();
        if n == 0 {
            return Err(CatalogError::Conflict(format!(
                "job {id} is no longer running here"
            )));
        }
        w.record("job", id, "updated", asset_id).await
    }

    /// A failed attempt: queued again after a backoff while attempts remain and `retry`, else
    /// failed for good.
    pub async fn fail(&self, id: i64, worker: &str, error: &str, retry: bool) -> Result<Job> {
        self.fail_after(id, worker, error, retry, None).await
    }

    /// [`JobQueue::fail`], queued again after `delay_ms` instead of the backoff (a job whose
    /// device failed goes to another one at once).
    pub async fn fail_after(
        &self,
        id: i64,
        worker: &str,
        error: &str,
        retry: bool,
        delay_ms: Option<i64>,
    ) -> Result<Job> {
        self.fail_step(
            id,
            worker,
            &Failing {
                error,
                retry,
                delay_ms,
                ..Default::default()
            },
        )
        .await
    }

    /// A failed attempt with what it leaves behind (files that passed, a result, new
    /// parameters, the asset's status when it fails for good), in one transaction.
    pub async fn fail_step(&self, id: i64, worker: &str, f: &Failing<'_>) -> Result<Job> {
        let now = self.db.now_ms();
        let mut w = self.db.write().await?;
        let r = sqlx::query("SELECT attempts, max_attempts, asset_id FROM jobs WHERE id = $1 AND worker = $2 AND state = 'running'")
            .bind(id)
            .bind(worker)
            .fetch_optional(w.conn())
            .await?;
        let Some(r) = r else {
            w.commit().await?;
            return self.job(id).await;
        };
        let attempts: i64 = r.try_get(0)?;
        let max: i64 = r.try_get(1)?;
        let asset_id: Option<i64> = r.try_get(2)?;
        let again = f.retry && attempts < max;
        if let Some(a) = asset_id {
            for file in f.files {
                w.add_file(a, file).await?;
            }
            if let (false, Some(st)) = (again, f.status_if_failed) {
                w.set_status(a, st, &[]).await?;
            }
        }
        sqlx::query(
            "UPDATE jobs SET state = $3, error = $4, run_after_ms = $5, updated_ms = $6, \
             finished_ms = $7, lease_until_ms = NULL, result = COALESCE($8, result), \
             params = COALESCE($9, params) WHERE id = $1 AND worker = $2",
        )
        .bind(id)
        .bind(worker)
        .bind(if again { "queued" } else { "failed" })
        .bind(
            f.error
                .chars()
                .take(4000)
                .collect::<String>()
                .replace('\0', ""),
        )
        .bind(
            now + if again {
                f.delay_ms.unwrap_or_else(|| backoff_ms(attempts))
            } else {
                0
            },
        )
        .bind(now)
        .bind((!again).then_some(now))
        .bind(f.result.map(Value::to_string))
        .bind(f.params.map(Value::to_string))
        .execute(w.conn())
        .await?;
        w.record("job", id, "updated", asset_id).await?;
        w.commit().await?;
        self.job(id).await
    }

    /// Lets the key a job was queued under be used again (a watch-folder file that failed for
    /// good and was moved out: the same version put back is taken anew).
    pub async fn release_key(&self, id: i64) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET idempotency_key = idempotency_key || '#failed-job-' || CAST(id AS TEXT) \
             WHERE id = $1 AND idempotency_key IS NOT NULL AND state = 'failed' \
             AND idempotency_key NOT LIKE '%#failed-job-%'",
        )
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Cancels a queued or running job (a running one's worker is stopped by its supervisor).
    pub async fn cancel_job(&self, id: i64) -> Result<Job> {
        let now = self.db.now_ms();
        let mut w = self.db.write().await?;
        let n = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', updated_ms = $2, finished_ms = $2, lease_until_ms = NULL \
             WHERE id = $1 AND state IN ('queued', 'running')",
        )
        .bind(id)
        .bind(now)
        .execute(w.conn())
        .await?
        .rows_affected();
        if n == 0 {
            let j = self.job(id).await?;
            return Err(CatalogError::Conflict(format!(
                "job {id} is {}: only a queued or running job is cancelled",
                j.state
            )));
        }
        w.record("job", id, "updated", None).await?;
        w.commit().await?;
        self.job(id).await
    }

    /// Queues a failed or cancelled job again, with one more attempt allowed.
    pub async fn retry_job(&self, id: i64) -> Result<Job> {
        let now = self.db.now_ms();
        let mut w = self.db.write().await?;
        let n = sqlx::query(
            "UPDATE jobs SET state = 'queued', run_after_ms = $2, updated_ms = $2, finished_ms = NULL, \
             max_attempts = attempts + 1, error = '' WHERE id = $1 AND state IN ('failed', 'cancelled')",
        )
        .bind(id)
        .bind(now)
        .execute(w.conn())
        .await?
        .rows_affected();
        if n == 0 {
            let j = self.job(id).await?;
            return Err(CatalogError::Conflict(format!(
                "job {id} is {}: only a failed or cancelled job is retried",
                j.state
            )));
        }
        w.record("job", id, "updated", None).await?;
        w.commit().await?;
        self.job(id).await
    }

    /// Running jobs whose lease ran out (their appliance died, or `worker_prefix` is this
    /// appliance starting again): queued again, the attempt counted; those with no attempt
    /// left fail for good and are returned, for their sources and assets to be settled.
    pub async fn recover_jobs(&self, worker_prefix: Option<&str>) -> Result<Recovered> {
        let now = self.db.now_ms();
        let mut w = self.db.write().await?;
        let lock = self.db.skip_locked();
        let sql = format!(
            "SELECT id, attempts, max_attempts, asset_id FROM jobs WHERE state = 'running' \
             AND (lease_until_ms < $1 OR ($2 <> '' AND worker LIKE $3)){lock}"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(now)
            .bind(worker_prefix.unwrap_or(""))
            .bind(format!("{}%", worker_prefix.unwrap_or("")))
            .fetch_all(w.conn())
            .await?;
        let mut out = Recovered::default();
        let mut failed = Vec::new();
        for r in &rows {
            let id: i64 = r.try_get(0)?;
            let attempts: i64 = r.try_get(1)?;
            let max: i64 = r.try_get(2)?;
            let again = attempts < max;
            let n = sqlx::query(
                "UPDATE jobs SET state = $2, error = $3, updated_ms = $4, lease_until_ms = NULL, \
                 finished_ms = $5 WHERE id = $1 AND state = 'running'",
            )
            .bind(id)
            .bind(if again { "queued" } else { "failed" })
            .bind(if again {
                "the worker was lost (appliance stopped or crashed)".to_string()
            } else {
                format!(
                    "the worker was lost (appliance stopped or crashed) on each of its {attempts} attempts: no attempt left"
                )
            })
            .bind(now)
            .bind((!again).then_some(now))
            .execute(w.conn())
            .await?
            .rows_affected();
            if n == 0 {
                continue;
            }
            w.record("job", id, "updated", r.try_get(3)?).await?;
            if again {
                out.requeued += 1;
            } else {
                failed.push(id);
            }
        }
        w.commit().await?;
        for id in failed {
            out.failed.push(self.job(id).await?);
        }
        Ok(out)
    }

    /// Jobs per state, for metrics.
    pub async fn job_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM jobs GROUP BY state")
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_ms(1), 5_000);
        assert_eq!(backoff_ms(2), 10_000);
        assert_eq!(backoff_ms(3), 20_000);
        assert_eq!(backoff_ms(50), 600_000);
    }
}
