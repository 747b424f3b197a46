//! The media engine: the ONLY module that touches `ffmpeg_next::ffi` or holds `unsafe` libav code.
//! Opening inputs safely, probing, decoding, filter graphs (one audio graph builder,
//! [`graph::AudioGraph`], for encodes and measurements alike), encoders, muxers, hardware
//! backends, the live engine and the libav log → tracing bridge. It knows nothing of profiles or
//! the CLI: `pipeline` compiles a profile into an [`engine::PipelineSpec`] and hands it here.
//! Its endpoints are abstract ([`io`]): what a file output's publishing is (the atomic file) is
//! handed in by the caller from `output`.
//!
//! Imports only `config`'s value types (`Rate`, `Backend`): never output, pipeline, profile, qc,
//! catalog, jobs, api, tokio or SQL; pipelines run on OS threads and talk to async code through
//! channels (see [`io`]).

pub mod clip;
pub mod engine;
pub mod graph;
pub mod hw;
pub mod input;
pub mod io;
pub mod live;
pub mod monitor;
pub mod packets;
pub mod probe;
pub mod remux;
pub mod samples;
pub mod scan;

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::PathBuf;
use std::sync::Once;

pub use ffmpeg_next as ff;
use ffmpeg_next::ffi;

/// Everything that can go wrong in the engine, with the file it concerns where there is one.
#[derive(Debug, thiserror::Error)]
pub enum AvError {
    #[error("{path}: no such file")]
    NotFound { path: PathBuf },
    #[error("{path}: not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path}: empty file (0 bytes)")]
    Empty { path: PathBuf },
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: {what} files are refused: they make the reader open other files or the network"
    )]
    Refused { path: PathBuf, what: &'static str },
    /// `reason` is libav's own most specific word for it (e.g. "moov atom not found"), when it
    /// logged one; `source` the error code it returned.
    #[error("{path}: not a media file FFmpeg can read: {}", reason.as_deref().map_or_else(|| source.to_string(), str::to_string))]
    NotMedia {
        path: PathBuf,
        reason: Option<String>,
        #[source]
        source: ff::Error,
    },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
    #[error("{path}: {what}: {source}")]
    Libav {
        path: PathBuf,
        what: String,
        #[source]
        source: ff::Error,
    },
    /// A GPU device an output encodes on did not open.
    #[error(transparent)]
    Device(#[from] hw::HwError),
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
    /// One output of a run failed; `source` says how.
    #[error("output {output}: {source}")]
    Output {
        output: String,
        #[source]
        source: engine::StageError,
    },
    #[error("cancelled")]
    Cancelled,
}

impl AvError {
    /// What went wrong, without the file's path (for messages that name the file themselves).
    pub fn reason(&self) -> String {
        let full = self.to_string();
        match self.path() {
            Some(p) => {
                let prefix = format!("{}: ", p.display());
                full.strip_prefix(&prefix).unwrap_or(&full).to_string()
            }
            None => full,
        }
    }

    /// The file the error concerns, where there is one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            AvError::NotFound { path }
            | AvError::NotAFile { path }
            | AvError::Empty { path }
            | AvError::Io { path, .. }
            | AvError::Refused { path, .. }
            | AvError::NotMedia { path, .. }
            | AvError::Invalid { path, .. }
            | AvError::Libav { path, .. } => Some(path),
            AvError::Device(_)
            | AvError::Thread(_)
            | AvError::Output { .. }
            | AvError::Cancelled => None,
        }
    }
}

static INIT: Once = Once::new();

