//! Pure planning: from what the source is and what the profile wants, the filter chains (as
//! libavfilter text) and the audio track mapping. No libav calls here, so every rule is tested
//! without media.

use crate::config::Rate;
use crate::profile::Scan;

#[derive(Debug, Clone, PartialEq)]
pub struct SrcVideo {
    pub width: u32,
    pub height: u32,
    /// Sample (pixel) aspect ratio; 1:1 when unknown.
    pub sar: (u32, u32),
    pub rate: Rate,
    pub scan: Scan,
    /// ffprobe's colour matrix name, when the source says.
    pub matrix: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DstVideo {
    pub width: u32,
    pub height: u32,
    /// Display aspect; `None` means square pixels.
    pub dar: Option<(u32, u32)>,
    pub rate: Rate,
    pub scan: Scan,
    pub pix_fmt: String,
    pub bt709: bool,
    /// Timecode of the first frame to burn into the picture, with the font file to use.
    pub burn_timecode: Option<(String, Option<String>)>,
    /// Append `hwupload` (VA-API, QSV): the encoder takes frames in GPU memory.
    pub hw_upload: bool,
    /// Still images instead of a moving picture.
    pub stills: Option<Stills>,
    /// Black lines above the picture (D10's VBI): the picture fits in the lines below.
    pub vbi_lines: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stills {
    /// The frame at this time (seconds from the start).
    Poster { at_s: f64 },
    /// A frame every `interval_s`, `columns` × `rows` of them per image (each `width`×`height`).
    Storyboard {
        interval_s: u32,
        columns: u32,
        rows: u32,
    },
}

/// Picture size inside the target frame, keeping the source's display aspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    pub width: u32,
    pub height: u32,
    /// Target sample aspect ratio.
    pub sar: (u32, u32),
}

fn reduce(a: u64, b: u64) -> (u32, u32) {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    let g = x.max(1);
    ((a / g) as u32, (b / g) as u32)
}

fn round_to(v: f64, m: u32) -> u32 {
    let m = f64::from(m);
    ((v / m).round() * m).max(m) as u32
}

/// The frame for a rendition that does not upscale: the profile's `width`×`height` when the
/// source fills it at its own resolution or more, else the same frame shape scaled down until
/// the source picture fits it line for line (a 720p source into a 1080p web profile: 1280×720).
pub fn frame_without_upscale(src: &SrcVideo, dst: &DstVideo) -> (u32, u32) {
    let f = fit(src, dst);
    if f.height == 0 || src.height >= f.height {
        return (dst.width, dst.height);
    }
    let k = f64::from(src.height) / f64::from(f.height);
    let vmul = if dst.scan == Scan::Progressive { 2 } else { 4 };
    (
        round_to(f64::from(dst.width) * k, 2).min(dst.width),
        round_to(f64::from(dst.height) * k, vmul).min(dst.height),
    )
}

/// Fits the source picture into the target frame without stretching: letterbox or pillarbox.
pub fn fit(src: &SrcVideo, dst: &DstVideo) -> Fit {
    let (dn, dd) = dst.dar.unwrap_or((dst.width, dst.height));
    // Target pixel aspect = DAR × H / W.
    let sar = reduce(
        u64::from(dn) * u64::from(dst.height),
        u64::from(dd) * u64::from(dst.width),
    );
    // The picture's own pixel aspect comes from the lines it occupies: with D10's VBI the
    // display aspect belongs to the 576 picture lines, while the signalled one spans all 608.
    let active = dst.height - dst.vbi_lines.min(dst.height / 2);
    let tpar = f64::from(dn) * f64::from(active) / (f64::from(dd) * f64::from(dst.width));
    let (sn, sd) = if src.sar.0 == 0 || src.sar.1 == 0 {
        (1, 1)
    } else {
        src.sar
    };
    let sdar = f64::from(src.width) * f64::from(sn) / (f64::from(src.height) * f64::from(sd));
    let vmul = if dst.scan == Scan::Progressive { 2 } else { 4 };
    let full_w = f64::from(active) * sdar / tpar;
    let (w, h) = if full_w <= f64::from(dst.width) + 1.0 {
        (round_to(full_w, 2).min(dst.width), active)
    } else {
        let h = f64::from(dst.width) * tpar / sdar;
        (dst.width, round_to(h, vmul).min(active))
    };
    Fit {
        width: w,
        height: h,
        sar,
    }
}

fn scale_and_pad(src: &SrcVideo, dst: &DstVideo, interlaced_scale: bool) -> Vec<String> {
    let f = fit(src, dst);
    let mut out = Vec::new();
    let mut scale = format!("scale={}:{}:flags=bicubic", f.width, f.height);
    if interlaced_scale {
        scale.push_str(":interl=1");
    }
    if dst.bt709 {
        let input = input_matrix(src);
        scale.push_str(&format!(
            ":in_color_matrix={input}:out_color_matrix=bt709:out_range=tv"
        ));
    }
    out.push(scale);
    if f.width != dst.width || f.height != dst.height {
        out.push(format!(
            "pad={}:{}:(ow-iw)/2:{}+({}-ih)/2:black",
            dst.width,
            dst.height,
            dst.vbi_lines,
            dst.height - dst.vbi_lines
        ));
    }
    out.push(format!("setsar={}/{}", f.sar.0, f.sar.1));
    out
}

/// The source's colour matrix as swscale names it; untagged sources follow their size
/// (HD sizes BT.709, SD sizes BT.601).
fn input_matrix(src: &SrcVideo) -> &'static str {
    match src.matrix.as_deref() {
        Some("bt709") => "bt709",
        Some("smpte170m") | Some("bt470bg") => "bt601",
        Some("bt2020nc") | Some("bt2020c") => "bt2020",
        _ if src.height >= 720 => "bt709",
        _ => "bt601",
    }
}

