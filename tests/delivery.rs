//! Delivery profiles and their verification, checked with independent readers: ffprobe (HLS,
//! DASH, frames), mediainfo (MXF), ffmpeg's ebur128 (loudness).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn transcode_json(input: &Path, profile: &str, out: &Path) -> (bool, Value, String) {
    let o = run(antenne()
        .arg("transcode")
        .arg(input)
        .args(["--profile", profile, "--json", "-o"])
        .arg(out));
    let v = serde_json::from_str(&stdout(&o)).unwrap_or(Value::Null);
    (o.status.success(), v, stderr(&o))
}

fn report(path: &Path) -> Value {
    let mut p = path.as_os_str().to_owned();
    p.push(".verify.json");
    serde_json::from_str(&std::fs::read_to_string(PathBuf::from(p)).unwrap()).unwrap()
}

fn check<'a>(rep: &'a Value, name: &str) -> &'a Value {
    rep["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {rep}"))
}

#[test]
fn hls_ladder_is_a_verified_package_that_players_can_read() {
    let d = tempfile::tempdir().unwrap();
    let src = make(
        d.path(),
        "show.mov",
        &Clip {
            size: "640x360",
            seconds: 14.0,
            vf: Some("setfield=tff"),
            extra: &[
                "-flags",
                "+ildct+ilme",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-c:a",
                "pcm_s24le",
            ],
            ..Clip::default()
        },
    );
    let out = d.path().join("out");
    let (ok, j, err) = transcode_json(&src, "hls-ladder", &out);
    assert!(ok, "{err}");
    let pkg = out.join("show_hls-ladder");
    assert_eq!(
        files(&out),
        vec!["show_hls-ladder"],
        "only the published package"
    );
    // Not upscaled: a 360p source gives 360p and the smallest rendition, plus audio.
    assert_eq!(
        files(&pkg),
        vec!["234p", "360p", "audio", "manifest.mpd", "master.m3u8"]
    );
    assert!(
        j["verify"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["pass"] == true),
        "{j}"
    );

    let master = std::fs::read_to_string(pkg.join("master.m3u8")).unwrap();
    let variants = antenne::output::package::hls::parse_master(&master).unwrap();
    assert_eq!(variants.len(), 2);
    for v in &variants {
        let dir = pkg.join(v.uri.trim_end_matches("/index.m3u8"));
        let media = antenne::output::package::hls::parse_media(
            &std::fs::read_to_string(pkg.join(&v.uri)).unwrap(),
        )
        .unwrap();
        assert!(media.ended && media.target_duration == 6, "{media:?}");
        let n = media.segments.len();
        for (k, s) in media.segments.iter().enumerate() {
            if k + 1 < n {
                assert!(
                    (s.duration_s - 6.0).abs() < 0.05,
                    "segment {k} lasts {}",
                    s.duration_s
                );
            }
            // Each segment on its own (after the init segment) starts with a keyframe.
            let joined = d.path().join(format!(
                "seg-{}.mp4",
                if k == 0 {
                    "0".to_string()
                } else {
                    format!("{}-{k}", v.height)
                }
            ));
            let mut bytes = std::fs::read(dir.join("init.mp4")).unwrap();
            bytes.extend(std::fs::read(dir.join(&s.uri)).unwrap());
            std::fs::write(&joined, bytes).unwrap();
            let frames = video_frames(&joined);
            assert!(
                frames.first().is_some_and(|f| f.1),
                "{} segment {k} does not start with a keyframe",
                v.uri
            );
        }
        // RESOLUTION and CODECS agree with what ffprobe reads in the rendition.
        let p = ffprobe(&d.path().join("seg-0.mp4"), false);
        let st = &p["streams"][0];
        assert_eq!(
            (
                st["width"].as_u64().unwrap() as u32,
                st["height"].as_u64().unwrap() as u32
            ),
            (v.width, v.height)
        );
        let level = st["level"].as_u64().unwrap();
        let profile_idc = match st["profile"].as_str().unwrap() {
            "High" => "64",
            "Main" => "4d",
            other => panic!("profile {other}"),
        };
        assert!(
            v.codecs.starts_with(&format!("avc1.{profile_idc}")),
            "{} vs {}",
            v.codecs,
            st["profile"]
        );
        assert!(
            v.codecs.ends_with(&format!("{level:02x},mp4a.40.2")),
            "{} vs level {level}",
            v.codecs
        );
        assert_eq!(v.frame_rate, 25.0);
        // AVERAGE-BANDWIDTH is the real average: total bytes of video and audio over the duration.
        let total = |d: &Path| -> u64 {
            std::fs::read_dir(d)
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| {
                    !e.file_name().to_string_lossy().ends_with(".m3u8")
                        && !e.file_name().to_string_lossy().ends_with(".json")
                })
                .map(|e| e.metadata().unwrap().len())
                .sum()
        };
        let secs: f64 = media.segments.iter().map(|s| s.duration_s).sum();
        let avg = ((total(&dir) + total(&pkg.join("audio"))) as f64 * 8.0 / secs) as u64;
        assert!(
            (v.average_bandwidth as f64 / avg as f64 - 1.0).abs() < 0.02,
            "AVERAGE-BANDWIDTH {} vs {avg}",
            v.average_bandwidth
        );
        assert!(v.bandwidth >= v.average_bandwidth);
    }
    // Independent readers open the master playlist and the DASH manifest.
    for manifest in ["master.m3u8", "manifest.mpd"] {
        let o = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,width,height",
                "-of",
                "csv=p=0",
            ])
            .arg(pkg.join(manifest))
            .output()
            .unwrap();
        let s = stdout(&o);
        assert!(
            o.status.success()
                && s.contains("h264,640,360")
                && s.contains("h264,416,234")
                && s.contains("aac"),
            "{manifest}: {s} {}",
            stderr(&o)
        );
    }
    // Deinterlaced: no interlaced frame in the renditions.
    let rep = report(&pkg.join("360p/index.m3u8"));
    assert_eq!(check(&rep, "field order")["measured"], "progressive");
    assert_eq!(check(&rep, "segments start on a keyframe")["pass"], true);
    let rep = report(&pkg.join("audio/index.m3u8"));
    assert_eq!(check(&rep, "programme loudness")["pass"], true);
}

