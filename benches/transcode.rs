//! Transcode benchmark: the same three-rendition H.264 ladder encoded by the `ffmpeg` CLI and by
//! antenne, in the same run, on the same generated source (the machines are noisy, so the figure
//! that matters is the ratio); then the `hls-ladder` delivery profile (five H.264 renditions and an
//! audio-only AAC rendition in 6 s fMP4 segments) against one `ffmpeg` invocation producing the
//! same ladder (one decode, split, same encoder settings), with the PSNR / SSIM of the top
//! rendition of each. Also prints antenne's × real time for the `web-h264` and
//! `xdcam-hd422-1080i25` profiles. antenne runs with `--no-verify` throughout, so that only the
//! encode is timed (its verification is a separate decode pass that ffmpeg does not do).
//!
//! Run: `cargo bench --bench transcode`. Environment:
//! - `ANTENNE_BENCH_SECONDS`: source duration in seconds (default 10);
//! - `ANTENNE_BENCH_DIR`: work directory to use (and keep) instead of a temporary one;
//! - `CARGO_BIN_EXE_antenne`: the antenne binary (default: the one cargo built for this bench,
//!   else `target/release/antenne`, built with `cargo build --release` when missing).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::time::Instant;

const FPS: u32 = 25;
const RUNS: usize = 2;

/// One rendition of the ladder: name, width, height, video bitrate in kb/s.
const LADDER: [(&str, u32, u32, u32); 3] = [
    ("1080", 1920, 1080, 5000),
    ("720", 1280, 720, 3000),
    ("480", 854, 480, 1200),
];

