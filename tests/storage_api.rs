//! Storages through `antenne serve`: health, copies of a file, policies, the audit repairing a
//! flipped byte, legal holds, retention dry run and grace, access by role, a SeaweedFS that stops
//! (reported, never with its secret), and ingest refused with `storage_full` before writing.

mod common;

use common::s3::{ACCESS_KEY, S3, SECRET_KEY};
use common::server::{clip, sha256_hex, Server};

fn storages_env(s3: &S3, nearline: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "ANTENNE_STORAGES_STORE",
            format!(
                r#"[{{ id = "nearline", kind = "local", role = "nearline", path = "{}" }}, {{ id = "vault", kind = "s3", role = "archive", endpoint = "{}", bucket = "vault", access_key_id = "{ACCESS_KEY}", secret_access_key_env = "VAULT_SECRET" }}]"#,
                nearline.display(),
                s3.endpoint
            ),
        ),
        (
            "ANTENNE_STORAGES_POLICY",
            r#"[{ name = "archive", copy_to = ["vault"], keep = 2 }]"#.into(),
        ),
        (
            "ANTENNE_STORAGES_RETENTION",
            r#"[{ name = "all", select = { older_than_days = 0 }, grace_days = 7 }]"#.into(),
        ),
        ("VAULT_SECRET", SECRET_KEY.into()),
        // The test machine's own disk may be nearly full.
        ("ANTENNE_STORAGES_WARN_PERCENT", "100".into()),
        ("ANTENNE_STORAGES_REFUSE_PERCENT", "100".into()),
    ]
}

#[test]
fn storages_over_http() {
    storages_over_http_on(None);
}

/// The same through a service on a PostgreSQL catalog.
#[test]
fn storages_over_http_on_postgresql() {
    let pg = common::pg::Pg::start().expect("PostgreSQL installed (scripts/setup.sh)");
    storages_over_http_on(Some(&pg.url));
}

