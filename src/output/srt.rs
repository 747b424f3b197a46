//! SRT outputs: a caller that connects to a receiver (and reconnects), or a listener that serves
//! every receiver that calls it, each fed the same chunks. `deliver` never blocks: chunks go
//! through a bounded queue to the output's own thread, and a full queue drops (counted), as does
//! a receiver whose send buffer is full. Uses the libsrt binding in `crate::srt`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::link::{Chunk, ChunkSink, Link, LinkCounters, LinkState, LinkStats};
use crate::srt::{
    Epoll, Handshake, Pending, RejectCode, Socket, SocketStats, SrtError, SrtMode, SrtSpec,
    LIVE_PAYLOAD,
};

/// Chunks waiting for the output thread: 1024 chunks of 7 TS packets are ~1.3 MB, ~1 s at
/// 10 Mb/s.
pub const DEFAULT_QUEUE: usize = 1024;
const TICK: Duration = Duration::from_millis(20);
const STATS_EVERY: Duration = Duration::from_millis(250);
const RETRY: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A running SRT output; a [`ChunkSink`] for the hub and a [`Link`] for the stats.
pub struct SrtOutput {
    shared: Arc<Shared>,
    queue: Sender<Chunk>,
    thread: Mutex<Option<JoinHandle<()>>>,
    local: Option<SocketAddr>,
}

struct Shared {
    spec: SrtSpec,
    counters: LinkCounters,
    /// Receivers being fed now.
    receivers: AtomicUsize,
    stop: AtomicBool,
    pending: Mutex<Pending<()>>,
}

impl SrtOutput {
    pub fn start(spec: SrtSpec) -> Result<SrtOutput, SrtError> {
        SrtOutput::with_queue(spec, DEFAULT_QUEUE)
    }

    /// As [`SrtOutput::start`], with a queue of `capacity` chunks.
    pub fn with_queue(spec: SrtSpec, capacity: usize) -> Result<SrtOutput, SrtError> {
        spec.validate()?;
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        let shared = Arc::new(Shared {
            spec: spec.clone(),
            counters: LinkCounters::default(),
            receivers: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            pending: Mutex::new(Pending::default()),
        });
        let (thread, local) = match spec.mode {
            SrtMode::Caller => {
                let s = shared.clone();
                let t = std::thread::Builder::new()
                    .name("srt-out-caller".into())
                    .spawn(move || run_caller(&s, &rx))
                    .map_err(SrtError::Thread)?;
                (t, None)
            }
            SrtMode::Listener => {
                let (listener, epoll) = listen(&shared)?;
                let local = listener.local_addr()?;
                let s = shared.clone();
                let t = std::thread::Builder::new()
                    .name("srt-out-listen".into())
                    .spawn(move || run_listener(&s, listener, epoll, &rx))
                    .map_err(SrtError::Thread)?;
                (t, Some(local))
            }
        };
        Ok(SrtOutput {
            shared,
            queue: tx,
            thread: Mutex::new(Some(thread)),
            local,
        })
    }

    /// How many receivers are being fed now (a caller output: 0 or 1).
    pub fn receivers(&self) -> usize {
        self.shared.receivers.load(Ordering::Relaxed)
    }

    /// The address a listener output is bound to.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }
}

impl ChunkSink for SrtOutput {
    fn deliver(&self, chunk: Chunk) {
        let packets = chunk.len().div_ceil(LIVE_PAYLOAD).max(1) as u64;
        match self.queue.try_send(chunk) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shared.counters.dropped(packets)
            }
        }
    }
}

impl Link for SrtOutput {
    fn stats(&self) -> LinkStats {
        self.shared.counters.snapshot()
    }

    fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let thread = lock(&self.thread).take();
        if let Some(t) = thread {
            // The listener thread ends within a tick; a caller may be inside a connect attempt
            // (≤ 3 s) and is left to finish it.
            if self.shared.spec.mode == SrtMode::Listener {
                let _ = t.join();
            }
        }
        self.shared.counters.set_state(LinkState::Stopped);
    }
}

