//! Storage tiers against real peers: local folders and SeaweedFS (a real S3 server with checked
//! credentials). Copies by policy verified by reading back, bit rot found and repaired (the last
//! good copy never touched), a storage that disappears and comes back, an interrupted copy that
//! counts nothing, retention with holds, rights, the schedule hook and a grace period on an
//! injected clock, and secrets that appear nowhere.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use antenne::catalog::assets::{AssetInput, NewFile, RightsInput};
use antenne::catalog::{Catalog, Clock, OpenOptions, Principal, Role};
use antenne::config::storage::Storages as Cfg;
use antenne::naming::Template;
use antenne::storage::{ScheduleCheck, Storages, StoreError};
use common::s3::{ACCESS_KEY, S3, SECRET_KEY};
use sha2::{Digest, Sha256};

#[derive(Debug)]
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

const DAY: i64 = 86_400_000;
const T0: i64 = 1_780_000_000_000;

struct Env {
    _dir: tempfile::TempDir,
    media: PathBuf,
    nearline: PathBuf,
    catalog: Catalog,
    clock: Arc<TestClock>,
    who: Principal,
}

async fn env() -> Env {
    env_on("").await
}

/// The catalog on `url` (PostgreSQL), or SQLite in the data folder when empty.
async fn env_on(url: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock(AtomicI64::new(T0)));
    let catalog = Catalog::open(
        OpenOptions {
            url: url.to_string(),
            data_dir: dir.path().to_path_buf(),
            max_connections: 0,
            naming: Template::parse("{channel}-{yyyy}-{seq:06}").unwrap(),
            channel: "TST".into(),
            fields: Vec::new(),
        },
        clock.clone(),
    )
    .await
    .unwrap();
    let admin = catalog
        .create_user("root", "", Role::Admin, "root password 1")
        .await
        .unwrap();
    let who = Principal {
        user_id: admin.id,
        username: "root".into(),
        role: Role::Admin,
        groups: Arc::from(Vec::new()),
    };
    let media = dir.path().join("media");
    let nearline = dir.path().join("nearline");
    std::fs::create_dir_all(&media).unwrap();
    Env {
        _dir: dir,
        media,
        nearline,
        catalog,
        clock,
        who,
    }
}

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn bytes(seed: u8, n: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// An asset with one file written under the media root, as ingest does.
async fn ingest(e: &Env, name: &str, content: &[u8], tags: &[&str]) -> (i64, i64, PathBuf) {
    let dir = e.media.join("2026/06");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    let (a, f) = e
        .catalog
        .ingest(
            &e.who,
            &AssetInput {
                title: Some(name.into()),
                tags: Some(tags.iter().map(|t| t.to_string()).collect()),
                ..Default::default()
            },
            &NewFile {
                role: "source".into(),
                path: path.display().to_string(),
                size: content.len() as i64,
                sha256: sha(content),
                container: String::new(),
                video_codec: String::new(),
                width: 0,
                height: 0,
                duration_s: 0.0,
                technical: serde_json::json!({}),
                profile: String::new(),
                verification: None,
            },
            true,
        )
        .await
        .unwrap();
    (a.id, f.id, path)
}

fn config(e: &Env, s3: Option<&S3>, extra: &str) -> Cfg {
    let mut t = format!(
        r#"
        [[store]]
        id = "nearline"
        kind = "local"
        role = "nearline"
        path = "{}"
        "#,
        e.nearline.display()
    );
    if let Some(s3) = s3 {
        t.push_str(&format!(
            r#"
            [[store]]
            id = "vault"
            kind = "s3"
            role = "archive"
            endpoint = "{}"
            bucket = "vault"
            access_key_id = "{ACCESS_KEY}"
            secret_access_key_env = "TEST_VAULT_SECRET"
            audit_mb_s = 50.0
            "#,
            s3.endpoint
        ));
    }
    t.push_str(extra);
    let mut c: Cfg = toml::from_str(&t).unwrap();
    // The test machine's own disk may be nearly full: only the capacities set here count.
    c.warn_percent = 100.0;
    c.refuse_percent = 100.0;
    assert!(c.problems().is_empty(), "{:?}", c.problems());
    c
}

fn open(e: &Env, cfg: &Cfg) -> Storages {
    Storages::new(e.catalog.clone(), cfg, &e.media, &|k| {
        (k == "TEST_VAULT_SECRET").then(|| SECRET_KEY.to_string())
    })
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn no_secret(what: &str, text: &str) {
    assert!(
        !text.contains(SECRET_KEY),
        "the S3 secret appears in {what}: {text}"
    );
}

/// Three copies by policy (media, a folder, SeaweedFS), each read back; then one byte flipped in
/// the folder copy of one file, in the S3 object of another, and in the only copy of a third:
/// the audit finds all three, repairs the first two from good copies and verifies them, and
/// leaves the third untouched, reported. The storage then disappears and comes back.
#[test]
fn copies_bit_rot_repair_and_a_storage_that_disappears() {
    copies_bit_rot_repair_and_a_storage_that_disappears_on("");
}

/// The same on a PostgreSQL catalog: the copies, events and repairs' SQL there.
#[test]
fn copies_bit_rot_repair_and_a_storage_that_disappears_on_postgresql() {
    let pg = common::pg::Pg::start().expect("PostgreSQL installed (scripts/setup.sh)");
    copies_bit_rot_repair_and_a_storage_that_disappears_on(&pg.url);
}

fn copies_bit_rot_repair_and_a_storage_that_disappears_on(url: &str) {
    let Some(mut s3) = S3::start(&["vault"]) else {
        return;
    };
    rt().block_on(async {
        let e = env_on(url).await;
        let cfg = config(
            &e,
            Some(&s3),
            r#"
            [[policy]]
            name = "three-copies"
            select = { tag = "keep" }
            copy_to = ["nearline", "vault"]
            keep = 3
            "#,
        );
        let st = open(&e, &cfg);
        let (ca, cb, cc) = (bytes(1, 700_000), bytes(2, 9_500_000), bytes(3, 300_000));
        let (_, fa, _) = ingest(&e, "a.mxf", &ca, &["keep"]).await;
        let (_, fb, _) = ingest(&e, "b.mxf", &cb, &["keep"]).await;
        let (_, fc, pc) = ingest(&e, "c.mxf", &cc, &["scratch"]).await;

        let rep = st.run_policies().await.unwrap();
        assert_eq!(rep.copied, 4, "{rep:?}");
        assert!(rep.failures.is_empty(), "{rep:?}");
        for f in [fa, fb] {
            let copies = e.catalog.copies_of_file(f).await.unwrap();
            let mut on: Vec<_> = copies
                .iter()
                .filter(|c| c.state == "ok")
                .map(|c| c.storage.as_str())
                .collect();
            on.sort();
            assert_eq!(on, ["media", "nearline", "vault"]);
        }
        assert_eq!(e.catalog.copies_of_file(fc).await.unwrap().len(), 1);
        // The object in SeaweedFS, read by another client, is the file.
        let key_b = "2026/06/b.mxf";
        assert_eq!(sha(&s3.get("vault", key_b)), sha(&cb));
        assert_eq!(std::fs::read(e.nearline.join("2026/06/a.mxf")).unwrap(), ca);
        // Running again copies nothing more.
        assert_eq!(st.run_policies().await.unwrap().copied, 0);

        // Bit rot: one byte of the folder copy of a, of the S3 object of b, of the only copy of c.
        let flip = |p: &Path, at: usize| {
            let mut b = std::fs::read(p).unwrap();
            b[at] ^= 0x01;
            std::fs::write(p, b).unwrap();
        };
        flip(&e.nearline.join("2026/06/a.mxf"), 1234);
        let mut ob = s3.get("vault", key_b);
        ob[5_000_000] ^= 0x80;
        s3.put("vault", key_b, &ob);
        flip(&pc, 77);
        let rotten_c = std::fs::read(&pc).unwrap();

        let rep = st.audit(1000).await.unwrap();
        assert_eq!(rep.checked, 7, "{rep:?}");
        assert_eq!(
            (rep.bad, rep.missing, rep.read_errors),
            (3, 0, 0),
            "{rep:?}"
        );
        assert_eq!(rep.repaired, 2, "{rep:?}");
        assert_eq!(rep.unrepairable, vec![fc], "{rep:?}");
        assert_eq!(std::fs::read(e.nearline.join("2026/06/a.mxf")).unwrap(), ca);
        assert_eq!(sha(&s3.get("vault", key_b)), sha(&cb));
        assert_eq!(
            std::fs::read(&pc).unwrap(),
            rotten_c,
            "the only copy was touched"
        );
        let events = e.catalog.storage_events(0, 100).await.unwrap();
        let kinds = |k: &str| events.iter().filter(|v| v.kind == k).count();
        assert_eq!(
            (kinds("bad"), kinds("repaired"), kinds("unrepairable")),
            (3, 2, 1)
        );
        assert!(events
            .iter()
            .any(|v| v.kind == "bad" && v.storage == "vault" && v.file_id == Some(fb)));

        // A copy deleted behind our back is found missing and written again.
        std::fs::remove_file(e.nearline.join("2026/06/a.mxf")).unwrap();
        let rep = st.audit(1000).await.unwrap();
        assert_eq!((rep.missing, rep.repaired), (1, 1), "{rep:?}");
        assert_eq!(std::fs::read(e.nearline.join("2026/06/a.mxf")).unwrap(), ca);

        // SeaweedFS stops: its copies cannot be read (counted, reason given), the others are
        // audited as usual; a copy to it fails naming the storage; health says so.
        s3.stop();
        let rep = st.audit(1000).await.unwrap();
        assert_eq!(rep.read_errors, 2, "{rep:?}");
        assert_eq!(rep.ok, 4, "{rep:?}");
        let (_, fd, _) = ingest(&e, "d.mxf", &bytes(4, 100_000), &["keep"]).await;
        let rep = st.run_policies().await.unwrap();
        assert_eq!(rep.copied, 1, "the folder copy still happens: {rep:?}");
        assert_eq!(rep.failures.len(), 1, "{rep:?}");
        assert!(rep.failures[0].contains("vault"), "{rep:?}");
        let health = st.health().await.unwrap();
        let vault = health.iter().find(|h| h.id == "vault").unwrap();
        assert!(!vault.reachable && vault.error.as_deref().unwrap().contains("vault"));
        assert!(vault.read_errors >= 2);
        let shown = format!(
            "{}{}{:?}",
            serde_json::to_string(&health).unwrap(),
            serde_json::to_string(&e.catalog.storage_events(0, 1000).await.unwrap()).unwrap(),
            rep
        );
        no_secret("health, events and reports", &shown);
        no_secret("Debug of the storages", &format!("{st:?}{cfg:?}"));

        // It comes back: used again.
        s3.start_again();
        let rep = st.run_policies().await.unwrap();
        assert_eq!((rep.copied, rep.failures.len()), (1, 0), "{rep:?}");
        let copies = e.catalog.copies_of_file(fd).await.unwrap();
        assert_eq!(copies.iter().filter(|c| c.state == "ok").count(), 3);
        let rep = st.audit(1000).await.unwrap();
        assert_eq!((rep.read_errors, rep.bad), (0, 1), "{rep:?}");
        assert!(st.health().await.unwrap().iter().all(|h| h.reachable));

        // A folder storage removed (unmounted): reported, the rest goes on.
        std::fs::rename(&e.nearline, e.nearline.with_extension("gone")).unwrap();
        let h = st.health().await.unwrap();
        assert!(!h.iter().find(|h| h.id == "nearline").unwrap().reachable);
        let rep = st.audit(1000).await.unwrap();
        assert!(rep.ok >= 4, "{rep:?}");
    });
}

/// Wrong credentials: refused by SeaweedFS, and the error names the storage, not the secret.
#[test]
fn wrong_credentials_are_refused_without_showing_them() {
    let Some(s3) = S3::start(&["vault"]) else {
        return;
    };
    rt().block_on(async {
        let e = env().await;
        let cfg = config(&e, Some(&s3), "");
        let st = Storages::new(e.catalog.clone(), &cfg, &e.media, &|_| {
            Some("not-the-secret-at-all-123".into())
        })
        .unwrap();
        let err = st.store("vault").unwrap().reachable().await.unwrap_err();
        let msg = format!("{err} {err:?}");
        assert!(msg.contains("vault"), "{msg}");
        assert!(!msg.contains("not-the-secret-at-all-123"), "{msg}");
        let st = open(&e, &cfg);
        st.store("vault").unwrap().reachable().await.unwrap();
        let err = st
            .store("vault")
            .unwrap()
            .digest("no/such/key", None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Missing { .. }), "{err:?}");
        no_secret("an error", &format!("{err} {err:?}"));
    });
}

/// A copy cut short (its task aborted mid-write, as a kill would) leaves no copy counted and no
/// object under the key; the next run makes it whole.
#[test]
fn an_interrupted_copy_counts_nothing() {
    let Some(s3) = S3::start(&["vault"]) else {
        return;
    };
    rt().block_on(async {
        let e = env().await;
        let cfg = config(
            &e,
            Some(&s3),
            r#"
            [[policy]]
            name = "archive"
            copy_to = ["vault"]
            keep = 2
            "#,
        );
        let st = Arc::new(open(&e, &cfg));
        let content = bytes(9, 40_000_000);
        let (_, f, _) = ingest(&e, "big.mxf", &content, &[]).await;
        for wait_ms in [30u64, 120, 400] {
            let s = st.clone();
            let task = tokio::spawn(async move { s.run_policies().await });
            tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
            task.abort();
            let _ = task.await;
            let copies = e.catalog.copies_of_file(f).await.unwrap();
            assert!(
                copies.iter().all(|c| c.storage != "vault"),
                "an unverified copy counted after {wait_ms} ms: {copies:?}"
            );
        }
        let listed = st.store("vault").unwrap().list("").await.unwrap();
        assert!(
            listed.iter().all(|(_, size)| *size == content.len() as u64),
            "a partial object is visible: {listed:?}"
        );
        let rep = st.run_policies().await.unwrap();
        assert_eq!(rep.copied, 1, "{rep:?}");
        assert_eq!(sha(&s3.get("vault", "2026/06/big.mxf")), sha(&content));
    });
}

struct Scheduled(i64);

impl ScheduleCheck for Scheduled {
    fn is_scheduled(&self, asset_id: i64, _: i64) -> bool {
        asset_id == self.0
    }
}

/// Retention on an injected clock: the dry run lists what would go and how much it frees; a
/// purge before the grace period purges nothing; after it, the proposed assets go (every copy,
/// a tombstone with hashes kept) while held, licensed and scheduled ones stay.
#[test]
fn retention_dry_run_grace_holds_rights_and_schedule() {
    retention_dry_run_grace_holds_rights_and_schedule_on("");
}

/// The same on a PostgreSQL catalog: proposals, holds, rights, purge and tombstones there.
#[test]
fn retention_dry_run_grace_holds_rights_and_schedule_on_postgresql() {
    let pg = common::pg::Pg::start().expect("PostgreSQL installed (scripts/setup.sh)");
    retention_dry_run_grace_holds_rights_and_schedule_on(&pg.url);
}

fn retention_dry_run_grace_holds_rights_and_schedule_on(url: &str) {
    rt().block_on(async {
        let e = env_on(url).await;
        let cfg = config(
            &e,
            None,
            r#"
            [[policy]]
            name = "two"
            copy_to = ["nearline"]
            keep = 2
            [[retention]]
            name = "old-news"
            select = { tag = "news", older_than_days = 30 }
            grace_days = 7
            "#,
        );
        let (old, _, p_old) = ingest(&e, "old.mxf", &bytes(10, 50_000), &["news"]).await;
        let (held, _, _) = ingest(&e, "held.mxf", &bytes(11, 50_000), &["news"]).await;
        let (licensed, _, _) = ingest(&e, "lic.mxf", &bytes(12, 50_000), &["news"]).await;
        let (sched, _, _) = ingest(&e, "sched.mxf", &bytes(13, 50_000), &["news"]).await;
        let (other, _, _) = ingest(&e, "other.mxf", &bytes(14, 50_000), &["sport"]).await;
        let st = open(&e, &cfg).with_schedule(Arc::new(Scheduled(sched)));
        st.run_policies().await.unwrap();
        e.catalog
            .set_hold(held, "court case 12", "root")
            .await
            .unwrap();
        e.catalog
            .add_rights_window(
                &e.who,
                licensed,
                &RightsInput {
                    licensed_from: Some("2026-01-01".into()),
                    licensed_until: Some("2027-12-31".into()),
                    territories: vec![],
                    platforms: vec![],
                    note: String::new(),
                },
            )
            .await
            .unwrap();

        // Too young: nothing proposed.
        let rep = st.retention_dry_run().await.unwrap();
        assert!(rep.items.is_empty(), "{rep:?}");

        e.clock.0.fetch_add(40 * DAY, Ordering::SeqCst);
        let rep = st.retention_dry_run().await.unwrap();
        let ids: Vec<i64> = rep.items.iter().map(|i| i.asset_id).collect();
        assert_eq!(ids, vec![old], "{rep:?}");
        assert_eq!(rep.bytes, 100_000, "two copies of 50 kB: {rep:?}");
        let mut kept: Vec<_> = rep
            .kept
            .iter()
            .map(|k| (k.asset_id, k.why.as_str()))
            .collect();
        kept.sort();
        assert_eq!(
            kept,
            vec![
                (held, "legal_hold"),
                (licensed, "rights_window"),
                (sched, "scheduled")
            ]
        );

        // Inside the grace period: waits.
        e.clock.0.fetch_add(3 * DAY, Ordering::SeqCst);
        let rep = st.retention_purge("root").await.unwrap();
        assert!(rep.items.is_empty() && rep.waiting.len() == 1, "{rep:?}");
        assert!(p_old.exists());

        e.clock.0.fetch_add(5 * DAY, Ordering::SeqCst);
        let rep = st.retention_purge("root").await.unwrap();
        assert_eq!(
            rep.items.iter().map(|i| i.asset_id).collect::<Vec<_>>(),
            vec![old]
        );
        assert!(!p_old.exists());
        assert!(!e.nearline.join("2026/06/old.mxf").exists());
        let t = e
            .catalog
            .tombstone(old)
            .await
            .unwrap()
            .expect("a tombstone");
        assert_eq!(t["purged_by"], "root");
        assert_eq!(t["why"], "retention rule old-news");
        assert_eq!(t["files"][0]["sha256"], sha(&bytes(10, 50_000)));
        for id in [held, licensed, sched, other] {
            assert!(!e.catalog.files_of_asset(id).await.unwrap().is_empty());
        }
        // The hold lifted, the held asset is proposed anew (a fresh grace period).
        assert!(e.catalog.clear_hold(held).await.unwrap());
        let rep = st.retention_dry_run().await.unwrap();
        assert_eq!(
            rep.items.iter().map(|i| i.asset_id).collect::<Vec<_>>(),
            vec![held]
        );
        let rep = st.retention_purge("root").await.unwrap();
        assert!(rep.items.is_empty(), "{rep:?}");
    });
}

/// A storage that would pass its refuse threshold refuses the write before writing anything.
#[test]
fn a_full_storage_refuses_before_writing() {
    rt().block_on(async {
        let e = env().await;
        let mut cfg = config(
            &e,
            None,
            r#"
            [[policy]]
            name = "two"
            copy_to = ["nearline"]
            keep = 2
            "#,
        );
        cfg.store[0].capacity = Some(antenne::config::ByteSize(1_000_000));
        cfg.refuse_percent = 90.0;
        cfg.warn_percent = 50.0;
        let st = open(&e, &cfg);
        ingest(&e, "a.mxf", &bytes(20, 600_000), &[]).await;
        ingest(&e, "b.mxf", &bytes(21, 600_000), &[]).await;
        let rep = st.run_policies().await.unwrap();
        assert_eq!(rep.copied, 1, "{rep:?}");
        assert!(rep.failures[0].contains("too full"), "{rep:?}");
        assert!(!e.nearline.join("2026/06/b.mxf").exists());
        let h = st.health().await.unwrap();
        let n = h.iter().find(|h| h.id == "nearline").unwrap();
        assert_eq!(n.alert, "warn", "{n:?}");
        assert!(e
            .catalog
            .storage_events(0, 100)
            .await
            .unwrap()
            .iter()
            .any(|v| v.kind == "alert" && v.storage == "nearline"));
    });
}
