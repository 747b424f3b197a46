//! A channel's rundown as people write it (JSON, CSV, BXF all land here): items with a hard
//! start (a second and a frame) or a soft one (after the previous), in/out points in timecode or
//! seconds, live events, breaks and logo events; and the channel's frame clock.

use serde::{Deserialize, Serialize};

use crate::config::Rate;
use crate::timecode::Timecode;

use super::ScheduleError;

/// How frames map to wall time on one channel: frame 0 is `epoch_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameClock {
    pub rate: Rate,
    pub epoch_ms: i64,
}

impl FrameClock {
    /// The first frame at or after `ms` (a hard start "at the second" lands here).
    pub fn frame_at_or_after(&self, ms: i64) -> Option<u64> {
        let d = i128::from(ms) - i128::from(self.epoch_ms);
        if d < 0 {
            return None;
        }
        let num = d * i128::from(self.rate.num);
        let den = i128::from(self.rate.den) * 1000;
        u64::try_from((num + den - 1) / den).ok()
    }

    /// The frame on air at `ms` (`None` before the epoch).
    pub fn frame_at(&self, ms: i64) -> Option<u64> {
        let d = i128::from(ms) - i128::from(self.epoch_ms);
        if d < 0 {
            return None;
        }
        u64::try_from(d * i128::from(self.rate.num) / (i128::from(self.rate.den) * 1000)).ok()
    }

    /// When `frame` starts, in Unix milliseconds (rounded down).
    pub fn ms_of(&self, frame: u64) -> i64 {
        let ms = i128::from(frame) * i128::from(self.rate.den) * 1000 / i128::from(self.rate.num);
        i64::try_from(ms)
            .unwrap_or(i64::MAX)
            .saturating_add(self.epoch_ms)
    }

    pub fn frames_to_seconds(&self, frames: u64) -> f64 {
        frames as f64 * f64::from(self.rate.den) / f64::from(self.rate.num)
    }

    /// Frames as house timecode (drop-frame at 29.97/59.94), counted from 00:00:00:00.
    pub fn timecode(&self, frames: u64) -> String {
        Timecode {
            frames: 0,
            base: self.rate.timecode_base(),
            drop_frame: self.rate.is_ntsc_drop(),
        }
        .add_frames(frames)
        .to_string()
    }
}

/// A point in a file or a length: seconds, or house timecode (`HH:MM:SS:FF`, `;` for
/// drop-frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Point {
    Seconds(f64),
    Timecode(String),
}

impl Point {
    pub fn frames(&self, rate: Rate) -> Result<u64, String> {
        match self {
            Point::Seconds(s) if s.is_finite() && *s >= 0.0 && *s < 7.0 * 86400.0 => {
                Ok(rate.frames_in(*s))
            }
            Point::Seconds(s) => Err(format!("{s} is not a number of seconds from 0 to 7 days")),
            Point::Timecode(t) => Timecode::parse(t, rate)
                .map(|t| t.frames)
                .map_err(|e| e.to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemType {
    /// A catalog asset, from `in` to `out` (or for `duration`).
    #[default]
    Asset,
    /// A live source for `duration`, or until cued when it has none.
    Live,
    /// An SCTE-35 break of `duration` over filler (the distributor's spots replace it).
    Break,
}

/// How a break is signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpliceKind {
    /// `splice_insert` out, with the break duration and auto-return.
    #[default]
    SpliceInsert,
    /// `time_signal` with segmentation descriptors (provider placement opportunity).
    TimeSignal,
}

/// A break inside an item: `at` from the item's start, for `duration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakSpec {
    #[serde(default = "zero")]
    pub at: Point,
    pub duration: Point,
    #[serde(default)]
    pub kind: SpliceKind,
    /// splice_event_id; derived from the item id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<u32>,
}

fn zero() -> Point {
    Point::Seconds(0.0)
}

/// The channel logo on or off, `at` from the item's start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondarySpec {
    #[serde(default = "zero")]
    pub at: Point,
    pub logo: bool,
}

/// One schedule item.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Unique in the channel's schedule; made up on load when absent.
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: ItemType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    /// A hard start, RFC 3339 to the second; absent: soft (right after the previous item).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// The frame within `start`'s second (0 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<u32>,
    /// The asset, by house id or by catalog id (the other is filled in on load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub house_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_id: Option<i64>,
    #[serde(rename = "in", default, skip_serializing_if = "Option::is_none")]
    pub in_point: Option<Point>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out: Option<Point>,
    /// A live event's or a break's length; for an asset, instead of `out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Point>,
    /// A live event's source (the live service's source name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// A break item's signalling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scte35: Option<SpliceKind>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breaks: Vec<BreakSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secondary: Vec<SecondarySpec>,
    /// Not aired.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip: bool,
    /// Set on air by a cue: the item starts at this channel frame, whatever `start` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cued_frame: Option<u64>,
    /// Set on air by a skip or a cue: the item ends at this channel frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_frame: Option<u64>,
}

