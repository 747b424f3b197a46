//! The storages' own work killed with SIGKILL, through `antenne serve`: the copy policies
//! (copy to SeaweedFS, then the move's delete of the online copy) and a retention purge, each
//! cut short again and again at moments that move on. After every kill: no copy is counted
//! that does not read back as the file, every file keeps a good copy, a held asset keeps all of
//! its copies, an asset gone from the catalog has its tombstone; and an uninterrupted run
//! finishes the work. `ANTENNE_STORAGE_KILL_LOOPS` sets the kills per phase (default 3; the
//! issue's loop is 20).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::s3::{ACCESS_KEY, S3, SECRET_KEY};
use common::server::{sha256_hex, Server};
use serde_json::{json, Value};

fn loops() -> usize {
    std::env::var("ANTENNE_STORAGE_KILL_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// A clip of a few megabytes (320×180 at a high bit rate).
fn clip_mb(dir: &Path, name: &str, seconds: u32) -> PathBuf {
    let p = dir.join(name);
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size=320x180:rate=25:duration={seconds}"),
        "-vf",
        "noise=alls=60:allf=t+u",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-b:v",
        "8000k",
        p.to_str().unwrap(),
    ]);
    p
}

struct Rig {
    s3: S3,
    data: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Rig {
    fn start(&self) -> Server {
        Server::start(&self.env)
    }

    /// The SHA-256 of a copy's bytes where it is, `None` when absent.
    fn copy_sha(&self, storage: &str, key: &str) -> Option<String> {
        match storage {
            "media" => {
                let p = self.data.join("media").join(key);
                p.is_file().then(|| sha256_hex(&p))
            }
            "vault" => {
                let o = self
                    .s3
                    .s3cmd_output(&["info", &format!("s3://vault/{key}")]);
                if !o.status.success() {
                    return None;
                }
                let b = self.s3.get("vault", key);
                use sha2::Digest;
                Some(
                    sha2::Sha256::digest(&b)
                        .iter()
                        .map(|x| format!("{x:02x}"))
                        .collect(),
                )
            }
            s => panic!("no storage {s}"),
        }
    }
}

/// Every copy the catalog counts reads back as its file; every file has one. Returns the
/// storages each file is counted on.
fn check(rig: &Rig, s: &Server, files: &[(i64, i64, String)], when: &str) -> Vec<Vec<String>> {
    let mut on = Vec::new();
    for (asset, file, sha) in files {
        let r = s.call(
            "GET",
            &format!("/v1/files/{file}/copies"),
            Some(&s.admin),
            None,
        );
        if r.status == 404 {
            // Purged: only with its tombstone.
            let t = s.call(
                "GET",
                &format!("/v1/assets/{asset}/tombstone"),
                Some(&s.admin),
                None,
            );
            assert_eq!(
                t.status, 200,
                "{when}: asset {asset} gone without a tombstone: {}",
                t.body
            );
            on.push(Vec::new());
            continue;
        }
        assert_eq!(r.status, 200, "{when}: {}", r.body);
        let copies = r.body.as_array().cloned().unwrap_or_default();
        let purging = s
            .call(
                "GET",
                &format!("/v1/assets/{asset}/tombstone"),
                Some(&s.admin),
                None,
            )
            .status
            == 200;
        let mut good = Vec::new();
        for c in copies.iter().filter(|c| c["state"] == "ok") {
            let (st, key) = (c["storage"].as_str().unwrap(), c["key"].as_str().unwrap());
            let got = rig.copy_sha(st, key);
            if purging {
                // A purge decided (tombstone written) and cut short: bytes may be gone already.
                continue;
            }
            assert_eq!(
                got.as_deref(),
                Some(sha.as_str()),
                "{when}: file {file}: the copy counted on {st} ({key}) is not the file"
            );
            good.push(st.to_string());
        }
        assert!(
            purging || !good.is_empty(),
            "{when}: file {file} has no good copy left: {copies:?}"
        );
        on.push(good);
    }
    on
}

/// Runs `call` against a fresh service, killing it (SIGKILL) after `after_ms`.
fn killed_during(rig: &Rig, s: Server, path: &'static str, after_ms: u64) {
    let (base, token) = (s.base.clone(), s.admin.clone());
    let t = std::thread::spawn(move || {
        let _ = ureq::post(&format!("{base}{path}"))
            .set("authorization", &format!("Bearer {token}"))
            .timeout(Duration::from_secs(60))
            .call();
    });
    std::thread::sleep(Duration::from_millis(after_ms));
    let mut s = s;
    let _ = s.child.kill();
    let _ = s.child.wait();
    let _ = t.join();
    drop(s);
    let _ = rig;
}

#[test]
fn copies_moves_and_purges_killed_again_and_again_converge() {
    let Some(s3) = S3::start(&["vault"]) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let env = vec![
        ("ANTENNE_STORAGE_DATA_DIR", data.display().to_string()),
        (
            "ANTENNE_STORAGES_STORE",
            format!(
                r#"[{{ id = "vault", kind = "s3", role = "archive", endpoint = "{}", bucket = "vault", access_key_id = "{ACCESS_KEY}", secret_access_key_env = "VAULT_SECRET" }}]"#,
                s3.endpoint
            ),
        ),
        (
            "ANTENNE_STORAGES_POLICY",
            r#"[{ name = "tier", copy_to = ["vault"], move_from = ["media"], keep = 1 }]"#.into(),
        ),
        (
            "ANTENNE_STORAGES_RETENTION",
            r#"[{ name = "all", select = { older_than_days = 0 }, grace_days = 0 }]"#.into(),
        ),
        ("ANTENNE_STORAGES_POLICY_INTERVAL_S", "0".into()),
        ("ANTENNE_STORAGES_AUDIT_INTERVAL_S", "0".into()),
        ("VAULT_SECRET", SECRET_KEY.into()),
        ("ANTENNE_STORAGES_WARN_PERCENT", "100".into()),
        ("ANTENNE_STORAGES_REFUSE_PERCENT", "100".into()),
    ];
    let rig = Rig { s3, data, env };
    let s = rig.start();
    let mut files = Vec::new();
    for i in 0..4 {
        let f = clip_mb(work.path(), &format!("c{i}.mp4"), 3 + i);
        let r = s.raw(
            "POST",
            &format!("/v1/ingest/upload?filename=c{i}.mp4"),
            Some(&s.admin),
            Some(("application/octet-stream", std::fs::read(&f).unwrap())),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        files.push((
            r.body["asset"]["id"].as_i64().unwrap(),
            r.body["file"]["id"].as_i64().unwrap(),
            sha256_hex(&f),
        ));
    }
    check(&rig, &s, &files, "before");
    drop(s);
    let n = loops();
    let mut seed: u64 = 0x5eed;
    let mut next_ms = |span: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        40 + (seed >> 33) % span
    };
    // Copies and moves, killed.
    for i in 0..n {
        let s = rig.start();
        check(&rig, &s, &files, &format!("policies, kill {i}"));
        killed_during(&rig, s, "/v1/storages/policies/run", next_ms(1200));
    }
    // Then left to finish: every file on the archive only.
    let s = rig.start();
    check(&rig, &s, &files, "policies, after the kills");
    let r = s.call("POST", "/v1/storages/policies/run", Some(&s.admin), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body["failures"].as_array().unwrap().is_empty(),
        "{}",
        r.body
    );
    let on = check(&rig, &s, &files, "policies, finished");
    assert!(on.iter().all(|o| o == &["vault"]), "{on:?}");
    // A purge of everything but a held asset, killed.
    let held = files[0].0;
    let hold = json!({"reason": "court order"});
    let r = s.call(
        "PUT",
        &format!("/v1/assets/{held}/hold"),
        Some(&s.admin),
        Some(&hold),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.call("POST", "/v1/retention/dry-run", Some(&s.admin), None);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 3, "{}", r.body);
    drop(s);
    for i in 0..n {
        let s = rig.start();
        let on = check(&rig, &s, &files, &format!("purge, kill {i}"));
        assert_eq!(on[0], ["vault"], "the held asset keeps its copy");
        killed_during(&rig, s, "/v1/retention/purge", next_ms(600));
    }
    let s = rig.start();
    let r = s.call("POST", "/v1/retention/purge", Some(&s.admin), None);
    assert_eq!(r.status, 200, "{}", r.body);
    let on = check(&rig, &s, &files, "purge, finished");
    assert_eq!(on[0], ["vault"]);
    for (asset, _, _) in &files[1..] {
        let r = s.call("GET", &format!("/v1/assets/{asset}"), Some(&s.admin), None);
        assert!(
            r.status == 404 || r.body["status"] == "purged",
            "asset {asset} purged: {}",
            r.body
        );
    }
    // Nothing of the purged assets is left behind on the archive.
    let listed = rig.s3.s3cmd(&["ls", "-r", "s3://vault/"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let r: Value = s
        .call(
            "GET",
            &format!("/v1/files/{}/copies", files[0].1),
            Some(&s.admin),
            None,
        )
        .body;
    let key = r[0]["key"].as_str().unwrap();
    assert!(listed.contains(key), "{listed}");
}
