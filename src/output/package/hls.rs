//! HLS (RFC 8216) text: read the media playlists libavformat's hls muxer writes and check them
//! against the spec's duration rule, write and read master playlists, and build the RFC 6381
//! CODECS strings they carry. Pure: text and bytes in, text out; imports nothing of the crate
//! (no `av`, tokio or SQL).

use std::fmt::Write as _;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq)]
pub struct MediaSegment {
    pub uri: String,
    pub duration_s: f64,
    /// Size in bytes, filled by the caller from the file; parsing leaves it `None`.
    pub bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist {
    /// `EXT-X-VERSION`; 1 when the playlist has none.
    pub version: u32,
    pub target_duration: u32,
    /// `EXT-X-MAP` URI: the fMP4 initialisation segment (the first, if there are several).
    pub map_uri: Option<String>,
    pub segments: Vec<MediaSegment>,
    pub ended: bool,
    pub playlist_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub uri: String,
    /// Peak bits/s.
    pub bandwidth: u64,
    /// Bits/s; 0 leaves `AVERAGE-BANDWIDTH` out.
    pub average_bandwidth: u64,
    /// 0 in either leaves `RESOLUTION` out, as for an audio-only variant.
    pub width: u32,
    pub height: u32,
    /// RFC 6381 list, e.g. `avc1.640028,mp4a.40.2`; empty leaves `CODECS` out.
    pub codecs: String,
    /// Written with three decimals; 0 leaves `FRAME-RATE` out.
    pub frame_rate: f64,
    /// `AUDIO` group id; the caller writes the matching `EXT-X-MEDIA` tags.
    pub audio_group: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HlsError {
    #[error("line 1: playlist does not start with #EXTM3U")]
    MissingExtm3u,
    #[error("line {line}: {field}: {value:?} is not a valid number")]
    BadNumber {
        line: usize,
        field: String,
        value: String,
    },
    #[error("line {line}: {tag} has no URI line after it")]
    TagWithoutUri { line: usize, tag: &'static str },
    #[error("line {line}: URI {uri:?} has no {tag} before it")]
    UriWithoutTag {
        line: usize,
        uri: String,
        tag: &'static str,
    },
    #[error("media playlist has no #EXT-X-TARGETDURATION")]
    MissingTargetDuration,
    #[error("line {line}: {tag} lacks the {attribute} attribute")]
    MissingAttribute {
        line: usize,
        tag: &'static str,
        attribute: &'static str,
    },
    #[error("line {line}: malformed attribute list: {what}")]
    BadAttributeList { line: usize, what: String },
    #[error("line {line}: {tag} is a {found} playlist tag; expected a {expected} playlist")]
    WrongKind {
        line: usize,
        tag: String,
        found: &'static str,
        expected: &'static str,
    },
}

const EXTINF: &str = "#EXTINF";
const STREAM_INF: &str = "#EXT-X-STREAM-INF";
const MEDIA_ONLY: &[&str] = &[EXTINF, "#EXT-X-TARGETDURATION", "#EXT-X-MEDIA-SEQUENCE"];
const MASTER_ONLY: &[&str] = &[STREAM_INF, "#EXT-X-I-FRAME-STREAM-INF", "#EXT-X-MEDIA"];

pub fn parse_media(text: &str) -> Result<MediaPlaylist, HlsError> {
    let mut playlist = MediaPlaylist {
        version: 1,
        target_duration: 0,
        map_uri: None,
        segments: Vec::new(),
        ended: false,
        playlist_type: None,
    };
    let mut target_duration = None;
    let mut pending: Option<(usize, f64)> = None;
    for (n, line) in body_lines(text)? {
        match classify(line) {
            Line::Comment => {}
            Line::Uri(uri) => {
                let Some((_, duration_s)) = pending.take() else {
                    return Err(HlsError::UriWithoutTag {
                        line: n,
                        uri: uri.to_string(),
                        tag: EXTINF,
                    });
                };
                playlist.segments.push(MediaSegment {
                    uri: uri.to_string(),
                    duration_s,
                    bytes: None,
                });
            }
            Line::Tag(tag, value) => match tag {
                EXTINF => {
                    if let Some((line, _)) = pending {
                        return Err(HlsError::TagWithoutUri { line, tag: EXTINF });
                    }
                    let duration = value.split_once(',').map_or(value, |(d, _)| d).trim();
                    pending = Some((n, decimal_float(n, tag, duration)?));
                }
                "#EXT-X-VERSION" => playlist.version = decimal_integer(n, tag, value)?,
                "#EXT-X-TARGETDURATION" => target_duration = Some(decimal_integer(n, tag, value)?),
                "#EXT-X-MEDIA-SEQUENCE" | "#EXT-X-DISCONTINUITY-SEQUENCE" => {
                    decimal_integer::<u64>(n, tag, value)?;
                }
                "#EXT-X-PLAYLIST-TYPE" => playlist.playlist_type = Some(value.to_string()),
                "#EXT-X-MAP" => {
                    let attrs = attributes(n, value)?;
                    let uri = attribute(&attrs, "URI").ok_or(HlsError::MissingAttribute {
                        line: n,
                        tag: "#EXT-X-MAP",
                        attribute: "URI",
                    })?;
                    playlist.map_uri.get_or_insert_with(|| uri.to_string());
                }
                "#EXT-X-ENDLIST" => playlist.ended = true,
                _ if MASTER_ONLY.contains(&tag) => {
                    return Err(HlsError::WrongKind {
                        line: n,
                        tag: tag.to_string(),
                        found: "master",
                        expected: "media",
                    })
                }
                _ => {}
            },
        }
    }
    if let Some((line, _)) = pending {
        return Err(HlsError::TagWithoutUri { line, tag: EXTINF });
    }
    playlist.target_duration = target_duration.ok_or(HlsError::MissingTargetDuration)?;
    Ok(playlist)
}

impl MediaPlaylist {
    /// Spec violations that still leave the playlist readable, one sentence each.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, s) in self.segments.iter().enumerate() {
            let rounded = s.duration_s.round();
            if rounded > f64::from(self.target_duration) {
                problems.push(format!(
                    "segment {} ({}): EXTINF {:.3} s rounds to {rounded} s, above \
                     EXT-X-TARGETDURATION {} (RFC 8216 §4.3.3.1)",
                    i + 1,
                    s.uri,
                    s.duration_s,
                    self.target_duration
                ));
            }
        }
        if self.map_uri.is_some() && self.version < 6 {
            problems.push(format!(
                "EXT-X-MAP needs EXT-X-VERSION 6 or later, the playlist declares {}",
                self.version
            ));
        }
        if self.version < 3 && self.segments.iter().any(|s| s.duration_s.fract() != 0.0) {
            problems.push(format!(
                "fractional EXTINF needs EXT-X-VERSION 3 or later, the playlist declares {}",
                self.version
            ));
        }
        if let Some(t) = self
            .playlist_type
            .as_deref()
            .filter(|t| !["VOD", "EVENT"].contains(t))
        {
            problems.push(format!(
                "EXT-X-PLAYLIST-TYPE {t:?} is neither VOD nor EVENT"
            ));
        }
        problems
    }
}

pub fn write_master(variants: &[Variant], independent_segments: bool) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n");
    if independent_segments {
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    for v in variants {
        let mut attrs = vec![format!("BANDWIDTH={}", v.bandwidth)];
        if v.average_bandwidth > 0 {
            attrs.push(format!("AVERAGE-BANDWIDTH={}", v.average_bandwidth));
        }
        if v.width > 0 && v.height > 0 {
            attrs.push(format!("RESOLUTION={}x{}", v.width, v.height));
        }
        if !v.codecs.is_empty() {
            attrs.push(format!("CODECS=\"{}\"", quoted_string(&v.codecs)));
        }
        if v.frame_rate.is_finite() && v.frame_rate > 0.0 {
            attrs.push(format!("FRAME-RATE={:.3}", v.frame_rate));
        }
        if let Some(group) = &v.audio_group {
            attrs.push(format!("AUDIO=\"{}\"", quoted_string(group)));
        }
        let _ = writeln!(out, "{STREAM_INF}:{}", attrs.join(","));
        let _ = writeln!(out, "{}", single_line(&v.uri));
    }
    out
}

pub fn parse_master(text: &str) -> Result<Vec<Variant>, HlsError> {
    let mut variants = Vec::new();
    let mut pending: Option<(usize, Variant)> = None;
    for (n, line) in body_lines(text)? {
        match classify(line) {
            Line::Comment => {}
            Line::Uri(uri) => {
                let Some((_, mut variant)) = pending.take() else {
                    return Err(HlsError::UriWithoutTag {
                        line: n,
                        uri: uri.to_string(),
                        tag: STREAM_INF,
                    });
                };
                variant.uri = uri.to_string();
                variants.push(variant);
            }
            Line::Tag(tag, value) => {
                if let Some((line, _)) = pending {
                    return Err(HlsError::TagWithoutUri {
                        line,
                        tag: STREAM_INF,
                    });
                }
                if tag == STREAM_INF {
                    pending = Some((n, stream_inf(n, value)?));
                } else if MEDIA_ONLY.contains(&tag) {
                    return Err(HlsError::WrongKind {
                        line: n,
                        tag: tag.to_string(),
                        found: "media",
                        expected: "master",
                    });
                }
            }
        }
    }
    if let Some((line, _)) = pending {
        return Err(HlsError::TagWithoutUri {
            line,
            tag: STREAM_INF,
        });
    }
    Ok(variants)
}

fn stream_inf(line: usize, list: &str) -> Result<Variant, HlsError> {
    let attrs = attributes(line, list)?;
    let get = |name| attribute(&attrs, name);
    let bandwidth = get("BANDWIDTH").ok_or(HlsError::MissingAttribute {
        line,
        tag: STREAM_INF,
        attribute: "BANDWIDTH",
    })?;
    let (width, height) = match get("RESOLUTION") {
        None => (0, 0),
        Some(r) => {
            let bad = || HlsError::BadNumber {
                line,
                field: "RESOLUTION".to_string(),
                value: r.to_string(),
            };
            let (w, h) = r.split_once('x').ok_or_else(bad)?;
            let w = decimal_integer(line, "RESOLUTION", w).map_err(|_| bad())?;
            let h = decimal_integer(line, "RESOLUTION", h).map_err(|_| bad())?;
            (w, h)
        }
    };
    Ok(Variant {
        uri: String::new(),
        bandwidth: decimal_integer(line, "BANDWIDTH", bandwidth)?,
        average_bandwidth: get("AVERAGE-BANDWIDTH")
            .map(|v| decimal_integer(line, "AVERAGE-BANDWIDTH", v))
            .transpose()?
            .unwrap_or(0),
        width,
        height,
        codecs: get("CODECS").unwrap_or_default().to_string(),
        frame_rate: get("FRAME-RATE")
            .map(|v| decimal_float(line, "FRAME-RATE", v))
            .transpose()?
            .unwrap_or(0.0),
        audio_group: get("AUDIO").map(str::to_string),
    })
}

/// RFC 8216 §4.3.4.2 `BANDWIDTH` and `AVERAGE-BANDWIDTH` in bits/s, rounded up. The peak is the
/// fastest single segment's rate, an upper bound on the spec's peak over runs of contiguous
/// segments (a run is never faster than its fastest segment). `None` when there are no
/// segments, a size is missing or a duration is not positive. For fMP4 the caller may add the
/// initialisation segment's size to the first segment's `bytes`.
pub fn peak_and_average_bandwidth(segments: &[MediaSegment]) -> Option<(u64, u64)> {
    if segments.is_empty() {
        return None;
    }
    let (mut peak, mut bits, mut seconds) = (0.0f64, 0.0f64, 0.0f64);
    for s in segments {
        let b = s.bytes? as f64 * 8.0;
        if !(s.duration_s.is_finite() && s.duration_s > 0.0) {
            return None;
        }
        peak = peak.max(b / s.duration_s);
        bits += b;
        seconds += s.duration_s;
    }
    Some((peak.ceil() as u64, (bits / seconds).ceil() as u64))
}

/// RFC 6381 `avc1.PPCCLL` from an AVCDecoderConfigurationRecord (avcC) or from Annex-B
/// extradata holding an SPS.
pub fn avc_codec_string(avcc_or_sps: &[u8]) -> Option<String> {
    let [profile, constraints, level] = match avcc_or_sps {
        [1, p, c, l, ..] => [*p, *c, *l],
        annex_b => annex_b_sps_head(annex_b)?,
    };
    (profile != 0).then(|| format!("avc1.{profile:02x}{constraints:02x}{level:02x}"))
}

/// profile_idc, constraint flags and level_idc: the three bytes after the first SPS NAL header.
fn annex_b_sps_head(data: &[u8]) -> Option<[u8; 3]> {
    data.windows(3)
        .enumerate()
        .filter(|(_, w)| *w == [0, 0, 1])
        .find_map(|(i, _)| match data.get(i + 3..i + 7)? {
            [header, p, c, l] if header & 0x1f == 7 => Some([*p, *c, *l]),
            _ => None,
        })
}

pub fn aac_codec_string(object_type: u8) -> String {
    format!("mp4a.40.{object_type}")
}

/// ISO/IEC 14496-15 Annex E `hvc1.` string from an HEVCDecoderConfigurationRecord (hvcC). Trailing
/// zero constraint bytes are dropped, but one is always kept for parsers that expect it.
pub fn hevc_codec_string(hvcc: &[u8]) -> Option<String> {
    if hvcc.len() < 13 || hvcc[0] != 1 {
        return None;
    }
    let space = ["", "A", "B", "C"][usize::from(hvcc[1] >> 6)];
    let tier = if hvcc[1] & 0x20 != 0 { 'H' } else { 'L' };
    let profile = hvcc[1] & 0x1f;
    let compatibility = u32::from_be_bytes([hvcc[2], hvcc[3], hvcc[4], hvcc[5]]).reverse_bits();
    let level = hvcc[12];
    let constraints = &hvcc[6..12];
    let kept = constraints
        .iter()
        .rposition(|&b| b != 0)
        .map_or(1, |i| i + 1);
    let mut s = format!("hvc1.{space}{profile}.{compatibility:X}.{tier}{level}");
    for b in &constraints[..kept] {
        let _ = write!(s, ".{b:X}");
    }
    Some(s)
}

enum Line<'a> {
    Comment,
    Tag(&'a str, &'a str),
    Uri(&'a str),
}

fn classify(line: &str) -> Line<'_> {
    if line.starts_with("#EXT") {
        let (tag, value) = line.split_once(':').unwrap_or((line, ""));
        Line::Tag(tag, value)
    } else if line.starts_with('#') {
        Line::Comment
    } else {
        Line::Uri(line)
    }
}

