//! `antenne probe` agrees with ffprobe and with ffmpeg's ebur128 filter on the same files.

mod common;

use common::*;
use serde_json::Value;

fn probe_json(path: &std::path::Path, loudness: bool) -> Value {
    let mut c = antenne();
    c.arg("probe").arg(path).arg("--json");
    if loudness {
        c.arg("--loudness");
    }
    let o = run(&mut c);
    assert!(o.status.success(), "probe failed: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).expect("probe prints JSON")
}

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        other => other.as_f64().unwrap(),
    }
}

fn field_order_of(ffprobe_value: &str) -> &'static str {
    match ffprobe_value {
        "progressive" => "progressive",
        "tt" | "bt" => "tff",
        "bb" | "tb" => "bff",
        other => panic!("unexpected ffprobe field order {other}"),
    }
}

fn compare(path: &std::path::Path) {
    let ours = probe_json(path, false);
    let theirs = ffprobe(path, false);
    let f = &theirs["format"];
    assert_eq!(ours["container"]["format"], f["format_name"]);
    assert!((num(&ours["container"]["duration_s"]) - num(&f["duration"])).abs() < 0.001);
    assert_eq!(
        num(&ours["container"]["bit_rate"]) as i64,
        num(&f["bit_rate"]) as i64
    );
    let streams = theirs["streams"].as_array().unwrap();
    let mut vi = 0;
    let mut ai = 0;
    for s in streams {
        match s["codec_type"].as_str().unwrap() {
            "video" => {
                let v = &ours["video"][vi];
                vi += 1;
                assert_eq!(v["index"], s["index"]);
                assert_eq!(v["codec"], s["codec_name"]);
                assert_eq!(v["width"], s["width"]);
                assert_eq!(v["height"], s["height"]);
                assert_eq!(v["pix_fmt"], s["pix_fmt"]);
                assert_eq!(v["profile"], s["profile"]);
                assert_eq!(v["level"], s["level"]);
                assert_eq!(v["frame_rate"], s["avg_frame_rate"]);
                assert_eq!(v["sample_aspect_ratio"], s["sample_aspect_ratio"]);
                assert_eq!(v["display_aspect_ratio"], s["display_aspect_ratio"]);
                if let Some(fo) = s["field_order"].as_str() {
                    assert_eq!(
                        v["field_order"],
                        field_order_of(fo),
                        "field order of {}",
                        path.display()
                    );
                }
                for (ours_key, theirs_key) in [
                    ("color_primaries", "color_primaries"),
                    ("color_transfer", "color_transfer"),
                    ("color_matrix", "color_space"),
                    ("color_range", "color_range"),
                ] {
                    if let Some(t) = s[theirs_key].as_str() {
                        if t != "unknown" {
                            assert_eq!(v[ours_key], t, "{ours_key}");
                        }
                    }
                }
            }
            "audio" => {
                let a = &ours["audio"][ai];
                ai += 1;
                assert_eq!(a["index"], s["index"]);
                assert_eq!(a["codec"], s["codec_name"]);
                assert_eq!(
                    a["sample_rate"].as_u64().unwrap(),
                    num(&s["sample_rate"]) as u64
                );
                assert_eq!(a["channels"], s["channels"]);
                assert_eq!(a["sample_fmt"], s["sample_fmt"]);
                if let Some(l) = s["channel_layout"].as_str() {
                    assert_eq!(a["channel_layout"], l);
                }
                if let Some(b) = s.get("bits_per_raw_sample").and_then(|b| b.as_str()) {
                    if b != "0" {
                        assert_eq!(a["bit_depth"].as_u64().unwrap(), b.parse::<u64>().unwrap());
                    }
                }
            }
            _ => {}
        }
    }
    assert_eq!(ours["video"].as_array().unwrap().len(), vi);
    assert_eq!(ours["audio"].as_array().unwrap().len(), ai);
}

#[test]
fn agrees_with_ffprobe_on_interlaced_h264_mov_with_timecode() {
    let d = tempfile::tempdir().unwrap();
    let f = make(
        d.path(),
        "i.mov",
        &Clip {
            vf: Some("setfield=tff"),
            extra: &[
                "-flags",
                "+ildct+ilme",
                "-top",
                "1",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "pcm_s24le",
                "-timecode",
                "10:00:00:00",
            ],
            ..Clip::default()
        },
    );
    compare(&f);
    let p = probe_json(&f, false);
    assert_eq!(p["video"][0]["field_order"], "tff");
    assert_eq!(p["container"]["start_timecode"], "10:00:00:00");
    assert_eq!(p["video"][0]["chroma_subsampling"], "4:2:0");
    assert_eq!(p["video"][0]["bit_depth"], 8);
}