/// The same job done on CUDA frames (NVDEC → yadif_cuda/scale_cuda → NVENC), when the GPU filters
/// can do all of it: a progressive target that the picture fills (no pad), no burnt-in text, no
/// colour matrix change. `None` means: download the frames and use [`video_chain`].
pub fn video_chain_cuda(src: &SrcVideo, dst: &DstVideo) -> Option<String> {
    if dst.scan != Scan::Progressive || dst.burn_timecode.is_some() {
        return None;
    }
    if dst.bt709 && input_matrix(src) != "bt709" {
        return None;
    }
    let f = fit(src, dst);
    if f.width != dst.width || f.height != dst.height {
        return None;
    }
    let mut v = Vec::new();
    if src.scan != Scan::Progressive {
        let mode = if dst.rate == src.rate.double() {
            "send_field"
        } else {
            "send_frame"
        };
        v.push(format!("yadif_cuda=mode={mode}:parity=auto:deint=all"));
    }
    v.push(format!("fps={}", dst.rate));
    v.push(format!(
        "scale_cuda=w={}:h={}:format=nv12:interp_algo=bicubic",
        dst.width, dst.height
    ));
    v.push(format!("setsar={}/{}", f.sar.0, f.sar.1));
    Some(format!("[in]{}[out]", v.join(",")))
}

fn field(scan: Scan) -> &'static str {
    match scan {
        Scan::Bff => "bff",
        _ => "tff",
    }
}

/// Poster frame or storyboard: progressive frames picked from the source, scaled, tiled.
fn stills_chain(src: &SrcVideo, dst: &DstVideo, stills: Stills) -> String {
    let mut f: Vec<String> = Vec::new();
    if src.scan != Scan::Progressive {
        f.push("bwdif=mode=send_frame:parity=auto:deint=all".into());
    }
    match stills {
        Stills::Poster { at_s } => {
            f.push(format!("trim=start={at_s:.3}"));
            f.push("select=eq(n\\,0)".into());
        }
        // The first frame, then the first frame at least `interval_s` after the last one taken.
        Stills::Storyboard { interval_s, .. } => f.push(format!(
            "select=isnan(prev_selected_t)+gte(t-prev_selected_t\\,{interval_s})"
        )),
    }
    f.extend(scale_and_pad(src, dst, false));
    if let Stills::Storyboard { columns, rows, .. } = stills {
        f.push(format!("tile={columns}x{rows}"));
    }
    f.push(format!("format={}", dst.pix_fmt));
    format!("[in]{}[out]", f.join(","))
}

