//! BS.1770-4 loudness: integrated (gated), loudness range (EBU Tech 3342) and true peak, measured
//! with the `ebur128` crate on samples the engine decodes.

use std::path::Path;

use ebur128::{Channel, EbuR128, Mode};
use serde::Serialize;

use crate::av::engine::AudioTrack;
use crate::av::probe::ProbeReport;
use crate::av::{samples, AvError};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Loudness {
    pub integrated_lufs: Option<f64>,
    pub range_lu: Option<f64>,
    pub true_peak_dbtp: Option<f64>,
    pub channels: u32,
    pub streams: Vec<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoudnessError {
    #[error(transparent)]
    Av(#[from] AvError),
    #[error("{file}: loudness meter: {what}")]
    Meter { file: String, what: String },
    #[error("{file}: has no audio stream to measure")]
    NoAudio { file: String },
}

/// The audio streams that make the programme: the first with two or more channels, else the
/// first two mono streams as left and right, else the only mono stream.
pub fn programme_streams(report: &ProbeReport) -> Vec<usize> {
    if let Some(a) = report.audio.iter().find(|a| a.channels >= 2) {
        return vec![a.index];
    }
    report.audio.iter().take(2).map(|a| a.index).collect()
}

fn to_db(linear: f64) -> Option<f64> {
    (linear > 0.0).then(|| 20.0 * linear.log10())
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// BS.1770 channel weighting by position in the decoded layout.
fn channel_roles(n: usize) -> Vec<Channel> {
    match n {
        1 => vec![Channel::Left],
        2 => vec![Channel::Left, Channel::Right],
        // FFmpeg's 5.1 order: FL FR FC LFE BL/SL BR/SR.
        6 => vec![
            Channel::Left,
            Channel::Right,
            Channel::Center,
            Channel::Unused,
            Channel::LeftSurround,
            Channel::RightSurround,
        ],
        n => (0..n)
            .map(|i| {
                if i < 2 {
                    [Channel::Left, Channel::Right][i]
                } else {
                    Channel::Center
                }
            })
            .collect(),
    }
}

/// Measures the given audio streams of `path` together as one programme.
pub fn measure(path: &Path, streams: &[usize]) -> Result<Loudness, LoudnessError> {
    measure_mix(path, streams, None)
}

/// One output channel as a weighted sum of the merged input channels (empty: silence).
pub type Mix = Vec<(usize, f64)>;

/// Measures what a channel mix of the given streams will sound like, before it is made: the
/// streams are merged in order and each output channel is computed from `mixes`.
pub fn measure_mix(
    path: &Path,
    streams: &[usize],
    mixes: Option<&[Mix]>,
) -> Result<Loudness, LoudnessError> {
    measure_with(path, streams, mixes, None, None)
}

/// Measures the merged streams after a libavfilter chain (the same chain an encode will apply).
pub fn measure_chain(
    path: &Path,
    streams: &[usize],
    chain: &str,
    codec: Option<&AudioTrack>,
) -> Result<Loudness, LoudnessError> {
    measure_with(path, streams, None, Some(chain), codec)
}

fn measure_with(
    path: &Path,
    streams: &[usize],
    mixes: Option<&[Mix]>,
    chain: Option<&str>,
    codec: Option<&AudioTrack>,
) -> Result<Loudness, LoudnessError> {
    let mut meter = Meter::new();
    let mut mixed: Vec<Vec<f32>> = Vec::new();
    samples::decode_f32_through(path, streams, chain, codec, |block| {
        let Some(mixes) = mixes else {
            meter.block(block);
            return;
        };
        let n = block.planes.first().map_or(0, |p| p.len());
        mixed.resize_with(mixes.len(), Vec::new);
        for (out, mix) in mixed.iter_mut().zip(mixes) {
            out.clear();
            out.resize(n, 0.0);
            for &(ch, gain) in mix {
                if let Some(src) = block.planes.get(ch) {
                    for (o, x) in out.iter_mut().zip(src.iter()) {
                        *o += *x * gain as f32;
                    }
                }
            }
        }
        meter.block(&samples::Block {
            rate: block.rate,
            planes: mixed.iter().map(|v| v.as_slice()).collect(),
        });
    })?;
    meter.finish(&path.display().to_string(), streams)
}

/// A BS.1770 meter (integrated, range, true peak) fed block by block, so that any pass that
/// decodes the programme (a scan, a measurement) can measure it on the way.
#[derive(Default)]
pub struct Meter {
    meter: Option<EbuR128>,
    channels: usize,
    failure: Option<ebur128::Error>,
}

impl crate::av::engine::BlockSink for Meter {
    fn block(&mut self, b: &samples::Block<'_>) {
        Meter::block(self, b);
    }

    fn finish(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

impl Meter {
    pub fn new() -> Meter {
        Meter::default()
    }

    pub fn block(&mut self, block: &samples::Block<'_>) {
        if self.failure.is_some() || block.planes.is_empty() {
            return;
        }
        if self.meter.is_none() {
            self.channels = block.planes.len();
            match EbuR128::new(
                self.channels as u32,
                block.rate,
                Mode::I | Mode::LRA | Mode::TRUE_PEAK,
            ) {
                Ok(mut m) => {
                    for (i, role) in channel_roles(self.channels).into_iter().enumerate() {
                        let _ = m.set_channel(i as u32, role);
                    }
                    self.meter = Some(m);
                }
                Err(e) => {
                    self.failure = Some(e);
                    return;
                }
            }
        }
        if let Some(m) = self.meter.as_mut() {
            if let Err(e) = m.add_frames_planar_f32(&block.planes) {
                self.failure = Some(e);
            }
        }
    }

    /// The measurement of everything fed; `file` and `streams` say what it was, in errors and
    /// in the result.
    pub fn finish(self, file: &str, streams: &[usize]) -> Result<Loudness, LoudnessError> {
        if let Some(e) = self.failure {
            return Err(LoudnessError::Meter {
                file: file.to_string(),
                what: format!("{e:?}"),
            });
        }
        let m = self.meter.ok_or_else(|| LoudnessError::NoAudio {
            file: file.to_string(),
        })?;
        let integrated = m.loudness_global().ok().and_then(finite);
        let range = m.loudness_range().ok().and_then(finite);
        let mut peak = 0.0f64;
        for c in 0..self.channels {
            if let Ok(p) = m.true_peak(c as u32) {
                peak = peak.max(p);
            }
        }
        Ok(Loudness {
            integrated_lufs: integrated.map(round2),
            range_lu: range.map(round2),
            true_peak_dbtp: to_db(peak).map(round2),
            channels: self.channels as u32,
            streams: streams.to_vec(),
        })
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Measures the programme of a probed file.
pub fn measure_programme(report: &ProbeReport) -> Result<Loudness, LoudnessError> {
    let streams = programme_streams(report);
    if streams.is_empty() {
        return Err(LoudnessError::NoAudio {
            file: report.file.clone(),
        });
    }
    measure(Path::new(&report.file), &streams)
}
