//! A live source's monitor against the real service, with ffmpeg as the sender: the JPEG preview
//! (and the last one kept when the feed stops), audio peak and loudness compared with ffmpeg's
//! own ebur128 meter on the same signal, silence, a TS whose payloads are garbage, and bytes
//! that are no TS at all (a lost source, though bytes arrive).

mod common;

use common::live::{free_udp_port, stats, udp_source, wait_for};

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::server::Server;
use serde_json::Value;

/// Two channels of a 1 kHz sine peaking at 0.1 (-20 dBFS).
const TONE: &str = "0.1*sin(2*PI*1000*t)|0.1*sin(2*PI*1000*t)";
const SILENCE: &str = "0|0";

/// ffmpeg sending `seconds` of 320x180 H.264 with AAC of `audio` (an aevalsrc expression) at
/// real-time pace.
fn send(seconds: u32, audio: &str, port: u16) -> std::process::Child {
    Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=320x180:rate=25:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("aevalsrc={audio}:s=48000:d={seconds}"))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .args(["-c:a", "aac", "-b:a", "192k", "-f", "mpegts"])
        .arg(format!("udp://127.0.0.1:{port}?pkt_size=1316"))
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg is installed")
}

/// ffmpeg's own short-term loudness (the last `S:` of its ebur128 filter) of 4 s of `audio`.
fn ffmpeg_short_term(audio: &str) -> f64 {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-f", "lavfi", "-i"])
        .arg(format!("aevalsrc={audio}:s=48000:d=4"))
        .args(["-af", "ebur128", "-f", "null", "-"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    err.lines()
        .rev()
        .filter_map(|l| {
            let s = l.split(" S:").nth(1)?;
            s.split_whitespace().next()?.parse::<f64>().ok()
        })
        .next()
        .expect("ffmpeg's ebur128 prints short-term values")
}

fn preview(s: &Server, id: i64) -> (common::server::Reply, Vec<u8>) {
    s.request(
        "GET",
        &format!("/v1/live/sources/{id}/preview.jpg"),
        Some(&s.admin),
        &[],
        None,
    )
}

#[test]
fn preview_levels_and_the_last_picture_kept() {
    let s = Server::start(&[("ANTENNE_LIVE_PREVIEW_S", "1".into())]);
    let work = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let src = udp_source(&s, "cam-tone", port);

    let (r, _) = preview(&s, src);
    assert_eq!(r.status, 404, "no picture before the feed: {}", r.body);
    assert_eq!(r.code(), "not_found");
    assert!(r.body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("preview")));

    let (_, viewer) = s.user("watcher", "viewer");
    let r = s.call(
        "GET",
        &format!("/v1/live/sources/{src}/preview.jpg"),
        Some(&viewer),
        None,
    );
    assert_eq!(
        r.status, 403,
        "read rights as the other live routes: {}",
        r.body
    );
    let doc = s.call("GET", "/openapi.json", None, None).body;
    let op = &doc["paths"]["/v1/live/sources/{id}/preview.jpg"]["get"];
    assert!(
        op["responses"]["200"]["content"]["image/jpeg"].is_object(),
        "{op}"
    );
    assert!(op["responses"]["404"].is_object(), "{op}");

    let mut sender = send(7, TONE, port);
    let (r, jpeg) = wait_for(Duration::from_secs(15), "a preview", || {
        let (r, b) = preview(&s, src);
        (r.status == 200).then_some((r, b))
    });
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r
        .header("last-modified")
        .is_some_and(|v| v.ends_with(" GMT")));
    assert!(r.header("age").is_some());
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "JPEG SOI");
    assert_eq!(&jpeg[jpeg.len() - 2..], &[0xFF, 0xD9], "JPEG EOI");
    let f = work.path().join("p.jpg");
    std::fs::write(&f, &jpeg).unwrap();
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
        ])
        .args(["-of", "csv=p=0"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "mjpeg,320,180");

    // 3 s of tone reach the meter: the short-term window is full.
    let expected = ffmpeg_short_term(TONE);
    let st = wait_for(Duration::from_secs(10), "a full short-term window", || {
        let st = stats(&s, "sources", src);
        let a = &st["monitor"]["audio"];
        let lufs = a["short_term_lufs"].as_f64()?;
        ((lufs - expected).abs() <= 1.0 && st["monitor"]["audio_frames_decoded"].as_u64()? > 150)
            .then_some(st)
    });
    let m = &st["monitor"];
    let channels = m["audio"]["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 2, "{m}");
    for c in channels {
        let p = c["peak_dbfs"].as_f64().unwrap();
        assert!((p + 20.0).abs() <= 1.0, "peak {p} dBFS, sent -20: {m}");
    }
    let momentary = m["audio"]["momentary_lufs"].as_f64().unwrap();
    assert!(
        (momentary - expected).abs() <= 1.5,
        "momentary {momentary}: {m}"
    );
    assert_eq!(m["decode_errors"], 0, "{m}");
    let (fin, dec) = (
        m["frames_in"].as_u64().unwrap(),
        m["frames_decoded"].as_u64().unwrap(),
    );
    assert!(fin >= 50 && dec >= 1, "{m}");
    assert!(
        dec * 2 < fin,
        "only pictures near preview times are decoded: {m}"
    );
    let offset = m["av_offset_s"].as_f64().unwrap();
    assert!(offset.abs() < 1.0, "A/V offset {offset}: {m}");
    // The monitor takes its packets from the source's one demux, the hub's one reader here.
    assert!(st["readers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "demux"));
    assert!(
        m["demux"]["subscribers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "monitor" && r["packets"].as_u64().unwrap_or(0) > 0),
        "{m}"
    );

    let (r, text) = s.request("GET", "/metrics", Some(&s.admin), &[], None);
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&text);
    for name in [
        "antenne_live_audio_peak_dbfs{",
        "antenne_live_audio_short_term_lufs{",
        "antenne_live_audio_momentary_lufs{",
    ] {
        assert!(text.contains(name), "{name} in /metrics");
    }
    assert!(sender.wait().unwrap().success());

    // The feed stopped: the last picture stays, older and older.
    let age = |st: &Value| st["monitor"]["preview_age_s"].as_f64().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let a0 = age(&stats(&s, "sources", src));
    std::thread::sleep(Duration::from_millis(2100));
    let later = stats(&s, "sources", src);
    assert!(age(&later) >= a0 + 2.0, "the age grows: {a0} then {later}");
    let (r, again) = preview(&s, src);
    assert_eq!(r.status, 200);
    assert!(r.header("age").unwrap().parse::<u64>().unwrap() >= 2);
    assert_eq!(&again[..2], &[0xFF, 0xD8]);
}

/// A short clip whose coded video and audio ffmpeg's `noise` bitstream filter has corrupted
/// (the TS around them is whole): it demuxes, and its audio does not decode.
fn garbage_ts(dir: &std::path::Path) -> Vec<u8> {
    let f = dir.join("noisy.ts");
    let ok = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x180:rate=25:duration=6")
        .args(["-f", "lavfi", "-i", "sine=frequency=1000:duration=6"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .args([
            "-c:a",
            "aac",
            "-bsf:v",
            "noise=amount=20",
            "-bsf:a",
            "noise=amount=5",
        ])
        .args(["-y"])
        .arg(&f)
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::read(&f).unwrap()
}

#[test]
fn silence_is_very_low_and_garbage_counts_decode_errors() {
    let s = Server::start(&[("ANTENNE_LIVE_PREVIEW_S", "1".into())]);
    let work = tempfile::tempdir().unwrap();
    let (quiet_port, bad_port) = (free_udp_port(), free_udp_port());
    let quiet = udp_source(&s, "cam-quiet", quiet_port);
    let bad = udp_source(&s, "cam-garbage", bad_port);
    let mut sender = send(5, SILENCE, quiet_port);

    let ts = garbage_ts(work.path());
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    // About 6 s of TS in about 3 s.
    let per_ms = ts.len() / 1316 / 3000 + 1;
    for (i, d) in ts.chunks(1316).enumerate() {
        sock.send_to(d, ("127.0.0.1", bad_port)).unwrap();
        if i % per_ms == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    let m = wait_for(Duration::from_secs(15), "decode errors counted", || {
        let m = stats(&s, "sources", bad)["monitor"].clone();
        (m["decode_errors"].as_u64()? > 0).then_some(m)
    });
    assert!(m["frames_in"].as_u64().unwrap() > 0, "{m}");

    let m = wait_for(Duration::from_secs(10), "silence measured", || {
        let m = stats(&s, "sources", quiet)["monitor"].clone();
        (m["audio_frames_decoded"].as_u64()? > 100).then_some(m)
    });
    for c in m["audio"]["channels"].as_array().unwrap() {
        assert!(
            c["peak_dbfs"].as_f64().is_none_or(|p| p < -90.0),
            "silence peaks at {c}: {m}"
        );
    }
    for k in ["short_term_lufs", "momentary_lufs"] {
        assert!(
            m["audio"][k].as_f64().is_none_or(|l| l < -70.0),
            "silence {k}: {m}"
        );
    }
    assert!(sender.wait().unwrap().success());
    // The service is well after all of it.
    assert_eq!(stats(&s, "sources", bad)["id"], bad);
}

/// Datagrams of seven 188-byte packets that look like TS (a sync byte each) but carry random
/// PIDs and bytes, no PAT or PMT: nothing demuxes. About 700 a second, until `stop`.
fn spray(
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut x: u32 = 0x1234_5678;
        let mut sent = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let d: Vec<u8> = (0..1316)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    match (i % 188, x as u8) {
                        (0, _) => 0x47,
                        // Never PID 0 (the PAT).
                        (1, b) => b | 0x01,
                        (_, b) => b,
                    }
                })
                .collect();
            let _ = sock.send_to(&d, ("127.0.0.1", port));
            sent += 1;
            std::thread::sleep(Duration::from_micros(1400));
        }
        sent
    })
}

#[test]
fn bytes_that_never_demux_are_a_lost_source() {
    let s = Server::start(&[]);
    let port = free_udp_port();
    let id = udp_source(&s, "cam-noise", port);
    // A real feed first: the source is live.
    let mut sender = send(4, TONE, port);
    wait_for(Duration::from_secs(15), "the source live", || {
        (stats(&s, "sources", id)["state"] == "live").then_some(())
    });
    assert!(sender.wait().unwrap().success());
    // Then TS-shaped bytes keep arriving, but nothing in them demuxes: lost, though bytes
    // arrive.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise = spray(port, stop.clone());
    let st = wait_for(
        Duration::from_secs(20),
        "the source lost under noise",
        || {
            let st = stats(&s, "sources", id);
            (st["state"] == "lost").then_some(st)
        },
    );
    // Still lost once more bytes have been taken in (not after a guessed time).
    let before = st["link"]["bytes"].as_u64().unwrap_or(0);
    let st = wait_for(Duration::from_secs(10), "more noise taken in", || {
        let st = stats(&s, "sources", id);
        (st["link"]["bytes"].as_u64().unwrap_or(0) > before).then_some(st)
    });
    assert_eq!(st["state"], "lost", "bytes arrive but do not demux: {st}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(noise.join().unwrap() > 1000);
    // A real feed again: live again.
    let mut sender = send(4, TONE, port);
    wait_for(Duration::from_secs(15), "the source live again", || {
        (stats(&s, "sources", id)["state"] == "live").then_some(())
    });
    let _ = sender.kill();
    let _ = sender.wait();
}

/// CPU time of this process (user + system), from /proc/self/stat, in seconds.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces) end at its closing parenthesis.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // Clock ticks are 1/100 s on Linux.
    ticks / 100.0
}

/// What one monitor costs on a 720p25 feed: CPU % of this process (the monitor alone; ffmpeg
/// sends from its own process) over 10 s. `ANTENNE_MONITOR_CPU=1 cargo test --test live_monitor
/// monitor_cpu -- --nocapture`.
#[test]
fn monitor_cpu_on_720p25() {
    if std::env::var_os("ANTENNE_MONITOR_CPU").is_none() {
        return;
    }
    use antenne::link::ChunkSink;
    use std::io::Read;
    let hub = antenne::hub::Hub::new("cpu");
    let monitor = antenne::hub::monitor::Monitor::start(&hub, Duration::from_secs(5)).unwrap();
    let mut ff = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=1280x720:rate=25:duration=14")
        .args(["-f", "lavfi", "-i"])
        .arg(format!("aevalsrc={TONE}:s=48000:d=14"))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-b:v",
            "5M",
            "-g",
            "50",
        ])
        .args(["-c:a", "aac", "-f", "mpegts", "-"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = ff.stdout.take().unwrap();
    let feeding = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1316];
        while out.read_exact(&mut buf).is_ok() {
            hub.deliver(bytes::Bytes::copy_from_slice(&buf));
        }
        hub.close();
    });
    std::thread::sleep(Duration::from_secs(3));
    let (c0, t0) = (cpu_s(), Instant::now());
    std::thread::sleep(Duration::from_secs(10));
    let pct = (cpu_s() - c0) / t0.elapsed().as_secs_f64() * 100.0;
    let st = monitor.stats();
    println!("monitor on 720p25 H.264 5 Mb/s + AAC stereo: {pct:.1} % of one core; {st:?}");
    assert!(st.previews >= 2 && st.audio_frames_decoded > 0, "{st:?}");
    ff.wait().unwrap();
    feeding.join().unwrap();
}
