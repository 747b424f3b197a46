//! The service over HTTP, as a control panel or MAM drives it: catalog conformance on SQLite and
//! PostgreSQL, the authorization matrix, abuse cases, events and shutdown.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use common::pg::Pg;
use common::server::{clip, sha256_hex, Server};
use serde_json::{json, Value};

const FIELDS: &str = r#"[{name = "genre", type = "choice", choices = ["news", "sport", "drama"]}, {name = "rating", type = "integer"}]"#;

fn start(url: Option<&str>, roots: &Path) -> Server {
    let mut env = vec![
        ("ANTENNE_CATALOG_FIELDS", FIELDS.to_string()),
        ("ANTENNE_INGEST_ROOTS", format!("[\"{}\"]", roots.display())),
        ("ANTENNE_INGEST_MAX_UPLOAD", "5M".to_string()),
    ];
    if let Some(u) = url {
        env.push(("ANTENNE_CATALOG_URL", u.to_string()));
    }
    Server::start(&env)
}

fn ids(v: &Value) -> Vec<i64> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect()
}

/// The same catalog behaviour, whatever the backend.
fn conformance(url: Option<&str>) {
    let media = tempfile::tempdir().unwrap();
    let s = start(url, media.path());
    let a = Some(s.admin.as_str());

    // House IDs from the template, unique and in sequence.
    let mut made = Vec::new();
    for (i, (title, genre, tags)) in [
        ("Evening News", "news", vec!["news", "Evening"]),
        ("Match of the Week", "sport", vec!["sport", "football"]),
        ("Harbour Lights episode 3", "drama", vec!["drama"]),
        ("Morning Newsflash", "news", vec!["news", "morning"]),
    ]
    .into_iter()
    .enumerate()
    {
        let r = s.call(
            "POST",
            "/v1/assets",
            a,
            Some(
                &json!({"title": title, "kind": if i == 1 { "programme" } else { "clip" },
                "description": format!("item {i}"), "custom": {"genre": genre, "rating": i},
                "tags": tags, "series": if i == 2 { "Harbour Lights" } else { "" }}),
            ),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        made.push(r.body.clone());
    }
    let house: Vec<&str> = made
        .iter()
        .map(|a| a["house_id"].as_str().unwrap())
        .collect();
    let year = &made[0]["created"].as_str().unwrap()[..4];
    for (i, h) in house.iter().enumerate() {
        assert_eq!(*h, format!("ANT-{year}-{:06}", i + 1));
    }
    assert_eq!(made[0]["tags"], json!(["evening", "news"]));
    assert_eq!(made[0]["custom"]["genre"], "news");

    // Text the database cannot hold is refused the same way on both backends.
    let r = s.call("POST", "/v1/assets", a, Some(&json!({"title": "a\u{0}b"})));
    assert_eq!((r.status, r.code()), (422, "invalid_field"), "{}", r.body);
    let r = s.call("GET", "/v1/search?status=%00&q=%00", a, None);
    assert!(r.status == 200 || r.status == 422, "{}", r.status);
    let r = s.call(
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({"username": "\u{0}", "password": "x"})),
    );
    assert_eq!(r.status, 401);

    // Custom fields are typed; unknown ones are refused.
    for (custom, field) in [
        (json!({"genre": "opera"}), "custom.genre"),
        (json!({"rating": "high"}), "custom.rating"),
        (json!({"colour": "red"}), "custom.colour"),
    ] {
        let r = s.call(
            "POST",
            "/v1/assets",
            a,
            Some(&json!({"title": "x", "custom": custom})),
        );
        assert_eq!((r.status, r.code()), (422, "invalid_field"), "{}", r.body);
        assert_eq!(r.body["error"]["field"], field);
    }

    // Full-text search: prefixes, every word, custom fields and tags included.
    let search = |q: &str| ids(&s.call("GET", &format!("/v1/search?{q}"), a, None).body);
    let (e, m, h, mo) = (
        made[0]["id"].as_i64().unwrap(),
        made[1]["id"].as_i64().unwrap(),
        made[2]["id"].as_i64().unwrap(),
        made[3]["id"].as_i64().unwrap(),
    );
    assert_eq!(search("q=news"), vec![mo, e]);
    assert_eq!(search("q=new*"), vec![mo, e], "prefix");
    assert_eq!(search("q=new"), vec![mo, e], "every word is a prefix");
    assert_eq!(search("q=even&tag=news"), vec![e], "as the README has it");
    assert_eq!(search("q=Even%20NEWS"), vec![e]);
    assert_eq!(search("q=evening%20news"), vec![e]);
    // Phrases: the words in that order, the last a prefix.
    assert_eq!(search("q=%22evening%20news%22"), vec![e]);
    assert_eq!(search("q=%22evening%20new%22"), vec![e]);
    assert!(search("q=%22news%20evening%22").is_empty(), "order matters");
    assert!(search("q=%22item%20evening%22").is_empty());
    // Exclusions, with words and alone.
    assert_eq!(search("q=news%20-morning"), vec![e]);
    assert_eq!(search("q=new%20-%22morning%20newsflash%22"), vec![e]);
    assert_eq!(search("q=-drama%20-sport"), vec![mo, e]);
    assert_eq!(
        search("q=-mor"),
        vec![h, m, e],
        "an exclusion is a prefix too"
    );
    // Totals: exact when small.
    let r = s.call("GET", "/v1/search?q=news&limit=1", a, None);
    assert_eq!(ids(&r.body), vec![mo]);
    assert_eq!(r.body["total"], json!({"value": 2, "exact": true}));
    let r = s.call("GET", "/v1/search?q=-drama", a, None);
    assert_eq!(r.body["total"], json!({"value": 3, "exact": true}));
    // Sorting, and paging in that order.
    assert_eq!(search("sort=title"), vec![e, h, m, mo]);
    assert_eq!(search("sort=-title"), vec![mo, m, h, e]);
    assert_eq!(search("sort=title&q=news"), vec![e, mo]);
    assert_eq!(search("sort=created"), vec![mo, h, m, e]);
    for sort in [
        "title",
        "-title",
        "date",
        "-date",
        "duration",
        "-duration",
        "updated",
        "-updated",
    ] {
        let all = search(&format!("sort={sort}"));
        assert_eq!(all.len(), 4, "{sort}");
        let mut paged = Vec::new();
        let mut next = String::new();
        loop {
            let r = s.call(
                "GET",
                &format!("/v1/search?sort={sort}&limit=1{next}"),
                a,
                None,
            );
            assert_eq!(r.status, 200, "{}", r.body);
            paged.extend(ids(&r.body));
            match r.body["next"].as_str() {
                Some(n) => next = format!("&after={n}"),
                None => break,
            }
            assert!(paged.len() <= 4, "{sort}: {paged:?}");
        }
        assert_eq!(paged, all, "{sort}: pages in order");
        assert_eq!(
            s.call("GET", &format!("/v1/search?sort={sort}&limit=1"), a, None)
                .body["total"],
            json!({"value": 4, "exact": true})
        );
    }
    let r = s.call("GET", "/v1/search?sort=colour", a, None);
    assert_eq!((r.status, r.code()), (422, "invalid_field"), "{}", r.body);
    assert_eq!(r.body["error"]["field"], "sort");
    // The latest change first.
    let r = s.call(
        "PATCH",
        &format!("/v1/assets/{m}"),
        a,
        Some(&json!({"episode": "2"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(search("sort=-updated")[0], m);
    assert_eq!(search("sort=date&q=-x"), search("sort=date"));
    assert_eq!(search("q=football"), vec![m], "tags are searched");
    assert_eq!(search("q=drama"), vec![h], "custom fields are searched");
    assert_eq!(search("q=harbour&kind=clip"), vec![h]);
    assert_eq!(search("q=even*%20news"), vec![e]);
    assert_eq!(search("q=news&tag=morning"), vec![mo]);
    assert_eq!(search("kind=programme"), vec![m]);
    assert!(
        search("q=%22%20OR%20*").is_empty(),
        "operators are words, not syntax"
    );
    assert_eq!(search("created_from=2000-01-01").len(), 4);
    assert!(search("created_to=2000-01-01").is_empty());
    let r = s.call("GET", "/v1/search?created_from=yesterday", a, None);
    assert_eq!((r.status, r.code()), (422, "invalid_field"));

    // Paging: every asset once, newest first.
    let mut seen = Vec::new();
    let mut next = String::new();
    loop {
        let r = s.call("GET", &format!("/v1/assets?limit=3{next}"), a, None);
        seen.extend(ids(&r.body));
        match r.body["next"].as_str() {
            Some(n) => next = format!("&after={n}"),
            None => break,
        }
    }
    assert_eq!(seen, vec![mo, h, m, e]);

    // Optimistic concurrency and the lost update.
    let r = s.call(
        "PATCH",
        &format!("/v1/assets/{e}"),
        a,
        Some(&json!({"description": "v2", "version": 1})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["version"], 2);
    let r = s.call(
        "PATCH",
        &format!("/v1/assets/{e}"),
        a,
        Some(&json!({"description": "v2b", "version": 1})),
    );
    assert_eq!((r.status, r.code()), (409, "conflict"));
    let r = s.call(
        "PATCH",
        &format!("/v1/assets/{e}"),
        a,
        Some(&json!({"house_id": "X-1"})),
    );
    assert_eq!(r.status, 422);

    // Ingest from a root: probed, hashed, recorded; the same content again is a duplicate.
    let f1 = clip(media.path(), "promo one.mp4", 1);
    let r = s.call(
        "POST",
        "/v1/ingest",
        a,
        Some(&json!({"path": f1, "asset": {"kind": "promo"}})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let promo = r.body["asset"]["id"].as_i64().unwrap();
    assert_eq!(r.body["asset"]["title"], "promo one");
    let file = &r.body["file"];
    assert_eq!(file["sha256"], sha256_hex(&f1));
    assert_eq!(file["size"], std::fs::metadata(&f1).unwrap().len());
    assert_eq!(file["video_codec"], "h264");
    assert_eq!(
        (file["width"].as_i64(), file["height"].as_i64()),
        (Some(320), Some(180))
    );
    assert_eq!(file["technical"]["audio"][0]["codec"], "aac");
    let r = s.call("POST", "/v1/ingest", a, Some(&json!({"path": f1})));
    assert_eq!((r.status, r.code()), (409, "duplicate"), "{}", r.body);
    assert_eq!(search("codec=h264&min_height=180"), vec![promo]);
    assert!(search("codec=h264&min_height=720").is_empty());

    // Upload: streamed, hashed while it arrives; a duplicate upload leaves nothing behind.
    let bytes = std::fs::read(&f1).unwrap();
    let r = s.raw(
        "POST",
        "/v1/ingest/upload?filename=promo%20one.mp4",
        a,
        Some(("application/octet-stream", bytes)),
    );
    assert_eq!((r.status, r.code()), (409, "duplicate"));
    let f2 = clip(media.path(), "two.mp4", 2);
    let bytes2 = std::fs::read(&f2).unwrap();
    let r = s.raw(
        "POST",
        "/v1/ingest/upload?filename=..%2F..%2Ftwo.mp4&title=Upload%20two",
        a,
        Some(("application/octet-stream", bytes2.clone())),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let up = r.body["file"].clone();
    assert_eq!(up["sha256"], sha256_hex(&f2));
    let stored = Path::new(up["path"].as_str().unwrap());
    assert!(
        stored.starts_with(s.data_dir().join("media")),
        "{}",
        stored.display()
    );
    assert_eq!(std::fs::read(stored).unwrap(), bytes2);
    let r = s.raw("GET", &format!("/v1/files/{}/content", up["id"]), a, None);
    assert_eq!(r.status, 200);
    // Not media: refused, nothing kept.
    let r = s.raw(
        "POST",
        "/v1/ingest/upload?filename=notes.txt",
        a,
        Some(("application/octet-stream", b"not media at all".to_vec())),
    );
    assert_eq!((r.status, r.code()), (422, "not_media"));
    let leftovers: Vec<_> = walk(&s.data_dir().join("media"))
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with("-two.mp4"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "{leftovers:?} {:?}",
        walk(&s.data_dir().join("media"))
    );

    // A rendition registered with its verification report beside it keeps profile and verdict.
    let f3 = clip(media.path(), "proxy.mp4", 5);
    std::fs::write(
        media.path().join("proxy.mp4.verify.json"),
        json!({"file": "proxy.mp4", "profile": "proxy", "output": "proxy", "pass": true, "checks": []}).to_string(),
    )
    .unwrap();
    let r = s.call(
        "POST",
        &format!("/v1/assets/{m}/files"),
        a,
        Some(&json!({"path": f3, "role": "proxy"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        (
            r.body["profile"].as_str(),
            r.body["verification"]["pass"].as_bool()
        ),
        (Some("proxy"), Some(true))
    );
    let r = s.call(
        "POST",
        &format!("/v1/assets/{m}/files"),
        a,
        Some(&json!({"path": f3, "role": "thumbnail"})),
    );
    assert_eq!(r.status, 409, "the same content again: {}", r.body);
    let r = s.call(
        "POST",
        &format!("/v1/assets/{m}/files"),
        a,
        Some(&json!({"path": f3, "role": "thumbnail", "allow_duplicate": true})),
    );
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (422, Some("role"))
    );

    // Rights windows.
    let r = s.call("POST", &format!("/v1/assets/{m}/rights"), a, Some(&json!({"licensed_from": "2020-01-01", "licensed_until": "2099-01-01", "territories": ["GB", "IE"], "platforms": ["linear", "web"]})));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["active"], true);
    let r = s.call(
        "POST",
        &format!("/v1/assets/{m}/rights"),
        a,
        Some(&json!({"licensed_from": "2030-01-01", "licensed_until": "2029-01-01"})),
    );
    assert_eq!(r.status, 422);
    let r = s.call("GET", &format!("/v1/assets/{m}"), a, None);
    assert_eq!(
        r.body["rights_windows"][0]["territories"],
        json!(["GB", "IE"])
    );

    // Collections and the collection filter.
    let r = s.call(
        "POST",
        "/v1/collections",
        a,
        Some(&json!({"name": "Autumn promos"})),
    );
    assert_eq!(r.status, 201);
    let coll = r.body["id"].as_i64().unwrap();
    for id in [promo, m] {
        assert_eq!(
            s.call(
                "PUT",
                &format!("/v1/collections/{coll}/assets/{id}"),
                a,
                None
            )
            .status,
            204
        );
    }
    assert_eq!(search(&format!("collection={coll}")), vec![promo, m]);
    assert_eq!(
        s.call("GET", &format!("/v1/collections/{coll}"), a, None)
            .body["assets"],
        2
    );
    let r = s.call("GET", "/v1/tags", a, None);
    assert_eq!(r.body["items"][0], json!({"tag": "news", "assets": 2}));

    // Purge.
    assert_eq!(
        s.call("DELETE", &format!("/v1/assets/{h}"), a, None).status,
        204
    );
    assert_eq!(
        s.call("GET", &format!("/v1/assets/{h}"), a, None).body["status"],
        "purged"
    );
    assert!(!search("").contains(&h));

    // The change feed: in order, each change once, resumable from any cursor.
    let mut all = Vec::new();
    let mut since = 0;
    loop {
        let r = s.call(
            "GET",
            &format!("/v1/changes?since={since}&limit=7"),
            a,
            None,
        );
        let c = r.body["changes"].as_array().unwrap().clone();
        if c.is_empty() {
            assert_eq!(r.body["next"], since);
            break;
        }
        since = r.body["next"].as_i64().unwrap();
        all.extend(c);
    }
    let seqs: Vec<i64> = all.iter().map(|c| c["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let asset_created = all
        .iter()
        .filter(|c| c["object"] == "asset" && c["op"] == "created")
        .count();
    assert_eq!(asset_created, 6, "4 created + 2 ingested");
    assert!(all
        .iter()
        .any(|c| c["object"] == "asset" && c["op"] == "deleted" && c["id"] == h));

    // Metrics in the Prometheus text format.
    let r = s.raw("GET", "/metrics", a, None);
    assert_eq!(r.status, 200);
    let text = ureq::get(&format!("{}/metrics", s.base))
        .set("authorization", &format!("Bearer {}", s.admin))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(text.contains("antenne_http_requests_total{"), "{text}");
    assert!(
        text.contains("antenne_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(text.contains("antenne_catalog_assets 5"), "{text}");

    // The audit log holds every mutating call and its chain is intact.
    let r = s.call("GET", "/v1/audit/verify", a, None);
    assert_eq!(r.body["intact"], true, "{}", r.body);
    assert!(r.body["entries"].as_i64().unwrap() > 20);
    let r = s.call("GET", "/v1/audit?limit=500", a, None);
    let entries = r.body["items"].as_array().unwrap();
    assert!(entries
        .iter()
        .any(|e| e["action"] == "PATCH /v1/assets/{id}"
            && e["result"] == "refused 409"
            && e["actor"] == "admin"));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn catalog_conformance_sqlite() {
    conformance(None);
}

#[test]
fn catalog_conformance_postgres() {
    let Some(pg) = Pg::start() else {
        panic!("PostgreSQL is not installed: run scripts/setup.sh (apt install postgresql)");
    };
    conformance(Some(&pg.url));
}

/// Two appliances on one PostgreSQL catalog: one sees what the other writes, house IDs never
/// collide, and the change feed of either lists both without gaps.
#[test]
fn two_appliances_share_a_postgres_catalog() {
    let pg = Pg::start().expect("PostgreSQL installed");
    let media = tempfile::tempdir().unwrap();
    let s1 = start(Some(&pg.url), media.path());
    let s2 = start(Some(&pg.url), media.path());
    let handles: Vec<_> = [&s1, &s2]
        .into_iter()
        .map(|s| {
            let (base, tok) = (s.base.clone(), s.admin.clone());
            std::thread::spawn(move || {
                (0..15)
                    .map(|i| {
                        let r = ureq::post(&format!("{base}/v1/assets"))
                            .set("authorization", &format!("Bearer {tok}"))
                            .send_json(json!({"title": format!("t{i}")}))
                            .unwrap();
                        r.into_json::<Value>().unwrap()["house_id"]
                            .as_str()
                            .unwrap()
                            .to_string()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut house: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    house.sort();
    house.dedup();
    assert_eq!(house.len(), 30, "house IDs are unique across appliances");
    let r = s2.call("GET", "/v1/changes?limit=1000", Some(&s2.admin), None);
    let n = r.body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["object"] == "asset")
        .count();
    assert_eq!(n, 30);
    assert_eq!(
        ids(&s1
            .call("GET", "/v1/assets?limit=500", Some(&s1.admin), None)
            .body)
        .len(),
        30
    );
}

/// Roles × groups × access-list states × routes.
#[test]
fn authorization_matrix() {
    let media = tempfile::tempdir().unwrap();
    let s = start(None, media.path());
    let admin = Some(s.admin.as_str());
    let (owner_id, owner) = s.user("owner", "editor");
    let (other_id, other) = s.user("other", "editor");
    let (viewer_id, viewer) = s.user("viewer", "viewer");
    let (_, member) = s.user("member", "viewer");
    let (_, operator) = s.user("operator", "operator");
    let (_, service) = s.user("service", "service");
    let (_, outsider) = s.user("outsider", "viewer");
    let group = s
        .call(
            "POST",
            "/v1/groups",
            admin,
            Some(&json!({"name": "promo-desk"})),
        )
        .body["id"]
        .as_i64()
        .unwrap();
    let member_id = s.call("GET", "/v1/users/me", Some(&member), None).body["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        s.call(
            "PUT",
            &format!("/v1/groups/{group}/members/{member_id}"),
            admin,
            None
        )
        .status,
        200
    );
    // Tokens issued before joining the group see it at once.
    let f = clip(media.path(), "m.mp4", 7);

    // Asset states, all owned by `owner`.
    let mk = |title: &str| -> i64 {
        let r = s.call(
            "POST",
            "/v1/assets",
            Some(&owner),
            Some(&json!({"title": title})),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["id"].as_i64().unwrap()
    };
    let private = mk("private");
    let to_viewer = mk("granted to viewer");
    let to_group = mk("granted to group");
    let via_coll = mk("in a shared collection");
    let to_other_rw = mk("write for other");
    let put_acl = |id: i64, grants: Value| {
        let r = s.call(
            "PUT",
            &format!("/v1/assets/{id}/acl"),
            Some(&owner),
            Some(&json!({"grants": grants})),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    };
    put_acl(
        to_viewer,
        json!([{"principal": "user", "id": viewer_id, "perms": ["read"]}]),
    );
    put_acl(
        to_group,
        json!([{"principal": "group", "id": group, "perms": ["read", "download"]}]),
    );
    put_acl(
        to_other_rw,
        json!([{"principal": "user", "id": other_id, "perms": ["read", "write"]}, {"principal": "user", "id": viewer_id, "perms": ["read", "write", "delete"]}]),
    );
    let coll = s
        .call(
            "POST",
            "/v1/collections",
            Some(&owner),
            Some(&json!({"name": "shared"})),
        )
        .body["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        s.call(
            "PUT",
            &format!("/v1/collections/{coll}/assets/{via_coll}"),
            Some(&owner),
            None
        )
        .status,
        204
    );
    let r = s.call("PUT", &format!("/v1/collections/{coll}/acl"), Some(&owner), Some(&json!({"grants": [{"principal": "group", "id": group, "perms": ["read"]}, {"principal": "user", "id": other_id, "perms": ["read", "download"]}]})));
    assert_eq!(r.status, 200, "{}", r.body);
    // A file on each asset, for downloads.
    for (i, id) in [private, to_viewer, to_group, via_coll, to_other_rw]
        .into_iter()
        .enumerate()
    {
        let copy = media.path().join(format!("c{i}.mp4"));
        std::fs::copy(&f, &copy).unwrap();
        let r = s.call(
            "POST",
            &format!("/v1/assets/{id}/files"),
            admin,
            Some(&json!({"path": copy, "allow_duplicate": true})),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let file_of = |id: i64| -> i64 {
        s.call("GET", &format!("/v1/assets/{id}/files"), admin, None)
            .body["items"][0]["id"]
            .as_i64()
            .unwrap()
    };

    // Expected status of: GET asset, GET file content, PATCH asset, PUT acl.
    // 404 = cannot see (same answer as a missing asset), 403 = sees but may not.
    type Row = (&'static str, i64, [u16; 4]);
    let users: Vec<(&str, &str)> = vec![
        ("admin", s.admin.as_str()),
        ("owner", &owner),
        ("other", &other),
        ("viewer", &viewer),
        ("member", &member),
        ("operator", &operator),
        ("service", &service),
        ("outsider", &outsider),
    ];
    let expect: Vec<(&str, Vec<Row>)> = vec![
        (
            "admin",
            vec![
                ("private", private, [200, 200, 200, 200]),
                ("group", to_group, [200, 200, 200, 200]),
            ],
        ),
        (
            "owner",
            vec![
                ("private", private, [200, 200, 200, 200]),
                ("coll", via_coll, [200, 200, 200, 200]),
            ],
        ),
        (
            "other",
            vec![
                ("private", private, [404, 404, 404, 404]),
                ("viewer", to_viewer, [404, 404, 404, 404]),
                ("coll", via_coll, [200, 200, 403, 403]),
                ("rw", to_other_rw, [200, 403, 200, 403]),
            ],
        ),
        (
            "viewer",
            vec![
                ("private", private, [404, 404, 404, 404]),
                ("viewer", to_viewer, [200, 403, 403, 403]),
                ("group", to_group, [404, 404, 404, 404]),
                // A viewer's role caps what a grant gives: no write even when granted.
                ("rw", to_other_rw, [200, 403, 403, 403]),
            ],
        ),
        (
            "member",
            vec![
                ("private", private, [404, 404, 404, 404]),
                ("group", to_group, [200, 200, 403, 403]),
                ("coll", via_coll, [200, 403, 403, 403]),
                ("viewer", to_viewer, [404, 404, 404, 404]),
            ],
        ),
        (
            "operator",
            vec![
                ("private", private, [200, 200, 403, 403]),
                ("group", to_group, [200, 200, 403, 403]),
            ],
        ),
        ("service", vec![("private", private, [200, 200, 200, 403])]),
        (
            "outsider",
            vec![
                ("private", private, [404, 404, 404, 404]),
                ("group", to_group, [404, 404, 404, 404]),
                ("coll", via_coll, [404, 404, 404, 404]),
            ],
        ),
    ];
    let missing = 9_999_999;
    for (name, rows) in &expect {
        let tok = users.iter().find(|(n, _)| n == name).unwrap().1;
        for (label, id, want) in rows {
            let got = [
                s.call("GET", &format!("/v1/assets/{id}"), Some(tok), None)
                    .status,
                s.raw(
                    "GET",
                    &format!("/v1/files/{}/content", file_of(*id)),
                    Some(tok),
                    None,
                )
                .status,
                s.call(
                    "PATCH",
                    &format!("/v1/assets/{id}"),
                    Some(tok),
                    Some(&json!({"description": format!("by {name}")})),
                )
                .status,
                s.call(
                    "PUT",
                    &format!("/v1/assets/{id}/acl"),
                    Some(tok),
                    Some(&json!({"grants": []})),
                )
                .status,
            ];
            assert_eq!(
                &got, want,
                "{name} on {label}: GET, download, PATCH, PUT acl"
            );
            // Restore the grants a successful PUT acl just removed.
            if got[3] == 200 && *id == to_group {
                put_acl(
                    to_group,
                    json!([{"principal": "group", "id": group, "perms": ["read", "download"]}]),
                );
            }
        }
        // A missing asset answers like a hidden one.
        let r = s.call("GET", &format!("/v1/assets/{missing}"), Some(tok), None);
        assert_eq!((r.status, r.code()), (404, "not_found"));
        // Listing shows exactly the readable assets.
        let listed = ids(&s.call("GET", "/v1/assets?limit=500", Some(tok), None).body);
        for (label, id, want) in rows {
            assert_eq!(listed.contains(id), want[0] == 200, "{name} lists {label}?");
        }
    }
    // Collections share for reading only, and only an asset's owner puts it in one.
    let mine = s
        .call(
            "POST",
            "/v1/collections",
            Some(&other),
            Some(&json!({"name": "mine"})),
        )
        .body["id"]
        .as_i64()
        .unwrap();
    let r = s.call(
        "PUT",
        &format!("/v1/collections/{mine}/assets/{via_coll}"),
        Some(&other),
        None,
    );
    assert_eq!((r.status, r.code()), (403, "forbidden"), "{}", r.body);
    let r = s.call(
        "PUT",
        &format!("/v1/collections/{mine}/assets/{private}"),
        Some(&operator),
        None,
    );
    assert_eq!(
        r.status, 403,
        "an operator reads every collection but writes none it is not granted"
    );
    let r = s.call("PUT", &format!("/v1/collections/{coll}/acl"), Some(&owner), Some(&json!({"grants": [{"principal": "user", "id": other_id, "perms": ["read", "write", "delete"]}]})));
    assert_eq!(r.status, 200);
    assert_eq!(
        s.call(
            "PATCH",
            &format!("/v1/assets/{via_coll}"),
            Some(&other),
            Some(&json!({"title": "mine now"}))
        )
        .status,
        403
    );
    assert_eq!(
        s.call(
            "DELETE",
            &format!("/v1/assets/{via_coll}"),
            Some(&other),
            None
        )
        .status,
        403
    );
    // Group membership is for admins to see.
    assert_eq!(
        s.call("GET", &format!("/v1/groups/{group}"), Some(&member), None)
            .body["members"],
        json!([])
    );
    assert_eq!(
        s.call("GET", &format!("/v1/groups/{group}"), admin, None)
            .body["members"],
        json!([member_id])
    );

    // Text search shows a restricted user only what they may read.
    let found = |tok: &str, q: &str| {
        ids(&s
            .call("GET", &format!("/v1/search?q={q}"), Some(tok), None)
            .body)
    };
    assert_eq!(found(&viewer, "granted"), vec![to_viewer]);
    assert_eq!(found(&member, "granted"), vec![to_group]);
    assert_eq!(found(&owner, "gran*"), vec![to_group, to_viewer]);
    assert!(found(&outsider, "granted").is_empty());
    let tags = |tok: &str| {
        s.call("GET", "/v1/tags", Some(tok), None).body["items"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(tags(&outsider), 0, "tags of hidden assets are hidden too");

    let purged_id = mk("to delete");
    put_acl(
        purged_id,
        json!([{"principal": "user", "id": viewer_id, "perms": ["read", "delete"]}, {"principal": "user", "id": other_id, "perms": ["read"]}]),
    );

    // Role-only routes.
    for (name, tok) in &users {
        let admin_only = [
            s.call("GET", "/v1/users", Some(tok), None).status,
            s.call("GET", "/v1/audit", Some(tok), None).status,
            s.call(
                "POST",
                "/v1/groups",
                Some(tok),
                Some(&json!({"name": format!("g-{name}")})),
            )
            .status,
        ];
        let want = if *name == "admin" {
            [200, 200, 201]
        } else {
            [403, 403, 403]
        };
        assert_eq!(admin_only, want, "{name}: users, audit, groups");
        let feed = s.call("GET", "/v1/changes", Some(tok), None).status;
        let want = if ["admin", "operator", "service"].contains(name) {
            200
        } else {
            403
        };
        assert_eq!(feed, want, "{name}: change feed");
        let create = s
            .call(
                "POST",
                "/v1/assets",
                Some(tok),
                Some(&json!({"title": "new"})),
            )
            .status;
        let want = if ["viewer", "member", "outsider"].contains(name) {
            403
        } else {
            201
        };
        assert_eq!(create, want, "{name}: create asset");
    }
    // Deleting: a viewer's role caps delete away; others need the grant; the owner may.
    assert_eq!(
        s.call(
            "DELETE",
            &format!("/v1/assets/{purged_id}"),
            Some(&viewer),
            None
        )
        .status,
        403
    );
    assert_eq!(
        s.call(
            "DELETE",
            &format!("/v1/assets/{purged_id}"),
            Some(&other),
            None
        )
        .status,
        403
    );
    assert_eq!(
        s.call(
            "DELETE",
            &format!("/v1/assets/{purged_id}"),
            Some(&service),
            None
        )
        .status,
        403
    );
    assert_eq!(
        s.call(
            "DELETE",
            &format!("/v1/assets/{purged_id}"),
            Some(&owner),
            None
        )
        .status,
        204
    );

    // Fields a role may not set.
    let r = s.call(
        "PATCH",
        &format!("/v1/assets/{private}"),
        Some(&owner),
        Some(&json!({"owner_id": other_id})),
    );
    assert_eq!((r.status, r.code()), (403, "field_forbidden"));
    let r = s.call(
        "POST",
        "/v1/assets",
        Some(&owner),
        Some(&json!({"title": "x", "house_id": "MINE-1"})),
    );
    assert_eq!((r.status, r.code()), (403, "field_forbidden"));
    let r = s.call(
        "PATCH",
        &format!("/v1/users/{owner_id}"),
        Some(&owner),
        Some(&json!({"role": "admin"})),
    );
    assert_eq!((r.status, r.code()), (403, "field_forbidden"));
    let r = s.call(
        "PATCH",
        &format!("/v1/users/{owner_id}"),
        Some(&owner),
        Some(&json!({"display_name": "The Owner"})),
    );
    assert_eq!(r.status, 200);
    let r = s.call("GET", &format!("/v1/users/{other_id}"), Some(&owner), None);
    assert_eq!(r.status, 404);
    // An admin hands an asset over; the new owner holds every right.
    let r = s.call(
        "PATCH",
        &format!("/v1/assets/{private}"),
        admin,
        Some(&json!({"owner_id": other_id})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        s.call("GET", &format!("/v1/assets/{private}"), Some(&other), None)
            .body["access"],
        json!(["read", "write", "download", "delete"])
    );
    // Removed from the group: the grant is gone at once.
    assert_eq!(
        s.call(
            "DELETE",
            &format!("/v1/groups/{group}/members/{member_id}"),
            admin,
            None
        )
        .status,
        200
    );
    assert_eq!(
        s.call(
            "GET",
            &format!("/v1/assets/{to_group}"),
            Some(&member),
            None
        )
        .status,
        404
    );
    // Disabled: the user's tokens stop working.
    assert_eq!(
        s.call(
            "PATCH",
            &format!("/v1/users/{viewer_id}"),
            admin,
            Some(&json!({"disabled": true}))
        )
        .status,
        200
    );
    assert_eq!(
        s.call("GET", "/v1/users/me", Some(&viewer), None).status,
        401
    );
    // The last admin cannot be demoted.
    let r = s.call(
        "PATCH",
        "/v1/users/1",
        admin,
        Some(&json!({"role": "viewer"})),
    );
    assert_eq!((r.status, r.code()), (409, "conflict"));
}

#[test]
fn abuse_is_refused_with_the_envelope() {
    let media = tempfile::tempdir().unwrap();
    let s = start(None, media.path());
    let a = Some(s.admin.as_str());

    // Every documented route but /health, /ready and login needs a session or token.
    let doc = s.call("GET", "/openapi.json", None, None).body;
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let p = path
                .replace("{id}", "1")
                .replace("{rid}", "1")
                .replace("{asset_id}", "1")
                .replace("{user_id}", "1");
            let r = s.raw(
                &method.to_uppercase(),
                &p,
                None,
                Some(("application/json", b"{}".to_vec())),
            );
            // A signed pull URL is its own authority (tests/delivery_dest.rs).
            if path == "/health"
                || path == "/ready"
                || path == "/v1/auth/login"
                || path.starts_with("/v1/pull/")
                || method == "options"
            {
                assert_ne!(r.status, 401, "{method} {path}");
                continue;
            }
            // A HEAD answer has no body to carry the envelope.
            let want = if method == "head" { "" } else { "unauthorized" };
            assert_eq!((r.status, r.code()), (401, want), "{method} {path}");
            let r = s.raw(&method.to_uppercase(), &p, Some("ant_forged"), None);
            assert_eq!(r.status, 401, "{method} {path} with a forged token");
            checked += 1;
        }
    }
    assert!(checked > 40, "{checked} routes checked");
    assert_eq!(s.call("GET", "/docs/", a, None).status, 200);

    // Malformed requests.
    let r = s.raw(
        "POST",
        "/v1/assets",
        a,
        Some(("application/json", b"{\"title\": ".to_vec())),
    );
    assert_eq!((r.status, r.code()), (400, "invalid_json"));
    let r = s.raw(
        "POST",
        "/v1/assets",
        a,
        Some(("application/json", b"[1,2]".to_vec())),
    );
    assert_eq!((r.status, r.code()), (422, "invalid_body"));
    let r = s.call("POST", "/v1/assets", a, Some(&json!({"title": ["x"]})));
    assert_eq!((r.status, r.code()), (422, "invalid_body"));
    let r = s.call(
        "POST",
        "/v1/assets",
        a,
        Some(&json!({"title": "x", "owner": 2})),
    );
    assert_eq!(
        (r.status, r.code()),
        (422, "invalid_body"),
        "unknown fields are refused"
    );
    let r = s.raw(
        "POST",
        "/v1/assets",
        a,
        Some(("text/plain", b"{\"title\":\"x\"}".to_vec())),
    );
    assert_eq!((r.status, r.code()), (415, "unsupported_media_type"));
    let r = s.call("GET", "/v1/assets/99999999999999999999999", a, None);
    assert_eq!((r.status, r.code()), (400, "invalid_path"));
    let r = s.call("GET", "/v1/assets/abc", a, None);
    assert_eq!((r.status, r.code()), (400, "invalid_path"));
    let r = s.call("GET", "/v1/assets?limit=ten", a, None);
    assert_eq!((r.status, r.code()), (400, "invalid_query"));
    let r = s.call("GET", "/v1/assets?colour=red", a, None);
    assert_eq!((r.status, r.code()), (400, "invalid_query"));
    let r = s.call("GET", "/v1/nothing", a, None);
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = s.call("PUT", "/v1/assets", a, None);
    assert_eq!((r.status, r.code()), (405, "method_not_allowed"));
    // A body over the limit is refused: a 413 (or 422), or, when the server answers before the
    // client has finished writing, the connection cut under the client's feet; never a 5xx.
    let big = json!({"title": "x".repeat(3_000_000)}).to_string();
    match ureq::post(&format!("{}/v1/assets", s.base))
        .set("authorization", &format!("Bearer {}", s.admin))
        .set("content-type", "application/json")
        .send_string(&big)
    {
        Err(ureq::Error::Status(code, _)) => assert!(code == 413 || code == 422, "{code}"),
        Err(ureq::Error::Transport(t)) => {
            let m = t.to_string();
            assert!(
                m.contains("Broken pipe") || m.contains("reset"),
                "an oversized body: {m}"
            );
        }
        Ok(r) => panic!("an oversized body was taken: {}", r.status()),
    }
    let r = s.call(
        "POST",
        "/v1/assets",
        a,
        Some(&json!({"title": "x", "kind": "feature film"})),
    );
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (422, Some("kind"))
    );
    let r = s.call("POST", "/v1/assets", a, Some(&json!({"title": "  "})));
    assert_eq!(r.status, 422);
    let r = s.call(
        "POST",
        "/v1/tokens",
        a,
        Some(&json!({"name": "x", "days": 100000})),
    );
    assert_eq!((r.status, r.code()), (422, "invalid_field"));

    // Ingest paths are confined to the roots.
    let inside = clip(media.path(), "ok.mp4", 3);
    let outside = tempfile::tempdir().unwrap();
    let secret = clip(outside.path(), "secret.mp4", 4);
    std::os::unix::fs::symlink(&secret, media.path().join("link.mp4")).unwrap();
    std::fs::create_dir(media.path().join("sub")).unwrap();
    for p in [
        format!("{}/sub/../ok.mp4", media.path().display()),
        secret.display().to_string(),
        format!("{}/link.mp4", media.path().display()),
        "ok.mp4".to_string(),
        format!("{}/ok\u{0}.mp4", media.path().display()),
        "/etc/passwd".to_string(),
        format!("{}/sub", media.path().display()),
    ] {
        let r = s.call("POST", "/v1/ingest", a, Some(&json!({"path": p})));
        assert_eq!(
            (r.status, r.code()),
            (400, "path_not_allowed"),
            "{p:?}: {}",
            r.body
        );
    }
    assert_eq!(
        s.call("POST", "/v1/ingest", a, Some(&json!({"path": inside})))
            .status,
        201
    );

    // Uploads over the cap (5 MB here): refused from the declared length, or stopped mid-way,
    // and nothing is left on disk.
    // The declared length alone is refused: the answer comes before any byte of the body.
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::io::Write::write_all(
        &mut sock,
        format!(
            "POST /v1/ingest/upload?filename=big.mxf HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: 6000000000\r\n\r\n",
            s.admin
        )
        .as_bytes(),
    )
    .unwrap();
    let mut head = String::new();
    BufReader::new(&sock).read_line(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    let big = vec![7u8; 6_000_000];
    let chunked = ureq::post(&format!("{}/v1/ingest/upload?filename=big.mxf", s.base))
        .set("authorization", &format!("Bearer {}", s.admin))
        .set("content-type", "application/octet-stream")
        .send(std::io::Cursor::new(big));
    match chunked {
        Err(ureq::Error::Status(413, _)) => {}
        Err(ureq::Error::Transport(_)) => {} // the server may close while we still send
        other => panic!(
            "a chunked upload over the cap: {:?}",
            other.map(|r| r.status())
        ),
    }
    let left: Vec<_> = walk(&s.data_dir().join("media"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".part"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // Tokens: revoked → refused at once; secrets are stored hashed.
    let r = s.call(
        "POST",
        "/v1/tokens",
        a,
        Some(&json!({"name": "playout", "days": 30})),
    );
    assert_eq!(r.status, 201);
    let tok = r.body["token"].as_str().unwrap().to_string();
    let tid = r.body["info"]["id"].as_i64().unwrap();
    assert_eq!(s.call("GET", "/v1/users/me", Some(&tok), None).status, 200);
    let db = std::fs::read(s.data_dir().join("catalog.db")).unwrap_or_default();
    let wal = std::fs::read(s.data_dir().join("catalog.db-wal")).unwrap_or_default();
    let needle = tok.as_bytes();
    assert!(
        !db.windows(needle.len()).any(|w| w == needle)
            && !wal.windows(needle.len()).any(|w| w == needle),
        "token stored in clear"
    );
    assert_eq!(
        s.call("DELETE", &format!("/v1/tokens/{tid}"), a, None)
            .status,
        204
    );
    assert_eq!(s.call("GET", "/v1/users/me", Some(&tok), None).status, 401);
    // Logout ends the session.
    let t2 = s.login("admin", common::server::ADMIN_PASSWORD);
    assert_eq!(
        s.call("POST", "/v1/auth/logout", Some(&t2), None).status,
        204
    );
    assert_eq!(s.call("GET", "/v1/users/me", Some(&t2), None).status, 401);

    // A browser session (cookie) cannot be driven by a cross-site form.
    let r = ureq::post(&format!("{}/v1/assets", s.base))
        .set("cookie", &format!("antenne_session={}", s.admin))
        .set("content-type", "application/x-www-form-urlencoded")
        .send_string("title=x");
    assert!(matches!(r, Err(ureq::Error::Status(403, _))));
    let r = ureq::get(&format!("{}/v1/users/me", s.base))
        .set("cookie", &format!("antenne_session={}", s.admin))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);

    // Failed logins are rate-limited (5 per minute per user and address).
    for _ in 0..5 {
        let r = s.call(
            "POST",
            "/v1/auth/login",
            None,
            Some(&json!({"username": "admin", "password": "wrong-password"})),
        );
        assert_eq!(r.status, 401);
    }
    let r = s.call(
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({"username": "admin", "password": common::server::ADMIN_PASSWORD})),
    );
    assert_eq!((r.status, r.code()), (429, "rate_limited"));
    assert!(r.header("retry-after").is_some());
    let r = s.call(
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({"username": "nobody", "password": "wrong-password"})),
    );
    assert_eq!(r.status, 401, "other user names are not locked out");

    // The audit log records refusals too, and detects an edit.
    let check = s.call("GET", "/v1/audit/verify", a, None);
    assert_eq!(check.body["intact"], true);
    let entries = s.call("GET", "/v1/audit?limit=500", a, None).body["items"]
        .as_array()
        .unwrap()
        .clone();
    assert!(entries
        .iter()
        .any(|e| e["action"] == "POST /v1/auth/login" && e["result"] == "refused 429"));
    assert!(entries
        .iter()
        .any(|e| e["action"] == "POST /v1/ingest" && e["result"] == "refused 400"));
}

/// Load balancers and systemd helpers probe `/ready` without a token; integrators read the API
/// document without one; every operation documents the error answers it can give.
#[test]
fn probes_and_the_api_document_are_public() {
    let media = tempfile::tempdir().unwrap();
    let s = start(None, media.path());
    let r = s.call("GET", "/ready", None, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!({"ready": true}), "it reveals nothing more");
    let r = s.call("GET", "/health", None, None);
    assert_eq!(r.status, 200);
    let r = s.call("GET", "/openapi.json", None, None);
    assert_eq!(r.status, 200);
    let doc = r.body;
    assert_eq!(s.call("GET", "/docs/", None, None).status, 200);
    // Private data stays private.
    assert_eq!(s.call("GET", "/v1/assets", None, None).status, 401);
    assert_eq!(s.call("GET", "/metrics", None, None).status, 401);

    let comps = &doc["components"]["responses"];
    let resolve = |v: &Value| -> Value {
        match v["$ref"].as_str() {
            Some(r) => comps[r.trim_start_matches("#/components/responses/")].clone(),
            None => v.clone(),
        }
    };
    let mut ops = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let has = |code: &str| -> bool {
                let r = &op["responses"][code];
                if r.is_null() {
                    return false;
                }
                let r = resolve(r);
                let schema = &r["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/ErrorBody",
                    "{method} {path} {code}: the error envelope"
                );
                true
            };
            // Discovery by OPTIONS (the tus routes) is public too.
            let pull = path.starts_with("/v1/pull/");
            let public = ["/health", "/ready", "/v1/auth/login"].contains(&path.as_str())
                || pull
                || method == "options";
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let body = !op["requestBody"].is_null();
            let in_path = params.iter().any(|p| p["in"] == "path");
            assert!(has("405"), "{method} {path}: 405");
            assert_eq!(
                has("401"),
                !public || path == "/v1/auth/login",
                "{method} {path}: 401"
            );
            // A pull URL that was altered or expired is refused with 403.
            assert_eq!(has("403"), !public || pull, "{method} {path}: 403");
            if in_path {
                assert!(has("404"), "{method} {path}: 404");
            }
            if body || !params.is_empty() {
                assert!(has("400") && has("422"), "{method} {path}: 400 and 422");
            }
            if body {
                assert!(has("413"), "{method} {path}: 413");
            }
            if op["requestBody"]["content"]["application/json"].is_object() {
                assert!(has("415"), "{method} {path}: 415");
            }
            if !["get", "head"].contains(&method.as_str()) && !public {
                assert!(has("409"), "{method} {path}: 409");
            }
            for code in ["400", "404", "409", "413", "415", "422", "429"] {
                has(code);
            }
            ops += 1;
        }
    }
    assert!(ops > 50, "{ops} operations");
    assert!(
        !doc["paths"]["/v1/auth/login"]["post"]["responses"]["429"].is_null(),
        "login documents its rate limit"
    );
    let ready = &doc["paths"]["/ready"]["get"];
    assert_eq!(
        ready["security"],
        json!([{}]),
        "/ready is documented as public"
    );
}

/// Past 500 matches the total is an estimate and says so; assets sort by their files'
/// duration.
#[test]
fn search_totals_past_the_bound_and_sorting_by_duration() {
    let media = tempfile::tempdir().unwrap();
    let s = start(None, media.path());
    let a = Some(s.admin.as_str());
    for i in 0..1100 {
        let title = format!("Clip {i} {}", if i % 4 == 0 { "alpha" } else { "beta" });
        let r = s.call("POST", "/v1/assets", a, Some(&json!({"title": title})));
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let total = |q: &str| s.call("GET", &format!("/v1/search?{q}"), a, None).body["total"].clone();
    assert_eq!(total("q=alpha"), json!({"value": 275, "exact": true}));
    assert_eq!(
        total("q=alpha&limit=5&after=900"),
        json!({"value": 275, "exact": true})
    );
    for q in ["q=clip", "limit=10", "q=clip%20-zeta"] {
        let t = total(q);
        assert_eq!(t["exact"], false, "{q}: {t}");
        let v = t["value"].as_i64().unwrap();
        assert!((901..=1300).contains(&v), "{q}: estimate {v} of 1100");
    }
    // Duration: the longest file of each asset.
    let mut made = Vec::new();
    for (name, secs) in [("three.mp4", "3"), ("one.mp4", "1"), ("two.mp4", "2")] {
        let p = media.path().join(name);
        common::ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size=160x90:rate=25:duration={secs}"),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            p.to_str().unwrap(),
        ]);
        let r = s.call(
            "POST",
            "/v1/ingest",
            a,
            Some(&json!({"path": p, "asset": {"title": format!("Timed {name}")}})),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        made.push(r.body["asset"]["id"].as_i64().unwrap());
    }
    let order = |q: &str| {
        ids(&s
            .call("GET", &format!("/v1/search?q=timed&{q}"), a, None)
            .body)
    };
    assert_eq!(order("sort=duration"), vec![made[1], made[2], made[0]]);
    assert_eq!(order("sort=-duration"), vec![made[0], made[2], made[1]]);
    let r = s.call("GET", "/v1/search?sort=-duration&after=x", a, None);
    assert_eq!((r.status, r.code()), (400, "invalid_query"));
}

/// The README's quick start, run as printed (in a fresh directory, `antenne` on the PATH, port
/// 8080 as the README has it): every call answers without an error envelope.
#[test]
fn readme_quick_start_runs_as_printed() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```sh\nexport ANTENNE_ADMIN_PASSWORD")
        .expect("the quick start block");
    let block = &readme[start + 6..];
    let block = &block[..block.find("```").unwrap()];
    if std::net::TcpListener::bind("127.0.0.1:8080").is_err() {
        panic!("port 8080 is taken: the quick start listens there");
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("quick-start.sh");
    std::fs::write(&script, format!("set -e\n{block}wait\n")).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_antenne")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("RUST_LOG", "antenne=warn");
    for (k, _) in std::env::vars() {
        if k.starts_with("ANTENNE_") {
            cmd.env_remove(k);
        }
    }
    let o = cmd.output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // What curl printed, without the service's own lines (`antenne: …`) woven in.
    let json_only: String = out
        .lines()
        .map(|l| l.find("antenne: ").map_or(l, |i| &l[..i]))
        .collect();
    let values: Vec<Value> = serde_json::Deserializer::from_str(&json_only)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    // ready, the asset, the search, the ingest, the upload.
    assert_eq!(values.len(), 5, "{out}");
    for v in &values {
        assert!(v.get("error").is_none(), "{v}");
    }
    assert_eq!(values[0], json!({"ready": true}));
    assert_eq!(
        values[2]["items"][0]["title"], "Evening News",
        "{}",
        values[2]
    );
    assert_eq!(values[3]["asset"]["kind"], "promo", "{}", values[3]);
    assert_eq!(
        values[4]["file"]["size"],
        std::fs::metadata(dir.path().join("trailer.mxf"))
            .unwrap()
            .len()
    );
    assert!(dir.path().join("antenne-data/incoming/promo.mxf").is_file());
}

/// A rejected file is named as the client knows it; where the appliance keeps it never shows.
#[test]
fn error_answers_name_the_clients_file_not_server_paths() {
    let media = tempfile::tempdir().unwrap();
    let s = start(None, media.path());
    let a = Some(s.admin.as_str());
    let data = s.data_dir().canonicalize().unwrap();
    let text = b"this is not media, whatever its name says\n".to_vec();
    let hash16 = {
        let f = media.path().join("text.bin");
        std::fs::write(&f, &text).unwrap();
        sha256_hex(&f)[..16].to_string()
    };
    let clean = |m: &str, what: &str| {
        for leak in [
            data.display().to_string(),
            s.data_dir().display().to_string(),
            media.path().display().to_string(),
            "/media/".to_string(),
            hash16.clone(),
        ] {
            assert!(!m.contains(&leak), "{what}: {m:?} discloses {leak:?}");
        }
    };
    let r = s.raw(
        "POST",
        "/v1/ingest/upload?filename=promo.mxf",
        a,
        Some(("application/octet-stream", text.clone())),
    );
    assert_eq!((r.status, r.code()), (422, "not_media"), "{}", r.body);
    let m = r.body["error"]["message"].as_str().unwrap();
    assert!(m.starts_with("promo.mxf: "), "{m}");
    assert_eq!(m.matches("promo.mxf").count(), 1, "named once: {m}");
    clean(m, "ingest upload");

    let asset = s.call("POST", "/v1/assets", a, Some(&json!({"title": "Promo"})));
    let id = asset.body["id"].as_i64().unwrap();
    let r = s.raw(
        "POST",
        &format!("/v1/assets/{id}/upload?filename=spot%20v2.mov"),
        a,
        Some(("application/octet-stream", text.clone())),
    );
    assert_eq!((r.status, r.code()), (422, "not_media"), "{}", r.body);
    let m = r.body["error"]["message"].as_str().unwrap();
    assert!(m.starts_with("spot v2.mov: "), "{m}");
    clean(m, "asset upload");

    for (name, bytes) in [("junk.mxf", text.clone()), ("empty.mxf", Vec::new())] {
        let f = media.path().join(name);
        std::fs::write(&f, bytes).unwrap();
        let r = s.call("POST", "/v1/ingest", a, Some(&json!({"path": f})));
        assert_eq!(
            (r.status, r.code()),
            (422, "not_media"),
            "{name}: {}",
            r.body
        );
        let m = r.body["error"]["message"].as_str().unwrap();
        assert!(m.starts_with(&format!("{name}: ")), "{m}");
        clean(m, name);
        let r = s.call(
            "POST",
            &format!("/v1/assets/{id}/files"),
            a,
            Some(&json!({"path": f})),
        );
        assert_eq!(
            (r.status, r.code()),
            (422, "not_media"),
            "{name}: {}",
            r.body
        );
        clean(r.body["error"]["message"].as_str().unwrap(), name);
    }
    // Nothing of the refused uploads is left in storage.
    let left: Vec<_> = walk(&s.data_dir().join("media"))
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Downloads a player can seek in and an interrupted transfer can resume.
#[test]
fn downloads_serve_ranges_etags_and_the_file_name() {
    let media = tempfile::tempdir().unwrap();
    let s = start(None, media.path());
    let a = Some(s.admin.as_str());
    let src = clip(media.path(), "source.mp4", 11);
    let bytes = std::fs::read(&src).unwrap();
    let len = bytes.len();
    let sha = sha256_hex(&src);
    let r = s.raw(
        "POST",
        "/v1/ingest/upload?filename=%C3%89vening%20news.mp4",
        a,
        Some(("application/octet-stream", bytes.clone())),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let url = format!(
        "/v1/files/{}/content",
        r.body["file"]["id"].as_i64().unwrap()
    );
    let get = |headers: &[(&str, &str)]| s.request("GET", &url, a, headers, None);

    let (r, body) = get(&[]);
    assert_eq!(r.status, 200);
    assert_eq!(body, bytes);
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let etag = format!("\"{sha}\"");
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("content-type"), Some("video/mp4"));
    assert_eq!(r.header("content-length"), Some(len.to_string().as_str()));
    let cd = r.header("content-disposition").unwrap();
    assert!(
        cd.starts_with("attachment; filename=\"")
            && cd.ends_with("filename*=UTF-8''%C3%89vening_news.mp4"),
        "the client's file name, not the stored one: {cd}"
    );

    let (r, body) = get(&[("range", "bytes=0-99")]);
    assert_eq!(r.status, 206);
    assert_eq!(body, bytes[..100]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-99/{len}").as_str())
    );
    assert_eq!(r.header("content-length"), Some("100"));
    let (r, body) = get(&[("range", "bytes=-10")]);
    assert_eq!((r.status, &body[..]), (206, &bytes[len - 10..]));
    let (r, body) = get(&[("range", "bytes=100-")]);
    assert_eq!((r.status, &body[..]), (206, &bytes[100..]));
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 100-{}/{len}", len - 1).as_str())
    );
    for bad in [
        format!("bytes={len}-"),
        "bytes=0-1,4-5".into(),
        "bytes=9-3".into(),
        "bytes=abc".into(),
    ] {
        let (r, _) = get(&[("range", &bad)]);
        assert_eq!(
            (r.status, r.code()),
            (416, "range_not_satisfiable"),
            "{bad}: {}",
            r.body
        );
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{len}").as_str()),
            "{bad}"
        );
    }
    // A unit other than bytes is ignored: the whole file.
    let (r, body) = get(&[("range", "lines=1-2")]);
    assert_eq!((r.status, body.len()), (200, len));
    // Caching and resuming against a changed file.
    let (r, body) = get(&[("if-none-match", &etag)]);
    assert_eq!(r.status, 304);
    assert!(body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let (r, _) = get(&[("if-none-match", "\"other\", W/\"x\"")]);
    assert_eq!(r.status, 200);
    let (r, body) = get(&[("range", "bytes=0-9"), ("if-range", "\"old-version\"")]);
    assert_eq!(
        (r.status, body.len()),
        (200, len),
        "If-Range of another version"
    );
    let (r, body) = get(&[("range", "bytes=0-9"), ("if-range", &etag)]);
    assert_eq!((r.status, body.len()), (206, 10));
    let (r, body) = s.request("HEAD", &url, a, &[], None);
    assert_eq!((r.status, body.len()), (200, 0));
    assert_eq!(r.header("content-length"), Some(len.to_string().as_str()));

    // curl, as a real peer: a transfer cut after 1000 bytes, then resumed with `-C -`.
    let out = media.path().join("resumed.mp4");
    let auth = format!("authorization: Bearer {}", s.admin);
    let full = format!("{}{url}", s.base);
    let curl = |args: &[&str]| {
        let o = std::process::Command::new("curl")
            .args(["-sS", "-f", "-H", &auth])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    curl(&["-r", "0-999", "-o", out.to_str().unwrap(), &full]);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 1000);
    curl(&["-C", "-", "-o", out.to_str().unwrap(), &full]);
    assert_eq!(sha256_hex(&out), sha, "resumed download equals the file");
    // And the name curl takes from the header.
    let dir = media.path().join("named");
    std::fs::create_dir(&dir).unwrap();
    let o = std::process::Command::new("curl")
        .current_dir(&dir)
        .args(["-sS", "-f", "-O", "-J", "-H", &auth, &full])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1);
    assert!(names[0].ends_with("vening_news.mp4"), "{names:?}");
}

/// Behind the TLS proxy, each client is counted under its own address; from anyone else the
/// forwarding headers are ignored.
#[test]
fn login_limits_count_the_client_behind_a_trusted_proxy() {
    let media = tempfile::tempdir().unwrap();
    let login = |s: &Server, user: &str, password: &str, headers: &[(&str, &str)]| -> u16 {
        let body = json!({"username": user, "password": password}).to_string();
        s.request(
            "POST",
            "/v1/auth/login",
            None,
            headers,
            Some(("application/json", body.into_bytes())),
        )
        .0
        .status
    };
    let pw = common::server::ADMIN_PASSWORD;
    let xff = |ip: &'static str| [("x-forwarded-for", ip)];

    // The proxy on loopback is trusted.
    let s = Server::start(&[
        (
            "ANTENNE_INGEST_ROOTS",
            format!("[\"{}\"]", media.path().display()),
        ),
        (
            "ANTENNE_SERVER_TRUSTED_PROXIES",
            "[\"127.0.0.0/8\", \"::1\"]".into(),
        ),
        ("ANTENNE_AUTH_LOGIN_ATTEMPTS", "2".into()),
    ]);
    for _ in 0..2 {
        assert_eq!(login(&s, "admin", "wrong", &xff("203.0.113.7")), 401);
    }
    assert_eq!(
        login(&s, "admin", pw, &xff("203.0.113.7")),
        429,
        "that client is locked"
    );
    assert_eq!(
        login(&s, "admin", pw, &xff("9.9.9.9, 203.0.113.7")),
        429,
        "an address the client prepends does not free it"
    );
    assert_eq!(
        login(&s, "admin", pw, &xff("203.0.113.8")),
        200,
        "another client is not"
    );
    assert_eq!(login(&s, "admin", pw, &[]), 200, "nor the proxy itself");
    // RFC 7239 Forwarded, IPv6 with a port.
    let fwd = [("forwarded", "for=\"[2001:db8::7]:4711\";proto=https")];
    for _ in 0..2 {
        assert_eq!(login(&s, "admin", "wrong", &fwd), 401);
    }
    assert_eq!(login(&s, "admin", pw, &fwd), 429);
    assert_eq!(
        login(&s, "admin", pw, &[("forwarded", "for=192.0.2.9")]),
        200
    );
    // Twenty failures (ten times the per-user limit) over any user names lock one address.
    for i in 0..20 {
        assert_eq!(
            login(&s, &format!("nobody{i}"), "wrong", &xff("198.51.100.20")),
            401
        );
    }
    assert_eq!(login(&s, "admin", pw, &xff("198.51.100.20")), 429);
    assert_eq!(login(&s, "admin", pw, &xff("198.51.100.21")), 200);
    drop(s);

    // No trusted proxy (the default): the headers are the client's word and are ignored.
    let s = Server::start(&[
        (
            "ANTENNE_INGEST_ROOTS",
            format!("[\"{}\"]", media.path().display()),
        ),
        ("ANTENNE_AUTH_LOGIN_ATTEMPTS", "2".into()),
    ]);
    for ip in ["203.0.113.7", "203.0.113.8"] {
        assert_eq!(login(&s, "admin", "wrong", &xff(ip)), 401);
    }
    assert_eq!(login(&s, "admin", pw, &xff("203.0.113.9")), 429);
    assert_eq!(
        login(&s, "admin", pw, &[("forwarded", "for=192.0.2.10")]),
        429
    );
}

#[test]
fn an_edited_audit_log_is_detected() {
    let media = tempfile::tempdir().unwrap();
    let mut s = start(None, media.path());
    let a = Some(s.admin.as_str());
    for i in 0..3 {
        s.call(
            "POST",
            "/v1/assets",
            a,
            Some(&json!({"title": format!("a{i}")})),
        );
    }
    assert_eq!(s.stop().code(), Some(0));
    let db = s.data_dir().join("catalog.db");
    // Someone with the database file rewrites history (triggers off, as an attacker would).
    let o = std::process::Command::new("python3")
        .args([
            "-c",
            &format!(
            "import sqlite3; c = sqlite3.connect('{}'); c.execute('DROP TRIGGER audit_no_update'); \
             c.execute(\"UPDATE audit SET actor = 'someone' WHERE seq = 2\"); c.commit()",
            db.display()
        ),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s2 = Server::start(&[(
        "ANTENNE_STORAGE_DATA_DIR",
        s.data_dir().display().to_string(),
    )]);
    let r = s2.call("GET", "/v1/audit/verify", Some(&s2.admin), None);
    assert_eq!(r.body["intact"], false, "{}", r.body);
    assert_eq!(r.body["broken_at"], 2);
}

#[test]
fn events_stream_changes_and_replay_after_a_reconnect() {
    let media = tempfile::tempdir().unwrap();
    let s = start(None, media.path());
    let (_, viewer) = s.user("watcher", "viewer");
    let base = s.base.clone();
    let tok = s.admin.clone();
    // Each reader says when its stream is open (the response's headers are in).
    let (connected_tx, connected) = std::sync::mpsc::channel::<()>();
    let reader = |tok: String, last: Option<i64>, want: usize| {
        let base = base.clone();
        let connected = connected_tx.clone();
        std::thread::spawn(move || {
            let mut req = ureq::get(&format!("{base}/v1/events"))
                .set("authorization", &format!("Bearer {tok}"));
            if let Some(l) = last {
                req = req.set("last-event-id", &l.to_string());
            }
            let r = req.timeout(Duration::from_secs(20)).call().unwrap();
            assert_eq!(r.header("content-type"), Some("text/event-stream"));
            let _ = connected.send(());
            let mut ids = Vec::new();
            for l in BufReader::new(r.into_reader()).lines() {
                let Ok(l) = l else { break };
                if let Some(id) = l.strip_prefix("id: ") {
                    ids.push(id.parse::<i64>().unwrap());
                    if ids.len() == want {
                        break;
                    }
                }
            }
            ids
        })
    };
    // Start from the present cursor: what commits before a stream connects is replayed.
    let head = s
        .call("GET", "/v1/changes?limit=1000", Some(&tok), None)
        .body["next"]
        .as_i64();
    let admin_events = reader(tok.clone(), head, 3);
    let viewer_events = reader(viewer.clone(), head, 1);
    for _ in 0..2 {
        connected
            .recv_timeout(Duration::from_secs(20))
            .expect("both event streams connect");
    }
    let mut made = Vec::new();
    for i in 0..3 {
        let r = s.call(
            "POST",
            "/v1/assets",
            Some(&tok),
            Some(&json!({"title": format!("live {i}")})),
        );
        made.push(r.body["id"].as_i64().unwrap());
    }
    let seen = admin_events.join().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    // The viewer sees only what they may read: grant one asset.
    let vid = s.call("GET", "/v1/users/me", Some(&viewer), None).body["id"]
        .as_i64()
        .unwrap();
    s.call(
        "PUT",
        &format!("/v1/assets/{}/acl", made[1]),
        Some(&tok),
        Some(&json!({"grants": [{"principal": "user", "id": vid, "perms": ["read"]}]})),
    );
    let v = viewer_events.join().unwrap();
    assert_eq!(v.len(), 1);
    // Reconnecting with Last-Event-ID replays what came after it.
    let replay = reader(tok, Some(seen[0]), 2).join().unwrap();
    assert_eq!(replay, seen[1..].to_vec());
}

#[test]
fn serve_tells_systemd_and_stops_cleanly_on_sigterm() {
    let media = tempfile::tempdir().unwrap();
    let sock_path = media.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut s = Server::start(&[
        ("NOTIFY_SOCKET", sock_path.display().to_string()),
        ("WATCHDOG_USEC", "400000".to_string()),
    ]);
    let mut buf = [0u8; 512];
    let mut got = String::new();
    while !(got.contains("READY=1") && got.contains("WATCHDOG=1")) {
        let n = sock
            .recv(&mut buf)
            .expect("READY and WATCHDOG notifications");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
        got.push('\n');
    }
    // An open event stream does not hold the shutdown up.
    let base = s.base.clone();
    let tok = s.admin.clone();
    let (connected_tx, connected) = std::sync::mpsc::channel::<()>();
    let stream = std::thread::spawn(move || {
        let r = ureq::get(&format!("{base}/v1/events"))
            .set("authorization", &format!("Bearer {tok}"))
            .call()
            .unwrap();
        let _ = connected_tx.send(());
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut r.into_reader(), &mut sink);
    });
    connected
        .recv_timeout(Duration::from_secs(20))
        .expect("the event stream connects");
    let status = s.stop();
    assert_eq!(status.code(), Some(0));
    stream.join().unwrap();
    let mut rest = String::new();
    while let Ok(n) = sock.recv(&mut buf) {
        rest.push_str(&String::from_utf8_lossy(&buf[..n]));
        if rest.contains("STOPPING=1") {
            break;
        }
    }
    assert!(rest.contains("STOPPING=1"), "{rest}");
    let lines: Vec<String> = s.lines.try_iter().collect();
    assert!(lines.iter().any(|l| l == "antenne: stopped"), "{lines:?}");
}

#[test]
fn first_start_prints_a_one_time_admin_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_antenne"))
        .arg("serve")
        .env("ANTENNE_STORAGE_DATA_DIR", dir.path().join("d"))
        .env("ANTENNE_SERVER_LISTEN", "127.0.0.1:0")
        .env_remove("ANTENNE_ADMIN_PASSWORD")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let first = lines.next().unwrap().unwrap();
    let pw = first
        .split("one-time password ")
        .nth(1)
        .expect(&first)
        .trim()
        .to_string();
    let listen = lines
        .find_map(|l| {
            l.ok()?
                .strip_prefix("antenne: listening on ")
                .map(String::from)
        })
        .unwrap();
    let r = ureq::post(&format!("{listen}/v1/auth/login"))
        .send_json(json!({"username": "admin", "password": pw}))
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(dir.path().join("d/catalog.db").is_file());
    assert!(dir.path().join("d/media").is_dir() && dir.path().join("d/watch").is_dir());
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn validate_names_the_key_at_fault() {
    let o = common::run(
        common::antenne()
            .args(["validate"])
            .env("ANTENNE_INGEST_ROOTS", "[\"/no/such/dir\"]"),
    );
    assert!(!o.status.success());
    assert!(
        common::stderr(&o).contains("ingest.roots"),
        "{}",
        common::stderr(&o)
    );
    let o = common::run(common::antenne().args(["validate"]).env(
        "ANTENNE_CATALOG_FIELDS",
        "[{name = \"Genre\", type = \"text\"}]",
    ));
    assert!(!o.status.success());
    assert!(
        common::stderr(&o).contains("catalog.fields"),
        "{}",
        common::stderr(&o)
    );
    let o = common::run(
        common::antenne()
            .args(["validate"])
            .env("ANTENNE_AUTH_SESSION_HOURS", "0"),
    );
    assert!(
        common::stderr(&o).contains("auth"),
        "{}",
        common::stderr(&o)
    );
    let o = common::run(
        common::antenne()
            .args(["serve"])
            .env("ANTENNE_SERVER_LISTEN", "127.0.0.1:99999"),
    );
    assert!(!o.status.success());
    assert!(
        common::stderr(&o).contains("server.listen"),
        "{}",
        common::stderr(&o)
    );
}

/// The audit entries naming `action` on `object`.
fn audit_of(s: &Server, action: &str, object: &str) -> Vec<Value> {
    let r = s.call("GET", "/v1/audit?limit=1000", Some(&s.admin), None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action && e["object"] == object)
        .cloned()
        .collect()
}

/// The service dies inside the transaction of a change, its audit entry written, before the
/// commit: after a restart the change is absent and so is its entry; a change that commits
/// carries its entry; a refused attempt is recorded too.
fn an_audit_entry_commits_with_its_change(url: Option<&str>) {
    let media = tempfile::tempdir().unwrap();
    let mut s = start(url, media.path());
    let a = Some(s.admin.as_str());
    let id = s
        .call("POST", "/v1/assets", a, Some(&json!({"title": "Before"})))
        .body["id"]
        .as_i64()
        .unwrap();
    // An API token to come back with: a login is a change, and would meet the fault first.
    let r = s.call(
        "POST",
        "/v1/tokens",
        a,
        Some(&json!({"name": "crash-test", "days": 1})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let tok = r.body["token"].as_str().unwrap().to_string();
    assert_eq!(s.stop().code(), Some(0));

    let mut env = vec![
        (
            "ANTENNE_STORAGE_DATA_DIR",
            s.data_dir().display().to_string(),
        ),
        ("ANTENNE_CATALOG_FIELDS", FIELDS.to_string()),
    ];
    if let Some(u) = url {
        env.push(("ANTENNE_CATALOG_URL", u.to_string()));
    }
    let mut fault = env.clone();
    fault.push(("ANTENNE_TEST_FAULT", "audit".to_string()));
    let mut dying = Server::spawn(&fault);
    let r = ureq::patch(&format!("{}/v1/assets/{id}", dying.base))
        .set("authorization", &format!("Bearer {tok}"))
        .timeout(Duration::from_secs(30))
        .send_json(json!({"title": "After"}));
    assert!(r.is_err(), "the service died before answering");
    let st = dying.child.wait().unwrap();
    assert_eq!(st.code(), Some(137), "ended by the test hook: {st:?}");

    let s = Server::start(&env);
    let a = Some(s.admin.as_str());
    let path = format!("/v1/assets/{id}");
    let asset = s.call("GET", &path, a, None).body;
    assert_eq!(asset["title"], "Before", "the change never committed");
    assert!(
        audit_of(&s, "PATCH /v1/assets/{id}", &path).is_empty(),
        "nor did its entry"
    );
    // A change that commits carries its entry, written with it.
    let v = asset["version"].as_i64().unwrap();
    let r = s.call(
        "PATCH",
        &path,
        a,
        Some(&json!({"title": "After", "version": v})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let e = audit_of(&s, "PATCH /v1/assets/{id}", &path);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0]["result"], "ok");
    assert_eq!(e[0]["actor"], "admin");
    // A refused attempt (a stale version) is recorded as refused, once.
    let r = s.call(
        "PATCH",
        &path,
        a,
        Some(&json!({"title": "Stale", "version": v})),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    let e = audit_of(&s, "PATCH /v1/assets/{id}", &path);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!(e[1]["result"], "refused 409");
    // Logins and tokens are changes too: one entry each, and the chain holds.
    let r = s.call(
        "POST",
        "/v1/tokens",
        a,
        Some(&json!({"name": "second", "days": 1})),
    );
    assert_eq!(r.status, 201);
    assert_eq!(audit_of(&s, "POST /v1/tokens", "/v1/tokens").len(), 2);
    let r = s.call("GET", "/v1/audit/verify", a, None);
    assert_eq!(r.body["intact"], true, "{}", r.body);
}

#[test]
fn an_audit_entry_commits_with_its_change_on_sqlite() {
    an_audit_entry_commits_with_its_change(None);
}

#[test]
fn an_audit_entry_commits_with_its_change_on_postgres() {
    let pg = Pg::start().expect("PostgreSQL installed");
    an_audit_entry_commits_with_its_change(Some(&pg.url));
}

/// An event stream read on a thread: each change as it comes; the channel closes when the
/// stream ends.
fn event_stream(base: &str, tok: &str, since: i64) -> std::sync::mpsc::Receiver<Value> {
    let (tx, rx) = std::sync::mpsc::channel();
    let url = format!("{base}/v1/events?since={since}");
    let auth = format!("Bearer {tok}");
    std::thread::spawn(move || {
        let Ok(r) = ureq::get(&url)
            .set("authorization", &auth)
            .timeout(Duration::from_secs(90))
            .call()
        else {
            return;
        };
        for l in BufReader::new(r.into_reader()).lines() {
            let Ok(l) = l else { break };
            if let Some(d) = l.strip_prefix("data: ") {
                if tx.send(serde_json::from_str(d).unwrap()).is_err() {
                    break;
                }
            }
        }
    });
    rx
}

/// Waits for the change to `asset`, passing over others.
fn wait_asset_event(rx: &std::sync::mpsc::Receiver<Value>, asset: i64) {
    loop {
        let e = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the change reaches the stream");
        if e["asset_id"] == asset {
            return;
        }
    }
}

/// What the stream still wrote before it ended.
fn rest_until_end(rx: &std::sync::mpsc::Receiver<Value>) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(e) => out.push(e),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return out,
            Err(e) => panic!("the stream did not end: {e}; got {out:?}"),
        }
    }
}

/// The newest change-feed cursor.
fn head(s: &Server) -> i64 {
    let mut since = 0;
    loop {
        let r = s.call(
            "GET",
            &format!("/v1/changes?since={since}&limit=1000"),
            Some(&s.admin),
            None,
        );
        let next = r.body["next"].as_i64().unwrap();
        if next == since {
            return since;
        }
        since = next;
    }
}

/// Disabling a user, revoking a token, demoting a role, removing a grant or a group membership
/// bites on an open event stream at once: nothing committed after it is written. Changes are
/// made through `w`, the streams read from `r` (the same appliance, or another one sharing the
/// catalog).
fn revocation_bites_on_open_streams(w: &Server, r: &Server) {
    let a = Some(w.admin.as_str());
    let mk = |title: &str| -> i64 {
        let r = w.call("POST", "/v1/assets", a, Some(&json!({"title": title})));
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["id"].as_i64().unwrap()
    };
    let patch = |id: i64, title: &str| {
        let r = w.call(
            "PATCH",
            &format!("/v1/assets/{id}"),
            a,
            Some(&json!({"title": title})),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    };
    let set_acl = |id: i64, grants: Value| {
        let r = w.call(
            "PUT",
            &format!("/v1/assets/{id}/acl"),
            a,
            Some(&json!({ "grants": grants })),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    };

    // A disabled user.
    let (id, tok) = w.user("disabled-op", "operator");
    let rx = event_stream(&r.base, &tok, head(w));
    let a1 = mk("seen");
    wait_asset_event(&rx, a1);
    let p = w.call(
        "PATCH",
        &format!("/v1/users/{id}"),
        a,
        Some(&json!({"disabled": true})),
    );
    assert_eq!(p.status, 200, "{}", p.body);
    mk("not for a disabled user");
    assert_eq!(rest_until_end(&rx), Vec::<Value>::new());

    // A revoked API token.
    let (_, session) = w.user("revoked-op", "operator");
    let t = w.call(
        "POST",
        "/v1/tokens",
        Some(&session),
        Some(&json!({"name": "feed", "days": 1})),
    );
    assert_eq!(t.status, 201, "{}", t.body);
    let api = t.body["token"].as_str().unwrap().to_string();
    let rx = event_stream(&r.base, &api, head(w));
    let a2 = mk("seen");
    wait_asset_event(&rx, a2);
    let d = w.call(
        "DELETE",
        &format!("/v1/tokens/{}", t.body["info"]["id"]),
        Some(&session),
        None,
    );
    assert_eq!(d.status, 204, "{}", d.body);
    mk("not for a revoked token");
    assert_eq!(rest_until_end(&rx), Vec::<Value>::new());

    // A demoted user.
    let (id, tok) = w.user("demoted-op", "operator");
    let rx = event_stream(&r.base, &tok, head(w));
    let a3 = mk("seen");
    wait_asset_event(&rx, a3);
    let p = w.call(
        "PATCH",
        &format!("/v1/users/{id}"),
        a,
        Some(&json!({"role": "viewer"})),
    );
    assert_eq!(p.status, 200, "{}", p.body);
    mk("not for a demoted user");
    assert_eq!(rest_until_end(&rx), Vec::<Value>::new());

    // A removed grant, and a removed group membership: the stream goes on, without them.
    let (vid, vtok) = w.user("granted-viewer", "viewer");
    let g = w.call("POST", "/v1/groups", a, Some(&json!({"name": "desk"})));
    let gid = g.body["id"].as_i64().unwrap();
    let m = w.call("PUT", &format!("/v1/groups/{gid}/members/{vid}"), a, None);
    assert_eq!(m.status, 200, "{}", m.body);
    let direct = mk("granted to the user");
    set_acl(
        direct,
        json!([{"principal": "user", "id": vid, "perms": ["read"]}]),
    );
    let via_group = mk("granted to the group");
    set_acl(
        via_group,
        json!([{"principal": "group", "id": gid, "perms": ["read"]}]),
    );
    let rx = event_stream(&r.base, &vtok, head(w));
    patch(direct, "seen");
    wait_asset_event(&rx, direct);
    patch(via_group, "seen");
    wait_asset_event(&rx, via_group);
    set_acl(direct, json!([]));
    let m = w.call(
        "DELETE",
        &format!("/v1/groups/{gid}/members/{vid}"),
        a,
        None,
    );
    assert_eq!(m.status, 200, "{}", m.body);
    patch(direct, "no longer granted");
    patch(via_group, "no longer a member");
    // A sentinel the viewer may see: everything before it has been passed over.
    let sentinel = mk("sentinel");
    set_acl(
        sentinel,
        json!([{"principal": "user", "id": vid, "perms": ["read"]}]),
    );
    let mut after = Vec::new();
    loop {
        let e = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the sentinel reaches the stream");
        if e["asset_id"] == sentinel {
            break;
        }
        after.push(e);
    }
    assert_eq!(after, Vec::<Value>::new(), "nothing after the removals");
}

#[test]
fn revocation_bites_on_open_streams_on_sqlite() {
    let media = tempfile::tempdir().unwrap();
    let s = start(None, media.path());
    revocation_bites_on_open_streams(&s, &s);
}

#[test]
fn revocation_bites_on_open_streams_across_two_appliances_on_postgres() {
    let pg = Pg::start().expect("PostgreSQL installed");
    let media = tempfile::tempdir().unwrap();
    let s1 = start(Some(&pg.url), media.path());
    let s2 = start(Some(&pg.url), media.path());
    revocation_bites_on_open_streams(&s1, &s2);
}

/// Markers and sub-clips, bulk edit over a selection and saved searches, with the access checks
/// of the neighbouring routes and 4xx for every client mistake.
fn markers_bulk_edit_and_saved_searches(url: Option<&str>) {
    let media = tempfile::tempdir().unwrap();
    let s = start(url, media.path());
    let a = Some(s.admin.as_str());
    let (eid, ed) = s.user("cutter", "editor");
    let (vid, vw) = s.user("watcher", "viewer");
    let (_, out) = s.user("outsider", "viewer");
    let (e, v, o) = (Some(ed.as_str()), Some(vw.as_str()), Some(out.as_str()));
    let grant = |asset: i64, grants: Value| {
        let r = s.call(
            "PUT",
            &format!("/v1/assets/{asset}/acl"),
            a,
            Some(&json!({ "grants": grants })),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    };

    // An asset with media: 2 s at 25 fps, timecode from 00:00:00:00.
    let f = clip(media.path(), "match.mp4", 11);
    let r = s.raw(
        "POST",
        "/v1/ingest/upload?filename=match.mp4&title=Match",
        a,
        Some(("application/octet-stream", std::fs::read(&f).unwrap())),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let asset = r.body["file"]["asset_id"].as_i64().unwrap();
    grant(
        asset,
        json!([{"principal": "user", "id": eid, "perms": ["read", "write"]},
               {"principal": "user", "id": vid, "perms": ["read"]}]),
    );
    let markers = format!("/v1/assets/{asset}/markers");
    let r = s.call(
        "POST",
        &markers,
        e,
        Some(
            &json!({"tc_in": "00:00:01:00", "tc_out": "00:00:01:12", "label": "Goal",
                     "colour": "Green", "comment": "the winner"}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let sub = r.body.clone();
    assert_eq!(
        (&sub["colour"], &sub["rate"], &sub["tc_out"]),
        (&json!("green"), &json!("25/1"), &json!("00:00:01:12"))
    );
    let r = s.call("POST", &markers, e, Some(&json!({"tc_in": "00:00:00:10"})));
    assert_eq!(r.status, 201, "{}", r.body);
    let point = r.body["id"].as_i64().unwrap();
    assert!(r.body.get("tc_out").is_none(), "{}", r.body);
    // Readers read them, in timecode order; only writers write; others do not see them.
    let r = s.call("GET", &markers, v, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ids(&r.body), vec![point, sub["id"].as_i64().unwrap()]);
    let r = s.call("POST", &markers, v, Some(&json!({"tc_in": "00:00:00:01"})));
    assert_eq!((r.status, r.code()), (403, "forbidden"), "{}", r.body);
    for (m, p) in [("GET", markers.clone()), ("POST", markers.clone())] {
        let r = s.call(m, &p, o, Some(&json!({"tc_in": "00:00:00:01"})));
        assert_eq!((r.status, r.code()), (404, "not_found"), "{m}: {}", r.body);
    }
    let r = s.call("DELETE", &format!("{markers}/{point}"), v, None);
    assert_eq!(r.status, 403, "{}", r.body);
    // Client mistakes: 4xx with the envelope, never 500.
    for (body, field) in [
        (json!({"tc_in": "00:00:00:25"}), "tc_in"),
        (json!({"tc_in": "00:00:05:00"}), "tc_in"),
        (
            json!({"tc_in": "00:00:01:00", "tc_out": "00:00:00:05"}),
            "tc_out",
        ),
        (json!({"tc_in": "00:00:01:00", "tc_out": "1:2"}), "tc_out"),
        (
            json!({"tc_in": "00:00:01:00", "colour": "chartreuse"}),
            "colour",
        ),
        (json!({"tc_in": "00:00:01:00", "label": "a\u{0}b"}), "label"),
        (
            json!({"tc_in": "00:00:01:00", "label": "x".repeat(300)}),
            "label",
        ),
        (json!({"label": "no time"}), "tc_in"),
    ] {
        let r = s.call("POST", &markers, e, Some(&body));
        assert_eq!(
            (r.status, r.code()),
            (422, "invalid_field"),
            "{body}: {}",
            r.body
        );
        assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.body);
    }
    let r = s.call(
        "POST",
        &markers,
        e,
        Some(&json!({"tc_in": "00:00:01:00", "at": 1})),
    );
    assert!((400..500).contains(&r.status), "{}", r.body);
    // Change and remove.
    let r = s.call(
        "PATCH",
        &format!("{markers}/{}", sub["id"]),
        e,
        Some(&json!({"tc_out": "", "label": "Kick-off"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("tc_out").is_none(), "{}", r.body);
    assert_eq!(
        (&r.body["tc_in"], &r.body["label"], &r.body["colour"]),
        (&json!("00:00:01:00"), &json!("Kick-off"), &json!("green"))
    );
    let r = s.call("DELETE", &format!("{markers}/{point}"), e, None);
    assert_eq!(r.status, 204, "{}", r.body);
    let r = s.call("GET", &format!("{markers}/{point}"), e, None);
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(
        audit_of(&s, "POST /v1/assets/{id}/markers", &markers)
            .iter()
            .filter(|x| x["result"] == "ok")
            .count(),
        2
    );
    // No media yet, no frame rate: a conflict, not a guess.
    let bare = s.call("POST", "/v1/assets", a, Some(&json!({"title": "Bare"})));
    let bare = bare.body["id"].as_i64().unwrap();
    let r = s.call(
        "POST",
        &format!("/v1/assets/{bare}/markers"),
        a,
        Some(&json!({"tc_in": "00:00:00:00"})),
    );
    assert_eq!((r.status, r.code()), (409, "conflict"), "{}", r.body);
    // The marker of one asset is not found under another.
    let r = s.call(
        "GET",
        &format!("/v1/assets/{bare}/markers/{}", sub["id"]),
        a,
        None,
    );
    assert_eq!(r.status, 404, "{}", r.body);

    // Bulk edit: one version check and one audit entry each, refusals reported.
    let mk = |title: &str| -> (i64, i64) {
        let r = s.call(
            "POST",
            "/v1/assets",
            a,
            Some(&json!({"title": title, "tags": ["news", "raw"]})),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        (
            r.body["id"].as_i64().unwrap(),
            r.body["version"].as_i64().unwrap(),
        )
    };
    let (b1, v1) = mk("one");
    let (b2, v2) = mk("two");
    let (b3, v3) = mk("three");
    let rw = json!([{"principal": "user", "id": eid, "perms": ["read", "write"]}]);
    grant(b1, rw.clone());
    grant(b2, rw);
    grant(
        b3,
        json!([{"principal": "user", "id": eid, "perms": ["read"]}]),
    );
    // The grants changed nothing the version counts; someone edits b2 meanwhile.
    let r = s.call(
        "PATCH",
        &format!("/v1/assets/{b2}"),
        a,
        Some(&json!({"title": "two!"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.call(
        "POST",
        "/v1/assets/bulk-edit",
        e,
        Some(&json!({
            "assets": [{"id": b1, "version": v1}, {"id": b2, "version": v2},
                       {"id": b3, "version": v3}, {"id": 999_999, "version": 1}],
            "set": {"series": "Bulk series"},
            "add_tags": ["Archive"], "remove_tags": ["news"]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["updated"].as_array().unwrap().len(), 1, "{}", r.body);
    assert_eq!(r.body["updated"][0]["id"], b1);
    let refused: Vec<(i64, &str)> = r.body["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["id"].as_i64().unwrap(), x["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        refused,
        vec![(b2, "conflict"), (b3, "forbidden"), (999_999, "not_found")]
    );
    let one = s.call("GET", &format!("/v1/assets/{b1}"), e, None).body;
    assert_eq!(one["series"], "Bulk series");
    assert_eq!(one["tags"], json!(["archive", "raw"]));
    let two = s.call("GET", &format!("/v1/assets/{b2}"), a, None).body;
    assert_eq!(two["tags"], json!(["news", "raw"]), "untouched");
    let results: Vec<String> = [b1, b2, b3]
        .iter()
        .flat_map(|b| audit_of(&s, "POST /v1/assets/bulk-edit", &format!("/v1/assets/{b}")))
        .map(|x| x["result"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(results, ["ok", "refused 409", "refused 403"]);
    for body in [
        json!({"assets": [], "add_tags": ["x"]}),
        json!({"assets": [{"id": b1, "version": 1}]}),
        json!({"assets": [{"id": b1, "version": 1}], "set": {"house_id": "X-1"}}),
        json!({"assets": [{"id": b1, "version": 1}, {"id": b1, "version": 1}], "add_tags": ["x"]}),
        json!({"assets": [{"id": b1, "version": 1}], "add_tags": [""]}),
    ] {
        let r = s.call("POST", "/v1/assets/bulk-edit", e, Some(&body));
        assert_eq!(
            (r.status, r.code()),
            (422, "invalid_field"),
            "{body}: {}",
            r.body
        );
    }

    // Saved searches: the caller's own; run as the caller may read now.
    let r = s.call(
        "POST",
        "/v1/searches",
        e,
        Some(&json!({"name": "Archive", "query": {"tag": "archive", "sort": "title"}})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let saved = r.body["id"].as_i64().unwrap();
    let run = format!("/v1/searches/{saved}/run");
    let r = s.call("GET", &run, e, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ids(&r.body), vec![b1]);
    assert_eq!(r.body["total"]["value"], 1);
    let r = s.call(
        "POST",
        "/v1/searches",
        e,
        Some(&json!({"name": "Archive", "query": {"tag": "raw"}})),
    );
    assert_eq!((r.status, r.code()), (409, "conflict"), "{}", r.body);
    for q in [
        json!({"qq": "x"}),
        json!({"tag": "x", "limit": 5}),
        json!({"sort": "colour"}),
    ] {
        let r = s.call(
            "POST",
            "/v1/searches",
            e,
            Some(&json!({"name": "bad", "query": q})),
        );
        assert_eq!(
            (r.status, r.code()),
            (422, "invalid_field"),
            "{q}: {}",
            r.body
        );
    }
    for who in [v, a] {
        assert_eq!(s.call("GET", &run, who, None).status, 404);
        assert_eq!(
            s.call("GET", &format!("/v1/searches/{saved}"), who, None)
                .status,
            404
        );
        assert_eq!(
            s.call("DELETE", &format!("/v1/searches/{saved}"), who, None)
                .status,
            404
        );
    }
    assert_eq!(
        ids(&s.call("GET", "/v1/searches", v, None).body),
        Vec::<i64>::new()
    );
    let r = s.call(
        "PATCH",
        &format!("/v1/searches/{saved}"),
        e,
        Some(&json!({"name": "Raw", "query": {"tag": "raw"}})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.call("GET", &format!("{run}?limit=1"), e, None);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1, "{}", r.body);
    assert!(r.body["next"].is_string(), "{}", r.body);
    assert_eq!(r.body["total"]["value"], 3, "{}", r.body);
    assert_eq!(
        ids(&s.call("GET", "/v1/searches", e, None).body),
        vec![saved]
    );
    let r = s.call("DELETE", &format!("/v1/searches/{saved}"), e, None);
    assert_eq!(r.status, 204);
    assert_eq!(s.call("GET", &run, e, None).status, 404);
    // Documented like the rest.
    let doc = s.call("GET", "/openapi.json", None, None).body;
    for p in [
        "/v1/assets/{id}/markers",
        "/v1/assets/{id}/markers/{mid}",
        "/v1/assets/bulk-edit",
        "/v1/searches",
        "/v1/searches/{id}/run",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} documented");
    }
}

#[test]
fn markers_bulk_edit_and_saved_searches_on_sqlite() {
    markers_bulk_edit_and_saved_searches(None);
}

#[test]
fn markers_bulk_edit_and_saved_searches_on_postgres() {
    let pg = Pg::start().expect("PostgreSQL installed");
    markers_bulk_edit_and_saved_searches(Some(&pg.url));
}
