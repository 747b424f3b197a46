//! The playout channel engine end to end, as fast as the machine goes (an injected clock): a
//! schedule of clips made by the `ffmpeg` CLI, each with its clip number and frame number coded
//! in boxes (and burnt in as text for a person) and a tone of its own (a multiple of 1 kHz), aired
//! to a TS recording, decoded again by `ffmpeg`/`ffprobe`: every item's first frame at its
//! scheduled frame, no frame dropped or repeated, the tone changing within ±1 ms of the picture at
//! every boundary, for 25p, 25i and 29.97 (drop-frame timecode burnt in). Faults at air time
//! (a file deleted, truncated, replaced by garbage) give filler for the slot and the channel goes
//! on. SCTE-35 sections are checked with `threefive`. A 2-minute schedule checks that nothing
//! drifts; `ANTENNE_PLAYOUT_SOAK=1` plays 24 hours of schedule (`ANTENNE_PLAYOUT_SOAK_MINUTES`
//! to choose another length).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use antenne::av::live::House;
use antenne::link::{Chunk, ChunkSink};
use antenne::playout::engine::{
    Channel, ChannelOutput, ChannelSpec, FastClock, Logo, TsAudio, TsEncode,
};
use antenne::playout::plan::{AirSlot, Aired, Break, Material, Secondary, Substitution, Timeline};
use antenne::playout::scte35::{self, Command as SpliceCommand, Segmentation, SegmentationType};

/// A fixed schedule.
struct Fixed(Vec<AirSlot>);

impl Timeline for Fixed {
    fn slot_at(&self, frame: u64) -> Option<AirSlot> {
        self.0
            .iter()
            .find(|s| s.start <= frame && frame < s.end())
            .cloned()
    }
}

fn file_slot(item: &str, start: u64, frames: u64, path: &Path, in_frame: u64) -> AirSlot {
    AirSlot {
        item: item.into(),
        start,
        frames,
        material: Material::File {
            path: path.to_owned(),
            asset_id: format!("asset-{item}"),
            house_id: format!("H{item}"),
            in_frame,
        },
        breaks: vec![],
        secondary: vec![],
    }
}

fn filler_slot(item: &str, start: u64, frames: u64) -> AirSlot {
    AirSlot {
        item: item.into(),
        start,
        frames,
        material: Material::Filler,
        breaks: vec![],
        secondary: vec![],
    }
}

const W: u32 = 320;
const H: u32 = 180;
const BOX: u32 = 20;
const BITS: u32 = 14;

