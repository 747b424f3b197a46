//! The channel engine behind the playout service: turns a channel's stored settings (house
//! format, outputs, filler, logo, loudness) into the engine's [`ChannelSpec`], starts its
//! transports (UDP, SRT, live HLS in a folder), and runs one [`engine::Channel`] per channel on
//! the wall clock, reporting each aired slot back to the service (which records the as-run).

use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::av::live::House;
use crate::catalog::Catalog;
use crate::config::playout::Channel as ChannelConfig;
use crate::link::ChunkSink;
use crate::output::srt::SrtOutput;
use crate::output::udp::{UdpOutput, UdpOutputSpec};
use crate::playout::engine::{
    self, ChannelOutput, ChannelSpec, LoudnessTarget, SystemClock, TsEncode,
};
use crate::playout::filler::Filler;
use crate::playout::service::{ChannelControl, ChannelRun, ControlError};
use crate::srt::{SrtMode, SrtSpec};

/// HLS segments of a channel's `hls:` output, seconds.
const HLS_SEGMENT_S: f64 = 6.0;
/// Chunks a UDP output may have queued.
const UDP_QUEUE: usize = 1024;

pub struct PlayoutEngine {
    catalog: Catalog,
    rt: tokio::runtime::Handle,
    channels: Mutex<HashMap<i64, engine::Channel>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn failed(e: impl std::fmt::Display) -> ControlError {
    ControlError::Failed(e.to_string())
}

impl PlayoutEngine {
    pub fn new(catalog: Catalog, rt: tokio::runtime::Handle) -> PlayoutEngine {
        PlayoutEngine {
            catalog,
            rt,
            channels: Mutex::default(),
        }
    }

    /// The file paths of catalog assets by house id (the filler, a logo given as a house id).
    fn paths(&self, house_ids: &[String]) -> Result<Vec<PathBuf>, ControlError> {
        let (cat, rt) = (self.catalog.clone(), self.rt.clone());
        let ids = house_ids.to_vec();
        // The control is called from the runtime: the lookups run on a thread of their own.
        std::thread::scope(|s| {
            s.spawn(move || {
                rt.block_on(async {
                    let mut v = Vec::new();
                    for h in &ids {
                        match cat.scheduled_asset(None, Some(h)).await {
                            Ok(Some(a)) if !a.path.is_empty() => v.push(PathBuf::from(a.path)),
                            Ok(_) => {
                                return Err(failed(format!(
                                    "house id {h:?}: no such asset with a file in the catalog"
                                )))
                            }
                            Err(e) => return Err(failed(e)),
                        }
                    }
                    Ok(v)
                })
            })
            .join()
            .unwrap_or_else(|_| Err(failed("the catalog lookup failed")))
        })
    }

    fn spec(&self, run: &ChannelRun) -> Result<ChannelSpec, ControlError> {
        let c = &run.channel;
        let (width, height, interlaced) = picture(&c.format)?;
        let house = House {
            width,
            height,
            rate: (run.clock.rate.num, run.clock.rate.den),
            sample_rate: 48_000,
            channels: 2,
        };
        let epoch = SystemTime::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(run.clock.epoch_ms).unwrap_or(0));
        let mut spec = ChannelSpec::new(&c.name, house, interlaced, epoch);
        spec.outputs = outputs(c, height)?;
        if !c.filler.is_empty() {
            spec.filler = Filler::Files(self.paths(&c.filler)?);
        }
        if let Some(l) = c.logo.as_deref().filter(|l| !l.is_empty()) {
            let path = if Path::new(l).is_absolute() {
                PathBuf::from(l)
            } else {
                self.paths(&[l.to_string()])?.remove(0)
            };
            spec.logo = Some(engine::Logo {
                path,
                x: width - width / 8 - width / 20,
                y: height / 20,
                max_width: width / 8,
                max_height: height / 8,
                on_at_start: true,
            });
        }
        spec.loudness = Some(LoudnessTarget {
            target_lufs: c.loudness_lufs,
            known: None,
        });
        Ok(spec)
    }
}

/// The picture of a house format: `1080i25`, `1080p25`, `720p50`, `576i25`, `480i29.97`…
fn picture(format: &str) -> Result<(u32, u32, bool), ControlError> {
    let f = format.trim();
    let at = f
        .find(['i', 'p'])
        .ok_or_else(|| failed(format!("format {f:?}: expected e.g. 1080i25 or 720p50")))?;
    let interlaced = f[at..].starts_with('i');
    let (w, h) = match &f[..at] {
        "2160" => (3840, 2160),
        "1080" => (1920, 1080),
        "720" => (1280, 720),
        "576" => (720, 576),
        "480" => (720, 480),
        "360" => (640, 360),
        "180" => (320, 180),
        other => {
            return Err(failed(format!(
                "format {f:?}: picture height {other:?} is not one of 2160, 1080, 720, 576, 480, 360, 180"
            )))
        }
    };
    Ok((w, h, interlaced))
}

