//! One demux per live source: a thread reads the source's MPEG-TS as it arrives, demuxes it once
//! and hands every packet (shared, not copied) to any number of subscribers — the source's
//! monitor, each transcoding output's input — each through a bounded queue of its own. A
//! subscriber that falls behind loses packets (counted); it never holds up the demux or the
//! other subscribers.
//!
//! A subscriber sees `Opened` (the streams of what follows) before any packet, and again each
//! time the demuxer is opened anew (garbage in the feed, a changed stream); a subscriber that
//! joins late is given the current streams first. The queue ends when the demux stops.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use super::live::SharedReader;
use super::{ff, AvError};

/// One elementary stream of the demuxed feed.
pub struct StreamInfo {
    /// The demuxer's stream index (what a packet's `stream()` says).
    pub index: usize,
    pub params: ff::codec::Parameters,
    pub time_base: ff::Rational,
}

impl StreamInfo {
    pub fn medium(&self) -> ff::media::Type {
        self.params.medium()
    }
}

impl Clone for StreamInfo {
    fn clone(&self) -> Self {
        StreamInfo {
            index: self.index,
            params: self.params.clone(),
            time_base: self.time_base,
        }
    }
}

/// What a subscriber receives.
pub enum Demuxed {
    /// The demuxer was (re)opened: these are the streams of the packets that follow.
    Opened(Vec<StreamInfo>),
    Packet(Arc<ff::Packet>),
    /// This opening of the demuxer ended; an `Opened` may follow.
    Closed,
}

/// The index of the stream of `t` a decoder should take: the demuxer's best when it judged,
/// else the first of that kind (its parameters may be found by the decoder).
pub fn best(streams: &[StreamInfo], t: ff::media::Type) -> Option<&StreamInfo> {
    streams.iter().find(|s| s.medium() == t)
}

struct Sub {
    name: String,
    tx: Sender<Demuxed>,
    /// The last `Opened` did not fit in the queue: it goes before the next packet.
    reopen: bool,
    /// Its reader is gone: it leaves at the end of this round.
    gone: bool,
    counters: Arc<SubCounters>,
}

#[derive(Default)]
struct SubCounters {
    packets: AtomicU64,
    dropped: AtomicU64,
}

/// A subscriber's figures.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SubscriberStats {
    pub name: String,
    pub packets: u64,
    /// Packets lost to this subscriber because its queue was full.
    pub dropped: u64,
}

/// The demux's figures.
#[derive(Debug, Default)]
pub struct DemuxCounters {
    pub packets: AtomicU64,
    /// Packets the demuxer could not read (garbage).
    pub errors: AtomicU64,
    /// Times the demuxer was opened again.
    pub reopened: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl DemuxCounters {
    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }
}

/// The fan-out of one source's demuxed packets.
pub struct PacketTap {
    name: String,
    started: Instant,
    inner: Mutex<TapInner>,
    pub counters: DemuxCounters,
}

