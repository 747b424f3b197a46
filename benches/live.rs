//! Live transcode bench: a 1080p25 H.264/AAC MPEG-TS feed sent at real-time pace by `ffmpeg -re`
//! to UDP on loopback, received by a plain `std::net::UdpSocket` and fed to the live engine
//! through a byte source, transcoded to the `live-hls-720p-360p` ladder (720p + 360p H.264
//! `veryfast`, AAC, 4 s fMP4 segments); then the same work by one `ffmpeg` process (UDP in, one
//! decode, split, the same encoder settings, HLS out) as the peer, in the same run. Prints for
//! each: sustained speed (× real time), dropped/late frames, CPU time per frame, peak memory; for
//! antenne also the glass-to-glass latency (the sender's send time of a segment's last picture →
//! the segment file ready), and the CPU ratio.
//!
//! Run: `cargo bench --bench live`. Environment: `ANTENNE_BENCH_SECONDS` (default 60) for each
//! of the two runs; `ANTENNE_BENCH_DIR` to keep the work directory.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use antenne::av::io::{ByteSource, InputSource};
use antenne::av::live::{self, Failover, LiveInput, LiveProgress, Slate};
use antenne::output::live_hls::LiveHlsWindow;
use antenne::pipeline::live::{compile, LiveDefaults, LiveSinks};
use antenne::pipeline::BackendChoice;
use antenne::profile;

type Res<T> = Result<T, String>;

