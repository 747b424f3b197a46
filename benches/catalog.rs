//! Catalog benchmark: fills a fresh embedded (SQLite) catalog with generated assets, default
//! 1,000,000, then measures
//! - the bulk registration rate (`Catalog::create_assets_bulk`, batches of 5,000), assets/s;
//! - the time to merge the full-text index after the fill (as `antenne serve` does at start
//!   and after every 20,000 indexed assets);
//! - search latency (p50 / p99 / max), one query at a time, for typical query shapes: one
//!   common word, two words, a rare word's prefix, a word with status and kind filters, a tag
//!   alone, the newest assets, a deep page (`after` cursor), a phrase, a word with an
//!   exclusion, the title order, a word in the order of last change, and as an editor who sees
//!   only the assets they own or are granted through a group; each with the total count when the
//!   API would give it (a full page). Goal: p99 < 20 ms;
//! - `GET /v1/assets/{id}` throughput over HTTP/1.1 keep-alive on loopback, driven by an in-repo
//!   load generator (hyper-util's client) against the real router served in-process. Goal:
//!   ≥ 10,000 requests/s;
//! - and, as its peer in the same run, the lookup that handler does without HTTP
//!   (`Catalog::asset`, from the same number of tasks for the same time), with the ratio of the
//!   two, so that the cost of HTTP (auth, routing, JSON, sockets) shows.
//!
//! - the operator panel's first screen: in headless Chromium (where `/usr/bin/chromedriver` is
//!   installed; `ANTENNE_BENCH_BROWSER=0` leaves it out), the time from loading
//!   `/#/catalog?q=<a common word>` to its first results on screen (the page's own
//!   `antenne:first-results` performance mark), beside the search request's own time as the
//!   page measured it. Goal: < 1 s;
//!
//! Nothing is asserted (the machines are noisy): the figures are printed, with whether each goal
//! was met. The server, the load generator and SQLite share one tokio runtime and the machine's
//! cores, so the HTTP figure is a lower bound for a server with the machine to itself.
//!
//! Run: `cargo bench --bench catalog`. Environment:
//! - `ANTENNE_BENCH_ASSETS`: assets to register (default 1000000);
//! - `ANTENNE_BENCH_CONCURRENCY`: concurrent connections / tasks of the throughput phases
//!   (default 32);
//! - `ANTENNE_BENCH_SECONDS`: length of each throughput phase (default 10), after a 1.5 s
//!   warm-up;
//! - `ANTENNE_BENCH_QUERIES`: queries per search shape (default 200; a shape stops early once it
//!   has run for 30 s, and says so);
//! - `ANTENNE_BENCH_DIR`: directory for the catalog (kept afterwards; it must not hold one
//!   already) instead of a temporary one;
//! - `ANTENNE_BENCH_REUSE=1` (with `ANTENNE_BENCH_DIR`): measure a catalog an earlier run of the
//!   bench filled and kept there, without filling it again (the fill of a million takes minutes:
//!   fill once, then measure on a quiet machine).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use antenne::catalog::access::Grant;
use antenne::catalog::assets::{AssetInput, SearchQuery};
use antenne::catalog::{Catalog, OpenOptions, Principal, Role, SystemClock};
use antenne::naming::Template;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Assets per `create_assets_bulk` call (one transaction each).
const BATCH: usize = 5_000;
const WARM_UP: Duration = Duration::from_millis(1_500);
/// A search shape stops after this long even if it has not run all its queries.
const SHAPE_BUDGET: Duration = Duration::from_secs(30);
const SEARCH_GOAL_MS: f64 = 20.0;
const GET_GOAL_PER_S: f64 = 10_000.0;
/// Assets the editor registers (and so owns), and admin assets granted to the editor's group.
const EDITOR_OWNS: usize = 50;
const GROUP_GRANTS: usize = 200;

type Res<T> = Result<T, String>;

trait Context<T> {
    fn ctx(self, what: &str) -> Res<T>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Res<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

fn main() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench failed: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nbench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn env_num(name: &str, default: u64) -> Res<u64> {
    match std::env::var(name) {
        Ok(s) => s
            .trim()
            .replace('_', "")
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{name}={s:?} is not a positive whole number")),
        Err(_) => Ok(default),
    }
}

struct Settings {
    assets: usize,
    concurrency: usize,
    seconds: u64,
    queries: usize,
    cpus: usize,
}

async fn run() -> Res<()> {
    let s = Settings {
        assets: env_num("ANTENNE_BENCH_ASSETS", 1_000_000)? as usize,
        concurrency: env_num("ANTENNE_BENCH_CONCURRENCY", 32)? as usize,
        seconds: env_num("ANTENNE_BENCH_SECONDS", 10)?,
        queries: env_num("ANTENNE_BENCH_QUERIES", 200)? as usize,
        cpus: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
    };
    let reuse = std::env::var("ANTENNE_BENCH_REUSE").is_ok_and(|v| v == "1");
    let (_tmp, dir) = match std::env::var_os("ANTENNE_BENCH_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            std::fs::create_dir_all(&d).ctx(&format!("cannot create {}", d.display()))?;
            let held = d.join("catalog.db").exists();
            if reuse && !held {
                return Err(format!(
                    "ANTENNE_BENCH_REUSE=1: {} holds no catalog.db to reuse",
                    d.display()
                ));
            }
            if held && !reuse {
                return Err(format!(
                    "{} already holds a catalog.db: give an empty directory",
                    d.display()
                ));
            }
            (None, d)
        }
        None if reuse => {
            return Err("ANTENNE_BENCH_REUSE=1 needs ANTENNE_BENCH_DIR".into());
        }
        None => {
            let t = tempfile::tempdir().ctx("cannot create a temporary directory")?;
            let p = t.path().to_owned();
            (Some(t), p)
        }
    };
    println!(
        "catalog bench: {} assets, SQLite (WAL, synchronous=FULL) in {}, {} CPUs",
        s.assets,
        dir.display(),
        s.cpus
    );