thread_local! {
    /// Error lines libav logs on this thread while [`capture_errors`] runs.
    static CAPTURED: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f`, collecting the error lines libav logs on this thread meanwhile (without their
/// `[demuxer @ 0x…]` prefixes): libav returns a bare code ("Invalid data found") and says the
/// specific reason ("moov atom not found") only in its log.
pub fn capture_errors<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let before = CAPTURED.with(|c| c.replace(Some(Vec::new())));
    let out = f();
    let lines = CAPTURED.with(|c| c.replace(before)).unwrap_or_default();
    (out, lines)
}

/// A log line without the leading `[name @ 0x…] ` contexts.
fn strip_log_prefix(mut line: &str) -> &str {
    while let Some(rest) = line.strip_prefix('[') {
        match rest.split_once("] ") {
            Some((_, after)) => line = after,
            None => break,
        }
    }
    line.trim()
}

/// Initialises libav once per process and routes its log to `tracing` (target `libav`).
pub fn init() {
    INIT.call_once(|| {
        let _ = ff::init();
        // SAFETY: `log_bridge` has the exact signature libav expects and only reads its arguments
        // for the duration of the call; installing a callback is process-global and done once.
        unsafe {
            ffi::av_log_set_level(ffi::AV_LOG_INFO);
            ffi::av_log_set_callback(Some(log_bridge));
        }
    });
}

/// What this process's decode loops (scan, measurement passes) have done: passes begun,
/// packets read, and the media time of the last packet. A one-job worker reports progress from
/// it, so that a decoder stuck inside libav shows as silence and is stopped as a hang.
pub mod activity {
    use std::sync::atomic::{AtomicU64, Ordering};

    static PASSES: AtomicU64 = AtomicU64::new(0);
    static PACKETS: AtomicU64 = AtomicU64::new(0);
    static MEDIA_MS: AtomicU64 = AtomicU64::new(0);

    pub fn pass_begins() {
        PASSES.fetch_add(1, Ordering::Relaxed);
        MEDIA_MS.store(0, Ordering::Relaxed);
    }

    pub fn packet(media_s: Option<f64>) {
        PACKETS.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = media_s.filter(|s| s.is_finite() && *s > 0.0) {
            MEDIA_MS.fetch_max((s * 1000.0) as u64, Ordering::Relaxed);
        }
    }

    /// (passes begun, packets read, media seconds reached in this pass).
    pub fn now() -> (u64, u64, f64) {
        (
            PASSES.load(Ordering::Relaxed),
            PACKETS.load(Ordering::Relaxed),
            MEDIA_MS.load(Ordering::Relaxed) as f64 / 1000.0,
        )
    }
}

static LOGGED_ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Errors libav has logged in this process so far (decoders conceal damage and only say so in
/// the log). Meaningful per file in a worker process, which handles one job.
pub fn logged_errors() -> u64 {
    LOGGED_ERRORS.load(std::sync::atomic::Ordering::Relaxed)
}

unsafe extern "C" fn log_bridge(
    avcl: *mut c_void,
    level: c_int,
    fmt: *const c_char,
    args: *mut ffi::__va_list_tag,
) {
    if level > ffi::AV_LOG_INFO {
        return;
    }
    let mut buf = [0 as c_char; 1024];
    let mut print_prefix: c_int = 1;
    // SAFETY: `buf` is writable for its whole length, which is what we pass; `fmt` and `args`
    // come straight from libav for this call; the written line is NUL-terminated by libav.
    let line = unsafe {
        ffi::av_log_format_line2(
            avcl,
            level,
            fmt,
            args,
            buf.as_mut_ptr(),
            buf.len() as c_int,
            &mut print_prefix,
        );
        CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
    };
    let line = line.trim_end();
    if line.is_empty() {
        return;
    }
    if level <= ffi::AV_LOG_ERROR {
        LOGGED_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = CAPTURED.try_with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                if let Some(v) = c.as_mut() {
                    if v.len() < 32 {
                        v.push(strip_log_prefix(line).to_string());
                    }
                }
            }
        });
        tracing::error!(target: "libav", "{line}");
    } else if level <= ffi::AV_LOG_WARNING {
        tracing::warn!(target: "libav", "{line}");
    } else {
        tracing::debug!(target: "libav", "{line}");
    }
}

/// A new reference to the same picture or samples: no pixel copy, so one decoded frame can go to
/// several encoders on other threads. `None` only when memory runs out.
pub fn share(frame: &ff::Frame) -> Option<ff::Frame> {
    // SAFETY: `av_frame_alloc` returns an empty frame or null (checked); `av_frame_ref` adds
    // references to `frame`'s buffers, which stay valid while any reference lives; on failure the
    // new frame is freed by `Frame`'s Drop.
    unsafe {
        let dst = ffi::av_frame_alloc();
        if dst.is_null() {
            return None;
        }
        let copy = ff::Frame::wrap(dst);
        if ffi::av_frame_ref(dst, frame.as_ptr()) < 0 {
            return None;
        }
        Some(copy)
    }
}

/// Reads the next packet of `ictx` into `packet`, releasing what `packet` held first:
/// `av_read_frame` (FFmpeg 5.1) overwrites the packet without unreferencing it, so a packet
/// reused across reads would leak every buffer it was given.
pub fn read_packet(
    ictx: &mut ff::format::context::Input,
    packet: &mut ff::Packet,
) -> Result<(), ff::Error> {
    // SAFETY: `packet` is a live AVPacket owned by the caller; unreferencing it releases its
    // buffer and leaves it blank, as `av_read_frame` requires.
    unsafe { ffi::av_packet_unref(ff::packet::Mut::as_mut_ptr(packet)) };
    packet.read(ictx)
}

/// Asks a not-yet-opened decoder for frame AND slice threading (`count` 0: as many threads as
/// cores): codecs without frame threads (MPEG-2, DNxHD, ProRes) then still use every core.
pub fn decode_threads(ctx: &mut ff::codec::Context, count: i32) {
    // SAFETY: plain fields of a codec context that is not open yet, which libav reads at open.
    unsafe {
        let c = &mut *ctx.as_mut_ptr();
        c.thread_count = count;
        c.thread_type = ffi::FF_THREAD_FRAME | ffi::FF_THREAD_SLICE;
    }
}

/// A new reference to the same packet data (no copy), for a reader beside the muxer.
pub fn packet_ref(p: &ff::Packet) -> Option<ff::Packet> {
    let mut out = ff::Packet::empty();
    // SAFETY: both packets are live; av_packet_ref adds a reference to `p`'s buffer (or copies
    // unreferenced data) and its properties into the blank `out`, which owns them from then on.
    let r = unsafe {
        ffi::av_packet_ref(
            ff::packet::Mut::as_mut_ptr(&mut out),
            ff::packet::Ref::as_ptr(p),
        )
    };
    (r >= 0).then_some(out)
}

/// Versions of the linked libraries, for `doctor`.
pub fn library_versions() -> Vec<(String, String)> {
    fn v(n: u32) -> String {
        format!("{}.{}.{}", n >> 16, (n >> 8) & 0xff, n & 0xff)
    }
    // SAFETY: the *_version functions take no arguments and return a constant.
    unsafe {
        vec![
            ("libavcodec".into(), v(ffi::avcodec_version())),
            ("libavformat".into(), v(ffi::avformat_version())),
            ("libavfilter".into(), v(ffi::avfilter_version())),
            ("libavutil".into(), v(ffi::avutil_version())),
            ("libswscale".into(), v(ffi::swscale_version())),
            ("libswresample".into(), v(ffi::swresample_version())),
        ]
    }
}

/// Whether an encoder of this name is compiled into the linked FFmpeg.
pub fn has_encoder(name: &str) -> bool {
    init();
    ff::encoder::find_by_name(name).is_some()
}

/// The codec an encoder produces, as a decoder/prober names it (`libopus` → `opus`).
pub fn encoder_codec_name(encoder: &str) -> Option<String> {
    init();
    let codec = ff::encoder::find_by_name(encoder)?;
    // SAFETY: avcodec_get_name accepts any codec id and returns a static string.
    cstr_opt(unsafe { ffi::avcodec_get_name((*codec.as_ptr()).id) })
}

/// Whether libav knows a pixel format of this name.
pub fn pixel_format_known(name: &str) -> bool {
    init();
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: av_get_pix_fmt reads the NUL-terminated name.
    unsafe { ffi::av_get_pix_fmt(c.as_ptr()) != ffi::AVPixelFormat::AV_PIX_FMT_NONE }
}

/// `ffi::AVRational` → `(num, den)`, `None` when unknown.
fn rational(r: ffi::AVRational) -> Option<(i32, i32)> {
    if r.num == 0 || r.den == 0 {
        None
    } else {
        Some((r.num, r.den))
    }
}

fn cstr_opt(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: libav returns NUL-terminated static strings or strings owned by a live object.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}
