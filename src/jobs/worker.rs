//! `antenne worker`: runs one media job in its own process. The job comes as JSON on stdin;
//! progress, logs and the outcome go to stdout as JSON lines ([`WorkerMsg`]). A decoder crash,
//! hang or runaway allocation here takes this process down, not the service.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::fault::{Failure, Fault};
use super::{WorkerJob, WorkerMsg};

fn emit(m: &WorkerMsg) {
    let mut out = std::io::stdout().lock();
    if let Ok(s) = serde_json::to_string(m) {
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    }
}

fn log(level: &str, message: impl Into<String>) {
    emit(&WorkerMsg::Log {
        level: level.into(),
        message: message.into(),
    });
}

/// A failure another attempt would not mend, said in words: the job's input or its asking.
fn fatal(fault: Fault, msg: impl Into<String>) -> Failure {
    Failure::new(fault, false, msg)
}

/// What the worker prints for a failed job: the supervisor holds it against the GPU the job was
/// placed on only when its class is [`Fault::Device`].
pub(super) fn report(failure: &Failure) -> WorkerMsg {
    WorkerMsg::Failed {
        error: failure.to_string(),
        retry: failure.retry,
        fault: failure.fault,
    }
}

/// Reads the job from stdin, runs it, prints the outcome; the exit code says whether it ran.
pub fn main() -> i32 {
    // Orphaned (the service was killed): stop rather than write beside the job's next run.
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(200));
        if std::os::unix::process::parent_id() != parent {
            std::process::exit(3);
        }
    });
    let mut input = String::new();
    if std::io::stdin().read_to_string(&mut input).is_err() {
        return 2;
    }
    let job: WorkerJob = match serde_json::from_str(&input) {
        Ok(j) => j,
        Err(e) => {
            emit(&WorkerMsg::Failed {
                error: format!("worker: the job is not valid JSON: {e}"),
                retry: false,
                fault: Fault::Internal,
            });
            return 2;
        }
    };
    crate::av::init();
    let outcome = match job.kind.as_str() {
        "noop" => noop(&job.params),
        "ingest" => ingest(&job.params),
        "qc" => qc(&job.params),
        "transcode" => transcode(&job),
        "deliver" => deliver(&job.params),
        "verify" => verify(&job.params),
        "notify" => notify(&job.params),
        k => Err(fatal(
            Fault::Internal,
            format!("worker: no such job kind {k:?}"),
        )),
    };
    match outcome {
        Ok(result) => {
            emit(&WorkerMsg::Done { result });
            0
        }
        Err(failure) => {
            emit(&report(&failure));
            1
        }
    }
}

