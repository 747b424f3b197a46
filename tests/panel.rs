//! The operator panel end to end: a real `antenne serve` with media made by ffmpeg, driven in
//! headless Chromium over WebDriver (chromedriver). Screenshots of each screen go to
//! `target/panel-screenshots/` for review.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::browser::Browser;
use common::server::Server;
use serde_json::{json, Value};

const W: u32 = 1280;
const H: u32 = 720;
const XSS: &str = "<img src=x onerror=\"window.__xss=1\"> Promo";

/// A workflow on the API trigger only: QC (with a short black threshold) then a proxy, whatever
/// QC says.
const WORKFLOW: &str = r#"
name = "panel"
description = "QC and proxy"
asset_kind = "clip"
[qc]
black_min_s = 0.5
freeze_min_s = 5.0
silence_min_s = 5.0
fail_over_s = 30.0
warnings_stop = false
[[steps]]
kind = "qc"
[[steps]]
kind = "transcode"
profiles = ["proxy"]
when = "always"
"#;

fn start(dir: &Path) -> Server {
    let wf = dir.join("workflows");
    std::fs::create_dir_all(&wf).unwrap();
    std::fs::write(wf.join("panel.toml"), WORKFLOW).unwrap();
    // A second storage (a folder) that the copy policy fills, and a retention rule for assets
    // tagged `expire`.
    let nearline = dir.join("nearline");
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(
        profiles.join("live-test-180p.toml"),
        common::live::LIVE_PROFILE_180P,
    )
    .unwrap();
    Server::start(&[
        (
            "ANTENNE_TRANSCODE_PROFILES_DIR",
            profiles.display().to_string(),
        ),
        ("ANTENNE_JOBS_WORKFLOWS_DIR", wf.display().to_string()),
        ("ANTENNE_JOBS_WORKERS", "1".to_string()),
        (
            "ANTENNE_STORAGES_STORE",
            format!(
                r#"[{{ id = "nearline", kind = "local", role = "nearline", path = "{}" }}]"#,
                nearline.display()
            ),
        ),
        (
            "ANTENNE_STORAGES_POLICY",
            r#"[{ name = "second copy", copy_to = ["nearline"], keep = 2 }]"#.into(),
        ),
        (
            "ANTENNE_STORAGES_RETENTION",
            r#"[{ name = "expired promos", select = { tag = "expire" }, grace_days = 7 }]"#.into(),
        ),
        // The test machine's own disk may be nearly full.
        ("ANTENNE_STORAGES_WARN_PERCENT", "100".into()),
        ("ANTENNE_STORAGES_REFUSE_PERCENT", "100".into()),
    ])
}

/// 3 s of test pattern with a black second in the middle and a tone: QC finds the black.
fn media(dir: &Path, name: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=25:duration=3",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=3:sample_rate=48000",
        "-vf",
        "drawbox=enable='between(t,1,2)':color=black:t=fill",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        p.to_str().unwrap(),
    ]);
    p
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn rfc3339(unix_s: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_s)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// The ids of the rundown's rows, in order, as the page shows them.
fn rundown(b: &Browser) -> Value {
    b.eval(
        "return [...document.querySelectorAll('#rundown tr[data-item]')].map((r) => r.dataset.item)",
        &[],
    )
}