/// The video renditions of `firmware-config/profiles/hls-ladder.toml`: name, width, height,
/// bitrate, maxrate, bufsize, H.264 profile (all libx264 veryfast, level 4.2, GOP 2 s, 3 B-frames).
const HLS_LADDER: [(&str, u32, u32, &str, &str, &str, &str); 5] = [
    ("1080p", 1920, 1080, "6M", "6600k", "12M", "high"),
    ("720p", 1280, 720, "3M", "3300k", "6M", "high"),
    ("540p", 960, 540, "2M", "2200k", "4M", "high"),
    ("360p", 640, 360, "800k", "880k", "1600k", "main"),
    ("234p", 416, 234, "150k", "165k", "300k", "main"),
];
/// The audio-only rendition of `hls-ladder` (AAC 128 kb/s stereo 48 kHz).
const HLS_AUDIO: &str = "audio";
/// The package directory antenne makes for `src.mkv` with the `hls-ladder` profile.
const HLS_PACKAGE: &str = "src_hls-ladder";

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nbench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Res<()> {
    let secs: u32 =
        match std::env::var("ANTENNE_BENCH_SECONDS") {
            Ok(s) => s.trim().parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                format!("ANTENNE_BENCH_SECONDS={s:?} is not a positive whole number")
            })?,
            Err(_) => 10,
        };
    let (_tmp, work) = match std::env::var_os("ANTENNE_BENCH_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            std::fs::create_dir_all(&d)
                .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
            (None, d)
        }
        None => {
            let t = tempfile::tempdir()
                .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
            let p = t.path().to_owned();
            (Some(t), p)
        }
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let antenne = antenne_binary(manifest)?;
    println!("antenne transcode benchmark");
    println!("  work dir : {}", work.display());
    println!("  antenne  : {}", antenne.display());
    let peers = peers(manifest)?;
    println!(
        "  cpus     : {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  source   : 1920x1080 {FPS} fps, {secs} s, testsrc2 + temporal noise, PCM stereo 48 kHz"
    );

    // 1. Sources.
    let src = work.join("src.mkv");
    let t = Instant::now();
    make_source(&src, secs, false)?;
    let src_frames = count_video_packets(&src)?;
    println!(
        "  generated {} ({src_frames} frames) in {:.1} s",
        src.display(),
        t.elapsed().as_secs_f64()
    );
    let src_i = work.join("src_1080i25.mkv");
    make_source(&src_i, secs, true)?;
    let order = field_order(&src_i)?;
    if order != "tt" {
        return Err(format!(
            "{} should be flagged interlaced top field first (field_order=tt), ffprobe says {order:?}",
            src_i.display()
        ));
    }
    println!("  generated {} (field_order={order})", src_i.display());

    // 2-3. The ladder, alternating ffmpeg and antenne.
    let profiles = work.join("profiles");
    std::fs::create_dir_all(&profiles)
        .map_err(|e| format!("cannot create {}: {e}", profiles.display()))?;
    let profile_file = profiles.join("bench-ladder.toml");
    std::fs::write(&profile_file, ladder_profile())
        .map_err(|e| format!("cannot write {}: {e}", profile_file.display()))?;
    let an_out = work.join("out_antenne");
    let mut an_times = Vec::new();
    let mut peer_times: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
    println!("\nladder 1080p/720p/480p H.264 veryfast + AAC, {RUNS} runs each, alternating:");
    for i in 1..=RUNS {
        for ((label, bin), times) in peers.iter().zip(&mut peer_times) {
            let s = ffmpeg_ladder(bin, &src, &work.join(format!("out_{label}")))?;
            println!(
                "  run {i} {label:<9}: {s:7.2} s  {:7.2} fps",
                src_frames as f64 / s
            );
            times.push(s);
        }
        let s = antenne_transcode(&antenne, &src, "bench-ladder", &an_out, &profiles)?;
        println!(
            "  run {i} antenne  : {s:7.2} s  {:7.2} fps",
            src_frames as f64 / s
        );
        an_times.push(s);
    }
    let best = |t: &[f64]| t.iter().copied().fold(f64::INFINITY, f64::min);
    let an_fps = src_frames as f64 / best(&an_times);

    // 4. Quality of the top rendition, and the bitrates reached.
    let mut rows = Vec::new();
    for ((label, _), times) in peers.iter().zip(&peer_times) {
        let top = work.join(format!("out_{label}")).join("src_1080.mp4");
        rows.push((label.as_str(), times, quality(&top, &src, Metric::Psnr)?));
    }
    let an_psnr = quality(&an_out.join("src_1080.mp4"), &src, Metric::Psnr)?;
    rows.push(("antenne", &an_times, an_psnr));

    let mut table = String::new();
    let _ = writeln!(table, "\n{:-<78}", "");
    let _ = writeln!(
        table,
        "{:<10} {:>9} {:>9} {:>10} {:>14}  runs",
        "ladder", "best s", "fps", "x realtime", "1080 PSNR dB"
    );
    let _ = writeln!(table, "{:-<78}", "");
    for (name, times, p) in &rows {
        let b = best(times);
        let runs = times
            .iter()
            .map(|t| format!("{t:.2}"))
            .collect::<Vec<_>>()
            .join("/");
        let _ = writeln!(
            table,
            "{name:<10} {b:>9.2} {:>9.2} {:>10.2} {p:>14.2}  {runs}",
            src_frames as f64 / b,
            f64::from(secs) / b
        );
    }
    let _ = writeln!(table, "{:-<78}", "");
    for ((label, _), times) in peers.iter().zip(&peer_times) {
        let ratio = an_fps / (src_frames as f64 / best(times));
        let _ = writeln!(
            table,
            "antenne_fps / {label}_fps = {ratio:.3}  (goal >= 1.0: {})",
            if ratio >= 1.0 { "met" } else { "NOT met" }
        );
    }
    let _ = writeln!(
        table,
        "\n{:<10} {:>16} {:>16} {:>10}",
        "rendition", "ffmpeg kb/s", "antenne kb/s", "target"
    );
    let ff_out = work.join(format!("out_{}", peers[0].0));
    for (name, _, _, kbps) in LADDER {
        let f = file_kbps(&ff_out.join(format!("src_{name}.mp4")), secs)?;
        let a = file_kbps(&an_out.join(format!("src_{name}.mp4")), secs)?;
        let _ = writeln!(table, "{name:<10} {f:>16.0} {a:>16.0} {:>10}", kbps + 128);
    }
    print!("{table}");

    // 5. The hls-ladder delivery profile against the same ladder by the ffmpeg CLI.
    let fw_profiles = manifest.join("firmware-config").join("profiles");
    hls_ladder(
        &peers,
        &antenne,
        &src,
        src_frames,
        secs,
        &work,
        &fw_profiles,
    )?;

    // 6. Delivery profiles, × real time.
    println!("\nantenne delivery profiles (one run each, wall clock of the whole command):");
    println!("{:-<78}", "");
    println!(
        "{:<22} {:<20} {:>9} {:>9} {:>10}",
        "profile", "source", "seconds", "fps", "x realtime"
    );
    println!("{:-<78}", "");
    for (profile, source, label) in [
        ("web-h264", &src, "1080p25"),
        ("xdcam-hd422-1080i25", &src_i, "1080i25 (TFF)"),
    ] {
        let out = work.join(format!("out_{profile}"));
        let s = antenne_transcode(&antenne, source, profile, &out, &fw_profiles)?;
        println!(
            "{profile:<22} {label:<20} {s:>9.2} {:>9.2} {:>10.2}",
            src_frames as f64 / s,
            f64::from(secs) / s
        );
    }
    println!("{:-<78}", "");

    // 7. What verification costs: the same transcode with and without it, alternating.
    println!("\nverification cost (wall clock with verification vs --no-verify, best of {RUNS}):");
    println!("{:-<78}", "");
    println!(
        "{:<22} {:>12} {:>12} {:>10} {:>10}",
        "profile", "no-verify s", "verify s", "cost", "goal <=5%"
    );
    println!("{:-<78}", "");
    for (profile, source) in [
        ("xdcam-hd422-1080i25", &src_i),
        ("web-h264", &src),
        ("proxy", &src),
    ] {
        let out = work.join(format!("out_v_{profile}"));
        let (mut plain, mut checked) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..RUNS {
            plain = plain.min(antenne_run(&antenne, source, profile, &out, &fw_profiles, false)?.0);
            checked =
                checked.min(antenne_run(&antenne, source, profile, &out, &fw_profiles, true)?.0);
        }
        let cost = (checked - plain) / plain;
        println!(
            "{profile:<22} {plain:>12.2} {checked:>12.2} {:>9.1}% {:>10}",
            cost * 100.0,
            if cost <= 0.05 { "met" } else { "NOT met" }
        );
    }
    println!("{:-<78}", "");

    // 8. Peak memory: the ladder from this source and from one twice as long. A decode loop that
    // kept each packet's buffer would grow by the source's size.
    let src_long = work.join("src_long.mkv");
    make_source(&src_long, secs * 2, false)?;
    println!("\npeak memory (RSS) of the 3-rung ladder, one run each:");
    println!("{:-<78}", "");
    println!(
        "{:<12} {:<9} {:>9} {:>10} {:>12} {:>10} {:>7}",
        "source", "peer", "size MiB", "peer MiB", "antenne MiB", "antenne s", "ratio"
    );
    println!("{:-<78}", "");
    let mut peaks = Vec::new();
    for (label, s) in [
        (format!("{secs} s"), &src),
        (format!("{} s", secs * 2), &src_long),
    ] {
        let size = std::fs::metadata(s).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
        for (peer, bin) in &peers {
            let ((_, ff_mib), (an_s, an_mib)) = ladder_memory(bin, &antenne, s, &work, &profiles)?;
            let ratio = an_mib / ff_mib;
            println!(
                "{label:<12} {peer:<9} {size:>9.0} {ff_mib:>10.0} {an_mib:>12.0} {an_s:>10.2} {ratio:>6.2}x"
            );
            if peer == &peers[0].0 {
                peaks.push(an_mib);
            }
        }
    }
    println!("{:-<78}", "");
    if let [a, b] = peaks[..] {
        println!(
            "antenne peak at 2x the length / at 1x = {:.2} (goal: no growth, ~1.0; ratio to ffmpeg goal <= 1.2)",
            b / a
        );
    }
    Ok(())
}

