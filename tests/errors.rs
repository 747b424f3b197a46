//! Bad input: each case gets a one-line error naming what is wrong with which file, a non-zero
//! exit, no panic, and nothing (final or partial) left in the output directory.

mod common;

use std::path::Path;

use common::*;

/// Runs `antenne transcode` and checks it failed cleanly; returns the error line.
fn fails(input: &Path, profile: &str, out: &Path) -> String {
    let o = run(antenne()
        .arg("transcode")
        .arg(input)
        .args(["--profile", profile, "-o"])
        .arg(out));
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "transcode of {} should fail",
        input.display()
    );
    assert_eq!(o.status.code(), Some(1), "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("progress:"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line expected, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(stdout(&o).is_empty(), "nothing on stdout: {}", stdout(&o));
    if out.is_dir() {
        assert!(
            files(out).is_empty(),
            "output directory not empty: {:?}",
            files(out)
        );
    }
    lines[0].to_string()
}

fn probe_fails(input: &Path) -> String {
    let o = run(antenne().arg("probe").arg(input));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn zero_byte_file() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("empty.mxf");
    std::fs::write(&f, b"").unwrap();
    let e = fails(&f, "web-h264", &d.path().join("out"));
    assert!(e.contains("empty.mxf") && e.contains("empty"), "{e}");
    assert!(probe_fails(&f).contains("empty"));
}

#[test]
fn text_file_named_mxf() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("notes.mxf");
    std::fs::write(&f, "Programme notes: not a video at all.\n".repeat(20)).unwrap();
    let e = fails(&f, "xdcam-hd422-1080i25", &d.path().join("out"));
    assert!(
        e.contains("notes.mxf") && e.contains("not a media file"),
        "{e}"
    );
    probe_fails(&f);
}

#[test]
fn missing_file() {
    let d = tempfile::tempdir().unwrap();
    let e = fails(&d.path().join("nope.mov"), "proxy", &d.path().join("out"));
    assert!(e.contains("nope.mov") && e.contains("no such file"), "{e}");
}

#[test]
fn truncated_file() {
    let d = tempfile::tempdir().unwrap();
    let src = make(
        d.path(),
        "whole.mxf",
        &Clip {
            seconds: 4.0,
            extra: &["-c:v", "mpeg2video", "-b:v", "4M", "-c:a", "pcm_s24le"],
            ..Clip::default()
        },
    );
    let data = std::fs::read(&src).unwrap();
    let cut = d.path().join("cut.mxf");
    std::fs::write(&cut, &data[..data.len() / 3]).unwrap();
    let e = fails(&cut, "proxy", &d.path().join("out"));
    assert!(e.contains("cut.mxf") && e.contains("truncated"), "{e}");
}

/// An MP4 cut before its index: libav's own reason ("moov atom not found", as `ffprobe` says),
/// not the bare "Invalid data found", and the file named once.
#[test]
fn truncated_mp4_names_the_missing_index_once() {
    let d = tempfile::tempdir().unwrap();
    let src = make(
        d.path(),
        "whole.mp4",
        &Clip {
            extra: &["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
            ..Clip::default()
        },
    );
    let data = std::fs::read(&src).unwrap();
    // ffmpeg writes moov at the end: the first half has no index.
    let cut = d.path().join("cut.mp4");
    std::fs::write(&cut, &data[..data.len() / 2]).unwrap();
    let peer = std::process::Command::new("ffprobe")
        .arg(&cut)
        .output()
        .expect("ffprobe");
    assert!(
        stderr(&peer).contains("moov atom not found"),
        "{}",
        stderr(&peer)
    );
    for e in [
        fails(&cut, "proxy", &d.path().join("out")),
        probe_fails(&cut),
    ] {
        assert!(e.contains("moov atom not found"), "{e}");
        assert!(!e.contains("Invalid data found"), "{e}");
        assert_eq!(e.matches("cut.mp4").count(), 1, "path once: {e}");
    }
}

#[test]
fn audio_only_file_for_a_video_profile() {
    let d = tempfile::tempdir().unwrap();
    let wav = d.path().join("voice.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=sample_rate=48000:duration=1",
        wav.to_str().unwrap(),
    ]);
    let e = fails(&wav, "web-h264", &d.path().join("out"));
    assert!(e.contains("voice.wav") && e.contains("no video"), "{e}");
}

