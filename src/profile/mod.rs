//! Delivery profiles: TOML files under `firmware-config/profiles/` describing one or several
//! outputs (container, video, audio). Owns parsing and validation, so that a wrong profile is
//! refused when it is loaded, naming the file, the key and why, never half-way through an encode.
//! Knows nothing of libav beyond asking the engine which encoders and muxers exist.
//! Imports `av` (what exists), `qc` (loudness), `output` (HLS text) and `config` values; never
//! jobs, catalog or api.

pub mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Bitrate, Rate};

/// Profiles compiled into the binary: a fresh machine has them without any file on disk.
macro_rules! embedded {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../firmware-config/profiles/", $name)))),*]
    };
}

const EMBEDDED: &[(&str, &str)] = embedded!(
    "web-h264.toml",
    "mobile-h264.toml",
    "proxy.toml",
    "xdcam-hd422-1080i25.toml",
    "xdcam-hd422-720p50.toml",
    "avci100-1080i25.toml",
    "prores-422hq.toml",
    "dnxhd-hq-1080.toml",
    "hls-ladder.toml",
    "dash-ladder.toml",
    "thumbnails.toml",
    "imx50-576i25.toml",
    "live-h264-720p.toml",
    "live-hls-720p-360p.toml",
);

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("{dir}: cannot read profiles directory: {source}")]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown profile {name:?} (known: {known})")]
    Unknown { name: String, known: String },
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Loudness the programme audio of every output must land on.
    pub loudness: Option<LoudnessTarget>,
    /// Outputs published together as one directory (an adaptive-streaming package).
    pub package: Option<Package>,
    pub outputs: Vec<Output>,
    /// Where it was read from (`embedded:…` or a path).
    #[serde(skip)]
    pub source: String,
}

/// A loudness target: EBU R128 (−23 LUFS, −1 dBTP), ATSC A/85 (−24 LKFS, −2 dBTP), streaming
/// (−16 or −14 LUFS, −1 dBTP).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoudnessTarget {
    /// Informative: "EBU R128", "ATSC A/85", "streaming".
    #[serde(default)]
    pub standard: String,
    pub integrated_lufs: f64,
    pub true_peak_dbtp: f64,
    #[serde(default = "half_lu")]
    pub tolerance_lu: f64,
}

fn half_lu() -> f64 {
    0.5
}

/// A package: every output goes into `<stem>_<profile>/<output>/`, published by one rename.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// Write `master.m3u8` over the HLS outputs (bandwidths and codecs measured on the result).
    #[serde(default = "yes")]
    pub hls_master: bool,
    /// Also write `manifest.mpd` over the same fMP4 segments.
    #[serde(default)]
    pub dash: bool,
    /// Leave out HLS video renditions taller than the source (the smallest one is always made).
    #[serde(default = "yes")]
    pub skip_upscale: bool,
}

fn yes() -> bool {
    true
}

/// Still images: a poster frame, or a storyboard (contact sheet) of frames at a fixed interval.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Thumbnails {
    /// "poster" or "storyboard".
    pub mode: String,
    /// Poster: where, as a fraction of the duration.
    #[serde(default = "tenth")]
    pub at: f64,
    /// Storyboard: seconds between frames; each image holds columns × rows of them.
    #[serde(default = "ten")]
    pub interval_seconds: u32,
    #[serde(default = "five")]
    pub columns: u32,
    #[serde(default = "five")]
    pub rows: u32,
}

fn tenth() -> f64 {
    0.1
}

fn ten() -> u32 {
    10
}

fn five() -> u32 {
    5
}

/// HLS output settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HlsSettings {
    #[serde(default = "six")]
    pub segment_seconds: f64,
    /// "fmp4" (CMAF) or "mpegts".
    #[serde(default = "fmp4")]
    pub segment_type: String,
}

impl Default for HlsSettings {
    fn default() -> Self {
        HlsSettings {
            segment_seconds: six(),
            segment_type: fmp4(),
        }
    }
}

fn six() -> f64 {
    6.0
}

fn fmp4() -> String {
    "fmp4".into()
}

