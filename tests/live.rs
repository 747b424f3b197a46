//! Live sources and outputs against the real service, with ffmpeg as the sender: UDP and RTP in
//! and out (passthrough, byte for byte), health and events, garbage at the port, a stuck reader,
//! a file looped as a source, kinds this machine lacks, and persistence across a restart on
//! SQLite and PostgreSQL.

mod common;

use common::live::{create, events, free_udp_port, stats, wait_for, Receiver};

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::pg::Pg;
use common::server::Server;
use serde_json::{json, Value};

fn wait_event(rx: &mpsc::Receiver<Value>, id: i64, op: &str, within: Duration) {
    let end = Instant::now() + within;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        let Ok(v) = rx.recv_timeout(left) else { break };
        if v["id"] == id && v["op"] == op {
            assert!(v["detail"]["reason"].is_string(), "{v}");
            return;
        }
    }
    panic!("no {op} event for live source {id} within {within:?}");
}

/// A relay in front of the source's port: forwards ffmpeg's datagrams and keeps them, while a
/// second thread throws garbage (1-1024 bytes, never a TS packet) at the same port.
struct Relay {
    port: u16,
    sent: Arc<Mutex<Vec<u8>>>,
    garbage: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(to: u16, garbage_per_s: u32) -> Relay {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let garbage = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, s) = (sent.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    kept.lock().unwrap().extend_from_slice(&buf[..n]);
                    sock.send_to(&buf[..n], ("127.0.0.1", to)).unwrap();
                }
            }
        });
        if garbage_per_s > 0 {
            let (g, s) = (garbage.clone(), stop.clone());
            std::thread::spawn(move || {
                let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                let mut seed = 0x9E3779B97F4A7C15u64;
                let period = Duration::from_secs(1) / garbage_per_s;
                let start = Instant::now();
                let mut n = 0u32;
                while !s.load(Ordering::Relaxed) {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let len = 1 + (seed % 1024) as usize;
                    let mut d: Vec<u8> = (0..len).map(|i| (seed >> (i % 56)) as u8).collect();
                    d[0] = 0x00;
                    sock.send_to(&d, ("127.0.0.1", to)).unwrap();
                    g.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                    if let Some(wait) = (start + period * n).checked_duration_since(Instant::now())
                    {
                        std::thread::sleep(wait);
                    }
                }
            });
        }
        Relay {
            port,
            sent,
            garbage,
            stop,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// ffmpeg sending `seconds` of 320x180 with sound at real-time pace; `extra` goes before the
/// muxer's name (e.g. a CBR `-muxrate` padding with null packets).
fn ffmpeg_send(seconds: u32, extra: &[&str], muxer: &str, url: &str) -> std::process::Child {
    Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=320x180:rate=25:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:duration={seconds}:sample_rate=48000"
        ))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-crf",
            "12",
            "-g",
            "25",
            "-c:a",
            "aac",
        ])
        .args(extra)
        .args(["-f", muxer])
        .arg(url)
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg is installed")
}

/// Decodes a TS with ffprobe: (video frames, continuity errors reported).
fn probe_ts(data: &[u8], dir: &Path, name: &str) -> (usize, Vec<f64>, bool) {
    let f = dir.join(name);
    std::fs::write(&f, data).unwrap();
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "debug",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=pts_time",
        ])
        .args(["-of", "csv=p=0"])
        .arg(&f)
        .output()
        .unwrap();
    let pts: Vec<f64> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    let cc_errors = String::from_utf8_lossy(&o.stderr).contains("Continuity check failed");
    (pts.len(), pts, cc_errors)
}