/// The non-blank lines after the `#EXTM3U` header, numbered from 1 as an editor shows them.
fn body_lines(text: &str) -> Result<impl Iterator<Item = (usize, &str)>, HlsError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .map(str::trim)
        .enumerate()
        .map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, "#EXTM3U")) => Ok(lines.filter(|(_, l)| !l.is_empty())),
        _ => Err(HlsError::MissingExtm3u),
    }
}

fn decimal_integer<T: FromStr>(line: usize, field: &str, value: &str) -> Result<T, HlsError> {
    Some(value)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad_number(line, field, value))
}

fn decimal_float(line: usize, field: &str, value: &str) -> Result<f64, HlsError> {
    let digits = value.bytes().filter(u8::is_ascii_digit).count();
    let dots = value.bytes().filter(|&b| b == b'.').count();
    Some(value)
        .filter(|_| digits > 0 && dots <= 1 && digits + dots == value.len())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad_number(line, field, value))
}

fn bad_number(line: usize, field: &str, value: &str) -> HlsError {
    HlsError::BadNumber {
        line,
        field: field.to_string(),
        value: value.to_string(),
    }
}

/// RFC 8216 §4.2 attribute list; quoted values come back without their quotes.
fn attributes(line: usize, list: &str) -> Result<Vec<(&str, &str)>, HlsError> {
    let bad = |what: String| HlsError::BadAttributeList { line, what };
    let mut out = Vec::new();
    let mut rest = list;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('=')
            .ok_or_else(|| bad(format!("{rest:?} has no '='")))?;
        let valid_name = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-';
        if name.is_empty() || !name.bytes().all(valid_name) {
            return Err(bad(format!("{name:?} is not an attribute name")));
        }
        let (value, tail) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted
                    .find('"')
                    .ok_or_else(|| bad(format!("{name}: unterminated quoted string")))?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_at(after.find(',').unwrap_or(after.len())),
        };
        rest = match tail.strip_prefix(',') {
            Some(next) => next,
            None if tail.is_empty() => tail,
            None => return Err(bad(format!("{name}: {tail:?} follows the value"))),
        };
        out.push((name, value));
    }
    Ok(out)
}

