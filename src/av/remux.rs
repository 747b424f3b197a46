//! Remuxing without decoding: a media file's video and audio packets rewrapped as MPEG-TS and
//! paced at real time, looped forever (a file played as a live source). One muxer serves every
//! pass, so continuity counters run on, and each pass's timestamps are shifted by the length of
//! the passes before it, so that a receiver sees one continuous stream.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ffmpeg_next::ffi;

use super::{ff, AvError};
use ff::Rescale;

/// The muxer's write buffer: seven TS packets, one UDP datagram's worth.
const IO_BUFFER: usize = 7 * 188;
const MICROS: ff::Rational = ff::Rational(1, 1_000_000);
/// Longest single sleep while pacing, so that a stop is seen promptly.
const NAP: Duration = Duration::from_millis(50);

/// What the loop did before it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopReport {
    /// Passes over the file begun.
    pub passes: u64,
    /// The length of one pass, in microseconds.
    pub pass_us: i64,
}

/// Plays `path` as MPEG-TS into `out` at real-time pace, from the start again at each end, until
/// `stop` is set. `on_pass(n)` is called as pass `n` (from 1) begins.
pub fn loop_ts(
    path: &Path,
    out: impl Write + Send + 'static,
    stop: &AtomicBool,
    mut on_pass: impl FnMut(u64),
) -> Result<LoopReport, AvError> {
    let mut ictx = super::input::open(path)?;
    let map = stream_map(&ictx, false);
    if map.iter().all(Option::is_none) {
        return Err(AvError::Invalid {
            path: path.to_owned(),
            what: "no video or audio stream to play".into(),
        });
    }
    let io = ff::format::context::StreamIo::from_write_with_capacity(out, IO_BUFFER)
        .map_err(libav_err(path, "cannot set up the TS writer"))?;
    let mut octx = ff::format::output_to_stream(io, None, Some("mpegts"))
        .map_err(libav_err(path, "cannot open the TS muxer"))?;
    declare_streams(&ictx, &mut octx, &map, path, "TS muxer")?;
    octx.write_header()
        .map_err(libav_err(path, "the TS muxer refused these streams"))?;
    let mut pacing = Pacing {
        in_tb: ictx.streams().map(|s| s.time_base()).collect(),
        out_tb: octx.streams().map(|s| s.time_base()).collect(),
        map,
        started: Instant::now(),
        origin_us: None,
    };
    let mut pass_us: i64 = 0;
    let mut passes = 0u64;
    while !stop.load(Ordering::Relaxed) {
        passes += 1;
        on_pass(passes);
        if passes > 1 {
            ictx = super::input::open(path)?;
        }
        let offset_us = pass_us * (passes as i64 - 1);
        let Some(end_us) = pacing.pass(&mut ictx, &mut octx, offset_us, stop, path)? else {
            break;
        };
        if passes == 1 {
            // The next pass starts where this one's last packet ends (at least one frame on).
            pass_us = (end_us - pacing.origin_us.unwrap_or(0)).max(40_000);
        }
    }
    octx.write_trailer()
        .map_err(libav_err(path, "cannot finish the TS muxer"))?;
    Ok(LoopReport { passes, pass_us })
}

fn libav_err(path: &Path, what: &str) -> impl FnOnce(ff::Error) -> AvError {
    let (path, what) = (path.to_owned(), what.to_string());
    move |source| AvError::Libav { path, what, source }
}

/// Each input stream's index among the output's: video and audio go out (with a codec libav
/// knows, when `known_codec`); data, subtitle and attachment streams are left behind.
fn stream_map(ictx: &ff::format::context::Input, known_codec: bool) -> Vec<Option<usize>> {
    let mut next = 0;
    ictx.streams()
        .map(|s| {
            let p = s.parameters();
            (matches!(p.medium(), ff::media::Type::Video | ff::media::Type::Audio)
                && (!known_codec || p.id() != ff::codec::Id::None))
                .then(|| {
                    next += 1;
                    next - 1
                })
        })
        .collect()
}