/// Tolerances of the check made after the encode.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VerifySettings {
    /// CBR: measured average within this fraction of the bit rate.
    #[serde(default = "five_percent")]
    pub bitrate_tolerance: f64,
}

impl Default for VerifySettings {
    fn default() -> Self {
        VerifySettings {
            bitrate_tolerance: five_percent(),
        }
    }
}

fn five_percent() -> f64 {
    0.05
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    pub name: String,
    /// libavformat muxer name: mp4, mov, mxf, matroska, mpegts.
    pub container: String,
    pub extension: Option<String>,
    #[serde(default)]
    pub faststart: bool,
    pub video: Option<Video>,
    pub audio: Option<Audio>,
    #[serde(default)]
    pub verify: VerifySettings,
    /// For `container = "hls"`.
    pub hls: Option<HlsSettings>,
    /// For `container = "mpegts"`: a constant-rate multiplex at this rate, filled with null
    /// packets (live TS outputs over SRT/UDP).
    pub muxrate: Option<Bitrate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scan {
    Progressive,
    Tff,
    Bff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateControl {
    Vbr,
    Cbr,
    Crf,
    /// The codec's class fixes the rate (AVC-Intra, ProRes, DNxHR): nothing to set.
    Codec,
}

/// `"source"` or a rational.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRate {
    Source,
    Fixed(Rate),
}

impl<'de> Deserialize<'de> for FrameRate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "source" {
            Ok(FrameRate::Source)
        } else {
            s.parse::<Rate>()
                .map(FrameRate::Fixed)
                .map_err(serde::de::Error::custom)
        }
    }
}

impl Serialize for FrameRate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FrameRate::Source => s.serialize_str("source"),
            FrameRate::Fixed(r) => s.serialize_str(&r.to_string()),
        }
    }
}

fn source_rate() -> FrameRate {
    FrameRate::Source
}