#[test]
fn verify_command_checks_any_file_against_a_profile() {
    let d = tempfile::tempdir().unwrap();
    let src = make(
        d.path(),
        "in.mkv",
        &Clip {
            seconds: 3.0,
            ..Clip::default()
        },
    );
    let out = d.path().join("out");
    let (ok, _, err) = transcode_json(&src, "proxy", &out);
    assert!(ok, "{err}");
    let file = out.join("in_proxy.mp4");
    let o = run(antenne()
        .arg("verify")
        .arg(&file)
        .args(["--profile", "proxy", "--source"])
        .arg(&src));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("ok   GOP length (decoded)"),
        "{}",
        stdout(&o)
    );
    // The same file is not an XDCAM HD422 file: a non-zero exit and a report that says why.
    let o = run(antenne().arg("verify").arg(&file).args([
        "--profile",
        "xdcam-hd422-1080i25",
        "--json",
    ]));
    assert!(!o.status.success());
    let rep: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(rep["pass"], false);
    for name in [
        "container",
        "video codec",
        "resolution",
        "field order",
        "pixel format",
        "audio tracks",
    ] {
        assert_eq!(check(&rep, name)["pass"], false, "{name} should fail");
    }
    assert_eq!(
        report(&file)["pass"],
        false,
        "the report next to the file is the last verdict"
    );
}

