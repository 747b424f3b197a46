//! Playout bench: one 1080i25 channel. Three XDCAM-like source files (MPEG-2 4:2:2 50 Mb/s
//! 1080i25 TFF, 4 mono PCM 24-bit tracks, MXF) made by `ffmpeg`, scheduled back to back (the
//! second from an in point) and aired as fast as the machine goes, conformed (4:2:0, tracks 1–2
//! as stereo) and encoded to an interlaced H.264 `veryfast` 8 Mb/s + AAC 192k constant-rate TS;
//! then `ffmpeg` doing the same conform and encode of a concat of the same files, in the same run.
//! Prints for each the CPU time per second of media (the share of one core the channel needs to
//! run in real time), the speed and the peak memory, and the ratio.
//!
//! Run: `make bench-playout` (`cargo bench --bench playout`). `ANTENNE_BENCH_SECONDS` (default
//! 10) sets each source's length; `ANTENNE_BENCH_DIR` keeps the work directory.
//!
//! Two long runs, each chosen by `ANTENNE_BENCH_PLAYOUT`, on a small house format (320x180p25)
//! so that they take minutes, not a day:
//! - `soak`: `ANTENNE_PLAYOUT_SOAK_HOURS` (default 24) of a cycling schedule (three clips, an
//!   in point, a break, filler) played as fast as the machine goes; every simulated hour it prints
//!   the frames out, the speed, underruns, the frame/PTS drift (last picture's PTS against its
//!   frame count) and the A/V drift (last audio PES against the last picture), and the RSS; at
//!   the end the as-run is checked complete and contiguous.
//! - `realtime`: `ANTENNE_BENCH_MINUTES` (default 10) on the wall clock, the TS kept and read by
//!   the TR 101 290 priority 1/2 reader of the tests; prints late frames, underruns, drifts and
//!   the reader's errors (0 expected).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use antenne::av::live::House;
use antenne::link::{Chunk, ChunkSink};
use antenne::playout::engine::{
    Channel, ChannelOutput, ChannelSpec, Clock, FastClock, SystemClock, TsAudio, TsEncode,
};
use antenne::playout::plan::{AirSlot, Aired, Break, Material, Timeline};
use antenne::playout::scte35;

