//! Transcoding live outputs with failover against the real service: two UDP sources fed by
//! ffmpeg (different tones), an output with a live profile, a backup and the generated slate, to
//! UDP. The primary's sender is killed (→ backup), then the backup's (→ slate), then the primary
//! comes back (→ primary); each switch is an event with its reason, and the output TS stays conformant and continuous throughout. And an
//! `hls` output: its ladder served over HTTP.

mod common;

use common::live::{create, events, free_udp_port, stats, Receiver};

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::server::Server;
use common::ts::{check, Limits};
use serde_json::{json, Value};

/// Waits for the output's next `switched` event; returns what it says (from, to, reason).
fn wait_switch(rx: &mpsc::Receiver<Value>, id: i64, within: Duration) -> Value {
    let end = Instant::now() + within;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        let Ok(v) = rx.recv_timeout(left) else { break };
        if v["id"] == id && v["op"] == "switched" {
            return v["detail"].clone();
        }
    }
    panic!("no switched event for live output {id} within {within:?}");
}

/// ffmpeg sending 320x180 with a tone at real-time pace to a UDP port, for up to a minute.
fn send(port: u16, tone: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x180:rate=25:duration=60")
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency={tone}:duration=60:sample_rate=48000"
        ))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-b:v",
            "500k",
            "-c:a",
            "aac",
            "-f",
            "mpegts",
        ])
        .arg(format!("udp://127.0.0.1:{port}?pkt_size=1316"))
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg is installed")
}

