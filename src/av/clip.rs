//! Playout media: a file read from a frame of the house rate and conformed to a channel's house
//! format (picture size, frame rate, scan, audio rate, layout and mapping, a gain), on a thread of
//! its own that runs ahead of air; numbered pictures and sample-indexed audio taken from it one
//! output frame at a time, so that a channel counts frames and samples itself and never drifts;
//! and a still (a PNG logo) loaded once and blended onto pictures.
//!
//! Owns no schedule: the playout engine says which file, from where, and when.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use super::graph::{self, AudioGraph, Sink, Source};
use super::live::House;
use super::{ff, ffi, AvError};

/// Messages a clip's reader runs ahead with (a 1080 picture is 3 MB: kept short; the consumer
/// holds pictures itself while it waits for their sound).
const AHEAD: usize = 16;
/// Pictures a consumer holds while the file's audio is late before it gives up waiting for it.
const AUDIO_WAIT_FRAMES: usize = 50;
/// Packets in a row that no decoder takes before the file is called unreadable.
const BAD_PACKETS: u32 = 200;

/// What to read and how to conform it.
#[derive(Debug, Clone)]
pub struct ClipSpec {
    pub path: PathBuf,
    pub house: House,
    /// The house is interlaced (pictures keep their fields; progressive sources are flagged).
    pub interlaced: bool,
    /// Frames of the house rate into the file (from its first picture).
    pub in_frame: u64,
    /// Gain applied to the audio, in dB (loudness to the channel's target).
    pub gain_db: f64,
}

enum Msg {
    Opened {
        audio: bool,
    },
    Video(u64, ff::frame::Video),
    /// Planar samples, the first one's index counted from the in point at the house rate.
    Audio(i64, Vec<Vec<f32>>),
    End(Result<(), AvError>),
}

/// What [`Clip::take`] gives for the next frame.
pub enum Take {
    Frame(ff::frame::Video),
    /// The reader has not delivered this frame by the deadline: the frame is skipped (the
    /// clip stays in step with the schedule); `planes` hold silence.
    Late,
    /// The file ended (`None`) or failed (why) before this frame.
    Ended(Option<AvError>),
}

/// A file being read ahead of air. Dropping it stops its reader.
pub struct Clip {
    rx: Receiver<Msg>,
    cancel: Arc<AtomicBool>,
    path: PathBuf,
    audio: Option<bool>,
    video: VecDeque<(u64, ff::frame::Video)>,
    /// Samples not yet taken, the first one's index.
    fifo: Vec<VecDeque<f32>>,
    fifo_head: i64,
    ended: Option<Option<AvError>>,
    next_frame: u64,
    taken: i64,
}

