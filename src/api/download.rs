//! The pure parts of serving a download: one byte range, entity tags, the file name a client
//! sees and how it is put in `Content-Disposition`. No I/O here.

use std::path::Path;

/// The single byte range `header` asks for within a file of `len` bytes, as inclusive
/// `(first, last)`; `None` when the header is not about bytes (then the whole file is sent,
/// as RFC 9110 lets a server ignore a range unit it does not know). An error (answered 416)
/// for a malformed range, several ranges, or a range that starts past the end.
pub fn parse_range(header: &str, len: u64) -> Result<Option<(u64, u64)>, String> {
    let Some((unit, spec)) = header.split_once('=') else {
        return Err("Range: expected bytes=FIRST-LAST".into());
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ok(None);
    }
    let spec = spec.trim();
    if spec.contains(',') {
        return Err("Range: one range per request".into());
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Err(format!(
            "Range: {spec:?} is not FIRST-LAST, FIRST- or -SUFFIX"
        ));
    };
    let num = |s: &str| -> Result<Option<u64>, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!("Range: {s:?} is not a byte position"));
        }
        s.parse::<u64>()
            .map(Some)
            .map_err(|_| format!("Range: {s:?} is too large"))
    };
    let unsatisfiable = || format!("Range: {spec} lies outside the file's {len} bytes");
    match (num(a)?, num(b)?) {
        (Some(first), last) => {
            if first >= len {
                return Err(unsatisfiable());
            }
            let last = last.map_or(len - 1, |l| l.min(len - 1));
            if last < first {
                return Err(format!("Range: {spec}: the last byte is before the first"));
            }
            Ok(Some((first, last)))
        }
        (None, Some(suffix)) => {
            if suffix == 0 || len == 0 {
                return Err(unsatisfiable());
            }
            Ok(Some((len - suffix.min(len), len - 1)))
        }
        (None, None) => Err("Range: \"-\" names no bytes".into()),
    }
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison, as RFC 9110 asks for
/// this header).
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let bare = |t: &str| -> String { t.trim().trim_start_matches("W/").to_string() };
    let want = bare(etag);
    if_none_match
        .split(',')
        .any(|t| t.trim() == "*" || bare(t) == want)
}

/// The name a client sees for a stored file: its own name, without the content-hash prefix
/// (`<sha256[..16]>-` and, when that name was taken, an 8-digit tag) that uploads are stored
/// under in the media directory.
pub fn file_name(stored: &str, sha256: &str, media_dir: &Path) -> String {
    crate::delivery::name::shown(stored, sha256, media_dir)
}

/// `attachment` with an ASCII fallback `filename` (quotes, backslashes, controls and non-ASCII
/// replaced) and the exact name as RFC 8187 `filename*` (UTF-8, percent-encoded).
pub fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\' && c != '%') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut enc = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            enc.push(char::from(b));
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{enc}")
}

/// A content type from the file name's extension, so that a browser can play a proxy.
pub fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "mp4" | "m4v" => "video/mp4",
        "m4a" => "audio/mp4",
        "mov" => "video/quicktime",
        "mxf" => "application/mxf",
        "ts" | "m2ts" => "video/mp2t",
        "mkv" => "video/x-matroska",
        "webm" => "video/webm",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "m3u8" => "application/vnd.apple.mpegurl",
        "mpd" => "application/dash+xml",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "json" => "application/json",
        "xml" => "application/xml",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Ok(Some((0, 99))));
        assert_eq!(parse_range("bytes=900-", 1000), Ok(Some((900, 999))));
        assert_eq!(parse_range("bytes=-100", 1000), Ok(Some((900, 999))));
        assert_eq!(parse_range("bytes=-5000", 1000), Ok(Some((0, 999))));
        assert_eq!(parse_range("bytes=990-5000", 1000), Ok(Some((990, 999))));
        assert_eq!(parse_range("items=0-1", 1000), Ok(None));
        for bad in [
            "bytes=1000-",
            "bytes=0-1,5-6",
            "bytes=5-1",
            "bytes=-0",
            "bytes=-",
            "bytes=x-1",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
            "bytes",
            "bytes=0",
        ] {
            assert!(parse_range(bad, 1000).is_err(), "{bad}");
        }
        assert!(parse_range("bytes=0-", 0).is_err());
        assert!(parse_range("bytes=-1", 0).is_err());
    }

    #[test]
    fn etags() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("W/\"abc\", \"x\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }

    #[test]
    fn names() {
        let media = Path::new("/d/media");
        let h = "0123456789abcdef0123";
        assert_eq!(
            file_name("/d/media/2026/01/0123456789abcdef-promo.mxf", h, media),
            "promo.mxf"
        );
        assert_eq!(
            file_name("/srv/in/0123456789abcdef-x.mxf", h, media),
            "0123456789abcdef-x.mxf"
        );
        assert_eq!(
            file_name("/d/media/2026/01/other.mxf", h, media),
            "other.mxf"
        );
        assert_eq!(
            content_disposition("Évening \"news\"%.mp4"),
            "attachment; filename=\"_vening _news__.mp4\"; \
             filename*=UTF-8''%C3%89vening%20%22news%22%25.mp4"
        );
        assert_eq!(content_type("a.MP4"), "video/mp4");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
