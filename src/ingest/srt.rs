//! SRT inputs: a caller that connects to a sender and reconnects by itself, or a listener that
//! waits for senders. Several listener inputs may share one UDP port: callers are routed by the
//! stream ID they send ([`PORTS`]: port → stream ID → source), each source with its own
//! passphrase and latency; an unknown stream ID or a wrong passphrase is refused at handshake and
//! counted. Received messages go to the source's [`ChunkSink`] as whole TS packets.
//!
//! Each connection is read by its own thread (libsrt's calls block); a listener port has one
//! thread waiting for callers. Uses the libsrt binding in `crate::srt`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};

use crate::link::{Chunk, ChunkSink, Link, LinkCounters, LinkState, LinkStats, TS_PACKET};
use crate::srt::{
    Epoll, Handshake, Pending, RejectCode, Socket, SocketStats, SrtError, SrtMode, SrtSpec,
};

/// How often a blocked receive or accept looks up to see whether it should stop.
const TICK: Duration = Duration::from_millis(100);
/// How often libsrt's per-connection figures are folded into the link's counters.
const STATS_EVERY: Duration = Duration::from_millis(250);
/// A caller's wait between two connection attempts.
const RETRY: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Starts SRT inputs.
pub struct SrtInput;

impl SrtInput {
    /// Starts an input delivering to `sink`: a caller starts connecting in the background; a
    /// listener binds (or joins the listener already on that port) before this returns, so a
    /// port in use or a stream ID already routed there is an error here.
    pub fn start(spec: SrtSpec, sink: Arc<dyn ChunkSink>) -> Result<SrtInputHandle, SrtError> {
        spec.validate()?;
        let source = Arc::new(Source {
            spec: spec.clone(),
            sink,
            counters: LinkCounters::default(),
            stop: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            totals: Mutex::new(Totals::default()),
        });
        match spec.mode {
            SrtMode::Caller => {
                let s = source.clone();
                let thread = std::thread::Builder::new()
                    .name("srt-in-caller".into())
                    .spawn(move || run_caller(&s))
                    .map_err(SrtError::Thread)?;
                Ok(SrtInputHandle {
                    source,
                    kind: Kind::Caller(Mutex::new(Some(thread))),
                })
            }
            SrtMode::Listener => {
                let addr = spec.resolve()?;
                let port = Port::join(addr, source.clone())?;
                Ok(SrtInputHandle {
                    source,
                    kind: Kind::Listener(Mutex::new(Some(port))),
                })
            }
        }
    }
}

/// A running SRT input; stopping it (or dropping it) closes its connections and, for the last
/// source on a listener port, the port.
pub struct SrtInputHandle {
    source: Arc<Source>,
    kind: Kind,
}

enum Kind {
    Caller(Mutex<Option<JoinHandle<()>>>),
    Listener(Mutex<Option<Arc<Port>>>),
}

impl SrtInputHandle {
    pub fn spec(&self) -> &SrtSpec {
        &self.source.spec
    }

    /// How many connections this input has had (each reconnect or new caller counts one).
    pub fn connections(&self) -> u64 {
        self.source.generation.load(Ordering::Relaxed)
    }

    /// The UDP port a listener input is bound to (useful when the spec asked for port 0).
    pub fn local_port(&self) -> Option<u16> {
        match &self.kind {
            Kind::Listener(p) => lock(p).as_ref().map(|p| p.addr.port()),
            Kind::Caller(_) => None,
        }
    }
}

impl Link for SrtInputHandle {
    fn stats(&self) -> LinkStats {
        self.source.counters.snapshot()
    }

    fn stop(&self) {
        self.source.stop.store(true, Ordering::Relaxed);
        match &self.kind {
            // The thread notices within a tick, or after a connect attempt (≤ 3 s); not joined,
            // so that stop never blocks its caller that long.
            Kind::Caller(t) => drop(lock(t).take()),
            Kind::Listener(p) => {
                if let Some(port) = lock(p).take() {
                    port.leave(&self.source);
                }
            }
        }
        self.source.counters.set_state(LinkState::Stopped);
    }
}

