//! Running a pipeline: one thread demuxes and decodes once; per output a video thread (filter +
//! encoder) and an audio thread (filter + one encoder per track) feed a mux thread that writes
//! `<final>.part`, fsyncs it and renames it only when every stream finished. Any error or a
//! cancel request stops every thread and removes the `.part` files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::graph::{self, AudioGraph, Sink, Source};
use super::hw::{self, Backend, HwDevice};
use super::io::{FileSink, InputSource, OutputSink};
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
        InputSource::Packets(s) => Err(AvError::Invalid {
            path: PathBuf::from(&s.name),
            what: "a shared demux feeds live pipelines only".into(),
        }),
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

/// [`run`] on an input the caller already opened (see `probe::probe_open`): open, spawn the
/// output stages, decode once into them, join them, and publish or clean up.
pub fn run_with(
    spec: &PipelineSpec,
    opened: Option<ff::format::context::Input>,
    progress: Arc<Progress>,
    cancel: Arc<AtomicBool>,
) -> Result<RunReport, AvError> {
    super::init();
    let mut ictx = open_input(&spec.input, opened, &cancel)?;
    let mut decoders = Decoders::open(&ictx, spec)?;
    let devices = open_devices(&spec.outputs)?;
    check_output_dirs(spec)?;
    let stages = Stages::spawn(spec, &decoders, &devices, &cancel)?;
    let decoded = decode_loop(&mut ictx, spec, &mut decoders, &stages, &progress, &cancel);
    let parts = stages.parts.clone();
    let outcome = stages.join(decoded, &cancel);
    settle(spec, &parts, outcome)?;
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

/// The source's decoders, and the timing the stages are made from.
struct Decoders {
    video: Option<ff::decoder::Video>,
    vtb: ff::Rational,
    vrate: (i32, i32),
    audio: Vec<ff::decoder::Audio>,
    atbs: Vec<ff::Rational>,
    start_us: i64,
}

impl Decoders {
    fn open(ictx: &ff::format::context::Input, spec: &PipelineSpec) -> Result<Self, AvError> {
        let path = spec.input.label();
        let start_us = {
            // SAFETY: reading a plain field of the live input context.
            let s = unsafe { (*ictx.as_ptr()).start_time };
            if s == ffi::AV_NOPTS_VALUE {
                0
            } else {
                s
            }
        };
        let mut d = Decoders {
            video: None,
            vtb: ff::Rational::new(1, 25),
            vrate: (25, 1),
            audio: Vec::new(),
            atbs: Vec::new(),
            start_us,
        };
        if let Some(vi) = spec.video_stream {
            d.open_video(ictx, spec, vi)?;
        }
        for &ai in &spec.audio_streams {
            let st = ictx.stream(ai).ok_or_else(|| AvError::Invalid {
                path: path.clone(),
                what: format!("has no stream {ai}"),
            })?;
            d.atbs.push(st.time_base());
            let ctx = ff::codec::Context::from_parameters(st.parameters()).map_err(|e| {
                AvError::Libav {
                    path: path.clone(),
                    what: format!("audio stream {ai}"),
                    source: e,
                }
            })?;
            d.audio
                .push(ctx.decoder().audio().map_err(|e| AvError::Libav {
                    path: path.clone(),
                    what: format!("no decoder for audio stream {ai}"),
                    source: e,
                })?);
        }
        Ok(d)
    }

    fn open_video(
        &mut self,
        ictx: &ff::format::context::Input,
        spec: &PipelineSpec,
        vi: usize,
    ) -> Result<(), AvError> {
        let path = spec.input.label();
        let st = ictx.stream(vi).ok_or_else(|| AvError::Invalid {
            path: path.clone(),
            what: format!("has no stream {vi}"),
        })?;
        self.vtb = st.time_base();
        let r = st.avg_frame_rate();
        let r = if r.numerator() > 0 && r.denominator() > 0 {
            r
        } else {
            st.rate()
        };
        if r.numerator() > 0 && r.denominator() > 0 {
            self.vrate = (r.numerator(), r.denominator());
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
        self.video = Some(ctx.decoder().video().map_err(|e| AvError::Libav {
            path: path.clone(),
            what: format!("no decoder for video stream {vi}"),
            source: e,
        })?);
        Ok(())
    }
}

/// Hardware devices for outputs that encode on a GPU, one per backend.
pub(super) fn open_devices(
    outputs: &[OutputSpec],
) -> Result<Vec<(Backend, Arc<HwDevice>)>, AvError> {
    let mut devices: Vec<(Backend, Arc<HwDevice>)> = Vec::new();
    for o in outputs {
        if let Some(v) = &o.video {
            if v.backend != Backend::Software && !devices.iter().any(|(b, _)| *b == v.backend) {
                let d = hw::open_device(v.backend).map_err(AvError::Device)?;
                devices.push((v.backend, Arc::new(d)));
            }
        }
    }
    Ok(devices)
}

/// Checked for every output before any thread starts, so that an error leaves nothing running.
fn check_output_dirs(spec: &PipelineSpec) -> Result<(), AvError> {
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
    Ok(())
}

type StageHandle = (String, thread::JoinHandle<Result<(), StageError>>);

/// The running output stages: the channels the decode feeds, and their threads.
struct Stages {
    vtx: Vec<Sender<VMsg>>,
    atx: Vec<Sender<AMsg>>,
    handles: Vec<StageHandle>,
    /// Where each output is being written (its temporary name when published by rename).
    parts: Vec<Option<PathBuf>>,
    /// Set by the first stage that fails.
    failed: Arc<AtomicBool>,
}

fn spawn_stage(
    name: String,
    failed: &Arc<AtomicBool>,
    work: impl FnOnce() -> Result<(), StageError> + Send + 'static,
) -> Result<thread::JoinHandle<Result<(), StageError>>, AvError> {
    let fl = failed.clone();
    thread::Builder::new()
        .name(name)
        .spawn(move || guard(&fl, work()))
        .map_err(AvError::Thread)
}

impl Stages {
    /// A muxer for every output, and its video and audio encoders.
    fn spawn(
        spec: &PipelineSpec,
        dec: &Decoders,
        devices: &[(Backend, Arc<HwDevice>)],
        cancel: &Arc<AtomicBool>,
    ) -> Result<Stages, AvError> {
        let mut st = Stages {
            vtx: Vec::new(),
            atx: Vec::new(),
            handles: Vec::new(),
            parts: Vec::new(),
            failed: Arc::new(AtomicBool::new(false)),
        };
        for o in &spec.outputs {
            st.spawn_output(o, spec, dec, devices, cancel)?;
        }
        Ok(st)
    }

    fn spawn_output(
        &mut self,
        o: &OutputSpec,
        spec: &PipelineSpec,
        dec: &Decoders,
        devices: &[(Backend, Arc<HwDevice>)],
        cancel: &Arc<AtomicBool>,
    ) -> Result<(), AvError> {
        let part = match &o.sink {
            OutputSink::File(f) => Some(f.writing()),
            OutputSink::Stream(_) => None,
        };
        self.parts.push(part.clone());
        let input = StageInput {
            vtb: dec.vtb,
            vrate: dec.vrate,
            audio_streams: spec.audio_streams.len(),
            duration_s: spec.declared_duration_s,
        };
        let st = OutputStages::spawn(o, part, &input, devices, cancel, &self.failed)?;
        self.vtx.extend(st.video);
        self.atx.extend(st.audio);
        self.handles
            .extend(st.handles.into_iter().map(|h| (o.name.clone(), h)));
        Ok(())
    }

    /// Ends every stage's input, waits for them all, and says how the run ended: the decode's
    /// error, else the cause among the stages' errors, else a cancel.
    fn join(self, decoded: Result<(), AvError>, cancel: &AtomicBool) -> Result<(), AvError> {
        // Stopped from outside (signal, job cancel) before any stage failed: whatever the
        // stages say about their cut-short input ("no video frames reached this output") is
        // an echo of the cancel.
        let interrupted = cancel.load(Ordering::SeqCst);
        // A failed decode cancels before the end-of-stream goes out, so that no output is
        // finished from a partial decode.
        if decoded.is_err() {
            cancel.store(true, Ordering::SeqCst);
        }
        for t in &self.vtx {
            let _ = t.send(VMsg::Eof);
        }
        for t in &self.atx {
            let _ = t.send(AMsg::Eof);
        }
        drop(self.vtx);
        drop(self.atx);
        let mut errors: Vec<(String, StageError)> = Vec::new();
        for (name, h) in self.handles {
            if let Err(e) = h.join().unwrap_or(Err(StageError::Panicked)) {
                errors.push((name, e));
                cancel.store(true, Ordering::SeqCst);
            }
        }
        decoded?;
        if interrupted {
            return Err(AvError::Cancelled);
        }
        if let Some(e) = classify(errors) {
            return Err(e);
        }
        if cancel.load(Ordering::SeqCst) {
            return Err(AvError::Cancelled);
        }
        Ok(())
    }
}

/// What an output's stages are fed: pictures in time base `vtb` at `vrate`, and
/// `audio_streams` source streams of sound (none: silence as long as `duration_s`).
pub(super) struct StageInput {
    pub vtb: ff::Rational,
    pub vrate: (i32, i32),
    pub audio_streams: usize,
    pub duration_s: Option<f64>,
}

/// One output's stages: its muxer, and its video and audio encoders, each on a thread of its
/// own, with the channels that feed the encoders. Files and live outputs alike.
pub(super) struct OutputStages {
    pub video: Option<Sender<VMsg>>,
    pub audio: Option<Sender<AMsg>>,
    /// Muxer first, then video, then audio.
    pub handles: Vec<thread::JoinHandle<Result<(), StageError>>>,
}

impl OutputStages {
    /// Starts the stages of `o`, its muxer writing at `part` when it is a file; a stage that
    /// fails sets `failed`.
    pub(super) fn spawn(
        o: &OutputSpec,
        part: Option<PathBuf>,
        input: &StageInput,
        devices: &[(Backend, Arc<HwDevice>)],
        cancel: &Arc<AtomicBool>,
        failed: &Arc<AtomicBool>,
    ) -> Result<OutputStages, AvError> {
        let n_streams = o.video.is_some() as usize + o.audio.as_ref().map_or(0, |a| a.tracks.len());
        let (mtx, mrx) = bounded::<MuxMsg>(256);
        let (out, c) = (o.clone(), cancel.clone());
        let mut st = OutputStages {
            video: None,
            audio: None,
            handles: vec![spawn_stage(format!("mux-{}", o.name), failed, move || {
                mux_thread(&out, part.as_deref(), n_streams, mrx, &c)
            })?],
        };
        if let Some(v) = &o.video {
            let (tx, rx) = bounded::<VMsg>(8);
            st.video = Some(tx);
            let (v, m, c) = (v.clone(), mtx.clone(), cancel.clone());
            let dev = devices
                .iter()
                .find(|(b, _)| *b == v.backend)
                .map(|(_, d)| d.clone());
            let (vtb, vrate) = (input.vtb, input.vrate);
            st.handles.push(spawn_stage(
                format!("video-{}", o.name),
                failed,
                move || video_thread(&v, vtb, vrate, rx, m, dev, &c),
            )?);
        }
        if let Some(a) = &o.audio {
            let (tx, rx) = bounded::<AMsg>(64);
            st.audio = Some(tx);
            let (a, m, c) = (a.clone(), mtx.clone(), cancel.clone());
            let (first, k) = (usize::from(o.video.is_some()), input.audio_streams);
            let dur = input.duration_s;
            st.handles.push(spawn_stage(
                format!("audio-{}", o.name),
                failed,
                move || audio_thread(&a, first, k, dur, rx, m, &c),
            )?);
        }
        Ok(st)
    }
}

/// The error a run reports for its stages' errors. A failing stage makes its neighbours fail
/// too ("muxer stopped", "never finished"): the cause is reported, not the echo.
fn classify(mut errors: Vec<(String, StageError)>) -> Option<AvError> {
    if errors.is_empty() {
        return None;
    }
    let cause = errors.iter().position(|(_, e)| !e.is_echo()).unwrap_or(0);
    let (output, e) = errors.swap_remove(cause);
    Some(match e {
        StageError::Cancelled => AvError::Cancelled,
        source => AvError::Output { output, source },
    })
}

/// After the stages: on success every output, complete and synced, is published together; on
/// failure only this run's partial files go (a file already under a final name, an earlier
/// run's good output, is left alone).
fn settle(
    spec: &PipelineSpec,
    parts: &[Option<PathBuf>],
    outcome: Result<(), AvError>,
) -> Result<(), AvError> {
    let published = parts.iter().zip(&spec.outputs).filter_map(|(p, o)| {
        let (OutputSink::File(f), Some(p)) = (&o.sink, p) else {
            return None;
        };
        Some((p, f, f.publisher()?, o))
    });
    if let Err(e) = outcome {
        for (p, _, publisher, _) in published {
            publisher.discard(p);
        }
        return Err(e);
    }
    for (p, f, publisher, o) in published {
        publisher
            .publish(p, &f.path)
            .map_err(|source| AvError::Output {
                output: o.name.clone(),
                source: StageError::Io {
                    what: "rename to ",
                    path: f.path.clone(),
                    source,
                },
            })?;
    }
    Ok(())
}

fn guard(failed: &AtomicBool, r: Result<(), StageError>) -> Result<(), StageError> {
    if r.is_err() {
        failed.store(true, Ordering::SeqCst);
    }
    r
}

/// Demuxes and decodes once, fanning every frame out to the stages.
fn decode_loop(
    ictx: &mut ff::format::context::Input,
    spec: &PipelineSpec,
    dec: &mut Decoders,
    stages: &Stages,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<(), AvError> {
    let (vtx, atx, failed) = (&stages.vtx, &stages.atx, &*stages.failed);
    let (start_us, vtb, vrate) = (dec.start_us, dec.vtb, dec.vrate);
    let (mut vdec, adecs, atbs) = (dec.video.as_mut(), &mut dec.audio, &dec.atbs);
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
        send_video(f, vtx, &mut vline, vframe_ticks, last, progress)
            && (!spec.audio_streams.is_empty() || tick_audio(atx, progress))
    };
    let mut packet = ff::Packet::empty();
    let mut bad_reads = 0u32;
    loop {
        if stop() {
            return Ok(());
        }
        match read_next(ictx, &mut packet, &mut bad_reads, progress, path) {
            Read::Packet => {}
            Read::Skip => continue,
            Read::End => break,
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
    let reached = if spec.video_stream.is_some() {
        last_video_s
    } else {
        last_audio_s
    };
    check_complete(spec, progress, reached)
}

/// What a read from the demuxer gave.
enum Read {
    Packet,
    /// Damaged data the demuxer can resynchronise after: counted, skipped.
    Skip,
    /// The end, or an I/O error or damage beyond resynchronisation: reading stops, and
    /// [`check_complete`] decides whether what was read is enough.
    End,
}

fn read_next(
    ictx: &mut ff::format::context::Input,
    packet: &mut ff::Packet,
    bad_reads: &mut u32,
    progress: &Progress,
    path: &Path,
) -> Read {
    match super::read_packet(ictx, packet) {
        Ok(()) => Read::Packet,
        Err(ff::Error::Eof) => Read::End,
        Err(ff::Error::InvalidData) if *bad_reads < 1000 => {
            *bad_reads += 1;
            progress.decode_errors.fetch_add(1, Ordering::Relaxed);
            Read::Skip
        }
        Err(e) => {
            progress.decode_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(file = %path.display(), error = %e, "read error");
            Read::End
        }
    }
}

/// After the decode: some picture decoded when one was asked for, and the media reaching
/// (nearly) as far as the file declares (`reached`: the last picture's time, else the last
/// sound's).
fn check_complete(spec: &PipelineSpec, progress: &Progress, reached: f64) -> Result<(), AvError> {
    let path = spec.input.label();
    if spec.video_stream.is_some() && progress.frames_decoded.load(Ordering::Relaxed) == 0 {
        return Err(AvError::Invalid {
            path,
            what: "no video frame could be decoded".into(),
        });
    }
    if let Some(declared) = spec.declared_duration_s {
        if declared > 1.0 && reached < declared * 0.9 - 0.5 {
            return Err(AvError::Invalid {
                path,
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

/// A decoded picture, stamped on the timeline, to every video stage; `false` when one has gone.
fn send_video(
    f: &mut ff::frame::Video,
    vtx: &[Sender<VMsg>],
    line: &mut Timeline,
    frame_ticks: i64,
    last: &mut f64,
    progress: &Progress,
) -> bool {
    progress.frames_decoded.fetch_add(1, Ordering::Relaxed);
    // SAFETY: reading a plain field of a live frame.
    let d = unsafe { (*f.as_ptr()).pkt_duration };
    let t = line.map(f.timestamp(), if d > 0 { d } else { frame_ticks });
    f.set_pts(t);
    if let Some(t) = t {
        let s = line.seconds(t);
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
    true
}

/// Outputs that make their own silence (the source has no audio) keep pace with the picture.
fn tick_audio(atx: &[Sender<AMsg>], progress: &Progress) -> bool {
    let s = progress.media_us.load(Ordering::Relaxed) as f64 / 1e6;
    for t in atx {
        let _ = t.send(AMsg::Tick(s));
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
    let mut encode = VideoEncode::new(v, mux);
    let mut end_pts: Option<i64> = None;
    let mut graph_props: Option<(u32, u32, ff::format::Pixel)> = None;
    for msg in rx.iter() {
        let f = match msg {
            VMsg::Frame(f) => f,
            VMsg::Eof => break,
        };
        if cancel.load(Ordering::Relaxed) {
            return Err(StageError::Cancelled);
        }
        if let Some(e) = frame_end(&f, src_rate, in_tb) {
            end_pts = Some(end_pts.map_or(e, |x: i64| x.max(e)));
        }
        // A new picture size or format mid-stream: finish the graph built for the old one and
        // build another; the chain ends in a scale to the output size.
        let props = (f.width(), f.height(), f.format());
        if graph_props != Some(props) {
            if let Some(mut old) = g.take() {
                let _ = feed(&mut old, Feed::Flush)?;
                encode.pull(&mut old, cancel)?;
            }
        }
        if g.is_none() {
            g = Some(build_video_graph(v, &f, in_tb, dev.as_deref())?);
            graph_props = Some(props);
        }
        let gg = g.as_mut().expect("built");
        feed(gg, Feed::Frame(&f))?.map_err(libav_err("video filter input"))?;
        encode.pull(gg, cancel)?;
    }
    let Some(mut gg) = g else {
        return Err(StageError::Media(
            "no video frames reached this output".into(),
        ));
    };
    // End of stream one frame after the last frame, so that `fps` keeps the last frame.
    let _ = feed(&mut gg, end_pts.map_or(Feed::Flush, Feed::CloseAt))?;
    encode.pull(&mut gg, cancel)?;
    encode.finish()
}

/// What a video graph's `in` source is given.
enum Feed<'f> {
    Frame(&'f ff::frame::Video),
    /// The end of the stream, at this timestamp.
    CloseAt(i64),
    /// The end of the stream, where the last frame ends.
    Flush,
}

/// Gives the graph's source `what`: libav's answer, or an error when the graph has no source.
fn feed(g: &mut ff::filter::Graph, what: Feed<'_>) -> Result<Result<(), ff::Error>, StageError> {
    let mut c = g.get("in").ok_or(StageError::Missing("video source"))?;
    let mut src = c.source();
    Ok(match what {
        Feed::Frame(f) => src.add(f),
        Feed::CloseAt(p) => src.close(p),
        Feed::Flush => src.flush(),
    })
}

/// Where a decoded frame ends, in the input's time base (its duration, else one frame at the
/// source's rate).
fn frame_end(f: &ff::frame::Video, src_rate: (i32, i32), in_tb: ff::Rational) -> Option<i64> {
    let p = f.pts()?;
    // SAFETY: reading a plain field of a live frame.
    let d = unsafe { (*f.as_ptr()).pkt_duration };
    let d = if d > 0 {
        d
    } else {
        ff::Rescale::rescale(&1, ff::Rational::new(src_rate.1, src_rate.0.max(1)), in_tb)
    };
    Some(p + d)
}

/// An output's video encoder, opened on the first filtered frame: its size and format, and
/// the GPU frames context the graph ends in, decide how.
struct VideoEncode<'a> {
    v: &'a VideoOut,
    rate: ff::Rational,
    enc: Option<(ff::encoder::Video, ff::Rational)>,
    filtered: ff::frame::Video,
    pkt: ff::Packet,
    next_pts: i64,
    mux: Sender<MuxMsg>,
}

impl<'a> VideoEncode<'a> {
    fn new(v: &'a VideoOut, mux: Sender<MuxMsg>) -> Self {
        VideoEncode {
            v,
            rate: ff::Rational::new(v.frame_rate.0, v.frame_rate.1),
            enc: None,
            filtered: ff::frame::Video::empty(),
            pkt: ff::Packet::empty(),
            next_pts: 0,
            mux,
        }
    }

    /// Encodes every frame the graph has ready.
    fn pull(&mut self, g: &mut ff::filter::Graph, cancel: &AtomicBool) -> Result<(), StageError> {
        loop {
            let sink_tb = {
                let mut sink = g.get("out").ok_or(StageError::Missing("video sink"))?;
                let mut sink = sink.sink();
                if sink.frame(&mut self.filtered).is_err() {
                    return Ok(());
                }
                sink.time_base()
            };
            if cancel.load(Ordering::Relaxed) {
                return Err(StageError::Cancelled);
            }
            if self.enc.is_none() {
                self.open(g)?;
            }
            self.encode(sink_tb)?;
        }
    }

    fn open(&mut self, g: &mut ff::filter::Graph) -> Result<(), StageError> {
        // SAFETY: the sink is configured; the returned ref (or null) is borrowed only to hand to
        // the encoder, which takes its own reference.
        let hw_frames = unsafe { ffi::av_buffersink_get_hw_frames_ctx(sink_ctx_ptr(g)?) };
        let (e, tb) = open_video_encoder(self.v, &self.filtered, self.rate, hw_frames)?;
        self.mux
            .send(MuxMsg::Ready {
                stream: 0,
                params: ff::codec::Parameters::from(&*e),
                time_base: tb,
                frame_rate: Some(self.rate),
            })
            .map_err(muxer_stopped)?;
        self.enc = Some((e, tb));
        Ok(())
    }

    /// The filtered frame, stamped on the encoder's clock (never backwards), into the encoder.
    fn encode(&mut self, sink_tb: ff::Rational) -> Result<(), StageError> {
        let (e, enc_tb) = self.enc.as_mut().ok_or(StageError::Missing("encoder"))?;
        let filtered = &mut self.filtered;
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
            .unwrap_or(self.next_pts)
            .max(self.next_pts);
        self.next_pts = pts + 1;
        filtered.set_pts(Some(pts));
        if let Some(fo) = self.v.interlaced {
            // SAFETY: the frame is exclusively ours; we only set its interlacing flags.
            unsafe {
                let f = &mut *filtered.as_mut_ptr();
                f.interlaced_frame = 1;
                f.top_field_first = (fo == FieldOrder::Tff) as i32;
            }
        }
        // SAFETY: picture type is a plain field; NONE lets the encoder decide (GOP from settings).
        unsafe { (*filtered.as_mut_ptr()).pict_type = ffi::AVPictureType::AV_PICTURE_TYPE_NONE };
        e.send_frame(filtered).map_err(encoder_err(
            format!("encoder {}", self.v.encoder),
            self.v.backend,
        ))?;
        drain_encoder(e, &mut self.pkt, 0, *enc_tb, &self.mux)
    }

    /// Flushes the encoder and ends the stream.
    fn finish(mut self) -> Result<(), StageError> {
        let (mut e, tb) = self
            .enc
            .take()
            .ok_or_else(|| StageError::Media("the video filter produced no frame".into()))?;
        e.send_eof()
            .map_err(encoder_err("encoder flush", self.v.backend))?;
        drain_encoder(&mut e, &mut self.pkt, 0, tb, &self.mux)?;
        self.mux
            .send(MuxMsg::Done { stream: 0 })
            .map_err(muxer_stopped)
    }
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

/// An output's audio encoders, one per track, each with the samples it has written.
struct AudioEncoders {
    encs: Vec<(ff::encoder::Audio, ff::Rational, i64)>,
    rates: Vec<u32>,
    first_stream: usize,
    pkt: ff::Packet,
    out: ff::frame::Audio,
}

impl AudioEncoders {
    /// Opens every track's encoder and tells the muxer its stream.
    fn open(a: &AudioOut, first_stream: usize, mux: &Sender<MuxMsg>) -> Result<Self, StageError> {
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
        Ok(AudioEncoders {
            encs,
            rates: a.tracks.iter().map(|t| t.sample_rate).collect(),
            first_stream,
            pkt: ff::Packet::empty(),
            out: ff::frame::Audio::empty(),
        })
    }

    /// The samples per frame each encoder takes, which the graph's sinks cut to (a 25th of a
    /// second for encoders that take any).
    fn frame_sizes(&self) -> Vec<u32> {
        self.encs
            .iter()
            .zip(&self.rates)
            .map(|((e, _, _), &rate)| match e.frame_size() {
                0 => rate / 25,
                fs => fs,
            })
            .collect()
    }

    /// Encodes what the graph gives, up to `until_s` seconds per track.
    fn pull_until(
        &mut self,
        g: &mut AudioGraph,
        until_s: f64,
        mux: &Sender<MuxMsg>,
        cancel: &AtomicBool,
    ) -> Result<(), StageError> {
        for (i, (e, tb, written)) in self.encs.iter_mut().enumerate() {
            let mut sink = g.output(i).ok_or(StageError::Missing("audio sink"))?;
            let limit = (until_s * f64::from(self.rates[i])) as i64;
            while *written < limit && sink.sink().frame(&mut self.out).is_ok() {
                if cancel.load(Ordering::Relaxed) {
                    return Err(StageError::Cancelled);
                }
                self.out.set_pts(Some(*written));
                *written += self.out.samples() as i64;
                e.send_frame(&self.out)
                    .map_err(encoder_err("audio encoder", Backend::Software))?;
                drain_encoder(e, &mut self.pkt, self.first_stream + i, *tb, mux)?;
            }
        }
        Ok(())
    }

    /// Flushes every encoder and ends its stream.
    fn finish(mut self, mux: &Sender<MuxMsg>) -> Result<(), StageError> {
        for (i, (e, tb, _)) in self.encs.iter_mut().enumerate() {
            e.send_eof()
                .map_err(encoder_err("audio encoder flush", Backend::Software))?;
            drain_encoder(e, &mut self.pkt, self.first_stream + i, *tb, mux)?;
            mux.send(MuxMsg::Done {
                stream: self.first_stream + i,
            })
            .map_err(muxer_stopped)?;
        }
        Ok(())
    }
}

fn audio_graph_err(source: graph::GraphError) -> StageError {
    StageError::Filter {
        what: "audio filter".into(),
        backend: Backend::Software,
        source,
    }
}

/// Encodes one output's audio: the `k` source streams through its graph into its tracks (with
/// no source audio, `k` is 0 and the graph makes silence as long as the source).
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
    let mut encs = AudioEncoders::open(a, first_stream, &mux)?;
    let filter = if k == 0 {
        a.filter.replace(
            "{duration}",
            &format!("{:.6}", duration_s.unwrap_or(0.0).max(0.04)),
        )
    } else {
        a.filter.clone()
    };
    let mut g = AudioGraph::new(k, &encs.frame_sizes(), move |_| filter.clone());
    if k == 0 {
        g.start().map_err(audio_graph_err)?;
    }
    for msg in rx.iter() {
        match msg {
            AMsg::Frame(idx, f) => {
                if cancel.load(Ordering::Relaxed) {
                    return Err(StageError::Cancelled);
                }
                if g.push(idx, f).map_err(audio_graph_err)? {
                    encs.pull_until(&mut g, f64::INFINITY, &mux, cancel)?;
                } else if let Some(dead) = g.starved(3000) {
                    // A declared stream that carries nothing (a dead PID): give up after about
                    // a minute of the others rather than hold their samples without end.
                    return Err(StageError::Media(format!(
                        "audio stream {} of the source (counting from 1) carries no samples",
                        dead + 1
                    )));
                }
            }
            AMsg::Tick(t) => {
                if k == 0 && g.is_built() {
                    encs.pull_until(&mut g, t, &mux, cancel)?;
                }
            }
            AMsg::Eof => break,
        }
    }
    if g.is_built() {
        g.flush();
        encs.pull_until(&mut g, f64::INFINITY, &mux, cancel)?;
    } else if k > 0 {
        return Err(StageError::Media(
            "a source audio stream produced no samples".into(),
        ));
    }
    encs.finish(&mux)
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
    let mut m = Muxing::open(o, part, n_streams)?;
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
            } => m.ready(o, stream, params, time_base, frame_rate)?,
            MuxMsg::Packet {
                stream,
                packet,
                time_base,
            } => m.packet(stream, packet, time_base)?,
            MuxMsg::Done { stream } => {
                m.done[stream] = true;
                if m.done.iter().all(|d| *d) {
                    break;
                }
            }
        }
    }
    if !m.header || !m.done.iter().all(|d| *d) {
        return Err(if cancel.load(Ordering::Relaxed) {
            StageError::Cancelled
        } else {
            StageError::NeverFinished
        });
    }
    let Muxing {
        mut octx,
        target,
        tap,
        ..
    } = m;
    octx.write_trailer().map_err(|source| StageError::Write {
        what: "finish",
        path: target,
        source,
    })?;
    drop(octx);
    if cancel.load(Ordering::Relaxed) {
        return Err(StageError::Cancelled);
    }
    settle_file(o, part, tap)
}

/// A muxer being fed: streams declared as their encoders open, packets held until every
/// stream is declared and the header written.
struct Muxing {
    octx: ff::format::context::Output,
    /// What errors name: the file being written, or the stream's name.
    target: PathBuf,
    ready: Vec<Option<ff::Rational>>,
    buffered: Vec<(usize, ff::Packet, ff::Rational)>,
    done: Vec<bool>,
    header: bool,
    tap: Option<TapThread>,
}

impl Muxing {
    fn open(o: &OutputSpec, part: Option<&Path>, n_streams: usize) -> Result<Self, StageError> {
        let target = match (&o.sink, part) {
            (OutputSink::Stream(s), _) => PathBuf::from(&s.name),
            (_, Some(part)) => part.to_owned(),
            (OutputSink::File(_), None) => return Err(StageError::Missing("output file")),
        };
        let mut octx = match (&o.sink, part) {
            (OutputSink::Stream(s), _) => OutputSink::open_stream(s, &o.muxer),
            (_, Some(part)) => ff::format::output_as(part, &o.muxer),
            (_, None) => return Err(StageError::Missing("output file")),
        }
        .map_err(|source| StageError::Write {
            what: "create",
            path: target.clone(),
            source,
        })?;
        for _ in 0..n_streams {
            // SAFETY: the output context is live; a null codec adds an empty stream we fill
            // below.
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
        Ok(Muxing {
            octx,
            target,
            ready: vec![None; n_streams],
            buffered: Vec::new(),
            done: vec![false; n_streams],
            header: false,
            tap: None,
        })
    }

    /// A stream's encoder is open: the stream takes its parameters; once every stream has,
    /// the header is written and what waited goes out.
    fn ready(
        &mut self,
        o: &OutputSpec,
        stream: usize,
        params: ff::codec::Parameters,
        time_base: ff::Rational,
        frame_rate: Option<ff::Rational>,
    ) -> Result<(), StageError> {
        let mut st = self
            .octx
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
        self.ready[stream] = Some(time_base);
        if !self.ready.iter().all(Option::is_some) || self.header {
            return Ok(());
        }
        let mut opts = ff::Dictionary::new();
        for (k, v) in &o.mux_options {
            opts.set(k, v);
        }
        self.octx
            .write_header_with(opts)
            .map_err(|source| StageError::Libav {
                what: format!("{} muxer refused these streams", o.muxer),
                source,
            })?;
        self.header = true;
        if let Some(spec) = o.tap.as_ref().filter(|_| o.sink.publisher().is_some()) {
            self.tap = TapThread::start(&self.octx, spec, &o.name);
        }
        for (s, p, tb) in std::mem::take(&mut self.buffered) {
            self.write(s, p, tb)?;
        }
        Ok(())
    }

    fn packet(
        &mut self,
        stream: usize,
        packet: ff::Packet,
        time_base: ff::Rational,
    ) -> Result<(), StageError> {
        if self.header {
            return self.write(stream, packet, time_base);
        }
        if self.buffered.len() >= 20_000 {
            return Err(StageError::NeverStarted);
        }
        self.buffered.push((stream, packet, time_base));
        Ok(())
    }

    fn write(
        &mut self,
        stream: usize,
        mut p: ff::Packet,
        tb: ff::Rational,
    ) -> Result<(), StageError> {
        let st_tb = self
            .octx
            .stream(stream)
            .ok_or(StageError::Missing("stream"))?
            .time_base();
        p.rescale_ts(tb, st_tb);
        p.set_stream(stream);
        p.set_position(-1);
        if let Some(t) = self.tap.as_mut() {
            t.feed(&p);
        }
        p.write_interleaved(&mut self.octx)
            .map_err(|source| StageError::Write {
                what: "write to",
                path: self.target.clone(),
                source,
            })
    }
}

/// A finished file: synced to disk before it may be published, with its measurement left for
/// the verification.
fn settle_file(
    o: &OutputSpec,
    part: Option<&Path>,
    tap: Option<TapThread>,
) -> Result<(), StageError> {
    let (Some(part), Some(publisher)) = (part, o.sink.publisher()) else {
        // Muxers that write their own files (image2 patterns) leave the empty file libav opened
        // under the pattern's literal name.
        if let Some(part) = part.filter(|p| p.to_string_lossy().contains('%')) {
            let _ = std::fs::remove_file(part);
        }
        return Ok(());
    };
    publisher.seal(part).map_err(|source| StageError::Io {
        what: "fsync ",
        path: part.to_owned(),
        source,
    })?;
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

/// Writes a synthetic test clip (moving colour bars, a 1 kHz tone at −20 dBFS, a start timecode)
/// with antenne's own encoders: the demo and the tests need no external tool to get media.
/// `file` says where it goes and how it is published.
pub fn write_test_clip(file: FileSink, seconds: u32, timecode: &str) -> Result<(), AvError> {
    super::init();
    let path = file.path.clone();
    let err = |source: StageError| AvError::Output {
        output: path.display().to_string(),
        source,
    };
    let (video_spec, audio_spec) = test_clip_chains(seconds, timecode);
    let source = |spec: &str, audio: bool| {
        let sink = Sink {
            name: "out".into(),
            audio,
        };
        graph::build(&[], &[sink], spec).map_err(|source| {
            err(StageError::Filter {
                what: "test clip".into(),
                backend: Backend::Software,
                source,
            })
        })
    };
    let mut vg = source(&video_spec, false)?;
    let mut ag = source(&audio_spec, true)?;
    let part = file.writing();
    let out = OutputSpec {
        tap: None,
        name: "clip".into(),
        sink: OutputSink::File(file.clone()),
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
        let r = encode_test_video(&mut vg, &mtx).and_then(|()| encode_test_audio(&mut ag, &mtx));
        drop(mtx);
        let m = h.join().unwrap_or(Err(StageError::Panicked));
        r.and(m)
    });
    let published = mux.and_then(|()| match file.publisher() {
        Some(p) => p.publish(&part, &path).map_err(|source| StageError::Io {
            what: "rename to ",
            path: path.clone(),
            source,
        }),
        None => Ok(()),
    });
    published.map_err(|e| {
        if let Some(p) = file.publisher() {
            p.discard(&part);
        }
        err(e)
    })
}

const TEST_CLIP_RATE: i32 = 25;

/// The test clip's picture (bars, the running timecode when the font is there) and sound.
fn test_clip_chains(seconds: u32, timecode: &str) -> (String, String) {
    let rate = TEST_CLIP_RATE;
    let video = if Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf").exists() {
        format!(
            "testsrc2=size=1280x720:rate={rate}:duration={seconds},drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf:timecode='{}':rate={rate}:fontsize=48:fontcolor=white:x=40:y=40,format=yuv420p[out]",
            timecode.replace(':', "\\:")
        )
    } else {
        format!("testsrc2=size=1280x720:rate={rate}:duration={seconds},format=yuv420p[out]")
    };
    let audio = format!(
        "sine=frequency=1000:sample_rate=48000:duration={seconds},volume=0.1,aformat=sample_fmts=fltp:channel_layouts=stereo[out]"
    );
    (video, audio)
}

/// The test clip's picture, H.264, as stream 0.
fn encode_test_video(vg: &mut ff::filter::Graph, mtx: &Sender<MuxMsg>) -> Result<(), StageError> {
    let rate = ff::Rational::new(TEST_CLIP_RATE, 1);
    let v = VideoOut {
        filter: String::new(),
        gpu_filter: None,
        encoder: "libx264".into(),
        backend: Backend::Software,
        frame_rate: (TEST_CLIP_RATE, 1),
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
    let mut frame = ff::frame::Video::empty();
    let mut pkt = ff::Packet::empty();
    let mut enc: Option<(ff::encoder::Video, ff::Rational)> = None;
    let mut n = 0i64;
    while vg
        .get("out")
        .ok_or(StageError::Missing("test clip sink"))?
        .sink()
        .frame(&mut frame)
        .is_ok()
    {
        if enc.is_none() {
            let e = open_video_encoder(&v, &frame, rate, std::ptr::null_mut())?;
            mtx.send(MuxMsg::Ready {
                stream: 0,
                params: ff::codec::Parameters::from(&*e.0),
                time_base: e.1,
                frame_rate: Some(rate),
            })
            .map_err(muxer_stopped)?;
            enc = Some(e);
        }
        let (e, tb) = enc
            .as_mut()
            .ok_or(StageError::Missing("test clip encoder"))?;
        frame.set_pts(Some(n));
        n += 1;
        e.send_frame(&frame)
            .map_err(encoder_err("test clip video encoder", Backend::Software))?;
        drain_encoder(e, &mut pkt, 0, *tb, mtx)?;
    }
    let (mut e, tb) = enc.ok_or(StageError::Missing("test picture"))?;
    e.send_eof()
        .map_err(encoder_err("test clip video encoder", Backend::Software))?;
    drain_encoder(&mut e, &mut pkt, 0, tb, mtx)?;
    mtx.send(MuxMsg::Done { stream: 0 }).map_err(muxer_stopped)
}

/// The test clip's sound, AAC stereo, as stream 1.
fn encode_test_audio(ag: &mut ff::filter::Graph, mtx: &Sender<MuxMsg>) -> Result<(), StageError> {
    let track = AudioTrack {
        encoder: "aac".into(),
        sample_rate: 48000,
        channels: 2,
        bit_rate: Some(192_000),
        options: vec![],
        global_header: true,
    };
    let mut pkt = ff::Packet::empty();
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
        drain_encoder(&mut ae, &mut pkt, 1, atb, mtx)?;
    }
    ae.send_eof()
        .map_err(encoder_err("test clip audio encoder", Backend::Software))?;
    drain_encoder(&mut ae, &mut pkt, 1, atb, mtx)?;
    mtx.send(MuxMsg::Done { stream: 1 }).map_err(muxer_stopped)
}