/// The encoding of a channel's TS outputs for its picture height.
fn encode(height: u32) -> TsEncode {
    let video: u64 = match height {
        h if h >= 2160 => 20_000_000,
        h if h >= 1080 => 8_000_000,
        h if h >= 720 => 5_000_000,
        h if h >= 480 => 3_000_000,
        _ => 1_000_000,
    };
    TsEncode {
        video_bitrate: video,
        // Audio, the tables and headroom for the encoder's peaks.
        muxrate: Some(video + video / 5 + 400_000),
        ..TsEncode::default()
    }
}

/// A channel's `outputs`: `udp://host:port`, `rtp://host:port`,
/// `srt://host:port[?mode=listener|caller]`, `hls:<folder>`.
fn outputs(c: &ChannelConfig, height: u32) -> Result<Vec<ChannelOutput>, ControlError> {
    let mut v = Vec::new();
    for (i, o) in c.outputs.iter().enumerate() {
        let name = format!("{}-{}", c.name, i + 1);
        let bad = |why: String| failed(format!("output {o:?}: {why}"));
        if let Some(dir) = o.strip_prefix("hls:") {
            v.push(ChannelOutput::Hls {
                name,
                dir: PathBuf::from(dir),
                segment_s: HLS_SEGMENT_S,
                encode: encode(height),
            });
            continue;
        }
        let udp = o.strip_prefix("udp://").map(|r| (r, false));
        let sink: Arc<dyn ChunkSink> = if let Some((rest, rtp)) =
            udp.or_else(|| o.strip_prefix("rtp://").map(|r| (r, true)))
        {
            let host = rest.split(['?', '/']).next().unwrap_or("");
            let dest = host
                .to_socket_addrs()
                .map_err(|e| bad(e.to_string()))?
                .next()
                .ok_or_else(|| bad("no address".into()))?;
            Arc::new(
                UdpOutput::start(UdpOutputSpec {
                    dest,
                    ttl: None,
                    interface: None,
                    rtp,
                    queue: UDP_QUEUE,
                })
                .map_err(|e| bad(e.to_string()))?,
            )
        } else if let Some(rest) = o.strip_prefix("srt://") {
            let (addr, query) = rest.split_once('?').unwrap_or((rest, ""));
            let mode = if query.split('&').any(|kv| kv == "mode=listener") {
                SrtMode::Listener
            } else {
                SrtMode::Caller
            };
            Arc::new(
                SrtOutput::start(SrtSpec::new(mode, addr.trim_end_matches('/')))
                    .map_err(|e| bad(e.to_string()))?,
            )
        } else {
            return Err(bad(
                "only udp://, rtp://, srt:// and hls:<folder> outputs are aired by this engine"
                    .into(),
            ));
        };
        v.push(ChannelOutput::Ts {
            name,
            sink,
            encode: encode(height),
        });
    }
    Ok(v)
}

impl ChannelControl for PlayoutEngine {
    fn start(&self, run: ChannelRun) -> Result<(), ControlError> {
        let spec = self.spec(&run)?;
        let (id, aired) = (run.id, run.aired.clone());
        let ch = engine::Channel::start(spec, run.timeline.clone(), Arc::new(SystemClock), {
            move |a| {
                let _ = aired.send((id, a));
            }
        })
        .map_err(failed)?;
        let old = lock(&self.channels).insert(id, ch);
        if let Some(old) = old {
            let _ = old.stop();
        }
        Ok(())
    }

    fn stop(&self, id: i64) -> Result<(), ControlError> {
        let ch = lock(&self.channels).remove(&id);
        match ch {
            Some(ch) => ch.stop().map(|_| ()).map_err(failed),
            None => Ok(()),
        }
    }

    fn slate(&self, id: i64, on: bool) -> Result<(), ControlError> {
        match lock(&self.channels).get(&id) {
            Some(ch) => {
                ch.emergency(on);
                Ok(())
            }
            None => Err(failed("the channel is not on air")),
        }
    }

    fn on_air(&self, id: i64) -> bool {
        lock(&self.channels)
            .get(&id)
            .is_some_and(engine::Channel::is_running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn house_pictures() {
        assert_eq!(picture("1080i25").unwrap(), (1920, 1080, true));
        assert_eq!(picture("720p50").unwrap(), (1280, 720, false));
        assert_eq!(picture("576i25").unwrap(), (720, 576, true));
        assert!(picture("hd").is_err());
        assert!(picture("999p25").is_err());
    }
}