/// The playout screen: a channel whose rundown has a live event on air (from 2 s on), the upload next, an
/// asset without media (warned) and the upload again; the countdown runs; a move and a skip
/// made on the screen reach the schedule. Returns the channel's id.
fn playout(b: &Browser, s: &Server, house: &str, unready: i64) -> i64 {
    let r = s.call(
        "POST",
        "/v1/channels",
        Some(&s.admin),
        Some(&json!({"name": "panel-1", "rate": "25", "outputs": ["udp://127.0.0.1:9"]})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    let t = unix_now();
    let items = json!({"items": [
        {"id": "studio", "type": "live", "title": "Studio live", "source": "studio-1",
         "start": rfc3339(t + 2), "duration": 120},
        {"id": "news", "house_id": house},
        {"id": "promo", "asset_id": unready},
        {"id": "close", "house_id": house, "title": "Closing"},
    ]});
    let r = s.call(
        "PUT",
        &format!("/v1/channels/{id}/schedule"),
        Some(&s.admin),
        Some(&items),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    b.click("header nav a[href='#/playout']");
    b.wait("#channels tr[data-channel] a", 10);
    b.wait_for(
        "now and next",
        "const n = document.querySelector('#now .nn-title'), x = document.querySelector('#next .nn-title'); \
         return !!n && !!x && n.textContent === 'Studio live' && x.textContent.startsWith('Evening News')",
        10,
    );
    assert_eq!(b.text("#channel-state"), "stopped");
    assert_eq!(rundown(b), json!(["studio", "news", "promo", "close"]));
    assert_eq!(b.count("#rundown tr.now[data-item=studio]"), 1);
    assert_eq!(b.count("#rundown tr.next[data-item=news]"), 1);
    // The asset with no media is warned on its own row, in words.
    let warn = b.text("#rundown tr[data-item=promo] .warnings");
    assert!(warn.contains("asset"), "{warn}");
    assert_eq!(b.count("#rundown tr[data-item=news] .warnings"), 0);
    // The countdown to the next event runs in the page (about 115 s left).
    let secs = |t: String| -> f64 {
        let p: Vec<f64> = t.split(':').map(|x| x.parse().unwrap()).collect();
        p[0] * 3600.0 + p[1] * 60.0 + p[2]
    };
    let c0 = secs(b.text("#countdown"));
    assert!((100.0..=122.0).contains(&c0), "{c0}");
    b.wait_for(
        "the countdown moves",
        &format!("const t = document.querySelector('#countdown').textContent.split(':').map(Number); return t[0] * 3600 + t[1] * 60 + t[2] <= {}", c0 - 0.5),
        5,
    );
    // Moved up, then skipped, on the screen: the schedule says so.
    b.click("#rundown tr[data-item=close] button.up");
    b.wait_for(
        "the move shows",
        "return [...document.querySelectorAll('#rundown tr[data-item]')].map((r) => r.dataset.item).join() === 'studio,news,close,promo'",
        10,
    );
    b.click("#rundown tr[data-item=promo] button.skip-item");
    b.wait("#rundown tr.skipped[data-item=promo]", 10);
    let v = s.call(
        "GET",
        &format!("/v1/channels/{id}/schedule"),
        Some(&s.admin),
        None,
    );
    let ids: Vec<_> = v.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_str().unwrap(), i["skip"] == true))
        .collect();
    assert_eq!(
        ids,
        [
            ("studio", false),
            ("news", false),
            ("close", false),
            ("promo", true)
        ]
    );
    assert!(b.text("#playout-message").contains("done"));
    // A refused edit is said in words: replacing with an asset that does not exist.
    b.click("#rundown tr[data-item=close] button.replace");
    b.type_into(".replace-form input", "NOPE-404");
    b.click(".replace-form button[type=submit]");
    // Replaced by an asset that is not in the catalog: taken, and warned on its row.
    b.wait(
        "#rundown tr[data-item=close] .warnings li[data-code=asset_missing]",
        10,
    );
    assert!(b
        .text("#rundown tr[data-item=close] .warnings")
        .contains("NOPE-404"));
    // An edit the schedule refuses is said in words: moving what is on air.
    b.click("#rundown tr[data-item=studio] button.down");
    b.wait_for(
        "the refused move is explained",
        "const m = document.querySelector('#playout-message'); return m.className === 'error' && m.textContent.includes('has aired or is on air')",
        10,
    );
    assert!(!b.text("#playout-message").contains('{'));
    b.screenshot("14-playout");
    id
}

/// The storage screen: both storages with their bars, the copy policy and the fixity audit run
/// from the screen, a retention dry run listing the expired promo, a purge confirmed on the
/// screen that waits for the grace period.
fn storage(b: &Browser, s: &Server) {
    let r = s.call(
        "POST",
        "/v1/assets",
        Some(&s.admin),
        Some(&json!({"title": "Old promo", "kind": "promo", "tags": ["expire"]})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let old = r.body["id"].as_i64().unwrap();
    b.click("header nav a[href='#/storage']");
    b.wait("#storages [data-storage=nearline]", 10);
    assert_eq!(
        b.count("#storages [data-storage=media] [role=progressbar]"),
        1
    );
    let used = b.text("#storages [data-storage=media] .used");
    assert!(used.contains("free"), "{used}");
    b.click("#run-policies");
    b.wait_for(
        "the copy policy ran",
        "return document.querySelector('#storage-message').textContent.startsWith('Copy policies done')",
        30,
    );
    let msg = b.text("#storage-message");
    assert!(!msg.starts_with("Copy policies done: 0 copies"), "{msg}");
    b.click("#run-audit");
    b.wait("#audit-report", 30);
    let checked: u64 = b.text("#audit-report li:first-child .big").parse().unwrap();
    assert!(checked >= 4, "source and proxy on two storages: {checked}");
    b.wait("#storage-events tr td", 10);
    assert!(b.text("#storage-events").contains("copied"));
    b.click("#retention-dry-run");
    b.wait(&format!("#retention-items tr[data-asset='{old}']"), 10);
    b.screenshot("15-storage");
    b.click("#purge");
    b.wait("#purge-yes", 5);
    b.click("#purge-yes");
    b.wait_for(
        "the purge waits for the grace period",
        "return document.querySelector('#storage-message').textContent.startsWith('Purge done: 0 assets purged')",
        10,
    );
    assert_eq!(
        b.count(&format!("#waiting-items tr[data-asset='{old}']")),
        1
    );
    let a = s.call("GET", &format!("/v1/assets/{old}"), Some(&s.admin), None);
    assert_eq!(a.status, 200, "still there: {}", a.body);
}

/// Markers on the asset page: one added at the playhead, drawn on the timeline, a click on it
/// seeks there; a bad timecode is refused in words; one deleted. The file's copies are listed.
fn markers(b: &Browser, s: &Server, asset: i64) {
    b.goto(&format!("{}/#/asset/{asset}", s.base));
    b.wait("#marker-add", 10);
    b.wait_for(
        "the proxy is loaded",
        "return document.querySelector('#player').readyState >= 2",
        20,
    );
    b.eval_async(
        "const done = arguments[arguments.length - 1]; const v = document.querySelector('#player'); \
         v.pause(); v.addEventListener('seeked', () => done(v.currentTime), { once: true }); v.currentTime = 2.0",
        &[],
    );
    b.click("#mark-in");
    assert_eq!(
        b.eval(
            "return document.querySelector('#marker-add input[name=tc_in]').value",
            &[]
        ),
        json!("00:00:02:00")
    );
    b.type_into("#marker-add input[name=label]", "Goal");
    b.click("#marker-add button[type=submit]");
    b.wait("#marker-line .marker", 10);
    assert!(b.text("#marker-list").contains("Goal"));
    let m = s.call(
        "GET",
        &format!("/v1/assets/{asset}/markers"),
        Some(&s.admin),
        None,
    );
    assert_eq!(m.body["items"][0]["tc_in"], "00:00:02:00", "{}", m.body);
    assert_eq!(m.body["items"][0]["label"], "Goal");
    b.eval("document.querySelector('#player').currentTime = 0", &[]);
    b.wait_for(
        "back at the start",
        "return document.querySelector('#player').currentTime < 0.1",
        5,
    );
    b.click("#marker-line .marker");
    b.wait_for(
        "the click on the marker seeks to it",
        "const t = document.querySelector('#player').currentTime; return t >= 1.99 && t < 2.1",
        5,
    );
    b.wait_for(
        "the timecode shows the marker's",
        "return document.querySelector('#timecode').textContent === '00:00:02:00'",
        5,
    );
    // A timecode past the media is refused, in words.
    b.eval(
        "document.querySelector('#marker-add input[name=tc_in]').value = '00:10:00:00'",
        &[],
    );
    b.type_into("#marker-add input[name=label]", "too late");
    b.click("#marker-add button[type=submit]");
    b.wait_for(
        "the refusal is explained",
        "const m = document.querySelector('#marker-message'); return m.className === 'error' && m.textContent.includes('tc_in')",
        10,
    );
    assert!(!b.text("#marker-message").contains('{'));
    // A second one, then deleted from the list.
    b.eval(
        "document.querySelector('#marker-add input[name=tc_in]').value = '00:00:00:10'",
        &[],
    );
    b.type_into("#marker-add input[name=label]", "Kick-off");
    b.click("#marker-add button[type=submit]");
    b.wait_for(
        "two markers",
        "return document.querySelectorAll('#marker-line .marker').length === 2",
        10,
    );
    b.screenshot("17-markers");
    b.eval(
        "[...document.querySelectorAll('#marker-list li')].find((l) => l.textContent.includes('Kick-off')).querySelector('button.delete').click()",
        &[],
    );
    b.wait_for(
        "one marker left",
        "return document.querySelectorAll('#marker-line .marker').length === 1 && document.querySelector('#marker-message').textContent === 'Marker deleted.'",
        10,
    );
    // The files' copies: on the media storage and on the nearline folder the policy filled.
    b.wait_for(
        "the copies of each file",
        "const c = [...document.querySelectorAll('.file-copies')]; return c.length === 2 && c.every((x) => x.querySelector('tr[data-storage=media]') && x.querySelector('tr[data-storage=nearline]'))",
        10,
    );
    let copies = b.eval(
        "return document.querySelector('.file-copies tr[data-storage=nearline]').textContent",
        &[],
    );
    assert!(copies.as_str().unwrap().contains("ok"), "{copies}");
}

fn header<'a>(r: &'a ureq::Response, name: &str) -> &'a str {
    r.header(name).unwrap_or("")
}

#[test]
fn the_page_carries_its_security_headers_and_uploads_need_the_panel_header() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let r = ureq::get(&format!("{}/", s.base)).call().unwrap();
    let csp = header(&r, "content-security-policy").to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(header(&r, "x-frame-options"), "DENY");
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    let page = r.into_string().unwrap();
    assert!(page.contains("/panel/js/app.js") && !page.contains("<script>"));
    let js = ureq::get(&format!("{}/panel/js/app.js", s.base))
        .call()
        .unwrap();
    assert!(header(&js, "content-type").starts_with("text/javascript"));
    assert!(header(&js, "content-security-policy").contains("script-src 'self'"));
    match ureq::get(&format!("{}/panel/js/nope.js", s.base)).call() {
        Err(ureq::Error::Status(404, _)) => {}
        other => panic!("a missing panel file: {other:?}"),
    }
    // The API still answers its own 404 envelope beside the panel.
    let r = s.call("GET", "/v1/nope", Some(&s.admin), None);
    assert_eq!((r.status, r.code()), (404, "not_found"));
    // The machine's figures the dashboard shows: for any logged-in user, documented.
    assert_eq!(s.call("GET", "/v1/system", None, None).status, 401);
    let (_, viewer) = s.user("val", "viewer");
    let sys = s.call("GET", "/v1/system", Some(&viewer), None);
    assert_eq!(sys.status, 200, "{}", sys.body);
    let load = sys.body["load"].as_array().unwrap();
    assert_eq!(load.len(), 3);
    let cpu = sys.body["cpu_percent"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&cpu), "{}", sys.body);
    assert!(sys.body["uptime_s"].as_f64().unwrap() > 0.0);
    assert!(sys.body["service_rss_bytes"].as_u64().unwrap() > 0);
    let doc = s.call("GET", "/openapi.json", None, None);
    for path in ["/v1/system", "/v1/live/outputs/{id}/switch"] {
        assert!(
            doc.body["paths"][path]["get"].is_object()
                || doc.body["paths"][path]["post"].is_object(),
            "{path} is not documented"
        );
    }

    // The login cookie: HttpOnly, SameSite=Strict.
    let r = ureq::post(&format!("{}/v1/auth/login", s.base))
        .send_json(json!({"username": "admin", "password": common::server::ADMIN_PASSWORD}))
        .unwrap();
    let cookie = header(&r, "set-cookie").to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    // A cookie-authenticated upload (not JSON) is refused unless it carries the panel's header,
    // which a cross-site page cannot set without a preflight.
    let tus = |panel: bool| {
        let mut req = ureq::post(&format!("{}/v1/ingest/tus", s.base))
            .set("cookie", &session)
            .set("tus-resumable", "1.0.0")
            .set("upload-length", "10")
            .set("upload-metadata", "filename YS5tcDQ=");
        if panel {
            req = req.set("antenne-panel", "1");
        }
        match req.call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(c, _)) => c,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(tus(false), 403);
    assert_eq!(tus(true), 201);
}

