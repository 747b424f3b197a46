//! RTMP listener: encoders (OBS, ffmpeg) push `rtmp://appliance:PORT/<app>/<key>`. A small RTMP
//! server of our own (handshake, de-chunking, the AMF0 commands a publisher sends) so that the
//! stream key is checked, and the publisher routed to its source, before any media is taken: one
//! port serves every source bound to it, each under its own key. An accepted publisher's audio and
//! video messages become FLV tags, remuxed to MPEG-TS by the engine (no decode) and delivered to
//! the source's sink. A wrong key, or a key already publishing, is refused at `publish` (the
//! connection closed), logged, and counted in `refused` of every source on that port.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::av::io::ByteSource;
use crate::av::remux::{remux_stream, RemuxTarget};
use crate::link::{ChunkSink, Link, LinkCounters, LinkState, LinkStats};

use super::looped::TsWriter;

/// How often a blocked accept or read looks at its stop flag.
const POLL: Duration = Duration::from_millis(200);
/// The handshake and the commands up to `publish` must be done within this.
const SETUP: Duration = Duration::from_secs(10);
/// A publisher silent this long is gone.
const IDLE: Duration = Duration::from_secs(10);
/// Connections served at once on one port; more are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// Chunk streams one connection may have open at once.
const MAX_CHUNK_STREAMS: usize = 64;
/// The largest message taken (the 24-bit length field allows 16 MiB).
const MAX_MESSAGE: usize = 16 << 20;
/// Nesting depth of AMF0 values taken from a peer.
const MAX_DEPTH: usize = 8;
const HANDSHAKE: usize = 1536;
/// The chunk size we send with.
const OUT_CHUNK: usize = 4096;
/// FLV tags queued towards the remux before the publisher is held back.
const FLV_QUEUE: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum RtmpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("stream key {0:?} is already taken on this port by another source")]
    KeyTaken(String),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("stopped")]
    Stopped,
}

fn protocol(why: impl Into<String>) -> RtmpError {
    RtmpError::Protocol(why.into())
}

/// What a source asks of the listener.
#[derive(Debug, Clone)]
pub struct RtmpInputSpec {
    /// The local address and port encoders connect to.
    pub address: SocketAddr,
    /// The stream key (the last path element of the URL).
    pub key: String,
}

/// A source registered with a listener under its key.
struct Route {
    key: String,
    sink: Arc<dyn ChunkSink>,
    counters: Arc<LinkCounters>,
    /// Set while a publisher is on this key.
    busy: Arc<AtomicBool>,
    /// Set when the source stops: its publisher is dropped.
    stop: Arc<AtomicBool>,
}

