//! The channel engine: airs a channel's [`Timeline`] as one continuous output that never stops.
//! One OS thread counts the channel's frames from its epoch on an injected [`Clock`] (real time,
//! or as fast as the machine goes for tests and soaks); for each frame it asks the timeline
//! what is on air, takes that slot's picture and samples from a file read ahead of air
//! ([`crate::av::clip`]), from the filler or the emergency slate, blends the logo while a
//! secondary event has it on, and feeds the live outputs' encoders ([`LiveOutputs`]), which stamp
//! pictures by frame count and audio by sample count: timestamps are continuous across items and
//! audio never drifts from video. Every item starts at its frame: the next file is opened and
//! decoded before its start, a late reader costs a repeated picture (an underrun), never a shift.
//! A missing, truncated or garbage file is replaced by filler for (the rest of) its slot and
//! reported. SCTE-35 cues of the slots' breaks go into the TS outputs ([`super::scte35`]).
//!
//! Imports the media engine (`av`), the TS sinks (`output`, `link`) and loudness (`qc`); never
//! the catalog, the API or SQL: the schedule reaches it only through [`Timeline`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::av::clip::{self, Burn, Clip, ClipSpec, Still, Take};
use crate::av::engine::{self, AudioOut, AudioTrack, FieldOrder, OutputSpec, StageError, VideoOut};
use crate::av::hw::Backend;
use crate::av::io::InputSource;
use crate::av::io::OutputSink;
use crate::av::live::{FeedTake, House, LiveFeed, LiveOutputs};
use crate::av::{ff, AvError};
use crate::link::{Chunk, ChunkSink};
use crate::output::file;
use crate::output::live_hls;
use crate::output::ts::{self, TsMux};

use super::filler::{Filler, FillerSource};
use super::plan::{AirSlot, Aired, Material, Secondary, Substitution, Timeline};
use super::scte35::{self as cues, Cue, CueInserter, CueKind, HlsCue};

/// A channel that starts in the middle of its schedule goes to air this much later, at a frame
/// whose item has been opened and decoded ahead.
const START_LEAD: Duration = Duration::from_millis(1000);

/// Why a channel cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("channel {channel}: {what}")]
    Spec { channel: String, what: String },
    #[error("channel {channel}: {source}")]
    Media {
        channel: String,
        #[source]
        source: AvError,
    },
    #[error("channel {channel}: output {output}: {source}")]
    Output {
        channel: String,
        output: String,
        #[source]
        source: StageError,
    },
    #[error("channel {channel}: the engine thread cannot start: {source}")]
    Thread {
        channel: String,
        #[source]
        source: std::io::Error,
    },
    #[error("channel {channel}: the engine thread panicked")]
    Panicked { channel: String },
}

/// The channel's time: real time, or a clock that jumps to each frame's time at once.
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
    /// Returns at `t` (at once for a fast clock, or when `cancel` is set).
    fn wait_until(&self, t: SystemTime, cancel: &AtomicBool);
    /// Whether waits take real time (then a late reader is not waited for).
    fn realtime(&self) -> bool;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn wait_until(&self, t: SystemTime, cancel: &AtomicBool) {
        while !cancel.load(Ordering::Relaxed) {
            match t.duration_since(SystemTime::now()) {
                Ok(d) if !d.is_zero() => thread::sleep(d.min(Duration::from_millis(50))),
                _ => return,
            }
        }
    }

    fn realtime(&self) -> bool {
        true
    }
}

/// As fast as possible: time is wherever the channel has got to (tests, soaks).
#[derive(Debug)]
pub struct FastClock {
    now: Mutex<SystemTime>,
}

impl FastClock {
    pub fn starting_at(t: SystemTime) -> FastClock {
        FastClock { now: Mutex::new(t) }
    }
}

impl Clock for FastClock {
    fn now(&self) -> SystemTime {
        *lock(&self.now)
    }

    fn wait_until(&self, t: SystemTime, _cancel: &AtomicBool) {
        let mut n = lock(&self.now);
        if t > *n {
            *n = t;
        }
    }