fn storages_over_http_on(catalog_url: Option<&str>) {
    let Some(mut s3) = S3::start(&["vault"]) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let nearline = work.path().join("nearline");
    let mut env = storages_env(&s3, &nearline);
    if let Some(u) = catalog_url {
        env.push(("ANTENNE_CATALOG_URL", u.to_string()));
    }
    let s = Server::start(&env);
    let a = Some(s.admin.as_str());
    let no_secret = |what: &str, body: &serde_json::Value| {
        let t = body.to_string();
        assert!(!t.contains(SECRET_KEY), "secret in {what}: {t}");
    };

    let f = clip(work.path(), "one.mp4", 1);
    let original = sha256_hex(&f);
    let r = s.raw(
        "POST",
        "/v1/ingest/upload?filename=one.mp4",
        a,
        Some(("application/octet-stream", std::fs::read(&f).unwrap())),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let asset = r.body["asset"]["id"].as_i64().unwrap();
    let file = r.body["file"]["id"].as_i64().unwrap();
    let path = std::path::PathBuf::from(r.body["file"]["path"].as_str().unwrap());

    let r = s.call("GET", "/v1/storages", a, None);
    assert_eq!(r.status, 200, "{}", r.body);
    no_secret("GET /v1/storages", &r.body);
    let ids: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["media", "nearline", "vault"]);
    assert!(
        r.body
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["reachable"] == true),
        "{}",
        r.body
    );

    let r = s.call("POST", "/v1/storages/policies/run", a, None);
    assert_eq!(
        (r.status, r.body["copied"].as_i64()),
        (200, Some(1)),
        "{}",
        r.body
    );
    let r = s.call("GET", &format!("/v1/files/{file}/copies"), a, None);
    let mut on: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["storage"].as_str().unwrap())
        .collect();
    on.sort();
    assert_eq!(on, ["media", "vault"], "{}", r.body);

    // A flipped byte in the online copy: found and repaired from the archive.
    let mut b = std::fs::read(&path).unwrap();
    b[1000] ^= 0x10;
    std::fs::write(&path, &b).unwrap();
    let r = s.call("POST", "/v1/storages/audit", a, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.body["bad"].as_i64(), r.body["repaired"].as_i64()),
        (Some(1), Some(1)),
        "{}",
        r.body
    );
    assert_eq!(sha256_hex(&path), original);
    let r = s.call("GET", "/v1/storages/events", a, None);
    let kinds: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"bad") && kinds.contains(&"repaired"),
        "{kinds:?}"
    );

    // Roles: a viewer sees no storages and cannot hold.
    let (_, viewer) = s.user("vic", "viewer");
    let v = Some(viewer.as_str());
    assert_eq!(s.call("GET", "/v1/storages", v, None).status, 403);
    assert_eq!(s.call("POST", "/v1/storages/audit", v, None).status, 403);
    let hold = serde_json::json!({"reason": "court order 7"});
    assert_eq!(
        s.call("PUT", &format!("/v1/assets/{asset}/hold"), v, Some(&hold))
            .status,
        404
    );
    assert_eq!(s.call("GET", "/v1/storages", None, None).status, 401);

    // A held asset is kept by retention; released, it is proposed, then waits its grace period.
    let r = s.call("PUT", &format!("/v1/assets/{asset}/hold"), a, Some(&hold));
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (200, Some("court order 7")),
        "{}",
        r.body
    );
    let bad = serde_json::json!({"reason": " "});
    assert_eq!(
        s.call("PUT", &format!("/v1/assets/{asset}/hold"), a, Some(&bad))
            .status,
        422
    );
    let r = s.call("POST", "/v1/retention/dry-run", a, None);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 0, "{}", r.body);
    assert_eq!(r.body["kept"][0]["why"], "legal_hold", "{}", r.body);
    assert_eq!(
        s.call("DELETE", &format!("/v1/assets/{asset}/hold"), a, None)
            .status,
        204
    );
    let r = s.call("POST", "/v1/retention/dry-run", a, None);
    assert_eq!(
        r.body["items"][0]["asset_id"].as_i64(),
        Some(asset),
        "{}",
        r.body
    );
    assert!(r.body["bytes"].as_i64().unwrap() > 0);
    let r = s.call("POST", "/v1/retention/purge", a, None);
    assert_eq!(
        (
            r.body["items"].as_array().unwrap().len(),
            r.body["waiting"].as_array().unwrap().len()
        ),
        (0, 1),
        "{}",
        r.body
    );
    assert!(path.exists());

    // SeaweedFS stops: the storage is reported unreachable, with a reason and no secret.
    s3.stop();
    let r = s.call("GET", "/v1/storages/vault", a, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["reachable"], false, "{}", r.body);
    no_secret("GET /v1/storages/vault", &r.body);
    let r = s.call("POST", "/v1/storages/audit", a, None);
    assert_eq!(r.body["read_errors"].as_i64(), Some(1), "{}", r.body);
    assert_eq!(r.body["ok"].as_i64(), Some(1), "{}", r.body);
    no_secret("the audit", &r.body);
    let r = s.call("GET", "/v1/storages/events?limit=1000", a, None);
    no_secret("the event log", &r.body);
    let r = s.call("GET", "/v1/storages/nope", a, None);
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let (_, m) = s.request("GET", "/metrics", a, &[], None);
    let m = String::from_utf8_lossy(&m);
    assert!(m.contains("antenne_storage_repairs_total"), "{m}");
    assert!(m.contains("antenne_storage_read_errors_total"), "{m}");
}

/// Ingest past the refuse threshold: 409 `storage_full`, nothing written, before the body is read.
#[test]
fn ingest_refused_before_the_disk_fills() {
    let work = tempfile::tempdir().unwrap();
    let (url, rx) = webhook();
    let mut seen = Vec::new();
    let s = Server::start(&[
        ("ANTENNE_STORAGES_WARN_PERCENT", "0.001".into()),
        ("ANTENNE_STORAGES_REFUSE_PERCENT", "0.002".into()),
        ("ANTENNE_STORAGES_WEBHOOKS", format!("[{url:?}]")),
    ]);
    let a = Some(s.admin.as_str());
    let f = clip(work.path(), "one.mp4", 3);
    let r = s.raw(
        "POST",
        "/v1/ingest/upload?filename=one.mp4",
        a,
        Some(("application/octet-stream", std::fs::read(&f).unwrap())),
    );
    assert_eq!((r.status, r.code()), (409, "storage_full"), "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("media"),
        "{}",
        r.body
    );
    let incoming = s.data_dir().join("media/incoming");
    let left: Vec<_> = std::fs::read_dir(&incoming)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    let r = s.call("GET", "/v1/storages/media", a, None);
    assert_eq!(r.body["alert"], "full", "{}", r.body);
    let (_, m) = s.request("GET", "/metrics", a, &[], None);
    let m = String::from_utf8_lossy(&m);
    assert!(
        m.contains("antenne_storage_alert_level{storage=\"media\"} 2"),
        "{m}"
    );
    // Ingest paused and the threshold crossed, each on the webhook.
    let e = hooked(&rx, &mut seen, "ingest_paused", None);
    assert_eq!(e["storage"], "media", "{e}");
    assert!(e["detail"].as_str().unwrap().contains("too full"), "{e}");
    let e = hooked(&rx, &mut seen, "alert", None);
    assert!(e["detail"].as_str().unwrap().starts_with("full"), "{e}");
}

