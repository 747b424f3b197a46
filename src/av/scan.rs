//! A full decode of a file, measuring what a delivery check needs: every video frame's type and
//! interlacing, the GOP structure as decoded (not as requested), timestamps, decode errors, the
//! audio sample count, and each stream's bit rate (average and peak over one-second windows).

use std::path::Path;

use serde::Serialize;

use super::samples::{Block, Merger};
use super::{ff, ffi, input, AvError};

#[derive(Debug, Clone, Default, Serialize)]
pub struct VideoScan {
    pub index: usize,
    pub frames: u64,
    pub width: u32,
    pub height: u32,
    pub interlaced_frames: u64,
    pub top_field_first_frames: u64,
    /// Display-order numbers of the intra frames.
    pub keyframes: Vec<u64>,
    /// Distance between successive intra frames (the last, open GOP excluded).
    pub gop_lengths: Vec<u64>,
    /// Longest run of B frames, plus one: the M of an MPEG GOP.
    pub m: u64,
    pub b_frames: u64,
    pub first_pts_s: Option<f64>,
    pub last_pts_s: Option<f64>,
    /// Timestamps that did not increase from one frame to the next.
    pub non_monotonic: u64,
    /// Frames flagged corrupt by the decoder.
    pub corrupt_frames: u64,
    /// Stretches of black picture and of frozen picture, `(start_s, end_s)`.
    pub black: Vec<(f64, f64)>,
    pub frozen: Vec<(f64, f64)>,
    /// Whether the picture could be measured (8- and 10-bit planar YUV).
    pub picture_measured: bool,
    /// Holes in the picture timeline (frames missing), `(from_s, to_s)`.
    pub gaps: Vec<(f64, f64)>,
    #[serde(skip)]
    pic: PictureState,
}

/// Running state of the black/freeze measurement.
#[derive(Debug, Clone, Default)]
struct PictureState {
    prev: Vec<u16>,
    black_since: Option<f64>,
    frozen_since: Option<f64>,
    last_t: f64,
    step: f64,
}

/// Luma samples of a frame on a sparse grid (every 4th pixel of every 4th line), 8-bit scale;
/// `None` for formats this does not read.
fn luma_grid(f: &ff::frame::Video) -> Option<Vec<u16>> {
    use ff::format::Pixel as P;
    let wide = match f.format() {
        P::YUV420P
        | P::YUV422P
        | P::YUV444P
        | P::YUVJ420P
        | P::YUVJ422P
        | P::YUVJ444P
        | P::NV12
        | P::GRAY8 => false,
        P::YUV420P10LE | P::YUV422P10LE | P::YUV444P10LE => true,
        _ => return None,
    };
    let (w, h) = (f.width() as usize, f.height() as usize);
    let stride = f.stride(0);
    let data = f.data(0);
    let mut out = Vec::with_capacity((w / 4 + 1) * (h / 4 + 1));
    for y in (0..h).step_by(4) {
        let row = y * stride;
        for x in (0..w).step_by(4) {
            let v = if wide {
                let i = row + 2 * x;
                let raw = u16::from(*data.get(i)?) | (u16::from(*data.get(i + 1)?) << 8);
                raw >> 2
            } else {
                u16::from(*data.get(row + x)?)
            };
            out.push(v);
        }
    }
    Some(out)
}

