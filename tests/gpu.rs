//! GPU encode paths. They run only where `antenne doctor` finds an openable device; elsewhere each
//! test says why it skipped (the fallback and the error are tested in tests/errors.rs), unless
//! `ANTENNE_REQUIRE_GPU` asks for that backend (`1` = nvenc, or a list `nvenc,vaapi`): then a
//! missing device fails the test.

mod common;

use common::*;

fn available(backend: &str) -> bool {
    let o = run(antenne().args(["doctor", "--json"]));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    j["backends"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["backend"] == backend && b["available"] == true)
}

/// Whether `ANTENNE_REQUIRE_GPU` asks for this backend: a list of backends (`nvenc,vaapi`), or
/// `1` for NVENC. Set on machines that have the GPU, so that a missing device fails.
fn required(backend: &str) -> bool {
    let Ok(v) = std::env::var("ANTENNE_REQUIRE_GPU") else {
        return false;
    };
    v.split(',')
        .map(str::trim)
        .any(|b| b == backend || (backend == "nvenc" && matches!(b, "1" | "true" | "yes" | "cuda")))
}

fn gpu_round_trip(backend: &str) {
    if !available(backend) {
        assert!(
            !required(backend),
            "ANTENNE_REQUIRE_GPU asks for {backend}, but `antenne doctor` finds no usable {backend} device"
        );
        eprintln!(
            "skipped: no {backend} device on this machine (ANTENNE_REQUIRE_GPU=1 makes this fail)"
        );
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let src = make(d.path(), "s.mkv", &Clip::default());
    let out = d.path().join("out");
    let o = run(antenne()
        .arg("transcode")
        .arg(&src)
        .args([
            "--profile",
            "web-h264",
            "--json",
            "--backend",
            backend,
            "-o",
        ])
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["backend"], backend);
    let p = ffprobe(&out.join("s_web.mp4"), true);
    let v = &p["streams"][0];
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(v["nb_read_frames"], "50");
    assert_eq!(v["width"], 1920);
    let q = psnr(
        &out.join("s_web.mp4"),
        &src,
        "1920:1080:in_color_matrix=bt601:out_color_matrix=bt709",
    );
    assert!(q > 30.0, "PSNR {q}");
    // auto picks the GPU for H.264 4:2:0 when it is there.
    let o = run(antenne()
        .arg("transcode")
        .arg(&src)
        .args(["--profile", "web-h264", "--json", "-o"])
        .arg(d.path().join("auto")));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_ne!(j["backend"], "software");
}

#[test]
fn nvenc_round_trip() {
    gpu_round_trip("nvenc");
}

#[test]
fn vaapi_round_trip() {
    gpu_round_trip("vaapi");
}

#[test]
fn gpu_is_not_used_for_what_it_cannot_encode() {
    // MPEG-2 4:2:2 (XDCAM) always goes to the CPU, with or without a GPU.
    let d = tempfile::tempdir().unwrap();
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
        .args(["--profile", "xdcam-hd422-1080i25", "--json", "-o"])
        .arg(d.path().join("x")));
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["backend"], "software");
}
