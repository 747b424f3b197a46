//! Storage benchmark, each figure against a peer in the same run:
//! - copy + verify to S3 (SeaweedFS on loopback): antenne's `Store` writes each file (multipart,
//!   hashing on the way) and reads it back hashing it, as a policy copy does; the peer `rclone`
//!   uploads the same files to the same server (`rclone copyto`) and reads each back through
//!   `sha256sum` (`rclone cat | sha256sum`). MB/s of file data, ratio antenne / rclone (goal ≥ 0.9);
//! - fixity audit of a local folder: antenne's audit read (`Store::digest`, no cap) over the
//!   files against `sha256sum` over the same files. MB/s, ratio (goal ≥ 0.9).
//!
//! The files are made once (random bytes) and read first so that both sides find them in the
//! page cache. Nothing is asserted (the machines are noisy): figures and goals are printed.
//!
//! Run: `make bench-storage` (`cargo bench --bench storage`). Environment:
//! `ANTENNE_BENCH_FILES` (default 6), `ANTENNE_BENCH_MB` per file (default 64).

#[path = "../tests/common/s3.rs"]
#[allow(dead_code)]
mod s3;

/// What `s3` needs of the tests' common helpers.
pub fn venv_bin(name: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name)
}

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use antenne::config::storage::Role;
use antenne::storage::Store;
use s3::{ACCESS_KEY, S3, SECRET_KEY};

fn env_num(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn make_files(dir: &std::path::Path, n: usize, mb: usize) -> Vec<PathBuf> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|i| {
            let p = dir.join(format!("f{i}.bin"));
            let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
            let mut buf = vec![0u8; 1 << 20];
            for _ in 0..mb {
                for c in buf.chunks_mut(8) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
                }
                f.write_all(&buf).unwrap();
            }
            p
        })
        .collect()
}

fn rclone(s3: &S3) -> Command {
    let mut c = Command::new("rclone");
    // A CA bundle meant for AWS makes rclone refuse a plain-HTTP endpoint.
    c.env_remove("AWS_CA_BUNDLE")
        .env("RCLONE_CONFIG_BENCH_TYPE", "s3")
        .env("RCLONE_CONFIG_BENCH_PROVIDER", "Other")
        .env("RCLONE_CONFIG_BENCH_ACCESS_KEY_ID", ACCESS_KEY)
        .env("RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("RCLONE_CONFIG_BENCH_ENDPOINT", &s3.endpoint)
        .env("RCLONE_CONFIG_BENCH_REGION", "us-east-1")
        .arg("--config=/dev/null");
    c
}

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--list") {
        return ExitCode::SUCCESS;
    }
    let (n, mb) = (
        env_num("ANTENNE_BENCH_FILES", 6),
        env_num("ANTENNE_BENCH_MB", 64),
    );
    let Some(s3) = S3::start(&["bench"]) else {
        eprintln!("SeaweedFS missing: run scripts/setup.sh");
        return ExitCode::FAILURE;
    };
    let work = tempfile::tempdir().unwrap();
    let files = make_files(work.path(), n, mb);
    let total_mb = (n * mb) as f64 * 1.048_576;
    for f in &files {
        let _ = std::fs::read(f);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cfg: antenne::config::storage::StoreConfig = toml::from_str(&format!(
        r#"
        id = "bench"
        kind = "s3"
        role = "archive"
        endpoint = "{}"
        bucket = "bench"
        access_key_id = "{ACCESS_KEY}"
        secret_access_key = "{SECRET_KEY}"
        "#,
        s3.endpoint
    ))
    .unwrap();
    let store = Store::open(&cfg, &|_| None).unwrap();

    // Warm-up: SeaweedFS grows its volumes on the first writes; neither side should pay it.
    rt.block_on(async {
        for (i, f) in files.iter().enumerate() {
            store.put_file(f, &format!("warm/{i}")).await.unwrap();
        }
    });

    // Copy + verify, antenne.
    let t = Instant::now();
    rt.block_on(async {
        for (i, f) in files.iter().enumerate() {
            let key = format!("antenne/{i}");
            let sent = store.put_file(f, &key).await.unwrap();
            let back = store.digest(&key, None).await.unwrap();
            assert_eq!(sent, back);
        }
    });
    let ours = total_mb / t.elapsed().as_secs_f64();

    // Copy + verify, rclone.
    let t = Instant::now();
    for (i, f) in files.iter().enumerate() {
        let o = rclone(&s3)
            .args([
                "copyto",
                f.to_str().unwrap(),
                &format!("bench:bench/rclone/{i}"),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut cat = rclone(&s3)
            .args(["cat", &format!("bench:bench/rclone/{i}")])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let o = Command::new("sha256sum")
            .stdin(cat.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(o.status.success() && cat.wait().unwrap().success());
    }
    let peer = total_mb / t.elapsed().as_secs_f64();
    println!(
        "copy+verify to S3 (SeaweedFS): antenne {ours:.1} MB/s, rclone {peer:.1} MB/s, ratio {:.2} (goal >= 0.9: {})",
        ours / peer,
        if ours / peer >= 0.9 { "met" } else { "NOT met" }
    );

    // Fixity audit of a local folder.
    let local = Store::local("bench-local", Role::Online, work.path()).unwrap();
    let t = Instant::now();
    rt.block_on(async {
        for f in &files {
            let key = f.file_name().unwrap().to_str().unwrap();
            local.digest(key, None).await.unwrap();
        }
    });
    let ours = total_mb / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let o = Command::new("sha256sum").args(&files).output().unwrap();
    assert!(o.status.success());
    let peer = total_mb / t.elapsed().as_secs_f64();
    println!(
        "fixity audit (local folder): antenne {ours:.1} MB/s, sha256sum {peer:.1} MB/s, ratio {:.2} (goal >= 0.9: {})",
        ours / peer,
        if ours / peer >= 0.9 { "met" } else { "NOT met" }
    );
    ExitCode::SUCCESS
}