#[test]
fn udp_passthrough_health_events_garbage_and_a_stuck_reader() {
    let s = Server::start(&[]);
    let work = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let rx = Receiver::start();
    let src = create(
        &s,
        "sources",
        json!({"name": "cam1", "kind": "udp", "address": format!("127.0.0.1:{port}"),
               "buffer_ms": 20, "loss_ms": 400}),
    );
    let out = create(
        &s,
        "outputs",
        json!({"name": "to-playout", "kind": "udp", "source_id": src,
               "address": format!("127.0.0.1:{}", rx.port), "ttl": 4}),
    );
    assert_eq!(stats(&s, "sources", src)["state"], "connecting");
    let ev = events(&s, "live_source");

    // A reader that never reads: the TS over HTTP to a client that sends its request and stops.
    // Its receive window is kept small, so that the kernel does not absorb the whole feed.
    let addr: std::net::SocketAddr = s.base.trim_start_matches("http://").parse().unwrap();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut stuck: TcpStream = sock.into();
    write!(
        stuck,
        "GET /v1/live/sources/{src}/ts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        s.admin
    )
    .unwrap();
    wait_for(Duration::from_secs(5), "the HTTP reader attached", || {
        stats(&s, "sources", src)["readers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "http admin")
            .then_some(())
    });

    let relay = Relay::start(port, 1000);
    // CBR at 6 Mb/s (null-padded): 3 MB, more than the HTTP stack and the kernel buffer for
    // the stuck client.
    let mut ff = ffmpeg_send(
        4,
        &["-muxrate", "6M"],
        "mpegts",
        &format!("udp://127.0.0.1:{}?pkt_size=1316", relay.port),
    );
    wait_for(Duration::from_secs(10), "source live", || {
        (stats(&s, "sources", src)["state"] == "live").then_some(())
    });
    assert!(ff.wait().unwrap().success());
    let ended = Instant::now();
    relay.stop.store(true, Ordering::Relaxed);
    wait_for(Duration::from_secs(3), "source lost", || {
        (stats(&s, "sources", src)["state"] == "lost").then_some(())
    });
    let lost_after = ended.elapsed();
    // The garbage thread has long seen the stop by now.
    let garbage = relay.garbage.load(Ordering::Relaxed);
    assert!(garbage > 1000, "{garbage} garbage datagrams sent");
    assert!(
        lost_after < Duration::from_millis(400 + 1000),
        "lost after {lost_after:?} (loss_ms 400)"
    );
    wait_event(&ev, src, "lost", Duration::from_secs(5));

    // Everything ffmpeg sent came out, the same packets in the same order.
    let sent = relay.sent.lock().unwrap().clone();
    assert!(sent.len() > 100 * 188, "ffmpeg sent {} bytes", sent.len());
    let end = Instant::now() + Duration::from_secs(5);
    while rx.bytes(0).len() < sent.len() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = rx.bytes(0);
    assert!(
        got == sent,
        "the output differs from what was sent ({} vs {} bytes): {} {}",
        got.len(),
        sent.len(),
        stats(&s, "sources", src),
        stats(&s, "outputs", out)
    );
    let (frames, _, cc) = probe_ts(&got, work.path(), "out.ts");
    assert!(frames >= 95, "{frames} frames decoded of 100");
    assert!(!cc, "continuity errors in the output");

    let st = stats(&s, "sources", src);
    assert_eq!(
        st["link"]["packets_malformed"], garbage,
        "every garbage datagram counted"
    );
    assert_eq!(st["link"]["packets_received"], (sent.len() / 188) as u64);
    assert_eq!(st["link"]["packets_dropped"], 0);
    let readers = st["readers"].as_array().unwrap();
    let http = readers.iter().find(|r| r["name"] == "http admin").unwrap();
    let output = readers
        .iter()
        .find(|r| r["name"] == format!("output {out}"))
        .unwrap();
    assert!(
        http["dropped"].as_u64().unwrap() > 0,
        "the stuck reader dropped: {st}"
    );
    assert_eq!(output["dropped"], 0, "{st}");
    let o = stats(&s, "outputs", out);
    assert_eq!(o["link"]["packets_sent"], (sent.len() / 188) as u64, "{o}");
    assert_eq!(o["link"]["packets_dropped"], 0);
    assert_eq!(o["state"], "lost");
    drop(stuck);

    // The feed coming back is an event too.
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in sent.chunks(1316).take(10) {
        tx.send_to(d, ("127.0.0.1", port)).unwrap();
    }
    wait_event(&ev, src, "restored", Duration::from_secs(5));

    let (m, text) = s.request("GET", "/metrics", Some(&s.admin), &[], None);
    assert_eq!(m.status, 200);
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains(&format!(
            "antenne_live_source_packets_malformed_total{{source=\"{src}\"}} {garbage}"
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "antenne_live_output_packets_sent_total{{output=\"{out}\"}}"
    )));

    // Viewers see nothing of it; editors change nothing.
    let (_, viewer) = s.user("watcher", "viewer");
    let r = s.call("GET", "/v1/live/sources", Some(&viewer), None);
    assert_eq!(r.status, 403);
    let r = s.call(
        "POST",
        &format!("/v1/live/sources/{src}/stop"),
        Some(&viewer),
        None,
    );
    assert_eq!(r.status, 403);
    let r = s.call(
        "DELETE",
        &format!("/v1/live/sources/{src}"),
        Some(&s.admin),
        None,
    );
    assert_eq!((r.status, r.code()), (409, "conflict"), "outputs attached");
}

