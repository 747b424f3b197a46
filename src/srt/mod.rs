//! SRT: a small binding to libsrt (Debian's `libsrt-gnutls-dev`, the library `srt-live-transmit`
//! is built on) and the spec an SRT input or output is declared with. libsrt was chosen over the
//! pure-Rust srt-tokio after measuring both through the same lossy relay (README, "Live: SRT").
//!
//! [`sys`] declares the C API; this module wraps it in RAII types ([`Socket`], [`Epoll`]) that
//! close what they own, and turns libsrt's thread-local error into [`SrtError`]. The transports
//! themselves live in `ingest::srt` and `output::srt`. Imports nothing of the domain; no tokio.

mod sys;

use std::collections::HashMap;
use std::ffi::CStr;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs};
use std::os::raw::{c_char, c_int, c_void};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// libsrt's live-mode payload: 7 TS packets.
pub const LIVE_PAYLOAD: usize = 1316;

#[derive(Debug, thiserror::Error)]
pub enum SrtError {
    /// A call into libsrt failed; `message` is libsrt's own text.
    #[error("{call}: {message} (libsrt error {code})")]
    Lib {
        call: &'static str,
        code: i32,
        message: String,
    },
    #[error("SRT address {address:?} does not resolve")]
    Resolve {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("SRT address {0:?} resolves to no address")]
    NoAddress(String),
    #[error("SRT passphrase must be 10 to 79 characters, got {0}")]
    PassphraseLength(usize),
    #[error("SRT pbkeylen must be 16, 24 or 32 (AES-128/192/256), got {0}")]
    KeyLength(u32),
    #[error("SRT pbkeylen {0} given without a passphrase")]
    KeyLengthWithoutPassphrase(u32),
    #[error("SRT stream ID must be at most 512 bytes without NUL, got {0} bytes")]
    StreamId(usize),
    #[error("SRT latency {0} ms is out of range (20 to 60000)")]
    Latency(u32),
    #[error("stream ID {stream_id:?} is already routed on SRT port {port}")]
    StreamIdTaken { port: u16, stream_id: String },
    #[error("SRT port {port} already listens with {what}; every source on one port must agree")]
    PortMismatch { port: u16, what: &'static str },
    /// The peer refused the handshake (`reason`: libsrt's SRT_REJECT_REASON, or the listener's
    /// own code from 1000 up).
    #[error("{call}: refused: {}", reject_text(*reason))]
    Rejected { call: &'static str, reason: i32 },
    #[error("SRT connection broken")]
    Broken,
    #[error("could not start an SRT thread")]
    Thread(#[source] std::io::Error),
}

/// Who opens the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SrtMode {
    /// Waits on `address` (e.g. `0.0.0.0:9000`) for callers.
    Listener,
    /// Connects to `address` (`host:port`) and reconnects when the peer goes away.
    Caller,
}

/// An SRT input or output as declared in the config or over the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrtSpec {
    pub mode: SrtMode,
    pub address: String,
    /// Receiver buffer (TSBPD latency), milliseconds; SRT's rule of thumb is ≥ 4 × RTT.
    #[serde(default = "default_latency")]
    pub latency_ms: u32,
    /// Enables AES encryption (10 to 79 characters).
    #[serde(default)]
    pub passphrase: Option<String>,
    /// Key length in bytes: 16, 24 or 32 (AES-128/192/256); default 16 when a passphrase is set.
    #[serde(default)]
    pub pbkeylen: Option<u32>,
    /// Caller: sent to the listener. Listener input: the stream ID this source answers to
    /// (callers with another one go to another source on the same port, or are refused).
    #[serde(default)]
    pub stream_id: Option<String>,
}

fn default_latency() -> u32 {
    120
}

impl SrtSpec {
    pub fn new(mode: SrtMode, address: impl Into<String>) -> SrtSpec {
        SrtSpec {
            mode,
            address: address.into(),
            latency_ms: default_latency(),
            passphrase: None,
            pbkeylen: None,
            stream_id: None,
        }
    }