/// A job that does nothing (scheduler overhead, tests): or sleeps, crashes, hangs or allocates
/// as `params` ask, to exercise the supervisor.
fn noop(p: &Value) -> Result<Value, Failure> {
    if let Some(ms) = p["sleep_ms"].as_u64() {
        let steps = 10;
        for i in 0..steps {
            std::thread::sleep(Duration::from_millis(ms / steps));
            emit(&WorkerMsg::Progress {
                percent: f64::from((i + 1) as u32) * 10.0,
                fps: 0.0,
                speed: 0.0,
                eta_s: 0.0,
            });
        }
    }
    if p["crash"].as_bool() == Some(true) {
        std::process::abort();
    }
    if p["hang"].as_bool() == Some(true) {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    if let Some(mb) = p["alloc_mb"].as_u64() {
        let mut hold: Vec<Vec<u8>> = Vec::new();
        for _ in 0..mb {
            hold.push(vec![1u8; 1 << 20]);
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_secs(30));
        drop(hold);
    }
    if let Some(e) = p["fail"].as_str() {
        let fault = serde_json::from_value(p["fault"].clone()).unwrap_or_default();
        return Err(Failure::new(fault, p["retry"].as_bool().unwrap_or(true), e));
    }
    Ok(json!({"ok": true}))
}

/// Where a file is now: its watch path, or where an earlier attempt moved it.
fn locate(p: &Value) -> Result<PathBuf, Failure> {
    let path = PathBuf::from(p["path"].as_str().unwrap_or_default());
    if path.is_file() {
        return Ok(path);
    }
    if let Some(moved) = p["moved_to"].as_str().map(PathBuf::from) {
        if moved.is_file() {
            return Ok(moved);
        }
    }
    Err(fatal(
        Fault::Media,
        format!("{}: no such file", path.display()),
    ))
}

/// Hash and probe a file; read its sidecar metadata.
fn ingest(p: &Value) -> Result<Value, Failure> {
    let path = locate(p)?;
    let size = std::fs::metadata(&path)?.len();
    let started = Instant::now();
    let (hash, n) = hash_with_progress(&path, size)?;
    if n != size {
        return Err(Failure::new(
            Fault::Media,
            true,
            format!(
                "{}: changed while being read ({size} then {n} bytes)",
                path.display()
            ),
        ));
    }
    let file = crate::ingest::describe(&path, "source", Some((hash, n)))
        .map_err(|e| Failure::from(e).retry(false))?;
    let sidecar = read_sidecar(&path);
    log(
        "info",
        format!(
            "{}: {n} bytes hashed and probed in {:.2} s",
            path.display(),
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(json!({"path": path, "file": file, "sidecar": sidecar}))
}

fn hash_with_progress(path: &Path, size: u64) -> Result<(String, u64), Failure> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    let mut last = Instant::now();
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
        if last.elapsed() > Duration::from_millis(500) {
            last = Instant::now();
            emit(&WorkerMsg::Progress {
                percent: if size > 0 {
                    n as f64 * 100.0 / size as f64
                } else {
                    0.0
                },
                fps: 0.0,
                speed: 0.0,
                eta_s: 0.0,
            });
        }
    }
    Ok((crate::catalog::access::hex(&h.finalize()), n))
}

/// `<base>.json` (catalog field names) or `<base>.xml` (flat elements of the same names) beside
/// a media file.
pub fn read_sidecar(media: &Path) -> Option<Value> {
    let json_path = media.with_extension("json");
    if let Ok(b) = std::fs::read(&json_path) {
        return Some(match serde_json::from_slice::<Value>(&b) {
            Ok(v @ Value::Object(_)) => json!({"file": json_path, "fields": v}),
            Ok(_) => json!({"file": json_path, "error": "not a JSON object"}),
            Err(e) => json!({"file": json_path, "error": e.to_string()}),
        });
    }
    let xml_path = media.with_extension("xml");
    let text = std::fs::read_to_string(&xml_path).ok()?;
    Some(json!({"file": xml_path, "fields": crate::ingest::sidecar::flat_xml(&text)}))
}

/// Full decode health, loudness, and essence against what the metadata declares.
fn qc(p: &Value) -> Result<Value, Failure> {
    let path = locate(p)?;
    // Progress from the decode loops: while they read packets it is reported; a decoder stuck
    // inside libav reports nothing, and the supervisor stops it as a hang.
    let duration = crate::av::probe::probe(&path)
        .ok()
        .and_then(|r| r.duration_s())
        .filter(|d| *d > 0.0);
    let done = Arc::new(AtomicBool::new(false));
    let beat = {
        let done = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut seen = crate::av::activity::now().1;
            // The decode passes of a QC: the scan, silence, loudness.
            const PASSES: f64 = 3.0;
            let (first, _, _) = crate::av::activity::now();
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(500));
                let (passes, packets, media) = crate::av::activity::now();
                if packets == seen {
                    continue;
                }
                seen = packets;
                let pass = passes.saturating_sub(first).max(1) as f64 - 1.0;
                let part = duration.map_or(0.0, |d| (media / d).min(1.0));
                let percent = ((pass + part) * 100.0 / PASSES).min(99.0);
                let t = start.elapsed().as_secs_f64().max(1e-3);
                let speed = duration.map_or(0.0, |d| (pass * d + media) / t);
                emit(&WorkerMsg::Progress {
                    percent,
                    fps: 0.0,
                    speed,
                    eta_s: duration
                        .filter(|_| speed > 0.0)
                        .map_or(0.0, |d| ((PASSES * d - pass * d - media) / speed).max(0.0)),
                });
            }
        })
    };
    let r = qc_run(&path, p);
    done.store(true, Ordering::SeqCst);
    let _ = beat.join();
    r
}

