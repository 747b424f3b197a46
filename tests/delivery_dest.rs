//! Delivery destinations end to end, against real peers: OpenSSH's `sshd` (SFTP, started here on
//! 127.0.0.1 with throwaway keys), a folder, and the pull endpoint read by `curl` and `ffprobe`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::live::{free_tcp_port, wait_for};
use common::server::{sha256_hex, Server};
use common::*;
use serde_json::{json, Value};

/// `sshd` on a free loopback port, as the current user, with a throwaway host key and a user
/// key allowed in.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    fingerprint: String,
    user: String,
}

impl Sshd {
    fn start() -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for k in ["host", "client"] {
            let o = run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", k, "-f"])
                .arg(d.join(k)));
            assert!(o.status.success(), "ssh-keygen: {}", stderr(&o));
        }
        std::fs::copy(d.join("client.pub"), d.join("authorized_keys")).unwrap();
        let o = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(d.join("host.pub")));
        let fingerprint = stdout(&o).split_whitespace().nth(1).unwrap().to_string();
        assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
        let user = stdout(&run(Command::new("id").arg("-un")))
            .trim()
            .to_string();
        let port = free_tcp_port();
        let sftp_server = ["/usr/lib/openssh/sftp-server", "/usr/libexec/sftp-server"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("internal-sftp");
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {h}\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nUsePAM no\nStrictModes no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nSubsystem sftp {sftp_server}\n",
                h = d.join("host").display(),
                d = d.display()
            ),
        )
        .unwrap();
        if user == "root" && !Path::new("/run/sshd").exists() {
            // As root, sshd wants its privilege-separation folder (systemd's tmpfiles makes it
            // on a booted machine).
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("/usr/sbin/sshd (apt install openssh-server)");
        wait_for(Duration::from_secs(10), "sshd listening", || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Sshd {
            child,
            port,
            dir,
            fingerprint,
            user,
        }
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("client")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A clip of about `mb` megabytes (320×180 at a high bit rate).
fn clip_mb(dir: &Path, name: &str, seconds: u32, kbps: u32) -> PathBuf {
    let p = dir.join(name);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size=320x180:rate=25:duration={seconds}"),
        "-f",
        "lavfi",
        "-i",
        &format!("sine=frequency=440:duration={seconds}:sample_rate=48000"),
        "-vf",
        "noise=alls=40:allf=t+u",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-b:v",
        &format!("{kbps}k"),
        "-c:a",
        "aac",
        "-shortest",
        p.to_str().unwrap(),
    ]);
    p
}

