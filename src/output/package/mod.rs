//! Completing a package: the HLS master playlist and the DASH manifest are written from what was
//! actually produced (segment sizes and durations, codec configuration read back from the files),
//! every file is synced, and the directory is published by one rename. The texts themselves are
//! pure ([`hls`], [`dash`]). Imports `av` (probe, to read codec configuration back); never
//! pipeline, catalog, jobs or api.

use std::path::Path;

use crate::av::engine::VideoOut;
use crate::av::probe;

pub mod dash;
pub mod hls;

/// One HLS rendition written into a package.
#[derive(Debug, Clone)]
pub struct Written<'a> {
    pub name: &'a str,
    /// Its media playlist.
    pub playlist: &'a Path,
    /// The video it was encoded to (frame rate and sample aspect go into the texts).
    pub video: Option<&'a VideoOut>,
}

/// A package being completed: its HLS renditions as written (name, media playlist) in the
/// temporary directory, what to write over them, and where to publish it.
#[derive(Debug, Clone)]
pub struct Package<'a> {
    /// Where the package is published.
    pub dir: &'a Path,
    /// Where it was written.
    pub temp_dir: &'a Path,
    pub renditions: Vec<Written<'a>>,
    /// Write the HLS master playlist.
    pub hls_master: bool,
    /// Write a DASH manifest over the fMP4 renditions.
    pub dash: bool,
}

struct Rendition {
    name: String,
    playlist: hls::MediaPlaylist,
    peak: u64,
    average: u64,
    video: Option<(u32, u32, String)>,
    audio_codec: Option<String>,
    channels: u32,
    sample_rate: u32,
}

fn read_rendition(name: &str, playlist_path: &Path) -> Result<Rendition, String> {
    let dir = playlist_path
        .parent()
        .ok_or("playlist without a directory")?
        .to_path_buf();
    let text = std::fs::read_to_string(playlist_path)
        .map_err(|e| format!("{}: {e}", playlist_path.display()))?;
    let mut playlist =
        hls::parse_media(&text).map_err(|e| format!("{}: {e}", playlist_path.display()))?;
    let size = |uri: &str| {
        std::fs::metadata(dir.join(uri))
            .map(|m| m.len())
            .map_err(|e| format!("{uri}: {e}"))
    };
    for seg in playlist.segments.iter_mut() {
        seg.bytes = Some(size(&seg.uri)?);
    }
    let init = match &playlist.map_uri {
        Some(u) => Some(dir.join(u)),
        None => playlist.segments.first().map(|s| dir.join(&s.uri)),
    }
    .ok_or_else(|| format!("{}: no segments", playlist_path.display()))?;
    let mut counted = playlist.segments.clone();
    if let (Some(u), Some(first)) = (&playlist.map_uri, counted.first_mut()) {
        first.bytes = Some(first.bytes.unwrap_or(0) + size(u)?);
    }
    let (peak, average) = hls::peak_and_average_bandwidth(&counted).ok_or_else(|| {
        format!(
            "{}: segments without size or duration",
            playlist_path.display()
        )
    })?;
    let report = probe::probe(&init).map_err(|e| e.to_string())?;
    let video = match probe::codec_config(&init, true).map_err(|e| e.to_string())? {
        Some((codec, _, extra)) => {
            let v = report.video.first().ok_or("video stream vanished")?;
            let s = match codec.as_str() {
                "h264" => hls::avc_codec_string(&extra),
                "hevc" => hls::hevc_codec_string(&extra),
                _ => None,
            }
            .ok_or_else(|| format!("{name}: cannot read the {codec} configuration for CODECS"))?;
            Some((v.width, v.height, s))
        }
        None => None,
    };
    let audio_codec = match probe::codec_config(&init, false).map_err(|e| e.to_string())? {
        // The AudioSpecificConfig starts with the 5-bit audio object type (2 = AAC-LC).
        Some((codec, _, asc)) if codec == "aac" => {
            Some(hls::aac_codec_string(asc.first().map_or(2, |b| b >> 3)))
        }
        Some((codec, _, _)) => Some(codec),
        None => None,
    };
    let (channels, sample_rate) = report
        .audio
        .first()
        .map_or((0, 0), |a| (a.channels, a.sample_rate));
    Ok(Rendition {
        name: name.to_string(),
        playlist,
        peak,
        average,
        video,
        audio_codec,
        channels,
        sample_rate,
    })
}