fn qc_run(path: &Path, p: &Value) -> Result<Value, Failure> {
    let rules: crate::qc::QcRules = serde_json::from_value(p["rules"].clone()).unwrap_or_default();
    let report = crate::qc::check(path, &rules, &p["declared"])
        .map_err(|e| Failure::from(e).retry(false))?;
    Ok(serde_json::to_value(report).unwrap_or(Value::Null))
}

/// Every output of each profile from the file, verified; progress from the engine.
fn transcode(job: &WorkerJob) -> Result<Value, Failure> {
    let p = &job.params;
    let source = locate(p)?;
    let out_dir = PathBuf::from(p["out_dir"].as_str().unwrap_or_default());
    let profiles = strings(&p["profiles"]);
    if profiles.is_empty() {
        return Err(fatal(Fault::Internal, "transcode: no profile given"));
    }
    std::fs::create_dir_all(&out_dir)?;
    crate::pipeline::prepare_outdir(&out_dir).map_err(|e| Failure::from(e).retry(false))?;
    let (src, opened) =
        crate::av::probe::probe_open(&source).map_err(|e| Failure::from(e).retry(false))?;
    let compiled = compile_left(job, &profiles, &src, &out_dir)?;
    if compiled.is_empty() {
        return Ok(json!({"outputs": []}));
    }
    let runs = plan_runs(&compiled);
    let mut opened = Some(opened);
    let mut outputs = Vec::new();
    let count = runs.len();
    for (n, (owners, plan)) in runs.into_iter().enumerate() {
        let progress = Arc::new(crate::av::engine::Progress::default());
        let done = Arc::new(AtomicBool::new(false));
        let reporter = report_progress(progress.clone(), done.clone(), plan.duration_s, n, count);
        let result = crate::pipeline::run(
            &plan,
            opened.take(),
            progress,
            Arc::new(AtomicBool::new(false)),
        );
        done.store(true, Ordering::SeqCst);
        let _ = reporter.join();
        let names: Vec<&str> = owners
            .iter()
            .map(|&i| compiled[i].0.name.as_str())
            .collect();
        result.map_err(|e| Failure::from(e).context(names.join(" + ")))?;
        outputs.extend(verify_outputs(&plan, &owners, &compiled)?);
    }
    Ok(json!({"outputs": outputs}))
}

/// The strings of a JSON array (none for anything else).
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

/// The backend the job asks for, or the GPU the scheduler placed it on.
fn backend_choice(job: &WorkerJob) -> crate::pipeline::BackendChoice {
    use crate::pipeline::BackendChoice;
    let placed = job
        .placed_on_gpu
        .then(|| crate::av::hw::Backend::gpu_named(&job.backend))
        .flatten();
    match (placed, job.backend.as_str()) {
        (Some(b), _) => BackendChoice::Placed(b),
        (None, "software") => BackendChoice::Software,
        (None, "nvenc") => BackendChoice::Nvenc,
        (None, "vaapi") => BackendChoice::Vaapi,
        (None, "qsv") => BackendChoice::Qsv,
        (None, _) => BackendChoice::Auto,
    }
}

/// Each profile compiled, without the outputs an earlier attempt of this job made and the
/// catalog registered (a profile with none left is not run at all).
fn compile_left(
    job: &WorkerJob,
    profiles: &[String],
    src: &crate::av::probe::ProbeReport,
    out_dir: &Path,
) -> Result<Vec<(crate::profile::Profile, crate::pipeline::PipelinePlan)>, Failure> {
    let p = &job.params;
    let dir = crate::profile::profiles_dir(job.profiles_dir.as_deref());
    let backend = backend_choice(job);
    let done = strings(&p["done"]);
    let mut compiled = Vec::new();
    for name in profiles {
        let prof = crate::profile::find(name, dir.as_deref())
            .map_err(|e| Failure::from(e).retry(false))?;
        let is_done = |o: &str| done.iter().any(|d| *d == format!("{}/{o}", prof.name));
        if !prof.outputs.is_empty() && prof.outputs.iter().all(|o| is_done(&o.name)) {
            log(
                "info",
                format!("{name}: made and registered by an earlier attempt"),
            );
            continue;
        }
        let mut plan = crate::pipeline::compile(src, &prof, out_dir, backend)
            .map_err(|e| Failure::from(e).retry(false).context(name))?;
        match &plan.package {
            // A package is registered whole or not at all: one left by an earlier attempt of
            // this job was not registered, and is made again.
            Some(pk) if p.get("done").is_some() && pk.dir.is_dir() => {
                std::fs::remove_dir_all(&pk.dir)
                    .map_err(|e| Failure::from(e).context(pk.dir.display().to_string()))?;
            }
            Some(_) => {}
            None => drop_done(&mut plan, name, is_done),
        }
        compiled.push((prof, plan));
    }
    Ok(compiled)
}