/// Uploads `file` as a platform rendition: to a new asset, or to `asset`; the file's record.
fn upload(s: &Server, token: &str, file: &Path, asset: Option<i64>) -> Value {
    let name = file.file_name().unwrap().to_str().unwrap();
    let path = match asset {
        None => format!("/v1/ingest/upload?filename={name}&role=platform"),
        Some(a) => format!("/v1/assets/{a}/upload?filename={name}&role=platform"),
    };
    let r = s.raw(
        "POST",
        &path,
        Some(token),
        Some(("application/octet-stream", std::fs::read(file).unwrap())),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    if r.body["file"].is_object() {
        r.body["file"].clone()
    } else {
        r.body.clone()
    }
}

fn wait_delivery(s: &Server, id: i64) -> Value {
    wait_for(Duration::from_secs(90), "the delivery to end", || {
        let r = s.call("GET", &format!("/v1/deliveries/{id}"), Some(&s.admin), None);
        assert_eq!(r.status, 200, "{}", r.body);
        (!["queued", "running"].contains(&r.body["state"].as_str().unwrap_or(""))).then_some(r.body)
    })
}

fn toml_str(p: &Path) -> String {
    format!("{:?}", p.to_str().unwrap())
}

#[test]
fn sftp_delivery_resumes_after_a_kill_verifies_and_never_sends_twice() {
    let sshd = Sshd::start();
    let media = tempfile::tempdir().unwrap();
    let remote = media.path().join("remote/incoming");
    let secret_pw = "pw-3b1f9c-do-not-print";
    let pw_file = media.path().join("sftp.password");
    std::fs::write(&pw_file, secret_pw).unwrap();
    let key_text = std::fs::read_to_string(sshd.key()).unwrap();
    let key_line = key_text.lines().nth(1).unwrap().to_string();
    let dests = format!(
        "[{{name = \"playout-sftp\", kind = \"sftp\", host = \"127.0.0.1\", port = {port}, \
         user = {user:?}, key_file = {key}, host_key_sha256 = {fp:?}, path = {remote}, \
         naming = \"{{house_id}}_{{stem}}.{{ext}}\", manifests = [\"json\", \"xml\"]}}, \
         {{name = \"by-password\", kind = \"sftp\", host = \"127.0.0.1\", port = {port}, \
         user = {user:?}, password_file = {pw}, host_key_sha256 = {fp:?}, attempts = 1, \
         naming = \"{{stem}}.{{ext}}\"}}, \
         {{name = \"wrong-host\", kind = \"sftp\", host = \"127.0.0.1\", port = {port}, \
         user = {user:?}, key_file = {key}, attempts = 1, naming = \"{{stem}}.{{ext}}\", \
         host_key_sha256 = \"SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}}]",
        port = sshd.port,
        user = sshd.user,
        key = toml_str(&sshd.key()),
        fp = sshd.fingerprint,
        remote = toml_str(&remote),
        pw = toml_str(&pw_file),
    );
    let log = media.path().join("service.log");
    let s = spawn_logged(
        &[
            ("ANTENNE_DELIVERY_DESTINATIONS", dests),
            ("ANTENNE_TEST_FAULT", "deliver_mid".into()),
            ("RUST_LOG", "antenne=debug".into()),
        ],
        &log,
    );
    let a = &s.admin;
    // The destinations are listed without any credential or where one is kept.
    let r = s.call("GET", "/v1/destinations", Some(a), None);
    assert_eq!(r.status, 200);
    let shown = r.body.to_string();
    assert!(
        shown.contains("playout-sftp")
            && !shown.contains("sftp.password")
            && !shown.contains("client\""),
        "{shown}"
    );

    let small = clip_mb(media.path(), "small.mp4", 2, 400);
    let big = clip_mb(media.path(), "big.mp4", 8, 5000);
    let f1 = upload(&s, a, &small, None);
    let asset = f1["asset_id"].as_i64().unwrap();
    upload(&s, a, &big, Some(asset));
    let house = s
        .call("GET", &format!("/v1/assets/{asset}"), Some(a), None)
        .body["house_id"]
        .as_str()
        .unwrap()
        .to_string();

    // The first attempt's worker dies half-way through the second file (a test fault): the
    // retry finds the first file in place and continues the second where it stopped.
    let r = s.call(
        "POST",
        &format!("/v1/assets/{asset}/deliveries"),
        Some(a),
        Some(&json!({"destination": "playout-sftp"})),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    let d = wait_delivery(&s, id);
    assert_eq!(d["state"], "delivered", "{d}");
    let job = s
        .call("GET", &format!("/v1/jobs/{}", d["job_id"]), Some(a), None)
        .body;
    assert_eq!(
        job["attempts"], 2,
        "one killed attempt, one that finished: {job}"
    );
    let files = d["result"]["files"].as_array().unwrap();
    let by = |n: &str| {
        files
            .iter()
            .find(|f| f["name"] == n)
            .unwrap_or_else(|| panic!("{n} in {d}"))
    };
    let small_name = format!("{house}_small.mp4");
    let big_name = format!("{house}_big.mp4");
    assert_eq!(by(&small_name)["already_there"], true, "{d}");
    assert_eq!(by(&small_name)["sent_bytes"], 0);
    let big_size = std::fs::metadata(&big).unwrap().len();
    let resumed = by(&big_name)["resumed_from"].as_u64().unwrap();
    assert!(
        resumed >= 1 << 20 && resumed < big_size,
        "resumed at {resumed} of {big_size}"
    );
    assert_eq!(
        by(&big_name)["sent_bytes"].as_u64().unwrap(),
        big_size - resumed
    );
    for f in files {
        assert_eq!(f["verified"], "sha256");
    }
    // What arrived is what was stored, byte for byte, and nothing half-written is left.
    assert_eq!(sha256_hex(&remote.join(&small_name)), sha256_hex(&small));
    assert_eq!(sha256_hex(&remote.join(&big_name)), sha256_hex(&big));
    let mut names = files_in(&remote);
    names.sort();
    let mut want = vec![
        big_name.clone(),
        format!("{house}.manifest.json"),
        format!("{house}.manifest.xml"),
        small_name.clone(),
    ];
    want.sort();
    assert_eq!(names, want);
    let m: Value = serde_json::from_slice(
        &std::fs::read(remote.join(format!("{house}.manifest.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(m["asset"]["house_id"], house.as_str());
    let listed = m["files"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    for f in listed {
        let p = remote.join(f["name"].as_str().unwrap());
        assert_eq!(
            f["size"].as_u64(),
            Some(std::fs::metadata(&p).unwrap().len())
        );
        assert_eq!(f["sha256"].as_str(), Some(sha256_hex(&p).as_str()));
    }
    // An independent XML parser reads the XML sidecar: two files, each with size and hash.
    let o = run(Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E\n\
             r = E.parse(sys.argv[1]).getroot()\n\
             print(r.find('asset/field[@name=\"house_id\"]').text)\n\
             for f in r.iter('file'): print(f.get('name'), f.get('size'), f.get('sha256'))",
        ])
        .arg(remote.join(format!("{house}.manifest.xml"))));
    assert!(o.status.success(), "{}", stderr(&o));
    let parsed = stdout(&o);
    assert!(parsed.starts_with(&format!("{house}\n")), "{parsed}");
    assert!(
        parsed.contains(&format!("{big_name} {big_size} {}", sha256_hex(&big))),
        "{parsed}"
    );
    let xml = std::fs::read_to_string(remote.join(format!("{house}.manifest.xml"))).unwrap();
    assert!(
        xml.contains(&format!("name=\"{big_name}\"")) && xml.contains(&sha256_hex(&big)),
        "{xml}"
    );

    // Asked again: the same delivery, nothing queued.
    let r = s.call(
        "POST",
        &format!("/v1/assets/{asset}/deliveries"),
        Some(a),
        Some(&json!({"destination": "playout-sftp"})),
    );
    assert_eq!(
        (r.status, r.body["id"].as_i64()),
        (200, Some(id)),
        "{}",
        r.body
    );
    // Forced again: checked at the far end, not one byte sent.
    let before = std::fs::metadata(remote.join(&big_name))
        .unwrap()
        .modified()
        .unwrap();
    let r = s.call(
        "POST",
        &format!("/v1/assets/{asset}/deliveries"),
        Some(a),
        Some(&json!({"destination": "playout-sftp", "again": true})),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let d2 = wait_delivery(&s, r.body["id"].as_i64().unwrap());
    assert_eq!(d2["state"], "delivered", "{d2}");
    assert_eq!(d2["result"]["sent_bytes"], 0, "{d2}");
    assert_eq!(
        std::fs::metadata(remote.join(&big_name))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );

    // Refused logins and a server with another host key fail for good, with the reason,
    // without retrying, and without the credentials anywhere.
    for (dest, why) in [
        ("by-password", "refused the login"),
        ("wrong-host", "host key"),
    ] {
        let r = s.call(
            "POST",
            &format!("/v1/assets/{asset}/deliveries"),
            Some(a),
            Some(&json!({"destination": dest})),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        let d = wait_delivery(&s, r.body["id"].as_i64().unwrap());
        assert_eq!(d["state"], "failed", "{d}");
        assert!(d["error"].as_str().unwrap().contains(why), "{d}");
    }
    // Everything the API shows and the service logged: no password, no key.
    let mut seen = String::new();
    for path in [
        "/v1/destinations".to_string(),
        format!("/v1/assets/{asset}/deliveries"),
        "/v1/jobs?limit=100".to_string(),
        "/v1/audit?limit=1000".to_string(),
        "/v1/changes?since=0".to_string(),
    ] {
        let r = s.call("GET", &path, Some(a), None);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        seen.push_str(&r.body.to_string());
    }
    let jobs = s
        .call("GET", "/v1/jobs?kind=deliver&limit=100", Some(a), None)
        .body;
    for j in jobs["items"].as_array().unwrap() {
        let r = s.call("GET", &format!("/v1/jobs/{}/logs", j["id"]), Some(a), None);
        seen.push_str(&r.body.to_string());
    }
    assert!(
        seen.contains("refused the login"),
        "the failure is in what was read"
    );
    let mut s = s;
    s.stop();
    while let Ok(l) = s.lines.try_recv() {
        seen.push_str(&l);
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("delivery queued") && logged.contains("refused the login"),
        "the service logs the deliveries and their failures: {logged}"
    );
    seen.push_str(&logged);
    assert!(!seen.contains(secret_pw), "the SFTP password leaked");
    assert!(!seen.contains(&key_line), "the SFTP key leaked");
}

/// `antenne serve` as `Server::start` runs it, with its log (stderr) in `log`.
fn spawn_logged(env: &[(&str, String)], log: &Path) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = antenne();
    cmd.arg("serve")
        .env("ANTENNE_STORAGE_DATA_DIR", dir.path().join("data"))
        .env("ANTENNE_SERVER_LISTEN", "127.0.0.1:0")
        .env("ANTENNE_ADMIN_PASSWORD", common::server::ADMIN_PASSWORD)
        .env("ANTENNE_SERVER_SHUTDOWN_GRACE_S", "5")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start antenne serve");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
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
    let mut s = Server {
        child,
        base,
        dir,
        admin: String::new(),
        lines: rx,
    };
    s.admin = s.login("admin", common::server::ADMIN_PASSWORD);
    s
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn pull_urls_serve_ranges_to_curl_and_ffprobe_and_refuse_tampering_and_expiry() {
    let media = tempfile::tempdir().unwrap();
    let secret = "0123456789abcdef0123456789abcdef-test-secret";
    let secret_file = media.path().join("pull.secret");
    std::fs::write(&secret_file, secret).unwrap();
    let s = Server::start(&[
        (
            "ANTENNE_DELIVERY_DESTINATIONS",
            "[{name = \"playout\", kind = \"pull\", require_approval = true, \
             naming = \"{house_id}.{ext}\", url_ttl_s = 3600}]"
                .into(),
        ),
        (
            "ANTENNE_DELIVERY_PULL_SECRET_FILE",
            secret_file.display().to_string(),
        ),
    ]);
    let a = &s.admin;
    let src = clip_mb(media.path(), "prog.mp4", 3, 800);
    let f = upload(&s, a, &src, None);
    let asset = f["asset_id"].as_i64().unwrap();
    let ask = || {
        s.call(
            "POST",
            &format!("/v1/assets/{asset}/deliveries"),
            Some(a),
            Some(&json!({"destination": "playout"})),
        )
    };
    // An undeclared destination, a caller who may not see the asset, a stray field.
    let post = |tok: &str, body: Value| {
        s.call(
            "POST",
            &format!("/v1/assets/{asset}/deliveries"),
            Some(tok),
            Some(&body),
        )
    };
    assert_eq!(
        post(a, json!({"destination": "nowhere"})).code(),
        "not_found"
    );
    let (_, viewer) = s.user("vi", "viewer");
    assert_eq!(post(&viewer, json!({"destination": "playout"})).status, 404);
    assert_eq!(
        post(a, json!({"destination": "playout", "to": "/tmp"})).status,
        422
    );
    // Not approved: refused, saying why.
    let r = ask();
    assert_eq!((r.status, r.code()), (409, "not_approved"), "{}", r.body);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("never put in review"));
    for step in ["review", "review/approve"] {
        let r = s.call(
            "POST",
            &format!("/v1/assets/{asset}/{step}"),
            Some(a),
            Some(&json!({})),
        );
        assert_eq!(r.status, 200, "{step}: {}", r.body);
    }
    let r = ask();
    assert_eq!(r.status, 201, "{}", r.body);
    let url = format!("{}{}", s.base, r.body["urls"][0]["url"].as_str().unwrap());
    let exp = r.body["expires"].as_i64().unwrap();

    // curl: a range, then the whole file.
    let part = media.path().join("part.bin");
    let o = run(Command::new("curl").args(["-s", "-o"]).arg(&part).args([
        "-w",
        "%{http_code}",
        "-r",
        "100-1099",
        &url,
    ]));
    assert_eq!(stdout(&o), "206");
    assert_eq!(
        std::fs::read(&part).unwrap(),
        std::fs::read(&src).unwrap()[100..1100].to_vec()
    );
    let whole = media.path().join("whole.mp4");
    let o =
        run(Command::new("curl")
            .args(["-s", "-o"])
            .arg(&whole)
            .args(["-w", "%{http_code}", &url]));
    assert_eq!(stdout(&o), "200");
    assert_eq!(sha256_hex(&whole), sha256_hex(&src));
    // ffprobe reads it over HTTP (seeking to the moov atom with ranges).
    let o = run(Command::new("ffprobe").args([
        "-v",
        "error",
        "-show_entries",
        "stream=codec_name,width",
        "-of",
        "csv=p=0",
        &url,
    ]));
    assert!(
        o.status.success() && stdout(&o).contains("h264,320"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );

    // Tampered (another file, a later expiry, another signature) or expired: 403 with a code.
    let get = |u: &str| {
        let (r, _) = s.request("GET", u, None, &[], None);
        (r.status, r.code().to_string())
    };
    let path = r.body["urls"][0]["url"].as_str().unwrap().to_string();
    let fid = f["id"].as_i64().unwrap();
    assert_eq!(
        get(&path.replace(&format!("exp={exp}"), &format!("exp={}", exp + 1))),
        (403, "bad_signature".into())
    );
    assert_eq!(
        get(&path.replace(&format!("/{fid}/"), &format!("/{}/", fid + 1))),
        (403, "bad_signature".into())
    );
    let mut bad_sig = path.clone();
    let last = bad_sig.pop().unwrap();
    bad_sig.push(if last == '0' { '1' } else { '0' });
    assert_eq!(get(&bad_sig), (403, "bad_signature".into()));
    let name = r.body["urls"][0]["name"].as_str().unwrap();
    let past = exp - 3600 - 10;
    let sig = antenne::delivery::pull::sign(secret.as_bytes(), "playout", fid, name, past);
    assert_eq!(
        get(&format!(
            "/v1/pull/playout/{fid}/{name}?exp={past}&sig={sig}"
        )),
        (403, "url_expired".into())
    );
    // The delivery is recorded on the asset.
    let r = s.call(
        "GET",
        &format!("/v1/assets/{asset}/deliveries"),
        Some(a),
        None,
    );
    assert_eq!(r.body[0]["state"], "ready", "{}", r.body);
    assert_eq!(r.body[0]["files"][0]["sha256"], sha256_hex(&src).as_str());
    // Events: the delivery and the approval are on the event stream.
    let events = read_events(&s, a, &["\"delivery\"", "\"review\""]);
    assert!(events.contains("\"object\":\"delivery\""), "{events}");
}

/// Reads `/v1/events` from the start until every one of `want` was seen.
fn read_events(s: &Server, token: &str, want: &[&str]) -> String {
    let resp = ureq::get(&format!("{}/v1/events?since=0", s.base))
        .set("authorization", &format!("Bearer {token}"))
        .timeout(Duration::from_secs(20))
        .call()
        .unwrap();
    let mut r = BufReader::new(resp.into_reader());
    let mut seen = String::new();
    let mut line = String::new();
    while want.iter().any(|w| !seen.contains(w)) {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        seen.push_str(&line);
    }
    for w in want {
        assert!(seen.contains(w), "no {w} event in {seen}");
    }
    seen
}

/// Runs `antenne worker` on a deliver job; kills it with SIGKILL as soon as `kill_when` says
/// so (polled), when given. The `done` result, or None when killed (or failed).
fn worker_run(job: &Value, kill_when: Option<&dyn Fn() -> bool>) -> Option<Value> {
    use std::io::Write;
    let mut child = antenne()
        .arg("worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    if let Some(when) = kill_when {
        loop {
            if when() {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|m| m.get("done").map(|d| d["result"].clone()))
}

#[test]
fn a_delivery_killed_twenty_times_arrives_once_and_whole() {
    let sshd = Sshd::start();
    let d = tempfile::tempdir().unwrap();
    let remote = d.path().join("far");
    // 24 MB of incompressible bytes (the worker sends bytes; it does not read media).
    let src = d.path().join("feature.mxf");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..24 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(&src, &bytes).unwrap();
    let sha = sha256_hex(&src);
    let job = json!({
        "id": 1, "kind": "deliver", "media_dir": d.path(), "profiles_dir": null,
        "backend": "software",
        "params": {
            "destination": {
                "name": "playout", "kind": "sftp", "host": "127.0.0.1", "port": sshd.port,
                "user": sshd.user, "key_file": sshd.key(), "host_key_sha256": sshd.fingerprint,
                "path": remote,
            },
            "items": [{"name": "feature.mxf", "path": src, "size": bytes.len(), "sha256": sha}],
        },
    });
    let part = remote.join("feature.mxf.part");
    let mut sizes = Vec::new();
    let mut seed: u64 = 7;
    let part_len = || std::fs::metadata(&part).map_or(0, |m| m.len());
    let total = bytes.len() as u64;
    for i in 0..20u64 {
        // Killed once the part passed a point that moves on with each attempt (somewhere in
        // the next twentieth of the file).
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let at = total * i / 20 + (seed >> 33) % (total / 20);
        let killed = worker_run(&job, Some(&|| part_len() > at)).is_none();
        assert!(killed, "attempt {i} finished before its kill point");
        sizes.push(part_len());
    }
    assert!(sizes[19] > total / 2, "{sizes:?}");
    // Each attempt continued the part (never started over), and it is a true prefix.
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
    let have = std::fs::read(&part).unwrap_or_default();
    assert_eq!(
        have[..],
        bytes[..have.len()],
        "the part is a prefix of the file"
    );
    let r = worker_run(&job, None).expect("the last attempt finishes");
    let f = &r["files"][0];
    assert_eq!(f["verified"], "sha256");
    assert_eq!(
        f["sent_bytes"].as_u64().unwrap() + f["resumed_from"].as_u64().unwrap(),
        bytes.len() as u64,
        "{r}"
    );
    assert_eq!(sha256_hex(&remote.join("feature.mxf")), sha);
    assert!(!part.exists());
    // Once there, never sent again.
    let r = worker_run(&job, None).unwrap();
    assert_eq!(
        (
            r["sent_bytes"].as_u64(),
            r["files"][0]["already_there"].as_bool()
        ),
        (Some(0), Some(true)),
        "{r}"
    );
    eprintln!("part sizes after each kill: {sizes:?}");
}

#[test]
fn validate_names_each_mistake_of_a_destination() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("antenne.toml");
    std::fs::write(
        &cfg,
        "[[delivery.destinations]]\nname = \"play out\"\nkind = \"ftp\"\nnaming = \"{house}.mxf\"\n\n\
         [[delivery.destinations]]\nname = \"mcr\"\nkind = \"sftp\"\nhost = \"10.0.0.9\"\n\
         user = \"antenne\"\nmanifests = [\"csv\"]\n",
    )
    .unwrap();
    let o = run(antenne().arg("validate").arg("--config").arg(&cfg));
    assert!(!o.status.success());
    let e = stderr(&o);
    for key in [
        "delivery.destinations.name",
        "delivery.destinations.kind",
        "delivery.destinations.naming",
        "delivery.destinations.key_file",
        "delivery.destinations.host_key_sha256",
        "delivery.destinations.manifests",
    ] {
        assert!(e.contains(key), "{key} not named in: {e}");
    }
}

/// Runs `antenne worker` on `job` with `env` added; every JSON line it printed.
fn worker_lines(job: &Value, env: &[(&str, &str)]) -> Vec<Value> {
    use std::io::Write;
    let mut cmd = antenne();
    cmd.arg("worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn s3_delivery_names_manifests_verifies_and_never_sends_twice() {
    let Some(s3) = common::s3::S3::start(&["outgoing"]) else {
        return;
    };
    let media = tempfile::tempdir().unwrap();
    let key_file = media.path().join("s3.secret");
    std::fs::write(&key_file, format!("{}\n", common::s3::SECRET_KEY)).unwrap();
    let wrong_file = media.path().join("wrong.secret");
    std::fs::write(&wrong_file, "not-the-secret-key-at-all-0000").unwrap();
    let dests = format!(
        "[{{name = \"platform-s3\", kind = \"s3\", endpoint = {ep:?}, bucket = \"outgoing\", \
         path = \"incoming/today\", access_key_id = {id:?}, secret_access_key_file = {key}, \
         naming = \"{{house_id}}_{{stem}}.{{ext}}\", manifests = [\"json\"]}}, \
         {{name = \"s3-wrong-key\", kind = \"s3\", endpoint = {ep:?}, bucket = \"outgoing\", \
         access_key_id = {id:?}, secret_access_key_file = {wrong}, attempts = 1}}]",
        ep = s3.endpoint,
        id = common::s3::ACCESS_KEY,
        key = toml_str(&key_file),
        wrong = toml_str(&wrong_file),
    );
    let log = media.path().join("service.log");
    let s = spawn_logged(
        &[
            ("ANTENNE_DELIVERY_DESTINATIONS", dests),
            ("RUST_LOG", "antenne=debug".into()),
        ],
        &log,
    );
    let a = &s.admin;
    let r = s.call("GET", "/v1/destinations", Some(a), None);
    assert_eq!(r.status, 200);
    assert!(
        r.body.to_string().contains("/outgoing/incoming/today"),
        "{}",
        r.body
    );
    let clip = clip_mb(media.path(), "promo.mp4", 2, 800);
    let f = upload(&s, a, &clip, None);
    let asset = f["asset_id"].as_i64().unwrap();
    let house = s
        .call("GET", &format!("/v1/assets/{asset}"), Some(a), None)
        .body["house_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.call(
        "POST",
        &format!("/v1/assets/{asset}/deliveries"),
        Some(a),
        Some(&json!({"destination": "platform-s3"})),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    let d = wait_delivery(&s, id);
    assert_eq!(d["state"], "delivered", "{d}");
    let name = format!("{house}_promo.mp4");
    let files = d["result"]["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "the clip and its manifest: {d}");
    assert!(files.iter().all(|f| f["verified"] == "sha256"), "{d}");
    // What the store holds, read with another client, is the stored file byte for byte.
    let got = s3.get("outgoing", &format!("incoming/today/{name}"));
    assert_eq!(got, std::fs::read(&clip).unwrap());
    let m: Value = serde_json::from_slice(
        &s3.get("outgoing", &format!("incoming/today/{house}.manifest.json")),
    )
    .unwrap();
    assert_eq!(m["files"][0]["name"], name.as_str());
    assert_eq!(m["files"][0]["sha256"], sha256_hex(&clip).as_str());
    // Recorded on the asset; asked again, the same delivery; forced again, nothing sent.
    let r = s.call(
        "GET",
        &format!("/v1/assets/{asset}/deliveries"),
        Some(a),
        None,
    );
    assert_eq!(r.body[0]["destination"], "platform-s3", "{}", r.body);
    let r = s.call(
        "POST",
        &format!("/v1/assets/{asset}/deliveries"),
        Some(a),
        Some(&json!({"destination": "platform-s3"})),
    );
    assert_eq!((r.status, r.body["id"].as_i64()), (200, Some(id)));
    let r = s.call(
        "POST",
        &format!("/v1/assets/{asset}/deliveries"),
        Some(a),
        Some(&json!({"destination": "platform-s3", "again": true})),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let d2 = wait_delivery(&s, r.body["id"].as_i64().unwrap());
    assert_eq!(d2["state"], "delivered", "{d2}");
    assert_eq!(d2["result"]["sent_bytes"], 0, "{d2}");
    // A wrong secret: refused by the store (403), failed for good with the reason.
    let r = s.call(
        "POST",
        &format!("/v1/assets/{asset}/deliveries"),
        Some(a),
        Some(&json!({"destination": "s3-wrong-key"})),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let d = wait_delivery(&s, r.body["id"].as_i64().unwrap());
    assert_eq!(d["state"], "failed", "{d}");
    let why = d["error"].as_str().unwrap();
    assert!(why.contains("refused the credentials"), "{why}");
    let job = s
        .call("GET", &format!("/v1/jobs/{}", d["job_id"]), Some(a), None)
        .body;
    assert_eq!(job["attempts"], 1, "not retried: {job}");
    // No secret, nor where it is kept, in answers, job logs or the service's log.
    let mut seen = String::new();
    for path in [
        "/v1/destinations".to_string(),
        format!("/v1/assets/{asset}/deliveries"),
        "/v1/jobs?limit=100".to_string(),
        "/v1/audit?limit=1000".to_string(),
    ] {
        seen.push_str(&s.call("GET", &path, Some(a), None).body.to_string());
    }
    let jobs = s
        .call("GET", "/v1/jobs?kind=deliver&limit=100", Some(a), None)
        .body;
    for j in jobs["items"].as_array().unwrap() {
        let r = s.call("GET", &format!("/v1/jobs/{}/logs", j["id"]), Some(a), None);
        seen.push_str(&r.body.to_string());
    }
    assert!(seen.contains("refused the credentials"), "{seen}");
    let mut s = s;
    s.stop();
    seen.push_str(&std::fs::read_to_string(&log).unwrap());
    for secret in [common::s3::SECRET_KEY, "not-the-secret-key-at-all"] {
        assert!(!seen.contains(secret), "an S3 secret leaked");
    }
}

#[test]
fn an_s3_delivery_cut_off_or_with_the_store_down_finishes_on_a_later_attempt() {
    let Some(mut s3) = common::s3::S3::start(&["far"]) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let key_file = d.path().join("s3.secret");
    std::fs::write(&key_file, common::s3::SECRET_KEY).unwrap();
    let mut items = Vec::new();
    let mut sources = Vec::new();
    for (i, mb) in [3usize, 12, 6].into_iter().enumerate() {
        let p = d.path().join(format!("part{i}.mxf"));
        std::fs::write(&p, noise(mb << 20, i as u64 + 11)).unwrap();
        items.push(json!({"name": format!("f{i}.mxf"), "path": p,
            "size": mb << 20, "sha256": sha256_hex(&p)}));
        sources.push(p);
    }
    let job = json!({
        "id": 1, "kind": "deliver", "media_dir": d.path(), "profiles_dir": null,
        "backend": "software",
        "params": {
            "destination": {
                "name": "mam", "kind": "s3", "endpoint": s3.endpoint, "bucket": "far",
                "path": "in", "access_key_id": common::s3::ACCESS_KEY,
                "secret_access_key_file": key_file,
            },
            "items": items,
        },
    });
    let done = |lines: &[Value]| lines.iter().find_map(|m| m.get("done").cloned());
    let failed = |lines: &[Value]| lines.iter().find_map(|m| m.get("failed").cloned());
    let listed = |s3: &common::s3::S3| s3.s3cmd(&["ls", "s3://far/in/"]);
    // The worker ends half-way through the second object: the first is there whole, the
    // second not at all (an unfinished multipart upload is no object).
    let lines = worker_lines(&job, &[("ANTENNE_TEST_FAULT", "deliver_mid")]);
    assert!(
        done(&lines).is_none() && failed(&lines).is_none(),
        "{lines:?}"
    );
    let l = listed(&s3);
    assert!(l.contains("in/f0.mxf") && !l.contains("in/f1.mxf"), "{l}");
    // The store down: the attempt fails, to be retried, naming the store and not the secret.
    s3.stop();
    let lines = worker_lines(&job, &[]);
    let f = failed(&lines).unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(f["retry"], true, "{f}");
    let why = f["error"].as_str().unwrap();
    assert!(
        why.contains(&s3.endpoint) && !why.contains(common::s3::SECRET_KEY),
        "{why}"
    );
    // Back: the next attempt keeps the first object, sends the rest, verifies each read back.
    // (SeaweedFS lists before its volumes take writes again: attempts are retried, as the job
    // system retries them with backoff.)
    s3.start_again();
    let mut tries = Vec::new();
    let r = loop {
        let lines = worker_lines(&job, &[]);
        if let Some(r) = done(&lines) {
            break r;
        }
        let f = failed(&lines).unwrap_or_else(|| panic!("{lines:?}"));
        assert_eq!(f["retry"], true, "{f}");
        tries.push(f["error"].to_string());
        assert!(
            tries.len() < 8,
            "never finished once the store was back: {tries:#?}"
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    eprintln!("attempts failed after the store came back: {tries:#?}");
    let r = &r["result"];
    let files = r["files"].as_array().unwrap();
    assert_eq!(files[0]["already_there"], true, "{r}");
    assert_eq!(files[0]["sent_bytes"], 0, "{r}");
    assert!(files.iter().all(|f| f["verified"] == "sha256"), "{r}");
    assert_eq!(r["sent_bytes"], (12 + 6) << 20, "{r}");
    for (i, p) in sources.iter().enumerate() {
        assert_eq!(
            s3.get("far", &format!("in/f{i}.mxf")),
            std::fs::read(p).unwrap()
        );
    }
    // Again: nothing sent.
    let r = done(&worker_lines(&job, &[])).unwrap();
    assert_eq!(r["result"]["sent_bytes"], 0, "{r}");
}
