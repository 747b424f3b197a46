//! Round trips: transcode generated sources with the shipped profiles and check the results with
//! independent readers (ffprobe, mediainfo, ffmpeg's psnr), by decoding the outputs.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn transcode(input: &Path, profile: &str, out: &Path, extra: &[&str]) -> Vec<PathBuf> {
    let o = run(antenne()
        .arg("transcode")
        .arg(input)
        .args(["--profile", profile, "-o"])
        .arg(out)
        .args(extra));
    assert!(
        o.status.success(),
        "transcode {profile} failed: {}",
        stderr(&o)
    );
    let paths: Vec<PathBuf> = stdout(&o)
        .lines()
        .filter_map(|l| l.strip_prefix("output: "))
        .map(PathBuf::from)
        .collect();
    assert!(!paths.is_empty(), "no output line in {}", stdout(&o));
    for p in &paths {
        assert!(p.is_file(), "{} missing", p.display());
    }
    assert!(
        !files(out).iter().any(|f| f.ends_with(".part")),
        "a .part file was left: {:?}",
        files(out)
    );
    paths
}

fn stream<'a>(probe: &'a Value, kind: &str, n: usize) -> &'a Value {
    probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["codec_type"] == kind)
        .nth(n)
        .unwrap_or_else(|| panic!("no {kind} stream {n}"))
}

fn f(v: &Value) -> f64 {
    v.as_str()
        .map(|s| s.parse().unwrap())
        .or_else(|| v.as_f64())
        .unwrap()
}

fn assert_monotonic(frames: &[(f64, bool, bool, bool)]) {
    for w in frames.windows(2) {
        assert!(
            w[1].0 > w[0].0,
            "timestamps not increasing: {} then {}",
            w[0].0,
            w[1].0
        );
    }
}

/// Byte offset of a top-level MP4 box.
fn box_offset(path: &Path, name: &[u8; 4]) -> Option<u64> {
    let data = std::fs::read(path).unwrap();
    let mut off = 0usize;
    while off + 8 <= data.len() {
        let size = u32::from_be_bytes(data[off..off + 4].try_into().unwrap()) as usize;
        if &data[off + 4..off + 8] == name {
            return Some(off as u64);
        }
        if size < 8 {
            return None;
        }
        off += size;
    }
    None
}

#[test]
fn interlaced_source_to_web_h264_is_deinterlaced_not_upscaled_and_faststart() {
    let d = tempfile::tempdir().unwrap();
    let src = make(
        d.path(),
        "news.mov",
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
                "-crf",
                "10",
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
    let out = d.path().join("out");
    let outs = transcode(&src, "web-h264", &out, &[]);
    assert_eq!(outs, vec![out.join("news_web.mp4")]);
    let p = ffprobe(&outs[0], true);
    let v = stream(&p, "video", 0);
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(v["profile"], "High");
    // Made at the source's size: a platform rendition does not upscale.
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(320), Some(180))
    );
    assert_eq!(v["nb_read_frames"], "50");
    assert_eq!(v["avg_frame_rate"], "25/1");
    assert_eq!(v["pix_fmt"], "yuv420p");
    assert_eq!(v["color_primaries"], "bt709");
    assert!(
        (f(&p["format"]["duration"]) - 2.0).abs() <= 0.05,
        "duration {}",
        p["format"]["duration"]
    );
    let a = stream(&p, "audio", 0);
    assert_eq!(a["codec_name"], "aac");
    assert_eq!(a["channels"], 2);
    assert_eq!(a["sample_rate"], "48000");
    // Timecode carried (MP4 tmcd track).
    let tc = p["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|s| s["tags"]["timecode"].as_str());
    assert_eq!(tc, Some("10:00:00:00"));
    // Deinterlaced: progressive frames, timestamps increasing.
    let frames = video_frames(&outs[0]);
    assert_eq!(frames.len(), 50);
    assert!(
        frames.iter().all(|fr| !fr.2),
        "output frames flagged interlaced"
    );
    assert_monotonic(&frames);
    // moov before mdat: playable while downloading.
    let (moov, mdat) = (
        box_offset(&outs[0], b"moov").unwrap(),
        box_offset(&outs[0], b"mdat").unwrap(),
    );
    assert!(moov < mdat, "moov at {moov}, mdat at {mdat}");
    // Same picture: PSNR against the source scaled the same way.
    // The source is SD-sized and untagged (BT.601); the output is BT.709: compare like with like.
    let q = psnr(
        &outs[0],
        &src,
        "320:180:in_color_matrix=bt601:out_color_matrix=bt709",
    );
    assert!(q > 30.0, "PSNR {q} dB");
}