/// The second peer: the newest ffmpeg release (a static, fully threaded build), from
/// `ANTENNE_FFMPEG_NEWEST`, else the one `scripts/setup.sh` puts in `.venv` (imageio-ffmpeg).
fn newest_ffmpeg(manifest: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ANTENNE_FFMPEG_NEWEST") {
        return Some(PathBuf::from(p));
    }
    let lib = manifest.join(".venv").join("lib");
    for py in std::fs::read_dir(lib).ok()?.flatten() {
        let bins = py.path().join("site-packages/imageio_ffmpeg/binaries");
        let Ok(files) = std::fs::read_dir(bins) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.starts_with("ffmpeg-linux") {
                return Some(f.path());
            }
        }
    }
    None
}

/// The peers: Debian's `ffmpeg`, and the newest release when it is there.
fn peers(manifest: &Path) -> Res<Vec<(String, PathBuf)>> {
    let mut v = Vec::new();
    for bin in std::iter::once(PathBuf::from("ffmpeg")).chain(newest_ffmpeg(manifest)) {
        let out = sh(
            Command::new(&bin).arg("-version"),
            &format!("{} -version", bin.display()),
        )?;
        let first = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("?")
            .to_string();
        let version = first.split_whitespace().nth(2).unwrap_or("?");
        let major = version
            .trim_start_matches('n')
            .split('.')
            .next()
            .unwrap_or("?");
        println!("  peer     : ffmpeg {major}: {first} ({})", bin.display());
        v.push((format!("ffmpeg{major}"), bin));
    }
    if v.len() == 1 {
        println!("  peer     : the newest ffmpeg is missing (./scripts/setup.sh installs it)");
    }
    Ok(v)
}

