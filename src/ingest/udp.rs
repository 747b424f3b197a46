//! MPEG-TS over UDP and RTP, unicast or multicast (joined on an interface address): datagrams are
//! checked (whole 188-byte packets with their sync byte; for RTP a version-2 header, stripped),
//! held in a FIFO of `buffer_ms` that absorbs jitter (and, for RTP, puts reordered packets back
//! in sequence), then delivered to a [`ChunkSink`]. RTP sequence gaps count as `packets_lost`;
//! anything that is not TS counts as `packets_malformed` and is dropped. Never panics on input.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::link::{Chunk, ChunkSink, Link, LinkCounters, LinkState, LinkStats, TS_PACKET};

/// The longest a receive waits before looking at the stop flag.
const POLL: Duration = Duration::from_millis(50);
/// Datagrams the jitter FIFO holds at most, whatever `buffer_ms` says.
const MAX_QUEUED: usize = 20_000;
/// A jump in RTP sequence numbers this large is a restarted sender, not a loss.
const RESYNC_GAP: i64 = 3000;

#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    #[error("udp {addr}: cannot open the socket: {source}")]
    Socket {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("udp {addr}: cannot join the multicast group on {interface}: {source}")]
    Join {
        addr: SocketAddr,
        interface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("udp {addr}: {why}")]
    Invalid { addr: SocketAddr, why: String },
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Where and how to receive.
#[derive(Debug, Clone, PartialEq)]
pub struct UdpInputSpec {
    /// The port to listen on and the address: a local address (or `0.0.0.0`) for unicast, the
    /// group for multicast.
    pub address: SocketAddr,
    /// The local interface address a multicast group is joined on (default: the system's
    /// choice).
    pub interface: Option<IpAddr>,
    /// Datagrams carry an RTP header before the TS packets.
    pub rtp: bool,
    /// How long a datagram waits in the FIFO before delivery (0: at once).
    pub buffer_ms: u32,
}

/// A running UDP/RTP receiver.
pub struct UdpInput {
    counters: Arc<LinkCounters>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    local: SocketAddr,
}

impl UdpInput {
    /// Binds (joining the group for multicast) and starts receiving into `sink`.
    pub fn start(spec: UdpInputSpec, sink: Arc<dyn ChunkSink>) -> Result<UdpInput, UdpError> {
        let sock = bind(&spec)?;
        let local = sock.local_addr().map_err(|e| UdpError::Socket {
            addr: spec.address,
            source: e,
        })?;
        let counters = Arc::new(LinkCounters::default());
        counters.set_buffer_ms(Some(f64::from(spec.buffer_ms)));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counters.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("udp-in {local}"))
            .spawn(move || receive(sock, spec, sink, c, s))
            .map_err(UdpError::Thread)?;
        Ok(UdpInput {
            counters,
            stop,
            thread: Mutex::new(Some(thread)),
            local,
        })
    }

    /// The address actually bound (the port, when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Link for UdpInput {
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

impl Drop for UdpInput {
    fn drop(&mut self) {
        self.stop();
    }
}

fn bind(spec: &UdpInputSpec) -> Result<UdpSocket, UdpError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr = spec.address;
    let err = |e| UdpError::Socket { addr, source: e };
    let sock =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    let multicast = addr.ip().is_multicast();
    if multicast {
        // Several receivers of one group on this machine (a monitor beside the appliance).
        sock.set_reuse_address(true).map_err(err)?;
    }
    // Room for a burst while the thread is away (best effort: the kernel may cap it).
    let _ = sock.set_recv_buffer_size(4 << 20);
    sock.bind(&addr.into()).map_err(err)?;
    if multicast {
        let join = |e| UdpError::Join {
            addr,
            interface: spec
                .interface
                .map_or_else(|| "the default interface".into(), |i| i.to_string()),
            source: e,
        };
        match (addr.ip(), spec.interface) {
            (IpAddr::V4(g), Some(IpAddr::V4(i))) => sock.join_multicast_v4(&g, &i).map_err(join)?,
            (IpAddr::V4(g), None) => sock
                .join_multicast_v4(&g, &Ipv4Addr::UNSPECIFIED)
                .map_err(join)?,
            (IpAddr::V6(g), None) => sock.join_multicast_v6(&g, 0).map_err(join)?,
            (_, Some(i)) => {
                return Err(UdpError::Invalid {
                    addr,
                    why: format!("the interface {i} is not of the group's address family"),
                })
            }
        }
    }
    sock.set_read_timeout(Some(POLL)).map_err(err)?;
    Ok(sock.into())
}