#[test]
fn progressive_50p_to_xdcam_hd422_is_interlaced_tff_op1a_with_8_pcm_tracks() {
    let d = tempfile::tempdir().unwrap();
    let src = make(
        d.path(),
        "sport.mp4",
        &Clip {
            rate: "50",
            extra: &[
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-crf",
                "10",
                "-c:a",
                "aac",
                "-timecode",
                "09:59:50:00",
            ],
            ..Clip::default()
        },
    );
    let out = d.path().join("out");
    let outs = transcode(&src, "xdcam-hd422-1080i25", &out, &[]);
    let x = &outs[0];
    assert!(x.to_string_lossy().ends_with("sport_xdcam.mxf"));
    let p = ffprobe(x, true);
    let v = stream(&p, "video", 0);
    assert_eq!(v["codec_name"], "mpeg2video");
    assert_eq!(v["profile"], "4:2:2");
    assert_eq!(v["pix_fmt"], "yuv422p");
    assert_eq!(v["field_order"], "tt");
    assert_eq!(v["display_aspect_ratio"], "16:9");
    assert_eq!(
        v["nb_read_frames"], "50",
        "2 s of 50p become 50 interlaced frames"
    );
    assert_eq!(p["format"]["tags"]["timecode"], "09:59:50:00");
    let audio: Vec<&Value> = p["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["codec_type"] == "audio")
        .collect();
    assert_eq!(audio.len(), 8);
    for a in &audio {
        assert_eq!(a["codec_name"], "pcm_s24le");
        assert_eq!(a["channels"], 1);
        assert_eq!(a["sample_rate"], "48000");
    }
    let frames = video_frames(x);
    assert!(
        frames.iter().all(|fr| fr.2 && fr.3),
        "every frame interlaced, top field first"
    );
    assert_monotonic(&frames);
    // An independent MXF reader agrees.
    let general = mediainfo(x, "General;%Format%|%Format_Profile%");
    assert!(
        general.contains("MXF|OP-1a"),
        "mediainfo general: {general}"
    );
    let video = mediainfo(x, "Video;%Format%|%Format_Profile%|%BitRate_Mode%|%ScanType%|%ScanOrder%|%Format_Settings_GOP%");
    assert!(
        video.contains("MPEG Video|4:2:2@High|CBR|Interlaced|TFF|M=3, N=12"),
        "mediainfo video: {video}"
    );
    let pcm = mediainfo(x, "Audio;%Format% %BitDepth% %Channels%\\n");
    assert_eq!(
        pcm.lines().filter(|l| l.trim() == "PCM 24 1").count(),
        8,
        "mediainfo audio: {pcm}"
    );
    let bitrate = f(&v["bit_rate"]);
    assert_eq!(bitrate, 50_000_000.0);
}

#[test]
fn four_three_source_is_pillarboxed_not_stretched() {
    let d = tempfile::tempdir().unwrap();
    let src = make(
        d.path(),
        "archive.mkv",
        &Clip {
            // As large as the proxy's frame, so that it is not made smaller (no upscaling).
            size: "640x480",
            ..Clip::default()
        },
    );
    let out = d.path().join("out");
    let outs = transcode(&src, "proxy", &out, &[]);
    // 640x360 frame, 4:3 picture = 480 wide: 80 black columns each side.
    let o = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&outs[0])
        .args([
            "-frames:v",
            "1",
            "-vf",
            "crop=70:300:0:0,format=gray",
            "-f",
            "rawvideo",
            "-",
        ])
        .output()
        .unwrap();
    assert!(!o.stdout.is_empty());
    let max = *o.stdout.iter().max().unwrap();
    assert!(max <= 20, "left border should be black, max luma {max}");
    let o = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&outs[0])
        .args([
            "-frames:v",
            "1",
            "-vf",
            "crop=300:300:170:0,format=gray",
            "-f",
            "rawvideo",
            "-",
        ])
        .output()
        .unwrap();
    let avg = o.stdout.iter().map(|&b| b as u64).sum::<u64>() / o.stdout.len() as u64;
    assert!(
        avg > 40,
        "picture area should hold the picture, average luma {avg}"
    );
}