/// A clip of `seconds` at `rate` whose picture codes (clip id, frame number) in boxes along the
/// top: bits 0–9 the frame, 10–12 the clip, 13 always on; a black guard row under them. The
/// tone is `id` kHz.
fn make_clip(dir: &Path, id: u32, rate: &str, interlaced: bool, seconds: f64) -> PathBuf {
    let out = dir.join(format!("clip{id}.mov"));
    let mut vf = vec![format!("color=c=black:size={W}x{H}:rate={rate}")];
    for bit in 0..BITS {
        let x = bit * BOX;
        let enable = match bit {
            0..=9 => format!(":enable='eq(mod(floor(n/{}),2),1)'", 1u32 << bit),
            10..=12 if (id >> (bit - 10)) & 1 == 1 => String::new(),
            13 => String::new(),
            _ => continue,
        };
        vf.push(format!(
            "drawbox=x={x}:y=0:w={BOX}:h=24:color=white:t=fill{enable}"
        ));
    }
    let font = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";
    if Path::new(font).exists() {
        vf.push(format!(
            "drawtext=fontfile={font}:text='clip {id} frame %{{n}}':x=10:y=60:fontsize=24:fontcolor=white"
        ));
        let tc = if rate == "30000/1001" {
            "00\\:00\\:00\\;00"
        } else {
            "00\\:00\\:00\\:00"
        };
        vf.push(format!(
            "drawtext=fontfile={font}:timecode='{tc}':rate={rate}:x=10:y=100:fontsize=24:fontcolor=yellow"
        ));
    }
    if interlaced {
        vf.push("setfield=tff".into());
    }
    let graph = vf.join(",");
    let secs = seconds.to_string();
    let mut args: Vec<String> = vec![
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        graph,
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("sine=frequency={}:sample_rate=48000", id * 1000),
        "-t".into(),
        secs,
        "-c:v".into(),
        "libx264".into(),
        "-preset".into(),
        "ultrafast".into(),
        "-g".into(),
        "10".into(),
        "-pix_fmt".into(),
        "yuv420p".into(),
    ];
    if interlaced {
        args.extend(
            ["-flags", "+ildct+ilme", "-x264-params", "tff=1"]
                .iter()
                .map(|s| s.to_string()),
        );
    }
    args.extend(
        ["-c:a", "pcm_s16le", "-ac", "2"]
            .iter()
            .map(|s| s.to_string()),
    );
    args.push(out.to_string_lossy().into_owned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    common::ffmpeg(&refs);
    out
}

/// A TS recording: the chunks appended to a file.
struct Recorder(Mutex<std::fs::File>);

impl ChunkSink for Recorder {
    fn deliver(&self, chunk: Chunk) {
        let _ = self.0.lock().unwrap().write_all(&chunk);
    }
}

fn house(rate: (u32, u32)) -> House {
    House {
        width: W,
        height: H,
        rate,
        sample_rate: 48000,
        channels: 2,
    }
}

fn epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// Airs `slots` as fast as possible into `out` until `frames` frames are out; the as-run.
fn air(
    spec_edit: impl FnOnce(&mut ChannelSpec),
    rate: (u32, u32),
    interlaced: bool,
    slots: Vec<AirSlot>,
    frames: u64,
    out: &Path,
    audio: TsAudio,
) -> Vec<Aired> {
    let rec: Arc<dyn ChunkSink> =
        Arc::new(Recorder(Mutex::new(std::fs::File::create(out).unwrap())));
    let mut spec = ChannelSpec::new("test channel", house(rate), interlaced, epoch());
    spec.outputs.push(ChannelOutput::Ts {
        name: "rec".into(),
        sink: rec,
        encode: TsEncode {
            video_bitrate: 600_000,
            preset: "ultrafast".into(),
            gop_frames: 12,
            b_frames: 2,
            audio,
            muxrate: Some(3_000_000),
        },
    });
    spec.prefetch_frames = 12;
    spec.scte35.preroll_frames = 10;
    spec_edit(&mut spec);
    let aired: Arc<Mutex<Vec<Aired>>> = Arc::default();
    let a = aired.clone();
    let ch = Channel::start(
        spec,
        Arc::new(Fixed(slots)),
        Arc::new(FastClock::starting_at(epoch())),
        move |x| a.lock().unwrap().push(x),
    )
    .unwrap();
    assert!(
        ch.wait_for_frame(frames - 1, Duration::from_secs(300)),
        "the channel stopped: {:?}",
        ch.status().error
    );
    ch.stop().unwrap();
    let v = aired.lock().unwrap().clone();
    v
}

/// Each decoded picture's code: (clip, frame) when it carries one.
fn codes(ts: &Path) -> Vec<Option<(u32, u32)>> {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(ts)
        .args([
            "-map",
            "0:v:0",
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::stderr(&o));
    let fsz = (W * H) as usize;
    o.stdout
        .chunks(fsz)
        .filter(|f| f.len() == fsz)
        .map(|f| {
            let at = |x: u32, y: u32| f[(y * W + x) as usize];
            let bit = |b: u32| at(b * BOX + BOX / 2, 12) > 128;
            let guard = (0..BITS).all(|b| at(b * BOX + BOX / 2, 30) < 40);
            if !guard || !bit(13) {
                return None;
            }
            let frame = (0..10).filter(|&b| bit(b)).map(|b| 1u32 << b).sum();
            let clip = (10..13).filter(|&b| bit(b)).map(|b| 1u32 << (b - 10)).sum();
            Some((clip, frame))
        })
        .collect()
}

/// Video frames' presentation times (seconds, the TS clock).
fn video_pts(ts: &Path) -> Vec<f64> {
    let o = common::ffprobe_frames(ts, "pts_time");
    common::stdout(&o)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}

/// The first audio channel on the TS clock: sample i is at i / 48000 s.
fn audio_on_clock(ts: &Path) -> Vec<f32> {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-copyts", "-i"])
        .arg(ts)
        .args([
            "-map",
            "0:a:0",
            "-af",
            "aresample=first_pts=0,pan=mono|c0=c0",
            "-f",
            "f32le",
            "-",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::stderr(&o));
    o.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// How much of a 1 ms window's energy is at `hz` (1.0: a pure tone of it).
fn purity(x: &[f32], from: i64, hz: f64) -> f64 {
    if from < 0 || from as usize + 48 > x.len() {
        return 0.0;
    }
    let w = &x[from as usize..from as usize + 48];
    let e: f64 = w.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    if e < 1e-9 {
        return 0.0;
    }
    let (mut re, mut im) = (0.0, 0.0);
    for (i, &s) in w.iter().enumerate() {
        let ph = 2.0 * std::f64::consts::PI * hz * (from as f64 + i as f64) / 48000.0;
        re += f64::from(s) * ph.cos();
        im -= f64::from(s) * ph.sin();
    }
    (re * re + im * im) * 2.0 / 48.0 / e
}

/// Where (samples from `at`) the tone changes from `a` Hz to `b` Hz, searched within ±2 ms.
fn tone_change(x: &[f32], at: i64, a: f64, b: f64) -> (i64, f64) {
    (-96..=96)
        .map(|d| {
            let s = purity(x, at + d - 48, a) + purity(x, at + d, b);
            (d, s)
        })
        .max_by(|p, q| p.1.total_cmp(&q.1))
        .unwrap()
}

/// Frame accuracy for one format: cuts (an overrun), an in point, a gap of filler, a logo.
fn frame_accuracy(rate: (u32, u32), rate_s: &str, interlaced: bool) {
    let dir = tempfile::tempdir().unwrap();
    let fps = f64::from(rate.0) / f64::from(rate.1);
    let a = make_clip(dir.path(), 2, rate_s, interlaced, 2.0);
    let b = make_clip(dir.path(), 3, rate_s, interlaced, 2.0);
    let c = make_clip(dir.path(), 4, rate_s, interlaced, 2.0);
    // A: cut after 30 of its 50 frames; B from its frame 7 for 25; 10 of filler; C for 40.
    let mut slot_b = file_slot("B", 30, 25, &b, 7);
    slot_b.secondary = vec![Secondary::LogoOn { at: 5 }, Secondary::LogoOff { at: 15 }];
    let slots = vec![
        file_slot("A", 0, 30, &a, 0),
        slot_b,
        filler_slot("gap", 55, 10),
        file_slot("C", 65, 40, &c, 0),
    ];
    let total = 105u64;
    let out = dir.path().join("air.ts");
    let logo = dir.path().join("logo.png");
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=red:size=40x40",
        "-frames:v",
        "1",
        logo.to_str().unwrap(),
    ]);
    let aired = air(
        |s| {
            s.logo = Some(Logo {
                path: logo.clone(),
                x: 200,
                y: 120,
                max_width: 40,
                max_height: 40,
                on_at_start: false,
            })
        },
        rate,
        interlaced,
        slots.clone(),
        total,
        &out,
        TsAudio::S302m,
    );
    // As-run: every slot at its frame, for its length, nothing substituted.
    for (i, s) in slots.iter().enumerate() {
        let x = &aired[i];
        assert_eq!(
            (x.slot.item.as_str(), x.start, x.frames),
            (s.item.as_str(), s.start, s.frames)
        );
        assert_eq!(x.substitution, None, "{}", s.item);
    }
    // Pictures: each output frame carries what the schedule says.
    let got = codes(&out);
    assert!(got.len() as u64 >= total, "{} frames decoded", got.len());
    let expect = |j: u64| -> Option<(u32, u32)> {
        match j {
            0..30 => Some((2, j as u32)),
            30..55 => Some((3, (j - 30 + 7) as u32)),
            55..65 => None,
            _ => Some((4, (j - 65) as u32)),
        }
    };
    for j in 0..total {
        assert_eq!(got[j as usize], expect(j), "output frame {j}");
    }
    // Timestamps: one frame apart, none dropped or repeated.
    let pts = video_pts(&out);
    assert!(pts.len() as u64 >= total);
    for w in pts.windows(2).take(total as usize) {
        assert!(
            ((w[1] - w[0]) * fps - 1.0).abs() < 0.01,
            "picture times {} → {}",
            w[0],
            w[1]
        );
    }
    // Fields: a 25i channel stays interlaced, top field first.
    let v = common::ffprobe(&out, false);
    let field = v["streams"][0]["field_order"].as_str().unwrap_or("");
    if interlaced {
        assert_eq!(field, "tt", "{v}");
    } else {
        assert!(field == "progressive" || field.is_empty(), "{field}");
    }
    // The logo: on from B's 5th frame to its 15th (red at 200..240 × 120..160).
    let raw = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&out)
        .args([
            "-map",
            "0:v:0",
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .unwrap();
    let fsz = (W * H * 3) as usize;
    let red = |j: usize| {
        let f = &raw.stdout[j * fsz..(j + 1) * fsz];
        let p = ((140 * W + 220) * 3) as usize;
        f[p] > 180 && f[p + 1] < 90 && f[p + 2] < 90
    };
    for j in 30..55usize {
        assert_eq!(red(j), (35..45).contains(&j), "logo at output frame {j}");
    }
    // Sound: the tone changes with the picture, within ±1 ms, at every boundary.
    let audio = audio_on_clock(&out);
    let t0 = pts[0];
    let tone = |j: u64| -> f64 {
        match expect(j) {
            Some((c, _)) => f64::from(c) * 1000.0,
            None => 1000.0,
        }
    };
    for j in [30u64, 55, 65] {
        let at = (pts[j as usize] * 48000.0).round() as i64;
        let (d, score) = tone_change(&audio, at, tone(j - 1), tone(j));
        eprintln!("frame {j}: tone change {d} samples from the picture (fit {score:.3})");
        assert!(
            score > 1.6,
            "no clean tone change at frame {j} (score {score})"
        );
        assert!(
            d.abs() <= 48,
            "at frame {j} the sound changes {d} samples from the picture"
        );
    }
    // The first picture and the first sound start together.
    let first = (t0 * 48000.0).round() as i64;
    let lead = audio[..first.max(0) as usize]
        .iter()
        .filter(|s| s.abs() > 0.01)
        .count();
    assert!(
        lead <= 48,
        "{lead} samples of sound before the first picture"
    );
}

#[test]
fn frame_accurate_25p() {
    frame_accuracy((25, 1), "25", false);
}

#[test]
fn frame_accurate_25i() {
    frame_accuracy((25, 1), "25", true);
}

#[test]
fn frame_accurate_2997() {
    frame_accuracy((30000, 1001), "30000/1001", false);
}

fn hex(b: &[u8]) -> String {
    let mut s = String::from("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// threefive's reading of a section given as hex.
fn threefive(section: &[u8]) -> serde_json::Value {
    let o = Command::new(common::venv_bin("threefive"))
        .arg(hex(section))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::stderr(&o));
    // threefive writes its JSON to stderr.
    let text = format!("{}{}", common::stdout(&o), common::stderr(&o));
    json_objects(&text)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no JSON from threefive: {text}"))
}

/// The JSON objects in a text (threefive prints one per cue, between comment lines).
fn json_objects(text: &str) -> Vec<serde_json::Value> {
    let start = text.find('{').unwrap_or(text.len());
    serde_json::Deserializer::from_str(&text[start..])
        .into_iter::<serde_json::Value>()
        .map_while(Result::ok)
        .collect()
}

#[test]
fn sections_read_back_by_threefive() {
    let out = scte35::splice_info_section(&SpliceCommand::SpliceInsert {
        event_id: 4242,
        out_of_network: true,
        pts: 90000 * 100 + 3600,
        duration: Some(90000 * 30),
        unique_program_id: 7,
    });
    let j = threefive(&out);
    assert_eq!(j["info_section"]["section_length"], out.len() - 3, "{j}");
    let crc = u32::from_be_bytes(out[out.len() - 4..].try_into().unwrap());
    assert_eq!(j["info_section"]["crc"], format!("{crc:#x}"), "{j}");
    let c = &j["command"];
    assert_eq!(c["name"], "Splice Insert", "{j}");
    assert_eq!(c["splice_event_id"], 4242);
    assert_eq!(c["out_of_network_indicator"], true);
    assert_eq!(c["break_auto_return"], true);
    assert_eq!(c["break_duration"], 30.0);
    assert_eq!(c["pts_time"], 100.04);
    assert_eq!(c["unique_program_id"], 7);
    let back_in = scte35::splice_info_section(&SpliceCommand::SpliceInsert {
        event_id: 4242,
        out_of_network: false,
        pts: 90000 * 130,
        duration: None,
        unique_program_id: 7,
    });
    let j = threefive(&back_in);
    assert_eq!(j["command"]["out_of_network_indicator"], false, "{j}");
    assert_eq!(j["command"]["duration_flag"], false, "{j}");
    let ts = scte35::splice_info_section(&SpliceCommand::TimeSignal {
        pts: (1u64 << 33) - 90000,
        segmentations: vec![Segmentation {
            event_id: 99,
            kind: SegmentationType::BreakStart,
            duration: Some(90000 * 60),
            upid: "HOUSE-0042".into(),
        }],
    });
    let j = threefive(&ts);
    assert_eq!(j["command"]["name"], "Time Signal", "{j}");
    let pts = j["command"]["pts_time"].as_f64().unwrap();
    assert!(
        (pts - (((1u64 << 33) - 90000) as f64 / 90000.0)).abs() < 1e-5,
        "{j}"
    );
    let d = &j["descriptors"][0];
    assert_eq!(d["tag"], 2, "{j}");
    assert_eq!(d["identifier"], "CUEI");
    assert_eq!(d["segmentation_event_id"], "0x63");
    assert_eq!(d["segmentation_type_id"], 0x22);
    assert_eq!(d["segmentation_duration"], 60.0);
    assert_eq!(d["segmentation_upid"], "HOUSE-0042");
}

#[test]
fn breaks_go_out_as_scte35_on_their_own_pid() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_clip(dir.path(), 2, "25", false, 3.0);
    let b = make_clip(dir.path(), 3, "25", false, 3.0);
    let mut sa = file_slot("A", 0, 70, &a, 0);
    sa.breaks = vec![Break {
        at: 40,
        duration: 30,
        event_id: 11,
        time_signal: false,
    }];
    let mut sb = file_slot("B", 70, 70, &b, 0);
    sb.breaks = vec![Break {
        at: 20,
        duration: 25,
        event_id: 12,
        time_signal: true,
    }];
    let out = dir.path().join("cues.ts");
    let total = 140;
    air(
        |_| {},
        (25, 1),
        false,
        vec![sa, sb],
        total,
        &out,
        TsAudio::Aac { bitrate: 96_000 },
    );
    let data = std::fs::read(&out).unwrap();
    // The multiplex stays clean with the new PID in it (TR 101 290 priority 1 and 2).
    let rep = common::ts::check(&data, common::ts::Limits::default());
    assert!(rep.is_clean(), "{:?}", rep.first_errors);
    assert!(rep.streams.contains(&(0x1F4, 0x86)), "{:?}", rep.streams);
    // ffprobe sees a SCTE-35 stream.
    let v = common::ffprobe(&out, false);
    assert!(
        v["streams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["codec_name"] == "scte_35"),
        "{v}"
    );
    let t0 = video_pts(&out)[0];
    let o = Command::new(common::venv_bin("threefive"))
        .arg(&out)
        .output()
        .unwrap();
    let text = format!("{}{}", common::stdout(&o), common::stderr(&o));
    let all = json_objects(&text);
    // Between the cues, a `splice_null` heartbeat each second keeps the PID present.
    let nulls = all
        .iter()
        .filter(|c| c["command"]["name"] == "Splice Null")
        .count();
    assert!(nulls >= 2, "{nulls} splice_null: {text}");
    let cues: Vec<_> = all
        .into_iter()
        .filter(|c| c["command"]["name"] != "Splice Null")
        .collect();
    assert_eq!(cues.len(), 4, "{text}");
    // (frame of the splice, what it is) in the order sent.
    let want: [(u64, &str, bool); 4] = [
        (40, "Splice Insert", true),
        (70, "Splice Insert", false),
        (90, "Time Signal", true),
        (115, "Time Signal", false),
    ];
    for (cue, (frame, name, out_or_start)) in cues.iter().zip(want) {
        let c = &cue["command"];
        assert_eq!(c["name"], name, "{cue}");
        let pts = c["pts_time"].as_f64().unwrap();
        let at = (pts - t0) * 25.0;
        assert!(
            (at - frame as f64).abs() < 0.01,
            "cue at {at} frames, scheduled at {frame}: {cue}"
        );
        // Sent ahead of the splice, by about the pre-roll (10 frames).
        let sent = cue["packet_data"]["pts"].as_f64().unwrap();
        let lead = pts - sent;
        assert!(
            (0.3..=0.5).contains(&lead),
            "sent {lead} s before the splice: {cue}"
        );
        if name == "Splice Insert" {
            assert_eq!(c["out_of_network_indicator"], out_or_start, "{cue}");
            if out_or_start {
                assert_eq!(c["break_duration"], 1.2, "{cue}");
            }
        } else {
            let d = &cue["descriptors"][0];
            let id = if out_or_start { 0x22 } else { 0x23 };
            assert_eq!(d["segmentation_type_id"], id, "{cue}");
            assert_eq!(d["segmentation_upid"], "HB", "{cue}");
            if out_or_start {
                assert_eq!(d["segmentation_duration"], 1.0, "{cue}");
            }
        }
    }
}

#[test]
fn faults_at_air_time_give_filler_and_the_channel_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let good = make_clip(dir.path(), 2, "25", false, 2.0);
    let deleted = make_clip(dir.path(), 3, "25", false, 2.0);
    let truncated = make_clip(dir.path(), 4, "25", false, 2.0);
    let garbage = make_clip(dir.path(), 5, "25", false, 2.0);
    // A TS cut in half: plays its first half, then filler.
    let half = dir.path().join("half.ts");
    common::ffmpeg(&[
        "-i",
        good.to_str().unwrap(),
        "-c:v",
        "copy",
        "-c:a",
        "mp2",
        "-f",
        "mpegts",
        half.to_str().unwrap(),
    ]);
    let slots = vec![
        file_slot("ok1", 0, 20, &good, 0),
        file_slot("deleted", 20, 20, &deleted, 0),
        file_slot("truncated", 40, 20, &truncated, 0),
        file_slot("garbage", 60, 20, &garbage, 0),
        file_slot("half", 80, 40, &half, 0),
        file_slot("ok2", 120, 20, &good, 20),
    ];
    // What happens to the files once the channel runs is simulated before it reaches them:
    // the engine opens each one only at its prefetch.
    std::fs::remove_file(&deleted).unwrap();
    let len = std::fs::metadata(&truncated).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&truncated)
        .unwrap();
    f.set_len(len / 3).unwrap();
    let noise: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&garbage, noise).unwrap();
    let hl = std::fs::metadata(&half).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&half).unwrap();
    f.set_len((hl / 2) / 188 * 188).unwrap();
    let out = dir.path().join("faults.ts");
    let total = 140;
    let aired = air(
        |_| {},
        (25, 1),
        false,
        slots.clone(),
        total,
        &out,
        TsAudio::Aac { bitrate: 96_000 },
    );
    for (s, a) in slots.iter().zip(&aired) {
        assert_eq!(
            (a.slot.item.as_str(), a.start, a.frames),
            (s.item.as_str(), s.start, s.frames)
        );
    }
    let subs: Vec<Option<&Substitution>> = aired
        .iter()
        .take(6)
        .map(|a| a.substitution.as_ref())
        .collect();
    assert_eq!(subs[0], None);
    assert_eq!(subs[5], None);
    for (i, what) in [(1, "no such file"), (2, ""), (3, ""), (4, "ended at frame")] {
        match subs[i] {
            Some(Substitution::Unplayable(r)) => {
                assert!(r.contains(what), "{}: {r}", slots[i].item)
            }
            other => panic!("{}: {other:?}", slots[i].item),
        }
    }
    let got = codes(&out);
    assert!(got.len() as u64 >= total);
    for (j, g) in got.iter().enumerate().take(total as usize) {
        let want = match j {
            0..20 => Some((2, j as u32)),
            20..80 => None,
            120..140 => Some((2, (j - 100) as u32)),
            _ => *g,
        };
        assert_eq!(*g, want, "output frame {j}");
    }
    // The half file: its first frames, then filler to the end of its slot.
    let played = (80..120)
        .take_while(|&j| got[j] == Some((2, (j - 80) as u32)))
        .count();
    assert!(
        (10..40).contains(&played),
        "{played} frames of the half file"
    );
    assert!((80 + played..120).all(|j| got[j].is_none()));
    // No picture missing or doubled across all this.
    let pts = video_pts(&out);
    for w in pts.windows(2).take(total as usize) {
        assert!(
            ((w[1] - w[0]) * 25.0 - 1.0).abs() < 0.01,
            "{} → {}",
            w[0],
            w[1]
        );
    }
}