#[test]
fn the_panel_in_chromium() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let file = media(dir.path(), "Evening News.mp4");
    let s = start(dir.path());
    let b = Browser::start(W, H);
    let base = s.base.clone();

    // ---- log in (keyboard only: type, Enter) ----
    b.goto(&format!("{base}/"));
    b.wait("form#login", 20);
    b.screenshot("01-login");
    b.type_into("input[name=username]", "admin");
    b.type_into("input[name=password]", "wrong");
    b.keys("input[name=password]", "\u{E007}");
    b.wait_for(
        "a wrong password is said in words",
        "return document.querySelector('#login-message').textContent.includes('Wrong user name or password')",
        10,
    );
    b.type_into("input[name=password]", common::server::ADMIN_PASSWORD);
    b.keys("input[name=password]", "\u{E007}");
    b.wait("#d-catalog h2", 20);
    let cookies = b.cookies();
    let c = cookies
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "antenne_session")
        .expect("the session cookie");
    assert_eq!(c["httpOnly"], true);
    assert_eq!(c["sameSite"], "Strict");
    let session = c["value"].as_str().unwrap().to_string();
    assert_eq!(
        b.eval("return document.cookie", &[]),
        json!(""),
        "the page cannot read the session"
    );

    // ---- upload, then the workflow's jobs reach the end without a reload ----
    b.click("header nav a[href='#/ingest']");
    b.wait("#upload-workflow option[value=panel]", 10);
    b.eval(
        "document.querySelector('#upload-workflow').value = 'panel'; window.__same_page = 1",
        &[],
    );
    b.choose_file("#upload-file", &file);
    b.wait_for(
        "the upload ends",
        "const s = document.querySelector('#uploads li .state'); return !!s && (s.textContent === 'uploaded' || s.textContent === 'failed')",
        30,
    );
    assert_eq!(
        b.text("#uploads li .state"),
        "uploaded",
        "{}",
        b.text("#uploads")
    );
    let t_upload = Instant::now();
    b.wait_for(
        "the workflow's last job succeeds, followed live",
        "const l = document.querySelector('#uploads .job-line'); return !!l && l.dataset.done === '1'",
        120,
    );
    let workflow_s = t_upload.elapsed().as_secs_f64();
    assert_eq!(
        b.eval("return window.__same_page", &[]),
        json!(1),
        "no reload"
    );
    assert!(b.text("#uploads .job-line").contains("succeeded"));
    b.screenshot("02-ingest");
    let asset_id: i64 = b
        .eval(
            "return document.querySelector('#uploads a.asset-link').textContent",
            &[],
        )
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let a = s.call(
        "GET",
        &format!("/v1/assets/{asset_id}"),
        Some(&s.admin),
        None,
    );
    assert_eq!(a.body["title"], "Evening News");
    // An asset whose title is markup, another one for the viewer not to see.
    let r = s.call(
        "POST",
        "/v1/assets",
        Some(&s.admin),
        Some(&json!({"title": XSS, "kind": "promo", "tags": ["xss"]})),
    );
    assert_eq!(r.status, 201);
    let xss_id = r.body["id"].as_i64().unwrap();

    // ---- catalog: search as you type, open the asset ----
    b.click("header nav a[href='#/catalog']");
    b.wait("#search", 10);
    let t_search = Instant::now();
    b.type_into("#search", "even");
    b.wait_for(
        "the search finds the upload",
        "const c = document.querySelector('#count'); return !!c && c.textContent === '1 asset' && document.querySelectorAll('#results .asset-link').length === 1",
        10,
    );
    let search_ms = t_search.elapsed().as_millis();
    b.screenshot("03-catalog");
    // The title made of markup is text, never markup.
    b.type_into("#search", "xss");
    b.wait_for(
        "the markup title is found",
        "const t = document.querySelectorAll('#results .title'); return t.length === 1 && t[0].textContent.endsWith('Promo')",
        10,
    );
    assert_eq!(b.text("#results .title"), XSS);
    assert_eq!(b.count("#results img[src=x]"), 0);
    b.click("#results .asset-link");
    b.wait("#asset-title", 10);
    assert_eq!(b.text("#asset-title"), XSS);
    assert_eq!(b.count("img[src=x]"), 0);
    assert_eq!(
        b.eval("return window.__xss === undefined", &[]),
        json!(true)
    );
    b.screenshot("04-xss-title-as-text");

    // ---- the asset page: the proxy plays, timecode, QC marks, files ----
    b.goto(&format!("{base}/#/asset/{asset_id}"));
    b.wait("video#player", 10);
    let h264 = b.eval(
        "return document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.4d401e, mp4a.40.2\"')",
        &[],
    );
    assert_ne!(
        h264,
        json!(""),
        "this Chromium cannot play H.264 MP4 proxies"
    );
    b.wait_for(
        "the proxy is loaded",
        "return document.querySelector('#player').readyState >= 2",
        20,
    );
    let tc0 = b.text("#timecode");
    b.eval("document.querySelector('#player').play()", &[]);
    b.wait_for(
        "the proxy plays",
        "return document.querySelector('#player').currentTime > 0.8",
        20,
    );
    // A decoded frame: its pixels drawn into a canvas are a picture, not one flat colour.
    let px = b.eval(
        "const v = document.querySelector('#player'); const c = document.createElement('canvas');
         c.width = v.videoWidth; c.height = v.videoHeight; const g = c.getContext('2d');
         g.drawImage(v, 0, 0); const d = g.getImageData(0, 0, c.width, c.height).data;
         const seen = new Set(); for (let i = 0; i < d.length; i += 4 * 97) seen.add(d[i] >> 5 | (d[i+1] >> 5) << 3 | (d[i+2] >> 5) << 6);
         return [c.width, c.height, seen.size]",
        &[],
    );
    let files = s.call(
        "GET",
        &format!("/v1/assets/{asset_id}/files"),
        Some(&s.admin),
        None,
    );
    let proxy = files.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["role"] == "proxy")
        .expect("a proxy")
        .clone();
    assert_eq!(
        (&px[0], &px[1]),
        (&proxy["width"], &proxy["height"]),
        "{px}"
    );
    assert!(
        px[2].as_u64().unwrap() > 8,
        "a decoded frame has colours: {px}"
    );
    b.eval("document.querySelector('#player').pause()", &[]);
    assert_ne!(
        b.text("#timecode"),
        tc0,
        "the timecode follows the playhead"
    );
    // Frame stepping by keyboard.
    let before = b.eval("return document.querySelector('#player').currentTime", &[]);
    b.eval("document.activeElement.blur()", &[]);
    b.cmd(
        "POST",
        "/actions",
        Some(json!({"actions": [{"type": "key", "id": "k", "actions": [
            {"type": "keyDown", "value": "."}, {"type": "keyUp", "value": "."}]}]})),
    )
    .unwrap();
    b.wait_for(
        "one frame later",
        &format!(
            "const t = document.querySelector('#player').currentTime; return Math.abs(t - {} - 0.04) < 0.02",
            before.as_f64().unwrap()
        ),
        5,
    );
    // QC drew the black second on the timeline; a click seeks there.
    b.wait(".timeline .mark", 10);
    b.click(".timeline .mark");
    b.wait_for(
        "the click on the QC mark seeks to it",
        "const t = document.querySelector('#player').currentTime; return t > 0.9 && t < 1.2",
        5,
    );
    assert_eq!(b.count("details.file"), 2, "source and proxy");
    let scroll = b.eval("return document.documentElement.scrollWidth", &[]);
    let wide = b.eval(
        "return [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > innerWidth + 1).slice(0, 5).map((e) => e.tagName + '.' + e.className + '#' + e.id)",
        &[],
    );
    assert!(
        scroll.as_u64().unwrap() <= u64::from(W),
        "no sideways scroll at 1280: {scroll}, {wide}"
    );
    b.screenshot("05-asset");

    // ---- metadata: a conflicting edit says who changed what, and offers to reload ----
    let version = a.body["version"].as_i64().unwrap();
    let (_, editor) = s.user("eddie", "admin");
    let r = s.call(
        "PATCH",
        &format!("/v1/assets/{asset_id}"),
        Some(&editor),
        Some(&json!({"title": "Evening News (late)", "version": version})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    b.type_into("#metadata textarea[name=description]", "Tonight's bulletin");
    b.click("#save");
    b.wait("#conflict-reload", 10);
    let msg = b.text("#metadata-message");
    assert!(msg.contains("eddie changed this asset"), "{msg}");
    assert!(
        msg.contains("title: “Evening News” → “Evening News (late)”"),
        "{msg}"
    );
    assert!(!msg.contains('{'), "no raw JSON: {msg}");
    b.screenshot("06-conflict");
    b.click("#conflict-reload");
    b.wait_for(
        "their version is in the form",
        "return document.querySelector('#metadata input[name=title]').value === 'Evening News (late)'",
        5,
    );
    b.type_into("#metadata textarea[name=description]", "Tonight's bulletin");
    b.click("#save");
    b.wait_for(
        "saved",
        "return document.querySelector('#metadata-message').textContent.startsWith('Saved')",
        10,
    );
    let a = s.call(
        "GET",
        &format!("/v1/assets/{asset_id}"),
        Some(&s.admin),
        None,
    );
    assert_eq!(a.body["description"], "Tonight's bulletin");
    assert_eq!(a.body["title"], "Evening News (late)");

    // A live source looping the upload, for the live screen.
    let r = s.call(
        "POST",
        "/v1/live/sources",
        Some(&s.admin),
        Some(&json!({"name": "loop", "kind": "file_loop", "asset_id": asset_id})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let source = r.body["id"].as_i64().unwrap();
    // A second loop as its backup, and an output with failover between them.
    let r = s.call(
        "POST",
        "/v1/live/sources",
        Some(&s.admin),
        Some(&json!({"name": "loop-b", "kind": "file_loop", "asset_id": asset_id})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let backup = r.body["id"].as_i64().unwrap();
    let rx = common::live::Receiver::start();
    let r = s.call(
        "POST",
        "/v1/live/outputs",
        Some(&s.admin),
        Some(
            &json!({"name": "air", "kind": "udp", "source_id": source, "backup_id": backup,
                    "address": format!("127.0.0.1:{}", rx.port), "profile": "live-test-180p"}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let output = r.body["id"].as_i64().unwrap();

    // ---- jobs: cancel one ----
    let r = s.call(
        "POST",
        "/v1/jobs/noop",
        Some(&s.admin),
        Some(&json!({"sleep_ms": 120000})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let job = r.body["id"].as_i64().unwrap();
    b.click("header nav a[href='#/jobs']");
    let row = format!("#jobs tr[data-job='{job}']");
    b.wait(&format!("{row} button.cancel"), 10);
    assert_eq!(
        b.eval(
            "return [...document.querySelectorAll('#jobs tr[data-state=succeeded] [role=progressbar]')].map((e) => e.getAttribute('aria-valuenow'))",
            &[]
        ),
        json!(["100", "100"]),
        "the workflow's two jobs at 100 %"
    );
    b.screenshot("07-jobs");
    b.click(&format!("{row} button.cancel"));
    b.wait_for(
        "the job shows cancelled",
        &format!("const r = document.querySelector(\"{row}\"); return !!r && r.dataset.state === 'cancelled'"),
        10,
    );
    let j = s.call("GET", &format!("/v1/jobs/{job}"), Some(&s.admin), None);
    assert_eq!(j.body["state"], "cancelled");
    // Retry queues it again; cancelled once more so that it does not hold the slot.
    b.click(&format!("{row} button.retry"));
    b.wait_for(
        "the job is queued again",
        &format!("const r = document.querySelector(\"{row}\"); return !!r && (r.dataset.state === 'queued' || r.dataset.state === 'running')"),
        10,
    );
    let r = s.call(
        "POST",
        &format!("/v1/jobs/{job}/cancel"),
        Some(&s.admin),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    b.wait_for(
        "the cancel made elsewhere shows live",
        &format!("const r = document.querySelector(\"{row}\"); return !!r && r.dataset.state === 'cancelled'"),
        10,
    );

    // ---- the other screens ----
    b.click("header nav a[href='#/dashboard']");
    b.wait("#d-jobs .figures", 10);
    b.screenshot("08-dashboard");
    b.click("header nav a[href='#/live']");
    let card = format!("#sources [data-source='{source}']");
    b.wait(&card, 10);
    // The preview is fetched again every 3 s until the monitor has a picture.
    b.wait_for(
        "the source's preview picture",
        &format!("const i = document.querySelector(\"{card} img.preview\"); return !!i && i.complete && i.naturalWidth > 0"),
        20,
    );
    b.wait_for(
        "the source live with its audio meters and figures",
        &format!("const c = document.querySelector(\"{card}\"); return !!c && c.querySelector('.state').textContent === 'live' && c.querySelectorAll('meter').length > 0 && c.querySelector('p.small').textContent.includes('Mb/s')"),
        20,
    );
    // The manual failover switch: the output on its primary, then on its backup by a click.
    let fo = format!("#outputs .failover[data-output='{output}']");
    b.wait_for(
        "the output on air from its primary",
        &format!("const o = document.querySelector(\"{fo} .on-air\"); return !!o && o.textContent === 'loop'"),
        20,
    );
    b.wait_for(
        "the backup live",
        &format!("const c = document.querySelector(\"#sources [data-source='{backup}'] .state\"); return !!c && c.textContent === 'live'"),
        20,
    );
    b.click(&format!("{fo} button.take-backup"));
    b.wait_for(
        "the output on air from its backup, shown live",
        &format!("const o = document.querySelector(\"{fo} .on-air\"); return !!o && o.textContent === 'loop-b' && document.querySelector(\"{fo}\").textContent.includes(\"operator's choice\")"),
        15,
    );
    assert!(b.text("#live-message").contains("switching to its backup"));
    let st = s.call(
        "GET",
        &format!("/v1/live/outputs/{output}/stats"),
        Some(&s.admin),
        None,
    );
    assert_eq!(st.body["last_switch"]["to"], "loop-b", "{}", st.body);
    b.screenshot("09-live");
    let r = s.call(
        "POST",
        &format!("/v1/live/outputs/{output}/stop"),
        Some(&s.admin),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    drop(rx);
    b.click(&format!("{card} .actions button"));
    b.wait_for(
        "the source stopped from the screen",
        &format!("const c = document.querySelector(\"{card}\"); return !!c && c.querySelector('.state').textContent === 'stopped'"),
        15,
    );
    let r = s.call(
        "GET",
        &format!("/v1/live/sources/{source}"),
        Some(&s.admin),
        None,
    );
    assert_eq!(r.body["running"], false);
    let channel = playout(&b, &s, a.body["house_id"].as_str().unwrap(), xss_id);
    storage(&b, &s);
    b.click("header nav a[href='#/dashboard']");
    b.wait_for(
        "the machine's figures, storages and channels on the dashboard",
        "const c = document.querySelector('#d-cpu'), m = document.querySelector('#d-mem'); \
         return !!c && /^\\d+ %$/.test(c.textContent) && !!m && /^\\d+ %$/.test(m.textContent) \
           && !!document.querySelector('#d-storage [data-storage=nearline]') \
           && document.querySelector('#d-channels').textContent.includes('panel-1') \
           && document.querySelector('#d-gpu').textContent.startsWith('GPU sessions')",
        10,
    );
    let sys = s.call("GET", "/v1/system", Some(&s.admin), None);
    assert_eq!(sys.status, 200, "{}", sys.body);
    let total = sys.body["memory_total_bytes"].as_u64().unwrap();
    let used = sys.body["memory_used_bytes"].as_u64().unwrap();
    assert!(total > 0 && used > 0 && used <= total, "{}", sys.body);
    assert!(sys.body["cpus"].as_u64().unwrap() >= 1);
    let mem_pct = b.text("#d-mem");
    let shown: f64 = mem_pct.trim_end_matches(" %").parse().unwrap();
    assert!(
        (shown - used as f64 * 100.0 / total as f64).abs() < 10.0,
        "{mem_pct} vs {}",
        sys.body
    );
    b.screenshot("16-dashboard");
    markers(&b, &s, asset_id);
    // An admin makes a viewer in the users screen.
    b.click("header nav a[href='#/admin']");
    b.wait("#new-user", 10);
    b.type_into("#new-user input[aria-label='new user name']", "vera");
    b.eval(
        "document.querySelector('#new-user select').value = 'viewer'",
        &[],
    );
    b.type_into("#new-user input[type=password]", "vera-password-1");
    b.click("#new-user button[type=submit]");
    b.wait_for(
        "the user is listed",
        "return document.querySelector('#users').textContent.includes('vera')",
        10,
    );
    // An API token made in the same screen: its secret is shown once, and it works.
    b.type_into("#tokens input[aria-label='token name']", "playout-sync");
    b.click("#tokens button[type=submit]");
    b.wait("#tokens p.ok code", 10);
    let secret = b.text("#tokens p.ok code");
    let me = s.call("GET", "/v1/users/me", Some(&secret), None);
    assert_eq!(
        (me.status, me.body["username"].as_str()),
        (200, Some("admin"))
    );
    assert!(b.text("#tokens table").contains("playout-sync"));
    b.screenshot("10-users");
    let users = s.call("GET", "/v1/users", Some(&s.admin), None);
    let vera = users.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "vera")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = s.call(
        "PUT",
        &format!("/v1/assets/{asset_id}/acl"),
        Some(&s.admin),
        Some(
            &json!({"grants": [{"principal": "user", "id": vera, "perms": ["read", "download"]}]}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // A channel whose rundown holds only what the viewer may read.
    let r = s.call(
        "POST",
        "/v1/channels",
        Some(&s.admin),
        Some(&json!({"name": "panel-2", "rate": "25"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let shared_channel = r.body["id"].as_i64().unwrap();
    let r = s.call(
        "PUT",
        &format!("/v1/channels/{shared_channel}/schedule"),
        Some(&s.admin),
        Some(&json!({"items": [{"id": "news", "asset_id": asset_id, "start": rfc3339(unix_now() + 600)}]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // ---- the session ends: the next step shows the login screen ----
    let r = s.call("POST", "/v1/auth/logout", Some(&session), None);
    assert_eq!(r.status, 204);
    // No click needed: the event stream ends with the session, and the page finds out why.
    let t_end = Instant::now();
    b.wait("form#login", 20);
    let ended_s = t_end.elapsed().as_secs_f64();
    assert!(b.text("#login-message").contains("session has ended"));
    b.screenshot("11-session-ended");

    // ---- a viewer sees what they may read, and no control to change it ----
    b.type_into("input[name=username]", "vera");
    b.type_into("input[name=password]", "vera-password-1");
    b.click("form#login button[type=submit]");
    b.wait_for(
        "the viewer is logged in",
        "const w = document.querySelector('header .who'); return !!w && w.textContent.includes('vera (viewer)')",
        10,
    );
    assert_eq!(b.count("header nav a[href='#/jobs']"), 0);
    assert_eq!(b.count("header nav a[href='#/ingest']"), 0);
    b.goto(&format!("{base}/#/catalog"));
    b.wait_for(
        "the viewer's catalog",
        "const c = document.querySelector('#count'); return !!c && c.textContent === '1 asset'",
        10,
    );
    assert!(b.text("#results").contains("Evening News (late)"));
    assert!(!b.text("#results").contains("Promo"));
    b.click("#results .asset-link");
    b.wait("#read-only", 10);
    assert_eq!(b.count("#save"), 0);
    assert_eq!(b.count("#metadata input:not([readonly])"), 0);
    assert_eq!(b.count("[aria-label=sharing]"), 0);
    b.wait("#marker-list li[data-marker]", 10);
    assert_eq!(b.count("#marker-add"), 0);
    assert_eq!(b.count("#marker-list button.delete"), 0);
    b.screenshot("12-viewer-asset");
    // The new screens: playout without its controls, no storage screen; the machine's figures.
    assert_eq!(b.count("header nav a[href='#/storage']"), 0);
    b.goto(&format!("{base}/#/playout/{channel}"));
    b.wait("#channels tr[data-channel]", 10);
    // A rundown holding an asset the viewer may not read is not shown to them, in words.
    b.wait("#rundown td.error", 10);
    let why = b.text("#rundown td.error");
    assert!(why.contains("may not have access"), "{why}");
    b.goto(&format!("{base}/#/playout/{shared_channel}"));
    b.wait("#rundown tr[data-item=news]", 10);
    b.wait_for(
        "the viewer's next event",
        "const x = document.querySelector('#next .nn-title'); return !!x && x.textContent.startsWith('Evening News')",
        10,
    );
    for control in [
        "#channel-controls",
        "#insert",
        "#rundown button",
        "#cue",
        "#channel-start",
    ] {
        assert_eq!(b.count(control), 0, "{control} shown to a viewer");
    }
    b.screenshot("18-viewer-playout");
    b.goto(&format!("{base}/#/storage"));
    b.wait("#d-cpu", 10);
    assert_eq!(b.count("#run-audit"), 0);
    assert_eq!(b.count("#d-storage:not([hidden])"), 0);
    b.goto(&format!("{base}/#/asset/{xss_id}"));
    b.wait("main p.error", 10);
    let err = b.text("main p.error");
    assert!(
        err.contains("not found") && err.contains("may not have access"),
        "{err}"
    );
    assert!(!err.contains('{'));

    // The viewer changes their own password: a wrong current one is said in words.
    b.click("header .who a");
    b.wait("form#password", 10);
    let pw = |cur: &str, new: &str| {
        let fields = ["Current password", "New password", "New password again"];
        for (label, v) in fields.iter().zip([cur, new, new]) {
            b.eval(
                "const l = [...document.querySelectorAll('#password label')].find((l) => l.textContent === arguments[0]); \
                 document.getElementById(l.htmlFor).value = arguments[1]",
                &[json!(label), json!(v)],
            );
        }
        b.click("form#password button[type=submit]");
    };
    pw("not-my-password", "vera-new-password-2");
    b.wait_for(
        "a wrong current password is explained",
        "return document.querySelector('#account-message').textContent.includes('current password is wrong')",
        10,
    );
    pw("vera-password-1", "vera-new-password-2");
    b.wait_for(
        "the password is changed",
        "return document.querySelector('#account-message').textContent.startsWith('Password changed')",
        10,
    );
    b.screenshot("13-account");
    b.click("#logout");
    b.wait("form#login", 10);
    b.type_into("input[name=username]", "vera");
    b.type_into("input[name=password]", "vera-new-password-2");
    b.keys("input[name=password]", "\u{E007}");
    b.wait_for(
        "the new password logs in",
        "const w = document.querySelector('header .who'); return !!w && w.textContent.includes('vera (viewer)')",
        10,
    );

    // Nothing went wrong in the page's own code (the browser also logs each refused request,
    // which the page explained in words: those are expected here).
    let bad: Vec<_> = b
        .console()
        .into_iter()
        .filter(|(l, m)| l == "SEVERE" && !m.contains("Failed to load resource"))
        .collect();
    assert!(bad.is_empty(), "console errors: {bad:?}");
    eprintln!(
        "panel: workflow (QC + proxy) followed live in {workflow_s:.1} s; first search results {search_ms} ms after typing; the login screen {ended_s:.1} s after the session was ended elsewhere; whole test {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let _: Option<Value> = None;
    let _ = Duration::ZERO;
}
