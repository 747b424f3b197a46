//! The live service: sources and the outputs attached to them, by kind. Each is declared in
//! `antenne.toml` (`[[live.sources]]`, `[[live.outputs]]`) or made over the API, stored in the
//! catalog, and resumed when the service starts again. A running source is a transport
//! delivering into a [`Hub`]; a passthrough output is a hub reader feeding an output transport
//! (remux, no decode), a transcoding one goes through the [`ProfileHook`]. Health (`loss_ms`
//! without a packet is lost) drives the state, the `lost`/`restored` events on the change feed,
//! and `/metrics`.
//!
//! Transports plug in by kind ([`Transports::add_input`], [`Transports::add_output`]): the
//! built-in ones are UDP, RTP, SRT, RTMP, HLS pull and the looped file in, UDP, RTP, SRT and
//! RTMP out; a kind without a starter is refused as not available in this build.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::monitor::{Monitor, MonitorStats};
use super::{Hub, HubReader, ReaderStats, Recv};
use crate::av::live::ManualSwitch;
use crate::av::monitor::Preview;
use crate::av::packets::{PacketReader, SubscriberStats};
use crate::catalog::live::{LiveRow, LiveTable, LiveWrite};
use crate::catalog::{Catalog, CatalogError, Principal};
use crate::config::appliance::{Live as LiveConfig, LiveOutput, LiveSource};
use crate::link::{ChunkSink, Link, LinkState, LinkStats};

/// Every source kind the model knows, available here or not.
pub const SOURCE_KINDS: &[&str] = &[
    "srt_listener",
    "srt_caller",
    "udp",
    "rtp",
    "rtmp",
    "hls_pull",
    "file_loop",
    "ndi",
    "sdi",
];
/// Every output kind the model knows.
pub const OUTPUT_KINDS: &[&str] = &["udp", "rtp", "srt_caller", "srt_listener", "rtmp", "hls"];
/// What GET shows in place of a secret; sent back unchanged, it keeps the stored secret.
pub const SECRET_MASK: &str = "********";
/// The settings that are secrets.
const SECRETS: &[&str] = &["passphrase", "key"];
/// How often health is looked at.
const TICK: Duration = Duration::from_millis(100);
/// Packets a transcoding output's input may have waiting from its source's demux (some
/// seconds of a feed; a decoder further behind loses packets, counted).
const DEMUX_QUEUE: usize = 1024;
/// Bytes arriving with nothing demuxed for this long (or `loss_ms`, the longer) is a lost
/// source: more than the demux's opening takes to find the streams of a real feed.
const DEMUX_GRACE: Duration = Duration::from_secs(5);
/// The jitter FIFO of a UDP/RTP source that does not set `buffer_ms`.
const DEFAULT_BUFFER_MS: u32 = 50;

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("{field}: {why}")]
    Invalid { field: String, why: String },
    /// The kind needs something this machine lacks (the NDI runtime, a DeckLink-enabled FFmpeg).
    #[error("{kind}: not available on this machine: {missing}")]
    Missing { kind: String, missing: String },
    /// The kind is part of the model, but no transport for it is built in.
    #[error("{kind}: not available in this build")]
    NotBuilt { kind: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The transport did not start (an address in use, a file that does not open).
    #[error("{what}: {source}")]
    Start {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

fn invalid(field: &str, why: impl Into<String>) -> LiveError {
    LiveError::Invalid {
        field: field.to_string(),
        why: why.into(),
    }
}

fn start_err(
    what: impl Into<String>,
    e: impl std::error::Error + Send + Sync + 'static,
) -> LiveError {
    LiveError::Start {
        what: what.into(),
        source: Box::new(e),
    }
}

/// An output transport: fed chunks, reporting as a link.
pub trait OutputLink: ChunkSink + Link {}
impl<T: ChunkSink + Link + ?Sized> OutputLink for T {}

pub type InputStarter =
    Arc<dyn Fn(&LiveSource, Arc<dyn ChunkSink>) -> Result<Box<dyn Link>, LiveError> + Send + Sync>;
pub type OutputStarter =
    Arc<dyn Fn(&LiveOutput) -> Result<Arc<dyn OutputLink>, LiveError> + Send + Sync>;

/// Where the live engine plugs in: an output with a `profile` decodes its sources' TS (read
/// from each input, e.g. through `av::io::ByteSource::new(name, input)`) and encodes it per the
/// profile into `sink`, switching between the inputs and the slate as they stop delivering.
pub trait ProfileHook: Send + Sync {
    /// Whether `profile` names a live profile this engine can run for an output of `kind`
    /// (`Err`: why not).
    fn check(&self, kind: &str, profile: &str) -> Result<(), String>;
    /// The folder an `hls` output's ladder is written to.
    fn hls_dir(&self, output: &str) -> PathBuf;
    /// Starts the transcode; the returned link reports it, and stopping it ends it.
    fn start(&self, t: Transcode, sink: Arc<dyn OutputLink>) -> Result<Box<dyn Link>, LiveError>;
}

/// What a transcoding output runs: its profile, its inputs in order of preference (the
/// primary first, then the backup), the slate and the failover rules.
pub struct Transcode {
    /// The output's name (the generated slate's ident).
    pub name: String,
    /// The output's kind: `hls` writes a ladder into [`ProfileHook::hls_dir`], the others a TS
    /// into the transport.
    pub kind: String,
    pub profile: String,
    /// Each input's subscription to its source's one demux.
    pub inputs: Vec<(String, PacketReader)>,
    /// `None` or `bars`: generated bars and tone; otherwise a media file's path, looped.
    pub slate: Option<String>,
    pub loss_ms: u64,
    pub return_after_s: f64,
    /// Told of every switch.
    pub on_switch: Box<dyn FnMut(Switch) + Send>,
    /// The operator's choice of input, set by [`LiveService::switch_output`].
    pub manual: Arc<ManualSwitch>,
}

/// One switch of a transcoding output, as the change feed and the stats show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Switch {
    /// Source names, or `slate`; `from` is absent at the start.
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
    /// Whether the primary is on air after it.
    pub on_primary: bool,
    pub at: String,
}

/// An output's failover record, shared with its engine.
#[derive(Default)]
struct Failstate {
    switches: std::sync::atomic::AtomicU64,
    /// Set once the engine has put something other than the primary on air.
    off_primary: AtomicBool,
    last: Mutex<Option<Switch>>,
    manual: Arc<ManualSwitch>,
}

/// The transports this build has, by kind.
#[derive(Clone, Default)]
pub struct Transports {
    inputs: BTreeMap<String, InputStarter>,
    outputs: BTreeMap<String, OutputStarter>,
    profile: Option<Arc<dyn ProfileHook>>,
}

fn udp_address(field: &str, v: &Option<String>) -> Result<SocketAddr, LiveError> {
    let a = v
        .as_deref()
        .ok_or_else(|| invalid(field, "required: an address:port"))?;
    a.parse()
        .map_err(|_| invalid(field, format!("{a:?} is not an address:port")))
}

fn interface(v: &Option<String>) -> Result<Option<IpAddr>, LiveError> {
    v.as_deref()
        .map(|i| {
            i.parse()
                .map_err(|_| invalid("interface", format!("{i:?} is not an IP address")))
        })
        .transpose()
}

/// An SRT source's or output's settings as the transport takes them, checked.
fn srt_spec(
    mode: crate::srt::SrtMode,
    address: &Option<String>,
    latency_ms: Option<u32>,
    passphrase: &Option<String>,
    pbkeylen: Option<u32>,
    stream_id: &Option<String>,
) -> Result<crate::srt::SrtSpec, LiveError> {
    let address = address
        .clone()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| invalid("address", "required: host:port"))?;
    let mut spec = crate::srt::SrtSpec::new(mode, address);
    if let Some(l) = latency_ms {
        spec.latency_ms = l;
    }
    spec.passphrase = passphrase.clone();
    spec.pbkeylen = pbkeylen;
    spec.stream_id = stream_id.clone();
    spec.validate().map_err(|e| invalid("srt", e.to_string()))?;
    Ok(spec)
}

