//! Sidecar metadata (`<name>.json` or `<name>.xml` beside a media file): each field read by its
//! type whatever carried it (a JSON number or string, XML text), and sorted by where it goes —
//! the catalog (descriptive fields, tags, custom fields), QC (what the essence must be: duration,
//! size, rate, field order, aspect, audio), both (the identifiers and title QC finds in the file
//! name), or nowhere (unknown names, values not of their field's type). Pure: no I/O.

use serde_json::{Map, Value};

/// Where a known field goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goes {
    Catalog,
    Qc,
    Both,
}

/// How a known field's value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Text,
    /// Seconds: a number, or `hh:mm:ss[.fff]`.
    Seconds,
    /// A whole number; `min` is the least allowed.
    Count {
        min: u64,
    },
    /// A number or a ratio (`25`, `29.97`, `30000/1001`, `16:9`), kept as text for QC.
    Ratio,
    FieldOrder,
    /// A word compared without regard to case (`stereo`, `5.1`).
    Word,
    Tags,
    Object,
}

const FIELDS: &[(&str, Goes, Type)] = &[
    ("title", Goes::Both, Type::Text),
    ("description", Goes::Catalog, Type::Text),
    ("subject", Goes::Catalog, Type::Text),
    ("creator", Goes::Catalog, Type::Text),
    ("contributor", Goes::Catalog, Type::Text),
    ("date", Goes::Catalog, Type::Text),
    ("language", Goes::Catalog, Type::Text),
    ("rights", Goes::Catalog, Type::Text),
    ("identifier", Goes::Both, Type::Text),
    ("series", Goes::Catalog, Type::Text),
    ("episode", Goes::Catalog, Type::Text),
    ("house_id", Goes::Both, Type::Text),
    ("kind", Goes::Catalog, Type::Text),
    ("tags", Goes::Catalog, Type::Tags),
    ("custom", Goes::Catalog, Type::Object),
    ("duration_s", Goes::Qc, Type::Seconds),
    ("width", Goes::Qc, Type::Count { min: 1 }),
    ("height", Goes::Qc, Type::Count { min: 1 }),
    ("frame_rate", Goes::Qc, Type::Ratio),
    ("field_order", Goes::Qc, Type::FieldOrder),
    ("aspect", Goes::Qc, Type::Ratio),
    ("audio_channels", Goes::Qc, Type::Count { min: 1 }),
    ("audio_layout", Goes::Qc, Type::Word),
    ("audio_tracks", Goes::Qc, Type::Count { min: 0 }),
    ("audio_channels_total", Goes::Qc, Type::Count { min: 0 }),
];

/// A sidecar's fields, typed, and where each went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sidecar {
    /// Every usable field with its typed value (numbers as JSON numbers, ratios and words as
    /// text, tags as a list): what the catalog and QC read.
    pub fields: Map<String, Value>,
    /// Fields recorded on the asset.
    pub catalog: Vec<String>,
    /// Fields QC compares with the essence.
    pub qc: Vec<String>,
    /// Names no field has.
    pub unknown: Vec<String>,
    /// Known fields whose value is not of their type (or empty), with why.
    pub invalid: Vec<(String, String)>,
}

impl Sidecar {
    /// One line for the ingest log: which fields went where.
    pub fn summary(&self) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        let mut s = format!(
            "sidecar: to the catalog: {}; to QC: {}",
            list(&self.catalog),
            list(&self.qc)
        );
        if !self.unknown.is_empty() {
            s.push_str(&format!(
                "; ignored (no such field): {}",
                self.unknown.join(", ")
            ));
        }
        if !self.invalid.is_empty() {
            let bad: Vec<String> = self
                .invalid
                .iter()
                .map(|(k, why)| format!("{k} ({why})"))
                .collect();
            s.push_str(&format!("; ignored (not usable): {}", bad.join(", ")));
        }
        s
    }
}

/// Reads a sidecar's raw fields (a JSON object, or the text of XML elements) by each field's
/// type.
pub fn typed(raw: &Value) -> Sidecar {
    let mut out = Sidecar::default();
    let Some(obj) = raw.as_object() else {
        return out;
    };
    for (name, v) in obj {
        let Some(&(_, goes, ty)) = FIELDS.iter().find(|(n, _, _)| n == name) else {
            out.unknown.push(name.clone());
            continue;
        };
        if v.is_null() {
            continue;
        }
        match read(ty, v) {
            Ok(t) => {
                out.fields.insert(name.clone(), t);
                if matches!(goes, Goes::Catalog | Goes::Both) {
                    out.catalog.push(name.clone());
                }
                if matches!(goes, Goes::Qc | Goes::Both) {
                    out.qc.push(name.clone());
                }
            }
            Err(why) => out.invalid.push((name.clone(), why)),
        }
    }
    out.catalog.sort();
    out.qc.sort();
    out.unknown.sort();
    out.invalid.sort();
    out
}

