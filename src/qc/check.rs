//! QC of a file a media manager can trust: a full decode (errors counted and located), black,
//! frozen and silent stretches with their time ranges, loudness and true peak, and the essence
//! against what its metadata declares (duration, format, the name the sidecar gives).

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::QcRules;
use crate::av::{probe, samples, scan};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QcCheck {
    pub name: String,
    /// `pass`, `warn` or `fail`.
    pub status: &'static str,
    pub expected: String,
    pub measured: String,
    /// Where: `(start_s, end_s)` stretches or points.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QcReport {
    pub file: String,
    /// `pass`, `warn` (a warning, nothing failed) or `fail`.
    pub verdict: &'static str,
    pub checks: Vec<QcCheck>,
}

#[derive(Debug, thiserror::Error)]
pub enum QcError {
    #[error(transparent)]
    Av(#[from] crate::av::AvError),
}

fn check(name: &str, status: &'static str, expected: String, measured: String) -> QcCheck {
    QcCheck {
        name: name.into(),
        status,
        expected,
        measured,
        ranges: Vec::new(),
    }
}

/// Stretches at least `min_s` long: a warning, a failure when one passes `fail_s`.
fn stretches(name: &str, all: &[(f64, f64)], min_s: f64, fail_s: f64) -> QcCheck {
    let long: Vec<(f64, f64)> = all
        .iter()
        .copied()
        .filter(|(a, b)| b - a >= min_s)
        .collect();
    let worst = long.iter().map(|(a, b)| b - a).fold(0.0, f64::max);
    let status = if worst > fail_s {
        "fail"
    } else if long.is_empty() {
        "pass"
    } else {
        "warn"
    };
    QcCheck {
        name: name.into(),
        status,
        expected: format!("none of {min_s} s or more (fail over {fail_s} s)"),
        measured: if long.is_empty() {
            "none".into()
        } else {
            format!("{} stretch(es), longest {worst:.2} s", long.len())
        },
        ranges: long,
    }
}

/// Runs of silence (every channel's peak under -60 dBFS) in 100 ms windows, fed block by block.
#[derive(Default)]
struct Silence {
    runs: Vec<(f64, f64)>,
    since: Option<f64>,
    t: f64,
    window_peak: f32,
    window_n: usize,
}

impl Silence {
    const THRESHOLD: f32 = 0.001;

    fn block(&mut self, b: &samples::Block<'_>) {
        let window_len = (b.rate as usize / 10).max(1);
        let n = b.planes.first().map_or(0, |p| p.len());
        for i in 0..n {
            for p in &b.planes {
                self.window_peak = self.window_peak.max(p[i].abs());
            }
            self.window_n += 1;
            if self.window_n == window_len {
                let start = self.t;
                self.t += window_len as f64 / f64::from(b.rate.max(1));
                match (self.window_peak < Self::THRESHOLD, self.since) {
                    (true, None) => self.since = Some(start),
                    (false, Some(s)) => {
                        self.runs.push((s, start));
                        self.since = None;
                    }
                    _ => {}
                }
                self.window_peak = 0.0;
                self.window_n = 0;
            }
        }
    }

