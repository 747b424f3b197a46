//! The channel engine behind the playout service: turns a channel's stored settings (house
//! format, outputs, filler, logo, loudness) into the engine's [`ChannelSpec`], starts its
//! transports (UDP, SRT, live HLS in a folder), and runs one [`engine::Channel`] per channel on
//! the wall clock, reporting each aired slot back to the service (which records the as-run).
//! Live events take their source from the live service: a subscription to the source's demux.

use std::collections::HashMap;
use std::io::Write;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::av::io::{InputSource, PacketFeed};
use crate::av::live::House;
use crate::catalog::assets::AssetInput;
use crate::catalog::{Catalog, Principal};
use crate::config::playout::Channel as ChannelConfig;
use crate::hub::registry::LiveService;
use crate::link::{Chunk, ChunkSink};
use crate::output::rtmp::RtmpOutput;
use crate::output::srt::SrtOutput;
use crate::output::udp::{UdpOutput, UdpOutputSpec};
use crate::playout::engine::{
    self, ChannelOutput, ChannelSpec, LiveSources, LoudnessTarget, SystemClock, TsEncode,
};
use crate::playout::filler::Filler;
use crate::playout::service::{ChannelControl, ChannelRun, ControlError};
use crate::srt::{SrtMode, SrtSpec};

/// HLS segments of a channel's `hls:` output, seconds.
const HLS_SEGMENT_S: f64 = 6.0;
/// Chunks a UDP output may have queued.
const UDP_QUEUE: usize = 1024;

/// A channel on air and its recordings.
type OnAir = (engine::Channel, Vec<Arc<Recording>>);

/// Makes the sink of a `record` output.
type RecordSink<'a> = dyn FnMut(&str) -> Result<Arc<dyn ChunkSink>, String> + 'a;

pub struct PlayoutEngine {
    live: Option<Arc<LiveService>>,
    records: Option<Records>,
    channels: Mutex<HashMap<i64, OnAir>>,
}

/// Where a channel's `record` output goes: a TS file per run in `<media>/playout/<channel>/`,
/// ingested into the catalog as an asset (by `who`) when the run ends.
pub struct Records {
    pub catalog: Catalog,
    pub media: PathBuf,
    pub who: Principal,
    pub rt: tokio::runtime::Handle,
}

/// One run's recording, written under a temporary name until it is finished.
struct Recording {
    file: Mutex<Option<std::fs::File>>,
    part: PathBuf,
    path: PathBuf,
    title: String,
    failed: std::sync::atomic::AtomicBool,
}

impl ChunkSink for Recording {
    fn deliver(&self, chunk: Chunk) {
        let mut g = lock(&self.file);
        if let Some(f) = g.as_mut() {
            if let Err(e) = f.write_all(&chunk) {
                if !self.failed.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::error!(file = %self.part.display(), error = %e, "playout: recording not written");
                }
            }
        }
    }
}

impl Recording {
    fn start(dir: &Path, channel: &str) -> std::io::Result<Recording> {
        std::fs::create_dir_all(dir)?;
        let now = time::OffsetDateTime::now_utc();
        let stamp = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        let name = crate::ingest::safe_name(&format!("{channel}-{stamp}"));
        let path = dir.join(format!("{name}.ts"));
        let part = dir.join(format!(".{name}.ts.part"));
        let file = std::fs::File::create(&part)?;
        Ok(Recording {
            file: Mutex::new(Some(file)),
            part,
            path,
            title: format!("{channel} as aired {stamp}"),
            failed: Default::default(),
        })
    }