/// The text of a value that is text or a number.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

fn read(ty: Type, v: &Value) -> Result<Value, String> {
    let t = text(v);
    match ty {
        Type::Text => match t {
            Some(s) if !s.is_empty() => Ok(Value::String(s)),
            Some(_) => Err("empty".into()),
            None => Err(format!("{} is not text", shown(v))),
        },
        Type::Word => match t {
            Some(s) if !s.is_empty() => Ok(Value::String(s.to_ascii_lowercase())),
            _ => Err(format!("{} is not a word", shown(v))),
        },
        Type::Seconds => t
            .as_deref()
            .and_then(seconds)
            .filter(|s| s.is_finite() && *s > 0.0)
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("{} is not a duration in seconds", shown(v))),
        Type::Count { min } => {
            let n = match v {
                Value::Number(n) => n.as_u64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                        .map(|f| f as u64)
                }),
                Value::String(s) => s.trim().parse::<u64>().ok(),
                _ => None,
            };
            match n {
                Some(n) if n >= min && n <= 1_000_000 => Ok(Value::from(n)),
                _ => Err(format!(
                    "{} is not a whole number of at least {min}",
                    shown(v)
                )),
            }
        }
        Type::Ratio => {
            let s = t.unwrap_or_default();
            let s = s
                .strip_suffix("fps")
                .map(str::trim)
                .unwrap_or(&s)
                .to_string();
            if ratio(&s).is_some() {
                Ok(Value::String(s))
            } else {
                Err(format!("{} is not a number or a ratio", shown(v)))
            }
        }
        Type::FieldOrder => {
            let s = t.unwrap_or_default().to_ascii_lowercase();
            let s = s.replace(['-', '_'], " ");
            match s.trim() {
                "tff" | "tt" | "top" | "top first" | "top field first" | "upper"
                | "upper field first" => Ok(Value::String("tff".into())),
                "bff" | "bb" | "bottom" | "bottom first" | "bottom field first" | "lower"
                | "lower field first" => Ok(Value::String("bff".into())),
                "progressive" | "p" | "none" => Ok(Value::String("progressive".into())),
                _ => Err(format!("{} is not tff, bff or progressive", shown(v))),
            }
        }
        Type::Tags => match v {
            Value::Array(a) => {
                let tags: Vec<Value> = a
                    .iter()
                    .filter_map(text)
                    .filter(|t| !t.is_empty())
                    .map(Value::String)
                    .collect();
                if tags.len() == a.len() {
                    Ok(Value::Array(tags))
                } else {
                    Err("a tag is not text".into())
                }
            }
            Value::String(s) => Ok(Value::Array(
                s.split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(|x| Value::String(x.to_string()))
                    .collect(),
            )),
            _ => Err(format!("{} is not a list of tags", shown(v))),
        },
        Type::Object => match v {
            Value::Object(_) => Ok(v.clone()),
            _ => Err(format!("{} is not an object", shown(v))),
        },
    }
}

/// Seconds from `60`, `60.5`, `01:00`, `00:01:00` or `00:01:00.500`.
fn seconds(s: &str) -> Option<f64> {
    let s = s.trim().trim_end_matches('s').trim();
    if !s.contains(':') {
        return s.parse::<f64>().ok();
    }
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() > 3 {
        return None;
    }
    let mut total = 0.0;
    for (i, p) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let v: f64 = p.trim().parse().ok()?;
        if v < 0.0 || (!last && v.fract() != 0.0) || (i > 0 && v >= 60.0) {
            return None;
        }
        total = total * 60.0 + v;
    }
    Some(total)
}

/// `25`, `29.97`, `30000/1001`, `16:9` as a number.
fn ratio(s: &str) -> Option<f64> {
    let s = s.trim();
    let (a, b) = match s.split_once(['/', ':']) {
        Some((a, b)) => (a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?),
        None => (s.parse::<f64>().ok()?, 1.0),
    };
    (b != 0.0)
        .then(|| a / b)
        .filter(|v| v.is_finite() && *v > 0.0)
}