/// Declares the kept streams on the output, each with its input's parameters and time base.
fn declare_streams(
    ictx: &ff::format::context::Input,
    octx: &mut ff::format::context::Output,
    map: &[Option<usize>],
    label: &Path,
    muxer: &str,
) -> Result<(), AvError> {
    let invalid = |what: String| AvError::Invalid {
        path: label.to_owned(),
        what,
    };
    for (i, s) in ictx.streams().enumerate() {
        if map[i].is_none() {
            continue;
        }
        // SAFETY: the output context is live; a null codec adds an empty stream filled below.
        let st = unsafe { ffi::avformat_new_stream(octx.as_mut_ptr(), std::ptr::null()) };
        if st.is_null() {
            return Err(invalid(format!("cannot add a stream to the {muxer}")));
        }
        let idx = octx.nb_streams() as usize - 1;
        let mut o = octx
            .stream_mut(idx)
            .ok_or_else(|| invalid(format!("the {muxer} lost a stream")))?;
        o.set_parameters(s.parameters());
        o.set_time_base(s.time_base());
        // SAFETY: clearing the codec tag lets the muxer choose its own for this codec.
        unsafe { (*(*o.as_mut_ptr()).codecpar).codec_tag = 0 };
    }
    Ok(())
}

/// The looped file's clock: every pass's packets shifted to follow the passes before it, and
/// written when their time comes.
struct Pacing {
    map: Vec<Option<usize>>,
    in_tb: Vec<ff::Rational>,
    out_tb: Vec<ff::Rational>,
    started: Instant,
    /// The first packet's time in the file, in microseconds.
    origin_us: Option<i64>,
}

impl Pacing {
    /// One pass over the file, `offset_us` after the first; the end of its last packet in the
    /// file's time, or `None` when stopped meanwhile.
    fn pass(
        &mut self,
        ictx: &mut ff::format::context::Input,
        octx: &mut ff::format::context::Output,
        offset_us: i64,
        stop: &AtomicBool,
        path: &Path,
    ) -> Result<Option<i64>, AvError> {
        let mut end_us = i64::MIN;
        let mut wrote = false;
        for (s, mut p) in ictx.packets() {
            let i = s.index();
            let Some(o) = self.map.get(i).copied().flatten() else {
                continue;
            };
            let Some(dts) = p.dts().or(p.pts()) else {
                continue;
            };
            let dts_us = dts.rescale(self.in_tb[i], MICROS);
            let origin = *self.origin_us.get_or_insert(dts_us);
            let dur_us = p.duration().max(0).rescale(self.in_tb[i], MICROS);
            end_us = end_us.max(dts_us + dur_us);
            if !pace(self.started, dts_us - origin + offset_us, stop) {
                return Ok(None);
            }
            p.rescale_ts(self.in_tb[i], self.out_tb[o]);
            let shift = (offset_us - origin).rescale(MICROS, self.out_tb[o]);
            p.set_pts(p.pts().map(|t| t + shift));
            p.set_dts(p.dts().map(|t| t + shift));
            p.set_stream(o);
            p.set_position(-1);
            p.write_interleaved(octx)
                .map_err(libav_err(path, "cannot write to the TS muxer"))?;
            wrote = true;
        }
        if !wrote {
            return Err(AvError::Invalid {
                path: path.to_owned(),
                what: "no packet to play".into(),
            });
        }
        Ok(Some(end_us))
    }
}

/// Waits until `at_us` after `started`; false when stopped meanwhile.
fn pace(started: Instant, at_us: i64, stop: &AtomicBool) -> bool {
    let due = started + Duration::from_micros(at_us.max(0) as u64);
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        std::thread::sleep((due - now).min(NAP));
    }
}

/// Whether the linked FFmpeg has an input format (or registered input device) of this name:
/// `decklink` tells whether SDI capture is possible at all.
pub fn has_input_format(name: &str) -> bool {
    super::init();
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: av_find_input_format reads the NUL-terminated name and returns a static or null.
    unsafe { !ffi::av_find_input_format(c.as_ptr()).is_null() }
}