/// The antenne binary: `CARGO_BIN_EXE_antenne` from the environment, else the one cargo built
/// for this bench, else `target/release/antenne` (built when missing).
fn antenne_binary(manifest: &Path) -> Res<PathBuf> {
    if let Some(p) = std::env::var_os("CARGO_BIN_EXE_antenne") {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = option_env!("CARGO_BIN_EXE_antenne").map(PathBuf::from) {
        if p.is_file() {
            return Ok(p);
        }
    }
    let p = manifest.join("target").join("release").join("antenne");
    if !p.is_file() {
        eprintln!("{} is missing: running cargo build --release", p.display());
        sh(
            Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args(["build", "--release", "--bin", "antenne"])
                .current_dir(manifest),
            "cargo build --release",
        )?;
        if !p.is_file() {
            return Err(format!(
                "cargo build --release did not produce {}",
                p.display()
            ));
        }
    }
    Ok(p)
}

/// Runs a command, capturing its output; a failure (cannot start, non-zero exit) is an error
/// carrying the command line and its stderr.
fn sh(cmd: &mut Command, what: &str) -> Res<Output> {
    let line = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run {line}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{what} failed ({})\ncommand: {line}\n--- stderr ---\n{}\n--- stdout ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end(),
            String::from_utf8_lossy(&out.stdout).trim_end()
        ))
    }
}

/// Runs a command to the end and returns its wall time in seconds and its peak resident memory
/// in MiB (the kernel's `ru_maxrss` of that one child, from `wait4`); stdout and stderr go to
/// files beside `log`, shown when it fails.
fn measured(cmd: &mut Command, what: &str, log: &Path) -> Res<(f64, f64)> {
    let line = format!("{cmd:?}");
    let out_path = log.with_extension("stdout");
    let err_path = log.with_extension("stderr");
    let file = |p: &Path| {
        std::fs::File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()))
    };
    cmd.stdout(file(&out_path)?).stderr(file(&err_path)?);
    let t = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot run {line}: {e}"))?;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills; the pid is our own child, waited once.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: as above; `status` and `usage` outlive the call.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = t.elapsed().as_secs_f64();
    if r != pid {
        return Err(format!(
            "{what}: wait4 failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!(
            "{what} failed (status {status})\ncommand: {line}\n--- stderr ---\n{}",
            std::fs::read_to_string(&err_path)
                .unwrap_or_default()
                .trim_end()
        ));
    }
    Ok((secs, usage.ru_maxrss as f64 / 1024.0))
}

fn ffmpeg() -> Command {
    ffmpeg_at(Path::new("ffmpeg"))
}

fn ffmpeg_at(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args(["-hide_banner", "-nostdin", "-y"]);
    c
}