/// The video chain from the decoded source to frames the encoder takes.
pub fn video_chain(src: &SrcVideo, dst: &DstVideo) -> String {
    if let Some(stills) = dst.stills {
        return stills_chain(src, dst, stills);
    }
    let mut f: Vec<String> = Vec::new();
    let src_interlaced = src.scan != Scan::Progressive;
    match (src_interlaced, dst.scan) {
        (true, Scan::Progressive) => {
            // One frame per field when the target runs at the field rate (25i → 50p).
            let mode = if dst.rate == src.rate.double() {
                "send_field"
            } else {
                "send_frame"
            };
            f.push(format!("bwdif=mode={mode}:parity=auto:deint=all"));
            f.push(format!("fps={}", dst.rate));
            f.extend(scale_and_pad(src, dst, false));
        }
        (true, scan) if dst.rate == src.rate => {
            f.push(format!("fps={}", dst.rate));
            // Always scaled (a no-op at the same size): the output size must hold even if the
            // source changes size mid-stream.
            f.extend(scale_and_pad(src, dst, true));
            if src.scan != scan {
                f.push(format!("fieldorder={}", field(scan)));
            }
            f.push(format!("setfield={}", field(scan)));
        }
        (true, scan) => {
            f.push("bwdif=mode=send_field:parity=auto:deint=all".into());
            f.push(format!("fps={}", dst.rate.double()));
            f.extend(scale_and_pad(src, dst, false));
            f.push(format!("interlace=scan={}:lowpass=linear", field(scan)));
        }
        (false, Scan::Progressive) => {
            f.push(format!("fps={}", dst.rate));
            f.extend(scale_and_pad(src, dst, false));
        }
        (false, scan) => {
            if src.rate == dst.rate.double() {
                f.extend(scale_and_pad(src, dst, false));
                f.push(format!("interlace=scan={}:lowpass=linear", field(scan)));
            } else if src.rate == dst.rate {
                // Progressive material in an interlaced format (PsF): both fields from one instant.
                f.push(format!("fps={}", dst.rate));
                f.extend(scale_and_pad(src, dst, false));
            } else {
                f.push(format!("fps={}", dst.rate.double()));
                f.extend(scale_and_pad(src, dst, false));
                f.push(format!("interlace=scan={}:lowpass=linear", field(scan)));
            }
            f.push(format!("setfield={}", field(scan)));
        }
    }
    if let Some((tc, font)) = &dst.burn_timecode {
        let font = match font {
            // A path with characters that have a meaning in a filter graph is not used.
            Some(path)
                if path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c)) =>
            {
                format!("fontfile={path}")
            }
            Some(_) => "font=monospace".into(),
            None => "font=monospace".into(),
        };
        f.push(format!(
            "drawtext={font}:timecode='{}':rate={}:fontsize=h/14:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=4:x=(w-tw)/2:y=h-th-h/20",
            tc.replace(':', "\\:").replace(';', "\\;"),
            dst.rate
        ));
    }
    f.push(format!("format={}", dst.pix_fmt));
    if dst.hw_upload {
        f.push("hwupload".into());
    }
    format!("[in]{}[out]", f.join(","))
}

/// What one source audio stream brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrcAudio {
    pub channels: u32,
}

/// Where each output channel comes from: a mix of bus channels with gains, or silence (empty).
pub type ChannelMix = Vec<(usize, f64)>;

