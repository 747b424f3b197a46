//! Playout channels over HTTP against the real service, on SQLite and PostgreSQL: channels
//! declared and made over the API, rundowns loaded as JSON, CSV and BXF with per-item warnings
//! (missing asset, rights window, gap), on-air edits that never change what has aired, EPG
//! (XMLTV, now/next), as-run exports, the engine seam, rights, the change feed, bad input and
//! a restart. Media: two clips made by ffmpeg, ingested through the API.

mod common;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use common::pg::Pg;
use common::server::{clip, Server};
use serde_json::{json, Value};

fn start(url: Option<&str>, roots: &Path, data: Option<&Path>, declare: bool) -> Server {
    let mut env = vec![("ANTENNE_INGEST_ROOTS", format!("[\"{}\"]", roots.display()))];
    if declare {
        env.push((
            "ANTENNE_PLAYOUT_CHANNELS",
            r#"[{name = "declared", rate = "30000/1001", territory = "CH"}]"#.to_string(),
        ));
    }
    if let Some(u) = url {
        env.push(("ANTENNE_CATALOG_URL", u.to_string()));
    }
    if let Some(d) = data {
        env.push(("ANTENNE_STORAGE_DATA_DIR", d.display().to_string()));
    }
    Server::start(&env)
}

/// Parses the whole document with an XML reader: it must be well-formed.
fn well_formed(xml: &str) {
    let mut r = quick_xml::Reader::from_str(xml);
    loop {
        match r.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("not well-formed XML: {e}\n{xml}"),
        }
    }
}

fn rfc3339(unix_s: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_s)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn item<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no item {id} in {v}"))
}