impl Drop for SrtOutput {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One receiver: its socket and libsrt's figures already counted.
struct Peer {
    socket: Socket,
    addr: String,
    last: SocketStats,
}

impl Peer {
    /// Sends a chunk in live-mode messages; a full send buffer drops (counted), a broken
    /// connection is an error.
    fn send(&mut self, chunk: &Chunk, counters: &LinkCounters) -> Result<(), SrtError> {
        for piece in chunk.chunks(LIVE_PAYLOAD) {
            if self.socket.send(piece)? {
                counters.sent(piece.len(), 1);
            } else {
                counters.dropped(1);
            }
        }
        Ok(())
    }

    fn fold_stats(&mut self, counters: &LinkCounters) {
        let Ok(now) = self.socket.stats() else {
            return;
        };
        let add = |a: &AtomicU64, new: u64, old: u64| {
            a.fetch_add(new.saturating_sub(old), Ordering::Relaxed);
        };
        add(
            &counters.packets_retransmitted,
            now.retransmitted,
            self.last.retransmitted,
        );
        add(
            &counters.packets_dropped,
            now.sent_dropped,
            self.last.sent_dropped,
        );
        counters.set_rtt_ms(Some(now.rtt_ms));
        counters.set_buffer_ms(Some(now.send_buffer_ms));
        self.last = now;
    }
}

fn run_caller(shared: &Shared, rx: &Receiver<Chunk>) {
    let spec = &shared.spec;
    while !shared.stop.load(Ordering::Relaxed) {
        let connected = spec.resolve().and_then(|addr| {
            let socket = Socket::new()?;
            socket.configure(spec)?;
            socket.set_connect_timeout(CONNECT_TIMEOUT)?;
            socket.connect(addr)?;
            socket.set_send_nonblocking()?;
            Ok((socket, addr))
        });
        match connected {
            Ok(_) if shared.stop.load(Ordering::Relaxed) => break,
            Ok((socket, addr)) => {
                // Chunks queued while nobody was connected are stale for a live receiver.
                discard(rx, &shared.counters);
                let mut peer = Peer {
                    socket,
                    addr: addr.to_string(),
                    last: SocketStats::default(),
                };
                shared.counters.set_state(LinkState::Live);
                shared.receivers.store(1, Ordering::Relaxed);
                tracing::info!(address = %spec.address, "SRT output connected");
                if let Err(e) = feed(shared, rx, &mut peer) {
                    shared
                        .counters
                        .error(format!("connection to {} lost: {e}", peer.addr));
                    shared.counters.set_state(LinkState::Lost);
                }
                peer.fold_stats(&shared.counters);
                shared.receivers.store(0, Ordering::Relaxed);
            }
            Err(e) => {
                if e.is_refusal() {
                    shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                }
                shared.counters.error(format!("{}: {e}", spec.address));
            }
        }
        let until = Instant::now() + RETRY;
        while !shared.stop.load(Ordering::Relaxed) && Instant::now() < until {
            // Not connected: nothing can be sent, and a stale backlog is of no use.
            discard(rx, &shared.counters);
            std::thread::sleep(TICK);
        }
    }
}

/// Empties the queue, counting what is thrown away as dropped.
fn discard(rx: &Receiver<Chunk>, counters: &LinkCounters) {
    while let Ok(chunk) = rx.try_recv() {
        counters.dropped(chunk.len().div_ceil(LIVE_PAYLOAD).max(1) as u64);
    }
}

/// Sends queued chunks to one receiver until it breaks or the output stops.
fn feed(shared: &Shared, rx: &Receiver<Chunk>, peer: &mut Peer) -> Result<(), SrtError> {
    let mut last_stats = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        match rx.recv_timeout(TICK) {
            Ok(chunk) => peer.send(&chunk, &shared.counters)?,
            Err(RecvTimeoutError::Timeout) => {
                if peer.socket.state() == crate::srt::SockState::Gone {
                    return Err(SrtError::Broken);
                }
            }
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
        if last_stats.elapsed() >= STATS_EVERY {
            last_stats = Instant::now();
            peer.fold_stats(&shared.counters);
        }
    }
    Ok(())
}

fn listen(shared: &Arc<Shared>) -> Result<(Socket, Epoll), SrtError> {
    let spec = &shared.spec;
    let addr = spec.resolve()?;
    let mut socket = Socket::new()?;
    socket.configure(spec)?;
    socket.set_send_nonblocking()?;
    socket.bind(addr)?;
    let weak = Arc::downgrade(shared);
    socket.listen_with(
        16,
        Arc::new(move |hs: &Handshake<'_>| {
            let Some(shared) = weak.upgrade() else {
                return Err(RejectCode::NotFound);
            };
            let peer = hs.peer.map(|p| p.to_string()).unwrap_or_else(|| "?".into());
            if let Some(wanted) = &shared.spec.stream_id {
                if hs.stream_id != wanted {
                    shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                    shared.counters.error(format!(
                        "refused SRT receiver {peer}: unknown stream ID {:?}",
                        hs.stream_id
                    ));
                    return Err(RejectCode::NotFound);
                }
            }
            lock(&shared.pending).insert(hs.socket_id(), hs.peer, ());
            Ok(())
        }),
    )?;
    let epoll = Epoll::new()?;
    epoll.add(&socket)?;
    Ok((socket, epoll))
}