/// A schedule that repeats every 250 frames: an item cut short (overrun), an item from an in
/// point with a break, filler, an item longer than its slot.
struct Cycle {
    clips: Vec<PathBuf>,
}

impl Timeline for Cycle {
    fn slot_at(&self, frame: u64) -> Option<AirSlot> {
        let cycle = frame / 250;
        let at = frame % 250;
        let base = cycle * 250;
        let parts: [(u64, u64); 4] = [(0, 73), (73, 90), (163, 17), (180, 70)];
        let k = parts.iter().rposition(|(s, _)| *s <= at)?;
        let (s, len) = parts[k];
        let item = format!("c{cycle}-{k}");
        Some(match k {
            0 => file_slot(&item, base + s, len, &self.clips[0], 0),
            1 => {
                let mut x = file_slot(&item, base + s, len, &self.clips[1], 10);
                x.breaks = vec![Break {
                    at: 30,
                    duration: 40,
                    event_id: cycle as u32,
                    time_signal: cycle % 2 == 1,
                }];
                x
            }
            2 => filler_slot(&item, base + s, len),
            _ => file_slot(&item, base + s, len, &self.clips[2], 0),
        })
    }
}

/// Follows a running TS: the video and audio PES times (FFmpeg's PIDs 0x100 and 0x101).
#[derive(Default)]
struct PtsWatch {
    video_pes: u64,
    first_video: Option<u64>,
    max_video: u64,
    last_audio: u64,
    bytes: u64,
}