impl Drop for Clip {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

impl Clip {
    /// Starts reading `spec.path` on a thread of its own; errors come out of [`Clip::take`].
    pub fn open(spec: ClipSpec) -> Clip {
        super::init();
        let (tx, rx) = bounded(AHEAD);
        let cancel = Arc::new(AtomicBool::new(false));
        let c = cancel.clone();
        let path = spec.path.clone();
        let channels = spec.house.channels.max(1) as usize;
        let name = format!(
            "clip-{}",
            path.file_name()
                .map(|n| n.to_string_lossy().chars().take(10).collect::<String>())
                .unwrap_or_default()
        );
        let spawned = thread::Builder::new().name(name).spawn(move || {
            let r = read(&spec, &tx, &c);
            let _ = tx.send(Msg::End(r));
        });
        let mut clip = Clip {
            rx,
            cancel,
            path: path.clone(),
            audio: None,
            video: VecDeque::new(),
            fifo: (0..channels).map(|_| VecDeque::new()).collect(),
            fifo_head: 0,
            ended: None,
            next_frame: 0,
            taken: 0,
        };
        if let Err(e) = spawned {
            clip.ended = Some(Some(AvError::Thread(e)));
        }
        clip
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames taken (or skipped) so far.
    pub fn position(&self) -> u64 {
        self.next_frame
    }

    fn absorb(&mut self, m: Msg) {
        match m {
            Msg::Opened { audio } => self.audio = Some(audio),
            Msg::Video(k, f) => self.video.push_back((k, f)),
            Msg::Audio(idx, planes) => {
                let len = self.fifo[0].len() as i64;
                if len == 0 {
                    self.fifo_head = idx;
                } else if idx != self.fifo_head + len {
                    // A hole or an overlap in the file's audio: follow its timestamps.
                    let gap = idx - (self.fifo_head + len);
                    if gap > 0 {
                        for c in &mut self.fifo {
                            c.extend(std::iter::repeat_n(0.0, gap as usize));
                        }
                    } else {
                        let cut = (-gap).min(len) as usize;
                        for c in &mut self.fifo {
                            c.truncate(c.len() - cut);
                        }
                    }
                }
                for (i, c) in self.fifo.iter_mut().enumerate() {
                    let p = planes.get(i).or(planes.last());
                    match p {
                        Some(p) => c.extend(p.iter().copied()),
                        None => c.extend(std::iter::repeat_n(0.0, planes.len())),
                    }
                }
            }
            Msg::End(r) => self.ended = Some(r.err()),
        }
    }

    fn audio_end(&self) -> i64 {
        self.fifo_head + self.fifo[0].len() as i64
    }

    /// Whether frame `k` and its samples are all here.
    fn ready(&self, n: usize) -> bool {
        let k = self.next_frame;
        let has_video = self.video.iter().any(|(i, _)| *i == k);
        if !has_video {
            return false;
        }
        match self.audio {
            Some(false) => true,
            _ => {
                self.ended.is_some()
                    || self.audio_end() >= self.taken + n as i64
                    || self.video.len() > AUDIO_WAIT_FRAMES
            }
        }
    }

    /// The next frame's picture and its `n` samples (into `planes`, one per house channel),
    /// waiting for the reader until `deadline`.
    pub fn take(&mut self, n: usize, planes: &mut [Vec<f32>], deadline: Instant) -> Take {
        let k = self.next_frame;
        loop {
            while self.video.front().is_some_and(|(i, _)| *i < k) {
                self.video.pop_front();
            }
            if self.ready(n) {
                break;
            }
            if self.ended.is_some() {
                if self.video.front().is_some_and(|(i, _)| *i == k) {
                    break;
                }
                fill_silence(n, planes);
                return Take::Ended(self.ended.as_mut().and_then(Option::take));
            }
            let now = Instant::now();
            let wait = deadline.saturating_duration_since(now);
            match self.rx.recv_timeout(wait) {
                Ok(m) => self.absorb(m),
                Err(RecvTimeoutError::Timeout) => {
                    self.next_frame += 1;
                    self.samples(n, planes);
                    fill_silence(n, planes);
                    return Take::Late;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if self.ended.is_none() {
                        self.ended = Some(Some(AvError::Invalid {
                            path: self.path.clone(),
                            what: "the reader stopped".into(),
                        }));
                    }
                }
            }
        }
        let (_, f) = self.video.pop_front().expect("ready");
        self.next_frame += 1;
        self.samples(n, planes);
        Take::Frame(f)
    }

    /// Samples `taken .. taken + n` into `planes` (silence where the file has none).
    fn samples(&mut self, n: usize, planes: &mut [Vec<f32>]) {
        let from = self.taken;
        self.taken += n as i64;
        // Drop what lies before.
        let drop = (from - self.fifo_head).clamp(0, self.fifo[0].len() as i64) as usize;
        for c in &mut self.fifo {
            c.drain(..drop);
        }
        self.fifo_head += drop as i64;
        let lead = (self.fifo_head - from).clamp(0, n as i64) as usize;
        let avail = self.fifo[0].len().min(n - lead);
        for (i, p) in planes.iter_mut().enumerate() {
            p.clear();
            p.extend(std::iter::repeat_n(0.0, lead));
            if let Some(c) = self.fifo.get_mut(i) {
                p.extend(c.drain(..avail));
            }
            p.resize(n, 0.0);
        }
        if planes.len() < self.fifo.len() {
            for c in &mut self.fifo[planes.len()..] {
                c.drain(..avail.min(c.len()));
            }
        }
        self.fifo_head += avail as i64;
    }
}

fn fill_silence(n: usize, planes: &mut [Vec<f32>]) {
    for p in planes.iter_mut() {
        p.clear();
        p.resize(n, 0.0);
    }
}

fn layout(channels: u32) -> String {
    match channels {
        1 => "mono".into(),
        2 => "stereo".into(),
        6 => "5.1".into(),
        n => format!("{n}c"),
    }
}

/// The reader: open, seek, decode, conform, number.
fn read(spec: &ClipSpec, tx: &Sender<Msg>, cancel: &Arc<AtomicBool>) -> Result<(), AvError> {
    let mut ictx = super::input::open_cancellable(&spec.path, Some(cancel.clone()))?;
    let mut dec = ClipDecoders::open(&ictx, spec)?;
    if spec.in_frame > 0 {
        let target = (dec.t_in * f64::from(ffi::AV_TIME_BASE)) as i64;
        ictx.seek(target, ..target)
            .map_err(libav_err(&spec.path, "seek to the in point"))?;
    }
    let opened = Msg::Opened {
        audio: !dec.mapped.is_empty(),
    };
    if tx.send(opened).is_err() {
        return Ok(());
    }
    let mut conform = Conform::new(spec, &dec, tx);
    let mut packet = ff::Packet::empty();
    let mut bad = 0u32;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Ok(());
        }
        let eof = match super::read_packet(&mut ictx, &mut packet) {
            Ok(()) => false,
            Err(ff::Error::Eof) => true,
            Err(ff::Error::Exit) if cancel.load(Ordering::Relaxed) => return Ok(()),
            Err(e) => {
                bad += 1;
                if bad > BAD_PACKETS {
                    return Err(AvError::Libav {
                        path: spec.path.clone(),
                        what: "read".into(),
                        source: e,
                    });
                }
                continue;
            }
        };
        let p = (!eof).then_some(&packet);
        if !conform.video(&mut dec, p, &mut bad)? || !conform.audio(&mut dec, p)? {
            return Ok(());
        }
        if eof {
            return conform.finish();
        }
    }
}

