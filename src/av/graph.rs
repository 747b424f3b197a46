//! Filter graphs built from a textual chain with named buffer sources (`[in0]`, …) and sinks
//! (`[out0]`, …), plus the small fixes decoded frames need before a buffer source takes them.

use super::{ff, ffi};

/// What a buffer source is fed: the arguments string of `buffer` / `abuffer`.
pub struct Source {
    pub name: String,
    pub args: String,
    pub audio: bool,
    /// Hardware frames context of GPU frames fed to this source (null for system memory).
    pub hw_frames: *mut ffi::AVBufferRef,
}

impl Source {
    pub fn new(name: impl Into<String>, args: String, audio: bool) -> Source {
        Source {
            name: name.into(),
            args,
            audio,
            hw_frames: std::ptr::null_mut(),
        }
    }
}

pub struct Sink {
    pub name: String,
    pub audio: bool,
}

/// Why a filter graph could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("{0} missing from libavfilter")]
    MissingFilter(&'static str),
    #[error("out of memory")]
    OutOfMemory,
    /// libav refused a step: `what` names it.
    #[error("{what}: {source}")]
    Libav {
        what: String,
        #[source]
        source: ff::Error,
    },
}

fn refused(what: impl Into<String>) -> impl FnOnce(ff::Error) -> GraphError {
    let what = what.into();
    move |source| GraphError::Libav { what, source }
}

/// Builds and configures a graph. `spec` refers to sources and sinks by their names in brackets.
pub fn build(
    sources: &[Source],
    sinks: &[Sink],
    spec: &str,
) -> Result<ff::filter::Graph, GraphError> {
    build_on(sources, sinks, spec, None)
}

/// [`build`], with a hardware device given to every filter before the graph is configured
/// (`hwupload` and the GPU filters need it then).
pub fn build_on(
    sources: &[Source],
    sinks: &[Sink],
    spec: &str,
    device: Option<&super::hw::HwDevice>,
) -> Result<ff::filter::Graph, GraphError> {
    let mut g = ff::filter::Graph::new();
    for s in sources {
        let f = ff::filter::find(if s.audio { "abuffer" } else { "buffer" })
            .ok_or(GraphError::MissingFilter("buffer source"))?;
        let mut ctx = g
            .add(&f, &s.name, &s.args)
            .map_err(refused(format!("buffer source {} ({})", s.name, s.args)))?;
        if !s.hw_frames.is_null() {
            // SAFETY: the source filter is live and not configured yet; the parameters struct is
            // ours, `av_buffersrc_parameters_set` takes its own reference to the frames context,
            // and we free the struct (not the context) afterwards.
            unsafe {
                let par = ffi::av_buffersrc_parameters_alloc();
                if par.is_null() {
                    return Err(GraphError::OutOfMemory);
                }
                (*par).hw_frames_ctx = s.hw_frames;
                let r = ffi::av_buffersrc_parameters_set(ctx.as_mut_ptr(), par);
                ffi::av_free(par as *mut _);
                if r < 0 {
                    return Err(GraphError::Libav {
                        what: format!("buffer source {}: GPU frames refused", s.name),
                        source: ff::Error::from(r),
                    });
                }
            }
        }
    }
    for s in sinks {
        let f = ff::filter::find(if s.audio { "abuffersink" } else { "buffersink" })
            .ok_or(GraphError::MissingFilter("buffer sink"))?;
        g.add(&f, &s.name, "")
            .map_err(refused(format!("buffer sink {}", s.name)))?;
    }
    {
        let mut p: Option<ff::filter::graph::Parser<'_>> = None;
        for s in sources {
            p = Some(
                match p {
                    None => g.output(&s.name, 0),
                    Some(p) => p.output(&s.name, 0),
                }
                .map_err(refused(format!("graph input {}", s.name)))?,
            );
        }
        for s in sinks {
            p = Some(
                match p {
                    None => g.input(&s.name, 0),
                    Some(p) => p.input(&s.name, 0),
                }
                .map_err(refused(format!("graph output {}", s.name)))?,
            );
        }
        match p {
            Some(p) => p
                .parse(spec)
                .map_err(refused(format!("filter chain `{spec}`")))?,
            None => g
                .parse(spec)
                .map_err(refused(format!("filter chain `{spec}`")))?,
        }
    }
    if let Some(device) = device {
        // SAFETY: the graph is live and not configured yet; each filter gets its own new
        // reference to the device, which it releases when freed.
        unsafe {
            let gp = g.as_mut_ptr();
            for i in 0..(*gp).nb_filters as usize {
                let f = *(*gp).filters.add(i);
                if (*f).hw_device_ctx.is_null() {
                    (*f).hw_device_ctx = ffi::av_buffer_ref(device.as_ptr());
                }
            }
        }
    }
    g.validate().map_err(refused(format!(
        "filter chain `{spec}` cannot be configured"
    )))?;
    Ok(g)
}