struct Watch(Mutex<PtsWatch>);

impl ChunkSink for Watch {
    fn deliver(&self, chunk: Chunk) {
        let mut w = self.0.lock().unwrap();
        w.bytes += chunk.len() as u64;
        for p in chunk.chunks(188) {
            let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
            let Some(pts) = scte35::pes_pts(p) else {
                continue;
            };
            match pid {
                0x100 => {
                    w.video_pes += 1;
                    let base = *w.first_video.get_or_insert(pts);
                    // Unwrapped against the first picture (a 26-hour clock).
                    let rel = pts.wrapping_sub(base) & ((1 << 33) - 1);
                    let cycles = w.max_video >> 33;
                    let mut abs = (cycles << 33) + rel;
                    if abs + (1 << 32) < w.max_video {
                        abs += 1 << 33;
                    }
                    w.max_video = w.max_video.max(abs);
                }
                0x101 => {
                    let base = w.first_video.unwrap_or(pts);
                    let rel = pts.wrapping_sub(base) & ((1 << 33) - 1);
                    let cycles = w.max_video >> 33;
                    let mut abs = (cycles << 33) + rel;
                    if abs + (1 << 32) < w.max_video {
                        abs += 1 << 33;
                    }
                    w.last_audio = abs;
                }
                _ => {}
            }
        }
    }
}

