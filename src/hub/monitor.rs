//! A running source's demux and monitor. The demux is one more reader of its hub (a queue that
//! drops when it falls behind, never holding the source), demuxed once on an OS thread of its
//! own by [`crate::av::packets`]; its packets go to every subscriber: the monitor
//! ([`crate::av::monitor`], on a thread of its own, keeping the latest JPEG preview and audio
//! levels) and each transcoding output's input. It stops with the source's hub.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use super::Hub;
use crate::av::monitor::{MonitorState, Preview};
use crate::av::packets::{PacketReader, PacketTap, SubscriberStats};

/// The hub reader's name, as it shows in the source's `readers`.
pub const READER: &str = "demux";
/// Chunks the demux may have waiting (about 1.3 MB of TS): a second or more of a typical feed.
const QUEUE: usize = 1024;
/// Packets the monitor may have waiting.
const MONITOR_QUEUE: usize = 1024;

/// The demux and monitor of one source run.
pub struct Monitor {
    state: Arc<MonitorState>,
    tap: Arc<PacketTap>,
    cancel: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// The source's one demux.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct DemuxStats {
    pub packets: u64,
    /// Packets it could not read (garbage).
    pub errors: u64,
    /// Times it was opened again (garbage, a changed stream).
    pub reopened: u64,
    /// Who takes its packets: `monitor`, and each transcoding output's input.
    pub subscribers: Vec<SubscriberStats>,
}

/// Per channel audio level.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ChannelLevel {
    /// Largest sample of the last second, dBFS (absent: digital silence).
    pub peak_dbfs: Option<f64>,
}

/// The source's audio as the monitor measures it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct AudioLevels {
    pub channels: Vec<ChannelLevel>,
    /// BS.1770 short-term loudness (3 s window), LUFS; absent until measured or when silent.
    pub short_term_lufs: Option<f64>,
    /// BS.1770 momentary loudness (400 ms window), LUFS.
    pub momentary_lufs: Option<f64>,
    pub sample_rate: u32,
}

/// What the monitor of a source has seen.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct MonitorStats {
    /// Video packets (coded frames) that reached the monitor.
    pub frames_in: u64,
    /// Video frames it decoded (only around preview times).
    pub frames_decoded: u64,
    pub audio_frames_decoded: u64,
    /// Packets the demuxer or a decoder refused, and pictures that could not be made.
    pub decode_errors: u64,
    pub previews: u64,
    /// Seconds since the last preview was taken (absent before the first).
    pub preview_age_s: Option<f64>,
    /// Latest audio PTS minus latest video PTS, seconds.
    pub av_offset_s: Option<f64>,
    pub audio: Option<AudioLevels>,
    pub last_error: Option<String>,
    pub demux: DemuxStats,
}

impl Monitor {
    /// Starts monitoring `hub`, with a preview every `preview_every`.
    pub fn start(hub: &Hub, preview_every: Duration) -> std::io::Result<Monitor> {
        let reader = hub.reader(READER, QUEUE);
        let state = Arc::new(MonitorState::default());
        let cancel = Arc::new(AtomicBool::new(false));
        let name = hub.name().to_string();
        let tap = PacketTap::new(name.clone());
        let mut m = Monitor {
            state,
            tap,
            cancel,
            threads: Vec::new(),
        };
        let (t, c) = (m.tap.clone(), m.cancel.clone());
        m.threads.push(
            std::thread::Builder::new()
                .name(format!("live-demux {name}"))
                .spawn(move || crate::av::packets::run(Box::new(reader), &t, &c))?,
        );
        let packets = m.tap.subscribe("monitor", MONITOR_QUEUE);
        let (st, c) = (m.state.clone(), m.cancel.clone());
        m.threads.push(
            std::thread::Builder::new()
                .name(format!("live-mon {name}"))
                .spawn(move || {
                    crate::av::monitor::run(&name, packets, preview_every, &st, &c);
                })?,
        );
        Ok(m)
    }

    /// How long since the demux gave its last packet (or since it started, when none).
    pub fn demux_quiet_for(&self) -> Duration {
        self.tap.quiet_for()
    }

    pub fn subscribers(&self) -> Vec<SubscriberStats> {
        self.tap.subscribers()
    }

    /// A new taker of the source's demuxed packets, with a queue of `capacity` packets.
    pub fn subscribe(&self, name: impl Into<String>, capacity: usize) -> PacketReader {
        self.tap.subscribe(name, capacity)
    }

    pub fn preview(&self) -> Option<Preview> {
        self.state.preview()
    }

    pub fn stats(&self) -> MonitorStats {
        let s = &self.state;
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let l = s.levels();
        let audio = (!l.peak_dbfs.is_empty()).then(|| AudioLevels {
            channels: l
                .peak_dbfs
                .iter()
                .map(|p| ChannelLevel {
                    peak_dbfs: p.map(round2),
                })
                .collect(),
            short_term_lufs: l.short_term_lufs.map(round2),
            momentary_lufs: l.momentary_lufs.map(round2),
            sample_rate: l.sample_rate,
        });
        MonitorStats {
            frames_in: n(&s.video_packets),
            frames_decoded: n(&s.video_decoded),
            audio_frames_decoded: n(&s.audio_decoded),
            decode_errors: n(&s.decode_errors) + n(&self.tap.counters.errors),
            previews: n(&s.previews),
            preview_age_s: s.preview().map(|p| round2(p.at.elapsed().as_secs_f64())),
            av_offset_s: s.av_offset_s().map(|v| (v * 1000.0).round() / 1000.0),
            audio,
            last_error: s.last_error().or_else(|| self.tap.counters.last_error()),
            demux: DemuxStats {
                packets: n(&self.tap.counters.packets),
                errors: n(&self.tap.counters.errors),
                reopened: n(&self.tap.counters.reopened),
                subscribers: self.tap.subscribers(),
            },
        }
    }

    /// Sets the `antenne_live_audio_*` and `antenne_live_monitor_*` metrics of `source`.
    pub fn export_metrics(&self, source: &str) {
        let st = self.stats();
        let src = source.to_string();
        if let Some(a) = &st.audio {
            for (i, c) in a.channels.iter().enumerate() {
                metrics::gauge!("antenne_live_audio_peak_dbfs", "source" => src.clone(), "channel" => i.to_string())
                    .set(c.peak_dbfs.unwrap_or(-144.0));
            }
            if let Some(v) = a.short_term_lufs {
                metrics::gauge!("antenne_live_audio_short_term_lufs", "source" => src.clone())
                    .set(v);
            }
            if let Some(v) = a.momentary_lufs {
                metrics::gauge!("antenne_live_audio_momentary_lufs", "source" => src.clone())
                    .set(v);
            }
        }
        metrics::counter!("antenne_live_monitor_decode_errors_total", "source" => src.clone())
            .absolute(st.decode_errors);
        if let Some(age) = st.preview_age_s {
            metrics::gauge!("antenne_live_preview_age_seconds", "source" => src).set(age);
        }
    }

    /// Stops the thread (the hub closing ends it too).
    pub fn stop(mut self) {
        self.end();
    }

    fn end(&mut self) {
        self.cancel.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.end();
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
