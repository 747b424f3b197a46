//! The `[playout]` section: how often schedules are validated again, and the channels declared in
//! antenne.toml (`[[playout.channels]]`, the same shape as `POST /v1/channels`).

use serde::{Deserialize, Serialize};

use super::Rate;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Playout {
    /// Seconds between two passes that validate again the items starting soon (1-3600).
    pub check_every_s: u32,
    /// An item is validated again this many seconds before it starts (60-86400).
    pub check_before_s: u32,
    /// Every channel's assets must be approved (review) to air: one that is not is reported by
    /// validation (`not_approved`, with the reason).
    pub require_approval: bool,
    pub channels: Vec<Channel>,
}

impl Default for Playout {
    fn default() -> Self {
        Playout {
            check_every_s: 60,
            check_before_s: 1800,
            require_approval: false,
            channels: Vec::new(),
        }
    }
}

fn default_rate() -> Rate {
    Rate::new(25, 1)
}

fn default_epoch() -> String {
    "2026-01-01T00:00:00Z".into()
}

fn default_format() -> String {
    "1080i25".into()
}

fn default_loudness() -> f64 {
    -23.0
}

fn yes() -> bool {
    true
}

/// A playout channel: declared under `[[playout.channels]]`, or the body of `POST /v1/channels`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// Unique; 1-64 letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// The house frame rate (`25`, `30000/1001` or `29.97`, `50`, ...); timecode is drop-frame
    /// at 29.97 and 59.94.
    #[serde(default = "default_rate")]
    #[schema(value_type = String, example = "25")]
    pub rate: Rate,
    /// Frame 0 of the channel (RFC 3339): frames are counted from here.
    #[serde(default = "default_epoch")]
    pub epoch: String,
    /// The house format the engine conforms to (`1080i25`, `1080p25`, `720p50`, `576i25`, ...).
    #[serde(default = "default_format")]
    pub format: String,
    /// Integrated loudness target, LUFS (-70 to 0).
    #[serde(default = "default_loudness")]
    pub loudness_lufs: f64,
    /// Whether a 5.1 track is carried besides stereo.
    #[serde(default)]
    pub surround: bool,
    /// For the rights windows of the scheduled assets: where and how the channel airs.
    #[serde(default)]
    pub territory: String,
    #[serde(default)]
    pub platform: String,
    /// The filler: house ids of catalog assets played in turn; empty: generated slate.
    #[serde(default)]
    pub filler: Vec<String>,
    /// The channel logo (a PNG's path or a house id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo: Option<String>,
    /// Timecode and clock overlays.
    #[serde(default)]
    pub overlay_timecode: bool,
    /// This channel's assets must be approved (review) to air (also `[playout]
    /// require_approval` for every channel).
    #[serde(default)]
    pub require_approval: bool,
    /// Where the channel goes: `srt://`, `udp://`, `rtp://`, `rtmp://` URLs, `hls:<folder>`, or
    /// `record` (a recording of the channel into the catalog: an asset per run).
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Whether the channel airs (started at service start).
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Channel {
    /// Every mistake, each as (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        let n = &self.name;
        if n.is_empty()
            || n.len() > 64
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            v.push((
                "name",
                format!("{n:?}: 1-64 letters, digits, '-', '_' or '.'"),
            ));
        }
        if !(10.0..=120.0).contains(&self.rate.as_f64()) {
            v.push(("rate", format!("{}: 10 to 120 frames a second", self.rate)));
        }
        if time::OffsetDateTime::parse(&self.epoch, &time::format_description::well_known::Rfc3339)
            .map_or(true, |t| t.unix_timestamp() < 0 || t.nanosecond() != 0)
        {
            v.push((
                "epoch",
                format!(
                    "{:?} is not an RFC 3339 time to the second after 1970",
                    self.epoch
                ),
            ));
        }
        if !(-70.0..=0.0).contains(&self.loudness_lufs) {
            v.push(("loudness_lufs", "-70 to 0".into()));
        }
        for o in &self.outputs {
            let ok = ["srt://", "udp://", "rtp://", "rtmp://", "rtmps://", "hls:"]
                .iter()
                .any(|p| o.starts_with(p) && o.len() > p.len())
                || o == "record";
            if !ok {
                v.push((
                    "outputs",
                    format!(
                        "{o:?}: an srt://, udp://, rtp:// or rtmp:// URL, hls:<folder> or record"
                    ),
                ));
            }
        }
        let f = self.format.trim();
        let picture_ok = f.find(['i', 'p']).is_some_and(|at| {
            ["2160", "1080", "720", "576", "480", "360", "180"].contains(&&f[..at])
                && f[at + 1..].parse::<f64>().is_ok_and(|r| r > 0.0)
        });
        if !picture_ok {
            v.push((
                "format",
                format!(
                    "{f:?}: a picture height (2160, 1080, 720, 576, 480, 360, 180), i or p, and \
                     the rate, e.g. 1080i25 or 720p50"
                ),
            ));
        }
        v
    }
}

/// Checks the section.
pub fn check(p: &Playout, bad: &mut impl FnMut(&'static str, String)) {
    if !(1..=3600).contains(&p.check_every_s) || !(60..=86_400).contains(&p.check_before_s) {
        bad(
            "playout",
            "check_every_s must be 1-3600 and check_before_s 60-86400".into(),
        );
    }
    let mut names = std::collections::HashSet::new();
    for (i, c) in p.channels.iter().enumerate() {
        for (k, m) in c.problems() {
            bad(
                "playout.channels",
                format!("[[playout.channels]] #{}: {k}: {m}", i + 1),
            );
        }
        if !names.insert(c.name.as_str()) {
            bad(
                "playout.channels",
                format!("two channels are named {:?}", c.name),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_channels_are_checked() {
        let p: Playout = toml::from_str(
            r#"
            [[channels]]
            name = "one"
            rate = "29.97"
            territory = "CH"
            outputs = ["srt://0.0.0.0:9000?mode=listener", "hls:/srv/hls/one"]
            [[channels]]
            name = "one"
            rate = "5"
            epoch = "yesterday"
            outputs = ["ftp://x"]
            "#,
        )
        .unwrap();
        assert_eq!(p.channels[0].rate, Rate::new(30000, 1001));
        assert!(p.channels[0].problems().is_empty());
        let mut bad = Vec::new();
        check(&p, &mut |k, m| bad.push((k, m)));
        let all = format!("{bad:?}");
        for w in ["rate", "epoch", "outputs", "two channels are named"] {
            assert!(all.contains(w), "{w}: {all}");
        }
        assert!(toml::from_str::<Playout>("[[channels]]\nname = \"x\"\ncolour = 1").is_err());
    }
}