#[test]
fn proxy_burns_in_the_source_timecode() {
    let d = tempfile::tempdir().unwrap();
    let src = make(
        d.path(),
        "tc.mov",
        &Clip {
            size: "640x360",
            extra: &[
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-crf",
                "5",
                "-c:a",
                "aac",
                "-timecode",
                "10:00:00:00",
            ],
            ..Clip::default()
        },
    );
    let out = d.path().join("out");
    let outs = transcode(&src, "proxy", &out, &[]);
    let p = ffprobe(&outs[0], true);
    let v = stream(&p, "video", 0);
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert_eq!(v["nb_read_frames"], "50");
    // The lower band (where the timecode box is) differs from the source; the top does not.
    let band_psnr = |y: &str| -> f64 {
        psnr_graph(
            &outs[0],
            &src,
            &format!(
                "[0:v]crop=400:40:120:{y}[a];[1:v]scale=640:360:in_color_matrix=bt601:out_color_matrix=bt709,crop=400:40:120:{y}[b];[a][b]psnr"
            ),
        )
    };
    let top = band_psnr("0");
    let bottom = band_psnr("305");
    assert!(top > 28.0, "top band PSNR {top}");
    assert!(
        bottom < top - 8.0,
        "burnt-in timecode not found: bottom {bottom} vs top {top}"
    );
}