    /// Checks every field against what libsrt accepts, before any socket is made.
    pub fn validate(&self) -> Result<(), SrtError> {
        if !(20..=60_000).contains(&self.latency_ms) {
            return Err(SrtError::Latency(self.latency_ms));
        }
        if let Some(p) = &self.passphrase {
            if !(10..=79).contains(&p.len()) || p.contains('\0') {
                return Err(SrtError::PassphraseLength(p.len()));
            }
        }
        match (self.pbkeylen, &self.passphrase) {
            (Some(k), _) if ![16, 24, 32].contains(&k) => return Err(SrtError::KeyLength(k)),
            (Some(k), None) => return Err(SrtError::KeyLengthWithoutPassphrase(k)),
            _ => {}
        }
        if let Some(s) = &self.stream_id {
            if s.len() > 512 || s.contains('\0') {
                return Err(SrtError::StreamId(s.len()));
            }
        }
        Ok(())
    }

    /// The first address `address` resolves to.
    pub fn resolve(&self) -> Result<SocketAddr, SrtError> {
        self.address
            .to_socket_addrs()
            .map_err(|source| SrtError::Resolve {
                address: self.address.clone(),
                source,
            })?
            .next()
            .ok_or_else(|| SrtError::NoAddress(self.address.clone()))
    }
}

/// Figures libsrt keeps per connection (totals since it opened).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SocketStats {
    pub received: u64,
    pub received_unique: u64,
    pub sent: u64,
    pub sent_unique: u64,
    pub received_lost: u64,
    pub received_retransmitted: u64,
    pub retransmitted: u64,
    pub received_dropped: u64,
    pub sent_dropped: u64,
    pub received_undecrypted: u64,
    pub rtt_ms: f64,
    pub receive_buffer_ms: f64,
    pub send_buffer_ms: f64,
}

/// What a libsrt socket is doing (`srt_getsockstate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockState {
    Opening,
    Listening,
    Connecting,
    Connected,
    /// Broken, closing, closed or no longer known to libsrt.
    Gone,
}

fn startup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: srt_startup has no preconditions and is called once; libsrt stays up for the
        // life of the process (srt_cleanup is never called while sockets may exist).
        unsafe {
            sys::srt_startup();
            // Errors only (LOG_ERR = 3): transports report through their stats, not stderr.
            sys::srt_setloglevel(3);
        }
    });
}

fn last_error(call: &'static str) -> SrtError {
    // SAFETY: both read libsrt's thread-local error of this thread; the string it returns stays
    // valid until the next libsrt call on this thread and is copied at once.
    let (code, message) = unsafe {
        let code = sys::srt_getlasterror(std::ptr::null_mut());
        let text = sys::srt_getlasterror_str();
        let message = if text.is_null() {
            String::new()
        } else {
            CStr::from_ptr(text).to_string_lossy().into_owned()
        };
        (code, message)
    };
    SrtError::Lib {
        call,
        code,
        message,
    }
}

impl SrtError {
    /// True when the peer refused us on purpose (passphrase, encryption, stream ID, access
    /// control), as opposed to not answering.
    pub fn is_refusal(&self) -> bool {
        matches!(self, SrtError::Rejected { reason, .. }
            if *reason == REJ_PEER || *reason == REJ_BADSECRET || *reason == REJ_UNSECURE || *reason >= 1000)
    }