fn invalid(path: &Path, what: impl Into<String>) -> AvError {
    AvError::Invalid {
        path: path.to_owned(),
        what: what.into(),
    }
}

fn libav_err(path: &Path, what: &str) -> impl FnOnce(ff::Error) -> AvError {
    let (path, what) = (path.to_owned(), what.to_string());
    move |source| AvError::Libav { path, what, source }
}

/// A clip's decoders: its video, and the audio streams mapped to the house's channels.
struct ClipDecoders {
    vi: usize,
    vtb: ff::Rational,
    video: ff::decoder::Video,
    mapped: Vec<usize>,
    audio: Vec<ff::decoder::Audio>,
    atbs: Vec<ff::Rational>,
    /// The in point, in seconds of the file's timeline.
    t_in: f64,
}

impl ClipDecoders {
    fn open(ictx: &ff::format::context::Input, spec: &ClipSpec) -> Result<Self, AvError> {
        let path = &spec.path;
        let vi = ictx
            .streams()
            .best(ff::media::Type::Video)
            .map(|s| s.index())
            .ok_or_else(|| invalid(path, "has no video stream"))?;
        let mapped = audio_mapping(ictx, spec.house.channels);
        let vst = ictx
            .stream(vi)
            .ok_or_else(|| invalid(path, "video stream gone"))?;
        let vtb = vst.time_base();
        let t_in = start_seconds(ictx, &vst) + spec.in_frame as f64 * spec.house.frame_s();
        let mut ctx = ff::codec::Context::from_parameters(vst.parameters())
            .map_err(libav_err(path, "video stream"))?;
        super::decode_threads(&mut ctx, 2);
        let video = ctx
            .decoder()
            .video()
            .map_err(libav_err(path, "video decoder"))?;
        let mut audio = Vec::new();
        let mut atbs = Vec::new();
        for &i in &mapped {
            let st = ictx
                .stream(i)
                .ok_or_else(|| invalid(path, format!("audio stream {i} gone")))?;
            atbs.push(st.time_base());
            let ctx = ff::codec::Context::from_parameters(st.parameters())
                .map_err(libav_err(path, "audio stream"))?;
            audio.push(
                ctx.decoder()
                    .audio()
                    .map_err(libav_err(path, "audio decoder"))?,
            );
        }
        Ok(ClipDecoders {
            vi,
            vtb,
            video,
            mapped,
            audio,
            atbs,
            t_in,
        })
    }
}