/// Where a live remux writes: bytes in order to a writer (MPEG-TS for the hub), or a URL opened
/// by libav's own protocols with `muxer` (`flv` to `rtmp://…`).
pub enum RemuxTarget<'a> {
    Writer(Box<dyn Write + Send>),
    Url { url: &'a str, muxer: &'a str },
}

/// How much of a live feed the probe looks at before the remux starts: 0.5 s, 500 kB.
const LIVE_ANALYZE_US: &str = "500000";
const LIVE_PROBE_BYTES: &str = "500000";
/// How long a URL target may block on one read or write before it is given up (µs).
const URL_TIMEOUT_US: &str = "5000000";

/// Rewraps a live byte stream (FLV from an RTMP publisher, fragmented MP4, MPEG-TS) without
/// decoding, as it arrives, until it ends or `stop` is set; returns the packets written.
/// Bitstream filters the target needs (H.264 to Annex B for TS, AAC without ADTS for FLV) are
/// inserted by the muxers themselves.
pub fn remux_stream(
    src: &super::io::ByteSource,
    target: RemuxTarget<'_>,
    stop: Arc<AtomicBool>,
) -> Result<u64, AvError> {
    let label = std::path::PathBuf::from(&src.name);
    let libav = |what: &str| libav_err(&label, what);
    let s2 = stop.clone();
    // A live feed is looked at for a moment only: what the probe holds back arrives late, and
    // all at once.
    let mut opts = ff::Dictionary::new();
    opts.set("analyzeduration", LIVE_ANALYZE_US);
    opts.set("probesize", LIVE_PROBE_BYTES);
    let mut ictx =
        super::io::InputSource::open_stream_with(src, opts, move || s2.load(Ordering::Relaxed))
            .map_err(libav("cannot read the stream"))?;
    let map = stream_map(&ictx, true);
    if map.iter().all(Option::is_none) {
        return Err(AvError::Invalid {
            path: label,
            what: "no video or audio stream in it".into(),
        });
    }
    let mut octx = match target {
        RemuxTarget::Writer(out) => {
            let io = ff::format::context::StreamIo::from_write_with_capacity(out, IO_BUFFER)
                .map_err(libav("cannot set up the TS writer"))?;
            ff::format::output_to_stream(io, None, Some("mpegts"))
                .map_err(libav("cannot open the TS muxer"))?
        }
        RemuxTarget::Url { url, muxer } => {
            let mut opts = ff::Dictionary::new();
            opts.set("rw_timeout", URL_TIMEOUT_US);
            ff::format::output_as_with(url, muxer, opts).map_err(|source| AvError::Libav {
                path: url.into(),
                what: "cannot connect".into(),
                source,
            })?
        }
    };
    declare_streams(&ictx, &mut octx, &map, &label, "muxer")?;
    octx.write_header()
        .map_err(libav("the muxer refused these streams"))?;
    let in_tb: Vec<ff::Rational> = ictx.streams().map(|s| s.time_base()).collect();
    let out_tb: Vec<ff::Rational> = octx.streams().map(|s| s.time_base()).collect();
    let mut written = 0u64;
    for (s, mut p) in ictx.packets() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let i = s.index();
        let (Some(o), Some(tb)) = (map.get(i).copied().flatten(), in_tb.get(i)) else {
            continue;
        };
        if p.dts().or(p.pts()).is_none() {
            continue;
        }
        p.rescale_ts(*tb, out_tb[o]);
        p.set_stream(o);
        p.set_position(-1);
        p.write_interleaved(&mut octx)
            .map_err(libav("cannot write to the muxer"))?;
        written += 1;
    }
    octx.write_trailer()
        .map_err(libav("cannot finish the muxer"))?;
    Ok(written)
}

/// Whether the linked FFmpeg has the network protocol of `url` (`rtmp://…` for an RTMP push).
pub fn has_protocol(url: &str) -> bool {
    super::init();
    let Ok(c) = std::ffi::CString::new(url) else {
        return false;
    };
    // SAFETY: avio_find_protocol_name reads the NUL-terminated URL and returns a static or null.
    unsafe { !ffi::avio_find_protocol_name(c.as_ptr()).is_null() }
}
