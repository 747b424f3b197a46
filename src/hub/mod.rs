//! The stream hub: one live source, any number of readers (recording, transcodes, restreams, the
//! preview, the QC probe), each behind its own bounded queue. The transport delivers into the
//! [`Hub`] (a [`ChunkSink`]); a reader that cannot keep up loses chunks (counted per reader) and
//! never holds back the transport or the other readers. The [`registry`] runs the live service on
//! top: sources and outputs by kind, their persistence, health, events and statistics; the
//! [`record`]er writes a source to the catalog's media store.
//!
//! The hub itself imports only `link`. The registry composes the transports (`ingest`,
//! `output`), the catalog (persistence, events) and `config` (declared sources); it must not
//! import `api`, `app`, `jobs` or `pipeline` (a live profile plugs in through
//! [`registry::ProfileHook`]).

pub mod monitor;
pub mod record;
pub mod registry;

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use serde::Serialize;

use crate::link::{Chunk, ChunkSink};

/// How long a [`HubReader`] used as [`Read`] waits before returning
/// [`std::io::ErrorKind::Interrupted`], so that a demuxer can look at its cancel flag.
const READ_POLL: Duration = Duration::from_millis(100);

/// One source fanned out to its readers.
pub struct Hub {
    name: String,
    readers: RwLock<Vec<Entry>>,
    epoch: Instant,
    /// Microseconds after `epoch` of the last chunk, plus one (0: none yet).
    last_us: AtomicU64,
    chunks: AtomicU64,
    bytes: AtomicU64,
    closed: AtomicBool,
}

/// The hub's end of a reader: the only sender of its queue, so that closing the hub ends it.
struct Entry {
    slot: Arc<Slot>,
    tx: Sender<Chunk>,
}

/// What the hub and the reader share: the reader's figures.
struct Slot {
    name: String,
    capacity: usize,
    delivered: AtomicU64,
    dropped: AtomicU64,
    /// Its reader was dropped: no one reads this queue any more.
    gone: AtomicBool,
}

/// What one reader of a hub has had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReaderStats {
    pub name: String,
    /// Chunks waiting in its queue now.
    pub queued: usize,
    pub capacity: usize,
    pub delivered: u64,
    /// Chunks it lost because its queue was full.
    pub dropped: u64,
}