#[test]
fn unknown_profile() {
    let d = tempfile::tempdir().unwrap();
    let src = make(d.path(), "s.mkv", &Clip::default());
    let e = fails(&src, "hd-magic", &d.path().join("out"));
    assert!(
        e.contains("hd-magic") && e.contains("web-h264"),
        "names the profile and the known ones: {e}"
    );
}

#[test]
fn output_directory_not_writable() {
    let d = tempfile::tempdir().unwrap();
    let src = make(d.path(), "s.mkv", &Clip::default());
    // A path under a regular file can never be created (chmod does not stop root).
    let blocker = d.path().join("blocker");
    std::fs::write(&blocker, b"x").unwrap();
    let e = fails(&src, "proxy", &blocker.join("out"));
    assert!(
        e.contains("blocker/out") && e.contains("output directory"),
        "{e}"
    );
    let e = fails(&src, "proxy", &blocker);
    assert!(e.contains("not a directory"), "{e}");
}

#[test]
fn playlists_and_concat_lists_cannot_reach_other_files() {
    let d = tempfile::tempdir().unwrap();
    let real = make(d.path(), "real.mkv", &Clip::default());
    let concat = d.path().join("list.ffconcat");
    std::fs::write(
        &concat,
        format!("ffconcat version 1.0\nfile '{}'\n", real.display()),
    )
    .unwrap();
    let e = fails(&concat, "proxy", &d.path().join("out"));
    assert!(e.contains("refused"), "{e}");
    let m3u8 = d.path().join("index.m3u8");
    std::fs::write(
        &m3u8,
        format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{}\n#EXT-X-ENDLIST\n",
            real.display()
        ),
    )
    .unwrap();
    let e = fails(&m3u8, "proxy", &d.path().join("out"));
    assert!(e.contains("refused"), "{e}");
    // Disguised as media: the sniffing does not trust the extension.
    let disguised = d.path().join("clip.mxf");
    std::fs::copy(&m3u8, &disguised).unwrap();
    let e = fails(&disguised, "proxy", &d.path().join("out"));
    assert!(e.contains("refused"), "{e}");
    // A concat script without the ffconcat header is not probed as concat at all.
    let bare = d.path().join("bare.txt");
    std::fs::write(&bare, format!("file '{}'\n", real.display())).unwrap();
    fails(&bare, "proxy", &d.path().join("out"));
}

#[test]
fn invalid_profile_file_names_file_and_key() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("profiles");
    std::fs::create_dir(&dir).unwrap();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/firmware-config/profiles/web-h264.toml"
    ))
    .unwrap()
    .replace("b_frames = 2", "bframes = 2");
    std::fs::write(dir.join("broken.toml"), text).unwrap();
    let o = run(antenne().arg("profiles").arg("--profiles-dir").arg(&dir));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("broken.toml") && e.contains("bframes"), "{e}");
    std::fs::write(
        dir.join("broken.toml"),
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/firmware-config/profiles/xdcam-hd422-1080i25.toml"
        ))
        .unwrap()
        .replace("sample_rate = 48000", "sample_rate = 44100"),
    )
    .unwrap();
    let o = run(antenne().arg("profiles").arg("--profiles-dir").arg(&dir));
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains("broken.toml") && e.contains("sample_rate"),
        "{e}"
    );
}

