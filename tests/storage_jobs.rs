//! Jobs and storages together, through `antenne serve`: a transcode and a delivery (a workflow
//! step naming a declared destination) whose files were moved to the archive (SeaweedFS) bring
//! them back online by themselves before they run, waiting while the archive is down.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::live::wait_for;
use common::s3::{ACCESS_KEY, S3, SECRET_KEY};
use common::server::{clip, sha256_hex, Server};
use serde_json::{json, Value};

fn logs(s: &Server, job: i64) -> String {
    let r = s.call("GET", &format!("/v1/jobs/{job}/logs"), Some(&s.admin), None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.body.to_string()
}

fn offline(s: &Server) -> Value {
    let r = s.call("POST", "/v1/storages/policies/run", Some(&s.admin), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body["failures"].as_array().unwrap().is_empty(),
        "{}",
        r.body
    );
    r.body
}

/// The asset's deliveries once the newest has ended.
fn delivered(s: &Server, asset: i64, count: usize) -> Value {
    wait_for(Duration::from_secs(240), "the delivery to end", || {
        let r = s.call(
            "GET",
            &format!("/v1/assets/{asset}/deliveries"),
            Some(&s.admin),
            None,
        );
        let v = r.body.as_array().cloned().unwrap_or_default();
        (v.len() >= count && !["queued", "running"].contains(&v[0]["state"].as_str().unwrap_or("")))
            .then(|| v[0].clone())
    })
}

fn files_of(s: &Server, asset: i64) -> Vec<Value> {
    let r = s.call(
        "GET",
        &format!("/v1/assets/{asset}/files"),
        Some(&s.admin),
        None,
    );
    r.body["items"].as_array().unwrap().clone()
}

#[test]
fn jobs_bring_their_files_back_from_the_archive_before_they_run() {
    let Some(mut s3) = S3::start(&["vault"]) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("outbox");
    let wf = work.path().join("workflows");
    std::fs::create_dir_all(&wf).unwrap();
    std::fs::write(
        wf.join("send.toml"),
        "name = \"send\"\n[[steps]]\nkind = \"transcode\"\nprofiles = [\"proxy\"]\n\
         [[steps]]\nkind = \"deliver\"\ndestination = \"outbox\"\n",
    )
    .unwrap();
    std::fs::write(
        wf.join("resend.toml"),
        "name = \"resend\"\n[[steps]]\nkind = \"deliver\"\ndestination = \"outbox\"\n",
    )
    .unwrap();
    let env = vec![
        ("ANTENNE_JOBS_WORKFLOWS_DIR", wf.display().to_string()),
        (
            "ANTENNE_STORAGES_STORE",
            format!(
                r#"[{{ id = "vault", kind = "s3", role = "archive", endpoint = "{}", bucket = "vault", access_key_id = "{ACCESS_KEY}", secret_access_key_env = "VAULT_SECRET" }}]"#,
                s3.endpoint
            ),
        ),
        (
            "ANTENNE_STORAGES_POLICY",
            r#"[{ name = "offline", copy_to = ["vault"], move_from = ["media"], keep = 1 }]"#
                .into(),
        ),
        ("VAULT_SECRET", SECRET_KEY.into()),
        ("ANTENNE_STORAGES_WARN_PERCENT", "100".into()),
        ("ANTENNE_STORAGES_REFUSE_PERCENT", "100".into()),
        (
            "ANTENNE_DELIVERY_DESTINATIONS",
            format!(
                "[{{name = \"outbox\", kind = \"folder\", path = {:?}, \
                 naming = \"{{house_id}}_{{profile}}.{{ext}}\", manifests = [\"json\"]}}, \
                 {{name = \"playout\", kind = \"pull\", profiles = [\"proxy\"]}}]",
                out.to_str().unwrap()
            ),
        ),
    ];
    let s = Server::start(&env);
    let a = Some(s.admin.as_str());
    let f = clip(work.path(), "one.mp4", 3);
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
    let source = PathBuf::from(r.body["file"]["path"].as_str().unwrap());
    let house = r.body["asset"]["house_id"].as_str().unwrap().to_string();

    // The source goes to the archive: no online copy is left.
    let rep = offline(&s);
    assert_eq!(
        (rep["copied"].as_u64(), rep["dropped"].as_u64()),
        (Some(1), Some(1)),
        "{rep}"
    );
    assert!(!source.exists());
    let r = s.call("GET", &format!("/v1/files/{file}/copies"), a, None);
    assert!(!r.body.to_string().contains("\"media\""), "{}", r.body);

    // The archive is down when the workflow starts: its transcode waits for it, saying why.
    s3.stop();
    let r = s.call(
        "POST",
        "/v1/workflows/send/run",
        a,
        Some(&json!({"asset_id": asset})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let transcode = r.body["id"].as_i64().unwrap();
    let said = wait_for(
        Duration::from_secs(60),
        "the job to wait for the archive",
        || {
            let l = logs(&s, transcode);
            l.contains("waiting for its storage").then_some(l)
        },
    );
    assert!(
        said.contains("vault") && !said.contains(SECRET_KEY),
        "{said}"
    );
    assert!(!source.exists());
    // Back: the source is restored (verified), the transcode runs, the delivery step follows.
    s3.start_again();
    let d = delivered(&s, asset, 1);
    assert_eq!(d["state"], "delivered", "{d}");
    assert_eq!(d["destination"], "outbox");
    assert_eq!(sha256_hex(&source), original);
    let job = s
        .call("GET", &format!("/v1/jobs/{transcode}"), a, None)
        .body;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 1, "it waited, it did not fail: {job}");
    assert!(logs(&s, transcode).contains("restored to online"));
    let proxy = files_of(&s, asset)
        .into_iter()
        .find(|f| f["role"] == "proxy")
        .expect("a proxy was made");
    let sent = out.join(format!("{house}_proxy.mp4"));
    assert_eq!(sha256_hex(&sent), proxy["sha256"].as_str().unwrap());
    let m: Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{house}.manifest.json"))).unwrap())
            .unwrap();
    assert_eq!(m["files"][0]["sha256"], proxy["sha256"]);

    // Everything goes to the archive again; the delivery, asked again, brings the proxy back
    // before sending it.
    offline(&s);
    let proxy_path = PathBuf::from(proxy["path"].as_str().unwrap());
    assert!(!proxy_path.exists() && !source.exists());
    std::fs::remove_file(&sent).unwrap();
    let r = s.call(
        "POST",
        "/v1/workflows/resend/run",
        a,
        Some(&json!({"asset_id": asset})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let deliver = r.body["id"].as_i64().unwrap();
    let d = delivered(&s, asset, 2);
    assert_eq!(d["state"], "delivered", "{d}");
    assert!(
        logs(&s, deliver).contains("restored to online"),
        "{}",
        logs(&s, deliver)
    );
    assert_eq!(sha256_hex(&sent), proxy["sha256"].as_str().unwrap());
    assert!(proxy_path.exists());
    // What the delivery needed only: the source stays in the archive.
    assert!(!source.exists());
    assert!(!Path::new(&format!("{}.part", sent.display())).exists());

    // A playout server fetching a pull URL of a file moved to the archive gets it whole: the
    // file is brought back for the fetch.
    offline(&s);
    assert!(!proxy_path.exists());
    let r = s.call(
        "POST",
        &format!("/v1/assets/{asset}/deliveries"),
        a,
        Some(&json!({"destination": "playout"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let url = r.body["urls"][0]["url"].as_str().unwrap().to_string();
    let resp = ureq::get(&format!("{}{url}", s.base)).call().unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut got).unwrap();
    use sha2::Digest;
    let hex: String = sha2::Sha256::digest(&got)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hex, proxy["sha256"].as_str().unwrap());
}

#[test]
fn a_workflow_naming_an_undeclared_destination_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let wf = d.path().join("workflows");
    std::fs::create_dir_all(&wf).unwrap();
    std::fs::write(
        wf.join("x.toml"),
        "name = \"x\"\n[[steps]]\nkind = \"deliver\"\ndestination = \"nowhere\"\n",
    )
    .unwrap();
    let cfg = d.path().join("antenne.toml");
    std::fs::write(
        &cfg,
        format!("[jobs]\nworkflows_dir = {:?}\n", wf.to_str().unwrap()),
    )
    .unwrap();
    let o = common::run(common::antenne().arg("validate").arg("--config").arg(&cfg));
    assert!(!o.status.success());
    let e = common::stderr(&o);
    assert!(e.contains("no delivery destination \"nowhere\""), "{e}");
}
