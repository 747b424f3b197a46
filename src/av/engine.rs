//! Running a pipeline: one thread demuxes and decodes once; per output a video thread (filter +
//! encoder) and an audio thread (filter + one encoder per track) feed a mux thread that writes
//! `<final>.part`, fsyncs it and renames it only when every stream finished. Any error or a
//! cancel request stops every thread and removes the `.part` files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::graph::{self, Sink, Source};
use super::hw::{self, Backend, HwDevice};
use super::io::{InputSource, OutputSink};
use super::samples::Block;
use super::scan::{self, ScanReport, ScanStream};
use super::{ff, ffi, input, share, AvError};

/// Why one stage of a run (an output's video, audio or mux thread) stopped.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The run was cancelled, by its caller or because a neighbouring stage failed.
    #[error("cancelled")]
    Cancelled,
    /// The muxer this stage feeds stopped first: an echo of the muxer's own failure.
    #[error("muxer stopped")]
    MuxerStopped,
    /// A stream of the output ended unfinished: an echo of its encoder's failure.
    #[error("a stream of this output never finished")]
    NeverFinished,
    /// A stream of the output never started: its encoder got no input.
    #[error("a stream of this output never started (its encoder got no input)")]
    NeverStarted,
    /// The source gave this output nothing it could make a stream of, or changed under it.
    #[error("{0}")]
    Media(String),
    #[error("encoder {0} is not in the linked FFmpeg")]
    NoEncoder(String),
    #[error("encoder {0} has no sample format")]
    NoSampleFormat(String),
    /// An encoder refused to open or to take a frame; `backend` is where it runs.
    #[error("{what}: {source}")]
    Encoder {
        what: String,
        backend: Backend,
        #[source]
        source: ff::Error,
    },
    /// A filter chain could not be built; `backend` is where its frames live.
    #[error("{what}: {source}")]
    Filter {
        what: String,
        backend: Backend,
        #[source]
        source: graph::GraphError,
    },
    /// libav refused another step (a frame into a filter, a muxer's header).
    #[error("{what}: {source}")]
    Libav {
        what: String,
        #[source]
        source: ff::Error,
    },
    /// The output file could not be created, written or finished.
    #[error("cannot {what} {}: {source}", .path.display())]
    Write {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: ff::Error,
    },
    /// A file operation on the output (`what` prefixes its path: "fsync ", "rename to ").
    #[error("{what}{}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A filter's pad or a stream the stage itself added is missing: a fault of the engine.
    #[error("{0} missing")]
    Missing(&'static str),
    #[error("worker thread panicked")]
    Panicked,
}

impl StageError {
    /// A failure that only follows another stage's: reported when nothing else is.
    fn is_echo(&self) -> bool {
        matches!(
            self,
            StageError::Cancelled | StageError::MuxerStopped | StageError::NeverFinished
        )
    }

    /// The GPU backend whose filter or encoder failed, when the failure is a GPU's.
    pub fn gpu(&self) -> Option<Backend> {
        match self {
            StageError::Encoder { backend, .. } | StageError::Filter { backend, .. }
                if *backend != Backend::Software =>
            {
                Some(*backend)
            }
            _ => None,
        }
    }
}

fn muxer_stopped<T>(_: T) -> StageError {
    StageError::MuxerStopped
}

fn encoder_err(what: impl Into<String>, backend: Backend) -> impl FnOnce(ff::Error) -> StageError {
    let what = what.into();
    move |source| StageError::Encoder {
        what,
        backend,
        source,
    }
}

fn libav_err(what: &'static str) -> impl FnOnce(ff::Error) -> StageError {
    move |source| StageError::Libav {
        what: what.into(),
        source,
    }
}

/// A compiled pipeline: what to read, and for each output the filter chains and encoders.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    pub input: InputSource,
    pub video_stream: Option<usize>,
    pub audio_streams: Vec<usize>,
    /// Declared duration of the source; a decode that ends well short of it is a truncated file.
    pub declared_duration_s: Option<f64>,
    /// Decode on this GPU (NVDEC for NVENC) so that frames can stay on it; falls back to the CPU
    /// decoder when the device or the codec profile is not supported.
    pub hw_decode: Option<Backend>,
    pub outputs: Vec<OutputSpec>,
}

/// Verification in flight: the output's own packets, as they go to the muxer, are decoded and
/// measured beside it (see [`scan::Scanner`]), so that checking the finished file needs only its
/// container. The result is left in `slot` when the output is complete.
#[derive(Clone, Default)]
pub struct Tap {
    /// Output streams whose audio is merged into blocks for `sink` (the programme).
    pub programme: Vec<usize>,
    /// Makes what measures the programme's blocks (e.g. a loudness meter).
    pub sink: Option<Arc<dyn Fn() -> Box<dyn BlockSink> + Send + Sync>>,
    pub slot: Arc<std::sync::Mutex<Option<Measured>>>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("programme", &self.programme)
            .finish_non_exhaustive()
    }
}

