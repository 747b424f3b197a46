//! Resumable uploads (tus 1.0) against the real server, driven by a real tus client (tuspy,
//! Debian's python3-tuspy) and by raw requests where a client would not misbehave on purpose:
//! chunked uploads, interruptions (client stopped, connection dropped, service restarted),
//! offsets, the size cap, rights, checksums, broken media, duplicates and expiry, on SQLite and
//! PostgreSQL.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::pg::Pg;
use common::server::{clip, sha256_hex, Server};
use serde_json::{json, Value};

const CAP: u64 = 5_000_000;

/// Runs tuspy: a new upload to `endpoint`, or the one at `url` resumed; stops at `stop_at`.
const CLIENT: &str = r#"
import json, sys
from tusclient import client
from tusclient.exceptions import TusCommunicationError
a = json.loads(sys.argv[1])
headers = {"Authorization": "Bearer " + a["token"]} if a["token"] else {}
c = client.TusClient(a["endpoint"], headers=headers)
out = {}
u = None
try:
    kw = dict(file_path=a["file"], chunk_size=a["chunk"], metadata=a.get("metadata", {}),
              upload_checksum=a.get("checksum", False))
    if a.get("url"):
        kw["url"] = a["url"]
    u = c.uploader(**kw)
    out["resumed_at"] = u.offset
    u.upload(stop_at=a.get("stop_at"))
    out["offset"] = u.offset
    out["headers"] = u.request.response_headers if u.request else {}
except TusCommunicationError as e:
    out["status"] = e.status_code
    body = e.response_content or b""
    out["body"] = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
out["url"] = u.url if u else None
print(json.dumps(out))
"#;

struct Tus<'a> {
    s: &'a Server,
    token: &'a str,
}

impl Tus<'_> {
    /// tuspy with `args` (`file`, `chunk`, and optionally `metadata`, `stop_at`, `url`,
    /// `checksum`, `endpoint`).
    fn run(&self, mut args: Value) -> Value {
        if args.get("endpoint").is_none() {
            args["endpoint"] = json!(format!("{}/v1/ingest/tus", self.s.base));
        }
        if let Some(p) = args["endpoint"].as_str().filter(|p| p.starts_with('/')) {
            args["endpoint"] = json!(format!("{}{p}", self.s.base));
        }
        args["token"] = json!(self.token);
        let o = Command::new("/usr/bin/python3")
            .args(["-c", CLIENT, &args.to_string()])
            .output()
            .expect("run /usr/bin/python3 (python3-tuspy)");
        assert!(
            o.status.success(),
            "tuspy: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
            panic!(
                "tuspy printed {} / {}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
    }

    /// The asset a completed upload became, and its files' hashes.
    fn asset_of(&self, out: &Value) -> (i64, Vec<String>) {
        let id: i64 = out["headers"]["antenne-asset-id"]
            .as_str()
            .unwrap_or_else(|| panic!("a completed upload names its asset: {out}"))
            .parse()
            .unwrap();
        let r = self.s.call(
            "GET",
            &format!("/v1/assets/{id}/files"),
            Some(self.token),
            None,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let hashes = r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["sha256"].as_str().unwrap().to_string())
            .collect();
        (id, hashes)
    }
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

/// A tus request by hand; returns the reply (headers included).
fn tus_call(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> common::server::Reply {
    let mut h = vec![("Tus-Resumable", "1.0.0")];
    h.extend_from_slice(headers);
    s.request(
        method,
        path,
        token,
        &h,
        body.map(|b| ("application/offset+octet-stream", b)),
    )
    .0
}

fn b64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut o = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                o.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                o.push('=');
            }
        }
    }
    o
}

/// Creates an upload by hand; returns its path.
fn create(s: &Server, token: &str, length: u64, name: &str) -> String {
    let r = tus_call(
        s,
        "POST",
        "/v1/ingest/tus",
        Some(token),
        &[
            ("Upload-Length", &length.to_string()),
            ("Upload-Metadata", &format!("filename {}", b64(name))),
        ],
        None,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.header("upload-expires").is_some());
    r.header("location").unwrap().to_string()
}

fn offset_of(s: &Server, token: &str, path: &str) -> Option<u64> {
    let r = tus_call(s, "HEAD", path, Some(token), &[], None);
    (r.status == 200).then(|| r.header("upload-offset").unwrap().parse().unwrap())
}