#[test]
fn loudness_lands_on_target_and_agrees_with_ffmpeg() {
    let d = tempfile::tempdir().unwrap();
    // A quiet programme (about -31 LUFS) and one with loud bursts that need the limiter.
    let quiet = d.path().join("quiet.mov");
    let bursty = d.path().join("bursty.mov");
    for (path, af) in [
        (&quiet, "anoisesrc=color=pink:amplitude=0.5:duration=6:sample_rate=48000:seed=7,volume=-14dB"),
        (&bursty, "anoisesrc=color=pink:amplitude=0.5:duration=6:sample_rate=48000:seed=11,volume=-14dB,volume='if(lt(mod(t,2),0.06),6,1)':eval=frame"),
    ] {
        ffmpeg(&[
            "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=6", "-f", "lavfi", "-i", af,
            "-filter_complex", "[1]pan=stereo|c0=c0|c1=c0[a]", "-map", "0:v", "-map", "[a]",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "pcm_s24le", path.to_str().unwrap(),
        ]);
    }
    for src in [&quiet, &bursty] {
        for (profile, target, ext) in [
            ("web-h264", -16.0, "web.mp4"),
            ("xdcam-hd422-1080i25", -23.0, "xdcam.mxf"),
        ] {
            let out = d.path().join(format!("out-{profile}"));
            let (ok, _, err) = transcode_json(src, profile, &out);
            assert!(ok, "{profile} from {}: {err}", src.display());
            let stem = src.file_stem().unwrap().to_str().unwrap();
            let file = out.join(format!("{stem}_{ext}"));
            let rep = report(&file);
            let ours: f64 = check(&rep, "programme loudness")["measured"]
                .as_str()
                .unwrap()
                .trim_end_matches(" LUFS")
                .parse()
                .unwrap();
            // The programme: the first stream, or the first two mono tracks as a stereo pair.
            let prefix = if ext.ends_with(".mxf") {
                "[0:a:0][0:a:1]join=inputs=2:channel_layout=stereo,"
            } else {
                "[0:a:0]"
            };
            let (i, _, tp) = ebur128_reference(&file, prefix);
            assert!(
                (ours - i).abs() <= 0.1,
                "{profile} {stem}: antenne {ours} vs ffmpeg {i}"
            );
            assert!(
                (i - target).abs() <= 0.5,
                "{profile} {stem}: {i} LUFS, target {target}"
            );
            assert!(tp <= -1.0 + 0.2, "{profile} {stem}: true peak {tp}");
        }
    }
}

#[test]
fn house_and_edit_profiles_read_back_as_specified() {
    let d = tempfile::tempdir().unwrap();
    let src = make(
        d.path(),
        "m.mov",
        &Clip {
            seconds: 1.0,
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
                "-c:a",
                "pcm_s24le",
                "-timecode",
                "10:00:00:00",
            ],
            ..Clip::default()
        },
    );
    let out = d.path().join("out");
    for profile in [
        "avci100-1080i25",
        "xdcam-hd422-720p50",
        "prores-422hq",
        "dnxhd-hq-1080",
        "mobile-h264",
        "imx50-576i25",
    ] {
        let (ok, _, err) = transcode_json(&src, profile, &out);
        assert!(ok, "{profile}: {err}");
    }
    let mi = |f: &str, q: &str| mediainfo(&out.join(f), q);
    assert!(mi("m_avci.mxf", "General;%Format_Profile%").contains("OP-1a"));
    let v = mi(
        "m_avci.mxf",
        "Video;%Format%|%Format_Profile%|%BitDepth%|%ChromaSubsampling%|%ScanType%|%ScanOrder%",
    );
    let v = v.trim();
    // x264 codes AVC-Intra 1080i as MBAFF: interlaced, top field first.
    assert!(
        v.starts_with("AVC|High 4:2:2 Intra") && v.contains("|10|4:2:2|") && v.ends_with("|TFF"),
        "{v}"
    );
    assert!(v.contains("|MBAFF|") || v.contains("|Interlaced|"), "{v}");
    let v = mi(
        "m_xdcam.mxf",
        "Video;%Format_Profile%|%Width%x%Height%|%FrameRate%|%ScanType%|%Format_Settings_GOP%",
    );
    assert!(
        v.contains("4:2:2@High|1280x720|50.000|Progressive|M=3, N=12"),
        "{v}"
    );
    let p = ffprobe(&out.join("m_prores.mov"), false);
    assert_eq!(
        (
            p["streams"][0]["codec_name"].as_str(),
            p["streams"][0]["profile"].as_str()
        ),
        (Some("prores"), Some("HQ"))
    );
    let p = ffprobe(&out.join("m_dnxhr.mxf"), false);
    assert_eq!(p["streams"][0]["profile"], "DNXHR HQ");
    let p = ffprobe(&out.join("m_mobile.mp4"), false);
    assert_eq!(
        (
            p["streams"][0]["profile"].as_str(),
            p["streams"][0]["height"].as_u64()
        ),
        // A platform rendition is not upscaled: the 180-line source stays 180 lines.
        (Some("Main"), Some(180))
    );
    let g = mi(
        "m_imx50.mxf",
        "General;%Format_Profile%|%Format_Commercial%",
    );
    assert!(g.contains("OP-1a|IMX 50"), "{g}");
    let v = mi("m_imx50.mxf", "Video;%Width%x%Height%|%Format_Settings_GOP%|%BitRate%|%ScanOrder%|%DisplayAspectRatio/String%");
    // mediainfo reports the displayed 576 lines of the 608 stored ones.
    assert!(v.contains("720x576|N=1|50000000|TFF|16:9"), "{v}");
    let p = ffprobe(&out.join("m_imx50.mxf"), false);
    assert_eq!(
        p["streams"][1]["channels"], 4,
        "one AES3-style track of 4 channels"
    );
    for f in [
        "m_avci.mxf",
        "m_xdcam.mxf",
        "m_prores.mov",
        "m_dnxhr.mxf",
        "m_mobile.mp4",
        "m_imx50.mxf",
    ] {
        assert_eq!(report(&out.join(f))["pass"], true, "{f}");
    }
    assert_eq!(
        check(&report(&out.join("m_avci.mxf")), "GOP length (decoded)")["pass"],
        true
    );
    assert_eq!(
        check(&report(&out.join("m_avci.mxf")), "start timecode")["measured"],
        "10:00:00:00"
    );
}

