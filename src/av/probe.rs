//! `probe`: the technical metadata of a file, with the names and values `ffprobe` uses, so that a
//! media manager can check one against the other. Field order is measured from decoded frames.

use std::path::Path;

use serde::Serialize;

use super::{cstr_opt, ff, ffi, input, rational, AvError};

#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub file: String,
    pub size_bytes: u64,
    pub container: Container,
    pub video: Vec<VideoStream>,
    pub audio: Vec<AudioStream>,
    pub subtitle: Vec<OtherStream>,
    pub data: Vec<OtherStream>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loudness: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Container {
    pub format: String,
    pub format_long: Option<String>,
    pub duration_s: Option<f64>,
    pub start_s: Option<f64>,
    pub bit_rate: Option<i64>,
    pub start_timecode: Option<String>,
    pub tags: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VideoStream {
    pub index: usize,
    pub codec: String,
    pub codec_long: Option<String>,
    pub profile: Option<String>,
    pub level: Option<i32>,
    pub width: u32,
    pub height: u32,
    pub sample_aspect_ratio: Option<String>,
    pub display_aspect_ratio: Option<String>,
    pub frame_rate: Option<String>,
    pub field_order: Option<String>,
    pub pix_fmt: Option<String>,
    pub bit_depth: Option<u32>,
    pub chroma_subsampling: Option<String>,
    pub color_primaries: Option<String>,
    pub color_transfer: Option<String>,
    pub color_matrix: Option<String>,
    pub color_range: Option<String>,
    pub bit_rate: Option<i64>,
    pub duration_s: Option<f64>,
    pub frames: Option<i64>,
    pub timecode: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AudioStream {
    pub index: usize,
    pub codec: String,
    pub codec_long: Option<String>,
    pub profile: Option<String>,
    pub sample_rate: u32,
    pub channels: u32,
    pub channel_layout: Option<String>,
    pub sample_fmt: Option<String>,
    pub bit_depth: Option<u32>,
    pub bit_rate: Option<i64>,
    pub duration_s: Option<f64>,
    pub language: Option<String>,
    pub loudness: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OtherStream {
    pub index: usize,
    pub codec: Option<String>,
    pub codec_type: String,
    pub language: Option<String>,
    pub timecode: Option<String>,
}

impl ProbeReport {
    /// Container duration, else the longest stream.
    pub fn duration_s(&self) -> Option<f64> {
        self.container.duration_s.or_else(|| {
            self.video
                .iter()
                .filter_map(|v| v.duration_s)
                .chain(self.audio.iter().filter_map(|a| a.duration_s))
                .reduce(f64::max)
        })
    }
}

fn ts_seconds(ts: i64, tb: ffi::AVRational) -> Option<f64> {
    if ts == ffi::AV_NOPTS_VALUE || tb.den == 0 {
        None
    } else {
        Some(ts as f64 * tb.num as f64 / tb.den as f64)
    }
}

fn ratio_string(r: Option<(i32, i32)>, sep: char) -> Option<String> {
    r.map(|(n, d)| format!("{n}{sep}{d}"))
}

fn reduce(num: i64, den: i64) -> (i64, i64) {
    match crate::config::Rate::reduced(num, den) {
        Some(r) => (i64::from(r.num), i64::from(r.den)),
        None => (num, den),
    }
}

fn codec_name(id: ffi::AVCodecID) -> (String, Option<String>) {
    // SAFETY: both functions accept any codec id and return static strings or null.
    unsafe {
        let name = cstr_opt(ffi::avcodec_get_name(id)).unwrap_or_else(|| "unknown".into());
        let desc = ffi::avcodec_descriptor_get(id);
        let long = if desc.is_null() {
            None
        } else {
            cstr_opt((*desc).long_name)
        };
        (name, long)
    }
}

fn tag(dict: &ff::DictionaryRef<'_>, key: &str) -> Option<String> {
    dict.get(key).map(|s| s.to_string())
}

/// Reads a file's technical metadata. Field order is measured by decoding up to a few frames.
pub fn probe(path: &Path) -> Result<ProbeReport, AvError> {
    probe_open(path).map(|(report, _)| report)
}

/// [`probe`], also handing back the opened input: the engine rewinds and reuses it instead of
/// opening and analysing the file a second time.
pub fn probe_open(path: &Path) -> Result<(ProbeReport, ff::format::context::Input), AvError> {
    let size_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut ictx = input::open(path)?;
    let mut report = describe(&ictx, path, size_bytes);
    if let Some(first) = report.video.first().map(|v| v.index) {
        if let Some(order) = measure_field_order(&mut ictx, first) {
            report.video[0].field_order = Some(order.into());
        }
    }
    Ok((report, ictx))
}

fn describe(ictx: &ff::format::context::Input, path: &Path, size_bytes: u64) -> ProbeReport {
    let mut report = ProbeReport {
        file: path.display().to_string(),
        size_bytes,
        container: container_of(ictx),
        video: vec![],
        audio: vec![],
        subtitle: vec![],
        data: vec![],
        loudness: None,
    };
    for st in ictx.streams() {
        let s = StreamFacts::of(&st);
        match s.par.codec_type {
            ffi::AVMediaType::AVMEDIA_TYPE_VIDEO => report.video.push(video_stream(ictx, &st, s)),
            ffi::AVMediaType::AVMEDIA_TYPE_AUDIO => report.audio.push(audio_stream(s)),
            ffi::AVMediaType::AVMEDIA_TYPE_SUBTITLE => report.subtitle.push(s.other("subtitle")),
            ffi::AVMediaType::AVMEDIA_TYPE_ATTACHMENT => report.data.push(s.other("attachment")),
            _ => report.data.push(s.other("data")),
        }
    }
    if report.container.start_timecode.is_none() {
        report.container.start_timecode = report
            .video
            .iter()
            .filter_map(|v| v.timecode.clone())
            .chain(report.data.iter().filter_map(|d| d.timecode.clone()))
            .next();
    }
    report
}

/// The container's own facts and tags.
fn container_of(ictx: &ff::format::context::Input) -> Container {
    let fmt = ictx.format();
    // SAFETY: `ictx` is a live format context; three plain fields are read.
    let (duration, start, bit_rate) = unsafe {
        let ctx = ictx.as_ptr();
        ((*ctx).duration, (*ctx).start_time, (*ctx).bit_rate)
    };
    let av_tb = ffi::AVRational {
        num: 1,
        den: ffi::AV_TIME_BASE,
    };
    let tags: std::collections::BTreeMap<String, String> = ictx
        .metadata()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Container {
        format: fmt.name().to_string(),
        format_long: Some(fmt.description().to_string()),
        duration_s: ts_seconds(duration, av_tb),
        start_s: ts_seconds(start, av_tb),
        bit_rate: (bit_rate > 0).then_some(bit_rate),
        start_timecode: tags.get("timecode").cloned(),
        tags,
    }
}

/// What every kind of stream reports, read once.
struct StreamFacts<'a> {
    index: usize,
    par: &'a ffi::AVCodecParameters,
    /// Colour primaries, transfer, matrix, range and field order, as plain integers.
    raw_enums: [i32; 5],
    codec: String,
    codec_long: Option<String>,
    profile: Option<String>,
    language: Option<String>,
    timecode: Option<String>,
    duration_s: Option<f64>,
    bit_rate: Option<i64>,
}

impl<'a> StreamFacts<'a> {
    fn of(st: &ff::format::stream::Stream<'a>) -> StreamFacts<'a> {
        // SAFETY: the stream and its codecpar belong to the input, alive as long as `st`'s
        // borrow of it. Colour and field-order values come from container metadata unchecked
        // (Matroska copies them as they are): they are read as plain integers, never as Rust
        // enums.
        let (par, tb, raw_enums) = unsafe {
            let s = st.as_ptr();
            let p = (*s).codecpar;
            let int = |f: *const i32| f.read();
            let raw = [
                int(std::ptr::addr_of!((*p).color_primaries).cast()),
                int(std::ptr::addr_of!((*p).color_trc).cast()),
                int(std::ptr::addr_of!((*p).color_space).cast()),
                int(std::ptr::addr_of!((*p).color_range).cast()),
                int(std::ptr::addr_of!((*p).field_order).cast()),
            ];
            (&*p, (*s).time_base, raw)
        };
        let (codec, codec_long) = codec_name(par.codec_id);
        let meta = st.metadata();
        StreamFacts {
            index: st.index(),
            par,
            raw_enums,
            codec,
            codec_long,
            // SAFETY: avcodec_profile_name accepts any id/profile pair and returns a static
            // string or null.
            profile: unsafe { cstr_opt(ffi::avcodec_profile_name(par.codec_id, par.profile)) },
            language: tag(&meta, "language").filter(|l| l != "und"),
            timecode: tag(&meta, "timecode"),
            duration_s: ts_seconds(st.duration(), tb),
            bit_rate: (par.bit_rate > 0).then_some(par.bit_rate),
        }
    }

    /// A subtitle, data or attachment stream.
    fn other(self, kind: &str) -> OtherStream {
        OtherStream {
            index: self.index,
            codec: Some(self.codec),
            codec_type: kind.into(),
            language: self.language,
            timecode: self.timecode,
        }
    }
}

fn video_stream(
    ictx: &ff::format::context::Input,
    st: &ff::format::stream::Stream<'_>,
    s: StreamFacts<'_>,
) -> VideoStream {
    let par = s.par;
    // SAFETY: the guess only reads the live format context and its stream.
    let sar = unsafe {
        ffi::av_guess_sample_aspect_ratio(
            ictx.as_ptr() as *mut _,
            st.as_ptr() as *mut _,
            std::ptr::null_mut(),
        )
    };
    let sar = rational(sar);
    let dar = sar.map(|(n, d)| {
        let (a, b) = reduce(par.width as i64 * n as i64, par.height as i64 * d as i64);
        format!("{a}:{b}")
    });
    let avg = rational(st.avg_frame_rate().into());
    let fr = avg.or_else(|| rational(st.rate().into()));
    let (pix_fmt, bit_depth, chroma) = pixel_info(par.format);
    let frames = st.frames();
    let raw = s.raw_enums;
    VideoStream {
        index: s.index,
        codec: s.codec,
        codec_long: s.codec_long,
        profile: s.profile,
        level: (par.level >= 0).then_some(par.level),
        width: par.width as u32,
        height: par.height as u32,
        sample_aspect_ratio: ratio_string(sar, ':'),
        display_aspect_ratio: dar,
        frame_rate: ratio_string(fr, '/'),
        field_order: field_order_name(raw[4]).map(String::from),
        pix_fmt,
        bit_depth,
        chroma_subsampling: chroma,
        color_primaries: enum_name(raw[0], Names::Primaries),
        color_transfer: enum_name(raw[1], Names::Transfer),
        color_matrix: enum_name(raw[2], Names::Space),
        color_range: enum_name(raw[3], Names::Range),
        bit_rate: s.bit_rate,
        duration_s: s.duration_s,
        frames: (frames > 0).then_some(frames),
        timecode: s.timecode,
    }
}

fn audio_stream(s: StreamFacts<'_>) -> AudioStream {
    let par = s.par;
    // SAFETY: av_get_sample_fmt_name accepts any value and returns static or null.
    let sample_fmt = unsafe { cstr_opt(raw::av_get_sample_fmt_name(par.format)) };
    let depth = if par.bits_per_raw_sample > 0 {
        Some(par.bits_per_raw_sample as u32)
    } else if par.bits_per_coded_sample > 0 {
        Some(par.bits_per_coded_sample as u32)
    } else {
        None
    };
    AudioStream {
        index: s.index,
        codec: s.codec,
        codec_long: s.codec_long,
        profile: s.profile,
        sample_rate: par.sample_rate.max(0) as u32,
        channels: par.ch_layout.nb_channels.max(0) as u32,
        channel_layout: layout_name(&par.ch_layout),
        sample_fmt,
        bit_depth: depth,
        bit_rate: s.bit_rate,
        duration_s: s.duration_s,
        language: s.language,
        loudness: None,
    }
}

/// ffprobe's names for `AVFieldOrder`, collapsed to what a media manager asks: which field first.
fn field_order_name(fo: i32) -> Option<&'static str> {
    // AVFieldOrder: 1 progressive, 2 TT, 3 BB, 4 TB, 5 BT.
    match fo {
        1 => Some("progressive"),
        2 | 5 => Some("tff"),
        3 | 4 => Some("bff"),
        _ => None,
    }
}

/// Decodes the first frames of `stream` and reads their interlacing flags.
fn measure_field_order(
    ictx: &mut ff::format::context::Input,
    stream: usize,
) -> Option<&'static str> {
    let params = ictx.stream(stream)?.parameters();
    let mut ctx = ff::codec::Context::from_parameters(params).ok()?;
    super::decode_threads(&mut ctx, 2);
    let mut dec = ctx.decoder().video().ok()?;
    let mut frame = ff::frame::Video::empty();
    let (mut seen, mut inter, mut top) = (0, 0, 0);
    let mut packets = 0;
    let mut tally = |f: &ff::frame::Video, seen: &mut u32| {
        *seen += 1;
        if f.is_interlaced() {
            inter += 1;
            if f.is_top_first() {
                top += 1;
            }
        }
    };
    for (st, pkt) in ictx.packets() {
        if st.index() != stream {
            continue;
        }
        packets += 1;
        if dec.send_packet(&pkt).is_err() {
            continue;
        }
        while dec.receive_frame(&mut frame).is_ok() {
            tally(&frame, &mut seen);
        }
        if seen >= 4 || packets > 300 {
            break;
        }
    }
    if seen < 4 {
        let _ = dec.send_eof();
        while dec.receive_frame(&mut frame).is_ok() {
            tally(&frame, &mut seen);
        }
    }
    if seen == 0 {
        return None;
    }
    Some(if inter * 2 <= seen {
        "progressive"
    } else if top * 2 > inter {
        "tff"
    } else {
        "bff"
    })
}

/// [`pixel_info`] for a pixel format given by name.
pub fn pixel_info_by_name(name: &str) -> (Option<String>, Option<u32>, Option<String>) {
    let Ok(c) = std::ffi::CString::new(name) else {
        return (None, None, None);
    };
    // SAFETY: av_get_pix_fmt reads the NUL-terminated name.
    let id = unsafe { ffi::av_get_pix_fmt(c.as_ptr()) };
    pixel_info(id as i32)
}

/// Pixel format name, bit depth of luma, chroma subsampling as J:a:b.
pub fn pixel_info(format: i32) -> (Option<String>, Option<u32>, Option<String>) {
    if format < 0 {
        return (None, None, None);
    }
    // SAFETY: the int-typed lookup takes any value and returns a static descriptor or null.
    unsafe {
        let desc = raw::av_pix_fmt_desc_get(format);
        if desc.is_null() {
            return (None, None, None);
        }
        let d = &*desc;
        let name = cstr_opt(d.name);
        let depth = Some(d.comp[0].depth as u32);
        let chroma = if d.nb_components < 3 {
            Some("4:0:0".to_string())
        } else {
            Some(
                match (d.log2_chroma_w, d.log2_chroma_h) {
                    (0, 0) => "4:4:4",
                    (1, 0) => "4:2:2",
                    (1, 1) => "4:2:0",
                    (2, 0) => "4:1:1",
                    (2, 2) => "4:1:0",
                    _ => "other",
                }
                .to_string(),
            )
        };
        (name, depth, chroma)
    }
}

enum Names {
    Primaries,
    Transfer,
    Space,
    Range,
}

fn enum_name(v: i32, which: Names) -> Option<String> {
    // Unspecified (2) has a name in libav but means "not said" here.
    if v == 2 && !matches!(which, Names::Range) || v == 0 && matches!(which, Names::Range) {
        return None;
    }
    // SAFETY: the int-typed declarations take any value; libav returns a static string or null.
    unsafe {
        cstr_opt(match which {
            Names::Primaries => raw::av_color_primaries_name(v),
            Names::Transfer => raw::av_color_transfer_name(v),
            Names::Space => raw::av_color_space_name(v),
            Names::Range => raw::av_color_range_name(v),
        })
    }
}

/// libav functions declared with plain `int` parameters where the generated bindings use enums:
/// values read from files may lie outside the enums, and an out-of-range enum is undefined
/// behaviour in Rust while libav checks the range itself.
#[allow(clashing_extern_declarations)]
mod raw {
    use std::ffi::{c_char, c_int};

    use super::ffi;

    extern "C" {
        pub fn av_color_primaries_name(v: c_int) -> *const c_char;
        pub fn av_color_transfer_name(v: c_int) -> *const c_char;
        pub fn av_color_space_name(v: c_int) -> *const c_char;
        pub fn av_color_range_name(v: c_int) -> *const c_char;
        pub fn av_get_sample_fmt_name(v: c_int) -> *const c_char;
        pub fn av_pix_fmt_desc_get(v: c_int) -> *const ffi::AVPixFmtDescriptor;
    }
}

/// ffprobe's channel layout string ("stereo", "5.1(side)", …); null for an unspecified order.
pub fn layout_name(l: &ffi::AVChannelLayout) -> Option<String> {
    if l.order == ffi::AVChannelOrder::AV_CHANNEL_ORDER_UNSPEC {
        return None;
    }
    let mut buf = [0 as std::ffi::c_char; 128];
    // SAFETY: `buf` is writable for its length; `l` is a valid layout borrowed for the call.
    unsafe {
        if ffi::av_channel_layout_describe(l, buf.as_mut_ptr(), buf.len()) < 0 {
            return None;
        }
        cstr_opt(buf.as_ptr())
    }
}

/// The codec name, libav profile number and extradata (avcC, hvcC, AudioSpecificConfig) of the
/// first stream of a kind: what RFC 6381 codec strings are made from.
pub fn codec_config(path: &Path, video: bool) -> Result<Option<(String, i32, Vec<u8>)>, AvError> {
    let ictx = input::open(path)?;
    let want = if video {
        ffi::AVMediaType::AVMEDIA_TYPE_VIDEO
    } else {
        ffi::AVMediaType::AVMEDIA_TYPE_AUDIO
    };
    for st in ictx.streams() {
        // SAFETY: the codec parameters belong to `ictx`, alive for this loop; extradata is
        // `extradata_size` bytes long when not null.
        let found = unsafe {
            let par = &*(*st.as_ptr()).codecpar;
            (par.codec_type == want).then(|| {
                let data = if par.extradata.is_null() || par.extradata_size <= 0 {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(par.extradata, par.extradata_size as usize).to_vec()
                };
                (codec_name(par.codec_id).0, par.profile, data)
            })
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}