impl VideoScan {
    /// Black: 98 % of the picture darker than video level 32 (limited range black is 16).
    /// Frozen: the mean luma difference from the previous frame under 0.5 (of 255).
    fn measure_picture(&mut self, f: &ff::frame::Video, t: f64) {
        let Some(g) = luma_grid(f) else { return };
        self.picture_measured = true;
        let n = g.len().max(1);
        let dark = g.iter().filter(|&&v| v < 32).count();
        let black = dark * 100 >= n * 98;
        let frozen = self.pic.prev.len() == g.len()
            && g.iter()
                .zip(&self.pic.prev)
                .map(|(a, b)| u64::from(a.abs_diff(*b)))
                .sum::<u64>()
                * 2
                < n as u64;
        let st = &mut self.pic;
        match (black, st.black_since) {
            (true, None) => st.black_since = Some(t),
            (false, Some(s)) => {
                self.black.push((s, t));
                st.black_since = None;
            }
            _ => {}
        }
        match (frozen, st.frozen_since) {
            // A freeze starts at the frame that was then repeated.
            (true, None) => st.frozen_since = Some(st.last_t),
            (false, Some(s)) => {
                self.frozen.push((s, t));
                st.frozen_since = None;
            }
            _ => {}
        }
        st.prev = g;
        st.last_t = t;
    }