    /// Closes the file (synced, renamed to its name) and ingests it as an asset.
    fn finish(&self, records: &Records) {
        let Some(f) = lock(&self.file).take() else {
            return;
        };
        let done = f
            .sync_all()
            .and_then(|()| std::fs::rename(&self.part, &self.path));
        if let Err(e) = done {
            tracing::error!(file = %self.part.display(), error = %e, "playout: recording not finished");
            return;
        }
        let (cat, who, path, title) = (
            records.catalog.clone(),
            records.who.clone(),
            self.path.clone(),
            self.title.clone(),
        );
        records.rt.spawn(async move {
            let p = path.clone();
            let file = tokio::task::spawn_blocking(move || crate::ingest::describe(&p, "source", None)).await;
            let file = match file {
                Ok(Ok(f)) => f,
                Ok(Err(e)) => {
                    tracing::error!(file = %path.display(), error = %e, "playout: recording not ingested");
                    return;
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "playout: recording not ingested");
                    return;
                }
            };
            let input = AssetInput {
                title: Some(title),
                ..AssetInput::default()
            };
            match cat.ingest(&who, &input, &file, true).await {
                Ok((a, _)) => tracing::info!(asset = a.id, file = %path.display(), "playout: recording ingested"),
                Err(e) => tracing::error!(file = %path.display(), error = %e, "playout: recording not ingested"),
            }
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn failed(e: impl std::fmt::Display) -> ControlError {
    ControlError::Failed(e.to_string())
}

/// A channel's live events: subscriptions to the live service's running sources.
struct HubSources {
    live: Arc<LiveService>,
    channel: String,
}

impl LiveSources for HubSources {
    fn open(&self, source: &str) -> Result<InputSource, String> {
        let reader = self
            .live
            .subscribe(source, &format!("playout {}", self.channel))
            .map_err(|e| e.to_string())?;
        Ok(InputSource::Packets(PacketFeed::new(source, reader)))
    }
}

impl PlayoutEngine {
    /// `live`: the live service whose sources live events air (none: they air filler);
    /// `records`: where `record` outputs go (none: they are refused).
    pub fn new(live: Option<Arc<LiveService>>, records: Option<Records>) -> PlayoutEngine {
        PlayoutEngine {
            live,
            records,
            channels: Mutex::default(),
        }
    }

    fn spec(&self, run: &ChannelRun) -> Result<(ChannelSpec, Vec<Arc<Recording>>), ControlError> {
        let c = &run.channel;
        let (width, height, interlaced) = picture(&c.format)?;
        let house = House {
            width,
            height,
            rate: (run.clock.rate.num, run.clock.rate.den),
            sample_rate: 48_000,
            // Stereo, or 5.1 (the TS outputs then carry a stereo downmix and the 5.1).
            channels: if c.surround { 6 } else { 2 },
        };
        let epoch = SystemTime::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(run.clock.epoch_ms).unwrap_or(0));
        let mut spec = ChannelSpec::new(&c.name, house, interlaced, epoch);
        let mut recordings = Vec::new();
        spec.outputs = outputs(c, height, &mut |o| {
            let r = self
                .records
                .as_ref()
                .ok_or_else(|| "recordings are not set up on this appliance".to_string())?;
            let rec = Arc::new(
                Recording::start(&r.media.join("playout").join(&c.name), &c.name)
                    .map_err(|e| format!("output {o:?}: {e}"))?,
            );
            recordings.push(rec.clone());
            Ok(rec as Arc<dyn ChunkSink>)
        })?;
        if !run.filler.is_empty() {
            spec.filler = Filler::Files(run.filler.clone());
        }
        if let Some(path) = &run.logo {
            spec.logo = Some(engine::Logo {
                path: PathBuf::from(path),
                x: width - width / 8 - width / 20,
                y: height / 20,
                max_width: width / 8,
                max_height: height / 8,
                on_at_start: true,
            });
        }
        spec.overlay_timecode = c.overlay_timecode;
        spec.loudness = Some(LoudnessTarget {
            target_lufs: c.loudness_lufs,
            known: None,
        });
        spec.live = self.live.clone().map(|live| {
            Arc::new(HubSources {
                live,
                channel: c.name.clone(),
            }) as Arc<dyn LiveSources>
        });
        Ok((spec, recordings))
    }

    fn finish(&self, recordings: Vec<Arc<Recording>>) {
        if let Some(r) = &self.records {
            for rec in recordings {
                rec.finish(r);
            }
        }
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
/// `srt://host:port[?mode=listener|caller]`, `rtmp://host[:port]/app/key` (the TS rewrapped as
/// FLV, pushed again after a failure), `hls:<folder>`, `record` (a TS file in the media store,
/// made an asset when the run ends: `record` gives the sink).
fn outputs(
    c: &ChannelConfig,
    height: u32,
    record: &mut RecordSink<'_>,
) -> Result<Vec<ChannelOutput>, ControlError> {
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
        } else if o == "record" {
            record(o).map_err(failed)?
        } else if o.starts_with("rtmp://") || o.starts_with("rtmps://") {
            Arc::new(RtmpOutput::start(o.clone(), UDP_QUEUE).map_err(|e| bad(e.to_string()))?)
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
                "only udp://, rtp://, srt://, rtmp:// and hls:<folder> outputs are aired by this engine"
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
        let (spec, recordings) = self.spec(&run)?;
        let (id, aired) = (run.id, run.aired.clone());
        let ch = engine::Channel::start(spec, run.timeline.clone(), Arc::new(SystemClock), {
            move |a| {
                let _ = aired.send((id, a));
            }
        });
        let ch = match ch {
            Ok(ch) => ch,
            Err(e) => {
                for r in &recordings {
                    lock(&r.file).take();
                    let _ = std::fs::remove_file(&r.part);
                }
                return Err(failed(e));
            }
        };
        let old = lock(&self.channels).insert(id, (ch, recordings));
        if let Some((old, recs)) = old {
            let _ = old.stop();
            self.finish(recs);
        }
        Ok(())
    }

    fn stop(&self, id: i64) -> Result<(), ControlError> {
        let ch = lock(&self.channels).remove(&id);
        match ch {
            Some((ch, recs)) => {
                let r = ch.stop().map(|_| ()).map_err(failed);
                self.finish(recs);
                r
            }
            None => Ok(()),
        }
    }

    fn slate(&self, id: i64, on: bool) -> Result<(), ControlError> {
        match lock(&self.channels).get(&id) {
            Some((ch, _)) => {
                ch.emergency(on);
                Ok(())
            }
            None => Err(failed("the channel is not on air")),
        }
    }

    fn on_air(&self, id: i64) -> bool {
        lock(&self.channels)
            .get(&id)
            .is_some_and(|(ch, _)| ch.is_running())
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
