//! The catalog as a library, with an injected clock, on SQLite and PostgreSQL: token lifetimes,
//! password storage, and a change feed that a follower reads while many writers commit.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use antenne::catalog::assets::AssetInput;
use antenne::catalog::{Catalog, Clock, OpenOptions, Principal, Role};
use antenne::naming::Template;

#[derive(Debug)]
struct FakeClock(AtomicI64);

impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

async fn open(url: &str, dir: &std::path::Path, clock: Arc<FakeClock>) -> Catalog {
    Catalog::open(
        OpenOptions {
            url: url.to_string(),
            data_dir: dir.to_path_buf(),
            max_connections: 0,
            naming: Template::parse("{channel}-{yyyy}-{seq:06}").unwrap(),
            channel: "TST".into(),
            fields: Vec::new(),
        },
        clock,
    )
    .await
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

async fn tokens_expire_and_passwords_are_argon2id(c: &Catalog, clock: &FakeClock) {
    let u = c
        .create_user("ed", "Ed", Role::Editor, "correct horse battery")
        .await
        .unwrap();
    assert!(c
        .create_user("ed", "Ed", Role::Editor, "another password")
        .await
        .is_err());
    assert!(c
        .create_user("short", "", Role::Viewer, "short")
        .await
        .is_err());
    assert!(c
        .check_login("ed", "wrong password!")
        .await
        .unwrap()
        .is_none());
    assert!(c
        .check_login("nobody", "correct horse battery")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        c.check_login("ed", "correct horse battery")
            .await
            .unwrap()
            .unwrap()
            .id,
        u.id
    );
    let (secret, info) = c.issue_token(u.id, "api", "playout", 60_000).await.unwrap();
    assert!(secret.starts_with("ant_") && secret.len() > 60);
    assert_eq!(info.kind, "api");
    assert!(c.authenticate(&secret).await.unwrap().is_some());
    clock.0.fetch_add(59_000, Ordering::SeqCst);
    assert!(c.authenticate(&secret).await.unwrap().is_some());
    clock.0.fetch_add(2_000, Ordering::SeqCst);
    assert!(c.authenticate(&secret).await.unwrap().is_none(), "expired");
    let (s2, i2) = c
        .issue_token(u.id, "session", "login", 60_000)
        .await
        .unwrap();
    let who = c.authenticate(&s2).await.unwrap().unwrap().0;
    assert_eq!((who.role, who.username.as_str()), (Role::Editor, "ed"));
    c.revoke_token(&who, i2.id).await.unwrap();
    assert!(c.authenticate(&s2).await.unwrap().is_none(), "revoked");
    // A password change ends sessions but keeps API tokens; disabling ends both.
    let (api, _) = c.issue_token(u.id, "api", "x", 600_000).await.unwrap();
    let (ses, _) = c.issue_token(u.id, "session", "x", 600_000).await.unwrap();
    c.update_user(u.id, None, None, None, Some("a new long password"))
        .await
        .unwrap();
    assert!(c.authenticate(&ses).await.unwrap().is_none());
    assert!(c.authenticate(&api).await.unwrap().is_some());
    c.update_user(u.id, None, None, Some(true), None)
        .await
        .unwrap();
    assert!(c.authenticate(&api).await.unwrap().is_none());
    assert!(c
        .check_login("ed", "a new long password")
        .await
        .unwrap()
        .is_none());
}

async fn feed_follows_concurrent_writers(c: &Catalog) {
    let admin = c
        .create_user("root", "", Role::Admin, "root password 1")
        .await
        .unwrap();
    let who = Principal {
        user_id: admin.id,
        username: "root".into(),
        role: Role::Admin,
        groups: Arc::from(Vec::new()),
    };
    let start = c.change_head().await.unwrap();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (c, who) = (c.clone(), who.clone());
            tokio::spawn(async move {
                for i in 0..25 {
                    let a = AssetInput {
                        title: Some(format!("w{w} a{i}")),
                        ..Default::default()
                    };
                    c.create_asset(&who, &a).await.unwrap();
                }
            })
        })
        .collect();
    // A follower polls while they write: what it reads must never go back or skip.
    let follower = {
        let c = c.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut since = start;
            while seen.len() < 200 {
                let batch = c.changes(since, 7).await.unwrap();
                for ch in &batch {
                    assert!(ch.seq > since, "a change below the cursor appeared");
                    since = ch.seq;
                    if ch.object == "asset" {
                        seen.push(ch.id);
                    }
                }
                if batch.is_empty() {
                    tokio::task::yield_now().await;
                }
            }
            seen
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    let seen = tokio::time::timeout(std::time::Duration::from_secs(60), follower)
        .await
        .expect("the follower saw every change")
        .unwrap();
    let mut all: Vec<i64> = c
        .changes(start, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.object == "asset")
        .map(|c| c.id)
        .collect();
    assert_eq!(
        seen, all,
        "the follower saw the feed as it stands, in order"
    );
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 200);
}