#[test]
fn ntsc_rate_source_is_converted_to_25() {
    let d = tempfile::tempdir().unwrap();
    let src = make(
        d.path(),
        "us.mp4",
        &Clip {
            rate: "30000/1001",
            seconds: 2.0,
            extra: &["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
            ..Clip::default()
        },
    );
    let out = d.path().join("out");
    let outs = transcode(&src, "xdcam-hd422-1080i25", &out, &[]);
    let p = ffprobe(&outs[0], true);
    let v = stream(&p, "video", 0);
    let n: i64 = v["nb_read_frames"].as_str().unwrap().parse().unwrap();
    assert!((n - 50).abs() <= 1, "{n} frames for 2 s at 25");
    assert_eq!(v["avg_frame_rate"], "25/1");
}

fn track_loudness(path: &Path) -> Vec<Option<f64>> {
    let o = run(antenne()
        .arg("probe")
        .arg(path)
        .args(["--json", "--loudness"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    v["audio"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["loudness"]["integrated_lufs"].as_f64())
        .collect()
}

#[test]
fn five_one_source_fills_programme_pair_and_discrete_tracks() {
    let d = tempfile::tempdir().unwrap();
    // Six different tones, one per channel of a 5.1 stream.
    let src = d.path().join("film.mkv");
    let mut args: Vec<String> = vec![
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        "testsrc2=size=320x180:rate=25".into(),
    ];
    for c in 0..6 {
        args.extend([
            "-f".into(),
            "lavfi".into(),
            "-i".into(),
            format!("sine=frequency={}:sample_rate=48000", 200 + 150 * c),
        ]);
    }
    args.extend([
        "-filter_complex".into(),
        "[1:a][2:a][3:a][4:a][5:a][6:a]join=inputs=6:channel_layout=5.1[a]".into(),
        "-map".into(),
        "0:v".into(),
        "-map".into(),
        "[a]".into(),
        "-t".into(),
        "2".into(),
        "-c:v".into(),
        "libx264".into(),
        "-preset".into(),
        "ultrafast".into(),
        "-c:a".into(),
        "pcm_s24le".into(),
        src.to_str().unwrap().into(),
    ]);
    ffmpeg(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let out = d.path().join("out");
    let outs = transcode(&src, "xdcam-hd422-1080i25", &out, &[]);
    let l = track_loudness(&outs[0]);
    assert_eq!(l.len(), 8);
    assert!(
        l.iter().all(|t| t.is_some()),
        "every track carries sound: {l:?}"
    );
}

#[test]
fn stereo_source_leaves_surround_tracks_silent() {
    let d = tempfile::tempdir().unwrap();
    let src = make(d.path(), "st.mkv", &Clip::default());
    let out = d.path().join("out");
    let outs = transcode(&src, "xdcam-hd422-1080i25", &out, &[]);
    let l = track_loudness(&outs[0]);
    assert!(l[0].is_some() && l[1].is_some(), "{l:?}");
    assert!(
        l[2..].iter().all(|t| t.is_none()),
        "tracks 3-8 must be silence: {l:?}"
    );
}

#[test]
fn mono_source_feeds_both_sides_and_silent_video_gets_a_silent_track() {
    let d = tempfile::tempdir().unwrap();
    let src = make(
        d.path(),
        "mono.mkv",
        &Clip {
            audio_streams: &[1],
            ..Clip::default()
        },
    );
    let out = d.path().join("out");
    let outs = transcode(&src, "proxy", &out, &[]);
    let p = ffprobe(&outs[0], false);
    assert_eq!(stream(&p, "audio", 0)["channels"], 2);

    let mute = make(
        d.path(),
        "mute.mkv",
        &Clip {
            audio_streams: &[],
            ..Clip::default()
        },
    );
    let outs = transcode(&mute, "proxy", &out, &[]);
    let p = ffprobe(&outs[0], true);
    let a = stream(&p, "audio", 0);
    assert_eq!(a["channels"], 2);
    assert!(
        (f(&a["duration"]) - 2.0).abs() < 0.1,
        "silence lasts as long as the video: {}",
        a["duration"]
    );
}

#[test]
fn a_user_profile_added_as_a_file_is_used_without_rebuilding() {
    let d = tempfile::tempdir().unwrap();
    let profiles = d.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    std::fs::write(
        profiles.join("tiny.toml"),
        r#"
name = "tiny"
description = "two outputs from one decode"
[[outputs]]
name = "a"
container = "matroska"
[outputs.video]
codec = "h264"
width = 160
height = 90
pix_fmt = "yuv420p"
rate_control = "crf"
crf = 30
gop = 25
preset = "ultrafast"
[outputs.audio]
codec = "aac"
bitrate = "64k"
sample_rate = 48000
tracks = ["stereo"]
[[outputs]]
name = "b"
container = "mov"
[outputs.video]
codec = "mpeg2video"
width = 320
height = 180
pix_fmt = "yuv420p"
rate_control = "vbr"
bitrate = "2M"
gop = 12
"#,
    )
    .unwrap();
    let list = run(antenne()
        .arg("profiles")
        .arg("--profiles-dir")
        .arg(&profiles));
    assert!(stdout(&list).contains("tiny"), "{}", stdout(&list));
    let src = make(d.path(), "s.mkv", &Clip::default());
    let out = d.path().join("out");
    let o = run(antenne()
        .arg("transcode")
        .arg(&src)
        .args(["--profile", "tiny", "-o"])
        .arg(&out)
        .arg("--profiles-dir")
        .arg(&profiles)
        .arg("--json"));
    assert!(o.status.success(), "{}", stderr(&o));
    let j: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["outputs"].as_array().unwrap().len(), 2);
    assert_eq!(j["frames"], 50, "one decode for both outputs");
    for (name, codec) in [("s_a.mkv", "h264"), ("s_b.mov", "mpeg2video")] {
        let p = ffprobe(&out.join(name), true);
        let v = stream(&p, "video", 0);
        assert_eq!(v["codec_name"], codec);
        assert_eq!(v["nb_read_frames"], "50");
    }
}

#[test]
fn demo_makes_a_clip_without_ffmpeg_cli_and_transcodes_it() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("demo");
    let o = run(antenne().arg("demo").arg("-o").arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(
        s.contains("output: ") && s.contains("demo-source_web.mp4"),
        "{s}"
    );
    let p = ffprobe(&out.join("demo-source_web.mp4"), true);
    let v = stream(&p, "video", 0);
    assert_eq!(v["nb_read_frames"], "125");
    let tc = p["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|s| s["tags"]["timecode"].as_str());
    assert_eq!(tc, Some("10:00:00:00"));
}

/// A programme-like source: hard cuts at frames that are not on a GOP boundary, a fade to
/// black, a one-frame white flash and a fade in (3 s at 25 fps, 75 frames).
fn cuts_flashes_fades(dir: &Path) -> PathBuf {
    let out = dir.join("cuts.mov");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=320x180:r=25:d=0.36",
        "-f",
        "lavfi",
        "-i",
        "mandelbrot=s=320x180:r=25,trim=duration=0.84,fade=out:15:6",
        "-f",
        "lavfi",
        "-i",
        "color=white:s=320x180:r=25:d=0.04",
        "-f",
        "lavfi",
        "-i",
        "smptebars=s=320x180:r=25:d=0.6,fade=in:0:10",
        "-f",
        "lavfi",
        "-i",
        "cellauto=s=320x180:r=25:rule=110,trim=duration=1.16",
        "-f",
        "lavfi",
        "-i",
        "sine=f=440:sample_rate=48000:d=3",
        "-filter_complex",
        "[0:v][1:v][2:v][3:v][4:v]concat=n=5:v=1:a=0,format=yuv420p,setpts=N/25/TB[v]",
        "-map",
        "[v]",
        "-map",
        "5:a",
        "-ac",
        "2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-qp",
        "10",
        "-c:a",
        "pcm_s16le",
        out.to_str().unwrap(),
    ]);
    out
}

/// Picture types of the first video stream in decode order of presentation, as `ffprobe` reads
/// them (`I`, `P`, `B`), with the key-frame flag.
fn picture_types(path: &Path) -> Vec<(char, bool)> {
    let o = ffprobe_frames(path, "key_frame,pict_type");
    assert!(
        o.status.success(),
        "ffprobe {}: {}",
        path.display(),
        stderr(&o)
    );
    let types: Vec<(char, bool)> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let key = f.first() == Some(&"1");
            let t = f.get(1).and_then(|t| t.chars().next()).unwrap_or('?');
            (t, key)
        })
        .collect();
    assert!(!types.is_empty(), "no frame read from {}", path.display());
    types
}

/// Frames between key frames that a profile's output must keep: `gop`, or `gop_seconds` at the
/// output's rate (the source's 25 fps where the profile keeps the source rate).
fn profile_gops(profile: &Path) -> Vec<(String, String, u64)> {
    let t: toml::Value = toml::from_str(&std::fs::read_to_string(profile).unwrap()).unwrap();
    let mut out = vec![];
    for o in t["outputs"].as_array().unwrap() {
        let Some(v) = o.get("video") else { continue };
        if v.get("thumbnails").is_some() || o["container"].as_str() == Some("image2") {
            continue;
        }
        let rate = match v.get("frame_rate").and_then(|r| r.as_str()) {
            Some(r) if r != "source" => {
                let (n, d) = r.split_once('/').unwrap_or((r, "1"));
                n.parse::<f64>().unwrap() / d.parse::<f64>().unwrap()
            }
            _ => 25.0,
        };
        let gop = match (v.get("gop"), v.get("gop_seconds")) {
            (Some(g), _) => g.as_integer().unwrap() as u64,
            (None, Some(s)) => (s.as_float().unwrap() * rate).round() as u64,
            (None, None) => continue,
        };
        out.push((
            o["name"].as_str().unwrap().to_string(),
            o["container"].as_str().unwrap().to_string(),
            gop,
        ));
    }
    out
}

fn assert_cadence(file: &Path, what: &str, gop: u64) {
    let types = picture_types(file);
    let keys: Vec<usize> = types
        .iter()
        .enumerate()
        .filter(|(_, (t, k))| *k || *t == 'I')
        .map(|(i, _)| i)
        .collect();
    let want: Vec<usize> = (0..types.len()).step_by(gop as usize).collect();
    let shown: String = types.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        keys, want,
        "{what}: I-frames must fall every {gop} frames whatever the picture does: {shown}"
    );
}

