//! The file pipeline (today's transcoding; live pipelines later): turns a profile and a probed
//! source into a pipeline spec (filter chains, encoder settings, track mapping, output names),
//! picks the backend per output, and runs it on the engine with progress. The chain rules
//! themselves are pure and live in [`plan`]; packages are completed by `output::package`.
//! Imports `av`, `profile`, `qc`, `output`, `timecode` and `config` values; never jobs,
//! catalog or api.

pub mod live;
pub mod plan;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::Serialize;

use crate::av::engine::{
    self, AudioOut, AudioTrack, BlockSink, FieldOrder, OutputSpec, PipelineSpec, Progress, Tap,
    VideoOut,
};
use crate::av::hw::{self, Backend};
use crate::av::io::{InputSource, OutputSink};
use crate::av::probe::ProbeReport;
use crate::av::AvError;
use crate::config::Rate;
use crate::profile::verify::{InFlight, SourceFacts};
use crate::profile::{self, Profile, RateControl, Scan};
use crate::qc::loudness::{self, Loudness};
use crate::timecode::Timecode;
use plan::{DstVideo, SrcAudio, SrcVideo};

#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error(transparent)]
    Av(#[from] AvError),
    #[error(transparent)]
    Profile(#[from] profile::ProfileError),
    #[error("{file}: {what}")]
    Source { file: String, what: String },
    #[error("{dir}: output directory {what}")]
    OutDir { dir: PathBuf, what: String },
    #[error("backend {backend}: {what}")]
    Backend { backend: &'static str, what: String },
    /// A GPU backend asked for (or placed on) does not answer on this machine.
    #[error("backend {}: not available on this machine: {reason}", .backend.name())]
    Unavailable { backend: Backend, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    Auto,
    Software,
    Nvenc,
    Vaapi,
    Qsv,
    /// The job scheduler placed this job on a GPU of this backend: what it can encode goes to
    /// it, the rest to the CPU. A device that does not open is an error, not a quiet fallback,
    /// so that the scheduler can count it.
    #[value(skip)]
    Placed(Backend),
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedOutput {
    pub name: String,
    /// Where it is once published (inside the package directory for a package).
    pub path: PathBuf,
    pub container: String,
    pub backend: &'static str,
    pub encoder: Option<String>,
    /// Its position among the profile's outputs.
    #[serde(skip)]
    pub index: usize,
}

/// A package: outputs written into `temp_dir`, published by renaming it to `dir`.
#[derive(Debug, Clone)]
pub struct PackagePlan {
    pub dir: PathBuf,
    pub temp_dir: PathBuf,
}

/// A compiled job: the engine spec plus what the user is told about it.
#[derive(Debug, Clone)]
pub struct Job {
    pub spec: PipelineSpec,
    pub outputs: Vec<PlannedOutput>,
    /// What each output must carry over from the source (for its verification).
    pub facts: Vec<SourceFacts>,
    pub expected_frames: Option<u64>,
    pub duration_s: Option<f64>,
    pub package: Option<PackagePlan>,
    /// Write a DASH manifest over the package's fMP4 renditions.
    pub dash: bool,
    /// Write the HLS master playlist.
    pub hls_master: bool,
}

/// One job decoding once for the outputs of several compiled profiles (a workflow's house,
/// proxy and web renditions): `None` when one is a package or they read the source
/// differently. Each planned output keeps its index within its own profile.
pub fn merge(jobs: &[Job]) -> Option<Job> {
    let first = jobs.first()?;
    let same = |j: &Job| {
        j.package.is_none()
            && j.spec.input.same_as(&first.spec.input)
            && j.spec.video_stream == first.spec.video_stream
            && j.spec.audio_streams == first.spec.audio_streams
    };
    if !jobs.iter().all(same) {
        return None;
    }
    let mut spec = first.spec.clone();
    spec.outputs = jobs.iter().flat_map(|j| j.spec.outputs.clone()).collect();
    // Frames decoded on a GPU are downloaded once for outputs encoded on the CPU.
    spec.hw_decode = jobs.iter().find_map(|j| j.spec.hw_decode);
    Some(Job {
        spec,
        outputs: jobs.iter().flat_map(|j| j.outputs.clone()).collect(),
        facts: jobs.iter().flat_map(|j| j.facts.clone()).collect(),
        expected_frames: first.expected_frames,
        duration_s: first.duration_s,
        package: None,
        dash: false,
        hls_master: false,
    })
}

const DEJAVU_MONO: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf";

fn source_err(src: &ProbeReport, what: impl Into<String>) -> TranscodeError {
    TranscodeError::Source {
        file: src.file.clone(),
        what: what.into(),
    }
}

/// Checks that `dir` exists (creating it if its parent exists) and can take new files.
pub fn prepare_outdir(dir: &Path) -> Result<(), TranscodeError> {
    let err = |what: String| TranscodeError::OutDir {
        dir: dir.to_owned(),
        what,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(err("is not a directory".into()));
    }
    if !dir.exists() {
        std::fs::create_dir(dir).map_err(|e| err(format!("cannot be created: {e}")))?;
    }
    let probe = dir.join(format!(".antenne-write-test-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(err(format!("is not writable: {e}"))),
    }
}

fn pick_backend(
    choice: BackendChoice,
    codec: &str,
    pix_fmt: &str,
) -> Result<Backend, TranscodeError> {
    let gpu_can = hw::gpu_can(codec, pix_fmt);
    let explicit = match choice {
        BackendChoice::Software => return Ok(Backend::Software),
        BackendChoice::Placed(_) if !gpu_can => return Ok(Backend::Software),
        BackendChoice::Placed(b) => Some(b),
        BackendChoice::Auto => None,
        BackendChoice::Nvenc => Some(Backend::Nvenc),
        BackendChoice::Vaapi => Some(Backend::Vaapi),
        BackendChoice::Qsv => Some(Backend::Qsv),
    };
    match explicit {
        Some(b) => {
            let st = hw::status_of(b);
            if !st.available {
                return Err(TranscodeError::Unavailable {
                    backend: b,
                    reason: st.error.unwrap_or_else(|| "unknown reason".into()),
                });
            }
            if !gpu_can {
                return Err(TranscodeError::Backend {
                    backend: b.name(),
                    what: format!("cannot encode {codec} {pix_fmt} (GPU encoders take 8-bit 4:2:0 H.264/HEVC)"),
                });
            }
            Ok(b)
        }
        None => {
            if gpu_can {
                for b in [Backend::Nvenc, Backend::Vaapi] {
                    if hw::status_of(b).available {
                        return Ok(b);
                    }
                }
            }
            Ok(Backend::Software)
        }
    }
}

fn level_option(codec: &str, profile: Option<&str>, level: &str) -> Option<i32> {
    if codec == "mpeg2video" && profile == Some("422") {
        // 4:2:2 profile levels use the escape coding: High = 2, Main = 5.
        return match level {
            "high" => Some(2),
            "main" => Some(5),
            _ => None,
        };
    }
    if codec == "mpeg2video" {
        return match level {
            "high" => Some(4),
            "high1440" => Some(6),
            "main" => Some(8),
            "low" => Some(10),
            _ => None,
        };
    }
    None
}

fn profile_option(codec: &str, profile: &str) -> Option<i32> {
    if codec == "mpeg2video" {
        return match profile {
            "422" => Some(0),
            "high" => Some(1),
            "main" => Some(4),
            "simple" => Some(5),
            _ => None,
        };
    }
    None
}

fn nvenc_preset(x264: &str) -> &'static str {
    match x264 {
        "ultrafast" | "superfast" => "p1",
        "veryfast" => "p2",
        "faster" => "p3",
        "fast" => "p4",
        "medium" => "p5",
        "slow" => "p6",
        _ => "p7",
    }
}

/// The encoder families whose private options differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EncoderFamily {
    X264,
    X265,
    Nvenc,
    Vaapi,
    Qsv,
    /// libavcodec's own MPEG-1/2 (XDCAM, IMX).
    Mpeg2,
    /// Intra-only codecs: no GOP to keep (ProRes, DNxHD/HR, and anything else).
    Other,
}

impl EncoderFamily {
    fn of(encoder: &str) -> EncoderFamily {
        match encoder {
            "libx264" | "libx264rgb" => EncoderFamily::X264,
            "libx265" => EncoderFamily::X265,
            "mpeg2video" | "mpeg1video" => EncoderFamily::Mpeg2,
            e if e.contains("nvenc") => EncoderFamily::Nvenc,
            e if e.contains("vaapi") => EncoderFamily::Vaapi,
            e if e.contains("qsv") => EncoderFamily::Qsv,
            _ => EncoderFamily::Other,
        }
    }
}

/// Private encoder options for a profile's video, per encoder family. Every family keeps a
/// fixed GOP whatever the picture does: scene-cut detection would add I-frames at cuts, flashes
/// and fades, and break the cadence that house formats (XDCAM's 12) and aligned ladder segments
/// rely on. The profile's own `options` are applied on top by the caller.
fn encoder_options(
    encoder: &str,
    v: &profile::Video,
    rate: Rate,
    interlaced: bool,
) -> Vec<(String, String)> {
    let mut o: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, val: String| o.push((k.to_string(), val));
    let gop = v.gop_frames(rate);
    match EncoderFamily::of(encoder) {
        EncoderFamily::X264 | EncoderFamily::X265 => {
            let x265 = encoder == "libx265";
            if let Some(p) = &v.preset {
                set("preset", p.clone());
            }
            if let Some(t) = &v.tune {
                set("tune", t.clone());
            }
            // x264 takes these profile names; others ("high 4:2:2 intra" for AVC-Intra,
            // set by avcintra-class) are only checked on the result.
            if let Some(p) = v.profile.as_deref().filter(|p| {
                x265 || ["baseline", "main", "high", "high10", "high422", "high444"].contains(p)
            }) {
                set("profile", p.to_string());
            }
            if let Some(l) = &v.level {
                if !x265 {
                    set("level", l.clone());
                }
            }
            if v.rate_control == RateControl::Crf {
                set("crf", v.crf.unwrap_or(23).to_string());
            }
            if v.rate_control == RateControl::Cbr && !x265 {
                set("nal-hrd", "cbr".into());
            }
            // IDR at every GOP start, so segments and edits can cut anywhere on a GOP.
            set("forced-idr", "1".into());
            if x265 {
                let mut params = vec!["scenecut=0".to_string(), "open-gop=0".to_string()];
                if let Some(g) = gop {
                    params.push(format!("keyint={g}"));
                    params.push(format!("min-keyint={g}"));
                }
                if let Some(l) = &v.level {
                    params.push(format!("level-idc={l}"));
                }
                set("x265-params", params.join(":"));
            } else {
                set("sc_threshold", "0".into());
                // A fixed GOP: no short GOPs either (x264 caps this at gop/2 + 1).
                if let Some(g) = gop {
                    set("keyint_min", g.to_string());
                }
            }
        }
        EncoderFamily::Nvenc => {
            set(
                "preset",
                nvenc_preset(v.preset.as_deref().unwrap_or("medium")).into(),
            );
            if let Some(p) = &v.profile {
                set("profile", p.clone());
            }
            set(
                "rc",
                match v.rate_control {
                    RateControl::Cbr => "cbr",
                    RateControl::Vbr | RateControl::Codec => "vbr",
                    RateControl::Crf => "constqp",
                }
                .into(),
            );
            // Look-ahead may insert I-frames at scene cuts; keep the GOP, and make each one IDR.
            set("no-scenecut", "1".into());
            set("forced-idr", "1".into());
        }
        EncoderFamily::Vaapi | EncoderFamily::Qsv => {
            if let Some(p) = &v.profile {
                set("profile", p.clone());
            }
            if encoder.contains("vaapi") {
                set(
                    "rc_mode",
                    if v.rate_control == RateControl::Cbr {
                        "CBR"
                    } else {
                        "VBR"
                    }
                    .into(),
                );
                // Every I-frame an IDR: VA-API encoders have no scene-cut detection of their
                // own, so the GOP is as set.
                set("idr_interval", "0".into());
            } else {
                // QSV: no adaptive I-frames at scene changes, no adaptive GOP length.
                set("adaptive_i", "0".into());
                set("adaptive_b", "0".into());
            }
        }
        EncoderFamily::Mpeg2 => {
            // libavcodec's MPEG encoders turn a P-picture into an I-picture at a scene change
            // unless the threshold is at its "off" value.
            set("sc_threshold", "1000000000".into());
            if v.closed_gop && v.gop_frames(rate).is_some_and(|g| g > 1) {
                // A closed GOP otherwise ends early where its last B-frames would have
                // referred to the next I-frame (13 instead of 15); this keeps it whole.
                set("mpv_flags", "+strict_gop".into());
            }
            if interlaced {
                set("flags", "+ildct+ilme".into());
                set("alternate_scan", "1".into());
            }
        }
        EncoderFamily::Other => {}
    }
    if interlaced && encoder == "libx264" {
        o.push(("flags".into(), "+ildct+ilme".into()));
    }
    o
}

/// The programme among an output's audio tracks (by channel count), chosen as
/// [`loudness::programme_streams`] chooses it on the finished file: the first track of two
/// channels or more, else the first two (mono pairs).
fn programme_tracks(chans: &[u32]) -> Vec<usize> {
    match chans.iter().position(|&c| c >= 2) {
        Some(i) => vec![i],
        None => (0..chans.len().min(2)).collect(),
    }
}

/// The source's picture as the plan needs it; `None` for a source without video.
fn src_video_of(src: &ProbeReport) -> Result<Option<SrcVideo>, TranscodeError> {
    let Some(v) = src.video.first() else {
        return Ok(None);
    };
    let rate = v
        .frame_rate
        .as_deref()
        .and_then(|r| r.parse::<Rate>().ok())
        .filter(|r| r.as_f64() > 0.5 && r.as_f64() < 1000.0)
        .ok_or_else(|| source_err(src, "video stream has no usable frame rate"))?;
    if v.width == 0 || v.height == 0 || v.width > 16384 || v.height > 16384 {
        return Err(source_err(
            src,
            format!("video size {}x{} is not usable", v.width, v.height),
        ));
    }
    let sar = v
        .sample_aspect_ratio
        .as_deref()
        .and_then(profile::parse_aspect)
        .unwrap_or((1, 1));
    let scan = match v.field_order.as_deref() {
        Some("tff") => Scan::Tff,
        Some("bff") => Scan::Bff,
        _ => Scan::Progressive,
    };
    Ok(Some(SrcVideo {
        width: v.width,
        height: v.height,
        sar,
        rate,
        scan,
        matrix: v.color_matrix.clone(),
    }))
}

/// The frame an output is made at from `src` when its profile does not upscale and the source
/// is smaller than the profile's frame (see [`plan::frame_without_upscale`]); `None` when it is
/// the profile's own `width`×`height`. Verification of a file against a profile asks the same.
pub fn picture_for(src: &ProbeReport, o: &profile::Output) -> Option<(u32, u32)> {
    let v = o.video.as_ref()?;
    if v.upscales(&o.container) {
        return None;
    }
    let sv = src_video_of(src).ok()??;
    let dst = DstVideo {
        width: v.width,
        height: v.height,
        dar: v.display_aspect(),
        rate: sv.rate,
        scan: v.scan,
        pix_fmt: v.pix_fmt.clone(),
        bt709: false,
        burn_timecode: None,
        hw_upload: false,
        vbi_lines: v.vbi_lines,
        stills: None,
    };
    let (w, h) = plan::frame_without_upscale(&sv, &dst);
    ((w, h) != (v.width, v.height)).then_some((w, h))
}

/// Compiles a profile against a probed source.
pub fn compile(
    src: &ProbeReport,
    prof: &Profile,
    outdir: &Path,
    choice: BackendChoice,
) -> Result<Job, TranscodeError> {
    let input = PathBuf::from(&src.file);
    let stem = input
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("output")
        .to_string();
    let wants_video = prof.outputs.iter().any(|o| o.video.is_some());
    let sv = src.video.first();
    if wants_video && sv.is_none() {
        return Err(source_err(
            src,
            format!("has no video stream, but profile {} makes video", prof.name),
        ));
    }
    let src_video = src_video_of(src)?;
    let src_audio: Vec<SrcAudio> = src
        .audio
        .iter()
        .map(|a| SrcAudio {
            channels: a.channels.max(1),
        })
        .collect();
    let duration = src.duration_s();
    let src_tc = src.container.start_timecode.clone();

    let mut outputs = Vec::new();
    let mut planned = Vec::new();
    let mut measured: Vec<(Vec<plan::ChannelMix>, Loudness)> = Vec::new();
    let mut facts = Vec::new();
    // The picture's length is what outputs must keep; audio may run a little longer.
    let src_video_duration = sv.and_then(|v| v.duration_s).or(duration);
    let mut expected_frames = None;
    let package = prof.package.as_ref().map(|_| {
        // libav reads `%` in segment and image paths as a pattern: keep it out of the package.
        let dir = outdir.join(format!("{}_{}", stem.replace('%', "_"), prof.name));
        let mut temp = dir.as_os_str().to_owned();
        temp.push(".part");
        PackagePlan {
            dir,
            temp_dir: PathBuf::from(temp),
        }
    });
    // The smallest rendition is made even from a smaller source; larger ones only up to its size.
    let smallest = prof
        .outputs
        .iter()
        .filter(|o| o.container == "hls")
        .filter_map(|o| o.video.as_ref().map(|v| v.height))
        .min();
    for (index, o) in prof.outputs.iter().enumerate() {
        if let (Some(pk), Some(v), Some(s)) = (&prof.package, &o.video, &src_video) {
            if pk.skip_upscale
                && o.container == "hls"
                && v.height > s.height
                && Some(v.height) != smallest
            {
                continue;
            }
        }
        let mut mux_options = Vec::new();
        let (final_path, published) = match &package {
            Some(pk) if o.container == "hls" => {
                let h = o.hls.clone().unwrap_or_default();
                let dir = pk.temp_dir.join(&o.name);
                let ext = if h.segment_type == "fmp4" {
                    "m4s"
                } else {
                    "ts"
                };
                mux_options.extend([
                    ("hls_time".to_string(), format!("{}", h.segment_seconds)),
                    ("hls_playlist_type".into(), "vod".into()),
                    ("hls_segment_type".into(), h.segment_type.clone()),
                    ("hls_fmp4_init_filename".into(), "init.mp4".into()),
                    (
                        "hls_segment_filename".into(),
                        dir.join(format!("seg_%05d.{ext}"))
                            .to_string_lossy()
                            .into_owned(),
                    ),
                    ("hls_flags".into(), "independent_segments".into()),
                ]);
                (
                    dir.join("index.m3u8"),
                    pk.dir.join(&o.name).join("index.m3u8"),
                )
            }
            Some(pk) => {
                let storyboard = o
                    .video
                    .as_ref()
                    .and_then(|v| v.thumbnails.as_ref())
                    .is_some_and(|t| t.mode == "storyboard");
                let name = if storyboard {
                    format!("{}_%03d.{}", o.name, o.extension())
                } else {
                    format!("{}.{}", o.name, o.extension())
                };
                if o.container == "image2" && !storyboard {
                    mux_options.push(("update".into(), "1".into()));
                }
                (pk.temp_dir.join(&name), pk.dir.join(&name))
            }
            None => {
                let p = outdir.join(format!("{stem}_{}.{}", o.name, o.extension()));
                (p.clone(), p)
            }
        };
        let mut metadata = Vec::new();
        if o.faststart {
            mux_options.push(("movflags".into(), "+faststart".into()));
        }
        let mut backend_used = Backend::Software;
        let mut picture = None;
        let mut encoder_name = None;
        let video = match (&o.video, &src_video) {
            (Some(v), Some(sv)) => {
                let rate = match v.frame_rate {
                    profile::FrameRate::Source => sv.rate,
                    profile::FrameRate::Fixed(r) => r,
                };
                if let Some(d) = duration {
                    expected_frames = Some(sv.rate.frames_in(d));
                }
                let out_tc = src_tc.as_deref().and_then(|t| convert_tc(t, sv.rate, rate));
                if let Some(tc) = &out_tc {
                    metadata.push(("timecode".to_string(), tc.clone()));
                }
                let backend = pick_backend(choice, &v.codec, &v.pix_fmt)?;
                backend_used = backend;
                let encoder = match &v.encoder {
                    Some(e) => e.clone(),
                    None => backend
                        .encoder_for(&v.codec)
                        .unwrap_or_else(|| v.codec.clone()),
                };
                encoder_name = Some(encoder.clone());
                let burn = v.burn_timecode.then(|| {
                    let font = Path::new(DEJAVU_MONO)
                        .exists()
                        .then(|| DEJAVU_MONO.to_string());
                    (
                        out_tc.clone().unwrap_or_else(|| {
                            Timecode::parse("00:00:00:00", rate)
                                .map(|t| t.to_string())
                                .unwrap_or_default()
                        }),
                        font,
                    )
                });
                let mut dst = DstVideo {
                    width: v.width,
                    height: v.height,
                    dar: v.display_aspect(),
                    rate,
                    scan: v.scan,
                    pix_fmt: if backend == Backend::Software {
                        v.pix_fmt.clone()
                    } else {
                        "nv12".into()
                    },
                    bt709: v.color.as_deref() == Some("bt709"),
                    burn_timecode: burn,
                    hw_upload: matches!(backend, Backend::Vaapi | Backend::Qsv),
                    vbi_lines: v.vbi_lines,
                    stills: v.thumbnails.as_ref().map(|t| match t.mode.as_str() {
                        "poster" => plan::Stills::Poster {
                            at_s: duration.unwrap_or(0.0) * t.at,
                        },
                        _ => plan::Stills::Storyboard {
                            interval_s: t.interval_seconds,
                            columns: t.columns,
                            rows: t.rows,
                        },
                    }),
                };
                picture = picture_for(src, o);
                if let Some((w, h)) = picture {
                    dst.width = w;
                    dst.height = h;
                }
                let fit = plan::fit(sv, &dst);
                let filter = plan::video_chain(sv, &dst);
                let gpu_filter = if backend == Backend::Nvenc {
                    plan::video_chain_cuda(sv, &dst)
                } else {
                    None
                };
                let interlaced = match v.scan {
                    Scan::Progressive => None,
                    Scan::Tff => Some(FieldOrder::Tff),
                    Scan::Bff => Some(FieldOrder::Bff),
                };
                let (mut min_rate, mut max_rate, mut bufsize) =
                    (None, v.maxrate.map(|b| b.bps()), v.bufsize.map(|b| b.bps()));
                let bitrate = v.bitrate.map(|b| b.bps());
                if v.rate_control == RateControl::Cbr {
                    min_rate = bitrate;
                    max_rate = bitrate;
                    if bufsize.is_none() {
                        bufsize = bitrate;
                    }
                }
                let mut options = encoder_options(&encoder, v, rate, interlaced.is_some());
                for (k, val) in &v.options {
                    options.retain(|(ok, _)| ok != k);
                    options.push((k.clone(), val.clone()));
                }
                Some(VideoOut {
                    filter,
                    gpu_filter,
                    encoder,
                    backend,
                    frame_rate: (rate.num as i32, rate.den as i32),
                    bit_rate: bitrate,
                    max_rate,
                    min_rate,
                    buffer_size: bufsize,
                    // MPEG-2 CBR (XDCAM, IMX) starts with a full VBV buffer, as RDD9 decoders expect.
                    initial_occupancy: if v.codec == "mpeg2video"
                        && v.rate_control == RateControl::Cbr
                    {
                        bufsize
                    } else {
                        None
                    },
                    gop: v.gop_frames(rate),
                    b_frames: v.b_frames,
                    closed_gop: v.closed_gop,
                    profile_id: v
                        .profile
                        .as_deref()
                        .and_then(|p| profile_option(&v.codec, p)),
                    level_id: v
                        .level
                        .as_deref()
                        .and_then(|l| level_option(&v.codec, v.profile.as_deref(), l)),
                    interlaced,
                    bt709: v.color.as_deref() == Some("bt709"),
                    sample_aspect: (fit.sar.0 as i32, fit.sar.1 as i32),
                    options,
                    global_header: engine::muxer_global_header(&o.container),
                })
            }
            _ => None,
        };
        if video.is_none() {
            if let Some(tc) = &src_tc {
                metadata.push(("timecode".into(), tc.clone()));
            }
        }
        let audio = match &o.audio {
            Some(a) => {
                let chans: Vec<u32> = a
                    .tracks
                    .iter()
                    .map(|t| profile::layout_channels(t).unwrap_or(2))
                    .collect();
                let fmt = engine::audio_encoder_format(&a.codec).ok_or_else(|| {
                    TranscodeError::Source {
                        file: prof.source.clone(),
                        what: format!("audio encoder {} not found", a.codec),
                    }
                })?;
                let level = match &prof.loudness {
                    Some(t) => level_fix(src, &src_audio, &chans, t, a, &mut measured)?,
                    None => None,
                };
                let filter = plan::audio_graph(&src_audio, &chans, a.sample_rate, &fmt, level);
                let options: Vec<(String, String)> = a
                    .options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Some(AudioOut {
                    filter,
                    tracks: chans
                        .iter()
                        .map(|&c| AudioTrack {
                            encoder: a.codec.clone(),
                            sample_rate: a.sample_rate,
                            channels: c,
                            bit_rate: a.bitrate.map(|b| b.bps()),
                            options: options.clone(),
                            global_header: engine::muxer_global_header(&o.container),
                        })
                        .collect(),
                })
            }
            None => None,
        };
        // Single files are measured while they are written; packages and stills are read back.
        let tap =
            (package.is_none() && !matches!(o.container.as_str(), "hls" | "image2")).then(|| {
                let first_audio = usize::from(video.is_some());
                let chans: Vec<u32> = audio
                    .as_ref()
                    .map(|a| a.tracks.iter().map(|t| t.channels).collect())
                    .unwrap_or_default();
                let measure = prof.loudness.is_some() && !chans.is_empty();
                Tap {
                    programme: if measure {
                        programme_tracks(&chans)
                            .into_iter()
                            .map(|t| t + first_audio)
                            .collect()
                    } else {
                        vec![]
                    },
                    sink: measure.then(|| -> Arc<dyn Fn() -> Box<dyn BlockSink> + Send + Sync> {
                        Arc::new(|| Box::new(loudness::Meter::new()))
                    }),
                    slot: Default::default(),
                }
            });
        let in_flight = InFlight(
            tap.as_ref()
                .map_or_else(Default::default, |t| t.slot.clone()),
        );
        facts.push(SourceFacts {
            in_flight,
            duration_s: src_video_duration,
            start_timecode: metadata
                .iter()
                .find(|(k, _)| k == "timecode")
                .map(|(_, v)| v.clone()),
            frame_rate: src_video.as_ref().map(|v| v.rate),
            no_source_audio: src.audio.is_empty(),
            picture,
        });
        planned.push(PlannedOutput {
            index,
            name: o.name.clone(),
            path: published,
            container: o.container.clone(),
            backend: backend_used.name(),
            encoder: encoder_name,
        });
        outputs.push(OutputSpec {
            name: o.name.clone(),
            // A package's renditions are written in place inside a directory published whole.
            sink: OutputSink::File {
                path: final_path,
                atomic: package.is_none(),
            },
            muxer: o.container.clone(),
            mux_options,
            metadata,
            video,
            audio,
            tap,
        });
    }
    let wants_audio = prof.outputs.iter().any(|o| o.audio.is_some());
    Ok(Job {
        spec: PipelineSpec {
            input: InputSource::File(input),
            video_stream: if wants_video {
                sv.map(|v| v.index)
            } else {
                None
            },
            audio_streams: if wants_audio {
                src.audio.iter().map(|a| a.index).collect()
            } else {
                vec![]
            },
            declared_duration_s: duration,
            hw_decode: if outputs.iter().any(|o| {
                o.video
                    .as_ref()
                    .is_some_and(|v| v.backend == Backend::Nvenc)
            }) && sv.is_some_and(|v| nvdec_can(&v.codec, v.pix_fmt.as_deref()))
            {
                Some(Backend::Nvenc)
            } else {
                None
            },
            outputs,
        },
        outputs: planned,
        facts,
        package,
        dash: prof.package.as_ref().is_some_and(|p| p.dash),
        hls_master: prof.package.as_ref().is_some_and(|p| p.hls_master),
        expected_frames,
        duration_s: duration,
    })
}

/// The gain (and limiter) that brings the programme of these tracks to the target: the mix is
/// measured on the source before encoding (BS.1770-4), so the correction is one linear gain
/// unless the peaks would pass the ceiling. Measurements are shared between outputs that make
/// the same programme mix.
fn level_fix(
    src: &ProbeReport,
    src_audio: &[SrcAudio],
    tracks: &[u32],
    target: &profile::LoudnessTarget,
    audio: &profile::Audio,
    measured: &mut Vec<(Vec<plan::ChannelMix>, Loudness)>,
) -> Result<Option<plan::LevelFix>, TranscodeError> {
    if src_audio.is_empty() {
        return Ok(None);
    }
    let mix = plan::programme_mix(src_audio, tracks);
    let l = match measured.iter().find(|(m, _)| *m == mix) {
        Some((_, l)) => l.clone(),
        None => {
            let streams: Vec<usize> = src.audio.iter().map(|a| a.index).collect();
            let l =
                loudness::measure_mix(Path::new(&src.file), &streams, Some(&mix)).map_err(|e| {
                    TranscodeError::Source {
                        file: src.file.clone(),
                        what: format!("loudness of the programme: {e}"),
                    }
                })?;
            measured.push((mix.clone(), l.clone()));
            l
        }
    };
    let Some(i) = l.integrated_lufs else {
        return Ok(None); // silence: nothing to normalise
    };
    let gain_db = target.integrated_lufs - i;
    // The oversampled limiter lets a few tenths of a dB through: aim under the ceiling.
    let threshold = target.true_peak_dbtp - 0.5;
    let peak_after = l.true_peak_dbtp.map(|p| p + gain_db);
    let limit_dbfs = peak_after.filter(|p| *p > threshold).map(|_| threshold);
    let mut fix = plan::LevelFix {
        gain_db,
        limit_dbfs,
    };
    // The encoder round trip is simulated for lossy codecs that take planar float (AAC, AC-3,
    // E-AC-3); others are measured after the chain alone.
    let lossless = audio.codec.starts_with("pcm_")
        || matches!(
            audio.codec.as_str(),
            "flac" | "alac" | "wavpack" | "tta" | "truehd" | "mlp"
        );
    let lossy = !lossless && engine::audio_encoder_format(&audio.codec).as_deref() == Some("fltp");
    if limit_dbfs.is_some() || lossy {
        // Limiting takes loudness away and a lossy codec changes both loudness and peaks: run
        // the audio through the same chain and the same encoder, decode it, measure what comes
        // out, and correct, a few times at most.
        let streams: Vec<usize> = src.audio.iter().map(|a| a.index).collect();
        let rate = audio.sample_rate;
        let track = AudioTrack {
            encoder: audio.codec.clone(),
            sample_rate: rate,
            channels: mix.len() as u32,
            bit_rate: audio.bitrate.map(|b| b.bps()),
            options: audio
                .options
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            global_header: false,
        };
        // Only a fix that was run through the simulation is returned: the correction after the
        // last round is a guess, and a guess can put the true peak over the ceiling.
        let aim_peak = target.true_peak_dbtp - if lossy { 0.3 } else { 0.2 };
        let mut best: Option<(f64, plan::LevelFix)> = None;
        for round in 1..=6 {
            let chain = format!(
                "aresample={rate},{},{},aresample={rate}",
                plan::pan(&mix),
                fix.chain(rate)
            );
            let out = loudness::measure_chain(
                Path::new(&src.file),
                &streams,
                &chain,
                lossy.then_some(&track),
            )
            .map_err(|e| TranscodeError::Source {
                file: src.file.clone(),
                what: format!("loudness of the corrected programme: {e}"),
            })?;
            let Some(i) = out.integrated_lufs else { break };
            tracing::debug!(
                round,
                gain_db = fix.gain_db,
                limit_dbfs = ?fix.limit_dbfs,
                integrated = i,
                true_peak = ?out.true_peak_dbtp,
                "level fix simulated"
            );
            let miss = target.integrated_lufs - i;
            let over = out.true_peak_dbtp.map_or(0.0, |p| p - aim_peak);
            if over <= 0.0 && best.as_ref().is_none_or(|(m, _)| miss.abs() < m.abs()) {
                best = Some((miss, fix));
            }
            if miss.abs() <= target.tolerance_lu * 0.3 && over <= 0.0 {
                break;
            }
            fix.gain_db += miss;
            if over > 0.0 || fix.limit_dbfs.is_some() {
                let base = fix.limit_dbfs.unwrap_or(threshold);
                fix.limit_dbfs = Some(if over > 0.0 { base - over } else { base });
            }
        }
        if let Some((_, f)) = best {
            fix = f;
        }
    }
    Ok(Some(fix))
}

/// Codecs and chroma NVDEC decodes on every NVIDIA generation that has NVENC.
fn nvdec_can(codec: &str, pix_fmt: Option<&str>) -> bool {
    matches!(codec, "h264" | "hevc" | "mpeg2video" | "vp9" | "av1")
        && matches!(
            pix_fmt,
            Some("yuv420p") | Some("yuvj420p") | Some("yuv420p10le") | Some("nv12")
        )
}

/// The source timecode restated at the output rate (same instant).
fn convert_tc(tc: &str, src: Rate, dst: Rate) -> Option<String> {
    let t = Timecode::parse(tc, src).ok()?;
    if src.timecode_base() == dst.timecode_base() && src.is_ntsc_drop() == dst.is_ntsc_drop() {
        return Some(t.to_string());
    }
    let seconds = t.frames as f64 / f64::from(t.base);
    let zero = Timecode::parse(
        if dst.is_ntsc_drop() {
            "00:00:00;00"
        } else {
            "00:00:00:00"
        },
        dst,
    )
    .ok()?;
    Some(
        zero.add_frames((seconds * f64::from(dst.timecode_base())).round() as u64)
            .to_string(),
    )
}

/// Runs a compiled job to the end; a package is written in its temporary directory, completed
/// with its playlists and manifest, and published by one rename. On any error nothing is left.
pub fn run(
    job: &Job,
    opened: Option<crate::av::ff::format::context::Input>,
    progress: Arc<Progress>,
    cancel: Arc<AtomicBool>,
) -> Result<engine::RunReport, TranscodeError> {
    let Some(pk) = &job.package else {
        return Ok(engine::run_with(&job.spec, opened, progress, cancel)?);
    };
    let fail = |what: String| TranscodeError::OutDir {
        dir: pk.dir.clone(),
        what,
    };
    if pk.dir.exists() {
        return Err(fail(
            "already exists: remove it or choose another output directory".into(),
        ));
    }
    let _ = std::fs::remove_dir_all(&pk.temp_dir);
    let result = (|| {
        for o in &job.spec.outputs {
            if let Some(parent) = o.sink.path().and_then(Path::parent) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| fail(format!("cannot be created: {e}")))?;
            }
        }
        let report = engine::run_with(&job.spec, opened, progress, cancel)?;
        let outputs = &job.spec.outputs;
        let renditions = outputs
            .iter()
            .filter(|o| o.muxer == "hls")
            .filter_map(|o| {
                Some(crate::output::package::Written {
                    name: &o.name,
                    playlist: o.sink.path()?,
                    // The first output of that name, as the texts always took it.
                    video: outputs
                        .iter()
                        .find(|x| x.name == o.name)
                        .and_then(|x| x.video.as_ref()),
                })
            })
            .collect();
        crate::output::package::finish(&crate::output::package::Package {
            dir: &pk.dir,
            temp_dir: &pk.temp_dir,
            renditions,
            hls_master: job.hls_master,
            dash: job.dash,
        })
        .map_err(fail)?;
        Ok(report)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&pk.temp_dir);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(codec: &str, extra: &str) -> profile::Video {
        toml::from_str(&format!(
            "codec = \"{codec}\"\nwidth = 1920\nheight = 1080\npix_fmt = \"yuv420p\"\nrate_control = \"vbr\"\nbitrate = \"8M\"\ngop_seconds = 2.0\nb_frames = 3\n{extra}"
        ))
        .unwrap()
    }

    fn has(o: &[(String, String)], k: &str, v: &str) -> bool {
        o.iter().any(|(a, b)| a == k && b == v)
    }

    /// Every encoder family gets what keeps its GOP fixed through scene cuts; the ones that
    /// cannot run here (NVENC, VA-API, QSV) are checked on the options they are given.
    #[test]
    fn every_encoder_family_is_told_to_keep_its_gop() {
        let r = Rate::new(25, 1);
        let o = encoder_options("libx264", &video("h264", ""), r, false);
        assert!(
            has(&o, "sc_threshold", "0") && has(&o, "keyint_min", "50"),
            "{o:?}"
        );
        assert!(has(&o, "forced-idr", "1"));
        let o = encoder_options("libx265", &video("hevc", ""), r, false);
        let params = &o.iter().find(|(k, _)| k == "x265-params").unwrap().1;
        for p in ["scenecut=0", "open-gop=0", "keyint=50", "min-keyint=50"] {
            assert!(params.split(':').any(|x| x == p), "{params}");
        }
        for nv in ["h264_nvenc", "hevc_nvenc"] {
            let o = encoder_options(nv, &video("h264", ""), r, false);
            assert!(
                has(&o, "no-scenecut", "1") && has(&o, "forced-idr", "1"),
                "{o:?}"
            );
        }
        let o = encoder_options("h264_vaapi", &video("h264", ""), r, false);
        assert!(has(&o, "idr_interval", "0"), "{o:?}");
        let o = encoder_options("h264_qsv", &video("h264", ""), r, false);
        assert!(has(&o, "adaptive_i", "0"), "{o:?}");
        let o = encoder_options(
            "mpeg2video",
            &video("mpeg2video", "closed_gop = true"),
            r,
            true,
        );
        assert!(has(&o, "sc_threshold", "1000000000"), "{o:?}");
        assert!(has(&o, "mpv_flags", "+strict_gop") && has(&o, "flags", "+ildct+ilme"));
        let o = encoder_options("mpeg2video", &video("mpeg2video", ""), r, false);
        assert!(
            !o.iter().any(|(k, _)| k == "mpv_flags" || k == "flags"),
            "{o:?}"
        );
    }

    #[test]
    fn platform_renditions_are_not_upscaled_house_formats_are() {
        assert!(!video("h264", "").upscales("mp4"));
        assert!(video("h264", "upscale = true").upscales("mp4"));
        assert!(video("mpeg2video", "").upscales("mxf"));
        assert!(video("h264", "").upscales("hls"));
        assert!(video("dnxhd", "").upscales("mov"));
    }

    #[test]
    fn timecode_conversion_keeps_the_instant() {
        assert_eq!(
            convert_tc("10:00:00:00", Rate::new(25, 1), Rate::new(25, 1)).unwrap(),
            "10:00:00:00"
        );
        assert_eq!(
            convert_tc("10:00:01:12", Rate::new(25, 1), Rate::new(50, 1)).unwrap(),
            "10:00:01:24"
        );
    }

    #[test]
    fn software_is_always_possible() {
        assert_eq!(
            pick_backend(BackendChoice::Software, "h264", "yuv420p").unwrap(),
            Backend::Software
        );
        assert_eq!(
            pick_backend(BackendChoice::Auto, "mpeg2video", "yuv422p").unwrap(),
            Backend::Software
        );
    }
}