/// Audio mapping: the best audio stream when it carries the house's channels (or is the only
/// one); otherwise the first mono tracks, merged (XDCAM and other house files carry one channel
/// per track).
fn audio_mapping(ictx: &ff::format::context::Input, channels: u32) -> Vec<usize> {
    let audio_streams: Vec<(usize, u32)> = ictx
        .streams()
        .filter(|s| s.parameters().medium() == ff::media::Type::Audio)
        .map(|s| {
            // SAFETY: reading a plain field of the stream's codec parameters.
            let ch = unsafe { (*s.parameters().as_ptr()).ch_layout.nb_channels.max(0) } as u32;
            (s.index(), ch)
        })
        .collect();
    let Some(b) = ictx
        .streams()
        .best(ff::media::Type::Audio)
        .map(|s| s.index())
    else {
        return vec![];
    };
    let bch = audio_streams
        .iter()
        .find(|(i, _)| *i == b)
        .map_or(0, |(_, c)| *c);
    let monos: Vec<usize> = audio_streams
        .iter()
        .filter(|(_, c)| *c == 1)
        .map(|(i, _)| *i)
        .take(channels as usize)
        .collect();
    if bch >= channels || audio_streams.len() == 1 || monos.len() < 2 {
        vec![b]
    } else {
        monos
    }
}

/// Where the file's video starts, in seconds (its stream's start, else the file's, else 0).
fn start_seconds(ictx: &ff::format::context::Input, vst: &ff::format::stream::Stream) -> f64 {
    let st = vst.start_time();
    if st != ffi::AV_NOPTS_VALUE {
        return st as f64 * f64::from(vst.time_base());
    }
    // SAFETY: reading a plain field of the open demuxer's context.
    let f = unsafe { (*ictx.as_ptr()).start_time };
    if f == ffi::AV_NOPTS_VALUE {
        0.0
    } else {
        f as f64 / f64::from(ffi::AV_TIME_BASE)
    }
}

/// The audio conform: the mapped streams (monos merged) at the house's rate and layout, with
/// the clip's gain.
fn clip_audio_chain(k_streams: usize, h: House, gain: f64) -> String {
    let tail = format!(
        "aresample={sr},aformat=sample_fmts=fltp:sample_rates={sr}:channel_layouts={l},volume={gain:.3}dB[out0]",
        sr = h.sample_rate,
        l = layout(h.channels)
    );
    if k_streams <= 1 {
        return format!("[in0]{tail}");
    }
    let mut s = String::new();
    for i in 0..k_streams {
        s.push_str(&format!("[in{i}]aformat=channel_layouts=mono[m{i}];"));
    }
    for i in 0..k_streams {
        s.push_str(&format!("[m{i}]"));
    }
    s.push_str(&format!("amerge=inputs={k_streams},{tail}"));
    s
}

/// The decoded pictures and sound conformed to the house, numbered from the in point and sent
/// to the consumer. Its methods return `false` once the consumer left.
struct Conform<'a> {
    spec: &'a ClipSpec,
    tx: &'a Sender<Msg>,
    vtb: ff::Rational,
    t_in: f64,
    in_sample: i64,
    vgraph: Option<ff::filter::Graph>,
    agraph: AudioGraph,
    next_k: u64,
    vframe: ff::frame::Video,
    aframe: ff::frame::Audio,
    /// The last picture's time and the step between pictures: the input ends one step after
    /// the last one, so that the frame-rate conversion keeps the last picture.
    last_pts: Option<i64>,
    step: i64,
}

