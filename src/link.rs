//! Live links: how MPEG-TS bytes move between a transport (SRT, UDP/RTP, RTMP, a looped file)
//! and the stream hub, and what every link reports. The contract the live pieces meet at:
//! `ingest` transports deliver [`Chunk`]s to a [`ChunkSink`] (the hub), `output` transports are
//! [`ChunkSink`]s fed by the hub or a live pipeline, and both report [`LinkStats`] through
//! [`LinkCounters`].
//!
//! Pure value types: imports nothing of the domain, no runtime, no libav, no SQL.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

/// Whole 188-byte TS packets, in order (a UDP datagram's payload, an SRT message).
pub type Chunk = bytes::Bytes;

/// Size of one MPEG-TS packet.
pub const TS_PACKET: usize = 188;

/// Where a link hands its chunks. `deliver` must not block: a receiver that cannot keep up
/// drops (and counts) rather than stalling the transport that calls it.
pub trait ChunkSink: Send + Sync {
    fn deliver(&self, chunk: Chunk);
}

impl<F: Fn(Chunk) + Send + Sync> ChunkSink for F {
    fn deliver(&self, chunk: Chunk) {
        self(chunk)
    }
}

/// A running transport (an input feeding the hub, an output fed by it).
pub trait Link: Send + Sync {
    fn stats(&self) -> LinkStats;
    /// Stops the transport and releases its socket; idempotent.
    fn stop(&self);
}

/// The state of a source or an output as operators see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    #[default]
    Connecting,
    Live,
    Lost,
    Failover,
    Stopped,
}

impl LinkState {
    fn code(self) -> u8 {
        match self {
            LinkState::Connecting => 0,
            LinkState::Live => 1,
            LinkState::Lost => 2,
            LinkState::Failover => 3,
            LinkState::Stopped => 4,
        }
    }

    fn from_code(code: u8) -> LinkState {
        match code {
            1 => LinkState::Live,
            2 => LinkState::Lost,
            3 => LinkState::Failover,
            4 => LinkState::Stopped,
            _ => LinkState::Connecting,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Live => "live",
            LinkState::Lost => "lost",
            LinkState::Failover => "failover",
            LinkState::Stopped => "stopped",
        }
    }
}

/// What a link reports. Transport-specific figures are `None` where the transport has none
/// (no RTT on UDP).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkStats {
    pub state: LinkState,
    pub bytes: u64,
    pub packets_received: u64,
    pub packets_sent: u64,
    /// Lost on the wire before any recovery (SRT: sequence gaps seen).
    pub packets_lost: u64,
    pub packets_retransmitted: u64,
    /// Never delivered: not recovered in time, or a queue that was full.
    pub packets_dropped: u64,
    pub packets_undecrypted: u64,
    /// Datagrams or messages that were not MPEG-TS (wrong size, no sync byte, a bad RTP
    /// header): counted and dropped, the feed goes on.
    #[serde(default)]
    pub packets_malformed: u64,
    /// Handshakes or connections refused (wrong passphrase, wrong key, unknown stream ID).
    pub refused: u64,
    /// Bits per second over the last measuring window.
    pub bitrate_bps: u64,
    pub rtt_ms: Option<f64>,
    pub buffer_ms: Option<f64>,
    /// Seconds since the link last became live.
    pub uptime_s: Option<f64>,
    pub last_error: Option<String>,
    /// When that error happened (RFC 3339).
    pub last_error_at: Option<String>,
    /// Segment transports (HLS pull): segments fetched and failed; absent on the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments_fetched: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments_failed: Option<u64>,
}

/// Lock-free counters a transport updates from its own thread or task; `snapshot` makes the
/// [`LinkStats`] the API and `/metrics` show.
#[derive(Debug)]
pub struct LinkCounters {
    state: AtomicU8,
    pub bytes: AtomicU64,
    pub packets_received: AtomicU64,
    pub packets_sent: AtomicU64,
    pub packets_lost: AtomicU64,
    pub packets_retransmitted: AtomicU64,
    pub packets_dropped: AtomicU64,
    pub packets_undecrypted: AtomicU64,
    pub packets_malformed: AtomicU64,
    pub refused: AtomicU64,
    segments_fetched: AtomicU64,
    segments_failed: AtomicU64,
    rtt_us: AtomicU64,
    buffer_us: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    live_since: Option<Instant>,
    window_start: Instant,
    window_bytes_at_start: u64,
    bitrate_bps: u64,
    last_error: Option<(String, SystemTime)>,
}

/// How long the bitrate is averaged over.
const RATE_WINDOW_S: f64 = 1.0;
/// `rtt_us`/`buffer_us` holding this mean "not measured".
const UNSET: u64 = u64::MAX;

impl Default for LinkCounters {
    fn default() -> Self {
        LinkCounters {
            state: AtomicU8::new(LinkState::Connecting.code()),
            bytes: AtomicU64::new(0),
            packets_received: AtomicU64::new(0),
            packets_sent: AtomicU64::new(0),
            packets_lost: AtomicU64::new(0),
            packets_retransmitted: AtomicU64::new(0),
            packets_dropped: AtomicU64::new(0),
            packets_undecrypted: AtomicU64::new(0),
            packets_malformed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            segments_fetched: AtomicU64::new(0),
            segments_failed: AtomicU64::new(0),
            rtt_us: AtomicU64::new(UNSET),
            buffer_us: AtomicU64::new(UNSET),
            inner: Mutex::new(Inner {
                live_since: None,
                window_start: Instant::now(),
                window_bytes_at_start: 0,
                bitrate_bps: 0,
                last_error: None,
            }),
        }
    }
}

