//! A destination's file names from its template (`{house_id}_{profile}.{ext}`): fields filled
//! from the asset and the file, each made safe as one file name. Pure.

use std::collections::BTreeMap;
use std::path::Path;

/// The values a template may name (see `config::delivery::Destination::naming`).
pub type Fields = BTreeMap<&'static str, String>;

/// Fills `template` (already checked by the config) with `fields`; characters that are not
/// letters, digits, `.`, `-` or `_` become `_`, so the result is one plain file name.
pub fn render(template: &str, fields: &Fields) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find('}') else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        out.push_str(fields.get(&after[..j]).map_or("", String::as_str));
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    let safe: String = out
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = safe.trim_start_matches('.').to_string();
    if safe.is_empty() {
        "unnamed".into()
    } else {
        safe
    }
}

/// The name a client sees for a stored file: its own name, without the content-hash prefix
/// (`<sha256[..16]>-` and, when that name was taken, an 8-digit tag) that uploads are stored
/// under in the media directory.
pub fn shown(stored: &str, sha256: &str, media_dir: &Path) -> String {
    let p = Path::new(stored);
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let Some(h16) = sha256.get(..16) else {
        return name;
    };
    if !p.starts_with(media_dir) {
        return name;
    }
    let Some(rest) = name.strip_prefix(&format!("{h16}-")) else {
        return name;
    };
    // `<hash>-<tag>-<name>` is only made when `<hash>-<name>` existed.
    if let Some((tag, after)) = rest.split_once('-') {
        if tag.len() == 8
            && tag.bytes().all(|c| c.is_ascii_hexdigit())
            && !after.is_empty()
            && p.with_file_name(format!("{h16}-{after}")).exists()
        {
            return after.to_string();
        }
    }
    if rest.is_empty() {
        name
    } else {
        rest.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_safe_file_names() {
        let mut f = Fields::new();
        f.insert("house_id", "ANT-2026-000001".into());
        f.insert("profile", "web-h264".into());
        f.insert("ext", "mp4".into());
        f.insert("title", "../Evening news/".into());
        assert_eq!(
            render("{house_id}_{profile}.{ext}", &f),
            "ANT-2026-000001_web-h264.mp4"
        );
        assert_eq!(render("{title}.{ext}", &f), "_Evening_news_.mp4");
        assert_eq!(render("{nothing}", &f), "unnamed");
    }
}