#[test]
fn agrees_with_ffprobe_on_mpeg2_422_mxf_with_mono_tracks() {
    let d = tempfile::tempdir().unwrap();
    let f = make(
        d.path(),
        "x.mxf",
        &Clip {
            audio_streams: &[1, 1, 1, 1],
            vf: Some("setfield=bff"),
            extra: &[
                "-c:v",
                "mpeg2video",
                "-pix_fmt",
                "yuv422p",
                "-b:v",
                "8M",
                "-flags",
                "+ildct+ilme",
                "-top",
                "0",
                "-c:a",
                "pcm_s24le",
                "-timecode",
                "01:02:03:04",
            ],
            ..Clip::default()
        },
    );
    compare(&f);
    let p = probe_json(&f, false);
    assert_eq!(p["video"][0]["chroma_subsampling"], "4:2:2");
    assert_eq!(p["video"][0]["field_order"], "bff");
    assert_eq!(p["audio"].as_array().unwrap().len(), 4);
    assert_eq!(p["audio"][0]["bit_depth"], 24);
    assert_eq!(p["container"]["start_timecode"], "01:02:03:04");
}

#[test]
fn agrees_with_ffprobe_on_10bit_progressive_mkv() {
    let d = tempfile::tempdir().unwrap();
    let f = make(
        d.path(),
        "p10.mkv",
        &Clip {
            rate: "30000/1001",
            extra: &[
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv422p10le",
                "-color_primaries",
                "bt709",
                "-color_trc",
                "bt709",
                "-colorspace",
                "bt709",
                "-c:a",
                "aac",
                "-b:a",
                "128k",
            ],
            ..Clip::default()
        },
    );
    compare(&f);
    let p = probe_json(&f, false);
    assert_eq!(p["video"][0]["bit_depth"], 10);
    assert_eq!(p["video"][0]["frame_rate"], "30000/1001");
    assert_eq!(p["video"][0]["field_order"], "progressive");
    assert_eq!(p["video"][0]["color_primaries"], "bt709");
}

#[test]
fn loudness_agrees_with_ffmpeg_ebur128() {
    let d = tempfile::tempdir().unwrap();
    // A programme with dynamics (a quiet part, then a loud one, over pink noise), 20 s stereo:
    // long enough for the loudness range to be meaningful.
    let f = d.path().join("prog.wav");
    ffmpeg(&[
        "-f", "lavfi", "-i", "sine=frequency=997:sample_rate=48000:duration=20",
        "-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.2:duration=20:sample_rate=48000",
        "-filter_complex",
        "[0]volume='if(lt(t,8),0.3,0.9)':eval=frame[a];[a][1]amix=inputs=2:normalize=0,pan=stereo|c0=c0|c1=0.5*c0[o]",
        "-map", "[o]", "-c:a", "pcm_s24le", f.to_str().unwrap(),
    ]);
    let p = probe_json(&f, true);
    let (i, lra, tp) = ebur128_reference(&f, "");
    let ours_i = num(&p["loudness"]["integrated_lufs"]);
    let ours_tp = num(&p["loudness"]["true_peak_dbtp"]);
    let ours_lra = num(&p["loudness"]["range_lu"]);
    assert!(
        (ours_i - i).abs() <= 0.1,
        "integrated {ours_i} vs ffmpeg {i}"
    );
    assert!(
        (ours_tp - tp).abs() <= 0.2,
        "true peak {ours_tp} vs ffmpeg {tp}"
    );
    assert!(
        (ours_lra - lra).abs() <= 0.2,
        "range {ours_lra} vs ffmpeg {lra}"
    );
    assert!(lra > 3.0, "the test programme must have dynamics");
    assert_eq!(p["loudness"]["streams"], serde_json::json!([0]));
}

#[test]
fn loudness_of_two_mono_tracks_is_measured_as_a_stereo_pair() {
    let d = tempfile::tempdir().unwrap();
    let f = make(
        d.path(),
        "m.mxf",
        &Clip {
            seconds: 4.0,
            audio_streams: &[1, 1, 1],
            extra: &[
                "-c:v",
                "mpeg2video",
                "-pix_fmt",
                "yuv422p",
                "-c:a",
                "pcm_s24le",
            ],
            ..Clip::default()
        },
    );
    let p = probe_json(&f, true);
    assert_eq!(p["loudness"]["streams"], serde_json::json!([1, 2]));
    assert_eq!(p["loudness"]["channels"], 2);
    let (i, _, tp) = ebur128_reference(&f, "[0:a:0][0:a:1]join=inputs=2:channel_layout=stereo,");
    assert!(
        (num(&p["loudness"]["integrated_lufs"]) - i).abs() <= 0.1,
        "{} vs {i}",
        p["loudness"]
    );
    assert!(
        (num(&p["loudness"]["true_peak_dbtp"]) - tp).abs() <= 0.2,
        "{} vs {tp}",
        p["loudness"]
    );
    // Each track measured alone as well.
    assert!(p["audio"][2]["loudness"]["integrated_lufs"].is_number());
}

#[test]
fn human_output_names_the_essentials() {
    let d = tempfile::tempdir().unwrap();
    let f = make(
        d.path(),
        "h.mp4",
        &Clip {
            extra: &["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
            ..Clip::default()
        },
    );
    let o = run(antenne().arg("probe").arg(&f));
    assert!(o.status.success());
    let s = stdout(&o);
    for needle in [
        "h264",
        "320x180",
        "25/1",
        "progressive",
        "aac",
        "48000 Hz",
        "stereo",
    ] {
        assert!(s.contains(needle), "{needle} missing from:\n{s}");
    }
}
