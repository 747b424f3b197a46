//! Sidecar manifests sent with a delivery: the asset's metadata and each file delivered (its
//! name there, size and SHA-256), as JSON and as XML. Pure.

use serde_json::{json, Map, Value};

/// A file as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub profile: String,
    pub size: u64,
    pub sha256: String,
}

/// The manifest's content: `asset` is the asset's metadata (an object of fields).
pub fn json(asset: &Value, destination: &str, files: &[Entry]) -> Vec<u8> {
    let v = json!({
        "manifest": 1,
        "destination": destination,
        "asset": asset,
        "files": files.iter().map(|f| json!({
            "name": f.name, "profile": f.profile, "size": f.size, "sha256": f.sha256,
        })).collect::<Vec<_>>(),
    });
    let mut out = serde_json::to_vec_pretty(&v).unwrap_or_default();
    out.push(b'\n');
    out
}

/// The same as XML: `<manifest><asset><field name="…">…</field>…</asset><files><file …/>`.
pub fn xml(asset: &Value, destination: &str, files: &[Entry]) -> Vec<u8> {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str(&format!(
        "<manifest version=\"1\" destination=\"{}\">\n  <asset>\n",
        esc(destination)
    ));
    let empty = Map::new();
    for (k, v) in asset.as_object().unwrap_or(&empty) {
        if v.is_null() {
            continue;
        }
        let text = match v {
            Value::String(t) => t.clone(),
            other => other.to_string(),
        };
        s.push_str(&format!(
            "    <field name=\"{}\">{}</field>\n",
            esc(k),
            esc(&text)
        ));
    }
    s.push_str("  </asset>\n  <files>\n");
    for f in files {
        s.push_str(&format!(
            "    <file name=\"{}\" profile=\"{}\" size=\"{}\" sha256=\"{}\"/>\n",
            esc(&f.name),
            esc(&f.profile),
            f.size,
            esc(&f.sha256)
        ));
    }
    s.push_str("  </files>\n</manifest>\n");
    s.into_bytes()
}

/// Text as XML character data or an attribute value; characters XML 1.0 cannot hold are left
/// out.
fn esc(t: &str) -> String {
    let mut o = String::with_capacity(t.len());
    for c in t.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' | '\n' | '\r' => o.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_and_lists_every_file() {
        let asset = json!({"title": "Tom & \"Jerry\" <1>", "id": 3, "none": null});
        let files = [Entry {
            name: "a.mp4".into(),
            profile: "web".into(),
            size: 10,
            sha256: "ab".into(),
        }];
        let x = String::from_utf8(xml(&asset, "playout", &files)).unwrap();
        assert!(x.contains("Tom &amp; &quot;Jerry&quot; &lt;1&gt;"), "{x}");
        assert!(x.contains("<file name=\"a.mp4\" profile=\"web\" size=\"10\" sha256=\"ab\"/>"));
        assert!(!x.contains("none"));
        let j: Value = serde_json::from_slice(&json(&asset, "playout", &files)).unwrap();
        assert_eq!(j["files"][0]["size"], 10);
    }
}