impl Transports {
    /// UDP, RTP, SRT (listener and caller), RTMP, HLS pull and the looped file in; UDP, RTP, SRT
    /// and RTMP out.
    pub fn builtin() -> Transports {
        let mut t = Transports::default();
        for (kind, rtp) in [("udp", false), ("rtp", true)] {
            t.add_input(
                kind,
                Arc::new(move |s: &LiveSource, sink: Arc<dyn ChunkSink>| {
                    let spec = crate::ingest::udp::UdpInputSpec {
                        address: udp_address("address", &s.address)?,
                        interface: interface(&s.interface)?,
                        rtp,
                        buffer_ms: s.buffer_ms.unwrap_or(DEFAULT_BUFFER_MS),
                    };
                    let input = crate::ingest::udp::UdpInput::start(spec, sink)
                        .map_err(|e| start_err(format!("source {:?}", s.name), e))?;
                    Ok(Box::new(input) as Box<dyn Link>)
                }),
            );
            t.add_output(
                kind,
                Arc::new(move |o: &LiveOutput| {
                    let spec = crate::output::udp::UdpOutputSpec {
                        dest: udp_address("address", &o.address)?,
                        ttl: o.ttl,
                        interface: interface(&o.interface)?,
                        rtp,
                        queue: o.queue.unwrap_or(1024) as usize,
                    };
                    let out = crate::output::udp::UdpOutput::start(spec)
                        .map_err(|e| start_err(format!("output {:?}", o.name), e))?;
                    Ok(Arc::new(out) as Arc<dyn OutputLink>)
                }),
            );
        }
        for (kind, mode) in [
            ("srt_listener", crate::srt::SrtMode::Listener),
            ("srt_caller", crate::srt::SrtMode::Caller),
        ] {
            t.add_input(
                kind,
                Arc::new(move |s: &LiveSource, sink: Arc<dyn ChunkSink>| {
                    let spec = srt_spec(
                        mode,
                        &s.address,
                        s.latency_ms,
                        &s.passphrase,
                        s.pbkeylen,
                        &s.stream_id,
                    )?;
                    let input = crate::ingest::srt::SrtInput::start(spec, sink)
                        .map_err(|e| start_err(format!("source {:?}", s.name), e))?;
                    Ok(Box::new(input) as Box<dyn Link>)
                }),
            );
            t.add_output(
                kind,
                Arc::new(move |o: &LiveOutput| {
                    let spec = srt_spec(
                        mode,
                        &o.address,
                        o.latency_ms,
                        &o.passphrase,
                        o.pbkeylen,
                        &o.stream_id,
                    )?;
                    let out = crate::output::srt::SrtOutput::start(spec)
                        .map_err(|e| start_err(format!("output {:?}", o.name), e))?;
                    Ok(Arc::new(out) as Arc<dyn OutputLink>)
                }),
            );
        }
        t.add_input(
            "rtmp",
            Arc::new(|s: &LiveSource, sink: Arc<dyn ChunkSink>| {
                let spec = crate::ingest::rtmp::RtmpInputSpec {
                    address: udp_address("address", &s.address)?,
                    key: s.key.clone().ok_or_else(|| invalid("key", "required"))?,
                };
                let input = crate::ingest::rtmp::RtmpInput::start(spec, sink)
                    .map_err(|e| start_err(format!("source {:?}", s.name), e))?;
                Ok(Box::new(input) as Box<dyn Link>)
            }),
        );
        t.add_output(
            "rtmp",
            Arc::new(|o: &LiveOutput| {
                let url = o.url.clone().ok_or_else(|| invalid("url", "required"))?;
                let url = match &o.key {
                    Some(k) => format!("{}/{k}", url.trim_end_matches('/')),
                    None => url,
                };
                let out =
                    crate::output::rtmp::RtmpOutput::start(url, o.queue.unwrap_or(1024) as usize)
                        .map_err(|e| start_err(format!("output {:?}", o.name), e))?;
                Ok(Arc::new(out) as Arc<dyn OutputLink>)
            }),
        );
        t.add_input(
            "hls_pull",
            Arc::new(|s: &LiveSource, sink: Arc<dyn ChunkSink>| {
                let spec = crate::ingest::hls::HlsPullSpec {
                    url: s.url.clone().ok_or_else(|| invalid("url", "required"))?,
                    variant: s.variant.clone(),
                    max_bandwidth: s.max_bandwidth,
                    ca_file: s.ca_file.clone(),
                };
                let input = crate::ingest::hls::HlsPull::start(spec, sink)
                    .map_err(|e| start_err(format!("source {:?}", s.name), e))?;
                Ok(Box::new(input) as Box<dyn Link>)
            }),
        );
        t.add_input(
            "file_loop",
            Arc::new(|s: &LiveSource, sink: Arc<dyn ChunkSink>| {
                let path = s.path.clone().ok_or_else(|| invalid("path", "required"))?;
                let input = crate::ingest::looped::LoopedInput::start(path, sink)
                    .map_err(|e| start_err(format!("source {:?}", s.name), e))?;
                Ok(Box::new(input) as Box<dyn Link>)
            }),
        );
        t
    }

    pub fn add_input(&mut self, kind: &str, start: InputStarter) {
        self.inputs.insert(kind.to_string(), start);
    }

    pub fn add_output(&mut self, kind: &str, start: OutputStarter) {
        self.outputs.insert(kind.to_string(), start);
    }

    pub fn set_profile_hook(&mut self, hook: Arc<dyn ProfileHook>) {
        self.profile = Some(hook);
    }

    /// Whether a source of `kind` can run here: what the machine lacks first, then whether
    /// this build has its transport.
    pub fn source_kind(&self, kind: &str) -> Result<(), LiveError> {
        if !SOURCE_KINDS.contains(&kind) {
            return Err(invalid(
                "kind",
                format!("{kind:?} is not one of {}", SOURCE_KINDS.join(", ")),
            ));
        }
        let missing = |m: String| LiveError::Missing {
            kind: kind.to_string(),
            missing: m,
        };
        match kind {
            "ndi" => crate::ingest::ndi::runtime().map_err(missing)?,
            "sdi" if !crate::av::remux::has_input_format("decklink") => {
                return Err(missing(
                    "the linked FFmpeg has no decklink input device (built without DeckLink \
                     support)"
                        .into(),
                ))
            }
            _ => {}
        }
        if self.inputs.contains_key(kind) {
            Ok(())
        } else {
            Err(LiveError::NotBuilt {
                kind: kind.to_string(),
            })
        }
    }

    pub fn output_kind(&self, kind: &str) -> Result<(), LiveError> {
        if !OUTPUT_KINDS.contains(&kind) {
            return Err(invalid(
                "kind",
                format!("{kind:?} is not one of {}", OUTPUT_KINDS.join(", ")),
            ));
        }
        if kind == "rtmp" && !crate::av::remux::has_protocol("rtmp://localhost/") {
            return Err(LiveError::Missing {
                kind: kind.to_string(),
                missing: "the linked FFmpeg has no rtmp protocol".into(),
            });
        }
        if self.outputs.contains_key(kind) {
            Ok(())
        } else {
            Err(LiveError::NotBuilt {
                kind: kind.to_string(),
            })
        }
    }

    /// Every kind and whether it can run here (`antenne doctor`).
    pub fn report(&self) -> Vec<KindReport> {
        let mut out = Vec::new();
        for k in SOURCE_KINDS {
            let r = self.source_kind(k);
            out.push(KindReport {
                direction: "source",
                kind: k,
                available: r.is_ok(),
                why: r.err().map(|e| e.to_string()),
            });
        }
        for k in OUTPUT_KINDS {
            let r = self.output_kind(k);
            out.push(KindReport {
                direction: "output",
                kind: k,
                available: r.is_ok(),
                why: r.err().map(|e| e.to_string()),
            });
        }
        out.push(KindReport {
            direction: "output",
            kind: "profile",
            available: self.profile.is_some(),
            why: self
                .profile
                .is_none()
                .then(|| "live transcoding: not available in this build".to_string()),
        });
        out
    }
}

/// One line of `antenne doctor`'s live section.
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    pub direction: &'static str,
    pub kind: &'static str,
    pub available: bool,
    pub why: Option<String>,
}

/// The settings a kind takes beyond the common ones.
fn source_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "udp" | "rtp" => &["address", "interface", "buffer_ms"],
        "file_loop" => &["path", "asset_id"],
        "srt_listener" | "srt_caller" => &[
            "address",
            "latency_ms",
            "passphrase",
            "pbkeylen",
            "stream_id",
        ],
        "rtmp" => &["address", "key"],
        "hls_pull" => &["url", "variant", "max_bandwidth", "ca_file"],
        "ndi" | "sdi" => &["device"],
        _ => &[],
    }
}

fn output_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "udp" | "rtp" => &["address", "interface", "ttl"],
        "srt_listener" | "srt_caller" => &[
            "address",
            "latency_ms",
            "passphrase",
            "pbkeylen",
            "stream_id",
        ],
        "rtmp" => &["url", "key"],
        _ => &[],
    }
}

/// The keys present in a serialised definition.
fn present<T: Serialize>(v: &T) -> Vec<String> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn check_name(name: &str) -> Result<String, LiveError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 100 || n.chars().any(char::is_control) {
        return Err(invalid("name", "1-100 printable characters"));
    }
    Ok(n.to_string())
}

fn check_fields(
    kind: &str,
    keys: &[String],
    common: &[&str],
    own: &[&str],
) -> Result<(), LiveError> {
    for k in keys {
        if !common.contains(&k.as_str()) && !own.contains(&k.as_str()) {
            return Err(invalid(
                k,
                format!("not a setting of kind {kind} (it takes {})", own.join(", ")),
            ));
        }
    }
    Ok(())
}

fn secret(
    field: &str,
    v: &Option<String>,
    len: std::ops::RangeInclusive<usize>,
) -> Result<(), LiveError> {
    if let Some(s) = v {
        if !len.contains(&s.chars().count()) || s.chars().any(char::is_control) {
            return Err(invalid(
                field,
                format!("{}-{} printable characters", len.start(), len.end()),
            ));
        }
    }
    Ok(())
}

/// Where API-made sources may read files from (declared ones are trusted).
#[derive(Debug, Clone, Default)]
pub struct Confinement {
    pub roots: Vec<PathBuf>,
}

