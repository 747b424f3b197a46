//! Real-world damage a broadcast file brings: a picture size change mid-stream, a corrupt
//! timestamp, a PTS reset, audio that starts late, a name with `%`, a failing rerun. Each must
//! give a sane output (or a clean error) and never lose what was already delivered.

mod common;

use std::path::Path;

use common::*;

fn transcode(input: &Path, profile: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    run(antenne()
        .arg("transcode")
        .arg(input)
        .args(["--profile", profile, "-o"])
        .arg(out)
        .args(extra))
}

fn duration(path: &Path, kind: &str) -> f64 {
    let p = ffprobe(path, false);
    p["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == kind)
        .and_then(|s| s["duration"].as_str())
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn picture_size_change_mid_stream_keeps_the_output_size() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a.ts");
    let b = d.path().join("b.ts");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=720x576:rate=25:duration=2",
        "-c:v",
        "mpeg2video",
        a.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=352x288:rate=25:duration=2",
        "-c:v",
        "mpeg2video",
        "-output_ts_offset",
        "2",
        b.to_str().unwrap(),
    ]);
    let both = d.path().join("both.ts");
    let mut bytes = std::fs::read(&a).unwrap();
    bytes.extend(std::fs::read(&b).unwrap());
    std::fs::write(&both, bytes).unwrap();
    let out = d.path().join("out");
    let o = transcode(&both, "proxy", &out, &["--no-verify"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let p = ffprobe(&out.join("both_proxy.mp4"), true);
    let v = &p["streams"][0];
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(640), Some(360))
    );
    let n: u64 = v["nb_read_frames"].as_str().unwrap().parse().unwrap();
    assert!((95..=100).contains(&n), "{n} frames for 4 s");
}

#[test]
fn one_corrupt_timestamp_does_not_stretch_the_output() {
    let d = tempfile::tempdir().unwrap();
    let src = make(
        d.path(),
        "s.ts",
        &Clip {
            seconds: 5.0,
            extra: &["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
            ..Clip::default()
        },
    );
    let bad = d.path().join("jump.ts");
    // Frame 60's timestamp pushed ten hours ahead.
    ffmpeg(&[
        "-i",
        src.to_str().unwrap(),
        "-c",
        "copy",
        "-bsf:v",
        "setts=pts=if(eq(N\\,60)\\,PTS+90000*36000\\,PTS)",
        bad.to_str().unwrap(),
    ]);
    let out = d.path().join("out");
    let o = transcode(&bad, "proxy", &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dur = duration(&out.join("jump_proxy.mp4"), "video");
    assert!((dur - 5.0).abs() < 0.1, "{dur} s");
}

#[test]
fn late_audio_stays_in_sync() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("late.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=25:duration=5",
        "-itsoffset",
        "2",
        "-f",
        "lavfi",
        "-i",
        "sine=r=48000:d=3",
        "-map",
        "0",
        "-map",
        "1",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        src.to_str().unwrap(),
    ]);
    let out = d.path().join("out");
    let o = transcode(&src, "proxy", &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let file = out.join("late_proxy.mp4");
    let level = |ss: &str| -> f64 {
        let o = std::process::Command::new("ffmpeg")
            .args(["-nostdin", "-ss", ss, "-t", "1", "-i"])
            .arg(&file)
            .args(["-vn", "-af", "volumedetect", "-f", "null", "-"])
            .output()
            .unwrap();
        let e = stderr(&o);
        let l = e.lines().find(|l| l.contains("max_volume:")).unwrap();
        l.split("max_volume:")
            .nth(1)
            .unwrap()
            .trim()
            .trim_end_matches(" dB")
            .parse()
            .unwrap()
    };
    assert!(
        level("0") < -60.0,
        "the first second must be silence (audio starts at 2 s)"
    );
    assert!(level("3") > -30.0, "the tone plays from 2 s");
}

#[test]
fn a_failed_rerun_keeps_the_delivered_file() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let src = make(
        &out,
        "clip.mp4",
        &Clip {
            extra: &["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
            ..Clip::default()
        },
    );
    let o = transcode(&src, "proxy", &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let good = std::fs::read(out.join("clip_proxy.mp4")).unwrap();
    // The source is damaged afterwards; the rerun fails and must not touch the delivered file.
    let data = std::fs::read(&src).unwrap();
    std::fs::write(&src, &data[..data.len() / 3]).unwrap();
    let o = transcode(&src, "proxy", &out, &[]);
    assert!(!o.status.success());
    assert_eq!(std::fs::read(out.join("clip_proxy.mp4")).unwrap(), good);
    assert!(!files(&out).iter().any(|f| f.ends_with(".part")));
}

#[test]
fn percent_in_a_file_name_is_not_a_pattern() {
    let d = tempfile::tempdir().unwrap();
    let src = make(
        d.path(),
        "50%off.mp4",
        &Clip {
            seconds: 3.0,
            audio_streams: &[],
            extra: &["-c:v", "libx264", "-preset", "ultrafast"],
            ..Clip::default()
        },
    );
    let out = d.path().join("out");
    let o = transcode(&src, "thumbnails", &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pkg = out.join("50_off_thumbnails");
    assert!(
        pkg.join("poster.jpg").is_file() && pkg.join("storyboard_001.jpg").is_file(),
        "{:?}",
        files(&pkg)
    );
}

#[test]
fn video_without_audio_gets_silent_tracks_as_long_as_the_picture() {
    let d = tempfile::tempdir().unwrap();
    let src = make(
        d.path(),
        "mute.mp4",
        &Clip {
            seconds: 4.0,
            audio_streams: &[],
            extra: &["-c:v", "libx264", "-preset", "ultrafast"],
            ..Clip::default()
        },
    );
    let out = d.path().join("out");
    let o = transcode(&src, "xdcam-hd422-1080i25", &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let p = ffprobe(&out.join("mute_xdcam.mxf"), false);
    let audio: Vec<f64> = p["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["codec_type"] == "audio")
        .map(|s| s["duration"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(audio.len(), 8);
    assert!(audio.iter().all(|d| (d - 4.0).abs() < 0.05), "{audio:?}");
}
