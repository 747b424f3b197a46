//! The per-family encoder option tables: what each encoder family (x264, x265, NVENC, VA-API,
//! QSV, libavcodec's MPEG-2) is told so that a profile's rate control, GOP and profile/level come
//! out as declared, and the profile's own `options` over them. Intra-only families (ProRes,
//! DNxHD/HR) have no GOP to keep and need nothing of their own; audio encoders (AAC, PCM) take
//! the profile's options as they are. Pure: file and live pipelines share it.

use crate::config::Rate;
use crate::profile::{self, RateControl};

pub(super) fn level_option(codec: &str, profile: Option<&str>, level: &str) -> Option<i32> {
    if codec == "mpeg2video" && profile == Some("422") {
        // 4:2:2 profile levels use the escape coding: High = 2, Main = 5.
        return match level {
            "high" => Some(2),
            "main" => Some(5),
            _ => None,
        };
    }
    if codec == "mpeg2video" {
        return match level {
            "high" => Some(4),
            "high1440" => Some(6),
            "main" => Some(8),
            "low" => Some(10),
            _ => None,
        };
    }
    None
}

pub(super) fn profile_option(codec: &str, profile: &str) -> Option<i32> {
    if codec == "mpeg2video" {
        return match profile {
            "422" => Some(0),
            "high" => Some(1),
            "main" => Some(4),
            "simple" => Some(5),
            _ => None,
        };
    }
    None
}

fn nvenc_preset(x264: &str) -> &'static str {
    match x264 {
        "ultrafast" | "superfast" => "p1",
        "veryfast" => "p2",
        "faster" => "p3",
        "fast" => "p4",
        "medium" => "p5",
        "slow" => "p6",
        _ => "p7",
    }
}

/// The encoder families whose private options differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EncoderFamily {
    X264,
    X265,
    Nvenc,
    Vaapi,
    Qsv,
    /// libavcodec's own MPEG-1/2 (XDCAM, IMX).
    Mpeg2,
    /// Intra-only codecs: no GOP to keep (ProRes, DNxHD/HR, and anything else).
    Other,
}

impl EncoderFamily {
    fn of(encoder: &str) -> EncoderFamily {
        match encoder {
            "libx264" | "libx264rgb" => EncoderFamily::X264,
            "libx265" => EncoderFamily::X265,
            "mpeg2video" | "mpeg1video" => EncoderFamily::Mpeg2,
            e if e.contains("nvenc") => EncoderFamily::Nvenc,
            e if e.contains("vaapi") => EncoderFamily::Vaapi,
            e if e.contains("qsv") => EncoderFamily::Qsv,
            _ => EncoderFamily::Other,
        }
    }
}

/// Private encoder options for a profile's video, per encoder family. Every family keeps a
/// fixed GOP whatever the picture does: scene-cut detection would add I-frames at cuts, flashes
/// and fades, and break the cadence that house formats (XDCAM's 12) and aligned ladder segments
/// rely on. The profile's own `options` are applied on top by the caller.
pub(super) fn encoder_options(
    encoder: &str,
    v: &profile::Video,
    rate: Rate,
    interlaced: bool,
) -> Vec<(String, String)> {
    let mut o = match EncoderFamily::of(encoder) {
        EncoderFamily::X264 => x264_options(v, rate),
        EncoderFamily::X265 => x265_options(v, rate),
        EncoderFamily::Nvenc => nvenc_options(v),
        EncoderFamily::Vaapi => vaapi_options(v),
        EncoderFamily::Qsv => qsv_options(v),
        EncoderFamily::Mpeg2 => mpeg2_options(v, rate, interlaced),
        EncoderFamily::Other => Vec::new(),
    };
    if interlaced && encoder == "libx264" {
        o.push(("flags".into(), "+ildct+ilme".into()));
    }
    o
}