impl LinkCounters {
    pub fn state(&self) -> LinkState {
        LinkState::from_code(self.state.load(Ordering::Relaxed))
    }

    /// Sets the state; becoming live starts the uptime clock, leaving it stops it.
    pub fn set_state(&self, state: LinkState) {
        let before = LinkState::from_code(self.state.swap(state.code(), Ordering::Relaxed));
        if before == state {
            return;
        }
        let mut inner = self.lock();
        inner.live_since = (state == LinkState::Live).then(Instant::now);
    }

    /// Counts `bytes` received in `packets` TS packets (or datagrams, as the transport counts).
    pub fn received(&self, bytes: usize, packets: u64) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.packets_received.fetch_add(packets, Ordering::Relaxed);
    }

    pub fn sent(&self, bytes: usize, packets: u64) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.packets_sent.fetch_add(packets, Ordering::Relaxed);
    }

    pub fn dropped(&self, packets: u64) {
        self.packets_dropped.fetch_add(packets, Ordering::Relaxed);
    }

    pub fn segment_fetched(&self) {
        self.segments_fetched.fetch_add(1, Ordering::Relaxed);
    }

    pub fn segment_failed(&self) {
        self.segments_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_rtt_ms(&self, ms: Option<f64>) {
        self.rtt_us.store(to_us(ms), Ordering::Relaxed);
    }

    pub fn set_buffer_ms(&self, ms: Option<f64>) {
        self.buffer_us.store(to_us(ms), Ordering::Relaxed);
    }

    /// Records the last error an operator should see (kept until the next one).
    pub fn error(&self, message: impl Into<String>) {
        self.lock().last_error = Some((message.into(), SystemTime::now()));
    }

    pub fn snapshot(&self) -> LinkStats {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let fetched = self.segments_fetched.load(Ordering::Relaxed);
        let failed = self.segments_failed.load(Ordering::Relaxed);
        let segments = fetched + failed > 0;
        let mut inner = self.lock();
        let elapsed = inner.window_start.elapsed().as_secs_f64();
        if elapsed >= RATE_WINDOW_S {
            let delta = bytes.saturating_sub(inner.window_bytes_at_start);
            inner.bitrate_bps = (delta as f64 * 8.0 / elapsed) as u64;
            inner.window_start = Instant::now();
            inner.window_bytes_at_start = bytes;
        }
        LinkStats {
            state: self.state(),
            bytes,
            packets_received: self.packets_received.load(Ordering::Relaxed),
            packets_sent: self.packets_sent.load(Ordering::Relaxed),
            packets_lost: self.packets_lost.load(Ordering::Relaxed),
            packets_retransmitted: self.packets_retransmitted.load(Ordering::Relaxed),
            packets_dropped: self.packets_dropped.load(Ordering::Relaxed),
            packets_undecrypted: self.packets_undecrypted.load(Ordering::Relaxed),
            packets_malformed: self.packets_malformed.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            bitrate_bps: inner.bitrate_bps,
            rtt_ms: from_us(self.rtt_us.load(Ordering::Relaxed)),
            buffer_ms: from_us(self.buffer_us.load(Ordering::Relaxed)),
            uptime_s: inner.live_since.map(|t| t.elapsed().as_secs_f64()),
            last_error: inner.last_error.as_ref().map(|(m, _)| m.clone()),
            last_error_at: inner.last_error.as_ref().map(|(_, at)| rfc3339(*at)),
            segments_fetched: segments.then_some(fetched),
            segments_failed: segments.then_some(failed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain numbers behind; they stay usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn to_us(ms: Option<f64>) -> u64 {
    match ms {
        Some(ms) if ms.is_finite() && ms >= 0.0 => (ms * 1000.0) as u64,
        _ => UNSET,
    }
}

fn from_us(us: u64) -> Option<f64> {
    (us != UNSET).then(|| us as f64 / 1000.0)
}

fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_make_a_snapshot() {
        let c = LinkCounters::default();
        assert_eq!(c.snapshot().state, LinkState::Connecting);
        assert_eq!(c.snapshot().uptime_s, None);
        c.set_state(LinkState::Live);
        c.received(1316, 7);
        c.dropped(2);
        c.set_rtt_ms(Some(12.5));
        c.error("peer closed");
        let s = c.snapshot();
        assert_eq!(s.state, LinkState::Live);
        assert_eq!(
            (s.bytes, s.packets_received, s.packets_dropped),
            (1316, 7, 2)
        );
        assert_eq!(s.rtt_ms, Some(12.5));
        assert_eq!(s.buffer_ms, None);
        assert!(s.uptime_s.is_some());
        assert_eq!(s.last_error.as_deref(), Some("peer closed"));
        c.set_state(LinkState::Lost);
        assert_eq!(c.snapshot().uptime_s, None);
    }

    #[test]
    fn closures_are_sinks() {
        let seen = std::sync::Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        let sink: Box<dyn ChunkSink> = Box::new(move |c: Chunk| {
            s.fetch_add(c.len() as u64, Ordering::Relaxed);
        });
        sink.deliver(Chunk::from_static(&[0x47; TS_PACKET]));
        assert_eq!(seen.load(Ordering::Relaxed), TS_PACKET as u64);
    }
}
