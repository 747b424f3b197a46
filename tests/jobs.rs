//! Jobs, workers, watch folders and workflows, with the service as a child process: a workflow
//! end to end, SIGKILL of the service while 200 files are ingested, a corrupt corpus, a slow
//! copy, worker crashes, hangs and memory, cancellation, and two appliances on one queue.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::server::{clip, sha256_hex, Server};
use serde_json::{json, Value};

fn workflow_dir(dir: &Path, toml: &str) -> PathBuf {
    let d = dir.join("workflows");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("default.toml"), toml).unwrap();
    d
}

fn start(dir: &Path, workflows: &Path, extra: &[(&str, String)]) -> Server {
    let mut env = vec![
        (
            "ANTENNE_JOBS_WORKFLOWS_DIR",
            workflows.display().to_string(),
        ),
        (
            "ANTENNE_STORAGE_DATA_DIR",
            dir.join("data").display().to_string(),
        ),
        ("ANTENNE_JOBS_WORKERS", "2".to_string()),
    ];
    env.extend(extra.iter().cloned());
    Server::start(&env)
}

/// The value of a counter with one `workflow` label in `/metrics` (0 before its first count).
fn counter(s: &Server, name: &str, workflow: &str) -> f64 {
    let m = ureq::get(&format!("{}/metrics", s.base))
        .set("authorization", &format!("Bearer {}", s.admin))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let key = format!("{name}{{workflow=\"{workflow}\"}} ");
    m.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Waits until the counter has gone `by` past its value now (each count a scan or firing done
/// from start to end), or panics after `secs`.
fn wait_counter(s: &Server, name: &str, workflow: &str, by: f64, secs: u64) {
    let target = counter(s, name, workflow) + by;
    let until = Instant::now() + Duration::from_secs(secs);
    while counter(s, name, workflow) < target {
        assert!(
            Instant::now() < until,
            "{name}{{workflow={workflow}}} did not reach {target} in {secs} s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls until `done` holds for the jobs list, or panics after `secs`.
fn wait_jobs(s: &Server, secs: u64, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let r = s.call(
                "GET",
                &format!("/v1/jobs?limit=500{after}"),
                Some(&s.admin),
                None,
            );
            let items = r.body["items"].as_array().cloned().unwrap_or_default();
            all.extend(items);
            match r.body["next"].as_str() {
                Some(n) => after = format!("&after={n}"),
                None => break,
            }
        }
        if done(&all) {
            return all;
        }
        assert!(
            Instant::now() < until,
            "{what}: not done within {secs} s: {all:#?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn settled(jobs: &[Value]) -> bool {
    !jobs.is_empty()
        && jobs.iter().all(|j| {
            matches!(
                j["state"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        })
}

fn assets(s: &Server) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let r = s.call(
            "GET",
            &format!("/v1/assets?limit=200{after}"),
            Some(&s.admin),
            None,
        );
        all.extend(r.body["items"].as_array().cloned().unwrap_or_default());
        match r.body["next"].as_str() {
            Some(n) => after = format!("&after={n}"),
            None => break,
        }
    }
    all
}

#[test]
fn a_workflow_registers_the_poster_and_every_storyboard_sheet() {
    let d = tempfile::tempdir().unwrap();
    let wf = workflow_dir(
        d.path(),
        r#"
        name = "default"
        [trigger]
        watch = "watch"
        stable_s = 1.0
        poll_s = 0.3
        [[steps]]
        kind = "transcode"
        profiles = ["thumbnails"]
        "#,
    );
    let s = start(d.path(), &wf, &[]);
    let f = clip(d.path(), "stills.mp4", 3);
    std::fs::copy(&f, d.path().join("data/watch/stills.mp4")).unwrap();
    let jobs = wait_jobs(&s, 120, "thumbnails", |j| {
        settled(j) && j.iter().any(|x| x["kind"] == "transcode")
    });
    let t = jobs.iter().find(|j| j["kind"] == "transcode").unwrap();
    assert_eq!(t["state"], "succeeded", "{t:#}");
    let a = &assets(&s)[0];
    let files = s
        .call(
            "GET",
            &format!("/v1/assets/{}/files", a["id"]),
            Some(&s.admin),
            None,
        )
        .body;
    let names: Vec<String> = files["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["profile"] == "thumbnails")
        .map(|f| {
            let p = f["path"].as_str().unwrap();
            assert!(Path::new(p).is_file(), "{p}");
            p.rsplit('/').next().unwrap().to_string()
        })
        .collect();
    assert!(names.iter().any(|n| n.starts_with("poster")), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("storyboard_001")),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.contains('%')), "{names:?}");
}

#[test]
fn watch_folder_workflow_qc_then_renditions() {
    let d = tempfile::tempdir().unwrap();
    let wf = workflow_dir(
        d.path(),
        r#"
        name = "default"
        asset_kind = "promo"
        [trigger]
        watch = "watch"
        stable_s = 1.0
        poll_s = 0.3
        [qc]
        silence_min_s = 2.0
        freeze_min_s = 2.0
        [[steps]]
        kind = "qc"
        [[steps]]
        kind = "transcode"
        profiles = ["proxy", "mobile-h264"]
        when = "qc.pass"
        "#,
    );
    let s = start(d.path(), &wf, &[]);
    let watch = d.path().join("data/watch");
    // A good clip with a JSON sidecar, one with an XML sidecar whose house ID the file name
    // does not carry, and a clip that is black and silent for its whole length.
    let a = clip(d.path(), "PROMO-0042 autumn.mp4", 1);
    std::fs::write(
        d.path().join("PROMO-0042 autumn.json"),
        json!({"title": "Autumn trail", "identifier": "PROMO-0042", "tags": ["autumn", "promo"], "custom_thing": 1}).to_string(),
    )
    .unwrap();
    let b = clip(d.path(), "wrong-name.mp4", 2);
    std::fs::write(
        d.path().join("wrong-name.xml"),
        "<?xml version=\"1.0\"?><asset><title>Winter &amp; snow</title><identifier>PROMO-0099</identifier><tag>winter</tag></asset>",
    )
    .unwrap();
    let black = d.path().join("black.mp4");
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=black:size=320x180:rate=25:duration=4",
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=48000:cl=stereo",
        "-t",
        "4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        black.to_str().unwrap(),
    ]);
    for f in ["PROMO-0042 autumn.json", "wrong-name.xml"] {
        std::fs::copy(d.path().join(f), watch.join(f)).unwrap();
    }
    for f in [&a, &b, &black] {
        std::fs::copy(f, watch.join(f.file_name().unwrap())).unwrap();
    }
    let jobs = wait_jobs(&s, 240, "workflow", |j| {
        settled(j)
            && j.iter().filter(|x| x["kind"] == "ingest").count() == 3
            && j.iter().filter(|x| x["kind"] == "qc").count() == 3
    });
    let all = assets(&s);
    assert_eq!(all.len(), 3, "{all:#?}");
    let by_id = |ident: &str| all.iter().find(|x| x["identifier"] == ident).cloned();
    let good = by_id("PROMO-0042").expect("the JSON sidecar gave the identifier");
    assert_eq!(
        (good["title"].as_str(), good["kind"].as_str()),
        (Some("Autumn trail"), Some("promo"))
    );
    assert_eq!(good["tags"], json!(["autumn", "promo"]));
    assert_eq!(good["status"], "ready", "{jobs:#?}");
    let files = s
        .call(
            "GET",
            &format!("/v1/assets/{}/files", good["id"]),
            Some(&s.admin),
            None,
        )
        .body;
    let files = files["items"].as_array().unwrap();
    assert_eq!(files.len(), 3, "{files:#?}");
    let mobile = files
        .iter()
        .find(|f| f["profile"] == "mobile-h264")
        .unwrap();
    // A platform rendition is not scaled up from a 180-line source.
    assert_eq!(
        (mobile["role"].as_str(), mobile["height"].as_i64()),
        (Some("platform"), Some(180))
    );
    let transcode = jobs
        .iter()
        .find(|j| j["kind"] == "transcode" && j["asset_id"] == good["id"])
        .unwrap();
    let logs = s
        .call(
            "GET",
            &format!("/v1/jobs/{}/logs", transcode["id"]),
            Some(&s.admin),
            None,
        )
        .body;
    assert!(
        logs["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["message"] == "2 profiles from one decode"),
        "{logs:#}"
    );
    let source = files.iter().find(|f| f["role"] == "source").unwrap();
    assert_eq!(source["sha256"], sha256_hex(&a));
    assert!(Path::new(source["path"].as_str().unwrap()).starts_with(watch.join("done")));
    let proxy = files.iter().find(|f| f["role"] == "proxy").unwrap();
    assert_eq!(
        (
            proxy["profile"].as_str(),
            proxy["verification"]["pass"].as_bool()
        ),
        (Some("proxy"), Some(true))
    );
    assert_eq!(
        sha256_hex(Path::new(proxy["path"].as_str().unwrap())),
        proxy["sha256"].as_str().unwrap()
    );
    // The XML sidecar's identifier is not in the file name: QC fails, no rendition is made.
    let wrong = by_id("PROMO-0099").expect("the XML sidecar was read");
    assert_eq!(wrong["title"], "Winter & snow");
    assert_eq!(wrong["status"], "qc_failed");
    let qc = s
        .call(
            "GET",
            &format!("/v1/assets/{}/qc", wrong["id"]),
            Some(&s.admin),
            None,
        )
        .body;
    let name_check = qc["report"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "name matches metadata")
        .unwrap()
        .clone();
    assert_eq!(name_check["status"], "fail", "{qc:#}");
    // Black and silent throughout: QC reports the stretches with their times.
    let dark = all.iter().find(|x| x["title"] == "black").unwrap();
    let qc = s
        .call(
            "GET",
            &format!("/v1/assets/{}/qc", dark["id"]),
            Some(&s.admin),
            None,
        )
        .body;
    let checks = qc["report"]["checks"].as_array().unwrap();
    let black_check = checks.iter().find(|c| c["name"] == "black").unwrap();
    assert_eq!(black_check["status"], "warn", "{qc:#}");
    let r = &black_check["ranges"][0];
    assert!(
        r[0].as_f64().unwrap() < 0.1 && r[1].as_f64().unwrap() > 3.9,
        "{r}"
    );
    assert_eq!(
        checks.iter().find(|c| c["name"] == "silence").unwrap()["status"],
        "warn"
    );
    assert_eq!(
        checks.iter().find(|c| c["name"] == "freeze").unwrap()["status"],
        "warn",
        "a still black picture is frozen too: {qc:#}"
    );
    // Sources and sidecars moved to done/; nothing left in the watch folder.
    let left: Vec<_> = std::fs::read_dir(&watch)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(watch.join("done/PROMO-0042 autumn.json").is_file());
    // Progress and outcome are on the job records and the change feed.
    let ingest = jobs.iter().find(|j| j["kind"] == "ingest").unwrap();
    assert_eq!(
        (ingest["progress"].as_f64(), ingest["attempts"].as_i64()),
        (Some(100.0), Some(1))
    );
    let feed = s
        .call("GET", "/v1/changes?limit=1000", Some(&s.admin), None)
        .body;
    assert!(feed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["object"] == "job"));
    let m = ureq::get(&format!("{}/metrics", s.base))
        .set("authorization", &format!("Bearer {}", s.admin))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(m.contains("antenne_jobs{state=\"succeeded\"}"), "{m}");
}

/// 200 distinct small WAV files: a valid header, and samples that differ per file.
fn corpus(dir: &Path, n: usize) -> Vec<PathBuf> {
    let base = dir.join("base.wav");
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=1000:duration=0.4:sample_rate=48000",
        "-c:a",
        "pcm_s16le",
        base.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&base).unwrap();
    (0..n)
        .map(|i| {
            let mut b = bytes.clone();
            let at = b.len() - 64;
            b[at..at + 8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            let p = dir.join(format!("item-{i:03}.wav"));
            std::fs::write(&p, b).unwrap();
            p
        })
        .collect()
}

#[test]
fn sigkill_during_200_ingests_loses_and_duplicates_nothing() {
    let d = tempfile::tempdir().unwrap();
    let wf = workflow_dir(
        d.path(),
        "name = \"default\"\n[trigger]\nwatch = \"watch\"\nstable_s = 0.5\npoll_s = 0.2\n",
    );
    let src = d.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let files = corpus(&src, 200);
    let mut s = start(d.path(), &wf, &[]);
    let watch = d.path().join("data/watch");
    for f in &files {
        std::fs::copy(f, watch.join(f.file_name().unwrap())).unwrap();
    }
    // Kill the service at varied moments, restart it on the same data directory, four times.
    let mut rng = 0x2545F4914F6CDD1Du64;
    for round in 0..4 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(400 + rng % 2500));
        let pid = s.child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success());
        let _ = s.child.wait();
        eprintln!("round {round}: killed");
        s = start(d.path(), &wf, &[]);
    }
    wait_jobs(&s, 300, "200 ingests", |j| {
        settled(j) && j.iter().filter(|x| x["state"] == "succeeded").count() >= 200
    });
    let all = assets(&s);
    assert_eq!(all.len(), 200, "every file once");
    let mut hashes = std::collections::HashSet::new();
    for a in &all {
        let f = s
            .call(
                "GET",
                &format!("/v1/assets/{}/files", a["id"]),
                Some(&s.admin),
                None,
            )
            .body;
        let f = &f["items"].as_array().unwrap()[0];
        let path = Path::new(f["path"].as_str().unwrap());
        assert_eq!(
            sha256_hex(path),
            f["sha256"].as_str().unwrap(),
            "{}",
            path.display()
        );
        assert!(hashes.insert(f["sha256"].as_str().unwrap().to_string()));
    }
    let jobs = wait_jobs(&s, 10, "final", settled);
    assert!(
        jobs.iter()
            .filter(|j| j["kind"] == "ingest")
            .all(|j| j["state"] == "succeeded"),
        "{jobs:#?}"
    );
    assert_eq!(
        jobs.iter().filter(|j| j["kind"] == "ingest").count(),
        200,
        "one job per file version"
    );
    let left: Vec<_> = std::fs::read_dir(&watch)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(std::fs::read_dir(watch.join("done")).unwrap().count(), 200);
    let parts: Vec<_> = walk(&d.path().join("data"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".part"))
        .collect();
    assert!(parts.is_empty(), "{parts:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn corrupt_corpus_fails_with_reasons_and_a_slow_copy_is_taken_whole() {
    let d = tempfile::tempdir().unwrap();
    let wf = workflow_dir(
        d.path(),
        "name = \"default\"\n[trigger]\nwatch = \"watch\"\nstable_s = 3.0\npoll_s = 0.3\n[[steps]]\nkind = \"qc\"\n",
    );
    let s = start(
        d.path(),
        &wf,
        &[("ANTENNE_JOBS_HANG_TIMEOUT_S", "60".to_string())],
    );
    let watch = d.path().join("data/watch");
    let good = clip(d.path(), "good.mp4", 3);
    let bytes = std::fs::read(&good).unwrap();
    // A fragment-less MP4 cut in half loses its index (moov at the end without faststart).
    let truncated = d.path().join("truncated.mp4");
    let big = d.path().join("big.mp4");
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=25:duration=4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        big.to_str().unwrap(),
    ]);
    let b = std::fs::read(&big).unwrap();
    std::fs::write(&truncated, &b[..b.len() / 2]).unwrap();
    // Zeroed blocks in the middle of a transport stream.
    let ts = d.path().join("zeroed.ts");
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=25:duration=4",
        "-c:v",
        "mpeg2video",
        "-q:v",
        "4",
        ts.to_str().unwrap(),
    ]);
    let mut t = std::fs::read(&ts).unwrap();
    let (mid, span) = (t.len() / 2, 40_000.min(t.len() / 4));
    for x in &mut t[mid..mid + span] {
        *x = 0;
    }
    let zeroed = d.path().join("zeroed-mid.ts");
    std::fs::write(&zeroed, &t).unwrap();
    // A stream that declares an absurd picture size.
    let absurd = d.path().join("absurd.y4m");
    std::fs::write(
        &absurd,
        b"YUV4MPEG2 W99999 H99999 F25:1 Ip A1:1 C420jpeg\nFRAME\n\x10\x10\x10",
    )
    .unwrap();
    let text = d.path().join("notes.mxf");
    std::fs::write(&text, b"this is a text file, not media\n").unwrap();
    for f in [&truncated, &zeroed, &absurd, &text] {
        std::fs::copy(f, watch.join(f.file_name().unwrap())).unwrap();
    }
    // A slow copy: written over ~5 s in pieces; it must be taken once, complete.
    let slow = watch.join("slow.mp4");
    let mut out = std::fs::File::create(&slow).unwrap();
    let started = Instant::now();
    for chunk in bytes.chunks(bytes.len() / 8 + 1) {
        out.write_all(chunk).unwrap();
        out.flush().unwrap();
        std::thread::sleep(Duration::from_millis(650));
        // The service answers throughout.
        assert_eq!(s.call("GET", "/health", None, None).status, 200);
    }
    drop(out);
    assert!(started.elapsed() > Duration::from_secs(4));
    let jobs = wait_jobs(&s, 240, "corpus", |j| {
        settled(j) && j.iter().filter(|x| x["kind"] == "ingest").count() == 5
    });
    let ingest_of = |name: &str| {
        jobs.iter()
            .find(|j| {
                j["kind"] == "ingest"
                    && j["params"]["path"]
                        .as_str()
                        .is_some_and(|p| p.ends_with(name))
            })
            .unwrap_or_else(|| panic!("no ingest job for {name}: {jobs:#?}"))
            .clone()
    };
    for name in ["notes.mxf", "absurd.y4m"] {
        let j = ingest_of(name);
        assert_eq!(j["state"], "failed", "{j:#}");
        assert!(!j["error"].as_str().unwrap().is_empty());
        assert!(
            watch.join("failed").join(name).is_file(),
            "{name} moved to failed/"
        );
    }
    // Readable but damaged: catalogued, and QC says what is wrong.
    for name in ["truncated.mp4", "zeroed-mid.ts"] {
        let j = ingest_of(name);
        if j["state"] == "failed" {
            assert!(!j["error"].as_str().unwrap().is_empty());
            continue;
        }
        let qc = jobs
            .iter()
            .find(|q| q["kind"] == "qc" && q["asset_id"] == j["asset_id"])
            .unwrap();
        assert_eq!(qc["result"]["verdict"], "fail", "{name}: {qc:#}");
        let why: Vec<String> = qc["result"]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "fail")
            .map(|c| format!("{}: {}", c["name"], c["measured"]))
            .collect();
        assert!(!why.is_empty());
        eprintln!("{name}: {why:?}");
    }
    let slow_job = ingest_of("slow.mp4");
    assert_eq!(slow_job["state"], "succeeded");
    let asset = s
        .call(
            "GET",
            &format!("/v1/assets/{}/files", slow_job["asset_id"]),
            Some(&s.admin),
            None,
        )
        .body;
    assert_eq!(
        asset["items"][0]["sha256"].as_str().unwrap(),
        sha256_hex(&good),
        "the whole file, once"
    );
    assert_eq!(
        jobs.iter()
            .filter(|j| j["kind"] == "ingest"
                && j["params"]["path"]
                    .as_str()
                    .unwrap_or("")
                    .ends_with("slow.mp4"))
            .count(),
        1
    );
}

