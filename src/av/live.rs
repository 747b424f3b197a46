//! Live pipelines: N inputs (primary, backups), each demuxed and decoded on its own thread and
//! conformed to the house format (picture size, frame rate, pixel format; audio rate and layout);
//! a switcher that clocks the output by the wall clock, takes each output frame from the active
//! input and fails over to the next healthy one, or to a slate, when it stops delivering; and the
//! outputs (one encoder set and muxer each, the engine's own stages) fed with frames stamped by
//! frame and sample count, so that no switch is ever seen as a discontinuity downstream.
//!
//! Runs on OS threads until cancelled. Owns the live engine only: what to encode and where to
//! (`OutputSpec`s) is compiled by `pipeline::live`.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};

use super::engine::{self, AMsg, OutputSpec, StageError, VMsg};
use super::graph::{self, Sink, Source};
use super::io::InputSource;
use super::packets::{self, Demuxed, PacketReader, StreamInfo};
use super::{ff, ffi, AvError};

/// Frames an input joins with queued ahead of the output (absorbs decode and network jitter).
const TARGET_DEPTH: usize = 5;
/// Above this many queued frames the oldest is dropped (the input runs fast, a burst came, or
/// it is on standby). Also the most a feed's audio may arrive after its pictures (muxers
/// interleave audio in PES of a few hundred milliseconds).
const MAX_DEPTH: usize = 16;
/// Audio an input keeps buffered at most, in seconds.
const AUDIO_MAX_S: f64 = 2.0;
/// Audio this far from its picture is moved (dropped or padded) to meet it.
const AUDIO_TOLERANCE_S: f64 = 0.005;
/// Audio further than this from its picture belongs to another run of the feed (a restart).
const AUDIO_RESYNC_S: f64 = 1.0;
/// Packets read ahead of an input's decoder at most (about 4 s of a 10 Mb/s feed).
const PACKET_QUEUE: usize = 4096;
/// At the start, how long a backup that is ready waits for the primary.
const START_GRACE: Duration = Duration::from_millis(1000);
/// A timestamp step larger than this is a discontinuity (a restarted feed, a looped file).
const JUMP_S: f64 = 1.0;

/// The format every input is conformed to, and that the outputs start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct House {
    pub width: u32,
    pub height: u32,
    /// Frames per second as num/den (25/1, 30000/1001).
    pub rate: (u32, u32),
    pub sample_rate: u32,
    pub channels: u32,
}

impl House {
    pub fn frame_s(&self) -> f64 {
        f64::from(self.rate.1) / f64::from(self.rate.0.max(1))
    }

    /// Audio samples before output frame `n`: whole samples per frame on average, so that no
    /// fraction is lost at rates such as 29.97.
    pub fn samples_before(&self, n: u64) -> u64 {
        (u128::from(n) * u128::from(self.sample_rate) * u128::from(self.rate.1)
            / u128::from(self.rate.0.max(1))) as u64
    }

    fn layout(&self) -> String {
        match self.channels {
            1 => "mono".into(),
            2 => "stereo".into(),
            6 => "5.1".into(),
            n => format!("{n}c"),
        }
    }
}

/// What goes to air when no input is healthy.
#[derive(Debug, Clone)]
pub enum Slate {
    /// Colour bars with the ident (and a frame counter), and a 1 kHz tone at −20 dBFS (the `sine`
    /// source is at 1/8 of full scale: × 0.8 makes a peak of 0.1).
    Generated { ident: String },
    /// A media file, looped.
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct LiveInput {
    pub name: String,
    pub source: InputSource,
}

/// When to leave an input and when to come back to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Failover {
    /// An input with no packet, or no decodable picture, for this long is lost.
    pub loss_ms: u64,
    /// A better input (the primary) is taken back once healthy this long.
    pub return_after_s: f64,
    /// How long the start waits for an input before going to air on the slate.
    pub startup_wait_s: f64,
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            loss_ms: 500,
            return_after_s: 10.0,
            startup_wait_s: 5.0,
        }
    }
}

impl Failover {
    /// Leaving the slate for an input that came back takes this long healthy: the slate is the
    /// worst thing on air, but one good packet is not a feed.
    fn settle_s(&self) -> f64 {
        self.return_after_s.min(1.0)
    }
}

/// A live pipeline: inputs in order of preference (the first is the primary), the house format,
/// the slate, the failover rules, and the outputs.
#[derive(Debug, Clone)]
pub struct LiveSpec {
    pub inputs: Vec<LiveInput>,
    pub house: House,
    pub slate: Slate,
    pub failover: Failover,
    /// Each output's video filter starts from house frames (`[in]` … `[out]`), its audio filter
    /// from one house-format stream (`[in0]` … `[outN]`).
    pub outputs: Vec<OutputSpec>,
}

/// What is on air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnAir {
    Input(usize),
    Slate,
}

/// Why the switcher changed what is on air.
#[derive(Debug, Clone, PartialEq)]
pub enum SwitchReason {
    /// The first input went to air at the start.
    Start,
    /// No input was healthy at the start.
    NoInputAtStart,
    /// The input on air delivered no packet for this long.
    NoPacket { silent_ms: u64 },
    /// Packets arrived but no picture could be decoded for this long.
    NoVideo { silent_ms: u64 },
    /// The input's stream ended for good.
    Ended,
    /// A better input has been healthy this long.
    Restored { healthy_s: f64 },
    /// An operator chose the input (see [`ManualSwitch`]).
    Operator,
}

impl std::fmt::Display for SwitchReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SwitchReason::Start => write!(f, "start"),
            SwitchReason::NoInputAtStart => write!(f, "no input healthy at start"),
            SwitchReason::NoPacket { silent_ms } => write!(f, "no packet for {silent_ms} ms"),
            SwitchReason::NoVideo { silent_ms } => {
                write!(f, "no decodable video for {silent_ms} ms")
            }
            SwitchReason::Ended => write!(f, "stream ended"),
            SwitchReason::Restored { healthy_s } => {
                write!(f, "restored (healthy for {healthy_s:.1} s)")
            }
            SwitchReason::Operator => write!(f, "operator's choice"),
        }
    }
}

/// One switch, as the service publishes it.
#[derive(Debug, Clone)]
pub struct SwitchEvent {
    /// The first output frame of the new source.
    pub frame: u64,
    pub at: SystemTime,
    pub from: Option<OnAir>,
    pub to: OnAir,
    /// Input names (`slate` for the slate).
    pub from_name: Option<String>,
    pub to_name: String,
    pub reason: SwitchReason,
}

/// Counters of one input, updated by its thread.
#[derive(Debug, Default)]
pub struct InputCounters {
    pub packets: AtomicU64,
    pub frames_decoded: AtomicU64,
    pub decode_errors: AtomicU64,
    /// Times the demuxer was opened again after its stream broke off.
    pub reopened: AtomicU64,
    /// Milliseconds since the run's start (+1; 0: never) of the last packet and decoded picture.
    last_packet_ms: AtomicU64,
    last_video_ms: AtomicU64,
    last_audio_ms: AtomicU64,
    /// Pictures dropped while on air because the input ran ahead of the output.
    pub frames_dropped: AtomicU64,
    ended: AtomicBool,
    pub last_error: Mutex<Option<String>>,
}

/// What the caller reads while a live pipeline runs.
#[derive(Debug, Default)]
pub struct LiveProgress {
    pub frames_out: AtomicU64,
    /// Output frames that repeated the previous picture (the active input was late).
    pub frames_repeated: AtomicU64,
    pub slate_frames: AtomicU64,
    /// Output frames made more than one frame period after their time (the encoders lag).
    pub late_frames: AtomicU64,
    /// Audio samples of silence put in because the input's audio was missing.
    pub audio_gap_samples: AtomicU64,
    pub switches: AtomicU64,
    /// The source on air: the input's index, or `u64::MAX` for the slate.
    pub on_air: AtomicU64,
    /// The last output frame taken fresh from an input, and that picture's time in the input's
    /// own timeline (seconds): how far the output runs behind its source.
    pub last_input_frame: Mutex<Option<(u64, f64)>>,
    pub inputs: Mutex<Vec<Arc<InputCounters>>>,
    /// The operator's choice of input, read by the switcher before each frame.
    pub manual: Arc<ManualSwitch>,
}

/// An operator's choice of the preferred input: taken at once when healthy, then kept like the
/// primary is otherwise (left when it fails, taken back once healthy for `return_after_s`).
#[derive(Debug, Default)]
pub struct ManualSwitch {
    /// 0: none (the primary is preferred); `i + 1`: input `i`.
    wanted: AtomicU64,
    /// Bumped by each choice, so that choosing the same input again switches again.
    generation: AtomicU64,
}

