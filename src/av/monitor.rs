//! A live source's monitor: one subscriber of the source's demux ([`super::packets`]), it decodes
//! the video only around preview times (from a keyframe on) to make a small JPEG, and decodes the audio all the time
//! to measure per-channel peak and BS.1770 loudness (momentary, short-term). Runs on the
//! caller's OS thread; the figures land in a [`MonitorState`] that readers look at any time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::RecvTimeoutError;
use ebur128::{EbuR128, Mode};

use super::packets::{self, Demuxed, PacketReader, StreamInfo};
use super::{ff, graph};

/// Width of the preview picture in pixels (its height follows the display aspect).
pub const PREVIEW_WIDTH: u32 = 320;
/// Peak levels are the largest sample of the last this long.
const PEAK_WINDOW: Duration = Duration::from_secs(1);
/// Without a keyframe this long after a preview is due, every packet is decoded (streams coded
/// with intra refresh have none).
const KEYFRAME_WAIT: Duration = Duration::from_secs(10);

/// The last preview picture.
#[derive(Debug, Clone)]
pub struct Preview {
    pub jpeg: bytes::Bytes,
    pub width: u32,
    pub height: u32,
    pub taken: SystemTime,
    pub at: Instant,
}

/// The audio measured lately.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Levels {
    /// Per channel, dBFS of the largest sample of the last second (`None`: digital silence).
    pub peak_dbfs: Vec<Option<f64>>,
    pub momentary_lufs: Option<f64>,
    pub short_term_lufs: Option<f64>,
    pub sample_rate: u32,
}

