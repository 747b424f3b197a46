//! MPEG-DASH (ISO/IEC 23009-1) text: a static MPD over the CMAF/fMP4 renditions written for HLS,
//! the same files listed segment by segment. Pure: imports nothing of the crate
//! (no `av`, tokio or SQL).

use std::fmt::Write as _;

#[derive(Debug, Clone, PartialEq)]
pub struct Representation {
    pub id: String,
    /// Peak bits/s.
    pub bandwidth: u64,
    pub width: u32,
    pub height: u32,
    /// Numerator and denominator: (25, 1), (30000, 1001); a zero leaves `frameRate` out.
    pub frame_rate: (u32, u32),
    pub codecs: String,
    pub init_uri: String,
    /// URI and duration in seconds, in presentation order.
    pub segments: Vec<(String, f64)>,
    /// Sample aspect ratio, (1, 1) for square pixels; a zero leaves `sar` out.
    pub sar: (u32, u32),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AudioRepresentation {
    pub id: String,
    /// Peak bits/s.
    pub bandwidth: u64,
    pub codecs: String,
    pub sample_rate: u32,
    pub channels: u32,
    pub init_uri: String,
    /// URI and duration in seconds, in presentation order.
    pub segments: Vec<(String, f64)>,
}

const TIMESCALE: u64 = 1000;
const CHANNEL_SCHEME: &str = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011";

/// Video renditions share one adaptation set; each audio rendition gets its own.
pub fn write_mpd(
    duration_s: f64,
    video: &[Representation],
    audio: &[AudioRepresentation],
) -> String {
    let mut x = Xml::default();
    x.open(
        "MPD",
        &[
            ("xmlns", "urn:mpeg:dash:schema:mpd:2011".into()),
            ("profiles", "urn:mpeg:dash:profile:isoff-main:2011".into()),
            ("type", "static".into()),
            ("mediaPresentationDuration", iso8601_duration(duration_s)),
            ("minBufferTime", "PT2S".into()),
        ],
    );
    x.open("Period", &[("id", "0".into()), ("start", "PT0S".into())]);
    let mut set_id = 0;
    if !video.is_empty() {
        let max_width = video.iter().map(|r| r.width).max().unwrap_or(0);
        let max_height = video.iter().map(|r| r.height).max().unwrap_or(0);
        x.open(
            "AdaptationSet",
            &[
                ("id", set_id.to_string()),
                ("contentType", "video".into()),
                ("mimeType", "video/mp4".into()),
                ("segmentAlignment", "true".into()),
                ("startWithSAP", "1".into()),
                ("maxWidth", max_width.to_string()),
                ("maxHeight", max_height.to_string()),
            ],
        );
        set_id += 1;
        for r in video {
            let mut attrs = vec![
                ("id", r.id.clone()),
                ("bandwidth", r.bandwidth.to_string()),
                ("width", r.width.to_string()),
                ("height", r.height.to_string()),
            ];
            match r.frame_rate {
                (0, _) | (_, 0) => {}
                (n, 1) => attrs.push(("frameRate", n.to_string())),
                (n, d) => attrs.push(("frameRate", format!("{n}/{d}"))),
            }
            if r.sar.0 > 0 && r.sar.1 > 0 {
                attrs.push(("sar", format!("{}:{}", r.sar.0, r.sar.1)));
            }
            if !r.codecs.is_empty() {
                attrs.push(("codecs", r.codecs.clone()));
            }
            x.open("Representation", &attrs);
            segment_list(&mut x, &r.init_uri, &r.segments);
            x.close();
        }
        x.close();
    }
    for r in audio {
        x.open(
            "AdaptationSet",
            &[
                ("id", set_id.to_string()),
                ("contentType", "audio".into()),
                ("mimeType", "audio/mp4".into()),
                ("segmentAlignment", "true".into()),
                ("startWithSAP", "1".into()),
            ],
        );
        set_id += 1;
        let mut attrs = vec![("id", r.id.clone()), ("bandwidth", r.bandwidth.to_string())];
        if !r.codecs.is_empty() {
            attrs.push(("codecs", r.codecs.clone()));
        }
        attrs.push(("audioSamplingRate", r.sample_rate.to_string()));
        x.open("Representation", &attrs);
        x.empty(
            "AudioChannelConfiguration",
            &[
                ("schemeIdUri", CHANNEL_SCHEME.into()),
                ("value", r.channels.to_string()),
            ],
        );
        segment_list(&mut x, &r.init_uri, &r.segments);
        x.close();
        x.close();
    }
    x.close();
    x.close();
    x.out
}

fn segment_list(x: &mut Xml, init_uri: &str, segments: &[(String, f64)]) {
    x.open("SegmentList", &[("timescale", TIMESCALE.to_string())]);
    x.empty("Initialization", &[("sourceURL", init_uri.to_string())]);
    if !segments.is_empty() {
        x.open("SegmentTimeline", &[]);
        for (i, (d, r)) in timeline(segments.iter().map(|s| s.1))
            .into_iter()
            .enumerate()
        {
            let mut attrs = Vec::new();
            if i == 0 {
                attrs.push(("t", "0".to_string()));
            }
            attrs.push(("d", d.to_string()));
            if r > 0 {
                attrs.push(("r", r.to_string()));
            }
            x.empty("S", &attrs);
        }
        x.close();
    }
    for (uri, _) in segments {
        x.empty("SegmentURL", &[("media", uri.clone())]);
    }
    x.close();
}

/// `S` elements as (duration, repeat count) in timescale units. Durations are differences of
/// rounded segment end times, so rounding never accumulates along the timeline.
fn timeline(durations_s: impl Iterator<Item = f64>) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let (mut end_s, mut previous_end) = (0.0, 0);
    for d in durations_s {
        end_s += d.max(0.0);
        let end = ticks(end_s);
        let duration = end.saturating_sub(previous_end);
        previous_end = end;
        match runs.last_mut() {
            Some((last, repeat)) if *last == duration => *repeat += 1,
            _ => runs.push((duration, 0)),
        }
    }
    runs
}

