//! Live recording against the real service, with ffmpeg sending a UDP feed at real-time pace:
//! pieces cut at keyframes (each decodes from its first packet, as long as its segment, no byte
//! lost or doubled), the growing asset in the catalog (SQLite and PostgreSQL), a source lost
//! and back during a recording, the service killed while recording and restarted, a recording
//! started by a schedule in the configuration, and the API's refusals.

mod common;

use common::live::{event_lines, free_udp_port, get, udp_source as source, wait_for};

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::pg::Pg;
use common::server::Server;
use serde_json::{json, Value};

/// ffmpeg sending `seconds` of 320x180 H.264 (a keyframe each second) and AAC to UDP port
/// `port`, at real-time pace.
fn send(seconds: u32, port: u16) -> Child {
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
            "-g",
            "25",
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

fn wait_live(s: &Server, src: i64) {
    wait_for(Duration::from_secs(10), "the source is live", || {
        (get(s, &format!("/v1/live/sources/{src}/stats"))["state"] == "live").then_some(())
    });
}

/// What ffprobe says of a recorded piece.
struct Probed {
    duration: f64,
    /// Video frames: (key frame, picture type), in decode order.
    frames: Vec<(bool, String)>,
    errors: String,
}

fn probe(path: &Path) -> Probed {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "frame=key_frame,pict_type:format=duration"])
        .args(["-of", "json"])
        .arg(path)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    Probed {
        duration: v["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0.0),
        frames: v["frames"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| {
                        (
                            f["key_frame"] == 1,
                            f["pict_type"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        errors: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn pieces_cut_at_keyframes_decode_and_add_up_to_what_was_received() {
    let s = Server::start(&[]);
    let port = free_udp_port();
    let src = source(&s, "studio 1", port);
    let ev = event_lines(&s);
    let mut ff = send(9, port);
    wait_live(&s, src);
    let r = s.call(
        "POST",
        &format!("/v1/live/sources/{src}/record"),
        Some(&s.admin),
        Some(&json!({"segment_s": 2, "title": "Studio one"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let first_asset = r.body["asset_id"].as_i64().unwrap();
    let a = get(&s, &format!("/v1/assets/{first_asset}"));
    assert_eq!(
        (a["kind"].as_str(), a["status"].as_str()),
        (Some("live_recording"), Some("live_recording"))
    );
    assert!(
        a["title"].as_str().unwrap().starts_with("Studio one 20"),
        "{a}"
    );
    assert_eq!(a["recording"]["state"], "recording");
    // Twice is refused while it runs.
    let again = s.call(
        "POST",
        &format!("/v1/live/sources/{src}/record"),
        Some(&s.admin),
        None,
    );
    assert_eq!(again.status, 409, "{}", again.body);
    // Recording for about 5 s: at least three pieces are made.
    wait_for(Duration::from_secs(12), "three pieces", || {
        let st = get(&s, &format!("/v1/live/sources/{src}/stats"));
        (st["recording"]["pieces"].as_u64().unwrap_or(0) >= 3).then_some(())
    });
    let stop = s.call(
        "POST",
        &format!("/v1/live/sources/{src}/record/stop"),
        Some(&s.admin),
        None,
    );
    assert_eq!(stop.status, 200, "{}", stop.body);
    let _ = ff.kill();
    let _ = ff.wait();
    let pieces = stop.body["items"].as_array().unwrap().clone();
    assert!(pieces.len() >= 3, "{}", stop.body);
    let st = get(&s, &format!("/v1/live/sources/{src}/stats"))["recording"].clone();
    assert_eq!(st["state"], "ended", "{st}");
    assert_eq!(st["dropped"], 0, "{st}");
    let mut total = 0u64;
    for (i, p) in pieces.iter().rev().enumerate() {
        assert_eq!(p["state"], "done", "{p}");
        let path = Path::new(p["path"].as_str().unwrap());
        let size = std::fs::metadata(path).unwrap().len();
        assert_eq!(size % 188, 0);
        assert_eq!(p["bytes"].as_u64(), Some(size), "{p}");
        total += size;
        let a = get(&s, &format!("/v1/assets/{}", p["asset_id"]));
        assert_eq!(a["status"], "ready", "{a}");
        let files = get(&s, &format!("/v1/assets/{}/files", p["asset_id"]));
        let f = &files["items"][0];
        assert_eq!(
            f["sha256"].as_str().unwrap(),
            common::server::sha256_hex(path)
        );
        assert_eq!(
            (f["width"].as_i64(), f["height"].as_i64()),
            (Some(320), Some(180))
        );
        let pr = probe(path);
        // Decodable from its first packet: no reference to headers it lacks. (Loopback UDP on
        // a loaded machine may lose a datagram mid-piece; that is the feed's, not the cut's.)
        for undecodable in ["non-existing PPS", "no frame!", "decode_slice_header error"] {
            assert!(!pr.errors.contains(undecodable), "piece {i}: {}", pr.errors);
        }
        assert!(
            pr.frames.first().is_some_and(|f| f.0 && f.1 == "I"),
            "piece {i} starts with a keyframe: {:?}",
            pr.frames.first()
        );
        if i + 1 < pieces.len() {
            assert!(
                (pr.duration - 2.0).abs() <= 0.5,
                "piece {i} lasts {} s, not about 2",
                pr.duration
            );
            assert!(
                (50..=62).contains(&pr.frames.len()),
                "piece {i}: {} frames",
                pr.frames.len()
            );
        }
    }
    // Every byte the hub gave the recorder is in exactly one piece, but those before the first
    // keyframe.
    assert_eq!(st["bytes_written"].as_u64(), Some(total), "{st}");
    assert_eq!(
        st["bytes_received"].as_u64().unwrap(),
        total + st["bytes_skipped"].as_u64().unwrap(),
        "{st}"
    );
    assert!(st["bytes_skipped"].as_u64().unwrap() < 300_000, "{st}");
    // The pieces back to back are the feed: its frames, each once.
    let frames: usize = pieces
        .iter()
        .map(|p| probe(Path::new(p["path"].as_str().unwrap())).frames.len())
        .sum();
    let listed = get(&s, &format!("/v1/live/sources/{src}/recordings"));
    assert_eq!(listed["items"].as_array().unwrap().len(), pieces.len());
    assert!(frames >= 100, "{frames} frames recorded");
    // The change feed told of each piece and its end.
    let mut created = 0;
    let mut ended = 0;
    while let Ok(l) = ev.recv_timeout(Duration::from_millis(500)) {
        if l.contains("\"live_recording\"") {
            created += l.contains("\"created\"") as usize;
            ended += l.contains("\"ended\"") as usize;
        }
    }
    assert!(
        created >= pieces.len() && ended >= pieces.len(),
        "{created} created, {ended} ended"
    );
    let m = s.raw("GET", "/metrics", Some(&s.admin), None);
    let _ = m;
    let (_, body) = s.request("GET", "/metrics", Some(&s.admin), &[], None);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("antenne_live_recording_pieces_total"),
        "metrics"
    );
    // Nothing runs now.
    let r = s.call(
        "DELETE",
        &format!("/v1/live/sources/{src}/record"),
        Some(&s.admin),
        None,
    );
    assert_eq!(r.status, 409, "{}", r.body);
}

#[test]
fn the_api_refuses_what_it_cannot_do() {
    let s = Server::start(&[]);
    let (_, viewer) = s.user("vera", "viewer");
    let src = source(&s, "cam", free_udp_port());
    let r = s.call(
        "POST",
        &format!("/v1/live/sources/{src}/record"),
        Some(&viewer),
        None,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = s.call("POST", "/v1/live/sources/999/record", Some(&s.admin), None);
    assert_eq!(r.status, 404, "{}", r.body);
    for (body, field) in [
        (json!({"segment_s": 0}), "segment_s"),
        (json!({"schedule": "every 1m"}), "schedule"),
        (json!({"workflow": "nope"}), "workflow"),
        (json!({"colour": 1}), "colour"),
    ] {
        let r = s.call(
            "POST",
            &format!("/v1/live/sources/{src}/record"),
            Some(&s.admin),
            Some(&body),
        );
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert!(r.body.to_string().contains(field), "{body}: {}", r.body);
    }
    let r = s.call(
        "POST",
        &format!("/v1/live/sources/{src}/stop"),
        Some(&s.admin),
        None,
    );
    assert_eq!(r.status, 200);
    let r = s.call(
        "POST",
        &format!("/v1/live/sources/{src}/record"),
        Some(&s.admin),
        None,
    );
    assert_eq!(r.status, 409, "a stopped source: {}", r.body);
}

/// A growing piece shows its duration increasing; the source lost and back leaves one file;
/// the service killed (SIGKILL) and restarted closes it into a normal asset.
fn growing_lost_and_killed(url: Option<&str>) {
    let data = tempfile::tempdir().unwrap();
    let mut env = vec![(
        "ANTENNE_STORAGE_DATA_DIR",
        data.path().display().to_string(),
    )];
    if let Some(u) = url {
        env.push(("ANTENNE_CATALOG_URL", u.to_string()));
    }
    let s = Server::start(&env);
    let port = free_udp_port();
    let src = source(&s, "truck", port);
    let mut ff = send(30, port);
    wait_live(&s, src);
    let r = s.call(
        "POST",
        &format!("/v1/live/sources/{src}/record"),
        Some(&s.admin),
        None,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let asset = r.body["asset_id"].as_i64().unwrap();
    // The catalog follows the growing piece: two successive durations, increasing.
    let dur = |s: &Server| {
        let a = get(s, &format!("/v1/assets/{asset}"));
        assert_eq!(a["status"], "live_recording");
        (
            a["recording"]["duration_s"].as_f64().unwrap(),
            a["recording"]["bytes"].as_i64().unwrap(),
        )
    };
    let (d1, b1) = wait_for(Duration::from_secs(8), "a first duration", || {
        let (d, b) = dur(&s);
        (d > 0.5).then_some((d, b))
    });
    let (d2, b2) = wait_for(Duration::from_secs(8), "a longer duration", || {
        let (d, b) = dur(&s);
        (d > d1 + 0.5).then_some((d, b))
    });
    assert!(b2 > b1 && d2 > d1);
    let files = get(&s, &format!("/v1/assets/{asset}/files"));
    assert!(files["items"][0]["size"].as_i64().unwrap() >= b1);
    // The sender dies: the recording waits with its file open, then goes on.
    let _ = ff.kill();
    let _ = ff.wait();
    wait_for(Duration::from_secs(5), "the recording waits", || {
        (get(&s, &format!("/v1/live/sources/{src}/stats"))["recording"]["state"] == "waiting")
            .then_some(())
    });
    let before = get(&s, &format!("/v1/live/sources/{src}/stats"))["recording"]["bytes_written"]
        .as_u64()
        .unwrap();
    let mut ff = send(30, port);
    wait_for(Duration::from_secs(8), "writing again", || {
        let st = get(&s, &format!("/v1/live/sources/{src}/stats"))["recording"].clone();
        (st["state"] == "recording" && st["bytes_written"].as_u64().unwrap() > before + 50_000)
            .then_some(())
    });
    let st = get(&s, &format!("/v1/live/sources/{src}/stats"))["recording"].clone();
    assert_eq!(
        (st["pieces"].as_u64(), st["gaps"].as_u64()),
        (Some(1), Some(1)),
        "{st}"
    );
    // Killed mid-write.
    let mut s = s;
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    let _ = ff.kill();
    let _ = ff.wait();
    let s = Server::start(&env);
    let rec = wait_for(
        Duration::from_secs(20),
        "the piece closed at start-up",
        || {
            let l = get(&s, &format!("/v1/live/sources/{src}/recordings"));
            let p = l["items"][0].clone();
            (p["state"] == "done").then_some(p)
        },
    );
    let a = get(&s, &format!("/v1/assets/{asset}"));
    assert_eq!(a["status"], "ready", "{a}");
    let path = Path::new(rec["path"].as_str().unwrap());
    let size = std::fs::metadata(path).unwrap().len();
    assert_eq!(size % 188, 0);
    assert!(size >= b2 as u64);
    let pr = probe(path);
    assert!(
        pr.frames.first().is_some_and(|f| f.0),
        "starts with a keyframe"
    );
    assert!(
        pr.duration >= d2,
        "{} s recorded, {d2} seen growing",
        pr.duration
    );
    let f = &get(&s, &format!("/v1/assets/{asset}/files"))["items"][0];
    assert_eq!(
        f["sha256"].as_str().unwrap(),
        common::server::sha256_hex(path)
    );
    // No file of the media store is without its record.
    let dir = path.parent().unwrap();
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 1);
}

#[test]
fn growing_lost_and_killed_sqlite() {
    growing_lost_and_killed(None);
}

#[test]
fn growing_lost_and_killed_postgres() {
    let pg = Pg::start().expect("PostgreSQL installed");
    growing_lost_and_killed(Some(&pg.url));
}

#[test]
fn a_schedule_in_the_configuration_records() {
    let port = free_udp_port();
    let wf = tempfile::tempdir().unwrap();
    std::fs::write(
        wf.path().join("recqc.toml"),
        "name = \"recqc\"\n[[steps]]\nkind = \"qc\"\n",
    )
    .unwrap();
    let env = vec![
        (
            "ANTENNE_JOBS_WORKFLOWS_DIR",
            wf.path().display().to_string(),
        ),
        (
            "ANTENNE_LIVE_SOURCES",
            format!(r#"[{{name = "house", kind = "udp", address = "127.0.0.1:{port}", buffer_ms = 0}}]"#),
        ),
        (
            "ANTENNE_LIVE_RECORDINGS",
            r#"[{source = "house", schedule = "every 2s", duration_s = 3, segment_s = 60, title = "Scheduled", workflow = "recqc"}]"#
                .to_string(),
        ),
    ];
    let s = Server::start(&env);
    let mut ff = send(12, port);
    let src = get(&s, "/v1/live/sources")["items"][0]["id"]
        .as_i64()
        .unwrap();
    let done = wait_for(Duration::from_secs(15), "a scheduled piece done", || {
        let l = get(&s, &format!("/v1/live/sources/{src}/recordings"));
        l["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["state"] == "done" && p["bytes"].as_i64().unwrap_or(0) > 0)
            .cloned()
    });
    let _ = ff.kill();
    let _ = ff.wait();
    let a = get(&s, &format!("/v1/assets/{}", done["asset_id"]));
    assert!(
        a["title"].as_str().unwrap().starts_with("Scheduled "),
        "{a}"
    );
    let pr = probe(Path::new(done["path"].as_str().unwrap()));
    assert!(pr.frames.first().is_some_and(|f| f.0));
    assert!((1.5..=3.5).contains(&pr.duration), "{} s", pr.duration);
    // Closed, the piece went through its workflow's QC as any ingested file (a test pattern
    // and a sine may well fail the house's loudness rules: the verdict is not the point).
    let asset = done["asset_id"].as_i64().unwrap();
    wait_for(Duration::from_secs(30), "the piece's QC", || {
        let jobs = get(&s, "/v1/jobs");
        let qc = jobs["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["kind"] == "qc" && j["asset_id"] == asset && j["state"] == "succeeded");
        let st = get(&s, &format!("/v1/assets/{asset}"))["status"].clone();
        (qc && (st == "ready" || st == "qc_failed")).then_some(())
    });
    // The OpenAPI document has the recording routes.
    let doc = s.call("GET", "/openapi.json", None, None).body;
    for p in [
        "/v1/live/sources/{id}/record",
        "/v1/live/sources/{id}/record/stop",
        "/v1/live/sources/{id}/recordings",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} documented");
    }
}