/// The TS payload of an RTP packet and its sequence number, or `None` when it is no RTP.
pub fn rtp_payload(d: &[u8]) -> Option<(u16, &[u8])> {
    if d.len() < 12 || d[0] >> 6 != 2 {
        return None;
    }
    let padding = d[0] & 0x20 != 0;
    let extension = d[0] & 0x10 != 0;
    let csrc = usize::from(d[0] & 0x0f);
    let seq = u16::from_be_bytes([d[2], d[3]]);
    let mut start = 12 + 4 * csrc;
    if extension {
        let h = d.get(start..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([h[2], h[3]]));
    }
    let mut end = d.len();
    if padding {
        let pad = usize::from(*d.last()?);
        end = end.checked_sub(pad)?;
    }
    (start <= end).then(|| (seq, &d[start..end]))
}

/// Whole TS packets, each starting with its sync byte.
pub fn is_ts(p: &[u8]) -> bool {
    !p.is_empty() && p.len().is_multiple_of(TS_PACKET) && p.chunks(TS_PACKET).all(|c| c[0] == 0x47)
}

/// The FIFO between the socket and the sink: each datagram waits `delay` after it arrived, and
/// leaves in order (arrival order for UDP, sequence order for RTP).
pub struct Jitter {
    delay: Duration,
    rtp: bool,
    queue: BTreeMap<u64, (Instant, Chunk)>,
    arrivals: u64,
    /// The extended RTP sequence number most recently seen (largest).
    highest: Option<u64>,
    /// The extended sequence number the next datagram out should have.
    expected: Option<u64>,
}

/// What the FIFO did with one datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    Queued,
    /// Arrived after its place was passed (or twice): dropped.
    Late,
}

impl Jitter {
    pub fn new(delay: Duration, rtp: bool) -> Jitter {
        Jitter {
            delay,
            rtp,
            queue: BTreeMap::new(),
            arrivals: 0,
            highest: None,
            expected: None,
        }
    }

    /// Takes a datagram's TS payload (`seq`: its RTP sequence number).
    pub fn push(&mut self, now: Instant, seq: Option<u16>, payload: Chunk) -> Taken {
        let key = match (self.rtp, seq) {
            (true, Some(seq)) => {
                let ext = match self.highest {
                    None => (1u64 << 32) + u64::from(seq),
                    Some(h) => {
                        let diff = i64::from(seq.wrapping_sub(h as u16) as i16);
                        if diff.abs() > RESYNC_GAP {
                            // A restarted sender: a new numbering, nothing lost.
                            self.expected = None;
                            h.wrapping_add(1 << 20) & !0xffff | u64::from(seq)
                        } else {
                            h.wrapping_add_signed(diff)
                        }
                    }
                };
                if self.expected.is_some_and(|e| ext < e) || self.queue.contains_key(&ext) {
                    return Taken::Late;
                }
                self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
                // The first, or the first after a resync: the count starts here.
                self.expected.get_or_insert(ext);
                ext
            }
            _ => {
                self.arrivals += 1;
                self.arrivals
            }
        };
        self.queue.insert(key, (now, payload));
        Taken::Queued
    }

    /// Datagrams whose time has come, in order, and how many RTP packets went missing before
    /// them.
    pub fn due(&mut self, now: Instant, mut out: impl FnMut(Chunk)) -> u64 {
        let mut lost = 0;
        loop {
            let over = self.queue.len() > MAX_QUEUED;
            let Some(entry) = self.queue.first_entry() else {
                break;
            };
            let (arrived, _) = entry.get();
            if *arrived + self.delay > now && !over {
                break;
            }
            let key = *entry.key();
            let (_, chunk) = entry.remove();
            if self.rtp {
                let e = self.expected.unwrap_or(key);
                lost += key.saturating_sub(e);
                self.expected = Some(e.max(key + 1));
            }
            out(chunk);
        }
        lost
    }

