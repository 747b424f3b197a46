//! Test media made on the fly with the `ffmpeg` CLI (small: 320×180, a couple of seconds), and
//! helpers to run antenne and independent readers (`ffprobe`, `mediainfo`).
#![allow(dead_code)]

pub mod browser;
pub mod live;
pub mod pg;
pub mod relay;
pub mod s3;
pub mod server;
pub mod ts;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn antenne() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_antenne"));
    c.env(
        "ANTENNE_PROFILES_DIR",
        concat!(env!("CARGO_MANIFEST_DIR"), "/firmware-config/profiles"),
    );
    c
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("spawn command")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs ffmpeg with the given arguments, panicking with its stderr on failure.
pub fn ffmpeg(args: &[&str]) {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg is installed (apt install ffmpeg)");
    assert!(o.status.success(), "ffmpeg {args:?} failed: {}", stderr(&o));
}

/// A clip: `video` is a lavfi video filter suffix (e.g. "setfield=tff"), audio a list of
/// per-stream channel counts; encoded with the given extra arguments.
pub struct Clip<'a> {
    pub size: &'a str,
    pub rate: &'a str,
    pub seconds: f64,
    pub vf: Option<&'a str>,
    pub audio_streams: &'a [u32],
    pub extra: &'a [&'a str],
}

impl Default for Clip<'_> {
    fn default() -> Self {
        Clip {
            size: "320x180",
            rate: "25",
            seconds: 2.0,
            vf: None,
            audio_streams: &[2],
            extra: &[
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "pcm_s24le",
            ],
        }
    }
}

pub fn make(dir: &Path, name: &str, clip: &Clip<'_>) -> PathBuf {
    let out = dir.join(name);
    let secs = clip.seconds.to_string();
    let mut args: Vec<String> = vec![
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("testsrc2=size={}:rate={}", clip.size, clip.rate),
    ];
    for (i, _) in clip.audio_streams.iter().enumerate() {
        args.extend([
            "-f".into(),
            "lavfi".into(),
            "-i".into(),
            format!("sine=frequency={}:sample_rate=48000", 440 + 110 * i),
        ]);
    }
    args.extend(["-t".into(), secs]);
    args.extend(["-map".into(), "0:v".into()]);
    for (i, ch) in clip.audio_streams.iter().enumerate() {
        args.extend(["-map".into(), format!("{}:a", i + 1)]);
        args.extend([format!("-ac:a:{i}"), ch.to_string()]);
    }
    if let Some(vf) = clip.vf {
        args.extend(["-vf".into(), vf.into()]);
    }
    args.extend(clip.extra.iter().map(|s| s.to_string()));
    args.push(out.to_string_lossy().into_owned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ffmpeg(&refs);
    out
}

/// ffprobe's JSON for a file (format + streams, frames counted when asked).
pub fn ffprobe(path: &Path, count_frames: bool) -> serde_json::Value {
    let mut c = Command::new("ffprobe");
    c.args([
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
    ]);
    if count_frames {
        c.arg("-count_frames");
    }
    let o = c.arg(path).output().expect("ffprobe is installed");
    assert!(o.status.success(), "ffprobe failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("ffprobe JSON")
}

/// `ffprobe`'s CSV of the given frame entries of the first video stream (its exit status is
/// for the caller to check).
pub fn ffprobe_frames(path: &Path, entries: &str) -> Output {
    Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg(format!("frame={entries}"))
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe is installed")
}

/// Per-frame data of the first video stream: (pts_time, key, interlaced, top_field_first).
pub fn video_frames(path: &Path) -> Vec<(f64, bool, bool, bool)> {
    let o = ffprobe_frames(path, "pts_time,key_frame,interlaced_frame,top_field_first");
    // A failed or empty read is the peer's failure, not a list that passes every `all(...)`.
    assert!(
        o.status.success(),
        "ffprobe frames of {} failed: {}",
        path.display(),
        stderr(&o)
    );
    let frames: Vec<(f64, bool, bool, bool)> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            // ffprobe prints the entries in its own order: key_frame, pts_time, interlaced, tff.
            (
                // `N/A` where the container gives a frame no time.
                f.get(1).and_then(|t| t.parse().ok()).unwrap_or(f64::NAN),
                f[0] == "1",
                f.get(2) == Some(&"1"),
                f.get(3) == Some(&"1"),
            )
        })
        .collect();
    assert!(
        !frames.is_empty(),
        "ffprobe found no video frame in {}",
        path.display()
    );
    frames
}

/// PSNR (average, dB) of `a` against `b` after scaling `b` to `a`'s size.
pub fn psnr(a: &Path, b: &Path, size: &str) -> f64 {
    psnr_graph(
        a,
        b,
        &format!("[1:v]scale={size},format=yuv420p[r];[0:v]format=yuv420p[d];[d][r]psnr"),
    )
}

/// Average PSNR (dB) printed by a `psnr` filter graph over inputs `a` (0) and `b` (1).
pub fn psnr_graph(a: &Path, b: &Path, lavfi: &str) -> f64 {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "info", "-i"])
        .arg(a)
        .arg("-i")
        .arg(b)
        .args(["-lavfi", lavfi, "-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    let err = stderr(&o);
    assert!(o.status.success(), "ffmpeg psnr failed: {err}");
    let line = err
        .lines()
        .find(|l| l.contains("PSNR") && l.contains("average:"))
        .unwrap_or_else(|| panic!("no PSNR in {err}"));
    let v = line
        .split("average:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    if v == "inf" {
        99.0
    } else {
        v.parse().unwrap()
    }
}

/// `mediainfo --Inform=…` output.
pub fn mediainfo(path: &Path, inform: &str) -> String {
    let o = Command::new("mediainfo")
        .arg(format!("--Inform={inform}"))
        .arg(path)
        .output()
        .expect("mediainfo is installed (apt install mediainfo)");
    assert!(o.status.success(), "mediainfo failed: {}", stderr(&o));
    stdout(&o)
}

/// Files in `dir` (names).
pub fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// ffmpeg's own figures: (integrated LUFS, LRA LU, true peak dBFS).
pub fn ebur128_reference(path: &std::path::Path, filter_prefix: &str) -> (f64, f64, f64) {
    let o = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-nostats", "-i"])
        .arg(path)
        .args([
            "-filter_complex",
            &format!("{filter_prefix}ebur128=peak=true"),
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "ffmpeg ebur128 failed: {err}");
    // ffmpeg configures the graph twice and prints a summary each time: the last one counts.
    let summary = err
        .rsplit("Summary:")
        .next()
        .filter(|_| err.contains("Summary:"))
        .unwrap_or_else(|| panic!("no summary: {err}"));
    let grab = |key: &str| -> f64 {
        let line = summary
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap();
        line.split(':')
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (grab("I:"), grab("LRA:"), grab("Peak:"))
}

/// A program from the checkout's `.venv/bin` (the PyPI peers `scripts/setup.sh` installs:
/// `weed`, `threefive`, `aiosmtpd`, the python that has them).
pub fn venv_bin(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run ./scripts/setup.sh (make test does)",
        p.display()
    );
    p
}