/// Writes `text` as `path` through a temporary name, synced.
fn write_file(path: &Path, text: &str) -> Result<(), String> {
    super::file::write_atomic(path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

fn sync_tree(dir: &Path) -> Result<(), String> {
    for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let p = e.map_err(|e| e.to_string())?.path();
        if p.is_dir() {
            sync_tree(&p)?;
        } else {
            std::fs::File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|e| format!("{}: {e}", p.display()))?;
        }
    }
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// Completes a package in its temporary directory (the master playlist and the DASH manifest,
/// as asked, from what was written), syncs every file of it, and publishes it by one rename.
pub fn finish(pk: &Package) -> Result<(), String> {
    let mut renditions = Vec::new();
    for w in &pk.renditions {
        renditions.push(read_rendition(w.name, w.playlist)?);
    }
    if !renditions.is_empty() {
        if pk.hls_master {
            write_file(
                &pk.temp_dir.join("master.m3u8"),
                &master_playlist(pk, &renditions),
            )?;
        }
        if pk.dash {
            write_file(
                &pk.temp_dir.join("manifest.mpd"),
                &dash_manifest(pk, &renditions),
            )?;
        }
    }
    sync_tree(pk.temp_dir)?;
    super::file::rename_synced(pk.temp_dir, pk.dir)
        .map_err(|e| format!("cannot publish {}: {e}", pk.dir.display()))
}

/// The video a rendition was encoded to.
fn video_of<'a>(pk: &Package<'a>, name: &str) -> Option<&'a VideoOut> {
    pk.renditions
        .iter()
        .find(|w| w.name == name)
        .and_then(|w| w.video)
}

/// The HLS master playlist: a variant per video rendition (highest bandwidth first), each with
/// the audio-only rendition, when there is one, as its audio group.
fn master_playlist(pk: &Package, renditions: &[Rendition]) -> String {
    let group = renditions.iter().find(|r| r.video.is_none());
    let mut variants = Vec::new();
    for r in renditions.iter().filter(|r| r.video.is_some()) {
        let (w, h, vcodec) = r.video.clone().expect("filtered on video");
        let mut codecs = vec![vcodec];
        codecs.extend(r.audio_codec.clone());
        let (mut peak, mut avg) = (r.peak, r.average);
        if let Some(a) = group {
            codecs.extend(a.audio_codec.clone());
            peak += a.peak;
            avg += a.average;
        }
        let rate = video_of(pk, &r.name).map_or(0.0, |v| {
            f64::from(v.frame_rate.0) / f64::from(v.frame_rate.1.max(1))
        });
        variants.push(hls::Variant {
            uri: format!("{}/index.m3u8", r.name),
            bandwidth: peak,
            average_bandwidth: avg,
            width: w,
            height: h,
            codecs: codecs.join(","),
            frame_rate: rate,
            audio_group: group.map(|_| "audio".to_string()),
        });
    }
    variants.sort_by_key(|v| std::cmp::Reverse(v.bandwidth));
    let mut master = hls::write_master(&variants, true);
    if let Some(a) = group {
        let media = format!(
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"{}\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"{}\",URI=\"{}/index.m3u8\"\n",
            a.name, a.channels, a.name
        );
        let at = master.find("#EXT-X-STREAM-INF").unwrap_or(master.len());
        master.insert_str(at, &media);
    }
    master
}

/// The DASH manifest over the same fMP4 segments: a representation per video rendition and
/// per audio-only one, as long as the longest of them.
fn dash_manifest(pk: &Package, renditions: &[Rendition]) -> String {
    let duration = renditions
        .iter()
        .map(|r| {
            r.playlist
                .segments
                .iter()
                .map(|s| s.duration_s)
                .sum::<f64>()
        })
        .fold(0.0, f64::max);
    let segs = |r: &Rendition| -> Vec<(String, f64)> {
        r.playlist
            .segments
            .iter()
            .map(|s| (format!("{}/{}", r.name, s.uri), s.duration_s))
            .collect()
    };
    let init = |r: &Rendition| {
        format!(
            "{}/{}",
            r.name,
            r.playlist.map_uri.clone().unwrap_or_default()
        )
    };
    let video: Vec<dash::Representation> = renditions
        .iter()
        .filter_map(|r| {
            let (w, h, codecs) = r.video.clone()?;
            let v = video_of(pk, &r.name)?;
            let (rate, sar) = (v.frame_rate, v.sample_aspect);
            Some(dash::Representation {
                id: r.name.clone(),
                bandwidth: r.peak,
                width: w,
                height: h,
                frame_rate: (rate.0 as u32, rate.1 as u32),
                codecs,
                init_uri: init(r),
                segments: segs(r),
                sar: (sar.0 as u32, sar.1 as u32),
            })
        })
        .collect();
    let audio: Vec<dash::AudioRepresentation> = renditions
        .iter()
        .filter(|r| r.video.is_none())
        .map(|r| dash::AudioRepresentation {
            id: r.name.clone(),
            bandwidth: r.peak,
            codecs: r.audio_codec.clone().unwrap_or_default(),
            sample_rate: r.sample_rate,
            channels: r.channels,
            init_uri: init(r),
            segments: segs(r),
        })
        .collect();
    dash::write_mpd(duration, &video, &audio)
}
