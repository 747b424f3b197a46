//! MPEG-TS out over UDP or RTP, unicast or multicast (with a TTL and an optional interface):
//! chunks queue (bounded: a full queue drops and counts, `deliver` never blocks) and leave in
//! datagrams of 7 × 188 bytes, a shorter one only when the queue runs dry. With RTP each datagram
//! carries a version-2 header, payload type 33 (MP2T), consecutive sequence numbers and a 90 kHz
//! timestamp from the sending clock.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::link::{Chunk, ChunkSink, Link, LinkCounters, LinkState, LinkStats, TS_PACKET};

/// TS packets per datagram (7 × 188 = 1316 bytes fit an Ethernet MTU with IP/UDP/RTP headers).
pub const PACKETS_PER_DATAGRAM: usize = 7;
/// How long a partly filled datagram waits for more before it leaves.
const LINGER: Duration = Duration::from_millis(5);
/// RTP payload type of MPEG-TS (RFC 3551).
const PT_MP2T: u8 = 33;

#[derive(Debug, thiserror::Error)]
pub enum UdpOutError {
    #[error("udp output to {dest}: cannot open the socket: {source}")]
    Socket {
        dest: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
}

#[derive(Debug, Clone, PartialEq)]
pub struct UdpOutputSpec {
    pub dest: SocketAddr,
    /// Hops for multicast (and the unicast TTL); `None`: the system default (1 for multicast).
    pub ttl: Option<u32>,
    /// The local interface address multicast leaves from.
    pub interface: Option<IpAddr>,
    pub rtp: bool,
    /// Chunks the queue holds before it drops.
    pub queue: usize,
}

/// A running UDP/RTP sender: a [`ChunkSink`] and a [`Link`].
pub struct UdpOutput {
    tx: Sender<Chunk>,
    counters: Arc<LinkCounters>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl UdpOutput {
    pub fn start(spec: UdpOutputSpec) -> Result<UdpOutput, UdpOutError> {
        let dest = spec.dest;
        let err = |e| UdpOutError::Socket { dest, source: e };
        let local: SocketAddr = match (dest.ip(), spec.interface) {
            (IpAddr::V4(_), Some(i @ IpAddr::V4(_))) => (i, 0).into(),
            (IpAddr::V4(_), _) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            (IpAddr::V6(_), _) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let sock = UdpSocket::bind(local).map_err(err)?;
        if let Some(ttl) = spec.ttl {
            if dest.ip().is_multicast() {
                match dest.ip() {
                    IpAddr::V4(_) => sock.set_multicast_ttl_v4(ttl).map_err(err)?,
                    IpAddr::V6(_) => socket2::SockRef::from(&sock)
                        .set_multicast_hops_v6(ttl)
                        .map_err(err)?,
                }
            } else {
                sock.set_ttl(ttl).map_err(err)?;
            }
        }
        if let (IpAddr::V4(_), Some(IpAddr::V4(i))) = (dest.ip(), spec.interface) {
            if dest.ip().is_multicast() {
                socket2::SockRef::from(&sock)
                    .set_multicast_if_v4(&i)
                    .map_err(err)?;
            }
        }
        let (tx, rx) = bounded(spec.queue.max(1));
        let counters = Arc::new(LinkCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counters.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("udp-out {dest}"))
            .spawn(move || send(sock, spec, rx, c, s))
            .map_err(UdpOutError::Thread)?;
        counters.set_state(LinkState::Live);
        Ok(UdpOutput {
            tx,
            counters,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }
}

impl ChunkSink for UdpOutput {
    fn deliver(&self, chunk: Chunk) {
        if self.stop.load(Ordering::Relaxed) {
            return;
        }
        let packets = (chunk.len() / TS_PACKET) as u64;
        if let Err(TrySendError::Full(_)) = self.tx.try_send(chunk) {
            self.counters.dropped(packets);
        }
    }
}

impl Link for UdpOutput {
    fn stats(&self) -> LinkStats {
        self.counters.snapshot()
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
        self.counters.set_state(LinkState::Stopped);
    }
}

impl Drop for UdpOutput {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Builds the RTP datagrams: header, then the TS packets.
pub struct RtpWrapper {
    seq: u16,
    ssrc: u32,
    ts_base: u32,
    start: Instant,
}

impl RtpWrapper {
    pub fn new() -> RtpWrapper {
        RtpWrapper {
            seq: rand::random(),
            ssrc: rand::random(),
            ts_base: rand::random(),
            start: Instant::now(),
        }
    }

    /// The datagram for `payload`, sent now.
    pub fn wrap(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let ticks = (self.start.elapsed().as_micros() * 9 / 100) as u32;
        out.clear();
        out.extend_from_slice(&[0x80, PT_MP2T]);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.ts_base.wrapping_add(ticks).to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
    }
}

impl Default for RtpWrapper {
    fn default() -> Self {
        RtpWrapper::new()
    }
}

fn send(
    sock: UdpSocket,
    spec: UdpOutputSpec,
    rx: Receiver<Chunk>,
    counters: Arc<LinkCounters>,
    stop: Arc<AtomicBool>,
) {
    let full = PACKETS_PER_DATAGRAM * TS_PACKET;
    let mut pending: Vec<u8> = Vec::with_capacity(full * 4);
    let mut rtp = spec.rtp.then(RtpWrapper::new);
    let mut datagram = Vec::with_capacity(full + 12);
    let mut flush = |bytes: &[u8]| {
        let out = match rtp.as_mut() {
            Some(w) => {
                w.wrap(bytes, &mut datagram);
                &datagram[..]
            }
            None => bytes,
        };
        match sock.send_to(out, spec.dest) {
            Ok(_) => counters.sent(bytes.len(), (bytes.len() / TS_PACKET) as u64),
            Err(e) => {
                counters.dropped((bytes.len() / TS_PACKET) as u64);
                counters.error(format!("send to {}: {e}", spec.dest));
            }
        }
    };
    while !stop.load(Ordering::Acquire) {
        let wait = if pending.is_empty() {
            Duration::from_millis(50)
        } else {
            LINGER
        };
        match rx.recv_timeout(wait) {
            Ok(c) => {
                // Only whole packets go out; a chunk that is not is the sender's bug, dropped.
                if !c.len().is_multiple_of(TS_PACKET) {
                    counters.packets_malformed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                pending.extend_from_slice(&c);
                let whole = pending.len() / full * full;
                for d in pending[..whole].chunks(full) {
                    flush(d);
                }
                pending.drain(..whole);
            }
            Err(RecvTimeoutError::Timeout) => {
                if !pending.is_empty() {
                    flush(&pending);
                    pending.clear();
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_of_seven_packets_and_rtp_headers() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let out = UdpOutput::start(UdpOutputSpec {
            dest: rx.local_addr().unwrap(),
            ttl: Some(4),
            interface: None,
            rtp: true,
            queue: 100,
        })
        .unwrap();
        let mut want = Vec::new();
        for i in 0..10u8 {
            let mut p = vec![i; TS_PACKET];
            p[0] = 0x47;
            want.extend_from_slice(&p);
            out.deliver(Chunk::from(p));
        }
        let mut buf = [0u8; 2000];
        let mut got = Vec::new();
        let mut seqs = Vec::new();
        let mut sizes = Vec::new();
        while got.len() < want.len() {
            let n = rx.recv(&mut buf).unwrap();
            let d = &buf[..n];
            assert_eq!((d[0], d[1]), (0x80, 33));
            seqs.push(u16::from_be_bytes([d[2], d[3]]));
            sizes.push(n - 12);
            got.extend_from_slice(&d[12..]);
        }
        assert_eq!(got, want);
        assert_eq!(sizes, [7 * 188, 3 * 188]);
        assert_eq!(seqs[1], seqs[0].wrapping_add(1));
        out.stop();
        assert_eq!(out.stats().packets_sent, 10);
    }
}