/// Checks a source definition and returns it tidied (name trimmed, a file's path resolved).
pub fn check_source(
    t: &Transports,
    mut s: LiveSource,
    confine: Option<&Confinement>,
) -> Result<LiveSource, LiveError> {
    s.name = check_name(&s.name)?;
    if !SOURCE_KINDS.contains(&s.kind.as_str()) {
        return Err(invalid(
            "kind",
            format!("{:?} is not one of {}", s.kind, SOURCE_KINDS.join(", ")),
        ));
    }
    check_fields(
        &s.kind,
        &present(&s),
        &["name", "kind", "loss_ms", "enabled"],
        source_fields(&s.kind),
    )?;
    if let Some(l) = s.loss_ms {
        if !(50..=60_000).contains(&l) {
            return Err(invalid("loss_ms", "50-60000"));
        }
    }
    match s.kind.as_str() {
        "udp" | "rtp" => {
            let a = udp_address("address", &s.address)?;
            let i = interface(&s.interface)?;
            if i.is_some() && !a.ip().is_multicast() {
                return Err(invalid(
                    "interface",
                    "an interface is joined on for a multicast group only",
                ));
            }
            if s.buffer_ms.is_some_and(|b| b > 5000) {
                return Err(invalid("buffer_ms", "0-5000"));
            }
        }
        "file_loop" => {
            let p = s.path.as_ref().ok_or_else(|| invalid("path", "required"))?;
            if let Some(c) = confine {
                let given = p.to_string_lossy().into_owned();
                let resolved = crate::ingest::confine(&given, &c.roots)
                    .map_err(|e| invalid("path", e.to_string()))?;
                s.path = Some(resolved);
            } else if !p.is_file() {
                return Err(invalid("path", format!("{} is not a file", p.display())));
            }
        }
        "srt_listener" | "srt_caller" => {
            secret("passphrase", &s.passphrase, 10..=79)?;
            srt_spec(
                crate::srt::SrtMode::Caller,
                &s.address,
                s.latency_ms,
                &s.passphrase,
                s.pbkeylen,
                &s.stream_id,
            )?;
        }
        "rtmp" => {
            udp_address("address", &s.address)?;
            if s.key.is_none() {
                return Err(invalid("key", "required: the stream key encoders push to"));
            }
            secret("key", &s.key, 1..=200)?;
            if s.key.as_deref().is_some_and(|k| k.contains(['/', '?'])) {
                return Err(invalid("key", "no '/' or '?' in a stream key"));
            }
        }
        "hls_pull" => {
            let u = s.url.as_deref().unwrap_or_default();
            let https = u.starts_with("https://");
            if !(https || u.starts_with("http://")) || u.parse::<hyper::Uri>().is_err() {
                return Err(invalid(
                    "url",
                    "required: an http:// or https:// playlist URL",
                ));
            }
            if let Some(p) = s.ca_file.clone() {
                if !https {
                    return Err(invalid("ca_file", "only with an https:// url"));
                }
                // Over the API, only a file inside the ingest roots is read.
                if let Some(c) = confine {
                    let resolved = crate::ingest::confine(&p.to_string_lossy(), &c.roots)
                        .map_err(|e| invalid("ca_file", e.to_string()))?;
                    s.ca_file = Some(resolved);
                }
                let p = s.ca_file.clone().unwrap_or(p);
                crate::ingest::hls::read_ca_file(&p)
                    .map_err(|e| invalid("ca_file", e.to_string()))?;
            }
            if s.max_bandwidth == Some(0) {
                return Err(invalid("max_bandwidth", "a positive number of bits/s"));
            }
        }
        _ => {}
    }
    t.source_kind(&s.kind)?;
    Ok(s)
}

pub fn check_output(t: &Transports, mut o: LiveOutput) -> Result<LiveOutput, LiveError> {
    o.name = check_name(&o.name)?;
    if !OUTPUT_KINDS.contains(&o.kind.as_str()) {
        return Err(invalid(
            "kind",
            format!("{:?} is not one of {}", o.kind, OUTPUT_KINDS.join(", ")),
        ));
    }
    check_fields(
        &o.kind,
        &present(&o),
        &[
            "name",
            "kind",
            "source",
            "source_id",
            "queue",
            "profile",
            "enabled",
            "backup",
            "backup_id",
            "slate",
            "loss_ms",
            "return_after_s",
        ],
        output_fields(&o.kind),
    )?;
    match o.kind.as_str() {
        "udp" | "rtp" => {
            udp_address("address", &o.address)?;
            interface(&o.interface)?;
            if o.ttl.is_some_and(|t| !(1..=255).contains(&t)) {
                return Err(invalid("ttl", "1-255"));
            }
        }
        "srt_listener" | "srt_caller" => {
            secret("passphrase", &o.passphrase, 10..=79)?;
            srt_spec(
                crate::srt::SrtMode::Caller,
                &o.address,
                o.latency_ms,
                &o.passphrase,
                o.pbkeylen,
                &o.stream_id,
            )?;
        }
        "rtmp" => {
            let u = o.url.as_deref().unwrap_or_default();
            if !u.starts_with("rtmp://") || u.len() <= "rtmp://".len() {
                return Err(invalid("url", "required: an rtmp://host[:port]/app URL"));
            }
            secret("key", &o.key, 1..=200)?;
        }
        _ => {}
    }
    if o.queue.is_some_and(|q| q == 0 || q > 100_000) {
        return Err(invalid("queue", "1-100000"));
    }
    t.output_kind(&o.kind)?;
    if let Some(p) = &o.profile {
        let hook = t.profile.as_ref().ok_or_else(|| LiveError::NotBuilt {
            kind: "transcoding output (profile)".into(),
        })?;
        hook.check(&o.kind, p)
            .map_err(|why| invalid("profile", why))?;
    } else if o.kind == "hls" {
        return Err(invalid(
            "profile",
            "required: an hls output is a live ladder encoded per a live HLS profile \
             (e.g. live-hls-720p-360p)",
        ));
    } else {
        for (k, set) in [
            ("backup", o.backup.is_some()),
            ("backup_id", o.backup_id.is_some()),
            ("slate", o.slate.is_some()),
            ("return_after_s", o.return_after_s.is_some()),
            ("loss_ms", o.loss_ms.is_some()),
        ] {
            if set {
                return Err(invalid(
                    k,
                    "failover needs a `profile`: switching sources keeps timestamps and \
                     continuity counters continuous only through a transcode",
                ));
            }
        }
    }
    if o.loss_ms.is_some_and(|l| !(1..=60_000).contains(&l)) {
        return Err(invalid("loss_ms", "1-60000"));
    }
    if o.return_after_s
        .is_some_and(|r| !(r.is_finite() && (0.0..=86_400.0).contains(&r)))
    {
        return Err(invalid("return_after_s", "0-86400 seconds"));
    }
    if o.slate.as_deref().is_some_and(str::is_empty) {
        return Err(invalid("slate", "`bars` or a media file's path"));
    }
    Ok(o)
}

/// The definition with its secrets masked, as GET shows it.
fn masked<T: Serialize + serde::de::DeserializeOwned + Clone>(v: &T) -> T {
    let Ok(serde_json::Value::Object(mut m)) = serde_json::to_value(v) else {
        return v.clone();
    };
    for k in SECRETS {
        if m.contains_key(*k) {
            m.insert((*k).to_string(), SECRET_MASK.into());
        }
    }
    serde_json::from_value(serde_json::Value::Object(m)).unwrap_or_else(|_| v.clone())
}

/// A new definition's secrets given as the mask take the stored ones.
fn keep_secrets<T: Serialize + serde::de::DeserializeOwned + Clone>(new: &T, old: &T) -> T {
    let (Ok(serde_json::Value::Object(mut n)), Ok(serde_json::Value::Object(o))) =
        (serde_json::to_value(new), serde_json::to_value(old))
    else {
        return new.clone();
    };
    for k in SECRETS {
        if n.get(*k).and_then(|v| v.as_str()) == Some(SECRET_MASK) {
            match o.get(*k) {
                Some(v) => n.insert((*k).to_string(), v.clone()),
                None => n.remove(*k),
            };
        }
    }
    serde_json::from_value(serde_json::Value::Object(n)).unwrap_or_else(|_| new.clone())
}

/// A source as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SourceView {
    pub id: i64,
    pub name: String,
    pub kind: String,
    /// `config` (declared in antenne.toml: changed there only) or `api`.
    pub origin: String,
    /// Whether it should run (and runs again after a restart).
    pub running: bool,
    /// `connecting`, `live`, `lost`, `failover` or `stopped`.
    #[schema(value_type = String)]
    pub state: LinkState,
    /// The definition; secrets show as `********`.
    pub settings: LiveSource,
    /// The appliance that runs it (its lease holder, when several share the catalog); absent
    /// when none does.
    pub owner: Option<String>,
    pub created: String,
    pub updated: String,
}

/// An output as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OutputView {
    pub id: i64,
    pub name: String,
    pub source_id: i64,
    pub kind: String,
    pub origin: String,
    pub running: bool,
    #[schema(value_type = String)]
    pub state: LinkState,
    pub settings: LiveOutput,
    /// The appliance that runs it; absent when none does.
    pub owner: Option<String>,
    pub created: String,
    pub updated: String,
}

/// A source's figures now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SourceStats {
    pub id: i64,
    #[schema(value_type = String)]
    pub state: LinkState,
    /// The transport's figures (bytes, bitrate, packets received, lost, dropped, malformed,
    /// RTT and buffer where it has them, last error); `state` and `uptime_s` are the source's.
    #[schema(value_type = Object)]
    pub link: LinkStats,
    /// Milliseconds since the last packet (absent before the first).
    pub since_last_packet_ms: Option<u64>,
    pub loss_ms: u64,
    /// Each reader of the source (outputs, recordings, previews) with what it dropped.
    pub readers: Vec<ReaderStats>,
    /// Its recording (the last one, ended or not; a write error shows in `last_error`).
    pub recording: Option<super::record::RecordingStats>,
    /// What its monitor sees: audio levels, A/V offset, frames, the preview's age.
    pub monitor: Option<MonitorStats>,
}

/// An output's figures now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OutputStats {
    pub id: i64,
    #[schema(value_type = String)]
    pub state: LinkState,
    #[schema(value_type = Object)]
    pub link: LinkStats,
    /// Its reader of the source (a passthrough output): chunks it dropped because it fell
    /// behind.
    pub reader: Option<ReaderStats>,
    /// Its subscription to the source's demux (a transcoding output): packets it took and
    /// dropped.
    pub demux: Option<SubscriberStats>,
    /// Failover switches since it started, and the last one.
    pub switches: u64,
    pub last_switch: Option<Switch>,
}

struct Forward {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// A transcode through the profile hook, in place of the forwarding thread.
    transcode: Option<Box<dyn Link>>,
}

impl Forward {
    fn end(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(l) = self.transcode.take() {
            l.stop();
        }
    }
}

struct Src {
    def: LiveSource,
    hub: Arc<Hub>,
    link: Box<dyn Link>,
    loss: Duration,
    state: LinkState,
    live_since: Option<Instant>,
    /// Whether it has been live since it started (lost comes after live only).
    seen: bool,
    monitor: Option<Monitor>,
}

struct Out {
    def: LiveOutput,
    source_id: i64,
    link: Arc<dyn OutputLink>,
    forward: Option<Forward>,
    reader: String,
    fail: Arc<Failstate>,
}

#[derive(Default)]
struct Inner {
    sources: BTreeMap<i64, Src>,
    outputs: BTreeMap<i64, Out>,
    /// Why a source or output that should run does not.
    failed: BTreeMap<(bool, i64), String>,
    /// Who runs the sources (true) and outputs (false) that run on another appliance.
    elsewhere: BTreeMap<(bool, i64), String>,
}