#[test]
fn validate_refuses_impossible_profiles_before_any_encode() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("profiles");
    std::fs::create_dir(&dir).unwrap();
    let avci = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/firmware-config/profiles/avci100-1080i25.toml"
    ))
    .unwrap();
    std::fs::write(
        dir.join("sd-avci.toml"),
        avci.replace("name = \"avci100-1080i25\"", "name = \"sd-avci\"")
            .replace("width = 1920", "width = 720")
            .replace("height = 1080", "height = 576"),
    )
    .unwrap();
    let o = run(antenne().arg("validate").arg("--profiles-dir").arg(&dir));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("sd-avci.toml") && e.contains("AVC-Intra"), "{e}");
    // The same refusal at transcode time, before anything is written.
    let src = make(
        d.path(),
        "s.mkv",
        &Clip {
            seconds: 1.0,
            ..Clip::default()
        },
    );
    let o = run(antenne()
        .arg("transcode")
        .arg(&src)
        .args(["--profile", "web-h264", "-o"])
        .arg(d.path().join("o"))
        .arg("--profiles-dir")
        .arg(&dir));
    assert!(!o.status.success());
    assert!(!d.path().join("o").exists());
    let o = run(antenne().arg("validate"));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn thumbnails_make_a_poster_and_storyboard_sheets() {
    let d = tempfile::tempdir().unwrap();
    let src = make(
        d.path(),
        "film.mp4",
        &Clip {
            size: "640x360",
            seconds: 65.0,
            audio_streams: &[],
            extra: &["-c:v", "libx264", "-preset", "ultrafast"],
            ..Clip::default()
        },
    );
    let out = d.path().join("out");
    let (ok, j, err) = transcode_json(&src, "thumbnails", &out);
    assert!(ok, "{err}");
    assert!(
        j["verify"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["pass"] == true),
        "{j}"
    );
    let pkg = out.join("film_thumbnails");
    let images: Vec<String> = files(&pkg)
        .into_iter()
        .filter(|f| f.ends_with(".jpg"))
        .collect();
    assert_eq!(
        images,
        vec!["poster.jpg", "storyboard_001.jpg"],
        "65 s at one frame per 10 s fits one 5x5 sheet"
    );
    let p = ffprobe(&pkg.join("poster.jpg"), false);
    assert_eq!(
        (
            p["streams"][0]["codec_name"].as_str(),
            p["streams"][0]["width"].as_u64()
        ),
        (Some("mjpeg"), Some(1280))
    );
    let p = ffprobe(&pkg.join("storyboard_001.jpg"), false);
    assert_eq!(
        (
            p["streams"][0]["width"].as_u64(),
            p["streams"][0]["height"].as_u64()
        ),
        (Some(1280), Some(720))
    );
    // The poster is the picture at 10 % of the programme (6.5 s), not the first frame.
    let at = |t: &str| {
        let f = d.path().join(format!("ref-{t}.png"));
        ffmpeg(&[
            "-ss",
            t,
            "-i",
            src.to_str().unwrap(),
            "-frames:v",
            "1",
            "-vf",
            "scale=1280:720",
            f.to_str().unwrap(),
        ]);
        f
    };
    let q_right = psnr(&pkg.join("poster.jpg"), &at("6.5"), "1280:720");
    let q_wrong = psnr(&pkg.join("poster.jpg"), &at("0"), "1280:720");
    assert!(
        q_right > q_wrong + 3.0,
        "poster PSNR vs 6.5 s {q_right}, vs 0 s {q_wrong}"
    );
}
