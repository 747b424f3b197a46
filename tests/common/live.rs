//! What the live tests share: free loopback ports, a UDP receiver that keeps what it gets,
//! polling waits, peers killed when dropped, calls to `/v1/live` and the `/v1/events` feed.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::server::Server;

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback socket that keeps every datagram it gets until dropped.
pub struct Receiver {
    pub port: u16,
    pub datagrams: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let datagrams = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (datagrams.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    d.lock().unwrap().push(buf[..n].to_vec());
                }
            }
        });
        Receiver {
            port,
            datagrams,
            stop,
        }
    }

    /// Everything received, each datagram's first `strip` bytes left out (an RTP header).
    pub fn bytes(&self, strip: usize) -> Vec<u8> {
        self.datagrams
            .lock()
            .unwrap()
            .iter()
            .flat_map(|d| d[strip.min(d.len())..].to_vec())
            .collect()
    }

    /// Bytes received.
    pub fn len(&self) -> usize {
        self.datagrams.lock().unwrap().iter().map(Vec::len).sum()
    }

    /// Datagrams received.
    pub fn count(&self) -> usize {
        self.datagrams.lock().unwrap().len()
    }

    pub fn save(&self, path: &Path) {
        std::fs::write(path, self.bytes(0)).unwrap();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Polls `f` every 50 ms until it returns Some, or panics after `within`.
pub fn wait_for<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET /v1/live/{what}/{id}/stats` (`what`: sources or outputs) as the admin.
pub fn stats(s: &Server, what: &str, id: i64) -> Value {
    let r = s.call(
        "GET",
        &format!("/v1/live/{what}/{id}/stats"),
        Some(&s.admin),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// `POST /v1/live/{what}` as the admin; the new id.
pub fn create(s: &Server, what: &str, body: Value) -> i64 {
    let r = s.call(
        "POST",
        &format!("/v1/live/{what}"),
        Some(&s.admin),
        Some(&body),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_i64().unwrap()
}

/// `GET path` as the admin, expecting 200; the body.
pub fn get(s: &Server, path: &str) -> Value {
    let r = s.call("GET", path, Some(&s.admin), None);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.body
}

/// A UDP source on `127.0.0.1:port` with no jitter buffer; its id.
pub fn udp_source(s: &Server, name: &str, port: u16) -> i64 {
    create(
        s,
        "sources",
        serde_json::json!({"name": name, "kind": "udp",
                           "address": format!("127.0.0.1:{port}"), "buffer_ms": 0}),
    )
}

/// The lines of the admin's `/v1/events`, as they come.
pub fn event_lines(s: &Server) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let resp = ureq::get(&format!("{}/v1/events", s.base))
        .set("authorization", &format!("Bearer {}", s.admin))
        .call()
        .unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(resp.into_reader())
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// The changes on `/v1/events` about one kind of object (`live_source`, `live_output`,
/// `live_recording`), as JSON.
pub fn events(s: &Server, object: &'static str) -> mpsc::Receiver<Value> {
    let lines = event_lines(s);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in lines {
            let Some(d) = l.strip_prefix("data:") else {
                continue;
            };
            let v: Value = serde_json::from_str(d.trim()).unwrap_or_default();
            if v["object"] == object && tx.send(v).is_err() {
                break;
            }
        }
    });
    rx
}

/// A peer process (a sender, a receiver, an origin) killed when dropped: a failing test leaves
/// none behind.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A small live profile (320x180 H.264 CBR + AAC in a CBR TS) the live tests run their outputs
/// with, written as `live-test-180p.toml` in a profiles folder.
pub const LIVE_PROFILE_180P: &str = r#"
name = "live-test-180p"
description = "Live test 320x180 H.264 CBR + AAC in a CBR TS"

[[outputs]]
name = "ts"
container = "mpegts"
muxrate = "1200k"

[outputs.video]
codec = "h264"
width = 320
height = 180
frame_rate = "25/1"
pix_fmt = "yuv420p"
profile = "high"
level = "4.0"
rate_control = "cbr"
bitrate = "600k"
bufsize = "600k"
gop_seconds = 1.0
b_frames = 0
preset = "ultrafast"

[outputs.audio]
codec = "aac"
bitrate = "96k"
sample_rate = 48000
tracks = ["stereo"]
"#;