/// Leaves out of `plan` the outputs already made.
fn drop_done(plan: &mut crate::pipeline::PipelinePlan, name: &str, is_done: impl Fn(&str) -> bool) {
    let keep: Vec<bool> = plan.outputs.iter().map(|o| !is_done(&o.name)).collect();
    if keep.iter().all(|k| *k) {
        return;
    }
    let mut k = keep.iter();
    plan.outputs.retain(|_| *k.next().unwrap_or(&true));
    let mut k = keep.iter();
    plan.spec.outputs.retain(|_| *k.next().unwrap_or(&true));
    let mut k = keep.iter();
    plan.facts.retain(|_| *k.next().unwrap_or(&true));
    log(
        "info",
        format!(
            "{name}: only {} of {} outputs left to make",
            plan.outputs.len(),
            keep.len()
        ),
    );
}

/// One decode for every profile when they can share it; else one run per profile. Each run
/// with the indexes of the profiles it makes.
fn plan_runs(
    compiled: &[(crate::profile::Profile, crate::pipeline::PipelinePlan)],
) -> Vec<(Vec<usize>, crate::pipeline::PipelinePlan)> {
    let plans: Vec<crate::pipeline::PipelinePlan> =
        compiled.iter().map(|(_, j)| j.clone()).collect();
    match crate::pipeline::merge(&plans) {
        Some(m) if plans.len() > 1 => {
            log("info", format!("{} profiles from one decode", plans.len()));
            vec![((0..plans.len()).collect(), m)]
        }
        _ => plans
            .into_iter()
            .enumerate()
            .map(|(i, j)| (vec![i], j))
            .collect(),
    }
}

/// Reports run `n` of `count`'s progress every half second until `done`.
fn report_progress(
    progress: Arc<crate::av::engine::Progress>,
    done: Arc<AtomicBool>,
    duration: Option<f64>,
    n: usize,
    count: usize,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        while !done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(500));
            let t = start.elapsed().as_secs_f64().max(1e-3);
            let frames = progress.frames_decoded.load(Ordering::Relaxed) as f64;
            let media = progress.media_us.load(Ordering::Relaxed) as f64 / 1e6;
            let speed = media / t;
            let part = duration
                .filter(|d| *d > 0.0)
                .map_or(0.0, |d| (media / d).min(1.0));
            emit(&WorkerMsg::Progress {
                percent: (n as f64 + part) * 100.0 / count as f64,
                fps: frames / t,
                speed,
                eta_s: duration
                    .filter(|_| speed > 0.0)
                    .map_or(0.0, |d| ((d - media) / speed).max(0.0)),
            });
        }
    })
}