#[test]
fn interrupted_transcode_leaves_nothing_that_looks_finished() {
    let d = tempfile::tempdir().unwrap();
    let src = make(
        d.path(),
        "long.mkv",
        &Clip {
            seconds: 30.0,
            ..Clip::default()
        },
    );
    let out = d.path().join("out");
    let mut child = antenne()
        .arg("transcode")
        .arg(&src)
        .args(["--profile", "xdcam-hd422-1080i25", "-o"])
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the work has started (the .part file exists), then interrupt.
    let start = std::time::Instant::now();
    while !files(&out).iter().any(|f| f.ends_with(".part")) {
        assert!(
            start.elapsed().as_secs() < 60,
            "transcode never started writing"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "transcode ended before it could be interrupted"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success(), "interrupted transcode must fail");
    assert!(stderr(&o).contains("cancelled"), "{}", stderr(&o));
    assert!(files(&out).is_empty(), "left behind: {:?}", files(&out));
}

#[test]
fn explicit_gpu_backend_that_is_absent_is_a_clear_error_and_auto_falls_back() {
    let doctor = run(antenne().args(["doctor", "--json"]));
    assert!(doctor.status.success(), "{}", stderr(&doctor));
    let j: serde_json::Value = serde_json::from_str(&stdout(&doctor)).unwrap();
    let backends = j["backends"].as_array().unwrap();
    assert_eq!(backends[0]["backend"], "software");
    assert_eq!(backends[0]["available"], true);
    assert!(backends[0]["encoders"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "libx264"));
    let d = tempfile::tempdir().unwrap();
    let src = make(d.path(), "s.mkv", &Clip::default());
    for b in backends.iter().skip(1) {
        let name = b["backend"].as_str().unwrap();
        if b["available"] == true {
            continue; // tests/gpu.rs exercises it
        }
        assert!(
            b["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{name} unavailable without a reason"
        );
        let o = run(antenne()
            .arg("transcode")
            .arg(&src)
            .args(["--profile", "proxy", "--backend", name, "-o"])
            .arg(d.path().join("o2")));
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(
            e.contains(&format!("backend {name}")) && e.contains("not available"),
            "{e}"
        );
    }
    // auto on a machine without a usable GPU is the CPU.
    if backends.iter().skip(1).all(|b| b["available"] != true) {
        let o = run(antenne()
            .arg("transcode")
            .arg(&src)
            .args(["--profile", "proxy", "--json", "-o"])
            .arg(d.path().join("auto")));
        assert!(o.status.success(), "{}", stderr(&o));
        let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(j["backend"], "software");
    }
}

#[test]
fn damaged_media_never_crashes_the_engine() {
    let d = tempfile::tempdir().unwrap();
    let good = make(
        d.path(),
        "good.mp4",
        &Clip {
            extra: &["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
            ..Clip::default()
        },
    );
    let data = std::fs::read(&good).unwrap();
    // Deterministic xorshift: the same damage every run, so a failure can be replayed.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for case in 0..12 {
        let mut bad = data.clone();
        match case % 3 {
            0 => {
                for _ in 0..64 {
                    let i = (next() as usize) % bad.len();
                    bad[i] = next() as u8;
                }
            }
            1 => {
                let start = (next() as usize) % bad.len();
                let len = (next() as usize % 4096).min(bad.len() - start);
                bad[start..start + len].fill(0);
            }
            _ => bad.truncate((next() as usize) % bad.len()),
        }
        let f = d.path().join(format!("bad{case}.mp4"));
        std::fs::write(&f, &bad).unwrap();
        for args in [
            vec!["probe", "--json"],
            vec!["transcode", "--profile", "proxy", "-o"],
        ] {
            let mut c = antenne();
            c.arg(args[0]).arg(&f).args(&args[1..]);
            if args[0] == "transcode" {
                c.arg(d.path().join(format!("out{case}")));
            }
            let o = run(&mut c);
            let err = stderr(&o);
            assert!(
                matches!(o.status.code(), Some(0) | Some(1)),
                "case {case} {args:?}: killed or crashed: {:?} {err}",
                o.status
            );
            assert!(!err.contains("panicked"), "case {case}: {err}");
            if !o.status.success() {
                assert!(
                    err.lines().last().is_some_and(|l| l.starts_with("error: ")),
                    "case {case}: {err}"
                );
            }
        }
        let out = d.path().join(format!("out{case}"));
        assert!(
            !files(&out).iter().any(|f| f.ends_with(".part")),
            "case {case}: .part left"
        );
    }
}

/// `antenne validate` reads the whole configuration before it answers: mistakes in the
/// appliance's file, in a profile and in a workflow are all reported at once, one line each,
/// each naming its file and key.
#[test]
fn validate_reports_every_mistake_of_the_configuration_at_once() {
    let d = tempfile::tempdir().unwrap();
    let (profiles, workflows) = (d.path().join("profiles"), d.path().join("workflows"));
    std::fs::create_dir(&profiles).unwrap();
    std::fs::create_dir(&workflows).unwrap();
    let config = d.path().join("antenne.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"nowhere\"\n[auth]\nsession_hours = 0\n[storage]\ndata_dir = {:?}\n\
             [transcode]\nprofiles_dir = {:?}\n[jobs]\nworkflows_dir = {:?}\n",
            d.path().join("data"),
            profiles,
            workflows
        ),
    )
    .unwrap();
    std::fs::write(
        profiles.join("house.toml"),
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/firmware-config/profiles/xdcam-hd422-1080i25.toml"
        ))
        .unwrap()
        .replace("sample_rate = 48000", "sample_rate = 44100"),
    )
    .unwrap();
    std::fs::write(
        workflows.join("odd.toml"),
        "name = \"odd\"\n[[steps]]\nkind = \"teleport\"\n",
    )
    .unwrap();
    let o = run(antenne().arg("validate").arg("--config").arg(&config));
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("error: ")).collect();
    let has = |file: &str, key: &str| lines.iter().any(|l| l.contains(file) && l.contains(key));
    assert!(has("antenne.toml", "server.listen"), "{e}");
    assert!(has("antenne.toml", "auth"), "{e}");
    assert!(has("house.toml", "sample_rate"), "{e}");
    assert!(has("odd.toml", "steps[0]"), "{e}");
    // Those four, and the count.
    assert_eq!(lines.len(), 5, "{e}");
    assert!(lines[4].contains("4 mistake"), "{e}");
}

