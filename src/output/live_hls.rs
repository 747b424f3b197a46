//! Live HLS/CMAF: the sliding-window (or DVR-window) settings of each rendition's segmenter
//! (libavformat's `hls` muxer: segments cut on the GOP-aligned target, each segment and playlist
//! written under a temporary name and renamed, `#EXT-X-PROGRAM-DATE-TIME` on every segment,
//! segments that left the window deleted after a grace), and the master playlist over the
//! renditions, written atomically (temp, fsync, rename) with [`super::package::hls`]'s writer.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::package::hls::{self, Variant};

/// The window a live playlist keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveHlsWindow {
    /// Segments listed in a media playlist (sliding window).
    pub window_segments: u32,
    /// A DVR window instead: this many seconds listed (players can seek back over it).
    pub dvr_window_s: Option<f64>,
    /// Segments kept on disk after they leave the playlist, for players still fetching them.
    pub delete_grace_segments: u32,
}

impl Default for LiveHlsWindow {
    fn default() -> Self {
        LiveHlsWindow {
            window_segments: 6,
            dvr_window_s: None,
            delete_grace_segments: 2,
        }
    }
}

impl LiveHlsWindow {
    /// Segments listed in each media playlist for segments of `segment_s` seconds.
    pub fn list_size(&self, segment_s: f64) -> u32 {
        match self.dvr_window_s {
            Some(d) if d > 0.0 && segment_s > 0.0 => (d / segment_s).ceil().max(1.0) as u32,
            _ => self.window_segments.max(1),
        }
    }
}

/// One rendition of a live ladder, as the master playlist names it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendition {
    /// Its folder under the ladder's folder (holding `index.m3u8`).
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub frame_rate: f64,
    /// Peak bits per second of video and audio together.
    pub bandwidth: u64,
    pub codecs: String,
}

/// Options of libavformat's `hls` muxer for a live rendition written into `dir`.
pub fn mux_options(
    dir: &Path,
    segment_s: f64,
    segment_type: &str,
    window: &LiveHlsWindow,
) -> Vec<(String, String)> {
    let ext = if segment_type == "fmp4" { "m4s" } else { "ts" };
    vec![
        ("hls_time".into(), format!("{segment_s}")),
        (
            "hls_list_size".into(),
            window.list_size(segment_s).to_string(),
        ),
        (
            "hls_delete_threshold".into(),
            window.delete_grace_segments.max(1).to_string(),
        ),
        (
            "hls_flags".into(),
            "delete_segments+program_date_time+temp_file+independent_segments".into(),
        ),
        ("hls_segment_type".into(), segment_type.into()),
        ("hls_fmp4_init_filename".into(), "init.mp4".into()),
        (
            "hls_segment_filename".into(),
            dir.join(format!("seg_%06d.{ext}"))
                .to_string_lossy()
                .into_owned(),
        ),
    ]
}

/// The RFC 6381 name of an H.264 stream of this profile and level (`avc1.64001f`).
pub fn avc_codec(profile: Option<&str>, level: Option<&str>) -> String {
    let (idc, constraints) = match profile.unwrap_or("high") {
        "baseline" => (0x42, 0xc0),
        "main" => (0x4d, 0x40),
        "high10" => (0x6e, 0x00),
        "high422" => (0x7a, 0x00),
        _ => (0x64, 0x00),
    };
    let level = level
        .and_then(|l| l.parse::<f64>().ok())
        .map_or(0x28, |l| (l * 10.0).round() as u32);
    format!("avc1.{idc:02x}{constraints:02x}{level:02x}")
}

/// Writes `master.m3u8` in `dir` over these renditions: temporary name, fsync, rename.
pub fn write_master(dir: &Path, renditions: &[Rendition]) -> std::io::Result<PathBuf> {
    let variants: Vec<Variant> = renditions
        .iter()
        .map(|r| Variant {
            uri: format!("{}/index.m3u8", r.name),
            bandwidth: r.bandwidth,
            average_bandwidth: 0,
            width: r.width,
            height: r.height,
            codecs: r.codecs.clone(),
            frame_rate: r.frame_rate,
            audio_group: None,
        })
        .collect();
    let text = hls::write_master(&variants, true);
    let path = dir.join("master.m3u8");
    let tmp = dir.join(".master.m3u8.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_options() {
        let w = LiveHlsWindow::default();
        assert_eq!(w.list_size(2.0), 6);
        let dvr = LiveHlsWindow {
            dvr_window_s: Some(3600.0),
            ..w.clone()
        };
        assert_eq!(dvr.list_size(4.0), 900);
        let o = mux_options(Path::new("/x/720p"), 4.0, "fmp4", &w);
        let get = |k: &str| o.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
        assert_eq!(get("hls_list_size"), Some("6"));
        assert_eq!(get("hls_segment_filename"), Some("/x/720p/seg_%06d.m4s"));
        assert!(get("hls_flags").unwrap().contains("program_date_time"));
    }

    #[test]
    fn codec_names() {
        assert_eq!(avc_codec(Some("high"), Some("4.0")), "avc1.640028");
        assert_eq!(avc_codec(Some("main"), Some("3.1")), "avc1.4d401f");
    }

    #[test]
    fn master_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let r = Rendition {
            name: "720p".into(),
            width: 1280,
            height: 720,
            frame_rate: 25.0,
            bandwidth: 3_500_000,
            codecs: "avc1.640028,mp4a.40.2".into(),
        };
        let p = write_master(dir.path(), &[r]).unwrap();
        let text = std::fs::read_to_string(p).unwrap();
        let v = hls::parse_master(&text).unwrap();
        assert_eq!(v[0].uri, "720p/index.m3u8");
        assert_eq!((v[0].width, v[0].height), (1280, 720));
        assert!(!dir.path().join(".master.m3u8.tmp").exists());
    }
}