#[allow(dead_code)]
#[path = "../tests/common/ts.rs"]
mod tr101290;

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let r = match std::env::var("ANTENNE_BENCH_PLAYOUT").as_deref() {
        Ok("soak") => long_run(false),
        Ok("realtime") => long_run(true),
        Ok("") | Err(_) => run(),
        Ok(other) => Err(format!(
            "ANTENNE_BENCH_PLAYOUT={other:?}: soak, realtime, or unset for the 1080i25 comparison"
        )),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nbench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// CPU seconds (user + system) of this process, from /proc.
fn cpu_self() -> Res<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| e.to_string())?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("odd /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Ok((ticks(11) + ticks(12)) / 100.0)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
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

/// An XDCAM HD422-like file: 1080i25 TFF MPEG-2 4:2:2 50 Mb/s CBR, GOP 12, 4 mono PCM tracks.
fn xdcam(dir: &Path, i: u32, seconds: u32) -> Res<PathBuf> {
    let out = dir.join(format!("src{i}.mxf"));
    let secs = seconds.to_string();
    let mut args: Vec<String> = vec![
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("testsrc2=size=1920x1080:rate=25,setfield=tff,format=yuv422p"),
    ];
    for t in 0..4 {
        args.extend([
            "-f".into(),
            "lavfi".into(),
            "-i".into(),
            format!("sine=frequency={}:sample_rate=48000", 300 + 100 * (i + t)),
        ]);
    }
    args.extend(["-t".into(), secs, "-map".into(), "0:v".into()]);
    for t in 1..=4 {
        args.extend(["-map".into(), format!("{t}:a")]);
    }
    for a in [
        "-c:v",
        "mpeg2video",
        "-b:v",
        "50M",
        "-minrate",
        "50M",
        "-maxrate",
        "50M",
        "-bufsize",
        "17825792",
        "-g",
        "12",
        "-bf",
        "2",
        "-flags",
        "+ildct+ilme",
        "-top",
        "1",
        "-c:a",
        "pcm_s24le",
        "-f",
        "mxf",
    ] {
        args.push(a.into());
    }
    args.push(out.to_string_lossy().into_owned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ffmpeg(&refs)?;
    Ok(out)
}

struct Fixed(Vec<AirSlot>);

impl Timeline for Fixed {
    fn slot_at(&self, frame: u64) -> Option<AirSlot> {
        self.0
            .iter()
            .find(|s| s.start <= frame && frame < s.end())
            .cloned()
    }
}

struct Count(AtomicU64);

impl ChunkSink for Count {
    fn deliver(&self, chunk: Chunk) {
        self.0.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
}

const VIDEO_BPS: u64 = 8_000_000;
const AUDIO_BPS: u64 = 192_000;
const MUXRATE: u64 = 10_000_000;

fn run() -> Res<()> {
    let seconds: u32 = std::env::var("ANTENNE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let keep = std::env::var("ANTENNE_BENCH_DIR").ok();
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = keep.map_or_else(|| tmp.path().to_owned(), PathBuf::from);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    eprintln!("making 3 XDCAM-like 1080i25 files of {seconds} s…");
    let files: Vec<PathBuf> = (0..3)
        .map(|i| xdcam(&dir, i, seconds))
        .collect::<Res<_>>()?;
    let per = u64::from(seconds) * 25;
    // The second file from 2 s in (an in point), the others whole.
    let in2 = 50.min(per / 2);
    let lens = [per, per - in2, per];
    let mut slots = Vec::new();
    let mut start = 0;
    for (i, f) in files.iter().enumerate() {
        slots.push(AirSlot {
            item: format!("item{i}"),
            start,
            frames: lens[i],
            material: Material::File {
                path: f.clone(),
                asset_id: format!("a{i}"),
                house_id: format!("H{i}"),
                in_frame: if i == 1 { in2 } else { 0 },
            },
            breaks: vec![],
            secondary: vec![],
        });
        start += lens[i];
    }
    let total = start;
    let media_s = total as f64 / 25.0;

    // antenne.
    let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let house = House {
        width: 1920,
        height: 1080,
        rate: (25, 1),
        sample_rate: 48000,
        channels: 2,
    };
    let mut spec = ChannelSpec::new("bench", house, true, epoch);
    let bytes = Arc::new(Count(AtomicU64::new(0)));
    spec.outputs.push(ChannelOutput::Ts {
        name: "ts".into(),
        sink: bytes.clone(),
        encode: TsEncode {
            video_bitrate: VIDEO_BPS,
            preset: "veryfast".into(),
            gop_frames: 25,
            b_frames: 2,
            audio: TsAudio::Aac { bitrate: AUDIO_BPS },
            muxrate: Some(MUXRATE),
        },
    });
    let underruns = Arc::new(Mutex::new(0u64));
    let cpu0 = cpu_self()?;
    let t0 = Instant::now();
    let ch = Channel::start(
        spec,
        Arc::new(Fixed(slots)),
        Arc::new(FastClock::starting_at(epoch)),
        |_| {},
    )
    .map_err(|e| e.to_string())?;
    if !ch.wait_for_frame(total - 1, Duration::from_secs(3600)) {
        return Err(format!("the channel stopped: {:?}", ch.status().error));
    }
    let st = ch.status();
    *underruns.lock().unwrap() = st.underruns;
    let aired = ch.stop().map_err(|e| e.to_string())?;
    let ours_wall = t0.elapsed().as_secs_f64();
    let ours_cpu = cpu_self()? - cpu0;
    let ours_rss = peak_rss_mb();
    let aired_s = aired as f64 / 25.0;
    eprintln!(
        "antenne: {aired} frames, {:.1} MB of TS, filler {} frames",
        bytes.0.load(Ordering::Relaxed) as f64 / 1e6,
        st.filler_frames
    );

    // ffmpeg: the same conform and encode of a concat of the same files.
    let list = dir.join("list.txt");
    let mut text = String::new();
    for (i, f) in files.iter().enumerate() {
        text.push_str(&format!("file '{}'\n", f.display()));
        if i == 1 {
            text.push_str(&format!("inpoint {}\n", in2 as f64 / 25.0));
        }
    }
    std::fs::write(&list, text).map_err(|e| e.to_string())?;
    let out_ts = dir.join("ffmpeg.ts");
    let timing = dir.join("time.txt");
    let t1 = Instant::now();
    let o = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%U %S %M")
        .arg("-o")
        .arg(&timing)
        .args(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i"])
        .arg(&list)
        .args([
            "-filter_complex",
            "[0:v]fps=25,format=yuv420p[v];[0:a:0][0:a:1]amerge=inputs=2,aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo[a]",
            "-map", "[v]", "-map", "[a]",
            "-c:v", "libx264", "-preset", "veryfast", "-b:v", "8M", "-maxrate", "8M",
            "-minrate", "8M", "-bufsize", "4M", "-g", "25", "-keyint_min", "25", "-sc_threshold",
            "0", "-bf", "2", "-flags", "+ildct+ilme", "-x264-params", "tff=1:nal-hrd=cbr",
            "-c:a", "aac", "-b:a", "192k", "-f", "mpegts", "-muxrate", "10M",
        ])
        .arg(&out_ts)
        .output()
        .map_err(|e| format!("/usr/bin/time ffmpeg: {e}"))?;
    let peer_wall = t1.elapsed().as_secs_f64();
    if !o.status.success() {
        return Err(format!(
            "ffmpeg peer: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let t = std::fs::read_to_string(&timing).map_err(|e| e.to_string())?;
    let f: Vec<f64> = t
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    if f.len() < 3 {
        return Err(format!("/usr/bin/time said {t:?}"));
    }
    let (peer_cpu, peer_rss) = (f[0] + f[1], f[2] / 1024.0);

    println!("\nplayout bench: one 1080i25 channel, {media_s:.0} s of schedule (3 XDCAM-like files), x264 veryfast 8 Mb/s interlaced + AAC, CBR TS");
    println!(
        "{:<10} {:>14} {:>12} {:>10} {:>12}",
        "", "core share", "speed (×RT)", "CPU s", "peak RSS MB"
    );
    println!(
        "{:<10} {:>14.2} {:>12.2} {:>10.1} {:>12.0}",
        "antenne",
        ours_cpu / aired_s,
        aired_s / ours_wall,
        ours_cpu,
        ours_rss
    );
    println!(
        "{:<10} {:>14.2} {:>12.2} {:>10.1} {:>12.0}",
        "ffmpeg",
        peer_cpu / media_s,
        media_s / peer_wall,
        peer_cpu,
        peer_rss
    );
    println!(
        "ratio (antenne / ffmpeg CPU per media second): {:.2}",
        (ours_cpu / aired_s) / (peer_cpu / media_s)
    );
    Ok(())
}

/// A small clip for the long runs: a test pattern and a tone of its own.
fn small_clip(dir: &Path, i: u32) -> Res<PathBuf> {
    let out = dir.join(format!("small{i}.mp4"));
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=25:duration=4",
        "-f",
        "lavfi",
        "-i",
        &format!(
            "sine=frequency={}:duration=4:sample_rate=48000",
            500 * (i + 1)
        ),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "25",
        "-c:a",
        "aac",
        "-shortest",
        out.to_str().ok_or("odd path")?,
    ])?;
    Ok(out)
}

/// Ten seconds that repeat: clip 0 (73 frames), clip 1 from frame 10 with a break (90), filler
/// (17), clip 2 (70).
struct Cycle(Vec<PathBuf>);

impl Timeline for Cycle {
    fn slot_at(&self, frame: u64) -> Option<AirSlot> {
        let cycle = frame / 250;
        let at = frame % 250;
        let parts: [(u64, u64); 4] = [(0, 73), (73, 90), (163, 17), (180, 70)];
        let k = parts.iter().rposition(|(s, _)| *s <= at)?;
        let (s, len) = parts[k];
        let file = |c: usize, in_frame| Material::File {
            path: self.0[c].clone(),
            asset_id: format!("a{c}"),
            house_id: format!("H{c}"),
            in_frame,
        };
        let (material, breaks) = match k {
            0 => (file(0, 0), vec![]),
            1 => (
                file(1, 10),
                vec![Break {
                    at: 30,
                    duration: 40,
                    event_id: cycle as u32,
                    time_signal: false,
                }],
            ),
            2 => (Material::Filler, vec![]),
            _ => (file(2, 0), vec![]),
        };
        Some(AirSlot {
            item: format!("c{cycle}-{k}"),
            start: cycle * 250 + s,
            frames: len,
            material,
            breaks,
            secondary: vec![],
        })
    }
}

/// Follows the running TS: video and audio PES times (FFmpeg's PIDs 0x100 and 0x101), unwrapped
/// over the 33-bit clock; and keeps the bytes when asked.
#[derive(Default)]
struct Watch {
    video_pes: u64,
    first_video: Option<u64>,
    max_video: u64,
    last_audio: u64,
    kept: Option<std::io::BufWriter<std::fs::File>>,
}

impl Watch {
    fn unwrap(&self, pts: u64) -> u64 {
        let base = self.first_video.unwrap_or(pts);
        let rel = pts.wrapping_sub(base) & ((1 << 33) - 1);
        let mut abs = ((self.max_video >> 33) << 33) + rel;
        if abs + (1 << 32) < self.max_video {
            abs += 1 << 33;
        }
        abs
    }
}

struct Watched(Mutex<Watch>);

impl ChunkSink for Watched {
    fn deliver(&self, chunk: Chunk) {
        use std::io::Write;
        let mut w = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = w.kept.as_mut() {
            let _ = k.write_all(&chunk);
        }
        for p in chunk.chunks(188) {
            if p.len() < 4 {
                continue;
            }
            let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
            let Some(pts) = scte35::pes_pts(p) else {
                continue;
            };
            match pid {
                0x100 => {
                    w.video_pes += 1;
                    w.first_video.get_or_insert(pts);
                    let abs = w.unwrap(pts);
                    w.max_video = w.max_video.max(abs);
                }
                0x101 => w.last_audio = w.unwrap(pts),
                _ => {}
            }
        }
    }
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The soak (fast clock) or the real-time run on the small house format.
fn long_run(realtime: bool) -> Res<()> {
    let env_f = |k: &str, d: f64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(d)
    };
    let media_s = if realtime {
        env_f("ANTENNE_BENCH_MINUTES", 10.0) * 60.0
    } else {
        env_f("ANTENNE_PLAYOUT_SOAK_HOURS", 24.0) * 3600.0
    };
    let frames = (media_s * 25.0) as u64;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir =
        std::env::var("ANTENNE_BENCH_DIR").map_or_else(|_| tmp.path().to_owned(), PathBuf::from);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let clips: Vec<PathBuf> = (0..3).map(|i| small_clip(&dir, i)).collect::<Res<_>>()?;
    let house = House {
        width: 320,
        height: 180,
        rate: (25, 1),
        sample_rate: 48000,
        channels: 2,
    };
    let (epoch, clock): (SystemTime, Arc<dyn Clock>) = if realtime {
        (
            SystemTime::now() + Duration::from_millis(500),
            Arc::new(SystemClock),
        )
    } else {
        let e = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        (e, Arc::new(FastClock::starting_at(e)))
    };
    let ts_path = dir.join("realtime.ts");
    let watch = Arc::new(Watched(Mutex::new(Watch {
        kept: if realtime {
            Some(std::io::BufWriter::new(
                std::fs::File::create(&ts_path).map_err(|e| e.to_string())?,
            ))
        } else {
            None
        },
        ..Watch::default()
    })));
    let mut spec = ChannelSpec::new("long", house, false, epoch);
    spec.outputs.push(ChannelOutput::Ts {
        name: "ts".into(),
        sink: watch.clone(),
        encode: TsEncode {
            video_bitrate: 400_000,
            preset: "ultrafast".into(),
            gop_frames: 25,
            b_frames: 0,
            audio: TsAudio::Aac { bitrate: 64_000 },
            muxrate: Some(2_500_000),
        },
    });
    let aired: Arc<Mutex<Vec<Aired>>> = Arc::default();
    let a = aired.clone();
    let t0 = Instant::now();
    let ch = Channel::start(spec, Arc::new(Cycle(clips.clone())), clock, move |x| {
        a.lock().unwrap_or_else(|e| e.into_inner()).push(x)
    })
    .map_err(|e| e.to_string())?;
    let kind = if realtime { "real-time" } else { "soak" };
    eprintln!("{kind}: {media_s:.0} s of schedule ({frames} frames) at 320x180p25");
    println!(
        "{:>9} {:>10} {:>8} {:>9} {:>6} {:>13} {:>12} {:>8}",
        "air h", "frames", "wall s", "speed ×", "late", "underruns", "A/V ticks", "RSS MB"
    );
    let report_every = if realtime { 60 * 25 } else { 3600 * 25 };
    let mut next = report_every.min(frames - 1);
    let row = |st: &antenne::playout::engine::ChannelStatus, w: &Watch| {
        let wall = t0.elapsed().as_secs_f64();
        let air = st.frames_out as f64 / 25.0;
        println!(
            "{:>9.2} {:>10} {:>8.0} {:>9.1} {:>6} {:>13} {:>12} {:>8.0}",
            air / 3600.0,
            st.frames_out,
            wall,
            air / wall.max(0.001),
            st.late_frames,
            st.underruns,
            w.max_video as i64 - w.last_audio as i64,
            rss_mb()
        );
    };
    loop {
        if !ch.wait_for_frame(next, Duration::from_secs(24 * 3600)) {
            return Err(format!("the channel stopped: {:?}", ch.status().error));
        }
        let st = ch.status();
        row(&st, &watch.0.lock().unwrap_or_else(|e| e.into_inner()));
        if next >= frames - 1 {
            break;
        }
        next = (next + report_every).min(frames - 1);
    }
    let st = ch.status();
    let out = ch.stop().map_err(|e| e.to_string())?;
    let mut w = watch.0.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = w.kept.as_mut() {
        use std::io::Write;
        k.flush().map_err(|e| e.to_string())?;
    }
    // Frame/PTS drift: the last picture's PTS against (pictures - 1) frame periods.
    let pts_drift = w.max_video as i64 - (w.video_pes.saturating_sub(1) * 3600) as i64;
    let av = w.max_video as i64 - w.last_audio as i64;
    println!(
        "\n{kind}: {out} frames in {:.0} s; pictures out {}; frame/PTS drift {pts_drift} ticks; \
         A/V (last audio PES to last picture) {av} ticks ({:.1} ms); late {}; underruns {}; \
         filler {} frames; cues {}; RSS {:.0} MB (peak {:.0})",
        t0.elapsed().as_secs_f64(),
        w.video_pes,
        av as f64 / 90.0,
        st.late_frames,
        st.underruns,
        st.filler_frames,
        st.cues_sent,
        rss_mb(),
        peak_rss_mb()
    );
    let aired = aired.lock().unwrap_or_else(|e| e.into_inner());
    let tl = Cycle(clips);
    let mut at = aired.first().map_or(0, |x| x.start);
    let mut gaps = 0;
    for x in aired.iter() {
        if x.start != at || tl.slot_at(x.start).is_none_or(|s| s.item != x.slot.item) {
            gaps += 1;
        }
        at = x.start + x.frames;
    }
    println!(
        "as-run: {} entries, {gaps} out of place, covering {} frames",
        aired.len(),
        at - aired.first().map_or(0, |x| x.start)
    );
    if realtime {
        drop(w);
        let data = std::fs::read(&ts_path).map_err(|e| e.to_string())?;
        let rep = tr101290::check(&data, tr101290::Limits::default());
        println!(
            "TR 101 290 priority 1/2 over {:.1} MB: {}",
            data.len() as f64 / 1e6,
            if rep.is_clean() {
                "0 errors".to_string()
            } else {
                format!("{:?}", rep.first_errors)
            }
        );
        if !rep.is_clean() {
            return Err("the TS is not clean".into());
        }
    }
    if gaps > 0 || st.underruns > 0 && !realtime {
        return Err(format!(
            "{gaps} as-run entries out of place, {} underruns",
            st.underruns
        ));
    }
    Ok(())
}