fn progressive() -> Scan {
    Scan::Progressive
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Video {
    /// h264, hevc, mpeg2video, prores, dnxhd.
    pub codec: String,
    /// Force one encoder (e.g. `libx264`); otherwise the backend picks.
    pub encoder: Option<String>,
    pub width: u32,
    pub height: u32,
    #[serde(default = "source_rate")]
    pub frame_rate: FrameRate,
    #[serde(default = "progressive")]
    pub scan: Scan,
    pub pix_fmt: String,
    pub profile: Option<String>,
    pub level: Option<String>,
    pub rate_control: RateControl,
    pub bitrate: Option<Bitrate>,
    pub maxrate: Option<Bitrate>,
    pub bufsize: Option<Bitrate>,
    pub crf: Option<u32>,
    pub gop: Option<u32>,
    pub gop_seconds: Option<f64>,
    pub b_frames: Option<u32>,
    #[serde(default)]
    pub closed_gop: bool,
    pub preset: Option<String>,
    pub tune: Option<String>,
    #[serde(default)]
    pub burn_timecode: bool,
    /// Lines of vertical blanking above the picture (D10/IMX: 32 lines make 576 into 608).
    #[serde(default)]
    pub vbi_lines: u32,
    /// Still images instead of a moving picture (container "image2").
    pub thumbnails: Option<Thumbnails>,
    /// Only `bt709` for now: HD colour, with a BT.601 → BT.709 matrix conversion where needed.
    pub color: Option<String>,
    /// `"16:9"`, `"4:3"`; default: square pixels.
    pub display_aspect: Option<String>,
    /// Scale a smaller source up to `width`×`height`. Default: yes for house formats (their
    /// frame size is the format), ladders (which drop larger rungs instead) and stills; no for
    /// single-file platform renditions, which are then made at the source's size.
    pub upscale: Option<bool>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Audio {
    /// aac, pcm_s24le, pcm_s16le, ac3, …
    pub codec: String,
    pub bitrate: Option<Bitrate>,
    pub sample_rate: u32,
    /// One entry per audio track: `mono`, `stereo`, `5.1`.
    pub tracks: Vec<String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl Output {
    pub fn extension(&self) -> String {
        if let Some(e) = &self.extension {
            return e.clone();
        }
        match self.container.as_str() {
            "matroska" => "mkv",
            "hls" => "m3u8",
            "mpegts" => "ts",
            other => other,
        }
        .to_string()
    }
}

impl Video {
    /// Whether a source smaller than the frame is scaled up to it (see [`Video::upscale`]).
    pub fn upscales(&self, container: &str) -> bool {
        self.upscale.unwrap_or_else(|| {
            matches!(self.codec.as_str(), "mpeg2video" | "dnxhd" | "prores")
                || matches!(container, "mxf" | "hls" | "image2" | "gxf")
                || self.thumbnails.is_some()
                || self.options.contains_key("avcintra-class")
        })
    }

    /// GOP length in frames at `rate`.
    pub fn gop_frames(&self, rate: Rate) -> Option<u32> {
        self.gop.or_else(|| {
            self.gop_seconds
                .map(|s| (s * rate.as_f64()).round().max(1.0) as u32)
        })
    }

    pub fn display_aspect(&self) -> Option<(u32, u32)> {
        self.display_aspect.as_deref().and_then(parse_aspect)
    }
}

pub fn parse_aspect(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once(':').or_else(|| s.split_once('/'))?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a > 0 && b > 0).then_some((a, b))
}

/// Channels of a track layout name.
pub fn layout_channels(name: &str) -> Option<u32> {
    match name {
        "mono" => Some(1),
        "stereo" => Some(2),
        "5.1" => Some(6),
        // Discrete channels in one track (D10/IMX AES3: 4 or 8).
        "4ch" => Some(4),
        "8ch" => Some(8),
        _ => None,
    }
}

/// Parses and validates one profile file's text.
pub fn parse(text: &str, file: &str) -> Result<Profile, ProfileError> {
    let invalid = |message: String| ProfileError::Invalid {
        file: file.to_string(),
        message,
    };
    let mut p: Profile = toml::from_str(text).map_err(|e| invalid(refused_keys(text, &e)))?;
    p.source = file.to_string();
    validate(&p).map_err(invalid)?;
    Ok(p)
}

/// Every key of a profile's text that its types refuse, each with its path, where the text is
/// TOML (else the parser's own message).
fn refused_keys(text: &str, e: &toml::de::Error) -> String {
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return toml_message(e);
    };
    // What every profile must have, so that each key can be tried without the others.
    let mut fill = toml::Table::new();
    fill.insert("name".into(), "profile".into());
    fill.insert("outputs".into(), toml::Value::Array(Vec::new()));
    let refused = crate::config::refused::refused::<Profile>(&table, &fill);
    if refused.is_empty() {
        return toml_message(e);
    }
    refused
        .iter()
        .map(|r| format!("{}: {}", r.path, r.why))
        .collect::<Vec<_>>()
        .join("; ")
}

fn toml_message(e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => format!("{msg} (at byte {})", span.start),
        None => msg,
    }
}

