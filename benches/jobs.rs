//! Watch-folder ingest and scheduler overhead, against `antenne serve` (release build):
//! 1. N small media files (default 1000) dropped at once into a watch folder: time until every
//!    one is catalogued (hashed, probed, recorded, moved to done/), files/s; the peer is the same
//!    hashing and probing done by `sha256sum` + `ffprobe`, as many at once as there are cores.
//! 2. Empty jobs (no worker process): jobs/s through the queue, i.e. the scheduler's own cost;
//!    then jobs that start a worker process each.
//!
//! 3. End to end: one 1080i25 programme (cuts-free testsrc2 with noise, stereo PCM) dropped into
//!    the watch folder of the bundled default workflow (ingest, QC, then XDCAM HD422 + proxy +
//!    web rendition from one decode, each verified): time until the asset is `ready`, with each
//!    step's share; the peer makes the same three outputs with one `ffmpeg` command (one decode,
//!    the same encoder settings) and reads each back with `ffprobe`.
//!
//! `ANTENNE_BENCH_FILES` (1000), `ANTENNE_BENCH_JOBS` (2000), `ANTENNE_BENCH_E2E_SECONDS` (6;
//! 0 skips part 3), `ANTENNE_BENCH_ONLY_E2E=1` runs part 3 alone.

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

/// The programme: 1080i25 TFF H.264 (intra-heavy, like a contribution file) with stereo PCM.
fn programme(path: &Path, secs: usize) {
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=1920x1080:rate=25:duration={secs}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=1000:sample_rate=48000:duration={secs},volume=0.2"
        ))
        .args(["-vf", "noise=alls=12:allf=t+u,setfield=tff"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-qp", "10"])
        .args(["-flags", "+ildct+ilme", "-top", "1", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "pcm_s16le", "-ac", "2"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ffmpeg makes the programme");
}

/// The bundled default workflow's three outputs made by one `ffmpeg` (one decode, split), with
/// the profiles' settings: XDCAM HD422 1080i25 in MXF with 8 mono PCM tracks, the 640x360 proxy
/// with burnt-in timecode and the 1080p web rendition (both deinterlaced); then `ffprobe` of each.
fn peer_default_workflow(src: &Path, out: &Path) -> (f64, f64) {
    std::fs::create_dir_all(out).unwrap();
    let font = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf";
    let graph = format!(
        "[0:v]split=3[h][p][w];\
         [h]scale=1920:1080:interl=1,format=yuv422p,setsar=1[hv];\
         [p]bwdif=mode=send_frame:parity=tff,scale=640:360,format=yuv420p,\
drawtext=fontfile={font}:timecode='00\\:00\\:00\\:00':rate=25:fontsize=24:fontcolor=white:box=1:boxcolor=black:x=(w-tw)/2:y=h-th-10[pv];\
         [w]bwdif=mode=send_frame:parity=tff,scale=1920:1080,format=yuv420p[wv];\
         [0:a]asplit=3[a0][ap][aw];\
         [a0]pan=7.1|c0=c0|c1=c1,channelsplit=channel_layout=7.1[l][r][s1][s2][s3][s4][s5][s6]"
    );
    let mut c = Command::new("ffmpeg");
    c.args(["-v", "error", "-y", "-i"])
        .arg(src)
        .args(["-filter_complex", &graph.replace(['\n', ' '], "")]);
    // XDCAM HD422.
    c.args(["-map", "[hv]"]);
    for a in ["[l]", "[r]", "[s1]", "[s2]", "[s3]", "[s4]", "[s5]", "[s6]"] {
        c.args(["-map", a]);
    }
    c.args(["-c:v", "mpeg2video", "-profile:v", "0", "-level:v", "2"])
        .args([
            "-b:v", "50M", "-minrate", "50M", "-maxrate", "50M", "-bufsize", "36408333",
        ])
        .args(["-g", "12", "-bf", "2", "-flags", "+ildct+ilme", "-top", "1"])
        .args([
            "-alternate_scan",
            "1",
            "-intra_vlc",
            "1",
            "-non_linear_quant",
            "1",
        ])
        .args([
            "-qmin",
            "1",
            "-qmax",
            "12",
            "-dc",
            "10",
            "-sc_threshold",
            "1000000000",
        ])
        .args(["-c:a", "pcm_s24le"])
        .arg(out.join("house.mxf"));
    // Proxy.
    c.args(["-map", "[pv]", "-map", "[ap]"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "main",
        ])
        .args(["-b:v", "800k", "-maxrate", "1200k", "-bufsize", "1600k"])
        .args([
            "-g",
            "25",
            "-keyint_min",
            "25",
            "-sc_threshold",
            "0",
            "-bf",
            "0",
        ])
        .args(["-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart"])
        .arg(out.join("proxy.mp4"));
    // Web.
    c.args(["-map", "[wv]", "-map", "[aw]"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "fast",
            "-profile:v",
            "high",
            "-level",
            "4.2",
        ])
        .args(["-b:v", "6M", "-maxrate", "8M", "-bufsize", "12M"])
        .args([
            "-g",
            "50",
            "-keyint_min",
            "50",
            "-sc_threshold",
            "0",
            "-bf",
            "2",
        ])
        .args(["-c:a", "aac", "-b:a", "192k", "-movflags", "+faststart"])
        .arg(out.join("web.mp4"));
    let t = Instant::now();
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "peer ffmpeg ({}): {c:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let encode = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for f in ["house.mxf", "proxy.mp4", "web.mp4"] {
        let ok = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_format",
                "-show_streams",
                "-count_frames",
                "-of",
                "json",
            ])
            .arg(out.join(f))
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "ffprobe {f}");
    }
    (encode, t.elapsed().as_secs_f64())
}