fn opt(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

/// What x264 and x265 take first, alike. Both then get `forced-idr`: an IDR at every GOP
/// start, so that segments and edits can cut anywhere on a GOP.
fn x26x_common(v: &profile::Video) -> Vec<(String, String)> {
    let mut o = Vec::new();
    if let Some(p) = &v.preset {
        o.push(opt("preset", p.clone()));
    }
    if let Some(t) = &v.tune {
        o.push(opt("tune", t.clone()));
    }
    o
}

fn x264_options(v: &profile::Video, rate: Rate) -> Vec<(String, String)> {
    let mut o = x26x_common(v);
    // x264 takes these profile names; others ("high 4:2:2 intra" for AVC-Intra, set by
    // avcintra-class) are only checked on the result.
    if let Some(p) = v
        .profile
        .as_deref()
        .filter(|p| ["baseline", "main", "high", "high10", "high422", "high444"].contains(p))
    {
        o.push(opt("profile", p));
    }
    if let Some(l) = &v.level {
        o.push(opt("level", l.clone()));
    }
    if v.rate_control == RateControl::Crf {
        o.push(opt("crf", v.crf.unwrap_or(23).to_string()));
    }
    if v.rate_control == RateControl::Cbr {
        o.push(opt("nal-hrd", "cbr"));
    }
    o.push(opt("forced-idr", "1"));
    o.push(opt("sc_threshold", "0"));
    // A fixed GOP: no short GOPs either (x264 caps this at gop/2 + 1).
    if let Some(g) = v.gop_frames(rate) {
        o.push(opt("keyint_min", g.to_string()));
    }
    o
}

fn x265_options(v: &profile::Video, rate: Rate) -> Vec<(String, String)> {
    let mut o = x26x_common(v);
    if let Some(p) = &v.profile {
        o.push(opt("profile", p.clone()));
    }
    if v.rate_control == RateControl::Crf {
        o.push(opt("crf", v.crf.unwrap_or(23).to_string()));
    }
    o.push(opt("forced-idr", "1"));
    let mut params = vec!["scenecut=0".to_string(), "open-gop=0".to_string()];
    if let Some(g) = v.gop_frames(rate) {
        params.push(format!("keyint={g}"));
        params.push(format!("min-keyint={g}"));
    }
    if let Some(l) = &v.level {
        params.push(format!("level-idc={l}"));
    }
    o.push(opt("x265-params", params.join(":")));
    o
}

fn nvenc_options(v: &profile::Video) -> Vec<(String, String)> {
    let mut o = vec![opt(
        "preset",
        nvenc_preset(v.preset.as_deref().unwrap_or("medium")),
    )];
    if let Some(p) = &v.profile {
        o.push(opt("profile", p.clone()));
    }
    o.push(opt(
        "rc",
        match v.rate_control {
            RateControl::Cbr => "cbr",
            RateControl::Vbr | RateControl::Codec => "vbr",
            RateControl::Crf => "constqp",
        },
    ));
    // Look-ahead may insert I-frames at scene cuts; keep the GOP, and make each one IDR.
    o.push(opt("no-scenecut", "1"));
    o.push(opt("forced-idr", "1"));
    o
}

fn vaapi_options(v: &profile::Video) -> Vec<(String, String)> {
    let mut o: Vec<_> = v
        .profile
        .iter()
        .map(|p| opt("profile", p.clone()))
        .collect();
    o.push(opt(
        "rc_mode",
        if v.rate_control == RateControl::Cbr {
            "CBR"
        } else {
            "VBR"
        },
    ));
    // Every I-frame an IDR: VA-API encoders have no scene-cut detection of their own, so the
    // GOP is as set.
    o.push(opt("idr_interval", "0"));
    o
}

fn qsv_options(v: &profile::Video) -> Vec<(String, String)> {
    let mut o: Vec<_> = v
        .profile
        .iter()
        .map(|p| opt("profile", p.clone()))
        .collect();
    // No adaptive I-frames at scene changes, no adaptive GOP length.
    o.push(opt("adaptive_i", "0"));
    o.push(opt("adaptive_b", "0"));
    o
}

/// libavcodec's own MPEG-1/2 (XDCAM, IMX).
fn mpeg2_options(v: &profile::Video, rate: Rate, interlaced: bool) -> Vec<(String, String)> {
    // libavcodec's MPEG encoders turn a P-picture into an I-picture at a scene change unless
    // the threshold is at its "off" value.
    let mut o = vec![opt("sc_threshold", "1000000000")];
    if v.closed_gop && v.gop_frames(rate).is_some_and(|g| g > 1) {
        // A closed GOP otherwise ends early where its last B-frames would have referred to the
        // next I-frame (13 instead of 15); this keeps it whole.
        o.push(opt("mpv_flags", "+strict_gop"));
    }
    if interlaced {
        o.push(opt("flags", "+ildct+ilme"));
        o.push(opt("alternate_scan", "1"));
    }
    o
}

/// The options a video output's encoder is opened with: its family's, then the profile's own
/// `options` over them (a key the profile sets replaces the family's).
pub(super) fn video_options(
    encoder: &str,
    v: &profile::Video,
    rate: Rate,
    interlaced: bool,
) -> Vec<(String, String)> {
    let mut options = encoder_options(encoder, v, rate, interlaced);
    for (k, val) in &v.options {
        options.retain(|(ok, _)| ok != k);
        options.push((k.clone(), val.clone()));
    }
    options
}

/// An audio output's encoder options: the profile's own.
pub(super) fn audio_options(a: &profile::Audio) -> Vec<(String, String)> {
    a.options
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(codec: &str, extra: &str) -> profile::Video {
        toml::from_str(&format!(
            "codec = \"{codec}\"\nwidth = 1920\nheight = 1080\npix_fmt = \"yuv420p\"\nrate_control = \"vbr\"\nbitrate = \"8M\"\ngop_seconds = 2.0\nb_frames = 3\n{extra}"
        ))
        .unwrap()
    }

    fn has(o: &[(String, String)], k: &str, v: &str) -> bool {
        o.iter().any(|(a, b)| a == k && b == v)
    }

    /// Every encoder family gets what keeps its GOP fixed through scene cuts; the ones that
    /// cannot run here (NVENC, VA-API, QSV) are checked on the options they are given.
    #[test]
    fn every_encoder_family_is_told_to_keep_its_gop() {
        let r = Rate::new(25, 1);
        let o = encoder_options("libx264", &video("h264", ""), r, false);
        assert!(
            has(&o, "sc_threshold", "0") && has(&o, "keyint_min", "50"),
            "{o:?}"
        );
        assert!(has(&o, "forced-idr", "1"));
        let o = encoder_options("libx265", &video("hevc", ""), r, false);
        let params = &o.iter().find(|(k, _)| k == "x265-params").unwrap().1;
        for p in ["scenecut=0", "open-gop=0", "keyint=50", "min-keyint=50"] {
            assert!(params.split(':').any(|x| x == p), "{params}");
        }
        for nv in ["h264_nvenc", "hevc_nvenc"] {
            let o = encoder_options(nv, &video("h264", ""), r, false);
            assert!(
                has(&o, "no-scenecut", "1") && has(&o, "forced-idr", "1"),
                "{o:?}"
            );
        }
        let o = encoder_options("h264_vaapi", &video("h264", ""), r, false);
        assert!(has(&o, "idr_interval", "0"), "{o:?}");
        let o = encoder_options("h264_qsv", &video("h264", ""), r, false);
        assert!(has(&o, "adaptive_i", "0"), "{o:?}");
        let o = encoder_options(
            "mpeg2video",
            &video("mpeg2video", "closed_gop = true"),
            r,
            true,
        );
        assert!(has(&o, "sc_threshold", "1000000000"), "{o:?}");
        assert!(has(&o, "mpv_flags", "+strict_gop") && has(&o, "flags", "+ildct+ilme"));
        let o = encoder_options("mpeg2video", &video("mpeg2video", ""), r, false);
        assert!(
            !o.iter().any(|(k, _)| k == "mpv_flags" || k == "flags"),
            "{o:?}"
        );
    }

    #[test]
    fn the_profiles_own_options_replace_the_familys() {
        let v = video(
            "h264",
            "[options]\nsc_threshold = \"40\"\nx264opts = \"no-deblock\"",
        );
        let o = video_options("libx264", &v, Rate::new(25, 1), false);
        assert_eq!(o.iter().filter(|(k, _)| k == "sc_threshold").count(), 1);
        assert!(
            has(&o, "sc_threshold", "40") && has(&o, "x264opts", "no-deblock"),
            "{o:?}"
        );
    }
}