    fn realtime(&self) -> bool {
        false
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The audio of a TS output.
#[derive(Debug, Clone, PartialEq)]
pub enum TsAudio {
    /// AAC-LC (distribution, HLS).
    Aac { bitrate: u64 },
    /// MPEG-1 Layer II (DVB).
    Mp2 { bitrate: u64 },
    /// SMPTE 302M: PCM in the TS (contribution; exact to the sample).
    S302m,
}

/// How a TS output is encoded: H.264 on the CPU (x264), a fixed GOP with an IDR each.
#[derive(Debug, Clone, PartialEq)]
pub struct TsEncode {
    pub video_bitrate: u64,
    pub preset: String,
    pub gop_frames: u32,
    pub b_frames: u32,
    pub audio: TsAudio,
    /// A constant-rate multiplex (null packets, which also carry the SCTE-35 sections); `None`:
    /// variable rate.
    pub muxrate: Option<u64>,
}

impl Default for TsEncode {
    fn default() -> Self {
        TsEncode {
            video_bitrate: 3_000_000,
            preset: "veryfast".into(),
            gop_frames: 25,
            b_frames: 2,
            audio: TsAudio::Aac { bitrate: 128_000 },
            muxrate: Some(3_800_000),
        }
    }
}

/// Where a channel goes.
#[derive(Clone)]
pub enum ChannelOutput {
    /// An MPEG-TS to a transport (SRT, UDP) or a recording: the channel's SCTE-35 cues go in it.
    Ts {
        name: String,
        sink: Arc<dyn ChunkSink>,
        encode: TsEncode,
    },
    /// A live HLS rendition in `dir` (MPEG-TS segments of `segment_s`, cut on the GOP; a sliding
    /// window): `dir/index.m3u8` carries the channel's breaks as `#EXT-X-DATERANGE`
    /// (SCTE35-OUT/IN) and `#EXT-X-CUE-OUT/IN`.
    Hls {
        name: String,
        dir: PathBuf,
        segment_s: f64,
        encode: TsEncode,
    },
    /// Any other output compiled elsewhere (a live HLS ladder from a profile, say): its filters
    /// start from house frames.
    Spec(Box<OutputSpec>),
}

/// The logo (bug): a PNG blended at a corner while secondary events have it on.
#[derive(Debug, Clone, PartialEq)]
pub struct Logo {
    pub path: PathBuf,
    /// Top-left corner, in pixels of the house picture.
    pub x: u32,
    pub y: u32,
    /// The logo is scaled to fit this box (its shape kept).
    pub max_width: u32,
    pub max_height: u32,
    /// Whether it is on when the channel starts.
    pub on_at_start: bool,
}

/// An item's integrated loudness (LUFS), when the catalog knows it.
pub type KnownLoudness = Arc<dyn Fn(&Path) -> Option<f64> + Send + Sync>;

/// Items are brought to the channel's loudness by a gain each: from the catalog's measure when
/// it has one, else measured (BS.1770) when the item is first prefetched.
#[derive(Clone)]
pub struct LoudnessTarget {
    pub target_lufs: f64,
    pub known: Option<KnownLoudness>,
}

/// SCTE-35 in the TS outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scte35Settings {
    pub pid: u16,
    /// Sections go out this many frames before their splice time.
    pub preroll_frames: u64,
}

impl Default for Scte35Settings {
    fn default() -> Self {
        Scte35Settings {
            pid: 0x01F4,
            preroll_frames: 100,
        }
    }
}

/// Where a channel's live events come from: a live source by its id or name, as an input the
/// engine decodes (a subscription to the source's one demux, in the service).
pub trait LiveSources: Send + Sync {
    fn open(&self, source: &str) -> Result<InputSource, String>;
}

/// A channel: its house format, epoch, outputs, filler and secondaries.
#[derive(Clone)]
pub struct ChannelSpec {
    pub name: String,
    pub house: House,
    /// Interlaced house format (top field first), e.g. 1080i25.
    pub interlaced: bool,
    /// Frame 0 of the channel (wall time = epoch + frame × frame duration).
    pub epoch: SystemTime,
    pub outputs: Vec<ChannelOutput>,
    pub filler: Filler,
    /// What the emergency slate shows.
    pub emergency: Filler,
    pub logo: Option<Logo>,
    pub loudness: Option<LoudnessTarget>,
    /// The next file is opened this many frames before its start.
    pub prefetch_frames: u64,
    pub scte35: Scte35Settings,
    /// The live sources of live events (none: live events air filler, reported).
    pub live: Option<Arc<dyn LiveSources>>,
    /// A live source with no packet or picture for this long is lost (filler until it is back).
    pub live_loss_ms: u64,
    /// A live event's source is joined this long before the event (its decoder needs a key
    /// frame and its sound).
    pub live_prefetch_s: f64,
    /// The house timecode (of the UTC day) and the UTC clock burnt into the pictures.
    pub overlay_timecode: bool,
}

impl ChannelSpec {
    /// A channel with a generated filler and slate, no logo, no loudness target.
    pub fn new(name: &str, house: House, interlaced: bool, epoch: SystemTime) -> ChannelSpec {
        ChannelSpec {
            name: name.into(),
            house,
            interlaced,
            epoch,
            outputs: Vec::new(),
            filler: Filler::Generated {
                ident: name.to_string(),
            },
            emergency: Filler::Generated {
                ident: format!("{name} - please stand by"),
            },
            logo: None,
            loudness: None,
            prefetch_frames: 50,
            scte35: Scte35Settings::default(),
            live: None,
            live_loss_ms: 1000,
            live_prefetch_s: 5.0,
            overlay_timecode: false,
        }
    }
}

/// What a running channel reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelStatus {
    pub running: bool,
    /// The first frame the channel aired in this run.
    pub first_frame: u64,
    /// The frame on air now (the last one sent to the outputs).
    pub frame: u64,
    pub now: Option<AirSlot>,
    pub next: Option<AirSlot>,
    /// Frames until the next slot starts.
    pub frames_to_next: Option<u64>,
    pub emergency: bool,
    pub frames_out: u64,
    /// Frames sent more than a frame after their time (real time only).
    pub late_frames: u64,
    /// Frames a file's reader did not deliver in time (the picture before was repeated).
    pub underruns: u64,
    pub filler_frames: u64,
    pub cues_sent: u64,
    /// Why the channel stopped, when it stopped on its own.
    pub error: Option<String>,
}

struct Shared {
    status: Mutex<ChannelStatus>,
    emergency: AtomicBool,
    cancel: Arc<AtomicBool>,
    cues_sent: Arc<AtomicU64>,
}

/// A running channel. Dropping it stops it.
pub struct Channel {
    name: String,
    shared: Arc<Shared>,
    thread: Option<thread::JoinHandle<Result<u64, EngineError>>>,
}