/// The part files of a data directory.
fn parts(data: &Path) -> Vec<String> {
    let dir = data.join("media/incoming");
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with(".tus-"))
                .collect()
        })
        .unwrap_or_default()
}

fn env(
    data: Option<&Path>,
    url: Option<&str>,
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut e = vec![("ANTENNE_INGEST_MAX_UPLOAD", CAP.to_string())];
    if let Some(d) = data {
        e.push(("ANTENNE_STORAGE_DATA_DIR", d.display().to_string()));
    }
    if let Some(u) = url {
        e.push(("ANTENNE_CATALOG_URL", u.to_string()));
    }
    e.extend_from_slice(extra);
    e
}

/// Sends `Content-Length: full` but only `sent` bytes of `data`, then drops the connection.
fn patch_and_drop(s: &Server, token: &str, path: &str, data: &[u8], sent: usize) {
    let addr = s.base.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(
        c,
        "PATCH {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )
    .unwrap();
    c.write_all(&data[..sent]).unwrap();
    c.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(c);
}

fn scenario(url: Option<&str>) {
    let media = tempfile::tempdir().unwrap();
    let mut s = Server::start(&env(None, url, &[]));
    let admin = s.admin.clone();
    let data_dir = s.data_dir();
    let t = Tus {
        s: &s,
        token: &admin,
    };

    // Discovery, public.
    let r = s.request("OPTIONS", "/v1/ingest/tus", None, &[], None).0;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(r.header("tus-version"), Some("1.0.0"));
    let ext = r.header("tus-extension").unwrap();
    for e in ["creation", "termination", "expiration", "checksum"] {
        assert!(ext.contains(e), "{ext}");
    }
    assert_eq!(r.header("tus-max-size"), Some(CAP.to_string().as_str()));

    // A whole upload in several chunks becomes an asset with the right hash.
    let a = clip(media.path(), "a.mp4", 1);
    let n = size(&a);
    let out = t.run(json!({"file": a, "chunk": n / 5 + 1,
        "metadata": {"filename": "Master take.mp4", "title": "Master take", "kind": "clip"}}));
    assert_eq!(out["offset"], n, "{out}");
    let (id, hashes) = t.asset_of(&out);
    assert_eq!(hashes, vec![sha256_hex(&a)]);
    let r = s.call("GET", &format!("/v1/assets/{id}"), Some(&admin), None);
    assert_eq!(r.body["title"], "Master take", "{}", r.body);
    // HEAD on the completed upload still says where it went.
    let done_path = out["url"]
        .as_str()
        .unwrap()
        .trim_start_matches(&s.base)
        .to_string();
    let r = tus_call(&s, "HEAD", &done_path, Some(&admin), &[], None);
    assert_eq!(r.header("upload-offset"), Some(n.to_string().as_str()));
    assert_eq!(r.header("antenne-asset-id"), Some(id.to_string().as_str()));

    // The same content again: a duplicate, refused at completion; nothing is left.
    let out = t.run(json!({"file": a, "chunk": n, "metadata": {"filename": "again.mp4"}}));
    assert_eq!(out["status"], 409, "{out}");
    assert!(out["body"].as_str().unwrap().contains("duplicate"), "{out}");

    // Stopped midway (the client stops), resumed by a new client: the right hash.
    let b = clip(media.path(), "b.mp4", 2);
    let n = size(&b);
    let out = t.run(json!({"file": b, "chunk": n / 6 + 1, "stop_at": n / 2,
        "metadata": {"filename": "b.mp4"}}));
    let half = out["offset"].as_u64().unwrap();
    assert!(half >= n / 2 && half < n, "{out}");
    let url_b = out["url"].as_str().unwrap().to_string();
    let out = t.run(json!({"file": b, "chunk": n / 6 + 1, "url": url_b}));
    assert_eq!(out["resumed_at"], half, "{out}");
    assert_eq!(t.asset_of(&out).1, vec![sha256_hex(&b)]);

    // The connection dropped in the middle of a request: what arrived is kept.
    let c = clip(media.path(), "c.mp4", 3);
    let data = std::fs::read(&c).unwrap();
    let path = create(&s, &admin, data.len() as u64, "c.mp4");
    let sent = data.len() / 3;
    patch_and_drop(&s, &admin, &path, &data, sent);
    let until = Instant::now() + Duration::from_secs(10);
    while offset_of(&s, &admin, &path) != Some(sent as u64) {
        assert!(Instant::now() < until, "the bytes that arrived are kept");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = t.run(json!({"file": c, "chunk": data.len() / 4 + 1,
        "url": format!("{}{path}", s.base)}));
    assert_eq!(out["resumed_at"], sent, "{out}");
    assert_eq!(t.asset_of(&out).1, vec![sha256_hex(&c)]);

    // The service killed midway and started again: the upload resumes, the hash is right.
    let d = clip(media.path(), "d.mp4", 4);
    let n = size(&d);
    let out = t.run(json!({"file": d, "chunk": n / 4 + 1, "stop_at": n / 2,
        "metadata": {"filename": "d.mp4"}}));
    let half = out["offset"].as_u64().unwrap();
    let path_d = out["url"]
        .as_str()
        .unwrap()
        .trim_start_matches(&s.base)
        .to_string();
    // Wrong offset: 409, and nothing changes.
    let r = tus_call(
        &s,
        "PATCH",
        &path_d,
        Some(&admin),
        &[("Upload-Offset", "1")],
        Some(vec![0; 10]),
    );
    assert_eq!((r.status, r.code()), (409, "conflict"), "{}", r.body);
    assert_eq!(offset_of(&s, &admin, &path_d), Some(half));
    // A body past Upload-Length: 413.
    let r = tus_call(
        &s,
        "PATCH",
        &path_d,
        Some(&admin),
        &[("Upload-Offset", &half.to_string())],
        Some(vec![0; (n - half + 1) as usize]),
    );
    assert_eq!(
        (r.status, r.code()),
        (413, "payload_too_large"),
        "{}",
        r.body
    );
    // A body that does not match its checksum: 460, and nothing is kept.
    let r = tus_call(
        &s,
        "PATCH",
        &path_d,
        Some(&admin),
        &[
            ("Upload-Offset", &half.to_string()),
            ("Upload-Checksum", "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="),
        ],
        Some(vec![1; 100]),
    );
    assert_eq!(
        (r.status, r.code()),
        (460, "checksum_mismatch"),
        "{}",
        r.body
    );
    assert_eq!(offset_of(&s, &admin, &path_d), Some(half));
    let _ = s.child.kill();
    let _ = s.child.wait();
    let s = Server::start(&env(Some(&data_dir), url, &[]));
    let t = Tus {
        s: &s,
        token: &admin,
    };
    let out = t.run(json!({"file": d, "chunk": n / 4 + 1, "checksum": true,
        "url": format!("{}{path_d}", s.base)}));
    assert_eq!(out["resumed_at"], half, "{out}");
    assert_eq!(t.asset_of(&out).1, vec![sha256_hex(&d)]);

    // Over the cap: refused at creation.
    let r = tus_call(
        &s,
        "POST",
        "/v1/ingest/tus",
        Some(&admin),
        &[
            ("Upload-Length", &(CAP + 1).to_string()),
            ("Upload-Metadata", "filename YS5teGY="),
        ],
        None,
    );
    assert_eq!(
        (r.status, r.code()),
        (413, "payload_too_large"),
        "{}",
        r.body
    );
    assert_eq!(r.header("tus-resumable"), Some("1.0.0"));
    // No filename, another protocol version.
    let r = tus_call(
        &s,
        "POST",
        "/v1/ingest/tus",
        Some(&admin),
        &[("Upload-Length", "10")],
        None,
    );
    assert_eq!((r.status, r.code()), (400, "invalid_header"), "{}", r.body);
    let r = s
        .request(
            "POST",
            "/v1/ingest/tus",
            Some(&admin),
            &[
                ("Tus-Resumable", "0.2.2"),
                ("Upload-Length", "10"),
                ("Upload-Metadata", "filename YQ=="),
            ],
            None,
        )
        .0;
    assert_eq!(
        (r.status, r.code()),
        (412, "unsupported_version"),
        "{}",
        r.body
    );

    // Unauthenticated: 401, for a new upload and for an existing one.
    let e = clip(media.path(), "e.mp4", 5);
    let anon = Tus { s: &s, token: "" };
    let out = anon.run(json!({"file": e, "chunk": 100000, "metadata": {"filename": "e.mp4"}}));
    assert_eq!(out["status"], 401, "{out}");
    let path_e = create(&s, &admin, size(&e), "e.mp4");
    let r = tus_call(&s, "HEAD", &path_e, None, &[], None);
    assert_eq!(r.status, 401);

    // Another user's upload: not found, whatever the method; a viewer may not upload at all.
    let (_, editor) = s.user("ed", "editor");
    let (_, viewer) = s.user("vi", "viewer");
    for (m, h) in [
        ("HEAD", vec![]),
        ("PATCH", vec![("Upload-Offset", "0")]),
        ("DELETE", vec![]),
    ] {
        let body = (m == "PATCH").then(|| vec![0u8; 10]);
        let r = tus_call(&s, m, &path_e, Some(&editor), &h, body);
        assert_eq!(r.status, 404, "{m}: {}", r.body);
    }
    assert_eq!(offset_of(&s, &admin, &path_e), Some(0));
    let r = tus_call(
        &s,
        "POST",
        "/v1/ingest/tus",
        Some(&viewer),
        &[
            ("Upload-Length", "10"),
            ("Upload-Metadata", "filename YQ=="),
        ],
        None,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // A file for an existing asset needs the write right on it.
    let r = tus_call(
        &s,
        "POST",
        &format!("/v1/assets/{id}/upload/tus"),
        Some(&editor),
        &[
            ("Upload-Length", "10"),
            ("Upload-Metadata", "filename YQ=="),
        ],
        None,
    );
    assert!(matches!(r.status, 403 | 404), "{}", r.body);
    let out = t.run(
        json!({"file": e, "chunk": 100000, "endpoint": format!("/v1/assets/{id}/upload/tus"),
        "metadata": {"filename": "e.mp4", "role": "proxy"}}),
    );
    let (same, hashes) = t.asset_of(&out);
    assert_eq!(same, id);
    assert_eq!(hashes.len(), 2);
    assert!(hashes.contains(&sha256_hex(&e)), "{hashes:?}");

    // Termination: the upload and its bytes go.
    assert!(!parts(&data_dir).is_empty());
    let r = tus_call(&s, "DELETE", &path_e, Some(&admin), &[], None);
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(offset_of(&s, &admin, &path_e), None);

    // Broken media: refused at completion naming the client's file, never a server path.
    let junk = media.path().join("junk.bin");
    std::fs::write(
        &junk,
        (0..50_000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let out =
        t.run(json!({"file": junk, "chunk": 20000, "metadata": {"filename": "Broken promo.mxf"}}));
    assert_eq!(out["status"], 422, "{out}");
    let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "not_media", "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("Broken promo.mxf"), "{msg}");
    let shown = data_dir.display().to_string();
    assert!(!msg.contains(&shown) && !msg.contains("/media/"), "{msg}");
    assert!(parts(&data_dir).is_empty(), "{:?}", parts(&data_dir));
    let left = walk(&data_dir.join("media"));
    assert!(
        !left.iter().any(|f| f.to_string_lossy().contains("Broken")),
        "{left:?}"
    );
}

#[test]
fn resumable_uploads_on_sqlite() {
    scenario(None);
}

#[test]
fn resumable_uploads_on_postgres() {
    let pg = Pg::start().expect("PostgreSQL installed (scripts/setup.sh)");
    scenario(Some(&pg.url));
    expiry(Some(&pg.url));
}

/// An upload idle past `ingest.upload_expiry_s` is removed with its bytes.
fn expiry(url: Option<&str>) {
    let s = Server::start(&env(
        None,
        url,
        &[("ANTENNE_INGEST_UPLOAD_EXPIRY_S", "2".into())],
    ));
    let data_dir = s.data_dir();
    let path = create(&s, &s.admin, 1000, "idle.mxf");
    let r = tus_call(
        &s,
        "PATCH",
        &path,
        Some(&s.admin),
        &[("Upload-Offset", "0")],
        Some(vec![7; 400]),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(r.header("upload-offset"), Some("400"));
    assert!(r.header("upload-expires").is_some());
    assert_eq!(parts(&data_dir).len(), 1);
    let until = Instant::now() + Duration::from_secs(15);
    while !parts(&data_dir).is_empty() {
        assert!(
            Instant::now() < until,
            "an idle upload is swept: {:?}",
            parts(&data_dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(offset_of(&s, &s.admin, &path), None);
    let r = tus_call(
        &s,
        "PATCH",
        &path,
        Some(&s.admin),
        &[("Upload-Offset", "400")],
        Some(vec![7; 600]),
    );
    assert_eq!(r.status, 404, "{}", r.body);
}

#[test]
fn resumable_uploads_expire_on_sqlite() {
    expiry(None);
}

/// Every file under `dir`, recursively.
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