#[test]
fn sqlite_catalog() {
    let d = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock(AtomicI64::new(1_800_000_000_000)));
    rt().block_on(async {
        let c = open("", d.path(), clock.clone()).await;
        tokens_expire_and_passwords_are_argon2id(&c, &clock).await;
        feed_follows_concurrent_writers(&c).await;
    });
    // WAL and synchronous=FULL on the embedded catalog.
    let o = std::process::Command::new("python3")
        .args([
            "-c",
            &format!(
                "import sqlite3; c = sqlite3.connect('{}'); print(c.execute('PRAGMA journal_mode').fetchone()[0]); \
                 print(c.execute(\"SELECT password_hash FROM users WHERE username = 'ed'\").fetchone()[0][:10])",
                d.path().join("catalog.db").display()
            ),
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("wal\n$argon2id$"), "{out}");
}

#[test]
fn postgres_catalog() {
    let pg = common::pg::Pg::start().expect("PostgreSQL installed (scripts/setup.sh)");
    let d = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock(AtomicI64::new(1_800_000_000_000)));
    rt().block_on(async {
        let c = open(&pg.url, d.path(), clock.clone()).await;
        tokens_expire_and_passwords_are_argon2id(&c, &clock).await;
        feed_follows_concurrent_writers(&c).await;
        // Migrations run once: a second appliance opening the same catalog changes nothing.
        let again = open(&pg.url, d.path(), clock.clone()).await;
        assert_eq!(again.user_count().await.unwrap(), 2);
    });
}

