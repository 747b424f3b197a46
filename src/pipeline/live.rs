//! Live pipelines: a live profile (the same TOML as files) compiled for the live engine. The
//! house format (the picture every input is conformed to) is the profile's largest picture at its
//! frame rate; each output encodes from it (one decode per input, N encodes), to a constant-rate
//! MPEG-TS delivered in whole-packet chunks to a [`ChunkSink`] (an SRT or UDP output) or to a
//! rendition of a live HLS ladder in a folder, with its master playlist. With an interlaced
//! output (`scan = "tff"` or `"bff"`) the house runs at the field rate (50p for 25i): each
//! interlaced output weaves two house pictures into one frame of its field order, encoded
//! interlaced; progressive outputs take every other picture.

use std::path::PathBuf;
use std::sync::Arc;

use crate::av::engine::{self, AudioOut, FieldOrder, OutputSpec, VideoOut};
use crate::av::io::OutputSink;
use crate::av::live::{Failover, House, LiveInput, LiveSpec, Slate};
use crate::config::Rate;
use crate::link::ChunkSink;
use crate::output::file;
use crate::output::live_hls::{self, LiveHlsWindow, Rendition};
use crate::output::ts::{self, TsMux};
use crate::profile::{self, Profile, Scan};

use super::plan::{DstVideo, SrcAudio, SrcVideo};
use super::{BackendChoice, PipelineError};

/// Where a live profile's outputs go.
#[derive(Clone, Default)]
pub struct LiveSinks {
    /// For each `mpegts` output of the profile, by its name: the transport fed with its chunks.
    pub ts: Vec<(String, Arc<dyn ChunkSink>)>,
    /// For `hls` outputs: the ladder's folder (one sub-folder per rendition, `master.m3u8`).
    pub hls_dir: Option<PathBuf>,
    pub hls_window: LiveHlsWindow,
}

/// What the live format is when the profile leaves it to the source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveDefaults {
    pub frame_rate: Rate,
    pub sample_rate: u32,
    pub channels: u32,
}

impl Default for LiveDefaults {
    fn default() -> Self {
        LiveDefaults {
            frame_rate: Rate::new(25, 1),
            sample_rate: 48000,
            channels: 2,
        }
    }
}

/// A compiled live pipeline, and the ladder's renditions (for its master playlist).
pub struct LiveJob {
    pub spec: LiveSpec,
    pub hls_dir: Option<PathBuf>,
    pub renditions: Vec<Rendition>,
}

impl LiveJob {
    /// Writes the ladder's master playlist (before the run: the renditions' playlists appear
    /// with their first segments).
    pub fn write_master(&self) -> Result<Option<PathBuf>, PipelineError> {
        let Some(dir) = &self.hls_dir else {
            return Ok(None);
        };
        if self.renditions.is_empty() {
            return Ok(None);
        }
        live_hls::write_master(dir, &self.renditions)
            .map(Some)
            .map_err(|e| PipelineError::OutDir {
                dir: dir.clone(),
                what: format!("master playlist not written: {e}"),
            })
    }
}

fn profile_err(prof: &Profile, what: impl Into<String>) -> PipelineError {
    PipelineError::Source {
        file: prof.source.clone(),
        what: what.into(),
    }
}

/// Compiles live profiles into one live pipeline over `inputs` (in order of preference): every
/// output of every profile is fed from the same decodes (a TS for SRT/UDP and an HLS ladder, say).
pub fn compile(
    profiles: &[&Profile],
    inputs: Vec<LiveInput>,
    slate: Slate,
    failover: Failover,
    sinks: &LiveSinks,
    defaults: LiveDefaults,
    choice: BackendChoice,
) -> Result<LiveJob, PipelineError> {
    let Some(first) = profiles.first() else {
        return Err(PipelineError::Backend {
            backend: "live",
            what: "a live pipeline needs at least one profile".into(),
        });
    };
    if inputs.is_empty() {
        return Err(profile_err(
            first,
            "a live pipeline needs at least one input",
        ));
    }
    let all: Vec<(&Profile, &profile::Output)> = profiles
        .iter()
        .flat_map(|p| p.outputs.iter().map(move |o| (*p, o)))
        .collect();
    let (house, rate) = house_of(&all, defaults);
    let mut outputs = Vec::new();
    let mut renditions = Vec::new();
    for &(prof, o) in &all {
        outputs.push(live_output(prof, o, &house, rate, sinks, choice)?);
        if o.container == "hls" {
            renditions.push(rendition(o, rate));
        }
    }
    Ok(LiveJob {
        spec: LiveSpec {
            inputs,
            house,
            slate,
            failover,
            outputs,
        },
        hls_dir: sinks.hls_dir.clone(),
        renditions,
    })
}