    fn close_picture(&mut self, end: f64) {
        if let Some(s) = self.pic.black_since.take() {
            self.black.push((s, end));
        }
        if let Some(s) = self.pic.frozen_since.take() {
            self.frozen.push((s, end));
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AudioScan {
    pub index: usize,
    pub samples: u64,
    pub sample_rate: u32,
    pub channels: u32,
    pub duration_s: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamBits {
    pub index: usize,
    pub bytes: u64,
    pub average_bps: u64,
    /// Largest number of bits in any one-second window of decode timestamps.
    pub peak_bps: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanReport {
    pub video: Option<VideoScan>,
    pub audio: Vec<AudioScan>,
    pub bits: Vec<StreamBits>,
    /// Packets the decoders refused plus read errors.
    pub decode_errors: u64,
    /// Where they were: the packet's time in seconds (the first 100).
    pub error_times_s: Vec<f64>,
    /// Errors the decoders and demuxer logged while concealing damage.
    pub logged_errors: u64,
}

impl ScanReport {
    /// Video duration from the frame count and rate.
    pub fn video_duration_s(&self, rate: f64) -> Option<f64> {
        self.video
            .as_ref()
            .filter(|_| rate > 0.0)
            .map(|v| v.frames as f64 / rate)
    }
}

struct BitWindow {
    index: usize,
    /// (dts seconds, bytes)
    packets: Vec<(f64, u64)>,
}

impl BitWindow {
    fn finish(mut self, duration_s: f64) -> StreamBits {
        self.packets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let bytes: u64 = self.packets.iter().map(|p| p.1).sum();
        let mut peak = 0u64;
        let mut lo = 0usize;
        let mut in_window = 0u64;
        for hi in 0..self.packets.len() {
            in_window += self.packets[hi].1;
            while self.packets[hi].0 - self.packets[lo].0 >= 1.0 {
                in_window -= self.packets[lo].1;
                lo += 1;
            }
            peak = peak.max(in_window * 8);
        }
        let average = if duration_s > 0.0 {
            (bytes as f64 * 8.0 / duration_s) as u64
        } else {
            0
        };
        StreamBits {
            index: self.index,
            bytes,
            average_bps: average,
            peak_bps: peak,
        }
    }
}

/// A stream a [`Scanner`] decodes: its index in the packets it will be fed, its codec
/// parameters and its time base.
pub struct ScanStream {
    pub index: usize,
    pub params: ff::codec::Parameters,
    pub time_base: ff::Rational,
}

/// The measurements of [`scan_with`], fed packet by packet: by a file read ([`scan_with`]) or by an
/// encoder's own packets on their way to the muxer (the engine's in-flight verification).
/// `programme` streams are also merged into planar f32 blocks handed to `each` (loudness,
/// silence), so that no second pass decodes the audio again.
pub struct Scanner<F: FnMut(&Block<'_>)> {
    report: ScanReport,
    picture: bool,
    vdec: Option<ff::decoder::Video>,
    vindex: Option<usize>,
    vtb: f64,
    adecs: Vec<(usize, ff::decoder::Audio)>,
    time_bases: Vec<(usize, f64)>,
    windows: Vec<BitWindow>,
    programme: Vec<usize>,
    merger: Option<Merger>,
    merge_error: Option<String>,
    each: F,
    vframe: ff::frame::Video,
    aframe: ff::frame::Audio,
    b_run: u64,
    last_key: Option<u64>,
}

impl<F: FnMut(&Block<'_>)> Scanner<F> {
    /// Decoders for the first video stream and every audio stream of `streams`; an error names
    /// the stream that has none.
    pub fn new(
        streams: &[ScanStream],
        picture: bool,
        programme: &[usize],
        each: F,
    ) -> Result<Self, (String, ff::Error)> {
        let mut sc = Scanner {
            report: ScanReport::default(),
            picture,
            vdec: None,
            vindex: None,
            vtb: 0.0,
            adecs: Vec::new(),
            time_bases: Vec::new(),
            windows: Vec::new(),
            programme: programme.to_vec(),
            merger: None,
            merge_error: None,
            each,
            vframe: ff::frame::Video::empty(),
            aframe: ff::frame::Audio::empty(),
            b_run: 0,
            last_key: None,
        };
        for st in streams {
            let medium = st.params.medium();
            let tb =
                f64::from(st.time_base.numerator()) / f64::from(st.time_base.denominator().max(1));
            if medium == ff::media::Type::Video && sc.vindex.is_none() {
                let mut ctx = ff::codec::Context::from_parameters(st.params.clone())
                    .map_err(|e| (format!("video stream {}", st.index), e))?;
                super::decode_threads(&mut ctx, 0);
                if !picture {
                    // Nothing looks at the pixels: parse and check every picture's syntax, but
                    // skip the inverse transforms and the deblocking that only make pixels.
                    // SAFETY: plain fields of a decoder context not opened yet.
                    unsafe {
                        let c = &mut *ctx.as_mut_ptr();
                        c.skip_idct = ffi::AVDiscard::AVDISCARD_ALL;
                        c.skip_loop_filter = ffi::AVDiscard::AVDISCARD_ALL;
                    }
                }
                sc.vdec = Some(
                    ctx.decoder()
                        .video()
                        .map_err(|e| (format!("no decoder for video stream {}", st.index), e))?,
                );
                sc.vindex = Some(st.index);
                sc.vtb = tb;
                sc.report.video = Some(VideoScan {
                    index: st.index,
                    ..Default::default()
                });
            } else if medium == ff::media::Type::Audio {
                let ctx = ff::codec::Context::from_parameters(st.params.clone())
                    .map_err(|e| (format!("audio stream {}", st.index), e))?;
                let dec = ctx
                    .decoder()
                    .audio()
                    .map_err(|e| (format!("no decoder for audio stream {}", st.index), e))?;
                sc.adecs.push((st.index, dec));
                sc.report.audio.push(AudioScan {
                    index: st.index,
                    ..Default::default()
                });
            } else {
                continue;
            }
            sc.time_bases.push((st.index, tb));
            sc.windows.push(BitWindow {
                index: st.index,
                packets: Vec::new(),
            });
        }
        sc.programme
            .retain(|p| sc.adecs.iter().any(|(i, _)| i == p));
        if !sc.programme.is_empty() {
            sc.merger = Some(
                Merger::new(sc.programme.len(), None, None)
                    .map_err(|_| ("audio measurement".to_string(), ff::Error::Bug))?,
            );
        }
        Ok(sc)
    }

    /// Seconds of a packet's timestamp, in its stream's time base.
    fn seconds(&self, stream: usize, ts: Option<i64>) -> Option<f64> {
        let tb = self.time_bases.iter().find(|(i, _)| *i == stream)?.1;
        ts.map(|t| t as f64 * tb)
    }

    /// A packet that could not be read (counted as a decode error).
    pub fn read_error(&mut self) {
        self.report.decode_errors += 1;
    }

    fn refused(&mut self, at: Option<f64>) {
        self.report.decode_errors += 1;
        if self.report.error_times_s.len() < 100 {
            self.report.error_times_s.extend(at);
        }
    }

    /// One packet of any stream (those not scanned are ignored).
    pub fn packet(&mut self, packet: &ff::Packet) {
        let si = packet.stream();
        let dts_s = self.seconds(si, packet.dts().or(packet.pts()));
        if let (Some(w), Some(t)) = (self.windows.iter_mut().find(|w| w.index == si), dts_s) {
            w.packets.push((t, packet.size() as u64));
        }
        let packet_s = self.seconds(si, packet.pts().or(packet.dts()));
        if Some(si) == self.vindex {
            let Some(dec) = self.vdec.as_mut() else {
                return;
            };
            if dec.send_packet(packet).is_err() {
                self.refused(packet_s);
                return;
            }
            self.drain_video();
        } else if let Some(k) = self.adecs.iter().position(|(i, _)| *i == si) {
            if self.adecs[k].1.send_packet(packet).is_err() {
                self.refused(packet_s);
                return;
            }
            self.drain_audio(k);
        }
    }

    fn drain_video(&mut self) {
        let (Some(dec), Some(v)) = (self.vdec.as_mut(), self.report.video.as_mut()) else {
            return;
        };
        while dec.receive_frame(&mut self.vframe).is_ok() {
            tally_video(
                v,
                &self.vframe,
                self.vtb,
                &mut self.b_run,
                &mut self.last_key,
                self.picture,
            );
        }
    }

    fn drain_audio(&mut self, k: usize) {
        let index = self.adecs[k].0;
        let merge_as = self.programme.iter().position(|&p| p == index);
        while self.adecs[k].1.receive_frame(&mut self.aframe).is_ok() {
            if let Some(a) = self.report.audio.iter_mut().find(|a| a.index == index) {
                tally_audio(a, &self.aframe);
            }
            if let (Some(m), Some(idx)) = (self.merger.as_mut(), merge_as) {
                let f = std::mem::replace(&mut self.aframe, ff::frame::Audio::empty());
                if let Err(e) = m.push(idx, f, &mut self.each) {
                    self.merge_error.get_or_insert(e);
                }
            }
        }
    }

    /// Flushes the decoders and returns the report; `Err` only when the programme's audio
    /// could not be merged for measurement.
    pub fn finish(mut self) -> Result<ScanReport, String> {
        if let Some(dec) = self.vdec.as_mut() {
            let _ = dec.send_eof();
        }
        self.drain_video();
        for k in 0..self.adecs.len() {
            let _ = self.adecs[k].1.send_eof();
            self.drain_audio(k);
        }
        if let Some(m) = self.merger.as_mut() {
            m.finish(&mut self.each);
        }
        if let Some(e) = self.merge_error {
            return Err(e);
        }
        let mut report = self.report;
        let duration = report
            .video
            .as_ref()
            .and_then(|v| Some(v.last_pts_s? - v.first_pts_s?))
            .or_else(|| report.audio.iter().map(|a| a.duration_s).reduce(f64::max))
            .unwrap_or(0.0);
        // A one-frame correction: the span of timestamps misses the last frame's duration.
        let duration = match &report.video {
            Some(v) if v.frames > 1 => duration * v.frames as f64 / (v.frames - 1) as f64,
            _ => duration,
        };
        if let Some(v) = report.video.as_mut() {
            let end = v.first_pts_s.unwrap_or(0.0) + duration;
            v.close_picture(end);
        }
        report.bits = self
            .windows
            .into_iter()
            .map(|w| w.finish(duration))
            .collect();
        Ok(report)
    }
}

/// Decodes the first video stream and every audio stream of `path` to the end; `picture`: also measure black and frozen picture (QC does, a delivery
/// check of a rendition does not need it); `programme`: audio streams merged into blocks for
/// `each` (see [`Scanner`]).
pub fn scan_with(
    path: &Path,
    picture: bool,
    programme: &[usize],
    each: impl FnMut(&Block<'_>),
) -> Result<ScanReport, AvError> {
    let logged_before = super::logged_errors();
    let mut ictx = input::open(path)?;
    let mut streams = Vec::new();
    let mut video = false;
    for st in ictx.streams() {
        let medium = st.parameters().medium();
        if (medium == ff::media::Type::Video && !video) || medium == ff::media::Type::Audio {
            video |= medium == ff::media::Type::Video;
            streams.push(ScanStream {
                index: st.index(),
                params: st.parameters(),
                time_base: st.time_base(),
            });
        }
    }
    let mut scanner =
        Scanner::new(&streams, picture, programme, each).map_err(|(what, e)| AvError::Libav {
            path: path.to_owned(),
            what,
            source: e,
        })?;
    let mut packet = ff::Packet::empty();
    super::activity::pass_begins();
    loop {
        match super::read_packet(&mut ictx, &mut packet) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(_) => {
                scanner.read_error();
                break;
            }
        }
        let si = packet.stream();
        let tb = ictx.stream(si).map_or(0.0, |s| f64::from(s.time_base()));
        super::activity::packet(packet.pts().or(packet.dts()).map(|t| t as f64 * tb));
        scanner.packet(&packet);
    }
    let mut report = scanner.finish().map_err(|what| AvError::Invalid {
        path: path.to_owned(),
        what,
    })?;
    report.logged_errors = super::logged_errors().saturating_sub(logged_before);
    Ok(report)
}

fn tally_video(
    v: &mut VideoScan,
    f: &ff::frame::Video,
    tb: f64,
    b_run: &mut u64,
    last_key: &mut Option<u64>,
    picture: bool,
) {
    let n = v.frames;
    v.frames += 1;
    v.width = f.width();
    v.height = f.height();
    if f.is_interlaced() {
        v.interlaced_frames += 1;
        if f.is_top_first() {
            v.top_field_first_frames += 1;
        }
    }
    if f.is_corrupt() {
        v.corrupt_frames += 1;
    }
    // SAFETY: reading a plain field of a live frame.
    let kind = unsafe { (*f.as_ptr()).pict_type };
    match kind {
        ffi::AVPictureType::AV_PICTURE_TYPE_I => {
            if let Some(k) = *last_key {
                v.gop_lengths.push(n - k);
            }
            *last_key = Some(n);
            v.keyframes.push(n);
            *b_run = 0;
        }
        ffi::AVPictureType::AV_PICTURE_TYPE_B => {
            v.b_frames += 1;
            *b_run += 1;
            v.m = v.m.max(*b_run + 1);
        }
        _ => *b_run = 0,
    }
    if v.m == 0 {
        v.m = 1;
    }
    if let Some(ts) = f.timestamp() {
        let s = ts as f64 * tb;
        if picture {
            v.measure_picture(f, s);
        }
        if let Some(last) = v.last_pts_s {
            let step = s - last;
            // The frame duration is the smallest step seen; a step of more than twice it is a
            // hole (damage dropped frames).
            if step > 0.0 {
                if v.frames > 3 && v.pic.step > 0.0 && step > 2.0 * v.pic.step {
                    v.gaps.push((last, s));
                }
                if v.pic.step == 0.0 || step < v.pic.step {
                    v.pic.step = step;
                }
            }
        }
        if let Some(last) = v.last_pts_s {
            if s <= last {
                v.non_monotonic += 1;
            }
        }
        v.first_pts_s.get_or_insert(s);
        v.last_pts_s = Some(s);
    }
}

fn tally_audio(a: &mut AudioScan, f: &ff::frame::Audio) {
    a.samples += f.samples() as u64;
    a.sample_rate = f.rate();
    a.channels = super::graph::channels(f) as u32;
    if a.sample_rate > 0 {
        a.duration_s = a.samples as f64 / f64::from(a.sample_rate);
    }
}