    let naming = Template::parse("{channel}-{yyyy}-{seq:06}").map_err(|e| e.why)?;
    let cat = Catalog::open(
        OpenOptions {
            url: String::new(),
            data_dir: dir.clone(),
            max_connections: 0,
            naming,
            channel: "ANT".into(),
            fields: vec![],
        },
        Arc::new(SystemClock),
    )
    .await
    .ctx("cannot open the catalog")?;
    let (admin_user, editor, ids) = if reuse {
        kept(&cat).await?
    } else {
        let admin_user = cat
            .create_user("admin", "Admin", Role::Admin, "benchpassword1")
            .await
            .ctx("cannot create the admin user")?;
        let editor = editor(&cat).await?;
        let ids = fill(
            &cat,
            &principal(&admin_user, Role::Admin, vec![]),
            &editor,
            s.assets,
        )
        .await?;
        println!("catalog size: {}", db_size(&dir));
        grant_group(&cat, &editor, &ids).await?;
        (admin_user, editor, ids)
    };
    let admin = principal(&admin_user, Role::Admin, vec![]);
    // What `antenne serve` does at start and after every 20,000 indexed assets.
    let t = Instant::now();
    cat.optimize_search()
        .await
        .ctx("cannot merge the full-text index")?;
    println!(
        "full-text index merged in {:.1} s (as the service does at start and after every \
         20,000 indexed assets)",
        t.elapsed().as_secs_f64()
    );

    let (secret, _) = cat
        .issue_token(admin_user.id, "api", "bench", 86_400_000)
        .await
        .ctx("cannot issue a token")?;

    search_bench(&cat, &admin, &editor.who, &ids, s.queries).await?;

    let addr = serve(&cat, &dir).await?;
    panel_bench(addr).await;
    let http = http_bench(addr, &secret, &ids, &s).await?;
    let mut peer = peer_bench(&cat, &admin, &ids, &s).await;
    let ratio = if peer.rate > 0.0 {
        http.rate / peer.rate
    } else {
        0.0
    };
    println!(
        "peer: Catalog::asset (no HTTP): {:.0} reads/s, p50 {}, p99 {}, errors {} ({} tasks, {} s)",
        peer.rate,
        ms(peer.lat.pct(0.50)),
        ms(peer.lat.pct(0.99)),
        peer.errors(),
        s.concurrency,
        s.seconds
    );
    if let Some(e) = &peer.first_error {
        println!("  first error: {e}");
    }
    println!("ratio: HTTP GET/s ÷ bare catalog reads/s = {ratio:.2}");
    println!(
        "goal GET ≥ {GET_GOAL_PER_S:.0}/s: {}",
        if http.rate >= GET_GOAL_PER_S {
            "met"
        } else {
            "NOT met"
        }
    );
    cat.close().await;
    Ok(())
}

/// The ids the fill registered, in order (they are consecutive on a fresh catalog, but the bench
/// does not rely on it).
struct Ids(Vec<i64>);

impl Ids {
    fn random(&self, rng: &mut Rng) -> (usize, i64) {
        let i = rng.below(self.0.len());
        (i, self.0[i])
    }
}

async fn fill(cat: &Catalog, who: &Principal, editor: &Editor, n: usize) -> Res<Ids> {
    let mut ids = Vec::with_capacity(n);
    let mut batches = Lat::default();
    let mut slowest = (Duration::ZERO, 0);
    let mut generating = Duration::ZERO;
    let mut registering = Duration::ZERO;
    let start = Instant::now();
    let mut last_note = Instant::now();
    let mut done = 0;
    let mut owned = 0;
    while done < n {
        let k = BATCH.min(n - done);
        let t = Instant::now();
        let batch: Vec<AssetInput> = (done..done + k).map(|i| asset(i as u64)).collect();
        generating += t.elapsed();
        let t = Instant::now();
        let got = cat
            .create_assets_bulk(who, &batch)
            .await
            .ctx(&format!("bulk registration of assets {done}..{}", done + k))?;
        let took = t.elapsed();
        registering += took;
        batches.push(took);
        if took > slowest.0 {
            slowest = (took, done);
        }
        ids.extend(got);
        done += k;
        // The editor's own assets, spread over the whole range of ids (not timed).
        let due = EDITOR_OWNS * done / n;
        if due > owned {
            let own: Vec<AssetInput> = (owned..due)
                .map(|i| asset(1_000_000_000 + i as u64))
                .collect();
            cat.create_assets_bulk(&editor.who, &own)
                .await
                .ctx("the editor cannot register assets")?;
            owned = due;
        }
        if last_note.elapsed() >= Duration::from_secs(30) && done < n {
            last_note = Instant::now();
            eprintln!(
                "  fill: {done}/{n} after {:.0} s ({:.0} assets/s so far)",
                start.elapsed().as_secs_f64(),
                done as f64 / registering.as_secs_f64()
            );
        }
    }
    if ids.len() != n {
        return Err(format!(
            "bulk registration returned {} ids for {n} assets",
            ids.len()
        ));
    }
    let wall = start.elapsed().as_secs_f64();
    let reg = registering.as_secs_f64();
    println!(
        "fill: {n} assets in {reg:.1} s = {:.0} assets/s (in create_assets_bulk, batches of \
         {BATCH}; generating the inputs took another {:.1} s, {wall:.1} s in all)",
        n as f64 / reg.max(1e-9),
        generating.as_secs_f64()
    );
    println!(
        "fill batches: p50 {} ({:.0} assets/s), max {} (assets {}..{})",
        ms(batches.pct(0.5)),
        BATCH.min(n) as f64 / batches.pct(0.5).as_secs_f64().max(1e-9),
        ms(slowest.0),
        slowest.1,
        (slowest.1 + BATCH).min(n)
    );
    Ok(Ids(ids))
}