impl Hub {
    pub fn new(name: impl Into<String>) -> Arc<Hub> {
        Arc::new(Hub {
            name: name.into(),
            readers: RwLock::new(Vec::new()),
            epoch: Instant::now(),
            last_us: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new reader whose queue holds `capacity` chunks (at least one). It sees the chunks
    /// delivered from now on, until the hub is closed or the reader dropped.
    pub fn reader(&self, name: impl Into<String>, capacity: usize) -> HubReader {
        let capacity = capacity.max(1);
        let (tx, rx) = bounded(capacity);
        let slot = Arc::new(Slot {
            name: name.into(),
            capacity,
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            gone: AtomicBool::new(false),
        });
        if !self.closed.load(Ordering::Acquire) {
            self.write().push(Entry {
                slot: slot.clone(),
                tx,
            });
        }
        // A reader of a closed hub keeps no sender: it reads the end at once.
        HubReader {
            rx,
            slot,
            chunk: Chunk::new(),
            pos: 0,
        }
    }

    /// Time since the last chunk arrived; `None` before the first.
    pub fn since_last(&self) -> Option<Duration> {
        match self.last_us.load(Ordering::Acquire) {
            0 => None,
            t => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_micros(t - 1)),
            ),
        }
    }

    /// Chunks and bytes delivered into the hub so far.
    pub fn received(&self) -> (u64, u64) {
        (
            self.chunks.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// Each reader's figures, in the order they were attached.
    pub fn readers(&self) -> Vec<ReaderStats> {
        self.read()
            .iter()
            .filter(|e| !is_gone(&e.slot))
            .map(|e| ReaderStats {
                name: e.slot.name.clone(),
                queued: e.tx.len(),
                capacity: e.slot.capacity,
                delivered: e.slot.delivered.load(Ordering::Relaxed),
                dropped: e.slot.dropped.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Ends the stream: every reader reads what is queued, then the end.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.write().clear();
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Entry>> {
        self.readers.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Entry>> {
        self.readers.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn is_gone(s: &Slot) -> bool {
    s.gone.load(Ordering::Acquire)
}

impl ChunkSink for Hub {
    fn deliver(&self, chunk: Chunk) {
        if chunk.is_empty() || self.closed.load(Ordering::Acquire) {
            return;
        }
        let now = self.epoch.elapsed().as_micros() as u64 + 1;
        self.last_us.store(now, Ordering::Release);
        self.chunks.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        let mut gone = false;
        for e in self.read().iter() {
            match e.tx.try_send(chunk.clone()) {
                Ok(()) => {
                    e.slot.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Full(_)) => {
                    e.slot.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => gone = true,
            }
            gone |= is_gone(&e.slot);
        }
        if gone {
            self.write().retain(|e| !is_gone(&e.slot));
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("name", &self.name)
            .field("readers", &self.read().len())
            .finish_non_exhaustive()
    }
}

/// How a [`HubReader::recv_timeout`] came back empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recv {
    /// Nothing arrived in time; the source may come back.
    Timeout,
    /// The hub was closed (the source stopped) and the queue is drained.
    Closed,
}

/// One reader of a [`Hub`]: chunks in order, minus those its full queue had to drop.
pub struct HubReader {
    rx: Receiver<Chunk>,
    slot: Arc<Slot>,
    chunk: Chunk,
    pos: usize,
}

impl HubReader {
    /// The next chunk, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Chunk, Recv> {
        self.rx.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => Recv::Timeout,
            RecvTimeoutError::Disconnected => Recv::Closed,
        })
    }

    /// Chunks this reader lost to a full queue.
    pub fn dropped(&self) -> u64 {
        self.slot.dropped.load(Ordering::Relaxed)
    }

    pub fn name(&self) -> &str {
        &self.slot.name
    }
}

impl Drop for HubReader {
    fn drop(&mut self) {
        self.slot.gone.store(true, Ordering::Release);
    }
}

impl Read for HubReader {
    /// The stream's bytes; a wait longer than a moment is `Interrupted` (libav's reader retries
    /// after checking for a cancel), the hub closed is the end.
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos >= self.chunk.len() {
            match self.recv_timeout(READ_POLL) {
                Ok(c) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                Err(Recv::Timeout) => return Err(std::io::ErrorKind::Interrupted.into()),
                Err(Recv::Closed) => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(n: u8) -> Chunk {
        let mut p = vec![n; 188];
        p[0] = 0x47;
        Chunk::from(p)
    }

    #[test]
    fn every_reader_gets_every_chunk_in_order() {
        let hub = Hub::new("cam1");
        let a = hub.reader("record", 64);
        let b = hub.reader("restream", 64);
        for i in 0..50 {
            hub.deliver(packet(i));
        }
        for r in [&a, &b] {
            for i in 0..50 {
                assert_eq!(r.recv_timeout(Duration::ZERO).unwrap(), packet(i));
            }
            assert_eq!(r.recv_timeout(Duration::ZERO), Err(Recv::Timeout));
        }
        assert_eq!(hub.received(), (50, 50 * 188));
    }

    #[test]
    fn a_stuck_reader_drops_and_stalls_no_one() {
        let hub = Hub::new("cam1");
        let stuck = hub.reader("stuck", 4);
        let live = hub.reader("live", 1000);
        // The stuck reader never reads; delivery returns every time (it never blocks), and
        // the other reader sees every chunk.
        for i in 0..1000u32 {
            hub.deliver(packet((i % 251) as u8));
        }
        for i in 0..1000u32 {
            assert_eq!(
                live.recv_timeout(Duration::ZERO).unwrap(),
                packet((i % 251) as u8)
            );
        }
        assert_eq!(stuck.dropped(), 996);
        assert_eq!(live.dropped(), 0);
        let stats = hub.readers();
        assert_eq!(stats[0].name, "stuck");
        assert_eq!((stats[0].queued, stats[0].dropped), (4, 996));
        assert_eq!((stats[1].delivered, stats[1].dropped), (1000, 0));
        // What the stuck reader kept is the oldest, in order.
        for i in 0..4 {
            assert_eq!(stuck.recv_timeout(Duration::ZERO).unwrap(), packet(i));
        }
    }

    #[test]
    fn a_stuck_reader_on_another_thread_does_not_hold_the_source() {
        let hub = Hub::new("cam1");
        let stuck = hub.reader("stuck", 2);
        let fast = hub.reader("fast", 8);
        let (got_tx, got_rx) = crossbeam_channel::unbounded();
        let reading = std::thread::spawn(move || {
            let mut n = 0u32;
            while let Ok(c) = fast.recv_timeout(Duration::from_secs(10)) {
                assert_eq!(c, packet((n % 251) as u8));
                n += 1;
                got_tx.send(n).unwrap();
            }
            n
        });
        // Each chunk waits for the fast reader to take it, so none is lost to its small queue.
        for i in 0..300u32 {
            hub.deliver(packet((i % 251) as u8));
            assert_eq!(got_rx.recv_timeout(Duration::from_secs(10)).unwrap(), i + 1);
        }
        hub.close();
        assert_eq!(reading.join().unwrap(), 300);
        assert_eq!(stuck.dropped(), 298);
    }

    #[test]
    fn health_readers_leaving_and_the_end() {
        let hub = Hub::new("cam1");
        assert_eq!(hub.since_last(), None);
        let mut r = hub.reader("probe", 8);
        let gone = hub.reader("gone", 8);
        drop(gone);
        hub.deliver(packet(1));
        assert!(hub.since_last().unwrap() < Duration::from_secs(5));
        assert_eq!(hub.readers().len(), 1, "a dropped reader is let go");
        hub.deliver(packet(2));
        hub.close();
        hub.deliver(packet(3));
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 2 * 188);
        assert_eq!(&all[188..], &packet(2)[..]);
        let late = hub.reader("late", 8);
        assert_eq!(late.recv_timeout(Duration::ZERO), Err(Recv::Closed));
    }

    #[test]
    fn reading_an_idle_hub_is_interrupted_not_ended() {
        let hub = Hub::new("cam1");
        let mut r = hub.reader("probe", 8);
        let mut buf = [0u8; 10];
        let e = r.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted);
    }
}