const FPS: f64 = 25.0;
const SEGMENT_S: f64 = 4.0;
const FEED_S: u32 = 20;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nbench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// CPU seconds (user + system) of a process, from /proc.
fn cpu_s(pid: &str) -> Res<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("odd /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the state.
    Ok((ticks(11) + ticks(12)) / 100.0)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn ffmpeg(args: &[&str]) -> Res<()> {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .output()
        .map_err(|e| format!("ffmpeg: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "ffmpeg {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(())
}

fn start_time(file: &Path) -> Res<f64> {
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=start_time",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .map_err(|e| e.to_string())?;
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .map_err(|_| "no start time".to_string())
}

/// `ffmpeg -re` sending the feed in a loop to UDP on loopback.
fn sender(feed: &Path, port: u16) -> Res<Child> {
    Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i"])
        .arg(feed)
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(format!("udp://127.0.0.1:{port}?pkt_size=1316"))
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("ffmpeg sender: {e}"))
}

/// When each segment of a rendition's folder appeared (segment number → time).
fn watch(dir: &Path, seen: &mut BTreeMap<u64, Instant>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let num = name
            .strip_prefix("seg_")
            .and_then(|r| r.strip_suffix(".m4s"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(k) = num {
            seen.entry(k).or_insert_with(Instant::now);
        }
    }
}

struct Figures {
    frames: u64,
    wall_s: f64,
    cpu_s: f64,
    dropped: u64,
    peak_mb: f64,
}

impl Figures {
    fn speed(&self) -> f64 {
        self.frames as f64 / FPS / self.wall_s.max(1e-9)
    }
    fn cpu_ms_per_frame(&self) -> f64 {
        self.cpu_s * 1000.0 / self.frames.max(1) as f64
    }
}

fn run() -> Res<()> {
    let secs: u64 = match std::env::var("ANTENNE_BENCH_SECONDS") {
        Ok(s) => s
            .trim()
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("ANTENNE_BENCH_SECONDS={s:?} is not a positive number"))?,
        Err(_) => 60,
    };
    let _tmp;
    let dir: PathBuf = match std::env::var("ANTENNE_BENCH_DIR") {
        Ok(d) => {
            std::fs::create_dir_all(&d).map_err(|e| format!("{d}: {e}"))?;
            PathBuf::from(d)
        }
        Err(_) => {
            _tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
            _tmp.path().to_owned()
        }
    };
    let feed = dir.join("feed-1080p25.ts");
    if !feed.exists() {
        eprintln!("making a {FEED_S} s 1080p25 feed…");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size=1920x1080:rate=25:duration={FEED_S}"),
            "-f",
            "lavfi",
            "-i",
            &format!("sine=frequency=1000:sample_rate=48000:duration={FEED_S}"),
            "-ac",
            "2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-b:v",
            "8M",
            "-maxrate",
            "8M",
            "-bufsize",
            "4M",
            "-g",
            "25",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-f",
            "mpegts",
            feed.to_str().ok_or("path")?,
        ])?;
    }
    let p0 = start_time(&feed)?;
    let prof = profile::find("live-hls-720p-360p", None).map_err(|e| e.to_string())?;

    // antenne.
    eprintln!("antenne: {secs} s live…");
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let port = sock.local_addr().map_err(|e| e.to_string())?.port();
    let (tx, src) = ByteSource::channel("udp-in.ts", 16384);
    let stop_rx = Arc::new(AtomicBool::new(false));
    let datagrams = Arc::new(AtomicU64::new(0));
    let (s, d) = (stop_rx.clone(), datagrams.clone());
    let receiver = thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !s.load(Ordering::Relaxed) {
            if let Ok(n) = sock.recv(&mut buf) {
                d.fetch_add(1, Ordering::Relaxed);
                if tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        }
    });
    let out = dir.join("antenne");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let sinks = LiveSinks {
        ts: vec![],
        hls_dir: Some(out.clone()),
        hls_window: LiveHlsWindow::default(),
    };
    let job = compile(
        &[&prof],
        vec![LiveInput {
            name: "udp".into(),
            source: InputSource::Stream(src),
        }],
        Slate::Generated {
            ident: "BENCH".into(),
        },
        Failover {
            startup_wait_s: 10.0,
            ..Failover::default()
        },
        &sinks,
        LiveDefaults::default(),
        BackendChoice::Software,
    )
    .map_err(|e| e.to_string())?;
    job.write_master().map_err(|e| e.to_string())?;
    let progress = Arc::new(LiveProgress::default());
    let cancel = Arc::new(AtomicBool::new(false));
    let started: Arc<Mutex<Option<Instant>>> = Arc::default();
    let (pr, ca, st) = (progress.clone(), cancel.clone(), started.clone());
    let spec = job.spec.clone();
    let cpu0 = cpu_s("self")?;
    let engine = thread::spawn(move || {
        live::run(
            &spec,
            move |e| {
                eprintln!("  switch: {} ({})", e.to_name, e.reason);
                st.lock().unwrap().get_or_insert_with(Instant::now);
            },
            pr,
            ca,
        )
    });
    let mut send = sender(&feed, port)?;
    let t_send = Instant::now();
    let mut ready: BTreeMap<u64, Instant> = BTreeMap::new();
    while t_send.elapsed().as_secs_f64() < secs as f64 + 2.0 {
        watch(&out.join("720p"), &mut ready);
        thread::sleep(Duration::from_millis(20));
    }
    cancel.store(true, Ordering::SeqCst);
    let report = engine
        .join()
        .map_err(|_| "engine panicked")?
        .map_err(|e| e.to_string())?;
    let wall = started
        .lock()
        .unwrap()
        .map_or(0.0, |t| t.elapsed().as_secs_f64());
    let cpu = cpu_s("self")? - cpu0;
    let _ = send.kill();
    let _ = send.wait();
    stop_rx.store(true, Ordering::Relaxed);
    let _ = receiver.join();
    let repeated = progress.frames_repeated.load(Ordering::Relaxed);
    let late = progress.late_frames.load(Ordering::Relaxed);
    let dropped_in = progress.frames_dropped();
    let ours = Figures {
        frames: report.frames_out,
        wall_s: wall,
        cpu_s: cpu,
        dropped: dropped_in,
        peak_mb: peak_rss_mb(),
    };
    // Latency: output frame n shows the input picture at n / FPS + offset (input timeline);
    // ffmpeg -re sent that picture at (its time − the feed's first) after it started.
    let latency: Vec<f64> = match *progress.last_input_frame.lock().unwrap() {
        Some((n, pts)) => {
            let offset = pts - n as f64 / FPS;
            let per_seg = (SEGMENT_S * FPS) as u64;
            ready
                .iter()
                .filter(|(k, _)| **k > 0)
                .map(|(k, at)| {
                    let last = (k + 1) * per_seg - 1;
                    let media = last as f64 / FPS + offset - p0;
                    // The feed loops every FEED_S seconds; its timestamps go on across loops.
                    let sent = t_send + Duration::from_secs_f64(media.max(0.0));
                    at.saturating_duration_since(sent).as_secs_f64()
                })
                .collect()
        }
        None => vec![],
    };

    // ffmpeg, the same work.
    eprintln!("ffmpeg: {secs} s live…");
    let peer_dir = dir.join("ffmpeg");
    let _ = std::fs::remove_dir_all(&peer_dir);
    std::fs::create_dir_all(&peer_dir).map_err(|e| e.to_string())?;
    let port2 = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let v = |i: usize| prof.outputs[i].video.clone().ok_or("video");
    let (v0, v1) = (v(0)?, v(1)?);
    let rate = |b: Option<antenne::config::Bitrate>| b.map_or(0, |b| b.bps()).to_string();
    let filter = format!(
        "[0:v]fps=25,split=2[a][b];[a]scale={}:{},format=yuv420p[v0];[b]scale={}:{},format=yuv420p[v1]",
        v0.width, v0.height, v1.width, v1.height
    );
    let peer_out = peer_dir.join("out_%v");
    let args: Vec<String> = [
        "-nostdin",
        "-y",
        "-stats_period",
        "1",
        "-i",
        &format!("udp://127.0.0.1:{port2}?fifo_size=100000&overrun_nonfatal=1"),
        "-t",
        &secs.to_string(),
        "-filter_complex",
        &filter,
        "-map",
        "[v0]",
        "-map",
        "0:a",
        "-map",
        "[v1]",
        "-map",
        "0:a",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-g",
        "50",
        "-keyint_min",
        "50",
        "-sc_threshold",
        "0",
        "-forced-idr",
        "1",
        "-bf",
        "2",
        "-b:v:0",
        &rate(v0.bitrate),
        "-maxrate:v:0",
        &rate(v0.maxrate),
        "-bufsize:v:0",
        &rate(v0.bufsize),
        "-profile:v:0",
        "high",
        "-b:v:1",
        &rate(v1.bitrate),
        "-maxrate:v:1",
        &rate(v1.maxrate),
        "-bufsize:v:1",
        &rate(v1.bufsize),
        "-profile:v:1",
        "main",
        "-c:a",
        "aac",
        "-b:a:0",
        "128k",
        "-b:a:1",
        "96k",
        "-ar",
        "48000",
        "-ac",
        "2",
        "-f",
        "hls",
        "-hls_time",
        "4",
        "-hls_list_size",
        "6",
        "-hls_flags",
        "delete_segments+program_date_time+temp_file+independent_segments",
        "-hls_segment_type",
        "fmp4",
        "-master_pl_name",
        "master.m3u8",
        "-var_stream_map",
        "v:0,a:0 v:1,a:1",
        peer_out.join("index.m3u8").to_str().ok_or("path")?,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let peer = Command::new("/usr/bin/time")
        .args(["-f", "TIME %U %S %M"])
        .arg("ffmpeg")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("ffmpeg peer: {e}"))?;
    thread::sleep(Duration::from_millis(500));
    let mut send = sender(&feed, port2)?;
    let t_peer = Instant::now();
    let o = peer.wait_with_output().map_err(|e| e.to_string())?;
    let peer_wall = t_peer.elapsed().as_secs_f64();
    let _ = send.kill();
    let _ = send.wait();
    let err = String::from_utf8_lossy(&o.stderr);
    let last_stats = err
        .split(['\r', '\n'])
        .rev()
        .find(|l| l.starts_with("frame="))
        .unwrap_or("")
        .to_string();
    let field = |name: &str| -> u64 {
        last_stats
            .split_once(&format!("{name}="))
            .map(|(_, r)| r.trim_start())
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let time_line = err
        .lines()
        .rev()
        .find(|l| l.starts_with("TIME "))
        .unwrap_or("");
    let t: Vec<f64> = time_line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    if t.len() < 3 || !o.status.success() {
        return Err(format!(
            "ffmpeg peer failed: {}",
            err.lines().rev().take(8).collect::<Vec<_>>().join("\n")
        ));
    }
    // ffmpeg's own speed (media time over its wall time from its first frame), which leaves out
    // its start (probing the feed).
    let peer_speed: f64 = last_stats
        .split_once("speed=")
        .and_then(|(_, r)| r.trim_start().split('x').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let frames = field("frame");
    let theirs = Figures {
        frames,
        wall_s: if peer_speed > 0.0 {
            frames as f64 / FPS / peer_speed
        } else {
            peer_wall
        },
        cpu_s: t[0] + t[1],
        dropped: field("drop"),
        peak_mb: t[2] / 1024.0,
    };

    let mut lat = latency.clone();
    lat.sort_by(f64::total_cmp);
    println!("\nlive transcode, 1080p25 UDP in → 720p + 360p H.264 veryfast HLS (4 s fMP4), {secs} s each, same machine, same run");
    println!(
        "{:<8} {:>8} {:>8} {:>9} {:>10} {:>14} {:>9}",
        "", "frames", "× real", "dropped", "late/rep", "CPU ms/frame", "peak MB"
    );
    println!(
        "{:<8} {:>8} {:>8.3} {:>9} {:>10} {:>14.1} {:>9.0}",
        "antenne",
        ours.frames,
        ours.speed(),
        ours.dropped,
        format!("{late}/{repeated}"),
        ours.cpu_ms_per_frame(),
        ours.peak_mb
    );
    println!(
        "{:<8} {:>8} {:>8.3} {:>9} {:>10} {:>14.1} {:>9.0}",
        "ffmpeg",
        theirs.frames,
        theirs.speed(),
        theirs.dropped,
        "-",
        theirs.cpu_ms_per_frame(),
        theirs.peak_mb
    );
    println!(
        "CPU time per frame, antenne / ffmpeg: {:.2}",
        ours.cpu_ms_per_frame() / theirs.cpu_ms_per_frame().max(1e-9)
    );
    println!(
        "UDP datagrams received by antenne: {}",
        datagrams.load(Ordering::Relaxed)
    );
    if lat.is_empty() {
        println!("glass-to-glass latency: no segment measured");
    } else {
        println!(
            "glass-to-glass latency (last picture of a segment sent → 720p segment ready), {} segments: median {:.2} s, max {:.2} s",
            lat.len(),
            lat[lat.len() / 2],
            lat[lat.len() - 1]
        );
    }
    Ok(())
}
