//! Pipelines: turns a profile and a probed source into the engine's spec, and runs it with
//! progress. Compiling a file pipeline goes: source facts (`Facts`), output naming
//! (`name_output`), per output its video (backend, encoder, the option table of its encoder
//! family in `encoders`) and its audio (track mapping, loudness level fix), the in-flight
//! measurement, then the engine spec. Live profiles compile in [`live`] from the same video and
//! audio pieces. The chain rules themselves are pure and live in [`plan`]; file outputs are
//! published by `output::file` (atomic) and packages completed by `output::package`.
//!
//! Imports `av`, `output`, `link`, `profile`, `qc`, `timecode` and `config` values; never jobs,
//! catalog, hub or api (they call it).

mod encoders;
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
use crate::av::io::InputSource;
use crate::av::probe::ProbeReport;
use crate::av::AvError;
use crate::config::Rate;
use crate::output::file;
use crate::profile::verify::{InFlight, SourceFacts};
use crate::profile::{self, Profile, RateControl, Scan};
use crate::qc::loudness::{self, Loudness};
use crate::timecode::Timecode;
use plan::{DstVideo, SrcAudio, SrcVideo};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
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

/// A compiled pipeline: the engine spec plus what the user is told about it.
#[derive(Debug, Clone)]
pub struct PipelinePlan {
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
pub fn merge(jobs: &[PipelinePlan]) -> Option<PipelinePlan> {
    let first = jobs.first()?;
    let same = |j: &PipelinePlan| {
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
    Some(PipelinePlan {
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

fn source_err(src: &ProbeReport, what: impl Into<String>) -> PipelineError {
    PipelineError::Source {
        file: src.file.clone(),
        what: what.into(),
    }
}

/// Checks that `dir` exists (creating it if its parent exists) and can take new files.
pub fn prepare_outdir(dir: &Path) -> Result<(), PipelineError> {
    let err = |what: String| PipelineError::OutDir {
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
) -> Result<Backend, PipelineError> {
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
                return Err(PipelineError::Unavailable {
                    backend: b,
                    reason: st.error.unwrap_or_else(|| "unknown reason".into()),
                });
            }
            if !gpu_can {
                return Err(PipelineError::Backend {
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
fn src_video_of(src: &ProbeReport) -> Result<Option<SrcVideo>, PipelineError> {
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

/// What a compile reads off the probed source, once for all outputs.
struct Facts<'a> {
    src: &'a ProbeReport,
    input: PathBuf,
    /// The source's name without extension: what output names start with.
    stem: String,
    video: Option<SrcVideo>,
    audio: Vec<SrcAudio>,
    duration: Option<f64>,
    /// The picture's length is what outputs must keep; audio may run a little longer.
    video_duration: Option<f64>,
    timecode: Option<String>,
}

impl<'a> Facts<'a> {
    fn of(src: &'a ProbeReport, prof: &Profile) -> Result<Facts<'a>, PipelineError> {
        let input = PathBuf::from(&src.file);
        let stem = input
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("output")
            .to_string();
        let sv = src.video.first();
        if prof.outputs.iter().any(|o| o.video.is_some()) && sv.is_none() {
            return Err(source_err(
                src,
                format!("has no video stream, but profile {} makes video", prof.name),
            ));
        }
        let duration = src.duration_s();
        Ok(Facts {
            src,
            input,
            stem,
            video: src_video_of(src)?,
            audio: src
                .audio
                .iter()
                .map(|a| SrcAudio {
                    channels: a.channels.max(1),
                })
                .collect(),
            duration,
            video_duration: sv.and_then(|v| v.duration_s).or(duration),
            timecode: src.container.start_timecode.clone(),
        })
    }
}

/// Where a package is written and published, when the profile makes one.
fn package_plan(prof: &Profile, outdir: &Path, stem: &str) -> Option<PackagePlan> {
    prof.package.as_ref().map(|_| {
        // libav reads `%` in segment and image paths as a pattern: keep it out of the package.
        let dir = outdir.join(format!("{}_{}", stem.replace('%', "_"), prof.name));
        let mut temp = dir.as_os_str().to_owned();
        temp.push(".part");
        PackagePlan {
            dir,
            temp_dir: PathBuf::from(temp),
        }
    })
}

/// A ladder rendition larger than the source, when the package skips upscales: the smallest
/// rendition is made even from a smaller source; larger ones only up to its size.
fn skipped(prof: &Profile, o: &profile::Output, src_video: Option<&SrcVideo>) -> bool {
    let (Some(pk), Some(v), Some(s)) = (&prof.package, &o.video, src_video) else {
        return false;
    };
    let smallest = prof
        .outputs
        .iter()
        .filter(|o| o.container == "hls")
        .filter_map(|o| o.video.as_ref().map(|v| v.height))
        .min();
    pk.skip_upscale && o.container == "hls" && v.height > s.height && Some(v.height) != smallest
}

/// An output's names: where it is written, where it is once published, and the muxer options
/// that name its other files (segments, stills).
struct Named {
    written: PathBuf,
    published: PathBuf,
    mux_options: Vec<(String, String)>,
}

fn name_output(
    o: &profile::Output,
    package: Option<&PackagePlan>,
    outdir: &Path,
    stem: &str,
) -> Named {
    let mut mux_options = Vec::new();
    let (written, published) = match package {
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
    if o.faststart {
        mux_options.push(("movflags".into(), "+faststart".into()));
    }
    Named {
        written,
        published,
        mux_options,
    }
}

/// An output's video as compiled, with what the job reports about it.
struct MadeVideo {
    out: VideoOut,
    backend: Backend,
    encoder: String,
    /// The frame it is made at when not the profile's own (see [`picture_for`]).
    picture: Option<(u32, u32)>,
    /// The source's timecode restated at the output rate.
    timecode: Option<String>,
}

fn make_video(
    f: &Facts<'_>,
    o: &profile::Output,
    v: &profile::Video,
    sv: &SrcVideo,
    choice: BackendChoice,
) -> Result<MadeVideo, PipelineError> {
    let rate = match v.frame_rate {
        profile::FrameRate::Source => sv.rate,
        profile::FrameRate::Fixed(r) => r,
    };
    let timecode = f
        .timecode
        .as_deref()
        .and_then(|t| convert_tc(t, sv.rate, rate));
    let (backend, encoder) = backend_and_encoder(choice, v)?;
    let mut dst = dst_video(v, rate, backend, timecode.as_deref(), f.duration);
    let picture = picture_for(f.src, o);
    if let Some((w, h)) = picture {
        dst.width = w;
        dst.height = h;
    }
    let interlaced = match v.scan {
        Scan::Progressive => None,
        Scan::Tff => Some(FieldOrder::Tff),
        Scan::Bff => Some(FieldOrder::Bff),
    };
    let base = video_encode(v, sv, &dst, backend, &encoder, interlaced, &o.container);
    let out = VideoOut {
        gpu_filter: if backend == Backend::Nvenc {
            plan::video_chain_cuda(sv, &dst)
        } else {
            None
        },
        // MPEG-2 CBR (XDCAM, IMX) starts with a full VBV buffer, as RDD9 decoders expect.
        initial_occupancy: if v.codec == "mpeg2video" && v.rate_control == RateControl::Cbr {
            base.buffer_size
        } else {
            None
        },
        profile_id: v
            .profile
            .as_deref()
            .and_then(|p| encoders::profile_option(&v.codec, p)),
        level_id: v
            .level
            .as_deref()
            .and_then(|l| encoders::level_option(&v.codec, v.profile.as_deref(), l)),
        ..base
    };
    Ok(MadeVideo {
        out,
        backend,
        encoder,
        picture,
        timecode,
    })
}

/// The backend a video output encodes on, and its encoder: the profile's own, else the
/// backend's for the codec.
fn backend_and_encoder(
    choice: BackendChoice,
    v: &profile::Video,
) -> Result<(Backend, String), PipelineError> {
    let backend = pick_backend(choice, &v.codec, &v.pix_fmt)?;
    let encoder = match &v.encoder {
        Some(e) => e.clone(),
        None => backend
            .encoder_for(&v.codec)
            .unwrap_or_else(|| v.codec.clone()),
    };
    Ok((backend, encoder))
}

/// The encode of a video output, as file and live outputs alike make it: the source picture
/// `sv` conformed to `dst` in software, encoded with its family's options and the profile's
/// rates. A file output adds what only files have (GPU filters, MPEG-2 profile and level).
fn video_encode(
    v: &profile::Video,
    sv: &SrcVideo,
    dst: &DstVideo,
    backend: Backend,
    encoder: &str,
    interlaced: Option<FieldOrder>,
    container: &str,
) -> VideoOut {
    let rate = dst.rate;
    let (bit_rate, min_rate, max_rate, buffer_size) = rates(v);
    let fit = plan::fit(sv, dst);
    VideoOut {
        filter: plan::video_chain(sv, dst),
        gpu_filter: None,
        encoder: encoder.to_string(),
        backend,
        frame_rate: (rate.num as i32, rate.den as i32),
        bit_rate,
        max_rate,
        min_rate,
        buffer_size,
        initial_occupancy: None,
        gop: v.gop_frames(rate),
        b_frames: v.b_frames,
        closed_gop: v.closed_gop,
        profile_id: None,
        level_id: None,
        interlaced,
        bt709: dst.bt709,
        sample_aspect: (fit.sar.0 as i32, fit.sar.1 as i32),
        options: encoders::video_options(encoder, v, rate, interlaced.is_some()),
        global_header: engine::muxer_global_header(container),
    }
}

/// The picture an output is made to (before any no-upscale reduction).
fn dst_video(
    v: &profile::Video,
    rate: Rate,
    backend: Backend,
    timecode: Option<&str>,
    duration: Option<f64>,
) -> DstVideo {
    let burn = v.burn_timecode.then(|| {
        let font = Path::new(DEJAVU_MONO)
            .exists()
            .then(|| DEJAVU_MONO.to_string());
        (
            timecode.map(str::to_string).unwrap_or_else(|| {
                Timecode::parse("00:00:00:00", rate)
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            }),
            font,
        )
    });
    DstVideo {
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
    }
}

/// Bit rate, minimum and maximum rate, and VBV buffer: CBR pins all three to the bit rate.
fn rates(v: &profile::Video) -> (Option<u64>, Option<u64>, Option<u64>, Option<u64>) {
    let bitrate = v.bitrate.map(|b| b.bps());
    let (mut min_rate, mut max_rate, mut bufsize) =
        (None, v.maxrate.map(|b| b.bps()), v.bufsize.map(|b| b.bps()));
    if v.rate_control == RateControl::Cbr {
        min_rate = bitrate;
        max_rate = bitrate;
        if bufsize.is_none() {
            bufsize = bitrate;
        }
    }
    (bitrate, min_rate, max_rate, bufsize)
}

/// An output's audio: the source's tracks mapped to the profile's, with the level correction
/// its loudness target asks for.
fn make_audio(
    f: &Facts<'_>,
    prof: &Profile,
    o: &profile::Output,
    a: &profile::Audio,
    measured: &mut Vec<(Vec<plan::ChannelMix>, Loudness)>,
) -> Result<AudioOut, PipelineError> {
    let fmt = engine::audio_encoder_format(&a.codec).ok_or_else(|| PipelineError::Source {
        file: prof.source.clone(),
        what: format!("audio encoder {} not found", a.codec),
    })?;
    let level = match &prof.loudness {
        Some(t) => level_fix(f.src, &f.audio, &track_channels(a), t, a, measured)?,
        None => None,
    };
    Ok(audio_encode(a, &f.audio, &fmt, level, &o.container))
}

/// The channels of each of an audio output's tracks.
fn track_channels(a: &profile::Audio) -> Vec<u32> {
    a.tracks
        .iter()
        .map(|t| profile::layout_channels(t).unwrap_or(2))
        .collect()
}

/// The audio of an output, as file and live outputs alike make it: the source streams `src`
/// mapped to the profile's tracks through one graph (sample format `fmt`, `level` dB of
/// correction), and each track's encoder.
fn audio_encode(
    a: &profile::Audio,
    src: &[SrcAudio],
    fmt: &str,
    level: Option<plan::LevelFix>,
    container: &str,
) -> AudioOut {
    let chans = track_channels(a);
    let options = encoders::audio_options(a);
    AudioOut {
        filter: plan::audio_graph(src, &chans, a.sample_rate, fmt, level),
        tracks: chans
            .iter()
            .map(|&c| AudioTrack {
                encoder: a.codec.clone(),
                sample_rate: a.sample_rate,
                channels: c,
                bit_rate: a.bitrate.map(|b| b.bps()),
                options: options.clone(),
                global_header: engine::muxer_global_header(container),
            })
            .collect(),
    }
}

/// What is measured while an output is written: single files are, packages and stills are
/// read back instead. The programme's loudness is measured when the profile sets a target.
fn tap_for(
    prof: &Profile,
    o: &profile::Output,
    packaged: bool,
    has_video: bool,
    audio: Option<&AudioOut>,
) -> Option<Tap> {
    if packaged || matches!(o.container.as_str(), "hls" | "image2") {
        return None;
    }
    let first_audio = usize::from(has_video);
    let chans: Vec<u32> = audio
        .map(|a| a.tracks.iter().map(|t| t.channels).collect())
        .unwrap_or_default();
    let measure = prof.loudness.is_some() && !chans.is_empty();
    Some(Tap {
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
    })
}

/// Compiles a profile against a probed source.
pub fn compile(
    src: &ProbeReport,
    prof: &Profile,
    outdir: &Path,
    choice: BackendChoice,
) -> Result<PipelinePlan, PipelineError> {
    let f = Facts::of(src, prof)?;
    let package = package_plan(prof, outdir, &f.stem);
    let mut outputs = Vec::new();
    let mut planned = Vec::new();
    let mut measured: Vec<(Vec<plan::ChannelMix>, Loudness)> = Vec::new();
    let mut facts = Vec::new();
    let mut expected_frames = None;
    for (index, o) in prof.outputs.iter().enumerate() {
        if skipped(prof, o, f.video.as_ref()) {
            continue;
        }
        let named = name_output(o, package.as_ref(), outdir, &f.stem);
        let video = match (&o.video, &f.video) {
            (Some(v), Some(sv)) => {
                if let Some(d) = f.duration {
                    expected_frames = Some(sv.rate.frames_in(d));
                }
                Some(make_video(&f, o, v, sv, choice)?)
            }
            _ => None,
        };
        let timecode = match &video {
            Some(m) => m.timecode.clone(),
            None => f.timecode.clone(),
        };
        let metadata: Vec<(String, String)> = timecode
            .iter()
            .map(|tc| ("timecode".to_string(), tc.clone()))
            .collect();
        let audio = match &o.audio {
            Some(a) => Some(make_audio(&f, prof, o, a, &mut measured)?),
            None => None,
        };
        let tap = tap_for(prof, o, package.is_some(), video.is_some(), audio.as_ref());
        facts.push(SourceFacts {
            in_flight: InFlight(
                tap.as_ref()
                    .map_or_else(Default::default, |t| t.slot.clone()),
            ),
            duration_s: f.video_duration,
            start_timecode: timecode,
            frame_rate: f.video.as_ref().map(|v| v.rate),
            no_source_audio: src.audio.is_empty(),
            picture: video.as_ref().and_then(|m| m.picture),
        });
        planned.push(planned_output(index, o, named.published, video.as_ref()));
        outputs.push(OutputSpec {
            name: o.name.clone(),
            // A package's renditions are written in place inside a directory published whole.
            sink: if package.is_none() {
                file::atomic_sink(named.written)
            } else {
                file::in_place_sink(named.written)
            },
            muxer: o.container.clone(),
            mux_options: named.mux_options,
            metadata,
            video: video.map(|m| m.out),
            audio,
            tap,
        });
    }
    Ok(PipelinePlan {
        spec: pipeline_spec(&f, prof, outputs),
        outputs: planned,
        facts,
        package,
        dash: prof.package.as_ref().is_some_and(|p| p.dash),
        hls_master: prof.package.as_ref().is_some_and(|p| p.hls_master),
        expected_frames,
        duration_s: f.duration,
    })
}

/// What the job reports of an output it makes.
fn planned_output(
    index: usize,
    o: &profile::Output,
    path: PathBuf,
    video: Option<&MadeVideo>,
) -> PlannedOutput {
    PlannedOutput {
        index,
        name: o.name.clone(),
        path,
        container: o.container.clone(),
        backend: video.map_or(Backend::Software, |m| m.backend).name(),
        encoder: video.map(|m| m.encoder.clone()),
    }
}

/// The engine's spec: the streams the profile's outputs read, and NVDEC decoding when an
/// output encodes on NVENC and NVDEC takes the source.
fn pipeline_spec(f: &Facts<'_>, prof: &Profile, outputs: Vec<OutputSpec>) -> PipelineSpec {
    let sv = f.src.video.first();
    let wants_video = prof.outputs.iter().any(|o| o.video.is_some());
    let wants_audio = prof.outputs.iter().any(|o| o.audio.is_some());
    let on_nvenc = outputs.iter().any(|o| {
        o.video
            .as_ref()
            .is_some_and(|v| v.backend == Backend::Nvenc)
    });
    PipelineSpec {
        input: InputSource::File(f.input.clone()),
        video_stream: if wants_video {
            sv.map(|v| v.index)
        } else {
            None
        },
        audio_streams: if wants_audio {
            f.src.audio.iter().map(|a| a.index).collect()
        } else {
            vec![]
        },
        declared_duration_s: f.duration,
        hw_decode: (on_nvenc && sv.is_some_and(|v| nvdec_can(&v.codec, v.pix_fmt.as_deref())))
            .then_some(Backend::Nvenc),
        outputs,
    }
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
) -> Result<Option<plan::LevelFix>, PipelineError> {
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
                    PipelineError::Source {
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
        fix = simulate_fix(src, &mix, target, audio, lossy, fix, threshold)?;
    }
    Ok(Some(fix))
}

/// Runs the programme through the same chain and the same encoder, decodes it, measures what
/// comes out and corrects, a few times at most: limiting takes loudness away and a lossy codec
/// changes both loudness and peaks.
fn simulate_fix(
    src: &ProbeReport,
    mix: &[plan::ChannelMix],
    target: &profile::LoudnessTarget,
    audio: &profile::Audio,
    lossy: bool,
    mut fix: plan::LevelFix,
    threshold: f64,
) -> Result<plan::LevelFix, PipelineError> {
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
            plan::pan(mix),
            fix.chain(rate)
        );
        let out = loudness::measure_chain(
            Path::new(&src.file),
            &streams,
            &chain,
            lossy.then_some(&track),
        )
        .map_err(|e| PipelineError::Source {
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
    Ok(fix)
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

/// Writes the engine's synthetic test clip (bars, tone, a start timecode) as `path`, published
/// atomically: the demo's source.
pub fn write_test_clip(path: &Path, seconds: u32, timecode: &str) -> Result<(), PipelineError> {
    Ok(engine::write_test_clip(
        file::atomic(path),
        seconds,
        timecode,
    )?)
}

/// Runs a compiled job to the end; a package is written in its temporary directory, completed
/// with its playlists and manifest, and published by one rename. On any error nothing is left.
pub fn run(
    job: &PipelinePlan,
    opened: Option<crate::av::ff::format::context::Input>,
    progress: Arc<Progress>,
    cancel: Arc<AtomicBool>,
) -> Result<engine::RunReport, PipelineError> {
    let Some(pk) = &job.package else {
        return Ok(engine::run_with(&job.spec, opened, progress, cancel)?);
    };
    let fail = |what: String| PipelineError::OutDir {
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