/// Every shipped profile that makes video, and one of each encoder family the default build has
/// (x264 in TS, x265, MPEG-2 long GOP in MOV), keeps its GOP on a source with cuts, flashes
/// and fades: checked by `ffprobe` on the files, beside antenne's own verification (which must
/// pass: the transcode fails otherwise).
#[test]
fn every_profile_and_encoder_family_keeps_its_gop_through_cuts_flashes_and_fades() {
    let d = tempfile::tempdir().unwrap();
    let src = cuts_flashes_fades(d.path());
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-config/profiles");
    let extra = d.path().join("profiles");
    std::fs::create_dir(&extra).unwrap();
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, extra.join(p.file_name().unwrap())).unwrap();
    }
    let family = |name: &str, container: &str, codec: &str, extra_keys: &str| {
        format!(
            r#"
name = "{name}"
description = "GOP cadence: {codec} in {container}"
[[outputs]]
name = "v"
container = "{container}"
[outputs.video]
codec = "{codec}"
width = 320
height = 180
pix_fmt = "yuv420p"
{extra_keys}
"#
        )
    };
    let families = [
        family(
            "gop-x264-ts",
            "mpegts",
            "h264",
            "rate_control = \"crf\"\ncrf = 26\ngop = 10\nb_frames = 2\npreset = \"veryfast\"",
        ),
        family(
            "gop-x265",
            "mp4",
            "hevc",
            "rate_control = \"crf\"\ncrf = 28\ngop = 15\nb_frames = 3\npreset = \"ultrafast\"",
        ),
        family(
            "gop-mpeg2-mov",
            "mov",
            "mpeg2video",
            "rate_control = \"vbr\"\nbitrate = \"4M\"\ngop = 15\nb_frames = 2\nclosed_gop = true",
        ),
    ];
    for text in &families {
        let name = text.split('"').nth(1).unwrap();
        std::fs::write(extra.join(format!("{name}.toml")), text).unwrap();
    }
    let mut checked = 0;
    let mut profiles: Vec<PathBuf> = std::fs::read_dir(&extra)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    profiles.sort();
    for prof in profiles {
        let gops = profile_gops(&prof);
        if gops.is_empty() {
            continue;
        }
        let name = prof.file_stem().unwrap().to_str().unwrap().to_string();
        let out = d.path().join(format!("out-{name}"));
        let o = run(antenne()
            .arg("transcode")
            .arg(&src)
            .args(["--profile", &name, "-o"])
            .arg(&out)
            .arg("--profiles-dir")
            .arg(&extra));
        assert!(
            o.status.success(),
            "{name} on a source with cuts: {}",
            stderr(&o)
        );
        let made: Vec<PathBuf> = stdout(&o)
            .lines()
            .filter_map(|l| l.strip_prefix("output: "))
            .map(PathBuf::from)
            .collect();
        for (output, container, gop) in gops {
            let files: Vec<PathBuf> = if container == "hls" {
                // A package: each rendition's playlist, when the rung was made (no upscale).
                made.iter()
                    .map(|m| m.join(&output).join("index.m3u8"))
                    .filter(|p| p.is_file())
                    .collect()
            } else {
                made.iter()
                    .filter(|m| {
                        m.file_stem()
                            .and_then(|s| s.to_str())
                            .is_some_and(|s| s.ends_with(&format!("_{output}")))
                    })
                    .cloned()
                    .collect()
            };
            if container == "hls" {
                // Larger rungs are not made from a 320×180 source; the smallest is.
                for f in &files {
                    assert_cadence(f, &format!("{name}/{output}"), gop);
                    checked += 1;
                }
                continue;
            }
            assert_eq!(files.len(), 1, "{name}/{output}: outputs {made:?}");
            assert_cadence(&files[0], &format!("{name}/{output}"), gop);
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} outputs checked");
}