/// This appliance among those that share one catalog: its name, and how long what it runs stays
/// its own without a renewal. A source or output runs on the appliance that holds its lease;
/// another appliance takes it over once that lease has run out (the holder stopped or hung).
/// An output runs where its source does.
#[derive(Debug, Clone)]
pub struct Ownership {
    pub appliance: String,
    pub lease: Duration,
}

/// The live service of one appliance.
pub struct LiveService {
    catalog: Catalog,
    transports: Transports,
    loss_ms: u32,
    reader_queue: usize,
    preview_every: Duration,
    confine: Confinement,
    inner: Mutex<Inner>,
    owner: Ownership,
    pub(super) recordings: super::record::Recordings,
    /// Switches heard from the engines, for the change feed.
    switched: Arc<Mutex<Vec<(i64, Switch)>>>,
}

fn plock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // What these locks guard is whole between statements; a panicked holder leaves it usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn parse_row<T: serde::de::DeserializeOwned>(r: &LiveRow) -> Result<T, LiveError> {
    serde_json::from_str(&r.settings).map_err(|e| {
        invalid(
            "settings",
            format!("stored settings of {:?} do not read: {e}", r.name),
        )
    })
}

impl LiveService {
    /// Opens the service: the declared sources and outputs are written to the catalog
    /// (replacing earlier declarations), then everything that should run is started.
    pub async fn open(
        catalog: Catalog,
        cfg: &LiveConfig,
        transports: Transports,
        confine: Confinement,
        owner: Ownership,
        system: &Principal,
    ) -> Result<Arc<LiveService>, LiveError> {
        let svc = Arc::new(LiveService {
            catalog,
            transports,
            loss_ms: cfg.loss_ms,
            reader_queue: cfg.reader_queue as usize,
            preview_every: Duration::from_secs(u64::from(cfg.preview_s)),
            confine,
            inner: Mutex::new(Inner::default()),
            owner,
            recordings: super::record::Recordings::default(),
            switched: Arc::default(),
        });
        svc.declare(cfg, system).await?;
        svc.resume().await?;
        Ok(svc)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn transports(&self) -> &Transports {
        &self.transports
    }

    async fn declare(&self, cfg: &LiveConfig, system: &Principal) -> Result<(), LiveError> {
        let rows = self.catalog.live_list(LiveTable::Sources).await?;
        let mut ids = BTreeMap::new();
        for s in &cfg.sources {
            let checked = match self.resolve_asset(s.clone(), system).await {
                Ok((d, _)) => check_source(&self.transports, d, None),
                Err(e) => Err(e),
            };
            let def = match checked {
                Ok(d) => d,
                Err(e) => {
                    // A declared kind this machine cannot run is reported, not fatal.
                    tracing::error!(source = %s.name, error = %e, "live.sources: not started");
                    s.clone()
                }
            };
            let settings = serde_json::to_string(&def).unwrap_or_default();
            let old = rows.iter().find(|r| r.name == def.name);
            let w = LiveWrite {
                name: &def.name,
                kind: &def.kind,
                settings: &settings,
                origin: "config",
                running: def.enabled.unwrap_or(true),
                source_id: None,
            };
            let row = match old {
                Some(o) if o.settings == settings && o.origin == "config" => o.clone(),
                Some(o) => {
                    self.catalog
                        .live_put(LiveTable::Sources, Some(o.id), &w)
                        .await?
                }
                None => self.catalog.live_put(LiveTable::Sources, None, &w).await?,
            };
            ids.insert(def.name.clone(), row.id);
        }
        let orows = self.catalog.live_list(LiveTable::Outputs).await?;
        let mut declared_outputs = Vec::new();
        for o in &cfg.outputs {
            let Some(&sid) = o.source.as_ref().and_then(|n| ids.get(n)) else {
                continue;
            };
            let def = match check_output(&self.transports, o.clone()) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(output = %o.name, error = %e, "live.outputs: not started");
                    o.clone()
                }
            };
            let settings = serde_json::to_string(&def).unwrap_or_default();
            let w = LiveWrite {
                name: &def.name,
                kind: &def.kind,
                settings: &settings,
                origin: "config",
                running: def.enabled.unwrap_or(true),
                source_id: Some(sid),
            };
            match orows.iter().find(|r| r.name == def.name) {
                Some(r) if r.settings == settings && r.origin == "config" => {}
                Some(r) => {
                    self.catalog
                        .live_put(LiveTable::Outputs, Some(r.id), &w)
                        .await?;
                }
                None => {
                    self.catalog.live_put(LiveTable::Outputs, None, &w).await?;
                }
            }
            declared_outputs.push(def.name.clone());
        }
        // Declarations taken out of the file go.
        for r in orows
            .iter()
            .filter(|r| r.origin == "config" && !declared_outputs.contains(&r.name))
        {
            self.catalog.live_delete(LiveTable::Outputs, r.id).await?;
        }
        for r in rows
            .iter()
            .filter(|r| r.origin == "config" && !ids.contains_key(&r.name))
        {
            if let Err(e) = self.catalog.live_delete(LiveTable::Sources, r.id).await {
                tracing::warn!(source = %r.name, error = %e, "live: a source no longer declared stays");
            }
        }
        Ok(())
    }

    async fn resume(&self) -> Result<(), LiveError> {
        for r in self.catalog.live_list(LiveTable::Sources).await? {
            if r.running && self.claim(LiveTable::Sources, r.id).await? {
                if let Err(e) = parse_row(&r).and_then(|d| self.run_source(r.id, d)) {
                    tracing::error!(source = %r.name, error = %e, "live: source not resumed");
                    self.lock().failed.insert((true, r.id), e.to_string());
                    self.release(LiveTable::Sources, r.id).await;
                }
            }
        }
        for r in self.catalog.live_list(LiveTable::Outputs).await? {
            let sid = r.source_id.unwrap_or(0);
            if r.running
                && self.output_here(sid).await?
                && self.claim(LiveTable::Outputs, r.id).await?
            {
                let started = parse_row(&r).and_then(|d| self.run_output(r.id, sid, d));
                if let Err(e) = started {
                    tracing::error!(output = %r.name, error = %e, "live: output not resumed");
                    self.lock().failed.insert((false, r.id), e.to_string());
                    self.release(LiveTable::Outputs, r.id).await;
                }
            }
        }
        Ok(())
    }

    fn lease_ms(&self) -> i64 {
        self.owner.lease.as_millis() as i64
    }

    /// Takes (or keeps) the lease of a source or output: false when another appliance runs it.
    async fn claim(&self, t: LiveTable, id: i64) -> Result<bool, LiveError> {
        let mine = self
            .catalog
            .live_lease_take(t, id, &self.owner.appliance, self.lease_ms())
            .await?;
        if mine {
            self.lock().elsewhere.remove(&(t == LiveTable::Sources, id));
        }
        Ok(mine)
    }

    async fn release(&self, t: LiveTable, id: i64) {
        if let Err(e) = self
            .catalog
            .live_lease_release(t, id, &self.owner.appliance)
            .await
        {
            tracing::warn!(id, error = %e, "live: lease not given back (it runs out)");
        }
    }

    /// Whether an output of `source_id` should run here: its source runs here, or nowhere.
    async fn output_here(&self, source_id: i64) -> Result<bool, LiveError> {
        if self.lock().sources.contains_key(&source_id) {
            return Ok(true);
        }
        let leases = self.catalog.live_leases(LiveTable::Sources).await?;
        Ok(!leases
            .iter()
            .any(|(id, l)| *id == source_id && l.owner != self.owner.appliance))
    }

    /// Keeps this appliance's leases until `stop` (then gives them back): renews them every
    /// third of the lease, stops what another appliance took over, takes over what should run
    /// and runs nowhere, and stops (or restarts) what was stopped or deleted (or changed)
    /// through another appliance.
    pub async fn hold_leases(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let every = (self.owner.lease / 3).max(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => break,
            }
            if let Err(e) = self.lease_tick().await {
                tracing::warn!(error = %e, "live: leases not renewed");
            }
        }
        if let Err(e) = self
            .catalog
            .live_lease_release_all(&self.owner.appliance)
            .await
        {
            tracing::warn!(error = %e, "live: leases not given back (they run out)");
        }
    }

    async fn lease_tick(&self) -> Result<(), LiveError> {
        let me = self.owner.appliance.clone();
        let held = self.catalog.live_lease_renew(&me, self.lease_ms()).await?;
        let (srcs, outs): (Vec<i64>, Vec<i64>) = {
            let g = self.lock();
            (
                g.sources.keys().copied().collect(),
                g.outputs.keys().copied().collect(),
            )
        };
        for id in outs {
            if !held.contains(&(LiveTable::Outputs, id)) {
                tracing::warn!(
                    output = id,
                    "live: lease lost to another appliance; output stopped"
                );
                self.halt_output(id);
            }
        }
        for id in srcs {
            if !held.contains(&(LiveTable::Sources, id)) {
                tracing::warn!(
                    source = id,
                    "live: lease lost to another appliance; source stopped"
                );
                self.halt_source(id);
            }
        }
        for (t, is_source) in [(LiveTable::Sources, true), (LiveTable::Outputs, false)] {
            let rows = self.catalog.live_list(t).await?;
            let leases = self.catalog.live_leases(t).await?;
            let here: Vec<i64> = {
                let g = self.lock();
                if is_source {
                    g.sources.keys().copied().collect()
                } else {
                    g.outputs.keys().copied().collect()
                }
            };
            // Stopped, deleted or changed through another appliance.
            for id in &here {
                let Some(r) = rows.iter().find(|r| r.id == *id && r.running) else {
                    if is_source {
                        self.halt_source(*id);
                    } else {
                        self.halt_output(*id);
                    }
                    self.release(t, *id).await;
                    continue;
                };
                let running = {
                    let g = self.lock();
                    if is_source {
                        g.sources.get(id).map(|s| serde_json::to_value(&s.def))
                    } else {
                        g.outputs.get(id).map(|o| serde_json::to_value(&o.def))
                    }
                };
                let stored = serde_json::from_str::<serde_json::Value>(&r.settings).ok();
                let changed = match (running, stored) {
                    (Some(Ok(now)), Some(stored)) => now != stored,
                    _ => false,
                };
                if !changed {
                    continue;
                }
                tracing::info!(name = %r.name, "live: changed through another appliance, restarted");
                let restarted = if is_source {
                    parse_row(r).and_then(|d| self.run_source(r.id, d))
                } else {
                    parse_row(r).and_then(|d| self.run_output(r.id, r.source_id.unwrap_or(0), d))
                };
                if let Err(e) = restarted {
                    tracing::error!(name = %r.name, error = %e, "live: not restarted");
                    self.lock().failed.insert((is_source, r.id), e.to_string());
                    self.release(t, r.id).await;
                }
            }
            let mut elsewhere = BTreeMap::new();
            for r in rows.iter().filter(|r| r.running && !here.contains(&r.id)) {
                if let Some((_, l)) = leases.iter().find(|(id, l)| *id == r.id && l.owner != me) {
                    elsewhere.insert((is_source, r.id), l.owner.clone());
                    continue;
                }
                if self.lock().failed.contains_key(&(is_source, r.id)) {
                    continue;
                }
                let sid = r.source_id.unwrap_or(0);
                if !is_source && !self.lock().sources.contains_key(&sid) {
                    continue;
                }
                if !self.claim(t, r.id).await? {
                    continue;
                }
                let started = if is_source {
                    parse_row(r).and_then(|d| self.run_source(r.id, d))
                } else {
                    parse_row(r).and_then(|d| self.run_output(r.id, sid, d))
                };
                match started {
                    Ok(()) => tracing::warn!(name = %r.name, kind = t.object(), "live: taken over"),
                    Err(e) => {
                        tracing::error!(name = %r.name, error = %e, "live: not taken over");
                        self.lock().failed.insert((is_source, r.id), e.to_string());
                        self.release(t, r.id).await;
                    }
                }
            }
            let mut g = self.lock();
            g.elsewhere.retain(|(s, _), _| *s != is_source);
            g.elsewhere.extend(elsewhere);
        }
        Ok(())
    }

    fn owner_of(&self, is_source: bool, id: i64) -> Option<String> {
        let g = self.lock();
        let here = if is_source {
            g.sources.contains_key(&id)
        } else {
            g.outputs.contains_key(&id)
        };
        if here {
            return Some(self.owner.appliance.clone());
        }
        g.elsewhere.get(&(is_source, id)).cloned()
    }

    fn run_source(&self, id: i64, def: LiveSource) -> Result<(), LiveError> {
        self.halt_source(id);
        self.transports.source_kind(&def.kind)?;
        let start = self
            .transports
            .inputs
            .get(&def.kind)
            .ok_or_else(|| LiveError::NotBuilt {
                kind: def.kind.clone(),
            })?
            .clone();
        let hub = Hub::new(def.name.clone());
        let link = start(&def, hub.clone())?;
        let monitor = Monitor::start(&hub, self.preview_every)
            .map_err(|e| tracing::error!(source = %def.name, error = %e, "live: no monitor"))
            .ok();
        let loss = Duration::from_millis(u64::from(def.loss_ms.unwrap_or(self.loss_ms)));
        let mut g = self.lock();
        g.failed.remove(&(true, id));
        g.sources.insert(
            id,
            Src {
                def,
                hub: hub.clone(),
                link,
                loss,
                state: LinkState::Connecting,
                live_since: None,
                seen: false,
                monitor,
            },
        );
        // The outputs of this source (as primary or backup) that run follow it onto its new hub.
        let name = g.sources.get(&id).map(|s| s.def.name.clone());
        let Inner {
            sources, outputs, ..
        } = &mut *g;
        for (oid, o) in outputs.iter_mut() {
            let backup = o.def.backup_id == Some(id)
                || (o.def.backup_id.is_none() && o.def.backup.is_some() && o.def.backup == name);
            if o.source_id != id && !(backup && o.def.profile.is_some()) {
                continue;
            }
            if let Some(f) = o.forward.take() {
                f.end();
            }
            match self.attach(*oid, o, sources) {
                Ok(f) => o.forward = f,
                Err(e) => {
                    tracing::error!(output = oid, error = %e, "live: output not attached");
                }
            }
        }
        Ok(())
    }

    /// Stops a source's transport (if it runs) and ends its hub.
    fn halt_source(&self, id: i64) {
        let src = self.lock().sources.remove(&id);
        if let Some(s) = src {
            s.link.stop();
            s.hub.close();
        }
    }

    /// Attaches a running output to its source's hub (and its backup's), when the source runs.
    fn attach(
        &self,
        id: i64,
        o: &Out,
        sources: &BTreeMap<i64, Src>,
    ) -> Result<Option<Forward>, LiveError> {
        let Some(src) = sources.get(&o.source_id) else {
            return Ok(None);
        };
        let stop = Arc::new(AtomicBool::new(false));
        if let Some(p) = &o.def.profile {
            let hook = self
                .transports
                .profile
                .as_ref()
                .ok_or_else(|| LiveError::NotBuilt {
                    kind: "transcoding output (profile)".into(),
                })?;
            let subscribe = |s: &Src| {
                s.monitor
                    .as_ref()
                    .map(|m| m.subscribe(o.reader.clone(), DEMUX_QUEUE))
                    .ok_or_else(|| LiveError::NotBuilt {
                        kind: format!("demux of source {}", s.def.name),
                    })
            };
            let mut inputs = vec![(src.def.name.clone(), subscribe(src)?)];
            let backup = match (o.def.backup_id, &o.def.backup) {
                (Some(b), _) => sources.get(&b),
                (None, Some(n)) => sources.values().find(|s| &s.def.name == n),
                (None, None) => None,
            };
            match backup {
                Some(b) => inputs.push((b.def.name.clone(), subscribe(b)?)),
                None if o.def.backup_id.is_some() || o.def.backup.is_some() => {
                    tracing::warn!(
                        output = id,
                        "live: the backup source does not run; failover goes to the slate"
                    );
                }
                None => {}
            }
            let loss_ms = o.def.loss_ms.map_or(src.loss.as_millis() as u64, u64::from);
            let (fail, queue) = (o.fail.clone(), self.switched.clone());
            let t = Transcode {
                name: o.def.name.clone(),
                kind: o.def.kind.clone(),
                profile: p.clone(),
                inputs,
                slate: o.def.slate.clone(),
                loss_ms,
                return_after_s: o.def.return_after_s.unwrap_or(10.0),
                on_switch: Box::new(move |s: Switch| {
                    fail.off_primary.store(!s.on_primary, Ordering::Release);
                    if s.from.is_some() {
                        fail.switches.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(output = id, from = ?s.from, to = %s.to, reason = %s.reason, "live output switched");
                        plock(&queue).push((id, s.clone()));
                    }
                    *plock(&fail.last) = Some(s);
                }),
                manual: o.fail.manual.clone(),
            };
            let t = hook.start(t, o.link.clone())?;
            return Ok(Some(Forward {
                stop,
                thread: None,
                transcode: Some(t),
            }));
        }
        let reader = src.hub.reader(o.reader.clone(), self.reader_queue);
        let (s, link) = (stop.clone(), o.link.clone());
        let thread = std::thread::Builder::new()
            .name(format!("live-out {id}"))
            .spawn(move || forward(&reader, &*link, &s))
            .map_err(|e| start_err("output thread", e))?;
        Ok(Some(Forward {
            stop,
            thread: Some(thread),
            transcode: None,
        }))
    }

    fn run_output(&self, id: i64, source_id: i64, def: LiveOutput) -> Result<(), LiveError> {
        self.halt_output(id);
        self.transports.output_kind(&def.kind)?;
        let start = self
            .transports
            .outputs
            .get(&def.kind)
            .ok_or_else(|| LiveError::NotBuilt {
                kind: def.kind.clone(),
            })?
            .clone();
        let link = start(&def)?;
        let mut o = Out {
            def,
            source_id,
            link,
            forward: None,
            reader: format!("output {id}"),
            fail: Arc::default(),
        };
        let mut g = self.lock();
        match self.attach(id, &o, &g.sources) {
            Ok(f) => o.forward = f,
            Err(e) => {
                o.link.stop();
                return Err(e);
            }
        }
        g.failed.remove(&(false, id));
        g.outputs.insert(id, o);
        Ok(())
    }

    fn halt_output(&self, id: i64) {
        let out = self.lock().outputs.remove(&id);
        if let Some(o) = out {
            if let Some(f) = o.forward {
                f.end();
            }
            o.link.stop();
        }
    }

    /// Stops every transport, leaving what should run as it is (the service is stopping).
    pub fn shutdown(&self) {
        self.recordings.signal_stop_all();
        let (sources, outputs) = {
            let mut g = self.lock();
            (
                std::mem::take(&mut g.sources),
                std::mem::take(&mut g.outputs),
            )
        };
        for (_, o) in outputs {
            if let Some(f) = o.forward {
                f.end();
            }
            o.link.stop();
        }
        for (_, s) in sources {
            s.link.stop();
            s.hub.close();
        }
    }

    // ---- the API's operations ----

    fn source_view(&self, r: &LiveRow) -> SourceView {
        let def: LiveSource = parse_row(r).unwrap_or_default();
        SourceView {
            id: r.id,
            name: r.name.clone(),
            kind: r.kind.clone(),
            origin: r.origin.clone(),
            running: r.running,
            state: self.source_state(r.id),
            settings: masked(&def),
            owner: self.owner_of(true, r.id),
            created: crate::catalog::rfc3339(r.created_ms),
            updated: crate::catalog::rfc3339(r.updated_ms),
        }
    }

    fn output_view(&self, r: &LiveRow) -> OutputView {
        let def: LiveOutput = parse_row(r).unwrap_or_default();
        let source_id = r.source_id.unwrap_or(0);
        OutputView {
            id: r.id,
            name: r.name.clone(),
            source_id,
            kind: r.kind.clone(),
            origin: r.origin.clone(),
            running: r.running,
            state: self.output_state(r.id),
            settings: LiveOutput {
                source_id: Some(source_id),
                ..masked(&def)
            },
            owner: self.owner_of(false, r.id),
            created: crate::catalog::rfc3339(r.created_ms),
            updated: crate::catalog::rfc3339(r.updated_ms),
        }
    }

    fn source_state(&self, id: i64) -> LinkState {
        self.lock()
            .sources
            .get(&id)
            .map_or(LinkState::Stopped, |s| s.state)
    }

    fn output_state(&self, id: i64) -> LinkState {
        let g = self.lock();
        let Some(o) = g.outputs.get(&id) else {
            return LinkState::Stopped;
        };
        // Live only when both the source and the output's own transport (its receiver
        // connected) are; otherwise whichever is not.
        let failover = o.forward.as_ref().is_some_and(|f| f.transcode.is_some())
            && o.fail.off_primary.load(Ordering::Acquire);
        match g.sources.get(&o.source_id) {
            Some(_) if failover => LinkState::Failover,
            Some(s) if o.forward.is_some() => match (s.state, o.link.stats().state) {
                (LinkState::Live, own @ (LinkState::Connecting | LinkState::Lost)) => own,
                (source, _) => source,
            },
            _ => LinkState::Connecting,
        }
    }

    pub async fn list_sources(&self) -> Result<Vec<SourceView>, LiveError> {
        let rows = self.catalog.live_list(LiveTable::Sources).await?;
        Ok(rows.iter().map(|r| self.source_view(r)).collect())
    }

    pub async fn get_source(&self, id: i64) -> Result<SourceView, LiveError> {
        let r = self.catalog.live_get(LiveTable::Sources, id).await?;
        Ok(self.source_view(&r))
    }

    /// Creates a source (over the API, for `who`) and starts it unless `enabled` is false.
    pub async fn create_source(
        &self,
        def: LiveSource,
        who: &Principal,
    ) -> Result<SourceView, LiveError> {
        let (def, trusted) = self.resolve_asset(def, who).await?;
        let def = check_source(&self.transports, def, (!trusted).then_some(&self.confine))?;
        let settings = serde_json::to_string(&def).unwrap_or_default();
        let running = def.enabled.unwrap_or(true);
        let r = self
            .catalog
            .live_put(
                LiveTable::Sources,
                None,
                &LiveWrite {
                    name: &def.name,
                    kind: &def.kind,
                    settings: &settings,
                    origin: "api",
                    running,
                    source_id: None,
                },
            )
            .await?;
        if running && self.claim(LiveTable::Sources, r.id).await? {
            if let Err(e) = self.run_source(r.id, def) {
                // A source that cannot start (its address in use) is not made.
                self.release(LiveTable::Sources, r.id).await;
                self.catalog.live_delete(LiveTable::Sources, r.id).await?;
                return Err(e);
            }
        }
        self.get_source(r.id).await
    }

    /// A file_loop naming a catalog asset plays its source file (else its first file), as
    /// `who` may read it; such a path needs no confinement.
    async fn resolve_asset(
        &self,
        def: LiveSource,
        who: &Principal,
    ) -> Result<(LiveSource, bool), LiveError> {
        let Some(asset) = def.asset_id.filter(|_| def.kind == "file_loop") else {
            return Ok((def, false));
        };
        let files = match self.catalog.files(who, asset).await {
            Ok(f) => f,
            Err(CatalogError::NotFound(_)) => {
                return Err(invalid("asset_id", format!("no asset {asset}")))
            }
            Err(e) => return Err(e.into()),
        };
        let f = files
            .iter()
            .find(|f| f.role == "source")
            .or(files.first())
            .ok_or_else(|| invalid("asset_id", format!("asset {asset} has no file")))?;
        Ok((
            LiveSource {
                path: Some(PathBuf::from(&f.path)),
                ..def
            },
            true,
        ))
    }

    fn declared(r: &LiveRow) -> Result<(), LiveError> {
        if r.origin == "config" {
            return Err(LiveError::Conflict(format!(
                "{:?} is declared in antenne.toml: change it there",
                r.name
            )));
        }
        Ok(())
    }

    /// Replaces a source's definition; a running source restarts with it.
    pub async fn update_source(
        &self,
        id: i64,
        def: LiveSource,
        who: &Principal,
    ) -> Result<SourceView, LiveError> {
        let r = self.catalog.live_get(LiveTable::Sources, id).await?;
        Self::declared(&r)?;
        let old: LiveSource = parse_row(&r)?;
        let (def, trusted) = self.resolve_asset(keep_secrets(&def, &old), who).await?;
        let def = check_source(&self.transports, def, (!trusted).then_some(&self.confine))?;
        let settings = serde_json::to_string(&def).unwrap_or_default();
        self.catalog
            .live_put(
                LiveTable::Sources,
                Some(id),
                &LiveWrite {
                    name: &def.name,
                    kind: &def.kind,
                    settings: &settings,
                    origin: "api",
                    running: r.running,
                    source_id: None,
                },
            )
            .await?;
        if r.running && self.claim(LiveTable::Sources, id).await? {
            self.run_source(id, def)?;
        }
        self.get_source(id).await
    }

    pub async fn delete_source(&self, id: i64) -> Result<(), LiveError> {
        let r = self.catalog.live_get(LiveTable::Sources, id).await?;
        Self::declared(&r)?;
        self.catalog.live_delete(LiveTable::Sources, id).await?;
        self.recordings.signal_stop(id);
        self.halt_source(id);
        self.release(LiveTable::Sources, id).await;
        self.lock().failed.remove(&(true, id));
        Ok(())
    }

    pub async fn start_source(&self, id: i64) -> Result<SourceView, LiveError> {
        let r = self.catalog.live_get(LiveTable::Sources, id).await?;
        let def: LiveSource = parse_row(&r)?;
        // Marked first: another appliance's look at the leases must not take it for stopped.
        self.catalog
            .live_set_running(LiveTable::Sources, id, true)
            .await?;
        let running = self.lock().sources.contains_key(&id);
        if !running && self.claim(LiveTable::Sources, id).await? {
            if let Err(e) = self.run_source(id, def) {
                self.lock().failed.insert((true, id), e.to_string());
                self.release(LiveTable::Sources, id).await;
                self.catalog
                    .live_set_running(LiveTable::Sources, id, r.running)
                    .await?;
                return Err(e);
            }
        }
        self.get_source(id).await
    }

    pub async fn stop_source(&self, id: i64) -> Result<SourceView, LiveError> {
        self.catalog.live_get(LiveTable::Sources, id).await?;
        self.catalog
            .live_set_running(LiveTable::Sources, id, false)
            .await?;
        self.halt_source(id);
        self.release(LiveTable::Sources, id).await;
        self.get_source(id).await
    }

    pub async fn source_stats(&self, id: i64) -> Result<SourceStats, LiveError> {
        self.catalog.live_get(LiveTable::Sources, id).await?;
        let g = self.lock();
        let Some(s) = g.sources.get(&id) else {
            let mut link = LinkStats {
                state: LinkState::Stopped,
                ..LinkStats::default()
            };
            link.last_error = g.failed.get(&(true, id)).cloned();
            return Ok(SourceStats {
                id,
                state: LinkState::Stopped,
                link,
                since_last_packet_ms: None,
                loss_ms: 0,
                readers: Vec::new(),
                recording: self.recordings.stats(id),
                monitor: None,
            });
        };
        let mut link = s.link.stats();
        link.state = s.state;
        link.uptime_s = s.live_since.map(|t| t.elapsed().as_secs_f64());
        Ok(SourceStats {
            id,
            state: s.state,
            link,
            since_last_packet_ms: s.hub.since_last().map(|d| d.as_millis() as u64),
            loss_ms: s.loss.as_millis() as u64,
            readers: s.hub.readers(),
            recording: self.recordings.stats(id),
            monitor: s.monitor.as_ref().map(Monitor::stats),
        })
    }

    pub async fn list_outputs(&self) -> Result<Vec<OutputView>, LiveError> {
        let rows = self.catalog.live_list(LiveTable::Outputs).await?;
        Ok(rows.iter().map(|r| self.output_view(r)).collect())
    }

    pub async fn get_output(&self, id: i64) -> Result<OutputView, LiveError> {
        let r = self.catalog.live_get(LiveTable::Outputs, id).await?;
        Ok(self.output_view(&r))
    }

    async fn output_source(&self, def: &LiveOutput) -> Result<i64, LiveError> {
        match (def.source_id, &def.source) {
            (Some(id), _) => match self.catalog.live_get(LiveTable::Sources, id).await {
                Ok(r) => Ok(r.id),
                Err(CatalogError::NotFound(_)) => {
                    Err(invalid("source_id", format!("no live source {id}")))
                }
                Err(e) => Err(e.into()),
            },
            (None, Some(name)) => self
                .catalog
                .live_list(LiveTable::Sources)
                .await?
                .into_iter()
                .find(|r| &r.name == name)
                .map(|r| r.id)
                .ok_or_else(|| invalid("source", format!("no live source named {name:?}"))),
            (None, None) => Err(invalid("source_id", "required: the source to attach to")),
        }
    }

    /// An output's slate as the engine takes it: `bars`, or a file: a catalog asset's (by id,
    /// that `who` may read) or a path inside the ingest roots or the media directory.
    async fn resolve_slate(
        &self,
        def: LiveOutput,
        who: &Principal,
    ) -> Result<LiveOutput, LiveError> {
        let Some(slate) = def.slate.clone().filter(|s| s != "bars") else {
            return Ok(def);
        };
        let path = if let Ok(asset) = slate.parse::<i64>() {
            let files = match self.catalog.files(who, asset).await {
                Ok(f) => f,
                Err(CatalogError::NotFound(_)) => {
                    return Err(invalid("slate", format!("no asset {asset}")))
                }
                Err(e) => return Err(e.into()),
            };
            let f = files
                .iter()
                .find(|f| f.role == "source")
                .or(files.first())
                .ok_or_else(|| invalid("slate", format!("asset {asset} has no file")))?;
            PathBuf::from(&f.path)
        } else {
            crate::ingest::confine(&slate, &self.confine.roots)
                .map_err(|e| invalid("slate", e.to_string()))?
        };
        if !path.is_file() {
            return Err(invalid(
                "slate",
                format!("{} is not a file", path.display()),
            ));
        }
        Ok(LiveOutput {
            slate: Some(path.to_string_lossy().into_owned()),
            ..def
        })
    }

    pub async fn create_output(
        &self,
        def: LiveOutput,
        who: &Principal,
    ) -> Result<OutputView, LiveError> {
        let def = check_output(&self.transports, def)?;
        let def = self.resolve_slate(def, who).await?;
        let sid = self.output_source(&def).await?;
        let def = LiveOutput {
            source_id: Some(sid),
            source: None,
            ..def
        };
        let settings = serde_json::to_string(&def).unwrap_or_default();
        let running = def.enabled.unwrap_or(true);
        let r = self
            .catalog
            .live_put(
                LiveTable::Outputs,
                None,
                &LiveWrite {
                    name: &def.name,
                    kind: &def.kind,
                    settings: &settings,
                    origin: "api",
                    running,
                    source_id: Some(sid),
                },
            )
            .await?;
        if running && self.output_here(sid).await? && self.claim(LiveTable::Outputs, r.id).await? {
            if let Err(e) = self.run_output(r.id, sid, def) {
                self.release(LiveTable::Outputs, r.id).await;
                self.catalog.live_delete(LiveTable::Outputs, r.id).await?;
                return Err(e);
            }
        }
        self.get_output(r.id).await
    }

    pub async fn update_output(
        &self,
        id: i64,
        def: LiveOutput,
        who: &Principal,
    ) -> Result<OutputView, LiveError> {
        let r = self.catalog.live_get(LiveTable::Outputs, id).await?;
        Self::declared(&r)?;
        let old: LiveOutput = parse_row(&r)?;
        let def = check_output(&self.transports, keep_secrets(&def, &old))?;
        let def = self.resolve_slate(def, who).await?;
        let sid = self.output_source(&def).await?;
        let def = LiveOutput {
            source_id: Some(sid),
            source: None,
            ..def
        };
        let settings = serde_json::to_string(&def).unwrap_or_default();
        self.catalog
            .live_put(
                LiveTable::Outputs,
                Some(id),
                &LiveWrite {
                    name: &def.name,
                    kind: &def.kind,
                    settings: &settings,
                    origin: "api",
                    running: r.running,
                    source_id: Some(sid),
                },
            )
            .await?;
        if r.running && self.output_here(sid).await? && self.claim(LiveTable::Outputs, id).await? {
            self.run_output(id, sid, def)?;
        }
        self.get_output(id).await
    }

    pub async fn delete_output(&self, id: i64) -> Result<(), LiveError> {
        let r = self.catalog.live_get(LiveTable::Outputs, id).await?;
        Self::declared(&r)?;
        self.catalog.live_delete(LiveTable::Outputs, id).await?;
        self.halt_output(id);
        self.release(LiveTable::Outputs, id).await;
        self.lock().failed.remove(&(false, id));
        Ok(())
    }

    pub async fn start_output(&self, id: i64) -> Result<OutputView, LiveError> {
        let r = self.catalog.live_get(LiveTable::Outputs, id).await?;
        let def: LiveOutput = parse_row(&r)?;
        let sid = r.source_id.unwrap_or(0);
        self.catalog
            .live_set_running(LiveTable::Outputs, id, true)
            .await?;
        let running = self.lock().outputs.contains_key(&id);
        if !running && self.output_here(sid).await? && self.claim(LiveTable::Outputs, id).await? {
            if let Err(e) = self.run_output(id, sid, def) {
                self.lock().failed.insert((false, id), e.to_string());
                self.release(LiveTable::Outputs, id).await;
                self.catalog
                    .live_set_running(LiveTable::Outputs, id, r.running)
                    .await?;
                return Err(e);
            }
        }
        self.get_output(id).await
    }

    pub async fn stop_output(&self, id: i64) -> Result<OutputView, LiveError> {
        self.catalog.live_get(LiveTable::Outputs, id).await?;
        self.catalog
            .live_set_running(LiveTable::Outputs, id, false)
            .await?;
        self.halt_output(id);
        self.release(LiveTable::Outputs, id).await;
        self.get_output(id).await
    }

    /// Puts an output with failover on its `primary` or its `backup` now (when that source
    /// delivers), and keeps preferring it: the automatic rules go on from there (a failing
    /// choice is left, and taken back once healthy). The switch is an event like the others.
    pub async fn switch_output(&self, id: i64, to: &str) -> Result<OutputView, LiveError> {
        let r = self.catalog.live_get(LiveTable::Outputs, id).await?;
        let def: LiveOutput = parse_row(&r)?;
        let input = match to {
            "primary" => None,
            "backup" => Some(1),
            other => return Err(invalid("to", format!("{other:?}: `primary` or `backup`"))),
        };
        if def.profile.is_none() || (def.backup_id.is_none() && def.backup.is_none()) {
            return Err(LiveError::Conflict(format!(
                "live output {:?} has no failover: give it a `profile` and a `backup` source",
                def.name
            )));
        }
        {
            let g = self.lock();
            let o = g
                .outputs
                .get(&id)
                .filter(|o| o.forward.as_ref().is_some_and(|f| f.transcode.is_some()))
                .ok_or_else(|| {
                    LiveError::Conflict(format!("live output {:?} is not on air", def.name))
                })?;
            let source = match input {
                None => Some(o.source_id),
                Some(_) => match (o.def.backup_id, &o.def.backup) {
                    (Some(b), _) => Some(b),
                    (None, Some(n)) => g
                        .sources
                        .iter()
                        .find(|(_, s)| &s.def.name == n)
                        .map(|(i, _)| *i),
                    (None, None) => None,
                },
            };
            let live = source
                .and_then(|s| g.sources.get(&s))
                .is_some_and(|s| s.state == LinkState::Live);
            if !live {
                return Err(LiveError::Conflict(format!(
                    "the {to} source of live output {:?} is not live: switching to it would put \
                     nothing on air",
                    def.name
                )));
            }
            o.fail.manual.prefer(input);
        }
        tracing::info!(output = id, to, "live output: operator switch");
        self.get_output(id).await
    }

    /// A file of an `hls` output's ladder (`master.m3u8`, `<rendition>/index.m3u8`, a
    /// segment): its path, once the name is known to stay inside the ladder's folder.
    pub async fn hls_file(&self, id: i64, file: &str) -> Result<PathBuf, LiveError> {
        let r = self.catalog.live_get(LiveTable::Outputs, id).await?;
        if r.kind != "hls" {
            return Err(LiveError::NotFound(format!(
                "HLS of live output {id} (kind {})",
                r.kind
            )));
        }
        let hook = self
            .transports
            .profile
            .as_ref()
            .ok_or_else(|| LiveError::NotBuilt {
                kind: "transcoding output (profile)".into(),
            })?;
        let parts: Vec<&str> = file.split('/').collect();
        let fine = |p: &&str| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if parts.len() > 2 || !parts.iter().all(fine) {
            return Err(LiveError::NotFound(format!("HLS file {file:?}")));
        }
        let mut path = hook.hls_dir(&r.name);
        path.extend(&parts);
        Ok(path)
    }

    pub async fn output_stats(&self, id: i64) -> Result<OutputStats, LiveError> {
        self.catalog.live_get(LiveTable::Outputs, id).await?;
        let state = self.output_state(id);
        let g = self.lock();
        let Some(o) = g.outputs.get(&id) else {
            return Ok(OutputStats {
                id,
                state,
                link: LinkStats {
                    state: LinkState::Stopped,
                    last_error: g.failed.get(&(false, id)).cloned(),
                    ..LinkStats::default()
                },
                reader: None,
                demux: None,
                switches: 0,
                last_switch: None,
            });
        };
        let link = o.link.stats();
        let src = g.sources.get(&o.source_id);
        let reader = src.and_then(|s| s.hub.readers().into_iter().find(|r| r.name == o.reader));
        let demux = src
            .and_then(|s| s.monitor.as_ref())
            .and_then(|m| m.subscribers().into_iter().find(|r| r.name == o.reader));
        let last_switch = plock(&o.fail.last).clone();
        Ok(OutputStats {
            id,
            state,
            link,
            reader,
            demux,
            switches: o.fail.switches.load(Ordering::Relaxed),
            last_switch,
        })
    }

    /// The running source's last preview picture (kept while it is lost).
    pub async fn preview(&self, id: i64) -> Result<Preview, LiveError> {
        self.catalog.live_get(LiveTable::Sources, id).await?;
        self.lock()
            .sources
            .get(&id)
            .and_then(|s| s.monitor.as_ref()?.preview())
            .ok_or_else(|| LiveError::NotFound(format!("a preview of live source {id}")))
    }

    /// A new reader of a running source (a preview, a probe, a restream over HTTP) whose queue
    /// holds `queue` chunks (0: `live.reader_queue`).
    pub fn reader(&self, id: i64, name: &str, queue: usize) -> Result<HubReader, LiveError> {
        let g = self.lock();
        let s = g
            .sources
            .get(&id)
            .ok_or_else(|| LiveError::Conflict(format!("live source {id} is not running")))?;
        let q = if queue == 0 { self.reader_queue } else { queue };
        Ok(s.hub.reader(name, q))
    }

    /// A new taker of a running source's demuxed packets (a playout channel's live event), the
    /// source named by its id or its name.
    pub fn subscribe(&self, source: &str, name: &str) -> Result<PacketReader, LiveError> {
        let g = self.lock();
        let s = match source.trim().parse::<i64>() {
            Ok(id) => g.sources.get(&id),
            Err(_) => g.sources.values().find(|s| s.def.name == source),
        }
        .ok_or_else(|| LiveError::Conflict(format!("live source {source:?} is not running")))?;
        s.monitor
            .as_ref()
            .map(|m| m.subscribe(name, DEMUX_QUEUE))
            .ok_or_else(|| LiveError::NotBuilt {
                kind: format!("demux of source {}", s.def.name),
            })
    }

    // ---- health, events, metrics ----

    /// Looks at each source's health every 100 ms until `stop`: moves it between connecting,
    /// live and lost, and puts `lost` and `restored` on the change feed.
    pub async fn watch(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = stop.cancelled() => return,
            }
            let switched = std::mem::take(&mut *plock(&self.switched));
            for (id, s) in switched {
                let detail = serde_json::to_value(&s).ok();
                if let Err(e) = self
                    .catalog
                    .live_event(LiveTable::Outputs, id, "switched", detail)
                    .await
                {
                    tracing::error!(output = id, error = %e, "live: event not recorded");
                }
            }
            for (id, name, op, detail) in self.tick() {
                match op {
                    "lost" => tracing::warn!(source = id, name = %name, "live source lost"),
                    _ => tracing::info!(source = id, name = %name, "live source restored"),
                }
                if let Err(e) = self
                    .catalog
                    .live_event(LiveTable::Sources, id, op, Some(detail))
                    .await
                {
                    tracing::error!(source = id, error = %e, "live: event not recorded");
                }
            }
        }
    }

    /// One look at every source; the transitions worth an event.
    fn tick(&self) -> Vec<(i64, String, &'static str, serde_json::Value)> {
        let mut events = Vec::new();
        let mut g = self.lock();
        for (id, s) in g.sources.iter_mut() {
            let link = s.link.stats();
            // Bytes that arrive are not a feed when nothing in them demuxes (garbage, a
            // stream of another kind); the demux's opening may look for some seconds.
            let quiet = s.monitor.as_ref().map(Monitor::demux_quiet_for);
            let unreadable = quiet.filter(|q| *q > s.loss.max(DEMUX_GRACE));
            let now = match (link.state, s.hub.since_last()) {
                (LinkState::Stopped, _) => LinkState::Stopped,
                (_, Some(d)) if d <= s.loss && unreadable.is_none() => LinkState::Live,
                (_, Some(_)) => LinkState::Lost,
                (LinkState::Lost, None) => LinkState::Lost,
                (_, None) => LinkState::Connecting,
            };
            if now == s.state {
                continue;
            }
            match (s.state, now) {
                (_, LinkState::Lost) if s.seen => events.push((
                    *id,
                    s.def.name.clone(),
                    "lost",
                    match (unreadable, s.hub.since_last()) {
                        (Some(q), Some(d)) if d <= s.loss => serde_json::json!({
                            "reason": format!(
                                "bytes arrive but nothing in them demuxes for {:.1} s",
                                q.as_secs_f64()
                            ),
                            "lost_for_ms": q.as_millis() as u64,
                        }),
                        _ => serde_json::json!({
                            "reason": format!("no packet for {} ms", s.loss.as_millis()),
                            "lost_for_ms": s.hub.since_last().map_or(0, |d| d.as_millis() as u64),
                        }),
                    },
                )),
                (LinkState::Lost, LinkState::Live) if s.seen => events.push((
                    *id,
                    s.def.name.clone(),
                    "restored",
                    serde_json::json!({ "reason": "packets arrive again" }),
                )),
                _ => {}
            }
            if now == LinkState::Live {
                s.seen = true;
                s.live_since = Some(Instant::now());
            } else {
                s.live_since = None;
            }
            s.state = now;
        }
        events
    }

    /// Sets the `antenne_live_*` metrics from the present figures.
    pub fn export_metrics(&self) {
        const STATES: &[LinkState] = &[
            LinkState::Connecting,
            LinkState::Live,
            LinkState::Lost,
            LinkState::Failover,
            LinkState::Stopped,
        ];
        let g = self.lock();
        for (id, s) in &g.sources {
            let l = s.link.stats();
            let src = id.to_string();
            for st in STATES {
                metrics::gauge!("antenne_live_source_state", "source" => src.clone(), "state" => st.as_str())
                    .set(if *st == s.state { 1.0 } else { 0.0 });
            }
            metrics::gauge!("antenne_live_source_bitrate_bps", "source" => src.clone())
                .set(l.bitrate_bps as f64);
            metrics::counter!("antenne_live_source_packets_received_total", "source" => src.clone())
                .absolute(l.packets_received);
            metrics::counter!("antenne_live_source_packets_lost_total", "source" => src.clone())
                .absolute(l.packets_lost);
            metrics::counter!("antenne_live_source_packets_dropped_total", "source" => src.clone())
                .absolute(l.packets_dropped);
            metrics::counter!("antenne_live_source_packets_malformed_total", "source" => src.clone())
                .absolute(l.packets_malformed);
            if let Some(m) = &s.monitor {
                m.export_metrics(&src);
            }
            for r in s.hub.readers() {
                metrics::counter!("antenne_live_reader_dropped_total", "source" => src.clone(), "reader" => r.name)
                    .absolute(r.dropped);
            }
        }
        for (id, o) in &g.outputs {
            let l = o.link.stats();
            let out = id.to_string();
            let state = match g.sources.get(&o.source_id) {
                Some(_) if o.fail.off_primary.load(Ordering::Acquire) => LinkState::Failover,
                Some(s) if o.forward.is_some() => s.state,
                _ => LinkState::Connecting,
            };
            for st in STATES {
                metrics::gauge!("antenne_live_output_state", "output" => out.clone(), "state" => st.as_str())
                    .set(if *st == state { 1.0 } else { 0.0 });
            }
            metrics::gauge!("antenne_live_output_bitrate_bps", "output" => out.clone())
                .set(l.bitrate_bps as f64);
            metrics::counter!("antenne_live_output_packets_sent_total", "output" => out.clone())
                .absolute(l.packets_sent);
            metrics::counter!("antenne_live_output_packets_dropped_total", "output" => out.clone())
                .absolute(l.packets_dropped);
            metrics::counter!("antenne_live_output_switches_total", "output" => out.clone())
                .absolute(o.fail.switches.load(Ordering::Relaxed));
        }
    }
}