fn make_source(path: &Path, secs: u32, interlaced: bool) -> Res<()> {
    let mut c = ffmpeg();
    c.args(["-loglevel", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=1920x1080:rate={FPS}"))
        .args(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"])
        .arg("-vf")
        .arg(if interlaced {
            "noise=alls=12:allf=t+u,setfield=tff"
        } else {
            "noise=alls=12:allf=t+u"
        })
        .arg("-t")
        .arg(secs.to_string())
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-qp",
            "10",
            "-pix_fmt",
            "yuv420p",
        ]);
    if interlaced {
        c.args(["-flags", "+ildct+ilme", "-top", "1"]);
    }
    c.args(["-c:a", "pcm_s16le", "-ac", "2"]).arg(path);
    sh(&mut c, "ffmpeg source generation").map(|_| ())
}

fn ffprobe_video(path: &Path, extra: &[&str], entry: &str) -> Res<String> {
    let out = sh(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args(extra)
            .args([
                "-show_entries",
                entry,
                "-of",
                "default=noprint_wrappers=1:nokey=1",
            ])
            .arg(path),
        "ffprobe",
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn count_video_packets(path: &Path) -> Res<u64> {
    let s = ffprobe_video(path, &["-count_packets"], "stream=nb_read_packets")?;
    s.parse().map_err(|_| {
        format!(
            "ffprobe: unexpected packet count {s:?} for {}",
            path.display()
        )
    })
}

fn field_order(path: &Path) -> Res<String> {
    ffprobe_video(path, &[], "stream=field_order")
}

/// The ladder by the ffmpeg CLI: one decode, split, three scales, three MP4 outputs.
/// The peer's ladder: one `ffmpeg` decoding once (`split`) into the three renditions.
fn ffmpeg_ladder_command(bin: &Path, src: &Path, outdir: &Path) -> Command {
    let mut c = ffmpeg_at(bin);
    c.args(["-loglevel", "error", "-i"]).arg(src).arg("-filter_complex").arg(
        "[0:v]split=3[a][b][c];[a]scale=1920:1080[v0];[b]scale=1280:720[v1];[c]scale=854:480[v2]",
    );
    for (i, (name, _, _, kbps)) in LADDER.iter().enumerate() {
        c.args(["-map", &format!("[v{i}]"), "-map", "0:a"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-profile:v",
                "high",
            ])
            .args(["-b:v", &format!("{kbps}k"), "-maxrate", &format!("{kbps}k")])
            .args(["-bufsize", &format!("{}k", kbps * 2)])
            .args([
                "-g",
                "50",
                "-keyint_min",
                "50",
                "-sc_threshold",
                "0",
                "-bf",
                "3",
            ])
            .args(["-pix_fmt", "yuv420p"])
            .args(["-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"])
            .arg(outdir.join(format!("src_{name}.mp4")));
    }
    c
}

fn ffmpeg_ladder(bin: &Path, src: &Path, outdir: &Path) -> Res<f64> {
    fresh_dir(outdir)?;
    let mut c = ffmpeg_ladder_command(bin, src, outdir);
    let (secs, _) = measured(&mut c, "ffmpeg ladder", &outdir.join("ffmpeg.log"))?;
    Ok(secs)
}

/// [`ffmpeg_ladder`] and the same ladder by antenne, each run once: (seconds, peak MiB) of
/// ffmpeg, then of antenne.
fn ladder_memory(
    ffmpeg_bin: &Path,
    antenne: &Path,
    src: &Path,
    work: &Path,
    profiles: &Path,
) -> Res<((f64, f64), (f64, f64))> {
    let ff_out = work.join("mem_ffmpeg");
    fresh_dir(&ff_out)?;
    let mut c = ffmpeg_ladder_command(ffmpeg_bin, src, &ff_out);
    let ff = measured(&mut c, "ffmpeg ladder", &work.join("mem_ffmpeg.log"))?;
    let an_out = work.join("mem_antenne");
    fresh_dir(&an_out)?;
    let mut c = Command::new(antenne);
    c.arg("transcode")
        .arg(src)
        .args(["--profile", "bench-ladder", "-o"])
        .arg(&an_out)
        .arg("--profiles-dir")
        .arg(profiles)
        .args(["--backend", "software", "--no-verify"]);
    let an = measured(&mut c, "antenne ladder", &work.join("mem_antenne.log"))?;
    Ok((ff, an))
}

fn antenne_transcode(
    bin: &Path,
    src: &Path,
    profile: &str,
    outdir: &Path,
    profiles: &Path,
) -> Res<f64> {
    antenne_run(bin, src, profile, outdir, profiles, false).map(|(s, _)| s)
}

/// One `antenne transcode`, with or without its verification: (seconds, peak MiB).
fn antenne_run(
    bin: &Path,
    src: &Path,
    profile: &str,
    outdir: &Path,
    profiles: &Path,
    verify: bool,
) -> Res<(f64, f64)> {
    fresh_dir(outdir)?;
    let mut c = Command::new(bin);
    c.arg("transcode")
        .arg(src)
        .args(["--profile", profile, "-o"])
        .arg(outdir)
        .arg("--profiles-dir")
        .arg(profiles)
        .args(["--backend", "software"]);
    if !verify {
        c.arg("--no-verify");
    }
    let log = outdir.with_extension("log");
    measured(
        &mut c,
        &format!("antenne transcode --profile {profile}"),
        &log,
    )
}

fn fresh_dir(dir: &Path) -> Res<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// A full-reference quality metric computed by ffmpeg's filter of the same name.
#[derive(Clone, Copy)]
enum Metric {
    /// Average PSNR in dB (`average:` of the `psnr` filter's summary).
    Psnr,
    /// SSIM, all planes (`All:` of the `ssim` filter's summary).
    Ssim,
}

/// The average `metric` of the video of `out` against `src`, from the summary ffmpeg logs. Both
/// inputs are put on the same time base starting at zero, so that frames pair up one to one.
fn quality(out: &Path, src: &Path, metric: Metric) -> Res<f64> {
    let (filter, tag, key) = match metric {
        Metric::Psnr => ("psnr", "PSNR", "average:"),
        Metric::Ssim => ("ssim", "SSIM", "All:"),
    };
    let o = sh(
        ffmpeg()
            .arg("-i")
            .arg(out)
            .arg("-i")
            .arg(src)
            .arg("-lavfi")
            .arg(format!(
                "[0:v]settb=AVTB,setpts=PTS-STARTPTS[o];\
                 [1:v]settb=AVTB,setpts=PTS-STARTPTS[s];[o][s]{filter}"
            ))
            .args(["-f", "null", "-"]),
        &format!("ffmpeg {filter}"),
    )?;
    let err = String::from_utf8_lossy(&o.stderr);
    err.lines()
        .filter(|l| l.contains(tag))
        .find_map(|l| l.split(key).nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| {
            format!(
                "no `{key}` in ffmpeg {filter} output for {}:\n{err}",
                out.display()
            )
        })
}

/// Times the `hls-ladder` profile against the same ladder by one `ffmpeg` invocation, alternating,
/// and prints fps, the ratio, the top rendition's PSNR / SSIM and each rendition's segments.
fn hls_ladder(
    peers: &[(String, PathBuf)],
    antenne: &Path,
    src: &Path,
    src_frames: u64,
    secs: u32,
    work: &Path,
    fw_profiles: &Path,
) -> Res<()> {
    let root = work.join("out_hls");
    fresh_dir(&root)?;
    let ff_out = root.join(&peers[0].0);
    let mut peer_times: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
    let mut an_times = Vec::new();
    let mut an_pkg = PathBuf::new();
    println!(
        "\nhls-ladder 1080p/720p/540p/360p/234p H.264 veryfast + AAC audio-only, 6 s fMP4 \
         segments, {RUNS} runs each, alternating:"
    );
    for i in 1..=RUNS {
        for ((label, bin), times) in peers.iter().zip(&mut peer_times) {
            let s = ffmpeg_hls_ladder(bin, src, &root.join(label))?;
            println!(
                "  run {i} {label:<9}: {s:7.2} s  {:7.2} fps",
                src_frames as f64 / s
            );
            times.push(s);
        }
        // antenne refuses to write over an existing package: a fresh output directory per run.
        let out = root.join(format!("antenne_run{i}"));
        let s = antenne_transcode(antenne, src, "hls-ladder", &out, fw_profiles)?;
        println!(
            "  run {i} antenne  : {s:7.2} s  {:7.2} fps",
            src_frames as f64 / s
        );
        an_times.push(s);
        an_pkg = out.join(HLS_PACKAGE);
        check_antenne_package(&an_pkg)?;
    }
    let best = |t: &[f64]| t.iter().copied().fold(f64::INFINITY, f64::min);
    let ff_times = peer_times[0].clone();
    let ff_best = best(&ff_times);
    let an_best = best(&an_times);
    let ff_fps = src_frames as f64 / ff_best;
    let an_fps = src_frames as f64 / an_best;

    // Every rendition's playlist, segments and size (the last run of each).
    let names: Vec<&str> = HLS_LADDER.iter().map(|r| r.0).chain([HLS_AUDIO]).collect();
    let mut rows = Vec::new();
    for name in &names {
        let f = hls_rendition(&ff_out.join(name).join("index.m3u8"))?;
        let a = hls_rendition(&an_pkg.join(name).join("index.m3u8"))?;
        rows.push((*name, f, a));
    }

    // Quality of the top rendition: init segment + media segments joined into one file.
    let (ff_top, an_top) = (root.join("ff_1080p.mp4"), root.join("antenne_1080p.mp4"));
    join_rendition(&rows[0].1, &ff_top)?;
    join_rendition(&rows[0].2, &an_top)?;
    let ff_top_frames = count_video_packets(&ff_top)?;
    let an_top_frames = count_video_packets(&an_top)?;
    let ff_psnr = quality(&ff_top, src, Metric::Psnr)?;
    let an_psnr = quality(&an_top, src, Metric::Psnr)?;
    let ff_ssim = quality(&ff_top, src, Metric::Ssim)?;
    let an_ssim = quality(&an_top, src, Metric::Ssim)?;

    let mut table = String::new();
    let _ = writeln!(table, "\n{:-<78}", "");
    let _ = writeln!(
        table,
        "{:<10} {:>8} {:>8} {:>8} {:>10} {:>10}  runs",
        "hls-ladder", "best s", "fps", "x rt", "1080p PSNR", "1080p SSIM"
    );
    let _ = writeln!(table, "{:-<78}", "");
    for (name, best, fps, p, q, times) in [
        (
            peers[0].0.as_str(),
            ff_best,
            ff_fps,
            ff_psnr,
            ff_ssim,
            &ff_times,
        ),
        ("antenne", an_best, an_fps, an_psnr, an_ssim, &an_times),
    ] {
        let runs = times
            .iter()
            .map(|t| format!("{t:.2}"))
            .collect::<Vec<_>>()
            .join("/");
        let _ = writeln!(
            table,
            "{name:<10} {best:>8.2} {fps:>8.2} {:>8.2} {p:>10.2} {q:>10.4}  {runs}",
            f64::from(secs) / best
        );
    }
    let _ = writeln!(table, "{:-<78}", "");
    for ((label, _), times) in peers.iter().zip(&peer_times) {
        let ratio = an_fps / (src_frames as f64 / best(times));
        let _ = writeln!(
            table,
            "antenne_fps / {label}_fps = {ratio:.3}  (goal >= 1.0: {}; runs {})",
            if ratio >= 1.0 { "met" } else { "NOT met" },
            times
                .iter()
                .map(|t| format!("{t:.2}"))
                .collect::<Vec<_>>()
                .join("/")
        );
    }
    let _ = writeln!(
        table,
        "1080p frames compared: ffmpeg {ff_top_frames}, antenne {an_top_frames} \
         (source {src_frames})"
    );
    let _ = writeln!(
        table,
        "\n{:<10} {:>9} {:>9} {:>12} {:>12} {:>10}",
        "rendition", "ff segs", "an segs", "ffmpeg kb/s", "antenne kb/s", "target"
    );
    let targets = HLS_LADDER
        .iter()
        .map(|r| r.3)
        .chain(["128k"])
        .collect::<Vec<_>>();
    for ((name, f, a), target) in rows.iter().zip(targets) {
        let _ = writeln!(
            table,
            "{name:<10} {:>9} {:>9} {:>12.0} {:>12.0} {target:>10}",
            f.segments.len(),
            a.segments.len(),
            f.bytes as f64 * 8.0 / 1000.0 / f64::from(secs),
            a.bytes as f64 * 8.0 / 1000.0 / f64::from(secs),
        );
    }
    let _ = writeln!(
        table,
        "antenne package: master.m3u8, manifest.mpd and all {} rendition playlists present \
         (every run)",
        names.len()
    );
    let _ = writeln!(
        table,
        "notes: antenne runs with --no-verify (its verification is a separate decode pass that \
         ffmpeg\n       does not do); antenne's time includes its loudness measurement and gain \
         to -16 LUFS,\n       ffmpeg applies no loudness processing; it also writes master.m3u8 \
         and manifest.mpd,\n       ffmpeg only the per-rendition playlists."
    );
    print!("{table}");
    Ok(())
}

/// The hls-ladder by the ffmpeg CLI: one decode, split into five scales, five video-only HLS
/// outputs and one audio-only HLS output, under `outdir/<rendition>/`.
fn ffmpeg_hls_ladder(bin: &Path, src: &Path, outdir: &Path) -> Res<f64> {
    fresh_dir(outdir)?;
    let mut graph = format!("[0:v]split={}", HLS_LADDER.len());
    for i in 0..HLS_LADDER.len() {
        let _ = write!(graph, "[s{i}]");
    }
    for (i, (_, w, h, ..)) in HLS_LADDER.iter().enumerate() {
        // As antenne's plan: bicubic, BT.709 in (an HD source) and out, limited range.
        let _ = write!(
            graph,
            ";[s{i}]scale={w}:{h}:flags=bicubic:in_color_matrix=bt709:out_color_matrix=bt709:\
             out_range=tv[v{i}]"
        );
    }
    let mut c = ffmpeg_at(bin);
    c.args(["-loglevel", "error", "-i"])
        .arg(src)
        .arg("-filter_complex")
        .arg(graph);
    for (i, (name, _, _, rate, maxrate, bufsize, profile)) in HLS_LADDER.iter().enumerate() {
        c.args(["-map", &format!("[v{i}]"), "-an"])
            .args(["-c:v", "libx264", "-preset", "veryfast"])
            .args(["-profile:v", profile, "-level:v", "4.2"])
            .args(["-b:v", rate, "-maxrate", maxrate, "-bufsize", bufsize])
            .args(["-g", "50", "-keyint_min", "50", "-sc_threshold", "0"])
            .args(["-forced-idr", "1", "-bf", "3", "-pix_fmt", "yuv420p"])
            .args(["-color_primaries", "bt709", "-color_trc", "bt709"])
            .args(["-colorspace", "bt709"]);
        hls_output(&mut c, &outdir.join(name))?;
    }
    c.args(["-map", "0:a", "-vn"])
        .args(["-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"]);
    hls_output(&mut c, &outdir.join(HLS_AUDIO))?;
    let t = Instant::now();
    sh(&mut c, "ffmpeg hls-ladder")?;
    Ok(t.elapsed().as_secs_f64())
}

/// The HLS muxer options of one output as antenne sets them (6 s fMP4 segments, VOD playlist),
/// writing `dir/index.m3u8`, `dir/init.mp4` and `dir/seg_%05d.m4s`; creates `dir`.
fn hls_output(c: &mut Command, dir: &Path) -> Res<()> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    c.args(["-f", "hls", "-hls_time", "6", "-hls_playlist_type", "vod"])
        .args(["-hls_segment_type", "fmp4"])
        .args(["-hls_flags", "independent_segments"])
        .arg("-hls_segment_filename")
        .arg(dir.join("seg_%05d.m4s"))
        .args(["-hls_fmp4_init_filename", "init.mp4"])
        .arg(dir.join("index.m3u8"));
    Ok(())
}

/// One HLS rendition as its media playlist names it.
struct Rendition {
    /// The initialisation segment (`#EXT-X-MAP`), when there is one.
    init: Option<PathBuf>,
    /// The media segments, in playlist order.
    segments: Vec<PathBuf>,
    /// Total size of the init and media segments.
    bytes: u64,
}

/// Reads a media playlist and checks that the files it names exist.
fn hls_rendition(playlist: &Path) -> Res<Rendition> {
    let text = std::fs::read_to_string(playlist)
        .map_err(|e| format!("cannot read playlist {}: {e}", playlist.display()))?;
    let dir = playlist.parent().unwrap_or(Path::new("."));
    let mut init = None;
    let mut segments = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("#EXT-X-MAP:") {
            let uri = rest
                .split("URI=\"")
                .nth(1)
                .and_then(|u| u.split('"').next())
                .ok_or_else(|| format!("{}: no URI in {line:?}", playlist.display()))?;
            init = Some(dir.join(uri));
        } else if !line.is_empty() && !line.starts_with('#') {
            segments.push(dir.join(line));
        }
    }
    if segments.is_empty() {
        return Err(format!("{} lists no segments", playlist.display()));
    }
    let mut bytes = 0;
    for f in init.iter().chain(&segments) {
        bytes += std::fs::metadata(f)
            .map_err(|e| {
                format!(
                    "{} names {}, which cannot be read: {e}",
                    playlist.display(),
                    f.display()
                )
            })?
            .len();
    }
    Ok(Rendition {
        init,
        segments,
        bytes,
    })
}

/// Concatenates a rendition's init segment and media segments into one fragmented MP4.
fn join_rendition(r: &Rendition, to: &Path) -> Res<()> {
    let mut out =
        std::fs::File::create(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    for f in r.init.iter().chain(&r.segments) {
        let mut input =
            std::fs::File::open(f).map_err(|e| format!("cannot open {}: {e}", f.display()))?;
        std::io::copy(&mut input, &mut out)
            .map_err(|e| format!("cannot append {} to {}: {e}", f.display(), to.display()))?;
    }
    Ok(())
}

/// Checks that antenne's `hls-ladder` package has its master playlist, DASH manifest and the
/// media playlist of every rendition.
fn check_antenne_package(pkg: &Path) -> Res<()> {
    let wanted = ["master.m3u8".to_string(), "manifest.mpd".to_string()]
        .into_iter()
        .chain(
            HLS_LADDER
                .iter()
                .map(|r| r.0)
                .chain([HLS_AUDIO])
                .map(|n| format!("{n}/index.m3u8")),
        );
    let missing: Vec<String> = wanted.filter(|f| !pkg.join(f).is_file()).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "antenne hls-ladder package {} lacks {}",
            pkg.display(),
            missing.join(", ")
        ))
    }
}