/// Plays `minutes` of the cycling schedule as fast as possible and checks that pictures, sound
/// and the schedule stay together; with a recording to decode when `record` is given.
fn soak(minutes: u64, record: Option<&Path>) {
    let dir = tempfile::tempdir().unwrap();
    let clips: Vec<PathBuf> = (2..5)
        .map(|i| make_clip(dir.path(), i, "25", false, 4.0))
        .collect();
    let frames = minutes * 60 * 25;
    let watch = Arc::new(Watch(Mutex::new(PtsWatch::default())));
    let mut spec = ChannelSpec::new("soak", house((25, 1)), false, epoch());
    let encode = TsEncode {
        video_bitrate: 400_000,
        preset: "ultrafast".into(),
        gop_frames: 25,
        b_frames: 0,
        audio: if record.is_some() {
            TsAudio::S302m
        } else {
            TsAudio::Aac { bitrate: 64_000 }
        },
        muxrate: Some(2_500_000),
    };
    let sink: Arc<dyn ChunkSink> = match record {
        Some(p) => Arc::new(Recorder(Mutex::new(std::fs::File::create(p).unwrap()))),
        None => watch.clone(),
    };
    spec.outputs.push(ChannelOutput::Ts {
        name: "soak".into(),
        sink,
        encode,
    });
    let aired: Arc<Mutex<Vec<Aired>>> = Arc::default();
    let a = aired.clone();
    let started = std::time::Instant::now();
    let ch = Channel::start(
        spec,
        Arc::new(Cycle {
            clips: clips.clone(),
        }),
        Arc::new(FastClock::starting_at(epoch())),
        move |x| a.lock().unwrap().push(x),
    )
    .unwrap();
    assert!(
        ch.wait_for_frame(frames - 1, Duration::from_secs(frames)),
        "stopped: {:?}",
        ch.status().error
    );
    let st = ch.status();
    let m = ch.stop().unwrap();
    let took = started.elapsed().as_secs_f64();
    eprintln!(
        "soak: {m} frames ({:.1} min of air) in {took:.1} s ({:.1}× real time); filler {} frames, underruns {}, cues {}",
        m as f64 / 1500.0,
        m as f64 / 25.0 / took,
        st.filler_frames,
        st.underruns,
        st.cues_sent
    );
    assert!(m >= frames);
    assert_eq!(st.underruns, 0, "a fast clock waits for every reader");
    // As-run: complete and contiguous, every slot at its frame for its length (the last one
    // cut by the stop).
    let aired = aired.lock().unwrap();
    let tl = Cycle { clips };
    let mut next = 0;
    for (i, x) in aired.iter().enumerate() {
        let s = tl.slot_at(x.start).unwrap();
        assert_eq!(x.start, next, "as-run entry {i}");
        assert_eq!(x.slot.item, s.item);
        if i + 1 < aired.len() {
            assert_eq!(x.frames, s.frames, "{}", s.item);
        }
        assert_eq!(x.substitution, None, "{}", s.item);
        next = x.start + x.frames;
    }
    assert_eq!(next, m, "the as-run covers every frame aired");
    // Cues: two sections per cycle's break, for the breaks whose end was aired.
    assert!(
        st.cues_sent >= 2 * (m / 250).saturating_sub(1),
        "{} cues",
        st.cues_sent
    );
    match record {
        Some(p) => {
            // Every picture and every sample, counted by a decoder.
            let pts = video_pts(p);
            assert_eq!(pts.len() as u64, m, "pictures decoded");
            for w in pts.windows(2) {
                assert!(
                    ((w[1] - w[0]) * 25.0 - 1.0).abs() < 0.01,
                    "{} → {}",
                    w[0],
                    w[1]
                );
            }
            let o = Command::new("ffmpeg")
                .args(["-nostdin", "-v", "error", "-i"])
                .arg(p)
                .args(["-map", "0:a:0", "-f", "s16le", "-ac", "1", "-"])
                .output()
                .unwrap();
            assert_eq!(
                o.stdout.len() as u64 / 2,
                house((25, 1)).samples_before(m),
                "samples decoded for {m} frames"
            );
            let rep = common::ts::check(&std::fs::read(p).unwrap(), common::ts::Limits::default());
            assert!(rep.is_clean(), "{:?}", rep.first_errors);
        }
        None => {
            let w = watch.0.lock().unwrap();
            assert_eq!(w.video_pes, m, "pictures out");
            assert_eq!(w.max_video, (m - 1) * 3600, "the last picture's time");
            // The last audio PES starts within its own length (AAC frames, PES of ≤ 1024
            // bytes: well under 0.2 s) of the last picture.
            let d = w.max_video as i64 - w.last_audio as i64;
            assert!(
                d.abs() < 18000,
                "audio and video {d} ticks apart after {m} frames"
            );
            eprintln!("soak: audio PES {d} ticks from the last picture after {m} frames");
        }
    }
}

