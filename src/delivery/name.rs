//! A destination's file names from its template (`{house_id}_{profile}.{ext}`): fields filled
//! from the asset and the file, each made safe as one file name. Pure.

use std::collections::BTreeMap;

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