/// Single-file platform renditions are made at the source's size when it is smaller than the
/// profile's frame (a 720p source into the 1080p web profile gives 1280×720), verified as such;
/// `upscale = true` in a profile brings the old behaviour back.
#[test]
fn web_rendition_of_a_720p_source_is_not_upscaled() {
    let d = tempfile::tempdir().unwrap();
    let src = make(
        d.path(),
        "hd.mp4",
        &Clip {
            size: "1280x720",
            seconds: 1.0,
            extra: &["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
            ..Clip::default()
        },
    );
    let out = d.path().join("out");
    let outs = transcode(&src, "web-h264", &out, &[]);
    let v = stream(&ffprobe(&outs[0], false), "video", 0).clone();
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(1280), Some(720))
    );
    assert_eq!(v["sample_aspect_ratio"].as_str().unwrap_or("1:1"), "1:1");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("hd_web.mp4.verify.json")).unwrap())
            .unwrap();
    assert_eq!(report["pass"], true, "{report}");

    let profiles = d.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    let web = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-config/profiles/web-h264.toml"),
    )
    .unwrap();
    let forced = web
        .replace("name = \"web-h264\"", "name = \"web-up\"")
        .replace("[outputs.video]", "[outputs.video]\nupscale = true");
    assert_ne!(forced, web);
    std::fs::write(profiles.join("web-up.toml"), forced).unwrap();
    let out2 = d.path().join("out2");
    let o = run(antenne()
        .arg("transcode")
        .arg(&src)
        .args(["--profile", "web-up", "-o"])
        .arg(&out2)
        .arg("--profiles-dir")
        .arg(&profiles));
    assert!(o.status.success(), "{}", stderr(&o));
    let v = stream(&ffprobe(&out2.join("hd_web.mp4"), false), "video", 0).clone();
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(1920), Some(1080))
    );
}