#[test]
fn two_minutes_of_schedule_without_drift() {
    let dir = tempfile::tempdir().unwrap();
    soak(2, Some(&dir.path().join("soak.ts")));
}

/// `ANTENNE_PLAYOUT_SOAK=1`: 24 hours of schedule (or `ANTENNE_PLAYOUT_SOAK_MINUTES`), as fast
/// as the machine goes, checked on the running TS.
#[test]
fn soak_24h_fast() {
    if std::env::var("ANTENNE_PLAYOUT_SOAK").as_deref() != Ok("1") {
        eprintln!("skipped: set ANTENNE_PLAYOUT_SOAK=1");
        return;
    }
    let minutes = std::env::var("ANTENNE_PLAYOUT_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(24 * 60);
    soak(minutes, None);
}

/// The wall clock: a channel whose epoch is now airs each item at its time, nothing late; the
/// emergency slate replaces the item on air while the schedule runs on underneath.
#[test]
fn real_time_with_the_emergency_slate() {
    use antenne::playout::engine::SystemClock;
    let dir = tempfile::tempdir().unwrap();
    let a = make_clip(dir.path(), 2, "25", false, 2.0);
    let b = make_clip(dir.path(), 3, "25", false, 2.0);
    // The channel's epoch a little ahead, so that it starts at frame 0.
    let epoch = SystemTime::now() + Duration::from_millis(300);
    let slots = vec![file_slot("A", 0, 40, &a, 0), file_slot("B", 40, 40, &b, 0)];
    let out = dir.path().join("rt.ts");
    let rec: Arc<dyn ChunkSink> =
        Arc::new(Recorder(Mutex::new(std::fs::File::create(&out).unwrap())));
    let mut spec = ChannelSpec::new("rt", house((25, 1)), false, epoch);
    spec.outputs.push(ChannelOutput::Ts {
        name: "rec".into(),
        sink: rec,
        encode: TsEncode {
            video_bitrate: 400_000,
            preset: "ultrafast".into(),
            gop_frames: 25,
            b_frames: 0,
            audio: TsAudio::Aac { bitrate: 64_000 },
            muxrate: Some(2_000_000),
        },
    });
    spec.prefetch_frames = 25;
    let aired: Arc<Mutex<Vec<Aired>>> = Arc::default();
    let x = aired.clone();
    let ch = Channel::start(
        spec,
        Arc::new(Fixed(slots)),
        Arc::new(SystemClock),
        move |a| x.lock().unwrap().push(a),
    )
    .unwrap();
    for (frame, emergency) in [(50, Some(true)), (60, Some(false)), (79, None)] {
        assert!(
            ch.wait_for_frame(frame, Duration::from_secs(30)),
            "frame {frame}: {:?}",
            ch.status()
        );
        if let Some(e) = emergency {
            ch.emergency(e);
        }
    }
    let done = SystemTime::now();
    let st = ch.status();
    ch.stop().unwrap();
    // Frame 79 went out at its time (3.16 s after the epoch), not earlier, not much later.
    let at = done.duration_since(epoch).unwrap().as_secs_f64();
    assert!(
        (3.1..3.6).contains(&at),
        "frame 79 out {at} s after the epoch"
    );
    assert_eq!(st.first_frame, 0);
    // A few frames may leave late on a loaded shared machine; none may be missing.
    assert!(st.late_frames <= 8 && st.underruns == 0, "{st:?}");
    let aired = aired.lock().unwrap();
    assert_eq!(
        (aired[0].start, aired[0].frames, &aired[0].substitution),
        (0, 40, &None)
    );
    assert_eq!((aired[1].start, aired[1].frames), (40, 40));
    assert!(matches!(
        aired[1].substitution,
        Some(Substitution::Operator(_))
    ));
    // B's pictures before and after the slate are at their own frames: it ran on underneath.
    let got = codes(&out);
    assert_eq!(got[45], Some((3, 5)));
    assert_eq!(got[75], Some((3, 35)));
    let slate = (50..62).filter(|&j| got[j].is_none()).count();
    assert!(
        slate >= 8,
        "{slate} slate frames in 50..62: {:?}",
        &got[45..65]
    );
}

#[test]
fn breaks_go_into_live_hls_as_dateranges_and_cue_tags() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_clip(dir.path(), 2, "25", false, 6.0);
    let mut sa = file_slot("A", 0, 150, &a, 0);
    sa.breaks = vec![Break {
        at: 40,
        duration: 30,
        event_id: 11,
        time_signal: false,
    }];
    let hls = dir.path().join("hls");
    let mut spec = ChannelSpec::new("hls", house((25, 1)), false, epoch());
    spec.outputs.push(ChannelOutput::Hls {
        name: "hls".into(),
        dir: hls.clone(),
        segment_s: 1.0,
        encode: TsEncode {
            video_bitrate: 400_000,
            preset: "ultrafast".into(),
            gop_frames: 25,
            b_frames: 0,
            audio: TsAudio::Aac { bitrate: 64_000 },
            muxrate: None,
        },
    });
    let ch = Channel::start(
        spec,
        Arc::new(Fixed(vec![sa])),
        Arc::new(FastClock::starting_at(epoch())),
        |_| {},
    )
    .unwrap();
    assert!(ch.wait_for_frame(149, Duration::from_secs(60)));
    ch.stop().unwrap();
    let text = std::fs::read_to_string(hls.join("index.m3u8")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = |p: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("no {p} in\n{text}"))
    };
    // The window keeps 6 segments of 1 s: segment numbers from the media sequence.
    let seq: usize = lines[at("#EXT-X-MEDIA-SEQUENCE:")]
        .split(':')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let seg = |n: usize| at(&format!("seg_{n:06}.ts"));
    assert!(seq <= 1, "{text}");
    // Out at 1.6 s: before segment 1 (1–2 s); in at 2.8 s: before segment 2.
    let out = at("#EXT-X-CUE-OUT:1.200");
    assert!(out < seg(1) && (seq == 1 || seg(0) < out), "{text}");
    let back = at("#EXT-X-CUE-IN");
    assert!(seg(1) < back && back < seg(2), "{text}");
    let dr = lines[at("#EXT-X-DATERANGE:ID=\"11\",START-DATE")];
    // The channel's epoch (2027-01-15T08:00:00Z) + 40 frames.
    assert!(dr.contains("START-DATE=\"2027-01-15T08:00:01.6Z\""), "{dr}");
    assert!(dr.contains("PLANNED-DURATION=1.200"), "{dr}");
    let hexed = dr.split("SCTE35-OUT=").nth(1).unwrap();
    let j = threefive(
        &(0..hexed.len() / 2 - 1)
            .map(|i| u8::from_str_radix(&hexed[2 + 2 * i..4 + 2 * i], 16).unwrap())
            .collect::<Vec<u8>>(),
    );
    assert_eq!(j["command"]["splice_event_id"], 11, "{j}");
    assert_eq!(j["command"]["out_of_network_indicator"], true, "{j}");
    assert!(text.contains("SCTE35-IN=0xFC"), "{text}");
    assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME"), "{text}");
    // The decorated playlist plays.
    let v = common::ffprobe(&hls.join("index.m3u8"), false);
    assert_eq!(v["streams"][0]["codec_name"], "h264", "{v}");
}