/// For every output track, one mix per output channel.
pub fn map_tracks(src: &[SrcAudio], tracks: &[u32]) -> Vec<Vec<ChannelMix>> {
    if src.is_empty() {
        return tracks.iter().map(|&n| silent(n)).collect();
    }
    let mut offsets = Vec::new();
    let mut o = 0usize;
    for s in src {
        offsets.push(o);
        o += s.channels as usize;
    }
    if let Some(m) = mono_to_mono(src, &offsets, tracks) {
        return m;
    }
    let prog = src.iter().position(|s| s.channels >= 2);
    let p = Programme::of(src, &offsets, prog);
    // Further stereo streams (e.g. an M&E pair) for further stereo tracks.
    let mut extra_stereo = src
        .iter()
        .enumerate()
        .filter(|(i, s)| Some(*i) != prog && s.channels == 2)
        .map(|(i, _)| offsets[i]);
    let mut mono_slot = 0usize;
    let mut stereo_used = false;
    tracks
        .iter()
        .map(|&n| match n {
            1 => {
                mono_slot += 1;
                p.mono(mono_slot - 1)
            }
            2 if !stereo_used => {
                stereo_used = true;
                vec![p.l.clone(), p.r.clone()]
            }
            2 => match extra_stereo.next() {
                Some(b) => vec![vec![(b, 1.0)], vec![(b + 1, 1.0)]],
                None => silent(2),
            },
            6 => match p.surround {
                Some(ch) => ch.iter().map(|&c| vec![(c, 1.0)]).collect(),
                None => p.pair_then_silence(6),
            },
            // Discrete multichannel tracks (D10): the programme pair first, then silence.
            other => p.pair_then_silence(other),
        })
        .collect()
}

fn silent(n: u32) -> Vec<ChannelMix> {
    (0..n).map(|_| Vec::new()).collect()
}

/// Mono sources kept apart: into one discrete multichannel track channel for track, or into
/// mono tracks track for track (as a house expects of its own files). `None` for any other
/// mapping.
fn mono_to_mono(
    src: &[SrcAudio],
    offsets: &[usize],
    tracks: &[u32],
) -> Option<Vec<Vec<ChannelMix>>> {
    if !src.iter().all(|s| s.channels == 1) {
        return None;
    }
    let from = |i: usize| -> ChannelMix {
        if i < src.len() {
            vec![(offsets[i], 1.0)]
        } else {
            Vec::new()
        }
    };
    if tracks.len() == 1 && !matches!(tracks[0], 1 | 2 | 6) {
        return Some(vec![(0..tracks[0] as usize).map(from).collect()]);
    }
    if tracks.iter().all(|&n| n == 1) {
        return Some((0..tracks.len()).map(|j| vec![from(j)]).collect());
    }
    None
}

/// The programme: the first stream with 2+ channels, else the first two mono streams; a 5.1
/// programme is also folded down to its stereo pair.
struct Programme {
    l: ChannelMix,
    r: ChannelMix,
    surround: Option<[usize; 6]>,
}

impl Programme {
    fn of(src: &[SrcAudio], offsets: &[usize], prog: Option<usize>) -> Programme {
        let pair = |l: usize, r: usize| Programme {
            l: vec![(l, 1.0)],
            r: vec![(r, 1.0)],
            surround: None,
        };
        match prog {
            Some(p) if src[p].channels == 6 => {
                let b = offsets[p];
                let k = std::f64::consts::FRAC_1_SQRT_2;
                Programme {
                    l: vec![(b, 1.0), (b + 2, k), (b + 4, k)],
                    r: vec![(b + 1, 1.0), (b + 2, k), (b + 5, k)],
                    surround: Some([b, b + 1, b + 2, b + 3, b + 4, b + 5]),
                }
            }
            Some(p) => pair(offsets[p], offsets[p] + 1),
            None if src.len() >= 2 => pair(offsets[0], offsets[1]),
            None => pair(offsets[0], offsets[0]),
        }
    }

    /// The `slot`-th mono track: left, right, then the surround channels one by one.
    fn mono(&self, slot: usize) -> Vec<ChannelMix> {
        match slot {
            0 => vec![self.l.clone()],
            1 => vec![self.r.clone()],
            2..=7 => match self.surround {
                Some(ch) => vec![vec![(ch[slot - 2], 1.0)]],
                None => silent(1),
            },
            _ => silent(1),
        }
    }

    /// A track of `n` channels: the programme pair, then silence.
    fn pair_then_silence(&self, n: u32) -> Vec<ChannelMix> {
        let mut m = silent(n);
        m[0] = self.l.clone();
        m[1] = self.r.clone();
        m
    }
}

/// FFmpeg's default layout name for a channel count.
pub fn default_layout(channels: u32) -> String {
    match channels {
        1 => "mono".into(),
        2 => "stereo".into(),
        3 => "2.1".into(),
        4 => "4.0".into(),
        5 => "5.0".into(),
        6 => "5.1".into(),
        7 => "6.1".into(),
        8 => "7.1".into(),
        n => format!("{n}c"),
    }
}

