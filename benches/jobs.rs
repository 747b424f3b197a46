//! Watch-folder ingest and scheduler overhead, against `antenne serve` (release build):
//! 1. N small media files (default 1000) dropped at once into a watch folder: time until every
//!    one is catalogued (hashed, probed, recorded, moved to done/), files/s; the peer is the same
//!    hashing and probing done by `sha256sum` + `ffprobe`, as many at once as there are cores.
//! 2. Empty jobs (no worker process): jobs/s through the queue, i.e. the scheduler's own cost;
//!    then jobs that start a worker process each.
//!
//! `ANTENNE_BENCH_FILES` (1000), `ANTENNE_BENCH_JOBS` (2000).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn env_n(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

struct Service {
    child: std::process::Child,
    base: String,
    token: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &Path, workflows: &Path) -> Service {
    let mut child = Command::new(env!("CARGO_BIN_EXE_antenne"))
        .arg("serve")
        .env("ANTENNE_STORAGE_DATA_DIR", data)
        .env("ANTENNE_SERVER_LISTEN", "127.0.0.1:0")
        .env("ANTENNE_ADMIN_PASSWORD", "bench-password-1")
        .env("ANTENNE_JOBS_WORKFLOWS_DIR", workflows)
        .env(
            "ANTENNE_JOBS_WORKERS",
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .to_string(),
        )
        .env("RUST_LOG", "antenne=error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("antenne serve");
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let base = loop {
        let l = lines
            .next()
            .expect("serve prints where it listens")
            .unwrap();
        if let Some(a) = l.strip_prefix("antenne: listening on ") {
            break a.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let token = ureq::post(&format!("{base}/v1/auth/login"))
        .send_json(json!({"username": "admin", "password": "bench-password-1"}))
        .unwrap()
        .into_json::<Value>()
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    Service { child, base, token }
}

fn count(s: &Service, state: &str) -> usize {
    let mut n = 0;
    let mut after = String::new();
    loop {
        let r: Value = ureq::get(&format!(
            "{}/v1/jobs?state={state}&limit=500{after}",
            s.base
        ))
        .set("authorization", &format!("Bearer {}", s.token))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
        n += r["items"].as_array().map_or(0, Vec::len);
        match r["next"].as_str() {
            Some(x) => after = format!("&after={x}"),
            None => return n,
        }
    }
}

fn wait_for(s: &Service, n: usize, limit: Duration) -> Duration {
    let t = Instant::now();
    while count(s, "succeeded") + count(s, "failed") < n {
        assert!(t.elapsed() < limit, "not done within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    t.elapsed()
}

fn corpus(dir: &Path, n: usize) -> Vec<PathBuf> {
    let base = dir.join("base.wav");
    let ok = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:duration=0.2:sample_rate=48000",
            "-c:a",
            "pcm_s16le",
        ])
        .arg(&base)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ffmpeg makes the corpus");
    let bytes = std::fs::read(&base).unwrap();
    (0..n)
        .map(|i| {
            let mut b = bytes.clone();
            let at = b.len() - 64;
            b[at..at + 8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            let p = dir.join(format!("f{i:05}.wav"));
            std::fs::write(&p, b).unwrap();
            p
        })
        .collect()
}

fn main() {
    let files = env_n("ANTENNE_BENCH_FILES", 1000);
    let jobs = env_n("ANTENNE_BENCH_JOBS", 2000);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let d = tempfile::tempdir().unwrap();
    let wf = d.path().join("workflows");
    std::fs::create_dir_all(&wf).unwrap();
    std::fs::write(
        wf.join("default.toml"),
        "name = \"default\"\n[trigger]\nwatch = \"watch\"\nstable_s = 0.5\npoll_s = 0.2\n",
    )
    .unwrap();
    let stage = d.path().join("stage");
    std::fs::create_dir_all(&stage).unwrap();
    let corpus = corpus(&stage, files);
    println!("jobs bench: {files} files, {jobs} empty jobs, {cores} CPUs; antenne serve (release) with {cores} workers");

    // Peer: the same hashing and probing by the Debian tools, `cores` at a time.
    let t = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ls {}/f*.wav | xargs -P {cores} -n 1 sh -c 'sha256sum \"$0\" >/dev/null && ffprobe -v error -show_format -show_streams -of json \"$0\" >/dev/null'",
            stage.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let peer = t.elapsed();
    let peer_rate = files as f64 / peer.as_secs_f64();
    println!("peer sha256sum + ffprobe, {cores} at a time: {files} files in {:.2} s = {peer_rate:.1} files/s", peer.as_secs_f64());

    let data = d.path().join("data");
    let s = start(&data, &wf);
    let watch = data.join("watch");
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    for p in &corpus {
        std::fs::rename(p, watch.join(p.file_name().unwrap())).unwrap();
    }
    wait_for(&s, files, Duration::from_secs(3600));
    let total = t0.elapsed();
    let failed = count(&s, "failed");
    let rate = files as f64 / total.as_secs_f64();
    println!(
        "watch folder: {files} files catalogued in {:.2} s = {rate:.1} files/s ({failed} failed; includes the 0.5 s stability window and 0.2 s polling); antenne / peer = {:.2}",
        total.as_secs_f64(),
        rate / peer_rate
    );

    // Scheduler overhead: empty jobs, no worker process.
    let t = Instant::now();
    for _ in 0..jobs {
        ureq::post(&format!("{}/v1/jobs/noop", s.base))
            .set("authorization", &format!("Bearer {}", s.token))
            .send_json(json!({}))
            .unwrap();
    }
    let queued = t.elapsed();
    wait_for(&s, files + jobs, Duration::from_secs(3600));
    let all = t.elapsed();
    println!(
        "empty jobs: {jobs} queued over HTTP in {:.2} s ({:.0}/s), all run in {:.2} s = {:.0} jobs/s end to end",
        queued.as_secs_f64(),
        jobs as f64 / queued.as_secs_f64(),
        all.as_secs_f64(),
        jobs as f64 / all.as_secs_f64()
    );
    // Jobs that each start a worker process.
    let n = (jobs / 10).max(10);
    let t = Instant::now();
    for _ in 0..n {
        ureq::post(&format!("{}/v1/jobs/noop", s.base))
            .set("authorization", &format!("Bearer {}", s.token))
            .send_json(json!({"sleep_ms": 1}))
            .unwrap();
    }
    wait_for(&s, files + jobs + n, Duration::from_secs(3600));
    println!(
        "worker-process jobs: {n} in {:.2} s = {:.1} jobs/s ({cores} workers)",
        t.elapsed().as_secs_f64(),
        n as f64 / t.elapsed().as_secs_f64()
    );
}