fn db_size(dir: &Path) -> String {
    let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
    let mb = |b: u64| b as f64 / 1_048_576.0;
    format!(
        "catalog.db {:.0} MiB, WAL {:.0} MiB",
        mb(size("catalog.db")),
        mb(size("catalog.db-wal"))
    )
}

/// An editor (no rights of their own on others' assets) in a group; they register a few assets
/// during the fill and the group is granted a few more after it.
struct Editor {
    who: Principal,
    group: i64,
}

fn principal(u: &antenne::catalog::access::User, role: Role, groups: Vec<i64>) -> Principal {
    Principal {
        user_id: u.id,
        username: u.username.clone(),
        role,
        groups: Arc::from(groups),
    }
}

/// The admin, the editor and the admin's assets of a catalog an earlier run filled.
async fn kept(cat: &Catalog) -> Res<(antenne::catalog::access::User, Editor, Ids)> {
    let user = |name: &'static str| async move {
        cat.user_by_name(name)
            .await
            .ctx(&format!("cannot read the user {name}"))?
            .ok_or_else(|| {
                format!("the kept catalog has no user {name:?}: fill it with this bench")
            })
    };
    let (admin, ed) = (user("admin").await?, user("editor").await?);
    let group = cat
        .groups(0, 1000)
        .await
        .ctx("cannot list the groups")?
        .into_iter()
        .find(|g| g.name == "newsroom")
        .ok_or("the kept catalog has no group \"newsroom\"")?;
    let ids = cat
        .asset_ids_owned_by(admin.id)
        .await
        .ctx("cannot list the kept assets")?;
    println!(
        "reusing the kept catalog: {} assets of the admin",
        ids.len()
    );
    let editor = Editor {
        who: principal(&ed, Role::Editor, vec![group.id]),
        group: group.id,
    };
    Ok((admin, editor, Ids(ids)))
}

async fn editor(cat: &Catalog) -> Res<Editor> {
    let user = cat
        .create_user("editor", "Editor", Role::Editor, "benchpassword2")
        .await
        .ctx("cannot create the editor")?;
    let group = cat
        .create_group("newsroom", "bench group")
        .await
        .ctx("cannot create the group")?;
    cat.set_member(group.id, user.id, true)
        .await
        .ctx("cannot add the editor to the group")?;
    Ok(Editor {
        who: Principal {
            user_id: user.id,
            username: "editor".into(),
            role: Role::Editor,
            groups: Arc::from(vec![group.id]),
        },
        group: group.id,
    })
}