impl<'a> Conform<'a> {
    fn new(spec: &'a ClipSpec, dec: &ClipDecoders, tx: &'a Sender<Msg>) -> Self {
        let (h, gain, k) = (spec.house, spec.gain_db, dec.mapped.len());
        Conform {
            spec,
            tx,
            vtb: dec.vtb,
            t_in: dec.t_in,
            in_sample: (dec.t_in * f64::from(h.sample_rate)).round() as i64,
            vgraph: None,
            agraph: AudioGraph::new(k, &[0], move |_| clip_audio_chain(k, h, gain)),
            next_k: 0,
            vframe: ff::frame::Video::empty(),
            aframe: ff::frame::Audio::empty(),
            last_pts: None,
            step: 1,
        }
    }

    fn graph_err(&self) -> impl Fn(graph::GraphError) -> AvError + '_ {
        |e| invalid(&self.spec.path, e.to_string())
    }

    /// A video packet (`None`: the end of the file) through the decoder and the conform graph.
    fn video(
        &mut self,
        dec: &mut ClipDecoders,
        packet: Option<&ff::Packet>,
        bad: &mut u32,
    ) -> Result<bool, AvError> {
        match packet {
            None => {
                let _ = dec.video.send_eof();
            }
            Some(p) if p.stream() != dec.vi => return Ok(true),
            Some(p) => {
                if dec.video.send_packet(p).is_err() {
                    *bad += 1;
                    if *bad > BAD_PACKETS {
                        return Err(invalid(&self.spec.path, "the video cannot be decoded"));
                    }
                }
            }
        }
        while dec.video.receive_frame(&mut self.vframe).is_ok() {
            *bad = 0;
            if !self.picture()? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The picture just decoded, into the conform graph.
    fn picture(&mut self) -> Result<bool, AvError> {
        if self.vgraph.is_none() {
            let g = video_graph(&self.vframe, self.vtb, self.spec, self.t_in)
                .map_err(self.graph_err())?;
            self.vgraph = Some(g);
        }
        let ts = self.vframe.timestamp();
        if let (Some(t), Some(l)) = (ts, self.last_pts) {
            if t > l {
                self.step = t - l;
            }
        }
        if ts.is_some() {
            self.last_pts = ts;
        }
        self.vframe.set_pts(ts);
        let path = &self.spec.path;
        let g = self.vgraph.as_mut().expect("built above");
        g.get("in")
            .ok_or_else(|| invalid(path, "video graph input missing"))?
            .source()
            .add(&self.vframe)
            .map_err(libav_err(path, "video conform"))?;
        Ok(drain_video(g, &mut self.next_k, self.tx))
    }

    /// An audio packet (`None`: the end of the file) through its decoder and the audio graph.
    fn audio(
        &mut self,
        dec: &mut ClipDecoders,
        packet: Option<&ff::Packet>,
    ) -> Result<bool, AvError> {
        let idx = match packet {
            None => 0,
            Some(p) => match dec.mapped.iter().position(|&m| m == p.stream()) {
                Some(i) => i,
                None => return Ok(true),
            },
        };
        for (j, d) in dec.audio.iter_mut().enumerate() {
            match packet {
                None => {
                    let _ = d.send_eof();
                }
                Some(p) if j != idx || d.send_packet(p).is_err() => continue,
                Some(_) => {}
            }
            while d.receive_frame(&mut self.aframe).is_ok() {
                graph::fix_audio_layout(&mut self.aframe);
                let rate = self.aframe.rate().max(1);
                let tb = f64::from(dec.atbs[j]);
                let pts = self
                    .aframe
                    .timestamp()
                    .map(|t| (t as f64 * tb * f64::from(rate)).round() as i64);
                self.aframe.set_pts(pts);
                let f = std::mem::replace(&mut self.aframe, ff::frame::Audio::empty());
                let built = self.agraph.push(j, f).map_err(self.graph_err())?;
                let channels = self.spec.house.channels;
                if built && !drain_audio(&mut self.agraph, self.in_sample, channels, self.tx) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The end of the file: what the graphs still hold.
    fn finish(mut self) -> Result<(), AvError> {
        if let Some(g) = self.vgraph.as_mut() {
            if let Some(mut src) = g.get("in") {
                match self.last_pts {
                    // SAFETY: the graph's own buffer source, alive while `g` is; closing it at a
                    // time after its last frame is what av_buffersrc_close is for.
                    Some(l) => unsafe {
                        ffi::av_buffersrc_close(src.as_mut_ptr(), l + self.step, 0);
                    },
                    None => {
                        let _ = src.source().flush();
                    }
                }
            }
            drain_video(g, &mut self.next_k, self.tx);
        }
        self.agraph.flush();
        let channels = self.spec.house.channels;
        drain_audio(&mut self.agraph, self.in_sample, channels, self.tx);
        if self.next_k == 0 {
            return Err(invalid(
                &self.spec.path,
                format!(
                    "no picture at or after frame {} of the file",
                    self.spec.in_frame
                ),
            ));
        }
        Ok(())
    }
}

fn video_graph(
    first: &ff::frame::Video,
    tb: ff::Rational,
    spec: &ClipSpec,
    t_in: f64,
) -> Result<ff::filter::Graph, graph::GraphError> {
    let h = spec.house;
    let src_interlaced = first.is_interlaced();
    let same_size = first.width() == h.width && first.height() == h.height;
    let mut chain = String::from("[in]");
    if src_interlaced && !spec.interlaced {
        chain.push_str("bwdif=mode=send_frame,");
    }
    chain.push_str(&format!(
        "fps=fps={}/{}:start_time={t_in:.6}",
        h.rate.0, h.rate.1
    ));
    if !same_size {
        chain.push_str(&format!(
            ",scale={}:{}:interl={}",
            h.width,
            h.height,
            i32::from(spec.interlaced)
        ));
    }
    chain.push_str(",setsar=1,format=yuv420p[out]");
    let src = Source::new("in", graph::video_source_args(first, tb), false);
    graph::build(
        std::slice::from_ref(&src),
        &[Sink {
            name: "out".into(),
            audio: false,
        }],
        &chain,
    )
}

/// Pictures out of the conform graph, numbered from the in point; false when the consumer left.
fn drain_video(g: &mut ff::filter::Graph, next_k: &mut u64, tx: &Sender<Msg>) -> bool {
    let Some(mut sink) = g.get("out") else {
        return false;
    };
    loop {
        let mut o = ff::frame::Video::empty();
        if sink.sink().frame(&mut o).is_err() {
            return true;
        }
        if tx.send(Msg::Video(*next_k, o)).is_err() {
            return false;
        }
        *next_k += 1;
    }
}

fn drain_audio(g: &mut AudioGraph, in_sample: i64, channels: u32, tx: &Sender<Msg>) -> bool {
    let Some(mut sink) = g.output(0) else {
        return true;
    };
    loop {
        let mut o = ff::frame::Audio::empty();
        if sink.sink().frame(&mut o).is_err() {
            return true;
        }
        let idx = o.pts().unwrap_or(0) - in_sample;
        let planes = planes_f32(&o, channels as usize);
        if tx.send(Msg::Audio(idx, planes)).is_err() {
            return false;
        }
    }
}

/// Planar f32 samples of a frame (the graphs here end in `fltp`).
pub(super) fn planes_f32(f: &ff::frame::Audio, channels: usize) -> Vec<Vec<f32>> {
    let n = f.samples();
    // SAFETY: the frame is planar f32 (the graph ends in aformat=fltp) with at least `channels`
    // planes of `n` samples each (checked against its layout), alive for the copy.
    unsafe {
        let p = &*f.as_ptr();
        if p.format != ffi::AVSampleFormat::AV_SAMPLE_FMT_FLTP as i32 {
            return vec![vec![0.0; n]; channels];
        }
        (0..channels.min(p.ch_layout.nb_channels.max(0) as usize))
            .map(|c| std::slice::from_raw_parts(*p.extended_data.add(c) as *const f32, n).to_vec())
            .collect()
    }
}

/// A still picture with its alpha, in 4:4:4 planes, to blend onto 4:2:0 pictures.
#[derive(Debug, Clone)]
pub struct Still {
    pub width: u32,
    pub height: u32,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
    a: Vec<u8>,
}

/// Loads an image file (a PNG logo), scaled to fit `max_w`×`max_h` (its shape kept).
pub fn load_still(path: &Path, max_w: u32, max_h: u32) -> Result<Still, AvError> {
    super::init();
    let mut ictx = super::input::open(path)?;
    let invalid = |what: &str| AvError::Invalid {
        path: path.to_owned(),
        what: what.into(),
    };
    let st = ictx
        .streams()
        .best(ff::media::Type::Video)
        .ok_or_else(|| invalid("is not a picture"))?;
    let si = st.index();
    let tb = st.time_base();
    let libav = |what: &str| {
        let what = what.to_string();
        let path = path.to_owned();
        move |source| AvError::Libav { path, what, source }
    };
    let mut dec = ff::codec::Context::from_parameters(st.parameters())
        .map_err(libav("picture stream"))?
        .decoder()
        .video()
        .map_err(libav("picture decoder"))?;
    let mut frame = ff::frame::Video::empty();
    let mut got = false;
    let mut packet = ff::Packet::empty();
    while !got {
        match super::read_packet(&mut ictx, &mut packet) {
            Ok(()) if packet.stream() == si => {
                let _ = dec.send_packet(&packet);
            }
            Ok(()) => continue,
            Err(_) => {
                let _ = dec.send_eof();
            }
        }
        got = dec.receive_frame(&mut frame).is_ok();
        if !got && packet.size() == 0 {
            break;
        }
    }
    if !got {
        return Err(invalid("no picture could be decoded"));
    }
    let (w, h) = (frame.width().max(1), frame.height().max(1));
    let scale = (f64::from(max_w) / f64::from(w))
        .min(f64::from(max_h) / f64::from(h))
        .min(1.0);
    let tw = ((f64::from(w) * scale) as u32).max(2) & !1;
    let th = ((f64::from(h) * scale) as u32).max(2) & !1;
    let src = Source::new("in", graph::video_source_args(&frame, tb), false);
    let mut g = graph::build(
        std::slice::from_ref(&src),
        &[Sink {
            name: "out".into(),
            audio: false,
        }],
        &format!("[in]scale={tw}:{th},format=yuva444p[out]"),
    )
    .map_err(|e| invalid(&e.to_string()))?;
    g.get("in")
        .ok_or_else(|| invalid("graph input missing"))?
        .source()
        .add(&frame)
        .map_err(libav("picture into the scaler"))?;
    let mut o = ff::frame::Video::empty();
    g.get("out")
        .ok_or_else(|| invalid("graph output missing"))?
        .sink()
        .frame(&mut o)
        .map_err(libav("scaled picture"))?;
    let plane = |i: usize| -> Vec<u8> {
        let stride = o.stride(i);
        let d = o.data(i);
        (0..th as usize)
            .flat_map(|r| d[r * stride..r * stride + tw as usize].iter().copied())
            .collect()
    };
    Ok(Still {
        width: tw,
        height: th,
        y: plane(0),
        u: plane(1),
        v: plane(2),
        a: plane(3),
    })
}

/// Blends `still` onto a 4:2:0 picture with its top-left corner at (`x`, `y`); a picture shared
/// with others (an encoder holds it) is copied first.
pub fn blend(picture: &mut ff::frame::Video, still: &Still, x: u32, y: u32) {
    // SAFETY: av_frame_make_writable gives this frame buffers of its own (copying the pixels
    // when they are shared) or fails, leaving it untouched.
    if unsafe { ffi::av_frame_make_writable(picture.as_mut_ptr()) } < 0 {
        return;
    }
    if picture.format() != ff::format::Pixel::YUV420P {
        return;
    }
    let (pw, ph) = (picture.width() as usize, picture.height() as usize);
    let (x, y) = (x as usize & !1, y as usize & !1);
    let (sw, sh) = (still.width as usize, still.height as usize);
    let mix = |d: &mut u8, s: u8, a: u8| {
        let a = u32::from(a);
        *d = ((u32::from(s) * a + u32::from(*d) * (255 - a) + 127) / 255) as u8;
    };
    let stride = picture.stride(0);
    let data = picture.data_mut(0);
    for r in 0..sh.min(ph.saturating_sub(y)) {
        for c in 0..sw.min(pw.saturating_sub(x)) {
            let a = still.a[r * sw + c];
            if a > 0 {
                mix(&mut data[(y + r) * stride + x + c], still.y[r * sw + c], a);
            }
        }
    }
    for (plane, src) in [(1, &still.u), (2, &still.v)] {
        let stride = picture.stride(plane);
        let data = picture.data_mut(plane);
        for r in 0..(sh / 2).min((ph / 2).saturating_sub(y / 2)) {
            for c in 0..(sw / 2).min((pw / 2).saturating_sub(x / 2)) {
                let si = (2 * r) * sw + 2 * c;
                let a = still.a[si];
                if a > 0 {
                    mix(&mut data[(y / 2 + r) * stride + x / 2 + c], src[si], a);
                }
            }
        }
    }
}

const OVERLAY_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";

/// The house timecode and the UTC clock burnt into a channel's pictures (drawtext): the
/// timecode starts at `timecode` and counts the pictures that pass (drop-frame when written
/// with `;`), the clock is the wall time of each picture (`clock_s`: the first one's, Unix
/// seconds).
pub struct Burn {
    rate: (u32, u32),
    chain: String,
    graph: Option<ff::filter::Graph>,
    next_pts: i64,
    failed: bool,
}

impl Burn {
    pub fn new(house: &House, timecode: &str, clock_s: f64) -> Burn {
        let size = (house.height / 14).max(10);
        let font = if Path::new(OVERLAY_FONT).exists() {
            format!("fontfile={OVERLAY_FONT}:")
        } else {
            String::new()
        };
        // Only digits and separators reach the filter description.
        let tc: String = timecode
            .chars()
            .filter(|c| c.is_ascii_digit() || matches!(c, ':' | ';'))
            .map(|c| match c {
                ':' => "\\:".to_string(),
                c => c.to_string(),
            })
            .collect();
        let (num, den) = house.rate;
        let style =
            format!("fontsize={size}:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=4");
        let chain = format!(
            "[in]drawtext={font}timecode='{tc}':timecode_rate={num}/{den}:{style}:x=w/20:y=h-2*{size}-h/20,\
             drawtext={font}text='%{{pts\\:gmtime\\:{clock_s:.3}\\:%H\\\\\\:%M\\\\\\:%S}}':{style}:x=w/20:y=h-{size}-h/30,\
             format=yuv420p[out]"
        );
        Burn {
            rate: house.rate,
            chain,
            graph: None,
            next_pts: 0,
            failed: false,
        }
    }

    /// The picture with the timecode and clock drawn on; `None` when the overlay cannot be
    /// drawn (the picture then goes out as it is).
    pub fn apply(&mut self, picture: &ff::frame::Video) -> Option<ff::frame::Video> {
        if self.failed {
            return None;
        }
        let tb = ff::Rational::new(self.rate.1 as i32, self.rate.0 as i32);
        let mut f = ff::frame::Video::from(super::share(picture)?);
        f.set_pts(Some(self.next_pts));
        self.next_pts += 1;
        if self.graph.is_none() {
            let src = Source::new("in", graph::video_source_args(&f, tb), false);
            match graph::build(
                std::slice::from_ref(&src),
                &[Sink {
                    name: "out".into(),
                    audio: false,
                }],
                &self.chain,
            ) {
                Ok(g) => self.graph = Some(g),
                Err(e) => {
                    tracing::error!(error = %e, "playout: the timecode overlay cannot be drawn");
                    self.failed = true;
                    return None;
                }
            }
        }
        let g = self.graph.as_mut()?;
        g.get("in")?.source().add(&f).ok()?;
        let mut o = ff::frame::Video::empty();
        g.get("out")?.sink().frame(&mut o).ok()?;
        Some(o)
    }
}