    /// libsrt's error code, when libsrt said what went wrong.
    pub fn code(&self) -> Option<i32> {
        match self {
            SrtError::Lib { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A libsrt socket, closed on drop.
#[derive(Debug)]
pub struct Socket {
    id: sys::SRTSOCKET,
    /// Keeps the listen callback's state alive as long as libsrt may call it.
    hook: Option<*mut HookBox>,
}

// SAFETY: an SRT socket is an integer handle into libsrt's table, which libsrt guards with its own
// locks: any thread may call into it. The hook box is only freed in Drop, after srt_close.
unsafe impl Send for Socket {}
// SAFETY: as above; `&Socket` methods only pass the handle to libsrt.
unsafe impl Sync for Socket {}

pub type Hook = dyn Fn(&Handshake<'_>) -> Result<(), RejectCode> + Send + Sync;
struct HookBox(Arc<Hook>);

/// libsrt's rejection codes a listen callback may answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectCode {
    /// Nothing is routed to that stream ID here.
    NotFound,
    Unauthorized,
}

/// A caller's handshake as a listener's callback sees it: before the connection exists. Options
/// set here (passphrase, latency) apply to the socket libsrt is about to accept.
pub struct Handshake<'a> {
    socket: sys::SRTSOCKET,
    pub peer: Option<SocketAddr>,
    pub stream_id: &'a str,
}

impl Handshake<'_> {
    /// libsrt's id of the socket being accepted (the one `accept` returns if it succeeds).
    pub fn socket_id(&self) -> i32 {
        self.socket
    }

    pub fn set_passphrase(&self, passphrase: &str, pbkeylen: Option<u32>) -> Result<(), SrtError> {
        set_str(
            self.socket,
            sys::SRTO_PASSPHRASE,
            "SRTO_PASSPHRASE",
            passphrase,
        )?;
        if let Some(k) = pbkeylen {
            set_int(self.socket, sys::SRTO_PBKEYLEN, "SRTO_PBKEYLEN", k as i32)?;
        }
        Ok(())
    }

    pub fn set_latency(&self, ms: u32) -> Result<(), SrtError> {
        set_int(self.socket, sys::SRTO_LATENCY, "SRTO_LATENCY", ms as i32)
    }
}

unsafe extern "C" fn listen_hook(
    opaq: *mut c_void,
    ns: sys::SRTSOCKET,
    _hsversion: c_int,
    peeraddr: *const libc::sockaddr,
    streamid: *const c_char,
) -> c_int {
    // SAFETY: `opaq` is the HookBox pointer given to srt_listen_callback by `listen_with`, freed
    // only after the listener is closed (libsrt no longer calls the hook then).
    let hook = unsafe { &*(opaq as *const HookBox) };
    // SAFETY: libsrt passes the caller's address (or null) valid for the call.
    let peer = unsafe { from_sockaddr(peeraddr) };
    let stream_id = if streamid.is_null() {
        String::new()
    } else {
        // SAFETY: libsrt passes a NUL-terminated string valid for the duration of the call.
        unsafe { CStr::from_ptr(streamid) }
            .to_string_lossy()
            .into_owned()
    };
    let handshake = Handshake {
        socket: ns,
        peer,
        stream_id: &stream_id,
    };
    // A panic must not unwind into C: it refuses the caller instead.
    let decision = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (hook.0)(&handshake)))
        .unwrap_or(Err(RejectCode::Unauthorized));
    match decision {
        Ok(()) => 0,
        Err(code) => {
            let value = match code {
                RejectCode::NotFound => sys::SRT_REJX_NOTFOUND,
                RejectCode::Unauthorized => sys::SRT_REJX_UNAUTHORIZED,
            };
            // SAFETY: `ns` is the socket libsrt handed to this callback.
            unsafe { sys::srt_setrejectreason(ns, value) };
            -1
        }
    }
}

fn set_int(id: sys::SRTSOCKET, opt: c_int, name: &'static str, v: i32) -> Result<(), SrtError> {
    let v: c_int = v;
    // SAFETY: the option value is a live c_int and its size is passed with it.
    let r = unsafe {
        sys::srt_setsockflag(
            id,
            opt,
            &v as *const c_int as *const c_void,
            std::mem::size_of::<c_int>() as c_int,
        )
    };
    if r == sys::SRT_ERROR {
        return Err(last_error(name));
    }
    Ok(())
}

fn set_str(id: sys::SRTSOCKET, opt: c_int, name: &'static str, v: &str) -> Result<(), SrtError> {
    // SAFETY: libsrt copies `len` bytes from the pointer, which is valid for that length.
    let r = unsafe { sys::srt_setsockflag(id, opt, v.as_ptr() as *const c_void, v.len() as c_int) };
    if r == sys::SRT_ERROR {
        return Err(last_error(name));
    }
    Ok(())
}

impl Socket {
    pub fn new() -> Result<Socket, SrtError> {
        startup();
        // SAFETY: no preconditions beyond srt_startup, done above.
        let id = unsafe { sys::srt_create_socket() };
        if id == sys::SRT_INVALID_SOCK {
            return Err(last_error("srt_create_socket"));
        }
        Ok(Socket { id, hook: None })
    }

    pub fn id(&self) -> i32 {
        self.id
    }

