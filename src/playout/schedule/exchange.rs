//! Schedules in and out: CSV and SMPTE BXF (ST 2021) schedule XML in; XMLTV, JSON now/next,
//! and the as-run log as CSV and BXF as-run out.

use std::collections::HashMap;

use quick_xml::escape::escape;
use quick_xml::events::Event;
use serde::{Deserialize, Serialize};

use crate::playout::plan::{AirSlot, Material};

use super::model::{rfc3339, FrameClock, Item, ItemType, Point, SpliceKind};
use super::resolve::{Library, Plan};
use super::ScheduleError;

fn point(s: &str) -> Point {
    match s.trim().parse::<f64>() {
        Ok(v) => Point::Seconds(v),
        Err(_) => Point::Timecode(s.trim().to_string()),
    }
}

/// Splits CSV text into records (RFC 4180: quotes, doubled quotes, CRLF).
fn csv_records(text: &str) -> Result<Vec<(usize, Vec<String>)>, ScheduleError> {
    let mut out = Vec::new();
    let mut rec = Vec::new();
    let mut field = String::new();
    let (mut quoted, mut line, mut start_line) = (false, 1usize, 1usize);
    let mut chars = text.trim_start_matches('\u{feff}').chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => {
                quoted = true;
                any = true;
            }
            ',' => {
                rec.push(std::mem::take(&mut field));
                any = true;
            }
            '\r' => {}
            '\n' => {
                if any || !field.is_empty() {
                    rec.push(std::mem::take(&mut field));
                    out.push((start_line, std::mem::take(&mut rec)));
                }
                any = false;
                line += 1;
                start_line = line;
            }
            _ => {
                field.push(c);
                any = true;
            }
        }
    }
    if quoted {
        return Err(ScheduleError::Import {
            format: "CSV",
            line: start_line,
            why: "a quoted field is not closed".into(),
        });
    }
    if any || !field.is_empty() {
        rec.push(field);
        out.push((start_line, rec));
    }
    Ok(out)
}

const CSV_COLUMNS: &[&str] = &[
    "id", "type", "title", "start", "frame", "house_id", "asset_id", "in", "out", "duration",
    "source", "scte35", "logo",
];

/// A schedule from CSV: a header row naming columns among `id, type, title, start, frame,
/// house_id, asset_id, in, out, duration, source, scte35, logo` (in any order), one item a row.
pub fn import_csv(text: &str) -> Result<Vec<Item>, ScheduleError> {
    let recs = csv_records(text)?;
    let Some(((_, head), rows)) = recs.split_first() else {
        return Err(ScheduleError::Import {
            format: "CSV",
            line: 1,
            why: "empty: a header row is needed".into(),
        });
    };
    let head: Vec<String> = head.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    for h in &head {
        if !CSV_COLUMNS.contains(&h.as_str()) {
            return Err(ScheduleError::Import {
                format: "CSV",
                line: 1,
                why: format!("unknown column {h:?} (known: {})", CSV_COLUMNS.join(", ")),
            });
        }
    }
    let mut items = Vec::new();
    for (line, row) in rows {
        let bad = |why: String| ScheduleError::Import {
            format: "CSV",
            line: *line,
            why,
        };
        if row.len() != head.len() {
            return Err(bad(format!(
                "{} fields, the header has {}",
                row.len(),
                head.len()
            )));
        }
        let mut it = Item::default();
        for (h, v) in head.iter().zip(row) {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            match h.as_str() {
                "id" => it.id = v.to_string(),
                "type" => {
                    it.kind = match v.to_ascii_lowercase().as_str() {
                        "asset" | "programme" | "program" | "clip" => ItemType::Asset,
                        "live" => ItemType::Live,
                        "break" => ItemType::Break,
                        _ => return Err(bad(format!("type {v:?}: asset, live or break"))),
                    }
                }
                "title" => it.title = v.to_string(),
                "start" => it.start = Some(v.to_string()),
                "frame" => {
                    it.frame = Some(
                        v.parse()
                            .map_err(|_| bad(format!("frame {v:?}: a number")))?,
                    )
                }
                "house_id" => it.house_id = Some(v.to_string()),
                "asset_id" => {
                    it.asset_id = Some(
                        v.parse()
                            .map_err(|_| bad(format!("asset_id {v:?}: a number")))?,
                    )
                }
                "in" => it.in_point = Some(point(v)),
                "out" => it.out = Some(point(v)),
                "duration" => it.duration = Some(point(v)),
                "source" => it.source = Some(v.to_string()),
                "scte35" => {
                    it.scte35 = Some(match v {
                        "splice_insert" => SpliceKind::SpliceInsert,
                        "time_signal" => SpliceKind::TimeSignal,
                        _ => {
                            return Err(bad(format!("scte35 {v:?}: splice_insert or time_signal")))
                        }
                    })
                }
                "logo" => it.secondary.push(super::model::SecondarySpec {
                    at: Point::Seconds(0.0),
                    logo: match v {
                        "on" | "true" | "1" => true,
                        "off" | "false" | "0" => false,
                        _ => return Err(bad(format!("logo {v:?}: on or off"))),
                    },
                }),
                _ => {}
            }
        }
        items.push(it);
    }
    Ok(items)
}