fn ticks(seconds: f64) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        (seconds * TIMESCALE as f64).round() as u64
    } else {
        0
    }
}

/// ISO 8601 duration to the millisecond, `PT#H#M#.###S` with leading zero hours and minutes left
/// out: 6.04 s is `PT6.040S`, 3725.5 s is `PT1H2M5.500S`.
pub fn iso8601_duration(seconds: f64) -> String {
    let ms = ticks(seconds);
    let (h, m, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut out = String::from("PT");
    if h > 0 {
        let _ = write!(out, "{h}H");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}M");
    }
    let _ = write!(out, "{s}.{ms:03}S");
    out
}

#[derive(Default)]
struct Xml {
    out: String,
    open: Vec<&'static str>,
}

impl Xml {
    fn open(&mut self, name: &'static str, attrs: &[(&str, String)]) {
        if self.out.is_empty() {
            self.out
                .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        }
        self.start_tag(name, attrs);
        self.out.push_str(">\n");
        self.open.push(name);
    }

    fn empty(&mut self, name: &'static str, attrs: &[(&str, String)]) {
        self.start_tag(name, attrs);
        self.out.push_str("/>\n");
    }

    fn close(&mut self) {
        let name = self.open.pop().expect("close matches an open");
        self.indent();
        let _ = writeln!(self.out, "</{name}>");
    }

    fn start_tag(&mut self, name: &str, attrs: &[(&str, String)]) {
        self.indent();
        let _ = write!(self.out, "<{name}");
        for (key, value) in attrs {
            let _ = write!(self.out, " {key}=\"{}\"", escape_attribute(value));
        }
    }

    fn indent(&mut self) {
        for _ in &self.open {
            self.out.push_str("  ");
        }
    }
}