    /// Applies the options every antenne SRT socket shares, from a spec (before connect/bind).
    /// `stream_id` is sent when calling; a listener sets passphrases per caller in its hook.
    pub fn configure(&self, spec: &SrtSpec) -> Result<(), SrtError> {
        self.set_latency(spec.latency_ms)?;
        if let Some(p) = &spec.passphrase {
            set_str(self.id, sys::SRTO_PASSPHRASE, "SRTO_PASSPHRASE", p)?;
            set_int(
                self.id,
                sys::SRTO_PBKEYLEN,
                "SRTO_PBKEYLEN",
                spec.pbkeylen.unwrap_or(16) as i32,
            )?;
        }
        if spec.mode == SrtMode::Caller {
            if let Some(s) = &spec.stream_id {
                set_str(self.id, sys::SRTO_STREAMID, "SRTO_STREAMID", s)?;
            }
        }
        Ok(())
    }

    pub fn set_latency(&self, ms: u32) -> Result<(), SrtError> {
        set_int(self.id, sys::SRTO_LATENCY, "SRTO_LATENCY", ms as i32)
    }

    /// How long a blocking receive waits before returning `Ok(None)`.
    pub fn set_receive_timeout(&self, timeout: Duration) -> Result<(), SrtError> {
        set_int(
            self.id,
            sys::SRTO_RCVTIMEO,
            "SRTO_RCVTIMEO",
            timeout.as_millis().min(i32::MAX as u128) as i32,
        )
    }

    /// Sending never blocks: a full send buffer is an error the caller counts.
    pub fn set_send_nonblocking(&self) -> Result<(), SrtError> {
        set_int(self.id, sys::SRTO_SNDSYN, "SRTO_SNDSYN", 0)
    }

    pub fn set_connect_timeout(&self, timeout: Duration) -> Result<(), SrtError> {
        set_int(
            self.id,
            sys::SRTO_CONNTIMEO,
            "SRTO_CONNTIMEO",
            timeout.as_millis().min(i32::MAX as u128) as i32,
        )
    }

    /// Silence from the peer after which the connection is declared broken (libsrt: 5 s).
    pub fn set_peer_idle_timeout(&self, timeout: Duration) -> Result<(), SrtError> {
        set_int(
            self.id,
            sys::SRTO_PEERIDLETIMEO,
            "SRTO_PEERIDLETIMEO",
            timeout.as_millis().min(i32::MAX as u128) as i32,
        )
    }

    pub fn bind(&self, addr: SocketAddr) -> Result<(), SrtError> {
        let (storage, len) = to_sockaddr(addr);
        // SAFETY: `storage` holds a sockaddr of `len` bytes for the call's duration.
        let r = unsafe {
            sys::srt_bind(
                self.id,
                &storage as *const libc::sockaddr_storage as *const libc::sockaddr,
                len,
            )
        };
        if r == sys::SRT_ERROR {
            return Err(last_error("srt_bind"));
        }
        Ok(())
    }

    /// Listens, calling `hook` for every caller's handshake (libsrt's thread): `Ok` lets libsrt
    /// go on (it still refuses a wrong passphrase), `Err` refuses the caller with that code.
    pub fn listen_with(&mut self, backlog: i32, hook: Arc<Hook>) -> Result<(), SrtError> {
        let boxed = Box::into_raw(Box::new(HookBox(hook)));
        self.hook = Some(boxed);
        // SAFETY: `boxed` stays allocated until Drop, which closes the socket first; libsrt calls
        // the hook only for a listening socket that is still open.
        let r =
            unsafe { sys::srt_listen_callback(self.id, Some(listen_hook), boxed as *mut c_void) };
        if r == sys::SRT_ERROR {
            return Err(last_error("srt_listen_callback"));
        }
        // SAFETY: plain call on an owned, bound socket.
        let r = unsafe { sys::srt_listen(self.id, backlog) };
        if r == sys::SRT_ERROR {
            return Err(last_error("srt_listen"));
        }
        Ok(())
    }