/// Takes the programme's samples block by block, and says what it found at the end.
pub trait BlockSink: Send {
    fn block(&mut self, b: &Block<'_>);
    fn finish(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}

/// What a [`Tap`] measured on a finished output.
pub struct Measured {
    pub scan: ScanReport,
    /// The programme streams merged for the sink.
    pub streams: Vec<usize>,
    /// The [`BlockSink`]'s result, when there was one.
    pub programme: Option<Box<dyn std::any::Any + Send>>,
}

impl std::fmt::Debug for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Measured")
            .field("scan", &self.scan)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct OutputSpec {
    pub name: String,
    pub sink: OutputSink,
    pub muxer: String,
    /// Muxer options given at write_header (e.g. `movflags=+faststart`).
    pub mux_options: Vec<(String, String)>,
    /// Container metadata (e.g. `timecode`).
    pub metadata: Vec<(String, String)>,
    pub video: Option<VideoOut>,
    pub audio: Option<AudioOut>,
    /// Measure the output while it is written (single-file outputs only).
    pub tap: Option<Tap>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOrder {
    Tff,
    Bff,
}

#[derive(Debug, Clone)]
pub struct VideoOut {
    /// Chain from `[in]` to `[out]` on frames in system memory.
    pub filter: String,
    /// The same on GPU frames, when the GPU filters can do it (see `pipeline::plan`).
    pub gpu_filter: Option<String>,
    pub encoder: String,
    pub backend: Backend,
    pub frame_rate: (i32, i32),
    pub bit_rate: Option<u64>,
    pub max_rate: Option<u64>,
    pub min_rate: Option<u64>,
    pub buffer_size: Option<u64>,
    /// VBV fill at the start (bits); the encoder's default when `None`.
    pub initial_occupancy: Option<u64>,
    pub gop: Option<u32>,
    pub b_frames: Option<u32>,
    pub closed_gop: bool,
    /// AVCodecContext.profile / level when the codec takes numbers (MPEG-2).
    pub profile_id: Option<i32>,
    pub level_id: Option<i32>,
    pub interlaced: Option<FieldOrder>,
    pub bt709: bool,
    pub sample_aspect: (i32, i32),
    /// Encoder options (global and private), passed at open.
    pub options: Vec<(String, String)>,
    /// The muxer wants codec headers out of band (MP4, MOV, Matroska; see [`muxer_global_header`]).
    pub global_header: bool,
}

#[derive(Debug, Clone)]
pub struct AudioOut {
    /// Graph from `[in0]…` (one per source audio stream, in order) to `[out0]…` (one per track).
    pub filter: String,
    pub tracks: Vec<AudioTrack>,
}

#[derive(Debug, Clone)]
pub struct AudioTrack {
    pub encoder: String,
    pub sample_rate: u32,
    pub channels: u32,
    pub bit_rate: Option<u64>,
    pub options: Vec<(String, String)>,
    pub global_header: bool,
}

/// Counters the caller reads while the pipeline runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub frames_decoded: AtomicU64,
    /// Source media time reached, in microseconds.
    pub media_us: AtomicU64,
    pub decode_errors: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub frames_decoded: u64,
    pub decode_errors: u64,
    pub outputs: Vec<PathBuf>,
}

/// The sample format an audio encoder takes first (what its filter chain must end in).
pub fn audio_encoder_format(encoder: &str) -> Option<String> {
    audio_encoder_sample(encoder).map(|s| s.name().to_string())
}

fn audio_encoder_sample(encoder: &str) -> Option<ff::format::Sample> {
    super::init();
    let codec = ff::encoder::find_by_name(encoder)?;
    // SAFETY: `sample_fmts` of a registered codec is null or an array terminated by NONE.
    unsafe {
        let fmts = (*codec.as_ptr()).sample_fmts;
        if fmts.is_null() || *fmts == ffi::AVSampleFormat::AV_SAMPLE_FMT_NONE {
            return None;
        }
        Some(ff::format::Sample::from(*fmts))
    }
}

/// The pixel formats a video encoder accepts, by name.
pub fn video_encoder_formats(encoder: &str) -> Vec<String> {
    super::init();
    let Some(codec) = ff::encoder::find_by_name(encoder) else {
        return vec![];
    };
    let mut out = vec![];
    // SAFETY: `pix_fmts` of a registered codec is null or an array terminated by NONE.
    unsafe {
        let mut p = (*codec.as_ptr()).pix_fmts;
        while !p.is_null() && *p != ffi::AVPixelFormat::AV_PIX_FMT_NONE {
            if let Some(n) = super::cstr_opt(ffi::av_get_pix_fmt_name(*p)) {
                out.push(n);
            }
            p = p.add(1);
        }
    }
    out
}

/// Whether a muxer takes codec headers out of band (AVFMT_GLOBALHEADER), as encoders must know.
pub fn muxer_global_header(name: &str) -> bool {
    super::init();
    let c = std::ffi::CString::new(name).unwrap_or_default();
    // SAFETY: av_guess_format returns a static muxer description or null.
    unsafe {
        let f = ffi::av_guess_format(c.as_ptr(), std::ptr::null(), std::ptr::null());
        !f.is_null() && (*f).flags & ffi::AVFMT_GLOBALHEADER != 0
    }
}

/// Whether a muxer of this name exists in the linked FFmpeg.
pub fn has_muxer(name: &str) -> bool {
    super::init();
    let c = std::ffi::CString::new(name).unwrap_or_default();
    // SAFETY: av_guess_format reads the NUL-terminated name and returns a static or null.
    unsafe { !ffi::av_guess_format(c.as_ptr(), std::ptr::null(), std::ptr::null()).is_null() }
}

pub(super) enum VMsg {
    Frame(ff::frame::Video),
    Eof,
}

pub(super) enum AMsg {
    Frame(usize, ff::frame::Audio),
    /// The picture has reached this many seconds: outputs that make their own silence (the
    /// source has no audio) keep pace with it instead of making it all at once.
    Tick(f64),
    Eof,
}

pub(super) enum MuxMsg {
    Ready {
        stream: usize,
        params: ff::codec::Parameters,
        time_base: ff::Rational,
        frame_rate: Option<ff::Rational>,
    },
    Packet {
        stream: usize,
        packet: ff::Packet,
        time_base: ff::Rational,
    },
    Done {
        stream: usize,
    },
}

fn part_path(final_path: &Path) -> PathBuf {
    let mut s = final_path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Runs the pipeline to the end. On error or cancel, no output is left under its final name and
/// no `.part` file remains.
pub fn run(
    spec: &PipelineSpec,
    progress: Arc<Progress>,
    cancel: Arc<AtomicBool>,
) -> Result<RunReport, AvError> {
    run_with(spec, None, progress, cancel)
}

/// Seeks an input already read from (by the probe) back to its start, for the containers whose
/// index makes that exact; `false` means: open the file again.
fn rewind(ictx: &mut ff::format::context::Input) -> bool {
    let name = ictx.format().name().to_string();
    if !matches!(
        name.as_str(),
        "mov,mp4,m4a,3gp,3g2,mj2" | "matroska,webm" | "mxf"
    ) {
        return false;
    }
    // SAFETY: the context is live and exclusively ours; seeking to the first timestamp of the
    // file with no stream selected uses AV_TIME_BASE units.
    unsafe {
        let c = ictx.as_mut_ptr();
        let start = if (*c).start_time == ffi::AV_NOPTS_VALUE {
            0
        } else {
            (*c).start_time
        };
        ffi::avformat_seek_file(c, -1, i64::MIN, start, start, 0) >= 0
    }
}

/// The pipeline's input: the context the probe opened, rewound, or the file opened again; or the
/// byte stream, through a custom reader that a cancel interrupts.
fn open_input(
    source: &InputSource,
    opened: Option<ff::format::context::Input>,
    cancel: &Arc<AtomicBool>,
) -> Result<ff::format::context::Input, AvError> {
    match source {
        InputSource::File(path) => match opened.map(|mut i| (rewind(&mut i), i)) {
            Some((true, i)) => Ok(i),
            _ => Ok(input::open_cancellable(path, Some(cancel.clone()))?),
        },
        InputSource::Stream(s) => {
            let c = cancel.clone();
            InputSource::open_stream(s, move || c.load(Ordering::Relaxed)).map_err(|source| {
                if cancel.load(Ordering::Relaxed) {
                    return AvError::Cancelled;
                }
                AvError::NotMedia {
                    path: PathBuf::from(&s.name),
                    reason: None,
                    source,
                }
            })
        }
    }
}

/// [`run`] on an input the caller already opened (see `probe::probe_open`).
pub fn run_with(
    spec: &PipelineSpec,
    opened: Option<ff::format::context::Input>,
    progress: Arc<Progress>,
    cancel: Arc<AtomicBool>,
) -> Result<RunReport, AvError> {
    super::init();
    let path = spec.input.label();
    let mut ictx = open_input(&spec.input, opened, &cancel)?;
    let inv = |what: String| AvError::Invalid {
        path: path.clone(),
        what,
    };

    // Decoders.
    let start_us = {
        // SAFETY: reading a plain field of the live input context.
        let s = unsafe { (*ictx.as_ptr()).start_time };
        if s == ffi::AV_NOPTS_VALUE {
            0
        } else {
            s
        }
    };
    let mut vdec = None;
    let mut vtb = ff::Rational::new(1, 25);
    let mut vrate = (25, 1);
    if let Some(vi) = spec.video_stream {
        let st = ictx
            .stream(vi)
            .ok_or_else(|| inv(format!("has no stream {vi}")))?;
        vtb = st.time_base();
        let r = st.avg_frame_rate();
        let r = if r.numerator() > 0 && r.denominator() > 0 {
            r
        } else {
            st.rate()
        };
        if r.numerator() > 0 && r.denominator() > 0 {
            vrate = (r.numerator(), r.denominator());
        }
        let mut ctx =
            ff::codec::Context::from_parameters(st.parameters()).map_err(|e| AvError::Libav {
                path: path.clone(),
                what: format!("video stream {vi}"),
                source: e,
            })?;
        super::decode_threads(&mut ctx, 0);
        if let Some(b) = spec.hw_decode {
            match hw::open_device(b) {
                Ok(d) => {
                    // SAFETY: fields of the not-yet-opened decoder context; the decoder gets its
                    // own reference to the device. Extra frames cover those queued to encoders.
                    unsafe {
                        let c = &mut *ctx.as_mut_ptr();
                        c.hw_device_ctx = ffi::av_buffer_ref(d.as_ptr());
                        // Each output's channel (8), its filters and its encoder's
                        // references (look-ahead, B-frames) hold decoder surfaces.
                        c.extra_hw_frames = 40 * spec.outputs.len() as i32 + 8;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "GPU decode unavailable, decoding on the CPU"),
            }
        }
        vdec = Some(ctx.decoder().video().map_err(|e| AvError::Libav {
            path: path.clone(),
            what: format!("no decoder for video stream {vi}"),
            source: e,
        })?);
    }
    let mut adecs = Vec::new();
    let mut atbs = Vec::new();
    for &ai in &spec.audio_streams {
        let st = ictx
            .stream(ai)
            .ok_or_else(|| inv(format!("has no stream {ai}")))?;
        atbs.push(st.time_base());
        let ctx =
            ff::codec::Context::from_parameters(st.parameters()).map_err(|e| AvError::Libav {
                path: path.clone(),
                what: format!("audio stream {ai}"),
                source: e,
            })?;
        adecs.push(ctx.decoder().audio().map_err(|e| AvError::Libav {
            path: path.clone(),
            what: format!("no decoder for audio stream {ai}"),
            source: e,
        })?);
    }

    // Hardware devices for outputs that encode on a GPU.
    let mut devices: Vec<(Backend, Arc<HwDevice>)> = Vec::new();
    for o in &spec.outputs {
        if let Some(v) = &o.video {
            if v.backend != Backend::Software && !devices.iter().any(|(b, _)| *b == v.backend) {
                let d = hw::open_device(v.backend).map_err(AvError::Device)?;
                devices.push((v.backend, Arc::new(d)));
            }
        }
    }

    // Output threads.
    let failed = Arc::new(AtomicBool::new(false));
    let mut vtx: Vec<Sender<VMsg>> = Vec::new();
    let mut atx: Vec<Sender<AMsg>> = Vec::new();
    let mut handles: Vec<(String, thread::JoinHandle<Result<(), StageError>>)> = Vec::new();
    let mut parts = Vec::new();
    // Checked for every output before any thread starts, so that an error leaves nothing running.
    for o in &spec.outputs {
        if let Some(parent) = o.sink.path().and_then(Path::parent) {
            if !parent.as_os_str().is_empty() && !parent.is_dir() {
                return Err(AvError::Invalid {
                    path: parent.to_owned(),
                    what: "output directory does not exist".into(),
                });
            }
        }
    }
    for o in &spec.outputs {
        let part = match &o.sink {
            OutputSink::File { path, atomic: true } => Some(part_path(path)),
            OutputSink::File { path, .. } => Some(path.clone()),
            OutputSink::Stream(_) => None,
        };
        parts.push(part.clone());
        let n_streams = o.video.is_some() as usize + o.audio.as_ref().map_or(0, |a| a.tracks.len());
        let (mtx, mrx) = bounded::<MuxMsg>(256);
        let out = o.clone();
        let c = cancel.clone();
        let fl = failed.clone();
        let part2 = part.clone();
        handles.push((
            o.name.clone(),
            thread::Builder::new()
                .name(format!("mux-{}", o.name))
                .spawn(move || guard(&fl, mux_thread(&out, part2.as_deref(), n_streams, mrx, &c)))
                .map_err(AvError::Thread)?,
        ));
        let mut next_stream = 0;
        if let Some(v) = &o.video {
            let (tx, rx) = bounded::<VMsg>(8);
            vtx.push(tx);
            let v = v.clone();
            let m = mtx.clone();
            let dev = devices
                .iter()
                .find(|(b, _)| *b == v.backend)
                .map(|(_, d)| d.clone());
            let fl = failed.clone();
            let c = cancel.clone();
            handles.push((
                o.name.clone(),
                thread::Builder::new()
                    .name(format!("video-{}", o.name))
                    .spawn(move || guard(&fl, video_thread(&v, vtb, vrate, rx, m, dev, &c)))
                    .map_err(AvError::Thread)?,
            ));
            next_stream = 1;
        }
        if let Some(a) = &o.audio {
            let (tx, rx) = bounded::<AMsg>(64);
            atx.push(tx);
            let a = a.clone();
            let m = mtx.clone();
            let fl = failed.clone();
            let c = cancel.clone();
            let first = next_stream;
            let k = spec.audio_streams.len();
            let dur = spec.declared_duration_s;
            handles.push((
                o.name.clone(),
                thread::Builder::new()
                    .name(format!("audio-{}", o.name))
                    .spawn(move || guard(&fl, audio_thread(&a, first, k, dur, rx, m, &c)))
                    .map_err(AvError::Thread)?,
            ));
        }
        drop(mtx);
    }

    // Demux and decode once, fan out to every output.
    let decode_result = decode_loop(
        &mut ictx,
        spec,
        vdec.as_mut(),
        &mut adecs,
        &vtx,
        &atx,
        start_us,
        vtb,
        vrate,
        &atbs,
        &progress,
        &cancel,
        &failed,
    );
    // A failed decode cancels before the end-of-stream goes out, so that no output is finished
    // from a partial decode.
    if decode_result.is_err() {
        cancel.store(true, Ordering::SeqCst);
    }
    for t in &vtx {
        let _ = t.send(VMsg::Eof);
    }
    for t in &atx {
        let _ = t.send(AMsg::Eof);
    }
    drop(vtx);
    drop(atx);
    let mut first_err: Option<AvError> = decode_result.err();
    // A failing worker makes its neighbours fail too ("muxer stopped", "never finished"): report
    // the cause, not the echo.
    let mut errors: Vec<(String, StageError)> = Vec::new();
    for (name, h) in handles {
        let r = h.join().unwrap_or(Err(StageError::Panicked));
        if let Err(e) = r {
            errors.push((name, e));
            cancel.store(true, Ordering::SeqCst);
        }
    }
    if first_err.is_none() && !errors.is_empty() {
        let cause = errors.iter().position(|(_, e)| !e.is_echo()).unwrap_or(0);
        let (output, e) = errors.swap_remove(cause);
        first_err = Some(match e {
            StageError::Cancelled => AvError::Cancelled,
            source => AvError::Output { output, source },
        });
    }
    if first_err.is_none() && cancel.load(Ordering::SeqCst) {
        first_err = Some(AvError::Cancelled);
    }
    if let Some(e) = first_err {
        // Only this run's partial files go; a file already under a final name (an earlier run's
        // good output) is left alone.
        for (p, o) in parts.iter().zip(&spec.outputs) {
            if let (Some(p), true) = (p, o.sink.atomic()) {
                let _ = std::fs::remove_file(p);
            }
        }
        return Err(e);
    }
    // Every output is complete and synced: publish them together.
    for (p, o) in parts.iter().zip(&spec.outputs) {
        if let (Some(p), OutputSink::File { path, atomic: true }) = (p, &o.sink) {
            publish(p, path).map_err(|source| AvError::Output {
                output: o.name.clone(),
                source,
            })?;
        }
    }
    Ok(RunReport {
        frames_decoded: progress.frames_decoded.load(Ordering::Relaxed),
        decode_errors: progress.decode_errors.load(Ordering::Relaxed),
        outputs: spec
            .outputs
            .iter()
            .filter_map(|o| o.sink.path().map(Path::to_owned))
            .collect(),
    })
}

fn guard(failed: &AtomicBool, r: Result<(), StageError>) -> Result<(), StageError> {
    if r.is_err() {
        failed.store(true, Ordering::SeqCst);
    }
    r
}

#[allow(clippy::too_many_arguments)]
fn decode_loop(
    ictx: &mut ff::format::context::Input,
    spec: &PipelineSpec,
    mut vdec: Option<&mut ff::decoder::Video>,
    adecs: &mut [ff::decoder::Audio],
    vtx: &[Sender<VMsg>],
    atx: &[Sender<AMsg>],
    start_us: i64,
    vtb: ff::Rational,
    vrate: (i32, i32),
    atbs: &[ff::Rational],
    progress: &Progress,
    cancel: &AtomicBool,
    failed: &AtomicBool,
) -> Result<(), AvError> {
    let path = &spec.input.label();
    let mut vframe = ff::frame::Video::empty();
    let mut aframe = ff::frame::Audio::empty();
    let mut last_video_s = 0.0f64;
    let mut last_audio_s = 0.0f64;
    let stop = || cancel.load(Ordering::Relaxed) || failed.load(Ordering::Relaxed);

    let mut vline = Timeline::new(vtb, start_us);
    let vframe_ticks = {
        let r = vrate;
        ((f64::from(r.1) / f64::from(r.0.max(1))) / vline.tb).round() as i64
    };
    let mut alines: Vec<Timeline> = atbs.iter().map(|&tb| Timeline::new(tb, start_us)).collect();
    let mut send_video = |f: &mut ff::frame::Video, last: &mut f64| -> bool {
        progress.frames_decoded.fetch_add(1, Ordering::Relaxed);
        // SAFETY: reading a plain field of a live frame.
        let d = unsafe { (*f.as_ptr()).pkt_duration };
        let t = vline.map(f.timestamp(), if d > 0 { d } else { vframe_ticks });
        f.set_pts(t);
        if let Some(t) = t {
            let s = vline.seconds(t);
            *last = last.max(s);
            progress
                .media_us
                .store((s.max(0.0) * 1e6) as u64, Ordering::Relaxed);
        }
        for t in vtx {
            let Some(shared) = share(f) else { return false };
            if t.send(VMsg::Frame(ff::frame::Video::from(shared))).is_err() {
                return false;
            }
        }
        if spec.audio_streams.is_empty() {
            let s = progress.media_us.load(Ordering::Relaxed) as f64 / 1e6;
            for t in atx {
                let _ = t.send(AMsg::Tick(s));
            }
        }
        true
    };
    let mut packet = ff::Packet::empty();
    let mut bad_reads = 0u32;
    loop {
        if stop() {
            return Ok(());
        }
        match super::read_packet(ictx, &mut packet) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(ff::Error::InvalidData) if bad_reads < 1000 => {
                // Damaged data the demuxer can resynchronise after: counted, skipped.
                bad_reads += 1;
                progress.decode_errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(e) => {
                // An I/O error, or damage beyond resynchronisation: stop reading; the
                // truncation check below decides whether what was read is enough.
                progress.decode_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(file = %path.display(), error = %e, "read error");
                break;
            }
        }
        let si = packet.stream();
        if Some(si) == spec.video_stream {
            if let Some(dec) = vdec.as_deref_mut() {
                if dec.send_packet(&packet).is_err() {
                    progress.decode_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                while dec.receive_frame(&mut vframe).is_ok() {
                    if !send_video(&mut vframe, &mut last_video_s) {
                        return Ok(());
                    }
                }
            }
        } else if let Some(k) = spec.audio_streams.iter().position(|&a| a == si) {
            let dec = &mut adecs[k];
            if dec.send_packet(&packet).is_err() {
                progress.decode_errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            while dec.receive_frame(&mut aframe).is_ok() {
                if !send_audio(&mut aframe, k, atx, &mut alines[k], &mut last_audio_s) {
                    return Ok(());
                }
            }
        }
    }
    if let Some(dec) = vdec {
        let _ = dec.send_eof();
        while dec.receive_frame(&mut vframe).is_ok() {
            if !send_video(&mut vframe, &mut last_video_s) {
                return Ok(());
            }
        }
    }
    for (k, dec) in adecs.iter_mut().enumerate() {
        let _ = dec.send_eof();
        while dec.receive_frame(&mut aframe).is_ok() {
            if !send_audio(&mut aframe, k, atx, &mut alines[k], &mut last_audio_s) {
                return Ok(());
            }
        }
    }
    if spec.video_stream.is_some() && progress.frames_decoded.load(Ordering::Relaxed) == 0 {
        return Err(AvError::Invalid {
            path: path.clone(),
            what: "no video frame could be decoded".into(),
        });
    }
    if let Some(declared) = spec.declared_duration_s {
        let reached = if spec.video_stream.is_some() {
            last_video_s
        } else {
            last_audio_s
        };
        if declared > 1.0 && reached < declared * 0.9 - 0.5 {
            return Err(AvError::Invalid {
                path: path.clone(),
                what: format!(
                    "truncated or damaged: media ends at {reached:.2} s but the file declares {declared:.2} s"
                ),
            });
        }
    }
    Ok(())
}

/// A stream's timestamps made usable: relative to the start of the file, and continuous across
/// discontinuities (a PTS reset in concatenated TS, one corrupt PTS far ahead): a step forward of
/// more than [`MAX_JUMP_S`] or backwards of more than one second re-bases what follows, so that
/// one bad timestamp can neither stretch an output to hours nor cut it short.
struct Timeline {
    /// Seconds per tick.
    tb: f64,
    offset: i64,
    next: Option<i64>,
}

const MAX_JUMP_S: f64 = 10.0;

impl Timeline {
    fn new(tb: ff::Rational, start_us: i64) -> Timeline {
        let tbf = f64::from(tb);
        let tb = if tbf > 0.0 { tbf } else { 1e-6 };
        Timeline {
            tb,
            offset: (start_us as f64 / 1e6 / tb).round() as i64,
            next: None,
        }
    }

    /// Maps a decoded timestamp (ticks) of a frame lasting `dur` ticks; `None` stays `None`.
    fn map(&mut self, ts: Option<i64>, dur: i64) -> Option<i64> {
        let mut t = ts?.saturating_sub(self.offset);
        if let Some(next) = self.next {
            let ahead = (MAX_JUMP_S / self.tb) as i64;
            let behind = (1.0 / self.tb) as i64;
            if t > next.saturating_add(ahead) || t < next.saturating_sub(behind) {
                self.offset = self.offset.saturating_add(t - next);
                t = next;
            }
        }
        self.next = Some(t.saturating_add(dur.max(1)));
        Some(t)
    }

    fn seconds(&self, t: i64) -> f64 {
        t as f64 * self.tb
    }
}

fn send_audio(
    f: &mut ff::frame::Audio,
    k: usize,
    atx: &[Sender<AMsg>],
    line: &mut Timeline,
    last: &mut f64,
) -> bool {
    graph::fix_audio_layout(f);
    let rate = f.rate().max(1);
    let dur = (f.samples() as f64 / f64::from(rate) / line.tb).round() as i64;
    if let Some(t) = line.map(f.timestamp(), dur) {
        *last = last.max(line.seconds(t));
        // The audio graph counts time in samples.
        f.set_pts(Some((line.seconds(t) * f64::from(rate)).round() as i64));
    } else {
        f.set_pts(None);
    }
    for t in atx {
        let Some(shared) = share(f) else { return false };
        if t.send(AMsg::Frame(k, ff::frame::Audio::from(shared)))
            .is_err()
        {
            return false;
        }
    }
    true
}

#[allow(clippy::too_many_arguments)]
pub(super) fn video_thread(
    v: &VideoOut,
    in_tb: ff::Rational,
    src_rate: (i32, i32),
    rx: Receiver<VMsg>,
    mux: Sender<MuxMsg>,
    dev: Option<Arc<HwDevice>>,
    cancel: &AtomicBool,
) -> Result<(), StageError> {
    let mut g: Option<ff::filter::Graph> = None;
    let mut enc: Option<(ff::encoder::Video, ff::Rational)> = None;
    let mut filtered = ff::frame::Video::empty();
    let mut pkt = ff::Packet::empty();
    let rate = ff::Rational::new(v.frame_rate.0, v.frame_rate.1);
    let mut next_pts: i64 = 0;
    let mut end_pts: Option<i64> = None;
    let mut graph_props: Option<(u32, u32, ff::format::Pixel)> = None;

    let mut pull = |g: &mut ff::filter::Graph,
                    enc: &mut Option<(ff::encoder::Video, ff::Rational)>,
                    next_pts: &mut i64|
     -> Result<(), StageError> {
        loop {
            let mut sink = g.get("out").ok_or(StageError::Missing("video sink"))?;
            let mut sink = sink.sink();
            if sink.frame(&mut filtered).is_err() {
                return Ok(());
            }
            if cancel.load(Ordering::Relaxed) {
                return Err(StageError::Cancelled);
            }
            let sink_tb = sink.time_base();
            if enc.is_none() {
                // SAFETY: the sink is configured; the returned ref (or null) is borrowed only to
                // hand to the encoder, which takes its own reference.
                let hw_frames = unsafe { ffi::av_buffersink_get_hw_frames_ctx(sink_ctx_ptr(g)?) };
                *enc = Some(open_video_encoder(v, &filtered, rate, hw_frames)?);
                let (e, tb) = enc.as_ref().expect("just opened");
                mux.send(MuxMsg::Ready {
                    stream: 0,
                    params: ff::codec::Parameters::from(&**e),
                    time_base: *tb,
                    frame_rate: Some(rate),
                })
                .map_err(muxer_stopped)?;
            }
            let (e, enc_tb) = enc.as_mut().expect("opened above");
            if (filtered.width(), filtered.height(), filtered.format())
                != (e.width(), e.height(), e.format())
            {
                return Err(StageError::Media(format!(
                    "the picture changed from {}x{} to {}x{} mid-stream and the filter chain did not bring it back",
                    e.width(),
                    e.height(),
                    filtered.width(),
                    filtered.height()
                )));
            }
            let pts = filtered
                .pts()
                .map(|p| ff::Rescale::rescale(&p, sink_tb, *enc_tb))
                .unwrap_or(*next_pts)
                .max(*next_pts);
            *next_pts = pts + 1;
            filtered.set_pts(Some(pts));
            if let Some(fo) = v.interlaced {
                // SAFETY: the frame is exclusively ours; we only set its interlacing flags.
                unsafe {
                    let f = &mut *filtered.as_mut_ptr();
                    f.interlaced_frame = 1;
                    f.top_field_first = (fo == FieldOrder::Tff) as i32;
                }
            }
            // SAFETY: picture type is a plain field; NONE lets the encoder decide (GOP from settings).
            unsafe {
                (*filtered.as_mut_ptr()).pict_type = ffi::AVPictureType::AV_PICTURE_TYPE_NONE
            };
            e.send_frame(&filtered)
                .map_err(encoder_err(format!("encoder {}", v.encoder), v.backend))?;
            drain_encoder(e, &mut pkt, 0, *enc_tb, &mux)?;
        }
    };

    for msg in rx.iter() {
        match msg {
            VMsg::Frame(f) => {
                if cancel.load(Ordering::Relaxed) {
                    return Err(StageError::Cancelled);
                }
                if let Some(p) = f.pts() {
                    // SAFETY: reading a plain field of a live frame.
                    let d = unsafe { (*f.as_ptr()).pkt_duration };
                    let d = if d > 0 {
                        d
                    } else {
                        ff::Rescale::rescale(
                            &1,
                            ff::Rational::new(src_rate.1, src_rate.0.max(1)),
                            in_tb,
                        )
                    };
                    end_pts = Some(end_pts.map_or(p + d, |e: i64| e.max(p + d)));
                }
                // A new picture size or format mid-stream: finish the graph built for the old one
                // and build another; the chain ends in a scale to the output size.
                let props = (f.width(), f.height(), f.format());
                if g.is_some() && graph_props != Some(props) {
                    if let Some(mut old) = g.take() {
                        let _ = old
                            .get("in")
                            .ok_or(StageError::Missing("video source"))?
                            .source()
                            .flush();
                        pull(&mut old, &mut enc, &mut next_pts)?;
                    }
                }
                if g.is_none() {
                    g = Some(build_video_graph(v, &f, in_tb, dev.as_deref())?);
                    graph_props = Some(props);
                }
                let gg = g.as_mut().expect("built");
                gg.get("in")
                    .ok_or(StageError::Missing("video source"))?
                    .source()
                    .add(&f)
                    .map_err(libav_err("video filter input"))?;
                pull(gg, &mut enc, &mut next_pts)?;
            }
            VMsg::Eof => break,
        }
    }
    let Some(mut gg) = g else {
        return Err(StageError::Media(
            "no video frames reached this output".into(),
        ));
    };
    // End of stream one frame after the last frame, so that `fps` keeps the last frame.
    match end_pts {
        Some(p) => {
            let _ = gg
                .get("in")
                .ok_or(StageError::Missing("video source"))?
                .source()
                .close(p);
        }
        None => {
            let _ = gg
                .get("in")
                .ok_or(StageError::Missing("video source"))?
                .source()
                .flush();
        }
    }
    pull(&mut gg, &mut enc, &mut next_pts)?;
    let (mut e, tb) =
        enc.ok_or_else(|| StageError::Media("the video filter produced no frame".into()))?;
    e.send_eof()
        .map_err(encoder_err("encoder flush", v.backend))?;
    drain_encoder(&mut e, &mut pkt, 0, tb, &mux)?;
    mux.send(MuxMsg::Done { stream: 0 })
        .map_err(muxer_stopped)?;
    Ok(())
}

/// The video graph for the first frame's kind: on GPU frames the GPU chain when there is one
/// (falling back to downloading the frames when it cannot be built), else the CPU chain.
fn build_video_graph(
    v: &VideoOut,
    first: &ff::frame::Video,
    in_tb: ff::Rational,
    dev: Option<&HwDevice>,
) -> Result<ff::filter::Graph, StageError> {
    let sinks = [Sink {
        name: "out".into(),
        audio: false,
    }];
    let mut src = Source::new("in", graph::video_source_args(first, in_tb), false);
    let hw_frames = graph::hw_frames_of(first);
    let cpu_chain = if hw_frames.is_null() {
        v.filter.clone()
    } else {
        src.hw_frames = hw_frames;
        if let Some(gpu) = &v.gpu_filter {
            match graph::build(std::slice::from_ref(&src), &sinks, gpu) {
                Ok(g) => return Ok(g),
                Err(e) => {
                    tracing::warn!(error = %e, "GPU filter chain refused, filtering on the CPU")
                }
            }
        }
        let rest = v.filter.strip_prefix("[in]").unwrap_or(&v.filter);
        format!("[in]hwdownload,format=pix_fmts=nv12|p010le,{rest}")
    };
    graph::build_on(std::slice::from_ref(&src), &sinks, &cpu_chain, dev).map_err(|source| {
        StageError::Filter {
            what: format!("video filter on {}", v.backend.name()),
            backend: v.backend,
            source,
        }
    })
}

fn sink_ctx_ptr(g: &mut ff::filter::Graph) -> Result<*mut ffi::AVFilterContext, StageError> {
    let mut c = g.get("out").ok_or(StageError::Missing("video sink"))?;
    // SAFETY: the pointer stays valid as long as the graph, which outlives its only use.
    Ok(unsafe { c.as_mut_ptr() })
}

fn open_video_encoder(
    v: &VideoOut,
    first: &ff::frame::Video,
    rate: ff::Rational,
    hw_frames: *mut ffi::AVBufferRef,
) -> Result<(ff::encoder::Video, ff::Rational), StageError> {
    let codec = ff::encoder::find_by_name(&v.encoder)
        .ok_or_else(|| StageError::NoEncoder(v.encoder.clone()))?;
    let ctx = ff::codec::Context::new_with_codec(codec);
    let mut enc = ctx
        .encoder()
        .video()
        .map_err(encoder_err(format!("encoder {}", v.encoder), v.backend))?;
    let tb = ff::Rational::new(rate.denominator(), rate.numerator());
    enc.set_width(first.width());
    enc.set_height(first.height());
    enc.set_format(first.format());
    enc.set_time_base(tb);
    enc.set_frame_rate(Some(rate));
    enc.set_aspect_ratio(ff::Rational::new(v.sample_aspect.0, v.sample_aspect.1));
    if let Some(g) = v.gop {
        enc.set_gop(g);
    }
    if let Some(b) = v.b_frames {
        enc.set_max_b_frames(b as usize);
    }
    if let Some(b) = v.bit_rate {
        enc.set_bit_rate(b as usize);
    }
    if let Some(m) = v.max_rate {
        enc.set_max_bit_rate(m as usize);
    }
    if v.bt709 {
        enc.set_color_primaries(ff::color::Primaries::BT709);
        enc.set_color_transfer_characteristic(ff::color::TransferCharacteristic::BT709);
        enc.set_colorspace(ff::color::Space::BT709);
        enc.set_color_range(ff::color::Range::MPEG);
    }
    // SAFETY: plain fields of the encoder context, set before avcodec_open2; the hw frames
    // context (when any) gets a new reference owned by the encoder.
    unsafe {
        let c = &mut *enc.as_mut_ptr();
        // As many threads as the codec can use (slice threads for MPEG-2: a CBR intra encode
        // also needs them to keep each slice's stuffing within bounds).
        c.thread_count = 0;
        if let Some(m) = v.min_rate {
            c.rc_min_rate = m as i64;
        }
        if let Some(b) = v.buffer_size {
            c.rc_buffer_size = b.min(i32::MAX as u64) as i32;
        }
        if let Some(o) = v.initial_occupancy {
            c.rc_initial_buffer_occupancy = o.min(i32::MAX as u64) as i32;
        }
        if let Some(p) = v.profile_id {
            c.profile = p;
        }
        if let Some(l) = v.level_id {
            c.level = l;
        }
        if v.closed_gop {
            c.flags |= ffi::AV_CODEC_FLAG_CLOSED_GOP as i32;
        }
        c.field_order = match v.interlaced {
            Some(FieldOrder::Tff) => ffi::AVFieldOrder::AV_FIELD_TT,
            Some(FieldOrder::Bff) => ffi::AVFieldOrder::AV_FIELD_BB,
            None => ffi::AVFieldOrder::AV_FIELD_PROGRESSIVE,
        };
        if !hw_frames.is_null() {
            c.hw_frames_ctx = ffi::av_buffer_ref(hw_frames);
        }
        if v.global_header {
            c.flags |= ffi::AV_CODEC_FLAG_GLOBAL_HEADER as i32;
        }
    }
    let mut dict = ff::Dictionary::new();
    for (k, val) in &v.options {
        dict.set(k, val);
    }
    let opened = enc.open_with(dict).map_err(encoder_err(
        format!("cannot open encoder {} with these settings", v.encoder),
        v.backend,
    ))?;
    let tb = opened.time_base();
    Ok((opened, tb))
}

/// Opened video and audio encoders alike: something packets come out of.
trait PacketSource {
    const VIDEO: bool;
    fn next_packet(&mut self, p: &mut ff::Packet) -> bool;
}

impl PacketSource for ff::encoder::Video {
    const VIDEO: bool = true;
    fn next_packet(&mut self, p: &mut ff::Packet) -> bool {
        self.receive_packet(p).is_ok()
    }
}

impl PacketSource for ff::encoder::Audio {
    const VIDEO: bool = false;
    fn next_packet(&mut self, p: &mut ff::Packet) -> bool {
        self.receive_packet(p).is_ok()
    }
}

fn drain_encoder<E: PacketSource>(
    e: &mut E,
    pkt: &mut ff::Packet,
    stream: usize,
    tb: ff::Rational,
    mux: &Sender<MuxMsg>,
) -> Result<(), StageError> {
    while e.next_packet(pkt) {
        let mut p = std::mem::replace(pkt, ff::Packet::empty());
        if p.duration() == 0 && E::VIDEO {
            // One frame: the muxer needs it for the last sample, or the file ends a frame short.
            p.set_duration(1);
        }
        mux.send(MuxMsg::Packet {
            stream,
            packet: p,
            time_base: tb,
        })
        .map_err(muxer_stopped)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn audio_thread(
    a: &AudioOut,
    first_stream: usize,
    k: usize,
    duration_s: Option<f64>,
    rx: Receiver<AMsg>,
    mux: Sender<MuxMsg>,
    cancel: &AtomicBool,
) -> Result<(), StageError> {
    // Encoders open first: their frame size decides how the sinks cut the samples.
    let mut encs = Vec::new();
    for (i, t) in a.tracks.iter().enumerate() {
        let e = open_audio_encoder(t)?;
        let tb = ff::Rational::new(1, t.sample_rate as i32);
        mux.send(MuxMsg::Ready {
            stream: first_stream + i,
            params: ff::codec::Parameters::from(&*e),
            time_base: tb,
            frame_rate: None,
        })
        .map_err(muxer_stopped)?;
        encs.push((e, tb, 0i64));
    }
    let sinks: Vec<Sink> = (0..a.tracks.len())
        .map(|i| Sink {
            name: format!("out{i}"),
            audio: true,
        })
        .collect();
    let mut g: Option<ff::filter::Graph> = None;
    let mut pending: Vec<Vec<ff::frame::Audio>> = (0..k).map(|_| Vec::new()).collect();
    let mut out = ff::frame::Audio::empty();
    let mut pkt = ff::Packet::empty();
    let filter = if k == 0 {
        // No source audio: silence for the source's duration.
        a.filter.replace(
            "{duration}",
            &format!("{:.6}", duration_s.unwrap_or(0.0).max(0.04)),
        )
    } else {
        a.filter.clone()
    };

    let frame_sizes: Vec<u32> = encs
        .iter()
        .enumerate()
        .map(|(i, (e, _, _))| {
            let fs = e.frame_size();
            if fs > 0 {
                fs
            } else {
                a.tracks[i].sample_rate / 25
            }
        })
        .collect();
    let build = |pending: &[Vec<ff::frame::Audio>]| -> Result<ff::filter::Graph, StageError> {
        let sources: Vec<Source> = (0..k)
            .map(|i| {
                Source::new(
                    format!("in{i}"),
                    graph::audio_source_args(&pending[i][0]),
                    true,
                )
            })
            .collect();
        let mut built =
            graph::build(&sources, &sinks, &filter).map_err(|source| StageError::Filter {
                what: "audio filter".into(),
                backend: Backend::Software,
                source,
            })?;
        for (i, &fs) in frame_sizes.iter().enumerate() {
            built
                .get(&format!("out{i}"))
                .ok_or(StageError::Missing("audio sink"))?
                .sink()
                .set_frame_size(fs);
        }
        Ok(built)
    };

    let mut pull_until = |g: &mut ff::filter::Graph,
                          encs: &mut Vec<(ff::encoder::Audio, ff::Rational, i64)>,
                          until_s: f64|
     -> Result<(), StageError> {
        for (i, (e, tb, written)) in encs.iter_mut().enumerate() {
            let mut sink = g
                .get(&format!("out{i}"))
                .ok_or(StageError::Missing("audio sink"))?;
            let limit = (until_s * f64::from(a.tracks[i].sample_rate)) as i64;
            while *written < limit && sink.sink().frame(&mut out).is_ok() {
                if cancel.load(Ordering::Relaxed) {
                    return Err(StageError::Cancelled);
                }
                out.set_pts(Some(*written));
                *written += out.samples() as i64;
                e.send_frame(&out)
                    .map_err(encoder_err("audio encoder", Backend::Software))?;
                drain_encoder(e, &mut pkt, first_stream + i, *tb, &mux)?;
            }
        }
        Ok(())
    };

    if k == 0 {
        g = Some(build(&pending)?);
    }
    for msg in rx.iter() {
        match msg {
            AMsg::Frame(idx, f) => {
                if cancel.load(Ordering::Relaxed) {
                    return Err(StageError::Cancelled);
                }
                if let Some(gg) = g.as_mut() {
                    gg.get(&format!("in{idx}"))
                        .ok_or(StageError::Missing("audio source"))?
                        .source()
                        .add(&f)
                        .map_err(libav_err("audio filter input"))?;
                    pull_until(gg, &mut encs, f64::INFINITY)?;
                } else {
                    pending[idx].push(f);
                    // A declared stream that carries nothing (a dead PID): give up after about a
                    // minute of the others rather than hold their samples without end.
                    if pending[idx].len() > 3000 {
                        if let Some(dead) = pending.iter().position(|p| p.is_empty()) {
                            return Err(StageError::Media(format!(
                                "audio stream {} of the source (counting from 1) carries no samples",
                                dead + 1
                            )));
                        }
                    }
                    if pending.iter().all(|p| !p.is_empty()) {
                        let mut built = build(&pending)?;
                        for (i, frames) in pending.iter_mut().enumerate() {
                            for f in frames.drain(..) {
                                built
                                    .get(&format!("in{i}"))
                                    .ok_or(StageError::Missing("audio source"))?
                                    .source()
                                    .add(&f)
                                    .map_err(libav_err("audio filter input"))?;
                            }
                        }
                        pull_until(&mut built, &mut encs, f64::INFINITY)?;
                        g = Some(built);
                    }
                }
            }
            AMsg::Tick(t) => {
                if let (0, Some(gg)) = (k, g.as_mut()) {
                    pull_until(gg, &mut encs, t)?;
                }
            }
            AMsg::Eof => break,
        }
    }
    match g.as_mut() {
        Some(gg) => {
            for i in 0..k {
                let _ = gg
                    .get(&format!("in{i}"))
                    .ok_or(StageError::Missing("audio source"))?
                    .source()
                    .flush();
            }
            pull_until(gg, &mut encs, f64::INFINITY)?;
        }
        None if k > 0 => {
            return Err(StageError::Media(
                "a source audio stream produced no samples".into(),
            ))
        }
        None => {}
    }
    for (i, (e, tb, _)) in encs.iter_mut().enumerate() {
        e.send_eof()
            .map_err(encoder_err("audio encoder flush", Backend::Software))?;
        drain_encoder(e, &mut pkt, first_stream + i, *tb, &mux)?;
        mux.send(MuxMsg::Done {
            stream: first_stream + i,
        })
        .map_err(muxer_stopped)?;
    }
    Ok(())
}

pub(crate) fn open_audio_encoder(t: &AudioTrack) -> Result<ff::encoder::Audio, StageError> {
    let codec = ff::encoder::find_by_name(&t.encoder)
        .ok_or_else(|| StageError::NoEncoder(t.encoder.clone()))?;
    let ctx = ff::codec::Context::new_with_codec(codec);
    let mut enc = ctx.encoder().audio().map_err(encoder_err(
        format!("encoder {}", t.encoder),
        Backend::Software,
    ))?;
    let fmt = audio_encoder_sample(&t.encoder)
        .ok_or_else(|| StageError::NoSampleFormat(t.encoder.clone()))?;
    enc.set_rate(t.sample_rate as i32);
    enc.set_format(fmt);
    enc.set_time_base(ff::Rational::new(1, t.sample_rate as i32));
    if let Some(b) = t.bit_rate {
        enc.set_bit_rate(b as usize);
    }
    // SAFETY: the layout field is plain data set before open; av_channel_layout_default writes a
    // native layout that owns no memory.
    unsafe {
        let c = &mut *enc.as_mut_ptr();
        ffi::av_channel_layout_default(&mut c.ch_layout, t.channels as i32);
        #[allow(deprecated)]
        {
            c.channel_layout = c.ch_layout.u.mask;
            c.channels = t.channels as i32;
        }
        if t.global_header {
            c.flags |= ffi::AV_CODEC_FLAG_GLOBAL_HEADER as i32;
        }
    }
    let mut dict = ff::Dictionary::new();
    for (k, v) in &t.options {
        dict.set(k, v);
    }
    enc.open_with(dict).map_err(encoder_err(
        format!("cannot open audio encoder {}", t.encoder),
        Backend::Software,
    ))
}

/// Muxes one output: into `part` (the file being written) or, for a stream sink, into its writer.
pub(super) fn mux_thread(
    o: &OutputSpec,
    part: Option<&Path>,
    n_streams: usize,
    rx: Receiver<MuxMsg>,
    cancel: &AtomicBool,
) -> Result<(), StageError> {
    let result = mux_inner(o, part, n_streams, rx, cancel);
    if let (Err(_), Some(part)) = (&result, part) {
        let _ = std::fs::remove_file(part);
    }
    result
}

fn mux_inner(
    o: &OutputSpec,
    part: Option<&Path>,
    n_streams: usize,
    rx: Receiver<MuxMsg>,
    cancel: &AtomicBool,
) -> Result<(), StageError> {
    let target = match (&o.sink, part) {
        (OutputSink::Stream(s), _) => PathBuf::from(&s.name),
        (_, Some(part)) => part.to_owned(),
        (OutputSink::File { .. }, None) => return Err(StageError::Missing("output file")),
    };
    let write_err = |what: &'static str| {
        let path = target.clone();
        move |source| StageError::Write { what, path, source }
    };
    let mut octx = match (&o.sink, part) {
        (OutputSink::Stream(s), _) => OutputSink::open_stream(s, &o.muxer),
        (_, Some(part)) => ff::format::output_as(part, &o.muxer),
        (_, None) => return Err(StageError::Missing("output file")),
    }
    .map_err(write_err("create"))?;
    for _ in 0..n_streams {
        // SAFETY: the output context is live; a null codec adds an empty stream we fill below.
        let s = unsafe { ffi::avformat_new_stream(octx.as_mut_ptr(), std::ptr::null()) };
        if s.is_null() {
            return Err(StageError::Missing("a new stream of the output"));
        }
    }
    let mut meta = ff::Dictionary::new();
    for (k, v) in &o.metadata {
        meta.set(k, v);
    }
    octx.set_metadata(meta);
    let mut ready = vec![None::<ff::Rational>; n_streams];
    let mut buffered: Vec<(usize, ff::Packet, ff::Rational)> = Vec::new();
    let mut done = vec![false; n_streams];
    let mut header = false;
    let mut tap: Option<TapThread> = None;
    let write = |octx: &mut ff::format::context::Output,
                 tap: &mut Option<TapThread>,
                 stream: usize,
                 mut p: ff::Packet,
                 tb: ff::Rational|
     -> Result<(), StageError> {
        let st_tb = octx
            .stream(stream)
            .ok_or(StageError::Missing("stream"))?
            .time_base();
        p.rescale_ts(tb, st_tb);
        p.set_stream(stream);
        p.set_position(-1);
        if let Some(t) = tap.as_mut() {
            t.feed(&p);
        }
        p.write_interleaved(octx).map_err(write_err("write to"))
    };
    for msg in rx.iter() {
        if cancel.load(Ordering::Relaxed) {
            return Err(StageError::Cancelled);
        }
        match msg {
            MuxMsg::Ready {
                stream,
                params,
                time_base,
                frame_rate,
            } => {
                let mut st = octx
                    .stream_mut(stream)
                    .ok_or(StageError::Missing("stream"))?;
                st.set_parameters(params);
                st.set_time_base(time_base);
                if let Some(r) = frame_rate {
                    st.set_avg_frame_rate(r);
                    st.set_rate(r);
                }
                // SAFETY: clearing the codec tag lets the muxer choose its own for this codec.
                unsafe { (*(*st.as_mut_ptr()).codecpar).codec_tag = 0 };
                ready[stream] = Some(time_base);
                if ready.iter().all(Option::is_some) && !header {
                    let mut opts = ff::Dictionary::new();
                    for (k, v) in &o.mux_options {
                        opts.set(k, v);
                    }
                    octx.write_header_with(opts)
                        .map_err(|source| StageError::Libav {
                            what: format!("{} muxer refused these streams", o.muxer),
                            source,
                        })?;
                    header = true;
                    if let Some(spec) = o.tap.as_ref().filter(|_| o.sink.atomic()) {
                        tap = TapThread::start(&octx, spec, &o.name);
                    }
                    for (s, p, tb) in buffered.drain(..) {
                        write(&mut octx, &mut tap, s, p, tb)?;
                    }
                }
            }
            MuxMsg::Packet {
                stream,
                packet,
                time_base,
            } => {
                if header {
                    write(&mut octx, &mut tap, stream, packet, time_base)?;
                } else {
                    if buffered.len() >= 20_000 {
                        return Err(StageError::NeverStarted);
                    }
                    buffered.push((stream, packet, time_base));
                }
            }
            MuxMsg::Done { stream } => {
                done[stream] = true;
                if done.iter().all(|d| *d) {
                    break;
                }
            }
        }
    }
    if !header || !done.iter().all(|d| *d) {
        return Err(if cancel.load(Ordering::Relaxed) {
            StageError::Cancelled
        } else {
            StageError::NeverFinished
        });
    }
    octx.write_trailer().map_err(write_err("finish"))?;
    drop(octx);
    if cancel.load(Ordering::Relaxed) {
        return Err(StageError::Cancelled);
    }
    let Some(part) = part.filter(|_| o.sink.atomic()) else {
        // Muxers that write their own files (image2 patterns) leave the empty file libav opened
        // under the pattern's literal name.
        if let Some(part) = part.filter(|p| p.to_string_lossy().contains('%')) {
            let _ = std::fs::remove_file(part);
        }
        return Ok(());
    };
    let io_err = |what: &'static str| {
        move |source| StageError::Io {
            what,
            path: part.to_owned(),
            source,
        }
    };
    let f = std::fs::File::open(part).map_err(io_err(""))?;
    f.sync_all().map_err(io_err("fsync "))?;
    if let (Some(t), Some(spec)) = (tap, &o.tap) {
        // Only a complete output leaves its measurement; a tap that failed leaves none, and the
        // file is then scanned after the fact.
        if let Some(m) = t.finish() {
            if let Ok(mut slot) = spec.slot.lock() {
                *slot = Some(m);
            }
        }
    }
    Ok(())
}

/// The thread that measures an output from its packets (see [`Tap`]).
struct TapThread {
    tx: Option<Sender<ff::Packet>>,
    handle: thread::JoinHandle<Option<Measured>>,
}

impl TapThread {
    fn start(octx: &ff::format::context::Output, spec: &Tap, name: &str) -> Option<TapThread> {
        let streams: Vec<ScanStream> = octx
            .streams()
            .map(|st| ScanStream {
                index: st.index(),
                params: st.parameters(),
                time_base: st.time_base(),
            })
            .collect();
        let programme = spec.programme.clone();
        let sink = spec.sink.as_ref().map(|make| make());
        let (tx, rx) = bounded::<ff::Packet>(64);
        let handle = thread::Builder::new()
            .name(format!("verify-{name}"))
            .spawn(move || -> Option<Measured> {
                let mut sink = sink;
                let mut scanner = scan::Scanner::new(&streams, false, &programme, |b| {
                    if let Some(s) = sink.as_mut() {
                        s.block(b);
                    }
                })
                .map_err(|(what, e)| tracing::warn!(%what, error = %e, "in-flight verification unavailable"))
                .ok()?;
                for p in rx.iter() {
                    scanner.packet(&p);
                }
                let scan = scanner.finish().ok()?;
                Some(Measured {
                    scan,
                    streams: programme,
                    programme: sink.map(|s| s.finish()),
                })
            })
            .ok()?;
        Some(TapThread {
            tx: Some(tx),
            handle,
        })
    }

    fn feed(&mut self, p: &ff::Packet) {
        let Some(tx) = &self.tx else { return };
        let sent = super::packet_ref(p).is_some_and(|r| tx.send(r).is_ok());
        if !sent {
            // The tap died: the file will be scanned after the fact instead.
            self.tx = None;
        }
    }

    fn finish(mut self) -> Option<Measured> {
        // Closing the channel ends the tap's loop; a tap already cut off measured nothing.
        self.tx.take()?;
        self.handle.join().ok().flatten()
    }
}

/// Renames a complete, synced `.part` to its final name and syncs the directory.
fn publish(part: &Path, final_path: &Path) -> Result<(), StageError> {
    std::fs::rename(part, final_path).map_err(|source| StageError::Io {
        what: "rename to ",
        path: final_path.to_owned(),
        source,
    })?;
    if let Some(dir) = final_path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Writes a synthetic test clip (moving colour bars, a 1 kHz tone at −20 dBFS, a start timecode)
/// with antenne's own encoders: the demo and the tests need no external tool to get media.
pub fn write_test_clip(path: &Path, seconds: u32, timecode: &str) -> Result<(), AvError> {
    super::init();
    let err = |source: StageError| AvError::Output {
        output: path.display().to_string(),
        source,
    };
    let filter_err = |source| {
        err(StageError::Filter {
            what: "test clip".into(),
            backend: Backend::Software,
            source,
        })
    };
    let rate = 25;
    let video_spec = format!(
        "testsrc2=size=1280x720:rate={rate}:duration={seconds},drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf:timecode='{}':rate={rate}:fontsize=48:fontcolor=white:x=40:y=40,format=yuv420p[out]",
        timecode.replace(':', "\\:")
    );
    let video_spec = if Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf").exists() {
        video_spec
    } else {
        format!("testsrc2=size=1280x720:rate={rate}:duration={seconds},format=yuv420p[out]")
    };
    let audio_spec = format!(
        "sine=frequency=1000:sample_rate=48000:duration={seconds},volume=0.1,aformat=sample_fmts=fltp:channel_layouts=stereo[out]"
    );
    let mut vg = graph::build(
        &[],
        &[Sink {
            name: "out".into(),
            audio: false,
        }],
        &video_spec,
    )
    .map_err(filter_err)?;
    let mut ag = graph::build(
        &[],
        &[Sink {
            name: "out".into(),
            audio: true,
        }],
        &audio_spec,
    )
    .map_err(filter_err)?;
    let v = VideoOut {
        filter: String::new(),
        gpu_filter: None,
        encoder: "libx264".into(),
        backend: Backend::Software,
        frame_rate: (rate, 1),
        bit_rate: Some(4_000_000),
        max_rate: None,
        min_rate: None,
        buffer_size: None,
        initial_occupancy: None,
        gop: Some(25),
        b_frames: Some(2),
        closed_gop: false,
        profile_id: None,
        level_id: None,
        interlaced: None,
        bt709: true,
        sample_aspect: (1, 1),
        options: vec![("preset".into(), "veryfast".into())],
        global_header: true,
    };
    let track = AudioTrack {
        encoder: "aac".into(),
        sample_rate: 48000,
        channels: 2,
        bit_rate: Some(192_000),
        options: vec![],
        global_header: true,
    };
    let part = part_path(path);
    let out = OutputSpec {
        tap: None,
        name: "clip".into(),
        sink: OutputSink::File {
            path: path.to_owned(),
            atomic: true,
        },
        muxer: "mp4".into(),
        mux_options: vec![],
        metadata: vec![("timecode".into(), timecode.into())],
        video: None,
        audio: None,
    };
    let (mtx, mrx) = bounded::<MuxMsg>(1024);
    let cancel = AtomicBool::new(false);
    let mux = thread::scope(|s| {
        let h = s.spawn(|| mux_thread(&out, Some(&part), 2, mrx, &cancel));
        let r = (|| -> Result<(), StageError> {
            let mut frame = ff::frame::Video::empty();
            let mut pkt = ff::Packet::empty();
            let mut enc: Option<(ff::encoder::Video, ff::Rational)> = None;
            let mut n = 0i64;
            loop {
                let got = vg
                    .get("out")
                    .ok_or(StageError::Missing("test clip sink"))?
                    .sink()
                    .frame(&mut frame)
                    .is_ok();
                if !got {
                    break;
                }
                if enc.is_none() {
                    let e = open_video_encoder(
                        &v,
                        &frame,
                        ff::Rational::new(rate, 1),
                        std::ptr::null_mut(),
                    )?;
                    mtx.send(MuxMsg::Ready {
                        stream: 0,
                        params: ff::codec::Parameters::from(&*e.0),
                        time_base: e.1,
                        frame_rate: Some(ff::Rational::new(rate, 1)),
                    })
                    .map_err(muxer_stopped)?;
                    enc = Some(e);
                }
                let (e, tb) = enc.as_mut().expect("opened");
                frame.set_pts(Some(n));
                n += 1;
                e.send_frame(&frame)
                    .map_err(encoder_err("test clip video encoder", Backend::Software))?;
                drain_encoder(e, &mut pkt, 0, *tb, &mtx)?;
            }
            let (mut e, tb) = enc.ok_or(StageError::Missing("test picture"))?;
            e.send_eof()
                .map_err(encoder_err("test clip video encoder", Backend::Software))?;
            drain_encoder(&mut e, &mut pkt, 0, tb, &mtx)?;
            mtx.send(MuxMsg::Done { stream: 0 })
                .map_err(muxer_stopped)?;

            let mut ae = open_audio_encoder(&track)?;
            let atb = ff::Rational::new(1, 48000);
            mtx.send(MuxMsg::Ready {
                stream: 1,
                params: ff::codec::Parameters::from(&*ae),
                time_base: atb,
                frame_rate: None,
            })
            .map_err(muxer_stopped)?;
            ag.get("out")
                .ok_or(StageError::Missing("test clip sink"))?
                .sink()
                .set_frame_size(ae.frame_size());
            let mut af = ff::frame::Audio::empty();
            let mut written = 0i64;
            while ag
                .get("out")
                .ok_or(StageError::Missing("test clip sink"))?
                .sink()
                .frame(&mut af)
                .is_ok()
            {
                af.set_pts(Some(written));
                written += af.samples() as i64;
                ae.send_frame(&af)
                    .map_err(encoder_err("test clip audio encoder", Backend::Software))?;
                drain_encoder(&mut ae, &mut pkt, 1, atb, &mtx)?;
            }
            ae.send_eof()
                .map_err(encoder_err("test clip audio encoder", Backend::Software))?;
            drain_encoder(&mut ae, &mut pkt, 1, atb, &mtx)?;
            mtx.send(MuxMsg::Done { stream: 1 })
                .map_err(muxer_stopped)?;
            Ok(())
        })();
        drop(mtx);
        let m = h.join().unwrap_or(Err(StageError::Panicked));
        r.and(m).and_then(|_| publish(&part, path))
    });
    mux.map_err(|e| {
        let _ = std::fs::remove_file(&part);
        err(e)
    })
}