impl Item {
    /// The hard start frame, if any.
    pub fn hard_frame(&self, clock: &FrameClock) -> Result<Option<u64>, ScheduleError> {
        if let Some(f) = self.cued_frame {
            return Ok(Some(f));
        }
        let Some(s) = &self.start else {
            if self.frame.is_some() {
                return Err(self.bad("frame", "needs a start"));
            }
            return Ok(None);
        };
        let ms = parse_rfc3339(s).ok_or_else(|| self.bad("start", "not an RFC 3339 time"))?;
        if ms % 1000 != 0 {
            return Err(self.bad("start", "a hard start is a whole second (and `frame`)"));
        }
        let f = self.frame.unwrap_or(0);
        if f >= clock.rate.timecode_base() {
            return Err(self.bad("frame", "beyond the last frame of a second at this rate"));
        }
        let at = clock
            .frame_at_or_after(ms)
            .ok_or_else(|| self.bad("start", "before the channel's epoch"))?;
        Ok(Some(at + u64::from(f)))
    }

    pub(crate) fn bad(&self, field: &str, why: &str) -> ScheduleError {
        ScheduleError::Item {
            item: self.id.clone(),
            field: field.to_string(),
            why: why.to_string(),
        }
    }

    /// Checks the fields that make sense for the item's type (nothing about the catalog).
    pub fn check(&self, rate: Rate) -> Result<(), ScheduleError> {
        if self.id.is_empty() || self.id.len() > 100 || self.id.chars().any(char::is_control) {
            return Err(self.bad("id", "1-100 characters, no control characters"));
        }
        let point = |f: &str, p: &Option<Point>| -> Result<(), ScheduleError> {
            if let Some(p) = p {
                p.frames(rate).map_err(|e| self.bad(f, &e))?;
            }
            Ok(())
        };
        point("in", &self.in_point)?;
        point("out", &self.out)?;
        point("duration", &self.duration)?;
        match self.kind {
            ItemType::Asset => {
                if self.house_id.as_deref().is_none_or(str::is_empty) && self.asset_id.is_none() {
                    return Err(self.bad(
                        "house_id",
                        "an asset item names its asset (house_id or asset_id)",
                    ));
                }
                if self.source.is_some() {
                    return Err(self.bad("source", "only for a live item"));
                }
                if let (Some(i), Some(o)) = (&self.in_point, &self.out) {
                    if o.frames(rate).unwrap_or(0) <= i.frames(rate).unwrap_or(0) {
                        return Err(self.bad("out", "not after `in`"));
                    }
                }
            }
            ItemType::Live => {
                if self.source.as_deref().is_none_or(str::is_empty) {
                    return Err(self.bad("source", "a live item names its live source"));
                }
                if self.in_point.is_some() || self.out.is_some() {
                    return Err(self.bad("in", "a live item has no in/out points"));
                }
            }
            ItemType::Break => {
                if self.duration.is_none() {
                    return Err(self.bad("duration", "a break item has a duration"));
                }
                if self.house_id.is_some() || self.asset_id.is_some() || self.source.is_some() {
                    return Err(self.bad("type", "a break item has no asset or source"));
                }
            }
        }
        for (i, b) in self.breaks.iter().enumerate() {
            let f = format!("breaks[{i}]");
            b.at.frames(rate).map_err(|e| self.bad(&f, &e))?;
            let d = b.duration.frames(rate).map_err(|e| self.bad(&f, &e))?;
            if d == 0 {
                return Err(self.bad(&f, "a break lasts at least a frame"));
            }
        }
        for (i, s) in self.secondary.iter().enumerate() {
            s.at.frames(rate)
                .map_err(|e| self.bad(&format!("secondary[{i}]"), &e))?;
        }
        Ok(())
    }
}

/// RFC 3339 to Unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Unix milliseconds as RFC 3339 UTC.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Gives every item without an id one (`item-N`), and checks ids are unique and items sound.
pub fn prepare(items: &mut [Item], rate: Rate) -> Result<(), ScheduleError> {
    let mut seen = std::collections::HashSet::new();
    for it in items.iter() {
        if !it.id.is_empty() {
            seen.insert(it.id.clone());
        }
    }
    let mut n = 0usize;
    for it in items.iter_mut() {
        if it.id.is_empty() {
            loop {
                n += 1;
                let id = format!("item-{n}");
                if seen.insert(id.clone()) {
                    it.id = id;
                    break;
                }
            }
        }
    }
    let mut ids = std::collections::HashSet::new();
    for it in items.iter() {
        if !ids.insert(it.id.as_str()) {
            return Err(it.bad("id", "used by two items"));
        }
        it.check(rate)?;
    }
    anchored(items)
}

/// The first item a rundown airs has a hard start: nothing before it says when it would air.
pub fn anchored(items: &[Item]) -> Result<(), ScheduleError> {
    match items.iter().find(|i| !i.skip) {
        Some(first) if first.start.is_none() && first.cued_frame.is_none() => Err(first.bad(
            "start",
            "the first item of a rundown needs a start (RFC 3339, and a frame)",
        )),
        _ => Ok(()),
    }
}