/// A passthrough output: the hub reader's chunks, as they come, to the output transport.
fn forward(reader: &HubReader, out: &dyn OutputLink, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        match reader.recv_timeout(Duration::from_millis(50)) {
            Ok(c) => out.deliver(c),
            Err(Recv::Timeout) => {}
            Err(Recv::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(name: &str) -> LiveSource {
        LiveSource {
            name: name.into(),
            kind: "udp".into(),
            address: Some("127.0.0.1:5000".into()),
            ..LiveSource::default()
        }
    }

    #[test]
    fn definitions_are_checked_by_kind() {
        let t = Transports::builtin();
        assert!(check_source(&t, udp("cam1"), None).is_ok());
        let e = check_source(
            &t,
            LiveSource {
                passphrase: Some("0123456789".into()),
                ..udp("cam1")
            },
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("passphrase: not a setting of kind udp"),
            "{e}"
        );
        let e = check_source(
            &t,
            LiveSource {
                kind: "smpte2110".into(),
                ..udp("x")
            },
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not one of"), "{e}");
        let e = check_source(
            &t,
            LiveSource {
                address: Some("nowhere".into()),
                ..udp("x")
            },
            None,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("address:"), "{e}");
        let e = check_source(
            &t,
            LiveSource {
                interface: Some("127.0.0.1".into()),
                ..udp("x")
            },
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("multicast"), "{e}");
        let srt = LiveSource {
            name: "truck".into(),
            kind: "srt_listener".into(),
            address: Some("0.0.0.0:9000".into()),
            ..LiveSource::default()
        };
        assert!(check_source(&t, srt.clone(), None).is_ok());
        let short = LiveSource {
            passphrase: Some("0123456789".into()),
            pbkeylen: Some(20),
            ..srt
        };
        let e = check_source(&t, short, None).unwrap_err();
        assert!(e.to_string().contains("pbkeylen"), "{e}");
        let mut bare = Transports::builtin();
        bare.inputs.remove("rtmp");
        let rtmp = LiveSource {
            name: "obs".into(),
            kind: "rtmp".into(),
            address: Some("127.0.0.1:1935".into()),
            key: Some("k".into()),
            ..LiveSource::default()
        };
        assert!(matches!(
            check_source(&bare, rtmp, None),
            Err(LiveError::NotBuilt { .. })
        ));
        let ndi = LiveSource {
            name: "studio".into(),
            kind: "ndi".into(),
            device: Some("STUDIO (cam 1)".into()),
            ..LiveSource::default()
        };
        match check_source(&t, ndi, None) {
            Err(LiveError::Missing { missing, .. }) => assert!(missing.contains("libndi.so.6")),
            // A machine with the runtime: the receiver itself is not in this build.
            other => assert!(
                matches!(other, Err(LiveError::NotBuilt { .. })),
                "{other:?}"
            ),
        }
        let out = LiveOutput {
            name: "to-playout".into(),
            kind: "rtp".into(),
            source_id: Some(1),
            address: Some("239.0.0.1:5004".into()),
            ttl: Some(0),
            ..LiveOutput::default()
        };
        assert!(check_output(&t, out.clone())
            .unwrap_err()
            .to_string()
            .starts_with("ttl:"));
        assert!(check_output(
            &t,
            LiveOutput {
                ttl: Some(16),
                ..out.clone()
            }
        )
        .is_ok());
        assert!(matches!(
            check_output(
                &t,
                LiveOutput {
                    profile: Some("web".into()),
                    ttl: Some(16),
                    ..out
                }
            ),
            Err(LiveError::NotBuilt { .. })
        ));
    }

    #[test]
    fn secrets_are_masked_and_kept() {
        let stored = LiveSource {
            name: "truck".into(),
            kind: "srt_caller".into(),
            address: Some("10.0.0.1:9000".into()),
            passphrase: Some("a long secret".into()),
            ..LiveSource::default()
        };
        let shown = masked(&stored);
        assert_eq!(shown.passphrase.as_deref(), Some(SECRET_MASK));
        assert_eq!(shown.address, stored.address);
        let back = keep_secrets(&shown, &stored);
        assert_eq!(back, stored);
        let changed = LiveSource {
            passphrase: Some("another secret".into()),
            ..shown
        };
        assert_eq!(
            keep_secrets(&changed, &stored).passphrase,
            changed.passphrase
        );
    }
}