#[derive(Default)]
struct TapInner {
    streams: Option<Vec<StreamInfo>>,
    subs: Vec<Sub>,
    last_packet: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each statement leaves the data behind these locks whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PacketTap {
    pub fn new(name: impl Into<String>) -> Arc<PacketTap> {
        Arc::new(PacketTap {
            name: name.into(),
            started: Instant::now(),
            inner: Mutex::default(),
            counters: DemuxCounters::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long since the demux gave its last packet, or since it started when it gave none.
    pub fn quiet_for(&self) -> Duration {
        lock(&self.inner)
            .last_packet
            .unwrap_or(self.started)
            .elapsed()
    }

    /// A new subscriber with a queue of `capacity` packets; it is given the current streams
    /// first, when the demuxer has found them.
    pub fn subscribe(&self, name: impl Into<String>, capacity: usize) -> PacketReader {
        let (tx, rx) = bounded(capacity.max(2));
        let mut g = lock(&self.inner);
        let mut sub = Sub {
            name: name.into(),
            tx,
            reopen: false,
            gone: false,
            counters: Arc::default(),
        };
        if let Some(s) = &g.streams {
            sub.reopen = sub.tx.try_send(Demuxed::Opened(s.clone())).is_err();
        }
        let reader = PacketReader {
            name: sub.name.clone(),
            rx,
        };
        g.subs.push(sub);
        reader
    }

    pub fn subscribers(&self) -> Vec<SubscriberStats> {
        lock(&self.inner)
            .subs
            .iter()
            .map(|s| SubscriberStats {
                name: s.name.clone(),
                packets: s.counters.packets.load(Ordering::Relaxed),
                dropped: s.counters.dropped.load(Ordering::Relaxed),
            })
            .collect()
    }

    fn opened(&self, streams: Vec<StreamInfo>) {
        let mut g = lock(&self.inner);
        for s in &mut g.subs {
            s.reopen = s.tx.try_send(Demuxed::Opened(streams.clone())).is_err();
        }
        g.streams = Some(streams);
    }

    fn packet(&self, p: ff::Packet) {
        let p = Arc::new(p);
        let mut g = lock(&self.inner);
        g.last_packet = Some(Instant::now());
        let TapInner { streams, subs, .. } = &mut *g;
        let mut gone = false;
        for s in subs.iter_mut() {
            if s.reopen {
                let Some(st) = streams else { continue };
                match s.tx.try_send(Demuxed::Opened(st.clone())) {
                    Ok(()) => s.reopen = false,
                    Err(TrySendError::Full(_)) => {
                        s.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        s.gone = true;
                        gone = true;
                        continue;
                    }
                }
            }
            match s.tx.try_send(Demuxed::Packet(p.clone())) {
                Ok(()) => {
                    s.counters.packets.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Full(_)) => {
                    s.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => {
                    s.gone = true;
                    gone = true;
                }
            }
        }
        if gone {
            subs.retain(|s| !s.gone);
        }
    }

    fn closed(&self) {
        let mut g = lock(&self.inner);
        g.streams = None;
        for s in &g.subs {
            // Informative only: a subscriber takes the next `Opened` as the end of the last.
            let _ = s.tx.try_send(Demuxed::Closed);
        }
    }

    fn error(&self, e: impl std::fmt::Display) {
        tracing::debug!(source = %self.name, error = %e, "live demux");
        *lock(&self.counters.last_error) = Some(e.to_string());
    }
}

/// The receiving end of a subscription.
pub struct PacketReader {
    name: String,
    rx: Receiver<Demuxed>,
}

impl PacketReader {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next item; `Disconnected` once the demux has stopped.
    pub fn recv_timeout(&self, d: Duration) -> Result<Demuxed, RecvTimeoutError> {
        self.rx.recv_timeout(d)
    }
}

/// The opening gives up after this long without finding the streams (a feed where nothing
/// decodes must not hold it for ever); it is tried again on what follows.
const OPEN_WAIT: Duration = Duration::from_secs(4);

/// Demuxes the TS read from `reader` into `tap` until the reader ends or `cancel` is set; a
/// demuxer that gives up (garbage, a changed stream) is opened again on what follows.
pub fn run(reader: Box<dyn Read + Send>, tap: &PacketTap, cancel: &Arc<AtomicBool>) {
    let shared = SharedReader::new(reader);
    while !cancel.load(Ordering::Relaxed) {
        match open(tap.name(), &shared, cancel) {
            Ok(mut ictx) => {
                let streams = ictx
                    .streams()
                    .map(|s| StreamInfo {
                        index: s.index(),
                        params: s.parameters(),
                        time_base: s.time_base(),
                    })
                    .collect();
                tap.opened(streams);
                if let Err(e) = read(&mut ictx, tap, cancel) {
                    tap.error(e);
                }
                tap.closed();
            }
            Err(AvError::Cancelled) => return,
            Err(e) => {
                tap.counters.errors.fetch_add(1, Ordering::Relaxed);
                tap.error(e);
            }
        }
        if shared.ended.load(Ordering::Relaxed) || cancel.load(Ordering::Relaxed) {
            return;
        }
        tap.counters.reopened.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn open(
    name: &str,
    reader: &SharedReader,
    cancel: &Arc<AtomicBool>,
) -> Result<ff::format::context::Input, AvError> {
    let io = ff::format::context::StreamIo::from_read(reader.clone()).map_err(|source| {
        AvError::Libav {
            path: PathBuf::from(name),
            what: "cannot set up reading".into(),
            source,
        }
    })?;
    let mut opts = ff::Dictionary::new();
    // What arrives must not make the demuxer open files or the network.
    opts.set("protocol_whitelist", "none");
    // The decoders learn the rest from the stream itself: a short look is enough, and what
    // the probe holds back reaches the subscribers late and all at once.
    opts.set("analyzeduration", "1000000");
    opts.set("probesize", "1000000");
    let c = cancel.clone();
    let opened = Arc::new(AtomicBool::new(false));
    let o = opened.clone();
    let started = Instant::now();
    let ictx =
        ff::format::input_from_stream_with_interrupt(io, Some(name), Some(opts), move || {
            c.load(Ordering::Relaxed)
                || (!o.load(Ordering::Relaxed) && started.elapsed() > OPEN_WAIT)
        });
    opened.store(true, Ordering::Relaxed);
    ictx.map_err(|source| {
        if cancel.load(Ordering::Relaxed) {
            AvError::Cancelled
        } else if started.elapsed() > OPEN_WAIT {
            AvError::Invalid {
                path: PathBuf::from(name),
                what: format!("no decodable stream found in {} s", OPEN_WAIT.as_secs()),
            }
        } else {
            AvError::NotMedia {
                path: PathBuf::from(name),
                reason: None,
                source,
            }
        }
    })
}

fn read(
    ictx: &mut ff::format::context::Input,
    tap: &PacketTap,
    cancel: &AtomicBool,
) -> Result<(), AvError> {
    let mut bad = 0u32;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut packet = ff::Packet::empty();
        match super::read_packet(ictx, &mut packet) {
            Ok(()) => bad = 0,
            Err(ff::Error::Eof) => return Ok(()),
            Err(ff::Error::InvalidData) if bad < 100 => {
                bad += 1;
                tap.counters.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(ff::Error::Exit) if cancel.load(Ordering::Relaxed) => return Ok(()),
            Err(source) => {
                return Err(AvError::Libav {
                    path: PathBuf::from(tap.name()),
                    what: "read".into(),
                    source,
                })
            }
        }
        tap.counters.packets.fetch_add(1, Ordering::Relaxed);
        tap.packet(packet);
    }
}