impl Channel {
    /// Starts airing `timeline` from the frame the clock is at (frame 0 when before the epoch);
    /// `on_aired` hears of every slot as it leaves air (on the engine's thread: keep it short).
    pub fn start(
        spec: ChannelSpec,
        timeline: Arc<dyn Timeline>,
        clock: Arc<dyn Clock>,
        on_aired: impl FnMut(Aired) + Send + 'static,
    ) -> Result<Channel, EngineError> {
        let name = spec.name.clone();
        let err = |what: String| EngineError::Spec {
            channel: name.clone(),
            what,
        };
        let h = spec.house;
        if h.width < 16 || h.height < 16 || h.width % 2 == 1 || h.height % 2 == 1 {
            return Err(err(format!(
                "house picture {}x{} is not usable (even sizes of 16 and up)",
                h.width, h.height
            )));
        }
        if h.rate.0 == 0 || h.rate.1 == 0 || h.sample_rate == 0 || h.channels == 0 {
            return Err(err(format!(
                "house rate {}/{}, {} Hz, {} channels is not usable",
                h.rate.0, h.rate.1, h.sample_rate, h.channels
            )));
        }
        if spec.outputs.is_empty() {
            return Err(err("a channel needs at least one output".into()));
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let cues_sent = Arc::new(AtomicU64::new(0));
        let mut inserters = Vec::new();
        let mut outputs = Vec::new();
        let mut hls_dirs: Vec<PathBuf> = Vec::new();
        for o in &spec.outputs {
            match o {
                ChannelOutput::Ts { name, sink, encode } => {
                    let ins = Arc::new(Mutex::new(CueInserter::new(
                        spec.scte35.pid,
                        h.rate,
                        (u128::from(spec.scte35.preroll_frames) * 90000 * u128::from(h.rate.1)
                            / u128::from(h.rate.0)) as u64,
                    )));
                    let cue_sink: Arc<dyn ChunkSink> = Arc::new(CueSink {
                        inner: sink.clone(),
                        inserter: ins.clone(),
                        sent: cues_sent.clone(),
                        output: name.clone(),
                    });
                    outputs.push(
                        ts_output(name, &h, spec.interlaced, encode, cue_sink).map_err(|what| {
                            EngineError::Spec {
                                channel: spec.name.clone(),
                                what: format!("output {name}: {what}"),
                            }
                        })?,
                    );
                    inserters.push(ins);
                }
                ChannelOutput::Hls {
                    name,
                    dir,
                    segment_s,
                    encode,
                } => {
                    let spec_err = |what: String| EngineError::Spec {
                        channel: spec.name.clone(),
                        what: format!("output {name}: {what}"),
                    };
                    std::fs::create_dir_all(dir)
                        .map_err(|e| spec_err(format!("{}: {e}", dir.display())))?;
                    let dummy: Arc<dyn ChunkSink> = Arc::new(|_: Chunk| {});
                    let mut o =
                        ts_output(name, &h, spec.interlaced, encode, dummy).map_err(spec_err)?;
                    o.sink = file::in_place_sink(dir.join("stream.m3u8"));
                    o.muxer = "hls".into();
                    o.mux_options = live_hls::mux_options(
                        dir,
                        *segment_s,
                        "mpegts",
                        &live_hls::LiveHlsWindow::default(),
                    );
                    outputs.push(o);
                    hls_dirs.push(dir.clone());
                }
                ChannelOutput::Spec(s) => outputs.push((**s).clone()),
            }
        }
        let logo = match &spec.logo {
            Some(l) => Some(
                clip::load_still(&l.path, l.max_width, l.max_height).map_err(|source| {
                    EngineError::Media {
                        channel: name.clone(),
                        source,
                    }
                })?,
            ),
            None => None,
        };
        let stage_cancel = Arc::new(AtomicBool::new(false));
        let live = LiveOutputs::start(h, &outputs, &stage_cancel).map_err(|source| {
            EngineError::Media {
                channel: name.clone(),
                source,
            }
        })?;
        let shared = Arc::new(Shared {
            status: Mutex::new(ChannelStatus {
                running: true,
                ..Default::default()
            }),
            emergency: AtomicBool::new(false),
            cancel: cancel.clone(),
            cues_sent,
        });
        let hls_cues: Arc<Mutex<Vec<HlsCue>>> = Arc::default();
        let mut decorators = Vec::new();
        // Set once the outputs are finished (their last playlist written).
        let hls_stop = Arc::new(AtomicBool::new(false));
        for d in hls_dirs {
            let c = hls_cues.clone();
            let stop = hls_stop.clone();
            decorators.push(
                thread::Builder::new()
                    .name("playout-hls".into())
                    .spawn(move || decorate_hls(&d, &c, &stop))
                    .map_err(|source| EngineError::Thread {
                        channel: name.clone(),
                        source,
                    })?,
            );
        }
        let sh = shared.clone();
        let tname = name.clone();
        let thread = thread::Builder::new()
            .name(format!(
                "playout-{}",
                name.chars().take(7).collect::<String>()
            ))
            .spawn(move || {
                let mut air = Air::new(spec, timeline, clock, live, inserters, logo, sh.clone());
                air.hls_cues = hls_cues;
                let r = air.run(on_aired);
                drop(air);
                hls_stop.store(true, Ordering::SeqCst);
                for d in decorators {
                    let _ = d.join();
                }
                let mut st = lock(&sh.status);
                st.running = false;
                if let Err(e) = &r {
                    st.error = Some(e.to_string());
                    tracing::error!(channel = %tname, error = %e, "playout: channel stopped");
                }
                r
            })
            .map_err(|source| EngineError::Thread {
                channel: name.clone(),
                source,
            })?;
        Ok(Channel {
            name,
            shared,
            thread: Some(thread),
        })
    }

    pub fn status(&self) -> ChannelStatus {
        let mut s = lock(&self.shared.status).clone();
        s.cues_sent = self.shared.cues_sent.load(Ordering::Relaxed);
        s
    }

    /// Puts the emergency slate on air (or takes it off); the schedule runs on underneath.
    pub fn emergency(&self, on: bool) {
        self.shared.emergency.store(on, Ordering::SeqCst);
    }

    /// Whether the engine thread still runs.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the channel: the slot on air is reported, the outputs are finished (encoders
    /// flushed, trailers written). Returns the frames aired.
    pub fn stop(mut self) -> Result<u64, EngineError> {
        self.shared.cancel.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(t) => t.join().unwrap_or(Err(EngineError::Panicked {
                channel: self.name.clone(),
            })),
            None => Ok(0),
        }
    }