/// An SRT feed through the service: ffmpeg calls an `srt_listener` source (AES-256, stream ID),
/// which goes out as UDP and through an `srt_caller` output to libsrt's `srt-live-transmit`
/// listening; both copies are the source's bytes. A caller with the wrong passphrase is refused
/// and counted while the feed runs.
#[test]
fn srt_in_and_out_through_the_service() {
    let s = Server::start(&[]);
    let work = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let pass = "correct-horse-battery";
    let src = create(
        &s,
        "sources",
        json!({"name": "truck", "kind": "srt_listener", "address": format!("127.0.0.1:{port}"),
               "passphrase": pass, "pbkeylen": 32, "stream_id": "truck-3", "latency_ms": 400}),
    );
    let shown = s.call(
        "GET",
        &format!("/v1/live/sources/{src}"),
        Some(&s.admin),
        None,
    );
    assert_eq!(
        shown.body["settings"]["passphrase"], "********",
        "{}",
        shown.body
    );
    let rx = Receiver::start();
    let udp = create(
        &s,
        "outputs",
        json!({"name": "truck-udp", "kind": "udp", "source_id": src,
               "address": format!("127.0.0.1:{}", rx.port)}),
    );
    let peer_port = free_udp_port();
    // The peer passes what it receives on by UDP (its stdout is buffered).
    let got = Receiver::start();
    let mut peer = Command::new("srt-live-transmit")
        .args(["-q", "-a:no"])
        .arg(format!(
            "srt://127.0.0.1:{peer_port}?mode=listener&latency=80"
        ))
        .arg(format!("udp://127.0.0.1:{}", got.port))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("srt-live-transmit is installed (srt-tools)");
    let srt_out = create(
        &s,
        "outputs",
        json!({"name": "to-peer", "kind": "srt_caller", "source_id": src,
               "address": format!("127.0.0.1:{peer_port}"), "latency_ms": 80}),
    );
    wait_for(
        Duration::from_secs(10),
        "the SRT output connected to its peer",
        || (stats(&s, "outputs", srt_out)["link"]["state"] == "live").then_some(()),
    );
    // `linger`: ffmpeg closes its socket when done, and libsrt would drop what is in flight.
    let url = |p: &str| {
        format!(
            "srt://127.0.0.1:{port}?mode=caller&passphrase={}&pbkeylen=32&streamid=truck-3&latency=400000&pkt_size=1316&linger=3",
            p
        )
    };
    let mut ff = ffmpeg_send(3, &["-muxrate", "2M"], "mpegts", &url(pass));
    let wrong = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "quiet", "-re", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x180:rate=25:duration=2")
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-f", "mpegts"])
        .arg(url("not the passphrase"))
        .status()
        .unwrap();
    assert!(
        !wrong.success(),
        "a caller with the wrong passphrase is refused"
    );
    assert!(ff.wait().unwrap().success());
    let end = Instant::now() + Duration::from_secs(20);
    let st = loop {
        let st = stats(&s, "sources", src);
        let u = stats(&s, "outputs", udp);
        let o = stats(&s, "outputs", srt_out);
        let n = st["link"]["bytes"].as_u64().unwrap_or(0);
        let peer_got = got.bytes(0).len() as u64;
        if n > 0
            && u["link"]["bytes"].as_u64() == Some(n)
            && o["link"]["bytes"].as_u64() == Some(n)
            && peer_got == n
        {
            break st;
        }
        assert!(
            Instant::now() < end,
            "the feed did not get through both outputs: source {st}, udp {u}, srt {o}, \
             the SRT peer passed on {peer_got} bytes"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(st["link"]["refused"].as_u64() >= Some(1), "{st}");
    assert_eq!(st["link"]["packets_dropped"], 0, "{st}");
    let via_udp = rx.bytes(0);
    let via_srt = got.bytes(0);
    assert_eq!(via_udp.len(), via_srt.len());
    assert!(via_udp == via_srt, "the same bytes leave by UDP and by SRT");
    let (frames, _, cc) = probe_ts(&via_srt, work.path(), "srt.ts");
    assert!(frames >= 70, "{frames} frames decoded of 75");
    assert!(!cc, "no continuity errors");
    let _ = peer.kill();
    let _ = peer.wait();
}

#[test]
fn rtp_in_and_out() {
    let s = Server::start(&[]);
    let work = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let rx = Receiver::start();
    let src = create(
        &s,
        "sources",
        json!({"name": "rtp-in", "kind": "rtp", "address": format!("127.0.0.1:{port}")}),
    );
    let out = create(
        &s,
        "outputs",
        json!({"name": "rtp-out", "kind": "rtp", "source_id": src,
               "address": format!("127.0.0.1:{}", rx.port)}),
    );
    let mut ff = ffmpeg_send(3, &[], "rtp_mpegts", &format!("rtp://127.0.0.1:{port}"));
    assert!(ff.wait().unwrap().success());
    let st = wait_for(Duration::from_secs(5), "all through", || {
        let st = stats(&s, "sources", src);
        let o = stats(&s, "outputs", out);
        (st["link"]["packets_received"].as_u64() > Some(0)
            && o["link"]["packets_sent"] == st["link"]["packets_received"])
            .then_some(st)
    });
    assert_eq!(st["link"]["packets_lost"], 0, "{st}");
    assert_eq!(st["link"]["packets_malformed"], 0, "{st}");
    let datagrams = rx.datagrams.lock().unwrap().clone();
    assert!(datagrams.len() > 20);
    let mut ts = Vec::new();
    for (i, d) in datagrams.iter().enumerate() {
        assert_eq!((d[0], d[1] & 0x7f), (0x80, 33), "RTP v2, MP2T");
        assert!((d.len() - 12) % 188 == 0 && d.len() - 12 <= 7 * 188);
        if i > 0 {
            let prev = &datagrams[i - 1];
            let seq = |x: &[u8]| u16::from_be_bytes([x[2], x[3]]);
            assert_eq!(
                seq(d),
                seq(prev).wrapping_add(1),
                "consecutive sequence numbers"
            );
            let t = |x: &[u8]| u32::from_be_bytes([x[4], x[5], x[6], x[7]]);
            assert!(
                t(d).wrapping_sub(t(prev)) < 90_000,
                "90 kHz timestamps move on"
            );
        }
        ts.extend_from_slice(&d[12..]);
    }
    assert_eq!(rx.count(), datagrams.len());
    let (frames, _, cc) = probe_ts(&ts, work.path(), "rtp.ts");
    assert!(frames >= 70, "{frames} frames decoded of 75");
    assert!(!cc);
}

#[test]
fn a_file_loops_with_continuous_timestamps() {
    let roots = tempfile::tempdir().unwrap();
    let clip = roots.path().join("slate.mp4");
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=25:duration=1",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=1000:duration=1:sample_rate=48000",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "25",
        "-c:a",
        "aac",
        "-shortest",
        clip.to_str().unwrap(),
    ]);
    let s = Server::start(&[(
        "ANTENNE_INGEST_ROOTS",
        format!("[\"{}\"]", roots.path().display()),
    )]);
    let r = s.call(
        "POST",
        "/v1/live/sources",
        Some(&s.admin),
        Some(&json!({"name": "slate", "kind": "file_loop", "path": "/etc/passwd"})),
    );
    assert_eq!((r.status, r.code()), (422, "invalid_field"), "{}", r.body);
    // The clip as a catalog asset, played by its asset id.
    let r = s.call(
        "POST",
        "/v1/ingest",
        Some(&s.admin),
        Some(&json!({"path": clip})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let asset = r.body["asset"]["id"].as_i64().unwrap();
    let r = s.call(
        "POST",
        "/v1/live/sources",
        Some(&s.admin),
        Some(&json!({"name": "slate", "kind": "file_loop", "asset_id": asset + 1})),
    );
    assert_eq!((r.status, r.code()), (422, "invalid_field"), "{}", r.body);
    let rx = Receiver::start();
    let src = create(
        &s,
        "sources",
        json!({"name": "slate", "kind": "file_loop", "asset_id": asset}),
    );
    create(
        &s,
        "outputs",
        json!({"name": "slate-out", "kind": "udp", "source_id": src,
               "address": format!("127.0.0.1:{}", rx.port)}),
    );
    // Three passes and a bit, at real time.
    let data = wait_for(Duration::from_secs(10), "three loops out", || {
        let (n, pts, _) = probe_ts(&rx.bytes(0), roots.path(), "probe.ts");
        (n >= 80 && pts.last().copied().unwrap_or(0.0) - pts[0] >= 3.2).then(|| rx.bytes(0))
    });
    let (_, pts, cc) = probe_ts(&data, roots.path(), "loop.ts");
    assert!(!cc, "continuity counters run on across loops");
    for w in pts.windows(2) {
        let d = w[1] - w[0];
        assert!(
            d > 0.0 && d <= 0.125,
            "video PTS step {d} s between {} and {} (25 fps)",
            w[0],
            w[1]
        );
    }
    assert!(stats(&s, "sources", src)["state"] == "live");
}

#[test]
fn kinds_this_machine_or_build_lacks_are_refused_by_name() {
    let s = Server::start(&[]);
    for (kind, extra, needle) in [
        ("ndi", json!({"device": "STUDIO (cam 1)"}), "libndi.so.6"),
        ("sdi", json!({"device": "DeckLink Duo (1)"}), "decklink"),
    ] {
        let mut body = json!({"name": format!("in-{kind}"), "kind": kind});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let r = s.call("POST", "/v1/live/sources", Some(&s.admin), Some(&body));
        assert_eq!(
            (r.status, r.code()),
            (422, "kind_unavailable"),
            "{kind}: {}",
            r.body
        );
        let m = r.body["error"]["message"].as_str().unwrap();
        assert!(m.contains(needle), "{kind}: {m}");
    }
    let r = s.call(
        "POST",
        "/v1/live/sources",
        Some(&s.admin),
        Some(&json!({"name": "x", "kind": "udp", "address": "127.0.0.1:1", "passphrase": "0123456789"})),
    );
    assert_eq!((r.status, r.code()), (422, "invalid_field"), "{}", r.body);
    // A port in use: refused, and nothing is left made.
    let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
    let r = s.call(
        "POST",
        "/v1/live/sources",
        Some(&s.admin),
        Some(&json!({"name": "busy", "kind": "udp",
                     "address": busy.local_addr().unwrap().to_string()})),
    );
    assert_eq!((r.status, r.code()), (409, "conflict"), "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in use"),
        "{}",
        r.body
    );
    let r = s.call("GET", "/v1/live/sources", Some(&s.admin), None);
    assert_eq!(r.body["items"], json!([]));
    let doc = s.call("GET", "/openapi.json", None, None).body;
    for p in [
        "/v1/live/sources",
        "/v1/live/sources/{id}",
        "/v1/live/sources/{id}/start",
        "/v1/live/sources/{id}/stop",
        "/v1/live/sources/{id}/stats",
        "/v1/live/sources/{id}/ts",
        "/v1/live/outputs",
        "/v1/live/outputs/{id}",
        "/v1/live/outputs/{id}/start",
        "/v1/live/outputs/{id}/stop",
        "/v1/live/outputs/{id}/stats",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} documented");
    }
    let o = common::run(common::antenne().arg("doctor"));
    let text = common::stdout(&o);
    for kind in ["ndi", "sdi"] {
        let line = text
            .lines()
            .find(|l| l.starts_with("live source") && l.contains(&format!(" {kind} ")))
            .unwrap_or_else(|| panic!("doctor lists {kind}: {text}"));
        assert!(line.contains("unavailable"), "{line}");
    }
}