fn run_listener(shared: &Shared, listener: Socket, epoll: Epoll, rx: &Receiver<Chunk>) {
    let mut peers: Vec<Peer> = Vec::new();
    let mut last_accept = Instant::now();
    let mut last_stats = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        let next = rx.recv_timeout(TICK);
        if let Ok(chunk) = &next {
            peers.retain_mut(|p| match p.send(chunk, &shared.counters) {
                Ok(()) => true,
                Err(e) => {
                    shared
                        .counters
                        .error(format!("receiver {} lost: {e}", p.addr));
                    false
                }
            });
        }
        if matches!(next, Err(RecvTimeoutError::Disconnected)) {
            break;
        }
        if last_accept.elapsed() >= TICK {
            last_accept = Instant::now();
            if epoll.wait(Duration::ZERO).contains(&listener.id()) {
                match listener.accept() {
                    Ok((socket, addr)) => {
                        lock(&shared.pending).accepted(socket.id());
                        if socket.set_send_nonblocking().is_ok() {
                            let addr = addr.map(|a| a.to_string()).unwrap_or_else(|| "?".into());
                            tracing::info!(address = %shared.spec.address, peer = %addr, "SRT receiver connected");
                            peers.push(Peer {
                                socket,
                                addr,
                                last: SocketStats::default(),
                            });
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "SRT accept"),
                }
            }
            for (peer, ()) in lock(&shared.pending).refused(Duration::from_secs(10)) {
                let peer = peer.map(|p| p.to_string()).unwrap_or_else(|| "?".into());
                shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                shared.counters.error(format!(
                    "refused SRT receiver {peer}: wrong or missing passphrase"
                ));
            }
            peers.retain(|p| {
                let alive = p.socket.state() != crate::srt::SockState::Gone;
                if !alive {
                    shared
                        .counters
                        .error(format!("receiver {} disconnected", p.addr));
                }
                alive
            });
            shared.receivers.store(peers.len(), Ordering::Relaxed);
            shared.counters.set_state(if peers.is_empty() {
                LinkState::Connecting
            } else {
                LinkState::Live
            });
        }
        if last_stats.elapsed() >= STATS_EVERY {
            last_stats = Instant::now();
            for p in &mut peers {
                p.fold_stats(&shared.counters);
            }
        }
    }
    epoll.remove(&listener);
}