#[test]
fn workers_that_crash_hang_or_bloat_are_stopped_and_the_service_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let wf = workflow_dir(d.path(), "name = \"default\"\n");
    // Off by default: an operator cannot take a worker down.
    let d0 = tempfile::tempdir().unwrap();
    let off = start(d0.path(), &wf, &[]);
    for body in [
        json!({"crash": true}),
        json!({"hang": true}),
        json!({"alloc_mb": 65536}),
    ] {
        let r = off.call("POST", "/v1/jobs/noop", Some(&off.admin), Some(&body));
        assert_eq!(r.status, 403, "{body}: {}", r.body);
    }
    drop(off);
    let s = start(
        d.path(),
        &wf,
        &[
            ("ANTENNE_JOBS_HANG_TIMEOUT_S", "3".to_string()),
            ("ANTENNE_JOBS_MEMORY_LIMIT", "150Mi".to_string()),
            ("ANTENNE_JOBS_SELF_TEST", "true".to_string()),
        ],
    );
    let a = Some(s.admin.as_str());
    let mk = |body: Value| -> i64 {
        let r = s.call("POST", "/v1/jobs/noop", a, Some(&body));
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["id"].as_i64().unwrap()
    };
    let crash = mk(json!({"crash": true, "max_attempts": 2}));
    let hang = mk(json!({"hang": true}));
    let bloat = mk(json!({"alloc_mb": 400}));
    let fine = mk(json!({"sleep_ms": 200}));
    let long = mk(json!({"sleep_ms": 60000}));
    // Cancel the long one once it runs.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let j = s.call("GET", &format!("/v1/jobs/{long}"), a, None).body;
        if j["state"] == "running" {
            break;
        }
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = s.call("POST", &format!("/v1/jobs/{long}/cancel"), a, None);
    assert_eq!(
        (r.status, r.body["state"].as_str()),
        (200, Some("cancelled"))
    );
    let jobs = wait_jobs(&s, 120, "supervision", |j| {
        settled(j) && j.iter().all(|x| x["state"] != "queued")
    });
    let get = |id: i64| jobs.iter().find(|j| j["id"] == id).unwrap().clone();
    let c = get(crash);
    assert_eq!(
        (c["state"].as_str(), c["attempts"].as_i64()),
        (Some("failed"), Some(2)),
        "{c:#}"
    );
    assert!(c["error"].as_str().unwrap().contains("crashed"), "{c:#}");
    let h = get(hang);
    assert!(h["error"].as_str().unwrap().contains("hang"), "{h:#}");
    let b = get(bloat);
    assert!(
        b["error"].as_str().unwrap().contains("over the limit"),
        "{b:#}"
    );
    assert_eq!(get(fine)["state"], "succeeded");
    assert_eq!(get(long)["state"], "cancelled");
    // A failed job is retried on request.
    let r = s.call("POST", &format!("/v1/jobs/{crash}/retry"), a, None);
    assert_eq!((r.status, r.body["state"].as_str()), (200, Some("queued")));
    let r = s.call("POST", &format!("/v1/jobs/{fine}/retry"), a, None);
    assert_eq!((r.status, r.code()), (409, "conflict"));
    let logs = s
        .call("GET", &format!("/v1/jobs/{crash}/logs"), a, None)
        .body;
    assert!(logs["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["message"].as_str().unwrap().contains("started")));
    assert_eq!(s.call("GET", "/health", None, None).status, 200);
}

#[test]
fn two_appliances_share_one_postgres_queue_without_taking_a_job_twice() {
    let pg = common::pg::Pg::start().expect("PostgreSQL installed");
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let wf = workflow_dir(d1.path(), "name = \"default\"\n");
    let s1 = start(
        d1.path(),
        &wf,
        &[
            ("ANTENNE_CATALOG_URL", pg.url.clone()),
            ("ANTENNE_JOBS_APPLIANCE", "one".into()),
        ],
    );
    let s2 = start(
        d2.path(),
        &wf,
        &[
            ("ANTENNE_CATALOG_URL", pg.url.clone()),
            ("ANTENNE_JOBS_APPLIANCE", "two".into()),
        ],
    );
    for _ in 0..40 {
        assert_eq!(
            s1.call(
                "POST",
                "/v1/jobs/noop",
                Some(&s1.admin),
                Some(&json!({"sleep_ms": 100}))
            )
            .status,
            201
        );
    }
    let jobs = wait_jobs(&s2, 180, "shared queue", |j| {
        j.len() == 40 && j.iter().all(|x| x["state"] == "succeeded")
    });
    assert!(
        jobs.iter().all(|j| j["attempts"] == 1),
        "a job was taken twice"
    );
    let by_one = jobs
        .iter()
        .filter(|j| j["worker"].as_str().unwrap().starts_with("one/"))
        .count();
    let by_two = jobs
        .iter()
        .filter(|j| j["worker"].as_str().unwrap().starts_with("two/"))
        .count();
    assert_eq!(by_one + by_two, 40);
    assert!(
        by_one > 0 && by_two > 0,
        "both appliances worked: {by_one} / {by_two}"
    );
}

/// A webhook receiver: answers 200 to each POST and hands its body over.
fn webhook() -> (String, std::sync::mpsc::Receiver<Value>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut r = std::io::BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if std::io::BufRead::read_line(&mut r, &mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; len];
            let _ = std::io::Read::read_exact(&mut r, &mut body);
            let mut c = conn;
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
        }
    });
    (url, rx)
}