/// A webhook receiver: answers 200 to each POST and hands its body over.
fn webhook() -> (String, std::sync::mpsc::Receiver<serde_json::Value>) {
    use std::io::{BufRead, Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut r = std::io::BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
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
            let _ = r.read_exact(&mut body);
            let mut c = conn;
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null));
        }
    });
    (url, rx)
}

/// The first storage event of kind `kind` (about `file`, when given) on the webhook: among those
/// `seen` before, else from those to come (kept in `seen`).
fn hooked(
    rx: &std::sync::mpsc::Receiver<serde_json::Value>,
    seen: &mut Vec<serde_json::Value>,
    kind: &str,
    file: Option<i64>,
) -> serde_json::Value {
    let is = |e: &serde_json::Value| e["kind"] == kind && file.is_none_or(|f| e["file_id"] == f);
    if let Some(i) = seen.iter().position(is) {
        return seen.remove(i);
    }
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        let Ok(e) = rx.recv_timeout(left) else {
            panic!("no {kind} storage event on the webhook; got {seen:#?}");
        };
        assert_eq!(e["event"], "storage", "{e}");
        if is(&e) {
            return e;
        }
        seen.push(e);
    }
}

#[test]
fn storage_events_reach_the_webhooks() {
    let (url, rx) = webhook();
    let mut seen = Vec::new();
    let work = tempfile::tempdir().unwrap();
    let nearline = work.path().join("nearline");
    let s = Server::start(&[
        (
            "ANTENNE_STORAGES_STORE",
            format!(
                r#"[{{ id = "nearline", kind = "local", role = "nearline", path = "{}" }}]"#,
                nearline.display()
            ),
        ),
        (
            "ANTENNE_STORAGES_POLICY",
            r#"[{ name = "two", copy_to = ["nearline"], keep = 2 }]"#.into(),
        ),
        ("ANTENNE_STORAGES_WEBHOOKS", format!("[{url:?}]")),
        ("ANTENNE_STORAGES_WARN_PERCENT", "100".into()),
        ("ANTENNE_STORAGES_REFUSE_PERCENT", "100".into()),
    ]);
    let a = Some(s.admin.as_str());
    let f = clip(work.path(), "one.mp4", 2);
    let r = s.raw(
        "POST",
        "/v1/ingest/upload?filename=one.mp4",
        a,
        Some(("application/octet-stream", std::fs::read(&f).unwrap())),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let file = r.body["file"]["id"].as_i64().unwrap();
    let path = std::path::PathBuf::from(r.body["file"]["path"].as_str().unwrap());
    let r = s.call("POST", "/v1/storages/policies/run", a, None);
    assert_eq!(r.body["copied"], 1, "{}", r.body);
    // A flipped byte online: bad, then repaired, each on the webhook.
    let mut b = std::fs::read(&path).unwrap();
    b[1000] ^= 0x10;
    std::fs::write(&path, &b).unwrap();
    let r = s.call("POST", "/v1/storages/audit", a, None);
    assert_eq!(r.body["repaired"], 1, "{}", r.body);
    let e = hooked(&rx, &mut seen, "bad", Some(file));
    assert_eq!(e["storage"], "media", "{e}");
    assert!(e["asset_id"].is_i64(), "{e}");
    hooked(&rx, &mut seen, "repaired", Some(file));
    // The nearline copy gone: missing, then repaired.
    let copy = walk(&nearline)
        .into_iter()
        .next()
        .expect("the nearline copy");
    std::fs::remove_file(&copy).unwrap();
    let r = s.call("POST", "/v1/storages/audit", a, None);
    assert_eq!(r.body["missing"], 1, "{}", r.body);
    let e = hooked(&rx, &mut seen, "missing", Some(file));
    assert_eq!(e["storage"], "nearline", "{e}");
    hooked(&rx, &mut seen, "repaired", Some(file));
    assert!(copy.is_file());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
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