/// `buffer` arguments for a decoded video frame.
pub fn video_source_args(frame: &ff::frame::Video, time_base: ff::Rational) -> String {
    let sar = frame.aspect_ratio();
    let (sn, sd) = if sar.numerator() > 0 && sar.denominator() > 0 {
        (sar.numerator(), sar.denominator())
    } else {
        (1, 1)
    };
    // SAFETY: reading the format field of a live frame.
    let fmt = unsafe { (*frame.as_ptr()).format };
    format!(
        "video_size={}x{}:pix_fmt={}:time_base={}/{}:pixel_aspect={}/{}",
        frame.width(),
        frame.height(),
        fmt,
        time_base.numerator(),
        time_base.denominator().max(1),
        sn,
        sd
    )
}

/// The hardware frames context of a GPU frame, null for a frame in system memory.
pub fn hw_frames_of(frame: &ff::frame::Video) -> *mut ffi::AVBufferRef {
    // SAFETY: reading a plain field of a live frame; the pointer is borrowed, not owned.
    unsafe { (*frame.as_ptr()).hw_frames_ctx }
}

/// `abuffer` arguments for a decoded (and [`fix_audio_layout`]ed) audio frame.
pub fn audio_source_args(frame: &ff::frame::Audio) -> String {
    // SAFETY: reading plain fields of a live frame.
    let (fmt, rate, mask, ch) = unsafe {
        let f = &*frame.as_ptr();
        (
            f.format,
            f.sample_rate,
            f.ch_layout.u.mask,
            f.ch_layout.nb_channels,
        )
    };
    format!(
        "time_base=1/{rate}:sample_rate={rate}:sample_fmt={fmt}:channel_layout=0x{mask:x}:channels={ch}"
    )
}

/// Gives a frame whose channels have no declared meaning the default layout for its count, so
/// that the buffer source (which compares layouts) and `pan` see the same thing every frame.
pub fn fix_audio_layout(frame: &mut ff::frame::Audio) {
    // SAFETY: the frame is live and exclusively borrowed; we replace its layout with a native
    // one of the same channel count, which owns no memory (no custom map).
    unsafe {
        let f = &mut *frame.as_mut_ptr();
        if f.ch_layout.order != ffi::AVChannelOrder::AV_CHANNEL_ORDER_NATIVE {
            let n = f.ch_layout.nb_channels.max(1);
            ffi::av_channel_layout_uninit(&mut f.ch_layout);
            ffi::av_channel_layout_default(&mut f.ch_layout, n);
        }
        #[allow(deprecated)]
        {
            f.channel_layout = f.ch_layout.u.mask;
            f.channels = f.ch_layout.nb_channels;
        }
    }
}

/// Channel count of an audio frame.
pub fn channels(frame: &ff::frame::Audio) -> usize {
    // SAFETY: reading a plain field of a live frame.
    unsafe { (*frame.as_ptr()).ch_layout.nb_channels.max(0) as usize }
}

/// Layout name of an audio frame ("mono", "stereo", "5.1(side)", …).
pub fn layout_of(frame: &ff::frame::Audio) -> String {
    // SAFETY: the layout is borrowed from a live frame for the call.
    let l = unsafe { &(*frame.as_ptr()).ch_layout };
    super::probe::layout_name(l).unwrap_or_else(|| format!("{}c", channels(frame)))
}

/// Writes an audio chain from each input stream's first frame.
type ChainFn = dyn Fn(&[&ff::frame::Audio]) -> String;

/// The one audio graph set-up, for the engine's encodes and for measurements alike: `k`
/// decoded streams in (`[in0]`…), sinks out (`[out0]`…). It is built once every stream has
/// given its first frame, since each buffer source takes its format from that frame; frames
/// that come before wait, in order, and go in first.
pub struct AudioGraph {
    inputs: Vec<String>,
    outputs: Vec<String>,
    frame_sizes: Vec<u32>,
    spec: Box<ChainFn>,
    pending: Vec<Vec<ff::frame::Audio>>,
    g: Option<ff::filter::Graph>,
}