/// The house format every input is conformed to: the largest picture of the outputs, at the
/// first fixed frame rate among them (else the default), and its rate.
fn house_of(all: &[(&Profile, &profile::Output)], defaults: LiveDefaults) -> (House, Rate) {
    let videos: Vec<&profile::Video> = all.iter().filter_map(|(_, o)| o.video.as_ref()).collect();
    let rate = videos
        .iter()
        .find_map(|v| match v.frame_rate {
            profile::FrameRate::Fixed(r) => Some(r),
            profile::FrameRate::Source => None,
        })
        .unwrap_or(defaults.frame_rate);
    let largest = videos
        .iter()
        .max_by_key(|v| u64::from(v.width) * u64::from(v.height));
    let house_rate = if videos.iter().any(|v| v.scan != Scan::Progressive) {
        rate.double()
    } else {
        rate
    };
    let sample_rate = all
        .iter()
        .find_map(|(_, o)| o.audio.as_ref().map(|a| a.sample_rate))
        .unwrap_or(defaults.sample_rate);
    let house = House {
        width: largest.map_or(1280, |v| v.width),
        height: largest.map_or(720, |v| v.height),
        rate: (house_rate.num, house_rate.den),
        sample_rate,
        channels: defaults.channels,
    };
    (house, rate)
}

/// One output of a live profile: where it goes, and its encodes from the house format.
fn live_output(
    prof: &Profile,
    o: &profile::Output,
    house: &House,
    rate: Rate,
    sinks: &LiveSinks,
    choice: BackendChoice,
) -> Result<OutputSpec, PipelineError> {
    let (sink, mux_options) = match o.container.as_str() {
        "mpegts" => ts_sink(prof, o, sinks)?,
        "hls" => hls_sink(prof, o, sinks)?,
        other => {
            return Err(profile_err(
                prof,
                format!(
                    "output {}: container {other:?} is not a live output (mpegts or hls)",
                    o.name
                ),
            ))
        }
    };
    let video = match &o.video {
        Some(v) => Some(video_out(v, house, rate, &o.container, choice)?),
        None => None,
    };
    let audio = o
        .audio
        .as_ref()
        .map(|a| audio_out(a, house, &o.container))
        .transpose()?;
    Ok(OutputSpec {
        name: o.name.clone(),
        sink,
        muxer: o.container.clone(),
        mux_options,
        metadata: vec![],
        video,
        audio,
        tap: None,
    })
}

/// A constant-rate TS, in whole-packet chunks to the transport named after the output.
fn ts_sink(
    prof: &Profile,
    o: &profile::Output,
    sinks: &LiveSinks,
) -> Result<(OutputSink, Vec<(String, String)>), PipelineError> {
    let chunks = sinks
        .ts
        .iter()
        .find(|(n, _)| *n == o.name)
        .map(|(_, s)| s.clone())
        .ok_or_else(|| {
            profile_err(
                prof,
                format!("output {}: no live transport to send this TS to", o.name),
            )
        })?;
    let muxrate = match o.muxrate {
        Some(m) => m.bps(),
        // No rate given: the streams' peaks with a fifth for PES/TS overhead.
        None => {
            let v = o.video.as_ref().and_then(|v| v.maxrate.or(v.bitrate));
            let a = o.audio.as_ref().and_then(|a| a.bitrate);
            (v.map_or(0, |b| b.bps()) + a.map_or(0, |b| b.bps())) * 6 / 5 + 100_000
        }
    };
    Ok((
        OutputSink::Stream(ts::chunk_sink(o.name.clone(), chunks)),
        TsMux::new(muxrate).mux_options(),
    ))
}

/// A rendition of the live HLS ladder, written in place in its own folder of the ladder's.
fn hls_sink(
    prof: &Profile,
    o: &profile::Output,
    sinks: &LiveSinks,
) -> Result<(OutputSink, Vec<(String, String)>), PipelineError> {
    let dir = sinks.hls_dir.as_ref().ok_or_else(|| {
        profile_err(
            prof,
            format!("output {}: no folder for the live HLS ladder", o.name),
        )
    })?;
    let rdir = dir.join(&o.name);
    std::fs::create_dir_all(&rdir).map_err(|e| PipelineError::OutDir {
        dir: rdir.clone(),
        what: format!("cannot be created: {e}"),
    })?;
    let h = o.hls.clone().unwrap_or_default();
    Ok((
        file::in_place_sink(rdir.join("index.m3u8")),
        live_hls::mux_options(&rdir, h.segment_seconds, &h.segment_type, &sinks.hls_window),
    ))
}