fn layout_name(channels: u32) -> &'static str {
    match channels {
        1 => "mono",
        2 => "stereo",
        6 => "5.1",
        4 => "4.0",
        8 => "7.1",
        _ => "stereo",
    }
}

/// Audio follows its timestamps: silence where it starts late or has gaps, overlaps dropped, so
/// that it stays in sync with the picture.
const ALIGN: &str = "async=1:first_pts=0";

/// The audio graph: `[in0]…` source streams merged into one bus, one `[outJ]` per track.
/// With no source audio, each track is silence lasting `{duration}` (filled in by the engine).
/// A level correction applied to every track: a gain, and a limiter on the 4× oversampled
/// signal (an approximation of a true-peak limiter) when the gain alone would push peaks over
/// `limit_dbfs`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelFix {
    pub gain_db: f64,
    pub limit_dbfs: Option<f64>,
}

impl LevelFix {
    pub fn chain(&self, rate: u32) -> String {
        let mut c = format!("volume={:.2}dB", self.gain_db);
        if let Some(l) = self.limit_dbfs {
            let lin = 10f64.powf(l / 20.0).clamp(0.0625, 1.0);
            c.push_str(&format!(
                ",aresample={},alimiter=limit={lin:.5}:attack=1:release=60:level=0,aresample={rate}",
                rate * 4
            ));
        }
        c
    }
}

/// The programme of a set of output tracks, as mixes of the source bus: a stereo (or 5.1) first
/// track, else the first two mono tracks as a pair, else the first mono track.
pub fn programme_mix(src: &[SrcAudio], tracks: &[u32]) -> Vec<ChannelMix> {
    let mixes = map_tracks(src, tracks);
    match tracks {
        [n, ..] if *n >= 2 => mixes[0].clone(),
        [1, 1, ..] => vec![mixes[0][0].clone(), mixes[1][0].clone()],
        [_, ..] => mixes[0].clone(),
        [] => Vec::new(),
    }
}

pub fn audio_graph(
    src: &[SrcAudio],
    tracks: &[u32],
    rate: u32,
    sample_fmt: &str,
    level: Option<LevelFix>,
) -> String {
    let fix = level
        .map(|l| format!("{},", l.chain(rate)))
        .unwrap_or_default();
    let tail = |n: u32| {
        format!(
            "aformat=sample_fmts={sample_fmt}:sample_rates={rate}:channel_layouts={}",
            layout_name(n)
        )
    };
    if src.is_empty() {
        return tracks
            .iter()
            .enumerate()
            .map(|(j, &n)| {
                format!(
                    "anullsrc=r={rate}:cl={},atrim=duration={{duration}},{}[out{j}]",
                    layout_name(n),
                    tail(n)
                )
            })
            .collect::<Vec<_>>()
            .join(";");
    }
    let mut parts = Vec::new();
    let k = src.len();
    if k == 1 {
        parts.push(format!("[in0]aresample={rate}:{ALIGN}[bus]"));
    } else {
        for (i, a) in src.iter().enumerate() {
            // amerge needs every input to declare a layout.
            parts.push(format!(
                "[in{i}]aresample={rate}:{ALIGN},aformat=channel_layouts={}[r{i}]",
                default_layout(a.channels)
            ));
        }
        let ins: String = (0..k).map(|i| format!("[r{i}]")).collect();
        parts.push(format!("{ins}amerge=inputs={k}[bus]"));
    }
    let m = tracks.len();
    if m == 1 {
        parts.push("[bus]anull[s0]".into());
    } else {
        let outs: String = (0..m).map(|j| format!("[s{j}]")).collect();
        parts.push(format!("[bus]asplit={m}{outs}"));
    }
    let mixes = map_tracks(src, tracks);
    for (j, (mix, &n)) in mixes.iter().zip(tracks).enumerate() {
        parts.push(format!("[s{j}]{},{fix}{}[out{j}]", pan(mix), tail(n)));
    }
    parts.join(";")
}

