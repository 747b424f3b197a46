//! Opening a media file without letting it reach anything else: the file is read through our own
//! I/O callbacks and libav's protocol allow-list is empty, so a playlist, a concat list or an
//! image sequence inside the file cannot make the demuxer open other files or the network.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{ff, init, AvError};

/// Checks the path, sniffs the first bytes and opens the demuxer with stream info found.
pub fn open(path: &Path) -> Result<ff::format::context::Input, AvError> {
    open_cancellable(path, None)
}

/// [`open`], with reads that give up when `cancel` is set (a stalled network share).
pub fn open_cancellable(
    path: &Path,
    cancel: Option<Arc<AtomicBool>>,
) -> Result<ff::format::context::Input, AvError> {
    init();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AvError::NotFound {
            path: path.to_owned(),
        },
        _ => AvError::Io {
            path: path.to_owned(),
            source: e,
        },
    })?;
    if !meta.is_file() {
        return Err(AvError::NotAFile {
            path: path.to_owned(),
        });
    }
    if meta.len() == 0 {
        return Err(AvError::Empty {
            path: path.to_owned(),
        });
    }
    let mut file = File::open(path).map_err(|e| AvError::Io {
        path: path.to_owned(),
        source: e,
    })?;
    let mut head = [0u8; 512];
    let n = read_up_to(&mut file, &mut head).map_err(|e| AvError::Io {
        path: path.to_owned(),
        source: e,
    })?;
    if let Some(what) = refused_kind(&head[..n]) {
        return Err(AvError::Refused {
            path: path.to_owned(),
            what,
        });
    }
    let file = File::open(path).map_err(|e| AvError::Io {
        path: path.to_owned(),
        source: e,
    })?;
    let io = ff::format::context::StreamIo::from_read_seek_with_capacity(file, 1 << 20).map_err(
        |e| AvError::Libav {
            path: path.to_owned(),
            what: "cannot set up reading".into(),
            source: e,
        },
    )?;
    let mut opts = ff::Dictionary::new();
    opts.set("protocol_whitelist", "none");
    let name = path.file_name().and_then(|s| s.to_str()).unwrap_or("input");
    let (opened, logged) = super::capture_errors(|| match cancel {
        Some(c) => {
            ff::format::input_from_stream_with_interrupt(io, Some(name), Some(opts), move || {
                c.load(Ordering::Relaxed)
            })
        }
        None => ff::format::input_from_stream(io, Some(name), Some(opts)),
    });
    opened.map_err(|e| AvError::NotMedia {
        path: path.to_owned(),
        reason: most_specific(&logged),
        source: e,
    })
}

/// The demuxer's last word on why it gave up, unless it only restated the error code.
fn most_specific(logged: &[String]) -> Option<String> {
    logged
        .iter()
        .rev()
        .map(|l| l.trim_end_matches('.').trim())
        .find(|l| {
            !l.is_empty()
                && !l.eq_ignore_ascii_case("invalid data found when processing input")
                && !l.starts_with("Error opening input")
        })
        .map(str::to_string)
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Text formats whose whole purpose is to point at other resources.
pub fn refused_kind(head: &[u8]) -> Option<&'static str> {
    let text = String::from_utf8_lossy(head);
    let t = text.trim_start_matches('\u{feff}').trim_start();
    if t.starts_with("#EXTM3U") {
        Some("HLS/M3U playlist")
    } else if t.starts_with("ffconcat") {
        Some("ffconcat list")
    } else if t.starts_with("<?xml") && t.contains("<MPD") || t.starts_with("<MPD") {
        Some("DASH manifest")
    } else if t.starts_with("[playlist]") {
        Some("PLS playlist")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::refused_kind;

    #[test]
    fn playlists_are_recognised() {
        assert!(refused_kind(b"#EXTM3U\n#EXT-X-VERSION:3\n").is_some());
        assert!(refused_kind(b"ffconcat version 1.0\nfile /etc/passwd\n").is_some());
        assert!(refused_kind(b"<?xml version=\"1.0\"?>\n<MPD xmlns=").is_some());
        assert!(refused_kind(b"\x00\x00\x00\x18ftypmp42").is_none());
    }
}