async fn grant_group(cat: &Catalog, editor: &Editor, ids: &Ids) -> Res<()> {
    let mut rng = Rng::new(0xED17);
    let grant = [Grant {
        principal: "group".into(),
        id: editor.group,
        perms: vec!["read".into()],
    }];
    let grants = GROUP_GRANTS.min(ids.0.len());
    for _ in 0..grants {
        let (_, id) = ids.random(&mut rng);
        cat.set_acl("asset", id, &grant)
            .await
            .ctx("cannot grant an asset to the group")?;
    }
    println!(
        "editor: owns {EDITOR_OWNS} assets and reads up to {grants} more through a group grant, \
         spread over all {} (ids 1..)",
        ids.0.len() + EDITOR_OWNS
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Search

type MakeQuery<'a> = Box<dyn Fn(&mut Rng) -> SearchQuery + 'a>;

async fn search_bench(
    cat: &Catalog,
    admin: &Principal,
    editor: &Principal,
    ids: &Ids,
    queries: usize,
) -> Res<()> {
    let n = ids.0.len() as u64;
    let q = |s: String| SearchQuery {
        q: Some(s),
        limit: Some(50),
        ..Default::default()
    };
    // Words of the description of a random generated asset, so that the query has hits.
    let words_of = move |rng: &mut Rng| -> Vec<String> {
        let a = asset(rng.next() % n);
        a.description
            .unwrap_or_default()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() >= 4 && COMMON.contains(w))
            .map(String::from)
            .collect()
    };
    let shapes: Vec<(&str, &Principal, MakeQuery<'_>)> = vec![
        (
            "q=one-word",
            admin,
            Box::new(move |r: &mut Rng| q(common_word(r).into())),
        ),
        (
            "q=two-words",
            admin,
            Box::new(move |r: &mut Rng| {
                let w = words_of(r);
                if w.is_empty() {
                    return q(common_word(r).into());
                }
                let a = &w[r.below(w.len())];
                let b = &w[r.below(w.len())];
                q(format!("{a} {b}"))
            }),
        ),
        (
            "q=rare-prefix",
            admin,
            Box::new(move |r: &mut Rng| {
                let mut p = place(&mut Rng::new(r.next() % n)).to_lowercase();
                p.pop();
                // Every word is a prefix.
                q(p)
            }),
        ),
        (
            "q=word+status+kind",
            admin,
            Box::new(move |r: &mut Rng| SearchQuery {
                status: Some("ready".into()),
                kind: Some("programme".into()),
                ..q(common_word(r).into())
            }),
        ),
        (
            "tag",
            admin,
            Box::new(|r: &mut Rng| SearchQuery {
                tag: Some(TAGS[r.skewed(TAGS.len())].into()),
                limit: Some(50),
                ..Default::default()
            }),
        ),
        (
            "newest",
            admin,
            Box::new(|_: &mut Rng| SearchQuery {
                limit: Some(50),
                ..Default::default()
            }),
        ),
        (
            "q=one-word+after",
            admin,
            Box::new(|r: &mut Rng| SearchQuery {
                after: Some(ids.random(r).1),
                ..q(common_word(r).into())
            }),
        ),
        (
            "q=\"two words\"",
            admin,
            Box::new(move |r: &mut Rng| {
                let w = words_of(r);
                if w.len() < 2 {
                    return q(common_word(r).into());
                }
                let i = r.below(w.len() - 1);
                q(format!("\"{} {}\"", w[i], w[i + 1]))
            }),
        ),
        (
            "q=word -word",
            admin,
            Box::new(move |r: &mut Rng| q(format!("{} -{}", common_word(r), common_word(r)))),
        ),
        (
            "sort=title",
            admin,
            Box::new(|_: &mut Rng| SearchQuery {
                sort: Some("title".into()),
                limit: Some(50),
                ..Default::default()
            }),
        ),
        (
            "q=one-word sort=-updated",
            admin,
            Box::new(move |r: &mut Rng| SearchQuery {
                sort: Some("-updated".into()),
                ..q(common_word(r).into())
            }),
        ),
        (
            "editor newest",
            editor,
            Box::new(|_: &mut Rng| SearchQuery {
                limit: Some(50),
                ..Default::default()
            }),
        ),
        (
            "editor q=one-word",
            editor,
            Box::new(move |r: &mut Rng| q(common_word(r).into())),
        ),
        (
            "editor tag",
            editor,
            Box::new(|r: &mut Rng| SearchQuery {
                tag: Some(TAGS[r.skewed(TAGS.len())].into()),
                limit: Some(50),
                ..Default::default()
            }),
        ),
    ];
    let mut all = Lat::default();
    let mut slow = Vec::new();
    for (i, (name, who, make)) in shapes.iter().enumerate() {
        let mut rng = Rng::new(0x5EA4C4 + i as u64);
        let mut lat = Lat::default();
        let mut hits = 0usize;
        let mut empty = 0usize;
        let start = Instant::now();
        while lat.len() < queries && start.elapsed() < SHAPE_BUDGET {
            let sq = make(&mut rng);
            let t = Instant::now();
            // The page and its total, as `GET /v1/search` gives them.
            let (got, _) = cat
                .search_page(who, &sq)
                .await
                .ctx(&format!("search {name} {sq:?}"))?;
            lat.push(t.elapsed());
            hits += got.len();
            empty += usize::from(got.is_empty());
        }
        let cut = if lat.len() < queries {
            format!(", stopped after {} s", SHAPE_BUDGET.as_secs())
        } else {
            String::new()
        };
        println!(
            "search {name}: p50 {} p99 {} max {} ({} queries, {:.1} hits avg, {empty} empty{cut})",
            ms(lat.pct(0.50)),
            ms(lat.pct(0.99)),
            ms(lat.pct(1.0)),
            lat.len(),
            hits as f64 / lat.len().max(1) as f64,
        );
        if lat.pct(0.99).as_secs_f64() * 1e3 >= SEARCH_GOAL_MS {
            slow.push(*name);
        }
        all.extend(&lat);
    }
    let p99 = all.pct(0.99);
    println!(
        "search all shapes: p50 {} p99 {} max {} ({} queries, sequential)",
        ms(all.pct(0.50)),
        ms(p99),
        ms(all.pct(1.0)),
        all.len()
    );
    println!(
        "goal search p99 < {SEARCH_GOAL_MS:.0} ms: {}",
        if slow.is_empty() {
            "met (every shape)".to_string()
        } else {
            format!("NOT met by {}", slow.join(", "))
        }
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The panel in a browser

#[allow(dead_code)]
#[path = "../tests/common/browser.rs"]
mod browser;

const PANEL_GOAL_MS: f64 = 1000.0;
const PANEL_LOADS: usize = 7;

/// Loads of the catalog screen, each a fresh page load, after one login.
async fn panel_bench(addr: SocketAddr) {
    if std::env::var("ANTENNE_BENCH_BROWSER").is_ok_and(|v| v == "0")
        || !Path::new("/usr/bin/chromedriver").exists()
    {
        println!("panel: skipped (no /usr/bin/chromedriver, or ANTENNE_BENCH_BROWSER=0)");
        return;
    }
    let r = tokio::task::spawn_blocking(move || {
        let b = browser::Browser::start(1280, 720);
        let base = format!("http://{addr}");
        b.goto(&format!("{base}/"));
        b.type_into("input[name=username]", "admin");
        b.type_into("input[name=password]", "benchpassword1");
        b.keys("input[name=password]", "\u{E007}");
        b.wait("#d-catalog", 60);
        let mut first = Vec::new();
        let mut request = Vec::new();
        for _ in 0..PANEL_LOADS {
            b.goto("about:blank");
            b.goto(&format!("{base}/#/catalog?q={}", COMMON[0]));
            b.wait_for(
                "first results",
                "return performance.getEntriesByName('antenne:first-results').length > 0",
                60,
            );
            let v = b.eval(
                "return [performance.getEntriesByName('antenne:first-results')[0].startTime, \
                 Number(document.querySelector('#count').dataset.ms), \
                 document.querySelector('#count').textContent]",
                &[],
            );
            if v[0].as_f64().is_some_and(|t| t > PANEL_GOAL_MS) {
                let slow = b.eval(
                    "return performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation')) \
                     .filter((e) => e.startTime < arguments[0]).map((e) => `${e.name.replace(location.origin, '')} \
                     ${e.startTime.toFixed(0)}+${(e.responseEnd - e.startTime).toFixed(0)} ms`).join(', ')",
                    &[v[0].clone()],
                );
                println!("panel: a slow load, its requests before the results: {}", slow.as_str().unwrap_or(""));
            }
            first.push(v[0].as_f64().unwrap_or(f64::NAN));
            request.push(v[1].as_f64().unwrap_or(f64::NAN));
            if first.len() == 1 {
                println!("panel: {:?} finds {}", COMMON[0], v[2].as_str().unwrap_or("?"));
            }
        }
        (first, request)
    })
    .await;
    let Ok((mut first, mut request)) = r else {
        println!("panel: the browser phase failed (see the message above)");
        return;
    };
    println!(
        "panel: each load, first results / search request (ms): {}",
        first
            .iter()
            .zip(&request)
            .map(|(a, b)| format!("{a:.0}/{b:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    first.sort_by(f64::total_cmp);
    request.sort_by(f64::total_cmp);
    let med = |v: &[f64]| v[v.len() / 2];
    let worst = first.last().copied().unwrap_or(f64::NAN);
    println!(
        "panel: first search results on screen {:.0} ms median, {:.0} ms worst of {} page loads \
         (the search request itself {:.0} ms median), in headless Chromium at 1280x720",
        med(&first),
        worst,
        first.len(),
        med(&request)
    );
    println!(
        "goal panel first screen < {PANEL_GOAL_MS:.0} ms: {}",
        if worst < PANEL_GOAL_MS {
            "met"
        } else {
            "NOT met"
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Throughput

async fn serve(cat: &Catalog, dir: &Path) -> Res<SocketAddr> {
    let cfg =
        Arc::new(antenne::config::appliance::load(None, &[]).ctx("default configuration refused")?);
    let st = Arc::new(antenne::api::AppState::new(
        cat.clone(),
        cfg,
        dir.join("media"),
        antenne::app::metrics_handle(),
    ));
    antenne::api::set_ready(&st, true);
    let app = antenne::api::router(st);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .ctx("cannot listen on loopback")?;
    let addr = listener.local_addr().ctx("no local address")?;
    tokio::spawn(async move {
        let svc = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, svc).await {
            eprintln!("server stopped: {e}");
        }
    });
    Ok(addr)
}

/// What a set of load tasks counted inside the measured window.
#[derive(Default)]
struct Tally {
    ok: u64,
    status: BTreeMap<u16, u64>,
    failed: u64,
    first_error: Option<String>,
    lat: Lat,
    rate: f64,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.ok += o.ok;
        for (k, v) in o.status {
            *self.status.entry(k).or_default() += v;
        }
        self.failed += o.failed;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.lat.extend(&o.lat);
    }

    fn errors(&self) -> u64 {
        self.status.values().sum::<u64>() + self.failed
    }

    fn error(&mut self, counted: bool, status: Option<u16>, what: impl FnOnce() -> String) {
        if counted {
            match status {
                Some(s) => *self.status.entry(s).or_default() += 1,
                None => self.failed += 1,
            }
        }
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }
}

/// The measured window: from the end of the warm-up to its end.
#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    to: Instant,
}

impl Window {
    fn new(seconds: u64) -> Window {
        let from = Instant::now() + WARM_UP;
        Window {
            from,
            to: from + Duration::from_secs(seconds),
        }
    }
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

async fn get(client: &HttpClient, uri: hyper::Uri, auth: &HeaderValue) -> Res<(u16, Bytes)> {
    let req = hyper::Request::get(uri)
        .header(AUTHORIZATION, auth.clone())
        .body(Empty::new())
        .ctx("request")?;
    let resp = client.request(req).await.ctx("request failed")?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .ctx("reading the body")?
        .to_bytes();
    Ok((status, body))
}

async fn http_bench(addr: SocketAddr, secret: &str, ids: &Ids, s: &Settings) -> Res<Tally> {
    let auth = HeaderValue::from_str(&format!("Bearer {secret}")).ctx("token header")?;
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(s.concurrency)
        .build_http();
    let uri = |id: i64| -> Res<hyper::Uri> {
        format!("http://{addr}/v1/assets/{id}")
            .parse()
            .ctx("request URI")
    };
    // One request first: the route answers with the asset asked for.
    let id = ids.0[ids.0.len() / 2];
    let (status, body) = get(&client, uri(id)?, &auth).await?;
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "GET /v1/assets/{id}: {status}, body is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    if status != 200 || json["id"].as_i64() != Some(id) {
        return Err(format!("GET /v1/assets/{id}: {status} {json}"));
    }

    let win = Window::new(s.seconds);
    let ids = Arc::new(ids.0.clone());
    let mut tasks = Vec::new();
    for t in 0..s.concurrency {
        let (client, auth, ids) = (client.clone(), auth.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(0x4774 + t as u64);
            let mut tally = Tally::default();
            loop {
                let t0 = Instant::now();
                if t0 >= win.to {
                    break;
                }
                let counted = t0 >= win.from;
                let id = ids[rng.below(ids.len())];
                let uri = match format!("http://{addr}/v1/assets/{id}").parse::<hyper::Uri>() {
                    Ok(u) => u,
                    Err(e) => {
                        tally.error(counted, None, || format!("bad URI: {e}"));
                        continue;
                    }
                };
                match get(&client, uri, &auth).await {
                    Ok((status, _)) if (200..300).contains(&status) => {
                        if counted {
                            tally.ok += 1;
                            tally.lat.push(t0.elapsed());
                        }
                    }
                    Ok((status, body)) => tally.error(counted, Some(status), || {
                        format!(
                            "GET /v1/assets/{id}: {status} {}",
                            String::from_utf8_lossy(&body)
                        )
                    }),
                    Err(e) => {
                        tally.error(counted, None, || format!("GET /v1/assets/{id}: {e}"));
                        // Do not spin on a refused connection.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        all.merge(t.await.ctx("a load task failed")?);
    }
    all.rate = all.ok as f64 / s.seconds as f64;
    let codes: Vec<String> = all.status.iter().map(|(k, v)| format!("{v}×{k}")).collect();
    println!(
        "GET /v1/assets/{{id}}: {:.0} req/s, p50 {}, p99 {}, errors {}{} ({} connections, {} s; \
         server and load generator share the {} CPUs and one runtime)",
        all.rate,
        ms(all.lat.pct(0.50)),
        ms(all.lat.pct(0.99)),
        all.errors(),
        if codes.is_empty() && all.failed == 0 {
            String::new()
        } else {
            format!(" [{} {} transport]", codes.join(" "), all.failed)
        },
        s.concurrency,
        s.seconds,
        s.cpus,
    );
    if let Some(e) = &all.first_error {
        println!("  first error: {e}");
    }
    Ok(all)
}

async fn peer_bench(cat: &Catalog, who: &Principal, ids: &Ids, s: &Settings) -> Tally {
    let win = Window::new(s.seconds);
    let ids = Arc::new(ids.0.clone());
    let mut tasks = Vec::new();
    for t in 0..s.concurrency {
        let (cat, who, ids) = (cat.clone(), who.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(0x9EE4 + t as u64);
            let mut tally = Tally::default();
            loop {
                let t0 = Instant::now();
                if t0 >= win.to {
                    break;
                }
                let counted = t0 >= win.from;
                let id = ids[rng.below(ids.len())];
                match cat.asset(&who, id).await {
                    Ok(a) if a.id == id => {
                        if counted {
                            tally.ok += 1;
                            tally.lat.push(t0.elapsed());
                        }
                    }
                    Ok(a) => tally.error(counted, None, || {
                        format!("asset {id}: got asset {} instead", a.id)
                    }),
                    Err(e) => tally.error(counted, None, || format!("asset {id}: {e}")),
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        match t.await {
            Ok(t) => all.merge(t),
            Err(e) => all.error(true, None, || format!("a read task failed: {e}")),
        }
    }
    all.rate = all.ok as f64 / s.seconds as f64;
    all
}

// ---------------------------------------------------------------------------------------------
// Latencies

#[derive(Default)]
struct Lat {
    us: Vec<u32>,
    sorted: bool,
}

impl Lat {
    fn push(&mut self, d: Duration) {
        self.us
            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
        self.sorted = false;
    }

    fn extend(&mut self, o: &Lat) {
        self.us.extend_from_slice(&o.us);
        self.sorted = false;
    }

    fn len(&self) -> usize {
        self.us.len()
    }

    /// The `q` quantile (nearest rank); zero when empty.
    fn pct(&mut self, q: f64) -> Duration {
        if !self.sorted {
            self.us.sort_unstable();
            self.sorted = true;
        }
        if self.us.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * self.us.len() as f64).ceil() as usize).clamp(1, self.us.len());
        Duration::from_micros(u64::from(self.us[rank - 1]))
    }
}

fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e3;
    if v < 10.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.1} ms")
    }
}

// ---------------------------------------------------------------------------------------------
// Generated assets

/// xorshift64*: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so that neighbouring seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        ((self.next() >> 11) % n as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// In `0..n`, low indices more often (of 200, the first about 7 times as often as the median).
    fn skewed(&mut self, n: usize) -> usize {
        ((self.unit().powf(1.5) * n as f64) as usize).min(n - 1)
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

const SERIES: &[&str] = &[
    "Evening News",
    "Morning Briefing",
    "Match of the Week",
    "Weather Outlook",
    "The Coastal Kitchen",
    "Parliament Live",
    "Science Hour",
    "Wildlife Diaries",
    "Crime Desk",
    "Gardeners' Corner",
    "Money Matters",
    "Culture Club",
    "Late Night Talk",
    "The Motor Show",
    "Travel Notebook",
    "History Uncovered",
    "Kids Quiz",
    "Regional Roundup",
    "Election Night",
    "Sunday Drama",
    "Folk Sessions",
    "Tech Today",
    "Farming Week",
    "Health Check",
    "Arts Review",
    "Classic Cinema",
    "World Report",
    "Rugby Highlights",
    "Tour Daily",
    "Concert at the Hall",
];

const TOPICS: &[&str] = &[
    "floods in the north",
    "the budget vote",
    "cup final preview",
    "storm warning",
    "harbour strike",
    "new hospital wing",
    "bridge reopens",
    "school meals",
    "energy prices",
    "rail timetable",
    "local elections",
    "festival opens",
    "record heat",
    "market report",
    "museum reopens",
    "farm subsidies",
    "transfer window",
    "coastal erosion",
    "housing plans",
    "summit talks",
    "trial verdict",
    "wind farm",
    "bird migration",
    "derby result",
    "orchestra tour",
    "airport expansion",
    "water shortage",
    "ferry delays",
    "science prize",
    "space launch",
];

const WEEKDAYS: &[&str] = &[
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

const BRANDS: &[&str] = &[
    "Nordlys",
    "Velora",
    "Kestrel",
    "Brightwater",
    "Oakmoor",
    "Solenne",
    "Tidewell",
    "Marlow",
];

const PRODUCTS: &[&str] = &[
    "coffee",
    "insurance",
    "bank",
    "cars",
    "phones",
    "holidays",
    "cheese",
    "broadband",
];

/// Words of descriptions (and of one-word queries), drawn skewed: the first is in about a third
/// of all descriptions, the last ones in about 5 %.
const COMMON: &[&str] = &[
    "report",
    "live",
    "interview",
    "coverage",
    "highlights",
    "analysis",
    "studio",
    "guests",
    "weather",
    "football",
    "council",
    "government",
    "minister",
    "market",
    "players",
    "season",
    "city",
    "village",
    "river",
    "coast",
    "harbour",
    "island",
    "mountain",
    "forest",
    "school",
    "hospital",
    "police",
    "court",
    "festival",
    "concert",
    "orchestra",
    "choir",
    "theatre",
    "film",
    "director",
    "actors",
    "novel",
    "author",
    "poetry",
    "history",
    "castle",
    "church",
    "museum",
    "gallery",
    "painting",
    "sculpture",
    "science",
    "research",
    "university",
    "students",
    "teachers",
    "children",
    "families",
    "farmers",
    "harvest",
    "cattle",
    "fishing",
    "boats",
    "ferry",
    "railway",
    "station",
    "airport",
    "traffic",
    "roads",
    "bridge",
    "tunnel",
    "energy",
    "wind",
    "solar",
    "storm",
    "flood",
    "drought",
    "snow",
    "summer",
    "winter",
    "spring",
    "autumn",
    "election",
    "votes",
    "parliament",
    "budget",
    "taxes",
    "prices",
    "wages",
    "strike",
    "union",
    "company",
    "factory",
    "workers",
    "jobs",
    "economy",
    "trade",
    "exports",
    "shipping",
    "port",
    "tourism",
    "hotel",
    "restaurant",
    "kitchen",
    "recipe",
    "chef",
    "bakery",
    "cheese",
    "wine",
    "garden",
    "flowers",
    "birds",
    "wildlife",
    "whales",
    "seals",
    "wolves",
    "bears",
    "insects",
    "climate",
    "ocean",
    "glacier",
    "volcano",
    "earthquake",
    "rescue",
    "firefighters",
    "doctors",
    "nurses",
    "patients",
    "medicine",
    "vaccine",
    "sport",
    "cycling",
    "rugby",
    "tennis",
    "athletics",
    "swimming",
    "sailing",
    "skiing",
    "champion",
    "final",
    "victory",
    "defeat",
    "record",
    "goal",
    "match",
    "league",
    "coach",
    "stadium",
    "fans",
    "tickets",
    "music",
    "band",
    "singer",
    "album",
    "dance",
    "ballet",
    "opera",
    "comedy",
    "drama",
    "documentary",
    "archive",
    "footage",
    "portrait",
    "journey",
    "expedition",
    "discovery",
    "invention",
    "technology",
    "computer",
    "robots",
    "internet",
    "phone",
    "space",
    "rocket",
    "satellite",
    "planet",
    "stars",
    "telescope",
    "astronomy",
    "language",
    "culture",
    "tradition",
    "heritage",
    "celebration",
    "anniversary",
    "memorial",
    "veterans",
    "protest",
    "debate",
    "reform",
    "policy",
    "law",
    "justice",
    "prison",
    "crime",
    "investigation",
    "fraud",
    "scandal",
    "mayor",
    "region",
    "border",
    "neighbours",
    "community",
    "volunteers",
    "charity",
    "appeal",
    "donation",
    "library",
    "books",
    "newspaper",
    "radio",
    "television",
    "broadcast",
    "premiere",
];

const FILLERS: &[&str] = &[
    "with", "and", "from", "after", "before", "about", "the", "in",
];

const TAGS: &[&str] = &[
    "news",
    "sport",
    "drama",
    "weather",
    "politics",
    "economy",
    "culture",
    "music",
    "documentary",
    "kids",
    "comedy",
    "science",
    "nature",
    "history",
    "travel",
    "food",
    "health",
    "technology",
    "motoring",
    "football",
    "rugby",
    "cycling",
    "tennis",
    "elections",
    "regional",
    "international",
    "breaking",
    "archive",
    "live",
    "interview",
    "magazine",
    "quiz",
    "film",
    "series",
    "concert",
    "religion",
    "education",
    "farming",
    "business",
    "fashion",
    "arts",
    "literature",
    "talk",
    "promo",
    "trailer",
    "commercial",
    "hd",
    "uhd",
    "subtitled",
    "signed",
];

const SUBJECTS: &[&str] = &[
    "News",
    "Sport",
    "Drama",
    "Factual",
    "Entertainment",
    "Children",
    "Music",
    "Arts",
    "Religion",
    "Education",
];

const CREATORS: &[&str] = &[
    "Antenne News",
    "Antenne Sport",
    "Studio Nord",
    "Lighthouse Films",
    "Red Kite Productions",
    "Harbour Media",
    "Blue Fjord",
    "Northern Lights TV",
];

const SYLLABLES: &[&str] = &[
    "ka", "ri", "mo", "len", "dar", "vi", "sel", "tor", "an", "bru", "cha", "el", "fen", "gor",
    "hal", "is", "jun", "kel", "lor", "mar", "nor", "ost", "pel", "quin", "ros", "sta", "tul",
    "ur", "val", "wen", "yor", "zel",
];

fn name(rng: &mut Rng, syllables: usize) -> String {
    let mut s = String::new();
    for _ in 0..syllables {
        s.push_str(rng.pick(SYLLABLES));
    }
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// A person's name: about 32,000 of them, each in ~30 of a million assets.
fn person(rng: &mut Rng) -> String {
    name(rng, 3)
}

/// A place: about a million of them, so each is rare; `place(&mut Rng::new(i))` is asset `i`'s.
fn place(rng: &mut Rng) -> String {
    name(rng, 4)
}

fn common_word(rng: &mut Rng) -> &'static str {
    COMMON[rng.skewed(COMMON.len())]
}

/// Asset `i`, always the same for the same `i`.
fn asset(i: u64) -> AssetInput {
    let place = place(&mut Rng::new(i));
    let mut r = Rng::new(i ^ 0xA55E_7000_0000_0000);
    let series = SERIES[r.skewed(SERIES.len())];
    let topic = r.pick(TOPICS);
    let (kind, title, episode) = match r.below(10) {
        0..=3 => {
            let (s, e) = (1 + r.below(12), 1 + r.below(40));
            (
                "programme",
                format!("{series} — Episode {e}"),
                format!("S{s:02}E{e:02}"),
            )
        }
        4..=6 => ("clip", format!("{series}: {topic}"), String::new()),
        7 => (
            "promo",
            format!("Promo: {series} this {}", r.pick(WEEKDAYS)),
            String::new(),
        ),
        8 => (
            "live_recording",
            format!("{series} live from {place}"),
            String::new(),
        ),
        _ => (
            "commercial",
            format!(
                "{} {} {}s spot",
                r.pick(BRANDS),
                r.pick(PRODUCTS),
                [10, 20, 30, 60][r.below(4)]
            ),
            String::new(),
        ),
    };
    let status = match r.below(100) {
        0..=84 => "ready",
        85..=92 => "archived",
        93..=96 => "ingesting",
        _ => "qc_failed",
    };
    // ~20 words: 14 common words, a person, a place and a few fillers.
    let mut words: Vec<String> = (0..14).map(|_| common_word(&mut r).to_string()).collect();
    let at = r.below(words.len());
    words.insert(at, format!("{} {}", r.pick(FILLERS), person(&mut r)));
    let at = r.below(words.len());
    words.insert(at, format!("{} {place}", r.pick(FILLERS)));
    words.insert(r.below(words.len()), r.pick(FILLERS).to_string());
    let mut description = words.join(" ");
    description.push('.');
    let ntags = 1 + r.below(4);
    let tags: Vec<String> = (0..ntags)
        .map(|_| TAGS[r.skewed(TAGS.len())].to_string())
        .collect();
    let language = ["en", "en", "en", "en", "fr", "de", "nl"][r.below(7)];
    AssetInput {
        kind: Some(kind.into()),
        status: Some(status.into()),
        title: Some(title),
        description: Some(description),
        subject: Some(r.pick(SUBJECTS).into()),
        creator: Some(r.pick(CREATORS).into()),
        date: Some(format!(
            "{}-{:02}-{:02}",
            2005 + r.below(20),
            1 + r.below(12),
            1 + r.below(28)
        )),
        language: Some(language.into()),
        series: (kind == "programme" || r.chance(0.5)).then(|| series.into()),
        episode: (!episode.is_empty()).then_some(episode),
        tags: Some(tags),
        ..Default::default()
    }
}