fn attribute<'a>(attrs: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    attrs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// RFC 8216 quoted-strings have no escapes, so the characters they cannot hold are dropped.
fn quoted_string(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '"' | '\r' | '\n'))
        .collect()
}

fn single_line(s: &str) -> String {
    s.chars().filter(|c| !matches!(c, '\r' | '\n')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FMP4_VOD: &str = "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:6
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"init.mp4\"
#EXTINF:6.000000,
seg0.m4s
#EXTINF:6.000000,
seg1.m4s
#EXTINF:2.480000,
seg2.m4s
#EXT-X-ENDLIST
";

    const TS_LIVE: &str = "#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:7
#EXT-X-MEDIA-SEQUENCE:12
#EXTINF:6.006000,
stream12.ts
#EXT-X-DISCONTINUITY
#EXTINF:6.006000,
stream13.ts
#EXTINF:3.003000,
stream14.ts
";

    fn segment(uri: &str, duration_s: f64, bytes: Option<u64>) -> MediaSegment {
        MediaSegment {
            uri: uri.to_string(),
            duration_s,
            bytes,
        }
    }

    fn variant(uri: &str, bandwidth: u64) -> Variant {
        Variant {
            uri: uri.to_string(),
            bandwidth,
            average_bandwidth: bandwidth * 4 / 5,
            width: 1920,
            height: 1080,
            codecs: "avc1.640028,mp4a.40.2".to_string(),
            frame_rate: 25.0,
            audio_group: None,
        }
    }

    #[test]
    fn parses_libavformat_fmp4_vod_playlist() {
        let p = parse_media(FMP4_VOD).unwrap();
        assert_eq!(
            p,
            MediaPlaylist {
                version: 7,
                target_duration: 6,
                map_uri: Some("init.mp4".to_string()),
                segments: vec![
                    segment("seg0.m4s", 6.0, None),
                    segment("seg1.m4s", 6.0, None),
                    segment("seg2.m4s", 2.48, None),
                ],
                ended: true,
                playlist_type: Some("VOD".to_string()),
            }
        );
        assert!(p.check().is_empty(), "{:?}", p.check());
    }

    #[test]
    fn parses_libavformat_ts_live_playlist() {
        let p = parse_media(TS_LIVE).unwrap();
        assert_eq!(p.version, 3);
        assert_eq!(p.target_duration, 7);
        assert_eq!(p.map_uri, None);
        assert!(!p.ended);
        assert_eq!(p.playlist_type, None);
        let uris: Vec<&str> = p.segments.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(uris, ["stream12.ts", "stream13.ts", "stream14.ts"]);
        assert_eq!(p.segments[2].duration_s, 3.003);
        assert!(p.check().is_empty());
    }

    #[test]
    fn parses_crlf_titles_byteranges_comments_and_bom() {
        let text = "\u{feff}#EXTM3U\r\n#EXT-X-TARGETDURATION:10\r\n\r\n# written by hand\r\n\
                    #EXTINF:9.5,Opening titles, part 1\r\n#EXT-X-BYTERANGE:512000@0\r\n\
                    all.ts\r\n#EXTINF:10\r\n#EXT-X-BYTERANGE:400000\r\nall.ts\r\n";
        let p = parse_media(text).unwrap();
        assert_eq!(p.version, 1);
        assert_eq!(
            p.segments,
            [segment("all.ts", 9.5, None), segment("all.ts", 10.0, None)]
        );
        assert_eq!(
            p.check(),
            ["fractional EXTINF needs EXT-X-VERSION 3 or later, the playlist declares 1"]
        );
    }

    #[test]
    fn keeps_the_first_map() {
        let text = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n\
                    #EXT-X-MAP:URI=\"a.mp4\",BYTERANGE=\"720@0\"\n#EXTINF:2.0,\na.m4s\n\
                    #EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"b.mp4\"\n#EXTINF:2.0,\nb.m4s\n";
        assert_eq!(parse_media(text).unwrap().map_uri.as_deref(), Some("a.mp4"));
    }

    #[test]
    fn media_errors_name_the_line() {
        let cases: &[(&str, HlsError)] = &[
            ("", HlsError::MissingExtm3u),
            ("#EXT-X-VERSION:3\n#EXTM3U\n", HlsError::MissingExtm3u),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.0,\n#EXTINF:6.0,\na.ts\n",
                HlsError::TagWithoutUri {
                    line: 3,
                    tag: EXTINF,
                },
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.0,\na.ts\n#EXTINF:6.0,\n",
                HlsError::TagWithoutUri {
                    line: 5,
                    tag: EXTINF,
                },
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:6\n\na.ts\n",
                HlsError::UriWithoutTag {
                    line: 4,
                    uri: "a.ts".to_string(),
                    tag: EXTINF,
                },
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:six,\na.ts\n",
                bad_number(3, EXTINF, "six"),
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:-1,\na.ts\n",
                bad_number(3, EXTINF, "-1"),
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:1e3,\na.ts\n",
                bad_number(3, EXTINF, "1e3"),
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:6.5\n",
                bad_number(2, "#EXT-X-TARGETDURATION", "6.5"),
            ),
            (
                "#EXTM3U\n#EXT-X-VERSION:\n",
                bad_number(2, "#EXT-X-VERSION", ""),
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:+1\n",
                bad_number(3, "#EXT-X-MEDIA-SEQUENCE", "+1"),
            ),
            (
                "#EXTM3U\n#EXTINF:6.0,\na.ts\n",
                HlsError::MissingTargetDuration,
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-MAP:BYTERANGE=\"1@0\"\n",
                HlsError::MissingAttribute {
                    line: 3,
                    tag: "#EXT-X-MAP",
                    attribute: "URI",
                },
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-MAP:URI=\"init.mp4\n",
                HlsError::BadAttributeList {
                    line: 3,
                    what: "URI: unterminated quoted string".to_string(),
                },
            ),
            (
                "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n",
                HlsError::WrongKind {
                    line: 2,
                    tag: STREAM_INF.to_string(),
                    found: "master",
                    expected: "media",
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_media(text).unwrap_err(), *expected, "{text:?}");
        }
    }

    #[test]
    fn error_messages_read_well() {
        let e = parse_media("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.0,\n").unwrap_err();
        assert_eq!(e.to_string(), "line 3: #EXTINF has no URI line after it");
        let e = parse_media("#EXTM3U\n#EXT-X-TARGETDURATION:x\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: #EXT-X-TARGETDURATION: \"x\" is not a valid number"
        );
        assert_eq!(
            HlsError::MissingExtm3u.to_string(),
            "line 1: playlist does not start with #EXTM3U"
        );
    }

    #[test]
    fn check_rounds_durations_to_nearest_integer() {
        let playlist = |d: f64| MediaPlaylist {
            version: 7,
            target_duration: 6,
            map_uri: None,
            segments: vec![segment("a.m4s", d, None)],
            ended: true,
            playlist_type: None,
        };
        assert!(playlist(6.0).check().is_empty());
        assert!(playlist(6.499).check().is_empty());
        assert_eq!(
            playlist(6.5).check(),
            [
                "segment 1 (a.m4s): EXTINF 6.500 s rounds to 7 s, above EXT-X-TARGETDURATION 6 \
              (RFC 8216 §4.3.3.1)"
            ]
        );
        assert_eq!(playlist(12.0).check().len(), 1);
    }

    #[test]
    fn check_reports_version_and_type_problems() {
        let mut p = parse_media(FMP4_VOD).unwrap();
        p.version = 3;
        p.playlist_type = Some("LIVE".to_string());
        assert_eq!(
            p.check(),
            [
                "EXT-X-MAP needs EXT-X-VERSION 6 or later, the playlist declares 3",
                "EXT-X-PLAYLIST-TYPE \"LIVE\" is neither VOD nor EVENT",
            ]
        );
    }

    #[test]
    fn writes_master_in_the_given_order() {
        let mut low = variant("540p/index.m3u8", 1_500_000);
        low.width = 960;
        low.height = 540;
        low.frame_rate = 29.97;
        low.audio_group = Some("aac".to_string());
        let text = write_master(&[variant("1080p/index.m3u8", 6_000_000), low], true);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=6000000,AVERAGE-BANDWIDTH=4800000,RESOLUTION=1920x1080,\
             CODECS=\"avc1.640028,mp4a.40.2\",FRAME-RATE=25.000\n1080p/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1500000,AVERAGE-BANDWIDTH=1200000,RESOLUTION=960x540,\
             CODECS=\"avc1.640028,mp4a.40.2\",FRAME-RATE=29.970,AUDIO=\"aac\"\n540p/index.m3u8\n"
        );
    }

    #[test]
    fn writes_audio_only_variant_without_video_attributes() {
        let audio = Variant {
            uri: "audio/index.m3u8".to_string(),
            bandwidth: 128_000,
            average_bandwidth: 0,
            width: 0,
            height: 0,
            codecs: aac_codec_string(2),
            frame_rate: 0.0,
            audio_group: None,
        };
        assert_eq!(
            write_master(&[audio], false),
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-STREAM-INF:BANDWIDTH=128000,CODECS=\"mp4a.40.2\"\n\
             audio/index.m3u8\n"
        );
    }

    #[test]
    fn master_round_trips() {
        let mut sd = variant("sd.m3u8", 800_000);
        sd.width = 720;
        sd.height = 576;
        sd.frame_rate = 59.94;
        sd.audio_group = Some("stereo".to_string());
        let audio_only = Variant {
            uri: "audio.m3u8".to_string(),
            bandwidth: 96_000,
            average_bandwidth: 0,
            width: 0,
            height: 0,
            codecs: "mp4a.40.5".to_string(),
            frame_rate: 0.0,
            audio_group: None,
        };
        let variants = vec![variant("hd.m3u8", 5_000_000), sd, audio_only];
        for independent in [false, true] {
            let text = write_master(&variants, independent);
            assert_eq!(parse_master(&text).unwrap(), variants);
        }
    }

    #[test]
    fn writer_drops_what_quoted_strings_cannot_hold() {
        let mut v = variant("a\nb.m3u8", 1);
        v.codecs = "avc1.\"64\"0028".to_string();
        let parsed = parse_master(&write_master(&[v], false)).unwrap();
        assert_eq!(parsed[0].codecs, "avc1.640028");
        assert_eq!(parsed[0].uri, "ab.m3u8");
    }

    #[test]
    fn parses_a_hand_written_master() {
        let text = "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"English, stereo\",DEFAULT=YES,URI=\"en.m3u8\"

# comment between variants
#EXT-X-STREAM-INF:CODECS=\"hvc1.2.4.L123.B0,mp4a.40.2\",BANDWIDTH=2200000,HDCP-LEVEL=NONE,RESOLUTION=1280x720,AUDIO=\"aud\",FRAME-RATE=50
720p.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI=\"720p_iframes.m3u8\"
";
        let variants = parse_master(text).unwrap();
        assert_eq!(
            variants,
            [Variant {
                uri: "720p.m3u8".to_string(),
                bandwidth: 2_200_000,
                average_bandwidth: 0,
                width: 1280,
                height: 720,
                codecs: "hvc1.2.4.L123.B0,mp4a.40.2".to_string(),
                frame_rate: 50.0,
                audio_group: Some("aud".to_string()),
            }]
        );
    }

    #[test]
    fn master_errors_name_the_line() {
        let inf = |attrs: &str| format!("#EXTM3U\n{STREAM_INF}:{attrs}\nv.m3u8\n");
        let cases: Vec<(String, HlsError)> = vec![
            (
                "#EXT-X-STREAM-INF:BANDWIDTH=1\n".to_string(),
                HlsError::MissingExtm3u,
            ),
            (
                inf("RESOLUTION=1x1"),
                HlsError::MissingAttribute {
                    line: 2,
                    tag: STREAM_INF,
                    attribute: "BANDWIDTH",
                },
            ),
            (inf("BANDWIDTH=fast"), bad_number(2, "BANDWIDTH", "fast")),
            (
                inf("BANDWIDTH=1,AVERAGE-BANDWIDTH=1.5"),
                bad_number(2, "AVERAGE-BANDWIDTH", "1.5"),
            ),
            (
                inf("BANDWIDTH=1,RESOLUTION=1920by1080"),
                bad_number(2, "RESOLUTION", "1920by1080"),
            ),
            (
                inf("BANDWIDTH=1,RESOLUTION=1920x"),
                bad_number(2, "RESOLUTION", "1920x"),
            ),
            (
                inf("BANDWIDTH=1,FRAME-RATE=25fps"),
                bad_number(2, "FRAME-RATE", "25fps"),
            ),
            (
                inf("BANDWIDTH=1,CODECS=\"avc1"),
                HlsError::BadAttributeList {
                    line: 2,
                    what: "CODECS: unterminated quoted string".to_string(),
                },
            ),
            (
                "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n#EXT-X-ENDLIST\nb.m3u8\n".to_string(),
                HlsError::TagWithoutUri {
                    line: 2,
                    tag: STREAM_INF,
                },
            ),
            (
                "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n".to_string(),
                HlsError::TagWithoutUri {
                    line: 2,
                    tag: STREAM_INF,
                },
            ),
            (
                "#EXTM3U\n\n\nstray.m3u8\n".to_string(),
                HlsError::UriWithoutTag {
                    line: 4,
                    uri: "stray.m3u8".to_string(),
                    tag: STREAM_INF,
                },
            ),
            (
                FMP4_VOD.to_string(),
                HlsError::WrongKind {
                    line: 3,
                    tag: "#EXT-X-TARGETDURATION".to_string(),
                    found: "media",
                    expected: "master",
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_master(&text).unwrap_err(), expected, "{text:?}");
        }
    }

    #[test]
    fn attribute_lists_keep_commas_inside_quotes() {
        assert_eq!(
            attributes(1, "A=1,CODECS=\"x,y\",B-2=0x1F,C=\"\"").unwrap(),
            [("A", "1"), ("CODECS", "x,y"), ("B-2", "0x1F"), ("C", "")]
        );
        assert_eq!(attributes(1, "").unwrap(), []);
        let bad = |list: &str| attributes(7, list).unwrap_err();
        assert_eq!(
            bad("A=1,B"),
            HlsError::BadAttributeList {
                line: 7,
                what: "\"B\" has no '='".to_string()
            }
        );
        assert_eq!(
            bad("a=1"),
            HlsError::BadAttributeList {
                line: 7,
                what: "\"a\" is not an attribute name".to_string()
            }
        );
        assert_eq!(
            bad("=1"),
            HlsError::BadAttributeList {
                line: 7,
                what: "\"\" is not an attribute name".to_string()
            }
        );
        assert_eq!(
            bad("A=\"x\"y,B=1"),
            HlsError::BadAttributeList {
                line: 7,
                what: "A: \"y,B=1\" follows the value".to_string()
            }
        );
    }

    #[test]
    fn bandwidth_is_peak_segment_rate_and_overall_average() {
        let segments = [
            segment("0.m4s", 6.0, Some(750_000)),
            segment("1.m4s", 6.0, Some(1_500_000)),
            segment("2.m4s", 3.0, Some(150_000)),
        ];
        assert_eq!(
            peak_and_average_bandwidth(&segments),
            Some((2_000_000, 1_280_000))
        );
        assert_eq!(
            peak_and_average_bandwidth(&[segment("a", 3.0, Some(1))]),
            Some((3, 3))
        );
    }

    #[test]
    fn bandwidth_needs_sizes_and_positive_durations() {
        assert_eq!(peak_and_average_bandwidth(&[]), None);
        let ok = segment("a", 6.0, Some(1000));
        for bad in [
            segment("b", 6.0, None),
            segment("b", 0.0, Some(1000)),
            segment("b", -1.0, Some(1000)),
            segment("b", f64::NAN, Some(1000)),
        ] {
            assert_eq!(peak_and_average_bandwidth(&[ok.clone(), bad]), None);
        }
    }

    #[test]
    fn avc_codec_string_from_avcc() {
        let avcc = [0x01, 0x64, 0x00, 0x28, 0xff, 0xe1, 0x00, 0x19, 0x67];
        assert_eq!(avc_codec_string(&avcc).as_deref(), Some("avc1.640028"));
        assert_eq!(
            avc_codec_string(&[0x01, 0x42, 0xc0, 0x1e]).as_deref(),
            Some("avc1.42c01e")
        );
    }

    #[test]
    fn avc_codec_string_from_annex_b() {
        let sps_pps = [
            0x00, 0x00, 0x00, 0x01, 0x67, 0x4d, 0x40, 0x1f, 0xe8, 0x80, 0x28, 0x02, 0xdd, 0x80,
            0x00, 0x00, 0x00, 0x01, 0x68, 0xee, 0x3c, 0x80,
        ];
        assert_eq!(avc_codec_string(&sps_pps).as_deref(), Some("avc1.4d401f"));
        let aud_then_sps = [
            0x00, 0x00, 0x01, 0x09, 0xf0, 0x00, 0x00, 0x01, 0x27, 0x64, 0x00, 0x2a,
        ];
        assert_eq!(
            avc_codec_string(&aud_then_sps).as_deref(),
            Some("avc1.64002a")
        );
    }

    #[test]
    fn avc_codec_string_rejects_what_it_cannot_read() {
        for bad in [
            &[][..],
            &[0x01, 0x64, 0x00],
            &[0x00, 0x00, 0x00, 0x01, 0x68, 0xee, 0x3c, 0x80],
            &[0x00, 0x00, 0x01, 0x67, 0x4d],
            &[0x01, 0x00, 0x00, 0x1f],
            &[0x67, 0x4d, 0x40, 0x1f],
        ] {
            assert_eq!(avc_codec_string(bad), None, "{bad:02x?}");
        }
    }

    #[test]
    fn aac_codec_strings() {
        assert_eq!(aac_codec_string(2), "mp4a.40.2");
        assert_eq!(aac_codec_string(5), "mp4a.40.5");
        assert_eq!(aac_codec_string(29), "mp4a.40.29");
    }

    fn hvcc(ptl: u8, compatibility: [u8; 4], constraints: [u8; 6], level: u8) -> Vec<u8> {
        let mut record = vec![0x01, ptl];
        record.extend(compatibility);
        record.extend(constraints);
        record.extend([
            level, 0xf0, 0x00, 0xfc, 0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x03,
        ]);
        record
    }

    #[test]
    fn hevc_codec_strings() {
        let main_31 = hvcc(0x01, [0x60, 0, 0, 0], [0xb0, 0, 0, 0, 0, 0], 93);
        assert_eq!(
            hevc_codec_string(&main_31).as_deref(),
            Some("hvc1.1.6.L93.B0")
        );
        let main10_high_51 = hvcc(0x22, [0x20, 0, 0, 0], [0xb0, 0, 0, 0, 0, 0], 153);
        assert_eq!(
            hevc_codec_string(&main10_high_51).as_deref(),
            Some("hvc1.2.4.H153.B0")
        );
        let range_ext = hvcc(0x44, [0x08, 0, 0, 0], [0x90, 0x01, 0, 0x20, 0, 0], 120);
        assert_eq!(
            hevc_codec_string(&range_ext).as_deref(),
            Some("hvc1.A4.10.L120.90.1.0.20")
        );
        let no_constraints = hvcc(0x01, [0x60, 0, 0, 0], [0; 6], 120);
        assert_eq!(
            hevc_codec_string(&no_constraints).as_deref(),
            Some("hvc1.1.6.L120.0")
        );
    }

    #[test]
    fn hevc_codec_string_needs_a_record() {
        let main_31 = hvcc(0x01, [0x60, 0, 0, 0], [0xb0, 0, 0, 0, 0, 0], 93);
        assert_eq!(hevc_codec_string(&main_31[..12]), None);
        let mut wrong_version = main_31;
        wrong_version[0] = 0;
        assert_eq!(hevc_codec_string(&wrong_version), None);
    }
}