    /// When the next datagram is due, if one waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue
            .first_key_value()
            .map(|(_, (t, _))| *t + self.delay)
    }
}

fn receive(
    sock: UdpSocket,
    spec: UdpInputSpec,
    sink: Arc<dyn ChunkSink>,
    counters: Arc<LinkCounters>,
    stop: Arc<AtomicBool>,
) {
    let mut jitter = Jitter::new(Duration::from_millis(u64::from(spec.buffer_ms)), spec.rtp);
    let mut buf = vec![0u8; 65_536];
    let mut timeout = POLL;
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        let wait = jitter
            .next_due()
            .map_or(POLL, |t| t.saturating_duration_since(now))
            .clamp(Duration::from_millis(1), POLL);
        if wait != timeout && sock.set_read_timeout(Some(wait)).is_ok() {
            timeout = wait;
        }
        match sock.recv(&mut buf) {
            Ok(n) => take(&buf[..n], &spec, &mut jitter, &counters),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                counters.error(format!("receive: {e}"));
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let lost = jitter.due(Instant::now(), |c| sink.deliver(c));
        if lost > 0 {
            counters.packets_lost.fetch_add(lost, Ordering::Relaxed);
        }
    }
}

fn take(d: &[u8], spec: &UdpInputSpec, jitter: &mut Jitter, counters: &LinkCounters) {
    let (seq, payload) = if spec.rtp {
        match rtp_payload(d) {
            Some((seq, p)) => (Some(seq), p),
            None => {
                counters.packets_malformed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    } else {
        (None, d)
    };
    if !is_ts(payload) {
        counters.packets_malformed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let packets = (payload.len() / TS_PACKET) as u64;
    counters.received(payload.len(), packets);
    if counters.state() != LinkState::Live {
        counters.set_state(LinkState::Live);
    }
    if jitter.push(Instant::now(), seq, Chunk::copy_from_slice(payload)) == Taken::Late {
        counters.dropped(packets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(n: usize, fill: u8) -> Vec<u8> {
        let mut v = vec![fill; n * TS_PACKET];
        for c in v.chunks_mut(TS_PACKET) {
            c[0] = 0x47;
        }
        v
    }

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x80, 33];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn ts_and_rtp_are_recognised_and_garbage_is_not() {
        assert!(is_ts(&ts(7, 1)));
        assert!(!is_ts(&[]));
        assert!(!is_ts(&ts(7, 1)[..1000]));
        let mut bad = ts(2, 1);
        bad[188] = 0;
        assert!(!is_ts(&bad));
        let p = ts(7, 2);
        let d = rtp(513, &p);
        let (seq, payload) = rtp_payload(&d).unwrap();
        assert_eq!((seq, payload), (513, &p[..]));
        assert_eq!(rtp_payload(&p), None, "a TS datagram is no RTP");
        assert_eq!(rtp_payload(&[0x80; 5]), None);
        // An extension longer than the datagram, padding longer than it: refused, no panic.
        assert_eq!(
            rtp_payload(&[0x90, 33, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]),
            None
        );
        let mut padded = rtp(1, &[0x47; 10]);
        padded[0] |= 0x20;
        *padded.last_mut().unwrap() = 200;
        assert_eq!(rtp_payload(&padded), None);
    }

    proptest::proptest! {
        #[test]
        fn any_datagram_is_taken_or_refused_without_panic(
            d in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000),
            seq in proptest::prelude::any::<u16>(),
        ) {
            let spec = UdpInputSpec {
                address: "127.0.0.1:0".parse().unwrap(),
                interface: None,
                rtp: true,
                buffer_ms: 0,
            };
            let c = LinkCounters::default();
            let mut j = Jitter::new(Duration::ZERO, true);
            take(&d, &spec, &mut j, &c);
            let mut rtp = d.clone();
            if rtp.len() >= 4 {
                rtp[0] = 0x80;
                rtp[2..4].copy_from_slice(&seq.to_be_bytes());
            }
            take(&rtp, &spec, &mut j, &c);
            j.due(Instant::now(), |_| {});
            let ok = |x: &[u8]| rtp_payload(x).is_some_and(|(_, p)| is_ts(p));
            let accepted = u64::from(ok(&d)) + u64::from(ok(&rtp));
            proptest::prop_assert_eq!(c.snapshot().packets_malformed, 2 - accepted);
        }
    }

    #[test]
    fn the_fifo_holds_for_its_delay_and_keeps_order() {
        let t0 = Instant::now();
        let mut j = Jitter::new(Duration::from_millis(100), false);
        for i in 0..3u8 {
            j.push(
                t0 + Duration::from_millis(u64::from(i)),
                None,
                Chunk::from(vec![i]),
            );
        }
        let mut out = Vec::new();
        j.due(t0 + Duration::from_millis(50), |c| out.push(c[0]));
        assert!(out.is_empty());
        assert_eq!(j.next_due(), Some(t0 + Duration::from_millis(100)));
        j.due(t0 + Duration::from_millis(101), |c| out.push(c[0]));
        assert_eq!(out, [0, 1]);
        j.due(t0 + Duration::from_millis(200), |c| out.push(c[0]));
        assert_eq!(out, [0, 1, 2]);
    }

    #[test]
    fn rtp_is_put_back_in_order_and_gaps_are_counted() {
        let t0 = Instant::now();
        let mut j = Jitter::new(Duration::from_millis(20), true);
        // 65534, 65535 wrap to 0, 1; 1 arrives before 0; 2 and 3 never arrive.
        for seq in [65534u16, 65535, 1, 0, 4, 5] {
            assert_eq!(
                j.push(t0, Some(seq), Chunk::from(seq.to_be_bytes().to_vec())),
                Taken::Queued
            );
        }
        let mut out = Vec::new();
        let lost = j.due(t0 + Duration::from_millis(20), |c| {
            out.push(u16::from_be_bytes([c[0], c[1]]))
        });
        assert_eq!(out, [65534, 65535, 0, 1, 4, 5]);
        assert_eq!(lost, 2);
        // 3 arriving now is too late; 5 again is a duplicate.
        assert_eq!(j.push(t0, Some(3), Chunk::from(vec![0, 3])), Taken::Late);
        assert_eq!(j.push(t0, Some(5), Chunk::from(vec![0, 5])), Taken::Late);
        // A restarted sender: a far number starts a new count, nothing lost.
        j.push(t0, Some(30000), Chunk::from(vec![1, 2]));
        j.push(t0, Some(30001), Chunk::from(vec![1, 3]));
        assert_eq!(j.due(t0 + Duration::from_secs(1), |_| {}), 0);
    }

    #[test]
    fn garbage_and_a_real_feed_over_a_socket() {
        let got = Arc::new(Mutex::new(Vec::<u8>::new()));
        let g = got.clone();
        let input = UdpInput::start(
            UdpInputSpec {
                address: "127.0.0.1:0".parse().unwrap(),
                interface: None,
                rtp: false,
                buffer_ms: 0,
            },
            Arc::new(move |c: Chunk| g.lock().unwrap().extend_from_slice(&c)),
        )
        .unwrap();
        let to = input.local_addr();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut want = Vec::new();
        // Garbage before each real datagram: when the last real one is out, all was seen.
        tx.send_to(&[], to).unwrap();
        for i in 0..20u8 {
            tx.send_to(&[i; 100], to).unwrap();
            let d = ts(7, i);
            tx.send_to(&d, to).unwrap();
            want.extend_from_slice(&d);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.lock().unwrap().len() < want.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        input.stop();
        assert!(*got.lock().unwrap() == want);
        let s = input.stats();
        assert_eq!(s.packets_received, 140);
        assert_eq!(s.packets_malformed, 21);
        assert_eq!(s.state, LinkState::Stopped);
    }
}