/// API-made sources and outputs come back after a restart and carry the feed again.
fn resume_after_restart(url: Option<&str>) {
    let data = tempfile::tempdir().unwrap();
    let mut env = vec![(
        "ANTENNE_STORAGE_DATA_DIR",
        data.path().display().to_string(),
    )];
    if let Some(u) = url {
        env.push(("ANTENNE_CATALOG_URL", u.to_string()));
    }
    let port = free_udp_port();
    let rx = Receiver::start();
    let mut s = Server::start(&env);
    let src = create(
        &s,
        "sources",
        json!({"name": "persisted", "kind": "udp", "address": format!("127.0.0.1:{port}"), "buffer_ms": 0}),
    );
    let out = create(
        &s,
        "outputs",
        json!({"name": "persisted-out", "kind": "rtp", "source_id": src,
               "address": format!("127.0.0.1:{}", rx.port)}),
    );
    let idle = create(
        &s,
        "sources",
        json!({"name": "idle", "kind": "udp", "address": "127.0.0.1:0", "enabled": false}),
    );
    assert!(s.stop().success());
    let s = Server::start(&env);
    let r = s.call("GET", "/v1/live/sources", Some(&s.admin), None);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{}", r.body);
    let by_id = |id: i64| items.iter().find(|i| i["id"] == id).unwrap().clone();
    assert_eq!(by_id(src)["running"], true);
    assert_eq!(by_id(src)["state"], "connecting");
    assert_eq!(by_id(idle)["running"], false);
    assert_eq!(by_id(idle)["state"], "stopped");
    let o = s.call(
        "GET",
        &format!("/v1/live/outputs/{out}"),
        Some(&s.admin),
        None,
    );
    assert_eq!(
        (o.body["running"].clone(), o.body["source_id"].clone()),
        (json!(true), json!(src))
    );
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut want = Vec::new();
    for i in 0..30u8 {
        let mut d = vec![i; 7 * 188];
        for p in d.chunks_mut(188) {
            p[0] = 0x47;
        }
        tx.send_to(&d, ("127.0.0.1", port)).unwrap();
        want.extend_from_slice(&d);
    }
    let got = wait_for(
        Duration::from_secs(5),
        "the feed through after the restart",
        || {
            let b = rx.bytes(12);
            (b.len() >= want.len()).then_some(b)
        },
    );
    assert!(got == want);
    wait_for(Duration::from_secs(3), "live", || {
        (stats(&s, "sources", src)["state"] == "live").then_some(())
    });
}