    /// The address the socket is bound to (the port libsrt picked for port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, SrtError> {
        // SAFETY: an all-zero sockaddr_storage is a valid value for libsrt to fill.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as c_int;
        // SAFETY: `storage` and `len` describe a writable buffer of that size.
        let r = unsafe {
            sys::srt_getsockname(
                self.id,
                &mut storage as *mut libc::sockaddr_storage as *mut libc::sockaddr,
                &mut len,
            )
        };
        if r == sys::SRT_ERROR {
            return Err(last_error("srt_getsockname"));
        }
        // SAFETY: libsrt filled `storage` with the bound address.
        unsafe { from_sockaddr(&storage as *const _ as *const libc::sockaddr) }
            .ok_or_else(|| SrtError::NoAddress(format!("socket {}", self.id)))
    }

    /// Accepts a pending connection (call after [`Epoll`] said the listener is readable).
    pub fn accept(&self) -> Result<(Socket, Option<SocketAddr>), SrtError> {
        // SAFETY: an all-zero sockaddr_storage is a valid value for libsrt to fill.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as c_int;
        // SAFETY: `storage` and `len` describe a writable buffer of that size.
        let id = unsafe {
            sys::srt_accept(
                self.id,
                &mut storage as *mut libc::sockaddr_storage as *mut libc::sockaddr,
                &mut len,
            )
        };
        if id == sys::SRT_INVALID_SOCK {
            return Err(last_error("srt_accept"));
        }
        // SAFETY: libsrt filled `storage` with the peer's address.
        let peer = unsafe { from_sockaddr(&storage as *const _ as *const libc::sockaddr) };
        Ok((Socket { id, hook: None }, peer))
    }

    /// Connects (blocking, up to the connect timeout).
    pub fn connect(&self, addr: SocketAddr) -> Result<(), SrtError> {
        let (storage, len) = to_sockaddr(addr);
        // SAFETY: `storage` holds a sockaddr of `len` bytes for the call's duration.
        let r = unsafe {
            sys::srt_connect(
                self.id,
                &storage as *const libc::sockaddr_storage as *const libc::sockaddr,
                len,
            )
        };
        if r == sys::SRT_ERROR {
            let e = last_error("srt_connect");
            // SAFETY: plain call on an owned socket.
            let reason = unsafe { sys::srt_getrejectreason(self.id) };
            return Err(if reason != 0 && reason != REJ_TIMEOUT {
                SrtError::Rejected {
                    call: "srt_connect",
                    reason,
                }
            } else {
                e
            });
        }
        Ok(())
    }

    /// One message into `buf` (at least [`LIVE_PAYLOAD`] bytes); `Ok(None)` when the receive
    /// timeout passed with nothing.
    pub fn recv(&self, buf: &mut [u8]) -> Result<Option<usize>, SrtError> {
        let len = buf.len().min(i32::MAX as usize) as c_int;
        // SAFETY: `buf` is writable for `len` bytes.
        let n = unsafe { sys::srt_recvmsg(self.id, buf.as_mut_ptr() as *mut c_char, len) };
        if n == sys::SRT_ERROR {
            let e = last_error("srt_recvmsg");
            return match e.code() {
                Some(sys::SRT_EASYNCRCV) | Some(sys::SRT_ETIMEOUT) => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(n as usize))
    }

    /// Sends one message (≤ [`LIVE_PAYLOAD`] bytes); `Ok(false)` when the send buffer is full.
    pub fn send(&self, data: &[u8]) -> Result<bool, SrtError> {
        // SAFETY: `data` is readable for its length; libsrt copies it.
        let n = unsafe {
            sys::srt_sendmsg(
                self.id,
                data.as_ptr() as *const c_char,
                data.len() as c_int,
                -1,
                0,
            )
        };
        if n == sys::SRT_ERROR {
            let e = last_error("srt_sendmsg");
            return match e.code() {
                Some(sys::SRT_EASYNCSND) | Some(sys::SRT_ETIMEOUT) => Ok(false),
                _ => Err(e),
            };
        }
        Ok(true)
    }

    pub fn state(&self) -> SockState {
        state_of(self.id)
    }

    pub fn stats(&self) -> Result<SocketStats, SrtError> {
        let mut s = sys::SRT_TRACEBSTATS::default();
        // SAFETY: `s` is a writable SRT_TRACEBSTATS with the header's layout.
        let r = unsafe { sys::srt_bstats(self.id, &mut s, 0) };
        if r == sys::SRT_ERROR {
            return Err(last_error("srt_bstats"));
        }
        let u = |v: i64| v.max(0) as u64;
        let i = |v: c_int| v.max(0) as u64;
        Ok(SocketStats {
            received: u(s.pktRecvTotal),
            received_unique: u(s.pktRecvUniqueTotal),
            sent: u(s.pktSentTotal),
            sent_unique: u(s.pktSentUniqueTotal),
            received_lost: i(s.pktRcvLossTotal),
            received_retransmitted: i(s.pktRcvRetrans),
            retransmitted: i(s.pktRetransTotal),
            received_dropped: i(s.pktRcvDropTotal),
            sent_dropped: i(s.pktSndDropTotal),
            received_undecrypted: i(s.pktRcvUndecryptTotal),
            rtt_ms: s.msRTT,
            receive_buffer_ms: s.msRcvBuf as f64,
            send_buffer_ms: s.msSndBuf as f64,
        })
    }
}

