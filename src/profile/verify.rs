//! Verification: decode a produced (or delivered) file fully and check it against the profile
//! output it claims to meet. Every check carries what was expected and what was measured; the
//! report is written as `<file>.verify.json` next to the file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::{layout_channels, LoudnessTarget, Output, RateControl, Scan};
use crate::av::engine::Measured;
use crate::av::probe::{self, ProbeReport};
use crate::av::scan::{self, ScanReport};
use crate::av::AvError;
use crate::config::Rate;
use crate::output::package::hls;
use crate::qc::loudness;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub expected: String,
    pub measured: String,
    pub pass: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub file: String,
    pub profile: String,
    pub output: String,
    pub pass: bool,
    pub checks: Vec<Check>,
}

impl VerifyReport {
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.pass)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Av(#[from] AvError),
    #[error("{file}: cannot write the verification report: {source}")]
    Write {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the engine leaves what it measured on an output while writing it (see
/// [`crate::av::engine::Tap`]); verification then reads only the finished file's container.
#[derive(Clone, Default)]
pub struct InFlight(pub Arc<Mutex<Option<Measured>>>);

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let filled = self.0.lock().map(|m| m.is_some()).unwrap_or(false);
        write!(f, "InFlight({})", if filled { "measured" } else { "empty" })
    }
}

impl InFlight {
    fn take(&self) -> Option<Measured> {
        self.0.lock().ok()?.take()
    }
}

/// What the source said, when the file was made from one: duration and timecode must carry over.
#[derive(Debug, Clone, Default)]
pub struct SourceFacts {
    pub duration_s: Option<f64>,
    /// Timecode the output should start at (already restated at the output rate).
    pub start_timecode: Option<String>,
    /// Frame rate of the source, for outputs whose rate is "source".
    pub frame_rate: Option<Rate>,
    /// The source had no audio: silent tracks are expected, not a loudness failure.
    pub no_source_audio: bool,
    /// The frame size made, when smaller than the profile's (a profile that does not upscale).
    pub picture: Option<(u32, u32)>,
    /// Measured by the engine while the output was written, when it was.
    pub in_flight: InFlight,
}

struct Checks(Vec<Check>);

impl Checks {
    fn add(&mut self, name: &str, expected: impl ToString, measured: impl ToString, pass: bool) {
        self.0.push(Check {
            name: name.to_string(),
            expected: expected.to_string(),
            measured: measured.to_string(),
            pass,
        });
    }

    fn eq<T: PartialEq + std::fmt::Display>(
        &mut self,
        name: &str,
        expected: T,
        measured: Option<T>,
    ) {
        let pass = measured.as_ref() == Some(&expected);
        let m = measured.map_or_else(|| "unknown".to_string(), |m| m.to_string());
        self.add(name, expected, m, pass);
    }
}

/// The demuxer names that read each muxer's output.
fn demuxer_of(muxer: &str) -> &str {
    match muxer {
        "mp4" | "mov" | "ipod" | "ismv" => "mov,mp4,m4a,3gp,3g2,mj2",
        "matroska" | "webm" => "matroska,webm",
        "mxf" | "mxf_d10" | "mxf_opatom" => "mxf",
        other => other,
    }
}

fn profile_matches(codec: &str, wanted: &str, measured: &str) -> bool {
    let norm = |s: &str| s.to_ascii_lowercase().replace([' ', ':', '-'], "");
    let w = norm(wanted);
    let m = norm(measured);
    match codec {
        "h264" if w == "high" => m == "high",
        "h264" if w == "main" => m == "main",
        "h264" if w == "baseline" => m.contains("baseline"),
        _ => m == w || m.starts_with(&w),
    }
}

/// H.264 level string ("4.1") as libav's integer (41).
fn h264_level(l: &str) -> Option<i32> {
    let (a, b) = l.split_once('.').unwrap_or((l, "0"));
    Some(a.parse::<i32>().ok()? * 10 + b.parse::<i32>().ok()?)
}

/// Checks an HLS rendition: its playlist, that every segment starts on a keyframe, then the
/// media itself (init segment and segments read back to back) as for any other output.
fn verify_hls(
    playlist: &Path,
    profile: &str,
    out: &Output,
    loudness_target: Option<&LoudnessTarget>,
    source: &SourceFacts,
) -> Result<VerifyReport, VerifyError> {
    let bad = |what: String| {
        VerifyError::Av(AvError::Invalid {
            path: playlist.to_owned(),
            what,
        })
    };
    let text = std::fs::read_to_string(playlist).map_err(|e| bad(e.to_string()))?;
    let media = hls::parse_media(&text).map_err(|e| bad(e.to_string()))?;
    let dir = playlist.parent().unwrap_or(Path::new("."));
    let mut joined = std::env::temp_dir();
    joined.push(format!(
        "antenne-verify-{}-{}.media",
        std::process::id(),
        out.name
    ));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&joined).map_err(|e| bad(e.to_string()))?;
        for uri in media
            .map_uri
            .iter()
            .chain(media.segments.iter().map(|s| &s.uri))
        {
            let data = std::fs::read(dir.join(uri)).map_err(|e| bad(format!("{uri}: {e}")))?;
            f.write_all(&data).map_err(|e| bad(e.to_string()))?;
        }
    }
    let inner = verify_file(&joined, profile, out, loudness_target, source, Some(&media));
    let _ = std::fs::remove_file(&joined);
    let mut rep = inner?;
    rep.file = playlist.display().to_string();
    let problems = media.check();
    rep.checks.insert(
        0,
        Check {
            name: "playlist".into(),
            expected: "valid VOD media playlist".into(),
            measured: if problems.is_empty() {
                format!(
                    "{} segments, target duration {} s",
                    media.segments.len(),
                    media.target_duration
                )
            } else {
                problems.join("; ")
            },
            pass: problems.is_empty() && media.ended && !media.segments.is_empty(),
        },
    );
    rep.pass = rep.checks.iter().all(|c| c.pass);
    Ok(rep)
}