#[test]
fn api_made_sources_resume_after_a_restart_sqlite() {
    resume_after_restart(None);
}

#[test]
fn api_made_sources_resume_after_a_restart_postgres() {
    let pg = Pg::start().expect("PostgreSQL installed");
    resume_after_restart(Some(&pg.url));
}

#[test]
fn multicast_in_and_out_joined_on_an_interface() {
    let s = Server::start(&[]);
    let (in_port, out_port) = (free_udp_port(), free_udp_port());
    let (in_group, out_group) = ("239.255.41.1", "239.255.41.2");
    // The far end: a receiver of the output's group, joined on the loopback interface.
    let rx = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    rx.set_reuse_address(true).unwrap();
    let bind: std::net::SocketAddr = format!("{out_group}:{out_port}").parse().unwrap();
    rx.bind(&bind.into()).unwrap();
    rx.join_multicast_v4(&out_group.parse().unwrap(), &"127.0.0.1".parse().unwrap())
        .unwrap();
    let rx: UdpSocket = rx.into();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let src = create(
        &s,
        "sources",
        json!({"name": "mc-in", "kind": "udp", "address": format!("{in_group}:{in_port}"),
               "interface": "127.0.0.1", "buffer_ms": 0}),
    );
    create(
        &s,
        "outputs",
        json!({"name": "mc-out", "kind": "rtp", "source_id": src, "ttl": 1,
               "address": format!("{out_group}:{out_port}"), "interface": "127.0.0.1"}),
    );
    let tx = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    tx.set_multicast_if_v4(&"127.0.0.1".parse().unwrap())
        .unwrap();
    let tx: UdpSocket = tx.into();
    let mut want = Vec::new();
    for i in 0..20u8 {
        let mut d = vec![i; 7 * 188];
        for p in d.chunks_mut(188) {
            p[0] = 0x47;
        }
        tx.send_to(&d, (in_group, in_port)).unwrap();
        want.extend_from_slice(&d);
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got.len() < want.len() {
        let n = rx.recv(&mut buf).expect("the output's multicast arrives");
        assert_eq!(buf[1] & 0x7f, 33, "RTP MP2T");
        got.extend_from_slice(&buf[12..n]);
    }
    assert!(got == want);
}

#[test]
fn declared_sources_run_and_are_changed_in_the_file_only() {
    let data = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let rx = Receiver::start();
    let env = vec![
        (
            "ANTENNE_STORAGE_DATA_DIR",
            data.path().display().to_string(),
        ),
        (
            "ANTENNE_LIVE_SOURCES",
            format!(
                r#"[{{name = "house", kind = "udp", address = "127.0.0.1:{port}", buffer_ms = 0}}]"#
            ),
        ),
        (
            "ANTENNE_LIVE_OUTPUTS",
            format!(
                r#"[{{name = "house-out", source = "house", kind = "udp", address = "127.0.0.1:{}"}}]"#,
                rx.port
            ),
        ),
    ];
    let mut s = Server::start(&env);
    let r = s.call("GET", "/v1/live/sources", Some(&s.admin), None);
    let src = &r.body["items"][0];
    assert_eq!(
        (src["origin"].clone(), src["running"].clone()),
        (json!("config"), json!(true)),
        "{}",
        r.body
    );
    let id = src["id"].as_i64().unwrap();
    let r = s.call(
        "PUT",
        &format!("/v1/live/sources/{id}"),
        Some(&s.admin),
        Some(&json!({"name": "house", "kind": "udp", "address": "127.0.0.1:1"})),
    );
    assert_eq!((r.status, r.code()), (409, "conflict"), "{}", r.body);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("antenne.toml"));
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut d = vec![7u8; 7 * 188];
    for p in d.chunks_mut(188) {
        p[0] = 0x47;
    }
    tx.send_to(&d, ("127.0.0.1", port)).unwrap();
    let got = wait_for(
        Duration::from_secs(5),
        "the declared output carries it",
        || {
            let b = rx.bytes(0);
            (b.len() >= d.len()).then_some(b)
        },
    );
    assert_eq!(got, d);
    // Operators may stop and start it.
    let r = s.call(
        "POST",
        &format!("/v1/live/sources/{id}/stop"),
        Some(&s.admin),
        None,
    );
    assert_eq!((r.status, r.body["state"].clone()), (200, json!("stopped")));
    let r = s.call(
        "POST",
        &format!("/v1/live/sources/{id}/start"),
        Some(&s.admin),
        None,
    );
    assert_eq!(
        (r.status, r.body["state"].clone()),
        (200, json!("connecting"))
    );
    // Taken out of the file, it goes.
    assert!(s.stop().success());
    let s = Server::start(&env[..1]);
    let r = s.call("GET", "/v1/live/sources", Some(&s.admin), None);
    assert_eq!(r.body["items"], json!([]), "{}", r.body);
    let r = s.call("GET", "/v1/live/outputs", Some(&s.admin), None);
    assert_eq!(r.body["items"], json!([]), "{}", r.body);
}