/// The state of a socket by id (one that another part of the code accepted or let go).
pub fn state_of(id: i32) -> SockState {
    // SAFETY: srt_getsockstate accepts any id and answers NONEXIST for unknown ones.
    match unsafe { sys::srt_getsockstate(id) } {
        sys::SRTS_INIT | sys::SRTS_OPENED => SockState::Opening,
        sys::SRTS_LISTENING => SockState::Listening,
        sys::SRTS_CONNECTING => SockState::Connecting,
        sys::SRTS_CONNECTED => SockState::Connected,
        _ => SockState::Gone,
    }
}

// SRT_REJECT_REASON values from srt.h that decide what a refusal means.
const REJ_PEER: i32 = 2;
const REJ_BADSECRET: i32 = 10;
const REJ_UNSECURE: i32 = 11;
const REJ_TIMEOUT: i32 = 16;

fn reject_text(reason: i32) -> String {
    let text = match reason {
        1 => "system error",
        REJ_PEER => "rejected by the peer",
        3 => "peer out of resources",
        4 => "malformed handshake",
        5 => "listener backlog full",
        6 => "internal error",
        7 => "socket closing",
        8 => "peer's SRT version too old",
        9 => "rendezvous cookie collision",
        REJ_BADSECRET => "wrong passphrase",
        REJ_UNSECURE => "one side encrypts and the other does not",
        12 => "message API mismatch",
        13 => "congestion control mismatch",
        14 => "packet filter mismatch",
        15 => "group mismatch",
        REJ_TIMEOUT => "timed out",
        1401 => "unauthorized",
        1404 => "unknown stream ID",
        r if r >= 1000 => return format!("refused by the listener (code {r})"),
        r => return format!("reason {r}"),
    };
    text.to_string()
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: the socket is owned and closed once; closing a listener removes it from
        // libsrt's receive queue under its listener lock, so no hook call is running or will
        // start once srt_close returns, and the hook box can be freed.
        unsafe {
            sys::srt_close(self.id);
            if let Some(hook) = self.hook.take() {
                drop(Box::from_raw(hook));
            }
        }
    }
}

/// A libsrt epoll set (waits on SRT sockets), released on drop.
#[derive(Debug)]
pub struct Epoll(c_int);

impl Epoll {
    pub fn new() -> Result<Epoll, SrtError> {
        startup();
        // SAFETY: no preconditions beyond srt_startup.
        let id = unsafe { sys::srt_epoll_create() };
        if id < 0 {
            return Err(last_error("srt_epoll_create"));
        }
        Ok(Epoll(id))
    }

    /// Watches `socket` for readability (data, or a pending connection on a listener).
    pub fn add(&self, socket: &Socket) -> Result<(), SrtError> {
        let events: c_int = sys::SRT_EPOLL_IN | sys::SRT_EPOLL_ERR;
        // SAFETY: `events` lives across the call.
        let r = unsafe { sys::srt_epoll_add_usock(self.0, socket.id, &events) };
        if r == sys::SRT_ERROR {
            return Err(last_error("srt_epoll_add_usock"));
        }
        Ok(())
    }

    pub fn remove(&self, socket: &Socket) {
        // SAFETY: removing an id that is not in the set is harmless.
        unsafe { sys::srt_epoll_remove_usock(self.0, socket.id) };
    }

    /// Waits up to `timeout`; the ids of the sockets that are ready (empty on timeout).
    pub fn wait(&self, timeout: Duration) -> Vec<i32> {
        let mut events = [sys::SRT_EPOLL_EVENT::default(); 16];
        // SAFETY: `events` is writable for its length.
        let n = unsafe {
            sys::srt_epoll_uwait(
                self.0,
                events.as_mut_ptr(),
                events.len() as c_int,
                timeout.as_millis().min(i64::MAX as u128) as i64,
            )
        };
        if n <= 0 {
            return Vec::new();
        }
        events[..(n as usize).min(events.len())]
            .iter()
            .map(|e| e.fd)
            .collect()
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: the set is owned and released once.
        unsafe { sys::srt_epoll_release(self.0) };
    }
}

fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, c_int) {
    // SAFETY: an all-zero sockaddr_storage is valid; it is then filled as one of its variants,
    // which it is sized and aligned to hold.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: see above.
            unsafe {
                std::ptr::write(
                    &mut storage as *mut libc::sockaddr_storage as *mut libc::sockaddr_in,
                    sin,
                )
            };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: see above.
            unsafe {
                std::ptr::write(
                    &mut storage as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6,
                    sin6,
                )
            };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as c_int)
}

/// # Safety
/// `p` is null or points to a sockaddr whose family says how many bytes are readable.
unsafe fn from_sockaddr(p: *const libc::sockaddr) -> Option<SocketAddr> {
    if p.is_null() {
        return None;
    }
    // SAFETY: per the contract, the family field is readable and says the full size.
    unsafe {
        match (*p).sa_family as c_int {
            libc::AF_INET => {
                let sin = &*(p as *const libc::sockaddr_in);
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                let sin6 = &*(p as *const libc::sockaddr_in6);
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

/// Handshakes a listener let through to libsrt, until each is accepted or libsrt refuses it
/// (a wrong or missing passphrase is refused inside libsrt, after the callback: the socket
/// disappears instead of being accepted). `T` says whom a refusal is counted against.
pub struct Pending<T> {
    waiting: HashMap<i32, (Instant, Option<SocketAddr>, T)>,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Pending {
            waiting: HashMap::new(),
        }
    }
}

impl<T> Pending<T> {
    pub fn insert(&mut self, socket_id: i32, peer: Option<SocketAddr>, who: T) {
        self.waiting.insert(socket_id, (Instant::now(), peer, who));
    }

    /// The accepted socket's entry.
    pub fn accepted(&mut self, socket_id: i32) -> Option<T> {
        self.waiting.remove(&socket_id).map(|(_, _, who)| who)
    }

    /// Handshakes that ended without an accept (libsrt dropped the socket), or that waited
    /// longer than `give_up`: the refused ones, with the caller's address.
    pub fn refused(&mut self, give_up: Duration) -> Vec<(Option<SocketAddr>, T)> {
        let gone: Vec<i32> = self
            .waiting
            .iter()
            .filter(|(id, (since, _, _))| {
                state_of(**id) == SockState::Gone || since.elapsed() > give_up
            })
            .map(|(id, _)| *id)
            .collect();
        gone.into_iter()
            .filter_map(|id| self.waiting.remove(&id))
            .map(|(_, peer, who)| (peer, who))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_checked_before_any_socket() {
        let mut s = SrtSpec::new(SrtMode::Listener, "127.0.0.1:0");
        assert!(s.validate().is_ok());
        s.passphrase = Some("short".into());
        assert!(matches!(s.validate(), Err(SrtError::PassphraseLength(5))));
        s.passphrase = Some("long enough secret".into());
        s.pbkeylen = Some(20);
        assert!(matches!(s.validate(), Err(SrtError::KeyLength(20))));
        s.pbkeylen = Some(32);
        assert!(s.validate().is_ok());
        s.passphrase = None;
        assert!(matches!(
            s.validate(),
            Err(SrtError::KeyLengthWithoutPassphrase(32))
        ));
        s.pbkeylen = None;
        s.latency_ms = 5;
        assert!(matches!(s.validate(), Err(SrtError::Latency(5))));
    }

    #[test]
    fn addresses_round_trip_through_sockaddr() {
        for a in ["127.0.0.1:9000", "[::1]:1234", "0.0.0.0:0"] {
            let addr: SocketAddr = a.parse().unwrap();
            let (storage, _) = to_sockaddr(addr);
            // SAFETY: `storage` was just filled by to_sockaddr.
            let back = unsafe { from_sockaddr(&storage as *const _ as *const libc::sockaddr) };
            assert_eq!(back, Some(addr));
        }
    }

    #[test]
    fn a_socket_that_was_never_connected_reports_so() {
        let s = Socket::new().unwrap();
        assert_eq!(s.state(), SockState::Opening);
        let mut buf = [0u8; 1500];
        assert!(s.recv(&mut buf).is_err());
    }
}