/// Checks still images: a poster file, or every image of a storyboard (`name_%03d.jpg`).
fn verify_stills(file: &Path, profile: &str, out: &Output) -> Result<VerifyReport, VerifyError> {
    let mut c = Checks(Vec::new());
    let v = out
        .video
        .as_ref()
        .and_then(|v| v.thumbnails.as_ref().map(|t| (v, t)));
    let Some((v, t)) = v else {
        return Err(VerifyError::Av(AvError::Invalid {
            path: file.to_owned(),
            what: "not an image output".into(),
        }));
    };
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let images: Vec<PathBuf> = match name.split_once("%03d") {
        Some((pre, post)) => {
            let dir = file.parent().unwrap_or(Path::new("."));
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| {
                            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                                n.starts_with(pre) && n.ends_with(post) && !n.ends_with(".json")
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            found.sort();
            found
        }
        None => vec![file.to_owned()],
    };
    let (w, h) = if t.mode == "storyboard" {
        (v.width * t.columns, v.height * t.rows)
    } else {
        (v.width, v.height)
    };
    c.add("images", "at least 1", images.len(), !images.is_empty());
    for img in &images {
        let p = probe::probe(img)?;
        let shown = img
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let got = p.video.first();
        c.add(
            &format!("{shown} codec"),
            &v.codec,
            got.map_or("none".into(), |g| g.codec.clone()),
            got.is_some_and(|g| g.codec == v.codec),
        );
        c.add(
            &format!("{shown} size"),
            format!("{w}x{h}"),
            got.map_or("none".into(), |g| format!("{}x{}", g.width, g.height)),
            got.is_some_and(|g| g.width == w && g.height == h),
        );
    }
    let pass = c.0.iter().all(|k| k.pass);
    Ok(VerifyReport {
        file: file.display().to_string(),
        profile: profile.to_string(),
        output: out.name.clone(),
        pass,
        checks: c.0,
    })
}

/// Checks `file` against `out` (an output of `profile`).
pub fn verify(
    file: &Path,
    profile: &str,
    out: &Output,
    loudness_target: Option<&LoudnessTarget>,
    source: &SourceFacts,
) -> Result<VerifyReport, VerifyError> {
    if out.container == "hls" {
        return verify_hls(file, profile, out, loudness_target, source);
    }
    if out.container == "image2" {
        return verify_stills(file, profile, out);
    }
    verify_file(file, profile, out, loudness_target, source, None)
}

fn verify_file(
    file: &Path,
    profile: &str,
    out: &Output,
    loudness_target: Option<&LoudnessTarget>,
    source: &SourceFacts,
    hls_media: Option<&hls::MediaPlaylist>,
) -> Result<VerifyReport, VerifyError> {
    let probe = probe::probe(file)?;
    // The programme's loudness is measured in the same decode as the scan.
    let programme = match (loudness_target, &out.audio) {
        (Some(_), Some(_)) => loudness::programme_streams(&probe),
        _ => vec![],
    };
    let name = file.display().to_string();
    let (scan, measured) = match source.in_flight.take() {
        // What the encoder's packets decoded to, measured while they were written.
        Some(m) if m.streams == programme => {
            tracing::debug!(file = %name, "verified from the packets as they were written");
            let meter = m
                .programme
                .and_then(|b| b.downcast::<loudness::Meter>().ok())
                .map(|m| m.finish(&name, &programme));
            (m.scan, meter.filter(|_| !programme.is_empty()))
        }
        _ => {
            let mut meter = loudness::Meter::new();
            let scan = scan::scan_with(file, false, &programme, |b| meter.block(b))?;
            let measured = (!programme.is_empty()).then(|| meter.finish(&name, &programme));
            (scan, measured)
        }
    };
    let mut c = Checks(Vec::new());
    let container = match (out.container.as_str(), &out.hls) {
        ("hls", Some(h)) if h.segment_type == "mpegts" => "mpegts",
        ("hls", _) => "mp4",
        (c, _) => c,
    };
    c.add(
        "container",
        demuxer_of(container),
        &probe.container.format,
        probe.container.format == demuxer_of(container),
    );
    if let (Some(m), Some(v)) = (hls_media, &scan.video) {
        // Segment k starts at the sum of the durations before it: that frame must be intra.
        let fps = probe
            .video
            .first()
            .and_then(|v| v.frame_rate.as_deref())
            .and_then(|r| r.parse::<Rate>().ok())
            .map_or(25.0, |r| r.as_f64());
        let mut t = 0.0;
        let mut missing = Vec::new();
        for (k, seg) in m.segments.iter().enumerate() {
            let frame = (t * fps).round() as u64;
            if !v.keyframes.contains(&frame) {
                missing.push(format!("segment {k} (frame {frame})"));
            }
            t += seg.duration_s;
        }
        c.add(
            "segments start on a keyframe",
            format!("all {}", m.segments.len()),
            if missing.is_empty() {
                format!("all {}", m.segments.len())
            } else {
                missing.join(", ")
            },
            missing.is_empty(),
        );
    }
    if out.container == "mxf" || out.container == "mxf_d10" {
        let op = probe
            .container
            .tags
            .get("operational_pattern_ul")
            .cloned()
            .unwrap_or_default();
        // SMPTE 378M: OP1a is item complexity 01, package complexity 01.
        c.add(
            "operational pattern",
            "OP1a",
            if op.contains("0d010201.0101") {
                "OP1a".to_string()
            } else {
                op.clone()
            },
            op.contains("0d010201.0101"),
        );
    }
    let rate = check_video(&mut c, out, &probe, &scan, source);
    check_audio(&mut c, out, &probe, loudness_target, measured, source)?;
    check_timing(&mut c, &probe, &scan, rate, source);
    c.add(
        "decode errors",
        0,
        scan.decode_errors,
        scan.decode_errors == 0,
    );
    if let Some(v) = &scan.video {
        c.add("corrupt frames", 0, v.corrupt_frames, v.corrupt_frames == 0);
        c.add(
            "timestamps increasing",
            "yes",
            if v.non_monotonic == 0 {
                "yes".to_string()
            } else {
                format!("{} out of order", v.non_monotonic)
            },
            v.non_monotonic == 0,
        );
    }
    let pass = c.0.iter().all(|k| k.pass);
    Ok(VerifyReport {
        file: file.display().to_string(),
        profile: profile.to_string(),
        output: out.name.clone(),
        pass,
        checks: c.0,
    })
}

fn check_video(
    c: &mut Checks,
    out: &Output,
    probe: &ProbeReport,
    scan: &ScanReport,
    source: &SourceFacts,
) -> Option<Rate> {
    let v = out.video.as_ref()?;
    let Some(pv) = probe.video.first() else {
        c.add("video stream", "present", "absent", false);
        return None;
    };
    c.add("video codec", &v.codec, &pv.codec, pv.codec == v.codec);
    if let Some(p) = &v.profile {
        let m = pv.profile.clone().unwrap_or_default();
        c.add("video profile", p, &m, profile_matches(&v.codec, p, &m));
    }
    if let (Some(l), "h264") = (&v.level, v.codec.as_str()) {
        let want = h264_level(l);
        let pass = matches!((want, pv.level), (Some(w), Some(m)) if m <= w);
        c.add(
            "video level",
            format!("<= {l}"),
            pv.level
                .map_or("unknown".into(), |m| format!("{}.{}", m / 10, m % 10)),
            pass,
        );
    }
    let (w, h) = source.picture.unwrap_or((v.width, v.height));
    c.add(
        "resolution",
        format!("{w}x{h}"),
        format!("{}x{}", pv.width, pv.height),
        pv.width == w && pv.height == h,
    );
    let dar = v.display_aspect().map(|(a, b)| {
        let (a, b) = reduce(a, b);
        format!("{a}:{b}")
    });
    let dar = dar.unwrap_or_else(|| {
        let (a, b) = reduce(w, h);
        format!("{a}:{b}")
    });
    c.eq("display aspect", dar, pv.display_aspect_ratio.clone());
    let rate = match v.frame_rate {
        super::FrameRate::Fixed(r) => Some(r),
        super::FrameRate::Source => source.frame_rate,
    };
    let measured_rate = pv
        .frame_rate
        .as_deref()
        .and_then(|r| r.parse::<Rate>().ok());
    match rate {
        Some(r) => c.eq(
            "frame rate",
            r.to_string(),
            measured_rate.map(|m| m.to_string()),
        ),
        None => c.add(
            "frame rate",
            "the source's",
            pv.frame_rate.clone().unwrap_or_default(),
            measured_rate.is_some(),
        ),
    }
    let want_scan = match v.scan {
        Scan::Progressive => "progressive",
        Scan::Tff => "tff",
        Scan::Bff => "bff",
    };
    let measured_scan = scan.video.as_ref().map(|s| {
        if s.interlaced_frames * 2 <= s.frames {
            "progressive"
        } else if s.top_field_first_frames * 2 > s.interlaced_frames {
            "tff"
        } else {
            "bff"
        }
    });
    c.eq("field order", want_scan, measured_scan);
    c.eq("pixel format", v.pix_fmt.clone(), pv.pix_fmt.clone());
    let (_, want_depth, want_chroma) = probe::pixel_info_by_name(&v.pix_fmt);
    if let Some(d) = want_depth {
        c.eq("bit depth", d, pv.bit_depth);
    }
    if let Some(ch) = want_chroma {
        c.eq("chroma subsampling", ch, pv.chroma_subsampling.clone());
    }
    if let Some(s) = &scan.video {
        if let Some(gop) = rate.and_then(|r| v.gop_frames(r)) {
            let bad: Vec<u64> = s
                .gop_lengths
                .iter()
                .copied()
                .filter(|&g| g != u64::from(gop))
                .collect();
            let measured = if s.gop_lengths.is_empty() {
                format!("one GOP of {} frames", s.frames)
            } else if bad.is_empty() {
                format!("{gop} ({} GOPs)", s.gop_lengths.len())
            } else {
                format!("{} GOPs not of {gop} frames, e.g. {}", bad.len(), bad[0])
            };
            let pass = bad.is_empty()
                && (s.gop_lengths.is_empty() && s.frames <= u64::from(gop)
                    || !s.gop_lengths.is_empty());
            c.add("GOP length (decoded)", gop, measured, pass);
        }
        if let Some(b) = v.b_frames {
            let m = s.m.max(1);
            let want = u64::from(b) + 1;
            let pass = if v.codec == "mpeg2video" {
                m == want
            } else {
                m <= want
            };
            let expected = if v.codec == "mpeg2video" {
                format!("M={want}")
            } else {
                format!("M<={want}")
            };
            c.add("GOP structure (decoded)", expected, format!("M={m}"), pass);
        }
    }
    if let Some(bits) = scan
        .bits
        .iter()
        .find(|b| Some(b.index) == scan.video.as_ref().map(|s| s.index))
    {
        check_bitrate(c, out, bits.average_bps, bits.peak_bps);
    }
    rate
}

fn check_bitrate(c: &mut Checks, out: &Output, average: u64, peak: u64) {
    let Some(v) = &out.video else { return };
    let tol = out.verify.bitrate_tolerance;
    match (v.rate_control, v.bitrate) {
        (RateControl::Cbr, Some(b)) => {
            let b = b.bps() as f64;
            let pass = (average as f64 - b).abs() <= b * tol;
            c.add(
                "video bit rate (CBR)",
                format!("{} b/s ±{:.0}%", b as u64, tol * 100.0),
                format!("{average} b/s"),
                pass,
            );
        }
        (RateControl::Vbr, Some(b)) => {
            let max = v.maxrate.unwrap_or(b).bps();
            // A VBV-compliant stream carries at most maxrate·1 s + one buffer in any second.
            let ceiling = max + v.bufsize.map_or(max, |x| x.bps());
            c.add(
                "video peak bit rate (1 s)",
                format!("<= {ceiling} b/s"),
                format!("{peak} b/s"),
                peak <= ceiling,
            );
            let avg_ok = average as f64 <= b.bps() as f64 * (1.0 + tol.max(0.1));
            c.add(
                "video average bit rate",
                format!("<= {} b/s", b.bps()),
                format!("{average} b/s"),
                avg_ok,
            );
        }
        _ => {}
    }
}

fn check_audio(
    c: &mut Checks,
    out: &Output,
    probe: &ProbeReport,
    target: Option<&LoudnessTarget>,
    measured: Option<Result<loudness::Loudness, loudness::LoudnessError>>,
    source: &SourceFacts,
) -> Result<(), VerifyError> {
    let Some(a) = &out.audio else {
        return Ok(());
    };
    c.add(
        "audio tracks",
        a.tracks.len(),
        probe.audio.len(),
        probe.audio.len() == a.tracks.len(),
    );
    for (i, (want, got)) in a.tracks.iter().zip(&probe.audio).enumerate() {
        let n = i + 1;
        let codec = crate::av::encoder_codec_name(&a.codec).unwrap_or_else(|| a.codec.clone());
        c.add(
            &format!("audio {n} codec"),
            &codec,
            &got.codec,
            got.codec == codec,
        );
        c.add(
            &format!("audio {n} sample rate"),
            a.sample_rate,
            got.sample_rate,
            got.sample_rate == a.sample_rate,
        );
        let ch = layout_channels(want).unwrap_or(0);
        c.add(
            &format!("audio {n} channels"),
            format!("{ch} ({want})"),
            got.channels,
            got.channels == ch,
        );
        if let Some(depth) = pcm_depth(&a.codec) {
            c.eq(&format!("audio {n} bit depth"), depth, got.bit_depth);
        }
    }
    if let Some(t) = target {
        let Some(measured) = measured else {
            c.add(
                "loudness",
                format!("{} LUFS", t.integrated_lufs),
                "no audio",
                false,
            );
            return Ok(());
        };
        let l = measured.map_err(|e| match e {
            loudness::LoudnessError::Av(av) => VerifyError::Av(av),
            other => VerifyError::Av(AvError::Invalid {
                path: PathBuf::from(&probe.file),
                what: other.to_string(),
            }),
        })?;
        let i = l.integrated_lufs;
        if i.is_none() && source.no_source_audio {
            c.add(
                "programme loudness",
                "silence (the source has no audio)",
                "silence",
                true,
            );
            return Ok(());
        }
        let pass = i.is_some_and(|i| (i - t.integrated_lufs).abs() <= t.tolerance_lu);
        c.add(
            "programme loudness",
            format!("{} LUFS ±{} LU", t.integrated_lufs, t.tolerance_lu),
            i.map_or("silence".into(), |i| format!("{i:.1} LUFS")),
            pass,
        );
        let tp = l.true_peak_dbtp;
        c.add(
            "programme true peak",
            format!("<= {} dBTP", t.true_peak_dbtp),
            tp.map_or("silence".into(), |p| format!("{p:.1} dBTP")),
            tp.is_none_or(|p| p <= t.true_peak_dbtp),
        );
    }
    Ok(())
}

fn pcm_depth(codec: &str) -> Option<u32> {
    match codec {
        "pcm_s16le" | "pcm_s16be" => Some(16),
        "pcm_s24le" | "pcm_s24be" => Some(24),
        "pcm_s32le" | "pcm_s32be" => Some(32),
        _ => None,
    }
}

fn check_timing(
    c: &mut Checks,
    probe: &ProbeReport,
    scan: &ScanReport,
    rate: Option<Rate>,
    source: &SourceFacts,
) {
    let fps = rate.map(|r| r.as_f64()).or_else(|| {
        probe
            .video
            .first()
            .and_then(|v| v.frame_rate.as_deref())
            .and_then(|r| r.parse::<Rate>().ok())
            .map(|r| r.as_f64())
    });
    let frame = fps.map_or(0.04, |f| 1.0 / f);
    let video_dur = fps.and_then(|f| scan.video_duration_s(f));
    if let Some(src) = source.duration_s {
        let measured =
            video_dur.or_else(|| scan.audio.iter().map(|a| a.duration_s).reduce(f64::max));
        let pass = measured.is_some_and(|m| (m - src).abs() <= frame + 1e-6);
        c.add(
            "duration vs source",
            format!("{src:.3} s ±1 frame"),
            measured.map_or("unknown".into(), |m| format!("{m:.3} s")),
            pass,
        );
    }
    if let Some(vd) = video_dur {
        for a in &scan.audio {
            let pass = (a.duration_s - vd).abs() <= frame + 0.025;
            c.add(
                &format!("audio stream {} duration vs video", a.index),
                format!("{vd:.3} s ±1 frame"),
                format!("{:.3} s", a.duration_s),
                pass,
            );
        }
    }
    if let Some(tc) = &source.start_timecode {
        c.eq(
            "start timecode",
            tc.clone(),
            probe.container.start_timecode.clone(),
        );
    }
}

fn reduce(a: u32, b: u32) -> (u32, u32) {
    match Rate::reduced(i64::from(a), i64::from(b)) {
        Some(r) => (r.num, r.den),
        None => (a, b),
    }
}

/// Writes the report as `<file>.verify.json` (temporary name, fsync, rename).
pub fn write_report(report: &VerifyReport, file: &Path) -> Result<PathBuf, VerifyError> {
    let mut target = file.as_os_str().to_owned();
    target.push(".verify.json");
    let target = PathBuf::from(target);
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(".part");
    let tmp = PathBuf::from(tmp);
    let w = |e: std::io::Error| VerifyError::Write {
        file: target.clone(),
        source: e,
    };
    let json = serde_json::to_vec_pretty(report).map_err(|e| w(std::io::Error::other(e)))?;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(w)?;
        f.write_all(&json).map_err(w)?;
        f.write_all(b"\n").map_err(w)?;
        f.sync_all().map_err(w)?;
    }
    std::fs::rename(&tmp, &target).map_err(w)?;
    Ok(target)
}