/// Two appliances on one PostgreSQL catalog (a 2 s lease): a source and its output run on the
/// appliance that made them and only there (the other shows who runs them and keeps off the
/// port, lease after lease; a change made through it reaches the one that runs them); when that
/// appliance dies (`kill -9`, nothing given back) the other takes both over once the lease has
/// run out and carries the feed; stopped through it, nobody runs the source.
#[test]
fn two_appliances_run_a_source_once_and_one_takes_over_when_the_other_dies() {
    let pg = Pg::start().expect("PostgreSQL installed");
    let env = |name: &str| {
        vec![
            ("ANTENNE_CATALOG_URL", pg.url.clone()),
            ("ANTENNE_JOBS_APPLIANCE", name.to_string()),
            ("ANTENNE_LIVE_LEASE_S", "2".to_string()),
        ]
    };
    let mut a = Server::start(&env("alpha"));
    let b = Server::start(&env("beta"));
    let port = free_udp_port();
    let rx = Receiver::start();
    let src = create(
        &a,
        "sources",
        json!({"name": "shared", "kind": "udp", "address": format!("127.0.0.1:{port}"), "buffer_ms": 0}),
    );
    let out = create(
        &a,
        "outputs",
        json!({"name": "shared-out", "kind": "udp", "source_id": src,
               "address": format!("127.0.0.1:{}", rx.port)}),
    );
    let view = |s: &Server, what: &str, id: i64| {
        s.call(
            "GET",
            &format!("/v1/live/{what}/{id}"),
            Some(&s.admin),
            None,
        )
        .body
    };
    assert_eq!(view(&a, "sources", src)["owner"], "alpha");
    assert_eq!(view(&a, "outputs", out)["owner"], "alpha");
    wait_for(Duration::from_secs(5), "beta sees alpha run both", || {
        (view(&b, "sources", src)["owner"] == "alpha"
            && view(&b, "outputs", out)["owner"] == "alpha")
            .then_some(())
    });
    // Longer than a lease: alpha renews, beta keeps off.
    std::thread::sleep(Duration::from_secs(3));
    for (what, id) in [("sources", src), ("outputs", out)] {
        let v = view(&b, what, id);
        assert_eq!(
            (v["owner"].as_str(), v["state"].as_str()),
            (Some("alpha"), Some("stopped")),
            "{v}"
        );
    }
    // Changed through beta: alpha, which runs it, restarts it with the change.
    let r = b.call(
        "PUT",
        &format!("/v1/live/sources/{src}"),
        Some(&b.admin),
        Some(
            &json!({"name": "shared", "kind": "udp", "address": format!("127.0.0.1:{port}"),
                     "buffer_ms": 0, "loss_ms": 800}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(Duration::from_secs(5), "alpha runs the change", || {
        (stats(&a, "sources", src)["loss_ms"] == 800).then_some(())
    });
    assert_eq!(view(&b, "sources", src)["owner"], "alpha");
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |from: u8, to: u8| {
        let mut sent = Vec::new();
        for i in from..to {
            let mut d = vec![i; 7 * 188];
            for p in d.chunks_mut(188) {
                p[0] = 0x47;
            }
            tx.send_to(&d, ("127.0.0.1", port)).unwrap();
            sent.extend_from_slice(&d);
            std::thread::sleep(Duration::from_millis(2));
        }
        sent
    };
    let mut want = send(0, 20);
    wait_for(Duration::from_secs(5), "the feed through alpha", || {
        (rx.len() >= want.len()).then_some(())
    });
    assert!(
        rx.bytes(0) == want,
        "each datagram once, through alpha only"
    );

    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let died = Instant::now();
    wait_for(Duration::from_secs(10), "beta takes both over", || {
        (view(&b, "sources", src)["owner"] == "beta" && view(&b, "outputs", out)["owner"] == "beta")
            .then_some(())
    });
    let took = died.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "taken over after {took:?} (lease 2 s)"
    );
    want.extend(send(20, 40));
    wait_for(Duration::from_secs(5), "the feed through beta", || {
        (rx.len() >= want.len()).then_some(())
    });
    assert!(
        rx.bytes(0) == want,
        "after the takeover, the feed goes on, once"
    );
    wait_for(Duration::from_secs(3), "live on beta", || {
        (stats(&b, "sources", src)["state"] == "live").then_some(())
    });

    let r = b.call(
        "POST",
        &format!("/v1/live/sources/{src}/stop"),
        Some(&b.admin),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["owner"].is_null(), "{}", r.body);
    assert_eq!(r.body["state"], "stopped");
}