impl AudioGraph {
    /// `frame_sizes[i]`: the samples per frame sink `out{i}` cuts (0: as they come); `spec`
    /// writes the chain, given each stream's first frame.
    pub fn new(
        k: usize,
        frame_sizes: &[u32],
        spec: impl Fn(&[&ff::frame::Audio]) -> String + 'static,
    ) -> AudioGraph {
        AudioGraph {
            inputs: (0..k).map(|i| format!("in{i}")).collect(),
            outputs: (0..frame_sizes.len()).map(|i| format!("out{i}")).collect(),
            frame_sizes: frame_sizes.to_vec(),
            spec: Box::new(spec),
            pending: (0..k).map(|_| Vec::new()).collect(),
            g: None,
        }
    }

    pub fn is_built(&self) -> bool {
        self.g.is_some()
    }

    /// Builds the graph when every stream has a frame (at once for a graph without inputs);
    /// whether it is built.
    pub fn start(&mut self) -> Result<bool, GraphError> {
        if self.g.is_some() {
            return Ok(true);
        }
        if self.pending.iter().any(Vec::is_empty) {
            return Ok(false);
        }
        let first: Vec<&ff::frame::Audio> = self.pending.iter().map(|p| &p[0]).collect();
        let spec = (self.spec)(&first);
        let sources: Vec<Source> = self
            .inputs
            .iter()
            .zip(&first)
            .map(|(name, f)| Source::new(name.clone(), audio_source_args(f), true))
            .collect();
        let sinks: Vec<Sink> = self
            .outputs
            .iter()
            .map(|name| Sink {
                name: name.clone(),
                audio: true,
            })
            .collect();
        let mut g = build(&sources, &sinks, &spec)?;
        for (name, &fs) in self.outputs.iter().zip(&self.frame_sizes) {
            let mut sink = g.get(name).ok_or(GraphError::MissingFilter("audio sink"))?;
            if fs > 0 {
                sink.sink().set_frame_size(fs);
            }
        }
        // Every waiting frame goes in, even past one refused; the first refusal is the error.
        let mut refused = Ok(());
        for (name, frames) in self.inputs.iter().zip(&mut self.pending) {
            let mut src = g
                .get(name)
                .ok_or(GraphError::MissingFilter("audio source"))?;
            for f in frames.drain(..) {
                if let (Err(e), Ok(())) = (src.source().add(&f), &refused) {
                    refused = Err(GraphError::Libav {
                        what: format!("audio graph input {name}"),
                        source: e,
                    });
                }
            }
        }
        self.g = Some(g);
        refused.map(|()| true)
    }

    /// A frame of stream `idx`: into the graph, or kept until every stream has started; whether
    /// the graph is built (samples may be pulled).
    pub fn push(&mut self, idx: usize, f: ff::frame::Audio) -> Result<bool, GraphError> {
        let name = self
            .inputs
            .get(idx)
            .ok_or(GraphError::MissingFilter("audio source"))?;
        let Some(g) = self.g.as_mut() else {
            self.pending[idx].push(f);
            return self.start();
        };
        g.get(name)
            .ok_or(GraphError::MissingFilter("audio source"))?
            .source()
            .add(&f)
            .map_err(refused(format!("audio graph input {name}")))?;
        Ok(true)
    }

    /// Before the graph is built: the first stream without a frame while another already holds
    /// more than `limit` (a declared stream that carries nothing).
    pub fn starved(&self, limit: usize) -> Option<usize> {
        if self.g.is_some() || !self.pending.iter().any(|p| p.len() > limit) {
            return None;
        }
        self.pending.iter().position(Vec::is_empty)
    }

    /// Sink `out{i}` of the built graph.
    pub fn output(&mut self, i: usize) -> Option<ff::filter::Context> {
        let name = self.outputs.get(i)?;
        self.g.as_mut()?.get(name)
    }

    /// End of every input stream: what the graph holds can be pulled.
    pub fn flush(&mut self) {
        if let Some(g) = self.g.as_mut() {
            for name in &self.inputs {
                if let Some(mut src) = g.get(name) {
                    let _ = src.source().flush();
                }
            }
        }
    }
}