/// An HLS output's line in the master playlist.
fn rendition(o: &profile::Output, rate: Rate) -> Rendition {
    let v = o.video.as_ref();
    let vb = v
        .and_then(|v| v.maxrate.or(v.bitrate))
        .map_or(0, |b| b.bps());
    let ab = o
        .audio
        .as_ref()
        .and_then(|a| a.bitrate)
        .map_or(0, |b| b.bps());
    let mut codecs = Vec::new();
    if let Some(v) = v {
        codecs.push(live_hls::avc_codec(
            v.profile.as_deref(),
            v.level.as_deref(),
        ));
    }
    if o.audio.is_some() {
        codecs.push("mp4a.40.2".to_string());
    }
    Rendition {
        name: o.name.clone(),
        width: v.map_or(0, |v| v.width),
        height: v.map_or(0, |v| v.height),
        frame_rate: if v.is_some() { rate.as_f64() } else { 0.0 },
        // Segment overhead (fMP4 boxes) on top of the streams' peaks.
        bandwidth: (vb + ab) * 21 / 20,
        codecs: codecs.join(","),
    }
}

/// A live output's video from the house picture (at the field rate for an interlaced output),
/// made as a file's encode is (with no burnt-in timecode and no stills).
fn video_out(
    v: &profile::Video,
    house: &House,
    rate: Rate,
    container: &str,
    choice: BackendChoice,
) -> Result<VideoOut, PipelineError> {
    let src = SrcVideo {
        width: house.width,
        height: house.height,
        sar: (1, 1),
        rate: Rate::new(house.rate.0, house.rate.1),
        scan: Scan::Progressive,
        matrix: None,
    };
    let (backend, encoder) = super::backend_and_encoder(choice, v)?;
    let dst = DstVideo {
        burn_timecode: None,
        stills: None,
        ..super::dst_video(v, rate, backend, None, None)
    };
    let interlaced = match v.scan {
        Scan::Progressive => None,
        Scan::Tff => Some(FieldOrder::Tff),
        Scan::Bff => Some(FieldOrder::Bff),
    };
    Ok(super::video_encode(
        v, &src, &dst, backend, &encoder, interlaced, container,
    ))
}

/// A live output's audio: the house's channels mapped to the profile's tracks.
fn audio_out(
    a: &profile::Audio,
    house: &House,
    container: &str,
) -> Result<AudioOut, PipelineError> {
    let fmt = engine::audio_encoder_format(&a.codec).ok_or_else(|| PipelineError::Backend {
        backend: "live",
        what: format!("audio encoder {} not found", a.codec),
    })?;
    let src = [SrcAudio {
        channels: house.channels,
    }];
    Ok(super::audio_encode(a, &src, &fmt, None, container))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::av::io::ByteSource;
    use crate::link::Chunk;

    fn input() -> LiveInput {
        LiveInput {
            name: "primary".into(),
            source: crate::av::io::InputSource::Stream(ByteSource::new("p.ts", std::io::empty())),
        }
    }

    #[test]
    fn a_live_ts_profile_compiles_to_a_cbr_mux() {
        let prof = profile::find("live-h264-720p", None).unwrap();
        let sink: Arc<dyn ChunkSink> = Arc::new(|_: Chunk| {});
        let sinks = LiveSinks {
            ts: vec![("ts".into(), sink)],
            ..Default::default()
        };
        let job = compile(
            &[&prof],
            vec![input()],
            Slate::Generated { ident: "x".into() },
            Failover::default(),
            &sinks,
            LiveDefaults::default(),
            BackendChoice::Software,
        )
        .unwrap();
        assert_eq!(job.spec.house.width, 1280);
        assert_eq!(job.spec.house.rate, (25, 1));
        let o = &job.spec.outputs[0];
        assert!(o
            .mux_options
            .contains(&("muxrate".into(), "3800000".into())));
        let v = o.video.as_ref().unwrap();
        assert_eq!((v.min_rate, v.max_rate), (Some(3_000_000), Some(3_000_000)));
        // Without a transport for the TS output, the compile says which.
        let e = compile(
            &[&prof],
            vec![input()],
            Slate::Generated { ident: "x".into() },
            Failover::default(),
            &LiveSinks::default(),
            LiveDefaults::default(),
            BackendChoice::Software,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("output ts"), "{e}");
    }

    #[test]
    fn a_ladder_compiles_to_renditions_and_a_master() {
        let prof = profile::find("live-hls-720p-360p", None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sinks = LiveSinks {
            hls_dir: Some(dir.path().to_owned()),
            ..Default::default()
        };
        let job = compile(
            &[&prof],
            vec![input()],
            Slate::Generated { ident: "x".into() },
            Failover::default(),
            &sinks,
            LiveDefaults::default(),
            BackendChoice::Software,
        )
        .unwrap();
        assert_eq!(job.renditions.len(), 2);
        assert_eq!(job.spec.house.height, 720);
        assert!(job.spec.outputs[1]
            .video
            .as_ref()
            .unwrap()
            .filter
            .contains("640"));
        let master = job.write_master().unwrap().unwrap();
        let text = std::fs::read_to_string(master).unwrap();
        assert!(text.contains("360p/index.m3u8") && text.contains("RESOLUTION=640x360"));
    }
}