    fn finish(mut self) -> Vec<(f64, f64)> {
        if let Some(s) = self.since {
            self.runs.push((s, self.t));
        }
        self.runs
    }
}

fn norm(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// A number or ratio (`25`, `25/1`, `29.97`, `30000/1001`, `16:9`, `1.778`) as a value.
fn ratio(s: &str) -> Option<f64> {
    let s = s.trim();
    let (a, b) = match s.split_once(['/', ':']) {
        Some((a, b)) => (a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?),
        None => (s.parse::<f64>().ok()?, 1.0),
    };
    (b != 0.0).then(|| a / b).filter(|v| v.is_finite())
}

/// Whether a declared value and a measured one agree: numbers and ratios within 0.5 %
/// (29.97 is 30000/1001; 1.78 is 16:9), words without regard to case.
fn same_value(want: &str, got: &str) -> bool {
    match (ratio(want), ratio(got)) {
        (Some(a), Some(b)) => (a - b).abs() <= 0.005 * a.abs().max(b.abs()),
        _ => want.trim().eq_ignore_ascii_case(got.trim()),
    }
}

/// QC of `path` under `rules`; `declared` holds what its metadata says (sidecar fields such as
/// `house_id`, `title`, `duration_s`, `width`, `height`, `frame_rate`, `audio_channels`).
pub fn check_file(path: &Path, rules: &QcRules, declared: &Value) -> Result<QcReport, QcError> {
    let report = probe::probe(path)?;
    // One decode: the picture, the errors, and the programme's silence and loudness.
    let streams = crate::qc::loudness::programme_streams(&report);
    let mut quiet = Silence::default();
    let mut meter = crate::qc::loudness::Meter::new();
    let s = scan::scan_with(path, true, &streams, |b| {
        quiet.block(b);
        meter.block(b);
    })?;
    let mut checks = decode_health(&s, rules);
    checks.extend(picture_content(&s, rules));
    if !streams.is_empty() {
        checks.push(stretches(
            "silence",
            &quiet.finish(),
            rules.silence_min_s,
            rules.fail_over_s,
        ));
        checks.extend(loudness(meter, &report, &streams, rules));
    }
    checks.extend(duration(&s, &report, rules, declared));
    checks.extend(declared_format(&report, rules, declared));
    checks.extend(name_matches(path, declared));
    Ok(QcReport {
        file: path.display().to_string(),
        verdict: verdict(&checks, rules),
        checks,
    })
}

/// The decode: refused packets, corrupt frames and concealed errors (located), holes in the
/// picture's timeline, and whether any picture decoded at all.
fn decode_health(s: &scan::ScanReport, rules: &QcRules) -> Vec<QcCheck> {
    let mut checks = Vec::new();
    let corrupt = s.video.as_ref().map_or(0, |v| v.corrupt_frames);
    let errors = s.decode_errors + corrupt + s.logged_errors;
    let mut c = check(
        "decode errors",
        if errors <= rules.max_decode_errors {
            "pass"
        } else {
            "fail"
        },
        format!("<= {}", rules.max_decode_errors),
        format!(
            "{} refused packets, {corrupt} corrupt frames, {} errors concealed by the decoder",
            s.decode_errors, s.logged_errors
        ),
    );
    c.ranges = s.error_times_s.iter().map(|t| (*t, *t)).collect();
    checks.push(c);
    if let Some(v) = &s.video {
        let mut c = check(
            "picture continuity",
            if v.gaps.is_empty() { "pass" } else { "fail" },
            "no missing frames".into(),
            if v.gaps.is_empty() {
                "none missing".into()
            } else {
                format!("{} hole(s) in the timeline", v.gaps.len())
            },
        );
        c.ranges = v.gaps.clone();
        checks.push(c);
    }
    if s.video.as_ref().is_some_and(|v| v.frames == 0) {
        checks.push(check(
            "pictures",
            "fail",
            "decoded frames".into(),
            "none".into(),
        ));
    }
    checks
}

/// Black and frozen stretches, where the picture was measured.
fn picture_content(s: &scan::ScanReport, rules: &QcRules) -> Vec<QcCheck> {
    match &s.video {
        Some(v) if v.picture_measured => vec![
            stretches("black", &v.black, rules.black_min_s, rules.fail_over_s),
            stretches("freeze", &v.frozen, rules.freeze_min_s, rules.fail_over_s),
        ],
        _ => Vec::new(),
    }
}

/// The programme's integrated loudness and true peak against the rules' target.
fn loudness(
    meter: crate::qc::loudness::Meter,
    report: &probe::ProbeReport,
    streams: &[usize],
    rules: &QcRules,
) -> Vec<QcCheck> {
    let l = match meter.finish(&report.file, streams) {
        Ok(l) => l,
        Err(e) => {
            return vec![check(
                "loudness",
                "fail",
                "measurable".into(),
                e.to_string(),
            )]
        }
    };
    let mut checks = Vec::new();
    if let Some(i) = l.integrated_lufs {
        let off = (i - rules.loudness_target).abs();
        checks.push(check(
            "loudness",
            if off <= rules.loudness_tolerance {
                "pass"
            } else {
                "warn"
            },
            format!(
                "{} ± {} LUFS",
                rules.loudness_target, rules.loudness_tolerance
            ),
            format!("{i:.1} LUFS"),
        ));
    }
    if let Some(tp) = l.true_peak_dbtp {
        checks.push(check(
            "true peak",
            if tp <= rules.true_peak_max {
                "pass"
            } else {
                "warn"
            },
            format!("<= {} dBTP", rules.true_peak_max),
            format!("{tp:.1} dBTP"),
        ));
    }
    checks
}

/// The decoded essence's length against the duration the sidecar (else the container) declares.
fn duration(
    s: &scan::ScanReport,
    report: &probe::ProbeReport,
    rules: &QcRules,
    declared: &Value,
) -> Option<QcCheck> {
    let essence_s = s
        .video
        .as_ref()
        .and_then(|v| Some(v.last_pts_s? - v.first_pts_s?))
        .map(|d| {
            let n = s.video.as_ref().map_or(0, |v| v.frames);
            if n > 1 {
                d * n as f64 / (n - 1) as f64
            } else {
                d
            }
        })
        .or_else(|| s.audio.iter().map(|a| a.duration_s).reduce(f64::max))
        .unwrap_or(0.0);
    let (d, from) = declared["duration_s"]
        .as_f64()
        .map(|d| (d, "the sidecar"))
        .or_else(|| report.container.duration_s.map(|d| (d, "the container")))?;
    Some(check(
        "duration",
        if (d - essence_s).abs() <= rules.duration_tolerance_s {
            "pass"
        } else {
            "fail"
        },
        format!(
            "{d:.2} s (declared by {from}) ± {}",
            rules.duration_tolerance_s
        ),
        format!("{essence_s:.2} s decoded"),
    ))
}

/// The format the metadata declares (else the workflow expects of every file) against the
/// probed one: picture size, rate, field order, aspect, audio channels, layout and tracks.
fn declared_format(report: &probe::ProbeReport, rules: &QcRules, declared: &Value) -> Vec<QcCheck> {
    let v = report.video.first();
    let total_channels: u32 = report.audio.iter().map(|a| a.channels).sum();
    let mut checks = Vec::new();
    for (key, got) in [
        ("width", v.map(|v| v.width.to_string())),
        ("height", v.map(|v| v.height.to_string())),
        ("frame_rate", v.and_then(|v| v.frame_rate.clone())),
        ("field_order", v.and_then(|v| v.field_order.clone())),
        ("aspect", v.and_then(|v| v.display_aspect_ratio.clone())),
        (
            "audio_channels",
            report.audio.first().map(|a| a.channels.to_string()),
        ),
        (
            "audio_layout",
            report.audio.first().and_then(|a| a.channel_layout.clone()),
        ),
        ("audio_tracks", Some(report.audio.len().to_string())),
        ("audio_channels_total", Some(total_channels.to_string())),
    ] {
        let (want, by) = match (&declared[key], rules.expect.get(key)) {
            (Value::String(x), _) => (x.clone(), "declared"),
            (Value::Number(n), _) => (n.to_string(), "declared"),
            (_, Some(Value::String(x))) => (x.clone(), "expected"),
            (_, Some(Value::Number(n))) => (n.to_string(), "expected"),
            _ => continue,
        };
        let got = got.unwrap_or_else(|| "absent".into());
        checks.push(check(
            &format!("{by} {key}"),
            if same_value(&want, &got) {
                "pass"
            } else {
                "fail"
            },
            want,
            got,
        ));
    }
    checks
}

/// The name: the file must carry the house ID or the title its metadata gives it.
fn name_matches(path: &Path, declared: &Value) -> Option<QcCheck> {
    let stem = norm(
        &path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let (key, want) = ["house_id", "identifier", "title"]
        .into_iter()
        .find_map(|key| {
            declared[key]
                .as_str()
                .filter(|w| !norm(w).is_empty())
                .map(|w| (key, w))
        })?;
    Some(check(
        "name matches metadata",
        match (stem.contains(&norm(want)), key) {
            (true, _) => "pass",
            // A title is often shortened in a file name; an identifier is not.
            (false, "title") => "warn",
            (false, _) => "fail",
        },
        format!("the file name carries the {key} {want:?}"),
        path.file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    ))
}

/// `fail` when a check failed; with warnings and no failure, `warn` (or `fail` when the rules
/// stop on warnings); else `pass`.
fn verdict(checks: &[QcCheck], rules: &QcRules) -> &'static str {
    if checks.iter().any(|c| c.status == "fail") {
        "fail"
    } else if checks.iter().any(|c| c.status == "warn") {
        if rules.warnings_stop {
            "fail"
        } else {
            "warn"
        }
    } else {
        "pass"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_values_compare_as_numbers_or_words() {
        assert!(same_value("25", "25/1"));
        assert!(same_value("29.97", "30000/1001"));
        assert!(!same_value("25", "30000/1001"));
        assert!(same_value("16:9", "16:9"));
        assert!(same_value("1.78", "16:9"));
        assert!(!same_value("4:3", "16:9"));
        assert!(same_value("Stereo", "stereo"));
        assert!(!same_value("5.1", "stereo"));
        assert!(!same_value("1920", "absent"));
    }

    #[test]
    fn stretches_warn_then_fail() {
        let all = [(0.0, 1.0), (5.0, 8.0), (10.0, 50.0)];
        let c = stretches("black", &all[..2], 2.0, 30.0);
        assert_eq!((c.status, c.ranges.clone()), ("warn", vec![(5.0, 8.0)]));
        assert_eq!(stretches("black", &all, 2.0, 30.0).status, "fail");
        assert_eq!(stretches("black", &all[..1], 2.0, 30.0).status, "pass");
        assert_eq!(norm("ANT-2026_000042 News!"), "ant2026000042news");
    }
}
