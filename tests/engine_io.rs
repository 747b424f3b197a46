//! The engine's typed endpoints: a pipeline whose input and output are byte streams, not files,
//! as live sources (SRT, UDP, a hub reader) and live sinks (SRT/UDP TS, a segmenter) plug in.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread;

use antenne::av::engine::{self, OutputSpec, PipelineSpec, Progress, VideoOut};
use antenne::av::hw::Backend;
use antenne::av::io::{ByteSink, ByteSource, InputSource, OutputSink};

/// 2 s of 320x180 at 25 fps, as MPEG-TS, made by the ffmpeg CLI straight into memory.
fn ts_bytes() -> Vec<u8> {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x180:rate=25:duration=2")
        .args(["-c:v", "mpeg2video", "-g", "12", "-f", "mpegts", "pipe:1"])
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg runs");
    assert!(
        o.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.stdout.len() > 10_000,
        "ffmpeg made {} bytes",
        o.stdout.len()
    );
    o.stdout
}

/// `ffprobe -count_frames` reading the bytes on its standard input.
fn probe_bytes(data: &[u8]) -> serde_json::Value {
    let mut child = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
        ])
        .args([
            "-show_entries",
            "format=format_name",
            "-of",
            "json",
            "-i",
            "pipe:0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffprobe runs");
    let mut stdin = child.stdin.take().expect("ffprobe stdin");
    let data = data.to_vec();
    let feeder = thread::spawn(move || {
        // ffprobe may stop reading early; a broken pipe then is not our failure.
        let _ = stdin.write_all(&data);
    });
    let o = child.wait_with_output().expect("ffprobe finishes");
    feeder.join().expect("feeder");
    assert!(
        o.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("ffprobe json")
}

#[test]
fn ts_bytes_in_through_a_channel_come_out_as_ts_bytes_on_a_channel() {
    let source = ts_bytes();
    let dir = tempfile::tempdir().unwrap();
    let cwd_before = std::fs::read_dir(".").unwrap().count();

    // The input: chunks of 1316 bytes (seven TS packets, as in a UDP datagram) sent on a bounded
    // channel by another thread while the engine runs; nothing can seek or reopen it.
    let (feed, input) = ByteSource::channel(dir.path().join("feed.ts").display().to_string(), 8);
    let (sink, out_rx) = ByteSink::channel("out.ts", 8);
    let sender = thread::spawn(move || {
        for chunk in source.chunks(1316) {
            feed.send(chunk.to_vec()).expect("engine reads the feed");
        }
    });
    let collector = thread::spawn(move || out_rx.iter().flatten().collect::<Vec<u8>>());

    let spec = PipelineSpec {
        input: InputSource::Stream(input),
        video_stream: Some(0),
        audio_streams: vec![],
        declared_duration_s: None,
        hw_decode: None,
        outputs: vec![OutputSpec {
            name: "live".into(),
            sink: OutputSink::Stream(sink),
            muxer: "mpegts".into(),
            mux_options: vec![],
            metadata: vec![],
            video: Some(VideoOut {
                filter: "[in]format=yuv420p[out]".into(),
                gpu_filter: None,
                encoder: "libx264".into(),
                backend: Backend::Software,
                frame_rate: (25, 1),
                bit_rate: Some(1_000_000),
                max_rate: None,
                min_rate: None,
                buffer_size: None,
                initial_occupancy: None,
                gop: Some(12),
                b_frames: Some(0),
                closed_gop: true,
                profile_id: None,
                level_id: None,
                interlaced: None,
                bt709: false,
                sample_aspect: (1, 1),
                options: vec![("preset".into(), "ultrafast".into())],
                global_header: false,
            }),
            audio: None,
            tap: None,
        }],
    };
    let report = engine::run(
        &spec,
        Arc::new(Progress::default()),
        Arc::new(AtomicBool::new(false)),
    )
    .expect("stream to stream runs");
    sender.join().expect("sender");
    let out = collector.join().expect("collector");

    assert_eq!(report.frames_decoded, 50);
    assert!(report.outputs.is_empty(), "no file: {:?}", report.outputs);
    // Nothing was written beside the test, under the input's name or the output's.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(".").unwrap().count(), cwd_before);
    assert!(!std::path::Path::new("out.ts").exists());
    assert_eq!(out.first(), Some(&0x47), "MPEG-TS starts with a sync byte");
    assert_eq!(out.len() % 188, 0, "whole TS packets: {} bytes", out.len());

    let probed = probe_bytes(&out);
    assert_eq!(probed["format"]["format_name"], "mpegts", "{probed}");
    let v = &probed["streams"][0];
    assert_eq!(v["codec_name"], "h264", "{probed}");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(320), Some(180))
    );
    assert_eq!(v["nb_read_frames"], "50", "{probed}");
}

#[test]
fn a_stream_input_can_be_read_only_once_and_a_cancel_reaches_a_stalled_feed() {
    // A feed that never sends: the open waits in the reader until the cancel, then says so.
    let (feed, input) = ByteSource::channel("stalled.ts", 1);
    let spec = PipelineSpec {
        input: InputSource::Stream(input),
        video_stream: Some(0),
        audio_streams: vec![],
        declared_duration_s: None,
        hw_decode: None,
        outputs: vec![],
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let c = cancel.clone();
    let canceller = thread::spawn(move || {
        thread::sleep(std::time::Duration::from_millis(300));
        c.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let started = std::time::Instant::now();
    let err = engine::run(&spec, Arc::new(Progress::default()), cancel).unwrap_err();
    canceller.join().unwrap();
    assert!(
        matches!(err, antenne::av::AvError::Cancelled),
        "stalled feed: {err:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    drop(feed);
    // The reader went with the first run: a second one cannot silently read nothing.
    let err = engine::run(
        &spec,
        Arc::new(Progress::default()),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap_err();
    assert!(
        matches!(err, antenne::av::AvError::NotMedia { .. }),
        "second read: {err:?}"
    );
}