impl Drop for SrtInputHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One input: where its chunks go and what it counts.
struct Source {
    spec: SrtSpec,
    sink: Arc<dyn ChunkSink>,
    counters: LinkCounters,
    stop: AtomicBool,
    /// Bumped by each new connection; an older connection's thread sees it and ends.
    generation: AtomicU64,
    totals: Mutex<Totals>,
}

/// libsrt's figures already added to the counters, per connection generation.
#[derive(Default)]
struct Totals {
    generation: u64,
    last: SocketStats,
}

impl Source {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn refused(&self, message: String) {
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(address = %self.spec.address, "{message}");
        self.counters.error(message);
    }

    /// Adds what libsrt counted since the last look (libsrt's totals restart per connection).
    fn fold_stats(&self, generation: u64, now: &SocketStats) {
        let mut t = lock(&self.totals);
        if t.generation != generation {
            t.generation = generation;
            t.last = SocketStats::default();
        }
        let c = &self.counters;
        let add = |a: &AtomicU64, new: u64, old: u64| {
            a.fetch_add(new.saturating_sub(old), Ordering::Relaxed);
        };
        add(&c.packets_lost, now.received_lost, t.last.received_lost);
        add(
            &c.packets_retransmitted,
            now.received_retransmitted,
            t.last.received_retransmitted,
        );
        add(
            &c.packets_dropped,
            now.received_dropped,
            t.last.received_dropped,
        );
        add(
            &c.packets_undecrypted,
            now.received_undecrypted,
            t.last.received_undecrypted,
        );
        c.set_rtt_ms(Some(now.rtt_ms));
        c.set_buffer_ms(Some(now.receive_buffer_ms));
        t.last = *now;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads one connection until it breaks, is replaced by a newer one, or the source stops.
fn receive(source: &Source, socket: Socket, peer: Option<SocketAddr>) {
    if source.stopped() {
        return;
    }
    let generation = source.generation.fetch_add(1, Ordering::Relaxed) + 1;
    if let Err(e) = socket.set_receive_timeout(TICK) {
        source.counters.error(e.to_string());
        return;
    }
    let peer_text = peer.map(|p| p.to_string()).unwrap_or_else(|| "?".into());
    tracing::info!(address = %source.spec.address, peer = %peer_text, "SRT input connected");
    source.counters.set_state(LinkState::Live);
    let mut aligner = Aligner::default();
    let mut buf = vec![0u8; 2048];
    let mut last_stats = Instant::now();
    let mut ended = None;
    while !source.stopped() && source.generation.load(Ordering::Relaxed) == generation {
        match socket.recv(&mut buf) {
            Ok(Some(n)) => {
                source.counters.received(n, 1);
                aligner.push(&buf[..n], |chunk| source.sink.deliver(chunk));
            }
            Ok(None) => {}
            Err(e) => {
                ended = Some(e);
                break;
            }
        }
        if last_stats.elapsed() >= STATS_EVERY {
            last_stats = Instant::now();
            if let Ok(s) = socket.stats() {
                source.fold_stats(generation, &s);
            }
        }
    }
    if let Ok(s) = socket.stats() {
        source.fold_stats(generation, &s);
    }
    if aligner.skipped > 0 {
        source.counters.error(format!(
            "{} bytes from {peer_text} were not whole TS packets and were skipped",
            aligner.skipped
        ));
    }
    if let Some(e) = ended {
        if source.generation.load(Ordering::Relaxed) == generation && !source.stopped() {
            tracing::warn!(address = %source.spec.address, peer = %peer_text, error = %e, "SRT input lost");
            source
                .counters
                .error(format!("connection from {peer_text} lost: {e}"));
            source.counters.set_state(LinkState::Lost);
        }
    }
}

fn run_caller(source: &Arc<Source>) {
    let spec = &source.spec;
    while !source.stopped() {
        match connect(spec) {
            Ok((socket, peer)) => receive(source, socket, Some(peer)),
            Err(e) if e.is_refusal() => source.refused(format!("{}: {e}", spec.address)),
            Err(e) => source.counters.error(format!("{}: {e}", spec.address)),
        }
        let until = Instant::now() + RETRY;
        while !source.stopped() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn connect(spec: &SrtSpec) -> Result<(Socket, SocketAddr), SrtError> {
    let addr = spec.resolve()?;
    let socket = Socket::new()?;
    socket.configure(spec)?;
    socket.set_connect_timeout(CONNECT_TIMEOUT)?;
    socket.connect(addr)?;
    Ok((socket, addr))
}

/// Listener ports in this process, shared by the inputs that listen on them.
static PORTS: Mutex<BTreeMap<u16, Weak<Port>>> = Mutex::new(BTreeMap::new());

/// One listening UDP port and the sources routed on it by stream ID (`None`: callers whose
/// stream ID no other source on the port claims).
struct Port {
    addr: SocketAddr,
    routes: Mutex<HashMap<Option<String>, Arc<Source>>>,
    pending: Mutex<Pending<Arc<Source>>>,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Port {
    /// Adds `source` to the listener on its port, starting the listener if there is none.
    fn join(addr: SocketAddr, source: Arc<Source>) -> Result<Arc<Port>, SrtError> {
        let key = source.spec.stream_id.clone();
        let mut ports = lock(&PORTS);
        if addr.port() != 0 {
            if let Some(port) = ports.get(&addr.port()).and_then(Weak::upgrade) {
                if port.addr.ip() != addr.ip() {
                    return Err(SrtError::PortMismatch {
                        port: addr.port(),
                        what: "another bind address",
                    });
                }
                let mut routes = lock(&port.routes);
                if routes.contains_key(&key) {
                    return Err(SrtError::StreamIdTaken {
                        port: addr.port(),
                        stream_id: key.unwrap_or_default(),
                    });
                }
                routes.insert(key, source);
                drop(routes);
                return Ok(port);
            }
        }
        let mut socket = Socket::new()?;
        // Latency and passphrase are set per caller in the hook, from the source it routes to.
        socket.set_latency(source.spec.latency_ms)?;
        socket.bind(addr)?;
        let bound = socket.local_addr()?;
        let port = Arc::new(Port {
            addr: bound,
            routes: Mutex::new(HashMap::from([(key, source)])),
            pending: Mutex::new(Pending::default()),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let weak = Arc::downgrade(&port);
        socket.listen_with(
            16,
            Arc::new(move |hs: &Handshake<'_>| match weak.upgrade() {
                Some(port) => port.on_handshake(hs),
                None => Err(RejectCode::NotFound),
            }),
        )?;
        let epoll = Epoll::new()?;
        epoll.add(&socket)?;
        let p = port.clone();
        let thread = std::thread::Builder::new()
            .name(format!("srt-listen-{}", bound.port()))
            .spawn(move || p.accept_loop(socket, epoll))
            .map_err(SrtError::Thread)?;
        *lock(&port.thread) = Some(thread);
        ports.retain(|_, w| w.strong_count() > 0);
        ports.insert(bound.port(), Arc::downgrade(&port));
        Ok(port)
    }

    /// Removes `source`; the last one out closes the port.
    fn leave(&self, source: &Arc<Source>) {
        // The registry's lock first: a source joining meanwhile must not pick a closing port.
        let mut ports = lock(&PORTS);
        let empty = {
            let mut routes = lock(&self.routes);
            routes.retain(|_, s| !Arc::ptr_eq(s, source));
            routes.is_empty()
        };
        if empty {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = lock(&self.thread).take() {
                let _ = t.join();
            }
            ports.remove(&self.addr.port());
        }
    }

    /// libsrt's thread, during a caller's handshake: route by stream ID, apply that source's
    /// passphrase and latency, or refuse.
    fn on_handshake(&self, hs: &Handshake<'_>) -> Result<(), RejectCode> {
        let peer = hs.peer.map(|p| p.to_string()).unwrap_or_else(|| "?".into());
        let source = {
            let routes = lock(&self.routes);
            let wanted = (!hs.stream_id.is_empty()).then(|| hs.stream_id.to_string());
            routes
                .get(&wanted)
                .or_else(|| routes.get(&None))
                .cloned()
                .ok_or_else(|| routes.values().cloned().collect::<Vec<_>>())
        };
        let source = match source {
            Ok(s) => s,
            Err(all) => {
                for s in all {
                    s.refused(format!(
                        "refused SRT caller {peer} on port {}: unknown stream ID {:?}",
                        self.addr.port(),
                        hs.stream_id
                    ));
                }
                return Err(RejectCode::NotFound);
            }
        };
        if source.stopped() {
            return Err(RejectCode::NotFound);
        }
        let applied =
            hs.set_latency(source.spec.latency_ms)
                .and_then(|()| match &source.spec.passphrase {
                    Some(p) => hs.set_passphrase(p, source.spec.pbkeylen),
                    None => Ok(()),
                });
        if let Err(e) = applied {
            source.refused(format!("refused SRT caller {peer}: {e}"));
            return Err(RejectCode::Unauthorized);
        }
        lock(&self.pending).insert(hs.socket_id(), hs.peer, source);
        Ok(())
    }

    fn accept_loop(&self, listener: Socket, epoll: Epoll) {
        while !self.stop.load(Ordering::Relaxed) {
            let ready = epoll.wait(TICK);
            if ready.contains(&listener.id()) {
                match listener.accept() {
                    Ok((socket, peer)) => self.attach(socket, peer),
                    Err(e) => tracing::debug!(port = self.addr.port(), error = %e, "SRT accept"),
                }
            }
            let refused = lock(&self.pending).refused(Duration::from_secs(10));
            for (peer, source) in refused {
                let peer = peer.map(|p| p.to_string()).unwrap_or_else(|| "?".into());
                let why = if source.spec.passphrase.is_some() {
                    "wrong or missing passphrase"
                } else {
                    "the caller encrypts and this source has no passphrase"
                };
                source.refused(format!(
                    "refused SRT caller {peer} on port {}: {why}",
                    self.addr.port()
                ));
            }
        }
        epoll.remove(&listener);
    }

    fn attach(&self, socket: Socket, peer: Option<SocketAddr>) {
        let Some(source) = lock(&self.pending).accepted(socket.id()) else {
            return;
        };
        let s = source.clone();
        let spawned = std::thread::Builder::new()
            .name("srt-in-conn".into())
            .spawn(move || receive(&s, socket, peer));
        if let Err(e) = spawned {
            source
                .counters
                .error(format!("could not start a thread: {e}"));
        }
    }
}

/// Cuts a byte stream into whole TS packets: an SRT message normally carries 7 of them, but a
/// sender may split the stream anywhere (GStreamer's srtsink sends its buffers as they come).
#[derive(Default)]
struct Aligner {
    rest: BytesMut,
    skipped: u64,
}

impl Aligner {
    fn push(&mut self, data: &[u8], mut out: impl FnMut(Chunk)) {
        if self.rest.is_empty()
            && !data.is_empty()
            && data.len().is_multiple_of(TS_PACKET)
            && data[0] == 0x47
        {
            out(Chunk::copy_from_slice(data));
            return;
        }
        self.rest.extend_from_slice(data);
        while !self.rest.is_empty() && self.rest[0] != 0x47 {
            let skip = self
                .rest
                .iter()
                .position(|&b| b == 0x47)
                .unwrap_or(self.rest.len());
            self.rest.advance(skip);
            self.skipped += skip as u64;
        }
        let whole = self.rest.len() / TS_PACKET * TS_PACKET;
        if whole > 0 {
            out(self.rest.split_to(whole).freeze());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                let mut p = vec![i as u8; TS_PACKET];
                p[0] = 0x47;
                p
            })
            .collect()
    }

    #[test]
    fn aligner_passes_whole_packets_and_rejoins_split_ones() {
        let stream = packets(20);
        let mut out = Vec::new();
        let mut a = Aligner::default();
        for piece in stream.chunks(1000) {
            a.push(piece, |c| out.extend_from_slice(&c));
        }
        assert_eq!(out, stream);
        assert_eq!(a.skipped, 0);
    }

    #[test]
    fn aligner_skips_bytes_that_are_not_packets() {
        let mut data = vec![1, 2, 3];
        data.extend(packets(2));
        let mut out = Vec::new();
        let mut a = Aligner::default();
        a.push(&data, |c| out.extend_from_slice(&c));
        assert_eq!(out, packets(2));
        assert_eq!(a.skipped, 3);
    }
}