/// Items at different levels come out level with each other: a gain each, from the catalog's
/// loudness when it is known, else measured.
#[test]
fn items_are_brought_to_the_channel_loudness() {
    use antenne::playout::engine::LoudnessTarget;
    let dir = tempfile::tempdir().unwrap();
    let a = make_clip(dir.path(), 2, "25", false, 3.0);
    let b = make_clip(dir.path(), 3, "25", false, 3.0);
    let quiet = dir.path().join("quiet.mov");
    common::ffmpeg(&[
        "-i",
        b.to_str().unwrap(),
        "-c:v",
        "copy",
        "-af",
        "volume=-14dB",
        "-c:a",
        "pcm_s16le",
        quiet.to_str().unwrap(),
    ]);
    let slots = vec![
        file_slot("loud", 0, 60, &a, 0),
        file_slot("quiet", 60, 60, &quiet, 0),
    ];
    let out = dir.path().join("level.ts");
    air(
        |s| {
            s.prefetch_frames = 40;
            s.loudness = Some(LoudnessTarget {
                target_lufs: -23.0,
                known: None,
            })
        },
        (25, 1),
        false,
        slots,
        120,
        &out,
        TsAudio::S302m,
    );
    let pts = video_pts(&out);
    let audio = audio_on_clock(&out);
    let rms_db = |from: usize, to: usize| {
        let s = (pts[from] * 48000.0) as usize;
        let e = (pts[to] * 48000.0) as usize;
        let x = &audio[s..e];
        let ms = x.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>() / x.len() as f64;
        10.0 * ms.log10()
    };
    // The sources differ by 14 dB; on air by less than 1.
    let (l, q) = (rms_db(0, 59), rms_db(60, 119));
    assert!(
        (l - q).abs() < 1.0,
        "loud item at {l:.1} dB, quiet one at {q:.1} dB"
    );
    // And both sit near the target (a 2–3 kHz tone: K-weighting adds about 3 dB to RMS).
    assert!((-30.0..-18.0).contains(&l), "{l:.1} dB");
}

/// The mean luma of each decoded picture's rectangle (x, y, w, h).
fn region_luma(ts: &Path, r: (usize, usize, usize, usize)) -> Vec<f64> {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(ts)
        .args(["-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::stderr(&o));
    let (x, y, w, h) = r;
    o.stdout
        .chunks_exact((W * H) as usize)
        .map(|f| {
            let mut sum = 0.0;
            for row in y..y + h {
                for col in x..x + w {
                    sum += f64::from(f[row * W as usize + col]);
                }
            }
            sum / (w * h) as f64
        })
        .collect()
}

/// A 5.1 house with the timecode/clock overlay: the TS carries a stereo downmix and the 5.1
/// (two AAC tracks, 2 and 6 channels, each as long as the video); the overlay is drawn in the
/// lower left (black in the clip) on every picture, and leaves the clip's coded frames intact.
#[test]
fn surround_house_and_timecode_overlay() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_clip(dir.path(), 1, "25", false, 3.0);
    let out = dir.path().join("surround.ts");
    let aired = air(
        |s| {
            s.house.channels = 6;
            s.overlay_timecode = true;
        },
        (25, 1),
        false,
        vec![file_slot("A", 0, 60, &a, 0)],
        60,
        &out,
        TsAudio::Aac { bitrate: 96_000 },
    );
    assert_eq!(aired[0].frames, 60);
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name,channels,duration",
            "-of",
            "json",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let audio: Vec<(String, u64)> = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["codec_type"] == "audio")
        .map(|s| {
            (
                s["codec_name"].as_str().unwrap().to_string(),
                s["channels"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        audio,
        [("aac".to_string(), 2), ("aac".to_string(), 6)],
        "{v}"
    );
    // The 5.1 carries the clip's sound (upmixed), not silence.
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&out)
        .args(["-map", "0:a:1", "-af", "pan=mono|c0=FL", "-f", "f32le", "-"])
        .output()
        .unwrap();
    let s: Vec<f32> = o
        .stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let peak = s.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(
        s.len() > 48_000 && peak > 0.05,
        "{} samples, peak {peak}",
        s.len()
    );
    let corner = region_luma(&out, (20, 140, 60, 30));
    assert!(corner.len() >= 59, "{} pictures", corner.len());
    assert!(
        corner.iter().all(|&l| l > 40.0),
        "the overlay is on every picture: {corner:?}"
    );
    let got = codes(&out);
    assert_eq!(got[0], Some((1, 0)));
    assert_eq!(got[59], Some((1, 59)));
}

/// A UDP socket read as a byte stream (each datagram's bytes in turn).
struct UdpStream(std::net::UdpSocket);

impl std::io::Read for UdpStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.recv(buf)
    }
}