/// Checks what a TOML schema cannot: combinations, and that the linked FFmpeg has what is named.
pub fn validate(p: &Profile) -> Result<(), String> {
    let mut errs: Vec<String> = Vec::new();
    if p.name.trim().is_empty() || p.name.contains(['/', '\\', ' ']) {
        errs.push(format!(
            "name {:?}: must be non-empty, without spaces or slashes",
            p.name
        ));
    }
    if let Some(l) = &p.loudness {
        if !(-40.0..=-5.0).contains(&l.integrated_lufs) {
            errs.push(format!(
                "loudness.integrated_lufs: {} is not between -40 and -5",
                l.integrated_lufs
            ));
        }
        if !(-9.0..=0.0).contains(&l.true_peak_dbtp) {
            errs.push(format!(
                "loudness.true_peak_dbtp: {} is not between -9 and 0",
                l.true_peak_dbtp
            ));
        }
        if !(0.1..=3.0).contains(&l.tolerance_lu) {
            errs.push(format!(
                "loudness.tolerance_lu: {} is not between 0.1 and 3",
                l.tolerance_lu
            ));
        }
        if !p.outputs.iter().any(|o| o.audio.is_some()) {
            errs.push("loudness: the profile has no audio output to normalise".into());
        }
    }
    if p.outputs.is_empty() {
        errs.push("outputs: a profile needs at least one [[outputs]]".into());
    }
    let mut names = std::collections::HashSet::new();
    for (i, o) in p.outputs.iter().enumerate() {
        let at = format!("outputs[{i}] ({})", o.name);
        if !names.insert(o.name.as_str()) {
            errs.push(format!("{at}.name: two outputs are named {:?}", o.name));
        }
        if o.name.is_empty()
            || !o
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            errs.push(format!("{at}.name: use letters, digits, - and _ only"));
        }
        if !crate::av::engine::has_muxer(&o.container) {
            errs.push(format!(
                "{at}.container: no muxer {:?} in the linked FFmpeg",
                o.container
            ));
        }
        if o.container == "hls" {
            let h = o.hls.clone().unwrap_or_default();
            if !(1.0..=30.0).contains(&h.segment_seconds) {
                errs.push(format!(
                    "{at}.hls.segment_seconds: {} is not between 1 and 30",
                    h.segment_seconds
                ));
            }
            if !matches!(h.segment_type.as_str(), "fmp4" | "mpegts") {
                errs.push(format!(
                    "{at}.hls.segment_type: {:?} is not \"fmp4\" or \"mpegts\"",
                    h.segment_type
                ));
            }
            if p.package.is_none() {
                errs.push(format!("{at}.container: HLS outputs belong to a [package]"));
            }
            if let Some(v) = &o.video {
                if v.scan != Scan::Progressive {
                    errs.push(format!("{at}.video.scan: HLS renditions are progressive"));
                }
                if let Some(g) = v.gop_seconds {
                    if (h.segment_seconds / g).fract().abs() > 1e-6 {
                        errs.push(format!(
                            "{at}.hls.segment_seconds: {} is not a whole number of GOPs ({g} s): segments must start on an IDR",
                            h.segment_seconds
                        ));
                    }
                }
            }
            if p.package.as_ref().is_some_and(|pk| pk.dash) && h.segment_type != "fmp4" {
                errs.push(format!("{at}.hls.segment_type: DASH needs fMP4 segments"));
            }
        } else if o.hls.is_some() {
            errs.push(format!("{at}.hls: only for container = \"hls\""));
        }
        if o.muxrate.is_some() && o.container != "mpegts" {
            errs.push(format!("{at}.muxrate: only for container = \"mpegts\""));
        }
        if o.container == "image2" && p.package.is_none() {
            errs.push(format!(
                "{at}.container: image outputs belong to a [package]"
            ));
        }
        if o.faststart && !matches!(o.container.as_str(), "mp4" | "mov") {
            errs.push(format!(
                "{at}.faststart: only mp4 and mov have a moov atom to move"
            ));
        }
        if o.video.is_none() && o.audio.is_none() {
            errs.push(format!("{at}: an output needs video, audio or both"));
        }
        if let Some(v) = &o.video {
            errs.extend(
                validate_video(v, o)
                    .into_iter()
                    .map(|e| format!("{at}.video.{e}")),
            );
        }
        if let Some(a) = &o.audio {
            if let Err(e) = validate_audio(a, o) {
                errs.push(format!("{at}.audio.{e}"));
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        // Every problem at once, so that one edit can fix them all.
        Err(errs.join("; "))
    }
}

/// One check of a profile's video: the first problem it finds.
type VideoCheck = fn(&Video, &Output) -> Result<(), String>;

/// Every problem of a profile's video at once: each check below is independent of the others.
fn validate_video(v: &Video, o: &Output) -> Vec<String> {
    let checks: [VideoCheck; 8] = [
        video_frame,
        video_codec,
        video_stills,
        video_encoder,
        video_rate,
        video_gop,
        video_look,
        video_container,
    ];
    checks
        .iter()
        .filter_map(|check| check(v, o).err())
        .collect()
}

/// The frame: size, blanking, fields, D10's fixed frame.
fn video_frame(v: &Video, o: &Output) -> Result<(), String> {
    if !(16..=8192).contains(&v.width) || !v.width.is_multiple_of(2) {
        return Err(format!(
            "width: {} is not an even number between 16 and 8192",
            v.width
        ));
    }
    if !(16..=4320).contains(&v.height) || !v.height.is_multiple_of(2) {
        return Err(format!(
            "height: {} is not an even number between 16 and 4320",
            v.height
        ));
    }
    if !v.vbi_lines.is_multiple_of(2) || v.vbi_lines >= v.height / 2 {
        return Err(format!(
            "vbi_lines: {} must be even and less than half the height",
            v.vbi_lines
        ));
    }
    if o.container == "mxf_d10" && (v.width, v.height, v.gop) != (720, 608, Some(1)) {
        return Err(
            "width/height/gop: D10 is 720x608 (576 lines + 32 VBI), intra only (gop = 1)".into(),
        );
    }
    if v.scan != Scan::Progressive && !v.height.is_multiple_of(4) {
        return Err(format!(
            "height: {} cannot be split into two equal fields with 4:2:0/4:2:2 chroma",
            v.height
        ));
    }
    Ok(())
}

/// A codec antenne encodes.
fn video_codec(v: &Video, _o: &Output) -> Result<(), String> {
    match v.codec.as_str() {
        "h264" | "hevc" | "mpeg2video" | "prores" | "dnxhd" | "mpeg4" | "vp9" | "av1" | "mjpeg"
        | "png" => {}
        other => {
            return Err(format!(
                "codec: {other:?} is not a video codec antenne encodes"
            ))
        }
    }
    Ok(())
}

/// Still images: only in image2 packages, with their settings.
fn video_stills(v: &Video, o: &Output) -> Result<(), String> {
    if let Some(t) = &v.thumbnails {
        if o.container != "image2" {
            return Err(format!(
                "thumbnails: container must be \"image2\", not {:?}",
                o.container
            ));
        }
        match t.mode.as_str() {
            "poster" if (0.0..1.0).contains(&t.at) => {}
            "poster" => {
                return Err(format!(
                    "thumbnails.at: {} is not a fraction in [0, 1)",
                    t.at
                ))
            }
            "storyboard"
                if t.interval_seconds >= 1
                    && (1..=20).contains(&t.columns)
                    && (1..=20).contains(&t.rows) => {}
            "storyboard" => {
                return Err("thumbnails: interval_seconds >= 1, columns and rows 1..20".into())
            }
            other => {
                return Err(format!(
                    "thumbnails.mode: {other:?} is not \"poster\" or \"storyboard\""
                ))
            }
        }
        if o.audio.is_some() {
            return Err("thumbnails: an image output has no audio".into());
        }
    } else if o.container == "image2" {
        return Err("thumbnails: an image2 output needs [outputs.video.thumbnails]".into());
    }
    Ok(())
}

/// The encoder the linked FFmpeg has, and a pixel format it takes (NVENC's too).
fn video_encoder(v: &Video, _o: &Output) -> Result<(), String> {
    if !crate::av::pixel_format_known(&v.pix_fmt) {
        return Err(format!("pix_fmt: {:?} is not a pixel format", v.pix_fmt));
    }
    let encoder = v.encoder.clone().unwrap_or_else(|| {
        crate::av::hw::Backend::Software
            .encoder_for(&v.codec)
            .unwrap_or_else(|| v.codec.clone())
    });
    if !crate::av::has_encoder(&encoder) {
        let key = if v.encoder.is_some() {
            "encoder"
        } else {
            "codec"
        };
        return Err(format!(
            "{key}: no encoder {encoder:?} in the linked FFmpeg"
        ));
    }
    let formats = crate::av::engine::video_encoder_formats(&encoder);
    if !formats.is_empty() && !formats.contains(&v.pix_fmt) {
        return Err(format!(
            "pix_fmt: {encoder} does not encode {} (it takes {})",
            v.pix_fmt,
            formats.join(", ")
        ));
    }
    if v.codec == "h264"
        && !matches!(v.pix_fmt.as_str(), "yuv420p" | "nv12")
        && v.encoder.as_deref().is_some_and(|e| e.contains("nvenc"))
    {
        return Err(format!(
            "pix_fmt: {} H.264 is not something NVENC encodes",
            v.pix_fmt
        ));
    }
    Ok(())
}

/// Rate control and its numbers.
fn video_rate(v: &Video, _o: &Output) -> Result<(), String> {
    match v.rate_control {
        RateControl::Crf => {
            if v.crf.is_none() {
                return Err("crf: rate_control = \"crf\" needs crf".into());
            }
        }
        RateControl::Codec => {}
        RateControl::Cbr | RateControl::Vbr => {
            if v.bitrate.is_none() {
                return Err("bitrate: this rate control needs a bitrate".into());
            }
        }
    }
    if let (Some(b), Some(m)) = (v.bitrate, v.maxrate) {
        if m < b {
            return Err(format!("maxrate: {m} is below bitrate {b}"));
        }
    }
    Ok(())
}

/// The GOP.
fn video_gop(v: &Video, _o: &Output) -> Result<(), String> {
    if v.gop.is_none() && v.gop_seconds.is_none() {
        return Err("gop: give gop (frames) or gop_seconds".into());
    }
    if let Some(s) = v.gop_seconds {
        if !(s > 0.0 && s <= 60.0) {
            return Err(format!("gop_seconds: {s} is not in (0, 60]"));
        }
    }
    if v.gop == Some(0) {
        return Err("gop: must be at least 1".into());
    }
    Ok(())
}

/// Colour and display aspect, and AVC-Intra's fixed sizes and formats.
fn video_look(v: &Video, _o: &Output) -> Result<(), String> {
    if let Some(c) = &v.color {
        if c != "bt709" {
            return Err(format!("color: {c:?}: only \"bt709\" is supported"));
        }
    }
    if v.display_aspect.is_some() && v.display_aspect().is_none() {
        return Err(format!(
            "display_aspect: {:?} is not W:H",
            v.display_aspect.as_deref().unwrap_or("")
        ));
    }
    if let Some(class) = v.options.get("x264-params").and_then(|p| {
        p.split(':')
            .find_map(|kv| kv.strip_prefix("avcintra-class="))
    }) {
        let sizes: &[(u32, u32)] = match class {
            "50" => &[(1440, 1080), (960, 720)],
            "100" | "200" => &[(1920, 1080), (1280, 720)],
            other => {
                return Err(format!(
                    "options.x264-params: AVC-Intra class {other} is not 50, 100 or 200"
                ))
            }
        };
        if !sizes.contains(&(v.width, v.height)) {
            return Err(format!(
                "width/height: AVC-Intra class {class} is defined for {} only, not {}x{}",
                sizes
                    .iter()
                    .map(|(w, h)| format!("{w}x{h}"))
                    .collect::<Vec<_>>()
                    .join(" and "),
                v.width,
                v.height
            ));
        }
        let fmt = if class == "50" {
            "yuv420p10le"
        } else {
            "yuv422p10le"
        };
        if v.pix_fmt != fmt {
            return Err(format!(
                "pix_fmt: AVC-Intra class {class} is {fmt}, not {}",
                v.pix_fmt
            ));
        }
    }
    Ok(())
}

/// What the container can carry.
fn video_container(v: &Video, o: &Output) -> Result<(), String> {
    if o.container == "mxf"
        && !matches!(v.codec.as_str(), "mpeg2video" | "h264" | "dnxhd" | "prores")
    {
        return Err(format!("codec: {} cannot be carried in MXF", v.codec));
    }
    Ok(())
}

fn validate_audio(a: &Audio, o: &Output) -> Result<(), String> {
    if !crate::av::has_encoder(&a.codec) {
        return Err(format!(
            "codec: no encoder {:?} in the linked FFmpeg",
            a.codec
        ));
    }
    if ![32000, 44100, 48000, 96000].contains(&a.sample_rate) {
        return Err(format!(
            "sample_rate: {} is not 32000, 44100, 48000 or 96000",
            a.sample_rate
        ));
    }
    if a.tracks.is_empty() || a.tracks.len() > 16 {
        return Err("tracks: give between 1 and 16 tracks".into());
    }
    for (i, t) in a.tracks.iter().enumerate() {
        if layout_channels(t).is_none() {
            return Err(format!(
                "tracks[{i}]: {t:?} is not mono, stereo, 5.1, 4ch or 8ch"
            ));
        }
    }
    // Containers whose audio is mono or stereo only.
    if matches!(o.container.as_str(), "flv" | "mp3" | "dv" | "wav") || a.codec == "mp3" {
        if let Some((i, t)) = a
            .tracks
            .iter()
            .enumerate()
            .find(|(_, t)| layout_channels(t).unwrap_or(0) > 2)
        {
            return Err(format!(
                "tracks[{i}]: {t} does not fit: {} carries mono or stereo only",
                o.container
            ));
        }
    }
    if o.container == "mxf_d10"
        && (a.tracks.len() != 1 || !matches!(a.tracks[0].as_str(), "4ch" | "8ch"))
    {
        return Err("tracks: D10 carries one track of 4 or 8 channels (\"4ch\" or \"8ch\")".into());
    }
    if o.container == "mxf" || o.container == "mxf_d10" {
        if !a.codec.starts_with("pcm_") {
            return Err(format!(
                "codec: {} in MXF: use pcm_s24le or pcm_s16le",
                a.codec
            ));
        }
        if a.sample_rate != 48000 {
            return Err("sample_rate: MXF audio must be 48000 Hz".into());
        }
    }
    if a.codec == "aac" && a.bitrate.is_none() {
        return Err("bitrate: aac needs a bitrate".into());
    }
    Ok(())
}

/// The profiles directory in use: `--profiles-dir`, then `ANTENNE_PROFILES_DIR`, then
/// `./firmware-config/profiles` when it exists.
pub fn profiles_dir(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(d) = explicit {
        return Some(d.to_owned());
    }
    if let Some(d) = std::env::var_os("ANTENNE_PROFILES_DIR") {
        return Some(PathBuf::from(d));
    }
    let local = PathBuf::from("firmware-config/profiles");
    local.is_dir().then_some(local)
}

/// All profiles: the embedded ones, overridden and extended by every `*.toml` of `dir`; the
/// first mistake found is the error ([`load_each`] gives them all).
pub fn load_all(dir: Option<&Path>) -> Result<Vec<Profile>, ProfileError> {
    let (all, errs) = load_each(dir);
    match errs.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(all),
    }
}