/// `antenne validate` names every mistake of the whole configuration, not the first: keys the
/// types refuse (an unknown key, a value of the wrong type, in any section or array element)
/// beside the values out of bounds of every section (channels, destinations, storages) and of
/// every workflow, each with its file and key; the exit status says it failed.
#[test]
fn validate_names_every_refused_key_and_every_bad_value_at_once() {
    let d = tempfile::tempdir().unwrap();
    let (profiles, workflows) = (d.path().join("profiles"), d.path().join("workflows"));
    std::fs::create_dir(&profiles).unwrap();
    std::fs::create_dir(&workflows).unwrap();
    let config = d.path().join("antenne.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nlisen = \"typo\"\n\
             [auth]\nsession_hours = \"twelve\"\n\
             [storage]\ndata_dir = {:?}\n[transcode]\nprofiles_dir = {:?}\n\
             [jobs]\nworkflows_dir = {:?}\n\
             [[playout.channels]]\nname = \"one\"\nformat = \"1080i25\"\noutputs = [\"ftp://nowhere\"]\n\
             [[delivery.destinations]]\nname = \"pigeon\"\nkind = \"carrier-pigeon\"\n\
             [[delivery.destinations]]\nname = \"box\"\nkind = \"folder\"\npath = \"/srv/out\"\n\
             colour = \"blue\"\n\
             [storages]\nwarn_percent = 150.0\n",
            d.path().join("data"),
            profiles,
            workflows
        ),
    )
    .unwrap();
    // A profile with a key of the wrong type and an unknown one: one line, both named.
    std::fs::write(
        profiles.join("odd.toml"),
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/firmware-config/profiles/web-h264.toml"
        ))
        .unwrap()
        .replace("name = \"web-h264\"", "name = \"odd\"")
        .replace("width = 1920", "width = \"wide\"")
        .replace(
            "tolerance_lu = 0.5",
            "tolerance_lu = 0.5\ncolour = \"blue\"",
        ),
    )
    .unwrap();
    std::fs::write(
        workflows.join("news.toml"),
        "name = \"news\"\n[trigger]\nwatch = \"news\"\npoll_s = \"often\"\n\
         [[steps]]\nkind = \"teleport\"\n",
    )
    .unwrap();
    let o = run(antenne().arg("validate").arg("--config").arg(&config));
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("error: ")).collect();
    let has = |file: &str, key: &str, why: &str| {
        lines
            .iter()
            .any(|l| l.contains(file) && l.contains(key) && l.contains(why))
    };
    let want = [
        ("antenne.toml", "server.lisen", "unknown field"),
        ("antenne.toml", "auth.session_hours", "invalid type"),
        ("antenne.toml", "playout.channels", "outputs"),
        (
            "antenne.toml",
            "delivery.destinations.kind",
            "carrier-pigeon",
        ),
        (
            "antenne.toml",
            "delivery.destinations[1].colour",
            "unknown field",
        ),
        ("antenne.toml", "storages.warn_percent", ""),
        ("news.toml", "trigger.poll_s", "invalid type"),
        ("news.toml", "steps[0]", "teleport"),
        ("odd.toml", "outputs[0].video", "invalid type"),
        ("odd.toml", "loudness.colour", "unknown field"),
    ];
    for (file, key, why) in want {
        assert!(has(file, key, why), "{file} {key} {why:?} not named: {e}");
    }
    // Those, one line each (the profile's two on its line), and the count.
    let mistakes = want.len() - 1;
    assert_eq!(lines.len(), mistakes + 1, "{e}");
    assert!(
        lines[mistakes].contains(&format!("{mistakes} mistake")),
        "{e}"
    );
}