/// Tab and line breaks become character references so attribute normalisation keeps them;
/// other control characters are not allowed in XML 1.0 and are dropped.
fn escape_attribute(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if c < ' ' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    type Element = (String, Vec<(String, String)>);

    /// Checks the document is well formed (one root, balanced tags, quoted attributes, known
    /// entities, no text content) and returns every start tag with its unescaped attributes.
    fn elements(xml: &str) -> Vec<Element> {
        let mut rest = xml
            .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
            .expect("XML declaration");
        let mut stack: Vec<String> = Vec::new();
        let mut found = Vec::new();
        let mut roots = 0;
        while let Some(lt) = rest.find('<') {
            assert!(rest[..lt].trim().is_empty(), "text {:?}", &rest[..lt]);
            let gt = lt + rest[lt..].find('>').expect("tag ends");
            let tag = &rest[lt + 1..gt];
            rest = &rest[gt + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "close tag");
                continue;
            }
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let (name, attrs) = tag.split_once(' ').unwrap_or((tag, ""));
            assert!(is_name(name), "element name {name:?}");
            if stack.is_empty() {
                roots += 1;
            }
            if !self_closing {
                stack.push(name.to_string());
            }
            found.push((name.to_string(), attributes(attrs)));
        }
        assert!(rest.trim().is_empty(), "trailing {rest:?}");
        assert!(stack.is_empty(), "unclosed {stack:?}");
        assert_eq!(roots, 1);
        found
    }

    fn is_name(s: &str) -> bool {
        !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == ':')
    }

    fn attributes(mut rest: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                return out;
            }
            let (key, after) = rest.split_once("=\"").expect("key=\"value\"");
            let end = after.find('"').expect("closing quote");
            let raw = &after[..end];
            assert!(is_name(key), "attribute name {key:?}");
            assert!(!raw.contains('<'), "raw < in {raw:?}");
            assert!(out.iter().all(|(k, _)| k != key), "duplicate {key}");
            out.push((key.to_string(), unescape(raw)));
            rest = &after[end + 1..];
        }
    }

    fn unescape(raw: &str) -> String {
        let mut out = String::new();
        let mut rest = raw;
        while let Some(amp) = rest.find('&') {
            out.push_str(&rest[..amp]);
            let semi = amp + rest[amp..].find(';').expect("entity ends");
            let c = match &rest[amp + 1..semi] {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                "#9" => '\t',
                "#10" => '\n',
                "#13" => '\r',
                other => panic!("unknown entity &{other};"),
            };
            out.push(c);
            rest = &rest[semi + 1..];
        }
        out.push_str(rest);
        out
    }

    fn attr<'a>(element: &'a Element, key: &str) -> Option<&'a str> {
        element
            .1
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn named<'a>(all: &'a [Element], name: &str) -> Vec<&'a Element> {
        all.iter().filter(|(n, _)| n == name).collect()
    }

    fn segments(prefix: &str, durations: &[f64]) -> Vec<(String, f64)> {
        durations
            .iter()
            .enumerate()
            .map(|(i, d)| (format!("{prefix}/seg{i}.m4s"), *d))
            .collect()
    }

    fn video(id: &str, width: u32, height: u32) -> Representation {
        Representation {
            id: id.to_string(),
            bandwidth: u64::from(width) * 3000,
            width,
            height,
            frame_rate: (25, 1),
            codecs: "avc1.640028".to_string(),
            init_uri: format!("{id}/init.mp4"),
            segments: segments(id, &[6.0, 6.0, 6.0, 2.48]),
            sar: (1, 1),
        }
    }

    fn stereo(id: &str) -> AudioRepresentation {
        AudioRepresentation {
            id: id.to_string(),
            bandwidth: 128_000,
            codecs: "mp4a.40.2".to_string(),
            sample_rate: 48_000,
            channels: 2,
            init_uri: format!("{id}/init.mp4"),
            segments: segments(id, &[6.0, 6.0, 6.0, 2.48]),
        }
    }

    #[test]
    fn durations_in_iso8601() {
        assert_eq!(iso8601_duration(6.04), "PT6.040S");
        assert_eq!(iso8601_duration(3725.5), "PT1H2M5.500S");
        assert_eq!(iso8601_duration(0.0), "PT0.000S");
        assert_eq!(iso8601_duration(59.9996), "PT1M0.000S");
        assert_eq!(iso8601_duration(3600.0), "PT1H0M0.000S");
        assert_eq!(iso8601_duration(90_061.001), "PT25H1M1.001S");
        assert_eq!(iso8601_duration(-1.0), "PT0.000S");
        assert_eq!(iso8601_duration(f64::NAN), "PT0.000S");
    }

    #[test]
    fn timeline_runs_and_never_drifts() {
        let t = |d: &[f64]| timeline(d.iter().copied());
        assert_eq!(t(&[6.0, 6.0, 6.0, 2.48]), [(6000, 2), (2480, 0)]);
        assert_eq!(t(&[2.002; 4]), [(2002, 3)]);
        let thirds = t(&[1.0 / 3.0; 3]);
        assert_eq!(thirds, [(333, 0), (334, 0), (333, 0)]);
        let many = t(&[0.0404; 1000]);
        let total: u64 = many.iter().map(|(d, r)| d * (r + 1)).sum();
        assert_eq!(total, 40_400);
        assert!(t(&[]).is_empty());
    }

    #[test]
    fn mpd_is_well_formed_and_static() {
        let mpd = write_mpd(
            20.48,
            &[video("1080p", 1920, 1080), video("720p", 1280, 720)],
            &[stereo("audio_en"), stereo("audio_fr")],
        );
        let all = elements(&mpd);
        let root = &all[0];
        assert_eq!(root.0, "MPD");
        assert_eq!(attr(root, "xmlns"), Some("urn:mpeg:dash:schema:mpd:2011"));
        assert_eq!(attr(root, "type"), Some("static"));
        assert_eq!(
            attr(root, "profiles"),
            Some("urn:mpeg:dash:profile:isoff-main:2011")
        );
        assert_eq!(attr(root, "mediaPresentationDuration"), Some("PT20.480S"));
        assert_eq!(attr(root, "minBufferTime"), Some("PT2S"));
        assert_eq!(named(&all, "Period").len(), 1);

        let sets = named(&all, "AdaptationSet");
        let kinds: Vec<_> = sets.iter().map(|s| attr(s, "mimeType").unwrap()).collect();
        assert_eq!(kinds, ["video/mp4", "audio/mp4", "audio/mp4"]);
        let ids: Vec<_> = sets.iter().map(|s| attr(s, "id").unwrap()).collect();
        assert_eq!(ids, ["0", "1", "2"]);
        for set in &sets {
            assert_eq!(attr(set, "segmentAlignment"), Some("true"));
            assert_eq!(attr(set, "startWithSAP"), Some("1"));
        }
        assert_eq!(attr(sets[0], "maxWidth"), Some("1920"));
        assert_eq!(attr(sets[0], "maxHeight"), Some("1080"));

        let reps = named(&all, "Representation");
        assert_eq!(reps.len(), 4);
        assert_eq!(attr(reps[1], "id"), Some("720p"));
        assert_eq!(attr(reps[1], "bandwidth"), Some("3840000"));
        assert_eq!(attr(reps[1], "width"), Some("1280"));
        assert_eq!(attr(reps[1], "frameRate"), Some("25"));
        assert_eq!(attr(reps[1], "sar"), Some("1:1"));
        assert_eq!(attr(reps[1], "codecs"), Some("avc1.640028"));
        assert_eq!(attr(reps[2], "audioSamplingRate"), Some("48000"));
        assert_eq!(attr(reps[2], "codecs"), Some("mp4a.40.2"));

        let channels = named(&all, "AudioChannelConfiguration");
        assert_eq!(channels.len(), 2);
        assert_eq!(attr(channels[0], "schemeIdUri"), Some(CHANNEL_SCHEME));
        assert_eq!(attr(channels[0], "value"), Some("2"));

        let lists = named(&all, "SegmentList");
        assert_eq!(lists.len(), 4);
        assert!(lists.iter().all(|l| attr(l, "timescale") == Some("1000")));
        let inits: Vec<_> = named(&all, "Initialization")
            .iter()
            .map(|e| attr(e, "sourceURL").unwrap())
            .collect();
        assert_eq!(
            inits,
            [
                "1080p/init.mp4",
                "720p/init.mp4",
                "audio_en/init.mp4",
                "audio_fr/init.mp4"
            ]
        );
        let media: Vec<_> = named(&all, "SegmentURL")
            .iter()
            .map(|e| attr(e, "media").unwrap())
            .collect();
        assert_eq!(media.len(), 16);
        assert_eq!(media[4], "720p/seg0.m4s");
        assert_eq!(media[15], "audio_fr/seg3.m4s");
    }

    #[test]
    fn segment_timeline_in_milliseconds() {
        let mpd = write_mpd(20.48, &[video("v", 1920, 1080)], &[]);
        assert!(mpd.contains(
            "        <SegmentList timescale=\"1000\">\n\
             \x20         <Initialization sourceURL=\"v/init.mp4\"/>\n\
             \x20         <SegmentTimeline>\n\
             \x20           <S t=\"0\" d=\"6000\" r=\"2\"/>\n\
             \x20           <S d=\"2480\"/>\n\
             \x20         </SegmentTimeline>\n\
             \x20         <SegmentURL media=\"v/seg0.m4s\"/>\n"
        ));
        assert_eq!(named(&elements(&mpd), "AdaptationSet").len(), 1);
    }

    #[test]
    fn ntsc_rates_and_anamorphic_sar() {
        let mut r = video("sd", 720, 480);
        r.frame_rate = (30000, 1001);
        r.sar = (40, 33);
        let all = elements(&write_mpd(20.48, &[r], &[]));
        let rep = named(&all, "Representation")[0];
        assert_eq!(attr(rep, "frameRate"), Some("30000/1001"));
        assert_eq!(attr(rep, "sar"), Some("40:33"));
    }

    #[test]
    fn unknown_rates_and_codecs_are_left_out() {
        let mut r = video("v", 1920, 1080);
        r.frame_rate = (0, 1);
        r.sar = (1, 0);
        r.codecs.clear();
        let mut a = stereo("a");
        a.codecs.clear();
        a.channels = 6;
        a.segments.clear();
        let all = elements(&write_mpd(0.0, &[r], &[a]));
        let reps = named(&all, "Representation");
        for key in ["frameRate", "sar", "codecs"] {
            assert_eq!(attr(reps[0], key), None, "{key}");
        }
        assert_eq!(attr(reps[1], "codecs"), None);
        assert_eq!(
            attr(named(&all, "AudioChannelConfiguration")[0], "value"),
            Some("6")
        );
        assert_eq!(named(&all, "SegmentTimeline").len(), 1);
    }

    #[test]
    fn audio_only_and_empty_presentations_are_well_formed() {
        let all = elements(&write_mpd(20.48, &[], &[stereo("a")]));
        let sets = named(&all, "AdaptationSet");
        assert_eq!(sets.len(), 1);
        assert_eq!(attr(sets[0], "id"), Some("0"));
        assert_eq!(attr(sets[0], "contentType"), Some("audio"));
        let all = elements(&write_mpd(0.0, &[], &[]));
        assert_eq!(named(&all, "AdaptationSet").len(), 0);
    }

    #[test]
    fn attribute_values_are_escaped() {
        let mut r = video("a&b", 1920, 1080);
        r.init_uri = "it's <init>.mp4".to_string();
        r.segments = vec![("q=\"1\"&x=2\n\t\r.m4s".to_string(), 6.0)];
        r.codecs = "bad\u{1}codec".to_string();
        let mpd = write_mpd(6.0, &[r], &[]);
        assert!(mpd.contains("id=\"a&amp;b\""));
        assert!(mpd.contains("sourceURL=\"it&apos;s &lt;init&gt;.mp4\""));
        let all = elements(&mpd);
        assert_eq!(
            attr(named(&all, "SegmentURL")[0], "media"),
            Some("q=\"1\"&x=2\n\t\r.m4s")
        );
        assert_eq!(
            attr(named(&all, "Representation")[0], "codecs"),
            Some("badcodec")
        );
    }

    #[test]
    fn checker_rejects_broken_documents() {
        let prolog = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
        for broken in [
            "<a><b></a></b>",
            "<a>",
            "<a/><b/>",
            "<a x=\"1\" x=\"2\"/>",
            "<a x=\"&bogus;\"/>",
            "<a>text</a>",
        ] {
            let doc = format!("{prolog}{broken}");
            assert!(
                std::panic::catch_unwind(|| elements(&doc)).is_err(),
                "{broken}"
            );
        }
    }
}