/// One listening port, shared by the sources bound to it.
struct Listener {
    addr: SocketAddr,
    routes: Mutex<Vec<Route>>,
    connections: AtomicUsize,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The listeners by address; a listener lives as long as a source holds it.
static LISTENERS: Mutex<Vec<(SocketAddr, Weak<Listener>)>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Equal keys, in time independent of where they differ.
fn same_key(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

impl Listener {
    fn get_or_bind(addr: SocketAddr) -> Result<Arc<Listener>, RtmpError> {
        let mut all = lock(&LISTENERS);
        all.retain(|(_, w)| w.strong_count() > 0);
        if let Some(l) = all
            .iter()
            .find(|(a, _)| *a == addr)
            .and_then(|(_, w)| w.upgrade())
        {
            return Ok(l);
        }
        let sock = TcpListener::bind(addr).map_err(|source| RtmpError::Bind { addr, source })?;
        sock.set_nonblocking(true)
            .map_err(|source| RtmpError::Bind { addr, source })?;
        let l = Arc::new(Listener {
            addr,
            routes: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            stop: Arc::new(AtomicBool::new(false)),
            thread: Mutex::new(None),
        });
        let weak = Arc::downgrade(&l);
        let stop = l.stop.clone();
        let t = std::thread::Builder::new()
            .name("rtmp-listen".into())
            .spawn(move || accept_loop(sock, weak, stop))
            .map_err(|source| RtmpError::Bind { addr, source })?;
        *lock(&l.thread) = Some(t);
        all.push((addr, Arc::downgrade(&l)));
        Ok(l)
    }

    /// Counts a refused publisher on every source of this port.
    fn refused(&self, why: &str) {
        for r in lock(&self.routes).iter() {
            r.counters.refused.fetch_add(1, Ordering::Relaxed);
            r.counters.error(why.to_string());
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let t = lock(&self.thread).take();
        if let Some(t) = t {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

fn accept_loop(sock: TcpListener, listener: Weak<Listener>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match sock.accept() {
            Ok((conn, peer)) => {
                let Some(l) = listener.upgrade() else { return };
                if l.connections.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
                    l.connections.fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!(addr = %l.addr, %peer, "rtmp: too many connections, closed");
                    continue;
                }
                let weak = listener.clone();
                let spawned =
                    std::thread::Builder::new()
                        .name("rtmp-conn".into())
                        .spawn(move || {
                            if let Err(e) = serve(conn, peer, &weak) {
                                tracing::debug!(%peer, error = %e, "rtmp: connection ended");
                            }
                            if let Some(l) = weak.upgrade() {
                                l.connections.fetch_sub(1, Ordering::Relaxed);
                            }
                        });
                if spawned.is_err() {
                    l.connections.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL / 4),
            Err(e) => {
                tracing::warn!(error = %e, "rtmp: accept");
                std::thread::sleep(POLL);
            }
        }
    }
}

/// A running RTMP source: its route on a (possibly shared) listener.
pub struct RtmpInput {
    listener: Arc<Listener>,
    counters: Arc<LinkCounters>,
    stop: Arc<AtomicBool>,
}

impl RtmpInput {
    pub fn start(spec: RtmpInputSpec, sink: Arc<dyn ChunkSink>) -> Result<RtmpInput, RtmpError> {
        let listener = Listener::get_or_bind(spec.address)?;
        let counters = Arc::new(LinkCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        {
            let mut routes = lock(&listener.routes);
            if routes.iter().any(|r| same_key(&r.key, &spec.key)) {
                return Err(RtmpError::KeyTaken(spec.key));
            }
            routes.push(Route {
                key: spec.key.clone(),
                sink,
                counters: counters.clone(),
                busy: Arc::new(AtomicBool::new(false)),
                stop: stop.clone(),
            });
        }
        Ok(RtmpInput {
            listener,
            counters,
            stop,
        })
    }
}

impl Link for RtmpInput {
    fn stats(&self) -> LinkStats {
        self.counters.snapshot()
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        lock(&self.listener.routes).retain(|r| !Arc::ptr_eq(&r.stop, &self.stop));
        self.counters.set_state(LinkState::Stopped);
    }
}

impl Drop for RtmpInput {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Bytes from the peer, with the deadlines and stop flags looked at while waiting.
struct Peer<S> {
    s: S,
    deadline: Instant,
    idle: Duration,
    stop: Option<Arc<AtomicBool>>,
    /// Received since the last acknowledgement.
    unacked: u64,
    total: u64,
}

impl<S: Read + Write> Peer<S> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), RtmpError> {
        let mut got = 0;
        while got < buf.len() {
            if self
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Relaxed))
            {
                return Err(RtmpError::Stopped);
            }
            match self.s.read(&mut buf[got..]) {
                Ok(0) => return Err(RtmpError::Io(ErrorKind::UnexpectedEof.into())),
                Ok(n) => {
                    got += n;
                    self.unacked += n as u64;
                    self.total += n as u64;
                    self.deadline = self.deadline.max(Instant::now() + self.idle);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    if Instant::now() >= self.deadline {
                        return Err(RtmpError::Timeout("waiting for the peer"));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn byte(&mut self) -> Result<u8, RtmpError> {
        let mut b = [0u8; 1];
        self.read_exact(&mut b)?;
        Ok(b[0])
    }
}

/// One chunk stream's state: the last header seen and the message being assembled.
#[derive(Default)]
struct ChunkStream {
    timestamp: u32,
    delta: u32,
    length: usize,
    kind: u8,
    stream: u32,
    extended: bool,
    body: Vec<u8>,
}

/// A whole message.
struct Message {
    kind: u8,
    timestamp: u32,
    stream: u32,
    body: Vec<u8>,
}

/// The RTMP session over a byte stream: de-chunking in, chunking out.
struct Session<S> {
    peer: Peer<S>,
    in_chunk: usize,
    streams: HashMap<u32, ChunkStream>,
    window: u32,
}

impl<S: Read + Write> Session<S> {
    fn new(s: S, setup: Duration) -> Session<S> {
        Session {
            peer: Peer {
                s,
                deadline: Instant::now() + setup,
                idle: Duration::ZERO,
                stop: None,
                unacked: 0,
                total: 0,
            },
            in_chunk: 128,
            streams: HashMap::new(),
            window: 0,
        }
    }

    /// C0/C1 in, S0/S1/S2 out, C2 in. The simple handshake: S2 echoes C1, and what the peer
    /// sends in C2 is not held against it.
    fn handshake(&mut self) -> Result<(), RtmpError> {
        let version = self.peer.byte()?;
        if version != 3 {
            return Err(protocol(format!(
                "RTMP version {version} (only 3 is served)"
            )));
        }
        let mut c1 = vec![0u8; HANDSHAKE];
        self.peer.read_exact(&mut c1)?;
        let mut out = Vec::with_capacity(1 + 2 * HANDSHAKE);
        out.push(3);
        let mut s1 = vec![0u8; HANDSHAKE];
        rand::Rng::fill(&mut rand::thread_rng(), &mut s1[8..]);
        s1[..8].fill(0);
        out.extend_from_slice(&s1);
        out.extend_from_slice(&c1);
        self.peer.s.write_all(&out)?;
        let mut c2 = vec![0u8; HANDSHAKE];
        self.peer.read_exact(&mut c2)
    }

    /// The next whole message, answering protocol control messages on the way.
    fn message(&mut self) -> Result<Message, RtmpError> {
        loop {
            let b = self.peer.byte()?;
            let fmt = b >> 6;
            let csid = match b & 0x3f {
                0 => 64 + self.peer.byte()? as u32,
                1 => {
                    let lo = self.peer.byte()? as u32;
                    64 + lo + 256 * self.peer.byte()? as u32
                }
                n => n as u32,
            };
            if !self.streams.contains_key(&csid) {
                if fmt != 0 {
                    return Err(protocol(format!(
                        "chunk stream {csid} starts without a full header"
                    )));
                }
                if self.streams.len() >= MAX_CHUNK_STREAMS {
                    return Err(protocol("too many chunk streams"));
                }
            }
            let mut hdr = [0u8; 11];
            let n = [11, 7, 3, 0][fmt as usize];
            self.peer.read_exact(&mut hdr[..n])?;
            let field = u32::from_be_bytes([0, hdr[0], hdr[1], hdr[2]]);
            let cs = self.streams.entry(csid).or_default();
            let starting = cs.body.is_empty();
            if fmt <= 1 {
                cs.length = u32::from_be_bytes([0, hdr[3], hdr[4], hdr[5]]) as usize;
                cs.kind = hdr[6];
                if !starting {
                    return Err(protocol("a new message header in the middle of a message"));
                }
            }
            if fmt == 0 {
                cs.stream = u32::from_le_bytes([hdr[7], hdr[8], hdr[9], hdr[10]]);
            }
            if fmt <= 2 {
                cs.extended = field == 0xFF_FFFF;
            }
            let ext = if cs.extended {
                let mut e = [0u8; 4];
                self.peer.read_exact(&mut e)?;
                Some(u32::from_be_bytes(e))
            } else {
                None
            };
            let cs = self.streams.entry(csid).or_default();
            let value = ext.unwrap_or(field);
            match fmt {
                0 => {
                    cs.timestamp = value;
                    cs.delta = 0;
                }
                1 | 2 => {
                    cs.delta = value;
                    cs.timestamp = cs.timestamp.wrapping_add(value);
                }
                _ if starting => cs.timestamp = cs.timestamp.wrapping_add(cs.delta),
                _ => {}
            }
            if cs.length > MAX_MESSAGE {
                return Err(protocol(format!("a message of {} bytes", cs.length)));
            }
            let take = self.in_chunk.min(cs.length - cs.body.len());
            let at = cs.body.len();
            cs.body.resize(at + take, 0);
            let mut body = std::mem::take(&mut cs.body);
            let r = self.peer.read_exact(&mut body[at..]);
            let cs = self.streams.entry(csid).or_default();
            cs.body = body;
            r?;
            if self.window > 0 && self.peer.unacked >= self.window as u64 / 2 {
                self.peer.unacked = 0;
                let seq = (self.peer.total as u32).to_be_bytes();
                self.send(2, 0, 3, &seq)?;
            }
            let cs = self.streams.entry(csid).or_default();
            if cs.body.len() < cs.length {
                continue;
            }
            let m = Message {
                kind: cs.kind,
                timestamp: cs.timestamp,
                stream: cs.stream,
                body: std::mem::take(&mut cs.body),
            };
            match m.kind {
                1 => {
                    let size = read_u32(&m.body)? & 0x7fff_ffff;
                    if size == 0 || size as usize > MAX_MESSAGE {
                        return Err(protocol(format!("chunk size {size}")));
                    }
                    self.in_chunk = size as usize;
                }
                2 => {
                    let id = read_u32(&m.body)?;
                    if let Some(cs) = self.streams.get_mut(&id) {
                        cs.body.clear();
                    }
                }
                5 => self.window = read_u32(&m.body)?,
                3 | 4 | 6 => {}
                _ => return Ok(m),
            }
        }
    }

    /// Sends one message, chunked at [`OUT_CHUNK`].
    fn send(&mut self, csid: u8, stream: u32, kind: u8, body: &[u8]) -> Result<(), RtmpError> {
        let mut out = Vec::with_capacity(body.len() + 16 + body.len() / OUT_CHUNK);
        out.push(csid & 0x3f);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.push(kind);
        out.extend_from_slice(&stream.to_le_bytes());
        for (i, c) in body.chunks(OUT_CHUNK).enumerate() {
            if i > 0 {
                out.push(0xC0 | (csid & 0x3f));
            }
            out.extend_from_slice(c);
        }
        self.peer.s.write_all(&out)?;
        Ok(())
    }

    fn command(&mut self, stream: u32, values: &[Amf]) -> Result<(), RtmpError> {
        let mut body = Vec::new();
        for v in values {
            v.encode(&mut body);
        }
        self.send(3, stream, 20, &body)
    }
}

fn read_u32(b: &[u8]) -> Result<u32, RtmpError> {
    b.get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| protocol("a control message too short"))
}

/// An AMF0 value.
#[derive(Debug, Clone, PartialEq)]
enum Amf {
    Number(f64),
    Bool(bool),
    Str(String),
    Object(Vec<(String, Amf)>),
    Null,
    Array(Vec<Amf>),
}

impl Amf {
    fn obj(fields: &[(&str, Amf)]) -> Amf {
        Amf::Object(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    fn str(s: &str) -> Amf {
        Amf::Str(s.to_string())
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Amf::Str(s) => Some(s),
            _ => None,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Amf::Number(n) => {
                out.push(0);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Amf::Bool(b) => out.extend_from_slice(&[1, *b as u8]),
            Amf::Str(s) => {
                out.push(2);
                put_str(out, s);
            }
            Amf::Object(f) => {
                out.push(3);
                for (k, v) in f {
                    put_str(out, k);
                    v.encode(out);
                }
                out.extend_from_slice(&[0, 0, 9]);
            }
            Amf::Null => out.push(5),
            Amf::Array(a) => {
                out.push(10);
                out.extend_from_slice(&(a.len() as u32).to_be_bytes());
                for v in a {
                    v.encode(out);
                }
            }
        }
    }

    /// Every value in `b`, in order.
    fn decode_all(mut b: &[u8]) -> Result<Vec<Amf>, RtmpError> {
        let mut out = Vec::new();
        while !b.is_empty() {
            out.push(Amf::decode(&mut b, 0)?);
        }
        Ok(out)
    }

    fn decode(b: &mut &[u8], depth: usize) -> Result<Amf, RtmpError> {
        if depth > MAX_DEPTH {
            return Err(protocol("AMF0 nested too deep"));
        }
        let t = take(b, 1)?[0];
        Ok(match t {
            0 => {
                let v = take(b, 8)?;
                Amf::Number(f64::from_be_bytes([
                    v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
                ]))
            }
            1 => Amf::Bool(take(b, 1)?[0] != 0),
            2 => Amf::Str(get_str(b, 2)?),
            12 => Amf::Str(get_str(b, 4)?),
            3 | 8 => {
                if t == 8 {
                    take(b, 4)?;
                }
                let mut f = Vec::new();
                loop {
                    let k = get_str(b, 2)?;
                    if k.is_empty() && b.first() == Some(&9) {
                        *b = &b[1..];
                        break;
                    }
                    f.push((k, Amf::decode(b, depth + 1)?));
                }
                Amf::Object(f)
            }
            5 | 6 => Amf::Null,
            10 => {
                let n = u32::from_be_bytes(to4(take(b, 4)?));
                let mut a = Vec::new();
                for _ in 0..n {
                    a.push(Amf::decode(b, depth + 1)?);
                }
                Amf::Array(a)
            }
            11 => {
                take(b, 10)?;
                Amf::Null
            }
            t => return Err(protocol(format!("AMF0 type {t} not understood"))),
        })
    }
}

fn to4(v: &[u8]) -> [u8; 4] {
    [v[0], v[1], v[2], v[3]]
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], RtmpError> {
    if b.len() < n {
        return Err(protocol("AMF0 value cut short"));
    }
    let (h, t) = b.split_at(n);
    *b = t;
    Ok(h)
}

fn get_str(b: &mut &[u8], width: usize) -> Result<String, RtmpError> {
    let l = take(b, width)?;
    let n = l.iter().fold(0usize, |n, x| n << 8 | *x as usize);
    Ok(String::from_utf8_lossy(take(b, n)?).into_owned())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// What the publisher asked for, up to `publish`.
struct Publish {
    key: String,
    stream: u32,
}

/// Answers `connect`, `createStream` and the rest until the peer publishes; returns the key.
fn setup<S: Read + Write>(sess: &mut Session<S>) -> Result<Publish, RtmpError> {
    loop {
        let m = sess.message()?;
        let body = match m.kind {
            20 => &m.body[..],
            17 => m.body.get(1..).unwrap_or_default(),
            8 | 9 | 18 => continue,
            k => return Err(protocol(format!("message type {k} before publish"))),
        };
        let v = Amf::decode_all(body)?;
        let name = v.first().and_then(Amf::as_str).unwrap_or_default();
        let txn = match v.get(1) {
            Some(Amf::Number(n)) => *n,
            _ => 0.0,
        };
        match name {
            "connect" => {
                sess.send(2, 0, 5, &2_500_000u32.to_be_bytes())?;
                sess.send(2, 0, 6, &[0, 0x26, 0x25, 0xA0, 2])?;
                sess.send(2, 0, 1, &(OUT_CHUNK as u32).to_be_bytes())?;
                sess.command(
                    0,
                    &[
                        Amf::str("_result"),
                        Amf::Number(txn),
                        Amf::obj(&[
                            ("fmsVer", Amf::str("FMS/3,0,1,123")),
                            ("capabilities", Amf::Number(31.0)),
                        ]),
                        Amf::obj(&[
                            ("level", Amf::str("status")),
                            ("code", Amf::str("NetConnection.Connect.Success")),
                            ("description", Amf::str("Connection succeeded.")),
                            ("objectEncoding", Amf::Number(0.0)),
                        ]),
                    ],
                )?;
            }
            "createStream" => sess.command(
                0,
                &[
                    Amf::str("_result"),
                    Amf::Number(txn),
                    Amf::Null,
                    Amf::Number(1.0),
                ],
            )?,
            "releaseStream" | "FCPublish" | "_checkbw" if txn > 0.0 => {
                sess.command(0, &[Amf::str("_result"), Amf::Number(txn), Amf::Null])?;
            }
            "publish" => {
                let raw = v.get(3).and_then(Amf::as_str).unwrap_or_default();
                let key = raw.split('?').next().unwrap_or_default().to_string();
                return Ok(Publish {
                    key,
                    stream: m.stream,
                });
            }
            "deleteStream" | "FCUnpublish" | "closeStream" => {
                return Err(protocol("closed before publishing"))
            }
            _ => {}
        }
    }
}

fn status(code: &str, level: &str, description: &str) -> [Amf; 4] {
    [
        Amf::str("onStatus"),
        Amf::Number(0.0),
        Amf::Null,
        Amf::obj(&[
            ("level", Amf::str(level)),
            ("code", Amf::str(code)),
            ("description", Amf::str(description)),
        ]),
    ]
}

fn serve(conn: TcpStream, peer: SocketAddr, listener: &Weak<Listener>) -> Result<(), RtmpError> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(POLL))?;
    conn.set_write_timeout(Some(SETUP))?;
    conn.set_nodelay(true)?;
    let mut sess = Session::new(conn, SETUP);
    sess.handshake()?;
    let p = setup(&mut sess)?;
    let Some(l) = listener.upgrade() else {
        return Err(RtmpError::Stopped);
    };
    let route = lock(&l.routes).iter().find_map(|r| {
        same_key(&r.key, &p.key).then(|| {
            (
                r.sink.clone(),
                r.counters.clone(),
                r.busy.clone(),
                r.stop.clone(),
            )
        })
    });
    let Some((sink, counters, busy, stop)) = route else {
        tracing::warn!(addr = %l.addr, %peer, "rtmp: publish refused: wrong stream key");
        l.refused(&format!("wrong stream key (publisher {peer})"));
        let _ = sess.command(
            p.stream,
            &status("NetStream.Publish.BadName", "error", "wrong stream key"),
        );
        return Err(protocol("wrong stream key"));
    };
    if busy.swap(true, Ordering::AcqRel) {
        tracing::warn!(addr = %l.addr, %peer, "rtmp: publish refused: key already publishing");
        counters.refused.fetch_add(1, Ordering::Relaxed);
        counters.error(format!(
            "a second publisher on this stream key refused ({peer})"
        ));
        let _ = sess.command(
            p.stream,
            &status("NetStream.Publish.BadName", "error", "already publishing"),
        );
        return Err(protocol("already publishing"));
    }
    drop(l);
    tracing::info!(%peer, "rtmp: publisher accepted");
    let r = publish(&mut sess, &p, sink, &counters, stop);
    busy.store(false, Ordering::Release);
    if counters.state() != LinkState::Stopped {
        counters.set_state(LinkState::Lost);
        let why = match &r {
            Ok(()) => "publisher ended the stream".to_string(),
            Err(e) => format!("publisher {peer}: {e}"),
        };
        counters.error(why);
    }
    r
}

/// Takes the media of an accepted publisher until it stops, the source stops or it goes silent.
fn publish<S: Read + Write>(
    sess: &mut Session<S>,
    p: &Publish,
    sink: Arc<dyn ChunkSink>,
    counters: &Arc<LinkCounters>,
    stop: Arc<AtomicBool>,
) -> Result<(), RtmpError> {
    sess.command(
        p.stream,
        &status("NetStream.Publish.Start", "status", "publishing"),
    )?;
    sess.peer.idle = IDLE;
    sess.peer.stop = Some(stop.clone());
    let (tx, src) = ByteSource::channel("rtmp-in.flv", FLV_QUEUE);
    let out = TsWriter::new(sink, counters.clone());
    let (c, s) = (counters.clone(), stop.clone());
    let remux = std::thread::Builder::new()
        .name("rtmp-remux".into())
        .spawn(move || {
            if let Err(e) = remux_stream(&src, RemuxTarget::Writer(Box::new(out)), s) {
                tracing::warn!(error = %e, "rtmp: remux");
                c.error(e.to_string());
            }
        })?;
    // FLV header (audio and video present) and the first PreviousTagSize.
    let mut r = tx
        .send(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec())
        .map_err(|_| protocol("the remux ended"));
    while r.is_ok() {
        r = sess.message().and_then(|m| match m.kind {
            8 | 9 => {
                send_tag(&tx, m.kind, m.timestamp, &m.body, counters);
                Ok(())
            }
            18 => {
                let body = strip_set_data_frame(&m.body);
                send_tag(&tx, 18, m.timestamp, body, counters);
                Ok(())
            }
            20 | 17 => {
                let body = if m.kind == 17 {
                    m.body.get(1..).unwrap_or_default()
                } else {
                    &m.body
                };
                let v = Amf::decode_all(body).unwrap_or_default();
                match v.first().and_then(Amf::as_str) {
                    Some("deleteStream" | "FCUnpublish" | "closeStream") => Err(RtmpError::Stopped),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        });
    }
    drop(tx);
    let _ = remux.join();
    match r {
        Err(RtmpError::Stopped) => Ok(()),
        other => other,
    }
}

/// `@setDataFrame` wraps the metadata a publisher sends; FLV holds it without.
fn strip_set_data_frame(body: &[u8]) -> &[u8] {
    const TAG: &[u8] = b"\x02\x00\x0d@setDataFrame";
    body.strip_prefix(TAG).unwrap_or(body)
}

fn send_tag(
    tx: &crossbeam_channel::Sender<Vec<u8>>,
    kind: u8,
    ts: u32,
    body: &[u8],
    counters: &LinkCounters,
) {
    if body.is_empty() || body.len() > 0xFF_FFFF {
        return;
    }
    let mut t = Vec::with_capacity(body.len() + 15);
    t.push(kind);
    t.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    t.extend_from_slice(&ts.to_be_bytes()[1..]);
    t.push((ts >> 24) as u8);
    t.extend_from_slice(&[0, 0, 0]);
    t.extend_from_slice(body);
    t.extend_from_slice(&((body.len() + 11) as u32).to_be_bytes());
    if tx.send_timeout(t, Duration::from_secs(1)).is_err() {
        counters.dropped(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A peer that plays back fixed bytes and swallows what is written.
    struct Canned(std::io::Cursor<Vec<u8>>);

    impl Read for Canned {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(b)
        }
    }

    impl Write for Canned {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn run(bytes: Vec<u8>) -> Result<Publish, RtmpError> {
        let mut s = Session::new(Canned(std::io::Cursor::new(bytes)), SETUP);
        s.handshake()?;
        setup(&mut s)
    }

    fn chunk(csid: u8, kind: u8, stream: u32, body: &[u8]) -> Vec<u8> {
        let mut out = vec![csid];
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.push(kind);
        out.extend_from_slice(&stream.to_le_bytes());
        for (i, c) in body.chunks(128).enumerate() {
            if i > 0 {
                out.push(0xC0 | csid);
            }
            out.extend_from_slice(c);
        }
        out
    }

    fn cmd(values: &[Amf]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in values {
            v.encode(&mut b);
        }
        b
    }

    fn hello() -> Vec<u8> {
        let mut b = vec![3];
        b.extend(std::iter::repeat_n(7u8, 2 * HANDSHAKE));
        b
    }

    #[test]
    fn a_publisher_gets_to_publish_with_its_key() {
        let mut b = hello();
        let long_app = "a".repeat(300);
        b.extend(chunk(
            3,
            20,
            0,
            &cmd(&[
                Amf::str("connect"),
                Amf::Number(1.0),
                Amf::obj(&[("app", Amf::str(&long_app))]),
            ]),
        ));
        b.extend(chunk(
            3,
            20,
            0,
            &cmd(&[Amf::str("createStream"), Amf::Number(2.0), Amf::Null]),
        ));
        b.extend(chunk(
            8,
            20,
            1,
            &cmd(&[
                Amf::str("publish"),
                Amf::Number(0.0),
                Amf::Null,
                Amf::str("s3cret?token=1"),
                Amf::str("live"),
            ]),
        ));
        let p = run(b).unwrap();
        assert_eq!((p.key.as_str(), p.stream), ("s3cret", 1));
    }

    #[test]
    fn amf_round_trips() {
        let v = vec![
            Amf::str("x"),
            Amf::Number(2.5),
            Amf::Bool(true),
            Amf::Null,
            Amf::obj(&[("k", Amf::Array(vec![Amf::Number(1.0)]))]),
        ];
        assert_eq!(Amf::decode_all(&cmd(&v)).unwrap(), v);
    }

    #[test]
    fn garbage_and_cut_input_end_in_errors_not_panics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        for i in 0..3000 {
            let n = rng.gen_range(0..4096);
            let mut b: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            if i % 2 == 0 {
                // Past the handshake, so that the chunk and AMF readers see the garbage.
                let mut h = hello();
                h.append(&mut b);
                b = h;
            }
            assert!(run(b).is_err());
            let cut = rng.gen_range(0..hello().len());
            assert!(run(hello()[..cut].to_vec()).is_err());
        }
        for _ in 0..3000 {
            let n = rng.gen_range(0..64);
            let b: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            let _ = Amf::decode_all(&b);
        }
    }
}