/// Every output of a finished run verified against its profile, with its report written and,
/// when it passed, its file described for the catalog.
fn verify_outputs(
    plan: &crate::pipeline::PipelinePlan,
    owners: &[usize],
    compiled: &[(crate::profile::Profile, crate::pipeline::PipelinePlan)],
) -> Result<Vec<Value>, Failure> {
    // Which profile each planned output belongs to, in the order they were joined.
    let owner_of: Vec<usize> = owners
        .iter()
        .flat_map(|&i| std::iter::repeat_n(i, compiled[i].1.outputs.len()))
        .collect();
    let mut outputs = Vec::new();
    for ((planned, facts), &pi) in plan.outputs.iter().zip(&plan.facts).zip(&owner_of) {
        let prof = &compiled[pi].0;
        let name = &prof.name;
        let out = &prof.outputs[planned.index];
        let rep = crate::profile::verify::verify(
            &planned.path,
            &prof.name,
            out,
            prof.loudness.as_ref(),
            facts,
        )
        .map_err(|e| Failure::from(e).context(format!("{name}: verification")))?;
        let report_path = crate::profile::verify::write_report(&rep, &planned.path)
            .map_err(|e| Failure::from(e).context(format!("{name}: verification report")))?;
        log(
            if rep.pass { "info" } else { "warn" },
            format!(
                "{}: verification {}",
                planned.path.display(),
                if rep.pass { "passed" } else { "FAILED" }
            ),
        );
        // A storyboard is a numbered series (`name_%03d.jpg`): each sheet is a file.
        let mut images = sheets(&planned.path).into_iter();
        let first = images.next().unwrap_or_else(|| planned.path.clone());
        let describe = |p: &std::path::Path| -> Result<Value, Failure> {
            let f = crate::ingest::describe(p, "platform", None)
                .map_err(|e| Failure::from(e).context(name.as_str()))?;
            Ok(json!(f))
        };
        let (file, more) = if rep.pass {
            let more: Result<Vec<Value>, Failure> = images.map(|p| describe(&p)).collect();
            (Some(describe(&first)?), more?)
        } else {
            (None, Vec::new())
        };
        outputs.push(json!({
            "file": file,
            "more_files": more,
            "profile": prof.name,
            "output": out.name,
            "path": planned.path,
            "pass": rep.pass,
            "package": prof.package.is_some(),
            "report": report_path,
            "verification": rep,
        }));
    }
    Ok(outputs)
}

/// The files of a numbered image series (`name_%03d.jpg`) in order; empty for any other path.
fn sheets(path: &std::path::Path) -> Vec<PathBuf> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let Some((head, tail)) = name.split_once("%03d") else {
        return Vec::new();
    };
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    (1..=9999)
        .map(|i| dir.join(format!("{head}{i:03}{tail}")))
        .take_while(|p| p.is_file())
        .collect()
}

/// Fixity: every file of the asset hashed again and compared with the catalog's size and
/// SHA-256. Any difference or missing file fails the job, naming each.
fn verify(p: &Value) -> Result<Value, Failure> {
    let files = p["files"].as_array().cloned().unwrap_or_default();
    let total: u64 = files.iter().filter_map(|f| f["size"].as_u64()).sum();
    let mut done = 0u64;
    let mut bad = Vec::new();
    let mut checked = Vec::new();
    for f in &files {
        let path = PathBuf::from(f["path"].as_str().unwrap_or_default());
        let want = f["sha256"].as_str().unwrap_or_default();
        let size = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) => {
                bad.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let (hash, _) = hash_with_progress(&path, size)?;
        done += size;
        emit(&WorkerMsg::Progress {
            percent: if total > 0 {
                (done as f64 * 100.0 / total as f64).min(100.0)
            } else {
                100.0
            },
            fps: 0.0,
            speed: 0.0,
            eta_s: 0.0,
        });
        if Some(size) != f["size"].as_u64() || hash != want {
            bad.push(format!(
                "{}: {size} bytes, SHA-256 {hash}; the catalog has {} bytes, {want}",
                path.display(),
                f["size"]
            ));
        } else {
            checked.push(path);
        }
    }
    if !bad.is_empty() {
        return Err(fatal(
            Fault::Media,
            format!(
                "fixity: {} of {} files differ from the catalog: {}",
                bad.len(),
                files.len(),
                bad.join("; ")
            ),
        ));
    }
    log(
        "info",
        format!("fixity: {} files as catalogued", checked.len()),
    );
    Ok(json!({"verified": checked}))
}

/// Copies renditions to a delivery folder (see [`crate::delivery::folder`]), or, with a
/// declared `destination`, sends them there (see [`crate::delivery::transfer`]).
fn deliver(p: &Value) -> Result<Value, Failure> {
    if p["destination"].is_object() {
        return deliver_to(p);
    }
    use crate::delivery::folder::{self, FolderError};
    let to = PathBuf::from(p["to"].as_str().unwrap_or_default());
    let files = p["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    let done = folder::deliver(&to, files, |dest| {
        log("info", format!("delivered {}", dest.display()))
    })
    .map_err(|e| match e {
        FolderError::Io(e) => Failure::from(e),
        other => fatal(Fault::Internal, other.to_string()),
    })?;
    Ok(json!({"delivered": done}))
}

