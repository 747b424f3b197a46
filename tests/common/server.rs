//! `antenne serve` as a child process on a free loopback port, with its own data directory, and
//! a small JSON client for it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub const ADMIN_PASSWORD: &str = "admin-password-1";

pub struct Server {
    pub child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub admin: String,
    /// Lines the server printed after it started listening.
    pub lines: mpsc::Receiver<String>,
}

/// What a call returned: status and JSON body (Null when empty or not JSON).
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Server {
    /// Starts a server; `env` adds or overrides `ANTENNE_*` settings.
    pub fn start(env: &[(&str, String)]) -> Server {
        let mut s = Server::spawn(env);
        s.admin = s.login("admin", ADMIN_PASSWORD);
        s
    }

    /// Starts a server without logging in (`admin` is empty): for a server that is to die at a
    /// test fault on its first change, a login being one.
    pub fn spawn(env: &[(&str, String)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_antenne"));
        // The service reads every ANTENNE_* variable as configuration: the test switches
        // (ANTENNE_LIVE_LONG, …) and a developer's own settings stay out of it.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ANTENNE_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("serve")
            .env("ANTENNE_STORAGE_DATA_DIR", dir.path().join("data"))
            .env("ANTENNE_SERVER_LISTEN", "127.0.0.1:0")
            .env("ANTENNE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("ANTENNE_SERVER_SHUTDOWN_GRACE_S", "5")
            .env("RUST_LOG", "antenne=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start antenne serve");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let base = loop {
            let l = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("antenne serve prints where it listens within 60 s");
            if let Some(a) = l.strip_prefix("antenne: listening on ") {
                break a.trim().to_string();
            }
        };
        Server {
            child,
            base,
            dir,
            admin: String::new(),
            lines: rx,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn login(&self, user: &str, password: &str) -> String {
        let r = self.call(
            "POST",
            "/v1/auth/login",
            None,
            Some(&serde_json::json!({"username": user, "password": password})),
        );
        assert_eq!(r.status, 200, "login {user}: {}", r.body);
        r.body["token"].as_str().unwrap().to_string()
    }

    /// A JSON call; `token` None = anonymous.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        self.raw(
            method,
            path,
            token,
            body.map(|b| ("application/json", b.to_string().into_bytes())),
        )
    }

    /// Any call, with an optional body of a given content type.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Reply {
        self.request(method, path, token, &[], body).0
    }

    /// Any call with extra request headers; also returns the body's bytes.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<(&str, Vec<u8>)>,
    ) -> (Reply, Vec<u8>) {
        let mut req = ureq::request(method, &format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.set("authorization", &format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let res = match body {
            Some((ct, b)) => req.set("content-type", ct).send_bytes(&b),
            None => req.call(),
        };
        let resp = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = resp.status();
        let headers = resp
            .headers_names()
            .into_iter()
            .filter_map(|n| resp.header(&n).map(|v| (n.clone(), v.to_string())))
            .collect();
        let mut bytes = Vec::new();
        resp.into_reader()
            .take(64 << 20)
            .read_to_end(&mut bytes)
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert!(
            status < 500,
            "{method} {path} answered {status}: a server error is never an answer to a client: {body}"
        );
        (
            Reply {
                status,
                body,
                headers,
            },
            bytes,
        )
    }

    /// Creates a user (as admin) and logs them in; returns (id, token).
    pub fn user(&self, name: &str, role: &str) -> (i64, String) {
        let r = self.call(
            "POST",
            "/v1/users",
            Some(&self.admin),
            Some(&serde_json::json!({"username": name, "role": role, "password": format!("{name}-password")})),
        );
        assert_eq!(r.status, 201, "create user {name}: {}", r.body);
        let id = r.body["id"].as_i64().unwrap();
        (id, self.login(name, &format!("{name}-password")))
    }

    /// SIGKILL (no shutdown at all: a crash, a power cut), waited for; the data stays.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..300 {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("antenne serve did not stop within 15 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A 320×180, 2 s clip with stereo sound; `seed` makes its content (and hash) differ.
pub fn clip(dir: &Path, name: &str, seed: u32) -> PathBuf {
    let p = dir.join(name);
    super::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=25:duration=2",
        "-f",
        "lavfi",
        "-i",
        &format!("sine=frequency={}:duration=2:sample_rate=48000", 400 + seed),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-shortest",
        p.to_str().unwrap(),
    ]);
    p
}

pub fn sha256_hex(path: &Path) -> String {
    let o = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}