/// The profiles that load, and what is wrong with each one that does not (or with the
/// directory), in file order.
pub fn load_each(dir: Option<&Path>) -> (Vec<Profile>, Vec<ProfileError>) {
    let mut by_name: BTreeMap<String, Profile> = BTreeMap::new();
    let mut errs = Vec::new();
    for (file, text) in EMBEDDED {
        match parse(text, &format!("embedded:{file}")) {
            Ok(p) => {
                by_name.insert(p.name.clone(), p);
            }
            Err(e) => errs.push(e),
        }
    }
    if let Some(dir) = dir {
        match std::fs::read_dir(dir) {
            Err(e) => errs.push(ProfileError::Dir {
                dir: dir.to_owned(),
                source: e,
            }),
            Ok(rd) => {
                let mut files: Vec<PathBuf> = rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect();
                files.sort();
                for f in files {
                    let shown = f.display().to_string();
                    let parsed = std::fs::read_to_string(&f)
                        .map_err(|e| ProfileError::Invalid {
                            file: shown.clone(),
                            message: format!("cannot read: {e}"),
                        })
                        .and_then(|text| parse(&text, &shown));
                    match parsed {
                        Ok(p) => {
                            by_name.insert(p.name.clone(), p);
                        }
                        Err(e) => errs.push(e),
                    }
                }
            }
        }
    }
    (by_name.into_values().collect(), errs)
}