/// The text of simple `<name>text</name>` elements (the sidecar's fields); repeated `<tag>`
/// elements become a list of tags.
pub fn flat_xml(text: &str) -> Value {
    let mut fields = serde_json::Map::new();
    let mut tags = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let Some(j) = rest.find('>') else { break };
        let name = &rest[..j];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            rest = &rest[j + 1..];
            continue;
        }
        let body = &rest[j + 1..];
        let close = format!("</{name}>");
        let Some(k) = body.find(&close) else {
            rest = body;
            continue;
        };
        let inner = &body[..k];
        if !inner.contains('<') {
            let v = unescape(inner.trim());
            if name == "tag" {
                tags.push(Value::String(v));
            } else {
                fields.insert(name.to_string(), Value::String(v));
            }
            rest = &body[k + close.len()..];
        } else {
            rest = body;
        }
    }
    if !tags.is_empty() {
        fields.insert("tags".into(), Value::Array(tags));
    }
    Value::Object(fields)
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_read_by_type_whatever_the_carrier() {
        // JSON numbers, JSON strings and XML text give the same fields.
        let a =
            typed(&json!({"duration_s": 60, "width": 1920, "frame_rate": 25, "aspect": "16:9"}));
        let b = typed(
            &json!({"duration_s": "60", "width": "1920", "frame_rate": "25", "aspect": "16:9"}),
        );
        let c = typed(&super::flat_xml(
            "<asset><duration_s> 60 </duration_s><width>1920</width><frame_rate>25</frame_rate>\
             <aspect>16:9</aspect></asset>",
        ));
        assert_eq!(a.fields, b.fields);
        assert_eq!(a.fields, c.fields);
        assert_eq!(a.fields["duration_s"].as_f64(), Some(60.0));
        assert_eq!(a.fields["width"].as_u64(), Some(1920));
        assert_eq!(a.fields["frame_rate"], "25");
        assert_eq!(a.qc, ["aspect", "duration_s", "frame_rate", "width"]);
        assert!(a.catalog.is_empty() && a.unknown.is_empty() && a.invalid.is_empty());
    }

    #[test]
    fn each_field_is_reported_where_it_went() {
        let s = typed(&json!({
            "title": "Autumn", "identifier": 42, "episode": 3, "tags": "a, b",
            "aspect": 1.78, "audio_layout": "Stereo", "field_order": "Top field first",
            "duration_s": "00:01:00.5", "custom_thing": 1, "width": "wide", "height": -5,
            "kind": true, "frame_rate": "29.97 fps", "audio_tracks": 0
        }));
        assert_eq!(s.fields["identifier"], "42");
        assert_eq!(s.fields["episode"], "3");
        assert_eq!(s.fields["tags"], json!(["a", "b"]));
        assert_eq!(s.fields["audio_layout"], "stereo");
        assert_eq!(s.fields["field_order"], "tff");
        assert_eq!(s.fields["duration_s"].as_f64(), Some(60.5));
        assert_eq!(s.fields["frame_rate"], "29.97");
        assert_eq!(s.fields["aspect"], "1.78");
        assert_eq!(s.fields["audio_tracks"], 0);
        assert!(s.catalog.contains(&"title".to_string()) && s.qc.contains(&"title".to_string()));
        assert!(s.qc.contains(&"aspect".to_string()) && s.qc.contains(&"audio_layout".to_string()));
        assert!(!s.catalog.contains(&"aspect".to_string()));
        assert_eq!(s.unknown, ["custom_thing"]);
        let bad: Vec<&str> = s.invalid.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(bad, ["height", "kind", "width"]);
        let line = s.summary();
        assert!(
            line.contains("to QC: ") && line.contains("aspect"),
            "{line}"
        );
        assert!(
            line.contains("ignored (no such field): custom_thing"),
            "{line}"
        );
        assert!(
            line.contains("width (\"wide\" is not a whole number"),
            "{line}"
        );
    }

    #[test]
    fn nothing_panics_on_odd_values() {
        for v in [
            json!(null),
            json!([1, 2]),
            json!("text"),
            json!({"duration_s": "1:2:3:4"}),
            json!({"duration_s": "99:99"}),
            json!({"duration_s": 1e308}),
            json!({"duration_s": -1}),
            json!({"width": 1.5}),
            json!({"width": 18446744073709551615u64}),
            json!({"frame_rate": "1/0"}),
            json!({"tags": [1, {"x": 1}]}),
            json!({"custom": "x"}),
            json!({"aspect": ":"}),
        ] {
            let s = typed(&v);
            let _ = s.summary();
        }
        assert_eq!(seconds("01:00"), Some(60.0));
        assert_eq!(seconds("1:2:3:4"), None);
        assert_eq!(
            ratio("30000/1001").map(|r| (r * 100.0).round()),
            Some(2997.0)
        );
    }
}