/// What a monitor has seen; shared between its thread and whoever reports on it.
#[derive(Debug, Default)]
pub struct MonitorState {
    pub video_packets: AtomicU64,
    pub video_decoded: AtomicU64,
    pub previews: AtomicU64,
    pub audio_packets: AtomicU64,
    pub audio_decoded: AtomicU64,
    pub decode_errors: AtomicU64,
    /// Times the demuxer was opened again (garbage, a changed stream).
    pub reopened: AtomicU64,
    last_video_pts: Mutex<Option<f64>>,
    last_audio_pts: Mutex<Option<f64>>,
    preview: Mutex<Option<Preview>>,
    levels: Mutex<Levels>,
    last_error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The values behind these locks are whole after every statement.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MonitorState {
    pub fn preview(&self) -> Option<Preview> {
        lock(&self.preview).clone()
    }

    pub fn levels(&self) -> Levels {
        lock(&self.levels).clone()
    }

    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    /// Latest audio PTS minus latest video PTS, in seconds (both seen).
    pub fn av_offset_s(&self) -> Option<f64> {
        let a = (*lock(&self.last_audio_pts))?;
        let v = (*lock(&self.last_video_pts))?;
        Some(a - v)
    }

    fn error(&self, name: &str, e: impl std::fmt::Display) {
        tracing::debug!(source = %name, error = %e, "live monitor");
        *lock(&self.last_error) = Some(e.to_string());
    }
}

/// Monitors the packets of `packets` until the demux stops or `cancel` is set, making a
/// preview every `preview_every`.
pub fn run(
    name: &str,
    packets: PacketReader,
    preview_every: Duration,
    state: &MonitorState,
    cancel: &Arc<AtomicBool>,
) {
    let mut next_preview = Instant::now();
    let mut session: Option<Session<'_>> = None;
    let (mut vframe, mut aframe) = (ff::frame::Video::empty(), ff::frame::Audio::empty());
    while !cancel.load(Ordering::Relaxed) {
        match packets.recv_timeout(Duration::from_millis(200)) {
            Ok(Demuxed::Opened(streams)) => {
                if let Some(m) = session.take() {
                    next_preview = m.next_preview;
                    state.reopened.fetch_add(1, Ordering::Relaxed);
                }
                session = Some(Session::new(
                    name,
                    &streams,
                    state,
                    preview_every,
                    next_preview,
                ));
            }
            Ok(Demuxed::Packet(p)) => {
                if let Some(m) = session.as_mut() {
                    m.on_packet(&p, &mut vframe, &mut aframe);
                }
            }
            Ok(Demuxed::Closed) => {}
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

struct Audio {
    index: usize,
    tb: f64,
    dec: ff::decoder::Audio,
    meter: Option<(EbuR128, u32, usize)>,
    peaks: Vec<f32>,
    prev_peaks: Vec<f32>,
    window: Instant,
}

struct Video {
    index: usize,
    tb: f64,
    dec: ff::decoder::Video,
    /// Packets are going to the decoder (from a keyframe) until it gives a picture.
    feeding: bool,
}

struct Session<'a> {
    name: &'a str,
    state: &'a MonitorState,
    every: Duration,
    next_preview: Instant,
    video: Option<Video>,
    audio: Option<Audio>,
}

fn decoder(st: &StreamInfo) -> Option<(ff::codec::Context, f64)> {
    let mut ctx = ff::codec::Context::from_parameters(st.params.clone()).ok()?;
    super::decode_threads(&mut ctx, 1);
    Some((ctx, f64::from(st.time_base)))
}

impl<'a> Session<'a> {
    fn new(
        name: &'a str,
        streams: &[StreamInfo],
        state: &'a MonitorState,
        every: Duration,
        next_preview: Instant,
    ) -> Session<'a> {
        // A stream whose parameters the opening could not find is taken all the same: its
        // decoder learns them from the packets.
        let best = |t| packets::best(streams, t);
        let video = best(ff::media::Type::Video).and_then(|st| {
            let (ctx, tb) = decoder(st)?;
            Some(Video {
                index: st.index,
                tb,
                dec: ctx.decoder().video().ok()?,
                feeding: false,
            })
        });
        let audio = best(ff::media::Type::Audio).and_then(|st| {
            let (ctx, tb) = decoder(st)?;
            Some(Audio {
                index: st.index,
                tb,
                dec: ctx.decoder().audio().ok()?,
                meter: None,
                peaks: Vec::new(),
                prev_peaks: Vec::new(),
                window: Instant::now(),
            })
        });
        Session {
            name,
            state,
            every,
            next_preview,
            video,
            audio,
        }
    }

    fn on_packet(
        &mut self,
        packet: &ff::Packet,
        vframe: &mut ff::frame::Video,
        aframe: &mut ff::frame::Audio,
    ) {
        let si = packet.stream();
        if self.video.as_ref().is_some_and(|v| v.index == si) {
            self.on_video(packet, vframe);
        } else if self.audio.as_ref().is_some_and(|a| a.index == si) {
            self.on_audio(packet, aframe);
        }
    }

    fn on_video(&mut self, packet: &ff::Packet, frame: &mut ff::frame::Video) {
        let st = self.state;
        let Some(v) = self.video.as_mut() else { return };
        st.video_packets.fetch_add(1, Ordering::Relaxed);
        if let Some(p) = packet.pts() {
            *lock(&st.last_video_pts) = Some(p as f64 * v.tb);
        }
        let now = Instant::now();
        if !v.feeding {
            let due = now >= self.next_preview;
            let overdue = now >= self.next_preview + KEYFRAME_WAIT;
            if !(due && (packet.is_key() || overdue)) {
                return;
            }
            v.feeding = true;
        }
        if v.dec.send_packet(packet).is_err() {
            st.decode_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        while received(v.dec.receive_frame(frame), st) {
            st.video_decoded.fetch_add(1, Ordering::Relaxed);
            if !v.feeding {
                continue;
            }
            match jpeg(frame) {
                Ok(p) => {
                    *lock(&st.preview) = Some(p);
                    st.previews.fetch_add(1, Ordering::Relaxed);
                    v.feeding = false;
                    self.next_preview = now + self.every;
                }
                Err(e) => {
                    st.decode_errors.fetch_add(1, Ordering::Relaxed);
                    st.error(self.name, e);
                }
            }
        }
        if !v.feeding {
            // Until the next preview the decoder gets nothing: what it holds is let go.
            v.dec.flush();
        }
    }

    fn on_audio(&mut self, packet: &ff::Packet, frame: &mut ff::frame::Audio) {
        let st = self.state;
        let Some(a) = self.audio.as_mut() else { return };
        st.audio_packets.fetch_add(1, Ordering::Relaxed);
        if let Some(p) = packet.pts() {
            *lock(&st.last_audio_pts) = Some(p as f64 * a.tb);
        }
        if a.dec.send_packet(packet).is_err() {
            st.decode_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        while received(a.dec.receive_frame(frame), st) {
            st.audio_decoded.fetch_add(1, Ordering::Relaxed);
            a.measure(frame, st);
        }
    }
}

/// Whether a frame came out of a decoder; one that failed is counted.
fn received(r: Result<(), ff::Error>, st: &MonitorState) -> bool {
    match r {
        Ok(()) => true,
        Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => false,
        Err(ff::Error::Eof) => false,
        Err(_) => {
            st.decode_errors.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

impl Audio {
    fn measure(&mut self, frame: &ff::frame::Audio, st: &MonitorState) {
        let Some(planes) = planar_f32(frame) else {
            st.decode_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let (ch, rate) = (planes.len(), frame.rate());
        if ch == 0 || rate == 0 {
            return;
        }
        if self.meter.as_ref().map(|m| (m.1, m.2)) != Some((rate, ch)) {
            self.meter = EbuR128::new(ch as u32, rate, Mode::M | Mode::S)
                .ok()
                .map(|m| (m, rate, ch));
            self.peaks = vec![0.0; ch];
            self.prev_peaks = vec![0.0; ch];
        }
        for (p, s) in self.peaks.iter_mut().zip(&planes) {
            *p = s.iter().fold(*p, |m, x| m.max(x.abs()));
        }
        if self.window.elapsed() >= PEAK_WINDOW {
            self.prev_peaks = std::mem::replace(&mut self.peaks, vec![0.0; ch]);
            self.window = Instant::now();
        }
        let mut levels = Levels {
            sample_rate: rate,
            peak_dbfs: self
                .peaks
                .iter()
                .zip(&self.prev_peaks)
                .map(|(a, b)| {
                    let p = f64::from(a.max(*b));
                    (p > 0.0).then(|| 20.0 * p.log10())
                })
                .collect(),
            ..Levels::default()
        };
        if let Some((m, _, _)) = self.meter.as_mut() {
            let refs: Vec<&[f32]> = planes.iter().map(|p| p.as_slice()).collect();
            if m.add_frames_planar_f32(&refs).is_ok() {
                let fin = |v: Result<f64, ebur128::Error>| v.ok().filter(|v| v.is_finite());
                levels.momentary_lufs = fin(m.loudness_momentary());
                levels.short_term_lufs = fin(m.loudness_shortterm());
            }
        }
        *lock(&st.levels) = levels;
    }
}

/// The frame's samples as one f32 vector per channel, whatever its sample format.
fn planar_f32(frame: &ff::frame::Audio) -> Option<Vec<Vec<f32>>> {
    use ff::format::sample::Type;
    use ff::format::Sample;
    let ch = graph::channels(frame);
    let n = frame.samples();
    let (size, conv): (usize, fn(&[u8]) -> f32) = match frame.format() {
        Sample::U8(_) => (1, |b| (f32::from(b[0]) - 128.0) / 128.0),
        Sample::I16(_) => (2, |b| f32::from(i16::from_ne_bytes([b[0], b[1]])) / 32768.0),
        Sample::I32(_) => (4, |b| {
            i32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0
        }),
        Sample::F32(_) => (4, |b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
        Sample::F64(_) => (8, |b| {
            f64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        }),
        _ => return None,
    };
    let planar = matches!(
        frame.format(),
        Sample::U8(Type::Planar)
            | Sample::I16(Type::Planar)
            | Sample::I32(Type::Planar)
            | Sample::F32(Type::Planar)
            | Sample::F64(Type::Planar)
    );
    let mut out = vec![Vec::with_capacity(n); ch];
    if planar {
        for (c, o) in out.iter_mut().enumerate() {
            let d = frame.data(c);
            o.extend(d.chunks_exact(size).take(n).map(conv));
        }
    } else {
        let d = frame.data(0);
        for (i, s) in d.chunks_exact(size).take(n * ch).enumerate() {
            out[i % ch].push(conv(s));
        }
    }
    Some(out)
}

/// The frame scaled to [`PREVIEW_WIDTH`] and coded as a JPEG.
fn jpeg(frame: &ff::frame::Video) -> Result<Preview, String> {
    let (w, h) = (frame.width(), frame.height());
    if w == 0 || h == 0 {
        return Err("a picture without a size".into());
    }
    let sar = frame.aspect_ratio();
    let sar = if sar.numerator() > 0 && sar.denominator() > 0 {
        f64::from(sar)
    } else {
        1.0
    };
    let dw = PREVIEW_WIDTH;
    let dh = ((f64::from(h) * f64::from(dw) / (f64::from(w) * sar) / 2.0).round() as u32 * 2)
        .clamp(2, 4096);
    let fmt = ff::format::Pixel::YUVJ420P;
    let mut sws = ff::software::scaling::Context::get(
        frame.format(),
        w,
        h,
        fmt,
        dw,
        dh,
        ff::software::scaling::Flags::BILINEAR,
    )
    .map_err(|e| format!("preview scaler: {e}"))?;
    let mut small = ff::frame::Video::empty();
    sws.run(frame, &mut small)
        .map_err(|e| format!("preview scaling: {e}"))?;
    let codec = ff::encoder::find(ff::codec::Id::MJPEG).ok_or("no JPEG encoder in libavcodec")?;
    let mut enc = ff::codec::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| format!("JPEG encoder: {e}"))?;
    enc.set_width(dw);
    enc.set_height(dh);
    enc.set_format(fmt);
    enc.set_time_base(ff::Rational::new(1, 25));
    let mut enc = enc
        .open_as(codec)
        .map_err(|e| format!("JPEG encoder: {e}"))?;
    small.set_pts(Some(0));
    enc.send_frame(&small)
        .map_err(|e| format!("JPEG encoding: {e}"))?;
    enc.send_eof().map_err(|e| format!("JPEG encoding: {e}"))?;
    let mut out = ff::Packet::empty();
    enc.receive_packet(&mut out)
        .map_err(|e| format!("JPEG encoding: {e}"))?;
    let data = out.data().ok_or("the JPEG encoder gave nothing")?;
    Ok(Preview {
        jpeg: bytes::Bytes::copy_from_slice(data),
        width: dw,
        height: dh,
        taken: SystemTime::now(),
        at: Instant::now(),
    })
}