impl ManualSwitch {
    /// Prefers input `i` (`None`: back to the normal order, the primary first) from now on.
    pub fn prefer(&self, input: Option<usize>) {
        self.wanted
            .store(input.map_or(0, |i| i as u64 + 1), Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn preferred(&self) -> Option<usize> {
        match self.wanted.load(Ordering::Acquire) {
            0 => None,
            n => Some((n - 1) as usize),
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

impl LiveProgress {
    /// Input pictures dropped while on air to stay live (the input ran ahead of the output, or
    /// the encoders fell behind).
    pub fn frames_dropped(&self) -> u64 {
        lock(&self.inputs)
            .iter()
            .map(|c| c.frames_dropped.load(Ordering::Relaxed))
            .sum()
    }
}

/// How a live run ended (it runs until cancelled).
#[derive(Debug)]
pub struct LiveReport {
    pub frames_out: u64,
    /// Outputs that failed on the way, with why; the others went on.
    pub failed_outputs: Vec<(String, StageError)>,
}

/// Decoded, conformed pictures and samples of one input, waiting for the switcher.
struct Buffer {
    video: VecDeque<(f64, ff::frame::Video)>,
    audio: AudioFifo,
    /// Set by the switcher while this input is on air (then a live input keeps what it has).
    paced: bool,
}

/// Planar samples with the timestamp of the first one.
struct AudioFifo {
    rate: f64,
    head_s: f64,
    chans: Vec<VecDeque<f32>>,
}

impl AudioFifo {
    fn new(rate: u32, channels: u32) -> AudioFifo {
        AudioFifo {
            rate: f64::from(rate),
            head_s: 0.0,
            chans: (0..channels.max(1)).map(|_| VecDeque::new()).collect(),
        }
    }

    fn len(&self) -> usize {
        self.chans[0].len()
    }

    fn end_s(&self) -> f64 {
        self.head_s + self.len() as f64 / self.rate
    }

    fn drop_front(&mut self, n: usize) {
        let n = n.min(self.len());
        for c in &mut self.chans {
            c.drain(..n);
        }
        self.head_s += n as f64 / self.rate;
    }

    /// Appends samples starting at `pts_s`; a discontinuity starts the buffer again there.
    fn push(&mut self, pts_s: f64, planes: &[&[f32]]) {
        if self.len() == 0 || (pts_s - self.end_s()).abs() > JUMP_S {
            for c in &mut self.chans {
                c.clear();
            }
            self.head_s = pts_s;
        }
        for (i, c) in self.chans.iter_mut().enumerate() {
            // A source with fewer channels than the house (should not happen after conform):
            // repeat its last plane.
            let p = planes.get(i).or(planes.last()).copied().unwrap_or(&[]);
            c.extend(p.iter().copied());
        }
        let max = (AUDIO_MAX_S * self.rate) as usize;
        if self.len() > max {
            self.drop_front(self.len() - max);
        }
    }

    /// `n` samples for a picture shown at `at_s` (`None`: continue where the last take ended),
    /// into `out`; returns how many of them are silence put in for missing audio.
    fn take(&mut self, at_s: Option<f64>, n: usize, out: &mut [Vec<f32>]) -> usize {
        for o in out.iter_mut() {
            o.clear();
        }
        let mut gap = 0usize;
        if let Some(p) = at_s {
            let d = self.head_s - p;
            if self.len() > 0 && d > AUDIO_RESYNC_S {
                // Samples of a later run of the feed than this picture (a restart): silence
                // until the pictures of that run come.
                gap = n;
            } else if d < -AUDIO_TOLERANCE_S {
                self.drop_front(((-d) * self.rate).round() as usize);
            } else if d > AUDIO_TOLERANCE_S {
                gap = ((d * self.rate).round() as usize).min(n);
            }
        }
        let take = (n - gap).min(self.len());
        for (c, o) in self.chans.iter_mut().zip(out.iter_mut()) {
            o.extend(std::iter::repeat_n(0.0, gap));
            o.extend(c.drain(..take));
            o.resize(n, 0.0);
        }
        self.head_s += take as f64 / self.rate;
        n - take
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks stays consistent between statements; a panicked holder
    // leaves it usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A stream reader shared by the successive demuxers of one input, so that a demuxer that gives
/// up (garbage, a changed stream) can be opened again on what follows.
#[derive(Clone)]
pub(super) struct SharedReader {
    inner: Arc<Mutex<Box<dyn Read + Send>>>,
    pub(super) ended: Arc<AtomicBool>,
}

impl SharedReader {
    pub(super) fn new(reader: Box<dyn Read + Send>) -> SharedReader {
        SharedReader {
            inner: Arc::new(Mutex::new(reader)),
            ended: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Read for SharedReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = lock(&self.inner).read(out)?;
        if n == 0 && !out.is_empty() {
            self.ended.store(true, Ordering::Relaxed);
        }
        Ok(n)
    }
}

enum Opener {
    File(PathBuf),
    Stream {
        name: String,
        reader: SharedReader,
    },
    /// A subscription to the source's one demux.
    Packets(PacketReader),
}

impl Opener {
    fn of(source: &InputSource) -> Result<Opener, AvError> {
        match source {
            InputSource::File(p) => Ok(Opener::File(p.clone())),
            InputSource::Stream(s) => {
                let reader = s.take().ok_or_else(|| AvError::Invalid {
                    path: PathBuf::from(&s.name),
                    what: "this stream is already read by another pipeline".into(),
                })?;
                Ok(Opener::Stream {
                    name: s.name.clone(),
                    reader: SharedReader::new(reader),
                })
            }
            InputSource::Packets(s) => {
                s.take()
                    .map(Opener::Packets)
                    .ok_or_else(|| AvError::Invalid {
                        path: PathBuf::from(&s.name),
                        what: "this subscription is already read by another pipeline".into(),
                    })
            }
        }
    }

    fn ended(&self) -> bool {
        match self {
            Opener::File(_) | Opener::Packets(_) => false,
            Opener::Stream { reader, .. } => reader.ended.load(Ordering::Relaxed),
        }
    }

    fn open(&self, cancel: &Arc<AtomicBool>) -> Result<ff::format::context::Input, AvError> {
        match self {
            Opener::File(p) => super::input::open_cancellable(p, Some(cancel.clone())),
            Opener::Packets(r) => Err(AvError::Invalid {
                path: PathBuf::from(r.name()),
                what: "demuxed already".into(),
            }),
            Opener::Stream { name, reader } => {
                let io =
                    ff::format::context::StreamIo::from_read(reader.clone()).map_err(|source| {
                        AvError::Libav {
                            path: PathBuf::from(name),
                            what: "cannot set up reading".into(),
                            source,
                        }
                    })?;
                let mut opts = ff::Dictionary::new();
                // What arrives must not make the demuxer open files or the network.
                opts.set("protocol_whitelist", "none");
                let c = cancel.clone();
                ff::format::input_from_stream_with_interrupt(
                    io,
                    Some(name),
                    Some(opts),
                    move || c.load(Ordering::Relaxed),
                )
                .map_err(|source| {
                    if cancel.load(Ordering::Relaxed) {
                        AvError::Cancelled
                    } else {
                        AvError::NotMedia {
                            path: PathBuf::from(name),
                            reason: None,
                            source,
                        }
                    }
                })
            }
        }
    }
}

/// Where an input thread leaves its work.
struct Shared {
    buffer: Mutex<Buffer>,
    counters: Arc<InputCounters>,
}

/// One input: open, demux, decode, conform, queue; opened again when its stream breaks off; a
/// file (the slate) is looped and read only as fast as it is shown.
struct InputWorker {
    name: String,
    opener: Opener,
    house: House,
    shared: Arc<Shared>,
    epoch: Instant,
    cancel: Arc<AtomicBool>,
    looped: bool,
    /// For a playout feed, whether the house is interlaced (pictures are then scaled as fields;
    /// interlaced sources into a progressive house are deinterlaced); `None`: scaled as they come.
    scan: Option<bool>,
}

impl InputWorker {
    fn stamp(&self, slot: &AtomicU64) {
        slot.store(
            self.epoch.elapsed().as_millis() as u64 + 1,
            Ordering::Relaxed,
        );
    }

    fn error(&self, e: impl std::fmt::Display) {
        tracing::warn!(input = %self.name, error = %e, "live input");
        *lock(&self.shared.counters.last_error) = Some(e.to_string());
    }

    fn run(self) {
        if let Opener::Packets(r) = &self.opener {
            self.run_packets(r);
            return;
        }
        let mut offset_s = 0.0;
        while !self.cancel.load(Ordering::Relaxed) {
            match self.opener.open(&self.cancel) {
                Ok(mut ictx) => match self.demux(&mut ictx, offset_s) {
                    Ok(end_s) => offset_s = end_s,
                    Err(e) => self.error(e),
                },
                Err(AvError::Cancelled) => return,
                Err(e) => self.error(e),
            }
            if self.opener.ended() {
                self.shared.counters.ended.store(true, Ordering::Relaxed);
                return;
            }
            if self.cancel.load(Ordering::Relaxed) {
                return;
            }
            self.shared
                .counters
                .reopened
                .fetch_add(1, Ordering::Relaxed);
            if !self.looped {
                thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Decodes what the source's one demux hands over, opening after opening, until it stops
    /// (the source stopped: the input has ended) or the pipeline is cancelled.
    fn run_packets(&self, reader: &PacketReader) {
        let counters = &self.shared.counters;
        let mut offset_s = 0.0;
        let mut next: Option<Vec<StreamInfo>> = None;
        let mut ended = false;
        let mut opened = false;
        while !ended && !self.cancel.load(Ordering::Relaxed) {
            let streams = match next.take() {
                Some(s) => s,
                None => match reader.recv_timeout(Duration::from_millis(100)) {
                    Ok(Demuxed::Opened(s)) => s,
                    Ok(_) | Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            if opened {
                counters.reopened.fetch_add(1, Ordering::Relaxed);
            }
            opened = true;
            let vi = packets::best(&streams, ff::media::Type::Video).map(|s| s.index);
            let ai = packets::best(&streams, ff::media::Type::Audio).map(|s| s.index);
            let mut dec = match self.decoders(&streams, vi, ai) {
                Ok(d) => d,
                Err(e) => {
                    self.error(e);
                    continue;
                }
            };
            let feed = std::iter::from_fn(|| loop {
                if self.cancel.load(Ordering::Relaxed) {
                    return None;
                }
                match reader.recv_timeout(Duration::from_millis(100)) {
                    Ok(Demuxed::Packet(p)) => {
                        counters.packets.fetch_add(1, Ordering::Relaxed);
                        self.stamp(&counters.last_packet_ms);
                        return Some(p);
                    }
                    Ok(Demuxed::Opened(s)) => {
                        next = Some(s);
                        return None;
                    }
                    Ok(Demuxed::Closed) => return None,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        ended = true;
                        return None;
                    }
                }
            });
            match self.decode(&mut dec, feed, offset_s) {
                Ok(end_s) => offset_s = end_s,
                Err(e) => self.error(e),
            }
        }
        if !self.cancel.load(Ordering::Relaxed) {
            counters.ended.store(true, Ordering::Relaxed);
        }
    }

    /// The decoders of one opening: the video stream `vi` and the audio stream `ai`.
    fn decoders(
        &self,
        streams: &[StreamInfo],
        vi: Option<usize>,
        ai: Option<usize>,
    ) -> Result<Decoders, AvError> {
        let path = PathBuf::from(&self.name);
        let open_dec = |i: usize| -> Result<(ff::codec::Context, ff::Rational), AvError> {
            let st = streams
                .iter()
                .find(|s| s.index == i)
                .ok_or_else(|| AvError::Invalid {
                    path: path.clone(),
                    what: format!("has no stream {i}"),
                })?;
            let ctx = ff::codec::Context::from_parameters(st.params.clone()).map_err(|source| {
                AvError::Libav {
                    path: path.clone(),
                    what: format!("stream {i}"),
                    source,
                }
            })?;
            Ok((ctx, st.time_base))
        };
        let dec_err = |what: &str| {
            let what = what.to_string();
            let path = path.clone();
            move |source| AvError::Libav { path, what, source }
        };
        let (vdec, vtb) = match vi {
            Some(i) => {
                let (mut ctx, tb) = open_dec(i)?;
                super::decode_threads(&mut ctx, 0);
                (
                    Some(ctx.decoder().video().map_err(dec_err("video decoder"))?),
                    tb,
                )
            }
            None => (None, ff::Rational::new(1, 90000)),
        };
        let (adec, atb) = match ai {
            Some(i) => {
                let (ctx, tb) = open_dec(i)?;
                (
                    Some(ctx.decoder().audio().map_err(dec_err("audio decoder"))?),
                    tb,
                )
            }
            None => (None, ff::Rational::new(1, 90000)),
        };
        Ok(Decoders {
            vi,
            ai,
            vdec,
            adec,
            vtb,
            atb,
        })
    }

    /// Decodes, conforms and queues `packets` until they end; returns where this pass of the
    /// input has reached (seconds, `offset_s` included).
    fn decode<P: Borrow<ff::Packet>>(
        &self,
        d: &mut Decoders,
        packets: impl Iterator<Item = P>,
        offset_s: f64,
    ) -> Result<f64, AvError> {
        let path = PathBuf::from(&self.name);
        let counters = &self.shared.counters;
        let mut conform = Conform::new(self.house, d.vtb, d.atb, offset_s);
        conform.scan = self.scan;
        let mut vframe = ff::frame::Video::empty();
        let mut aframe = ff::frame::Audio::empty();
        let invalid = |e: graph::GraphError| AvError::Invalid {
            path: path.clone(),
            what: e.to_string(),
        };
        for packet in packets {
            if self.cancel.load(Ordering::Relaxed) {
                break;
            }
            let packet = packet.borrow();
            let si = packet.stream();
            if Some(si) == d.vi {
                let Some(dec) = d.vdec.as_mut() else { continue };
                if dec.send_packet(packet).is_err() {
                    counters.decode_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                while dec.receive_frame(&mut vframe).is_ok() {
                    counters.frames_decoded.fetch_add(1, Ordering::Relaxed);
                    self.stamp(&counters.last_video_ms);
                    for f in conform.video(&mut vframe).map_err(invalid)? {
                        self.queue_video(f);
                    }
                }
            } else if Some(si) == d.ai {
                let Some(dec) = d.adec.as_mut() else { continue };
                if dec.send_packet(packet).is_err() {
                    counters.decode_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                while dec.receive_frame(&mut aframe).is_ok() {
                    self.stamp(&counters.last_audio_ms);
                    for (pts, planes) in conform.audio(&mut aframe).map_err(invalid)? {
                        let refs: Vec<&[f32]> = planes.iter().map(Vec::as_slice).collect();
                        lock(&self.shared.buffer).audio.push(pts, &refs);
                    }
                }
            }
        }
        Ok(conform.end_s)
    }

    /// Reads one opening of the input to its end; returns where a looped file's next pass
    /// starts (seconds), so that its timeline goes on.
    fn demux(&self, ictx: &mut ff::format::context::Input, offset_s: f64) -> Result<f64, AvError> {
        let path = PathBuf::from(&self.name);
        let vi = ictx
            .streams()
            .best(ff::media::Type::Video)
            .map(|s| s.index());
        let ai = ictx
            .streams()
            .best(ff::media::Type::Audio)
            .map(|s| s.index());
        let streams: Vec<StreamInfo> = ictx
            .streams()
            .map(|s| StreamInfo {
                index: s.index(),
                params: s.parameters(),
                time_base: s.time_base(),
            })
            .collect();
        let mut dec = self.decoders(&streams, vi, ai)?;
        let counters = &self.shared.counters;
        // Packets go to a decoding thread of their own, so that a slow decode (a loaded
        // machine) never holds up reading the feed and its arrival times stay the network's.
        let (ptx, prx) = bounded::<ff::Packet>(PACKET_QUEUE);
        thread::scope(|sc| {
            let decoder = thread::Builder::new()
                .name(format!("live-dec-{}", self.name))
                .spawn_scoped(sc, || self.decode(&mut dec, prx.iter(), offset_s))
                .map_err(AvError::Thread)?;
            let mut bad = 0u32;
            let read: Result<(), AvError> = loop {
                if self.cancel.load(Ordering::Relaxed) {
                    break Ok(());
                }
                let mut packet = ff::Packet::empty();
                match super::read_packet(ictx, &mut packet) {
                    Ok(()) => bad = 0,
                    Err(ff::Error::Eof) => break Ok(()),
                    Err(ff::Error::InvalidData) if bad < 100 => {
                        bad += 1;
                        counters.decode_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(ff::Error::Exit) if self.cancel.load(Ordering::Relaxed) => break Ok(()),
                    Err(e) => {
                        break Err(AvError::Libav {
                            path: path.clone(),
                            what: "read".into(),
                            source: e,
                        })
                    }
                }
                counters.packets.fetch_add(1, Ordering::Relaxed);
                self.stamp(&counters.last_packet_ms);
                let si = packet.stream();
                if Some(si) != vi && Some(si) != ai {
                    continue;
                }
                let sent = if self.looped {
                    // A file is read only as fast as it is shown.
                    ptx.send(packet).map_err(|_| ())
                } else {
                    match ptx.try_send(packet) {
                        Ok(()) => Ok(()),
                        Err(crossbeam_channel::TrySendError::Full(_)) => {
                            // The decoder is far behind: this packet is lost to it, the feed
                            // is not.
                            counters.decode_errors.fetch_add(1, Ordering::Relaxed);
                            Ok(())
                        }
                        Err(crossbeam_channel::TrySendError::Disconnected(_)) => Err(()),
                    }
                };
                if sent.is_err() {
                    // The decoder stopped: its result says why.
                    break Ok(());
                }
            };
            drop(ptx);
            let end = decoder.join().unwrap_or_else(|_| {
                Err(AvError::Invalid {
                    path: path.clone(),
                    what: "the decoding thread panicked".into(),
                })
            });
            read.and(end)
        })
    }

    fn queue_video(&self, f: (f64, ff::frame::Video)) {
        loop {
            let mut b = lock(&self.shared.buffer);
            if b.video.len() < MAX_DEPTH {
                b.video.push_back(f);
                return;
            }
            if !self.looped {
                // A live input never waits: the oldest picture goes.
                b.video.pop_front();
                if b.paced {
                    self.shared
                        .counters
                        .frames_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
                b.video.push_back(f);
                return;
            }
            drop(b);
            if self.cancel.load(Ordering::Relaxed) {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The decoders of one opening of an input.
struct Decoders {
    vi: Option<usize>,
    ai: Option<usize>,
    vdec: Option<ff::decoder::Video>,
    adec: Option<ff::decoder::Audio>,
    vtb: ff::Rational,
    atb: ff::Rational,
}

/// Filter graphs bringing one input's pictures and samples to the house format.
struct Conform {
    house: House,
    vtb: ff::Rational,
    atb: ff::Rational,
    offset_s: f64,
    vgraph: Option<(ff::filter::Graph, String)>,
    agraph: Option<(ff::filter::Graph, String)>,
    next_video_s: Option<f64>,
    /// Where this pass of the input has reached (seconds, offset included).
    end_s: f64,
    /// An interlaced picture came: every picture from then on is deinterlaced field by field
    /// (one flagged progressive passes as it is), so that no scaling mixes two instants and a
    /// field-rate house keeps each field's motion.
    interlaced: bool,
    /// A playout channel's house scan (`Some(true)`: interlaced); `None` for the live engine.
    scan: Option<bool>,
}

impl Conform {
    fn new(house: House, vtb: ff::Rational, atb: ff::Rational, offset_s: f64) -> Conform {
        Conform {
            house,
            vtb,
            atb,
            offset_s,
            vgraph: None,
            agraph: None,
            next_video_s: None,
            end_s: offset_s,
            interlaced: false,
            scan: None,
        }
    }

    fn video(
        &mut self,
        f: &mut ff::frame::Video,
    ) -> Result<Vec<(f64, ff::frame::Video)>, graph::GraphError> {
        let tb = f64::from(self.vtb);
        let ts = f.timestamp();
        let pts_s = ts.map(|t| t as f64 * tb);
        // A jump in the feed's clock (a restarted sender): fps would fill or eat the gap.
        let jumped = match (pts_s, self.next_video_s) {
            (Some(p), Some(n)) => (p - n).abs() > JUMP_S,
            _ => false,
        };
        f.set_pts(ts);
        let args = graph::video_source_args(f, self.vtb);
        let first_interlaced = f.is_interlaced() && !self.interlaced;
        if first_interlaced || jumped || self.vgraph.as_ref().is_some_and(|(_, a)| *a != args) {
            self.interlaced |= first_interlaced;
            self.vgraph = None;
        }
        if self.vgraph.is_none() {
            let h = self.house;
            let (deint, interl) = match self.scan {
                Some(false) if f.is_interlaced() => ("bwdif=mode=send_frame,", ""),
                Some(true) => ("", ":interl=1"),
                None if self.interlaced => {
                    ("bwdif=mode=send_field:parity=auto:deint=interlaced,", "")
                }
                _ => ("", ""),
            };
            let chain = format!(
                "[in]{deint}fps={}/{},scale={}:{}{interl},setsar=1,format=yuv420p[out]",
                h.rate.0, h.rate.1, h.width, h.height
            );
            let src = Source::new("in", args.clone(), false);
            let g = graph::build(
                std::slice::from_ref(&src),
                &[Sink {
                    name: "out".into(),
                    audio: false,
                }],
                &chain,
            )?;
            self.vgraph = Some((g, args));
        }
        if let Some(p) = pts_s {
            self.next_video_s = Some(p + self.house.frame_s());
        }
        let (g, _) = self.vgraph.as_mut().expect("built above");
        let refused = |what: &str| {
            let what = what.to_string();
            move |source| graph::GraphError::Libav { what, source }
        };
        g.get("in")
            .ok_or(graph::GraphError::MissingFilter("buffer source"))?
            .source()
            .add(f)
            .map_err(refused("video conform input"))?;
        let mut out = Vec::new();
        let mut sink = g
            .get("out")
            .ok_or(graph::GraphError::MissingFilter("buffer sink"))?;
        let mut sink = sink.sink();
        let stb = f64::from(sink.time_base());
        loop {
            let mut o = ff::frame::Video::empty();
            if sink.frame(&mut o).is_err() {
                break;
            }
            let t = o.pts().map_or(0.0, |p| p as f64 * stb) + self.offset_s;
            self.end_s = self.end_s.max(t + self.house.frame_s());
            out.push((t, o));
        }
        Ok(out)
    }

    #[allow(clippy::type_complexity)]
    fn audio(
        &mut self,
        f: &mut ff::frame::Audio,
    ) -> Result<Vec<(f64, Vec<Vec<f32>>)>, graph::GraphError> {
        graph::fix_audio_layout(f);
        let rate = f.rate().max(1);
        let tb = f64::from(self.atb);
        let pts = f
            .timestamp()
            .map(|t| (t as f64 * tb * f64::from(rate)).round() as i64);
        f.set_pts(pts);
        let args = graph::audio_source_args(f);
        if self.agraph.as_ref().is_some_and(|(_, a)| *a != args) {
            self.agraph = None;
        }
        if self.agraph.is_none() {
            let h = self.house;
            let chain = format!(
                "[in]aresample={},aformat=sample_fmts=fltp:channel_layouts={}[out]",
                h.sample_rate,
                h.layout()
            );
            let src = Source::new("in", args.clone(), true);
            let g = graph::build(
                std::slice::from_ref(&src),
                &[Sink {
                    name: "out".into(),
                    audio: true,
                }],
                &chain,
            )?;
            self.agraph = Some((g, args));
        }
        let (g, _) = self.agraph.as_mut().expect("built above");
        g.get("in")
            .ok_or(graph::GraphError::MissingFilter("buffer source"))?
            .source()
            .add(f)
            .map_err(|source| graph::GraphError::Libav {
                what: "audio conform input".into(),
                source,
            })?;
        let mut out = Vec::new();
        let mut sink = g
            .get("out")
            .ok_or(graph::GraphError::MissingFilter("buffer sink"))?;
        let mut sink = sink.sink();
        let stb = f64::from(sink.time_base());
        loop {
            let mut o = ff::frame::Audio::empty();
            if sink.frame(&mut o).is_err() {
                break;
            }
            let t = o.pts().map_or(0.0, |p| p as f64 * stb) + self.offset_s;
            out.push((t, planes_f32(&o, self.house.channels as usize)));
        }
        Ok(out)
    }
}

/// The samples of a planar float frame, one vector per channel.
fn planes_f32(f: &ff::frame::Audio, channels: usize) -> Vec<Vec<f32>> {
    let n = f.samples();
    // SAFETY: the frame is planar f32 (the conform graph ends in aformat=fltp) with `channels`
    // planes of at least `n` samples each, alive for the duration of the copy.
    unsafe {
        let p = &*f.as_ptr();
        (0..channels.min(p.ch_layout.nb_channels.max(0) as usize))
            .map(|c| std::slice::from_raw_parts(*p.extended_data.add(c) as *const f32, n).to_vec())
            .collect()
    }
}

/// `n` samples of silence in every plane.
fn silence(n: usize, planes: &mut [Vec<f32>]) -> usize {
    for p in planes.iter_mut() {
        p.clear();
        p.resize(n, 0.0);
    }
    n
}

/// A house-format audio frame holding these planes.
fn audio_frame(house: &House, planes: &[Vec<f32>], pts: i64) -> Option<ff::frame::Audio> {
    let n = planes.first().map_or(0, Vec::len);
    let mut f = ff::frame::Audio::empty();
    // SAFETY: the frame is new and ours; we set format, rate, a native default layout (owning
    // no memory) and the sample count, then let libav allocate its buffers, which we fill within
    // their size (`n` f32 samples per plane).
    unsafe {
        let p = &mut *f.as_mut_ptr();
        p.format = ffi::AVSampleFormat::AV_SAMPLE_FMT_FLTP as i32;
        p.sample_rate = house.sample_rate as i32;
        p.nb_samples = n as i32;
        ffi::av_channel_layout_default(&mut p.ch_layout, house.channels as i32);
        #[allow(deprecated)]
        {
            p.channel_layout = p.ch_layout.u.mask;
            p.channels = p.ch_layout.nb_channels;
        }
        if ffi::av_frame_get_buffer(p, 0) < 0 {
            return None;
        }
        for (c, plane) in planes.iter().enumerate().take(house.channels as usize) {
            let dst = *p.extended_data.add(c) as *mut f32;
            std::ptr::copy_nonoverlapping(plane.as_ptr(), dst, n.min(plane.len()));
        }
        p.pts = pts;
    }
    Some(f)
}

/// Colour bars with the ident and a frame counter, and a 1 kHz tone.
pub struct GeneratedSlate {
    video: ff::filter::Graph,
    audio: ff::filter::Graph,
    fifo: AudioFifo,
}

const DEJAVU: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";

impl GeneratedSlate {
    pub fn new(house: &House, ident: &str) -> Result<GeneratedSlate, graph::GraphError> {
        // Only characters with no meaning to the filter graph or drawtext reach the text.
        let ident: String = ident
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || " -_.".contains(c) {
                    c
                } else {
                    ' '
                }
            })
            .take(48)
            .collect();
        let mut chain = format!(
            "smptehdbars=size={}x{}:rate={}/{}",
            house.width, house.height, house.rate.0, house.rate.1
        );
        if std::path::Path::new(DEJAVU).exists() {
            chain.push_str(&format!(
                ",drawtext=fontfile={DEJAVU}:text='{ident}':fontsize=h/10:fontcolor=white:box=1:boxcolor=black@0.7:boxborderw=8:x=(w-tw)/2:y=h/6,drawtext=fontfile={DEJAVU}:text='%{{n}}':fontsize=h/16:fontcolor=white:box=1:boxcolor=black@0.7:x=(w-tw)/2:y=h/6+h/7"
            ));
        }
        chain.push_str(",format=yuv420p[out]");
        let video = graph::build(
            &[],
            &[Sink {
                name: "out".into(),
                audio: false,
            }],
            &chain,
        )?;
        let audio = graph::build(
            &[],
            &[Sink {
                name: "out".into(),
                audio: true,
            }],
            &format!(
                "sine=frequency=1000:sample_rate={},volume=0.8,aformat=sample_fmts=fltp:channel_layouts={}[out]",
                house.sample_rate,
                house.layout()
            ),
        )?;
        Ok(GeneratedSlate {
            video,
            audio,
            fifo: AudioFifo::new(house.sample_rate, house.channels),
        })
    }

    /// The next picture, and `n_samples` of tone into `planes` (one per house channel).
    pub fn next(&mut self, n_samples: usize, planes: &mut [Vec<f32>]) -> Option<ff::frame::Video> {
        let mut v = ff::frame::Video::empty();
        self.video.get("out")?.sink().frame(&mut v).ok()?;
        while self.fifo.len() < n_samples {
            let mut a = ff::frame::Audio::empty();
            self.audio.get("out")?.sink().frame(&mut a).ok()?;
            let p = planes_f32(&a, self.fifo.chans.len());
            let refs: Vec<&[f32]> = p.iter().map(Vec::as_slice).collect();
            let end = self.fifo.end_s();
            self.fifo.push(end, &refs);
        }
        self.fifo.take(None, n_samples, planes);
        Some(v)
    }
}

/// One output's threads and the channels into them.
struct OutputSet {
    name: String,
    video: Option<Sender<VMsg>>,
    audio: Option<Sender<AMsg>>,
    handles: Vec<thread::JoinHandle<Result<(), StageError>>>,
    failed: bool,
}

/// The encoding side of a live pipeline: each output's encoders and muxer on their own threads
/// (the engine's file stages), fed house-format pictures and samples stamped by count. Also what
/// a channel engine that makes its own frames (playout) feeds.
pub struct LiveOutputs {
    house: House,
    sets: Vec<OutputSet>,
    /// Output frames sent so far.
    frames: u64,
}

impl LiveOutputs {
    /// Starts the outputs' threads; `cancel` stops them at once (their files unfinished),
    /// [`LiveOutputs::finish`] ends them properly.
    pub fn start(
        house: House,
        outputs: &[OutputSpec],
        cancel: &Arc<AtomicBool>,
    ) -> Result<LiveOutputs, AvError> {
        let input = engine::StageInput {
            vtb: ff::Rational::new(house.rate.1 as i32, house.rate.0 as i32),
            vrate: (house.rate.0 as i32, house.rate.1 as i32),
            audio_streams: 1,
            duration_s: None,
        };
        let devices = engine::open_devices(outputs)?;
        let mut sets = Vec::new();
        for o in outputs {
            // Live files (HLS windows) are written in place.
            let part = o.sink.path().map(|p| p.to_path_buf());
            // Each output fails alone: `send` sees its channels close.
            let failed = Arc::new(AtomicBool::new(false));
            let st = engine::OutputStages::spawn(o, part, &input, &devices, cancel, &failed)?;
            sets.push(OutputSet {
                name: o.name.clone(),
                video: st.video,
                audio: st.audio,
                handles: st.handles,
                failed: false,
            });
        }
        Ok(LiveOutputs {
            house,
            sets,
            frames: 0,
        })
    }

    /// Sends the next output frame: a house-format picture and its samples (one vector per
    /// channel, as many as [`House::samples_before`] gives this frame). Stamps both by count.
    /// Returns `false` when every output has stopped (each one's reason is in `finish`).
    pub fn send(&mut self, picture: &ff::frame::Video, planes: &[Vec<f32>]) -> bool {
        let n = self.frames;
        let Some(mut picture) = super::share(picture).map(ff::frame::Video::from) else {
            return self.sets.iter().any(|o| !o.failed);
        };
        picture.set_pts(Some(n as i64));
        // SAFETY: a plain field of a frame we own; the output's end of stream is placed one
        // frame after the last picture from it, so it must be one frame in the output's units
        // (a decoded picture carries its duration in its stream's time base).
        unsafe { (*picture.as_mut_ptr()).pkt_duration = 1 };
        let audio = audio_frame(&self.house, planes, self.house.samples_before(n) as i64);
        for o in self.sets.iter_mut().filter(|o| !o.failed) {
            let mut ok = true;
            if let Some(tx) = &o.video {
                ok &= super::share(&picture)
                    .is_some_and(|f| tx.send(VMsg::Frame(ff::frame::Video::from(f))).is_ok());
            }
            if let (Some(tx), Some(a)) = (&o.audio, &audio) {
                ok &= super::share(a)
                    .is_some_and(|f| tx.send(AMsg::Frame(0, ff::frame::Audio::from(f))).is_ok());
            }
            if !ok {
                // The output's stage stopped: `finish` says why.
                o.failed = true;
            }
        }
        self.frames += 1;
        self.sets.iter().any(|o| !o.failed)
    }

    /// Output frames sent so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Ends every output (encoders flushed, muxers' trailers written); returns those that
    /// failed on the way, with why.
    pub fn finish(self) -> Vec<(String, StageError)> {
        let mut failed = Vec::new();
        for o in self.sets {
            if let Some(tx) = &o.video {
                let _ = tx.send(VMsg::Eof);
            }
            if let Some(tx) = &o.audio {
                let _ = tx.send(AMsg::Eof);
            }
            drop(o.video);
            drop(o.audio);
            let mut cause: Option<StageError> = None;
            for hnd in o.handles {
                if let Err(e) = hnd.join().unwrap_or(Err(StageError::Panicked)) {
                    // Keep the cause, not its echo in the neighbouring stages.
                    let echo = |c: &StageError| {
                        matches!(
                            c,
                            StageError::MuxerStopped
                                | StageError::NeverFinished
                                | StageError::Cancelled
                        )
                    };
                    if cause.as_ref().is_none_or(echo) {
                        cause = Some(e);
                    }
                }
            }
            if let Some(e) = cause {
                failed.push((o.name, e));
            }
        }
        failed
    }
}

/// Runs a live pipeline until `cancel` is set; `on_event` hears of every switch. The outputs are
/// then finished properly (encoders flushed, muxers' trailers written).
pub fn run(
    spec: &LiveSpec,
    mut on_event: impl FnMut(SwitchEvent) + Send,
    progress: Arc<LiveProgress>,
    cancel: Arc<AtomicBool>,
) -> Result<LiveReport, AvError> {
    super::init();
    check_spec(spec)?;
    let h = spec.house;
    let epoch = Instant::now();
    // Inputs' threads stop with this; the outputs' own stop only on a failure (`stage_cancel`),
    // and are otherwise finished by an end of stream.
    let inputs_stop = Arc::new(AtomicBool::new(false));
    let stage_cancel = Arc::new(AtomicBool::new(false));
    let sources = sources_of(spec);
    let mut openers = Vec::new();
    for (_, s, _) in &sources {
        openers.push(Opener::of(s)?);
    }
    let mut generated = match &spec.slate {
        Slate::Generated { ident } => {
            Some(
                GeneratedSlate::new(&h, ident).map_err(|e| AvError::Invalid {
                    path: PathBuf::from("slate"),
                    what: e.to_string(),
                })?,
            )
        }
        Slate::File(_) => None,
    };
    let mut outputs = LiveOutputs::start(h, &spec.outputs, &stage_cancel)?;
    let (shared, input_handles) = start_inputs(sources, openers, h, epoch, &inputs_stop)?;
    *lock(&progress.inputs) = shared.iter().map(|s| s.counters.clone()).collect();
    let mut names: Vec<String> = spec.inputs.iter().map(|i| i.name.clone()).collect();
    names.push("slate".into());
    let mut sw = Switcher {
        spec,
        shared: &shared,
        names: &names,
        epoch,
        healthy_since: vec![None; spec.inputs.len()],
        on_air: None,
        last_picture: None,
        taken_pts: None,
        manual: &progress.manual,
        manual_seen: progress.manual.generation(),
    };
    sw.wait_for_inputs(&cancel);
    let clocked = sw.clock(
        &mut outputs,
        generated.as_mut(),
        &mut on_event,
        &progress,
        &cancel,
    );
    inputs_stop.store(true, Ordering::SeqCst);
    let mut failed_outputs = outputs.finish();
    for hnd in input_handles {
        let _ = hnd.join();
    }
    let frames_out = clocked?;
    if failed_outputs.len() == spec.outputs.len() && !failed_outputs.is_empty() {
        let (output, source) = failed_outputs.swap_remove(0);
        return Err(AvError::Output { output, source });
    }
    Ok(LiveReport {
        frames_out,
        failed_outputs,
    })
}

/// Refuses what cannot run: an unusable house format or failover, no output.
fn check_spec(spec: &LiveSpec) -> Result<(), AvError> {
    let invalid = |what: String| AvError::Invalid {
        path: PathBuf::from("live"),
        what,
    };
    let h = spec.house;
    if h.width == 0 || h.height == 0 || h.rate.0 == 0 || h.rate.1 == 0 || h.sample_rate == 0 {
        return Err(invalid(format!("house format {h:?} is not usable")));
    }
    let f = spec.failover;
    if f.loss_ms == 0 || !(f.return_after_s.is_finite() && f.return_after_s >= 0.0) {
        return Err(invalid(format!(
            "failover: loss_ms must be above 0 and return_after_s a number of seconds ≥ 0 (got {} ms, {} s)",
            f.loss_ms, f.return_after_s
        )));
    }
    if spec.outputs.is_empty() {
        return Err(invalid("a live pipeline needs at least one output".into()));
    }
    Ok(())
}

/// What the live pipeline reads, by name: its inputs in order of preference, then the slate
/// when it is a file (`true`: read in a loop).
fn sources_of(spec: &LiveSpec) -> Vec<(String, InputSource, bool)> {
    let mut sources: Vec<(String, InputSource, bool)> = spec
        .inputs
        .iter()
        .map(|i| (i.name.clone(), i.source.clone(), false))
        .collect();
    if let Slate::File(p) = &spec.slate {
        sources.push(("slate".into(), InputSource::File(p.clone()), true));
    }
    sources
}

/// What each input's thread fills, and the threads.
type InputThreads = (Vec<Arc<Shared>>, Vec<thread::JoinHandle<()>>);

/// A thread for each source, reading and conforming it into what it shares with the switcher.
fn start_inputs(
    sources: Vec<(String, InputSource, bool)>,
    openers: Vec<Opener>,
    house: House,
    epoch: Instant,
    stop: &Arc<AtomicBool>,
) -> Result<InputThreads, AvError> {
    let mut shared = Vec::new();
    let mut handles = Vec::new();
    for ((name, _, looped), opener) in sources.into_iter().zip(openers) {
        let s = Arc::new(Shared {
            buffer: Mutex::new(Buffer {
                video: VecDeque::new(),
                audio: AudioFifo::new(house.sample_rate, house.channels),
                paced: false,
            }),
            counters: Arc::new(InputCounters::default()),
        });
        let w = InputWorker {
            name: name.clone(),
            opener,
            house,
            shared: s.clone(),
            epoch,
            cancel: stop.clone(),
            looped,
            scan: None,
        };
        handles.push(
            thread::Builder::new()
                .name(format!("live-in-{name}"))
                .spawn(move || w.run())
                .map_err(AvError::Thread)?,
        );
        shared.push(s);
    }
    Ok((shared, handles))
}

impl Switcher<'_> {
    /// Waits for an input (or the start wait to pass) before the clock starts; once one is
    /// healthy, gives the better ones (the primary, whose demuxer may be slower to open) a
    /// moment.
    fn wait_for_inputs(&mut self, cancel: &AtomicBool) {
        let f = self.spec.failover;
        let wait_until = self.epoch
            + Duration::from_secs_f64(if f.startup_wait_s.is_finite() {
                f.startup_wait_s.clamp(0.0, 3600.0)
            } else {
                0.0
            });
        let mut first_healthy: Option<Instant> = None;
        while Instant::now() < wait_until && !cancel.load(Ordering::Relaxed) {
            self.update_health();
            match self.healthy_since.iter().position(Option::is_some) {
                Some(0) => break,
                Some(_) => {
                    let t = *first_healthy.get_or_insert_with(Instant::now);
                    if t.elapsed() >= START_GRACE {
                        break;
                    }
                }
                None => {}
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The output clock: from now, a frame every frame period to the outputs, from the source
    /// the switcher decides on, until `cancel` or until every output has stopped. Returns the
    /// frames sent.
    fn clock(
        &mut self,
        outputs: &mut LiveOutputs,
        mut generated: Option<&mut GeneratedSlate>,
        on_event: &mut impl FnMut(SwitchEvent),
        progress: &LiveProgress,
        cancel: &AtomicBool,
    ) -> Result<u64, AvError> {
        let h = self.spec.house;
        let frame = Duration::from_secs_f64(h.frame_s());
        let start = Instant::now();
        let mut n: u64 = 0;
        let mut planes: Vec<Vec<f32>> = vec![Vec::new(); h.channels as usize];
        while !cancel.load(Ordering::Relaxed) {
            let due = start + frame.mul_f64(n as f64);
            let now = Instant::now();
            if due > now {
                thread::sleep((due - now).min(Duration::from_millis(50)));
                continue;
            }
            if now - due > frame {
                progress.late_frames.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(ev) = self.decide(n) {
                announce(&ev, progress);
                on_event(ev);
            }
            let n_samples = (h.samples_before(n + 1) - h.samples_before(n)) as usize;
            let picture =
                self.next_frame(n_samples, &mut planes, generated.as_deref_mut(), progress);
            if let Some(p) = self.taken_pts.take() {
                *lock(&progress.last_input_frame) = Some((n, p));
            }
            let Some(picture) = picture else {
                return Err(AvError::Invalid {
                    path: PathBuf::from("slate"),
                    what: "the slate made no picture".into(),
                });
            };
            let alive = outputs.send(&picture, &planes);
            progress.frames_out.fetch_add(1, Ordering::Relaxed);
            n += 1;
            if !alive {
                break;
            }
        }
        Ok(n)
    }
}

/// A switch, counted and logged.
fn announce(ev: &SwitchEvent, progress: &LiveProgress) {
    progress.switches.fetch_add(1, Ordering::Relaxed);
    progress.on_air.store(
        match ev.to {
            OnAir::Input(i) => i as u64,
            OnAir::Slate => u64::MAX,
        },
        Ordering::Relaxed,
    );
    tracing::info!(from = ?ev.from_name, to = %ev.to_name, reason = %ev.reason, frame = ev.frame, "live switch");
}

/// Chooses the source of each output frame.
struct Switcher<'a> {
    spec: &'a LiveSpec,
    shared: &'a [Arc<Shared>],
    names: &'a [String],
    epoch: Instant,
    healthy_since: Vec<Option<Instant>>,
    on_air: Option<OnAir>,
    last_picture: Option<ff::frame::Video>,
    /// The input time of the picture `next_frame` took fresh from an input.
    taken_pts: Option<f64>,
    manual: &'a ManualSwitch,
    /// The operator's last choice acted on.
    manual_seen: u64,
}

/// Why an input is not healthy now, if it is not.
enum Sick {
    NoPacket(u64),
    NoVideo(u64),
    Ended,
}

impl Switcher<'_> {
    fn sickness(&self, i: usize) -> Option<Sick> {
        let c = &self.shared[i].counters;
        if c.ended.load(Ordering::Relaxed) {
            return Some(Sick::Ended);
        }
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let loss = self.spec.failover.loss_ms;
        let since = |slot: &AtomicU64| match slot.load(Ordering::Relaxed) {
            0 => now,
            t => now.saturating_sub(t),
        };
        let p = since(&c.last_packet_ms);
        if p >= loss {
            return Some(Sick::NoPacket(p));
        }
        let v = since(&c.last_video_ms);
        if v >= loss {
            return Some(Sick::NoVideo(v));
        }
        None
    }

    /// Whether the input's audio has been arriving (then its pictures wait for their samples).
    fn audio_flowing(&self, i: usize) -> bool {
        let c = &self.shared[i].counters;
        match c.last_audio_ms.load(Ordering::Relaxed) {
            0 => false,
            t => {
                let now = self.epoch.elapsed().as_millis() as u64 + 1;
                now.saturating_sub(t) < self.spec.failover.loss_ms
            }
        }
    }

    fn update_health(&mut self) {
        for i in 0..self.spec.inputs.len() {
            let healthy = self.sickness(i).is_none()
                && (self.on_air == Some(OnAir::Input(i))
                    || !lock(&self.shared[i].buffer).video.is_empty());
            match (healthy, self.healthy_since[i]) {
                (true, None) => self.healthy_since[i] = Some(Instant::now()),
                (false, Some(_)) => self.healthy_since[i] = None,
                _ => {}
            }
        }
    }

    fn name(&self, a: OnAir) -> String {
        match a {
            OnAir::Input(i) => self.names[i].clone(),
            OnAir::Slate => "slate".into(),
        }
    }

    /// The switch to make before output frame `n`, if any.
    fn decide(&mut self, n: u64) -> Option<SwitchEvent> {
        self.update_health();
        let healthy_for =
            |s: &Self, i: usize| s.healthy_since[i].map(|t| t.elapsed().as_secs_f64());
        let count = self.spec.inputs.len();
        // The inputs in order of preference: the operator's choice, then the primary first.
        let preferred = self.manual.preferred().filter(|&i| i < count);
        let order: Vec<usize> = preferred
            .into_iter()
            .chain((0..count).filter(|&i| Some(i) != preferred))
            .collect();
        let chosen = self.manual.generation();
        let operator = if chosen != self.manual_seen && self.on_air.is_some() {
            self.manual_seen = chosen;
            // The choice is taken now if that input is healthy; otherwise it only orders.
            let target = preferred.unwrap_or(0);
            (target < count
                && self.healthy_since[target].is_some()
                && self.on_air != Some(OnAir::Input(target)))
            .then_some((OnAir::Input(target), SwitchReason::Operator))
        } else {
            None
        };
        let best_healthy = order
            .iter()
            .copied()
            .find(|&i| self.healthy_since[i].is_some());
        let (to, reason) = match (operator, self.on_air) {
            (Some(choice), _) => choice,
            (None, None) => match best_healthy {
                Some(i) => (OnAir::Input(i), SwitchReason::Start),
                None => (OnAir::Slate, SwitchReason::NoInputAtStart),
            },
            (None, Some(OnAir::Input(a))) => match self.sickness(a) {
                Some(sick) => {
                    let reason = match sick {
                        Sick::NoPacket(ms) => SwitchReason::NoPacket { silent_ms: ms },
                        Sick::NoVideo(ms) => SwitchReason::NoVideo { silent_ms: ms },
                        Sick::Ended => SwitchReason::Ended,
                    };
                    let next = order
                        .iter()
                        .copied()
                        .find(|&i| i != a && self.healthy_since[i].is_some());
                    (next.map_or(OnAir::Slate, OnAir::Input), reason)
                }
                None => {
                    let rank = order.iter().position(|&i| i == a).unwrap_or(count);
                    let back = order[..rank].iter().copied().find(|&i| {
                        healthy_for(self, i).is_some_and(|s| s >= self.spec.failover.return_after_s)
                    })?;
                    let s = healthy_for(self, back).unwrap_or(0.0);
                    (OnAir::Input(back), SwitchReason::Restored { healthy_s: s })
                }
            },
            (None, Some(OnAir::Slate)) => {
                let settle = self.spec.failover.settle_s();
                let back = order
                    .iter()
                    .copied()
                    .find(|&i| healthy_for(self, i).is_some_and(|s| s >= settle))?;
                let s = healthy_for(self, back).unwrap_or(0.0);
                (OnAir::Input(back), SwitchReason::Restored { healthy_s: s })
            }
        };
        if Some(to) == self.on_air {
            return None;
        }
        let from = self.on_air;
        if let Some(OnAir::Input(i)) = from {
            lock(&self.shared[i].buffer).paced = false;
        }
        if let OnAir::Input(i) = to {
            let audio = self.audio_flowing(i);
            let fd = self.spec.house.frame_s();
            let mut b = lock(&self.shared[i].buffer);
            b.paced = true;
            // Join the input live: its newest pictures whose sound is already here, so that
            // the first ones do not wait for their audio.
            let end = b.audio.end_s();
            let covered = b
                .video
                .iter()
                .rposition(|(p, _)| !audio || p + fd <= end + AUDIO_TOLERANCE_S);
            if let Some(c) = covered {
                let keep_from = (c + 1).saturating_sub(TARGET_DEPTH);
                b.video.drain(..keep_from);
            }
        }
        self.on_air = Some(to);
        Some(SwitchEvent {
            frame: n,
            at: SystemTime::now(),
            from,
            to,
            from_name: from.map(|f| self.name(f)),
            to_name: self.name(to),
            reason,
        })
    }

    /// The picture of the next output frame and its samples (in `planes`).
    fn next_frame(
        &mut self,
        n_samples: usize,
        planes: &mut [Vec<f32>],
        generated: Option<&mut GeneratedSlate>,
        progress: &LiveProgress,
    ) -> Option<ff::frame::Video> {
        let slate_idx = self.spec.inputs.len();
        let idx = match self.on_air {
            Some(OnAir::Input(i)) => Some(i),
            _ => {
                progress.slate_frames.fetch_add(1, Ordering::Relaxed);
                match generated {
                    Some(g) => {
                        if let Some(v) = g.next(n_samples, planes) {
                            self.last_picture = super::share(&v).map(ff::frame::Video::from);
                            return Some(v);
                        }
                        None
                    }
                    None => Some(slate_idx),
                }
            }
        };
        let fd = self.spec.house.frame_s();
        let picture = match idx {
            Some(i) => {
                let audio = i < slate_idx && self.audio_flowing(i);
                let mut b = lock(&self.shared[i].buffer);
                // A picture whose sound has not arrived yet waits for it (the queue then grows
                // to the feed's audio delay once, and stays there).
                let end = b.audio.end_s();
                let waits = audio
                    && b.video.len() < MAX_DEPTH
                    && b.video
                        .front()
                        .is_some_and(|(p, _)| p + fd > end + AUDIO_TOLERANCE_S);
                let next = if waits { None } else { b.video.pop_front() };
                match next {
                    Some((pts, f)) => {
                        let gap = b.audio.take(Some(pts), n_samples, planes);
                        progress
                            .audio_gap_samples
                            .fetch_add(gap as u64, Ordering::Relaxed);
                        self.last_picture = super::share(&f).map(ff::frame::Video::from);
                        self.taken_pts = Some(pts);
                        Some(f)
                    }
                    None if waits => {
                        progress.frames_repeated.fetch_add(1, Ordering::Relaxed);
                        progress
                            .audio_gap_samples
                            .fetch_add(silence(n_samples, planes) as u64, Ordering::Relaxed);
                        None
                    }
                    None => {
                        progress.frames_repeated.fetch_add(1, Ordering::Relaxed);
                        let gap = b.audio.take(None, n_samples, planes);
                        progress
                            .audio_gap_samples
                            .fetch_add(gap as u64, Ordering::Relaxed);
                        None
                    }
                }
            }
            None => None,
        };
        match picture {
            Some(p) => Some(p),
            None => match &self.last_picture {
                Some(l) => super::share(l).map(ff::frame::Video::from),
                None => {
                    silence(n_samples, planes);
                    black(&self.spec.house)
                }
            },
        }
    }
}

/// A black house-format picture (nothing has been on air yet and the input is late).
fn black(h: &House) -> Option<ff::frame::Video> {
    let mut f = ff::frame::Video::new(ff::format::Pixel::YUV420P, h.width, h.height);
    let (w, ht) = (h.width as usize, h.height as usize);
    for (plane, value, rows) in [
        (0, 16u8, ht),
        (1, 128, ht.div_ceil(2)),
        (2, 128, ht.div_ceil(2)),
    ] {
        let stride = f.stride(plane);
        let data = f.data_mut(plane);
        let cols = if plane == 0 { w } else { w.div_ceil(2) };
        for r in 0..rows {
            if let Some(row) = data.get_mut(r * stride..r * stride + cols) {
                row.fill(value);
            }
        }
    }
    Some(f)
}

/// What [`LiveFeed::next`] gives for one output frame.
pub enum FeedTake {
    /// A fresh picture; its samples are in `planes`.
    Frame(ff::frame::Video),
    /// No fresh picture in time (repeat the last one); `planes` hold the audio there was,
    /// padded with silence.
    Late,
    /// The feed is not healthy (why): nothing was taken, `planes` are untouched.
    Lost(String),
}

/// One live input decoded and conformed to a house format on a thread of its own, read one
/// output frame at a time by a caller that keeps its own clock (a playout channel airing a live
/// event): pictures are taken live (the newest ones with their sound when it joins), and a
/// feed with no packet or no picture for `loss_ms` is reported lost until it delivers again.
/// Dropping it stops its thread.
pub struct LiveFeed {
    name: String,
    shared: Arc<Shared>,
    house: House,
    epoch: Instant,
    loss_ms: u64,
    cancel: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    joined: bool,
}

impl LiveFeed {
    /// Starts decoding `source` (a subscription to a source's demux, a stream or a file).
    pub fn start(
        name: &str,
        source: &InputSource,
        house: House,
        interlaced: bool,
        loss_ms: u64,
    ) -> Result<LiveFeed, AvError> {
        super::init();
        let opener = Opener::of(source)?;
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer {
                video: VecDeque::new(),
                audio: AudioFifo::new(house.sample_rate, house.channels),
                paced: false,
            }),
            counters: Arc::new(InputCounters::default()),
        });
        let cancel = Arc::new(AtomicBool::new(false));
        let epoch = Instant::now();
        let w = InputWorker {
            name: name.to_string(),
            opener,
            house,
            shared: shared.clone(),
            epoch,
            cancel: cancel.clone(),
            looped: false,
            scan: Some(interlaced),
        };
        let thread = thread::Builder::new()
            .name(format!(
                "feed-{}",
                name.chars().take(10).collect::<String>()
            ))
            .spawn(move || w.run())
            .map_err(AvError::Thread)?;
        Ok(LiveFeed {
            name: name.to_string(),
            shared,
            house,
            epoch,
            loss_ms: loss_ms.max(1),
            cancel,
            thread: Some(thread),
            joined: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn counters(&self) -> Arc<InputCounters> {
        self.shared.counters.clone()
    }

    /// Whether its source has stopped for good (a subscription whose source stopped): only a new
    /// feed can deliver again.
    pub fn ended(&self) -> bool {
        self.shared.counters.ended.load(Ordering::Relaxed)
    }

    /// Why the feed cannot go to air now (`None`: it can).
    pub fn lost(&self) -> Option<String> {
        let c = &self.shared.counters;
        if c.ended.load(Ordering::Relaxed) {
            return Some("the source stopped".into());
        }
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let since = |slot: &AtomicU64| match slot.load(Ordering::Relaxed) {
            0 => None,
            t => Some(now.saturating_sub(t)),
        };
        let why = |what: &str, ms: Option<u64>| match ms {
            Some(ms) => format!("no {what} for {ms} ms"),
            None => format!("no {what} yet"),
        };
        let p = since(&c.last_packet_ms);
        if p.is_none_or(|ms| ms >= self.loss_ms) {
            let mut w = why("packet", p);
            if let Some(e) = lock(&c.last_error).as_ref() {
                w.push_str(&format!(" ({e})"));
            }
            return Some(w);
        }
        let v = since(&c.last_video_ms);
        if v.is_none_or(|ms| ms >= self.loss_ms) {
            return Some(why("picture", v));
        }
        if !self.joined && lock(&self.shared.buffer).video.is_empty() {
            return Some("no picture yet".into());
        }
        None
    }

    fn audio_flowing(&self) -> bool {
        match self.shared.counters.last_audio_ms.load(Ordering::Relaxed) {
            0 => false,
            t => {
                let now = self.epoch.elapsed().as_millis() as u64 + 1;
                now.saturating_sub(t) < self.loss_ms
            }
        }
    }

    /// The next output frame's picture and its `n_samples` samples (into `planes`).
    pub fn next(&mut self, n_samples: usize, planes: &mut [Vec<f32>]) -> FeedTake {
        if let Some(why) = self.lost() {
            if self.joined {
                self.joined = false;
                lock(&self.shared.buffer).paced = false;
            }
            return FeedTake::Lost(why);
        }
        let audio = self.audio_flowing();
        let fd = self.house.frame_s();
        let mut b = lock(&self.shared.buffer);
        if !self.joined {
            // Join live: the newest pictures whose sound is already here.
            self.joined = true;
            b.paced = true;
            let end = b.audio.end_s();
            let covered = b
                .video
                .iter()
                .rposition(|(p, _)| !audio || p + fd <= end + AUDIO_TOLERANCE_S);
            if let Some(c) = covered {
                let keep_from = (c + 1).saturating_sub(TARGET_DEPTH);
                b.video.drain(..keep_from);
            }
        }
        let end = b.audio.end_s();
        let waits = audio
            && b.video.len() < MAX_DEPTH
            && b.video
                .front()
                .is_some_and(|(p, _)| p + fd > end + AUDIO_TOLERANCE_S);
        if waits {
            silence(n_samples, planes);
            return FeedTake::Late;
        }
        match b.video.pop_front() {
            Some((pts, f)) => {
                b.audio.take(Some(pts), n_samples, planes);
                FeedTake::Frame(f)
            }
            None => {
                b.audio.take(None, n_samples, planes);
                FeedTake::Late
            }
        }
    }
}

impl Drop for LiveFeed {
    fn drop(&mut self) {
        // The worker ends on its own once it sees this; a caller on a real-time clock must
        // not wait for it.
        self.cancel.store(true, Ordering::SeqCst);
        drop(self.thread.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_per_frame_add_up() {
        let h = House {
            width: 16,
            height: 16,
            rate: (30000, 1001),
            sample_rate: 48000,
            channels: 2,
        };
        // 5 frames at 29.97 carry exactly 8008 samples.
        assert_eq!(h.samples_before(5), 8008);
        let h25 = House { rate: (25, 1), ..h };
        assert_eq!(h25.samples_before(1), 1920);
        assert_eq!(h25.samples_before(25), 48000);
    }

    #[test]
    fn audio_follows_its_picture() {
        let mut f = AudioFifo::new(1000, 1);
        let ramp: Vec<f32> = (0..100).map(|i| i as f32).collect();
        f.push(1.0, &[&ramp]);
        let mut out = vec![Vec::new()];
        // A picture at 1.010 s: the first 10 samples are older and dropped.
        assert_eq!(f.take(Some(1.010), 5, &mut out), 0);
        assert_eq!(out[0], vec![10.0, 11.0, 12.0, 13.0, 14.0]);
        // Samples starting 6 ms after the picture: 6 samples of silence first.
        let mut g = AudioFifo::new(1000, 1);
        g.push(2.0, &[&ramp]);
        assert_eq!(g.take(Some(1.994), 10, &mut out), 6);
        assert_eq!(out[0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0]);
        // Samples of a later run of the feed: silence, the buffer kept.
        assert_eq!(g.take(Some(-50.0), 4, &mut out), 4);
        assert_eq!(g.len(), 96);
        // Samples long before the picture: dropped.
        assert_eq!(g.take(Some(2.050), 4, &mut out), 0);
        assert_eq!(out[0], vec![50.0, 51.0, 52.0, 53.0]);
        // Empty: silence.
        let mut e = AudioFifo::new(1000, 2);
        let mut out2 = vec![Vec::new(), Vec::new()];
        assert_eq!(e.take(None, 3, &mut out2), 3);
        assert_eq!(out2[1], vec![0.0; 3]);
    }

    /// The switcher over two inputs whose health the test sets: `alive[i]` a packet and a
    /// picture just now, else none for 10 s.
    struct Rig {
        spec: LiveSpec,
        shared: Vec<Arc<Shared>>,
        names: Vec<String>,
        manual: ManualSwitch,
    }

    impl Rig {
        fn new() -> Rig {
            let house = House {
                width: 16,
                height: 16,
                rate: (25, 1),
                sample_rate: 48000,
                channels: 2,
            };
            let input = |n: &str| LiveInput {
                name: n.into(),
                source: InputSource::File(PathBuf::from(n)),
            };
            Rig {
                spec: LiveSpec {
                    inputs: vec![input("primary"), input("backup")],
                    house,
                    slate: Slate::Generated { ident: "x".into() },
                    failover: Failover {
                        return_after_s: 0.0,
                        ..Failover::default()
                    },
                    outputs: vec![],
                },
                shared: (0..2)
                    .map(|_| {
                        Arc::new(Shared {
                            buffer: Mutex::new(Buffer {
                                video: VecDeque::new(),
                                audio: AudioFifo::new(48000, 2),
                                paced: false,
                            }),
                            counters: Arc::default(),
                        })
                    })
                    .collect(),
                names: vec!["primary".into(), "backup".into(), "slate".into()],
                manual: ManualSwitch::default(),
            }
        }

        fn switcher(&self, epoch: Instant) -> Switcher<'_> {
            Switcher {
                spec: &self.spec,
                shared: &self.shared,
                names: &self.names,
                epoch,
                healthy_since: vec![None; 2],
                on_air: None,
                last_picture: None,
                taken_pts: None,
                manual: &self.manual,
                manual_seen: self.manual.generation(),
            }
        }
    }

    fn health(sw: &Switcher<'_>, alive: [bool; 2]) {
        let now = sw.epoch.elapsed().as_millis() as u64 + 1;
        for (i, a) in alive.iter().enumerate() {
            let c = &sw.shared[i].counters;
            let t = if *a { now + 10_000 } else { 1 };
            c.last_packet_ms.store(t, Ordering::Relaxed);
            c.last_video_ms.store(t, Ordering::Relaxed);
            let mut b = lock(&sw.shared[i].buffer);
            b.video.clear();
            if *a {
                b.video.push_back((0.0, ff::frame::Video::empty()));
            }
        }
    }

    #[test]
    fn an_operators_choice_is_taken_now_and_kept_like_the_primary() {
        let rig = Rig::new();
        // Counters count from an epoch 20 s ago, so that "none for 10 s" can be said.
        let mut sw = rig.switcher(Instant::now() - Duration::from_secs(20));
        let to = |e: Option<SwitchEvent>| e.map(|e| (e.to, e.reason));
        health(&sw, [true, true]);
        assert_eq!(
            to(sw.decide(0)),
            Some((OnAir::Input(0), SwitchReason::Start))
        );
        assert_eq!(to(sw.decide(1)), None);
        // The operator takes the backup: at once, and kept while the primary is healthy.
        rig.manual.prefer(Some(1));
        assert_eq!(
            to(sw.decide(2)),
            Some((OnAir::Input(1), SwitchReason::Operator))
        );
        assert_eq!(to(sw.decide(3)), None);
        // The chosen input fails: the primary; back to the choice once it is healthy again.
        health(&sw, [true, false]);
        assert!(matches!(
            to(sw.decide(4)),
            Some((OnAir::Input(0), SwitchReason::NoPacket { .. }))
        ));
        health(&sw, [true, true]);
        assert!(matches!(
            to(sw.decide(5)),
            Some((OnAir::Input(1), SwitchReason::Restored { .. }))
        ));
        // Back to the primary by choice; a choice of an input that is not healthy waits.
        rig.manual.prefer(None);
        assert_eq!(
            to(sw.decide(6)),
            Some((OnAir::Input(0), SwitchReason::Operator))
        );
        health(&sw, [true, false]);
        rig.manual.prefer(Some(1));
        assert_eq!(to(sw.decide(7)), None);
        assert_eq!(sw.on_air, Some(OnAir::Input(0)));
    }

    #[test]
    fn a_discontinuity_restarts_the_buffer() {
        let mut f = AudioFifo::new(1000, 1);
        f.push(10.0, &[&[1.0; 50]]);
        f.push(10.05, &[&[2.0; 50]]);
        assert_eq!(f.len(), 100);
        f.push(0.0, &[&[3.0; 10]]);
        assert_eq!((f.len(), f.head_s), (10, 0.0));
    }
}