#[test]
fn workflow_delivers_renditions_and_calls_a_webhook() {
    let d = tempfile::tempdir().unwrap();
    let (url, hook) = webhook();
    let out = d.path().join("playout");
    let wf = workflow_dir(
        d.path(),
        &format!(
            "name = \"default\"\n[trigger]\nwatch = \"watch\"\nstable_s = 0.5\npoll_s = 0.2\nafter = \"leave\"\n\
             [[steps]]\nkind = \"transcode\"\nprofiles = [\"proxy\"]\n\
             [[steps]]\nkind = \"deliver\"\nto = \"{}\"\n\
             [[steps]]\nkind = \"notify\"\nurl = \"{url}\"\n",
            out.display()
        ),
    );
    let s = start(d.path(), &wf, &[]);
    let f = clip(d.path(), "spot.mp4", 9);
    std::fs::copy(&f, d.path().join("data/watch/spot.mp4")).unwrap();
    let event = hook
        .recv_timeout(Duration::from_secs(180))
        .expect("the webhook is called");
    assert_eq!(event["workflow"], "default");
    assert!(event["house_id"].as_str().unwrap().starts_with("ANT-"));
    let delivered = out.join("spot_proxy.mp4");
    assert!(delivered.is_file());
    let jobs = wait_jobs(&s, 60, "deliver", settled);
    assert!(jobs.iter().all(|j| j["state"] == "succeeded"), "{jobs:#?}");
    let asset = s
        .call(
            "GET",
            &format!("/v1/assets/{}/files", event["asset_id"]),
            Some(&s.admin),
            None,
        )
        .body;
    let proxy = asset["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["role"] == "proxy")
        .unwrap()
        .clone();
    assert_eq!(
        proxy["sha256"].as_str().unwrap(),
        sha256_hex(&delivered),
        "the delivered copy is the rendition"
    );
    assert!(
        d.path().join("data/watch/spot.mp4").is_file(),
        "after = leave keeps the source"
    );
    assert!(!std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .any(|e| e.path().to_string_lossy().ends_with(".part")));
}

/// The transcode jobs, oldest first.
fn transcodes(jobs: &[Value]) -> Vec<Value> {
    let mut t: Vec<Value> = jobs
        .iter()
        .filter(|j| j["kind"] == "transcode")
        .cloned()
        .collect();
    t.sort_by_key(|j| j["id"].as_i64());
    t
}

#[test]
fn a_gpu_that_fails_is_taken_out_of_rotation_and_jobs_fall_back_to_the_cpu() {
    if Path::new("/dev/nvidia0").exists() {
        eprintln!("skipped: this machine has an NVIDIA GPU, so nvenc:0 would not fail");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let wf = workflow_dir(
        d.path(),
        "name = \"default\"\n[trigger]\nwatch = \"watch\"\nstable_s = 0.5\npoll_s = 0.2\n\
         [[steps]]\nkind = \"transcode\"\nprofiles = [\"proxy\"]\n",
    );
    // A GPU declared but absent: real NVENC, no device to open.
    let s = start(
        d.path(),
        &wf,
        &[
            ("ANTENNE_JOBS_WORKERS", "1".to_string()),
            ("ANTENNE_JOBS_GPUS", "nvenc:0".to_string()),
            ("ANTENNE_JOBS_GPU_MAX_FAILURES", "2".to_string()),
            ("ANTENNE_TRANSCODE_BACKEND", "auto".to_string()),
        ],
    );
    let slots = s.call("GET", "/v1/slots", Some(&s.admin), None).body;
    assert_eq!(slots["gpus"][0]["id"], "nvenc:0", "{slots}");
    assert_eq!(slots["gpus"][0]["in_rotation"], true);
    assert!(slots["gpus"][0]["codecs"]
        .as_array()
        .unwrap()
        .contains(&json!("h264")));
    for (i, name) in ["a.mp4", "b.mp4", "c.mp4"].iter().enumerate() {
        let f = clip(d.path(), name, 2 + i as u32);
        std::fs::copy(&f, d.path().join("data/watch").join(name)).unwrap();
        let jobs = wait_jobs(&s, 120, "transcode", |j| {
            transcodes(j).len() == i + 1 && settled(j)
        });
        let t = transcodes(&jobs);
        let j = &t[i];
        assert_eq!(j["state"], "succeeded", "{j:#}");
        assert_eq!(j["placed"], "cpu", "the job ends on the CPU: {j:#}");
        let logs = s
            .call(
                "GET",
                &format!("/v1/jobs/{}/logs", j["id"]),
                Some(&s.admin),
                None,
            )
            .body;
        let text = logs.to_string();
        if i < 2 {
            // Placed on the GPU first: the device does not open, the job goes to the CPU at
            // once and succeeds there.
            assert_eq!(j["attempts"], 2, "{j:#}");
            assert!(text.contains("on nvenc:0"), "{text}");
            assert!(text.contains("started on cpu"), "{text}");
        } else {
            // Out of rotation: straight to the CPU.
            assert_eq!(j["attempts"], 1, "{j:#}");
            assert!(!text.contains("nvenc:0"), "{text}");
        }
        if i == 1 {
            assert!(text.contains("taken out of rotation"), "{text}");
        }
    }
    let slots = s.call("GET", "/v1/slots", Some(&s.admin), None).body;
    let g = &slots["gpus"][0];
    assert_eq!(g["in_rotation"], false, "{slots}");
    assert!(
        g["out_reason"].as_str().unwrap().contains("2 jobs failed"),
        "{slots}"
    );
    assert_eq!(g["failures"], 2);
    let m = ureq::get(&format!("{}/metrics", s.base))
        .set("authorization", &format!("Bearer {}", s.admin))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        m.contains("antenne_gpu_in_rotation{gpu=\"nvenc:0\"} 0"),
        "{m}"
    );
    // Only an operator or admin puts it back.
    let (_, viewer) = s.user("vic", "viewer");
    let r = s.call(
        "POST",
        "/v1/slots/gpus/nvenc:0/restore",
        Some(&viewer),
        None,
    );
    assert_eq!(r.status, 403);
    let r = s.call(
        "POST",
        "/v1/slots/gpus/nvenc:9/restore",
        Some(&s.admin),
        None,
    );
    assert_eq!(r.status, 404);
    let r = s.call(
        "POST",
        "/v1/slots/gpus/nvenc:0/restore",
        Some(&s.admin),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["gpus"][0]["in_rotation"], true);
    assert_eq!(r.body["gpus"][0]["failures_in_a_row"], 0);
}

#[test]
fn a_file_closed_after_writing_or_renamed_in_is_taken_without_waiting_for_the_window() {
    let d = tempfile::tempdir().unwrap();
    // A window far longer than the test: only the close (or rename) event can take a file.
    let wf = workflow_dir(
        d.path(),
        "name = \"default\"\n[trigger]\nwatch = \"watch\"\nstable_s = 600\npoll_s = 0.5\n",
    );
    let s = start(d.path(), &wf, &[]);
    let watch = d.path().join("data/watch");
    let ingested = |n: usize| {
        wait_jobs(&s, 30, "ingest by file event", |j| {
            j.iter().filter(|x| x["state"] == "succeeded").count() == n
        })
    };
    // Written and closed.
    let a = clip(d.path(), "a.mp4", 1);
    std::fs::write(watch.join("a.mp4"), std::fs::read(&a).unwrap()).unwrap();
    ingested(1);
    // Written elsewhere, renamed in.
    let b = clip(d.path(), "b.mp4", 2);
    std::fs::rename(&b, watch.join("b.mp4")).unwrap();
    ingested(2);
    // Held open half-written: not taken while open, taken whole once closed.
    let c = clip(d.path(), "c.mp4", 3);
    let bytes = std::fs::read(&c).unwrap();
    let mut f = std::fs::File::create(watch.join("c.mp4")).unwrap();
    f.write_all(&bytes[..bytes.len() / 2]).unwrap();
    f.flush().unwrap();
    // Two scans counted after the write: at least one looked at the folder from start to end
    // with the half-written file in it.
    wait_counter(&s, "antenne_ingest_watch_scans_total", "default", 2.0, 30);
    let jobs = wait_jobs(&s, 5, "jobs", |_| true);
    assert_eq!(jobs.len(), 2, "an open file is not taken: {jobs:#?}");
    f.write_all(&bytes[bytes.len() / 2..]).unwrap();
    drop(f);
    ingested(3);
    let all = assets(&s);
    assert_eq!(all.len(), 3);
    let files: Vec<String> = all
        .iter()
        .flat_map(|a| {
            s.call(
                "GET",
                &format!("/v1/assets/{}/files", a["id"]),
                Some(&s.admin),
                None,
            )
            .body["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|f| f["sha256"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(files.contains(&sha256_hex(&c)), "c.mp4 was taken whole");
}

fn workflow_file(dir: &Path, name: &str, toml: &str) {
    std::fs::write(dir.join(format!("{name}.toml")), toml).unwrap();
}

#[test]
fn scheduled_workflows_check_fixity_and_purge_what_retention_selects() {
    let d = tempfile::tempdir().unwrap();
    let wf = workflow_dir(
        d.path(),
        "name = \"default\"\n[trigger]\nwatch = \"watch\"\nstable_s = 0.5\npoll_s = 0.2\n",
    );
    workflow_file(
        &wf,
        "fixity",
        "name = \"fixity\"\n[trigger]\nschedule = \"every 3s\"\n[trigger.select]\nstatus = \"ready\"\n\
         [[steps]]\nkind = \"verify\"\n",
    );
    workflow_file(
        &wf,
        "retention",
        "name = \"retention\"\n[trigger]\nschedule = \"every 2s\"\n\
         [trigger.select]\ntag = \"expired\"\nolder_than_days = 0\n[[steps]]\nkind = \"purge\"\n",
    );
    let s = start(d.path(), &wf, &[]);
    let names = s.call("GET", "/v1/workflows", Some(&s.admin), None).body;
    assert_eq!(names["items"].as_array().unwrap().len(), 3, "{names}");
    for (i, n) in ["keep.mp4", "rot.mp4"].iter().enumerate() {
        let f = clip(d.path(), n, 20 + i as u32);
        std::fs::copy(&f, d.path().join("data/watch").join(n)).unwrap();
    }
    wait_jobs(&s, 60, "ingest", |j| {
        j.iter()
            .filter(|x| x["kind"] == "ingest" && x["state"] == "succeeded")
            .count()
            == 2
    });
    let all = assets(&s);
    let id_of = |title: &str| {
        all.iter()
            .find(|a| a["title"] == title)
            .unwrap_or_else(|| panic!("{title}: {all:#?}"))["id"]
            .as_i64()
            .unwrap()
    };
    let (keep, rot) = (id_of("keep"), id_of("rot"));
    // Bit rot in the stored copy of one: same size, one byte changed.
    let stored = d.path().join("data/watch/done/rot.mp4");
    let mut bytes = std::fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&stored, &bytes).unwrap();
    let verify_of = |j: &[Value], a: i64, state: &str| {
        j.iter()
            .any(|x| x["kind"] == "verify" && x["asset_id"] == a && x["state"] == state)
    };
    let jobs = wait_jobs(&s, 60, "fixity", |j| {
        verify_of(j, keep, "succeeded") && verify_of(j, rot, "failed")
    });
    let bad = jobs
        .iter()
        .find(|x| x["kind"] == "verify" && x["asset_id"] == rot && x["state"] == "failed")
        .unwrap();
    let e = bad["error"].as_str().unwrap();
    assert!(e.contains("fixity") && e.contains("rot.mp4"), "{e}");
    assert_eq!(bad["attempts"], 1, "a fixity failure is not retried");

    // The API trigger on an asset in the catalog.
    let r = s.call(
        "POST",
        "/v1/workflows/fixity/run",
        Some(&s.admin),
        Some(&json!({"asset_id": keep})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["kind"], "verify");
    for bad in [json!({}), json!({"asset_id": keep, "path": "/x"})] {
        let r = s.call(
            "POST",
            "/v1/workflows/fixity/run",
            Some(&s.admin),
            Some(&bad),
        );
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    let r = s.call(
        "POST",
        "/v1/workflows/fixity/run",
        Some(&s.admin),
        Some(&json!({"asset_id": 999_999})),
    );
    assert_eq!(r.status, 404, "{}", r.body);

    // Retention: tagged expired, purged by the next firing.
    let a = s
        .call("GET", &format!("/v1/assets/{rot}"), Some(&s.admin), None)
        .body;
    let r = s.call(
        "PATCH",
        &format!("/v1/assets/{rot}"),
        Some(&s.admin),
        Some(&json!({"tags": ["expired"], "version": a["version"]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_jobs(&s, 60, "purge", |j| {
        j.iter()
            .any(|x| x["kind"] == "purge" && x["asset_id"] == rot && x["state"] == "succeeded")
    });
    let a = s
        .call("GET", &format!("/v1/assets/{rot}"), Some(&s.admin), None)
        .body;
    assert_eq!(a["status"], "purged", "{a}");
    let k = s
        .call("GET", &format!("/v1/assets/{keep}"), Some(&s.admin), None)
        .body;
    assert_eq!(
        k["status"], "ready",
        "a fixity run leaves the status as it was: {k}"
    );
    // One purge per asset, whatever the number of firings since: two more, each done.
    wait_counter(
        &s,
        "antenne_jobs_trigger_firings_total",
        "retention",
        2.0,
        30,
    );
    let jobs = wait_jobs(&s, 5, "jobs", |_| true);
    assert_eq!(
        jobs.iter()
            .filter(|x| x["kind"] == "purge" && x["asset_id"] == rot)
            .count(),
        1
    );
}

/// Runs `antenne serve` on the data directory of `start` until it ends by itself (a fault the
/// test hook injects), and returns how it ended; panics when it is still running after `secs`.
fn run_until_it_dies(
    dir: &Path,
    workflows: &Path,
    extra: &[(&str, String)],
    secs: u64,
) -> std::process::ExitStatus {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_antenne"));
    cmd.arg("serve")
        .env("ANTENNE_STORAGE_DATA_DIR", dir.join("data"))
        .env("ANTENNE_JOBS_WORKFLOWS_DIR", workflows)
        .env("ANTENNE_JOBS_WORKERS", "2")
        .env("ANTENNE_SERVER_LISTEN", "127.0.0.1:0")
        .env("ANTENNE_ADMIN_PASSWORD", common::server::ADMIN_PASSWORD)
        .env("RUST_LOG", "antenne=warn")
        .stdout(std::process::Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the service did not reach the fault within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

const QC_WORKFLOW: &str = "name = \"default\"\n[trigger]\nwatch = \"watch\"\nstable_s = 0.5\npoll_s = 0.2\n\
                           [qc]\nsilence_min_s = 5.0\nfreeze_min_s = 5.0\n[[steps]]\nkind = \"qc\"\n";

/// The service dies inside the transaction that records a step's success, before the next
/// step is queued in it: after a restart the step runs again and the asset goes on, once.
fn a_crash_between_a_step_and_the_next(catalog: &[(&str, String)]) {
    let d = tempfile::tempdir().unwrap();
    let wf = workflow_dir(d.path(), QC_WORKFLOW);
    std::fs::create_dir_all(d.path().join("data/watch")).unwrap();
    let f = clip(d.path(), "news.mp4", 5);
    std::fs::copy(&f, d.path().join("data/watch/news.mp4")).unwrap();
    let mut fault = catalog.to_vec();
    fault.push(("ANTENNE_TEST_FAULT", "step_success".to_string()));
    let st = run_until_it_dies(d.path(), &wf, &fault, 120);
    assert_eq!(st.code(), Some(137), "ended by the test hook: {st:?}");
    let s = start(d.path(), &wf, catalog);
    let jobs = wait_jobs(&s, 120, "after the restart", |j| {
        settled(j) && j.iter().any(|x| x["kind"] == "qc")
    });
    let ingest: Vec<&Value> = jobs.iter().filter(|j| j["kind"] == "ingest").collect();
    assert_eq!(ingest.len(), 1, "{jobs:#?}");
    assert_eq!(
        (ingest[0]["state"].as_str(), ingest[0]["attempts"].as_i64()),
        (Some("succeeded"), Some(2)),
        "the step whose success was never committed ran again: {jobs:#?}"
    );
    assert_eq!(
        jobs.iter().filter(|j| j["kind"] == "qc").count(),
        1,
        "{jobs:#?}"
    );
    let all = assets(&s);
    assert_eq!(all.len(), 1, "one asset, not two: {all:#?}");
    assert_eq!(all[0]["status"], "ready", "not stranded: {all:#?}");
    assert!(d.path().join("data/watch/done/news.mp4").is_file());
}

#[test]
fn a_crash_between_a_step_and_the_next_strands_nothing_on_sqlite() {
    a_crash_between_a_step_and_the_next(&[]);
}

#[test]
fn a_crash_between_a_step_and_the_next_strands_nothing_on_postgres() {
    let Some(pg) = common::pg::Pg::start() else {
        return;
    };
    a_crash_between_a_step_and_the_next(&[("ANTENNE_CATALOG_URL", pg.url.clone())]);
}

#[test]
fn a_source_whose_worker_is_lost_on_every_attempt_goes_to_failed_and_can_come_back() {
    let d = tempfile::tempdir().unwrap();
    let wf = workflow_dir(d.path(), QC_WORKFLOW);
    let watch = d.path().join("data/watch");
    std::fs::create_dir_all(&watch).unwrap();
    let f = clip(d.path(), "lost.mp4", 6);
    std::fs::copy(&f, watch.join("lost.mp4")).unwrap();
    // Each of its three attempts dies with the service, at the moment its success is recorded.
    let fault = [("ANTENNE_TEST_FAULT", "step_success".to_string())];
    for attempt in 1..=3 {
        let st = run_until_it_dies(d.path(), &wf, &fault, 120);
        assert_eq!(st.code(), Some(137), "attempt {attempt}: {st:?}");
    }
    // The next start finds no attempt left: the job fails, the source goes to failed/.
    let s = start(d.path(), &wf, &[]);
    let jobs = wait_jobs(&s, 30, "recovery", |j| {
        j.iter()
            .any(|x| x["kind"] == "ingest" && x["state"] == "failed")
    });
    let failed = jobs
        .iter()
        .find(|x| x["kind"] == "ingest" && x["state"] == "failed")
        .unwrap();
    assert_eq!(failed["attempts"], 3, "{failed:#}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("no attempt left"),
        "{failed:#}"
    );
    assert!(watch.join("failed/lost.mp4").is_file(), "moved to failed/");
    assert!(!watch.join("done/lost.mp4").exists());
    assert!(assets(&s).is_empty());
    // Put back as it was (same name, size and time): taken again, not refused by its key.
    std::fs::rename(watch.join("failed/lost.mp4"), watch.join("lost.mp4")).unwrap();
    let jobs = wait_jobs(&s, 120, "taken again", |j| {
        settled(j)
            && j.iter()
                .any(|x| x["kind"] == "qc" && x["state"] == "succeeded")
    });
    assert_eq!(
        jobs.iter().filter(|x| x["kind"] == "ingest").count(),
        2,
        "{jobs:#?}"
    );
    let all = assets(&s);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["status"], "ready", "{all:#?}");
    assert_eq!(
        s.call(
            "GET",
            &format!("/v1/assets/{}/files", all[0]["id"]),
            Some(&s.admin),
            None
        )
        .body["items"][0]["sha256"],
        sha256_hex(&f)
    );
}

/// A profile whose own check its output cannot meet (a CBR rate held to 0 %), or, `fixed`, one
/// it meets.
fn strict_profile(dir: &Path, fixed: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let (rc, tol) = if fixed { ("vbr", 0.05) } else { ("cbr", 0.0) };
    std::fs::write(
        dir.join("strict.toml"),
        format!(
            "name = \"strict\"\ndescription = \"test: a rendition held to an exact bit rate\"\n\
             [[outputs]]\nname = \"strict\"\ncontainer = \"mp4\"\n\
             [outputs.video]\ncodec = \"h264\"\nwidth = 320\nheight = 180\nframe_rate = \"source\"\n\
             scan = \"progressive\"\npix_fmt = \"yuv420p\"\nrate_control = \"{rc}\"\nbitrate = \"5000k\"\n\
             gop_seconds = 1.0\nb_frames = 0\npreset = \"ultrafast\"\n\
             [outputs.audio]\ncodec = \"aac\"\nbitrate = \"96k\"\nsample_rate = 48000\ntracks = [\"stereo\"]\n\
             [outputs.verify]\nbitrate_tolerance = {tol}\n"
        ),
    )
    .unwrap();
}

#[test]
fn a_failed_rendition_keeps_the_good_ones_says_why_and_a_retry_makes_only_what_is_missing() {
    let d = tempfile::tempdir().unwrap();
    let profiles = d.path().join("profiles");
    strict_profile(&profiles, false);
    let wf = workflow_dir(
        d.path(),
        &format!(
            "{QC_WORKFLOW}[[steps]]\nkind = \"transcode\"\nprofiles = [\"proxy\", \"strict\"]\nwhen = \"qc.pass\"\n"
        ),
    );
    let s = start(
        d.path(),
        &wf,
        &[(
            "ANTENNE_TRANSCODE_PROFILES_DIR",
            profiles.display().to_string(),
        )],
    );
    let f = clip(d.path(), "spot.mp4", 11);
    std::fs::copy(&f, d.path().join("data/watch/spot.mp4")).unwrap();
    let jobs = wait_jobs(&s, 180, "transcode", |j| {
        settled(j) && !transcodes(j).is_empty()
    });
    let qc = jobs.iter().find(|j| j["kind"] == "qc").unwrap();
    assert_ne!(qc["result"]["verdict"], "fail", "{qc:#}");
    let t = transcodes(&jobs).remove(0);
    assert_eq!(
        (t["state"].as_str(), t["attempts"].as_i64()),
        (Some("failed"), Some(1)),
        "{t:#}"
    );
    // The error names the output and each failed check, expected against measured.
    let e = t["error"].as_str().unwrap();
    assert!(
        e.contains("1 of 2 outputs") && e.contains("strict/strict"),
        "{e}"
    );
    assert!(
        e.contains("video bit rate (CBR): expected 5000000 b/s ±0%, measured"),
        "{e}"
    );
    assert!(!e.contains("proxy/proxy"), "{e}");
    // The result keeps the failed rendition's report and what was registered.
    let failed = &t["result"]["failed"][0];
    assert_eq!(failed["profile"], "strict", "{t:#}");
    assert!(failed["report"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["pass"] == false && c["name"] == "video bit rate (CBR)"));
    assert_eq!(t["result"]["registered"].as_array().unwrap().len(), 1);
    // QC passed: the asset says a rendition failed, not QC.
    let asset = &assets(&s)[0];
    assert_eq!(asset["status"], "rendition_failed", "{asset:#}");
    let id = asset["id"].as_i64().unwrap();
    let files = |s: &Server| -> Vec<Value> {
        s.call(
            "GET",
            &format!("/v1/assets/{id}/files"),
            Some(&s.admin),
            None,
        )
        .body["items"]
            .as_array()
            .cloned()
            .unwrap()
    };
    let first = files(&s);
    let proxy = first
        .iter()
        .find(|f| f["profile"] == "proxy")
        .expect("the good rendition of the same run is registered")
        .clone();
    assert_eq!(proxy["verification"]["pass"], true);
    assert!(Path::new(proxy["path"].as_str().unwrap()).is_file());
    assert_eq!(
        common::ffprobe(Path::new(proxy["path"].as_str().unwrap()), false)["streams"][0]
            ["codec_name"],
        "h264"
    );
    assert!(!first.iter().any(|f| f["profile"] == "strict"));
    // The verification of every rendition over the API, the failed one with its checks.
    let v = s
        .call(
            "GET",
            &format!("/v1/assets/{id}/verification"),
            Some(&s.admin),
            None,
        )
        .body;
    assert_eq!(v["pass"], false, "{v:#}");
    let r = v["renditions"].as_array().unwrap();
    assert_eq!(r.len(), 2, "{v:#}");
    let bad = r.iter().find(|x| x["profile"] == "strict").unwrap();
    assert_eq!(
        (
            bad["pass"].as_bool(),
            bad["file_id"].as_i64(),
            bad["job_id"].as_i64()
        ),
        (Some(false), None, t["id"].as_i64())
    );
    assert!(bad["report"]["checks"].as_array().unwrap().len() > 3);
    let good = r.iter().find(|x| x["profile"] == "proxy").unwrap();
    assert_eq!(
        (good["pass"].as_bool(), good["file_id"].as_i64()),
        (Some(true), proxy["id"].as_i64())
    );
    // In the API document, with its schema.
    let doc = s.call("GET", "/openapi.json", None, None).body;
    assert!(
        doc["paths"]["/v1/assets/{id}/verification"]["get"].is_object(),
        "{}",
        doc["paths"]
    );
    assert!(doc["components"]["schemas"]["Verification"].is_object());
    let status_doc = doc["components"]["schemas"]["Asset"]["properties"]["status"].to_string();
    assert!(status_doc.contains("rendition_failed"), "{status_doc}");
    // Object-level access: a viewer with no grant on the asset does not see it.
    let (_, viewer) = s.user("val", "viewer");
    let r = s.call(
        "GET",
        &format!("/v1/assets/{id}/verification"),
        Some(&viewer),
        None,
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(
        s.call("GET", &format!("/v1/assets/{id}/verification"), None, None)
            .status,
        401
    );
    // The profile fixed, a retry makes only the missing rendition; the asset goes on.
    strict_profile(&profiles, true);
    let r = s.call(
        "POST",
        &format!("/v1/jobs/{}/retry", t["id"]),
        Some(&s.admin),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let jobs = wait_jobs(&s, 180, "retry", |j| {
        settled(j) && transcodes(j)[0]["state"] == "succeeded"
    });
    let t2 = transcodes(&jobs).remove(0);
    let outs = t2["result"]["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), 1, "only the missing output: {t2:#}");
    assert_eq!(outs[0]["profile"], "strict");
    let logs = s
        .call(
            "GET",
            &format!("/v1/jobs/{}/logs", t2["id"]),
            Some(&s.admin),
            None,
        )
        .body
        .to_string();
    assert!(
        logs.contains("proxy: made and registered by an earlier attempt"),
        "{logs}"
    );
    let now = files(&s);
    assert_eq!(now.len(), 3, "source, proxy once, strict: {now:#?}");
    assert_eq!(
        now.iter().find(|f| f["profile"] == "proxy").unwrap()["id"],
        proxy["id"]
    );
    assert_eq!(
        now.iter().find(|f| f["profile"] == "strict").unwrap()["verification"]["pass"],
        true
    );
    let a = s
        .call("GET", &format!("/v1/assets/{id}"), Some(&s.admin), None)
        .body;
    assert_eq!(a["status"], "ready", "{a:#}");
    let v = s
        .call(
            "GET",
            &format!("/v1/assets/{id}/verification"),
            Some(&s.admin),
            None,
        )
        .body;
    assert_eq!(v["pass"], true, "{v:#}");
}

#[test]
fn a_file_dropped_during_a_long_transcode_is_catalogued_within_seconds() {
    let d = tempfile::tempdir().unwrap();
    let wf = workflow_dir(
        d.path(),
        "name = \"default\"\n[trigger]\nwatch = \"watch\"\nstable_s = 0.5\npoll_s = 0.2\n\
         [[steps]]\nkind = \"transcode\"\nprofiles = [\"web-h264\", \"proxy\"]\n",
    );
    // One encode slot, as on a 2-core box.
    let s = start(d.path(), &wf, &[("ANTENNE_JOBS_WORKERS", "1".to_string())]);
    let watch = d.path().join("data/watch");
    let long = d.path().join("long.mp4");
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1280x720:rate=25:duration=60",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=500:duration=60:sample_rate=48000",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-shortest",
        long.to_str().unwrap(),
    ]);
    std::fs::rename(&long, watch.join("long.mp4")).unwrap();
    let jobs = wait_jobs(&s, 120, "a long transcode under way", |j| {
        j.iter().any(|x| {
            x["kind"] == "transcode"
                && x["state"] == "running"
                && x["progress"].as_f64() > Some(0.0)
        })
    });
    let long_job = transcodes(&jobs)[0]["id"].as_i64().unwrap();
    let slots = s.call("GET", "/v1/slots", Some(&s.admin), None).body;
    assert_eq!(
        (slots["cpu_slots"].as_u64(), slots["cpu_in_use"].as_u64()),
        (Some(1), Some(1)),
        "{slots}"
    );
    assert_eq!(slots["light_slots"], 2, "{slots}");
    // A file dropped now is catalogued at once, in the light lane, while the encode goes on.
    let f = clip(d.path(), "breaking.mp4", 12);
    let dropped = Instant::now();
    std::fs::rename(&f, watch.join("breaking.mp4")).unwrap();
    let deadline = dropped + Duration::from_secs(15);
    let asset = loop {
        if let Some(a) = assets(&s).into_iter().find(|a| a["title"] == "breaking") {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "the file dropped during a transcode was not catalogued within 15 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = dropped.elapsed();
    eprintln!(
        "catalogued {:.2} s after it was dropped",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(8), "took {took:?}");
    let long = s
        .call("GET", &format!("/v1/jobs/{long_job}"), Some(&s.admin), None)
        .body;
    assert_eq!(
        long["state"], "running",
        "the transcode was still running meanwhile: {long:#}"
    );
    assert_eq!(asset["status"], "ingesting");
    // Its own transcode waits for the encode slot.
    let r = s.call(
        "POST",
        &format!("/v1/jobs/{long_job}/cancel"),
        Some(&s.admin),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn sidecar_values_as_text_are_compared_by_qc_and_the_log_says_where_each_went() {
    let d = tempfile::tempdir().unwrap();
    let wf = workflow_dir(d.path(), QC_WORKFLOW);
    let s = start(d.path(), &wf, &[]);
    let watch = d.path().join("data/watch");
    // XML: every value is text. The clip lasts 2 s; its sidecar says 60.
    std::fs::write(
        watch.join("long-claim.xml"),
        "<?xml version=\"1.0\"?><asset><title>long claim</title><duration_s>60</duration_s>\
         <aspect>16:9</aspect><audio_layout>mono</audio_layout><colour>red</colour></asset>",
    )
    .unwrap();
    // JSON: numbers given as strings, and one value that is not of its field's type.
    std::fs::write(
        watch.join("honest.json"),
        json!({"duration_s": "2", "width": "320", "frame_rate": "25", "height": "tall", "series": 7})
            .to_string(),
    )
    .unwrap();
    for (name, seed) in [("long-claim.mp4", 13), ("honest.mp4", 14)] {
        let f = clip(d.path(), name, seed);
        std::fs::rename(&f, watch.join(name)).unwrap();
    }
    let jobs = wait_jobs(&s, 120, "QC of both", |j| {
        settled(j) && j.iter().filter(|x| x["kind"] == "qc").count() == 2
    });
    let all = assets(&s);
    let by_title = |t: &str| {
        all.iter()
            .find(|a| a["title"] == t)
            .unwrap_or_else(|| panic!("{t}: {all:#?}"))
            .clone()
    };
    let qc_of = |a: &Value| {
        jobs.iter()
            .find(|j| j["kind"] == "qc" && j["asset_id"] == a["id"])
            .unwrap()["result"]["checks"]
            .as_array()
            .unwrap()
            .clone()
    };
    let check = |checks: &[Value], name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} check: {checks:#?}"))
            .clone()
    };
    let log_of = |a: &Value| {
        let ingest = jobs
            .iter()
            .find(|j| j["kind"] == "ingest" && j["asset_id"] == a["id"])
            .unwrap();
        s.call(
            "GET",
            &format!("/v1/jobs/{}/logs", ingest["id"]),
            Some(&s.admin),
            None,
        )
        .body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["message"].as_str().unwrap().to_string())
            .find(|m| m.contains("sidecar:"))
            .unwrap_or_else(|| panic!("no sidecar line in the ingest log"))
    };
    // The XML's duration, as text, is compared: 60 s declared, 2 s decoded.
    let long = by_title("long claim");
    let checks = qc_of(&long);
    let dur = check(&checks, "duration");
    assert_eq!(dur["status"], "fail", "{dur:#}");
    assert!(
        dur["expected"]
            .as_str()
            .unwrap()
            .starts_with("60.00 s (declared by the sidecar)"),
        "{dur:#}"
    );
    assert_eq!(check(&checks, "declared aspect")["status"], "pass");
    assert_eq!(check(&checks, "declared audio_layout")["status"], "pass");
    assert_eq!(long["status"], "qc_failed");
    let line = log_of(&long);
    assert!(line.contains("to the catalog: title;"), "{line}");
    assert!(
        line.contains("to QC: aspect, audio_layout, duration_s, title"),
        "{line}"
    );
    assert!(line.contains("ignored (no such field): colour"), "{line}");
    // The JSON's strings are numbers by their fields' types; the bad value is said so.
    let honest = by_title("honest");
    assert_eq!(honest["series"], "7");
    let checks = qc_of(&honest);
    let dur = check(&checks, "duration");
    assert_eq!(dur["status"], "pass", "{dur:#}");
    assert!(dur["expected"]
        .as_str()
        .unwrap()
        .contains("declared by the sidecar"));
    assert_eq!(check(&checks, "declared width")["status"], "pass");
    assert_eq!(check(&checks, "declared frame_rate")["status"], "pass");
    assert!(!checks.iter().any(|c| c["name"] == "declared height"));
    assert_eq!(honest["status"], "ready", "{honest:#}");
    let line = log_of(&honest);
    assert!(
        line.contains("ignored (not usable): height (\"tall\" is not a whole number"),
        "{line}"
    );
    assert!(line.contains("to the catalog: series"), "{line}");
}
