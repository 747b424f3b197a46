//! Decoding audio streams of a file to synchronised planar `f32` blocks, for measurement
//! (loudness, silence). Several mono streams are merged sample-accurately into one bus.

use std::path::Path;

use super::graph::{self, AudioGraph};
use super::{ff, input, AvError};

/// Planar f32 samples of every requested stream's channels, in stream order.
pub struct Block<'a> {
    pub rate: u32,
    pub planes: Vec<&'a [f32]>,
}

/// Decodes `streams` of `path` and calls `each` with every block of merged samples.
pub fn decode_f32(
    path: &Path,
    streams: &[usize],
    each: impl FnMut(&Block<'_>),
) -> Result<(), AvError> {
    decode_f32_through(path, streams, None, None, each)
}

/// An encoder and the decoder of its own output: what a lossy codec does to the samples.
struct CodecTrip {
    enc: ff::encoder::Audio,
    dec: ff::decoder::Audio,
    pts: i64,
    packet: ff::Packet,
    decoded: ff::frame::Audio,
}

impl CodecTrip {
    fn new(track: &super::engine::AudioTrack) -> Result<CodecTrip, super::engine::StageError> {
        let enc = super::engine::open_audio_encoder(track)?;
        let params = ff::codec::Parameters::from(&*enc);
        let dec = ff::codec::Context::from_parameters(params)
            .and_then(|c| c.decoder().audio())
            .map_err(|source| super::engine::StageError::Libav {
                what: format!("decoder for {}", track.encoder),
                source,
            })?;
        Ok(CodecTrip {
            enc,
            dec,
            pts: 0,
            packet: ff::Packet::empty(),
            decoded: ff::frame::Audio::empty(),
        })
    }

    /// Encodes `frame` (or flushes with `None`) and hands every decoded result to `each`.
    fn pass(&mut self, frame: Option<&mut ff::frame::Audio>, each: &mut impl FnMut(&Block<'_>)) {
        match frame {
            Some(f) => {
                f.set_pts(Some(self.pts));
                self.pts += f.samples() as i64;
                let _ = self.enc.send_frame(f);
            }
            None => {
                let _ = self.enc.send_eof();
            }
        }
        while self.enc.receive_packet(&mut self.packet).is_ok() {
            let _ = self.dec.send_packet(&self.packet);
            while self.dec.receive_frame(&mut self.decoded).is_ok() {
                deliver(&self.decoded, each);
            }
        }
    }
}

fn deliver(out: &ff::frame::Audio, each: &mut impl FnMut(&Block<'_>)) {
    if out.format() != ff::format::Sample::F32(ff::format::sample::Type::Planar) {
        return;
    }
    let ch = graph::channels(out);
    let planes: Vec<&[f32]> = (0..ch)
        .map(|c| &out.plane::<f32>(c)[..out.samples()])
        .collect();
    each(&Block {
        rate: out.rate(),
        planes,
    });
}

/// Merges the decoded frames of several audio streams, sample-accurately, into planar f32
/// blocks (through an optional filter chain and an optional lossy codec round trip): the
/// measurement side of [`AudioGraph`], for a file read here or a scan fed elsewhere.
pub struct Merger {
    k: usize,
    graph: AudioGraph,
    out: ff::frame::Audio,
    trip: Option<CodecTrip>,
}

/// The measurement chain over `first` (each stream's first frame): one stream as it is,
/// several resampled to the first one's rate and merged, then `chain`, as planar float.
fn merge_spec(first: &[&ff::frame::Audio], chain: &str) -> String {
    let k = first.len();
    if k == 1 {
        return format!("[in0]{chain}aformat=sample_fmts=fltp[out0]");
    }
    let rate = first[0].rate();
    let mut s = String::new();
    for (i, f) in first.iter().enumerate() {
        // amerge needs every input to declare a layout.
        s.push_str(&format!(
            "[in{i}]aresample={rate},aformat=channel_layouts={}[r{i}];",
            graph::layout_of(f)
        ));
    }
    for i in 0..k {
        s.push_str(&format!("[r{i}]"));
    }
    s.push_str(&format!(
        "amerge=inputs={k},{chain}aformat=sample_fmts=fltp[out0]"
    ));
    s
}

impl Merger {
    /// For `k` streams, pushed as indexes `0..k` in [`Merger::push`].
    pub fn new(
        k: usize,
        chain: Option<&str>,
        codec: Option<&super::engine::AudioTrack>,
    ) -> Result<Merger, String> {
        let trip = match codec {
            Some(t) => Some(CodecTrip::new(t).map_err(|e| format!("audio codec round trip: {e}"))?),
            None => None,
        };
        let chain = chain.map(|c| format!("{c},")).unwrap_or_default();
        let frame_size = trip.as_ref().map_or(0, |t| t.enc.frame_size());
        Ok(Merger {
            k,
            graph: AudioGraph::new(k, &[frame_size], move |first| merge_spec(first, &chain)),
            out: ff::frame::Audio::empty(),
            trip,
        })
    }

    /// Whether any samples went through (the graph is built once every stream has a frame).
    pub fn started(&self) -> bool {
        self.graph.is_built()
    }

    fn drain(&mut self, last: bool, each: &mut impl FnMut(&Block<'_>)) {
        if let Some(mut sink) = self.graph.output(0) {
            while sink.sink().frame(&mut self.out).is_ok() {
                match self.trip.as_mut() {
                    Some(t) => t.pass(Some(&mut self.out), each),
                    None => deliver(&self.out, each),
                }
            }
        }
        if let (true, Some(t)) = (last, self.trip.as_mut()) {
            t.pass(None, each);
        }
    }

    /// One decoded frame of stream `idx`.
    pub fn push(
        &mut self,
        idx: usize,
        mut f: ff::frame::Audio,
        each: &mut impl FnMut(&Block<'_>),
    ) -> Result<(), String> {
        graph::fix_audio_layout(&mut f);
        if idx >= self.k {
            return Ok(());
        }
        match self.graph.push(idx, f) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            // A frame the built graph refuses (a format change mid-stream) is left out.
            Err(_) if self.graph.is_built() => {}
            Err(e) => return Err(format!("audio measurement graph: {e}")),
        }
        self.drain(false, each);
        Ok(())
    }

    /// End of every stream: what the graph and the codec still hold.
    pub fn finish(&mut self, each: &mut impl FnMut(&Block<'_>)) {
        self.graph.flush();
        self.drain(true, each);
    }
}

/// [`decode_f32`] with a filter chain applied to the merged channels (e.g. a mix and a level
/// correction), so that what an encode will produce can be measured before it is made.
pub fn decode_f32_through(
    path: &Path,
    streams: &[usize],
    chain: Option<&str>,
    codec: Option<&super::engine::AudioTrack>,
    mut each: impl FnMut(&Block<'_>),
) -> Result<(), AvError> {
    let mut ictx = input::open(path)?;
    let inv = |what: String| AvError::Invalid {
        path: path.to_owned(),
        what,
    };
    let mut decoders = Vec::new();
    for &i in streams {
        let st = ictx
            .stream(i)
            .ok_or_else(|| inv(format!("has no stream {i}")))?;
        let ctx =
            ff::codec::Context::from_parameters(st.parameters()).map_err(|e| AvError::Libav {
                path: path.to_owned(),
                what: format!("stream {i}"),
                source: e,
            })?;
        let dec = ctx.decoder().audio().map_err(|e| AvError::Libav {
            path: path.to_owned(),
            what: format!("no decoder for audio stream {i}"),
            source: e,
        })?;
        decoders.push(dec);
    }
    let mut merger = Merger::new(streams.len(), chain, codec).map_err(inv)?;
    let mut frame = ff::frame::Audio::empty();
    super::activity::pass_begins();
    for (st, pkt) in ictx.packets() {
        super::activity::packet(pkt.pts().map(|t| t as f64 * f64::from(st.time_base())));
        let Some(idx) = streams.iter().position(|&s| s == st.index()) else {
            continue;
        };
        if decoders[idx].send_packet(&pkt).is_err() {
            continue;
        }
        while decoders[idx].receive_frame(&mut frame).is_ok() {
            let f = std::mem::replace(&mut frame, ff::frame::Audio::empty());
            merger.push(idx, f, &mut each).map_err(inv)?;
        }
    }
    for (idx, dec) in decoders.iter_mut().enumerate() {
        let _ = dec.send_eof();
        while dec.receive_frame(&mut frame).is_ok() {
            let f = std::mem::replace(&mut frame, ff::frame::Audio::empty());
            merger.push(idx, f, &mut each).map_err(inv)?;
        }
    }
    if !merger.started() {
        return Err(inv("no audio could be decoded".into()));
    }
    merger.finish(&mut each);
    Ok(())
}