#[derive(Default)]
struct BxfEvent {
    id: String,
    date: String,
    tc: String,
    duration: String,
    house: String,
    title: String,
    spot: bool,
    follow: bool,
    line: usize,
}

/// A schedule from BXF schedule XML: each `ScheduledEvent` with `EventData` (`EventId`,
/// `StartDateTime/SmpteDateTime@broadcastDate` + `SmpteTimeCode` for a hard start, or
/// `StartMode` `Follow`/`Sequential` for a soft one; `LengthOption/Duration/SmpteDuration/
/// SmpteTimeCode`) and `Content` (`ContentId/HouseNumber`, `Name`). A `NonProgramEvent` (a
/// spot) is an item of a break: a run of spots becomes one break (`splice_insert` over the whole
/// run); a spot without a house number is a break of filler. Timecodes are at the channel rate.
pub fn import_bxf(text: &str, clock: &FrameClock) -> Result<Vec<Item>, ScheduleError> {
    let mut r = quick_xml::Reader::from_str(text);
    r.config_mut().trim_text(true);
    let mut path: Vec<String> = Vec::new();
    let mut cur: Option<BxfEvent> = None;
    let mut events = Vec::new();
    let line_of = |pos: u64| {
        text[..(pos as usize).min(text.len())]
            .lines()
            .count()
            .max(1)
    };
    loop {
        let pos = r.buffer_position();
        let ev = r.read_event().map_err(|e| ScheduleError::Import {
            format: "BXF",
            line: line_of(r.buffer_position()),
            why: format!("not well-formed XML: {e}"),
        })?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if name == "ScheduledEvent" && !empty {
                    cur = Some(BxfEvent {
                        line: line_of(pos),
                        ..BxfEvent::default()
                    });
                }
                if let Some(c) = cur.as_mut() {
                    match name.as_str() {
                        "SmpteDateTime" => {
                            for a in e.attributes().flatten() {
                                if a.key.local_name().as_ref() == b"broadcastDate" {
                                    c.date = a
                                        .unescape_value()
                                        .map(|v| v.into_owned())
                                        .unwrap_or_default();
                                }
                            }
                        }
                        "NonProgramEvent" | "SpotType" | "BreakType" => c.spot = true,
                        _ => {}
                    }
                }
                if !empty {
                    path.push(name);
                }
            }
            Event::Text(t) => {
                let Some(c) = cur.as_mut() else { continue };
                let v = t
                    .unescape()
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default();
                let last = |n: &str| path.last().is_some_and(|p| p == n);
                let within = |n: &str| path.iter().any(|p| p == n);
                if last("SmpteTimeCode") && within("StartDateTime") {
                    c.tc = v;
                } else if last("SmpteTimeCode") && within("Duration") {
                    c.duration = v;
                } else if last("HouseNumber") {
                    c.house = v;
                } else if last("Name") && within("Content") {
                    c.title = v;
                } else if last("EventId") && within("EventData") {
                    c.id = v;
                } else if last("StartMode") {
                    c.follow = matches!(v.to_ascii_lowercase().as_str(), "follow" | "sequential");
                }
            }
            Event::End(_) => {
                let closed = path.pop();
                if closed.as_deref() == Some("ScheduledEvent") {
                    events.extend(cur.take());
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if events.is_empty() {
        return Err(ScheduleError::Import {
            format: "BXF",
            line: 1,
            why: "no ScheduleElements/ScheduledEvent in the document".into(),
        });
    }
    let mut items: Vec<Item> = Vec::new();
    let mut run: Option<(usize, u64)> = None; // first spot of the run and its total frames
    for e in events {
        let bad = |why: String| ScheduleError::Import {
            format: "BXF",
            line: e.line,
            why,
        };
        let dur = crate::timecode::Timecode::parse(&e.duration, clock.rate)
            .map_err(|_| {
                bad(format!(
                    "event {:?}: duration {:?} is not a timecode",
                    e.id, e.duration
                ))
            })?
            .frames;
        let mut it = Item {
            id: e.id.clone(),
            title: e.title.clone(),
            duration: Some(Point::Timecode(e.duration.clone())),
            ..Item::default()
        };
        if !e.follow && !e.tc.is_empty() {
            let date = if e.date.is_empty() {
                return Err(bad(format!(
                    "event {:?}: SmpteDateTime has no broadcastDate",
                    e.id
                )));
            } else {
                &e.date
            };
            let midnight =
                super::model::parse_rfc3339(&format!("{date}T00:00:00Z")).ok_or_else(|| {
                    bad(format!(
                        "event {:?}: broadcastDate {date:?} is not YYYY-MM-DD",
                        e.id
                    ))
                })?;
            let parts: Vec<&str> = e.tc.split([':', ';', '.']).collect();
            let num = |i: usize| parts.get(i).and_then(|p| p.parse::<i64>().ok());
            let (Some(h), Some(m), Some(s), Some(f)) = (num(0), num(1), num(2), num(3)) else {
                return Err(bad(format!(
                    "event {:?}: start {:?} is not a timecode",
                    e.id, e.tc
                )));
            };
            crate::timecode::Timecode::parse(&e.tc, clock.rate).map_err(|_| {
                bad(format!(
                    "event {:?}: start {:?} is not valid at this rate",
                    e.id, e.tc
                ))
            })?;
            it.start = Some(rfc3339(midnight + ((h * 60 + m) * 60 + s) * 1000));
            it.frame = Some(f as u32);
        }
        if e.house.is_empty() {
            if e.spot {
                it.kind = ItemType::Break;
            } else {
                return Err(bad(format!("event {:?}: no ContentId/HouseNumber", e.id)));
            }
        } else {
            it.house_id = Some(e.house.clone());
        }
        if e.spot && it.kind == ItemType::Asset {
            match run.as_mut() {
                Some((_, total)) => *total += dur,
                None => run = Some((items.len(), dur)),
            }
        } else if let Some((first, total)) = run.take() {
            mark_break(&mut items[first], total, clock);
        }
        items.push(it);
    }
    if let Some((first, total)) = run {
        mark_break(&mut items[first], total, clock);
    }
    Ok(items)
}

fn mark_break(it: &mut Item, frames: u64, clock: &FrameClock) {
    it.breaks.push(super::model::BreakSpec {
        at: Point::Seconds(0.0),
        duration: Point::Timecode(clock.timecode(frames)),
        kind: SpliceKind::SpliceInsert,
        event_id: None,
    });
}

/// The title shown for an item: its own, its asset's, its house id or source.
pub fn title_of(it: &Item, lib: &Library) -> String {
    if !it.title.is_empty() {
        return it.title.clone();
    }
    if let Some(a) = lib.find(it) {
        if !a.title.is_empty() {
            return a.title.clone();
        }
    }
    it.house_id
        .clone()
        .or(it.source.clone())
        .unwrap_or_else(|| it.id.clone())
}

fn xmltv_time(ms: i64) -> String {
    let t = rfc3339(ms);
    // 2026-12-02T10:00:00Z → 20261202100000 +0000
    let digits: String = t.chars().filter(char::is_ascii_digit).take(14).collect();
    format!("{digits} +0000")
}

/// The schedule as XMLTV: one `programme` per aired item.
pub fn xmltv(
    channel_id: &str,
    channel_name: &str,
    items: &[Item],
    plan: &Plan,
    clock: &FrameClock,
    lib: &Library,
) -> String {
    let by_id: HashMap<&str, &Item> = items.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE tv SYSTEM \"xmltv.dtd\">\n<tv generator-info-name=\"antenne\">\n");
    x += &format!(
        "  <channel id=\"{}\">\n    <display-name>{}</display-name>\n  </channel>\n",
        escape(channel_id),
        escape(channel_name)
    );
    for s in &plan.slots {
        let Some(it) = by_id.get(s.item.as_str()) else {
            continue;
        };
        if it.kind == ItemType::Break {
            continue;
        }
        x += &format!(
            "  <programme start=\"{}\" stop=\"{}\" channel=\"{}\">\n    <title>{}</title>\n",
            xmltv_time(clock.ms_of(s.start)),
            xmltv_time(clock.ms_of(s.end())),
            escape(channel_id),
            escape(title_of(it, lib).as_str())
        );
        if it.kind == ItemType::Live {
            x += "    <live />\n";
        }
        x += "  </programme>\n";
    }
    x += "</tv>\n";
    x
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Entry {
    /// The item's id (empty for filler in a gap).
    pub item: String,
    pub title: String,
    /// `asset`, `live`, `break` or `filler`.
    pub kind: &'static str,
    pub start: String,
    pub end: String,
    pub start_frame: u64,
    pub frames: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub house_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NowNext {
    pub now: Option<Entry>,
    pub next: Option<Entry>,
    /// The channel frame at the time asked.
    pub frame: u64,
    /// Time to the next event (the next slot's start), when there is one.
    pub next_in_s: Option<f64>,
    pub next_in_frames: Option<u64>,
    /// The frame as house timecode.
    pub timecode: String,
}

fn entry(s: &AirSlot, items: &HashMap<&str, &Item>, clock: &FrameClock, lib: &Library) -> Entry {
    let it = items.get(s.item.as_str());
    Entry {
        item: s.item.clone(),
        title: it
            .map(|i| title_of(i, lib))
            .unwrap_or_else(|| "filler".into()),
        kind: match (it.map(|i| i.kind), &s.material) {
            (None, _) => "filler",
            (Some(ItemType::Break), _) => "break",
            (Some(ItemType::Live), _) => "live",
            (Some(ItemType::Asset), _) => "asset",
        },
        start: rfc3339(clock.ms_of(s.start)),
        end: rfc3339(clock.ms_of(s.end())),
        start_frame: s.start,
        frames: s.frames,
        house_id: match &s.material {
            Material::File { house_id, .. } => Some(house_id.clone()),
            _ => it.and_then(|i| i.house_id.clone()),
        },
    }
}

/// What is on air at `now_ms` and what comes next.
pub fn now_next(
    items: &[Item],
    plan: &Plan,
    clock: &FrameClock,
    lib: &Library,
    now_ms: i64,
) -> NowNext {
    let by_id: HashMap<&str, &Item> = items.iter().map(|i| (i.id.as_str(), i)).collect();
    let frame = clock.frame_at(now_ms).unwrap_or(0);
    let cur = plan.slot_index_at(frame);
    let next_i = match cur {
        Some(i) => Some(i + 1).filter(|&n| n < plan.slots.len()),
        None => plan.slots.iter().position(|s| s.start > frame),
    };
    let next = next_i.map(|i| &plan.slots[i]);
    NowNext {
        now: cur.map(|i| entry(&plan.slots[i], &by_id, clock, lib)),
        next: next.map(|s| entry(s, &by_id, clock, lib)),
        frame,
        next_in_s: next.map(|s| ((clock.ms_of(s.start) - now_ms).max(0)) as f64 / 1000.0),
        next_in_frames: next.map(|s| s.start - frame),
        timecode: clock.timecode(frame),
    }
}

/// One as-run record: an item, break or live event as it actually aired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AsRun {
    pub item: String,
    /// `asset`, `live`, `filler`, `break`.
    pub kind: String,
    pub title: String,
    pub asset_id: Option<i64>,
    pub house_id: String,
    pub scheduled_start_frame: u64,
    pub scheduled_frames: u64,
    pub actual_start_frame: u64,
    pub actual_frames: u64,
    pub scheduled_start: String,
    pub actual_start: String,
    /// Why it aired other than scheduled (`unplayable: …`, `live_lost: …`, `operator: …`).
    pub substitution: Option<String>,
}

impl AsRun {
    /// The record of what the engine reports.
    pub fn of(a: &crate::playout::plan::Aired, clock: &FrameClock, title: &str) -> AsRun {
        use crate::playout::plan::Substitution as S;
        let (kind, asset_id, house_id) = match &a.slot.material {
            Material::File {
                asset_id, house_id, ..
            } => ("asset", asset_id.parse().ok(), house_id.clone()),
            Material::Live { source } => ("live", None, source.clone()),
            Material::Filler if !a.slot.breaks.is_empty() => ("break", None, String::new()),
            Material::Filler => ("filler", None, String::new()),
        };
        AsRun {
            item: a.slot.item.clone(),
            kind: kind.into(),
            title: title.to_string(),
            asset_id,
            house_id,
            scheduled_start_frame: a.slot.start,
            scheduled_frames: a.slot.frames,
            actual_start_frame: a.start,
            actual_frames: a.frames,
            scheduled_start: rfc3339(clock.ms_of(a.slot.start)),
            actual_start: rfc3339(clock.ms_of(a.start)),
            substitution: a.substitution.as_ref().map(|s| match s {
                S::Unplayable(w) => format!("unplayable: {w}"),
                S::LiveLost(w) => format!("live_lost: {w}"),
                S::Operator(w) => format!("operator: {w}"),
            }),
        }
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The as-run log as CSV (one header row, timecodes at the channel rate).
pub fn asrun_csv(rows: &[AsRun], clock: &FrameClock) -> String {
    let mut out = String::from(
        "item,kind,title,asset_id,house_id,scheduled_start,scheduled_start_frame,scheduled_duration,scheduled_frames,actual_start,actual_start_frame,actual_duration,actual_frames,substitution\n",
    );
    for r in rows {
        let f = [
            csv_field(&r.item),
            r.kind.clone(),
            csv_field(&r.title),
            r.asset_id.map(|a| a.to_string()).unwrap_or_default(),
            csv_field(&r.house_id),
            r.scheduled_start.clone(),
            r.scheduled_start_frame.to_string(),
            clock.timecode(r.scheduled_frames),
            r.scheduled_frames.to_string(),
            r.actual_start.clone(),
            r.actual_start_frame.to_string(),
            clock.timecode(r.actual_frames),
            r.actual_frames.to_string(),
            csv_field(r.substitution.as_deref().unwrap_or("")),
        ];
        out += &f.join(",");
        out.push('\n');
    }
    out
}

/// The as-run log as a BXF message (`AsRun` with one `AsRunDetail`... per record).
pub fn asrun_bxf(channel: &str, rows: &[AsRun], clock: &FrameClock) -> String {
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<BxfMessage xmlns=\"http://smpte-ra.org/schemas/2021/2008/BXF\">\n  <BxfData action=\"add\">\n",
    );
    x += &format!("    <AsRun channel=\"{}\">\n", escape(channel));
    let when = |ms_rfc: &str, frame: u64| {
        let date = ms_rfc.get(..10).unwrap_or("");
        let day_ms = super::model::parse_rfc3339(&format!("{date}T00:00:00Z")).unwrap_or(0);
        let day_frame = clock.frame_at_or_after(day_ms).unwrap_or(0);
        (
            date.to_string(),
            clock.timecode(frame.saturating_sub(day_frame)),
        )
    };
    for r in rows {
        let (sd, stc) = when(&r.scheduled_start, r.scheduled_start_frame);
        let (ad, atc) = when(&r.actual_start, r.actual_start_frame);
        x += "      <AsRunDetail>\n";
        x += &format!(
            "        <EventData eventType=\"{}\">\n          <EventId><EventId>{}</EventId></EventId>\n",
            if r.kind == "break" { "NonPrimary" } else { "Primary" },
            escape(r.item.as_str())
        );
        x += &format!(
            "          <StartDateTime><SmpteDateTime broadcastDate=\"{ad}\"><SmpteTimeCode>{atc}</SmpteTimeCode></SmpteDateTime></StartDateTime>\n"
        );
        x += &format!(
            "          <LengthOption><Duration><SmpteDuration><SmpteTimeCode>{}</SmpteTimeCode></SmpteDuration></Duration></LengthOption>\n        </EventData>\n",
            clock.timecode(r.actual_frames)
        );
        x += &format!(
            "        <Content>\n          <ContentId><HouseNumber>{}</HouseNumber></ContentId>\n          <Name>{}</Name>\n        </Content>\n",
            escape(r.house_id.as_str()),
            escape(r.title.as_str())
        );
        x += &format!(
            "        <ScheduledStart><SmpteDateTime broadcastDate=\"{sd}\"><SmpteTimeCode>{stc}</SmpteTimeCode></SmpteDateTime></ScheduledStart>\n        <ScheduledDuration><SmpteTimeCode>{}</SmpteTimeCode></ScheduledDuration>\n",
            clock.timecode(r.scheduled_frames)
        );
        x += &format!(
            "        <AsRunStatus>{}</AsRunStatus>\n",
            match &r.substitution {
                None => "Aired".to_string(),
                Some(s) => format!("Substituted: {}", escape(s.as_str())),
            }
        );
        x += "      </AsRunDetail>\n";
    }
    x += "    </AsRun>\n  </BxfData>\n</BxfMessage>\n";
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rate;

    fn c(rate: Rate) -> FrameClock {
        FrameClock {
            rate,
            epoch_ms: super::super::model::parse_rfc3339("2026-12-01T00:00:00Z").unwrap(),
        }
    }

    #[test]
    fn csv_in() {
        let t = "id,type,start,frame,house_id,in,out,title,source,duration\r\n\
                 a,asset,2026-12-02T10:00:00Z,3,NEWS1,00:00:01:00,20.5,\"News, late\",,\n\
                 b,live,,,,,,,studio,60\n";
        let v = import_csv(t).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].title, "News, late");
        assert_eq!(v[0].frame, Some(3));
        assert_eq!(v[0].in_point, Some(Point::Timecode("00:00:01:00".into())));
        assert_eq!(v[0].out, Some(Point::Seconds(20.5)));
        assert_eq!(v[1].kind, ItemType::Live);
        assert_eq!(v[1].duration, Some(Point::Seconds(60.0)));
        let e = import_csv("id,colour\nx,red\n").unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
        let e = import_csv("id,type\nx,asset,extra\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(import_csv("id\n\"open").is_err());
    }

    #[test]
    fn bxf_in_with_spots_and_drop_frame() {
        let clock = c(Rate::new(30000, 1001));
        let ev = |id: &str, tc: &str, dur: &str, house: &str, spot: bool| {
            format!(
                "<ScheduledEvent><EventData eventType=\"Primary\"><EventId><EventId>{id}</EventId></EventId>\
                 {}<StartDateTime><SmpteDateTime broadcastDate=\"2026-12-02\"><SmpteTimeCode>{tc}</SmpteTimeCode></SmpteDateTime></StartDateTime>\
                 <LengthOption><Duration><SmpteDuration><SmpteTimeCode>{dur}</SmpteTimeCode></SmpteDuration></Duration></LengthOption></EventData>\
                 <Content>{}<Name>T &amp; {id}</Name></Content></ScheduledEvent>",
                if spot { "<NonPrimaryEvent/><PrimaryEvent><NonProgramEvent/></PrimaryEvent>" } else { "" },
                if house.is_empty() { String::new() } else { format!("<ContentId><HouseNumber>{house}</HouseNumber></ContentId>") }
            )
        };
        let doc = format!(
            "<?xml version=\"1.0\"?><BxfMessage xmlns=\"http://smpte-ra.org/schemas/2021/2008/BXF\"><BxfData action=\"add\"><Schedule><ScheduleElements>{}{}{}{}</ScheduleElements></Schedule></BxfData></BxfMessage>",
            ev("p1", "10:00:00;00", "00:00:30;00", "PRG1", false),
            ev("s1", "10:00:30;00", "00:00:10;00", "SPOT1", true),
            ev("s2", "10:00:40;00", "00:00:20;00", "SPOT2", true),
            ev("p2", "10:01:00;02", "00:00:50;00", "PRG2", false),
        );
        let v = import_bxf(&doc, &clock).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[0].house_id.as_deref(), Some("PRG1"));
        assert_eq!(v[0].title, "T & p1");
        assert_eq!(v[0].start.as_deref(), Some("2026-12-02T10:00:00Z"));
        assert_eq!(v[3].frame, Some(2));
        assert_eq!(v[1].breaks.len(), 1);
        // 10 s + 20 s of spots at 29.97 DF: 00:00:30;00 = 899 frames... as labelled.
        let total = 300 + 600 - 1; // 00:00:10;00 (300) + 00:00:20;00 (600) at DF counts
        let got = v[1].breaks[0].duration.frames(clock.rate).unwrap();
        assert!(got.abs_diff(total) <= 1, "{got}");
        assert!(v[2].breaks.is_empty());
        let e = import_bxf("<a><b></a>", &clock).unwrap_err().to_string();
        assert!(e.contains("BXF"), "{e}");
        assert!(import_bxf("<BxfMessage/>", &clock).is_err());
    }

    #[test]
    fn exports() {
        let clock = c(Rate::new(25, 1));
        let items = vec![Item {
            id: "a".into(),
            title: "News <late>".into(),
            house_id: Some("N1".into()),
            start: Some("2026-12-02T10:00:00Z".into()),
            out: Some(Point::Seconds(60.0)),
            ..Item::default()
        }];
        let mut lib = Library::default();
        lib.by_id.insert(
            7,
            super::super::AssetInfo {
                id: 7,
                house_id: "N1".into(),
                title: "N".into(),
                status: "ready".into(),
                duration_s: 100.0,
                path: "/m/n1.mxf".into(),
                windows: vec![],
                not_approved: None,
            },
        );
        let plan = super::super::resolve(&items, &clock, &lib, 0);
        let x = xmltv("ch1", "Channel 1", &items, &plan, &clock, &lib);
        assert!(
            x.contains("start=\"20261202100000 +0000\" stop=\"20261202100100 +0000\""),
            "{x}"
        );
        assert!(x.contains("News &lt;late&gt;"), "{x}");
        let at = super::super::model::parse_rfc3339("2026-12-02T09:59:50Z").unwrap();
        let nn = now_next(&items, &plan, &clock, &lib, at);
        assert!(nn.now.is_none());
        assert_eq!(nn.next.as_ref().unwrap().item, "a");
        assert_eq!(nn.next_in_s, Some(10.0));
        assert_eq!(nn.next_in_frames, Some(250));
        let aired = crate::playout::plan::Aired {
            slot: plan.slots[0].clone(),
            start: plan.slots[0].start,
            frames: 1000,
            substitution: Some(crate::playout::plan::Substitution::Unplayable(
                "gone, truncated".into(),
            )),
        };
        let r = AsRun::of(&aired, &clock, "News");
        let csv = asrun_csv(std::slice::from_ref(&r), &clock);
        assert!(csv.lines().nth(1).unwrap() == "a,asset,News,7,N1,2026-12-02T10:00:00Z,3060000,00:01:00:00,1500,2026-12-02T10:00:00Z,3060000,00:00:40:00,1000,\"unplayable: gone, truncated\"", "{csv}");
        let b = asrun_bxf("ch1", &[r], &clock);
        assert!(
            b.contains("<SmpteTimeCode>10:00:00:00</SmpteTimeCode>"),
            "{b}"
        );
        assert!(b.contains("Substituted: unplayable"), "{b}");
        // The BXF as-run is well-formed XML.
        let mut rd = quick_xml::Reader::from_str(&b);
        while rd.read_event().unwrap() != Event::Eof {}
    }
}