/// One profile by name.
pub fn find(name: &str, dir: Option<&Path>) -> Result<Profile, ProfileError> {
    let all = load_all(dir)?;
    let known = all
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    all.iter()
        .find(|p| p.name == name)
        .cloned()
        .ok_or_else(|| ProfileError::Unknown {
            name: name.to_string(),
            known,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_profiles_validate() {
        let all = load_all(None).unwrap();
        let names: Vec<_> = all.iter().map(|p| p.name.as_str()).collect();
        for n in ["web-h264", "proxy", "xdcam-hd422-1080i25"] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
    }

    #[test]
    fn unknown_key_names_the_key() {
        let text = include_str!("../../firmware-config/profiles/web-h264.toml")
            .replace("preset = \"fast\"", "presett = \"fast\"");
        let e = parse(&text, "x.toml").unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("presett"), "{e}");
    }

    #[test]
    fn impossible_combinations_are_refused() {
        let base = include_str!("../../firmware-config/profiles/xdcam-hd422-1080i25.toml");
        let e = parse(
            &base.replace(
                "codec = \"pcm_s24le\"",
                "codec = \"aac\"\nbitrate = \"128k\"",
            ),
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("audio.codec"), "{e}");
        let avci = include_str!("../../firmware-config/profiles/avci100-1080i25.toml");
        let e = parse(
            &avci
                .replace("width = 1920", "width = 720")
                .replace("height = 1080", "height = 576"),
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("AVC-Intra") && e.contains("720x576"), "{e}");
        let web = include_str!("../../firmware-config/profiles/web-h264.toml");
        let e = parse(
            &web.replace(
                "codec = \"h264\"",
                "codec = \"h264\"\nencoder = \"h264_nvenc\"",
            )
            .replace("pix_fmt = \"yuv420p\"", "pix_fmt = \"p010le\""),
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("NVENC"), "{e}");
        let e = parse(
            &web.replace("container = \"mp4\"", "container = \"flv\"")
                .replace("faststart = true", "")
                .replace("tracks = [\"stereo\"]", "tracks = [\"5.1\"]"),
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tracks[0]") && e.contains("flv"), "{e}");
        let e = parse(&web.replace("width = 1920\n", ""), "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `width`"), "{e}");
        let e = parse(&base.replace("height = 1080", "height = 1081"), "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("video.height"), "{e}");
        let e = parse(&base.replace("tracks = [", "tracks = [\"7.1\", "), "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tracks[0]"), "{e}");
        let e = parse(
            &base.replace("pix_fmt = \"yuv422p\"", "pix_fmt = \"yuv422p10le\""),
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("video.pix_fmt") && e.contains("mpeg2video"),
            "{e}"
        );
    }

    /// A profile with several mistakes names every one of them in one answer.
    #[test]
    fn every_mistake_of_a_profile_is_reported_at_once() {
        let text = r#"
name = "bad"
[[outputs]]
name = "v"
container = "mp4"
[outputs.video]
codec = "h264"
width = 17
height = 180
pix_fmt = "yuv420p"
rate_control = "vbr"
color = "bt601"
[[outputs]]
name = "w"
container = "mp4"
[outputs.audio]
codec = "aac"
sample_rate = 48000
tracks = ["stereo"]
"#;
        let e = parse(text, "bad.toml").unwrap_err().to_string();
        for want in [
            "outputs[0] (v).video.width",
            "outputs[0] (v).video.bitrate",
            "outputs[0] (v).video.gop",
            "outputs[0] (v).video.color",
            "outputs[1] (w).audio.bitrate",
        ] {
            assert!(e.contains(want), "{want} missing from: {e}");
        }
    }

    #[test]
    fn gop_from_seconds() {
        let p = parse(
            include_str!("../../firmware-config/profiles/web-h264.toml"),
            "w",
        )
        .unwrap();
        let v = p.outputs[0].video.as_ref().unwrap();
        assert_eq!(v.gop_frames(Rate::new(25, 1)), Some(50));
        assert_eq!(v.gop_frames(Rate::new(30000, 1001)), Some(60));
    }
}