/// Waits until the output has sent `more` bytes beyond what it had.
fn wait_bytes(rx: &Receiver, more: usize, within: Duration) {
    let want = rx.len() + more;
    let end = Instant::now() + within;
    while rx.len() < want {
        assert!(
            Instant::now() < end,
            "the output stopped: {} bytes",
            rx.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_transcoding_output_fails_over_to_the_backup_then_the_slate_and_back() {
    let profiles = tempfile::tempdir().unwrap();
    std::fs::write(
        profiles.path().join("live-test-180p.toml"),
        common::live::LIVE_PROFILE_180P,
    )
    .unwrap();
    let s = Server::start(&[(
        "ANTENNE_TRANSCODE_PROFILES_DIR",
        profiles.path().display().to_string(),
    )]);
    let (pp, bp) = (free_udp_port(), free_udp_port());
    let p = create(
        &s,
        "sources",
        json!({"name": "primary", "kind": "udp", "address": format!("127.0.0.1:{pp}"),
               "loss_ms": 500}),
    );
    let b = create(
        &s,
        "sources",
        json!({"name": "backup", "kind": "udp", "address": format!("127.0.0.1:{bp}"),
               "loss_ms": 500}),
    );

    // Refusals: a file profile, and failover without a profile.
    let r = s.call(
        "POST",
        "/v1/live/outputs",
        Some(&s.admin),
        Some(
            &json!({"name": "x", "kind": "udp", "source_id": p, "address": "127.0.0.1:9",
                     "profile": "web-h264"}),
        ),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.to_string().contains("not a live"), "{}", r.body);
    let r = s.call(
        "POST",
        "/v1/live/outputs",
        Some(&s.admin),
        Some(
            &json!({"name": "x", "kind": "udp", "source_id": p, "address": "127.0.0.1:9",
                     "backup_id": b}),
        ),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.to_string().contains("needs a `profile`"),
        "{}",
        r.body
    );
    // A slate file outside the ingest roots and the media, and an asset that is not there.
    for slate in ["/etc/passwd", "987654"] {
        let r = s.call(
            "POST",
            "/v1/live/outputs",
            Some(&s.admin),
            Some(
                &json!({"name": "x", "kind": "udp", "source_id": p, "address": "127.0.0.1:9",
                         "profile": "live-test-180p", "slate": slate}),
            ),
        );
        assert_eq!(r.status, 422, "{}", r.body);
        assert!(r.body.to_string().contains("slate"), "{}", r.body);
    }

    // ANTENNE_LIVE_LONG=1 holds each of the four phases for 15 s: a run of over 60 s with the
    // three switches, all of it checked below.
    let hold = if std::env::var("ANTENNE_LIVE_LONG").as_deref() == Ok("1") {
        Duration::from_secs(15)
    } else {
        Duration::ZERO
    };
    let mut primary = send(pp, 440);
    let mut backup = send(bp, 880);
    let rx = Receiver::start();
    let ev = events(&s, "live_output");
    let out = create(
        &s,
        "outputs",
        json!({"name": "air", "kind": "udp", "source_id": p, "address": format!("127.0.0.1:{}", rx.port),
               "profile": "live-test-180p", "backup_id": b, "slate": "bars",
               "loss_ms": 500, "return_after_s": 30}),
    );
    // On air from the primary.
    wait_bytes(&rx, 200_000, Duration::from_secs(20));
    let st = stats(&s, "outputs", out);
    assert_eq!(st["last_switch"]["to"], "primary", "{st}");
    assert_eq!(st["switches"], 0, "{st}");
    // The source is demuxed once: the output's input and the monitor both take the packets of
    // its one demux, the only reader of its hub.
    assert!(st["demux"]["packets"].as_u64().unwrap_or(0) > 0, "{st}");
    let src = s
        .call(
            "GET",
            &format!("/v1/live/sources/{p}/stats"),
            Some(&s.admin),
            None,
        )
        .body;
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(names(&src["readers"]), ["demux"], "{src}");
    let mut subs = names(&src["monitor"]["demux"]["subscribers"]);
    subs.sort();
    assert_eq!(subs, ["monitor", &format!("output {out}")], "{src}");
    std::thread::sleep(hold);

    primary.kill().unwrap();
    primary.wait().unwrap();
    let sw = wait_switch(&ev, out, Duration::from_secs(5));
    assert_eq!(sw["from"], "primary", "{sw}");
    assert_eq!(sw["to"], "backup", "{sw}");
    assert!(
        sw["reason"].as_str().unwrap_or("").contains("no packet"),
        "{sw}"
    );
    let st = stats(&s, "outputs", out);
    assert_eq!(st["last_switch"]["from"], "primary", "{st}");
    assert_eq!(st["last_switch"]["to"], "backup", "{st}");
    assert!(
        st["last_switch"]["reason"]
            .as_str()
            .unwrap()
            .contains("no packet"),
        "{st}"
    );
    assert_eq!(st["state"], "failover", "{st}");
    wait_bytes(&rx, 150_000, Duration::from_secs(5));
    std::thread::sleep(hold);

    backup.kill().unwrap();
    backup.wait().unwrap();
    let sw = wait_switch(&ev, out, Duration::from_secs(5));
    assert_eq!(
        (&sw["from"], &sw["to"]),
        (&json!("backup"), &json!("slate")),
        "{sw}"
    );
    let st = stats(&s, "outputs", out);
    assert_eq!(st["last_switch"]["to"], "slate", "{st}");
    assert_eq!(st["switches"], 2, "{st}");
    wait_bytes(&rx, 150_000, Duration::from_secs(5));
    std::thread::sleep(hold);

    // The primary's sender comes back: off the slate at once (the slate is the worst on air).
    let mut primary = send(pp, 440);
    let sw = wait_switch(&ev, out, Duration::from_secs(10));
    assert_eq!(
        (&sw["from"], &sw["to"]),
        (&json!("slate"), &json!("primary")),
        "{sw}"
    );
    assert!(
        sw["reason"].as_str().unwrap_or("").contains("restored"),
        "{sw}"
    );
    wait_bytes(&rx, 150_000, Duration::from_secs(5));
    std::thread::sleep(hold);
    let st = stats(&s, "outputs", out);
    assert_eq!(st["switches"], 3, "{st}");
    assert_eq!(st["state"], "live", "{st}");
    let (m, bytes) = s.request("GET", "/metrics", Some(&s.admin), &[], None);
    assert_eq!(m.status, 200);
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains(&format!(
            "antenne_live_output_switches_total{{output=\"{out}\"}} 3"
        )),
        "{text}"
    );
    let r = s.call(
        "POST",
        &format!("/v1/live/outputs/{out}/stop"),
        Some(&s.admin),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let _ = primary.kill();
    let _ = primary.wait();

    // The whole capture: conformant, continuous, and readable by ffprobe without a complaint.
    let data = rx.bytes(0);
    let start = data.iter().position(|&b| b == 0x47).unwrap_or(0);
    let data = &data[start..start + (data.len() - start) / 188 * 188];
    let report = check(data, Limits::default());
    assert!(report.is_clean(), "{:?}", report.first_errors);
    let work = tempfile::tempdir().unwrap();
    let f = work.path().join("out.ts");
    std::fs::write(&f, data).unwrap();
    let o = Command::new("ffprobe")
        .args(["-v", "debug", "-select_streams", "v:0"])
        .args(["-show_entries", "frame=pts_time", "-of", "csv=p=0"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("Continuity check failed"),
        "ffprobe saw continuity errors"
    );
    let pts: Vec<f64> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    assert!(pts.len() > 100, "{} frames", pts.len());
    for w in pts.windows(2) {
        let d = w[1] - w[0];
        assert!((d - 0.04).abs() < 0.002, "PTS step {d} at {}", w[0]);
    }
}

/// A small live HLS ladder (two renditions, 1 s segments) for the same reason.
const SMALL_LADDER: &str = r#"
name = "live-test-ladder"
description = "Live test ladder 320x180 + 160x90, 1 s fMP4 segments"

[package]
hls_master = true
skip_upscale = false

[[outputs]]
name = "180p"
container = "hls"
[outputs.hls]
segment_seconds = 1.0
segment_type = "fmp4"
[outputs.video]
codec = "h264"
width = 320
height = 180
frame_rate = "25/1"
pix_fmt = "yuv420p"
profile = "high"
level = "4.0"
rate_control = "vbr"
bitrate = "400k"
maxrate = "500k"
bufsize = "500k"
gop_seconds = 1.0
b_frames = 0
preset = "ultrafast"
[outputs.audio]
codec = "aac"
bitrate = "64k"
sample_rate = 48000
tracks = ["stereo"]

[[outputs]]
name = "90p"
container = "hls"
[outputs.hls]
segment_seconds = 1.0
segment_type = "fmp4"
[outputs.video]
codec = "h264"
width = 160
height = 90
frame_rate = "25/1"
pix_fmt = "yuv420p"
profile = "main"
level = "3.0"
rate_control = "vbr"
bitrate = "150k"
maxrate = "200k"
bufsize = "200k"
gop_seconds = 1.0
b_frames = 0
preset = "ultrafast"
[outputs.audio]
codec = "aac"
bitrate = "64k"
sample_rate = 48000
tracks = ["stereo"]
"#;

/// GET of a ladder file: status, content type, body.
/// The manual failover switch: an operator puts the output on its backup, where it stays while
/// the primary is healthy, then back on its primary; each switch is a `switched` event with the
/// operator's reason, like the automatic ones, and is in the audit log. Refused to a viewer, for
/// an unknown target and for an output without failover.
#[test]
fn an_operator_switches_an_output_to_its_backup_and_back() {
    let profiles = tempfile::tempdir().unwrap();
    std::fs::write(
        profiles.path().join("live-test-180p.toml"),
        common::live::LIVE_PROFILE_180P,
    )
    .unwrap();
    let s = Server::start(&[(
        "ANTENNE_TRANSCODE_PROFILES_DIR",
        profiles.path().display().to_string(),
    )]);
    let (pp, bp) = (free_udp_port(), free_udp_port());
    let p = create(
        &s,
        "sources",
        json!({"name": "primary", "kind": "udp", "address": format!("127.0.0.1:{pp}")}),
    );
    let b = create(
        &s,
        "sources",
        json!({"name": "backup", "kind": "udp", "address": format!("127.0.0.1:{bp}")}),
    );
    let mut primary = send(pp, 440);
    let mut backup = send(bp, 880);
    let rx = Receiver::start();
    let ev = events(&s, "live_output");
    let out = create(
        &s,
        "outputs",
        json!({"name": "air", "kind": "udp", "source_id": p, "address": format!("127.0.0.1:{}", rx.port),
               "profile": "live-test-180p", "backup_id": b, "loss_ms": 500, "return_after_s": 1}),
    );
    let plain = create(
        &s,
        "outputs",
        json!({"name": "plain", "kind": "udp", "source_id": p, "address": "127.0.0.1:9"}),
    );
    wait_bytes(&rx, 200_000, Duration::from_secs(20));
    assert_eq!(stats(&s, "outputs", out)["last_switch"]["to"], "primary");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let st = s.call(
            "GET",
            &format!("/v1/live/sources/{b}"),
            Some(&s.admin),
            None,
        );
        if st.body["state"] == "live" {
            break;
        }
        assert!(Instant::now() < end, "the backup is not live: {}", st.body);
        std::thread::sleep(Duration::from_millis(100));
    }
    let switch = |who: &str, body: Value| {
        s.call(
            "POST",
            &format!("/v1/live/outputs/{out}/switch"),
            Some(who),
            Some(&body),
        )
    };

    let r = switch(&s.admin, json!({"to": "backup"}));
    assert_eq!(r.status, 200, "{}", r.body);
    let sw = wait_switch(&ev, out, Duration::from_secs(5));
    assert_eq!(
        (
            sw["from"].as_str(),
            sw["to"].as_str(),
            sw["reason"].as_str()
        ),
        (Some("primary"), Some("backup"), Some("operator's choice")),
        "{sw}"
    );
    assert_eq!(sw["on_primary"], false);
    // The choice holds: the primary, healthy all along, is not taken back after return_after_s.
    std::thread::sleep(Duration::from_secs(3));
    let st = stats(&s, "outputs", out);
    assert_eq!(
        (st["last_switch"]["to"].as_str(), st["switches"].as_u64()),
        (Some("backup"), Some(1)),
        "{st}"
    );
    assert_eq!(st["state"], "failover", "{st}");
    wait_bytes(&rx, 50_000, Duration::from_secs(5));

    let r = switch(&s.admin, json!({"to": "primary"}));
    assert_eq!(r.status, 200, "{}", r.body);
    let sw = wait_switch(&ev, out, Duration::from_secs(5));
    assert_eq!(
        (
            sw["from"].as_str(),
            sw["to"].as_str(),
            sw["reason"].as_str()
        ),
        (Some("backup"), Some("primary"), Some("operator's choice")),
        "{sw}"
    );
    assert_eq!(sw["on_primary"], true);

    // Refusals, each in words.
    let (_, viewer) = s.user("vic", "viewer");
    let r = switch(&viewer, json!({"to": "backup"}));
    assert_eq!((r.status, r.code()), (403, "forbidden"), "{}", r.body);
    let r = switch(&s.admin, json!({"to": "sideways"}));
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"]["field"], "to", "{}", r.body);
    let r = switch(&s.admin, json!({"to": "backup", "now": true}));
    assert_eq!(r.status, 422, "{}", r.body);
    let r = s.call(
        "POST",
        &format!("/v1/live/outputs/{plain}/switch"),
        Some(&s.admin),
        Some(&json!({"to": "backup"})),
    );
    assert_eq!((r.status, r.code()), (409, "conflict"), "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no failover"),
        "{}",
        r.body
    );
    let r = s.call(
        "POST",
        "/v1/live/outputs/99999/switch",
        Some(&s.admin),
        Some(&json!({"to": "backup"})),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    // The backup stops delivering: switching to it is refused rather than putting it on air.
    backup.kill().unwrap();
    backup.wait().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let st = s.call(
            "GET",
            &format!("/v1/live/sources/{b}"),
            Some(&s.admin),
            None,
        );
        if st.body["state"] != "live" {
            break;
        }
        assert!(Instant::now() < end, "the backup stays live: {}", st.body);
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = switch(&s.admin, json!({"to": "backup"}));
    assert_eq!((r.status, r.code()), (409, "conflict"), "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not live"),
        "{}",
        r.body
    );

    // Audited, with who did it.
    let audit = s.call("GET", "/v1/audit?limit=1000", Some(&s.admin), None);
    let object = format!("/v1/live/outputs/{out}/switch");
    let mine: Vec<_> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["object"] == object.as_str() && e["actor"] == "admin")
        .collect();
    assert!(mine.len() >= 2, "{}", audit.body);
    primary.kill().unwrap();
    primary.wait().unwrap();
}

fn hls_get(s: &Server, out: i64, file: &str) -> (u16, String, Vec<u8>) {
    let (r, b) = s.request(
        "GET",
        &format!("/v1/live/outputs/{out}/hls/{file}"),
        Some(&s.admin),
        &[],
        None,
    );
    let ct = r.header("content-type").unwrap_or_default().to_string();
    (r.status, ct, b)
}

#[test]
fn an_hls_output_is_served_over_http() {
    let profiles = tempfile::tempdir().unwrap();
    std::fs::write(profiles.path().join("live-test-ladder.toml"), SMALL_LADDER).unwrap();
    let s = Server::start(&[(
        "ANTENNE_TRANSCODE_PROFILES_DIR",
        profiles.path().display().to_string(),
    )]);
    let port = free_udp_port();
    let src = create(
        &s,
        "sources",
        json!({"name": "cam", "kind": "udp", "address": format!("127.0.0.1:{port}")}),
    );
    let r = s.call(
        "POST",
        "/v1/live/outputs",
        Some(&s.admin),
        Some(&json!({"name": "web", "kind": "hls", "source_id": src})),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let mut sender = send(port, 440);
    let out = create(
        &s,
        "outputs",
        json!({"name": "web", "kind": "hls", "source_id": src, "profile": "live-test-ladder"}),
    );
    assert!(s.data_dir().join("live/web").is_dir());
    let (st, ct, master) = hls_get(&s, out, "master.m3u8");
    assert_eq!(st, 200);
    assert_eq!(ct, "application/vnd.apple.mpegurl");
    let master = String::from_utf8(master).unwrap();
    assert!(master.contains("180p/index.m3u8"), "{master}");

    // A media playlist with two segments, then a segment and the init section.
    let end = Instant::now() + Duration::from_secs(20);
    let playlist = loop {
        let (st, _, b) = hls_get(&s, out, "180p/index.m3u8");
        let text = String::from_utf8_lossy(&b).to_string();
        if st == 200 && text.lines().filter(|l| l.ends_with(".m4s")).count() >= 2 {
            break text;
        }
        assert!(Instant::now() < end, "no segments: {st} {text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let seg = playlist.lines().find(|l| l.ends_with(".m4s")).unwrap();
    let (st, ct, b) = hls_get(&s, out, &format!("180p/{seg}"));
    assert_eq!(st, 200);
    assert_eq!(ct, "video/iso.segment");
    assert!(b.len() > 1000);
    if let Some(init) = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .and_then(|l| l.split('"').next())
    {
        let (st, ct, _) = hls_get(&s, out, &format!("180p/{init}"));
        assert_eq!((st, ct.as_str()), (200, "video/mp4"));
    }
    // Missing, outside the folder, or anonymous.
    assert_eq!(hls_get(&s, out, "180p/nothing_99999.m4s").0, 404);
    assert_eq!(hls_get(&s, out, "..%2F..%2Fantenne.db").0, 404);
    assert_eq!(hls_get(&s, out, "%2E%2E/x.m3u8").0, 404);
    assert_eq!(hls_get(&s, out, "a/b/c.m3u8").0, 404);
    let r = s.call(
        "GET",
        &format!("/v1/live/outputs/{out}/hls/master.m3u8"),
        None,
        None,
    );
    assert_eq!(r.status, 401);

    // A player with the token as a header reads the ladder.
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-headers"])
        .arg(format!("Authorization: Bearer {}\r\n", s.admin))
        .args(["-show_entries", "stream=codec_name,width", "-of", "csv=p=0"])
        .arg(format!("{}/v1/live/outputs/{out}/hls/master.m3u8", s.base))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("h264,320"),
        "{text} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    sender.kill().unwrap();
    sender.wait().unwrap();
}