/// The live source of the test: one UDP port, handed out once.
struct OnePort(Mutex<Option<std::net::UdpSocket>>);

impl antenne::playout::engine::LiveSources for OnePort {
    fn open(&self, source: &str) -> Result<antenne::av::io::InputSource, String> {
        let s = self.0.lock().unwrap().take().ok_or("taken already")?;
        Ok(antenne::av::io::InputSource::Stream(
            antenne::av::io::ByteSource::new(source, UdpStream(s)),
        ))
    }
}

/// Whether each decoded picture is the flat green of the live source (its chroma).
fn live_green(ts: &Path) -> Vec<bool> {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(ts)
        .args([
            "-map",
            "0:v:0",
            "-vf",
            "scale=32:18",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "rawvideo",
            "-",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::stderr(&o));
    o.stdout
        .chunks_exact(864)
        .map(|f| {
            let mean = |p: &[u8]| p.iter().map(|&x| f64::from(x)).sum::<f64>() / p.len() as f64;
            mean(&f[576..720]) < 100.0 && mean(&f[720..]) < 100.0
        })
        .collect()
}

/// A live event in a 25i channel on the wall clock: clip → live (a progressive 25p feed over
/// UDP from `ffmpeg`) → clip. Every picture of the output is interlaced (TFF), the live slot is
/// the feed's pictures from its first frame to its last, the clips' pictures are at their own
/// frames on both sides, and the timestamps step one frame throughout.
#[test]
fn a_live_event_in_an_interlaced_house() {
    use antenne::playout::engine::SystemClock;
    let dir = tempfile::tempdir().unwrap();
    let a = make_clip(dir.path(), 2, "25", true, 2.0);
    let b = make_clip(dir.path(), 3, "25", true, 2.0);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let port = sock.local_addr().unwrap().port();
    let mut sender = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i"])
        .arg("color=c=0x20C020:size=640x360:rate=25:duration=30")
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=700:duration=30:sample_rate=48000",
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-c:a",
            "aac",
        ])
        .args(["-f", "mpegts"])
        .arg(format!("udp://127.0.0.1:{port}?pkt_size=1316"))
        .spawn()
        .unwrap();
    let epoch = SystemTime::now() + Duration::from_millis(500);
    let live = AirSlot {
        item: "L".into(),
        start: 50,
        frames: 75,
        material: Material::Live {
            source: "cam".into(),
        },
        breaks: vec![],
        secondary: vec![],
    };
    let slots = vec![
        file_slot("A", 0, 50, &a, 0),
        live,
        file_slot("B", 125, 50, &b, 0),
    ];
    let out = dir.path().join("live25i.ts");
    let rec: Arc<dyn ChunkSink> =
        Arc::new(Recorder(Mutex::new(std::fs::File::create(&out).unwrap())));
    let mut spec = ChannelSpec::new("live25i", house((25, 1)), true, epoch);
    spec.outputs.push(ChannelOutput::Ts {
        name: "rec".into(),
        sink: rec,
        encode: TsEncode {
            video_bitrate: 600_000,
            preset: "ultrafast".into(),
            gop_frames: 25,
            b_frames: 0,
            audio: TsAudio::Aac { bitrate: 64_000 },
            muxrate: Some(2_000_000),
        },
    });
    spec.prefetch_frames = 25;
    spec.live = Some(Arc::new(OnePort(Mutex::new(Some(sock)))));
    let aired: Arc<Mutex<Vec<Aired>>> = Arc::default();
    let x = aired.clone();
    let ch = Channel::start(
        spec,
        Arc::new(Fixed(slots)),
        Arc::new(SystemClock),
        move |a| x.lock().unwrap().push(a),
    )
    .unwrap();
    assert!(
        ch.wait_for_frame(174, Duration::from_secs(30)),
        "{:?}",
        ch.status()
    );
    ch.stop().unwrap();
    let _ = sender.kill();
    let _ = sender.wait();
    let aired = aired.lock().unwrap();
    let l = aired.iter().find(|a| a.slot.item == "L").unwrap();
    assert_eq!((l.start, l.frames, &l.substitution), (50, 75, &None));
    let frames = common::video_frames(&out);
    assert!(frames.len() >= 175, "{} pictures", frames.len());
    assert!(
        frames.iter().take(175).all(|f| f.2 && f.3),
        "every picture interlaced, top field first"
    );
    for w in frames.windows(2).take(174) {
        assert!(((w[1].0 - w[0].0) - 0.04).abs() < 0.002, "PTS step {w:?}");
    }
    let green = live_green(&out);
    let got = codes(&out);
    assert_eq!(got[49], Some((2, 49)));
    assert!(
        green[50..125].iter().all(|&g| g),
        "the live slot is the feed's: {:?}",
        green[45..130]
            .iter()
            .map(|&g| if g { 'L' } else { '.' })
            .collect::<String>()
    );
    assert!(!green[..50].iter().any(|&g| g) && !green[125..175].iter().any(|&g| g));
    assert_eq!(got[125], Some((3, 0)));
    assert_eq!(got[174], Some((3, 49)));
}