    /// Waits until frame `frame` has been sent (or the engine stopped, or `timeout` passed);
    /// whether it was.
    pub fn wait_for_frame(&self, frame: u64, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        loop {
            let st = self.status();
            if st.frames_out > 0 && st.frame >= frame {
                return true;
            }
            if !self.is_running() || Instant::now() >= until {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.shared.cancel.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The TS sink that adds the channel's SCTE-35 to the muxer's packets.
struct CueSink {
    inner: Arc<dyn ChunkSink>,
    inserter: Arc<Mutex<CueInserter>>,
    sent: Arc<AtomicU64>,
    output: String,
}

impl ChunkSink for CueSink {
    fn deliver(&self, chunk: Chunk) {
        let (out, emitted) = {
            let mut ins = lock(&self.inserter);
            let out = ins.process(&chunk);
            (out, ins.take_emitted())
        };
        for e in emitted {
            self.sent.fetch_add(1, Ordering::Relaxed);
            tracing::info!(output = %self.output, event_id = e.cue.event_id, frame = e.cue.frame, pts = e.pts, "playout: SCTE-35 sent");
        }
        self.inner.deliver(Chunk::from(out));
    }
}

fn layout(channels: u32) -> &'static str {
    match channels {
        1 => "mono",
        2 => "stereo",
        4 => "quad",
        6 => "5.1",
        8 => "7.1",
        _ => "stereo",
    }
}

/// Keeps `dir/index.m3u8` = the muxer's `dir/stream.m3u8` with the channel's cues, written
/// under a temporary name and renamed, until `stop` (one last pass then).
fn decorate_hls(dir: &Path, cues_in: &Mutex<Vec<HlsCue>>, stop: &AtomicBool) {
    let src = dir.join("stream.m3u8");
    let dst = dir.join("index.m3u8");
    let tmp = dir.join(".index.m3u8.tmp");
    let mut starts = std::collections::BTreeMap::new();
    let mut last: Option<(SystemTime, usize)> = None;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let n_cues = lock(cues_in).len();
        let modified = std::fs::metadata(&src).and_then(|m| m.modified()).ok();
        if let Some(m) = modified {
            if last != Some((m, n_cues)) {
                if let Ok(text) = std::fs::read_to_string(&src) {
                    let c = lock(cues_in).clone();
                    let out = cues::decorate_playlist(&text, &mut starts, &c);
                    let written =
                        std::fs::write(&tmp, out).and_then(|()| std::fs::rename(&tmp, &dst));
                    if let Err(e) = written {
                        tracing::warn!(dir = %dir.display(), error = %e, "playout: HLS playlist not written");
                    }
                    last = Some((m, n_cues));
                }
            }
        }
        if stopping {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A TS output of the house format: x264 at a fixed GOP, the audio codec asked.
fn ts_output(
    name: &str,
    h: &House,
    interlaced: bool,
    e: &TsEncode,
    sink: Arc<dyn ChunkSink>,
) -> Result<OutputSpec, String> {
    if !crate::av::has_encoder("libx264") {
        return Err("libx264 is not in the linked FFmpeg".into());
    }
    let gop = e.gop_frames.max(1);
    let mut options = vec![
        ("preset".to_string(), e.preset.clone()),
        ("forced-idr".into(), "1".into()),
        ("sc_threshold".into(), "0".into()),
        ("keyint_min".into(), gop.to_string()),
    ];
    if interlaced {
        options.push(("flags".into(), "+ildct+ilme".into()));
    }
    if e.muxrate.is_some() {
        options.push(("nal-hrd".into(), "cbr".into()));
    }
    let video = VideoOut {
        filter: "[in]format=yuv420p[out]".into(),
        gpu_filter: None,
        encoder: "libx264".into(),
        backend: Backend::Software,
        frame_rate: (h.rate.0 as i32, h.rate.1 as i32),
        bit_rate: Some(e.video_bitrate),
        max_rate: Some(e.video_bitrate),
        min_rate: e.muxrate.map(|_| e.video_bitrate),
        buffer_size: Some(e.video_bitrate / 2),
        initial_occupancy: None,
        gop: Some(gop),
        b_frames: Some(e.b_frames),
        closed_gop: true,
        profile_id: None,
        level_id: None,
        interlaced: interlaced.then_some(FieldOrder::Tff),
        bt709: true,
        sample_aspect: (1, 1),
        options,
        global_header: false,
    };
    let (encoder, bit_rate, aopts, channels) = match e.audio {
        TsAudio::Aac { bitrate } => ("aac", Some(bitrate), vec![], h.channels),
        TsAudio::Mp2 { bitrate } => ("mp2", Some(bitrate), vec![], h.channels.min(2)),
        TsAudio::S302m => (
            "s302m",
            None,
            vec![("strict".to_string(), "experimental".to_string())],
            // 302M carries 2, 4, 6 or 8 channels.
            (h.channels.div_ceil(2) * 2).clamp(2, 8),
        ),
    };
    let fmt = engine::audio_encoder_format(encoder)
        .ok_or_else(|| format!("audio encoder {encoder} is not in the linked FFmpeg"))?;
    let track = |channels: u32, bit_rate: Option<u64>| AudioTrack {
        encoder: encoder.into(),
        sample_rate: h.sample_rate,
        channels,
        bit_rate,
        options: aopts.clone(),
        global_header: false,
    };
    let aformat = |channels: u32| {
        format!(
            "aformat=sample_fmts={fmt}:sample_rates={}:channel_layouts={}",
            h.sample_rate,
            layout(channels)
        )
    };
    let audio = if h.channels == 6 && matches!(e.audio, TsAudio::Aac { .. }) {
        // A 5.1 house: a stereo downmix first (what most receivers play), then the 5.1.
        AudioOut {
            filter: format!(
                "[in0]asplit=2[st][sur];[st]{}[out0];[sur]{}[out1]",
                aformat(2),
                aformat(6)
            ),
            tracks: vec![track(2, bit_rate), track(6, bit_rate.map(|b| b * 3))],
        }
    } else {
        AudioOut {
            filter: format!("[in0]{}[out0]", aformat(channels)),
            tracks: vec![track(channels, bit_rate)],
        }
    };
    let mux_options = match e.muxrate {
        Some(m) => TsMux::new(m).mux_options(),
        None => {
            let mut o = TsMux::new(1).mux_options();
            o.retain(|(k, _)| k != "muxrate");
            o
        }
    };
    Ok(OutputSpec {
        name: name.into(),
        sink: OutputSink::Stream(ts::chunk_sink(name.to_string(), sink)),
        muxer: "mpegts".into(),
        mux_options,
        metadata: vec![],
        video: Some(video),
        audio: Some(audio),
        tap: None,
    })
}

/// The house timecode of frame `n`, counted from its UTC day's first frame (drop-frame at 29.97
/// and 59.94).
pub fn day_timecode(epoch: SystemTime, rate: (u32, u32), n: u64) -> String {
    let epoch_ms = epoch
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let clock = super::schedule::FrameClock {
        rate: crate::config::Rate {
            num: rate.0.max(1),
            den: rate.1.max(1),
        },
        epoch_ms,
    };
    let ms = clock.ms_of(n);
    let day = clock
        .frame_at_or_after(ms - ms.rem_euclid(86_400_000))
        .unwrap_or(0);
    clock.timecode(n.saturating_sub(day))
}

/// Wall time of channel frame `n`.
pub fn frame_time(epoch: SystemTime, rate: (u32, u32), n: u64) -> SystemTime {
    let ns = u128::from(n) * 1_000_000_000 * u128::from(rate.1) / u128::from(rate.0.max(1));
    epoch + Duration::from_nanos(ns.min(u128::from(u64::MAX)) as u64)
}

/// The first whole frame at or after `t`.
pub fn frame_at(epoch: SystemTime, rate: (u32, u32), t: SystemTime) -> u64 {
    match t.duration_since(epoch) {
        Ok(d) => {
            let ns = d.as_nanos();
            let per = 1_000_000_000u128 * u128::from(rate.1);
            let num = u128::from(rate.0.max(1));
            (ns * num).div_ceil(per) as u64
        }
        Err(_) => 0,
    }
}

/// What feeds the slot on air.
enum Src {
    Clip(Box<Clip>),
    /// A live event's source (its name for messages), and whether it is lost now.
    Live(Box<LiveFeed>, String, bool),
    Filler,
}

/// What a slot is prepared with ahead of air.
enum Prep {
    Clip(Clip),
    /// The live source, or why it cannot be had.
    Live(Result<LiveFeed, String>),
}

struct OnAir {
    slot: AirSlot,
    /// Channel frame it went to air.
    first: u64,
    frames: u64,
    src: Src,
    substitution: Option<Substitution>,
    gain: Option<Arc<OnceLock<f64>>>,
    /// A gap (no slot in the timeline): ends when the timeline has one.
    gap: bool,
}

/// A file opened ahead of its slot.
struct Prepared {
    /// The slot's item and start.
    key: (String, u64),
    /// The channel frame it was opened for.
    at: u64,
    prep: Prep,
    gain: Option<Arc<OnceLock<f64>>>,
}

/// The engine's state on its thread.
struct Air {
    spec: ChannelSpec,
    timeline: Arc<dyn Timeline>,
    clock: Arc<dyn Clock>,
    live: Option<LiveOutputs>,
    inserters: Vec<Arc<Mutex<CueInserter>>>,
    logo: Option<Still>,
    logo_on: bool,
    shared: Arc<Shared>,
    filler: FillerSource,
    emergency: FillerSource,
    loudness_cache: HashMap<PathBuf, Arc<OnceLock<f64>>>,
    cues_done: HashSet<(String, u64, u32, u64)>,
    last_picture: Option<ff::frame::Video>,
    hls_cues: Arc<Mutex<Vec<HlsCue>>>,
    burn: Option<Burn>,
}

impl Air {
    fn new(
        spec: ChannelSpec,
        timeline: Arc<dyn Timeline>,
        clock: Arc<dyn Clock>,
        live: LiveOutputs,
        inserters: Vec<Arc<Mutex<CueInserter>>>,
        logo: Option<Still>,
        shared: Arc<Shared>,
    ) -> Air {
        let filler = FillerSource::new(spec.house, spec.interlaced, &spec.filler, &spec.name);
        let mut emergency =
            FillerSource::new(spec.house, spec.interlaced, &spec.emergency, &spec.name);
        emergency.warm();
        let logo_on = spec.logo.as_ref().is_some_and(|l| l.on_at_start);
        Air {
            spec,
            timeline,
            clock,
            live: Some(live),
            inserters,
            logo,
            logo_on,
            shared,
            filler,
            emergency,
            loudness_cache: HashMap::new(),
            cues_done: HashSet::new(),
            last_picture: None,
            hls_cues: Arc::default(),
            burn: None,
        }
    }

    /// The gain of an item's file (measured on a thread of its own when the catalog does not
    /// know its loudness).
    fn gain_for(&mut self, path: &Path) -> Option<Arc<OnceLock<f64>>> {
        let target = self.spec.loudness.clone()?;
        if let Some(g) = self.loudness_cache.get(path) {
            return Some(g.clone());
        }
        if self.loudness_cache.len() > 512 {
            self.loudness_cache.clear();
        }
        let cell = Arc::new(OnceLock::new());
        self.loudness_cache.insert(path.to_owned(), cell.clone());
        let to_gain = move |lufs: f64| (target.target_lufs - lufs).clamp(-30.0, 20.0);
        if let Some(l) = target.known.as_ref().and_then(|k| k(path)) {
            let _ = cell.set(to_gain(l));
            return Some(cell);
        }
        let c = cell.clone();
        let p = path.to_owned();
        let _ = thread::Builder::new()
            .name("playout-loud".into())
            .spawn(move || {
                let measured = crate::av::probe::probe(&p)
                    .ok()
                    .and_then(|r| crate::qc::loudness::measure_programme(&r).ok())
                    .and_then(|l| l.integrated_lufs);
                // Silence or no audio: no gain.
                tracing::info!(file = %p.display(), lufs = ?measured, "playout: item loudness measured");
                let _ = c.set(measured.map_or(0.0, to_gain));
            });
        Some(cell)
    }

    fn open_clip(&mut self, path: &Path, in_frame: u64) -> (Clip, Option<Arc<OnceLock<f64>>>) {
        let gain = self.gain_for(path);
        let clip = Clip::open(ClipSpec {
            path: path.to_owned(),
            house: self.spec.house,
            interlaced: self.spec.interlaced,
            in_frame,
            gain_db: 0.0,
        });
        (clip, gain)
    }

    fn register_cues(&mut self, slot: &AirSlot, now: u64, first: u64) {
        for b in &slot.breaks {
            let at = slot.start + b.at;
            let key = (slot.item.clone(), slot.start, b.event_id, b.at);
            if at < now || self.cues_done.contains(&key) {
                continue;
            }
            self.cues_done.insert(key);
            let out_frame = at.saturating_sub(first);
            let end = out_frame + b.duration;
            let (start_kind, end_kind) = if b.time_signal {
                (
                    CueKind::Signal {
                        start: true,
                        duration_frames: Some(b.duration),
                    },
                    CueKind::Signal {
                        start: false,
                        duration_frames: None,
                    },
                )
            } else {
                (
                    CueKind::Insert {
                        out: true,
                        duration_frames: Some(b.duration),
                    },
                    CueKind::Insert {
                        out: false,
                        duration_frames: None,
                    },
                )
            };
            let upid = match &slot.material {
                Material::File { house_id, .. } => house_id.clone(),
                _ => String::new(),
            };
            {
                let h = self.spec.house;
                let ticks = |f: u64| {
                    (u128::from(f) * 90000 * u128::from(h.rate.1) / u128::from(h.rate.0)) as u64
                };
                let secs = |f: u64| f as f64 * h.frame_s();
                let date = |f: u64| {
                    time::OffsetDateTime::from(frame_time(self.spec.epoch, h.rate, f))
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default()
                };
                let section = |out: bool| {
                    cues::splice_info_section(&cues::Command::SpliceInsert {
                        event_id: b.event_id,
                        out_of_network: out,
                        pts: ticks(if out { out_frame } else { end }),
                        duration: out.then(|| ticks(b.duration)),
                        unique_program_id: 1,
                    })
                };
                let mut hc = lock(&self.hls_cues);
                hc.push(HlsCue {
                    id: b.event_id.to_string(),
                    start_s: secs(out_frame),
                    duration_s: secs(b.duration),
                    start_date: date(at),
                    end_date: date(at + b.duration),
                    out_section: section(true),
                    in_section: section(false),
                });
                if hc.len() > 256 {
                    hc.remove(0);
                }
            }
            for ins in &self.inserters {
                let mut i = lock(ins);
                i.add(Cue {
                    frame: out_frame,
                    event_id: b.event_id,
                    kind: start_kind.clone(),
                    upid: upid.clone(),
                });
                i.add(Cue {
                    frame: end,
                    event_id: b.event_id,
                    kind: end_kind.clone(),
                    upid: upid.clone(),
                });
            }
        }
        if self.cues_done.len() > 4096 {
            // Old breaks are long gone; keep the set small on a channel that runs for months.
            self.cues_done
                .retain(|k| k.1 + k.3 + 10 * 60 * 60 * 60 > now);
        }
    }

    /// A live event's source as a decoded feed, or why it cannot be had.
    fn open_live(&self, source: &str) -> Result<LiveFeed, String> {
        let live = self
            .spec
            .live
            .as_ref()
            .ok_or_else(|| "this channel has no live sources".to_string())?;
        let input = live.open(source)?;
        LiveFeed::start(
            source,
            &input,
            self.spec.house,
            self.spec.interlaced,
            self.spec.live_loss_ms,
        )
        .map_err(|e| e.to_string())
    }

    fn take_up(&mut self, slot: AirSlot, n: u64, prepared: &mut Option<Prepared>) -> OnAir {
        let key = (slot.item.clone(), slot.start);
        let mine = match prepared.take() {
            Some(p) if p.key == key && p.at == n => Some(p),
            other => {
                // A prefetch for another slot is kept if it is still ahead.
                if let Some(o) = other {
                    if o.at > n {
                        *prepared = Some(o);
                    }
                }
                None
            }
        };
        let (src, gain, substitution) = match &slot.material {
            Material::File { path, in_frame, .. } => match mine {
                Some(Prepared {
                    prep: Prep::Clip(c),
                    gain,
                    ..
                }) => (Src::Clip(Box::new(c)), gain, None),
                _ => {
                    let (c, g) =
                        self.open_clip(path, in_frame.saturating_add(n.saturating_sub(slot.start)));
                    (Src::Clip(Box::new(c)), g, None)
                }
            },
            Material::Live { source } => {
                let feed = match mine {
                    Some(Prepared {
                        prep: Prep::Live(f),
                        ..
                    }) => f,
                    _ => self.open_live(source),
                };
                match feed {
                    Ok(f) => {
                        tracing::info!(channel = %self.spec.name, item = %slot.item, source = %source, "playout: live event on air");
                        (Src::Live(Box::new(f), source.clone(), false), None, None)
                    }
                    Err(why) => {
                        tracing::warn!(channel = %self.spec.name, item = %slot.item, source = %source, reason = %why, "playout: filler for a live event");
                        (
                            Src::Filler,
                            None,
                            Some(Substitution::LiveLost(format!(
                                "live source {source}: {why}"
                            ))),
                        )
                    }
                }
            }
            Material::Filler => (Src::Filler, None, None),
        };
        OnAir {
            slot,
            first: n,
            frames: 0,
            src,
            substitution,
            gain,
            gap: false,
        }
    }

    fn report(&self, a: OnAir, on_aired: &mut impl FnMut(Aired)) {
        if a.frames == 0 {
            return;
        }
        let mut slot = a.slot;
        if a.gap {
            slot.frames = a.frames;
        }
        tracing::info!(channel = %self.spec.name, item = %slot.item, start = a.first, frames = a.frames, substitution = ?a.substitution, "playout: aired");
        on_aired(Aired {
            slot,
            start: a.first,
            frames: a.frames,
            substitution: a.substitution,
        });
    }

    fn run(&mut self, mut on_aired: impl FnMut(Aired)) -> Result<u64, EngineError> {
        let h = self.spec.house;
        let rate = h.rate;
        let epoch = self.spec.epoch;
        let cancel = self.shared.cancel.clone();
        let fd = Duration::from_secs_f64(h.frame_s());
        let now = self.clock.now();
        // Joining a schedule already under way (a start or restart mid-item), in real time: the
        // item on air is opened at the frame a moment ahead, which is the channel's first.
        let lead = self.clock.realtime() && now > epoch;
        let first = if lead {
            frame_at(epoch, rate, now + START_LEAD)
        } else {
            frame_at(epoch, rate, now)
        };
        let name = self.spec.name.clone();
        let m_frames = metrics::counter!("antenne_playout_frames_total", "channel" => name.clone());
        let m_late =
            metrics::counter!("antenne_playout_late_frames_total", "channel" => name.clone());
        let m_under =
            metrics::counter!("antenne_playout_underruns_total", "channel" => name.clone());
        let m_filler =
            metrics::gauge!("antenne_playout_filler_seconds_total", "channel" => name.clone());
        let preroll = self.spec.scte35.preroll_frames.max(1);
        let mut planes: Vec<Vec<f32>> = vec![Vec::new(); h.channels as usize];
        let mut cur: Option<OnAir> = None;
        let mut prepared: Option<Prepared> = None;
        // The first item is opened now: its first frame is due in a moment.
        if self.clock.realtime() {
            if let Some(s) = self.timeline.slot_at(first) {
                if let Material::File { path, in_frame, .. } = &s.material {
                    let inf = in_frame + first.saturating_sub(s.start);
                    let (clip, gain) = self.open_clip(&path.clone(), inf);
                    prepared = Some(Prepared {
                        key: (s.item.clone(), s.start),
                        at: first,
                        prep: Prep::Clip(clip),
                        gain,
                    });
                }
            }
        }
        let mut next_slot: Option<AirSlot> = None;
        let mut n = first;
        let mut filler_frames = 0u64;
        let mut underruns = 0u64;
        let mut late = 0u64;
        let mut result = Ok(());
        {
            let mut st = lock(&self.shared.status);
            st.first_frame = first;
            st.frame = first;
        }
        if self.spec.overlay_timecode {
            let clock_s = frame_time(epoch, rate, first)
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.burn = Some(Burn::new(&h, &day_timecode(epoch, rate, first), clock_s));
        }
        while !cancel.load(Ordering::Relaxed) {
            let j = n - first;
            let due = frame_time(epoch, rate, n);
            self.clock.wait_until(due, &cancel);
            if cancel.load(Ordering::Relaxed) {
                break;
            }
            // What is on air at n.
            // A slot that does not cover `n` (a faulty timeline) counts as a gap.
            let want = self
                .timeline
                .slot_at(n)
                .filter(|w| w.start <= n && n < w.end());
            let same = match (&cur, &want) {
                (Some(c), Some(w)) => {
                    !c.gap
                        && c.slot.item == w.item
                        && c.slot.start == w.start
                        && c.slot.material == w.material
                }
                (Some(c), None) => c.gap,
                _ => false,
            };
            if same {
                if let (Some(c), Some(w)) = (cur.as_mut(), want) {
                    // Edited on air (length, breaks, secondaries): the new version counts.
                    c.slot = w;
                }
            } else {
                if let Some(c) = cur.take() {
                    self.report(c, &mut on_aired);
                }
                cur = Some(match want {
                    Some(w) => self.take_up(w, n, &mut prepared),
                    None => OnAir {
                        slot: AirSlot {
                            item: String::new(),
                            start: n,
                            frames: 0,
                            material: Material::Filler,
                            breaks: vec![],
                            secondary: vec![],
                        },
                        first: n,
                        frames: 0,
                        src: Src::Filler,
                        substitution: None,
                        gain: None,
                        gap: true,
                    },
                });
                next_slot = None;
                if let Some(c) = &cur {
                    lock(&self.shared.status).now = Some(c.slot.clone());
                }
            }
            let c = cur.as_mut().expect("set above");
            // Prefetch the next slot's file, or join its live source.
            let horizon = self.spec.prefetch_frames.max(1);
            let live_horizon = horizon.max((self.spec.live_prefetch_s / h.frame_s()) as u64);
            if !c.gap && next_slot.is_none() && c.slot.end() <= n + live_horizon {
                let nx = self.timeline.slot_at(c.slot.end());
                let is_live = nx
                    .as_ref()
                    .is_some_and(|x| matches!(x.material, Material::Live { .. }));
                if is_live || c.slot.end() <= n + horizon {
                    let at = c.slot.end();
                    if let Some(nx) = &nx {
                        let key = (nx.item.clone(), nx.start);
                        let fresh = prepared.as_ref().is_none_or(|p| p.key != key || p.at != at);
                        match &nx.material {
                            Material::File { path, in_frame, .. } if fresh => {
                                let skip = at.saturating_sub(nx.start);
                                let (path, inf) = (path.clone(), in_frame + skip);
                                let (clip, gain) = self.open_clip(&path, inf);
                                prepared = Some(Prepared {
                                    key,
                                    at,
                                    prep: Prep::Clip(clip),
                                    gain,
                                });
                            }
                            Material::Live { source } if fresh => {
                                prepared = Some(Prepared {
                                    key,
                                    at,
                                    prep: Prep::Live(self.open_live(source)),
                                    gain: None,
                                });
                            }
                            _ => {}
                        }
                    }
                    let mut st = lock(&self.shared.status);
                    st.next = nx.clone();
                    next_slot = nx.or(Some(AirSlot {
                        item: String::new(),
                        start: c.slot.end(),
                        frames: 0,
                        material: Material::Filler,
                        breaks: vec![],
                        secondary: vec![],
                    }));
                }
            }
            let c = cur.as_mut().expect("set above");
            // SCTE-35: cues of breaks within the pre-roll.
            let c_slot = c.slot.clone();
            self.register_cues(&c_slot, n, first);
            if let Some(ahead) = self.timeline.slot_at(n + preroll) {
                if ahead.start != c_slot.start || ahead.item != c_slot.item {
                    self.register_cues(&ahead, n, first);
                }
            }
            let c = cur.as_mut().expect("set above");
            let k = n.saturating_sub(c.slot.start);
            for s in &c.slot.secondary {
                match s {
                    Secondary::LogoOn { at } if *at == k => self.logo_on = true,
                    Secondary::LogoOff { at } if *at == k => self.logo_on = false,
                    _ => {}
                }
            }
            let ns = (h.samples_before(j + 1) - h.samples_before(j)) as usize;
            let deadline = if self.clock.realtime() {
                Instant::now() + fd
            } else {
                Instant::now() + Duration::from_secs(10)
            };
            if !self.clock.realtime() {
                // A fast clock waits for the item's loudness (real time airs at unity gain
                // until it is known: the catalog's measure or the prefetch's should be there).
                if let Some(g) = &c.gain {
                    let until = Instant::now() + Duration::from_secs(120);
                    while g.get().is_none() && Instant::now() < until {
                        thread::sleep(Duration::from_millis(2));
                    }
                }
            }
            let emergency = self.shared.emergency.load(Ordering::Relaxed);
            let mut picture: Option<ff::frame::Video> = None;
            let mut filler = false;
            if let Src::Clip(clip) = &mut c.src {
                match clip.take(ns, &mut planes, deadline) {
                    Take::Frame(f) => picture = Some(f),
                    Take::Late => {
                        underruns += 1;
                        m_under.increment(1);
                        picture = self
                            .last_picture
                            .as_ref()
                            .and_then(|l| crate::av::share(l).map(Into::into));
                    }
                    Take::Ended(e) => {
                        let total = c.slot.frames;
                        let why = match e {
                            Some(e) => e.to_string(),
                            None => format!(
                                "{}: the file ended at frame {} of the slot's {}",
                                clip.path().display(),
                                k,
                                total
                            ),
                        };
                        tracing::warn!(channel = %name, item = %c.slot.item, reason = %why, "playout: filler for an unplayable item");
                        if c.substitution.is_none() {
                            c.substitution = Some(Substitution::Unplayable(why));
                        }
                        c.src = Src::Filler;
                    }
                }
            }
            if let Src::Live(feed, source, lost) = &mut c.src {
                match feed.next(ns, &mut planes) {
                    FeedTake::Frame(f) => {
                        if *lost {
                            *lost = false;
                            tracing::info!(channel = %name, item = %c.slot.item, source = %source, "playout: live source back on air");
                        }
                        picture = Some(f);
                    }
                    FeedTake::Late => {
                        picture = self
                            .last_picture
                            .as_ref()
                            .and_then(|l| crate::av::share(l).map(Into::into));
                        if picture.is_none() {
                            filler = true;
                            picture = self.filler.next(ns, &mut planes);
                        }
                    }
                    FeedTake::Lost(why) => {
                        if !*lost {
                            *lost = true;
                            tracing::warn!(channel = %name, item = %c.slot.item, source = %source, reason = %why, "playout: live source lost: filler");
                        }
                        if c.substitution.is_none() {
                            c.substitution = Some(Substitution::LiveLost(format!(
                                "live source {source} lost at frame {k} of the event: {why}"
                            )));
                        }
                        filler = true;
                        picture = self.filler.next(ns, &mut planes);
                        // A source stopped and started again is a new demux: subscribe anew,
                        // once a second.
                        if feed.ended() && k % u64::from((h.rate.0 / h.rate.1.max(1)).max(1)) == 0 {
                            if let Ok(f) = self.open_live(source) {
                                **feed = f;
                            }
                        }
                    }
                }
            }
            if emergency {
                picture = self.emergency.next(ns, &mut planes);
                if c.substitution.is_none() {
                    c.substitution = Some(Substitution::Operator("emergency slate on air".into()));
                }
            } else if picture.is_none() && matches!(c.src, Src::Filler) {
                filler = true;
                picture = self.filler.next(ns, &mut planes);
            } else if let Some(g) = c.gain.as_ref().and_then(|g| g.get()) {
                if g.abs() > 0.01 {
                    let lin = 10f32.powf(*g as f32 / 20.0);
                    for p in planes.iter_mut() {
                        for s in p.iter_mut() {
                            *s *= lin;
                        }
                    }
                }
            }
            let mut picture = match picture {
                Some(p) => p,
                None => match self
                    .last_picture
                    .as_ref()
                    .and_then(|l| crate::av::share(l).map(ff::frame::Video::from))
                {
                    Some(p) => p,
                    // Nothing aired yet and the item's reader is late: filler this frame.
                    None => match self.filler.next(ns, &mut planes) {
                        Some(p) => {
                            filler = true;
                            p
                        }
                        None => {
                            result = Err(EngineError::Spec {
                                channel: name.clone(),
                                what: "neither the schedule nor the filler made a picture".into(),
                            });
                            break;
                        }
                    },
                },
            };
            if filler {
                filler_frames += 1;
                m_filler.set(filler_frames as f64 * h.frame_s());
            }
            if let (Some(logo), true, Some(l)) = (&self.logo, self.logo_on, &self.spec.logo) {
                clip::blend(&mut picture, logo, l.x, l.y);
            }
            // The last picture is kept without the overlay: a repeat is drawn on again.
            self.last_picture = crate::av::share(&picture).map(Into::into);
            if let Some(b) = self.burn.as_mut() {
                if let Some(p) = b.apply(&picture) {
                    picture = p;
                }
            }
            let Some(live) = self.live.as_mut() else {
                break;
            };
            let alive = live.send(&picture, &planes);
            c.frames += 1;
            m_frames.increment(1);
            if self.clock.realtime() {
                if let Ok(behind) = SystemTime::now().duration_since(due) {
                    if behind > fd {
                        late += 1;
                        m_late.increment(1);
                    }
                }
            }
            {
                let mut st = lock(&self.shared.status);
                st.frame = n;
                st.frames_out = j + 1;
                st.emergency = emergency;
                st.late_frames = late;
                st.underruns = underruns;
                st.filler_frames = filler_frames;
                st.frames_to_next = (!c.gap).then(|| c.slot.end().saturating_sub(n + 1));
            }
            n += 1;
            if !alive {
                break;
            }
        }
        if let Some(c) = cur.take() {
            self.report(c, &mut on_aired);
        }
        let failed = self
            .live
            .take()
            .map(LiveOutputs::finish)
            .unwrap_or_default();
        let total = failed.len();
        if let Some((output, source)) = failed.into_iter().next() {
            if total == self.spec.outputs.len() {
                return Err(EngineError::Output {
                    channel: name,
                    output,
                    source,
                });
            }
            tracing::warn!(channel = %name, output = %output, error = %source, "playout: output failed");
        }
        result.map(|()| n - first)
    }
}