fn newest_asset(s: &Service) -> Option<Value> {
    let r: Value = ureq::get(&format!("{}/v1/assets?limit=1", s.base))
        .set("authorization", &format!("Bearer {}", s.token))
        .call()
        .ok()?
        .into_json()
        .ok()?;
    r["items"].as_array()?.first().cloned()
}

fn jobs_of(s: &Service) -> Vec<Value> {
    let r: Value = ureq::get(&format!("{}/v1/jobs?limit=50", s.base))
        .set("authorization", &format!("Bearer {}", s.token))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    r["items"].as_array().cloned().unwrap_or_default()
}

/// Part 3: the bundled default workflow end to end against its peer.
fn end_to_end(secs: usize) {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("programme.mov");
    programme(&src, secs);
    let (peer_encode, peer_probe) = peer_default_workflow(&src, &d.path().join("peer"));
    let peer = peer_encode + peer_probe;
    println!(
        "\nend to end, {secs} s of 1080i25 through the default workflow (QC, XDCAM HD422 + proxy + web, verified):"
    );
    println!(
        "  peer: one ffmpeg for the three outputs {peer_encode:.2} s + ffprobe of each {peer_probe:.2} s = {peer:.2} s"
    );
    let wf = d.path().join("workflows");
    std::fs::create_dir_all(&wf).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-config/workflows/default.toml"),
        wf.join("default.toml"),
    )
    .unwrap();
    let data = d.path().join("data");
    let s = start(&data, &wf);
    let watch = data.join("watch");
    let staged = data.join("programme.mov");
    std::fs::rename(&src, &staged).unwrap();
    let t0 = Instant::now();
    std::fs::rename(&staged, watch.join("programme.mov")).unwrap();
    let mut seen: Vec<(String, f64)> = Vec::new();
    let status = loop {
        assert!(
            t0.elapsed() < Duration::from_secs(1800),
            "the workflow did not finish"
        );
        for j in jobs_of(&s) {
            let kind = j["kind"].as_str().unwrap_or("?").to_string();
            let done = matches!(j["state"].as_str(), Some("succeeded" | "failed"));
            if done && !seen.iter().any(|(k, _)| *k == kind) {
                seen.push((kind, t0.elapsed().as_secs_f64()));
            }
        }
        if let Some(a) = newest_asset(&s) {
            let st = a["status"].as_str().unwrap_or("").to_string();
            if matches!(
                st.as_str(),
                "ready" | "qc_failed" | "rendition_failed" | "failed"
            ) {
                break st;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let total = t0.elapsed().as_secs_f64();
    let mut last = 0.0;
    let steps: Vec<String> = seen
        .iter()
        .map(|(k, t)| {
            let s = format!("{k} {:.2} s", t - last);
            last = *t;
            s
        })
        .collect();
    println!(
        "  antenne: asset {status} {total:.2} s after the drop ({}); {:.2}x real time",
        steps.join(", "),
        secs as f64 / total
    );
    println!(
        "  antenne / peer = {:.2}  (goal <= 1.2: {})",
        total / peer,
        if total / peer <= 1.2 {
            "met"
        } else {
            "NOT met"
        }
    );
    assert_eq!(
        status, "ready",
        "the programme should pass QC and its renditions verify"
    );
}

fn main() {
    let e2e = env_n("ANTENNE_BENCH_E2E_SECONDS", 6);
    if std::env::var("ANTENNE_BENCH_ONLY_E2E").is_ok_and(|v| v == "1") {
        end_to_end(e2e.max(1));
        return;
    }
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
    drop(s);
    if e2e > 0 {
        end_to_end(e2e);
    }
}