/// The `pan` filter making these output channels from the bus.
pub fn pan(mix: &[ChannelMix]) -> String {
    let chans: Vec<String> = mix
        .iter()
        .enumerate()
        .map(|(c, terms)| {
            let expr = if terms.is_empty() {
                "0*c0".to_string()
            } else {
                terms
                    .iter()
                    .map(|(ch, g)| {
                        if (*g - 1.0).abs() < 1e-9 {
                            format!("c{ch}")
                        } else {
                            format!("{g:.6}*c{ch}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("+")
            };
            format!("c{c}={expr}")
        })
        .collect();
    format!("pan={}|{}", layout_name(mix.len() as u32), chans.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    fn src(w: u32, h: u32, sar: (u32, u32), rate: Rate, scan: Scan) -> SrcVideo {
        SrcVideo {
            width: w,
            height: h,
            sar,
            rate,
            scan,
            matrix: None,
        }
    }

    fn dst(w: u32, h: u32, rate: Rate, scan: Scan) -> DstVideo {
        DstVideo {
            width: w,
            height: h,
            dar: Some((16, 9)),
            rate,
            scan,
            pix_fmt: "yuv420p".into(),
            bt709: true,
            burn_timecode: None,
            hw_upload: false,
            stills: None,
            vbi_lines: 0,
        }
    }

    const R25: Rate = Rate::new(25, 1);
    const R50: Rate = Rate::new(50, 1);

    #[test]
    fn four_three_is_pillarboxed_not_stretched() {
        let f = fit(
            &src(640, 480, (1, 1), R25, Scan::Progressive),
            &dst(1920, 1080, R25, Scan::Progressive),
        );
        assert_eq!((f.width, f.height, f.sar), (1440, 1080, (1, 1)));
    }

    #[test]
    fn cinemascope_is_letterboxed() {
        let f = fit(
            &src(1920, 800, (1, 1), R25, Scan::Progressive),
            &dst(1280, 720, R25, Scan::Progressive),
        );
        assert_eq!((f.width, f.height), (1280, 534));
    }

    #[test]
    fn anamorphic_sd_fills_hd() {
        let f = fit(
            &src(720, 576, (64, 45), R25, Scan::Tff),
            &dst(1920, 1080, R25, Scan::Tff),
        );
        assert_eq!((f.width, f.height), (1920, 1080));
        let f = fit(
            &src(1920, 1080, (1, 1), R25, Scan::Tff),
            &DstVideo {
                dar: Some((16, 9)),
                ..dst(720, 576, R25, Scan::Tff)
            },
        );
        assert_eq!((f.width, f.height, f.sar), (720, 576, (64, 45)));
    }

    #[test]
    fn interlaced_to_progressive_deinterlaces() {
        let c = video_chain(
            &src(1920, 1080, (1, 1), R25, Scan::Tff),
            &dst(1280, 720, R25, Scan::Progressive),
        );
        assert!(c.starts_with("[in]bwdif=mode=send_frame"), "{c}");
        let c = video_chain(
            &src(1920, 1080, (1, 1), R25, Scan::Tff),
            &dst(1280, 720, R50, Scan::Progressive),
        );
        assert!(
            c.contains("bwdif=mode=send_field") && c.contains("fps=50/1"),
            "{c}"
        );
    }

    #[test]
    fn interlaced_kept_with_field_order() {
        let c = video_chain(
            &src(1920, 1080, (1, 1), R25, Scan::Bff),
            &dst(1920, 1080, R25, Scan::Tff),
        );
        assert!(!c.contains("bwdif"), "{c}");
        assert!(
            c.contains("fieldorder=tff") && c.contains("setfield=tff"),
            "{c}"
        );
        assert!(c.contains("interl=1"), "{c}");
    }

    #[test]
    fn progressive_double_rate_is_interlaced() {
        let c = video_chain(
            &src(1280, 720, (1, 1), R50, Scan::Progressive),
            &dst(1920, 1080, R25, Scan::Tff),
        );
        assert!(c.contains("interlace=scan=tff"), "{c}");
        let c = video_chain(
            &src(1920, 1080, (1, 1), R25, Scan::Progressive),
            &dst(1920, 1080, R25, Scan::Tff),
        );
        assert!(
            !c.contains("interlace=") && c.contains("setfield=tff"),
            "{c}"
        );
    }

    #[test]
    fn burnt_timecode_is_escaped() {
        let mut d = dst(640, 360, R25, Scan::Progressive);
        d.burn_timecode = Some(("10:00:00:00".into(), None));
        let c = video_chain(&src(1920, 1080, (1, 1), R25, Scan::Progressive), &d);
        assert!(c.contains("timecode='10\\:00\\:00\\:00'"), "{c}");
    }

    #[test]
    fn cuda_chain_only_when_the_gpu_filters_can_do_it() {
        let hd = src(1920, 1080, (1, 1), R25, Scan::Tff);
        let c = video_chain_cuda(&hd, &dst(1280, 720, R25, Scan::Progressive)).unwrap();
        assert!(
            c.contains("yadif_cuda") && c.contains("scale_cuda=w=1280:h=720"),
            "{c}"
        );
        // Pillarbox needs pad (CPU), interlaced output needs interlace (CPU), SD needs a matrix change.
        assert!(video_chain_cuda(
            &src(640, 480, (1, 1), R25, Scan::Progressive),
            &dst(1280, 720, R25, Scan::Progressive)
        )
        .is_none());
        assert!(video_chain_cuda(&hd, &dst(1920, 1080, R25, Scan::Tff)).is_none());
        assert!(video_chain_cuda(
            &src(1024, 576, (1, 1), R25, Scan::Progressive),
            &dst(1280, 720, R25, Scan::Progressive)
        )
        .is_none());
    }

    #[test]
    fn level_fix_adds_gain_and_an_oversampled_limiter() {
        let g = audio_graph(
            &[SrcAudio { channels: 2 }],
            &[2],
            48000,
            "fltp",
            Some(LevelFix {
                gain_db: 3.5,
                limit_dbfs: Some(-2.0),
            }),
        );
        assert!(
            g.contains("volume=3.50dB,aresample=192000,alimiter=limit=0.79433"),
            "{g}"
        );
        assert!(g.contains("aresample=48000,aformat"), "{g}");
        let p = programme_mix(&[SrcAudio { channels: 1 }; 4], &[1; 8]);
        assert_eq!(p, vec![vec![(0, 1.0)], vec![(1, 1.0)]]);
    }

    #[test]
    fn d10_picture_sits_under_the_vbi() {
        let mut d = dst(720, 608, R25, Scan::Tff);
        d.vbi_lines = 32;
        d.bt709 = false;
        let c = video_chain(&src(720, 576, (64, 45), R25, Scan::Tff), &d);
        assert!(
            c.contains("scale=720:576") && c.contains("pad=720:608:(ow-iw)/2:32+(576-ih)/2"),
            "{c}"
        );
        let m = map_tracks(&[SrcAudio { channels: 2 }], &[4]);
        assert_eq!(m[0].len(), 4);
        assert!(m[0][2].is_empty() && m[0][3].is_empty());
    }

    #[test]
    fn stills_pick_and_tile_frames() {
        let mut d = dst(160, 90, Rate::new(1, 10), Scan::Progressive);
        d.stills = Some(Stills::Storyboard {
            interval_s: 10,
            columns: 5,
            rows: 4,
        });
        let c = video_chain(&src(1920, 1080, (1, 1), R25, Scan::Tff), &d);
        assert!(
            c.starts_with("[in]bwdif")
                && c.contains("gte(t-prev_selected_t\\,10)")
                && c.contains("tile=5x4"),
            "{c}"
        );
        d.stills = Some(Stills::Poster { at_s: 12.5 });
        let c = video_chain(&src(1920, 1080, (1, 1), R25, Scan::Progressive), &d);
        assert!(c.contains("trim=start=12.500,select=eq(n\\,0)"), "{c}");
    }

    #[test]
    fn mono_tracks_map_track_for_track() {
        let m = map_tracks(&[SrcAudio { channels: 1 }; 4], &[1; 8]);
        assert_eq!(m[3], vec![vec![(3, 1.0)]]);
        assert!(m[4][0].is_empty() && m[7][0].is_empty());
    }

    #[test]
    fn stereo_to_eight_monos() {
        let m = map_tracks(&[SrcAudio { channels: 2 }], &[1; 8]);
        assert_eq!(m[0], vec![vec![(0, 1.0)]]);
        assert_eq!(m[1], vec![vec![(1, 1.0)]]);
        assert!(m[2..].iter().all(|t| t[0].is_empty()));
    }

    #[test]
    fn five_one_downmix_and_discrete() {
        let m = map_tracks(&[SrcAudio { channels: 6 }], &[2]);
        assert_eq!(m[0][0].len(), 3);
        let m = map_tracks(&[SrcAudio { channels: 6 }], &[1; 8]);
        assert_eq!(m[4], vec![vec![(2, 1.0)]]); // centre on track 5
        assert_eq!(m[7], vec![vec![(5, 1.0)]]);
    }

    #[test]
    fn single_mono_feeds_both_sides() {
        let m = map_tracks(&[SrcAudio { channels: 1 }], &[2]);
        assert_eq!(m[0], vec![vec![(0, 1.0)], vec![(0, 1.0)]]);
    }

    #[test]
    fn audio_graph_text() {
        let g = audio_graph(
            &[SrcAudio { channels: 1 }, SrcAudio { channels: 1 }],
            &[2],
            48000,
            "fltp",
            None,
        );
        assert!(
            g.contains("amerge=inputs=2") && g.contains("pan=stereo|c0=c0|c1=c1"),
            "{g}"
        );
        let g = audio_graph(&[], &[1, 1], 48000, "s32", None);
        assert!(g.contains("anullsrc") && g.contains("[out1]"), "{g}");
    }

    proptest::proptest! {
        /// For any source and target of real-world proportions, the picture fits inside the frame,
        /// on even sizes, and keeps its display aspect within the rounding of a pixel or two.
        #[test]
        fn fit_never_stretches(
            sw in 64u32..4096, sh in 64u32..2160, sn in 1u32..5, sd in 1u32..5,
            tw in (32u32..2048).prop_map(|w| w * 2), th in (32u32..1080).prop_map(|h| h * 2),
            wide in proptest::bool::ANY,
        ) {
            let s = src(sw, sh, (sn, sd), R25, Scan::Progressive);
            let mut d = dst(tw, th, R25, Scan::Progressive);
            d.dar = Some(if wide { (16, 9) } else { (4, 3) });
            let f = fit(&s, &d);
            proptest::prop_assert!(f.width <= tw && f.height <= th);
            proptest::prop_assert!(f.width.is_multiple_of(2) && f.height.is_multiple_of(2));
            let (dn, dd) = d.dar.unwrap();
            let tpar = f64::from(dn) * f64::from(th) / (f64::from(dd) * f64::from(tw));
            let want = f64::from(sw) * f64::from(sn) / (f64::from(sh) * f64::from(sd));
            let got = f64::from(f.width) * tpar / f64::from(f.height);
            // Two pixels of rounding on the smaller side of the fitted picture.
            let slack = 4.0 / f64::from(f.width.min(f.height)).max(2.0);
            proptest::prop_assert!((got / want - 1.0).abs() <= slack + 0.01, "got {got}, want {want}");
        }

        /// Every output track gets one mix per channel, and mixes only name bus channels that exist.
        #[test]
        fn track_maps_are_well_formed(
            src_ch in proptest::collection::vec(proptest::sample::select(vec![1u32, 2, 6]), 0..9),
            tracks in proptest::collection::vec(proptest::sample::select(vec![1u32, 2, 4, 6, 8]), 1..9),
        ) {
            let s: Vec<SrcAudio> = src_ch.iter().map(|&c| SrcAudio { channels: c }).collect();
            let bus: u32 = src_ch.iter().sum();
            let m = map_tracks(&s, &tracks);
            proptest::prop_assert_eq!(m.len(), tracks.len());
            for (mix, &n) in m.iter().zip(&tracks) {
                proptest::prop_assert_eq!(mix.len(), n as usize);
                for ch in mix.iter().flatten() {
                    proptest::prop_assert!((ch.0 as u32) < bus);
                }
            }
        }
    }
}
