//! Review and approval end to end: rights (the approve right, its role default, a grant),
//! transitions, timecoded comments, a delivery that requires approval, and the notifications
//! (a webhook received here, e-mail through a real SMTP server: `aiosmtpd`).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::live::{free_tcp_port, wait_for};
use common::server::{clip, Server};
use common::*;
use serde_json::{json, Value};

/// A webhook receiver on a free port: keeps each body, answers 204.
fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { break };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            if r.read_exact(&mut body).is_ok() {
                if let Ok(v) = serde_json::from_slice(&body) {
                    keep.lock().unwrap().push(v);
                }
            }
            let _ = c.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}

/// aiosmtpd with its Debugging handler, printing each message it receives into `out`.
struct Smtp {
    child: Child,
    port: u16,
}

impl Smtp {
    fn start(out: &Path) -> Smtp {
        let port = free_tcp_port();
        let child = Command::new(venv_bin("python"))
            .args([
                "-u",
                "-m",
                "aiosmtpd",
                "-n",
                "-c",
                "aiosmtpd.handlers.Debugging",
                "-l",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(std::fs::File::create(out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(Duration::from_secs(20), "aiosmtpd listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Smtp { child, port }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn review_gates_delivery_and_notifies_by_webhook_and_email() {
    scenario(None);
}

#[test]
fn review_and_delivery_records_on_postgresql() {
    let pg = common::pg::Pg::start().expect("PostgreSQL installed (scripts/setup.sh)");
    scenario(Some(&pg.url));
}

fn scenario(catalog_url: Option<&str>) {
    let media = tempfile::tempdir().unwrap();
    let mails = media.path().join("smtp.out");
    let smtp = Smtp::start(&mails);
    let (hook, hooked) = webhook();
    let out = media.path().join("out");
    let s = Server::start(&[
        (
            "ANTENNE_DELIVERY_DESTINATIONS",
            format!(
                "[{{name = \"air\", kind = \"folder\", path = {:?}, require_approval = true}}]",
                out.to_str().unwrap()
            ),
        ),
        (
            "ANTENNE_CATALOG_URL",
            catalog_url.unwrap_or_default().to_string(),
        ),
        (
            "ANTENNE_DELIVERY_REVIEW",
            format!(
            "{{webhooks = [{hook:?}], emails = [\"mcr@example.org\"], smtp = \"127.0.0.1:{}\", \
             mail_from = \"antenne@example.org\"}}",
            smtp.port
        ),
        ),
    ]);
    let (_, editor) = s.user("ed", "editor");
    let (_, operator) = s.user("op", "operator");
    let (viewer_id, viewer) = s.user("vi", "viewer");
    let src = clip(media.path(), "news.mp4", 3);
    let r = s.raw(
        "POST",
        "/v1/ingest/upload?filename=news.mp4&role=platform",
        Some(&editor),
        Some(("application/octet-stream", std::fs::read(&src).unwrap())),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let asset = r.body["asset"]["id"].as_i64().unwrap();
    let at = |p: &str| format!("/v1/assets/{asset}/{p}");
    let post = |tok: &str, p: &str, b: Value| s.call("POST", &at(p), Some(tok), Some(&b));
    let deliver = || post(&s.admin, "deliveries", json!({"destination": "air"}));

    // Not in review: a delivery that requires approval is refused, saying why.
    let r = deliver();
    assert_eq!((r.status, r.code()), (409, "not_approved"), "{}", r.body);
    // The owner puts it in review, but owning is no right to approve it.
    assert_eq!(post(&editor, "review", json!({})).status, 200);
    assert_eq!(post(&editor, "review", json!({})).code(), "conflict");
    let r = post(&editor, "review/approve", json!({}));
    assert_eq!((r.status, r.code()), (403, "forbidden"), "{}", r.body);
    let r = deliver();
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in review"),
        "{}",
        r.body
    );

    // A comment at a timecode of the media; one outside it is refused.
    let r = post(
        &operator,
        "comments",
        json!({"timecode": "00:00:01:05", "body": "audio drops here"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["frame"], 30);
    let r = post(
        &operator,
        "comments",
        json!({"timecode": "00:00:09:00", "body": "x"}),
    );
    assert_eq!((r.status, r.code()), (422, "invalid_field"), "{}", r.body);
    let r = post(
        &operator,
        "comments",
        json!({"timecode": "1:2", "body": "x"}),
    );
    assert_eq!(r.status, 422);

    // The operator (role default) rejects, with a reason (required).
    assert_eq!(post(&operator, "review/reject", json!({})).status, 422);
    let r = post(
        &operator,
        "review/reject",
        json!({"reason": "audio drops at 00:00:01:05"}),
    );
    assert_eq!(
        (r.status, r.body["state"].as_str()),
        (200, Some("rejected")),
        "{}",
        r.body
    );
    let r = deliver();
    let why = r.body["error"]["message"].as_str().unwrap();
    assert!(
        r.code() == "not_approved" && why.contains("rejected") && why.contains("audio drops"),
        "{why}"
    );
    // Approving a rejected asset is a conflict: it goes back in review first.
    assert_eq!(post(&operator, "review/approve", json!({})).status, 409);
    assert_eq!(post(&editor, "review", json!({})).status, 200);

    // A viewer holds the approve right only when granted it.
    assert_eq!(post(&viewer, "review/approve", json!({})).status, 404);
    let r = s.call(
        "PUT",
        &at("acl"),
        Some(&s.admin),
        Some(&json!({"grants": [{"principal": "user", "id": viewer_id, "perms": ["read", "approve"]}]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post(&viewer, "review/approve", json!({"reason": "fixed"}));
    assert_eq!(
        (r.status, r.body["state"].as_str()),
        (200, Some("approved")),
        "{}",
        r.body
    );
    let r = s.call("GET", &at("approval"), Some(&viewer), None);
    assert_eq!(r.body["state"], "approved", "{}", r.body);
    let r = s.call("GET", &at("review"), Some(&editor), None);
    let states: Vec<&str> = r.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["in_review", "rejected", "in_review", "approved"]);
    let c = s.call("GET", &at("comments"), Some(&viewer), None);
    assert_eq!(c.body[0]["timecode"], "00:00:01:05");

    // Approved: the delivery goes.
    let r = deliver();
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    let d = wait_for(Duration::from_secs(60), "the delivery", || {
        let d = s
            .call("GET", &format!("/v1/deliveries/{id}"), Some(&s.admin), None)
            .body;
        (!["queued", "running"].contains(&d["state"].as_str().unwrap_or(""))).then_some(d)
    });
    assert_eq!(d["state"], "delivered", "{d}");
    let name = d["files"][0]["name"].as_str().unwrap();
    assert_eq!(
        std::fs::read(out.join(name)).unwrap(),
        std::fs::read(&src).unwrap()
    );

    // A rendition approved on its own goes, though its asset as a whole was never reviewed.
    let r = s.raw(
        "POST",
        "/v1/ingest/upload?filename=promo.mp4&role=platform",
        Some(&editor),
        Some((
            "application/octet-stream",
            std::fs::read(clip(media.path(), "promo.mp4", 4)).unwrap(),
        )),
    );
    let (promo, file) = (
        r.body["asset"]["id"].as_i64().unwrap(),
        r.body["file"]["id"].as_i64().unwrap(),
    );
    let p = |tok: &str, path: &str, b: Value| {
        s.call(
            "POST",
            &format!("/v1/assets/{promo}/{path}"),
            Some(tok),
            Some(&b),
        )
    };
    assert_eq!(p(&editor, "review", json!({"file_id": file})).status, 200);
    assert_eq!(
        p(&s.admin, "deliveries", json!({"destination": "air"})).code(),
        "not_approved"
    );
    assert_eq!(
        p(&operator, "review/approve", json!({"file_id": file})).status,
        200
    );
    assert_eq!(
        p(&s.admin, "deliveries", json!({"destination": "air"})).status,
        202
    );
    let r = s.call(
        "GET",
        &format!("/v1/assets/{promo}/approval"),
        Some(&editor),
        None,
    );
    assert_eq!(
        r.body["state"], "not_approved",
        "the asset itself was not reviewed: {}",
        r.body
    );

    // Notifications: every change reached the webhook and the mailbox.
    wait_for(Duration::from_secs(60), "webhooks", || {
        let n = hooked
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["event"] == "review")
            .count();
        (n >= 4).then_some(())
    });
    let got = hooked.lock().unwrap().clone();
    assert!(
        got.iter()
            .any(|v| v["review"]["state"] == "rejected" && v["by"] == "op"),
        "{got:?}"
    );
    assert!(
        got.iter().any(|v| v["event"] == "review_comment"),
        "{got:?}"
    );
    let text = wait_for(Duration::from_secs(60), "e-mails", || {
        let t = std::fs::read_to_string(&mails).unwrap_or_default();
        (t.contains("approved") && t.contains("rejected: audio drops")).then_some(t)
    });
    assert!(text.contains("mcr@example.org"), "{text}");
}

/// aiosmtpd that requires STARTTLS (a certificate made here for 127.0.0.1) and a login before
/// mail; each message it takes is written to `out` after a line saying whether TLS was on and
/// who logged in.
struct TlsSmtp {
    child: Child,
    port: u16,
}

impl TlsSmtp {
    fn start(dir: &Path, out: &Path, password: &str) -> TlsSmtp {
        let (cert, key) = (dir.join("relay.pem"), dir.join("relay.key"));
        let o = run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            // The relay's own certificate, trusted as itself (not a CA: webpki refuses those).
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert));
        assert!(o.status.success(), "openssl: {}", stderr(&o));
        let port = free_tcp_port();
        let script = r#"
import ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
cert, key, port, out, password = sys.argv[1:6]
class Sink:
    async def handle_DATA(self, server, session, envelope):
        with open(out, "a") as f:
            f.write("TLS %s LOGIN %s\n" % (session.ssl is not None, who["login"] if session.authenticated else None))
            f.write(envelope.content.decode() + "\n")
        return "250 OK"
who = {"login": None}
def check(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == b"antenne" and data.password == password.encode()
    if ok:
        who["login"] = data.login.decode()
    return AuthResult(success=ok, handled=False)
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
c = Controller(Sink(), hostname="127.0.0.1", port=int(port), tls_context=ctx,
               require_starttls=True, authenticator=check, auth_required=True,
               auth_require_tls=True)
c.start()
while True:
    time.sleep(3600)
"#;
        let child = Command::new(venv_bin("python"))
            .arg("-c")
            .arg(script)
            .arg(&cert)
            .arg(&key)
            .arg(port.to_string())
            .arg(out)
            .arg(password)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("smtp.err")).unwrap())
            .spawn()
            .unwrap();
        wait_for(Duration::from_secs(20), "aiosmtpd listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        TlsSmtp { child, port }
    }
}

impl Drop for TlsSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Review e-mail over STARTTLS with a login, to a relay that refuses anything less; a wrong
/// password fails the notification for good with the relay's answer, never with the password.
#[test]
fn review_mail_goes_over_starttls_with_a_login() {
    let d = tempfile::tempdir().unwrap();
    let password = "smtp-pw-7c1d-never-printed";
    let mails = d.path().join("mails.out");
    let smtp = TlsSmtp::start(d.path(), &mails, password);
    let (good, wrong) = (d.path().join("smtp.pw"), d.path().join("wrong.pw"));
    std::fs::write(&good, format!("{password}\n")).unwrap();
    std::fs::write(&wrong, "not-the-password-3e9a").unwrap();
    let review = |pw: &Path| {
        format!(
            "{{emails = [\"mcr@example.org\"], smtp = \"127.0.0.1:{}\", \
             mail_from = \"antenne@example.org\", smtp_starttls = true, smtp_user = \"antenne\", \
             smtp_password_file = {:?}, smtp_ca_file = {:?}}}",
            smtp.port,
            pw.to_str().unwrap(),
            d.path().join("relay.pem").to_str().unwrap()
        )
    };
    for (pw, ok) in [(&good, true), (&wrong, false)] {
        let s = Server::start(&[("ANTENNE_DELIVERY_REVIEW", review(pw))]);
        let a = s.admin.clone();
        let f = clip(d.path(), "r.mp4", 1);
        let r = s.raw(
            "POST",
            "/v1/ingest/upload?filename=r.mp4",
            Some(&a),
            Some(("application/octet-stream", std::fs::read(&f).unwrap())),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let asset = r.body["asset"]["id"].as_i64().unwrap();
        let r = s.call(
            "POST",
            &format!("/v1/assets/{asset}/review"),
            Some(&a),
            Some(&json!({})),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let job = wait_for(Duration::from_secs(60), "the mail job to end", || {
            let r = s.call("GET", "/v1/jobs?kind=notify&limit=10", Some(&a), None);
            r.body["items"]
                .as_array()
                .and_then(|v| v.first().cloned())
                .filter(|j| j["state"] == "succeeded" || j["state"] == "failed")
        });
        let mut seen = job.to_string();
        let logs = s.call(
            "GET",
            &format!("/v1/jobs/{}/logs", job["id"]),
            Some(&a),
            None,
        );
        seen.push_str(&logs.body.to_string());
        if ok {
            assert_eq!(job["state"], "succeeded", "{job}");
            let got = std::fs::read_to_string(&mails).unwrap();
            assert!(got.starts_with("TLS True LOGIN antenne\n"), "{got}");
            assert!(got.contains("Subject: [antenne]"), "{got}");
        } else {
            assert_eq!(job["state"], "failed", "{job}");
            assert_eq!(job["attempts"], 1, "a refused login is not retried: {job}");
            assert!(job["error"].as_str().unwrap().contains("535"), "{job}");
        }
        assert!(
            !seen.contains(password) && !seen.contains("not-the-password"),
            "{seen}"
        );
    }
}