fn codes(v: &Value, id: &str) -> Vec<String> {
    item(v, id)["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap().to_string())
        .collect()
}

fn channels(url: Option<&str>) {
    let media = tempfile::tempdir().unwrap();
    let s = start(url, media.path(), None, true);
    let a = Some(s.admin.as_str());

    // Two ready assets; B may air in FR only.
    let ingest = |name: &str, seed| {
        let f = clip(media.path(), name, seed);
        let r = s.call("POST", "/v1/ingest", a, Some(&json!({"path": f})));
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["asset"].clone()
    };
    let asset_a = ingest("opener.mp4", 11);
    let asset_b = ingest("film.mp4", 12);
    let (house_a, house_b) = (
        asset_a["house_id"].as_str().unwrap().to_string(),
        asset_b["house_id"].as_str().unwrap().to_string(),
    );
    let r = s.call(
        "POST",
        &format!("/v1/assets/{}/rights", asset_b["id"]),
        a,
        Some(&json!({"territories": ["FR"]})),
    );
    assert_eq!(r.status, 201, "{}", r.body);

    // The declared channel is there, and changed in antenne.toml only.
    let r = s.call("GET", "/v1/channels", a, None);
    assert_eq!(r.status, 200);
    let declared = &r.body["items"][0];
    assert_eq!(
        (declared["name"].as_str(), declared["origin"].as_str()),
        (Some("declared"), Some("config"))
    );
    assert_eq!(declared["rate"], "30000/1001");
    let did = declared["id"].as_i64().unwrap();
    let r = s.call(
        "PUT",
        &format!("/v1/channels/{did}"),
        a,
        Some(&json!({"name": "declared"})),
    );
    assert_eq!((r.status, r.code()), (409, "conflict"));
    assert_eq!(
        s.call("DELETE", &format!("/v1/channels/{did}"), a, None)
            .status,
        409
    );

    // A channel over the API.
    let r = s.call(
        "POST",
        "/v1/channels",
        a,
        Some(
            &json!({"name": "ch1", "rate": "25", "territory": "CH", "platform": "linear",
            "outputs": ["udp://127.0.0.1:5000"], "filler": [house_a]}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(r.body["running"], false);
    let base = format!("/v1/channels/{id}");
    for (body, field) in [
        (json!({"name": "ch1"}), None),
        (json!({"name": "bad name!"}), Some("name")),
        (json!({"name": "x", "rate": "7"}), Some("rate")),
        (
            json!({"name": "x", "outputs": ["ftp://x"]}),
            Some("outputs"),
        ),
        (json!({"name": "x", "colour": "red"}), None),
    ] {
        let r = s.call("POST", "/v1/channels", a, Some(&body));
        assert!(r.status == 409 || r.status == 422, "{body}: {}", r.body);
        if let Some(f) = field {
            assert_eq!(r.body["error"]["field"], f, "{}", r.body);
        }
    }
    assert_eq!(s.call("GET", "/v1/channels/999", a, None).status, 404);

    // A rundown as JSON: a hard start at a second and a frame, soft items after it, a missing
    // asset, one outside its rights window, a gap before a later hard start, a live event and
    // a break.
    let t = now_s() + 120;
    let rundown = json!({"items": [
        {"id": "open", "house_id": house_a, "start": rfc3339(t), "frame": 5,
         "in": "00:00:00:10", "out": 1.52,
         "secondary": [{"at": 0, "logo": true}]},
        {"id": "film", "house_id": house_b,
         "breaks": [{"at": 1, "duration": 0.5, "kind": "time_signal"}]},
        {"id": "missing", "house_id": "NOPE-1", "out": 5},
        {"id": "late", "asset_id": asset_a["id"], "start": rfc3339(t + 300)},
        {"id": "studio", "type": "live", "source": "studio-1", "duration": 30},
        {"id": "brk", "type": "break", "duration": 10, "scte35": "time_signal"},
    ]});
    let r = s.call("PUT", &format!("{base}/schedule"), a, Some(&rundown));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = s.call("GET", &format!("{base}/schedule"), a, None).body;
    assert_eq!(v["version"], 1);
    let open = item(&v, "open");
    // 25 fps from a whole-second epoch: the second's first frame + 5.
    assert_eq!(open["slot"]["start"], rfc3339(t).replace('Z', ".2Z"));
    assert_eq!(open["slot"]["frames"], 28, "in at frame 10, out at 38");
    assert!(codes(&v, "open").is_empty(), "{v}");
    assert_eq!(codes(&v, "film"), ["rights"], "{v}");
    assert_eq!(codes(&v, "missing"), ["asset_missing"], "{v}");
    assert_eq!(codes(&v, "late"), ["gap"], "{v}");
    assert_eq!(item(&v, "late")["slot"]["start"], rfc3339(t + 300));
    assert_eq!(item(&v, "late")["house_id"], house_a.as_str());
    let film = item(&v, "film");
    assert_eq!(
        film["slot"]["start_frame"].as_u64().unwrap(),
        open["slot"]["start_frame"].as_u64().unwrap() + 28,
        "soft: right after"
    );
    assert_eq!(item(&v, "studio")["slot"]["frames"], 750);
    assert!(
        item(&v, "missing")["warnings"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("NOPE-1"),
        "{v}"
    );

    // The change feed carries the update and the warnings.
    let ch = s.call("GET", "/v1/changes?limit=1000", a, None).body;
    let feed: Vec<(String, String)> = ch["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] == id)
        .map(|c| {
            (
                c["object"].as_str().unwrap().to_string(),
                c["op"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        feed.contains(&("schedule".into(), "updated".into())),
        "{feed:?}"
    );
    assert!(
        feed.contains(&("schedule".into(), "warning".into())),
        "{feed:?}"
    );

    // EPG: XMLTV and now/next.
    let (r, xml) = s.request("GET", &format!("{base}/epg.xml"), a, &[], None);
    assert_eq!(r.status, 200);
    let xml = String::from_utf8(xml).unwrap();
    well_formed(&xml);
    assert!(xml.contains("<programme start=\""), "{xml}");
    assert!(xml.contains("<title>opener</title>"), "{xml}");
    let n = s.call("GET", &format!("{base}/now"), a, None).body;
    assert!(n["now"].is_null(), "{n}");
    assert_eq!(n["next"]["item"], "open");
    let left = n["next_in_s"].as_f64().unwrap();
    assert!((100.0..=121.0).contains(&left), "{n}");

    // CSV: a stale version is refused; then it replaces the rundown.
    let csv = format!(
        "id,type,start,frame,house_id,in,out,title\n\
         c1,asset,{},0,{house_a},,1,\"Opener, short\"\n\
         c2,live,,,,,,\n",
        rfc3339(t)
    );
    let r = s.raw(
        "PUT",
        &format!("{base}/schedule?version=0"),
        a,
        Some(("text/csv", csv.clone().into_bytes())),
    );
    assert_eq!((r.status, r.code()), (409, "conflict"), "{}", r.body);
    let r = s.raw(
        "PUT",
        &format!("{base}/schedule?version=1"),
        a,
        Some(("text/csv", csv.into_bytes())),
    );
    assert_eq!(r.status, 422, "a live item needs its source: {}", r.body);
    assert_eq!(r.body["error"]["field"], "source");

    // BXF: programme, two spots (one break over both) and a programme.
    let date = &rfc3339(t)[..10];
    let tc = &rfc3339(t)[11..19];
    // A spot follows the previous event (no start of its own).
    let ev = |id: &str, tc: Option<&str>, dur: &str, house: &str, spot: bool| {
        let when = match tc {
            Some(tc) => format!(
                "<StartDateTime><SmpteDateTime broadcastDate=\"{date}\"><SmpteTimeCode>{tc}</SmpteTimeCode></SmpteDateTime></StartDateTime>"
            ),
            None => "<StartMode>Follow</StartMode>".to_string(),
        };
        format!(
            "<ScheduledEvent><EventData eventType=\"Primary\"><EventId><EventId>{id}</EventId></EventId>{}{when}\
             <LengthOption><Duration><SmpteDuration><SmpteTimeCode>{dur}</SmpteTimeCode></SmpteDuration></Duration></LengthOption></EventData>\
             <Content><ContentId><HouseNumber>{house}</HouseNumber></ContentId><Name>{id} title</Name></Content></ScheduledEvent>",
            if spot { "<PrimaryEvent><NonProgramEvent/></PrimaryEvent>" } else { "" }
        )
    };
    let bxf = format!(
        "<?xml version=\"1.0\"?><BxfMessage xmlns=\"http://smpte-ra.org/schemas/2021/2008/BXF\"><BxfData action=\"add\"><Schedule><ScheduleElements>{}{}{}</ScheduleElements></Schedule></BxfData></BxfMessage>",
        ev("p1", Some(&format!("{tc}:00")), "00:00:01:00", &house_a, false),
        ev("s1", None, "00:00:00:12", &house_a, true),
        ev("s2", None, "00:00:00:13", &house_a, true),
    );
    let r = s.raw(
        "PUT",
        &format!("{base}/schedule?version=1"),
        a,
        Some(("application/xml", bxf.into_bytes())),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.body;
    assert_eq!(v["version"], 2);
    assert_eq!(item(&v, "p1")["slot"]["start"], rfc3339(t));
    assert_eq!(item(&v, "p1")["title"], "p1 title");
    let s1 = item(&v, "s1");
    assert_eq!(
        s1["slot"]["start_frame"].as_u64().unwrap(),
        item(&v, "p1")["slot"]["start_frame"].as_u64().unwrap() + 25
    );
    assert_eq!(
        s1["breaks"][0]["duration"], "00:00:01:00",
        "one break over both spots"
    );
    assert!(item(&v, "s2")["breaks"].is_null());

    // Append as JSON (POST), then edits.
    let r = s.call(
        "POST",
        &format!("{base}/schedule"),
        a,
        Some(&json!({"items": [
            {"id": "x1", "house_id": house_a, "out": 2},
            {"id": "live1", "type": "live", "source": "studio-1"},
            {"id": "x2", "house_id": house_a, "out": 2, "start": rfc3339(t + 3600)},
        ]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let edit = |e: Value| s.call("POST", &format!("{base}/schedule/edits"), a, Some(&e));
    let r = edit(
        json!({"op": "insert", "after": "s2", "item": {"id": "ins", "house_id": house_a, "out": 1}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        item(&r.body, "ins")["slot"]["start_frame"],
        item(&r.body, "s2")["slot"]["start_frame"].as_u64().unwrap() + 13
    );
    let r = edit(json!({"op": "skip", "item": "x1"}));
    assert_eq!(r.status, 200);
    assert!(item(&r.body, "x1")["slot"].is_null());
    let r =
        edit(json!({"op": "replace", "item": "ins", "with": {"house_id": house_a, "out": 0.4}}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(item(&r.body, "ins")["slot"]["frames"], 10);
    let r = edit(json!({"op": "move", "item": "ins", "after": "p1"}));
    assert_eq!(r.status, 200);
    assert_eq!(r.body["items"][1]["id"], "ins");
    assert_eq!(edit(json!({"op": "skip", "item": "nope"})).status, 404);
    assert_eq!(edit(json!({"op": "dance"})).status, 422);
    // Cue the next live event now: it goes on air at this frame.
    let r = s.call("POST", &format!("{base}/cue"), a, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let n = s.call("GET", &format!("{base}/now"), a, None).body;
    assert_eq!(
        (n["now"]["item"].as_str(), n["now"]["kind"].as_str()),
        (Some("live1"), Some("live")),
        "{n}"
    );
    assert_eq!(
        n["next"]["item"], "x2",
        "the hard start after it stays: {n}"
    );
    // What has aired (the live event is on air) does not move.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let r = edit(json!({"op": "move", "item": "live1", "after": "x2"}));
    assert_eq!((r.status, r.code()), (409, "schedule_aired"), "{}", r.body);

    // As-run: nothing aired without an engine; the formats.
    let r = s.call("GET", &format!("{base}/asrun"), a, None);
    assert_eq!(
        (r.status, r.body["items"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let (r, body) = s.request("GET", &format!("{base}/asrun?format=csv"), a, &[], None);
    assert_eq!(r.status, 200);
    assert!(String::from_utf8(body)
        .unwrap()
        .starts_with("item,kind,title,asset_id,house_id,scheduled_start"));
    let (r, body) = s.request("GET", &format!("{base}/asrun?format=bxf"), a, &[], None);
    assert_eq!(r.status, 200);
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("<AsRun channel=\"ch1\">"));
    well_formed(&body);
    // A day's rundown.
    let day = &rfc3339(t + 3600)[..10];
    let r = s.call("GET", &format!("{base}/schedule?day={day}"), a, None);
    assert_eq!(r.status, 200);
    let items = r.body["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(items
        .iter()
        .all(|i| i["slot"]["start"].as_str().unwrap().starts_with(day)));
    let r = s.call("GET", &format!("{base}/schedule?day=2026-13-45"), a, None);
    assert_eq!(r.status, 422);
    assert_eq!(
        s.call("GET", &format!("{base}/asrun?format=xls"), a, None)
            .status,
        422
    );
    assert_eq!(
        s.call("GET", &format!("{base}/asrun?from=yesterday"), a, None)
            .status,
        422
    );

    // A channel aired by the engine: a small house format to a UDP receiver, a rundown
    // starting two seconds from now; on air, the emergency slate on and off, stopped; the TS
    // that arrived is clean and the as-run has the item.
    let rx = common::live::Receiver::start();
    let r = s.call(
        "POST",
        "/v1/channels",
        a,
        Some(&json!({"name": "air1", "rate": "25", "format": "180p25",
            "outputs": [format!("udp://127.0.0.1:{}", rx.port)]})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let air = format!("/v1/channels/{}", r.body["id"]);
    let t0 = now_s() + 2;
    let r = s.call(
        "PUT",
        &format!("{air}/schedule"),
        a,
        Some(&json!({"items": [{"id": "first", "house_id": house_a, "start": rfc3339(t0)}]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.call("POST", &format!("{air}/start"), a, None);
    assert_eq!(r.status, 200, "{}", r.body);
    common::live::wait_for(
        std::time::Duration::from_secs(30),
        "the item on air",
        || {
            let v = s.call("GET", &format!("{air}/now"), a, None).body;
            (v["now"]["item"] == "first" && now_s() > t0).then_some(())
        },
    );
    assert!(rx.len() > 10_000, "{} bytes", rx.len());
    for m in ["POST", "DELETE"] {
        let r = s.call(m, &format!("{air}/slate"), a, None);
        assert_eq!(r.status, 200, "{m} slate: {}", r.body);
    }
    let r = s.call("POST", &format!("{air}/stop"), a, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let data = rx.bytes(0);
    let sync = data.iter().position(|&b| b == 0x47).unwrap_or(0);
    let ts = &data[sync..sync + (data.len() - sync) / 188 * 188];
    let report = common::ts::check(ts, common::ts::Limits::default());
    assert!(report.is_clean(), "{:?}", report.first_errors);
    let asrun = common::live::wait_for(std::time::Duration::from_secs(10), "as-run", || {
        let v = s.call("GET", &format!("{air}/asrun"), a, None).body;
        (!v["items"].as_array()?.is_empty()).then_some(v)
    });
    assert!(asrun.to_string().contains(&house_a), "{asrun}");

    // Bad input: a clear 4xx naming what is wrong.
    let put = |ct: &str, b: &str| {
        s.raw(
            "PUT",
            &format!("{base}/schedule"),
            a,
            Some((ct, b.as_bytes().to_vec())),
        )
    };
    let r = put("application/json", r#"{"items": [{"type": "asset"}]}"#);
    assert_eq!((r.status, r.code()), (422, "invalid_item"), "{}", r.body);
    let r = put(
        "application/json",
        r#"{"items": [{"id": "a", "house_id": "X", "in": "25:00:00:00"}]}"#,
    );
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (422, Some("in")),
        "{}",
        r.body
    );
    let r = put(
        "application/json",
        r#"{"items": [{"id": "a", "house_id": "X"}, {"id": "a", "house_id": "Y"}]}"#,
    );
    assert_eq!(r.status, 422);
    assert_eq!(put("application/json", "{\"itemz\": []}").status, 422);
    assert_eq!(put("application/json", "\u{0}\u{1}").status, 422);
    let r = put("text/csv", "id,colour\nx,red\n");
    assert_eq!((r.status, r.code()), (422, "invalid_schedule"));
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("colour"));
    assert_eq!(
        put("application/xml", "<BxfMessage><unclosed></BxfMessage>").status,
        422
    );
    assert_eq!(put("text/plain", "x").status, 422);
    assert_eq!(
        s.call("GET", "/v1/channels/999/schedule", a, None).status,
        404
    );

    let r = put(
        "application/json",
        r#"{"items": [{"id": "soft", "house_id": "X"}]}"#,
    );
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (422, Some("start")),
        "{}",
        r.body
    );
    let doc = s.call("GET", "/openapi.json", None, None).body;
    for p in [
        "/v1/channels",
        "/v1/channels/{id}/schedule",
        "/v1/channels/{id}/schedule/edits",
        "/v1/channels/{id}/epg.xml",
        "/v1/channels/{id}/now",
        "/v1/channels/{id}/asrun",
        "/v1/channels/{id}/start",
        "/v1/channels/{id}/slate",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} documented");
    }

    // Rights: a viewer cannot change channels or schedules, nor read a rundown of assets it
    // cannot read; an editor granted read on the asset can schedule it.
    let (_, viewer) = s.user("viewer1", "viewer");
    let vw = Some(viewer.as_str());
    assert_eq!(s.call("GET", "/v1/channels", vw, None).status, 200);
    assert_eq!(
        s.call("POST", "/v1/channels", vw, Some(&json!({"name": "v"})))
            .status,
        403
    );
    assert_eq!(
        s.call("GET", &format!("{base}/schedule"), vw, None).status,
        404
    );
    assert_eq!(
        s.call(
            "PUT",
            &format!("{base}/schedule"),
            vw,
            Some(&json!({"items": []}))
        )
        .status,
        403
    );
    assert_eq!(
        s.call("POST", &format!("{base}/start"), vw, None).status,
        403
    );
    let (eid, editor) = s.user("editor1", "editor");
    let ed = Some(editor.as_str());
    let one = json!({"items": [{"id": "e1", "house_id": house_b, "start": rfc3339(t + 7200)}]});
    let r = s.call("POST", &format!("{base}/schedule"), ed, Some(&one));
    assert_eq!(r.status, 404, "not readable to the editor: {}", r.body);
    let r = s.call(
        "PUT",
        &format!("/v1/assets/{}/acl", asset_b["id"]),
        a,
        Some(&json!({"grants": [{"principal": "user", "id": eid, "perms": ["read"]}]})),
    );
    assert!(r.status < 300, "{}", r.body);
    let r = s.call(
        "POST",
        &format!("/v1/channels/{did}/schedule"),
        ed,
        Some(&one),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let declared_rundown = r.body;
    assert_eq!(
        codes(&declared_rundown, "e1"),
        ["rights"],
        "{declared_rundown}"
    );
    // 29.97: the slot's timecode of its day is drop-frame and keeps to the wall clock (within
    // a few frames over a day).
    let tc = item(&declared_rundown, "e1")["slot"]["timecode"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(tc.contains(';'), "{tc}");
    let f: Vec<f64> = tc.split([':', ';']).map(|x| x.parse().unwrap()).collect();
    let labelled = f[0] * 3600.0 + f[1] * 60.0 + f[2] + f[3] / 30.0;
    let wall = ((t + 7200) % 86_400) as f64;
    assert!((labelled - wall).abs() < 0.2, "{tc} for {wall} s");

    // Restart: channels and rundowns come back as they were.
    let before = s.call("GET", &format!("{base}/schedule"), a, None).body;
    let chans = s.call("GET", "/v1/channels", a, None).body;
    let mut s = s;
    assert!(s.stop().success());
    let s2 = start(url, media.path(), Some(&s.data_dir()), true);
    let a2 = Some(s2.admin.as_str());
    let chans2 = s2.call("GET", "/v1/channels", a2, None).body;
    assert_eq!(
        chans2["items"].as_array().unwrap().len(),
        chans["items"].as_array().unwrap().len()
    );
    let after = s2.call("GET", &format!("{base}/schedule"), a2, None).body;
    assert_eq!(after["version"], before["version"]);
    let ids = |v: &Value| -> Vec<(Value, Value)> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["id"].clone(), i["slot"].clone()))
            .collect()
    };
    assert_eq!(ids(&after), ids(&before));
    let d = s2
        .call("GET", &format!("/v1/channels/{did}/schedule"), a2, None)
        .body;
    assert_eq!(d["items"][0]["id"], "e1");
    // Deleting a channel takes its rundown with it.
    assert_eq!(s2.call("DELETE", &base, a2, None).status, 204);
    assert_eq!(
        s2.call("GET", &format!("{base}/schedule"), a2, None).status,
        404
    );
}

#[test]
fn channels_schedules_epg_on_sqlite() {
    channels(None);
}

#[test]
fn channels_schedules_epg_on_postgres() {
    let pg = Pg::start().expect("PostgreSQL installed (scripts/setup.sh)");
    channels(Some(&pg.url));
}

/// ffmpeg sending a flat green picture with a 1 kHz tone at real-time pace to a UDP port.
fn send_green(port: u16) -> std::process::Child {
    std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i"])
        .arg("color=c=0x20C020:size=320x180:rate=25:duration=120")
        .args(["-f", "lavfi", "-i"])
        .arg("sine=frequency=1000:duration=120:sample_rate=48000")
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-b:v",
            "300k",
            "-c:a",
            "aac",
            "-f",
            "mpegts",
        ])
        .arg(format!("udp://127.0.0.1:{port}?pkt_size=1316"))
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("ffmpeg is installed")
}

/// Each decoded picture of a TS: whether it is the live source's flat green.
fn green_frames(ts: &Path) -> Vec<bool> {
    let o = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(ts)
        .args([
            "-map",
            "0:v:0",
            "-vf",
            "scale=32:18",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "rawvideo",
            "-",
        ])
        .output()
        .expect("ffmpeg is installed");
    assert!(o.status.success(), "{}", common::stderr(&o));
    o.stdout
        .chunks_exact(32 * 18 * 3 / 2)
        .map(|f| {
            let u = &f[576..720];
            let v = &f[720..];
            let mean = |p: &[u8]| p.iter().map(|&x| f64::from(x)).sum::<f64>() / p.len() as f64;
            let (mu, mv) = (mean(u), mean(v));
            let spread = u
                .iter()
                .map(|&x| (f64::from(x) - mu).abs())
                .fold(0.0, f64::max);
            mu < 100.0 && mv < 100.0 && spread < 12.0
        })
        .collect()
}

/// A live event between two clips, through the service: a UDP live source fed by ffmpeg, a
/// rundown clip → live (until cued) → clip → live from a source that does not run → clip. The
/// source's sender is killed during the event (filler), started again (live again), and the
/// event is cued away.
/// The output, decoded: the live pictures are in the live slot and nowhere else, every PTS
/// step is one frame across items and switches, TR 101 290 clean; the as-run tells the loss
/// and the missing source.
#[test]
fn a_live_event_airs_between_clips_and_a_lost_source_gives_filler() {
    let media = tempfile::tempdir().unwrap();
    let s = start(None, media.path(), None, false);
    let a = Some(s.admin.as_str());
    let f = clip(media.path(), "opener.mp4", 21);
    let r = s.call("POST", "/v1/ingest", a, Some(&json!({"path": f})));
    assert_eq!(r.status, 201, "{}", r.body);
    let house = r.body["asset"]["house_id"].as_str().unwrap().to_string();
    let port = common::live::free_udp_port();
    let src = common::live::create(
        &s,
        "sources",
        json!({"name": "cam", "kind": "udp", "address": format!("127.0.0.1:{port}"), "loss_ms": 500}),
    );
    let mut sender = send_green(port);
    common::live::wait_for(
        std::time::Duration::from_secs(20),
        "the source live",
        || (common::live::stats(&s, "sources", src)["state"] == "live").then_some(()),
    );

    let rx = common::live::Receiver::start();
    let r = s.call(
        "POST",
        "/v1/channels",
        a,
        Some(&json!({"name": "liveair", "rate": "25", "format": "180p25",
            "outputs": [format!("udp://127.0.0.1:{}", rx.port)]})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let ch = format!("/v1/channels/{}", r.body["id"]);
    let t0 = now_s() + 3;
    let r = s.call(
        "PUT",
        &format!("{ch}/schedule"),
        a,
        Some(&json!({"items": [
            {"id": "a", "house_id": house, "start": rfc3339(t0), "out": 1.8},
            {"id": "live1", "type": "live", "source": "cam"},
            {"id": "b", "house_id": house, "out": 1.8},
            {"id": "live2", "type": "live", "source": "nosuch", "duration": 1.0},
            {"id": "c", "house_id": house, "out": 1.8},
        ]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.call("POST", &format!("{ch}/start"), a, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let now = |want: &str| {
        common::live::wait_for(std::time::Duration::from_secs(30), want, || {
            let v = s.call("GET", &format!("{ch}/now"), a, None).body;
            (v["now"]["item"] == want).then_some(())
        })
    };
    now("live1");
    std::thread::sleep(std::time::Duration::from_millis(3000));
    let _ = sender.kill();
    let _ = sender.wait();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    // The source comes back: the event takes it again.
    let mut sender = send_green(port);
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let _ = sender.kill();
    let _ = sender.wait();
    let r = s.call("POST", &format!("{ch}/cue"), a, None);
    assert_eq!(r.status, 200, "{}", r.body);
    now("c");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let r = s.call("POST", &format!("{ch}/stop"), a, None);
    assert_eq!(r.status, 200, "{}", r.body);

    let rows = common::live::wait_for(std::time::Duration::from_secs(10), "as-run", || {
        let v = s.call("GET", &format!("{ch}/asrun"), a, None).body;
        let items = v["items"].as_array()?.clone();
        items.iter().any(|r| r["item"] == "c").then_some(items)
    });
    let row = |id: &str| {
        rows.iter()
            .find(|r| r["item"] == id)
            .unwrap_or_else(|| panic!("no as-run row for {id}: {rows:?}"))
            .clone()
    };
    let first = rows
        .iter()
        .map(|r| r["actual_start_frame"].as_u64().unwrap())
        .min()
        .unwrap();
    let live1 = row("live1");
    assert!(
        live1["substitution"]
            .as_str()
            .unwrap_or("")
            .contains("lost"),
        "{live1}"
    );
    assert!(
        row("live2")["substitution"]
            .as_str()
            .unwrap_or("")
            .contains("not running"),
        "{rows:?}"
    );
    for id in ["a", "b", "c"] {
        assert!(row(id)["substitution"].is_null(), "{rows:?}");
    }

    let dir = tempfile::tempdir().unwrap();
    let ts = dir.path().join("out.ts");
    let data = rx.bytes(0);
    let sync = data.iter().position(|&b| b == 0x47).unwrap_or(0);
    let data = &data[sync..sync + (data.len() - sync) / 188 * 188];
    std::fs::write(&ts, data).unwrap();
    let report = common::ts::check(data, common::ts::Limits::default());
    assert!(report.is_clean(), "{:?}", report.first_errors);
    let pts: Vec<f64> = common::stdout(&common::ffprobe_frames(&ts, "pts_time"))
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    assert!(pts.len() > 200, "{} pictures", pts.len());
    if let Ok(keep) = std::env::var("PLAYOUT_KEEP_TS") {
        std::fs::copy(&ts, keep).unwrap();
    }
    // The last pictures were cut by the stop (a PES sent half).
    let bad: Vec<(usize, f64, f64)> = pts[..pts.len() - 3]
        .windows(2)
        .enumerate()
        .filter(|(_, w)| ((w[1] - w[0]) - 0.04).abs() >= 0.002)
        .map(|(i, w)| (i, w[0] - pts[0], w[1] - w[0]))
        .collect();
    assert!(
        bad.is_empty(),
        "PTS steps (picture, at, step) {bad:?} in {} pictures; as-run {rows:?}",
        pts.len()
    );
    let green = green_frames(&ts);
    let from = (live1["actual_start_frame"].as_u64().unwrap() - first) as usize;
    let to = from + live1["actual_frames"].as_u64().unwrap() as usize;
    assert!(to <= green.len(), "{to} of {} pictures", green.len());
    let inside = green[from..to].iter().filter(|&&g| g).count();
    let outside = green.iter().filter(|&&g| g).count() - inside;
    // About 3 s of live before the sender was killed, then filler until the cue.
    assert!(
        inside >= 50,
        "{inside} live pictures in the slot of {}",
        to - from
    );
    assert!(
        inside < to - from,
        "filler after the loss: {inside} of {}",
        to - from
    );
    assert_eq!(outside, 0, "live pictures outside the live slot");
    assert!(
        green[from + 5..from + 50].iter().all(|&g| g),
        "the event's start is live"
    );
    // Live, then filler while the source was lost, then live again once it was back.
    let slot = &green[from..to];
    let lost_at = 5 + slot[5..].iter().position(|&g| !g).unwrap();
    let back = slot[lost_at..].iter().position(|&g| g);
    assert!(
        back.is_some_and(|b| b > 10),
        "live again after the loss: {:?}",
        slot.iter()
            .map(|&g| if g { 'L' } else { '.' })
            .collect::<String>()
    );
}

/// A clip whose picture N is flat grey of luma 20 + (7 N mod 200): a decoded picture says which
/// frame of the file it is.
fn numbered_grey(dir: &Path, name: &str, seconds: u32) -> std::path::PathBuf {
    let p = dir.join(name);
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("color=c=black:size=320x180:rate=25:duration={seconds}"),
        "-f",
        "lavfi",
        "-i",
        &format!("sine=frequency=500:duration={seconds}:sample_rate=48000"),
        "-vf",
        "format=yuv420p,geq=lum='20+mod(7*N,200)':cb=128:cr=128",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-qp",
        "4",
        "-c:a",
        "aac",
        "-shortest",
        p.to_str().unwrap(),
    ]);
    p
}

/// The mean luma of each decoded picture of a TS.
fn lumas(ts: &[u8]) -> Vec<f64> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.ts");
    std::fs::write(&f, ts).unwrap();
    let o = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&f)
        .args([
            "-map",
            "0:v:0",
            "-vf",
            "scale=32:18",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "rawvideo",
            "-",
        ])
        .output()
        .expect("ffmpeg is installed");
    assert!(o.status.success(), "{}", common::stderr(&o));
    o.stdout
        .chunks_exact(32 * 18 * 3 / 2)
        .map(|f| f[..576].iter().map(|&x| f64::from(x)).sum::<f64>() / 576.0)
        .collect()
}

/// Whole TS packets of the datagrams from `from` on.
fn ts_after(rx: &common::live::Receiver, from: usize) -> Vec<u8> {
    let d: Vec<u8> = rx.datagrams.lock().unwrap()[from..].concat();
    let sync = d.iter().position(|&b| b == 0x47).unwrap_or(0);
    d[sync..sync + (d.len() - sync) / 188 * 188].to_vec()
}

/// The service killed (SIGKILL) in the middle of an item and started again: the channel comes
/// back on air by itself within 5 s, at the item the wall clock says and at its frame (each
/// picture decoded from the output is the file's picture of that channel frame, 0 frames
/// off); the as-run goes on with the item from the frame it resumed at (the gap shows).
#[test]
fn a_restarted_service_resumes_the_item_on_air_at_its_frame() {
    let media = tempfile::tempdir().unwrap();
    let mut s = start(None, media.path(), None, false);
    let a = Some(s.admin.as_str());
    let f = numbered_grey(media.path(), "numbered.mp4", 40);
    let r = s.call("POST", "/v1/ingest", a, Some(&json!({"path": f})));
    assert_eq!(r.status, 201, "{}", r.body);
    let house = r.body["asset"]["house_id"].as_str().unwrap().to_string();
    let rx = common::live::Receiver::start();
    let r = s.call(
        "POST",
        "/v1/channels",
        a,
        Some(&json!({"name": "resume", "rate": "25", "format": "180p25",
            "outputs": [format!("udp://127.0.0.1:{}", rx.port)]})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let ch = format!("/v1/channels/{}", r.body["id"]);
    let t0 = now_s() + 2;
    let r = s.call(
        "PUT",
        &format!("{ch}/schedule"),
        a,
        Some(&json!({"items": [{"id": "long", "house_id": house, "start": rfc3339(t0)}]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.call("POST", &format!("{ch}/start"), a, None);
    assert_eq!(r.status, 200, "{}", r.body);
    common::live::wait_for(
        std::time::Duration::from_secs(30),
        "4 s into the item",
        || {
            let v = s.call("GET", &format!("{ch}/now"), a, None).body;
            (v["now"]["item"] == "long" && now_s() >= t0 + 4).then_some(())
        },
    );
    let before = rx.len();
    assert!(before > 10_000, "{before} bytes before the kill");
    s.kill();
    let killed = rx.count();
    let s2 = start(None, media.path(), Some(&s.data_dir()), false);
    let up = std::time::Instant::now();
    let a2 = Some(s2.admin.as_str());
    // Back on air by itself (it was running), within 5 s of the service being up.
    common::live::wait_for(std::time::Duration::from_secs(30), "back on air", || {
        (rx.count() > killed + 20).then_some(())
    });
    let back = up.elapsed();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let r = s2.call("POST", &format!("{ch}/stop"), a2, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let rows = common::live::wait_for(std::time::Duration::from_secs(10), "as-run", || {
        let v = s2.call("GET", &format!("{ch}/asrun"), a2, None).body;
        let items = v["items"].as_array()?.clone();
        items.iter().any(|r| r["item"] == "long").then_some(items)
    });
    let long: Vec<&Value> = rows.iter().filter(|r| r["item"] == "long").collect();
    assert_eq!(long.len(), 1, "{rows:?}");
    let row = long[0];
    let scheduled = row["scheduled_start_frame"].as_u64().unwrap();
    let resumed = row["actual_start_frame"].as_u64().unwrap();
    let offset = resumed - scheduled;
    // At least the 4 s aired before the kill; the channel's first frame after the restart.
    assert!(offset >= 100, "resumed {offset} frames into the item");
    assert!(
        back.as_secs_f64() < 5.0,
        "back on air {back:?} after the service was up"
    );
    let l = lumas(&ts_after(&rx, killed));
    assert!(l.len() >= 50, "{} pictures after the restart", l.len());
    for (i, y) in l.iter().take(60).enumerate() {
        let n = offset + i as u64;
        let want = 20.0 + ((7 * n) % 200) as f64;
        assert!(
            (y - want).abs() < 3.0,
            "picture {i} after the restart has luma {y:.1}: file frame {n} has {want}"
        );
    }
}

/// Retention asks the playout channels' plans: an asset a channel is to air is kept (`scheduled`)
/// by the dry run and the purge, through the API, while an unscheduled one is purged; once the
/// rundown no longer has it, it is proposed like any other.
#[test]
fn retention_keeps_what_a_channel_is_to_air() {
    let media = tempfile::tempdir().unwrap();
    let s = Server::start(&[
        (
            "ANTENNE_INGEST_ROOTS",
            format!("[\"{}\"]", media.path().display()),
        ),
        (
            "ANTENNE_STORAGES_RETENTION",
            r#"[{ name = "all", select = { older_than_days = 0 }, grace_days = 0 }]"#.into(),
        ),
        ("ANTENNE_STORAGES_WARN_PERCENT", "100".into()),
        ("ANTENNE_STORAGES_REFUSE_PERCENT", "100".into()),
    ]);
    let a = Some(s.admin.as_str());
    let ingest = |name: &str, seed| {
        let f = clip(media.path(), name, seed);
        let r = s.call("POST", "/v1/ingest", a, Some(&json!({"path": f})));
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["asset"].clone()
    };
    let aired = ingest("aired.mp4", 31);
    let spare = ingest("spare.mp4", 32);
    let (aired_id, spare_id) = (aired["id"].as_i64().unwrap(), spare["id"].as_i64().unwrap());
    let r = s.call(
        "POST",
        "/v1/channels",
        a,
        Some(&json!({"name": "keeper", "rate": "25", "format": "180p25"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let ch = format!("/v1/channels/{}", r.body["id"]);
    let later = rfc3339(now_s() + 3600);
    let r = s.call(
        "PUT",
        &format!("{ch}/schedule"),
        a,
        Some(&json!({"items": [{"id": "x", "house_id": aired["house_id"], "start": later}]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);

    let r = s.call("POST", "/v1/retention/dry-run", a, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let kept: Vec<(i64, String)> = r.body["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["asset_id"].as_i64().unwrap(),
                k["why"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(kept, [(aired_id, "scheduled".to_string())], "{}", r.body);
    let proposed: Vec<i64> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["asset_id"].as_i64().unwrap())
        .collect();
    assert_eq!(proposed, [spare_id], "{}", r.body);
    let r = s.call("POST", "/v1/retention/purge", a, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        s.call("GET", &format!("/v1/assets/{aired_id}"), a, None)
            .status,
        200,
        "the scheduled asset survived the purge"
    );
    // The purged one leaves a tombstone; the scheduled one has none and keeps its status.
    let tomb = |id: i64| s.call("GET", &format!("/v1/assets/{id}/tombstone"), a, None);
    assert_eq!(tomb(spare_id).status, 200, "purged: {}", r.body);
    assert_eq!(tomb(aired_id).status, 404, "{}", tomb(aired_id).body);
    let kept = s.call("GET", &format!("/v1/assets/{aired_id}"), a, None);
    assert_eq!(kept.body["status"], "ready", "{}", kept.body);
    // Off the rundown, it is proposed like any other.
    let r = s.call(
        "PUT",
        &format!("{ch}/schedule"),
        a,
        Some(&json!({"items": []})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.call("POST", "/v1/retention/dry-run", a, None);
    assert_eq!(
        r.body["items"][0]["asset_id"].as_i64(),
        Some(aired_id),
        "{}",
        r.body
    );
    assert!(r.body["kept"].as_array().unwrap().is_empty(), "{}", r.body);
}

/// A channel pushed over RTMP (to `ffmpeg -listen`, the peer) and recorded into the catalog: the
/// RTMP receiver gets H.264 + AAC at the house size; stopping the channel makes the recording an
/// asset whose file is the run's TS (probed: H.264, the length of the run).
#[test]
fn a_channel_goes_out_over_rtmp_and_is_recorded_into_the_catalog() {
    let media = tempfile::tempdir().unwrap();
    let s = start(None, media.path(), None, false);
    let a = Some(s.admin.as_str());
    let f = clip(media.path(), "opener.mp4", 41);
    let r = s.call("POST", "/v1/ingest", a, Some(&json!({"path": f})));
    assert_eq!(r.status, 201, "{}", r.body);
    let house = r.body["asset"]["house_id"].as_str().unwrap().to_string();
    let port = common::live::free_tcp_port();
    let got = media.path().join("got.flv");
    let mut recv = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-listen", "1", "-i"])
        .arg(format!("rtmp://127.0.0.1:{port}/live/secret-key"))
        .args(["-t", "3", "-c", "copy", "-f", "flv"])
        .arg(&got)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let r = s.call(
        "POST",
        "/v1/channels",
        a,
        Some(&json!({"name": "pushed", "rate": "25", "format": "180p25",
            "outputs": [format!("rtmp://127.0.0.1:{port}/live/secret-key"), "record"]})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let ch = format!("/v1/channels/{}", r.body["id"]);
    let r = s.call(
        "PUT",
        &format!("{ch}/schedule"),
        a,
        Some(&json!({"items": [{"id": "x", "house_id": house, "start": rfc3339(now_s() + 1)}]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.call("POST", &format!("{ch}/start"), a, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let st = common::live::wait_for(
        std::time::Duration::from_secs(40),
        "the receiver done",
        || recv.try_wait().unwrap(),
    );
    let r = s.call("POST", &format!("{ch}/stop"), a, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(st.success(), "the RTMP receiver failed");
    let p = common::ffprobe(&got, true);
    let streams = p["streams"].as_array().unwrap();
    let v = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
    assert_eq!(
        (
            v["codec_name"].as_str(),
            v["width"].as_u64(),
            v["height"].as_u64()
        ),
        (Some("h264"), Some(320), Some(180)),
        "{p}"
    );
    let frames: u64 = v["nb_read_frames"].as_str().unwrap().parse().unwrap();
    assert!(frames >= 50, "{frames} pictures over RTMP");
    assert!(streams.iter().any(|s| s["codec_name"] == "aac"), "{p}");

    // The recording, an asset once the run ended.
    let asset = common::live::wait_for(std::time::Duration::from_secs(20), "the recording", || {
        let v = s.call("GET", "/v1/assets?limit=100", a, None).body;
        v["items"]
            .as_array()?
            .iter()
            .find(|x| {
                x["title"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("pushed as aired"))
            })
            .cloned()
    });
    let r = s.call("GET", &format!("/v1/assets/{}/files", asset["id"]), a, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let file = &r.body["items"][0];
    let path = std::path::PathBuf::from(file["path"].as_str().unwrap());
    assert!(path.starts_with(s.data_dir()) || path.exists(), "{file}");
    let p = common::ffprobe(&path, true);
    let dur: f64 = p["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!(dur >= 3.0, "{dur} s recorded: {p}");
    assert!(
        p["streams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["codec_name"] == "h264"),
        "{p}"
    );
    assert!(!r.body.to_string().contains("secret-key"));
}

/// A channel that requires approval reports each item whose asset is not approved (the item and
/// the review's reason), before air; once approved the warning is gone. A channel that does not
/// ask, or the same rundown elsewhere, has no such warning.
#[test]
fn schedules_require_approval_where_the_channel_asks() {
    let media = tempfile::tempdir().unwrap();
    let s = start(None, media.path(), None, false);
    let a = Some(s.admin.as_str());
    let f = clip(media.path(), "promo.mp4", 51);
    let r = s.call("POST", "/v1/ingest", a, Some(&json!({"path": f})));
    assert_eq!(r.status, 201, "{}", r.body);
    let (id, house) = (
        r.body["asset"]["id"].as_i64().unwrap(),
        r.body["asset"]["house_id"].as_str().unwrap().to_string(),
    );
    let rundown =
        json!({"items": [{"id": "promo", "house_id": house, "start": rfc3339(now_s() + 3600)}]});
    let mut bases = Vec::new();
    for (name, strict) in [("strict", true), ("lax", false)] {
        let r = s.call(
            "POST",
            "/v1/channels",
            a,
            Some(&json!({"name": name, "rate": "25", "format": "180p25", "require_approval": strict})),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.body["require_approval"], strict, "{}", r.body);
        let base = format!("/v1/channels/{}", r.body["id"]);
        let r = s.call("PUT", &format!("{base}/schedule"), a, Some(&rundown));
        assert_eq!(r.status, 200, "{}", r.body);
        bases.push((base, strict, r.body));
    }
    for (_, strict, v) in &bases {
        let w: Vec<&Value> = v["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["code"] == "not_approved")
            .collect();
        if *strict {
            assert_eq!(w.len(), 1, "{v}");
            assert_eq!(w[0]["item"], "promo");
            let why = w[0]["reason"].as_str().unwrap();
            assert!(why.contains("never put in review"), "{why}");
            assert!(
                codes(v, "promo").contains(&"not_approved".to_string()),
                "{v}"
            );
        } else {
            assert!(w.is_empty(), "{v}");
        }
    }
    // In review: still not approved, with that reason; approved: no warning.
    let review = |p: &str| s.call("POST", &format!("/v1/assets/{id}/{p}"), a, Some(&json!({})));
    assert_eq!(review("review").status, 200);
    let strict = &bases[0].0;
    // The catalog is read again when a rundown is loaded (and before air).
    let v = s
        .call("PUT", &format!("{strict}/schedule"), a, Some(&rundown))
        .body;
    let why = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["code"] == "not_approved")
        .and_then(|w| w["reason"].as_str())
        .unwrap_or("")
        .to_string();
    assert!(why.contains("in review"), "{v}");
    let r = review("review/approve");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.call("PUT", &format!("{strict}/schedule"), a, Some(&rundown));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        !r.body.to_string().contains("not_approved"),
        "approved: no warning {}",
        r.body
    );
}