fn file_kbps(path: &Path, secs: u32) -> Res<f64> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    Ok(len as f64 * 8.0 / 1000.0 / f64::from(secs))
}

fn ladder_profile() -> String {
    let mut s = String::from(
        "name = \"bench-ladder\"\n\
         description = \"Benchmark ladder: H.264 1080p/720p/480p veryfast, AAC stereo, MP4\"\n",
    );
    for (name, w, h, kbps) in LADDER {
        let _ = write!(
            s,
            "\n[[outputs]]\n\
             name = \"{name}\"\n\
             container = \"mp4\"\n\
             \n[outputs.video]\n\
             codec = \"h264\"\n\
             width = {w}\n\
             height = {h}\n\
             frame_rate = \"source\"\n\
             scan = \"progressive\"\n\
             pix_fmt = \"yuv420p\"\n\
             profile = \"high\"\n\
             rate_control = \"vbr\"\n\
             bitrate = \"{kbps}k\"\n\
             maxrate = \"{kbps}k\"\n\
             bufsize = \"{}k\"\n\
             gop = 50\n\
             b_frames = 3\n\
             preset = \"veryfast\"\n\
             \n[outputs.audio]\n\
             codec = \"aac\"\n\
             bitrate = \"128k\"\n\
             sample_rate = 48000\n\
             tracks = [\"stereo\"]\n",
            kbps * 2
        );
    }
    s
}