fn deliver_to(p: &Value) -> Result<Value, Failure> {
    use crate::delivery::transfer;
    let bad = |e: serde_json::Error| fatal(Fault::Internal, format!("deliver: the job: {e}"));
    let d: crate::config::delivery::Destination =
        serde_json::from_value(p["destination"].clone()).map_err(bad)?;
    let items: Vec<transfer::Item> = serde_json::from_value(p["items"].clone()).map_err(bad)?;
    let fail = |e: transfer::TransferError| {
        let retry = e.retryable();
        Failure::new(
            if retry {
                Fault::Resource
            } else {
                Fault::Internal
            },
            retry,
            format!("deliver to {:?}: {e}", d.name),
        )
    };
    let mut far: Box<dyn transfer::Far> = if d.kind == "s3" {
        Box::new(super::s3_far::S3Far::connect(&d).map_err(fail)?)
    } else {
        transfer::connect(&d).map_err(fail)?
    };
    let sent = transfer::deliver(far.as_mut(), &items, d.verify_hash(), &mut |m| {
        log("info", m)
    })
    .map_err(fail)?;
    Ok(json!({
        "destination": d.name,
        "kind": d.kind,
        "files": sent,
        "sent_bytes": sent.iter().map(|s| s.sent_bytes).sum::<u64>(),
    }))
}

/// Sends a notification e-mail through an SMTP relay (see [`crate::delivery::smtp`]).
fn mail(m: &Value) -> Result<Value, Failure> {
    let to: Vec<String> = m["to"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let relay = m["relay"].as_str().unwrap_or_default();
    let path = |k: &str| m[k].as_str().filter(|p| !p.is_empty()).map(PathBuf::from);
    let security = crate::delivery::smtp::Security {
        starttls: m["starttls"].as_bool().unwrap_or(false),
        ca_file: path("ca_file"),
        user: m["user"].as_str().unwrap_or_default().to_string(),
        password_file: path("password_file"),
    };
    crate::delivery::smtp::send_with(
        relay,
        &security,
        &crate::delivery::smtp::Mail {
            from: m["from"].as_str().unwrap_or_default(),
            to: &to,
            subject: m["subject"].as_str().unwrap_or_default(),
            body: m["body"].as_str().unwrap_or_default(),
        },
    )
    .map_err(|e| {
        Failure::new(
            Fault::Resource,
            e.retryable(),
            format!("notify by e-mail: {e}"),
        )
    })?;
    log("info", format!("mailed {} recipients", to.len()));
    Ok(json!({"mailed": to}))
}

/// POSTs the workflow's event as JSON to a webhook (`http://` only); a non-2xx answer or no
/// answer within 10 s fails the attempt (retried with backoff).
fn notify(p: &Value) -> Result<Value, Failure> {
    if p["mail"].is_object() {
        return mail(&p["mail"]);
    }
    let url = p["url"].as_str().unwrap_or_default().to_string();
    let uri: hyper::Uri = url.parse().map_err(|e| {
        Failure::caused(Fault::Internal, false, e).context(format!("notify: {url:?} is not a URL"))
    })?;
    if uri.scheme_str() != Some("http") {
        return Err(fatal(
            Fault::Internal,
            format!("notify: {url:?}: only http:// webhooks are supported"),
        ));
    }
    let body = p["event"].to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = rt.block_on(async move {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<hyper::body::Bytes>>();
        let req = hyper::Request::post(uri)
            .header("content-type", "application/json")
            .header("user-agent", concat!("antenne/", env!("CARGO_PKG_VERSION")))
            .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
            .map_err(|e| Failure::caused(Fault::Internal, false, e))?;
        match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
            Ok(Ok(r)) => Ok(r.status().as_u16()),
            Ok(Err(e)) => {
                Err(Failure::caused(Fault::Resource, true, e).context(format!("notify {url}")))
            }
            Err(_) => Err(Failure::new(
                Fault::Timeout,
                true,
                format!("notify {url}: no answer within 10 s"),
            )),
        }
    })?;
    if !(200..300).contains(&status) {
        return Err(Failure::new(
            Fault::Resource,
            true,
            format!("notify: the webhook answered {status}"),
        ));
    }
    log("info", format!("webhook answered {status}"));
    Ok(json!({"status": status}))
}