/// A scheduled retention run selects by age on the catalog's clock (no waiting for a
/// schedule): only assets created long enough ago are queued for purge, once per firing, and
/// not again while their purge job waits.
#[test]
fn retention_selects_by_age_on_the_injected_clock() {
    use antenne::jobs::supervisor::{Settings, Supervisor};
    use antenne::jobs::workflow::Workflow;
    use std::time::Duration;
    const DAY: i64 = 86_400_000;
    let d = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock(AtomicI64::new(1_800_000_000_000)));
    rt().block_on(async {
        let c = open("", d.path(), clock.clone()).await;
        let admin = c
            .create_user("root", "", Role::Admin, "root password 1")
            .await
            .unwrap();
        let who = Principal {
            user_id: admin.id,
            username: "root".into(),
            role: Role::Admin,
            groups: Arc::from(Vec::new()),
        };
        let asset = |title: &str| AssetInput {
            title: Some(title.into()),
            status: Some("ready".into()),
            tags: Some(vec!["expired".into()]),
            ..Default::default()
        };
        let old = c.create_asset(&who, &asset("old")).await.unwrap();
        clock.0.fetch_add(40 * DAY, Ordering::SeqCst);
        let young = c.create_asset(&who, &asset("young")).await.unwrap();
        clock.0.fetch_add(DAY, Ordering::SeqCst);
        let w: Workflow = toml::from_str(
            "name = \"retention\"\n[trigger]\nschedule = \"0 2 * * *\"\n\
             [trigger.select]\ntag = \"expired\"\nolder_than_days = 30\n\
             [[steps]]\nkind = \"purge\"\n",
        )
        .unwrap();
        let settings = Settings {
            appliance: "t".into(),
            slots: 1,
            light_slots: 0,
            hang: Duration::from_secs(60),
            memory_limit: 1 << 30,
            lease_ms: 60_000,
            data_dir: d.path().to_path_buf(),
            media_dir: d.path().join("media"),
            profiles_dir: None,
            backend: "software".into(),
            worker_exe: "/nonexistent".into(),
            gpus: Vec::new(),
            gpu_max_failures: 3,
            job_timeout: None,
        };
        let sup = Supervisor::new(c.clone(), vec![w.clone()], settings, who.clone());
        assert_eq!(sup.fire(&w, 1).await.unwrap(), 1);
        let purges = antenne::jobs::JobQueue::new(c.clone())
            .jobs(&antenne::jobs::JobFilter {
                kind: Some("purge".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(purges.len(), 1);
        assert_eq!(purges[0].asset_id, Some(old.id));
        assert_ne!(purges[0].asset_id, Some(young.id));
        // The same firing again (a restart, a second appliance): nothing new.
        assert_eq!(sup.fire(&w, 1).await.unwrap(), 0);
        // The next firing while the purge still waits: left for later.
        assert_eq!(sup.fire(&w, 2).await.unwrap(), 0);
        // Thirty days on, the young one is old enough too.
        clock.0.fetch_add(30 * DAY, Ordering::SeqCst);
        assert_eq!(sup.fire(&w, 3).await.unwrap(), 1);
    });
}

async fn titles(c: &Catalog, who: &Principal, q: &str) -> Vec<String> {
    let q = antenne::catalog::assets::SearchQuery {
        q: Some(q.into()),
        ..Default::default()
    };
    let mut t: Vec<String> = c
        .search(who, &q)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.title)
        .collect();
    t.sort();
    t
}

/// Every word is a prefix on SQLite through the dictionary of indexed words (a prefix becomes
/// the whole words it starts), with diacritics folded, in phrases and exclusions, for an
/// editor who reads few assets, and for a catalog indexed before the dictionary existed (filled
/// when it is opened).
#[test]
fn prefix_search_through_the_word_dictionary() {
    let d = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock(AtomicI64::new(1_800_000_000_000)));
    let principal = |user_id: i64, role: Role| Principal {
        user_id,
        username: String::new(),
        role,
        groups: Arc::from(Vec::new()),
    };
    rt().block_on(async {
        let c = open("", d.path(), clock.clone()).await;
        let admin = c
            .create_user("root", "", Role::Admin, "root password 1")
            .await
            .unwrap();
        let ed = c
            .create_user("ed", "", Role::Editor, "editor password 1")
            .await
            .unwrap();
        let (who, editor) = (
            principal(admin.id, Role::Admin),
            principal(ed.id, Role::Editor),
        );
        let asset = |t: &str| AssetInput {
            title: Some(t.into()),
            ..Default::default()
        };
        for t in [
            "Évening News",
            "Evening News rerun",
            "Eventide Special",
            "Late edition news",
        ] {
            c.create_asset(&who, &asset(t)).await.unwrap();
        }
        c.create_asset(&editor, &asset("Evening bulletin"))
            .await
            .unwrap();
        assert_eq!(
            titles(&c, &who, "even").await,
            vec![
                "Evening News rerun",
                "Evening bulletin",
                "Eventide Special",
                "Évening News"
            ]
        );
        assert_eq!(
            titles(&c, &who, "ÉVENING ne -rerun").await,
            vec!["Évening News"]
        );
        assert_eq!(
            titles(&c, &who, "\"evening ne\"").await,
            vec!["Evening News rerun", "Évening News"]
        );
        assert_eq!(titles(&c, &who, "late ed").await, vec!["Late edition news"]);
        assert!(titles(&c, &who, "eveningz").await.is_empty());
        assert_eq!(titles(&c, &editor, "even").await, vec!["Evening bulletin"]);
        // A word most assets hold, in another order than the newest first: the order's index
        // walked, each asset tested (past sqrt(250 × assets) matches), the same answer.
        let many: Vec<AssetInput> = (0..400)
            .map(|i| asset(&format!("Common item {:03}", (i * 7) % 400)))
            .collect();
        c.create_assets_bulk(&who, &many).await.unwrap();
        for (sort, first) in [("title", "Common item 000"), ("-title", "Common item 399")] {
            let q = antenne::catalog::assets::SearchQuery {
                q: Some("comm ite".into()),
                sort: Some(sort.into()),
                limit: Some(50),
                ..Default::default()
            };
            let got: Vec<String> = c
                .search(&who, &q)
                .await
                .unwrap()
                .into_iter()
                .map(|a| a.title)
                .collect();
            let mut want = got.clone();
            want.sort();
            if sort.starts_with('-') {
                want.reverse();
            }
            assert_eq!((got.len(), got[0].as_str()), (50, first), "{sort}");
            assert_eq!(got, want, "{sort}");
        }
        c.close().await;
    });
    // A catalog indexed before the dictionary: emptied behind the service's back, it is filled
    // again when opened.
    let o = std::process::Command::new("python3")
        .args([
            "-c",
            &format!(
                "import sqlite3; c = sqlite3.connect('{}'); c.execute('DELETE FROM search_terms'); \
                 c.commit(); print(c.execute('SELECT COUNT(*) FROM search_terms').fetchone()[0])",
                d.path().join("catalog.db").display()
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "0");
    rt().block_on(async {
        let c = open("", d.path(), clock.clone()).await;
        let who = principal(1, Role::Admin);
        assert_eq!(titles(&c, &who, "eventi").await, vec!["Eventide Special"]);
        c.close().await;
    });
    let o = std::process::Command::new("python3")
        .args([
            "-c",
            &format!(
                "import sqlite3; c = sqlite3.connect('{}'); \
                 print(c.execute(\"SELECT group_concat(term, ' ') FROM search_terms WHERE term \
                 LIKE 'even%'\").fetchone()[0])",
                d.path().join("catalog.db").display()
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "evening eventide",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
